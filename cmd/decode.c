/* kvblend-decode — prefill a prompt and generate, streaming text to stdout. */
#include <inttypes.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <math.h>

#include "chunk.h"
#include "cli.h"
#include "kbio.h"
#include "kvfile.h"
#include "metrics.h"
#include "pool.h"
#include "tokevict.h"
#include "model.h"
#include "sample.h"
#include "template.h"

/* Long options without a short letter. */
enum { OPT_TEMPLATE = 0x200, OPT_STOP, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N, OPT_PRESENCE, OPT_FREQUENCY,
       OPT_JSON, OPT_LOGPROBS };

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "prompt", required_argument, NULL, 'p' },
	{ "file", required_argument, NULL, 'f' },
	{ "cache", required_argument, NULL, 'c' },
	{ "n-predict", required_argument, NULL, 'n' },
	{ "temp", required_argument, NULL, 'T' },
	{ "top-k", required_argument, NULL, 'K' },
	{ "top-p", required_argument, NULL, 'P' },
	{ "seed", required_argument, NULL, 'S' },
	{ "threads", required_argument, NULL, 't' },
	{ "ctx", required_argument, NULL, 'C' },
	{ "ids", no_argument, NULL, 'I' },
	{ "no-bos", no_argument, NULL, 'B' },
	{ "special", no_argument, NULL, 'N' },
	{ "quiet", no_argument, NULL, 'Q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "kv-budget", required_argument, NULL, 'k' },
	{ "evict", required_argument, NULL, 'e' },
	{ "sinks", required_argument, NULL, 's' },
	{ "window", required_argument, NULL, 'w' },
	{ "template", required_argument, NULL, OPT_TEMPLATE },
	{ "stop", required_argument, NULL, OPT_STOP },
	{ "min-p", required_argument, NULL, OPT_MIN_P },
	{ "repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY },
	{ "repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N },
	{ "presence-penalty", required_argument, NULL, OPT_PRESENCE },
	{ "frequency-penalty", required_argument, NULL, OPT_FREQUENCY },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "logprobs", required_argument, NULL, OPT_LOGPROBS },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend decode -m MODEL [-c CACHE.kvc] [-p TEXT | -f FILE] [options]\n"
	       "Prefill the prompt (from -p, -f or stdin) and generate, streaming text to stdout.\n"
	       "With a saved cache (-c, or a .kvc stream on stdin), generation continues from it,\n"
	       "after the text given with -p or -f if any.\n\n"
	       "  -m, --model FILE        GGUF model (llama, qwen2/3, gemma2/3, phi3)\n"
	       "  -p, --prompt TEXT       prompt text\n"
	       "  -f, --file FILE         read the prompt from FILE ('-' = stdin)\n"
	       "  -c, --cache FILE        continue from a KV cache (.kvc; '-' = stdin)\n"
	       "  -n, --n-predict N       tokens to generate (default 128; stops at end of generation)\n"
	       "      --temp T            temperature (default 0 = greedy)\n"
	       "      --top-k K           keep the K most likely tokens (default 40, 0 = off)\n"
	       "      --top-p P           nucleus sampling mass (default 0.95, 1 = off)\n"
	       "      --min-p P           keep tokens at least P times as likely as the most likely\n"
	       "                          (default 0 = off)\n"
	       "      --repeat-penalty F  penalize the last --repeat-last-n tokens (default 1 = off)\n"
	       "      --repeat-last-n N   how many recent tokens the penalties see (default 64, 0 = off)\n"
	       "      --presence-penalty F   subtract F from the logit of each recent token (default 0)\n"
	       "      --frequency-penalty F  subtract F per occurrence of each recent token (default 0)\n"
	       "      --seed N            sampling seed (default: from the clock)\n"
	       "      --stop STRING       end generation when the text reaches STRING, which is not\n"
	       "                          printed (repeatable)\n"
	       "      --template NAME     frame a prompt without a cache as a user turn: auto (default:\n"
	       "                          the one the model's tokenizer.chat_template names; plain when\n"
	       "                          none), plain, chatml, llama3, mistral, llama2, mistral-v7,\n"
	       "                          gemma, phi3, phi4\n"
	       "  -t, --threads N         threads (default: all cores)\n"
	       "      --ctx N             context size (default: the model's)\n"
	       "      --ids               print generated token ids (one line) instead of text\n"
	       "      --json              JSON Lines instead of text: one object per token, then one\n"
	       "                          with the text, the ids, why it stopped and the timings\n"
	       "      --logprobs N        with --json: the N most likely tokens at each step too\n"
	       "      --no-bos            do not prepend the BOS token\n"
	       "      --special           turn special tokens written in the prompt (<s>, <|im_start|>)\n"
	       "                          into those tokens (default: they are plain text)\n"
	       "      --kv-budget N       keep the KV cache within N slots while generating, evicting\n"
	       "                          tokens (a longer prompt is cut to N first): memory stays flat\n"
	       "      --evict POLICY      what goes: streamingllm (default), h2o, tova or lazyeviction\n"
	       "      --sinks S           first tokens streamingllm and lazyeviction keep (default 4)\n"
	       "      --window W          recent tokens h2o and lazyeviction keep (default 32)\n"
	       "      --quiet             no word on stderr when the context fills up, nor when\n"
	       "                          --template auto falls back to plain\n"
	       "  -v, --verbose           timings and settings on stderr\n"
	       "  -h, --help              this help\n"
	       "      --version           the version\n");
}

