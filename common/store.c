/* store.c — the cache store: objects on disk, their index in SQLite (see store.h).
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
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "kvc.h"

#define BUSY_TIMEOUT_MS 60000 /* how long a process waits for another's write lock */
#define TEMP_GRACE 60.0       /* seconds an unlocked temporary file is left to its creator */
#define TEMP_UNLOCKABLE_AGE (24 * 3600.0) /* when flock does not work: remove after a day */
#define GHOST_MIN 64          /* the ghost set keeps at least this many keys */

struct store {
	char *dir;      /* owned: as given */
	sqlite3 *db;
	double clock;   /* fixed "now" for tests, 0 = the real clock */
	void (*hook)(void *ctx, int point);
	void *hook_ctx;
};

/* ---- small helpers ---- */

static double now(const struct store *st)
{
	if (st->clock > 0)
		return st->clock;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void hook(struct store *st, int point)
{
	if (st->hook)
		st->hook(st->hook_ctx, point);
}

/* malloc()ed printf, or NULL with "out of memory" recorded. */
__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		kb_fail(KB_ERR_NOMEM, "out of memory");
		return NULL;
	}
	return s;
}

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0777) < 0 && errno != EEXIST) {
			int e = errno;
			struct stat sb;
			if (!(e == EACCES && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode))) {
				kb_fail(KB_ERR_IO, "'%s': cannot create the folder: %s", p, strerror(e));
				free(p);
				return KB_ERR_IO;
			}
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	struct stat sb;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return kb_fail(KB_ERR_IO, "'%s': not a folder", dir);
	return KB_OK;
}

/* fsync a folder, so a rename or an unlink in it is durable. */
static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", dir, strerror(errno));
	int rc = KB_OK;
	if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
		rc = kb_fail(KB_ERR_IO, "'%s': fsync: %s", dir, strerror(errno));
	close(fd);
	return rc;
}

/* "3 s", "4.5 min", "2.1 h", "3.0 d" */
static void fmt_age(char *buf, size_t cap, double s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, cap, "%.0f s", s);
	else if (s < 3600)
		snprintf(buf, cap, "%.1f min", s / 60);
	else if (s < 86400)
		snprintf(buf, cap, "%.1f h", s / 3600);
	else
		snprintf(buf, cap, "%.1f d", s / 86400);
}

/* ---- SQLite ---- */

static int db_fail(struct store *st, const char *what)
{
	int code = sqlite3_errcode(st->db) & 0xff;
	int status = code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? KB_ERR_FORMAT
		   : code == SQLITE_NOMEM ? KB_ERR_NOMEM : KB_ERR_IO;
	return kb_fail(status, "'%s/index.db': %s: %s", st->dir, what, sqlite3_errmsg(st->db));
}

static int exec(struct store *st, const char *sql)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, sql);
	return KB_OK;
}

static int prep(struct store *st, sqlite3_stmt **s, const char *sql)
{
	if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK) {
		*s = NULL;
		return db_fail(st, "prepare");
	}
	return KB_OK;
}

/* Step a statement that returns no row; finalize it. */
static int run_stmt(struct store *st, sqlite3_stmt *s, const char *what)
{
	int r = sqlite3_step(s);
	int rc = r == SQLITE_DONE || r == SQLITE_ROW ? KB_OK : db_fail(st, what);
	sqlite3_finalize(s);
	return rc;
}

/* Run sql with one text parameter (?1); *changes gets the rows changed (may be NULL). */
static int exec_key(struct store *st, const char *sql, const char *key, int *changes)
{
	sqlite3_stmt *s;
	int rc = prep(st, &s, sql);
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = run_stmt(st, s, sql);
	if (!rc && changes)
		*changes = sqlite3_changes(st->db);
	return rc;
}

/* Take the write lock (waits up to the busy timeout for other processes). */
static int begin(struct store *st)
{
	return exec(st, "BEGIN IMMEDIATE");
}

static int commit(struct store *st)
{
	int rc = exec(st, "COMMIT");
	if (rc)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static void rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Pass rc through after rolling back when it is an error, else commit. */
static int finish(struct store *st, int rc)
{
	if (rc) {
		rollback(st);
		return rc;
	}
	return commit(st);
}

/* The row's columns, in the order read_entry expects. */
#define ENTRY_COLS "key, size, n_tokens, model, created, last_used, hits, cost, pinned, queue, freq, qseq, tool"

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static void read_entry(sqlite3_stmt *s, struct store_entry *e)
{
	memset(e, 0, sizeof *e);
	copy_text(e->key, sizeof e->key, sqlite3_column_text(s, 0));
	sqlite3_int64 size = sqlite3_column_int64(s, 1);
	e->size = size > 0 ? (uint64_t)size : 0;
	e->n_tokens = sqlite3_column_int64(s, 2);
	copy_text(e->model, sizeof e->model, sqlite3_column_text(s, 3));
	e->created = sqlite3_column_double(s, 4);
	e->last_used = sqlite3_column_double(s, 5);
	sqlite3_int64 hits = sqlite3_column_int64(s, 6);
	e->hits = hits > 0 ? (uint64_t)hits : 0;
	e->cost = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 7);
	e->pinned = sqlite3_column_int(s, 8) != 0;
	e->queue = sqlite3_column_int(s, 9) ? STORE_QUEUE_MAIN : STORE_QUEUE_SMALL;
	e->freq = sqlite3_column_int(s, 10);
	e->qseq = sqlite3_column_int64(s, 11);
	copy_text(e->tool, sizeof e->tool, sqlite3_column_text(s, 12));
}

/* Does key have a row? 1 yes, 0 no, < 0 error. */
static int row_exists(struct store *st, const char *key)
{
	sqlite3_stmt *s;
	int rc = prep(st, &s, "SELECT 1 FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_fail(st, "lookup");
	sqlite3_finalize(s);
	return rc;
}

/* ---- opening ---- */

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
	" tool TEXT NOT NULL DEFAULT ''"
	") WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS objects_qseq ON objects(qseq);"
	/* S3-FIFO's ghost set: keys recently evicted from the small queue */
	"CREATE TABLE IF NOT EXISTS ghosts (key TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS ghosts_seq ON ghosts(seq);";

static int user_version(struct store *st, int *v)
{
	sqlite3_stmt *s;
	int rc = prep(st, &s, "PRAGMA user_version");
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW) {
		*v = sqlite3_column_int(s, 0);
	} else {
		rc = db_fail(st, "PRAGMA user_version");
	}
	sqlite3_finalize(s);
	return rc;
}

