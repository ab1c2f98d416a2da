/* tokevict.c — token-level KV eviction policies (see tokevict.h). */
#include "tokevict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "util.h"

static const char *const policy_names[TOKEVICT_POLICY_COUNT] = {
	[TOKEVICT_STREAMINGLLM] = "streamingllm", [TOKEVICT_H2O] = "h2o",   [TOKEVICT_SNAPKV] = "snapkv",
	[TOKEVICT_PYRAMIDKV] = "pyramidkv",       [TOKEVICT_TOVA] = "tova", [TOKEVICT_CAKE] = "cake",
};

const char *tokevict_policy_name(int p)
{
	return p >= 0 && p < TOKEVICT_POLICY_COUNT ? policy_names[p] : NULL;
}

int tokevict_policy_from_name(const char *name)
{
	for (int p = 0; p < TOKEVICT_POLICY_COUNT; p++)
		if (strcmp(name, policy_names[p]) == 0)
			return p;
	return -1;
}

void tokevict_opts_init(struct tokevict_opts *o, enum tokevict_policy p)
{
	*o = (struct tokevict_opts){
		.policy = p, .window = 32, .sinks = 4, .pool = 7, .layers = TOKEVICT_LAYERS_DEFAULT,
		.pyramid_beta = 20, .cake_tau1 = 1, .cake_tau2 = 1, .cake_gamma = 200,
	};
}

enum tokevict_layers tokevict_layers_of(const struct tokevict_opts *o)
{
	if (o->layers != TOKEVICT_LAYERS_DEFAULT)
		return o->layers;
	return o->policy == TOKEVICT_PYRAMIDKV ? TOKEVICT_LAYERS_PYRAMID
	       : o->policy == TOKEVICT_CAKE    ? TOKEVICT_LAYERS_CAKE
					       : TOKEVICT_LAYERS_UNIFORM;
}

bool tokevict_needs_model(const struct tokevict_opts *o)
{
	return o->policy != TOKEVICT_STREAMINGLLM || tokevict_layers_of(o) == TOKEVICT_LAYERS_CAKE;
}

/* ---- attention statistics ---- */

void tokevict_accumulate(const float *q, int q_stride, const int32_t *q_pos, int n_q, const float *k,
			 int kv_stride, const int32_t *k_pos, int n_kv, int n_head, int n_kv_head, int head_dim,
			 float *sum, float *sumsq)
{
	if (n_q <= 0 || n_kv <= 0)
		return;
	const int rep = n_head / n_kv_head, nr = n_q * rep;
	const float scale = 1.0f / sqrtf((float)head_dim);
	/* per kv head: its keys packed [n_kv][head_dim], its queries [n_q * rep][head_dim]
	 * (row i * rep + h), the scores as one f32 matmul, then a softmax per row */
	float *kg = malloc((size_t)n_kv * head_dim * sizeof *kg), *qg = malloc((size_t)nr * head_dim * sizeof *qg);
	float *sc = malloc((size_t)nr * n_kv * sizeof *sc);
	const size_t wsz = kern_matmul_wsize(QTYPE_F32, nr, head_dim);
	void *mw = wsz ? kb_aligned_alloc(64, wsz) : NULL;
	ASSERT(kg && qg && sc && (mw || !wsz));
	for (int g = 0; g < n_kv_head; g++) {
		for (int j = 0; j < n_kv; j++)
			memcpy(kg + (size_t)j * head_dim, k + (size_t)j * kv_stride + (size_t)g * head_dim,
			       (size_t)head_dim * sizeof *kg);
		for (int i = 0; i < n_q; i++)
			for (int h = 0; h < rep; h++)
				memcpy(qg + ((size_t)i * rep + h) * head_dim,
				       q + (size_t)i * q_stride + ((size_t)g * rep + h) * head_dim, (size_t)head_dim * sizeof *qg);
		kern_matmul(sc, qg, kg, QTYPE_F32, nr, head_dim, n_kv, mw);
		/* masked by position, softmax; a row that sees no key stays all zero */
		#pragma omp parallel for schedule(static)
		for (int r = 0; r < nr; r++) {
			float *row = sc + (size_t)r * n_kv;
			const int32_t qp = q_pos[r / rep];
			int seen = 0;
			for (int j = 0; j < n_kv; j++) {
				bool vis = k_pos[j] <= qp;
				row[j] = vis ? row[j] * scale : -INFINITY;
				seen += vis;
			}
			if (!seen) {
				memset(row, 0, (size_t)n_kv * sizeof *row);
				continue;
			}
			kern_softmax(row, n_kv);
			for (int j = 0; j < n_kv; j++)
				if (k_pos[j] > qp)
					row[j] = 0;
		}
		/* the rows summed per query head, over key ranges in parallel */
		const int chunk = 1024;
		#pragma omp parallel for schedule(static)
		for (int c = 0; c < (n_kv + chunk - 1) / chunk; c++) {
			const int j0 = c * chunk, j1 = j0 + chunk < n_kv ? j0 + chunk : n_kv;
			for (int r = 0; r < nr; r++) {
				const int h = g * rep + r % rep;
				const float *row = sc + (size_t)r * n_kv;
				float *sh = sum + (size_t)h * n_kv, *qh = sumsq ? sumsq + (size_t)h * n_kv : NULL;
				for (int j = j0; j < j1; j++) {
					sh[j] += row[j];
					if (qh)
						qh[j] += row[j] * row[j];
				}
			}
		}
	}
	free(kg), free(qg), free(sc), free(mw);
}

