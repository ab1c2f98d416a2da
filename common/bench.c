/* bench.c — see bench.h. */
#include "bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>

#include "metrics.h"
#include "plot.h"
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
		char *arg = strchr(tok, ':'), *end;
		if (arg)
			*arg++ = '\0';
		int mode = blend_mode_from_name(tok);
		if (mode < 0)
			return kb_fail(KB_ERR_ARG, "--methods: unknown method '%s' (full, prefix, reuse, blend[:RATIO], epic[:K])", tok);
		me->bo.mode = (enum blend_mode)mode;
		if (arg && mode == BLEND_BLEND) {
			double r = strtod(arg, &end);
			if (end == arg || *end || !(r >= 0 && r <= 1))
				return kb_fail(KB_ERR_ARG, "--methods blend:RATIO: '%s' is not a number in [0, 1]", arg);
			me->bo.ratio = (float)r;
		} else if (arg && mode == BLEND_EPIC) {
			long k = strtol(arg, &end, 10);
			if (end == arg || *end || k < 0 || k > 1 << 20)
				return kb_fail(KB_ERR_ARG, "--methods epic:K: '%s' is not a number in [0, %d]", arg, 1 << 20);
			me->bo.epic_k = (int)k;
		} else if (arg) {
			return kb_fail(KB_ERR_ARG, "--methods: '%s' takes no ':' value", tok);
		}
		snprintf(me->label, sizeof me->label, "%s%s%s", tok, arg ? ":" : "", arg ? arg : "");
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
	return model_forward(b->m, &b->ws, &b->kv, &tok, &b->pos[slot], 1, logits, false);
}

/* The answer of tokens[0..n) into me->answer[qi]. */
static int answer_of(struct bench *b, struct bench_method *me, int qi, const int32_t *tokens, int n)
{
	int rc = KB_OK;
	answer_reset(&b->ans);
	for (int i = 0; i < n && !b->ans.done && rc == KB_OK; i++)
		rc = answer_push(&b->ans, b->m->tok, tokens[i]);
	if (rc == KB_OK && !(me->answer[qi] = answer_text(&b->ans)))
		rc = KB_ERR_NOMEM;
	return rc;
}

/* Full prefill (the reference): time to first token, then the greedy
 * continuation with every step's logits kept, timed as decoding. */
static int run_full(struct bench *b, const struct bench_question *q, int qi, struct bench_method *me)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	prompt_tokens(&q->p, b->toks);
	b->kv.n = 0;
	double t0 = kb_now();
	int rc = model_forward(b->m, &b->ws, &b->kv, b->toks, b->pos, N, b->ref_logits, false);
	if (rc)
		return rc;
	me->ttft[qi] = kb_now() - t0;
	me->recompute += 1;

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
	me->decode_s += t;
	me->decode_n += s - 1;
	me->steps += s;
	me->top1 += s;
	me->first_agree[qi] = true;
	return answer_of(b, me, qi, b->ref_tok, s);
}

/* Teacher-forced: feed full's continuation, compare the next-token
 * distributions. *diverge: the first step where the argmax differs (-1:
 * none), *own this method's token there. */
static int follow_full(struct bench *b, int N, int qi, struct bench_method *me, int *diverge, int32_t *own)
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
			me->first_agree[qi] = same;
		me->top1 += same;
		me->kl += metrics_kl(b->ref_logits + (size_t)s * V, b->logits, V);
		if (!same && *diverge < 0)
			*diverge = s, *own = a;
	}
	me->steps += b->ref_steps;
	me->decode_s += t;
	me->decode_n += b->ref_steps - 1;
	return KB_OK;
}

/* A cached method: build the prompt's cache (timed to the first token); follow
 * full's continuation; then its own greedy answer, which is full's up to where
 * they first differ. */
