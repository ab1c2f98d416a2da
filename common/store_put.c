/* store_put.c — writing an object into the store: a temporary file beside
 * its place, checked, fsynced, then renamed into place together with its index
 * row in one write transaction (see store.h and the notes in store.c). */
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "kvc.h"

/* ---- writing ---- */

int store_put_begin(struct store *st, const char *key, struct store_put *p)
{
	memset(p, 0, sizeof *p);
	p->fd = -1;
	int rc = store_check_key(key);
	if (rc || (rc = store_writable(st, "store a cache")))
		return rc;
	char *dir = kb_asprintf("%s/objects/%.2s", st->dir, key);
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
		if (!(p->tmp = kb_asprintf("%s/.tmp-%ld-%08x", dir, (long)getpid(), salt))) {
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
	if (kb_temp_register(p->tmp)) { /* SIGINT/SIGTERM remove it; if too many, evict's cleaning does */
	}
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
	kb_temp_free(p->tmp);
	p->tmp = NULL;
}

int store_check_object(int fd, const char *name, const char *key, bool whole, struct object_info *info)
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
	if (kvc_is_sparse(h)) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': a token-evicted cache does not belong in the store", name);
		goto out;
	}
	char got[STORE_KEY_HEX + 1];
	store_key(h->model_fp, h->tokens, (size_t)h->n_tokens, got);
	if (strcmp(got, key) != 0) {
		rc = kb_fail(KB_ERR_MISMATCH, "'%s': its tokens and model give another key (%.16s…)", name, got);
		goto out;
	}
	info->n_tokens = h->n_tokens;
	memcpy(info->model_fp, h->model_fp, 32);
	snprintf(info->tool, sizeof info->tool, "%s", h->tool ? h->tool : "");
	info->dtype = h->dtype;
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

int store_insert_row(struct store *st, const char *key, uint64_t size, const struct store_meta *m, int dtype,
		     double created)
{
	int ghost = 0, rc = store_exec_key(st, "DELETE FROM ghosts WHERE key = ?1", key, &ghost);
	if (rc)
		return rc;
	char model[STORE_KEY_HEX + 1];
	hash_hex(m->model_fp, 32, model);
	sqlite3_stmt *s;
	if ((rc = db_prep(&st->db, &s, "INSERT INTO objects (key, size, n_tokens, model, created, last_used, cost, tool,"
			       " queue, qseq, dtype) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8,"
			       " (SELECT COALESCE(MAX(qseq), 0) + 1 FROM objects), ?9)"
			       " ON CONFLICT(key) DO UPDATE SET size = excluded.size, n_tokens = excluded.n_tokens,"
			       " model = excluded.model, cost = COALESCE(excluded.cost, cost), dtype = excluded.dtype")))
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
	sqlite3_bind_text(s, 9, store_dtype_name(dtype), -1, SQLITE_STATIC);
	return db_run(&st->db, s, "insert");
}

/* Under the write lock: index the written temporary file and rename it into
 * place (unless the key is already stored). The row goes in first, so the
 * only moment where a kill leaves an object without its row (an orphan, which
 * is never served and which store_verify adopts) is between the rename and
 * the COMMIT that follows it. */
static int place_locked(struct store *st, struct store_put *p, const char *path, const struct store_meta *m,
			int dtype)
{
	int rc = store_row_exists(st, p->key);
	if (rc < 0)
		return rc;
	struct stat sb;
	int sr = lstat(path, &sb);
	if (rc == 1 && sr == 0 && S_ISREG(sb.st_mode)) {
		p->existed = true; /* somebody else's is in: keep it, drop ours */
		return KB_OK;
	}
	/* no row, or a row whose file is gone; a file without a row is an orphan of
	 * an interrupted put, replaced by ours (which we know whole); anything but
	 * a regular file in the object's place (a folder, a FIFO) is removed */
	if (sr == 0 && !S_ISREG(sb.st_mode) && (rc = store_remove_path(path)))
		return rc;
	if (stat(p->tmp, &sb) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
	if ((rc = store_insert_row(st, p->key, (uint64_t)sb.st_size, m, dtype, store_now(st))))
		return rc;
	if (rename(p->tmp, path) < 0)
		return kb_fail(KB_ERR_IO, "'%s': rename: %s", path, strerror(errno));
	kb_temp_free(p->tmp);
	p->tmp = NULL;
	store_hook(st, STORE_HOOK_PUT_RENAMED);
	return KB_OK;
}

/* What a put wrote must be one cache with its key (read whole when asked);
 * then it is fsynced and p->fd closed. name: for messages. */
static int check_written(struct store_put *p, bool whole, char name[STORE_KEY_HEX + 16], struct object_info *info)
{
	int rfd = open(p->tmp, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
	snprintf(name, STORE_KEY_HEX + 16, "object %.16s…", p->key);
	int rc = store_check_object(rfd, name, p->key, whole, info);
	close(rfd);
	if (rc)
		return rc;
	bool bad = fsync(p->fd) < 0;
	bad |= close(p->fd) < 0;
	p->fd = -1;
	return bad ? kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno)) : KB_OK;
}

