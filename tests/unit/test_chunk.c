/* test_chunk — the chunker (common/chunk.c): the pieces of each level with no
 * budget (paragraphs, sentences with abbreviations, headings outside fences,
 * custom regexes, CRLF), greedy merging and splitting under a budget, windows
 * with overlap, min_tokens, invalid UTF-8 (U+FFFD, offsets into the original),
 * empty and white-space-only documents, pathological inputs in linear time,
 * random documents of tricky fragments (KVBLEND_SEED replays them),
 * and the invariants of chunk.h on slices of ../shared/data/text with every
 * tokenizer there is (stories260K and llama-spm: SentencePiece, gpt-2:
 * byte-level BPE, bert-bge: WordPiece, whose tokens are placed by search) and
 * with approximate tokens:
 *   - chunks are contiguous and cover the document (windows: they advance,
 *     overlap, and cover it);
 *   - each text is the document's bytes [start, end) with U+FFFD for invalid
 *     sequences, valid UTF-8 (so never cut inside a character);
 *   - tokens equals the count of the text alone, within the budget unless the
 *     chunk is one character. */
#include <stdbool.h>

#include "chunk.h"
#include "gguf.h"
#include "tap.h"
#include "tok.h"
#include "util.h"

/* ---- helpers ---- */

static struct tok *load_tok(const char *rel)
{
	const char *path = tap_shared(rel);
	struct gguf *g;
	struct tok *t;
	if (!path)
		return NULL;
	if (gguf_open(&g, path)) {
		diag("%s", kb_error());
		return NULL;
	}
	int rc = tok_load(&t, g);
	gguf_close(g);
	if (rc) {
		diag("%s", kb_error());
		return NULL;
	}
	return t;
}

static struct chunk_opts opts(enum chunk_by by, const struct tok *t, size_t max)
{
	return (struct chunk_opts){ .by = by, .tok = t, .max_tokens = max };
}

/* Run a chunker made from o on doc; NULL chunks on any error (reported). */
static const struct chunk *run_n(const struct chunk_opts *o, const char *doc, size_t len, size_t *n,
				 size_t *n_invalid, struct chunker **keep)
{
	struct chunker *c;
	const struct chunk *v;
	size_t inv;
	*n = 0;
	if (chunker_init(&c, o)) {
		diag("chunker_init: %s", kb_error());
		return NULL;
	}
	if (chunker_run(c, doc, len, &v, n, &inv)) {
		diag("chunker_run: %s", kb_error());
		chunker_free(c);
		return NULL;
	}
	if (n_invalid)
		*n_invalid = inv;
	*keep = c;
	return v ? v : (const struct chunk *)"";
}

/* The chunk texts of doc joined with '|'; "!error" when it fails. Static buffer. */
static const char *pieces(const struct chunk_opts *o, const char *doc)
{
	static char buf[8192];
	struct chunker *c = NULL;
	size_t n;
	const struct chunk *v = run_n(o, doc, strlen(doc), &n, NULL, &c);
	if (!v)
		return "!error";
	size_t k = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && k + v[i].len + 2 < sizeof buf; i++) {
		if (i)
			buf[k++] = '|';
		memcpy(buf + k, v[i].text, v[i].len);
		k += v[i].len;
	}
	buf[k] = '\0';
	chunker_free(c);
	return buf;
}

static bool same(const char *got, const char *want, const char *name)
{
	int r = ok(!strcmp(got, want), "%s", name);
	if (!r) {
		diag("got:  '%s'", got);
		diag("want: '%s'", want);
	}
	return r;
}

static size_t count(const struct tok *t, const char *s, size_t n)
{
	if (!t)
		return (n + 3) / 4;
	int32_t *ids;
	size_t k;
	if (tok_encode(t, s, n, false, false, &ids, &k))
		return (size_t)-1;
	free(ids);
	return k;
}

static bool has_content(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr(" \t\n\r\f\v", s[i]) || !s[i])
			return true;
	return false;
}

static bool one_char(const char *s, size_t n)
{
	return n >= 1 && n <= 4 && ((unsigned char)s[0] < 0x80 ? n == 1 : true) &&
	       (n == 1 || ((unsigned char)s[1] & 0xC0) == 0x80);
}

