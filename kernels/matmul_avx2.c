/* matmul_avx2.c — AVX2 + FMA + F16C matrix multiplication.
 *
 * Q8_0 / Q4_0 weights, activations quantized to int8 blocks:
 * - from YP_MIN_TOK tokens (prefill): rows in lanes over 8-row panels, as in
 *   matmul_avx512.c, with maddubs for the products (yp_*).
 * - fewer tokens: register tiles of YR rows x T <= YT tokens, one block per
 *   step (yq_*). Q8_0 uses the sign trick, maddubs(|w|, sign(x, w)) then madd
 *   with ones (no saturation: |w| <= 128, |x| <= 127); Q4_0 nibbles are
 *   unsigned already, maddubs(q, x), and the offset of 8 is taken out once per
 *   output (see matmul_impl.h).
 * K-quants: register tiles over the weights in place (yk_*, see there).
 * F32 / F16 (vcvtph2ps) / BF16 (shift into f32): register tiles, 8 floats per
 * step, FMA (yf_*).
 * Edge tiles repeat the last valid row (not stored); short token tiles have
 * their own instances.
 */
#include "matmul_impl.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <string.h>

#include "util.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
#define YR 4 /* rows per register tile */
#define YT 2 /* tokens per register tile */
#define YTAB (MM_KCHUNK + 16) /* row stride of the weight-scale table */

/* ---- helpers ---- */

AI int y_hsum8i(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(s);
}

AI float y_hmax8(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* [sum a, sum b, sum c, sum d]. */
AI __m128 y_hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
	__m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Store (or add into) nr <= 4 consecutive outputs. */
AI void y_store4(float *y, __m128 v, int nr, int accum)
{
	if (nr == 4) {
		if (accum)
			v = _mm_add_ps(v, _mm_loadu_ps(y));
		_mm_storeu_ps(y, v);
		return;
	}
	float tmp[4];
	_mm_storeu_ps(tmp, v);
	UNROLL
	for (int i = 0; i < nr; i++)
		y[i] = accum ? y[i] + tmp[i] : tmp[i];
}

/* ---- activation quantization ---- */

/* One block of 32 activations: quants to q (32 bytes), returns sum(q), sets *d. */
/* Whether v holds NaN or infinity: v - v is then NaN, else 0. */
AI int y_nonfinite(__m256 v)
{
	return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

AI int y_quant_block(const float *x, int8_t *q, float *d)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256 v[4];
	int bad = 0;
	for (int k = 0; k < 4; k++) {
		v[k] = _mm256_loadu_ps(x + 8 * k);
		bad |= y_nonfinite(v[k]);
	}
	if (bad) { /* zeros and a NaN scale, as in matmul.c */
		_mm256_storeu_si256((__m256i *)q, _mm256_setzero_si256());
		*d = __builtin_nanf("");
		return 0;
	}
	__m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
				 _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
	float amax = y_hmax8(m);
	float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
	__m256 vid = _mm256_set1_ps(id);
	__m256i qi[4];
	for (int k = 0; k < 4; k++)
		qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
	__m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
	/* the packs leave 4-byte groups as q0[0:4] q1[0:4] q2[0:4] q3[0:4] q0[4:8] ...; permute back */
	__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
	p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)q, p);
	*d = db;
	return y_hsum8i(s);
}

/* Token t into its row of the scratch (see matmul_impl.h). */
static void y_quant_row(const struct mm_args *a, int t)
{
	const float *x = a->x + (size_t)t * a->n_in;
	int8_t *qs = mm_xq_qs(a, t);
	float *d = mm_xq_d(a, t), *c = mm_xq_c(a, t);
	int32_t *ks = mm_xq_ks(a, t);
	int nb2 = mm_round_up(a->nb, 2), nbp = mm_round_up(a->nb, 16), k = mm_offset(a->wtype);

	for (int b = 0; b < a->nb; b++) {
		int sum = y_quant_block(x + b * 32, qs + b * 32, &d[b]);
		c[b] = d[b] * (float)sum;
		ks[b] = -k * sum;
	}
	for (int b = a->nb; b < nb2; b++)
		_mm256_store_si256((__m256i *)(qs + b * 32), _mm256_setzero_si256());
	for (int b = a->nb; b < nbp; b++)
		d[b] = c[b] = 0, ks[b] = 0;
}

