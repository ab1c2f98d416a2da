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
 * prefill along a teacher-forced continuation, the answer's F1 and exact match
 * (or Rouge-L), decode speed, KV bytes read and peak memory; over every
 * question and, when the dataset's questions carry several kinds, by kind.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "cli.h"
#include "pool.h"
#include "template.h"

enum { OPT_REUSE_SIMILAR = 0x1281 };

static const struct option longopts[] = {
	{ "speed", no_argument, NULL, 'S' },
	{ "dataset", required_argument, NULL, 'A' },
	{ "model", required_argument, NULL, 'm' },
	{ "n-prompt", required_argument, NULL, 'p' },
	{ "n-gen", required_argument, NULL, 'n' },
	{ "reps", required_argument, NULL, 'r' },
	{ "depth", required_argument, NULL, 'd' },
	{ "threads", required_argument, NULL, 't' },
	{ "batch", required_argument, NULL, 'b' },
	{ "limit", required_argument, NULL, 'L' },
	{ "methods", required_argument, NULL, 'M' },
	{ "max-chunk-tokens", required_argument, NULL, 'X' },
	{ "max-passages", required_argument, NULL, 'P' },
	{ "template", required_argument, NULL, 'E' },
	{ "ctx", required_argument, NULL, 'C' },
	{ "store", required_argument, NULL, 's' },
	{ "reuse-similar", no_argument, NULL, OPT_REUSE_SIMILAR },
	CLI_REMOTE_OPTION,
	{ "dtype", required_argument, NULL, 'Y' },
	{ "json", no_argument, NULL, 'j' },
	{ "tsv", no_argument, NULL, 'T' },
	{ "plot", required_argument, NULL, 'G' },
	{ "progress", no_argument, NULL, 'R' },
	{ "quiet", no_argument, NULL, 'Q' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend bench --speed -m MODEL [options]\n"
	       "       kvblend bench --dataset FILE -m MODEL [options]\n"
	       "Prompt processing (pp) and generation (tg) tokens/s of a model (--speed), or time to\n"
	       "first token and quality of each way of building a RAG prompt's cache (--dataset).\n\n"
	       "  -m, --model FILE          GGUF model\n"
	       "  -t, --threads N           threads (default: all cores)\n"
	       "      --tsv                 tab-separated output for scripts\n"
	       "  -j, --json                JSON output: with --speed one object per line, one per row;\n"
	       "                            with --dataset one document (methods and every question)\n"
	       "--speed:\n"
	       "      --n-prompt LIST       prompt sizes, comma-separated (default 512,2048; 0 = none)\n"
	       "      --n-gen LIST          generation lengths (default 128; 0 = none)\n"
	       "  -r, --reps N              repetitions of each test (default 3)\n"
	       "  -d, --depth LIST          run the tests after this many tokens already in the\n"
	       "                            cache, comma-separated (default 0)\n"
	       "  -b, --batch N             prompt batch size (default 512)\n"
	       "--dataset FILE (CacheBlend JSON/JSONL, HotpotQA IRCoT, LongBench multi_news, SAMSum):\n"
	       "      --limit N             the first N questions (default all)\n"
	       "      --methods LIST        full, prefix, reuse, blend[:RATIO[@LAYER]], epic[:K],\n"
	       "                            ape[:T[:S]] (APE, temperature and scale 0.9),\n"
	       "                            comma-separated; after a method, +POLICY:SHARE evicts\n"
	       "                            tokens, +TYPE (kv4, ...) writes the prompt's cache in TYPE\n"
	       "                            and reads it back (default\n"
	       "                            " BENCH_DEFAULT_METHODS ")\n"
	       "      --max-passages N      the first N passages of each question (default all)\n"
	       "      --max-chunk-tokens N  cut each passage to N tokens (default: no cut)\n"
	       "      --template NAME       the chat template: auto (default: the one the model's\n"
	       "                            tokenizer.chat_template names; plain when none), plain,\n"
	       "                            chatml, llama3, mistral, llama2, mistral-v7, gemma, phi3, phi4\n"
	       "      --ctx N               skip questions whose prompt and answer do not fit N tokens\n"
	       "                            (default: the model's context)\n"
	       "      --store DIR           the chunk-cache store (default $KVBLEND_STORE or\n"
	       "                            $XDG_CACHE_HOME/kvblend)\n"
	       "      --reuse-similar       chunk caches missing from the store are built from the most\n"
	       "                            similar stored chunk (ratio 0.15, check layer 1), as\n"
	       "                            kvblend prefill --reuse-similar does\n"
	       "      --remote URL          the store's remote tier (default $KVBLEND_REMOTE): caches\n"
	       "                            missing from the store are fetched from it, new ones written to it\n"
	       "      --dtype TYPE          caches put in the store: f16, bf16, f32, q8_0, or\n"
	       "                            kv8, kv4, kv3, kv2 (default: the store's, else f16)\n"
	       "      --n-gen N             tokens generated after the first (default 32)\n"
	       "      --plot FILE.svg       plot time to first token against top-1 agreement\n"
	       "      --progress            progress on stderr even when it is not a terminal\n"
	       "      --quiet               no progress\n"
	       "  -h, --help                this help\n"
	       "      --version             the version\n");
}

