/* similar.c — see similar.h. */
#include "similar.h"

#include <stdlib.h>
#include <string.h>

/* ---- the sketch ---- */

/* SplitMix64's finalizer: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* The hash of a shingle: its tokens folded in order. */
static uint64_t shingle_hash(const int32_t *t, int n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
	for (int i = 0; i < n; i++)
		h = mix64(h ^ (uint32_t)t[i]);
	return h;
}

void similar_sketch(const int32_t *tok, int n, uint64_t sk[SIMILAR_HASHES])
{
	uint64_t seed[SIMILAR_HASHES];
	for (int k = 0; k < SIMILAR_HASHES; k++) {
		seed[k] = mix64(0x5851f42d4c957f2dULL * (uint64_t)(k + 1));
		sk[k] = UINT64_MAX;
	}
	const int w = n < SIMILAR_SHINGLE ? n : SIMILAR_SHINGLE;
	for (int i = 0; i + w <= n; i++) {
		const uint64_t h = shingle_hash(tok + i, w);
		for (int k = 0; k < SIMILAR_HASHES; k++) {
			uint64_t v = mix64(h ^ seed[k]);
			if (v < sk[k])
				sk[k] = v;
		}
	}
}

double similar_estimate(const uint64_t a[SIMILAR_HASHES], const uint64_t b[SIMILAR_HASHES])
{
	int eq = 0;
	for (int k = 0; k < SIMILAR_HASHES; k++)
		eq += a[k] == b[k];
	return (double)eq / SIMILAR_HASHES;
}

void similar_bands(const uint64_t sk[SIMILAR_HASHES], int64_t band[SIMILAR_BANDS])
{
	for (int b = 0; b < SIMILAR_BANDS; b++) {
		uint64_t h = mix64((uint64_t)b + 1);
		for (int r = 0; r < SIMILAR_BAND_ROWS; r++)
			h = mix64(h ^ sk[b * SIMILAR_BAND_ROWS + r]);
		band[b] = (int64_t)h;
	}
}

/* ---- the alignment: Myers' O(ND) diff ---- */

/* Match a[0..n) with b[0..m) (the middle, after the common ends), adding off_a
 * and off_b to the indices written to from (indexed by b). Returns the matches,
 * 0 when more than max_d edits are needed, KB_ERR_NOMEM. */
