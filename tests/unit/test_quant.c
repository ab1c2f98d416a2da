/* test_quant.c — element types: fp16/bf16 conversions (edge values, exhaustive
 * round trips, nearest-even on random floats), the reference quantizers
 * (known answers, round-trip error) including the K-quants (hand-made blocks,
 * grid blocks), row sizes, names and the traits table. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"
#include "tap.h"

static float from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}


static uint32_t rand_u32(void)
{
	uint32_t hi = (uint32_t)(tap_randf(0, 65536.0f)), lo = (uint32_t)(tap_randf(0, 65536.0f));
	return hi << 16 | lo;
}

/* ---- fp16 ---- */

static void test_fp16_edges(void)
{
	static const struct { float f; uint16_t h; const char *what; } to16[] = {
		{ 0.0f, 0x0000, "0" },
		{ -0.0f, 0x8000, "-0" },
		{ 1.0f, 0x3c00, "1" },
		{ -2.0f, 0xc000, "-2" },
		{ 0.1f, 0x2e66, "0.1" },
		{ 65504.0f, 0x7bff, "max half" },
		{ 65519.0f, 0x7bff, "just below the Inf threshold" },
		{ 65520.0f, 0x7c00, "65520 rounds to Inf (tie to even)" },
		{ 1e10f, 0x7c00, "overflow" },
		{ -1e10f, 0xfc00, "negative overflow" },
		{ 0x1p-14f, 0x0400, "smallest normal" },
		{ 0x1p-24f, 0x0001, "smallest subnormal" },
		{ 0x1p-25f, 0x0000, "2^-25 ties to zero" },
		{ 0x1.000002p-25f, 0x0001, "just above 2^-25" },
		{ 0x3p-25f, 0x0002, "3*2^-25 ties to even 2" },
		{ 1023 * 0x1p-24f, 0x03ff, "largest subnormal" },
		{ 0x1.ffcp-15f, 0x0400, "rounds up into the normals" },
		{ 1.0f + 0x1p-11f, 0x3c00, "1+2^-11 ties to even" },
		{ 1.0f + 0x3p-11f, 0x3c02, "1+3*2^-11 ties to even" },
		{ 0x1p-30f, 0x0000, "underflow" },
	};
	for (size_t i = 0; i < sizeof to16 / sizeof *to16; i++) {
		uint16_t h = fp32_to_fp16(to16[i].f);
		ok(h == to16[i].h, "fp32_to_fp16(%a) %s: 0x%04x want 0x%04x", to16[i].f, to16[i].what,
		   h, to16[i].h);
	}
	ok(fp32_to_fp16(INFINITY) == 0x7c00 && fp32_to_fp16(-INFINITY) == 0xfc00, "fp32_to_fp16(+-Inf)");
	uint16_t hn = fp32_to_fp16(NAN);
	ok((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "fp32_to_fp16(NaN) is a NaN (0x%04x)", hn);
	hn = fp32_to_fp16(from_bits(0x7f800001)); /* signalling NaN, payload only in low bits */
	ok((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "fp32_to_fp16(sNaN) stays a NaN (0x%04x)", hn);

	ok(fp16_to_fp32(0x3c00) == 1.0f, "fp16_to_fp32(1)");
	ok(fp16_to_fp32(0x0001) == 0x1p-24f, "fp16_to_fp32(smallest subnormal)");
	ok(fp16_to_fp32(0x83ff) == -1023 * 0x1p-24f, "fp16_to_fp32(-largest subnormal)");
	ok(fp16_to_fp32(0x7bff) == 65504.0f, "fp16_to_fp32(max)");
	ok(fp16_to_fp32(0x7c00) == INFINITY && fp16_to_fp32(0xfc00) == -INFINITY, "fp16_to_fp32(+-Inf)");
	ok(isnan(fp16_to_fp32(0x7e00)) && isnan(fp16_to_fp32(0xfc01)), "fp16_to_fp32(NaN)");
	float nz = fp16_to_fp32(0x8000);
	ok(nz == 0 && signbit(nz), "fp16_to_fp32(-0) keeps the sign");
}

/* Every half survives fp16 -> fp32 -> fp16; NaNs stay NaNs. */
static void test_fp16_exhaustive(void)
{
	int bad = 0, first = -1;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = fp16_to_fp32((uint16_t)h);
		uint16_t back = fp32_to_fp16(f);
		int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
		int good = is_nan ? isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff)
				  : back == h && !isnan(f);
		if (!good && bad++ == 0)
			first = (int)h;
	}
	if (bad)
		diag("first bad half 0x%04x", first);
	ok(bad == 0, "fp16 -> fp32 -> fp16 round trip of all 65536 halves (%d bad)", bad);
}