/* Token t into its slots of the token-tiled layout; padding tokens get zeros. */
static void y_quant_tiled(const struct mm_args *a, int t)
{
	uint8_t *rec = mm_xt_tile(a, t);
	int j = t % MM_XT, k = mm_offset(a->wtype);

	for (int b = 0; b < a->nb; b++, rec += MM_XT_BLOCK) {
		int8_t *q = (int8_t *)rec + 32 * j;
		float *d = (float *)(rec + 32 * MM_XT) + j;
		int32_t *ks = (int32_t *)(rec + 36 * MM_XT) + j;
		if (t < a->n_tok) {
			*ks = -k * y_quant_block(a->x + (size_t)t * a->n_in + b * 32, q, d);
		} else {
			memset(q, 0, 32);
			*d = 0, *ks = 0;
		}
	}
}

static void y_quant(const struct mm_args *a, int t)
{
	if (a->xtiled)
		y_quant_tiled(a, t);
	else
		y_quant_row(a, t);
}

/* ---- quantized weights ---- */

#define YQ_PF_BYTES 256 /* decode: prefetch each row this many bytes ahead */

/* Block s of one row as used by the dot: Q8_0 signed quants; Q4_0 nibbles [lo | hi]. */
AI __m256i yq_load(int wt, const uint8_t *row, int s)
{
	if (wt == QTYPE_Q8_0)
		return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)row + s)->qs);
	__m128i q = _mm_loadu_si128((const __m128i *)((const block_q4_0 *)row + s)->qs);
	__m256i z = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
	return _mm256_and_si256(z, _mm256_set1_epi8(0x0f));
}

/* Block s of YR rows against T tokens. */
AI void yq_step(int wt, int T, const uint8_t *const *wp, const float *const *dt,
		const int8_t *const *xp, const float *const *xd, int s, __m256 acc[YR][YT])
{
	const __m256i ones = _mm256_set1_epi16(1);
	UNROLL
	for (int i = 0; i < YR; i++) {
		__m256i w = yq_load(wt, wp[i], s);
		__m256i wu = wt == QTYPE_Q8_0 ? _mm256_sign_epi8(w, w) : w;
		__m256 dw = _mm256_broadcast_ss(dt[i] + s);
		UNROLL
		for (int j = 0; j < T; j++) {
			__m256i xv = _mm256_load_si256((const __m256i *)(xp[j] + s * 32));
			if (wt == QTYPE_Q8_0)
				xv = _mm256_sign_epi8(xv, w);
			__m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xv), ones);
			__m256 sc = _mm256_mul_ps(dw, _mm256_broadcast_ss(xd[j] + s));
			acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[i][j]);
		}
	}
}

