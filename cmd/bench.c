/* kvblend-bench — measurements side by side.
 *
 * --speed: prompt processing and generation throughput of a model, as
 * llama-bench measures them (random token ids; pp = one prompt of N tokens in
 * batches of 512 from an empty cache; tg = N single-token steps from an empty
 * cache).
 *
 * --dataset FILE: every method (full prefill, prefix caching, full reuse,
 * CacheBlend at several ratios, EPIC) on the same questions, as the CacheBlend
 * evaluation runs them: the chunk caches are put in the store first, then for
 * each question each method builds the prompt's cache (reading chunk caches
 * from the store) and is timed to its first token; then fidelity to full
 * prefill along a teacher-forced continuation, the answer's F1 (or Rouge-L),
 * decode speed, KV bytes read and peak memory.
 */
#include <math.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "prompt.h"
#include "sample.h"
#include "template.h"

static const struct option longopts[] = {
	{ "speed", no_argument, NULL, 'S' },
	{ "dataset", required_argument, NULL, 'd' },
	{ "model", required_argument, NULL, 'm' },
	{ "n-prompt", required_argument, NULL, 'p' },
	{ "n-gen", required_argument, NULL, 'n' },
	{ "reps", required_argument, NULL, 'r' },
	{ "threads", required_argument, NULL, 't' },
	{ "batch", required_argument, NULL, 'b' },
	{ "limit", required_argument, NULL, 'L' },
	{ "methods", required_argument, NULL, 'M' },
	{ "max-chunk-tokens", required_argument, NULL, 'X' },
	{ "max-passages", required_argument, NULL, 'P' },
	{ "template", required_argument, NULL, 'E' },
	{ "ctx", required_argument, NULL, 'C' },
	{ "store", required_argument, NULL, 's' },
	{ "dtype", required_argument, NULL, 'Y' },
	{ "json", no_argument, NULL, 'j' },
	{ "tsv", no_argument, NULL, 'T' },
	{ "plot", required_argument, NULL, 'G' },
	{ "progress", no_argument, NULL, 'R' },
	{ "quiet", no_argument, NULL, 'Q' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

#define DEFAULT_METHODS "full,prefix,reuse,blend:0.05,blend:0.15,blend:0.3,epic"

static void usage(void)
{
	printf("usage: kvblend bench --speed -m MODEL [options]\n"
	       "       kvblend bench --dataset FILE -m MODEL [options]\n"
	       "Prompt processing (pp) and generation (tg) tokens/s of a model (--speed), or time to\n"
	       "first token and quality of each way of building a RAG prompt's cache (--dataset).\n\n"
	       "  -m, --model FILE          GGUF model\n"
	       "  -t, --threads N           threads (default: all cores)\n"
	       "      --tsv                 tab-separated output for scripts\n"
	       "--speed:\n"
	       "      --n-prompt LIST       prompt sizes, comma-separated (default 512,2048; 0 = none)\n"
	       "      --n-gen LIST          generation lengths (default 128; 0 = none)\n"
	       "  -r, --reps N              repetitions of each test (default 3)\n"
	       "  -b, --batch N             prompt batch size (default 512)\n"
	       "--dataset FILE (CacheBlend JSON/JSONL, HotpotQA IRCoT, LongBench multi_news, SAMSum):\n"
	       "      --limit N             the first N questions (default all)\n"
	       "      --methods LIST        full, prefix, reuse, blend[:RATIO], epic[:K], comma-separated\n"
	       "                            (default " DEFAULT_METHODS ")\n"
	       "      --max-passages N      the first N passages of each question (default all)\n"
	       "      --max-chunk-tokens N  cut each passage to N tokens (default: no cut)\n"
	       "      --template NAME       plain (default), chatml, llama3 or mistral\n"
	       "      --ctx N               skip questions whose prompt and answer do not fit N tokens\n"
	       "                            (default: the model's context)\n"
	       "      --store DIR           the chunk-cache store (default $KVBLEND_STORE or\n"
	       "                            $XDG_CACHE_HOME/kvblend)\n"
	       "      --dtype TYPE          f16 (default), bf16, f32 or q8_0 for caches put in the store\n"
	       "      --n-gen N             tokens generated after the first (default 32)\n"
	       "  -j, --json                JSON output (methods and every question)\n"
	       "      --plot FILE.svg       plot time to first token against top-1 agreement\n"
	       "      --progress            progress on stderr even when it is not a terminal\n"
	       "      --quiet               no progress\n"
	       "  -h, --help                this help\n"
	       "      --version             the version\n");
}

static const struct cli_values values[] = {
	{ "--methods", "full prefix reuse blend epic" },
	{ "--template", "plain chatml llama3 mistral" },
	{ "--dtype", "f16 bf16 f32 q8_0" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-bench", "m:r:t:b:jh", longopts, usage, values };

/* ---- --speed ---- */

static int parse_list(const char *opt, const char *s, int *out, int cap)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		if (n == cap)
			cli_usage_error("%s: at most %d values", opt, cap);
		int v = (int)cli_long(opt, tok, 0, 1 << 20);
		if (v > 0)
			out[n++] = v;
	}
	return n;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static int32_t rand_token(int n_vocab)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (int32_t)(rng % (uint64_t)n_vocab);
}

/* Seconds for one test: pp (n tokens as a prompt) or tg (n single steps). */
static double run_once(const struct model *m, struct model_ws *ws, struct kv_cache *kv, bool pp, int n,
		       int32_t *toks, int32_t *pos)
{
	kv->n = 0;
	for (int i = 0; i < n; i++)
		toks[i] = rand_token(m->hp.n_vocab), pos[i] = i;
	double t0 = kb_now();
	if (pp) {
		if (model_forward(m, ws, kv, toks, pos, n, ws->logits, false))
			cli_die("%s", kb_error());
	} else {
		for (int i = 0; i < n; i++)
			if (model_forward(m, ws, kv, &toks[i], &pos[i], 1, ws->logits, false))
				cli_die("%s", kb_error());
	}
	return kb_now() - t0;
}

struct opts {
	const char *model, *dataset, *methods, *template, *store, *plot, *n_gen;
	int pp[16], n_pp, reps, threads, batch, limit, max_chunk_tokens, max_passages, dtype, ctx;
	bool speed, tsv, json, progress, quiet, speed_only;
};

static void bench_speed(const struct opts *o)
{
	int tg[16] = { 128 }, n_tg = 1;
	if (o->n_gen)
		n_tg = parse_list("--n-gen", o->n_gen, tg, 16);
	struct model *m;
	if (model_load(&m, o->model))
		cli_die("%s", kb_error());
	int n_max = 1;
	for (int i = 0; i < o->n_pp; i++)
		n_max = o->pp[i] > n_max ? o->pp[i] : n_max;
	for (int i = 0; i < n_tg; i++)
		n_max = tg[i] > n_max ? tg[i] : n_max;
	struct kv_cache kv;
	struct model_ws ws;
	int32_t *toks = malloc((size_t)n_max * sizeof *toks), *pos = malloc((size_t)n_max * sizeof *pos);
	if (!toks || !pos || kv_cache_init(&kv, m, n_max) ||
	    model_ws_init(&ws, m, o->batch < n_max ? o->batch : n_max, n_max))
		cli_die("%s", kb_error());
	const char *path = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
	const char *wtype = qtype_name(m->layers[0].wq.type);
	if (o->tsv)
		printf("model\ttype\tthreads\tisa\ttest\ttokens_per_s\tstddev\n");
	else
		printf("%-28s %-6s %7s %-7s %-8s %14s\n", "model", "type", "threads", "isa", "test", "t/s");
	run_once(m, &ws, &kv, true, n_max < 64 ? n_max : 64, toks, pos); /* warm up: page in the weights */
	for (int pass = 0; pass < 2; pass++) {
		const int *list = pass ? tg : o->pp, nl = pass ? n_tg : o->n_pp;
		for (int i = 0; i < nl; i++) {
			double sum = 0, sum2 = 0;
			for (int r = 0; r < o->reps; r++) {
				double tps = list[i] / run_once(m, &ws, &kv, !pass, list[i], toks, pos);
				sum += tps;
				sum2 += tps * tps;
			}
			double mean = sum / o->reps, sd = o->reps > 1 ? sqrt(fmax(0, (sum2 - sum * mean) / (o->reps - 1))) : 0;
			char test[32];
			snprintf(test, sizeof test, "%s%d", pass ? "tg" : "pp", list[i]);
			if (o->tsv)
				printf("%s\t%s\t%d\t%s\t%s\t%.2f\t%.2f\n", path, wtype, kb_get_threads(), kern_isa(), test, mean, sd);
			else
				printf("%-28.28s %-6s %7d %-7s %-8s %8.2f ± %4.2f\n", path, wtype, kb_get_threads(), kern_isa(),
				       test, mean, sd);
			cli_flush();
		}
	}
	free(toks);
	free(pos);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
}

/* ---- --dataset: the methods ---- */

#define MAX_METHODS 32

struct method {
	char label[32];       /* as listed: "blend:0.15" */
	struct blend_opts bo;
	bool listed;          /* shown (full always runs: it is the reference) */
	/* per question */
	double *ttft;         /* [n_q] seconds to the first token's logits */
	double *load;         /* [n_q] seconds of it reading chunk caches from the store */
	double *speedup;      /* [n_q] full's ttft / this ttft */
	double *quality;      /* [n_q] F1 or Rouge-L of the answer */
	char **answer;        /* [n_q] owned: the generated answer */
	bool *first_agree;    /* [n_q] */
	/* over every step of every question */
	long steps, top1;     /* teacher-forced steps, and those whose argmax is full's */
	double kl;            /* sum of KL(full || this) over the steps */
	double decode_s;      /* seconds of single-token steps */
	long decode_n;
	double recompute;     /* sum of recomputed share of the prompt */
	uint64_t kv_bytes;    /* .kvc bytes read from the store */
	int misses;           /* chunk caches not in the store when timed */
	long peak_kb;         /* peak RSS while this method ran */
};

static int parse_methods(const char *list, struct method *ms)
{
	int n = 0;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", list);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_METHODS)
			cli_usage_error("--methods: at most %d methods", MAX_METHODS);
		struct method *me = &ms[n];
		memset(me, 0, sizeof *me);
		blend_opts_init(&me->bo);
		char *arg = strchr(tok, ':');
		if (arg)
			*arg++ = '\0';
		int mode = blend_mode_from_name(tok);
		if (mode < 0)
			cli_usage_error("--methods: unknown method '%s' (full, prefix, reuse, blend[:RATIO], epic[:K])", tok);
		me->bo.mode = (enum blend_mode)mode;
		if (arg && mode == BLEND_BLEND)
			me->bo.ratio = (float)cli_double("--methods blend:RATIO", arg, 0, 1);
		else if (arg && mode == BLEND_EPIC)
			me->bo.epic_k = (int)cli_long("--methods epic:K", arg, 0, 1 << 20);
		else if (arg)
			cli_usage_error("--methods: '%s' takes no ':' value", tok);
		snprintf(me->label, sizeof me->label, "%s%s%s", tok, arg ? ":" : "", arg ? arg : "");
		me->listed = true;
		n++;
	}
	if (n == 0)
		cli_usage_error("--methods: no methods");
	return n;
}

/* ---- --dataset: the prompts ---- */

struct question {
	struct prompt p;                /* head, passages, query */
	const struct dataset_item *it;
};

static void build_question(const struct opts *o, const struct model *m, const struct dataset *d,
			   const struct dataset_item *it, struct question *q)
{
	char *prefix = dataset_prefix(d, it), *query = dataset_query(d, it);
	if (!prefix || !query)
		cli_die("out of memory");
	q->it = it;
	if (prompt_begin(&q->p, m, o->template, prefix, query))
		cli_die("%s", kb_error());
	int np = o->max_passages > 0 && o->max_passages < it->n_passages ? o->max_passages : it->n_passages;
	for (int i = 0; i < np; i++) {
		char *c = dataset_chunk(d, it, i);
		if (!c || prompt_add_text(&q->p, m, c, strlen(c), o->max_chunk_tokens))
			cli_die("%s", c ? kb_error() : "out of memory");
		free(c);
	}
	if (prompt_end(&q->p, m))
		cli_die("question %s: %s", it->id, kb_error());
	free(prefix), free(query);
}

/* ---- --dataset: measuring ---- */

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

static void answer_push(struct answer *a, const struct tok *t, int32_t id)
{
	if (a->done)
		return;
	if (tok_is_eog(t, id)) {
		a->done = true;
		return;
	}
	size_t need = 64;
	for (;;) {
		if (a->len + need + 1 > a->cap) {
			a->cap = 2 * (a->len + need + 1);
			if (!(a->buf = realloc(a->buf, a->cap)))
				cli_die("out of memory");
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
}

static char *answer_text(const struct answer *a)
{
	char *s = strdup(a->buf ? a->buf + a->start : "");
	if (!s)
		cli_die("out of memory");
	return s;
}

/* Peak RSS (KiB) since the last reset. Linux lets a process reset its high-water
 * mark (/proc/self/clear_refs, 5); elsewhere it is the process's peak so far. */
static bool rss_resettable;

static void rss_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	rss_resettable = f && fputs("5", f) >= 0;
	if (f && fclose(f) != 0)
		rss_resettable = false;
}

static long rss_peak_kb(void)
{
	if (rss_resettable) {
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

/* What one run needs, allocated once. */
struct bench {
	const struct opts *o;
	const struct model *m;
	const struct dataset *d;
	struct chunkcache *cc;
	struct kv_cache kv;
	struct model_ws ws;
	int32_t *pos;       /* [n_ctx]: pos[i] = i */
	int32_t *toks;      /* [n_ctx]: the prompt's tokens */
	int n_gen;          /* tokens after the first */
	int n_vocab;
	float *logits;      /* [n_vocab] */
	/* the reference (full prefill) of the current question */
	float *ref_logits;  /* [n_gen + 1][n_vocab]: the next-token logits at each step */
	int32_t *ref_tok;   /* [n_gen + 1]: its greedy continuation, the first token first */
	int ref_steps;      /* steps in it (fewer than n_gen + 1 when it ended) */
	struct answer ans;
	bool show_progress, tty;
};

static void progress(const struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const struct bench *b, const char *fmt, ...)
{
	if (!b->show_progress)
		return;
	va_list ap;
	fprintf(stderr, b->tty ? "\r\033[K%s: " : "%s: ", cli_tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (!b->tty)
		fputc('\n', stderr);
	fflush(stderr);
}

static void step(struct bench *b, int32_t tok, int slot, float *logits)
{
	if (model_forward(b->m, &b->ws, &b->kv, &tok, &b->pos[slot], 1, logits, false))
		cli_die("%s", kb_error());
}

/* Full prefill (the reference): time to first token, then the greedy
 * continuation with every step's logits kept, timed as decoding. */
static void run_full(struct bench *b, const struct question *q, int qi, struct method *me)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	prompt_tokens(&q->p, b->toks);
	b->kv.n = 0;
	double t0 = kb_now();
	if (model_forward(b->m, &b->ws, &b->kv, b->toks, b->pos, N, b->ref_logits, false))
		cli_die("%s", kb_error());
	me->ttft[qi] = kb_now() - t0;
	me->recompute += 1;

	b->ref_tok[0] = sample_greedy(b->ref_logits, V);
	int s = 1;
	double t = 0;
	while (s <= b->n_gen && !tok_is_eog(b->m->tok, b->ref_tok[s - 1])) {
		float *lg = b->ref_logits + (size_t)s * V;
		double t1 = kb_now();
		step(b, b->ref_tok[s - 1], N + s - 1, lg);
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
	answer_reset(&b->ans);
	for (int i = 0; i < s && !b->ans.done; i++)
		answer_push(&b->ans, b->m->tok, b->ref_tok[i]);
	me->answer[qi] = answer_text(&b->ans);
}

/* A cached method: load the chunk caches from the store and blend (timed to
 * the first token); follow full's continuation (fidelity, timed as decoding);
 * then its own greedy answer, which is full's up to where they first differ. */
static void run_method(struct bench *b, struct question *q, int qi, struct method *me)
{
	const int N = q->p.n_tokens, V = b->n_vocab;
	struct prompt_stats st;
	if (prompt_run(&q->p, b->m, &b->ws, &b->kv, b->cc, &me->bo, b->logits, &st))
		cli_die("%s", kb_error());
	me->ttft[qi] = st.t_ttft;
	me->load[qi] = st.cache.t_load + st.cache.t_compute;
	me->kv_bytes += st.cache.bytes_read;
	me->misses += st.cache.misses;
	me->recompute += (double)st.blend.n_selected / N;

	/* teacher-forced: feed full's continuation, compare the next-token distributions */
	int diverge = -1;
	int32_t own = -1; /* this method's token where it first differs */
	double t = 0;
	for (int s = 0; s < b->ref_steps; s++) {
		if (s > 0) {
			double t1 = kb_now();
			step(b, b->ref_tok[s - 1], N + s - 1, b->logits);
			t += kb_now() - t1;
		}
		int32_t a = sample_greedy(b->logits, V);
		bool same = a == b->ref_tok[s];
		if (s == 0)
			me->first_agree[qi] = same;
		me->top1 += same;
		me->kl += metrics_kl(b->ref_logits + (size_t)s * V, b->logits, V);
		if (!same && diverge < 0)
			diverge = s, own = a;
	}
	me->steps += b->ref_steps;
	me->decode_s += t;
	me->decode_n += b->ref_steps - 1;

	/* the answer: full's tokens before the first difference, then its own */
	answer_reset(&b->ans);
	int s = 0;
	for (; s < (diverge < 0 ? b->ref_steps : diverge) && !b->ans.done; s++)
		answer_push(&b->ans, b->m->tok, b->ref_tok[s]);
	if (diverge >= 0 && !b->ans.done) {
		b->kv.n = N + diverge;
		int32_t tok = own;
		for (s = diverge;; s++) {
			answer_push(&b->ans, b->m->tok, tok);
			if (b->ans.done || s == b->n_gen)
				break;
			step(b, tok, N + s, b->logits);
			tok = sample_greedy(b->logits, V);
		}
	}
	me->answer[qi] = answer_text(&b->ans);
}

/* ---- --dataset: output ---- */

struct summary {
	double ttft_p50, ttft_p90, load_p50, speedup, decode_tps, quality, first, top1, kl, recompute, kv_mib, rss_mib;
};

static void summarize(const struct method *me, int n_q, struct summary *s)
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

static void print_table(const struct bench *b, const struct method *ms, int n_m, int n_q, double mean_tokens)
{
	const struct opts *o = b->o;
	const char *qname = b->d->items[0].task == DATASET_SUMMARY ? "Rouge-L" : "F1";
	printf("# %s on %s (%s, %s): %d questions, %.0f prompt tokens on average, %d threads, %d tokens generated\n",
	       base_name(o->model), base_name(o->dataset), b->d->name, dataset_task_name(b->d->items[0].task), n_q,
	       mean_tokens, kb_get_threads(), b->n_gen + 1);
	printf("%-12s %9s %9s %8s %8s %10s %7s %9s %11s %9s %9s %8s %12s\n", "method", "TTFT ms", "p90 ms", "load ms", "speedup",
	       "decode t/s", qname, "1st agree", "top-1 agree", "KL", "recompute", "KV MiB/q", "peak RSS MiB");
	for (int i = 0; i < n_m; i++) {
		if (!ms[i].listed)
			continue;
		struct summary s;
		summarize(&ms[i], n_q, &s);
		printf("%-12s %9.1f %9.1f %8.1f %7.2fx %10.1f %7.3f %9.3f %11.3f %9.5f %8.1f%% %8.2f %12.1f\n", ms[i].label,
		       s.ttft_p50, s.ttft_p90, s.load_p50, s.speedup, s.decode_tps, s.quality, s.first, s.top1, s.kl,
		       100 * s.recompute, s.kv_mib, s.rss_mib);
	}
}

static void print_tsv(const struct method *ms, int n_m, int n_q)
{
	printf("method\tmode\tratio\tttft_ms_median\tttft_ms_p90\tload_ms_median\tspeedup\tdecode_tps\tquality\tfirst_token_agreement"
	       "\ttop1_agreement\tkl\trecompute\tkv_mib_per_question\tpeak_rss_mib\n");
	for (int i = 0; i < n_m; i++) {
		if (!ms[i].listed)
			continue;
		struct summary s;
		summarize(&ms[i], n_q, &s);
		printf("%s\t%s\t%g\t%.3f\t%.3f\t%.3f\t%.4f\t%.2f\t%.4f\t%.4f\t%.4f\t%.6g\t%.4f\t%.3f\t%.1f\n", ms[i].label,
		       blend_mode_name(ms[i].bo.mode), ms[i].bo.mode == BLEND_BLEND ? ms[i].bo.ratio : NAN, s.ttft_p50,
		       s.ttft_p90, s.load_p50, s.speedup, s.decode_tps, s.quality, s.first, s.top1, s.kl, s.recompute, s.kv_mib,
		       s.rss_mib);
	}
}

/* A number for JSON: null when it is not one. */
static json_t *jnum(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static void print_json(const struct bench *b, const struct question *qs, const struct method *ms, int n_m, int n_q)
{
	const struct opts *o = b->o;
	const enum dataset_task task = b->d->items[0].task;
	json_t *methods = json_array(), *questions = json_array();
	for (int i = 0; i < n_m; i++) {
		if (!ms[i].listed)
			continue;
		struct summary s;
		summarize(&ms[i], n_q, &s);
		json_t *j = json_pack("{s:s, s:s}", "method", ms[i].label, "mode", blend_mode_name(ms[i].bo.mode));
		if (ms[i].bo.mode == BLEND_BLEND)
			json_object_set_new(j, "ratio", json_real(round(ms[i].bo.ratio * 1e6) / 1e6));
		if (ms[i].bo.mode == BLEND_EPIC)
			json_object_set_new(j, "epic_k", json_integer(ms[i].bo.epic_k));
		json_object_set_new(j, "ttft_ms_median", jnum(s.ttft_p50));
		json_object_set_new(j, "ttft_ms_p90", jnum(s.ttft_p90));
		json_object_set_new(j, "load_ms_median", jnum(s.load_p50));
		json_object_set_new(j, "speedup", jnum(s.speedup));
		json_object_set_new(j, "decode_tps", jnum(s.decode_tps));
		json_object_set_new(j, task == DATASET_SUMMARY ? "rouge_l" : "f1", jnum(s.quality));
		json_object_set_new(j, "first_token_agreement", jnum(s.first));
		json_object_set_new(j, "top1_agreement", jnum(s.top1));
		json_object_set_new(j, "kl", jnum(s.kl));
		json_object_set_new(j, "steps", json_integer(ms[i].steps));
		json_object_set_new(j, "recompute", jnum(s.recompute));
		json_object_set_new(j, "kv_mib_per_question", jnum(s.kv_mib));
		json_object_set_new(j, "store_misses", json_integer(ms[i].misses));
		json_object_set_new(j, "peak_rss_mib", jnum(s.rss_mib));
		json_array_append_new(methods, j);
	}
	for (int qi = 0; qi < n_q; qi++) {
		const struct dataset_item *it = qs[qi].it;
		json_t *golds = json_array(), *res = json_object();
		for (int k = 0; k < it->n_answers; k++)
			json_array_append_new(golds, json_string(it->answers[k]));
		for (int i = 0; i < n_m; i++) {
			if (!ms[i].listed)
				continue;
			json_t *r = json_pack("{s:o, s:s, s:o, s:b}", "ttft_ms", jnum(1e3 * ms[i].ttft[qi]), "answer",
					      ms[i].answer[qi], task == DATASET_SUMMARY ? "rouge_l" : "f1",
					      jnum(ms[i].quality[qi]), "first_token_agrees", ms[i].first_agree[qi]);
			json_object_set_new(res, ms[i].label, r);
		}
		json_array_append_new(questions, json_pack("{s:s, s:s, s:o, s:i, s:i, s:o}", "id", it->id, "question",
							   it->question, "answers", golds, "passages", (int)qs[qi].p.n_segs - 2,
							   "tokens", qs[qi].p.n_tokens, "methods", res));
	}
	json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:b, s:o, s:o}", "model",
				 base_name(o->model), "dataset", base_name(o->dataset), "name", b->d->name, "format",
				 dataset_format_name(b->d->format), "task", dataset_task_name(task), "questions", n_q,
				 "threads", kb_get_threads(), "n_gen", b->n_gen, "template", o->template,
				 "rss_per_method", rss_resettable, "methods", methods, "per_question", questions);
	if (!root || json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) != 0)
		cli_die("cannot write the JSON output");
	putchar('\n');
	json_decref(root);
}

/* ---- --plot: time to first token against top-1 agreement, one point per method ---- */

static void svg_text(FILE *f, double x, double y, const char *anchor, const char *style, const char *s)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s%s>", x, y, anchor, style ? " " : "",
		style ? style : "", "");
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
	fputs("</text>\n", f);
}

/* Ticks at 1, 2, 5 times powers of ten covering [lo, hi] (at most 16). */
static int log_ticks(double lo, double hi, double *t)
{
	int n = 0;
	for (double dec = pow(10, floor(log10(lo))); dec <= hi * 10 && n < 16; dec *= 10)
		for (int k = 0; k < 3 && n < 16; k++) {
			double v = dec * (k == 0 ? 1 : k == 1 ? 2 : 5);
			if (v >= lo * 0.999 && v <= hi * 1.001)
				t[n++] = v;
		}
	return n;
}

/* A step of 1, 2 or 5 times a power of ten giving about 5 ticks over span. */
static double nice_step(double span)
{
	double raw = span / 5, p = pow(10, floor(log10(raw))), r = raw / p;
	return p * (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10);
}

static const char *method_color(const struct method *me)
{
	switch (me->bo.mode) {
	case BLEND_FULL: return "#222222";
	case BLEND_PREFIX: return "#8c6d31";
	case BLEND_REUSE: return "#d62728";
	case BLEND_EPIC: return "#2ca02c";
	default: return "#1f77b4";
	}
}

static void write_plot(const struct bench *b, const struct method *ms, int n_m, int n_q)
{
	const char *path = b->o->plot;
	FILE *f = fopen(path, "w");
	if (!f)
		cli_die("'%s': %s", path, strerror(errno));
	const double W = 760, H = 520, L = 80, R = 40, T = 64, B = 84, pw = W - L - R, ph = H - T - B;
	double xs[MAX_METHODS], ys[MAX_METHODS];
	int idx[MAX_METHODS], n = 0;
	double xmin = INFINITY, xmax = -INFINITY, ymin = 1;
	for (int i = 0; i < n_m; i++) {
		if (!ms[i].listed)
			continue;
		struct summary s;
		summarize(&ms[i], n_q, &s);
		if (!isfinite(s.ttft_p50) || !isfinite(s.top1) || s.ttft_p50 <= 0)
			continue;
		xs[n] = s.ttft_p50, ys[n] = s.top1, idx[n] = i;
		xmin = fmin(xmin, xs[n]), xmax = fmax(xmax, xs[n]), ymin = fmin(ymin, ys[n]);
		n++;
	}
	if (n == 0) {
		xmin = 1, xmax = 10;
	}
	/* x: log when the times span a decade or so, else linear from 0 */
	bool logx = xmax / xmin >= 8;
	double x0, x1;
	if (logx) {
		x0 = pow(10, floor(log10(xmin / 1.3) * 2) / 2);
		x1 = pow(10, ceil(log10(xmax * 1.3) * 2) / 2);
	} else {
		x0 = 0;
		double st = nice_step(xmax * 1.15);
		x1 = ceil(xmax * 1.15 / st) * st;
	}
	/* y: from a tenth below the lowest point to 1, with a little room above 1 */
	double y0 = floor((ymin - 0.02) * 10) / 10;
	y0 = y0 < 0 ? 0 : y0;
	const double ytop = 1.0, y1 = ytop + 0.04 * (ytop - y0);
#define PX(v) (L + pw * (logx ? (log10(v) - log10(x0)) / (log10(x1) - log10(x0)) : ((v) - x0) / (x1 - x0)))
#define PY(v) (T + ph * (1 - ((v) - y0) / (y1 - y0)))
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
		   "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
		   "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
		W, H, W, H);
	svg_text(f, W / 2, 26, "middle", "font-size=\"16\" font-weight=\"bold\"",
		 "Time to first token vs fidelity to full prefill");
	char sub[512];
	snprintf(sub, sizeof sub, "%s on %s: %d question%s, %d thread%s", base_name(b->o->model),
		 base_name(b->o->dataset), n_q, n_q == 1 ? "" : "s", kb_get_threads(), kb_get_threads() == 1 ? "" : "s");
	svg_text(f, W / 2, 45, "middle", "font-size=\"12\" fill=\"#444444\"", sub);
	snprintf(sub, sizeof sub, "agreement over the first token and %d teacher-forced steps; time to first token "
		 "includes reading the chunk caches from the store", b->n_gen);
	svg_text(f, 12, H - 10, "start", "font-size=\"11\" fill=\"#666666\"", sub);
	/* grid and ticks */
	fprintf(f, "<g stroke=\"#e5e5e5\" stroke-width=\"1\">\n");
	double tk[32];
	int nt;
	if (logx)
		nt = log_ticks(x0, x1, tk);
	else {
		double st = nice_step(x1 - x0);
		nt = 0;
		for (double v = x0; v <= x1 * 1.0001 && nt < 32; v += st)
			tk[nt++] = v;
	}
	for (int i = 0; i < nt; i++)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(tk[i]), (double)T, PX(tk[i]), T + ph);
	double yst = nice_step(ytop - y0);
	for (double v = y0; v <= ytop + 1e-9; v += yst)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", (double)L, PY(v), L + pw, PY(v));
	fprintf(f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n",
		L, T, pw, ph);
	char lab[64];
	for (int i = 0; i < nt; i++) {
		snprintf(lab, sizeof lab, "%g", tk[i]);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", PX(tk[i]), T + ph,
			PX(tk[i]), T + ph + 5);
		svg_text(f, PX(tk[i]), T + ph + 19, "middle", NULL, lab);
	}
	for (double v = y0; v <= ytop + 1e-9; v += yst) {
		snprintf(lab, sizeof lab, "%.2f", v);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", L - 5, PY(v), L,
			PY(v));
		svg_text(f, L - 8, PY(v) + 4, "end", NULL, lab);
	}
	svg_text(f, L + pw / 2, T + ph + 42, "middle", NULL,
		 logx ? "time to first token, median over questions (ms, log scale)"
		      : "time to first token, median over questions (ms)");
	fprintf(f, "<g transform=\"translate(22 %.1f) rotate(-90)\">", T + ph / 2);
	svg_text(f, 0, 0, "middle", NULL, "top-1 agreement with full prefill");
	fprintf(f, "</g>\n");
	/* points, then labels. Points within a few pixels of each other share one
	 * label ("full, prefix"). Each label goes to the first of a few spots around
	 * its point that stays inside the plot, clears every point and every label
	 * placed (sizes estimated from the font) and is nearer its own point than
	 * any other; failing that, the first spot clear of points and labels, with
	 * a leader line; failing that, stacked at the lower right. */
	int grp[MAX_METHODS];
	double bx[MAX_METHODS][4];
	int n_box = 0;
	for (int k = 0; k < n; k++) {
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"white\" stroke-width=\"1\"/>\n",
			PX(xs[k]), PY(ys[k]), method_color(&ms[idx[k]]));
		grp[k] = k;
		for (int j = 0; j < k && grp[k] == k; j++)
			if (grp[j] == j && hypot(PX(xs[k]) - PX(xs[j]), PY(ys[k]) - PY(ys[j])) < 4)
				grp[k] = j;
	}
	static const double cand[][2] = { { 9, -7 }, { 9, 15 }, { -9, -7 }, { -9, 15 }, { 0, -12 }, { 0, 24 },
					  { 9, -24 }, { 9, 32 }, { -9, -24 }, { -9, 32 }, { 20, -40 }, { 20, 48 },
					  { -20, -40 }, { -20, 48 } };
	const int n_cand = (int)(sizeof cand / sizeof *cand), n_near = 6;
	for (int k = 0; k < n; k++) {
		if (grp[k] != k)
			continue;
		size_t chars = 0;
		for (int j = k; j < n; j++)
			if (grp[j] == k)
				chars += strlen(ms[idx[j]].label) + (j > k ? 2 : 0);
		const double px = PX(xs[k]), py = PY(ys[k]), w = 7.3 * chars + 2, h = 14;
		int pick = -1;
		double x = 0, y = 0;
		for (int pass = 0; pass < 2 && pick < 0; pass++)
			for (int c = 0; c < n_cand + 40 && pick < 0; c++) {
				/* after the fixed spots: further and further below, right then left */
				double dx = c < n_cand ? cand[c][0] : (c - n_cand) % 2 ? -9 : 9;
				double dy = c < n_cand ? cand[c][1] : 48 + 16 * ((c - n_cand) / 2);
				x = dx > 0 ? px + dx : dx < 0 ? px + dx - w : px - w / 2;
				y = py + dy;
				bool fits = x >= L + 2 && x + w <= L + pw - 2 && y - h >= T + 1 && y + 3 <= T + ph - 1;
				for (int j = 0; j < n && fits; j++) { /* clear of every point */
					double qx = PX(xs[j]), qy = PY(ys[j]);
					fits = !(qx + 6 > x && qx - 6 < x + w && qy + 6 > y - h + 2 && qy - 6 < y + 3);
				}
				for (int j = 0; j < n_box && fits; j++) /* and of the labels placed */
					fits = !(bx[j][0] < x + w && x < bx[j][2] && bx[j][1] < y + 3 && y - h + 2 < bx[j][3]);
				/* first pass: near, and nearer its own point than any other */
				double ax = dx > 0 ? x : dx < 0 ? x + w : x + w / 2, ay = y - 4, own = hypot(ax - px, ay - py);
				for (int j = 0; j < n && fits && pass == 0; j++)
					fits = c < n_near && (grp[j] == k || hypot(ax - PX(xs[j]), ay - PY(ys[j])) > own + 6);
				if (fits)
					pick = pass == 0 ? c : n_cand + c;
			}
		if (pick < 0) {
			x = L + pw - w - 6;
			y = T + ph - 8 - 16.0 * n_box;
		}
		bx[n_box][0] = x, bx[n_box][1] = y - h + 2, bx[n_box][2] = x + w, bx[n_box][3] = y + 3;
		n_box++;
		if (pick < 0 || pick >= n_near)
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\" stroke-width=\"0.8\"/>\n",
				px, py, x + w / 2 < px ? x + w : x, y - 4);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" xml:space=\"preserve\">", x, y);
		for (int j = k; j < n; j++) {
			if (grp[j] != k)
				continue;
			if (j > k)
				fputs("<tspan fill=\"#666666\">, </tspan>", f);
			fprintf(f, "<tspan fill=\"%s\">", method_color(&ms[idx[j]]));
			for (const char *c = ms[idx[j]].label; *c; c++)
				*c == '<' ? fputs("&lt;", f) : *c == '&' ? fputs("&amp;", f) : fputc(*c, f);
			fputs("</tspan>", f);
		}
		fputs("</text>\n", f);
	}