static int run_method(struct bench *b, struct bench_question *q, int qi, struct bench_method *me)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	struct prompt_stats st;
	int rc = prompt_run(&q->p, b->m, &b->ws, &b->kv, b->o->cc, &me->bo, b->logits, &st);
	if (rc)
		return rc;
	me->ttft[qi] = st.t_ttft;
	me->load[qi] = st.cache.t_load + st.cache.t_compute;
	me->kv_bytes += st.cache.bytes_read;
	me->misses += st.cache.misses;
	me->recompute += (double)st.blend.n_selected / N;

	int diverge;
	int32_t own = -1;
	if ((rc = follow_full(b, N, qi, me, &diverge, &own)))
		return rc;
	/* the answer: full's tokens before the first difference, then its own */
	answer_reset(&b->ans);
	for (int s = 0; s < (diverge < 0 ? b->ref_steps : diverge) && !b->ans.done && rc == KB_OK; s++)
		rc = answer_push(&b->ans, b->m->tok, b->ref_tok[s]);
	if (diverge >= 0 && !b->ans.done) {
		b->kv.n = N + diverge;
		int32_t tok = own;
		for (int s = diverge; rc == KB_OK; s++) {
			if ((rc = answer_push(&b->ans, b->m->tok, tok)) || b->ans.done || s == b->n_gen)
				break;
			if ((rc = step(b, tok, N + s, b->logits)))
				break;
			tok = sample_greedy(b->logits, V);
		}
	}
	if (rc == KB_OK && !(me->answer[qi] = answer_text(&b->ans)))
		rc = KB_ERR_NOMEM;
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
	for (int i = 0; i < r->n_m; i++) {
		struct bench_method *me = &r->ms[i];
		const size_t n = (size_t)r->n_q;
		me->ttft = kb_calloc(n, sizeof *me->ttft);
		me->speedup = kb_calloc(n, sizeof *me->speedup);
		me->load = kb_calloc(n, sizeof *me->load);
		me->quality = kb_calloc(n, sizeof *me->quality);
		me->answer = kb_calloc(n, sizeof *me->answer);
		me->first_agree = kb_calloc(n, sizeof *me->first_agree);
		if (!me->ttft || !me->speedup || !me->load || !me->quality || !me->answer || !me->first_agree)
			return KB_ERR_NOMEM;
	}
	int rc = kv_cache_init(&b->kv, b->m, max_n);
	return rc ? rc : model_ws_init(&b->ws, b->m, max_n < 512 ? max_n : 512, max_n);
}

/* The store holds every chunk cache before anything is timed. */
static int warm_store(struct bench *b, struct bench_result *r)
{
	struct chunkcache_stats warm = { 0 };
	int done = 0;
	for (int i = 0; i < r->n_q; i++)
		for (size_t k = 0; k < r->qs[i].p.n_segs; k++)
			r->n_chunks += r->qs[i].p.segs[k].cacheable && r->qs[i].p.segs[k].n > 0;
	for (int i = 0; i < r->n_q; i++)
		for (size_t k = 0; k < r->qs[i].p.n_segs; k++) {
			const struct prompt_seg *g = &r->qs[i].p.segs[k];
			if (!g->cacheable || g->n == 0)
				continue;
			if (done % 16 == 0)
				progress(b->o, BENCH_TICK, "chunk caches into the store: %d/%d", done, r->n_chunks);
			b->kv.n = 0;
			int rc = chunkcache_load(b->o->cc, b->m, &b->ws, &b->kv, 0, g->tok, g->n, NULL, &warm);
			if (rc)
				return rc;
			done++;
		}
	r->warm_misses = warm.misses, r->warm_hits = warm.hits;
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
			progress(b->o, BENCH_STEP, "question %d/%d (%d tokens): %s%s", qi + 1, r->n_q, r->qs[qi].p.n_tokens,
				 me->label, left);
			r->rss_per_method = rss_reset();
			int rc = mi == r->full ? run_full(b, &r->qs[qi], qi, me) : run_method(b, &r->qs[qi], qi, me);
			if (rc)
				return rc;
			long kb = rss_peak_kb(r->rss_per_method);
			me->peak_kb = kb > me->peak_kb ? kb : me->peak_kb;
			me->quality[qi] = it->task == DATASET_SUMMARY
						  ? metrics_rouge_l_max(me->answer[qi], it->answers, it->n_answers)
						  : metrics_f1_max(me->answer[qi], it->answers, it->n_answers);
		}
		for (int i = 0; i < r->n_m; i++)
			r->ms[i].speedup[qi] = r->ms[r->full].ttft[qi] / r->ms[i].ttft[qi];
	}
	return KB_OK;
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
		if (ms[i].bo.mode == BLEND_FULL && r->full < 0)
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
	free(b.ans.buf), free(b.logits), free(b.ref_logits), free(b.ref_tok), free(b.pos), free(b.toks);
	kv_cache_free(&b.kv);
	model_ws_free(&b.ws);
	return rc;
}

