/* test_kvc.c — the .kvc KV-cache stream (common/kvc.h).
 *
 * Round trips for every dtype (f32 exact, the others within a stated
 * normalized error), row-stride slices, concatenated streams, the header
 * fields, the mmapped file form against the pipe form (same bytes, same
 * values), pipelined reading through a real pipe (layer 0 is handed out
 * while the writer is blocked before layer 1), and every corruption with its
 * own message: bit flips in the header, a payload, padding and the end
 * record, truncation at every offset, another major version, a newer minor
 * with unknown header fields, garbage, and kvc_check_model; token-evicted
 * (sparse) caches: round trip, the writer's and the reader's checks of the
 * kept rows, truncations.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "hash.h"
#include "kvc.h"
#include "quant.h"
#include "tap.h"

static int has(const char *needle)
{
	return strstr(kb_error(), needle) != NULL;
}

/* ---- test caches ---- */

struct cache {
	struct kvc_header h; /* arrays owned by the test (freed in cache_free) */
	float *k, *v;        /* [n_layer][n_tokens][kv_dim] */
	size_t kv_dim;
};

static char *argv0[] = { "kvblend-prefill", "-m", "model.gguf", "--ratio", "0.15", "", "a b" };

static void cache_make(struct cache *c, int n_layer, int n_kv_head, int head_dim, int n_tokens, int dtype,
		       int n_logits)
{
	kvc_header_init(&c->h);
	struct kvc_header *h = &c->h;
	h->n_layer = n_layer;
	h->n_kv_head = n_kv_head;
	h->head_dim = head_dim;
	h->dtype = (enum kvc_dtype)dtype;
	h->rope_mode = 2;
	h->n_rot = head_dim;
	h->rope_base = 1e6f;
	h->rope_scaling = 2;
	h->rope_factor = 8;
	h->rope_orig_ctx = 8192;
	h->k_rotated = true;
	for (int i = 0; i < 32; i++) {
		h->model_fp[i] = (uint8_t)(i * 7 + 1);
		h->tok_fp[i] = (uint8_t)(255 - i);
	}
	h->n_tokens = n_tokens;
	h->tokens = malloc((size_t)(n_tokens ? n_tokens : 1) * 4);
	h->pos = malloc((size_t)(n_tokens ? n_tokens : 1) * 4);
	for (int i = 0; i < n_tokens; i++) {
		h->tokens[i] = (int32_t)(tap_randf(0, 50000));
		h->pos[i] = 100 + i;
	}
	if (n_tokens > 1)
		h->tokens[1] = -5; /* ids are stored as i32, negative included */
	h->n_logits = n_logits;
	h->logits = n_logits ? malloc((size_t)n_logits * 4) : NULL;
	for (int i = 0; i < n_logits; i++)
		h->logits[i] = tap_randf(-20, 20);
	h->tool = "kvblend-test";
	h->version = "9.8.7";
	h->argc = 7;
	h->argv = argv0;
	c->kv_dim = (size_t)n_kv_head * head_dim;
	size_t n = (size_t)n_layer * (n_tokens ? n_tokens : 1) * c->kv_dim;
	c->k = malloc(n * 4);
	c->v = malloc(n * 4);
	for (size_t i = 0; i < n; i++) {
		/* rows with a scale of their own, as real K/V have */
		float s = 1 + (float)(i / c->kv_dim % 7);
		c->k[i] = s * tap_randf(-1, 1);
		c->v[i] = tap_randf(-0.5f, 0.5f);
	}
}

static void cache_free(struct cache *c)
{
	free(c->h.tokens);
	free(c->h.pos);
	free(c->h.logits);
	free(c->k);
	free(c->v);
}

static size_t layer_stride(const struct cache *c)
{
	return (size_t)c->h.n_tokens * c->kv_dim;
}

/* The stream written through kvc_writer to an in-memory file, read back into memory. */
static int write_fd(const struct cache *c, int fd)
{
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, fd, &c->h);
	if (rc)
		return rc;
	for (int l = 0; l < c->h.n_layer && !rc; l++)
		rc = kvc_writer_layer(w, l, c->k + l * layer_stride(c), c->v + l * layer_stride(c), c->kv_dim);
	if (!rc)
		rc = kvc_writer_finish(w);
	kvc_writer_free(w);
	return rc;
}

