/* bench.h — the dataset benchmark: every way of building a RAG prompt's cache
 * (full prefill, prefix caching, full reuse, CacheBlend at several ratios,
 * EPIC) on the same questions, as the CacheBlend evaluation runs them.
 *
 * bench_run puts every chunk cache in the store first; then for each question
 * full prefill runs first (the reference: its greedy continuation, every
 * step's logits kept), then each other method builds the prompt's cache
 * through prompt_run (prompt.h), timed to the first token; it follows full's
 * continuation teacher-forced (top-1 agreement, KL), then generates its own
 * answer, scored by token F1 and exact match (QA) or Rouge-L (summaries)
 * against the gold answers. Peak RSS is sampled per method. Every number is
 * kept per question (struct bench_sample), then summarized over every
 * question and, when the questions carry more than one kind (dataset.h), over
 * the questions of each kind (struct bench_group). The results print as a
 * table, TSV or JSON, and plot as time to first token against top-1 agreement
 * (bench_print.c). Nothing here prints on its own: output goes to the FILE *
 * given, progress and warnings to the callbacks.
 */
#ifndef KB_BENCH_H
#define KB_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "blend.h"
#include "dataset.h"
#include "model.h"
#include "prompt.h"
#include "tokevict.h"

#define BENCH_MAX_METHODS 32
#define BENCH_DEFAULT_METHODS "full,prefix,reuse,blend:0.05,blend:0.15,blend:0.3,epic"

/* One method on one question. */
struct bench_sample {
	double ttft;          /* seconds to the first token's logits */
	double load;          /* seconds of it reading (or computing) chunk caches */
	double speedup;       /* full's ttft / this ttft */
	double quality;       /* F1 (QA) or Rouge-L (summaries) of the answer */
	double exact_match;   /* 1 or 0 (QA), NAN for summaries */
	char *answer;         /* owned: the generated answer */
	bool first_agree;     /* its first token is full's */
	int steps, top1;      /* teacher-forced steps, and those whose argmax is full's */
	double kl;            /* sum of KL(full || this) over the steps */
	double decode_s;      /* seconds of single-token steps */
	int decode_n;         /* and their number */
	double recompute;     /* the recomputed share of the prompt, in [0, 1] */
	uint64_t kv_bytes;    /* .kvc bytes read from the store */
	int misses;           /* chunk caches not in the store when timed */
	long peak_kb;         /* peak RSS while it ran */
	double kv_kept;       /* share of the prompt's KV rows kept (1 unless evicted) */
	double evict_s;       /* seconds the token eviction took (after the first token) */
};

struct bench_method {
	char label[48];       /* as listed: "blend:0.15", "blend:0.15+snapkv:0.2", "full+kv4" */
	struct blend_opts bo;
	bool evict;           /* token eviction after the prompt's cache is built */
	struct tokevict_opts te; /* its policy (te.budget set per question) */
	double evict_share;   /* the budget: this share of the prompt's tokens, in (0, 1] */
	int kv_dtype;         /* >= 0: the prompt's cache written in this .kvc dtype and read
				 back before decoding ("full+kv4"); -1: kept as computed */
	bool listed;          /* shown (full always runs: it is the reference) */
	struct bench_sample *q; /* owned, [n_q]: per question */
};

/* One method over a set of questions. */
struct bench_summary {
	double ttft_p50, ttft_p90, load_p50; /* ms: median and p90 over the questions */
	double speedup;       /* median of full's TTFT / this TTFT */
	double decode_tps;    /* single-token steps per second (NAN: none) */
	double quality;       /* mean F1 or Rouge-L */
	double exact_match;   /* mean exact match (NAN for summaries) */
	double first;         /* share of questions whose first token is full's */
	double top1;          /* share of teacher-forced steps whose argmax is full's */
	double kl;            /* mean KL(full || this) per step */
	long steps;           /* teacher-forced steps */
	double recompute;     /* mean recomputed share of the prompt */
	double kv_mib;        /* .kvc MiB read per question */
	double rss_mib;       /* the largest peak RSS */
	int misses;           /* chunk caches missing from the store when timed */
	double kv_kept;       /* mean share of the prompt's KV rows kept after eviction (1: none) */
	double evict_ms;      /* median milliseconds of the token eviction (NAN: none) */
};

/* A set of questions, and every method summarized over them. */
struct bench_group {
	const char *kind;     /* NULL: every question; else their kind (the dataset's, or "none" for those without one) */
	int *qi;              /* owned, [n_q]: indices into bench_result.qs, in order */
	int n_q;
	double mean_tokens;   /* prompt tokens on average */
	struct bench_summary sum[BENCH_MAX_METHODS + 1]; /* per method, as bench_result.ms */
};

