/* remote.h — the store's remote tier: objects on an S3-compatible object store
 * or a plain HTTP server, through libcurl; and whole files by URL with resume
 * (the models of `-m URL` and `kvblend pull`).
 *
 * A remote is named by a URL:
 *
 *	s3://BUCKET[/PREFIX]   objects at PREFIX/NAME in BUCKET. The endpoint is
 *	                       $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL (path
 *	                       style: ENDPOINT/BUCKET/PREFIX/NAME), else AWS itself
 *	                       (https://BUCKET.s3.REGION.amazonaws.com/PREFIX/NAME);
 *	                       requests are signed with AWS Signature V4 by libcurl
 *	                       (CURLOPT_AWS_SIGV4) from $AWS_ACCESS_KEY_ID,
 *	                       $AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN in
 *	                       $AWS_REGION (else $AWS_DEFAULT_REGION, else
 *	                       us-east-1); without a key they go unsigned.
 *	http(s)://HOST/PATH    objects at URL/NAME: GET and HEAD, and PUT and
 *	                       DELETE where the server allows them; no listing.
 *
 * Faults: every request has a connect timeout and a stall timeout (no byte for
 * that long ends the transfer; small requests are bounded as a whole); HTTP
 * 5xx and 429, resets, timeouts and short bodies are retried a bounded number
 * of times with a doubling wait; a refused connection or an unknown host is
 * not retried. After a connection that failed or timed out on every try the
 * remote is "down" (remote_down): callers stop asking it.
 *
 * Messages name the remote as remote_name() gives it (s3://BUCKET/PREFIX, or
 * the URL without its user and password) and never hold a credential: every
 * message is scrubbed of the key id, the secret, the session token and a
 * password in the URL before it is recorded.
 *
 * A struct remote holds one libcurl handle (kept connections): use it from one
 * thread at a time.
 */
#ifndef KB_REMOTE_H
#define KB_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct remote;

struct remote_opts {
	double timeout;  /* seconds: to connect; with no byte moving; a whole small request (HEAD, DELETE, a listing page) */
	int retries;     /* further tries of a request that failed in a way worth retrying */
	double backoff;  /* seconds before the first retry, doubled before each next */
};
#define REMOTE_OPTS_DEFAULT { .timeout = 10, .retries = 3, .backoff = 0.2 }

/* o = the defaults, then $KVBLEND_REMOTE_TIMEOUT (seconds, > 0),
 * $KVBLEND_REMOTE_RETRIES (0..20) and $KVBLEND_REMOTE_BACKOFF (seconds, >= 0)
 * where set. KB_OK, or KB_ERR_ARG naming a malformed variable. */
int remote_opts_env(struct remote_opts *o) KB_WUR;

/* true when s names a remote by its scheme (s3://, http://, https://). */
bool remote_is_url(const char *s);

/* Open the remote named by url (see above; the credentials are read from the
 * environment now). Nothing is sent yet. o NULL: remote_opts_env's.
 * KB_OK and *out; KB_ERR_ARG for a URL that is not a remote ("s3://" with no
 * bucket, a prefix with characters outside [A-Za-z0-9._/-], another scheme);
 * KB_ERR_NOMEM. */
int remote_open(struct remote **out, const char *url, const struct remote_opts *o) KB_WUR;
/* remote_close(NULL) is a no-op. */
void remote_close(struct remote *r);
/* The remote as messages name it: no credentials (owned by r). */
const char *remote_name(const struct remote *r);
/* true for s3:// remotes (which can be listed). */
bool remote_is_s3(const struct remote *r);
/* true once a request could not reach the remote at all (refused, unknown
 * host, or timed out on every try): the caller should stop using it. */
bool remote_down(const struct remote *r);

/* What the transfers of a remote moved, for measurements. */
struct remote_stats {
	uint64_t requests, retries;
	uint64_t bytes_in, bytes_out;
	double seconds;          /* spent in transfers (retry waits included) */
};
const struct remote_stats *remote_stats(const struct remote *r);