/* ---- one layer's selection ---- */

size_t tokevict_scratch_floats(int n)
{
	/* a score row, its pooled copy, and an index array (as floats' worth) */
	return 3 * (size_t)(n > 0 ? n : 1);
}

/* Keys before the window of a layer whose budget is rows: the window is the
 * last min(window, rows) tokens (never fewer than the last one). */
static int window_of(const struct tokevict_opts *o, int rows)
{
	int w = o->window < rows ? o->window : rows;
	return w < 1 ? 1 : w;
}

/* The window-attention mean and variance of key j for the query heads of kv head g. */
static void head_moments(const struct tokevict_layer_stats *s, int n, int g, int j, double *mean, double *var)
{
	const int rep = s->n_head / s->n_kv_head;
	double m = 0, v = 0;
	for (int h = g * rep; h < (g + 1) * rep; h++) {
		double mu = s->sum[(size_t)h * n + j] / s->n_obs;
		m += mu;
		if (s->sumsq) {
			double d = s->sumsq[(size_t)h * n + j] / s->n_obs - mu * mu;
			v += d > 0 ? d : 0;
		}
	}
	*mean = m / rep;
	*var = v / rep;
}

double tokevict_cake_pref(const struct tokevict_opts *o, const struct tokevict_layer_stats *s, int n)
{
	const int w = o->window < n ? o->window : n, m = n - w;
	if (m <= 0)
		return 1e-12;
	double tot = 0, ent = 0, var = 0;
	for (int g = 0; g < s->n_kv_head; g++)
		for (int j = 0; j < m; j++) {
			double mu, v;
			head_moments(s, n, g, j, &mu, &v);
			tot += mu;
			var += v;
		}
	for (int g = 0; g < s->n_kv_head && tot > 0; g++)
		for (int j = 0; j < m; j++) {
			double mu, v;
			head_moments(s, n, g, j, &mu, &v);
			double a = mu / tot;
			if (a > 0)
				ent -= a * log(a);
		}
	var /= s->n_kv_head;
	double p = pow(ent > 1e-12 ? ent : 1e-12, 1 / o->cake_tau1) * pow(var > 1e-30 ? var : 1e-30, 1 / o->cake_tau2);
	return p > 1e-300 ? p : 1e-300;
}

/* Max-pool x[0..m) into y with a kernel of k (odd), windows cut at the ends. */
static void max_pool(const float *x, int m, int k, float *y)
{
	const int r = k / 2;
	for (int j = 0; j < m; j++) {
		float b = x[j];
		for (int t = j - r < 0 ? 0 : j - r; t <= j + r && t < m; t++)
			b = x[t] > b ? x[t] : b;
		y[j] = b;
	}
}

static const float *sort_key;
static int by_score_desc(const void *a, const void *b)
{
	int i = *(const int32_t *)a, j = *(const int32_t *)b;
	if (sort_key[i] != sort_key[j])
		return sort_key[i] > sort_key[j] ? -1 : 1;
	return (i > j) - (i < j);
}

static int ascending(const void *a, const void *b)
{
	int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
	return (i > j) - (i < j);
}

/* keep[0..k) = the k best of score[0..m) (ties: the earlier token), ascending. */
static void top_k(const float *score, int m, int k, int32_t *idx, int32_t *keep)
{
	for (int j = 0; j < m; j++)
		idx[j] = j;
	sort_key = score;
	qsort(idx, (size_t)m, sizeof *idx, by_score_desc);
	memcpy(keep, idx, (size_t)k * sizeof *keep);
	qsort(keep, (size_t)k, sizeof *keep, ascending);
}

