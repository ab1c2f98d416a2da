/* fetch.c — see fetch.h. */
#include "fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <string.h>

#ifndef KVBLEND_VERSION
#define KVBLEND_VERSION "0"
#endif

bool fetch_is_url(const char *s)
{
	if (!isalpha((unsigned char)*s))
		return false;
	while (isalnum((unsigned char)*s) || *s == '+' || *s == '.' || *s == '-')
		s++;
	return !strncmp(s, "://", 3);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int fetch_curl_init(void)
{
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return kb_fail(KB_ERR_IO, "libcurl: %s", curl_easy_strerror(global_rc));
	return KB_OK;
}

CURLcode fetch_curl_base(CURL *h, const char *url, char *errbuf)
{
	CURLcode e = CURLE_OK;
#define SET(opt, val) \
	if (e == CURLE_OK) \
	e = curl_easy_setopt(h, opt, val)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
	SET(CURLOPT_PROTOCOLS_STR, "http,https,file");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
	SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
	return e;
}

/* The body as it arrives. */
struct body {
	char *v;        /* owned, malloc() */
	size_t n, cap;
	size_t max;     /* 0: no limit */
	bool too_big, nomem;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t k = size * nmemb; // size is 1 (libcurl's contract)
	if (b->max && k > b->max - b->n) {
		b->too_big = true;
		return 0; // aborts the transfer
	}
	if (k + 1 > b->cap - b->n) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (k + 1 > cap - b->n) {
			if (cap > SIZE_MAX / 2) {
				b->nomem = true;
				return 0;
			}
			cap *= 2;
		}
		char *v = realloc(b->v, cap);
		if (!v) {
			b->nomem = true;
			return 0;
		}
		b->v = v;
		b->cap = cap;
	}
	memcpy(b->v + b->n, p, k);
	b->n += k;
	return k;
}

/* Set the options of one transfer; CURLE_OK or the first that failed. */
static CURLcode setup(CURL *h, const char *url, const struct fetch_opts *o, struct body *b, char *errbuf)
{
	CURLcode e = fetch_curl_base(h, url, errbuf);
#define SET(opt, val) \
	if (e == CURLE_OK) \
	e = curl_easy_setopt(h, opt, val)
	SET(CURLOPT_FAILONERROR, 1L); // stop at the status line of an HTTP error
	SET(CURLOPT_FOLLOWLOCATION, o->max_redirs != 0 ? 1L : 0L);
	SET(CURLOPT_MAXREDIRS, o->max_redirs);
	SET(CURLOPT_CONNECTTIMEOUT, o->connect_timeout);
	SET(CURLOPT_TIMEOUT, o->timeout);
	SET(CURLOPT_ACCEPT_ENCODING, ""); // whatever libcurl can decode
	SET(CURLOPT_USERAGENT, "kvblend/" KVBLEND_VERSION);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, b);
	if (o->max_bytes)
		SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
#undef SET
	return e;
}

int fetch_url(const char *url, const struct fetch_opts *o, char **data, size_t *len)
{
	return fetch_url_type(url, o, data, len, NULL);
}

int fetch_url_type(const char *url, const struct fetch_opts *o, char **data, size_t *len, char **type)
{
	*data = NULL;
	*len = 0;
	if (type)
		*type = NULL;
	if (fetch_curl_init())
		return kb_fail(KB_ERR_IO, "'%s': %s", url, kb_error());
	CURL *h = curl_easy_init();
	if (!h)
		return kb_fail(KB_ERR_NOMEM, "'%s': libcurl cannot start a transfer", url);
	char errbuf[CURL_ERROR_SIZE] = "";
	struct body b = { .max = o->max_bytes };
	CURLcode e = setup(h, url, o, &b, errbuf);
	if (e == CURLE_OK)
		e = curl_easy_perform(h);
	int rc = KB_OK;
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(e);
	if (b.nomem)
		rc = kb_fail(KB_ERR_NOMEM, "'%s': out of memory", url);
	else if (b.too_big || e == CURLE_FILESIZE_EXCEEDED)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': larger than the limit of %zu bytes", url, o->max_bytes);
	else if (e == CURLE_HTTP_RETURNED_ERROR || (e == CURLE_OK && status >= 400))
		rc = kb_fail(KB_ERR_IO, "'%s': HTTP %ld", url, status);
	else if (e == CURLE_TOO_MANY_REDIRECTS)
		rc = kb_fail(KB_ERR_IO, "'%s': more than %ld redirects", url, o->max_redirs);
	else if (e == CURLE_OPERATION_TIMEDOUT)
		rc = kb_fail(KB_ERR_IO, "'%s': timed out (%s)", url, why);
	else if (e != CURLE_OK)
		rc = kb_fail(KB_ERR_IO, "'%s': %s", url, why);
	char *ct = NULL;
	if (!rc && !curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) && ct && type &&
	    !(*type = kb_strndup(ct, strlen(ct))))
		rc = kb_fail(KB_ERR_NOMEM, "'%s': out of memory", url);
	curl_easy_cleanup(h);
	if (rc) {
		free(b.v);
		return rc;
	}
	if (!b.v && !(b.v = kb_malloc(1)))
		return KB_ERR_NOMEM;
	b.v[b.n] = '\0';
	*data = b.v;
	*len = b.n;
	return KB_OK;
}
