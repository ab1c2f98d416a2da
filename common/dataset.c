/* dataset.c — see dataset.h. */
#include "dataset.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const format_names[] = {
	[DATASET_CACHEBLEND] = "cacheblend", [DATASET_IRCOT] = "ircot",
	[DATASET_LONGBENCH] = "longbench", [DATASET_SAMSUM] = "samsum",
};

const char *dataset_format_name(enum dataset_format f)
{
	return (unsigned)f < sizeof format_names / sizeof *format_names ? format_names[f] : "?";
}

const char *dataset_task_name(enum dataset_task t)
{
	return t == DATASET_SUMMARY ? "summary" : "qa";
}

/* ---- parsing state: where we are, for messages ---- */

struct parser {
	const char *name;  /* the file, for messages */
	bool lines;        /* JSON Lines (else an array) */
	long where;        /* line (JSON Lines) or index (array) of the record */
	struct dataset *d;
	int cap;
};

/* A format error at the current record: "'f': line 3: .ctxs[2]: what". */
__attribute__((format(printf, 3, 4))) static int bad(const struct parser *p, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (p->lines)
		return kb_fail(KB_ERR_FORMAT, "'%s': line %ld: %s%s%s", p->name, p->where, path ? path : "",
			       path ? ": " : "", msg);
	return kb_fail(KB_ERR_FORMAT, "'%s': .[%ld]%s: %s", p->name, p->where, path ? path : "", msg);
}

/* The string field key of obj (NULL with an error when missing or not a string;
 * "" for a missing one when optional). *out is malloc()ed. */
static int get_str(const struct parser *p, const json_t *obj, const char *path, const char *key, bool optional,
		   char **out)
{
	const json_t *v = json_object_get(obj, key);
	if (!v && !optional)
		return bad(p, path, "no \"%s\"", key);
	if (v && !json_is_string(v))
		return bad(p, path, "\"%s\" is not a string", key);
	*out = v ? kb_strndup(json_string_value(v), json_string_length(v)) : kb_strndup("", 0);
	return *out ? KB_OK : KB_ERR_NOMEM;
}

static void passage_free(struct dataset_passage *ps, int n)
{
	for (int i = 0; i < n; i++)
		free(ps[i].title), free(ps[i].text);
	free(ps);
}

static void item_free(struct dataset_item *it)
{
	free(it->id);
	free(it->kind);
	free(it->question);
	for (int i = 0; i < it->n_answers; i++)
		free(it->answers[i]);
	free(it->answers);
	passage_free(it->passages, it->n_passages);
	memset(it, 0, sizeof *it);
}

void dataset_free(struct dataset *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n_items; i++)
		item_free(&d->items[i]);
	free(d->items);
	free(d->name);
	free(d);
}

static int add_answer(struct dataset_item *it, const char *s, size_t n)
{
	char **a = kb_realloc_array(it->answers, (size_t)it->n_answers + 1, sizeof *a);
	if (!a)
		return KB_ERR_NOMEM;
	it->answers = a;
	if (!(a[it->n_answers] = kb_strndup(s, n)))
		return KB_ERR_NOMEM;
	it->n_answers++;
	return KB_OK;
}

/* Gold answers from v: a string, or a list of strings or of lists of strings. */
static int get_answers(const struct parser *p, const json_t *v, const char *key, struct dataset_item *it)
{
	char path[64];
	if (!v)
		return bad(p, NULL, "no \"%s\"", key);
	if (json_is_string(v))
		return add_answer(it, json_string_value(v), json_string_length(v));
	if (!json_is_array(v))
		return bad(p, NULL, "\"%s\" is not a string or a list", key);
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *a = json_array_get(v, i);
		snprintf(path, sizeof path, ".%s[%zu]", key, i);
		if (json_is_string(a)) {
			if (add_answer(it, json_string_value(a), json_string_length(a)))
				return KB_ERR_NOMEM;
			continue;
		}
		if (!json_is_array(a))
			return bad(p, path, "an answer is not a string or a list of strings");
		for (size_t j = 0; j < json_array_size(a); j++) {
			const json_t *b = json_array_get(a, j);
			if (!json_is_string(b))
				return bad(p, path, "element %zu is not a string", j);
			if (add_answer(it, json_string_value(b), json_string_length(b)))
				return KB_ERR_NOMEM;
		}
	}
	if (it->n_answers == 0)
		return bad(p, NULL, "\"%s\" is empty", key);
	return KB_OK;
}

