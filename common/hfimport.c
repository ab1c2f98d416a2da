/* hfimport.c — see hfimport.h. */
#include "hfimport.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "quant.h"
#include "safetensors.h"
#include "tokjson.h"

#define GGML_QNT_VERSION 2  /* general.quantization_version, as convert.c writes it */
#define MAX_SHARDS 4096
#define MAX_WIDTH (1 << 24) /* bound on every size config.json gives: products stay in int64 */
#define MAX_LAYERS (1 << 16)

static const struct {
	const char *hf, *gguf;
} archs[] = {
	{ "LlamaForCausalLM", "llama" },
	{ "MistralForCausalLM", "llama" },
	{ "Qwen2ForCausalLM", "qwen2" },
};
#define N_ARCHS (sizeof archs / sizeof *archs)

const char *hfimport_arch(const char *hf)
{
	for (size_t i = 0; hf && i < N_ARCHS; i++)
		if (strcmp(archs[i].hf, hf) == 0)
			return archs[i].gguf;
	return NULL;
}

/* "dir/name", malloc()ed; NULL when out of memory. */
static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	char *p = kb_malloc(n + 1 + strlen(name) + 1);
	if (p)
		sprintf(p, "%.*s/%s", (int)n, dir, name);
	return p;
}

static bool is_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode);
}

/* ---- config.json ---- */

enum rope_kind { ROPE_NONE, ROPE_LINEAR, ROPE_LLAMA3 };

struct hfconf {
	char *path;              /* owned: DIR/config.json, for messages */
	json_t *root;            /* owned */
	const char *hf_arch;     /* into root */
	const char *arch;        /* "llama" or "qwen2" */
	int64_t n_embd, n_ff, n_layer, n_head, n_kv_head, head_dim, n_ctx, n_vocab;
	double norm_eps, rope_base;
	bool tied, qkv_bias, permute, head_dim_set;
	enum rope_kind rope;
	double rope_factor, rope_lo, rope_hi; /* linear: factor; llama3: all three */
	int64_t rope_orig_ctx;                /* llama3 */
	char warning[256];       /* "" or what the runtime will not do as the original does */
};

/* A value that is absent or null (transformers writes null for "use the default"). */
static json_t *get(const struct hfconf *c, const char *key)
{
	json_t *v = json_object_get(c->root, key);
	return json_is_null(v) ? NULL : v;
}

/* An integer in [lo, hi]; def < 0: required. */
static int get_int(const struct hfconf *c, const char *key, int64_t def, int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = get(c, key);
	if (!v) {
		if (def < 0)
			return kb_fail(KB_ERR_FORMAT, "'%s': %s is missing", c->path, key);
		*out = def;
		return KB_OK;
	}
	if (!json_is_integer(v))
		return kb_fail(KB_ERR_FORMAT, "'%s': %s is not an integer", c->path, key);
	json_int_t i = json_integer_value(v);
	if (i < lo || i > hi)
		return kb_fail(KB_ERR_FORMAT, "'%s': %s = %lld is out of range (%" PRId64 "..%" PRId64 ")", c->path, key,
			       (long long)i, lo, hi);
	*out = (int64_t)i;
	return KB_OK;
}

/* A number in the open interval (lo, hi); absent: def. */
static int get_num(const struct hfconf *c, const char *key, double def, double lo, double hi, double *out)
{
	json_t *v = get(c, key);
	if (!v) {
		*out = def;
		return KB_OK;
	}
	if (!json_is_number(v))
		return kb_fail(KB_ERR_FORMAT, "'%s': %s is not a number", c->path, key);
	double d = json_number_value(v);
	if (!(d > lo && d < hi))
		return kb_fail(KB_ERR_FORMAT, "'%s': %s = %g is out of range (%g..%g, exclusive)", c->path, key, d, lo,
			       hi);
	*out = d;
	return KB_OK;
}

static int get_bool(const struct hfconf *c, const char *key, bool def, bool *out)
{
	json_t *v = get(c, key);
	if (!v) {
		*out = def;
		return KB_OK;
	}
	if (!json_is_boolean(v))
		return kb_fail(KB_ERR_FORMAT, "'%s': %s is not true or false", c->path, key);
	*out = json_is_true(v);
	return KB_OK;
}

