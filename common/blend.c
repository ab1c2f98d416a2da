/* blend.c — see blend.h. */
#include "blend.h"

#include <math.h>
#include <string.h>

static const char *const mode_names[] = {
	[BLEND_BLEND] = "blend", [BLEND_FULL] = "full", [BLEND_REUSE] = "reuse",
	[BLEND_PREFIX] = "prefix", [BLEND_EPIC] = "epic", [BLEND_APE] = "ape",
};

void blend_opts_init(struct blend_opts *o)
{
	*o = (struct blend_opts){ .mode = BLEND_BLEND, .ratio = 0.15f, .check_layer = 1,
				  .metric = BLEND_METRIC_KV, .epic_k = 16, .ape_temp = BLEND_APE_DEFAULT,
				  .ape_scale = BLEND_APE_DEFAULT };
}

const char *blend_mode_name(enum blend_mode m)
{
	return (unsigned)m < sizeof mode_names / sizeof *mode_names ? mode_names[m] : "?";
}

int blend_mode_from_name(const char *s)
{
	for (size_t i = 0; i < sizeof mode_names / sizeof *mode_names; i++)
		if (strcmp(s, mode_names[i]) == 0)
			return (int)i;
	return -1;
}

bool blend_seg_reused(enum blend_mode mode, int i, int n)
{
	return n > 0 && mode != BLEND_FULL && !(mode == BLEND_PREFIX && i > 0);
}

void blend_rotate(const struct model *m, struct kv_cache *kv, int slot0, int n, const int32_t *delta)
{
	for (int l = 0; l < m->hp.n_layer; l++)
		kern_rope(kv_k(kv, l, slot0), delta, n, m->hp.n_kv_head, m->hp.head_dim, model_rope(m, l));
}

/* Squared L2 distance of two rows. */
static double dist2(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		s += d * d;
	}
	return s;
}

struct scored {
	double dev;
	int32_t slot;
};

static int by_dev_desc(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? 1 : -1;
	return x->slot - y->slot;
}

/* What must happen to layer l's cache before a layer touches it: its cached
 * K/V must have arrived (the loader's wait) and its cached keys be moved to
 * their new positions. Done once per layer, in order. */
struct layer_prep {
	const struct model *m;
	struct kv_cache *kv;
	const struct blend_seg *segs;
	int n_segs;
	const bool *use;      /* [n_segs]: segment's cache is used */
	const int32_t *delta; /* [N]: new position - cached position */
	const struct blend_loader *ld;
	int ready;            /* layers [0, ready) prepared */
	int rc;
};

static int prepare_upto(struct layer_prep *p, int l)
{
	for (; p->rc == KB_OK && p->ready <= l; p->ready++) {
		const int k = p->ready;
		if (p->ld && p->ld->wait_layer && (p->rc = p->ld->wait_layer(p->ld->ctx, k)))
			break;
		for (int s = 0; s < p->n_segs; s++) {
			const struct blend_seg *g = &p->segs[s];
			if (p->use[s] && g->n > 0)
				kern_rope(kv_k(p->kv, k, g->slot0), p->delta + g->slot0, g->n, p->m->hp.n_kv_head,
					  p->m->hp.head_dim, model_rope(p->m, k));
		}
	}
	return p->rc;
}

/* Run layers [l0, l1) for the rows at slots[0..n) (ascending), whose hidden
 * states are x [n][n_embd], in batches of ws->n_batch, all attending to the
 * whole cache. Rows are in position order, so a batch only ever needs the
 * current layer's K/V of earlier batches. */
static int run_layers(const struct model *m, struct model_ws *ws, struct kv_cache *kv, int l0, int l1,
		      float *x, const int32_t *slots, int n, struct layer_prep *prep)
{
	const int d = m->hp.n_embd;
	for (int l = l0; l < l1; l++) {
		if (prepare_upto(prep, l))
			return prep->rc;
		for (int b0 = 0; b0 < n; b0 += ws->n_batch) {
			int nb = n - b0 < ws->n_batch ? n - b0 : ws->n_batch;
			model_layer(m, ws, l, x + (size_t)b0 * d, slots + b0, nb, kv, kv->n);
		}
	}
	return KB_OK;
}

