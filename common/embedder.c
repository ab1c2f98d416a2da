/* embedder.c — see embedder.h. Two paths, chosen by general.architecture:
 *   bert: the texts of a batch run as sequences of one bert_forward pass (each
 *         attends within itself); the last hidden states are pooled per text.
 *   llama/qwen2: the texts run as independent sequences through every layer
 *         (model_layer_seqs), the last hidden state is normed (the model's
 *         output norm) and pooled per text. */
#include "embedder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bert.h"
#include "hash.h"
#include "model.h"

#define EMB_MAX_TOKENS 512   /* a text is cut to this many tokens (or the model's context) */
#define EMB_BATCH_TOKENS 2048 /* tokens run together */
#define EMB_MAX_SEQS 64       /* texts run together */

enum pool { POOL_MEAN, POOL_CLS, POOL_LAST };

struct embedder {
	struct bert *b;       /* owned: a BERT encoder, or */
	struct model *m;      /* owned: a decoder */
	struct bert_ws bws;   /* bert: sized for EMB_BATCH_TOKENS rows */
	int n_embd;
	enum pool pool;
	int max_tokens;       /* per text */
	char space[65];       /* hex of SHA-256(model fingerprint || pooling name [|| passage prefix]) */
	char *passage_prefix; /* owned, NULL for none: put before every passage */
	char *query_prefix;   /* owned, NULL for none: put before every query */
	char describe[512];
	struct model_ws ws;   /* decoder: sized for EMB_BATCH_TOKENS rows */
	struct kv_cache kv;   /* decoder */
	float *x;             /* [EMB_BATCH_TOKENS][n_embd] hidden states */
	int32_t *tok;         /* [EMB_BATCH_TOKENS] */
	int32_t *slots;       /* decoder: [EMB_BATCH_TOKENS] */
};

static const char *pool_name(enum pool p)
{
	return p == POOL_MEAN ? "mean" : p == POOL_CLS ? "cls" : "last";
}

/* The pooling of a BERT file: pool, else its bert.pooling_type, else mean. */
static int bert_pool(const struct bert *b, const char *path, const char *pool, enum pool *out)
{
	if (pool && !strcmp(pool, "mean")) {
		*out = POOL_MEAN;
	} else if (pool && !strcmp(pool, "cls")) {
		*out = POOL_CLS;
	} else if (pool) {
		return kb_fail(KB_ERR_ARG, "'%s': pooling '%s' does not suit a BERT encoder (mean or cls)", path, pool);
	} else if (b->hp.pooling < 0 || b->hp.pooling == BERT_POOL_NONE || b->hp.pooling == BERT_POOL_MEAN) {
		*out = POOL_MEAN; /* none (token vectors) or unsaid: mean, sentence-transformers' default */
	} else if (b->hp.pooling == BERT_POOL_CLS) {
		*out = POOL_CLS;
	} else {
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': bert.pooling_type %d is not supported (1 mean, 2 cls); "
			       "give --pool mean or cls", path, b->hp.pooling);
	}
	return KB_OK;
}

static int open_bert(struct embedder *e, const char *path, const char *pool)
{
	int rc = bert_load(&e->b, path);
	if (rc || (rc = bert_pool(e->b, path, pool, &e->pool)))
		return rc;
	e->n_embd = e->b->hp.n_embd;
	e->max_tokens = e->b->hp.n_ctx_train < EMB_MAX_TOKENS ? e->b->hp.n_ctx_train : EMB_MAX_TOKENS;
	return bert_ws_init(&e->bws, e->b, EMB_BATCH_TOKENS);
}

static int open_decoder(struct embedder *e, const char *path, const char *pool)
{
	int rc = model_load(&e->m, path);
	if (rc)
		return rc;
	if (!pool || !strcmp(pool, "mean"))
		e->pool = POOL_MEAN;
	else if (!strcmp(pool, "last"))
		e->pool = POOL_LAST;
	else
		return kb_fail(KB_ERR_ARG, "'%s': pooling '%s' does not suit a decoder (mean or last)", path, pool);
	const struct model_hparams *hp = &e->m->hp;
	e->n_embd = hp->n_embd;
	e->max_tokens = hp->n_ctx_train > 0 && hp->n_ctx_train < EMB_MAX_TOKENS ? hp->n_ctx_train : EMB_MAX_TOKENS;
	e->slots = kb_malloc(EMB_BATCH_TOKENS * sizeof *e->slots);
	if (!e->slots)
		return KB_ERR_NOMEM;
	if ((rc = model_ws_init(&e->ws, e->m, EMB_BATCH_TOKENS, EMB_BATCH_TOKENS)) ||
	    (rc = kv_cache_init(&e->kv, e->m, EMB_BATCH_TOKENS)))
		return rc;
	return KB_OK;
}

