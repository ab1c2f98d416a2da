/* chunkdb.c — see chunkdb.h. */
#include "chunkdb.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "hash.h"
#include "records.h"
#include "kernels.h"
#include "quant.h"

struct chunkdb {
	struct db db;
	sqlite3_stmt *add, *find, *get, *docseq, *search;
	sqlite3_stmt *seen_doc, *seen_row; /* NULL until the first chunk of a doc is added */
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS chunks ("
	" row INTEGER PRIMARY KEY,"
	" id TEXT UNIQUE NOT NULL,"
	" doc TEXT NOT NULL DEFAULT '',"
	" seq INTEGER NOT NULL DEFAULT 0,"
	" text TEXT NOT NULL,"
	" record TEXT NOT NULL);"
	"CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5("
	" text, content='chunks', content_rowid='row', tokenize='porter unicode61 remove_diacritics 2');"
	"CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN"
	" INSERT INTO chunks_fts(rowid, text) VALUES (new.row, new.text); END;"
	"CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN"
	" INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.row, old.text); END;"
	"CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN"
	" INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.row, old.text);"
	" INSERT INTO chunks_fts(rowid, text) VALUES (new.row, new.text); END;"
	"CREATE TABLE IF NOT EXISTS spaces ("
	" space TEXT PRIMARY KEY NOT NULL, dim INTEGER NOT NULL, model TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS vectors ("
	" space TEXT NOT NULL, chunk INTEGER NOT NULL REFERENCES chunks(row) ON DELETE CASCADE,"
	" vec BLOB NOT NULL, PRIMARY KEY (space, chunk)) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS chunks_vd AFTER DELETE ON chunks BEGIN"
	" DELETE FROM vectors WHERE chunk = old.row; END;";

int chunkdb_open(struct chunkdb **out, const char *dir, bool create)
{
	*out = NULL;
	if (!dir || !*dir)
		return kb_fail(KB_ERR_ARG, "the store folder is an empty string");
	struct chunkdb *ix = kb_calloc(1, sizeof *ix);
	if (!ix)
		return KB_ERR_NOMEM;
	struct stat sb;
	int rc = db_open(&ix->db, dir, "chunks.db", create ? DB_CREATE : DB_EXISTING);
	if (rc == KB_EOF)
		rc = stat(dir, &sb) < 0 ? kb_fail(KB_ERR_ARG, "'%s': no such store (%s)", dir, strerror(errno))
		     : kb_fail(KB_ERR_ARG, "'%s': no chunk index in this store (index chunk records with kvblend embed first)", dir);
	if (rc || (!ix->db.readonly && (rc = db_exec(&ix->db, "PRAGMA foreign_keys=ON"))) ||
	    (rc = db_init_schema(&ix->db, schema, CHUNKDB_SCHEMA_VERSION, NULL)))
		goto fail;
	/* a chunk already there under another doc (or seq) moves to this one: the
	 * last document read that holds the text owns it */
	if ((rc = db_prep(&ix->db, &ix->add, "INSERT INTO chunks(id, doc, seq, text, record) VALUES (?1, ?2, ?3, ?4, ?5)"
					     " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, seq = excluded.seq,"
					     " record = excluded.record WHERE excluded.doc != ''"
					     " AND (doc != excluded.doc OR seq != excluded.seq)")) ||
	    (rc = db_prep(&ix->db, &ix->find, "SELECT row FROM chunks WHERE id = ?1")) ||
	    (rc = db_prep(&ix->db, &ix->get, "SELECT record FROM chunks WHERE row = ?1")) ||
	    (rc = db_prep(&ix->db, &ix->docseq, "SELECT doc, seq FROM chunks WHERE row = ?1")) ||
	    (rc = db_prep(&ix->db, &ix->search, "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1"
					" ORDER BY bm25(chunks_fts), rowid LIMIT ?2")))
		goto fail;
	*out = ix;
	return KB_OK;
fail:
	chunkdb_close(ix);
	return rc;
}

void chunkdb_close(struct chunkdb *ix)
{
	if (!ix)
		return;
	if (ix->db.h && !sqlite3_get_autocommit(ix->db.h))
		sqlite3_exec(ix->db.h, "COMMIT", NULL, NULL, NULL);
	sqlite3_finalize(ix->add);
	sqlite3_finalize(ix->find);
	sqlite3_finalize(ix->get);
	sqlite3_finalize(ix->docseq);
	sqlite3_finalize(ix->search);
	sqlite3_finalize(ix->seen_doc);
	sqlite3_finalize(ix->seen_row);
	db_close(&ix->db);
	free(ix);
}

int chunkdb_begin(struct chunkdb *ix)
{
	int rc = db_writable(&ix->db, "change the chunk index");
	return rc ? rc : db_begin(&ix->db);
}

int chunkdb_commit(struct chunkdb *ix)
{
	return db_commit(&ix->db);
}

/* ---- records ---- */

static int find_row(struct chunkdb *ix, const char *id, int64_t *row)
{
	sqlite3_stmt *s = ix->find;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	int rc = r == SQLITE_ROW ? KB_OK : r == SQLITE_DONE ? KB_EOF : db_fail(&ix->db, "find a chunk");
	if (r == SQLITE_ROW)
		*row = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc;
}

/* Note that this run added (or found) row for doc, for chunkdb_sweep_docs. */
static int mark_seen(struct chunkdb *ix, const char *doc, int64_t row)
{
	int rc;
	if (!ix->seen_doc &&
	    ((rc = db_exec(&ix->db, "CREATE TEMP TABLE IF NOT EXISTS seen_docs (doc TEXT PRIMARY KEY);"
				    "CREATE TEMP TABLE IF NOT EXISTS seen_rows (row INTEGER PRIMARY KEY)")) ||
	     (rc = db_prep(&ix->db, &ix->seen_doc, "INSERT OR IGNORE INTO temp.seen_docs (doc) VALUES (?1)")) ||
	     (rc = db_prep(&ix->db, &ix->seen_row, "INSERT OR IGNORE INTO temp.seen_rows (row) VALUES (?1)"))))
		return rc;
	sqlite3_reset(ix->seen_doc);
	sqlite3_reset(ix->seen_row);
	sqlite3_bind_text(ix->seen_doc, 1, doc, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(ix->seen_row, 1, row);
	int a = sqlite3_step(ix->seen_doc), b = a == SQLITE_DONE ? sqlite3_step(ix->seen_row) : a;
	sqlite3_reset(ix->seen_doc);
	sqlite3_reset(ix->seen_row);
	return b == SQLITE_DONE ? KB_OK : db_fail(&ix->db, "note a document");
}

int chunkdb_add(struct chunkdb *ix, json_t *rec, bool *added, int64_t *row)
{
	*added = false;
	if (!json_is_object(rec))
		return kb_fail(KB_ERR_FORMAT, "the record is not a JSON object");
	size_t len;
	const char *text = rec_text(rec, &len);
	if (!text)
		return kb_fail(KB_ERR_FORMAT, "the record has no \"text\"");
	if (len == 0)
		return kb_fail(KB_ERR_FORMAT, "the record's text is empty");
	if (memchr(text, 0, len))
		return kb_fail(KB_ERR_FORMAT, "the record's text holds a NUL character");
	json_t *jid = json_object_get(rec, "id");
	if (jid) {
		if (!json_is_string(jid) || json_string_length(jid) == 0)
			return kb_fail(KB_ERR_FORMAT, "the record's \"id\" is not a non-empty string");
		if (json_string_length(jid) > CHUNKDB_ID_MAX)
			return kb_fail(KB_ERR_FORMAT, "the record's \"id\" is longer than %d bytes", CHUNKDB_ID_MAX);
		if (memchr(json_string_value(jid), 0, json_string_length(jid)))
			return kb_fail(KB_ERR_FORMAT, "the record's \"id\" holds a NUL character");
	} else {
		uint8_t h[32];
		char hex[65];
		sha256(text, len, h);
		hash_hex(h, 32, hex);
		if (json_object_set_new(rec, "id", json_string(hex)))
			return kb_fail(KB_ERR_NOMEM, "out of memory");
		jid = json_object_get(rec, "id");
	}
	const char *id = json_string_value(jid);
	const json_t *jdoc = json_object_get(rec, "doc"), *jseq = json_object_get(rec, "seq");
	char *js = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!js)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	int64_t rw = 0;
	int rc = find_row(ix, id, &rw);
	if (rc && rc != KB_EOF) {
		free(js);
		return rc;
	}
	*added = rc == KB_EOF;
	const char *doc = json_is_string(jdoc) ? json_string_value(jdoc) : "";
	sqlite3_stmt *s = ix->add;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, doc, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, json_is_integer(jseq) ? (sqlite3_int64)json_integer_value(jseq) : 0);
	sqlite3_bind_text(s, 4, text, (int)len, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, js, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	rc = r == SQLITE_DONE ? KB_OK : db_fail(&ix->db, "add a chunk");
	sqlite3_reset(s);
	free(js);
	if (rc)
		return rc;
	if (*added)
		rw = sqlite3_last_insert_rowid(ix->db.h);
	if (*doc && (rc = mark_seen(ix, doc, rw)))
		return rc;
	if (row)
		*row = rw;
	return KB_OK;
}

/* ---- documents ---- */

int chunkdb_sweep_docs(struct chunkdb *ix, int64_t *n_removed)
{
	*n_removed = 0;
	if (!ix->seen_doc)
		return KB_OK; /* no chunk with a doc was added */
	int rc = db_exec(&ix->db, "DELETE FROM chunks WHERE doc IN (SELECT doc FROM temp.seen_docs)"
				  " AND row NOT IN (SELECT row FROM temp.seen_rows)");
	if (rc)
		return rc;
	*n_removed = sqlite3_changes(ix->db.h);
	return db_exec(&ix->db, "DELETE FROM temp.seen_docs; DELETE FROM temp.seen_rows");
}

int chunkdb_delete_doc(struct chunkdb *ix, const char *doc, int64_t *n_removed)
{
	*n_removed = 0;
	sqlite3_stmt *s;
	int rc = db_writable(&ix->db, "delete a document");
	if (rc || (rc = db_prep(&ix->db, &s, "DELETE FROM chunks WHERE doc = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, doc, -1, SQLITE_STATIC);
	if (!(rc = db_run(&ix->db, s, "delete a document")))
		*n_removed = sqlite3_changes(ix->db.h);
	return rc;
}

int chunkdb_list_docs(struct chunkdb *ix, int (*fn)(void *ctx, const char *doc, int64_t n_chunks), void *ctx)
{
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "SELECT doc, count(*) FROM chunks GROUP BY doc ORDER BY doc");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		if ((rc = fn(ctx, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1))))
			break;
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(&ix->db, "list the documents");
	sqlite3_finalize(s);
	return rc;
}

int chunkdb_count(struct chunkdb *ix, int64_t *n)
{
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "SELECT count(*) FROM chunks");
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		*n = sqlite3_column_int64(s, 0);
	else
		rc = db_fail(&ix->db, "count the chunks");
	sqlite3_finalize(s);
	return rc;
}

int chunkdb_record(struct chunkdb *ix, int64_t row, json_t **rec)
{
	sqlite3_stmt *s = ix->get;
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, row);
	int r = sqlite3_step(s), rc;
	if (r == SQLITE_ROW) {
		json_error_t err;
		*rec = json_loadb((const char *)sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0), 0, &err);
		rc = *rec ? KB_OK : kb_fail(KB_ERR_FORMAT, "'%s': chunk row %lld: bad record: %s", ix->db.path,
					    (long long)row, err.text);
	} else {
		rc = r == SQLITE_DONE ? KB_EOF : db_fail(&ix->db, "read a chunk");
	}
	sqlite3_reset(s);
	return rc;
}

