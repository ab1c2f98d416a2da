/* convert.c — convert a GGUF model's weights to another type, see convert.h. */
#include "convert.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "gguf.h"
#include "quant.h"

#define GGML_QNT_VERSION 2 /* general.quantization_version llama.cpp writes */

/* The targets convert_gguf() writes, their names and llama.cpp LLAMA_FTYPE numbers. */
static const struct {
	int target;
	const char *name;
	int ftype;
} targets[] = {
	{ QTYPE_F32, "f32", 0 },       { QTYPE_F16, "f16", 1 },         { QTYPE_BF16, "bf16", 32 },
	{ QTYPE_Q8_0, "q8_0", 7 },     { QTYPE_Q4_0, "q4_0", 2 },       { QTYPE_Q4_K, "q4_k", 14 },
	{ QTYPE_Q5_K, "q5_k", 16 },    { QTYPE_Q6_K, "q6_k", 18 },      { CONVERT_Q4_K_M, "q4_k_m", 15 },
	{ CONVERT_Q5_K_M, "q5_k_m", 17 },
};
#define N_TARGETS (sizeof targets / sizeof *targets)

int convert_ftype(int target)
{
	for (size_t i = 0; i < N_TARGETS; i++)
		if (targets[i].target == target)
			return targets[i].ftype;
	return -1;
}

const int *convert_types(int *n)
{
	static int ids[N_TARGETS];
	for (size_t i = 0; i < N_TARGETS; i++)
		ids[i] = targets[i].target;
	*n = (int)N_TARGETS;
	return ids;
}

const char *convert_target_name(int target)
{
	for (size_t i = 0; i < N_TARGETS; i++)
		if (targets[i].target == target)
			return targets[i].name;
	return NULL;
}

int convert_target_from_name(const char *name)
{
	for (size_t i = 0; name && i < N_TARGETS; i++)
		if (strcasecmp(targets[i].name, name) == 0)
			return targets[i].target;
	return -1;
}

/* Name of any target for messages: its own, a type's, or "type N". */
static const char *target_label(int target)
{
	const char *n = convert_target_name(target);
	return n ? n : qtype_name(target);
}

/* i8, i16, i32, i64, f64: data, not weights; never converted. */
static bool is_plain_data(int type)
{
	const struct qtype_traits *t = qtype_info(type);
	return t && t->is_data;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every
 * third layer in between. */
static bool more_bits(int il, int n_layer)
{
	return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
}

/* Layer of a "blk.N." tensor, or -1. */
static int layer_of(const char *name)
{
	int il, n = 0;
	return sscanf(name, "blk.%d.%n", &il, &n) == 1 && n > 0 && il >= 0 ? il : -1;
}

int convert_tensor_type(int target, const char *name, uint32_t n_dims, int64_t ne0, int n_layer, bool has_output,
			int *want)
{
	int t = target == CONVERT_Q4_K_M ? QTYPE_Q4_K : target == CONVERT_Q5_K_M ? QTYPE_Q5_K : target;
	if (n_dims < 2 || !strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) {
		/* vectors, and BERT's position and token-type tables, which are added
		 * to the token embeddings as they are (llama.cpp keeps them f32 too) */
		t = QTYPE_F32;
	} else if (target == CONVERT_Q4_K_M || target == CONVERT_Q5_K_M) {
		int il = layer_of(name);
		if (strcmp(name, "output.weight") == 0 || (!has_output && strcmp(name, "token_embd.weight") == 0))
			t = QTYPE_Q6_K;
		else if ((ends_with(name, ".attn_v.weight") || ends_with(name, ".ffn_down.weight")) && il >= 0 &&
			 more_bits(il, n_layer))
			t = QTYPE_Q6_K;
		else if (ends_with(name, ".attn_qkv.weight"))
			t = target == CONVERT_Q4_K_M ? QTYPE_Q5_K : QTYPE_Q6_K;
	}
	if (want)
		*want = t;
	const struct qtype_traits *tr = qtype_traits(t);
	ASSERT(tr);
	if (ne0 % tr->blck_size == 0)
		return t;
	bool k = t == QTYPE_Q4_K || t == QTYPE_Q5_K || t == QTYPE_Q6_K;
	return k && ne0 % QK8_0 == 0 ? QTYPE_Q8_0 : QTYPE_F32;
}

/* The layer count (1 + the largest "blk.N." index) and whether an output.weight exists. */
static void model_shape(const struct gguf *g, int *n_layer, bool *has_output)
{
	*n_layer = 0;
	*has_output = false;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		char name[128];
		const struct gguf_str *s = &g->tensors[i].name;
		size_t n = s->len < sizeof name - 1 ? s->len : sizeof name - 1;
		memcpy(name, s->data, n);
		name[n] = '\0';
		int il = layer_of(name);
		if (il >= *n_layer)
			*n_layer = il + 1;
		*has_output |= strcmp(name, "output.weight") == 0;
	}
}

