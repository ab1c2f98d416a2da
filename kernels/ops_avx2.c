/* ops_avx2.c — AVX2 + FMA workers of the non-matmul kernels (see ops_impl.h).
 * 8 float lanes; row tails use maskload/maskstore, so any n works. */
#include <math.h>
#include <string.h>

#include "ops_impl.h"
#include "quant.h"

#ifdef OPS_X86
#include <immintrin.h>

#define W 8

static const int32_t mask_tab[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };

/* Lanes [0, n) of an 8-lane mask, n clamped to [0, 8]. */
static inline __m256i tail8(int n)
{
	n = n < 0 ? 0 : n > 8 ? 8 : n;
	return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n));
}

static inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static inline float hmax256(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* e^x to ~2 ulp: x = n ln2 + r, |r| <= ln2 / 2, Cephes' polynomial for e^r, times
 * 2^n built in the exponent field; x clamped to [-87.3, 88.3] so 2^n stays a
 * normal float (e^-87.3 ~ 1e-38 stands in for 0). NaN propagates. */
static inline __m256 exp256(__m256 x)
{
	x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);
	x = _mm256_min_ps(_mm256_set1_ps(88.3f), x);
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	__m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* ---- RMSNorm ---- */

void ops_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		__m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
		__m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
		a0 = _mm256_fmadd_ps(x0, x0, a0);
		a1 = _mm256_fmadd_ps(x1, x1, a1);
		a2 = _mm256_fmadd_ps(x2, x2, a2);
		a3 = _mm256_fmadd_ps(x3, x3, a3);
	}
	for (; i < n; i += 8) {
		__m256 xv = _mm256_maskload_ps(x + i, tail8(n - i));
		a0 = _mm256_fmadd_ps(xv, xv, a0);
	}
	float ss = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	__m256 sc = _mm256_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
	for (i = 0; i < n; i += 8) {
		__m256i m = tail8(n - i);
		__m256 xv = _mm256_maskload_ps(x + i, m), wv = _mm256_maskload_ps(w + i, m);
		_mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_mul_ps(xv, sc), wv));
	}
}

/* ---- RoPE ---- */

void ops_rope_norm_avx2(float *x, const float *cd, const float *sd, int n)
{
	for (int k = 0; k < n; k += 8) {
		__m256i m = tail8(n - k);
		__m256 xv = _mm256_maskload_ps(x + k, m);
		__m256 sw = _mm256_permute_ps(xv, 0xB1); /* swap the two floats of each pair */
		__m256 r = _mm256_fmadd_ps(xv, _mm256_maskload_ps(cd + k, m),
					   _mm256_mul_ps(sw, _mm256_maskload_ps(sd + k, m)));
		_mm256_maskstore_ps(x + k, m, r);
	}
}

void ops_rope_neox_avx2(float *x0, float *x1, const float *c, const float *s, int n)
{
	for (int i = 0; i < n; i += 8) {
		__m256i m = tail8(n - i);
		__m256 a = _mm256_maskload_ps(x0 + i, m), b = _mm256_maskload_ps(x1 + i, m);
		__m256 cv = _mm256_maskload_ps(c + i, m), sv = _mm256_maskload_ps(s + i, m);
		_mm256_maskstore_ps(x0 + i, m, _mm256_fmsub_ps(a, cv, _mm256_mul_ps(b, sv)));
		_mm256_maskstore_ps(x1 + i, m, _mm256_fmadd_ps(a, sv, _mm256_mul_ps(b, cv)));
	}
}

/* ---- softmax, SwiGLU ---- */

void ops_softmax_avx2(float *x, int n)
{
	if (n <= 0)
		return;
	const __m256 ninf = _mm256_set1_ps(-INFINITY);
	__m256 mx = ninf;
	__m256d s0 = _mm256_setzero_pd(), s1 = s0; /* a float sum of 50k terms drifts by ~1e-6 */
	for (int i = 0; i < n; i += 8) {
		__m256i m = tail8(n - i);
		__m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m));
		mx = _mm256_max_ps(mx, v);
	}
	__m256 mv = _mm256_set1_ps(hmax256(mx));
	for (int i = 0; i < n; i += 8) {
		__m256i m = tail8(n - i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), mv));
		e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
		_mm256_maskstore_ps(x + i, m, e);
		s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
		s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
	}
	__m128d s = _mm_add_pd(_mm256_castpd256_pd128(_mm256_add_pd(s0, s1)),
			       _mm256_extractf128_pd(_mm256_add_pd(s0, s1), 1));
	__m256 inv = _mm256_set1_ps((float)(1.0 / (_mm_cvtsd_f64(s) + _mm_cvtsd_f64(_mm_unpackhi_pd(s, s)))));
	for (int i = 0; i < n; i += 8) {
		__m256i m = tail8(n - i);
		_mm256_maskstore_ps(x + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), inv));
	}
}

