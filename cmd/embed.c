/* kvblend-embed — chunk records into the store's chunk index (text for BM25,
 * vectors from an embedding model), and top-k retrieval for queries. */
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "pool.h"
#include "progress.h"
#include "chunkdb.h"
#include "embedder.h"
#include "ingest.h"
#include "records.h"
#include "search.h"
#include "store.h"

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "store", required_argument, NULL, 'S' },
	{ "query", required_argument, NULL, 'q' },
	{ "top-k", required_argument, NULL, 'k' },
	{ "lexical", no_argument, NULL, 'L' },
	{ "dense", no_argument, NULL, 'D' },
	{ "hybrid", no_argument, NULL, 'H' },
	{ "order", required_argument, NULL, 'R' },
	{ "pool", required_argument, NULL, 'P' },
	{ "batch", required_argument, NULL, 'B' },
	{ "vectors", no_argument, NULL, 'V' },
	{ "delete", required_argument, NULL, 'E' },
	{ "list-docs", no_argument, NULL, 'W' },
	{ "passage-prefix", required_argument, NULL, 'A' },
	{ "query-prefix", required_argument, NULL, 'U' },
	{ "threads", required_argument, NULL, 't' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "json", no_argument, NULL, 'j' },
	{ "quiet", no_argument, NULL, 'Q' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend embed [-m MODEL] [--store DIR] [CHUNKS.jsonl | -]...\n"
	       "       kvblend embed [-m MODEL] [--store DIR] (--query TEXT | -k N < queries.jsonl) [options]\n"
	       "       kvblend embed -m MODEL --vectors [RECORDS.jsonl | -]...\n"
	       "       kvblend embed [--store DIR] (--list-docs | --delete DOC...)\n"
	       "Keep chunk records in the store's chunk index (BM25 over their text, and their\n"
	       "embeddings with -m), or print the top k chunk records for each query; or\n"
	       "print each record with its embedding (--vectors, no store). Indexing a document\n"
	       "(\"doc\") again replaces its old chunks.\n\n"
	       "  -m, --model FILE       embedding model (GGUF: bert, or a decoder with --pool)\n"
	       "      --store DIR        the store (default $KVBLEND_STORE or $XDG_CACHE_HOME/kvblend)\n"
	       "  -q, --query TEXT       search for TEXT (without it, -k reads {\"query\": ...} lines)\n"
	       "  -k, --top-k N          how many chunks per query (default 5)\n"
	       "      --lexical          BM25 only (the default without -m)\n"
	       "      --dense            embeddings only (needs -m)\n"
	       "      --hybrid           both, fused by reciprocal rank (the default with -m)\n"
	       "      --order ORDER      rank (best first, default), reverse (best last) or doc\n"
	       "      --pool POOL        mean, cls or last (default: the model's, else mean)\n"
	       "      --passage-prefix T put T before each chunk's text when embedding it (e5: \"passage: \");\n"
	       "                         its vectors are a space of their own\n"
	       "      --query-prefix T   put T before each query when embedding it (e5: \"query: \")\n"
	       "      --batch N          chunks embedded per batch (default 32)\n"
	       "      --vectors          print each record of stdin with an \"embedding\" array (of its\n"
	       "                         \"text\", else its \"query\"), L2-normalized; needs -m\n"
	       "      --list-docs        print each indexed document and its number of chunks\n"
	       "      --delete DOC       remove every chunk of document DOC (repeatable)\n"
	       "  -t, --threads N        threads (default: all cores)\n"
	       "  -v, --verbose          counts and timings on stderr (and progress, as on a terminal)\n"
	       "  -j, --json             the counts and timings as one JSON object on stderr\n"
	       "      --quiet            no progress\n"
	       "  -h, --help             this help\n"
	       "      --version          the version\n");
}

