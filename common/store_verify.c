/* store_verify.c — checking a whole store (store_verify) and the walk over
 * objects/ that finds temporary files, orphans and strangers (also used by
 * eviction to clean up temporary files). */
#include "store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"

/* ---- temporary files ---- */

enum temp_state { TEMP_LIVE, TEMP_STALE };

/* Is the temporary file at path still being written? */
static enum temp_state temp_state(struct store *st, const char *path, const struct stat *sb)
{
	double age = store_now(st) - (double)sb->st_mtime;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return TEMP_LIVE; /* gone meanwhile (committed or aborted) */
	int r = flock(fd, LOCK_EX | LOCK_NB);
	int e = errno;
	close(fd); /* releases our lock */
	if (r == 0) /* nobody holds it; the grace covers the moment between open and flock */
		return age > STORE_TEMP_GRACE ? TEMP_STALE : TEMP_LIVE;
	if (e == EWOULDBLOCK)
		return TEMP_LIVE;
	return age > STORE_TEMP_UNLOCKABLE_AGE ? TEMP_STALE : TEMP_LIVE; /* no flock here: go by age */
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
	int rc = db_prep(&v->st->db, &s, "PRAGMA integrity_check");
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
		rc = db_fail(&v->st->db, "PRAGMA integrity_check");
	sqlite3_finalize(s);
	return rc;
}

/* Open and read the object at path whole, keeping it open in *fd: while the
 * descriptor is open its inode cannot be reused, so a path that still shows
 * the identity in *sb names exactly the bytes checked. Returns KB_OK, or the
 * object's problem with its message (KB_ERR_FORMAT, KB_ERR_MISMATCH,
 * KB_ERR_UNSUPPORTED; *fd open, except for a non-regular thing, "not a regular
 * file", whose lstat is in *sb); KB_EOF when nothing is there; KB_ERR_IO or
 * KB_ERR_NOMEM, the machine's trouble, with *fd = -1. */
static int read_object(const char *path, const char *name, const char *key, struct object_info *info,
		       struct stat *sb, int *fd)
{
	int rc = store_open_object(path, name, fd, sb);
	if (rc == KB_ERR_FORMAT) { /* a folder, a FIFO, a link: identify it by lstat */
		char msg[512];
		snprintf(msg, sizeof msg, "%s", kb_error());
		if (lstat(path, sb) < 0)
			return errno == ENOENT ? KB_EOF : kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno));
		return kb_fail(KB_ERR_FORMAT, "%s", msg);
	}
	if (rc)
		return rc;
	rc = store_check_object(*fd, name, key, true, info);
	if (rc == KB_ERR_IO || rc == KB_ERR_NOMEM) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

/* Is the thing at path still the one read (same device and inode)? */
static bool same_thing(const char *path, const struct stat *sb)
{
	struct stat now;
	return lstat(path, &now) == 0 && now.st_dev == sb->st_dev && now.st_ino == sb->st_ino;
}

/* Remove the broken thing at path. A folder with things in it is no object
 * and not ours to empty: it is left (*left = true), not an error. */
static int remove_broken(const char *path, bool *left)
{
	struct stat sb;
	*left = false;
	if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && rmdir(path) < 0 && (errno == ENOTEMPTY || errno == EEXIST)) {
		*left = true;
		return KB_OK;
	}
	return store_remove_path(path);
}

/* Take the lock a decision is made under: the write lock (a dry run rolls it
 * back), or on a read-only store a read transaction. */
static int lock(struct verifier *v)
{
	return v->st->db.readonly ? db_exec(&v->st->db, "BEGIN") : db_begin(&v->st->db);
}

