/* records.h — chunk records (kvblend-chunks(5)), both ways: the rule a record
 * must follow, the one loop every tool reads records with, and the writer of
 * chunk's records. A record is one JSON object per line (jansson); tools add
 * fields (kv, score) and keep every field they do not know.
 *
 * The rule (rec_check), the same for every reader and for chunk, the writer:
 *	text    a non-empty string without NUL characters (required where the
 *	        tool needs a text: REC_TEXT)
 *	id      a non-empty string without NUL characters
 *	doc     a string
 *	title   a string
 *	seq, start, end, tokens, page, last_page
 *	        integers >= 0, and start <= end when both are there
 * A field that is absent is not checked (except text with REC_TEXT); fields
 * not named here are kept as they are.
 *
 * The loop (rec_loop), like mblaze's blaze822_loop: records from the files
 * given as operands, or from stdin when there is none or one is "-"; each good
 * record goes to a callback, each bad one (not JSON, not an object, against
 * the rule) and each input that cannot be read is reported in one line
 *	'chunks.jsonl': line 3: the record's "seq" is not an integer >= 0
 * and skipped, or, with REC_STRICT, stops the loop.
 */
#ifndef KB_RECORDS_H
#define KB_RECORDS_H

#include <jansson.h>
#include <stdio.h>

#include "util.h"

enum {
	REC_TEXT = 1 << 0,   /* a record without "text" is bad */
	REC_STRICT = 1 << 1, /* stop at the first bad record or input */
};

/* KB_OK when rec follows the rule above (flags: REC_TEXT), else KB_ERR_FORMAT
 * and a message naming the field and what is wrong with it
 * ("the record's \"text\" is not a string"). */
int rec_check(const json_t *rec, unsigned flags) KB_WUR;

/* The record's "text" (a string), or NULL; *len its length in bytes. */
const char *rec_text(const json_t *obj, size_t *len);

/* ---- the loop ---- */

struct rec_where {
	const char *name; /* the input, as in messages: the path or "<stdin>" */
	long lineno;      /* of the record, from 1 */
};

/* Called with each good record: rec is a new reference, the callback's to
 * keep or json_decref(). Return KB_OK to go on; KB_ERR_FORMAT (after kb_fail)
 * to have the record reported and counted as bad, as the loop's own checks
 * are; anything else stops the loop, which returns it. */
typedef int (*rec_fn)(void *ctx, json_t *rec, const struct rec_where *at);
/* Told each bad record and each input that could not be read, as one line
 * without the tool's name ("'<stdin>': line 2: not JSON: ..."). */
typedef void (*rec_report_fn)(void *ctx, const char *msg);

struct rec_loop {
	unsigned flags;       /* REC_TEXT, REC_STRICT */
	rec_fn each;          /* required */
	rec_report_fn report; /* may be NULL (nothing told) */
	void *ctx;            /* for each and report */
	long records;         /* out: records each took (returned KB_OK for) */
	long bad;             /* out: bad records and unreadable inputs */
};

/* Read the records of the n inputs paths in order (n == 0: stdin; "-" is
 * stdin, which can be read once, see kbio.h) and hand each good one to
 * l->each. Returns KB_OK once every input was read, even when some records
 * were bad (l->bad says how many: a tool exits 1 then); with REC_STRICT,
 * KB_ERR_FORMAT at the first bad one; or the status that stopped each (the
 * message is each's). */
int rec_loop(struct rec_loop *l, int n, char *const *paths) KB_WUR;

/* ---- a single stream, read by hand (rec_loop is built on it) ---- */

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
 * is not a JSON object ("'<stdin>': line 3: not a JSON object: ..."), KB_ERR_IO.
 * The rule is not checked: see rec_check. */
int rec_next(struct rec_reader *r, json_t **obj) KB_WUR;

/* ---- writing ---- */

/* Write obj as one compact line (field order kept) and flush. KB_OK or KB_ERR_IO. */
int rec_write(FILE *f, const json_t *obj) KB_WUR;

/* One chunk, as kvblend-chunk writes it. */
struct rec_chunk {
	const char *doc;   /* the document's path or URL, valid UTF-8 */
	size_t seq;        /* the chunk's number in the document, from 0 */
	size_t start, end; /* its bytes in the document */
	long tokens;       /* its tokens under the model, or -1 when unknown */
	const char *title; /* the document's title (HTML's <title>), valid UTF-8, or NULL */
	size_t page, last_page; /* the pages (from 1) of its first and last byte, or 0: not paged */
	const char *text;  /* [len] bytes, valid UTF-8 */
	size_t len;
};

/* Write c as a record (id = SHA-256 of the text, doc, seq, start, end,
 * [tokens], [title], [page, last_page], text) on one line, without flushing. A chunk the rule refuses
 * (an empty text, one holding a NUL) is not written: KB_ERR_FORMAT, so no
 * tool ever writes what the readers reject. KB_OK, KB_ERR_FORMAT,
 * KB_ERR_NOMEM or KB_ERR_IO. */
int rec_write_chunk(FILE *f, const struct rec_chunk *c) KB_WUR;

#endif