void ops_swiglu_avx2(float *out, const float *gate, const float *up, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	for (int64_t i = 0; i < n; i += 8) {
		__m256i m = tail8((int)(n - i < 8 ? n - i : 8));
		__m256 g = _mm256_maskload_ps(gate + i, m), u = _mm256_maskload_ps(up + i, m);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
		__m256 r = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
		_mm256_maskstore_ps(out + i, m, r);
	}
}

/* x / (1 + e^(-2u)) = x/2 (1 + tanh u): see kern_gelu. For x < -10 e^(-2u)
 * saturates at e^88.3 and the result is ~0, as it should be. */
void ops_gelu_avx2(float *out, const float *x, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f), a = _mm256_set1_ps(-2 * OPS_GELU_A),
		     b = _mm256_set1_ps(-2 * OPS_GELU_B);
	for (int64_t i = 0; i < n; i += 8) {
		__m256i m = tail8((int)(n - i < 8 ? n - i : 8));
		__m256 v = _mm256_maskload_ps(x + i, m);
		__m256 u = _mm256_mul_ps(v, _mm256_fmadd_ps(_mm256_mul_ps(v, v), b, a)); /* -2u */
		__m256 r = _mm256_div_ps(v, _mm256_add_ps(one, exp256(u)));
		_mm256_maskstore_ps(out + i, m, r);
	}
}

/* ---- attention: row path ---- */

static inline float dot256(const float *a, const float *b, int n)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = a0;
	int d = 0;
	for (; d + 16 <= n; d += 16) {
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), a1);
	}
	for (; d < n; d += 8) {
		__m256i m = tail8(n - d);
		a0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + d, m), _mm256_maskload_ps(b + d, m), a0);
	}
	return hsum256(_mm256_add_ps(a0, a1));
}

/* Lane u of the result = the sum of the lanes of a[u] (an 8 x 8 transpose-add). */
static inline __m256 hsum8x256(const __m256 a[8])
{
	__m256 t[4];
	#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) /* per 128-bit lane: a[2k], a[2k+1] partials interleaved */
		t[k] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * k], a[2 * k + 1]),
				     _mm256_unpackhi_ps(a[2 * k], a[2 * k + 1]));
	/* per 128-bit lane: a[0..3], a[4..7] partials */
	__m256 u0 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], 0x44), _mm256_shuffle_ps(t[0], t[1], 0xEE));
	__m256 u1 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], 0x44), _mm256_shuffle_ps(t[2], t[3], 0xEE));
	return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Lane u = q . k_u for the 8 key rows k_0 .. k_7 (stride floats apart). */
static inline __m256 dot8x256(const float *q, const float *k, size_t stride, int hd)
{
	__m256 acc[8];
	#pragma GCC unroll 8
	for (int u = 0; u < 8; u++)
		acc[u] = _mm256_setzero_ps();
	int d = 0;
	for (; d + 8 <= hd; d += 8) {
		__m256 qv = _mm256_loadu_ps(q + d);
		const float *kr = k + d;
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++, kr += stride)
			acc[u] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr), acc[u]);
	}
	if (d < hd) {
		__m256i m = tail8(hd - d);
		__m256 qv = _mm256_maskload_ps(q + d, m);
		const float *kr = k + d;
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++, kr += stride)
			acc[u] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kr, m), acc[u]);
	}
	return hsum8x256(acc);
}

/* s[j] = q . k_j * scale for the n keys from k, or -inf where k_pos[j] > qp;
 * returns the max. Groups of 8 keys that the query cannot see are not read. */
