/* kvcodec.c — quantized, zstd-coded KV layer payloads (see kvcodec.h). */
#include "kvcodec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "quant.h"

#define ZLEVEL 3
#define F16_MAX 65504.0f

static int groups(int n)
{
	return (n + KVCODEC_GROUP - 1) / KVCODEC_GROUP;
}

/* Bytes of K's (or V's) frame content: the group parameters, then the codes. */
static size_t raw_k(int bits, int rows, int kv_dim)
{
	return 4 * (size_t)groups(rows) * kv_dim + ((size_t)rows * kv_dim * bits + 7) / 8;
}

static size_t raw_v(int bits, int rows, int kv_dim)
{
	return 4 * (size_t)rows * groups(kv_dim) + ((size_t)rows * kv_dim * bits + 7) / 8;
}

static bool bits_ok(int bits)
{
	return bits == 2 || bits == 3 || bits == 4 || bits == 8;
}

size_t kvcodec_bound(int bits, int rows, int kv_dim)
{
	if (!bits_ok(bits) || rows < 0 || kv_dim < 1)
		return 0;
	return 8 + ZSTD_compressBound(raw_k(bits, rows, kv_dim)) + ZSTD_compressBound(raw_v(bits, rows, kv_dim));
}

/* ---- one group ---- */

struct group {
	float min, step;   /* as decoded (from their f16) */
	uint16_t min16, step16;
};

/* The group of values spanning [lo, hi]: min rounded to f16, step rounded up
 * so that min + (2^bits - 1) step >= hi. */
static struct group group_of(int bits, float lo, float hi)
{
	const float levels = (float)((1 << bits) - 1);
	struct group g;
	lo = lo < -F16_MAX ? -F16_MAX : lo > F16_MAX ? F16_MAX : lo;
	hi = hi < -F16_MAX ? -F16_MAX : hi > F16_MAX ? F16_MAX : hi;
	g.min16 = fp32_to_fp16(lo);
	g.min = fp16_to_fp32(g.min16);
	float step = hi > g.min ? (hi - g.min) / levels : 0.0f;
	step = step > F16_MAX ? F16_MAX : step;
	g.step16 = fp32_to_fp16(step);
	if (fp16_to_fp32(g.step16) < step && fp16_to_fp32((uint16_t)(g.step16 + 1)) <= F16_MAX)
		g.step16++; /* positive f16: the next bit pattern is the next value up */
	g.step = fp16_to_fp32(g.step16);
	return g;
}

double kvcodec_max_error(int bits, float lo, float hi)
{
	struct group g = group_of(bits, lo, hi);
	/* half a step, and a minimum rounded above lo clamps lo up to it */
	return 0.5 * g.step + (g.min > lo ? g.min - lo : 0) + 1e-6 * fabs(hi > -lo ? hi : -lo);
}

static unsigned code_of(const struct group *g, float x, unsigned levels)
{
	if (g->step == 0)
		return 0;
	float c = rintf((x - g->min) / g->step);
	return c <= 0 ? 0 : c >= (float)levels ? levels : (unsigned)c;
}

/* ---- bits ---- */

struct bitw {
	uint8_t *p;
	uint64_t acc;
	int n;
};

static void put_bits(struct bitw *w, unsigned v, int bits)
{
	w->acc |= (uint64_t)v << w->n;
	w->n += bits;
	while (w->n >= 8) {
		*w->p++ = (uint8_t)w->acc;
		w->acc >>= 8;
		w->n -= 8;
	}
}

static void flush_bits(struct bitw *w)
{
	if (w->n > 0)
		*w->p++ = (uint8_t)w->acc;
	w->acc = 0, w->n = 0;
}

struct bitr {
	const uint8_t *p;
	uint64_t acc;
	int n;
};

static unsigned get_bits(struct bitr *r, int bits)
{
	while (r->n < bits) {
		r->acc |= (uint64_t)*r->p++ << r->n;
		r->n += 8;
	}
	unsigned v = (unsigned)(r->acc & ((1u << bits) - 1));
	r->acc >>= bits;
	r->n -= bits;
	return v;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }

