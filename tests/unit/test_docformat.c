/* test_docformat — documents to text (docformat.h, htmltext.h) and the files
 * of a tree (doctree.h), on bytes made here: gzip of several members and
 * zstd of several frames, made with zlib and libzstd; the decompression limit
 * exactly at and one byte past the size; HTML edge cases (nested blocks,
 * empty headings, entities, a page of nothing); the page lookup; a tree's
 * order, globs and a symlink loop. PDF conversion needs pdftotext: see
 * tests/cli/chunk-formats.t. No ../shared needed. */
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include "docformat.h"
#include "doctree.h"
#include "htmltext.h"
#include "tap.h"

/* A malloc()ed copy of n bytes, as doc_convert takes them. */
static char *dup_bytes(const void *p, size_t n)
{
	char *v = malloc(n + 1);
	if (!v) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	memcpy(v, p, n);
	v[n] = '\0';
	return v;
}

/* gzip of s, appended to buf at *n. */
static void gzip_append(unsigned char *buf, size_t cap, size_t *n, const char *s)
{
	z_stream z = { 0 };
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		exit(1);
	z.next_in = (Bytef *)s, z.avail_in = (uInt)strlen(s);
	z.next_out = buf + *n, z.avail_out = (uInt)(cap - *n);
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		exit(1);
	*n += z.total_out;
	deflateEnd(&z);
}

static int convert(const void *p, size_t n, size_t max, struct doc *d)
{
	struct doc_opts o = { .max_bytes = max };
	return doc_convert("t.doc", dup_bytes(p, n), n, &o, d);
}

static void test_compressed(void)
{
	unsigned char buf[4096];
	size_t n = 0;
	gzip_append(buf, sizeof buf, &n, "one ");
	gzip_append(buf, sizeof buf, &n, "two ");
	gzip_append(buf, sizeof buf, &n, "three\n");
	struct doc d;
	int rc = convert(buf, n, 0, &d);
	ok(rc == KB_OK && d.len == 14 && !strcmp(d.text, "one two three\n") && d.format == DOC_TEXT &&
		   d.packing && !strcmp(d.packing, "gzip"),
	   "gzip: three members make one text");
	doc_free(&d);
	unsigned char pad[4200];
	memcpy(pad, buf, n);
	memset(pad + n, 0, 16);
	rc = convert(pad, n + 16, 0, &d);
	ok(rc == KB_OK && d.len == 14, "gzip: zero bytes after the last member are padding");
	doc_free(&d);
	memcpy(pad + n, "junk", 4);
	rc = convert(pad, n + 4, 0, &d);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "'t.doc': gzip: data that is not gzip after the stream"),
	   "gzip: other bytes after it are an error: %s", kb_error());
	rc = convert(buf, n, 14, &d);
	ok(rc == KB_OK && d.len == 14, "the limit: exactly the size passes");
	doc_free(&d);
	rc = convert(buf, n, 13, &d);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "decompresses to more than 13 bytes"),
	   "... one byte less fails: %s", kb_error());

	/* zstd: two frames, and a gzip inside (told again) */
	unsigned char z[4096];
	size_t a = ZSTD_compress(z, sizeof z, "left ", 5, 1);
	size_t b = ZSTD_compress(z + a, sizeof z - a, "right\n", 6, 1);
	rc = convert(z, a + b, 0, &d);
	ok(rc == KB_OK && !strcmp(d.text, "left right\n") && !strcmp(d.packing, "zstd"), "zstd: two frames");
	doc_free(&d);
	rc = convert(z, a + b - 1, 0, &d);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "zstd:"), "zstd: one byte short is an error: %s", kb_error());
	size_t c = ZSTD_compress(z, sizeof z, buf, n, 1);
	rc = convert(z, c, 0, &d);
	ok(rc == KB_OK && !strcmp(d.text, "one two three\n") && !strcmp(d.packing, "zstd"),
	   "gzip inside zstd: both undone, the outer packing named");
	doc_free(&d);
	rc = convert("plain\0text", 10, 0, &d);
	ok(rc == KB_ERR_UNSUPPORTED && strstr(kb_error(), "'t.doc': binary data (a NUL byte at offset 5)"),
	   "a NUL byte in no known format: binary: %s", kb_error());
	rc = convert("\xff\xfeh\0i\0\n\0", 8, 0, &d);
	ok(rc == KB_OK && !strcmp(d.text, "hi\n"), "UTF-16LE text with its byte order mark: to UTF-8");
	doc_free(&d);
	rc = convert("", 0, 0, &d);
	ok(rc == KB_OK && d.len == 0 && d.text && !d.text[0], "an empty document: empty text");
	doc_free(&d);
}

/* html_to_text on s: the text, or "ERR". */
static char got[4096];
static const char *html(const char *s, const char *enc, char **title)
{
	char *t, *ti;
	size_t n;
	if (html_to_text("t.html", s, strlen(s), enc, &t, &n, &ti))
		return "ERR";
	snprintf(got, sizeof got, "%s", t);
	free(t);
	if (title)
		*title = ti;
	else
		free(ti);
	return got;
}