static const struct cli_values values[] = {
	{ "--order", "rank reverse doc" },
	{ "--pool", "mean cls last" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-embed", "m:q:k:t:vjh", longopts, usage, values };

enum method { M_DEFAULT, M_LEXICAL, M_DENSE, M_HYBRID };

#define MAX_DELETE 256

struct opts {
	const char *model, *store, *query, *pool, *passage_prefix, *query_prefix;
	const char *del[MAX_DELETE]; /* --delete DOC, n_del of them */
	int k, batch, threads, n_del;
	bool json, quiet, search, verbose, vectors, store_set, method_set, order_set, list_docs;
	char **inputs; /* chunk records: these files, else stdin */
	int n_inputs;
	enum method method;
	enum search_order order;
};

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'S': o->store = optarg, o->store_set = true; break;
		case 'q': o->query = optarg, o->search = true; break;
		case 'k': o->k = (int)cli_long("--top-k", optarg, 1, 1 << 20), o->search = true; break;
		case 'L':
		case 'D':
		case 'H':
			if (o->method != M_DEFAULT)
				cli_usage_error("give one of --lexical, --dense and --hybrid");
			o->method = c == 'L' ? M_LEXICAL : c == 'D' ? M_DENSE : M_HYBRID;
			o->method_set = true;
			break;
		case 'R':
			o->order_set = true;
			if (search_order_from_name(optarg, &o->order))
				cli_usage_error("--order: %s", kb_error());
			break;
		case 'P':
			if (strcmp(optarg, "mean") && strcmp(optarg, "cls") && strcmp(optarg, "last"))
				cli_usage_error("--pool: unknown pooling '%s' (mean, cls, last)", optarg);
			o->pool = optarg;
			break;
		case 'B': o->batch = (int)cli_long("--batch", optarg, 1, 4096); break;
		case 'V': o->vectors = true; break;
		case 'E':
			if (o->n_del == MAX_DELETE)
				cli_usage_error("more than %d --delete", MAX_DELETE);
			o->del[o->n_del++] = optarg;
			break;
		case 'W': o->list_docs = true; break;
		case 'A': o->passage_prefix = optarg; break;
		case 'U': o->query_prefix = optarg; break;
		case 't': o->threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'v': o->verbose = true; break;
		case 'j': o->json = true; break;
		case 'Q': o->quiet = true; break;
		default: cli_unreachable(c);
		}
	}
	o->inputs = argv + optind;
	o->n_inputs = argc - optind;
	if (o->n_inputs && (o->search || o->n_del || o->list_docs))
		cli_usage_error("unexpected operand '%s' (queries come with --query or on stdin)", argv[optind]);
	if (o->n_del || o->list_docs) {
		if (o->search || o->vectors || o->model || o->method_set || o->order_set)
			cli_usage_error("--delete and --list-docs take only --store (and -v)");
		return;
	}
	if (o->vectors) {
		if (!o->model)
			cli_usage_error("--vectors needs an embedding model (-m MODEL)");
		if (o->search || o->store_set || o->method_set || o->order_set)
			cli_usage_error("--vectors prints embeddings: it takes no --store, --query, -k, "
					"--lexical, --dense, --hybrid or --order");
		if (!o->n_inputs && isatty(STDIN_FILENO))
			cli_usage_error("no records: give JSON Lines with a \"text\" or \"query\" (FILE... or stdin)");
		if (!o->batch)
			o->batch = 32;
		return;
	}
	if ((o->passage_prefix || o->query_prefix) && (!o->model || o->method == M_LEXICAL))
		cli_usage_error("--passage-prefix and --query-prefix go with an embedding model (-m), not --lexical");
	if ((o->method == M_DENSE || o->method == M_HYBRID) && !o->model)
		cli_usage_error("--%s needs an embedding model (-m MODEL)", o->method == M_DENSE ? "dense" : "hybrid");
	if (o->method == M_DEFAULT)
		o->method = o->model ? M_HYBRID : M_LEXICAL;
	if (!o->search && o->method != M_LEXICAL && !o->model)
		cli_usage_error("a model is required (-m MODEL)");
	if (o->query && !*o->query)
		cli_usage_error("--query: the query is empty");
	if (!o->k)
		o->k = 5;
	if (!o->batch)
		o->batch = 32;
	if (!o->search && !o->n_inputs && isatty(STDIN_FILENO))
		cli_usage_error("no chunks: give chunk records (FILE... or stdin)");
	if (o->search && !o->query && isatty(STDIN_FILENO))
		cli_usage_error("no query: give --query TEXT or {\"query\": ...} lines on stdin");
}

/* ---- storing ---- */

/* What the record loop carries while storing. */
struct storing {
	struct ingest *g;
	const struct rec_loop *loop; /* its counts, for the meter */
	struct progress meter;
};

