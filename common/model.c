/* model.c — load llama/qwen2 GGUF models and run the forward pass. See model.h. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant.h"
#include "wisdom.h"

const char *model_arch_name(enum model_arch a)
{
	switch (a) {
	case ARCH_LLAMA: return "llama";
	case ARCH_QWEN2: return "qwen2";
	case ARCH_QWEN3: return "qwen3";
	case ARCH_GEMMA2: return "gemma2";
	case ARCH_GEMMA3: return "gemma3";
	case ARCH_PHI3: return "phi3";
	}
	return "?";
}

/* ---- loading ---- */

/* "<arch>.<suffix>" into buf. */
static const char *akey(char *buf, size_t cap, const char *arch, const char *suffix)
{
	snprintf(buf, cap, "%s.%s", arch, suffix);
	return buf;
}

/* Required (req) or optional u32 hyper-parameter into *out (unchanged when absent). */
static int get_hp_u32(const struct gguf *g, const char *arch, const char *suffix, int *out, bool req)
{
	char key[128];
	uint32_t v;
	int rc = gguf_get_u32(g, akey(key, sizeof key, arch, suffix), &v);
	if (rc == KB_EOF)
		return req ? kb_fail(KB_ERR_FORMAT, "'%s': missing hyper-parameter '%s'", g->path, key) : KB_OK;
	if (rc < 0)
		return rc;
	if (v > (1u << 30))
		return kb_fail(KB_ERR_FORMAT, "'%s': hyper-parameter '%s' = %u is absurd", g->path, key, v);
	*out = (int)v;
	return KB_OK;
}

static int get_hp_f32(const struct gguf *g, const char *arch, const char *suffix, float *out)
{
	char key[128];
	int rc = gguf_get_f32(g, akey(key, sizeof key, arch, suffix), out);
	return rc == KB_EOF ? KB_OK : rc;
}

/* What each newer architecture adds to llama's hyper-parameters, with the
 * defaults llama.cpp takes when a key is absent. */
static int load_arch_hparams(struct model *m, const char *arch)
{
	const struct gguf *g = m->gguf;
	struct model_hparams *hp = &m->hp;
	const enum model_arch a = hp->arch;
	const bool gemma = a == ARCH_GEMMA2 || a == ARCH_GEMMA3;
	int rc;
	hp->rope_mscale = 1.0f;
	hp->rope_base_swa = hp->rope_base;
	hp->swa_period = 0; /* every layer, when there is a window (llama.cpp's pattern rule) */
	hp->qk_norm = a == ARCH_QWEN3 || a == ARCH_GEMMA3;
	if (gemma) {
		hp->post_norms = hp->gelu = true;
		hp->embd_scale = sqrtf((float)hp->n_embd);
		/* Gemma's 27B models scale scores by their hidden size per head; the rest by the head size */
		const bool big = hp->n_layer == (a == ARCH_GEMMA2 ? 46 : 62);
		hp->attn_scale = 1.0f / sqrtf(big ? (float)hp->n_embd / hp->n_head : (float)hp->head_dim);
		hp->swa_period = a == ARCH_GEMMA2 ? 2 : 6;
		hp->n_swa = a == ARCH_GEMMA2 ? 4096 : 0;
		hp->rope_base_swa = a == ARCH_GEMMA2 ? hp->rope_base : 10000.0f;
		if (a == ARCH_GEMMA2)
			hp->attn_softcap = 50.0f, hp->final_softcap = 30.0f;
		if ((rc = get_hp_u32(g, arch, "attention.sliding_window_pattern", &hp->swa_period, false)) ||
		    (rc = get_hp_f32(g, arch, "rope.freq_base_swa", &hp->rope_base_swa)) ||
		    (rc = get_hp_f32(g, arch, "attn_logit_softcapping", &hp->attn_softcap)) ||
		    (rc = get_hp_f32(g, arch, "final_logit_softcapping", &hp->final_softcap)))
			return rc;
		if (hp->swa_period < 0 || !(hp->rope_base_swa > 1) || !(hp->attn_softcap >= 0) ||
		    !(hp->final_softcap >= 0))
			return kb_fail(KB_ERR_FORMAT, "'%s': bad sliding window pattern %d, rope base %g or soft-caps %g, %g",
				       g->path, hp->swa_period, hp->rope_base_swa, hp->attn_softcap, hp->final_softcap);
	}
	if (a == ARCH_PHI3) {
		/* llama.cpp runs Phi-3 without its sliding window (its GGUFs do not say which
		 * layers have one); so do we, to give the same results */
		if ((rc = get_hp_f32(g, arch, "rope.scaling.attn_factor", &hp->rope_mscale)))
			return rc;
		if (!(hp->rope_mscale > 0 && hp->rope_mscale < 16))
			return kb_fail(KB_ERR_FORMAT, "'%s': bad rope.scaling.attn_factor %g", g->path, hp->rope_mscale);
	} else if ((rc = get_hp_u32(g, arch, "attention.sliding_window", &hp->n_swa, false))) {
		return rc;
	}
	return KB_OK;
}