/* Every invariant of chunk.h; diag names the first that fails. */
static bool invariants(const struct chunk_opts *o, const char *doc, size_t len, const struct chunk *v, size_t n)
{
	bool window = o->by == CHUNK_BY_WINDOW;
	if (!has_content(doc, len)) {
		if (n)
			diag("%zu chunks for a document of white space", n);
		return n == 0;
	}
	if (n == 0 || v[0].start != 0 || v[n - 1].end != len) {
		diag("chunks do not span the document: %zu chunks, [%zu, %zu) of %zu", n, n ? v[0].start : 0,
		     n ? v[n - 1].end : 0, len);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct chunk *k = &v[i];
		if (k->start >= k->end || k->end > len) {
			diag("chunk %zu: bad range [%zu, %zu)", i, k->start, k->end);
			return false;
		}
		if (i && !window && k->start != v[i - 1].end) {
			diag("chunk %zu starts at %zu, the previous ended at %zu", i, k->start, v[i - 1].end);
			return false;
		}
		if (i && window && (k->start <= v[i - 1].start || k->start > v[i - 1].end || k->end <= v[i - 1].end)) {
			diag("window %zu [%zu, %zu) after [%zu, %zu)", i, k->start, k->end, v[i - 1].start, v[i - 1].end);
			return false;
		}
		size_t cl, inv;
		char *clean = chunk_utf8_clean(doc + k->start, k->end - k->start, &cl, NULL);
		bool textok = clean && cl == k->len && !memcmp(clean, k->text, cl);
		free(clean);
		if (!textok) {
			diag("chunk %zu: its text is not the document's bytes [%zu, %zu)", i, k->start, k->end);
			return false;
		}
		free(chunk_utf8_clean(k->text, k->len, NULL, &inv));
		if (inv) {
			diag("chunk %zu: invalid UTF-8 in its text", i);
			return false;
		}
		size_t t = count(o->tok, k->text, k->len);
		if (t != k->tokens) {
			diag("chunk %zu: %zu tokens recorded, %zu counted", i, k->tokens, t);
			return false;
		}
		if (o->max_tokens && t > o->max_tokens && !one_char(k->text, k->len)) {
			diag("chunk %zu: %zu tokens > %zu: '%.*s'", i, t, o->max_tokens, (int)k->len, k->text);
			return false;
		}
	}
	return true;
}

/* Chunk doc with o and check the invariants; the chunk count in *n. */
static bool check(const struct chunk_opts *o, const char *doc, size_t len, size_t *n_out)
{
	struct chunker *c = NULL;
	size_t n;
	const struct chunk *v = run_n(o, doc, len, &n, NULL, &c);
	bool r = v && invariants(o, doc, len, v, n);
	if (n_out)
		*n_out = n;
	chunker_free(c);
	return r;
}

static char *slurp(const char *rel, size_t *len)
{
	const char *p = tap_shared(rel);
	char *d;
	if (!p || kb_read_file(p, &d, len))
		return NULL;
	return d;
}

/* ---- the levels, no budget ---- */

static void test_paragraphs(void)
{
	struct chunk_opts o = opts(CHUNK_BY_PARAGRAPH, NULL, 0);
	same(pieces(&o, "One.\n\nTwo\nlines.\n\n\n  Three.  \n"), "One.\n\n|Two\nlines.\n\n\n|  Three.  \n",
	     "paragraph: blank lines end a piece, which keeps them");
	same(pieces(&o, "\n\n  \nA\n\nB\n \t\n\n"), "\n\n  \nA\n\n|B\n \t\n\n",
	     "paragraph: leading white space joins the first piece, trailing the last");
	same(pieces(&o, "a\n \t\f\nb"), "a\n \t\f\n|b", "paragraph: a line of spaces, tabs, FF is blank");
	same(pieces(&o, "para one\r\nline two\r\n\r\npara two\r\n"), "para one\r\nline two\r\n\r\n|para two\r\n",
	     "paragraph: CRLF line ends");
	same(pieces(&o, "a\r\rb\r\n\nc"), "a\r\r|b\r\n\n|c", "paragraph: lone CR, CRLF then LF");
	same(pieces(&o, "just one line"), "just one line", "paragraph: no boundary, one piece");
}