static uint8_t *slurp_fd(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	uint8_t *b = malloc(cap);
	for (;;) {
		if (n == cap)
			b = realloc(b, cap *= 2);
		ssize_t k = read(fd, b + n, cap - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	*len = n;
	return b;
}

static uint8_t *to_mem(const struct cache *c, size_t *len)
{
	int fd = memfd_create("kvc", 0);
	int rc = write_fd(c, fd);
	if (rc) {
		close(fd);
		return NULL;
	}
	lseek(fd, 0, SEEK_SET);
	uint8_t *b = slurp_fd(fd, len);
	close(fd);
	return b;
}

/* Read one cache (header + every layer + end) into a fresh [n_layer][n_tokens][kv_dim]
 * pair; returns the status of the first failing call (KB_OK when all went well). */
static int read_one(struct kvc_reader *r, const struct kvc_header **hp, float **k, float **v)
{
	const struct kvc_header *h;
	int rc = kvc_reader_next_header(r, &h);
	*k = *v = NULL;
	if (rc)
		return rc;
	*hp = h;
	size_t ls = (size_t)h->n_tokens * h->n_kv_head * h->head_dim;
	*k = calloc(ls * h->n_layer + 1, 4);
	*v = calloc(ls * h->n_layer + 1, 4);
	int l, want = 0;
	while ((l = kvc_reader_layer(r, *k + want * ls, *v + want * ls, (size_t)h->n_kv_head * h->head_dim)) >= 0) {
		if (l != want)
			return kb_fail(KB_ERR_FORMAT, "layer %d returned, expected %d", l, want);
		want++;
	}
	if (l != KB_EOF)
		return l;
	if (want != h->n_layer)
		return kb_fail(KB_ERR_FORMAT, "%d layers of %d", want, h->n_layer);
	return KB_OK;
}

/* Every status a reader gives for buf (through the memory reader), to the first error/EOF. */
static int read_mem_all(const uint8_t *buf, size_t len)
{
	struct kvc_reader *r;
	int rc = kvc_reader_open_mem(&r, buf, len, "t.kvc");
	if (rc)
		return rc;
	const struct kvc_header *h;
	while ((rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		int l;
		while ((l = kvc_reader_layer(r, NULL, NULL, 0)) >= 0)
			;
		if (l != KB_EOF) {
			rc = l;
			break;
		}
	}
	kvc_reader_free(r);
	return rc == KB_EOF ? KB_OK : rc;
}

static bool same_header(const struct kvc_header *a, const struct kvc_header *b)
{
	if (a->n_layer != b->n_layer || a->n_kv_head != b->n_kv_head || a->head_dim != b->head_dim ||
	    a->dtype != b->dtype || a->rope_mode != b->rope_mode || a->n_rot != b->n_rot ||
	    a->rope_base != b->rope_base || a->rope_scaling != b->rope_scaling || a->rope_factor != b->rope_factor ||
	    a->rope_orig_ctx != b->rope_orig_ctx || a->k_rotated != b->k_rotated || a->n_tokens != b->n_tokens ||
	    a->n_logits != b->n_logits || memcmp(a->model_fp, b->model_fp, 32) || memcmp(a->tok_fp, b->tok_fp, 32))
		return false;
	if (a->n_tokens && (memcmp(a->tokens, b->tokens, 4 * (size_t)a->n_tokens) ||
			    memcmp(a->pos, b->pos, 4 * (size_t)a->n_tokens)))
		return false;
	if (a->n_logits && memcmp(a->logits, b->logits, 4 * (size_t)a->n_logits))
		return false;
	if (strcmp(a->tool, b->tool) || strcmp(a->version, b->version) || a->argc != b->argc)
		return false;
	for (int i = 0; i < a->argc; i++)
		if (strcmp(a->argv[i], b->argv[i]))
			return false;
	return true;
}

/* ---- round trips ---- */

static const double tol[KVC_DTYPE_COUNT] = {
	[KVC_F32] = 0, [KVC_F16] = 1e-3, [KVC_BF16] = 8e-3, [KVC_Q8_0] = 1e-2,
	/* per-group min and step (test_kvcodec checks every value against its bound) */
	[KVC_KV8] = 8e-3, [KVC_KV4] = 0.12, [KVC_KV3] = 0.25, [KVC_KV2] = 0.6,
};

static void test_round_trip(void)
{
	for (int dt = 0; dt < KVC_DTYPE_COUNT; dt++) {
		struct cache c;
		cache_make(&c, 3, 2, 32, 17, dt, dt == KVC_F16 ? 100 : 0);
		size_t len;
		uint8_t *buf = to_mem(&c, &len);
		ok(buf && len % KVC_ALIGN == 0, "%s: written, %zu bytes (a multiple of %d)", kvc_dtype_name(dt), len,
		   KVC_ALIGN);
		ok(kvc_sniff(buf, len) && !kvc_sniff(buf, 3) && !kvc_sniff("GGUF", 4), "%s: kvc_sniff", kvc_dtype_name(dt));
		struct kvc_reader *r;
		const struct kvc_header *h = NULL;
		float *k, *v;
		int rc = kvc_reader_open_mem(&r, buf, len, "mem") || read_one(r, &h, &k, &v);
		ok(rc == KB_OK, "%s: read back (%s)", kvc_dtype_name(dt), rc ? kb_error() : "ok");
		if (rc == KB_OK) {
			ok(same_header(h, &c.h) && h->major == KVC_MAJOR && h->minor == KVC_MINOR,
			   "%s: every header field round-trips", kvc_dtype_name(dt));
			long n = (long)(c.h.n_layer * layer_stride(&c));
			double ek = tap_nerr(k, c.k, n), ev = tap_nerr(v, c.v, n);
			if (dt == KVC_F32)
				ok(memcmp(k, c.k, (size_t)n * 4) == 0 && memcmp(v, c.v, (size_t)n * 4) == 0,
				   "f32: K and V are exact");
			else
				ok(ek < tol[dt] && ev < tol[dt], "%s: normalized error K %.2g V %.2g < %g", kvc_dtype_name(dt),
				   ek, ev, tol[dt]);
			ok(h->payload_bytes == 2 * kvc_row_bytes(dt, c.kv_dim) * 17, "%s: payload_bytes %llu",
			   kvc_dtype_name(dt), (unsigned long long)h->payload_bytes);
			ok(kvc_reader_next_header(r, &h) == KB_EOF && kvc_reader_next_header(r, &h) == KB_EOF,
			   "%s: then KB_EOF, and again", kvc_dtype_name(dt));
		} else {
			for (int i = 0; i < 4; i++)
				ok(0, "%s: skipped after the failure", kvc_dtype_name(dt));
		}
		free(k);
		free(v);
		kvc_reader_free(r);
		free(buf);
		cache_free(&c);
	}
}

static void test_header_api(void)
{
	ok(strcmp(kvc_dtype_name(KVC_F16), "f16") == 0 && strcmp(kvc_dtype_name(KVC_Q8_0), "q8_0") == 0 &&
		   strcmp(kvc_dtype_name(99), "?") == 0,
	   "kvc_dtype_name");
	ok(kvc_dtype_from_name("BF16") == KVC_BF16 && kvc_dtype_from_name("f32") == KVC_F32 &&
		   kvc_dtype_from_name("q4_0") == -1,
	   "kvc_dtype_from_name");
	ok(kvc_row_bytes(KVC_F32, 64) == 256 && kvc_row_bytes(KVC_F16, 64) == 128 && kvc_row_bytes(KVC_Q8_0, 64) == 68 &&
		   kvc_row_bytes(KVC_Q8_0, 48) == 0 && kvc_row_bytes(7, 64) == 0,
	   "kvc_row_bytes");
	struct kvc_header h;
	kvc_header_init(&h);
	ok(h.major == KVC_MAJOR && h.dtype == KVC_F16 && h.k_rotated && h.rope_factor == 1 && strlen(h.tool) > 0,
	   "kvc_header_init: defaults");

	struct cache c;
	cache_make(&c, 2, 1, 32, 5, KVC_F16, 3);
	struct kvc_header copy;
	ok(kvc_header_copy(&copy, &c.h) == KB_OK && same_header(&copy, &c.h) && copy.tokens != c.h.tokens &&
		   copy.argv != c.h.argv,
	   "kvc_header_copy: a deep copy");
	kvc_header_free(&copy);
	ok(copy.tokens == NULL && copy.argv == NULL, "kvc_header_free zeroes");
	kvc_header_free(NULL);

	/* the writer refuses a header it cannot write */
	struct kvc_writer *w;
	int fd = open("/dev/null", O_WRONLY);
	c.h.dtype = KVC_Q8_0;
	c.h.n_kv_head = 3;
	c.h.head_dim = 16;
	int rc = kvc_writer_init(&w, fd, &c.h);
	ok(rc == KB_ERR_ARG && has("q8_0 needs kv_dim") && has("multiple of 32, got 48") && !w,
	   "q8_0 with kv_dim 48 is refused: %s", kb_error());
	c.h.n_kv_head = 1;
	c.h.head_dim = 32;
	c.h.n_layer = 0;
	ok(kvc_writer_init(&w, fd, &c.h) == KB_ERR_ARG && has("n_layer"), "n_layer 0 is refused: %s", kb_error());
	c.h.n_layer = 2;
	c.h.dtype = (enum kvc_dtype)9;
	ok(kvc_writer_init(&w, fd, &c.h) == KB_ERR_ARG && has("dtype"), "an unknown dtype is refused");
	c.h.dtype = KVC_F16;
	c.h.n_rot = 33;
	ok(kvc_writer_init(&w, fd, &c.h) == KB_ERR_ARG && has("n_rot"), "n_rot > head_dim is refused");
	c.h.n_rot = 32;
	int32_t *tk = c.h.tokens;
	c.h.tokens = NULL;
	ok(kvc_writer_init(&w, fd, &c.h) == KB_ERR_ARG && has("no token ids"), "tokens missing is refused");
	c.h.tokens = tk;

	/* layers in order, all of them */
	ok(kvc_writer_init(&w, fd, &c.h) == KB_OK, "writer init");
	ok(kvc_writer_layer(w, 1, c.k, c.v, 32) == KB_ERR_ARG && has("out of order"), "layer 1 before 0 is refused");
	ok(kvc_writer_layer(w, 0, c.k, c.v, 31) == KB_ERR_ARG && has("row stride"), "row_stride < kv_dim is refused");
	ok(kvc_writer_layer(w, 0, c.k, c.v, 32) == KB_OK, "layer 0");
	ok(kvc_writer_finish(w) == KB_ERR_ARG && has("1 of 2 layers"), "finish before the last layer is refused");
	ok(kvc_writer_layer(w, 1, c.k, c.v, 32) == KB_OK && kvc_writer_finish(w) == KB_OK &&
		   kvc_writer_bytes(w) % KVC_ALIGN == 0,
	   "layer 1, finish: %llu bytes", (unsigned long long)kvc_writer_bytes(w));
	ok(kvc_writer_layer(w, 2, c.k, c.v, 32) == KB_ERR_ARG, "no layer after finish");
	kvc_writer_free(w);
	kvc_writer_free(NULL);
	close(fd);
	cache_free(&c);
}

/* The row decoders against quant.c's scalar conversions, every 16-bit pattern. */
static void test_decode_exhaustive(void)
{
	uint8_t *src = malloc(65536 * 2 + 1);
	float *got = malloc(65537 * 4);
	for (int odd = 0; odd < 2; odd++) { /* an unaligned source too */
		for (unsigned i = 0; i < 65536; i++) {
			src[odd + 2 * i] = (uint8_t)i;
			src[odd + 2 * i + 1] = (uint8_t)(i >> 8);
		}
		for (int dt = KVC_F16; dt <= KVC_BF16; dt++) {
			/* one row of 65536, and rows of 3 (the tail path) */
			int bad = 0;
			for (int shape = 0; shape < 2; shape++) {
				size_t kv_dim = shape ? 3 : 65536, rows = shape ? 21845 : 1;
				kvc_decode_rows(dt, src + odd, rows, kv_dim, got, kv_dim);
				for (unsigned i = 0; i < rows * kv_dim; i++) {
					float want = dt == KVC_F16 ? fp16_to_fp32((uint16_t)i) : bf16_to_fp32((uint16_t)i);
					uint32_t g, w;
					memcpy(&g, &got[i], 4);
					memcpy(&w, &want, 4);
					if (g != w && !bad++)
						diag("%s %04x: got %08x want %08x", kvc_dtype_name(dt), i, g, w);
				}
			}
			ok(bad == 0, "%s: every value decodes bit-exactly as quant.c's%s", kvc_dtype_name(dt),
			   odd ? " (unaligned source)" : "");
		}
	}
	free(src);
	free(got);
}

/* A slice of a bigger cache (row_stride > kv_dim) out, into another stride in. */
static void test_row_stride(void)
{
	struct cache c;
	cache_make(&c, 2, 2, 32, 6, KVC_F32, 0);
	size_t kv_dim = 64, n_ctx = 10, big_stride = 3 * kv_dim; /* e.g. a wider buffer */
	float *bk = calloc(2 * n_ctx * big_stride, 4), *bv = calloc(2 * n_ctx * big_stride, 4);
	for (int l = 0; l < 2; l++)
		for (int t = 0; t < 6; t++) {
			memcpy(bk + (l * n_ctx + t) * big_stride, c.k + (l * 6 + t) * kv_dim, kv_dim * 4);
			memcpy(bv + (l * n_ctx + t) * big_stride, c.v + (l * 6 + t) * kv_dim, kv_dim * 4);
		}
	int fd = memfd_create("kvc", 0);
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, fd, &c.h);
	for (int l = 0; l < 2 && !rc; l++)
		rc = kvc_writer_layer(w, l, bk + l * n_ctx * big_stride, bv + l * n_ctx * big_stride, big_stride);
	rc = rc ? rc : kvc_writer_finish(w);
	kvc_writer_free(w);
	ok(rc == KB_OK, "written from rows %zu floats apart", big_stride);

	lseek(fd, 0, SEEK_SET);
	struct kvc_reader *r;
	const struct kvc_header *h;
	size_t in_stride = kv_dim + 5;
	float *k = calloc(6 * in_stride, 4), *v = calloc(6 * in_stride, 4);
	bool same = true;
	rc = kvc_reader_open_fd(&r, fd, "memfd") || kvc_reader_next_header(r, &h);
	for (int l = 0; l < 2 && !rc; l++) {
		for (size_t i = 0; i < 6 * in_stride; i++)
			k[i] = v[i] = 12345;
		if (kvc_reader_layer(r, k, v, in_stride) != l)
			same = false;
		for (int t = 0; t < 6; t++) {
			same &= memcmp(k + t * in_stride, c.k + (l * 6 + t) * kv_dim, kv_dim * 4) == 0;
			same &= memcmp(v + t * in_stride, c.v + (l * 6 + t) * kv_dim, kv_dim * 4) == 0;
			for (size_t j = kv_dim; j < in_stride; j++)
				same &= k[t * in_stride + j] == 12345 && v[t * in_stride + j] == 12345;
		}
	}
	ok(!rc && same, "read into rows %zu floats apart: the rows equal, the gaps untouched", in_stride);
	ok(kvc_reader_layer(r, k, v, 3) == KB_EOF, "then KB_EOF");
	kvc_reader_free(r);
	close(fd);
	free(k);
	free(v);
	free(bk);
	free(bv);
	cache_free(&c);
}

/* Two caches back to back (different shapes and dtypes), then KB_EOF. */
static void test_concat(void)
{
	struct cache a, b;
	cache_make(&a, 2, 1, 32, 4, KVC_F32, 0);
	cache_make(&b, 3, 2, 32, 7, KVC_Q8_0, 10);
	b.h.k_rotated = false;
	int fd = memfd_create("kvc", 0);
	ok(write_fd(&a, fd) == KB_OK && write_fd(&b, fd) == KB_OK, "two caches written on one fd");
	lseek(fd, 0, SEEK_SET);
	size_t len;
	uint8_t *buf = slurp_fd(fd, &len);
	close(fd);

	for (int mode = 0; mode < 2; mode++) {
		struct kvc_reader *r;
		const struct kvc_header *h;
		float *k, *v;
		const char *how = mode ? "by skipping" : "layer by layer";
		int rc = kvc_reader_open_mem(&r, buf, len, "cat.kvc");
		if (mode == 0) {
			rc = rc || read_one(r, &h, &k, &v);
			ok(!rc && same_header(h, &a.h) && memcmp(k, a.k, 4 * 2 * layer_stride(&a)) == 0,
			   "%s: the first cache", how);
			free(k);
			free(v);
			rc = rc || read_one(r, &h, &k, &v);
			ok(!rc && same_header(h, &b.h) && !h->k_rotated &&
				   tap_nerr(k, b.k, (long)(3 * layer_stride(&b))) < 1e-2,
			   "%s: the second cache", how);
			ok(h->stream_offset > 0 && h->stream_offset % KVC_ALIGN == 0, "it starts at %llu, aligned",
			   (unsigned long long)h->stream_offset);
			free(k);
			free(v);
		} else {
			/* next_header skips the rest of a cache (verifying it) */
			rc = rc || kvc_reader_next_header(r, &h);
			ok(!rc && h->n_layer == 2, "%s: header of the first cache", how);
			rc = rc || kvc_reader_next_header(r, &h);
			ok(!rc && h->n_layer == 3 && h->dtype == KVC_Q8_0, "%s: header of the second cache", how);
			rc = rc || kvc_reader_end(r);
			ok(!rc && kvc_reader_offset(r) == len, "kvc_reader_end checks the end record, at the end");
		}
		ok(kvc_reader_next_header(r, &h) == KB_EOF, "%s: then KB_EOF", how);
		kvc_reader_free(r);
	}

	/* the second cache damaged: the message says which cache */
	buf[len - 100] ^= 1;
	ok(read_mem_all(buf, len) == KB_ERR_FORMAT && has("'t.kvc': cache 2: layer 2: payload checksum mismatch"),
	   "damage in the second cache names it: %s", kb_error());
	buf[len - 100] ^= 1;
	/* garbage after a good cache */
	uint8_t *g = malloc(len + 8);
	memcpy(g, buf, len);
	memcpy(g + len, "garbage\n", 8);
	ok(read_mem_all(g, len + 8) == KB_ERR_FORMAT && has("cache 3: not a kvc stream (bad magic)"),
	   "garbage after the caches: %s", kb_error());
	free(g);
	free(buf);
	cache_free(&a);
	cache_free(&b);
}

/* ---- files and pipes ---- */

struct pipe_writer {
	const struct cache *c;
	int fd;       /* write end of the data pipe */
	int go_fd;    /* read end of the go-ahead pipe: wait for a byte before layer 1 */
	int rc;
	int waited;   /* 1 once the go-ahead arrived */
};

static void *pipe_writer_main(void *arg)
{
	struct pipe_writer *p = arg;
	const struct cache *c = p->c;
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, p->fd, &c->h);
	for (int l = 0; l < c->h.n_layer && !rc; l++) {
		if (l == 1 && p->go_fd >= 0) {
			char ch;
			if (read(p->go_fd, &ch, 1) != 1)
				rc = KB_ERR_IO;
			__atomic_store_n(&p->waited, 1, __ATOMIC_SEQ_CST);
		}
		if (!rc)
			rc = kvc_writer_layer(w, l, c->k + l * layer_stride(c), c->v + l * layer_stride(c), c->kv_dim);
	}
	if (!rc)
		rc = kvc_writer_finish(w);
	kvc_writer_free(w);
	close(p->fd);
	p->rc = rc;
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "not ok - the pipe test hung (reader waited for more than layer 0?)\n";
	ssize_t n = write(STDOUT_FILENO, msg, sizeof msg - 1);
	(void)n;
	_exit(1);
}

/* Layer 0 comes out of the reader while the writer waits (for the reader's
 * go-ahead) before writing layer 1: pipelined loading. */
static void test_pipe_pipelined(void)
{
	struct cache c;
	cache_make(&c, 4, 2, 64, 300, KVC_F16, 0); /* a layer of 150 KB: more than one pipe buffer */
	int data[2], go[2];
	if (pipe(data) || pipe(go)) {
		ok(0, "pipe: %s", strerror(errno));
		return;
	}
	struct pipe_writer pw = { .c = &c, .fd = data[1], .go_fd = go[0] };
	pthread_t th;
	pthread_create(&th, NULL, pipe_writer_main, &pw);
	signal(SIGALRM, on_alarm);
	alarm(20);

	struct kvc_reader *r;
	const struct kvc_header *h;
	size_t ls = layer_stride(&c);
	float *k = malloc(ls * 4), *v = malloc(ls * 4);
	int rc = kvc_reader_open_fd(&r, data[0], "<pipe>");
	ok(rc == KB_OK && !kvc_reader_is_mapped(r), "a pipe is read, not mapped");
	rc = rc || kvc_reader_next_header(r, &h);
	ok(rc == KB_OK && h->n_layer == 4, "header through the pipe");
	int l = rc ? rc : kvc_reader_layer(r, k, v, c.kv_dim);
	ok(l == 0 && !__atomic_load_n(&pw.waited, __ATOMIC_SEQ_CST),
	   "layer 0 is returned while the writer is still waiting to write layer 1");
	ok(tap_nerr(k, c.k, (long)ls) < 1e-3 && tap_nerr(v, c.v, (long)ls) < 1e-3, "layer 0 decodes");
	ssize_t n = write(go[1], "g", 1);
	(void)n;
	int got = 1;
	while ((l = kvc_reader_layer(r, k, v, c.kv_dim)) >= 0) {
		got++;
		if (tap_nerr(k, c.k + (size_t)l * ls, (long)ls) > 1e-3)
			got = -100;
	}
	ok(l == KB_EOF && got == 4 && __atomic_load_n(&pw.waited, __ATOMIC_SEQ_CST),
	   "layers 1-3 after the go-ahead, then the end record (%s)", l == KB_EOF ? "ok" : kb_error());
	ok(kvc_reader_next_header(r, &h) == KB_EOF, "KB_EOF at the end of the pipe");
	pthread_join(th, NULL);
	alarm(0);
	ok(pw.rc == KB_OK, "the writer wrote to the pipe");
	kvc_reader_free(r);
	close(data[0]);
	close(go[0]);
	close(go[1]);
	free(k);
	free(v);
	cache_free(&c);
}

/* The bytes a writer sends down a pipe, collected by a thread. */
struct collector {
	int fd;
	uint8_t *buf;
	size_t len;
};

static void *collector_main(void *arg)
{
	struct collector *co = arg;
	co->buf = slurp_fd(co->fd, &co->len);
	return NULL;
}

static uint8_t *through_pipe(const struct cache *c, size_t *len)
{
	int p[2];
	if (pipe(p))
		return NULL;
	struct collector co = { .fd = p[0] };
	pthread_t th;
	pthread_create(&th, NULL, collector_main, &co);
	struct pipe_writer pw = { .c = c, .fd = p[1], .go_fd = -1 };
	pipe_writer_main(&pw);
	pthread_join(th, NULL);
	close(p[0]);
	*len = co.len;
	if (pw.rc) {
		free(co.buf);
		return NULL;
	}
	return co.buf;
}

static char tmpdir[256];

static void test_file_vs_pipe(void)
{
	struct cache c;
	cache_make(&c, 3, 2, 32, 40, KVC_BF16, 50);
	char path[512];
	snprintf(path, sizeof path, "%s/a.kvc", tmpdir);
	int rc = kvc_write_file(path, &c.h, c.k, c.v, layer_stride(&c), c.kv_dim);
	ok(rc == KB_OK, "kvc_write_file (%s)", rc ? kb_error() : "ok");
	size_t plen;
	uint8_t *pbytes = through_pipe(&c, &plen);
	char *fbytes;
	size_t flen;
	rc = kb_read_file(path, &fbytes, &flen);
	ok(!rc && pbytes && plen == flen && memcmp(pbytes, fbytes, flen) == 0,
	   "the pipe form equals the file form byte for byte (%zu bytes)", flen);

	/* the file is mmapped, a pipe is not; both read the same */
	struct kvc_reader *rf, *rp;
	const struct kvc_header *hf, *hp;
	float *kf, *vf, *kp, *vp;
	rc = kvc_reader_open_file(&rf, path);
	ok(!rc && kvc_reader_is_mapped(rf), "a regular file is mapped");
	rc = rc || read_one(rf, &hf, &kf, &vf);
	int p[2];
	ok(pipe(p) == 0, "pipe");
	struct pipe_writer pw = { .c = &c, .fd = p[1], .go_fd = -1 };
	pthread_t th;
	pthread_create(&th, NULL, pipe_writer_main, &pw);
	int rc2 = kvc_reader_open_fd(&rp, p[0], "<pipe>") || read_one(rp, &hp, &kp, &vp);
	pthread_join(th, NULL);
	size_t n = 3 * layer_stride(&c);
	ok(!rc && !rc2 && same_header(hf, hp) && memcmp(kf, kp, n * 4) == 0 && memcmp(vf, vp, n * 4) == 0,
	   "mapped file and pipe read identically");
	ok(tap_nerr(kf, c.k, (long)n) < tol[KVC_BF16], "and match the data (bf16)");
	free(kf), free(vf), free(kp), free(vp);
	kvc_reader_free(rf);
	kvc_reader_free(rp);
	close(p[0]);

	/* raw payloads are 64-byte aligned, mapped or buffered, and decode to the same */
	for (int mode = 0; mode < 2; mode++) {
		struct kvc_reader *r;
		const struct kvc_header *h;
		int fd = open(path, O_RDONLY);
		if (mode) {
			/* a reader that first took 4 bytes to sniff: a pipe in disguise */
			int q[2];
			rc = pipe(q);
			ssize_t w = write(q[1], fbytes, flen < 60000 ? flen : 60000);
			(void)w;
			close(q[1]);
			close(fd);
			fd = q[0];
		}
		char pre[4];
		ssize_t got = read(fd, pre, 4);
		rc = got == 4 && kvc_sniff(pre, 4) ? kvc_reader_open_fd_prefix(&r, fd, pre, 4, "x") : -99;
		rc = rc || kvc_reader_next_header(r, &h);
		ok(!rc && kvc_reader_is_mapped(r) == !mode, "%s: sniffed 4 bytes, opened with the prefix",
		   mode ? "pipe" : "file");
		const void *rk, *rv;
		size_t bytes;
		int l = rc ? rc : kvc_reader_layer_raw(r, &rk, &rv, &bytes);
		bool aligned = l == 0 && (uintptr_t)rk % KVC_ALIGN == 0;
		float *k = malloc(layer_stride(&c) * 4);
		if (l == 0)
			kvc_decode_rows(KVC_BF16, rk, 40, c.kv_dim, k, c.kv_dim);
		ok(aligned && bytes == 40 * kvc_row_bytes(KVC_BF16, 64) && (const uint8_t *)rv == (const uint8_t *)rk + bytes &&
			   tap_nerr(k, c.k, (long)layer_stride(&c)) < tol[KVC_BF16],
		   "%s: raw layer 0 is 64-byte aligned and decodes", mode ? "pipe" : "file");
		free(k);
		kvc_reader_free(r);
		close(fd);
	}

	/* kvc_write_file leaves no temporary behind, and a failing source leaves nothing */
	int n_files = 0;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "ls -a %s | grep -c tmp", tmpdir);
	FILE *f = popen(cmd, "r");
	if (f && fscanf(f, "%d", &n_files) != 1)
		n_files = -1;
	if (f)
		pclose(f);
	ok(n_files == 0, "no temporary file left");

	free(pbytes);
	free(fbytes);
	cache_free(&c);
}

