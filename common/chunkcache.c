/* chunkcache.c — see chunkcache.h. */
#include "chunkcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "kvfile.h"
#include "remote.h"
#include "store.h"

#define CC_BAD_MAX 64    /* remote copies remembered as unusable */
#define CC_STREAM_MAX 16 /* remote caches streamed into one load at once (each its own connection) */

struct chunkcache {
	struct store *st; /* NULL: compute everything, store nothing */
	struct remote *remote; /* owned; NULL: none, or given up */
	char *remote_url; /* owned: for the streams' own connections */
	bool stream;      /* stream remote caches into a load (default; $KVBLEND_REMOTE_STREAM=0: fetch whole first) */
	bool no_push;     /* the remote refused an upload: read it only */
	char bad[CC_BAD_MAX][STORE_KEY_HEX + 1]; /* keys whose remote copy proved unusable: computed here, replaced there */
	int n_bad;
	int dtype;
	const char *tool;
	int argc;
	char **argv;
	void (*warn)(void *ctx, int id, const char *msg); /* NULL: troubles survived go unsaid */
	void *warn_ctx;
	void (*progress)(void *ctx, uint64_t done, uint64_t total); /* NULL: none */
	void *progress_ctx;
	bool similar;     /* misses built from similar stored chunks first */
	struct chunkcache_similar sim;
	struct kv_cache staging; /* owned: chunkcache_staging's, n_ctx 0 until asked for */
};

int chunkcache_open(struct chunkcache **out, const char *dir, bool store, int dtype)
{
	struct chunkcache *cc = kb_calloc(1, sizeof *cc);
	if (!cc)
		return KB_ERR_NOMEM;
	cc->dtype = dtype;
	cc->tool = "kvblend";
	if (store) {
		int rc = store_open(&cc->st, dir);
		if (rc == KB_OK && dtype < 0)
			rc = store_default_dtype(cc->st, &cc->dtype);
		if (rc) {
			chunkcache_close(cc);
			return rc;
		}
	}
	if (cc->dtype < 0)
		cc->dtype = KVC_F16;
	*out = cc;
	return KB_OK;
}

void chunkcache_close(struct chunkcache *cc)
{
	if (!cc)
		return;
	remote_close(cc->remote);
	free(cc->remote_url);
	store_close(cc->st);
	kv_cache_free(&cc->staging);
	free(cc);
}

void chunkcache_set_tool(struct chunkcache *cc, const char *tool, int argc, char **argv)
{
	cc->tool = tool;
	cc->argc = argc;
	cc->argv = argv;
}

struct store *chunkcache_store(struct chunkcache *cc)
{
	return cc->st;
}

void chunkcache_set_warn(struct chunkcache *cc, void (*warn)(void *ctx, int id, const char *msg), void *ctx)
{
	cc->warn = warn;
	cc->warn_ctx = ctx;
}

void chunkcache_set_progress(struct chunkcache *cc, void (*fn)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
	cc->progress = fn;
	cc->progress_ctx = ctx;
}