static int load_hparams(struct model *m, const char *arch)
{
	const struct gguf *g = m->gguf;
	struct model_hparams *hp = &m->hp;
	int rc;
	hp->n_kv_head = -1;
	hp->head_dim = -1;
	hp->n_rot = -1;
	hp->rope_base = 10000.0f;
	hp->rope_factor = 1.0f;
	hp->norm_eps = 1e-5f;
	hp->n_ctx_train = 2048;
	if ((rc = get_hp_u32(g, arch, "embedding_length", &hp->n_embd, true)) ||
	    (rc = get_hp_u32(g, arch, "block_count", &hp->n_layer, true)) ||
	    (rc = get_hp_u32(g, arch, "attention.head_count", &hp->n_head, true)) ||
	    (rc = get_hp_u32(g, arch, "feed_forward_length", &hp->n_ff, true)) ||
	    (rc = get_hp_u32(g, arch, "attention.head_count_kv", &hp->n_kv_head, false)) ||
	    (rc = get_hp_u32(g, arch, "attention.key_length", &hp->head_dim, false)) ||
	    (rc = get_hp_u32(g, arch, "context_length", &hp->n_ctx_train, false)) ||
	    (rc = get_hp_u32(g, arch, "rope.dimension_count", &hp->n_rot, false)) ||
	    (rc = get_hp_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps)) ||
	    (rc = get_hp_f32(g, arch, "rope.freq_base", &hp->rope_base)))
		return rc;
	if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_ff <= 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': hyper-parameters must be positive "
			       "(n_embd %d, n_layer %d, n_head %d, n_ff %d)",
			       g->path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_ff);
	if ((uint64_t)hp->n_layer > g->n_tensors) /* each layer has its tensors: no huge table for a lie */
		return kb_fail(KB_ERR_FORMAT, "'%s': block_count %d, but the file holds only %llu tensors", g->path,
			       hp->n_layer, (unsigned long long)g->n_tensors);
	if (hp->n_kv_head < 0)
		hp->n_kv_head = hp->n_head;
	if (hp->head_dim < 0) {
		if (hp->n_embd % hp->n_head)
			return kb_fail(KB_ERR_FORMAT, "'%s': embedding_length %d is not a multiple of head_count %d",
				       g->path, hp->n_embd, hp->n_head);
		hp->head_dim = hp->n_embd / hp->n_head;
	}
	if (hp->n_rot < 0)
		hp->n_rot = hp->head_dim;
	if (hp->n_kv_head <= 0 || hp->n_head % hp->n_kv_head)
		return kb_fail(KB_ERR_FORMAT, "'%s': head_count %d is not a multiple of head_count_kv %d",
			       g->path, hp->n_head, hp->n_kv_head);
	if (hp->head_dim <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
		return kb_fail(KB_ERR_FORMAT, "'%s': rope dimension %d does not fit head size %d",
			       g->path, hp->n_rot, hp->head_dim);
	if (!(hp->norm_eps > 0 && hp->norm_eps < 1) || !(hp->rope_base > 1))
		return kb_fail(KB_ERR_FORMAT, "'%s': bad rms epsilon %g or rope base %g",
			       g->path, hp->norm_eps, hp->rope_base);

	/* RoPE scaling: "none", "linear" (positions / factor), "llama3" (frequency factors). */
	char key[128];
	struct gguf_str st = {0};
	float factor = 0;
	rc = gguf_get_str(g, akey(key, sizeof key, arch, "rope.scaling.type"), &st);
	if (rc < 0 && rc != KB_EOF)
		return rc;
	if ((rc = get_hp_f32(g, arch, "rope.scaling.factor", &factor)))
		return rc;
	if (factor == 0 && (rc = get_hp_f32(g, arch, "rope.scale_linear", &factor)))
		return rc;
	if ((rc = get_hp_u32(g, arch, "rope.scaling.original_context_length", &hp->rope_orig_ctx, false)))
		return rc;
	if (st.data == NULL || gguf_str_eq(st, "none")) {
		hp->rope_scaling = factor > 0 && factor != 1 && st.data == NULL ? ROPE_SCALING_LINEAR
									       : ROPE_SCALING_NONE;
	} else if (gguf_str_eq(st, "linear")) {
		hp->rope_scaling = ROPE_SCALING_LINEAR;
	} else if (gguf_str_eq(st, "llama3")) {
		hp->rope_scaling = ROPE_SCALING_LLAMA3;
	} else {
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': rope scaling '%.*s' is not supported",
			       g->path, (int)st.len, st.data);
	}
	if (hp->rope_scaling != ROPE_SCALING_NONE) {
		if (!(factor > 0))
			return kb_fail(KB_ERR_FORMAT, "'%s': rope scaling without a positive factor", g->path);
		hp->rope_factor = factor;
	}
	return load_arch_hparams(m, arch);
}

/* Find a tensor and check its type and shape (ne0 x ne1; ne1 = 1 for vectors). */
static int find_tensor(const struct gguf *g, const char *name, int64_t ne0, int64_t ne1,
		       const struct gguf_tensor **out, bool required)
{
	const struct gguf_tensor *t = gguf_find_tensor(g, name);
	*out = NULL;
	if (!t)
		return required ? kb_fail(KB_ERR_FORMAT, "'%s': missing tensor '%s'", g->path, name) : KB_OK;
	if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
		return kb_fail(KB_ERR_FORMAT, "'%s': tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
			       g->path, name, (long long)t->ne[0], (long long)t->ne[1],
			       (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)ne1);
	if (!qtype_traits(t->type))
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': tensor '%s' has type %s, which is not supported",
			       g->path, name, qtype_name(t->type));
	*out = t;
	return KB_OK;
}

int model_load_weight(const struct gguf *g, const char *name, int64_t n_in, int64_t n_out, struct weight *w)
{
	const struct gguf_tensor *t;
	int rc = find_tensor(g, name, n_in, n_out, &t, true);
	if (rc)
		return rc;
	*w = (struct weight){ .data = t->data, .type = t->type, .n_in = n_in, .n_out = n_out };
	return KB_OK;
}

int model_load_vec(const struct gguf *g, const char *name, int64_t n, float **out, bool required)
{
	const struct gguf_tensor *t;
	*out = NULL;
	int rc = find_tensor(g, name, n, 1, &t, required);
	if (rc || !t)
		return rc;
	float *v = kb_malloc((size_t)n * sizeof *v);
	if (!v)
		return KB_ERR_NOMEM;
	qtype_traits(t->type)->to_float(t->data, v, n);
	*out = v;
	return KB_OK;
}