void tokevict_select_layer(const struct tokevict_opts *o, const struct tokevict_layer_stats *s, int n,
			   int n_kv_head, int rows, float *scratch, int32_t *keep)
{
	ASSERT(rows >= 1 && rows <= n);
	float *score = scratch, *pooled = scratch + n;
	int32_t *idx = (int32_t *)(scratch + 2 * (size_t)n);
	for (int g = 0; g < n_kv_head; g++) {
		int32_t *kg = keep + (size_t)g * rows;
		if (o->policy == TOKEVICT_STREAMINGLLM) {
			int sinks = o->sinks < rows - 1 ? o->sinks : rows - 1, j = 0;
			for (int t = 0; t < sinks; t++)
				kg[j++] = t;
			for (int t = n - (rows - sinks); t < n; t++)
				kg[j++] = t;
			continue;
		}
		if (o->policy == TOKEVICT_TOVA) {
			/* the last query's weights, averaged over every head: one set for all kv heads */
			for (int j = 0; j < n - 1; j++) {
				double a = 0;
				for (int h = 0; h < s->n_head; h++)
					a += s->last[(size_t)h * n + j];
				score[j] = (float)(a / s->n_head);
			}
			top_k(score, n - 1, rows - 1, idx, kg);
			kg[rows - 1] = n - 1;
			continue;
		}
		/* window (recent) tokens kept; the rest by score */
		const int w = window_of(o, rows), m = n - w, rep = s->n_head / s->n_kv_head;
		for (int j = 0; j < m; j++) {
			if (o->policy == TOKEVICT_CAKE) {
				double mu, v;
				head_moments(s, n, g, j, &mu, &v);
				score[j] = (float)(mu + o->cake_gamma * v);
			} else {
				double a = 0;
				for (int h = g * rep; h < (g + 1) * rep; h++)
					a += s->sum[(size_t)h * n + j];
				score[j] = (float)a;
			}
		}
		const float *sc = score;
		if (o->policy != TOKEVICT_H2O && o->pool > 1) {
			max_pool(score, m, o->pool, pooled);
			sc = pooled;
		}
		top_k(sc, m, rows - w, idx, kg);
		for (int j = 0; j < w; j++)
			kg[rows - w + j] = m + j;
	}
}

/* ---- layer budgets ---- */

/* Split total rows over n_layer layers in proportion to weight[], each at
 * least lo and at most hi (largest remainders; what a cap cuts goes to the
 * others). */
static void split(const double *weight, int n_layer, long total, int lo, int hi, int32_t *out)
{
	bool *fixed = calloc((size_t)n_layer, sizeof *fixed);
	ASSERT(fixed);
	for (int l = 0; l < n_layer; l++)
		out[l] = lo;
	long left = total - (long)lo * n_layer;
	for (int round = 0; round < n_layer + 1 && left > 0; round++) {
		double wsum = 0;
		for (int l = 0; l < n_layer; l++)
			if (!fixed[l])
				wsum += weight[l] > 0 ? weight[l] : 0;
		int n_free = 0;
		for (int l = 0; l < n_layer; l++)
			n_free += !fixed[l];
		if (n_free == 0)
			break;
		/* shares of what is left, floored; a layer over its cap is fixed there */
		long given = 0;
		bool capped = false;
		for (int l = 0; l < n_layer; l++) {
			if (fixed[l])
				continue;
			double share = wsum > 0 ? left * (weight[l] > 0 ? weight[l] : 0) / wsum : (double)left / n_free;
			if (out[l] + share >= hi) {
				given += hi - out[l];
				out[l] = hi;
				fixed[l] = capped = true;
			}
		}
		if (capped) {
			left -= given;
			continue;
		}
		long base = 0;
		for (int l = 0; l < n_layer; l++) {
			if (fixed[l])
				continue;
			double share = wsum > 0 ? left * (weight[l] > 0 ? weight[l] : 0) / wsum : (double)left / n_free;
			long f = (long)floor(share);
			out[l] += (int32_t)f;
			base += f;
		}
		left -= base;
		/* the remainder one by one to the free layers, in order */
		for (int l = 0; l < n_layer && left > 0; l++)
			if (!fixed[l] && out[l] < hi)
				out[l]++, left--;
		break;
	}
	free(fixed);
}

void tokevict_layer_budgets(const struct tokevict_opts *o, int n_layer, int n, const double *pref,
			    int32_t *budgets)
{
	const int b = o->budget;
	enum tokevict_layers scheme = tokevict_layers_of(o);
	if (scheme == TOKEVICT_LAYERS_UNIFORM || n_layer == 1 || b >= n) {
		for (int l = 0; l < n_layer; l++)
			budgets[l] = b;
		return;
	}
	/* the window part stays in every layer; the rest is shared out */
	const int w = window_of(o, b);
	double *weight = malloc((size_t)n_layer * sizeof *weight);
	ASSERT(weight);
	if (scheme == TOKEVICT_LAYERS_PYRAMID) {
		/* PyramidKV: an arithmetic sequence from 2 * avg - avg/beta down to avg/beta */
		double avg = b - w, lo = avg / o->pyramid_beta, hi = 2 * avg - lo;
		for (int l = 0; l < n_layer; l++)
			weight[l] = hi - (hi - lo) * l / (n_layer - 1);
	} else {
		for (int l = 0; l < n_layer; l++)
			weight[l] = pref[l];
	}
	split(weight, n_layer, (long)(b - w) * n_layer, 0, n - w, budgets);
	for (int l = 0; l < n_layer; l++)
		budgets[l] += w;
	free(weight);
}

/* ---- a whole cache ---- */

void tokevict_sel_free(struct tokevict_sel *s)
{
	free(s->rows);
	free(s->keep);
	memset(s, 0, sizeof *s);
}

