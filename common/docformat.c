/* docformat.c — see docformat.h. */
#include "docformat.h"

#include <errno.h>
#include <iconv.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#include "htmltext.h"
#include "pdftext.h"

#define SNIFF_BYTES 1024 /* how far into a document its kind is looked for */
#define MAX_LAYERS 3     /* compressions inside compressions undone at most */

const char *doc_format_name(enum doc_format f)
{
	switch (f) {
	case DOC_HTML: return "html";
	case DOC_PDF: return "pdf";
	default: return "text";
	}
}

void doc_free(struct doc *d)
{
	if (!d)
		return;
	free(d->text);
	free(d->title);
	free(d->page_start);
	*d = (struct doc){ 0 };
}

size_t doc_page_at(const struct doc *d, size_t off)
{
	if (!d->n_pages)
		return 0;
	size_t lo = 0, hi = d->n_pages; /* the last page that starts at or before off */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->page_start[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo + 1;
}

/* ---- compression ---- */

/* An output buffer that grows up to a limit. */
struct grow {
	char *v;      /* owned, malloc() */
	size_t n, cap;
	size_t max;   /* 0: no limit */
};

/* Room for at least one more byte (and the NUL after the end): KB_OK,
 * KB_ERR_FORMAT past the limit (no message), KB_ERR_NOMEM. */
static int grow_room(struct grow *g)
{
	if (g->max && g->n >= g->max)
		return KB_ERR_FORMAT;
	if (g->cap - g->n > 1)
		return KB_OK;
	size_t cap = g->cap ? g->cap : 1 << 16;
	if (cap > SIZE_MAX / 2)
		return KB_ERR_NOMEM;
	cap *= 2;
	if (g->max && cap > g->max + 1)
		cap = g->max + 1;
	char *v = realloc(g->v, cap);
	if (!v)
		return KB_ERR_NOMEM;
	g->v = v;
	g->cap = cap;
	return KB_OK;
}

/* How much of g's room a step may fill: what is left below the limit, less
 * one byte for the NUL. */
static size_t grow_avail(const struct grow *g)
{
	size_t room = g->cap - g->n - 1;
	if (g->max && room > g->max - g->n)
		room = g->max - g->n;
	return room;
}

/* The end of a conversion into g: on rc != KB_OK, g freed and rc; else the
 * NUL-terminated text handed to *out, *out_len (an empty one allocated too). */
static int grow_end(struct grow *g, int rc, char **out, size_t *out_len)
{
	if (rc || (!g->v && !(g->v = kb_malloc(1)))) {
		free(g->v);
		return rc ? rc : KB_ERR_NOMEM;
	}
	g->v[g->n] = '\0';
	*out = g->v;
	*out_len = g->n;
	return KB_OK;
}

static int too_big(const char *name, const char *what, size_t max)
{
	return kb_fail(KB_ERR_FORMAT, "'%s': %s: decompresses to more than %zu bytes (--max-doc-bytes)", name, what,
		       max);
}

static bool is_gzip(const unsigned char *p, size_t len)
{
	return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static bool is_zstd(const unsigned char *p, size_t len)
{
	return len >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd;
}

/* gzip: every member, one after the other, as gzip(1) reads them; zero bytes
 * after the last (tar pads so) are allowed, anything else is an error. */
static int gunzip(const char *name, const char *in, size_t len, size_t max, char **out, size_t *out_len)
{
	z_stream z = { 0 };
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return kb_fail(KB_ERR_NOMEM, "'%s': gzip: %s", name, z.msg ? z.msg : "cannot start zlib");
	struct grow g = { .max = max };
	size_t pos = 0;
	int rc = KB_OK, zr = Z_OK;
	for (;;) {
		if ((rc = grow_room(&g))) {
			rc = rc == KB_ERR_FORMAT ? too_big(name, "gzip", max) : kb_fail(rc, "'%s': out of memory", name);
			break;
		}
		size_t feed = len - pos < UINT_MAX ? len - pos : UINT_MAX;
		size_t room = grow_avail(&g);
		z.next_in = (Bytef *)(in + pos);
		z.avail_in = (uInt)feed;
		z.next_out = (Bytef *)(g.v + g.n);
		z.avail_out = (uInt)(room < UINT_MAX ? room : UINT_MAX);
		uInt out0 = z.avail_out;
		zr = inflate(&z, Z_NO_FLUSH);
		pos += feed - z.avail_in;
		g.n += out0 - z.avail_out;
		if (zr == Z_STREAM_END) {
			while (pos < len && in[pos] == 0)
				pos++;
			if (pos == len)
				break;
			if (!is_gzip((const unsigned char *)in + pos, len - pos)) {
				rc = kb_fail(KB_ERR_FORMAT, "'%s': gzip: data that is not gzip after the stream, at "
					     "byte %zu", name, pos);
				break;
			}
			inflateReset(&z); /* the next member */
			continue;
		}
		if (zr == Z_DATA_ERROR) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': gzip: corrupt data (%s)", name, z.msg ? z.msg : "bad data");
			break;
		}
		if (zr == Z_MEM_ERROR) {
			rc = kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
			break;
		}
		if (zr == Z_BUF_ERROR && pos == len && z.avail_out > 0) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': gzip: truncated (the data ends inside the stream)", name);
			break;
		}
	}
	inflateEnd(&z);
	return grow_end(&g, rc, out, out_len);
}