/* Rows [r0, r0 + n) of w, used in place (a part of a fused matrix). */
static struct weight weight_rows(const struct weight *w, int64_t r0, int64_t n)
{
	const size_t row = qtype_row_size(w->type, w->n_in);
	return (struct weight){ .data = (const uint8_t *)w->data + (size_t)r0 * row, .type = w->type,
				.n_in = w->n_in, .n_out = n };
}

/* The two above on the model's file. */
static int load_weight(const struct model *m, const char *name, int64_t n_in, int64_t n_out,
		       struct weight *w)
{
	return model_load_weight(m->gguf, name, n_in, n_out, w);
}

static int load_vec(const struct model *m, const char *name, int64_t n, float **out, bool required)
{
	return model_load_vec(m->gguf, name, n, out, required);
}

static int load_tensors(struct model *m)
{
	const struct model_hparams *hp = &m->hp;
	const int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim,
		      kvd = (int64_t)hp->n_kv_head * hp->head_dim, ff = hp->n_ff;
	const struct gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
	int rc;
	if (!te)
		return kb_fail(KB_ERR_FORMAT, "'%s': missing tensor 'token_embd.weight'", m->gguf->path);
	if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
		return kb_fail(KB_ERR_FORMAT, "'%s': token_embd.weight has %lld rows", m->gguf->path,
			       (long long)te->ne[1]);
	m->hp.n_vocab = (int)te->ne[1];
	if ((rc = load_weight(m, "token_embd.weight", d, hp->n_vocab, &m->token_embd)) ||
	    (rc = load_vec(m, "output_norm.weight", d, &m->output_norm, true)))
		return rc;
	if (gguf_find_tensor(m->gguf, "output.weight")) {
		if ((rc = load_weight(m, "output.weight", d, hp->n_vocab, &m->output)))
			return rc;
	} else {
		m->hp.tied_output = true;
		m->output = m->token_embd;
	}
	m->layers = kb_calloc((size_t)hp->n_layer, sizeof *m->layers);
	if (!m->layers)
		return KB_ERR_NOMEM;
	for (int l = 0; l < hp->n_layer; l++) {
		struct model_layer *L = &m->layers[l];
		char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
		L->swa = hp->n_swa > 0 && (hp->swa_period == 0 || l % hp->swa_period < hp->swa_period - 1);
		if ((rc = load_vec(m, NAME("attn_norm.weight"), d, &L->attn_norm, true)) ||
		    (rc = load_weight(m, NAME("attn_output.weight"), qd, d, &L->wo)) ||
		    (rc = load_vec(m, NAME("ffn_norm.weight"), d, &L->ffn_norm, true)) ||
		    (rc = load_weight(m, NAME("ffn_down.weight"), ff, d, &L->w_down)))
			return rc;
		/* Phi-3 fuses Q, K, V into one matrix and gate, up into another: their
		 * rows are the parts one after another, so each part is a view of them */
		if (hp->arch == ARCH_PHI3 && gguf_find_tensor(m->gguf, NAME("attn_qkv.weight"))) {
			struct weight f;
			if ((rc = load_weight(m, n, d, qd + 2 * kvd, &f)))
				return rc;
			L->wq = weight_rows(&f, 0, qd);
			L->wk = weight_rows(&f, qd, kvd);
			L->wv = weight_rows(&f, qd + kvd, kvd);
		} else if ((rc = load_weight(m, NAME("attn_q.weight"), d, qd, &L->wq)) ||
			   (rc = load_weight(m, NAME("attn_k.weight"), d, kvd, &L->wk)) ||
			   (rc = load_weight(m, NAME("attn_v.weight"), d, kvd, &L->wv))) {
			return rc;
		}
		if (hp->arch == ARCH_PHI3) {
			struct weight f;
			if ((rc = load_weight(m, NAME("ffn_up.weight"), d, 2 * ff, &f)))
				return rc;
			L->w_gate = weight_rows(&f, 0, ff);
			L->w_up = weight_rows(&f, ff, ff);
		} else if ((rc = load_weight(m, NAME("ffn_gate.weight"), d, ff, &L->w_gate)) ||
			   (rc = load_weight(m, NAME("ffn_up.weight"), d, ff, &L->w_up))) {
			return rc;
		}
		if (hp->qk_norm &&
		    ((rc = load_vec(m, NAME("attn_q_norm.weight"), hp->head_dim, &L->q_norm, true)) ||
		     (rc = load_vec(m, NAME("attn_k_norm.weight"), hp->head_dim, &L->k_norm, true))))
			return rc;
		if (hp->post_norms &&
		    ((rc = load_vec(m, NAME("post_attention_norm.weight"), d, &L->attn_post_norm, true)) ||
		     (rc = load_vec(m, NAME("post_ffw_norm.weight"), d, &L->ffn_post_norm, true))))
			return rc;
		bool need_bias = hp->arch == ARCH_QWEN2;
		if ((rc = load_vec(m, NAME("attn_q.bias"), qd, &L->bq, need_bias)) ||
		    (rc = load_vec(m, NAME("attn_k.bias"), kvd, &L->bk, need_bias)) ||
		    (rc = load_vec(m, NAME("attn_v.bias"), kvd, &L->bv, need_bias)))
			return rc;
		if (L->bq || L->bk || L->bv)
			m->hp.qkv_bias = true;
#undef NAME
	}
	return KB_OK;
}

