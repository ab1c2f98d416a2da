/* synth.c — see synth.h. */
#include "synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "tokjson.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_uniform(uint64_t *s)
{
	return (float)((double)(rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static int synth_head_dim(const struct synth_spec *sp)
{
	return sp->head_dim > 0 ? sp->head_dim : sp->n_embd / sp->n_head;
}

struct synth {
	struct gguf_writer *w;
	uint64_t rng;
	int type;        /* a convert target: a type or a mix (convert_tensor_type) */
	int n_layer;
	bool has_output;
	void **bufs; /* owned tensor data, freed after the write */
	size_t n_bufs, cap_bufs;
};

static void *keep(struct synth *s, void *p)
{
	if (!p)
		return NULL;
	if (s->n_bufs == s->cap_bufs) {
		size_t cap = s->cap_bufs ? 2 * s->cap_bufs : 64;
		void **nb = kb_realloc_array(s->bufs, cap, sizeof *nb);
		if (!nb) {
			free(p);
			return NULL;
		}
		s->bufs = nb;
		s->cap_bufs = cap;
	}
	return s->bufs[s->n_bufs++] = p;
}

/* A tensor of ne0 x ne1 random values: base + scale * U(-1, 1), in type (f32 for vectors). */
static int add_random(struct synth *s, const char *name, int64_t ne0, int64_t ne1, float base,
		      float scale)
{
	const size_t n = (size_t)ne0 * ne1;
	float *f = kb_malloc(n * sizeof *f);
	if (!f)
		return KB_ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		f[i] = base + scale * rng_uniform(&s->rng);
	int type = convert_tensor_type(s->type, name, ne1 > 1 ? 2 : 1, ne0, s->n_layer, s->has_output, NULL);
	const struct qtype_traits *tr = qtype_traits(type);
	void *data = f;
	size_t size = qtype_row_size(type, ne0) * ne1;
	if (type != 0) {
		data = kb_malloc(size);
		if (!data) {
			free(f);
			return KB_ERR_NOMEM;
		}
		/* row by row on all threads (the K-quant quantizers are slow) */
		const size_t row = qtype_row_size(type, ne0);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
		for (int64_t r = 0; r < ne1; r++)
			tr->from_float(f + (size_t)r * ne0, (uint8_t *)data + (size_t)r * row, ne0);
		free(f);
	}
	if (!keep(s, data))
		return KB_ERR_NOMEM;
	int64_t ne[2] = { ne0, ne1 };
	return gguf_writer_add_tensor(s->w, name, type, ne1 > 1 ? 2 : 1, ne, data, size);
}

static int add_vocab(struct synth *s, int n_vocab)
{
	char **toks = kb_calloc((size_t)n_vocab, sizeof *toks);
	float *scores = kb_calloc((size_t)n_vocab, sizeof *scores);
	int32_t *types = kb_calloc((size_t)n_vocab, sizeof *types);
	int rc = KB_ERR_NOMEM;
	if (!toks || !scores || !types)
		goto out;
	for (int i = 0; i < n_vocab; i++) {
		char buf[32];
		if (i < 3) {
			snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
			types[i] = i == 0 ? 2 : 3;
		} else if (i < 259) {
			snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
			types[i] = 6;
		} else {
			/* "▁a" .. "▁z", then "▁aa", "▁ab", ... */
			int k = i - 259;
			char word[8];
			int len = 0;
			do {
				word[len++] = (char)('a' + k % 26);
				k = k / 26 - 1;
			} while (k >= 0 && len < 6);
			word[len] = '\0';
			snprintf(buf, sizeof buf, "\xe2\x96\x81%s", word);
			types[i] = 1;
		}
		scores[i] = -(float)i;
		if (!(toks[i] = strdup(buf)))
			goto out;
	}
	if ((rc = gguf_writer_set_str(s->w, "tokenizer.ggml.model", "llama")) ||
	    (rc = gguf_writer_set_arr_str(s->w, "tokenizer.ggml.tokens", (const char *const *)toks,
					  (uint64_t)n_vocab)) ||
	    (rc = gguf_writer_set_arr(s->w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores,
				      (uint64_t)n_vocab)) ||
	    (rc = gguf_writer_set_arr(s->w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
				      (uint64_t)n_vocab)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.bos_token_id", 1)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.eos_token_id", 2)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.unknown_token_id", 0)))
		goto out;
	rc = KB_OK;
out:
	for (int i = 0; toks && i < n_vocab; i++)
		free(toks[i]);
	free(toks);
	free(scores);
	free(types);
	return rc;
}

/* A WordPiece vocabulary as llama.cpp converts one (tokjson.h): a word-initial
 * piece "x" stored as "▁x", a continuation "##x" as "x". */
static int add_vocab_wpm(struct synth *s, int n_vocab)
{
	static const char *const special[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
	char **toks = kb_calloc((size_t)n_vocab, sizeof *toks);
	int32_t *types = kb_calloc((size_t)n_vocab, sizeof *types);
	int rc = KB_ERR_NOMEM;
	if (!toks || !types)
		goto out;
	for (int i = 0; i < n_vocab; i++) {
		char buf[32];
		const int n_chars = 127 - 33; /* '!' .. '~' */
		if (i < 5) {
			snprintf(buf, sizeof buf, "%s", special[i]);
			types[i] = i == 1 ? 2 : 3;
		} else if (i < 5 + 2 * n_chars) {
			int k = i - 5, c = '!' + k / 2;
			snprintf(buf, sizeof buf, k % 2 ? "%c" : "\xe2\x96\x81%c", c);
			types[i] = 1;
		} else {
			/* "▁aa", "▁ab", ...: whole words of two letters and more */
			int k = i - 5 - 2 * n_chars + 26;
			char word[8];
			int len = 0;
			do {
				word[len++] = (char)('a' + k % 26);
				k = k / 26 - 1;
			} while (k >= 0 && len < 6);
			word[len] = '\0';
			snprintf(buf, sizeof buf, "\xe2\x96\x81%s", word);
			types[i] = 1;
		}
		if (!(toks[i] = strdup(buf)))
			goto out;
	}
	if ((rc = gguf_writer_set_str(s->w, "tokenizer.ggml.model", "bert")) ||
	    (rc = gguf_writer_set_arr_str(s->w, "tokenizer.ggml.tokens", (const char *const *)toks,
					  (uint64_t)n_vocab)) ||
	    (rc = gguf_writer_set_arr(s->w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
				      (uint64_t)n_vocab)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.padding_token_id", 0)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.unknown_token_id", 1)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.cls_token_id", 2)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.seperator_token_id", 3)) ||
	    (rc = gguf_writer_set_u32(s->w, "tokenizer.ggml.mask_token_id", 4)))
		goto out;
	rc = KB_OK;
out:
	for (int i = 0; toks && i < n_vocab; i++)
		free(toks[i]);
	free(toks);
	free(types);
	return rc;
}

/* The keys llama.cpp's converter writes for a BERT model. */
static int add_hparams_bert(struct synth *s, const struct synth_spec *sp)
{
	int rc;
	if ((rc = gguf_writer_set_str(s->w, "general.architecture", "bert")) ||
	    (rc = gguf_writer_set_str(s->w, "general.name", "kvblend synthetic")) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.context_length", (uint32_t)sp->n_ctx)) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.embedding_length", (uint32_t)sp->n_embd)) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.feed_forward_length", (uint32_t)sp->n_ff)) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.block_count", (uint32_t)sp->n_layer)) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.attention.head_count", (uint32_t)sp->n_head)) ||
	    (rc = gguf_writer_set_f32(s->w, "bert.attention.layer_norm_epsilon",
				      sp->norm_eps > 0 ? sp->norm_eps : 1e-12f)) ||
	    (rc = gguf_writer_set_bool(s->w, "bert.attention.causal", false)) ||
	    (rc = gguf_writer_set_u32(s->w, "bert.pooling_type", (uint32_t)sp->pooling)) ||
	    (rc = gguf_writer_set_u32(s->w, "general.file_type", (uint32_t)convert_ftype(sp->type))))
		return rc;
	return KB_OK;
}

