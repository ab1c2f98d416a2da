/* gguf.h — GGUF v2/v3 reader (mmap, read-only, fully bounds-checked) and writer.
 *
 * Reader: gguf_open() maps the file and validates everything up front: the
 * magic and version, every length and count against the bytes that remain, the
 * metadata value types, the tensor table (dims, element counts, type, that each
 * tensor's data lies inside the file, at `general.alignment`), so accessors
 * never need to check bounds again. A truncated or hostile file is a
 * KB_ERR_FORMAT with a message naming the file and what is wrong; never a crash.
 * Strings point into the mapping and are NOT NUL-terminated (use .len).
 */
#ifndef KB_GGUF_H
#define KB_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum gguf_vtype {
	GGUF_TYPE_UINT8 = 0,
	GGUF_TYPE_INT8 = 1,
	GGUF_TYPE_UINT16 = 2,
	GGUF_TYPE_INT16 = 3,
	GGUF_TYPE_UINT32 = 4,
	GGUF_TYPE_INT32 = 5,
	GGUF_TYPE_FLOAT32 = 6,
	GGUF_TYPE_BOOL = 7,
	GGUF_TYPE_STRING = 8,
	GGUF_TYPE_ARRAY = 9,
	GGUF_TYPE_UINT64 = 10,
	GGUF_TYPE_INT64 = 11,
	GGUF_TYPE_FLOAT64 = 12,
	GGUF_TYPE_COUNT,
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

struct gguf_str {
	uint64_t len;
	const char *data; /* into the mapping; not NUL-terminated */
};

struct gguf_kv {
	struct gguf_str key;
	enum gguf_vtype type;     /* GGUF_TYPE_ARRAY for arrays */
	enum gguf_vtype arr_type; /* element type when type == ARRAY */
	uint64_t arr_n;           /* element count when type == ARRAY */
	const void *data;         /* scalar value bytes, or the first array element (unaligned, LE) */
	struct gguf_str *strs;    /* owned: for string values (1) and string arrays (arr_n), else NULL */
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	int64_t ne[GGUF_MAX_DIMS]; /* ne[0] contiguous; unused dims are 1 */
	int type;                  /* enum qtype (quant.h) */
	uint64_t offset;           /* relative to the data section */
	const void *data;          /* into the mapping */
	size_t size;               /* bytes */
	int64_t n_elements;
};

struct gguf {
	char *path;               /* owned copy, for messages */
	const uint8_t *base;      /* the mapping (or caller's buffer) */
	size_t size;
	bool mapped;
	uint32_t version;
	uint64_t n_kv;
	struct gguf_kv *kv;       /* owned, [n_kv] */
	uint64_t n_tensors;
	struct gguf_tensor *tensors; /* owned, [n_tensors] */
	size_t alignment;
	size_t data_offset;       /* start of the tensor data section */
};

/* Open and validate a file. Returns KB_OK and *out (free with gguf_close), or
 * KB_ERR_IO / KB_ERR_FORMAT / KB_ERR_NOMEM with kb_error() set. An http(s)://
 * URL opens its downloaded copy, downloading it first when it is not there
 * (pull_model: every tool's -m takes a URL). */
int gguf_open(struct gguf **out, const char *path) KB_WUR;
/* The same over a caller's buffer (not copied; must outlive the gguf). name is for messages. */
int gguf_open_mem(struct gguf **out, const void *buf, size_t len, const char *name) KB_WUR;
/* Unmap and free; gguf_close(NULL) is a no-op. */
void gguf_close(struct gguf *g);
/* Open a model file: gguf_open, then its general.architecture into *arch
 * (pointing into the file). A file without one is KB_ERR_FORMAT, "not a model
 * file". On error *out is NULL. */
int gguf_open_model(struct gguf **out, const char *path, struct gguf_str *arch) KB_WUR;

/* The model's context: "<general.architecture>.context_length", or 0 when the
 * file has none (or an unusable one). */
