/* kvblend-prefill — compute KV caches: one for a text (-p/-f, written to -o),
 * or one per chunk record (files given as operands, or stdin; read by the
 * records module's loop), each on its own from position 0 (as CacheBlend
 * stores them), or with --ape after a shared prefix (blend's mode ape:
 * chunkcache.h's APE caches), several chunks per forward pass, into the store. */
#include <stdbool.h>
#include <unistd.h>

#include "chunkcache.h"
#include "cli.h"
#include "pool.h"
#include "prompt.h"
#include "progress.h"
#include "kvfile.h"
#include "model.h"
#include "records.h"
#include "store.h"
#include "template.h"

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "prompt", required_argument, NULL, 'p' },
	{ "file", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, 'o' },
	{ "dtype", required_argument, NULL, 'D' },
	{ "threads", required_argument, NULL, 't' },
	{ "no-bos", no_argument, NULL, 'B' },
	{ "no-logits", no_argument, NULL, 'L' },
	{ "special", no_argument, NULL, 'N' },
	{ "store", required_argument, NULL, 'S' },
	CLI_REMOTE_OPTION,
	{ "batch", required_argument, NULL, 'b' },
	{ "reuse-similar", no_argument, NULL, 'R' },
	{ "min-similarity", required_argument, NULL, 'Y' },
	{ "ratio", required_argument, NULL, 'r' },
	{ "check-layer", required_argument, NULL, 'C' },
	{ "progress", no_argument, NULL, 'P' },
	{ "quiet", no_argument, NULL, 'Q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "json", no_argument, NULL, 'j' },
	{ "ape", no_argument, NULL, 'A' },
	{ "prefix", required_argument, NULL, 'X' },
	{ "prefix-file", required_argument, NULL, 'F' },
	{ "template", required_argument, NULL, 'T' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend prefill -m MODEL (-p TEXT | -f FILE) [-o OUT.kvc] [options]\n"
	       "       kvblend prefill -m MODEL [--store DIR] [options] [CHUNKS.jsonl | -]... > chunks.jsonl\n"
	       "Compute the KV cache of a text and write it as a .kvc stream (default stdout); or,\n"
	       "with chunk records (the files named, else stdin), each chunk's cache alone from\n"
	       "position 0 into the store, skipping those already there, echoing each record with\n"
	       "its store key (kv). A bad record is reported and skipped (exit status 1).\n\n"
	       "  -m, --model FILE        GGUF model\n"
	       "  -p, --prompt TEXT       the text\n"
	       "  -f, --file FILE         read the text from FILE ('-' = stdin)\n"
	       "  -o, --output FILE       where the cache goes (default '-', stdout; not a terminal)\n"
	       "      --dtype TYPE        f16, bf16, f32, q8_0, or compressed: kv8, kv4, kv3, kv2\n"
	       "                          (kvblend-kvc(5)); default f16, or into the store its\n"
	       "                          default (kvblend evict --default-dtype)\n"
	       "  -t, --threads N         threads (default: all cores)\n"
	       "      --no-bos            do not prepend the BOS token\n"
	       "      --no-logits         do not store the logits after the last token\n"
	       "      --special           turn special tokens written in the -p/-f text (<s>, <|im_start|>)\n"
	       "                          into those tokens (default: they are plain text)\n"
	       "      --store DIR         the store (default $KVBLEND_STORE or $XDG_CACHE_HOME/kvblend)\n"
	       CLI_REMOTE_HELP
	       "  -b, --batch N           tokens per forward pass across chunks (default 512)\n"
	       "      --reuse-similar     build a new chunk's cache from the stored chunk most like it\n"
	       "                          (the same doc and seq, else by its MinHash sketch): its\n"
	       "                          matching tokens' K/V moved to their new positions, the rest\n"
	       "                          and the most deviating (--ratio) recomputed\n"
	       "      --min-similarity S  the least estimated similarity of that chunk (default 0.5)\n"
	       "      --ratio R           share of its reused tokens recomputed (default 0.15)\n"
	       "      --check-layer L     layer where their deviations are measured (default 1)\n"
	       "      --progress          progress on stderr even when it is not a terminal (as -v)\n"
	       "      --quiet             no progress (not even with -v)\n"
	       "  -v, --verbose           timings on stderr\n"
	       "  -j, --json              the summary as one JSON object on stderr\n"
	       "      --ape               chunk records: each chunk's cache after the prefix, for\n"
	       "                          kvblend blend --mode ape with the same prefix and template\n"
	       "      --prefix TEXT       with --ape: the prefix (as blend's --prefix)\n"
	       "      --prefix-file FILE  with --ape: the prefix from a file\n"
	       "      --template NAME     with --ape: auto (default, as blend), or a template blend knows\n"
	       "  -h, --help              this help\n"
	       "      --version           the version\n");
}