struct fifo_reader {
	const char *path;
	struct collector *co;
};

static void *fifo_reader_main(void *arg)
{
	struct fifo_reader *fr = arg;
	fr->co->fd = open(fr->path, O_RDONLY);
	collector_main(fr->co);
	close(fr->co->fd);
	return NULL;
}

static int failing_layer(void *ctx, int l, const float **k, const float **v, size_t *rs)
{
	const struct cache *c = ctx;
	if (l == 1)
		return kb_fail(KB_ERR_ARG, "source failed at layer 1");
	*k = c->k;
	*v = c->v;
	*rs = c->kv_dim;
	return KB_OK;
}

static void test_atomic(void)
{
	struct cache c;
	cache_make(&c, 2, 1, 32, 3, KVC_F16, 0);
	char path[512];
	snprintf(path, sizeof path, "%s/fail.kvc", tmpdir);
	int rc = kvc_write_file_cb(path, &c.h, failing_layer, &c);
	ok(rc == KB_ERR_ARG && has("source failed") && access(path, F_OK) != 0,
	   "a failing source leaves no file (%s)", kb_error());
	snprintf(path, sizeof path, "%s/no/such/dir/x.kvc", tmpdir);
	rc = kvc_write_file(path, &c.h, c.k, c.v, layer_stride(&c), c.kv_dim);
	ok(rc == KB_ERR_IO && has("no/such/dir"), "an unwritable path: %s", kb_error());
	struct kvc_reader *r;
	ok(kvc_reader_open_file(&r, path) == KB_ERR_IO && has("No such file"), "opening a missing file: %s",
	   kb_error());

	/* devices and FIFOs are written in place, not replaced by a file */
	rc = kvc_write_file("/dev/null", &c.h, c.k, c.v, layer_stride(&c), c.kv_dim);
	struct stat sb;
	ok(rc == KB_OK && stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode), "kvc_write_file to /dev/null");
	snprintf(path, sizeof path, "%s/fifo", tmpdir);
	if (mkfifo(path, 0600) == 0) {
		struct collector co = { .fd = -1 };
		pthread_t th;
		struct fifo_reader fr = { .path = path, .co = &co };
		pthread_create(&th, NULL, fifo_reader_main, &fr);
		rc = kvc_write_file(path, &c.h, c.k, c.v, layer_stride(&c), c.kv_dim);
		pthread_join(th, NULL);
		size_t len;
		uint8_t *want = to_mem(&c, &len);
		ok(rc == KB_OK && stat(path, &sb) == 0 && S_ISFIFO(sb.st_mode) && co.len == len &&
			   memcmp(co.buf, want, len) == 0,
		   "kvc_write_file to a named pipe writes through it (%zu bytes)", co.len);
		free(co.buf);
		free(want);
	} else {
		ok(0, "mkfifo: %s", strerror(errno));
	}
	cache_free(&c);
}

