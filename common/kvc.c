/* kvc.c — the .kvc KV-cache stream (see kvc.h; byte layout in man/kvblend-kvc.5).
 *
 * Cache layout (offsets from the start of the cache; all little-endian):
 *
 *	  0  magic "\x89KVC"          4   u16 major          6   u16 minor
 *	  8  u32 header_size (bytes from 0 through the header CRC)
 *	 12  u32 flags (bit 0: K stored rotated; bit 1: sparse, minor >= 1)
 *	 16  model fingerprint [32]   48  tokenizer fingerprint [32]
 *	 80  u32 n_layer, n_kv_head, head_dim, dtype, rope_mode, n_rot
 *	104  f32 rope_base  108 u32 rope_scaling  112 f32 rope_factor  116 u32 rope_orig_ctx
 *	120  u32 n_tokens, n_logits, tool_len, version_len, argc, argv_len
 *	144  i32 tokens[n_tokens], i32 pos[n_tokens], f32 logits[n_logits],
 *	     tool, version, argv (argc NUL-terminated strings),
 *	     sparse only: u32 layer_rows[n_layer], u32 keep[n_kv_head * sum(layer_rows)],
 *	     [fields of newer minors]
 *	     u32 CRC32C of bytes [0, header_size - 4)
 *	then records, each starting 16 bytes before a 64-byte boundary (zero padding):
 *	     "LAYR" u32 layer u64 payload_bytes | payload (64-aligned) | u32 CRC32C(payload)
 *	     "KEND" u32 n_layer u32 digest u32 CRC32C(the 12 bytes before)
 * digest = CRC32C chained over the header CRC and each layer CRC (4 LE bytes each).
 */
#include "kvc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "kernels.h"
#include "kvcodec.h"
#include "quant.h"

#ifndef KVBLEND_VERSION
#define KVBLEND_VERSION "unknown"
#endif

#define FIXED_SIZE 144      /* the header fields of minor 0 before the arrays */
#define REC_SIZE 16         /* record header: tag + u32 + u64 (or the end record) */
#define MAX_HEADER 0x7fffffffu
#define TAG_LAYER "LAYR"
#define TAG_END "KEND"
#define FLAG_K_ROTATED 1u
#define FLAG_SPARSE 2u

#define LITTLE_ENDIAN_HOST (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

/* Zero bytes from offset off to the next record start (16 bytes before a boundary). */
static size_t pad_to_record(uint64_t off)
{
	return (size_t)((KVC_ALIGN - REC_SIZE - off % KVC_ALIGN + KVC_ALIGN) % KVC_ALIGN);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void putf32(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, 4); put32(p, u); }

/* Chain a 32-bit value (as 4 LE bytes) into the digest. */
static uint32_t digest_add(uint32_t digest, uint32_t crc)
{
	uint8_t b[4];
	put32(b, crc);
	return crc32c(digest, b, 4);
}

/* ---- header helpers ---- */

void kvc_header_init(struct kvc_header *h)
{
	memset(h, 0, sizeof *h);
	h->major = KVC_MAJOR;
	h->minor = KVC_MINOR;
	h->dtype = KVC_F16;
	h->k_rotated = true;
	h->rope_base = 10000;
	h->rope_factor = 1;
	h->tool = (char *)"kvblend";
	h->version = (char *)KVBLEND_VERSION;
}

/* ---- provenance ---- */

/* The long option arg (after "--", up to '=' or its end, len bytes) names: the
 * exact match, else the only one it abbreviates, else NULL. */
static const struct option *long_option(const struct option *lo, const char *arg, size_t len)
{
	const struct option *found = NULL;
	for (; lo && lo->name; lo++) {
		if (strncmp(lo->name, arg, len) != 0)
			continue;
		if (lo->name[len] == '\0')
			return lo;
		if (found)
			return NULL; /* ambiguous */
		found = lo;
	}
	return found;
}

/* Where walk_options puts the names: counting only when names is NULL. */
struct names_out {
	char **names; /* [n], or NULL */
	char *buf;    /* their bytes */
	int n;
	size_t bytes;
};

static void put_name(struct names_out *o, const char *pre, const char *s, size_t len)
{
	size_t lp = strlen(pre);
	if (o->names) {
		char *d = o->names[o->n] = o->buf + o->bytes;
		memcpy(d, pre, lp);
		memcpy(d + lp, s, len);
		d[lp + len] = '\0';
	}
	o->n++;
	o->bytes += lp + len + 1;
}

/* Each option name of argv[1..argc) into o, as kvc_option_names says. */
static void walk_options(int argc, char *const argv[], const char *optstring, const struct option *longopts,
			 struct names_out *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (a[0] != '-' || a[1] == '\0')
			continue; /* an operand */
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			const struct option *lo = long_option(longopts, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
			if (!lo)
				continue;
			put_name(o, "--", lo->name, strlen(lo->name));
			if (lo->has_arg == required_argument && !eq)
				i++; /* its value is the next word */
			continue;
		}
		for (const char *c = a + 1; *c; c++) {
			const char *spec = *c == ':' ? NULL : strchr(optstring, *c);
			if (!spec)
				continue;
			put_name(o, "-", c, 1);
			if (spec[1] == ':') { /* a value: the rest of the word, or (required) the next word */
				if (c[1] == '\0' && spec[2] != ':')
					i++;
				break;
			}
		}
	}
}

int kvc_option_names(int argc, char *const argv[], const char *optstring, const struct option *longopts,
		     char ***names, int *n)
{
	struct names_out count = { 0 };
	walk_options(argc, argv, optstring, longopts, &count);
	struct names_out o = { .names = kb_malloc((size_t)count.n * sizeof(char *) + count.bytes + 1) };
	*names = o.names, *n = 0;
	if (!o.names)
		return KB_ERR_NOMEM;
	o.buf = (char *)(o.names + count.n);
	walk_options(argc, argv, optstring, longopts, &o);
	*n = o.n;
	return KB_OK;
}

int kvc_option_names_set(char ***names, int *n, const char *option, const char *value)
{
	size_t lo = strlen(option), bytes = 0;
	int at = *n; /* the entry "--option" is replaced, else one is added */
	for (int i = 0; i < *n; i++) {
		if (at == *n && !strncmp((*names)[i], "--", 2) && !strcmp((*names)[i] + 2, option))
			at = i;
		else
			bytes += strlen((*names)[i]) + 1;
	}
	int m = at == *n ? *n + 1 : *n;
	char **out = kb_malloc((size_t)m * sizeof(char *) + bytes + 2 + lo + 1 + strlen(value) + 1);
	if (!out)
		return KB_ERR_NOMEM;
	char *buf = (char *)(out + m);
	for (int i = 0; i < m; i++) {
		out[i] = buf;
		if (i == at)
			buf += sprintf(buf, "--%s=%s", option, value) + 1;
		else
			buf = stpcpy(buf, (*names)[i]) + 1;
	}
	free(*names);
	*names = out, *n = m;
	return KB_OK;
}

void kvc_header_free(struct kvc_header *h)
{
	if (!h)
		return;
	free(h->tokens);
	free(h->pos);
	free(h->logits);
	free(h->layer_rows);
	free(h->keep);
	free(h->tool);
	free(h->version);
	if (h->argv)
		for (int i = 0; i < h->argc; i++)
			free(h->argv[i]);
	free(h->argv);
	memset(h, 0, sizeof *h);
}

/* Entries of keep[] of a sparse header: n_kv_head * sum(layer_rows). */
static size_t keep_count(const struct kvc_header *h)
{
	size_t rows = 0;
	for (int l = 0; l < h->n_layer; l++)
		rows += (size_t)h->layer_rows[l];
	return rows * (size_t)h->n_kv_head;
}

int kvc_layer_rows(const struct kvc_header *h, int l)
{
	return h->layer_rows ? h->layer_rows[l] : h->n_tokens;
}