/* Passages from an array of objects with a title (optional) and a text. */
static int get_passages(const struct parser *p, const json_t *obj, const char *key, const char *text_key,
			struct dataset_item *it)
{
	char path[64];
	const json_t *v = json_object_get(obj, key);
	if (!v)
		return bad(p, NULL, "no \"%s\"", key);
	if (!json_is_array(v))
		return bad(p, NULL, "\"%s\" is not a list", key);
	size_t n = json_array_size(v);
	if (n > (1u << 20))
		return bad(p, NULL, "\"%s\" has %zu passages", key, n);
	it->passages = kb_calloc(n ? n : 1, sizeof *it->passages);
	if (!it->passages)
		return KB_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *c = json_array_get(v, i);
		snprintf(path, sizeof path, ".%s[%zu]", key, i);
		if (!json_is_object(c))
			return bad(p, path, "not an object");
		struct dataset_passage *ps = &it->passages[i];
		it->n_passages = (int)i + 1;
		int rc = get_str(p, c, path, "title", true, &ps->title);
		if (rc == KB_OK)
			rc = get_str(p, c, path, text_key, false, &ps->text);
		if (rc)
			return rc;
	}
	return KB_OK;
}

static int get_id(const json_t *obj, const char *key, long index, struct dataset_item *it)
{
	const json_t *v = json_object_get(obj, key);
	char buf[32];
	if (json_is_string(v))
		it->id = kb_strndup(json_string_value(v), json_string_length(v));
	else {
		snprintf(buf, sizeof buf, "%ld", index);
		it->id = kb_strndup(buf, strlen(buf));
	}
	return it->id ? KB_OK : KB_ERR_NOMEM;
}

/* ---- the formats ---- */

/* The optional "kind": a label that bench prints in tables and TSV rows, so
 * one line of text, and not the name of its rows over every question. */
static int get_kind(const struct parser *p, const json_t *o, struct dataset_item *it)
{
	if (!json_object_get(o, "kind"))
		return KB_OK;
	int rc = get_str(p, o, NULL, "kind", false, &it->kind);
	if (rc)
		return rc;
	size_t n = strlen(it->kind);
	if (n == 0)
		return bad(p, NULL, "\"kind\" is empty");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)it->kind[i] < 0x20 || it->kind[i] == 0x7f)
			return bad(p, NULL, "\"kind\" has a control character");
	if (!strcmp(it->kind, "all"))
		return bad(p, NULL, "\"kind\" is \"all\", the name of every question in bench's results");
	return KB_OK;
}

static int parse_cacheblend(const struct parser *p, const json_t *o, struct dataset_item *it)
{
	int rc = get_str(p, o, NULL, "question", false, &it->question);
	if (rc == KB_OK && !*it->question)
		rc = bad(p, NULL, "\"question\" is empty");
	if (rc == KB_OK)
		rc = get_kind(p, o, it);
	if (rc == KB_OK)
		rc = get_answers(p, json_object_get(o, "answers"), "answers", it);
	if (rc == KB_OK)
		rc = get_passages(p, o, "ctxs", "text", it);
	return rc;
}