/* The architecture: architectures[0] (or, without it, model_type). */
static int conf_arch(struct hfconf *c)
{
	static const struct {
		const char *model_type, *hf;
	} types[] = { { "llama", "LlamaForCausalLM" }, { "mistral", "MistralForCausalLM" }, { "qwen2", "Qwen2ForCausalLM" } };
	json_t *a = get(c, "architectures");
	if (a && (!json_is_array(a) || !json_is_string(json_array_get(a, 0))))
		return kb_fail(KB_ERR_FORMAT, "'%s': architectures is not a list of names", c->path);
	c->hf_arch = json_string_value(json_array_get(a, 0));
	if (!c->hf_arch) {
		const char *mt = json_string_value(get(c, "model_type"));
		if (!mt)
			return kb_fail(KB_ERR_FORMAT, "'%s': no architectures (nor model_type): not a model's config",
				       c->path);
		for (size_t i = 0; i < sizeof types / sizeof *types; i++)
			if (strcmp(types[i].model_type, mt) == 0)
				c->hf_arch = types[i].hf;
		if (!c->hf_arch)
			return kb_fail(KB_ERR_UNSUPPORTED, "'%s': model_type '%.64s' is not supported (llama, mistral, qwen2)",
				       c->path, mt);
	}
	c->arch = hfimport_arch(c->hf_arch);
	if (!c->arch)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': architecture '%.64s' is not supported (LlamaForCausalLM, "
			       "MistralForCausalLM, Qwen2ForCausalLM)", c->path, c->hf_arch);
	return KB_OK;
}

/* rope_scaling: null, "default", "linear" or "llama3". */
static int conf_rope_scaling(struct hfconf *c)
{
	json_t *rs = get(c, "rope_scaling");
	c->rope = ROPE_NONE;
	if (!rs)
		return KB_OK;
	if (!json_is_object(rs))
		return kb_fail(KB_ERR_FORMAT, "'%s': rope_scaling is not an object", c->path);
	const char *type = json_string_value(json_object_get(rs, "rope_type"));
	if (!type)
		type = json_string_value(json_object_get(rs, "type")); /* older transformers */
	if (!type)
		return kb_fail(KB_ERR_FORMAT, "'%s': rope_scaling has no rope_type", c->path);
	if (strcmp(type, "default") == 0)
		return KB_OK;
	struct hfconf sub = *c; /* the getters on the rope_scaling object */
	sub.root = rs;
	int rc;
	if ((rc = get_num(&sub, "factor", 0, 0, 1e6, &c->rope_factor)))
		return rc;
	if (!(c->rope_factor > 0))
		return kb_fail(KB_ERR_FORMAT, "'%s': rope_scaling has no factor", c->path);
	if (strcmp(type, "linear") == 0) {
		c->rope = ROPE_LINEAR;
		return KB_OK;
	}
	if (strcmp(type, "llama3") == 0) {
		c->rope = ROPE_LLAMA3;
		if ((rc = get_num(&sub, "low_freq_factor", 1.0, 0, 1e6, &c->rope_lo)) ||
		    (rc = get_num(&sub, "high_freq_factor", 4.0, 0, 1e6, &c->rope_hi)) ||
		    (rc = get_int(&sub, "original_max_position_embeddings", 8192, 1, MAX_WIDTH, &c->rope_orig_ctx)))
			return rc;
		if (!(c->rope_hi > c->rope_lo))
			return kb_fail(KB_ERR_FORMAT, "'%s': rope_scaling: high_freq_factor must exceed low_freq_factor",
				       c->path);
		return KB_OK;
	}
	return kb_fail(KB_ERR_UNSUPPORTED, "'%s': rope_scaling type '%.32s' is not supported (linear, llama3)", c->path,
		       type);
}

/* What the runtime cannot do: biases llama has no tensor for, other activations. */
static int conf_features(struct hfconf *c)
{
	int rc;
	bool attn_bias, mlp_bias;
	const char *act = json_string_value(get(c, "hidden_act"));
	if (get(c, "hidden_act") && (!act || strcmp(act, "silu") != 0))
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': hidden_act '%.32s' is not supported (silu)", c->path,
			       act ? act : "?");
	if ((rc = get_bool(c, "attention_bias", false, &attn_bias)) || (rc = get_bool(c, "mlp_bias", false, &mlp_bias)))
		return rc;
	if (attn_bias && strcmp(c->arch, "llama") == 0)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': attention_bias is not supported (the runtime has no "
			       "o_proj bias)", c->path);
	if (mlp_bias)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': mlp_bias is not supported", c->path);
	/* attention within a window: the same as the full one up to the window's length */
	int64_t sw = 0;
	bool use_sw = true;
	if ((rc = get_bool(c, "use_sliding_window", strcmp(c->arch, "qwen2") != 0, &use_sw)))
		return rc;
	json_t *w = get(c, "sliding_window");
	if (use_sw && json_is_integer(w))
		sw = (int64_t)json_integer_value(w);
	if (sw > 0 && sw < c->n_ctx)
		snprintf(c->warning, sizeof c->warning, "'%s': sliding_window %" PRId64 " is not kept: attention "
			 "over more than %" PRId64 " tokens differs from the original's", c->path, sw, sw);
	return KB_OK;
}

