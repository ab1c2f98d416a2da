/* gguf.c — GGUF v2/v3 reader and v3 writer, see gguf.h.
 *
 * File layout (all little-endian):
 *   "GGUF" u32 version u64 n_tensors u64 n_kv
 *   n_kv x { str key, u32 vtype, value }
 *   n_tensors x { str name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   zero padding to `general.alignment`, then the tensor data (offsets relative to it)
 * where str = u64 len + bytes and an array value = u32 elem vtype, u64 n, n elements.
 *
 * The reader validates everything once in gguf_load(); the accessors trust it.
 * Every length read from the file is compared with the bytes that remain
 * before it is used or allocated for, in 64-bit arithmetic with overflow
 * checks. Messages say "truncated" when the bytes ran out where the file could
 * plausibly have been cut short, and "corrupt" when a value is impossible.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pull.h"
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h> /* XXH3 with the widest vectors the CPU has, chosen at run time */
#define xxh3_128(p, n) XXH3_128bits_dispatch(p, n)
#else
#define xxh3_128(p, n) XXH3_128bits(p, n)
#endif

#include "hash.h"
#include "quant.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_KEY_LEN 65535  /* the GGUF spec's limit */
#define GGUF_MAX_NAME_LEN 256   /* tensor names; ggml itself allows 63 */
#define GGUF_HEADER_SIZE 24     /* magic, version, n_tensors, n_kv */
#define GGUF_MIN_KV_SIZE 14     /* 8 + 1-byte key + 4 + 1-byte value */
#define GGUF_MIN_TINFO_SIZE 33  /* 8 + 1-byte name + 4 + 8 (one dim) + 4 + 8 */

/* ---- tensor types ----
 * Every ggml type id, known or not to the kernels, has its block geometry in
 * quant.h's traits (qtype_info), so a file with a type we cannot compute with
 * (q4_1, iq2_xs, ...) still loads and is refused by name only where it is used. */

static const struct qtype_traits *type_size_of(uint64_t type)
{
	return type < QTYPE_COUNT ? qtype_info((int)type) : NULL;
}

/* ---- value types ---- */

static const struct {
	const char *name;
	size_t size;
} vtypes[GGUF_TYPE_COUNT] = {
	[GGUF_TYPE_UINT8] = { "u8", 1 },     [GGUF_TYPE_INT8] = { "i8", 1 },
	[GGUF_TYPE_UINT16] = { "u16", 2 },   [GGUF_TYPE_INT16] = { "i16", 2 },
	[GGUF_TYPE_UINT32] = { "u32", 4 },   [GGUF_TYPE_INT32] = { "i32", 4 },
	[GGUF_TYPE_FLOAT32] = { "f32", 4 },  [GGUF_TYPE_BOOL] = { "bool", 1 },
	[GGUF_TYPE_STRING] = { "string", 0 }, [GGUF_TYPE_ARRAY] = { "array", 0 },
	[GGUF_TYPE_UINT64] = { "u64", 8 },   [GGUF_TYPE_INT64] = { "i64", 8 },
	[GGUF_TYPE_FLOAT64] = { "f64", 8 },
};

size_t gguf_vtype_size(enum gguf_vtype t)
{
	return (unsigned)t < GGUF_TYPE_COUNT ? vtypes[t].size : 0;
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
	return (unsigned)t < GGUF_TYPE_COUNT ? vtypes[t].name : "unknown";
}

static bool vtype_is_int(enum gguf_vtype t)
{
	switch (t) {
	case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
	case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64:
		return true;
	default:
		return false;
	}
}