static int parse_ircot(const struct parser *p, const json_t *o, struct dataset_item *it)
{
	int rc = get_str(p, o, NULL, "question_text", false, &it->question);
	if (rc)
		return rc;
	if (!*it->question)
		return bad(p, NULL, "\"question_text\" is empty");
	const json_t *ao = json_object_get(o, "answers_objects");
	if (!json_is_array(ao))
		return bad(p, NULL, ao ? "\"answers_objects\" is not a list" : "no \"answers_objects\"");
	char path[64];
	for (size_t i = 0; i < json_array_size(ao); i++) {
		const json_t *a = json_array_get(ao, i), *spans = json_object_get(a, "spans");
		snprintf(path, sizeof path, ".answers_objects[%zu]", i);
		if (!json_is_object(a))
			return bad(p, path, "not an object");
		if (!json_is_array(spans))
			return bad(p, path, spans ? "\"spans\" is not a list" : "no \"spans\"");
		/* a span list is one answer written in pieces */
		size_t len = 0;
		for (size_t j = 0; j < json_array_size(spans); j++) {
			const json_t *s = json_array_get(spans, j);
			if (!json_is_string(s))
				return bad(p, path, ".spans[%zu] is not a string", j);
			len += json_string_length(s) + 1;
		}
		char *ans = kb_malloc(len + 1), *q = ans;
		if (!ans)
			return KB_ERR_NOMEM;
		for (size_t j = 0; j < json_array_size(spans); j++) {
			const json_t *s = json_array_get(spans, j);
			if (j)
				*q++ = ' ';
			memcpy(q, json_string_value(s), json_string_length(s));
			q += json_string_length(s);
		}
		*q = '\0';
		rc = add_answer(it, ans, (size_t)(q - ans));
		free(ans);
		if (rc)
			return rc;
	}
	if (it->n_answers == 0)
		return bad(p, NULL, "\"answers_objects\" is empty");
	return get_passages(p, o, "contexts", "paragraph_text", it);
}

/* LongBench's summary sets other than multi_news have prompts of their own. */
static bool longbench_summary(const char *set)
{
	return !strcmp(set, "multi_news") || !strcmp(set, "gov_report") || !strcmp(set, "qmsum") ||
	       !strcmp(set, "vcsum") || !strcmp(set, "samsum");
}

/* Where a "Passage N:\n" marker starts at s + i (at the start or after a newline). */
static bool passage_marker(const char *s, size_t n, size_t i)
{
	if (i > 0 && s[i - 1] != '\n')
		return false;
	if (n - i < 8 || memcmp(s + i, "Passage ", 8) != 0)
		return false;
	size_t j = i + 8;
	if (j >= n || !isdigit((unsigned char)s[j]))
		return false;
	while (j < n && isdigit((unsigned char)s[j]))
		j++;
	return n - j >= 2 && s[j] == ':' && s[j + 1] == '\n';
}

static int add_passage(struct dataset_item *it, const char *s, size_t n)
{
	struct dataset_passage *ps = kb_realloc_array(it->passages, (size_t)it->n_passages + 1, sizeof *ps);
	if (!ps)
		return KB_ERR_NOMEM;
	it->passages = ps;
	ps[it->n_passages] = (struct dataset_passage){ .title = kb_strndup("", 0), .text = kb_strndup(s, n) };
	it->n_passages++;
	return ps[it->n_passages - 1].title && ps[it->n_passages - 1].text ? KB_OK : KB_ERR_NOMEM;
}

