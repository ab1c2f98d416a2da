/* store.c — the cache store: opening, keys, lookups, pins, removal and
 * statistics (see store.h). Writing an object is store_put.c, eviction
 * store_evict.c, verification store_verify.c; what they share, store_impl.h.
 *
 * Locking: every change to the set of object files (rename into place, unlink)
 * is made while holding SQLite's write lock (BEGIN IMMEDIATE ... COMMIT), and
 * the index rows change in the same transaction. So for any other process the
 * files and the rows change together, and a check made under the lock ("is
 * there a row? is the file there?") stays true until COMMIT. The slow parts
 * (writing and fsyncing an object, reading one whole to verify it) happen
 * outside the lock; what they concluded is checked again under it.
 *
 * Durability: synchronous=NORMAL with WAL. A commit is then durable at the
 * next checkpoint rather than at once: a power cut may forget the last few
 * transactions but never corrupts the database. That is enough here because
 * the index is recoverable from the objects: a forgotten insert leaves an
 * orphan object (store_verify adopts it), a forgotten delete a row whose file
 * is gone (a lookup treats it as a miss). FULL would fsync the WAL at every
 * commit, and every lookup commits (the hit count), which would cost more than
 * it protects. The objects themselves are fsynced before they are renamed into
 * place, and their folder after.
 */
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "kvc.h"

/* ---- small helpers ---- */

double store_now(const struct store *st)
{
	if (st->clock > 0)
		return st->clock;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void store_hook(struct store *st, int point)
{
	if (st->hook)
		st->hook(st->hook_ctx, point);
}

int store_writable(const struct store *st, const char *what)
{
	return db_writable(&st->db, what);
}

int store_open_object(const char *path, const char *name, int *fd, struct stat *sb)
{
	*fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0) {
		if (errno == ENOENT)
			return KB_EOF;
		if (errno == ELOOP || errno == EISDIR || errno == ENXIO)
			return kb_fail(KB_ERR_FORMAT, "'%s': not a regular file", name);
		return kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno));
	}
	int rc = KB_OK;
	if (fstat(*fd, sb) < 0)
		rc = kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno));
	else if (!S_ISREG(sb->st_mode))
		rc = kb_fail(KB_ERR_FORMAT, "'%s': not a regular file", name);
	if (rc) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

int store_remove_path(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) < 0)
		return errno == ENOENT ? KB_OK : kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	if ((S_ISDIR(sb.st_mode) ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': cannot remove it: %s", path, strerror(errno));
	return KB_OK;
}

/* ---- SQLite ---- */

/* Run sql with one text parameter (?1); *changes gets the rows changed (may be NULL). */
int store_exec_key(struct store *st, const char *sql, const char *key, int *changes)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, sql);
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = db_run(&st->db, s, sql);
	if (!rc && changes)
		*changes = sqlite3_changes(st->db.h);
	return rc;
}

void store_copy_text(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

void store_read_entry(sqlite3_stmt *s, struct store_entry *e)
{
	memset(e, 0, sizeof *e);
	store_copy_text(e->key, sizeof e->key, sqlite3_column_text(s, 0));
	sqlite3_int64 size = sqlite3_column_int64(s, 1);
	e->size = size > 0 ? (uint64_t)size : 0;
	e->n_tokens = sqlite3_column_int64(s, 2);
	store_copy_text(e->model, sizeof e->model, sqlite3_column_text(s, 3));
	e->created = sqlite3_column_double(s, 4);
	e->last_used = sqlite3_column_double(s, 5);
	sqlite3_int64 hits = sqlite3_column_int64(s, 6);
	e->hits = hits > 0 ? (uint64_t)hits : 0;
	e->cost = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 7);
	e->pinned = sqlite3_column_int(s, 8) != 0;
	e->queue = sqlite3_column_int(s, 9) ? STORE_QUEUE_MAIN : STORE_QUEUE_SMALL;
	e->freq = sqlite3_column_int(s, 10);
	e->qseq = sqlite3_column_int64(s, 11);
	store_copy_text(e->tool, sizeof e->tool, sqlite3_column_text(s, 12));
	store_copy_text(e->dtype, sizeof e->dtype, sqlite3_column_text(s, 13));
}

int store_row_exists(struct store *st, const char *key)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT 1 FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_fail(&st->db, "lookup");
	sqlite3_finalize(s);
	return rc;
}

/* ---- opening ---- */

/* the store's settings: "dtype", the type new objects are written in */
#define SETTINGS_TABLE \
	"CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;"

