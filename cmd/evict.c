/* kvblend-evict — keep the cache store within a byte budget (LRU, LFU, S3-FIFO,
 * cost-aware), pin entries, verify the store, show what is in it; or prune the
 * tokens of one KV cache (StreamingLLM, H2O, SnapKV, PyramidKV, TOVA, CAKE).
 *
 * Two levels, told apart by the command line: with --tokens POLICY it reads
 * one cache (IN.kvc, or stdin) and writes a smaller one (tokevict.h); without,
 * it works on a store (--store DIR or the default). */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "kbio.h"
#include "kvfile.h"
#include "pool.h"
#include "remote.h"
#include "store.h"
#include "tokevict.h"

static const struct option longopts[] = {
	{ "store", required_argument, NULL, 'S' },
	CLI_REMOTE_OPTION,
	{ "max-bytes", required_argument, NULL, 'B' },
	{ "policy", required_argument, NULL, 'p' },
	{ "half-life", required_argument, NULL, 'H' },
	{ "recompress", required_argument, NULL, 'R' },
	{ "default-dtype", required_argument, NULL, 'X' },
	{ "older-than", required_argument, NULL, 'O' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "pin", required_argument, NULL, 'P' },
	{ "unpin", required_argument, NULL, 'U' },
	{ "verify", no_argument, NULL, 'V' },
	{ "stats", no_argument, NULL, 's' },
	{ "list", no_argument, NULL, 'l' },
	{ "json", no_argument, NULL, 'j' },
	{ "tokens", required_argument, NULL, 'T' },
	{ "budget", required_argument, NULL, 'b' },
	{ "model", required_argument, NULL, 'm' },
	{ "window", required_argument, NULL, 'W' },
	{ "sinks", required_argument, NULL, 'K' },
	{ "pool", required_argument, NULL, 'L' },
	{ "layer-budget", required_argument, NULL, 'Y' },
	{ "output", required_argument, NULL, 'o' },
	{ "threads", required_argument, NULL, 't' },
	{ "verbose", no_argument, NULL, 'v' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend evict [--store DIR] --max-bytes N [--policy P] [--dry-run] [-v]\n"
	       "       kvblend evict [--store DIR] [--pin KEY] [--unpin KEY] [--verify] [--stats] [--list]\n"
	       "       kvblend evict [--store DIR] --recompress TYPE [--older-than AGE] [--dry-run] [-v]\n"
	       "       kvblend evict [--store DIR] --default-dtype TYPE|none\n"
	       "       kvblend evict --remote URL [--max-bytes N [--policy P]] [--verify] [--list] [--dry-run]\n"
	       "       kvblend evict --tokens POLICY --budget N|P%% [-m MODEL] [options] [-o OUT] [IN.kvc|-]\n"
	       "Keep the KV-cache store within a byte budget, removing whole chunk caches, never\n"
	       "pinned ones; pin and unpin caches; check the store; show what is in it. With\n"
	       "--tokens, prune the tokens of one KV cache instead: a smaller cache out.\n\n"
	       "      --store DIR         the store (default $KVBLEND_STORE, else $XDG_CACHE_HOME/kvblend,\n"
	       "                          else ~/.cache/kvblend)\n"
	       "      --remote URL        work on the remote tier's objects instead (s3://BUCKET/PREFIX):\n"
	       "                          --list, --stats, --verify (each read whole; broken ones deleted)\n"
	       "                          and --max-bytes with the same policies, using what the local\n"
	       "                          store knows of each key (uses, hits, cost, pins)\n"
	       "      --max-bytes N       evict until the caches take at most N bytes (a size: k, M, G, T\n"
	       "                          are KiB, MiB, GiB, TiB)\n"
	       "      --policy P          what goes first: lru (default), lfu, s3fifo or cost\n"
	       "      --half-life T       cost policy: an unused cache's value halves every T (default 1d;\n"
	       "                          suffixes s, m, h, d)\n"
	       "      --dry-run           print what would be removed or repaired, change nothing\n"
	       "      --pin KEY           never evict the cache KEY (a unique prefix will do; repeatable)\n"
	       "      --unpin KEY         let KEY be evicted again (repeatable)\n"
	       "      --verify            read every cache whole (checksums, key) and check the index;\n"
	       "                          remove what is broken, adopt sound caches it lacks; exit 1 if\n"
	       "                          anything was wrong\n"
	       "      --recompress TYPE   store the caches in TYPE (kv8, kv4, kv3, kv2 compressed; or f16,\n"
	       "                          bf16, f32, q8_0), each replaced atomically: a tier by compression\n"
	       "      --older-than AGE    with --recompress: only caches unused for AGE (suffixes s, m, h, d)\n"
	       "      --default-dtype TYPE  the type prefill, blend and bench store new caches in when\n"
	       "                          not given --dtype (none: f16 again)\n"
	       "      --stats             totals and per-model figures\n"
	       "      --list              one line per cache\n"
	       "  -j, --json              --stats and --list as JSON\n"
	       "Token eviction (one cache in, one out; positions are kept):\n"
	       "      --tokens POLICY     streamingllm, h2o, snapkv, pyramidkv, tova or cake\n"
	       "      --budget N|P%%       rows kept per layer on average: N tokens or P%% of the cache\n"
	       "  -m, --model FILE        the cache's model (GGUF): every policy but streamingllm needs\n"
	       "                          its attention\n"
	       "      --window W          observation window / recent tokens kept (default 32)\n"
	       "      --sinks S           streamingllm: first tokens kept (default 4)\n"
	       "      --pool K            max-pool the scores over K neighbours (odd; default 7, 1 = off)\n"
	       "      --layer-budget S    uniform, pyramid or cake (default: pyramid for pyramidkv, cake\n"
	       "                          for cake, else uniform)\n"
	       "  -o, --output FILE       where the cache goes (default stdout, which must not be a\n"
	       "                          terminal)\n"
	       "  -t, --threads N         threads (default: all cores)\n"
	       "  -v, --verbose           one line per removed cache\n"
	       "  -h, --help              this help\n"
	       "      --version           the version\n");
}

