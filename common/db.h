/* db.h — the SQLite plumbing shared by the two databases of a store folder:
 * the cache store's index (store.h, DIR/index.db) and the chunk index
 * (chunkdb.h, DIR/chunks.db).
 *
 * A struct db is one connection and the path that names it in messages. Every
 * function returns KB_OK or a status < 0 with the message in kb_error(), which
 * names the database file: "'DIR/index.db': what: SQLite's reason".
 *
 * Opening never creates anything unless asked (DB_CREATE), and a database the
 * process may not write is opened read-only: lookups work, and the first write
 * fails with "read-only" in its message (db_writable tells beforehand).
 */
#ifndef KB_DB_H
#define KB_DB_H

#include <sqlite3.h>
#include <stdbool.h>

#include "util.h"

#define DB_BUSY_TIMEOUT_MS 60000 /* how long a process waits for another's write lock */

struct db {
	sqlite3 *h;
	char *path;     /* owned, malloc(): the database file, for messages */
	bool readonly;  /* opened read-only: the file or its folder cannot be written */
};

enum db_open_mode {
	DB_EXISTING, /* the file must exist: KB_ERR_ARG "no such ..." otherwise; nothing is created */
	DB_CREATE,   /* create the folder and the file when missing */
};

/* Open path (in the folder dir, which DB_CREATE makes when missing). Writable
 * when possible, else read-only (then WAL is not switched on, and the file is
 * read as it is, SQLite "immutable", when its -wal and -shm files are absent
 * and cannot be made). A writable database is put in WAL mode, synchronous =
 * NORMAL, with a busy timeout. DB_EXISTING with no file: KB_ERR_ARG naming
 * path, *db untouched and nothing created. Returns KB_OK, or an error with
 * *db closed. */
int db_open(struct db *db, const char *dir, const char *file, enum db_open_mode mode) KB_WUR;
/* Close; a zeroed or closed struct db is a no-op. Rolls back an open transaction. */
void db_close(struct db *db);

/* Record SQLite's last error on db as a kvblend status: KB_ERR_FORMAT for a
 * file that is not a database or is corrupt, KB_ERR_NOMEM, else KB_ERR_IO. */
int db_fail(const struct db *db, const char *what);
/* Run sql (no rows wanted). */
int db_exec(const struct db *db, const char *sql) KB_WUR;
/* Prepare sql into *s (NULL on error). */
int db_prep(const struct db *db, sqlite3_stmt **s, const char *sql) KB_WUR;
/* Step a statement that returns no row (or whose rows are not wanted); finalize it. */
int db_run(const struct db *db, sqlite3_stmt *s, const char *what) KB_WUR;
/* PRAGMA user_version into *v. */
int db_user_version(const struct db *db, int *v) KB_WUR;
/* Create the schema when user_version is 0; bring an older one up to version
 * by running upgrades[v - 1] (which takes version v to v + 1) for each v
 * between, in one transaction; refuse a newer one (KB_ERR_UNSUPPORTED). On a
 * read-only database that needs either: KB_ERR_ARG. upgrades may be NULL
 * when version is 1. */
int db_init_schema(const struct db *db, const char *schema, int version, const char *const *upgrades) KB_WUR;
/* KB_OK when db can be written, else KB_ERR_IO "'PATH': read-only: cannot WHAT". */
int db_writable(const struct db *db, const char *what) KB_WUR;

/* Transactions. db_begin takes the write lock (BEGIN IMMEDIATE, waiting up to
 * the busy timeout for other processes); db_commit commits (rolling back when
 * that fails); db_rollback is a no-op outside a transaction; db_finish(db, rc)
 * rolls back and returns rc when it is an error, else commits. */
int db_begin(const struct db *db) KB_WUR;
int db_commit(const struct db *db) KB_WUR;
void db_rollback(const struct db *db);
int db_finish(const struct db *db, int rc) KB_WUR;

/* mkdir -p dir: KB_OK when it is (now) a folder. */
int db_mkdir_p(const char *dir) KB_WUR;

#endif