static void warn(struct chunkcache *cc, int id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn(struct chunkcache *cc, int id, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (!cc->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cc->warn(cc->warn_ctx, id, msg);
}

/* ---- the remote tier ---- */

int chunkcache_set_remote(struct chunkcache *cc, const char *url)
{
	if (!url)
		url = getenv("KVBLEND_REMOTE");
	if (!url || !*url)
		return KB_OK;
	if (!cc->st)
		return kb_fail(KB_ERR_ARG, "a remote needs the store (the store is its local cache)");
	remote_close(cc->remote);
	cc->remote = NULL;
	free(cc->remote_url);
	if (!(cc->remote_url = strdup(url)))
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	const char *s = getenv("KVBLEND_REMOTE_STREAM");
	cc->stream = !(s && !strcmp(s, "0"));
	return remote_open(&cc->remote, url, NULL);
}

/* Was key's remote copy found unusable in this process? */
static bool remote_bad(const struct chunkcache *cc, const char *key)
{
	for (int i = 0; i < cc->n_bad; i++)
		if (!strcmp(cc->bad[i], key))
			return true;
	return false;
}

static void mark_remote_bad(struct chunkcache *cc, const char *key)
{
	if (remote_bad(cc, key))
		return;
	memcpy(cc->bad[cc->n_bad % CC_BAD_MAX], key, STORE_KEY_HEX + 1);
	cc->n_bad = cc->n_bad < CC_BAD_MAX ? cc->n_bad + 1 : CC_BAD_MAX;
}

struct remote *chunkcache_remote(struct chunkcache *cc)
{
	return cc->remote;
}

/* The remote cannot be reached (kb_error() says why): said once, then no more
 * asking it. */
static void remote_gone(struct chunkcache *cc, int id)
{
	warn(cc, id, "%s; going on without the remote (computing what the store lacks)", kb_error());
	remote_close(cc->remote);
	cc->remote = NULL;
}

/* Object name of key on the remote. */
static void remote_object(const char *key, char name[STORE_KEY_HEX + 5])
{
	snprintf(name, STORE_KEY_HEX + 5, "%s.kvc", key);
}

static int fetch(struct chunkcache *cc, const char *key, int id, struct chunkcache_stats *st)
{
	if (!cc->remote || !cc->st || remote_bad(cc, key))
		return KB_EOF;
	char name[STORE_KEY_HEX + 5];
	remote_object(key, name);
	struct store_put p;
	if (store_put_begin(cc->st, key, &p)) {
		char why[600];
		snprintf(why, sizeof why, "%s", kb_error());
		kb_fail(KB_ERR_IO, "the remote's caches cannot be kept in the store: %s", why);
		remote_gone(cc, id);
		return KB_EOF;
	}
	double t0 = kb_now();
	uint64_t size = 0;
	int rc = remote_get(cc->remote, name, p.fd, &size);
	if (rc) {
		store_put_abort(cc->st, &p);
		if (rc != KB_EOF && remote_down(cc->remote))
			remote_gone(cc, id);
		else if (rc != KB_EOF)
			warn(cc, id, "%s; computing it instead", kb_error());
		return KB_EOF;
	}
	if (store_put_commit_verified(cc->st, &p, NULL)) { /* never kept: a broken download is a miss */
		warn(cc, id, "the remote's copy is unusable (%s); not kept, computing it instead", kb_error());
		mark_remote_bad(cc, key);
		return KB_EOF;
	}
	if (st) {
		st->fetched++;
		st->bytes_fetched += size;
		st->t_fetch += kb_now() - t0;
	}
	return KB_OK;
}

int chunkcache_fetch(struct chunkcache *cc, const char *key, struct chunkcache_stats *st)
{
	return fetch(cc, key, -1, st);
}

/* Write-through: key's stored object onto the remote, unless it is there.
 * true when it was uploaded. */
static bool push(struct chunkcache *cc, const char *key, int id)
{
	if (!cc->remote || cc->no_push)
		return false;
	char name[STORE_KEY_HEX + 5], *path = NULL;
	remote_object(key, name);
	bool replace = remote_bad(cc, key), uploaded = false; /* replace: its copy there is broken */
	int rc = replace ? KB_EOF : remote_head(cc->remote, name, NULL);
	if (rc == KB_EOF && (rc = store_has(cc->st, key, &path)) == KB_OK) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = KB_EOF; /* evicted meanwhile: nothing to upload */
		} else {
			rc = remote_put(cc->remote, name, fd);
			uploaded = rc == KB_OK;
			close(fd);
		}
	}
	free(path);
	if (rc >= KB_EOF)
		return uploaded;
	if (remote_down(cc->remote)) {
		remote_gone(cc, id);
	} else {
		warn(cc, id, "%s; not writing to the remote from here on (reading it still)", kb_error());
		cc->no_push = true;
	}
	return false;
}

bool chunkcache_push(struct chunkcache *cc, const char *key)
{
	return push(cc, key, -1);
}

/* A stored object that cannot be used (kb_error() says why) goes from the
 * store, so it is never served again; the chunk is computed instead. */
static void drop_unusable(struct chunkcache *cc, int id, const char *key)
{
	char why[600];
	snprintf(why, sizeof why, "%s", kb_error());
	if (store_remove(cc->st, key) < KB_EOF)
		warn(cc, id, "%s; computing it instead (and it cannot be removed from the store: %s)", why, kb_error());
	else
		warn(cc, id, "%s; removed from the store, computing it instead", why);
}

/* Store a computed cache; a store that fails costs the next run a recompute,
 * not this one its result. */
static void store_or_warn(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
			  const int32_t *tokens, int n, const char *key, double cost, int id);

/* key's object opened: from the store, else fetched from the remote into
 * the store first. KB_OK and *fd, KB_EOF on a miss, or the store's error. */
static int get_fd(struct chunkcache *cc, const char *key, int id, struct chunkcache_stats *st, int *fd)
{
	int rc = store_get_fd(cc->st, key, fd);
	if (rc == KB_EOF && fetch(cc, key, id, st) == KB_OK)
		rc = store_get_fd(cc->st, key, fd);
	return rc;
}

/* Read key's object into slots from slot0. KB_OK, KB_EOF on a miss, or an
 * error when the object is there but unusable (the caller recomputes it). */