static const struct cli_values values[] = {
	{ "--policy", "lru lfu s3fifo cost" },
	{ "--tokens", "streamingllm h2o snapkv pyramidkv tova cake" },
	{ "--layer-budget", "uniform pyramid cake" },
	{ "--recompress", "kv8 kv4 kv3 kv2 f16 bf16 f32 q8_0" },
	{ "--default-dtype", "kv8 kv4 kv3 kv2 f16 bf16 f32 q8_0 none" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-evict", "jvhm:o:t:", longopts, usage, values };

#define MAX_KEYS 256

struct opts {
	const char *store, *remote;
	uint64_t max_bytes;
	bool evict, dry_run, verify, stats, list, json, verbose, tokens;
	int policy;
	double half_life;
	int recompress;       /* dtype, or -1 */
	int default_dtype;    /* --default-dtype: a dtype, -1 none, -2 not given */
	double older_than;    /* seconds */
	const char *pin[MAX_KEYS], *unpin[MAX_KEYS];
	int n_pin, n_unpin;
	/* --tokens */
	struct tokevict_opts te;
	const char *budget, *model, *output, *input;
	int window, sinks, pool, threads; /* -1: not given */
	int layers;
};

/* "3600", "90s", "30m", "12h", "7d" → seconds (> 0). */
static double parse_duration(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	switch (*end) {
	case 's': end++; break;
	case 'm': v *= 60; end++; break;
	case 'h': v *= 3600; end++; break;
	case 'd': v *= 86400; end++; break;
	}
	if (errno || end == s || *end || !(v > 0) || !isfinite(v))
		cli_usage_error("%s: '%s' is not a duration (seconds, or with s, m, h or d)", opt, s);
	return v;
}

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'S': o->store = optarg; break;
		case CLI_REMOTE: o->remote = optarg; break;
		case 'B': o->max_bytes = cli_size("--max-bytes", optarg, 0, UINT64_MAX), o->evict = true; break;
		case 'p':
			if ((o->policy = store_policy_from_name(optarg)) < 0)
				cli_usage_error("--policy: unknown policy '%s' (lru, lfu, s3fifo, cost)", optarg);
			break;
		case 'H': o->half_life = parse_duration("--half-life", optarg); break;
		case 'R':
			if ((o->recompress = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--recompress: unknown type '%s' (kv8, kv4, kv3, kv2, f16, bf16, f32, q8_0)",
						optarg);
			break;
		case 'X':
			if (strcmp(optarg, "none") == 0)
				o->default_dtype = -1;
			else if ((o->default_dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--default-dtype: unknown type '%s' (f16, bf16, f32, q8_0, kv8, kv4, kv3, "
						"kv2, or none)", optarg);
			break;
		case 'O': o->older_than = parse_duration("--older-than", optarg); break;
		case 'n': o->dry_run = true; break;
		case 'P':
			if (o->n_pin == MAX_KEYS)
				cli_usage_error("more than %d --pin", MAX_KEYS);
			o->pin[o->n_pin++] = optarg;
			break;
		case 'U':
			if (o->n_unpin == MAX_KEYS)
				cli_usage_error("more than %d --unpin", MAX_KEYS);
			o->unpin[o->n_unpin++] = optarg;
			break;
		case 'V': o->verify = true; break;
		case 's': o->stats = true; break;
		case 'l': o->list = true; break;
		case 'j': o->json = true; break;
		case 'T': {
			int p = tokevict_policy_from_name(optarg);
			if (p < 0)
				cli_usage_error("--tokens: unknown policy '%s' (streamingllm, h2o, snapkv, pyramidkv, "
						"tova, cake)", optarg);
			o->tokens = true;
			tokevict_opts_init(&o->te, (enum tokevict_policy)p);
			break;
		}
		case 'b': o->budget = optarg; break;
		case 'm': o->model = optarg; break;
		case 'W': o->window = (int)cli_long("--window", optarg, 1, 1 << 26); break;
		case 'K': o->sinks = (int)cli_long("--sinks", optarg, 0, 1 << 26); break;
		case 'L':
			o->pool = (int)cli_long("--pool", optarg, 1, 1001);
			if (o->pool % 2 == 0)
				cli_usage_error("--pool: the kernel must be odd, got %d", o->pool);
			break;
		case 'Y':
			if (strcmp(optarg, "uniform") == 0)
				o->layers = TOKEVICT_LAYERS_UNIFORM;
			else if (strcmp(optarg, "pyramid") == 0)
				o->layers = TOKEVICT_LAYERS_PYRAMID;
			else if (strcmp(optarg, "cake") == 0)
				o->layers = TOKEVICT_LAYERS_CAKE;
			else
				cli_usage_error("--layer-budget: '%s' is not uniform, pyramid or cake", optarg);
			break;
		case 'o': o->output = optarg; break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'v': o->verbose = true; break;
		default: cli_unreachable(c);
		}
	}
	const bool token_opts = o->budget || o->model || o->output || o->window >= 0 || o->sinks >= 0 ||
				o->pool >= 0 || o->layers >= 0;
	if (o->tokens) {
		if (o->store || o->evict || o->n_pin || o->n_unpin || o->verify || o->stats || o->list || o->json ||
		    o->dry_run || o->default_dtype != -2)
			cli_usage_error("--tokens works on one cache: the store options do not go with it");
		if (!o->budget)
			cli_usage_error("--tokens needs --budget N or --budget P%%");
		if (argc - optind > 1)
			cli_usage_error("one cache at a time (got %d operands)", argc - optind);
		o->input = optind < argc ? argv[optind] : "-";
		if (o->window >= 0)
			o->te.window = o->window;
		if (o->sinks >= 0)
			o->te.sinks = o->sinks;
		if (o->pool >= 0)
			o->te.pool = o->pool;
		if (o->layers >= 0)
			o->te.layers = (enum tokevict_layers)o->layers;
		if (tokevict_needs_model(&o->te) && !o->model)
			cli_usage_error("--tokens %s needs the model's attention: give -m MODEL",
					tokevict_policy_name(o->te.policy));
		return;
	}
	if (token_opts || optind < argc)
		cli_usage_error("%s goes with --tokens POLICY (token eviction in one cache)",
				optind < argc ? "a cache operand" : "--budget, -m, --window, --sinks, --pool, "
								   "--layer-budget or -o");
	if (o->remote && (o->n_pin || o->n_unpin || o->recompress >= 0 || o->default_dtype != -2))
		cli_usage_error("--pin, --unpin, --recompress and --default-dtype work on the local store, not with --remote");
	if (o->older_than > 0 && o->recompress < 0)
		cli_usage_error("--older-than goes with --recompress TYPE");
	if (!o->evict && !o->n_pin && !o->n_unpin && !o->verify && !o->stats && !o->list && o->recompress < 0 &&
	    o->default_dtype == -2)
		cli_usage_error("nothing to do: give --max-bytes N, --pin, --unpin, --verify, --stats, --list, "
				"--recompress or --default-dtype");
	if (o->json && !o->stats && !o->list)
		cli_usage_error("--json goes with --stats or --list");
	if (o->dry_run && !o->evict && !o->verify && o->recompress < 0)
		cli_usage_error("--dry-run goes with --max-bytes, --verify or --recompress");
	if (o->dry_run && (o->n_pin || o->n_unpin))
		cli_usage_error("--dry-run does not go with --pin or --unpin");
}

/* ---- output helpers ---- */

static const char *fmt_bytes(char *buf, size_t cap, uint64_t n)
{
	if (n < 1024)
		snprintf(buf, cap, "%" PRIu64 " B", n);
	else if (n < 1048576)
		snprintf(buf, cap, "%.1f KiB", (double)n / 1024);
	else if (n < 1073741824)
		snprintf(buf, cap, "%.1f MiB", (double)n / 1048576);
	else
		snprintf(buf, cap, "%.2f GiB", (double)n / 1073741824);
	return buf;
}

static const char *fmt_time(char *buf, size_t cap, double t)
{
	time_t s = (time_t)t;
	struct tm tm;
	if (t <= 0 || !localtime_r(&s, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, cap, "-");
	return buf;
}

static void json_line(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!s)
		cli_die("out of memory");
	puts(s);
	free(s);
}

static json_t *json_time(double t)
{
	return t > 0 ? json_real(t) : json_null();
}

/* ---- pins ---- */

struct prefix_match {
	const char *prefix;
	size_t len;
	char key[STORE_KEY_HEX + 1];
	int n;
};

static int match_prefix(void *ctx, const struct store_entry *e)
{
	struct prefix_match *m = ctx;
	if (!strncmp(e->key, m->prefix, m->len)) {
		if (!m->n++)
			memcpy(m->key, e->key, sizeof m->key);
	}
	return 0;
}

/* KEY, or a unique prefix of at least 4 hex digits, to a full key; 0 or 1 (told). */
static int resolve_key(struct store *st, const char *arg, char key[STORE_KEY_HEX + 1])
{
	char low[STORE_KEY_HEX + 2];
	size_t len = strlen(arg);
	if (len > STORE_KEY_HEX)
		len = STORE_KEY_HEX + 1;
	for (size_t i = 0; i < len; i++)
		low[i] = (char)tolower((unsigned char)arg[i]);
	low[len] = '\0';
	if (store_key_valid(low)) {
		memcpy(key, low, STORE_KEY_HEX + 1);
		return 0;
	}
	bool hex = len >= 4 && len < STORE_KEY_HEX;
	for (size_t i = 0; i < len && hex; i++)
		hex = isxdigit((unsigned char)low[i]);
	if (!hex) {
		fprintf(stderr, "%s: '%s': not a cache key (64 hex digits, or a prefix of at least 4)\n", cli_tool, arg);
		return 1;
	}
	struct prefix_match m = { low, len, "", 0 };
	if (store_list(st, match_prefix, &m))
		cli_die("%s", kb_error());
	if (m.n != 1) {
		fprintf(stderr, "%s: '%s': %s\n", cli_tool, arg, m.n ? "ambiguous: more than one cache has this prefix"
									: "no such cache in the store");
		return 1;
	}
	memcpy(key, m.key, STORE_KEY_HEX + 1);
	return 0;
}

static int do_pins(struct store *st, const struct opts *o)
{
	int status = 0;
	for (int pass = 0; pass < 2; pass++) {
		const char *const *keys = pass ? o->unpin : o->pin;
		for (int i = 0; i < (pass ? o->n_unpin : o->n_pin); i++) {
			char key[STORE_KEY_HEX + 1];
			if (resolve_key(st, keys[i], key)) {
				status = 1;
				continue;
			}
			int rc = store_pin(st, key, !pass);
			if (rc == KB_EOF) {
				fprintf(stderr, "%s: '%s': no such cache in the store\n", cli_tool, keys[i]);
				status = 1;
			} else if (rc) {
				cli_die("%s", kb_error());
			} else if (o->verbose) {
				printf("%s %s\n", pass ? "unpinned" : "pinned", key);
			}
		}
	}
	return status;
}

/* ---- verify ---- */

static void on_problem(void *ctx, const char *what, const char *problem, const char *action)
{
	(void)ctx;
	printf("%s: %s (%s)\n", what, problem, action);
}

static int do_verify(struct store *st, const struct opts *o)
{
	struct store_verify_result r;
	if (store_verify(st, !o->dry_run, on_problem, NULL, &r))
		cli_die("%s", kb_error());
	uint64_t bad = store_verify_problems(&r);
	printf("verified %" PRIu64 " cache%s: %" PRIu64 " sound", r.checked, r.checked == 1 ? "" : "s", r.ok);
	if (bad)
		printf("; %" PRIu64 " problem%s, %" PRIu64 " repaired", bad, bad == 1 ? "" : "s", r.repaired);
	if (r.live_temps)
		printf("; %" PRIu64 " cache%s being written", r.live_temps, r.live_temps == 1 ? "" : "s");
	printf("\n");
	return bad ? 1 : 0;
}

/* ---- evict ---- */

struct evict_print {
	bool lines, dry_run;
};

static void on_evict(void *ctx, const char *key, uint64_t size, const char *reason)
{
	const struct evict_print *p = ctx;
	char b[32];
	if (p->lines)
		printf("%s %s %s (%s)\n", p->dry_run ? "would remove" : "removed", key, fmt_bytes(b, sizeof b, size),
		       reason);
}

static int do_evict(struct store *st, const struct opts *o)
{
	struct store_evict_opts eo = { .policy = (enum store_policy)o->policy, .max_bytes = o->max_bytes,
				       .dry_run = o->dry_run, .half_life = o->half_life };
	struct evict_print p = { o->verbose || o->dry_run, o->dry_run };
	struct store_evict_result r;
	if (store_evict(st, &eo, on_evict, &p, &r))
		cli_die("%s", kb_error());
	char b1[32], b2[32], b3[32];
	if (r.n_removed)
		printf("%s %" PRIu64 " cache%s, %s (%s); ", o->dry_run ? "would remove" : "removed", r.n_removed,
		       r.n_removed == 1 ? "" : "s", fmt_bytes(b1, sizeof b1, r.bytes_removed),
		       store_policy_name(o->policy));
	else
		printf("nothing to remove; ");
	printf("the store %s %" PRIu64 " cache%s, %s (budget %s)\n", o->dry_run ? "would hold" : "holds", r.n_left,
	       r.n_left == 1 ? "" : "s", fmt_bytes(b2, sizeof b2, r.bytes_left), fmt_bytes(b3, sizeof b3, o->max_bytes));
	if (r.n_temp_removed)
		printf("removed %" PRIu64 " unfinished write%s\n", r.n_temp_removed, r.n_temp_removed == 1 ? "" : "s");
	if (r.n_bad_rows)
		printf("%s %" PRIu64 " index row%s whose key is not a store key (no file touched)\n",
		       o->dry_run ? "would remove" : "removed", r.n_bad_rows, r.n_bad_rows == 1 ? "" : "s");
	if (r.bytes_left > o->max_bytes) {
		fprintf(stderr, "%s: %s over the budget: %" PRIu64 " pinned cache%s take%s %s\n", cli_tool,
			o->dry_run ? "would stay" : "still", r.n_pinned, r.n_pinned == 1 ? "" : "s",
			r.n_pinned == 1 ? "s" : "", fmt_bytes(b1, sizeof b1, r.bytes_pinned));
		return 1;
	}
	return 0;
}

/* ---- recompress ---- */

struct cold {
	char (*keys)[STORE_KEY_HEX + 1];
	size_t n, cap;
	double before; /* last use before this: cold */
};

static int collect_cold(void *ctx, const struct store_entry *e)
{
	struct cold *c = ctx;
	if (e->last_used > c->before)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		void *k = realloc(c->keys, cap * sizeof *c->keys);
		if (!k)
			return kb_fail(KB_ERR_NOMEM, "out of memory");
		c->keys = k, c->cap = cap;
	}
	memcpy(c->keys[c->n++], e->key, STORE_KEY_HEX + 1);
	return 0;
}

/* One object into dtype: 1 when recompressed, 0 when it is in dtype already
 * (or gone), -1 on an error (reported). *before and *after: its sizes. */
static int recompress_one(struct store *st, const char *key, int dtype, bool dry, uint64_t *before, uint64_t *after)
{
	char *path = NULL;
	int rc = store_has(st, key, &path);
	if (rc == KB_EOF)
		return 0;
	struct kvc_reader *r = NULL;
	const struct kvc_header *h;
	struct kv_cache kv = { 0 };
	struct kvc_header nh = { 0 };
	struct stat sb;
	int done = -1;
	if (rc || stat(path, &sb) < 0 || (rc = kvc_reader_open_file(&r, path)) || (rc = kvc_reader_next_header(r, &h)))
		goto out;
	*before = (uint64_t)sb.st_size;
	if ((int)h->dtype == dtype || kvc_is_sparse(h)) {
		done = 0;
		goto out;
	}
	if (dry) {
		done = 1;
		goto out;
	}
	struct store_put p;
	if ((rc = kv_cache_init_shape(&kv, h->n_layer, h->n_kv_head, h->head_dim, h->n_tokens > 0 ? h->n_tokens : 1)) ||
	    (rc = kvc_header_copy(&nh, h)) || (rc = kvfile_read(r, h, NULL, &kv)))
		goto out;
	nh.dtype = (enum kvc_dtype)dtype;
	if ((rc = store_put_begin(st, key, &p)))
		goto out;
	if ((rc = kvfile_write_fd(p.fd, &nh, &kv, 0))) {
		store_put_abort(st, &p);
		goto out;
	}
	if ((rc = store_put_replace(st, &p)) == KB_EOF) {
		done = 0; /* evicted meanwhile */
		goto out;
	}
	if (rc == KB_OK && stat(path, &sb) == 0)
		*after = (uint64_t)sb.st_size, done = 1;
out:
	if (done < 0)
		fprintf(stderr, "%s: %.16s…: %s\n", cli_tool, key, kb_error());
	kvc_header_free(&nh);
	kv_cache_free(&kv);
	kvc_reader_free(r);
	free(path);
	return done;
}

static int do_recompress(struct store *st, const struct opts *o)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct cold c = { .before = o->older_than > 0 ? ts.tv_sec + ts.tv_nsec * 1e-9 - o->older_than : INFINITY };
	if (store_list(st, collect_cold, &c))
		cli_die("%s", kb_error());
	uint64_t n = 0, before = 0, after = 0;
	int status = 0;
	for (size_t i = 0; i < c.n; i++) {
		uint64_t b = 0, a = 0;
		int rc = recompress_one(st, c.keys[i], o->recompress, o->dry_run, &b, &a);
		status |= rc < 0;
		if (rc <= 0)
			continue;
		n++, before += b, after += a;
		if (o->verbose || o->dry_run) {
			char b1[32], b2[32];
			if (o->dry_run)
				printf("would recompress %.16s… (%s)\n", c.keys[i], fmt_bytes(b1, sizeof b1, b));
			else
				printf("recompressed %.16s…: %s -> %s\n", c.keys[i], fmt_bytes(b1, sizeof b1, b),
				       fmt_bytes(b2, sizeof b2, a));
		}
	}
	char b1[32], b2[32];
	if (o->dry_run)
		printf("would recompress %" PRIu64 " cache%s of %zu cold, %s, to %s\n", n, n == 1 ? "" : "s", c.n,
		       fmt_bytes(b1, sizeof b1, before), kvc_dtype_name(o->recompress));
	else
		printf("recompressed %" PRIu64 " cache%s of %zu cold to %s: %s -> %s\n", n, n == 1 ? "" : "s", c.n,
		       kvc_dtype_name(o->recompress), fmt_bytes(b1, sizeof b1, before), fmt_bytes(b2, sizeof b2, after));
	free(c.keys);
	return status;
}

