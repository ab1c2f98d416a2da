/* kvblend-blend — CacheBlend: one KV cache for prefix + retrieved chunks +
 * query, built from the chunks' precomputed caches with a selective recompute.
 * Chunk records on stdin (or .kvc operands), in prompt order; the cache of the
 * whole prompt, with the last token's logits, goes to stdout or -o. */
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "kvfile.h"
#include "pool.h"
#include "progress.h"
#include "prompt.h"
#include "records.h"
#include "template.h"

enum { OPT_REUSE_SIMILAR = 0x1281, OPT_MIN_SIMILARITY };

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "prefix", required_argument, NULL, 'P' },
	{ "prefix-file", required_argument, NULL, 'F' },
	{ "query", required_argument, NULL, 'q' },
	{ "query-file", required_argument, NULL, 'Q' },
	{ "template", required_argument, NULL, 'T' },
	{ "mode", required_argument, NULL, 'M' },
	{ "ratio", required_argument, NULL, 'r' },
	{ "check-layer", required_argument, NULL, 'C' },
	{ "metric", required_argument, NULL, 'E' },
	{ "epic-k", required_argument, NULL, 'K' },
	{ "ape-temp", required_argument, NULL, 'A' },
	{ "ape-scale", required_argument, NULL, 'B' },
	{ "output", required_argument, NULL, 'o' },
	{ "dtype", required_argument, NULL, 'D' },
	{ "threads", required_argument, NULL, 't' },
	{ "ctx", required_argument, NULL, 'c' },
	{ "store", required_argument, NULL, 'S' },
	{ "no-store", no_argument, NULL, 'N' },
	{ "reuse-similar", no_argument, NULL, OPT_REUSE_SIMILAR },
	{ "min-similarity", required_argument, NULL, OPT_MIN_SIMILARITY },
	CLI_REMOTE_OPTION,
	{ "verify", no_argument, NULL, 'V' },
	{ "special", no_argument, NULL, 'X' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'z' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend blend -m MODEL --query TEXT [options] [CACHE.kvc ...] < chunks.jsonl\n"
	       "Fuse the chunks' KV caches into one cache for prefix + chunks + query (CacheBlend),\n"
	       "recomputing only the tokens whose keys and values deviate most.\n\n"
	       "  -m, --model FILE         GGUF model\n"
	       "      --prefix TEXT        text before the chunks (e.g. the instruction)\n"
	       "      --prefix-file FILE   the prefix from a file\n"
	       "  -q, --query TEXT         the question, after the chunks\n"
	       "      --query-file FILE    the query from a file\n"
	       "      --template NAME      the chat template: auto (default: the one the model's\n"
	       "                           tokenizer.chat_template names; plain when none), plain,\n"
	       "                           chatml, llama3, mistral, llama2, mistral-v7, gemma, phi3, phi4\n"
	       "      --mode MODE          blend (default), full, reuse, prefix, epic or ape\n"
	       "      --ratio R            share of cached tokens recomputed (default 0.15)\n"
	       "      --check-layer L      layer where deviations are measured (default 1)\n"
	       "      --metric M           kv (default), k or v\n"
	       "      --epic-k K           tokens recomputed per chunk in mode epic (default 16)\n"
	       "      --ape-temp T         mode ape: the chunks' attention temperature (default 0.9)\n"
	       "      --ape-scale S        mode ape: the chunks' attention scale (default 0.9)\n"
	       "  -o, --output FILE        the prompt's cache (default '-': stdout, not a terminal)\n"
	       "      --dtype TYPE         the output cache's: f16 (default), bf16, f32, q8_0, or\n"
	       "                           compressed: kv8, kv4, kv3, kv2\n"
	       "  -t, --threads N          threads (default: all cores)\n"
	       "      --ctx N              the prompt must fit N tokens (default: the model's context)\n"
	       "      --store DIR          chunk caches from this store (default $KVBLEND_STORE or\n"
	       "                           $XDG_CACHE_HOME/kvblend); missing ones are computed and stored\n"
	       "      --no-store           compute every chunk cache, store nothing\n"
	       "      --reuse-similar      build a missing chunk's cache from the stored chunk most like\n"
	       "                           it (same doc and seq, else by MinHash sketch; --ratio and\n"
	       "                           --check-layer choose what is recomputed), and store it\n"
	       "      --min-similarity S   the least estimated similarity of that chunk (default 0.5)\n"
	       CLI_REMOTE_HELP
	       "      --verify             also run a full prefill; print the fidelity on stderr\n"
	       "      --special            turn special tokens written in the prefix and query (</s>)\n"
	       "                           into those tokens (default: plain text, as chunks always are)\n"
	       "  -v, --verbose            tokens, selection and timings on stderr (and progress, as on a\n"
	       "                           terminal: chunk caches loaded or computed, of how many)\n"
	       "      --quiet              no progress\n"
	       "  -h, --help               this help\n"
	       "      --version            the version\n");
}

