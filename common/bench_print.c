/* bench_print.c — the output of the dataset benchmark (bench.h): the table,
 * TSV and JSON of a bench_result, and its plot. Everything here reads the
 * summaries bench_run computed (bench_result.groups): groups[0] over every
 * question, then one group per kind when the questions carry several. It
 * computes nothing of its own beyond formatting.
 */
#include "bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "plot.h"
#include "pool.h"

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static int written(FILE *f)
{
	return ferror(f) ? kb_fail(KB_ERR_IO, "write: %s", strerror(errno)) : KB_OK;
}

static enum dataset_task task_of(const struct bench_result *r)
{
	return r->d->items[0].task;
}

/* ---- the table ---- */

/* Does any listed method evict tokens? (Then the tables show what it kept.) */
static bool any_evict(const struct bench_result *r)
{
	for (int i = 0; i < r->n_m; i++)
		if (r->ms[i].listed && r->ms[i].evict)
			return true;
	return false;
}

/* The header and a row per listed method, summarized over group g. */
static void table_rows(FILE *f, const struct bench_result *r, const struct bench_group *g)
{
	const bool qa = task_of(r) == DATASET_QA, ev = any_evict(r);
	int w = 12;
	for (int i = 0; i < r->n_m; i++)
		w = r->ms[i].listed && (int)strlen(r->ms[i].label) > w ? (int)strlen(r->ms[i].label) : w;
	fprintf(f, "%-*s %9s %9s %8s %8s %10s %7s", w, "method", "TTFT ms", "p90 ms", "load ms", "speedup", "decode t/s",
		qa ? "F1" : "Rouge-L");
	if (qa)
		fprintf(f, " %6s", "EM");
	fprintf(f, " %9s %11s %9s %9s %8s %12s", "1st agree", "top-1 agree", "KL", "recompute", "KV MiB/q",
		"peak RSS MiB");
	if (ev)
		fprintf(f, " %7s %8s", "KV kept", "evict ms");
	fputc('\n', f);
	for (int i = 0; i < r->n_m; i++) {
		if (!r->ms[i].listed)
			continue;
		const struct bench_summary *s = &g->sum[i];
		fprintf(f, "%-*s %9.1f %9.1f %8.1f %7.2fx %10.1f %7.3f", w, r->ms[i].label, s->ttft_p50, s->ttft_p90,
			s->load_p50, s->speedup, s->decode_tps, s->quality);
		if (qa)
			fprintf(f, " %6.3f", s->exact_match);
		fprintf(f, " %9.3f %11.3f %9.5f %8.1f%% %8.2f %12.1f", s->first, s->top1, s->kl, 100 * s->recompute,
			s->kv_mib, s->rss_mib);
		if (ev)
			fprintf(f, " %6.1f%% %8.2f", 100 * s->kv_kept, s->evict_ms);
		fputc('\n', f);
	}
}

int bench_print_table(FILE *f, const struct bench_result *r, const char *model, const char *dataset)
{
	const struct dataset *d = r->d;
	fprintf(f, "# %s on %s (%s, %s): %d questions, %.0f prompt tokens on average, %d threads, %d tokens generated\n",
		base_name(model), base_name(dataset), d->name, dataset_task_name(task_of(r)), r->n_q,
		r->mean_tokens, kern_threads(), r->n_gen + 1);
	table_rows(f, r, &r->groups[0]);
	for (int g = 1; g < r->n_groups; g++) {
		const struct bench_group *gr = &r->groups[g];
		fprintf(f, "\n# kind %s: %d question%s, %.0f prompt tokens on average\n", gr->kind, gr->n_q,
			gr->n_q == 1 ? "" : "s", gr->mean_tokens);
		table_rows(f, r, gr);
	}
	return written(f);
}

/* ---- TSV ---- */