/* ---- list, stats ---- */

static int print_entry(void *ctx, const struct store_entry *e)
{
	const struct opts *o = ctx;
	if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "key", json_string(e->key));
		json_object_set_new(j, "bytes", json_integer((json_int_t)e->size));
		json_object_set_new(j, "tokens", json_integer(e->n_tokens));
		json_object_set_new(j, "model", json_string(e->model));
		json_object_set_new(j, "created", json_time(e->created));
		json_object_set_new(j, "last_used", json_time(e->last_used));
		json_object_set_new(j, "hits", json_integer((json_int_t)e->hits));
		json_object_set_new(j, "cost", e->cost >= 0 ? json_real(e->cost) : json_null());
		json_object_set_new(j, "pinned", json_boolean(e->pinned));
		json_object_set_new(j, "queue", json_string(e->queue == STORE_QUEUE_MAIN ? "main" : "small"));
		json_object_set_new(j, "freq", json_integer(e->freq));
		json_object_set_new(j, "tool", json_string(e->tool));
		json_object_set_new(j, "dtype", *e->dtype ? json_string(e->dtype) : json_null());
		json_line(j);
		return 0;
	}
	char b[32], t[32];
	printf("%s %10s %-4s %6" PRId64 " tokens %5" PRIu64 " hits  last used %s%s\n", e->key,
	       fmt_bytes(b, sizeof b, e->size), *e->dtype ? e->dtype : "?", e->n_tokens, e->hits,
	       fmt_time(t, sizeof t, e->last_used), e->pinned ? "  pinned" : "");
	return 0;
}

