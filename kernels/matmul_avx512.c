/* matmul_avx512.c — AVX-512 (F/BW/VL/DQ/VNNI) matrix multiplication.
 *
 * Q8_0 / Q4_0 weights, activations quantized to int8 blocks; the weight quants
 * enter vpdpbusd as unsigned bytes (Q8_0: w ^ 0x80, Q4_0: the nibbles) and the
 * offset is taken back out (matmul_impl.h).
 * - from ZP_MIN_TOK tokens (prefill): rows in lanes. A 16-row block is repacked
 *   into a panel once and used against every token, 8 tokens at a time; per
 *   block and token, 8 vpdpbusd then one convert and one FMA (zp_*).
 * - fewer tokens (decode): register tiles of ZR rows x T <= ZT tokens over the
 *   weights in place, 64 bytes = two blocks per step, per-lane scales (lanes
 *   0-7 block 0, 8-15 block 1) (zq_*).
 * K-quants (Q4_K, Q5_K, Q6_K): the same two shapes, see there (zk_*, zkp_*).
 * F32 / F16 (vcvtph2ps) / BF16 (shift into f32): register tiles of ZR rows x
 * T <= ZT tokens, 16 floats per step, FMA (zf_*).
 * Edge tiles reuse the full-height kernels: missing rows repeat the last valid
 * row and are not stored; short token tiles have their own instances.
 */
#include "matmul_impl.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
	defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>

#include <string.h>

#include "util.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
#define ZR 4 /* rows per register tile */
#define ZT 4 /* tokens per register tile */
#define ZTAB (MM_KCHUNK + 16) /* row stride of the weight-scale table */

/* ---- helpers ---- */

/* [p[0] x 8, p[1] x 8]: the scales of two blocks spread over their lanes. */
AI __m512 z_expand2(const float *p)
{
	return _mm512_mask_broadcastss_ps(_mm512_set1_ps(p[0]), 0xFF00, _mm_load_ss(p + 1));
}

/* [sum a, sum b, sum c, sum d]. */
AI __m128 z_hsum4(__m512 a, __m512 b, __m512 c, __m512 d)
{
	__m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
	__m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
	__m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
	__m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
	__m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Store (or add into) nr <= 4 consecutive outputs. */
AI void z_store4(float *y, __m128 v, int nr, int accum)
{
	__mmask8 m = (__mmask8)((1u << nr) - 1);
	if (accum)
		v = _mm_add_ps(v, _mm_maskz_loadu_ps(m, y));
	_mm_mask_storeu_ps(y, m, v);
}

/* ---- activation quantization ---- */

/* Whether v holds NaN or infinity: v - v is then NaN, else 0. */
AI __mmask16 z_nonfinite(__m512 v)
{
	return _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

/* A block of 32 activations as int8 and a scale; the sum of the int8s. A block
 * holding NaN or infinity gives zeros and a NaN scale, as in matmul.c. */
AI int z_quant_block(const float *x, int8_t *q, float *d)
{
	__m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
	if (z_nonfinite(v0) | z_nonfinite(v1)) {
		_mm256_storeu_si256((__m256i *)q, _mm256_setzero_si256());
		*d = __builtin_nanf("");
		return 0;
	}
	float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
	float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
	__m512 vid = _mm512_set1_ps(id);
	__m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
	__m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
	_mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
	_mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
	*d = db;
	return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

/* Token t into its row of the scratch (see matmul_impl.h). */
static void z_quant_row(const struct mm_args *a, int t)
{
	const float *x = a->x + (size_t)t * a->n_in;
	int8_t *qs = mm_xq_qs(a, t);
	float *d = mm_xq_d(a, t), *c = mm_xq_c(a, t);
	int32_t *ks = mm_xq_ks(a, t);
	int nb2 = mm_round_up(a->nb, 2), nbp = mm_round_up(a->nb, 16), k = mm_offset(a->wtype);

	for (int b = 0; b < a->nb; b++) {
		int sum = z_quant_block(x + b * 32, qs + b * 32, &d[b]);
		c[b] = d[b] * (float)sum;
		ks[b] = -k * sum;
	}
	for (int b = a->nb; b < nb2; b++)
		_mm256_store_si256((__m256i *)(qs + b * 32), _mm256_setzero_si256());
	for (int b = a->nb; b < nbp; b++)
		d[b] = c[b] = 0, ks[b] = 0;
}

/* Token t into its slots of the token-tiled layout; padding tokens get zeros. */
static void z_quant_tiled(const struct mm_args *a, int t)
{
	uint8_t *rec = mm_xt_tile(a, t);
	int j = t % MM_XT, k = mm_offset(a->wtype);

	for (int b = 0; b < a->nb; b++, rec += MM_XT_BLOCK) {
		int8_t *q = (int8_t *)rec + 32 * j;
		float *d = (float *)(rec + 32 * MM_XT) + j;
		int32_t *ks = (int32_t *)(rec + 36 * MM_XT) + j;
		if (t < a->n_tok) {
			*ks = -k * z_quant_block(a->x + (size_t)t * a->n_in + b * 32, q, d);
		} else {
			memset(q, 0, 32);
			*d = 0, *ks = 0;
		}
	}
}

static void z_quant(const struct mm_args *a, int t)
{
	if (a->xtiled)
		z_quant_tiled(a, t);
	else
		z_quant_row(a, t);
}

/* ---- quantized weights ---- */

/* Blocks s and s+1 of a weight row as 64 unsigned bytes, in the order of the
 * activation quants: Q8_0 as w + 128; Q4_0 as [lo(s), hi(s), lo(s+1), hi(s+1)]. */
AI __m512i zq_load2(int wt, const uint8_t *row, int s)
{
	if (wt == QTYPE_Q8_0) {
		const block_q8_0 *b = (const block_q8_0 *)row + s;
		__m256i lo = _mm256_loadu_si256((const __m256i *)b[0].qs);
		__m256i hi = _mm256_loadu_si256((const __m256i *)b[1].qs);
		__m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
		return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
	}
	const block_q4_0 *b = (const block_q4_0 *)row + s;
	__m256i q = _mm256_inserti128_si256(
		_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[0].qs)),
		_mm_loadu_si128((const __m128i *)b[1].qs), 1);
	__m512i z = _mm512_castsi256_si512(q);
	z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(1, 1, 0, 0));
	z = _mm512_mask_srli_epi16(z, 0xFF00FF00, z, 4);
	return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* Block s alone (the odd last one) in the lower half; the upper half meets
 * zero activations and a zero scale. */
AI __m512i zq_load1(int wt, const uint8_t *row, int s)
{
	if (wt == QTYPE_Q8_0) {
		const block_q8_0 *b = (const block_q8_0 *)row + s;
		__m512i w = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)b->qs));
		return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
	}
	const block_q4_0 *b = (const block_q4_0 *)row + s;
	__m512i z = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)b->qs));
	z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(1, 1, 0, 0));
	z = _mm512_mask_srli_epi16(z, 0xFF00FF00, z, 4);
	return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* Blocks s, s+1 (two = 0: block s alone) of every row against every token. */
