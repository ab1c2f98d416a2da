/* test_remote.c — the remote tier's client (remote.h): URLs and their names,
 * ListObjectsV2 pages (good, paged, hostile), credentials kept out of every
 * message, and the requests against a real HTTP server on loopback
 * (tests/remote/faultserver.py, started here): PUT, HEAD, GET, ranged GET,
 * DELETE, 404; 500/503 retried, a dropped connection retried, a stall timed
 * out, a refused connection not retried and the remote then "down"; a
 * download resumed with Range after a dropped connection. Skipped (the
 * server part) when python3 is absent. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "remote.h"
#include "tap.h"

static int n_seen;
static char seen[8][80];
static uint64_t seen_size[8];
static double seen_mtime[8];

static int collect(void *ctx, const struct remote_object *o)
{
	(void)ctx;
	if (n_seen < 8) {
		snprintf(seen[n_seen], sizeof seen[n_seen], "%s", o->name);
		seen_size[n_seen] = o->size;
		seen_mtime[n_seen] = o->mtime;
	}
	n_seen++;
	return 0;
}

static int parse(const char *xml, const char *prefix, bool *more, char **next)
{
	n_seen = 0;
	return remote_parse_list(xml, strlen(xml), prefix, collect, NULL, more, next);
}

static void test_list_parse(void)
{
	bool more;
	char *next;
	const char *page =
		"<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Name>b</Name><Prefix>p/</Prefix><IsTruncated>true</IsTruncated>"
		"<Contents><Key>p/aa.kvc</Key><LastModified>2026-12-07T21:14:51.000Z</LastModified><Size>123</Size></Contents>"
		"<Contents><Key>p/b&amp;c.kvc</Key><Size>0</Size></Contents>"
		"<Contents><Key>other/x</Key><Size>5</Size></Contents>"
		"<NextContinuationToken>tok&#43;en/=</NextContinuationToken></ListBucketResult>";
	ok(parse(page, "p/", &more, &next) == KB_OK, "a listing page parses");
	ok(n_seen == 2 && !strcmp(seen[0], "aa.kvc") && seen_size[0] == 123 && !strcmp(seen[1], "b&c.kvc"),
	   "its objects under the prefix, names relative, entities decoded (%d: %s %s)", n_seen, seen[0], seen[1]);
	ok(seen_mtime[0] == 1796678091.0 && seen_mtime[1] == 0, "LastModified in unix seconds (%.0f)", seen_mtime[0]);
	ok(more && next && !strcmp(next, "tok+en/="), "truncated, with the continuation token decoded");
	free(next);

	const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
	ok(parse(last, "", &more, &next) == KB_OK && !more && !next && n_seen == 0, "an empty last page");

	static const char *const bad[] = {
		"<Error><Code>AccessDenied</Code></Error>",
		"<ListBucketResult><Contents><Key>a</Key><Size>1</Size></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999999</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a\001b</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a&#0;b</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>a&amp</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>abc",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int rc = parse(bad[i], "", &more, &next);
		ok(rc == KB_ERR_FORMAT && !next, "hostile listing %zu refused: %s", i, kb_error());
		free(next);
	}
	/* truncated at every length: never a crash, never an object past the cut */
	size_t n = strlen(page);
	int crashes = 0;
	for (size_t k = 0; k < n; k++) {
		char *cut = kb_strndup(page, k);
		ASSERT(cut);
		n_seen = 0;
		int rc = remote_parse_list(cut, k, "p/", collect, NULL, &more, &next);
		crashes += rc != KB_OK && rc != KB_ERR_FORMAT;
		free(next);
		free(cut);
	}
	ok(crashes == 0, "every truncation of a page parses or is refused");
}

static void test_urls(void)
{
	struct remote *r;
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
	int rc = remote_open(&r, "s3://my-bucket/some/prefix/", NULL);
	ok(rc == KB_OK && !strcmp(remote_name(r), "s3://my-bucket/some/prefix") && remote_is_s3(r),
	   "s3://BUCKET/PREFIX/ opens, named without the slash (%s)", r ? remote_name(r) : "");
	remote_close(r);
	ok(remote_open(&r, "s3://my-bucket", NULL) == KB_OK && !strcmp(remote_name(r), "s3://my-bucket"), "no prefix");
	remote_close(r);
	ok(remote_open(&r, "s3://ab", NULL) == KB_ERR_ARG, "a bucket name too short: %s", kb_error());
	ok(remote_open(&r, "s3://Upper", NULL) == KB_ERR_ARG, "a bucket name in capitals: %s", kb_error());
	ok(remote_open(&r, "s3://bucket/a b", NULL) == KB_ERR_ARG, "a prefix with a space: %s", kb_error());
	ok(remote_open(&r, "ftp://x/y", NULL) == KB_ERR_ARG, "another scheme: %s", kb_error());
	rc = remote_open(&r, "https://user:hunter22@example.org/c", NULL);
	ok(rc == KB_OK && !strcmp(remote_name(r), "https://example.org/c") && !remote_is_s3(r),
	   "an http remote is named without its user and password (%s)", r ? remote_name(r) : "");
	remote_close(r);
	ok(remote_open(&r, "https://user:hunter22@example.org/c?x=1", NULL) == KB_ERR_ARG &&
	   !strstr(kb_error(), "hunter22"), "a refused URL's message has no password: %s", kb_error());
	setenv("KVBLEND_REMOTE_TIMEOUT", "soon", 1);
	ok(remote_open(&r, "s3://my-bucket", NULL) == KB_ERR_ARG, "a malformed $KVBLEND_REMOTE_TIMEOUT: %s", kb_error());
	unsetenv("KVBLEND_REMOTE_TIMEOUT");
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	ok(remote_open(&r, "s3://my-bucket", NULL) == KB_ERR_ARG, "a key id without its secret: %s", kb_error());
	unsetenv("AWS_ACCESS_KEY_ID");
}