/* Whether path is a bert GGUF (peeked; errors are left to the loaders). */
static bool is_bert(const char *path)
{
	struct gguf *g;
	struct gguf_str arch;
	if (gguf_open_model(&g, path, &arch))
		return false;
	bool yes = gguf_str_eq(arch, "bert");
	gguf_close(g);
	return yes;
}

/* The space: the model (its fingerprint covers the architecture, hyper-parameters
 * and tensor table), the pooling, and a passage prefix when there is one. */
static void name_space(struct embedder *e)
{
	const uint8_t *fp = e->b ? e->b->fingerprint : e->m->fingerprint;
	struct sha256 s;
	uint8_t h[32];
	sha256_init(&s);
	sha256_update(&s, fp, 32);
	sha256_update(&s, pool_name(e->pool), strlen(pool_name(e->pool)));
	if (e->passage_prefix) {
		static const char tag[] = "\0passage prefix\0";
		sha256_update(&s, tag, sizeof tag - 1);
		sha256_update(&s, e->passage_prefix, strlen(e->passage_prefix));
	}
	sha256_final(&s, h);
	hash_hex(h, 32, e->space);
}

int embedder_set_prefixes(struct embedder *e, const char *passage, const char *query)
{
	char *p = passage && *passage ? strdup(passage) : NULL, *q = query && *query ? strdup(query) : NULL;
	if ((passage && *passage && !p) || (query && *query && !q)) {
		free(p);
		free(q);
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	}
	free(e->passage_prefix);
	free(e->query_prefix);
	e->passage_prefix = p, e->query_prefix = q;
	name_space(e);
	return KB_OK;
}

int embedder_open(struct embedder **out, const char *path, const char *pool)
{
	*out = NULL;
	struct embedder *e = kb_calloc(1, sizeof *e);
	if (!e)
		return KB_ERR_NOMEM;
	int rc = is_bert(path) ? open_bert(e, path, pool) : open_decoder(e, path, pool);
	if (!rc && !((e->x = kb_malloc((size_t)EMB_BATCH_TOKENS * (size_t)e->n_embd * sizeof *e->x)) &&
		     (e->tok = kb_malloc(EMB_BATCH_TOKENS * sizeof *e->tok))))
		rc = KB_ERR_NOMEM;
	if (rc) {
		embedder_free(e);
		return rc;
	}
	name_space(e);
	const char *base = strrchr(path, '/');
	snprintf(e->describe, sizeof e->describe, "%s, %d-d, %s pooling, %s",
		 e->b ? "bert" : model_arch_name(e->m->hp.arch), e->n_embd, pool_name(e->pool), base ? base + 1 : path);
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
	if (e->bws.xb)
		bert_ws_free(&e->bws);
	model_free(e->m);
	bert_free(e->b);
	free(e->x);
	free(e->tok);
	free(e->slots);
	free(e->passage_prefix);
	free(e->query_prefix);
	free(e);
}

int embedder_dim(const struct embedder *e)
{
	return e->n_embd;
}

const char *embedder_space(const struct embedder *e)
{
	return e->space;
}

const char *embedder_describe(const struct embedder *e)
{
	return e->describe;
}

/* v / |v| (a zero vector stays zero). Divided in double: the reciprocal of a
 * tiny norm would overflow a float. */
static void l2_normalize(float *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	if (s == 0)
		return;
	double norm = sqrt(s);
	for (int i = 0; i < n; i++)
		v[i] = (float)(v[i] / norm);
}

/* Pool the n rows of hidden states x [n][d] into v, L2-normalized. */
static void pool_rows(enum pool p, const float *x, int n, int d, float *v)
{
	if (p == POOL_LAST || p == POOL_CLS) {
		memcpy(v, x + (size_t)(p == POOL_LAST ? n - 1 : 0) * d, (size_t)d * sizeof *v);
	} else {
		/* every token, [CLS] and [SEP] included: sentence-transformers' mean over the
		 * attention mask, which covers them */
		memset(v, 0, (size_t)d * sizeof *v);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < d; j++)
				v[j] += x[(size_t)i * d + j];
		for (int j = 0; j < d; j++)
			v[j] /= (float)n;
	}
	l2_normalize(v, d);
}

/* Run the sequences seqs[0..n_seqs) (tokens already in e->tok, 0..n_tok) and
 * pool sequence s into out[s]. */