static int load_stored(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
		       const int32_t *tokens, int n, const char *key, uint64_t *bytes, struct chunkcache_stats *cst)
{
	int fd, rc = get_fd(cc, key, -1, cst, &fd);
	if (rc)
		return rc;
	struct stat sb;
	struct kvc_reader *r = NULL;
	const struct kvc_header *h;
	if (fstat(fd, &sb) == 0)
		*bytes = (uint64_t)sb.st_size;
	if ((rc = kvc_reader_open_fd(&r, fd, key)) == KB_OK && (rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		if (h->n_tokens != n || memcmp(h->tokens, tokens, (size_t)n * sizeof *tokens) != 0)
			rc = kb_fail(KB_ERR_MISMATCH, "stored object %.12s… holds other tokens", key);
		else if (kvc_is_sparse(h))
			rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is token-evicted", key);
		else {
			kv->n = slot0;
			rc = kvfile_read(r, h, m, kv);
		}
	} else if (rc == KB_EOF) {
		rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is empty", key);
	}
	kvc_reader_free(r);
	close(fd);
	return rc;
}

/* Compute the chunk alone into its slots, positions 0..n-1. */
static int compute(const struct model *m, struct model_ws *ws, struct kv_cache *kv, int slot0,
		   const int32_t *tokens, int n)
{
	int32_t *pos = kb_malloc((size_t)n * sizeof *pos);
	if (!pos)
		return KB_ERR_NOMEM;
	for (int i = 0; i < n; i++)
		pos[i] = i;
	kv->n = slot0;
	int rc = model_forward_seqs(m, ws, kv, tokens, pos, &n, 1, NULL);
	free(pos);
	return rc;
}

struct kv_cache *chunkcache_staging(struct chunkcache *cc, const struct model *m, int n)
{
	struct kv_cache *kv = &cc->staging;
	if (kv->n_ctx < n || kv->n_layer != m->hp.n_layer || kv->kv_dim != m->hp.n_kv_head * m->hp.head_dim) {
		kv_cache_free(kv);
		memset(kv, 0, sizeof *kv);
		if (kv_cache_init(kv, m, n)) /* its n_ctx is 0 again */
			return NULL;
	}
	kv->n = 0;
	return kv;
}

int32_t *chunkcache_ape_tokens(const int32_t *prefix, int n_prefix, const int32_t *chunk, int n)
{
	int32_t *t = kb_malloc((size_t)(n_prefix + n > 0 ? n_prefix + n : 1) * sizeof *t);
	if (t && n_prefix > 0)
		memcpy(t, prefix, (size_t)n_prefix * sizeof *t);
	if (t && n > 0)
		memcpy(t + n_prefix, chunk, (size_t)n * sizeof *t);
	return t;
}

int chunkcache_put(struct chunkcache *cc, const struct model *m, const struct kv_cache *kv, int slot0, int n,
		   const char *key, double cost)
{
	return chunkcache_put_doc(cc, m, kv, slot0, n, key, cost, NULL, -1, NULL);
}

int chunkcache_put_doc(struct chunkcache *cc, const struct model *m, const struct kv_cache *kv, int slot0, int n,
		       const char *key, double cost, const char *doc, int64_t seq, const char *parent)
{
	struct store_put p;
	int rc = store_put_begin(cc->st, key, &p);
	if (rc)
		return rc;
	struct kvc_header h;
	kvfile_header(&h, m, kv, slot0, n, NULL, cc->dtype, cc->tool, cc->argc, cc->argv);
	if ((rc = kvfile_write_fd(p.fd, &h, kv, slot0))) {
		store_put_abort(cc->st, &p);
		return rc;
	}
	struct store_meta meta = { .n_tokens = n, .cost = cost, .tool = cc->tool };
	memcpy(meta.model_fp, m->fingerprint, 32);
	if ((rc = store_put_commit(cc->st, &p, &meta)) != KB_OK)
		return rc;
	/* its sketch, so that an edit of it finds it */
	uint64_t sk[SIMILAR_HASHES];
	int64_t bands[SIMILAR_BANDS];
	similar_sketch(kv->tok + slot0, n, sk);
	similar_bands(sk, bands);
	if (store_sketch_put(cc->st, key, doc, seq, parent, sk, SIMILAR_HASHES, bands, SIMILAR_BANDS) < KB_EOF)
		warn(cc, -1, "its sketch cannot be recorded: %s", kb_error());
	(void)push(cc, key, -1);
	return KB_OK;
}

/* ---- reuse across edits ---- */

void chunkcache_set_similar(struct chunkcache *cc, const struct chunkcache_similar *o)
{
	cc->similar = o != NULL;
	if (o)
		cc->sim = *o;
}

/* Read key's object, whatever its tokens, into pk (made to its size). KB_OK,
 * KB_EOF when it is not stored, or an error. */
static int load_parent(struct chunkcache *cc, const struct model *m, const char *key, struct kv_cache *pk)
{
	int fd, rc = get_fd(cc, key, -1, NULL, &fd);
	if (rc)
		return rc;
	struct kvc_reader *r = NULL;
	const struct kvc_header *h;
	if ((rc = kvc_reader_open_fd(&r, fd, key)) == KB_OK && (rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		if (kvc_is_sparse(h) || h->n_tokens <= 0)
			rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is token-evicted or empty", key);
		else if ((rc = kv_cache_init(pk, m, h->n_tokens)) == KB_OK)
			rc = kvfile_read(r, h, m, pk);
	} else if (rc == KB_EOF) {
		rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is empty", key);
	}
	kvc_reader_free(r);
	close(fd);
	return rc;
}

int chunkcache_build_similar(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
			     const int32_t *tokens, int n, const char *key, const char *doc, int64_t seq,
			     const struct chunkcache_similar *o, struct similar_stats *st,
			     char parent[STORE_KEY_HEX + 1], double *sim, bool *by_doc)
{
	if (!cc->st)
		return kb_fail(KB_ERR_ARG, "reuse across edits needs a store");
	uint64_t sk[SIMILAR_HASHES];
	int64_t bands[SIMILAR_BANDS];
	char model_hex[STORE_KEY_HEX + 1];
	struct store_similar cand;
	similar_sketch(tokens, n, sk);
	similar_bands(sk, bands);
	hash_hex(m->fingerprint, 32, model_hex);
	int rc = store_sketch_find(cc->st, model_hex, key, doc, seq, sk, SIMILAR_HASHES, bands, SIMILAR_BANDS,
				   o->min_sim, &cand);
	if (rc)
		return rc;
	struct kv_cache pk = { 0 };
	double t0 = kb_now();
	if ((rc = load_parent(cc, m, cand.key, &pk)) == KB_EOF)
		rc = KB_EOF; /* gone meanwhile: no candidate */
	else if (rc == KB_OK)
		rc = similar_rebuild(m, &pk, 0, pk.n, tokens, n, &o->bo, kv, slot0, st);
	kv_cache_free(&pk);
	if (rc)
		return rc;
	const int n_kv = kv->n;
	if (chunkcache_put_doc(cc, m, kv, slot0, n, key, kb_now() - t0, doc, seq, cand.key)) {
		warn(cc, -1, "its cache was built but cannot be stored: %s", kb_error());
	} else { /* as stored, as store_or_warn does */
		uint64_t bytes;
		struct chunkcache_stats ignore = { 0 };
		(void)load_stored(cc, m, kv, slot0, tokens, n, key, &bytes, &ignore);
		kv->n = n_kv;
	}
	if (parent)
		memcpy(parent, cand.key, sizeof cand.key);
	if (sim)
		*sim = cand.similarity;
	if (by_doc)
		*by_doc = cand.by_doc;
	return KB_OK;
}

/* A miss: built from a similar stored chunk when asked and one is there, else
 * computed; stored either way. Counts go to st. */
static int compute_miss(struct chunkcache *cc, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
			int slot0, const int32_t *tokens, int n, const char *key, const char *doc, int64_t seq,
			int id, struct chunkcache_stats *st)
{
	double t0 = kb_now();
	st->misses++;
	if (cc->similar && cc->st) {
		struct similar_stats ss;
		char parent[STORE_KEY_HEX + 1];
		double sim = 0;
		bool by_doc = false;
		int rc = chunkcache_build_similar(cc, m, kv, slot0, tokens, n, key, doc, seq, &cc->sim, &ss, parent,
						  &sim, &by_doc);
		if (rc == KB_OK) {
			st->t_compute += kb_now() - t0;
			st->similar++;
			st->tokens_similar += (uint64_t)n;
			st->tokens_reused += (uint64_t)ss.n_reused;
			if (cc->sim.report)
				cc->sim.report(cc->sim.ctx, id, parent, sim, by_doc, &ss);
			return KB_OK;
		}
		if (rc != KB_EOF)
			warn(cc, id, "it cannot be built from a similar chunk (%s); computing it", kb_error());
	}
	int rc = compute(m, ws, kv, slot0, tokens, n);
	double cost = kb_now() - t0;
	st->t_compute += cost;
	if (rc == KB_OK && cc->st)
		store_or_warn(cc, m, kv, slot0, tokens, n, key, cost, id);
	return rc;
}

int chunkcache_load(struct chunkcache *cc, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		    int slot0, const int32_t *tokens, int n, char *key_out, struct chunkcache_stats *st)
{
	char key[STORE_KEY_HEX + 1];
	struct chunkcache_stats dummy = { 0 };
	if (!st)
		st = &dummy;
	if (n <= 0)
		return kb_fail(KB_ERR_ARG, "an empty chunk has no cache");
	if (slot0 < 0 || n > kv->n_ctx - slot0)
		return kb_fail(KB_ERR_ARG, "a chunk of %d tokens does not fit the context at slot %d", n, slot0);
	store_key(m->fingerprint, tokens, (size_t)n, key);
	if (key_out)
		memcpy(key_out, key, sizeof key);
	if (cc->st) {
		uint64_t bytes = 0;
		double t0 = kb_now();
		int rc = load_stored(cc, m, kv, slot0, tokens, n, key, &bytes, st);
		if (rc == KB_OK) {
			st->hits++;
			st->bytes_read += bytes;
			st->t_load += kb_now() - t0;
			return KB_OK;
		}
		if (rc != KB_EOF)
			drop_unusable(cc, -1, key);
	}
	return compute_miss(cc, m, ws, kv, slot0, tokens, n, key, NULL, -1, -1, st);
}

static void store_or_warn(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
			  const int32_t *tokens, int n, const char *key, double cost, int id)
{
	if (chunkcache_put(cc, m, kv, slot0, n, key, cost)) {
		warn(cc, id, "its cache was computed but cannot be stored: %s", kb_error());
		return;
	}
	/* this run uses what every later one will read, not the f32 values
	 * before the stored type's rounding: a first blend equals the next ones
	 * bit for bit (should the read fail, the computed values stand) */
	uint64_t bytes;
	struct chunkcache_stats ignore = { 0 };
	const int n_kv = kv->n;
	(void)load_stored(cc, m, kv, slot0, tokens, n, key, &bytes, &ignore);
	kv->n = n_kv;
}

/* ---- pipelined loading ---- */

/* ---- remote caches streamed into a load ----
 * A part missing from the store but on the remote is not fetched whole before
 * the load: a thread downloads it (its own connection) into a temporary file
 * of the store and, byte for byte, into a socket that the part's kvc reader
 * reads, so the loader takes layer 0 while later layers are still on the wire,
 * and the reader checks each layer's checksum as it arrives. A cut transfer
 * continues with a ranged GET (remote_get_stream). At the end of the load a
 * stream whose every byte was read and checked goes into the store
 * (store_put_commit_verified); one that failed is dropped, its key remembered as bad
 * (computed, and replaced on the remote), and the load retried. */

struct stream {
	struct chunkcache *cc;
	struct remote *r;        /* owned: this stream's connection */
	char key[STORE_KEY_HEX + 1];
	struct store_put put;    /* the temporary file that also gets every byte */
	bool put_open;
	int sock[2];             /* [0] the reader's end, [1] the thread's; -1 closed */
	pthread_t thread;
	bool started;
	int rc;                  /* the transfer's: KB_OK, KB_EOF (absent) or an error */
	char msg[600];           /* its message */
	bool down;               /* the remote could not be reached */
	bool cancelled;          /* the reader stopped reading (set before its end is closed) */
	bool cut_by_reader;      /* the transfer ended because the reader stopped, not by a fault */
	uint64_t size;           /* bytes that arrived */
	double seconds;
};

static int stream_sink(void *ctx, const void *p, size_t n)
{
	struct stream *s = ctx;
	if (kb_write_all(s->put.fd, p, n))
		return -1;
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(s->sock[1], c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1; /* the reader is gone */
		c += w, n -= (size_t)w;
	}
	return 0;
}

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	char name[STORE_KEY_HEX + 5];
	remote_object(s->key, name);
	double t0 = kb_now();
	s->rc = remote_get_stream(s->r, name, stream_sink, s, &s->size);
	s->seconds = kb_now() - t0;
	if (s->rc) {
		snprintf(s->msg, sizeof s->msg, "%s", kb_error());
		s->down = remote_down(s->r);
		s->cut_by_reader = __atomic_load_n(&s->cancelled, __ATOMIC_ACQUIRE);
	}
	close(s->sock[1]); /* the reader sees the end */
	s->sock[1] = -1;
	return NULL;
}

/* Start streaming key's remote object. KB_OK, or an error (nothing started). */
static int stream_start(struct chunkcache *cc, const char *key, struct stream *s)
{
	*s = (struct stream){ .cc = cc, .sock = { -1, -1 } };
	memcpy(s->key, key, sizeof s->key);
	int rc = remote_open(&s->r, cc->remote_url, NULL);
	if (rc == KB_OK && (rc = store_put_begin(cc->st, key, &s->put)) == KB_OK)
		s->put_open = true;
	if (rc == KB_OK && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->sock) < 0)
		rc = kb_fail(KB_ERR_IO, "a socket for a remote cache: %s", strerror(errno));
	if (rc == KB_OK && pthread_create(&s->thread, NULL, stream_main, s) != 0)
		rc = kb_fail(KB_ERR_IO, "cannot start a thread for a remote cache");
	if (rc == KB_OK) {
		s->started = true;
		return KB_OK;
	}
	for (int i = 0; i < 2; i++)
		if (s->sock[i] >= 0)
			close(s->sock[i]);
	if (s->put_open)
		store_put_abort(cc->st, &s->put);
	remote_close(s->r);
	*s = (struct stream){ .sock = { -1, -1 } };
	return rc;
}