/* Methods from a comma-separated list (full, prefix, reuse, blend[:RATIO],
 * epic[:K]) into ms[BENCH_MAX_METHODS]; *n set. Each may be followed by
 * +POLICY:SHARE, token eviction of the built cache to SHARE of the prompt's
 * tokens (tokevict.h; "blend:0.15+snapkv:0.2"), and POLICY:SHARE alone means
 * full+POLICY:SHARE. KB_ERR_ARG with a message for a bad list. */
int bench_methods_parse(const char *list, struct bench_method *ms, int *n) KB_WUR;

enum bench_progress {
	BENCH_TICK, /* a step of many (chunk caches stored): worth showing only where it is overwritten in place */
	BENCH_STEP, /* the question and method now running */
	BENCH_DONE, /* a stage's summary, to keep */
};

struct bench_opts {
	const char *template;  /* template.h name */
	int max_passages;      /* the first N passages of each question (0: all) */
	int max_chunk_tokens;  /* each passage cut to N tokens (0: no cut) */
	int n_gen;             /* tokens generated after the first */
	int ctx;               /* questions whose prompt + n_gen + 1 do not fit are skipped (0: the model's) */
	struct chunkcache *cc; /* the store the chunk caches are put in and read from */
	/* progress: what is being done; may be NULL */
	void (*progress)(void *ctx, enum bench_progress kind, const char *msg);
	void *progress_ctx;
};

struct bench_question {
	struct prompt p;               /* head, passages, query */
	const struct dataset_item *it; /* not owned */
};

struct bench_result {
	const struct dataset *d;       /* not owned */
	struct bench_question *qs;     /* owned, [n_q]: the questions measured */
	int n_q;
	int n_skipped, max_skipped;    /* questions that did not fit the context, and the largest need */
	int n_ctx;                     /* the context they were measured against */
	double mean_tokens;            /* prompt tokens on average */
	int n_gen;
	struct bench_method ms[BENCH_MAX_METHODS + 1]; /* the listed methods, then full if not listed */
	int n_m, full;
	int n_chunks, warm_misses, warm_hits; /* chunk caches put in the store first */
	struct chunkcache_stats warm;  /* their counts (with similar chunks: bench_opts.cc's chunkcache_set_similar) */
	bool rss_per_method;           /* peak RSS could be reset before each method */
	/* owned, [n_groups]: groups[0] is every question; when the questions carry
	 * more than one kind (questions without one count as kind "none"), one
	 * group per kind follows, in byte order of the names */
	struct bench_group *groups;
	int n_groups;
};

/* Run the methods of ms[0..n_m) (as bench_methods_parse gives them) on every
 * question of d with model m into r (r->ms, r->n_m; full added, unlisted, when
 * not among them). When no question fits the context, KB_ERR_ARG naming the
 * sizes (r->n_skipped set). KB_OK or an error; bench_result_free(r) either way. */
int bench_run(const struct model *m, const struct dataset *d, const struct bench_method *ms, int n_m,
	      const struct bench_opts *o, struct bench_result *r) KB_WUR;
void bench_result_free(struct bench_result *r);

/* ---- output (bench_print.c) ----
 * The results as a table, as TSV, or as JSON; model and dataset are the paths
 * shown (their base names). KB_OK or KB_ERR_IO.
 * Table: a title line naming model and dataset, a header and a row per listed
 * method over every question; then, when split by kind, for each kind a line
 * "# kind NAME: N questions, T prompt tokens on average" and the same columns
 * over its questions. QA adds an EM column beside F1; summaries have Rouge-L.
 * TSV: a header, then a row per method over every question with "all" in the
 * last column (kind), then the rows of each kind with its name there; the
 * columns before exact_match and kind keep their places (exact_match is nan
 * for summaries).
 * JSON: one document: the run, "methods" (every question), "by_kind" ({kind:
 * [methods]}, only when split) and "per_question" (with each one's kind and
 * every method's answer and scores). */
int bench_print_table(FILE *f, const struct bench_result *r, const char *model, const char *dataset) KB_WUR;
int bench_print_tsv(FILE *f, const struct bench_result *r) KB_WUR;
int bench_print_json(FILE *f, const struct bench_result *r, const char *model, const char *dataset,
		     const char *template) KB_WUR;
/* Time to first token against top-1 agreement, one point per method, as SVG
 * (plot.h) into f. */
int bench_plot(FILE *f, const struct bench_result *r, const char *model, const char *dataset) KB_WUR;

#endif
