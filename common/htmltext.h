/* htmltext.h — HTML and XHTML to plain text, with libxml2's HTML parser.
 *
 * The page is parsed as a browser would (missing end tags implied, errors
 * recovered, no network), then its body is written out as text:
 *   - script, style, template, noscript, svg, iframe, object, canvas and the
 *     head (but for the title, kept apart) are dropped;
 *   - white space is collapsed as browsers do, except inside <pre>;
 *   - block elements (p, div, section, ul, table, blockquote, ...) are
 *     paragraphs: a blank line between them; li, dt, dd, tr, br end a line;
 *     table cells are separated by a space;
 *   - a heading <hN> becomes a Markdown ATX heading, a paragraph of its own
 *     starting with N '#' and a space, so chunk --by heading cuts at it.
 * The charset is the caller's (a URL's Content-Type), else the page's (a byte
 * order mark, <meta charset>), else UTF-8, and Latin-1 once the bytes are not
 * UTF-8 (as libxml2 decides).
 */
#ifndef KB_HTMLTEXT_H
#define KB_HTMLTEXT_H

#include <stddef.h>

#include "util.h"

/* The text of the len bytes of HTML at data (the page name, for messages).
 * encoding: a charset name ("iso-8859-1", "utf-16"), or NULL to detect it.
 * Returns KB_OK with *text (malloc()ed, NUL-terminated, valid UTF-8, without
 * NUL bytes, ending with one newline unless empty) and *len, and *title
 * (malloc()ed, white space collapsed, or NULL when the page has none or an
 * empty one); KB_ERR_FORMAT when libxml2 makes no document of it; or
 * KB_ERR_NOMEM. */
int html_to_text(const char *name, const char *data, size_t len, const char *encoding, char **text, size_t *tlen,
		 char **title) KB_WUR;

#endif
