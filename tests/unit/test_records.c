/* test_records — the chunk-record rule, the record loop over files and stdin,
 * chunk's record writer (what it writes the loop reads back; what the rule
 * refuses it never writes), and kbio's "-" and peeking. No ../shared needed. */
#include <fcntl.h>
#include <sys/wait.h>

#include "kbio.h"
#include "records.h"
#include "tap.h"

static char path_buf[4200];

/* Write s to a new file in the test's directory; its path (static buffer). */
static const char *file_with(const char *name, const char *s, size_t n)
{
	snprintf(path_buf, sizeof path_buf, "%s/%s", tap_tmpdir(), name);
	FILE *f = fopen(path_buf, "wb");
	if (!f || fwrite(s, 1, n, f) != n || fclose(f)) {
		printf("Bail out! cannot write %s\n", path_buf);
		exit(1);
	}
	return path_buf;
}

/* rec_check on the JSON text js: the status, and the message in msg. */
static int check_json(const char *js, unsigned flags, char *msg, size_t cap)
{
	json_error_t err;
	json_t *o = json_loads(js, JSON_ALLOW_NUL, &err);
	if (!o) {
		snprintf(msg, cap, "bad test JSON: %s", err.text);
		return 99;
	}
	int rc = rec_check(o, flags);
	snprintf(msg, cap, "%s", rc ? kb_error() : "");
	json_decref(o);
	return rc;
}

static void test_rule(void)
{
	static const struct {
		const char *js;
		const char *want; /* a part of the message, or NULL: good */
	} cases[] = {
		{ "{\"id\":\"a\",\"doc\":\"d.txt\",\"seq\":0,\"start\":0,\"end\":4,\"tokens\":2,\"text\":\"abcd\"}", NULL },
		{ "{\"text\":\"x\",\"kv\":\"k\",\"score\":0.5,\"other\":[1]}", NULL },
		{ "{\"doc\":\"d\"}", "the record has no \"text\"" },
		{ "{\"text\":\"\"}", "the record's text is empty" },
		{ "{\"text\":7}", "the record's \"text\" is not a string" },
		{ "{\"text\":null}", "the record's \"text\" is not a string" },
		{ "{\"text\":\"a\\u0000b\"}", "the record's text holds a NUL character" },
		{ "{\"text\":\"x\",\"doc\":3}", "the record's \"doc\" is not a string" },
		{ "{\"text\":\"x\",\"seq\":-1}", "the record's \"seq\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"seq\":\"3\"}", "the record's \"seq\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"seq\":1.5}", "the record's \"seq\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"start\":true}", "the record's \"start\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"end\":{}}", "the record's \"end\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"tokens\":\"9\"}", "the record's \"tokens\" is not an integer >= 0" },
		{ "{\"text\":\"x\",\"start\":5,\"end\":2}", "the record's \"start\" 5 is past its \"end\" 2" },
		{ "{\"text\":\"x\",\"id\":\"\"}", "the record's \"id\" is not a non-empty string" },
		{ "{\"text\":\"x\",\"id\":3}", "the record's \"id\" is not a non-empty string" },
	};
	char msg[512];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = check_json(cases[i].js, REC_TEXT, msg, sizeof msg);
		if (!cases[i].want)
			ok(rc == KB_OK, "rule: %s is good (%s)", cases[i].js, msg);
		else
			ok(rc == KB_ERR_FORMAT && strstr(msg, cases[i].want), "rule: %s: '%s'", cases[i].js, msg);
	}
	ok(check_json("{\"query\":\"q\"}", 0, msg, sizeof msg) == KB_OK, "without REC_TEXT a record may lack text");
	ok(check_json("{\"query\":\"q\",\"text\":\"\"}", 0, msg, sizeof msg) == KB_ERR_FORMAT,
	   "... but a text that is there follows the rule");
}

/* The loop's callback for the tests: keep the texts and places, refuse "bad". */
struct seen {
	char texts[16][32];
	long lines[16];
	int n;
	char reports[8][256];
	int n_reports;
};

static int take(void *ctx, json_t *rec, const struct rec_where *at)
{
	struct seen *s = ctx;
	size_t len;
	const char *t = rec_text(rec, &len);
	int rc = KB_OK;
	if (strcmp(t, "bad") == 0)
		rc = kb_fail(KB_ERR_FORMAT, "the callback refuses it");
	else if (s->n < 16) {
		snprintf(s->texts[s->n], sizeof s->texts[0], "%s", t);
		s->lines[s->n++] = at->lineno;
	}
	json_decref(rec);
	return rc;
}