static const struct cli_values values[] = {
	{ "--evict", "streamingllm h2o tova lazyeviction" },
	{ "--template", TEMPLATE_WORDS },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-decode", "m:p:f:c:n:t:vh", longopts, usage, values };

struct opts {
	const char *model, *prompt, *file, *cache, *template;
	int n_predict, threads, ctx;
	int kv_budget, evict, sinks, window; /* --kv-budget (0: none) */
	struct sampler_params sp;
	const char **stops; /* owned array, [n_stops]: the --stop strings (argv's) */
	int n_stops, logprobs;
	size_t max_stop;    /* the longest stop string's length */
	bool ids, json, no_bos, special, quiet, verbose, seed_set;
};

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	if (!(o->stops = malloc((size_t)argc * sizeof *o->stops))) /* at most one --stop a word */
		cli_die("out of memory");
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'p': o->prompt = optarg; break;
		case 'f': o->file = optarg; break;
		case 'c': o->cache = optarg; break;
		case 'n': o->n_predict = (int)cli_long("--n-predict", optarg, 0, 1 << 24); break;
		case 'T': o->sp.temp = (float)cli_double("--temp", optarg, 0, 100); break;
		case 'K': o->sp.top_k = (int)cli_long("--top-k", optarg, 0, 1 << 24); break;
		case 'P': o->sp.top_p = (float)cli_double("--top-p", optarg, 0, 1); break;
		case 'S':
			o->sp.seed = (uint64_t)cli_long("--seed", optarg, 0, 0x7fffffffffffffffL);
			o->seed_set = true;
			break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'C': o->ctx = (int)cli_long("--ctx", optarg, 1, 1 << 24); break;
		case 'I': o->ids = true; break;
		case 'B': o->no_bos = true; break;
		case 'N': o->special = true; break;
		case 'Q': o->quiet = true; break;
		case 'v': o->verbose = true; break;
		case 'k': o->kv_budget = (int)cli_long("--kv-budget", optarg, 2, 1 << 24); break;
		case 'e':
			if ((o->evict = tokevict_online_from_name(optarg)) < 0)
				cli_usage_error("--evict: unknown policy '%s' (streamingllm, h2o, tova, lazyeviction)", optarg);
			break;
		case 's': o->sinks = (int)cli_long("--sinks", optarg, 0, 1 << 24); break;
		case 'w': o->window = (int)cli_long("--window", optarg, 1, 1 << 24); break;
		case OPT_TEMPLATE: o->template = optarg; break;
		case OPT_STOP:
			if (!*optarg)
				cli_usage_error("--stop: the string is empty");
			o->stops[o->n_stops++] = optarg;
			o->max_stop = strlen(optarg) > o->max_stop ? strlen(optarg) : o->max_stop;
			break;
		case OPT_MIN_P: o->sp.min_p = (float)cli_double("--min-p", optarg, 0, 1); break;
		case OPT_REPEAT_PENALTY:
			o->sp.repeat_penalty = (float)cli_double("--repeat-penalty", optarg, 0.01, 100);
			break;
		case OPT_REPEAT_LAST_N: o->sp.repeat_last_n = (int)cli_long("--repeat-last-n", optarg, 0, 1 << 24); break;
		case OPT_PRESENCE: o->sp.presence_penalty = (float)cli_double("--presence-penalty", optarg, -100, 100); break;
		case OPT_FREQUENCY:
			o->sp.frequency_penalty = (float)cli_double("--frequency-penalty", optarg, -100, 100);
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_LOGPROBS: o->logprobs = (int)cli_long("--logprobs", optarg, 1, 20); break;
		default: cli_unreachable(c);
		}
	}
	if (!o->model)
		cli_usage_error("a model is required (-m MODEL)");
	if (o->prompt && o->file)
		cli_usage_error("give the prompt with -p or -f, not both");
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (o->json && o->ids)
		cli_usage_error("--json and --ids do not go together (the JSON has the ids)");
	if (o->logprobs && !o->json)
		cli_usage_error("--logprobs goes with --json");
	cli_template_check(o->template);
	if ((o->evict >= 0 || o->sinks >= 0 || o->window >= 0) && !o->kv_budget)
		cli_usage_error("--evict, --sinks and --window go with --kv-budget N");
	o->evict = o->evict < 0 ? TOKEVICT_ONLINE_STREAMINGLLM : o->evict;
	o->sinks = o->sinks < 0 ? 4 : o->sinks;
	o->window = o->window < 0 ? 32 : o->window;
	if (!o->seed_set)
		o->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

