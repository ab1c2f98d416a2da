/* test_gguf.c — the GGUF reader and writer, the fingerprints, SHA-256 and CRC32C.
 *
 * Round trips through the writer, a hand-built "mini" file whose every byte
 * offset is truncated and whose fields are corrupted one at a time (each error
 * checked by its message), random mutations that must never crash, and the
 * real stories260K model when ../shared is there.
 */
#include <errno.h>
#include <inttypes.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "gguf.h"
#include "hash.h"
#include "quant.h"

#include "tap.h"

static char tmpdir[256];

/* name in the test's directory (a static buffer: copy it to keep it) */
static const char *tmp_path(const char *name)
{
	static char buf[512];
	snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
	return buf;
}

static int has(const char *needle)
{
	return strstr(kb_error(), needle) != NULL;
}

/* ---- SHA-256 and CRC32C ---- */

static int sha_is(const void *data, size_t n, const char *hex)
{
	uint8_t d[32];
	char h[65];
	sha256(data, n, d);
	hash_hex(d, 32, h);
	return strcmp(h, hex) == 0;
}

static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? crc >> 1 ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

/* CRC32C in a child with the table-driven path forced, to compare with the parent. */
static uint32_t crc32c_in_child_sw(const uint8_t *p, size_t n)
{
	int fds[2];
	uint32_t v = 0;
	if (pipe(fds))
		return 0;
	pid_t pid = fork();
	if (pid == 0) {
		setenv("KVBLEND_NO_HWCRC", "1", 1);
		uint32_t c = crc32c(0, p, n / 3);
		c = crc32c(c, p + n / 3, n - n / 3);
		_exit(write(fds[1], &c, 4) == 4 ? 0 : 1);
	}
	close(fds[1]);
	if (read(fds[0], &v, 4) != 4)
		v = 0;
	close(fds[0]);
	waitpid(pid, NULL, 0);
	return v;
}

