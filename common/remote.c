/* remote.c — see remote.h.
 *
 * Signing: libcurl signs S3 requests itself (CURLOPT_AWS_SIGV4 with the key id
 * and secret as the user and password). S3 also wants the body's SHA-256 in
 * x-amz-content-sha256, and libcurl before 8.x neither sends that header nor
 * hashes a body it reads through a callback (it hashes POSTFIELDS, else the
 * empty string). So every request without a body says the empty string's
 * hash, and a PUT hands libcurl its body in memory (POSTFIELDS with the PUT
 * method) and says that body's hash: what libcurl signs and what the header
 * says agree on every libcurl version. Query strings are written already in
 * canonical order (parameters sorted, values percent-encoded), as the
 * signature needs them.
 */
#include "remote.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "hash.h"

#ifndef KVBLEND_VERSION
#define KVBLEND_VERSION "0"
#endif

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define LIST_MAX_BYTES (16u << 20) /* one listing page (1000 keys) is ~350 KB */
#define ERROR_BODY_MAX 512         /* bytes of an error answer kept for the message */
#define MAX_SECRETS 4

struct remote {
	bool s3;
	char *name;       /* owned: s3://BUCKET/PREFIX or the URL without credentials */
	char *base;       /* owned: objects are base + prefix + name */
	char *list_base;  /* owned, S3: the bucket's URL for ListObjectsV2 (before "?") */
	char *prefix;     /* owned: "" or "PREFIX/" */
	char *userpwd;    /* owned, S3 with a key: "KEYID:SECRET" (never in a message) */
	char *token_hdr;  /* owned, S3 with a session token: "x-amz-security-token: ..." */
	char *sigv4;      /* owned, S3 with a key: "aws:amz:REGION:s3" */
	const char *secrets[MAX_SECRETS]; /* scrubbed from every message (point into the above or the environment's copies) */
	char *secret_copies[MAX_SECRETS]; /* owned */
	struct remote_opts o;
	CURL *h;          /* owned: one handle, its connections kept */
	bool down;
	long last_status;  /* the HTTP status of the last try (0: none) */
	struct remote_stats stats;
};

/* ---- options ---- */

static int env_double(const char *var, double lo, double hi, double *out)
{
	const char *s = getenv(var);
	if (!s || !*s)
		return KB_OK;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return kb_fail(KB_ERR_ARG, "$%s: '%s' is not a number in [%g, %g]", var, s, lo, hi);
	*out = v;
	return KB_OK;
}

int remote_opts_env(struct remote_opts *o)
{
	*o = (struct remote_opts)REMOTE_OPTS_DEFAULT;
	double retries = o->retries;
	int rc = env_double("KVBLEND_REMOTE_TIMEOUT", 0.001, 86400, &o->timeout);
	if (!rc)
		rc = env_double("KVBLEND_REMOTE_RETRIES", 0, 20, &retries);
	if (!rc)
		rc = env_double("KVBLEND_REMOTE_BACKOFF", 0, 60, &o->backoff);
	if (!rc && retries != floor(retries))
		rc = kb_fail(KB_ERR_ARG, "$KVBLEND_REMOTE_RETRIES: '%s' is not an integer", getenv("KVBLEND_REMOTE_RETRIES"));
	o->retries = (int)retries;
	return rc;
}

/* ---- names and messages ---- */

