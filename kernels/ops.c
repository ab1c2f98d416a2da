/* ops.c — the dispatched non-matmul kernels (kernels.h): the drivers that own
 * the loops over rows and their threading (pool.h), the portable C variant of each
 * worker, and the table of each ISA level's workers (ops_for) that picks them.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "ops_impl.h"
#include "util.h"

/* Parallelise a loop only when it has at least this many floats of work. */
#define OPS_PAR_MIN 32768
/* Items per thread a parallel loop over rows is cut into: enough that threads
 * which run take over the share of one that does not. */
#define OPS_ITEMS_PER_THREAD 8
#define OPS_ATT_PAR_MIN (1 << 18) /* multiply-adds of q.k below which attention stays on one thread */

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

static void gelu_generic(float *out, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		out[i] = v / (1.0f + expf(-2.0f * v * (OPS_GELU_A + OPS_GELU_B * v * v)));
	}
}

/* One row: the mean first (summed in double: a float sum of a few hundred
 * values near 30, where BERT's residual stream can sit, is off by ~1e-5 of the
 * spread), then the variance about it in float (the centred values are small). */
static void layernorm_row(float *y, const float *x, const float *w, const float *b, int n, float eps)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += x[i];
	const float mean = (float)(s / n);
	float acc[8] = { 0 };
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += (x[i + l] - mean) * (x[i + l] - mean);
	float ss = 0;
	for (; i < n; i++)
		ss += (x[i] - mean) * (x[i] - mean);
	for (int l = 0; l < 8; l++)
		ss += acc[l];
	const float scale = 1.0f / sqrtf(ss / (float)n + eps);
	for (i = 0; i < n; i++)
		y[i] = (x[i] - mean) * scale * w[i] + b[i];
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
	const int32_t *kp = ops_att_kpos(a, h / a->n_rep);
	const int32_t lo = ops_att_lo(a, qp);
	float max = -INFINITY, sum = 0;
	for (int j = j0; j < j1; j++) {
		s[j - j0] = -INFINITY;
		if (kp[j] <= qp && kp[j] > lo)
			s[j - j0] = dot_generic(q, a->k + ko + (size_t)j * a->kv_stride, hd) * a->scale;
		max = s[j - j0] > max ? s[j - j0] : max;
	}
	if (a->softcap > 0)
		max = ops_att_softcap(s, j1 - j0, a->softcap);
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

/* Tile worker (see ops_impl.h) in portable C: lanes in pairs of 4-float GCC
 * vectors, which compilers map onto 16-byte SIMD (SSE2, NEON, ...); wider
 * generic vectors get lowered through memory. */
#define GW 8
#define GT OPS_ATT_TILE
typedef float gvec __attribute__((vector_size(4 * sizeof(float))));
typedef int32_t givec __attribute__((vector_size(4 * sizeof(int32_t))));