/* Stop reading s (its thread ends when it next writes) and wait for it. */
static void stream_join(struct stream *s)
{
	__atomic_store_n(&s->cancelled, true, __ATOMIC_RELEASE);
	if (s->sock[0] >= 0)
		close(s->sock[0]);
	s->sock[0] = -1;
	if (s->started)
		pthread_join(s->thread, NULL);
	s->started = false;
}

/* After the load: keep what arrived whole and was read whole (ok), else drop
 * it; warn of what went wrong unless the caller has (said). KB_OK when kept. */
static int stream_finish(struct stream *s, bool ok, int id, struct chunkcache_stats *st)
{
	struct chunkcache *cc = s->cc;
	stream_join(s);
	int rc = KB_EOF;
	if (ok && s->rc == KB_OK) {
		s->put_open = false;
		if ((rc = store_put_commit_verified(cc->st, &s->put, NULL)) == KB_OK) {
			st->fetched++;
			st->bytes_fetched += s->size;
			st->t_fetch += s->seconds;
		} else {
			warn(cc, id, "a cache from the remote cannot be stored: %s", kb_error());
		}
	}
	if (s->put_open)
		store_put_abort(cc->st, &s->put);
	s->put_open = false;
	remote_close(s->r);
	s->r = NULL;
	return rc;
}