static int conf_load(struct hfconf *c, const char *dir)
{
	int rc;
	if (!(c->path = join(dir, "config.json")))
		return KB_ERR_NOMEM;
	FILE *f = fopen(c->path, "r");
	if (!f)
		return kb_fail(KB_ERR_IO, "'%s': %s", c->path, strerror(errno));
	json_error_t err;
	c->root = json_loadf(f, 0, &err);
	fclose(f);
	if (!c->root)
		return kb_fail(KB_ERR_FORMAT, "'%s': line %d: %s", c->path, err.line, err.text);
	if (!json_is_object(c->root))
		return kb_fail(KB_ERR_FORMAT, "'%s': not a JSON object", c->path);
	if ((rc = conf_arch(c)))
		return rc;
	bool qwen2 = strcmp(c->arch, "qwen2") == 0;
	if ((rc = get_int(c, "hidden_size", -1, 1, MAX_WIDTH, &c->n_embd)) ||
	    (rc = get_int(c, "intermediate_size", -1, 1, MAX_WIDTH, &c->n_ff)) ||
	    (rc = get_int(c, "num_hidden_layers", -1, 1, MAX_LAYERS, &c->n_layer)) ||
	    (rc = get_int(c, "num_attention_heads", -1, 1, MAX_WIDTH, &c->n_head)) ||
	    (rc = get_int(c, "num_key_value_heads", c->n_head, 1, MAX_WIDTH, &c->n_kv_head)) ||
	    (rc = get_int(c, "vocab_size", -1, 1, MAX_WIDTH, &c->n_vocab)) ||
	    (rc = get_int(c, "max_position_embeddings", qwen2 ? 32768 : 2048, 1, INT32_MAX, &c->n_ctx)) ||
	    (rc = get_num(c, "rms_norm_eps", 1e-6, 0, 1, &c->norm_eps)) ||
	    (rc = get_num(c, "rope_theta", 10000.0, 1, 1e12, &c->rope_base)) ||
	    (rc = get_bool(c, "tie_word_embeddings", false, &c->tied)))
		return rc;
	c->head_dim_set = get(c, "head_dim") != NULL;
	if (!c->head_dim_set && c->n_embd % c->n_head)
		return kb_fail(KB_ERR_FORMAT, "'%s': hidden_size %" PRId64 " is not a multiple of num_attention_heads %"
			       PRId64, c->path, c->n_embd, c->n_head);
	if ((rc = get_int(c, "head_dim", c->n_embd / c->n_head, 1, MAX_WIDTH, &c->head_dim)))
		return rc;
	c->head_dim_set = c->head_dim_set && c->head_dim * c->n_head != c->n_embd;
	if (c->head_dim % 2)
		return kb_fail(KB_ERR_FORMAT, "'%s': the head size %" PRId64 " is odd: RoPE rotates pairs", c->path,
			       c->head_dim);
	if (c->n_head % c->n_kv_head)
		return kb_fail(KB_ERR_FORMAT, "'%s': num_attention_heads %" PRId64 " is not a multiple of "
			       "num_key_value_heads %" PRId64, c->path, c->n_head, c->n_kv_head);
	c->qkv_bias = qwen2;
	c->permute = !qwen2;
	if ((rc = conf_rope_scaling(c)) || (rc = conf_features(c)))
		return rc;
	return KB_OK;
}

/* ---- the weights: one safetensors file, or shards ---- */

struct entry {
	const struct safetensors_tensor *t;
	const struct safetensors *file;
	bool used;
};

struct weights {
	char *where;               /* owned: the file, or the index, for messages */
	struct safetensors **files; /* owned, [n_files] */
	char **names;              /* owned, [n_files]: the shards' names in the index */
	size_t n_files;
	struct entry *e;           /* owned, [n], sorted by name */
	size_t n;
	uint64_t bytes;            /* the files' sizes */
};