uint32_t gguf_context_length(const struct gguf *g);

/* Index of a key, or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);
/* A tensor by name, or NULL. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* Typed getters. Return KB_OK; KB_EOF when the key is absent (no message set, so
 * callers can default); KB_ERR_FORMAT when present with an unusable type/value
 * (message names the key). Integers of any width/sign are accepted when the value
 * fits; floats accept f32 or f64. */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out);
int gguf_get_f32(const struct gguf *g, const char *key, float *out);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out);
/* Array: element type, count and pointer to the first element (unaligned LE). */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype *type,
		 uint64_t *n, const void **data);
/* String array: the pre-indexed strings. */
int gguf_get_arr_str(const struct gguf *g, const char *key, const struct gguf_str **strs,
		     uint64_t *n);
/* Element i of a numeric array as double / int64 (any numeric element type). */
double gguf_arr_get_f64(enum gguf_vtype type, const void *data, uint64_t i);
int64_t gguf_arr_get_i64(enum gguf_vtype type, const void *data, uint64_t i);

/* true when s equals the C string c. */
bool gguf_str_eq(struct gguf_str s, const char *c);
/* Copy to a malloc()ed NUL-terminated string (caller frees); NULL on OOM. */
char *gguf_str_dup(struct gguf_str s);
/* Size in bytes of one value of a scalar type (0 for STRING/ARRAY). */
size_t gguf_vtype_size(enum gguf_vtype t);
const char *gguf_vtype_name(enum gguf_vtype t);

/* Model fingerprint: SHA-256 over the architecture name, every "<arch>.*" key
 * (hyper-parameters, in key order, type + value) and the tensor table (name, type,
 * dims, in file order), each tensor with the XXH3-128 of its data: any byte of
 * any tensor changes it (a fine-tune, another seed). Stable across runs and
 * machines; independent of unrelated metadata (names, descriptions), of the
 * alignment and of the tensors' order in the data section.
 * Cost: one read of the tensor data at memory speed: about 85 ms per GB with 2
 * threads, 125 ms with 1, warm page cache, idle 2-core Xeon (kvblend-kvc(5)), about what decoding
 * one token costs; on a cold cache, the reading the model's first forward pass
 * would do anyway. Not memoised: a (device, inode, size, mtime, ctime) memo
 * would save that fraction of a second per start, but it would need a writable
 * cache beside every model, and a file rewritten in place within the
 * timestamps' granularity (or through a shared mapping, whose mtime lags) would
 * keep a stale fingerprint: exactly the silent mix-up the fingerprint exists
 * to prevent. The serialisation is documented in gguf.c. */
void gguf_fingerprint(const struct gguf *g, uint8_t out[32]);
/* Tokenizer fingerprint: SHA-256 over every "tokenizer.*" key (type + value)
 * except the chat template, which does not change token ids. */
void gguf_tokenizer_fingerprint(const struct gguf *g, uint8_t out[32]);

/* ---- writer ----
 * Collects metadata and tensors, then writes a GGUF v3 file with every tensor's
 * data aligned to `general.alignment` (default 32). Tensor data is referenced,
 * not copied: it must stay valid until gguf_writer_write() returns. Keys keep
 * insertion order; setting a key twice replaces the value in place. */
struct gguf_writer;
struct gguf_writer *gguf_writer_init(void);
void gguf_writer_free(struct gguf_writer *w);
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* Numeric array of n elements of type t (data in host order, element size of t). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype t,
			const void *data, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
			    uint64_t n);
/* Copy key i of a reader (any type, arrays included). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, uint64_t i);
/* Add a tensor (ne[0] contiguous); size must equal its row size x rows. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int type, uint32_t n_dims,
			   const int64_t *ne, const void *data, size_t size);
/* Write to path atomically (temp file in the same directory, fsync, rename);
 * "-" writes to stdout. */
int gguf_writer_write(struct gguf_writer *w, const char *path) KB_WUR;

#endif