static float row_scores256(float *s, const float *q, const float *k, const int32_t *k_pos, int n,
			   int32_t qp, const struct ops_att *a)
{
	const size_t stride = (size_t)a->kv_stride;
	const __m256 ninf = _mm256_set1_ps(-INFINITY), scale = _mm256_set1_ps(a->scale);
	const int32_t lo = ops_att_lo(a, qp);
	const __m256i qv = _mm256_set1_epi32(qp), lov = _mm256_set1_epi32(lo);
	__m256 mx = ninf;
	int j = 0;
	for (; j + 8 <= n; j += 8) {
		__m256i kp = _mm256_loadu_si256((const __m256i *)(k_pos + j));
		/* "later" here: not visible, in the query's future or behind its window */
		__m256 later = _mm256_castsi256_ps(_mm256_or_si256(_mm256_cmpgt_epi32(kp, qv),
								   _mm256_cmpgt_epi32(lov, _mm256_sub_epi32(kp, _mm256_set1_epi32(1)))));
		__m256 sv = ninf;
		if (_mm256_movemask_ps(later) != 0xFF)
			sv = _mm256_blendv_ps(_mm256_mul_ps(dot8x256(q, k + j * stride, stride, a->head_dim), scale),
					      ninf, later);
		_mm256_storeu_ps(s + j, sv);
		mx = _mm256_max_ps(mx, sv);
	}
	float max = hmax256(mx);
	for (; j < n; j++) {
		s[j] = k_pos[j] <= qp && k_pos[j] > lo ? dot256(q, k + j * stride, a->head_dim) * a->scale : -INFINITY;
		max = s[j] > max ? s[j] : max;
	}
	return a->softcap > 0 ? ops_att_softcap(s, n, a->softcap) : max;
}

/* s[j] = exp(s[j] - max) (0 where s[j] is -inf); returns the sum. */
static float exp_scores256(float *s, int n, float max)
{
	const __m256 ninf = _mm256_set1_ps(-INFINITY), mv = _mm256_set1_ps(max);
	__m256 sum = _mm256_setzero_ps();
	for (int j = 0; j < n; j += 8) {
		__m256i m = tail8(n - j);
		__m256 sv = _mm256_maskload_ps(s + j, m);
		__m256 live = _mm256_and_ps(_mm256_cmp_ps(sv, ninf, _CMP_NEQ_OQ), _mm256_castsi256_ps(m));
		__m256 e = _mm256_and_ps(live, exp256(_mm256_sub_ps(sv, mv)));
		_mm256_maskstore_ps(s + j, m, e);
		sum = _mm256_add_ps(sum, e);
	}
	return hsum256(sum);
}

/* o[0, nd) = o * alpha (0 when fresh: o not written yet) + sum_j p[j] v_j, nd <= 32
 * (more is clamped), over the keys with p[j] != 0 (a masked slot is never read);
 * accumulators for even and odd keys keep 8 FMA chains in flight. */
static void row_pv256(float *o, const float *p, const float *v, size_t stride, int n, int nd,
		      float alpha, int fresh)
{
	const __m256i m[4] = { tail8(nd), tail8(nd - 8), tail8(nd - 16), tail8(nd - 24) };
	const __m256 al = _mm256_set1_ps(alpha);
	__m256 acc[2][4];
	#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		acc[0][c] = fresh ? _mm256_setzero_ps() : _mm256_mul_ps(_mm256_maskload_ps(o + 8 * c, m[c]), al);
		acc[1][c] = _mm256_setzero_ps();
	}
	for (int j = 0; j < n; j += 2) {
		#pragma GCC unroll 2
		for (int e = 0; e < 2; e++) {
			if (j + e >= n || p[j + e] == 0.0f)
				continue;
			const float *vj = v + (size_t)(j + e) * stride;
			__m256 pb = _mm256_set1_ps(p[j + e]);
			#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				acc[e][c] = _mm256_fmadd_ps(pb, _mm256_maskload_ps(vj + 8 * c, m[c]), acc[e][c]);
		}
	}
	#pragma GCC unroll 4
	for (int c = 0; c < 4; c++)
		_mm256_maskstore_ps(o + 8 * c, m[c], _mm256_add_ps(acc[0][c], acc[1][c]));
}