void bench_result_free(struct bench_result *r)
{
	for (int i = 0; i < r->n_m; i++) {
		struct bench_method *me = &r->ms[i];
		for (int qi = 0; me->answer && qi < r->n_q; qi++)
			free(me->answer[qi]);
		free(me->answer), free(me->ttft), free(me->load), free(me->speedup), free(me->quality), free(me->first_agree);
	}
	for (int i = 0; r->qs && i < r->d->n_items; i++)
		prompt_free(&r->qs[i].p);
	free(r->qs);
	memset(r, 0, sizeof *r);
}

/* ---- output ---- */

struct summary {
	double ttft_p50, ttft_p90, load_p50, speedup, decode_tps, quality, first, top1, kl, recompute, kv_mib, rss_mib;
};

static void summarize(const struct bench_method *me, int n_q, struct summary *s)
{
	int nf = 0;
	double q = 0;
	for (int i = 0; i < n_q; i++)
		nf += me->first_agree[i], q += me->quality[i];
	*s = (struct summary){
		.ttft_p50 = 1e3 * metrics_quantile(me->ttft, n_q, 0.5),
		.ttft_p90 = 1e3 * metrics_quantile(me->ttft, n_q, 0.9),
		.load_p50 = 1e3 * metrics_quantile(me->load, n_q, 0.5),
		.speedup = metrics_quantile(me->speedup, n_q, 0.5),
		.decode_tps = me->decode_s > 0 ? me->decode_n / me->decode_s : NAN,
		.quality = q / n_q,
		.first = (double)nf / n_q,
		.top1 = me->steps ? (double)me->top1 / me->steps : NAN,
		.kl = me->steps ? me->kl / me->steps : NAN,
		.recompute = me->recompute / n_q,
		.kv_mib = me->kv_bytes / 1048576.0 / n_q,
		.rss_mib = me->peak_kb / 1024.0,
	};
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static int written(FILE *f)
{
	return ferror(f) ? kb_fail(KB_ERR_IO, "write: %s", strerror(errno)) : KB_OK;
}

int bench_print_table(FILE *f, const struct bench_result *r, const char *model, const char *dataset)
{
	const struct dataset *d = r->d;
	fprintf(f, "# %s on %s (%s, %s): %d questions, %.0f prompt tokens on average, %d threads, %d tokens generated\n",
		base_name(model), base_name(dataset), d->name, dataset_task_name(d->items[0].task), r->n_q,
		r->mean_tokens, kb_get_threads(), r->n_gen + 1);
	fprintf(f, "%-12s %9s %9s %8s %8s %10s %7s %9s %11s %9s %9s %8s %12s\n", "method", "TTFT ms", "p90 ms", "load ms",
		"speedup", "decode t/s", d->items[0].task == DATASET_SUMMARY ? "Rouge-L" : "F1", "1st agree",
		"top-1 agree", "KL", "recompute", "KV MiB/q", "peak RSS MiB");
	for (int i = 0; i < r->n_m; i++) {
		if (!r->ms[i].listed)
			continue;
		struct summary s;
		summarize(&r->ms[i], r->n_q, &s);
		fprintf(f, "%-12s %9.1f %9.1f %8.1f %7.2fx %10.1f %7.3f %9.3f %11.3f %9.5f %8.1f%% %8.2f %12.1f\n",
			r->ms[i].label, s.ttft_p50, s.ttft_p90, s.load_p50, s.speedup, s.decode_tps, s.quality, s.first, s.top1,
			s.kl, 100 * s.recompute, s.kv_mib, s.rss_mib);
	}
	return written(f);
}

int bench_print_tsv(FILE *f, const struct bench_result *r)
{
	fprintf(f, "method\tmode\tratio\tttft_ms_median\tttft_ms_p90\tload_ms_median\tspeedup\tdecode_tps\tquality"
		   "\tfirst_token_agreement\ttop1_agreement\tkl\trecompute\tkv_mib_per_question\tpeak_rss_mib\n");
	for (int i = 0; i < r->n_m; i++) {
		const struct bench_method *me = &r->ms[i];
		if (!me->listed)
			continue;
		struct summary s;
		summarize(me, r->n_q, &s);
		fprintf(f, "%s\t%s\t%g\t%.3f\t%.3f\t%.3f\t%.4f\t%.2f\t%.4f\t%.4f\t%.4f\t%.6g\t%.4f\t%.3f\t%.1f\n", me->label,
			blend_mode_name(me->bo.mode), me->bo.mode == BLEND_BLEND ? me->bo.ratio : NAN, s.ttft_p50,
			s.ttft_p90, s.load_p50, s.speedup, s.decode_tps, s.quality, s.first, s.top1, s.kl, s.recompute,
			s.kv_mib, s.rss_mib);
	}
	return written(f);
}

/* A number for JSON: null when it is not one. */
static json_t *jnum(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static json_t *json_method(const struct bench_method *me, int n_q, enum dataset_task task)
{
	struct summary s;
	summarize(me, n_q, &s);
	json_t *j = json_pack("{s:s, s:s}", "method", me->label, "mode", blend_mode_name(me->bo.mode));
	if (me->bo.mode == BLEND_BLEND)
		json_object_set_new(j, "ratio", json_real(round(me->bo.ratio * 1e6) / 1e6));
	if (me->bo.mode == BLEND_EPIC)
		json_object_set_new(j, "epic_k", json_integer(me->bo.epic_k));
	json_object_set_new(j, "ttft_ms_median", jnum(s.ttft_p50));
	json_object_set_new(j, "ttft_ms_p90", jnum(s.ttft_p90));
	json_object_set_new(j, "load_ms_median", jnum(s.load_p50));
	json_object_set_new(j, "speedup", jnum(s.speedup));
	json_object_set_new(j, "decode_tps", jnum(s.decode_tps));
	json_object_set_new(j, task == DATASET_SUMMARY ? "rouge_l" : "f1", jnum(s.quality));
	json_object_set_new(j, "first_token_agreement", jnum(s.first));
	json_object_set_new(j, "top1_agreement", jnum(s.top1));
	json_object_set_new(j, "kl", jnum(s.kl));
	json_object_set_new(j, "steps", json_integer(me->steps));
	json_object_set_new(j, "recompute", jnum(s.recompute));
	json_object_set_new(j, "kv_mib_per_question", jnum(s.kv_mib));
	json_object_set_new(j, "store_misses", json_integer(me->misses));
	json_object_set_new(j, "peak_rss_mib", jnum(s.rss_mib));
	return j;
}

static json_t *json_question(const struct bench_result *r, int qi, enum dataset_task task)
{
	const struct dataset_item *it = r->qs[qi].it;
	json_t *golds = json_array(), *res = json_object();
	for (int k = 0; k < it->n_answers; k++)
		json_array_append_new(golds, json_string(it->answers[k]));
	for (int i = 0; i < r->n_m; i++) {
		const struct bench_method *me = &r->ms[i];
		if (!me->listed)
			continue;
		json_object_set_new(res, me->label,
				    json_pack("{s:o, s:s, s:o, s:b}", "ttft_ms", jnum(1e3 * me->ttft[qi]), "answer",
					      me->answer[qi], task == DATASET_SUMMARY ? "rouge_l" : "f1",
					      jnum(me->quality[qi]), "first_token_agrees", me->first_agree[qi]));
	}
	return json_pack("{s:s, s:s, s:o, s:i, s:i, s:o}", "id", it->id, "question", it->question, "answers", golds,
			 "passages", (int)r->qs[qi].p.n_segs - 2, "tokens", r->qs[qi].p.n_tokens, "methods", res);
}

int bench_print_json(FILE *f, const struct bench_result *r, const char *model, const char *dataset,
		     const char *template)
{
	const struct dataset *d = r->d;
	const enum dataset_task task = d->items[0].task;
	json_t *methods = json_array(), *questions = json_array();
	for (int i = 0; i < r->n_m; i++)
		if (r->ms[i].listed)
			json_array_append_new(methods, json_method(&r->ms[i], r->n_q, task));
	for (int qi = 0; qi < r->n_q; qi++)
		json_array_append_new(questions, json_question(r, qi, task));
	json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:b, s:o, s:o}", "model",
				 base_name(model), "dataset", base_name(dataset), "name", d->name, "format",
				 dataset_format_name(d->format), "task", dataset_task_name(task), "questions", r->n_q,
				 "threads", kb_get_threads(), "n_gen", r->n_gen, "template", template, "rss_per_method",
				 r->rss_per_method, "methods", methods, "per_question", questions);
	int rc = root && json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) == 0
			 ? KB_OK : kb_fail(KB_ERR_IO, "cannot write the JSON output");
	json_decref(root);
	fputc('\n', f);
	return rc ? rc : written(f);
}