const int32_t *kvc_keep(const struct kvc_header *h, int l, int head)
{
	if (!h->layer_rows)
		return NULL;
	size_t off = 0;
	for (int i = 0; i < l; i++)
		off += (size_t)h->layer_rows[i];
	return h->keep + (off * (size_t)h->n_kv_head + (size_t)head * (size_t)h->layer_rows[l]);
}

static char *dup_str(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	char *d = kb_malloc(n + 1);
	if (d) {
		if (n)
			memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static void *dup_mem(const void *p, size_t count, size_t size)
{
	void *d = kb_calloc(count, size);
	if (d && count && p)
		memcpy(d, p, count * size);
	return d;
}

int kvc_header_copy(struct kvc_header *dst, const struct kvc_header *src)
{
	struct kvc_header h = *src;
	h.tokens = dup_mem(src->tokens, (size_t)src->n_tokens, sizeof(int32_t));
	h.pos = dup_mem(src->pos, (size_t)src->n_tokens, sizeof(int32_t));
	h.logits = src->logits && src->n_logits > 0 ? dup_mem(src->logits, (size_t)src->n_logits, sizeof(float)) : NULL;
	size_t n_keep = kvc_is_sparse(src) ? keep_count(src) : 0;
	h.layer_rows = kvc_is_sparse(src) ? dup_mem(src->layer_rows, (size_t)src->n_layer, sizeof(int32_t)) : NULL;
	h.keep = kvc_is_sparse(src) ? dup_mem(src->keep, n_keep, sizeof(int32_t)) : NULL;
	h.tool = dup_str(src->tool);
	h.version = dup_str(src->version);
	h.argv = src->argc > 0 ? kb_calloc((size_t)src->argc, sizeof(char *)) : NULL;
	bool bad = !h.tokens || !h.pos || (src->logits && src->n_logits > 0 && !h.logits) || !h.tool ||
		   (kvc_is_sparse(src) && (!h.layer_rows || !h.keep)) ||
		   !h.version || (src->argc > 0 && !h.argv);
	for (int i = 0; h.argv && i < src->argc; i++)
		if (!(h.argv[i] = dup_str(src->argv ? src->argv[i] : NULL)))
			bad = true;
	if (bad) {
		if (!h.argv)
			h.argc = 0;
		kvc_header_free(&h);
		return kb_fail(KB_ERR_NOMEM, "out of memory copying a kvc header");
	}
	*dst = h;
	return KB_OK;
}

static const char *const dtype_names[KVC_DTYPE_COUNT] = {
	[KVC_F32] = "f32", [KVC_F16] = "f16", [KVC_BF16] = "bf16", [KVC_Q8_0] = "q8_0",
	[KVC_KV8] = "kv8", [KVC_KV4] = "kv4", [KVC_KV3] = "kv3", [KVC_KV2] = "kv2",
};

int kvc_codec_bits(int dtype)
{
	switch (dtype) {
	case KVC_KV8: return 8;
	case KVC_KV4: return 4;
	case KVC_KV3: return 3;
	case KVC_KV2: return 2;
	default: return 0;
	}
}

const char *kvc_dtype_name(int dtype)
{
	return dtype >= 0 && dtype < KVC_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

int kvc_dtype_from_name(const char *name)
{
	for (int i = 0; i < KVC_DTYPE_COUNT; i++)
		if (strcasecmp(name, dtype_names[i]) == 0)
			return i;
	return -1;
}

size_t kvc_row_bytes(int dtype, size_t kv_dim)
{
	switch (dtype) {
	case KVC_F32: return kv_dim * 4;
	case KVC_F16:
	case KVC_BF16: return kv_dim * 2;
	case KVC_Q8_0: return kv_dim % QK8_0 ? 0 : kv_dim / QK8_0 * sizeof(block_q8_0);
	default: return 0;
	}
}

/* Bytes of layer l's payload (K and V); 0 when the header's dtype does not fit
 * or is compressed (its size is in each layer record). */
static uint64_t payload_bytes(const struct kvc_header *h, int l)
{
	size_t row = kvc_row_bytes(h->dtype, (size_t)h->n_kv_head * (size_t)h->head_dim);
	return 2 * (uint64_t)kvc_layer_rows(h, l) * row;
}

/* Fill payload_bytes (the largest layer's) and payload_total of h. */
static void payload_sizes(struct kvc_header *h)
{
	h->payload_bytes = h->payload_total = 0;
	for (int l = 0; l < h->n_layer; l++) {
		uint64_t b = payload_bytes(h, l);
		h->payload_bytes = b > h->payload_bytes ? b : h->payload_bytes;
		h->payload_total += b;
	}
}

/* The sparse fields of h: one message naming what is wrong, or NULL. */
static const char *sparse_problem(const struct kvc_header *h, char *msg, size_t size)
{
	for (int l = 0; l < h->n_layer; l++) {
		int rows = h->layer_rows[l];
		if (rows < 1 || rows > h->n_tokens) {
			snprintf(msg, size, "layer %d keeps %d rows, not 1..%d", l, rows, h->n_tokens);
			return msg;
		}
		for (int head = 0; head < h->n_kv_head; head++) {
			const int32_t *k = kvc_keep(h, l, head);
			for (int j = 0; j < rows; j++)
				if (k[j] < 0 || k[j] >= h->n_tokens || (j > 0 && k[j] <= k[j - 1])) {
					snprintf(msg, size, "layer %d, kv head %d: kept token index %d is %s", l, head,
						 (int)k[j], k[j] < 0 || k[j] >= h->n_tokens ? "out of range" : "not ascending");
					return msg;
				}
		}
	}
	return NULL;
}

int kvc_header_check(const struct kvc_header *h)
{
	if (h->n_layer < 1 || h->n_layer > KVC_MAX_LAYER)
		return kb_fail(KB_ERR_ARG, "kvc: n_layer %d is out of range [1, %d]", h->n_layer, KVC_MAX_LAYER);
	if (h->n_kv_head < 1 || h->n_kv_head > KVC_MAX_HEAD || h->head_dim < 1 || h->head_dim > KVC_MAX_HEAD)
		return kb_fail(KB_ERR_ARG, "kvc: n_kv_head %d, head_dim %d out of range [1, %d]",
			       h->n_kv_head, h->head_dim, KVC_MAX_HEAD);
	long kv_dim = (long)h->n_kv_head * h->head_dim;
	if (kv_dim > KVC_MAX_KV_DIM)
		return kb_fail(KB_ERR_ARG, "kvc: kv_dim %ld (n_kv_head x head_dim) exceeds %d", kv_dim, KVC_MAX_KV_DIM);
	if ((int)h->dtype < 0 || h->dtype >= KVC_DTYPE_COUNT)
		return kb_fail(KB_ERR_ARG, "kvc: unknown dtype %d", (int)h->dtype);
	if (h->dtype == KVC_Q8_0 && kv_dim % QK8_0)
		return kb_fail(KB_ERR_ARG, "kvc: q8_0 needs kv_dim (n_kv_head x head_dim) a multiple of %d, got %ld",
			       QK8_0, kv_dim);
	if (h->n_rot < 0 || h->n_rot > h->head_dim)
		return kb_fail(KB_ERR_ARG, "kvc: n_rot %d is out of range [0, head_dim %d]", h->n_rot, h->head_dim);
	if (h->n_tokens < 0 || h->n_tokens > KVC_MAX_TOKENS)
		return kb_fail(KB_ERR_ARG, "kvc: n_tokens %d is out of range [0, %d]", h->n_tokens, KVC_MAX_TOKENS);
	if (h->n_tokens > 0 && (!h->tokens || !h->pos))
		return kb_fail(KB_ERR_ARG, "kvc: %d tokens but no token ids or positions", h->n_tokens);
	if (h->n_logits < 0 || h->n_logits > KVC_MAX_LOGITS)
		return kb_fail(KB_ERR_ARG, "kvc: n_logits %d is out of range [0, %d]", h->n_logits, KVC_MAX_LOGITS);
	if (h->n_logits > 0 && !h->logits)
		return kb_fail(KB_ERR_ARG, "kvc: n_logits %d but no logits", h->n_logits);
	if (h->argc < 0 || (h->argc > 0 && !h->argv))
		return kb_fail(KB_ERR_ARG, "kvc: argc %d but no argv", h->argc);
	if (!h->layer_rows != !h->keep)
		return kb_fail(KB_ERR_ARG, "kvc: a sparse cache needs both layer_rows and keep");
	char msg[160];
	if (h->layer_rows && sparse_problem(h, msg, sizeof msg))
		return kb_fail(KB_ERR_ARG, "kvc: %s", msg);
	if (h->layer_rows && keep_count(h) > (size_t)KVC_MAX_TOKENS * 4)
		return kb_fail(KB_ERR_ARG, "kvc: too many kept entries (%zu)", keep_count(h));
	size_t total = 0;
	for (int i = 0; i < h->argc; i++) {
		if (!h->argv[i])
			return kb_fail(KB_ERR_ARG, "kvc: argv[%d] is NULL", i);
		total += strlen(h->argv[i]) + 1;
		if (total > KVC_MAX_STRING)
			return kb_fail(KB_ERR_ARG, "kvc: argv is longer than %d bytes", KVC_MAX_STRING);
	}
	if ((h->tool && strlen(h->tool) > KVC_MAX_STRING) || (h->version && strlen(h->version) > KVC_MAX_STRING))
		return kb_fail(KB_ERR_ARG, "kvc: tool or version is longer than %d bytes", KVC_MAX_STRING);
	return KB_OK;
}

/* First 4 bytes of a fingerprint as 8 hex digits and an ellipsis. */
static void fp_short(const uint8_t *fp, char out[16])
{
	hash_hex(fp, 4, out);
	strcpy(out + 8, "\xe2\x80\xa6");
}

int kvc_check_model(const struct kvc_header *h, const uint8_t model_fp[32], const uint8_t tok_fp[32],
		    int n_layer, int n_kv_head, int head_dim)
{
	char a[16], b[16];
	if (model_fp && memcmp(h->model_fp, model_fp, 32) != 0) {
		fp_short(h->model_fp, a);
		fp_short(model_fp, b);
		return kb_fail(KB_ERR_MISMATCH, "cache was made with another model (fingerprint %s vs %s)", a, b);
	}
	if (tok_fp && memcmp(h->tok_fp, tok_fp, 32) != 0) {
		fp_short(h->tok_fp, a);
		fp_short(tok_fp, b);
		return kb_fail(KB_ERR_MISMATCH, "cache was made with another tokenizer (fingerprint %s vs %s)", a, b);
	}
	if (h->n_layer != n_layer || h->n_kv_head != n_kv_head || h->head_dim != head_dim)
		return kb_fail(KB_ERR_MISMATCH,
			       "cache shape %d layers x %d kv heads x %d does not match the model's %d x %d x %d",
			       h->n_layer, h->n_kv_head, h->head_dim, n_layer, n_kv_head, head_dim);
	return KB_OK;
}

bool kvc_sniff(const void *buf, size_t n)
{
	return n >= KVC_MAGIC_LEN && memcmp(buf, KVC_MAGIC, KVC_MAGIC_LEN) == 0;
}

/* ---- row conversions (explicit little-endian on both sides) ---- */

static void encode_row(int dtype, const float *src, size_t kv_dim, uint8_t *dst)
{
	switch (dtype) {
	case KVC_F32:
		if (LITTLE_ENDIAN_HOST)
			memcpy(dst, src, kv_dim * 4);
		else
			for (size_t i = 0; i < kv_dim; i++)
				putf32(dst + 4 * i, src[i]);
		break;
	case KVC_F16:
		for (size_t i = 0; i < kv_dim; i++)
			put16(dst + 2 * i, fp32_to_fp16(src[i]));
		break;
	case KVC_BF16:
		for (size_t i = 0; i < kv_dim; i++)
			put16(dst + 2 * i, fp32_to_bf16(src[i]));
		break;
	case KVC_Q8_0: {
		const struct qtype_traits *tr = qtype_traits(QTYPE_Q8_0);
		for (size_t b = 0; b < kv_dim / QK8_0; b++, dst += sizeof(block_q8_0)) {
			block_q8_0 blk;
			tr->from_float(src + b * QK8_0, &blk, QK8_0);
			put16(dst, blk.d);
			memcpy(dst + 2, blk.qs, QK8_0);
		}
		break;
	}
	default:
		ASSERT(!"unknown dtype");
	}
}

/* fp16 -> fp32, bit-exact with fp16_to_fp32 (quant.c) for every input, four at
 * a time with GCC vector extensions (SSE2, NEON; loading a cache is mostly this
 * loop). The exponent and mantissa are moved into place and rebiased; Inf/NaN
 * get the top exponent (NaN made quiet, as F16C does); subnormals are
 * renormalized by a subtraction of normal numbers (exact, and no slow
 * subnormal arithmetic). */
typedef uint32_t v4u32 __attribute__((vector_size(16)));
typedef int32_t v4i32 __attribute__((vector_size(16)));
typedef float v4f32 __attribute__((vector_size(16)));

static inline v4u32 f16x4_to_f32_bits(v4u32 h)
{
	const v4u32 exp_mask = (v4u32){ 0 } + (0x7c00u << 13);
	v4u32 o = (h & 0x7fff) << 13;
	v4u32 exp = o & exp_mask;
	o += (127 - 15) << 23;
	v4u32 infnan = (v4u32)(v4i32)(exp == exp_mask), sub = (v4u32)(v4i32)(exp == 0);
	v4u32 quiet = (v4u32)(v4i32)((h & 0x3ff) != 0) & 0x400000;
	o += infnan & ((128 - 16) << 23);
	o |= infnan & quiet;
	/* subnormal: 2^-14 (1 + m/1024) - 2^-14 = m 2^-24 */
	v4f32 renorm = (v4f32)(o + (1u << 23)) - (v4f32)((v4u32){ 0 } + (113u << 23));
	o = (o & ~sub) | ((v4u32)renorm & sub);
	return o | (h & 0x8000) << 16;
}

typedef uint16_t v4u16 __attribute__((vector_size(8)));

/* Four little-endian u16 at p, widened. */
static inline v4u32 load4_le16(const uint8_t *p)
{
	if (LITTLE_ENDIAN_HOST) {
		v4u16 h;
		memcpy(&h, p, 8);
		return __builtin_convertvector(h, v4u32);
	}
	return (v4u32){ kb_le16(p), kb_le16(p + 2), kb_le16(p + 4), kb_le16(p + 6) };
}

static void f16_row_to_f32(const uint8_t *src, size_t n, float *dst)
{
	if (LITTLE_ENDIAN_HOST && kern_f16_to_f32(dst, src, (int64_t)n))
		return; /* F16C */
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v4u32 u = f16x4_to_f32_bits(load4_le16(src + 2 * i));
		memcpy(dst + i, &u, 16);
	}
	for (; i < n; i++) {
		v4u32 h = { kb_le16(src + 2 * i) };
		v4u32 u = f16x4_to_f32_bits(h);
		memcpy(dst + i, &u, 4);
	}
}

static void bf16_row_to_f32(const uint8_t *src, size_t n, float *dst)
{
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v4u32 u = load4_le16(src + 2 * i) << 16;
		memcpy(dst + i, &u, 16);
	}
	for (; i < n; i++)
		dst[i] = bf16_to_fp32(kb_le16(src + 2 * i));
}

static void decode_row(int dtype, const uint8_t *src, size_t kv_dim, float *dst)
{
	switch (dtype) {
	case KVC_F32:
		if (LITTLE_ENDIAN_HOST)
			memcpy(dst, src, kv_dim * 4);
		else
			for (size_t i = 0; i < kv_dim; i++)
				dst[i] = kb_lef32(src + 4 * i);
		break;
	case KVC_F16:
		f16_row_to_f32(src, kv_dim, dst);
		break;
	case KVC_BF16:
		bf16_row_to_f32(src, kv_dim, dst);
		break;
	case KVC_Q8_0:
		for (size_t b = 0; b < kv_dim / QK8_0; b++, src += sizeof(block_q8_0), dst += QK8_0) {
			float d = fp16_to_fp32(kb_le16(src));
			const int8_t *qs = (const int8_t *)(src + 2);
			for (int j = 0; j < QK8_0; j++)
				dst[j] = d * qs[j];
		}
		break;
	default:
		ASSERT(!"unknown dtype");
	}
}

void kvc_decode_rows(int dtype, const void *src, size_t n, size_t kv_dim, float *dst, size_t row_stride)
{
	size_t rb = kvc_row_bytes(dtype, kv_dim);
	ASSERT(rb > 0 && row_stride >= kv_dim);
	const uint8_t *s = src;
	for (size_t t = 0; t < n; t++)
		decode_row(dtype, s + t * rb, kv_dim, dst + t * row_stride);
}

/* ---- writer ---- */

#define WBUF_SIZE (1u << 20)

struct kvc_writer {
	int fd;
	int n_layer, dtype;
	int32_t *rows;        /* [n_layer] rows of each layer */
	size_t kv_dim, row_bytes;
	int bits;             /* compressed dtype: its bits (else 0) */
	uint8_t *zbuf;        /* compressed: one layer's payload */
	size_t zcap;
	uint64_t off;         /* bytes written (buffered included) */
	int next_layer;
	bool finished;
	uint32_t digest;
	uint8_t *buf;         /* owned, [WBUF_SIZE] */
	size_t n;             /* bytes in buf */
};

static int w_flush(struct kvc_writer *w)
{
	int rc = kb_write_all(w->fd, w->buf, w->n);
	w->n = 0;
	return rc;
}

/* Append bytes (NULL: zeros) to the buffer, flushing as it fills. */
static int w_put(struct kvc_writer *w, const void *p, size_t n)
{
	const uint8_t *s = p;
	while (n > 0) {
		if (w->n == WBUF_SIZE) {
			int rc = w_flush(w);
			if (rc)
				return rc;
		}
		size_t k = WBUF_SIZE - w->n < n ? WBUF_SIZE - w->n : n;
		if (s) {
			memcpy(w->buf + w->n, s, k);
			s += k;
		} else {
			memset(w->buf + w->n, 0, k);
		}
		w->n += k;
		w->off += k;
		n -= k;
	}
	return KB_OK;
}

/* The header bytes of h (through its CRC) into a malloc()ed buffer. */
static int build_header(const struct kvc_header *h, uint8_t **out, size_t *out_len)
{
	size_t tool_len = h->tool ? strlen(h->tool) : 0, ver_len = h->version ? strlen(h->version) : 0;
	size_t argv_len = 0;
	for (int i = 0; i < h->argc; i++)
		argv_len += strlen(h->argv[i]) + 1;
	/* bounded by kvc_header_check: well below 2^31 */
	size_t n_keep = kvc_is_sparse(h) ? keep_count(h) : 0;
	size_t sparse_len = kvc_is_sparse(h) ? 4 * ((size_t)h->n_layer + n_keep) : 0;
	size_t size = FIXED_SIZE + 8 * (size_t)h->n_tokens + 4 * (size_t)h->n_logits + tool_len + ver_len +
		      argv_len + sparse_len + 4;
	uint8_t *p = kb_malloc(size);
	if (!p)
		return KB_ERR_NOMEM;
	memset(p, 0, FIXED_SIZE);
	memcpy(p, KVC_MAGIC, 4);
	put16(p + 4, KVC_MAJOR);
	put16(p + 6, KVC_MINOR);
	put32(p + 8, (uint32_t)size);
	put32(p + 12, (h->k_rotated ? FLAG_K_ROTATED : 0) | (kvc_is_sparse(h) ? FLAG_SPARSE : 0));
	memcpy(p + 16, h->model_fp, 32);
	memcpy(p + 48, h->tok_fp, 32);
	put32(p + 80, (uint32_t)h->n_layer);
	put32(p + 84, (uint32_t)h->n_kv_head);
	put32(p + 88, (uint32_t)h->head_dim);
	put32(p + 92, (uint32_t)h->dtype);
	put32(p + 96, (uint32_t)h->rope_mode);
	put32(p + 100, (uint32_t)h->n_rot);
	putf32(p + 104, h->rope_base);
	put32(p + 108, (uint32_t)h->rope_scaling);
	putf32(p + 112, h->rope_factor);
	put32(p + 116, (uint32_t)h->rope_orig_ctx);
	put32(p + 120, (uint32_t)h->n_tokens);
	put32(p + 124, (uint32_t)h->n_logits);
	put32(p + 128, (uint32_t)tool_len);
	put32(p + 132, (uint32_t)ver_len);
	put32(p + 136, (uint32_t)h->argc);
	put32(p + 140, (uint32_t)argv_len);
	uint8_t *q = p + FIXED_SIZE;
	for (int i = 0; i < h->n_tokens; i++, q += 4)
		put32(q, (uint32_t)h->tokens[i]);
	for (int i = 0; i < h->n_tokens; i++, q += 4)
		put32(q, (uint32_t)h->pos[i]);
	for (int i = 0; i < h->n_logits; i++, q += 4)
		putf32(q, h->logits[i]);
	if (tool_len)
		memcpy(q, h->tool, tool_len);
	q += tool_len;
	if (ver_len)
		memcpy(q, h->version, ver_len);
	q += ver_len;
	for (int i = 0; i < h->argc; i++) {
		size_t n = strlen(h->argv[i]) + 1;
		memcpy(q, h->argv[i], n);
		q += n;
	}
	if (kvc_is_sparse(h)) {
		for (int l = 0; l < h->n_layer; l++, q += 4)
			put32(q, (uint32_t)h->layer_rows[l]);
		for (size_t i = 0; i < n_keep; i++, q += 4)
			put32(q, (uint32_t)h->keep[i]);
	}
	put32(q, crc32c(0, p, size - 4));
	*out = p;
	*out_len = size;
	return KB_OK;
}

int kvc_writer_init(struct kvc_writer **out, int fd, const struct kvc_header *h)
{
	*out = NULL;
	int rc = kvc_header_check(h);
	if (rc)
		return rc;
	struct kvc_writer *w = kb_calloc(1, sizeof *w);
	if (!w)
		return KB_ERR_NOMEM;
	w->fd = fd;
	w->n_layer = h->n_layer;
	w->dtype = h->dtype;
	w->kv_dim = (size_t)h->n_kv_head * (size_t)h->head_dim;
	w->row_bytes = kvc_row_bytes(h->dtype, w->kv_dim);
	uint8_t *hdr = NULL;
	size_t hdr_len;
	if (!(w->rows = kb_calloc((size_t)h->n_layer, sizeof *w->rows)) || !(w->buf = kb_malloc(WBUF_SIZE)) ||
	    (rc = build_header(h, &hdr, &hdr_len))) {
		rc = KB_ERR_NOMEM;
		goto fail;
	}
	int max_rows = 0;
	for (int l = 0; l < h->n_layer; l++) {
		w->rows[l] = kvc_layer_rows(h, l);
		max_rows = w->rows[l] > max_rows ? w->rows[l] : max_rows;
	}
	if ((w->bits = kvc_codec_bits(h->dtype))) {
		w->zcap = kvcodec_bound(w->bits, max_rows, (int)w->kv_dim);
		if (!(w->zbuf = kb_malloc(w->zcap))) {
			rc = KB_ERR_NOMEM;
			goto fail;
		}
	}
	w->digest = digest_add(0, kb_le32(hdr + hdr_len - 4));
	if ((rc = w_put(w, hdr, hdr_len)) || (rc = w_put(w, NULL, pad_to_record(w->off))) || (rc = w_flush(w)))
		goto fail;
	free(hdr);
	*out = w;
	return KB_OK;
fail:
	free(hdr);
	kvc_writer_free(w);
	return rc;
}

int kvc_writer_layer(struct kvc_writer *w, int layer, const float *k, const float *v, size_t row_stride)
{
	if (w->finished || layer != w->next_layer || layer >= w->n_layer)
		return kb_fail(KB_ERR_ARG, "kvc: layer %d written out of order (expected %d of %d)", layer,
			       w->next_layer, w->n_layer);
	const int rows = w->rows[layer];
	if (row_stride < w->kv_dim || (rows > 0 && (!k || !v)))
		return kb_fail(KB_ERR_ARG, "kvc: layer %d: row stride %zu is less than kv_dim %zu (or no data)",
			       layer, row_stride, w->kv_dim);
	uint8_t rec[REC_SIZE];
	memcpy(rec, TAG_LAYER, 4);
	put32(rec + 4, (uint32_t)layer);
	size_t zlen = 0;
	int rc;
	if (w->bits && (rc = kvcodec_encode(w->bits, k, v, row_stride, rows, (int)w->kv_dim, w->zbuf, w->zcap, &zlen)))
		return rc;
	put64(rec + 8, w->bits ? (uint64_t)zlen : 2 * (uint64_t)rows * w->row_bytes);
	if ((rc = w_put(w, NULL, pad_to_record(w->off))) || (rc = w_put(w, rec, REC_SIZE)))
		return rc;
	uint32_t crc = 0;
	if (w->bits) {
		crc = crc32c(0, w->zbuf, zlen);
		if ((rc = w_put(w, w->zbuf, zlen)))
			return rc;
	}
	for (int half = 0; half < 2 && !w->bits; half++) {
		const float *src = half ? v : k;
		for (int t = 0; t < rows; t++) {
			if (WBUF_SIZE - w->n < w->row_bytes && (rc = w_flush(w)))
				return rc;
			uint8_t *dst = w->buf + w->n;
			encode_row(w->dtype, src + (size_t)t * row_stride, w->kv_dim, dst);
			crc = crc32c(crc, dst, w->row_bytes);
			w->n += w->row_bytes;
			w->off += w->row_bytes;
		}
	}
	uint8_t c[4];
	put32(c, crc);
	if ((rc = w_put(w, c, 4)) || (rc = w_flush(w)))
		return rc;
	w->digest = digest_add(w->digest, crc);
	w->next_layer++;
	return KB_OK;
}

int kvc_writer_finish(struct kvc_writer *w)
{
	if (w->finished)
		return KB_OK;
	if (w->next_layer != w->n_layer)
		return kb_fail(KB_ERR_ARG, "kvc: finished after %d of %d layers", w->next_layer, w->n_layer);
	uint8_t rec[REC_SIZE];
	memcpy(rec, TAG_END, 4);
	put32(rec + 4, (uint32_t)w->n_layer);
	put32(rec + 8, w->digest);
	put32(rec + 12, crc32c(0, rec, 12));
	int rc;
	if ((rc = w_put(w, NULL, pad_to_record(w->off))) || (rc = w_put(w, rec, REC_SIZE)) || (rc = w_flush(w)))
		return rc;
	ASSERT(w->off % KVC_ALIGN == 0);
	w->finished = true;
	return KB_OK;
}

uint64_t kvc_writer_bytes(const struct kvc_writer *w)
{
	return w->off;
}

void kvc_writer_free(struct kvc_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w->rows);
	free(w->zbuf);
	free(w);
}

