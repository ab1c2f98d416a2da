/* bert.c — load a BERT encoder from GGUF and run it. See bert.h. */
#include "bert.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant.h"

/* ---- loading ---- */

/* "bert.<suffix>" as u32 into *out (unchanged when absent and not required). */
static int hp_u32(const struct gguf *g, const char *suffix, int *out, bool req)
{
	char key[96];
	uint32_t v;
	snprintf(key, sizeof key, "bert.%s", suffix);
	int rc = gguf_get_u32(g, key, &v);
	if (rc == KB_EOF)
		return req ? kb_fail(KB_ERR_FORMAT, "'%s': missing hyper-parameter '%s'", g->path, key) : KB_OK;
	if (rc < 0)
		return rc;
	if (v > (1u << 30))
		return kb_fail(KB_ERR_FORMAT, "'%s': hyper-parameter '%s' = %u is absurd", g->path, key, v);
	*out = (int)v;
	return KB_OK;
}

static int load_hparams(struct bert *b)
{
	const struct gguf *g = b->gguf;
	struct bert_hparams *hp = &b->hp;
	int rc, kv_head = -1;
	bool causal = false;
	hp->norm_eps = 1e-12f;
	hp->pooling = -1;
	hp->n_ctx_train = 512;
	if ((rc = hp_u32(g, "embedding_length", &hp->n_embd, true)) ||
	    (rc = hp_u32(g, "block_count", &hp->n_layer, true)) ||
	    (rc = hp_u32(g, "attention.head_count", &hp->n_head, true)) ||
	    (rc = hp_u32(g, "feed_forward_length", &hp->n_ff, true)) ||
	    (rc = hp_u32(g, "context_length", &hp->n_ctx_train, false)) ||
	    (rc = hp_u32(g, "attention.head_count_kv", &kv_head, false)) ||
	    (rc = hp_u32(g, "pooling_type", &hp->pooling, false)))
		return rc;
	rc = gguf_get_f32(g, "bert.attention.layer_norm_epsilon", &hp->norm_eps);
	if (rc < 0 && rc != KB_EOF)
		return rc;
	rc = gguf_get_bool(g, "bert.attention.causal", &causal);
	if (rc < 0 && rc != KB_EOF)
		return rc;
	if (causal)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': a causal BERT (bert.attention.causal) is not supported",
			       g->path);
	if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_ff <= 0 || hp->n_ctx_train <= 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': hyper-parameters must be positive "
			       "(n_embd %d, n_layer %d, n_head %d, n_ff %d, context %d)",
			       g->path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_ff, hp->n_ctx_train);
	if ((uint64_t)hp->n_layer > g->n_tensors) /* each layer has its tensors: no huge table for a lie */
		return kb_fail(KB_ERR_FORMAT, "'%s': block_count %d, but the file holds only %llu tensors", g->path,
			       hp->n_layer, (unsigned long long)g->n_tensors);
	if (hp->n_embd % hp->n_head)
		return kb_fail(KB_ERR_FORMAT, "'%s': embedding_length %d is not a multiple of head_count %d",
			       g->path, hp->n_embd, hp->n_head);
	if (kv_head >= 0 && kv_head != hp->n_head)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': a BERT with %d key/value heads for %d heads is not supported",
			       g->path, kv_head, hp->n_head);
	if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
		return kb_fail(KB_ERR_FORMAT, "'%s': bad layer norm epsilon %g", g->path, hp->norm_eps);
	hp->head_dim = hp->n_embd / hp->n_head;
	return KB_OK;
}

/* token_embd (its rows give n_vocab), position_embd, token_types row 0, the
 * embedding norm. */