static int collect_model(void *ctx, const struct store_model_stats *m)
{
	json_t *a = ctx;
	json_t *j = json_object();
	json_object_set_new(j, "model", json_string(m->model));
	json_object_set_new(j, "entries", json_integer((json_int_t)m->entries));
	json_object_set_new(j, "bytes", json_integer((json_int_t)m->bytes));
	json_object_set_new(j, "tokens", json_integer((json_int_t)m->tokens));
	json_object_set_new(j, "hits", json_integer((json_int_t)m->hits));
	json_object_set_new(j, "oldest", json_time(m->oldest));
	json_object_set_new(j, "newest", json_time(m->newest));
	json_object_set_new(j, "last_used", json_time(m->last_used));
	json_array_append_new(a, j);
	return 0;
}

static int print_model(void *ctx, const struct store_model_stats *m)
{
	(void)ctx;
	char b[32], t[32];
	printf("  %.16s  %" PRIu64 " cache%s, %s, %" PRIu64 " tokens, %" PRIu64 " hits, last used %s\n", m->model,
	       m->entries, m->entries == 1 ? "" : "s", fmt_bytes(b, sizeof b, m->bytes), m->tokens, m->hits,
	       fmt_time(t, sizeof t, m->last_used));
	return 0;
}

static void do_stats(struct store *st, const struct opts *o)
{
	struct store_stats s;
	int dt;
	if (store_stats(st, &s) || store_default_dtype(st, &dt))
		cli_die("%s", kb_error());
	if (o->json) {
		json_t *j = json_object(), *models = json_array();
		json_object_set_new(j, "store", json_string(store_dir(st)));
		json_object_set_new(j, "entries", json_integer((json_int_t)s.entries));
		json_object_set_new(j, "bytes", json_integer((json_int_t)s.bytes));
		json_object_set_new(j, "tokens", json_integer((json_int_t)s.tokens));
		json_object_set_new(j, "hits", json_integer((json_int_t)s.hits));
		json_object_set_new(j, "pinned", json_integer((json_int_t)s.pinned));
		json_object_set_new(j, "pinned_bytes", json_integer((json_int_t)s.pinned_bytes));
		json_object_set_new(j, "oldest", json_time(s.oldest));
		json_object_set_new(j, "newest", json_time(s.newest));
		json_object_set_new(j, "last_used", json_time(s.last_used));
		json_object_set_new(j, "s3fifo_small", json_integer((json_int_t)s.small));
		json_object_set_new(j, "s3fifo_small_bytes", json_integer((json_int_t)s.small_bytes));
		json_object_set_new(j, "s3fifo_ghosts", json_integer((json_int_t)s.ghosts));
		json_object_set_new(j, "default_dtype", dt >= 0 ? json_string(kvc_dtype_name(dt)) : json_null());
		if (store_stats_models(st, collect_model, models))
			cli_die("%s", kb_error());
		json_object_set_new(j, "models", models);
		json_line(j);
		return;
	}
	char b1[32], b2[32], t1[32], t2[32];
	printf("store      %s\n", store_dir(st));
	printf("caches     %" PRIu64 " (%" PRIu64 " pinned)\n", s.entries, s.pinned);
	printf("size       %s (%s pinned)\n", fmt_bytes(b1, sizeof b1, s.bytes), fmt_bytes(b2, sizeof b2, s.pinned_bytes));
	printf("tokens     %" PRIu64 "\n", s.tokens);
	printf("hits       %" PRIu64 "\n", s.hits);
	printf("created    %s .. %s\n", fmt_time(t1, sizeof t1, s.oldest), fmt_time(t2, sizeof t2, s.newest));
	printf("last used  %s\n", fmt_time(t1, sizeof t1, s.last_used));
	printf("s3fifo     %" PRIu64 " small (%s), %" PRIu64 " main, %" PRIu64 " ghosts\n", s.small,
	       fmt_bytes(b1, sizeof b1, s.small_bytes), s.entries - s.small, s.ghosts);
	printf("new caches %s\n", dt >= 0 ? kvc_dtype_name(dt) : "f16 (no default set)");
	printf("models     %d\n", s.models);
	if (store_stats_models(st, print_model, NULL))
		cli_die("%s", kb_error());
}