/* ---- corruption, truncation, versions ---- */

/* Offsets where each part of a one-cache stream ends: [0] header, [1 + l] layer l. */
static void part_ends(const uint8_t *buf, size_t len, size_t *ends, int n_layer)
{
	struct kvc_reader *r;
	const struct kvc_header *h;
	if (kvc_reader_open_mem(&r, buf, len, "x") || kvc_reader_next_header(r, &h))
		abort();
	ends[0] = (size_t)kvc_reader_offset(r);
	for (int l = 0; l < n_layer; l++) {
		if (kvc_reader_layer(r, NULL, NULL, 0) != l)
			abort();
		ends[1 + l] = (size_t)kvc_reader_offset(r);
	}
	kvc_reader_free(r);
}

static void test_truncation(void)
{
	struct cache c;
	cache_make(&c, 3, 1, 32, 5, KVC_F16, 7);
	size_t len;
	uint8_t *buf = to_mem(&c, &len);
	size_t ends[4];
	part_ends(buf, len, ends, 3);
	size_t hdr_size = kb_le32(buf + 8);
	ok(ends[0] == hdr_size && ends[0] % KVC_ALIGN != 0, "the header is %zu bytes", hdr_size);

	ok(read_mem_all(buf, 0) == KB_OK, "an empty stream is a clean end (KB_EOF at once)");
	int bad = 0, first_bad = -1;
	char why[300] = "";
	for (size_t cut = 1; cut < len; cut++) {
		uint8_t *t = malloc(cut); /* exact size: the sanitizers see any overread */
		memcpy(t, buf, cut);
		int rc = read_mem_all(t, cut);
		free(t);
		char want[64];
		if (cut < ends[0])
			snprintf(want, sizeof want, "'t.kvc': truncated header");
		else if (cut >= ends[3])
			snprintf(want, sizeof want, "end record");
		else
			for (int l = 0; l < 3; l++)
				if (cut >= ends[l] && cut < ends[l + 1])
					snprintf(want, sizeof want, "'t.kvc': truncated in layer %d (", l);
		if (rc != KB_ERR_FORMAT || !has(want) || !has("truncated")) {
			if (!bad++) {
				first_bad = (int)cut;
				snprintf(why, sizeof why, "want '%s', got %d '%s'", want, rc, kb_error());
			}
		}
	}
	ok(bad == 0, "truncated at each of %zu offsets: truncated header / in layer N / before the end record%s%s",
	   len - 1, bad ? " -- first failure: " : "", why);
	if (bad)
		diag("first bad cut %d", first_bad);

	/* the cases by name */
	ok(read_mem_all(buf, 100) == KB_ERR_FORMAT && has("truncated header (100 of"), "cut in the header: %s",
	   kb_error());
	ok(read_mem_all(buf, ends[1] + 1) == KB_ERR_FORMAT && has("truncated in layer 1"), "cut in layer 1: %s",
	   kb_error());
	ok(read_mem_all(buf, ends[3]) == KB_ERR_FORMAT && has("truncated before the end record") &&
		   has("after layer 2"),
	   "cut just before the end record: %s", kb_error());
	ok(read_mem_all(buf, len - 4) == KB_ERR_FORMAT && has("truncated in the end record"),
	   "cut in the end record: %s", kb_error());
	ok(read_mem_all(buf, 2) == KB_ERR_FORMAT && has("truncated header"), "two bytes of magic: truncated header");

	/* through a pipe (buffered reads) too */
	for (int l = 0; l < 3; l++) {
		size_t cut = ends[l] + (ends[l + 1] - ends[l]) / 2;
		int p[2];
		if (pipe(p))
			abort();
		ssize_t w = write(p[1], buf, cut);
		(void)w;
		close(p[1]);
		struct kvc_reader *r;
		const struct kvc_header *h;
		int rc = kvc_reader_open_fd(&r, p[0], "<stdin>") || kvc_reader_next_header(r, &h);
		int got = rc;
		while (!rc && (got = kvc_reader_layer(r, NULL, NULL, 0)) >= 0)
			;
		char want[64];
		snprintf(want, sizeof want, "'<stdin>': truncated in layer %d", l);
		ok(got == KB_ERR_FORMAT && has(want), "through a pipe, cut in layer %d: %s", l, kb_error());
		ok(kvc_reader_layer(r, NULL, NULL, 0) == KB_ERR_FORMAT && has(want), "the error is sticky");
		kvc_reader_free(r);
		close(p[0]);
	}
	free(buf);
	cache_free(&c);
}