AI void zq_step(int wt, int T, const uint8_t *const *wp, const float *const *dt,
		const int8_t *const *xp, const float *const *xd, int s, int two,
		__m512 acc[ZR][ZT])
{
	__m512i wv[ZR];
	__m512 dw[ZR];
	UNROLL
	for (int i = 0; i < ZR; i++) {
		wv[i] = two ? zq_load2(wt, wp[i], s) : zq_load1(wt, wp[i], s);
		dw[i] = z_expand2(dt[i] + s);
	}
	UNROLL
	for (int j = 0; j < T; j++) {
		__m512i xv = _mm512_load_si512(xp[j] + s * 32);
		__m512 dx = z_expand2(xd[j] + s);
		UNROLL
		for (int i = 0; i < ZR; i++) {
			__m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[i], xv);
			acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[i], dx),
						    acc[i][j]);
		}
	}
}

/* One ZR x T tile over the K chunk [kb0, kb0 + nbk) blocks; tab holds the
 * f32 weight scales of the tile's rows for this chunk (ZTAB floats a row). */
AI void zq_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt,
		int kb0, int nbk, const float *tab, int accum)
{
	const size_t bsz = wt == QTYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	const uint8_t *wp[ZR];
	const float *dt[ZR];
	const int8_t *xp[ZT];
	const float *xd[ZT], *xc[ZT];
	__m512 acc[ZR][ZT];

	UNROLL
	for (int i = 0; i < ZR; i++) {
		int ri = i < nr ? i : nr - 1;
		wp[i] = a->w + (size_t)(r + ri) * a->w_stride + (size_t)kb0 * bsz;
		dt[i] = tab + ri * ZTAB;
	}
	UNROLL
	for (int j = 0; j < T; j++) {
		int tj = t0 + (j < nt ? j : nt - 1);
		xp[j] = mm_xq_qs(a, tj) + kb0 * 32;
		xd[j] = mm_xq_d(a, tj) + kb0;
		xc[j] = mm_xq_c(a, tj) + kb0;
		UNROLL
		for (int i = 0; i < ZR; i++)
			acc[i][j] = _mm512_setzero_ps();
	}
	int s = 0;
	for (; s + 2 <= nbk; s += 2)
		zq_step(wt, T, wp, dt, xp, xd, s, 1, acc);
	if (s < nbk)
		zq_step(wt, T, wp, dt, xp, xd, s, 0, acc);

	/* take the unsigned offset back out: K * sum_b dw_b * c_b */
	const __m512 K = _mm512_set1_ps(wt == QTYPE_Q8_0 ? 128.0f : 8.0f);
	for (int b = 0; b < nbk; b += 16) {
		UNROLL
		for (int i = 0; i < ZR; i++) {
			__m512 dwk = _mm512_mul_ps(_mm512_load_ps(dt[i] + b), K);
			UNROLL
			for (int j = 0; j < T; j++)
				acc[i][j] = _mm512_fnmadd_ps(dwk, _mm512_load_ps(xc[j] + b), acc[i][j]);
		}
	}

	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		z_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 z_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, accum);
}

/* The f32 scales of rows [r0, r1) for blocks [kb0, kb0 + nbk), zero padded to 16. */
static void zq_fill_tab(const struct mm_args *a, int r0, int r1, int kb0, int nbk,
			float tab[][ZTAB])
{
	int npad = mm_round_up(nbk, 16);
	for (int r = r0; r < r1; r++) {
		const uint8_t *row = a->w + (size_t)r * a->w_stride;
		float *t = tab[r - r0];
		if (a->wtype == QTYPE_Q8_0)
			for (int b = 0; b < nbk; b++)
				t[b] = _cvtsh_ss(((const block_q8_0 *)row)[kb0 + b].d);
		else
			for (int b = 0; b < nbk; b++)
				t[b] = _cvtsh_ss(((const block_q4_0 *)row)[kb0 + b].d);
		for (int b = nbk; b < npad; b++)
			t[b] = 0;
	}
}

#define ZQ_TILES(wt)                                                                    \
	static void zq_tile_##wt(const struct mm_args *a, int r, int nr, int t0, int nt, \
				 int kb0, int nbk, const float *tab, int accum)          \
	{                                                                               \
		switch (nt) {                                                           \
		case 1: zq_tile(QTYPE_##wt, 1, a, r, nr, t0, nt, kb0, nbk, tab, accum); break; \
		case 2: zq_tile(QTYPE_##wt, 2, a, r, nr, t0, nt, kb0, nbk, tab, accum); break; \
		case 3: zq_tile(QTYPE_##wt, 3, a, r, nr, t0, nt, kb0, nbk, tab, accum); break; \
		default: zq_tile(QTYPE_##wt, ZT, a, r, nr, t0, nt, kb0, nbk, tab, accum); break; \
		}                                                                       \
	}
ZQ_TILES(Q8_0)
ZQ_TILES(Q4_0)

static void zq_rows(const struct mm_args *a, int r0, int r1)
{
	float tab[MM_ROW_BLOCK][ZTAB] __attribute__((aligned(64)));
	void (*tile)(const struct mm_args *, int, int, int, int, int, int, const float *, int) =
		a->wtype == QTYPE_Q8_0 ? zq_tile_Q8_0 : zq_tile_Q4_0;

	ASSERT(r1 - r0 <= MM_ROW_BLOCK);
	for (int kb0 = 0; kb0 < a->nb; kb0 += MM_KCHUNK) {
		int nbk = a->nb - kb0 < MM_KCHUNK ? a->nb - kb0 : MM_KCHUNK;
		zq_fill_tab(a, r0, r1, kb0, nbk, tab);
		for (int t0 = 0; t0 < a->n_tok; t0 += ZT) {
			int nt = a->n_tok - t0 < ZT ? a->n_tok - t0 : ZT;
			for (int r = r0; r < r1; r += ZR)
				tile(a, r, r1 - r < ZR ? r1 - r : ZR, t0, nt, kb0, nbk,
				     tab[r - r0], kb0 > 0);
		}
	}
}

/* ---- quantized weights, one token (decode) ----
 * As the register tiles above with T = 1, but the weight scales are converted
 * where they are used (no separate pass over the rows for a table, which
 * costs as much as the dot products when each weight is used once) and the
 * offset is taken out in the integer accumulators. */

#define ZD_R 8 /* rows at a time; the next ZD_R are prefetched meanwhile (mm_prefetch_tile) */

/* [d(b) x 8, d(b + 1) x 8] of a row's blocks as f32 (two = 0: block b alone). */
AI __m512 zd_scale2(int wt, const uint8_t *row, int b, int two)
{
	const size_t bsz = wt == QTYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	uint16_t h0, h1 = 0;
	memcpy(&h0, row + b * bsz, 2);
	if (two)
		memcpy(&h1, row + (b + 1) * bsz, 2);
	return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)h1), _mm_set1_epi16((short)h0)));
}