static int load_embeddings(struct bert *b)
{
	const struct gguf *g = b->gguf;
	struct bert_hparams *hp = &b->hp;
	const int64_t d = hp->n_embd;
	const struct gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
	int rc;
	if (!te)
		return kb_fail(KB_ERR_FORMAT, "'%s': missing tensor 'token_embd.weight'", g->path);
	if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
		return kb_fail(KB_ERR_FORMAT, "'%s': token_embd.weight has %lld rows", g->path, (long long)te->ne[1]);
	hp->n_vocab = (int)te->ne[1];
	if ((rc = model_load_weight(g, "token_embd.weight", d, hp->n_vocab, &b->token_embd)) ||
	    (rc = model_load_weight(g, "position_embd.weight", d, hp->n_ctx_train, &b->pos_embd)) ||
	    (rc = model_load_vec(g, "token_embd_norm.weight", d, &b->embd_norm, true)) ||
	    (rc = model_load_vec(g, "token_embd_norm.bias", d, &b->embd_norm_b, true)))
		return rc;
	/* token_types: [n_embd][n_types] (usually 2); only row 0 is ever used */
	const struct gguf_tensor *tt = gguf_find_tensor(g, "token_types.weight");
	if (!tt)
		return KB_OK;
	struct weight w;
	if ((rc = model_load_weight(g, "token_types.weight", d, tt->ne[1] > 0 ? tt->ne[1] : 1, &w)))
		return rc;
	if (!(b->type0 = kb_malloc((size_t)d * sizeof *b->type0)))
		return KB_ERR_NOMEM;
	qtype_traits(w.type)->to_float(w.data, b->type0, d);
	return KB_OK;
}

static int load_layers(struct bert *b)
{
	const struct gguf *g = b->gguf;
	const struct bert_hparams *hp = &b->hp;
	const int64_t d = hp->n_embd, ff = hp->n_ff;
	int rc;
	b->layers = kb_calloc((size_t)hp->n_layer, sizeof *b->layers);
	if (!b->layers)
		return KB_ERR_NOMEM;
	for (int l = 0; l < hp->n_layer; l++) {
		struct bert_layer *L = &b->layers[l];
		char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
		if ((rc = model_load_weight(g, NAME("attn_q.weight"), d, d, &L->wq)) ||
		    (rc = model_load_vec(g, NAME("attn_q.bias"), d, &L->bq, true)) ||
		    (rc = model_load_weight(g, NAME("attn_k.weight"), d, d, &L->wk)) ||
		    (rc = model_load_vec(g, NAME("attn_k.bias"), d, &L->bk, true)) ||
		    (rc = model_load_weight(g, NAME("attn_v.weight"), d, d, &L->wv)) ||
		    (rc = model_load_vec(g, NAME("attn_v.bias"), d, &L->bv, true)) ||
		    (rc = model_load_weight(g, NAME("attn_output.weight"), d, d, &L->wo)) ||
		    (rc = model_load_vec(g, NAME("attn_output.bias"), d, &L->bo, true)) ||
		    (rc = model_load_vec(g, NAME("attn_output_norm.weight"), d, &L->attn_norm, true)) ||
		    (rc = model_load_vec(g, NAME("attn_output_norm.bias"), d, &L->attn_norm_b, true)) ||
		    (rc = model_load_weight(g, NAME("ffn_up.weight"), d, ff, &L->w_up)) ||
		    (rc = model_load_vec(g, NAME("ffn_up.bias"), ff, &L->b_up, true)) ||
		    (rc = model_load_weight(g, NAME("ffn_down.weight"), ff, d, &L->w_down)) ||
		    (rc = model_load_vec(g, NAME("ffn_down.bias"), d, &L->b_down, true)) ||
		    (rc = model_load_vec(g, NAME("layer_output_norm.weight"), d, &L->out_norm, true)) ||
		    (rc = model_load_vec(g, NAME("layer_output_norm.bias"), d, &L->out_norm_b, true)))
			return rc;
#undef NAME
	}
	return KB_OK;
}

int bert_load(struct bert **out, const char *path)
{
	*out = NULL;
	struct bert *b = kb_calloc(1, sizeof *b);
	if (!b)
		return KB_ERR_NOMEM;
	kern_init();
	struct gguf_str arch;
	int rc = gguf_open_model(&b->gguf, path, &arch);
	if (rc)
		goto fail;
	if (!gguf_str_eq(arch, "bert")) {
		rc = kb_fail(KB_ERR_UNSUPPORTED, "'%s': architecture '%.*s' is not a BERT encoder", path,
			     (int)(arch.len > 64 ? 64 : arch.len), arch.data);
		goto fail;
	}
	if ((rc = load_hparams(b)) || (rc = load_embeddings(b)) || (rc = load_layers(b)) ||
	    (rc = model_load_tokenizer(b->gguf, b->hp.n_vocab, &b->tok)))
		goto fail;
	gguf_fingerprint(b->gguf, b->fingerprint);
	*out = b;
	return KB_OK;
fail:
	bert_free(b);
	return rc;
}