static int myers(const int32_t *a, int n, const int32_t *b, int m, int max_d, int off_a, int off_b, int32_t *from)
{
	if (n == 0 || m == 0)
		return 0;
	if (max_d > n + m)
		max_d = n + m;
	/* v[k + off]: the furthest x on diagonal k (y = x - k); trace[d] holds
	 * v[-d..d] as it was after round d, for the way back */
	const int off = max_d + 1;
	int *v = kb_malloc((size_t)(2 * max_d + 3) * sizeof *v);
	int **trace = kb_calloc((size_t)max_d + 1, sizeof *trace);
	int rc = KB_ERR_NOMEM, D = -1;
	if (!v || !trace)
		goto out;
	v[off + 1] = 0;
	for (int d = 0; d <= max_d && D < 0; d++) {
		for (int k = -d; k <= d; k += 2) {
			int x = k == -d || (k != d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
			int y = x - k;
			while (x < n && y < m && a[x] == b[y])
				x++, y++;
			v[off + k] = x;
			if (x >= n && y >= m)
				D = d;
		}
		if (!(trace[d] = kb_malloc((size_t)(2 * d + 1) * sizeof **trace)))
			goto out;
		memcpy(trace[d], v + off - d, (size_t)(2 * d + 1) * sizeof *v);
	}
	rc = 0;
	if (D < 0) /* too far apart: no matches in the middle */
		goto out;
	/* back from (n, m): each round is an edit, then a diagonal of matches */
	int x = n, y = m;
	for (int d = D; d >= 0; d--) {
		const int k = x - y;
		int px = 0, py = 0, mx = 0, my = 0;
		if (d > 0) {
			const int *pv = trace[d - 1] + (d - 1); /* pv[k] = v[k] after round d - 1 */
			const int pk = k == -d || (k != d && pv[k - 1] < pv[k + 1]) ? k + 1 : k - 1;
			px = pv[pk], py = px - pk;
			mx = pk == k + 1 ? px : px + 1; /* down (an insertion) or right (a deletion) */
			my = mx - k;
		}
		for (; x > mx && y > my; x--, y--) {
			from[off_b + y - 1] = off_a + x - 1;
			rc++;
		}
		x = px, y = py;
	}
out:
	if (trace)
		for (int d = 0; d <= max_d; d++)
			free(trace[d]);
	free(trace);
	free(v);
	return rc;
}

int similar_align(const int32_t *old, int n_old, const int32_t *new, int n_new, int max_edits, int32_t *from)
{
	for (int i = 0; i < n_new; i++)
		from[i] = -1;
	int p = 0, s = 0;
	while (p < n_old && p < n_new && old[p] == new[p]) {
		from[p] = p;
		p++;
	}
	while (s < n_old - p && s < n_new - p && old[n_old - 1 - s] == new[n_new - 1 - s]) {
		from[n_new - 1 - s] = n_old - 1 - s;
		s++;
	}
	int mid = myers(old + p, n_old - p - s, new + p, n_new - p - s, max_edits < 0 ? 0 : max_edits, p, p, from);
	return mid < 0 ? mid : p + s + mid;
}

/* ---- the rebuild ---- */

/* Copy every layer's K/V of n slots from src at s0 to dst at d0. */
static void copy_rows(const struct kv_cache *src, int s0, struct kv_cache *dst, int d0, int n)
{
	for (int l = 0; l < dst->n_layer; l++)
		kv_copy_rows(dst, l, d0, src, s0, n);
}

int similar_rebuild(const struct model *m, const struct kv_cache *src, int src0, int n_src,
		    const int32_t *tok, int n, const struct blend_opts *o, struct kv_cache *dst, int dst0,
		    struct similar_stats *st)
{
	if (n <= 0 || n_src <= 0)
		return kb_fail(KB_ERR_ARG, "an empty chunk has no cache");
	if (dst0 < 0 || n > dst->n_ctx - dst0 || src0 < 0 || n_src > src->n_ctx - src0)
		return kb_fail(KB_ERR_ARG, "a chunk of %d tokens does not fit the context at slot %d", n, dst0);
	if (src->hpos)
		return kb_fail(KB_ERR_ARG, "a token-evicted cache cannot be a parent");
	if (o->mode != BLEND_BLEND)
		return kb_fail(KB_ERR_ARG, "a chunk is rebuilt from a similar one in mode blend, not %s",
			       blend_mode_name(o->mode));
	*st = (struct similar_stats){ .n_tokens = n };
	int32_t *from = kb_malloc((size_t)n * sizeof *from);
	if (!from)
		return KB_ERR_NOMEM;
	int rc = similar_align(src->tok + src0, n_src, tok, n, SIMILAR_MAX_EDITS, from);
	if (rc < 0) {
		free(from);
		return rc;
	}
	st->n_matched = rc;
	/* the same tokens: the parent's cache itself */
	if (n == n_src && rc == n) {
		copy_rows(src, src0, dst, dst0, n);
		for (int i = 0; i < n; i++)
			dst->tok[dst0 + i] = tok[i], dst->pos[dst0 + i] = i;
		st->n_reused = n;
		free(from);
		return KB_OK;
	}
	/* the prompt for blend_prompt: runs of kept tokens (cached, at their old
	 * positions) and of holes; the last token is a hole */
	struct kv_cache kv = { 0 };
	struct model_ws ws = { 0 };
	struct blend_seg *segs = kb_malloc((size_t)n * sizeof *segs);
	float *logits = kb_malloc((size_t)m->hp.n_vocab * sizeof *logits);
	rc = KB_ERR_NOMEM;
	if (!segs || !logits)
		goto out;
	if ((rc = kv_cache_init(&kv, m, n)) || (rc = model_ws_init(&ws, m, n < 512 ? n : 512, n)))
		goto out;
	from[n - 1] = -1;
	int n_segs = 0;
	for (int i = 0; i < n; i++) {
		const bool kept = from[i] >= 0;
		kv.tok[i] = tok[i];
		kv.pos[i] = kept ? src->pos[src0 + from[i]] : i;
		if (kept)
			copy_rows(src, src0 + from[i], &kv, i, 1);
		if (n_segs == 0 || segs[n_segs - 1].cached != kept)
			segs[n_segs++] = (struct blend_seg){ .slot0 = i, .n = 0, .cached = kept };
		segs[n_segs - 1].n++;
	}
	kv.n = n;
	if ((rc = blend_prompt(m, &ws, &kv, segs, n_segs, o, logits, &st->blend)))
		goto out;
	st->n_reused = st->blend.n_cached - (st->blend.n_selected - (n - st->blend.n_cached));
	copy_rows(&kv, 0, dst, dst0, n);
	for (int i = 0; i < n; i++)
		dst->tok[dst0 + i] = tok[i], dst->pos[dst0 + i] = i;
out:
	kv_cache_free(&kv);
	model_ws_free(&ws);
	free(segs);
	free(logits);
	free(from);
	return rc;
}