/* fp32_to_fp16 of random floats picks the nearest half, ties to even. */
static void test_fp16_nearest(void)
{
	int bad = 0;
	for (int i = 0; i < 200000; i++) {
		/* exponents around the half range so subnormals, normals and overflow all occur */
		float f = ldexpf(tap_randf(1, 2), (int)tap_randf(-27, 17)) * (i & 1 ? -1 : 1);
		if (i % 7 == 0) { /* exact ties: halfway between two neighbouring halves */
			uint16_t t = (uint16_t)(rand_u32() & 0x7bfe);
			f = (float)(((double)fp16_to_fp32(t) + fp16_to_fp32((uint16_t)(t + 1))) / 2);
		}
		uint16_t h = fp32_to_fp16(f);
		double want = f, got = fp16_to_fp32(h);
		/* neighbours of got: the result is nearest if neither is closer */
		double up = fp16_to_fp32((uint16_t)(h + 1)), dn = h & 0x7fff ? fp16_to_fp32((uint16_t)(h - 1)) : -got;
		double e = fabs(got - want);
		int nearest;
		if (isinf(got))
			nearest = fabs(want) >= 65520.0;
		else
			nearest = e <= fabs(up - want) && e <= fabs(dn - want) &&
				  ((e != fabs(up - want) && e != fabs(dn - want)) || (h & 1) == 0 || e == 0);
		if (!nearest && bad++ < 3)
			diag("fp32_to_fp16(%a) = 0x%04x (%a)", f, h, got);
	}
	ok(bad == 0, "fp32_to_fp16 rounds 200000 random floats to the nearest half, ties to even (%d bad)", bad);
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static int hw_fp16(float f)
{
	return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_fp32(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* The F16C instructions as an independent oracle, on random bit patterns. */
static void test_fp16_hw(void)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("f16c")) {
		ok(1, "# SKIP no F16C to compare fp16 conversions with");
		return;
	}
	int bad = 0;
	for (int i = 0; i < 1000000; i++) {
		float f = from_bits(rand_u32());
		uint16_t h = fp32_to_fp16(f), w = (uint16_t)hw_fp16(f);
		if (isnan(f) ? !isnan(fp16_to_fp32(h)) : h != w) {
			if (bad++ < 3)
				diag("fp32_to_fp16(%a) = 0x%04x, F16C says 0x%04x", f, h, w);
		}
	}
	for (uint32_t h = 0; h < 65536; h++) {
		float a = fp16_to_fp32((uint16_t)h), b = hw_fp32((uint16_t)h);
		if (memcmp(&a, &b, 4) != 0 && bad++ < 3)
			diag("fp16_to_fp32(0x%04x) = %a, F16C says %a", h, a, b);
	}
	ok(bad == 0, "fp16 conversions agree with F16C on 1e6 random floats and all halves (%d bad)", bad);
}
#else
static void test_fp16_hw(void)
{
	ok(1, "# SKIP no F16C to compare fp16 conversions with");
}
#endif

/* ---- bf16 ---- */

static void test_bf16(void)
{
	ok(fp32_to_bf16(1.0f) == 0x3f80, "fp32_to_bf16(1)");
	ok(fp32_to_bf16(-2.0f) == 0xc000, "fp32_to_bf16(-2)");
	ok(fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "fp32_to_bf16(1+2^-8) ties to even");
	ok(fp32_to_bf16(1.0f + 0x3p-8f) == 0x3f82, "fp32_to_bf16(1+3*2^-8) ties to even");
	ok(fp32_to_bf16(1.0f + 0x1.2p-8f) == 0x3f81, "fp32_to_bf16 rounds up above the tie");
	ok(fp32_to_bf16(FLT_MAX) == 0x7f80, "fp32_to_bf16(FLT_MAX) overflows to Inf");
	ok(fp32_to_bf16(INFINITY) == 0x7f80 && fp32_to_bf16(-INFINITY) == 0xff80, "fp32_to_bf16(+-Inf)");
	uint16_t n = fp32_to_bf16(from_bits(0x7f800001));
	ok((n & 0x7f80) == 0x7f80 && (n & 0x7f), "fp32_to_bf16(sNaN with low payload) stays a NaN (0x%04x)", n);
	ok(fp32_to_bf16(0x1p-130f) == 0x0008, "fp32_to_bf16 keeps subnormals (0x%04x)", fp32_to_bf16(0x1p-130f));
	ok(bf16_to_fp32(0x3f80) == 1.0f && bf16_to_fp32(0xc000) == -2.0f, "bf16_to_fp32(1, -2)");

	int bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = bf16_to_fp32((uint16_t)h);
		if (isnan(f) ? !isnan(bf16_to_fp32(fp32_to_bf16(f))) : fp32_to_bf16(f) != h)
			bad++;
	}
	ok(bad == 0, "bf16 -> fp32 -> bf16 round trip of all 65536 values (%d bad)", bad);

	bad = 0;
	for (int i = 0; i < 200000; i++) {
		uint32_t u = rand_u32();
		if ((u & 0x7f800000) == 0x7f800000)
			continue;
		uint16_t h = fp32_to_bf16(from_bits(u));
		uint32_t lo = u & 0xffff0000, rest = u & 0xffff;
		uint16_t want = (uint16_t)(lo >> 16);
		if (rest > 0x8000 || (rest == 0x8000 && (want & 1)))
			want++;
		if (h != want)
			bad++;
	}
	ok(bad == 0, "fp32_to_bf16 of 200000 random finite floats rounds to nearest even (%d bad)", bad);
}

