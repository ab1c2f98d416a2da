/* ops.c — the dispatched non-matmul kernels (kernels.h): the drivers that own
 * the loops over rows and the OpenMP threading, the portable C variant of each
 * worker, and the switch on kern_level that picks the worker.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "ops_impl.h"
#include "util.h"

/* Parallelise a loop only when it has at least this many floats of work. */
#define OPS_PAR_MIN 32768

/* ================= portable C workers ================= */

static void rmsnorm_generic(float *y, const float *x, const float *w, int n, float eps)
{
	float acc[8] = { 0 };
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += x[i + l] * x[i + l];
	float ss = 0;
	for (; i < n; i++)
		ss += x[i] * x[i];
	for (int l = 0; l < 8; l++)
		ss += acc[l];
	float scale = 1.0f / sqrtf(ss / (float)n + eps);
	for (i = 0; i < n; i++)
		y[i] = x[i] * scale * w[i];
}

static void rope_norm_generic(float *x, const float *cd, const float *sd, int n)
{
	for (int k = 0; k < n; k += 2) {
		float a = x[k], b = x[k + 1];
		x[k] = a * cd[k] + b * sd[k];
		x[k + 1] = b * cd[k + 1] + a * sd[k + 1];
	}
}

static void rope_neox_generic(float *x0, float *x1, const float *c, const float *s, int n)
{
	for (int i = 0; i < n; i++) {
		float a = x0[i], b = x1[i];
		x0[i] = a * c[i] - b * s[i];
		x1[i] = a * s[i] + b * c[i];
	}
}

static void softmax_generic(float *x, int n)
{
	if (n <= 0)
		return;
	float max = x[0];
	double sum = 0; /* a float sum of 50k terms drifts by ~1e-5 */
	for (int i = 1; i < n; i++)
		max = x[i] > max ? x[i] : max;
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	float inv = (float)(1.0 / sum);
	for (int i = 0; i < n; i++)
		x[i] *= inv;
}

