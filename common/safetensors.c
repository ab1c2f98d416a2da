/* safetensors.c — see safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

/* The dtypes the format defines: the three we read, and the rest by name
 * only, so a file holding one is refused as unsupported rather than corrupt. */
static const struct {
	const char *name;
	int type; /* enum qtype, or -1: not read */
	size_t size;
} dtypes[] = {
	{ "F32", QTYPE_F32, 4 }, { "F16", QTYPE_F16, 2 }, { "BF16", QTYPE_BF16, 2 },
	{ "F64", -1, 8 },        { "I64", -1, 8 },        { "U64", -1, 8 },
	{ "I32", -1, 4 },        { "U32", -1, 4 },        { "I16", -1, 2 },
	{ "U16", -1, 2 },        { "I8", -1, 1 },         { "U8", -1, 1 },
	{ "BOOL", -1, 1 },       { "F8_E4M3", -1, 1 },    { "F8_E5M2", -1, 1 },
};
#define N_DTYPES (sizeof dtypes / sizeof *dtypes)

const char *safetensors_dtype_name(int type)
{
	for (size_t i = 0; i < N_DTYPES; i++)
		if (dtypes[i].type == type && type >= 0)
			return dtypes[i].name;
	return "?";
}

static size_t dtype_size(int type)
{
	return type == QTYPE_F32 ? 4 : 2;
}

char *safetensors_shape_str(const int64_t *shape, uint32_t n_dims, char *buf, size_t n)
{
	size_t k = 0;
	int w = snprintf(buf, n, "[");
	for (uint32_t d = 0; d < n_dims && w > 0 && (k += (size_t)w) < n; d++)
		w = snprintf(buf + k, n - k, "%s%" PRId64, d ? ", " : "", shape[d]);
	if (w > 0 && (k += (size_t)w) < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

void safetensors_close(struct safetensors *st)
{
	if (!st)
		return;
	for (size_t i = 0; st->tensors && i < st->n_tensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	for (size_t i = 0; i < st->n_meta; i++) {
		free(st->meta_keys[i]);
		free(st->meta_values[i]);
	}
	free(st->meta_keys);
	free(st->meta_values);
	if (st->mapped)
		munmap((void *)st->base, st->size);
	else if (st->heap)
		free((void *)st->base);
	free(st->path);
	free(st);
}

/* ---- the header ---- */

struct parse {
	struct safetensors *st;
	const uint8_t *data;  /* the data section */
	size_t data_len;
};

/* "__metadata__": an object of strings. */
static int parse_meta(struct parse *p, json_t *obj)
{
	struct safetensors *st = p->st;
	if (!json_is_object(obj))
		return kb_fail(KB_ERR_FORMAT, "'%s': __metadata__ is not an object", st->path);
	size_t n = json_object_size(obj);
	st->meta_keys = kb_calloc(n ? n : 1, sizeof *st->meta_keys);
	st->meta_values = kb_calloc(n ? n : 1, sizeof *st->meta_values);
	if (!st->meta_keys || !st->meta_values)
		return KB_ERR_NOMEM;
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		if (!json_is_string(v))
			return kb_fail(KB_ERR_FORMAT, "'%s': __metadata__ '%s' is not a string", st->path, key);
		size_t i = st->n_meta;
		st->meta_keys[i] = kb_strndup(key, strlen(key));
		st->meta_values[i] = kb_strndup(json_string_value(v), json_string_length(v));
		if (!st->meta_keys[i] || !st->meta_values[i]) {
			st->n_meta++; /* freed by the close */
			return KB_ERR_NOMEM;
		}
		st->n_meta++;
	}
	return KB_OK;
}

/* The dtype of tensor name: its qtype into *type. */
static int parse_dtype(struct parse *p, const char *name, json_t *v, int *type)
{
	const char *s = json_string_value(v);
	if (!s)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': dtype is not a string", p->st->path, name);
	for (size_t i = 0; i < N_DTYPES; i++) {
		if (strcmp(dtypes[i].name, s) != 0)
			continue;
		if (dtypes[i].type < 0)
			return kb_fail(KB_ERR_UNSUPPORTED, "'%s': tensor '%s' has dtype %s (F32, F16 and BF16 are supported)",
				       p->st->path, name, s);
		*type = dtypes[i].type;
		return KB_OK;
	}
	return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': unknown dtype '%.32s'", p->st->path, name, s);
}

/* The shape: up to 4 dimensions, each >= 0, with the element count and byte size not overflowing. */
static int parse_shape(struct parse *p, struct safetensors_tensor *t, json_t *v)
{
	const char *path = p->st->path, *name = t->name;
	if (!json_is_array(v))
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': shape is not an array", path, name);
	size_t n = json_array_size(v);
	if (n > SAFETENSORS_MAX_DIMS)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has %zu dimensions (at most %d)", path, name, n,
			       SAFETENSORS_MAX_DIMS);
	t->n_dims = (uint32_t)n;
	int64_t count = 1;
	for (size_t d = 0; d < SAFETENSORS_MAX_DIMS; d++)
		t->shape[d] = 1;
	for (size_t d = 0; d < n; d++) {
		json_t *e = json_array_get(v, d);
		if (!json_is_integer(e) || json_integer_value(e) < 0)
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': dimension %zu is not a count", path, name, d);
		t->shape[d] = (int64_t)json_integer_value(e);
		if (__builtin_mul_overflow(count, t->shape[d], &count))
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': too many elements", path, name);
	}
	t->n_elements = count;
	if ((uint64_t)count > SIZE_MAX / dtype_size(t->type))
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': too many elements", path, name);
	t->size = (size_t)count * dtype_size(t->type);
	return KB_OK;
}

/* data_offsets: [begin, end], inside the data section, end - begin the tensor's size. */
static int parse_offsets(struct parse *p, struct safetensors_tensor *t, json_t *v)
{
	const char *path = p->st->path, *name = t->name;
	json_t *b = json_array_get(v, 0), *e = json_array_get(v, 1);
	if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
	    json_integer_value(b) < 0 || json_integer_value(e) < json_integer_value(b))
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': data_offsets is not [begin, end] with begin <= end",
			       path, name);
	uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
	if (end > p->data_len)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': data [%" PRIu64 ", %" PRIu64 ") ends past the "
			       "data section (%zu bytes): truncated?", path, name, begin, end, p->data_len);
	if (end - begin != t->size)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s': %" PRIu64 " bytes of data for %" PRId64 " %s "
			       "elements (%zu bytes)", path, name, end - begin, t->n_elements,
			       safetensors_dtype_name(t->type), t->size);
	t->offset = begin;
	t->data = p->data + begin;
	return KB_OK;
}