/* Unaligned vector load and store. */
static inline gvec gv_load(const float *p)
{
	gvec v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline void gv_store(float *p, gvec v)
{
	memcpy(p, &v, sizeof v);
}

struct tile_g {
	float *qt, *o, *p;                  /* qt [hd][GW], o [GW][hd], p [GT][GW] */
	float m[GW], l[GW], alpha[GW];      /* online softmax state per lane */
	int32_t qpos[GW], qlo[GW];          /* a lane sees keys at qlo < k_pos <= qpos */
	int live_lane[GW];                  /* lane holds a query vector */
	int nv;
	int32_t qmax, qlo_min;
};

static inline int tile_sees_g(const struct tile_g *t, int l, int32_t kp)
{
	return t->live_lane[l] && kp <= t->qpos[l] && kp > t->qlo[l];
}

/* e^x for 4 lanes, ~2 ulp (Cephes): x = n ln2 + r, n rounded with the 1.5 * 2^23
 * trick, 2^n built in the exponent bits. x is clamped to [-87.3, 88.3]: -inf
 * gives ~1e-38, which callers mask. NaN propagates. */
static inline gvec gv_exp(gvec x)
{
	const gvec zero = { 0 };
	givec lo = x < -87.3f, hi = x > 88.3f;
	x = (gvec)((lo & (givec)(zero - 87.3f)) | (~lo & (givec)x));
	x = (gvec)((hi & (givec)(zero + 88.3f)) | (~hi & (givec)x));
	gvec n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	gvec r = x - n * 0.693359375f - n * -2.12194440e-4f;
	gvec p = zero + 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	givec e = (__builtin_convertvector(n, givec) + 127) << 23;
	return (p * r * r + r + 1.0f) * (gvec)e;
}

static void exp_lanes(float *y, const float *x)
{
	gv_store(y, gv_exp(gv_load(x)));
	gv_store(y + 4, gv_exp(gv_load(x + 4)));
}

static void tile_pack_g(struct tile_g *t, const struct ops_att *a, int g, int v0)
{
	const int hd = a->head_dim;
	t->nv = 0;
	t->qmax = INT32_MIN;
	t->qlo_min = INT32_MAX;
	for (int l = 0; l < GW; l++) {
		int i = 0, h = 0;
		t->m[l] = -INFINITY;
		t->l[l] = 0.0f;
		t->live_lane[l] = ops_att_lane(a, g, v0 + l, &i, &h);
		t->qpos[l] = t->live_lane[l] ? a->q_pos[i] : INT32_MIN;
		t->qlo[l] = t->live_lane[l] ? ops_att_lo(a, t->qpos[l]) : INT32_MAX;
		t->qlo_min = t->qlo[l] < t->qlo_min ? t->qlo[l] : t->qlo_min;
		for (int d = 0; d < hd; d++)
			t->qt[d * GW + l] = t->live_lane[l] ? a->q[(size_t)i * a->q_stride + (size_t)h * hd + d] * a->scale : 0.0f;
		if (t->live_lane[l]) {
			t->qmax = t->qpos[l] > t->qmax ? t->qpos[l] : t->qmax;
			t->nv++;
		}
	}
	memset(t->o, 0, (size_t)GW * hd * sizeof *t->o);
}

/* p[jj][lane] = q_lane . k_jj, 4 keys at a time. */
static void tile_scores_g(float *p, const float *qt, const float *k, size_t stride, int nk, int hd)
{
	int jj = 0;
	for (; jj + 4 <= nk; jj += 4) {
		const float *k0 = k + jj * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
		gvec a0 = { 0 }, b0 = { 0 }, a1 = { 0 }, b1 = { 0 }, a2 = { 0 }, b2 = { 0 }, a3 = { 0 }, b3 = { 0 };
		for (int d = 0; d < hd; d++) {
			gvec qa = gv_load(qt + d * GW), qb = gv_load(qt + d * GW + 4);
			a0 += k0[d] * qa, b0 += k0[d] * qb;
			a1 += k1[d] * qa, b1 += k1[d] * qb;
			a2 += k2[d] * qa, b2 += k2[d] * qb;
			a3 += k3[d] * qa, b3 += k3[d] * qb;
		}
		gv_store(p + (jj + 0) * GW, a0), gv_store(p + (jj + 0) * GW + 4, b0);
		gv_store(p + (jj + 1) * GW, a1), gv_store(p + (jj + 1) * GW + 4, b1);
		gv_store(p + (jj + 2) * GW, a2), gv_store(p + (jj + 2) * GW + 4, b2);
		gv_store(p + (jj + 3) * GW, a3), gv_store(p + (jj + 3) * GW + 4, b3);
	}
	for (; jj < nk; jj++) {
		gvec a0 = { 0 }, b0 = { 0 };
		for (int d = 0; d < hd; d++) {
			a0 += k[jj * stride + d] * gv_load(qt + d * GW);
			b0 += k[jj * stride + d] * gv_load(qt + d * GW + 4);
		}
		gv_store(p + jj * GW, a0), gv_store(p + jj * GW + 4, b0);
	}
}

/* Online softmax over one tile (as tile_softmax512): live keys packed to the front
 * of p, their tile index in live_j; returns their count. */
static int tile_softmax_g(struct tile_g *t, const int32_t *k_pos, int nk, int *live_j)
{
	float mnew[GW], mref[GW], e[GW];
	for (int l = 0; l < GW; l++)
		mnew[l] = t->m[l];
	for (int jj = 0; jj < nk; jj++)
		for (int l = 0; l < GW; l++)
			if (tile_sees_g(t, l, k_pos[jj]) && t->p[jj * GW + l] > mnew[l])
				mnew[l] = t->p[jj * GW + l];
	for (int l = 0; l < GW; l++) {
		mref[l] = mnew[l] == -INFINITY ? 0.0f : mnew[l];
		e[l] = t->m[l] - mref[l];
	}
	exp_lanes(t->alpha, e);
	for (int l = 0; l < GW; l++) {
		t->alpha[l] = t->m[l] == -INFINITY ? 0.0f : t->alpha[l];
		t->l[l] *= t->alpha[l];
		t->m[l] = mnew[l];
	}
	int n = 0;
	for (int jj = 0; jj < nk; jj++) {
		int any = 0;
		for (int l = 0; l < GW; l++) {
			e[l] = t->p[jj * GW + l] - mref[l];
			any |= tile_sees_g(t, l, k_pos[jj]);
		}
		if (!any)
			continue;
		exp_lanes(t->p + n * GW, e); /* n <= jj: row jj is read before */
		for (int l = 0; l < GW; l++) {
			int live = tile_sees_g(t, l, k_pos[jj]);
			t->p[n * GW + l] = live ? t->p[n * GW + l] : 0.0f;
			t->l[l] += t->p[n * GW + l];
		}
		live_j[n++] = jj;
	}
	return n;
}

/* o[l] = o[l] * alpha[l] + sum_jj p[jj][l] v_jj over the live keys: 16 dims at a
 * time, then 4, then single floats. */
static void tile_pv_g(struct tile_g *t, const float *v, size_t stride, const int *live_j, int nk, int hd)
{
	for (int l = 0; l < t->nv; l++) {
		float *o = t->o + l * hd;
		const float al = t->alpha[l];
		int d = 0;
		for (; d + 16 <= hd; d += 16) {
			gvec a0 = al * gv_load(o + d), a1 = al * gv_load(o + d + 4);
			gvec a2 = al * gv_load(o + d + 8), a3 = al * gv_load(o + d + 12);
			for (int jj = 0; jj < nk; jj++) {
				const float pl = t->p[jj * GW + l], *vj = v + live_j[jj] * stride + d;
				a0 += pl * gv_load(vj);
				a1 += pl * gv_load(vj + 4);
				a2 += pl * gv_load(vj + 8);
				a3 += pl * gv_load(vj + 12);
			}
			gv_store(o + d, a0);
			gv_store(o + d + 4, a1);
			gv_store(o + d + 8, a2);
			gv_store(o + d + 12, a3);
		}
		for (; d + 4 <= hd; d += 4) {
			gvec a0 = al * gv_load(o + d);
			for (int jj = 0; jj < nk; jj++)
				a0 += t->p[jj * GW + l] * gv_load(v + live_j[jj] * stride + d);
			gv_store(o + d, a0);
		}
		for (; d < hd; d++) {
			float a0 = al * o[d];
			for (int jj = 0; jj < nk; jj++)
				a0 += t->p[jj * GW + l] * v[live_j[jj] * stride + d];
			o[d] = a0;
		}
	}
}

static void att_tile_generic(const struct ops_att *a, int g, int v0, int nb, float *scratch)
{
	const int hd = a->head_dim;
	const size_t stride = (size_t)a->kv_stride, ko = (size_t)g * hd;
	struct tile_g t[OPS_ATT_TILE_NB];
	int32_t qmax = INT32_MIN;
	for (int b = 0; b < nb; b++) {
		float *f = scratch + (size_t)b * OPS_ATT_BLOCK_FLOATS(hd, GW);
		t[b].qt = f;
		t[b].o = f + hd * GW;
		t[b].p = f + 2 * hd * GW;
		tile_pack_g(&t[b], a, g, v0 + b * GW);
		qmax = t[b].qmax > qmax ? t[b].qmax : qmax;
	}
	for (int j0 = 0; j0 < a->n_kv; j0 += GT) {
		int nk = a->n_kv - j0 < GT ? a->n_kv - j0 : GT, live_j[GT];
		int32_t kmin, kmax;
		ops_att_krange(ops_att_kpos(a, g) + j0, nk, &kmin, &kmax);
		for (int b = 0; b < nb && kmin <= qmax; b++) {
			if (kmin > t[b].qmax || kmax <= t[b].qlo_min)
				continue; /* every key of the tile is in every lane's future, or behind its window */
			tile_scores_g(t[b].p, t[b].qt, a->k + ko + j0 * stride, stride, nk, hd);
			if (a->softcap > 0)
				(void)ops_att_softcap(t[b].p, nk * GW, a->softcap);
			int n_live = tile_softmax_g(&t[b], ops_att_kpos(a, g) + j0, nk, live_j);
			if (n_live)
				tile_pv_g(&t[b], a->v + ko + j0 * stride, stride, live_j, n_live, hd);
		}
	}
	for (int b = 0; b < nb; b++) {
		for (int ln = 0; ln < t[b].nv; ln++) {
			int i = 0, h = 0;
			ops_att_lane(a, g, v0 + b * GW + ln, &i, &h);
			float *out = a->out + (size_t)i * a->q_stride + (size_t)h * hd;
			float inv = t[b].l[ln] > 0 ? 1.0f / t[b].l[ln] : 0.0f;
			for (int d = 0; d < hd; d++)
				out[d] = t[b].o[ln * hd + d] * inv;
		}
	}
}

/* ================= the workers of each level ================= */

struct ops_isa {
	ops_rmsnorm_fn *rmsnorm;
	ops_rope_norm_fn *rope_norm;
	ops_rope_neox_fn *rope_neox;
	ops_softmax_fn *softmax;
	ops_swiglu_fn *swiglu;
	ops_gelu_fn *gelu;
	ops_att_chunk_fn *att_chunk;
	ops_att_tile_fn *att_tile;
	int att_w; /* query vectors per attention tile */
};

static const struct ops_isa ops_generic = {
	.rmsnorm = rmsnorm_generic, .rope_norm = rope_norm_generic, .rope_neox = rope_neox_generic,
	.softmax = softmax_generic, .swiglu = swiglu_generic, .gelu = gelu_generic,
	.att_chunk = att_chunk_generic, .att_tile = att_tile_generic, .att_w = GW,
};
#ifdef OPS_X86
static const struct ops_isa ops_avx2 = {
	.rmsnorm = ops_rmsnorm_avx2, .rope_norm = ops_rope_norm_avx2, .rope_neox = ops_rope_neox_avx2,
	.softmax = ops_softmax_avx2, .swiglu = ops_swiglu_avx2, .gelu = ops_gelu_avx2,
	.att_chunk = ops_att_chunk_avx2, .att_tile = ops_att_tile_avx2, .att_w = 8,
};
static const struct ops_isa ops_avx512 = {
	.rmsnorm = ops_rmsnorm_avx512, .rope_norm = ops_rope_norm_avx512, .rope_neox = ops_rope_neox_avx512,
	.softmax = ops_softmax_avx512, .swiglu = ops_swiglu_avx512, .gelu = ops_gelu_avx512,
	.att_chunk = ops_att_chunk_avx512, .att_tile = ops_att_tile_avx512, .att_w = 16,
};
#endif

/* The workers of the level kern_init() chose (KERN_REF has none: each driver
 * calls its whole-op _ref function instead). */
static const struct ops_isa *ops_for(enum kern_level l)
{
	switch (l) {
#ifdef OPS_X86
	case KERN_AVX512:
		return &ops_avx512;
	case KERN_AVX2:
		return &ops_avx2;
#endif
	default:
		return &ops_generic;
	}
}

/* ================= drivers ================= */

/* A loop over [0, n) cut into ranges: body(ctx, i0, i1) for each, on the
 * pool's threads when par, else on this thread. */
typedef void ops_range_fn(const void *ctx, long i0, long i1);
struct ops_range {
	ops_range_fn *body;
	const void *ctx;
	long n, n_items;
};

static void ops_range_item(void *ctx, long i, int thread)
{
	const struct ops_range *r = ctx;
	(void)thread;
	r->body(r->ctx, r->n * i / r->n_items, r->n * (i + 1) / r->n_items);
}

static void ops_for_range(long n, int par, ops_range_fn *body, const void *ctx)
{
	int nt = par ? kern_threads() : 1;
	long items = (long)nt * OPS_ITEMS_PER_THREAD;
	struct ops_range r = { body, ctx, n, n < items ? n : items };
	if (nt == 1 || n <= 1)
		body(ctx, 0, n);
	else
		kern_parallel(r.n_items, nt, ops_range_item, &r);
}

struct ops_norm {
	ops_rmsnorm_fn *rms;
	float *y;
	const float *x, *w, *b;
	int n;
	float eps;
};

static void rmsnorm_rows(const void *ctx, long r0, long r1)
{
	const struct ops_norm *k = ctx;
	for (long r = r0; r < r1; r++)
		k->rms(k->y + (size_t)r * k->n, k->x + (size_t)r * k->n, k->w, k->n, k->eps);
}

void kern_rmsnorm(float *y, const float *x, const float *w, int n_rows, int n, float eps)
{
	if (kern_level == KERN_REF) {
		kern_rmsnorm_ref(y, x, w, n_rows, n, eps);
		return;
	}
	struct ops_norm k = { .rms = ops_for(kern_level)->rmsnorm, .y = y, .x = x, .w = w, .n = n, .eps = eps };
	ops_for_range(n_rows, (int64_t)n_rows * n >= OPS_PAR_MIN, rmsnorm_rows, &k);
}

static void layernorm_rows(const void *ctx, long r0, long r1)
{
	const struct ops_norm *k = ctx;
	for (long r = r0; r < r1; r++)
		layernorm_row(k->y + (size_t)r * k->n, k->x + (size_t)r * k->n, k->w, k->b, k->n, k->eps);
}

/* Rows are short (hundreds of floats) and the compiler vectorises the plain
 * loops of layernorm_row well enough: one variant for every level but ref. */
void kern_layernorm(float *y, const float *x, const float *w, const float *b, int n_rows, int n, float eps)
{
	if (kern_level == KERN_REF) {
		kern_layernorm_ref(y, x, w, b, n_rows, n, eps);
		return;
	}
	struct ops_norm k = { .y = y, .x = x, .w = w, .b = b, .n = n, .eps = eps };
	ops_for_range(n_rows, (int64_t)n_rows * n >= OPS_PAR_MIN, layernorm_rows, &k);
}

/* cos/sin of one row's angles pos * inv_freq[i], i < half, in double: the
 * previous row's when the position repeats; when it is the previous row's + 1
 * (prefill), the previous row's rotated by inv_freq: a few multiplies, drifting
 * ~1e-16 a step, so OPS_ROPE_RESTART steps still round to the same floats;
 * otherwise directly (libm, ~20 ns a pair). */
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
	if (g->steps >= 0 && pos == g->pos)
		return; /* a run of rows turned by one delta (blend moving a chunk) */
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

struct ops_rope_task {
	float *x;
	const int32_t *pos;
	int n_head, head_dim, half;
	const struct kern_rope *r;
	ops_rope_norm_fn *norm;
	ops_rope_neox_fn *neox;
};

/* A run of consecutive rows, so the angles can step from row to row. */
static void rope_rows(const void *ctx, long t0, long t1)
{
	const struct ops_rope_task *k = ctx;
	const size_t row = (size_t)k->n_head * k->head_dim;
	struct rope_angles g = { .steps = -1 };
	for (long t = t0; t < t1; t++) {
		if (k->half <= OPS_ROPE_MAX_PAIRS)
			rope_angles_at(&g, k->pos[t], k->r->inv_freq, k->half);
		rope_row(k->x + t * row, k->pos[t], k->half <= OPS_ROPE_MAX_PAIRS ? &g : NULL, k->n_head,
			 k->head_dim, k->r, k->norm, k->neox);
	}
}

void kern_rope(float *x, const int32_t *pos, int n_tok, int n_head, int head_dim,
	       const struct kern_rope *r)
{
	if (kern_level == KERN_REF) {
		kern_rope_ref(x, pos, n_tok, n_head, head_dim, r);
		return;
	}
	ASSERT(r->n_rot % 2 == 0 && r->n_rot <= head_dim);
	ASSERT(r->mode == KERN_ROPE_NORM || r->mode == KERN_ROPE_NEOX);
	struct ops_rope_task k = {
		.x = x, .pos = pos, .n_head = n_head, .head_dim = head_dim, .half = r->n_rot / 2, .r = r,
		.norm = ops_for(kern_level)->rope_norm, .neox = ops_for(kern_level)->rope_neox,
	};
	ops_for_range(n_tok, n_tok >= 4 && (int64_t)n_tok * n_head * r->n_rot >= OPS_PAR_MIN, rope_rows, &k);
}

void kern_softmax(float *x, int n)
{
	if (kern_level == KERN_REF)
		kern_softmax_ref(x, n);
	else
		ops_for(kern_level)->softmax(x, n);
}

struct ops_act {
	ops_swiglu_fn *swiglu;
	ops_gelu_fn *gelu;
	float *out;
	const float *a, *b;
	int64_t n;
};

#define OPS_ACT_CHUNK 8192 /* a multiple of every SIMD width */

static void act_chunks(const void *ctx, long c0, long c1)
{
	const struct ops_act *k = ctx;
	for (long c = c0; c < c1; c++) {
		int64_t i0 = c * OPS_ACT_CHUNK, m = k->n - i0 < OPS_ACT_CHUNK ? k->n - i0 : OPS_ACT_CHUNK;
		if (k->swiglu)
			k->swiglu(k->out + i0, k->a + i0, k->b + i0, m);
		else
			k->gelu(k->out + i0, k->a + i0, m);
	}
}

void kern_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
	if (kern_level == KERN_REF) {
		kern_swiglu_ref(out, gate, up, n);
		return;
	}
	struct ops_act k = { .swiglu = ops_for(kern_level)->swiglu, .out = out, .a = gate, .b = up, .n = n };
	ops_for_range((n + OPS_ACT_CHUNK - 1) / OPS_ACT_CHUNK, n >= OPS_PAR_MIN, act_chunks, &k);
}

