/* test_safetensors.c — the safetensors reader: a file with every dtype (rows
 * read back at unaligned offsets), metadata, scalars and empty tensors; then
 * crafted bad files, each refused with its own message; files by path (mmap,
 * a directory, a missing one); every truncation of a good file; random byte
 * flips that must never crash. */
#include <fcntl.h>
#include <sys/stat.h>

#include "quant.h"
#include "safetensors.h"
#include "tap.h"

static int has(const char *needle)
{
	return strstr(kb_error(), needle) != NULL;
}

/* A safetensors image: the header's length, the header, n_data bytes i * 7 + 3. */
static uint8_t *image(const char *header, size_t n_data, size_t *len)
{
	size_t h = strlen(header);
	*len = 8 + h + n_data;
	uint8_t *b = malloc(*len);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)h >> (8 * i));
	memcpy(b + 8, header, h);
	for (size_t i = 0; i < n_data; i++)
		b[8 + h + i] = (uint8_t)(i * 7 + 3);
	return b;
}

static int open_header(struct safetensors **st, const char *header, size_t n_data, uint8_t **buf)
{
	size_t len;
	*buf = image(header, n_data, &len);
	return safetensors_open_mem(st, *buf, len, "t.safetensors");
}

static void put_f32(uint8_t *p, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* The good file: F32 [2, 3] at 0, F16 [3] at 24, BF16 [2, 2] at 31 (odd), a scalar,
 * an empty tensor inside another's bytes, metadata, padding. */
static const char good_header[] =
	"{\"__metadata__\": {\"format\": \"pt\", \"note\": \"x\"},"
	" \"w.bf16\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [31, 39]},"
	" \"w.f32\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
	" \"v.f16\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [24, 30]},"
	" \"scalar\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [39, 43]},"
	" \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [4, 4]}}    ";
#define GOOD_DATA 43

static uint8_t *good_image(size_t *len)
{
	uint8_t *b = image(good_header, GOOD_DATA, len);
	uint8_t *d = b + 8 + strlen(good_header);
	for (int i = 0; i < 6; i++)
		put_f32(d + 4 * i, (float)i - 2.5f);
	put_u16(d + 24, fp32_to_fp16(1.5f));
	put_u16(d + 26, fp32_to_fp16(-2.0f));
	put_u16(d + 28, fp32_to_fp16(0.25f));
	for (int i = 0; i < 4; i++)
		put_u16(d + 31 + 2 * i, fp32_to_bf16((float)(i + 1) * 0.5f));
	put_f32(d + 39, 42.0f);
	return b;
}

static void test_good(void)
{
	size_t len;
	uint8_t *b = good_image(&len);
	struct safetensors *st;
	int rc = safetensors_open_mem(&st, b, len, "good");
	if (!ok(rc == KB_OK, "a file with F32, F16, BF16, a scalar, an empty tensor and metadata opens (%s)",
		kb_error())) {
		free(b);
		return;
	}
	ok(st->n_tensors == 5, "5 tensors (metadata apart)");
	ok(!strcmp(st->tensors[0].name, "w.f32") && !strcmp(st->tensors[4].name, "scalar"),
	   "in data order: w.f32 first, scalar last");
	ok(safetensors_meta(st, "format") && !strcmp(safetensors_meta(st, "format"), "pt") &&
		   !safetensors_meta(st, "nope"),
	   "metadata by key");
	const struct safetensors_tensor *t = safetensors_find(st, "w.f32");
	char s[64];
	ok(t && t->type == QTYPE_F32 && t->n_dims == 2 && safetensors_n_rows(t) == 2 && safetensors_row_len(t) == 3 &&
		   !strcmp(safetensors_shape_str(t->shape, t->n_dims, s, sizeof s), "[2, 3]"),
	   "w.f32: F32 [2, 3], 2 rows of 3 (%s)", s);
	float row[4] = { 0 };
	safetensors_row_to_float(t, 1, row);
	ok(row[0] == 0.5f && row[2] == 2.5f, "w.f32 row 1 reads back (%g %g %g)", row[0], row[1], row[2]);
	t = safetensors_find(st, "v.f16");
	safetensors_row_to_float(t, 0, row);
	ok(t->type == QTYPE_F16 && row[0] == 1.5f && row[1] == -2.0f && row[2] == 0.25f, "v.f16 reads back");
	t = safetensors_find(st, "w.bf16");
	safetensors_row_to_float(t, 1, row);
	ok(t->type == QTYPE_BF16 && ((uintptr_t)t->data & 1) && row[0] == 1.5f && row[1] == 2.0f,
	   "w.bf16 at an odd offset reads back (%g %g)", row[0], row[1]);
	t = safetensors_find(st, "scalar");
	safetensors_row_to_float(t, 0, row);
	ok(t->n_dims == 0 && t->n_elements == 1 && row[0] == 42.0f &&
		   !strcmp(safetensors_shape_str(t->shape, 0, s, sizeof s), "[]"),
	   "a scalar: rank 0, one element");
	t = safetensors_find(st, "empty");
	ok(t && t->n_elements == 0 && t->size == 0 && safetensors_n_rows(t) == 0, "an empty tensor [0, 5]");
	ok(!safetensors_find(st, "__metadata__") && !safetensors_find(st, "w"), "find: only tensors, whole names");
	ok(!strcmp(safetensors_dtype_name(QTYPE_BF16), "BF16"), "dtype names as the format spells them");
	safetensors_close(st);
	safetensors_close(NULL);

	/* every truncation is refused, never read past */
	int bad = 0;
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, b, n);
		if (safetensors_open_mem(&st, cut, n, "cut") == KB_OK) {
			bad++;
			safetensors_close(st);
		}
		free(cut);
	}
	ok(bad == 0, "each of the %zu truncations is refused", len);
	free(b);
}

