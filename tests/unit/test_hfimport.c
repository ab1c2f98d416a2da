/* test_hfimport.c — hfimport_dir() on small Hugging Face folders built here:
 * llama's q/k rows permuted as llama.cpp's converter does (checked against
 * rows written out by hand, not against the importer's formula), qwen2's not,
 * its biases kept; the keys; tied embeddings; F16/BF16 weights; head_dim,
 * linear and Llama 3 RoPE scaling (the frequencies the runtime then uses);
 * shards; each error with its message. The round trip through a whole
 * synthetic model and its logits is tests/cli/hfimport.t. */
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "gguf.h"
#include "hfimport.h"
#include "model.h"
#include "quant.h"
#include "safetensors.h"
#include "tap.h"

static int has(const char *needle)
{
	return strstr(kb_error(), needle) != NULL;
}

/* A byte-level BPE tokenizer.json of 9 tokens. */
static const char tokenizer_json[] =
	"{\"added_tokens\": [{\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true}],\n"
	" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},\n"
	" \"model\": {\"type\": \"BPE\", \"vocab\": {\"H\": 0, \"e\": 1, \"He\": 2, \"\\u0120\": 3, \"\\u0120w\": 4,"
	" \"<|endoftext|>\": 5, \"w\": 6, \"l\": 7, \"o\": 8}, \"merges\": [\"H e\", \"\\u0120 w\"]}}\n";

/* ---- a Hugging Face folder under construction ---- */

struct tensor {
	char name[128];
	const char *dtype;   /* "F32", "F16", "BF16" */
	int n_dims;
	int64_t shape[2];
	uint8_t *bytes;      /* owned */
	size_t size;
};

struct hf {
	char dir[4200];
	json_t *cfg;         /* owned */
	struct tensor t[64];
	int n;
};

static void write_text(const char *dir, const char *name, const char *text)
{
	char p[4400];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		diag("cannot write %s", p);
}

/* Value of element (r, c) of a tensor: the row number, then the column in thousandths. */
static float val(int64_t r, int64_t c)
{
	return (float)r + (float)c / 1000.0f;
}

