/* fuzz_kvc.c — fuzz target for the .kvc reader (common/kvc.c).
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS]     (clang -fsanitize=fuzzer,address,undefined)
 * standalone:  cc -DKVBLEND_FUZZ_MAIN ... builds a main() that runs the target
 *              over the files and directories named on the command line, and
 *              `fuzz_kvc --write-seeds DIR` writes the seed corpus with the
 *              kvc writer (tests/fuzz/corpus/kvc/ was made that way, by
 *              `tests/fuzz/run.sh --seeds`).
 *
 * Each input is read twice, from memory and through a pipe (the buffered
 * reader), and both must agree on every status and message; then again with
 * every checksum it holds recomputed, so that mutations reach the checks of
 * the fields behind the checksums. Every cache
 * either reads (its header passes the writer's own check, every layer decodes
 * or verifies) or fails with KB_ERR_FORMAT / KB_ERR_UNSUPPORTED and a message
 * naming the input; anything else (a crash, a sanitizer report, an ASSERT, a
 * disagreement) is a bug.
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "kvc.h"
#include "util.h"

static volatile float sink;

/* One pass over the stream; appends a line per event (status and message) to
 * log (cap bytes) so two passes can be compared. decode: decode layers (else
 * verify only, or the raw form on odd caches). */
static void pass(struct kvc_reader *r, size_t input_size, bool decode, char *log, size_t cap)
{
	size_t n = 0;
	const struct kvc_header *h;
	int rc, n_cache = 0;
	log[0] = '\0';
	while ((rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		n_cache++;
		/* what a reader accepts, a writer would write */
		ASSERT(kvc_header_check(h) == KB_OK);
		ASSERT(h->major == KVC_MAJOR && h->tool && h->version && h->tokens && h->pos);
		ASSERT(h->n_logits == 0 || h->logits);
		ASSERT(h->stream_offset % KVC_ALIGN == 0);
		for (int i = 0; i < h->argc; i++)
			ASSERT(h->argv[i] != NULL);
		if (h->n_tokens)
			sink += (float)h->tokens[h->n_tokens - 1] + (float)h->pos[0];
		if (h->n_logits)
			sink += h->logits[h->n_logits - 1];
		uint8_t fp[32] = { 0 };
		int mrc = kvc_check_model(h, fp, fp, h->n_layer, h->n_kv_head, h->head_dim);
		ASSERT(mrc == KB_OK || mrc == KB_ERR_MISMATCH);
		size_t kv_dim = (size_t)h->n_kv_head * (size_t)h->head_dim;
		size_t floats = (size_t)h->n_tokens * kv_dim;
		float *k = NULL, *v = NULL;
		/* a payload larger than the input cannot be there: verify only */
		if (decode && h->payload_bytes <= input_size) {
			k = malloc(floats ? floats * sizeof(float) : 1);
			v = malloc(floats ? floats * sizeof(float) : 1);
			ASSERT(k && v);
		}
		int l, want = 0;
		for (;;) {
			if (!decode && n_cache % 2 && !kvc_codec_bits(h->dtype)) {
				const void *rk, *rv;
				size_t bytes;
				l = kvc_reader_layer_raw(r, &rk, &rv, &bytes);
				if (l >= 0) {
					ASSERT(bytes == (size_t)kvc_layer_rows(h, l) * kvc_row_bytes(h->dtype, kv_dim) &&
					       (const uint8_t *)rv == (const uint8_t *)rk + bytes);
					if (bytes)
						sink += ((const uint8_t *)rk)[0] + ((const uint8_t *)rv)[bytes - 1];
				}
			} else {
				l = kvc_reader_layer(r, k, v, kv_dim);
				if (l >= 0 && k && floats)
					sink += k[floats - 1] + v[0];
			}
			if (l < 0)
				break;
			ASSERT(l == want && l < h->n_layer);
			want++;
		}
		free(k);
		free(v);
		n += (size_t)snprintf(log + n, cap - n, "cache %d: %d layers, %d\n", n_cache, want, l);
		if (n >= cap)
			return;
		if (l != KB_EOF) {
			rc = l;
			break;
		}
		ASSERT(want == h->n_layer);
	}
	if (rc != KB_EOF) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_NOMEM);
		ASSERT(strncmp(kb_error(), "'fuzz': ", 8) == 0 || rc == KB_ERR_NOMEM);
		snprintf(log + n, cap - n, "error %d: %s\n", rc, kb_error());
	}
}