/* Rows [r, r + nr) (nr <= ZD_R; missing rows repeat the last, not stored) for token 0. */
AI void zd_tile(int wt, const struct mm_args *a, int r, int nr)
{
	const int8_t *xq = mm_xq_qs(a, 0);
	const float *xd = mm_xq_d(a, 0);
	const int32_t *xk = mm_xq_ks(a, 0);
	const size_t bsz = wt == QTYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	const uint8_t *wp[ZD_R];
	__m512 acc[ZD_R];

	UNROLL
	for (int i = 0; i < ZD_R; i++) {
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
		acc[i] = _mm512_setzero_ps();
	}
	for (int s = 0; s < a->nb; s += 2) {
		int two = s + 1 < a->nb;
		__m512i xv = _mm512_load_si512(xq + s * 32);
		__m512 dx = z_expand2(xd + s);
		/* the offset per lane: ks / 8 (ks is a multiple of 8; zero past nb) */
		__m512i k0 = _mm512_mask_broadcastd_epi32(_mm512_set1_epi32(xk[s]), 0xFF00,
							  _mm_cvtsi32_si128(xk[s + 1]));
		k0 = _mm512_srai_epi32(k0, 3);
		mm_prefetch_tile(a, r + ZD_R, ZD_R, 0, (size_t)a->nb * bsz, s / 2, (a->nb + 1) / 2);
		UNROLL
		for (int i = 0; i < ZD_R; i++) {
			__m512i wv = two ? zq_load2(wt, wp[i], s) : zq_load1(wt, wp[i], s);
			__m512i p = _mm512_dpbusd_epi32(k0, wv, xv);
			acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(zd_scale2(wt, wp[i], s, two), dx),
						 acc[i]);
		}
	}
	z_store4(a->y + r, z_hsum4(acc[0], acc[1], acc[2], acc[3]), nr < 4 ? nr : 4, 0);
	if (nr > 4)
		z_store4(a->y + r + 4, z_hsum4(acc[4], acc[5], acc[6], acc[7]), nr - 4, 0);
}

#define ZD_ROWS(wt)                                                         \
	static void zd_rows_##wt(const struct mm_args *a, int r0, int r1)  \
	{                                                                   \
		for (int r = r0; r < r1; r += ZD_R)                         \
			zd_tile(QTYPE_##wt, a, r, r1 - r < ZD_R ? r1 - r : ZD_R); \
	}
ZD_ROWS(Q8_0)
ZD_ROWS(Q4_0)

/* ---- quantized weights, one token, 256 bits wide ----
 * zd_tile's scheme in ymm registers, one block a step, with the EVEX vpdpbusd
 * of AVX512-VL + VNNI: a candidate of the matrix-vector plan (kern_plan_matvec)
 * for cores that split 512-bit operations in two (AMD Zen 4), where it keeps
 * VNNI without the split. Only for one token: the plan uses it for nothing else. */

#define ZY_R 8 /* rows at a time */

/* Block s of a weight row as 32 unsigned bytes in the activation quants' order. */
AI __m256i zy_load(int wt, const uint8_t *row, int s)
{
	if (wt == QTYPE_Q8_0) {
		__m256i w = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)row + s)->qs);
		return _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
	}
	__m128i q = _mm_loadu_si128((const __m128i *)((const block_q4_0 *)row + s)->qs);
	return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

/* [sum a, sum b, sum c, sum d] of four 8-lane vectors. */
AI __m128 zy_hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
	__m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Rows [r, r + nr) (nr <= ZY_R; missing rows repeat the last, not stored) for token 0. */
AI void zy_tile(int wt, const struct mm_args *a, int r, int nr)
{
	const int8_t *xq = mm_xq_qs(a, 0);
	const float *xd = mm_xq_d(a, 0);
	const int32_t *xk = mm_xq_ks(a, 0);
	const size_t bsz = wt == QTYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	const uint8_t *wp[ZY_R];
	__m256 acc[ZY_R];

	UNROLL
	for (int i = 0; i < ZY_R; i++) {
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
		acc[i] = _mm256_setzero_ps();
	}
	for (int s = 0; s < a->nb; s++) {
		__m256i xv = _mm256_load_si256((const __m256i *)(xq + s * 32));
		__m256 dx = _mm256_set1_ps(xd[s]);
		__m256i k0 = _mm256_set1_epi32(xk[s] >> 3); /* the offset, ks / 8 per lane */
		mm_prefetch_tile(a, r + ZY_R, ZY_R, 0, (size_t)a->nb * bsz, s, a->nb);
		UNROLL
		for (int i = 0; i < ZY_R; i++) {
			uint16_t h;
			memcpy(&h, wp[i] + (size_t)s * bsz, 2);
			__m256i p = _mm256_dpbusd_epi32(k0, zy_load(wt, wp[i], s), xv);
			acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(h)), dx),
						 acc[i]);
		}
	}
	z_store4(a->y + r, zy_hsum4(acc[0], acc[1], acc[2], acc[3]), nr < 4 ? nr : 4, 0);
	if (nr > 4)
		z_store4(a->y + r + 4, zy_hsum4(acc[4], acc[5], acc[6], acc[7]), nr - 4, 0);
}