void ops_att_chunk_avx2(const struct ops_att *a, int i, int h, int j0, int j1, float *s,
			float *st, float *o)
{
	const int hd = a->head_dim, n = j1 - j0;
	const size_t ko = (size_t)(h / a->n_rep) * hd + (size_t)j0 * a->kv_stride;
	const float *q = a->q + (size_t)i * a->q_stride + (size_t)h * hd;
	float max = row_scores256(s, q, a->k + ko, ops_att_kpos(a, h / a->n_rep) + j0, n, a->q_pos[i], a);
	if (max == -INFINITY)
		return;
	/* q is read; o may alias it from here on */
	int fresh = st[0] == -INFINITY;
	float mnew = fresh || max > st[0] ? max : st[0];
	float alpha = fresh ? 0.0f : expf(st[0] - mnew);
	st[1] = st[1] * alpha + exp_scores256(s, n, mnew);
	st[0] = mnew;
	for (int d0 = 0; d0 < hd; d0 += 32)
		row_pv256(o + d0, s, a->v + ko + d0, (size_t)a->kv_stride, n, hd - d0, alpha, fresh);
}

/* ---- attention: tile path (lanes = query vectors, see ops_impl.h) ----
 * Per block, in the per-thread scratch: qt [hd][W] queries * scale, o [W][hd]
 * unnormalised outputs, p [TILE][W] scores then probabilities of the current
 * key tile, alpha [W]; up to OPS_ATT_TILE_NB blocks take each key tile in turn. */

#define T OPS_ATT_TILE

struct tile256 {
	float *qt, *o, *p, *alpha;
	__m256i qpos;       /* query position per lane */
	__m256i qlo;        /* a lane sees keys at qlo < k_pos <= qpos */
	int32_t qlo_min;    /* the lowest qlo of the block's lanes */
	__m256i lanes;      /* all-ones in lanes holding a query vector */
	int nv;             /* number of such lanes */
	int32_t qmax;       /* highest query position in the block */
	__m256 m, l;        /* running max and sum of the online softmax */
};

/* Gather the block's query vectors into qt (scaled), zero o. */
static void tile_pack256(struct tile256 *t, const struct ops_att *a, int g, int v0)
{
	const int hd = a->head_dim;
	int32_t qpos[W], qlo[W];
	t->nv = 0;
	t->qmax = INT32_MIN;
	t->qlo_min = INT32_MAX;
	for (int l = 0; l < W; l++) {
		int i, h;
		qpos[l] = INT32_MIN;
		qlo[l] = INT32_MAX;
		if (!ops_att_lane(a, g, v0 + l, &i, &h)) {
			for (int d = 0; d < hd; d++)
				t->qt[d * W + l] = 0.0f;
			continue;
		}
		const float *q = a->q + (size_t)i * a->q_stride + (size_t)h * hd;
		for (int d = 0; d < hd; d++)
			t->qt[d * W + l] = q[d] * a->scale;
		qpos[l] = a->q_pos[i];
		qlo[l] = ops_att_lo(a, qpos[l]);
		t->qmax = qpos[l] > t->qmax ? qpos[l] : t->qmax;
		t->qlo_min = qlo[l] < t->qlo_min ? qlo[l] : t->qlo_min;
		t->nv++;
	}
	t->qpos = _mm256_loadu_si256((const __m256i *)qpos);
	t->qlo = _mm256_loadu_si256((const __m256i *)qlo);
	t->lanes = tail8(t->nv);
	memset(t->o, 0, (size_t)W * hd * sizeof *t->o);
	t->m = _mm256_set1_ps(-INFINITY);
	t->l = _mm256_setzero_ps();
}

/* p[jj][lane] = q_lane . k_jj for the nk keys of the tile (k: first key's row). */
static void tile_scores256(float *p, const float *qt, const float *k, size_t stride, int nk, int hd)
{
	int jj = 0;
	for (; jj + 8 <= nk; jj += 8) {
		const float *kj = k + jj * stride;
		__m256 acc[8];
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++)
			acc[u] = _mm256_setzero_ps();
		for (int d = 0; d < hd; d++) {
			__m256 qv = _mm256_load_ps(qt + d * W);
			#pragma GCC unroll 8
			for (int u = 0; u < 8; u++)
				acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(kj[u * stride + d]), qv, acc[u]);
		}
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++)
			_mm256_store_ps(p + (jj + u) * W, acc[u]);
	}
	for (; jj < nk; jj++) {
		const float *kj = k + jj * stride;
		__m256 acc = _mm256_setzero_ps();
		for (int d = 0; d < hd; d++)
			acc = _mm256_fmadd_ps(_mm256_set1_ps(kj[d]), _mm256_load_ps(qt + d * W), acc);
		_mm256_store_ps(p + jj * W, acc);
	}
}

