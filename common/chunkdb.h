/* chunkdb.h — the chunk index: chunk records, their text for BM25 (SQLite FTS5)
 * and their embedding vectors, in DIR/chunks.db beside the cache store's
 * object index, DIR/index.db (store.h; a separate file, so the two modules
 * never share a schema). Retrieval policy (hybrid fusion) is search.h's.
 *
 *	chunks(rowid, id UNIQUE, doc, seq, text, record)   one row per chunk; record
 *	                                 is the whole JSON record as it came (with id)
 *	chunks_fts(text)                 FTS5, external content = chunks, kept in step
 *	                                 by triggers (porter + unicode61 tokenizer)
 *	spaces(space, dim, model)        one vector space per embedding model
 *	                                 (space = the model's fingerprint, hex)
 *	vectors(space, chunk, vec)       float32 little-endian, L2-normalized
 *
 * WAL and a busy timeout, as the store: many processes may read and write
 * (db.h). A chunk index the process cannot write is opened read-only: searches
 * work, changes fail with a message saying so.
 * A struct chunkdb is one SQLite connection: one thread at a time.
 *
 * Errors: KB_OK, or a status < 0 with the message in kb_error().
 */
#ifndef KB_CHUNKDB_H
#define KB_CHUNKDB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define CHUNKDB_SCHEMA_VERSION 1 /* chunks.db's PRAGMA user_version */
#define CHUNKDB_ID_MAX 256       /* longest chunk id accepted, in bytes */
#define CHUNKDB_QUERY_TERMS_MAX 64 /* distinct words of a query searched (the rest are ignored) */

struct chunkdb;

/* A hit: the chunk's row and its score (higher is better: -bm25 for lexical,
 * the cosine similarity for dense, the reciprocal-rank sum for hybrid). */
struct chunkdb_hit {
	int64_t row;
	double score;
};

/* Open DIR/chunks.db. With create, the folder and the schema are made when
 * missing; without (for lookups), nothing is created: a missing store or
 * chunk index is KB_ERR_ARG with a message saying which. Refuses a newer
 * schema (KB_ERR_UNSUPPORTED). *out is freed by chunkdb_close. */
int chunkdb_open(struct chunkdb **out, const char *dir, bool create) KB_WUR;
/* Close; chunkdb_close(NULL) is a no-op. Commits an open batch. */
void chunkdb_close(struct chunkdb *ix);

/* Group adds in one write transaction (much faster than one per record).
 * chunkdb_begin starts it (BEGIN IMMEDIATE), chunkdb_commit ends it. */
int chunkdb_begin(struct chunkdb *ix) KB_WUR;
int chunkdb_commit(struct chunkdb *ix) KB_WUR;

/* Add a chunk record (a JSON object with a non-empty string "text"; "id", when
 * present, a non-empty string of at most CHUNKDB_ID_MAX bytes; else the id is the
 * SHA-256 hex of the text and is added to rec). A record whose id is already
 * stored is not added again (*added = false); if it comes with another
 * non-empty "doc" or "seq", the stored chunk moves to them (the last document
 * read that holds a text owns its chunk). *row (may be NULL) is the chunk's row
 * either way. KB_ERR_FORMAT for a bad record (message says why). */
int chunkdb_add(struct chunkdb *ix, json_t *rec, bool *added, int64_t *row) KB_WUR;

/* ---- documents ----
 * A document ("doc" of its chunk records) is indexed as a whole: indexing it
 * again replaces its old chunks. chunkdb_add notes the documents and chunks of
 * this connection; chunkdb_sweep_docs then removes the chunks of those
 * documents that were not added (or found) again, with their vectors, so an
 * edited document's old chunks stop being found. Records without a doc are
 * never swept. */

/* Remove the chunks of the documents added since the last sweep that this
 * connection did not add again; *n_removed of them. Call it inside the write
 * transaction of the last chunkdb_add (after chunkdb_begin). */
int chunkdb_sweep_docs(struct chunkdb *ix, int64_t *n_removed) KB_WUR;
/* Remove every chunk of doc (and their vectors); *n_removed of them (0 when
 * the index has no such document). */