#define ZY_ROWS(wt)                                                         \
	static void zy_rows_##wt(const struct mm_args *a, int r0, int r1)  \
	{                                                                   \
		ASSERT(a->n_tok == 1 && !a->xtiled);                        \
		for (int r = r0; r < r1; r += ZY_R)                         \
			zy_tile(QTYPE_##wt, a, r, r1 - r < ZY_R ? r1 - r : ZY_R); \
	}
ZY_ROWS(Q8_0)
ZY_ROWS(Q4_0)

/* ---- quantized weights, prefill: rows in lanes ----
 * For many tokens the weights of a row block are first repacked into a panel:
 * for each block and each group g of 4 quants, one vector holds those 4
 * bytes of all 16 rows (one row per 32-bit lane). One vpdpbusd with the
 * token's 4 activation bytes broadcast then advances 16 row dot products,
 * 8 of them finish a block, and the int32 lanes are already per row: one
 * convert and one FMA with dw (16 rows) * dx per block and token. The int
 * accumulator starts at ks = -K * sum(x) to take the offset back out. */

#define ZP_KB 64     /* blocks per panel */
_Static_assert(MM_XT == 8 && MM_ROW_BLOCK == 16, "panel tiles: 8 tokens x 16 rows");
#define ZP_MIN_TOK 5 /* fewer tokens than this: register tiles without a panel */

struct zp_panel {
	__m512i q[ZP_KB][8]; /* [block][group]: 4 quants of each of the 16 rows */
	__m512 d[ZP_KB];     /* [block]: the 16 rows' scales */
};

/* Transpose 8 vectors [row k | row k+4] (k < 4), [row 8+k | row 12+k] (k >= 4),
 * each row 8 dwords, into out[g] = dword g of rows 0..15. */
AI void zp_transpose(const __m512i z[8], __m512i out[8])
{
	__m512i t[8], u[8];
	for (int h = 0; h < 2; h++) {
		const __m512i *zz = z + 4 * h;
		t[4 * h + 0] = _mm512_unpacklo_epi32(zz[0], zz[1]);
		t[4 * h + 1] = _mm512_unpackhi_epi32(zz[0], zz[1]);
		t[4 * h + 2] = _mm512_unpacklo_epi32(zz[2], zz[3]);
		t[4 * h + 3] = _mm512_unpackhi_epi32(zz[2], zz[3]);
		u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]); /* dwords 0, 4 */
		u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]); /* 1, 5 */
		u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]); /* 2, 6 */
		u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]); /* 3, 7 */
	}
	for (int g = 0; g < 4; g++) {
		out[g] = _mm512_shuffle_i64x2(u[g], u[4 + g], _MM_SHUFFLE(2, 0, 2, 0));
		out[g + 4] = _mm512_shuffle_i64x2(u[g], u[4 + g], _MM_SHUFFLE(3, 1, 3, 1));
	}
}

/* Block b of rows ra and rb as [ra | rb], 32 unsigned bytes each in the
 * activation order (Q8_0: w + 128; Q4_0: [lo nibbles | hi nibbles]). */
AI __m512i zp_load_pair(int wt, const uint8_t *ra, const uint8_t *rb, int b)
{
	if (wt == QTYPE_Q8_0) {
		__m256i lo = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)ra + b)->qs);
		__m256i hi = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)rb + b)->qs);
		__m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
		return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
	}
	__m256i q = _mm256_inserti128_si256(
		_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)((const block_q4_0 *)ra + b)->qs)),
		_mm_loadu_si128((const __m128i *)((const block_q4_0 *)rb + b)->qs), 1);
	__m512i z = _mm512_castsi256_si512(q);
	z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(1, 1, 0, 0));
	z = _mm512_mask_srli_epi16(z, 0xFF00FF00, z, 4);
	return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* Repack blocks [kb0, kb0 + nbk) of rows [r0, r0 + nr) (missing rows repeat the last). */
AI void zp_pack(int wt, const struct mm_args *a, int r0, int nr, int kb0, int nbk, struct zp_panel *p)
{
	const uint8_t *rp[16];
	for (int i = 0; i < 16; i++)
		rp[i] = a->w + (size_t)(r0 + (i < nr ? i : nr - 1)) * a->w_stride;
	for (int b = 0; b < nbk; b++) {
		__m512i z[8];
		UNROLL
		for (int k = 0; k < 4; k++) {
			z[k] = zp_load_pair(wt, rp[k], rp[k + 4], kb0 + b);
			z[k + 4] = zp_load_pair(wt, rp[k + 8], rp[k + 12], kb0 + b);
		}
		zp_transpose(z, p->q[b]);
		uint16_t h[16];
		for (int i = 0; i < 16; i++)
			h[i] = wt == QTYPE_Q8_0 ? ((const block_q8_0 *)rp[i])[kb0 + b].d
						: ((const block_q4_0 *)rp[i])[kb0 + b].d;
		p->d[b] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
	}
}

/* Load 4 bytes as an int32 (any alignment). */
AI int32_t z_ld32(const uint8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* 16 rows x the first T tokens of the tile from t0 over one panel. */
AI void zp_tile(int T, const struct mm_args *a, const struct zp_panel *p, int r0, int nr, int t0,
		int kb0, int nbk, int accum)
{
	const uint8_t *rec = mm_xt_tile(a, t0) + (size_t)kb0 * MM_XT_BLOCK;
	__m512 acc[8];

	UNROLL
	for (int j = 0; j < T; j++)
		acc[j] = _mm512_setzero_ps();
	for (int b = 0; b < nbk; b++, rec += MM_XT_BLOCK) {
		__m512i w[8];
		UNROLL
		for (int g = 0; g < 8; g++)
			w[g] = _mm512_load_si512(&p->q[b][g]);
		__m512 dw = _mm512_load_ps(&p->d[b]);
		UNROLL
		for (int j = 0; j < T; j++) {
			__m512i s = _mm512_set1_epi32(z_ld32(rec + 36 * MM_XT + 4 * j));
			UNROLL
			for (int g = 0; g < 8; g++)
				s = _mm512_dpbusd_epi32(s, w[g], _mm512_set1_epi32(z_ld32(rec + 32 * j + 4 * g)));
			float dx;
			memcpy(&dx, rec + 32 * MM_XT + 4 * j, 4);
			acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc[j]);
		}
	}
	__mmask16 m = (__mmask16)((1u << nr) - 1);
	int nt = a->n_tok - t0 < T ? a->n_tok - t0 : T;
	for (int j = 0; j < nt; j++) {
		float *y = a->y + (size_t)(t0 + j) * a->n_out + r0;
		__m512 v = accum ? _mm512_add_ps(acc[j], _mm512_maskz_loadu_ps(m, y)) : acc[j];
		_mm512_mask_storeu_ps(y, m, v);
	}
}