static void test_sentences(void)
{
	struct chunk_opts o = opts(CHUNK_BY_SENTENCE, NULL, 0);
	same(pieces(&o, "Mr. Smith met Dr. J. R. R. Tolkien at 3.5 p.m. on Monday. He paid $3.50 for it! "
			"Did he? Yes... \"Quite so.\" Then, e.g. Paris. It ended. and went on (see 2.) All done."),
	     "Mr. Smith met Dr. J. R. R. Tolkien at 3.5 p.m. on Monday. |He paid $3.50 for it! |Did he? |Yes... |"
	     "\"Quite so.\" |Then, e.g. Paris. |It ended. and went on (see 2.) |All done.",
	     "sentence: . ! ? ... and closing quotes end sentences; abbreviations, initials, decimals, "
	     "a lowercase next word do not");
	same(pieces(&o, "Steps:\n1. Open it.\n2. Close it.\nDone in 1999. Next"),
	     "Steps:\n1. Open it.\n|2. Close it.\n|Done in 1999. |Next",
	     "sentence: list numbers at a line start are not sentence ends, years are");
	same(pieces(&o, "So did I. Then we left."), "So did I. |Then we left.", "sentence: 'I.' ends a sentence");
	same(pieces(&o, "A title\n\nBody text.\r\nNext line."), "A title\n\n|Body text.\r\n|Next line.",
	     "sentence: paragraph breaks end sentences; CRLF is white space");
	same(pieces(&o, "日本語です。次の文！最後？"), "日本語です。|次の文！|最後？", "sentence: 。！？ need no space");
	same(pieces(&o, "Wait!!! Really?! Ok."), "Wait!!! |Really?! |Ok.", "sentence: runs of ! and ?");
}

static void test_headings(void)
{
	struct chunk_opts o = opts(CHUNK_BY_HEADING, NULL, 0);
	same(pieces(&o, "intro\n# A\ntext\n#hashtag\n####### seven\n   ## B\nmore\n    # code\n"
			"```sh\n# not a heading\n~~~\n# nor this\n```\n## C\nend\n"),
	     "intro\n|# A\ntext\n#hashtag\n####### seven\n|   ## B\nmore\n    # code\n"
	     "```sh\n# not a heading\n~~~\n# nor this\n```\n|## C\nend\n",
	     "heading: ATX headings start pieces; not #word, 7 #s, 4-space indents or fenced lines");
	same(pieces(&o, "# A\r\ntext\r\n#\r\n# B"), "# A\r\ntext\r\n|#\r\n|# B", "heading: CRLF, an empty heading");
	same(pieces(&o, "no headings at all\n\nat all"), "no headings at all\n\nat all", "heading: none, one piece");
}

static void test_regex(void)
{
	struct chunk_opts o = opts(CHUNK_BY_REGEX, NULL, 0);
	o.split = "^---$\\R?";
	same(pieces(&o, "a\n---\nb\r\n---\r\nc"), "a\n---\n|b\r\n---\r\n|c",
	     "regex: cut after each match; ^ and $ match at lines (CRLF too)");
	o.split = "(?=^Chapter )";
	same(pieces(&o, "pre\nChapter 1\nx\nChapter 2\ny"), "pre\n|Chapter 1\nx\n|Chapter 2\ny",
	     "regex: a lookahead starts pieces with the match");
	o.split = "(?=b)";
	same(pieces(&o, "abab"), "a|ba|b", "regex: empty matches advance");
	o.split = ";\\s*";
	same(pieces(&o, "x; y;z;  "), "x; |y;|z;  ", "regex: no piece of white space alone");
	o.split = "\\p{Lu}";
	same(pieces(&o, "éÉàÀ"), "éÉ|àÀ", "regex: UTF-8 and Unicode properties");

	struct chunker *c;
	o.split = "a(b";
	int rc = chunker_init(&c, &o);
	ok(rc == KB_ERR_ARG && strstr(kb_error(), "offset 3") && strstr(kb_error(), "a(b"),
	   "regex: a bad regex is KB_ERR_ARG naming it and the offset: %s", kb_error());
	o.split = "";
	ok(chunker_init(&c, &o) == KB_ERR_ARG, "regex: an empty regex is refused");
	o.split = "(a+)+$";
	o.max_tokens = 0;
	char doc[4096];
	memset(doc, 'a', sizeof doc - 2);
	doc[sizeof doc - 2] = 'b';
	doc[sizeof doc - 1] = '\0';
	if (chunker_init(&c, &o) == KB_OK) {
		const struct chunk *v;
		size_t n, inv;
		rc = chunker_run(c, doc, strlen(doc), &v, &n, &inv);
		ok(rc == KB_OK || rc == KB_ERR_ARG, "regex: catastrophic backtracking ends (%s)",
		   rc ? kb_error() : "no error");
		chunker_free(c);
	} else {
		ok(0, "regex: (a+)+$ compiles");
	}
}