AI void yq_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt,
		int kb0, int nbk, const float *tab, int accum)
{
	const size_t bsz = wt == QTYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	const uint8_t *wp[YR];
	const float *dt[YR];
	const int8_t *xp[YT];
	const float *xd[YT], *xc[YT];
	__m256 acc[YR][YT];

	UNROLL
	for (int i = 0; i < YR; i++) {
		int ri = i < nr ? i : nr - 1;
		wp[i] = a->w + (size_t)(r + ri) * a->w_stride + (size_t)kb0 * bsz;
		dt[i] = tab + ri * YTAB;
	}
	UNROLL
	for (int j = 0; j < T; j++) {
		int tj = t0 + (j < nt ? j : nt - 1);
		xp[j] = mm_xq_qs(a, tj) + kb0 * 32;
		xd[j] = mm_xq_d(a, tj) + kb0;
		xc[j] = mm_xq_c(a, tj) + kb0;
		UNROLL
		for (int i = 0; i < YR; i++)
			acc[i][j] = _mm256_setzero_ps();
	}
	for (int s = 0; s < nbk; s++) {
		if (T == 1) /* decode streams the weights from memory (the row block's
			     * scale table has touched every row already: the next
			     * tile's prefetch, as in matmul_avx512.c, made it slower) */
			UNROLL
			for (int i = 0; i < YR; i++)
				_mm_prefetch((const char *)wp[i] + (size_t)s * bsz + YQ_PF_BYTES, _MM_HINT_T0);
		yq_step(wt, T, wp, dt, xp, xd, s, acc);
	}
	if (wt == QTYPE_Q4_0) { /* the offset: 8 * sum_b dw_b * c_b */
		for (int b = 0; b < nbk; b += 8) {
			UNROLL
			for (int i = 0; i < YR; i++) {
				__m256 dwk = _mm256_mul_ps(_mm256_load_ps(dt[i] + b), _mm256_set1_ps(8.0f));
				UNROLL
				for (int j = 0; j < T; j++)
					acc[i][j] = _mm256_fnmadd_ps(dwk, _mm256_load_ps(xc[j] + b), acc[i][j]);
			}
		}
	}
	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		y_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 y_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, accum);
}

/* The f32 scales of rows [r0, r1) for blocks [kb0, kb0 + nbk), zero padded to 16. */
static void yq_fill_tab(const struct mm_args *a, int r0, int r1, int kb0, int nbk,
			float tab[][YTAB])
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