/* The stream's transfer failed (s->rc): a miss, said as fetch() says it. */
static void stream_failed(struct stream *s, int id)
{
	struct chunkcache *cc = s->cc;
	if (s->rc == KB_EOF || !cc->remote || s->cut_by_reader) /* absent, given up, or not the transfer's fault */
		return;
	kb_fail(s->rc, "%s", s->msg);
	if (s->down)
		remote_gone(cc, id);
	else
		warn(cc, id, "%s; computing it instead", s->msg);
}

struct hit {
	struct kvc_reader *r;
	int fd;
	int slot0;
	int id; /* chunkcache_part.id */
	char *bad; /* owned: why its object failed to read (NULL: it did not) */
	char key[STORE_KEY_HEX + 1];
	struct stream *stream; /* in ld->streams: arriving from the remote (NULL: a stored object) */
};

struct chunkcache_loading {
	struct chunkcache *cc;
	struct kv_cache *kv;
	int n_layer;
	struct hit *hits; /* owned, [n_hits] */
	int n_hits;
	struct stream *streams; /* owned, [n_streams]: remote caches being streamed */
	int n_streams;
	int *stream_of;   /* owned, [n_parts]: each part's stream, or -1 */
	struct chunkcache_stats *st;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int loaded;       /* layers [0, loaded) of every hit are in kv */
	int rc;           /* the loader's first error */
	char msg[512];    /* its message (kb_error is per thread) */
	double t_load;
};

