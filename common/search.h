/* search.h — retrieval: the chunks of a chunk index (chunkdb.h) that best
 * answer a query, by BM25 (lexical), by embedding similarity (dense) or both
 * fused by reciprocal rank (hybrid). The retrieval policy lives here, so the
 * tools only parse, call and print.
 *
 * Hybrid asks each side for its best max(k, SEARCH_HYBRID_DEPTH) chunks, so a
 * chunk ranked well by one side only can still surface, and fuses the two
 * lists with chunkdb_rrf at SEARCH_RRF_K (the constant of Cormack et al.).
 *
 * A struct search holds the dense vectors of the embedder's space, loaded once
 * at search_open, and is used from one thread at a time.
 */
#ifndef KB_SEARCH_H
#define KB_SEARCH_H

#include <jansson.h>
#include <stdint.h>

#include "chunkdb.h"
#include "embedder.h"
#include "util.h"

#define SEARCH_HYBRID_DEPTH 50 /* each side's list length before fusion (at least k) */
#define SEARCH_RRF_K 60        /* reciprocal-rank fusion constant */

enum search_method { SEARCH_LEXICAL, SEARCH_DENSE, SEARCH_HYBRID };

struct search;

/* A searcher over ix (borrowed, must outlive it) by method; e (borrowed) is the
 * query embedder, needed by dense and hybrid (KB_ERR_ARG without it), whose
 * space's vectors are loaded now. Returns KB_OK and *out (search_free), or an
 * error (KB_ERR_ARG when the index holds no vectors of e's space). */
int search_open(struct search **out, struct chunkdb *ix, struct embedder *e, enum search_method method) KB_WUR;
/* The best k (> 0) chunks for query, best first, in *hits (malloc()ed, the
 * caller frees; may be NULL when *n is 0), *n of them (fewer than k when fewer
 * match). Scores as chunkdb_hit says for the method. */
int search_run(struct search *s, const char *query, int k, struct chunkdb_hit **hits, int *n) KB_WUR;
/* Vectors searched by the dense side (0 for lexical), and the dense searcher's name ("" for lexical). */
int64_t search_n_vectors(const struct search *s);
const char *search_dense_name(const struct search *s);
/* "lexical", "dense" or "hybrid". */
const char *search_method_name(enum search_method m);
/* Free; search_free(NULL) is a no-op. */
void search_free(struct search *s);

/* The order retrieved chunks are handed on in (the order of the prompt). */
enum search_order {
	SEARCH_ORDER_RANK,    /* best first, as found */
	SEARCH_ORDER_REVERSE, /* best last, nearest the query */
	SEARCH_ORDER_DOC,     /* by document, then seq: reading order */
};
/* Reorder hits[0..n) by order; rank[i] receives the 1-based place, in the
 * order given (score order, as search_run returns them), of the hit now at i.
 * KB_OK, or the index's error (SEARCH_ORDER_DOC reads each hit's doc and seq)
 * with hits as they were. */
int search_order(struct chunkdb *ix, struct chunkdb_hit *hits, int n, enum search_order order, int *rank) KB_WUR;
/* The order named "rank", "reverse" or "doc" into *order: KB_OK, or KB_ERR_ARG
 * ("unknown order 'x' (rank, reverse, doc)"). */
int search_order_from_name(const char *name, enum search_order *order) KB_WUR;
/* The stored record of a hit (a new reference, the caller's) with the hit's
 * "score" and "rank", and "query" and "qid" when they are not NULL: what a
 * search hands on. KB_OK; KB_EOF when the chunk left the index meanwhile. */
int search_hit_record(struct chunkdb *ix, const struct chunkdb_hit *hit, int rank, const char *query,
		      const json_t *qid, json_t **rec) KB_WUR;

#endif