/* ---- budgets ---- */

static void test_budget_merge(void)
{
	char doc[256] = "";
	for (int i = 0; i < 10; i++)
		strcat(doc, "aaaaaa\n\n"); // 8 bytes = 2 approximate tokens
	struct chunk_opts o = opts(CHUNK_BY_PARAGRAPH, NULL, 6);
	struct chunker *c = NULL;
	size_t n;
	const struct chunk *v = run_n(&o, doc, strlen(doc), &n, NULL, &c);
	ok(v && n == 4 && v[0].len == 24 && v[1].len == 24 && v[2].len == 24 && v[3].len == 8 &&
		   v[0].tokens == 6 && v[3].tokens == 2,
	   "merge: ten 2-token paragraphs under a budget of 6 make 3 + 3 + 3 + 1");
	ok(v && invariants(&o, doc, strlen(doc), v, n), "merge: invariants");
	chunker_free(c);

	// a paragraph over the budget is cut at sentences, those merged again
	const char *p = "First sentence here. Second one here. Third one.\n\nShort.";
	o.max_tokens = 11; // 44 bytes: sentences of 6, 5 and 3 tokens
	same(pieces(&o, p), "First sentence here. Second one here. |Third one.\n\n|Short.",
	     "split: a long paragraph at sentences, merged up to the budget; never across the split paragraph");
	o.max_tokens = 3; // 12 bytes
	same(pieces(&o, "Supercalifragilistic expialidocious"), "Supercalifra|gilistic |expialidocio|us",
	     "split: words, then tokens (4 bytes each without a model)");
	o.max_tokens = 2; // 8 bytes
	same(pieces(&o, "line one\nline two\nline three"), "line |one\n|line |two\n|line |three",
	     "split: lines, then words");

	// headings: sections are not merged; min_tokens merges the small ones
	const char *h = "# A\n# B\nxx\n# C\nThe third section is the longest one.\n";
	o = opts(CHUNK_BY_HEADING, NULL, 12);
	same(pieces(&o, h), "# A\n|# B\nxx\n|# C\nThe third section is the longest one.\n",
	     "heading: sections under the budget stay apart");
	o.min_tokens = 3;
	same(pieces(&o, h), "# A\n# B\nxx\n|# C\nThe third section is the longest one.\n",
	     "min_tokens: small sections merge when the result fits");
	o.min_tokens = 12;
	same(pieces(&o, h), "# A\n# B\nxx\n|# C\nThe third section is the longest one.\n",
	     "min_tokens: never over the budget");
}

