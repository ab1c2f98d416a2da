/* db.c — see db.h. */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int db_fail(const struct db *db, const char *what)
{
	int code = sqlite3_errcode(db->h) & 0xff;
	int status = code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? KB_ERR_FORMAT
		   : code == SQLITE_NOMEM ? KB_ERR_NOMEM : KB_ERR_IO;
	return kb_fail(status, "'%s': %s: %s", db->path, what, sqlite3_errmsg(db->h));
}

int db_exec(const struct db *db, const char *sql)
{
	if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(db, sql);
	return KB_OK;
}

int db_prep(const struct db *db, sqlite3_stmt **s, const char *sql)
{
	if (sqlite3_prepare_v2(db->h, sql, -1, s, NULL) != SQLITE_OK) {
		*s = NULL;
		return db_fail(db, "prepare");
	}
	return KB_OK;
}

int db_run(const struct db *db, sqlite3_stmt *s, const char *what)
{
	int r = sqlite3_step(s);
	int rc = r == SQLITE_DONE || r == SQLITE_ROW ? KB_OK : db_fail(db, what);
	sqlite3_finalize(s);
	return rc;
}

int db_user_version(const struct db *db, int *v)
{
	sqlite3_stmt *s;
	int rc = db_prep(db, &s, "PRAGMA user_version");
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		*v = sqlite3_column_int(s, 0);
	else
		rc = db_fail(db, "PRAGMA user_version");
	sqlite3_finalize(s);
	return rc;
}

int db_writable(const struct db *db, const char *what)
{
	if (db->readonly)
		return kb_fail(KB_ERR_IO, "'%s': read-only (no permission to write it or its folder): cannot %s",
			       db->path, what);
	return KB_OK;
}

int db_begin(const struct db *db)
{
	return db_exec(db, "BEGIN IMMEDIATE");
}

int db_commit(const struct db *db)
{
	int rc = db_exec(db, "COMMIT");
	if (rc)
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

void db_rollback(const struct db *db)
{
	if (db->h && !sqlite3_get_autocommit(db->h))
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

int db_finish(const struct db *db, int rc)
{
	if (rc) {
		db_rollback(db);
		return rc;
	}
	return db_commit(db);
}

int db_init_schema(const struct db *db, const char *schema, int version, const char *const *upgrades)
{
	int v = 0, rc;
	if ((rc = db_user_version(db, &v)))
		return rc;
	if (v == version)
		return KB_OK;
	if (v > version)
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': index version %d is newer than this kvblend knows (%d)",
			       db->path, v, version);
	if (db->readonly)
		return kb_fail(KB_ERR_ARG, "'%s': %s, and it is read-only", db->path,
			       v ? "an older index that needs an upgrade" : "an empty database");
	if ((rc = db_begin(db)))
		return rc;
	/* again inside the transaction: another process may have done it meanwhile */
	if ((rc = db_user_version(db, &v)) == KB_OK && v < version) {
		if (v == 0)
			rc = db_exec(db, schema);
		else
			for (; v < version && rc == KB_OK; v++)
				rc = db_exec(db, upgrades[v - 1]);
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
		if (rc == KB_OK)
			rc = db_exec(db, sql);
	}
	return db_finish(db, rc);
}

/* Enter WAL mode. Switching needs an exclusive lock that a busy handler does
 * not always wait for (several processes opening a new database at once): retry. */
static int set_wal(const struct db *db)
{
	for (int tries = 0;; tries++) {
		int r = sqlite3_exec(db->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (r == SQLITE_OK)
			return KB_OK;
		if (((r & 0xff) != SQLITE_BUSY && (r & 0xff) != SQLITE_LOCKED) || tries * 10 > DB_BUSY_TIMEOUT_MS)
			return db_fail(db, "PRAGMA journal_mode=WAL");
		usleep(10000);
	}
}

int db_mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	for (char *s = p + 1;; s++) {
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

/* "file:PATH?immutable=1" with PATH %-escaped as a URI needs. */
static char *immutable_uri(const char *path)
{
	size_t n = strlen(path), cap;
	if (kb_mul_size(n, 3, &cap) || kb_add_size(cap, sizeof "file:?immutable=1", &cap))
		return NULL;
	char *u = kb_malloc(cap), *o = u;
	if (!u)
		return NULL;
	o += sprintf(o, "file:");
	for (const char *p = path; *p; p++)
		if (*p == '%' || *p == '?' || *p == '#')
			o += sprintf(o, "%%%02X", (unsigned char)*p);
		else
			*o++ = *p;
	sprintf(o, "?immutable=1");
	return u;
}

/* Can the database be read? (A read-only WAL database whose -shm cannot be
 * made fails here with SQLITE_CANTOPEN.) */
static int can_read(const struct db *db)
{
	return db_exec(db, "SELECT count(*) FROM sqlite_master");
}

static int open_readonly(struct db *db)
{
	db->readonly = true;
	if (sqlite3_open_v2(db->path, &db->h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return db->h ? db_fail(db, "open") : kb_fail(KB_ERR_NOMEM, "out of memory");
	sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
	if (can_read(db) == KB_OK)
		return KB_OK;
	/* no -wal and -shm files, and no right to make them: nobody is writing
	 * now (a writer keeps them while it is connected), so read the file as it is */
	sqlite3_close_v2(db->h);
	db->h = NULL;
	char *uri = immutable_uri(db->path);
	if (!uri)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	int r = sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	free(uri);
	if (r != SQLITE_OK)
		return db->h ? db_fail(db, "open") : kb_fail(KB_ERR_NOMEM, "out of memory");
	return can_read(db);
}

int db_open(struct db *db, const char *dir, const char *file, enum db_open_mode mode)
{
	memset(db, 0, sizeof *db);
	size_t n = strlen(dir) + strlen(file) + 2;
	if (!(db->path = kb_malloc(n)))
		return KB_ERR_NOMEM;
	snprintf(db->path, n, "%s/%s", dir, file);
	int rc = KB_OK;
	struct stat sb;
	if (stat(db->path, &sb) < 0) {
		if (errno != ENOENT || mode == DB_EXISTING) {
			rc = errno == ENOENT ? KB_EOF : kb_fail(KB_ERR_IO, "'%s': %s", db->path, strerror(errno));
			goto fail;
		}
		if ((rc = db_mkdir_p(dir)))
			goto fail;
	} else if (access(db->path, W_OK) < 0 || access(dir, W_OK) < 0) {
		if (errno != EACCES && errno != EROFS && errno != EPERM) {
			rc = kb_fail(KB_ERR_IO, "'%s': %s", db->path, strerror(errno));
			goto fail;
		}
		if ((rc = open_readonly(db)))
			goto fail;
		return KB_OK;
	}
	int flags = SQLITE_OPEN_READWRITE | (mode == DB_CREATE ? SQLITE_OPEN_CREATE : 0);
	if (sqlite3_open_v2(db->path, &db->h, flags, NULL) != SQLITE_OK) {
		rc = db->h ? db_fail(db, "open") : kb_fail(KB_ERR_NOMEM, "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
	if ((rc = set_wal(db)) || (rc = db_exec(db, "PRAGMA synchronous=NORMAL")))
		goto fail;
	return KB_OK;
fail:
	db_close(db);
	return rc;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	if (db->h) {
		db_rollback(db);
		sqlite3_close_v2(db->h);
	}
	free(db->path);
	memset(db, 0, sizeof *db);
}
