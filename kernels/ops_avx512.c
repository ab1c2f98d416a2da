/* ops_avx512.c — AVX-512 workers of the non-matmul kernels (see ops_impl.h).
 * 16 float lanes; row tails use masked loads and stores, so any n works. */
#include <math.h>
#include <string.h>

#include "ops_impl.h"

#ifdef OPS_X86
#include <immintrin.h>

#define W 16

/* Lanes [0, n) of a 16-lane mask, n clamped to [0, 16]. */
static inline __mmask16 tail16(int n)
{
	return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* e^x to ~2 ulp: x = n ln2 + r, |r| <= ln2 / 2, Cephes' polynomial for e^r,
 * scaled by 2^n with scalef (exact over/underflow). NaN propagates. */
static inline __m512 exp512(__m512 x)
{
	x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
	x = _mm512_min_ps(_mm512_set1_ps(88.7f), x);
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	__m512 p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	__m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
	return _mm512_scalef_ps(y, n);
}

/* ---- RMSNorm ---- */

void ops_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps)
{
	__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 64 <= n; i += 64) {
		__m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
		__m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
		a0 = _mm512_fmadd_ps(x0, x0, a0);
		a1 = _mm512_fmadd_ps(x1, x1, a1);
		a2 = _mm512_fmadd_ps(x2, x2, a2);
		a3 = _mm512_fmadd_ps(x3, x3, a3);
	}
	for (; i < n; i += 16) {
		__m512 xv = _mm512_maskz_loadu_ps(tail16(n - i), x + i);
		a0 = _mm512_fmadd_ps(xv, xv, a0);
	}
	float ss = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
	__m512 sc = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
	for (i = 0; i < n; i += 16) {
		__mmask16 m = tail16(n - i);
		__m512 xv = _mm512_maskz_loadu_ps(m, x + i), wv = _mm512_maskz_loadu_ps(m, w + i);
		_mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(xv, sc), wv));
	}
}

/* ---- RoPE ---- */

void ops_rope_norm_avx512(float *x, const float *cd, const float *sd, int n)
{
	for (int k = 0; k < n; k += 16) {
		__mmask16 m = tail16(n - k);
		__m512 xv = _mm512_maskz_loadu_ps(m, x + k);
		__m512 sw = _mm512_permute_ps(xv, 0xB1); /* swap the two floats of each pair */
		__m512 r = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, cd + k),
					   _mm512_mul_ps(sw, _mm512_maskz_loadu_ps(m, sd + k)));
		_mm512_mask_storeu_ps(x + k, m, r);
	}
}

void ops_rope_neox_avx512(float *x0, float *x1, const float *c, const float *s, int n)
{
	for (int i = 0; i < n; i += 16) {
		__mmask16 m = tail16(n - i);
		__m512 a = _mm512_maskz_loadu_ps(m, x0 + i), b = _mm512_maskz_loadu_ps(m, x1 + i);
		__m512 cv = _mm512_maskz_loadu_ps(m, c + i), sv = _mm512_maskz_loadu_ps(m, s + i);
		_mm512_mask_storeu_ps(x0 + i, m, _mm512_fmsub_ps(a, cv, _mm512_mul_ps(b, sv)));
		_mm512_mask_storeu_ps(x1 + i, m, _mm512_fmadd_ps(a, sv, _mm512_mul_ps(b, cv)));
	}
}

/* ---- softmax, SwiGLU ---- */

void ops_softmax_avx512(float *x, int n)
{
	if (n <= 0)
		return;
	const __m512 ninf = _mm512_set1_ps(-INFINITY);
	__m512 mx = ninf;
	__m512d s0 = _mm512_setzero_pd(), s1 = s0; /* a float sum of 50k terms drifts by ~1e-6 */
	for (int i = 0; i < n; i += 16)
		mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, tail16(n - i), x + i));
	__m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
	for (int i = 0; i < n; i += 16) {
		__mmask16 m = tail16(n - i);
		__m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv)));
		_mm512_mask_storeu_ps(x + i, m, e);
		s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
		s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
	}
	__m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
	for (int i = 0; i < n; i += 16) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
	}
}