static void test_html(void)
{
	char *title = NULL;
	ok(!strcmp(html("<div><div><p>a</p></div>b</div>", NULL, NULL), "a\n\nb\n"), "nested blocks: one blank line");
	ok(!strcmp(html("<h2></h2><p>x</p>", NULL, NULL), "x\n"), "an empty heading leaves no '#'");
	ok(!strcmp(html("<h3>A <i>b</i></h3>c", NULL, NULL), "### A b\n\nc\n"), "a heading with markup: one line");
	ok(!strcmp(html("<p>1 &lt; 2 &#x263A; &nbsp;x</p>", NULL, NULL), "1 < 2 \xe2\x98\xba \xc2\xa0x\n"),
	   "entities decoded; a no-break space is not white space");
	ok(!strcmp(html("<p>a<br><br>b</p>", NULL, NULL), "a\n\nb\n"), "two <br>: two line ends");
	ok(!strcmp(html("<html><head><title>T</title></head><body></body></html>", NULL, &title), "") && title &&
		   !strcmp(title, "T"),
	   "a page of nothing: no text, its title kept");
	free(title);
	title = NULL;
	ok(!strcmp(html("<title> </title><p>x", NULL, &title), "x\n") && !title, "a blank title is none");
	ok(!strcmp(html("<p>caf\xe9</p>", "iso-8859-1", NULL), "caf\xc3\xa9\n"), "the caller's charset");
	ok(!strcmp(html("<meta charset=utf-8><p>caf\xe9</p>", "latin1", NULL), "caf\xc3\xa9\n"),
	   "the caller's charset over the page's <meta>");
	ok(!strcmp(html("<p>x</p>", "no-such-charset", NULL), "x\n"), "an unknown charset: detected instead");
	ok(!strcmp(html("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", NULL, NULL), "a b\nc\n"),
	   "table cells: spaces; rows: lines");
}

static void test_pages(void)
{
	size_t starts[] = { 0, 10, 10, 25 };
	struct doc d = { .page_start = starts, .n_pages = 4, .len = 30 };
	ok(doc_page_at(&d, 0) == 1 && doc_page_at(&d, 9) == 1 && doc_page_at(&d, 10) == 3 &&
		   doc_page_at(&d, 24) == 3 && doc_page_at(&d, 25) == 4 && doc_page_at(&d, 29) == 4,
	   "doc_page_at: the last page starting at or before the byte (an empty page skipped)");
	struct doc none = { 0 };
	ok(doc_page_at(&none, 5) == 0, "no pages: 0");
}

struct seen {
	char list[1024];
	char report[1024];
};

static int each(void *ctx, const char *path, const char *rel)
{
	struct seen *s = ctx;
	(void)path;
	strncat(s->list, rel, sizeof s->list - strlen(s->list) - 2);
	strcat(s->list, " ");
	return KB_OK;
}

static void report(void *ctx, bool error, const char *msg)
{
	struct seen *s = ctx;
	snprintf(s->report + strlen(s->report), sizeof s->report - strlen(s->report), "%s%s|", error ? "E:" : "W:",
		 msg);
}

static void touch(const char *root, const char *rel)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	FILE *f = fopen(p, "w");
	if (!f || fclose(f))
		exit(1);
}

static void test_tree(void)
{
	char root[2048], p[4096];
	if (strlen(tap_tmpdir()) > 1000) {
		ok(0, "the test directory's name is too long");
		return;
	}
	snprintf(root, sizeof root, "%s/tree", tap_tmpdir());
	mkdir(root, 0755);
	snprintf(p, sizeof p, "%s/B", root), mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/a", root), mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/.hid", root), mkdir(p, 0755);
	touch(root, "B/x.md");
	touch(root, "a/y.txt");
	touch(root, "a/Z.txt");
	touch(root, "c.txt");
	touch(root, ".hid/h.txt");
	snprintf(p, sizeof p, "%s/a/loop", root);
	if (symlink("..", p))
		exit(1);
	struct seen s = { "", "" };
	struct doctree_opts o = { 0 };
	long errors = -1;
	int rc = doctree_walk(root, &o, each, report, &s, &errors);
	ok(rc == KB_OK && errors == 0 && !strcmp(s.list, "B/x.md a/Z.txt a/y.txt c.txt "),
	   "byte order, depth first, hidden names passed over: %s", s.list);
	char want[4200];
	snprintf(want, sizeof want, "W:'%s/a/loop': a symlink loop (back to '%s'), not followed|", root, root);
	ok(!strcmp(s.report, want), "the loop: a warning: %s", s.report);
	char *inc[] = { "*.txt" }, *exc[] = { "a/Z*", "B" };
	struct doctree_opts g = { inc, 1, exc, 2 };
	s = (struct seen){ "", "" };
	rc = doctree_walk(root, &g, each, NULL, &s, &errors);
	ok(rc == KB_OK && !strcmp(s.list, "a/y.txt c.txt "), "--include *.txt --exclude a/Z* --exclude B: %s", s.list);
	s = (struct seen){ "", "" };
	snprintf(p, sizeof p, "%s/none", root);
	rc = doctree_walk(p, &o, each, report, &s, &errors);
	ok(rc == KB_OK && errors == 1 && strstr(s.report, "/none': No such file or directory|") && s.report[0] == 'E',
	   "a root that is not there: one error: %s", s.report);
}

int main(void)
{
	test_compressed();
	test_html();
	test_pages();
	test_tree();
	return done_testing();
}