static const struct cli_values values[] = {
	{ "--dtype", "f16 bf16 f32 q8_0 kv8 kv4 kv3 kv2" },
	{ "--template", TEMPLATE_WORDS },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-prefill", "m:p:f:o:t:b:jvh", longopts, usage, values };

struct opts {
	const char *model, *prompt, *file, *output, *store, *remote, *prefix, *prefix_file, *template;
	int dtype, threads, batch;
	bool json, no_bos, no_logits, special, verbose, progress, quiet, output_set, ape;
	bool reuse_similar, similar_opt; /* --reuse-similar; one of its options given */
	struct chunkcache_similar sim;
};

/* ---- chunk records → the store ---- */

struct pending {
	json_t *rec;     /* owned */
	int32_t *tok;    /* owned, NULL when the record is already stored */
	int n;
	char key[STORE_KEY_HEX + 1];
	int slot0;       /* in the batch cache */
	const char *doc; /* into rec; NULL: none */
	int64_t seq;     /* -1: none */
};

struct counts {
	long records, stored, computed;
	long uploaded;   /* of stored, those written through to the remote now (stored before it was given) */
	long tokens;
	double t_compute;
	long similar;    /* of computed, built from a similar stored chunk */
	long tokens_similar, tokens_reused; /* their tokens, those whose K/V were reused */
	struct chunkcache_stats remote; /* fetched: of stored, those that came from the remote tier */
};

/* What the record loop carries from one record to the next. */
struct run {
	const struct opts *o;
	const struct model *m;
	struct chunkcache *cc;
	struct pending *v; /* the batch, [n] of cap */
	size_t n, cap;
	int n_tok;         /* tokens to compute in it */
	struct kv_cache kv;
	struct model_ws ws;
	struct counts c;
	const struct rec_loop *loop; /* its counts, for progress */
	int32_t *head;     /* owned, --ape: the prefix's tokens every chunk is computed after */
	int n_head;
	struct progress meter; /* records read, of the lines of a redirected stdin */
};

static void progress(struct run *r, bool last)
{
	if (last)
		progress_end(&r->meter);
	else
		progress_set(&r->meter, (uint64_t)(r->c.records + r->loop->bad));
}

/* Run the batch's new chunks in one pass (each alone from position 0), store
 * each, echo every record in order. */
static int flush(struct run *r)
{
	int32_t *tok = kb_malloc((size_t)(r->n_tok + 1) * sizeof *tok), *pos = kb_malloc((size_t)(r->n_tok + 1) * sizeof *pos);
	int *len = kb_malloc((r->n + 1) * sizeof *len), n_seq = 0, n_tok = 0, rc = KB_OK;
	if (!tok || !pos || !len)
		cli_die("%s", kb_error());
	for (size_t i = 0; i < r->n; i++) {
		struct pending *q = &r->v[i];
		if (!q->tok)
			continue;
		q->slot0 = n_tok;
		memcpy(tok + n_tok, q->tok, (size_t)q->n * sizeof *tok);
		for (int j = 0; j < q->n; j++)
			pos[n_tok + j] = j;
		n_tok += q->n;
		len[n_seq++] = q->n;
	}
	if (n_seq > 0) {
		if (r->kv.n_ctx < n_tok) {
			kv_cache_free(&r->kv);
			model_ws_free(&r->ws);
			if (kv_cache_init(&r->kv, r->m, n_tok) || model_ws_init(&r->ws, r->m, r->o->batch, n_tok))
				cli_die("%s", kb_error());
		}
		r->kv.n = 0;
		double t0 = kb_now();
		if (model_forward_seqs(r->m, &r->ws, &r->kv, tok, pos, len, n_seq, NULL))
			cli_die("%s", kb_error());
		double dt = kb_now() - t0;
		r->c.t_compute += dt;
		for (size_t i = 0; i < r->n && rc == KB_OK; i++) {
			struct pending *q = &r->v[i];
			if (!q->tok)
				continue;
			if ((rc = chunkcache_put_doc(r->cc, r->m, &r->kv, q->slot0, q->n, q->key, dt * q->n / n_tok, q->doc,
						     q->seq, NULL)))
				break;
			r->c.computed++;
			r->c.tokens += q->n;
		}
	}
	for (size_t i = 0; i < r->n; i++) {
		struct pending *q = &r->v[i];
		if (rc == KB_OK && rec_write(stdout, q->rec))
			cli_die("%s", kb_error());
		json_decref(q->rec);
		free(q->tok);
	}
	r->n = 0, r->n_tok = 0;
	free(tok), free(pos), free(len);
	progress(r, false);
	return rc;
}

/* Make the batch cache hold n tokens at least. */
static void batch_room(struct run *r, int n)
{
	if (r->kv.n_ctx >= n)
		return;
	kv_cache_free(&r->kv);
	model_ws_free(&r->ws);
	if (kv_cache_init(&r->kv, r->m, n) || model_ws_init(&r->ws, r->m, r->o->batch, n))
		cli_die("%s", kb_error());
}

/* --reuse-similar: build q's cache from a similar stored chunk (and store
 * it); true when it was, false when there is none (it is then computed). */
static bool build_similar(struct run *r, struct pending *q, const struct rec_where *at)
{
	struct similar_stats ss;
	char parent[STORE_KEY_HEX + 1];
	double sim = 0, t0 = kb_now();
	bool by_doc = false;
	batch_room(r, q->n);
	int rc = chunkcache_build_similar(r->cc, r->m, &r->kv, 0, q->tok, q->n, q->key, q->doc, q->seq, &r->o->sim, &ss,
					  parent, &sim, &by_doc);
	if (rc == KB_EOF)
		return false;
	if (rc) {
		fprintf(stderr, "%s: warning: %s: line %ld: cannot be built from a similar chunk (%s); computing it\n",
			cli_tool, at->name, at->lineno, kb_error());
		return false;
	}
	r->c.t_compute += kb_now() - t0;
	r->c.computed++;
	r->c.tokens += q->n;
	r->c.similar++;
	r->c.tokens_similar += q->n;
	r->c.tokens_reused += ss.n_reused;
	if (r->o->verbose && !r->o->json)
		fprintf(stderr, "%s: %s: line %ld: built from %.12s… (similarity %.2f, by %s): %d of %d tokens reused (%.0f%%)\n",
			cli_tool, at->name, at->lineno, parent, sim, by_doc ? "document" : "sketch", ss.n_reused, q->n,
			100.0 * ss.n_reused / q->n);
	return true;
}

/* A record from the loop: tokenize it, look it up, add it to the batch. */
static int on_record(void *ctx, json_t *rec, const struct rec_where *at)
{
	struct run *r = ctx;
	struct store *st = chunkcache_store(r->cc);
	size_t len, n = 0;
	const char *text = rec_text(rec, &len); /* REC_TEXT: there, non-empty */
	int32_t *tok = NULL;
	r->c.records++;
	if (tok_encode(r->m->tok, text, len, false, false, &tok, &n))
		cli_die("%s", kb_error());
	if (r->o->ape && n > 0) { /* its APE cache: the run prefix + chunk */
		int32_t *run = chunkcache_ape_tokens(r->head, r->n_head, tok, (int)n);
		if (!run)
			cli_die("%s", kb_error());
		free(tok);
		tok = run;
		n += (size_t)r->n_head;
	}
	if (n == 0 || n > (size_t)r->m->hp.n_ctx_train) { /* past the context: minutes for a cache no run can use */
		json_decref(rec);
		free(tok);
		if (n == 0)
			return kb_fail(KB_ERR_FORMAT, "the record's text is empty after tokenization");
		return kb_fail(KB_ERR_FORMAT, "the text has %zu tokens, more than the context of %d", n,
			       r->m->hp.n_ctx_train);
	}
	if (kb_grow(&r->v, &r->cap, r->n, sizeof *r->v, 64))
		cli_die("%s", kb_error());
	struct pending *q = &r->v[r->n++];
	*q = (struct pending){ .rec = rec, .tok = tok, .n = (int)n, .seq = -1 };
	json_t *doc = json_object_get(rec, "doc"), *seq = json_object_get(rec, "seq");
	if (json_is_string(doc) && json_is_integer(seq) && json_integer_value(seq) >= 0) {
		q->doc = json_string_value(doc);
		q->seq = json_integer_value(seq);
	}
	store_key(r->m->fingerprint, tok, n, q->key);
	/* already stored (here, or on the remote: fetched), or already in this
	 * batch: nothing to compute. Stored here only: the remote gets it too. */
	bool dup = store_has(st, q->key, NULL) == KB_OK;
	if (dup && chunkcache_remote(r->cc))
		r->c.uploaded += chunkcache_push(r->cc, q->key);
	for (size_t i = 0; i + 1 < r->n && !dup; i++)
		dup = r->v[i].tok && strcmp(r->v[i].key, q->key) == 0;
	if (!dup)
		dup = chunkcache_fetch(r->cc, q->key, &r->c.remote) == KB_OK;
	bool built = !dup && r->o->reuse_similar && build_similar(r, q, at);
	if (dup || built) {
		free(q->tok);
		q->tok = NULL;
		r->c.stored += dup;
	} else {
		r->n_tok += q->n;
	}
	if (json_object_set_new(rec, "kv", json_string(q->key)))
		cli_die("out of memory");
	if (r->n_tok >= r->o->batch && flush(r))
		cli_die("%s", kb_error());
	return KB_OK;
}

/* What the store and its remote survive: said, then the run goes on. */
static void warn_cache(void *ctx, int id, const char *msg)
{
	(void)ctx, (void)id;
	fprintf(stderr, "%s: warning: %s\n", cli_tool, msg);
}

/* --ape: the prefix's tokens (blend's head for this prefix and template), its
 * own cache computed into the store unless it is there. */
static void ape_head(const struct opts *o, const struct model *m, struct chunkcache *cc, int32_t **head, int *n)
{
	char *text = NULL;
	size_t len;
	if (o->prefix_file && kb_read_file(o->prefix_file, &text, &len))
		cli_die("%s", kb_error());
	const char *tmpl = cli_template(o->template, m->gguf, o->verbose, o->quiet);
	if (prompt_head(m, tmpl, o->prefix_file ? text : o->prefix, o->special, head, n))
		cli_die("%s", kb_error());
	free(text);
	if (*n > m->hp.n_ctx_train)
		cli_die("the prefix has %d tokens, more than the context of %d", *n, m->hp.n_ctx_train);
	struct kv_cache kv;
	struct model_ws ws;
	if (*n > 0) {
		if (kv_cache_init(&kv, m, *n) || model_ws_init(&ws, m, *n < 512 ? *n : 512, *n) ||
		    chunkcache_load(cc, m, &ws, &kv, 0, *head, *n, NULL, NULL))
			cli_die("%s", kb_error());
		kv_cache_free(&kv);
		model_ws_free(&ws);
	}
}

static int prefill_records(const struct opts *o, int n_in, char **in, int n_prov, char **prov)
{
	struct model *m;
	struct run r = { .o = o };
	if (model_load(&m, o->model) || chunkcache_open(&r.cc, o->store, true, o->dtype))
		cli_die("%s", kb_error());
	chunkcache_set_tool(r.cc, cli_tool, n_prov, prov);
	chunkcache_set_warn(r.cc, warn_cache, NULL);
	int rr = chunkcache_set_remote(r.cc, o->remote);
	if (rr == KB_ERR_ARG)
		cli_usage_error("--remote: %s", kb_error());
	else if (rr)
		cli_die("%s", kb_error());
	const bool remote = chunkcache_remote(r.cc) != NULL;
	if (o->reuse_similar && o->sim.bo.check_layer >= m->hp.n_layer)
		cli_usage_error("--check-layer %d: the model has %d layers", o->sim.bo.check_layer, m->hp.n_layer);
	r.m = m;
	if (o->ape) /* the prefix's own cache too: blend takes it from the store */
		ape_head(o, m, r.cc, &r.head, &r.n_head);
	if (kv_cache_init(&r.kv, m, o->batch) || model_ws_init(&r.ws, m, o->batch, o->batch))
		cli_die("%s", kb_error());
	/* a total when the records are a redirected stdin (files as operands: none) */
	progress_start(&r.meter, "chunks", n_in ? 0 : progress_lines(stdin), progress_wanted(o->quiet, o->progress || o->verbose));
	struct rec_loop loop = { .flags = REC_TEXT, .each = on_record, .report = cli_report, .ctx = &r };
	r.loop = &loop;
	if (rec_loop(&loop, n_in, in) || (r.n > 0 && flush(&r)))
		cli_die("%s", kb_error());
	progress(&r, true);
	if (o->json) // the summary as one JSON object on stderr (stdout carries the records)
		fprintf(stderr, "{\"chunks\":%ld,\"computed\":%ld,\"already_stored\":%ld,\"fetched\":%d,\"uploaded\":%ld,"
			"\"bad\":%ld,\"tokens\":%ld,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"similar\":%ld,"
			"\"tokens_similar\":%ld,\"tokens_reused\":%ld}\n", r.c.records, r.c.computed,
			r.c.stored, r.c.remote.fetched, r.c.uploaded, loop.bad, r.c.tokens, r.c.t_compute,
			r.c.t_compute > 0 ? r.c.tokens / r.c.t_compute : 0.0, r.c.similar, r.c.tokens_similar,
			r.c.tokens_reused);
	else if (o->verbose) {
		char from_remote[128] = "";
		if (remote)
			snprintf(from_remote, sizeof from_remote,
				 " (%d fetched from the remote: %.1f MiB in %.3f s; %ld stored before uploaded now)",
				 r.c.remote.fetched, r.c.remote.bytes_fetched / 1048576.0, r.c.remote.t_fetch, r.c.uploaded);
		fprintf(stderr, "%s: %ld chunks, %ld computed (%ld tokens in %.3f s, %.1f t/s), %ld already stored%s\n",
			cli_tool, r.c.records, r.c.computed, r.c.tokens, r.c.t_compute,
			r.c.t_compute > 0 ? r.c.tokens / r.c.t_compute : 0.0, r.c.stored, from_remote);
	}
	if (o->reuse_similar && !o->json) /* the share reused: with --reuse-similar, always said */
		fprintf(stderr, "%s: %ld of %ld computed built from similar chunks: %ld of %ld tokens reused (%.1f%%)\n",
			cli_tool, r.c.similar, r.c.computed, r.c.tokens_reused, r.c.tokens,
			r.c.tokens > 0 ? 100.0 * r.c.tokens_reused / r.c.tokens : 0.0);
	free(r.v);
	free(r.head);
	kv_cache_free(&r.kv);
	model_ws_free(&r.ws);
	chunkcache_close(r.cc);
	model_free(m);
	return loop.bad ? 1 : 0;
}

/* Options into o; what is left of argv are the record files. */
static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'p': o->prompt = optarg; break;
		case 'f': o->file = optarg; break;
		case 'o': o->output = optarg, o->output_set = true; break;
		case 'S': o->store = optarg; break;
		case CLI_REMOTE: o->remote = optarg; break;
		case 'b': o->batch = (int)cli_long("--batch", optarg, 1, 1 << 20); break;
		case 'R': o->reuse_similar = true; break;
		case 'Y': o->sim.min_sim = cli_double("--min-similarity", optarg, 0, 1), o->similar_opt = true; break;
		case 'r': o->sim.bo.ratio = (float)cli_double("--ratio", optarg, 0, 1), o->similar_opt = true; break;
		case 'C':
			o->sim.bo.check_layer = (int)cli_long("--check-layer", optarg, 0, 4095);
			o->similar_opt = true;
			break;
		case 'P': o->progress = true; break;
		case 'Q': o->quiet = true; break;
		case 'D':
			if ((o->dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0, kv8, kv4, kv3, kv2)",
						optarg);
			break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'B': o->no_bos = true; break;
		case 'L': o->no_logits = true; break;
		case 'N': o->special = true; break;
		case 'v': o->verbose = true; break;
		case 'j': o->json = true; break;
		case 'A': o->ape = true; break;
		case 'X': o->prefix = optarg; break;
		case 'F': o->prefix_file = optarg; break;
		case 'T': o->template = optarg; break;
		default: cli_unreachable(c);
		}
	}
	if (!o->model)
		cli_usage_error("a model is required (-m MODEL)");
	if (o->similar_opt && !o->reuse_similar)
		cli_usage_error("--min-similarity, --ratio and --check-layer go with --reuse-similar");
	if ((o->prefix || o->prefix_file || o->template) && !o->ape)
		cli_usage_error("--prefix, --prefix-file and --template go with --ape");
	if (o->ape && (o->prompt || o->file))
		cli_usage_error("--ape goes with chunk records (-p/-f compute one text's cache)");
	if (o->ape && o->reuse_similar)
		cli_usage_error("--ape and --reuse-similar do not go together");
	if (o->prefix && o->prefix_file)
		cli_usage_error("give the prefix once (--prefix TEXT or --prefix-file FILE)");
	if (!o->template)
		o->template = "auto"; /* as blend: resolved against the model once it is loaded */
	cli_template_check(o->template);
}