/* Read data from memory and through a pipe; the two must agree. */
static void check(const uint8_t *data, size_t size)
{
	static char log_mem[8192], log_pipe[8192];
	struct kvc_reader *r;
	(void)kvc_sniff(data, size);

	/* from memory, decoding */
	ASSERT(kvc_reader_open_mem(&r, data, size, "fuzz") == KB_OK);
	pass(r, size, true, log_mem, sizeof log_mem);
	kvc_reader_free(r);

	/* through a pipe (the buffered reader), verifying; inputs that fit the pipe */
	int p[2];
	if (size > 60000 || pipe(p) != 0)
		return;
	size_t done = 0;
	while (done < size) {
		ssize_t w = write(p[1], data + done, size - done);
		ASSERT(w > 0);
		done += (size_t)w;
	}
	close(p[1]);
	/* the first bytes taken before the reader, as a tool that sniffs does */
	uint8_t head[4];
	ssize_t got = read(p[0], head, size < 3 ? size : 3);
	ASSERT(got >= 0);
	ASSERT(kvc_reader_open_fd_prefix(&r, p[0], head, (size_t)got, "fuzz") == KB_OK);
	ASSERT(!kvc_reader_is_mapped(r));
	pass(r, size, false, log_pipe, sizeof log_pipe);
	kvc_reader_free(r);
	close(p[0]);
	if (strcmp(log_mem, log_pipe) != 0) {
		fprintf(stderr, "memory and pipe readers disagree:\n--- memory\n%s--- pipe\n%s", log_mem, log_pipe);
		ASSERT(!"memory and pipe readers disagree");
	}
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static uint32_t digest_add(uint32_t digest, uint32_t crc)
{
	uint8_t b[4];
	put32(b, crc);
	return crc32c(digest, b, 4);
}

/* Rewrite every checksum the structure lets us find (header CRC, layer CRCs,
 * the end record's digest and CRC), so mutations reach the checks behind
 * them. Returns true when a byte changed. */
static bool repair(uint8_t *d, size_t size)
{
	uint8_t *orig = malloc(size ? size : 1);
	ASSERT(orig);
	memcpy(orig, d, size);
	size_t off = 0;
	while (off + 16 <= size && kvc_sniff(d + off, 4)) {
		uint32_t hs = kb_le32(d + off + 8);
		if (hs < 148 || hs > size - off)
			break;
		uint32_t crc = crc32c(0, d + off, hs - 4);
		put32(d + off + hs - 4, crc);
		uint32_t digest = digest_add(0, crc);
		size_t p = off + hs;
		bool ended = false;
		for (;;) {
			p += (size_t)((KVC_ALIGN - 16 - p % KVC_ALIGN + KVC_ALIGN) % KVC_ALIGN);
			if (p > size || size - p < 16)
				break;
			if (memcmp(d + p, "LAYR", 4) == 0) {
				uint64_t n = kb_le64(d + p + 8);
				if (n > size - p - 16 || size - p - 16 - n < 4)
					break;
				uint32_t c = crc32c(0, d + p + 16, (size_t)n);
				put32(d + p + 16 + n, c);
				digest = digest_add(digest, c);
				p += 16 + (size_t)n + 4;
			} else if (memcmp(d + p, "KEND", 4) == 0) {
				put32(d + p + 8, digest);
				put32(d + p + 12, crc32c(0, d + p, 12));
				p += 16;
				ended = true;
				break;
			} else {
				break;
			}
		}
		if (!ended)
			break;
		off = p;
	}
	bool changed = memcmp(orig, d, size) != 0;
	free(orig);
	return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size);
	/* and once more with the checksums made right, to get past them */
	uint8_t *fixed = malloc(size ? size : 1);
	ASSERT(fixed);
	memcpy(fixed, data, size);
	if (repair(fixed, size))
		check(fixed, size);
	free(fixed);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_kvc"
#include "driver.h"

/* ---- the seed corpus: tiny caches, each well under 4 KB ---- */

static char *seed_argv[] = { "kvblend-prefill", "-p", "Once upon a time", "--dtype", "q8_0" };

static void seed_header(struct kvc_header *h, int n_layer, int n_kv_head, int head_dim, int n_tokens,
			int dtype, int32_t *tokens, int32_t *pos)
{
	kvc_header_init(h);
	h->n_layer = n_layer;
	h->n_kv_head = n_kv_head;
	h->head_dim = head_dim;
	h->dtype = (enum kvc_dtype)dtype;
	h->n_rot = head_dim;
	h->n_tokens = n_tokens;
	for (int i = 0; i < n_tokens; i++) {
		tokens[i] = 1 + 37 * i;
		pos[i] = i;
	}
	h->tokens = tokens;
	h->pos = pos;
	h->tool = "fuzz_kvc";
	h->version = "seed";
	h->argc = 5;
	h->argv = seed_argv;
	for (int i = 0; i < 32; i++)
		h->model_fp[i] = (uint8_t)i, h->tok_fp[i] = (uint8_t)(0xa0 + i);
}

/* Append one cache to fd; 0 on success. */
static int seed_cache(int fd, const struct kvc_header *h)
{
	static float kv[2 * 8 * 64];
	for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
		kv[i] = (float)((int)(i * 7919 % 201) - 100) / 37.0f;
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, fd, h);
	for (int l = 0; l < h->n_layer && !rc; l++)
		rc = kvc_writer_layer(w, l, kv + l, kv + 8 * 64 + l, (size_t)h->n_kv_head * h->head_dim);
	if (!rc)
		rc = kvc_writer_finish(w);
	kvc_writer_free(w);
	if (rc)
		fprintf(stderr, "fuzz_kvc: %s\n", kb_error());
	return rc != KB_OK;
}