/* zstd: every frame (skippable ones skipped). */
static int unzstd(const char *name, const char *in, size_t len, size_t max, char **out, size_t *out_len)
{
	ZSTD_DCtx *z = ZSTD_createDCtx();
	if (!z)
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	struct grow g = { .max = max };
	ZSTD_inBuffer ib = { in, len, 0 };
	size_t left = 1; /* 0 when the last frame read is complete */
	int rc = KB_OK;
	while (ib.pos < ib.size || left) {
		if ((rc = grow_room(&g))) {
			rc = rc == KB_ERR_FORMAT ? too_big(name, "zstd", max) : kb_fail(rc, "'%s': out of memory", name);
			break;
		}
		ZSTD_outBuffer ob = { g.v + g.n, grow_avail(&g), 0 };
		size_t in0 = ib.pos;
		left = ZSTD_decompressStream(z, &ob, &ib);
		if (ZSTD_isError(left)) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': zstd: corrupt data (%s)", name, ZSTD_getErrorName(left));
			break;
		}
		g.n += ob.pos;
		if (left && ib.pos == ib.size && ib.pos == in0 && ob.pos == 0) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': zstd: truncated (the data ends inside a frame)", name);
			break;
		}
	}
	ZSTD_freeDCtx(z);
	return grow_end(&g, rc, out, out_len);
}

/* ---- telling the kind ---- */

/* The charset parameter of a content type, lowercase, in buf (empty: none). */
static void content_charset(const char *ct, char *buf, size_t size)
{
	buf[0] = '\0';
	const char *p = ct ? strcasestr(ct, "charset=") : NULL;
	if (!p)
		return;
	p += 8;
	if (*p == '"' || *p == '\'')
		p++;
	size_t i = 0;
	while (*p && *p != '"' && *p != '\'' && *p != ';' && *p != ' ' && *p != '\t' && i + 1 < size)
		buf[i++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p), p++;
	buf[i] = '\0';
}

/* The media type of a content type ("text/html; charset=x" -> "text/html")
 * is t (case-insensitively). */