/* ---- reference quantizers ---- */

static void test_q8_0_known(void)
{
	float x[64] = { 127, -3.5f, 2.5f, 0.49f, 0.5f, -0.5f, -127, 63.5f };
	block_q8_0 b[2];
	memset(b, 0xAA, sizeof b);
	qtype_traits(QTYPE_Q8_0)->from_float(x, b, 64); /* block 1 is all zeros */
	/* amax 127 -> d = 1, id = 1; roundf ties away from zero */
	static const int8_t want[8] = { 127, -4, 3, 0, 1, -1, -127, 64 };
	ok(b[0].d == 0x3c00, "q8_0 known block: d = 1.0 (0x%04x)", b[0].d);
	ok(memcmp(b[0].qs, want, 8) == 0, "q8_0 known block: quants %d %d %d %d %d %d %d %d", b[0].qs[0],
	   b[0].qs[1], b[0].qs[2], b[0].qs[3], b[0].qs[4], b[0].qs[5], b[0].qs[6], b[0].qs[7]);
	int rest = 0;
	for (int j = 8; j < 32; j++)
		rest |= b[0].qs[j];
	for (int j = 0; j < 32; j++)
		rest |= b[1].qs[j];
	ok(rest == 0 && b[1].d == 0, "q8_0 known block: zeros quantize to 0 with d = 0");
	float y[64];
	qtype_traits(QTYPE_Q8_0)->to_float(b, y, 64);
	ok(y[0] == 127 && y[1] == -4 && y[7] == 64 && y[40] == 0, "q8_0 known block dequantizes");

	/* a scale that is not exact in fp16: amax 1 -> d = 1/127 = 2^-7 * 1.00787 -> 0x2008 */
	float z[32] = { 1, -0.25f };
	qtype_traits(QTYPE_Q8_0)->from_float(z, b, 32);
	ok(b[0].d == 0x2008 && b[0].qs[0] == 127 && b[0].qs[1] == -32,
	   "q8_0 d = amax/127 stored as fp16 (0x%04x), quants 127 -32 (%d %d)", b[0].d, b[0].qs[0], b[0].qs[1]);
}