bool remote_is_url(const char *s)
{
	return !strncmp(s, "s3://", 5) || !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

void remote_url_display(const char *url, char *out, size_t cap)
{
	const char *p = strstr(url, "://");
	const char *host = p ? p + 3 : url;
	size_t auth_end = strcspn(host, "/?#");
	const char *at = memchr(host, '@', auth_end);
	if (p && at)
		snprintf(out, cap, "%.*s%s", (int)(host - url), url, at + 1);
	else
		snprintf(out, cap, "%s", url);
}

/* Replace every secret in s (in place, cap bytes) by "[redacted]". */
static void scrub(const struct remote *r, char *s, size_t cap)
{
	for (int i = 0; r && i < MAX_SECRETS; i++) {
		const char *sec = r->secrets[i];
		size_t n = sec ? strlen(sec) : 0;
		if (n < 3) /* too short to tell from other text; nothing real is that short */
			continue;
		char *hit;
		while ((hit = strstr(s, sec))) {
			static const char red[] = "[redacted]";
			size_t tail = strlen(hit + n) + 1;
			size_t room = cap - (size_t)(hit - s);
			if (sizeof red - 1 + tail > room) { /* no room: cut the message there */
				snprintf(hit, room, "%s", red);
				break;
			}
			memmove(hit + sizeof red - 1, hit + n, tail);
			memcpy(hit, red, sizeof red - 1);
		}
	}
}

/* kb_fail with the message scrubbed of r's secrets. */
static int rfail(const struct remote *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rfail(const struct remote *r, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	scrub(r, msg, sizeof msg);
	return kb_fail(status, "%s", msg);
}

/* ---- opening ---- */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static bool prefix_ok(const char *p)
{
	for (; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._/-", *p))
			return false;
	return true;
}

static void add_secret(struct remote *r, const char *s)
{
	for (int i = 0; s && i < MAX_SECRETS; i++)
		if (!r->secret_copies[i]) {
			r->secrets[i] = r->secret_copies[i] = strdup(s);
			return;
		}
}

static int open_s3(struct remote *r, const char *url)
{
	const char *b = url + 5;
	size_t nb = strcspn(b, "/");
	const char *prefix = b[nb] == '/' ? b + nb + 1 : "";
	size_t np = strlen(prefix);
	while (np > 0 && prefix[np - 1] == '/')
		np--;
	if (nb < 3 || nb > 63)
		return kb_fail(KB_ERR_ARG, "'%s': not an S3 bucket name (s3://BUCKET/PREFIX, 3 to 63 characters)", url);
	for (size_t i = 0; i < nb; i++)
		if (!islower((unsigned char)b[i]) && !isdigit((unsigned char)b[i]) && b[i] != '.' && b[i] != '-')
			return kb_fail(KB_ERR_ARG, "'%s': a bucket name has lower-case letters, digits, '.' and '-'", url);
	char *pre = kb_strndup(prefix, np);
	if (!pre)
		return KB_ERR_NOMEM;
	if (!prefix_ok(pre) || strstr(pre, "//")) {
		free(pre);
		return kb_fail(KB_ERR_ARG, "'%s': the prefix may hold letters, digits and . _ - / only", url);
	}
	r->name = kb_asprintf("s3://%.*s%s%s", (int)nb, b, np ? "/" : "", pre);
	r->prefix = kb_asprintf("%s%s", pre, np ? "/" : "");
	free(pre);
	const char *region = env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION") : "us-east-1";
	for (const char *p = region; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return kb_fail(KB_ERR_ARG, "$AWS_REGION: '%s' is not a region name", region);
	const char *ep = env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3") : env("AWS_ENDPOINT_URL");
	if (ep) {
		size_t ne = strlen(ep);
		while (ne > 0 && ep[ne - 1] == '/')
			ne--;
		if (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8))
			return kb_fail(KB_ERR_ARG, "$AWS_ENDPOINT_URL: '%s' is not an http(s) URL", ep);
		r->list_base = kb_asprintf("%.*s/%.*s", (int)ne, ep, (int)nb, b);
		r->base = kb_asprintf("%.*s/%.*s/", (int)ne, ep, (int)nb, b);
	} else {
		r->list_base = kb_asprintf("https://%.*s.s3.%s.amazonaws.com/", (int)nb, b, region);
		r->base = kb_asprintf("https://%.*s.s3.%s.amazonaws.com/", (int)nb, b, region);
	}
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY"), *tok = env("AWS_SESSION_TOKEN");
	if (id && !secret)
		return kb_fail(KB_ERR_ARG, "$AWS_ACCESS_KEY_ID is set but $AWS_SECRET_ACCESS_KEY is not");
	if (id) {
		r->userpwd = kb_asprintf("%s:%s", id, secret);
		r->sigv4 = kb_asprintf("aws:amz:%s:s3", region);
		add_secret(r, secret);
		add_secret(r, id);
		if (tok) {
			r->token_hdr = kb_asprintf("x-amz-security-token: %s", tok);
			add_secret(r, tok);
		}
	}
	if (!r->name || !r->prefix || !r->list_base || !r->base || (id && (!r->userpwd || !r->sigv4)) ||
	    (tok && id && !r->token_hdr))
		return KB_ERR_NOMEM;
	return KB_OK;
}

static int open_http(struct remote *r, const char *url)
{
	char shown[1024];
	remote_url_display(url, shown, sizeof shown);
	/* a password in the URL: never shown */
	const char *host = strstr(url, "://") + 3;
	size_t auth_end = strcspn(host, "/?#");
	const char *at = memchr(host, '@', auth_end);
	if (at) {
		const char *colon = memchr(host, ':', (size_t)(at - host));
		char *pw = colon ? kb_strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
		if (pw)
			add_secret(r, pw);
		free(pw);
	}
	if (strchr(url, '?') || strchr(url, '#'))
		return kb_fail(KB_ERR_ARG, "'%s': a remote's URL has no query or fragment", shown);
	size_t n = strlen(url);
	bool slash = n > 0 && url[n - 1] == '/';
	r->base = kb_asprintf("%s%s", url, slash ? "" : "/");
	r->name = strdup(shown);
	r->prefix = strdup("");
	if (!r->base || !r->name || !r->prefix)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	return KB_OK;
}

int remote_open(struct remote **out, const char *url, const struct remote_opts *o)
{
	*out = NULL;
	if (fetch_curl_init())
		return KB_ERR_IO;
	struct remote *r = kb_calloc(1, sizeof *r);
	if (!r)
		return KB_ERR_NOMEM;
	int rc = KB_OK;
	if (o)
		r->o = *o;
	else
		rc = remote_opts_env(&r->o);
	if (rc == KB_OK) {
		if (!strncmp(url, "s3://", 5)) {
			r->s3 = true;
			rc = open_s3(r, url);
		} else if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
			rc = open_http(r, url);
		} else {
			char shown[1024];
			remote_url_display(url, shown, sizeof shown);
			rc = kb_fail(KB_ERR_ARG, "'%s': a remote is s3://BUCKET/PREFIX or an http(s):// URL", shown);
		}
	}
	if (rc == KB_OK && !(r->h = curl_easy_init()))
		rc = kb_fail(KB_ERR_NOMEM, "libcurl cannot start a transfer");
	if (rc) {
		remote_close(r);
		return rc;
	}
	*out = r;
	return KB_OK;
}

void remote_close(struct remote *r)
{
	if (!r)
		return;
	if (r->h)
		curl_easy_cleanup(r->h);
	free(r->name);
	free(r->base);
	free(r->list_base);
	free(r->prefix);
	if (r->userpwd)
		explicit_bzero(r->userpwd, strlen(r->userpwd));
	free(r->userpwd);
	free(r->token_hdr);
	free(r->sigv4);
	for (int i = 0; i < MAX_SECRETS; i++)
		free(r->secret_copies[i]);
	free(r);
}

const char *remote_name(const struct remote *r)
{
	return r->name;
}

bool remote_is_s3(const struct remote *r)
{
	return r->s3;
}

bool remote_down(const struct remote *r)
{
	return r->down;
}

const struct remote_stats *remote_stats(const struct remote *r)
{
	return &r->stats;
}

/* ---- one request, retried ---- */

/* Where a request's body goes and where an upload's comes from. */
struct xfer {
	CURL *h;
	/* the answer's body */
	int fd;              /* >= 0: into this file */
	char *mem;           /* else into memory: [cap], not owned */
	size_t cap;
	bool grow;           /* mem is malloc()ed and may grow up to max (owned by the caller) */
	size_t max;
	uint64_t got;        /* body bytes taken this try */
	uint64_t base;       /* fd: offset of the first body byte (a ranged download) */
	bool restart_at_0;   /* a ranged download answered with the whole file */
	bool ranged;
	int werr;            /* errno of a failed write, or ENOMEM / EFBIG */
	char err[ERROR_BODY_MAX + 1]; /* an error answer's first bytes */
	size_t nerr;
	long status;         /* of this try, known once the body starts */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *pctx;
	uint64_t total;      /* announced size of the whole file (downloads) */
	/* a stream (remote_get_stream): the body goes to sink instead */
	int (*sink)(void *ctx, const void *p, size_t n);
	void *sctx;
	uint64_t skip;       /* bytes of this try's body the sink has had already */
	bool sink_failed;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t k = size * nmemb;
	if (!x->status)
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->status && (x->status < 200 || x->status >= 300)) { /* keep the start of an error answer, for the message */
		size_t take = k < ERROR_BODY_MAX - x->nerr ? k : ERROR_BODY_MAX - x->nerr;
		memcpy(x->err + x->nerr, p, take);
		x->nerr += take;
		x->err[x->nerr] = '\0';
		return k;
	}
	if (x->sink) {
		if (x->got == 0) /* a whole answer to a ranged request: skip what the sink has */
			x->skip = x->status == 206 ? 0 : x->base;
		size_t drop = x->skip < k ? (size_t)x->skip : k;
		x->skip -= drop;
		x->got += k;
		if (k > drop) {
			if (x->sink(x->sctx, p + drop, k - drop)) {
				x->sink_failed = true;
				return 0;
			}
			x->base += k - drop;
		}
		return k;
	}
	if (x->fd >= 0) {
		if (x->got == 0 && x->ranged && x->status == 200 && x->base > 0) {
			/* asked for a range, given the whole file: start again from 0 */
			if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0) {
				x->werr = errno;
				return 0;
			}
			x->base = 0;
			x->restart_at_0 = true;
		}
		if (kb_write_all(x->fd, p, k)) {
			x->werr = errno ? errno : EIO;
			return 0;
		}
	} else if (!x->mem && !x->grow) { /* a body nobody asked for (a PUT's answer): dropped */
		x->got += k;
		return k;
	} else {
		if (x->max && k > x->max - x->got) {
			x->werr = EFBIG;
			return 0;
		}
		size_t take = k;
		if (!x->grow) { /* a range: the server may send more than asked; keep what fits */
			take = x->got < x->cap ? (k < x->cap - x->got ? k : (size_t)(x->cap - x->got)) : 0;
		} else if (k > x->cap - x->got) { /* got <= cap while growing */
			size_t cap = x->cap ? x->cap : 1 << 16;
			while (k > cap - x->got)
				cap *= 2;
			char *m = realloc(x->mem, cap);
			if (!m) {
				x->werr = ENOMEM;
				return 0;
			}
			x->mem = m, x->cap = cap;
		}
		if (take)
			memcpy(x->mem + x->got, p, take);
	}
	x->got += size * nmemb;
	if (x->progress)
		x->progress(x->pctx, x->base + x->got, x->total);
	return k;
}

