/* kvblend-chunk — documents (files, directories, stdin, URLs) to chunk records,
 * JSON Lines.
 *
 * A directory is walked (doctree.h) and each file in it is a document named by
 * its path below the directory. Each document is read whole (a URL with
 * libcurl), made text by its format (docformat.h: gzip, zstd, HTML, PDF), cut
 * by the chunker (chunk.h) and written as one record per chunk: id, doc, seq,
 * start, end, [tokens,] [title,] [page, last_page,] text (kvblend-chunks(5))
 * by the records module. A document that cannot be read, converted or cut, or
 * is binary data of no known format, is reported and skipped; the exit status
 * is then 1, and -o FILE is left as it was (written atomically, all or
 * nothing). --by ppl loads the whole model (it scores the sentences, ppl.h);
 * the other modes only its tokenizer. */
#include <stdbool.h>
#include <unistd.h>

#include <jansson.h>

#include "chunk.h"
#include "cli.h"
#include "docformat.h"
#include "doctree.h"
#include "progress.h"
#include "fetch.h"
#include "gguf.h"
#include "kbio.h"
#include "model.h"
#include "records.h"
#include "tok.h"

enum { OPT_BY = 256, OPT_SPLIT, OPT_MAX_TOKENS, OPT_MIN_TOKENS, OPT_OVERLAP, OPT_PPL_THRESHOLD, OPT_PPL_WINDOW,
       OPT_PPL_CONTEXT, OPT_MAX_DOC_BYTES, OPT_TIMEOUT, OPT_QUIET, OPT_INCLUDE, OPT_EXCLUDE };

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "by", required_argument, NULL, OPT_BY },
	{ "split", required_argument, NULL, OPT_SPLIT },
	{ "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
	{ "min-tokens", required_argument, NULL, OPT_MIN_TOKENS },
	{ "overlap", required_argument, NULL, OPT_OVERLAP },
	{ "ppl-threshold", required_argument, NULL, OPT_PPL_THRESHOLD },
	{ "ppl-window", required_argument, NULL, OPT_PPL_WINDOW },
	{ "ppl-context", required_argument, NULL, OPT_PPL_CONTEXT },
	{ "max-doc-bytes", required_argument, NULL, OPT_MAX_DOC_BYTES },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "include", required_argument, NULL, OPT_INCLUDE },
	{ "exclude", required_argument, NULL, OPT_EXCLUDE },
	{ "output", required_argument, NULL, 'o' },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "verbose", no_argument, NULL, 'v' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

#define MAX_BUDGET (1L << 30)