void ops_swiglu_avx512(float *out, const float *gate, const float *up, int64_t n)
{
	const __m512 one = _mm512_set1_ps(1.0f);
	for (int64_t i = 0; i < n; i += 16) {
		__mmask16 m = tail16((int)(n - i < 16 ? n - i : 16));
		__m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
		__m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
		__m512 r = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u);
		_mm512_mask_storeu_ps(out + i, m, r);
	}
}

/* See ops_gelu_avx2. */
void ops_gelu_avx512(float *out, const float *x, int64_t n)
{
	const __m512 one = _mm512_set1_ps(1.0f), a = _mm512_set1_ps(-2 * OPS_GELU_A),
		     b = _mm512_set1_ps(-2 * OPS_GELU_B);
	for (int64_t i = 0; i < n; i += 16) {
		__mmask16 m = tail16((int)(n - i < 16 ? n - i : 16));
		__m512 v = _mm512_maskz_loadu_ps(m, x + i);
		__m512 u = _mm512_mul_ps(v, _mm512_fmadd_ps(_mm512_mul_ps(v, v), b, a)); /* -2u */
		__m512 r = _mm512_div_ps(v, _mm512_add_ps(one, exp512(u)));
		_mm512_mask_storeu_ps(out + i, m, r);
	}
}

/* ---- attention: row path ---- */

static inline float dot512(const float *a, const float *b, int n)
{
	__m512 acc = _mm512_setzero_ps();
	for (int d = 0; d < n; d += 16) {
		__mmask16 m = tail16(n - d);
		acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), acc);
	}
	return _mm512_reduce_add_ps(acc);
}

/* Lane u of the result = the sum of the lanes of a[u] (a 16 x 16 transpose-add). */
static inline __m512 hsum16x512(const __m512 a[16])
{
	__m512 t[8], u[4];
	#pragma GCC unroll 8
	for (int k = 0; k < 8; k++) /* per 128-bit lane: a[2k], a[2k+1] partials interleaved */
		t[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]),
				     _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
	#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) /* per 128-bit lane: a[4k .. 4k+3] partials */
		u[k] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * k], t[2 * k + 1], 0x44),
				     _mm512_shuffle_ps(t[2 * k], t[2 * k + 1], 0xEE));
	__m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
	__m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
	return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

/* Lane u = q . k_u for the 16 key rows k_0 .. k_15 (stride floats apart). */
static inline __m512 dot16x512(const float *q, const float *k, size_t stride, int hd)
{
	__m512 acc[16];
	#pragma GCC unroll 16
	for (int u = 0; u < 16; u++)
		acc[u] = _mm512_setzero_ps();
	for (int d = 0; d < hd; d += 16) {
		__mmask16 m = tail16(hd - d);
		__m512 qv = _mm512_maskz_loadu_ps(m, q + d);
		const float *kr = k + d;
		#pragma GCC unroll 16
		for (int u = 0; u < 16; u++, kr += stride)
			acc[u] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, kr), acc[u]);
	}
	return hsum16x512(acc);
}

/* s[j] = q . k_j * scale for the n keys from k, or -inf where k_pos[j] > qp;
 * returns the max. Groups of 16 keys that the query cannot see are not read. */
static float row_scores512(float *s, const float *q, const float *k, const int32_t *k_pos, int n,
			   int32_t qp, const struct ops_att *a)
{
	const size_t stride = (size_t)a->kv_stride;
	const __m512 ninf = _mm512_set1_ps(-INFINITY), scale = _mm512_set1_ps(a->scale);
	const int32_t lo = ops_att_lo(a, qp);
	const __m512i qv = _mm512_set1_epi32(qp), lov = _mm512_set1_epi32(lo);
	__m512 mx = ninf;
	int j = 0;
	for (; j + 16 <= n; j += 16) {
		__m512i kp = _mm512_loadu_si512(k_pos + j);
		__mmask16 live = _mm512_mask_cmpgt_epi32_mask(_mm512_cmple_epi32_mask(kp, qv), kp, lov);
		__m512 sv = ninf;
		if (live)
			sv = _mm512_mask_mul_ps(ninf, live, dot16x512(q, k + j * stride, stride, a->head_dim), scale);
		_mm512_storeu_ps(s + j, sv);
		mx = _mm512_max_ps(mx, sv);
	}
	float max = _mm512_reduce_max_ps(mx);
	for (; j < n; j++) {
		s[j] = k_pos[j] <= qp && k_pos[j] > lo ? dot512(q, k + j * stride, a->head_dim) * a->scale : -INFINITY;
		max = s[j] > max ? s[j] : max;
	}
	return a->softcap > 0 ? ops_att_softcap(s, n, a->softcap) : max;
}