/* ---- objects (name: relative to the prefix, e.g. "KEY.kvc") ----
 * Each returns KB_OK, KB_EOF when the object is not there (HTTP 404), or
 * KB_ERR_IO with a message naming the object and the reason ("HTTP 403",
 * "timed out", "HTTP 503 (4 tries)"). */

/* Its size in *size (may be NULL). */
int remote_head(struct remote *r, const char *name, uint64_t *size) KB_WUR;
/* The whole object into fd, a regular file open for writing, from offset 0
 * (a retry truncates fd and starts again); *size (may be NULL) gets its
 * bytes. A body shorter than its Content-Length is an error (KB_ERR_IO); what
 * fd then holds must not be used. */
int remote_get(struct remote *r, const char *name, int fd, uint64_t *size) KB_WUR;
/* The whole object handed to sink(ctx, bytes, n) as it arrives, each byte
 * once and in order: a retry after a cut asks only for the rest (a Range
 * request from the bytes already handed over; a server that answers with the
 * whole object again has those skipped). sink returns 0 to go on, anything
 * else stops the transfer (an error). *size (may be NULL) gets the bytes.
 * For streaming a cache into a load while it arrives. */
int remote_get_stream(struct remote *r, const char *name, int (*sink)(void *ctx, const void *p, size_t n), void *ctx,
		      uint64_t *size) KB_WUR;
/* Bytes [off, off + len) of the object into buf; *got the bytes received
 * (fewer at the object's end). */
int remote_get_range(struct remote *r, const char *name, uint64_t off, size_t len, void *buf, size_t *got) KB_WUR;
/* Upload the whole regular file fd as name (replacing what is there). */
int remote_put(struct remote *r, const char *name, int fd) KB_WUR;
/* Delete name. KB_EOF when it was not there (a server that says so). */
int remote_delete(struct remote *r, const char *name) KB_WUR;

/* One listed object. */
struct remote_object {
	const char *name;        /* relative to the prefix */
	uint64_t size;
	double mtime;            /* unix seconds (LastModified); 0 when not given */
};
/* Call fn for every object under the prefix (S3 ListObjectsV2, page by page);
 * fn returns 0 to go on, anything else stops the listing and is returned.
 * KB_ERR_UNSUPPORTED for an http(s):// remote. */
int remote_list(struct remote *r, int (*fn)(void *ctx, const struct remote_object *o), void *ctx) KB_WUR;

/* Parse one ListObjectsV2 page (XML): fn for each <Contents> whose <Key>
 * starts with prefix (the name is the rest), *truncated from <IsTruncated>,
 * *next (malloc()ed, NULL when none; the caller frees) from
 * <NextContinuationToken>. Only these elements are read; entities are
 * decoded (&amp; &lt; &gt; &quot; &apos; and numeric ones below 128); a key
 * with a NUL or a control character, a malformed size or a missing element is
 * KB_ERR_FORMAT. For remote_list and the tests. */
int remote_parse_list(const char *xml, size_t len, const char *prefix,
		      int (*fn)(void *ctx, const struct remote_object *o), void *ctx, bool *truncated, char **next) KB_WUR;

/* ---- whole files by URL ---- */

/* Download url (http, https or file) into fd, a regular file that already
 * holds its first *have bytes (a resumed download): bytes from *have on are
 * asked for with a Range request and appended; a server that answers with the
 * whole file instead restarts it from 0. *have is updated as bytes arrive
 * (what fd holds whole), *total gets the file's size when the server says it
 * (else 0). progress(ctx, done, total) hears the bytes as they come (may be
 * NULL). KB_OK when the file is complete (a body shorter than announced is
 * KB_ERR_IO); KB_EOF for 404. Retries as the remote's requests do,
 * continuing from what arrived. */
int remote_download(const char *url, int fd, uint64_t *have, uint64_t *total, const struct remote_opts *o,
		    void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx) KB_WUR;

/* url without its user and password, into out (cap bytes). */
void remote_url_display(const char *url, char *out, size_t cap);

#endif