/* ---- whole files, atomically ---- */

struct strided {
	const float *k, *v;
	size_t layer_stride, row_stride;
};

static int strided_layer(void *ctx, int l, const float **k, const float **v, size_t *row_stride)
{
	const struct strided *s = ctx;
	*k = s->k + (size_t)l * s->layer_stride;
	*v = s->v + (size_t)l * s->layer_stride;
	*row_stride = s->row_stride;
	return KB_OK;
}

int kvc_write_file(const char *path, const struct kvc_header *h, const float *k, const float *v,
		   size_t layer_stride, size_t row_stride)
{
	struct strided s = { k, v, layer_stride, row_stride };
	return kvc_write_file_cb(path, h, strided_layer, &s);
}

int kvc_write_file_cb(const char *path, const struct kvc_header *h, kvc_layer_fn fn, void *ctx)
{
	bool to_stdout = strcmp(path, "-") == 0;
	const char *shown = to_stdout ? "<stdout>" : path;
	struct stat sb;
	/* stdout, a device or a FIFO (/dev/null, a named pipe) is written in place;
	 * a regular file (or a new one) atomically, through a temporary file */
	bool in_place = to_stdout || (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode));
	struct kvc_writer *w = NULL;
	char *tmp = NULL;
	int fd = -1, rc = kvc_header_check(h);
	if (rc)
		return rc;
	if (to_stdout)
		fd = STDOUT_FILENO;
	else if (in_place && (fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	else if (!in_place && (fd = kb_open_temp(path, &tmp)) < 0)
		return KB_ERR_IO;
	if (in_place && isatty(fd)) {
		rc = kb_fail(KB_ERR_ARG, "refusing to write a binary KV cache to a terminal");
		goto out;
	}
	if ((rc = kvc_writer_init(&w, fd, h)))
		goto out;
	for (int l = 0; l < h->n_layer; l++) {
		const float *k, *v;
		size_t stride;
		if ((rc = fn(ctx, l, &k, &v, &stride)) || (rc = kvc_writer_layer(w, l, k, v, stride)))
			goto out;
	}
	if ((rc = kvc_writer_finish(w)) || in_place)
		goto out;
	int bad = fsync(fd) < 0;
	bad |= close(fd) < 0;
	fd = -1;
	if (bad || rename(tmp, path) < 0) {
		rc = kb_fail(KB_ERR_IO, "'%s': %s", shown, strerror(errno));
		goto out;
	}
	kb_fsync_parent(path);
out:
	if (rc == KB_ERR_IO && strncmp(kb_error(), "write:", 6) == 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "%s", kb_error());
		kb_fail(KB_ERR_IO, "'%s': %s", shown, msg);
	}
	kvc_writer_free(w);
	if (fd >= 0 && !to_stdout)
		close(fd);
	if (tmp && rc)
		unlink(tmp);
	kb_temp_free(tmp);
	return rc;
}