static void tell(void *ctx, const char *msg)
{
	struct seen *s = ctx;
	if (s->n_reports < 8)
		snprintf(s->reports[s->n_reports++], sizeof s->reports[0], "%s", msg);
}

static void test_loop(void)
{
	const char a[] = "{\"text\":\"one\"}\n\n  \nnot json\n{\"text\":\"two\",\"seq\":\"x\"}\n[1]\n{\"text\":\"bad\"}\n"
			 "{\"text\":\"three\"}";
	char pa[4200], pb[4200];
	snprintf(pa, sizeof pa, "%s", file_with("a.jsonl", a, sizeof a - 1));
	snprintf(pb, sizeof pb, "%s", file_with("b.jsonl", "{\"text\":\"four\"}\n", 16));
	char missing[4300];
	snprintf(missing, sizeof missing, "%s/missing.jsonl", tap_tmpdir());
	char *paths[] = { pa, missing, pb };
	struct seen s = { 0 };
	struct rec_loop l = { .flags = REC_TEXT, .each = take, .report = tell, .ctx = &s };
	int rc = rec_loop(&l, 3, paths);
	ok(rc == KB_OK, "loop: KB_OK although records are bad (%s)", rc ? kb_error() : "");
	ok(s.n == 3 && !strcmp(s.texts[0], "one") && !strcmp(s.texts[1], "three") && !strcmp(s.texts[2], "four"),
	   "loop: the good records in order, across files (%d)", s.n);
	ok(s.lines[0] == 1 && s.lines[1] == 8 && s.lines[2] == 1, "loop: their line numbers (%ld %ld %ld)", s.lines[0],
	   s.lines[1], s.lines[2]);
	ok(l.records == 3 && l.bad == 5, "loop: 3 taken, 5 bad (%ld, %ld)", l.records, l.bad);
	char want[5][4400];
	snprintf(want[0], sizeof want[0], "'%s': line 4: not JSON", pa);
	snprintf(want[1], sizeof want[1], "'%s': line 5: the record's \"seq\" is not an integer >= 0", pa);
	snprintf(want[2], sizeof want[2], "'%s': line 6: not a JSON object", pa);
	snprintf(want[3], sizeof want[3], "'%s': line 7: the callback refuses it", pa);
	snprintf(want[4], sizeof want[4], "'%s': No such file or directory", missing);
	for (int i = 0; i < 5; i++)
		ok(s.n_reports == 5 && !strncmp(s.reports[i], want[i], strlen(want[i])), "loop: report %d '%s'", i,
		   s.reports[i]);

	struct seen s3 = { 0 };
	char *nul[] = { (char *)file_with("nul.jsonl", "{\"text\":\"a\\u0000b\"}\n", 19) };
	struct rec_loop ln = { .flags = REC_TEXT, .each = take, .report = tell, .ctx = &s3 };
	ok(rec_loop(&ln, 1, nul) == KB_OK && ln.bad == 1 && strstr(s3.reports[0], "line 1: a string holds \\u0000 (NUL)"),
	   "loop: a \\u0000 is named ('%s')", s3.reports[0]);

	struct seen s2 = { 0 };
	struct rec_loop strict = { .flags = REC_TEXT | REC_STRICT, .each = take, .report = tell, .ctx = &s2 };
	rc = rec_loop(&strict, 1, paths);
	ok(rc == KB_ERR_FORMAT && s2.n == 1 && strict.bad == 1, "REC_STRICT: stops at the first bad record (%d, %d)", rc,
	   s2.n);
}

/* Run the loop on stdin holding s (a pipe), in a child; its exit status:
 * 10 + records taken, or 1 if a second "-" was not refused. */
static int loop_stdin_child(const char *s)
{
	int p[2];
	if (pipe(p))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[1]);
		dup2(p[0], STDIN_FILENO);
		struct seen st = { 0 };
		struct rec_loop l = { .flags = REC_TEXT, .each = take, .report = tell, .ctx = &st };
		char *dash[] = { "-" };
		if (rec_loop(&l, 0, NULL))
			_exit(2);
		if (rec_loop(&l, 1, dash) != KB_OK || l.bad != 1 || !strstr(st.reports[0], "stdin can be read only once"))
			_exit(1);
		_exit(10 + (int)st.n);
	}
	close(p[0]);
	if (write(p[1], s, strlen(s)) != (ssize_t)strlen(s))
		return -1;
	close(p[1]);
	int ws;
	waitpid(pid, &ws, 0);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