/* The body of the upload, in memory. */
struct upload {
	const void *data;
	size_t len;
	char sha[65];
};

enum method { M_GET, M_HEAD, M_PUT, M_DELETE };

struct request {
	enum method method;
	const char *url;
	const char *what;       /* for messages: "s3://b/p/KEY.kvc" */
	struct xfer *x;         /* NULL: the body is dropped */
	const struct upload *up;
	const char *range;      /* "a-b" or NULL */
	bool small;             /* bounded as a whole by the timeout */
	bool sign;              /* S3 */
	int (*before_retry)(void *ctx); /* reset the body's sink; may be NULL */
	void *ctx;
};

static bool retryable(CURLcode e, long status)
{
	if (e == CURLE_OK)
		return status >= 500 || status == 429;
	switch (e) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* The S3 error code in an error answer ("NoSuchBucket"), into out. */
static void s3_code(const char *body, char *out, size_t cap)
{
	out[0] = '\0';
	const char *a = strstr(body, "<Code>"), *b = a ? strstr(a, "</Code>") : NULL;
	if (!a || !b || b - a - 6 > 64)
		return;
	snprintf(out, cap, " (%.*s)", (int)(b - a - 6), a + 6);
	for (char *p = out; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
}

static CURLcode setup(struct remote *r, const struct request *q, struct xfer *x, struct curl_slist **hdrs,
		      char *errbuf)
{
	CURL *h = r->h;
	curl_easy_reset(h);
	CURLcode e = fetch_curl_base(h, q->url, errbuf);
#define SET(opt, val) \
	if (e == CURLE_OK) \
	e = curl_easy_setopt(h, opt, val)
	/* redirects only where nothing is signed (a model's URL): a signature is for one host */
	SET(CURLOPT_FOLLOWLOCATION, q->sign ? 0L : 1L);
	SET(CURLOPT_MAXREDIRS, 10L);
	long ms = (long)(r->o.timeout * 1000 + 0.5);
	SET(CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1L);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, (long)ceil(r->o.timeout));
	if (q->small)
		SET(CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
	SET(CURLOPT_USERAGENT, "kvblend/" KVBLEND_VERSION);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	if (q->range && strcmp(q->range, "0-") != 0)
		SET(CURLOPT_RANGE, q->range);
	switch (q->method) {
	case M_GET: break;
	case M_HEAD: SET(CURLOPT_NOBODY, 1L); break;
	case M_DELETE: SET(CURLOPT_CUSTOMREQUEST, "DELETE"); break;
	case M_PUT:
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDS, q->up->data);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->up->len);
		SET(CURLOPT_CUSTOMREQUEST, "PUT");
		*hdrs = curl_slist_append(*hdrs, "Content-Type: application/octet-stream");
		*hdrs = curl_slist_append(*hdrs, "Expect:");
		break;
	}
	if (q->sign) {
		char line[128];
		snprintf(line, sizeof line, "x-amz-content-sha256: %s", q->method == M_PUT ? q->up->sha : EMPTY_SHA256);
		*hdrs = curl_slist_append(*hdrs, line);
		if (r->token_hdr)
			*hdrs = curl_slist_append(*hdrs, r->token_hdr);
		if (r->sigv4) {
			SET(CURLOPT_AWS_SIGV4, r->sigv4);
			SET(CURLOPT_USERPWD, r->userpwd);
		}
	}
	if (*hdrs)
		SET(CURLOPT_HTTPHEADER, *hdrs);
#undef SET
	return e;
}