/* ---- reader ---- */

enum rstate { R_START, R_LAYERS, R_DONE, R_ERROR };

struct kvc_reader {
	char *name;            /* owned, for messages */
	int fd;                /* -1 for memory */
	bool own_fd;
	bool mapped;           /* base is an mmap of the file */
	const uint8_t *base;   /* memory or mapping: the whole stream */
	uint8_t *buf;          /* fd mode: owned, KVC_ALIGN-aligned; buf index = stream offset (mod KVC_ALIGN) */
	size_t cap;
	size_t pos, len;       /* unconsumed bytes are [pos, len) of base or buf */
	bool eof;              /* fd mode: read() returned 0 */
	uint64_t off;          /* stream offset of pos */
	enum rstate state;
	int n_cache;           /* caches started, for messages */
	struct kvc_header h;   /* owned */
	size_t kv_dim, row_bytes;
	int next_layer;
	size_t last_len;       /* payload bytes of the layer last returned */
	uint64_t payload_read; /* payload bytes of the current cache's layers read */
	uint32_t digest;
	int err;               /* sticky error status */
	char errmsg[300];
};

static const uint8_t *cur(const struct kvc_reader *r)
{
	return (r->base ? r->base : r->buf) + r->pos;
}

static void consume(struct kvc_reader *r, size_t n)
{
	ASSERT(n <= r->len - r->pos);
	r->pos += n;
	r->off += n;
}