/* Sums of the queries of slots q0..n-1 over the n slots, layer by layer:
 * sum [n_layer][n_head][n], sumsq likewise (or NULL), last [n_layer][n_head][n]
 * (the last query alone, or NULL). kv's K and V are restored afterwards. */
static int attention_stats(const struct model *m, struct kv_cache *kv, int q0, float *sum, float *sumsq,
			   float *last)
{
	const struct model_hparams *hp = &m->hp;
	const int n = kv->n, nq = n - q0, d = hp->n_embd, kvd = kv->kv_dim, qd = hp->n_head * hp->head_dim;
	const int nb = nq < 256 ? nq : 256;
	const size_t per_layer = (size_t)nq * kvd;
	float *saved = malloc(2 * per_layer * hp->n_layer * sizeof *saved);
	float *x = malloc((size_t)nq * d * sizeof *x);
	int32_t *slots = malloc((size_t)nq * sizeof *slots);
	struct model_ws ws;
	int rc = KB_OK;
	if (!saved || !x || !slots || (rc = model_ws_init(&ws, m, nb, n))) {
		free(saved), free(x), free(slots);
		return rc ? rc : kb_fail(KB_ERR_NOMEM, "out of memory for the attention statistics");
	}
	for (int l = 0; l < hp->n_layer; l++) {
		memcpy(saved + 2 * l * per_layer, kv_k(kv, l, q0), per_layer * sizeof *saved);
		memcpy(saved + (2 * l + 1) * per_layer, kv_v(kv, l, q0), per_layer * sizeof *saved);
	}
	for (int i = 0; i < nq; i++)
		slots[i] = q0 + i;
	model_embed(m, kv->tok + q0, nq, x);
	const size_t lsz = (size_t)hp->n_head * n;
	for (int l = 0; l < hp->n_layer; l++) {
		for (int b0 = 0; b0 < nq; b0 += nb) {
			const int cnt = nq - b0 < nb ? nq - b0 : nb;
			model_layer(m, &ws, l, x + (size_t)b0 * d, slots + b0, cnt, kv, n);
			/* ws.q: the rows' queries at layer l, rotated */
			tokevict_accumulate(ws.q, qd, kv->pos + q0 + b0, cnt, kv_k(kv, l, 0), kvd, kv->pos, n,
					    hp->n_head, hp->n_kv_head, hp->head_dim, sum + l * lsz,
					    sumsq ? sumsq + l * lsz : NULL);
			if (last && b0 + cnt == nq)
				tokevict_accumulate(ws.q + (size_t)(cnt - 1) * qd, qd, kv->pos + n - 1, 1, kv_k(kv, l, 0),
						    kvd, kv->pos, n, hp->n_head, hp->n_kv_head, hp->head_dim,
						    last + l * lsz, NULL);
		}
	}
	for (int l = 0; l < hp->n_layer; l++) {
		memcpy(kv_k(kv, l, q0), saved + 2 * l * per_layer, per_layer * sizeof *saved);
		memcpy(kv_v(kv, l, q0), saved + (2 * l + 1) * per_layer, per_layer * sizeof *saved);
	}
	model_ws_free(&ws);
	free(saved), free(x), free(slots);
	return KB_OK;
}

