/* quant.c — element types: the traits table, fp16/bf16 conversions and the
 * scalar reference quantizers (bit-exact with ggml's reference layouts). */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- fp16 / bf16 ---- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
	if (e == 0x1f) /* Inf; NaN keeps its payload and is made quiet, as F16C does */
		return f32_from_bits(sign | 0x7f800000 | m << 13 | (m ? 0x400000 : 0));
	if (e == 0) { /* zero, subnormal: m * 2^-24, exact in f32 */
		float v = (float)m * 0x1p-24f;
		return sign ? -v : v;
	}
	return f32_from_bits(sign | (e + 112) << 23 | m << 13);
}

/* Round m right by s bits (1 <= s <= 31), to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, int s)
{
	uint32_t r = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
	return r + (rem > half || (rem == half && (r & 1)));
}

uint16_t fp32_to_fp16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
	uint32_t ax = x & 0x7fffffff;
	if (ax > 0x7f800000) /* NaN: keep it quiet, keep the top payload bits */
		return sign | 0x7e00 | (uint16_t)(ax >> 13 & 0x3ff);
	if (ax >= 0x477ff000) /* >= 65520 rounds past 65504: Inf */
		return sign | 0x7c00;
	if (ax >= 0x38800000) /* normal: rebias the exponent 127 -> 15 and round */
		return sign | (uint16_t)shift_rne(ax - 0x38000000, 13);
	if (ax <= 0x33000000) /* <= 2^-25 (a tie with 0): zero */
		return sign;
	/* subnormal: units of 2^-24; may round up into the smallest normal */
	uint32_t m = (ax & 0x7fffff) | 0x800000;
	return sign | (uint16_t)shift_rne(m, 126 - (int)(ax >> 23));
}

float bf16_to_fp32(uint16_t h)
{
	return f32_from_bits((uint32_t)h << 16);
}

uint16_t fp32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffff) > 0x7f800000) /* NaN: truncate, force quiet */
		return (uint16_t)(x >> 16 | 0x40);
	return (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
}

/* ---- row conversions (scalar references) ---- */

static void f32_to_float(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *src, void *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *h = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = fp16_to_fp32(h[i]);
}

static void f16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t *h = dst;
	for (int64_t i = 0; i < n; i++)
		h[i] = fp32_to_fp16(src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *h = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = bf16_to_fp32(h[i]);
}

static void bf16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t *h = dst;
	for (int64_t i = 0; i < n; i++)
		h[i] = fp32_to_bf16(src[i]);
}

/* x * id rounded to an int8 quant; NaN (from a NaN or Inf input) gives 0
 * instead of undefined behaviour. */
static int8_t q8_0_quant(float xid)
{
	if (!(xid >= -127.0f && xid <= 127.0f))
		return (int8_t)(xid != xid ? 0 : xid < 0 ? -127 : 127);
	return (int8_t)roundf(xid);
}

/* Q8_0: d = amax / 127, q = round(x / d) (computed as x * (1/d), ties away from 0). */
static void q8_0_from_float(const float *src, void *dst, int64_t n)
{
	block_q8_0 *b = dst;
	for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
		float amax = 0;
		for (int j = 0; j < QK8_0; j++)
			amax = fmaxf(amax, fabsf(src[j]));
		float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
		b[i].d = fp32_to_fp16(d);
		for (int j = 0; j < QK8_0; j++)
			b[i].qs[j] = q8_0_quant(src[j] * id);
	}
}

static void q8_0_to_float(const void *src, float *dst, int64_t n)
{
	const block_q8_0 *b = src;
	for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
		float d = fp16_to_fp32(b[i].d);
		for (int j = 0; j < QK8_0; j++)
			dst[j] = d * b[i].qs[j];
	}
}

/* One Q4_0 quant: x * id lies in [-8, 8]; shift to [0, 16], truncate, clamp to 15
 * (NaN from non-finite input gives 8, a zero). */
static uint8_t q4_0_quant(float xid)
{
	if (!(xid >= -8.5f && xid <= 8.5f))
		return xid != xid ? 8 : xid < 0 ? 0 : 15;
	int q = (int)(xid + 8.5f);
	return (uint8_t)(q < 15 ? q : 15);
}

/* Q4_0: the element of largest magnitude, with its sign, maps to -8:
 * d = max / -8; q = min(15, trunc(x / d + 8.5)). */