/* Layer l of hit h into kv; on failure h->bad says why. */
static int read_layer(struct chunkcache_loading *ld, struct hit *h, int l)
{
	int got = l < ld->n_layer ? kvc_reader_layer(h->r, kv_k(ld->kv, l, h->slot0), kv_v(ld->kv, l, h->slot0),
						     (size_t)ld->kv->kv_dim)
				  : kvc_reader_layer(h->r, NULL, NULL, 0);
	int rc = KB_OK;
	if (l < ld->n_layer && got != l)
		rc = got < 0 && got != KB_EOF ? got
			: kb_fail(KB_ERR_FORMAT, "stored object %.12s…: layer %d missing", h->key, l);
	else if (l == ld->n_layer && got != KB_EOF)
		rc = got < 0 ? got : kb_fail(KB_ERR_FORMAT, "stored object %.12s…: more layers than the model has", h->key);
	if (rc && !(h->bad = strdup(kb_error())))
		h->bad = "";
	return rc;
}

/* Layer by layer, every hit's; a hit that fails stops the waiters (its K/V
 * are wrong from there on) but the others are read to their end record, so
 * that every unusable object is found in one pass. */
static void *loader_main(void *arg)
{
	struct chunkcache_loading *ld = arg;
	const double t0 = kb_now();
	int rc = KB_OK;
	for (int l = 0; l <= ld->n_layer; l++) { /* l == n_layer: the end records */
		for (int i = 0; i < ld->n_hits; i++) {
			struct hit *h = &ld->hits[i];
			int r = h->bad ? KB_OK : read_layer(ld, h, l);
			if (r && rc == KB_OK)
				rc = r, snprintf(ld->msg, sizeof ld->msg, "%s", kb_error());
		}
		pthread_mutex_lock(&ld->mu);
		if (rc == KB_OK && l < ld->n_layer)
			ld->loaded = l + 1;
		ld->rc = rc;
		pthread_cond_broadcast(&ld->cv);
		pthread_mutex_unlock(&ld->mu);
	}
	pthread_mutex_lock(&ld->mu);
	ld->t_load = kb_now() - t0;
	pthread_cond_broadcast(&ld->cv);
	pthread_mutex_unlock(&ld->mu);
	return NULL;
}

/* Read the header of the cache in h->fd and check it for the part; on
 * failure the reader is freed (h->fd is the caller's). */
static int read_hit_header(const struct model *m, struct kv_cache *kv, const struct chunkcache_part *p,
			   struct hit *h)
{
	const struct kvc_header *hd;
	int rc;
	if ((rc = kvc_reader_open_fd(&h->r, h->fd, h->key)) == KB_OK &&
	    (rc = kvc_reader_next_header(h->r, &hd)) == KB_OK) {
		if (hd->n_tokens != p->n || memcmp(hd->tokens, p->tokens, (size_t)p->n * sizeof *p->tokens) != 0)
			rc = kb_fail(KB_ERR_MISMATCH, "stored object %.12s… holds other tokens", h->key);
		else if (kvc_is_sparse(hd))
			rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is token-evicted", h->key);
		else
			rc = kvc_check_model(hd, m->fingerprint, m->tok_fingerprint, m->hp.n_layer, m->hp.n_kv_head,
					     m->hp.head_dim);
	} else if (rc == KB_EOF) {
		rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is empty", h->key);
	}
	if (rc == KB_OK) {
		memcpy(kv->tok + p->slot0, hd->tokens, (size_t)p->n * sizeof *kv->tok);
		memcpy(kv->pos + p->slot0, hd->pos, (size_t)p->n * sizeof *kv->pos);
		return KB_OK;
	}
	kvc_reader_free(h->r);
	h->r = NULL;
	return rc;
}