static const struct cli_values values[] = {
	{ "--methods", "full prefix reuse blend epic ape" },
	{ "--template", TEMPLATE_WORDS },
	{ "--dtype", "f16 bf16 f32 q8_0 kv8 kv4 kv3 kv2" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-bench", "m:r:d:t:b:jh", longopts, usage, values };

/* ---- --speed ---- */

/* A comma-separated list of sizes; 0 entries are dropped unless keep_zero. */
static int parse_list(const char *opt, const char *s, int *out, int cap, bool keep_zero)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		if (n == cap)
			cli_usage_error("%s: at most %d values", opt, cap);
		int v = (int)cli_long(opt, tok, 0, 1 << 20);
		if (v > 0 || keep_zero)
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

/* Seconds for one test: pp (n tokens as a prompt) or tg (n single steps),
 * after the depth tokens kv holds in its first slots (the test's own slots are
 * overwritten by each repetition). */
static double run_once(const struct model *m, struct model_ws *ws, struct kv_cache *kv, int depth, bool pp, int n,
		       int32_t *toks, int32_t *pos)
{
	kv->n = depth;
	for (int i = 0; i < n; i++)
		toks[i] = rand_token(m->hp.n_vocab), pos[i] = depth + i;
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
	const char *model, *dataset, *methods, *template, *store, *remote, *plot, *n_gen;
	int pp[16], n_pp, depth[16], n_depth, reps, threads, batch, limit, max_chunk_tokens, max_passages, dtype, ctx;
	bool speed, tsv, json, progress, quiet, speed_only;
	bool reuse_similar;
};

/* One --speed --json row: an object on a line, the --tsv columns as keys. */
static void print_speed_json(const char *path, const char *wtype, const char *mv, const char *test, double mean,
			     double sd)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:f, s:f, s:s}", "model", path, "type", wtype, "threads",
			      kern_threads(), "isa", kern_isa(), "test", test, "tokens_per_s", round(mean * 100) / 100,
			      "stddev", round(sd * 100) / 100, "matvec", mv);
	if (!j || json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)))
		cli_die("out of memory");
	putchar('\n');
	json_decref(j);
}