int chunkdb_delete_doc(struct chunkdb *ix, const char *doc, int64_t *n_removed) KB_WUR;
/* Call fn for each document (by name; "" for chunks without a doc) with its
 * number of chunks; fn returns 0 to go on, anything else stops and is returned. */
int chunkdb_list_docs(struct chunkdb *ix, int (*fn)(void *ctx, const char *doc, int64_t n_chunks), void *ctx) KB_WUR;

/* Number of chunks stored. */
int chunkdb_count(struct chunkdb *ix, int64_t *n) KB_WUR;

/* The FTS5 query for free user text: each distinct word (a run of letters,
 * digits or non-ASCII bytes; ASCII case ignored) as a quoted string, joined
 * by OR, so no punctuation ever becomes FTS5 syntax; the first
 * CHUNKDB_QUERY_TERMS_MAX distinct words only, so any query is answered
 * quickly (8,000 words once took 41 s). Returns a malloc()ed string ("" when
 * the text has no words), or NULL when out of memory. */
char *chunkdb_fts_query(const char *text);

/* BM25 search: the best k chunks (fewer when fewer match) in *hits (malloc()ed,
 * the caller frees), best first, *n of them. A query without words matches
 * nothing (*n = 0). */
int chunkdb_search_lexical(struct chunkdb *ix, const char *query, int k, struct chunkdb_hit **hits, int *n) KB_WUR;

/* The stored record of row (a new reference), or KB_EOF when there is none. */
int chunkdb_record(struct chunkdb *ix, int64_t row, json_t **rec) KB_WUR;
/* The doc and seq of a row, for ordering by document ("" and 0 when absent). */
int chunkdb_doc_seq(struct chunkdb *ix, int64_t row, char **doc, int64_t *seq) KB_WUR;

/* ---- dense vectors ---- */

/* Declare a vector space (space: a short name, e.g. the model fingerprint in
 * hex; dim > 0; model: a description). KB_ERR_MISMATCH when it exists with
 * another dim. */
int chunkdb_space(struct chunkdb *ix, const char *space, int dim, const char *model) KB_WUR;
/* true when row already has a vector in space. */
int chunkdb_has_vector(struct chunkdb *ix, const char *space, int64_t row, bool *has) KB_WUR;
/* Store row's vector (dim floats, normalized by the caller) in space. */
int chunkdb_put_vector(struct chunkdb *ix, const char *space, int64_t row, const float *v, int dim) KB_WUR;

/* All vectors of a space, loaded for search: rows[n], vecs[n * dim]. */
struct chunkdb_vectors {
	int dim;
	int64_t n;
	int64_t *rows; /* owned */
	float *vecs;   /* owned, 64-byte aligned, n * dim */
};
int chunkdb_load_vectors(struct chunkdb *ix, const char *space, struct chunkdb_vectors *out) KB_WUR;
void chunkdb_vectors_free(struct chunkdb_vectors *v);

/* A dense searcher: the seam where an approximate index (HNSW, IVF) can go.
 * search: the best k of the vectors by dot product with q (dim floats), best
 * first, into hits (k of them; fewer when there are fewer vectors), returning
 * how many. The exact one scans every vector (SIMD dot products, threads). */
struct chunkdb_dense_ops {
	const char *name;
	int (*build)(void **state, const struct chunkdb_vectors *v);
	int (*search)(void *state, const struct chunkdb_vectors *v, const float *q, int k, struct chunkdb_hit *hits);
	void (*free)(void *state);
};
extern const struct chunkdb_dense_ops chunkdb_dense_exact;

/* Brute force over n vectors of dim floats (rows given by rows[], or the index
 * when rows is NULL): the best k by dot product, best first. Returns the count. */
int chunkdb_topk_dot(const float *vecs, const int64_t *rows, int64_t n, int dim, const float *q, int k,
		   struct chunkdb_hit *hits);

/* Reciprocal-rank fusion: score(d) = sum over lists of 1 / (rrf_k + rank), rank
 * from 1. The best k of the union into *out (malloc()ed), best first. */
int chunkdb_rrf(const struct chunkdb_hit *const *lists, const int *lens, int n_lists, int rrf_k, int k,
	      struct chunkdb_hit **out, int *n_out) KB_WUR;

#endif