/* Add tensor name: rows x cols (rows 0: a vector of cols), values val(r, c) in dtype. */
static void tensor(struct hf *h, const char *name, const char *dtype, int64_t rows, int64_t cols)
{
	struct tensor *t = &h->t[h->n++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->dtype = dtype;
	t->n_dims = rows ? 2 : 1;
	t->shape[0] = rows ? rows : cols;
	t->shape[1] = cols;
	int64_t nr = rows ? rows : 1, n = nr * cols;
	size_t es = strcmp(dtype, "F32") ? 2 : 4;
	t->size = (size_t)n * es;
	t->bytes = malloc(t->size ? t->size : 1);
	for (int64_t r = 0; r < nr; r++) {
		for (int64_t c = 0; c < cols; c++) {
			float v = rows ? val(r, c) : val(c, 0);
			uint8_t *p = t->bytes + (size_t)(r * cols + c) * es;
			if (es == 4) {
				memcpy(p, &v, 4);
			} else {
				uint16_t u = strcmp(dtype, "F16") ? fp32_to_bf16(v) : fp32_to_fp16(v);
				memcpy(p, &u, 2);
			}
		}
	}
}

static int64_t cfg_int(const struct hf *h, const char *key)
{
	return json_integer_value(json_object_get(h->cfg, key));
}

/* A folder for arch with the default small shape (hidden 8, 2 heads of 4, 1 KV
 * head, feed-forward 16, 1 layer, 16 tokens, context 64). */
static void hf_begin(struct hf *h, const char *name, const char *arch)
{
	memset(h, 0, sizeof *h);
	snprintf(h->dir, sizeof h->dir, "%s/%s", tap_tmpdir(), name);
	mkdir(h->dir, 0755);
	h->cfg = json_pack("{s:[s],s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:s}", "architectures", arch,
			   "hidden_size", 8, "intermediate_size", 16, "num_hidden_layers", 1, "num_attention_heads", 2,
			   "num_key_value_heads", 1, "vocab_size", 16, "max_position_embeddings", 64, "rms_norm_eps",
			   1e-5, "rope_theta", 10000.0, "tie_word_embeddings", 0, "hidden_act", "silu");
}

/* Every tensor the config implies, F32 (2-D ones in dtype), but the one called skip. */
static void hf_model(struct hf *h, const char *dtype, const char *skip)
{
	const int64_t d = cfg_int(h, "hidden_size"), ff = cfg_int(h, "intermediate_size"), V = cfg_int(h, "vocab_size"),
		      nh = cfg_int(h, "num_attention_heads"), nkv = cfg_int(h, "num_key_value_heads");
	const int64_t hd = json_object_get(h->cfg, "head_dim") ? cfg_int(h, "head_dim") : d / nh;
	const int64_t qd = nh * hd, kvd = nkv * hd;
	const char *arch = json_string_value(json_array_get(json_object_get(h->cfg, "architectures"), 0));
	bool qwen2 = !strcmp(arch, "Qwen2ForCausalLM");
#define T(name, rows, cols, ty) (!skip || strcmp(skip, name) ? tensor(h, name, ty, rows, cols) : (void)0)
	T("model.embed_tokens.weight", V, d, dtype);
	T("model.norm.weight", 0, d, "F32");
	if (!json_is_true(json_object_get(h->cfg, "tie_word_embeddings")))
		T("lm_head.weight", V, d, dtype);
	for (int64_t l = 0; l < cfg_int(h, "num_hidden_layers"); l++) {
		char n[128];
#define L(x) (snprintf(n, sizeof n, "model.layers.%d.%s", (int)l, x), n)
		T(L("input_layernorm.weight"), 0, d, "F32");
		T(L("self_attn.q_proj.weight"), qd, d, dtype);
		T(L("self_attn.k_proj.weight"), kvd, d, dtype);
		T(L("self_attn.v_proj.weight"), kvd, d, dtype);
		T(L("self_attn.o_proj.weight"), d, qd, dtype);
		T(L("post_attention_layernorm.weight"), 0, d, "F32");
		T(L("mlp.gate_proj.weight"), ff, d, dtype);
		T(L("mlp.up_proj.weight"), ff, d, dtype);
		T(L("mlp.down_proj.weight"), d, ff, dtype);
		if (qwen2) {
			T(L("self_attn.q_proj.bias"), 0, qd, "F32");
			T(L("self_attn.k_proj.bias"), 0, kvd, "F32");
			T(L("self_attn.v_proj.bias"), 0, kvd, "F32");
		}
#undef L
	}
#undef T
}

/* Tensors [from, to) as the safetensors file dir/name. */
static void write_st(const struct hf *h, const char *name, int from, int to)
{
	json_t *hdr = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
	size_t off = 0;
	for (int i = from; i < to; i++) {
		const struct tensor *t = &h->t[i];
		json_t *shape = t->n_dims == 2 ? json_pack("[I,I]", (json_int_t)t->shape[0], (json_int_t)t->shape[1])
					       : json_pack("[I]", (json_int_t)t->shape[0]);
		json_object_set_new(hdr, t->name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", t->dtype, "shape", shape,
							   "data_offsets", (json_int_t)off, (json_int_t)(off + t->size)));
		off += t->size;
	}
	char *text = json_dumps(hdr, JSON_COMPACT);
	json_decref(hdr);
	char p[4400];
	snprintf(p, sizeof p, "%s/%s", h->dir, name);
	FILE *f = fopen(p, "wb");
	uint64_t n = strlen(text);
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(n >> (8 * i));
	fwrite(len, 1, 8, f);
	fputs(text, f);
	for (int i = from; i < to; i++)
		fwrite(h->t[i].bytes, 1, h->t[i].size, f);
	if (fclose(f) != 0)
		diag("cannot write %s", p);
	free(text);
}