/* ---- encoding ---- */

/* K: groups of tokens, per channel; codes as differences along the tokens. */
static void pack_k(int bits, const float *k, size_t stride, int rows, int kv_dim, uint8_t *raw)
{
	const unsigned levels = (1u << bits) - 1;
	uint8_t *par = raw;
	struct bitw w = { .p = raw + 4 * (size_t)groups(rows) * kv_dim };
	for (int t0 = 0; t0 < rows; t0 += KVCODEC_GROUP) {
		const int n = rows - t0 < KVCODEC_GROUP ? rows - t0 : KVCODEC_GROUP;
		for (int c = 0; c < kv_dim; c++, par += 4) {
			float lo = INFINITY, hi = -INFINITY;
			for (int t = t0; t < t0 + n; t++) {
				float x = k[(size_t)t * stride + c];
				lo = x < lo ? x : lo, hi = x > hi ? x : hi;
			}
			struct group g = group_of(bits, lo, hi);
			put16(par, g.min16), put16(par + 2, g.step16);
			unsigned prev = 0;
			for (int t = t0; t < t0 + n; t++) {
				unsigned code = code_of(&g, k[(size_t)t * stride + c], levels);
				put_bits(&w, (code - prev) & levels, bits);
				prev = code;
			}
		}
	}
	flush_bits(&w);
}

/* V: per token, groups of channels. */
static void pack_v(int bits, const float *v, size_t stride, int rows, int kv_dim, uint8_t *raw)
{
	const unsigned levels = (1u << bits) - 1;
	uint8_t *par = raw;
	struct bitw w = { .p = raw + 4 * (size_t)rows * groups(kv_dim) };
	for (int t = 0; t < rows; t++) {
		const float *row = v + (size_t)t * stride;
		for (int c0 = 0; c0 < kv_dim; c0 += KVCODEC_GROUP, par += 4) {
			const int n = kv_dim - c0 < KVCODEC_GROUP ? kv_dim - c0 : KVCODEC_GROUP;
			float lo = INFINITY, hi = -INFINITY;
			for (int c = c0; c < c0 + n; c++)
				lo = row[c] < lo ? row[c] : lo, hi = row[c] > hi ? row[c] : hi;
			struct group g = group_of(bits, lo, hi);
			put16(par, g.min16), put16(par + 2, g.step16);
			for (int c = c0; c < c0 + n; c++)
				put_bits(&w, code_of(&g, row[c], levels), bits);
		}
	}
	flush_bits(&w);
}

int kvcodec_encode(int bits, const float *k, const float *v, size_t row_stride, int rows, int kv_dim,
		   uint8_t *out, size_t cap, size_t *len)
{
	if (!bits_ok(bits))
		return kb_fail(KB_ERR_ARG, "kvcodec: %d bits (2, 3, 4 or 8)", bits);
	ASSERT(cap >= kvcodec_bound(bits, rows, kv_dim));
	const size_t nk = raw_k(bits, rows, kv_dim), nv = raw_v(bits, rows, kv_dim);
	uint8_t *raw = calloc(nk > nv ? nk : nv, 1);
	if (!raw)
		return kb_fail(KB_ERR_NOMEM, "out of memory encoding a layer");
	size_t at = 8, lens[2];
	for (int half = 0; half < 2; half++) {
		size_t n = half ? nv : nk;
		memset(raw, 0, n);
		if (half)
			pack_v(bits, v, row_stride, rows, kv_dim, raw);
		else
			pack_k(bits, k, row_stride, rows, kv_dim, raw);
		size_t z = ZSTD_compress(out + at, cap - at, raw, n, ZLEVEL);
		if (ZSTD_isError(z)) {
			free(raw);
			return kb_fail(KB_ERR_NOMEM, "kvcodec: zstd: %s", ZSTD_getErrorName(z));
		}
		lens[half] = z;
		at += z;
	}
	free(raw);
	put32(out, (uint32_t)lens[0]), put32(out + 4, (uint32_t)lens[1]);
	*len = at;
	return KB_OK;
}

