/* ops_impl.h — private to the non-matmul kernels (ops*.c): the per-ISA pieces
 * that the drivers in ops.c call, and what they share.
 *
 * The drivers in ops.c own the loops over rows and the threading; each
 * ISA file (ops.c itself for portable C, ops_avx2.c, ops_avx512.c) supplies the
 * row- or item-sized workers below, so the threading and the scratch layout
 * are written once.
 */
#ifndef KB_OPS_IMPL_H
#define KB_OPS_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* Threads: kernels run their items through kern_parallel (pool.h); one with
 * per-thread scratch gives it kern_slots() slots (the processors), so a size
 * computed earlier holds whatever the thread count has been set to since. */
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define OPS_X86 1
#endif

/* ---- RMSNorm: one row of n ---- */
typedef void ops_rmsnorm_fn(float *y, const float *x, const float *w, int n, float eps);

/* ---- RoPE ----
 * The driver computes cos/sin once per (row, pair) and applies them to every
 * head, OPS_ROPE_CHUNK pairs at a time, through one of:
 *   norm: x[0..n) interleaved pairs: x'[k] = x[k] * cd[k] + x[k ^ 1] * sd[k],
 *         cd = (c0, c0, c1, c1, ...), sd = (-s0, s0, -s1, s1, ...); n even.
 *   neox: x0' = x0 * c - x1 * s, x1' = x0 * s + x1 * c over n pairs. */
#define OPS_ROPE_CHUNK 64
typedef void ops_rope_norm_fn(float *x, const float *cd, const float *sd, int n);
typedef void ops_rope_neox_fn(float *x0, float *x1, const float *c, const float *s, int n);

/* cos and sin of pos * inv_freq: the angle in double (exact: a 24-bit float times a
 * 31-bit int fits in 53 bits), so positions near 2^17 lose nothing to range
 * reduction; the results rounded to float. The reference computes the same. */
static inline void ops_rope_cs(double pos, float inv_freq, float *c, float *s)
{
	double th = pos * (double)inv_freq;
	*c = (float)cos(th);
	*s = (float)sin(th);
}

/* ---- softmax over n, SwiGLU over n ---- */
typedef void ops_softmax_fn(float *x, int n);
typedef void ops_swiglu_fn(float *out, const float *gate, const float *up, int64_t n);
typedef void ops_gelu_fn(float *out, const float *x, int64_t n);
/* The GELU's constants: u = OPS_GELU_A x + OPS_GELU_B x^3 is sqrt(2/pi) (x + 0.044715 x^3). */
#define OPS_GELU_A 0.7978845608028654f
#define OPS_GELU_B (0.7978845608028654f * 0.044715f)

/* ---- attention ----
 * Three work decompositions, chosen in ops.c:
 *   row:   one (query i, head h) over all n_kv keys; scores go to a per-thread
 *          buffer of n_kv floats, then softmax, then the weighted sum of V.
 *          For head_dim > OPS_ATT_MAX_HD, and for too few query vectors to fill
 *          half a tile block.
 *   split: few queries (decode): the keys cut into chunks of at most
 *          OPS_ATT_CHUNK_MAX, threads take chunks and fold every (query, head)
 *          into their own running softmax state, then the states are merged.
 *          Heads that share a kv head run back to back on a chunk, so its K/V
 *          come from cache for all but the first.
 *   tile:  the query vectors that share kv head g, numbered v = i * n_rep + r
 *          (query i, head g * n_rep + r), in blocks of `w` (the SIMD width):
 *          lanes = query vectors, keys taken OPS_ATT_TILE at a time with an online
 *          softmax, so each K/V row is loaded once per block of w query vectors
 *          (and from L1 for the next OPS_ATT_TILE_NB - 1 blocks).
 * A slot that no query of the call can see never reaches an output: it may hold
 * anything, NaN included (a cache whose later slots are not written yet). */
#define OPS_ATT_MAX_HD 256      /* head_dim bound of the tile and split paths */
#define OPS_ATT_TILE 32         /* keys per tile */
#define OPS_ATT_MAX_W 16        /* widest lane count (AVX-512) */
#define OPS_ATT_SPLIT_MAX_Q 4   /* queries up to which the split path is used */
#define OPS_ATT_CHUNK_MAX 512   /* keys per chunk of the split path */
#define OPS_ATT_TILE_NB 4       /* blocks of w query vectors that share each K/V tile */
/* per block: qt [hd][w] + o [w][hd] + p [TILE][w] + alpha [w], a multiple of 16 */
#define OPS_ATT_BLOCK_FLOATS(hd, w) ((2 * (hd) * (w) + OPS_ATT_TILE * (w) + (w) + 15) & ~15)
#define OPS_ATT_TILE_FLOATS (OPS_ATT_TILE_NB * OPS_ATT_BLOCK_FLOATS(OPS_ATT_MAX_HD, OPS_ATT_MAX_W))

struct ops_att {
	float *out;
	const float *q, *k, *v;
	const int32_t *q_pos, *k_pos;
	int k_pos_hstride; /* kv head g's key positions at k_pos + g * k_pos_hstride (0: shared) */
	int q_stride, kv_stride;
	int n_q, n_kv, n_head, n_kv_head, head_dim;
	int n_rep;   /* n_head / n_kv_head */
	float scale; /* score = q . k * scale (1 / sqrt(head_dim) unless the caller says) */
	int32_t window; /* > 0: sliding window (kern_att_opts) */
	float softcap;  /* > 0: soft-capped scores (kern_att_opts) */
};