/* Soft-capping of n scores in place: cap tanh(s / cap), tanh from e^(-2|y|)
 * (odd, so the sign is put back). Lanes no query holds may hold anything. */
static void tile_softcap256(float *p, int n, float cap)
{
	const __m256 inv = _mm256_set1_ps(1.0f / cap), cv = _mm256_set1_ps(cap), one = _mm256_set1_ps(1.0f);
	const __m256 m2 = _mm256_set1_ps(-2.0f), sign = _mm256_set1_ps(-0.0f);
	for (int i = 0; i < n; i += 8) {
		__m256 y = _mm256_mul_ps(_mm256_load_ps(p + i), inv);
		__m256 t = exp256(_mm256_mul_ps(m2, _mm256_andnot_ps(sign, y)));
		__m256 th = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
		_mm256_store_ps(p + i, _mm256_mul_ps(cv, _mm256_or_ps(th, _mm256_and_ps(sign, y))));
	}
}

/* Online softmax over one tile: mask by position, new running max, p = e^(s - max),
 * alpha = e^(old max - new max). The keys some lane sees are packed to the front:
 * their probabilities in p, their tile index in live_j; returns their count. */
static int tile_softmax256(struct tile256 *t, const int32_t *k_pos, int nk, int *live_j)
{
	const __m256 ninf = _mm256_set1_ps(-INFINITY);
	__m256 live[T], mt = ninf;
	int any = 0;
	for (int jj = 0; jj < nk; jj++) {
		__m256i kp = _mm256_set1_epi32(k_pos[jj]);
		/* not visible: in the lane's future, or at or behind qlo (kp > qlo fails) */
		__m256i later = _mm256_or_si256(_mm256_cmpgt_epi32(kp, t->qpos),
						_mm256_cmpeq_epi32(_mm256_max_epi32(kp, t->qlo), t->qlo));
		live[jj] = _mm256_castsi256_ps(_mm256_andnot_si256(later, t->lanes));
		mt = _mm256_max_ps(mt, _mm256_blendv_ps(ninf, _mm256_load_ps(t->p + jj * W), live[jj]));
		any |= _mm256_movemask_ps(live[jj]);
	}
	if (!any)
		return 0;
	__m256 mnew = _mm256_max_ps(t->m, mt);
	/* lanes that have seen nothing yet: any finite reference keeps e^(...) NaN-free */
	__m256 mref = _mm256_andnot_ps(_mm256_cmp_ps(mnew, ninf, _CMP_EQ_OQ), mnew);
	__m256 alpha = _mm256_and_ps(_mm256_cmp_ps(t->m, ninf, _CMP_NEQ_OQ),
				     exp256(_mm256_sub_ps(t->m, mref)));
	__m256 sum = _mm256_setzero_ps();
	int n = 0;
	for (int jj = 0; jj < nk; jj++) {
		if (!_mm256_movemask_ps(live[jj]))
			continue;
		__m256 s = _mm256_load_ps(t->p + jj * W);
		__m256 e = _mm256_and_ps(live[jj], exp256(_mm256_sub_ps(s, mref)));
		_mm256_store_ps(t->p + n * W, e); /* n <= jj: row jj is read before */
		live_j[n++] = jj;
		sum = _mm256_add_ps(sum, e);
	}
	t->l = _mm256_fmadd_ps(t->l, alpha, sum);
	t->m = mnew;
	_mm256_store_ps(t->alpha, alpha);
	return n;
}

/* o[l][d0 + 8c ...] = o * alpha[l] + sum_jj p[jj][l] v_jj for 4 lanes from l0 and
 * nc vectors of 8 (the last masked by mlast). Inlined with constant nc. */