int chunkdb_doc_seq(struct chunkdb *ix, int64_t row, char **doc, int64_t *seq)
{
	sqlite3_stmt *s = ix->docseq;
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, row);
	int r = sqlite3_step(s), rc = KB_OK;
	if (r == SQLITE_ROW) {
		*doc = strdup((const char *)sqlite3_column_text(s, 0));
		*seq = sqlite3_column_int64(s, 1);
		if (!*doc)
			rc = kb_fail(KB_ERR_NOMEM, "out of memory");
	} else {
		rc = r == SQLITE_DONE ? KB_EOF : db_fail(&ix->db, "read a chunk");
	}
	sqlite3_reset(s);
	return rc;
}

/* ---- lexical search ---- */

static int is_word_byte(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Is the word w[0..n) already among the terms of q (each "quoted", joined
 * by " OR ")? ASCII letters compare without case, as FTS5's tokenizer folds them. */
static bool has_term(const char *q, size_t len, const char *w, size_t n)
{
	for (size_t i = 0; i < len;) {
		const char *t = q + i + 1, *end = memchr(t, '"', len - i - 1);
		size_t tn = (size_t)(end - t);
		if (tn == n && !strncasecmp(t, w, n))
			return true;
		i = (size_t)(end - q) + 1 + 4; /* past '"' and " OR " */
	}
	return false;
}

char *chunkdb_fts_query(const char *text)
{
	size_t n = strlen(text), cap = 1, len = 0;
	/* worst case: every byte a one-letter word: "x" OR  (7 bytes each) */
	if (kb_mul_size(n, 8, &cap) || kb_add_size(cap, 1, &cap))
		return NULL;
	char *q = malloc(cap);
	if (!q)
		return NULL;
	int terms = 0;
	for (size_t i = 0; i < n && terms < CHUNKDB_QUERY_TERMS_MAX;) {
		if (!is_word_byte((unsigned char)text[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && is_word_byte((unsigned char)text[j]))
			j++;
		if (!has_term(q, len, text + i, j - i)) {
			if (len)
				len += (size_t)sprintf(q + len, " OR ");
			q[len++] = '"';
			memcpy(q + len, text + i, j - i);
			len += j - i;
			q[len++] = '"';
			terms++;
		}
		i = j;
	}
	q[len] = 0;
	return q;
}

int chunkdb_search_lexical(struct chunkdb *ix, const char *query, int k, struct chunkdb_hit **hits, int *n)
{
	*hits = NULL;
	*n = 0;
	if (k <= 0)
		return KB_OK;
	char *q = chunkdb_fts_query(query);
	if (!q)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	if (!*q) {
		free(q);
		return KB_OK;
	}
	struct chunkdb_hit *h = kb_calloc((size_t)k, sizeof *h);
	if (!h) {
		free(q);
		return KB_ERR_NOMEM;
	}
	sqlite3_stmt *s = ix->search;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, q, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, k);
	int r, m = 0, rc = KB_OK;
	while ((r = sqlite3_step(s)) == SQLITE_ROW && m < k) {
		h[m].row = sqlite3_column_int64(s, 0);
		h[m].score = -sqlite3_column_double(s, 1);
		m++;
	}
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		rc = db_fail(&ix->db, "search");
	sqlite3_reset(s);
	free(q);
	if (rc) {
		free(h);
		return rc;
	}
	*hits = h;
	*n = m;
	return KB_OK;
}

/* ---- vectors ---- */

int chunkdb_space(struct chunkdb *ix, const char *space, int dim, const char *model)
{
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "INSERT OR IGNORE INTO spaces(space, dim, model) VALUES (?1, ?2, ?3)");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, dim);
	sqlite3_bind_text(s, 3, model ? model : "", -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	sqlite3_finalize(s);
	if (r != SQLITE_DONE)
		return db_fail(&ix->db, "add a vector space");
	if ((rc = db_prep(&ix->db, &s, "SELECT dim FROM spaces WHERE space = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
	int d = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	sqlite3_finalize(s);
	if (d != dim)
		return kb_fail(KB_ERR_MISMATCH, "'%s': vector space %s has %d dimensions, not %d", ix->db.path, space, d,
			       dim);
	return KB_OK;
}

int chunkdb_has_vector(struct chunkdb *ix, const char *space, int64_t row, bool *has)
{
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "SELECT 1 FROM vectors WHERE space = ?1 AND chunk = ?2");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, row);
	int r = sqlite3_step(s);
	*has = r == SQLITE_ROW;
	rc = r == SQLITE_ROW || r == SQLITE_DONE ? KB_OK : db_fail(&ix->db, "look up a vector");
	sqlite3_finalize(s);
	return rc;
}

int chunkdb_put_vector(struct chunkdb *ix, const char *space, int64_t row, const float *v, int dim)
{
	uint8_t *b = kb_malloc((size_t)dim * 4);
	if (!b)
		return KB_ERR_NOMEM;
	for (int i = 0; i < dim; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		b[4 * i] = (uint8_t)u, b[4 * i + 1] = (uint8_t)(u >> 8), b[4 * i + 2] = (uint8_t)(u >> 16),
		b[4 * i + 3] = (uint8_t)(u >> 24);
	}
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "INSERT OR REPLACE INTO vectors(space, chunk, vec) VALUES (?1, ?2, ?3)");
	if (!rc) {
		sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, row);
		sqlite3_bind_blob(s, 3, b, dim * 4, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = db_fail(&ix->db, "store a vector");
		sqlite3_finalize(s);
	}
	free(b);
	return rc;
}

void chunkdb_vectors_free(struct chunkdb_vectors *v)
{
	if (!v)
		return;
	free(v->rows);
	free(v->vecs);
	*v = (struct chunkdb_vectors){ 0 };
}

int chunkdb_load_vectors(struct chunkdb *ix, const char *space, struct chunkdb_vectors *out)
{
	*out = (struct chunkdb_vectors){ 0 };
	sqlite3_stmt *s;
	int rc = db_prep(&ix->db, &s, "SELECT dim, (SELECT count(*) FROM vectors WHERE space = ?1) FROM spaces WHERE space = ?1");
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		sqlite3_finalize(s);
		return r == SQLITE_DONE ? kb_fail(KB_ERR_ARG, "'%s': no vectors of this model (space %s): embed the "
					  "chunks with it first (the same --pool and --passage-prefix)", ix->db.path, space)
					: db_fail(&ix->db, "read a vector space");
	}
	int dim = sqlite3_column_int(s, 0);
	int64_t n = sqlite3_column_int64(s, 1);
	sqlite3_finalize(s);
	size_t bytes;
	if (dim <= 0 || n < 0 || kb_mul_size((size_t)n, (size_t)dim * 4, &bytes))
		return kb_fail(KB_ERR_FORMAT, "'%s': space %s: bad size", ix->db.path, space);
	out->dim = dim;
	out->rows = kb_malloc((size_t)(n ? n : 1) * sizeof *out->rows);
	out->vecs = kb_aligned_alloc(64, ((bytes ? bytes : 64) + 63) / 64 * 64);
	if (!out->rows || !out->vecs) {
		chunkdb_vectors_free(out);
		return KB_ERR_NOMEM;
	}
	if ((rc = db_prep(&ix->db, &s, "SELECT chunk, vec FROM vectors WHERE space = ?1 ORDER BY chunk"))) {
		chunkdb_vectors_free(out);
		return rc;
	}
	sqlite3_bind_text(s, 1, space, -1, SQLITE_STATIC);
	int64_t i = 0;
	while ((r = sqlite3_step(s)) == SQLITE_ROW && i < n) {
		const uint8_t *b = sqlite3_column_blob(s, 1);
		if (sqlite3_column_bytes(s, 1) != dim * 4) {
			rc = kb_fail(KB_ERR_FORMAT, "'%s': a vector of space %s has %d bytes, not %d", ix->db.path, space,
				     sqlite3_column_bytes(s, 1), dim * 4);
			break;
		}
		out->rows[i] = sqlite3_column_int64(s, 0);
		for (int j = 0; j < dim; j++)
			out->vecs[(size_t)i * (size_t)dim + (size_t)j] = kb_lef32(b + 4 * j);
		i++;
	}
	if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
		rc = db_fail(&ix->db, "read the vectors");
	sqlite3_finalize(s);
	out->n = i;
	if (rc)
		chunkdb_vectors_free(out);
	return rc;
}