static void weights_free(struct weights *w)
{
	for (size_t i = 0; i < w->n_files; i++) {
		safetensors_close(w->files[i]);
		if (w->names)
			free(w->names[i]);
	}
	free(w->files);
	free(w->names);
	free(w->e);
	free(w->where);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->t->name, ((const struct entry *)b)->t->name);
}

static struct entry *find(const struct weights *w, const char *name)
{
	struct safetensors_tensor key = { .name = (char *)name };
	struct entry k = { .t = &key };
	return bsearch(&k, w->e, w->n, sizeof *w->e, by_name);
}

/* Every tensor of the files, sorted by name; a name in two files is an error. */
static int index_tensors(struct weights *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->n_files; i++)
		n += w->files[i]->n_tensors;
	if (!(w->e = kb_calloc(n ? n : 1, sizeof *w->e)))
		return KB_ERR_NOMEM;
	for (size_t i = 0; i < w->n_files; i++) {
		for (size_t j = 0; j < w->files[i]->n_tensors; j++)
			w->e[w->n++] = (struct entry){ &w->files[i]->tensors[j], w->files[i], false };
		w->bytes += w->files[i]->size;
	}
	qsort(w->e, w->n, sizeof *w->e, by_name);
	for (size_t i = 1; i < w->n; i++)
		if (strcmp(w->e[i].t->name, w->e[i - 1].t->name) == 0)
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' is in both '%s' and '%s'", w->where,
				       w->e[i].t->name, w->e[i - 1].file->path, w->e[i].file->path);
	return KB_OK;
}

static int grow_files(struct weights *w)
{
	struct safetensors **f = kb_realloc_array(w->files, w->n_files + 1, sizeof *f);
	if (!f)
		return KB_ERR_NOMEM;
	w->files = f;
	char **nm = kb_realloc_array(w->names, w->n_files + 1, sizeof *nm);
	if (!nm)
		return KB_ERR_NOMEM;
	w->names = nm;
	return KB_OK;
}

/* The shard called file in the index (opened on first use): its number, or < 0. */
static int shard(struct weights *w, const char *dir, const char *file, size_t *out)
{
	for (size_t i = 0; i < w->n_files; i++) {
		if (strcmp(w->names[i], file) == 0) {
			*out = i;
			return KB_OK;
		}
	}
	if (!*file || strchr(file, '/') || !strcmp(file, ".") || !strcmp(file, ".."))
		return kb_fail(KB_ERR_FORMAT, "'%s': '%.64s' is not the name of a file beside it", w->where, file);
	if (w->n_files == MAX_SHARDS)
		return kb_fail(KB_ERR_FORMAT, "'%s': more than %d shards", w->where, MAX_SHARDS);
	int rc = grow_files(w);
	if (rc)
		return rc;
	char *path = join(dir, file);
	if (!path)
		return KB_ERR_NOMEM;
	struct safetensors *st;
	rc = safetensors_open(&st, path);
	free(path);
	if (rc)
		return rc;
	if (!(w->names[w->n_files] = kb_strndup(file, strlen(file)))) {
		safetensors_close(st);
		return KB_ERR_NOMEM;
	}
	w->files[w->n_files] = st;
	*out = w->n_files++;
	return KB_OK;
}

/* model.safetensors.index.json: "weight_map" names each tensor's shard; every
 * tensor of the shards is in it, and each is where it says. */
static int load_sharded(struct weights *w, const char *dir)
{
	json_error_t err;
	json_t *root = json_load_file(w->where, 0, &err);
	if (!root)
		return kb_fail(KB_ERR_FORMAT, "'%s': line %d: %s", w->where, err.line, err.text);
	json_t *map = json_object_get(root, "weight_map");
	int rc = KB_OK;
	if (!json_is_object(map) || json_object_size(map) == 0) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': no weight_map", w->where);
		goto out;
	}
	const char *name;
	json_t *v;
	json_object_foreach(map, name, v) {
		size_t i = 0;
		if (!json_is_string(v)) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': weight_map: '%s' is not a file name", w->where, name);
			goto out;
		}
		if ((rc = shard(w, dir, json_string_value(v), &i)))
			goto out;
		if (!safetensors_find(w->files[i], name)) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' is not in '%s', where the index puts it",
				     w->where, name, w->files[i]->path);
			goto out;
		}
	}
	if ((rc = index_tensors(w)))
		goto out;
	for (size_t i = 0; i < w->n; i++) {
		const struct entry *e = &w->e[i];
		const char *file = json_string_value(json_object_get(map, e->t->name));
		size_t k = 0;
		while (w->files[k] != e->file)
			k++;
		if (!file || strcmp(file, w->names[k]) != 0) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' is not in the index '%s'", e->file->path,
				     e->t->name, w->where);
			goto out;
		}
	}