static void swiglu_generic(float *out, const float *gate, const float *up, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

static float dot_generic(const float *a, const float *b, int n)
{
	float acc[8] = { 0 };
	int d = 0;
	for (; d + 8 <= n; d += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += a[d + l] * b[d + l];
	float s = 0;
	for (; d < n; d++)
		s += a[d] * b[d];
	for (int l = 0; l < 8; l++)
		s += acc[l];
	return s;
}

/* Chunk worker (see ops_impl.h): scores of the visible keys, then the running
 * softmax state and o updated with them. */
static void att_chunk_generic(const struct ops_att *a, int i, int h, int j0, int j1, float *s,
			      float *st, float *o)
{
	const int hd = a->head_dim;
	const int32_t qp = a->q_pos[i];
	const size_t ko = (size_t)(h / a->n_rep) * hd;
	const float *q = a->q + (size_t)i * a->q_stride + (size_t)h * hd;
	float max = -INFINITY, sum = 0;
	for (int j = j0; j < j1; j++) {
		s[j - j0] = -INFINITY;
		if (a->k_pos[j] <= qp)
			s[j - j0] = dot_generic(q, a->k + ko + (size_t)j * a->kv_stride, hd) * a->scale;
		max = s[j - j0] > max ? s[j - j0] : max;
	}
	if (max == -INFINITY)
		return;
	/* q is read; o may alias it from here on */
	int fresh = st[0] == -INFINITY;
	float mnew = fresh || max > st[0] ? max : st[0];
	float alpha = fresh ? 0.0f : expf(st[0] - mnew);
	for (int d = 0; d < hd; d++)
		o[d] = fresh ? 0.0f : o[d] * alpha;
	for (int j = j0; j < j1; j++) {
		if (s[j - j0] == -INFINITY)
			continue;
		float p = expf(s[j - j0] - mnew);
		const float *vj = a->v + ko + (size_t)j * a->kv_stride;
		sum += p;
		for (int d = 0; d < hd; d++)
			o[d] += p * vj[d];
	}
	st[0] = mnew;
	st[1] = st[1] * alpha + sum;
}

/* ================= drivers ================= */

void kern_rmsnorm(float *y, const float *x, const float *w, int n_rows, int n, float eps)
{
	ops_rmsnorm_fn *f = rmsnorm_generic;
	switch (kern_level) {
	case KERN_REF:
		kern_rmsnorm_ref(y, x, w, n_rows, n, eps);
		return;
#ifdef OPS_X86
	case KERN_AVX512:
		f = ops_rmsnorm_avx512;
		break;
	case KERN_AVX2:
		f = ops_rmsnorm_avx2;
		break;
#endif
	default:
		break;
	}
	#pragma omp parallel for schedule(static) if ((int64_t)n_rows * n >= OPS_PAR_MIN && n_rows > 1)
	for (int r = 0; r < n_rows; r++)
		f(y + (size_t)r * n, x + (size_t)r * n, w, n, eps);
}

/* cos/sin of one row's angles pos * inv_freq[i], i < half, in double: directly
 * (libm, ~20 ns a pair), or when the row's position is the previous row's + 1
 * (prefill), the previous row's rotated by inv_freq: a few multiplies, drifting
 * ~1e-16 a step, so OPS_ROPE_RESTART steps still round to the same floats. */
#define OPS_ROPE_MAX_PAIRS 256 /* more pairs: every row direct */
#define OPS_ROPE_RESTART 64
struct rope_angles {
	double c[OPS_ROPE_MAX_PAIRS], s[OPS_ROPE_MAX_PAIRS];   /* this row */
	double c1[OPS_ROPE_MAX_PAIRS], s1[OPS_ROPE_MAX_PAIRS]; /* of inv_freq: the step */
	int64_t pos;    /* position of c, s */
	int steps;      /* rows stepped since the last direct one; -1: none yet */
	int have_step;  /* c1, s1 computed */
};

static void rope_angles_at(struct rope_angles *g, int32_t pos, const float *inv_freq, int half)
{
	if (g->steps >= 0 && g->steps < OPS_ROPE_RESTART && pos == g->pos + 1) {
		if (!g->have_step) {
			for (int i = 0; i < half; i++) {
				g->c1[i] = cos((double)inv_freq[i]);
				g->s1[i] = sin((double)inv_freq[i]);
			}
			g->have_step = 1;
		}
		for (int i = 0; i < half; i++) {
			double c = g->c[i] * g->c1[i] - g->s[i] * g->s1[i];
			g->s[i] = g->s[i] * g->c1[i] + g->c[i] * g->s1[i];
			g->c[i] = c;
		}
		g->steps++;
	} else {
		for (int i = 0; i < half; i++) {
			double th = (double)pos * inv_freq[i]; /* exact, as in ops_rope_cs() */
			g->c[i] = cos(th);
			g->s[i] = sin(th);
		}
		g->steps = 0;
	}
	g->pos = pos;
}

/* One row of RoPE: the row's cos/sin (from g, or computed here when g is NULL)
 * for OPS_ROPE_CHUNK pairs at a time, applied to every head. */
static void rope_row(float *x, int32_t pos, const struct rope_angles *g, int n_head, int head_dim,
		     const struct kern_rope *r, ops_rope_norm_fn *norm, ops_rope_neox_fn *neox)
{
	float c[2 * OPS_ROPE_CHUNK] __attribute__((aligned(64)));
	float s[2 * OPS_ROPE_CHUNK] __attribute__((aligned(64)));
	const int half = r->n_rot / 2;
	for (int i0 = 0; i0 < half; i0 += OPS_ROPE_CHUNK) {
		int n = half - i0 < OPS_ROPE_CHUNK ? half - i0 : OPS_ROPE_CHUNK;
		for (int i = 0; i < n; i++) {
			float ci, si;
			if (g) {
				ci = (float)g->c[i0 + i];
				si = (float)g->s[i0 + i];
			} else {
				ops_rope_cs(pos, r->inv_freq[i0 + i], &ci, &si);
			}
			if (r->mode == KERN_ROPE_NORM) {
				c[2 * i] = c[2 * i + 1] = ci;
				s[2 * i] = -si;
				s[2 * i + 1] = si;
			} else {
				c[i] = ci;
				s[i] = si;
			}
		}
		for (int h = 0; h < n_head; h++) {
			float *xh = x + (size_t)h * head_dim;
			if (r->mode == KERN_ROPE_NORM)
				norm(xh + 2 * i0, c, s, 2 * n);
			else
				neox(xh + i0, xh + half + i0, c, s, n);
		}
	}
}

void kern_rope(float *x, const int32_t *pos, int n_tok, int n_head, int head_dim,
	       const struct kern_rope *r)
{
	ops_rope_norm_fn *norm = rope_norm_generic;
	ops_rope_neox_fn *neox = rope_neox_generic;
	switch (kern_level) {
	case KERN_REF:
		kern_rope_ref(x, pos, n_tok, n_head, head_dim, r);
		return;
#ifdef OPS_X86
	case KERN_AVX512:
		norm = ops_rope_norm_avx512;
		neox = ops_rope_neox_avx512;
		break;
	case KERN_AVX2:
		norm = ops_rope_norm_avx2;
		neox = ops_rope_neox_avx2;
		break;
#endif
	default:
		break;
	}
	ASSERT(r->n_rot % 2 == 0 && r->n_rot <= head_dim);
	ASSERT(r->mode == KERN_ROPE_NORM || r->mode == KERN_ROPE_NEOX);
	const size_t row = (size_t)n_head * head_dim;
	const int half = r->n_rot / 2;
	/* each thread a run of consecutive rows, so the angles can step from row to row */
	#pragma omp parallel if (n_tok >= 4)
	{
		struct rope_angles g = { .steps = -1 };
		int t0 = (int)((int64_t)n_tok * ops_thread() / ops_team());
		int t1 = (int)((int64_t)n_tok * (ops_thread() + 1) / ops_team());
		for (int t = t0; t < t1; t++) {
			if (half <= OPS_ROPE_MAX_PAIRS)
				rope_angles_at(&g, pos[t], r->inv_freq, half);
			rope_row(x + t * row, pos[t], half <= OPS_ROPE_MAX_PAIRS ? &g : NULL, n_head,
				 head_dim, r, norm, neox);
		}
	}
}

void kern_softmax(float *x, int n)
{
	switch (kern_level) {
	case KERN_REF:
		kern_softmax_ref(x, n);
		return;
#ifdef OPS_X86
	case KERN_AVX512:
		ops_softmax_avx512(x, n);
		return;
	case KERN_AVX2:
		ops_softmax_avx2(x, n);
		return;
#endif
	default:
		softmax_generic(x, n);
		return;
	}
}

void kern_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
	ops_swiglu_fn *f = swiglu_generic;
	switch (kern_level) {
	case KERN_REF:
		kern_swiglu_ref(out, gate, up, n);
		return;
#ifdef OPS_X86
	case KERN_AVX512:
		f = ops_swiglu_avx512;
		break;
	case KERN_AVX2:
		f = ops_swiglu_avx2;
		break;
#endif
	default:
		break;
	}
	const int64_t chunk = 8192; /* a multiple of every SIMD width */
	const int64_t n_chunk = (n + chunk - 1) / chunk;
	#pragma omp parallel for schedule(static) if (n >= OPS_PAR_MIN)
	for (int64_t c = 0; c < n_chunk; c++) {
		int64_t i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
		f(out + i0, gate + i0, up + i0, m);
	}
}

/* Floats of one thread's attention scratch: the most of the row path's scores,
 * the tile path's buffers and the split path's chunk scores and running state of
 * every (query, head). Grows with each argument, so a size for the largest call
 * serves every smaller one. */
static size_t att_slot_floats(int n_q, int n_kv, int n_head)
{
	int nq = n_q < OPS_ATT_SPLIT_MAX_Q ? n_q : OPS_ATT_SPLIT_MAX_Q;
	size_t f = (size_t)(n_kv > OPS_ATT_TILE_FLOATS ? n_kv : OPS_ATT_TILE_FLOATS);
	size_t split = OPS_ATT_CHUNK_MAX + (size_t)nq * n_head * (2 + OPS_ATT_MAX_HD);
	return split > f ? split : f;
}

static size_t att_slot_bytes(int n_q, int n_kv, int n_head)
{
	return (att_slot_floats(n_q, n_kv, n_head) * sizeof(float) + 63) & ~(size_t)63;
}

/* Scratch: a slot for each of up to ops_slots() threads (the processors; the
 * kernel never runs more), + 64 to align ws. Enough for every call with at most
 * these n_q, n_kv and n_head, whatever the thread count is set to later. */
size_t kern_attention_wsize(int n_q, int n_kv, int n_head)
{
	return (size_t)ops_slots() * att_slot_bytes(n_q, n_kv, n_head) + 64;
}

/* out row = o / st[1], or zeros when the query saw no key. */
static void att_finish(float *o, const float *st, int hd)
{
	if (st[0] == -INFINITY) {
		memset(o, 0, (size_t)hd * sizeof *o);
		return;
	}
	float inv = 1.0f / st[1];
	for (int d = 0; d < hd; d++)
		o[d] *= inv;
}

static void att_run_rows(const struct ops_att *a, char *ws, int nt, ops_att_chunk_fn *chunk)
{
	const size_t slot = att_slot_bytes(a->n_q, a->n_kv, a->n_head);
	const long n_items = (long)a->n_q * a->n_head;
	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n_items > 1)
	for (long it = 0; it < n_items; it++) {
		int i = (int)(it / a->n_head), h = (int)(it % a->n_head);
		float *o = a->out + (size_t)i * a->q_stride + (size_t)h * a->head_dim;
		float st[2] = { -INFINITY, 0.0f };
		chunk(a, i, h, 0, a->n_kv, (float *)(ws + (size_t)ops_thread() * slot), st, o);
		att_finish(o, st, a->head_dim);
	}
}