#define ZP_ROWS(wt)                                                                     \
	static void zp_rows_##wt(const struct mm_args *a, int r0, int r1)              \
	{                                                                               \
		struct zp_panel p;                                                      \
		for (int kb0 = 0; kb0 < a->nb; kb0 += ZP_KB) {                          \
			int nbk = a->nb - kb0 < ZP_KB ? a->nb - kb0 : ZP_KB;            \
			zp_pack(QTYPE_##wt, a, r0, r1 - r0, kb0, nbk, &p);              \
			for (int t0 = 0; t0 < a->n_tok; t0 += MM_XT) {                  \
				if (a->n_tok - t0 > 4)                                  \
					zp_tile(8, a, &p, r0, r1 - r0, t0, kb0, nbk, kb0 > 0); \
				else                                                    \
					zp_tile(4, a, &p, r0, r1 - r0, t0, kb0, nbk, kb0 > 0); \
			}                                                               \
		}                                                                       \
	}
ZP_ROWS(Q8_0)
ZP_ROWS(Q4_0)

static void zq_rows_any(const struct mm_args *a, int r0, int r1)
{
	ASSERT(r1 - r0 <= 16);
	if (a->n_tok == 1)
		(a->wtype == QTYPE_Q8_0 ? zd_rows_Q8_0 : zd_rows_Q4_0)(a, r0, r1);
	else if (!a->xtiled)
		zq_rows(a, r0, r1);
	else if (a->wtype == QTYPE_Q8_0)
		zp_rows_Q8_0(a, r0, r1);
	else
		zp_rows_Q4_0(a, r0, r1);
}

/* ---- K-quant weights (Q4_K, Q5_K, Q6_K) ----
 * Activations in records of 256 (matmul_impl.h). A super-block of a row is
 * unpacked to 4 vectors of 64 unsigned quants in element order (zk_quants).
 * - fewer than ZKP_MIN_TOK tokens (decode): register tiles of ZK_R rows x
 *   T <= ZT tokens over the weights in place; per super-block, row and token:
 *   maddubs (quant pairs to int16; q <= 63, so no saturation), vpdpwssd with
 *   the sub-block scales as int16 lanes into int32, one convert and FMA with
 *   dw * dx, one FMA for the mins (zk_*).
 * - more (prefill): a 16-row block repacked into a panel of rows in lanes per
 *   ZKP_KB super-blocks (quants and scales transposed with shuffles), as zp_*
 *   for Q4_0: per sub-block of G and token, G/4 vpdpbusd with the token's 4
 *   quants broadcast, one convert, one FMA with the 16 rows' float scales,
 *   one FMA with their mins; dx once per super-block (zkp_*). */



#define ZK_PF 2       /* decode: prefetch each row this many super-blocks ahead */
#define ZK_R 4        /* rows per register tile */
#define ZKP_KB 4      /* super-blocks per panel */
#define ZKP_MIN_TOK 16 /* panels from this many tokens (below, the repacking costs more than it saves) */

/* Super-block b of a row as 4 vectors of 64 unsigned quants, elements 64 v .. 64 v + 63. */
AI void zk_quants(int wt, const uint8_t *row, int b, __m512i q[4])
{
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	if (wt == QTYPE_Q6_K) {
		const block_q6_K *k = (const block_q6_K *)row + b;
		const __m512i m2 = _mm512_set1_epi8(0x30);
		UNROLL
		for (int h = 0; h < 2; h++) {
			/* ql[64 h ..]: low nibbles elements 0-63 of the half, high nibbles 64-127;
			 * bits 2i, 2i+1 of qh[32 h + l]: element 32 i + l of the half */
			__m512i z = _mm512_loadu_si512(k->ql + 64 * h);
			__m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(k->qh + 32 * h)));
			__m512i h0 = _mm512_mask_slli_epi16(_mm512_slli_epi16(hh, 4), 0xFFFF0000, hh, 2);
			__m512i h1 = _mm512_mask_srli_epi16(hh, 0xFFFF0000, hh, 2);
			q[2 * h] = _mm512_or_si512(_mm512_and_si512(z, m4), _mm512_and_si512(h0, m2));
			q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4),
						       _mm512_and_si512(h1, m2));
		}
		return;
	}
	const uint8_t *blk = row + (size_t)b * mm_kq_bytes(wt);
	const uint8_t *qs = blk + (wt == QTYPE_Q4_K ? 16 : 48);
	UNROLL
	for (int v = 0; v < 4; v++) { /* qs[32 v ..]: low nibbles sub-block 2v, high 2v + 1 */
		__m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * v)));
		q[v] = _mm512_and_si512(_mm512_mask_srli_epi16(z, 0xFFFF0000, z, 4), m4);
	}
	if (wt == QTYPE_Q5_K) { /* the fifth bit of element 32 j + l: bit j of qh[l] */
		__m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)));
		UNROLL
		for (int v = 0; v < 4; v++) {
			__m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << 2 * v)),
							 _mm256_set1_epi8((char)(1 << (2 * v + 1))), 1);
			q[v] = _mm512_mask_add_epi8(q[v], _mm512_test_epi8_mask(hh, bit), q[v], _mm512_set1_epi8(16));
		}
	}
}

/* The scales of super-block b of a row: sv[v] the int16 scales of the 32 quant
 * pairs of vector v (zk_quants); mf[g] = dm * m of sub-block g (zero past the
 * sub-blocks); *dw. */
AI void zk_scales(int wt, const uint8_t *row, int b, __m512i sv[4], __m512 *mf, float *dw)
{
	/* pair lane i of vector v: sub-block (64 v + 2 i) / G */
	const __m512i lane = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
					      15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
	uint16_t h[2];
	__m512i s16;
	if (wt == QTYPE_Q6_K) {
		const block_q6_K *k = (const block_q6_K *)row + b;
		__m128i s8 = _mm_loadu_si128((const __m128i *)k->scales);
		s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(s8));
		memcpy(h, &k->d, 2);
		*dw = _cvtsh_ss(h[0]);
		*mf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s8)), _mm512_set1_ps(32 * *dw));
		UNROLL
		for (int v = 0; v < 4; v++)
			sv[v] = _mm512_permutexvar_epi16(_mm512_add_epi16(_mm512_srli_epi16(lane, 3),
									  _mm512_set1_epi16((short)(4 * v))), s16);
		return;
	}
	const block_q4_K *k = (const block_q4_K *)(row + (size_t)b * mm_kq_bytes(wt));
	uint64_t sc, m;
	mm_kq_scales8(k->scales, &sc, &m);
	s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
	memcpy(h, k, 4);
	*dw = _cvtsh_ss(h[0]);
	*mf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m))),
			    _mm512_set1_ps(_cvtsh_ss(h[1])));
	UNROLL
	for (int v = 0; v < 4; v++)
		sv[v] = _mm512_permutexvar_epi16(_mm512_add_epi16(_mm512_srli_epi16(lane, 4),
								  _mm512_set1_epi16((short)(2 * v))), s16);
}