/* ---- dense search ---- */

/* Keep the best k of a stream in a min-heap on score (ties: lower row wins). */
static int worse(const struct chunkdb_hit *a, const struct chunkdb_hit *b)
{
	return a->score < b->score || (a->score == b->score && a->row > b->row);
}

static void heap_down(struct chunkdb_hit *h, int n, int i)
{
	for (;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && worse(&h[l], &h[m]))
			m = l;
		if (r < n && worse(&h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		struct chunkdb_hit t = h[i];
		h[i] = h[m], h[m] = t;
		i = m;
	}
}

static void heap_up(struct chunkdb_hit *h, int i)
{
	while (i > 0) {
		int p = (i - 1) / 2;
		if (!worse(&h[i], &h[p]))
			return;
		struct chunkdb_hit t = h[i];
		h[i] = h[p], h[p] = t;
		i = p;
	}
}

/* The best k of scores[n] (rows from rows[] or the index), sorted best first. */
static int topk(const float *scores, const int64_t *rows, int64_t n, int k, struct chunkdb_hit *hits)
{
	int m = 0;
	for (int64_t i = 0; i < n; i++) {
		struct chunkdb_hit c = { rows ? rows[i] : i, scores[i] };
		if (m < k) {
			hits[m] = c;
			heap_up(hits, m++);
		} else if (worse(&hits[0], &c)) {
			hits[0] = c;
			heap_down(hits, m, 0);
		}
	}
	/* heap sort: pop the worst to the end */
	for (int e = m - 1; e > 0; e--) {
		struct chunkdb_hit t = hits[0];
		hits[0] = hits[e], hits[e] = t;
		heap_down(hits, e, 0);
	}
	return m;
}

#define DOT_BLOCK (1 << 20) /* vectors scored per matmul call (one fork/join of the threads each) */

int chunkdb_topk_dot(const float *vecs, const int64_t *rows, int64_t n, int dim, const float *q, int k,
		   struct chunkdb_hit *hits)
{
	if (k <= 0 || n <= 0)
		return 0;
	kern_init();
	float *sc = kb_malloc((size_t)n * sizeof *sc);
	if (!sc)
		return -1;
	/* the vectors are the rows of an F32 weight matrix: one matrix-vector
	 * product per block gives the dot products (SIMD, threaded) */
	for (int64_t b = 0; b < n; b += DOT_BLOCK) {
		int nb = (int)(n - b < DOT_BLOCK ? n - b : DOT_BLOCK);
		kern_matmul(sc + b, q, vecs + (size_t)b * (size_t)dim, QTYPE_F32, 1, dim, nb, NULL);
	}
	int m = topk(sc, rows, n, k, hits);
	free(sc);
	return m;
}

static int exact_build(void **state, const struct chunkdb_vectors *v)
{
	*state = NULL;
	return KB_OK;
}

static int exact_search(void *state, const struct chunkdb_vectors *v, const float *q, int k, struct chunkdb_hit *hits)
{
	int m = chunkdb_topk_dot(v->vecs, v->rows, v->n, v->dim, q, k, hits);
	return m < 0 ? KB_ERR_NOMEM : m;
}

static void exact_free(void *state)
{
}

const struct chunkdb_dense_ops chunkdb_dense_exact = {
	.name = "exact",
	.build = exact_build,
	.search = exact_search,
	.free = exact_free,
};

/* ---- reciprocal-rank fusion ---- */

static int cmp_row(const void *a, const void *b)
{
	const struct chunkdb_hit *x = a, *y = b;
	return x->row < y->row ? -1 : x->row > y->row;
}

int chunkdb_rrf(const struct chunkdb_hit *const *lists, const int *lens, int n_lists, int rrf_k, int k,
	      struct chunkdb_hit **out, int *n_out)
{
	*out = NULL;
	*n_out = 0;
	size_t total = 0;
	for (int l = 0; l < n_lists; l++)
		total += (size_t)lens[l];
	struct chunkdb_hit *all = kb_malloc((total ? total : 1) * sizeof *all);
	if (!all)
		return KB_ERR_NOMEM;
	size_t m = 0;
	for (int l = 0; l < n_lists; l++)
		for (int r = 0; r < lens[l]; r++)
			all[m++] = (struct chunkdb_hit){ lists[l][r].row, 1.0 / (rrf_k + r + 1) };
	qsort(all, m, sizeof *all, cmp_row);
	size_t u = 0;
	for (size_t i = 0; i < m; i++) {
		if (u && all[u - 1].row == all[i].row)
			all[u - 1].score += all[i].score;
		else
			all[u++] = all[i];
	}
	int kk = k < (int)u ? k : (int)u;
	struct chunkdb_hit *h = kb_malloc((size_t)(kk ? kk : 1) * sizeof *h);
	float *sc = kb_malloc((u ? u : 1) * sizeof *sc);
	int64_t *rows = kb_malloc((u ? u : 1) * sizeof *rows);
	if (!h || !sc || !rows) {
		free(h), free(sc), free(rows), free(all);
		return KB_ERR_NOMEM;
	}
	for (size_t i = 0; i < u; i++)
		sc[i] = (float)all[i].score, rows[i] = all[i].row;
	int got = topk(sc, rows, (int64_t)u, kk, h);
	for (int i = 0; i < got; i++) /* the exact sums, not their float copies */
		for (size_t j = 0; j < u; j++)
			if (all[j].row == h[i].row) {
				h[i].score = all[j].score;
				break;
			}
	free(sc), free(rows), free(all);
	*out = h;
	*n_out = got;
	return KB_OK;
}