/* Record an error naming the stream (and the cache, from the second on); sticky. */
__attribute__((format(printf, 3, 4))) static int rfail(struct kvc_reader *r, int status, const char *fmt, ...)
{
	char msg[256], where[32] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->n_cache > 1)
		snprintf(where, sizeof where, "cache %d: ", r->n_cache);
	kb_fail(status, "'%s': %s%s", r->name, where, msg);
	snprintf(r->errmsg, sizeof r->errmsg, "%s", kb_error());
	r->err = status;
	r->state = R_ERROR;
	return status;
}

static int sticky(const struct kvc_reader *r)
{
	return kb_fail(r->err, "%s", r->errmsg);
}

/* Make n unconsumed bytes available at cur(). KB_OK; KB_EOF when the stream
 * ends first (*have = the bytes there are); KB_ERR_IO / KB_ERR_NOMEM (recorded
 * with rfail). The buffer grows only as data arrives (at most twice what came). */
static int need(struct kvc_reader *r, size_t n, size_t *have)
{
	while (r->len - r->pos < n) {
		if (r->base || r->eof) {
			*have = r->len - r->pos;
			return KB_EOF;
		}
		if (r->len == r->cap) {
			/* drop consumed bytes, keeping buffer index = offset (mod KVC_ALIGN) */
			size_t shift = r->pos & ~(size_t)(KVC_ALIGN - 1);
			if (shift) {
				memmove(r->buf, r->buf + shift, r->len - shift);
				r->pos -= shift;
				r->len -= shift;
			}
		}
		if (r->len == r->cap) {
			/* full of unconsumed bytes: double (so memory stays within twice what came) */
			size_t ncap;
			if (kb_mul_size(r->cap, 2, &ncap))
				return rfail(r, KB_ERR_NOMEM, "out of memory");
			uint8_t *nb = kb_aligned_alloc(KVC_ALIGN, ncap);
			if (!nb)
				return rfail(r, KB_ERR_NOMEM, "out of memory (%zu bytes)", ncap);
			memcpy(nb, r->buf, r->len);
			free(r->buf);
			r->buf = nb;
			r->cap = ncap;
		}
		ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return rfail(r, KB_ERR_IO, "read: %s", strerror(errno));
		}
		if (k == 0)
			r->eof = true;
		r->len += (size_t)k;
	}
	return KB_OK;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int reader_init(struct kvc_reader **out, const char *name)
{
	struct kvc_reader *r = kb_calloc(1, sizeof *r);
	if (!r)
		return KB_ERR_NOMEM;
	r->fd = -1;
	if (!(r->name = dup_str(name ? name : "<stdin>"))) {
		free(r);
		return KB_ERR_NOMEM;
	}
	*out = r;
	return KB_OK;
}