static bool vtype_is_numeric(enum gguf_vtype t)
{
	return vtype_is_int(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64 ||
	       t == GGUF_TYPE_BOOL;
}

/* ---- the reader's private state ---- */

/* Keys and tensor names are looked up through one open-addressing table each;
 * both element structs start with their name, which the table code relies on. */
_Static_assert(offsetof(struct gguf_kv, key) == 0, "gguf_kv starts with its key");
_Static_assert(offsetof(struct gguf_tensor, name) == 0, "gguf_tensor starts with its name");

struct name_index {
	uint64_t *slot; /* owned, [mask + 1]: element index + 1, 0 = empty */
	size_t mask;
};

struct gguf_impl {
	struct gguf pub;               /* first: gguf_close() casts back */
	void *heap;                    /* owned copy of the bytes when they could not be mapped */
	struct name_index keys, tensor_names;
	const struct gguf_kv **sorted; /* owned, [n_kv]: keys in byte order, for the fingerprints */
};

static uint64_t name_hash(const char *s, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (uint64_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return h;
}

static int index_init(struct name_index *ix, uint64_t n)
{
	size_t cap = 8;
	while (cap < 2 * n)
		cap *= 2; /* n <= file size / 14, so this cannot overflow */
	ix->slot = kb_calloc(cap, sizeof *ix->slot);
	if (!ix->slot)
		return KB_ERR_NOMEM;
	ix->mask = cap - 1;
	return KB_OK;
}

static const struct gguf_str *name_at(const void *arr, size_t stride, uint64_t i)
{
	return (const struct gguf_str *)((const char *)arr + i * stride);
}

/* Index of the element named (s, n), or -1. */
static int64_t index_find(const struct name_index *ix, const void *arr, size_t stride,
			  const char *s, uint64_t n)
{
	if (!ix->slot)
		return -1;
	for (size_t h = name_hash(s, n) & ix->mask;; h = (h + 1) & ix->mask) {
		uint64_t v = ix->slot[h];
		if (v == 0)
			return -1;
		const struct gguf_str *name = name_at(arr, stride, v - 1);
		if (name->len == n && memcmp(name->data, s, n) == 0)
			return (int64_t)(v - 1);
	}
}

/* Add element i; returns the index of an element with the same name instead, or -1 if added. */
static int64_t index_add(struct name_index *ix, const void *arr, size_t stride, uint64_t i)
{
	const struct gguf_str *name = name_at(arr, stride, i);
	size_t h = name_hash(name->data, name->len) & ix->mask;
	for (; ix->slot[h]; h = (h + 1) & ix->mask) {
		const struct gguf_str *other = name_at(arr, stride, ix->slot[h] - 1);
		if (other->len == name->len && memcmp(other->data, name->data, name->len) == 0)
			return (int64_t)(ix->slot[h] - 1);
	}
	ix->slot[h] = i + 1;
	return -1;
}

/* ---- bounds-checked cursor ---- */

struct rd {
	const uint8_t *p;
	size_t size, pos;
	const char *path;
	char what[128]; /* where we are, for messages: "header", "key 3 ('general.name')", ... */
};

/* A name from the file, made printable and short enough for a message. */
static const char *printable(char *buf, size_t cap, const char *s, uint64_t n)
{
	size_t lim = cap - 4, j = 0;
	for (uint64_t i = 0; i < n && j < lim; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[j++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (n > lim)
		memcpy(buf + j, "...", 3), j += 3;
	buf[j] = '\0';
	return buf;
}

static int rd_where(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rd_where(struct rd *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->what, sizeof r->what, fmt, ap);
	va_end(ap);
	return 0;
}

/* n more bytes must be there. */
static int rd_need(struct rd *r, uint64_t n)
{
	if (n <= r->size - r->pos)
		return KB_OK;
	return kb_fail(KB_ERR_FORMAT, "'%s': truncated in %s (need %" PRIu64 " bytes at offset %zu, file has %zu)",
		       r->path, r->what, n, r->pos, r->size);
}

static int rd_u32(struct rd *r, uint32_t *v)
{
	if (rd_need(r, 4))
		return KB_ERR_FORMAT;
	*v = kb_le32(r->p + r->pos);
	r->pos += 4;
	return KB_OK;
}

static int rd_u64(struct rd *r, uint64_t *v)
{
	if (rd_need(r, 8))
		return KB_ERR_FORMAT;
	*v = kb_le64(r->p + r->pos);
	r->pos += 8;
	return KB_OK;
}

/* A length read from the file that no real file could hold is corruption, one
 * that merely runs past the end is truncation. */
#define GGUF_IMPOSSIBLE (UINT64_C(1) << 48)

static int rd_str(struct rd *r, struct gguf_str *s)
{
	if (rd_u64(r, &s->len))
		return KB_ERR_FORMAT;
	if (s->len > GGUF_IMPOSSIBLE)
		return kb_fail(KB_ERR_FORMAT, "'%s': corrupt %s: impossible string length %" PRIu64,
			       r->path, r->what, s->len);
	if (rd_need(r, s->len))
		return KB_ERR_FORMAT;
	s->data = (const char *)r->p + r->pos;
	r->pos += s->len;
	return KB_OK;
}

/* n elements of elsize bytes must follow. */
static int rd_array(struct rd *r, uint64_t n, uint64_t elsize, const char *tname)
{
	uint64_t bytes;
	if (__builtin_mul_overflow(n, elsize, &bytes) || bytes > GGUF_IMPOSSIBLE)
		return kb_fail(KB_ERR_FORMAT, "'%s': corrupt %s: impossible array of %" PRIu64 " %s values",
			       r->path, r->what, n, tname);
	return rd_need(r, bytes);
}

/* ---- loading ---- */

static int parse_value(struct rd *r, struct gguf_kv *kv, const char *keyname)
{
	uint32_t type, arr_type;
	if (rd_u32(r, &type))
		return KB_ERR_FORMAT;
	if (type >= GGUF_TYPE_COUNT)
		return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' has unknown value type %" PRIu32, r->path, keyname, type);
	kv->type = type;
	kv->data = r->p + r->pos;
	if (type == GGUF_TYPE_STRING) {
		kv->strs = kb_calloc(1, sizeof *kv->strs);
		if (!kv->strs)
			return KB_ERR_NOMEM;
		return rd_str(r, &kv->strs[0]);
	}
	if (type != GGUF_TYPE_ARRAY) {
		if (rd_need(r, vtypes[type].size))
			return KB_ERR_FORMAT;
		r->pos += vtypes[type].size;
		return KB_OK;
	}
	if (rd_u32(r, &arr_type) || rd_u64(r, &kv->arr_n))
		return KB_ERR_FORMAT;
	if (arr_type >= GGUF_TYPE_COUNT)
		return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' is an array of unknown value type %" PRIu32,
			       r->path, keyname, arr_type);
	if (arr_type == GGUF_TYPE_ARRAY)
		return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' is an array of arrays, which is not supported",
			       r->path, keyname);
	kv->arr_type = arr_type;
	kv->data = r->p + r->pos;
	if (arr_type != GGUF_TYPE_STRING) {
		if (rd_array(r, kv->arr_n, vtypes[arr_type].size, vtypes[arr_type].name))
			return KB_ERR_FORMAT;
		r->pos += kv->arr_n * vtypes[arr_type].size;
		return KB_OK;
	}
	/* each string takes at least its 8-byte length */
	if (rd_array(r, kv->arr_n, 8, "string"))
		return KB_ERR_FORMAT;
	kv->strs = kb_calloc(kv->arr_n, sizeof *kv->strs);
	if (!kv->strs)
		return KB_ERR_NOMEM;
	for (uint64_t j = 0; j < kv->arr_n; j++)
		if (rd_str(r, &kv->strs[j]))
			return KB_ERR_FORMAT;
	return KB_OK;
}

static int parse_kvs(struct gguf_impl *gi, struct rd *r)
{
	struct gguf *g = &gi->pub;
	char name[80];
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct gguf_kv *kv = &g->kv[i];
		rd_where(r, "key %" PRIu64, i);
		if (rd_str(r, &kv->key))
			return KB_ERR_FORMAT;
		printable(name, sizeof name, kv->key.data, kv->key.len);
		if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
			return kb_fail(KB_ERR_FORMAT, "'%s': corrupt key %" PRIu64 ": length %" PRIu64 " is out of range (1..%d)",
				       r->path, i, kv->key.len, GGUF_MAX_KEY_LEN);
		rd_where(r, "key %" PRIu64 " ('%s')", i, name);
		int st = parse_value(r, kv, name);
		if (st)
			return st;
		if (index_add(&gi->keys, g->kv, sizeof *g->kv, i) >= 0)
			return kb_fail(KB_ERR_FORMAT, "'%s': duplicate key '%s'", r->path, name);
	}
	return KB_OK;
}

static int parse_tensor_info(struct gguf_impl *gi, struct rd *r, uint64_t i)
{
	struct gguf *g = &gi->pub;
	struct gguf_tensor *t = &g->tensors[i];
	char name[80];
	uint32_t type;
	rd_where(r, "tensor info %" PRIu64, i);
	if (rd_str(r, &t->name))
		return KB_ERR_FORMAT;
	printable(name, sizeof name, t->name.data, t->name.len);
	if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME_LEN)
		return kb_fail(KB_ERR_FORMAT, "'%s': corrupt tensor info %" PRIu64 ": name length %" PRIu64 " is out of range (1..%d)",
			       r->path, i, t->name.len, GGUF_MAX_NAME_LEN);
	if (rd_u32(r, &t->n_dims))
		return KB_ERR_FORMAT;
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has %" PRIu32 " dimensions (expected 1..%d)",
			       r->path, name, t->n_dims, GGUF_MAX_DIMS);
	for (int d = 0; d < GGUF_MAX_DIMS; d++) {
		uint64_t ne = 1;
		if ((uint32_t)d < t->n_dims && rd_u64(r, &ne))
			return KB_ERR_FORMAT;
		if (ne > INT64_MAX)
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has a negative dimension (ne[%d] = %" PRId64 ")",
				       r->path, name, d, (int64_t)ne);
		t->ne[d] = (int64_t)ne;
	}
	if (rd_u32(r, &type) || rd_u64(r, &t->offset))
		return KB_ERR_FORMAT;
	const struct qtype_traits *ts = type_size_of(type);
	if (!ts)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has unknown type %" PRIu32, r->path, name, type);
	t->type = (int)type;
	int64_t n = 1;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		if (__builtin_mul_overflow(n, t->ne[d], &n))
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has too many elements (%" PRId64 " x %" PRId64 " x %" PRId64 " x %" PRId64 ")",
				       r->path, name, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
	t->n_elements = n;
	if (t->ne[0] % ts->blck_size)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has %" PRId64 " columns, not a multiple of the %s block size %d",
			       r->path, name, t->ne[0], ts->name, ts->blck_size);
	uint64_t size = (uint64_t)(n / ts->blck_size);
	if (__builtin_mul_overflow(size, (uint64_t)ts->type_size, &size) || size > SIZE_MAX)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' is too large (%" PRId64 " elements of %s)",
			       r->path, name, n, ts->name);
	t->size = (size_t)size;
	if (index_add(&gi->tensor_names, g->tensors, sizeof *g->tensors, i) >= 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': duplicate tensor name '%s'", r->path, name);
	return KB_OK;
}