/* ZK_R rows from r (nr valid; missing rows repeat the last, not stored) x T
 * tokens from t0 (nt valid) over every super-block; row layout. */
AI void zk_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt)
{
	const uint8_t *wp[ZK_R], *xr[ZT];
	__m512 acc[ZK_R][ZT];

	UNROLL
	for (int i = 0; i < ZK_R; i++)
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
	UNROLL
	for (int j = 0; j < T; j++) {
		xr[j] = mm_kx_rec(a, t0 + (j < nt ? j : nt - 1), 0);
		UNROLL
		for (int i = 0; i < ZK_R; i++)
			acc[i][j] = _mm512_setzero_ps();
	}
	for (int b = 0; b < a->nb; b++) {
		UNROLL
		for (int i = 0; i < ZK_R; i++) {
			__m512i q[4], sv[4];
			__m512 mf;
			float dw;
			/* the hardware prefetchers keep up with 4 interleaved rows
			 * poorly: decode from DRAM 1.6x faster with this */
			if (b + ZK_PF < a->nb) {
				const uint8_t *pf = wp[i] + (size_t)(b + ZK_PF) * mm_kq_bytes(wt);
				UNROLL
				for (int l = 0; l < (int)mm_kq_bytes(wt); l += 64)
					_mm_prefetch((const char *)pf + l, _MM_HINT_T0);
			}
			zk_quants(wt, wp[i], b, q);
			zk_scales(wt, wp[i], b, sv, &mf, &dw);
			UNROLL
			for (int j = 0; j < T; j++) {
				const uint8_t *rec = xr[j] + (size_t)b * MM_KX_REC;
				__m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], _mm512_load_si512(rec)), sv[0]);
				UNROLL
				for (int v = 1; v < 4; v++)
					s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q[v], _mm512_load_si512(rec + 64 * v)),
								sv[v]);
				float dx;
				memcpy(&dx, rec + MM_KX_D, sizeof dx);
				acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dw * dx), acc[i][j]);
				acc[i][j] = _mm512_fnmadd_ps(mf, _mm512_load_ps((const float *)(rec + MM_KX_FX)), acc[i][j]);
			}
		}
	}
	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		z_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 z_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, 0);
}

/* The token-by-row tile walk of a weight type over rows [r0, r1): p##_tile
 * (zk: K-quants, R = ZK_R rows; zf: float weights, R = ZR) for each ZT tokens
 * and R rows, with tiles of 1, 2 or 3 tokens for what is left. */
#define Z_ROWS(p, R, wt)                                                            \
	static void p##_rows_##wt(const struct mm_args *a, int r0, int r1)         \
	{                                                                           \
		for (int t0 = 0; t0 < a->n_tok; t0 += ZT) {                         \
			int nt = a->n_tok - t0 < ZT ? a->n_tok - t0 : ZT;           \
			for (int r = r0; r < r1; r += R) {                          \
				int nr = r1 - r < R ? r1 - r : R;                   \
				switch (nt) {                                       \
				case 1: p##_tile(QTYPE_##wt, 1, a, r, nr, t0, nt); break; \
				case 2: p##_tile(QTYPE_##wt, 2, a, r, nr, t0, nt); break; \
				case 3: p##_tile(QTYPE_##wt, 3, a, r, nr, t0, nt); break; \
				default: p##_tile(QTYPE_##wt, ZT, a, r, nr, t0, nt); break; \
				}                                                   \
			}                                                           \
		}                                                                   \
	}
Z_ROWS(zk, ZK_R, Q4_K)
Z_ROWS(zk, ZK_R, Q5_K)
Z_ROWS(zk, ZK_R, Q6_K)

/* ---- K-quant weights, prefill: rows in lanes ---- */

struct zkp_panel {
	int32_t q[ZKP_KB][64][16] __attribute__((aligned(64))); /* [super-block][group of 4 quants][row] */
	float sc[ZKP_KB][16][16] __attribute__((aligned(64)));  /* [super-block][sub-block][row]: dw * sc */
	float mn[ZKP_KB][16][16] __attribute__((aligned(64)));  /* dm * m */
};

/* The float scales dw * sc[j] (lane j) and mins dm * m[j] of super-block b of a row. */
AI void zk_fscales(int wt, const uint8_t *row, int b, __m512 *fsc, __m512 *fmn)
{
	uint16_t h[2];
	if (wt == QTYPE_Q6_K) {
		const block_q6_K *k = (const block_q6_K *)row + b;
		memcpy(h, &k->d, 2);
		__m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)k->scales)));
		*fsc = _mm512_mul_ps(sc, _mm512_set1_ps(_cvtsh_ss(h[0])));
		*fmn = _mm512_mul_ps(*fsc, _mm512_set1_ps(32.0f));
		return;
	}
	const block_q4_K *k = (const block_q4_K *)(row + (size_t)b * mm_kq_bytes(wt));
	uint64_t sc, m;
	mm_kq_scales8(k->scales, &sc, &m);
	memcpy(h, k, 4);
	*fsc = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))),
			     _mm512_set1_ps(_cvtsh_ss(h[0])));
	*fmn = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m))),
			     _mm512_set1_ps(_cvtsh_ss(h[1])));
}

/* out[j] = lane j of v[0..15] (16 x 16 floats), for j < 8 * halves. */
AI void zkp_transpose16(const __m512 v[16], int halves, __m512 out[16])
{
	for (int hd = 0; hd < halves; hd++) {
		__m512i z[8], o[8];
		for (int k = 0; k < 8; k++) { /* [lanes 8hd.. of row k' | row k' + 4], k' = k + 4 (k >= 4) */
			int r = k < 4 ? k : k + 4;
			z[k] = _mm512_castps_si512(hd ? _mm512_shuffle_f32x4(v[r], v[r + 4], 0xEE)
						      : _mm512_shuffle_f32x4(v[r], v[r + 4], 0x44));
		}
		zp_transpose(z, o);
		for (int g = 0; g < 8; g++)
			out[8 * hd + g] = _mm512_castsi512_ps(o[g]);
	}
}