/* ---- the remote tier (--remote) ----
 * The remote keeps only each object's size and upload time; what the local
 * store knows of the same key (last use, hits, cost, pin) orders the policies
 * where it has the key. */

struct robj {
	char key[STORE_KEY_HEX + 1];
	uint64_t size;
	double mtime;     /* uploaded (unix seconds; 0 unknown) */
	double last_used; /* the local store's, else mtime */
	uint64_t hits;    /* the local store's, else 0 */
	double cost;      /* the local store's seconds, < 0 unknown */
	bool pinned;      /* pinned in the local store */
	double value;     /* the cost policy's */
};

struct rlist {
	struct robj *v;   /* owned, [n] */
	size_t n, cap;
	uint64_t bytes, unknown;
	bool list_unknown; /* print the names that are not caches */
};

static int collect_remote(void *ctx, const struct remote_object *ob)
{
	struct rlist *l = ctx;
	char key[STORE_KEY_HEX + 1];
	snprintf(key, sizeof key, "%.*s", STORE_KEY_HEX, ob->name);
	if (strlen(ob->name) != STORE_KEY_HEX + 4 || strcmp(ob->name + STORE_KEY_HEX, ".kvc") || !store_key_valid(key)) {
		l->unknown++;
		if (l->list_unknown)
			printf("%s: not a cache's name (left alone)\n", ob->name);
		return 0;
	}
	if (kb_grow(&l->v, &l->cap, l->n, sizeof *l->v, 64))
		return KB_ERR_NOMEM;
	struct robj *r = &l->v[l->n++];
	*r = (struct robj){ .size = ob->size, .mtime = ob->mtime, .last_used = ob->mtime, .cost = -1 };
	memcpy(r->key, key, sizeof key);
	l->bytes += ob->size;
	return 0;
}

