/* ppl.c — see ppl.h.
 *
 * A window is run in two parts: the rows it only reads again (context) go
 * through model_forward with no logits; the rows whose next token is scored go
 * in batches of the workspace's size with every row's logits, turned into the
 * log-probability of the token that follows (log-softmax of one entry). The
 * last token of a window predicts nothing the window scores, so it is never
 * run. */
#include "ppl.h"

#include <math.h>
#include <string.h>

/* Rows per forward batch: large enough for matrix-matrix work, small enough
 * that a batch of logits (rows x n_vocab floats) stays modest. */
#define PPL_BATCH 128

struct ppl {
	const struct model *m;
	int window, context;
	void (*progress)(void *ctx, uint64_t done, uint64_t total); /* may be NULL */
	void *progress_ctx;
	int32_t bos;          /* -1: none */
	struct kv_cache kv;   /* owned, window slots */
	struct model_ws ws;   /* owned */
	float *logits;        /* owned, [PPL_BATCH][n_vocab] */
	int32_t *seq, *pos;   /* owned, [window]: one window's tokens and positions */
};

int ppl_init(struct ppl **out, const struct model *m, const struct ppl_opts *o)
{
	*out = NULL;
	int w = o->window;
	if (w == 0)
		w = m->hp.n_ctx_train > 0 && m->hp.n_ctx_train < PPL_WINDOW_MAX ? m->hp.n_ctx_train : PPL_WINDOW_MAX;
	int32_t bos = m->tok && tok_add_bos(m->tok) ? tok_bos(m->tok) : -1;
	int hb = bos >= 0;
	if (w < 2 + hb)
		return kb_fail(KB_ERR_ARG, "a perplexity window of %d tokens is too small (at least %d)", w, 2 + hb);
	int c = o->context > 0 ? o->context : w / 4;
	if (c >= w - hb - 1) // a window must score at least one new token
		return kb_fail(KB_ERR_ARG, "a context of %d tokens leaves nothing to score in a window of %d", c, w);
	struct ppl *p = kb_calloc(1, sizeof *p);
	if (!p)
		return KB_ERR_NOMEM;
	p->m = m;
	p->window = w;
	p->context = c;
	p->progress = o->progress;
	p->progress_ctx = o->progress_ctx;
	p->bos = bos;
	int nb = w < PPL_BATCH ? w : PPL_BATCH, rc;
	if ((rc = kv_cache_init(&p->kv, m, w)) || (rc = model_ws_init(&p->ws, m, nb, w)))
		goto fail;
	p->logits = kb_malloc((size_t)nb * (size_t)m->hp.n_vocab * sizeof *p->logits);
	p->seq = kb_malloc((size_t)w * sizeof *p->seq);
	p->pos = kb_malloc((size_t)w * sizeof *p->pos);
	if (!p->logits || !p->seq || !p->pos) {
		rc = KB_ERR_NOMEM;
		goto fail;
	}
	for (int i = 0; i < w; i++)
		p->pos[i] = i;
	*out = p;
	return KB_OK;
fail:
	ppl_free(p);
	return rc;
}

void ppl_free(struct ppl *p)
{
	if (!p)
		return;
	kv_cache_free(&p->kv);
	model_ws_free(&p->ws);
	free(p->logits);
	free(p->seq);
	free(p->pos);
	free(p);
}

int ppl_window(const struct ppl *p)
{
	return p->window;
}

int ppl_context(const struct ppl *p)
{
	return p->context;
}

/* ln softmax(row)[id], with the sum in double. */
static float log_softmax_at(const float *row, int n, int32_t id)
{
	float mx = row[0];
	for (int i = 1; i < n; i++)
		mx = row[i] > mx ? row[i] : mx;
	double s = 0;
	for (int i = 0; i < n; i++)
		s += exp((double)(row[i] - mx));
	return (float)((double)(row[id] - mx) - log(s));
}

/* One window: tokens[a, b) after BOS (when the model has one), scoring
 * tokens[s, b) into lp. s > a, or s == a with a BOS to predict it. */
static int run_window(struct ppl *p, const int32_t *tokens, size_t a, size_t s, size_t b, float *lp)
{
	const int hb = p->bos >= 0, nv = p->m->hp.n_vocab;
	const int n = hb + (int)(b - a);
	if (hb)
		p->seq[0] = p->bos;
	memcpy(p->seq + hb, tokens + a, (b - a) * sizeof *tokens);
	// row r predicts seq[r + 1]: tokens[s] is seq[s - a + hb], predicted by row r0
	const int r0 = (int)(s - a) + hb - 1, r1 = n - 1; // rows [r0, r1) are scored
	p->kv.n = 0;
	int rc = r0 > 0 ? model_forward(p->m, &p->ws, &p->kv, p->seq, p->pos, r0, NULL, false) : KB_OK;
	for (int r = r0; !rc && r < r1; r += p->ws.n_batch) {
		int nb = r1 - r < p->ws.n_batch ? r1 - r : p->ws.n_batch;
		if ((rc = model_forward(p->m, &p->ws, &p->kv, p->seq + r, p->pos + r, nb, p->logits, true)))
			break;
#pragma omp parallel for schedule(static) if (nb >= 8 && nv >= 4096)
		for (int i = 0; i < nb; i++)
			lp[a + (size_t)(r + i + 1 - hb)] = log_softmax_at(p->logits + (size_t)i * nv, nv, p->seq[r + i + 1]);
	}
	return rc;
}

int ppl_logprobs(struct ppl *p, const int32_t *tokens, size_t n, float *lp)
{
	const int hb = p->bos >= 0;
	const size_t cap = (size_t)(p->window - hb), ctx = (size_t)p->context; // text tokens per window
	size_t s = 0;
	if (n && !hb) { // nothing predicts the first token
		lp[0] = NAN;
		s = 1;
	}
	while (s < n) {
		size_t a = s == 0 ? 0 : s - (s < ctx ? s : ctx), b = n - a < cap ? n : a + cap;
		if (!hb && a == s) // without BOS a window's first token is context only
			a = s - 1;
		int rc = run_window(p, tokens, a, s, b, lp);
		if (rc)
			return rc;
		s = b;
		if (p->progress)
			p->progress(p->progress_ctx, s, n);
	}
	return KB_OK;
}

void ppl_spans(const float *lp, const size_t *ends, size_t n_spans, double *ppl)
{
	size_t k = 0;
	for (size_t i = 0; i < n_spans; i++) {
		double sum = 0;
		size_t cnt = 0;
		for (; k < ends[i]; k++)
			if (!isnan(lp[k])) {
				sum += lp[k];
				cnt++;
			}
		ppl[i] = cnt ? exp(-sum / (double)cnt) : NAN;
	}
}

/* The rule is the paper's: a dip below both neighbours by more than the
 * threshold, or below the one before with a flat stretch after. (The code
 * released with the paper is looser for thresholds above 0: a dip of the
 * threshold on either side is enough. With the default 0 the two agree.) */
double ppl_dip(const double *ppl, size_t n, size_t i)
{
	if (i == 0 || i + 1 >= n)
		return NAN;
	double before = ppl[i - 1] - ppl[i], after = ppl[i + 1] - ppl[i];
	if (isnan(before) || isnan(after))
		return NAN;
	return after == 0 ? before : fmin(before, after);
}

size_t ppl_minima(const double *ppl, size_t n, double threshold, bool *cut)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		/* NaN compares false: no cut */
		double d = ppl_dip(ppl, n, i);
		cut[i] = d > threshold && d > 0;
		k += cut[i];
	}
	return k;
}