/* A record from the loop: into the index, its vector with the next batch. */
static int store_one(void *ctx, json_t *rec, const struct rec_where *at)
{
	struct storing *s = ctx;
	progress_set(&s->meter, (uint64_t)(s->loop->records + s->loop->bad));
	int rc = ingest_add(s->g, rec);
	if (rc && rc != KB_ERR_FORMAT)
		cli_die("%s", kb_error());
	return rc; /* a bad record is reported by the loop, with its place */
}

/* The indexing summary: a line (-v), or one JSON object (--json), on stderr. */
static void report_stored(const struct opts *o, struct chunkdb *ix, bool embedded, const struct ingest_stats *st,
			  long n_in, long n_bad, double t)
{
	int64_t total = 0;
	if (chunkdb_count(ix, &total))
		cli_die("%s", kb_error());
	if (o->json) {
		fprintf(stderr, "{\"chunks\":%ld,\"added\":%ld,\"already_indexed\":%ld,\"bad\":%ld,\"in_index\":%lld,"
			"\"seconds\":%.3f,\"embedded\":%ld,\"embed_seconds\":%.3f,\"swept\":%ld}\n", n_in + n_bad,
			st->added, n_in - st->added, n_bad, (long long)total, t, st->embedded, st->t_embed, st->swept);
		return;
	}
	fprintf(stderr, "%s: %ld chunks read, %ld added, %ld already there, %ld bad; %lld in the index; %.3f s",
		cli_tool, n_in + n_bad, st->added, n_in - st->added, n_bad, (long long)total, t);
	if (embedded)
		fprintf(stderr, "; %ld embedded in %.3f s (%.1f chunks/s)", st->embedded, st->t_embed,
			st->t_embed > 0 ? st->embedded / st->t_embed : 0.0);
	if (st->swept)
		fprintf(stderr, "; %ld old chunk%s of re-indexed documents removed", st->swept, st->swept == 1 ? "" : "s");
	fputc('\n', stderr);
}

static int store_chunks(const struct opts *o, struct chunkdb *ix, struct embedder *e)
{
	struct storing s = { 0 };
	double t0 = kb_now();
	if (ingest_init(&s.g, ix, e, o->batch))
		cli_die("%s", kb_error());
	/* a total when the records are a redirected stdin (files as operands: none) */
	progress_start(&s.meter, "chunks", o->n_inputs ? 0 : progress_lines(stdin), progress_wanted(o->quiet, o->verbose));
	struct rec_loop loop = { .flags = REC_TEXT, .each = store_one, .report = cli_report, .ctx = &s };
	s.loop = &loop;
	if (rec_loop(&loop, o->n_inputs, o->inputs))
		cli_die("%s", kb_error());
	long n_in = loop.records, n_bad = loop.bad;
	progress_set(&s.meter, (uint64_t)(n_in + n_bad));
	progress_end(&s.meter);
	/* a bad record: a document's new chunks may be incomplete, so its old ones stay */
	if (n_bad && n_in)
		fprintf(stderr, "%s: %ld bad record%s: the documents read keep their old chunks too\n", cli_tool, n_bad,
			n_bad == 1 ? "" : "s");
	if (ingest_finish(s.g, n_bad == 0))
		cli_die("%s", kb_error());
	if (o->verbose || o->json)
		report_stored(o, ix, e != NULL, ingest_stats(s.g), n_in, n_bad, kb_now() - t0);
	ingest_free(s.g);
	return n_bad ? 1 : 0;
}

/* ---- --vectors ---- */

/* The text a record is embedded by: its "text" (a passage), else its "query". */
static const char *embed_text(const json_t *rec, bool *is_query)
{
	size_t len;
	const char *t = rec_text(rec, &len);
	*is_query = !t;
	if (t)
		return t;
	const json_t *q = json_object_get(rec, "query");
	return json_is_string(q) ? json_string_value(q) : NULL;
}

/* Embed the n records (the passages together, each query alone, with their
 * prefixes) and print each with its "embedding"; releases them. */
