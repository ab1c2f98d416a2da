/* fetch.h — whole documents by URL with libcurl (http, https, file).
 *
 * For the tools that take URLs where they take files (chunk), and later the
 * remote tier of the store. Redirects are followed (up to max_redirs, and only
 * to http and https); an HTTP status of 400 or more is an error; the body may
 * be compressed on the wire (it arrives decoded); a body over max_bytes aborts
 * the transfer as soon as the limit is crossed (or before it starts, when the
 * server announces the length).
 */
#ifndef KB_FETCH_H
#define KB_FETCH_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct fetch_opts {
	long connect_timeout; /* seconds to connect; 0: libcurl's default (300) */
	long timeout;         /* seconds for the whole transfer; 0: no limit */
	long max_redirs;      /* redirects followed at most; 0: none, -1: no limit */
	size_t max_bytes;     /* largest body accepted; 0: no limit */
};

/* Defaults: connect 10 s, total 60 s, 10 redirects, 64 MiB. */
#define FETCH_OPTS_DEFAULT { .connect_timeout = 10, .timeout = 60, .max_redirs = 10, .max_bytes = 64u << 20 }

/* true when s starts with a URL scheme ("name://"); fetch_url then decides
 * whether the scheme is supported (http, https and file are). */
bool fetch_is_url(const char *s);

/* Fetch url. Returns KB_OK with *data (malloc()ed, NUL-terminated, caller frees)
 * and *len, or an error with a one-line message that quotes the URL:
 *   KB_ERR_IO      the transfer failed ("'URL': HTTP 404", "'URL': Failed to connect
 *                  to ... Connection refused", "'URL': timed out after 60 s",
 *                  "'URL': more than 10 redirects", an unsupported scheme)
 *   KB_ERR_FORMAT  the body is larger than max_bytes ("'URL': larger than the
 *                  limit of N bytes")
 *   KB_ERR_NOMEM
 * Safe to call from several threads at once (one easy handle per call). */
int fetch_url(const char *url, const struct fetch_opts *o, char **data, size_t *len) KB_WUR;
/* fetch_url, and the response's Content-Type header in *type (malloc()ed, as
 * the server sent it, "text/html; charset=ISO-8859-1"), or NULL when it sent
 * none (a file:// URL); on an error *type is NULL too. */
int fetch_url_type(const char *url, const struct fetch_opts *o, char **data, size_t *len, char **type) KB_WUR;

/* The libcurl basics every transfer of the project shares (fetch, the remote
 * tier, models by URL). fetch_curl_init: libcurl started once per process;
 * KB_OK or KB_ERR_IO naming libcurl's reason. fetch_curl_base: on h, the URL,
 * the error buffer (CURL_ERROR_SIZE bytes), no signals, and only http, https
 * and file (redirects: http and https only); CURLE_OK or the first failure. */
int fetch_curl_init(void) KB_WUR;
CURLcode fetch_curl_base(CURL *h, const char *url, char *errbuf);

#endif
