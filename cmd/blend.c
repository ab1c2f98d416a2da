/* kvblend-blend — CacheBlend: one KV cache for prefix + retrieved chunks +
 * query, built from the chunks' precomputed caches with a selective recompute.
 * Chunk records on stdin (or .kvc operands), in prompt order; the cache of the
 * whole prompt, with the last token's logits, goes to stdout or -o. */
#include <math.h>
#include <stdbool.h>
#include <unistd.h>

#include "blend.h"
#include "chunkcache.h"
#include "cli.h"
#include "kvfile.h"
#include "records.h"
#include "sample.h"
#include "template.h"

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
	{ "output", required_argument, NULL, 'o' },
	{ "dtype", required_argument, NULL, 'D' },
	{ "threads", required_argument, NULL, 't' },
	{ "store", required_argument, NULL, 'S' },
	{ "no-store", no_argument, NULL, 'N' },
	{ "verify", no_argument, NULL, 'V' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "complete-options", no_argument, NULL, 'O' },
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
	       "      --template NAME      plain (default), chatml, llama3 or mistral\n"
	       "      --mode MODE          blend (default), full, reuse, prefix or epic\n"
	       "      --ratio R            share of cached tokens recomputed (default 0.15)\n"
	       "      --check-layer L      layer where deviations are measured (default 1)\n"
	       "      --metric M           kv (default), k or v\n"
	       "      --epic-k K           tokens recomputed per chunk in mode epic (default 16)\n"
	       "  -o, --output FILE        the prompt's cache (default '-': stdout, not a terminal)\n"
	       "      --dtype TYPE         f16 (default), bf16, f32 or q8_0 for the output cache\n"
	       "  -t, --threads N          threads (default: all cores)\n"
	       "      --store DIR          chunk caches from this store (default $KVBLEND_STORE or\n"
	       "                           $XDG_CACHE_HOME/kvblend); missing ones are computed and stored\n"
	       "      --no-store           compute every chunk cache, store nothing\n"
	       "      --verify             also run a full prefill; print the fidelity on stderr\n"
	       "  -v, --verbose            tokens, selection and timings on stderr\n"
	       "  -h, --help               this help\n");
}