static const struct {
	const char *what, *header;
	size_t n_data;
	int rc;
	const char *msg;
} bad[] = {
	{ "not JSON", "{\"a\": ", 0, KB_ERR_FORMAT, "'t.safetensors': header: " },
	{ "a JSON array", "[]", 0, KB_ERR_FORMAT, "header is not a JSON object" },
	{ "a tensor that is not an object", "{\"a\": 3}", 0, KB_ERR_FORMAT, "tensor 'a' is not an object" },
	{ "no dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KB_ERR_FORMAT,
	  "tensor 'a': dtype is not a string" },
	{ "an unknown dtype", "{\"a\": {\"dtype\": \"F7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KB_ERR_FORMAT,
	  "tensor 'a': unknown dtype 'F7'" },
	{ "an integer dtype", "{\"a\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
	  KB_ERR_UNSUPPORTED, "tensor 'a' has dtype I64 (F32, F16 and BF16 are supported)" },
	{ "a shape that is not a list", "{\"a\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16,
	  KB_ERR_FORMAT, "tensor 'a': shape is not an array" },
	{ "rank 5", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1], \"data_offsets\": [0, 4]}}", 4,
	  KB_ERR_FORMAT, "tensor 'a' has 5 dimensions (at most 4)" },
	{ "a negative dimension", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
	  KB_ERR_FORMAT, "tensor 'a': dimension 0 is not a count" },
	{ "a fractional dimension", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 1.5], \"data_offsets\": [0, 4]}}", 4,
	  KB_ERR_FORMAT, "tensor 'a': dimension 1 is not a count" },
	{ "an element count that overflows",
	  "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4], \"data_offsets\": [0, 4]}}", 4,
	  KB_ERR_FORMAT, "tensor 'a': too many elements" },
	{ "a byte count that overflows",
	  "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 4]}}", 4,
	  KB_ERR_FORMAT, "tensor 'a': too many elements" },
	{ "one offset", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, KB_ERR_FORMAT,
	  "tensor 'a': data_offsets is not [begin, end]" },
	{ "begin after end", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
	  KB_ERR_FORMAT, "data_offsets is not [begin, end] with begin <= end" },
	{ "a negative offset", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8,
	  KB_ERR_FORMAT, "data_offsets is not [begin, end]" },
	{ "data past the end", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12,
	  KB_ERR_FORMAT, "tensor 'a': data [0, 16) ends past the data section (12 bytes): truncated?" },
	{ "a size that does not fit the shape", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 8]}}",
	  16, KB_ERR_FORMAT, "tensor 'a': 8 bytes of data for 4 F32 elements (16 bytes)" },
	{ "overlapping tensors",
	  "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
	  " \"b\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [14, 22]}}", 24, KB_ERR_FORMAT,
	  "the data of tensors 'a' and 'b' overlap" },
	{ "a tensor inside another",
	  "{\"a\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
	  " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [32, 36]},"
	  " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [8, 12]}}", 36, KB_ERR_FORMAT,
	  "the data of tensors 'a' and 'b' overlap" },
	{ "a name twice",
	  "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	  " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, KB_ERR_FORMAT,
	  "a tensor name comes twice" },
	{ "an empty name", "{\"\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KB_ERR_FORMAT,
	  "a tensor has an empty name" },
	{ "metadata that is not an object", "{\"__metadata__\": [\"pt\"]}", 0, KB_ERR_FORMAT,
	  "__metadata__ is not an object" },
	{ "a metadata value that is not a string", "{\"__metadata__\": {\"n\": 1}}", 0, KB_ERR_FORMAT,
	  "__metadata__ 'n' is not a string" },
};

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct safetensors *st = (void *)1;
		uint8_t *b;
		int rc = open_header(&st, bad[i].header, bad[i].n_data, &b);
		ok(rc == bad[i].rc && st == NULL && has(bad[i].msg), "%s: refused (%s)", bad[i].what, kb_error());
		free(b);
	}
	/* a NUL byte in the header */
	static const char nul[] = "{\"a\0\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}";
	uint8_t buf[8 + sizeof nul + 4] = { sizeof nul - 1 };
	memcpy(buf + 8, nul, sizeof nul - 1);
	struct safetensors *st;
	ok(safetensors_open_mem(&st, buf, sizeof buf - 1, "nul") == KB_ERR_FORMAT && has("'nul': header: "),
	   "a NUL byte in the header is refused (%s)", kb_error());
	/* lengths */
	uint8_t small[5] = { 0 };
	ok(safetensors_open_mem(&st, small, sizeof small, "s") == KB_ERR_FORMAT && has("5 bytes: too short"),
	   "5 bytes: too short (%s)", kb_error());
	uint8_t lie[20] = { 0xe8, 0x03 }; /* a 1000-byte header in a 20-byte file */
	ok(safetensors_open_mem(&st, lie, sizeof lie, "lie") == KB_ERR_FORMAT &&
		   has("header of 1000 bytes, but only 12 follow: truncated, or not a safetensors file"),
	   "a header longer than the file (%s)", kb_error());
	uint8_t huge[16] = { 0, 0, 0, 0, 0, 0, 0, 0x80 };
	ok(safetensors_open_mem(&st, huge, sizeof huge, "huge") == KB_ERR_FORMAT && has("only 8 follow"),
	   "a header length of 2^63 (%s)", kb_error());
}

