/* store.h — the cache store: content-addressed KV caches on disk and their index.
 *
 * A store is a directory:
 *
 *	DIR/index.db                 SQLite, WAL: one row per object (size, tokens,
 *	                             model, created, last used, hits, cost, pin,
 *	                             S3-FIFO state), plus the S3-FIFO ghost set
 *	DIR/objects/ab/cdef….kvc     the objects: one .kvc cache each, named by its
 *	                             key (the first two hex digits are the folder)
 *	DIR/objects/ab/.tmp-…        objects being written (never served)
 *
 * An object's key is SHA-256(model fingerprint (32 bytes) || its token ids as
 * int32 little-endian), in lower-case hex (store_key). An object is exactly one
 * .kvc cache whose header's model fingerprint and tokens give its key: the store
 * checks this when an object goes in (store_put_commit) and when it verifies
 * (store_verify), so a key always names what it claims.
 *
 * Many processes may use one store at once (make -j prefills, blends, evict):
 * every change to the set of objects — a file renamed into place, a file
 * unlinked — happens inside an SQLite write transaction (BEGIN IMMEDIATE), so
 * the files and the index change together as far as other processes can see.
 * A process killed at any point leaves nothing that is ever served as valid:
 *	- a temporary file is never served; store_verify/store_evict remove it once
 *	  no process holds it (its writer keeps an flock on it) and it is a minute old;
 *	- an object file with no index row is never served (a lookup needs the
 *	  row); store_verify adopts it if it reads back whole with good checksums and
 *	  the right key, else removes it;
 *	- an index row whose file is gone is a miss, and the lookup removes the row.
 * A lookup also compares the file's size with the row's; the full check of the
 * checksums is the reader's (kvc_reader verifies every layer as it reads) and
 * store_verify's.
 *
 * A struct store is one SQLite connection: use it from one thread at a time,
 * and open a new one in a child after fork() (never use the parent's).
 *
 * Errors: functions return KB_OK, KB_EOF for "no such key" where said, or a
 * status < KB_EOF with the message in kb_error() naming the store or the key.
 */
#ifndef KB_STORE_H
#define KB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define STORE_KEY_HEX 64          /* a key: 64 lower-case hex digits (+ NUL: 65 bytes) */
#define STORE_SCHEMA_VERSION 3    /* index.db's PRAGMA user_version (1: no dtype, no settings; 2: no sketches) */

struct store;

/* ---- opening ---- */

/* The default store directory: $KVBLEND_STORE, else $XDG_CACHE_HOME/kvblend,
 * else $HOME/.cache/kvblend (empty variables count as unset). Returns KB_OK
 * and *dir (malloc()ed, the caller frees), or KB_ERR_ARG when none is set. */
int store_default_dir(char **dir) KB_WUR;

/* Open the store in dir (NULL: store_default_dir), creating dir, dir/objects
 * and the index schema when missing (for writers: prefill). Sets WAL mode,
 * synchronous=NORMAL and a busy timeout, so concurrent processes wait for each
 * other instead of failing. A store the process cannot write is opened
 * read-only (store_readonly).
 * Refuses an index made by a newer kvblend (user_version > STORE_SCHEMA_VERSION:
 * KB_ERR_UNSUPPORTED). Returns KB_OK and *out, or KB_ERR_IO / KB_ERR_FORMAT
 * (index.db is not an SQLite database) / KB_ERR_NOMEM. */
int store_open(struct store **out, const char *dir) KB_WUR;
/* Open the existing store in dir (NULL: store_default_dir) for lookups and
 * maintenance: nothing is created. A missing folder or index.db is KB_ERR_ARG
 * ("'DIR': no such store", "'DIR': no cache store here"), so a mistyped --store
 * is an error rather than an empty store. Otherwise as store_open. */
int store_open_existing(struct store **out, const char *dir) KB_WUR;
/* true when the store was opened read-only (the process may not write
 * index.db or its folder): lookups work (hits are not counted, a broken entry
 * is a miss left in place); store_put_begin, store_pin, store_remove,
 * store_evict (but a dry run) and a repairing store_verify fail with KB_ERR_IO
 * and a message saying the store is read-only. */