static void test_corruption(void)
{
	struct cache c;
	cache_make(&c, 3, 2, 32, 4, KVC_Q8_0, 5);
	size_t len;
	uint8_t *buf = to_mem(&c, &len);
	size_t ends[4];
	part_ends(buf, len, ends, 3);
	ok(read_mem_all(buf, len) == KB_OK, "the stream reads");

	/* every bit flip in the header past the version: a corrupt header */
	int bad = 0;
	char why[300] = "";
	for (size_t i = 8; i < ends[0]; i++) {
		int bit = (int)(i * 5 % 8);
		buf[i] ^= (uint8_t)(1 << bit);
		int rc = read_mem_all(buf, len);
		buf[i] ^= (uint8_t)(1 << bit);
		if (rc != KB_ERR_FORMAT || !has("corrupt header"))
			if (!bad++)
				snprintf(why, sizeof why, "byte %zu: %d '%s'", i, rc, kb_error());
	}
	ok(bad == 0, "each of %zu header bit flips: corrupt header%s%s", ends[0] - 8, bad ? " -- " : "", why);
	buf[200] ^= 4;
	ok(read_mem_all(buf, len) == KB_ERR_FORMAT && has("header checksum mismatch (corrupt header)"),
	   "a flipped token id: %s", kb_error());
	buf[200] ^= 4;

	/* every bit flip in each layer's payload, record or CRC: names the layer */
	for (int l = 0; l < 3; l++) {
		bad = 0;
		char want[64];
		snprintf(want, sizeof want, "'t.kvc': layer %d: ", l);
		for (size_t i = ends[l]; i < ends[l + 1]; i++) {
			buf[i] ^= 0x10;
			int rc = read_mem_all(buf, len);
			buf[i] ^= 0x10;
			if (rc != KB_ERR_FORMAT || !has(want) || !has("corrupt"))
				if (!bad++)
					snprintf(why, sizeof why, "byte %zu: %d '%s'", i, rc, kb_error());
		}
		ok(bad == 0, "each of %zu byte flips in layer %d names the layer%s%s", ends[l + 1] - ends[l], l,
		   bad ? " -- " : "", why);
	}
	size_t mid = ends[1] + 64 + 10;
	buf[mid] ^= 1;
	ok(read_mem_all(buf, len) == KB_ERR_FORMAT && has("layer 1: payload checksum mismatch (corrupt layer)"),
	   "a flipped payload bit: %s", kb_error());
	buf[mid] ^= 1;
	bad = 0;
	for (size_t i = ends[3]; i < len; i++) {
		buf[i] ^= 0x80;
		int rc = read_mem_all(buf, len);
		buf[i] ^= 0x80;
		if (rc != KB_ERR_FORMAT || !has("end record") || !has("corrupt"))
			if (!bad++)
				snprintf(why, sizeof why, "byte %zu: %d '%s'", i, rc, kb_error());
	}
	ok(bad == 0, "each byte flip in the end record is caught%s%s", bad ? " -- " : "", why);

	/* the version: another major is refused by name, the magic is required */
	buf[4] = 2;
	ok(read_mem_all(buf, len) == KB_ERR_UNSUPPORTED && has("kvc major version 2 is not supported"),
	   "another major: %s", kb_error());
	buf[4] = 1;
	buf[1] = 'k';
	ok(read_mem_all(buf, len) == KB_ERR_FORMAT && has("'t.kvc': not a kvc stream (bad magic)"), "bad magic: %s",
	   kb_error());
	buf[1] = 'K';
	const char *text = "Once upon a time there was a cache.\n";
	ok(read_mem_all((const uint8_t *)text, strlen(text)) == KB_ERR_FORMAT && has("not a kvc stream (bad magic)"),
	   "text: %s", kb_error());
	ok(read_mem_all((const uint8_t *)"GGUF\3\0\0\0", 8) == KB_ERR_FORMAT && has("bad magic"), "a GGUF file");
	ok(read_mem_all((const uint8_t *)"x", 1) == KB_ERR_FORMAT && has("bad magic"), "one byte of garbage");

	/* a newer minor with 12 bytes of header fields this reader does not know */
	size_t hs = kb_le32(buf + 8), extra = 12;
	size_t first_rec = ends[0] + (size_t)((KVC_ALIGN - 16 - ends[0] % KVC_ALIGN + KVC_ALIGN) % KVC_ALIGN);
	size_t nhs = hs + extra, nfirst = nhs + (KVC_ALIGN - 16 - nhs % KVC_ALIGN + KVC_ALIGN) % KVC_ALIGN;
	size_t nlen = nfirst + (len - first_rec);
	uint8_t *nb = calloc(1, nlen);
	memcpy(nb, buf, hs - 4);
	memcpy(nb + hs - 4, "future field", extra);
	nb[6] = 7; /* minor 7 */
	nb[8] = (uint8_t)nhs, nb[9] = (uint8_t)(nhs >> 8), nb[10] = (uint8_t)(nhs >> 16), nb[11] = 0;
	uint32_t crc = crc32c(0, nb, nhs - 4);
	for (int i = 0; i < 4; i++)
		nb[nhs - 4 + i] = (uint8_t)(crc >> 8 * i);
	memcpy(nb + nfirst, buf + first_rec, len - first_rec);
	/* the end digest chains the header CRC: recompute it */
	uint8_t *end = nb + nlen - 16;
	uint32_t dg = 0;
	uint8_t b4[4];
	for (int i = 0; i < 4; i++)
		b4[i] = (uint8_t)(crc >> 8 * i);
	dg = crc32c(0, b4, 4);
	/* the layer CRCs are at the ends of the layer parts, shifted by nfirst - first_rec */
	for (int l = 0; l < 3; l++) {
		size_t at = ends[l + 1] - 4 + (nfirst - first_rec);
		dg = crc32c(dg, nb + at, 4);
	}
	for (int i = 0; i < 4; i++)
		end[8 + i] = (uint8_t)(dg >> 8 * i);
	uint32_t ec = crc32c(0, end, 12);
	for (int i = 0; i < 4; i++)
		end[12 + i] = (uint8_t)(ec >> 8 * i);
	struct kvc_reader *r;
	const struct kvc_header *h;
	float *k, *v;
	int rc = kvc_reader_open_mem(&r, nb, nlen, "new.kvc") || read_one(r, &h, &k, &v);
	ok(rc == KB_OK && h->minor == 7 && same_header(h, &c.h), "a newer minor's unknown header fields are skipped (%s)",
	   rc ? kb_error() : "ok");
	free(k);
	free(v);
	kvc_reader_free(r);
	/* the same bytes claiming this minor: the size does not match the fields */
	nb[6] = KVC_MINOR;
	crc = crc32c(0, nb, nhs - 4);
	for (int i = 0; i < 4; i++)
		nb[nhs - 4 + i] = (uint8_t)(crc >> 8 * i);
	ok(read_mem_all(nb, nlen) == KB_ERR_FORMAT && has("does not match its fields"),
	   "extra header bytes at this minor are corrupt: %s", kb_error());
	free(nb);

	/* random mutations never crash and always fail cleanly or read */
	int weird = 0;
	for (int it = 0; it < 300; it++) {
		uint8_t *m = malloc(len);
		memcpy(m, buf, len);
		int nflip = 1 + (int)tap_randf(0, 4);
		for (int j = 0; j < nflip; j++)
			m[(size_t)tap_randf(0, (float)len) % len] ^= (uint8_t)(1 + tap_randf(0, 255));
		size_t ml = it % 3 ? len : (size_t)tap_randf(0, (float)len);
		rc = read_mem_all(m, ml);
		if (rc != KB_OK && rc != KB_ERR_FORMAT && rc != KB_ERR_UNSUPPORTED)
			weird++;
		free(m);
	}
	ok(weird == 0, "300 random mutations: each reads or fails with a format error");
	free(buf);
	cache_free(&c);
}