static inline __attribute__((always_inline)) void
tile_pv4_256(float *o, int hd, const float *p, const float *alpha, const float *v, size_t stride,
	     const int *live_j, int nk, int l0, int d0, const int nc, __m256i mlast)
{
	const __m256i full = _mm256_set1_epi32(-1);
	__m256 acc[4][2], vv[2];
	#pragma GCC unroll 4
	for (int l = 0; l < 4; l++) {
		__m256 al = _mm256_set1_ps(alpha[l0 + l]);
		#pragma GCC unroll 2
		for (int c = 0; c < nc; c++) {
			__m256i m = c == nc - 1 ? mlast : full;
			acc[l][c] = _mm256_mul_ps(_mm256_maskload_ps(o + (l0 + l) * hd + d0 + 8 * c, m), al);
		}
	}
	for (int jj = 0; jj < nk; jj++) {
		const float *vj = v + live_j[jj] * stride + d0;
		#pragma GCC unroll 2
		for (int c = 0; c < nc; c++)
			vv[c] = _mm256_maskload_ps(vj + 8 * c, c == nc - 1 ? mlast : full);
		#pragma GCC unroll 4
		for (int l = 0; l < 4; l++) {
			__m256 pb = _mm256_set1_ps(p[jj * W + l0 + l]);
			#pragma GCC unroll 2
			for (int c = 0; c < nc; c++)
				acc[l][c] = _mm256_fmadd_ps(pb, vv[c], acc[l][c]);
		}
	}
	#pragma GCC unroll 4
	for (int l = 0; l < 4; l++) {
		#pragma GCC unroll 2
		for (int c = 0; c < nc; c++)
			_mm256_maskstore_ps(o + (l0 + l) * hd + d0 + 8 * c, c == nc - 1 ? mlast : full,
					    acc[l][c]);
	}
}

/* o = o * alpha + p^T V over the tile's live keys (the others are never read),
 * 16 then 8 (masked) dims at a time. Not inlined: alone, it keeps its
 * accumulators in registers. */
static __attribute__((noinline)) void tile_pv256(struct tile256 *t, const float *v, size_t stride,
						  const int *live_j, int nk, int hd)
{
	const __m256i full = _mm256_set1_epi32(-1);
	for (int l0 = 0; l0 < t->nv; l0 += 4) {
		int d0 = 0;
		for (; d0 + 16 <= hd; d0 += 16)
			tile_pv4_256(t->o, hd, t->p, t->alpha, v, stride, live_j, nk, l0, d0, 2, full);
		for (; d0 < hd; d0 += 8)
			tile_pv4_256(t->o, hd, t->p, t->alpha, v, stride, live_j, nk, l0, d0, 1, tail8(hd - d0));
	}
}

/* out = o / l per lane (zeros for a lane that saw no key). */
static void tile_store256(const struct tile256 *t, const struct ops_att *a, int g, int v0)
{
	const int hd = a->head_dim;
	float l[W];
	_mm256_storeu_ps(l, t->l);
	for (int ln = 0; ln < t->nv; ln++) {
		int i = 0, h = 0;
		ops_att_lane(a, g, v0 + ln, &i, &h);
		float *out = a->out + (size_t)i * a->q_stride + (size_t)h * hd;
		__m256 inv = _mm256_set1_ps(l[ln] > 0 ? 1.0f / l[ln] : 0.0f);
		for (int d = 0; d < hd; d += 8) {
			__m256i m = tail8(hd - d);
			_mm256_maskstore_ps(out + d, m, _mm256_mul_ps(_mm256_maskload_ps(t->o + ln * hd + d, m), inv));
		}
	}
}

void ops_att_tile_avx2(const struct ops_att *a, int g, int v0, int nb, float *scratch)
{
	const int hd = a->head_dim;
	const size_t stride = (size_t)a->kv_stride, ko = (size_t)g * hd;
	struct tile256 t[OPS_ATT_TILE_NB];
	int32_t qmax = INT32_MIN;
	for (int b = 0; b < nb; b++) {
		float *f = scratch + (size_t)b * OPS_ATT_BLOCK_FLOATS(hd, W);
		t[b] = (struct tile256){ .qt = f, .o = f + hd * W, .p = f + 2 * hd * W,
					 .alpha = f + 2 * hd * W + T * W };
		tile_pack256(&t[b], a, g, v0 + b * W);
		qmax = t[b].qmax > qmax ? t[b].qmax : qmax;
	}
	for (int j0 = 0; j0 < a->n_kv; j0 += T) {
		int nk = a->n_kv - j0 < T ? a->n_kv - j0 : T;
		int32_t kmin, kmax;
		ops_att_krange(ops_att_kpos(a, g) + j0, nk, &kmin, &kmax);
		for (int b = 0; b < nb && kmin <= qmax; b++) {
			if (kmin > t[b].qmax || kmax <= t[b].qlo_min)
				continue; /* every key of the tile is in every lane's future, or behind its window */
			tile_scores256(t[b].p, t[b].qt, a->k + ko + j0 * stride, stride, nk, hd);
			if (a->softcap > 0)
				tile_softcap256(t[b].p, nk * W, a->softcap);
			int live_j[T], n_live = tile_softmax256(&t[b], ops_att_kpos(a, g) + j0, nk, live_j);
			if (n_live)
				tile_pv256(&t[b], a->v + ko + j0 * stride, stride, live_j, n_live, hd);
		}
	}
	for (int b = 0; b < nb; b++)
		tile_store256(&t[b], a, g, v0 + b * W);
}