/* Why generation ended, as --json names it. */
enum stop_reason { STOP_LENGTH, STOP_EOS, STOP_STRING, STOP_CONTEXT };
static const char *const stop_names[] = { "max_tokens", "eos", "stop", "context" };

/* The output of a generation: the text so far, held back while its end could
 * be the start of a stop string; the ids for --json. */
struct gen {
	const struct opts *o;
	const struct tok *t;
	char *text;          /* owned, [len] (cap): the text generated, cut at a stop string */
	size_t len, cap;
	size_t shown;        /* text[0..shown) is written (text mode) */
	int32_t *ids;        /* owned, [n] (cap_ids): the ids generated */
	size_t n, cap_ids;
	int stop;            /* the --stop string that ended generation, or -1 */
	enum stop_reason why;
};

static void out_text(const char *s, size_t n)
{
	fwrite(s, 1, n, stdout);
	cli_flush(); // a reader that cannot take it ends the generation
}

/* A JSON string of s[0..n): invalid UTF-8 (a piece cut inside a character) as U+FFFD. */
static json_t *json_text(const char *s, size_t n)
{
	size_t len;
	char *c = chunk_utf8_clean(s, n, &len, NULL);
	json_t *j = c ? json_stringn(c, len) : NULL;
	free(c);
	return j;
}

static void json_line(json_t *j)
{
	if (!j || json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7)))
		cli_die("out of memory");
	json_decref(j);
	putchar('\n');
	cli_flush();
}

/* --json: the token's object, with its log-probability under the model's
 * logits (softmax at temperature 1, before penalties and filters) and, with
 * --logprobs N, the N most likely tokens. */
static void json_token(const struct gen *g, int32_t id, const char *piece, size_t n, const float *logits, int n_vocab)
{
	const double lse = metrics_logsumexp(logits, n_vocab);
	json_t *o = json_pack("{s:i, s:o, s:f}", "id", (int)id, "text", json_text(piece, n), "logprob",
			      (double)logits[id] - lse);
	if (g->o->logprobs) {
		int32_t top[20];
		int k = 0;
		for (int32_t i = 0; i < n_vocab; i++) { /* insertion into the k best, descending */
			if (k == g->o->logprobs && logits[i] <= logits[top[k - 1]])
				continue;
			int j = k < g->o->logprobs ? k++ : k - 1;
			for (; j > 0 && logits[top[j - 1]] < logits[i]; j--)
				top[j] = top[j - 1];
			top[j] = i;
		}
		json_t *arr = json_array();
		for (int i = 0; i < k; i++) {
			char buf[256];
			size_t m = tok_decode(g->t, top[i], false, buf, sizeof buf);
			json_array_append_new(arr, json_pack("{s:i, s:o, s:f}", "id", (int)top[i], "text",
							     json_text(buf, m < sizeof buf ? m : sizeof buf), "logprob",
							     (double)logits[top[i]] - lse));
		}
		json_object_set_new(o, "top", arr);
	}
	json_line(o);
}