out:
	json_decref(root);
	return rc;
}

static int weights_load(struct weights *w, const char *dir)
{
	if (!(w->where = join(dir, "model.safetensors")))
		return KB_ERR_NOMEM;
	if (is_file(w->where)) {
		int rc = grow_files(w);
		if (rc)
			return rc;
		if ((rc = safetensors_open(&w->files[0], w->where)))
			return rc;
		if (!(w->names[0] = kb_strndup("model.safetensors", 17))) {
			safetensors_close(w->files[0]);
			return KB_ERR_NOMEM;
		}
		w->n_files = 1;
		return index_tensors(w);
	}
	free(w->where);
	if (!(w->where = join(dir, "model.safetensors.index.json")))
		return KB_ERR_NOMEM;
	if (is_file(w->where))
		return load_sharded(w, dir);
	return kb_fail(KB_ERR_IO, "'%s': no model.safetensors, nor model.safetensors.index.json (a pytorch_model.bin "
		       "cannot be read: save the model with safe_serialization=True)", dir);
}

/* ---- the plan: each GGUF tensor and where it comes from ---- */

struct item {
	char gguf[64];           /* "blk.3.attn_q.weight" */
	char hf[128];            /* "model.layers.3.self_attn.q_proj.weight" */
	uint32_t n_dims;         /* 1 or 2 */
	int64_t shape[2];        /* as Hugging Face writes it: [out, in] or [n] */
	int64_t heads;           /* > 0: permute the rows of each of this many heads (llama q, k) */
	const struct entry *src; /* NULL: computed */
	float *computed;         /* owned: the values when there is no source (rope_freqs) */
	void *data;              /* owned: converted, written */
	size_t size;
	int to, want;
	enum convert_action act;
};

struct plan {
	struct item *it;         /* owned, [n] */
	size_t n, cap;
};

static struct item *add(struct plan *p, const char *gguf, const char *hf, uint32_t n_dims, int64_t s0, int64_t s1,
			int64_t heads)
{
	if (p->n == p->cap)
		return NULL;
	struct item *it = &p->it[p->n++];
	snprintf(it->gguf, sizeof it->gguf, "%s", gguf);
	snprintf(it->hf, sizeof it->hf, "%s", hf);
	it->n_dims = n_dims;
	it->shape[0] = s0;
	it->shape[1] = s1;
	it->heads = heads;
	return it;
}

/* Llama 3's RoPE scaling as per-frequency divisors (llama.cpp's rope_freqs.weight):
 * 1 for short wavelengths, factor for long ones, a smooth blend between. */