static const struct cli_values values[] = {
	{ "--mode", "blend full reuse prefix epic ape" },
	{ "--metric", "kv k v" },
	{ "--template", TEMPLATE_WORDS },
	{ "--dtype", "f16 bf16 f32 q8_0 kv8 kv4 kv3 kv2" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-blend", "m:q:o:t:vh", longopts, usage, values };

struct opts {
	const char *model, *prefix, *prefix_file, *query, *query_file, *template, *output, *store, *remote;
	struct blend_opts bo;
	int dtype, threads, ctx;
	bool verify, verbose, quiet, no_store, special, ape_opt;
	bool reuse_similar;
	double min_sim;
};

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	blend_opts_init(&o->bo);
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'P': o->prefix = optarg; break;
		case 'F': o->prefix_file = optarg; break;
		case 'q': o->query = optarg; break;
		case 'Q': o->query_file = optarg; break;
		case 'T': o->template = optarg; break;
		case 'M': {
			int mo = blend_mode_from_name(optarg);
			if (mo < 0)
				cli_usage_error("--mode: unknown mode '%s' (blend, full, reuse, prefix, epic, ape)", optarg);
			o->bo.mode = (enum blend_mode)mo;
			break;
		}
		case 'r': o->bo.ratio = (float)cli_double("--ratio", optarg, 0, 1); break;
		case 'C': o->bo.check_layer = (int)cli_long("--check-layer", optarg, 0, 4095); break;
		case 'E':
			if (!strcmp(optarg, "kv"))
				o->bo.metric = BLEND_METRIC_KV;
			else if (!strcmp(optarg, "k"))
				o->bo.metric = BLEND_METRIC_K;
			else if (!strcmp(optarg, "v"))
				o->bo.metric = BLEND_METRIC_V;
			else
				cli_usage_error("--metric: unknown metric '%s' (kv, k, v)", optarg);
			break;
		case 'K': o->bo.epic_k = (int)cli_long("--epic-k", optarg, 0, 1 << 20); break;
		case 'A':
			o->bo.ape_temp = (float)cli_double("--ape-temp", optarg, BLEND_APE_MIN, BLEND_APE_MAX);
			o->ape_opt = true;
			break;
		case 'B':
			o->bo.ape_scale = (float)cli_double("--ape-scale", optarg, BLEND_APE_MIN, BLEND_APE_MAX);
			o->ape_opt = true;
			break;
		case 'o': o->output = optarg; break;
		case 'D':
			if ((o->dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0, kv8, kv4, kv3, kv2)",
						optarg);
			break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'c': o->ctx = (int)cli_long("--ctx", optarg, 1, 1 << 24); break;
		case 'S': o->store = optarg; break;
		case 'N': o->no_store = true; break;
		case OPT_REUSE_SIMILAR: o->reuse_similar = true; break;
		case OPT_MIN_SIMILARITY: o->min_sim = cli_double("--min-similarity", optarg, 0, 1); break;
		case CLI_REMOTE: o->remote = optarg; break;
		case 'V': o->verify = true; break;
		case 'X': o->special = true; break;
		case 'v': o->verbose = true; break;
		case 'z': o->quiet = true; break;
		default: cli_unreachable(c);
		}
	}
	if (!o->model)
		cli_usage_error("a model is required (-m MODEL)");
	if (!o->query && !o->query_file)
		cli_usage_error("a query is required (--query TEXT or --query-file FILE)");
	if ((o->query && o->query_file) || (o->prefix && o->prefix_file))
		cli_usage_error("give the query and the prefix once each (TEXT or FILE)");
	if (o->store && o->no_store)
		cli_usage_error("--store and --no-store do not go together");
	if (o->reuse_similar && o->no_store)
		cli_usage_error("--reuse-similar and --no-store do not go together (similar chunks are in the store)");
	if (o->min_sim >= 0 && !o->reuse_similar)
		cli_usage_error("--min-similarity goes with --reuse-similar");
	if (o->ape_opt && o->bo.mode != BLEND_APE)
		cli_usage_error("--ape-temp and --ape-scale go with --mode ape");
	if (o->remote && o->no_store)
		cli_usage_error("--remote and --no-store do not go together (the store is the remote's cache)");
	if (!o->template)
		o->template = "auto";
	cli_template_check(o->template);
	if (!strcmp(o->output, "-") && isatty(STDOUT_FILENO))
		cli_usage_error("refusing to write a binary cache to a terminal (use -o FILE or a pipe)");
}