/* general.alignment: an integer, a power of two and (as the GGUF spec says) a
 * multiple of 8, so tensor data in place is aligned for the kernels' blocks. */
static int load_alignment(struct gguf_impl *gi)
{
	struct gguf *g = &gi->pub;
	int64_t a;
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	int st = gguf_get_i64(g, "general.alignment", &a);
	if (st == KB_EOF)
		return KB_OK;
	if (st)
		return st;
	if (a < 8 || (a & (a - 1)) || (uint64_t)a > SIZE_MAX / 2)
		return kb_fail(KB_ERR_FORMAT, "'%s': general.alignment must be a power of two, at least 8 (got %" PRId64 ")",
			       g->path, a);
	g->alignment = (size_t)a;
	return KB_OK;
}

/* Place each tensor in the data section, inside the file. */
static int place_tensors(struct gguf_impl *gi, size_t end_of_infos)
{
	struct gguf *g = &gi->pub;
	char name[80];
	size_t off;
	if (kb_add_size(end_of_infos, g->alignment - 1, &off))
		return kb_fail(KB_ERR_FORMAT, "'%s': corrupt: data section offset overflows", g->path);
	off &= ~(g->alignment - 1);
	if (off > g->size) {
		if (g->n_tensors > 0)
			return kb_fail(KB_ERR_FORMAT, "'%s': truncated before the tensor data (data section at offset %zu, file has %zu)",
				       g->path, off, g->size);
		off = g->size;
	}
	g->data_offset = off;
	size_t avail = g->size - off;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->tensors[i];
		printable(name, sizeof name, t->name.data, t->name.len);
		if (t->offset % g->alignment)
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %zu",
				       g->path, name, t->offset, g->alignment);
		if (t->offset > avail || t->size > avail - t->offset)
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' data out of bounds (%zu bytes at data offset %" PRIu64 ", the data section has %zu: %s)",
				       g->path, name, t->size, t->offset, avail,
				       t->offset > GGUF_IMPOSSIBLE ? "corrupt offset" : "truncated file?");
		t->data = g->base + off + t->offset;
	}
	return KB_OK;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct gguf_kv *x = *(const struct gguf_kv *const *)a, *y = *(const struct gguf_kv *const *)b;
	uint64_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
	int c = memcmp(x->key.data, y->key.data, n);
	return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