/* config.json, the tokenizer, and the weights: model.safetensors, or two shards and their index. */
static void hf_write(struct hf *h, bool sharded)
{
	char *cfg = json_dumps(h->cfg, JSON_INDENT(1));
	write_text(h->dir, "config.json", cfg);
	free(cfg);
	write_text(h->dir, "tokenizer.json", tokenizer_json);
	if (!sharded) {
		write_st(h, "model.safetensors", 0, h->n);
		return;
	}
	static const char *const files[2] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };
	write_st(h, files[0], 0, h->n / 2);
	write_st(h, files[1], h->n / 2, h->n);
	json_t *map = json_object();
	for (int i = 0; i < h->n; i++)
		json_object_set_new(map, h->t[i].name, json_string(files[i >= h->n / 2]));
	json_t *idx = json_pack("{s:{s:i},s:o}", "metadata", "total_size", 0, "weight_map", map);
	char *text = json_dumps(idx, JSON_INDENT(1));
	write_text(h->dir, "model.safetensors.index.json", text);
	free(text);
	json_decref(idx);
}

static void hf_end(struct hf *h)
{
	for (int i = 0; i < h->n; i++)
		free(h->t[i].bytes);
	json_decref(h->cfg);
}

/* ---- reading the result ---- */

static char out_path[4400];

struct seen {
	int n, permuted;
	char permuted_names[256];
	char warning[1024]; /* each warning, joined by " | " */
};

static void on_tensor(void *ctx, const struct convert_tensor *t)
{
	struct seen *s = ctx;
	s->n++;
	if (t->permuted) {
		s->permuted++;
		size_t k = strlen(s->permuted_names);
		snprintf(s->permuted_names + k, sizeof s->permuted_names - k, "%s%s", k ? " " : "", t->name);
	}
}

static void on_warning(void *ctx, const char *msg)
{
	struct seen *s = ctx;
	size_t k = strlen(s->warning);
	snprintf(s->warning + k, sizeof s->warning - k, "%s%s", k ? " | " : "", msg);
}

/* Import h->dir to f32 (or target) into out_path. */
static int import(struct hf *h, int target, struct seen *s)
{
	snprintf(out_path, sizeof out_path, "%s.gguf", h->dir);
	struct hfimport_opts o = { on_tensor, on_warning, s };
	struct seen dummy = { 0 };
	if (!s)
		o.ctx = &dummy;
	return hfimport_dir(h->dir, out_path, target, &o, NULL);
}

/* The first value of each row of an f32 GGUF tensor: "0 2 1 3". */
static const char *first_of_rows(const struct gguf *g, const char *name)
{
	static char buf[512];
	buf[0] = '\0';
	const struct gguf_tensor *t = gguf_find_tensor(g, name);
	if (!t || t->type != QTYPE_F32)
		return "(none)";
	int64_t rows = t->n_dims == 2 ? t->ne[1] : 1;
	for (int64_t r = 0; r < rows; r++) {
		size_t k = strlen(buf);
		snprintf(buf + k, sizeof buf - k, "%s%g", r ? " " : "", ((const float *)t->data)[r * t->ne[0]]);
	}
	return buf;
}

static uint32_t u32(const struct gguf *g, const char *key)
{
	uint32_t v = 0;
	return gguf_get_u32(g, key, &v) == KB_OK ? v : 0xffffffffu;
}

/* ---- the tests ---- */

