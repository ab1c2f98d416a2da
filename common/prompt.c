/* prompt.c — see prompt.h. */
#include "prompt.h"

#include <string.h>

#include "kvfile.h"
#include "metrics.h"
#include "sample.h"
#include "template.h"

static struct prompt_seg *add_seg(struct prompt *p)
{
	if (kb_grow(&p->segs, &p->cap, p->n_segs, sizeof *p->segs, 16))
		return NULL;
	struct prompt_seg *g = &p->segs[p->n_segs++];
	memset(g, 0, sizeof *g);
	return g;
}

/* Append a segment of text's tokens (at most max when max > 0); with special,
 * special tokens are parsed outside text[plain, plain + plain_len). */
static int add_tokens(struct prompt *p, const struct model *m, const char *text, size_t len, bool bos,
		      bool special, size_t plain, size_t plain_len, bool cacheable, int max)
{
	struct prompt_seg *g = add_seg(p);
	if (!g)
		return KB_ERR_NOMEM;
	size_t n = 0;
	if (len > 0 || bos) {
		int rc = tok_encode_framed(m->tok, text, len, bos && tok_add_bos(m->tok), special, plain, plain_len,
					   &g->tok, &n);
		if (rc)
			return rc;
	}
	g->n = max > 0 && n > (size_t)max ? max : (int)n;
	g->cacheable = cacheable;
	p->n_tokens += g->n;
	return KB_OK;
}

int prompt_begin(struct prompt *p, const struct model *m, const char *template, const char *prefix,
		 const char *query)
{
	char *head;
	struct template_choice tc;
	int rc = template_resolve(template, m->gguf, &tc);
	if (rc == KB_OK)
		rc = template_frame(tc.name, prefix, query, &head, &p->tail, &p->spans);
	if (rc)
		return rc;
	if (p->special) /* the user's text too */
		p->spans.prefix_len = p->spans.query_len = 0;
	rc = add_tokens(p, m, head, strlen(head), true, true, p->spans.prefix_at, p->spans.prefix_len, true, 0);
	free(head);
	return rc;
}

int prompt_head(const struct model *m, const char *template, const char *prefix, bool special, int32_t **tok,
		int *n)
{
	struct prompt p = { .special = special };
	int rc = prompt_begin(&p, m, template, prefix, "?");
	if (rc == KB_OK) {
		*tok = p.segs[0].tok, *n = p.segs[0].n;
		p.segs[0].tok = NULL;
	}
	prompt_free(&p);
	return rc;
}

int prompt_add_text(struct prompt *p, const struct model *m, const char *text, size_t len, int max_tokens)
{
	return add_tokens(p, m, text, len, false, false, 0, 0, true, max_tokens);
}

/* Open g->path and read its first cache's header, which must be m's. */
static int open_kvc(struct prompt_seg *g, const struct model *m)
{
	const struct kvc_header *h;
	int rc = kvc_reader_open_file(&g->reader, g->path);
	if (rc == KB_OK && (rc = kvc_reader_next_header(g->reader, &h)) == KB_EOF)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': no cache in the stream", g->path);
	if (rc == KB_OK)
		rc = kvc_check_model(h, m->fingerprint, m->tok_fingerprint, m->hp.n_layer, m->hp.n_kv_head,
				     m->hp.head_dim);
	if (rc == KB_OK && kvc_is_sparse(h))
		rc = kb_fail(KB_ERR_ARG, "'%s': the cache is token-evicted; blending needs every token's K and V",
			     g->path);
	if (rc == KB_OK && g->tok && (h->n_tokens != g->n || memcmp(h->tokens, g->tok, (size_t)g->n * sizeof *g->tok)))
		rc = kb_fail(KB_ERR_MISMATCH, "'%s': the cache changed while it was used", g->path);
	if (rc) {
		kvc_reader_free(g->reader);
		g->reader = NULL;
		return rc;
	}
	g->h = h;
	return KB_OK;
}