bool store_readonly(const struct store *st);
/* Close the store; store_close(NULL) is a no-op. */
void store_close(struct store *st);
/* The store's directory, as given to store_open (owned by the store). */
const char *store_dir(const struct store *st);

/* ---- keys ---- */

/* The key of n tokens computed with the model whose fingerprint is model_fp
 * (struct model .fingerprint): SHA-256(model_fp || tokens as int32 LE), as 64
 * lower-case hex digits and a NUL in key. */
void store_key(const uint8_t model_fp[32], const int32_t *tokens, size_t n, char key[STORE_KEY_HEX + 1]);
/* true when key is 64 lower-case hex digits followed by a NUL. */
bool store_key_valid(const char *key);
/* The path where key's object lives (it may not exist): "DIR/objects/ab/cdef….kvc",
 * malloc()ed (the caller frees), or NULL with "out of memory" recorded. */
char *store_object_path(const struct store *st, const char *key) KB_WUR;

/* ---- lookups ---- */

/* Look key up and count a hit (last_used = now, hits += 1, and the S3-FIFO
 * frequency, up to 3). Returns KB_OK and, when path is not NULL, *path
 * (malloc()ed, the caller frees); KB_EOF on a miss: no row, no file (the row is
 * then removed), or a file whose size is not the row's (the entry is then
 * removed); KB_ERR_ARG for a malformed key; KB_ERR_IO.
 * The path may vanish if another process evicts the object before the caller
 * opens it: treat ENOENT then as a miss, or use store_get_fd. */
int store_get(struct store *st, const char *key, char **path) KB_WUR;
/* The same, returning the object opened read-only in *fd (the caller closes
 * it): the object cannot vanish from under the caller once it has the fd. */
int store_get_fd(struct store *st, const char *key, int *fd) KB_WUR;
/* Is key stored (row and file, sizes agreeing)? Counts no hit, changes no
 * usage. KB_OK and *path when path is not NULL; KB_EOF when not stored. */
int store_has(struct store *st, const char *key, char **path) KB_WUR;

/* One index row. */
struct store_entry {
	char key[STORE_KEY_HEX + 1];
	uint64_t size;           /* bytes of the object file */
	int64_t n_tokens;
	char model[STORE_KEY_HEX + 1]; /* model fingerprint, hex */
	double created;          /* unix seconds */
	double last_used;        /* unix seconds: the last hit, else created */
	uint64_t hits;
	double cost;             /* seconds the prefill took; < 0 when unknown (adopted objects) */
	bool pinned;
	int queue;               /* S3-FIFO queue: STORE_QUEUE_SMALL or STORE_QUEUE_MAIN */
	int freq;                /* S3-FIFO frequency, 0..3 */
	int64_t qseq;            /* S3-FIFO order in its queue (smaller = older) */
	char tool[32];           /* the tool that put it ("kvblend-prefill"; "" when unknown) */
	char dtype[8];           /* its layers' type, "f16", "kv4" (kvc_dtype_name); "" unknown (an
				    object indexed by a kvblend before index version 2, until verified) */
};
enum { STORE_QUEUE_SMALL = 0, STORE_QUEUE_MAIN = 1 };

/* The index row of key, without counting a hit (the file is not looked at).
 * KB_OK and *e, KB_EOF when there is no row. */
int store_entry_get(struct store *st, const char *key, struct store_entry *e) KB_WUR;
/* Call fn for every row, oldest first (by created); fn returns 0 to go on,
 * anything else stops the walk and is returned. KB_OK when all were seen. */
int store_list(struct store *st, int (*fn)(void *ctx, const struct store_entry *e), void *ctx) KB_WUR;