static void test_stdin(void)
{
	int st = loop_stdin_child("{\"text\":\"a\"}\n{\"text\":\"b\"}\n");
	ok(st == 12, "loop: no operand reads stdin; a second \"-\" is refused as used (%d)", st);
}

static void test_write(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/w.jsonl", tap_tmpdir());
	FILE *f = fopen(p, "w");
	struct rec_chunk c = { .doc = "d.txt", .seq = 2, .start = 10, .end = 14, .tokens = 3, .text = "héll", .len = 5 };
	int rc = rec_write_chunk(f, &c);
	c.tokens = -1, c.seq = 3, c.start = 14, c.end = 20, c.text = "x\0y", c.len = 3;
	int rc_nul = rec_write_chunk(f, &c);
	char msg_nul[256];
	snprintf(msg_nul, sizeof msg_nul, "%s", kb_error());
	c.text = "", c.len = 0;
	int rc_empty = rec_write_chunk(f, &c);
	c.text = "last", c.len = 4;
	int rc_last = rec_write_chunk(f, &c);
	fclose(f);
	ok(rc == KB_OK && rc_last == KB_OK, "write: good chunks written");
	ok(rc_nul == KB_ERR_FORMAT && strstr(msg_nul, "chunk 3: the record's text holds a NUL character"),
	   "write: a text holding NUL is refused ('%s')", msg_nul);
	ok(rc_empty == KB_ERR_FORMAT, "write: an empty text is refused");
	char *data;
	size_t len;
	if (kbio_read_file(p, &data, &len)) {
		ok(0, "read back: %s", kb_error());
		return;
	}
	const char *want = "{\"id\":\"";
	ok(!strncmp(data, want, strlen(want)) &&
		   strstr(data, "\",\"doc\":\"d.txt\",\"seq\":2,\"start\":10,\"end\":14,\"tokens\":3,\"text\":\"héll\"}\n") &&
		   strstr(data, "\"seq\":3,\"start\":14,\"end\":20,\"text\":\"last\"}\n"),
	   "write: fields in order, tokens only when known");
	free(data);
	struct seen s = { 0 };
	char *paths[] = { p };
	struct rec_loop l = { .flags = REC_TEXT, .each = take, .report = tell, .ctx = &s };
	ok(rec_loop(&l, 1, paths) == KB_OK && s.n == 2 && l.bad == 0, "write: what was written reads back by the rule");
}

static void test_kbio(void)
{
	const char text[] = "plain text, not a cache";
	const char *p = file_with("t.txt", text, sizeof text - 1);
	struct kbio *io;
	enum kbio_type t;
	const void *buf;
	size_t got;
	char *data;
	size_t len;
	int rc = kbio_open(&io, p);
	ok(rc == KB_OK && kbio_sniff(io, &t) == KB_OK && t == KBIO_OTHER, "kbio: text sniffed as other");
	ok(kbio_peek(io, 5, &buf, &got) == KB_OK && got == 5 && !memcmp(buf, "plain", 5), "kbio: peek 5");
	ok(kbio_read_all(io, &data, &len) == KB_OK && len == sizeof text - 1 && !strcmp(data, text),
	   "kbio: read_all from the first byte, peeked ones included");
	free(data);
	kbio_close(io);
	p = file_with("g.bin", "GGUF\3\0\0\0", 8);
	ok(kbio_open(&io, p) == KB_OK && kbio_sniff(io, &t) == KB_OK && t == KBIO_GGUF, "kbio: GGUF sniffed");
	kbio_close(io);
	p = file_with("e.bin", "", 0);
	ok(kbio_open(&io, p) == KB_OK && kbio_sniff(io, &t) == KB_OK && t == KBIO_EMPTY, "kbio: empty sniffed");
	kbio_close(io);
	rc = kbio_open(&io, tap_tmpdir());
	ok(rc == KB_ERR_IO && strstr(kb_error(), "Is a directory"), "kbio: a directory is refused (%s)", kb_error());
}

int main(void)
{
	test_rule();
	test_loop();
	test_stdin();
	test_write();
	test_kbio();
	return done_testing();
}