static void sleep_s(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Run q, retrying; KB_OK (2xx), KB_EOF (404), or an error naming q->what. */
static int perform(struct remote *r, const struct request *q)
{
	struct xfer dummy = { .fd = -1, .grow = false };
	struct xfer *x = q->x ? q->x : &dummy;
	x->h = r->h;
	double t0 = kb_now(), wait = r->o.backoff;
	int tries = 0, rc = KB_OK;
	for (;;) {
		char errbuf[CURL_ERROR_SIZE] = "";
		struct curl_slist *hdrs = NULL;
		x->got = 0, x->status = 0, x->nerr = 0, x->err[0] = '\0', x->werr = 0;
		CURLcode e = setup(r, q, x, &hdrs, errbuf);
		if (e == CURLE_OK)
			e = curl_easy_perform(r->h);
		curl_slist_free_all(hdrs);
		tries++;
		r->stats.requests++;
		long status = 0;
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
		r->last_status = status;
		curl_off_t up = 0;
		curl_easy_getinfo(r->h, CURLINFO_SIZE_UPLOAD_T, &up);
		r->stats.bytes_in += x->got;
		r->stats.bytes_out += up > 0 ? (uint64_t)up : 0;
		const char *why = errbuf[0] ? errbuf : curl_easy_strerror(e);
		if (x->sink_failed) {
			rc = kb_fail(KB_ERR_IO, "'%s': the reader of the stream stopped", q->what);
			break;
		}
		if (x->werr) {
			rc = x->werr == ENOMEM ? rfail(r, KB_ERR_NOMEM, "'%s': out of memory", q->what)
			   : x->werr == EFBIG ? rfail(r, KB_ERR_FORMAT, "'%s': the answer is larger than %zu bytes", q->what, x->max)
			   : rfail(r, KB_ERR_IO, "'%s': cannot keep what arrives: %s", q->what, strerror(x->werr));
			break;
		}
		if (e == CURLE_OK && (status == 0 || (status >= 200 && status < 300))) { /* 0: file:// */
			rc = KB_OK;
			break;
		}
		if (e == CURLE_OK && status == 404 && q->method != M_PUT) {
			rc = KB_EOF;
			kb_fail(KB_EOF, "'%s': not there", q->what);
			break;
		}
		bool again = retryable(e, status) && tries <= r->o.retries;
		if (!again) {
			char code[80];
			char tries_s[32] = "";
			if (tries > 1)
				snprintf(tries_s, sizeof tries_s, " (%d tries)", tries);
			if (e == CURLE_OK) {
				s3_code(x->err, code, sizeof code);
				rc = rfail(r, KB_ERR_IO, "'%s': HTTP %ld%s%s", q->what, status, code, tries_s);
			} else {
				if (e == CURLE_COULDNT_CONNECT || e == CURLE_COULDNT_RESOLVE_HOST ||
				    e == CURLE_COULDNT_RESOLVE_PROXY || e == CURLE_OPERATION_TIMEDOUT)
					r->down = true;
				rc = rfail(r, KB_ERR_IO, "'%s': %s%s", q->what,
					   e == CURLE_OPERATION_TIMEDOUT ? "timed out" : why, tries_s);
			}
			break;
		}
		r->stats.retries++;
		sleep_s(wait);
		wait *= 2;
		if (q->before_retry && (rc = q->before_retry(q->ctx)))
			break;
	}
	r->stats.seconds += kb_now() - t0;
	return rc;
}

/* ---- objects ---- */

/* The object's URL and its name for messages. */
static int object_url(const struct remote *r, const char *name, char **url, char **what)
{
	bool bad = !*name || *name == '/' || strstr(name, "..") || strstr(name, "//");
	for (const char *p = name; *p && !bad; p++)
		bad = !isalnum((unsigned char)*p) && !strchr("._-/", *p);
	if (bad)
		return kb_fail(KB_ERR_ARG, "'%s': not an object name", name);
	*url = kb_asprintf("%s%s%s", r->base, r->prefix, name);
	*what = kb_asprintf("%s/%s", r->name, name);
	if (!*url || !*what) {
		free(*url), free(*what);
		return KB_ERR_NOMEM;
	}
	return KB_OK;
}

int remote_head(struct remote *r, const char *name, uint64_t *size)
{
	char *url, *what;
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	struct request q = { .method = M_HEAD, .url = url, .what = what, .small = true, .sign = r->s3 };
	rc = perform(r, &q);
	if (rc == KB_OK && size) {
		curl_off_t n = -1;
		curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &n);
		*size = n > 0 ? (uint64_t)n : 0;
	}
	free(url), free(what);
	return rc;
}