int kvc_reader_open_mem(struct kvc_reader **out, const void *buf, size_t len, const char *name)
{
	*out = NULL;
	int rc = reader_init(out, name);
	if (rc)
		return rc;
	(*out)->base = len ? buf : (const uint8_t *)"";
	(*out)->len = len;
	return KB_OK;
}

int kvc_reader_open_fd_prefix(struct kvc_reader **out, int fd, const void *prefix, size_t prefix_len,
			      const char *name)
{
	*out = NULL;
	struct kvc_reader *r;
	int rc = reader_init(&r, name);
	if (rc)
		return rc;
	r->fd = fd;
	struct stat sb;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size <= SIZE_MAX &&
	    lseek(fd, 0, SEEK_CUR) == (off_t)prefix_len && (uint64_t)sb.st_size >= prefix_len) {
		void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED && (prefix_len == 0 || memcmp(m, prefix, prefix_len) == 0)) {
			madvise(m, (size_t)sb.st_size, MADV_SEQUENTIAL);
			r->base = m;
			r->len = (size_t)sb.st_size;
			r->mapped = true;
			*out = r;
			return KB_OK;
		}
		if (m != MAP_FAILED)
			munmap(m, (size_t)sb.st_size);
	}
	r->cap = prefix_len > 65536 ? (prefix_len + 4095) & ~(size_t)4095 : 65536;
	if (!(r->buf = kb_aligned_alloc(KVC_ALIGN, r->cap))) {
		kvc_reader_free(r);
		return KB_ERR_NOMEM;
	}
	if (prefix_len)
		memcpy(r->buf, prefix, prefix_len);
	r->len = prefix_len;
	*out = r;
	return KB_OK;
}

int kvc_reader_open_fd(struct kvc_reader **out, int fd, const char *name)
{
	return kvc_reader_open_fd_prefix(out, fd, NULL, 0, name);
}

int kvc_reader_open_file(struct kvc_reader **out, const char *path)
{
	*out = NULL;
	if (strcmp(path, "-") == 0)
		return kvc_reader_open_fd(out, STDIN_FILENO, "<stdin>");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	int rc = kvc_reader_open_fd(out, fd, path);
	if (rc) {
		close(fd);
		return rc;
	}
	(*out)->own_fd = true;
	return KB_OK;
}

void kvc_reader_free(struct kvc_reader *r)
{
	if (!r)
		return;
	if (r->mapped)
		munmap((void *)r->base, r->len);
	if (r->own_fd)
		close(r->fd);
	free(r->buf);
	free(r->name);
	kvc_header_free(&r->h);
	free(r);
}

uint64_t kvc_reader_payload_read(const struct kvc_reader *r)
{
	return r->payload_read;
}

uint64_t kvc_reader_offset(const struct kvc_reader *r)
{
	return r->off;
}

bool kvc_reader_is_mapped(const struct kvc_reader *r)
{
	return r->base != NULL;
}

/* Copy a string field (no NUL allowed inside) into an owned C string. */
static int take_str(struct kvc_reader *r, const uint8_t *p, size_t n, const char *what, char **out)
{
	if (memchr(p, 0, n))
		return rfail(r, KB_ERR_FORMAT, "%s holds a NUL byte (corrupt header)", what);
	if (!(*out = kb_malloc(n + 1)))
		return rfail(r, KB_ERR_NOMEM, "out of memory");
	memcpy(*out, p, n);
	(*out)[n] = '\0';
	return KB_OK;
}