static void test_llama(void)
{
	struct hf h;
	hf_begin(&h, "Reader-1", "LlamaForCausalLM");
	hf_model(&h, "F32", NULL);
	hf_write(&h, false);
	struct seen s = { 0 };
	int rc = import(&h, QTYPE_F32, &s);
	ok(rc == KB_OK, "llama: imported (%s)", kb_error());
	ok(s.n == 12 && s.permuted == 2 && !strcmp(s.permuted_names, "blk.0.attn_q.weight blk.0.attn_k.weight"),
	   "12 tensors; the rows of q and k permuted, nothing else (%s)", s.permuted_names);
	struct gguf *g;
	if (!ok(gguf_open(&g, out_path) == KB_OK, "the output opens"))
		return hf_end(&h);
	/* heads of 4 rows: GGUF's pairs (0,1) (2,3) are Hugging Face's rows (0,2) (1,3) */
	const char *q = first_of_rows(g, "blk.0.attn_q.weight");
	ok(!strcmp(q, "0 2 1 3 4 6 5 7"), "attn_q rows, 2 heads of 4: 0 2 1 3 4 6 5 7 (%s)", q);
	const char *k = first_of_rows(g, "blk.0.attn_k.weight");
	ok(!strcmp(k, "0 2 1 3"), "attn_k rows, 1 KV head: 0 2 1 3 (%s)", k);
	ok(!strcmp(first_of_rows(g, "blk.0.attn_v.weight"), "0 1 2 3"), "attn_v rows as they were");
	const struct gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
	ok(t && t->ne[0] == 8 && t->ne[1] == 8 && ((const float *)t->data)[8 + 5] == 2.005f,
	   "a permuted row keeps its columns (row 1 = Hugging Face row 2: 2.005 at column 5)");
	t = gguf_find_tensor(g, "blk.0.ffn_down.weight");
	ok(t && t->n_dims == 2 && t->ne[0] == 16 && t->ne[1] == 8, "ffn_down: ne [16, 8] (Hugging Face [8, 16])");
	t = gguf_find_tensor(g, "output_norm.weight");
	ok(t && t->n_dims == 1 && t->ne[0] == 8 && ((const float *)t->data)[7] == 7.0f, "output_norm: a vector of 8");
	ok(gguf_find_tensor(g, "output.weight") != NULL, "untied: output.weight from lm_head.weight");
	struct gguf_str a = { 0 }, name = { 0 }, tm = { 0 };
	float eps = 0, base = 0;
	ok(gguf_get_str(g, "general.architecture", &a) == KB_OK && gguf_str_eq(a, "llama") &&
		   gguf_get_str(g, "general.name", &name) == KB_OK && gguf_str_eq(name, "Reader-1"),
	   "general.architecture llama, general.name the folder's");
	ok(u32(g, "llama.context_length") == 64 && u32(g, "llama.embedding_length") == 8 &&
		   u32(g, "llama.block_count") == 1 && u32(g, "llama.feed_forward_length") == 16 &&
		   u32(g, "llama.attention.head_count") == 2 && u32(g, "llama.attention.head_count_kv") == 1 &&
		   u32(g, "llama.rope.dimension_count") == 4 && u32(g, "general.file_type") == 0,
	   "the hyper-parameters from config.json");
	ok(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps) == KB_OK && eps == 1e-5f &&
		   gguf_get_f32(g, "llama.rope.freq_base", &base) == KB_OK && base == 10000.0f,
	   "rms_norm_eps and rope_theta");
	ok(gguf_find_key(g, "llama.attention.key_length") < 0 && gguf_find_key(g, "llama.rope.scaling.type") < 0,
	   "no key_length or rope scaling keys when there is nothing to say");
	ok(gguf_get_str(g, "tokenizer.ggml.model", &tm) == KB_OK && gguf_str_eq(tm, "gpt2") &&
		   u32(g, "tokenizer.ggml.eos_token_id") == 5,
	   "the tokenizer's keys from tokenizer.json");
	ok(strstr(s.warning, "special tokens") != NULL, "what the tokenizer import guessed is handed on (%s)", s.warning);
	gguf_close(g);
	struct model *m;
	rc = model_load(&m, out_path);
	ok(rc == KB_OK && m->hp.arch == ARCH_LLAMA && !m->hp.tied_output, "the runtime loads it (%s)", kb_error());
	model_free(rc == KB_OK ? m : NULL);
	hf_end(&h);
}