/* Score each reused slot by the deviation of layer l's fresh K/V (in kv)
 * from the cached ones (ck, cv [N][kv_dim]) and mark the top o->ratio of them
 * for recomputing (reuse[slot] = false). sc: scratch [N]. */
static void select_deviating(const struct kv_cache *kv, int l, const float *ck, const float *cv,
			     const struct blend_opts *o, bool *reuse, struct scored *sc)
{
	const int N = kv->n, kvd = kv->kv_dim;
	int n_sc = 0;
	for (int i = 0; i < N; i++) {
		if (!reuse[i])
			continue;
		double dev = 0;
		if (o->metric != BLEND_METRIC_V)
			dev += dist2(kv_k(kv, l, i), ck + (size_t)i * kvd, kvd);
		if (o->metric != BLEND_METRIC_K)
			dev += dist2(kv_v(kv, l, i), cv + (size_t)i * kvd, kvd);
		sc[n_sc++] = (struct scored){ dev, i };
	}
	qsort(sc, (size_t)n_sc, sizeof *sc, by_dev_desc);
	int n_sel = (int)ceil(o->ratio * n_sc - 1e-9);
	for (int j = 0; j < n_sel; j++)
		reuse[sc[j].slot] = false;
}

/* Mode APE (blend.h): the cached chunks stay where and as they were computed,
 * after the prefix; the uncached rows (the query, and the prefix when it has no
 * cache) run every layer with APE's attention over the whole cache. */
static int ape_prompt(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		      const struct blend_seg *segs, int n_segs, const struct blend_opts *o,
		      const struct blend_loader *ld, float *logits, struct blend_stats *st)
{
	const int N = kv->n, d = m->hp.n_embd;
	/* APE's kernel has no sliding window, soft-capping or score scale of its own */
	if (m->hp.n_swa > 0 || m->hp.attn_softcap > 0 || m->hp.attn_scale > 0)
		return kb_fail(KB_ERR_UNSUPPORTED, "mode ape does not run %s models (sliding-window layers, "
			       "soft-capped or rescaled attention)", model_arch_name(m->hp.arch));
	if (!(o->ape_temp >= BLEND_APE_MIN && o->ape_temp <= BLEND_APE_MAX))
		return kb_fail(KB_ERR_ARG, "APE temperature %g is not in [%g, %g]", o->ape_temp, BLEND_APE_MIN,
			       BLEND_APE_MAX);
	if (!(o->ape_scale >= BLEND_APE_MIN && o->ape_scale <= BLEND_APE_MAX))
		return kb_fail(KB_ERR_ARG, "APE scale %g is not in [%g, %g]", o->ape_scale, BLEND_APE_MIN,
			       BLEND_APE_MAX);
	/* the prefix, then the chunks: every cached segment after the prefix, up
	 * to the first uncached one that has tokens */
	const int P = n_segs > 0 ? segs[0].n : 0;
	int s_end = 1, longest = 0;
	for (; s_end < n_segs && (segs[s_end].cached || segs[s_end].n == 0); s_end++) {
		const struct blend_seg *g = &segs[s_end];
		for (int i = 0; i < g->n; i++)
			if (kv->pos[g->slot0 + i] != P + i)
				return kb_fail(KB_ERR_ARG, "mode ape: the cache of prompt segment %d was not computed after "
					       "the %d-token prefix (token %d is at position %d)", s_end, P, i,
					       kv->pos[g->slot0 + i]);
		longest = g->n > longest ? g->n : longest;
	}
	for (int s = s_end; s < n_segs; s++)
		if (segs[s].cached && segs[s].n > 0)
			return kb_fail(KB_ERR_ARG, "mode ape: prompt segment %d is cached but follows uncached tokens "
				       "(the chunks must come right after the prefix)", s);
	const int c1 = s_end < n_segs ? segs[s_end].slot0 : N;
	/* positions: the prefix at 0.., the chunks as cached, the rest after the longest chunk */
	float *x = kb_aligned_alloc(64, (size_t)N * d * sizeof *x);
	int32_t *slots = kb_malloc((size_t)N * sizeof *slots);
	bool *use = kb_calloc((size_t)(n_segs ? n_segs : 1), sizeof *use);
	int rc = KB_ERR_NOMEM, n = 0;
	if (!x || !slots || !use)
		goto out;
	if (n_segs > 0 && !segs[0].cached)
		for (int i = 0; i < P; i++)
			kv->pos[i] = i, slots[n++] = i;
	for (int i = c1; i < N; i++)
		kv->pos[i] = P + longest + (i - c1), slots[n++] = i;
	if (n == 0 || slots[n - 1] != N - 1) {
		rc = kb_fail(KB_ERR_ARG, "the last token of the prompt must be computed (is the query empty?)");
		goto out;
	}
	/* no rotation: use[] is all false, the loader is still waited for */
	struct layer_prep prep = { .m = m, .kv = kv, .segs = segs, .n_segs = n_segs, .use = use, .ld = ld };
	struct kern_ape ape = { .ctx0 = P, .ctx1 = c1, .temp = o->ape_temp, .scale = o->ape_scale };
	for (int j = 0; j < n; j++)
		model_embed(m, kv->tok + slots[j], 1, x + (size_t)j * d);
	const struct kern_ape *saved = ws->ape;
	ws->ape = &ape;
	rc = run_layers(m, ws, kv, 0, m->hp.n_layer, x, slots, n, &prep);
	ws->ape = saved;
	if (rc)
		goto out;
	model_logits(m, ws, x + (size_t)(n - 1) * d, 1, logits);
	if (st)
		*st = (struct blend_stats){ .n_tokens = N, .n_cached = N - n, .n_selected = n,
					    .next_pos = kv->pos[N - 1] + 1, .ape = ape };
	rc = KB_OK;
out:
	free(x);
	free(slots);
	free(use);
	return rc;
}