/* Repack super-blocks [kb0, kb0 + nbk) of rows [r0, r0 + nr) (missing rows repeat the last). */
AI void zkp_pack(int wt, const struct mm_args *a, int r0, int nr, int kb0, int nbk, struct zkp_panel *p)
{
	const int halves = wt == QTYPE_Q6_K ? 2 : 1;
	uint8_t u[16][QK_K] __attribute__((aligned(64)));
	for (int b = 0; b < nbk; b++) {
		__m512 fsc[16], fmn[16], t[16];
		for (int i = 0; i < 16; i++) {
			const uint8_t *row = a->w + (size_t)(r0 + (i < nr ? i : nr - 1)) * a->w_stride;
			__m512i q[4];
			zk_quants(wt, row, kb0 + b, q);
			for (int v = 0; v < 4; v++)
				_mm512_store_si512(u[i] + 64 * v, q[v]);
			zk_fscales(wt, row, kb0 + b, &fsc[i], &fmn[i]);
		}
		zkp_transpose16(fsc, halves, t);
		for (int j = 0; j < 8 * halves; j++)
			_mm512_store_ps(p->sc[b][j], t[j]);
		zkp_transpose16(fmn, halves, t);
		for (int j = 0; j < 8 * halves; j++)
			_mm512_store_ps(p->mn[b][j], t[j]);
		/* 32 quants (8 groups of 4) at a time: [row k | row k + 4], [row 8 + k | row 12 + k] */
		for (int c = 0; c < 8; c++) {
			__m512i z[8], out[8];
			for (int k = 0; k < 4; k++) {
				z[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256((const __m256i *)(u[k] + 32 * c))),
							  _mm256_load_si256((const __m256i *)(u[k + 4] + 32 * c)), 1);
				z[k + 4] = _mm512_inserti64x4(
					_mm512_castsi256_si512(_mm256_load_si256((const __m256i *)(u[k + 8] + 32 * c))),
					_mm256_load_si256((const __m256i *)(u[k + 12] + 32 * c)), 1);
			}
			zp_transpose(z, out);
			for (int g = 0; g < 8; g++)
				_mm512_store_si512(p->q[b][8 * c + g], out[g]);
		}
	}
}

/* 16 rows x the MM_XT tokens of the tile at t0 over one panel; tiled layout.
 * Per super-block and token, fs = sum_j dw sc_j * dot_j, then acc += dx * fs;
 * the mins go into acc directly (fx already has dx). Each token's dot of a
 * sub-block is two vpdpbusd chains (latency). */
AI void zkp_tile(int wt, const struct mm_args *a, const struct zkp_panel *p, int r0, int nr, int t0, int kb0,
		 int nbk, int accum)
{
	const int G = mm_k_group(wt), ng = QK_K / G;
	__m512 acc[MM_XT];

	UNROLL
	for (int t = 0; t < MM_XT; t++)
		acc[t] = _mm512_setzero_ps();
	for (int b = 0; b < nbk; b++) {
		const uint8_t *rec = mm_kx_rec(a, t0, kb0 + b); /* token t at rec + t * MM_KX_REC */
		const int32_t(*q)[16] = p->q[b];
		__m512 fs[MM_XT];
		UNROLL
		for (int t = 0; t < MM_XT; t++)
			fs[t] = _mm512_setzero_ps();
		for (int j = 0; j < ng; j++, q += G / 4) {
			__m512i w[8];
			UNROLL
			for (int g = 0; g < G / 4; g++)
				w[g] = _mm512_load_si512(q[g]);
			__m512 sc = _mm512_load_ps(p->sc[b][j]), mn = _mm512_load_ps(p->mn[b][j]);
			UNROLL
			for (int t = 0; t < MM_XT; t++) {
				const uint8_t *xr = rec + t * MM_KX_REC + j * G;
				__m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
				UNROLL
				for (int g = 0; g < G / 4; g += 2) {
					s0 = _mm512_dpbusd_epi32(s0, w[g], _mm512_set1_epi32(z_ld32(xr + 4 * g)));
					s1 = _mm512_dpbusd_epi32(s1, w[g + 1], _mm512_set1_epi32(z_ld32(xr + 4 * g + 4)));
				}
				__m512i s = _mm512_add_epi32(s0, s1);
				float fx;
				memcpy(&fx, rec + t * MM_KX_REC + MM_KX_FX + 4 * j, sizeof fx);
				fs[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, fs[t]);
				acc[t] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(fx), acc[t]);
			}
		}
		UNROLL
		for (int t = 0; t < MM_XT; t++) {
			float dx;
			memcpy(&dx, rec + t * MM_KX_REC + MM_KX_D, sizeof dx);
			acc[t] = _mm512_fmadd_ps(fs[t], _mm512_set1_ps(dx), acc[t]);
		}
	}
	__mmask16 m = (__mmask16)((1u << nr) - 1);
	int nt = a->n_tok - t0 < MM_XT ? a->n_tok - t0 : MM_XT;
	for (int t = 0; t < nt; t++) {
		float *y = a->y + (size_t)(t0 + t) * a->n_out + r0;
		__m512 v = accum ? _mm512_add_ps(acc[t], _mm512_maskz_loadu_ps(m, y)) : acc[t];
		_mm512_mask_storeu_ps(y, m, v);
	}
}

