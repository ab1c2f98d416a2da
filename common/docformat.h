/* docformat.h — documents as people have them, to the text kvblend chunks.
 *
 * The format is told by the bytes (the name and a URL's content type only
 * break ties), then the document is turned into UTF-8 text:
 *
 *   gzip, zstd  magic 1f 8b / 28 b5 2f fd: decompressed (zlib, libzstd; every
 *               member or frame), then told again (a .html.gz is HTML), at
 *               most max_bytes of output, and at most 3 layers deep
 *   PDF         "%PDF-" in the first 1024 bytes: pdftext.h (poppler's
 *               pdftotext), the pages' offsets kept
 *   HTML        a doctype, <html>, <head>, <body> or another HTML element first
 *               (after white space, comments and an XML declaration; for a
 *               name ending .md, .markdown, .txt, .rst or .text only a doctype
 *               or <html>), a UTF-16 byte order mark before one, a content
 *               type text/html or application/xhtml+xml, or a name ending
 *               .html, .htm or .xhtml with '<' first: htmltext.h (libxml2),
 *               the title kept
 *   text        anything else without a NUL byte: as it is (invalid UTF-8 is
 *               the chunker's to replace); a text content type with a
 *               charset other than UTF-8 or US-ASCII is converted (iconv)
 *   binary      anything else: KB_ERR_UNSUPPORTED, not converted
 *
 * Converted text has no NUL bytes (kvblend-chunks(5) records cannot hold one).
 */
#ifndef KB_DOCFORMAT_H
#define KB_DOCFORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

enum doc_format {
	DOC_TEXT = 0,
	DOC_HTML = 1,
	DOC_PDF = 2,
};

struct doc_opts {
	size_t max_bytes;         /* the largest decompressed document; 0: no limit */
	const char *content_type; /* a URL's Content-Type header, or NULL */
	const char *pdftotext;    /* the program run for PDF (pdftext.h); NULL: "pdftotext" */
};

struct doc {
	char *text;          /* owned, malloc(): len bytes of text, NUL-terminated */
	size_t len;
	char *title;         /* owned, malloc(), or NULL: an HTML page's <title>, UTF-8 */
	size_t *page_start;  /* owned, malloc(), or NULL: PDF only, where page i + 1 starts in text */
	size_t n_pages;
	enum doc_format format;
	const char *packing; /* "gzip", "zstd" (the outer layer), or NULL: static */
};

/* Turn the len bytes at data (taken: doc_convert frees them or keeps them as
 * d->text) of the document name (for messages and the extension) into text.
 * Returns KB_OK with *d (free with doc_free); KB_ERR_UNSUPPORTED for binary
 * data that is none of the formats ("'a.png': binary data (a NUL byte at
 * offset 11), not text, HTML, PDF, gzip or zstd"); KB_ERR_FORMAT for a
 * document that is corrupt or truncated ("'a.gz': gzip: the data ends before
 * the end of the stream"), or decompresses past max_bytes; KB_ERR_IO when
 * pdftotext cannot be run; KB_ERR_NOMEM. */
int doc_convert(const char *name, char *data, size_t len, const struct doc_opts *o, struct doc *d) KB_WUR;

/* The page (from 1) that holds byte off of d's text; 0 when d has no pages. */
size_t doc_page_at(const struct doc *d, size_t off);

/* The format's name: "text", "html", "pdf". */
const char *doc_format_name(enum doc_format f);

/* Frees what d owns and zeroes it; doc_free(NULL) is a no-op. */
void doc_free(struct doc *d);

#endif
