/* records.c — see records.h. */
#include "records.h"

#include <errno.h>
#include <string.h>

#include "hash.h"
#include "kbio.h"

void rec_reader_init(struct rec_reader *r, FILE *f, const char *name)
{
	*r = (struct rec_reader){ .f = f, .name = name };
}

void rec_reader_free(struct rec_reader *r)
{
	free(r->line);
	r->line = NULL;
	r->cap = 0;
}

int rec_next(struct rec_reader *r, json_t **obj)
{
	for (;;) {
		errno = 0;
		ssize_t n = getline(&r->line, &r->cap, r->f);
		if (n < 0) {
			if (ferror(r->f))
				return kb_fail(KB_ERR_IO, "'%s': %s", r->name, strerror(errno ? errno : EIO));
			return KB_EOF;
		}
		r->lineno++;
		size_t i = 0;
		while (i < (size_t)n && (r->line[i] == ' ' || r->line[i] == '\t' || r->line[i] == '\r' ||
					 r->line[i] == '\n'))
			i++;
		if (i == (size_t)n)
			continue;
		json_error_t err;
		json_t *o = json_loadb(r->line, (size_t)n, JSON_REJECT_DUPLICATES, &err);
		if (!o && strstr(err.text, "\\u0000")) /* jansson refuses NUL in strings; so does the rule */
			return kb_fail(KB_ERR_FORMAT, "'%s': line %ld: a string holds \\u0000 (NUL)", r->name, r->lineno);
		if (!o)
			return kb_fail(KB_ERR_FORMAT, "'%s': line %ld: not JSON: %s", r->name, r->lineno, err.text);
		if (!json_is_object(o)) {
			json_decref(o);
			return kb_fail(KB_ERR_FORMAT, "'%s': line %ld: not a JSON object", r->name, r->lineno);
		}
		*obj = o;
		return KB_OK;
	}
}

const char *rec_text(const json_t *obj, size_t *len)
{
	const json_t *t = json_object_get(obj, "text");
	if (!json_is_string(t))
		return NULL;
	*len = json_string_length(t);
	return json_string_value(t);
}

/* ---- the rule ---- */

/* A string field: KB_OK when absent (and not required) or a string, non-empty
 * and free of NUL characters when asked. */
static int check_string(const json_t *rec, const char *key, bool required, bool nonempty)
{
	const json_t *v = json_object_get(rec, key);
	if (!v)
		return required ? kb_fail(KB_ERR_FORMAT, "the record has no \"%s\"", key) : KB_OK;
	if (!json_is_string(v))
		return kb_fail(KB_ERR_FORMAT, "the record's \"%s\" is not a string", key);
	if (!nonempty)
		return KB_OK;
	if (json_string_length(v) == 0)
		return kb_fail(KB_ERR_FORMAT, "the record's %s is empty", key);
	if (memchr(json_string_value(v), 0, json_string_length(v)))
		return kb_fail(KB_ERR_FORMAT, "the record's %s holds a NUL character", key);
	return KB_OK;
}

/* An integer field >= 0, or absent. */
static int check_count(const json_t *rec, const char *key)
{
	const json_t *v = json_object_get(rec, key);
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
		return kb_fail(KB_ERR_FORMAT, "the record's \"%s\" is not an integer >= 0", key);
	return KB_OK;
}

int rec_check(const json_t *rec, unsigned flags)
{
	int rc;
	if (!json_is_object(rec))
		return kb_fail(KB_ERR_FORMAT, "not a JSON object");
	if ((rc = check_string(rec, "text", flags & REC_TEXT, true)) || (rc = check_string(rec, "doc", false, false)) ||
	    (rc = check_string(rec, "title", false, false)))
		return rc;
	const json_t *id = json_object_get(rec, "id");
	if (id && (!json_is_string(id) || json_string_length(id) == 0))
		return kb_fail(KB_ERR_FORMAT, "the record's \"id\" is not a non-empty string");
	if (id && memchr(json_string_value(id), 0, json_string_length(id)))
		return kb_fail(KB_ERR_FORMAT, "the record's \"id\" holds a NUL character");
	static const char *const counts[] = { "seq", "start", "end", "tokens", "page", "last_page" };
	for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
		if ((rc = check_count(rec, counts[i])))
			return rc;
	const json_t *s = json_object_get(rec, "start"), *e = json_object_get(rec, "end");
	if (s && e && json_integer_value(s) > json_integer_value(e))
		return kb_fail(KB_ERR_FORMAT, "the record's \"start\" %lld is past its \"end\" %lld",
			       (long long)json_integer_value(s), (long long)json_integer_value(e));
	return KB_OK;
}