int tokevict_run(const struct model *m, struct kv_cache *kv, const struct tokevict_opts *o,
		 struct tokevict_sel *sel)
{
	memset(sel, 0, sizeof *sel);
	const int n = kv->n, n_layer = kv->n_layer, n_kv_head = kv->n_kv_head;
	if (n < 1)
		return kb_fail(KB_ERR_ARG, "the cache is empty");
	if (kv->hpos)
		return kb_fail(KB_ERR_ARG, "the cache is token-evicted already: evict from the whole cache");
	if (o->budget < 1 || o->budget > n)
		return kb_fail(KB_ERR_ARG, "budget %d is out of range: the cache has %d tokens", o->budget, n);
	if (tokevict_needs_model(o) && !m)
		return kb_fail(KB_ERR_ARG, "%s needs the model's attention: give -m MODEL",
			       tokevict_policy_name(o->policy));
	const int n_head = m ? m->hp.n_head : n_kv_head;
	const bool scored = tokevict_needs_model(o);
	const bool cake = o->policy == TOKEVICT_CAKE || tokevict_layers_of(o) == TOKEVICT_LAYERS_CAKE;
	const size_t lsz = (size_t)n_head * n;
	float *sum = NULL, *sumsq = NULL, *last = NULL, *scratch = NULL;
	double *pref = NULL;
	int rc = KB_OK;
	/* the queries: every token's for h2o, the window's for the others */
	const int n_obs = o->policy == TOKEVICT_H2O ? n : o->window < n ? o->window : n;
	if (scored) {
		sum = calloc(lsz * n_layer, sizeof *sum);
		sumsq = cake ? calloc(lsz * n_layer, sizeof *sumsq) : NULL;
		last = o->policy == TOKEVICT_TOVA ? calloc(lsz * n_layer, sizeof *last) : NULL;
		if (!sum || (cake && !sumsq) || (o->policy == TOKEVICT_TOVA && !last)) {
			rc = kb_fail(KB_ERR_NOMEM, "out of memory for the attention statistics of %d tokens", n);
			goto out;
		}
		if ((rc = attention_stats(m, kv, n - n_obs, sum, sumsq, last)))
			goto out;
	}
	sel->n_layer = n_layer, sel->n_kv_head = n_kv_head, sel->n = n;
	sel->rows = calloc((size_t)n_layer, sizeof *sel->rows);
	pref = calloc((size_t)n_layer, sizeof *pref);
	scratch = malloc(tokevict_scratch_floats(n) * sizeof *scratch);
	if (!sel->rows || !pref || !scratch) {
		rc = kb_fail(KB_ERR_NOMEM, "out of memory");
		goto out;
	}
	struct tokevict_layer_stats st = { .n_obs = n_obs, .n_head = n_head, .n_kv_head = n_kv_head };
	for (int l = 0; cake && l < n_layer; l++) {
		st.sum = sum + l * lsz, st.sumsq = sumsq + l * lsz;
		pref[l] = tokevict_cake_pref(o, &st, n);
	}
	tokevict_layer_budgets(o, n_layer, n, pref, sel->rows);
	size_t total = 0;
	for (int l = 0; l < n_layer; l++)
		total += (size_t)sel->rows[l] * n_kv_head;
	if (!(sel->keep = malloc(total * sizeof *sel->keep))) {
		rc = kb_fail(KB_ERR_NOMEM, "out of memory");
		goto out;
	}
	size_t off = 0;
	for (int l = 0; l < n_layer; l++) {
		st.sum = sum ? sum + l * lsz : NULL;
		st.sumsq = sumsq ? sumsq + l * lsz : NULL;
		st.last = last ? last + l * lsz : NULL;
		tokevict_select_layer(o, &st, n, n_kv_head, sel->rows[l], scratch, sel->keep + off);
		off += (size_t)sel->rows[l] * n_kv_head;
	}
out:
	if (rc)
		tokevict_sel_free(sel);
	free(sum), free(sumsq), free(last), free(scratch), free(pref);
	return rc;
}

/* ---- writing the smaller cache ---- */

struct sel_layers {
	const struct kv_cache *kv;
	const struct tokevict_sel *sel;
	float *k, *v;           /* [max rows][kv_dim] */
	size_t off;             /* into sel->keep: the next layer's */
	int head_dim;
};

static int sel_layer(void *ctx, int l, const float **k, const float **v, size_t *row_stride)
{
	struct sel_layers *c = ctx;
	const int rows = c->sel->rows[l], kvd = c->kv->kv_dim, hd = c->head_dim;
	for (int g = 0; g < c->sel->n_kv_head; g++) {
		const int32_t *keep = c->sel->keep + c->off + (size_t)g * rows;
		for (int j = 0; j < rows; j++) {
			memcpy(c->k + (size_t)j * kvd + (size_t)g * hd, kv_k(c->kv, l, keep[j]) + (size_t)g * hd,
			       (size_t)hd * sizeof(float));
			memcpy(c->v + (size_t)j * kvd + (size_t)g * hd, kv_v(c->kv, l, keep[j]) + (size_t)g * hd,
			       (size_t)hd * sizeof(float));
		}
	}
	c->off += (size_t)rows * c->sel->n_kv_head;
	*k = c->k, *v = c->v, *row_stride = (size_t)kvd;
	return KB_OK;
}

/* Does every head of every layer keep the same tokens? */
static bool sel_is_dense(const struct tokevict_sel *s)
{
	const int r = s->rows[0];
	for (int l = 1; l < s->n_layer; l++)
		if (s->rows[l] != r)
			return false;
	size_t total = (size_t)r * s->n_kv_head * s->n_layer;
	for (size_t i = (size_t)r; i < total; i++)
		if (s->keep[i] != s->keep[i % (size_t)r])
			return false;
	return true;
}