static void q4_0_from_float(const float *src, void *dst, int64_t n)
{
	block_q4_0 *b = dst;
	for (int64_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
		float amax = 0, max = 0;
		for (int j = 0; j < QK4_0; j++) {
			if (amax < fabsf(src[j])) {
				amax = fabsf(src[j]);
				max = src[j];
			}
		}
		float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
		b[i].d = fp32_to_fp16(d);
		for (int j = 0; j < QK4_0 / 2; j++)
			b[i].qs[j] = (uint8_t)(q4_0_quant(src[j] * id) |
					       q4_0_quant(src[j + QK4_0 / 2] * id) << 4);
	}
}

static void q4_0_to_float(const void *src, float *dst, int64_t n)
{
	const block_q4_0 *b = src;
	for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
		float d = fp16_to_fp32(b[i].d);
		for (int j = 0; j < QK4_0 / 2; j++) {
			dst[j] = d * ((b[i].qs[j] & 0x0f) - 8);
			dst[j + QK4_0 / 2] = d * ((b[i].qs[j] >> 4) - 8);
		}
	}
}

/* ---- K-quants (super-blocks of 256) ----
 * The quantizers follow ggml's reference ones (quantize_row_q{4,5,6}_K_ref):
 * per sub-block a search over a few candidate scales for the one of least
 * weighted squared error (a least-squares refit of scale and min for each
 * candidate rounding), then the sub-block scales themselves quantized to 6
 * (Q4_K, Q5_K) or 8 (Q6_K) bits against one fp16 super-block scale, and the
 * quants recomputed with the scales as stored. */

/* v to the nearest integer, ties to even, clamped to [lo, hi]; NaN gives lo
 * (non-finite input must not be undefined behaviour). */
static int kq_round(float v, int lo, int hi)
{
	if (!(v >= (float)lo))
		return lo;
	if (v >= (float)hi)
		return hi;
	return (int)nearbyintf(v);
}

/* Fit x[i] ~ scale * L[i] + min (L in [0, nmax], min <= 0) minimising
 * sum w[i] * err^2. Start from the grid from min(x, 0) to max(x) in nmax
 * steps; then for each trial inverse scale (nmax + rmin + rdelta * k) /
 * (max - min), k = 0 .. nstep, round against the current origin min, solve
 * the 2x2 least-squares system for scale and min, and keep the best (whose
 * min becomes the origin of the next trials, as in ggml). Returns scale;
 * *the_min gets -min. */
static float kq_fit_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
			float rmin, float rdelta, int nstep)
{
	float min = x[0], max = x[0], sum_w = 0, sum_x = 0;
	for (int i = 0; i < n; i++) {
		min = fminf(min, x[i]);
		max = fmaxf(max, x[i]);
		sum_w += w[i];
		sum_x += w[i] * x[i];
	}
	if (min > 0)
		min = 0;
	if (!(max > min)) { /* constant (or NaN) sub-block: all quants 0 */
		memset(L, 0, (size_t)n);
		*the_min = min == min ? -min : 0;
		return 0;
	}
	float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
	for (int i = 0; i < n; i++) {
		L[i] = (uint8_t)kq_round(iscale * (x[i] - min), 0, nmax);
		float e = scale * L[i] + min - x[i];
		best += w[i] * (e * e);
	}
	uint8_t Lt[32];
	for (int k = 0; k <= nstep; k++) {
		iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			int l = kq_round(iscale * (x[i] - min), 0, nmax);
			Lt[i] = (uint8_t)l;
			sum_l += w[i] * l;
			sum_l2 += w[i] * l * l;
			sum_xl += w[i] * l * x[i];
		}
		float det = sum_w * sum_l2 - sum_l * sum_l;
		if (!(det > 0))
			continue;
		float s = (sum_w * sum_xl - sum_x * sum_l) / det;
		float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
		if (m > 0) { /* the offset must not be positive: refit the scale alone */
			m = 0;
			s = sum_xl / sum_l2;
		}
		float err = 0;
		for (int i = 0; i < n; i++) {
			float e = s * Lt[i] + m - x[i];
			err += w[i] * (e * e);
		}
		if (err < best) {
			memcpy(L, Lt, (size_t)n);
			best = err;
			scale = s;
			min = m;
		}
	}
	*the_min = -min;
	return scale;
}

/* Fit x[i] ~ scale * (L[i] - nmax), L in [0, 2 nmax - 1], weights x^2: the
 * element of largest magnitude maps to -nmax; trial inverse scales around
 * -nmax / max, the least-squares scale of each rounding, keep the best.
 * Returns scale (signed; 0 for an all-zero sub-block). */