static int gguf_load(struct gguf_impl *gi)
{
	struct gguf *g = &gi->pub;
	struct rd r = { .p = g->base, .size = g->size, .path = g->path };
	uint32_t version;
	int st;
	rd_where(&r, "header");
	if (g->size == 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': empty file (not a GGUF file)", g->path);
	if (memcmp(g->base, GGUF_MAGIC, g->size < 4 ? g->size : 4) != 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': not a GGUF file (bad magic)", g->path);
	if (rd_need(&r, 4))
		return KB_ERR_FORMAT;
	r.pos = 4;
	if (rd_u32(&r, &version))
		return KB_ERR_FORMAT;
	if (version == 1)
		return kb_fail(KB_ERR_FORMAT, "'%s': GGUF version 1 is not supported (only v2 and v3; convert the file with a newer tool)",
			       g->path);
	if ((version & 0xffff) == 0 && __builtin_bswap32(version) <= 3)
		return kb_fail(KB_ERR_FORMAT, "'%s': big-endian GGUF files are not supported", g->path);
	if (version != 2 && version != 3)
		return kb_fail(KB_ERR_FORMAT, "'%s': unsupported GGUF version %" PRIu32 " (expected 2 or 3)", g->path, version);
	g->version = version;
	if (rd_u64(&r, &g->n_tensors) || rd_u64(&r, &g->n_kv))
		return KB_ERR_FORMAT;

	/* Counts against the bytes that follow, before allocating for them. */
	size_t rest = g->size - r.pos;
	uint64_t need = 0;
	if (g->n_kv > GGUF_IMPOSSIBLE || g->n_tensors > GGUF_IMPOSSIBLE ||
	    (need = g->n_kv * GGUF_MIN_KV_SIZE + g->n_tensors * GGUF_MIN_TINFO_SIZE) > GGUF_IMPOSSIBLE)
		return kb_fail(KB_ERR_FORMAT, "'%s': corrupt header: impossible counts (%" PRIu64 " keys, %" PRIu64 " tensors)",
			       g->path, g->n_kv, g->n_tensors);
	if (need > rest)
		return kb_fail(KB_ERR_FORMAT, "'%s': truncated after the header (%" PRIu64 " keys and %" PRIu64 " tensors need at least %" PRIu64 " bytes, file has %zu more)",
			       g->path, g->n_kv, g->n_tensors, need, rest);
	g->kv = kb_calloc(g->n_kv, sizeof *g->kv);
	g->tensors = kb_calloc(g->n_tensors, sizeof *g->tensors);
	gi->sorted = kb_calloc(g->n_kv, sizeof *gi->sorted);
	if (!g->kv || !g->tensors || !gi->sorted)
		return KB_ERR_NOMEM;
	if ((st = index_init(&gi->keys, g->n_kv)) || (st = index_init(&gi->tensor_names, g->n_tensors)))
		return st;

	if ((st = parse_kvs(gi, &r)))
		return st;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if ((st = parse_tensor_info(gi, &r, i)))
			return st;
	if ((st = load_alignment(gi)) || (st = place_tensors(gi, r.pos)))
		return st;

	for (uint64_t i = 0; i < g->n_kv; i++)
		gi->sorted[i] = &g->kv[i];
	qsort(gi->sorted, g->n_kv, sizeof *gi->sorted, kv_cmp);
	return KB_OK;
}

static struct gguf_impl *impl_new(const char *path)
{
	struct gguf_impl *gi = kb_calloc(1, sizeof *gi);
	if (!gi)
		return NULL;
	size_t n = strlen(path) + 1;
	gi->pub.path = kb_malloc(n);
	if (!gi->pub.path) {
		free(gi);
		return NULL;
	}
	memcpy(gi->pub.path, path, n);
	return gi;
}

static int finish_open(struct gguf **out, struct gguf_impl *gi)
{
	int st = gguf_load(gi);
	if (st) {
		gguf_close(&gi->pub);
		return st;
	}
	*out = &gi->pub;
	return KB_OK;
}

/* Read a stream or special file (stdin, a pipe) whole from fd. */
static int open_heap(struct gguf **out, struct gguf_impl *gi, int fd)
{
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = NULL;
	for (;;) {
		if (!buf || n == cap) {
			if (buf)
				cap *= 2;
			uint8_t *nb = kb_realloc_array(buf, cap, 1);
			if (!nb)
				goto fail;
			buf = nb;
		}
		ssize_t k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			kb_fail(KB_ERR_IO, "'%s': %s", gi->pub.path, strerror(errno));
			goto fail;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	gi->heap = buf;
	gi->pub.base = buf;
	gi->pub.size = n;
	return finish_open(out, gi);
fail:
	free(buf);
	gguf_close(&gi->pub);
	return KB_ERR_IO;
}

int gguf_open(struct gguf **out, const char *path)
{
	struct gguf_impl *gi;
	struct stat sb;
	int st;
	*out = NULL;
	if (!path)
		path = "-";
	if (pull_is_url(path)) { /* a model by URL: its downloaded copy (pull.h) */
		char *local;
		int rc = pull_model(path, NULL, &local);
		if (rc)
			return rc;
		rc = gguf_open(out, local);
		free(local);
		return rc;
	}
	if (!(gi = impl_new(path)))
		return KB_ERR_NOMEM;
	if (strcmp(path, "-") == 0)
		return open_heap(out, gi, STDIN_FILENO);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		gguf_close(&gi->pub);
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(e));
	}
	if (S_ISDIR(sb.st_mode)) {
		close(fd);
		gguf_close(&gi->pub);
		return kb_fail(KB_ERR_IO, "'%s': is a directory", path);
	}
	if (!S_ISREG(sb.st_mode)) {
		st = open_heap(out, gi, fd);
		close(fd);
		return st;
	}
	if ((uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		gguf_close(&gi->pub);
		return kb_fail(KB_ERR_IO, "'%s': file too large to map", path);
	}
	gi->pub.size = (size_t)sb.st_size;
	if (gi->pub.size > 0) {
		void *m = mmap(NULL, gi->pub.size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			close(fd);
			gguf_close(&gi->pub);
			return kb_fail(KB_ERR_IO, "'%s': mmap: %s", path, strerror(e));
		}
		gi->pub.base = m;
		gi->pub.mapped = true;
	}
	close(fd);
	return finish_open(out, gi);
}

int gguf_open_mem(struct gguf **out, const void *buf, size_t len, const char *name)
{
	struct gguf_impl *gi;
	*out = NULL;
	if (!(gi = impl_new(name ? name : "<memory>")))
		return KB_ERR_NOMEM;
	gi->pub.base = buf;
	gi->pub.size = buf ? len : 0;
	return finish_open(out, gi);
}

int gguf_open_model(struct gguf **out, const char *path, struct gguf_str *arch)
{
	int rc = gguf_open(out, path);
	if (rc)
		return rc;
	rc = gguf_get_str(*out, "general.architecture", arch);
	if (rc == KB_EOF)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': no general.architecture: not a model file", path);
	if (rc) {
		gguf_close(*out);
		*out = NULL;
	}
	return rc;
}

void gguf_close(struct gguf *g)
{
	if (!g)
		return;
	struct gguf_impl *gi = (struct gguf_impl *)g;
	if (g->kv)
		for (uint64_t i = 0; i < g->n_kv; i++)
			free(g->kv[i].strs);
	free(g->kv);
	free(g->tensors);
	free(gi->sorted);
	free(gi->keys.slot);
	free(gi->tensor_names.slot);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	free(gi->heap);
	free(g->path);
	free(gi);
}

/* ---- lookups and getters ---- */

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
	const struct gguf_impl *gi = (const struct gguf_impl *)g;
	return index_find(&gi->keys, g->kv, sizeof *g->kv, key, strlen(key));
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
	const struct gguf_impl *gi = (const struct gguf_impl *)g;
	int64_t i = index_find(&gi->tensor_names, g->tensors, sizeof *g->tensors, name, strlen(name));
	return i < 0 ? NULL : &g->tensors[i];
}

static const struct gguf_kv *get_kv(const struct gguf *g, const char *key)
{
	int64_t i = gguf_find_key(g, key);
	return i < 0 ? NULL : &g->kv[i];
}

static int wrong_type(const struct gguf *g, const char *key, const struct gguf_kv *kv, const char *want)
{
	if (kv->type == GGUF_TYPE_ARRAY)
		return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' is an array of %s, expected %s", g->path, key,
			       gguf_vtype_name(kv->arr_type), want);
	return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' has type %s, expected %s", g->path, key,
		       gguf_vtype_name(kv->type), want);
}