#define YQ_TILES(wt)                                                                     \
	static void yq_tile_##wt(const struct mm_args *a, int r, int nr, int t0, int nt,  \
				 int kb0, int nbk, const float *tab, int accum)           \
	{                                                                                \
		if (nt == 1)                                                             \
			yq_tile(QTYPE_##wt, 1, a, r, nr, t0, nt, kb0, nbk, tab, accum);  \
		else                                                                     \
			yq_tile(QTYPE_##wt, YT, a, r, nr, t0, nt, kb0, nbk, tab, accum); \
	}
YQ_TILES(Q8_0)
YQ_TILES(Q4_0)

static void yq_rows(const struct mm_args *a, int r0, int r1)
{
	float tab[MM_ROW_BLOCK][YTAB] __attribute__((aligned(32)));
	void (*tile)(const struct mm_args *, int, int, int, int, int, int, const float *, int) =
		a->wtype == QTYPE_Q8_0 ? yq_tile_Q8_0 : yq_tile_Q4_0;

	ASSERT(r1 - r0 <= MM_ROW_BLOCK);
	for (int kb0 = 0; kb0 < a->nb; kb0 += MM_KCHUNK) {
		int nbk = a->nb - kb0 < MM_KCHUNK ? a->nb - kb0 : MM_KCHUNK;
		yq_fill_tab(a, r0, r1, kb0, nbk, tab);
		for (int t0 = 0; t0 < a->n_tok; t0 += YT) {
			int nt = a->n_tok - t0 < YT ? a->n_tok - t0 : YT;
			for (int r = r0; r < r1; r += YR)
				tile(a, r, r1 - r < YR ? r1 - r : YR, t0, nt, kb0, nbk,
				     tab[r - r0], kb0 > 0);
		}
	}
}

/* ---- quantized weights, prefill: rows in lanes ----
 * As in matmul_avx512.c, with 8 rows per vector and maddubs for the products:
 * a panel holds, per block and group g of 4 quants, those 4 bytes of 8 rows
 * (one row per 32-bit lane); the token's 4 activation bytes are broadcast.
 * Q4_0: the nibbles (u8 <= 15) times int8 activations, summed over the
 * block's 8 groups in int16 (8 * 2 * 15 * 127 < 2^15), one madd to int32,
 * plus ks for the offset of 8. Q8_0: the sign trick per group
 * (maddubs(|w|, sign(x, w)), then madd: int16 sums of two groups could wrap). */

#define YP_KB 64     /* blocks per panel */
#define YP_T 4       /* tokens per register tile */
#define YP_MIN_TOK 12 /* fewer tokens than this: register tiles without a panel */
_Static_assert(MM_XT == 8 && MM_ROW_BLOCK == 16, "panel tiles: 8 tokens x 16 rows");

struct yp_panel {
	__m256i q[2][YP_KB][8]; /* [rows 0-7 | 8-15][block][group] */
	__m256 d[2][YP_KB];     /* [half][block]: the 8 rows' scales */
};

/* Transpose 8 rows of 8 dwords: out[g] = dword g of rows 0..7. */
AI void yp_transpose(const __m256i r[8], __m256i out[8])
{
	__m256i t[8], u[8];
	for (int k = 0; k < 4; k++) {
		t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
		t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
	}
	for (int k = 0; k < 2; k++) {
		u[4 * k + 0] = _mm256_unpacklo_epi64(t[4 * k + 0], t[4 * k + 2]); /* dwords 0, 4 */
		u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k + 0], t[4 * k + 2]); /* 1, 5 */
		u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]); /* 2, 6 */
		u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]); /* 3, 7 */
	}
	for (int g = 0; g < 4; g++) {
		out[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
		out[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
	}
}

/* Repack blocks [kb0, kb0 + nbk) of rows [r0, r0 + nr) (missing rows repeat the last). */
AI void yp_pack(int wt, const struct mm_args *a, int r0, int nr, int kb0, int nbk, struct yp_panel *p)
{
	const uint8_t *rp[16];
	for (int i = 0; i < 16; i++)
		rp[i] = a->w + (size_t)(r0 + (i < nr ? i : nr - 1)) * a->w_stride;
	for (int h = 0; h < 2; h++) {
		for (int b = 0; b < nbk; b++) {
			__m256i r[8];
			uint16_t dh[8];
			UNROLL
			for (int i = 0; i < 8; i++) {
				r[i] = yq_load(wt, rp[8 * h + i], kb0 + b);
				dh[i] = wt == QTYPE_Q8_0 ? ((const block_q8_0 *)rp[8 * h + i])[kb0 + b].d
							 : ((const block_q4_0 *)rp[8 * h + i])[kb0 + b].d;
			}
			yp_transpose(r, p->q[h][b]);
			p->d[h][b] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
		}
	}
}

/* Load 4 bytes as an int32 (any alignment). */
AI int32_t y_ld32(const uint8_t *ptr)
{
	int32_t v;
	memcpy(&v, ptr, 4);
	return v;
}

/* 8 rows (panel half h) x tokens j0 .. j0 + YP_T - 1 of the tile at t0. */
AI void yp_tile(int wt, const struct mm_args *a, const struct yp_panel *p, int h, int r0, int nr,
		int t0, int j0, int kb0, int nbk, int accum)
{
	const uint8_t *rec = mm_xt_tile(a, t0) + (size_t)kb0 * MM_XT_BLOCK;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc[YP_T];

	UNROLL
	for (int j = 0; j < YP_T; j++)
		acc[j] = _mm256_setzero_ps();
	for (int b = 0; b < nbk; b++, rec += MM_XT_BLOCK) {
		__m256i s[YP_T];
		UNROLL
		for (int j = 0; j < YP_T; j++)
			s[j] = _mm256_setzero_si256();
		UNROLL
		for (int g = 0; g < 8; g++) {
			__m256i w = _mm256_load_si256(&p->q[h][b][g]);
			__m256i aw = wt == QTYPE_Q8_0 ? _mm256_sign_epi8(w, w) : w;
			UNROLL
			for (int j = 0; j < YP_T; j++) {
				__m256i xb = _mm256_set1_epi32(y_ld32(rec + 32 * (j0 + j) + 4 * g));
				if (wt == QTYPE_Q8_0)
					s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(
						_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xb, w)), ones));
				else
					s[j] = _mm256_add_epi16(s[j], _mm256_maddubs_epi16(w, xb));
			}
		}
		__m256 dw = _mm256_load_ps((const float *)&p->d[h][b]);
		UNROLL
		for (int j = 0; j < YP_T; j++) {
			if (wt == QTYPE_Q4_0)
				s[j] = _mm256_add_epi32(_mm256_madd_epi16(s[j], ones),
							_mm256_set1_epi32(y_ld32(rec + 36 * MM_XT + 4 * (j0 + j))));
			float dx;
			memcpy(&dx, rec + 32 * MM_XT + 4 * (j0 + j), 4);
			acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[j]);
		}
	}
	int rows = nr - 8 * h < 8 ? nr - 8 * h : 8, nt = a->n_tok - t0 - j0;
	__m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
	for (int j = 0; j < YP_T && j < nt; j++) {
		float *y = a->y + (size_t)(t0 + j0 + j) * a->n_out + r0 + 8 * h;
		__m256 v = accum ? _mm256_add_ps(acc[j], _mm256_maskload_ps(y, m)) : acc[j];
		_mm256_maskstore_ps(y, m, v);
	}
}