static int run_batch(struct embedder *e, const struct model_seq *seqs, int n_seqs, int n_tok, float *out)
{
	const int d = e->n_embd;
	if (e->b) {
		int len[EMB_MAX_SEQS];
		for (int s = 0; s < n_seqs; s++)
			len[s] = seqs[s].n_rows;
		int rc = bert_forward(e->b, &e->bws, e->tok, len, n_seqs, e->x);
		if (rc)
			return rc;
	} else {
		const struct model *m = e->m;
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
	}
	for (int s = 0; s < n_seqs; s++) {
		float *v = out + (size_t)s * d;
		pool_rows(e->pool, e->x + (size_t)seqs[s].row0 * d, seqs[s].n_rows, d, v);
		/* NaN or infinity in a model's weights reach here: refuse to hand them on
		 * (an index ranks by these numbers) */
		for (int j = 0; j < d; j++)
			if (!isfinite(v[j]))
				return kb_fail(KB_ERR_FORMAT, "'%s': the model gives a non-finite embedding (its weights "
					       "hold NaN or overflow)", e->b ? e->b->gguf->path : e->m->gguf->path);
	}
	return KB_OK;
}

/* The tokens of a text, cut to max tokens. A framed text ([CLS] ... [SEP], or
 * BOS ... EOS) keeps its closing token: the model saw every training text end
 * with it (as Hugging Face's truncation keeps the special tokens). */
static int text_tokens(const struct embedder *e, const char *text, int32_t **ids, int *n)
{
	const struct tok *tk = e->b ? e->b->tok : e->m->tok;
	const bool frame = tok_add_bos(tk);
	size_t len;
	int rc = tok_encode(tk, text, strlen(text), frame, false, ids, &len);
	if (rc)
		return rc;
	if (len == 0) {
		free(*ids);
		return kb_fail(KB_ERR_ARG, "a text has no tokens");
	}
	if (len > (size_t)e->max_tokens) {
		int32_t last = (*ids)[len - 1];
		bool closed = frame && (tok_kind(tk) == TOK_WPM || last == tok_eos(tk));
		if (closed)
			(*ids)[e->max_tokens - 1] = last;
		len = (size_t)e->max_tokens;
	}
	*n = (int)len;
	return KB_OK;
}

/* Embed n texts, each with prefix (NULL: none) before it. */
static int run_texts(struct embedder *e, const char *prefix, const char *const *texts, int n, float *out)
{
	const int d = e->n_embd;
	struct model_seq seqs[EMB_MAX_SEQS];
	int n_seqs = 0, n_tok = 0, first = 0, rc;
	for (int t = 0; t < n; t++) {
		int32_t *ids;
		int take = 0;
		char *joined = NULL;
		if (prefix && asprintf(&joined, "%s%s", prefix, texts[t]) < 0)
			return kb_fail(KB_ERR_NOMEM, "out of memory");
		rc = text_tokens(e, joined ? joined : texts[t], &ids, &take);
		free(joined);
		if (rc)
			return rc;
		if (n_tok + take > EMB_BATCH_TOKENS || n_seqs == EMB_MAX_SEQS) {
			if ((rc = run_batch(e, seqs, n_seqs, n_tok, out + (size_t)first * d))) {
				free(ids);
				return rc;
			}
			first = t, n_seqs = 0, n_tok = 0;
		}
		memcpy(e->tok + n_tok, ids, (size_t)take * sizeof *ids);
		free(ids);
		seqs[n_seqs++] = (struct model_seq){ .row0 = n_tok, .n_rows = take, .slot0 = n_tok, .n_slots = take };
		n_tok += take;
	}
	if (n_seqs)
		return run_batch(e, seqs, n_seqs, n_tok, out + (size_t)first * d);
	return KB_OK;
}

int embedder_run(struct embedder *e, const char *const *texts, int n, float *out)
{
	return run_texts(e, e->passage_prefix, texts, n, out);
}

int embedder_run_query(struct embedder *e, const char *query, float *out)
{
	return run_texts(e, e->query_prefix, &query, 1, out);
}

int embedder_run_mixed(struct embedder *e, const char *const *texts, const bool *is_query, int n, float *out)
{
	const size_t dim = (size_t)embedder_dim(e), cnt = (size_t)n * dim;
	float *pv = kb_malloc((cnt ? cnt : 1) * sizeof *pv);
	const char **pt = kb_malloc((n ? (size_t)n : 1) * sizeof *pt);
	int rc = pv && pt ? KB_OK : KB_ERR_NOMEM, np = 0;
	for (int i = 0; !rc && i < n; i++)
		if (!is_query[i])
			pt[np++] = texts[i];
	if (!rc && np)
		rc = embedder_run(e, pt, np, pv);
	for (int i = 0, k = 0; !rc && i < n; i++) {
		if (!is_query[i])
			memcpy(out + (size_t)i * dim, pv + (size_t)k++ * dim, dim * sizeof *out);
		else
			rc = embedder_run_query(e, texts[i], out + (size_t)i * dim);
	}
	free(pv);
	free(pt);
	return rc;
}