int prompt_add_kvc(struct prompt *p, const struct model *m, const char *path)
{
	struct prompt_seg *g = add_seg(p);
	if (!g || !(g->path = strdup(path)))
		return KB_ERR_NOMEM;
	int rc = open_kvc(g, m);
	if (rc)
		return rc;
	g->n = g->h->n_tokens;
	g->cacheable = true;
	if (g->n > 0) {
		if (!(g->tok = kb_malloc((size_t)g->n * sizeof *g->tok)))
			return KB_ERR_NOMEM;
		memcpy(g->tok, g->h->tokens, (size_t)g->n * sizeof *g->tok);
	}
	p->n_tokens += g->n;
	return KB_OK;
}

int prompt_set_doc(struct prompt *p, const char *doc, int64_t seq)
{
	if (p->n_segs == 0)
		return kb_fail(KB_ERR_ARG, "no chunk to name the document of");
	struct prompt_seg *g = &p->segs[p->n_segs - 1];
	free(g->doc);
	if (!(g->doc = strdup(doc)))
		return KB_ERR_NOMEM;
	g->seq = seq;
	return KB_OK;
}

int prompt_end(struct prompt *p, const struct model *m)
{
	if (!p->tail)
		return kb_fail(KB_ERR_ARG, "prompt_end without prompt_begin");
	int rc = add_tokens(p, m, p->tail, strlen(p->tail), false, true, p->spans.query_at, p->spans.query_len,
			    false, 0);
	free(p->tail);
	p->tail = NULL;
	if (rc == KB_OK && p->segs[p->n_segs - 1].n == 0)
		rc = kb_fail(KB_ERR_ARG, "the query is empty");
	return rc;
}

int prompt_fit(const struct prompt *p, int n_ctx, int n_more)
{
	if (n_ctx <= 0 || (int64_t)p->n_tokens + n_more <= n_ctx)
		return KB_OK;
	if (n_more > 0)
		return kb_fail(KB_ERR_ARG, "the prompt has %d tokens and %d more are to be generated: %d, more than the "
			       "context of %d", p->n_tokens, n_more, p->n_tokens + n_more, n_ctx);
	return kb_fail(KB_ERR_ARG, "the prompt has %d tokens, more than the context of %d", p->n_tokens, n_ctx);
}

void prompt_tokens(const struct prompt *p, int32_t *out)
{
	for (size_t i = 0; i < p->n_segs; i++) {
		if (p->segs[i].n > 0)
			memcpy(out, p->segs[i].tok, (size_t)p->segs[i].n * sizeof *out);
		out += p->segs[i].n;
	}
}

void prompt_free(struct prompt *p)
{
	for (size_t i = 0; i < p->n_segs; i++) {
		free(p->segs[i].tok);
		free(p->segs[i].path);
		free(p->segs[i].doc);
		kvc_reader_free(p->segs[i].reader);
	}
	free(p->segs);
	free(p->tail);
	memset(p, 0, sizeof *p);
}

/* ---- the run ---- */

/* One attempt: the cached segments' K/V into kv (files now, the store's
 * pipelined), then the blend. *retry: a stored object failed and is gone. */
static int run_once(struct prompt *p, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		    struct chunkcache *cc, const struct blend_opts *o, float *logits, struct prompt_stats *st,
		    struct blend_seg *segs, struct chunkcache_part *cp, bool *retry)
{
	int slot = 0, n_cp = 0, rc = KB_OK;
	*retry = false;
	st->cache = (struct chunkcache_stats){ 0 }; /* the last attempt's */
	for (size_t i = 0; i < p->n_segs && rc == KB_OK; i++) {
		struct prompt_seg *g = &p->segs[i];
		if (g->n > 0)
			memcpy(kv->tok + slot, g->tok, (size_t)g->n * sizeof *kv->tok);
		const bool want = g->cacheable && blend_seg_reused(o->mode, (int)i, g->n);
		segs[i] = (struct blend_seg){ .slot0 = slot, .n = g->n, .cached = want };
		if (want && g->path) {
			if (!g->reader) /* read by an earlier attempt: open it again */
				rc = open_kvc(g, m);
			kv->n = slot;
			if (rc == KB_OK)
				rc = kvfile_read(g->reader, g->h, m, kv);
			kvc_reader_free(g->reader);
			g->reader = NULL;
		} else if (want) {
			cp[n_cp++] = (struct chunkcache_part){ .slot0 = slot, .tokens = g->tok, .n = g->n, .id = (int)i,
							       .doc = g->doc, .seq = g->seq };
		}
		slot += g->n;
	}
	if (rc)
		return rc;
	/* the stored caches load layer by layer while the first layers run */
	struct chunkcache_loading *ld;
	kv->n = 0;
	if ((rc = chunkcache_load_begin(cc, m, ws, kv, cp, n_cp, &st->cache, &ld)))
		return rc;
	const double t1 = kb_now();
	kv->n = p->n_tokens;
	struct blend_loader loader = { .wait_layer = chunkcache_wait_layer, .ctx = ld };
	rc = blend_prompt_loaded(m, ws, kv, segs, (int)p->n_segs, o, &loader, logits, &st->blend);
	int rc2 = chunkcache_load_end(ld, retry);
	st->t_blend = kb_now() - t1;
	return rc2 ? rc2 : rc;
}