/* Fields of a header whose CRC matched: check them and fill r->h. p = the header. */
static int parse_header(struct kvc_reader *r, const uint8_t *p, uint32_t minor)
{
	struct kvc_header *h = &r->h;
	uint32_t n_layer = kb_le32(p + 80), n_kv_head = kb_le32(p + 84), head_dim = kb_le32(p + 88);
	uint32_t dtype = kb_le32(p + 92), n_rot = kb_le32(p + 100);
	uint32_t n_tokens = kb_le32(p + 120), n_logits = kb_le32(p + 124);
	uint32_t tool_len = kb_le32(p + 128), ver_len = kb_le32(p + 132);
	uint32_t argc = kb_le32(p + 136), argv_len = kb_le32(p + 140);

	if (n_layer < 1 || n_layer > KVC_MAX_LAYER)
		return rfail(r, KB_ERR_FORMAT, "bad header: n_layer %u is out of range [1, %d]", n_layer, KVC_MAX_LAYER);
	if (n_kv_head < 1 || n_kv_head > KVC_MAX_HEAD || head_dim < 1 || head_dim > KVC_MAX_HEAD ||
	    (uint64_t)n_kv_head * head_dim > KVC_MAX_KV_DIM)
		return rfail(r, KB_ERR_FORMAT, "bad header: %u kv heads x %u is out of range", n_kv_head, head_dim);
	if (dtype >= KVC_DTYPE_COUNT)
		return rfail(r, KB_ERR_UNSUPPORTED, "dtype %u is unknown (written by a newer kvblend?)", dtype);
	if (!kvc_codec_bits((int)dtype) && kvc_row_bytes((int)dtype, (size_t)n_kv_head * head_dim) == 0)
		return rfail(r, KB_ERR_FORMAT, "bad header: %s rows of %u elements (not a multiple of %d)",
			     dtype_names[dtype], n_kv_head * head_dim, QK8_0);
	if (n_rot > head_dim)
		return rfail(r, KB_ERR_FORMAT, "bad header: n_rot %u exceeds head_dim %u", n_rot, head_dim);
	if (n_tokens > KVC_MAX_TOKENS || n_logits > KVC_MAX_LOGITS || tool_len > KVC_MAX_STRING ||
	    ver_len > KVC_MAX_STRING || argv_len > KVC_MAX_STRING)
		return rfail(r, KB_ERR_FORMAT, "bad header: counts out of range");

	h->major = kb_le16(p + 4);
	h->minor = (int)minor;
	h->k_rotated = kb_le32(p + 12) & FLAG_K_ROTATED;
	bool sparse = kb_le32(p + 12) & FLAG_SPARSE;
	memcpy(h->model_fp, p + 16, 32);
	memcpy(h->tok_fp, p + 48, 32);
	h->n_layer = (int)n_layer;
	h->n_kv_head = (int)n_kv_head;
	h->head_dim = (int)head_dim;
	h->dtype = (enum kvc_dtype)dtype;
	h->rope_mode = (int)kb_le32(p + 96);
	h->n_rot = (int)n_rot;
	h->rope_base = kb_lef32(p + 104);
	h->rope_scaling = (int)kb_le32(p + 108);
	h->rope_factor = kb_lef32(p + 112);
	h->rope_orig_ctx = (int)kb_le32(p + 116);
	h->n_tokens = (int)n_tokens;
	h->n_logits = (int)n_logits;
	h->stream_offset = r->off;

	const uint8_t *q = p + FIXED_SIZE;
	if (!(h->tokens = kb_calloc(n_tokens, 4)) || !(h->pos = kb_calloc(n_tokens, 4)) ||
	    (n_logits && !(h->logits = kb_calloc(n_logits, 4))))
		return rfail(r, KB_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n_tokens; i++, q += 4)
		h->tokens[i] = (int32_t)kb_le32(q);
	for (uint32_t i = 0; i < n_tokens; i++, q += 4)
		h->pos[i] = (int32_t)kb_le32(q);
	for (uint32_t i = 0; i < n_logits; i++, q += 4)
		h->logits[i] = kb_lef32(q);
	int rc;
	if ((rc = take_str(r, q, tool_len, "the tool name", &h->tool)))
		return rc;
	q += tool_len;
	if ((rc = take_str(r, q, ver_len, "the version", &h->version)))
		return rc;
	q += ver_len;
	/* argv: argc NUL-terminated strings filling argv_len exactly */
	size_t nuls = 0;
	for (size_t i = 0; i < argv_len; i++)
		nuls += q[i] == 0;
	if (nuls != argc || (argv_len && q[argv_len - 1] != 0))
		return rfail(r, KB_ERR_FORMAT, "bad header: argv is not %u NUL-terminated strings", argc);
	if (argc && !(h->argv = kb_calloc(argc, sizeof(char *))))
		return rfail(r, KB_ERR_NOMEM, "out of memory");
	for (uint32_t i = 0; i < argc; i++) {
		size_t n = strlen((const char *)q);
		if (!(h->argv[i] = dup_str((const char *)q)))
			return rfail(r, KB_ERR_NOMEM, "out of memory");
		h->argc = (int)i + 1;
		q += n + 1;
	}
	if (sparse) {
		/* sizes were checked against the header size (read_header) */
		size_t rows = 0;
		for (uint32_t l = 0; l < n_layer; l++)
			rows += kb_le32(q + 4 * l);
		if (rows * n_kv_head > (size_t)KVC_MAX_TOKENS * 4)
			return rfail(r, KB_ERR_FORMAT, "bad header: too many kept entries (%zu)", rows * n_kv_head);
		if (!(h->layer_rows = kb_calloc(n_layer, 4)) || !(h->keep = kb_calloc(rows * n_kv_head + 1, 4)))
			return rfail(r, KB_ERR_NOMEM, "out of memory");
		for (uint32_t l = 0; l < n_layer; l++, q += 4)
			h->layer_rows[l] = (int32_t)kb_le32(q);
		for (size_t i = 0; i < rows * n_kv_head; i++, q += 4)
			h->keep[i] = (int32_t)kb_le32(q);
		char msg[160];
		if (sparse_problem(h, msg, sizeof msg))
			return rfail(r, KB_ERR_FORMAT, "bad header: %s", msg);
	}
	payload_sizes(h);
	r->kv_dim = (size_t)n_kv_head * head_dim;
	r->row_bytes = kvc_row_bytes(h->dtype, r->kv_dim);
	return KB_OK;
}

/* Read and check one header at the current offset (the first byte is there). */
static int read_header(struct kvc_reader *r)
{
	size_t have;
	int rc = need(r, 16, &have);
	if (rc == KB_EOF) {
		if (memcmp(cur(r), KVC_MAGIC, have < 4 ? have : 4) != 0)
			return rfail(r, KB_ERR_FORMAT, "not a kvc stream (bad magic)");
		return rfail(r, KB_ERR_FORMAT, "truncated header (%zu bytes)", have);
	}
	if (rc)
		return rc;
	const uint8_t *p = cur(r);
	if (!kvc_sniff(p, 4))
		return rfail(r, KB_ERR_FORMAT, "not a kvc stream (bad magic)");
	uint32_t major = kb_le16(p + 4), minor = kb_le16(p + 6), size = kb_le32(p + 8);
	if (major != KVC_MAJOR)
		return rfail(r, KB_ERR_UNSUPPORTED,
			     "kvc major version %u is not supported (this kvblend reads version %d.x)", major, KVC_MAJOR);
	if ((rc = need(r, FIXED_SIZE, &have)) == KB_EOF)
		return rfail(r, KB_ERR_FORMAT, "truncated header (%zu of %u bytes)", have, size);
	if (rc)
		return rc;
	p = cur(r);
	/* the size the fields claim: equal for this minor, more (fields we do not know) for a newer one */
	uint64_t fields = FIXED_SIZE + 8 * (uint64_t)kb_le32(p + 120) + 4 * (uint64_t)kb_le32(p + 124) +
			  kb_le32(p + 128) + (uint64_t)kb_le32(p + 132) + kb_le32(p + 140) + 4;
	if (kb_le32(p + 12) & FLAG_SPARSE) {
		/* a sparse cache's layer_rows[] follow argv: read them to know the size of keep[] */
		uint32_t n_layer = kb_le32(p + 80), n_kv_head = kb_le32(p + 84);
		if (minor < 1)
			return rfail(r, KB_ERR_FORMAT, "bad header: the sparse flag in a version %u.%u cache", major, minor);
		if (n_layer < 1 || n_layer > KVC_MAX_LAYER || n_kv_head < 1 || n_kv_head > KVC_MAX_HEAD)
			return rfail(r, KB_ERR_FORMAT, "bad header: n_layer %u, n_kv_head %u out of range", n_layer,
				     n_kv_head);
		uint64_t rows_at = fields - 4;
		fields += 4 * (uint64_t)n_layer;
		if (size > MAX_HEADER || size < fields)
			return rfail(r, KB_ERR_FORMAT, "header size %u does not match its fields (%llu bytes): corrupt header",
				     size, (unsigned long long)fields);
		if ((rc = need(r, (size_t)fields, &have)) == KB_EOF)
			return rfail(r, KB_ERR_FORMAT, "truncated header (%zu of %u bytes)", have, size);
		if (rc)
			return rc;
		p = cur(r);
		uint64_t rows = 0;
		for (uint32_t l = 0; l < n_layer; l++)
			rows += kb_le32(p + rows_at + 4 * l);
		fields += 4 * rows * n_kv_head;
	}
	if (size > MAX_HEADER || (minor <= KVC_MINOR ? size != fields : size < fields))
		return rfail(r, KB_ERR_FORMAT, "header size %u does not match its fields (%llu bytes): corrupt header",
			     size, (unsigned long long)fields);
	if ((rc = need(r, size, &have)) == KB_EOF)
		return rfail(r, KB_ERR_FORMAT, "truncated header (%zu of %u bytes)", have, size);
	if (rc)
		return rc;
	p = cur(r);
	uint32_t crc = kb_le32(p + size - 4);
	if (crc32c(0, p, size - 4) != crc)
		return rfail(r, KB_ERR_FORMAT, "header checksum mismatch (corrupt header)");
	if ((rc = parse_header(r, p, minor)))
		return rc;
	consume(r, size);
	r->digest = digest_add(0, crc);
	r->next_layer = 0;
	r->payload_read = 0;
	r->state = R_LAYERS;
	return KB_OK;
}