/* ---- against the server ---- */

static pid_t servers[2];
static char base[128], s3base[128];

static void stop_servers(void)
{
	for (int i = 0; i < 2; i++)
		if (servers[i] > 0) {
			kill(servers[i], SIGTERM);
			waitpid(servers[i], NULL, 0);
			servers[i] = 0;
		}
}

/* Start tests/remote/faultserver.py (with sigv4: "--sigv4", "KEYID:SECRET");
 * its URL into url. */
static bool start_server(int i, const char *sigv4, char *url, size_t cap)
{
	char portfile[4200];
	snprintf(portfile, sizeof portfile, "%s/port%d", tap_tmpdir(), i);
	const char *script = "tests/remote/faultserver.py";
	if (access(script, R_OK) != 0 || system("python3 -c 1 >/dev/null 2>&1") != 0)
		return false;
	if ((servers[i] = fork()) == 0) {
		execlp("python3", "python3", script, portfile, "60", sigv4 ? "--sigv4" : (char *)NULL, sigv4, (char *)NULL);
		_exit(127);
	}
	for (int t = 0; t < 500; t++) { /* up to 5 s */
		FILE *f = fopen(portfile, "r");
		int port;
		if (f && fscanf(f, "%d", &port) == 1) {
			fclose(f);
			snprintf(url, cap, "http://127.0.0.1:%d", port);
			return true;
		}
		if (f)
			fclose(f);
		usleep(10000);
	}
	return false;
}

/* POST body to the server's control path. */
static void control(const char *path, const char *body)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "curl -sf -X POST --data '%s' %s%s >/dev/null", body, base, path);
	ASSERT(system(cmd) == 0);
}

static int fd_of(const char *text)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "obj");
	ASSERT(fd >= 0 && kb_write_all(fd, text, strlen(text)) == KB_OK);
	return fd;
}

static bool fd_holds(int fd, const char *text)
{
	static char buf[32768];
	ssize_t n = pread(fd, buf, sizeof buf, 0);
	struct stat sb;
	return n == (ssize_t)strlen(text) && !memcmp(buf, text, (size_t)n) && fstat(fd, &sb) == 0 && sb.st_size == n;
}