/* ---- mode ape ----
 * The head's cache and each chunk's APE cache (chunkcache.h: the run head +
 * chunk) load into a staging cache (chunkcache_staging), one after the other;
 * as each layer arrives
 * the rows blend needs are copied into kv: the head's, and each chunk's own
 * (its run's rows after the head), with their positions (the chunk's from P). */
struct ape_copy {
	int from, to, n; /* scratch slots [from, from + n) go to kv's [to, to + n) */
};

struct ape_loading {
	struct chunkcache_loading *ld;
	const struct kv_cache *src;
	struct kv_cache *dst;
	const struct ape_copy *copies;
	int n_copies;
};

static int ape_wait_layer(void *ctx, int l)
{
	struct ape_loading *a = ctx;
	int rc = chunkcache_wait_layer(a->ld, l);
	for (int i = 0; i < a->n_copies && rc == KB_OK; i++)
		kv_copy_rows(a->dst, l, a->copies[i].to, a->src, a->copies[i].from, a->copies[i].n);
	return rc;
}

static int run_once_ape(struct prompt *p, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
			struct chunkcache *cc, const struct blend_opts *o, float *logits, struct prompt_stats *st,
			struct blend_seg *segs, struct chunkcache_part *cp, bool *retry)
{
	const struct prompt_seg *head = &p->segs[0];
	const int P = head->n;
	int slot = 0, n_cp = 0, n_scratch = 0, rc = KB_OK;
	*retry = false;
	st->cache = (struct chunkcache_stats){ 0 };
	for (size_t i = 0; i < p->n_segs; i++)
		n_scratch += p->segs[i].cacheable && p->segs[i].n > 0 ? P * (i > 0) + p->segs[i].n : 0;
	struct kv_cache *src = chunkcache_staging(cc, m, n_scratch > 0 ? n_scratch : 1);
	struct ape_copy *copies = kb_calloc(p->n_segs, sizeof *copies);
	int32_t **runs = kb_calloc(p->n_segs, sizeof *runs);
	if (!copies || !runs || !src)
		rc = KB_ERR_NOMEM;
	for (size_t i = 0, at = 0; i < p->n_segs && rc == KB_OK; i++) {
		const struct prompt_seg *g = &p->segs[i];
		if (g->n > 0)
			memcpy(kv->tok + slot, g->tok, (size_t)g->n * sizeof *kv->tok);
		const bool want = g->cacheable && g->n > 0;
		segs[i] = (struct blend_seg){ .slot0 = slot, .n = g->n, .cached = want };
		if (want && g->path) {
			rc = kb_fail(KB_ERR_ARG, "mode ape: chunk %zu comes from '%s', a cache computed alone; APE needs "
				     "each chunk's cache computed after the prefix (give the chunks as records)", i, g->path);
		} else if (want) {
			const int lead = i > 0 ? P : 0; /* the head's rows before a chunk's own */
			if (i > 0 && !(runs[i] = chunkcache_ape_tokens(head->tok, P, g->tok, g->n))) {
				rc = KB_ERR_NOMEM;
				break;
			}
			cp[n_cp++] = (struct chunkcache_part){ .slot0 = (int)at, .tokens = i > 0 ? runs[i] : g->tok,
							       .n = lead + g->n, .id = (int)i };
			copies[i] = (struct ape_copy){ .from = (int)at + lead, .to = slot, .n = g->n };
			at += (size_t)(lead + g->n);
		}
		slot += g->n;
	}
	struct chunkcache_loading *ld = NULL;
	if (rc == KB_OK && n_cp > 0)
		rc = chunkcache_load_begin(cc, m, ws, src, cp, n_cp, &st->cache, &ld);
	const double t1 = kb_now();
	if (rc == KB_OK) {
		/* tokens and positions are known once the loading has begun; K/V layer by layer */
		for (size_t i = 0; i < p->n_segs; i++)
			if (copies[i].n > 0)
				memcpy(kv->pos + copies[i].to, src->pos + copies[i].from, (size_t)copies[i].n * sizeof *kv->pos);
		kv->n = p->n_tokens;
		struct ape_loading al = { .ld = ld, .src = src, .dst = kv, .copies = copies, .n_copies = (int)p->n_segs };
		struct blend_loader loader = { .wait_layer = ape_wait_layer, .ctx = &al };
		rc = blend_prompt_loaded(m, ws, kv, segs, (int)p->n_segs, o, ld ? &loader : NULL, logits, &st->blend);
		int rc2 = chunkcache_load_end(ld, retry);
		rc = rc2 ? rc2 : rc;
	}
	st->t_blend = kb_now() - t1;
	for (size_t i = 0; runs && i < p->n_segs; i++)
		free(runs[i]);
	free(runs);
	free(copies);
	return rc;
}