static float *llama3_freqs(const struct hfconf *c)
{
	const int64_t half = c->head_dim / 2;
	float *f = kb_malloc((size_t)half * sizeof *f);
	if (!f)
		return NULL;
	const double lo_wavelen = (double)c->rope_orig_ctx / c->rope_lo, hi_wavelen = (double)c->rope_orig_ctx / c->rope_hi;
	for (int64_t i = 0; i < half; i++) {
		double freq = pow(c->rope_base, -2.0 * (double)i / (double)c->head_dim);
		double wavelen = 2 * M_PI / freq;
		if (wavelen < hi_wavelen) {
			f[i] = 1.0f;
		} else if (wavelen > lo_wavelen) {
			f[i] = (float)c->rope_factor;
		} else {
			double smooth = ((double)c->rope_orig_ctx / wavelen - c->rope_lo) / (c->rope_hi - c->rope_lo);
			f[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
		}
	}
	return f;
}

/* The tensors of the model, in synth.h's order. */
static int plan_build(struct plan *p, const struct hfconf *c)
{
	const int64_t d = c->n_embd, qd = c->n_head * c->head_dim, kvd = c->n_kv_head * c->head_dim, ff = c->n_ff,
		      V = c->n_vocab;
	p->cap = 4 + 12 * (size_t)c->n_layer;
	if (!(p->it = kb_calloc(p->cap, sizeof *p->it)))
		return KB_ERR_NOMEM;
	add(p, "token_embd.weight", "model.embed_tokens.weight", 2, V, d, 0);
	add(p, "output_norm.weight", "model.norm.weight", 1, d, 1, 0);
	if (!c->tied)
		add(p, "output.weight", "lm_head.weight", 2, V, d, 0);
	if (c->rope == ROPE_LLAMA3) {
		struct item *it = add(p, "rope_freqs.weight", "", 1, c->head_dim / 2, 1, 0);
		if (!(it->computed = llama3_freqs(c)))
			return KB_ERR_NOMEM;
	}
	for (int64_t l = 0; l < c->n_layer; l++) {
		char g[64], h[128];
#define G(x) (snprintf(g, sizeof g, "blk.%" PRId64 ".%s", l, x), g)
#define H(x) (snprintf(h, sizeof h, "model.layers.%" PRId64 ".%s", l, x), h)
		add(p, G("attn_norm.weight"), H("input_layernorm.weight"), 1, d, 1, 0);
		add(p, G("attn_q.weight"), H("self_attn.q_proj.weight"), 2, qd, d, c->permute ? c->n_head : 0);
		add(p, G("attn_k.weight"), H("self_attn.k_proj.weight"), 2, kvd, d, c->permute ? c->n_kv_head : 0);
		add(p, G("attn_v.weight"), H("self_attn.v_proj.weight"), 2, kvd, d, 0);
		add(p, G("attn_output.weight"), H("self_attn.o_proj.weight"), 2, d, qd, 0);
		add(p, G("ffn_norm.weight"), H("post_attention_layernorm.weight"), 1, d, 1, 0);
		add(p, G("ffn_gate.weight"), H("mlp.gate_proj.weight"), 2, ff, d, 0);
		add(p, G("ffn_up.weight"), H("mlp.up_proj.weight"), 2, ff, d, 0);
		add(p, G("ffn_down.weight"), H("mlp.down_proj.weight"), 2, d, ff, 0);
		if (c->qkv_bias) {
			add(p, G("attn_q.bias"), H("self_attn.q_proj.bias"), 1, qd, 1, 0);
			add(p, G("attn_k.bias"), H("self_attn.k_proj.bias"), 1, kvd, 1, 0);
			add(p, G("attn_v.bias"), H("self_attn.v_proj.bias"), 1, kvd, 1, 0);
		}
#undef G
#undef H
	}
	return KB_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A tied checkpoint's lm_head.weight, if any: the embeddings again, or an error. */
static int check_tied_head(struct weights *w, const struct hfconf *c)
{
	struct entry *head = find(w, "lm_head.weight"), *emb = find(w, "model.embed_tokens.weight");
	if (!head)
		return KB_OK;
	if (!emb || head->t->type != emb->t->type || head->t->size != emb->t->size ||
	    memcmp(head->t->shape, emb->t->shape, sizeof emb->t->shape) != 0 ||
	    memcmp(head->t->data, emb->t->data, emb->t->size) != 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor 'lm_head.weight' differs from 'model.embed_tokens.weight', but "
			       "'%s' says tie_word_embeddings", head->file->path, c->path);
	head->used = true;
	return KB_OK;
}

/* Each planned tensor is there with its shape; no other is. */
static int plan_check(struct plan *p, struct weights *w, const struct hfconf *c)
{
	char got[96], want[96];
	for (size_t i = 0; i < p->n; i++) {
		struct item *it = &p->it[i];
		if (it->computed)
			continue;
		struct entry *e = find(w, it->hf);
		if (!e)
			return kb_fail(KB_ERR_FORMAT, "'%s': missing tensor '%s' (for %s: '%s' describes a %s of %" PRId64
				       " layers)", w->where, it->hf, it->gguf, c->path, c->hf_arch, c->n_layer);
		if (e->t->n_dims != it->n_dims || e->t->shape[0] != it->shape[0] ||
		    (it->n_dims == 2 && e->t->shape[1] != it->shape[1]))
			return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has shape %s, expected %s from '%s'",
				       e->file->path, it->hf, safetensors_shape_str(e->t->shape, e->t->n_dims, got, sizeof got),
				       safetensors_shape_str(it->shape, it->n_dims, want, sizeof want), c->path);
		e->used = true;
		it->src = e;
	}
	int rc;
	if (c->tied && (rc = check_tied_head(w, c)))
		return rc;
	for (size_t i = 0; i < w->n; i++) {
		const struct entry *e = &w->e[i];
		if (!e->used && !ends_with(e->t->name, ".rotary_emb.inv_freq"))
			return kb_fail(KB_ERR_FORMAT, "'%s': unexpected tensor '%s' (a %s has no such weight)",
				       e->file->path, e->t->name, c->hf_arch);
	}
	return KB_OK;
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; p->it && i < p->n; i++) {
		free(p->it[i].computed);
		free(p->it[i].data);
	}
	free(p->it);
}