int bench_print_tsv(FILE *f, const struct bench_result *r)
{
	fprintf(f, "method\tmode\tratio\tttft_ms_median\tttft_ms_p90\tload_ms_median\tspeedup\tdecode_tps\tquality"
		   "\tfirst_token_agreement\ttop1_agreement\tkl\trecompute\tkv_mib_per_question\tpeak_rss_mib"
		   "\texact_match\tkind\tkv_kept\tevict_ms_median\n");
	for (int g = 0; g < r->n_groups; g++) {
		const struct bench_group *gr = &r->groups[g];
		for (int i = 0; i < r->n_m; i++) {
			const struct bench_method *me = &r->ms[i];
			if (!me->listed)
				continue;
			const struct bench_summary *s = &gr->sum[i];
			fprintf(f, "%s\t%s\t%g\t%.3f\t%.3f\t%.3f\t%.4f\t%.2f\t%.4f\t%.4f\t%.4f\t%.6g\t%.4f\t%.3f\t%.1f\t%.4f\t%s"
				   "\t%.4f\t%.3f\n",
				me->label, blend_mode_name(me->bo.mode), me->bo.mode == BLEND_BLEND ? me->bo.ratio : NAN,
				s->ttft_p50, s->ttft_p90, s->load_p50, s->speedup, s->decode_tps, s->quality, s->first, s->top1,
				s->kl, s->recompute, s->kv_mib, s->rss_mib, s->exact_match, gr->kind ? gr->kind : "all",
				s->kv_kept, s->evict_ms);
		}
	}
	return written(f);
}

/* ---- JSON ---- */

/* A number for JSON: null when it is not one. */
static json_t *jnum(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static json_t *json_method(const struct bench_method *me, const struct bench_group *g, const struct bench_summary *s,
			   enum dataset_task task)
{
	json_t *j = json_pack("{s:s, s:s}", "method", me->label, "mode", blend_mode_name(me->bo.mode));
	if (me->bo.mode == BLEND_BLEND)
		json_object_set_new(j, "ratio", json_real(round(me->bo.ratio * 1e6) / 1e6));
	if (me->bo.mode == BLEND_EPIC)
		json_object_set_new(j, "epic_k", json_integer(me->bo.epic_k));
	if (me->evict) {
		json_object_set_new(j, "evict", json_pack("{s:s, s:f}", "policy", tokevict_policy_name(me->te.policy),
							  "share", me->evict_share));
		json_object_set_new(j, "kv_kept", jnum(s->kv_kept));
		json_object_set_new(j, "evict_ms_median", jnum(s->evict_ms));
	}
	json_object_set_new(j, "questions", json_integer(g->n_q));
	json_object_set_new(j, "ttft_ms_median", jnum(s->ttft_p50));
	json_object_set_new(j, "ttft_ms_p90", jnum(s->ttft_p90));
	json_object_set_new(j, "load_ms_median", jnum(s->load_p50));
	json_object_set_new(j, "speedup", jnum(s->speedup));
	json_object_set_new(j, "decode_tps", jnum(s->decode_tps));
	json_object_set_new(j, task == DATASET_SUMMARY ? "rouge_l" : "f1", jnum(s->quality));
	if (task == DATASET_QA)
		json_object_set_new(j, "exact_match", jnum(s->exact_match));
	json_object_set_new(j, "first_token_agreement", jnum(s->first));
	json_object_set_new(j, "top1_agreement", jnum(s->top1));
	json_object_set_new(j, "kl", jnum(s->kl));
	json_object_set_new(j, "steps", json_integer(s->steps));
	json_object_set_new(j, "recompute", jnum(s->recompute));
	json_object_set_new(j, "kv_mib_per_question", jnum(s->kv_mib));
	json_object_set_new(j, "store_misses", json_integer(s->misses));
	json_object_set_new(j, "peak_rss_mib", jnum(s->rss_mib));
	return j;
}

/* The listed methods over group g, as a JSON list. */
static json_t *json_methods(const struct bench_result *r, const struct bench_group *g)
{
	json_t *a = json_array();
	for (int i = 0; i < r->n_m; i++)
		if (r->ms[i].listed)
			json_array_append_new(a, json_method(&r->ms[i], g, &g->sum[i], task_of(r)));
	return a;
}

static json_t *json_question(const struct bench_result *r, int qi, enum dataset_task task)
{
	const struct dataset_item *it = r->qs[qi].it;
	json_t *golds = json_array(), *res = json_object();
	for (int k = 0; k < it->n_answers; k++)
		json_array_append_new(golds, json_string(it->answers[k]));
	for (int i = 0; i < r->n_m; i++) {
		const struct bench_method *me = &r->ms[i];
		if (!me->listed)
			continue;
		const struct bench_sample *sm = &me->q[qi];
		json_t *m = json_pack("{s:o, s:s, s:o}", "ttft_ms", jnum(1e3 * sm->ttft), "answer", sm->answer,
				      task == DATASET_SUMMARY ? "rouge_l" : "f1", jnum(sm->quality));
		if (task == DATASET_QA)
			json_object_set_new(m, "exact_match", jnum(sm->exact_match));
		json_object_set_new(m, "first_token_agrees", json_boolean(sm->first_agree));
		json_object_set_new(res, me->label, m);
	}
	json_t *q = json_pack("{s:s, s:s}", "id", it->id, "question", it->question);
	if (it->kind)
		json_object_set_new(q, "kind", json_string(it->kind));
	json_object_set_new(q, "answers", golds);
	json_object_set_new(q, "passages", json_integer((int)r->qs[qi].p.n_segs - 2));
	json_object_set_new(q, "tokens", json_integer(r->qs[qi].p.n_tokens));
	json_object_set_new(q, "methods", res);
	return q;
}

int bench_print_json(FILE *f, const struct bench_result *r, const char *model, const char *dataset,
		     const char *template)
{
	const struct dataset *d = r->d;
	const enum dataset_task task = task_of(r);
	json_t *questions = json_array();
	for (int qi = 0; qi < r->n_q; qi++)
		json_array_append_new(questions, json_question(r, qi, task));
	json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:b, s:o}", "model",
				 base_name(model), "dataset", base_name(dataset), "name", d->name, "format",
				 dataset_format_name(d->format), "task", dataset_task_name(task), "questions", r->n_q,
				 "threads", kern_threads(), "n_gen", r->n_gen, "template", template, "rss_per_method",
				 r->rss_per_method, "methods", json_methods(r, &r->groups[0]));
	if (root && r->n_groups > 1) {
		json_t *by = json_object();
		for (int g = 1; g < r->n_groups; g++)
			json_object_set_new(by, r->groups[g].kind, json_methods(r, &r->groups[g]));
		json_object_set_new(root, "by_kind", by);
	}
	if (root)
		json_object_set_new(root, "per_question", questions);
	else
		json_decref(questions);
	int rc = root && json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) == 0
			 ? KB_OK : kb_fail(KB_ERR_IO, "cannot write the JSON output");
	json_decref(root);
	fputc('\n', f);
	return rc ? rc : written(f);
}