static void usage(void)
{
	printf("usage: kvblend chunk [-m MODEL] [--by paragraph|sentence|heading|window|ppl | --split REGEX]\n"
	       "                     [--max-tokens N] [--min-tokens N] [--overlap N] [--ppl-threshold X]\n"
	       "                     [-o FILE] [--quiet] [-v] [--max-doc-bytes N] [--timeout SECONDS]\n"
	       "                     [--include GLOB]... [--exclude GLOB]... [FILE | DIR | URL | -]...\n"
	       "Cut documents into chunk records, one JSON object per line:\n"
	       "  {\"id\":SHA-256 of text,\"doc\":FILE or URL,\"seq\":N,\"start\":BYTE,\"end\":BYTE,\"tokens\":N,\"text\":...}\n"
	       "Inputs are files, directories (every file below, doc = its path in DIR), http(s):// and\n"
	       "file:// URLs, or stdin (- or none): text, HTML/XHTML, PDF (pdftotext), gzip or zstd of them.\n\n"
	       "  -m, --model FILE       count tokens with this GGUF model's tokenizer (else ~ bytes/4)\n"
	       "      --by MODE          paragraph (default), sentence, heading (Markdown #), window\n"
	       "                         (fixed windows of --max-tokens tokens), or ppl (sentences grouped\n"
	       "                         where their perplexity under -m MODEL dips; Meta-Chunking)\n"
	       "      --split REGEX      cut after each match of this PCRE2 regex instead\n"
	       "      --max-tokens N     token budget of a chunk (default 256, or the model's context if less;\n"
	       "                         0: pieces as they are)\n"
	       "      --min-tokens N     merge smaller chunks with a neighbour when both fit (default 0)\n"
	       "      --overlap N        tokens consecutive windows share (--by window; default 0)\n"
	       "      --ppl-threshold X  how far below both neighbours a sentence's perplexity must dip\n"
	       "                         to end a group (--by ppl; default 0: every local minimum)\n"
	       "      --ppl-window N     tokens per model pass scoring sentences (--by ppl; default: the\n"
	       "                         model's context, at most 1024)\n"
	       "      --ppl-context N    tokens a pass reads again from the one before (default window / 4)\n"
	       "      --max-doc-bytes N  largest document fetched by URL or decompressed (default 64M; a size:\n"
	       "                         k, M, G, T)\n"
	       "      --timeout SECONDS  time limit of a URL's transfer (default 60; 0: none)\n"
	       "      --include GLOB     in directories, only the files matching GLOB (a name, or with '/' a\n"
	       "                         path below DIR; repeatable)\n"
	       "      --exclude GLOB     in directories, leave out the files and folders matching GLOB\n"
	       "  -o, --output FILE      write the records to FILE\n"
	       "      --quiet            no progress (--by ppl) and no warnings (invalid UTF-8, the tokenizer's)\n"
	       "  -v, --verbose          counts and time on stderr; with --by ppl, the perplexities and\n"
	       "                         the depths of their dips, to choose --ppl-threshold by\n"
	       "  -h, --help             this help\n"
	       "      --version          the version\n");
}

static const struct cli_values values[] = {
	{ "--by", "paragraph sentence heading window ppl" },
	{ NULL, NULL },
};

static const struct cli cli = { "kvblend-chunk", "m:o:vh", longopts, usage, values };

struct opts {
	const char *model, *output;
	struct chunk_opts c;
	struct fetch_opts f;
	struct progress *meter; /* --by ppl: the tokens scored of a document */
	bool quiet, verbose, by_set, overlap_set, min_set, threshold_set, window_set, max_set;
	char **inputs;
	int n_inputs;
	char **include, **exclude; /* owned arrays of argv's strings */
	int n_include, n_exclude;
};