static void test_q4_0_known(void)
{
	float x[64] = { 0 };
	/* max by magnitude is -8 -> d = -8 / -8 = 1, id = 1; q = min(15, trunc(x + 8.5)) */
	x[0] = -8, x[1] = 7.6f, x[2] = -0.6f, x[3] = 0.5f, x[4] = 0.49f;
	x[16] = 3, x[17] = -3, x[18] = 7;
	/* block 1: the max is positive (+4): d = -0.5, id = -2 */
	x[32] = 4, x[33] = -4, x[34] = 1, x[48] = -3.9f;
	block_q4_0 b[2];
	memset(b, 0xAA, sizeof b);
	qtype_traits(QTYPE_Q4_0)->from_float(x, b, 64);
	/* block 0: q = 0 15(clamped 16) 7 9 8 | 11 5 15; the rest 8 */
	static const uint8_t want0[16] = { 0xb0, 0x5f, 0xf7, 0x89, 0x88, 0x88, 0x88, 0x88,
					   0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88 };
	/* block 1: x*id + 8.5 = 0.5, 16.5 (->15), 6.5 | 16.3 (->15) ... */
	static const uint8_t want1[16] = { 0xf0, 0x8f, 0x86, 0x88, 0x88, 0x88, 0x88, 0x88,
					   0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88 };
	ok(b[0].d == 0x3c00 && memcmp(b[0].qs, want0, 16) == 0,
	   "q4_0 known block (negative max): d 0x%04x, qs %02x %02x %02x %02x %02x", b[0].d, b[0].qs[0],
	   b[0].qs[1], b[0].qs[2], b[0].qs[3], b[0].qs[4]);
	ok(b[1].d == 0xb800 && memcmp(b[1].qs, want1, 16) == 0,
	   "q4_0 known block (positive max): d 0x%04x, qs %02x %02x %02x %02x", b[1].d, b[1].qs[0], b[1].qs[1],
	   b[1].qs[2], b[1].qs[3]);
	float y[64];
	qtype_traits(QTYPE_Q4_0)->to_float(b, y, 64);
	ok(y[0] == -8 && y[1] == 7 && y[16] == 3 && y[32] == 4 && y[33] == -3.5f && y[48] == -3.5f && y[5] == 0,
	   "q4_0 known blocks dequantize (%g %g %g %g %g %g)", y[0], y[1], y[16], y[32], y[33], y[48]);

	float z[32] = { 0 };
	qtype_traits(QTYPE_Q4_0)->from_float(z, b, 32);
	/* d = 0 / -8 = -0 (0x8000), as in ggml */
	ok((b[0].d & 0x7fff) == 0 && b[0].qs[0] == 0x88 && b[0].qs[15] == 0x88, "q4_0 all-zero block: d = 0, q = 8");
}

/* ---- K-quants ----
 * Known blocks: bytes written by hand, the expected values computed here by
 * scattering each byte's bits to the elements they belong to (the reverse
 * of how quant.c gathers them), so a layout slip on either side shows. */

/* Q4_K / Q5_K scales bytes: sc = 1 2 3 4 17 0 0 15, m = 5 6 7 8 34 0 0 15. */
static const uint8_t kq_scales[12] = { 0x41, 0x02, 0x03, 0x04, 0x85, 0x06, 0x07, 0x08, 0x21, 0x00, 0x00, 0xff };
static const int kq_sc[8] = { 1, 2, 3, 4, 17, 0, 0, 15 }, kq_m[8] = { 5, 6, 7, 8, 34, 0, 0, 15 };

/* The 4-bit quants of a Q4_K / Q5_K block: qs byte p feeds element
 * 64 * (p / 32) + p % 32 (low nibble) and that + 32 (high nibble). */
static void kq_scatter_qs(const uint8_t *qs, int q[256])
{
	for (int p = 0; p < 128; p++) {
		q[64 * (p / 32) + p % 32] = qs[p] & 15;
		q[64 * (p / 32) + p % 32 + 32] = qs[p] >> 4;
	}
}

static void test_q4_K_known(void)
{
	block_q4_K b;
	b.d = 0x3c00;    /* 1.0 */
	b.dmin = 0x3800; /* 0.5 */
	memcpy(b.scales, kq_scales, 12);
	for (int p = 0; p < 128; p++)
		b.qs[p] = (uint8_t)(p * 37 + 11);
	int q[256], bad = 0;
	kq_scatter_qs(b.qs, q);
	float y[256];
	qtype_traits(QTYPE_Q4_K)->to_float(&b, y, 256);
	for (int e = 0; e < 256; e++) {
		float want = 1.0f * (float)kq_sc[e / 32] * (float)q[e] - 0.5f * (float)kq_m[e / 32];
		if (y[e] != want && bad++ < 3)
			diag("q4_K element %d: %g, want %g", e, y[e], want);
	}
	/* two by hand: qs[0] = 11 -> element 0 low nibble 11: 1*1*11 - 2.5; element 32 high 0: -3 */
	ok(bad == 0 && y[0] == 8.5f && y[32] == -3.0f, "q4_K known block dequantizes (%d bad; %g %g)", bad, y[0], y[32]);
}