int tokevict_write(const char *path, const struct kvc_header *in, const struct kv_cache *kv,
		   const struct tokevict_sel *sel, const char *tool, int argc, char **argv)
{
	const int n = sel->n;
	size_t total = 0;
	int max_rows = 0;
	for (int l = 0; l < sel->n_layer; l++) {
		total += (size_t)sel->rows[l] * sel->n_kv_head;
		max_rows = sel->rows[l] > max_rows ? sel->rows[l] : max_rows;
	}
	/* the tokens some head keeps, and their new indices */
	int32_t *map = malloc((size_t)n * sizeof *map), *tok = malloc((size_t)n * sizeof *tok),
		*pos = malloc((size_t)n * sizeof *pos), *keep = malloc((total + 1) * sizeof *keep);
	float *kb = malloc((size_t)max_rows * kv->kv_dim * sizeof *kb), *vb = malloc((size_t)max_rows * kv->kv_dim * sizeof *vb);
	int rc = KB_OK;
	if (!map || !tok || !pos || !keep || !kb || !vb) {
		rc = kb_fail(KB_ERR_NOMEM, "out of memory writing the evicted cache");
		goto out;
	}
	for (int i = 0; i < n; i++)
		map[i] = -1;
	for (size_t i = 0; i < total; i++)
		map[sel->keep[i]] = 0;
	int m = 0;
	for (int i = 0; i < n; i++)
		if (map[i] == 0) {
			map[i] = m;
			tok[m] = kv->tok[i];
			pos[m++] = kv->pos[i];
		}
	for (size_t i = 0; i < total; i++)
		keep[i] = map[sel->keep[i]];
	struct kvc_header h = *in;
	h.tokens = tok, h.pos = pos, h.n_tokens = m;
	h.layer_rows = sel_is_dense(sel) ? NULL : sel->rows;
	h.keep = h.layer_rows ? keep : NULL;
	h.tool = (char *)tool;
	h.argc = argv ? argc : 0, h.argv = argv;
	h.major = KVC_MAJOR, h.minor = KVC_MINOR;
	struct sel_layers c = { .kv = kv, .sel = sel, .k = kb, .v = vb, .head_dim = in->head_dim };
	rc = kvc_write_file_cb(path, &h, sel_layer, &c);
out:
	free(map), free(tok), free(pos), free(keep), free(kb), free(vb);
	return rc;
}

/* ---- applying a selection in memory ---- */

int tokevict_apply(struct kv_cache *kv, const struct tokevict_sel *sel)
{
	const int n = kv->n, hd = kv->kv_dim / kv->n_kv_head;
	if (sel->n != n || sel->n_layer != kv->n_layer || sel->n_kv_head != kv->n_kv_head)
		return kb_fail(KB_ERR_ARG, "the selection is for another cache (%d tokens, %d x %d)", sel->n,
			       sel->n_layer, sel->n_kv_head);
	int nmax = 0;
	for (int l = 0; l < sel->n_layer; l++)
		nmax = sel->rows[l] > nmax ? sel->rows[l] : nmax;
	int32_t *pos = malloc((size_t)n * sizeof *pos), *tok = malloc((size_t)n * sizeof *tok);
	float *buf = malloc(2 * (size_t)nmax * hd * sizeof *buf);
	int rc = kv_cache_per_head(kv);
	if (!pos || !tok || !buf || rc) {
		free(pos), free(tok), free(buf);
		return rc ? rc : kb_fail(KB_ERR_NOMEM, "out of memory");
	}
	memcpy(pos, kv->pos, (size_t)n * sizeof *pos);
	memcpy(tok, kv->tok, (size_t)n * sizeof *tok);
	for (int s = 0; s < nmax; s++)
		kv->pos[s] = INT32_MIN, kv->tok[s] = -1;
	size_t off_keep = 0;
	for (int l = 0; l < sel->n_layer; l++) {
		const int r = sel->rows[l], off = nmax - r;
		for (int g = 0; g < sel->n_kv_head; g++) {
			const int32_t *keep = sel->keep + off_keep + (size_t)g * r;
			int32_t *hp = kv_hpos(kv, l, g);
			/* gather the head's kept rows, then put them right-aligned in slots [off, nmax) */
			for (int j = 0; j < r; j++) {
				memcpy(buf + (size_t)j * hd, kv_k(kv, l, keep[j]) + (size_t)g * hd, (size_t)hd * sizeof *buf);
				memcpy(buf + ((size_t)r + j) * hd, kv_v(kv, l, keep[j]) + (size_t)g * hd,
				       (size_t)hd * sizeof *buf);
			}
			for (int s = 0; s < off; s++) {
				memset(kv_k(kv, l, s) + (size_t)g * hd, 0, (size_t)hd * sizeof *buf);
				memset(kv_v(kv, l, s) + (size_t)g * hd, 0, (size_t)hd * sizeof *buf);
				hp[s] = INT32_MAX;
			}
			for (int j = 0; j < r; j++) {
				const int s = off + j;
				memcpy(kv_k(kv, l, s) + (size_t)g * hd, buf + (size_t)j * hd, (size_t)hd * sizeof *buf);
				memcpy(kv_v(kv, l, s) + (size_t)g * hd, buf + ((size_t)r + j) * hd, (size_t)hd * sizeof *buf);
				hp[s] = pos[keep[j]];
				if (pos[keep[j]] > kv->pos[s])
					kv->pos[s] = pos[keep[j]], kv->tok[s] = tok[keep[j]];
			}
		}
		off_keep += (size_t)r * sel->n_kv_head;
	}
	kv->n = nmax;
	free(pos), free(tok), free(buf);
	return KB_OK;
}

/* ---- online eviction during decoding ---- */

struct tokevict_online {
	enum tokevict_online_policy policy;
	int budget, sinks, window;
	int n_layer, n_kv_head, n_head, head_dim, n_ctx;
	long step;
	float *w;      /* [n_head][n_ctx] the current query's weights of one layer */
	float *acc;    /* h2o: [n_layer][n_kv_head][n_ctx] accumulated attention per slot */
	int32_t *hit;  /* lazy: [n_layer][n_kv_head][n_ctx] last step the slot was attended */
	int32_t *mri;  /* lazy: [n_layer][n_kv_head][n_ctx] its longest interval between hits */
	int32_t *tmp;  /* [n_ctx] */
};