/* Release it: commit a repair, roll back anything else. */
static int unlock(struct verifier *v, int rc)
{
	if (v->repair)
		return db_finish(&v->st->db, rc);
	db_rollback(&v->st->db);
	return rc;
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
	int rc = db_prep(&st->db, &s, "SELECT key, size, n_tokens, model FROM objects ORDER BY key");
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
		store_copy_text(w->raw_key, sizeof w->raw_key, sqlite3_column_text(s, 0));
		w->bad_key = !store_key_valid(w->raw_key);
		store_copy_text(w->key, sizeof w->key, sqlite3_column_text(s, 0));
		w->size = sqlite3_column_int64(s, 1);
		w->n_tokens = sqlite3_column_int64(s, 2);
		store_copy_text(w->model, sizeof w->model, sqlite3_column_text(s, 3));
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(&st->db, "load the index");
	sqlite3_finalize(s);
	return rc;
}

/* The row of key as it is now (under the lock): 1 and *cur, 0 when gone, < 0 error. */
static int current_row(struct store *st, const char *key, struct row *cur)
{
	sqlite3_stmt *s;
	int rc = db_prep(&st->db, &s, "SELECT size, n_tokens, model FROM objects WHERE key = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		cur->size = sqlite3_column_int64(s, 0);
		cur->n_tokens = sqlite3_column_int64(s, 1);
		store_copy_text(cur->model, sizeof cur->model, sqlite3_column_text(s, 2));
	}
	rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_fail(&st->db, "lookup");
	sqlite3_finalize(s);
	return rc;
}

/* What verify_row concluded about an entry, under the lock. */
enum verdict { V_OK, V_CHANGED, V_MISSING, V_NOT_REGULAR, V_CORRUPT, V_BAD_SIZE, V_BAD_META, V_LEFT };

/* Under the lock: judge key's entry by its row as it is now and the object as
 * read (cr, info, sb; fd still open when it was a regular file). An entry
 * whose row or file changed since it was read (evicted, put again by another
 * process) is V_CHANGED: never judged on a stale row or a file it did not read. */
static int judge_locked(struct store *st, const char *key, const char *path, int cr, const struct object_info *info,
			const struct stat *sb, int fd, struct row *cur, enum verdict *out)
{
	*out = V_CHANGED;
	int rc = current_row(st, key, cur);
	if (rc <= 0)
		return rc; /* gone meanwhile (evicted, removed): nothing to judge */
	struct stat now;
	if (lstat(path, &now) < 0) {
		if (errno != ENOENT)
			return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		*out = V_MISSING; /* a row and no file, seen under the lock */
		return KB_OK;
	}
	if (cr == KB_EOF || now.st_dev != sb->st_dev || now.st_ino != sb->st_ino)
		return KB_OK; /* another file now: put meanwhile, not the one read */
	char model[STORE_KEY_HEX + 1];
	hash_hex(info->model_fp, 32, model);
	*out = fd < 0 ? V_NOT_REGULAR : cr ? V_CORRUPT : sb->st_size != cur->size ? V_BAD_SIZE
	     : info->n_tokens != cur->n_tokens || strcmp(model, cur->model) ? V_BAD_META : V_OK;
	return KB_OK;
}

/* Under the write lock: repair what judge_locked found (*vd becomes V_LEFT
 * for a folder that could not be removed: its row goes, it stays). */
static int repair_locked(struct store *st, const char *key, const char *path, enum verdict *pvd,
			 const struct object_info *info)
{
	enum verdict vd = *pvd;
	if (vd == V_OK || vd == V_BAD_META) {
		/* the object's dtype, which an index before version 2 did not keep */
		sqlite3_stmt *s;
		int rc = db_prep(&st->db, &s, "UPDATE objects SET dtype = ?2 WHERE key = ?1 AND dtype <> ?2");
		if (rc)
			return rc;
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, store_dtype_name(info->dtype), -1, SQLITE_STATIC);
		if ((rc = db_run(&st->db, s, "record the dtype")))
			return rc;
	}
	if (vd == V_OK || vd == V_CHANGED)
		return KB_OK;
	if (vd == V_BAD_META) {
		char model[STORE_KEY_HEX + 1];
		hash_hex(info->model_fp, 32, model);
		sqlite3_stmt *s;
		int rc = db_prep(&st->db, &s, "UPDATE objects SET n_tokens = ?2, model = ?3 WHERE key = ?1");
		if (rc)
			return rc;
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, info->n_tokens);
		sqlite3_bind_text(s, 3, model, -1, SQLITE_STATIC);
		return db_run(&st->db, s, "correct a row");
	}
	bool left = false;
	int rc = vd == V_MISSING ? KB_OK : remove_broken(path, &left);
	if (left)
		*pvd = V_LEFT;
	return rc ? rc : store_exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL);
}