/* Open key's object and read its header for the part; KB_EOF on a miss. */
static int open_hit(struct chunkcache *cc, const struct model *m, struct kv_cache *kv,
		    const struct chunkcache_part *p, struct hit *h, uint64_t *bytes, struct chunkcache_stats *st)
{
	struct stat sb;
	int rc = get_fd(cc, h->key, p->id, st, &h->fd);
	if (rc)
		return rc;
	if (fstat(h->fd, &sb) == 0)
		*bytes = (uint64_t)sb.st_size;
	if ((rc = read_hit_header(m, kv, p, h)))
		close(h->fd);
	return rc;
}

/* The part's cache from its stream: its header read as it arrives. KB_OK (a
 * hit whose layers are still arriving), or KB_EOF: a miss, already warned of
 * when it was a fault, the stream finished. */
static int open_stream_hit(struct chunkcache *cc, const struct model *m, struct kv_cache *kv,
			   const struct chunkcache_part *p, struct hit *h, struct stream *s,
			   struct chunkcache_stats *st)
{
	uint64_t bytes = 0;
	if (store_has(cc->st, h->key, NULL) == KB_OK) { /* stored meanwhile by another process */
		stream_finish(s, false, p->id, st);
		return open_hit(cc, m, kv, p, h, &bytes, st);
	}
	h->fd = s->sock[0];
	int rc = read_hit_header(m, kv, p, h);
	if (rc == KB_OK) {
		h->stream = s;
		return KB_OK;
	}
	char why[600];
	snprintf(why, sizeof why, "%s", kb_error());
	stream_join(s);
	h->fd = -1;
	if (s->rc != KB_OK && !s->cut_by_reader) {
		stream_failed(s, p->id);
	} else {
		mark_remote_bad(cc, h->key);
		warn(cc, p->id, "the remote's copy is unusable (%s); not kept, computing it instead", why);
	}
	stream_finish(s, false, p->id, st);
	return KB_EOF;
}

/* Start streaming the parts that the store lacks from the remote (at most
 * CC_STREAM_MAX; the rest are fetched whole when looked up). */
static void start_streams(struct chunkcache *cc, const struct model *m, const struct chunkcache_part *parts,
			  int n_parts, struct chunkcache_loading *ld)
{
	if (!cc->st || !cc->remote || !cc->stream || n_parts <= 0)
		return;
	int cap = n_parts < CC_STREAM_MAX ? n_parts : CC_STREAM_MAX;
	if (!(ld->streams = kb_calloc((size_t)cap, sizeof *ld->streams)) ||
	    !(ld->stream_of = kb_malloc((size_t)n_parts * sizeof *ld->stream_of))) {
		free(ld->streams);
		ld->streams = NULL;
		return; /* no streams: fetched whole instead */
	}
	for (int i = 0; i < n_parts; i++)
		ld->stream_of[i] = -1;
	for (int i = 0; i < n_parts && ld->n_streams < cap; i++) {
		const struct chunkcache_part *p = &parts[i];
		char key[STORE_KEY_HEX + 1];
		if (p->n <= 0)
			continue;
		store_key(m->fingerprint, p->tokens, (size_t)p->n, key);
		bool dup = false; /* the same chunk twice in one prompt: one stream */
		for (int j = 0; j < ld->n_streams && !dup; j++)
			dup = !strcmp(ld->streams[j].key, key);
		if (dup || remote_bad(cc, key) || store_has(cc->st, key, NULL) != KB_EOF)
			continue;
		if (stream_start(cc, key, &ld->streams[ld->n_streams])) {
			remote_gone(cc, p->id); /* the store cannot take it, or no thread: no remote */
			break;
		}
		ld->stream_of[i] = ld->n_streams++;
	}
}