static void test_check_model(void)
{
	struct cache c;
	cache_make(&c, 2, 1, 32, 3, KVC_F16, 0);
	uint8_t fp[32], tfp[32];
	memcpy(fp, c.h.model_fp, 32);
	memcpy(tfp, c.h.tok_fp, 32);
	ok(kvc_check_model(&c.h, fp, tfp, 2, 1, 32) == KB_OK, "the same model fits");
	ok(kvc_check_model(&c.h, NULL, NULL, 2, 1, 32) == KB_OK, "NULL fingerprints are not checked");
	fp[0] = 0x5e, fp[1] = 0x6f, fp[2] = 0x7a, fp[3] = 0x8b;
	char want[96];
	snprintf(want, sizeof want, "cache was made with another model (fingerprint %02x%02x%02x%02x\xe2\x80\xa6 vs 5e6f7a8b\xe2\x80\xa6)",
		 c.h.model_fp[0], c.h.model_fp[1], c.h.model_fp[2], c.h.model_fp[3]);
	ok(kvc_check_model(&c.h, fp, tfp, 2, 1, 32) == KB_ERR_MISMATCH && has(want), "another model: %s", kb_error());
	memcpy(fp, c.h.model_fp, 32);
	tfp[31] ^= 1;
	ok(kvc_check_model(&c.h, fp, tfp, 2, 1, 32) == KB_ERR_MISMATCH && has("another tokenizer"),
	   "another tokenizer: %s", kb_error());
	ok(kvc_check_model(&c.h, fp, NULL, 30, 3, 64) == KB_ERR_MISMATCH &&
		   has("cache shape 2 layers x 1 kv heads x 32 does not match the model's 30 x 3 x 64"),
	   "another shape: %s", kb_error());
	cache_free(&c);
}