/* Count and report a verdict. */
static void tell(struct verifier *v, const char *key, const char *name, enum verdict vd, const struct row *cur,
		 const struct object_info *info, const struct stat *sb, const char *why)
{
	struct store_verify_result *r = v->r;
	char msg[600], model[STORE_KEY_HEX + 1];
	switch (vd) {
	case V_OK: r->ok++; return;
	case V_CHANGED: return;
	case V_MISSING:
		r->missing++;
		report(v, key, "the index lists it but its file is missing", "removed");
		break;
	case V_NOT_REGULAR:
	case V_CORRUPT:
		r->corrupt++;
		report(v, key, why, "removed");
		break;
	case V_BAD_SIZE:
		r->bad_size++;
		snprintf(msg, sizeof msg, "'%s': %lld bytes, the index says %lld", name, (long long)sb->st_size,
			 (long long)cur->size);
		report(v, key, msg, "removed");
		break;
	case V_BAD_META:
		r->bad_rows++;
		hash_hex(info->model_fp, 32, model);
		snprintf(msg, sizeof msg, "the index says %lld tokens of model %.16s…, the object %lld of %.16s…",
			 (long long)cur->n_tokens, cur->model, (long long)info->n_tokens, model);
		report(v, key, msg, "corrected");
		break;
	case V_LEFT:
		r->unknown++;
		snprintf(msg, sizeof msg, "%s, a folder with things in it: its index row is removed", why);
		report(v, key, msg, "left alone");
		return;
	}
	r->repaired += v->repair;
}

/* A row whose key is no store key: removed (no path is ever made of it). */
static int verify_bad_key(struct verifier *v, const struct row *w)
{
	int rc = KB_OK;
	v->r->bad_rows++;
	report(v, w->raw_key, "not a store key", "removed");
	if (v->repair && !(rc = db_begin(&v->st->db)))
		rc = db_finish(&v->st->db, store_exec_key(v->st, "DELETE FROM objects WHERE key = ?1", w->raw_key, NULL));
	v->r->repaired += v->repair && !rc;
	return rc;
}

/* Check one row against its object: read the object (no lock), then judge it
 * against the row as it is then, under the lock, and repair in the same
 * transaction. */
static int verify_row(struct verifier *v, const struct row *w)
{
	struct store *st = v->st;
	if (w->bad_key)
		return verify_bad_key(v, w);
	char *path, *name = kb_asprintf("objects/%.2s/%s.kvc", w->key, w->key + 2);
	int rc = store_path(st, w->key, &path), fd = -1;
	if (rc || !name) {
		free(path);
		free(name);
		return rc ? rc : KB_ERR_NOMEM;
	}
	struct object_info info = { 0 };
	struct stat sb = { 0 };
	store_hook(st, STORE_HOOK_VERIFY_LISTED);
	int cr = read_object(path, name, w->key, &info, &sb, &fd);
	char why[512] = "";
	if (cr != KB_OK && cr != KB_EOF)
		snprintf(why, sizeof why, "%s", without_name(kb_error(), name));
	if (cr != KB_EOF)
		v->r->checked += cr != KB_ERR_NOMEM && cr != KB_ERR_IO;
	if (cr == KB_ERR_NOMEM || cr == KB_ERR_IO) {
		rc = cr; /* the machine's trouble, not the object's: stop */
	} else if (cr == KB_ERR_UNSUPPORTED) {
		v->r->unknown++; /* a newer kvblend's object, maybe: not ours to remove */
		report(v, w->key, why, "left alone");
	} else {
		store_hook(st, STORE_HOOK_VERIFY_READ);
		enum verdict vd = V_CHANGED;
		struct row cur;
		if (!(rc = lock(v)) && !(rc = judge_locked(st, w->key, path, cr, &info, &sb, fd, &cur, &vd)) && v->repair)
			rc = repair_locked(st, w->key, path, &vd, &info);
		if (!(rc = unlock(v, rc)))
			tell(v, w->key, name, vd, &cur, &info, &sb, why);
	}
	if (fd >= 0)
		close(fd);
	free(path);
	free(name);
	return rc;
}