/* Fill in what the local store knows (--store, else the default one if it exists). */
static void local_facts(const struct opts *o, struct rlist *l)
{
	char *dir = NULL;
	struct store *st = NULL;
	if (!o->store && store_default_dir(&dir))
		return;
	if (store_open_existing(&st, o->store ? o->store : dir)) {
		if (o->store)
			cli_die("%s", kb_error());
		free(dir);
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		struct store_entry e;
		if (store_entry_get(st, l->v[i].key, &e) != KB_OK)
			continue;
		l->v[i].last_used = e.last_used;
		l->v[i].hits = e.hits;
		l->v[i].cost = e.cost;
		l->v[i].pinned = e.pinned;
	}
	store_close(st);
	free(dir);
}

static int r_policy;

static int cmp_robj(const void *pa, const void *pb)
{
	const struct robj *a = pa, *b = pb;
	int c = 0;
	switch (r_policy) {
	case STORE_LFU: /* fewest hits, then least recently used */
		c = (a->hits > b->hits) - (a->hits < b->hits);
		if (!c)
			c = (a->last_used > b->last_used) - (a->last_used < b->last_used);
		break;
	case STORE_LRU: c = (a->last_used > b->last_used) - (a->last_used < b->last_used); break;
	case STORE_S3FIFO: c = (a->mtime > b->mtime) - (a->mtime < b->mtime); break;
	case STORE_COST: c = (a->value > b->value) - (a->value < b->value); break;
	}
	if (!c)
		c = (a->mtime > b->mtime) - (a->mtime < b->mtime);
	return c ? c : strcmp(a->key, b->key);
}