/* Recompute the header CRC of the cache at buf (after editing a field). */
static void fix_header_crc(uint8_t *buf)
{
	uint32_t size = kb_le32(buf + 8), crc = crc32c(0, buf, size - 4);
	for (int i = 0; i < 4; i++)
		buf[size - 4 + i] = (uint8_t)(crc >> 8 * i);
}

/* Token-evicted (sparse) caches, minor 1: rows per layer, tokens per kv head. */
static void test_sparse(void)
{
	struct cache c;
	cache_make(&c, 3, 2, 8, 10, KVC_F32, 7);
	int32_t rows[3] = { 4, 10, 2 };
	int32_t keep[2 * 16] = { 0, 3, 5, 9, 1, 2, 8, 9,           /* layer 0: heads 0, 1 */
				 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,        /* layer 1: head 0 */
				 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,        /* head 1 */
				 7, 9, 6, 9 };                        /* layer 2 */
	c.h.layer_rows = rows;
	c.h.keep = keep;
	ok(kvc_header_check(&c.h) == KB_OK, "a sparse header passes the writer's check (%s)", kb_error());
	size_t len;
	uint8_t *buf = to_mem(&c, &len);
	ASSERT(buf);
	struct kvc_reader *r;
	const struct kvc_header *h;
	ASSERT(kvc_reader_open_mem(&r, buf, len, "t.kvc") == KB_OK);
	int rc = kvc_reader_next_header(r, &h);
	ok(rc == KB_OK && h->minor == 1 && kvc_is_sparse(h) && same_header(h, &c.h) &&
	   !memcmp(h->layer_rows, rows, sizeof rows) && !memcmp(h->keep, keep, sizeof keep),
	   "read back: minor 1, the rows per layer and each head's kept tokens (%s)", kb_error());
	ok(kvc_layer_rows(h, 2) == 2 && kvc_keep(h, 2, 1)[0] == 6 && kvc_keep(h, 0, 1)[3] == 9 &&
	   h->payload_total == 2 * 16 * 16 * 4u, "kvc_layer_rows, kvc_keep and the payload total");
	bool same = true;
	for (int l = 0; l < 3; l++) {
		float k[10 * 16], v[10 * 16];
		rc = kvc_reader_layer(r, k, v, 16);
		same &= rc == l && !memcmp(k, c.k + l * layer_stride(&c), (size_t)rows[l] * 16 * 4) &&
			!memcmp(v, c.v + l * layer_stride(&c), (size_t)rows[l] * 16 * 4);
	}
	ok(same && kvc_reader_layer(r, NULL, NULL, 0) == KB_EOF, "each layer holds its own number of rows, exactly");
	kvc_reader_free(r);

	/* a dense reader's view of old streams is unchanged: a minor-0 dense cache still reads */
	int32_t *saved_rows = c.h.layer_rows;
	c.h.layer_rows = NULL, c.h.keep = NULL;
	size_t dlen;
	uint8_t *dense = to_mem(&c, &dlen);
	dense[6] = 0; /* minor 0 */
	fix_header_crc(dense);
	ASSERT(kvc_reader_open_mem(&r, dense, dlen, "t.kvc") == KB_OK);
	ok(kvc_reader_next_header(r, &h) == KB_OK && h->minor == 0 && !kvc_is_sparse(h),
	   "a dense cache's header marked minor 0 reads (%s)", kb_error());
	kvc_reader_free(r);
	free(dense);
	c.h.layer_rows = saved_rows, c.h.keep = keep;

	/* the writer refuses bad selections */
	static const struct {
		int layer, idx, value;
		const char *why;
	} bad_w[] = {
		{ 0, -1, 0, "keeps 0 rows" },  { 0, -1, 11, "keeps 11 rows" }, { 0, 1, 0, "not ascending" },
		{ 0, 0, 10, "out of range" }, { 0, 0, -1, "out of range" },
	};
	for (size_t i = 0; i < sizeof bad_w / sizeof *bad_w; i++) {
		int32_t r2[3], k2[32];
		memcpy(r2, rows, sizeof r2), memcpy(k2, keep, sizeof k2);
		if (bad_w[i].idx < 0)
			r2[bad_w[i].layer] = bad_w[i].value;
		else
			k2[bad_w[i].idx] = bad_w[i].value;
		c.h.layer_rows = r2, c.h.keep = k2;
		ok(kvc_header_check(&c.h) == KB_ERR_ARG && has(bad_w[i].why), "the writer refuses '%s': %s",
		   bad_w[i].why, kb_error());
	}
	c.h.layer_rows = rows, c.h.keep = NULL;
	ok(kvc_header_check(&c.h) == KB_ERR_ARG, "layer_rows without keep: %s", kb_error());
	c.h.layer_rows = rows, c.h.keep = keep;

	/* the reader refuses them too (the CRC made right, so the fields are what is checked) */
	uint32_t hs = kb_le32(buf + 8);
	size_t keep_at = hs - 4 - 4 * 32, rows_at = keep_at - 4 * 3;
	uint8_t *b2 = malloc(len);
	static const struct {
		size_t off;
		uint32_t value;
		const char *why;
	} bad_r[] = {
		{ 0, 3, "not ascending" }, { 4, 12, "out of range" }, { 0xffff, 0, "keeps 0 rows" },
		{ 0xfffe, 0, "keeps 11 rows" },
	};
	for (size_t i = 0; i < sizeof bad_r / sizeof *bad_r; i++) {
		memcpy(b2, buf, len);
		if (bad_r[i].off == 0xffff) {
			/* layer 0: 0 rows, layer 2: 6 (the same count of kept entries) */
			b2[rows_at] = 0, b2[rows_at + 8] = 6;
		} else if (bad_r[i].off == 0xfffe) {
			/* layer 1: 11 rows of 10 tokens, layer 2: 1 */
			b2[rows_at + 4] = 11, b2[rows_at + 8] = 1;
		} else {
			size_t at = keep_at + 4 * bad_r[i].off;
			for (int j = 0; j < 4; j++)
				b2[at + j] = (uint8_t)(bad_r[i].value >> 8 * j);
		}
		fix_header_crc(b2);
		rc = read_mem_all(b2, len);
		ok(rc == KB_ERR_FORMAT && has("bad header") && has(bad_r[i].why), "the reader refuses '%s': %s",
		   bad_r[i].why, kb_error());
	}
	/* rows that claim more keep entries than the header holds */
	memcpy(b2, buf, len);
	b2[rows_at + 4] = 200;
	fix_header_crc(b2);
	ok(read_mem_all(b2, len) == KB_ERR_FORMAT && has("does not match its fields"),
	   "rows claiming more kept tokens than the header holds: %s", kb_error());
	/* the sparse flag in a minor-0 header */
	memcpy(b2, buf, len);
	b2[6] = 0;
	fix_header_crc(b2);
	ok(read_mem_all(b2, len) == KB_ERR_FORMAT && has("sparse flag"), "the sparse flag at minor 0: %s", kb_error());
	/* every truncation is an error, never a crash */
	int crashes = 0;
	for (size_t n = 0; n < len; n++)
		crashes += read_mem_all(buf, n) != KB_ERR_FORMAT && n > 0;
	ok(crashes == 0, "each of %zu truncations is a format error", len - 1);
	free(b2);
	free(buf);
	c.h.layer_rows = NULL, c.h.keep = NULL;
	cache_free(&c);
}