static void test_q5_K_known(void)
{
	block_q5_K b;
	b.d = 0x3c00;
	b.dmin = 0x3800;
	memcpy(b.scales, kq_scales, 12);
	for (int p = 0; p < 128; p++)
		b.qs[p] = (uint8_t)(p * 53 + 7);
	for (int l = 0; l < 32; l++)
		b.qh[l] = (uint8_t)(l * 29 + 3);
	int q[256], bad = 0;
	kq_scatter_qs(b.qs, q);
	for (int l = 0; l < 32; l++) /* qh byte l, bit j: the fifth bit of element 32 j + l */
		for (int j = 0; j < 8; j++)
			q[32 * j + l] += (b.qh[l] >> j & 1) * 16;
	float y[256];
	qtype_traits(QTYPE_Q5_K)->to_float(&b, y, 256);
	for (int e = 0; e < 256; e++) {
		float want = (float)kq_sc[e / 32] * (float)q[e] - 0.5f * (float)kq_m[e / 32];
		if (y[e] != want && bad++ < 3)
			diag("q5_K element %d: %g, want %g", e, y[e], want);
	}
	/* element 0: low nibble of 7 = 7, qh[0] = 3 bit 0 set: 23 * 1 - 2.5 */
	ok(bad == 0 && y[0] == 20.5f, "q5_K known block dequantizes (%d bad; %g)", bad, y[0]);
}

static void test_q6_K_known(void)
{
	block_q6_K b;
	for (int p = 0; p < 128; p++)
		b.ql[p] = (uint8_t)(p * 37 + 5);
	for (int p = 0; p < 64; p++)
		b.qh[p] = (uint8_t)(p * 101 + 17);
	for (int j = 0; j < 16; j++)
		b.scales[j] = (int8_t)(j * 19 - 128);
	b.d = 0xb400; /* -0.25 */
	int q[256], bad = 0;
	for (int p = 0; p < 128; p++) { /* ql byte p: element 128 h + r (low), + 64 (high) */
		int h = p / 64, r = p % 64;
		q[128 * h + r] = b.ql[p] & 15;
		q[128 * h + r + 64] = b.ql[p] >> 4;
	}
	for (int p = 0; p < 64; p++) /* qh byte p: bits 2i, 2i+1 -> element 128 h + 32 i + l */
		for (int i = 0; i < 4; i++)
			q[128 * (p / 32) + 32 * i + p % 32] |= (b.qh[p] >> (2 * i) & 3) << 4;
	float y[256];
	qtype_traits(QTYPE_Q6_K)->to_float(&b, y, 256);
	for (int e = 0; e < 256; e++) {
		float want = -0.25f * (float)b.scales[e / 16] * (float)(q[e] - 32);
		if (y[e] != want && bad++ < 3)
			diag("q6_K element %d: %g, want %g", e, y[e], want);
	}
	/* element 0: ql[0] = 5, qh[0] = 17 -> bits 0-1 = 1: q = 21, scale -128: -0.25 * -128 * -11 */
	ok(bad == 0 && y[0] == -352.0f, "q6_K known block dequantizes (%d bad; %g)", bad, y[0]);
}