/* The longest end of text[from..len) that begins a stop string (it is held back). */
static size_t stop_prefix(const struct gen *g, size_t from)
{
	size_t avail = g->len - from, h = avail < g->o->max_stop ? avail : g->o->max_stop;
	for (; h > 0; h--)
		for (int i = 0; i < g->o->n_stops; i++)
			if (strlen(g->o->stops[i]) > h && !memcmp(g->text + g->len - h, g->o->stops[i], h))
				return h;
	return 0;
}

/* A token generated: its text appended and shown (text mode: up to where a
 * stop string could begin), its id kept. Returns true when the text now holds
 * a stop string: the text is cut where it begins. */
static bool gen_add(struct gen *g, int32_t id, const float *logits, int n_vocab)
{
	char piece[256];
	size_t n = tok_decode(g->t, id, false, piece, sizeof piece);
	n = n < sizeof piece ? n : sizeof piece;
	if (kb_grow(&g->ids, &g->cap_ids, g->n, sizeof *g->ids, 256) ||
	    kb_grow(&g->text, &g->cap, g->len + n, 1, 4096))
		cli_die("out of memory");
	g->ids[g->n++] = id;
	memcpy(g->text + g->len, piece, n);
	g->len += n;
	if (g->o->json)
		json_token(g, id, piece, n, logits, n_vocab);
	/* a stop string can only begin in what is not shown yet */
	size_t at = g->len;
	for (int i = 0; i < g->o->n_stops; i++) {
		const char *hit = memmem(g->text + g->shown, g->len - g->shown, g->o->stops[i], strlen(g->o->stops[i]));
		if (hit && (size_t)(hit - g->text) < at)
			at = (size_t)(hit - g->text), g->stop = i;
	}
	bool stopped = at < g->len;
	size_t upto = stopped ? at : g->len - stop_prefix(g, g->shown);
	if (g->o->ids)
		printf(g->n == 1 ? "%d" : " %d", id), cli_flush();
	else if (!g->o->json && upto > g->shown)
		out_text(g->text + g->shown, upto - g->shown);
	g->shown = upto;
	if (stopped)
		g->len = at;
	return stopped;
}

/* The end: what was held back is shown (no stop string came), and with --json the last object. */
static void gen_end(struct gen *g, int n_prompt, int64_t n_cached, double t_prompt, double t_decode)
{
	if (!g->o->ids && !g->o->json && g->len > g->shown)
		out_text(g->text + g->shown, g->len - g->shown);
	g->shown = g->len;
	if (!g->o->json) {
		if (g->o->ids || g->len > 0 || g->n > 0)
			putchar('\n');
		return;
	}
	json_t *ids = json_array();
	for (size_t i = 0; i < g->n; i++)
		json_array_append_new(ids, json_integer(g->ids[i]));
	json_t *o = json_pack("{s:b, s:o, s:o, s:s}", "done", 1, "text", json_text(g->text ? g->text : "", g->len),
			      "ids", ids, "stop", stop_names[g->why]);
	if (g->why == STOP_STRING)
		json_object_set_new(o, "stop_string", json_string(g->o->stops[g->stop]));
	json_object_set_new(o, "n_prompt", json_integer(n_prompt));
	json_object_set_new(o, "n_cached", json_integer(n_cached));
	json_object_set_new(o, "n_generated", json_integer((json_int_t)g->n));
	json_object_set_new(o, "timings",
			    json_pack("{s:f, s:f, s:f, s:f}", "prompt_ms", t_prompt * 1e3, "decode_ms", t_decode * 1e3,
				      "prompt_tokens_per_s", t_prompt > 0 ? n_prompt / t_prompt : 0.0, "tokens_per_s",
				      g->n > 1 && t_decode > 0 ? (double)(g->n - 1) / t_decode : 0.0));
	json_line(o);
}

/* The input: a saved cache (from -c or sniffed on stdin), text, or both. */
struct input {
	struct kbio *io;          /* the cache's input, or NULL */
	struct kvc_reader *cache; /* reads io, or NULL */
	char *text;               /* owned, or NULL */
	size_t text_len;
};

/* The cache of input io (kbio owns reading it: a file, or stdin once). */
static void open_cache(struct input *in, const char *path)
{
	if (kbio_open(&in->io, path) || kbio_kvc_reader(in->io, &in->cache))
		cli_die("%s", kb_error());
}