static float kq_fit_sym(int n, int nmax, const float *x, uint8_t *L)
{
	float amax = 0, max = 0;
	for (int i = 0; i < n; i++) {
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			max = x[i];
		}
	}
	if (!(amax >= 1e-15f)) {
		memset(L, 0, (size_t)n);
		return 0;
	}
	float scale = 0, best = 0;
	for (int k = 0; k <= 18; k++) {
		/* k = 0 is the plain grid; then -0.9 .. 0.9 around it */
		float iscale = k == 0 ? -(float)nmax / max : -((float)nmax + 0.1f * (float)(k <= 9 ? k - 10 : k - 9)) / max;
		float sum_lx = 0, sum_l2 = 0;
		for (int i = 0; i < n; i++) {
			int l = kq_round(iscale * x[i], -nmax, nmax - 1);
			float w = x[i] * x[i];
			sum_lx += w * x[i] * l;
			sum_l2 += w * l * l;
		}
		/* sum_lx^2 / sum_l2 is the error reduction of the least-squares scale */
		if (k == 0 ? 1 : sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
			for (int i = 0; i < n; i++)
				L[i] = (uint8_t)(kq_round(iscale * x[i], -nmax, nmax - 1) + nmax);
			scale = sum_l2 > 0 ? sum_lx / sum_l2 : 0;
			best = scale * sum_lx;
		}
	}
	return scale;
}

/* The 8 sub-block scales and mins of a Q4_K / Q5_K block quantized to 6 bits
 * against fp16 d = max scale / 63, dmin = max min / 63, packed (quant.h). */
static void kq_pack_scales(const float sc[8], const float mn[8], uint16_t *d, uint16_t *dmin,
			   uint8_t scales[K_SCALE_SIZE])
{
	float max_sc = 0, max_mn = 0;
	for (int j = 0; j < 8; j++) {
		max_sc = fmaxf(max_sc, sc[j]);
		max_mn = fmaxf(max_mn, mn[j]);
	}
	float isc = max_sc > 0 ? 63 / max_sc : 0, imn = max_mn > 0 ? 63 / max_mn : 0;
	memset(scales, 0, K_SCALE_SIZE);
	for (int j = 0; j < 8; j++) {
		int ls = kq_round(isc * sc[j], 0, 63), lm = kq_round(imn * mn[j], 0, 63);
		if (j < 4) {
			scales[j] |= (uint8_t)ls;
			scales[j + 4] |= (uint8_t)lm;
		} else {
			scales[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
			scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
			scales[j] |= (uint8_t)((lm >> 4) << 6);
		}
	}
	*d = fp32_to_fp16(max_sc / 63);
	*dmin = fp32_to_fp16(max_mn / 63);
}

/* Q4_K / Q5_K quants (nmax 15 or 31) of one super-block into L[256] and the
 * block header; rmin, nstep: the scale search (ggml: -1, 20 and -0.5, 15). */
static void kq_quant_min_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d, uint16_t *dmin,
			       uint8_t scales[K_SCALE_SIZE], uint8_t L[QK_K])
{
	float sc[8], mn[8], w[32];
	for (int j = 0; j < 8; j++) {
		const float *xj = x + 32 * j;
		/* weights: each element's magnitude plus the sub-block's rms */
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += xj[l] * xj[l];
		float av = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			w[l] = av + fabsf(xj[l]);
		sc[j] = kq_fit_min(32, nmax, xj, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep);
	}
	kq_pack_scales(sc, mn, d, dmin, scales);
	/* requantize against the scales as stored */
	float df = fp16_to_fp32(*d), dminf = fp16_to_fp32(*dmin);
	for (int j = 0; j < 8; j++) {
		int ls, lm;
		kq_scale_min(scales, j, &ls, &lm);
		float dj = df * (float)ls, mj = dminf * (float)lm;
		if (dj == 0)
			continue;
		for (int l = 0; l < 32; l++)
			L[32 * j + l] = (uint8_t)kq_round((x[32 * j + l] + mj) / dj, 0, nmax);
	}
}

static void q4_K_from_float(const float *src, void *dst, int64_t n)
{
	block_q4_K *b = dst;
	uint8_t L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
		kq_quant_min_block(src, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
		for (int k = 0; k < 4; k++)
			for (int l = 0; l < 32; l++)
				b[i].qs[32 * k + l] = (uint8_t)(L[64 * k + l] | L[64 * k + 32 + l] << 4);
	}
}

static void q4_K_to_float(const void *src, float *dst, int64_t n)
{
	const block_q4_K *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
		for (int j = 0; j < 8; j++) {
			int sc, m;
			kq_scale_min(b[i].scales, j, &sc, &m);
			float dj = d * (float)sc, mj = dmin * (float)m;
			const uint8_t *q = b[i].qs + 32 * (j / 2);
			for (int l = 0; l < 32; l++)
				dst[32 * j + l] = dj * (float)(j & 1 ? q[l] >> 4 : q[l] & 15) - mj;
		}
	}
}