/* Quantizing: the scales found, and a block whose values lie on a grid. */
static void test_kq_quantize_known(void)
{
	/* a Q4_K block of 16 levels: x = 0.5 * q - 1 (q = e % 16) in every sub-block:
	 * the fit finds scale 0.5, min 1 exactly, so every value comes back. */
	float x[256], y[256];
	for (int e = 0; e < 256; e++)
		x[e] = 0.5f * (float)(e % 16) - 1.0f;
	block_q4_K b4;
	qtype_traits(QTYPE_Q4_K)->from_float(x, &b4, 256);
	qtype_traits(QTYPE_Q4_K)->to_float(&b4, y, 256);
	int sc, m;
	kq_scale_min(b4.scales, 5, &sc, &m);
	/* all sub-blocks alike: sc = m = 63, d = 0.5 / 63, dmin = 1 / 63 (as fp16) */
	ok(sc == 63 && m == 63 && b4.d == fp32_to_fp16(0.5f / 63) && b4.dmin == fp32_to_fp16(1.0f / 63),
	   "q4_K grid block: sc %d m %d d 0x%04x dmin 0x%04x", sc, m, b4.d, b4.dmin);
	double e = tap_nerr(y, x, 256);
	ok(e < 1e-3, "q4_K grid block comes back to fp16 precision (nerr %.2g)", e);

	/* Q6_K: integers in [-32, 31], each sub-block holding a -32: every
	 * sub-block fits scale 1 exactly, d = -1/128 and the scales -128 */
	for (int i = 0; i < 256; i++)
		x[i] = i % 16 == 3 ? -32.0f : (float)(i * 7 % 64 - 32);
	block_q6_K b6;
	qtype_traits(QTYPE_Q6_K)->from_float(x, &b6, 256);
	qtype_traits(QTYPE_Q6_K)->to_float(&b6, y, 256);
	e = tap_nerr(y, x, 256);
	ok(e == 0 && b6.scales[0] == -128 && b6.scales[15] == -128 && b6.d == 0xa000,
	   "q6_K grid block: scales -128, d 0x%04x, nerr %.2g", b6.d, e);

	/* all zeros: zero blocks, zero values */
	memset(x, 0, sizeof x);
	block_q5_K b5;
	memset(&b5, 0x55, sizeof b5);
	qtype_traits(QTYPE_Q5_K)->from_float(x, &b5, 256);
	qtype_traits(QTYPE_Q5_K)->to_float(&b5, y, 256);
	memset(&b6, 0x55, sizeof b6);
	qtype_traits(QTYPE_Q6_K)->from_float(x, &b6, 256);
	float y6[256];
	qtype_traits(QTYPE_Q6_K)->to_float(&b6, y6, 256);
	int nz = 0;
	for (int i = 0; i < 256; i++)
		nz += y[i] != 0 || y6[i] != 0;
	ok(nz == 0 && b5.d == 0 && b5.dmin == 0 && b6.d == 0, "q5_K, q6_K all-zero blocks");

	/* a NaN is quantized without undefined behaviour (UBSan builds check) and
	 * every value comes back finite */
	for (int i = 0; i < 256; i++)
		x[i] = tap_randf(-1, 1);
	x[7] = NAN;
	int fin = 1;
	static const int kt[] = { QTYPE_Q4_K, QTYPE_Q5_K, QTYPE_Q6_K };
	for (int k = 0; k < 3; k++) {
		uint8_t blk[256];
		qtype_traits(kt[k])->from_float(x, blk, 256);
		qtype_traits(kt[k])->to_float(blk, y, 256);
		for (int i = 0; i < 256; i++)
			fin &= isfinite(y[i]);
	}
	ok(fin, "q4_K, q5_K, q6_K: a NaN input gives finite values");
}

/* NaN and Inf inputs give defined quants (ggml leaves them undefined behaviour). */
static void test_nonfinite(void)
{
	float x[32] = { NAN, 1, -2, INFINITY };
	x[3] = 0.5f;
	block_q8_0 b8;
	qtype_traits(QTYPE_Q8_0)->from_float(x, &b8, 32);
	ok(b8.qs[0] == 0 && b8.qs[1] == 64 && b8.qs[2] == -127 && fp16_to_fp32(b8.d) == fp16_to_fp32(fp32_to_fp16(2.0f / 127)),
	   "q8_0: a NaN quantizes to 0, the rest as without it (%d %d %d)", b8.qs[0], b8.qs[1], b8.qs[2]);
	block_q4_0 b4;
	qtype_traits(QTYPE_Q4_0)->from_float(x, &b4, 32);
	ok((b4.qs[0] & 0x0f) == 8 && (b4.qs[2] & 0x0f) == 0, "q4_0: a NaN quantizes to 8 (zero)");
	x[3] = INFINITY;
	qtype_traits(QTYPE_Q8_0)->from_float(x, &b8, 32);
	ok((b8.d & 0x7fff) == 0x7c00 && b8.qs[1] == 0, "q8_0: an Inf makes d Inf and the quants 0");
}