/* ---- writing an object ----
 *
 *	struct store_put p;
 *	if (store_has(st, key, NULL) == KB_OK) ...already there, skip the work...
 *	if ((rc = store_put_begin(st, key, &p))) ...
 *	if ((rc = kvfile_write_fd(p.fd, &h, kv, slot0))) { store_put_abort(st, &p); ... }
 *	struct store_meta meta = { .n_tokens = n, .cost = seconds, .tool = "kvblend-prefill" };
 *	memcpy(meta.model_fp, m->fingerprint, 32);
 *	if ((rc = store_put_commit(st, &p, &meta))) ...    // p is finished either way
 *	p.existed: another process had stored it first (ours was dropped)
 */
struct store_put {
	int fd;                  /* write the object here (write-only, at offset 0); owned: commit/abort close it */
	char key[STORE_KEY_HEX + 1];
	char *tmp;               /* owned: the temporary file's path */
	bool existed;            /* set by commit: the object was already there, this one was dropped */
};

/* What the index records about a new object. */
struct store_meta {
	int64_t n_tokens;        /* tokens in the cache */
	uint8_t model_fp[32];    /* fingerprint of the model that computed it */
	double cost;             /* seconds its computation took (the cost policy's "recompute cost"); < 0 unknown */
	const char *tool;        /* who wrote it, e.g. "kvblend-prefill"; may be NULL */
};

/* Start writing key's object: create a temporary file beside where it will
 * live (objects/ab/.tmp-PID-XXXXXX), locked with flock so no cleaner removes
 * it while this process lives. The caller writes the whole .kvc cache to p->fd,
 * then calls store_put_commit or store_put_abort (exactly one). Returns KB_OK
 * and *p; KB_ERR_ARG for a malformed key; KB_ERR_IO. On error *p needs no
 * cleanup. */
int store_put_begin(struct store *st, const char *key, struct store_put *p) KB_WUR;
/* Finish a put: read the written cache's header back and check that it is one
 * .kvc cache whose model fingerprint and tokens give the key (KB_ERR_MISMATCH
 * otherwise, KB_ERR_FORMAT if it is not a cache), fsync the file; then, in one
 * write transaction, insert the index row and rename the file into place
 * unless the key's object is already there (then drop it: p->existed); then
 * fsync the folder.
 * meta may be NULL: n_tokens, model and tool then come from the header and the
 * cost is unknown; given, its n_tokens and model_fp must match the header.
 * A duplicate put is not an error and never makes a second entry: the entry
 * already there stays as it is (hits, pin, cost). An object file with no row
 * (left by a writer killed before its row) is replaced by this one.
 * Returns KB_OK or an error; either way p is finished (fd closed, temporary
 * file gone, p->tmp freed). */
int store_put_commit(struct store *st, struct store_put *p, const struct store_meta *meta) KB_WUR;
/* store_put_commit for an object that came from elsewhere (the remote tier):
 * before it goes in, it is read whole — every layer's checksum, the end
 * record, nothing after it — so a truncated or corrupt download is never
 * stored (KB_ERR_FORMAT / KB_ERR_MISMATCH, the temporary file removed). */
int store_put_commit_verified(struct store *st, struct store_put *p, const struct store_meta *meta) KB_WUR;
/* Read the .kvc object in fd whole, as store_verify does: one cache, every
 * checksum and the end record sound, its model fingerprint and tokens giving
 * key. name names it in messages. KB_OK, or KB_ERR_FORMAT / KB_ERR_MISMATCH /
 * KB_ERR_IO with the message (for objects outside a store: a remote's). */
int store_object_check(int fd, const char *name, const char *key) KB_WUR;
/* Give up a put: close the fd, remove the temporary file. */
void store_put_abort(struct store *st, struct store_put *p);
/* Finish a put that replaces key's object with another form of the same cache
 * (kvblend evict --recompress): the new file is read whole and checked (one
 * cache, the key's model and tokens, every layer sound) and fsynced; then, in
 * one write transaction, it is renamed over the object and the row's size
 * updated (hits, pin, cost and times stay). A reader that has the old object
 * open keeps reading it. KB_OK; KB_EOF when the object went meanwhile (evicted):
 * nothing is put; or an error. Either way p is finished. */
int store_put_replace(struct store *st, struct store_put *p) KB_WUR;