static void test_qwen2_tied(void)
{
	struct hf h;
	hf_begin(&h, "q2", "Qwen2ForCausalLM");
	json_object_set_new(h.cfg, "tie_word_embeddings", json_true());
	json_object_set_new(h.cfg, "head_dim", json_integer(8)); /* 2 heads of 8 in a width of 8 */
	hf_model(&h, "F32", NULL);
	tensor(&h, "model.layers.0.self_attn.rotary_emb.inv_freq", "F32", 0, 4);
	hf_write(&h, false);
	struct seen s = { 0 };
	int rc = import(&h, QTYPE_F32, &s);
	ok(rc == KB_OK, "qwen2, tied, head_dim 8, a rotary_emb.inv_freq buffer: imported (%s)", kb_error());
	ok(s.n == 14 && s.permuted == 0, "14 tensors, none permuted (NEOX rope)");
	struct gguf *g;
	if (!ok(gguf_open(&g, out_path) == KB_OK, "the output opens"))
		return hf_end(&h);
	const char *q = first_of_rows(g, "blk.0.attn_q.weight");
	ok(!strcmp(q, "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"), "attn_q rows in order (%s)", q);
	const struct gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_k.bias");
	ok(t && t->n_dims == 1 && t->ne[0] == 8 && ((const float *)t->data)[3] == 3.0f, "attn_k.bias kept");
	ok(!gguf_find_tensor(g, "output.weight"), "tied: no output.weight");
	ok(u32(g, "qwen2.attention.key_length") == 8 && u32(g, "qwen2.attention.value_length") == 8 &&
		   u32(g, "qwen2.rope.dimension_count") == 8,
	   "head_dim 8 (not 8 / 2): key_length, value_length and the rope dimension");
	gguf_close(g);
	struct model *m;
	rc = model_load(&m, out_path);
	ok(rc == KB_OK && m->hp.arch == ARCH_QWEN2 && m->hp.tied_output && m->hp.qkv_bias && m->hp.head_dim == 8,
	   "the runtime loads it: tied, biases, head size 8 (%s)", kb_error());
	model_free(rc == KB_OK ? m : NULL);

	/* a tied checkpoint that still holds lm_head.weight: the embeddings again, or an error */
	tensor(&h, "lm_head.weight", "F32", 16, 8);
	hf_write(&h, false);
	ok(import(&h, QTYPE_F32, NULL) == KB_OK, "tied, with lm_head.weight equal to the embeddings: dropped (%s)",
	   kb_error());
	((float *)h.t[h.n - 1].bytes)[5] = 99;
	hf_write(&h, false);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("tensor 'lm_head.weight' differs from 'model.embed_tokens.weight'"),
	   "tied, with another lm_head.weight: refused (%s)", kb_error());
	hf_end(&h);
}

/* F16 and BF16 weights: the values rounded to the dtype, exactly. */
static void test_dtypes(void)
{
	const char *dt[2] = { "F16", "BF16" };
	for (int i = 0; i < 2; i++) {
		struct hf h;
		char name[16];
		snprintf(name, sizeof name, "dt-%s", dt[i]);
		hf_begin(&h, name, "LlamaForCausalLM");
		hf_model(&h, dt[i], NULL);
		hf_write(&h, false);
		int rc = import(&h, QTYPE_F32, NULL);
		struct gguf *g = NULL;
		rc = rc ? rc : gguf_open(&g, out_path);
		const struct gguf_tensor *t = g ? gguf_find_tensor(g, "blk.0.ffn_up.weight") : NULL;
		int bad = !t;
		for (int64_t r = 0; t && r < t->ne[1]; r++)
			for (int64_t c = 0; c < t->ne[0]; c++) {
				float v = val(r, c), want = i ? bf16_to_fp32(fp32_to_bf16(v)) : fp16_to_fp32(fp32_to_fp16(v));
				bad += ((const float *)t->data)[r * t->ne[0] + c] != want;
			}
		ok(rc == KB_OK && bad == 0, "%s weights import with their values (%s)", dt[i], kb_error());
		gguf_close(g);
		hf_end(&h);
	}
}