static int parse_longbench(struct parser *p, const json_t *o, struct dataset_item *it)
{
	char *ctx = NULL, *set = NULL;
	int rc = get_str(p, o, NULL, "input", false, &it->question);
	if (rc == KB_OK)
		rc = get_str(p, o, NULL, "dataset", true, &set);
	if (rc == KB_OK)
		rc = get_answers(p, json_object_get(o, "answers"), "answers", it);
	if (rc == KB_OK)
		rc = get_str(p, o, NULL, "context", false, &ctx);
	if (rc)
		goto out;
	if (!*set) {
		free(set);
		set = kb_strndup("longbench", 9);
		if (!set) {
			rc = KB_ERR_NOMEM;
			goto out;
		}
	}
	if (!p->d->name)
		p->d->name = set, set = NULL;
	else if (strcmp(p->d->name, set) != 0) {
		rc = bad(p, NULL, "a record of LongBench's '%s' in a file of '%s'", set, p->d->name);
		goto out;
	}
	it->task = longbench_summary(p->d->name) ? DATASET_SUMMARY : DATASET_QA;
	if (it->task == DATASET_SUMMARY && strcmp(p->d->name, "multi_news") != 0) {
		rc = bad(p, NULL, "LongBench's '%s' is not supported (multi_news and the QA sets are)", p->d->name);
		goto out;
	}
	if (it->task == DATASET_QA && !*it->question) {
		rc = bad(p, NULL, "\"input\" is empty: no question");
		goto out;
	}
	/* cut the context before each "Passage N:" line; keep every byte */
	size_t n = strlen(ctx), start = 0;
	for (size_t i = 1; i <= n && rc == KB_OK; i++)
		if (i == n || passage_marker(ctx, n, i)) {
			if (i > start)
				rc = add_passage(it, ctx + start, i - start);
			start = i;
		}
out:
	free(ctx);
	free(set);
	return rc;
}

/* SAMSum: first every pair of the file, then the items. */
struct pair {
	char *id, *dialogue, *summary; /* owned */
};

static int parse_pair(const struct parser *p, const json_t *o, struct pair *pr)
{
	bool test = json_object_get(o, "dialogue") != NULL;
	int rc = get_str(p, o, NULL, "id", true, &pr->id);
	if (rc == KB_OK)
		rc = get_str(p, o, NULL, test ? "dialogue" : "context", false, &pr->dialogue);
	if (rc == KB_OK)
		rc = get_str(p, o, NULL, test ? "summary" : "response", false, &pr->summary);
	if (rc)
		return rc;
	/* the validation pairs keep their CRLFs */
	for (char *s = pr->dialogue, *q = s;; s++) {
		if (*s == '\r' && s[1] == '\n')
			continue;
		if (!(*q++ = *s))
			break;
	}
	return KB_OK;
}

static enum dataset_format detect(const json_t *o)
{
	if (json_object_get(o, "question_text") || json_object_get(o, "answers_objects"))
		return DATASET_IRCOT;
	if (json_object_get(o, "dialogue") || json_object_get(o, "response"))
		return DATASET_SAMSUM;
	if (json_object_get(o, "input") && json_object_get(o, "context"))
		return DATASET_LONGBENCH;
	return DATASET_CACHEBLEND;
}

static int samsum_items(const struct parser *p, struct dataset *d, struct pair *pairs, int n, int limit)
{
	if (n < 2)
		return kb_fail(KB_ERR_FORMAT, "'%s': one dialogue: SAMSum needs two or more (the others are its "
			       "few-shot examples)", p->name);
	int n_items = limit > 0 && limit < n ? limit : n;
	d->items = kb_calloc((size_t)n_items, sizeof *d->items);
	if (!d->items)
		return KB_ERR_NOMEM;
	for (int i = 0; i < n_items; i++) {
		struct dataset_item *it = &d->items[i];
		d->n_items = i + 1;
		it->task = DATASET_SUMMARY;
		char num[32];
		snprintf(num, sizeof num, "%d", i);
		const char *id = *pairs[i].id ? pairs[i].id : num;
		if (!(it->id = kb_strndup(id, strlen(id))) || !(it->question = kb_strndup(pairs[i].dialogue, strlen(pairs[i].dialogue))) ||
		    add_answer(it, pairs[i].summary, strlen(pairs[i].summary)))
			return KB_ERR_NOMEM;
		int shots = n - 1 < DATASET_SHOTS ? n - 1 : DATASET_SHOTS;
		for (int k = 1; k <= shots; k++) {
			const struct pair *e = &pairs[(i + k) % n];
			char *s;
			if (asprintf(&s, "Dialogue: %s\nSummary: %s", e->dialogue, e->summary) < 0)
				return KB_ERR_NOMEM;
			int rc = add_passage(it, s, strlen(s));
			free(s);
			if (rc)
				return rc;
		}
	}
	return KB_OK;
}