#undef PX
#undef PY
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0)
		cli_die("'%s': %s", path, strerror(errno));
}

/* ---- --dataset: the run ---- */

static void bench_dataset(const struct opts *o, int n_prov, char **prov)
{
	struct bench b = { .o = o, .n_gen = 32 };
	if (o->n_gen)
		b.n_gen = (int)cli_long("--n-gen", o->n_gen, 0, 4096);
	struct method ms[MAX_METHODS + 1];
	int n_m = parse_methods(o->methods ? o->methods : DEFAULT_METHODS, ms);
	int full = -1;
	for (int i = 0; i < n_m && full < 0; i++)
		if (ms[i].bo.mode == BLEND_FULL)
			full = i;
	if (full < 0) { /* the reference runs anyway, unlisted */
		full = n_m++;
		memset(&ms[full], 0, sizeof ms[full]);
		blend_opts_init(&ms[full].bo);
		ms[full].bo.mode = BLEND_FULL;
		snprintf(ms[full].label, sizeof ms[full].label, "full");
	}

	struct dataset *d;
	if (dataset_load(&d, o->dataset, o->limit))
		cli_die("%s", kb_error());
	struct model *m;
	if (model_load(&m, o->model))
		cli_die("%s", kb_error());
	b.m = m, b.d = d, b.n_vocab = m->hp.n_vocab;

	/* every prompt, tokenized; those that do not fit the context are skipped */
	struct question *qs = calloc((size_t)(d->n_items ? d->n_items : 1), sizeof *qs);
	if (!qs)
		cli_die("out of memory");
	const int n_ctx = o->ctx ? o->ctx : m->hp.n_ctx_train;
	int n_q = 0, max_n = 1, n_skip = 0, max_skip = 0;
	double mean_tokens = 0;
	for (int i = 0; i < d->n_items; i++) {
		build_question(o, m, d, &d->items[i], &qs[n_q]);
		int need = qs[n_q].p.n_tokens + b.n_gen + 1;
		if (prompt_fit(&qs[n_q].p, n_ctx, b.n_gen + 1)) {
			n_skip++, max_skip = need > max_skip ? need : max_skip;
			prompt_free(&qs[n_q].p);
			continue;
		}
		max_n = need > max_n ? need : max_n;
		mean_tokens += qs[n_q++].p.n_tokens;
	}
	mean_tokens /= n_q ? n_q : 1;
	if (n_skip)
		fprintf(stderr, "%s: %s%d of %d questions skipped: prompts of up to %d tokens (with the %d generated) do not "
			"fit the context of %d (%s; cut the passages: --max-chunk-tokens, --max-passages)\n", cli_tool,
			n_q ? "warning: " : "", n_skip, d->n_items, max_skip, b.n_gen + 1, n_ctx,
			o->ctx ? "--ctx" : "the model's; --ctx N to go past it");
	if (n_q == 0)
		exit(1);
	b.logits = malloc((size_t)b.n_vocab * sizeof *b.logits);
	b.ref_logits = malloc((size_t)(b.n_gen + 1) * b.n_vocab * sizeof *b.ref_logits);
	b.ref_tok = malloc((size_t)(b.n_gen + 1) * sizeof *b.ref_tok);
	b.pos = malloc((size_t)max_n * sizeof *b.pos);
	b.toks = malloc((size_t)max_n * sizeof *b.toks);
	if (!b.logits || !b.ref_logits || !b.ref_tok || !b.pos || !b.toks)
		cli_die("out of memory");
	for (int i = 0; i < max_n; i++)
		b.pos[i] = i;
	if (kv_cache_init(&b.kv, m, max_n) || model_ws_init(&b.ws, m, max_n < 512 ? max_n : 512, max_n))
		cli_die("%s", kb_error());
	for (int i = 0; i < n_m; i++) {
		struct method *me = &ms[i];
		me->ttft = calloc((size_t)n_q, sizeof *me->ttft);
		me->speedup = calloc((size_t)n_q, sizeof *me->speedup);
		me->load = calloc((size_t)n_q, sizeof *me->load);
		me->quality = calloc((size_t)n_q, sizeof *me->quality);
		me->answer = calloc((size_t)n_q, sizeof *me->answer);
		me->first_agree = calloc((size_t)n_q, sizeof *me->first_agree);
		if (!me->ttft || !me->speedup || !me->load || !me->quality || !me->answer || !me->first_agree)
			cli_die("out of memory");
	}
	b.tty = isatty(STDERR_FILENO);
	b.show_progress = !o->quiet && (o->progress || b.tty);

	/* the store holds every chunk cache before anything is timed */
	if (chunkcache_open(&b.cc, o->store, true, o->dtype))
		cli_die("%s", kb_error());
	chunkcache_set_tool(b.cc, cli_tool, n_prov, prov);
	struct chunkcache_stats warm = { 0 };
	int n_chunks = 0, done = 0;
	for (int i = 0; i < n_q; i++)
		for (size_t k = 0; k < qs[i].p.n_segs; k++)
			n_chunks += qs[i].p.segs[k].cacheable && qs[i].p.segs[k].n > 0;
	for (int i = 0; i < n_q; i++)
		for (size_t k = 0; k < qs[i].p.n_segs; k++) {
			const struct prompt_seg *p = &qs[i].p.segs[k];
			if (!p->cacheable || p->n == 0)
				continue;
			if (done % 16 == 0 && b.tty)
				progress(&b, "chunk caches into the store: %d/%d", done, n_chunks);
			b.kv.n = 0;
			if (chunkcache_load(b.cc, m, &b.ws, &b.kv, 0, p->tok, p->n, NULL, &warm))
				cli_die("%s", kb_error());
			done++;
		}
	progress(&b, "%d chunk caches in the store (%d computed now, %d there already)", n_chunks, warm.misses,
		 warm.hits);
	if (b.tty && b.show_progress)
		fputc('\n', stderr);
	/* page the weights in */
	b.kv.n = 0;
	if (model_forward(m, &b.ws, &b.kv, qs[0].p.segs[0].tok, b.pos, qs[0].p.segs[0].n < 64 ? qs[0].p.segs[0].n : 64,
			  NULL, false))
		cli_die("%s", kb_error());

	/* each question: the reference, then every other method on the same prompt */
	for (int qi = 0; qi < n_q; qi++) {
		const struct dataset_item *it = qs[qi].it;
		for (int i = -1; i < n_m; i++) {
			int mi = i < 0 ? full : i;
			if (i == full)
				continue;
			struct method *me = &ms[mi];
			progress(&b, "question %d/%d (%d tokens): %s", qi + 1, n_q, qs[qi].p.n_tokens, me->label);
			rss_reset();
			if (mi == full)
				run_full(&b, &qs[qi], qi, me);
			else
				run_method(&b, &qs[qi], qi, me);
			long kb = rss_peak_kb();
			me->peak_kb = kb > me->peak_kb ? kb : me->peak_kb;
			me->quality[qi] = it->task == DATASET_SUMMARY
						  ? metrics_rouge_l_max(me->answer[qi], it->answers, it->n_answers)
						  : metrics_f1_max(me->answer[qi], it->answers, it->n_answers);
		}
		for (int i = 0; i < n_m; i++)
			ms[i].speedup[qi] = ms[full].ttft[qi] / ms[i].ttft[qi];
	}
	if (b.tty && b.show_progress)
		fprintf(stderr, "\r\033[K");
	for (int i = 0; i < n_m; i++)
		if (ms[i].misses)
			fprintf(stderr, "%s: %s: %d chunk caches were missing from the store when timed and were computed "
				"(the store was evicted meanwhile?): its TTFT includes computing them\n",
				cli_tool, ms[i].label, ms[i].misses);

	if (o->json)
		print_json(&b, qs, ms, n_m, n_q);
	else if (o->tsv)
		print_tsv(ms, n_m, n_q);
	else
		print_table(&b, ms, n_m, n_q, mean_tokens);
	if (o->plot)
		write_plot(&b, ms, n_m, n_q);
	cli_flush();

	for (int i = 0; i < n_m; i++) {
		for (int qi = 0; qi < n_q; qi++)
			free(ms[i].answer[qi]);
		free(ms[i].answer), free(ms[i].ttft), free(ms[i].load), free(ms[i].speedup), free(ms[i].quality), free(ms[i].first_agree);
	}
	for (int i = 0; i < n_q; i++) {
		prompt_free(&qs[i].p);
	}
	free(qs);
	free(b.ans.buf), free(b.logits), free(b.ref_logits), free(b.ref_tok), free(b.pos), free(b.toks);
	chunkcache_close(b.cc);
	kv_cache_free(&b.kv);
	model_ws_free(&b.ws);
	model_free(m);
	dataset_free(d);
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .pp = { 512, 2048 }, .n_pp = 2, .reps = 3, .batch = 512, .dtype = KVC_F16 };
	bool dataset_only = false;
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'S': o.speed = true; break;
		case 'd': o.dataset = optarg; break;
		case 'm': o.model = optarg; break;
		case 'p': o.n_pp = parse_list("--n-prompt", optarg, o.pp, 16), o.speed_only = true; break;
		case 'n': o.n_gen = optarg; break;
		case 'r': o.reps = (int)cli_long("--reps", optarg, 1, 1000), o.speed_only = true; break;
		case 't': o.threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'b': o.batch = (int)cli_long("--batch", optarg, 1, 1 << 16), o.speed_only = true; break;
		case 'L': o.limit = (int)cli_long("--limit", optarg, 1, 1 << 30), dataset_only = true; break;
		case 'M': o.methods = optarg, dataset_only = true; break;
		case 'X': o.max_chunk_tokens = (int)cli_long("--max-chunk-tokens", optarg, 1, 1 << 20), dataset_only = true; break;
		case 'P': o.max_passages = (int)cli_long("--max-passages", optarg, 1, 1 << 20), dataset_only = true; break;
		case 'E': o.template = optarg, dataset_only = true; break;
		case 'C': o.ctx = (int)cli_long("--ctx", optarg, 1, 1 << 24), dataset_only = true; break;
		case 's': o.store = optarg, dataset_only = true; break;
		case 'Y':
			if ((o.dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0)", optarg);
			dataset_only = true;
			break;
		case 'j': o.json = true, dataset_only = true; break;
		case 'T': o.tsv = true; break;
		case 'G': o.plot = optarg, dataset_only = true; break;
		case 'R': o.progress = true; break;
		case 'Q': o.quiet = true; break;
		default: cli_unreachable(c);
		}
	}
	if (o.speed == !!o.dataset)
		cli_usage_error("say what to measure: --speed or --dataset FILE (one of them)");
	if (!o.model)
		cli_usage_error("a model is required (-m MODEL)");
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (o.speed && dataset_only)
		cli_usage_error("--limit, --methods, --max-*, --template, --store, --dtype, --json and --plot go with --dataset");
	if (o.dataset && o.speed_only)
		cli_usage_error("--n-prompt, --reps and --batch go with --speed");
	if (o.json && o.tsv)
		cli_usage_error("--json and --tsv do not go together");
	if (!o.template)
		o.template = "plain";
	if (!template_known(o.template))
		cli_usage_error("--template: unknown template '%s' (" TEMPLATE_NAMES ")", o.template);
	kb_set_threads(o.threads);
	char **prov; /* provenance of its caches: the option names, never their values */
	int n_prov;
	if (kvc_option_names(argc, argv, cli.shortopts, cli.longopts, &prov, &n_prov))
		cli_die("%s", kb_error());
	if (o.speed)
		bench_speed(&o);
	else
		bench_dataset(&o, n_prov, prov);
	free(prov);
	return 0;
}