/* Append s to the growing array *v of *n. */
static void add_glob(char ***v, int *n, char *s)
{
	char **w = kb_realloc_array(*v, (size_t)*n + 1, sizeof *w);
	if (!w)
		cli_die("out of memory");
	w[(*n)++] = s;
	*v = w;
}

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case OPT_BY:
			if (chunk_by_parse(optarg, &o->c.by) || o->c.by == CHUNK_BY_REGEX)
				cli_usage_error("--by: '%s' is not paragraph, sentence, heading, window or ppl "
						"(for a regex use --split)", optarg);
			o->by_set = true;
			break;
		case OPT_SPLIT:
			if (!*optarg)
				cli_usage_error("--split: the regex is empty");
			o->c.split = optarg;
			break;
		case OPT_MAX_TOKENS:
			o->c.max_tokens = (size_t)cli_long("--max-tokens", optarg, 0, MAX_BUDGET);
			o->max_set = true;
			break;
		case OPT_MIN_TOKENS:
			o->c.min_tokens = (size_t)cli_long("--min-tokens", optarg, 0, MAX_BUDGET);
			o->min_set = true;
			break;
		case OPT_OVERLAP:
			o->c.overlap = (size_t)cli_long("--overlap", optarg, 0, MAX_BUDGET);
			o->overlap_set = true;
			break;
		case OPT_PPL_THRESHOLD:
			o->c.ppl_threshold = cli_double("--ppl-threshold", optarg, 0, 1e9);
			o->threshold_set = true;
			break;
		case OPT_PPL_WINDOW:
			o->c.ppl_window = (int)cli_long("--ppl-window", optarg, 2, 1 << 20);
			o->window_set = true;
			break;
		case OPT_PPL_CONTEXT:
			o->c.ppl_context = (int)cli_long("--ppl-context", optarg, 1, 1 << 20);
			o->window_set = true;
			break;
		case OPT_MAX_DOC_BYTES: o->f.max_bytes = (size_t)cli_size("--max-doc-bytes", optarg, 1, 1ull << 40); break;
		case OPT_TIMEOUT: o->f.timeout = cli_long("--timeout", optarg, 0, 86400); break;
		case OPT_INCLUDE: add_glob(&o->include, &o->n_include, optarg); break;
		case OPT_EXCLUDE: add_glob(&o->exclude, &o->n_exclude, optarg); break;
		case 'o': o->output = optarg; break;
		case OPT_QUIET: o->quiet = true; break;
		case 'v': o->verbose = true; break;
		default: cli_unreachable(c);
		}
	}
	if (o->c.split && o->by_set)
		cli_usage_error("--split and --by do not go together (--split sets the boundaries)");
	if (o->c.split)
		o->c.by = CHUNK_BY_REGEX;
	bool window = o->c.by == CHUNK_BY_WINDOW;
	if (o->overlap_set && !window)
		cli_usage_error("--overlap is for --by window");
	if (o->min_set && window)
		cli_usage_error("--min-tokens is not for --by window");
	if (o->threshold_set && o->c.by != CHUNK_BY_PPL)
		cli_usage_error("--ppl-threshold is for --by ppl");
	if (o->window_set && o->c.by != CHUNK_BY_PPL)
		cli_usage_error("--ppl-window and --ppl-context are for --by ppl");
	if (window && o->c.max_tokens == 0)
		cli_usage_error("--by window needs --max-tokens above 0");
	if (window && o->c.overlap >= o->c.max_tokens)
		cli_usage_error("--overlap %zu must be less than --max-tokens %zu", o->c.overlap, o->c.max_tokens);
	if (o->c.max_tokens && o->c.min_tokens > o->c.max_tokens)
		cli_usage_error("--min-tokens %zu is more than --max-tokens %zu", o->c.min_tokens, o->c.max_tokens);
	o->f.connect_timeout = o->f.timeout && o->f.timeout < 10 ? o->f.timeout : 10;
	o->inputs = argv + optind;
	o->n_inputs = argc - optind;
	if (o->c.by == CHUNK_BY_PPL && !o->model)
		cli_usage_error("--by ppl needs a model to score the sentences: give -m MODEL");
	if (o->n_inputs == 0 && isatty(STDIN_FILENO))
		cli_usage_error("no input: give a FILE, a URL or text on stdin");
}

static void tok_warn(const struct tok *t, bool quiet)
{
	if (tok_warning(t) && !quiet)
		fprintf(stderr, "%s: warning: %s\n", cli_tool, tok_warning(t));
}

/* The tokenizer of the model at path, and its context (0: unknown) in *n_ctx. */
static struct tok *load_tokenizer(const char *path, bool quiet, uint32_t *n_ctx)
{
	struct gguf *g;
	struct tok *t;
	if (gguf_open(&g, path))
		cli_die("%s", kb_error());
	*n_ctx = gguf_context_length(g);
	int rc = tok_load(&t, g);
	gguf_close(g); // the tokenizer keeps its own copy
	if (rc)
		cli_die("%s", kb_error());
	tok_warn(t, quiet);
	return t;
}

struct totals {
	long inputs, chunks;
	size_t bytes, tokens;
};

/* The text of the document at in (a file, a URL, "-") in *d; 0, or -1 after
 * reporting why not. */
static int read_doc(const struct opts *o, const char *in, struct doc *d)
{
	char *data, *type = NULL;
	size_t len;
	int rc = fetch_is_url(in) ? fetch_url_type(in, &o->f, &data, &len, &type) : kbio_read_file(in, &data, &len);
	if (rc) {
		fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
		return -1;
	}
	struct doc_opts dopt = { .max_bytes = o->f.max_bytes, .content_type = type };
	rc = doc_convert(in, data, len, &dopt, d);
	free(type);
	if (rc) {
		fprintf(stderr, "%s: %s%s\n", cli_tool, kb_error(), rc == KB_ERR_UNSUPPORTED ? ": skipped" : "");
		return -1;
	}
	return 0;
}