static const char *const online_names[TOKEVICT_ONLINE_COUNT] = {
	[TOKEVICT_ONLINE_STREAMINGLLM] = "streamingllm", [TOKEVICT_ONLINE_H2O] = "h2o",
	[TOKEVICT_ONLINE_TOVA] = "tova", [TOKEVICT_ONLINE_LAZY] = "lazyeviction",
};

const char *tokevict_online_name(int p)
{
	return p >= 0 && p < TOKEVICT_ONLINE_COUNT ? online_names[p] : NULL;
}

int tokevict_online_from_name(const char *name)
{
	for (int p = 0; p < TOKEVICT_ONLINE_COUNT; p++)
		if (strcmp(name, online_names[p]) == 0)
			return p;
	return -1;
}

void tokevict_online_free(struct tokevict_online *ev)
{
	if (!ev)
		return;
	free(ev->w), free(ev->acc), free(ev->hit), free(ev->mri), free(ev->tmp);
	free(ev);
}

int tokevict_online_init(struct tokevict_online **out, enum tokevict_online_policy policy, int budget, int sinks,
			 int window, const struct model *m, const struct kv_cache *kv)
{
	*out = NULL;
	if (budget < 2 || budget >= kv->n_ctx)
		return kb_fail(KB_ERR_ARG, "--kv-budget %d: it must be at least 2 and leave a slot in the context of %d",
			       budget, kv->n_ctx);
	struct tokevict_online *ev = calloc(1, sizeof *ev);
	if (!ev)
		return KB_ERR_NOMEM;
	*ev = (struct tokevict_online){
		.policy = policy, .budget = budget, .sinks = sinks, .window = window, .n_layer = kv->n_layer,
		.n_kv_head = kv->n_kv_head, .n_head = m->hp.n_head, .head_dim = m->hp.head_dim, .n_ctx = kv->n_ctx,
	};
	const size_t per = (size_t)kv->n_layer * kv->n_kv_head * kv->n_ctx;
	bool ok = (ev->w = calloc((size_t)ev->n_head * kv->n_ctx, sizeof *ev->w)) != NULL &&
		  (ev->tmp = calloc((size_t)kv->n_ctx, sizeof *ev->tmp)) != NULL;
	if (policy == TOKEVICT_ONLINE_H2O)
		ok &= (ev->acc = calloc(per, sizeof *ev->acc)) != NULL;
	if (policy == TOKEVICT_ONLINE_LAZY)
		ok &= (ev->hit = calloc(per, sizeof *ev->hit)) != NULL && (ev->mri = calloc(per, sizeof *ev->mri)) != NULL;
	if (!ok) {
		tokevict_online_free(ev);
		return kb_fail(KB_ERR_NOMEM, "out of memory for online eviction");
	}
	*out = ev;
	return KB_OK;
}