static void read_input(const struct opts *o, struct input *in)
{
	memset(in, 0, sizeof *in);
	if (o->cache)
		open_cache(in, o->cache);
	if (o->prompt) {
		in->text = strdup(o->prompt);
		in->text_len = strlen(o->prompt);
		if (!in->text)
			cli_die("out of memory");
		return;
	}
	if (o->file) {
		if (kbio_read_file(o->file, &in->text, &in->text_len))
			cli_die("%s", kb_error());
		return;
	}
	if (o->cache)
		return;
	if (isatty(STDIN_FILENO))
		cli_usage_error("no prompt: give -p TEXT, -f FILE, -c CACHE, or text or a cache on stdin");
	/* stdin: a .kvc cache (sniffed by its magic, not consumed) or text */
	enum kbio_type type;
	if (kbio_open(&in->io, "-") || kbio_sniff(in->io, &type))
		cli_die("%s", kb_error());
	if (type == KBIO_KVC) {
		if (kbio_kvc_reader(in->io, &in->cache))
			cli_die("%s", kb_error());
		return;
	}
	if (kbio_read_all(in->io, &in->text, &in->text_len))
		cli_die("%s", kb_error());
	kbio_close(in->io);
	in->io = NULL;
}

/* Load the cache (header ch, read from r) into kv, then run the prompt's
 * tokens ids[0..n_ids) after it; ws.logits hold the last token's logits.
 * Returns the position of the next token. */
static int32_t prefill(const struct model *m, struct model_ws *ws, struct kv_cache *kv, struct kvc_reader *r,
		       const struct kvc_header *ch, const int32_t *ids, size_t n_ids)
{
	int32_t next_pos = 0;
	if (ch) {
		if (kvfile_read(r, ch, m, kv))
			cli_die("%s", kb_error());
		for (int i = 0; i < kv->n; i++)
			next_pos = kv->pos[i] + 1 > next_pos ? kv->pos[i] + 1 : next_pos;
		if (n_ids == 0) {
			if (ch->n_logits == m->hp.n_vocab) {
				memcpy(ws->logits, ch->logits, (size_t)m->hp.n_vocab * sizeof *ws->logits);
			} else {
				/* no logits saved: run the last cached token again */
				kv->n--;
				if (model_forward(m, ws, kv, &kv->tok[kv->n], &kv->pos[kv->n], 1, ws->logits, false))
					cli_die("%s", kb_error());
			}
		}
	}
	if (n_ids > 0) {
		int32_t *pos = malloc(n_ids * sizeof *pos);
		if (!pos)
			cli_die("out of memory");
		for (size_t i = 0; i < n_ids; i++)
			pos[i] = next_pos + (int32_t)i;
		if (model_forward(m, ws, kv, ids, pos, (int)n_ids, ws->logits, false))
			cli_die("%s", kb_error());
		next_pos += (int32_t)n_ids;
		free(pos);
	}
	return next_pos;
}

/* A prompt longer than --kv-budget: keep the budget's worth by the offline
 * form of the policy (lazyeviction's: tova's, the one query there is). */
static void cut_prompt(const struct opts *o, const struct model *m, struct kv_cache *kv)
{
	static const enum tokevict_policy offline[TOKEVICT_ONLINE_COUNT] = {
		[TOKEVICT_ONLINE_STREAMINGLLM] = TOKEVICT_STREAMINGLLM, [TOKEVICT_ONLINE_H2O] = TOKEVICT_H2O,
		[TOKEVICT_ONLINE_TOVA] = TOKEVICT_TOVA, [TOKEVICT_ONLINE_LAZY] = TOKEVICT_TOVA,
	};
	if (kv->hpos)
		cli_die("the cache is token-evicted already and larger than --kv-budget %d: evict it to the budget first",
			o->kv_budget);
	struct tokevict_opts te;
	tokevict_opts_init(&te, offline[o->evict]);
	te.budget = o->kv_budget, te.sinks = o->sinks, te.window = o->window;
	struct tokevict_sel sel;
	if (tokevict_run(m, kv, &te, &sel) || tokevict_apply(kv, &sel))
		cli_die("%s", kb_error());
	tokevict_sel_free(&sel);
}

