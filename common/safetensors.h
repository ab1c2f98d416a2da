/* safetensors.h — reader of Hugging Face .safetensors files (mmap, read-only,
 * validated up front).
 *
 * The format: an 8-byte little-endian length N, N bytes of JSON (an object:
 * each tensor's name -> {"dtype": "F32", "shape": [rows, cols], "data_offsets":
 * [begin, end]}, plus an optional "__metadata__" object of strings; spaces may
 * pad it), then the data section, which the offsets index. Tensors are
 * row-major (the last dimension contiguous: GGUF's ne[0]) and little-endian.
 *
 * safetensors_open() checks everything before it returns: the header length
 * against the file's size (and safetensors' own limit of 100 MB), the JSON,
 * each entry's fields and types, the dtype (F32, F16 or BF16; another is
 * KB_ERR_UNSUPPORTED, naming it), the rank (at most 4), that end - begin is
 * the number of elements times the dtype's size (without overflow), that the
 * range lies inside the data section and overlaps no other tensor's, and that
 * no name comes twice. So accessors never check bounds again. A truncated or
 * hostile file is KB_ERR_FORMAT with a message naming the file, the tensor
 * and what is wrong; never a crash.
 */
#ifndef KB_SAFETENSORS_H
#define KB_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SAFETENSORS_MAX_DIMS 4
#define SAFETENSORS_MAX_HEADER (100u * 1000 * 1000) /* as the reference library */

struct safetensors_tensor {
	char *name;          /* owned, NUL-terminated */
	int type;            /* enum qtype: QTYPE_F32, QTYPE_F16 or QTYPE_BF16 */
	uint32_t n_dims;     /* 0 (a scalar) .. SAFETENSORS_MAX_DIMS */
	int64_t shape[SAFETENSORS_MAX_DIMS]; /* as in the file: shape[0] outermost,
						shape[n_dims - 1] contiguous; unused dims 1 */
	int64_t n_elements;  /* the product of the shape (1 for a scalar) */
	uint64_t offset;     /* begin, relative to the data section */
	const void *data;    /* into the mapping; not aligned in general */
	size_t size;         /* bytes: n_elements x the dtype's size */
};

struct safetensors {
	char *path;          /* owned copy, for messages */
	const uint8_t *base; /* the mapping (or the caller's buffer) */
	size_t size;
	bool mapped;         /* base is an mmap() of the file */
	bool heap;           /* base is malloc()ed (a file that could not be mapped) */
	size_t n_tensors;
	struct safetensors_tensor *tensors; /* owned, [n_tensors], in data order */
	size_t n_meta;
	char **meta_keys, **meta_values;    /* owned, [n_meta]: "__metadata__", in file order */
};

/* Open and validate a file. Returns KB_OK and *out (free with
 * safetensors_close), or KB_ERR_IO / KB_ERR_FORMAT / KB_ERR_UNSUPPORTED /
 * KB_ERR_NOMEM with kb_error() set; *out is then NULL. */
int safetensors_open(struct safetensors **out, const char *path) KB_WUR;
/* The same over a caller's buffer (not copied; it must outlive the result).
 * name is for messages. */
int safetensors_open_mem(struct safetensors **out, const void *buf, size_t len, const char *name) KB_WUR;
/* Unmap and free; safetensors_close(NULL) is a no-op. */
void safetensors_close(struct safetensors *st);

/* A tensor by name, or NULL. */
const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name);
/* A "__metadata__" value by key, or NULL. */
const char *safetensors_meta(const struct safetensors *st, const char *key);

/* The dtype's name as the format spells it ("F32", "F16", "BF16"). */
const char *safetensors_dtype_name(int type);

/* The elements of a tensor split into rows of its last dimension:
 * safetensors_row_len() is that dimension (1 for a scalar), safetensors_n_rows()
 * the product of the others. */
int64_t safetensors_row_len(const struct safetensors_tensor *t);
int64_t safetensors_n_rows(const struct safetensors_tensor *t);
/* Row r (0 <= r < safetensors_n_rows(t)) as floats into out[safetensors_row_len(t)],
 * whatever the data's alignment. */
void safetensors_row_to_float(const struct safetensors_tensor *t, int64_t r, float *out);

/* "[3, 4]": the shape as the file writes it, into buf[n]; returns buf. */
char *safetensors_shape_str(const int64_t *shape, uint32_t n_dims, char *buf, size_t n);

#endif