static void test_server(void)
{
	struct remote *r;
	struct remote_opts o = { .timeout = 1, .retries = 2, .backoff = 0.01 };
	char url[200];
	snprintf(url, sizeof url, "%s/store", base);
	ok(remote_open(&r, url, &o) == KB_OK, "an http remote on loopback");
	const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
	int in = fd_of(text), out = fd_of("old contents, longer than the object ......");
	uint64_t size = 0;
	ok(remote_head(r, "aa.kvc", &size) == KB_EOF, "HEAD of an absent object: KB_EOF");
	ok(remote_get(r, "aa.kvc", out, &size) == KB_EOF, "GET of an absent object: KB_EOF");
	ok(remote_put(r, "aa.kvc", in) == KB_OK, "PUT");
	ok(remote_head(r, "aa.kvc", &size) == KB_OK && size == strlen(text), "HEAD gives its size (%llu)",
	   (unsigned long long)size);
	ok(remote_get(r, "aa.kvc", out, &size) == KB_OK && size == strlen(text) && fd_holds(out, text),
	   "GET writes the object over what the file held");
	char buf[16];
	size_t got;
	ok(remote_get_range(r, "aa.kvc", 10, 6, buf, &got) == KB_OK && got == 6 && !memcmp(buf, "abcdef", 6),
	   "a ranged GET");
	control("/_fault", "ignorerange 1");
	memset(buf, 0, sizeof buf);
	ok(remote_get_range(r, "aa.kvc", 0, 6, buf, &got) == KB_OK && got == 6 && !memcmp(buf, "012345", 6) && !buf[6],
	   "a server that answers a range from 0 with the whole object: the range kept, nothing past it written");
	control("/_fault", "ignorerange 1");
	ok(remote_get_range(r, "aa.kvc", 10, 6, buf, &got) == KB_ERR_IO, "from past 0: an error, %s", kb_error());
	ok(remote_put(r, "empty.kvc", fd_of("")) == KB_OK && remote_get(r, "empty.kvc", out, &size) == KB_OK && size == 0,
	   "an empty object goes and comes back empty");
	ok(remote_list(r, collect, NULL) == KB_ERR_UNSUPPORTED, "an http remote cannot be listed: %s", kb_error());

	control("/_fault", "503 2");
	uint64_t retries0 = remote_stats(r)->retries;
	ok(remote_get(r, "aa.kvc", out, &size) == KB_OK && fd_holds(out, text) && remote_stats(r)->retries == retries0 + 2,
	   "two 503s are retried, the third try gets it");
	control("/_fault", "500 3");
	ok(remote_get(r, "aa.kvc", out, &size) == KB_ERR_IO && strstr(kb_error(), "HTTP 500") && strstr(kb_error(), "3 tries") &&
	   !remote_down(r), "500 on every try: an error after 3 tries (%s), the remote not down", kb_error());
	control("/_fault", "drop 1");
	ok(remote_get(r, "aa.kvc", out, &size) == KB_OK && fd_holds(out, text), "a connection dropped mid-body is retried from the start");
	control("/_fault", "short 3");
	ok(remote_get(r, "aa.kvc", out, &size) == KB_ERR_IO, "a body shorter than its Content-Length on every try is an error: %s",
	   kb_error());
	control("/_fault", "stall 3");
	double t0 = kb_now();
	ok(remote_get(r, "aa.kvc", out, &size) == KB_ERR_IO && strstr(kb_error(), "timed out") && remote_down(r),
	   "a stalled server times out on every try and the remote is down: %s", kb_error());
	diag("3 stalled tries took %.1f s", kb_now() - t0);
	remote_close(r);

	ok(remote_open(&r, url, &o) == KB_OK && remote_delete(r, "aa.kvc") == KB_OK && remote_head(r, "aa.kvc", NULL) == KB_EOF,
	   "DELETE");
	ok(remote_delete(r, "aa.kvc") == KB_EOF, "DELETE of an absent object: KB_EOF");
	ok(remote_head(r, "../x", NULL) == KB_ERR_ARG, "an object name outside the prefix is refused");
	remote_close(r);

	/* a download resumed after a dropped connection */
	char big[20000];
	for (size_t i = 0; i < sizeof big - 1; i++)
		big[i] = (char)('a' + i % 23);
	big[sizeof big - 1] = '\0';
	int bigfd = fd_of(big);
	ok(remote_open(&r, url, &o) == KB_OK && remote_put(r, "model.gguf", bigfd) == KB_OK, "a file to download");
	remote_close(r);
	char murl[240];
	snprintf(murl, sizeof murl, "%s/store/model.gguf", base);
	int part = fd_of("");
	uint64_t have = 0, total = 0;
	struct remote_opts no_retry = { .timeout = 1, .retries = 0, .backoff = 0 };
	control("/_fault", "drop 1");
	ok(remote_download(murl, part, &have, &total, &no_retry, NULL, NULL) == KB_ERR_IO, "a download cut off: %s", kb_error());
	struct stat sb;
	ASSERT(fstat(part, &sb) == 0);
	have = (uint64_t)sb.st_size;
	ok(have > 0 && have < strlen(big), "part of it kept (%llu bytes)", (unsigned long long)have);
	ok(remote_download(murl, part, &have, &total, &no_retry, NULL, NULL) == KB_OK && total == strlen(big) &&
	   have == total && fd_holds(part, big), "resumed with Range: the whole file");
	control("/_fault", "ignorerange 1");
	ASSERT(ftruncate(part, 100) == 0);
	have = 100;
	ok(remote_download(murl, part, &have, &total, &no_retry, NULL, NULL) == KB_OK && fd_holds(part, big),
	   "a server that ignores Range: started again from 0, the whole file");
	control("/_fault", "drop 1");
	ASSERT(ftruncate(part, 0) == 0);
	have = 0;
	ok(remote_download(murl, part, &have, &total, &o, NULL, NULL) == KB_OK && fd_holds(part, big),
	   "with retries, a drop is resumed within one call");

	/* credentials never in a message */
	char s3url[200];
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1); /* nothing listens there */
	setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrSECRETKEY", 1);
	setenv("AWS_SESSION_TOKEN", "SESSIONTOKEN123", 1);
	snprintf(s3url, sizeof s3url, "s3://kvb-bucket/p");
	ok(remote_open(&r, s3url, &o) == KB_OK, "an s3 remote with credentials");
	int rc = remote_head(r, "aa.kvc", NULL);
	ok(rc == KB_ERR_IO && remote_down(r) && !strstr(kb_error(), "SECRET") && !strstr(kb_error(), "TOKEN123"),
	   "a refused connection: not retried, down, no credential in the message: %s", kb_error());
	ok(remote_stats(r)->requests == 1, "one request, no retries of a refused connection");
	remote_close(r);
	snprintf(url, sizeof url, "http://me:pw-hunter22@127.0.0.1:1/x");
	ok(remote_open(&r, url, &o) == KB_OK && remote_head(r, "a.kvc", NULL) == KB_ERR_IO && !strstr(kb_error(), "hunter22"),
	   "nor a URL's password: %s", kb_error());
	remote_close(r);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	close(in), close(out), close(bigfd), close(part);
}