int blend_prompt(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		 const struct blend_seg *segs, int n_segs, const struct blend_opts *o, float *logits,
		 struct blend_stats *st)
{
	return blend_prompt_loaded(m, ws, kv, segs, n_segs, o, NULL, logits, st);
}

int blend_prompt_loaded(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
			const struct blend_seg *segs, int n_segs, const struct blend_opts *o,
			const struct blend_loader *ld, float *logits, struct blend_stats *st)
{
	const int N = kv->n, d = m->hp.n_embd, kvd = kv->kv_dim;
	const enum blend_mode mode = o->mode;
	if (N <= 0)
		return kb_fail(KB_ERR_ARG, "the prompt is empty");
	if (N > ws->n_ctx)
		return kb_fail(KB_ERR_ARG, "a prompt of %d tokens exceeds the workspace context %d", N, ws->n_ctx);
	for (int s = 0, next = 0; s < n_segs; next += segs[s].n, s++)
		if (segs[s].slot0 != next || segs[s].n < 0)
			return kb_fail(KB_ERR_ARG, "prompt segment %d does not follow the one before", s);
	if (mode == BLEND_APE)
		return ape_prompt(m, ws, kv, segs, n_segs, o, ld, logits, st);
	if (!(o->ratio >= 0 && o->ratio <= 1))
		return kb_fail(KB_ERR_ARG, "recompute ratio %g is not in [0, 1]", o->ratio);
	if (o->check_layer < 0 || o->check_layer >= m->hp.n_layer)
		return kb_fail(KB_ERR_ARG, "check layer %d is not in [0, %d)", o->check_layer, m->hp.n_layer);

	/* what each slot is: reused from a cache, or recomputed at every layer */
	bool *reuse = kb_calloc((size_t)N, sizeof *reuse);
	float *x = kb_aligned_alloc(64, (size_t)N * d * sizeof *x);
	int32_t *slots = kb_malloc((size_t)N * sizeof *slots), *delta = kb_malloc((size_t)N * sizeof *delta);
	struct scored *sc = kb_malloc((size_t)N * sizeof *sc);
	bool *use = kb_calloc((size_t)(n_segs ? n_segs : 1), sizeof *use);
	float *ck = kb_malloc((size_t)N * kvd * sizeof *ck), *cv = kb_malloc((size_t)N * kvd * sizeof *cv);
	int rc = KB_ERR_NOMEM;
	if (!reuse || !x || !slots || !delta || !sc || !ck || !cv || !use)
		goto out;
	for (int s = 0; s < n_segs; s++) {
		const struct blend_seg *g = &segs[s];
		use[s] = g->cached && blend_seg_reused(mode, s, g->n);
		for (int i = 0; i < g->n; i++) {
			reuse[g->slot0 + i] = use[s] && !(mode == BLEND_EPIC && i < o->epic_k);
			delta[g->slot0 + i] = g->slot0 + i - kv->pos[g->slot0 + i];
		}
	}
	/* 1. cached keys move to their new positions layer by layer, as each
	 * layer's caches arrive (prepare_upto) */
	struct layer_prep prep = { .m = m, .kv = kv, .segs = segs, .n_segs = n_segs, .use = use,
				   .delta = delta, .ld = ld };
	for (int i = 0; i < N; i++)
		kv->pos[i] = i;

	int n_cached = 0;
	for (int i = 0; i < N; i++)
		n_cached += reuse[i];
	/* 3. the first layers for every token, when a deviation check is to be made */
	const bool check = mode == BLEND_BLEND && o->ratio > 0 && n_cached > 0;
	const int n_full = check ? o->check_layer : 0;
	model_embed(m, kv->tok, N, x);
	for (int i = 0; i < N; i++)
		slots[i] = i;
	if (check) {
		if ((rc = run_layers(m, ws, kv, 0, o->check_layer, x, slots, N, &prep)))
			goto out;
		/* keep the cached K/V of the check layer, compute the fresh ones
		 * (K/V projections only: the rest of the layer runs for the
		 * selected rows below), compare. Every row keeps its fresh K/V
		 * at this layer: it costs nothing more and is nearer full prefill. */
		const int l = o->check_layer;
		if ((rc = prepare_upto(&prep, l)))
			goto out;
		memcpy(ck, kv_k(kv, l, 0), (size_t)N * kvd * sizeof *ck);
		memcpy(cv, kv_v(kv, l, 0), (size_t)N * kvd * sizeof *cv);
		for (int b0 = 0; b0 < N; b0 += ws->n_batch) {
			int nb = N - b0 < ws->n_batch ? N - b0 : ws->n_batch;
			model_layer_kv(m, ws, l, x + (size_t)b0 * d, slots + b0, nb, kv);
		}
		select_deviating(kv, l, ck, cv, o, reuse, sc);
	}

	/* 4. the remaining layers for the selected rows only */
	int n = 0;
	for (int i = 0; i < N; i++) {
		if (!reuse[i]) {
			if (n != i)
				memcpy(x + (size_t)n * d, x + (size_t)i * d, (size_t)d * sizeof *x);
			slots[n++] = i;
		}
	}
	if (n == 0 || slots[n - 1] != N - 1) {
		rc = kb_fail(KB_ERR_ARG, "the last token of the prompt must be recomputed (is the query empty?)");
		goto out;
	}
	if ((rc = run_layers(m, ws, kv, n_full, m->hp.n_layer, x, slots, n, &prep)))
		goto out;

	/* 5. the first output token's logits */
	model_logits(m, ws, x + (size_t)(n - 1) * d, 1, logits);
	if (st)
		*st = (struct blend_stats){ .n_tokens = N, .n_cached = n_cached, .n_selected = n,
					    .n_full_layers = n_full, .next_pos = N };
	rc = KB_OK;
out:
	free(reuse);
	free(x);
	free(slots);
	free(delta);
	free(sc);
	free(ck);
	free(cv);
	free(use);
	return rc;
}