/* Enter WAL mode. Switching needs an exclusive lock that a busy handler does
 * not always wait for (several processes opening a new store at once): retry. */
static int set_wal(struct store *st)
{
	for (int tries = 0; ; tries++) {
		int r = sqlite3_exec(st->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (r == SQLITE_OK)
			return KB_OK;
		if ((r & 0xff) != SQLITE_BUSY && (r & 0xff) != SQLITE_LOCKED)
			return db_fail(st, "PRAGMA journal_mode=WAL");
		if (tries * 10 > BUSY_TIMEOUT_MS)
			return db_fail(st, "PRAGMA journal_mode=WAL");
		usleep(10000);
	}
}

static int init_schema(struct store *st)
{
	int v = 0, rc;
	if ((rc = user_version(st, &v)))
		return rc;
	if (v == STORE_SCHEMA_VERSION)
		return KB_OK;
	if (v > STORE_SCHEMA_VERSION)
		return kb_fail(KB_ERR_UNSUPPORTED,
			       "'%s/index.db': index version %d is newer than this kvblend knows (%d)",
			       st->dir, v, STORE_SCHEMA_VERSION);
	if ((rc = begin(st)))
		return rc;
	if ((rc = user_version(st, &v)) == KB_OK && v == 0) { /* nobody made it meanwhile */
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
		if (!(rc = exec(st, schema)))
			rc = exec(st, sql);
	}
	return finish(st, rc);
}

int store_default_dir(char **dir)
{
	const char *e = getenv("KVBLEND_STORE");
	if (e && *e)
		*dir = str_printf("%s", e);
	else if ((e = getenv("XDG_CACHE_HOME")) && *e)
		*dir = str_printf("%s/kvblend", e);
	else if ((e = getenv("HOME")) && *e)
		*dir = str_printf("%s/.cache/kvblend", e);
	else
		return kb_fail(KB_ERR_ARG, "no store: set KVBLEND_STORE, XDG_CACHE_HOME or HOME, or give --store DIR");
	return *dir ? KB_OK : KB_ERR_NOMEM;
}

int store_open(struct store **out, const char *dir)
{
	*out = NULL;
	struct store *st = kb_calloc(1, sizeof *st);
	if (!st)
		return KB_ERR_NOMEM;
	int rc;
	char *objects = NULL, *db = NULL;
	if (dir) {
		if (!*dir) {
			rc = kb_fail(KB_ERR_ARG, "the store folder is an empty string");
			goto fail;
		}
		st->dir = str_printf("%s", dir);
		rc = st->dir ? KB_OK : KB_ERR_NOMEM;
	} else {
		rc = store_default_dir(&st->dir);
	}
	if (rc)
		goto fail;
	if (!(objects = str_printf("%s/objects", st->dir)) || !(db = str_printf("%s/index.db", st->dir))) {
		rc = KB_ERR_NOMEM;
		goto fail;
	}
	if ((rc = mkdir_p(st->dir)) || (rc = mkdir_p(objects)))
		goto fail;
	if (sqlite3_open_v2(db, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		rc = st->db ? db_fail(st, "open") : kb_fail(KB_ERR_NOMEM, "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	if ((rc = set_wal(st)) || (rc = exec(st, "PRAGMA synchronous=NORMAL")) || (rc = init_schema(st)))
		goto fail;
	free(objects);
	free(db);
	*out = st;
	return KB_OK;
fail:
	free(objects);
	free(db);
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	if (st->db)
		sqlite3_close_v2(st->db);
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

static int check_key(const char *key)
{
	if (!store_key_valid(key))
		return kb_fail(KB_ERR_ARG, "'%s': not a store key (64 lower-case hex digits)", key ? key : "");
	return KB_OK;
}

char *store_object_path(const struct store *st, const char *key)
{
	return str_printf("%s/objects/%.2s/%s.kvc", st->dir, key, key + 2);
}

/* ---- lookups ---- */

enum entry_state { ENTRY_NO_ROW, ENTRY_SOUND, ENTRY_DROPPED };

/* Under the write lock: bring key's row and file into agreement. A row whose
 * file is gone is deleted; a row whose file has another size is deleted with
 * its file. *state says which case it was. */
static int reconcile_locked(struct store *st, const char *key, const char *path, enum entry_state *state)
{
	*state = ENTRY_NO_ROW;
	sqlite3_stmt *s;
	int rc = prep(st, &s, "SELECT size FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		rc = r == SQLITE_DONE ? KB_OK : db_fail(st, "lookup");
		sqlite3_finalize(s);
		return rc;
	}
	sqlite3_int64 size = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	struct stat sb;
	int sr = stat(path, &sb);
	if (sr == 0 && sb.st_size == size) {
		*state = ENTRY_SOUND;
		return KB_OK;
	}
	*state = ENTRY_DROPPED;
	if (sr < 0 && errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	if (sr == 0 && unlink(path) < 0 && errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	return exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL);
}

static int reconcile(struct store *st, const char *key, const char *path)
{
	enum entry_state state;
	int rc = begin(st);
	if (rc)
		return rc;
	return finish(st, reconcile_locked(st, key, path, &state));
}

/* Look key up: with hit, count one. On KB_OK, *fd (if fd) is the object open
 * read-only and *path (if path) its path. */
static int lookup(struct store *st, const char *key, bool hit, int *fd_out, char **path_out)
{
	int rc = check_key(key);
	if (rc)
		return rc;
	char *path = store_object_path(st, key);
	if (!path)
		return KB_ERR_NOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT) {
			rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		} else if ((rc = row_exists(st, key)) > 0) {
			rc = reconcile(st, key, path); /* a row without its file */
			rc = rc ? rc : KB_EOF;
		} else if (rc == 0) {
			rc = KB_EOF;
		}
		free(path);
		return rc;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		goto out;
	}
	sqlite3_stmt *s;
	rc = prep(st, &s, hit ? "UPDATE objects SET hits = hits + 1, last_used = ?2, freq = MIN(freq + 1, 3)"
				" WHERE key = ?1 RETURNING size"
			      : "SELECT size FROM objects WHERE key = ?1");
	if (rc)
		goto out;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (hit)
		sqlite3_bind_double(s, 2, now(st));
	int r = sqlite3_step(s);
	sqlite3_int64 size = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	if (r == SQLITE_ROW)
		r = sqlite3_step(s); /* finish the UPDATE */
	rc = r == SQLITE_DONE ? KB_OK : db_fail(st, hit ? "count a hit" : "lookup");
	sqlite3_finalize(s);
	if (rc)
		goto out;
	if (size < 0) {
		rc = KB_EOF; /* a file without a row: never served */
	} else if (size != sb.st_size) {
		rc = reconcile(st, key, path); /* a file of the wrong size: gone */
		rc = rc ? rc : KB_EOF;
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
	int rc = check_key(key);
	if (rc || (rc = prep(st, &s, "SELECT " ENTRY_COLS " FROM objects WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		read_entry(s, e);
	rc = r == SQLITE_ROW ? KB_OK : r == SQLITE_DONE ? KB_EOF : db_fail(st, "lookup");
	sqlite3_finalize(s);
	return rc;
}

int store_list(struct store *st, int (*fn)(void *ctx, const struct store_entry *e), void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(st, &s, "SELECT " ENTRY_COLS " FROM objects ORDER BY created, key");
	if (rc)
		return rc;
	int r;
	struct store_entry e;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		read_entry(s, &e);
		if ((rc = fn(ctx, &e)))
			break;
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(st, "list");
	sqlite3_finalize(s);
	return rc;
}

/* ---- writing ---- */

int store_put_begin(struct store *st, const char *key, struct store_put *p)
{
	memset(p, 0, sizeof *p);
	p->fd = -1;
	int rc = check_key(key);
	if (rc)
		return rc;
	char *dir = str_printf("%s/objects/%.2s", st->dir, key);
	if (!dir)
		return KB_ERR_NOMEM;
	if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
		rc = kb_fail(KB_ERR_IO, "'%s': cannot create the folder: %s", dir, strerror(errno));
		free(dir);
		return rc;
	}
	static unsigned counter;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	for (int tries = 0; tries < 100; tries++) {
		unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
		unsigned salt = (unsigned)ts.tv_nsec * 2654435761u ^ c * 40503u ^ (unsigned)tries * 97u;
		free(p->tmp);
		if (!(p->tmp = str_printf("%s/.tmp-%ld-%08x", dir, (long)getpid(), salt))) {
			free(dir);
			return KB_ERR_NOMEM;
		}
		p->fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (p->fd >= 0 || errno != EEXIST)
			break;
	}
	if (p->fd < 0) {
		rc = kb_fail(KB_ERR_IO, "'%s': cannot create a temporary file: %s", dir, strerror(errno));
		free(dir);
		free(p->tmp);
		p->tmp = NULL;
		return rc;
	}
	free(dir);
	/* the lock tells cleaners this file's writer is alive (released when it dies) */
	(void)flock(p->fd, LOCK_EX | LOCK_NB);
	memcpy(p->key, key, STORE_KEY_HEX + 1);
	return KB_OK;
}

void store_put_abort(struct store *st, struct store_put *p)
{
	(void)st;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (p->tmp)
		unlink(p->tmp);
	free(p->tmp);
	p->tmp = NULL;
}

/* What an object's header says. */
struct object_info {
	int64_t n_tokens;
	uint8_t model_fp[32];
	char tool[32];
};

/* Read the header of the cache in fd: it must give key. With whole, read the
 * whole object (every checksum, the end record, nothing after it). name names
 * the object in messages. KB_OK and *info, or KB_ERR_FORMAT / KB_ERR_MISMATCH /
 * KB_ERR_IO with the message. */
static int check_object(int fd, const char *name, const char *key, bool whole, struct object_info *info)
{
	struct kvc_reader *r;
	const struct kvc_header *h;
	int rc = kvc_reader_open_fd(&r, fd, name);
	if (rc)
		return rc;
	if ((rc = kvc_reader_next_header(r, &h)) == KB_EOF)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': empty, no cache in it", name);
	if (rc)
		goto out;
	char got[STORE_KEY_HEX + 1];
	store_key(h->model_fp, h->tokens, (size_t)h->n_tokens, got);
	if (strcmp(got, key) != 0) {
		rc = kb_fail(KB_ERR_MISMATCH, "'%s': its tokens and model give another key (%.16s…)", name, got);
		goto out;
	}
	info->n_tokens = h->n_tokens;
	memcpy(info->model_fp, h->model_fp, 32);
	snprintf(info->tool, sizeof info->tool, "%s", h->tool ? h->tool : "");
	if (!whole)
		goto out;
	int l;
	while ((l = kvc_reader_layer(r, NULL, NULL, 0)) >= 0)
		;
	if (l != KB_EOF) {
		rc = l;
		goto out;
	}
	if ((rc = kvc_reader_next_header(r, &h)) == KB_OK)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': more than one cache in it", name);
	else if (rc == KB_EOF)
		rc = KB_OK;
out:
	kvc_reader_free(r);
	return rc;
}

/* Under the write lock: insert key's row (or refresh the one left by a lost
 * file), entering S3-FIFO's main queue when the key is a ghost. */
static int insert_row(struct store *st, const char *key, uint64_t size, const struct store_meta *m,
		      double created)
{
	int ghost = 0, rc = exec_key(st, "DELETE FROM ghosts WHERE key = ?1", key, &ghost);
	if (rc)
		return rc;
	char model[STORE_KEY_HEX + 1];
	hash_hex(m->model_fp, 32, model);
	sqlite3_stmt *s;
	if ((rc = prep(st, &s, "INSERT INTO objects (key, size, n_tokens, model, created, last_used, cost, tool,"
			       " queue, qseq) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8,"
			       " (SELECT COALESCE(MAX(qseq), 0) + 1 FROM objects))"
			       " ON CONFLICT(key) DO UPDATE SET size = excluded.size, n_tokens = excluded.n_tokens,"
			       " model = excluded.model, cost = COALESCE(excluded.cost, cost)")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
	sqlite3_bind_int64(s, 3, m->n_tokens);
	sqlite3_bind_text(s, 4, model, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 5, created);
	if (m->cost >= 0)
		sqlite3_bind_double(s, 6, m->cost);
	else
		sqlite3_bind_null(s, 6);
	sqlite3_bind_text(s, 7, m->tool ? m->tool : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 8, ghost ? STORE_QUEUE_MAIN : STORE_QUEUE_SMALL);
	return run_stmt(st, s, "insert");
}

/* Under the write lock: index the written temporary file and rename it into
 * place (unless the key is already stored). The row goes in first, so the
 * only moment where a kill leaves an object without its row (an orphan, which
 * is never served and which store_verify adopts) is between the rename and
 * the COMMIT that follows it. */
static int place_locked(struct store *st, struct store_put *p, const char *path, const struct store_meta *m)
{
	int rc = row_exists(st, p->key);
	if (rc < 0)
		return rc;
	struct stat sb;
	if (rc == 1 && stat(path, &sb) == 0) {
		p->existed = true; /* somebody else's is in: keep it, drop ours */
		return KB_OK;
	}
	/* no row, or a row whose file is gone; a file without a row is an orphan of
	 * an interrupted put, replaced by ours (which we know whole) */
	if (stat(p->tmp, &sb) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
	if ((rc = insert_row(st, p->key, (uint64_t)sb.st_size, m, now(st))))
		return rc;
	if (rename(p->tmp, path) < 0)
		return kb_fail(KB_ERR_IO, "'%s': rename: %s", path, strerror(errno));
	free(p->tmp);
	p->tmp = NULL;
	hook(st, STORE_HOOK_PUT_RENAMED);
	return KB_OK;
}

int store_put_commit(struct store *st, struct store_put *p, const struct store_meta *meta)
{
	char *path = NULL;
	int rc = KB_OK, rfd = -1;
	p->existed = false;
	if (p->fd < 0 || !p->tmp)
		return kb_fail(KB_ERR_ARG, "store_put_commit: no put in progress");
	/* what was written must be a cache with this key */
	if ((rfd = open(p->tmp, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
		goto out;
	}
	struct object_info info;
	char name[STORE_KEY_HEX + 16];
	snprintf(name, sizeof name, "object %.16s…", p->key);
	if ((rc = check_object(rfd, name, p->key, false, &info)))
		goto out;
	struct store_meta m = { .n_tokens = info.n_tokens, .cost = -1, .tool = info.tool };
	memcpy(m.model_fp, info.model_fp, 32);
	if (meta) {
		if (meta->n_tokens != info.n_tokens || memcmp(meta->model_fp, info.model_fp, 32) != 0) {
			rc = kb_fail(KB_ERR_MISMATCH, "%s: the cache's header disagrees with its description (%lld tokens, %lld described)",
				     name, (long long)info.n_tokens, (long long)meta->n_tokens);
			goto out;
		}
		m.cost = meta->cost;
		if (meta->tool)
			m.tool = meta->tool;
	}
	if (fsync(p->fd) < 0 || close(p->fd) < 0) {
		p->fd = -1;
		rc = kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
		goto out;
	}
	p->fd = -1;
	if (!(path = store_object_path(st, p->key))) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	if ((rc = begin(st)))
		goto out;
	if ((rc = finish(st, place_locked(st, p, path, &m))) == KB_OK && !p->existed) {
		/* make the rename durable (the row is, at the next checkpoint: until
		 * then a power cut forgets both, or leaves an orphan verify adopts) */
		char *dir = str_printf("%s/objects/%.2s", st->dir, p->key);
		rc = dir ? fsync_dir(dir) : KB_ERR_NOMEM;
		free(dir);
	}
out:
	if (rfd >= 0)
		close(rfd);
	free(path);
	store_put_abort(st, p); /* whatever is left: the fd, the temporary file */
	return rc;
}

/* ---- pins, removal ---- */

int store_pin(struct store *st, const char *key, bool pinned)
{
	sqlite3_stmt *s;
	int rc = check_key(key);
	if (rc || (rc = prep(st, &s, "UPDATE objects SET pinned = ?2 WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, pinned);
	if ((rc = run_stmt(st, s, "pin")))
		return rc;
	return sqlite3_changes(st->db) ? KB_OK : KB_EOF;
}

/* Under the write lock: delete key's row, then unlink its file. *found: either existed. */
static int remove_locked(struct store *st, const char *key, const char *path, bool *found)
{
	int changes = 0, rc = exec_key(st, "DELETE FROM objects WHERE key = ?1", key, &changes);
	if (rc)
		return rc;
	*found = changes > 0;
	if (unlink(path) == 0)
		*found = true;
	else if (errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	return KB_OK;
}

int store_remove(struct store *st, const char *key)
{
	int rc = check_key(key);
	if (rc)
		return rc;
	char *path = store_object_path(st, key);
	if (!path)
		return KB_ERR_NOMEM;
	bool found = false;
	if (!(rc = begin(st)))
		rc = finish(st, remove_locked(st, key, path, &found));
	free(path);
	return rc ? rc : found ? KB_OK : KB_EOF;
}

/* ---- temporary files ---- */

enum temp_state { TEMP_LIVE, TEMP_STALE };

/* Is the temporary file at path still being written? */
static enum temp_state temp_state(struct store *st, const char *path, const struct stat *sb)
{
	double age = now(st) - (double)sb->st_mtime;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return TEMP_LIVE; /* gone meanwhile (committed or aborted) */
	int r = flock(fd, LOCK_EX | LOCK_NB);
	int e = errno;
	close(fd); /* releases our lock */
	if (r == 0) /* nobody holds it; the grace covers the moment between open and flock */
		return age > TEMP_GRACE ? TEMP_STALE : TEMP_LIVE;
	if (e == EWOULDBLOCK)
		return TEMP_LIVE;
	return age > TEMP_UNLOCKABLE_AGE ? TEMP_STALE : TEMP_LIVE; /* no flock here: go by age */
}

/* ---- eviction ---- */

static const char *const policy_names[STORE_POLICY_COUNT] = { "lru", "lfu", "s3fifo", "cost" };

const char *store_policy_name(int policy)
{
	return policy >= 0 && policy < STORE_POLICY_COUNT ? policy_names[policy] : "?";
}

int store_policy_from_name(const char *name)
{
	for (int i = 0; i < STORE_POLICY_COUNT; i++)
		if (!strcasecmp(name, policy_names[i]))
			return i;
	return -1;
}

/* An entry while eviction decides. */
struct cand {
	struct store_entry e;
	double score;   /* STORE_COST: value kept per byte */
	bool victim;
	bool moved;     /* S3-FIFO state changed: write it back */
	char reason[96];
};

struct evict_ctx {
	struct store *st;
	const struct store_evict_opts *o;
	struct cand *c;    /* [n] every row (pinned too) */
	size_t n;
	uint64_t total;    /* bytes still there */
	double now;
	struct cand **order; /* victims in the order chosen */
	size_t n_order;
};

static void take(struct evict_ctx *x, struct cand *c)
{
	c->victim = true;
	x->total -= c->e.size;
	x->order[x->n_order++] = c;
}

static int cmp_lru(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.last_used != y->e.last_used)
		return x->e.last_used < y->e.last_used ? -1 : 1;
	if (x->e.created != y->e.created)
		return x->e.created < y->e.created ? -1 : 1;
	return strcmp(x->e.key, y->e.key);
}

static int cmp_lfu(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.hits != y->e.hits)
		return x->e.hits < y->e.hits ? -1 : 1;
	return cmp_lru(a, b);
}

static int cmp_cost(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	return cmp_lru(a, b);
}

static int cmp_qseq(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.qseq != y->e.qseq)
		return x->e.qseq < y->e.qseq ? -1 : 1;
	return strcmp(x->e.key, y->e.key);
}

/* LRU, LFU, cost: sort the unpinned entries, take from the front. */
static int evict_sorted(struct evict_ctx *x)
{
	const struct store_evict_opts *o = x->o;
	struct cand **v = kb_calloc(x->n, sizeof *v);
	if (!v)
		return KB_ERR_NOMEM;
	size_t m = 0;
	double hl = o->half_life > 0 ? o->half_life : STORE_HALF_LIFE_DEFAULT;
	/* seconds per token of the entries whose cost is known, for those whose is not */
	double cost_sum = 0, tok_sum = 0;
	for (size_t i = 0; i < x->n; i++)
		if (x->c[i].e.cost >= 0) {
			cost_sum += x->c[i].e.cost;
			tok_sum += (double)x->c[i].e.n_tokens;
		}
	double per_token = tok_sum > 0 ? cost_sum / tok_sum : 0;
	for (size_t i = 0; i < x->n; i++) {
		struct cand *c = &x->c[i];
		if (c->e.pinned)
			continue;
		double cost = c->e.cost >= 0 ? c->e.cost : per_token * (double)c->e.n_tokens;
		double age = x->now - c->e.last_used;
		c->score = cost / (double)(c->e.size ? c->e.size : 1) * exp2(-(age > 0 ? age : 0) / hl);
		v[m++] = c;
	}
	qsort(v, m, sizeof *v, o->policy == STORE_LRU ? cmp_lru : o->policy == STORE_LFU ? cmp_lfu : cmp_cost);
	for (size_t i = 0; i < m && x->total > o->max_bytes; i++) {
		struct cand *c = v[i];
		char age[32];
		fmt_age(age, sizeof age, x->now - c->e.last_used);
		if (o->policy == STORE_LRU)
			snprintf(c->reason, sizeof c->reason, "lru: last used %s ago", age);
		else if (o->policy == STORE_LFU)
			snprintf(c->reason, sizeof c->reason, "lfu: %llu hit%s, last used %s ago",
				 (unsigned long long)c->e.hits, c->e.hits == 1 ? "" : "s", age);
		else
			snprintf(c->reason, sizeof c->reason, "cost: %.3g s/MiB%s, last used %s ago",
				 (c->e.cost >= 0 ? c->e.cost : per_token * (double)c->e.n_tokens) /
					 ((double)(c->e.size ? c->e.size : 1) / 1048576.0),
				 c->e.cost >= 0 ? "" : " (estimated)", age);
		take(x, c);
	}
	free(v);
	return KB_OK;
}

/* A FIFO of entries: pop at the front (the tail of S3-FIFO's queue, oldest),
 * push at the back (its head). Capacity covers every entry's pushes. */
struct fifo {
	struct cand **q;
	size_t head, len, cap;
	uint64_t bytes;
};

static void fifo_push(struct fifo *f, struct cand *c)
{
	f->q[(f->head + f->len++) % f->cap] = c;
	f->bytes += c->e.size;
}

static struct cand *fifo_pop(struct fifo *f)
{
	struct cand *c = f->q[f->head];
	f->head = (f->head + 1) % f->cap;
	f->len--;
	f->bytes -= c->e.size;
	return c;
}

/* S3-FIFO, as store.h describes it. Victims from S become ghosts. */
static int evict_s3fifo(struct evict_ctx *x, char (**ghosts)[STORE_KEY_HEX + 1], size_t *n_ghosts)
{
	struct cand **v = kb_calloc(x->n, sizeof *v);
	struct fifo s = { kb_calloc(x->n, sizeof *s.q), 0, 0, x->n ? x->n : 1, 0 };
	struct fifo m = { kb_calloc(x->n, sizeof *m.q), 0, 0, x->n ? x->n : 1, 0 };
	*ghosts = kb_calloc(x->n, sizeof **ghosts);
	*n_ghosts = 0;
	int rc = v && s.q && m.q && *ghosts ? KB_OK : KB_ERR_NOMEM;
	if (rc)
		goto out;
	size_t nv = 0;
	int64_t seq = 0;
	for (size_t i = 0; i < x->n; i++) {
		seq = x->c[i].e.qseq > seq ? x->c[i].e.qseq : seq;
		if (!x->c[i].e.pinned)
			v[nv++] = &x->c[i];
	}
	qsort(v, nv, sizeof *v, cmp_qseq);
	for (size_t i = 0; i < nv; i++)
		fifo_push(v[i]->e.queue == STORE_QUEUE_MAIN ? &m : &s, v[i]);
	const uint64_t small_target = x->o->max_bytes / 10;
	while (x->total > x->o->max_bytes && (s.len || m.len)) {
		if (s.len && (s.bytes > small_target || !m.len)) {
			struct cand *c = fifo_pop(&s);
			if (c->e.freq >= 1) { /* reused while in S: promote, keeping its frequency */
				c->e.queue = STORE_QUEUE_MAIN;
				c->e.qseq = ++seq;
				c->moved = true;
				fifo_push(&m, c);
			} else {
				snprintf(c->reason, sizeof c->reason, "s3fifo: small queue, no hit since it came in");
				memcpy((*ghosts)[(*n_ghosts)++], c->e.key, STORE_KEY_HEX + 1);
				take(x, c);
			}
		} else {
			struct cand *c = fifo_pop(&m);
			if (c->e.freq > 0) { /* reused: once more round main */
				c->e.freq--;
				c->e.qseq = ++seq;
				c->moved = true;
				fifo_push(&m, c);
			} else {
				snprintf(c->reason, sizeof c->reason, "s3fifo: main queue, no hit since its last round");
				take(x, c);
			}
		}
	}
out:
	free(v);
	free(s.q);
	free(m.q);
	return rc;
}

/* Load every row (under the write lock). */
static int load_cands(struct store *st, struct cand **out, size_t *n)
{
	sqlite3_stmt *s;
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	int rc = prep(st, &s, "SELECT " ENTRY_COLS " FROM objects");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (kb_grow(out, &cap, *n, sizeof **out, 256)) {
			rc = KB_ERR_NOMEM;
			break;
		}
		struct cand *c = &(*out)[(*n)++];
		memset(c, 0, sizeof *c);
		read_entry(s, &c->e);
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(st, "load the index");
	sqlite3_finalize(s);
	return rc;
}

/* Under the write lock: carry out what was decided. */
static int evict_apply(struct evict_ctx *x, char (*ghosts)[STORE_KEY_HEX + 1], size_t n_ghosts)
{
	struct store *st = x->st;
	int rc = KB_OK;
	for (size_t i = 0; i < x->n_order && !rc; i++) {
		const char *key = x->order[i]->e.key;
		if ((rc = exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL)) || x->o->dry_run)
			continue;
		char *path = store_object_path(st, key);
		if (!path)
			return KB_ERR_NOMEM;
		if (unlink(path) < 0 && errno != ENOENT)
			rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		free(path);
		hook(st, STORE_HOOK_EVICT_UNLINKED);
	}
	sqlite3_stmt *s = NULL;
	for (size_t i = 0; i < x->n && !rc; i++) {
		const struct cand *c = &x->c[i];
		if (!c->moved || c->victim)
			continue;
		if ((rc = prep(st, &s, "UPDATE objects SET queue = ?2, freq = ?3, qseq = ?4 WHERE key = ?1")))
			break;
		sqlite3_bind_text(s, 1, c->e.key, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, c->e.queue);
		sqlite3_bind_int(s, 3, c->e.freq);
		sqlite3_bind_int64(s, 4, c->e.qseq);
		rc = run_stmt(st, s, "update the queues");
	}
	for (size_t i = 0; i < n_ghosts && !rc; i++)
		rc = exec_key(st, "INSERT OR REPLACE INTO ghosts (key, seq) VALUES (?1,"
				  " (SELECT COALESCE(MAX(seq), 0) + 1 FROM ghosts))", ghosts[i], NULL);
	if (rc || !n_ghosts)
		return rc;
	/* the ghost set keeps as many keys as the main queue holds objects (at least GHOST_MIN) */
	if ((rc = prep(st, &s, "DELETE FROM ghosts WHERE seq NOT IN (SELECT seq FROM ghosts ORDER BY seq DESC"
			       " LIMIT MAX(?1, (SELECT COUNT(*) FROM objects WHERE queue = 1)))")))
		return rc;
	sqlite3_bind_int(s, 1, GHOST_MIN);
	return run_stmt(st, s, "trim the ghosts");
}

struct verifier;
static int walk_objects(struct store *st, struct verifier *v, bool remove_temps, uint64_t *n_stale,
			uint64_t *n_live);

int store_evict(struct store *st, const struct store_evict_opts *o, store_evict_fn fn, void *ctx,
		struct store_evict_result *res)
{
	struct store_evict_result r = { 0 };
	if (o->policy < 0 || o->policy >= STORE_POLICY_COUNT)
		return kb_fail(KB_ERR_ARG, "unknown eviction policy %d", (int)o->policy);
	struct evict_ctx x = { .st = st, .o = o, .now = now(st) };
	char (*ghosts)[STORE_KEY_HEX + 1] = NULL;
	size_t n_ghosts = 0;
	int rc = begin(st);
	if (rc)
		return rc;
	if ((rc = load_cands(st, &x.c, &x.n)))
		goto out;
	for (size_t i = 0; i < x.n; i++)
		x.total += x.c[i].e.size;
	if (!(x.order = kb_calloc(x.n, sizeof *x.order))) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	if (x.total > o->max_bytes)
		rc = o->policy == STORE_S3FIFO ? evict_s3fifo(&x, &ghosts, &n_ghosts) : evict_sorted(&x);
	if (!rc)
		rc = evict_apply(&x, ghosts, n_ghosts);
out:
	if (o->dry_run || rc) {
		rollback(st);
	} else {
		rc = commit(st);
	}
	if (!rc) {
		for (size_t i = 0; i < x.n_order; i++) {
			const struct cand *c = x.order[i];
			r.n_removed++;
			r.bytes_removed += c->e.size;
			if (fn)
				fn(ctx, c->e.key, c->e.size, c->reason);
		}
		for (size_t i = 0; i < x.n; i++) {
			const struct cand *c = &x.c[i];
			if (c->victim)
				continue;
			r.n_left++;
			r.bytes_left += c->e.size;
			if (c->e.pinned) {
				r.n_pinned++;
				r.bytes_pinned += c->e.size;
			}
		}
		uint64_t live = 0;
		if (!o->dry_run)
			rc = walk_objects(st, NULL, true, &r.n_temp_removed, &live);
	}
	free(x.c);
	free(x.order);
	free(ghosts);
	if (res)
		*res = r;
	return rc;
}

/* ---- statistics ---- */

int store_stats(struct store *st, struct store_stats *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *s;
	int rc = prep(st, &s, "SELECT COUNT(*), TOTAL(size), TOTAL(hits), TOTAL(n_tokens), TOTAL(pinned != 0),"
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
		rc = db_fail(st, "statistics");
	}
	sqlite3_finalize(s);
	return rc;
}

int store_stats_models(struct store *st, int (*fn)(void *ctx, const struct store_model_stats *m), void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(st, &s, "SELECT model, COUNT(*), TOTAL(size), TOTAL(hits), TOTAL(n_tokens), MIN(created),"
			      " MAX(created), MAX(last_used) FROM objects GROUP BY model"
			      " ORDER BY TOTAL(size) DESC, model");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_model_stats m;
		memset(&m, 0, sizeof m);
		copy_text(m.model, sizeof m.model, sqlite3_column_text(s, 0));
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
		rc = db_fail(st, "statistics");
	sqlite3_finalize(s);
	return rc;
}

/* ---- verification ---- */

uint64_t store_verify_problems(const struct store_verify_result *r)
{
	return r->missing + r->bad_size + r->corrupt + r->bad_rows + r->orphans_adopted + r->orphans_removed +
	       r->stale_temps + r->unknown + r->db_errors;
}

struct verifier {
	struct store *st;
	bool repair;
	store_verify_fn fn;
	void *ctx;
	struct store_verify_result *r;
};

static void report(struct verifier *v, const char *what, const char *problem, const char *action)
{
	if (v->fn)
		v->fn(v->ctx, what, problem, v->repair ? action : "found");
}

/* A reader's message without its leading "'name': " (the report names the object). */
static const char *without_name(const char *msg, const char *name)
{
	size_t n = strlen(name);
	if (msg[0] == '\'' && !strncmp(msg + 1, name, n) && !strncmp(msg + 1 + n, "': ", 3))
		return msg + n + 4;
	return msg;
}

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int check_integrity(struct verifier *v)
{
	sqlite3_stmt *s;
	int rc = prep(v->st, &s, "PRAGMA integrity_check");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(s, 0);
		if (line && strcmp(line, "ok") != 0) {
			v->r->db_errors++;
			if (v->fn)
				v->fn(v->ctx, "index.db", line, "found");
		}
	}
	if (r != SQLITE_DONE)
		rc = db_fail(v->st, "PRAGMA integrity_check");
	sqlite3_finalize(s);
	return rc;
}

/* Read the object at path whole. KB_OK and *info and *sb, or an error: with
 * the message (the object is broken) unless KB_ERR_NOMEM. ENOENT gives KB_EOF. */
static int read_object(const char *path, const char *name, const char *key, struct object_info *info,
		       struct stat *sb)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? KB_EOF : kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno));
	int rc = fstat(fd, sb) < 0 ? kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno))
				   : check_object(fd, name, key, true, info);
	close(fd);
	return rc;
}

/* Under the write lock: remove the file at path if it is still the one we read
 * (sb: same inode) and, when drop_row, key's row. */
static int remove_checked_locked(struct store *st, const char *key, const char *path, const struct stat *sb,
				 bool drop_row)
{
	struct stat now_sb;
	if (stat(path, &now_sb) == 0 && now_sb.st_dev == sb->st_dev && now_sb.st_ino == sb->st_ino &&
	    unlink(path) < 0 && errno != ENOENT)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	return drop_row ? exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL) : KB_OK;
}

struct row {
	char key[STORE_KEY_HEX + 1];
	char model[STORE_KEY_HEX + 1];
	sqlite3_int64 size, n_tokens;
	bool bad_key;
	char raw_key[80];
};

static int load_rows(struct store *st, struct row **out, size_t *n)
{
	sqlite3_stmt *s;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc = prep(st, &s, "SELECT key, size, n_tokens, model FROM objects ORDER BY key");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (kb_grow(out, &cap, *n, sizeof **out, 256)) {
			rc = KB_ERR_NOMEM;
			break;
		}
		struct row *w = &(*out)[(*n)++];
		memset(w, 0, sizeof *w);
		copy_text(w->raw_key, sizeof w->raw_key, sqlite3_column_text(s, 0));
		w->bad_key = !store_key_valid(w->raw_key);
		copy_text(w->key, sizeof w->key, sqlite3_column_text(s, 0));
		w->size = sqlite3_column_int64(s, 1);
		w->n_tokens = sqlite3_column_int64(s, 2);
		copy_text(w->model, sizeof w->model, sqlite3_column_text(s, 3));
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(st, "load the index");
	sqlite3_finalize(s);
	return rc;
}

/* Check one row against its object. */
static int verify_row(struct verifier *v, const struct row *w)
{
	struct store *st = v->st;
	struct store_verify_result *r = v->r;
	int rc = KB_OK;
	if (w->bad_key) {
		r->bad_rows++;
		report(v, w->raw_key, "not a store key", "removed");
		if (v->repair && !(rc = begin(st)))
			rc = finish(st, exec_key(st, "DELETE FROM objects WHERE key = ?1", w->raw_key, NULL));
		r->repaired += v->repair && !rc;
		return rc;
	}
	char *path = store_object_path(st, w->key), *name = str_printf("objects/%.2s/%s.kvc", w->key, w->key + 2);
	if (!path || !name) {
		free(path);
		free(name);
		return KB_ERR_NOMEM;
	}
	struct object_info info;
	struct stat sb;
	int cr = read_object(path, name, w->key, &info, &sb);
	char msg[600];
	if (cr == KB_ERR_NOMEM || cr == KB_ERR_IO) {
		rc = cr; /* the machine's trouble, not the object's: stop */
	} else if (cr == KB_ERR_UNSUPPORTED) {
		r->checked++;
		r->unknown++; /* a newer kvblend's object, maybe: not ours to remove */
		report(v, w->key, without_name(kb_error(), name), "left alone");
	} else if (cr == KB_EOF) {
		if (v->repair && !(rc = begin(st))) {
			enum entry_state state;
			rc = finish(st, reconcile_locked(st, w->key, path, &state));
			if (!rc && state != ENTRY_DROPPED) /* evicted, or put back, meanwhile */
				goto out;
		} else if (!v->repair && (rc = row_exists(st, w->key)) <= 0) {
			goto out; /* evicted meanwhile (or an error) */
		}
		rc = rc > 0 ? KB_OK : rc;
		r->missing++;
		r->repaired += v->repair && !rc;
		report(v, w->key, "the index lists it but its file is missing", "removed");
	} else {
		r->checked++;
		bool bad_size = cr == KB_OK && sb.st_size != w->size;
		if (cr || bad_size) {
			if (bad_size) {
				r->bad_size++;
				snprintf(msg, sizeof msg, "'%s': %lld bytes, the index says %lld", name,
					 (long long)sb.st_size, (long long)w->size);
			} else {
				r->corrupt++;
				snprintf(msg, sizeof msg, "%s", without_name(kb_error(), name));
			}
			if (v->repair && !(rc = begin(st)))
				rc = finish(st, remove_checked_locked(st, w->key, path, &sb, true));
			r->repaired += v->repair && !rc;
			report(v, w->key, msg, "removed");
			goto out;
		}
		char model[STORE_KEY_HEX + 1];
		hash_hex(info.model_fp, 32, model);
		if (info.n_tokens != w->n_tokens || strcmp(model, w->model) != 0) {
			r->bad_rows++;
			snprintf(msg, sizeof msg, "the index says %lld tokens of model %.16s…, the object %lld of %.16s…",
				 (long long)w->n_tokens, w->model, (long long)info.n_tokens, model);
			if (v->repair) {
				sqlite3_stmt *s;
				if (!(rc = prep(st, &s, "UPDATE objects SET n_tokens = ?2, model = ?3 WHERE key = ?1"))) {
					sqlite3_bind_text(s, 1, w->key, -1, SQLITE_STATIC);
					sqlite3_bind_int64(s, 2, info.n_tokens);
					sqlite3_bind_text(s, 3, model, -1, SQLITE_STATIC);
					rc = run_stmt(st, s, "correct a row");
				}
			}
			r->repaired += v->repair && !rc;
			report(v, w->key, msg, "corrected");
			goto out;
		}
		r->ok++;
	}
out:
	free(path);
	free(name);
	return rc;
}

/* A file named like an object, with no row. */
static int verify_orphan(struct verifier *v, const char *key, const char *path, const char *name)
{
	struct store *st = v->st;
	struct object_info info;
	struct stat sb;
	int cr = read_object(path, name, key, &info, &sb), rc = KB_OK;
	if (cr == KB_EOF || cr == KB_ERR_NOMEM || cr == KB_ERR_IO)
		return cr == KB_EOF ? KB_OK : cr;
	v->r->checked++;
	if (cr == KB_ERR_UNSUPPORTED) {
		v->r->unknown++;
		report(v, key, without_name(kb_error(), name), "left alone");
		return KB_OK;
	}
	char msg[600] = "";
	if (cr)
		snprintf(msg, sizeof msg, "not in the index, and broken: %s", without_name(kb_error(), name));
	if (!v->repair) {
		int exists = row_exists(st, key); /* a put may have indexed it meanwhile */
		if (exists)
			return exists < 0 ? exists : KB_OK;
	} else {
		if ((rc = begin(st)))
			return rc;
		/* again under the lock: a put may have indexed or replaced it meanwhile */
		int exists = row_exists(st, key);
		struct stat now_sb;
		if (exists < 0) {
			rc = exists;
		} else if (exists || stat(path, &now_sb) < 0 || now_sb.st_ino != sb.st_ino || now_sb.st_dev != sb.st_dev) {
			rollback(st);
			return KB_OK;
		} else if (cr) {
			rc = remove_checked_locked(st, key, path, &sb, false);
		} else {
			struct store_meta m = { .n_tokens = info.n_tokens, .cost = -1, .tool = info.tool };
			memcpy(m.model_fp, info.model_fp, 32);
			rc = insert_row(st, key, (uint64_t)sb.st_size, &m, (double)sb.st_mtime);
		}
		if ((rc = finish(st, rc)))
			return rc;
	}
	if (cr) {
		v->r->orphans_removed++;
		report(v, key, msg, "removed");
	} else {
		v->r->orphans_adopted++;
		report(v, key, "a sound object the index did not list", "adopted");
	}
	v->r->repaired += v->repair && !rc;
	return rc;
}

/* Walk objects/: temporary files, orphans, strangers. With v NULL, only the
 * temporary files (for evict). */
static int walk_objects(struct store *st, struct verifier *v, bool remove_temps, uint64_t *n_stale,
			uint64_t *n_live)
{
	char *top = str_printf("%s/objects", st->dir);
	if (!top)
		return KB_ERR_NOMEM;
	DIR *d = opendir(top);
	if (!d) {
		int rc = kb_fail(KB_ERR_IO, "'%s': %s", top, strerror(errno));
		free(top);
		return rc;
	}
	int rc = KB_OK;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		const char *sub = de->d_name;
		if (!strcmp(sub, ".") || !strcmp(sub, ".."))
			continue;
		char *subpath = str_printf("%s/%s", top, sub);
		if (!subpath) {
			rc = KB_ERR_NOMEM;
			break;
		}
		struct stat sb;
		bool dir_ok = strlen(sub) == 2 && is_hex(sub, 2) && stat(subpath, &sb) == 0 && S_ISDIR(sb.st_mode);
		DIR *d2 = dir_ok ? opendir(subpath) : NULL;
		if (!d2) {
			if (v) {
				char rel[300];
				snprintf(rel, sizeof rel, "objects/%s", sub);
				v->r->unknown++;
				report(v, rel, dir_ok ? strerror(errno) : "not made by the store", "left alone");
			}
			free(subpath);
			continue;
		}
		struct dirent *e;
		while (!rc && (e = readdir(d2))) {
			const char *f = e->d_name;
			if (!strcmp(f, ".") || !strcmp(f, ".."))
				continue;
			char *path = str_printf("%s/%s", subpath, f), *rel = str_printf("objects/%s/%s", sub, f);
			if (!path || !rel) {
				free(path);
				free(rel);
				rc = KB_ERR_NOMEM;
				break;
			}
			size_t len = strlen(f);
			if (!strncmp(f, ".tmp-", 5)) {
				if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
					if (temp_state(st, path, &sb) == TEMP_LIVE) {
						(*n_live)++;
					} else {
						(*n_stale)++;
						if (remove_temps && unlink(path) < 0 && errno != ENOENT)
							rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
						if (v) {
							v->r->repaired += remove_temps && !rc;
							report(v, rel, "an unfinished write whose writer is gone", "removed");
						}
					}
				}
			} else if (v && len == STORE_KEY_HEX - 2 + 4 && !strcmp(f + len - 4, ".kvc") && is_hex(f, len - 4)) {
				char key[STORE_KEY_HEX + 1];
				snprintf(key, sizeof key, "%.2s%.*s", sub, (int)(len - 4), f);
				int exists = row_exists(st, key);
				if (exists < 0)
					rc = exists;
				else if (!exists)
					rc = verify_orphan(v, key, path, rel);
			} else if (v) {
				v->r->unknown++;
				report(v, rel, "not made by the store", "left alone");
			}
			free(path);
			free(rel);
		}
		closedir(d2);
		free(subpath);
	}
	closedir(d);
	free(top);
	return rc;
}

int store_verify(struct store *st, bool repair, store_verify_fn fn, void *ctx, struct store_verify_result *res)
{
	struct store_verify_result r = { 0 };
	struct verifier v = { st, repair, fn, ctx, &r };
	struct row *rows = NULL;
	size_t n = 0;
	int rc = check_integrity(&v);
	if (!rc)
		rc = load_rows(st, &rows, &n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = verify_row(&v, &rows[i]);
	free(rows);
	if (!rc)
		rc = walk_objects(st, &v, repair, &r.stale_temps, &r.live_temps);
	if (res)
		*res = r;
	return rc;
}