/* ---- decoding ---- */

/* n codes of `bits` bits, packed least significant bit first from src, into
 * out (one byte each). src holds whole bytes for them (the caller pads). */
static void unpack_codes(int bits, const uint8_t *src, size_t n, uint8_t *out)
{
	size_t i = 0;
	switch (bits) {
	case 8:
		memcpy(out, src, n);
		return;
	case 4:
		for (; i + 2 <= n; i += 2, src++)
			out[i] = *src & 15, out[i + 1] = *src >> 4;
		break;
	case 2:
		for (; i + 4 <= n; i += 4, src++)
			out[i] = *src & 3, out[i + 1] = (*src >> 2) & 3, out[i + 2] = (*src >> 4) & 3, out[i + 3] = *src >> 6;
		break;
	case 3:
		for (; i + 8 <= n; i += 8, src += 3) {
			uint32_t w = src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16;
			for (int j = 0; j < 8; j++)
				out[i + j] = (uint8_t)((w >> 3 * j) & 7);
		}
		break;
	}
	/* the tail, where a byte holds codes of the next group too */
	struct bitr r = { .p = src };
	for (; i < n; i++)
		out[i] = (uint8_t)get_bits(&r, bits);
}

/* dst[c] = mn[c] + code[c] * st[c] for n values: whole runs of
 * KVCODEC_GROUP, which the compiler turns into vector code, then the rest. */
static void dequant(float *restrict dst, const uint8_t *restrict code, const float *restrict mn,
		    const float *restrict st, int n)
{
	int c = 0;
	for (; c + KVCODEC_GROUP <= n; c += KVCODEC_GROUP)
		for (int j = c; j < c + KVCODEC_GROUP; j++)
			dst[j] = mn[j] + (float)code[j] * st[j];
	for (; c < n; c++)
		dst[c] = mn[c] + (float)code[c] * st[c];
}

/* acc[c] = (acc[c] + d[c]) & mask for n bytes (a channel's running code). */
static void accumulate(uint8_t *restrict acc, const uint8_t *restrict d, uint8_t mask, int n)
{
	int c = 0;
	for (; c + KVCODEC_GROUP <= n; c += KVCODEC_GROUP)
		for (int j = c; j < c + KVCODEC_GROUP; j++)
			acc[j] = (uint8_t)((acc[j] + d[j]) & mask);
	for (; c < n; c++)
		acc[c] = (uint8_t)((acc[c] + d[c]) & mask);
}

/* K: the codes (group by group, channel by channel, tokens in order, as
 * differences), turned token-major, summed along the tokens and written row by
 * row. par: scratch of kv_dim * (2 floats + 1 byte) + KVCODEC_GROUP * kv_dim bytes. */
static void unpack_k(int bits, const uint8_t *raw, int rows, int kv_dim, float *k, size_t stride, uint8_t *codes,
		     float *par)
{
	const uint8_t levels = (uint8_t)((1u << bits) - 1);
	const int ng = groups(rows);
	unpack_codes(bits, raw + 4 * (size_t)ng * kv_dim, (size_t)rows * kv_dim, codes);
	float *mn = par, *st = par + kv_dim;
	uint8_t *cur = (uint8_t *)(par + 2 * (size_t)kv_dim), *tr = cur + kv_dim;
	const uint8_t *pp = raw;
	for (int t0 = 0; t0 < rows; t0 += KVCODEC_GROUP) {
		const int n = rows - t0 < KVCODEC_GROUP ? rows - t0 : KVCODEC_GROUP;
		const uint8_t *cg = codes + (size_t)t0 * kv_dim; /* this group's n * kv_dim codes */
		for (int c = 0; c < kv_dim; c++, pp += 4) {
			mn[c] = fp16_to_fp32(kb_le16(pp)), st[c] = fp16_to_fp32(kb_le16(pp + 2));
			cur[c] = 0;
			for (int t = 0; t < n; t++)
				tr[(size_t)t * kv_dim + c] = cg[(size_t)c * n + t];
		}
		for (int t = 0; t < n; t++) {
			accumulate(cur, tr + (size_t)t * kv_dim, levels, kv_dim);
			dequant(k + (size_t)(t0 + t) * stride, cur, mn, st, kv_dim);
		}
	}
}