/* ---- the loop ---- */

/* Tell l's reporter the message recorded last, count it; KB_OK to go on, or
 * KB_ERR_FORMAT under REC_STRICT. */
static int bad(struct rec_loop *l)
{
	l->bad++;
	if (l->report)
		l->report(l->ctx, kb_error());
	return l->flags & REC_STRICT ? KB_ERR_FORMAT : KB_OK;
}

/* Prefix the message recorded last with the place of the record. */
static void at_place(const struct rec_where *at)
{
	char msg[400];
	snprintf(msg, sizeof msg, "%s", kb_error());
	kb_fail(KB_ERR_FORMAT, "'%s': line %ld: %s", at->name, at->lineno, msg);
}

/* The records of one open stream. */
static int loop_stream(struct rec_loop *l, FILE *f, const char *name)
{
	struct rec_reader r;
	rec_reader_init(&r, f, name);
	json_t *rec;
	int rc;
	while ((rc = rec_next(&r, &rec)) != KB_EOF) {
		if (rc == KB_ERR_FORMAT) {
			if ((rc = bad(l)))
				break;
			continue;
		}
		if (rc) { /* a read error ends this input */
			rc = bad(l);
			break;
		}
		struct rec_where at = { name, r.lineno };
		if ((rc = rec_check(rec, l->flags))) {
			json_decref(rec);
			at_place(&at);
			if ((rc = bad(l)))
				break;
			continue;
		}
		rc = l->each(l->ctx, rec, &at);
		if (rc == KB_OK) {
			l->records++;
		} else if (rc == KB_ERR_FORMAT) {
			at_place(&at);
			rc = bad(l);
		}
		if (rc)
			break;
	}
	rec_reader_free(&r);
	return rc == KB_EOF ? KB_OK : rc;
}

int rec_loop(struct rec_loop *l, int n, char *const *paths)
{
	char *const stdin_only[] = { "-" };
	if (n == 0)
		n = 1, paths = stdin_only;
	l->records = l->bad = 0;
	int rc = KB_OK;
	for (int i = 0; i < n && rc == KB_OK; i++) {
		FILE *f = kbio_fopen(paths[i]);
		if (!f) {
			rc = bad(l);
			continue;
		}
		rc = loop_stream(l, f, f == stdin ? "<stdin>" : paths[i]);
		kbio_fclose(f);
	}
	return rc;
}

/* ---- writing ---- */

int rec_write(FILE *f, const json_t *obj)
{
	if (json_dumpf(obj, f, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 || fputc('\n', f) == EOF ||
	    fflush(f) != 0)
		return kb_fail(KB_ERR_IO, "write: %s", strerror(errno));
	return KB_OK;
}

int rec_write_chunk(FILE *f, const struct rec_chunk *c)
{
	uint8_t h[32];
	char hex[65];
	sha256(c->text, c->len, h);
	hash_hex(h, sizeof h, hex);
	json_t *o = json_object(), *text = json_stringn(c->text, c->len), *doc = json_string(c->doc);
	int nomem = !o || !text || !doc;
	nomem |= json_object_set_new(o, "id", json_string(hex));
	nomem |= json_object_set_new(o, "doc", doc);
	nomem |= json_object_set_new(o, "seq", json_integer((json_int_t)c->seq));
	nomem |= json_object_set_new(o, "start", json_integer((json_int_t)c->start));
	nomem |= json_object_set_new(o, "end", json_integer((json_int_t)c->end));
	if (c->tokens >= 0)
		nomem |= json_object_set_new(o, "tokens", json_integer((json_int_t)c->tokens));
	if (c->title)
		nomem |= json_object_set_new(o, "title", json_string(c->title));
	if (c->page) {
		nomem |= json_object_set_new(o, "page", json_integer((json_int_t)c->page));
		nomem |= json_object_set_new(o, "last_page", json_integer((json_int_t)c->last_page));
	}
	nomem |= json_object_set_new(o, "text", text);
	int rc = KB_OK;
	if (nomem)
		rc = kb_fail(KB_ERR_NOMEM, "chunk %zu: cannot make its record (out of memory or invalid UTF-8)", c->seq);
	else if (rec_check(o, REC_TEXT)) {
		char why[256];
		snprintf(why, sizeof why, "%s", kb_error());
		rc = kb_fail(KB_ERR_FORMAT, "chunk %zu: %s", c->seq, why);
	}
	else if (json_dumpf(o, f, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 || fputc('\n', f) == EOF)
		rc = kb_fail(KB_ERR_IO, "write: %s", strerror(errno));
	json_decref(o);
	return rc;
}