/* Merge the team's running states of (i, h) into out. */
static void att_combine(const struct ops_att *a, int i, int h, const char *ws, size_t slot, int team)
{
	const int hd = a->head_dim;
	const size_t off = OPS_ATT_CHUNK_MAX + ((size_t)i * a->n_head + h) * (2 + hd);
	float *o = a->out + (size_t)i * a->q_stride + (size_t)h * hd;
	float st[2] = { -INFINITY, 0.0f };
	for (int t = 0; t < team; t++) {
		const float *p = (const float *)(ws + t * slot) + off;
		st[0] = p[0] > st[0] ? p[0] : st[0];
	}
	for (int t = 0, first = 1; t < team && st[0] > -INFINITY; t++) {
		const float *p = (const float *)(ws + t * slot) + off;
		if (p[0] == -INFINITY)
			continue;
		float w = expf(p[0] - st[0]);
		for (int d = 0; d < hd; d++)
			o[d] = (first ? 0.0f : o[d]) + w * p[2 + d];
		st[1] += w * p[1];
		first = 0;
	}
	att_finish(o, st, hd);
}

static void att_run_split(const struct ops_att *a, char *ws, int nt, ops_att_chunk_fn *chunk)
{
	const size_t slot = att_slot_bytes(a->n_q, a->n_kv, a->n_head), part = 2 + (size_t)a->head_dim;
	/* a chunk's K and V of one kv head stay within 64 KiB (cached for the heads
	 * that follow), and each thread gets a few chunks where the keys allow */
	int ch = (a->n_kv + 4 * nt - 1) / (4 * nt), ch_cache = 8192 / a->head_dim;
	ch = ch > ch_cache ? ch_cache : ch;
	ch = ch < 16 ? 16 : ch > OPS_ATT_CHUNK_MAX ? OPS_ATT_CHUNK_MAX : (ch + 15) & ~15;
	const int n_chunk = (a->n_kv + ch - 1) / ch, n_items = a->n_q * a->n_head;
	int team = 1;
	/* one fork/join: each thread starts its own states, folds its chunks in */
	#pragma omp parallel num_threads(nt)
	{
		float *s = (float *)(ws + (size_t)ops_thread() * slot), *st = s + OPS_ATT_CHUNK_MAX;
		for (int it = 0; it < n_items; it++)
			st[it * part] = -INFINITY, st[it * part + 1] = 0.0f;
		if (ops_thread() == 0)
			team = ops_team();
		/* static: the same chunks meet in the same order every run (deterministic) */
		#pragma omp for schedule(static, 1) nowait
		for (int c = 0; c < n_chunk; c++) {
			int j1 = (c + 1) * ch < a->n_kv ? (c + 1) * ch : a->n_kv;
			for (int it = 0; it < n_items; it++)
				chunk(a, it / a->n_head, it % a->n_head, c * ch, j1, s, st + it * part,
				      st + it * part + 2);
		}
	}
	#pragma omp parallel for schedule(static) if ((int64_t)n_items * team * a->head_dim >= OPS_PAR_MIN)
	for (int it = 0; it < n_items; it++)
		att_combine(a, it / a->n_head, it % a->n_head, ws, slot, team);
}