/* ---- pins, removal ---- */

/* Pin (pinned = true) or unpin key: a pinned entry is never evicted.
 * KB_OK, KB_EOF when key is not in the index, KB_ERR_ARG for a malformed key. */
int store_pin(struct store *st, const char *key, bool pinned) KB_WUR;
/* Remove key (row, then file), pinned or not: e.g. when a reader found its
 * object corrupt. KB_OK, KB_EOF when there was no row and no file. */
int store_remove(struct store *st, const char *key) KB_WUR;

/* ---- eviction ----
 *
 * Brings the bytes of the store's objects under a budget, removing whole
 * objects, never pinned ones. The order, by policy:
 *
 * STORE_LRU     least recently used first (last_used, then created, then key).
 * STORE_LFU     fewest hits first, ties broken by least recently used.
 * STORE_S3FIFO  S3-FIFO (Yang et al., SOSP 2023) over the persistent index:
 *               a new object enters the small queue S, or the main queue M if
 *               its key is in the ghost set G (it was evicted from S and came
 *               back); a hit raises its frequency (0..3). Eviction pops from S
 *               while S holds more than 10% of the budget (or M is empty): an
 *               object hit since it entered S (freq >= 1; the paper asks for
 *               more than one hit, but chunk caches are large and reused
 *               rarely) moves to M's head keeping its frequency, any other is
 *               removed and its key joins G. Else it pops from M: freq > 0
 *               goes back to M's head with freq - 1, freq 0 is removed. G
 *               keeps as many keys as M holds objects, at least 64 (oldest
 *               dropped). Adapted to a persistent index: queue, frequency and
 *               order are columns (queue, freq, qseq), G a table (ghosts), so
 *               every evict run continues the same queues; the queues' sizes
 *               are measured in bytes against the budget given to this run,
 *               and pinned objects stay out of both queues.
 * STORE_COST    keep what is expensive to recompute per byte, while it is in
 *               use: remove the lowest  cost / size * 2^(-age / half_life)
 *               first, age = now - last_used. cost is the put's seconds; an
 *               object whose cost is unknown (adopted by verify) is valued at
 *               the mean seconds per token of those known, times its tokens.
 *
 * Each removal deletes the row and unlinks the file in one write transaction
 * (unlink before COMMIT): no other process sees a row whose file is gone, and a
 * crash between the unlink and the commit leaves a row without a file, which a
 * lookup treats as a miss and removes. (The other order — commit, then unlink —
 * could leave an orphan that store_verify would adopt back.) A dry run does
 * everything in a transaction it rolls back, unlinking nothing: it reports
 * exactly what a real run would remove now.
 */
enum store_policy { STORE_LRU, STORE_LFU, STORE_S3FIFO, STORE_COST, STORE_POLICY_COUNT };
/* "lru", "lfu", "s3fifo", "cost"; "?" for another value. */
const char *store_policy_name(int policy);
/* The policy named (case-insensitive), or -1. */
int store_policy_from_name(const char *name);

#define STORE_HALF_LIFE_DEFAULT (24 * 3600.0) /* seconds */

struct store_evict_opts {
	enum store_policy policy;
	uint64_t max_bytes;      /* the budget: total object bytes after eviction <= this */
	bool dry_run;            /* report, remove nothing */
	double half_life;        /* STORE_COST: seconds; <= 0 means STORE_HALF_LIFE_DEFAULT */
};

struct store_evict_result {
	uint64_t n_removed, bytes_removed;  /* what went (or would go, dry run) */
	uint64_t n_left, bytes_left;        /* what stays */
	uint64_t n_pinned, bytes_pinned;    /* of which pinned */
	uint64_t n_temp_removed;            /* stale temporary files removed (not in a dry run) */
	uint64_t n_bad_rows;                /* index rows with a malformed key (planted or damaged):
	                                     * removed from the index, no file touched (a dry run
	                                     * only counts them) */
};

/* Called for each object removed (or that would be, dry run), in order:
 * reason is a short phrase ("lru: last used 2 h ago"). */