/* Keys at positions <= ops_att_lo(a, qp) are outside the window of a query at
 * qp (INT32_MIN without a window): a key is visible when lo < k_pos <= qp. */
static inline int32_t ops_att_lo(const struct ops_att *a, int32_t qp)
{
	return a->window > 0 ? qp - a->window : INT32_MIN;
}

/* The lowest and highest of n key positions. */
static inline void ops_att_krange(const int32_t *k_pos, int n, int32_t *kmin, int32_t *kmax)
{
	*kmin = INT32_MAX;
	*kmax = INT32_MIN;
	for (int j = 0; j < n; j++) {
		*kmin = k_pos[j] < *kmin ? k_pos[j] : *kmin;
		*kmax = k_pos[j] > *kmax ? k_pos[j] : *kmax;
	}
}

/* Soft-capping of n scores in place (-inf stays -inf); returns their new max. */
float ops_att_softcap(float *s, int n, float cap);

/* Fold keys [j0, j1) into the running softmax state of query i, head h:
 * st[0] = the highest score so far (-inf: nothing seen yet, o not yet written),
 * st[1] = sum of e^(score - st[0]), o[head_dim] = sum of e^(score - st[0]) v.
 * s: j1 - j0 floats of scratch. q(i, h) is read before o is written, so o may
 * be that very row of out (and out may be q). */
/* The key positions of kv head g. */
static inline const int32_t *ops_att_kpos(const struct ops_att *a, int g)
{
	return a->k_pos + (size_t)g * a->k_pos_hstride;
}

typedef void ops_att_chunk_fn(const struct ops_att *a, int i, int h, int j0, int j1,
			      float *s, float *st, float *o);
/* query vectors [v0, v0 + nb * w) of kv head g in nb <= OPS_ATT_TILE_NB blocks
 * (those past n_q * n_rep are padding), each K/V tile used by all nb blocks
 * while it is in L1; scratch: OPS_ATT_TILE_FLOATS floats, 64-byte aligned */
typedef void ops_att_tile_fn(const struct ops_att *a, int g, int v0, int nb, float *scratch);

/* Lane set-up shared by the tile workers: query vector v0 + l of kv head g
 * (l < w) is query row *i, head *h; returns 0 for a padding lane. */
static inline int ops_att_lane(const struct ops_att *a, int g, int v, int *i, int *h)
{
	if (v >= a->n_q * a->n_rep)
		return 0;
	*i = v / a->n_rep;
	*h = g * a->n_rep + v % a->n_rep;
	return 1;
}

/* ---- APE attention (kern_attention_ape) ----
 * The tile path with two online softmaxes per block of W query vectors of kv
 * head g: the other keys' (a: scale) and the context's, slots [c0, c1) (ac:
 * scale / T); a key tile that straddles c0 or c1 is taken in runs. The two
 * states of each query vector are merged by ops_ape_merge. One block an item;
 * scratch: 2 * OPS_ATT_BLOCK_FLOATS(head_dim, W) floats, 64-byte aligned. */
typedef void ops_att_ape_tile_fn(const struct ops_att *a, const struct ops_att *ac, int c0, int c1, float st,
				 int g, int v0, float *scratch);

/* out[hd] of one query vector from the running states of its other keys (max
 * mo, sum lo, unnormalised output oo) and of its context keys (mc, lc, oc):
 * each group's log-sum-exp, the context's times st (S * T), weighs the group's
 * normalised output; zeros when it saw no key. */
static inline void ops_ape_merge(float *out, float mo, float lo, const float *oo, float mc, float lc,
				 const float *oc, float st, int hd)
{
	float so = mo == -INFINITY || !(lo > 0) ? -INFINITY : mo + logf(lo);
	float sc = mc == -INFINITY || !(lc > 0) ? -INFINITY : (mc + logf(lc)) * st;
	float m = so > sc ? so : sc;
	if (m == -INFINITY) {
		for (int d = 0; d < hd; d++)
			out[d] = 0.0f;
		return;
	}
	float wo = so == -INFINITY ? 0.0f : expf(so - m), wc = sc == -INFINITY ? 0.0f : expf(sc - m);
	float fo = wo > 0 ? wo / ((wo + wc) * lo) : 0.0f, fc = wc > 0 ? wc / ((wo + wc) * lc) : 0.0f;
	for (int d = 0; d < hd; d++)
		out[d] = (fo > 0 ? fo * oo[d] : 0.0f) + (fc > 0 ? fc * oc[d] : 0.0f);
}

/* ---- the variants ---- */
#ifdef OPS_X86
ops_rmsnorm_fn ops_rmsnorm_avx2, ops_rmsnorm_avx512;
ops_rope_norm_fn ops_rope_norm_avx2, ops_rope_norm_avx512;
ops_rope_neox_fn ops_rope_neox_avx2, ops_rope_neox_avx512;
ops_softmax_fn ops_softmax_avx2, ops_softmax_avx512;
ops_swiglu_fn ops_swiglu_avx2, ops_swiglu_avx512;
ops_gelu_fn ops_gelu_avx2, ops_gelu_avx512;
void ops_f16_to_f32_f16c(float *dst, const void *src, int64_t n);
ops_att_chunk_fn ops_att_chunk_avx2, ops_att_chunk_avx512;
ops_att_tile_fn ops_att_tile_avx2, ops_att_tile_avx512;
ops_att_ape_tile_fn ops_att_ape_tile_avx2, ops_att_ape_tile_avx512;
#endif

#endif