/* Sample, show and feed back up to -n tokens from ws.logits on; stops at an
 * end-of-generation token, a stop string or a full context (g->why says which).
 * Returns the count. */
static int generate(const struct opts *o, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		    struct sampler *smp, int32_t next_pos, struct tokevict_online *ev, struct gen *g)
{
	int n_gen = 0;
	g->why = STOP_LENGTH;
	while (n_gen < o->n_predict) {
		int32_t next = sampler_sample(smp, ws->logits);
		if (tok_is_eog(m->tok, next)) {
			g->why = STOP_EOS;
			break;
		}
		sampler_accept(smp, next);
		n_gen++;
		if (gen_add(g, next, ws->logits, m->hp.n_vocab)) {
			g->why = STOP_STRING;
			break;
		}
		if (n_gen == o->n_predict)
			break;
		if (kv->n == kv->n_ctx) {
			g->why = STOP_CONTEXT;
			break;
		}
		int32_t p = next_pos++;
		if (model_forward(m, ws, kv, &next, &p, 1, ws->logits, false))
			cli_die("%s", kb_error());
		if (ev && tokevict_online_step(ev, kv, ws->q_probe, p))
			cli_die("%s", kb_error());
	}
	return n_gen;
}

/* The prompt's ids: the text as it is after a cache (or with the plain
 * template), else framed as one user turn by the template, tokenized as
 * kvblend-blend tokenizes a prompt (the markup with special tokens, the text
 * plain unless --special; head and tail apart). */