/* ---- the plot ---- */

static const char *method_color(enum blend_mode mode)
{
	switch (mode) {
	case BLEND_FULL: return "#222222";
	case BLEND_PREFIX: return "#8c6d31";
	case BLEND_REUSE: return "#d62728";
	case BLEND_EPIC: return "#2ca02c";
	default: return "#1f77b4";
	}
}

int bench_plot(FILE *f, const struct bench_result *r, const char *model, const char *dataset)
{
	struct plot_point pts[BENCH_MAX_METHODS + 1];
	int n = 0;
	for (int i = 0; i < r->n_m; i++) {
		if (!r->ms[i].listed)
			continue;
		const struct bench_summary *s = &r->groups[0].sum[i];
		pts[n++] = (struct plot_point){ .x = s->ttft_p50, .y = s->top1, .label = r->ms[i].label,
						.color = method_color(r->ms[i].bo.mode) };
	}
	char sub[512], foot[256];
	const int nt = kern_threads();
	snprintf(sub, sizeof sub, "%s on %s: %d question%s, %d thread%s", base_name(model), base_name(dataset), r->n_q,
		 r->n_q == 1 ? "" : "s", nt, nt == 1 ? "" : "s");
	snprintf(foot, sizeof foot, "agreement over the first token and %d teacher-forced steps; time to first token "
		 "includes reading the chunk caches from the store", r->n_gen);
	const struct plot p = {
		.title = "Time to first token vs fidelity to full prefill", .subtitle = sub, .footnote = foot,
		.xlabel = "time to first token, median over questions (ms)",
		.xlabel_log = "time to first token, median over questions (ms, log scale)",
		.ylabel = "top-1 agreement with full prefill", .y_top = 1, .pts = pts, .n = n,
	};
	return plot_write_svg(f, &p);
}
