/* records.c — see records.h. */
#include "records.h"

#include <errno.h>
#include <string.h>

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

int rec_write(FILE *f, const json_t *obj)
{
	if (json_dumpf(obj, f, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 || fputc('\n', f) == EOF ||
	    fflush(f) != 0)
		return kb_fail(KB_ERR_IO, "write: %s", strerror(errno));
	return KB_OK;
}