void rope_inv_freq(const struct model_hparams *hp, const float *freq_factors, float *inv_freq)
{
	const int half = hp->n_rot / 2;
	for (int i = 0; i < half; i++) {
		double f = pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
		if (freq_factors) { /* llama3's from the file, or Phi-3's LongRoPE factors */
			f /= freq_factors[i];
		} else if (hp->rope_scaling == ROPE_SCALING_LINEAR) {
			f /= hp->rope_factor;
		} else if (hp->rope_scaling == ROPE_SCALING_LLAMA3) {
			/* Llama 3.1's rule: low frequencies scaled by the factor, high ones
			 * kept, a smooth blend between (low_freq_factor 1, high 4). */
			const double lo = 1.0, hi = 4.0, orig = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : 8192;
			double wavelen = 2 * M_PI / f;
			if (wavelen > orig / lo) {
				f /= hp->rope_factor;
			} else if (wavelen >= orig / hi) {
				double smooth = (orig / wavelen - lo) / (hi - lo);
				f = (1 - smooth) * f / hp->rope_factor + smooth * f;
			}
		}
		inv_freq[i] = (float)f;
	}
}

/* The rotations: the global one (with llama3's frequency factors, or Phi-3's
 * short LongRoPE factors: kvblend keeps to contexts up to the original length,
 * where llama.cpp uses them too), and the sliding-window layers' own (Gemma:
 * another base, no scaling). */
static int load_rope(struct model *m)
{
	const int half = m->hp.n_rot / 2;
	float *ff = NULL;
	int rc;
	if (gguf_find_tensor(m->gguf, "rope_freqs.weight")) {
		if ((rc = load_vec(m, "rope_freqs.weight", half, &ff, true)))
			return rc;
		if (m->hp.rope_scaling == ROPE_SCALING_NONE)
			m->hp.rope_scaling = ROPE_SCALING_LLAMA3;
	} else if (m->hp.arch == ARCH_PHI3) {
		if ((rc = load_vec(m, "rope_factors_short.weight", half, &ff, false)))
			return rc;
		/* the long factors serve contexts past the original length, which we do not
		 * run: the model's context becomes that length (longer ones are refused by
		 * default, and run with the short factors when asked for) */
		if (ff && gguf_find_tensor(m->gguf, "rope_factors_long.weight") && m->hp.rope_orig_ctx > 0 &&
		    m->hp.n_ctx_train > m->hp.rope_orig_ctx)
			m->hp.n_ctx_train = m->hp.rope_orig_ctx;
	}
	m->rope_inv_freq = kb_malloc((size_t)2 * half * sizeof(float));
	if (!m->rope_inv_freq) {
		free(ff);
		return KB_ERR_NOMEM;
	}
	rope_inv_freq(&m->hp, ff, m->rope_inv_freq);
	free(ff);
	struct model_hparams swa = m->hp;
	swa.rope_base = m->hp.rope_base_swa;
	if (m->hp.arch == ARCH_GEMMA2 || m->hp.arch == ARCH_GEMMA3)
		swa.rope_scaling = ROPE_SCALING_NONE;
	if (swa.rope_base == m->hp.rope_base && swa.rope_scaling == m->hp.rope_scaling)
		memcpy(m->rope_inv_freq + half, m->rope_inv_freq, (size_t)half * sizeof(float));
	else
		rope_inv_freq(&swa, NULL, m->rope_inv_freq + half);
	m->rope = (struct kern_rope){ .mode = m->hp.rope_mode, .n_rot = m->hp.n_rot,
				      .inv_freq = m->rope_inv_freq };
	m->rope_swa = (struct kern_rope){ .mode = m->hp.rope_mode, .n_rot = m->hp.n_rot,
					  .inv_freq = m->rope_inv_freq + half };
	return KB_OK;
}

struct kern_att_opts model_att_opts(const struct model *m, int l)
{
	return (struct kern_att_opts){ .scale = m->hp.attn_scale, .softcap = m->hp.attn_softcap,
				       .window = m->layers[l].swa ? m->hp.n_swa : 0 };
}

size_t model_weights_wsize(const struct weight *const *w, size_t n, int n_batch)
{
	size_t mm = 0;
	for (size_t i = 0; i < n; i++) {
		size_t s = kern_matmul_wsize(w[i]->type, n_batch, (int)w[i]->n_in);
		mm = s > mm ? s : mm;
	}
	return mm;
}

int model_load_tokenizer(const struct gguf *g, int n_vocab, struct tok **out)
{
	int rc = tok_load(out, g);
	if (rc)
		return rc;
	if (tok_n_vocab(*out) > n_vocab) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': tokenizer has %d tokens but token_embd only %d rows", g->path,
			     tok_n_vocab(*out), n_vocab);
		tok_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Per weight type: time the one-token variants on one of its matrices (the
 * largest of the first layer's and the output's up to 8 MiB, else the
 * smallest), so decode runs the fastest on this machine. */
static int model_plan(struct model *m, const char *path)
{
	const struct model_layer *L = &m->layers[0];
	const struct weight *w[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down, &m->output };
	const size_t cap = 8u << 20;
	m->n_plan = 0;
	for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
		int t = w[i]->type, seen = 0;
		for (int k = 0; k < m->n_plan; k++)
			seen |= m->plan[k].wtype == t;
		if (seen || m->n_plan == (int)(sizeof m->plan / sizeof *m->plan))
			continue;
		const struct weight *best = NULL;
		size_t best_sz = 0;
		for (size_t j = i; j < sizeof w / sizeof *w; j++) {
			if (w[j]->type != t)
				continue;
			size_t sz = qtype_row_size(t, w[j]->n_in) * (size_t)w[j]->n_out;
			int better = !best || (sz <= cap ? best_sz > cap || sz > best_sz : best_sz > cap && sz < best_sz);
			if (better)
				best = w[j], best_sz = sz;
		}
		/* a variant timed on this machine before is taken again (wisdom.h),
		 * so every run here gives the same results bit for bit */
		struct kern_plan *p = &m->plan[m->n_plan++];
		const char *force = getenv("KVBLEND_MATVEC");
		char key[256], val[32];
		snprintf(key, sizeof key, "matvec\t%s\t%s\t%s", kern_cpu_name(), kern_isa(), qtype_traits(t)->name);
		if (!(force && *force) && !wisdom_get(key, val, sizeof val) && !kern_plan_use(t, val, p)) {
			p->recorded = 1;
			continue;
		}
		if (kern_plan_matvec(best->data, t, (int)best->n_in, (int)best->n_out, p))
			return kb_fail(KB_ERR_ARG, "'%s': KVBLEND_MATVEC=%s is not a variant this machine runs for %s "
				       "weights", path, force, qtype_traits(t)->name);
		if (!p->forced && p->n_cand > 1)
			(void)wisdom_put(key, p->isa); /* best effort: else timed again next time */
	}
	return KB_OK;
}