static bool content_is(const char *ct, const char *t)
{
	size_t n = strlen(t);
	return ct && !strncasecmp(ct, t, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* name ends with ext (case-insensitively), once a compression suffix is off. */
static bool name_ends(const char *name, const char *ext)
{
	size_t n = strlen(name), e = strlen(ext);
	static const char *const packed[] = { ".gz", ".zst", ".zstd", ".Z" };
	for (size_t i = 0; i < sizeof packed / sizeof *packed; i++) {
		size_t k = strlen(packed[i]);
		if (n > k && !strcasecmp(name + n - k, packed[i])) {
			n -= k;
			break;
		}
	}
	return n >= e && !strncasecmp(name + n - e, ext, e);
}

/* Up to SNIFF_BYTES of the start of a document as ASCII: UTF-16 (after its
 * byte order mark) to its low bytes, so "<html" is found in either. */
static size_t sniff_prefix(const unsigned char *p, size_t len, char *buf)
{
	size_t n = 0;
	if (len >= 2 && ((p[0] == 0xff && p[1] == 0xfe) || (p[0] == 0xfe && p[1] == 0xff))) {
		int lo = p[0] == 0xff ? 0 : 1;
		for (size_t i = 2; i + 1 < len && n < SNIFF_BYTES; i += 2) {
			unsigned char c = p[i + lo], hi = p[i + 1 - lo];
			buf[n++] = hi ? '?' : (char)c;
		}
	} else {
		if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
			p += 3, len -= 3;
		for (size_t i = 0; i < len && n < SNIFF_BYTES; i++)
			buf[n++] = p[i] ? (char)p[i] : '?';
	}
	buf[n] = '\0';
	return n;
}

/* s starts an HTML document: a doctype or one of the elements a page starts
 * with, after white space, comments and an XML declaration; when strict, only
 * a doctype or <html> (a Markdown file may well start with a <p> or a <div>). */
static bool looks_html(const char *s, bool strict)
{
	static const char *const tags[] = { "html", "head", "body", "title", "meta", "link", "base", "style",
					    "script", "div", "p", "h1", "h2", "h3", "table", "section", "article",
					    "main", "header", "nav", "ul", "ol", "br", "a", "span", "form", "pre" };
	for (;;) {
		s += strspn(s, " \t\r\n\f");
		if (!strncmp(s, "<!--", 4)) {
			const char *e = strstr(s + 4, "-->");
			if (!e)
				return false;
			s = e + 3;
		} else if (!strncmp(s, "<?xml", 5)) {
			const char *e = strstr(s, "?>");
			if (!e)
				return false;
			s = e + 2;
		} else {
			break;
		}
	}
	if (!strncasecmp(s, "<!doctype html", 14))
		return true;
	if (*s++ != '<')
		return false;
	for (size_t i = 0; i < (strict ? 1 : sizeof tags / sizeof *tags); i++) {
		size_t n = strlen(tags[i]);
		if (!strncasecmp(s, tags[i], n) && strchr(" \t\r\n/>", s[n]) && s[n])
			return true;
	}
	return false;
}

/* ---- text in another charset ---- */

/* The len bytes at in, in charset cs, to UTF-8 (*out malloc()ed, NUL-terminated). */
static int to_utf8(const char *name, const char *cs, const char *in, size_t len, char **out, size_t *out_len)
{
	iconv_t cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': the charset '%s' is not known to iconv", name, cs);
	struct grow g = { 0 };
	char *ip = (char *)in;
	size_t il = len;
	int rc = KB_OK;
	for (;;) {
		if ((rc = grow_room(&g))) {
			rc = kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
			break;
		}
		char *op = g.v + g.n;
		size_t ol = grow_avail(&g), ol0 = ol;
		size_t r = il ? iconv(cd, &ip, &il, &op, &ol) : iconv(cd, NULL, NULL, &op, &ol);
		g.n += ol0 - ol;
		if (r != (size_t)-1 && !il)
			break;
		if (r == (size_t)-1 && errno == E2BIG)
			continue;
		if (r == (size_t)-1) { /* EILSEQ, EINVAL: not the charset said */
			rc = kb_fail(KB_ERR_FORMAT, "'%s': byte %zu is not %s", name, len - il, cs);
			break;
		}
	}
	iconv_close(cd);
	return grow_end(&g, rc, out, out_len);
}

static bool is_utf8_name(const char *cs)
{
	return !*cs || !strcmp(cs, "utf-8") || !strcmp(cs, "utf8") || !strcmp(cs, "us-ascii") || !strcmp(cs, "ascii");
}

/* ---- the whole ---- */

int doc_convert(const char *name, char *data, size_t len, const struct doc_opts *o, struct doc *d)
{
	*d = (struct doc){ 0 };
	const char *ct = o->content_type;
	int rc;
	for (int layer = 0;; layer++) {
		const unsigned char *u = (const unsigned char *)data;
		bool gz = is_gzip(u, len);
		if (!gz && !is_zstd(u, len))
			break;
		if (layer == MAX_LAYERS) {
			free(data);
			return kb_fail(KB_ERR_UNSUPPORTED, "'%s': compressed more than %d times over, not read", name,
				       MAX_LAYERS);
		}
		char *plain = NULL;
		size_t n = 0;
		rc = gz ? gunzip(name, data, len, o->max_bytes, &plain, &n)
			: unzstd(name, data, len, o->max_bytes, &plain, &n);
		free(data);
		if (rc)
			return rc;
		if (!d->packing)
			d->packing = gz ? "gzip" : "zstd";
		data = plain, len = n;
		if (content_is(ct, "application/gzip") || content_is(ct, "application/x-gzip") ||
		    content_is(ct, "application/zstd"))
			ct = NULL; /* the type was the packing's */
	}

	char head[SNIFF_BYTES + 1], cs[64];
	sniff_prefix((const unsigned char *)data, len, head);
	content_charset(ct, cs, sizeof cs);
	const char *pdf = memmem(data, len < SNIFF_BYTES ? len : SNIFF_BYTES, "%PDF-", 5);
	const unsigned char *u = (const unsigned char *)data;
	bool utf16 = len >= 2 && ((u[0] == 0xff && u[1] == 0xfe) || (u[0] == 0xfe && u[1] == 0xff));
	const char *lead = head + strspn(head, " \t\r\n\f");
	bool text_name = name_ends(name, ".md") || name_ends(name, ".markdown") || name_ends(name, ".txt") ||
			 name_ends(name, ".rst") || name_ends(name, ".text");

	if (pdf) {
		d->format = DOC_PDF;
		rc = pdf_to_text(name, data, len, o->pdftotext, &d->text, &d->len, &d->page_start, &d->n_pages);
		free(data);
		return rc;
	}
	if (content_is(ct, "text/html") || content_is(ct, "application/xhtml+xml") || looks_html(head, text_name) ||
	    ((name_ends(name, ".html") || name_ends(name, ".htm") || name_ends(name, ".xhtml")) && *lead == '<')) {
		d->format = DOC_HTML;
		rc = html_to_text(name, data, len, cs[0] ? cs : NULL, &d->text, &d->len, &d->title);
		free(data);
		return rc;
	}
	d->format = DOC_TEXT;
	if (utf16 || !is_utf8_name(cs)) { /* text in another charset: to UTF-8 */
		const char *from = utf16 ? (u[0] == 0xff ? "UTF-16LE" : "UTF-16BE") : cs;
		const char *body = utf16 ? data + 2 : data;
		rc = to_utf8(name, from, body, utf16 ? len - 2 : len, &d->text, &d->len);
		free(data);
		if (rc)
			return rc;
		data = d->text, len = d->len;
		d->text = NULL;
	}
	const char *nul = memchr(data, 0, len);
	if (nul) { /* records never hold NUL (kvblend-chunks(5)): such a document is not text */
		rc = kb_fail(KB_ERR_UNSUPPORTED, "'%s': binary data (a NUL byte at offset %zu), not text, HTML, PDF, "
			     "gzip or zstd", name, (size_t)(nul - data));
		free(data);
		return rc;
	}
	d->text = data;
	d->len = len;
	return KB_OK;
}