int prompt_run(struct prompt *p, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
	       struct chunkcache *cc, const struct blend_opts *o, float *logits, struct prompt_stats *st)
{
	const double t0 = kb_now();
	*st = (struct prompt_stats){ 0 };
	if (p->n_tokens > kv->n_ctx)
		return kb_fail(KB_ERR_ARG, "the prompt has %d tokens, more than the cache's %d", p->n_tokens, kv->n_ctx);
	struct blend_seg *segs = kb_calloc(p->n_segs ? p->n_segs : 1, sizeof *segs);
	struct chunkcache_part *cp = kb_calloc(p->n_segs ? p->n_segs : 1, sizeof *cp);
	int rc = segs && cp ? KB_OK : KB_ERR_NOMEM;
	/* each retry follows a stored object removed: at most one per segment */
	for (size_t attempt = 0; rc == KB_OK; attempt++) {
		bool retry;
		rc = (o->mode == BLEND_APE ? run_once_ape : run_once)(p, m, ws, kv, cc, o, logits, st, segs, cp, &retry);
		if (rc == KB_OK || !retry || attempt >= p->n_segs)
			break;
		st->n_retries++;
		rc = KB_OK;
	}
	st->t_ttft = kb_now() - t0;
	free(segs);
	free(cp);
	return rc;
}

int prompt_verify(const struct model *m, struct model_ws *ws, struct kv_cache *kv, const float *logits,
		  struct prompt_fidelity *f)
{
	const int N = kv->n, V = m->hp.n_vocab;
	float *full = kb_malloc((size_t)V * sizeof *full);
	int32_t *pos = kb_malloc((size_t)(N ? N : 1) * sizeof *pos);
	int rc = full && pos ? KB_OK : KB_ERR_NOMEM;
	for (int i = 0; i < N && rc == KB_OK; i++)
		pos[i] = i;
	if (rc == KB_OK) {
		kv->n = 0;
		const double t0 = kb_now();
		rc = model_forward(m, ws, kv, kv->tok, pos, N, full, false);
		f->t_full = kb_now() - t0;
	}
	if (rc == KB_OK) {
		f->tok = sample_greedy(logits, V);
		f->tok_full = sample_greedy(full, V);
		f->kl = metrics_kl(full, logits, V);
	}
	free(full);
	free(pos);
	return rc;
}