static void test_rope_scaling(void)
{
	struct hf h;
	hf_begin(&h, "linear", "LlamaForCausalLM");
	json_object_set_new(h.cfg, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "linear", "factor", 4.0));
	hf_model(&h, "F32", NULL);
	hf_write(&h, false);
	struct gguf *g = NULL;
	struct gguf_str st = { 0 };
	float f = 0;
	int rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_OK && gguf_open(&g, out_path) == KB_OK &&
		   gguf_get_str(g, "llama.rope.scaling.type", &st) == KB_OK && gguf_str_eq(st, "linear") &&
		   gguf_get_f32(g, "llama.rope.scaling.factor", &f) == KB_OK && f == 4.0f,
	   "linear RoPE scaling: rope.scaling.type and factor (%s)", kb_error());
	gguf_close(g);
	hf_end(&h);

	/* Llama 3: rope_freqs.weight; the runtime's frequencies are then those its own
	 * Llama 3 rule gives (low 1, high 4) */
	hf_begin(&h, "llama3", "LlamaForCausalLM");
	json_object_set_new(h.cfg, "hidden_size", json_integer(128));
	json_object_set_new(h.cfg, "rope_theta", json_real(500000.0));
	json_object_set_new(h.cfg, "rope_scaling",
			    json_pack("{s:s,s:f,s:f,s:f,s:i}", "rope_type", "llama3", "factor", 8.0, "low_freq_factor", 1.0,
				      "high_freq_factor", 4.0, "original_max_position_embeddings", 8192));
	hf_model(&h, "F32", NULL);
	hf_write(&h, false);
	rc = import(&h, QTYPE_F32, NULL);
	struct model *m = NULL;
	if (rc == KB_OK)
		rc = model_load(&m, out_path);
	if (ok(rc == KB_OK && gguf_find_tensor(m->gguf, "rope_freqs.weight"),
	       "llama3 RoPE scaling: rope_freqs.weight, and the model loads (%s)", kb_error())) {
		struct model_hparams hp = m->hp;
		hp.rope_scaling = ROPE_SCALING_LLAMA3;
		hp.rope_factor = 8;
		hp.rope_orig_ctx = 8192;
		float want[32];
		rope_inv_freq(&hp, NULL, want);
		int bad = 0, scaled = 0, kept = 0;
		for (int i = 0; i < hp.n_rot / 2; i++) {
			bad += fabsf(m->rope_inv_freq[i] - want[i]) > 1e-6f * want[i];
			float plain = powf(500000.0f, -2.0f * (float)i / (float)hp.n_rot);
			scaled += fabsf(m->rope_inv_freq[i] * 8 - plain) < 1e-6f * plain;
			kept += fabsf(m->rope_inv_freq[i] - plain) < 1e-6f * plain;
		}
		ok(bad == 0 && scaled > 0 && kept > 0,
		   "the 32 frequencies are the runtime's Llama 3 rule's (%d kept, %d divided by 8, the rest between)",
		   kept, scaled);
	}
	model_free(m);
	hf_end(&h);
}

static void test_shards(void)
{
	struct hf h;
	hf_begin(&h, "sharded", "Qwen2ForCausalLM");
	hf_model(&h, "F32", NULL);
	hf_write(&h, true);
	struct convert_stats st;
	struct hfimport_opts o = { 0 };
	snprintf(out_path, sizeof out_path, "%s.gguf", h.dir);
	int rc = hfimport_dir(h.dir, out_path, QTYPE_Q8_0, &o, &st);
	ok(rc == KB_OK && st.n_tensors == 15 && st.in_file_bytes > 0, "two shards and their index import (%s)",
	   kb_error());
	/* an index naming a path, a shard with a tensor the index lacks, one in both shards */
	write_text(h.dir, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.norm.weight\": \"../model-00001-of-00002.safetensors\"}}");
	rc = hfimport_dir(h.dir, out_path, QTYPE_F32, &o, NULL);
	ok(rc == KB_ERR_FORMAT && has("'../model-00001-of-00002.safetensors' is not the name of a file beside it"),
	   "an index naming a file elsewhere: refused (%s)", kb_error());
	write_text(h.dir, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}");
	rc = hfimport_dir(h.dir, out_path, QTYPE_F32, &o, NULL);
	ok(rc == KB_ERR_FORMAT && has("is not in the index"), "a shard's tensor missing from the index: refused (%s)",
	   kb_error());
	write_st(&h, "model-00002-of-00002.safetensors", h.n / 2 - 1, h.n);
	hf_write(&h, true);
	write_st(&h, "model-00002-of-00002.safetensors", h.n / 2 - 1, h.n);
	rc = hfimport_dir(h.dir, out_path, QTYPE_F32, &o, NULL);
	ok(rc == KB_ERR_FORMAT && has("is in both"), "a tensor in two shards: refused (%s)", kb_error());
	hf_end(&h);
}