/* ---- fp16 rows (kern_f16_to_f32): F16C, 8 at a time, unaligned ---- */
void ops_f16_to_f32_f16c(float *dst, const void *src, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		__m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
		__m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i + 16)));
		__m256 c = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i + 32)));
		__m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i + 48)));
		_mm256_storeu_ps(dst + i, a);
		_mm256_storeu_ps(dst + i + 8, b);
		_mm256_storeu_ps(dst + i + 16, c);
		_mm256_storeu_ps(dst + i + 24, d);
	}
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
	for (; i < n; i++)
		dst[i] = fp16_to_fp32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

/* ---- APE attention: the tile path, two states per block (ops_impl.h) ---- */
void ops_att_ape_tile_avx2(const struct ops_att *a, const struct ops_att *ac, int c0, int c1, float st, int g,
			  int v0, float *scratch)
{
	const int hd = a->head_dim;
	const size_t stride = (size_t)a->kv_stride, ko = (size_t)g * hd;
	struct tile256 t[2]; /* [0]: the other keys, [1]: the context */
	for (int b = 0; b < 2; b++) {
		float *f = scratch + (size_t)b * OPS_ATT_BLOCK_FLOATS(hd, W);
		t[b] = (struct tile256){ .qt = f, .o = f + hd * W, .p = f + 2 * hd * W,
					 .alpha = f + 2 * hd * W + T * W };
		tile_pack256(&t[b], b ? ac : a, g, v0);
	}
	const int32_t *kp = ops_att_kpos(a, g);
	for (int j0 = 0; j0 < a->n_kv; j0 += T) {
		const int j1 = a->n_kv - j0 < T ? a->n_kv : j0 + T;
		/* the tile in runs that are all context or all other keys */
		const int cut[4] = { j0, c0 > j0 && c0 < j1 ? c0 : j0, c1 > j0 && c1 < j1 ? c1 : j1, j1 };
		for (int r = 0; r < 3; r++) {
			const int r0 = cut[r], r1 = cut[r + 1];
			if (r0 >= r1)
				continue;
			struct tile256 *tb = &t[r0 >= c0 && r1 <= c1];
			int32_t kmin = INT32_MAX;
			for (int j = r0; j < r1; j++)
				kmin = kp[j] < kmin ? kp[j] : kmin;
			if (kmin > tb->qmax)
				continue; /* every key of the run is in every lane's future */
			tile_scores256(tb->p, tb->qt, a->k + ko + r0 * stride, stride, r1 - r0, hd);
			int live_j[T], n_live = tile_softmax256(tb, kp + r0, r1 - r0, live_j);
			if (n_live)
				tile_pv256(tb, a->v + ko + r0 * stride, stride, live_j, n_live, hd);
		}
	}
	float m[2][W], l[2][W];
	for (int b = 0; b < 2; b++)
		_mm256_storeu_ps(m[b], t[b].m), _mm256_storeu_ps(l[b], t[b].l);
	for (int ln = 0; ln < t[0].nv; ln++) {
		int i = 0, h = 0;
		ops_att_lane(a, g, v0 + ln, &i, &h);
		ops_ape_merge(a->out + (size_t)i * a->q_stride + (size_t)h * hd, m[0][ln], l[0][ln], t[0].o + ln * hd,
			      m[1][ln], l[1][ln], t[1].o + ln * hd, st, hd);
	}
}

#endif