/* Items of OPS_ATT_TILE_NB blocks; the last queries first: under a causal mask
 * they see the most keys. */
static void att_run_tiles(const struct ops_att *a, char *ws, int nt, ops_att_tile_fn *tile, int w)
{
	const size_t slot = att_slot_bytes(a->n_q, a->n_kv, a->n_head);
	const int n_blk = (a->n_q * a->n_rep + w - 1) / w;
	const int n_grp = (n_blk + OPS_ATT_TILE_NB - 1) / OPS_ATT_TILE_NB;
	const long n_items = (long)n_grp * a->n_kv_head;
	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n_items > 1)
	for (long it = 0; it < n_items; it++) {
		int b0 = (n_grp - 1 - (int)(it / a->n_kv_head)) * OPS_ATT_TILE_NB;
		int nb = n_blk - b0 < OPS_ATT_TILE_NB ? n_blk - b0 : OPS_ATT_TILE_NB;
		tile(a, (int)(it % a->n_kv_head), b0 * w, nb, (float *)(ws + (size_t)ops_thread() * slot));
	}
}

void kern_attention(float *out, const float *q, int q_stride,
		    const float *k, const float *v, int kv_stride,
		    const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
		    int n_head, int n_kv_head, int head_dim, void *ws)
{
	if (kern_level == KERN_REF) {
		kern_attention_ref(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, n_q, n_kv,
				   n_head, n_kv_head, head_dim);
		return;
	}
	ASSERT(n_kv_head > 0 && n_head % n_kv_head == 0 && ws);
	const struct ops_att a = {
		.out = out, .q = q, .k = k, .v = v, .q_pos = q_pos, .k_pos = k_pos,
		.q_stride = q_stride, .kv_stride = kv_stride, .n_q = n_q, .n_kv = n_kv,
		.n_head = n_head, .n_kv_head = n_kv_head, .head_dim = head_dim,
		.n_rep = n_head / n_kv_head, .scale = 1.0f / sqrtf((float)head_dim),
	};
	ops_att_chunk_fn *chunk = att_chunk_generic;
	ops_att_tile_fn *tile = NULL;
	int w = 1;
	switch (kern_level) {
#ifdef OPS_X86
	case KERN_AVX512:
		chunk = ops_att_chunk_avx512;
		tile = ops_att_tile_avx512;
		w = 16;
		break;
	case KERN_AVX2:
		chunk = ops_att_chunk_avx2;
		tile = ops_att_tile_avx2;
		w = 8;
		break;
#endif
	default:
		break;
	}
	char *base = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
	int nt = ops_max_threads();
	if (head_dim <= OPS_ATT_MAX_HD && n_q <= OPS_ATT_SPLIT_MAX_Q)
		att_run_split(&a, base, nt, chunk);
	else if (tile && head_dim <= OPS_ATT_MAX_HD && n_q * a.n_rep >= w / 2)
		att_run_tiles(&a, base, nt, tile, w);
	else
		att_run_rows(&a, base, nt, chunk);
}