/* An integer of type t at p, as a sign flag and magnitude-preserving pair. */
static void load_int(enum gguf_vtype t, const void *p, int64_t *s, uint64_t *u, bool *is_signed)
{
	*is_signed = true;
	switch (t) {
	case GGUF_TYPE_UINT8: *u = *(const uint8_t *)p; break;
	case GGUF_TYPE_UINT16: *u = kb_le16(p); break;
	case GGUF_TYPE_UINT32: *u = kb_le32(p); break;
	case GGUF_TYPE_UINT64: *u = kb_le64(p); break;
	case GGUF_TYPE_INT8: *s = (int8_t)*(const uint8_t *)p; return;
	case GGUF_TYPE_INT16: *s = (int16_t)kb_le16(p); return;
	case GGUF_TYPE_INT32: *s = (int32_t)kb_le32(p); return;
	case GGUF_TYPE_INT64: *s = (int64_t)kb_le64(p); return;
	default: ASSERT(!"not an integer type");
	}
	*is_signed = false;
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	int64_t s = 0;
	uint64_t u = 0;
	bool sg;
	if (!kv)
		return KB_EOF;
	if (!vtype_is_int(kv->type))
		return wrong_type(g, key, kv, "an integer");
	load_int(kv->type, kv->data, &s, &u, &sg);
	if (sg ? s < 0 || s > UINT32_MAX : u > UINT32_MAX)
		return sg ? kb_fail(KB_ERR_FORMAT, "'%s': key '%s' value %" PRId64 " does not fit in u32", g->path, key, s)
			  : kb_fail(KB_ERR_FORMAT, "'%s': key '%s' value %" PRIu64 " does not fit in u32", g->path, key, u);
	*out = sg ? (uint32_t)s : (uint32_t)u;
	return KB_OK;
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	int64_t s = 0;
	uint64_t u = 0;
	bool sg;
	if (!kv)
		return KB_EOF;
	if (!vtype_is_int(kv->type))
		return wrong_type(g, key, kv, "an integer");
	load_int(kv->type, kv->data, &s, &u, &sg);
	if (!sg && u > INT64_MAX)
		return kb_fail(KB_ERR_FORMAT, "'%s': key '%s' value %" PRIu64 " does not fit in i64", g->path, key, u);
	*out = sg ? s : (int64_t)u;
	return KB_OK;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return KB_EOF;
	if (kv->type == GGUF_TYPE_FLOAT32)
		*out = kb_lef32(kv->data);
	else if (kv->type == GGUF_TYPE_FLOAT64)
		*out = (float)kb_lef64(kv->data);
	else
		return wrong_type(g, key, kv, "f32");
	return KB_OK;
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return KB_EOF;
	if (kv->type != GGUF_TYPE_BOOL)
		return wrong_type(g, key, kv, "bool");
	*out = *(const uint8_t *)kv->data != 0;
	return KB_OK;
}

int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return KB_EOF;
	if (kv->type != GGUF_TYPE_STRING)
		return wrong_type(g, key, kv, "string");
	*out = kv->strs[0];
	return KB_OK;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype *type, uint64_t *n,
		 const void **data)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return KB_EOF;
	if (kv->type != GGUF_TYPE_ARRAY)
		return wrong_type(g, key, kv, "an array");
	*type = kv->arr_type;
	*n = kv->arr_n;
	*data = kv->data;
	return KB_OK;
}

int gguf_get_arr_str(const struct gguf *g, const char *key, const struct gguf_str **strs,
		     uint64_t *n)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return KB_EOF;
	if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
		return wrong_type(g, key, kv, "an array of strings");
	*strs = kv->strs;
	*n = kv->arr_n;
	return KB_OK;
}

double gguf_arr_get_f64(enum gguf_vtype type, const void *data, uint64_t i)
{
	ASSERT(vtype_is_numeric(type));
	const uint8_t *p = (const uint8_t *)data + i * vtypes[type].size;
	int64_t s = 0;
	uint64_t u = 0;
	bool sg;
	switch (type) {
	case GGUF_TYPE_FLOAT32: return kb_lef32(p);
	case GGUF_TYPE_FLOAT64: return kb_lef64(p);
	case GGUF_TYPE_BOOL: return *p != 0;
	default:
		load_int(type, p, &s, &u, &sg);
		return sg ? (double)s : (double)u;
	}
}

int64_t gguf_arr_get_i64(enum gguf_vtype type, const void *data, uint64_t i)
{
	ASSERT(vtype_is_numeric(type));
	const uint8_t *p = (const uint8_t *)data + i * vtypes[type].size;
	int64_t s = 0;
	uint64_t u = 0;
	bool sg;
	switch (type) {
	case GGUF_TYPE_FLOAT32:
	case GGUF_TYPE_FLOAT64: {
		double d = type == GGUF_TYPE_FLOAT32 ? kb_lef32(p) : kb_lef64(p);
		/* saturate: a float cast out of range is undefined */
		if (!(d > -9223372036854775808.0))
			return d != d ? 0 : INT64_MIN;
		return d >= 9223372036854775808.0 ? INT64_MAX : (int64_t)d;
	}
	case GGUF_TYPE_BOOL: return *p != 0;
	default:
		load_int(type, p, &s, &u, &sg);
		return sg ? s : u > INT64_MAX ? INT64_MAX : (int64_t)u;
	}
}

bool gguf_str_eq(struct gguf_str s, const char *c)
{
	size_t n = strlen(c);
	return s.len == n && memcmp(s.data, c, n) == 0;
}

char *gguf_str_dup(struct gguf_str s)
{
	if (s.len >= SIZE_MAX) {
		kb_fail(KB_ERR_NOMEM, "out of memory (string of %" PRIu64 " bytes)", s.len);
		return NULL;
	}
	char *p = kb_malloc((size_t)s.len + 1);
	if (!p)
		return NULL;
	if (s.len)
		memcpy(p, s.data, (size_t)s.len);
	p[s.len] = '\0';
	return p;
}

uint32_t gguf_context_length(const struct gguf *g)
{
	struct gguf_str arch;
	char key[96];
	uint32_t n;
	if (gguf_get_str(g, "general.architecture", &arch) != KB_OK || arch.len > 64)
		return 0;
	snprintf(key, sizeof key, "%.*s.context_length", (int)arch.len, arch.data);
	return gguf_get_u32(g, key, &n) == KB_OK ? n : 0;
}