/* s[j] = exp(s[j] - max) (0 where s[j] is -inf); returns the sum. */
static float exp_scores512(float *s, int n, float max)
{
	const __m512 ninf = _mm512_set1_ps(-INFINITY), mv = _mm512_set1_ps(max);
	__m512 sum = _mm512_setzero_ps();
	for (int j = 0; j < n; j += 16) {
		__mmask16 m = tail16(n - j);
		__m512 sv = _mm512_mask_loadu_ps(ninf, m, s + j);
		__mmask16 live = _mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ);
		__m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sv, mv)));
		_mm512_mask_storeu_ps(s + j, m, e);
		sum = _mm512_add_ps(sum, e);
	}
	return _mm512_reduce_add_ps(sum);
}

/* o[0, nd) = o * alpha (0 when fresh: o not written yet) + sum_j p[j] v_j, nd <= 64
 * (more is clamped), over the keys with p[j] != 0 (a masked slot is never read);
 * accumulators for even and odd keys keep 8 FMA chains in flight. */
static void row_pv512(float *o, const float *p, const float *v, size_t stride, int n, int nd,
		      float alpha, int fresh)
{
	const __mmask16 m[4] = { tail16(nd), tail16(nd - 16), tail16(nd - 32), tail16(nd - 48) };
	const __m512 al = _mm512_set1_ps(alpha);
	__m512 acc[2][4];
	#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		acc[0][c] = fresh ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_maskz_loadu_ps(m[c], o + 16 * c), al);
		acc[1][c] = _mm512_setzero_ps();
	}
	for (int j = 0; j < n; j += 2) {
		#pragma GCC unroll 2
		for (int e = 0; e < 2; e++) {
			if (j + e >= n || p[j + e] == 0.0f)
				continue;
			const float *vj = v + (size_t)(j + e) * stride;
			__m512 pb = _mm512_set1_ps(p[j + e]);
			#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				acc[e][c] = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(m[c], vj + 16 * c), acc[e][c]);
		}
	}
	#pragma GCC unroll 4
	for (int c = 0; c < 4; c++)
		_mm512_mask_storeu_ps(o + 16 * c, m[c], _mm512_add_ps(acc[0][c], acc[1][c]));
}

void ops_att_chunk_avx512(const struct ops_att *a, int i, int h, int j0, int j1, float *s,
			  float *st, float *o)
{
	const int hd = a->head_dim, n = j1 - j0;
	const size_t ko = (size_t)(h / a->n_rep) * hd + (size_t)j0 * a->kv_stride;
	const float *q = a->q + (size_t)i * a->q_stride + (size_t)h * hd;
	float max = row_scores512(s, q, a->k + ko, ops_att_kpos(a, h / a->n_rep) + j0, n, a->q_pos[i], a);
	if (max == -INFINITY)
		return;
	/* q is read; o may alias it from here on */
	int fresh = st[0] == -INFINITY;
	float mnew = fresh || max > st[0] ? max : st[0];
	float alpha = fresh ? 0.0f : expf(st[0] - mnew);
	st[1] = st[1] * alpha + exp_scores512(s, n, mnew);
	st[0] = mnew;
	for (int d0 = 0; d0 < hd; d0 += 64)
		row_pv512(o + d0, s, a->v + ko + d0, (size_t)a->kv_stride, n, hd - d0, alpha, fresh);
}

/* ---- attention: tile path (lanes = query vectors, see ops_impl.h) ----
 * Per block, in the per-thread scratch: qt [hd][W] queries * scale, o [W][hd]
 * unnormalised outputs, p [TILE][W] scores then probabilities of the current
 * key tile, alpha [W]; up to OPS_ATT_TILE_NB blocks take each key tile in turn. */

#define T OPS_ATT_TILE

struct tile512 {
	float *qt, *o, *p, *alpha;
	__m512i qpos;       /* query position per lane */
	__m512i qlo;        /* a lane sees keys at qlo < k_pos <= qpos */
	int32_t qlo_min;    /* the lowest qlo of the block's lanes */
	__mmask16 lanes;    /* lanes holding a query vector */
	int nv;             /* number of such lanes */
	int32_t qmax;       /* highest query position in the block */
	__m512 m, l;        /* running max and sum of the online softmax */
};