int store_object_check(int fd, const char *name, const char *key)
{
	struct object_info info;
	return store_check_object(fd, name, key, true, &info);
}

static int commit(struct store *st, struct store_put *p, const struct store_meta *meta, bool whole);

int store_put_commit(struct store *st, struct store_put *p, const struct store_meta *meta)
{
	return commit(st, p, meta, false);
}

int store_put_commit_verified(struct store *st, struct store_put *p, const struct store_meta *meta)
{
	return commit(st, p, meta, true);
}

static int commit(struct store *st, struct store_put *p, const struct store_meta *meta, bool whole)
{
	char *path = NULL;
	int rc = KB_OK;
	p->existed = false;
	if (p->fd < 0 || !p->tmp)
		return kb_fail(KB_ERR_ARG, "store_put_commit: no put in progress");
	struct object_info info;
	char name[STORE_KEY_HEX + 16];
	if ((rc = check_written(p, whole, name, &info)))
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
	if ((rc = store_path(st, p->key, &path)))
		goto out;
	if ((rc = db_begin(&st->db)))
		goto out;
	if ((rc = db_finish(&st->db, place_locked(st, p, path, &m, info.dtype))) == KB_OK && !p->existed) {
		/* make the rename durable (the row is, at the next checkpoint: until
		 * then a power cut forgets both, or leaves an orphan verify adopts) */
		kb_fsync_parent(path);
	}
out:
	free(path);
	store_put_abort(st, p); /* whatever is left: the fd, the temporary file */
	return rc;
}


/* Under the write lock: the object is still key's (its row and file are
 * there); our file takes its place, its row its size and dtype. */
static int replace_locked(struct store *st, struct store_put *p, const char *path, int dtype)
{
	int rc = store_row_exists(st, p->key);
	if (rc < 0)
		return rc;
	struct stat sb;
	if (rc != 1 || lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
		return kb_fail(KB_EOF, "object %.16s… is gone", p->key);
	if (stat(p->tmp, &sb) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", p->tmp, strerror(errno));
	sqlite3_stmt *q;
	if ((rc = db_prep(&st->db, &q, "UPDATE objects SET size = ?2, dtype = ?3 WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(q, 1, p->key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (sqlite3_int64)sb.st_size);
	sqlite3_bind_text(q, 3, store_dtype_name(dtype), -1, SQLITE_STATIC);
	if ((rc = db_run(&st->db, q, "update the size")))
		return rc;
	if (rename(p->tmp, path) < 0)
		return kb_fail(KB_ERR_IO, "'%s': rename: %s", path, strerror(errno));
	kb_temp_free(p->tmp);
	p->tmp = NULL;
	return KB_OK;
}

int store_put_replace(struct store *st, struct store_put *p)
{
	char *path = NULL;
	int rc = KB_OK;
	if (p->fd < 0 || !p->tmp)
		return kb_fail(KB_ERR_ARG, "store_put_replace: no put in progress");
	struct object_info info;
	char name[STORE_KEY_HEX + 16];
	/* read whole: every layer verified before it replaces what was there */
	if ((rc = check_written(p, true, name, &info)))
		goto out;
	if ((rc = store_path(st, p->key, &path)) || (rc = db_begin(&st->db)))
		goto out;
	if ((rc = db_finish(&st->db, replace_locked(st, p, path, info.dtype))) == KB_OK)
		kb_fsync_parent(path);
out:
	free(path);
	store_put_abort(st, p);
	return rc;
}
