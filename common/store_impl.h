/* store_impl.h — what the store's source files share (not a public header):
 * the struct, the clock and test hook, row helpers, and the checks that more
 * than one of put (store_put.c), lookup (store.c), eviction (store_evict.c)
 * and verification (store_verify.c) make.
 *
 * "Under the write lock" below means: between db_begin and db_finish on
 * st->db (see the locking notes at the top of store.c).
 */
#ifndef KB_STORE_IMPL_H
#define KB_STORE_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "db.h"
#include "store.h"

#define STORE_TEMP_GRACE 60.0       /* seconds an unlocked temporary file is left to its creator */
#define STORE_TEMP_UNLOCKABLE_AGE (24 * 3600.0) /* when flock does not work: remove after a day */
#define STORE_GHOST_MIN 64          /* the ghost set keeps at least this many keys */

struct store {
	char *dir;      /* owned: as given */
	struct db db;   /* DIR/index.db */
	double clock;   /* fixed "now" for tests, 0 = the real clock */
	void (*hook)(void *ctx, int point);
	void *hook_ctx;
};

/* "now" in unix seconds (the test clock when set). */
double store_now(const struct store *st);
/* Call the test hook at point, if one is set. */
void store_hook(struct store *st, int point);
/* KB_OK for a valid key, else KB_ERR_ARG naming it. */
int store_check_key(const char *key);
/* The path of key's object, after checking the key (the one place a path is
 * built from a key): KB_OK and *path (malloc()ed), KB_ERR_ARG for a malformed
 * key (nothing outside objects/ is ever named), KB_ERR_NOMEM. */
int store_path(const struct store *st, const char *key, char **path);
/* Fail with the store's read-only message unless it can be written. */
int store_writable(const struct store *st, const char *what);

/* Open the object at path to read it, without blocking (a FIFO) or following a
 * link, and require a regular file. KB_OK and *fd, *sb; KB_EOF when nothing is
 * there; KB_ERR_FORMAT "'name': not a regular file" for anything else there
 * (a folder, a FIFO, a link, a device); KB_ERR_IO. */
int store_open_object(const char *path, const char *name, int *fd, struct stat *sb);
/* Remove whatever is at path (a file, a link, a FIFO; a folder when empty).
 * KB_OK when it is gone (or was), else KB_ERR_IO. */
int store_remove_path(const char *path);

/* Run sql with one text parameter (?1 = key); *changes gets the rows changed (may be NULL). */
int store_exec_key(struct store *st, const char *sql, const char *key, int *changes);
/* Does key have a row? 1 yes, 0 no, < 0 error. */
int store_row_exists(struct store *st, const char *key);
/* The row's columns, in the order store_read_entry expects. */
#define STORE_ENTRY_COLS \
	"key, size, n_tokens, model, created, last_used, hits, cost, pinned, queue, freq, qseq, tool, dtype"
void store_read_entry(sqlite3_stmt *s, struct store_entry *e);
void store_copy_text(char *dst, size_t cap, const unsigned char *src);

enum store_entry_state { ENTRY_NO_ROW, ENTRY_SOUND, ENTRY_DROPPED };
/* Under the write lock: bring key's row and file into agreement. A row whose
 * file is gone is deleted; a row whose file is not a regular file of the
 * row's size is deleted with the file. *state says which case it was. */
int store_reconcile_locked(struct store *st, const char *key, const char *path, enum store_entry_state *state);

/* What an object's header says. */
struct object_info {
	int64_t n_tokens;
	uint8_t model_fp[32];
	char tool[32];
	int dtype;               /* enum kvc_dtype of its layers */
};
/* Read the header of the cache in fd: it must give key. With whole, read the
 * whole object (every checksum, the end record, nothing after it). name names
 * the object in messages. KB_OK and *info, or KB_ERR_FORMAT / KB_ERR_MISMATCH /
 * KB_ERR_IO with the message. */
int store_check_object(int fd, const char *name, const char *key, bool whole, struct object_info *info);
/* Under the write lock: insert key's row (or refresh the one left by a lost
 * file), entering S3-FIFO's main queue when the key is a ghost. dtype: the
 * object's (from its header). */
int store_insert_row(struct store *st, const char *key, uint64_t size, const struct store_meta *m, int dtype,
		     double created);
/* The dtype names the index records (kvc_dtype_name; "" for none). */
const char *store_dtype_name(int dtype);

/* Walk objects/: temporary files, orphans, strangers (store_verify.c). With v
 * NULL, only the temporary files (for evict): stale ones are counted in
 * *n_stale (and removed with remove_temps), live ones in *n_live. */
struct verifier;
int store_walk_objects(struct store *st, struct verifier *v, bool remove_temps, uint64_t *n_stale, uint64_t *n_live);

#endif