#define YP_ROWS(wt)                                                                       \
	static void yp_rows_##wt(const struct mm_args *a, int r0, int r1)                \
	{                                                                                 \
		struct yp_panel p;                                                        \
		int nr = r1 - r0;                                                         \
		for (int kb0 = 0; kb0 < a->nb; kb0 += YP_KB) {                            \
			int nbk = a->nb - kb0 < YP_KB ? a->nb - kb0 : YP_KB;              \
			yp_pack(QTYPE_##wt, a, r0, nr, kb0, nbk, &p);                     \
			for (int t0 = 0; t0 < a->n_tok; t0 += MM_XT)                      \
				for (int j0 = 0; j0 < MM_XT && t0 + j0 < a->n_tok; j0 += YP_T) \
					for (int h = 0; h < 2 && 8 * h < nr; h++)         \
						yp_tile(QTYPE_##wt, a, &p, h, r0, nr, t0, j0, \
							kb0, nbk, kb0 > 0);               \
		}                                                                         \
	}
YP_ROWS(Q8_0)
YP_ROWS(Q4_0)

static void yq_rows_any(const struct mm_args *a, int r0, int r1)
{
	ASSERT(r1 - r0 <= 16);
	if (!a->xtiled)
		yq_rows(a, r0, r1);
	else if (a->wtype == QTYPE_Q8_0)
		yp_rows_Q8_0(a, r0, r1);
	else
		yp_rows_Q4_0(a, r0, r1);
}

/* ---- K-quant weights (Q4_K, Q5_K, Q6_K) ----
 * Activations in records of 256 (matmul_impl.h). Register tiles of YR rows
 * x T <= YT tokens over the weights in place: per super-block and row, each
 * vector of 32 quants (element order) is unpacked once for the tile's tokens;
 * per token maddubs (quant pairs to int16; q <= 63, no saturation), madd
 * with the sub-block scales as int16 lanes into int32, then per super-block
 * one convert and FMA with dw * dx and one or two FMAs for the mins (yk_*). */

#define YK_PF 2 /* decode: prefetch each row this many super-blocks ahead */

/* Quants 32 v .. 32 v + 31 of super-block blk (unsigned bytes). */
AI __m256i yk_quants(int wt, const uint8_t *blk, int v)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
	if (wt == QTYPE_Q6_K) {
		/* half h = v / 4, i = v % 4: low 4 bits from ql[64 h + 32 (i & 1) ..], low nibble
		 * for i < 2; bits 2i, 2i + 1 of qh[32 h ..] */
		const block_q6_K *k = (const block_q6_K *)blk;
		int h = v / 4, i = v % 4;
		__m256i l = _mm256_loadu_si256((const __m256i *)(k->ql + 64 * h + 32 * (i & 1)));
		__m256i hh = _mm256_loadu_si256((const __m256i *)(k->qh + 32 * h));
		if (i >= 2)
			l = _mm256_srli_epi16(l, 4);
		hh = i == 0 ? _mm256_slli_epi16(hh, 4) : i == 1 ? _mm256_slli_epi16(hh, 2) : i == 2 ? hh : _mm256_srli_epi16(hh, 2);
		return _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(hh, m2));
	}
	const uint8_t *qs = blk + (wt == QTYPE_Q4_K ? 16 : 48);
	__m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (v / 2)));
	if (v & 1)
		q = _mm256_srli_epi16(q, 4);
	q = _mm256_and_si256(q, m4);
	if (wt == QTYPE_Q5_K) { /* bit v of qh[l] to bit 4 */
		__m256i hh = _mm256_loadu_si256((const __m256i *)(blk + 16));
		hh = v <= 4 ? _mm256_slli_epi16(hh, 4 - v) : _mm256_srli_epi16(hh, v - 4);
		q = _mm256_or_si256(q, _mm256_and_si256(hh, _mm256_set1_epi8(0x10)));
	}
	return q;
}