/* One record: the format is set by the first. */
static int add_record(struct parser *p, json_t *o, struct pair **pairs, int *n_pairs, int *cap_pairs)
{
	struct dataset *d = p->d;
	if (!json_is_object(o))
		return bad(p, NULL, "not a JSON object");
	enum dataset_format f = detect(o);
	if (d->n_items == 0 && *n_pairs == 0)
		d->format = f;
	else if (f != d->format)
		return bad(p, NULL, "a %s record in a %s file", dataset_format_name(f), dataset_format_name(d->format));
	if (f == DATASET_SAMSUM) {
		if (*n_pairs == *cap_pairs) {
			int cap = *cap_pairs ? 2 * *cap_pairs : 64;
			struct pair *np = kb_realloc_array(*pairs, (size_t)cap, sizeof *np);
			if (!np)
				return KB_ERR_NOMEM;
			*pairs = np, *cap_pairs = cap;
		}
		struct pair *pr = &(*pairs)[*n_pairs];
		*pr = (struct pair){ 0 };
		int rc = parse_pair(p, o, pr);
		if (rc) {
			free(pr->id), free(pr->dialogue), free(pr->summary);
			return rc;
		}
		(*n_pairs)++;
		return KB_OK;
	}
	if (d->n_items == p->cap) {
		int cap = p->cap ? 2 * p->cap : 64;
		struct dataset_item *ni = kb_realloc_array(d->items, (size_t)cap, sizeof *ni);
		if (!ni)
			return KB_ERR_NOMEM;
		d->items = ni, p->cap = cap;
	}
	struct dataset_item *it = &d->items[d->n_items++];
	memset(it, 0, sizeof *it);
	static const char *const id_keys[] = { [DATASET_CACHEBLEND] = "id", [DATASET_IRCOT] = "question_id",
					       [DATASET_LONGBENCH] = "_id", [DATASET_SAMSUM] = "id" };
	int rc = get_id(o, id_keys[f], d->n_items - 1, it);
	if (rc == KB_OK)
		rc = f == DATASET_CACHEBLEND ? parse_cacheblend(p, o, it)
		   : f == DATASET_IRCOT	     ? parse_ircot(p, o, it)
					     : parse_longbench(p, o, it);
	if (rc == KB_OK && it->n_passages == 0)
		rc = bad(p, NULL, "no passages");
	return rc;
}

int dataset_load_mem(struct dataset **out, const char *data, size_t len, const char *name, int limit)
{
	struct dataset *d = kb_calloc(1, sizeof *d);
	if (!d)
		return KB_ERR_NOMEM;
	struct parser p = { .name = name, .d = d };
	struct pair *pairs = NULL;
	int n_pairs = 0, cap_pairs = 0, rc = KB_OK;
	size_t i = 0;
	while (i < len && isspace((unsigned char)data[i]))
		i++;
	if (i == len) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': empty dataset", name);
		goto out;
	}
	json_error_t err;
	if (data[i] == '[') {
		/* a JSON array of records */
		json_t *a = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
		if (!a) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': line %d: not JSON: %s", name, err.line, err.text);
			goto out;
		}
		if (!json_is_array(a)) /* "[1] 2" cannot parse, but be sure */
			rc = kb_fail(KB_ERR_FORMAT, "'%s': not a JSON array", name);
		for (size_t k = 0; rc == KB_OK && k < json_array_size(a); k++) {
			if (limit > 0 && d->n_items >= limit)
				break;
			p.where = (long)k;
			rc = add_record(&p, json_array_get(a, k), &pairs, &n_pairs, &cap_pairs);
		}
		json_decref(a);
	} else {
		/* JSON Lines */
		p.lines = true;
		long line = 0;
		for (size_t s = 0; s < len && rc == KB_OK;) {
			const char *nl = memchr(data + s, '\n', len - s);
			size_t e = nl ? (size_t)(nl - data) : len;
			line++;
			size_t b = s;
			while (b < e && isspace((unsigned char)data[b]))
				b++;
			if (b < e) {
				if (limit > 0 && d->n_items >= limit)
					break;
				p.where = line;
				json_t *o = json_loadb(data + b, e - b, JSON_REJECT_DUPLICATES, &err);
				if (!o)
					rc = bad(&p, NULL, "not JSON: %s", err.text);
				else
					rc = add_record(&p, o, &pairs, &n_pairs, &cap_pairs);
				json_decref(o);
			}
			s = e + 1;
		}
	}
	if (rc == KB_OK && n_pairs > 0)
		rc = samsum_items(&p, d, pairs, n_pairs, limit);
	if (rc == KB_OK && d->n_items == 0)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': no records", name);
	if (rc == KB_OK && !d->name && !(d->name = kb_strndup(dataset_format_name(d->format), strlen(dataset_format_name(d->format)))))
		rc = KB_ERR_NOMEM;