/* reuse across edits (store_similar.c): each object's document, sequence,
 * parent and MinHash sketch, its LSH band keys; both go with their object */
#define SKETCH_TABLES \
	"CREATE TABLE IF NOT EXISTS sketches (key TEXT PRIMARY KEY NOT NULL, doc TEXT, seq INTEGER," \
	" parent TEXT, sketch BLOB NOT NULL) WITHOUT ROWID;" \
	"CREATE INDEX IF NOT EXISTS sketches_doc ON sketches(doc, seq);" \
	"CREATE TABLE IF NOT EXISTS bands (band INTEGER NOT NULL, hash INTEGER NOT NULL, key TEXT NOT NULL," \
	" PRIMARY KEY (band, hash, key)) WITHOUT ROWID;" \
	"CREATE INDEX IF NOT EXISTS bands_key ON bands(key);" \
	"CREATE TRIGGER IF NOT EXISTS objects_sketch_gone AFTER DELETE ON objects BEGIN" \
	" DELETE FROM sketches WHERE key = old.key; DELETE FROM bands WHERE key = old.key; END;"

static const char schema[] =
	/* one row per object; see struct store_entry */
	"CREATE TABLE IF NOT EXISTS objects ("
	" key TEXT PRIMARY KEY NOT NULL,"      /* 64 hex: SHA-256(model fp || tokens) */
	" size INTEGER NOT NULL,"              /* bytes of the file */
	" n_tokens INTEGER NOT NULL,"
	" model TEXT NOT NULL,"                /* model fingerprint, 64 hex */
	" created REAL NOT NULL,"              /* unix seconds */
	" last_used REAL NOT NULL,"            /* unix seconds */
	" hits INTEGER NOT NULL DEFAULT 0,"
	" cost REAL,"                          /* seconds to compute it; NULL unknown */
	" pinned INTEGER NOT NULL DEFAULT 0,"
	" queue INTEGER NOT NULL DEFAULT 0,"   /* S3-FIFO: 0 small, 1 main */
	" freq INTEGER NOT NULL DEFAULT 0,"    /* S3-FIFO: 0..3 */
	" qseq INTEGER NOT NULL DEFAULT 0,"    /* S3-FIFO: FIFO order within its queue */
	" tool TEXT NOT NULL DEFAULT '',"
	" dtype TEXT NOT NULL DEFAULT ''"      /* its layers' type (f16, kv4, ...); '' unknown */
	") WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS objects_qseq ON objects(qseq);"
	/* S3-FIFO's ghost set: keys recently evicted from the small queue */
	"CREATE TABLE IF NOT EXISTS ghosts (key TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS ghosts_seq ON ghosts(seq);" SETTINGS_TABLE SKETCH_TABLES;

/* upgrades[v - 1] takes an index of version v to v + 1 */
static const char *const upgrades[] = {
	/* 1 -> 2: each object's dtype (filled by the next put or verify), settings */
	"ALTER TABLE objects ADD COLUMN dtype TEXT NOT NULL DEFAULT '';" SETTINGS_TABLE,
	/* 2 -> 3: sketches for reuse across edits (objects stored before have none) */
	SKETCH_TABLES,
};
_Static_assert(sizeof upgrades / sizeof *upgrades == STORE_SCHEMA_VERSION - 1, "one upgrade per version");

int store_default_dir(char **dir)
{
	const char *e = getenv("KVBLEND_STORE");
	if (e && *e)
		*dir = kb_asprintf("%s", e);
	else if ((e = getenv("XDG_CACHE_HOME")) && *e)
		*dir = kb_asprintf("%s/kvblend", e);
	else if ((e = getenv("HOME")) && *e)
		*dir = kb_asprintf("%s/.cache/kvblend", e);
	else
		return kb_fail(KB_ERR_ARG, "no store: set KVBLEND_STORE, XDG_CACHE_HOME or HOME, or give --store DIR");
	return *dir ? KB_OK : KB_ERR_NOMEM;
}