/* YR rows from r (nr valid; missing rows repeat the last, not stored) x T
 * tokens from t0 (nt valid) over every super-block. */
AI void yk_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt)
{
	const size_t bsz = mm_kq_bytes(wt);
	const int ng = wt == QTYPE_Q6_K ? 16 : 8;
	const uint8_t *wp[YR], *xr[YT];
	__m256 acc[YR][YT];

	UNROLL
	for (int i = 0; i < YR; i++)
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
	UNROLL
	for (int j = 0; j < T; j++) {
		xr[j] = mm_kx_rec(a, t0 + (j < nt ? j : nt - 1), 0);
		UNROLL
		for (int i = 0; i < YR; i++)
			acc[i][j] = _mm256_setzero_ps();
	}
	for (int b = 0; b < a->nb; b++) {
		UNROLL
		for (int i = 0; i < YR; i++) {
			const uint8_t *blk = wp[i] + (size_t)b * bsz;
			if (b + YK_PF < a->nb) /* DRAM-bound decode: see matmul_avx512.c */
				for (size_t l = 0; l < bsz; l += 64)
					_mm_prefetch((const char *)blk + YK_PF * bsz + l, _MM_HINT_T0);
			/* the sub-block scales and mins as int16 / float, d */
			int16_t sc[16] __attribute__((aligned(32)));
			float mn[16] __attribute__((aligned(32)));
			float dw;
			uint16_t h[2];
			if (wt == QTYPE_Q6_K) {
				const block_q6_K *k = (const block_q6_K *)blk;
				__m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)k->scales));
				_mm256_store_si256((__m256i *)sc, s16);
				memcpy(h, &k->d, 2);
				dw = _cvtsh_ss(h[0]);
				__m256 f32 = _mm256_set1_ps(32 * dw);
				_mm256_store_ps(mn, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16))), f32));
				_mm256_store_ps(mn + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1))), f32));
			} else {
				uint64_t s8, m8;
				mm_kq_scales8(((const block_q4_K *)blk)->scales, &s8, &m8);
				_mm_store_si128((__m128i *)sc, _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)s8)));
				memcpy(h, blk, 4);
				dw = _cvtsh_ss(h[0]);
				_mm256_store_ps(mn, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m8))),
								  _mm256_set1_ps(_cvtsh_ss(h[1]))));
			}
			__m256i is[YT];
			UNROLL
			for (int j = 0; j < T; j++)
				is[j] = _mm256_setzero_si256();
			UNROLL
			for (int v = 0; v < 8; v++) {
				__m256i q = yk_quants(wt, blk, v);
				/* int16 pair lanes 0-7 | 8-15: sub-blocks 2v | 2v + 1 (Q6_K), v (else) */
				__m256i sv = ng == 16 ? _mm256_set_m128i(_mm_set1_epi16(sc[2 * v + 1]), _mm_set1_epi16(sc[2 * v]))
						      : _mm256_set1_epi16(sc[v]);
				UNROLL
				for (int j = 0; j < T; j++) {
					__m256i x = _mm256_load_si256((const __m256i *)(xr[j] + (size_t)b * MM_KX_REC + 32 * v));
					is[j] = _mm256_add_epi32(is[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), sv));
				}
			}
			UNROLL
			for (int j = 0; j < T; j++) {
				const uint8_t *rec = xr[j] + (size_t)b * MM_KX_REC;
				float dx;
				memcpy(&dx, rec + MM_KX_D, sizeof dx);
				const float *fx = (const float *)(rec + MM_KX_FX);
				__m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[j]), _mm256_set1_ps(dw * dx), acc[i][j]);
				v = _mm256_fnmadd_ps(_mm256_load_ps(mn), _mm256_load_ps(fx), v);
				if (ng == 16)
					v = _mm256_fnmadd_ps(_mm256_load_ps(mn + 8), _mm256_load_ps(fx + 8), v);
				acc[i][j] = v;
			}
		}
	}
	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		y_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 y_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, 0);
}