static int open_seed(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		perror(path);
	return fd;
}

static int write_seeds(const char *dir)
{
	int32_t tokens[8], pos[8];
	float logits[16];
	for (int i = 0; i < 16; i++)
		logits[i] = (float)i - 7.5f;
	struct kvc_header h;
	int bad = 0, fd;
	static const struct {
		const char *name;
		int n_layer, n_kv_head, head_dim, n_tokens, dtype, n_logits;
	} seeds[] = {
		{ "f32.seed", 2, 1, 8, 3, KVC_F32, 0 },
		{ "f16-logits.seed", 2, 2, 4, 4, KVC_F16, 16 },
		{ "bf16.seed", 3, 1, 4, 2, KVC_BF16, 0 },
		{ "q8_0.seed", 2, 1, 32, 3, KVC_Q8_0, 0 },
		{ "empty.seed", 1, 1, 4, 0, KVC_F16, 0 },
		{ "kv4.seed", 2, 2, 4, 5, KVC_KV4, 0 },
		{ "kv2.seed", 1, 1, 8, 3, KVC_KV2, 16 },
	};
	for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
		seed_header(&h, seeds[i].n_layer, seeds[i].n_kv_head, seeds[i].head_dim, seeds[i].n_tokens,
			    seeds[i].dtype, tokens, pos);
		h.n_logits = seeds[i].n_logits;
		h.logits = seeds[i].n_logits ? logits : NULL;
		if (i == 2) {
			h.k_rotated = false;
			h.rope_mode = 2;
			h.rope_scaling = 2;
			h.rope_factor = 8;
			h.rope_orig_ctx = 8192;
		}
		if ((fd = open_seed(dir, seeds[i].name)) < 0)
			return 1;
		bad |= seed_cache(fd, &h);
		close(fd);
	}
	/* a stream of two caches */
	if ((fd = open_seed(dir, "two-caches.seed")) < 0)
		return 1;
	seed_header(&h, 1, 1, 4, 2, KVC_F16, tokens, pos);
	bad |= seed_cache(fd, &h);
	seed_header(&h, 2, 1, 32, 1, KVC_Q8_0, tokens, pos);
	bad |= seed_cache(fd, &h);
	close(fd);
	/* a token-evicted cache: 3 layers of 4, 2 and 3 rows, two kv heads keeping different tokens */
	if ((fd = open_seed(dir, "sparse.seed")) < 0)
		return 1;
	seed_header(&h, 3, 2, 4, 6, KVC_F16, tokens, pos);
	int32_t rows[3] = { 4, 2, 3 };
	int32_t keep[2 * (4 + 2 + 3)] = { 0, 1, 2, 5, 0, 3, 4, 5, /* layer 0: heads 0 and 1 */
					  4, 5, 1, 5,             /* layer 1 */
					  0, 2, 5, 3, 4, 5 };     /* layer 2 */
	h.layer_rows = rows;
	h.keep = keep;
	h.n_logits = 16;
	h.logits = logits;
	bad |= seed_cache(fd, &h);
	close(fd);
	return bad;
}

#endif