/* Open the store in dir (see store_open and store_open_existing). */
static int open_store(struct store **out, const char *dir, bool create)
{
	*out = NULL;
	struct store *st = kb_calloc(1, sizeof *st);
	if (!st)
		return KB_ERR_NOMEM;
	int rc;
	char *objects = NULL;
	if (dir) {
		if (!*dir) {
			rc = kb_fail(KB_ERR_ARG, "the store folder is an empty string");
			goto fail;
		}
		st->dir = kb_asprintf("%s", dir);
		rc = st->dir ? KB_OK : KB_ERR_NOMEM;
	} else {
		rc = store_default_dir(&st->dir);
	}
	if (rc)
		goto fail;
	struct stat sb;
	rc = db_open(&st->db, st->dir, "index.db", create ? DB_CREATE : DB_EXISTING);
	if (rc == KB_EOF)
		rc = stat(st->dir, &sb) < 0 ? kb_fail(KB_ERR_ARG, "'%s': no such store (%s)", st->dir, strerror(errno))
		     : kb_fail(KB_ERR_ARG, "'%s': no cache store here (no index.db in it)", st->dir);
	if (rc || (rc = db_init_schema(&st->db, schema, STORE_SCHEMA_VERSION, upgrades)))
		goto fail;
	if (!(objects = kb_asprintf("%s/objects", st->dir))) {
		rc = KB_ERR_NOMEM;
		goto fail;
	}
	if (create && !st->db.readonly && (rc = db_mkdir_p(objects)))
		goto fail;
	free(objects);
	*out = st;
	return KB_OK;
fail:
	free(objects);
	store_close(st);
	return rc;
}

int store_open(struct store **out, const char *dir)
{
	return open_store(out, dir, true);
}

int store_open_existing(struct store **out, const char *dir)
{
	return open_store(out, dir, false);
}

bool store_readonly(const struct store *st)
{
	return st->db.readonly;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	db_close(&st->db);
	free(st->dir);
	free(st);
}

const char *store_dir(const struct store *st)
{
	return st->dir;
}

void store_set_clock(struct store *st, double t)
{
	st->clock = t;
}

void store_set_test_hook(struct store *st, void (*fn)(void *ctx, int point), void *ctx)
{
	st->hook = fn;
	st->hook_ctx = ctx;
}

/* ---- settings ---- */

const char *store_dtype_name(int dtype)
{
	return dtype >= 0 ? kvc_dtype_name(dtype) : "";
}

int store_default_dtype(struct store *st, int *dtype)
{
	*dtype = -1;
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT value FROM settings WHERE name = 'dtype'");
	if (rc)
		return rc;
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);
		*dtype = v ? kvc_dtype_from_name(v) : -1;
		if (*dtype < 0)
			rc = kb_fail(KB_ERR_FORMAT, "'%s': the store's default type '%s' is not one this kvblend knows",
				     st->dir, v ? v : "");
	} else if (r != SQLITE_DONE) {
		rc = db_fail(&st->db, "read the settings");
	}
	sqlite3_finalize(s);
	return rc;
}

int store_set_default_dtype(struct store *st, int dtype)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, dtype >= 0 ? "INSERT INTO settings (name, value) VALUES ('dtype', ?1)"
							" ON CONFLICT(name) DO UPDATE SET value = excluded.value"
						  : "DELETE FROM settings WHERE name = 'dtype'");
	if (rc)
		return rc;
	if (dtype >= 0)
		sqlite3_bind_text(s, 1, kvc_dtype_name(dtype), -1, SQLITE_STATIC);
	return db_run(&st->db, s, "write the settings");
}

/* ---- keys ---- */

void store_key(const uint8_t model_fp[32], const int32_t *tokens, size_t n, char key[STORE_KEY_HEX + 1])
{
	struct sha256 s;
	uint8_t buf[256], d[32];
	sha256_init(&s);
	sha256_update(&s, model_fp, 32);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)tokens[i];
		buf[k++] = (uint8_t)u;
		buf[k++] = (uint8_t)(u >> 8);
		buf[k++] = (uint8_t)(u >> 16);
		buf[k++] = (uint8_t)(u >> 24);
		if (k == sizeof buf) {
			sha256_update(&s, buf, k);
			k = 0;
		}
	}
	sha256_update(&s, buf, k);
	sha256_final(&s, d);
	hash_hex(d, 32, key);
}