static void test_files(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "good");
	size_t len;
	uint8_t *b = good_image(&len);
	ok(fd >= 0 && write(fd, b, len) == (ssize_t)len, "wrote a file");
	close(fd);
	free(b);
	struct safetensors *st;
	int rc = safetensors_open(&st, path);
	ok(rc == KB_OK && st->mapped && st->n_tensors == 5 && !strcmp(st->path, path), "opened by path (mmap)");
	safetensors_close(st);
	ok(safetensors_open(&st, tap_tmpdir()) == KB_ERR_IO && has("is a directory"), "a directory: %s", kb_error());
	snprintf(path, sizeof path, "%s/nope.safetensors", tap_tmpdir());
	ok(safetensors_open(&st, path) == KB_ERR_IO && has("No such file or directory") && has(path),
	   "a missing file: %s", kb_error());
	fd = tap_mkstemp(path, sizeof path, "empty");
	close(fd);
	ok(safetensors_open(&st, path) == KB_ERR_FORMAT && has("0 bytes: too short"), "an empty file: %s", kb_error());
	/* safetensors' limit of 100 MB of header, in a sparse file */
	fd = tap_mkstemp(path, sizeof path, "limit");
	uint8_t len8[8] = { 0x01, 0xe1, 0xf5, 0x05 }; /* 100000001 */
	ok(fd >= 0 && write(fd, len8, 8) == 8 && ftruncate(fd, 8 + 100000001 + 8) == 0, "a sparse file");
	close(fd);
	ok(safetensors_open(&st, path) == KB_ERR_FORMAT && has("header of 100000001 bytes (the limit is 100000000)"),
	   "a header over the limit: %s", kb_error());
	unlink(path);
}

/* Random byte flips in the good file: open or refuse, never crash; what opens reads. */
static void test_mutations(void)
{
	size_t len;
	uint8_t *b = good_image(&len);
	int opened = 0;
	tap_seed();
	for (int k = 0; k < 3000; k++) {
		uint8_t *m = malloc(len);
		memcpy(m, b, len);
		int flips = 1 + (int)tap_randf(0, 3);
		for (int f = 0; f < flips; f++)
			m[(size_t)tap_randf(0, (float)len) % len] = (uint8_t)tap_randf(0, 256);
		struct safetensors *st;
		int rc = safetensors_open_mem(&st, m, len, "m");
		if (rc == KB_OK) {
			opened++;
			for (size_t i = 0; i < st->n_tensors; i++) {
				const struct safetensors_tensor *t = &st->tensors[i];
				int64_t n = safetensors_row_len(t);
				float *row = malloc((size_t)(n > 0 ? n : 1) * sizeof *row);
				for (int64_t r = 0; r < safetensors_n_rows(t) && n > 0 && n < (1 << 20); r++)
					safetensors_row_to_float(t, r, row);
				free(row);
			}
			safetensors_close(st);
		} else if (rc != KB_ERR_FORMAT && rc != KB_ERR_UNSUPPORTED) {
			ok(0, "mutation %d: unexpected status %d", k, rc);
		}
		free(m);
	}
	ok(1, "3000 mutated files: opened (%d) or refused, never a crash", opened);
	free(b);
}

int main(void)
{
	test_good();
	test_bad();
	test_files();
	test_mutations();
	return done_testing();
}