/* ---- fingerprints ----
 *
 * Both are SHA-256 over a byte stream built from the parsed file; integers in
 * it are little-endian, a "str" is u64 length + bytes (no NUL). This
 * serialisation is part of the .kvc format (caches are keyed by it): change it
 * only together with the tag, which names its version.
 *
 * kv(k) for one key k, from the value as GGUF stores it:
 *   str key, u32 vtype, then
 *     scalar: its bytes (1, 2, 4 or 8; bool is the stored byte)
 *     string: str
 *     array:  u32 element vtype, u64 n, then n elements (scalars: their bytes; strings: str)
 *
 * model fingerprint:
 *   "kvblend-model-fingerprint-v2" (28 bytes, no NUL)
 *   str arch                 general.architecture ("" when absent or not a string)
 *   u64 m, then kv(k) for the m keys named "<arch>.*", sorted bytewise by name
 *     (none when arch is "")
 *   u64 n_tensors, then per tensor in file order:
 *     str name, u32 type, u32 n_dims, n_dims x i64 ne,
 *     16 bytes XXH3-128 of its data (its `size` bytes; xxhash's canonical form:
 *       the high 64 bits, then the low 64 bits, each big-endian)
 * v1 had no data digests, so two files of one shape and different weights
 * shared a fingerprint. SHA-256 alone runs at about 0.5 GB/s; XXH3 at memory
 * speed (measured in gguf.h), and the tensors are hashed in parallel.
 *
 * tokenizer fingerprint:
 *   "kvblend-tokenizer-fingerprint-v1" (32 bytes, no NUL)
 *   u64 m, then kv(k) for the m keys named "tokenizer.*", sorted bytewise by name,
 *   except "tokenizer.chat_template*": a template changes prompts, not token ids,
 *   so editing it must not invalidate stored caches
 */

static void fp_u32(struct sha256 *s, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	sha256_update(s, b, 4);
}

static void fp_u64(struct sha256 *s, uint64_t v)
{
	fp_u32(s, (uint32_t)v);
	fp_u32(s, (uint32_t)(v >> 32));
}

static void fp_str(struct sha256 *s, struct gguf_str str)
{
	fp_u64(s, str.len);
	sha256_update(s, str.data, (size_t)str.len);
}

static void fp_kv(struct sha256 *s, const struct gguf_kv *kv)
{
	fp_str(s, kv->key);
	fp_u32(s, kv->type);
	if (kv->type == GGUF_TYPE_STRING) {
		fp_str(s, kv->strs[0]);
	} else if (kv->type != GGUF_TYPE_ARRAY) {
		sha256_update(s, kv->data, vtypes[kv->type].size); /* already little-endian */
	} else {
		fp_u32(s, kv->arr_type);
		fp_u64(s, kv->arr_n);
		if (kv->arr_type == GGUF_TYPE_STRING)
			for (uint64_t i = 0; i < kv->arr_n; i++)
				fp_str(s, kv->strs[i]);
		else
			sha256_update(s, kv->data, (size_t)(kv->arr_n * vtypes[kv->arr_type].size));
	}
}

static bool has_prefix(struct gguf_str s, const char *pre, size_t n)
{
	return s.len > n && memcmp(s.data, pre, n) == 0;
}

static bool fp_wanted(struct gguf_str key, const char *pre, size_t n)
{
	static const char tmpl[] = "tokenizer.chat_template";
	return has_prefix(key, pre, n) &&
	       !(key.len >= sizeof tmpl - 1 && memcmp(key.data, tmpl, sizeof tmpl - 1) == 0);
}

/* Hash the count, then every wanted key starting with pre[0..n), in byte order. */
static void fp_keys(struct sha256 *s, const struct gguf *g, const char *pre, size_t n)
{
	const struct gguf_impl *gi = (const struct gguf_impl *)g;
	uint64_t m = 0;
	for (uint64_t i = 0; i < g->n_kv; i++)
		m += fp_wanted(g->kv[i].key, pre, n);
	fp_u64(s, m);
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (fp_wanted(gi->sorted[i]->key, pre, n))
			fp_kv(s, gi->sorted[i]);
}

/* The XXH3-128 of tensors [i0, i0 + n) into dig[0..n), in canonical (big-endian) form. */
static void fp_data(const struct gguf *g, uint64_t i0, int n, XXH128_canonical_t *dig)
{
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
	for (int j = 0; j < n; j++) {
		const struct gguf_tensor *t = &g->tensors[i0 + (uint64_t)j];
		XXH128_canonicalFromHash(&dig[j], xxh3_128(t->data, t->size));
	}
}

void gguf_fingerprint(const struct gguf *g, uint8_t out[32])
{
	static const char tag[] = "kvblend-model-fingerprint-v2";
	enum { BATCH = 64 }; /* tensors whose data digests are computed at once */
	XXH128_canonical_t dig[BATCH];
	struct sha256 s;
	struct gguf_str arch = { 0, "" };
	char prefix[GGUF_MAX_KEY_LEN + 2];
	sha256_init(&s);
	sha256_update(&s, tag, sizeof tag - 1);
	if (gguf_get_str(g, "general.architecture", &arch) != KB_OK || arch.len > GGUF_MAX_KEY_LEN)
		arch = (struct gguf_str){ 0, "" };
	fp_str(&s, arch);
	if (arch.len > 0) {
		memcpy(prefix, arch.data, (size_t)arch.len);
		prefix[arch.len] = '.';
		fp_keys(&s, g, prefix, (size_t)arch.len + 1);
	} else {
		fp_u64(&s, 0);
	}
	fp_u64(&s, g->n_tensors);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		if (i % BATCH == 0)
			fp_data(g, i, (int)(g->n_tensors - i < BATCH ? g->n_tensors - i : BATCH), dig);
		fp_str(&s, t->name);
		fp_u32(&s, (uint32_t)t->type);
		fp_u32(&s, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			fp_u64(&s, (uint64_t)t->ne[d]);
		sha256_update(&s, dig[i % BATCH].digest, sizeof dig[0].digest);
	}
	sha256_final(&s, out);
}

void gguf_tokenizer_fingerprint(const struct gguf *g, uint8_t out[32])
{
	static const char tag[] = "kvblend-tokenizer-fingerprint-v1";
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, tag, sizeof tag - 1);
	fp_keys(&s, g, "tokenizer.", 10);
	sha256_final(&s, out);
}

/* ---- writer ---- */

struct wkv {
	char *key;    /* owned, NUL-terminated (key_len bytes before the NUL) */
	size_t key_len;
	uint32_t type;
	uint8_t *val; /* owned: the value exactly as GGUF stores it after the type */
	size_t len;
};

struct wtensor {
	char *name;   /* owned */
	size_t name_len;
	int type;
	uint32_t n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	const void *data; /* the caller's, until gguf_writer_write() returns */
	size_t size;
};

