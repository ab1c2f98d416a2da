/* records.h — JSON Lines chunk records (kvblend-chunks(5)), read and written
 * with jansson. A record is one JSON object per line; tools add fields (kv,
 * score) and keep every field they do not know. */
#ifndef KB_RECORDS_H
#define KB_RECORDS_H

#include <jansson.h>
#include <stdio.h>

#include "util.h"

struct rec_reader {
	FILE *f;          /* not owned */
	const char *name; /* for messages ("<stdin>") */
	char *line;       /* owned buffer */
	size_t cap;
	long lineno;      /* of the last record read */
};

void rec_reader_init(struct rec_reader *r, FILE *f, const char *name);
void rec_reader_free(struct rec_reader *r);
/* The next record (blank lines skipped): KB_OK and *obj (a new reference, the
 * caller json_decref()s it), KB_EOF at the end, KB_ERR_FORMAT for a line that
 * is not a JSON object ("'<stdin>': line 3: not a JSON object: ..."), KB_ERR_IO. */
int rec_next(struct rec_reader *r, json_t **obj) KB_WUR;
/* The record's "text" (a string), or NULL; *len its length in bytes. */
const char *rec_text(const json_t *obj, size_t *len);
/* Write obj as one compact line (field order kept) and flush. KB_OK or KB_ERR_IO. */
int rec_write(FILE *f, const json_t *obj) KB_WUR;

#endif