static char *slurp(const char *path)
{
	char *s;
	size_t n;
	if (kb_read_file(path, &s, &n))
		cli_die("%s", kb_error());
	return s;
}

struct records_ctx {
	struct prompt *p;
	const struct model *m;
};

/* A record from the loop (the rule checked: a non-empty text): its chunk. */
static int add_record(void *ctx, json_t *rec, const struct rec_where *at)
{
	struct records_ctx *c = ctx;
	size_t len;
	const char *text = rec_text(rec, &len);
	int rc = prompt_add_text(c->p, c->m, text, len, 0);
	json_t *doc = json_object_get(rec, "doc"), *seq = json_object_get(rec, "seq");
	if (rc == KB_OK && json_is_string(doc) && json_is_integer(seq) && json_integer_value(seq) >= 0)
		rc = prompt_set_doc(c->p, json_string_value(doc), json_integer_value(seq));
	json_decref(rec);
	return rc;
}

/* The chunks from the records on stdin, in order. Strict: a bad record would
 * leave a chunk out of the prompt, so it ends the run. */
static void read_records(struct prompt *p, const struct model *m)
{
	if (isatty(STDIN_FILENO))
		cli_usage_error("no chunks: give chunk records on stdin or .kvc files as operands");
	struct records_ctx c = { p, m };
	struct rec_loop loop = { .flags = REC_TEXT | REC_STRICT, .each = add_record, .ctx = &c };
	if (rec_loop(&loop, 0, NULL))
		cli_die("%s", kb_error());
}

/* Prefix, chunks (.kvc operands, else records on stdin), query; then whether it
 * fits the context, before anything is computed. */
static void build_prompt(const struct opts *o, const struct model *m, int n_ops, char **ops, struct prompt *p)
{
	char *pfx = o->prefix_file ? slurp(o->prefix_file) : NULL, *qry = o->query_file ? slurp(o->query_file) : NULL;
	p->special = o->special;
	if (prompt_begin(p, m, o->template, o->prefix ? o->prefix : pfx, o->query ? o->query : qry))
		cli_die("%s", kb_error());
	for (int i = 0; i < n_ops; i++)
		if (prompt_add_kvc(p, m, ops[i]))
			cli_die("%s", kb_error());
	if (n_ops == 0)
		read_records(p, m);
	if (prompt_end(p, m) || prompt_fit(p, o->ctx ? o->ctx : m->hp.n_ctx_train, 0))
		cli_die("%s%s", kb_error(), o->ctx ? "" : " (the model's; --ctx N to go past it)");
	free(pfx), free(qry);
}

static void warn_chunk(void *ctx, int id, const char *msg)
{
	if (id > 0)
		fprintf(stderr, "%s: warning: chunk %d: %s\n", cli_tool, id, msg);
	else
		fprintf(stderr, "%s: warning: %s: %s\n", cli_tool, id == 0 ? "the prefix" : "a chunk", msg);
}