const char *model_plan_str(const struct model *m, char *buf, size_t n)
{
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; i < m->n_plan && o < n; i++) {
		const struct kern_plan *p = &m->plan[i];
		o += (size_t)snprintf(buf + o, n - o, "%s%s %s", i ? ", " : "", qtype_traits(p->wtype)->name, p->isa);
		if (p->forced && o < n)
			o += (size_t)snprintf(buf + o, n - o, " (KVBLEND_MATVEC)");
		if (p->recorded && o < n)
			o += (size_t)snprintf(buf + o, n - o, " (timed before: wisdom)");
		for (int c = 0; c < p->n_cand && o < n; c++)
			o += (size_t)snprintf(buf + o, n - o, "%s%s %.0f us%s", c ? ", " : " (", p->cand[c], p->us[c],
					      c == p->n_cand - 1 ? ")" : "");
	}
	return buf;
}

int model_load(struct model **out, const char *path)
{
	struct model *m = kb_calloc(1, sizeof *m);
	if (!m)
		return KB_ERR_NOMEM;
	kern_init();
	struct gguf_str arch;
	int rc = gguf_open_model(&m->gguf, path, &arch);
	if (rc)
		goto fail;
	for (enum model_arch a = ARCH_LLAMA; a <= ARCH_PHI3 && !m->hp.arch; a++)
		if (gguf_str_eq(arch, model_arch_name(a)))
			m->hp.arch = a;
	/* llama pairs dims (2i, 2i+1); every other family (i, i + n_rot/2) */
	m->hp.rope_mode = m->hp.arch == ARCH_LLAMA ? KERN_ROPE_NORM : KERN_ROPE_NEOX;
	if (!m->hp.arch) {
		rc = kb_fail(KB_ERR_UNSUPPORTED, "'%s': architecture '%.*s' is not supported "
			     "(llama, qwen2, qwen3, gemma2, gemma3, phi3)",
			     path, (int)(arch.len > 64 ? 64 : arch.len), arch.data);
		goto fail;
	}
	if ((rc = load_hparams(m, model_arch_name(m->hp.arch))) || (rc = load_tensors(m)) ||
	    (rc = load_rope(m)))
		goto fail;
	if ((rc = model_load_tokenizer(m->gguf, m->hp.n_vocab, &m->tok)) || (rc = model_plan(m, path)))
		goto fail;
	gguf_fingerprint(m->gguf, m->fingerprint);
	gguf_tokenizer_fingerprint(m->gguf, m->tok_fingerprint);
	*out = m;
	return KB_OK;
fail:
	model_free(m);
	return rc;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	if (m->layers) {
		for (int l = 0; l < m->hp.n_layer; l++) {
			struct model_layer *L = &m->layers[l];
			free(L->attn_norm);
			free(L->ffn_norm);
			free(L->bq);
			free(L->bk);
			free(L->bv);
			free(L->q_norm);
			free(L->k_norm);
			free(L->attn_post_norm);
			free(L->ffn_post_norm);
		}
	}
	free(m->layers);
	free(m->output_norm);
	free(m->rope_inv_freq);
	tok_free(m->tok);
	gguf_close(m->gguf);
	free(m);
}

/* ---- KV cache and workspace ---- */

int kv_cache_init(struct kv_cache *kv, const struct model *m, int n_ctx)
{
	return kv_cache_init_shape(kv, m->hp.n_layer, m->hp.n_kv_head, m->hp.head_dim, n_ctx);
}

int kv_cache_init_shape(struct kv_cache *kv, int n_layer, int n_kv_head, int head_dim, int n_ctx)
{
	memset(kv, 0, sizeof *kv);
	if (n_ctx <= 0)
		return kb_fail(KB_ERR_ARG, "context size %d must be positive", n_ctx);
	kv->n_layer = n_layer;
	kv->n_ctx = n_ctx;
	kv->kv_dim = n_kv_head * head_dim;
	kv->n_kv_head = n_kv_head;
	size_t n = (size_t)kv->n_layer * n_ctx * kv->kv_dim;
	kv->k = kb_aligned_alloc(64, n * sizeof(float));
	kv->v = kb_aligned_alloc(64, n * sizeof(float));
	kv->pos = kb_calloc((size_t)n_ctx, sizeof *kv->pos);
	kv->tok = kb_calloc((size_t)n_ctx, sizeof *kv->tok);
	if (!kv->k || !kv->v || !kv->pos || !kv->tok) {
		kv_cache_free(kv);
		return KB_ERR_NOMEM;
	}
	return KB_OK;
}

void kv_cache_free(struct kv_cache *kv)
{
	free(kv->k);
	free(kv->v);
	free(kv->pos);
	free(kv->tok);
	free(kv->hpos);
	memset(kv, 0, sizeof *kv);
}

void kv_cache_shared_pos(struct kv_cache *kv)
{
	free(kv->hpos);
	kv->hpos = NULL;
}

