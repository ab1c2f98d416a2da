/* blend.h — CacheBlend: fuse precomputed chunk caches into one prompt's KV
 * cache, recomputing only the tokens whose K/V deviate most.
 *
 * The prompt is a run of segments in slot order (prefix, chunk_1 .. chunk_k,
 * query), placed at consecutive positions 0, 1, .. in the cache. A cached
 * segment arrives with its K/V loaded into its slots (all layers, K rotated at
 * the positions it was computed at, which kv->pos holds); an uncached one needs
 * only its token ids. blend_prompt then, as ../shared/DESIGN.md says:
 *  1. rotates each cached K by (new position - old position): a pure rotation;
 *  2. always recomputes uncached tokens;
 *  3. runs the layers before check_layer for every token; at the check layer
 *     computes only the K/V projections of every token, scores each cached
 *     token by the L2 deviation of its fresh K/V from the cached one and
 *     selects the top `ratio` of them;
 *  4. runs the check layer's attention and MLP and the later layers for the
 *     selected tokens only, overwriting their
 *     K/V; every query attends to the full cache with the causal mask by
 *     position (never the bottom-right mask);
 *  5. gives the last token's logits (the first output token).
 * Modes: BLEND_FULL (everything recomputed: an ordinary prefill), BLEND_REUSE
 * (only uncached tokens recomputed, = BLEND at ratio 0), BLEND_PREFIX (cached
 * chunks are ignored and recomputed; only a cached first segment is reused),
 * BLEND_EPIC (the first epic_k tokens of each cached chunk recomputed at every
 * layer, no deviation check).
 *
 * BLEND_APE (Adaptive Parallel Encoding, Yang et al., ICLR 2025; DESIGN.md's
 * "cheaper relatives") is not a placement of caches computed alone but of
 * caches computed in parallel after a shared prefix, and nothing in them is
 * recomputed:
 *  1. segment 0 is the shared prefix (BOS, the template's opening, the
 *     instruction) at positions 0 .. P-1, cached or computed;
 *  2. each chunk's cache was computed after the prefix (the prefix's tokens at
 *     0 .. P-1, the chunk's at P .. P+n-1: chunkcache's APE caches), so every
 *     chunk starts at position P, and chunks never saw each other; they keep
 *     their K/V and positions as they are (no rotation);
 *  3. the tokens after the chunks (the query, the template's closing) are at
 *     P + the longest chunk's length onwards, as APE's reference code places
 *     them, and run every layer;
 *  4. their attention is kern_attention_ape: the chunks are the parallel
 *     context (logits over ape_temp, their summed exponentials to the power
 *     ape_scale * ape_temp), the prefix and the query itself attend as ever,
 *     and the mask stays exact by position (a query sees every earlier token;
 *     no chunk sees another: each was computed alone after the prefix);
 *  5. the last token's logits are the first output token. Tokens generated
 *     after it must keep the correction and the positions: blend_stats'
 *     next_pos and ape say how (bench does; a .kvc written by blend holds the
 *     positions, and kvblend decode continues it without the correction).
 * With ape_temp = ape_scale = 1 and one chunk this is a full prefill of
 * prefix + chunk + query (to float rounding).
 */
#ifndef KB_BLEND_H
#define KB_BLEND_H

#include <stdbool.h>

#include "model.h"

enum blend_mode { BLEND_BLEND = 0, BLEND_FULL, BLEND_REUSE, BLEND_PREFIX, BLEND_EPIC, BLEND_APE };

/* APE's temperature and scale: the paper's defaults, and the range accepted */
#define BLEND_APE_DEFAULT 0.9f
#define BLEND_APE_MIN 0.01
#define BLEND_APE_MAX 10.0
enum blend_metric { BLEND_METRIC_KV = 0, BLEND_METRIC_K, BLEND_METRIC_V };

struct blend_seg {
	int slot0, n;  /* slots [slot0, slot0 + n) of the cache, in order, no gaps */
	bool cached;   /* K/V loaded for every layer; kv->pos holds the positions they were made at */
};

struct blend_opts {
	enum blend_mode mode;
	float ratio;        /* BLEND: share of cached tokens recomputed (0..1; default 0.15) */
	int check_layer;    /* BLEND: where deviations are measured (default 1) */
	enum blend_metric metric;
	int epic_k;         /* EPIC: tokens recomputed at the start of each chunk (default 16) */
	float ape_temp;     /* APE: T, the context's logits divided by it (default 0.9) */
	float ape_scale;    /* APE: S, the context's summed exponentials to the power S * T (default 0.9) */
};

struct blend_stats {
	int n_tokens;     /* prompt tokens */
	int n_cached;     /* tokens whose K/V came from a cache */
	int n_selected;   /* tokens recomputed after the check layer (incl. uncached) */
	int n_full_layers; /* layers run whole for every token (before the check layer) */
	int next_pos;     /* the position of a token generated after the prompt: n_tokens, but in
			   * APE the last token's position + 1 */
	struct kern_ape ape; /* APE: the correction a generated token's attention keeps (set
			      * ws->ape to it); ctx0 == ctx1 == 0 in the other modes */
};

/* Whether segment i of a prompt (0: the head), of n tokens, takes its K/V from
 * a cache in mode when one is there: never in FULL, only the first segment
 * in PREFIX, never an empty one (in APE a chunk's cache is the one computed
 * after the head). The one place this is decided (prompt.c and
 * blend_prompt both ask it). */
bool blend_seg_reused(enum blend_mode mode, int i, int n);

/* Set o to the defaults (blend, ratio 0.15, check layer 1, metric kv, epic 16, APE
 * temperature and scale 0.9). */
void blend_opts_init(struct blend_opts *o);
const char *blend_mode_name(enum blend_mode m);
int blend_mode_from_name(const char *s); /* -1 if unknown */

/* Build the prompt's cache in kv (kv->n == total tokens, kv->tok filled, cached
 * segments loaded as above) and its last-token logits ([n_vocab]). Positions
 * become the slot indices (in APE: as said above; every chunk with n > 0 must
 * be cached, at positions after the head, else KB_ERR_ARG). ws must come from model_ws_init with n_ctx >= kv->n;
 * batches of ws->n_batch rows. Returns KB_OK or an error (kb_error() set). */
int blend_prompt(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		 const struct blend_seg *segs, int n_segs, const struct blend_opts *o, float *logits,
		 struct blend_stats *st) KB_WUR;

/* Pipelined loading: the cached K/V of layer l may still be arriving while
 * earlier layers are computed. blend_prompt_loaded calls wait_layer(ctx, l)
 * before it first touches layer l (returns KB_OK once every cached segment's
 * layer l is in the cache, or an error that stops the blend). Positions
 * (kv->pos) of cached segments must be set before the call. */
struct blend_loader {
	int (*wait_layer)(void *ctx, int layer);
	void *ctx;
};
int blend_prompt_loaded(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
			const struct blend_seg *segs, int n_segs, const struct blend_opts *o,
			const struct blend_loader *ld, float *logits, struct blend_stats *st) KB_WUR;

/* Rotate the K rows of slots [slot0, slot0 + n) in every layer by delta[i]
 * positions (a pure RoPE rotation; -delta undoes it). */
void blend_rotate(const struct model *m, struct kv_cache *kv, int slot0, int n, const int32_t *delta);

#endif
