/* embedder.c — see embedder.h. The decoder path: the texts of a batch run as
 * independent sequences through every layer (model_layer_seqs), the last
 * hidden state is normed (the model's output norm) and pooled per text. */
#include "embedder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"
#include "model.h"

#define EMB_MAX_TOKENS 512   /* a text is cut to this many tokens (or the model's context) */
#define EMB_BATCH_TOKENS 2048 /* tokens run together */

enum pool { POOL_MEAN, POOL_CLS, POOL_LAST };

struct embedder {
	struct model *m;      /* owned */
	enum pool pool;
	int max_tokens;       /* per text */
	char space[65];       /* hex of SHA-256(model fingerprint || pooling name) */
	char describe[512];
	struct model_ws ws;   /* sized for EMB_BATCH_TOKENS rows */
	struct kv_cache kv;
	float *x;             /* [EMB_BATCH_TOKENS][n_embd] */
	int32_t *tok, *slots; /* [EMB_BATCH_TOKENS] */
};

static const char *pool_name(enum pool p)
{
	return p == POOL_MEAN ? "mean" : p == POOL_CLS ? "cls" : "last";
}

int embedder_open(struct embedder **out, const char *path, const char *pool)
{
	*out = NULL;
	struct embedder *e = kb_calloc(1, sizeof *e);
	if (!e)
		return KB_ERR_NOMEM;
	int rc = model_load(&e->m, path);
	if (rc) {
		free(e);
		return rc;
	}
	if (!pool || !strcmp(pool, "mean")) {
		e->pool = POOL_MEAN;
	} else if (!strcmp(pool, "last")) {
		e->pool = POOL_LAST;
	} else {
		embedder_free(e);
		return kb_fail(KB_ERR_ARG, "'%s': pooling '%s' does not suit a decoder (mean or last)", path, pool);
	}
	const struct model_hparams *hp = &e->m->hp;
	e->max_tokens = hp->n_ctx_train > 0 && hp->n_ctx_train < EMB_MAX_TOKENS ? hp->n_ctx_train : EMB_MAX_TOKENS;
	struct sha256 s;
	uint8_t h[32];
	sha256_init(&s);
	sha256_update(&s, e->m->fingerprint, 32);
	sha256_update(&s, pool_name(e->pool), strlen(pool_name(e->pool)));
	sha256_final(&s, h);
	hash_hex(h, 32, e->space);
	const char *base = strrchr(path, '/');
	snprintf(e->describe, sizeof e->describe, "%s, %d-d, %s pooling, %s", model_arch_name(hp->arch), hp->n_embd,
		 pool_name(e->pool), base ? base + 1 : path);
	e->x = kb_malloc((size_t)EMB_BATCH_TOKENS * (size_t)hp->n_embd * sizeof *e->x);
	e->tok = kb_malloc(EMB_BATCH_TOKENS * sizeof *e->tok);
	e->slots = kb_malloc(EMB_BATCH_TOKENS * sizeof *e->slots);
	if (!e->x || !e->tok || !e->slots || (rc = model_ws_init(&e->ws, e->m, EMB_BATCH_TOKENS, EMB_BATCH_TOKENS)) ||
	    (rc = kv_cache_init(&e->kv, e->m, EMB_BATCH_TOKENS))) {
		embedder_free(e);
		return rc ? rc : KB_ERR_NOMEM;
	}
	*out = e;
	return KB_OK;
}

void embedder_free(struct embedder *e)
{
	if (!e)
		return;
	if (e->ws.x)
		model_ws_free(&e->ws);
	if (e->kv.k)
		kv_cache_free(&e->kv);
	model_free(e->m);
	free(e->x);
	free(e->tok);
	free(e->slots);
	free(e);
}

int embedder_dim(const struct embedder *e)
{
	return e->m->hp.n_embd;
}

const char *embedder_space(const struct embedder *e)
{
	return e->space;
}

const char *embedder_describe(const struct embedder *e)
{
	return e->describe;
}

static void l2_normalize(float *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
	for (int i = 0; i < n; i++)
		v[i] *= inv;
}

/* Run the sequences seqs[0..n_seqs) (tokens already in e->tok, 0..n_tok) and
 * pool each into out[first + s]. */
static void run_batch(struct embedder *e, const struct model_seq *seqs, int n_seqs, int n_tok, float *out)
{
	const struct model *m = e->m;
	const int d = m->hp.n_embd;
	for (int s = 0; s < n_seqs; s++)
		for (int i = 0; i < seqs[s].n_rows; i++) {
			int slot = seqs[s].slot0 + i;
			e->kv.pos[slot] = i;
			e->kv.tok[slot] = e->tok[slot];
			e->slots[slot] = slot;
		}
	e->kv.n = n_tok;
	model_embed(m, e->tok, n_tok, e->x);
	for (int l = 0; l < m->hp.n_layer; l++)
		model_layer_seqs(m, &e->ws, l, e->x, e->slots, n_tok, &e->kv, seqs, n_seqs);
	kern_rmsnorm(e->x, e->x, m->output_norm, n_tok, d, m->hp.norm_eps);
	for (int s = 0; s < n_seqs; s++) {
		float *v = out + (size_t)s * d;
		const float *x = e->x + (size_t)seqs[s].row0 * d;
		int n = seqs[s].n_rows;
		if (e->pool == POOL_LAST) {
			memcpy(v, x + (size_t)(n - 1) * d, (size_t)d * sizeof *v);
		} else {
			memset(v, 0, (size_t)d * sizeof *v);
			for (int i = 0; i < n; i++)
				for (int j = 0; j < d; j++)
					v[j] += x[(size_t)i * d + j];
			for (int j = 0; j < d; j++)
				v[j] /= (float)n;
		}
		l2_normalize(v, d);
	}
}

int embedder_run(struct embedder *e, const char *const *texts, int n, float *out)
{
	const int d = e->m->hp.n_embd;
	struct model_seq seqs[64];
	int n_seqs = 0, n_tok = 0, first = 0;
	for (int t = 0; t < n; t++) {
		int32_t *ids;
		size_t len;
		int rc = tok_encode(e->m->tok, texts[t], strlen(texts[t]), tok_add_bos(e->m->tok), false, &ids, &len);
		if (rc)
			return rc;
		if (len == 0) {
			free(ids);
			return kb_fail(KB_ERR_ARG, "a text has no tokens");
		}
		int take = len > (size_t)e->max_tokens ? e->max_tokens : (int)len;
		if (n_tok + take > EMB_BATCH_TOKENS || n_seqs == 64) {
			run_batch(e, seqs, n_seqs, n_tok, out + (size_t)first * d);
			first = t, n_seqs = 0, n_tok = 0;
		}
		memcpy(e->tok + n_tok, ids, (size_t)take * sizeof *ids);
		free(ids);
		seqs[n_seqs++] = (struct model_seq){ .row0 = n_tok, .n_rows = take, .slot0 = n_tok, .n_slots = take };
		n_tok += take;
	}
	if (n_seqs)
		run_batch(e, seqs, n_seqs, n_tok, out + (size_t)first * d);
	return KB_OK;
}