/* Gather the block's query vectors into qt (scaled), zero o. */
static void tile_pack512(struct tile512 *t, const struct ops_att *a, int g, int v0)
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
	t->qpos = _mm512_loadu_si512(qpos);
	t->qlo = _mm512_loadu_si512(qlo);
	t->lanes = tail16(t->nv);
	memset(t->o, 0, (size_t)W * hd * sizeof *t->o);
	t->m = _mm512_set1_ps(-INFINITY);
	t->l = _mm512_setzero_ps();
}

/* p[jj][lane] = q_lane . k_jj for the nk keys of the tile (k: first key's row). */
static void tile_scores512(float *p, const float *qt, const float *k, size_t stride, int nk, int hd)
{
	int jj = 0;
	for (; jj + 8 <= nk; jj += 8) {
		const float *kj = k + jj * stride;
		__m512 acc[8];
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++)
			acc[u] = _mm512_setzero_ps();
		for (int d = 0; d < hd; d++) {
			__m512 qv = _mm512_load_ps(qt + d * W);
			#pragma GCC unroll 8
			for (int u = 0; u < 8; u++)
				acc[u] = _mm512_fmadd_ps(_mm512_set1_ps(kj[u * stride + d]), qv, acc[u]);
		}
		#pragma GCC unroll 8
		for (int u = 0; u < 8; u++)
			_mm512_store_ps(p + (jj + u) * W, acc[u]);
	}
	for (; jj < nk; jj++) {
		const float *kj = k + jj * stride;
		__m512 acc = _mm512_setzero_ps();
		for (int d = 0; d < hd; d++)
			acc = _mm512_fmadd_ps(_mm512_set1_ps(kj[d]), _mm512_load_ps(qt + d * W), acc);
		_mm512_store_ps(p + jj * W, acc);
	}
}

/* Soft-capping of n scores in place: cap tanh(s / cap), tanh from e^(-2|y|)
 * (odd, so the sign is put back). Lanes no query holds may hold anything. */
static void tile_softcap512(float *p, int n, float cap)
{
	const __m512 inv = _mm512_set1_ps(1.0f / cap), cv = _mm512_set1_ps(cap), one = _mm512_set1_ps(1.0f);
	const __m512 m2 = _mm512_set1_ps(-2.0f);
	for (int i = 0; i < n; i += 16) {
		__m512 y = _mm512_mul_ps(_mm512_load_ps(p + i), inv);
		__m512 t = exp512(_mm512_mul_ps(m2, _mm512_abs_ps(y)));
		__m512 th = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
		th = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(th),
							 _mm512_and_si512(_mm512_castps_si512(y),
									  _mm512_set1_epi32((int)0x80000000u))));
		_mm512_store_ps(p + i, _mm512_mul_ps(cv, th));
	}
}

/* Online softmax over one tile: mask by position, new running max, p = e^(s - max),
 * alpha = e^(old max - new max). The keys some lane sees are packed to the front:
 * their probabilities in p, their tile index in live_j; returns their count. */
static int tile_softmax512(struct tile512 *t, const int32_t *k_pos, int nk, int *live_j)
{
	const __m512 ninf = _mm512_set1_ps(-INFINITY);
	__mmask16 live[T], any = 0;
	__m512 mt = ninf;
	for (int jj = 0; jj < nk; jj++) {
		__m512i kp = _mm512_set1_epi32(k_pos[jj]);
		live[jj] = _mm512_mask_cmpgt_epi32_mask(_mm512_mask_cmple_epi32_mask(t->lanes, kp, t->qpos), kp, t->qlo);
		mt = _mm512_max_ps(mt, _mm512_mask_mov_ps(ninf, live[jj], _mm512_load_ps(t->p + jj * W)));
		any |= live[jj];
	}
	if (!any)
		return 0;
	__m512 mnew = _mm512_max_ps(t->m, mt);
	/* lanes that have seen nothing yet: any finite reference keeps e^(...) NaN-free */
	__m512 mref = _mm512_mask_mov_ps(mnew, _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ),
					 _mm512_setzero_ps());
	__m512 alpha = exp512(_mm512_sub_ps(t->m, mref)), sum = _mm512_setzero_ps();
	int n = 0;
	for (int jj = 0; jj < nk; jj++) {
		if (!live[jj])
			continue;
		__m512 s = _mm512_load_ps(t->p + jj * W);
		__m512 e = _mm512_maskz_mov_ps(live[jj], exp512(_mm512_sub_ps(s, mref)));
		_mm512_store_ps(t->p + n * W, e); /* n <= jj: row jj is read before */
		live_j[n++] = jj;
		sum = _mm512_add_ps(sum, e);
	}
	t->l = _mm512_fmadd_ps(t->l, alpha, sum);
	t->m = mnew;
	_mm512_store_ps(t->alpha, alpha);
	return n;
}