static void test_hash(void)
{
	ok(sha_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of \"\"");
	ok(sha_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 of \"abc\"");
	const char *s448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	ok(sha_is(s448, strlen(s448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
	   "sha256 of the 448-bit vector");
	char *a = malloc(1000000);
	memset(a, 'a', 1000000);
	ok(sha_is(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
	   "sha256 of a million 'a'");
	/* streamed in uneven pieces (crossing the 64-byte block and the 56-byte pad edge) */
	struct sha256 s;
	uint8_t d1[32], d2[32];
	sha256_init(&s);
	for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 7 % 251 + 1)
		sha256_update(&s, a + off, off + step > 1000000 ? 1000000 - off : step);
	sha256_final(&s, d1);
	sha256(a, 1000000, d2);
	ok(memcmp(d1, d2, 32) == 0, "sha256 streamed in uneven pieces equals one shot");
	int lens_ok = 1;
	for (size_t n = 0; n < 130; n++) {
		sha256_init(&s);
		sha256_update(&s, a, n / 2);
		sha256_update(&s, a + n / 2, n - n / 2);
		sha256_final(&s, d1);
		sha256(a, n, d2);
		lens_ok &= memcmp(d1, d2, 32) == 0;
	}
	ok(lens_ok, "sha256 split in two equals one shot for lengths 0..129");
	free(a);

	/* the parent must not have used crc32c yet: the child picks its path on first use */
	uint8_t buf[4099];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(tap_randf(0, 256));
	uint32_t child = crc32c_in_child_sw(buf, sizeof buf);
	ok(crc32c(0, "123456789", 9) == 0xe3069283, "crc32c(\"123456789\") = 0xe3069283");
	ok(crc32c(0, "", 0) == 0, "crc32c of nothing is 0");
	uint8_t v[32];
	memset(v, 0, 32);
	ok(crc32c(0, v, 32) == 0x8a9136aa, "crc32c of 32 zero bytes (RFC 3720)");
	memset(v, 0xff, 32);
	ok(crc32c(0, v, 32) == 0x62a8ab43, "crc32c of 32 0xff bytes (RFC 3720)");
	for (int i = 0; i < 32; i++)
		v[i] = (uint8_t)i;
	ok(crc32c(0, v, 32) == 0x46dd794e, "crc32c of 0..31 (RFC 3720)");
	int crc_ok = 1;
	for (size_t start = 0; start < 9; start++)
		for (size_t n = 0; n + start <= sizeof buf; n += 1 + n / 3) {
			uint32_t ref = crc32c_bitwise(0, buf + start, n);
			size_t cut = n / 3;
			crc_ok &= crc32c(crc32c(0, buf + start, cut), buf + start + cut, n - cut) == ref;
		}
	ok(crc_ok, "crc32c chained over unaligned starts and lengths equals the bitwise reference");
	ok(child == crc32c_bitwise(0, buf, sizeof buf), "crc32c table path (KVBLEND_NO_HWCRC) equals the reference");
}

/* ---- a byte builder for hand-made files ---- */

struct tb {
	uint8_t *p;
	size_t n, cap;
};

static size_t tb_put(struct tb *b, const void *s, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	return b->n - n;
}

static size_t tb_u8(struct tb *b, uint8_t v) { return tb_put(b, &v, 1); }

static size_t tb_u32(struct tb *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	return tb_put(b, x, 4);
}

static size_t tb_u64(struct tb *b, uint64_t v)
{
	size_t at = tb_u32(b, (uint32_t)v);
	tb_u32(b, (uint32_t)(v >> 32));
	return at;
}

static size_t tb_str(struct tb *b, const char *s)
{
	size_t at = tb_u64(b, strlen(s));
	tb_put(b, s, strlen(s));
	return at;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* The mini file and where its fields are. */
static struct tb mini;
static struct {
	size_t version, n_tensors, n_kv;
	size_t key0_len;            /* first key's length */
	size_t u8_key, u8_type;     /* "k.u8": key bytes, value type */
	size_t arr_u8_elem_type;    /* "k.arr8": element type */
	size_t arr_u8_n;
	size_t name_str_len;        /* "general.name" string length */
	size_t align_val;           /* general.alignment value */
	size_t a_ndims, a_ne0, a_type, a_offset;
	size_t b_name, b_ne0, b_ne1, b_type, b_offset;
	size_t data;
} at;

/* 16 keys: one of each scalar type, a string, arrays; tensors "a" f32 [4] and "b" q8_0 [32, 2]. */
static void build_mini(void)
{
	struct tb *b = &mini;
	tb_put(b, "GGUF", 4);
	at.version = tb_u32(b, 3);
	at.n_tensors = tb_u64(b, 2);
	at.n_kv = tb_u64(b, 16);
	at.key0_len = tb_str(b, "general.architecture");
	tb_u32(b, GGUF_TYPE_STRING);
	tb_str(b, "mini");
	tb_str(b, "general.name");
	tb_u32(b, GGUF_TYPE_STRING);
	at.name_str_len = tb_str(b, "a mini model");
	at.u8_key = tb_str(b, "k.u8") + 8;
	at.u8_type = tb_u32(b, GGUF_TYPE_UINT8);
	tb_u8(b, 200);
	tb_str(b, "k.i8"), tb_u32(b, GGUF_TYPE_INT8), tb_u8(b, (uint8_t)-5);
	tb_str(b, "k.u16"), tb_u32(b, GGUF_TYPE_UINT16), tb_put(b, "\x60\xea", 2); /* 60000 */
	tb_str(b, "k.i16"), tb_u32(b, GGUF_TYPE_INT16), tb_put(b, "\xd4\xfe", 2); /* -300 */
	tb_str(b, "k.u32"), tb_u32(b, GGUF_TYPE_UINT32), tb_u32(b, 4000000000u);
	tb_str(b, "k.i32"), tb_u32(b, GGUF_TYPE_INT32), tb_u32(b, (uint32_t)-70000);
	float f = 1.5f;
	uint32_t fu;
	memcpy(&fu, &f, 4);
	tb_str(b, "k.f32"), tb_u32(b, GGUF_TYPE_FLOAT32), tb_u32(b, fu);
	tb_str(b, "k.bool"), tb_u32(b, GGUF_TYPE_BOOL), tb_u8(b, 1);
	tb_str(b, "k.u64"), tb_u32(b, GGUF_TYPE_UINT64), tb_u64(b, UINT64_C(10000000000000000000));
	tb_str(b, "k.i64"), tb_u32(b, GGUF_TYPE_INT64), tb_u64(b, (uint64_t)INT64_C(-5000000000));
	double dd = -0.25;
	uint64_t du;
	memcpy(&du, &dd, 8);
	tb_str(b, "k.f64"), tb_u32(b, GGUF_TYPE_FLOAT64), tb_u64(b, du);
	tb_str(b, "k.arr8"), tb_u32(b, GGUF_TYPE_ARRAY);
	at.arr_u8_elem_type = tb_u32(b, GGUF_TYPE_UINT8);
	at.arr_u8_n = tb_u64(b, 3);
	tb_put(b, "\x01\x02\x03", 3);
	tb_str(b, "k.strs"), tb_u32(b, GGUF_TYPE_ARRAY), tb_u32(b, GGUF_TYPE_STRING), tb_u64(b, 3);
	tb_str(b, "a"), tb_str(b, "bc"), tb_str(b, "");
	tb_str(b, "general.alignment"), tb_u32(b, GGUF_TYPE_UINT32);
	at.align_val = tb_u32(b, 32);
	/* tensor a: f32 [4] at 0 */
	tb_str(b, "a");
	at.a_ndims = tb_u32(b, 1);
	at.a_ne0 = tb_u64(b, 4);
	at.a_type = tb_u32(b, QTYPE_F32);
	at.a_offset = tb_u64(b, 0);
	/* tensor b: q8_0 [32, 2] at 32 */
	at.b_name = tb_str(b, "b") + 8;
	tb_u32(b, 2);
	at.b_ne0 = tb_u64(b, 32);
	at.b_ne1 = tb_u64(b, 2);
	at.b_type = tb_u32(b, QTYPE_Q8_0);
	at.b_offset = tb_u64(b, 32);
	while (b->n % 32)
		tb_u8(b, 0);
	at.data = b->n;
	float av[4] = { 1, -2, 3.5f, 0 };
	tb_put(b, av, 16);
	for (int i = 0; i < 16; i++)
		tb_u8(b, 0);
	for (int i = 0; i < 68; i++)
		tb_u8(b, (uint8_t)i);
}

/* Open an exact-size heap copy of buf[0..n) (so ASan sees any over-read), after patching. */
static int open_copy(struct gguf **g, const uint8_t *buf, size_t n, uint8_t **keep)
{
	uint8_t *c = malloc(n ? n : 1);
	memcpy(c, buf, n);
	*keep = c;
	return gguf_open_mem(g, c, n, "mini.gguf");
}

typedef void (*patch_fn)(uint8_t *p);

/* Patch a copy of mini, open it, expect KB_ERR_FORMAT with want in the message. */
static void expect_bad(const char *what, patch_fn patch, const char *want)
{
	uint8_t *c = malloc(mini.n);
	memcpy(c, mini.p, mini.n);
	patch(c);
	struct gguf *g = (struct gguf *)0x1;
	int rc = gguf_open_mem(&g, c, mini.n, "mini.gguf");
	int good = rc == KB_ERR_FORMAT && g == NULL && has(want) && has("'mini.gguf': ");
	if (!ok(good, "%s: refused with \"%s\"", what, want))
		diag("rc %d, message: %s", rc, kb_error());
	gguf_close(rc == KB_OK ? g : NULL);
	free(c);
}

static void p_magic(uint8_t *p) { p[0] = 'g'; }
static void p_v1(uint8_t *p) { put_u32(p + at.version, 1); }
static void p_v99(uint8_t *p) { put_u32(p + at.version, 99); }
static void p_vbe(uint8_t *p) { put_u32(p + at.version, 0x03000000); }
static void p_nkv_huge(uint8_t *p) { put_u64(p + at.n_kv, UINT64_C(1) << 62); }
static void p_nt_huge(uint8_t *p) { put_u64(p + at.n_tensors, UINT64_C(1) << 62); }
static void p_nkv_big(uint8_t *p) { put_u64(p + at.n_kv, 1000); }
static void p_key_len0(uint8_t *p) { put_u64(p + at.key0_len, 0); }
static void p_str_past_eof(uint8_t *p) { put_u64(p + at.name_str_len, mini.n); }
static void p_str_huge(uint8_t *p) { put_u64(p + at.name_str_len, UINT64_C(1) << 60); }
static void p_vtype(uint8_t *p) { put_u32(p + at.u8_type, 13); }
static void p_dup_key(uint8_t *p) { memcpy(p + at.u8_key, "k.i8", 4); }
static void p_nested(uint8_t *p) { put_u32(p + at.arr_u8_elem_type, GGUF_TYPE_ARRAY); }
static void p_arr_elem_type(uint8_t *p) { put_u32(p + at.arr_u8_elem_type, 77); }
static void p_arr_huge(uint8_t *p) { put_u64(p + at.arr_u8_n, UINT64_C(1) << 62); }
static void p_arr_past_eof(uint8_t *p) { put_u64(p + at.arr_u8_n, 1u << 20); }
static void p_align48(uint8_t *p) { put_u32(p + at.align_val, 48); }
static void p_align0(uint8_t *p) { put_u32(p + at.align_val, 0); }
static void p_align4(uint8_t *p) { put_u32(p + at.align_val, 4); }
static void p_align_type(uint8_t *p) { put_u32(p + at.align_val - 4, GGUF_TYPE_INT32); put_u32(p + at.align_val, (uint32_t)-32); }
static void p_ndims0(uint8_t *p) { put_u32(p + at.a_ndims, 0); }
static void p_ndims5(uint8_t *p) { put_u32(p + at.a_ndims, 5); }
static void p_ne_neg(uint8_t *p) { put_u64(p + at.a_ne0, (uint64_t)-4); }
static void p_ne_overflow(uint8_t *p) { put_u64(p + at.b_ne0, UINT64_C(1) << 40); put_u64(p + at.b_ne1, UINT64_C(1) << 40); }
static void p_ne_blocks(uint8_t *p) { put_u64(p + at.b_ne0, 33); }
static void p_type99(uint8_t *p) { put_u32(p + at.b_type, 99); }
static void p_type4(uint8_t *p) { put_u32(p + at.b_type, 4); }
static void p_misaligned(uint8_t *p) { put_u64(p + at.b_offset, 40); }
static void p_past_eof(uint8_t *p) { put_u64(p + at.b_offset, 64); }
static void p_offset_huge(uint8_t *p) { put_u64(p + at.b_offset, UINT64_C(1) << 62); }
static void p_too_big(uint8_t *p) { put_u64(p + at.a_ne0, 64); }
static void p_dup_tensor(uint8_t *p) { p[at.b_name] = 'a'; }

static void test_mini(void)
{
	struct gguf *g;
	uint8_t *keep;
	build_mini();
	int rc = open_copy(&g, mini.p, mini.n, &keep);
	if (!ok(rc == KB_OK, "mini file opens")) {
		diag("%s", kb_error());
		free(keep);
		return;
	}
	ok(g->version == 3 && g->n_kv == 16 && g->n_tensors == 2 && g->alignment == 32 && g->data_offset == at.data,
	   "mini: header, counts, alignment and data offset");
	uint32_t u32;
	int64_t i64;
	float f;
	bool bl;
	struct gguf_str s;
	ok(gguf_get_u32(g, "k.u8", &u32) == KB_OK && u32 == 200, "u8 read as u32");
	ok(gguf_get_i64(g, "k.i8", &i64) == KB_OK && i64 == -5, "i8 read as i64");
	ok(gguf_get_u32(g, "k.u16", &u32) == KB_OK && u32 == 60000, "u16");
	ok(gguf_get_i64(g, "k.i16", &i64) == KB_OK && i64 == -300, "i16");
	ok(gguf_get_u32(g, "k.u32", &u32) == KB_OK && u32 == 4000000000u, "u32");
	ok(gguf_get_i64(g, "k.i32", &i64) == KB_OK && i64 == -70000, "i32");
	ok(gguf_get_f32(g, "k.f32", &f) == KB_OK && f == 1.5f, "f32");
	ok(gguf_get_bool(g, "k.bool", &bl) == KB_OK && bl, "bool");
	ok(gguf_get_i64(g, "k.i64", &i64) == KB_OK && i64 == INT64_C(-5000000000), "i64");
	ok(gguf_get_f32(g, "k.f64", &f) == KB_OK && f == -0.25f, "f64 read as f32");
	ok(gguf_get_str(g, "general.name", &s) == KB_OK && gguf_str_eq(s, "a mini model"), "string");
	/* mismatches: present but unusable, the message names the key */
	ok(gguf_get_u32(g, "k.i8", &u32) == KB_ERR_FORMAT && has("'k.i8'") && has("does not fit in u32"),
	   "negative value refused as u32");
	ok(gguf_get_u32(g, "k.u64", &u32) == KB_ERR_FORMAT && has("does not fit"), "u64 too large for u32");
	ok(gguf_get_i64(g, "k.u64", &i64) == KB_ERR_FORMAT && has("does not fit in i64"), "u64 too large for i64");
	ok(gguf_get_f32(g, "k.u32", &f) == KB_ERR_FORMAT && has("'k.u32' has type u32, expected f32"),
	   "integer refused as f32");
	ok(gguf_get_str(g, "k.u8", &s) == KB_ERR_FORMAT && has("expected string"), "u8 refused as string");
	ok(gguf_get_bool(g, "k.u8", &bl) == KB_ERR_FORMAT, "u8 refused as bool");
	ok(gguf_get_u32(g, "k.strs", &u32) == KB_ERR_FORMAT && has("is an array of string"), "array refused as u32");
	kb_fail(KB_ERR_IO, "sentinel");
	ok(gguf_get_u32(g, "no.such.key", &u32) == KB_EOF && strcmp(kb_error(), "sentinel") == 0,
	   "absent key: KB_EOF, message untouched");
	ok(gguf_find_key(g, "k.bool") == 9 && gguf_find_key(g, "k.boo") == -1, "gguf_find_key");
	/* arrays */
	enum gguf_vtype t;
	uint64_t n;
	const void *data;
	const struct gguf_str *strs;
	ok(gguf_get_arr(g, "k.arr8", &t, &n, &data) == KB_OK && t == GGUF_TYPE_UINT8 && n == 3 &&
	   gguf_arr_get_i64(t, data, 2) == 3 && gguf_arr_get_f64(t, data, 0) == 1.0, "u8 array");
	ok(gguf_get_arr_str(g, "k.strs", &strs, &n) == KB_OK && n == 3 && gguf_str_eq(strs[0], "a") &&
	   gguf_str_eq(strs[1], "bc") && gguf_str_eq(strs[2], ""), "string array pre-indexed");
	ok(gguf_get_arr_str(g, "k.arr8", &strs, &n) == KB_ERR_FORMAT && has("expected an array of strings"),
	   "numeric array refused as string array");
	ok(gguf_get_arr(g, "k.u8", &t, &n, &data) == KB_ERR_FORMAT && has("expected an array"),
	   "scalar refused as array");
	/* tensors */
	const struct gguf_tensor *ta = gguf_find_tensor(g, "a"), *tb = gguf_find_tensor(g, "b");
	ok(ta && ta->n_dims == 1 && ta->ne[0] == 4 && ta->ne[1] == 1 && ta->type == QTYPE_F32 && ta->size == 16 &&
	   ta->n_elements == 4 && kb_lef32((const uint8_t *)ta->data + 8) == 3.5f, "tensor a: f32 [4]");
	ok(tb && tb->n_dims == 2 && tb->ne[0] == 32 && tb->ne[1] == 2 && tb->type == QTYPE_Q8_0 && tb->size == 68 &&
	   tb->n_elements == 64 && tb->data == keep + at.data + 32 && ((const uint8_t *)tb->data)[67] == 67,
	   "tensor b: q8_0 [32, 2] in place");
	ok(gguf_find_tensor(g, "c") == NULL, "absent tensor: NULL");
	gguf_close(g);
	free(keep);

	/* every truncation: every byte offset of the header, metadata, tensor table and data */
	int all = 1;
	for (size_t len = 0; len < mini.n; len++) {
		g = NULL;
		rc = open_copy(&g, mini.p, len, &keep);
		int good = rc == KB_ERR_FORMAT && g == NULL && (has("truncated") || (len == 0 && has("empty file")));
		if (!good && all)
			diag("prefix of %zu bytes: rc %d: %s", len, rc, kb_error());
		all &= good;
		if (rc == KB_OK)
			gguf_close(g);
		free(keep);
	}
	ok(all, "every prefix of the mini file (0..%zu bytes) is refused as truncated", mini.n - 1);
	rc = open_copy(&g, mini.p, 0, &keep);
	ok(rc == KB_ERR_FORMAT && has("'mini.gguf': empty file"), "empty buffer: \"empty file\"");
	free(keep);
	rc = open_copy(&g, mini.p, at.data + 40, &keep);
	ok(rc == KB_ERR_FORMAT && has("tensor 'b' data out of bounds") && has("truncated"),
	   "cut inside the data: \"tensor 'b' data out of bounds\"");
	free(keep);
	rc = open_copy(&g, mini.p, at.n_kv + 3, &keep);
	ok(rc == KB_ERR_FORMAT && has("truncated in header (need 8 bytes at offset 16, file has 19)"),
	   "cut in the header: need/offset/has in the message");
	free(keep);
	rc = open_copy(&g, mini.p, at.b_offset + 4, &keep);
	ok(rc == KB_ERR_FORMAT && has("truncated in tensor info 1"), "cut in the tensor table names the tensor info");
	free(keep);

	expect_bad("wrong magic", p_magic, "not a GGUF file (bad magic)");
	expect_bad("version 1", p_v1, "GGUF version 1 is not supported");
	expect_bad("version 99", p_v99, "unsupported GGUF version 99");
	expect_bad("big-endian", p_vbe, "big-endian GGUF files are not supported");
	expect_bad("n_kv = 2^62", p_nkv_huge, "corrupt header: impossible counts (4611686018427387904 keys");
	expect_bad("n_tensors = 2^62", p_nt_huge, "4611686018427387904 tensors");
	expect_bad("n_kv = 1000", p_nkv_big, "truncated after the header (1000 keys");
	expect_bad("empty key", p_key_len0, "corrupt key 0: length 0 is out of range");
	expect_bad("string length past EOF", p_str_past_eof, "truncated in key 1 ('general.name')");
	expect_bad("string length 2^60", p_str_huge, "corrupt key 1 ('general.name'): impossible string length");
	expect_bad("unknown value type", p_vtype, "key 'k.u8' has unknown value type 13");
	expect_bad("duplicate key", p_dup_key, "duplicate key 'k.i8'");
	expect_bad("array of arrays", p_nested, "key 'k.arr8' is an array of arrays");
	expect_bad("array of unknown type", p_arr_elem_type, "array of unknown value type 77");
	expect_bad("array count 2^62", p_arr_huge, "impossible array of 4611686018427387904 u8 values");
	expect_bad("array past EOF", p_arr_past_eof, "truncated in key 13 ('k.arr8')");
	expect_bad("alignment 48", p_align48, "general.alignment must be a power of two, at least 8 (got 48)");
	expect_bad("alignment 0", p_align0, "general.alignment must be a power of two, at least 8 (got 0)");
	expect_bad("alignment 4", p_align4, "general.alignment must be a power of two, at least 8 (got 4)");
	expect_bad("alignment -32", p_align_type, "general.alignment must be a power of two, at least 8 (got -32)");
	expect_bad("0 dimensions", p_ndims0, "tensor 'a' has 0 dimensions");
	expect_bad("5 dimensions", p_ndims5, "tensor 'a' has 5 dimensions");
	expect_bad("negative dimension", p_ne_neg, "tensor 'a' has a negative dimension");
	expect_bad("ne product overflow", p_ne_overflow, "tensor 'b' has too many elements");
	expect_bad("row not whole blocks", p_ne_blocks, "not a multiple of the q8_0 block size 32");
	expect_bad("unknown tensor type 99", p_type99, "tensor 'b' has unknown type 99");
	expect_bad("removed tensor type 4", p_type4, "tensor 'b' has unknown type 4");
	expect_bad("misaligned offset", p_misaligned, "tensor 'b' offset 40 is not a multiple of the alignment 32");
	expect_bad("data past EOF", p_past_eof, "tensor 'b' data out of bounds");
	expect_bad("offset 2^62", p_offset_huge, "corrupt offset");
	expect_bad("tensor overruns the file", p_too_big, "tensor 'a' data out of bounds");
	expect_bad("duplicate tensor name", p_dup_tensor, "duplicate tensor name 'a'");

	/* random corruption: never a crash, always a clean answer */
	int clean = 1, accepted = 0;
	uint8_t *c = malloc(mini.n);
	for (int iter = 0; iter < 4000; iter++) {
		memcpy(c, mini.p, mini.n);
		int flips = 1 + iter % 4;
		for (int k = 0; k < flips; k++) {
			size_t pos = (size_t)tap_randf(0, (float)at.data);
			c[pos < at.data ? pos : 0] = (uint8_t)tap_randf(0, 256);
		}
		kb_fail(KB_OK, "%s", "");
		rc = gguf_open_mem(&g, c, mini.n, "mini.gguf");
		if (rc == KB_OK) {
			uint8_t fp[32];
			gguf_fingerprint(g, fp);
			gguf_tokenizer_fingerprint(g, fp);
			accepted++;
			gguf_close(g);
		} else {
			clean &= rc == KB_ERR_FORMAT && strncmp(kb_error(), "'mini.gguf': ", 13) == 0;
		}
	}
	free(c);
	ok(clean, "4000 random corruptions: each opens or fails with a message (%d opened)", accepted);
}

/* ---- writer round trip ---- */

struct tensor_spec {
	const char *name;
	int type;
	uint32_t n_dims;
	int64_t ne[4];
};

static const struct tensor_spec specs[] = {
	{ "norm.weight", QTYPE_F32, 1, { 7 } },
	{ "blk.0.attn_q.weight", QTYPE_F16, 2, { 8, 3 } },
	{ "blk.0.attn_k.weight", QTYPE_Q8_0, 2, { 64, 2 } },
	{ "blk.0.ffn_up.weight", QTYPE_Q4_0, 3, { 32, 1, 2 } },
	{ "four.d", QTYPE_BF16, 4, { 2, 2, 2, 2 } },
	{ "kquant", QTYPE_Q4_K, 2, { 256, 1 } },
	{ "q4_1.unsupported", QTYPE_Q4_1, 1, { 64 } },
	{ "empty", QTYPE_F32, 2, { 0, 5 } },
};
#define N_SPECS (sizeof specs / sizeof *specs)

static size_t spec_size(const struct tensor_spec *s)
{
	size_t rows = 1;
	for (uint32_t d = 1; d < s->n_dims; d++)
		rows *= (size_t)s->ne[d];
	return qtype_row_size(s->type, s->ne[0]) * rows;
}

static uint8_t *tdata[N_SPECS];

struct model_opts {
	const char *name;
	uint32_t block_count;
	int64_t q_rows;
	bool reversed;     /* write the keys in the opposite order */
	const char *tok0;  /* first token */
	uint32_t alignment;
};

/* A small model with every writer setter; returns the rc of gguf_writer_write. */
static int write_model(const char *path, const struct model_opts *o)
{
	struct gguf_writer *w = gguf_writer_init();
	static const char *toks[] = { "<unk>", "<s>", "</s>", "hello", "wörld" };
	const char *t0[5];
	memcpy(t0, toks, sizeof toks);
	if (o->tok0)
		t0[0] = o->tok0;
	static const int32_t ids[] = { 1, -2, 3 };
	static const float scores[] = { 0.5f, -1.25f, 3.0f, 1e-3f, -0.0f };
	static const uint16_t u16s[] = { 1, 65535 };
	static const int64_t i64s[] = { INT64_MIN, INT64_MAX };
	static const double f64s[] = { 3.25, -1e300 };
	static const uint8_t bools[] = { 1, 0, 1 };
	for (int pass = 0; pass < 2; pass++) {
		if ((pass == 0) != o->reversed) {
			gguf_writer_set_str(w, "general.architecture", "llama");
			gguf_writer_set_str(w, "general.name", o->name ? o->name : "test");
			gguf_writer_set_u32(w, "llama.block_count", o->block_count ? o->block_count : 2);
			gguf_writer_set_u32(w, "llama.embedding_length", 64);
			gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
			gguf_writer_set_i32(w, "test.i32", -7);
			gguf_writer_set_u64(w, "test.u64", UINT64_C(1) << 40);
			gguf_writer_set_bool(w, "test.bool", true);
			if (o->alignment)
				gguf_writer_set_u32(w, "general.alignment", o->alignment);
		} else {
			gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", t0, 5);
			gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 5);
			gguf_writer_set_arr(w, "test.i32s", GGUF_TYPE_INT32, ids, 3);
			gguf_writer_set_arr(w, "test.u16s", GGUF_TYPE_UINT16, u16s, 2);
			gguf_writer_set_arr(w, "test.i64s", GGUF_TYPE_INT64, i64s, 2);
			gguf_writer_set_arr(w, "test.f64s", GGUF_TYPE_FLOAT64, f64s, 2);
			gguf_writer_set_arr(w, "test.bools", GGUF_TYPE_BOOL, bools, 3);
			gguf_writer_set_arr(w, "test.empty", GGUF_TYPE_UINT8, NULL, 0);
			gguf_writer_set_arr_str(w, "test.nostrs", NULL, 0);
		}
	}
	for (size_t i = 0; i < N_SPECS; i++) {
		struct tensor_spec s = specs[i];
		if (i == 1 && o->q_rows)
			s.ne[1] = o->q_rows;
		gguf_writer_add_tensor(w, s.name, s.type, s.n_dims, s.ne, tdata[i], spec_size(&s));
	}
	int rc = gguf_writer_write(w, path);
	gguf_writer_free(w);
	return rc;
}

static void fp_of(const char *path, uint8_t fp[32], uint8_t tok[32])
{
	struct gguf *g;
	memset(fp, 0, 32);
	memset(tok, 0, 32);
	if (gguf_open(&g, path) != KB_OK) {
		diag("%s", kb_error());
		return;
	}
	gguf_fingerprint(g, fp);
	gguf_tokenizer_fingerprint(g, tok);
	gguf_close(g);
}

/* Files in tmpdir whose names start with '.', i.e. leftover temporary files. */
static int count_temp_files(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		n += e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void reverse8(uint8_t b[8])
{
	for (int i = 0; i < 4; i++) {
		uint8_t c = b[i];
		b[i] = b[7 - i], b[7 - i] = c;
	}
}

/* The model fingerprint recomputed here from the serialisation documented in gguf.c. */
static void fp_by_hand(const struct gguf *g, uint8_t out[32])
{
	struct sha256 s;
	uint8_t b[8];
	const char *keys[] = { "llama.attention.layer_norm_rms_epsilon", "llama.block_count",
			       "llama.embedding_length" }; /* bytewise order */
	sha256_init(&s);
	sha256_update(&s, "kvblend-model-fingerprint-v2", 28);
	put_u64(b, 5), sha256_update(&s, b, 8), sha256_update(&s, "llama", 5);
	put_u64(b, 3), sha256_update(&s, b, 8);
	for (int i = 0; i < 3; i++) {
		const struct gguf_kv *kv = &g->kv[gguf_find_key(g, keys[i])];
		put_u64(b, strlen(keys[i])), sha256_update(&s, b, 8), sha256_update(&s, keys[i], strlen(keys[i]));
		put_u32(b, kv->type), sha256_update(&s, b, 4);
		sha256_update(&s, kv->data, 4);
	}
	put_u64(b, g->n_tensors), sha256_update(&s, b, 8);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		put_u64(b, t->name.len), sha256_update(&s, b, 8), sha256_update(&s, t->name.data, t->name.len);
		put_u32(b, (uint32_t)t->type), sha256_update(&s, b, 4);
		put_u32(b, t->n_dims), sha256_update(&s, b, 4);
		for (uint32_t d = 0; d < t->n_dims; d++)
			put_u64(b, (uint64_t)t->ne[d]), sha256_update(&s, b, 8);
		XXH128_hash_t h = XXH3_128bits(t->data, t->size);
		put_u64(b, h.high64), reverse8(b), sha256_update(&s, b, 8); /* big-endian */
		put_u64(b, h.low64), reverse8(b), sha256_update(&s, b, 8);
	}
	sha256_final(&s, out);
}

static void test_writer(void)
{
	for (size_t i = 0; i < N_SPECS; i++) {
		size_t n = spec_size(&specs[i]);
		tdata[i] = malloc(4 * n + 1); /* room for the q_rows = 4 variant */
		for (size_t j = 0; j < n; j++)
			tdata[i][j] = (uint8_t)tap_randf(0, 256);
	}
	/* the writer's sizes agree with quant.c's for every type */
	int sizes_ok = 1;
	for (size_t i = 0; i < N_SPECS; i++)
		sizes_ok &= spec_size(&specs[i]) > 0 || specs[i].ne[0] == 0;
	ok(sizes_ok, "quant.c knows the geometry of every test tensor type");

	char p1[512], p2[512];
	snprintf(p1, sizeof p1, "%s", tmp_path("m1.gguf"));
	snprintf(p2, sizeof p2, "%s", tmp_path("m2.gguf"));
	struct model_opts o = { 0 };
	int rc = write_model(p1, &o);
	if (!ok(rc == KB_OK, "writer: a model with every value type and %zu tensors", N_SPECS))
		diag("%s", kb_error());
	struct gguf *g;
	rc = gguf_open(&g, p1);
	if (!ok(rc == KB_OK, "writer output opens")) {
		diag("%s", kb_error());
		return;
	}
	ok(g->version == 3 && g->n_kv == 17 && g->n_tensors == N_SPECS && g->alignment == 32, "v3, 17 keys, %zu tensors",
	   N_SPECS);
	static const char *order[] = { "general.architecture", "general.name", "llama.block_count" };
	int ord = 1;
	for (int i = 0; i < 3; i++)
		ord &= gguf_str_eq(g->kv[i].key, order[i]);
	ok(ord && gguf_str_eq(g->kv[8].key, "tokenizer.ggml.tokens"), "keys in insertion order");
	uint32_t u32;
	int64_t i64;
	float f;
	bool bl;
	struct gguf_str s;
	ok(gguf_get_u32(g, "llama.block_count", &u32) == KB_OK && u32 == 2, "u32 back");
	ok(gguf_get_i64(g, "test.i32", &i64) == KB_OK && i64 == -7 && g->kv[gguf_find_key(g, "test.i32")].type == GGUF_TYPE_INT32,
	   "i32 back");
	ok(gguf_get_i64(g, "test.u64", &i64) == KB_OK && i64 == INT64_C(1) << 40, "u64 back");
	ok(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f) == KB_OK && f == 1e-5f, "f32 back");
	ok(gguf_get_bool(g, "test.bool", &bl) == KB_OK && bl, "bool back");
	ok(gguf_get_str(g, "general.name", &s) == KB_OK && gguf_str_eq(s, "test"), "string back");
	const struct gguf_str *strs;
	uint64_t n;
	ok(gguf_get_arr_str(g, "tokenizer.ggml.tokens", &strs, &n) == KB_OK && n == 5 && gguf_str_eq(strs[0], "<unk>") &&
	   gguf_str_eq(strs[4], "wörld"), "string array back");
	enum gguf_vtype t;
	const void *d;
	ok(gguf_get_arr(g, "tokenizer.ggml.scores", &t, &n, &d) == KB_OK && t == GGUF_TYPE_FLOAT32 && n == 5 &&
	   gguf_arr_get_f64(t, d, 1) == -1.25 && gguf_arr_get_i64(t, d, 2) == 3, "f32 array back");
	ok(gguf_get_arr(g, "test.i32s", &t, &n, &d) == KB_OK && t == GGUF_TYPE_INT32 && n == 3 &&
	   gguf_arr_get_i64(t, d, 1) == -2, "i32 array back");
	ok(gguf_get_arr(g, "test.u16s", &t, &n, &d) == KB_OK && t == GGUF_TYPE_UINT16 && gguf_arr_get_i64(t, d, 1) == 65535,
	   "u16 array back");
	ok(gguf_get_arr(g, "test.i64s", &t, &n, &d) == KB_OK && gguf_arr_get_i64(t, d, 0) == INT64_MIN &&
	   gguf_arr_get_i64(t, d, 1) == INT64_MAX, "i64 array back");
	ok(gguf_get_arr(g, "test.f64s", &t, &n, &d) == KB_OK && gguf_arr_get_f64(t, d, 1) == -1e300 &&
	   gguf_arr_get_i64(t, d, 1) == INT64_MIN, "f64 array back (i64 view saturates)");
	ok(gguf_get_arr(g, "test.bools", &t, &n, &d) == KB_OK && t == GGUF_TYPE_BOOL && n == 3 &&
	   gguf_arr_get_i64(t, d, 0) == 1 && gguf_arr_get_i64(t, d, 1) == 0, "bool array back");
	ok(gguf_get_arr(g, "test.empty", &t, &n, &d) == KB_OK && n == 0 &&
	   gguf_get_arr_str(g, "test.nostrs", &strs, &n) == KB_OK && n == 0, "empty arrays back");
	int tens = 1;
	for (size_t i = 0; i < N_SPECS; i++) {
		const struct gguf_tensor *tt = &g->tensors[i];
		size_t sz = spec_size(&specs[i]);
		int good = gguf_str_eq(tt->name, specs[i].name) && tt->type == specs[i].type &&
			   tt->n_dims == specs[i].n_dims && tt->size == sz &&
			   (sz == 0 || memcmp(tt->data, tdata[i], sz) == 0) &&
			   ((const uint8_t *)tt->data - g->base) % 32 == 0 && tt->offset % 32 == 0;
		for (uint32_t k = 0; k < 4; k++)
			good &= tt->ne[k] == (k < specs[i].n_dims ? specs[i].ne[k] : 1);
		if (!good)
			diag("tensor %zu (%s) differs", i, specs[i].name);
		tens &= good;
	}
	ok(tens, "every tensor back: name, type, shape, aligned data, bytes");
	char *dup = gguf_str_dup(g->tensors[1].name);
	ok(dup && strcmp(dup, "blk.0.attn_q.weight") == 0, "gguf_str_dup");
	free(dup);

	/* copy every key (all types) into a new writer, plus the tensors: an identical file */
	struct gguf_writer *w = gguf_writer_init();
	for (uint64_t i = 0; i < g->n_kv; i++)
		rc |= gguf_writer_copy_kv(w, g, i);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *tt = &g->tensors[i];
		char *name = gguf_str_dup(tt->name);
		rc |= gguf_writer_add_tensor(w, name, tt->type, tt->n_dims, tt->ne, tt->data, tt->size);
		free(name);
	}
	rc |= gguf_writer_write(w, p2);
	gguf_writer_free(w);
	char *b1, *b2;
	size_t n1, n2;
	int same = rc == KB_OK && kb_read_file(p1, &b1, &n1) == KB_OK && kb_read_file(p2, &b2, &n2) == KB_OK &&
		   n1 == n2 && memcmp(b1, b2, n1) == 0;
	ok(same, "copy_kv of every key + the tensors reproduces the file byte for byte");
	if (same) {
		/* and the hand-built mini file with all scalar types survives copy_kv */
		struct gguf *m;
		w = gguf_writer_init();
		rc = gguf_open_mem(&m, mini.p, mini.n, "mini");
		for (uint64_t i = 0; rc == KB_OK && i < m->n_kv; i++)
			rc |= gguf_writer_copy_kv(w, m, i);
		rc |= gguf_writer_write(w, tmp_path("mini2.gguf"));
		gguf_writer_free(w);
		struct gguf *m2;
		rc |= gguf_open(&m2, tmp_path("mini2.gguf"));
		int eq = rc == KB_OK && m2->n_kv == m->n_kv;
		for (uint64_t i = 0; eq && i < m->n_kv; i++) {
			const struct gguf_kv *x = &m->kv[i], *y = &m2->kv[i];
			size_t vs = gguf_vtype_size(x->type);
			eq &= x->key.len == y->key.len && memcmp(x->key.data, y->key.data, x->key.len) == 0 &&
			      x->type == y->type && (vs == 0 || memcmp(x->data, y->data, vs) == 0);
		}
		ok(eq, "copy_kv keeps every scalar type (u8 i8 u16 i16 u32 i32 f32 bool u64 i64 f64)");
		gguf_close(m);
		if (rc == KB_OK)
			gguf_close(m2);
		free(b1);
		free(b2);
	}

	/* fingerprints */
	uint8_t fp[32], hand[32], tok[32], fp2[32], tok2[32];
	gguf_fingerprint(g, fp);
	fp_by_hand(g, hand);
	ok(memcmp(fp, hand, 32) == 0, "model fingerprint = the documented serialisation, recomputed here");
	gguf_close(g);
	fp_of(p1, fp, tok);
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) == 0 && memcmp(tok, tok2, 32) == 0, "fingerprints stable across two writes");
	o = (struct model_opts){ .name = "another name" };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) == 0, "general.name does not change the model fingerprint");
	o = (struct model_opts){ .reversed = true };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) == 0 && memcmp(tok, tok2, 32) == 0, "key order does not change the fingerprints");
	o = (struct model_opts){ .alignment = 64 };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) == 0, "alignment (general.*) does not change the model fingerprint");
	rc = gguf_open(&g, tmp_path("m3.gguf"));
	int al = rc == KB_OK && g->alignment == 64;
	for (uint64_t i = 0; al && i < g->n_tensors; i++)
		al &= ((const uint8_t *)g->tensors[i].data - g->base) % 64 == 0;
	ok(al, "general.alignment = 64: tensor data on 64-byte boundaries");
	if (rc == KB_OK)
		gguf_close(g);
	o = (struct model_opts){ .block_count = 3 };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) != 0 && memcmp(tok, tok2, 32) == 0,
	   "a hyper-parameter changes the model fingerprint, not the tokenizer's");
	o = (struct model_opts){ .q_rows = 4 };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) != 0, "a tensor shape changes the model fingerprint");
	/* issue 10 item 1: the weights are part of the model's identity */
	int every = 1;
	for (size_t i = 0; i < N_SPECS; i++) {
		size_t sz = spec_size(&specs[i]);
		for (int end = 0; end < 2 && sz > 0; end++) {
			size_t pos = end ? sz - 1 : 0; /* the first and the last byte */
			tdata[i][pos] ^= 0x01;
			o = (struct model_opts){ 0 };
			write_model(tmp_path("m3.gguf"), &o);
			fp_of(tmp_path("m3.gguf"), fp2, tok2);
			tdata[i][pos] ^= 0x01;
			if (memcmp(fp, fp2, 32) == 0 || memcmp(tok, tok2, 32) != 0) {
				every = 0;
				diag("tensor %s, byte %zu: model fingerprint unchanged", specs[i].name, pos);
			}
		}
	}
	ok(every, "one bit of any tensor's first or last byte changes the model fingerprint, not the tokenizer's");
	o = (struct model_opts){ .tok0 = "<UNK>" };
	write_model(tmp_path("m3.gguf"), &o);
	fp_of(tmp_path("m3.gguf"), fp2, tok2);
	ok(memcmp(fp, fp2, 32) == 0 && memcmp(tok, tok2, 32) != 0,
	   "a token changes the tokenizer fingerprint, not the model's");

	/* set twice: replaced in place */
	w = gguf_writer_init();
	gguf_writer_set_u32(w, "a", 1);
	gguf_writer_set_str(w, "b", "x");
	gguf_writer_set_f32(w, "a", 2.5f);
	rc = gguf_writer_write(w, tmp_path("r.gguf"));
	gguf_writer_free(w);
	rc |= gguf_open(&g, tmp_path("r.gguf"));
	ok(rc == KB_OK && g->n_kv == 2 && gguf_str_eq(g->kv[0].key, "a") && g->kv[0].type == GGUF_TYPE_FLOAT32 &&
	   gguf_get_f32(g, "a", &f) == KB_OK && f == 2.5f && g->n_tensors == 0,
	   "setting a key twice replaces it in place (type too)");
	if (rc == KB_OK)
		gguf_close(g);

	/* writer errors are sticky and reported by write(); nothing is left behind */
	int64_t ne[2] = { 32, 2 };
	w = gguf_writer_init();
	rc = gguf_writer_add_tensor(w, "x", QTYPE_Q8_0, 2, ne, tdata[2], 10);
	ok(rc == KB_ERR_ARG && has("tensor 'x'") && has("need 68"), "add_tensor: wrong size refused");
	rc = gguf_writer_write(w, tmp_path("bad.gguf"));
	ok(rc == KB_ERR_ARG && has("need 68") && access(tmp_path("bad.gguf"), F_OK) != 0,
	   "write() reports the earlier error and writes nothing");
	gguf_writer_free(w);
	w = gguf_writer_init();
	ok(gguf_writer_add_tensor(w, "x", QTYPE_Q8_0, 2, ne, tdata[2], 68) == KB_OK &&
	   gguf_writer_add_tensor(w, "x", QTYPE_Q8_0, 2, ne, tdata[2], 68) == KB_ERR_ARG && has("duplicate tensor name 'x'"),
	   "add_tensor: duplicate name refused");
	gguf_writer_free(w);
	w = gguf_writer_init();
	ne[0] = 33;
	ok(gguf_writer_add_tensor(w, "x", QTYPE_Q8_0, 2, ne, tdata[2], 68) == KB_ERR_ARG && has("block size"),
	   "add_tensor: row not whole blocks refused");
	ok(gguf_writer_add_tensor(w, "y", 4, 1, ne, tdata[2], 68) == KB_ERR_ARG && has("unknown type 4"),
	   "add_tensor: unknown type refused");
	gguf_writer_free(w);
	w = gguf_writer_init();
	gguf_writer_set_u32(w, "general.alignment", 24);
	ok(gguf_writer_write(w, tmp_path("bad.gguf")) == KB_ERR_ARG && has("power of two"), "write: bad alignment refused");
	gguf_writer_free(w);
	w = gguf_writer_init();
	gguf_writer_set_u32(w, "a", 1);
	rc = gguf_writer_write(w, tmp_path("no/such/dir/x.gguf"));
	ok(rc == KB_ERR_IO && has("no/such/dir/x.gguf") && has("No such file"), "write into a missing directory: KB_ERR_IO");
	/* overwrite an existing file atomically */
	rc = gguf_writer_write(w, p1);
	gguf_writer_free(w);
	rc |= gguf_open(&g, p1);
	ok(rc == KB_OK && g->n_kv == 1 && g->n_tensors == 0, "write replaces an existing file");
	if (rc == KB_OK)
		gguf_close(g);
	ok(count_temp_files() == 0, "no temporary files left behind");

	/* the reader's own error paths on real files */
	ok(gguf_open(&g, tmp_path("absent.gguf")) == KB_ERR_IO && has("absent.gguf': No such file"), "missing file: KB_ERR_IO");
	ok(gguf_open(&g, tmpdir) == KB_ERR_IO && has("is a directory"), "directory: KB_ERR_IO");
	int fd = open(tmp_path("empty.gguf"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	close(fd);
	ok(gguf_open(&g, tmp_path("empty.gguf")) == KB_ERR_FORMAT && has("empty.gguf': empty file"),
	   "empty file on disk: \"empty file\"");
	fd = open(tmp_path("text.gguf"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ok(write(fd, "hello world\n", 12) == 12, "write a text file");
	close(fd);
	ok(gguf_open(&g, tmp_path("text.gguf")) == KB_ERR_FORMAT && has("text.gguf': not a GGUF file (bad magic)"),
	   "text file: \"not a GGUF file (bad magic)\"");
	ok(strcmp(gguf_vtype_name(GGUF_TYPE_FLOAT64), "f64") == 0 && gguf_vtype_size(GGUF_TYPE_UINT16) == 2 &&
	   gguf_vtype_size(GGUF_TYPE_STRING) == 0 && strcmp(gguf_vtype_name((enum gguf_vtype)42), "unknown") == 0,
	   "vtype names and sizes");
	for (size_t i = 0; i < N_SPECS; i++)
		free(tdata[i]);
}

/* A FIFO is read whole instead of mapped. */
static void test_fifo(const char *src)
{
	const char *fifo = tmp_path("pipe.gguf");
	if (mkfifo(fifo, 0600) != 0) {
		ok(0, "mkfifo: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		char *buf;
		size_t n;
		int fd = open(fifo, O_WRONLY);
		if (fd < 0 || kb_read_file(src, &buf, &n) != KB_OK)
			_exit(1);
		_exit(kb_write_all(fd, buf, n) == KB_OK ? 0 : 1);
	}
	struct gguf *g;
	int rc = gguf_open(&g, fifo);
	waitpid(pid, NULL, 0);
	ok(rc == KB_OK && !g->mapped && g->n_tensors == 48, "a GGUF read from a FIFO (not mappable)");
	if (rc == KB_OK)
		gguf_close(g);
	unlink(fifo);
}

static void test_stories(void)
{
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	if (!path) {
		diag("skipping the stories260K checks: ../shared/models/stories260Ktok512.gguf is absent");
		return;
	}
	struct gguf *g;
	int rc = gguf_open(&g, path);
	if (!ok(rc == KB_OK, "stories260K opens")) {
		diag("%s", kb_error());
		return;
	}
	uint32_t u;
	ok(g->version == 3 && g->n_kv == 19 && g->n_tensors == 48 && g->mapped, "stories260K: v3, 19 KV, 48 tensors");
	ok(gguf_get_u32(g, "llama.embedding_length", &u) == KB_OK && u == 64, "llama.embedding_length 64");
	ok(gguf_get_u32(g, "llama.block_count", &u) == KB_OK && u == 5, "llama.block_count 5");
	const struct gguf_str *toks;
	uint64_t n;
	ok(gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n) == KB_OK && n == 512, "512 tokens");
	const struct gguf_tensor *t = gguf_find_tensor(g, "blk.4.ffn_down.weight");
	ok(t && t->type == QTYPE_F32 && t->ne[0] == 172 && t->ne[1] == 64, "blk.4.ffn_down.weight is f32 [172, 64]");
	const struct gguf_tensor *last = &g->tensors[g->n_tensors - 1];
	ok((size_t)((const uint8_t *)last->data - g->base) + last->size == g->size, "the last tensor ends at EOF");
	/* The fingerprint of this file, pinned: it keys cached KV files, so a change to
	 * its serialisation must be deliberate (and bump the tag in gguf.c). Regenerate:
	 *   kvblend info -j ../shared/models/stories260Ktok512.gguf | jq -r .model_fingerprint */
	uint8_t fp[32];
	char hex[65];
	gguf_fingerprint(g, fp);
	hash_hex(fp, 32, hex);
	ok(strcmp(hex, "1808ebb76988366268cde5b405ee6f4c4422b373bb1fe0e3d87d5dcaedac250f") == 0,
	   "stories260K model fingerprint is pinned");
	gguf_tokenizer_fingerprint(g, fp);
	hash_hex(fp, 32, hex);
	ok(strcmp(hex, "ee3eea159db690046fc291f8b84c2992f1e93b8aa4636104100c0c563f3e7d33") == 0,
	   "stories260K tokenizer fingerprint is pinned");
	/* every prefix through the end of the tensor table, and a sample inside the data */
	int all = 1;
	for (size_t len = 0; len < g->size; len += len < g->data_offset + 64 ? 1 : 4093) {
		struct gguf *h;
		rc = gguf_open_mem(&h, g->base, len, "cut");
		int good = rc == KB_ERR_FORMAT && (has("truncated") || has("empty file"));
		if (!good && all)
			diag("prefix of %zu bytes: rc %d: %s", len, rc, kb_error());
		all &= good;
		if (rc == KB_OK)
			gguf_close(h);
	}
	ok(all, "stories260K: every prefix of the header and table, and samples of the data, refused as truncated");
	gguf_close(g);
	test_fifo(path);
}

int main(void)
{
	tap_seed();
	snprintf(tmpdir, sizeof tmpdir, "%s/kvb-gguf-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_hash();
	test_mini();
	test_writer();
	test_stories();
	free(mini.p);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