out:
	for (int k = 0; k < n_pairs; k++)
		free(pairs[k].id), free(pairs[k].dialogue), free(pairs[k].summary);
	free(pairs);
	if (rc == KB_ERR_NOMEM)
		rc = kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	if (rc) {
		dataset_free(d);
		return rc;
	}
	*out = d;
	return KB_OK;
}

int dataset_load(struct dataset **out, const char *path, int limit)
{
	char *data;
	size_t len;
	int rc = kb_read_file(path, &data, &len);
	if (rc)
		return rc;
	rc = dataset_load_mem(out, data, len, strcmp(path, "-") ? path : "<stdin>", limit);
	free(data);
	return rc;
}

/* ---- prompts ---- */

static bool is_multi_news(const struct dataset *d, const struct dataset_item *it)
{
	return d->format == DATASET_LONGBENCH && it->task == DATASET_SUMMARY;
}

char *dataset_prefix(const struct dataset *d, const struct dataset_item *it)
{
	if (d->format == DATASET_SAMSUM)
		return kb_asprintf("Summarize the dialogue into a few short sentences. The following are some examples.\n\n");
	if (is_multi_news(d, it))
		return kb_asprintf("You are given several news passages. Write a one-page summary of all news. \n\nNews:\n");
	return kb_asprintf("Answer the question based on the given passages. Only give me the answer and do not output any "
		   "other words.\n\nThe following are given passages.\n");
}

char *dataset_chunk(const struct dataset *d, const struct dataset_item *it, int i)
{
	const struct dataset_passage *ps = &it->passages[i];
	if (d->format == DATASET_SAMSUM)
		return kb_asprintf("%s\n\n", ps->text);
	if (is_multi_news(d, it))
		return kb_asprintf("%s", ps->text);
	return kb_asprintf("%s\n\n%s\n\n", ps->title, ps->text);
}

char *dataset_query(const struct dataset *d, const struct dataset_item *it)
{
	if (d->format == DATASET_SAMSUM)
		return kb_asprintf("\n\nDialogue: %s\nSummary:", it->question);
	if (is_multi_news(d, it))
		return kb_asprintf("\n\nNow, write a one-page summary of all the news.\n\nSummary:");
	/* CacheBlend's normalize_question: a "?" at the end, the first letter lowered */
	const char *q = it->question;
	size_t n = strlen(q);
	char first[2] = { q[0] ? (char)tolower((unsigned char)q[0]) : 0, 0 };
	return kb_asprintf("\n\nAnswer the question based on the given passages. Answer the question within 5 words. "
		   "Do NOT repeat the question or output any other words. Question: %s%s%s\nAnswer:",
		   first, n ? q + 1 : "", n && q[n - 1] == '?' ? "" : "?");
}