/* o[l][d0 + 16c ...] = o * alpha[l] + sum_jj p[jj][l] v_jj for 4 lanes from l0 and
 * nc vectors of 16 (the last masked by mlast). Inlined with constant nc. */
static inline __attribute__((always_inline)) void
tile_pv4_512(float *o, int hd, const float *p, const float *alpha, const float *v, size_t stride,
	     const int *live_j, int nk, int l0, int d0, const int nc, __mmask16 mlast)
{
	__m512 acc[4][4], vv[4];
	#pragma GCC unroll 4
	for (int l = 0; l < 4; l++) {
		__m512 al = _mm512_set1_ps(alpha[l0 + l]);
		#pragma GCC unroll 4
		for (int c = 0; c < nc; c++) {
			__mmask16 m = c == nc - 1 ? mlast : 0xFFFF;
			acc[l][c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, o + (l0 + l) * hd + d0 + 16 * c), al);
		}
	}
	for (int jj = 0; jj < nk; jj++) {
		const float *vj = v + live_j[jj] * stride + d0;
		#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			vv[c] = _mm512_maskz_loadu_ps(c == nc - 1 ? mlast : 0xFFFF, vj + 16 * c);
		#pragma GCC unroll 4
		for (int l = 0; l < 4; l++) {
			__m512 pb = _mm512_set1_ps(p[jj * W + l0 + l]);
			#pragma GCC unroll 4
			for (int c = 0; c < nc; c++)
				acc[l][c] = _mm512_fmadd_ps(pb, vv[c], acc[l][c]);
		}
	}
	#pragma GCC unroll 4
	for (int l = 0; l < 4; l++) {
		#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			_mm512_mask_storeu_ps(o + (l0 + l) * hd + d0 + 16 * c, c == nc - 1 ? mlast : 0xFFFF,
					      acc[l][c]);
	}
}

/* o = o * alpha + p^T V over the tile's live keys (the others are never read),
 * 64, 32 then 16 (masked) dims at a time. Not inlined: alone, it keeps its
 * accumulators in registers. */
static __attribute__((noinline)) void tile_pv512(struct tile512 *t, const float *v, size_t stride,
						  const int *live_j, int nk, int hd)
{
	for (int l0 = 0; l0 < t->nv; l0 += 4) {
		int d0 = 0;
		for (; d0 + 64 <= hd; d0 += 64)
			tile_pv4_512(t->o, hd, t->p, t->alpha, v, stride, live_j, nk, l0, d0, 4, 0xFFFF);
		for (; d0 + 32 <= hd; d0 += 32)
			tile_pv4_512(t->o, hd, t->p, t->alpha, v, stride, live_j, nk, l0, d0, 2, 0xFFFF);
		for (; d0 < hd; d0 += 16)
			tile_pv4_512(t->o, hd, t->p, t->alpha, v, stride, live_j, nk, l0, d0, 1, tail16(hd - d0));
	}
}

/* out = o / l per lane (zeros for a lane that saw no key). */
static void tile_store512(const struct tile512 *t, const struct ops_att *a, int g, int v0)
{
	const int hd = a->head_dim;
	float l[W];
	_mm512_storeu_ps(l, t->l);
	for (int ln = 0; ln < t->nv; ln++) {
		int i = 0, h = 0;
		ops_att_lane(a, g, v0 + ln, &i, &h);
		float *out = a->out + (size_t)i * a->q_stride + (size_t)h * hd;
		__m512 inv = _mm512_set1_ps(l[ln] > 0 ? 1.0f / l[ln] : 0.0f);
		for (int d = 0; d < hd; d += 16) {
			__mmask16 m = tail16(hd - d);
			_mm512_mask_storeu_ps(out + d, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, t->o + ln * hd + d), inv));
		}
	}
}