/* ---- conversion ---- */

/* The Hugging Face row of GGUF row r of a permuted q or k: within a head of hd
 * rows, GGUF's adjacent pair (2i, 2i + 1) is Hugging Face's (i, i + hd / 2). */
static int64_t source_row(int64_t r, int64_t hd)
{
	int64_t h = r / hd, j = r % hd;
	return h * hd + (j % 2) * (hd / 2) + j / 2;
}

/* Convert item it to its type (chosen by the caller) into it->data. */
static int convert_item(struct item *it)
{
	const int64_t ne0 = it->n_dims == 2 ? it->shape[1] : it->shape[0], rows = it->n_dims == 2 ? it->shape[0] : 1;
	const struct qtype_traits *dst = qtype_traits(it->to);
	ASSERT(dst);
	const size_t row_out = qtype_row_size(it->to, ne0);
	if (kb_mul_size(row_out, (size_t)rows, &it->size))
		return kb_fail(KB_ERR_NOMEM, "tensor '%s' is too large to convert", it->hf);
	uint8_t *buf = kb_aligned_alloc(64, it->size ? it->size : 64);
	if (!buf)
		return KB_ERR_NOMEM;
	it->data = buf;
	if (it->computed) {
		dst->from_float(it->computed, buf, ne0);
		return KB_OK;
	}
	const struct safetensors_tensor *t = it->src->t;
	const int64_t hd = it->heads > 0 ? rows / it->heads : 0;
	int failed = 0;
#pragma omp parallel if ((int64_t)rows * ne0 > (1 << 16))
	{
		float *tmp = malloc((size_t)ne0 * sizeof *tmp);
		if (!tmp) {
#pragma omp atomic write
			failed = 1;
		}
#pragma omp for schedule(static)
		for (int64_t r = 0; r < rows; r++) {
			if (!tmp)
				continue;
			safetensors_row_to_float(t, hd ? source_row(r, hd) : r, tmp);
			dst->from_float(tmp, buf + (size_t)r * row_out, ne0);
		}
		free(tmp);
	}
	if (failed)
		return kb_fail(KB_ERR_NOMEM, "out of memory converting tensor '%s'", it->hf);
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

/* Convert every item and add it to w, reporting each. */
static int add_tensors(struct plan *p, const struct hfconf *c, int target, struct gguf_writer *w,
		       const struct hfimport_opts *opts, struct convert_stats *st)
{
	for (size_t i = 0; i < p->n; i++) {
		struct item *it = &p->it[i];
		const int64_t ne[2] = { it->n_dims == 2 ? it->shape[1] : it->shape[0], it->shape[0] };
		const int from = it->src ? it->src->t->type : QTYPE_F32;
		it->to = convert_tensor_type(target, it->gguf, it->n_dims, ne[0], (int)c->n_layer, !c->tied, &it->want);
		it->act = it->n_dims < 2 ? CONVERT_KEPT_1D
			: it->to != it->want ? CONVERT_KEPT_BLOCKS
			: from == it->to ? CONVERT_COPIED
			: CONVERT_CONVERTED;
		int rc = convert_item(it);
		if (rc)
			return rc;
		if (opts && opts->on_tensor) {
			struct convert_tensor ct = { .name = it->gguf, .n_dims = it->n_dims, .ne = ne, .from = from,
						     .to = it->to, .want = it->want, .action = it->act,
						     .source = it->src ? it->hf : NULL, .permuted = it->heads > 0 };
			opts->on_tensor(opts->ctx, &ct);
		}
		count(st, it->act);
		st->n_by_type[it->to]++;
		st->in_tensor_bytes += it->src ? it->src->t->size : 0;
		st->out_tensor_bytes += it->size;
		if ((rc = gguf_writer_add_tensor(w, it->gguf, it->to, it->n_dims, ne, it->data, it->size)))
			return rc;
	}
	st->n_tensors = p->n;
	return KB_OK;
}

/* ---- metadata ---- */

/* The folder's own name ("SmolLM2-135M" of "models/SmolLM2-135M/"). */
static char *dir_name(const char *dir)
{
	char *real = realpath(dir, NULL);
	const char *s = real ? real : dir, *slash = strrchr(s, '/');
	const char *base = slash && slash[1] ? slash + 1 : s;
	char *name = kb_strndup(base, strlen(base));
	free(real);
	return name;
}

static int add_hparams(struct gguf_writer *w, const struct hfconf *c, const char *name, int target)
{
	char k[96];
	const char *a = c->arch;
	int rc;
#define KEY(x) (snprintf(k, sizeof k, "%s.%s", a, x), k)
	if ((rc = gguf_writer_set_str(w, "general.architecture", a)) ||
	    (rc = gguf_writer_set_str(w, "general.name", name)) ||
	    (rc = gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx)) ||
	    (rc = gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd)) ||
	    (rc = gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer)) ||
	    (rc = gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff)) ||
	    (rc = gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head)) ||
	    (rc = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_head)) ||
	    (rc = gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim)) ||
	    (rc = gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)c->rope_base)) ||
	    (rc = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->norm_eps)))
		return rc;
	if (c->head_dim_set && ((rc = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim)) ||
				(rc = gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim))))
		return rc;
	if (c->rope == ROPE_LINEAR && ((rc = gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear")) ||
				       (rc = gguf_writer_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor))))
		return rc;
