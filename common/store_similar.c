/* store_similar.c — the store's sketches for reuse across edits (see store.h,
 * "sketches", and similar.h). */
#include <string.h>

#include "store_impl.h"

/* The sketch as a blob: n 64-bit values, little-endian. */
static void sketch_blob(const uint64_t *sk, int n, uint8_t *out)
{
	for (int k = 0; k < n; k++)
		for (int b = 0; b < 8; b++)
			out[8 * k + b] = (uint8_t)(sk[k] >> (8 * b));
}

/* The share of a blob's values equal to sk's; -1 when its length is not n's. */
static double blob_similarity(const void *blob, int len, const uint64_t *sk, int n)
{
	if (!blob || len != 8 * n || n == 0)
		return -1;
	const uint8_t *p = blob;
	int eq = 0;
	for (int k = 0; k < n; k++) {
		uint64_t v = 0;
		for (int b = 0; b < 8; b++)
			v |= (uint64_t)p[8 * k + b] << (8 * b);
		eq += v == sk[k];
	}
	return (double)eq / n;
}

int store_sketch_put(struct store *st, const char *key, const char *doc, int64_t seq, const char *parent,
		     const uint64_t *sketch, int n_hash, const int64_t *bands, int n_bands)
{
	int rc = store_check_key(key);
	if (rc || (rc = store_writable(st, "record a sketch")))
		return rc;
	uint8_t *blob = kb_malloc((size_t)n_hash * 8 + 1);
	if (!blob)
		return KB_ERR_NOMEM;
	sketch_blob(sketch, n_hash, blob);
	if ((rc = db_begin(&st->db))) {
		free(blob);
		return rc;
	}
	sqlite3_stmt *s = NULL;
	if ((rc = store_row_exists(st, key)) == 0)
		rc = KB_EOF;
	else if (rc == 1 && (rc = store_exec_key(st, "DELETE FROM bands WHERE key = ?1", key, NULL)) == KB_OK &&
		 (rc = db_prep(&st->db, &s, "INSERT OR REPLACE INTO sketches (key, doc, seq, parent, sketch)"
				" VALUES (?1, ?2, ?3, ?4, ?5)")) == KB_OK) {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		if (doc)
			sqlite3_bind_text(s, 2, doc, -1, SQLITE_STATIC);
		if (seq >= 0)
			sqlite3_bind_int64(s, 3, seq);
		if (parent && *parent)
			sqlite3_bind_text(s, 4, parent, -1, SQLITE_STATIC);
		sqlite3_bind_blob(s, 5, blob, n_hash * 8, SQLITE_STATIC);
		rc = db_run(&st->db, s, "record a sketch");
		for (int b = 0; b < n_bands && rc == KB_OK; b++) {
			if ((rc = db_prep(&st->db, &s, "INSERT OR IGNORE INTO bands (band, hash, key) VALUES (?1, ?2, ?3)")))
				break;
			sqlite3_bind_int(s, 1, b);
			sqlite3_bind_int64(s, 2, bands[b]);
			sqlite3_bind_text(s, 3, key, -1, SQLITE_STATIC);
			rc = db_run(&st->db, s, "record a band key");
		}
	}
	free(blob);
	if (rc == KB_EOF) {
		db_rollback(&st->db);
		return KB_EOF;
	}
	return db_finish(&st->db, rc);
}

/* Keep the best row of s (key, sketch) above min_sim in *out; *found. */
static int best_of(struct store *st, sqlite3_stmt *s, const uint64_t *sketch, int n_hash, double min_sim,
		   bool by_doc, struct store_similar *out, bool *found)
{
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		double sim = blob_similarity(sqlite3_column_blob(s, 1), sqlite3_column_bytes(s, 1), sketch, n_hash);
		if (sim >= min_sim && (!*found || sim > out->similarity)) {
			store_copy_text(out->key, sizeof out->key, sqlite3_column_text(s, 0));
			out->similarity = sim;
			out->by_doc = by_doc;
			*found = true;
		}
	}
	r = r == SQLITE_DONE ? KB_OK : db_fail(&st->db, "look a similar chunk up");
	sqlite3_finalize(s);
	return r;
}

int store_sketch_find(struct store *st, const char *model_fp, const char *self, const char *doc, int64_t seq,
		      const uint64_t *sketch, int n_hash, const int64_t *bands, int n_bands, double min_sim,
		      struct store_similar *out)
{
	bool found = false;
	sqlite3_stmt *s;
	int rc;
	memset(out, 0, sizeof *out);
	if (doc && seq >= 0) { /* the newest 8 versions of the chunk */
		if ((rc = db_prep(&st->db, &s, "SELECT s.key, s.sketch FROM sketches s JOIN objects o ON o.key = s.key"
				  " WHERE s.doc = ?1 AND s.seq = ?2 AND o.model = ?3 AND s.key != ?4"
				  " ORDER BY o.created DESC LIMIT 8")))
			return rc;
		sqlite3_bind_text(s, 1, doc, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, seq);
		sqlite3_bind_text(s, 3, model_fp, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, self ? self : "", -1, SQLITE_STATIC);
		if ((rc = best_of(st, s, sketch, n_hash, min_sim, true, out, &found)))
			return rc;
		if (found)
			return KB_OK;
	}
	for (int b = 0; b < n_bands; b++) {
		if ((rc = db_prep(&st->db, &s, "SELECT s.key, s.sketch FROM bands b JOIN sketches s ON s.key = b.key"
				  " JOIN objects o ON o.key = s.key"
				  " WHERE b.band = ?1 AND b.hash = ?2 AND o.model = ?3 AND s.key != ?4")))
			return rc;
		sqlite3_bind_int(s, 1, b);
		sqlite3_bind_int64(s, 2, bands[b]);
		sqlite3_bind_text(s, 3, model_fp, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, self ? self : "", -1, SQLITE_STATIC);
		if ((rc = best_of(st, s, sketch, n_hash, min_sim, false, out, &found)))
			return rc;
	}
	return found ? KB_OK : KB_EOF;
}

int store_sketch_parent(struct store *st, const char *key, char parent[STORE_KEY_HEX + 1])
{
	sqlite3_stmt *s;
	int rc = store_check_key(key);
	if (rc || (rc = db_prep(&st->db, &s, "SELECT parent FROM sketches WHERE key = ?1")))
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		store_copy_text(parent, STORE_KEY_HEX + 1, sqlite3_column_text(s, 0));
		rc = KB_OK;
	} else {
		rc = r == SQLITE_DONE ? KB_EOF : db_fail(&st->db, "look a parent up");
	}
	sqlite3_finalize(s);
	return rc;
}