void bert_free(struct bert *b)
{
	if (!b)
		return;
	for (int l = 0; b->layers && l < b->hp.n_layer; l++) {
		struct bert_layer *L = &b->layers[l];
		float *v[] = { L->bq, L->bk, L->bv, L->bo, L->attn_norm, L->attn_norm_b, L->b_up,
			       L->b_down, L->out_norm, L->out_norm_b };
		for (size_t i = 0; i < sizeof v / sizeof *v; i++)
			free(v[i]);
	}
	free(b->layers);
	free(b->type0);
	free(b->embd_norm);
	free(b->embd_norm_b);
	tok_free(b->tok);
	gguf_close(b->gguf);
	free(b);
}

/* ---- workspace ---- */

int bert_ws_init(struct bert_ws *ws, const struct bert *b, int n_batch)
{
	const struct bert_hparams *hp = &b->hp;
	memset(ws, 0, sizeof *ws);
	if (n_batch <= 0)
		return kb_fail(KB_ERR_ARG, "batch %d must be positive", n_batch);
	ws->n_batch = n_batch;
	const size_t nb = (size_t)n_batch, d = (size_t)hp->n_embd;
	/* a sequence is at most the context and the batch: attention's largest call */
	const int n_seq = n_batch < hp->n_ctx_train ? n_batch : hp->n_ctx_train;
	size_t mm = 0;
	for (int l = 0; l < hp->n_layer; l++) {
		const struct bert_layer *L = &b->layers[l];
		const struct weight *w[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_up, &L->w_down };
		size_t s = model_weights_wsize(w, sizeof w / sizeof *w, n_batch);
		mm = s > mm ? s : mm;
	}
#define ALLOC(p, count) ((p) = kb_aligned_alloc(64, (count) * sizeof *(p)))
	if (!ALLOC(ws->xb, nb * d) || !ALLOC(ws->q, nb * d) || !ALLOC(ws->k, nb * d) ||
	    !ALLOC(ws->v, nb * d) || !ALLOC(ws->att, nb * d) || !ALLOC(ws->hb, nb * hp->n_ff) ||
	    !(ws->zeros = kb_calloc(nb, sizeof *ws->zeros)) ||
	    !(ws->mm_ws = kb_aligned_alloc(64, mm ? mm : 64)) ||
	    !(ws->att_ws = kb_aligned_alloc(64, kern_attention_wsize(n_seq, n_seq, hp->n_head)))) {
		bert_ws_free(ws);
		return KB_ERR_NOMEM;
	}
#undef ALLOC
	return KB_OK;
}

void bert_ws_free(struct bert_ws *ws)
{
	free(ws->xb);
	free(ws->q);
	free(ws->k);
	free(ws->v);
	free(ws->att);
	free(ws->hb);
	free(ws->zeros);
	free(ws->mm_ws);
	free(ws->att_ws);
	memset(ws, 0, sizeof *ws);
}

/* ---- forward pass ---- */

static void matmul(float *y, const float *x, const struct weight *w, int n, void *mm_ws)
{
	kern_matmul(y, x, w->data, w->type, n, (int)w->n_in, (int)w->n_out, mm_ws);
}

/* y[r] += b, for n rows of d */
static void add_bias(float *y, const float *b, int n, int d)
{
	#pragma omp parallel for schedule(static) if ((int64_t)n * d >= (1 << 16))
	for (int r = 0; r < n; r++)
		for (int i = 0; i < d; i++)
			y[(size_t)r * d + i] += b[i];
}

/* x[r] += y[r] + b: a residual with the projection's bias */
static void add_residual(float *x, const float *y, const float *b, int n, int d)
{
	#pragma omp parallel for schedule(static) if ((int64_t)n * d >= (1 << 16))
	for (int r = 0; r < n; r++)
		for (int i = 0; i < d; i++)
			x[(size_t)r * d + i] += y[(size_t)r * d + i] + b[i];
}