/* Read, convert, cut and write one document: in to open, named doc in the
 * records; 0, or -1 after reporting why not. */
static int chunk_input(const struct opts *o, struct chunker *ch, const char *in, const char *doc, FILE *out,
		       struct totals *tot)
{
	size_t n, n_invalid;
	const struct chunk *v;
	struct doc d;
	if (read_doc(o, in, &d))
		return -1;
	char *name = chunk_utf8_clean(doc, strlen(doc), NULL, NULL); // "doc" must be valid UTF-8 too
	char what[64];
	snprintf(what, sizeof what, "tokens of '%.40s' scored", in);
	progress_start(o->meter, what, 0, o->c.by == CHUNK_BY_PPL && progress_wanted(o->quiet, o->verbose));
	int run = name ? chunker_run(ch, d.text, d.len, &v, &n, &n_invalid) : KB_ERR_NOMEM;
	progress_end(o->meter);
	if (run) {
		fprintf(stderr, "%s: '%s': %s\n", cli_tool, in, kb_error());
		free(name);
		doc_free(&d);
		return -1;
	}
	if (n_invalid && !o->quiet)
		fprintf(stderr, "%s: '%s': %zu invalid UTF-8 sequence%s (replaced by U+FFFD)\n", cli_tool, in,
			n_invalid, n_invalid == 1 ? "" : "s");
	int rc = KB_OK;
	for (size_t i = 0; i < n && rc == KB_OK; i++) {
		struct rec_chunk c = { .doc = name, .seq = i, .start = v[i].start, .end = v[i].end,
				       .tokens = o->model ? (long)v[i].tokens : -1, .title = d.title,
				       .page = doc_page_at(&d, v[i].start),
				       .last_page = doc_page_at(&d, v[i].end ? v[i].end - 1 : 0),
				       .text = v[i].text, .len = v[i].len };
		if ((rc = rec_write_chunk(out, &c)))
			fprintf(stderr, "%s: '%s': %s\n", cli_tool, in, kb_error());
	}
	tot->inputs++, tot->chunks += (long)n, tot->bytes += d.len;
	for (size_t i = 0; i < n; i++)
		tot->tokens += v[i].tokens;
	free(name);
	doc_free(&d);
	return rc ? -1 : 0;
}

/* A directory's walk: what each file needs, and whether any failed. */
struct tree {
	const struct opts *o;
	struct chunker *ch;
	FILE *out;
	struct totals *tot;
	int failed;
};

static int tree_file(void *ctx, const char *path, const char *rel)
{
	struct tree *t = ctx;
	t->failed |= chunk_input(t->o, t->ch, path, rel, t->out, t->tot) != 0;
	return ferror(t->out) ? KB_ERR_IO : KB_OK;
}

static void tree_report(void *ctx, bool error, const char *msg)
{
	struct tree *t = ctx;
	if (error || !t->o->quiet)
		fprintf(stderr, "%s: %s%s\n", cli_tool, error ? "" : "warning: ", msg);
}

/* Every document of one operand: a directory's files, or itself; 0, or -1
 * when any failed (each reported). */
static int chunk_operand(const struct opts *o, struct chunker *ch, const char *in, FILE *out, struct totals *tot)
{
	if (fetch_is_url(in) || !strcmp(in, "-") || !doctree_is_dir(in))
		return chunk_input(o, ch, in, in, out, tot);
	struct tree t = { o, ch, out, tot, 0 };
	struct doctree_opts w = { o->include, o->n_include, o->exclude, o->n_exclude };
	long errors = 0;
	int rc = doctree_walk(in, &w, tree_file, tree_report, &t, &errors);
	if (rc == KB_ERR_NOMEM)
		fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
	return t.failed || errors || rc ? -1 : 0;
}