#define ZKP_ROWS(wt)                                                                  \
	static void zkp_rows_##wt(const struct mm_args *a, int r0, int r1)           \
	{                                                                             \
		struct zkp_panel p;                                                   \
		for (int kb0 = 0; kb0 < a->nb; kb0 += ZKP_KB) {                       \
			int nbk = a->nb - kb0 < ZKP_KB ? a->nb - kb0 : ZKP_KB;        \
			zkp_pack(QTYPE_##wt, a, r0, r1 - r0, kb0, nbk, &p);           \
			for (int t0 = 0; t0 < a->n_tok; t0 += MM_XT)                  \
				zkp_tile(QTYPE_##wt, a, &p, r0, r1 - r0, t0, kb0, nbk, kb0 > 0); \
		}                                                                     \
	}
ZKP_ROWS(Q4_K)
ZKP_ROWS(Q5_K)
ZKP_ROWS(Q6_K)

static void zk_rows_any(const struct mm_args *a, int r0, int r1)
{
	ASSERT(r1 - r0 <= 16);
	switch (a->wtype) {
	case QTYPE_Q4_K: (a->xtiled ? zkp_rows_Q4_K : zk_rows_Q4_K)(a, r0, r1); break;
	case QTYPE_Q5_K: (a->xtiled ? zkp_rows_Q5_K : zk_rows_Q5_K)(a, r0, r1); break;
	default: (a->xtiled ? zkp_rows_Q6_K : zk_rows_Q6_K)(a, r0, r1); break;
	}
}

/* Token t (>= n_tok: zeros) into its K-quant records. */
static void zk_quant(const struct mm_args *a, int t)
{
	const int G = mm_k_group(a->wtype);
	for (int b = 0; b < a->nb; b++) {
		uint8_t *rec = mm_kx_rec(a, t, b);
		if (t >= a->n_tok) {
			for (int k = 0; k < MM_KX_REC / 64; k++)
				_mm512_store_si512(rec + 64 * k, _mm512_setzero_si512());
			continue;
		}
		const float *x = a->x + (size_t)t * a->n_in + (size_t)b * QK_K;
		__m512 v[16], mx = _mm512_setzero_ps();
		__mmask16 bad = 0;
		for (int k = 0; k < 16; k++) {
			v[k] = _mm512_loadu_ps(x + 16 * k);
			mx = _mm512_max_ps(mx, _mm512_abs_ps(v[k]));
			bad |= z_nonfinite(v[k]);
		}
		if (bad) { /* zeros and NaN scales, as in matmul.c */
			for (int k = 0; k < MM_KX_REC / 64; k++)
				_mm512_store_si512(rec + 64 * k, _mm512_setzero_si512());
			_mm512_store_ps((float *)(rec + MM_KX_FX), _mm512_set1_ps(__builtin_nanf("")));
			float nan = __builtin_nanf("");
			memcpy(rec + MM_KX_D, &nan, sizeof nan);
			continue;
		}
		float amax = _mm512_reduce_max_ps(mx);
		float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
		__m512 vid = _mm512_set1_ps(id);
		float fx[16] __attribute__((aligned(64)));
		__m512i qi[16];
		for (int k = 0; k < 16; k++) {
			qi[k] = _mm512_cvtps_epi32(_mm512_mul_ps(v[k], vid));
			_mm_store_si128((__m128i *)(rec + 16 * k), _mm512_cvtepi32_epi8(qi[k]));
		}
		for (int g = 0; g < 16; g++)
			fx[g] = g < QK_K / G ? db * (float)(G == 16 ? _mm512_reduce_add_epi32(qi[g])
								    : _mm512_reduce_add_epi32(_mm512_add_epi32(qi[2 * g], qi[2 * g + 1])))
					     : 0.0f;
		_mm512_store_ps((float *)(rec + MM_KX_FX), _mm512_load_ps(fx));
		memcpy(rec + MM_KX_D, &db, sizeof db);
	}
}

/* ---- float weights ---- */

/* 16 weights from element k of a row as f32; m masks a short tail. */
AI __m512 zf_load(int wt, const uint8_t *row, int k, __mmask16 m, int full)
{
	if (wt == QTYPE_F32) {
		const float *p = (const float *)row + k;
		return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
	}
	const uint16_t *p = (const uint16_t *)row + k;
	__m256i h = full ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(m, p);
	if (wt == QTYPE_F16)
		return _mm512_cvtph_ps(h);
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI void zf_step(int wt, int T, const uint8_t *const *wp, const float *const *xp, int k,
		__mmask16 m, int full, __m512 acc[ZR][ZT])
{
	__m512 wv[ZR];
	UNROLL
	for (int i = 0; i < ZR; i++)
		wv[i] = zf_load(wt, wp[i], k, m, full);
	UNROLL
	for (int j = 0; j < T; j++) {
		__m512 xv = full ? _mm512_loadu_ps(xp[j] + k) : _mm512_maskz_loadu_ps(m, xp[j] + k);
		UNROLL
		for (int i = 0; i < ZR; i++)
			acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
	}
}

AI void zf_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt)
{
	const uint8_t *wp[ZR];
	const float *xp[ZT];
	__m512 acc[ZR][ZT];

	UNROLL
	for (int i = 0; i < ZR; i++)
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
	UNROLL
	for (int j = 0; j < T; j++) {
		xp[j] = a->x + (size_t)(t0 + (j < nt ? j : nt - 1)) * a->n_in;
		UNROLL
		for (int i = 0; i < ZR; i++)
			acc[i][j] = _mm512_setzero_ps();
	}
	int k = 0;
	for (; k + 16 <= a->n_in; k += 16)
		zf_step(wt, T, wp, xp, k, 0xFFFF, 1, acc);
	if (k < a->n_in)
		zf_step(wt, T, wp, xp, k, (__mmask16)((1u << (a->n_in - k)) - 1), 0, acc);
	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		z_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 z_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, 0);
}

Z_ROWS(zf, ZR, F32)
Z_ROWS(zf, ZR, F16)
Z_ROWS(zf, ZR, BF16)

const struct mm_isa mm_isa_avx512 = {
	.quant = z_quant,
	.rows = {
		[QTYPE_F32] = zf_rows_F32,
		[QTYPE_F16] = zf_rows_F16,
		[QTYPE_BF16] = zf_rows_BF16,
		[QTYPE_Q8_0] = zq_rows_any,
		[QTYPE_Q4_0] = zq_rows_any,
		[QTYPE_Q4_K] = zk_rows_any,
		[QTYPE_Q5_K] = zk_rows_any,
		[QTYPE_Q6_K] = zk_rows_any,
	},
	.quant_k = zk_quant,
	.tile_min_tok = ZP_MIN_TOK,
	.tile_min_tok_k = ZKP_MIN_TOK,
};

/* One-token products of Q8_0 / Q4_0 weights only (see zy_tile). */
const struct mm_isa mm_isa_vnni256 = {
	.quant = z_quant,
	.rows = {
		[QTYPE_Q8_0] = zy_rows_Q8_0,
		[QTYPE_Q4_0] = zy_rows_Q4_0,
	},
};

#else
const struct mm_isa mm_isa_avx512 = { 0 };
const struct mm_isa mm_isa_vnni256 = { 0 };
#endif