/* What becomes of tensor t (called name) when the target is target. */
static void plan(const struct gguf_tensor *t, const char *name, int target, int n_layer, bool has_output, int *to,
		 int *want, enum convert_action *act)
{
	if (is_plain_data(t->type)) {
		*to = *want = t->type;
		*act = CONVERT_KEPT_AS_IS;
		return;
	}
	*to = convert_tensor_type(target, name, t->n_dims, t->ne[0], n_layer, has_output, want);
	if (t->n_dims < 2)
		*act = CONVERT_KEPT_1D;
	else if (*to != *want)
		*act = CONVERT_KEPT_BLOCKS;
	else
		*act = t->type == *to ? CONVERT_COPIED : CONVERT_CONVERTED;
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
static int add_tensors(struct gguf *g, struct gguf_writer *w, int target, const struct convert_opts *opts,
		       void **bufs, struct convert_stats *st)
{
	int n_layer;
	bool has_output;
	model_shape(g, &n_layer, &has_output);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		int to, want, rc;
		enum convert_action act;
		const void *data = t->data;
		size_t size = t->size;
		char *name = gguf_str_dup(t->name);
		if (!name)
			return KB_ERR_NOMEM;
		plan(t, name, target, n_layer, has_output, &to, &want, &act);
		if (to != t->type && (rc = convert_rows(g, t, name, to, &bufs[i], &size))) {
			free(name);
			return rc;
		}
		if (bufs[i])
			data = bufs[i];
		if (opts && opts->on_tensor) {
			struct convert_tensor ct = { .name = name, .n_dims = t->n_dims, .ne = t->ne, .from = t->type,
						      .to = to, .want = want, .action = act };
			opts->on_tensor(opts->ctx, &ct);
		}
		count(st, act);
		if (to >= 0 && to < QTYPE_COUNT)
			st->n_by_type[to]++;
		st->in_tensor_bytes += t->size;
		st->out_tensor_bytes += size;
		rc = gguf_writer_add_tensor(w, name, to, t->n_dims, t->ne, data, size);
		free(name);
		if (rc)
			return rc;
	}
	return KB_OK;
}

int convert_gguf(const char *in, const char *out, int target, const struct convert_opts *opts,
		 struct convert_stats *stats)
{
	struct gguf *g = NULL;
	struct gguf_writer *w = NULL;
	void **bufs = NULL;
	struct convert_stats st = { 0 };
	int rc, ftype = convert_ftype(target);

	if (ftype < 0)
		return kb_fail(KB_ERR_ARG, "cannot convert to %s (the types are f32, f16, bf16, q8_0, q4_0, q4_k, "
			       "q5_k, q6_k, q4_k_m, q5_k_m)", target_label(target));
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
	if (opts && opts->chat_template && (rc = gguf_writer_set_str(w, "tokenizer.chat_template", opts->chat_template)))
		goto out;
	if ((target >= QTYPE_COUNT || qtype_traits(target)->is_quantized) &&
	    (rc = gguf_writer_set_u32(w, "general.quantization_version", GGML_QNT_VERSION)))
		goto out;
	st.n_tensors = g->n_tensors;
	st.in_file_bytes = g->size;
	if ((rc = add_tensors(g, w, target, opts, bufs, &st)) || (rc = gguf_writer_write(w, out)))
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