#undef KEY
	if ((rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)convert_ftype(target))))
		return rc;
	if ((target >= QTYPE_COUNT || qtype_traits(target)->is_quantized) &&
	    (rc = gguf_writer_set_u32(w, "general.quantization_version", GGML_QNT_VERSION)))
		return rc;
	return KB_OK;
}

/* tokenizer.json's keys; its vocabulary must fit the embeddings. */
static int add_tokenizer(struct gguf_writer *w, const char *dir, const struct hfconf *c,
			 const struct hfimport_opts *opts)
{
	char *path = join(dir, "tokenizer.json");
	if (!path)
		return KB_ERR_NOMEM;
	struct tokjson tj;
	int rc;
	if (!is_file(path)) {
		rc = kb_fail(KB_ERR_IO, "'%s': %s (the tokenizer must be a tokenizer.json, as a fast tokenizer saves it)",
			     path, strerror(ENOENT));
		free(path);
		return rc;
	}
	rc = tokjson_load(path, &tj);
	if (rc == KB_OK && tj.n_vocab > c->n_vocab)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': %d tokens, but the model has %" PRId64 " (vocab_size in '%s')", path,
			     tj.n_vocab, c->n_vocab, c->path);
	if (rc == KB_OK && tj.warning[0] && opts && opts->on_warning)
		opts->on_warning(opts->ctx, tj.warning);
	if (rc == KB_OK)
		rc = tokjson_to_gguf(&tj, w);
	tokjson_free(&tj);
	free(path);
	return rc;
}

int hfimport_dir(const char *dir, const char *out, int target, const struct hfimport_opts *opts,
		 struct convert_stats *stats)
{
	struct hfconf c = { 0 };
	struct weights wt = { 0 };
	struct plan p = { 0 };
	struct gguf_writer *w = NULL;
	struct convert_stats st = { 0 };
	char *name = NULL;
	struct stat sb;
	int rc;

	if (convert_ftype(target) < 0)
		return kb_fail(KB_ERR_ARG, "cannot convert to type %d", target);
	if (stat(dir, &sb) != 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return kb_fail(KB_ERR_IO, "'%s': not a folder (a Hugging Face model is a folder with config.json, "
			       "model.safetensors and tokenizer.json)", dir);
	if ((rc = conf_load(&c, dir)))
		goto out;
	if (c.warning[0] && opts && opts->on_warning)
		opts->on_warning(opts->ctx, c.warning);
	if ((rc = weights_load(&wt, dir)) || (rc = plan_build(&p, &c)) || (rc = plan_check(&p, &wt, &c)))
		goto out;
	if (!(w = gguf_writer_init()) || !(name = dir_name(dir))) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	if ((rc = add_hparams(w, &c, name, target)) || (rc = add_tokenizer(w, dir, &c, opts)) ||
	    (rc = add_tensors(&p, &c, target, w, opts, &st)) || (rc = gguf_writer_write(w, out)))
		goto out;
	st.in_file_bytes = wt.bytes;
	if (strcmp(out, "-") != 0 && stat(out, &sb) == 0)
		st.out_file_bytes = (uint64_t)sb.st_size;
	if (stats)
		*stats = st;
out:
	gguf_writer_free(w);
	plan_free(&p);
	weights_free(&wt);
	json_decref(c.root);
	free(c.path);
	free(name);
	return rc;
}