/* ||dequant(quant(x)) - x|| / ||x|| on data whose scale varies block to block. */
static double roundtrip_err(int type, int n)
{
	const struct qtype_traits *tr = qtype_traits(type);
	float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
	void *q = malloc(qtype_row_size(type, n));
	for (int i = 0; i < n; i += 32) {
		float s = powf(10.0f, tap_randf(-3, 3));
		for (int j = 0; j < 32; j++)
			x[i + j] = s * tap_randf(-1, 1);
	}
	tr->from_float(x, q, n);
	tr->to_float(q, y, n);
	double e = tap_nerr(y, x, n);
	free(x), free(y), free(q);
	return e;
}

static void test_roundtrip(void)
{
	/* F32 is a copy: exact. */
	ok(roundtrip_err(QTYPE_F32, 4096) == 0, "f32 round trip is exact");
	/* F16: relative rounding error <= 2^-11 = 4.9e-4 per element (rms ~ 2.8e-4). */
	double e = roundtrip_err(QTYPE_F16, 4096);
	ok(e < 5e-4, "f16 round trip nerr %.3g < 5e-4", e);
	/* BF16: <= 2^-8 = 3.9e-3 per element (rms ~ 2.3e-3). */
	e = roundtrip_err(QTYPE_BF16, 4096);
	ok(e < 4e-3, "bf16 round trip nerr %.3g < 4e-3", e);
	/* Q8_0: step amax/127, rms error step/sqrt(12) against rms amax/sqrt(3): 1/254 = 3.9e-3,
	 * plus the fp16 rounding of d (<= 4.9e-4). */
	e = roundtrip_err(QTYPE_Q8_0, 4096);
	ok(e < 6e-3, "q8_0 round trip nerr %.3g < 6e-3", e);
	/* Q4_0: step amax/8 -> 1/16 = 0.0625 from rounding, more where the far side of the block
	 * clips at 7/8 of the max: measured ~0.075. */
	e = roundtrip_err(QTYPE_Q4_0, 4096);
	ok(e < 0.1, "q4_0 round trip nerr %.3g < 0.1", e);
	/* K-quants (here every sub-block of 32 has its own magnitude, up to 10^6
	 * apart in one super-block; the largest sub-blocks carry the error).
	 * Q4_K: 16 levels over [min, max]: step ~ 2a/15 for U(-a, a), rms step/sqrt(12)
	 * against a/sqrt(3): 0.067 for a plain grid; the scale search brings it to
	 * ~0.052 (ggml's own quantizer gives the same bytes), plus the 6-bit scales. */
	e = roundtrip_err(QTYPE_Q4_K, 256 * 64);
	ok(e < 0.07, "q4_K round trip nerr %.3g < 0.07", e);
	/* Q5_K: 32 levels: half of that, ~0.026 measured. */
	e = roundtrip_err(QTYPE_Q5_K, 256 * 64);
	ok(e < 0.035, "q5_K round trip nerr %.3g < 0.035", e);
	/* Q6_K: 64 symmetric levels, step amax/32 over 16 elements: ~0.0135 measured. */
	e = roundtrip_err(QTYPE_Q6_K, 256 * 64);
	ok(e < 0.02, "q6_K round trip nerr %.3g < 0.02", e);
}

/* ---- table, sizes, names ---- */

