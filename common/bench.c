/* bench.c — see bench.h. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kvfile.h"
#include "metrics.h"
#include "sample.h"

/* ---- methods ---- */

int bench_methods_parse(const char *list, struct bench_method *ms, int *n_out)
{
	int n = 0;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", list);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == BENCH_MAX_METHODS)
			return kb_fail(KB_ERR_ARG, "--methods: at most %d methods", BENCH_MAX_METHODS);
		struct bench_method *me = &ms[n];
		memset(me, 0, sizeof *me);
		blend_opts_init(&me->bo);
		char label[sizeof me->label];
		snprintf(label, sizeof label, "%s", tok);
		/* +TYPE last: the prompt's cache through a .kvc of that dtype */
		me->kv_dtype = -1;
		char *plus = strrchr(tok, '+');
		if (plus && (me->kv_dtype = kvc_dtype_from_name(plus + 1)) >= 0) {
			*plus = '\0';
			char head[sizeof me->label];
			snprintf(head, sizeof head, "%.*s", (int)strcspn(tok, ":"), tok);
			if (strchr(tok, '+') || tokevict_policy_from_name(head) >= 0)
				return kb_fail(KB_ERR_ARG, "--methods %s: a method's cache is either token-evicted or "
					       "stored in another type, not both", label);
		}
		/* +POLICY:SHARE after the method, or POLICY:SHARE alone (after full) */
		char *ev = strchr(tok, '+'), *end;
		char *colon = strchr(tok, ':');
		if (!ev && tokevict_policy_from_name(colon ? (*colon = '\0', tok) : tok) >= 0) {
			if (colon)
				*colon = ':';
			ev = tok;
			tok = "full";
		} else if (colon && !ev) {
			*colon = ':';
		}
		if (ev) {
			if (ev != tok && *ev == '+')
				*ev++ = '\0';
			char *share = strchr(ev, ':');
			if (share)
				*share++ = '\0';
			int p = tokevict_policy_from_name(ev);
			if (p < 0)
				return kb_fail(KB_ERR_ARG, "--methods: unknown eviction policy '%s' (streamingllm, h2o, snapkv, "
					       "pyramidkv, tova, cake)", ev);
			double f = share ? strtod(share, &end) : NAN;
			if (!share || end == share || *end || !(f > 0 && f <= 1))
				return kb_fail(KB_ERR_ARG, "--methods %s:SHARE: the budget must be a share of the prompt in "
					       "(0, 1], like %s:0.2", ev, ev);
			me->evict = true;
			tokevict_opts_init(&me->te, (enum tokevict_policy)p);
			me->evict_share = f;
		}
		char *arg = strchr(tok, ':');
		if (arg)
			*arg++ = '\0';
		int mode = blend_mode_from_name(tok);
		if (mode < 0)
			return kb_fail(KB_ERR_ARG, "--methods: unknown method '%s' (full, prefix, reuse, blend[:RATIO[@LAYER]], epic[:K], "
				       "ape[:T[:S]])", tok);
		me->bo.mode = (enum blend_mode)mode;
		if (mode == BLEND_APE && me->evict)
			return kb_fail(KB_ERR_ARG, "--methods %s: token eviction does not go with mode ape (its cache keeps "
				       "the chunks' slots)", label);
		if (arg && mode == BLEND_BLEND) {
			double r = strtod(arg, &end);
			if (end == arg || (*end && *end != '@') || !(r >= 0 && r <= 1))
				return kb_fail(KB_ERR_ARG, "--methods blend:RATIO: '%s' is not a number in [0, 1]", arg);
			me->bo.ratio = (float)r;
			if (*end == '@') {
				const char *at = end + 1;
				long l = strtol(at, &end, 10);
				if (end == at || *end || l < 0 || l > 4095)
					return kb_fail(KB_ERR_ARG, "--methods blend:RATIO@LAYER: '%s' is not a layer number", at);
				me->bo.check_layer = (int)l;
			}
		} else if (arg && mode == BLEND_EPIC) {
			long k = strtol(arg, &end, 10);
			if (end == arg || *end || k < 0 || k > 1 << 20)
				return kb_fail(KB_ERR_ARG, "--methods epic:K: '%s' is not a number in [0, %d]", arg, 1 << 20);
			me->bo.epic_k = (int)k;
		} else if (arg && mode == BLEND_APE) {
			double t = strtod(arg, &end), sc = BLEND_APE_DEFAULT;
			const char *sv = *end == ':' ? end + 1 : NULL;
			bool bad = end == arg || (*end && !sv) || !(t >= BLEND_APE_MIN && t <= BLEND_APE_MAX);
			if (!bad && sv) {
				sc = strtod(sv, &end);
				bad = end == sv || *end || !(sc >= BLEND_APE_MIN && sc <= BLEND_APE_MAX);
			}
			if (bad)
				return kb_fail(KB_ERR_ARG, "--methods ape:T:S: '%s' is not a temperature and an optional scale, "
					       "each in [%g, %g]", arg, BLEND_APE_MIN, BLEND_APE_MAX);
			me->bo.ape_temp = (float)t;
			me->bo.ape_scale = (float)sc;
		} else if (arg) {
			return kb_fail(KB_ERR_ARG, "--methods: '%s' takes no ':' value", tok);
		}
		snprintf(me->label, sizeof me->label, "%s", label);
		me->listed = true;
		n++;
	}
	if (n == 0)
		return kb_fail(KB_ERR_ARG, "--methods: no methods");
	*n_out = n;
	return KB_OK;
}

