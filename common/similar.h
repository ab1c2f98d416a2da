/* similar.h — reuse across edits (KVShare, Cache-Craft): the cache of a
 * chunk that is like a stored one, built from the stored one.
 *
 * A document changes by a word; its chunks' keys change with it. Rather than
 * computing an edited chunk from scratch:
 *  1. find a stored chunk like it: the same chunk (doc, seq) of an older
 *     version, else by a MinHash sketch of its token shingles looked up by LSH
 *     bands in the store's index (store_sketch_find), above a minimum
 *     estimated similarity;
 *  2. align the two token sequences (similar_align: a Myers diff over token
 *     ids, bounded in edit distance);
 *  3. take the stored K/V of every matching token into its new slot, at the
 *     position it was computed at, leave the others as holes, and let
 *     blend_prompt (CacheBlend) rotate the kept keys to their new positions,
 *     compute the holes and recompute the kept tokens whose K/V deviate most
 *     at the check layer (similar_rebuild). The last token is always a hole
 *     (blend_prompt computes the last token's logits).
 * At recompute ratio 1.0 every token is recomputed: the result is a fresh
 * prefill of the chunk. An identical token sequence is the stored cache,
 * copied.
 */
#ifndef KB_SIMILAR_H
#define KB_SIMILAR_H

#include <stdint.h>

#include "blend.h"
#include "model.h"

#define SIMILAR_HASHES 64      /* MinHash values in a sketch */
#define SIMILAR_SHINGLE 4      /* tokens in a shingle */
#define SIMILAR_BAND_ROWS 4    /* hashes in an LSH band: 16 bands, a pair at s = 0.5 meets in one with p = 0.64 */
#define SIMILAR_BANDS (SIMILAR_HASHES / SIMILAR_BAND_ROWS)
#define SIMILAR_MAX_EDITS 2048 /* similar_align's default bound on the edit distance */
#define SIMILAR_MIN_DEFAULT 0.5 /* the least estimated similarity a candidate must have */

/* The MinHash sketch of tok[0..n) (n >= 1): for each of SIMILAR_HASHES seeded
 * hash functions, the least hash over the shingles of SIMILAR_SHINGLE
 * consecutive tokens (one shingle of them all when n < SIMILAR_SHINGLE). */
void similar_sketch(const int32_t *tok, int n, uint64_t sk[SIMILAR_HASHES]);
/* The estimated Jaccard similarity of two sketches' shingle sets: the share of
 * equal values, 0..1. */
double similar_estimate(const uint64_t a[SIMILAR_HASHES], const uint64_t b[SIMILAR_HASHES]);
/* The LSH band keys of a sketch: band b hashes values [b * rows, (b + 1) * rows)
 * and b. Two sketches that agree on a whole band share its key. */
void similar_bands(const uint64_t sk[SIMILAR_HASHES], int64_t band[SIMILAR_BANDS]);

/* Align old[0..n_old) with new[0..n_new): from[i] = the index in old of the
 * token matched with new[i], or -1 (inserted or replaced), matches in
 * increasing order on both sides (a longest common subsequence when the edit
 * distance is at most max_edits; beyond that only the common prefix and suffix
 * are matched). Time O((n_old + n_new) * D), memory O(D^2) for D edits.
 * Returns the number of tokens matched (>= 0) or KB_ERR_NOMEM. */
int similar_align(const int32_t *old, int n_old, const int32_t *new, int n_new, int max_edits, int32_t *from) KB_WUR;

struct similar_stats {
	int n_tokens;   /* of the new chunk */
	int n_matched;  /* aligned with the parent's tokens */
	int n_reused;   /* whose K/V stayed the parent's (matched and not recomputed) */
	struct blend_stats blend; /* blend_prompt's counts (zero when the parent was copied) */
};

/* Build the cache of tok[0..n), computed alone from position 0, in slots
 * [dst0, dst0 + n) of dst (tok and positions 0..n-1 set there, dst->n left as
 * it was), from the parent cache in slots [src0, src0 + n_src) of src (its
 * K/V, tokens and positions, as read from a store: computed alone from 0), as
 * the comment at the top says, with o (mode BLEND_BLEND; ratio and check
 * layer) choosing what is recomputed. src and dst may not be the same cache.
 * Returns KB_OK and *st, or an error (kb_error() set). */
int similar_rebuild(const struct model *m, const struct kv_cache *src, int src0, int n_src,
		    const int32_t *tok, int n, const struct blend_opts *o, struct kv_cache *dst, int dst0,
		    struct similar_stats *st) KB_WUR;

#endif