typedef void (*store_evict_fn)(void *ctx, const char *key, uint64_t size, const char *reason);

/* Evict by o->policy until the store's bytes are <= o->max_bytes, calling fn
 * (may be NULL) for each object. Stale temporary files are removed too
 * (not counted in the budget). Returns KB_OK and *res (may be NULL) — also when
 * pinned objects alone exceed the budget: then res->bytes_left > max_bytes —
 * or an error (nothing is removed from the index then). */
int store_evict(struct store *st, const struct store_evict_opts *o, store_evict_fn fn, void *ctx,
		struct store_evict_result *res) KB_WUR;

/* ---- statistics ---- */

struct store_stats {
	uint64_t entries, bytes, hits, tokens;
	uint64_t pinned, pinned_bytes;
	uint64_t small, small_bytes;   /* in S3-FIFO's small queue (the rest are in main) */
	uint64_t ghosts;               /* keys in S3-FIFO's ghost set */
	double oldest, newest;         /* created of the oldest / newest entry (0 when empty) */
	double last_used;              /* the most recent use (0 when empty) */
	int models;                    /* distinct model fingerprints */
};
/* Totals over the index. KB_OK and *s. */
int store_stats(struct store *st, struct store_stats *s) KB_WUR;

struct store_model_stats {
	char model[STORE_KEY_HEX + 1]; /* fingerprint, hex */
	uint64_t entries, bytes, hits, tokens;
	double oldest, newest, last_used;
};
/* Call fn for each model fingerprint in the index, most bytes first; fn returns
 * 0 to go on, anything else stops and is returned. KB_OK when all were seen. */
int store_stats_models(struct store *st, int (*fn)(void *ctx, const struct store_model_stats *m),
		       void *ctx) KB_WUR;

/* ---- settings ---- */

/* The dtype (enum kvc_dtype) the store's new objects are written in when the
 * writer is not told one: *dtype, or -1 when the store has none set (writers
 * then use f16). */
int store_default_dtype(struct store *st, int *dtype) KB_WUR;
/* Set it (dtype >= 0), or clear it (-1). */
int store_set_default_dtype(struct store *st, int dtype) KB_WUR;

/* ---- verification ---- */

/* What store_verify found. Every count but ok/live_temps/checked is a problem. */
struct store_verify_result {
	uint64_t checked;        /* objects read whole */
	uint64_t ok;             /* entries found sound */
	uint64_t missing;        /* rows whose file is gone */
	uint64_t bad_size;       /* rows whose file size differs */
	uint64_t corrupt;        /* objects that do not read back (checksum, truncation, wrong key) */
	uint64_t bad_rows;       /* rows with a malformed key or metadata that disagrees with the object */
	uint64_t orphans_adopted;/* valid objects with no row, now indexed */
	uint64_t orphans_removed;/* broken objects with no row, removed */
	uint64_t stale_temps;    /* temporary files of dead writers */
	uint64_t live_temps;     /* temporary files still being written (left alone) */
	uint64_t unknown;        /* files or folders the store does not make, objects of another
	                          * .kvc major version (left alone) */
	uint64_t db_errors;      /* lines of PRAGMA integrity_check other than "ok" */
	uint64_t repaired;       /* problems fixed (removed, adopted, corrected) */
};
/* Number of problems in r (0: the store was sound). */
uint64_t store_verify_problems(const struct store_verify_result *r);

/* Called for each problem: what is the key or the path relative to the store
 * ("objects/ab/.tmp-…"), problem says what is wrong, action what was done
 * ("removed", "adopted", "corrected", "left alone", or "found" without repair). */
typedef void (*store_verify_fn)(void *ctx, const char *what, const char *problem, const char *action);