static void print_vectors(struct embedder *e, json_t **recs, const char **texts, const bool *is_query, int n)
{
	const int dim = embedder_dim(e);
	float *v = malloc((size_t)n * (size_t)dim * sizeof *v);
	if (!v)
		cli_die("out of memory");
	if (embedder_run_mixed(e, texts, is_query, n, v))
		cli_die("%s", kb_error());
	for (int i = 0; i < n; i++) {
		json_t *a = json_array();
		for (int j = 0; a && j < dim; j++)
			if (json_array_append_new(a, json_real(v[(size_t)i * dim + j])))
				cli_die("out of memory");
		if (!a || json_object_set_new(recs[i], "embedding", a))
			cli_die("out of memory");
		/* 9 significant digits give back every float exactly */
		if (json_dumpf(recs[i], stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)))
			cli_write_failed(errno);
		putchar('\n');
		cli_flush();
		json_decref(recs[i]);
	}
	free(v);
}

/* What the record loop carries for --vectors: a batch of records. */
struct batch {
	struct embedder *e;
	int cap, n;
	json_t **recs;      /* owned references, [cap] */
	const char **texts; /* in recs */
	bool *is_query;
};

static int vector_one(void *ctx, json_t *rec, const struct rec_where *at)
{
	struct batch *b = ctx;
	bool q;
	const char *t = embed_text(rec, &q);
	if (!t || !*t) {
		json_decref(rec);
		return kb_fail(KB_ERR_FORMAT, "the record has no \"text\" or \"query\" to embed");
	}
	b->recs[b->n] = rec, b->texts[b->n] = t, b->is_query[b->n++] = q;
	if (b->n == b->cap) {
		print_vectors(b->e, b->recs, b->texts, b->is_query, b->n);
		b->n = 0;
	}
	return KB_OK;
}

static int vectors(const struct opts *o, struct embedder *e)
{
	struct batch b = { .e = e, .cap = o->batch };
	b.recs = malloc((size_t)b.cap * sizeof *b.recs);
	b.texts = malloc((size_t)b.cap * sizeof *b.texts);
	b.is_query = malloc((size_t)b.cap * sizeof *b.is_query);
	if (!b.recs || !b.texts || !b.is_query)
		cli_die("out of memory");
	/* a record may hold a "query" instead of a "text": REC_TEXT is not asked */
	struct rec_loop loop = { .each = vector_one, .report = cli_report, .ctx = &b };
	if (rec_loop(&loop, o->n_inputs, o->inputs))
		cli_die("%s", kb_error());
	if (b.n)
		print_vectors(e, b.recs, b.texts, b.is_query, b.n);
	free(b.recs);
	free(b.texts);
	free(b.is_query);
	return loop.bad ? 1 : 0;
}

/* ---- searching ---- */

/* Print the hits in the chosen order; query_text and qid (may be NULL) are added to each. */
static void print_hits(const struct opts *o, struct chunkdb *ix, struct chunkdb_hit *hits, int n,
		       const char *query_text, const json_t *qid)
{
	int *rank = malloc((size_t)(n ? n : 1) * sizeof *rank);
	if (!rank || search_order(ix, hits, n, o->order, rank))
		cli_die("%s", rank ? kb_error() : "out of memory");
	for (int j = 0; j < n; j++) {
		json_t *rec;
		int rc = search_hit_record(ix, &hits[j], rank[j], query_text, qid, &rec);
		if (rc)
			cli_die("%s", rc == KB_EOF ? "a chunk vanished from the index while searching" : kb_error());
		if (rec_write(stdout, rec))
			cli_die("%s", kb_error());
		json_decref(rec);
	}
	free(rank);
}

static enum search_method search_method(enum method m)
{
	return m == M_LEXICAL ? SEARCH_LEXICAL : m == M_DENSE ? SEARCH_DENSE : SEARCH_HYBRID;
}

/* What the record loop carries for {"query": ...} lines. */
struct querying {
	const struct opts *o;
	struct chunkdb *ix;
	struct search *s;
	long n_q, n_found;
};

/* One query: its top k, printed. */
static int ask(struct querying *q, const char *text, const json_t *qid)
{
	struct chunkdb_hit *hits;
	int n;
	if (search_run(q->s, text, q->o->k, &hits, &n))
		cli_die("%s", kb_error());
	print_hits(q->o, q->ix, hits, n, qid || !q->o->query ? text : NULL, qid);
	free(hits);
	q->n_q++, q->n_found += n > 0;
	return KB_OK;
}

