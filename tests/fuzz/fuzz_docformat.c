/* fuzz_docformat.c — fuzz target for the document formats of kvblend chunk
 * (common/docformat.c: gzip, zstd, sniffing, charsets; common/htmltext.c:
 * HTML through libxml2 to text; common/pdftext.c: pdftotext's pages), which
 * read whatever files and URLs users point chunk at.
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] docformat
 * standalone:  built by run.sh --replay with $CC + ASan/UBSan; `fuzz_docformat
 *              --write-seeds DIR` writes the seed corpus (HTML, XHTML, UTF-16
 *              HTML, text, gzip and zstd of them, a PDF):
 *              tests/fuzz/corpus/docformat/ was made by `tests/fuzz/run.sh --seeds docformat`.
 *
 * The input is a document's bytes, converted with a decompression limit of
 * 1 MiB and true(1) standing in for pdftotext (so a PDF costs a fork, not a
 * parse, and gives no text). It either converts — text NUL-terminated with no
 * NUL inside, pages in order and within the text, a title without NUL — or
 * fails with KB_ERR_FORMAT / KB_ERR_UNSUPPORTED / KB_ERR_NOMEM / KB_ERR_IO and
 * a message naming the document. Anything else (a crash, a sanitizer report,
 * an ASSERT) is a bug.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "docformat.h"
#include "util.h"

#define NAME "fuzz.doc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	struct doc_opts o = { .max_bytes = 1 << 20, .pdftotext = "true" };
	struct doc d;
	int rc = doc_convert(NAME, copy, size, &o, &d);
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_NOMEM || rc == KB_ERR_IO);
		ASSERT(strstr(kb_error(), NAME) != NULL);
		return 0;
	}
	ASSERT(d.text && d.text[d.len] == '\0' && !memchr(d.text, 0, d.len));
	ASSERT(!d.title || strlen(d.title) > 0);
	ASSERT(d.format == DOC_PDF ? d.n_pages >= 1 : d.n_pages == 0);
	for (size_t i = 0; i < d.n_pages; i++)
		ASSERT(d.page_start[i] <= d.len && (i == 0 || d.page_start[i] >= d.page_start[i - 1]));
	if (d.len)
		ASSERT(doc_page_at(&d, d.len - 1) <= d.n_pages);
	doc_free(&d);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_docformat"
#include <zlib.h>
#include <zstd.h>

#include "driver.h"

static const struct fuzz_text_seed seeds[] = {
	{ "page.html.seed",
	  "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title> A  page </title>\n"
	  "<style>p { color: red }</style><script>var s = \"<p>x</p>\";</script></head>\n"
	  "<body><h1>Head</h1><p>One <b>two</b>&amp;three.</p><div>a<br>b</div><ul><li>x</li><li>y</li></ul>\n"
	  "<table><tr><td>1</td><td>2</td></tr></table><pre>  kept\n  as is</pre><h6></h6></body></html>\n" },
	{ "xhtml.seed",
	  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" "
	  "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\">"
	  "<head><title>X</title></head><body><h2>Two</h2><p>Text<br />more</p><![CDATA[ data ]]></body></html>\n" },
	{ "latin1.html.seed", "<html><head><meta charset=\"iso-8859-1\"></head><body><p>Caf\xe9</p></body></html>" },
	{ "bare.html.seed", "<!-- c --><p>Cr\xe8me<p>second" },
	{ "text.seed", "Plain text.\n\nA second paragraph, caf\xc3\xa9.\n" },
	{ "pdf.seed", "%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n" },
	{ "pdf-cut.seed", "%PDF-1.4\n1 0 obj\n<< /Type /Cat" },
};

static int write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

/* text in gzip (two members when twice), zstd, and UTF-16 with a byte order mark */
static int write_seeds(const char *dir)
{
	int bad = fuzz_write_text_seeds(dir, seeds, sizeof seeds / sizeof *seeds);
	const char *html = seeds[0].text;
	size_t n = strlen(html);
	unsigned char buf[4096], *p = buf;
	for (int twice = 0; twice < 2; twice++) {
		z_stream z = { 0 };
		if (deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return 1;
		z.next_in = (Bytef *)html, z.avail_in = (uInt)n;
		z.next_out = p, z.avail_out = (uInt)(buf + sizeof buf - p);
		if (deflate(&z, Z_FINISH) != Z_STREAM_END)
			return 1;
		p += z.total_out;
		deflateEnd(&z);
	}
	bad |= write_bytes(dir, "page.html.gz.seed", buf, (size_t)(p - buf));
	size_t zn = ZSTD_compress(buf, sizeof buf, seeds[4].text, strlen(seeds[4].text), 3);
	if (ZSTD_isError(zn))
		return 1;
	bad |= write_bytes(dir, "text.zst.seed", buf, zn);
	const char *ascii = "<html><body><h3>UTF-16</h3><p>little-endian</p></body></html>";
	size_t k = 0;
	buf[k++] = 0xff, buf[k++] = 0xfe;
	for (const char *s = ascii; *s; s++)
		buf[k++] = (unsigned char)*s, buf[k++] = 0;
	bad |= write_bytes(dir, "utf16.html.seed", buf, k);
	return bad;
}

#endif