static void q5_K_from_float(const float *src, void *dst, int64_t n)
{
	block_q5_K *b = dst;
	uint8_t L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
		kq_quant_min_block(src, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
		memset(b[i].qh, 0, sizeof b[i].qh);
		for (int k = 0; k < 4; k++) {
			for (int l = 0; l < 32; l++) {
				int lo = L[64 * k + l], hi = L[64 * k + 32 + l];
				b[i].qs[32 * k + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
				b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * k) | (hi >> 4) << (2 * k + 1));
			}
		}
	}
}

static void q5_K_to_float(const void *src, float *dst, int64_t n)
{
	const block_q5_K *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
		for (int j = 0; j < 8; j++) {
			int sc, m;
			kq_scale_min(b[i].scales, j, &sc, &m);
			float dj = d * (float)sc, mj = dmin * (float)m;
			const uint8_t *q = b[i].qs + 32 * (j / 2);
			for (int l = 0; l < 32; l++) {
				int v = (j & 1 ? q[l] >> 4 : q[l] & 15) | (b[i].qh[l] >> j & 1) << 4;
				dst[32 * j + l] = dj * (float)v - mj;
			}
		}
	}
}

static void q6_K_from_float(const float *src, void *dst, int64_t n)
{
	block_q6_K *b = dst;
	uint8_t L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
		float sc[16], max_sc = 0, amax_sc = 0;
		for (int j = 0; j < 16; j++) {
			sc[j] = kq_fit_sym(16, 32, src + 16 * j, L + 16 * j);
			if (fabsf(sc[j]) > amax_sc) {
				amax_sc = fabsf(sc[j]);
				max_sc = sc[j];
			}
		}
		memset(&b[i], 0, sizeof b[i]);
		if (!(amax_sc >= 1e-15f))
			continue; /* all zero */
		/* the largest scale, with its sign, becomes -128 */
		float iscale = -128 / max_sc;
		b[i].d = fp32_to_fp16(1 / iscale);
		for (int j = 0; j < 16; j++)
			b[i].scales[j] = (int8_t)kq_round(iscale * sc[j], -128, 127);
		float d = fp16_to_fp32(b[i].d);
		for (int j = 0; j < 16; j++) {
			float dj = d * (float)b[i].scales[j];
			if (dj == 0)
				continue;
			for (int l = 0; l < 16; l++)
				L[16 * j + l] = (uint8_t)(kq_round(src[16 * j + l] / dj, -32, 31) + 32);
		}
		for (int h = 0; h < 2; h++) {
			const uint8_t *Lh = L + 128 * h;
			for (int l = 0; l < 32; l++) {
				b[i].ql[64 * h + l] = (uint8_t)((Lh[l] & 15) | (Lh[l + 64] & 15) << 4);
				b[i].ql[64 * h + l + 32] = (uint8_t)((Lh[l + 32] & 15) | (Lh[l + 96] & 15) << 4);
				b[i].qh[32 * h + l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 |
								(Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
			}
		}
	}
}

static void q6_K_to_float(const void *src, float *dst, int64_t n)
{
	const block_q6_K *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		float d = fp16_to_fp32(b[i].d);
		for (int e = 0; e < QK_K; e++) {
			int h = e / 128, k = e % 128 / 32, l = e % 32;
			int lo = b[i].ql[64 * h + l + 32 * (k & 1)] >> (k >= 2 ? 4 : 0) & 15;
			int hi = b[i].qh[32 * h + l] >> (2 * k) & 3;
			dst[e] = d * (float)b[i].scales[e / 16] * (float)((lo | hi << 4) - 32);
		}
	}
}

/* ---- the table ----
 * Every id GGUF defines has a name, block size and block bytes, so a reader can
 * size any tensor; only entries with conversions (to_float) are supported. */

#define FLOAT(nm, bytes, to, from) \
	{ .name = nm, .blck_size = 1, .type_size = bytes, .to_float = to, .from_float = from }
#define QUANT(nm, blck, bytes, to, from) \
	{ .name = nm, .blck_size = blck, .type_size = bytes, .is_quantized = true, .to_float = to, .from_float = from }
#define DATA(nm, bytes) { .name = nm, .blck_size = 1, .type_size = bytes, .is_data = true }