/* -v: a chunk built from a similar stored one */
static void report_similar(void *ctx, int id, const char *parent, double sim, bool by_doc,
			   const struct similar_stats *s)
{
	(void)ctx;
	fprintf(stderr, "%s: chunk %d: built from %.12s… (similarity %.2f, by %s): %d of %d tokens reused (%.0f%%)\n",
		cli_tool, id, parent, sim, by_doc ? "document" : "sketch", s->n_reused, s->n_tokens,
		100.0 * s->n_reused / s->n_tokens);
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .output = "-", .dtype = KVC_F16, .min_sim = -1 };
	parse(argc, argv, &o);
	char **prov; /* provenance: the option names, never their values (the query, the prefix) */
	int n_prov;
	if (kvc_option_names(argc, argv, cli.shortopts, cli.longopts, &prov, &n_prov))
		cli_die("%s", kb_error());
	kern_set_threads(o.threads);
	struct model *m;
	if (model_load(&m, o.model))
		cli_die("%s", kb_error());
	if (o.bo.mode != BLEND_APE && o.bo.check_layer >= m->hp.n_layer)
		cli_usage_error("--check-layer %d: the model has %d layers", o.bo.check_layer, m->hp.n_layer);
	o.template = cli_template(o.template, m->gguf, o.verbose, false); /* the cache records the one used */
	if (kvc_option_names_set(&prov, &n_prov, "template", o.template))
		cli_die("%s", kb_error());

	struct prompt p = { 0 };
	build_prompt(&o, m, argc - optind, argv + optind, &p);
	const int N = p.n_tokens;
	struct kv_cache kv;
	struct model_ws ws;
	float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
	if (!logits || kv_cache_init(&kv, m, N) || model_ws_init(&ws, m, N < 512 ? N : 512, N))
		cli_die("%s", kb_error());
	struct chunkcache *cc;
	if (chunkcache_open(&cc, o.store, !o.no_store, -1)) { /* the caches can be computed all the same */
		fprintf(stderr, "%s: warning: %s: computing every chunk's cache\n", cli_tool, kb_error());
		if (chunkcache_open(&cc, NULL, false, KVC_F16))
			cli_die("%s", kb_error());
	}
	chunkcache_set_tool(cc, cli_tool, n_prov, prov);
	chunkcache_set_warn(cc, warn_chunk, NULL);
	bool remote = false; /* a remote tier: -v says what came from it */
	if (chunkcache_store(cc)) {
		int rr = chunkcache_set_remote(cc, o.remote);
		if (rr == KB_ERR_ARG)
			cli_usage_error("--remote: %s", kb_error());
		else if (rr)
			cli_die("%s", kb_error());
		remote = chunkcache_remote(cc) != NULL;
	}
	if (o.reuse_similar && chunkcache_store(cc)) { /* what a similar chunk's rebuild recomputes: blend's choice */
		struct chunkcache_similar so = { .min_sim = o.min_sim >= 0 ? o.min_sim : SIMILAR_MIN_DEFAULT, .bo = o.bo,
						 .report = o.verbose ? report_similar : NULL };
		so.bo.mode = BLEND_BLEND;
		chunkcache_set_similar(cc, &so);
	}
	struct progress meter;
	progress_start(&meter, "chunk caches", 0, progress_wanted(o.quiet, o.verbose));
	chunkcache_set_progress(cc, progress_cb, &meter);

	/* time to first token: from here (the model is loaded) to the logits */
	struct prompt_stats st;
	if (prompt_run(&p, m, &ws, &kv, cc, &o.bo, logits, &st))
		cli_die("%s", kb_error());
	progress_end(&meter);
	struct kvc_header h;
	kvfile_header(&h, m, &kv, 0, N, logits, o.dtype, cli_tool, n_prov, prov);
	if (kvfile_write_path(o.output, &h, &kv, 0))
		cli_die("%s", kb_error());
	if (o.verbose) {
		char from_remote[128] = "";
		if (remote)
			snprintf(from_remote, sizeof from_remote, " (%d fetched from the remote: %.1f MiB in %.3f s)",
				 st.cache.fetched, st.cache.bytes_fetched / 1048576.0, st.cache.t_fetch);
		fprintf(stderr, "%s: %d tokens in %zu parts, %d from caches; mode %s: %d layers for every token, "
			"%d tokens in the others; %d caches from the store%s, %d computed (%.3f s), %.1f MiB read (%.3f s, "
			"overlapping the blend), blend %.3f s, time to first token %.3f s\n",
			cli_tool, N, p.n_segs, st.blend.n_cached, blend_mode_name(o.bo.mode), st.blend.n_full_layers,
			st.blend.n_selected, st.cache.hits, from_remote, st.cache.misses, st.cache.t_compute,
			st.cache.bytes_read / 1048576.0, st.cache.t_load, st.t_blend, st.t_ttft);
	}
	if (o.reuse_similar && !o.quiet)
		fprintf(stderr, "%s: %d of %d chunk caches computed built from similar chunks: %llu of %llu tokens "
			"reused (%.1f%%)\n", cli_tool, st.cache.similar, st.cache.misses,
			(unsigned long long)st.cache.tokens_reused, (unsigned long long)st.cache.tokens_similar,
			st.cache.tokens_similar ? 100.0 * st.cache.tokens_reused / st.cache.tokens_similar : 0.0);
	if (o.verify) {
		struct prompt_fidelity f;
		if (prompt_verify(m, &ws, &kv, logits, &f))
			cli_die("%s", kb_error());
		fprintf(stderr, "%s: verify: first token %s full prefill (%d vs %d), KL %.6f; full prefill %.3f s, "
			"blend %.3f s (%.2fx)\n", cli_tool, f.tok == f.tok_full ? "agrees with" : "differs from",
			f.tok, f.tok_full, f.kl, f.t_full, st.t_ttft, f.t_full / st.t_ttft);
	}
	prompt_free(&p);
	chunkcache_close(cc);
	free(logits);
	free(prov);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	return 0;
}