/* Move slot `from` of kv head g of layer l into slot `to` (K, V, position, statistics). */
static void move_slot(struct tokevict_online *ev, struct kv_cache *kv, int l, int g, int from, int to)
{
	const int hd = ev->head_dim;
	memcpy(kv_k(kv, l, to) + (size_t)g * hd, kv_k(kv, l, from) + (size_t)g * hd, (size_t)hd * sizeof(float));
	memcpy(kv_v(kv, l, to) + (size_t)g * hd, kv_v(kv, l, from) + (size_t)g * hd, (size_t)hd * sizeof(float));
	kv_hpos(kv, l, g)[to] = kv_hpos(kv, l, g)[from];
	const size_t base = ((size_t)l * ev->n_kv_head + g) * ev->n_ctx;
	if (ev->acc)
		ev->acc[base + to] = ev->acc[base + from];
	if (ev->hit)
		ev->hit[base + to] = ev->hit[base + from], ev->mri[base + to] = ev->mri[base + from];
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* The protected positions of a head: below *lo (the first `sinks` held) or
 * above *hi (the `window` most recent). tmp: n int32. */
static void protected_range(const int32_t *hp, int n, int sinks, int window, int32_t *tmp, int32_t *lo, int32_t *hi)
{
	int m = 0;
	for (int s = 0; s < n; s++)
		if (hp[s] != INT32_MAX)
			tmp[m++] = hp[s];
	qsort(tmp, (size_t)m, sizeof *tmp, cmp_i32);
	*lo = sinks <= 0 ? INT32_MIN : sinks >= m ? INT32_MAX : tmp[sinks];
	*hi = window <= 0 ? INT32_MAX : window >= m ? INT32_MIN : tmp[m - window - 1];
}

/* A kv head's weight of slot s from the current query: the mean over its query heads. */
static double head_weight(const struct tokevict_online *ev, int g, int rep, int s)
{
	double a = 0;
	for (int h = g * rep; h < (g + 1) * rep; h++)
		a += ev->w[(size_t)h * ev->n_ctx + s];
	return a / rep;
}

int tokevict_online_step(struct tokevict_online *ev, struct kv_cache *kv, const float *q_probe, int32_t q_pos)
{
	if (kv->n <= ev->budget)
		return KB_OK;
	int rc = kv_cache_per_head(kv);
	if (rc)
		return rc;
	const int n = kv->n, last = n - 1, hd = ev->head_dim, rep = ev->n_head / ev->n_kv_head;
	const int qd = ev->n_head * hd, kvd = kv->kv_dim;
	ev->step++;
	for (int l = 0; l < ev->n_layer; l++) {
		const bool scored = ev->policy != TOKEVICT_ONLINE_STREAMINGLLM;
		if (scored) {
			/* the current query's weights over the layer's slots, head by head (each kv head masks by its positions) */
			memset(ev->w, 0, (size_t)ev->n_head * ev->n_ctx * sizeof *ev->w);
			for (int g = 0; g < ev->n_kv_head; g++) {
				tokevict_accumulate(q_probe + (size_t)l * qd + (size_t)g * rep * hd, qd, &q_pos, 1,
						    kv_k(kv, l, 0) + (size_t)g * hd, kvd, kv_hpos(kv, l, g), n, rep, 1, hd,
						    ev->w + (size_t)g * rep * ev->n_ctx, NULL);
			}
		}
		for (int g = 0; g < ev->n_kv_head; g++) {
			const int32_t *hp = kv_hpos(kv, l, g);
			const size_t base = ((size_t)l * ev->n_kv_head + g) * ev->n_ctx;
			if (ev->acc)
				for (int s = 0; s < n; s++)
					ev->acc[base + s] += (float)head_weight(ev, g, rep, s);
			if (ev->hit) {
				/* a hit: more than its share of attention (above uniform over the live slots) */
				int live = 0;
				for (int s = 0; s < n; s++)
					live += hp[s] != INT32_MAX;
				for (int s = 0; s < n; s++)
					if (hp[s] != INT32_MAX && head_weight(ev, g, rep, s) > 1.0 / live) {
						int32_t gap = (int32_t)(ev->step - ev->hit[base + s]);
						if (ev->hit[base + s] > 0 && gap > ev->mri[base + s])
							ev->mri[base + s] = gap;
						ev->hit[base + s] = (int32_t)ev->step;
					}
			}
			/* the victim: a dead slot first, else by the policy among the unprotected */
			int32_t lo, hi;
			const int sinks = ev->policy == TOKEVICT_ONLINE_H2O || ev->policy == TOKEVICT_ONLINE_TOVA ? 0 : ev->sinks;
			int window = ev->policy == TOKEVICT_ONLINE_STREAMINGLLM || ev->policy == TOKEVICT_ONLINE_TOVA ? 1
															       : ev->window;
			/* sinks and window leave at least one slot to choose from */
			if (sinks + window > ev->budget - 1)
				window = ev->budget - 1 - sinks > 1 ? ev->budget - 1 - sinks : 1;
			protected_range(hp, n, sinks, window, ev->tmp, &lo, &hi);
			int victim = -1;
			double best = 0;
			for (int s = 0; s < last; s++) {
				if (hp[s] == INT32_MAX) {
					victim = s;
					break;
				}
				if (hp[s] < lo || hp[s] > hi)
					continue;
				if (ev->policy == TOKEVICT_ONLINE_STREAMINGLLM) {
					if (victim < 0 || hp[s] < best)
						victim = s, best = hp[s];
					continue;
				}
				double score;
				if (ev->policy == TOKEVICT_ONLINE_H2O)
					score = -ev->acc[base + s];
				else if (ev->policy == TOKEVICT_ONLINE_TOVA)
					score = -head_weight(ev, g, rep, s);
				else /* lazy: how overdue the slot is against its recurrence interval */
					score = (double)(ev->step - ev->hit[base + s]) / (ev->mri[base + s] + 1) - 1e-3 * head_weight(ev, g, rep, s);
				if (victim < 0 || score > best)
					victim = s, best = score;
			}
			if (victim < 0) /* everything protected: the oldest goes */
				for (int s = 0; s < last; s++)
					if (victim < 0 || hp[s] < hp[victim])
						victim = s;
			if (victim != last)
				move_slot(ev, kv, l, g, last, victim);
		}
	}
	/* the last slot is free in every layer and head now; pos/tok of the moved slots follow head 0 of layer 0 */
	kv->n = last;
	for (int s = 0; s < kv->n; s++) {
		int32_t best = INT32_MIN;
		for (int l = 0; l < ev->n_layer; l++)
			for (int g = 0; g < ev->n_kv_head; g++) {
				int32_t p = kv_hpos(kv, l, g)[s];
				if (p != INT32_MAX && p > best)
					best = p;
			}
		kv->pos[s] = best;
	}
	return KB_OK;
}