/* One test (pp or tg of n tokens after depth), o->reps times; its row. */
static void speed_test(const struct opts *o, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		       int depth, bool pp, int n, int32_t *toks, int32_t *pos, const char *path, const char *wtype)
{
	const char *mv = kern_matvec_isa(m->layers[0].wq.type);
	double sum = 0, sum2 = 0;
	for (int r = 0; r < o->reps; r++) {
		double tps = n / run_once(m, ws, kv, depth, pp, n, toks, pos);
		sum += tps;
		sum2 += tps * tps;
	}
	double mean = sum / o->reps, sd = o->reps > 1 ? sqrt(fmax(0, (sum2 - sum * mean) / (o->reps - 1))) : 0;
	char test[48];
	if (depth > 0) /* llama-bench's name for it */
		snprintf(test, sizeof test, "%s%d@d%d", pp ? "pp" : "tg", n, depth);
	else
		snprintf(test, sizeof test, "%s%d", pp ? "pp" : "tg", n);
	if (o->tsv)
		printf("%s\t%s\t%d\t%s\t%s\t%.2f\t%.2f\t%s\n", path, wtype, kern_threads(), kern_isa(), test, mean,
		       sd, mv);
	else if (o->json)
		print_speed_json(path, wtype, mv, test, mean, sd);
	else
		printf("%-28.28s %-6s %7d %-7s %-7s %-12s %8.2f ± %4.2f\n", path, wtype, kern_threads(), kern_isa(), mv,
		       test, mean, sd);
	cli_flush();
}

static void bench_speed(const struct opts *o)
{
	int tg[16] = { 128 }, n_tg = 1;
	if (o->n_gen)
		n_tg = parse_list("--n-gen", o->n_gen, tg, 16, false);
	struct model *m;
	if (model_load(&m, o->model))
		cli_die("%s", kb_error());
	int n_max = 1;
	for (int i = 0; i < o->n_pp; i++)
		n_max = o->pp[i] > n_max ? o->pp[i] : n_max;
	for (int i = 0; i < n_tg; i++)
		n_max = tg[i] > n_max ? tg[i] : n_max;
	int depths[16] = { 0 }, n_depth = o->n_depth ? o->n_depth : 1, d_max = 0;
	for (int i = 0; i < o->n_depth; i++)
		depths[i] = o->depth[i], d_max = depths[i] > d_max ? depths[i] : d_max;
	if (d_max + n_max > m->hp.n_ctx_train)
		fprintf(stderr, "%s: warning: depth %d and %d tokens go past the model's context of %d\n", cli_tool,
			d_max, n_max, m->hp.n_ctx_train);
	n_max += d_max;
	struct kv_cache kv;
	struct model_ws ws;
	int32_t *toks = malloc((size_t)n_max * sizeof *toks), *pos = malloc((size_t)n_max * sizeof *pos);
	if (!toks || !pos || kv_cache_init(&kv, m, n_max) ||
	    model_ws_init(&ws, m, o->batch < n_max ? o->batch : n_max, n_max))
		cli_die("%s", kb_error());
	const char *path = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
	const char *wtype = qtype_name(m->layers[0].wq.type);
	char plan[256];
	if (o->tsv)
		printf("model\ttype\tthreads\tisa\ttest\ttokens_per_s\tstddev\tmatvec\n");
	else if (!o->json)
		printf("# one-token matmul: %s\n%-28s %-6s %7s %-7s %-7s %-12s %14s\n",
		       model_plan_str(m, plan, sizeof plan), "model", "type", "threads", "isa", "matvec", "test", "t/s");
	run_once(m, &ws, &kv, 0, true, n_max < 64 ? n_max : 64, toks, pos); /* warm up: page in the weights */
	for (int di = 0; di < n_depth; di++) {
		const int depth = depths[di];
		if (depth > 0) /* the context the tests start from, computed once */
			run_once(m, &ws, &kv, 0, true, depth, toks, pos);
		for (int pass = 0; pass < 2; pass++) {
			const int *list = pass ? tg : o->pp, nl = pass ? n_tg : o->n_pp;
			for (int i = 0; i < nl; i++)
				speed_test(o, m, &ws, &kv, depth, !pass, list[i], toks, pos, path, wtype);
		}
	}
	free(toks);
	free(pos);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
}

