/* ingest.h — chunk records into the chunk index (chunkdb.h): each record's
 * row added (BM25 text), its vector embedded with the next batch when an
 * embedder is given, writes grouped in transactions, and, at the end, the
 * documents read replace their old chunks. What `kvblend embed` does with the
 * records it reads; the record loop (records.h) feeds it.
 *
 *	struct ingest *g;
 *	ingest_init(&g, ix, e, 32);
 *	for each record: ingest_add(g, rec)   // takes the reference
 *	ingest_finish(g, n_bad == 0);
 *	ingest_free(g);
 */
#ifndef KB_INGEST_H
#define KB_INGEST_H

#include <jansson.h>
#include <stdbool.h>

#include "chunkdb.h"
#include "embedder.h"
#include "util.h"

#define INGEST_TXN_RECORDS 512 /* records added per write transaction */

struct ingest_stats {
	long added;     /* chunks new to the index */
	long embedded;  /* vectors computed */
	long swept;     /* old chunks of re-indexed documents removed */
	double t_embed; /* seconds in embedder_run */
};

struct ingest;

/* Start adding to ix (not owned); e (not owned) may be NULL for text only,
 * else its vector space is declared in ix now. batch: chunks per embedder run
 * (>= 1). KB_OK and *out, or an error (chunkdb's, or KB_ERR_NOMEM). */
int ingest_init(struct ingest **out, struct chunkdb *ix, struct embedder *e, int batch) KB_WUR;
/* Add one record (its reference is taken, whatever the result). KB_OK;
 * KB_ERR_FORMAT for a record the index refuses (kb_error() says why; the run
 * goes on); any other error is the index's or the embedder's, and ends the run. */
int ingest_add(struct ingest *g, json_t *rec) KB_WUR;
/* Embed what is pending and commit. With sweep, the documents read replace
 * their old chunks; without (a record was bad, so a document's new chunks may
 * be incomplete) the old ones stay. KB_OK or an error. */
int ingest_finish(struct ingest *g, bool sweep) KB_WUR;
/* The counts so far. */
const struct ingest_stats *ingest_stats(const struct ingest *g);
/* Frees g; records added but not finished stay in the open transaction, which
 * chunkdb_close commits (without the document sweep). ingest_free(NULL) is a
 * no-op. */
void ingest_free(struct ingest *g);

#endif