static void test_windows(void)
{
	char doc[101];
	for (int i = 0; i < 100; i++)
		doc[i] = (char)('a' + i % 10);
	doc[100] = '\0';
	struct chunk_opts o = opts(CHUNK_BY_WINDOW, NULL, 5);
	o.overlap = 2;
	struct chunker *c = NULL;
	size_t n;
	const struct chunk *v = run_n(&o, doc, 100, &n, NULL, &c);
	bool good = v && n == 8;
	for (size_t i = 0; good && i < n; i++)
		good = v[i].start == 12 * i && v[i].end == (i + 1 < n ? 12 * i + 20 : 100);
	ok(good, "window: 5 approximate tokens (20 bytes), overlap 2 (8 bytes): [0,20) [12,32) ... [84,100)");
	chunker_free(c);

	o.overlap = 0;
	v = run_n(&o, doc, 100, &n, NULL, &c);
	ok(v && n == 5 && v[4].start == 80 && v[4].end == 100, "window: no overlap, 5 windows of 20 bytes");
	chunker_free(c);

	struct chunker *bad;
	o.overlap = 5;
	ok(chunker_init(&bad, &o) == KB_ERR_ARG, "window: overlap >= budget is refused: %s", kb_error());
	o = opts(CHUNK_BY_WINDOW, NULL, 0);
	ok(chunker_init(&bad, &o) == KB_ERR_ARG, "window: a budget of 0 is refused");
}