static int parse_tensor(struct parse *p, const char *name, json_t *v, struct safetensors_tensor *t)
{
	const char *path = p->st->path;
	if (!*name)
		return kb_fail(KB_ERR_FORMAT, "'%s': a tensor has an empty name", path);
	if (!(t->name = kb_strndup(name, strlen(name))))
		return KB_ERR_NOMEM;
	if (!json_is_object(v))
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' is not an object", path, name);
	int rc;
	if ((rc = parse_dtype(p, name, json_object_get(v, "dtype"), &t->type)) ||
	    (rc = parse_shape(p, t, json_object_get(v, "shape"))) ||
	    (rc = parse_offsets(p, t, json_object_get(v, "data_offsets"))))
		return rc;
	return KB_OK;
}

static int by_offset(const void *a, const void *b)
{
	const struct safetensors_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->size < y->size ? -1 : x->size > y->size;
}

/* No two tensors share a byte (empty ones may sit anywhere). */
static int check_overlaps(const struct safetensors *st)
{
	const struct safetensors_tensor *last = NULL;
	for (size_t i = 0; i < st->n_tensors; i++) {
		const struct safetensors_tensor *t = &st->tensors[i];
		if (t->size == 0)
			continue;
		if (last && t->offset < last->offset + last->size)
			return kb_fail(KB_ERR_FORMAT, "'%s': the data of tensors '%s' and '%s' overlap", st->path,
				       last->name, t->name);
		if (!last || t->offset + t->size > last->offset + last->size)
			last = t;
	}
	return KB_OK;
}