int kv_cache_per_head(struct kv_cache *kv)
{
	if (kv->hpos)
		return KB_OK;
	if (!(kv->hpos = kb_malloc((size_t)kv->n_layer * kv->n_kv_head * kv->n_ctx * sizeof *kv->hpos)))
		return KB_ERR_NOMEM;
	for (int l = 0; l < kv->n_layer; l++)
		for (int h = 0; h < kv->n_kv_head; h++)
			memcpy(kv_hpos(kv, l, h), kv->pos, (size_t)kv->n * sizeof *kv->pos);
	return KB_OK;
}

int model_ws_init(struct model_ws *ws, const struct model *m, int n_batch, int n_ctx)
{
	const struct model_hparams *hp = &m->hp;
	memset(ws, 0, sizeof *ws);
	if (n_batch <= 0 || n_ctx <= 0)
		return kb_fail(KB_ERR_ARG, "batch %d and context %d must be positive", n_batch, n_ctx);
	ws->n_batch = n_batch;
	ws->n_ctx = n_ctx;
	const size_t nb = (size_t)n_batch, qd = (size_t)hp->n_head * hp->head_dim,
		     kvd = (size_t)hp->n_kv_head * hp->head_dim;
	size_t mm = kern_matmul_wsize(m->output.type, n_batch, (int)m->output.n_in);
	for (int l = 0; l < hp->n_layer; l++) {
		const struct model_layer *L = &m->layers[l];
		const struct weight *w[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
		size_t s = model_weights_wsize(w, sizeof w / sizeof *w, n_batch);
		mm = s > mm ? s : mm;
	}
#define ALLOC(p, count) ((p) = kb_aligned_alloc(64, (count) * sizeof *(p)))
	if (!ALLOC(ws->x, nb * hp->n_embd) || !ALLOC(ws->xb, nb * hp->n_embd) ||
	    !ALLOC(ws->q, nb * qd) || !ALLOC(ws->k, nb * kvd) || !ALLOC(ws->v, nb * kvd) ||
	    !ALLOC(ws->att, nb * qd) || !ALLOC(ws->hb, nb * hp->n_ff) || !ALLOC(ws->hb2, nb * hp->n_ff) ||
	    !ALLOC(ws->logits, (size_t)hp->n_vocab) || !ALLOC(ws->slots, nb) || !ALLOC(ws->rpos, nb) ||
	    !(ws->mm_ws = kb_aligned_alloc(64, mm ? mm : 64)) ||
	    !(ws->att_ws = kb_aligned_alloc(64, kern_attention_wsize(n_batch, n_ctx, hp->n_head)))) {
		model_ws_free(ws);
		return KB_ERR_NOMEM;
	}
#undef ALLOC
	return KB_OK;
}

void model_ws_free(struct model_ws *ws)
{
	free(ws->x);
	free(ws->xb);
	free(ws->q);
	free(ws->k);
	free(ws->v);
	free(ws->att);
	free(ws->hb);
	free(ws->hb2);
	free(ws->logits);
	free(ws->slots);
	free(ws->rpos);
	free(ws->mm_ws);
	free(ws->att_ws);
	memset(ws, 0, sizeof *ws);
}

/* ---- forward pass ---- */

static void matmul(float *y, const float *x, const struct weight *w, int n, void *mm_ws)
{
	kern_matmul(y, x, w->data, w->type, n, (int)w->n_in, (int)w->n_out, mm_ws);
}

static void add_bias(float *y, const float *b, int n_rows, int n)
{
	if (!b)
		return;
	for (int r = 0; r < n_rows; r++)
		for (int i = 0; i < n; i++)
			y[(size_t)r * n + i] += b[i];
}

void model_embed(const struct model *m, const int32_t *tokens, int n, float *x)
{
	const struct weight *e = &m->token_embd;
	const struct qtype_traits *tr = qtype_traits(e->type);
	const size_t row = qtype_row_size(e->type, e->n_in);
	for (int i = 0; i < n; i++)
		tr->to_float((const uint8_t *)e->data + (size_t)tokens[i] * row,
			     x + (size_t)i * m->hp.n_embd, e->n_in);
	if (m->hp.embd_scale > 0)
		for (size_t i = 0; i < (size_t)n * m->hp.n_embd; i++)
			x[i] *= m->hp.embd_scale;
}

/* Phi-3's LongRoPE magnitude on the rotated dims of n rows of n_head heads. */
static void rope_mscale(float *x, int n, int n_head, int head_dim, int n_rot, float s)
{
	for (int r = 0; r < n * n_head; r++)
		for (int i = 0; i < n_rot; i++)
			x[(size_t)r * head_dim + i] *= s;
}

/* Layer l's attention inputs for n rows: RMSNorm, the K and V projections
 * (+ bias) rotated K and V written into the rows' cache slots, and, with
 * want_q, the rotated queries in ws->q. ws->rpos receives the rows' positions. */
static void layer_qkv(const struct model *m, struct model_ws *ws, int l, const float *x,
		      const int32_t *slots, int n, struct kv_cache *kv, bool want_q)
{
	const struct model_hparams *hp = &m->hp;
	const struct model_layer *L = &m->layers[l];
	const int d = hp->n_embd, qd = hp->n_head * hp->head_dim, kvd = kv->kv_dim;
	ASSERT(n <= ws->n_batch);

	kern_rmsnorm(ws->xb, x, L->attn_norm, n, d, hp->norm_eps);
	if (want_q) {
		matmul(ws->q, ws->xb, &L->wq, n, ws->mm_ws);
		add_bias(ws->q, L->bq, n, qd);
	}
	matmul(ws->k, ws->xb, &L->wk, n, ws->mm_ws);
	matmul(ws->v, ws->xb, &L->wv, n, ws->mm_ws);
	add_bias(ws->k, L->bk, n, kvd);
	add_bias(ws->v, L->bv, n, kvd);
	if (L->q_norm) { /* qwen3, gemma3: each head normalised on its own */
		if (want_q)
			kern_rmsnorm(ws->q, ws->q, L->q_norm, n * hp->n_head, hp->head_dim, hp->norm_eps);
		kern_rmsnorm(ws->k, ws->k, L->k_norm, n * hp->n_kv_head, hp->head_dim, hp->norm_eps);
	}

	/* RoPE relative positional encoding on Q and K at each row's position */
	int32_t *qpos = ws->rpos;
	for (int i = 0; i < n; i++)
		qpos[i] = kv->pos[slots[i]];
	if (want_q)
		kern_rope(ws->q, qpos, n, hp->n_head, hp->head_dim, model_rope(m, l));
	kern_rope(ws->k, qpos, n, hp->n_kv_head, hp->head_dim, model_rope(m, l));
	if (hp->rope_mscale != 1.0f) {
		if (want_q)
			rope_mscale(ws->q, n, hp->n_head, hp->head_dim, hp->n_rot, hp->rope_mscale);
		rope_mscale(ws->k, n, hp->n_kv_head, hp->head_dim, hp->n_rot, hp->rope_mscale);
	}
	if (want_q && ws->q_probe && n > 0)
		memcpy(ws->q_probe + (size_t)l * qd, ws->q + (size_t)(n - 1) * qd, (size_t)qd * sizeof(float));

	/* the rows' K and V go into their cache slots */
	for (int i = 0; i < n; i++) {
		memcpy(kv_k(kv, l, slots[i]), ws->k + (size_t)i * kvd, (size_t)kvd * sizeof(float));
		memcpy(kv_v(kv, l, slots[i]), ws->v + (size_t)i * kvd, (size_t)kvd * sizeof(float));
	}
	if (kv->hpos)
		for (int h = 0; h < hp->n_kv_head; h++)
			for (int i = 0; i < n; i++)
				kv_hpos(kv, l, h)[slots[i]] = qpos[i];
}

void model_layer_kv(const struct model *m, struct model_ws *ws, int l, const float *x,
		    const int32_t *slots, int n, struct kv_cache *kv)
{
	layer_qkv(m, ws, l, x, slots, n, kv, false);
}

void model_layer_seqs(const struct model *m, struct model_ws *ws, int l, float *x,
		      const int32_t *slots, int n, struct kv_cache *kv,
		      const struct model_seq *seqs, int n_seqs)
{
	const struct model_hparams *hp = &m->hp;
	const struct model_layer *L = &m->layers[l];
	const int d = hp->n_embd, qd = hp->n_head * hp->head_dim, kvd = kv->kv_dim;
	const int32_t *qpos = ws->rpos;
	const struct kern_att_opts ao = model_att_opts(m, l);

	layer_qkv(m, ws, l, x, slots, n, kv, true);

	/* multi-head attention of each sequence's rows over its slots, causal by position */
	for (int s = 0; s < n_seqs; s++) {
		const struct model_seq *q = &seqs[s];
		ASSERT(q->row0 >= 0 && q->row0 + q->n_rows <= n && q->slot0 >= 0 &&
		       q->slot0 + q->n_slots <= kv->n_ctx && q->n_slots <= ws->n_ctx);
		if (!kv->hpos && ws->ape) { /* APE: the parallel context's share corrected */
			struct kern_ape ape = *ws->ape;
			ape.ctx0 -= q->slot0, ape.ctx1 -= q->slot0;
			kern_attention_ape(ws->att + (size_t)q->row0 * qd, ws->q + (size_t)q->row0 * qd, qd,
					   kv_k(kv, l, q->slot0), kv_v(kv, l, q->slot0), kvd, qpos + q->row0,
					   kv->pos + q->slot0, q->n_rows, q->n_slots, hp->n_head, hp->n_kv_head,
					   hp->head_dim, &ape, ws->att_ws);
			continue;
		}
		/* a token-evicted cache (hpos): each kv head, with its query heads, masks by its own positions */
		kern_attention_ex(ws->att + (size_t)q->row0 * qd, ws->q + (size_t)q->row0 * qd, qd,
				  kv_k(kv, l, q->slot0), kv_v(kv, l, q->slot0), kvd, qpos + q->row0,
				  kv->hpos ? kv_hpos(kv, l, 0) + q->slot0 : kv->pos + q->slot0,
				  kv->hpos ? kv->n_ctx : 0, q->n_rows, q->n_slots, hp->n_head, hp->n_kv_head,
				  hp->head_dim, &ao, ws->att_ws);
	}

	/* output projection (gemma: normed) and residual */
	matmul(ws->xb, ws->att, &L->wo, n, ws->mm_ws);
	if (L->attn_post_norm)
		kern_rmsnorm(ws->xb, ws->xb, L->attn_post_norm, n, d, hp->norm_eps);
	for (size_t i = 0; i < (size_t)n * d; i++)
		x[i] += ws->xb[i];

	/* feed-forward: RMSNorm, SwiGLU (gemma: GeGLU), down projection (gemma: normed), residual */
	kern_rmsnorm(ws->xb, x, L->ffn_norm, n, d, hp->norm_eps);
	matmul(ws->hb, ws->xb, &L->w_gate, n, ws->mm_ws);
	matmul(ws->hb2, ws->xb, &L->w_up, n, ws->mm_ws);
	if (hp->gelu) {
		kern_gelu(ws->hb, ws->hb, (int64_t)n * hp->n_ff);
		for (size_t i = 0; i < (size_t)n * hp->n_ff; i++)
			ws->hb[i] *= ws->hb2[i];
	} else {
		kern_swiglu(ws->hb, ws->hb, ws->hb2, (int64_t)n * hp->n_ff);
	}
	matmul(ws->xb, ws->hb, &L->w_down, n, ws->mm_ws);
	if (L->ffn_post_norm)
		kern_rmsnorm(ws->xb, ws->xb, L->ffn_post_norm, n, d, hp->norm_eps);
	for (size_t i = 0; i < (size_t)n * d; i++)
		x[i] += ws->xb[i];
}

void model_layer(const struct model *m, struct model_ws *ws, int l, float *x,
		 const int32_t *slots, int n, struct kv_cache *kv, int n_kv)
{
	struct model_seq all = { .row0 = 0, .n_rows = n, .slot0 = 0, .n_slots = n_kv };
	model_layer_seqs(m, ws, l, x, slots, n, kv, &all, 1);
}

void model_logits(const struct model *m, struct model_ws *ws, const float *x, int n, float *logits)
{
	ASSERT(n <= ws->n_batch);
	kern_rmsnorm(ws->xb, x, m->output_norm, n, m->hp.n_embd, m->hp.norm_eps);
	matmul(logits, ws->xb, &m->output, n, ws->mm_ws);
	const float cap = m->hp.final_softcap;
	if (cap > 0)
		for (size_t i = 0; i < (size_t)n * m->hp.n_vocab; i++)
			logits[i] = cap * tanhf(logits[i] / cap);
}

int model_forward(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		  const int32_t *tokens, const int32_t *pos, int n, float *logits, bool all_logits)
{
	const int d = m->hp.n_embd, nv = m->hp.n_vocab;
	if (n <= 0)
		return kb_fail(KB_ERR_ARG, "no tokens to run");
	if (n > kv->n_ctx - kv->n || kv->n + n > ws->n_ctx)
		return kb_fail(KB_ERR_ARG, "context is full (%d tokens of %d, %d more needed)",
			       kv->n, kv->n_ctx < ws->n_ctx ? kv->n_ctx : ws->n_ctx, n);
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= nv)
			return kb_fail(KB_ERR_ARG, "token id %d is out of range (vocabulary %d)", tokens[i], nv);
	for (int b0 = 0; b0 < n; b0 += ws->n_batch) {
		const int nb = n - b0 < ws->n_batch ? n - b0 : ws->n_batch;
		for (int i = 0; i < nb; i++) {
			ws->slots[i] = kv->n + i;
			kv->pos[kv->n + i] = pos[b0 + i];
			kv->tok[kv->n + i] = tokens[b0 + i];
		}
		model_embed(m, tokens + b0, nb, ws->x);
		for (int l = 0; l < m->hp.n_layer; l++)
			model_layer(m, ws, l, ws->x, ws->slots, nb, kv, kv->n + nb);
		kv->n += nb;
		const bool last = b0 + nb == n;
		if (all_logits)
			model_logits(m, ws, ws->x, nb, logits + (size_t)b0 * nv);
		else if (last && logits)
			model_logits(m, ws, ws->x + (size_t)(nb - 1) * d, 1, logits);
	}
	return KB_OK;
}