static void test_invalid_utf8(void)
{
	// \xff, \xe2\x82 (truncated), \xc0, \xaf, \xf0\x9f\x98 (truncated at the end): 5
	const char doc[] = "ab\xff" "cd\xe2\x82 ef.\n\nxyz\xc0\xaf end\xf0\x9f\x98";
	size_t len = sizeof doc - 1, n, inv;
	struct chunk_opts o = opts(CHUNK_BY_PARAGRAPH, NULL, 0);
	struct chunker *c = NULL;
	const struct chunk *v = run_n(&o, doc, len, &n, &inv, &c);
	ok(v && inv == 5, "invalid UTF-8: 5 sequences counted (%zu)", inv);
	ok(v && n == 2 && v[0].end == 13 && v[1].start == 13 && v[1].end == len,
	   "invalid UTF-8: offsets are those of the original bytes");
	ok(v && n == 2 && v[0].len == 16 && !memcmp(v[0].text, "ab\xEF\xBF\xBD" "cd\xEF\xBF\xBD ef.\n\n", 16),
	   "invalid UTF-8: each sequence is one U+FFFD in the text");
	ok(v && invariants(&o, doc, len, v, n), "invalid UTF-8: invariants");
	chunker_free(c);

	static const struct {
		const char *in, *out;
		size_t inv;
	} cases[] = {
		{ "\xe2\x82\xac", "\xe2\x82\xac", 0 },                       // € is valid
		{ "\xc0\xaf", "\xEF\xBF\xBD\xEF\xBF\xBD", 2 },                // overlong: two
		{ "\xed\xa0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 3 }, // a surrogate: three
		{ "\xf4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 4 }, // > U+10FFFF
		{ "a\xf0\x9f\x98" "b", "a\xEF\xBF\xBD" "b", 1 },              // truncated: one
		{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 0 },               // 😀
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t ol, k;
		char *s = chunk_utf8_clean(cases[i].in, strlen(cases[i].in), &ol, &k);
		ok(s && !strcmp(s, cases[i].out) && ol == strlen(cases[i].out) && k == cases[i].inv,
		   "chunk_utf8_clean case %zu: %zu replaced", i, k);
		free(s);
	}
}

static void test_empty(void)
{
	static const enum chunk_by modes[] = { CHUNK_BY_PARAGRAPH, CHUNK_BY_SENTENCE, CHUNK_BY_HEADING,
					       CHUNK_BY_REGEX, CHUNK_BY_WINDOW };
	for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
		struct chunk_opts o = opts(modes[i], NULL, 16);
		o.split = "x";
		size_t n1 = 1, n2 = 1;
		struct chunker *c1 = NULL, *c2 = NULL;
		const struct chunk *v1 = run_n(&o, "", 0, &n1, NULL, &c1);
		const struct chunk *v2 = run_n(&o, " \n\t\r\n\f", 6, &n2, NULL, &c2);
		ok(v1 && v2 && n1 == 0 && n2 == 0, "%s: no chunks for an empty or white-space document",
		   chunk_by_name(modes[i]));
		chunker_free(c1);
		chunker_free(c2);
	}
	enum chunk_by by;
	ok(chunk_by_parse("heading", &by) == KB_OK && by == CHUNK_BY_HEADING &&
		   !strcmp(chunk_by_name(CHUNK_BY_WINDOW), "window") && chunk_by_parse("para", &by) == KB_ERR_ARG,
	   "chunk_by_parse and chunk_by_name");
}

/* ---- UTF-8 under tiny budgets, every tokenizer ---- */

static void test_utf8_tiny(struct tok **toks, const char **names, size_t nt)
{
	const char *base = "héllo wörld. 日本語のテキストです。😀😀😀 naïve café ☕☕☕\n\nΚαλημέρα κόσμε! "
			   "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb x\xcc\x81y\n";
	char doc[1024] = "";
	for (int i = 0; i < 3; i++)
		strcat(doc, base);
	size_t len = strlen(doc);
	static const enum chunk_by modes[] = { CHUNK_BY_PARAGRAPH, CHUNK_BY_SENTENCE, CHUNK_BY_WINDOW };
	for (size_t ti = 0; ti < nt; ti++)
		for (size_t mi = 0; mi < 3; mi++) {
			bool all = true;
			for (size_t max = 1; max <= 5 && all; max++) {
				struct chunk_opts o = opts(modes[mi], toks[ti], max);
				all = check(&o, doc, len, NULL);
				if (!all)
					diag("budget %zu", max);
			}
			ok(all, "UTF-8 with budgets 1-5, %s, %s: never inside a character", names[ti],
			   chunk_by_name(modes[mi]));
		}
}

/* ---- the shared texts ---- */

static void test_texts(struct tok **toks, const char **names, size_t nt)
{
	static const char *files[] = {
		"debian-policy-4.6.2.0.txt", "gutenberg_pg11_alice_in_wonderland.txt",
		"gutenberg_pg1342_pride_and_prejudice.txt", "gutenberg_pg2701_moby_dick.txt",
		"jargon-file-4.4.7.txt", "rfc2616.txt", "tinyshakespeare.txt",
	};
	static const enum chunk_by modes[] = { CHUNK_BY_PARAGRAPH, CHUNK_BY_SENTENCE, CHUNK_BY_HEADING,
					       CHUNK_BY_WINDOW };
	for (size_t fi = 0; fi < sizeof files / sizeof *files; fi++) {
		char rel[128];
		size_t len;
		snprintf(rel, sizeof rel, "data/text/%s", files[fi]);
		char *d = slurp(rel, &len);
		if (!d) {
			ok(1, "# SKIP %s is absent", rel);
			continue;
		}
		// a slice that starts and ends at arbitrary bytes (maybe inside a character)
		size_t off = len / 3 + 1, sl = len - off < 20000 ? len - off : 20000;
		for (size_t ti = 0; ti < nt; ti++)
			for (size_t mi = 0; mi < sizeof modes / sizeof *modes; mi++) {
				static const size_t budgets[] = { 7, 64, 256 };
				bool all = true;
				size_t n[3] = { 0 };
				for (size_t bi = 0; bi < 3 && all; bi++) {
					struct chunk_opts o = opts(modes[mi], toks[ti], budgets[bi]);
					if (modes[mi] == CHUNK_BY_WINDOW)
						o.overlap = budgets[bi] / 4;
					all = check(&o, d + off, sl, &n[bi]);
				}
				ok(all && n[0] > n[1] && n[1] > n[2], "%s, %s, %s: invariants at budgets 7/64/256 (%zu/%zu/%zu chunks)",
				   files[fi], names[ti], chunk_by_name(modes[mi]), n[0], n[1], n[2]);
			}
		// the whole file, approximate tokens
		struct chunk_opts o = opts(CHUNK_BY_PARAGRAPH, NULL, 256);
		o.min_tokens = 32;
		ok(check(&o, d, len, NULL), "%s: the whole file, approximate tokens, min 32", files[fi]);
		free(d);
	}
}

/* ---- linear time ---- */

static void test_pathological(struct tok *t)
{
	size_t len = 1 << 20;
	char *d = malloc(len);
	static const char *fills[] = { "a", "\n", "!", ". ", " ", "ab " };
	for (size_t fi = 0; d && fi < sizeof fills / sizeof *fills; fi++) {
		size_t fl = strlen(fills[fi]);
		for (size_t i = 0; i < len; i++)
			d[i] = fills[fi][i % fl];
		d[0] = 'x'; // some content
		for (int ti = 0; ti < 2; ti++) {
			struct chunk_opts o = opts(CHUNK_BY_SENTENCE, ti ? t : NULL, 256);
			double t0 = kb_now();
			bool r = check(&o, d, len, NULL);
			double dt = kb_now() - t0;
			ok(r && dt < 30, "1 MiB of '%s'%s: chunked in %.2f s, invariants hold", fills[fi][0] == '\n' ? "\\n" : fills[fi],
			   ti ? " (stories260K)" : "", dt);
			if (!t)
				break;
		}
	}
	free(d);
}

/* ---- random documents ---- */

/* Documents made of tricky fragments (CRLF, lone CR, blank lines, headings,
 * fences, abbreviations, multi-byte and invalid UTF-8, NUL), random modes,
 * budgets, overlaps and min_tokens, random tokenizers: the invariants hold. */
static void test_random(struct tok **toks, size_t nt, int iters)
{
	static const char *frag[] = {
		"\r\n", "\n\n", ". ", "\xc3\xa9", "\xff", "# ", "```\n", "\xe6\x97\xa5\xe3\x80\x82", " ", "a", "Mr. ",
		"\n", "word", "\xe2\x82", "!", "\t", "\xf0\x9f\x98\x80", "\r", "X. ", "\n   \n", "1. ", "",
	};
	size_t nf = sizeof frag / sizeof *frag;
	char doc[4096];
	int bad = 0;
	for (int it = 0; it < iters; it++) {
		size_t len = 0, nfr = (size_t)tap_randf(0, 200);
		for (size_t k = 0; k < nfr; k++) {
			size_t f = (size_t)tap_randf(0, (float)nf), fl = f == nf - 1 ? 1 : strlen(frag[f]); // "" is a NUL
			if (f >= nf || len + fl >= sizeof doc)
				break;
			memcpy(doc + len, frag[f], fl);
			len += fl;
		}
		size_t ti = (size_t)tap_randf(0, (float)nt);
		struct chunk_opts o = opts((enum chunk_by)(int)tap_randf(0, 5), toks[ti < nt ? ti : 0],
					   (size_t)tap_randf(0, 40));
		o.split = "(?=X)|;";
		if (o.by == CHUNK_BY_WINDOW) {
			o.max_tokens += !o.max_tokens;
			o.overlap = (size_t)tap_randf(0, (float)o.max_tokens) % o.max_tokens;
		} else if (tap_randf(0, 1) < 0.3f) {
			o.min_tokens = (size_t)tap_randf(0, 10);
		}
		if (!check(&o, doc, len, NULL)) {
			diag("document %d: %s, budget %zu, overlap %zu, min %zu", it, chunk_by_name(o.by), o.max_tokens,
			     o.overlap, o.min_tokens);
			bad++;
		}
	}
	ok(bad == 0, "%d random documents: the invariants hold (%d failed)", iters, bad);
}

int main(void)
{
	test_paragraphs();
	test_sentences();
	test_headings();
	test_regex();
	test_budget_merge();
	test_windows();
	test_invalid_utf8();
	test_empty();

	static const char *rels[] = {
		"models/stories260Ktok512.gguf",
		"tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
		"tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf",
		"tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf",
	};
	struct tok *toks[5] = { NULL };
	const char *names[5] = { "approximate" };
	size_t nt = 1;
	for (size_t i = 0; i < sizeof rels / sizeof *rels; i++) {
		struct tok *t = load_tok(rels[i]);
		if (!t) {
			diag("%s is absent: not tested with it", rels[i]);
			continue;
		}
		toks[nt] = t;
		names[nt++] = strrchr(rels[i], '/') + 1;
	}
	test_utf8_tiny(toks, names, nt);
	test_texts(toks, names, nt);
	tap_seed();
	test_random(toks, nt, 600);
	test_pathological(toks[1]);
	for (size_t i = 1; i < nt; i++)
		tok_free(toks[i]);
	return done_testing();
}
