/* kvblend-bench — measurements side by side. This issue: --speed, prompt
 * processing and generation throughput of a model, as llama-bench measures them
 * (random token ids; pp = one prompt of N tokens in batches of 512 from an empty
 * cache; tg = N single-token steps from an empty cache). */
#include <math.h>
#include <stdbool.h>

#include "cli.h"
#include "model.h"

static const struct option longopts[] = {
	{ "speed", no_argument, NULL, 'S' },
	{ "model", required_argument, NULL, 'm' },
	{ "n-prompt", required_argument, NULL, 'p' },
	{ "n-gen", required_argument, NULL, 'n' },
	{ "reps", required_argument, NULL, 'r' },
	{ "threads", required_argument, NULL, 't' },
	{ "batch", required_argument, NULL, 'b' },
	{ "tsv", no_argument, NULL, 'T' },
	{ "help", no_argument, NULL, 'h' },
	{ "complete-options", no_argument, NULL, 'O' },
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend bench --speed -m MODEL [options]\n"
	       "Prompt processing (pp) and generation (tg) tokens/s of a model.\n\n"
	       "  -m, --model FILE      GGUF model\n"
	       "  -p, --n-prompt LIST   prompt sizes, comma-separated (default 512,2048; 0 = none)\n"
	       "  -n, --n-gen LIST      generation lengths (default 128; 0 = none)\n"
	       "  -r, --reps N          repetitions of each test (default 3)\n"
	       "  -t, --threads N       threads (default: all cores)\n"
	       "  -b, --batch N         prompt batch size (default 512)\n"
	       "      --tsv             tab-separated output for scripts\n"
	       "  -h, --help            this help\n");
}

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

int main(int argc, char **argv)
{
	cli_tool = "kvblend-bench";
	const char *model = NULL;
	int pp[16] = { 512, 2048 }, n_pp = 2, tg[16] = { 128 }, n_tg = 1, reps = 3, threads = 0, batch = 512;
	bool speed = false, tsv = false;
	int c;
	while ((c = getopt_long(argc, argv, "m:p:n:r:t:b:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'S': speed = true; break;
		case 'm': model = optarg; break;
		case 'p': n_pp = parse_list("--n-prompt", optarg, pp, 16); break;
		case 'n': n_tg = parse_list("--n-gen", optarg, tg, 16); break;
		case 'r': reps = (int)cli_long("--reps", optarg, 1, 1000); break;
		case 't': threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'b': batch = (int)cli_long("--batch", optarg, 1, 1 << 16); break;
		case 'T': tsv = true; break;
		case 'h': usage(); return 0;
		case 'O': cli_complete_options(longopts); return 0;
		default: cli_usage_error("bad usage");
		}
	}
	if (!speed)
		cli_usage_error("say what to measure: --speed (datasets come with blend)");
	if (!model)
		cli_usage_error("a model is required (-m MODEL)");
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	kb_set_threads(threads);

	struct model *m;
	if (model_load(&m, model))
		cli_die("%s", kb_error());
	int n_max = 1;
	for (int i = 0; i < n_pp; i++)
		n_max = pp[i] > n_max ? pp[i] : n_max;
	for (int i = 0; i < n_tg; i++)
		n_max = tg[i] > n_max ? tg[i] : n_max;
	struct kv_cache kv;
	struct model_ws ws;
	int32_t *toks = malloc((size_t)n_max * sizeof *toks), *pos = malloc((size_t)n_max * sizeof *pos);
	if (!toks || !pos || kv_cache_init(&kv, m, n_max) ||
	    model_ws_init(&ws, m, batch < n_max ? batch : n_max, n_max))
		cli_die("%s", kb_error());
	const char *path = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
	const char *wtype = qtype_name(m->layers[0].wq.type);
	if (tsv)
		printf("model\ttype\tthreads\tisa\ttest\ttokens_per_s\tstddev\n");
	else
		printf("%-28s %-6s %7s %-7s %-8s %14s\n", "model", "type", "threads", "isa", "test", "t/s");
	run_once(m, &ws, &kv, true, n_max < 64 ? n_max : 64, toks, pos); /* warm up: page in the weights */
	for (int pass = 0; pass < 2; pass++) {
		const int *list = pass ? tg : pp, nl = pass ? n_tg : n_pp;
		for (int i = 0; i < nl; i++) {
			double sum = 0, sum2 = 0;
			for (int r = 0; r < reps; r++) {
				double tps = list[i] / run_once(m, &ws, &kv, !pass, list[i], toks, pos);
				sum += tps;
				sum2 += tps * tps;
			}
			double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0, (sum2 - sum * mean) / (reps - 1))) : 0;
			char test[32];
			snprintf(test, sizeof test, "%s%d", pass ? "tg" : "pp", list[i]);
			if (tsv)
				printf("%s\t%s\t%d\t%s\t%s\t%.2f\t%.2f\n", path, wtype, kb_get_threads(), kern_isa(), test, mean, sd);
			else
				printf("%-28.28s %-6s %7d %-7s %-8s %8.2f ± %4.2f\n", path, wtype, kb_get_threads(), kern_isa(),
				       test, mean, sd);
			fflush(stdout);
		}
	}
	free(toks);
	free(pos);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	return 0;
}