static int remote_evict(struct remote *rm, struct rlist *l, const struct opts *o)
{
	/* cost: seconds per byte, decaying with disuse; unknown costs at the mean rate */
	double known = 0, known_bytes = 0, now = (double)time(NULL);
	double half = o->half_life > 0 ? o->half_life : STORE_HALF_LIFE_DEFAULT;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].cost >= 0)
			known += l->v[i].cost, known_bytes += (double)l->v[i].size;
	double rate = known_bytes > 0 ? known / known_bytes : 1e-9;
	for (size_t i = 0; i < l->n; i++) {
		struct robj *r = &l->v[i];
		double per_byte = r->cost >= 0 && r->size ? r->cost / (double)r->size : rate;
		double age = now - r->last_used > 0 ? now - r->last_used : 0;
		r->value = per_byte * exp2(-age / half);
	}
	r_policy = o->policy;
	if (l->n)
		qsort(l->v, l->n, sizeof *l->v, cmp_robj);
	uint64_t left = l->bytes, n_left = l->n, removed = 0, removed_bytes = 0, pinned = 0, pinned_bytes = 0;
	int status = 0;
	char b1[32], b2[32], b3[32];
	for (size_t i = 0; i < l->n && left > o->max_bytes; i++) {
		struct robj *r = &l->v[i];
		if (r->pinned) {
			pinned++, pinned_bytes += r->size;
			continue;
		}
		char name[STORE_KEY_HEX + 5];
		snprintf(name, sizeof name, "%s.kvc", r->key);
		int rc = o->dry_run ? KB_OK : remote_delete(rm, name);
		if (rc < KB_EOF) {
			fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
			status = 1;
			if (remote_down(rm))
				break;
			continue;
		}
		left -= r->size, n_left--;
		removed++, removed_bytes += r->size;
		if (o->verbose || o->dry_run)
			printf("%s %s %s (%s)\n", o->dry_run ? "would remove" : "removed", r->key,
			       fmt_bytes(b1, sizeof b1, r->size), store_policy_name(o->policy));
	}
	if (removed)
		printf("%s %" PRIu64 " cache%s, %s (%s); ", o->dry_run ? "would remove" : "removed", removed,
		       removed == 1 ? "" : "s", fmt_bytes(b1, sizeof b1, removed_bytes), store_policy_name(o->policy));
	else
		printf("nothing to remove; ");
	printf("the remote %s %" PRIu64 " cache%s, %s (budget %s)\n", o->dry_run ? "would hold" : "holds", n_left,
	       n_left == 1 ? "" : "s", fmt_bytes(b2, sizeof b2, left), fmt_bytes(b3, sizeof b3, o->max_bytes));
	if (left > o->max_bytes && status == 0) {
		fprintf(stderr, "%s: %s over the budget: %" PRIu64 " cache%s pinned in the local store\n", cli_tool,
			o->dry_run ? "would stay" : "still", pinned, pinned == 1 ? "" : "s");
		status = 1;
	}
	return status;
}

/* Read every object whole and check it; delete the broken ones (not in a dry run). */
static int remote_verify(struct remote *rm, struct rlist *l, const struct opts *o)
{
	uint64_t sound = 0, bad = 0, gone = 0, failed = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct robj *r = &l->v[i];
		char name[STORE_KEY_HEX + 5], what[512];
		snprintf(name, sizeof name, "%s.kvc", r->key);
		snprintf(what, sizeof what, "%s/%s", remote_name(rm), name);
		FILE *f = tmpfile();
		if (!f)
			cli_die("a temporary file: %s", strerror(errno));
		int rc = remote_get(rm, name, fileno(f), NULL);
		if (rc == KB_EOF) { /* deleted meanwhile */
			fclose(f);
			continue;
		}
		if (rc) {
			fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
			fclose(f);
			failed++;
			if (remote_down(rm))
				break;
			continue;
		}
		if (lseek(fileno(f), 0, SEEK_SET) < 0 || (rc = store_object_check(fileno(f), what, r->key)) == KB_OK) {
			fclose(f);
			sound++;
			continue;
		}
		fclose(f);
		bad++;
		char why[600];
		snprintf(why, sizeof why, "%s", kb_error());
		const char *action = "found";
		if (!o->dry_run) {
			int dr = remote_delete(rm, name);
			action = dr >= KB_EOF ? "removed" : "cannot be removed";
			if (dr < KB_EOF)
				fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
			else
				gone++;
		}
		printf("%s: %s (%s)\n", r->key, why, action);
	}
	printf("verified %" PRIu64 " cache%s on %s: %" PRIu64 " sound", sound + bad, sound + bad == 1 ? "" : "s",
	       remote_name(rm), sound);
	if (bad)
		printf("; %" PRIu64 " broken, %" PRIu64 " removed", bad, gone);
	if (failed)
		printf("; %" PRIu64 " could not be read", failed);
	printf("\n");
	return bad || failed ? 1 : 0;
}

static int do_remote(const struct opts *o)
{
	struct remote *rm;
	int rc = remote_open(&rm, o->remote, NULL);
	if (rc == KB_ERR_ARG)
		cli_usage_error("--remote: %s", kb_error());
	if (rc)
		cli_die("%s", kb_error());
	struct rlist l = { .list_unknown = o->verify };
	if (remote_list(rm, collect_remote, &l))
		cli_die("%s", kb_error());
	local_facts(o, &l);
	int status = 0;
	char b[32], t[32];
	if (o->list) {
		for (size_t i = 0; i < l.n; i++) {
			const struct robj *r = &l.v[i];
			if (o->json) {
				json_t *j = json_object();
				json_object_set_new(j, "key", json_string(r->key));
				json_object_set_new(j, "bytes", json_integer((json_int_t)r->size));
				json_object_set_new(j, "uploaded", json_time(r->mtime));
				json_line(j);
			} else {
				printf("%s %10s  uploaded %s\n", r->key, fmt_bytes(b, sizeof b, r->size),
				       fmt_time(t, sizeof t, r->mtime));
			}
		}
	}
	if (o->verify)
		status |= remote_verify(rm, &l, o);
	if (o->evict)
		status |= remote_evict(rm, &l, o);
	if (o->stats) {
		if (o->json) {
			json_t *j = json_object();
			json_object_set_new(j, "remote", json_string(remote_name(rm)));
			json_object_set_new(j, "caches", json_integer((json_int_t)l.n));
			json_object_set_new(j, "bytes", json_integer((json_int_t)l.bytes));
			json_object_set_new(j, "other_objects", json_integer((json_int_t)l.unknown));
			json_line(j);
		} else {
			printf("remote       %s\ncaches       %zu  %s\n", remote_name(rm), l.n, fmt_bytes(b, sizeof b, l.bytes));
			if (l.unknown)
				printf("other        %" PRIu64 " objects under the prefix that are not caches\n", l.unknown);
		}
	}
	free(l.v);
	remote_close(rm);
	return status;
}

/* Open the store: it must exist (a mistyped --store is an error, nothing is
 * created), except that a repairing --verify rebuilds a lost index.db in a
 * folder that still has its objects/. */