/* The token-by-row tile walk of a weight type over rows [r0, r1): p##_tile
 * (yk: K-quants, yf: float weights) for each YT tokens and YR rows, a
 * single-token tile where one token is left. */
#define Y_ROWS(p, wt)                                                               \
	static void p##_rows_##wt(const struct mm_args *a, int r0, int r1)         \
	{                                                                           \
		for (int t0 = 0; t0 < a->n_tok; t0 += YT) {                         \
			int nt = a->n_tok - t0 < YT ? a->n_tok - t0 : YT;           \
			for (int r = r0; r < r1; r += YR) {                         \
				int nr = r1 - r < YR ? r1 - r : YR;                 \
				if (nt == 1)                                        \
					p##_tile(QTYPE_##wt, 1, a, r, nr, t0, nt);  \
				else                                                \
					p##_tile(QTYPE_##wt, YT, a, r, nr, t0, nt); \
			}                                                           \
		}                                                                   \
	}
Y_ROWS(yk, Q4_K)
Y_ROWS(yk, Q5_K)
Y_ROWS(yk, Q6_K)

/* Token t (>= n_tok: zeros) into its K-quant records. */
static void yk_quant(const struct mm_args *a, int t)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const int G = mm_k_group(a->wtype);
	for (int b = 0; b < a->nb; b++) {
		uint8_t *rec = mm_kx_rec(a, t, b);
		if (t >= a->n_tok) {
			for (int k = 0; k < MM_KX_REC / 32; k++)
				_mm256_store_si256((__m256i *)(rec + 32 * k), _mm256_setzero_si256());
			continue;
		}
		const float *x = a->x + (size_t)t * a->n_in + (size_t)b * QK_K;
		__m256 mx = _mm256_setzero_ps();
		int bad = 0;
		for (int k = 0; k < 32; k++) {
			__m256 v = _mm256_loadu_ps(x + 8 * k);
			mx = _mm256_max_ps(mx, _mm256_and_ps(v, absmask));
			bad |= y_nonfinite(v);
		}
		if (bad) { /* zeros and NaN scales, as in matmul.c */
			float nan = __builtin_nanf(""), fxn[16];
			for (int k = 0; k < 16; k++)
				fxn[k] = nan;
			for (int k = 0; k < MM_KX_FX / 32; k++)
				_mm256_store_si256((__m256i *)(rec + 32 * k), _mm256_setzero_si256());
			memcpy(rec + MM_KX_FX, fxn, sizeof fxn);
			memcpy(rec + MM_KX_D, &nan, sizeof nan);
			continue;
		}
		float amax = y_hmax8(mx);
		float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
		__m256 vid = _mm256_set1_ps(id);
		float fx[16] __attribute__((aligned(32))) = { 0 };
		for (int c = 0; c < 8; c++) { /* 32 elements */
			__m256i qi[4];
			for (int k = 0; k < 4; k++)
				qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * c + 8 * k), vid));
			__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_store_si256((__m256i *)(rec + 32 * c), p);
			int s0 = y_hsum8i(_mm256_add_epi32(qi[0], qi[1])), s1 = y_hsum8i(_mm256_add_epi32(qi[2], qi[3]));
			if (G == 16)
				fx[2 * c] = db * (float)s0, fx[2 * c + 1] = db * (float)s1;
			else
				fx[c] = db * (float)(s0 + s1);
		}
		memcpy(rec + MM_KX_FX, fx, sizeof fx);
		memcpy(rec + MM_KX_D, &db, sizeof db);
	}
}