static int rewind_fd(void *ctx)
{
	struct xfer *x = ctx;
	if (ftruncate(x->fd, (off_t)x->base) < 0 || lseek(x->fd, (off_t)x->base, SEEK_SET) < 0)
		return kb_fail(KB_ERR_IO, "cannot start the download again: %s", strerror(errno));
	return KB_OK;
}

int remote_get(struct remote *r, const char *name, int fd, uint64_t *size)
{
	char *url, *what;
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	struct xfer x = { .fd = fd };
	if ((rc = rewind_fd(&x)) == KB_OK) {
		struct request q = { .method = M_GET, .url = url, .what = what, .x = &x, .sign = r->s3,
				     .before_retry = rewind_fd, .ctx = &x };
		rc = perform(r, &q);
	}
	if (rc == KB_OK && size)
		*size = x.got;
	free(url), free(what);
	return rc;
}

struct stream {
	struct xfer x;
	char range[32]; /* "BASE-": where the next try starts */
};

static int stream_continue(void *ctx)
{
	struct stream *s = ctx;
	snprintf(s->range, sizeof s->range, "%llu-", (unsigned long long)s->x.base);
	return KB_OK;
}

int remote_get_stream(struct remote *r, const char *name, int (*sink)(void *ctx, const void *p, size_t n), void *ctx,
		      uint64_t *size)
{
	char *url, *what;
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	struct stream s = { .x = { .fd = -1, .sink = sink, .sctx = ctx } };
	stream_continue(&s);
	struct request q = { .method = M_GET, .url = url, .what = what, .x = &s.x, .range = s.range, .sign = r->s3,
			     .before_retry = stream_continue, .ctx = &s };
	rc = perform(r, &q);
	if (rc == KB_ERR_IO && r->last_status == 416 && s.x.base > 0)
		rc = KB_OK; /* a retry asked past the end: every byte had come (a wrong length) */
	if (size)
		*size = s.x.base;
	free(url), free(what);
	return rc;
}