static const char *method_color(enum blend_mode mode)
{
	switch (mode) {
	case BLEND_FULL: return "#222222";
	case BLEND_PREFIX: return "#8c6d31";
	case BLEND_REUSE: return "#d62728";
	case BLEND_EPIC: return "#2ca02c";
	default: return "#1f77b4";
	}
}

int bench_plot(FILE *f, const struct bench_result *r, const char *model, const char *dataset)
{
	struct plot_point pts[BENCH_MAX_METHODS + 1];
	int n = 0;
	for (int i = 0; i < r->n_m; i++) {
		if (!r->ms[i].listed)
			continue;
		struct summary s;
		summarize(&r->ms[i], r->n_q, &s);
		pts[n++] = (struct plot_point){ .x = s.ttft_p50, .y = s.top1, .label = r->ms[i].label,
						.color = method_color(r->ms[i].bo.mode) };
	}
	char sub[512], foot[256];
	const int nt = kb_get_threads();
	snprintf(sub, sizeof sub, "%s on %s: %d question%s, %d thread%s", base_name(model), base_name(dataset), r->n_q,
		 r->n_q == 1 ? "" : "s", nt, nt == 1 ? "" : "s");
	snprintf(foot, sizeof foot, "agreement over the first token and %d teacher-forced steps; time to first token "
		 "includes reading the chunk caches from the store", r->n_gen);
	const struct plot p = {
		.title = "Time to first token vs fidelity to full prefill", .subtitle = sub, .footnote = foot,
		.xlabel = "time to first token, median over questions (ms)",
		.xlabel_log = "time to first token, median over questions (ms, log scale)",
		.ylabel = "top-1 agreement with full prefill", .y_top = 1, .pts = pts, .n = n,
	};
	return plot_write_svg(f, &p);
}