static int ask_record(void *ctx, json_t *rec, const struct rec_where *at)
{
	const json_t *jq = json_object_get(rec, "query");
	int rc = json_is_string(jq) && json_string_length(jq) > 0
			 ? ask(ctx, json_string_value(jq), json_object_get(rec, "qid"))
			 : kb_fail(KB_ERR_FORMAT, "the record has no \"query\" string");
	json_decref(rec);
	return rc;
}

static int search(const struct opts *o, struct chunkdb *ix, struct embedder *e)
{
	struct querying q = { .o = o, .ix = ix };
	if (search_open(&q.s, ix, e, search_method(o->method)))
		cli_die("%s", kb_error());
	double t0 = kb_now();
	struct rec_loop loop = { .each = ask_record, .report = cli_report, .ctx = &q };
	if (o->query)
		ask(&q, o->query, NULL);
	else if (rec_loop(&loop, 0, NULL))
		cli_die("%s", kb_error());
	if (o->json) {
		fprintf(stderr, "{\"queries\":%ld,\"found\":%ld,\"seconds\":%.3f,\"method\":\"%s\"}\n", q.n_q, q.n_found,
			kb_now() - t0, search_method_name(search_method(o->method)));
	} else if (o->verbose) {
		fprintf(stderr, "%s: %ld queries in %.3f s (%s search", cli_tool, q.n_q, kb_now() - t0,
			search_method_name(search_method(o->method)));
		if (o->method != M_LEXICAL)
			fprintf(stderr, ", %lld vectors, %s", (long long)search_n_vectors(q.s), search_dense_name(q.s));
		fprintf(stderr, ")\n");
	}
	search_free(q.s);
	return q.n_found && !loop.bad ? 0 : 1; /* like grep: 1 when nothing matched */
}

/* ---- documents ---- */

static int print_doc(void *ctx, const char *doc, int64_t n)
{
	(void)ctx;
	printf("%s\t%lld\n", doc, (long long)n);
	return 0;
}

/* --list-docs, --delete: 0, or 1 when a document to delete was not there. */
static int docs(const struct opts *o, struct chunkdb *ix)
{
	int status = 0;
	for (int i = 0; i < o->n_del; i++) {
		int64_t n;
		if (chunkdb_delete_doc(ix, o->del[i], &n))
			cli_die("%s", kb_error());
		if (!n) {
			fprintf(stderr, "%s: '%s': no such document in the chunk index\n", cli_tool, o->del[i]);
			status = 1;
		} else if (o->verbose) {
			fprintf(stderr, "%s: '%s': %lld chunk%s removed\n", cli_tool, o->del[i], (long long)n, n == 1 ? "" : "s");
		}
	}
	if (o->list_docs && chunkdb_list_docs(ix, print_doc, NULL))
		cli_die("%s", kb_error());
	return status; /* a write error is caught at exit (cli.h) */
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { 0 };
	parse(argc, argv, &o);
	kern_set_threads(o.threads);
	if (o.vectors) {
		struct embedder *e;
		if (embedder_open(&e, o.model, o.pool) || embedder_set_prefixes(e, o.passage_prefix, o.query_prefix))
			cli_die("%s", kb_error());
		int status = vectors(&o, e);
		embedder_free(e);
		return status;
	}
	char *dir = NULL;
	if (!o.store && store_default_dir(&dir))
		cli_die("%s", kb_error());
	struct chunkdb *ix;
	bool lookup = o.search || o.n_del || o.list_docs; /* these create nothing */
	if (chunkdb_open(&ix, o.store ? o.store : dir, !lookup))
		cli_die("%s", kb_error());
	if (o.n_del || o.list_docs) {
		int status = docs(&o, ix);
		chunkdb_close(ix);
		free(dir);
		return status;
	}
	struct embedder *e = NULL;
	if (o.model && o.method != M_LEXICAL &&
	    (embedder_open(&e, o.model, o.pool) || embedder_set_prefixes(e, o.passage_prefix, o.query_prefix)))
		cli_die("%s", kb_error());
	int status = o.search ? search(&o, ix, e) : store_chunks(&o, ix, e);
	embedder_free(e);
	chunkdb_close(ix);
	free(dir);
	return status;
}