/* ---- float weights ---- */

/* 8 weights from element k of a row as f32; n < 8 reads a zero-padded tail. */
AI __m256 yf_load(int wt, const uint8_t *row, int k, int n)
{
	if (wt == QTYPE_F32) {
		const float *p = (const float *)row + k;
		if (n == 8)
			return _mm256_loadu_ps(p);
		float tmp[8] = { 0 };
		memcpy(tmp, p, (size_t)n * sizeof(float));
		return _mm256_loadu_ps(tmp);
	}
	const uint16_t *p = (const uint16_t *)row + k;
	__m128i h;
	if (n == 8) {
		h = _mm_loadu_si128((const __m128i *)p);
	} else {
		uint16_t tmp[8] = { 0 };
		memcpy(tmp, p, (size_t)n * sizeof(uint16_t));
		h = _mm_loadu_si128((const __m128i *)tmp);
	}
	if (wt == QTYPE_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI void yf_step(int wt, int T, const uint8_t *const *wp, const float *const *xp, int k, int n,
		__m256 acc[YR][YT])
{
	__m256 xv[YT];
	UNROLL
	for (int j = 0; j < T; j++)
		xv[j] = yf_load(QTYPE_F32, (const uint8_t *)xp[j], k, n);
	UNROLL
	for (int i = 0; i < YR; i++) {
		__m256 wv = yf_load(wt, wp[i], k, n);
		UNROLL
		for (int j = 0; j < T; j++)
			acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
	}
}

AI void yf_tile(int wt, int T, const struct mm_args *a, int r, int nr, int t0, int nt)
{
	const uint8_t *wp[YR];
	const float *xp[YT];
	__m256 acc[YR][YT];

	UNROLL
	for (int i = 0; i < YR; i++)
		wp[i] = a->w + (size_t)(r + (i < nr ? i : nr - 1)) * a->w_stride;
	UNROLL
	for (int j = 0; j < T; j++) {
		xp[j] = a->x + (size_t)(t0 + (j < nt ? j : nt - 1)) * a->n_in;
		UNROLL
		for (int i = 0; i < YR; i++)
			acc[i][j] = _mm256_setzero_ps();
	}
	int k = 0;
	for (; k + 8 <= a->n_in; k += 8)
		yf_step(wt, T, wp, xp, k, 8, acc);
	if (k < a->n_in)
		yf_step(wt, T, wp, xp, k, a->n_in - k, acc);
	UNROLL
	for (int j = 0; j < nt && j < T; j++)
		y_store4(a->y + (size_t)(t0 + j) * a->n_out + r,
			 y_hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), nr, 0);
}

Y_ROWS(yf, F32)
Y_ROWS(yf, F16)
Y_ROWS(yf, BF16)

const struct mm_isa mm_isa_avx2 = {
	.quant = y_quant,
	.rows = {
		[QTYPE_F32] = yf_rows_F32,
		[QTYPE_F16] = yf_rows_F16,
		[QTYPE_BF16] = yf_rows_BF16,
		[QTYPE_Q8_0] = yq_rows_any,
		[QTYPE_Q4_0] = yq_rows_any,
		[QTYPE_Q4_K] = yk_rows_Q4_K,
		[QTYPE_Q5_K] = yk_rows_Q5_K,
		[QTYPE_Q6_K] = yk_rows_Q6_K,
	},
	.quant_k = yk_quant,
	.tile_min_tok = YP_MIN_TOK,
};

#else
const struct mm_isa mm_isa_avx2 = { 0 };
#endif