/* -v: what was cut, and for --by ppl what the model saw, on stderr. */
static void report(const struct opts *o, const struct chunker *ch, const struct totals *tot, double secs)
{
	fprintf(stderr, "%s: --by %s: %ld input%s, %zu bytes: %ld chunks, %zu tokens%s, %.2f s\n", cli_tool,
		o->c.split ? "regex" : chunk_by_name(o->c.by), tot->inputs, tot->inputs == 1 ? "" : "s", tot->bytes,
		tot->chunks, tot->tokens, o->model ? "" : " (about bytes / 4)", secs);
	if (o->c.by != CHUNK_BY_PPL)
		return;
	struct chunk_ppl_stats st;
	chunker_ppl_stats(ch, &st);
	fprintf(stderr, "%s: %zu sentences scored, perplexity", cli_tool, st.n_sentences);
	for (int k = 0; k < CHUNK_PPL_NQ; k++)
		fprintf(stderr, "%s p%.0f %.3g", k ? "," : "", 100 * chunk_ppl_q[k], st.ppl[k]);
	fprintf(stderr, "\n%s: %zu dips (the cuts at threshold 0), depth", cli_tool, st.n_dips);
	for (int k = 0; k < CHUNK_PPL_NQ; k++)
		fprintf(stderr, "%s p%.0f %.3g", k ? "," : "", 100 * chunk_ppl_q[k], st.dip[k]);
	fprintf(stderr, "\n%s: %zu cut at --ppl-threshold %g (a threshold at the depths' pN keeps about "
		"100-N%% of the dips)\n", cli_tool, st.n_cuts, o->c.ppl_threshold);
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { .c = { .by = CHUNK_BY_PARAGRAPH, .max_tokens = 256 }, .f = FETCH_OPTS_DEFAULT };
	parse(argc, argv, &o);

	struct model *m = NULL;
	struct tok *t = NULL;
	uint32_t n_ctx = 0; /* the model's context: the default budget must fit it */
	if (o.c.by == CHUNK_BY_PPL) {
		if (model_load(&m, o.model))
			cli_die("%s", kb_error());
		tok_warn(m->tok, o.quiet);
		o.c.model = m;
		o.c.tok = m->tok;
		n_ctx = (uint32_t)m->hp.n_ctx_train;
	} else if (o.model) {
		o.c.tok = t = load_tokenizer(o.model, o.quiet, &n_ctx);
	}
	if (!o.max_set && n_ctx > 0 && o.c.max_tokens > n_ctx)
		o.c.max_tokens = n_ctx;
	struct progress meter;
	o.meter = &meter;
	o.c.ppl_progress = progress_cb;
	o.c.ppl_progress_ctx = &meter;
	struct chunker *ch;
	if (chunker_init(&ch, &o.c)) {
		if (o.c.split)
			cli_usage_error("--split: %s", kb_error());
		if (o.window_set)
			cli_usage_error("--ppl-window, --ppl-context: %s", kb_error());
		cli_die("%s", kb_error());
	}
	struct kb_out out;
	if (kb_out_open(&out, o.output ? o.output : "-"))
		cli_die("%s", kb_error());

	char *stdin_only[] = { "-" };
	char **in = o.n_inputs ? o.inputs : stdin_only;
	int n_in = o.n_inputs ? o.n_inputs : 1, failed = 0;
	struct totals tot = { 0 };
	double t0 = kb_now();
	for (int i = 0; i < n_in; i++) {
		failed |= chunk_operand(&o, ch, in[i], out.f, &tot) != 0;
		if (ferror(out.f))
			break;
	}
	if (failed && out.tmp) { /* -o FILE: all or nothing, so make never takes a part for the whole */
		kb_out_abort(&out);
	} else if (!out.path) {
		errno = 0;
		if (fflush(stdout) || ferror(stdout))
			cli_write_failed(errno);
	} else if (kb_out_commit(&out)) {
		cli_die("%s", kb_error());
	}

	if (o.verbose)
		report(&o, ch, &tot, kb_now() - t0);
	chunker_free(ch);
	free(o.include);
	free(o.exclude);
	tok_free(t);
	model_free(m);
	return failed ? 1 : 0;
}