struct opts {
	const char *model, *prefix, *prefix_file, *query, *query_file, *template, *output, *store;
	struct blend_opts bo;
	int dtype, threads;
	bool verify, verbose, no_store;
};

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	blend_opts_init(&o->bo);
	while ((c = getopt_long(argc, argv, "m:q:o:t:vh", longopts, NULL)) != -1) {
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
				cli_usage_error("--mode: unknown mode '%s' (blend, full, reuse, prefix, epic)", optarg);
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
		case 'o': o->output = optarg; break;
		case 'D':
			if ((o->dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0)", optarg);
			break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'S': o->store = optarg; break;
		case 'N': o->no_store = true; break;
		case 'V': o->verify = true; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(); exit(0);
		case 'O': cli_complete_options(longopts); exit(0);
		default: cli_usage_error("bad usage");
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
	if (!o->template)
		o->template = "plain";
	if (!template_known(o->template))
		cli_usage_error("--template: unknown template '%s' (" TEMPLATE_NAMES ")", o->template);
	if (!strcmp(o->output, "-") && isatty(STDOUT_FILENO))
		cli_usage_error("refusing to write a binary cache to a terminal (use -o FILE or a pipe)");
}

/* The prompt: segments of token ids in slot order, and where cached ones come from. */
struct part {
	int32_t *tok; /* owned */
	int n;
	bool cacheable;            /* a chunk (or the prefix): its cache may come from elsewhere */
	struct kvc_reader *reader; /* an operand's cache, header read (or NULL) */
	const struct kvc_header *h; /* its header (owned by the reader) */
};

struct prompt {
	struct part *parts; /* owned, [n_parts] */
	int n_parts, cap;
	int n_tokens;
};

static struct part *add_part(struct prompt *p)
{
	if (p->n_parts == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->parts = kb_realloc_array(p->parts, (size_t)p->cap, sizeof *p->parts);
		if (!p->parts)
			cli_die("%s", kb_error());
	}
	struct part *q = &p->parts[p->n_parts++];
	memset(q, 0, sizeof *q);
	return q;
}

static void tokenize_into(const struct model *m, struct part *q, const char *text, size_t len, bool bos,
			  bool special)
{
	size_t n = 0;
	q->tok = NULL;
	if ((len > 0 || bos) && tok_encode(m->tok, text, len, bos && tok_add_bos(m->tok), special, &q->tok, &n))
		cli_die("%s", kb_error());
	q->n = (int)n;
}

static char *slurp(const char *path)
{
	char *s;
	size_t n;
	if (kb_read_file(path, &s, &n))
		cli_die("%s", kb_error());
	return s;
}

/* Prefix, chunks (operands, else records on stdin), query. */
static void build_prompt(const struct opts *o, const struct model *m, int n_ops, char **ops, struct prompt *p)
{
	char *pfx = o->prefix_file ? slurp(o->prefix_file) : NULL, *qry = o->query_file ? slurp(o->query_file) : NULL;
	char *head, *tail;
	if (template_frame(o->template, o->prefix ? o->prefix : pfx, o->query ? o->query : qry, &head, &tail))
		cli_die("%s", kb_error());
	struct part *q = add_part(p);
	tokenize_into(m, q, head, strlen(head), true, true);
	q->cacheable = true;
	if (n_ops > 0) {
		for (int i = 0; i < n_ops; i++) {
			q = add_part(p);
			const struct kvc_header *h;
			int rc = kvc_reader_open_file(&q->reader, ops[i]);
			if (rc == KB_OK && (rc = kvc_reader_next_header(q->reader, &h)) == KB_EOF)
				rc = kb_fail(KB_ERR_FORMAT, "'%s': no cache in the stream", ops[i]);
			if (rc == KB_OK)
				rc = kvc_check_model(h, m->fingerprint, m->tok_fingerprint, m->hp.n_layer,
						     m->hp.n_kv_head, m->hp.head_dim);
			if (rc)
				cli_die("%s", kb_error());
			q->h = h;
			q->n = h->n_tokens;
			q->tok = malloc((size_t)(q->n ? q->n : 1) * sizeof *q->tok);
			if (!q->tok)
				cli_die("out of memory");
			memcpy(q->tok, h->tokens, (size_t)q->n * sizeof *q->tok);
			q->cacheable = true;
		}
	} else {
		if (isatty(STDIN_FILENO))
			cli_usage_error("no chunks: give chunk records on stdin or .kvc files as operands");
		struct rec_reader rr;
		rec_reader_init(&rr, stdin, "<stdin>");
		json_t *rec;
		int rc;
		while ((rc = rec_next(&rr, &rec)) == KB_OK) {
			size_t len;
			const char *text = rec_text(rec, &len);
			if (!text)
				cli_die("'<stdin>': line %ld: the record has no \"text\"", rr.lineno);
			q = add_part(p);
			tokenize_into(m, q, text, len, false, false);
			q->cacheable = true;
			json_decref(rec);
		}
		if (rc != KB_EOF)
			cli_die("%s", kb_error());
		rec_reader_free(&rr);
	}
	q = add_part(p);
	tokenize_into(m, q, tail, strlen(tail), false, true);
	if (q->n == 0)
		cli_die("the query is empty");
	for (int i = 0; i < p->n_parts; i++)
		p->n_tokens += p->parts[i].n;
	free(head), free(tail), free(pfx), free(qry);
}

/* First-token agreement and KL(full || blend) of the last-token distributions. */
static void fidelity(const float *full, const float *got, int n, bool *agree, double *kl)
{
	double mf = -INFINITY, mg = -INFINITY, zf = 0, zg = 0, k = 0;
	for (int i = 0; i < n; i++)
		mf = fmax(mf, full[i]), mg = fmax(mg, got[i]);
	for (int i = 0; i < n; i++)
		zf += exp(full[i] - mf), zg += exp(got[i] - mg);
	for (int i = 0; i < n; i++) {
		double lf = full[i] - mf - log(zf), lg = got[i] - mg - log(zg);
		k += exp(lf) * (lf - lg);
	}
	*agree = sample_greedy(full, n) == sample_greedy(got, n);
	*kl = k;
}

int main(int argc, char **argv)
{
	cli_tool = "kvblend-blend";
	struct opts o = { .output = "-", .dtype = KVC_F16 };
	parse(argc, argv, &o);
	kb_set_threads(o.threads);
	struct model *m;
	if (model_load(&m, o.model))
		cli_die("%s", kb_error());
	if (o.bo.check_layer >= m->hp.n_layer)
		cli_usage_error("--check-layer %d: the model has %d layers", o.bo.check_layer, m->hp.n_layer);

	struct prompt p = { 0 };
	build_prompt(&o, m, argc - optind, argv + optind, &p);
	const int N = p.n_tokens;
	struct kv_cache kv;
	struct model_ws ws;
	float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
	struct blend_seg *segs = calloc((size_t)p.n_parts, sizeof *segs);
	if (!logits || !segs || kv_cache_init(&kv, m, N) || model_ws_init(&ws, m, N < 512 ? N : 512, N))
		cli_die("%s", kb_error());

	struct chunkcache *cc;
	struct chunkcache_stats cst = { 0 };
	if (chunkcache_open(&cc, o.store, !o.no_store, KVC_F16))
		cli_die("%s", kb_error());
	chunkcache_set_tool(cc, cli_tool, argc, argv);

	/* time to first token: from here (the model is loaded) to the logits */
	double t0 = kb_now();
	int slot = 0, n_cp = 0;
	struct chunkcache_part *cp = calloc((size_t)p.n_parts, sizeof *cp);
	if (!cp)
		cli_die("out of memory");
	for (int i = 0; i < p.n_parts; i++) {
		struct part *q = &p.parts[i];
		memcpy(kv.tok + slot, q->tok, (size_t)q->n * sizeof *kv.tok);
		segs[i] = (struct blend_seg){ .slot0 = slot, .n = q->n };
		bool want = q->cacheable && q->n > 0 && o.bo.mode != BLEND_FULL && !(o.bo.mode == BLEND_PREFIX && i > 0);
		if (want && q->reader) {
			kv.n = slot;
			if (kvfile_read(q->reader, q->h, m, &kv))
				cli_die("%s", kb_error());
		} else if (want) {
			cp[n_cp++] = (struct chunkcache_part){ .slot0 = slot, .tokens = q->tok, .n = q->n };
		}
		segs[i].cached = want;
		slot += q->n;
	}
	/* the stored caches load layer by layer while the first layers run */
	struct chunkcache_loading *ld;
	kv.n = 0;
	if (chunkcache_load_begin(cc, m, &ws, &kv, cp, n_cp, &cst, &ld))
		cli_die("%s", kb_error());
	double t1 = kb_now();
	kv.n = N;
	struct blend_stats st;
	struct blend_loader loader = { .wait_layer = chunkcache_wait_layer, .ctx = ld };
	int rc = blend_prompt_loaded(m, &ws, &kv, segs, p.n_parts, &o.bo, &loader, logits, &st);
	int rc2 = chunkcache_load_end(ld);
	if (rc || rc2)
		cli_die("%s", kb_error());
	double t2 = kb_now();
	free(cp);

	struct kvc_header h;
	kvfile_header(&h, m, &kv, 0, N, logits, o.dtype, cli_tool, argc, argv);
	if (kvfile_write_path(o.output, &h, &kv, 0))
		cli_die("%s", kb_error());
	if (o.verbose)
		fprintf(stderr, "%s: %d tokens in %d parts, %d from caches; mode %s: %d layers for every token, "
			"%d tokens in the others; %d caches stored, %d computed (%.3f s), %.1f MiB read (%.3f s, "
			"overlapping the blend), blend %.3f s, time to first token %.3f s\n",
			cli_tool, N, p.n_parts, st.n_cached, blend_mode_name(o.bo.mode), st.n_full_layers,
			st.n_selected, cst.hits, cst.misses, cst.t_compute, cst.bytes_read / 1048576.0, cst.t_load,
			t2 - t1, t2 - t0);
	if (o.verify) {
		float *full = malloc((size_t)m->hp.n_vocab * sizeof *full);
		int32_t *pos = malloc((size_t)N * sizeof *pos);
		if (!full || !pos)
			cli_die("out of memory");
		for (int i = 0; i < N; i++)
			pos[i] = i;
		kv.n = 0;
		double t3 = kb_now();
		if (model_forward(m, &ws, &kv, kv.tok, pos, N, full, false))
			cli_die("%s", kb_error());
		double t4 = kb_now();
		bool agree;
		double kl;
		fidelity(full, logits, m->hp.n_vocab, &agree, &kl);
		fprintf(stderr, "%s: verify: first token %s full prefill (%d vs %d), KL %.6f; full prefill %.3f s, "
			"blend %.3f s (%.2fx)\n", cli_tool, agree ? "agrees with" : "differs from",
			sample_greedy(logits, m->hp.n_vocab), sample_greedy(full, m->hp.n_vocab), kl, t4 - t3,
			t2 - t0, (t4 - t3) / (t2 - t0));
		free(full);
		free(pos);
	}
	for (int i = 0; i < p.n_parts; i++) {
		free(p.parts[i].tok);
		kvc_reader_free(p.parts[i].reader);
	}
	free(p.parts);
	free(segs);
	chunkcache_close(cc);
	free(logits);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	return 0;
}