/* ---- --dataset ---- */

struct reporter {
	bool show, tty;
};

/* Progress on stderr: overwritten in place on a terminal, a line each elsewhere
 * (where the ticks are left out). */
static void report_progress(void *ctx, enum bench_progress kind, const char *msg)
{
	const struct reporter *rp = ctx;
	if (!rp->show || (kind == BENCH_TICK && !rp->tty))
		return;
	fprintf(stderr, rp->tty ? "\r\033[K%s: %s" : "%s: %s\n", cli_tool, msg);
	if (rp->tty && kind == BENCH_DONE)
		fputc('\n', stderr);
	fflush(stderr);
}

static void warn_chunk(void *ctx, int id, const char *msg)
{
	fprintf(stderr, "%s: warning: a chunk cache: %s\n", cli_tool, msg);
}

static void write_plot(const char *path, const struct bench_result *r, const struct opts *o)
{
	FILE *f = fopen(path, "w");
	if (!f)
		cli_die("'%s': %s", path, strerror(errno));
	int rc = bench_plot(f, r, o->model, o->dataset);
	if (fclose(f) != 0 && rc == KB_OK)
		rc = kb_fail(KB_ERR_IO, "%s", strerror(errno));
	if (rc)
		cli_die("'%s': %s", path, kb_error());
}

static void bench_dataset(const struct opts *o, int n_prov, char ***prov)
{
	struct bench_method ms[BENCH_MAX_METHODS];
	int n_m;
	if (bench_methods_parse(o->methods ? o->methods : BENCH_DEFAULT_METHODS, ms, &n_m))
		cli_usage_error("%s", kb_error());
	struct bench_opts bo = { .template = o->template, .max_passages = o->max_passages,
				 .max_chunk_tokens = o->max_chunk_tokens, .n_gen = 32, .ctx = o->ctx };
	if (o->n_gen)
		bo.n_gen = (int)cli_long("--n-gen", o->n_gen, 0, 4096);
	struct dataset *d;
	struct model *m;
	if (dataset_load(&d, o->dataset, o->limit) || model_load(&m, o->model))
		cli_die("%s", kb_error());
	bo.template = cli_template(o->template, m->gguf, false, false); /* the caches and the JSON record the one used */
	if (kvc_option_names_set(prov, &n_prov, "template", bo.template))
		cli_die("%s", kb_error());
	for (int i = 0; i < n_m; i++)
		if (ms[i].bo.check_layer >= m->hp.n_layer)
			cli_usage_error("--methods %s: check layer %d, but the model has %d layers", ms[i].label,
					ms[i].bo.check_layer, m->hp.n_layer);
	if (chunkcache_open(&bo.cc, o->store, true, o->dtype))
		cli_die("%s", kb_error());
	chunkcache_set_tool(bo.cc, cli_tool, n_prov, *prov);
	chunkcache_set_warn(bo.cc, warn_chunk, NULL);
	int rr = chunkcache_set_remote(bo.cc, o->remote);
	if (rr == KB_ERR_ARG)
		cli_usage_error("--remote: %s", kb_error());
	else if (rr)
		cli_die("%s", kb_error());
	if (o->reuse_similar) {
		struct chunkcache_similar so = { .min_sim = SIMILAR_MIN_DEFAULT };
		blend_opts_init(&so.bo);
		chunkcache_set_similar(bo.cc, &so);
	}
	struct reporter rp = { .tty = isatty(STDERR_FILENO) };
	rp.show = !o->quiet && (o->progress || rp.tty);
	bo.progress = report_progress, bo.progress_ctx = &rp;

	struct bench_result r;
	int rc = bench_run(m, d, ms, n_m, &bo, &r);
	if (rp.tty && rp.show)
		fprintf(stderr, "\r\033[K");
	const char *hint = o->ctx ? "--ctx" : "the model's; --ctx N to go past it";
	if (rc && r.n_q == 0 && r.n_skipped)
		cli_die("%s (%s; cut the passages: --max-chunk-tokens, --max-passages)", kb_error(), hint);
	if (rc)
		cli_die("%s", kb_error());
	if (o->reuse_similar)
		fprintf(stderr, "%s: %d chunk caches computed for the store in %.3f s, %d of them built from similar "
			"chunks: %llu of %llu tokens reused\n", cli_tool, r.warm.misses, r.warm.t_compute, r.warm.similar,
			(unsigned long long)r.warm.tokens_reused, (unsigned long long)r.warm.tokens_similar);
	if (r.n_skipped)
		fprintf(stderr, "%s: warning: %d of %d questions skipped: prompts of up to %d tokens (with the %d generated) "
			"do not fit the context of %d (%s; cut the passages: --max-chunk-tokens, --max-passages)\n",
			cli_tool, r.n_skipped, d->n_items, r.max_skipped, bo.n_gen + 1, r.n_ctx, hint);
	for (int i = 0; i < r.n_m; i++)
		if (r.groups[0].sum[i].misses)
			fprintf(stderr, "%s: %s: %d chunk caches were missing from the store when timed and were computed "
				"(the store was evicted meanwhile?): its TTFT includes computing them\n",
				cli_tool, r.ms[i].label, r.groups[0].sum[i].misses);
	if (o->json)
		rc = bench_print_json(stdout, &r, o->model, o->dataset, bo.template);
	else if (o->tsv)
		rc = bench_print_tsv(stdout, &r);
	else
		rc = bench_print_table(stdout, &r, o->model, o->dataset);
	if (rc)
		cli_die("%s", kb_error());
	if (o->plot)
		write_plot(o->plot, &r, o);
	cli_flush();
	bench_result_free(&r);
	chunkcache_close(bo.cc);
	model_free(m);
	dataset_free(d);
}