bool store_key_valid(const char *key)
{
	if (!key)
		return false;
	for (int i = 0; i < STORE_KEY_HEX; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
			return false;
	return key[STORE_KEY_HEX] == '\0';
}

int store_check_key(const char *key)
{
	if (!store_key_valid(key))
		return kb_fail(KB_ERR_ARG, "'%s': not a store key (64 lower-case hex digits)", key ? key : "");
	return KB_OK;
}

int store_path(const struct store *st, const char *key, char **path)
{
	*path = NULL;
	int rc = store_check_key(key);
	if (rc)
		return rc;
	*path = kb_asprintf("%s/objects/%.2s/%s.kvc", st->dir, key, key + 2);
	return *path ? KB_OK : KB_ERR_NOMEM;
}

char *store_object_path(const struct store *st, const char *key)
{
	char *path;
	return store_path(st, key, &path) ? NULL : path;
}

/* ---- lookups ---- */

int store_reconcile_locked(struct store *st, const char *key, const char *path, enum store_entry_state *state)
{
	*state = ENTRY_NO_ROW;
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT size FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		rc = r == SQLITE_DONE ? KB_OK : db_fail(&st->db, "lookup");
		sqlite3_finalize(s);
		return rc;
	}
	sqlite3_int64 size = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	struct stat sb;
	int sr = lstat(path, &sb);
	if (sr == 0 && S_ISREG(sb.st_mode) && sb.st_size == size) {
		*state = ENTRY_SOUND;
		return KB_OK;
	}
	*state = ENTRY_DROPPED;
	if (sr < 0 && errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	if (sr == 0 && (rc = store_remove_path(path)))
		return rc;
	return store_exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL);
}

/* A lookup found no usable file for key (none, or not a regular file): drop
 * its row (and the thing in its place) unless the store is read-only. */
static int reconcile(struct store *st, const char *key, const char *path)
{
	int rc = store_row_exists(st, key);
	if (rc <= 0 || st->db.readonly)
		return rc;
	enum store_entry_state state;
	if ((rc = db_begin(&st->db)))
		return rc;
	return db_finish(&st->db, store_reconcile_locked(st, key, path, &state));
}

/* The row's size, counting a hit when asked and the store can be written:
 * KB_OK and *size (-1 when there is no row). */
static int row_size(struct store *st, const char *key, bool hit, sqlite3_int64 *size)
{
	hit = hit && !st->db.readonly; /* a read-only store serves without counting */
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, hit ? "UPDATE objects SET hits = hits + 1, last_used = ?2, freq = MIN(freq + 1, 3)"
					   " WHERE key = ?1 RETURNING size"
					 : "SELECT size FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (hit)
		sqlite3_bind_double(s, 2, store_now(st));
	int r = sqlite3_step(s);
	*size = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	if (r == SQLITE_ROW)
		r = sqlite3_step(s); /* finish the UPDATE */
	rc = r == SQLITE_DONE ? KB_OK : db_fail(&st->db, hit ? "count a hit" : "lookup");
	sqlite3_finalize(s);
	return rc;
}

/* Look key up: with hit, count one. On KB_OK, *fd (if fd) is the object open
 * read-only and *path (if path) its path. */