int chunkcache_load_begin(struct chunkcache *cc, const struct model *m, struct model_ws *ws,
			  struct kv_cache *kv, const struct chunkcache_part *parts, int n_parts,
			  struct chunkcache_stats *st, struct chunkcache_loading **out)
{
	static struct chunkcache_stats dummy;
	struct chunkcache_loading *ld = kb_calloc(1, sizeof *ld);
	if (!ld || !(ld->hits = kb_calloc((size_t)(n_parts ? n_parts : 1), sizeof *ld->hits))) {
		free(ld);
		return KB_ERR_NOMEM;
	}
	*ld = (struct chunkcache_loading){ .cc = cc, .kv = kv, .n_layer = m->hp.n_layer, .hits = ld->hits,
					   .st = st ? st : &dummy };
	pthread_mutex_init(&ld->mu, NULL);
	pthread_cond_init(&ld->cv, NULL);
	start_streams(cc, m, parts, n_parts, ld);
	int rc = KB_OK, end = kv->n;
	for (int i = 0; i < n_parts && rc == KB_OK; i++) {
		const struct chunkcache_part *p = &parts[i];
		if (p->n <= 0 || p->slot0 < 0 || p->n > kv->n_ctx - p->slot0) {
			rc = kb_fail(KB_ERR_ARG, "a chunk of %d tokens does not fit the context at slot %d", p->n, p->slot0);
			break;
		}
		end = p->slot0 + p->n > end ? p->slot0 + p->n : end;
		if (cc->progress)
			cc->progress(cc->progress_ctx, (uint64_t)i, (uint64_t)n_parts);
		struct hit *h = &ld->hits[ld->n_hits];
		h->slot0 = p->slot0;
		h->id = p->id;
		store_key(m->fingerprint, p->tokens, (size_t)p->n, h->key);
		if (cc->st) {
			uint64_t bytes = 0;
			int si = ld->stream_of ? ld->stream_of[i] : -1;
			int hr = si >= 0 ? open_stream_hit(cc, m, kv, p, h, &ld->streams[si], ld->st)
					 : open_hit(cc, m, kv, p, h, &bytes, ld->st);
			if (hr == KB_OK) {
				ld->st->hits++;
				ld->st->bytes_read += bytes;
				ld->n_hits++;
				continue;
			}
			if (hr != KB_EOF)
				drop_unusable(cc, p->id, h->key);
		}
		/* a miss: compute it now (and store it) */
		rc = compute_miss(cc, m, ws, kv, p->slot0, p->tokens, p->n, h->key, p->doc, p->doc ? p->seq : -1, p->id,
				  ld->st);
	}
	kv->n = end;
	if (rc == KB_OK && cc->progress)
		cc->progress(cc->progress_ctx, (uint64_t)n_parts, (uint64_t)n_parts);
	if (rc == KB_OK && ld->n_hits > 0) {
		if (pthread_create(&ld->thread, NULL, loader_main, ld) != 0)
			rc = kb_fail(KB_ERR_IO, "cannot start the cache loader thread");
		else
			ld->started = true;
	}
	if (rc == KB_OK && !ld->started)
		ld->loaded = m->hp.n_layer;
	if (rc) {
		int r2 = chunkcache_load_end(ld, NULL);
		(void)r2;
		return rc;
	}
	*out = ld;
	return KB_OK;
}

int chunkcache_wait_layer(void *arg, int layer)
{
	struct chunkcache_loading *ld = arg;
	pthread_mutex_lock(&ld->mu);
	while (ld->loaded <= layer && ld->rc == KB_OK)
		pthread_cond_wait(&ld->cv, &ld->mu);
	int rc = ld->loaded > layer ? KB_OK : ld->rc;
	if (rc)
		kb_fail(rc, "%s", ld->msg);
	pthread_mutex_unlock(&ld->mu);
	return rc;
}

int chunkcache_load_end(struct chunkcache_loading *ld, bool *retry)
{
	if (retry)
		*retry = false;
	if (!ld)
		return KB_OK;
	if (ld->started)
		pthread_join(ld->thread, NULL);
	int rc = ld->rc;
	if (rc)
		kb_fail(rc, "%s", ld->msg);
	ld->st->t_load += ld->t_load;
	/* a stored object that did not read back whole goes: it is never served again */
	for (int i = 0; i < ld->n_hits; i++) {
		struct hit *h = &ld->hits[i];
		kvc_reader_free(h->r);
		if (h->stream) { /* from the remote: kept if it read whole, else never */
			struct stream *s = h->stream;
			stream_join(s);
			if (h->bad) {
				if (s->rc != KB_OK && !s->cut_by_reader) { /* the transfer's fault */
					stream_failed(s, h->id);
				} else {
					mark_remote_bad(ld->cc, h->key);
					warn(ld->cc, h->id, "the remote's copy is unusable (%s); not kept, computing it instead",
					     h->bad);
				}
				if (*h->bad)
					free(h->bad);
				if (retry)
					*retry = true;
			}
			ld->st->bytes_read += s->size;
			if (stream_finish(s, !h->bad, h->id, ld->st) != KB_OK && !h->bad && s->rc != KB_OK)
				stream_failed(s, h->id); /* read whole, but the transfer ended badly: not kept */
			continue;
		}
		close(h->fd);
		if (h->bad) {
			kb_fail(rc, "%s", h->bad);
			drop_unusable(ld->cc, h->id, h->key);
			if (*h->bad)
				free(h->bad);
			if (retry)
				*retry = true;
		}
	}
	for (int i = 0; i < ld->n_streams; i++) /* streams that never became hits (an error stopped the load) */
		if (ld->streams[i].r || ld->streams[i].put_open)
			stream_finish(&ld->streams[i], false, -1, ld->st);
	if (rc)
		kb_fail(rc, "%s", ld->msg);
	pthread_mutex_destroy(&ld->mu);
	pthread_cond_destroy(&ld->cv);
	free(ld->streams);
	free(ld->stream_of);
	free(ld->hits);
	free(ld);
	return rc;
}
