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

/* ---- the table ----
 * Every id GGUF defines has a name, block size and block bytes, so a reader can
 * size any tensor; only entries with conversions (to_float) are supported. */

#define QK_K 256

static const struct qtype_traits traits[QTYPE_COUNT] = {
	[QTYPE_F32] = { "f32", 1, 4, false, f32_to_float, f32_from_float },
	[QTYPE_F16] = { "f16", 1, 2, false, f16_to_float, f16_from_float },
	[QTYPE_Q4_0] = { "q4_0", QK4_0, sizeof(block_q4_0), true, q4_0_to_float, q4_0_from_float },
	[QTYPE_Q4_1] = { "q4_1", 32, 20, true, NULL, NULL },
	[QTYPE_Q5_0] = { "q5_0", 32, 22, true, NULL, NULL },
	[QTYPE_Q5_1] = { "q5_1", 32, 24, true, NULL, NULL },
	[QTYPE_Q8_0] = { "q8_0", QK8_0, sizeof(block_q8_0), true, q8_0_to_float, q8_0_from_float },
	[QTYPE_Q8_1] = { "q8_1", 32, 36, true, NULL, NULL },
	[QTYPE_Q2_K] = { "q2_K", QK_K, 84, true, NULL, NULL },
	[QTYPE_Q3_K] = { "q3_K", QK_K, 110, true, NULL, NULL },
	[QTYPE_Q4_K] = { "q4_K", QK_K, 144, true, NULL, NULL },
	[QTYPE_Q5_K] = { "q5_K", QK_K, 176, true, NULL, NULL },
	[QTYPE_Q6_K] = { "q6_K", QK_K, 210, true, NULL, NULL },
	[QTYPE_Q8_K] = { "q8_K", QK_K, 292, true, NULL, NULL },
	[16] = { "iq2_xxs", QK_K, 66, true, NULL, NULL },
	[17] = { "iq2_xs", QK_K, 74, true, NULL, NULL },
	[18] = { "iq3_xxs", QK_K, 98, true, NULL, NULL },
	[19] = { "iq1_s", QK_K, 50, true, NULL, NULL },
	[20] = { "iq4_nl", 32, 18, true, NULL, NULL },
	[21] = { "iq3_s", QK_K, 110, true, NULL, NULL },
	[22] = { "iq2_s", QK_K, 82, true, NULL, NULL },
	[23] = { "iq4_xs", QK_K, 136, true, NULL, NULL },
	[24] = { "i8", 1, 1, false, NULL, NULL },
	[25] = { "i16", 1, 2, false, NULL, NULL },
	[26] = { "i32", 1, 4, false, NULL, NULL },
	[27] = { "i64", 1, 8, false, NULL, NULL },
	[28] = { "f64", 1, 8, false, NULL, NULL },
	[29] = { "iq1_m", QK_K, 56, true, NULL, NULL },
	[QTYPE_BF16] = { "bf16", 1, 2, false, bf16_to_float, bf16_from_float },
	[34] = { "tq1_0", QK_K, 54, true, NULL, NULL },
	[35] = { "tq2_0", QK_K, 66, true, NULL, NULL },
	[39] = { "mxfp4", 32, 17, true, NULL, NULL },
};

/* Entry of a known id (name set), or NULL. */
static const struct qtype_traits *known(int type)
{
	if (type < 0 || type >= QTYPE_COUNT || !traits[type].name)
		return NULL;
	return &traits[type];
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