static void encode_prompt(const struct opts *o, const struct model *m, const struct input *in, bool bos,
			  int32_t **ids, size_t *n_ids)
{
	const char *tmpl = in->cache ? "plain" : cli_template(o->template, m->gguf, o->verbose, o->quiet);
	if (!strcmp(tmpl, "plain")) {
		if (tok_encode(m->tok, in->text, in->text_len, bos, o->special, ids, n_ids))
			cli_die("%s", kb_error());
		return;
	}
	char *query = kb_strndup(in->text, in->text_len), *head, *tail;
	struct template_spans sp;
	int32_t *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	if (!query || template_frame(tmpl, NULL, query, &head, &tail, &sp) ||
	    tok_encode_framed(m->tok, head, strlen(head), bos, true, 0, 0, &a, &na) ||
	    tok_encode_framed(m->tok, tail, strlen(tail), false, true, sp.query_at, o->special ? 0 : sp.query_len, &b,
			      &nb))
		cli_die("%s", kb_error());
	if (!(*ids = realloc(a, (na + nb + 1) * sizeof *a)))
		cli_die("out of memory");
	if (nb)
		memcpy(*ids + na, b, nb * sizeof *b);
	*n_ids = na + nb;
	free(b), free(head), free(tail), free(query);
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .n_predict = 128, .evict = -1, .sinks = -1, .window = -1, .template = "auto",
			  .sp = { .temp = 0, .top_k = 40, .top_p = 0.95f, .repeat_penalty = 1, .repeat_last_n = 64 } };
	parse(argc, argv, &o);
	kern_set_threads(o.threads);

	struct input in;
	read_input(&o, &in);
	if (!in.cache && in.text_len == 0)
		cli_die("prompt is empty");

	struct model *m;
	if (model_load(&m, o.model))
		cli_die("%s", kb_error());
	if (tok_warning(m->tok))
		fprintf(stderr, "%s: warning: %s\n", cli_tool, tok_warning(m->tok));

	/* the cache's header first: it says how much context is already used */
	const struct kvc_header *ch = NULL;
	if (in.cache) {
		int rc = kvc_reader_next_header(in.cache, &ch);
		if (rc == KB_EOF)
			cli_die("%s: no cache in the stream", o.cache ? o.cache : "<stdin>");
		if (rc)
			cli_die("%s", kb_error());
		if (ch->n_tokens == 0)
			cli_die("%s: the cache is empty", o.cache ? o.cache : "<stdin>");
	}
	/* text after a cache continues it: no BOS */
	int32_t *ids = NULL;
	size_t n_ids = 0;
	bool bos = !o.no_bos && !in.cache && tok_add_bos(m->tok);
	if (in.text_len > 0)
		encode_prompt(&o, m, &in, bos, &ids, &n_ids);
	if (!in.cache && n_ids == 0)
		cli_die("prompt is empty after tokenization");

	/* the context: --ctx, else the model's; the buffers only what this run can
	 * use of it (not -n: -n 16777216 must not reserve gigabytes) */
	const int64_t n_cached = ch ? kvfile_slots(ch) : 0; /* a token-evicted cache: its largest layer */
	const int64_t n_prompt = n_cached + (int64_t)n_ids;
	const int ctx = o.ctx ? o.ctx : m->hp.n_ctx_train;
	if (n_prompt > ctx)
		cli_die("the prompt has %" PRId64 " tokens, more than the context of %d", n_prompt, ctx);
	int n_ctx = n_prompt + o.n_predict < ctx ? (int)(n_prompt + o.n_predict) : ctx;
	if (o.kv_budget) /* the prompt, then never more than the budget and the token being added */
		n_ctx = n_prompt > o.kv_budget + 1 ? (int)n_prompt : o.kv_budget + 1;
	if (ctx > m->hp.n_ctx_train && o.verbose)
		fprintf(stderr, "%s: context %d exceeds the model's training context %d\n",
			cli_tool, ctx, m->hp.n_ctx_train);

	struct kv_cache kv;
	struct model_ws ws;
	int n_batch = n_ids > 0 && n_ids < 512 ? (int)n_ids : 512;
	if (kv_cache_init(&kv, m, n_ctx) || model_ws_init(&ws, m, n_batch, n_ctx))
		cli_die("%s", kb_error());
	struct sampler *smp = sampler_init(m->hp.n_vocab, &o.sp);
	if (!smp)
		cli_die("%s", kb_error());

	/* prefill: load the cache, then run the text after it */
	double t0 = kb_now();
	int32_t next_pos = prefill(m, &ws, &kv, in.cache, ch, ids, n_ids);
	double t1 = kb_now();
	const size_t n_prefilled = n_ids;
	for (int i = kv.n > o.sp.repeat_last_n ? kv.n - o.sp.repeat_last_n : 0; i < kv.n; i++)
		sampler_accept(smp, kv.tok[i]); /* the penalties see the prompt's last tokens too */

	/* --kv-budget: the prompt cut to the budget, then one token out for each one in */
	struct tokevict_online *ev = NULL;
	if (o.kv_budget) {
		if (kv.n > o.kv_budget)
			cut_prompt(&o, m, &kv);
		if (!(ws.q_probe = malloc((size_t)m->hp.n_layer * m->hp.n_head * m->hp.head_dim * sizeof(float))) ||
		    tokevict_online_init(&ev, (enum tokevict_online_policy)o.evict, o.kv_budget, o.sinks, o.window, m,
					 &kv))
			cli_die("%s", kb_error());
	}

	/* generate */
	struct gen g = { .o = &o, .t = m->tok, .stop = -1 };
	int n_gen = generate(&o, m, &ws, &kv, smp, next_pos, ev, &g);
	double t2 = kb_now();
	gen_end(&g, (int)n_prefilled, n_cached, t1 - t0, t2 - t1);
	if (g.why == STOP_CONTEXT && !o.quiet)
		fprintf(stderr, "%s: stopped after %d tokens: context full at %d tokens (%s)\n", cli_tool, n_gen, kv.n,
			o.ctx ? "--ctx" : "the model's context; --ctx N for more");
	if (o.verbose) {
		char plan[256];
		fprintf(stderr, "%s: %s, %d threads, isa %s, one-token matmul %s, seed %llu\n", cli_tool,
			m->gguf->path, kern_threads(), kern_isa(), model_plan_str(m, plan, sizeof plan),
			(unsigned long long)o.sp.seed);
		fprintf(stderr, "%s: %" PRId64 " cached tokens loaded; prompt %zu tokens in %.3f s (%.1f t/s); "
			"generated %d tokens in %.3f s (%.1f t/s)\n",
			cli_tool, n_cached, n_prefilled, t1 - t0, n_prefilled / (t1 - t0), n_gen, t2 - t1,
			n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0);
	}
	free(ids);
	free(g.text);
	free(g.ids);
	free(o.stops);
	free(in.text);
	kvc_reader_free(in.cache);
	kbio_close(in.io);
	sampler_free(smp);
	tokevict_online_free(ev);
	free(ws.q_probe);
	ws.q_probe = NULL;
	model_ws_free(&ws);
	kv_cache_free(&kv);
	model_free(m);
	return 0;
}