/* x[i] = token + position (within its sequence) + type-0 embeddings; xb is scratch. */
static void embed(const struct bert *b, struct bert_ws *ws, const int32_t *tokens, const int *seq_len,
		  int n_seqs, float *x)
{
	const int d = b->hp.n_embd;
	const struct qtype_traits *tt = qtype_traits(b->token_embd.type), *tp = qtype_traits(b->pos_embd.type);
	const size_t row_t = qtype_row_size(b->token_embd.type, d), row_p = qtype_row_size(b->pos_embd.type, d);
	for (int s = 0, r = 0; s < n_seqs; r += seq_len[s++]) {
		for (int i = 0; i < seq_len[s]; i++) {
			float *xr = x + (size_t)(r + i) * d, *pr = ws->xb + (size_t)(r + i) * d;
			tt->to_float((const uint8_t *)b->token_embd.data + (size_t)tokens[r + i] * row_t, xr, d);
			tp->to_float((const uint8_t *)b->pos_embd.data + (size_t)i * row_p, pr, d);
			for (int j = 0; j < d; j++)
				xr[j] += pr[j] + (b->type0 ? b->type0[j] : 0.0f);
		}
	}
}

/* One encoder layer over n rows of x, in place. */
static void layer(const struct bert *b, struct bert_ws *ws, int l, const int *seq_len, int n_seqs, int n,
		  float *x)
{
	const struct bert_hparams *hp = &b->hp;
	const struct bert_layer *L = &b->layers[l];
	const int d = hp->n_embd;

	/* Q, K, V projections with their biases */
	matmul(ws->q, x, &L->wq, n, ws->mm_ws);
	matmul(ws->k, x, &L->wk, n, ws->mm_ws);
	matmul(ws->v, x, &L->wv, n, ws->mm_ws);
	add_bias(ws->q, L->bq, n, d);
	add_bias(ws->k, L->bk, n, d);
	add_bias(ws->v, L->bv, n, d);

	/* bidirectional attention within each sequence: kern_attention masks by
	 * position (a key is seen when k_pos <= q_pos), so giving every token of
	 * the sequence the same position (0) lets each see all of them. BERT's
	 * positions live in position_embd; attention itself never uses them. */
	for (int s = 0, r = 0; s < n_seqs; r += seq_len[s++]) {
		const size_t o = (size_t)r * d;
		kern_attention(ws->att + o, ws->q + o, d, ws->k + o, ws->v + o, d, ws->zeros, ws->zeros,
			       seq_len[s], seq_len[s], hp->n_head, hp->n_head, hp->head_dim, ws->att_ws);
	}

	/* output projection, residual, LayerNorm (post-norm) */
	matmul(ws->xb, ws->att, &L->wo, n, ws->mm_ws);
	add_residual(x, ws->xb, L->bo, n, d);
	kern_layernorm(x, x, L->attn_norm, L->attn_norm_b, n, d, hp->norm_eps);

	/* feed-forward: up + bias, GELU, down + bias, residual, LayerNorm */
	matmul(ws->hb, x, &L->w_up, n, ws->mm_ws);
	add_bias(ws->hb, L->b_up, n, hp->n_ff);
	kern_gelu(ws->hb, ws->hb, (int64_t)n * hp->n_ff);
	matmul(ws->xb, ws->hb, &L->w_down, n, ws->mm_ws);
	add_residual(x, ws->xb, L->b_down, n, d);
	kern_layernorm(x, x, L->out_norm, L->out_norm_b, n, d, hp->norm_eps);
}

int bert_forward(const struct bert *b, struct bert_ws *ws, const int32_t *tokens, const int *seq_len,
		 int n_seqs, float *x)
{
	const struct bert_hparams *hp = &b->hp;
	int n = 0;
	for (int s = 0; s < n_seqs; s++) {
		if (seq_len[s] <= 0)
			return kb_fail(KB_ERR_ARG, "sequence %d is empty", s);
		if (seq_len[s] > hp->n_ctx_train)
			return kb_fail(KB_ERR_ARG, "sequence %d of %d tokens exceeds the context of %d", s,
				       seq_len[s], hp->n_ctx_train);
		n += seq_len[s];
		if (n > ws->n_batch)
			return kb_fail(KB_ERR_ARG, "%d sequences hold more than the %d tokens of a batch", n_seqs,
				       ws->n_batch);
	}
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
			return kb_fail(KB_ERR_ARG, "token id %d is out of range (vocabulary %d)", tokens[i],
				       hp->n_vocab);
	embed(b, ws, tokens, seq_len, n_seqs, x);
	kern_layernorm(x, x, b->embd_norm, b->embd_norm_b, n, hp->n_embd, hp->norm_eps);
	for (int l = 0; l < hp->n_layer; l++)
		layer(b, ws, l, seq_len, n_seqs, n, x);
	return KB_OK;
}