static int lookup(struct store *st, const char *key, bool hit, int *fd_out, char **path_out)
{
	char *path;
	int rc = store_path(st, key, &path), fd = -1;
	if (rc)
		return rc;
	struct stat sb;
	rc = store_open_object(path, path, &fd, &sb);
	if (rc == KB_EOF || rc == KB_ERR_FORMAT) { /* no file, or not a regular one: a miss */
		rc = reconcile(st, key, path);
		rc = rc < 0 ? rc : KB_EOF;
		goto out;
	}
	sqlite3_int64 size;
	if (rc || (rc = row_size(st, key, hit, &size)))
		goto out;
	if (size < 0) {
		rc = KB_EOF; /* a file without a row: never served */
	} else if (size != sb.st_size) {
		rc = reconcile(st, key, path); /* a file of the wrong size: gone */
		rc = rc < 0 ? rc : KB_EOF;
	}
out:
	if (rc == KB_OK && fd_out) {
		*fd_out = fd;
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	if (rc == KB_OK && path_out) {
		*path_out = path;
		path = NULL;
	}
	free(path);
	return rc;
}

int store_get(struct store *st, const char *key, char **path)
{
	return lookup(st, key, true, NULL, path);
}

int store_get_fd(struct store *st, const char *key, int *fd)
{
	return lookup(st, key, true, fd, NULL);
}

int store_has(struct store *st, const char *key, char **path)
{
	return lookup(st, key, false, NULL, path);
}

int store_entry_get(struct store *st, const char *key, struct store_entry *e)
{
	sqlite3_stmt *s;
	int rc = store_check_key(key);
	if (rc || (rc = db_prep(&st->db, &s, "SELECT " STORE_ENTRY_COLS " FROM objects WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		store_read_entry(s, e);
	rc = r == SQLITE_ROW ? KB_OK : r == SQLITE_DONE ? KB_EOF : db_fail(&st->db, "lookup");
	sqlite3_finalize(s);
	return rc;
}

int store_list(struct store *st, int (*fn)(void *ctx, const struct store_entry *e), void *ctx)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT " STORE_ENTRY_COLS " FROM objects ORDER BY created, key");
	if (rc)
		return rc;
	int r;
	struct store_entry e;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		store_read_entry(s, &e);
		if ((rc = fn(ctx, &e)))
			break;
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(&st->db, "list");
	sqlite3_finalize(s);
	return rc;
}

/* ---- pins, removal ---- */

int store_pin(struct store *st, const char *key, bool pinned)
{
	sqlite3_stmt *s;
	int rc = store_check_key(key);
	if (rc || (rc = store_writable(st, pinned ? "pin a cache" : "unpin a cache")) ||
	    (rc = db_prep(&st->db, &s, "UPDATE objects SET pinned = ?2 WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, pinned);
	if ((rc = db_run(&st->db, s, "pin")))
		return rc;
	return sqlite3_changes(st->db.h) ? KB_OK : KB_EOF;
}

/* Under the write lock: delete key's row, then unlink its file. *found: either existed. */
static int remove_locked(struct store *st, const char *key, const char *path, bool *found)
{
	int changes = 0, rc = store_exec_key(st, "DELETE FROM objects WHERE key = ?1", key, &changes);
	if (rc)
		return rc;
	struct stat sb;
	*found = changes > 0 || lstat(path, &sb) == 0;
	return store_remove_path(path);
}

int store_remove(struct store *st, const char *key)
{
	char *path;
	int rc = store_path(st, key, &path);
	if (rc || (rc = store_writable(st, "remove a cache"))) {
		free(path);
		return rc;
	}
	bool found = false;
	if (!(rc = db_begin(&st->db)))
		rc = db_finish(&st->db, remove_locked(st, key, path, &found));
	free(path);
	return rc ? rc : found ? KB_OK : KB_EOF;
}

/* ---- statistics ---- */

int store_stats(struct store *st, struct store_stats *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT COUNT(*), TOTAL(size), TOTAL(hits), TOTAL(n_tokens), TOTAL(pinned != 0),"
			      " TOTAL(CASE WHEN pinned THEN size END), TOTAL(queue = 0),"
			      " TOTAL(CASE WHEN queue = 0 THEN size END), MIN(created), MAX(created),"
			      " MAX(last_used), COUNT(DISTINCT model), (SELECT COUNT(*) FROM ghosts) FROM objects");
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->entries = (uint64_t)sqlite3_column_int64(s, 0);
		out->bytes = (uint64_t)sqlite3_column_double(s, 1);
		out->hits = (uint64_t)sqlite3_column_double(s, 2);
		out->tokens = (uint64_t)sqlite3_column_double(s, 3);
		out->pinned = (uint64_t)sqlite3_column_double(s, 4);
		out->pinned_bytes = (uint64_t)sqlite3_column_double(s, 5);
		out->small = (uint64_t)sqlite3_column_double(s, 6);
		out->small_bytes = (uint64_t)sqlite3_column_double(s, 7);
		out->oldest = sqlite3_column_double(s, 8);
		out->newest = sqlite3_column_double(s, 9);
		out->last_used = sqlite3_column_double(s, 10);
		out->models = sqlite3_column_int(s, 11);
		out->ghosts = (uint64_t)sqlite3_column_int64(s, 12);
	} else {
		rc = db_fail(&st->db, "statistics");
	}
	sqlite3_finalize(s);
	return rc;
}

int store_stats_models(struct store *st, int (*fn)(void *ctx, const struct store_model_stats *m), void *ctx)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT model, COUNT(*), TOTAL(size), TOTAL(hits), TOTAL(n_tokens), MIN(created),"
			      " MAX(created), MAX(last_used) FROM objects GROUP BY model"
			      " ORDER BY TOTAL(size) DESC, model");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_model_stats m;
		memset(&m, 0, sizeof m);
		store_copy_text(m.model, sizeof m.model, sqlite3_column_text(s, 0));
		m.entries = (uint64_t)sqlite3_column_int64(s, 1);
		m.bytes = (uint64_t)sqlite3_column_double(s, 2);
		m.hits = (uint64_t)sqlite3_column_double(s, 3);
		m.tokens = (uint64_t)sqlite3_column_double(s, 4);
		m.oldest = sqlite3_column_double(s, 5);
		m.newest = sqlite3_column_double(s, 6);
		m.last_used = sqlite3_column_double(s, 7);
		if ((rc = fn(ctx, &m)))
			break;
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(&st->db, "statistics");
	sqlite3_finalize(s);
	return rc;
}