static void parse(int argc, char **argv, struct opts *op)
{
	struct opts o = { .pp = { 512, 2048 }, .n_pp = 2, .reps = 3, .batch = 512, .dtype = -1 };
	bool dataset_only = false;
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'S': o.speed = true; break;
		case 'A': o.dataset = optarg; break;
		case 'm': o.model = optarg; break;
		case 'p': o.n_pp = parse_list("--n-prompt", optarg, o.pp, 16, false), o.speed_only = true; break;
		case 'n': o.n_gen = optarg; break;
		case 'd': o.n_depth = parse_list("--depth", optarg, o.depth, 16, true), o.speed_only = true; break;
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
		case OPT_REUSE_SIMILAR: o.reuse_similar = true, dataset_only = true; break;
		case CLI_REMOTE: o.remote = optarg, dataset_only = true; break;
		case 'Y':
			if ((o.dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0, kv8, kv4, kv3, kv2)",
						optarg);
			dataset_only = true;
			break;
		case 'j': o.json = true; break;
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
		cli_usage_error("--limit, --methods, --max-*, --template, --store, --remote, --dtype and --plot go with --dataset");
	if (o.dataset && o.speed_only)
		cli_usage_error("--n-prompt, --reps, --depth and --batch go with --speed");
	if (o.json && o.tsv)
		cli_usage_error("--json and --tsv do not go together");
	if (!o.template)
		o.template = "auto";
	cli_template_check(o.template);
	*op = o;
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o;
	parse(argc, argv, &o);
	kern_set_threads(o.threads);
	char **prov; /* provenance of its caches: the option names, never their values */
	int n_prov;
	if (kvc_option_names(argc, argv, cli.shortopts, cli.longopts, &prov, &n_prov))
		cli_die("%s", kb_error());
	if (o.speed)
		bench_speed(&o);
	else
		bench_dataset(&o, n_prov, &prov);
	free(prov);
	return 0;
}