void ops_att_tile_avx512(const struct ops_att *a, int g, int v0, int nb, float *scratch)
{
	const int hd = a->head_dim;
	const size_t stride = (size_t)a->kv_stride, ko = (size_t)g * hd;
	struct tile512 t[OPS_ATT_TILE_NB];
	int32_t qmax = INT32_MIN;
	for (int b = 0; b < nb; b++) {
		float *f = scratch + (size_t)b * OPS_ATT_BLOCK_FLOATS(hd, W);
		t[b] = (struct tile512){ .qt = f, .o = f + hd * W, .p = f + 2 * hd * W,
					 .alpha = f + 2 * hd * W + T * W };
		tile_pack512(&t[b], a, g, v0 + b * W);
		qmax = t[b].qmax > qmax ? t[b].qmax : qmax;
	}
	for (int j0 = 0; j0 < a->n_kv; j0 += T) {
		int nk = a->n_kv - j0 < T ? a->n_kv - j0 : T;
		int32_t kmin, kmax;
		ops_att_krange(ops_att_kpos(a, g) + j0, nk, &kmin, &kmax);
		for (int b = 0; b < nb && kmin <= qmax; b++) {
			if (kmin > t[b].qmax || kmax <= t[b].qlo_min)
				continue; /* every key of the tile is in every lane's future, or behind its window */
			tile_scores512(t[b].p, t[b].qt, a->k + ko + j0 * stride, stride, nk, hd);
			if (a->softcap > 0)
				tile_softcap512(t[b].p, nk * W, a->softcap);
			int live_j[T], n_live = tile_softmax512(&t[b], ops_att_kpos(a, g) + j0, nk, live_j);
			if (n_live)
				tile_pv512(&t[b], a->v + ko + j0 * stride, stride, live_j, n_live, hd);
		}
	}
	for (int b = 0; b < nb; b++)
		tile_store512(&t[b], a, g, v0 + b * W);
}


/* ---- APE attention: the tile path, two states per block (ops_impl.h) ---- */
void ops_att_ape_tile_avx512(const struct ops_att *a, const struct ops_att *ac, int c0, int c1, float st, int g,
			  int v0, float *scratch)
{
	const int hd = a->head_dim;
	const size_t stride = (size_t)a->kv_stride, ko = (size_t)g * hd;
	struct tile512 t[2]; /* [0]: the other keys, [1]: the context */
	for (int b = 0; b < 2; b++) {
		float *f = scratch + (size_t)b * OPS_ATT_BLOCK_FLOATS(hd, W);
		t[b] = (struct tile512){ .qt = f, .o = f + hd * W, .p = f + 2 * hd * W,
					 .alpha = f + 2 * hd * W + T * W };
		tile_pack512(&t[b], b ? ac : a, g, v0);
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
			struct tile512 *tb = &t[r0 >= c0 && r1 <= c1];
			int32_t kmin = INT32_MAX;
			for (int j = r0; j < r1; j++)
				kmin = kp[j] < kmin ? kp[j] : kmin;
			if (kmin > tb->qmax)
				continue; /* every key of the run is in every lane's future */
			tile_scores512(tb->p, tb->qt, a->k + ko + r0 * stride, stride, r1 - r0, hd);
			int live_j[T], n_live = tile_softmax512(tb, kp + r0, r1 - r0, live_j);
			if (n_live)
				tile_pv512(tb, a->v + ko + r0 * stride, stride, live_j, n_live, hd);
		}
	}
	float m[2][W], l[2][W];
	for (int b = 0; b < 2; b++)
		_mm512_storeu_ps(m[b], t[b].m), _mm512_storeu_ps(l[b], t[b].l);
	for (int ln = 0; ln < t[0].nv; ln++) {
		int i = 0, h = 0;
		ops_att_lane(a, g, v0 + ln, &i, &h);
		ops_ape_merge(a->out + (size_t)i * a->q_stride + (size_t)h * hd, m[0][ln], l[0][ln], t[0].o + ln * hd,
			      m[1][ln], l[1][ln], t[1].o + ln * hd, st, hd);
	}
}

#endif