struct gguf_writer {
	struct wkv *kv;           /* owned, [n_kv] of cap_kv */
	size_t n_kv, cap_kv;
	struct wtensor *t;        /* owned, [n_t] of cap_t */
	size_t n_t, cap_t;
	int err;                  /* first failure of a set/add call; write() reports it */
	char errmsg[256];
};

/* A growable byte buffer for serialising values and the header. */
struct wbuf {
	uint8_t *p;
	size_t n, cap;
	int err;
};

static void wb_put(struct wbuf *b, const void *src, size_t n)
{
	if (b->err)
		return;
	if (n > b->cap - b->n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->n < n) {
			if (cap > SIZE_MAX / 2) {
				b->err = kb_fail(KB_ERR_NOMEM, "out of memory (buffer of more than %zu bytes)", cap);
				return;
			}
			cap *= 2;
		}
		uint8_t *p = kb_realloc_array(b->p, cap, 1);
		if (!p) {
			b->err = KB_ERR_NOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void wb_u32(struct wbuf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	wb_put(b, x, 4);
}

static void wb_u64(struct wbuf *b, uint64_t v)
{
	wb_u32(b, (uint32_t)v);
	wb_u32(b, (uint32_t)(v >> 32));
}

static void wb_str(struct wbuf *b, const char *s, size_t n)
{
	wb_u64(b, n);
	wb_put(b, s, n);
}

/* n values of size sz in host order, stored little-endian. */
static void wb_host(struct wbuf *b, const void *src, size_t sz, uint64_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	size_t bytes;
	if (n > SIZE_MAX || kb_mul_size((size_t)n, sz, &bytes)) {
		if (!b->err)
			b->err = kb_fail(KB_ERR_NOMEM, "array of %" PRIu64 " values is too large", n);
		return;
	}
	wb_put(b, src, bytes);
#else
	const uint8_t *p = src;
	for (uint64_t i = 0; i < n; i++, p += sz) {
		uint8_t x[8];
		for (size_t j = 0; j < sz; j++)
			x[j] = p[sz - 1 - j];
		wb_put(b, x, sz);
	}
#endif
}

static int w_fail(struct gguf_writer *w, int st)
{
	if (!w->err) {
		w->err = st;
		snprintf(w->errmsg, sizeof w->errmsg, "%s", kb_error());
	}
	return st;
}

struct gguf_writer *gguf_writer_init(void)
{
	return kb_calloc(1, sizeof(struct gguf_writer));
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].val);
	}
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w);
}

/* Set key (key_len bytes) to an already-serialised value; takes ownership of b->p. */
static int w_set(struct gguf_writer *w, const char *key, size_t key_len, uint32_t type, struct wbuf *b)
{
	if (b->err) {
		free(b->p);
		return w_fail(w, b->err);
	}
	if (key_len == 0 || key_len > GGUF_MAX_KEY_LEN) {
		free(b->p);
		return w_fail(w, kb_fail(KB_ERR_ARG, "GGUF key length %zu is out of range (1..%d)", key_len, GGUF_MAX_KEY_LEN));
	}
	for (size_t i = 0; i < w->n_kv; i++) {
		struct wkv *kv = &w->kv[i];
		if (kv->key_len == key_len && memcmp(kv->key, key, key_len) == 0) {
			free(kv->val);
			kv->type = type;
			kv->val = b->p;
			kv->len = b->n;
			return KB_OK;
		}
	}
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
		struct wkv *kv = kb_realloc_array(w->kv, cap, sizeof *kv);
		if (!kv) {
			free(b->p);
			return w_fail(w, KB_ERR_NOMEM);
		}
		w->kv = kv;
		w->cap_kv = cap;
	}
	char *k = kb_malloc(key_len + 1);
	if (!k) {
		free(b->p);
		return w_fail(w, KB_ERR_NOMEM);
	}
	memcpy(k, key, key_len);
	k[key_len] = '\0';
	w->kv[w->n_kv++] = (struct wkv){ .key = k, .key_len = key_len, .type = type, .val = b->p, .len = b->n };
	return KB_OK;
}

static int w_set_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *v)
{
	struct wbuf b = { 0 };
	wb_host(&b, v, vtypes[t].size, 1);
	return w_set(w, key, strlen(key), t, &b);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_UINT64, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
	return w_set_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
	uint8_t x = v;
	return w_set_scalar(w, key, GGUF_TYPE_BOOL, &x);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
	struct wbuf b = { 0 };
	wb_str(&b, v, strlen(v));
	return w_set(w, key, strlen(key), GGUF_TYPE_STRING, &b);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype t,
			const void *data, uint64_t n)
{
	struct wbuf b = { 0 };
	if (!vtype_is_numeric(t))
		return w_fail(w, kb_fail(KB_ERR_ARG, "GGUF key '%s': array element type %s is not numeric",
					 key, gguf_vtype_name(t)));
	wb_u32(&b, t);
	wb_u64(&b, n);
	wb_host(&b, data, vtypes[t].size, n);
	return w_set(w, key, strlen(key), GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
			    uint64_t n)
{
	struct wbuf b = { 0 };
	wb_u32(&b, GGUF_TYPE_STRING);
	wb_u64(&b, n);
	for (uint64_t i = 0; i < n; i++)
		wb_str(&b, strs[i], strlen(strs[i]));
	return w_set(w, key, strlen(key), GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, uint64_t i)
{
	struct wbuf b = { 0 };
	if (i >= src->n_kv)
		return w_fail(w, kb_fail(KB_ERR_ARG, "GGUF key index %" PRIu64 " out of range (%" PRIu64 " keys)",
					 i, src->n_kv));
	const struct gguf_kv *kv = &src->kv[i];
	if (kv->type == GGUF_TYPE_STRING) {
		wb_str(&b, kv->strs[0].data, (size_t)kv->strs[0].len);
	} else if (kv->type != GGUF_TYPE_ARRAY) {
		wb_put(&b, kv->data, vtypes[kv->type].size); /* already little-endian */
	} else {
		wb_u32(&b, kv->arr_type);
		wb_u64(&b, kv->arr_n);
		if (kv->arr_type == GGUF_TYPE_STRING)
			for (uint64_t j = 0; j < kv->arr_n; j++)
				wb_str(&b, kv->strs[j].data, (size_t)kv->strs[j].len);
		else
			wb_put(&b, kv->data, (size_t)(kv->arr_n * vtypes[kv->arr_type].size));
	}
	return w_set(w, kv->key.data, (size_t)kv->key.len, kv->type, &b);
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int type, uint32_t n_dims,
			   const int64_t *ne, const void *data, size_t size)
{
	size_t len = strlen(name);
	const struct qtype_traits *ts = type >= 0 ? type_size_of((uint64_t)type) : NULL;
	struct wtensor t = { .type = type, .n_dims = n_dims, .data = data, .size = size };
	if (len == 0 || len > GGUF_MAX_NAME_LEN)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor name length %zu is out of range (1..%d)", len, GGUF_MAX_NAME_LEN));
	if (!ts)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': unknown type %d", name, type));
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': %" PRIu32 " dimensions (expected 1..%d)",
					 name, n_dims, GGUF_MAX_DIMS));
	int64_t n = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		t.ne[d] = d < n_dims ? ne[d] : 1;
		if (t.ne[d] < 0 || __builtin_mul_overflow(n, t.ne[d], &n))
			return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': bad shape", name));
	}
	if (t.ne[0] % ts->blck_size)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': %" PRId64 " columns is not a multiple of the %s block size %d",
					 name, t.ne[0], ts->name, ts->blck_size));
	uint64_t want;
	if (__builtin_mul_overflow((uint64_t)(n / ts->blck_size), (uint64_t)ts->type_size, &want) || want != size)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': %zu bytes given, its shape and type need %" PRIu64,
					 name, size, want));
	if (size > 0 && !data)
		return w_fail(w, kb_fail(KB_ERR_ARG, "tensor '%s': no data", name));
	for (size_t i = 0; i < w->n_t; i++)
		if (w->t[i].name_len == len && memcmp(w->t[i].name, name, len) == 0)
			return w_fail(w, kb_fail(KB_ERR_ARG, "duplicate tensor name '%s'", name));
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? 2 * w->cap_t : 64;
		struct wtensor *p = kb_realloc_array(w->t, cap, sizeof *p);
		if (!p)
			return w_fail(w, KB_ERR_NOMEM);
		w->t = p;
		w->cap_t = cap;
	}
	if (!(t.name = kb_malloc(len + 1)))
		return w_fail(w, KB_ERR_NOMEM);
	memcpy(t.name, name, len + 1);
	t.name_len = len;
	w->t[w->n_t++] = t;
	return KB_OK;
}