/* config.json edits that must be refused, by what they say. */
static void test_config_errors(void)
{
	static const struct {
		const char *what, *key, *json;
		int rc;
		const char *msg;
	} cases[] = {
		{ "an unknown architecture", "architectures", "[\"GPT2LMHeadModel\"]", KB_ERR_UNSUPPORTED,
		  "architecture 'GPT2LMHeadModel' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)" },
		{ "architectures not a list", "architectures", "\"LlamaForCausalLM\"", KB_ERR_FORMAT,
		  "architectures is not a list of names" },
		{ "no hidden_size", "hidden_size", "null", KB_ERR_FORMAT, "hidden_size is missing" },
		{ "a hidden_size in quotes", "hidden_size", "\"8\"", KB_ERR_FORMAT, "hidden_size is not an integer" },
		{ "no layers", "num_hidden_layers", "0", KB_ERR_FORMAT, "num_hidden_layers = 0 is out of range" },
		{ "a width that is not whole heads", "num_attention_heads", "3", KB_ERR_FORMAT,
		  "hidden_size 8 is not a multiple of num_attention_heads 3" },
		{ "heads that are not whole KV groups", "num_key_value_heads", "3", KB_ERR_FORMAT,
		  "num_attention_heads 2 is not a multiple of num_key_value_heads 3" },
		{ "an odd head size", "head_dim", "3", KB_ERR_FORMAT, "the head size 3 is odd" },
		{ "rms_norm_eps 0", "rms_norm_eps", "0", KB_ERR_FORMAT, "rms_norm_eps = 0 is out of range" },
		{ "tie_word_embeddings a string", "tie_word_embeddings", "\"yes\"", KB_ERR_FORMAT,
		  "tie_word_embeddings is not true or false" },
		{ "gelu", "hidden_act", "\"gelu\"", KB_ERR_UNSUPPORTED, "hidden_act 'gelu' is not supported (silu)" },
		{ "llama with attention_bias", "attention_bias", "true", KB_ERR_UNSUPPORTED, "attention_bias is not supported" },
		{ "yarn", "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", KB_ERR_UNSUPPORTED,
		  "rope_scaling type 'yarn' is not supported (linear, llama3)" },
		{ "rope_scaling without a factor", "rope_scaling", "{\"type\": \"linear\"}", KB_ERR_FORMAT,
		  "rope_scaling has no factor" },
		{ "a vocabulary larger than vocab_size", "vocab_size", "4", KB_ERR_FORMAT, "9 tokens, but the model has 4" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct hf h;
		hf_begin(&h, "bad", "LlamaForCausalLM");
		json_object_set_new(h.cfg, cases[i].key, json_loads(cases[i].json, JSON_DECODE_ANY, NULL));
		if (json_is_integer(json_object_get(h.cfg, "vocab_size")) && cfg_int(&h, "vocab_size") == 4)
			hf_model(&h, "F32", NULL); /* the weights fit; the tokenizer does not */
		hf_write(&h, false);
		int rc = import(&h, QTYPE_F32, NULL);
		ok(rc == cases[i].rc && has(cases[i].msg) && has("/bad/"), "%s: refused (%s)", cases[i].what,
		   kb_error());
		hf_end(&h);
	}
	struct hf h;
	hf_begin(&h, "bad", "LlamaForCausalLM");
	write_text(h.dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"],");
	ok(import(&h, QTYPE_F32, NULL) == KB_ERR_FORMAT && has("/bad/config.json': line "),
	   "a config.json that is not JSON: refused (%s)", kb_error());
	hf_end(&h);

	/* no architectures: model_type will do */
	hf_begin(&h, "mt", "Qwen2ForCausalLM");
	hf_model(&h, "F32", NULL); /* with the biases */
	json_object_del(h.cfg, "architectures");
	json_object_set_new(h.cfg, "model_type", json_string("qwen2"));
	hf_write(&h, false);
	ok(import(&h, QTYPE_F32, NULL) == KB_OK, "no architectures, model_type qwen2: imported as qwen2 (%s)",
	   kb_error());
	hf_end(&h);
	hf_begin(&h, "mistral", "MistralForCausalLM");
	json_object_set_new(h.cfg, "sliding_window", json_integer(32));
	hf_model(&h, "F32", NULL);
	hf_write(&h, false);
	struct seen s = { 0 };
	ok(import(&h, QTYPE_F32, &s) == KB_OK && strstr(s.warning, "sliding_window 32 is not kept"),
	   "Mistral with a sliding window shorter than the context: imported, with a warning (%s)", s.warning);
	hf_end(&h);
}

/* Tensors missing, extra, of another shape; folders missing pieces. */
static void test_tensor_errors(void)
{
	struct hf h;
	hf_begin(&h, "t", "LlamaForCausalLM");
	hf_model(&h, "F32", "model.layers.0.mlp.up_proj.weight");
	hf_write(&h, false);
	int rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("/t/model.safetensors': missing tensor 'model.layers.0.mlp.up_proj.weight' "
				      "(for blk.0.ffn_up.weight:"),
	   "a missing tensor: refused, naming it (%s)", kb_error());
	tensor(&h, "model.layers.0.mlp.up_proj.weight", "F32", 16, 9);
	hf_write(&h, false);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("tensor 'model.layers.0.mlp.up_proj.weight' has shape [16, 9], expected [16, 8] from"),
	   "a tensor of another shape: refused, with both shapes (%s)", kb_error());
	h.t[h.n - 1].n_dims = 1;
	h.t[h.n - 1].shape[0] = 144;
	hf_write(&h, false);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("has shape [144], expected [16, 8]"), "a tensor of another rank: refused (%s)",
	   kb_error());
	hf_end(&h);
	hf_begin(&h, "t", "LlamaForCausalLM");
	hf_model(&h, "F32", NULL);
	tensor(&h, "model.layers.1.mlp.up_proj.weight", "F32", 16, 8);
	hf_write(&h, false);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("unexpected tensor 'model.layers.1.mlp.up_proj.weight' (a LlamaForCausalLM has no "
				      "such weight)"),
	   "a tensor of a layer config.json does not have: refused (%s)", kb_error());
	unlink(out_path);
	struct stat sb;
	ok(stat(out_path, &sb) != 0, "nothing is written on failure");
	char p[4400];
	snprintf(p, sizeof p, "%s/tokenizer.json", h.dir);
	free(h.t[--h.n].bytes);
	hf_write(&h, false);
	unlink(p);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_IO && has("/t/tokenizer.json': No such file or directory"), "no tokenizer.json: refused (%s)",
	   kb_error());
	snprintf(p, sizeof p, "%s/model.safetensors", h.dir);
	unlink(p);
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_IO && has("no model.safetensors, nor model.safetensors.index.json"), "no weights: refused (%s)",
	   kb_error());
	hf_write(&h, false);
	write_text(h.dir, "tokenizer.json",
		   "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"<0x41>\": 0, \"\u2581a\": 1},"
		   " \"merges\": []}}");
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_UNSUPPORTED && has("a SentencePiece-style BPE (byte_fallback) is not supported"),
	   "a SentencePiece-style tokenizer.json (Llama 2, Mistral): refused, not misread (%s)", kb_error());
	snprintf(p, sizeof p, "%s/model.safetensors", h.dir);
	write_text(h.dir, "model.safetensors", "not a safetensors file at all");
	rc = import(&h, QTYPE_F32, NULL);
	ok(rc == KB_ERR_FORMAT && has("/t/model.safetensors': header of"), "a broken model.safetensors: refused (%s)",
	   kb_error());
	struct hfimport_opts o = { 0 };
	ok(hfimport_dir(h.dir, out_path, 12345, &o, NULL) == KB_ERR_ARG, "a target that is not one: KB_ERR_ARG");
	snprintf(p, sizeof p, "%s/nope", h.dir);
	ok(hfimport_dir(p, out_path, QTYPE_F32, &o, NULL) == KB_ERR_IO && has("No such file or directory"),
	   "a missing folder: refused (%s)", kb_error());
	snprintf(p, sizeof p, "%s/config.json", h.dir);
	ok(hfimport_dir(p, out_path, QTYPE_F32, &o, NULL) == KB_ERR_IO && has("not a folder"),
	   "a file for a folder: refused (%s)", kb_error());
	ok(!strcmp(hfimport_arch("Qwen2ForCausalLM"), "qwen2") && !hfimport_arch("BertModel") && !hfimport_arch(NULL),
	   "hfimport_arch");
	hf_end(&h);
}

int main(void)
{
	test_llama();
	test_qwen2_tied();
	test_dtypes();
	test_rope_scaling();
	test_shards();
	test_config_errors();
	test_tensor_errors();
	return done_testing();
}