int model_forward_seqs(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		       const int32_t *tokens, const int32_t *pos, const int *seq_len, int n_seqs,
		       float *logits)
{
	const int d = m->hp.n_embd, nv = m->hp.n_vocab;
	int n = 0;
	for (int s = 0; s < n_seqs; s++) {
		if (seq_len[s] <= 0)
			return kb_fail(KB_ERR_ARG, "sequence %d is empty", s);
		if (seq_len[s] > ws->n_ctx)
			return kb_fail(KB_ERR_ARG, "sequence %d of %d tokens exceeds the context of %d", s,
				       seq_len[s], ws->n_ctx);
		n += seq_len[s];
	}
	if (n > kv->n_ctx - kv->n)
		return kb_fail(KB_ERR_ARG, "context is full (%d tokens of %d, %d more needed)", kv->n,
			       kv->n_ctx, n);
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= nv)
			return kb_fail(KB_ERR_ARG, "token id %d is out of range (vocabulary %d)", tokens[i], nv);
	struct model_seq segs[64];
	int seg_ends[64]; /* the sequence a segment completes, or -1 */
	const int base = kv->n;
	int s = 0, s_off = 0; /* current sequence, and rows of it already run */
	int seq_slot0 = base;
	for (int b0 = 0; b0 < n;) {
		/* one batch: whole sequences, or the next piece of a long one */
		int nb = 0, n_segs = 0;
		while (s < n_seqs && nb < ws->n_batch && n_segs < 64) {
			int take = seq_len[s] - s_off;
			if (take > ws->n_batch - nb)
				take = ws->n_batch - nb;
			segs[n_segs++] = (struct model_seq){ .row0 = nb, .n_rows = take, .slot0 = seq_slot0,
							      .n_slots = s_off + take };
			nb += take;
			s_off += take;
			seg_ends[n_segs - 1] = s_off == seq_len[s] ? s : -1;
			if (s_off == seq_len[s]) {
				seq_slot0 += seq_len[s];
				s++;
				s_off = 0;
			}
		}
		for (int i = 0; i < nb; i++) {
			ws->slots[i] = base + b0 + i;
			kv->pos[base + b0 + i] = pos[b0 + i];
			kv->tok[base + b0 + i] = tokens[b0 + i];
		}
		model_embed(m, tokens + b0, nb, ws->x);
		for (int l = 0; l < m->hp.n_layer; l++)
			model_layer_seqs(m, ws, l, ws->x, ws->slots, nb, kv, segs, n_segs);
		/* logits of the last token of each sequence completed in this batch */
		for (int g = 0; logits && g < n_segs; g++)
			if (seg_ends[g] >= 0)
				model_logits(m, ws, ws->x + (size_t)(segs[g].row0 + segs[g].n_rows - 1) * d, 1,
					     logits + (size_t)seg_ends[g] * nv);
		b0 += nb;
	}
	kv->n += n;
	return KB_OK;
}