/* The tensors of a BERT encoder: matrices of scale 1/sqrt(n_in), as the
 * decoders', so each projection keeps its input's size; biases small. */
static int add_bert_tensors(struct synth *s, const struct synth_spec *sp, int n_vocab)
{
	const int64_t d = sp->n_embd, ff = sp->n_ff;
	const float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)ff);
	int rc;
	if ((rc = add_random(s, "token_embd.weight", d, n_vocab, 0, 1.0f)) ||
	    (rc = add_random(s, "position_embd.weight", d, sp->n_ctx, 0, 0.5f)) ||
	    (rc = add_random(s, "token_types.weight", d, 2, 0, 0.5f)) ||
	    (rc = add_random(s, "token_embd_norm.weight", d, 1, 1.0f, 0.1f)) ||
	    (rc = add_random(s, "token_embd_norm.bias", d, 1, 0, 0.1f)))
		return rc;
	for (int l = 0; l < sp->n_layer; l++) {
		char n[96];
#define NAME(x) (snprintf(n, sizeof n, "blk.%d.%s", l, x), n)
		if ((rc = add_random(s, NAME("attn_q.weight"), d, d, 0, sd)) ||
		    (rc = add_random(s, NAME("attn_q.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("attn_k.weight"), d, d, 0, sd)) ||
		    (rc = add_random(s, NAME("attn_k.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("attn_v.weight"), d, d, 0, sd)) ||
		    (rc = add_random(s, NAME("attn_v.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("attn_output.weight"), d, d, 0, sd)) ||
		    (rc = add_random(s, NAME("attn_output.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("attn_output_norm.weight"), d, 1, 1.0f, 0.1f)) ||
		    (rc = add_random(s, NAME("attn_output_norm.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("ffn_up.weight"), d, ff, 0, sd)) ||
		    (rc = add_random(s, NAME("ffn_up.bias"), ff, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("ffn_down.weight"), ff, d, 0, sf)) ||
		    (rc = add_random(s, NAME("ffn_down.bias"), d, 1, 0, 0.1f)) ||
		    (rc = add_random(s, NAME("layer_output_norm.weight"), d, 1, 1.0f, 0.1f)) ||
		    (rc = add_random(s, NAME("layer_output_norm.bias"), d, 1, 0, 0.1f)))
			return rc;
#undef NAME
	}
	return KB_OK;
}

static int add_hparams(struct synth *s, const struct synth_spec *sp)
{
	char k[96];
	const char *a = sp->arch;
	int rc;
#define KEY(x) (snprintf(k, sizeof k, "%s.%s", a, x), k)
	if ((rc = gguf_writer_set_str(s->w, "general.architecture", a)) ||
	    (rc = gguf_writer_set_str(s->w, "general.name", "kvblend synthetic")) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("context_length"), (uint32_t)sp->n_ctx)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("embedding_length"), (uint32_t)sp->n_embd)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("block_count"), (uint32_t)sp->n_layer)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("feed_forward_length"), (uint32_t)sp->n_ff)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("attention.head_count"), (uint32_t)sp->n_head)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("attention.head_count_kv"), (uint32_t)sp->n_kv_head)) ||
	    (rc = gguf_writer_set_u32(s->w, KEY("rope.dimension_count"), (uint32_t)synth_head_dim(sp))) ||
	    (rc = gguf_writer_set_f32(s->w, KEY("rope.freq_base"), sp->rope_base > 0 ? sp->rope_base : 10000.0f)) ||
	    (rc = gguf_writer_set_f32(s->w, KEY("attention.layer_norm_rms_epsilon"),
				      sp->norm_eps > 0 ? sp->norm_eps : 1e-5f)) ||
	    (rc = gguf_writer_set_u32(s->w, "general.file_type", (uint32_t)convert_ftype(sp->type))))
		return rc;
	if (synth_head_dim(sp) != sp->n_embd / sp->n_head &&
	    ((rc = gguf_writer_set_u32(s->w, KEY("attention.key_length"), (uint32_t)synth_head_dim(sp))) ||
	     (rc = gguf_writer_set_u32(s->w, KEY("attention.value_length"), (uint32_t)synth_head_dim(sp)))))
		return rc;
	if ((sp->n_swa > 0 && (rc = gguf_writer_set_u32(s->w, KEY("attention.sliding_window"), (uint32_t)sp->n_swa))) ||
	    (sp->rope_base_swa > 0 && (rc = gguf_writer_set_f32(s->w, KEY("rope.freq_base_swa"), sp->rope_base_swa))) ||
	    (sp->attn_softcap > 0 && (rc = gguf_writer_set_f32(s->w, KEY("attn_logit_softcapping"), sp->attn_softcap))) ||
	    (sp->final_softcap > 0 && (rc = gguf_writer_set_f32(s->w, KEY("final_logit_softcapping"), sp->final_softcap))))
		return rc;
	if (sp->rope_orig_ctx > 0 &&
	    (rc = gguf_writer_set_u32(s->w, KEY("rope.scaling.original_context_length"), (uint32_t)sp->rope_orig_ctx)))
		return rc;
	if (!strcmp(a, "phi3") && sp->rope_orig_ctx > 0 && sp->n_ctx > sp->rope_orig_ctx) {
		/* LongRoPE's magnitude, as the converter computes it */
		double scale = (double)sp->n_ctx / sp->rope_orig_ctx;
		float f = (float)sqrt(1 + log(scale) / log((double)sp->rope_orig_ctx));
		if ((rc = gguf_writer_set_f32(s->w, KEY("rope.scaling.attn_factor"), f)))
			return rc;
	}
#undef KEY
	return KB_OK;
}

/* The tensors of the rotation: Llama 3.1's frequency factors (as llama.cpp's
 * converter writes them), or Phi-3's LongRoPE short and long factors (random,
 * 1 to 2 and 1 to 9, rising with the wavelength as the real ones do). */
static int add_rope_tensors(struct synth *s, const struct synth_spec *sp)
{
	const int half = synth_head_dim(sp) / 2;
	if (sp->rope_llama3 > 0) {
		float *f = keep(s, kb_malloc((size_t)half * sizeof *f));
		if (!f)
			return KB_ERR_NOMEM;
		/* the factors are what turns the plain frequencies into the ones the
		 * runtime's own Llama 3.1 rule gives (rope_inv_freq, model.h) */
		const struct model_hparams hp = { .n_rot = 2 * half, .rope_base = sp->rope_base > 0 ? sp->rope_base : 10000.0f,
						  .rope_scaling = ROPE_SCALING_LLAMA3, .rope_factor = sp->rope_llama3,
						  .rope_orig_ctx = sp->rope_orig_ctx };
		rope_inv_freq(&hp, NULL, f);
		for (int i = 0; i < half; i++)
			f[i] = (float)(pow(hp.rope_base, -2.0 * i / hp.n_rot) / f[i]);
		int64_t ne[2] = { half, 1 };
		return gguf_writer_add_tensor(s->w, "rope_freqs.weight", 0, 1, ne, f, (size_t)half * sizeof *f);
	}
	if (!strcmp(sp->arch, "phi3") && sp->rope_orig_ctx > 0) {
		int rc;
		for (int k = 0; k < 2; k++) {
			float *f = keep(s, kb_malloc((size_t)half * sizeof *f));
			if (!f)
				return KB_ERR_NOMEM;
			for (int i = 0; i < half; i++)
				f[i] = 1.0f + (k ? 8.0f : 1.0f) * (float)i / half * (0.5f + 0.5f * rng_uniform(&s->rng));
			int64_t ne[2] = { half, 1 };
			if ((rc = gguf_writer_add_tensor(s->w, k ? "rope_factors_long.weight" : "rope_factors_short.weight",
							 0, 1, ne, f, (size_t)half * sizeof *f)))
				return rc;
		}
	}
	return KB_OK;
}

/* The vocabulary of a tokenizer.json; *n_vocab becomes its size. */
static int add_vocab_json(struct synth *s, const char *path, int *n_vocab)
{
	struct tokjson tj;
	int rc = tokjson_load(path, &tj);
	if (rc == KB_OK) {
		*n_vocab = tj.n_vocab;
		rc = tokjson_to_gguf(&tj, s->w);
	}
	tokjson_free(&tj);
	return rc;
}

/* The tokenizer of another GGUF file (every tokenizer.* key, copied as it is,
 * e.g. llama.cpp's vocabulary-only files); *n_vocab becomes its size. The
 * writer keeps pointers into src's mapping: it must stay open until the write. */
static int add_vocab_gguf(struct synth *s, const struct gguf *src, int *n_vocab)
{
	enum gguf_vtype t;
	const void *data;
	uint64_t n;
	int rc = gguf_get_arr(src, "tokenizer.ggml.tokens", &t, &n, &data);
	if (rc == KB_EOF || (rc == KB_OK && (t != GGUF_TYPE_STRING || n < 3 || n > (1u << 24))))
		return kb_fail(KB_ERR_FORMAT, "'%s': no vocabulary (tokenizer.ggml.tokens) to take", src->path);
	if (rc)
		return rc;
	*n_vocab = (int)n;
	for (uint64_t i = 0; i < src->n_kv; i++) {
		const struct gguf_str *k = &src->kv[i].key;
		if (k->len > 10 && !memcmp(k->data, "tokenizer.", 10) && (rc = gguf_writer_copy_kv(s->w, src, i)))
			return rc;
	}
	return KB_OK;
}

/* A vocabulary file: a GGUF one (by its magic) or a tokenizer.json. */
static int add_vocab_file(struct synth *s, const char *path, struct gguf **src, int *n_vocab)
{
	char magic[4] = { 0 };
	FILE *f = fopen(path, "rb");
	if (!f)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	size_t got = fread(magic, 1, 4, f);
	fclose(f);
	if (got == 4 && !memcmp(magic, "GGUF", 4)) {
		int rc = gguf_open(src, path);
		return rc ? rc : add_vocab_gguf(s, *src, n_vocab);
	}
	return add_vocab_json(s, path, n_vocab);
}

int synth_write(const char *path, const struct synth_spec *sp)
{
	if ((sp->n_vocab < 259 && !sp->tokenizer_json) || sp->n_embd <= 0 || sp->n_head <= 0 || sp->n_kv_head <= 0 ||
	    (sp->n_embd % sp->n_head && sp->head_dim <= 0) || sp->n_head % sp->n_kv_head || sp->n_layer <= 0 ||
	    sp->n_ff <= 0 || synth_head_dim(sp) % 2)
		return kb_fail(KB_ERR_ARG, "synthetic model: inconsistent shape");
	if (!strcmp(sp->arch, "bert") && (sp->n_kv_head != sp->n_head || sp->n_ctx <= 0))
		return kb_fail(KB_ERR_ARG, "synthetic model: a bert needs as many kv heads as heads, and a context");
	if (!strcmp(sp->arch, "gemma2") && !sp->tied)
		return kb_fail(KB_ERR_ARG, "synthetic model: gemma2 always ties its output to the embeddings "
			       "(llama.cpp accepts no output.weight for it)");
	if (convert_ftype(sp->type) < 0)
		return kb_fail(KB_ERR_ARG, "synthetic model: unsupported weight type %d", sp->type);
	struct synth s = { .w = gguf_writer_init(), .rng = sp->seed ? sp->seed : 1, .type = sp->type,
			   .n_layer = sp->n_layer, .has_output = !sp->tied };
	if (!s.w)
		return KB_ERR_NOMEM;
	const int64_t d = sp->n_embd, hd = synth_head_dim(sp), qd = (int64_t)sp->n_head * hd,
		      kvd = (int64_t)sp->n_kv_head * hd, ff = sp->n_ff;
	const float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)ff), sq = 1.0f / sqrtf((float)qd);
	int rc, n_vocab = sp->n_vocab;
	struct gguf *vsrc = NULL; /* a GGUF vocabulary's file, open until the write */
	if (!strcmp(sp->arch, "bert")) {
		if ((rc = add_hparams_bert(&s, sp)) ||
		    (rc = sp->tokenizer_json ? add_vocab_file(&s, sp->tokenizer_json, &vsrc, &n_vocab)
					     : add_vocab_wpm(&s, n_vocab)) ||
		    /* the rows of token_types, which llama.cpp checks the tensor against */
		    (rc = gguf_writer_set_u32(s.w, "tokenizer.ggml.token_type_count", 2)) ||
		    (rc = add_bert_tensors(&s, sp, n_vocab)))
			goto out;
		rc = gguf_writer_write(s.w, path);
		goto out;
	}
	const bool phi3 = !strcmp(sp->arch, "phi3"), gemma = !strncmp(sp->arch, "gemma", 5),
		   qk_norm = !strcmp(sp->arch, "qwen3") || !strcmp(sp->arch, "gemma3");
	if ((rc = add_hparams(&s, sp)) ||
	    (rc = sp->tokenizer_json ? add_vocab_file(&s, sp->tokenizer_json, &vsrc, &n_vocab) : add_vocab(&s, n_vocab)) ||
	    (rc = add_random(&s, "token_embd.weight", d, n_vocab, 0, 1.0f)) ||
	    (rc = add_random(&s, "output_norm.weight", d, 1, 1.0f, 0.1f)) || (rc = add_rope_tensors(&s, sp)))
		goto out;
	if (!sp->tied && (rc = add_random(&s, "output.weight", d, n_vocab, 0, sd)))
		goto out;
	for (int l = 0; l < sp->n_layer; l++) {
		char n[96];
#define NAME(x) (snprintf(n, sizeof n, "blk.%d.%s", l, x), n)
		/* phi3 fuses Q, K, V and gate, up (their rows one after another) */
		if ((rc = add_random(&s, NAME("attn_norm.weight"), d, 1, 1.0f, 0.1f)) ||
		    (phi3 ? (rc = add_random(&s, NAME("attn_qkv.weight"), d, qd + 2 * kvd, 0, sd))
			  : ((rc = add_random(&s, NAME("attn_q.weight"), d, qd, 0, sd)) ||
			     (rc = add_random(&s, NAME("attn_k.weight"), d, kvd, 0, sd)) ||
			     (rc = add_random(&s, NAME("attn_v.weight"), d, kvd, 0, sd)))) ||
		    (rc = add_random(&s, NAME("attn_output.weight"), qd, d, 0, sq)) ||
		    (rc = add_random(&s, NAME("ffn_norm.weight"), d, 1, 1.0f, 0.1f)) ||
		    (phi3 ? (rc = add_random(&s, NAME("ffn_up.weight"), d, 2 * ff, 0, sd))
			  : ((rc = add_random(&s, NAME("ffn_gate.weight"), d, ff, 0, sd)) ||
			     (rc = add_random(&s, NAME("ffn_up.weight"), d, ff, 0, sd)))) ||
		    (rc = add_random(&s, NAME("ffn_down.weight"), ff, d, 0, sf)))
			goto out;
		if (qk_norm && ((rc = add_random(&s, NAME("attn_q_norm.weight"), hd, 1, 1.0f, 0.1f)) ||
				(rc = add_random(&s, NAME("attn_k_norm.weight"), hd, 1, 1.0f, 0.1f))))
			goto out;
		if (gemma && ((rc = add_random(&s, NAME("post_attention_norm.weight"), d, 1, 1.0f, 0.1f)) ||
			      (rc = add_random(&s, NAME("post_ffw_norm.weight"), d, 1, 1.0f, 0.1f))))
			goto out;
		if (sp->qkv_bias &&
		    ((rc = add_random(&s, NAME("attn_q.bias"), qd, 1, 0, 0.5f)) ||
		     (rc = add_random(&s, NAME("attn_k.bias"), kvd, 1, 0, 0.5f)) ||
		     (rc = add_random(&s, NAME("attn_v.bias"), kvd, 1, 0, 0.5f))))
			goto out;
#undef NAME
	}
	rc = gguf_writer_write(s.w, path);
out:
	gguf_writer_free(s.w);
	gguf_close(vsrc);
	for (size_t i = 0; i < s.n_bufs; i++)
		free(s.bufs[i]);
	free(s.bufs);
	return rc;
}

/* The hyper-parameters of real models (from their config.json), for speed work. */
static const struct {
	const char *name;
	struct synth_spec spec;
} shapes[] = {
	{ "smollm2-135m", { .arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_layer = 30, .n_head = 9,
			    .n_kv_head = 3, .n_ff = 1536, .n_ctx = 8192, .rope_base = 1e5f, .tied = true } },
	{ "smollm2-360m", { .arch = "llama", .n_vocab = 49152, .n_embd = 960, .n_layer = 32, .n_head = 15,
			    .n_kv_head = 5, .n_ff = 2560, .n_ctx = 8192, .rope_base = 1e5f, .tied = true } },
	{ "qwen2.5-0.5b", { .arch = "qwen2", .n_vocab = 151936, .n_embd = 896, .n_layer = 24, .n_head = 14,
			    .n_kv_head = 2, .n_ff = 4864, .n_ctx = 32768, .rope_base = 1e6f, .norm_eps = 1e-6f,
			    .qkv_bias = true, .tied = true } },
	{ "tiny-llama", { .arch = "llama", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
			  .n_kv_head = 2, .n_ff = 128, .n_ctx = 512 } },
	{ "tiny-qwen2", { .arch = "qwen2", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
			  .n_kv_head = 2, .n_ff = 128, .n_ctx = 512, .rope_base = 1e6f, .qkv_bias = true,
			  .tied = true } },
	/* the other form of each (tests of --hf cover llama and qwen2, tied and not) */
	{ "tiny-llama-tied", { .arch = "llama", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
			       .n_kv_head = 2, .n_ff = 128, .n_ctx = 512, .tied = true } },
	{ "tiny-qwen2-untied", { .arch = "qwen2", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 128, .n_ctx = 512, .rope_base = 1e6f, .qkv_bias = true } },
	/* the 2026 families, from their config.json */
	{ "qwen3-0.6b", { .arch = "qwen3", .n_vocab = 151936, .n_embd = 1024, .n_layer = 28, .n_head = 16,
			  .n_kv_head = 8, .head_dim = 128, .n_ff = 3072, .n_ctx = 40960, .rope_base = 1e6f,
			  .norm_eps = 1e-6f, .tied = true } },
	{ "llama3.2-1b", { .arch = "llama", .n_vocab = 128256, .n_embd = 2048, .n_layer = 16, .n_head = 32,
			   .n_kv_head = 8, .n_ff = 8192, .n_ctx = 131072, .rope_base = 5e5f, .tied = true,
			   .rope_llama3 = 32.0f, .rope_orig_ctx = 8192 } },
	{ "gemma2-2b", { .arch = "gemma2", .n_vocab = 256000, .n_embd = 2304, .n_layer = 26, .n_head = 8,
			 .n_kv_head = 4, .head_dim = 256, .n_ff = 9216, .n_ctx = 8192, .norm_eps = 1e-6f,
			 .tied = true, .n_swa = 4096, .attn_softcap = 50.0f, .final_softcap = 30.0f } },
	{ "gemma3-1b", { .arch = "gemma3", .n_vocab = 262144, .n_embd = 1152, .n_layer = 26, .n_head = 4,
			 .n_kv_head = 1, .head_dim = 256, .n_ff = 6912, .n_ctx = 32768, .rope_base = 1e6f,
			 .norm_eps = 1e-6f, .tied = true, .n_swa = 512, .rope_base_swa = 10000.0f } },
	{ "phi-3.5-mini", { .arch = "phi3", .n_vocab = 32064, .n_embd = 3072, .n_layer = 32, .n_head = 32,
			    .n_kv_head = 32, .n_ff = 8192, .n_ctx = 131072, .rope_orig_ctx = 4096 } },
	/* the same families small, for tests: windows and heads that short prompts exercise */
	{ "tiny-qwen3", { .arch = "qwen3", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
			  .n_kv_head = 2, .head_dim = 32, .n_ff = 128, .n_ctx = 512, .rope_base = 1e6f,
			  .norm_eps = 1e-6f, .tied = true } },
	{ "tiny-llama3", { .arch = "llama", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
			   .n_kv_head = 2, .n_ff = 128, .n_ctx = 4096, .rope_base = 5e5f, .tied = true,
			   .rope_llama3 = 32.0f, .rope_orig_ctx = 64 } },
	{ "tiny-gemma2", { .arch = "gemma2", .n_vocab = 512, .n_embd = 64, .n_layer = 4, .n_head = 4,
			   .n_kv_head = 2, .head_dim = 32, .n_ff = 128, .n_ctx = 512, .norm_eps = 1e-6f,
			   .tied = true, .n_swa = 8, .attn_softcap = 5.0f, .final_softcap = 3.0f } },
	{ "tiny-gemma3", { .arch = "gemma3", .n_vocab = 512, .n_embd = 64, .n_layer = 7, .n_head = 4,
			   .n_kv_head = 1, .head_dim = 32, .n_ff = 128, .n_ctx = 512, .rope_base = 1e6f,
			   .norm_eps = 1e-6f, .tied = true, .n_swa = 8, .rope_base_swa = 10000.0f } },
	{ "tiny-phi3", { .arch = "phi3", .n_vocab = 512, .n_embd = 96, .n_layer = 2, .n_head = 4,
			 .n_kv_head = 2, .n_ff = 128, .n_ctx = 4096, .rope_orig_ctx = 256 } },
	/* TinyLlama-1.1B: a real shape with rows of whole K-quant super-blocks (256) */
	{ "tinyllama-1.1b", { .arch = "llama", .n_vocab = 32000, .n_embd = 2048, .n_layer = 22, .n_head = 32,
			      .n_kv_head = 4, .n_ff = 5632, .n_ctx = 2048 } },
	/* sentence-transformers/all-MiniLM-L6-v2 (BERT, mean pooling) */
	{ "all-minilm-l6-v2", { .arch = "bert", .n_vocab = 30522, .n_embd = 384, .n_layer = 6, .n_head = 12,
				.n_kv_head = 12, .n_ff = 1536, .n_ctx = 512, .norm_eps = 1e-12f,
				.pooling = 1 } },
	{ "tiny-bert", { .arch = "bert", .n_vocab = 400, .n_embd = 64, .n_layer = 2, .n_head = 4,
			 .n_kv_head = 4, .n_ff = 128, .n_ctx = 64, .norm_eps = 1e-12f, .pooling = 1 } },
	/* rows of whole K-quant super-blocks (256) */
	{ "tiny-256", { .arch = "llama", .n_vocab = 512, .n_embd = 256, .n_layer = 2, .n_head = 4,
			.n_kv_head = 2, .n_ff = 512, .n_ctx = 512 } },
};

int synth_shape(const char *name, struct synth_spec *out)
{
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		if (strcmp(shapes[i].name, name) == 0) {
			*out = shapes[i].spec;
			return KB_OK;
		}
	}
	return kb_fail(KB_ERR_ARG, "unknown shape '%s' (see --list-shapes)", name);
}

const char *synth_shape_name(size_t i)
{
	return i < sizeof shapes / sizeof *shapes ? shapes[i].name : NULL;
}