static void test_table(void)
{
	static const int supported[] = { QTYPE_F32, QTYPE_F16, QTYPE_BF16, QTYPE_Q8_0, QTYPE_Q4_0,
					 QTYPE_Q4_K, QTYPE_Q5_K, QTYPE_Q6_K };
	for (size_t i = 0; i < sizeof supported / sizeof *supported; i++) {
		const struct qtype_traits *t = qtype_traits(supported[i]);
		ok(t && t->to_float && t->from_float && t->blck_size > 0 && t->type_size > 0,
		   "%s is supported", qtype_name(supported[i]));
	}
	static const int unsupported[] = { QTYPE_Q4_1, QTYPE_Q5_0, QTYPE_Q8_1, QTYPE_Q2_K, QTYPE_Q3_K, QTYPE_Q8_K,
					   4, 5, 31, 99, -1, QTYPE_COUNT, 1 << 20 };
	int nulls = 0;
	for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
		nulls += qtype_traits(unsupported[i]) == NULL;
	ok(nulls == (int)(sizeof unsupported / sizeof *unsupported), "unknown and unsupported ids have no traits");

	ok(qtype_row_size(QTYPE_F32, 5) == 20, "row size f32 x5 = 20");
	ok(qtype_row_size(QTYPE_F16, 10) == 20 && qtype_row_size(QTYPE_BF16, 3) == 6, "row size f16, bf16");
	ok(qtype_row_size(QTYPE_Q8_0, 64) == 68, "row size q8_0 x64 = 68");
	ok(qtype_row_size(QTYPE_Q4_0, 576) == 324, "row size q4_0 x576 = 324");
	ok(qtype_row_size(QTYPE_Q4_K, 512) == 288 && qtype_row_size(QTYPE_Q5_K, 768) == 528 &&
	   qtype_row_size(QTYPE_Q6_K, 256) == 210 && qtype_row_size(QTYPE_Q4_K, 128) == 0,
	   "row sizes of K-quants (and 0 for a partial super-block)");
	ok(qtype_row_size(QTYPE_Q3_K, 256) == 110, "row size of a known but unsupported K-quant");
	ok(qtype_row_size(QTYPE_Q8_0, 33) == 0 && qtype_row_size(99, 32) == 0 && qtype_row_size(QTYPE_F32, -1) == 0,
	   "row size 0 for a partial block, an unknown id, a negative count");

	ok(strcmp(qtype_name(QTYPE_Q8_0), "q8_0") == 0 && strcmp(qtype_name(QTYPE_BF16), "bf16") == 0 &&
	   strcmp(qtype_name(QTYPE_Q4_K), "q4_K") == 0, "names q8_0 bf16 q4_K");
	ok(strcmp(qtype_name(99), "type 99") == 0, "unknown id named 'type 99' ('%s')", qtype_name(99));
	ok(qtype_from_name("Q8_0") == QTYPE_Q8_0 && qtype_from_name("f16") == QTYPE_F16 &&
	   qtype_from_name("BF16") == QTYPE_BF16 && qtype_from_name("q4_k") == QTYPE_Q4_K,
	   "qtype_from_name is case-insensitive");
	ok(qtype_from_name("q9_9") == -1 && qtype_from_name("") == -1 && qtype_from_name(NULL) == -1,
	   "qtype_from_name of an unknown name is -1");
	int bad = 0;
	for (int i = 0; i < QTYPE_COUNT; i++)
		if (strncmp(qtype_name(i), "type ", 5) != 0 && qtype_from_name(qtype_name(i)) != i)
			bad++;
	ok(bad == 0, "every named id maps back from its name");
	int data = 0, data_ok = 1;
	for (int i = 0; i < QTYPE_COUNT; i++) {
		const struct qtype_traits *t = qtype_info(i);
		if (!t)
			continue;
		data += t->is_data;
		data_ok &= !t->is_data || (t->blck_size == 1 && !t->is_quantized && !t->to_float);
	}
	ok(data == 5 && data_ok && qtype_info(QTYPE_I8)->is_data && qtype_info(QTYPE_F64)->is_data &&
	   !qtype_info(QTYPE_BF16)->is_data && !qtype_info(QTYPE_IQ1_M)->is_data,
	   "is_data: exactly i8, i16, i32, i64 and f64, plain elements with no conversion");
	ok(qtype_info(QTYPE_IQ2_XS) && qtype_info(QTYPE_IQ2_XS)->type_size == 74 && !qtype_traits(QTYPE_IQ2_XS) &&
	   !qtype_info(4) && !qtype_info(QTYPE_COUNT), "qtype_info: the geometry of known unsupported ids, NULL for removed ones");
}

int main(void)
{
	tap_seed();
	test_fp16_edges();
	test_fp16_exhaustive();
	test_fp16_nearest();
	test_fp16_hw();
	test_bf16();
	test_q8_0_known();
	test_q4_0_known();
	test_q4_K_known();
	test_q5_K_known();
	test_q6_K_known();
	test_kq_quantize_known();
	test_nonfinite();
	test_roundtrip();
	test_table();
	return done_testing();
}