/* ---- the answer ---- */

/* The generated answer, as CacheBlend's parse_generation reads it: the text up
 * to an end-of-generation token, leading newlines dropped, up to the next newline. */
struct answer {
	char *buf; /* owned */
	size_t len, cap, start;
	bool done;
};

static void answer_reset(struct answer *a)
{
	a->len = a->start = 0;
	a->done = false;
}

static int answer_push(struct answer *a, const struct tok *t, int32_t id)
{
	if (a->done)
		return KB_OK;
	if (tok_is_eog(t, id)) {
		a->done = true;
		return KB_OK;
	}
	size_t need = 64;
	for (;;) {
		if (a->len + need + 1 > a->cap) {
			char *nb = realloc(a->buf, 2 * (a->len + need + 1));
			if (!nb)
				return kb_fail(KB_ERR_NOMEM, "out of memory");
			a->buf = nb, a->cap = 2 * (a->len + need + 1);
		}
		size_t room = a->cap - a->len - 1;
		need = tok_decode(t, id, false, a->buf + a->len, room);
		if (need <= room)
			break;
	}
	a->len += need;
	a->buf[a->len] = '\0';
	while (a->start < a->len && a->buf[a->start] == '\n')
		a->start++;
	char *nl = memchr(a->buf + a->start, '\n', a->len - a->start);
	if (nl) {
		*nl = '\0';
		a->len = (size_t)(nl - a->buf);
		a->done = true;
	}
	return KB_OK;
}

static char *answer_text(const struct answer *a)
{
	return strdup(a->buf ? a->buf + a->start : "");
}

/* ---- peak RSS ---- */

/* Peak RSS (KiB) since the last reset. Linux lets a process reset its high-water
 * mark (/proc/self/clear_refs, 5); elsewhere it is the process's peak so far. */
static bool rss_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	bool ok = f && fputs("5", f) >= 0;
	if (f && fclose(f) != 0)
		ok = false;
	return ok;
}