bool kern_f16_to_f32(float *dst, const void *src, int64_t n)
{
	kern_init(); /* readers of caches need no model, and no call to it of their own */
#ifdef OPS_X86
	if (kern_level >= KERN_AVX2) {
		ops_f16_to_f32_f16c(dst, src, n);
		return true;
	}
#endif
	(void)dst, (void)src, (void)n;
	return false;
}

void kern_gelu(float *out, const float *x, int64_t n)
{
	if (kern_level == KERN_REF) {
		kern_gelu_ref(out, x, n);
		return;
	}
	struct ops_act k = { .gelu = ops_for(kern_level)->gelu, .out = out, .a = x, .n = n };
	ops_for_range((n + OPS_ACT_CHUNK - 1) / OPS_ACT_CHUNK, n >= OPS_PAR_MIN, act_chunks, &k);
}

/* Floats of one slot of attention scratch: the most of the row path's scores,
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

/* Lanes of the split path per thread: each lane a slot of scratch. */
#define OPS_ATT_LANES 2

/* Scratch: OPS_ATT_LANES slots for each of up to kern_slots() threads (the
 * processors; the kernel never runs more), + 64 to align ws. Enough for every
 * call with at most these n_q, n_kv and n_head, whatever the thread count is
 * set to later. */
size_t kern_attention_wsize(int n_q, int n_kv, int n_head)
{
	return (size_t)OPS_ATT_LANES * kern_slots() * att_slot_bytes(n_q, n_kv, n_head) + 64;
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

/* One attention call's work, cut into items for the pool. */
struct att_task {
	const struct ops_att *a;
	char *ws;
	size_t slot;
	ops_att_chunk_fn *chunk;
	ops_att_tile_fn *tile;
	int w, per, n_grp;         /* tiles: vectors per block, blocks per item, items per kv head */
	int ch, n_chunk, lanes;    /* split: keys per chunk, chunks, lanes */
};

/* Row path: item = (query, head), all keys. */
static void att_rows_item(void *ctx, long it, int thread)
{
	const struct att_task *k = ctx;
	const struct ops_att *a = k->a;
	int i = (int)(it / a->n_head), h = (int)(it % a->n_head);
	float *o = a->out + (size_t)i * a->q_stride + (size_t)h * a->head_dim;
	float st[2] = { -INFINITY, 0.0f };
	k->chunk(a, i, h, 0, a->n_kv, (float *)(k->ws + (size_t)thread * k->slot), st, o);
	att_finish(o, st, a->head_dim);
}

/* Split path: item = lane, which folds chunks lane, lane + lanes, ... of every
 * (query, head) into running states of its own slot. The lanes are fixed by
 * the thread count, not by which thread runs them, so the sums meet in the
 * same order every run (deterministic). */
static void att_split_item(void *ctx, long lane, int thread)
{
	const struct att_task *k = ctx;
	const struct ops_att *a = k->a;
	const size_t part = 2 + (size_t)a->head_dim;
	const int n_items = a->n_q * a->n_head;
	float *s = (float *)(k->ws + (size_t)lane * k->slot), *st = s + OPS_ATT_CHUNK_MAX;
	(void)thread;
	for (int it = 0; it < n_items; it++)
		st[it * part] = -INFINITY, st[it * part + 1] = 0.0f;
	for (int c = (int)lane; c < k->n_chunk; c += k->lanes) {
		int j1 = (c + 1) * k->ch < a->n_kv ? (c + 1) * k->ch : a->n_kv;
		for (int it = 0; it < n_items; it++)
			k->chunk(a, it / a->n_head, it % a->n_head, c * k->ch, j1, s, st + it * part,
				 st + it * part + 2);
	}
}

/* Merge the lanes' running states of (i, h) into out. */
static void att_combine_item(void *ctx, long it, int thread)
{
	const struct att_task *k = ctx;
	const struct ops_att *a = k->a;
	const int hd = a->head_dim, i = (int)(it / a->n_head), h = (int)(it % a->n_head);
	const size_t off = OPS_ATT_CHUNK_MAX + ((size_t)i * a->n_head + h) * (2 + hd);
	float *o = a->out + (size_t)i * a->q_stride + (size_t)h * hd;
	float st[2] = { -INFINITY, 0.0f };
	(void)thread;
	for (int t = 0; t < k->lanes; t++) {
		const float *p = (const float *)(k->ws + t * k->slot) + off;
		st[0] = p[0] > st[0] ? p[0] : st[0];
	}
	for (int t = 0, first = 1; t < k->lanes && st[0] > -INFINITY; t++) {
		const float *p = (const float *)(k->ws + t * k->slot) + off;
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

static void att_run_split(struct att_task *k, int nt)
{
	const struct ops_att *a = k->a;
	/* a chunk's K and V of one kv head stay within 64 KiB (cached for the heads
	 * that follow), and each lane gets a few chunks where the keys allow */
	k->lanes = OPS_ATT_LANES * nt;
	int ch = (a->n_kv + 2 * k->lanes - 1) / (2 * k->lanes), ch_cache = 8192 / a->head_dim;
	ch = ch > ch_cache ? ch_cache : ch;
	k->ch = ch < 16 ? 16 : ch > OPS_ATT_CHUNK_MAX ? OPS_ATT_CHUNK_MAX : (ch + 15) & ~15;
	k->n_chunk = (a->n_kv + k->ch - 1) / k->ch;
	if (k->lanes > k->n_chunk)
		k->lanes = k->n_chunk;
	const int n_items = a->n_q * a->n_head;
	kern_parallel(k->lanes, nt, att_split_item, k);
	kern_parallel(n_items, (int64_t)n_items * k->lanes * a->head_dim >= OPS_PAR_MIN ? nt : 1,
		      att_combine_item, k);
}

/* Tile path: items of up to OPS_ATT_TILE_NB blocks of one kv head (fewer when
 * that leaves threads without a few items each); the last queries first: under
 * a causal mask they see the most keys. */
static void att_tiles_item(void *ctx, long it, int thread)
{
	const struct att_task *k = ctx;
	const struct ops_att *a = k->a;
	const int n_blk = (a->n_q * a->n_rep + k->w - 1) / k->w;
	int b0 = (k->n_grp - 1 - (int)(it / a->n_kv_head)) * k->per;
	int nb = n_blk - b0 < k->per ? n_blk - b0 : k->per;
	k->tile(a, (int)(it % a->n_kv_head), b0 * k->w, nb, (float *)(k->ws + (size_t)thread * k->slot));
}

static void att_run_tiles(struct att_task *k, int nt)
{
	const struct ops_att *a = k->a;
	const int n_blk = (a->n_q * a->n_rep + k->w - 1) / k->w;
	int per = (int)((int64_t)n_blk * a->n_kv_head / (4 * nt));
	k->per = per < 1 ? 1 : per > OPS_ATT_TILE_NB ? OPS_ATT_TILE_NB : per;
	k->n_grp = (n_blk + k->per - 1) / k->per;
	kern_parallel((long)k->n_grp * a->n_kv_head, nt, att_tiles_item, k);
}

void kern_attention(float *out, const float *q, int q_stride,
		    const float *k, const float *v, int kv_stride,
		    const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
		    int n_head, int n_kv_head, int head_dim, void *ws)
{
	kern_attention_ph(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, 0, n_q, n_kv, n_head, n_kv_head,
			  head_dim, ws);
}

void kern_attention_ph(float *out, const float *q, int q_stride,
		       const float *k, const float *v, int kv_stride,
		       const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
		       int n_head, int n_kv_head, int head_dim, void *ws)
{
	kern_attention_ex(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, k_pos_hstride, n_q, n_kv, n_head,
			  n_kv_head, head_dim, NULL, ws);
}

float ops_att_softcap(float *s, int n, float cap)
{
	float max = -INFINITY, inv = 1.0f / cap;
	for (int j = 0; j < n; j++) {
		if (s[j] == -INFINITY)
			continue;
		s[j] = cap * tanhf(s[j] * inv);
		max = s[j] > max ? s[j] : max;
	}
	return max;
}

void kern_attention_ex(float *out, const float *q, int q_stride,
		       const float *k, const float *v, int kv_stride,
		       const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
		       int n_head, int n_kv_head, int head_dim, const struct kern_att_opts *o, void *ws)
{
	if (kern_level == KERN_REF) {
		kern_attention_ex_ref(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, k_pos_hstride, n_q, n_kv,
				      n_head, n_kv_head, head_dim, o);
		return;
	}
	const struct kern_att_opts none = { 0 };
	if (!o)
		o = &none;
	ASSERT(n_kv_head > 0 && n_head % n_kv_head == 0 && ws);
	const struct ops_att a = {
		.out = out, .q = q, .k = k, .v = v, .q_pos = q_pos, .k_pos = k_pos, .k_pos_hstride = k_pos_hstride,
		.q_stride = q_stride, .kv_stride = kv_stride, .n_q = n_q, .n_kv = n_kv,
		.n_head = n_head, .n_kv_head = n_kv_head, .head_dim = head_dim,
		.n_rep = n_head / n_kv_head, .scale = o->scale > 0 ? o->scale : 1.0f / sqrtf((float)head_dim),
		.window = o->window > 0 ? o->window : 0, .softcap = o->softcap > 0 ? o->softcap : 0.0f,
	};
	const struct ops_isa *isa = ops_for(kern_level);
	struct att_task t = {
		.a = &a, .chunk = isa->att_chunk, .tile = isa->att_tile, .w = isa->att_w,
		.ws = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63), .slot = att_slot_bytes(n_q, n_kv, n_head),
	};
	int nt = kern_threads();
	/* each task costs a little handing out: small attentions (short chunks,
	 * tiny models) run on this thread alone */
	if ((double)n_q * n_kv * n_head * head_dim < OPS_ATT_PAR_MIN)
		nt = 1;
	if (head_dim <= OPS_ATT_MAX_HD && n_q <= OPS_ATT_SPLIT_MAX_Q)
		att_run_split(&t, nt);
	else if (t.tile && head_dim <= OPS_ATT_MAX_HD && n_q * a.n_rep >= t.w / 2)
		att_run_tiles(&t, nt);
	else
		kern_parallel((long)n_q * n_head, nt, att_rows_item, &t);
}

/* ---- APE attention ----
 * With AVX2 or AVX-512: the tile path (ops_impl.h). Otherwise an
 * item = a block of queries of one kv head: keys taken OPS_APE_KEYS at a time
 * (their K/V stay in cache while every query vector of the block folds them
 * in), each run of them that is all context or all other keys folded by the
 * ISA's attention worker into that group's running state, then the two states
 * of each query vector merged by their log-sum-exps. */
#define OPS_APE_KEYS 128

struct ape_task {
	const struct ops_att *a, *ac; /* ac: the context's, scale / T */
	const struct kern_ape *ape;
	ops_att_chunk_fn *chunk;
	char *ws;
	size_t slot;
	int qb, n_blk; /* queries per item, items per kv head */
	ops_att_ape_tile_fn *tile; /* the tile path (NULL: none at this level) */
	int w;                     /* its query vectors per block */
};

static void ape_item(void *ctx, long it, int thread)
{
	const struct ape_task *k = ctx;
	const struct ops_att *a = k->a;
	const int hd = a->head_dim, g = (int)(it % a->n_kv_head), i0 = (int)(it / a->n_kv_head) * k->qb;
	const int i1 = i0 + k->qb < a->n_q ? i0 + k->qb : a->n_q, nv = (i1 - i0) * a->n_rep;
	const int c0 = k->ape->ctx0, c1 = k->ape->ctx1;
	/* scratch: scores, then per query vector v: state [2] and o [hd], the others' then the context's */
	float *s = (float *)(k->ws + (size_t)thread * k->slot), *base = s + OPS_APE_KEYS;
	const size_t part = 2 + (size_t)hd;
	for (int v = 0; v < 2 * nv; v++)
		base[v * part] = -INFINITY, base[v * part + 1] = 0.0f;
	for (int j0 = 0; j0 < a->n_kv; j0 += OPS_APE_KEYS) {
		const int j1 = j0 + OPS_APE_KEYS < a->n_kv ? j0 + OPS_APE_KEYS : a->n_kv;
		/* [j0, j1) cut where the context starts and ends */
		int cut[4] = { j0, c0 > j0 && c0 < j1 ? c0 : j0, c1 > j0 && c1 < j1 ? c1 : j1, j1 };
		for (int r = 0; r < 3; r++) {
			const int r0 = cut[r] > cut[r + 1] ? cut[r + 1] : cut[r], r1 = cut[r + 1];
			if (r0 >= r1)
				continue;
			const int ctxr = r0 >= c0 && r1 <= c1;
			const struct ops_att *aa = ctxr ? k->ac : a;
			for (int v = 0; v < nv; v++) {
				float *st = base + ((size_t)ctxr * nv + v) * part;
				k->chunk(aa, i0 + v / a->n_rep, g * a->n_rep + v % a->n_rep, r0, r1, s, st, st + 2);
			}
		}
	}
	for (int v = 0; v < nv; v++) {
		const float *so = base + (size_t)v * part, *sc = base + ((size_t)nv + v) * part;
		const int i = i0 + v / a->n_rep, h = g * a->n_rep + v % a->n_rep;
		ops_ape_merge(a->out + (size_t)i * a->q_stride + (size_t)h * hd, so[0], so[1], so + 2, sc[0], sc[1],
			      sc + 2, k->ape->scale * k->ape->temp, hd);
	}
}

/* The tile path's item: one block of W query vectors of one kv head. */
static void ape_tile_item(void *ctx, long it, int thread)
{
	const struct ape_task *k = ctx;
	const struct ops_att *a = k->a;
	k->tile(a, k->ac, k->ape->ctx0, k->ape->ctx1, k->ape->scale * k->ape->temp, (int)(it % a->n_kv_head),
		(int)(it / a->n_kv_head) * k->w, (float *)(k->ws + (size_t)thread * k->slot));
}

void kern_attention_ape(float *out, const float *q, int q_stride,
			const float *k, const float *v, int kv_stride,
			const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			int n_head, int n_kv_head, int head_dim, const struct kern_ape *ape, void *ws)
{
	ASSERT(n_kv_head > 0 && n_head % n_kv_head == 0 && ape->temp > 0 && ape->scale > 0);
	const int n_rep = n_head / n_kv_head;
	const size_t slot = att_slot_bytes(n_q, n_kv, n_head);
	/* query vectors a slot holds the states of: at least the n_rep of one query */
	const long fit = ((long)(slot / sizeof(float)) - OPS_APE_KEYS) / (2 * (2 + (long)head_dim));
	ops_att_ape_tile_fn *tile = NULL;
#ifdef OPS_X86
	if (kern_level == KERN_AVX512)
		tile = ops_att_ape_tile_avx512;
	else if (kern_level == KERN_AVX2)
		tile = ops_att_ape_tile_avx2;
#endif
	if (kern_level == KERN_REF || head_dim > OPS_ATT_MAX_HD || (!tile && fit < n_rep)) {
		kern_attention_ape_ref(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, n_q, n_kv, n_head, n_kv_head,
				       head_dim, ape);
		return;
	}
	ASSERT(ws);
	struct kern_ape r = *ape; /* the range cut to the keys there are */
	r.ctx0 = r.ctx0 < 0 ? 0 : r.ctx0 > n_kv ? n_kv : r.ctx0;
	r.ctx1 = r.ctx1 < r.ctx0 ? r.ctx0 : r.ctx1 > n_kv ? n_kv : r.ctx1;
	const struct ops_att a = {
		.out = out, .q = q, .k = k, .v = v, .q_pos = q_pos, .k_pos = k_pos,
		.q_stride = q_stride, .kv_stride = kv_stride, .n_q = n_q, .n_kv = n_kv,
		.n_head = n_head, .n_kv_head = n_kv_head, .head_dim = head_dim,
		.n_rep = n_rep, .scale = 1.0f / sqrtf((float)head_dim),
	};
	struct ops_att ac = a;
	ac.scale = a.scale / r.temp;
	int nt = kern_threads();
	if ((double)n_q * n_kv * n_head * head_dim < OPS_ATT_PAR_MIN)
		nt = 1;
	/* blocked fold: blocks of up to 16 queries, smaller when that leaves threads idle */
	int qb = fit / n_rep < 1 ? 1 : fit / n_rep < 16 ? (int)(fit / n_rep) : 16;
	while (qb > 1 && (long)((n_q + qb - 1) / qb) * n_kv_head < 2L * nt)
		qb /= 2;
	struct ape_task t = {
		.a = &a, .ac = &ac, .ape = &r, .chunk = ops_for(kern_level)->att_chunk,
		.ws = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63), .slot = slot, .qb = qb,
		.n_blk = (n_q + qb - 1) / qb, .tile = tile, .w = ops_for(kern_level)->att_w,
	};
	if (n_q > 0 && t.tile)
		kern_parallel((long)((n_q * n_rep + t.w - 1) / t.w) * n_kv_head, nt, ape_tile_item, &t);
	else if (n_q > 0)
		kern_parallel((long)t.n_blk * n_kv_head, nt, ape_item, &t);
}
