/* pdftext.h — PDF to text with poppler's pdftotext (Debian's poppler-utils).
 *
 * The PDF is written to a private temporary file ($TMPDIR, else /tmp; removed
 * at once, and by SIGINT, SIGTERM, SIGHUP) and pdftotext is run on it with an
 * argument vector (posix_spawnp: no shell, so no name is ever interpreted):
 *	pdftotext -enc UTF-8 -eol unix TMPFILE -
 * its output and its messages going to two more unlinked temporary files, so
 * neither pipe can fill up. pdftotext ends every page with a form feed; the
 * pages are kept apart by a blank line (a paragraph boundary) instead, and
 * where each starts is returned.
 */
#ifndef KB_PDFTEXT_H
#define KB_PDFTEXT_H

#include <stddef.h>

#include "util.h"

/* The text of the len bytes of PDF at data (name, for messages), with prog
 * (NULL: "pdftotext", looked up in PATH). KB_OK with *text (malloc()ed,
 * NUL-terminated, without NUL bytes), *len, *page_start (malloc()ed: where
 * page i + 1 starts in *text) and *n_pages (>= 1); KB_ERR_FORMAT when
 * pdftotext refuses the PDF (its first message quoted: "'a.pdf': pdftotext:
 * Syntax Error: Couldn't read xref table"); KB_ERR_IO when it cannot be run
 * ("'a.pdf': cannot run pdftotext (install poppler-utils): No such file or
 * directory") or a temporary file cannot be written; KB_ERR_NOMEM. */
int pdf_to_text(const char *name, const char *data, size_t len, const char *prog, char **text, size_t *tlen,
		size_t **page_start, size_t *n_pages) KB_WUR;

#endif