/* The alignment the file will use: general.alignment if set, as any integer. */
static int w_alignment(const struct gguf_writer *w, size_t *align)
{
	*align = GGUF_DEFAULT_ALIGNMENT;
	for (size_t i = 0; i < w->n_kv; i++) {
		const struct wkv *kv = &w->kv[i];
		if (strcmp(kv->key, "general.alignment") != 0)
			continue;
		int64_t s = 0;
		uint64_t u = 0;
		bool sg;
		if (!vtype_is_int(kv->type))
			return kb_fail(KB_ERR_ARG, "general.alignment has type %s, expected u32", gguf_vtype_name(kv->type));
		load_int(kv->type, kv->val, &s, &u, &sg);
		if (sg)
			u = s < 0 ? 0 : (uint64_t)s;
		if (u < 8 || (u & (u - 1)) || u > (1u << 30))
			return kb_fail(KB_ERR_ARG, "general.alignment must be a power of two from 8 to 2^30 (got %" PRIu64 ")", u);
		*align = (size_t)u;
	}
	return KB_OK;
}

static int write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_zeros(int fd, size_t n)
{
	static const uint8_t zeros[4096];
	while (n > 0) {
		size_t k = n < sizeof zeros ? n : sizeof zeros;
		if (write_full(fd, zeros, k))
			return -1;
		n -= k;
	}
	return 0;
}

/* Header, metadata, tensor table and the padding before the data. */
static int w_header(const struct gguf_writer *w, size_t align, struct wbuf *b)
{
	uint64_t off = 0;
	wb_put(b, GGUF_MAGIC, 4);
	wb_u32(b, 3);
	wb_u64(b, w->n_t);
	wb_u64(b, w->n_kv);
	for (size_t i = 0; i < w->n_kv; i++) {
		wb_str(b, w->kv[i].key, w->kv[i].key_len);
		wb_u32(b, w->kv[i].type);
		wb_put(b, w->kv[i].val, w->kv[i].len);
	}
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		wb_str(b, t->name, t->name_len);
		wb_u32(b, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			wb_u64(b, (uint64_t)t->ne[d]);
		wb_u32(b, (uint32_t)t->type);
		wb_u64(b, off);
		if (__builtin_add_overflow(off, (uint64_t)t->size + (align - 1), &off))
			return kb_fail(KB_ERR_ARG, "tensor data too large");
		off &= ~(uint64_t)(align - 1);
	}
	static const uint8_t zeros[1u << 12];
	size_t pad = (align - b->n % align) % align;
	while (pad > 0 && !b->err) {
		size_t k = pad < sizeof zeros ? pad : sizeof zeros;
		wb_put(b, zeros, k);
		pad -= k;
	}
	return b->err;
}

int gguf_writer_write(struct gguf_writer *w, const char *path)
{
	struct wbuf hdr = { 0 };
	size_t align;
	char *tmp = NULL;
	int fd = -1, st;
	bool to_stdout = strcmp(path, "-") == 0;
	const char *shown = to_stdout ? "<stdout>" : path;

	if (w->err)
		return kb_fail(w->err, "%s", w->errmsg);
	if ((st = w_alignment(w, &align)) || (st = w_header(w, align, &hdr)))
		goto out;
	if (to_stdout) {
		if (isatty(STDOUT_FILENO)) {
			st = kb_fail(KB_ERR_ARG, "refusing to write a binary GGUF file to a terminal");
			goto out;
		}
		fd = STDOUT_FILENO;
	} else if ((fd = kb_open_temp(path, &tmp)) < 0) {
		st = KB_ERR_IO;
		goto out;
	}
	if (write_full(fd, hdr.p, hdr.n))
		goto io_err;
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		if (write_full(fd, t->data, t->size) || write_zeros(fd, (align - t->size % align) % align))
			goto io_err;
	}
	if (!to_stdout) {
		if (fsync(fd) < 0)
			goto io_err;
		if (close(fd) < 0) {
			fd = -1;
			goto io_err;
		}
		fd = -1;
		if (rename(tmp, path) < 0)
			goto io_err;
		kb_fsync_parent(path);
	}
	st = KB_OK;
	goto out;

io_err:
	st = kb_fail(KB_ERR_IO, "'%s': %s", shown, strerror(errno));
out:
	if (fd >= 0 && !to_stdout)
		close(fd);
	if (tmp && st != KB_OK)
		unlink(tmp);
	kb_temp_free(tmp);
	free(hdr.p);
	return st;
}