/* V: per token, groups of channels. mn, st: scratch of kv_dim floats each. */
static void unpack_v(int bits, const uint8_t *raw, int rows, int kv_dim, float *v, size_t stride, uint8_t *codes,
		     float *mn, float *st)
{
	const int ng = groups(kv_dim);
	unpack_codes(bits, raw + 4 * (size_t)rows * ng, (size_t)rows * kv_dim, codes);
	const uint8_t *pp = raw;
	for (int t = 0; t < rows; t++) {
		for (int c0 = 0; c0 < kv_dim; c0 += KVCODEC_GROUP, pp += 4) {
			const int n = kv_dim - c0 < KVCODEC_GROUP ? kv_dim - c0 : KVCODEC_GROUP;
			const float m = fp16_to_fp32(kb_le16(pp)), s = fp16_to_fp32(kb_le16(pp + 2));
			for (int c = c0; c < c0 + n; c++)
				mn[c] = m, st[c] = s;
		}
		dequant(v + (size_t)t * stride, codes + (size_t)t * kv_dim, mn, st, kv_dim);
	}
}

int kvcodec_decode(int bits, const uint8_t *in, size_t len, int rows, int kv_dim, float *k, float *v,
		   size_t row_stride)
{
	if (!bits_ok(bits))
		return kb_fail(KB_ERR_FORMAT, "kvcodec: %d bits (2, 3, 4 or 8)", bits);
	if (len < 8)
		return kb_fail(KB_ERR_FORMAT, "compressed payload of %zu bytes (less than its 8-byte head)", len);
	const size_t lk = kb_le32(in), lv = kb_le32(in + 4);
	if (lk > len - 8 || lv != len - 8 - lk)
		return kb_fail(KB_ERR_FORMAT, "compressed payload: K %zu and V %zu bytes do not fill %zu", lk, lv, len - 8);
	const size_t nk = raw_k(bits, rows, kv_dim), nv = raw_v(bits, rows, kv_dim);
	uint8_t *raw = malloc((nk > nv ? nk : nv) + 8); /* + 8: the bit reader may look a word ahead */
	uint8_t *codes = malloc((size_t)rows * kv_dim + 1);
	float *par = malloc((size_t)kv_dim * (2 * sizeof(float) + 1 + KVCODEC_GROUP) + 16);
	if (!raw || !codes || !par) {
		free(raw), free(codes), free(par);
		return kb_fail(KB_ERR_NOMEM, "out of memory decoding a layer");
	}
	const uint8_t *src = in + 8;
	for (int half = 0; half < 2; half++) {
		const size_t n = half ? nv : nk, zl = half ? lv : lk;
		unsigned long long want = ZSTD_getFrameContentSize(src, zl);
		if (want != n) {
			free(raw), free(codes), free(par);
			return kb_fail(KB_ERR_FORMAT, "compressed %s: %s", half ? "V" : "K",
				       want == ZSTD_CONTENTSIZE_ERROR || want == ZSTD_CONTENTSIZE_UNKNOWN
					       ? "not a zstd frame with its size"
					       : "a frame of the wrong size");
		}
		size_t got = ZSTD_decompress(raw, n, src, zl);
		if (ZSTD_isError(got) || got != n) {
			free(raw), free(codes), free(par);
			return kb_fail(KB_ERR_FORMAT, "compressed %s: %s", half ? "V" : "K",
				       ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
		}
		memset(raw + n, 0, 8);
		if (half && v)
			unpack_v(bits, raw, rows, kv_dim, v, row_stride, codes, par, par + kv_dim);
		else if (!half && k)
			unpack_k(bits, raw, rows, kv_dim, k, row_stride, codes, par);
		src += zl;
	}
	free(raw), free(codes), free(par);
	return KB_OK;
}