/* n_tokens 0 and a one-layer cache are valid. */
static void test_edges(void)
{
	struct cache c;
	cache_make(&c, 1, 1, 32, 0, KVC_Q8_0, 0);
	c.h.argc = 0;
	c.h.argv = NULL;
	c.h.tool = NULL;
	size_t len;
	uint8_t *buf = to_mem(&c, &len);
	struct kvc_reader *r;
	const struct kvc_header *h;
	float *k, *v;
	int rc = !buf || kvc_reader_open_mem(&r, buf, len, "e") || read_one(r, &h, &k, &v);
	ok(rc == KB_OK && h->n_tokens == 0 && h->argc == 0 && h->tool && !*h->tool && h->payload_bytes == 0,
	   "an empty cache (no tokens, no argv, no tool) round-trips in %zu bytes", len);
	free(k);
	free(v);
	ok(kvc_reader_layer(r, NULL, NULL, 0) == KB_EOF, "layer after the end: KB_EOF");
	kvc_reader_free(r);
	free(buf);
	struct kvc_reader *r2;
	ok(kvc_reader_open_mem(&r2, "", 0, "e") == KB_OK && kvc_reader_layer(r2, NULL, NULL, 0) == KB_ERR_ARG &&
		   has("no kvc header"),
	   "a layer before any header is a usage error");
	kvc_reader_free(r2);
	kvc_reader_free(NULL);
	cache_free(&c);
}

/* The names of argv joined by spaces (issue 10 item 13: never a value). */
static const char *names_of(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "model", required_argument, NULL, 'm' }, { "query", required_argument, NULL, 'Q' },
		{ "prefix", required_argument, NULL, 'X' }, { "store", required_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },        { "color", optional_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },      { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static char out[512];
	char **names;
	int n;
	out[0] = '\0';
	if (kvc_option_names(argc, argv, "m:p:qvo::", lo, &names, &n) != KB_OK)
		return "(error)";
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", names[i]);
	free(names);
	return out;
}

static void test_option_names(void)
{
	char *a1[] = { "kvblend-blend", "--store", "/home/u/st", "--query", "SECRET one", "-m", "m.gguf", "OPERAND" };
	ok(strcmp(names_of(8, a1), "--store --query -m") == 0, "option names only: %s", names_of(8, a1));
	char *a2[] = { "t", "--query=SECRET", "--pre=SECRET", "-pSECRET", "-vq", "-p", "-SECRET", "--color", "SECRET",
		       "--color=SECRET", "-oSECRET", "-o", "SECRET" };
	const char *got = names_of(13, a2);
	ok(strcmp(got, "--query --prefix -p -v -q -p --color --color -o -o") == 0 && !strstr(got, "SECRET"),
	   "values attached, abbreviations, clusters, optional values, a value like an option: %s", got);
	char *a3[] = { "t", "--ver", "--nosuch", "-Z", "--", "--query", "SECRET", "-m" };
	got = names_of(8, a3);
	ok(strcmp(got, "") == 0, "ambiguous and unknown options and everything after -- are dropped: '%s'", got);
	char *a4[] = { "t" };
	ok(strcmp(names_of(1, a4), "") == 0, "no options: no names");

	/* a setting's value: "--template" becomes "--template=chatml", else it is added */
	static const struct option lo[] = { { "template", required_argument, NULL, 'T' },
					    { "model", required_argument, NULL, 'm' }, { NULL, 0, NULL, 0 } };
	char *a5[] = { "t", "-m", "m.gguf", "--template", "auto" };
	for (int given = 1; given >= 0; given--) {
		char **names;
		int n;
		char joined[256] = "";
		int rc = kvc_option_names(given ? 5 : 3, a5, "m:", lo, &names, &n);
		if (rc == KB_OK)
			rc = kvc_option_names_set(&names, &n, "template", "chatml");
		for (int i = 0; rc == KB_OK && i < n; i++)
			snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? " " : "", names[i]);
		ok(rc == KB_OK && !strcmp(joined, "-m --template=chatml"), "kvc_option_names_set, --template %s: %s",
		   given ? "given (replaced)" : "not given (added)", joined);
		free(names);
	}
}

int main(void)
{
	tap_seed();
	snprintf(tmpdir, sizeof tmpdir, "%s/test_kvc.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	test_header_api();
	test_round_trip();
	test_decode_exhaustive();
	test_row_stride();
	test_concat();
	test_pipe_pipelined();
	test_file_vs_pipe();
	test_atomic();
	test_truncation();
	test_corruption();
	test_check_model();
	test_edges();
	test_sparse();
	test_option_names();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