int remote_get_range(struct remote *r, const char *name, uint64_t off, size_t len, void *buf, size_t *got)
{
	*got = 0;
	if (len == 0)
		return KB_OK;
	char *url, *what, range[64];
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)off, (unsigned long long)(off + len - 1));
	struct xfer x = { .fd = -1, .mem = buf, .cap = len };
	struct request q = { .method = M_GET, .url = url, .what = what, .x = &x, .range = range, .sign = r->s3 };
	if ((rc = perform(r, &q)) == KB_OK) {
		if (x.status != 206 && off > 0) /* the whole object came: not what was asked */
			rc = rfail(r, KB_ERR_IO, "'%s': the server does not answer ranged requests", what);
		else
			*got = x.got < len ? (size_t)x.got : len;
	}
	free(url), free(what);
	return rc;
}

int remote_put(struct remote *r, const char *name, int fd)
{
	char *url, *what;
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	struct stat sb;
	struct upload up = { 0 };
	void *map = NULL;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		rc = kb_fail(KB_ERR_IO, "'%s': the file to upload is not a readable regular file", what);
		goto out;
	}
	up.len = (size_t)sb.st_size;
	if (up.len && (map = mmap(NULL, up.len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
		map = NULL;
		rc = kb_fail(KB_ERR_IO, "'%s': cannot map the file to upload: %s", what, strerror(errno));
		goto out;
	}
	up.data = map ? map : "";
	uint8_t d[32];
	sha256(up.data, up.len, d);
	hash_hex(d, 32, up.sha);
	struct request q = { .method = M_PUT, .url = url, .what = what, .up = &up, .sign = r->s3 };
	rc = perform(r, &q);
out:
	if (map)
		munmap(map, up.len);
	free(url), free(what);
	return rc;
}

int remote_delete(struct remote *r, const char *name)
{
	char *url, *what;
	int rc = object_url(r, name, &url, &what);
	if (rc)
		return rc;
	struct request q = { .method = M_DELETE, .url = url, .what = what, .small = true, .sign = r->s3 };
	rc = perform(r, &q);
	free(url), free(what);
	return rc;
}

/* ---- listing ---- */

/* The text of the first <tag>…</tag> in [p, end), entity-decoded, into a
 * malloc()ed string; KB_EOF when there is none. */
static int xml_text(const char *p, const char *end, const char *tag, char **out)
{
	char open[48], close[48];
	snprintf(open, sizeof open, "<%s>", tag);
	snprintf(close, sizeof close, "</%s>", tag);
	size_t no = strlen(open), nc = strlen(close);
	const char *a = memmem(p, (size_t)(end - p), open, no);
	if (!a)
		return KB_EOF;
	a += no;
	const char *b = memmem(a, (size_t)(end - a), close, nc);
	if (!b)
		return kb_fail(KB_ERR_FORMAT, "a listing's <%s> is not closed", tag);
	char *s = kb_malloc((size_t)(b - a) + 1), *w = s;
	if (!s)
		return KB_ERR_NOMEM;
	for (const char *c = a; c < b;) {
		if (*c != '&') {
			if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\n' && *c != '\r')
				goto bad;
			*w++ = *c++;
			continue;
		}
		const char *semi = memchr(c, ';', (size_t)(b - c));
		if (!semi || semi - c > 10)
			goto bad;
		size_t n = (size_t)(semi - c - 1);
		const char *ent = c + 1;
		static const struct { const char *name; char ch; } named[] = {
			{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
		};
		int ch = -1;
		for (size_t i = 0; i < sizeof named / sizeof *named; i++)
			if (strlen(named[i].name) == n && !memcmp(ent, named[i].name, n))
				ch = named[i].ch;
		if (ch < 0 && n >= 2 && ent[0] == '#') {
			char num[12];
			memcpy(num, ent + 1, n - 1);
			num[n - 1] = '\0';
			char *e;
			long v = num[0] == 'x' ? strtol(num + 1, &e, 16) : strtol(num, &e, 10);
			if (*e == '\0' && e != num + (num[0] == 'x') && v >= 0x20 && v < 0x7f)
				ch = (int)v;
		}
		if (ch < 0)
			goto bad;
		*w++ = (char)ch;
		c = semi + 1;
	}
	*w = '\0';
	*out = s;
	return KB_OK;
bad:
	free(s);
	return kb_fail(KB_ERR_FORMAT, "a listing's <%s> holds a character or entity that is not allowed", tag);
}

/* "2026-12-07T21:14:51.000Z" → unix seconds; 0 when malformed. */
static double parse_time(const char *s)
{
	struct tm tm = { 0 };
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (double)t;
}

int remote_parse_list(const char *xml, size_t len, const char *prefix,
		      int (*fn)(void *ctx, const struct remote_object *o), void *ctx, bool *truncated, char **next)
{
	*truncated = false;
	*next = NULL;
	const char *p = xml, *end = xml + len;
	if (!memmem(xml, len, "<ListBucketResult", 17))
		return kb_fail(KB_ERR_FORMAT, "the answer is not an S3 listing (no <ListBucketResult>)");
	size_t np = strlen(prefix);
	int rc = KB_OK;
	for (;;) {
		const char *a = memmem(p, (size_t)(end - p), "<Contents>", 10);
		if (!a)
			break;
		const char *b = memmem(a, (size_t)(end - a), "</Contents>", 11);
		if (!b)
			return kb_fail(KB_ERR_FORMAT, "a listing's <Contents> is not closed");
		char *key = NULL, *size = NULL, *mod = NULL;
		if ((rc = xml_text(a, b, "Key", &key)) == KB_OK && (rc = xml_text(a, b, "Size", &size)) == KB_OK) {
			int mr = xml_text(a, b, "LastModified", &mod);
			char *e;
			errno = 0;
			unsigned long long n = strtoull(size, &e, 10);
			if (mr < KB_EOF)
				rc = mr;
			else if (errno || e == size || *e || size[0] == '-')
				rc = kb_fail(KB_ERR_FORMAT, "a listing's <Size> is not a size: '%.32s'", size);
			else if (!strncmp(key, prefix, np) && key[np]) {
				struct remote_object o = { .name = key + np, .size = n, .mtime = mod ? parse_time(mod) : 0 };
				rc = fn(ctx, &o);
			}
		} else if (rc == KB_EOF) {
			rc = kb_fail(KB_ERR_FORMAT, "a listing's <Contents> has no <Key> or <Size>");
		}
		free(key), free(size), free(mod);
		if (rc)
			return rc;
		p = b + 11;
	}
	char *t = NULL;
	if ((rc = xml_text(xml, end, "IsTruncated", &t)) < KB_EOF)
		return rc;
	*truncated = t && !strcmp(t, "true");
	free(t);
	if ((rc = xml_text(xml, end, "NextContinuationToken", next)) < KB_EOF)
		return rc;
	return KB_OK;
}

/* s percent-encoded as SigV4's canonical query wants it (all but A-Z a-z 0-9 - _ . ~). */
static char *query_escape(const char *s)
{
	char *o = kb_malloc(strlen(s) * 3 + 1), *w = o;
	if (!o)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			*w++ = (char)c;
		else
			w += sprintf(w, "%%%02X", c);
	}
	*w = '\0';
	return o;
}

int remote_list(struct remote *r, int (*fn)(void *ctx, const struct remote_object *o), void *ctx)
{
	if (!r->s3)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': only an s3:// remote can be listed", r->name);
	char *token = NULL, *pre = query_escape(r->prefix);
	int rc = pre ? KB_OK : KB_ERR_NOMEM;
	while (rc == KB_OK) {
		char *tok = token ? query_escape(token) : NULL;
		/* parameters in canonical (sorted) order */
		char *url = kb_asprintf("%s?%s%s%slist-type=2&prefix=%s", r->list_base, tok ? "continuation-token=" : "",
				    tok ? tok : "", tok ? "&" : "", pre);
		free(tok);
		if (!url) {
			rc = KB_ERR_NOMEM;
			break;
		}
		struct xfer x = { .fd = -1, .grow = true, .max = LIST_MAX_BYTES };
		struct request q = { .method = M_GET, .url = url, .what = r->name, .x = &x, .small = true, .sign = true };
		rc = perform(r, &q);
		free(url);
		if (rc == KB_EOF)
			rc = rfail(r, KB_ERR_IO, "'%s': no such bucket", r->name);
		bool more = false;
		free(token);
		token = NULL;
		if (rc == KB_OK) {
			rc = remote_parse_list(x.mem ? x.mem : "", (size_t)x.got, r->prefix, fn, ctx, &more, &token);
			if (rc == KB_ERR_FORMAT)
				rc = rfail(r, rc, "'%s': %s", r->name, kb_error());
		}
		free(x.mem);
		if (rc || !more)
			break;
		if (!token) {
			rc = rfail(r, KB_ERR_FORMAT, "'%s': a truncated listing with no continuation token", r->name);
			break;
		}
	}
	free(token);
	free(pre);
	return rc;
}

/* ---- whole files ---- */

struct dl {
	struct xfer x;
	uint64_t *have;
	int fd;
	char range[32];  /* "BASE-": what the next try asks for */
};

static int dl_continue(void *ctx)
{
	struct dl *d = ctx;
	/* keep what arrived whole; the next try asks for the rest */
	if (d->x.status == 200 || d->x.status == 206) {
		*d->have = d->x.base + d->x.got;
		d->x.base = *d->have;
	}
	if (lseek(d->fd, (off_t)d->x.base, SEEK_SET) < 0 || ftruncate(d->fd, (off_t)d->x.base) < 0)
		return kb_fail(KB_ERR_IO, "cannot continue the download: %s", strerror(errno));
	snprintf(d->range, sizeof d->range, "%llu-", (unsigned long long)d->x.base);
	d->x.ranged = d->x.base > 0;
	return KB_OK;
}

int remote_download(const char *url, int fd, uint64_t *have, uint64_t *total, const struct remote_opts *o,
		    void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
	*total = 0;
	char shown[1024];
	remote_url_display(url, shown, sizeof shown);
	struct remote *r;
	int rc = remote_open(&r, "http://x/", o); /* a handle, its options and a scrubber */
	if (rc)
		return rc;
	const char *host = strstr(url, "://");
	if (host) { /* a password in the URL is scrubbed from messages */
		host += 3;
		size_t auth_end = strcspn(host, "/?#");
		const char *at = memchr(host, '@', auth_end), *colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
		char *pw = colon ? kb_strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
		add_secret(r, pw);
		free(pw);
	}
	/* the size first, where the server says it (for the progress and the check) */
	struct request hq = { .method = M_HEAD, .url = url, .what = shown, .small = true };
	if (strncmp(url, "file:", 5) && perform(r, &hq) == KB_OK) {
		curl_off_t n = -1;
		curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &n);
		*total = n > 0 ? (uint64_t)n : 0;
	}
	if (*total && *have == *total) {
		remote_close(r);
		return KB_OK;
	}
	if (*total && *have > *total)
		*have = 0; /* not a start of this file */
	struct dl d = { .x = { .fd = fd, .base = *have, .ranged = *have > 0, .progress = progress, .pctx = ctx,
			       .total = *total },
			.have = have, .fd = fd };
	if ((rc = dl_continue(&d)) == KB_OK) {
		for (;;) {
			struct request q = { .method = M_GET, .url = url, .what = shown, .x = &d.x, .range = d.range,
					     .before_retry = dl_continue, .ctx = &d };
			rc = perform(r, &q);
			if (rc == KB_OK)
				*have = d.x.base + d.x.got;
			if (rc == KB_ERR_IO && r->last_status == 416 && d.x.base > 0 && !*total) {
				/* asked past the end of a file of unknown size: start over */
				d.x.base = 0;
				if ((rc = dl_continue(&d)))
					break;
				continue;
			}
			break;
		}
	}
	if (rc == KB_OK && *total && *have != *total)
		rc = rfail(r, KB_ERR_IO, "'%s': %llu bytes arrived of %llu", shown, (unsigned long long)*have,
			   (unsigned long long)*total);
	if (rc == KB_OK && !*total)
		*total = *have;
	remote_close(r);
	return rc;
}