/* Check the end record (all layers read). */
static int read_end(struct kvc_reader *r)
{
	size_t pad = pad_to_record(r->off), have;
	int rc = need(r, pad + REC_SIZE, &have);
	if (rc == KB_EOF) {
		if (have < pad + 4)
			return rfail(r, KB_ERR_FORMAT, "truncated before the end record (the stream ends after layer %d)",
				     r->h.n_layer - 1);
		return rfail(r, KB_ERR_FORMAT, "truncated in the end record (%zu of %zu bytes)", have - pad,
			     (size_t)REC_SIZE);
	}
	if (rc)
		return rc;
	const uint8_t *p = cur(r);
	if (!all_zero(p, pad))
		return rfail(r, KB_ERR_FORMAT, "nonzero padding before the end record (corrupt stream)");
	p += pad;
	if (memcmp(p, TAG_LAYER, 4) == 0)
		return rfail(r, KB_ERR_FORMAT, "a layer record after the last layer %d (corrupt stream)", r->h.n_layer - 1);
	if (memcmp(p, TAG_END, 4) != 0)
		return rfail(r, KB_ERR_FORMAT, "bad end record tag (corrupt stream)");
	if (crc32c(0, p, 12) != kb_le32(p + 12))
		return rfail(r, KB_ERR_FORMAT, "end record checksum mismatch (corrupt end record)");
	if (kb_le32(p + 4) != (uint32_t)r->h.n_layer)
		return rfail(r, KB_ERR_FORMAT, "the end record counts %u layers, the header %d (corrupt stream)",
			     kb_le32(p + 4), r->h.n_layer);
	if (kb_le32(p + 8) != r->digest)
		return rfail(r, KB_ERR_FORMAT, "the end record's digest does not match the checksums read (corrupt stream)");
	consume(r, pad + REC_SIZE);
	r->state = R_DONE;
	return KB_OK;
}

/* The next layer's verified payload (consumed; valid until the next call), or
 * KB_EOF after checking the end record, or an error. */
static int next_payload(struct kvc_reader *r, const uint8_t **payload)
{
	if (r->state == R_ERROR)
		return sticky(r);
	if (r->state == R_START)
		return kb_fail(KB_ERR_ARG, "'%s': no kvc header read yet", r->name);
	if (r->state == R_DONE)
		return KB_EOF;
	if (r->next_layer == r->h.n_layer) {
		int rc = read_end(r);
		return rc ? rc : KB_EOF;
	}
	int l = r->next_layer;
	const int bits = kvc_codec_bits(r->h.dtype);
	uint64_t want = payload_bytes(&r->h, l);
	size_t pad = pad_to_record(r->off), have;
	int rc = need(r, pad + REC_SIZE, &have);
	if (rc == KB_EOF)
		return rfail(r, KB_ERR_FORMAT, "truncated in layer %d (%zu of %llu bytes)", l, have,
			     (unsigned long long)(pad + REC_SIZE + want + 4));
	if (rc)
		return rc;
	const uint8_t *p = cur(r);
	if (!all_zero(p, pad))
		return rfail(r, KB_ERR_FORMAT, "layer %d: nonzero padding before the record (corrupt stream)", l);
	p += pad;
	if (memcmp(p, TAG_LAYER, 4) != 0)
		return rfail(r, KB_ERR_FORMAT, "layer %d: %s (corrupt stream)", l,
			     memcmp(p, TAG_END, 4) == 0 ? "end record after too few layers" : "bad record tag");
	if (kb_le32(p + 4) != (uint32_t)l)
		return rfail(r, KB_ERR_FORMAT, "layer %d: the record says layer %u (corrupt stream)", l, kb_le32(p + 4));
	if (bits) {
		/* a compressed layer says its size; no more than the codec's bound */
		uint64_t bound = kvcodec_bound(bits, kvc_layer_rows(&r->h, l), (int)r->kv_dim);
		want = kb_le64(p + 8);
		if (want < 8 || want > bound)
			return rfail(r, KB_ERR_FORMAT,
				     "layer %d: compressed payload of %llu bytes, outside [8, %llu] (corrupt stream)", l,
				     (unsigned long long)want, (unsigned long long)bound);
	}
	if (kb_le64(p + 8) != want)
		return rfail(r, KB_ERR_FORMAT, "layer %d: payload of %llu bytes, the header says %llu (corrupt stream)",
			     l, (unsigned long long)kb_le64(p + 8), (unsigned long long)want);
	if (want > SIZE_MAX - pad - REC_SIZE - 4)
		return rfail(r, KB_ERR_FORMAT, "layer %d: payload too large for this machine", l);
	size_t total = pad + REC_SIZE + (size_t)want + 4;
	if ((rc = need(r, total, &have)) == KB_EOF)
		return rfail(r, KB_ERR_FORMAT, "truncated in layer %d (%zu of %zu bytes)", l, have, total);
	if (rc)
		return rc;
	p = cur(r) + pad + REC_SIZE;
	uint32_t crc = crc32c(0, p, (size_t)want);
	if (crc != kb_le32(p + want))
		return rfail(r, KB_ERR_FORMAT, "layer %d: payload checksum mismatch (corrupt layer)", l);
	r->digest = digest_add(r->digest, crc);
	consume(r, total);
	r->next_layer++;
	r->last_len = (size_t)want;
	r->payload_read += want;
	*payload = p;
	return l;
}

int kvc_reader_layer_raw(struct kvc_reader *r, const void **k, const void **v, size_t *bytes)
{
	if (kvc_codec_bits(r->h.dtype) && r->state == R_LAYERS)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': a %s cache has no rows to read in place", r->name,
			       kvc_dtype_name(r->h.dtype));
	const uint8_t *p;
	int l = next_payload(r, &p);
	if (l < 0)
		return l;
	*bytes = (size_t)(payload_bytes(&r->h, l) / 2);
	*k = p;
	*v = p + *bytes;
	return l;
}

int kvc_reader_layer(struct kvc_reader *r, float *k, float *v, size_t row_stride)
{
	if ((k || v) && row_stride < r->kv_dim && r->state == R_LAYERS && r->next_layer < r->h.n_layer)
		return kb_fail(KB_ERR_ARG, "'%s': row stride %zu is less than kv_dim %zu", r->name, row_stride, r->kv_dim);
	const uint8_t *p;
	int l = next_payload(r, &p);
	if (l < 0)
		return l;
	size_t n = (size_t)kvc_layer_rows(&r->h, l);
	if (kvc_codec_bits(r->h.dtype)) {
		/* checked even when not wanted (k and v NULL): a sound layer is one that decodes */
		int rc = kvcodec_decode(kvc_codec_bits(r->h.dtype), p, r->last_len, (int)n, (int)r->kv_dim, k, v, row_stride);
		if (rc == KB_ERR_NOMEM)
			return rc;
		if (rc) {
			char msg[200];
			snprintf(msg, sizeof msg, "%s", kb_error());
			return rfail(r, KB_ERR_FORMAT, "layer %d: %s (corrupt layer)", l, msg);
		}
		return l;
	}
	if (k)
		kvc_decode_rows(r->h.dtype, p, n, r->kv_dim, k, row_stride);
	if (v)
		kvc_decode_rows(r->h.dtype, p + n * r->row_bytes, n, r->kv_dim, v, row_stride);
	return l;
}

int kvc_reader_end(struct kvc_reader *r)
{
	const uint8_t *p;
	int rc;
	while ((rc = next_payload(r, &p)) >= 0)
		;
	return rc == KB_EOF ? KB_OK : rc;
}

int kvc_reader_next_header(struct kvc_reader *r, const struct kvc_header **h)
{
	*h = NULL;
	if (r->state == R_ERROR)
		return sticky(r);
	if (r->state == R_LAYERS) {
		int rc = kvc_reader_end(r);
		if (rc)
			return rc;
	}
	kvc_header_free(&r->h);
	r->state = R_START;
	size_t have;
	int rc = need(r, 1, &have);
	if (rc == KB_EOF)
		return KB_EOF;
	if (rc)
		return rc;
	r->n_cache++;
	if ((rc = read_header(r)))
		return rc;
	*h = &r->h;
	return KB_OK;
}