static int parse_header(struct safetensors *st)
{
	if (st->size < 8)
		return kb_fail(KB_ERR_FORMAT, "'%s': %zu bytes: too short for a safetensors file", st->path, st->size);
	uint64_t n = kb_le64(st->base);
	if (n > st->size - 8)
		return kb_fail(KB_ERR_FORMAT, "'%s': header of %" PRIu64 " bytes, but only %zu follow: truncated, or "
			       "not a safetensors file", st->path, n, st->size - 8);
	if (n > SAFETENSORS_MAX_HEADER)
		return kb_fail(KB_ERR_FORMAT, "'%s': header of %" PRIu64 " bytes (the limit is %u)", st->path, n,
			       SAFETENSORS_MAX_HEADER);
	struct parse p = { st, st->base + 8 + n, st->size - 8 - (size_t)n };
	json_error_t err;
	json_t *root = json_loadb((const char *)st->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return kb_fail(KB_ERR_FORMAT, "'%s': header: %s (at byte %d)", st->path,
			       strstr(err.text, "duplicate object key") ? "a tensor name comes twice" : err.text,
			       err.position);
	int rc = KB_OK;
	if (!json_is_object(root)) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': header is not a JSON object", st->path);
		goto out;
	}
	st->tensors = kb_calloc(json_object_size(root) + 1, sizeof *st->tensors);
	if (!st->tensors) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			rc = parse_meta(&p, v);
		else
			rc = parse_tensor(&p, key, v, &st->tensors[st->n_tensors++]);
		if (rc)
			goto out;
	}
	qsort(st->tensors, st->n_tensors, sizeof *st->tensors, by_offset);
	rc = check_overlaps(st);
out:
	json_decref(root);
	return rc;
}

static struct safetensors *st_new(const char *name)
{
	struct safetensors *st = kb_calloc(1, sizeof *st);
	if (st && !(st->path = kb_strndup(name, strlen(name)))) {
		free(st);
		st = NULL;
	}
	return st;
}

static int finish(struct safetensors **out, struct safetensors *st)
{
	int rc = parse_header(st);
	if (rc) {
		safetensors_close(st);
		return rc;
	}
	*out = st;
	return KB_OK;
}

int safetensors_open_mem(struct safetensors **out, const void *buf, size_t len, const char *name)
{
	*out = NULL;
	struct safetensors *st = st_new(name);
	if (!st)
		return KB_ERR_NOMEM;
	st->base = buf;
	st->size = len;
	return finish(out, st);
}

int safetensors_open(struct safetensors **out, const char *path)
{
	*out = NULL;
	struct safetensors *st = st_new(path);
	if (!st)
		return KB_ERR_NOMEM;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		safetensors_close(st);
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(e));
	}
	if (S_ISDIR(sb.st_mode)) {
		close(fd);
		safetensors_close(st);
		return kb_fail(KB_ERR_IO, "'%s': is a directory", path);
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size == 0) {
		/* a pipe or a device (or nothing to map): read it whole */
		close(fd);
		char *data;
		size_t len;
		int rc = kb_read_file(path, &data, &len);
		if (rc) {
			safetensors_close(st);
			return rc;
		}
		st->base = (const uint8_t *)data;
		st->size = len;
		st->heap = true;
		return finish(out, st);
	}
	if ((uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		safetensors_close(st);
		return kb_fail(KB_ERR_IO, "'%s': file too large to map", path);
	}
	st->size = (size_t)sb.st_size;
	void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (m == MAP_FAILED) {
		safetensors_close(st);
		return kb_fail(KB_ERR_IO, "'%s': mmap: %s", path, strerror(e));
	}
	st->base = m;
	st->mapped = true;
	return finish(out, st);
}

/* ---- access ---- */

const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name)
{
	for (size_t i = 0; i < st->n_tensors; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

const char *safetensors_meta(const struct safetensors *st, const char *key)
{
	for (size_t i = 0; i < st->n_meta; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_values[i];
	return NULL;
}

int64_t safetensors_row_len(const struct safetensors_tensor *t)
{
	return t->n_dims ? t->shape[t->n_dims - 1] : 1;
}

int64_t safetensors_n_rows(const struct safetensors_tensor *t)
{
	int64_t n = 1;
	for (uint32_t d = 0; d + 1 < t->n_dims; d++)
		n *= t->shape[d]; /* no overflow: the product of all of them did not */
	return n;
}

void safetensors_row_to_float(const struct safetensors_tensor *t, int64_t r, float *out)
{
	const int64_t len = safetensors_row_len(t);
	ASSERT(r >= 0 && r < safetensors_n_rows(t));
	const uint8_t *p = (const uint8_t *)t->data + (size_t)r * (size_t)len * dtype_size(t->type);
	switch (t->type) {
	case QTYPE_F32:
		for (int64_t i = 0; i < len; i++)
			out[i] = kb_lef32(p + 4 * i);
		break;
	case QTYPE_F16:
		for (int64_t i = 0; i < len; i++)
			out[i] = fp16_to_fp32(kb_le16(p + 2 * i));
		break;
	case QTYPE_BF16:
		for (int64_t i = 0; i < len; i++)
			out[i] = bf16_to_fp32(kb_le16(p + 2 * i));
		break;
	default: ASSERT(!"unknown safetensors type");
	}
}