static long rss_peak_kb(bool resettable)
{
	if (resettable) {
		FILE *f = fopen("/proc/self/status", "r");
		char line[256];
		long kb = -1;
		while (f && fgets(line, sizeof line, f))
			if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
				break;
		if (f)
			fclose(f);
		if (kb >= 0)
			return kb;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* ---- measuring ---- */

/* What one run needs, allocated once. */
struct bench {
	const struct bench_opts *o;
	const struct model *m;
	struct kv_cache kv;
	struct model_ws ws;
	int32_t *pos;       /* [n_ctx]: pos[i] = i */
	int shift;          /* a generated token's position - its slot: 0, but < 0 after mode ape */
	struct kern_ape ape; /* mode ape: the correction generated tokens keep (ws.ape points here) */
	int32_t *toks;      /* [n_ctx]: the prompt's tokens */
	int n_gen, n_vocab;
	float *logits;      /* [n_vocab] */
	/* the reference (full prefill) of the current question */
	float *ref_logits;  /* [n_gen + 1][n_vocab]: the next-token logits at each step */
	int32_t *ref_tok;   /* [n_gen + 1]: its greedy continuation, the first token first */
	int ref_steps;      /* steps in it (fewer than n_gen + 1 when it ended) */
	struct answer ans;
};

static void progress(const struct bench_opts *o, enum bench_progress kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void progress(const struct bench_opts *o, enum bench_progress kind, const char *fmt, ...)
{
	if (!o->progress)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	o->progress(o->progress_ctx, kind, msg);
}

static int step(struct bench *b, int32_t tok, int slot, float *logits)
{
	int32_t pos = b->pos[slot] + b->shift;
	return model_forward(b->m, &b->ws, &b->kv, &tok, &pos, 1, logits, false);
}

/* The answer of tokens[0..n) into sm->answer. */
static int answer_of(struct bench *b, struct bench_sample *sm, const int32_t *tokens, int n)
{
	int rc = KB_OK;
	answer_reset(&b->ans);
	for (int i = 0; i < n && !b->ans.done && rc == KB_OK; i++)
		rc = answer_push(&b->ans, b->m->tok, tokens[i]);
	if (rc == KB_OK && !(sm->answer = answer_text(&b->ans)))
		rc = KB_ERR_NOMEM;
	return rc;
}

/* Full prefill (the reference): time to first token, then the greedy
 * continuation with every step's logits kept, timed as decoding. */
static int run_full(struct bench *b, const struct bench_question *q, struct bench_sample *sm)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	prompt_tokens(&q->p, b->toks);
	b->kv.n = 0;
	double t0 = kb_now();
	int rc = model_forward(b->m, &b->ws, &b->kv, b->toks, b->pos, N, b->ref_logits, false);
	if (rc)
		return rc;
	sm->ttft = kb_now() - t0;
	sm->recompute = 1;
	sm->kv_kept = 1;

	b->ref_tok[0] = sample_greedy(b->ref_logits, V);
	int s = 1;
	double t = 0;
	while (s <= b->n_gen && !tok_is_eog(b->m->tok, b->ref_tok[s - 1])) {
		float *lg = b->ref_logits + (size_t)s * V;
		double t1 = kb_now();
		if ((rc = step(b, b->ref_tok[s - 1], N + s - 1, lg)))
			return rc;
		t += kb_now() - t1;
		b->ref_tok[s] = sample_greedy(lg, V);
		s++;
	}
	b->ref_steps = s;
	sm->decode_s = t;
	sm->decode_n = s - 1;
	sm->steps = sm->top1 = s;
	sm->first_agree = true;
	return answer_of(b, sm, b->ref_tok, s);
}

/* Teacher-forced: feed full's continuation, compare the next-token
 * distributions. *diverge: the first step where the argmax differs (-1:
 * none), *own this method's token there. */
static int follow_full(struct bench *b, int N, struct bench_sample *sm, int *diverge, int32_t *own)
{
	const int V = b->n_vocab;
	double t = 0;
	*diverge = -1;
	for (int s = 0; s < b->ref_steps; s++) {
		if (s > 0) {
			double t1 = kb_now();
			int rc = step(b, b->ref_tok[s - 1], N + s - 1, b->logits);
			if (rc)
				return rc;
			t += kb_now() - t1;
		}
		int32_t a = sample_greedy(b->logits, V);
		bool same = a == b->ref_tok[s];
		if (s == 0)
			sm->first_agree = same;
		sm->top1 += same;
		sm->kl += metrics_kl(b->ref_logits + (size_t)s * V, b->logits, V);
		if (!same && *diverge < 0)
			*diverge = s, *own = a;
	}
	sm->steps = b->ref_steps;
	sm->decode_s = t;
	sm->decode_n = b->ref_steps - 1;
	return KB_OK;
}

/* Token eviction of the prompt's cache in b->kv (me->te, to me->evict_share of
 * its tokens): the selection timed apart from the TTFT (it comes after the
 * first token); KV bytes kept into sm. */
static int evict_tokens(struct bench *b, const struct bench_method *me, struct bench_sample *sm)
{
	struct tokevict_opts te = me->te;
	const int n = b->kv.n;
	te.budget = (int)lround(me->evict_share * n);
	te.budget = te.budget < 1 ? 1 : te.budget > n ? n : te.budget;
	struct tokevict_sel sel;
	double t0 = kb_now();
	int rc = tokevict_run(b->m, &b->kv, &te, &sel);
	if (rc == KB_OK)
		rc = tokevict_apply(&b->kv, &sel);
	sm->evict_s = kb_now() - t0;
	if (rc == KB_OK) {
		long rows = 0;
		for (int l = 0; l < sel.n_layer; l++)
			rows += sel.rows[l];
		sm->kv_kept = (double)rows / ((double)sel.n_layer * n);
	}
	tokevict_sel_free(&sel);
	return rc;
}

/* The prompt's cache written as a .kvc of dtype and read back, as a cache
 * prefilled into a file of that type and decoded from it would be. */
static int kv_roundtrip(struct bench *b, int dtype)
{
	FILE *f = tmpfile();
	if (!f)
		return kb_fail(KB_ERR_IO, "a temporary file for the %s cache: %s", kvc_dtype_name(dtype), strerror(errno));
	struct kvc_header h;
	kvfile_header(&h, b->m, &b->kv, 0, b->kv.n, NULL, dtype, "kvblend-bench", 0, NULL);
	int rc = kvfile_write_fd(fileno(f), &h, &b->kv, 0);
	struct kvc_reader *r = NULL;
	const struct kvc_header *rh;
	if (rc == KB_OK && lseek(fileno(f), 0, SEEK_SET) != 0)
		rc = kb_fail(KB_ERR_IO, "the temporary %s cache: %s", kvc_dtype_name(dtype), strerror(errno));
	if (rc == KB_OK && (rc = kvc_reader_open_fd(&r, fileno(f), "the prompt's cache")) == KB_OK &&
	    (rc = kvc_reader_next_header(r, &rh)) == KB_OK) {
		b->kv.n = 0;
		rc = kvfile_read(r, rh, b->m, &b->kv);
	}
	kvc_reader_free(r);
	fclose(f);
	return rc;
}

/* A cached method: build the prompt's cache (timed to the first token); follow
 * full's continuation; then its own greedy answer, which is full's up to where
 * they first differ. */
static int run_method(struct bench *b, struct bench_question *q, const struct bench_method *me, struct bench_sample *sm)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	struct prompt_stats st;
	int rc = prompt_run(&q->p, b->m, &b->ws, &b->kv, b->o->cc, &me->bo, b->logits, &st);
	if (rc)
		return rc;
	sm->ttft = st.t_ttft;
	if (st.blend.ape.ctx1 > st.blend.ape.ctx0) { /* APE: generated tokens keep its positions and attention */
		b->ape = st.blend.ape;
		b->ws.ape = &b->ape;
		b->shift = st.blend.next_pos - N;
	}
	sm->load = st.cache.t_load + st.cache.t_compute;
	sm->kv_bytes = st.cache.bytes_read;
	sm->misses = st.cache.misses;
	/* the share of the layers' token rows computed: the layers before the
	 * check layer for every token, the others for the selected ones (the
	 * check layer's K/V projections of the others are not counted) */
	const int L = b->m->hp.n_layer, lf = st.blend.n_full_layers;
	sm->recompute = ((double)lf * N + (double)(L - lf) * st.blend.n_selected) / ((double)L * N);
	sm->kv_kept = 1;
	if (me->evict && (rc = evict_tokens(b, me, sm)))
		return rc;
	if (me->kv_dtype >= 0 && (rc = kv_roundtrip(b, me->kv_dtype)))
		return rc;
	const int base = b->kv.n; /* slots the prompt's cache takes (fewer than N when evicted) */

	int diverge;
	int32_t own = -1;
	rc = follow_full(b, N, sm, &diverge, &own);
	/* the answer: full's tokens before the first difference, then its own */
	answer_reset(&b->ans);
	for (int s = 0; s < (diverge < 0 ? b->ref_steps : diverge) && !b->ans.done && rc == KB_OK; s++)
		rc = answer_push(&b->ans, b->m->tok, b->ref_tok[s]);
	if (rc == KB_OK && diverge >= 0 && !b->ans.done) {
		b->kv.n = base + diverge;
		int32_t tok = own;
		for (int s = diverge; rc == KB_OK; s++) {
			if ((rc = answer_push(&b->ans, b->m->tok, tok)) || b->ans.done || s == b->n_gen)
				break;
			if ((rc = step(b, tok, N + s, b->logits)))
				break;
			tok = sample_greedy(b->logits, V);
		}
	}
	if (rc == KB_OK && !(sm->answer = answer_text(&b->ans)))
		rc = KB_ERR_NOMEM;
	kv_cache_shared_pos(&b->kv); /* the next method starts from an ordinary cache */
	b->ws.ape = NULL;
	b->shift = 0;
	return rc;
}

/* ---- the run ---- */

static int build_question(const struct bench_opts *o, const struct model *m, const struct dataset *d,
			  const struct dataset_item *it, struct bench_question *q)
{
	char *prefix = dataset_prefix(d, it), *query = dataset_query(d, it);
	int rc = prefix && query ? KB_OK : KB_ERR_NOMEM;
	q->it = it;
	if (rc == KB_OK)
		rc = prompt_begin(&q->p, m, o->template, prefix, query);
	int np = o->max_passages > 0 && o->max_passages < it->n_passages ? o->max_passages : it->n_passages;
	for (int i = 0; i < np && rc == KB_OK; i++) {
		char *c = dataset_chunk(d, it, i);
		rc = c ? prompt_add_text(&q->p, m, c, strlen(c), o->max_chunk_tokens) : KB_ERR_NOMEM;
		free(c);
	}
	if (rc == KB_OK && prompt_end(&q->p, m))
		rc = kb_fail(KB_ERR_ARG, "question %s: %s", it->id, kb_error());
	free(prefix), free(query);
	if (rc == KB_ERR_NOMEM)
		kb_fail(rc, "out of memory");
	return rc;
}

/* Every prompt, tokenized; those that do not fit the context are skipped. *max_n: the cache size needed. */
static int build_questions(const struct model *m, const struct dataset *d, const struct bench_opts *o,
			   struct bench_result *r, int *max_n)
{
	if (!(r->qs = kb_calloc((size_t)(d->n_items ? d->n_items : 1), sizeof *r->qs)))
		return KB_ERR_NOMEM;
	r->n_ctx = o->ctx ? o->ctx : m->hp.n_ctx_train;
	*max_n = 1;
	for (int i = 0; i < d->n_items; i++) {
		struct bench_question *q = &r->qs[r->n_q];
		int rc = build_question(o, m, d, &d->items[i], q);
		if (rc)
			return rc;
		int need = q->p.n_tokens + o->n_gen + 1;
		if (prompt_fit(&q->p, r->n_ctx, o->n_gen + 1)) {
			r->n_skipped++, r->max_skipped = need > r->max_skipped ? need : r->max_skipped;
			prompt_free(&q->p);
			continue;
		}
		*max_n = need > *max_n ? need : *max_n;
		r->mean_tokens += q->p.n_tokens;
		r->n_q++;
	}
	r->mean_tokens /= r->n_q ? r->n_q : 1;
	if (r->n_q == 0)
		return kb_fail(KB_ERR_ARG, "%d of %d questions skipped: prompts of up to %d tokens (with the %d generated) do "
			       "not fit the context of %d", r->n_skipped, d->n_items, r->max_skipped, o->n_gen + 1, r->n_ctx);
	return KB_OK;
}

static int alloc_run(struct bench *b, struct bench_result *r, int max_n)
{
	const size_t V = (size_t)b->n_vocab, G = (size_t)b->n_gen + 1;
	b->logits = kb_malloc(V * sizeof *b->logits);
	b->ref_logits = kb_malloc(G * V * sizeof *b->ref_logits);
	b->ref_tok = kb_malloc(G * sizeof *b->ref_tok);
	b->pos = kb_malloc((size_t)max_n * sizeof *b->pos);
	b->toks = kb_malloc((size_t)max_n * sizeof *b->toks);
	if (!b->logits || !b->ref_logits || !b->ref_tok || !b->pos || !b->toks)
		return KB_ERR_NOMEM;
	for (int i = 0; i < max_n; i++)
		b->pos[i] = i;
	for (int i = 0; i < r->n_m; i++)
		if (!(r->ms[i].q = kb_calloc((size_t)r->n_q, sizeof *r->ms[i].q)))
			return KB_ERR_NOMEM;
	int rc = kv_cache_init(&b->kv, b->m, max_n);
	return rc ? rc : model_ws_init(&b->ws, b->m, max_n < 512 ? max_n : 512, max_n);
}

/* The store holds every chunk cache before anything is timed (with a method
 * ape, each chunk's APE cache after its question's head too). */
static int warm_store(struct bench *b, struct bench_result *r)
{
	struct chunkcache_stats warm = { 0 };
	int done = 0;
	bool ape = false;
	for (int i = 0; i < r->n_m; i++)
		ape |= r->ms[i].bo.mode == BLEND_APE;
	for (int i = 0; i < r->n_q; i++)
		for (size_t k = 0; k < r->qs[i].p.n_segs; k++)
			r->n_chunks += (r->qs[i].p.segs[k].cacheable && r->qs[i].p.segs[k].n > 0) * (ape && k > 0 ? 2 : 1);
	for (int i = 0; i < r->n_q; i++)
		for (size_t k = 0; k < r->qs[i].p.n_segs; k++) {
			const struct prompt_seg *g = &r->qs[i].p.segs[k], *head = &r->qs[i].p.segs[0];
			if (!g->cacheable || g->n == 0)
				continue;
			for (int as_ape = 0; as_ape <= (ape && k > 0); as_ape++) {
				if (done % 16 == 0)
					progress(b->o, BENCH_TICK, "chunk caches into the store: %d/%d", done, r->n_chunks);
				int32_t *run = as_ape ? chunkcache_ape_tokens(head->tok, head->n, g->tok, g->n) : NULL;
				if (as_ape && !run)
					return KB_ERR_NOMEM;
				b->kv.n = 0;
				int rc = chunkcache_load(b->o->cc, b->m, &b->ws, &b->kv, 0, as_ape ? run : g->tok,
							 g->n + (as_ape ? head->n : 0), NULL, &warm);
				free(run);
				if (rc)
					return rc;
				done++;
			}
		}
	r->warm_misses = warm.misses, r->warm_hits = warm.hits, r->warm = warm;
	progress(b->o, BENCH_DONE, "%d chunk caches in the store (%d computed now, %d there already)", r->n_chunks,
		 warm.misses, warm.hits);
	/* page the weights in */
	const struct prompt_seg *g = &r->qs[0].p.segs[0];
	b->kv.n = 0;
	return model_forward(b->m, &b->ws, &b->kv, g->tok, b->pos, g->n < 64 ? g->n : 64, NULL, false);
}

/* Each question: the reference, then every other method on the same prompt. */
static int run_questions(struct bench *b, struct bench_result *r)
{
	double t0 = kb_now();
	for (int qi = 0; qi < r->n_q; qi++) {
		/* the time left, from the questions done so far */
		char left[48] = "";
		if (qi > 0)
			snprintf(left, sizeof left, ", about %.0f s left", (kb_now() - t0) / qi * (r->n_q - qi));
		const struct dataset_item *it = r->qs[qi].it;
		for (int i = -1; i < r->n_m; i++) {
			int mi = i < 0 ? r->full : i;
			if (i == r->full)
				continue;
			struct bench_method *me = &r->ms[mi];
			struct bench_sample *sm = &me->q[qi];
			progress(b->o, BENCH_STEP, "question %d/%d (%d tokens): %s%s", qi + 1, r->n_q, r->qs[qi].p.n_tokens,
				 me->label, left);
			r->rss_per_method = rss_reset();
			int rc = mi == r->full ? run_full(b, &r->qs[qi], sm) : run_method(b, &r->qs[qi], me, sm);
			if (rc)
				return rc;
			sm->peak_kb = rss_peak_kb(r->rss_per_method);
			if (it->task == DATASET_SUMMARY) {
				sm->quality = metrics_rouge_l_max(sm->answer, it->answers, it->n_answers);
				sm->exact_match = NAN;
			} else {
				sm->quality = metrics_f1_max(sm->answer, it->answers, it->n_answers);
				sm->exact_match = metrics_exact_match_max(sm->answer, it->answers, it->n_answers);
			}
		}
		for (int i = 0; i < r->n_m; i++)
			r->ms[i].q[qi].speedup = r->ms[r->full].q[qi].ttft / r->ms[i].q[qi].ttft;
	}
	return KB_OK;
}

/* ---- summaries, over every question and by kind ---- */

/* me over the questions qi[0..n) into *s; x: scratch of n doubles. */
static void summarize(const struct bench_method *me, const int *qi, int n, double *x, struct bench_summary *s)
{
	double quality = 0, em = 0, kl = 0, recompute = 0, decode_s = 0, kept = 0;
	long steps = 0, top1 = 0, decode_n = 0, peak_kb = 0;
	uint64_t kv_bytes = 0;
	int first = 0, misses = 0;
	for (int k = 0; k < n; k++) {
		const struct bench_sample *sm = &me->q[qi[k]];
		quality += sm->quality, em += sm->exact_match, kl += sm->kl, recompute += sm->recompute;
		steps += sm->steps, top1 += sm->top1, first += sm->first_agree;
		decode_s += sm->decode_s, decode_n += sm->decode_n;
		kv_bytes += sm->kv_bytes, misses += sm->misses, kept += sm->kv_kept;
		peak_kb = sm->peak_kb > peak_kb ? sm->peak_kb : peak_kb;
	}
	*s = (struct bench_summary){
		.decode_tps = decode_s > 0 ? decode_n / decode_s : NAN,
		.quality = quality / n,
		.exact_match = em / n,
		.first = (double)first / n,
		.top1 = steps ? (double)top1 / steps : NAN,
		.kl = steps ? kl / steps : NAN,
		.steps = steps,
		.recompute = recompute / n,
		.kv_mib = kv_bytes / 1048576.0 / n,
		.rss_mib = peak_kb / 1024.0,
		.misses = misses,
		.kv_kept = kept / n,
	};
	for (int k = 0; k < n; k++)
		x[k] = me->q[qi[k]].evict_s;
	s->evict_ms = me->evict ? 1e3 * metrics_quantile(x, n, 0.5) : NAN;
	/* the order statistics */
	for (int k = 0; k < n; k++)
		x[k] = me->q[qi[k]].ttft;
	s->ttft_p50 = 1e3 * metrics_quantile(x, n, 0.5);
	s->ttft_p90 = 1e3 * metrics_quantile(x, n, 0.9);
	for (int k = 0; k < n; k++)
		x[k] = me->q[qi[k]].load;
	s->load_p50 = 1e3 * metrics_quantile(x, n, 0.5);
	for (int k = 0; k < n; k++)
		x[k] = me->q[qi[k]].speedup;
	s->speedup = metrics_quantile(x, n, 0.5);
}

static const char *kind_of(const struct bench_question *q)
{
	return q->it->kind ? q->it->kind : "none";
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* r->groups: every question, then (when they carry more than one kind) each kind's. */
static int make_groups(struct bench_result *r)
{
	const char **kinds = kb_malloc((size_t)r->n_q * sizeof *kinds);
	if (!kinds)
		return KB_ERR_NOMEM;
	int n_kinds = 0;
	for (int qi = 0; qi < r->n_q; qi++) {
		const char *k = kind_of(&r->qs[qi]);
		int j = 0;
		while (j < n_kinds && strcmp(kinds[j], k) != 0)
			j++;
		if (j == n_kinds)
			kinds[n_kinds++] = k;
	}
	const int n_groups = n_kinds > 1 ? 1 + n_kinds : 1; /* (two kinds: one is a dataset's) */
	qsort(kinds, (size_t)n_kinds, sizeof *kinds, cmp_str);
	int rc = KB_OK;
	if (!(r->groups = kb_calloc((size_t)n_groups, sizeof *r->groups)))
		rc = KB_ERR_NOMEM;
	for (int g = 0; g < n_groups && rc == KB_OK; g++) {
		struct bench_group *gr = &r->groups[g];
		r->n_groups = g + 1;
		gr->kind = g ? kinds[g - 1] : NULL;
		if (!(gr->qi = kb_malloc((size_t)r->n_q * sizeof *gr->qi))) {
			rc = KB_ERR_NOMEM;
			break;
		}
		for (int qi = 0; qi < r->n_q; qi++)
			if (!gr->kind || !strcmp(kind_of(&r->qs[qi]), gr->kind)) {
				gr->qi[gr->n_q++] = qi;
				gr->mean_tokens += r->qs[qi].p.n_tokens;
			}
		gr->mean_tokens /= gr->n_q;
	}
	free(kinds);
	return rc;
}

/* Every method summarized over each group. */
static int summarize_groups(struct bench_result *r)
{
	int rc = make_groups(r);
	double *x = rc ? NULL : kb_malloc((size_t)r->n_q * sizeof *x);
	if (rc == KB_OK && !x)
		rc = KB_ERR_NOMEM;
	for (int g = 0; g < r->n_groups && rc == KB_OK; g++)
		for (int i = 0; i < r->n_m; i++)
			summarize(&r->ms[i], r->groups[g].qi, r->groups[g].n_q, x, &r->groups[g].sum[i]);
	free(x);
	return rc;
}

int bench_run(const struct model *m, const struct dataset *d, const struct bench_method *ms, int n_m,
	      const struct bench_opts *o, struct bench_result *r)
{
	memset(r, 0, sizeof *r);
	r->d = d;
	r->n_gen = o->n_gen;
	r->full = -1;
	for (int i = 0; i < n_m && i < BENCH_MAX_METHODS; i++) {
		r->ms[r->n_m++] = ms[i];
		if (ms[i].bo.mode == BLEND_FULL && !ms[i].evict && r->full < 0)
			r->full = i;
	}
	if (r->full < 0) { /* the reference runs anyway, unlisted */
		struct bench_method *f = &r->ms[r->full = r->n_m++];
		memset(f, 0, sizeof *f);
		blend_opts_init(&f->bo);
		f->bo.mode = BLEND_FULL;
		snprintf(f->label, sizeof f->label, "full");
	}
	struct bench b = { .o = o, .m = m, .n_gen = o->n_gen, .n_vocab = m->hp.n_vocab };
	int max_n, rc = build_questions(m, d, o, r, &max_n);
	if (rc == KB_OK && (rc = alloc_run(&b, r, max_n)) == KB_ERR_NOMEM)
		kb_fail(rc, "out of memory");
	if (rc == KB_OK)
		rc = warm_store(&b, r);
	if (rc == KB_OK)
		rc = run_questions(&b, r);
	if (rc == KB_OK && (rc = summarize_groups(r)) == KB_ERR_NOMEM)
		kb_fail(rc, "out of memory");
	free(b.ans.buf), free(b.logits), free(b.ref_logits), free(b.ref_tok), free(b.pos), free(b.toks);
	kv_cache_free(&b.kv);
	model_ws_free(&b.ws);
	return rc;
}

void bench_result_free(struct bench_result *r)
{
	for (int i = 0; i < r->n_m; i++) {
		struct bench_method *me = &r->ms[i];
		for (int qi = 0; me->q && qi < r->n_q; qi++)
			free(me->q[qi].answer);
		free(me->q);
	}
	for (int g = 0; g < r->n_groups; g++)
		free(r->groups[g].qi);
	free(r->groups);
	for (int i = 0; r->qs && i < r->d->n_items; i++)
		prompt_free(&r->qs[i].p);
	free(r->qs);
	memset(r, 0, sizeof *r);
}
