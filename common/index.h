/* index.h — the chunk index: chunk records, their text for BM25 (SQLite FTS5)
 * and their embedding vectors, in DIR/chunks.db beside the cache store's
 * index.db (a separate file, so the two modules never share a schema).
 *
 *	chunks(rowid, id UNIQUE, doc, seq, text, record)   one row per chunk; record
 *	                                 is the whole JSON record as it came (with id)
 *	chunks_fts(text)                 FTS5, external content = chunks, kept in step
 *	                                 by triggers (porter + unicode61 tokenizer)
 *	spaces(space, dim, model)        one vector space per embedding model
 *	                                 (space = the model's fingerprint, hex)
 *	vectors(space, chunk, vec)       float32 little-endian, L2-normalized
 *
 * WAL and a busy timeout, as the store: many processes may read and write.
 * A struct index is one SQLite connection: one thread at a time.
 *
 * Errors: KB_OK, or a status < 0 with the message in kb_error().
 */
#ifndef KB_INDEX_H
#define KB_INDEX_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define INDEX_SCHEMA_VERSION 1 /* chunks.db's PRAGMA user_version */
#define INDEX_ID_MAX 256       /* longest chunk id accepted, in bytes */

struct index;

/* A hit: the chunk's row and its score (higher is better: -bm25 for lexical,
 * the cosine similarity for dense, the reciprocal-rank sum for hybrid). */
struct index_hit {
	int64_t row;
	double score;
};

/* Open (creating when missing: the directory and the schema) DIR/chunks.db.
 * Refuses a newer schema (KB_ERR_UNSUPPORTED). *out is freed by index_close. */
int index_open(struct index **out, const char *dir) KB_WUR;
/* Close; index_close(NULL) is a no-op. Commits an open batch. */
void index_close(struct index *ix);

/* Group adds in one write transaction (much faster than one per record).
 * index_begin starts it (BEGIN IMMEDIATE), index_commit ends it. */
int index_begin(struct index *ix) KB_WUR;
int index_commit(struct index *ix) KB_WUR;

/* Add a chunk record (a JSON object with a non-empty string "text"; "id", when
 * present, a non-empty string of at most INDEX_ID_MAX bytes; else the id is the
 * SHA-256 hex of the text and is added to rec). A record whose id is already
 * stored is skipped: *added = false. *row (may be NULL) is the chunk's row
 * either way. KB_ERR_FORMAT for a bad record (message says why). */
int index_add(struct index *ix, json_t *rec, bool *added, int64_t *row) KB_WUR;

/* Number of chunks stored. */
int index_count(struct index *ix, int64_t *n) KB_WUR;

/* The FTS5 query for free user text: every word (a run of letters, digits or
 * non-ASCII bytes) as a quoted string, joined by OR, so no punctuation ever
 * becomes FTS5 syntax. Returns a malloc()ed string ("" when the text has no
 * words), or NULL when out of memory. */
char *index_fts_query(const char *text);

/* BM25 search: the best k chunks (fewer when fewer match) in *hits (malloc()ed,
 * the caller frees), best first, *n of them. A query without words matches
 * nothing (*n = 0). */
int index_search_lexical(struct index *ix, const char *query, int k, struct index_hit **hits, int *n) KB_WUR;

/* The stored record of row (a new reference), or KB_EOF when there is none. */
int index_record(struct index *ix, int64_t row, json_t **rec) KB_WUR;
/* The doc and seq of a row, for ordering by document ("" and 0 when absent). */
int index_doc_seq(struct index *ix, int64_t row, char **doc, int64_t *seq) KB_WUR;

/* ---- dense vectors ---- */

/* Declare a vector space (space: a short name, e.g. the model fingerprint in
 * hex; dim > 0; model: a description). KB_ERR_MISMATCH when it exists with
 * another dim. */
int index_space(struct index *ix, const char *space, int dim, const char *model) KB_WUR;
/* true when row already has a vector in space. */
int index_has_vector(struct index *ix, const char *space, int64_t row, bool *has) KB_WUR;
/* Store row's vector (dim floats, normalized by the caller) in space. */
int index_put_vector(struct index *ix, const char *space, int64_t row, const float *v, int dim) KB_WUR;

/* All vectors of a space, loaded for search: rows[n], vecs[n * dim]. */
struct index_vectors {
	int dim;
	int64_t n;
	int64_t *rows; /* owned */
	float *vecs;   /* owned, 64-byte aligned, n * dim */
};
int index_load_vectors(struct index *ix, const char *space, struct index_vectors *out) KB_WUR;
void index_vectors_free(struct index_vectors *v);

/* A dense searcher: the seam where an approximate index (HNSW, IVF) can go.
 * search: the best k of the vectors by dot product with q (dim floats), best
 * first, into hits (k of them; fewer when there are fewer vectors), returning
 * how many. The exact one scans every vector (SIMD dot products, threads). */
struct index_dense_ops {
	const char *name;
	int (*build)(void **state, const struct index_vectors *v);
	int (*search)(void *state, const struct index_vectors *v, const float *q, int k, struct index_hit *hits);
	void (*free)(void *state);
};
extern const struct index_dense_ops index_dense_exact;

/* Brute force over n vectors of dim floats (rows given by rows[], or the index
 * when rows is NULL): the best k by dot product, best first. Returns the count. */
int index_topk_dot(const float *vecs, const int64_t *rows, int64_t n, int dim, const float *q, int k,
		   struct index_hit *hits);

/* Reciprocal-rank fusion: score(d) = sum over lists of 1 / (rrf_k + rank), rank
 * from 1. The best k of the union into *out (malloc()ed), best first. */
int index_rrf(const struct index_hit *const *lists, const int *lens, int n_lists, int rrf_k, int k,
	      struct index_hit **out, int *n_out) KB_WUR;

#endif