/* A file named like an object, with no row: adopted when sound, else removed,
 * decided under the lock (a put may index or replace it meanwhile). */
static int verify_orphan(struct verifier *v, const char *key, const char *path, const char *name)
{
	struct store *st = v->st;
	struct object_info info;
	struct stat sb;
	int fd = -1, cr = read_object(path, name, key, &info, &sb, &fd), rc = KB_OK;
	if (cr == KB_EOF || cr == KB_ERR_NOMEM || cr == KB_ERR_IO)
		return cr == KB_EOF ? KB_OK : cr;
	v->r->checked++;
	char msg[600] = "";
	if (cr == KB_ERR_UNSUPPORTED) {
		v->r->unknown++;
		report(v, key, without_name(kb_error(), name), "left alone");
		goto out;
	}
	if (cr)
		snprintf(msg, sizeof msg, "not in the index, and broken: %s", without_name(kb_error(), name));
	if ((rc = lock(v)))
		goto out;
	int exists = store_row_exists(st, key);
	bool changed = exists != 0 || !same_thing(path, &sb);
	if (exists < 0) {
		rc = exists;
	} else if (!changed && v->repair && cr) {
		bool left;
		if (!(rc = remove_broken(path, &left)) && left) {
			db_rollback(&st->db);
			v->r->unknown++;
			report(v, key, "not a regular file, a folder with things in it", "left alone");
			goto out;
		}
	} else if (!changed && v->repair) {
		struct store_meta m = { .n_tokens = info.n_tokens, .cost = -1, .tool = info.tool };
		memcpy(m.model_fp, info.model_fp, 32);
		rc = store_insert_row(st, key, (uint64_t)sb.st_size, &m, info.dtype, (double)sb.st_mtime);
	}
	if ((rc = unlock(v, rc)) || changed)
		goto out;
	if (cr) {
		v->r->orphans_removed++;
		report(v, key, msg, "removed");
	} else {
		v->r->orphans_adopted++;
		report(v, key, "a sound object the index did not list", "adopted");
	}
	v->r->repaired += v->repair;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int store_walk_objects(struct store *st, struct verifier *v, bool remove_temps, uint64_t *n_stale,
			uint64_t *n_live)
{
	char *top = kb_asprintf("%s/objects", st->dir);
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
		char *subpath = kb_asprintf("%s/%s", top, sub);
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
			char *path = kb_asprintf("%s/%s", subpath, f), *rel = kb_asprintf("objects/%s/%s", sub, f);
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
				int exists = store_row_exists(st, key);
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
	int rc = repair ? store_writable(st, "repair the store (verify without repairing: --dry-run)") : KB_OK;
	if (!rc)
		rc = check_integrity(&v);
	if (!rc)
		rc = load_rows(st, &rows, &n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = verify_row(&v, &rows[i]);
	free(rows);
	if (!rc)
		rc = store_walk_objects(st, &v, repair, &r.stale_temps, &r.live_temps);
	if (res)
		*res = r;
	return rc;
}