static const struct qtype_traits traits[QTYPE_COUNT] = {
	[QTYPE_F32] = FLOAT("f32", 4, f32_to_float, f32_from_float),
	[QTYPE_F16] = FLOAT("f16", 2, f16_to_float, f16_from_float),
	[QTYPE_BF16] = FLOAT("bf16", 2, bf16_to_float, bf16_from_float),
	[QTYPE_Q4_0] = QUANT("q4_0", QK4_0, sizeof(block_q4_0), q4_0_to_float, q4_0_from_float),
	[QTYPE_Q8_0] = QUANT("q8_0", QK8_0, sizeof(block_q8_0), q8_0_to_float, q8_0_from_float),
	[QTYPE_Q4_K] = QUANT("q4_K", QK_K, sizeof(block_q4_K), q4_K_to_float, q4_K_from_float),
	[QTYPE_Q5_K] = QUANT("q5_K", QK_K, sizeof(block_q5_K), q5_K_to_float, q5_K_from_float),
	[QTYPE_Q6_K] = QUANT("q6_K", QK_K, sizeof(block_q6_K), q6_K_to_float, q6_K_from_float),
	/* known by their geometry only */
	[QTYPE_Q4_1] = QUANT("q4_1", 32, 20, NULL, NULL),
	[QTYPE_Q5_0] = QUANT("q5_0", 32, 22, NULL, NULL),
	[QTYPE_Q5_1] = QUANT("q5_1", 32, 24, NULL, NULL),
	[QTYPE_Q8_1] = QUANT("q8_1", 32, 36, NULL, NULL),
	[QTYPE_Q2_K] = QUANT("q2_K", QK_K, 84, NULL, NULL),
	[QTYPE_Q3_K] = QUANT("q3_K", QK_K, 110, NULL, NULL),
	[QTYPE_Q8_K] = QUANT("q8_K", QK_K, 292, NULL, NULL),
	[QTYPE_IQ2_XXS] = QUANT("iq2_xxs", QK_K, 66, NULL, NULL),
	[QTYPE_IQ2_XS] = QUANT("iq2_xs", QK_K, 74, NULL, NULL),
	[QTYPE_IQ3_XXS] = QUANT("iq3_xxs", QK_K, 98, NULL, NULL),
	[QTYPE_IQ1_S] = QUANT("iq1_s", QK_K, 50, NULL, NULL),
	[QTYPE_IQ4_NL] = QUANT("iq4_nl", 32, 18, NULL, NULL),
	[QTYPE_IQ3_S] = QUANT("iq3_s", QK_K, 110, NULL, NULL),
	[QTYPE_IQ2_S] = QUANT("iq2_s", QK_K, 82, NULL, NULL),
	[QTYPE_IQ4_XS] = QUANT("iq4_xs", QK_K, 136, NULL, NULL),
	[QTYPE_IQ1_M] = QUANT("iq1_m", QK_K, 56, NULL, NULL),
	[QTYPE_TQ1_0] = QUANT("tq1_0", QK_K, 54, NULL, NULL),
	[QTYPE_TQ2_0] = QUANT("tq2_0", QK_K, 66, NULL, NULL),
	[QTYPE_MXFP4] = QUANT("mxfp4", 32, 17, NULL, NULL),
	[QTYPE_I8] = DATA("i8", 1),
	[QTYPE_I16] = DATA("i16", 2),
	[QTYPE_I32] = DATA("i32", 4),
	[QTYPE_I64] = DATA("i64", 8),
	[QTYPE_F64] = DATA("f64", 8),
};
#undef FLOAT
#undef QUANT
#undef DATA

/* Entry of a known id (name set), or NULL. */
static const struct qtype_traits *known(int type)
{
	if (type < 0 || type >= QTYPE_COUNT || !traits[type].name)
		return NULL;
	return &traits[type];
}

const struct qtype_traits *qtype_info(int type)
{
	return known(type);
}

const struct qtype_traits *qtype_traits(int type)
{
	const struct qtype_traits *t = known(type);
	return t && t->to_float ? t : NULL;
}

const char *qtype_name(int type)
{
	static _Thread_local char buf[32];
	const struct qtype_traits *t = known(type);
	if (t)
		return t->name;
	snprintf(buf, sizeof buf, "type %d", type);
	return buf;
}

int qtype_from_name(const char *name)
{
	for (int i = 0; name && i < QTYPE_COUNT; i++)
		if (traits[i].name && strcasecmp(traits[i].name, name) == 0)
			return i;
	return -1;
}

size_t qtype_row_size(int type, int64_t n)
{
	const struct qtype_traits *t = known(type);
	if (!t || n < 0 || n % t->blck_size != 0)
		return 0;
	return (size_t)(n / t->blck_size) * t->type_size;
}