/* S3 requests signed by libcurl (SigV4) against a server that checks the
 * signatures with its own code: every method, the listing (paged), a session
 * token, a wrong secret refused. */
static void test_s3_signed(void)
{
	struct remote *r;
	struct remote_opts o = { .timeout = 2, .retries = 1, .backoff = 0.01 };
	setenv("AWS_ENDPOINT_URL", s3base, 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDKVBTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "sekrit/Key+42", 1);
	setenv("AWS_REGION", "eu-west-3", 1);
	setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzE+token/==", 1);
	ok(remote_open(&r, "s3://kvb-bucket/team/kv", &o) == KB_OK, "an s3 remote on the signature-checking server");
	const char *text = "a cache's bytes, signed";
	int in = fd_of(text), out = fd_of("");
	uint64_t size = 0;
	int rc = remote_put(r, "aa.kvc", in);
	ok(rc == KB_OK, "a signed PUT is accepted (the body's SHA-256 signed): %s", rc ? kb_error() : "ok");
	rc = remote_head(r, "aa.kvc", &size);
	ok(rc == KB_OK && size == strlen(text), "a signed HEAD: %s", rc ? kb_error() : "ok");
	rc = remote_get(r, "aa.kvc", out, &size);
	ok(rc == KB_OK && fd_holds(out, text), "a signed GET: %s", rc ? kb_error() : "ok");
	char buf[8];
	size_t got;
	rc = remote_get_range(r, "aa.kvc", 2, 5, buf, &got);
	ok(rc == KB_OK && got == 5 && !memcmp(buf, "cache", 5), "a signed ranged GET: %s", rc ? kb_error() : "ok");
	ok(remote_head(r, "none.kvc", NULL) == KB_EOF, "an absent object: KB_EOF");
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "b%d.kvc", i);
		ASSERT(remote_put(r, name, in) == KB_OK);
	}
	n_seen = 0;
	rc = remote_list(r, collect, NULL);
	ok(rc == KB_OK && n_seen == 5 && !strcmp(seen[0], "aa.kvc") && !strcmp(seen[4], "b3.kvc") &&
	   seen_size[0] == strlen(text), "a signed ListObjectsV2 over three pages (continuation tokens signed): %d objects %s",
	   n_seen, rc ? kb_error() : "");
	rc = remote_delete(r, "aa.kvc");
	ok(rc == KB_OK && remote_head(r, "aa.kvc", NULL) == KB_EOF, "a signed DELETE: %s", rc ? kb_error() : "ok");
	remote_close(r);

	setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
	ok(remote_open(&r, "s3://kvb-bucket/team/kv", &o) == KB_OK, "the same remote with a wrong secret");
	rc = remote_head(r, "b0.kvc", NULL);
	ok(rc == KB_ERR_IO && strstr(kb_error(), "403") && !strstr(kb_error(), "not-the-secret"),
	   "is refused (403), the secret not in the message: %s", kb_error());
	rc = remote_get(r, "b0.kvc", out, NULL);
	ok(rc == KB_ERR_IO && strstr(kb_error(), "SignatureDoesNotMatch"), "a GET too: %s", kb_error());
	remote_close(r);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_REGION");
	unsetenv("AWS_ENDPOINT_URL");
	close(in), close(out);
}

int main(void)
{
	unsetenv("KVBLEND_REMOTE_TIMEOUT");
	unsetenv("KVBLEND_REMOTE_RETRIES");
	unsetenv("AWS_ENDPOINT_URL_S3");
	test_list_parse();
	test_urls();
	atexit(stop_servers);
	if (start_server(0, NULL, base, sizeof base))
		test_server();
	else
		skip("python3 or tests/remote/faultserver.py not found: the requests are not tested");
	if (start_server(1, "AKIDKVBTEST:sekrit/Key+42", s3base, sizeof s3base))
		test_s3_signed();
	else
		skip("python3 or tests/remote/faultserver.py not found: signed requests are not tested");
	stop_servers();
	return done_testing();
}