/* Check the whole store: PRAGMA integrity_check; every row against its file
 * (exists, size) and every object by reading it whole with the kvc reader
 * (checksums of the header, every layer and the end record; exactly one cache;
 * its fingerprint and tokens give its key; tokens and model as the row says);
 * every file under objects/ against the index. With repair: broken entries
 * (row and file) are removed, valid orphans adopted (a row from the header:
 * created = last_used = the file's mtime, cost unknown), broken orphans and
 * stale temporary files removed, disagreeing row metadata corrected. Without
 * repair nothing changes. Anything but a regular file in an object's place (a
 * FIFO, a folder, a link) is a corrupt object (never opened in a way that
 * blocks or follows it). Each entry is judged under the write lock (without
 * repair too, rolled back; a read transaction on a read-only store) against
 * its row as it is at that moment and the file that was read, held open
 * meanwhile: an entry evicted or put again while it was read is skipped, so
 * verify never removes a sound cache that a writer has just renamed into place
 * nor reports one an evict is removing. Repairing needs a writable store
 * (KB_ERR_IO otherwise). Returns KB_OK and *r whatever was found (see
 * store_verify_problems), or an error that stopped the check. If index.db
 * itself is damaged, move it away and verify: every valid object is adopted
 * again (hits, costs and pins are lost). */
int store_verify(struct store *st, bool repair, store_verify_fn fn, void *ctx,
		 struct store_verify_result *r) KB_WUR;

/* ---- for tests ---- */

/* Use t (unix seconds) as "now" for everything the store records or compares
 * (last_used, created, ages, the temporary files' grace period); 0 goes back
 * to the real clock. */
void store_set_clock(struct store *st, double t);
/* Points where a test hook is called (to kill the process there). */
enum store_hook_point {
	STORE_HOOK_PUT_RENAMED,  /* commit: the object renamed into place, its row not committed */
	STORE_HOOK_EVICT_UNLINKED, /* evict: an object unlinked, the transaction not committed */
	STORE_HOOK_VERIFY_LISTED, /* verify: a row listed, its object not read yet */
	STORE_HOOK_VERIFY_READ,  /* verify: an object read whole, not yet judged against its row */
};
void store_set_test_hook(struct store *st, void (*fn)(void *ctx, int point), void *ctx);

/* ---- sketches: reuse across edits (similar.h) ----
 * An object may have a sketch row: the document and sequence number of the
 * chunk it caches (when known), the key of the cache it was built from (its
 * parent, when it was built from a similar one), its MinHash sketch and the
 * sketch's LSH band keys. The rows go when the object goes. Objects stored by
 * a kvblend before index version 3 have none. */

/* Record key's sketch (n_hash values) and band keys (n_bands): doc NULL and
 * seq < 0 when unknown, parent NULL when computed from scratch. Replaces a
 * row already there. KB_OK; nothing is recorded for a key without an object
 * row (KB_EOF); KB_ERR_IO on a read-only store. */
int store_sketch_put(struct store *st, const char *key, const char *doc, int64_t seq, const char *parent,
		     const uint64_t *sketch, int n_hash, const int64_t *bands, int n_bands) KB_WUR;

/* A stored chunk like the one sketched. */
struct store_similar {
	char key[STORE_KEY_HEX + 1];
	double similarity;  /* estimated: the share of equal sketch values */
	bool by_doc;        /* found as the same (doc, seq), not by the bands */
};
/* The stored object most like the chunk whose sketch and band keys are given,
 * among the objects of the model with fingerprint model_fp (hex) other than
 * self (its own key, may be NULL): first the latest of the same (doc, seq)
 * (when doc is not NULL and seq >= 0) whose estimated similarity is at least
 * min_sim, else the most similar of those sharing a band key, again at least
 * min_sim. KB_OK and *out, KB_EOF when there is none. */
int store_sketch_find(struct store *st, const char *model_fp, const char *self, const char *doc, int64_t seq,
		      const uint64_t *sketch, int n_hash, const int64_t *bands, int n_bands, double min_sim,
		      struct store_similar *out) KB_WUR;
/* The parent recorded for key: KB_OK and parent (65 bytes; "" when key was
 * computed from scratch), KB_EOF when key has no sketch row. */
int store_sketch_parent(struct store *st, const char *key, char parent[STORE_KEY_HEX + 1]) KB_WUR;

#endif