static struct store *open_store(const struct opts *o)
{
	struct store *st;
	char *dir = NULL, *objects = NULL;
	struct stat sb;
	if (!o->store && store_default_dir(&dir))
		cli_die("%s", kb_error());
	const char *d = o->store ? o->store : dir;
	bool rebuild = o->verify && !o->dry_run && asprintf(&objects, "%s/objects", d) >= 0 &&
		       stat(objects, &sb) == 0 && S_ISDIR(sb.st_mode);
	/* a default type may be set before the first cache goes in */
	if ((rebuild || o->default_dtype >= 0 ? store_open(&st, d) : store_open_existing(&st, d)))
		cli_die("%s", kb_error());
	free(objects);
	free(dir);
	return st;
}

/* --budget N or P% of n tokens → rows per layer, or die naming the problem. */
static int parse_budget(const char *s, int n)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	bool pct = *end == '%';
	if (errno || end == s || (pct ? end[1] != '\0' : *end != '\0') || !isfinite(v))
		cli_usage_error("--budget: '%s' is not a token count or a percentage (like 512 or 25%%)", s);
	if (pct) {
		if (!(v > 0) || v > 100)
			cli_usage_error("--budget: %s is not a share of the cache in (0%%, 100%%]", s);
		long b = lround(v / 100 * n);
		return b < 1 ? 1 : (int)b;
	}
	if (v != floor(v) || v < 1)
		cli_usage_error("--budget: %s is not a positive whole number of tokens", s);
	if (v > n)
		cli_usage_error("--budget: %s tokens is more than the cache's %d", s, n);
	return (int)v;
}

/* kvblend evict --tokens: one cache in, a smaller one out. */
static int do_tokens(struct opts *o, int argc, char **argv)
{
	kern_set_threads(o->threads);
	struct model *m = NULL;
	if (o->model && model_load(&m, o->model))
		cli_die("%s", kb_error());
	struct kbio *io = NULL;
	struct kvc_reader *r = NULL;
	enum kbio_type type;
	if (strcmp(o->input, "-") == 0 && isatty(STDIN_FILENO))
		cli_usage_error("no cache: give IN.kvc or pipe one in");
	if (kbio_open(&io, o->input) || kbio_sniff(io, &type))
		cli_die("%s", kb_error());
	if (type != KBIO_KVC)
		cli_die("%s: not a KV cache (.kvc)", strcmp(o->input, "-") ? o->input : "<stdin>");
	if (kbio_kvc_reader(io, &r))
		cli_die("%s", kb_error());
	const struct kvc_header *h;
	int rc = kvc_reader_next_header(r, &h);
	if (rc == KB_EOF)
		cli_die("%s: no cache in the stream", o->input);
	if (rc)
		cli_die("%s", kb_error());
	if (kvc_is_sparse(h))
		cli_die("%s: the cache is token-evicted already: evict from the whole cache",
			strcmp(o->input, "-") ? o->input : "<stdin>");
	if (h->n_tokens < 1)
		cli_die("%s: the cache is empty", o->input);
	o->te.budget = parse_budget(o->budget, h->n_tokens);

	/* the cache into memory (checked against the model when there is one) */
	struct kv_cache kv;
	if (kv_cache_init_shape(&kv, h->n_layer, h->n_kv_head, h->head_dim, h->n_tokens) ||
	    kvfile_read(r, h, m, &kv))
		cli_die("%s", kb_error());
	struct kvc_header in;
	if (kvc_header_copy(&in, h))
		cli_die("%s", kb_error());
	double t0 = kb_now();
	struct tokevict_sel sel;
	if (tokevict_run(m, &kv, &o->te, &sel))
		cli_die("%s", kb_error());
	double t1 = kb_now();
	char **names = NULL;
	int n_names = 0;
	if (kvc_option_names(argc, argv, cli.shortopts, cli.longopts, &names, &n_names))
		cli_die("%s", kb_error());
	if (tokevict_write(o->output ? o->output : "-", &in, &kv, &sel, "kvblend-evict", n_names, names))
		cli_die("%s", kb_error());
	if (o->verbose) {
		long kept = 0;
		for (int l = 0; l < sel.n_layer; l++)
			kept += sel.rows[l];
		fprintf(stderr, "%s: %s kept %.1f rows per layer of %d tokens (%.1f%%) in %.3f s\n", cli_tool,
			tokevict_policy_name(o->te.policy), (double)kept / sel.n_layer, sel.n,
			100.0 * kept / sel.n_layer / sel.n, t1 - t0);
	}
	free(names);
	tokevict_sel_free(&sel);
	kvc_header_free(&in);
	kvc_reader_free(r);
	kbio_close(io);
	kv_cache_free(&kv);
	model_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .policy = STORE_LRU, .window = -1, .sinks = -1, .pool = -1, .layers = -1, .recompress = -1,
			  .default_dtype = -2 };
	parse(argc, argv, &o);
	if (o.tokens)
		return do_tokens(&o, argc, argv);
	if (o.remote)
		return do_remote(&o);
	struct store *st = open_store(&o);
	int status = do_pins(st, &o);
	if (o.default_dtype != -2) {
		if (store_set_default_dtype(st, o.default_dtype))
			cli_die("%s", kb_error());
		printf("new caches go into %s as %s\n", store_dir(st),
		       o.default_dtype >= 0 ? kvc_dtype_name(o.default_dtype) : "f16 (no default set)");
	}
	if (o.verify)
		status |= do_verify(st, &o);
	if (o.recompress >= 0)
		status |= do_recompress(st, &o);
	if (o.evict)
		status |= do_evict(st, &o);
	if (o.list && store_list(st, print_entry, &o))
		cli_die("%s", kb_error());
	if (o.stats)
		do_stats(st, &o);
	store_close(st);
	return status; // stdout is checked at exit (cli.h)
}