/* The cache of one text (-p or -f) to -o. */
static int prefill_text(const struct opts *o, int n_prov, char **prov)
{
	char *text = NULL;
	size_t len;
	if (o->prompt) {
		len = strlen(o->prompt);
	} else if (kb_read_file(o->file, &text, &len)) {
		cli_die("%s", kb_error());
	}
	if (len == 0)
		cli_die("text is empty");
	struct model *m;
	if (model_load(&m, o->model))
		cli_die("%s", kb_error());
	int32_t *ids;
	size_t n;
	if (tok_encode(m->tok, o->prompt ? o->prompt : text, len, !o->no_bos && tok_add_bos(m->tok),
		       o->special, &ids, &n))
		cli_die("%s", kb_error());
	if (n == 0)
		cli_die("text is empty after tokenization");
	if (n > (size_t)m->hp.n_ctx_train)
		cli_die("the prompt has %zu tokens, more than the context of %d", n, m->hp.n_ctx_train);

	struct kv_cache kv;
	struct model_ws ws;
	int32_t *pos = malloc(n * sizeof *pos);
	if (!pos || kv_cache_init(&kv, m, (int)n) || model_ws_init(&ws, m, n < 512 ? (int)n : 512, (int)n))
		cli_die("%s", kb_error());
	for (size_t i = 0; i < n; i++)
		pos[i] = (int32_t)i;
	double t0 = kb_now();
	if (model_forward(m, &ws, &kv, ids, pos, (int)n, ws.logits, false))
		cli_die("%s", kb_error());
	double t1 = kb_now();
	struct kvc_header h;
	const int dtype = o->dtype < 0 ? KVC_F16 : o->dtype;
	kvfile_header(&h, m, &kv, 0, (int)n, o->no_logits ? NULL : ws.logits, dtype, cli_tool, n_prov, prov);
	if (kvfile_write_path(o->output, &h, &kv, 0))
		cli_die("%s", kb_error());
	if (o->json) {
		json_t *j = json_pack("{s:I, s:f, s:f, s:s, s:s}", "tokens", (json_int_t)n, "seconds", t1 - t0,
				      "tokens_per_s", n / (t1 - t0), "dtype", kvc_dtype_name(dtype), "output", o->output);
		if (!j || json_dumpf(j, stderr, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)))
			cli_die("out of memory");
		fputc('\n', stderr);
		json_decref(j);
	} else if (o->verbose) {
		fprintf(stderr, "%s: %zu tokens in %.3f s (%.1f t/s), %s cache written to %s\n", cli_tool, n,
			t1 - t0, n / (t1 - t0), kvc_dtype_name(dtype), o->output);
	}
	free(pos);
	free(ids);
	free(text);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .output = "-", .dtype = -1, .batch = 512, .sim.min_sim = SIMILAR_MIN_DEFAULT };
	blend_opts_init(&o.sim.bo);
	parse(argc, argv, &o);
	char **prov; /* provenance: the option names, never their values */
	int n_prov;
	if (kvc_option_names(argc, argv, cli.shortopts, cli.longopts, &prov, &n_prov))
		cli_die("%s", kb_error());
	int status;
	if (!o.prompt && !o.file) {
		if (o.output_set)
			cli_usage_error("-o goes with -p or -f (chunk records go into the store)");
		if (optind == argc && isatty(STDIN_FILENO))
			cli_usage_error("give the text with -p TEXT or -f FILE, or chunk records (FILE... or stdin)");
		kern_set_threads(o.threads);
		status = prefill_records(&o, argc - optind, argv + optind, n_prov, prov);
	} else {
		if (o.store || o.remote || o.reuse_similar)
			cli_usage_error("--%s goes with chunk records on stdin (-p/-f write one cache to -o)",
					o.store ? "store" : o.remote ? "remote" : "reuse-similar");
		if (o.prompt && o.file)
			cli_usage_error("give the text with -p or -f, not both");
		if (optind < argc)
			cli_usage_error("unexpected argument '%s'", argv[optind]);
		if (strcmp(o.output, "-") == 0 && isatty(STDOUT_FILENO))
			cli_usage_error("refusing to write a binary cache to a terminal (use -o FILE or a pipe)");
		kern_set_threads(o.threads);
		status = prefill_text(&o, n_prov, prov);
	}
	free(prov);
	return status;
}
