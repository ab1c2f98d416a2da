/* convert.c — convert a GGUF model's weights to another type, see convert.h. */
#include "convert.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "quant.h"

#define GGML_QNT_VERSION 2 /* general.quantization_version llama.cpp writes */

/* The types convert_gguf() writes and their llama.cpp LLAMA_FTYPE numbers. */
static const int target_types[] = { QTYPE_F32, QTYPE_F16, QTYPE_BF16, QTYPE_Q8_0, QTYPE_Q4_0 };
static const int target_ftypes[] = { 0, 1, 32, 7, 2 };
#define N_TARGETS (sizeof target_types / sizeof *target_types)

int convert_ftype(int type)
{
	for (size_t i = 0; i < N_TARGETS; i++)
		if (target_types[i] == type)
			return target_ftypes[i];
	return -1;
}

const int *convert_types(int *n)
{
	*n = (int)N_TARGETS;
	return target_types;
}

/* i8, i16, i32, i64, f64 (ggml ids 24..28): data, not weights; never converted. */
static bool is_plain_data(int type)
{
	return type >= 24 && type <= 28;
}

/* What becomes of tensor t when the target is type. */
static void plan(const struct gguf_tensor *t, int type, int *to, enum convert_action *act)
{
	const struct qtype_traits *tt = qtype_traits(type);
	if (is_plain_data(t->type)) {
		*to = t->type;
		*act = CONVERT_KEPT_AS_IS;
	} else if (t->n_dims < 2) {
		*to = QTYPE_F32;
		*act = CONVERT_KEPT_1D;
	} else if (t->ne[0] % tt->blck_size) {
		*to = QTYPE_F32;
		*act = CONVERT_KEPT_BLOCKS;
	} else {
		*to = type;
		*act = t->type == type ? CONVERT_COPIED : CONVERT_CONVERTED;
	}
}

/* Rows of t converted to type `to` into a new buffer (*out, *size; free()). */
static int convert_rows(const struct gguf *g, const struct gguf_tensor *t, const char *name, int to,
			void **out, size_t *size)
{
	const struct qtype_traits *src = qtype_traits(t->type), *dst = qtype_traits(to);
	if (!src)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': tensor '%s' has type %s, which cannot be converted yet",
			       g->path, name, qtype_name(t->type));
	ASSERT(dst);
	const int64_t ne0 = t->ne[0];
	const int64_t rows = ne0 > 0 ? t->n_elements / ne0 : 0;
	const size_t row_in = qtype_row_size(t->type, ne0), row_out = qtype_row_size(to, ne0);
	if (kb_mul_size(row_out, (size_t)rows, size))
		return kb_fail(KB_ERR_NOMEM, "tensor '%s' is too large to convert", name);
	uint8_t *buf = kb_aligned_alloc(64, *size);
	if (!buf)
		return KB_ERR_NOMEM;
	const uint8_t *in = t->data;
	int failed = 0;
#pragma omp parallel if (t->n_elements > (1 << 16))
	{
		float *tmp = malloc((size_t)(ne0 > 0 ? ne0 : 1) * sizeof *tmp);
		if (!tmp) {
#pragma omp atomic write
			failed = 1;
		}
#pragma omp for schedule(static)
		for (int64_t r = 0; r < rows; r++) {
			if (!tmp)
				continue;
			src->to_float(in + (size_t)r * row_in, tmp, ne0);
			dst->from_float(tmp, buf + (size_t)r * row_out, ne0);
		}
		free(tmp);
	}
	if (failed) {
		free(buf);
		return kb_fail(KB_ERR_NOMEM, "out of memory converting tensor '%s'", name);
	}
	*out = buf;
	return KB_OK;
}

static void count(struct convert_stats *st, enum convert_action act)
{
	switch (act) {
	case CONVERT_CONVERTED: st->n_converted++; break;
	case CONVERT_COPIED: st->n_copied++; break;
	case CONVERT_KEPT_1D: st->n_kept_1d++; break;
	case CONVERT_KEPT_BLOCKS: st->n_kept_blocks++; break;
	case CONVERT_KEPT_AS_IS: st->n_kept_as_is++; break;
	}
}

/* Plan, convert (or reference) and add every tensor of g to w; bufs[i] gets what was allocated. */
static int add_tensors(struct gguf *g, struct gguf_writer *w, int type, const struct convert_opts *opts,
		       void **bufs, struct convert_stats *st)
{
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		int to, rc;
		enum convert_action act;
		const void *data = t->data;
		size_t size = t->size;
		char *name = gguf_str_dup(t->name);
		if (!name)
			return KB_ERR_NOMEM;
		plan(t, type, &to, &act);
		if (to != t->type && (rc = convert_rows(g, t, name, to, &bufs[i], &size))) {
			free(name);
			return rc;
		}
		if (bufs[i])
			data = bufs[i];
		if (opts && opts->on_tensor) {
			struct convert_tensor ct = { name, t->n_dims, t->ne, t->type, to, act };
			opts->on_tensor(opts->ctx, &ct);
		}
		count(st, act);
		st->in_tensor_bytes += t->size;
		st->out_tensor_bytes += size;
		rc = gguf_writer_add_tensor(w, name, to, t->n_dims, t->ne, data, size);
		free(name);
		if (rc)
			return rc;
	}
	return KB_OK;
}

int convert_gguf(const char *in, const char *out, int type, const struct convert_opts *opts,
		 struct convert_stats *stats)
{
	struct gguf *g = NULL;
	struct gguf_writer *w = NULL;
	void **bufs = NULL;
	struct convert_stats st = { 0 };
	int rc, ftype = convert_ftype(type);

	if (ftype < 0 || !qtype_traits(type))
		return kb_fail(KB_ERR_ARG, "cannot convert to %s (the types are f32, f16, bf16, q8_0, q4_0)",
			       qtype_name(type));
	if ((rc = gguf_open(&g, in)))
		return rc;
	w = gguf_writer_init();
	bufs = kb_calloc(g->n_tensors, sizeof *bufs);
	if (!w || !bufs) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < g->n_kv; i++)
		if ((rc = gguf_writer_copy_kv(w, g, i)))
			goto out;
	if ((rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype)))
		goto out;
	if (qtype_traits(type)->is_quantized &&
	    (rc = gguf_writer_set_u32(w, "general.quantization_version", GGML_QNT_VERSION)))
		goto out;
	st.n_tensors = g->n_tensors;
	st.in_file_bytes = g->size;
	if ((rc = add_tensors(g, w, type, opts, bufs, &st)) || (rc = gguf_writer_write(w, out)))
		goto out;
	struct stat sb;
	if (strcmp(out, "-") != 0 && stat(out, &sb) == 0)
		st.out_file_bytes = (uint64_t)sb.st_size;
	if (stats)
		*stats = st;
out:
	for (uint64_t i = 0; bufs && i < g->n_tensors; i++)
		free(bufs[i]);
	free(bufs);
	gguf_writer_free(w);
	gguf_close(g);
	return rc;
}
