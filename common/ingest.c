/* ingest.c — chunk records into the chunk index; see ingest.h. */
#include "ingest.h"

#include <stdlib.h>

#include "records.h"

struct ingest {
	struct chunkdb *ix;   /* not owned */
	struct embedder *e;   /* not owned; NULL: text only */
	int batch;
	json_t **recs;        /* [batch] owned references waiting for their vectors */
	int64_t *rows;        /* [batch] their rows */
	const char **texts;   /* [batch] scratch for embedder_run */
	int64_t *todo;        /* [batch] the rows of texts[] */
	float *v;             /* [batch * dim] */
	int n;                /* pending */
	long n_in;            /* records added in all */
	long in_txn;          /* records added in the open transaction (0: none open) */
	struct ingest_stats st;
};

int ingest_init(struct ingest **out, struct chunkdb *ix, struct embedder *e, int batch)
{
	struct ingest *g = kb_calloc(1, sizeof *g);
	if (!g)
		return KB_ERR_NOMEM;
	g->ix = ix, g->e = e, g->batch = batch < 1 ? 1 : batch;
	if (e) {
		size_t b = (size_t)g->batch;
		g->recs = kb_malloc(b * sizeof *g->recs);
		g->rows = kb_malloc(b * sizeof *g->rows);
		g->texts = kb_malloc(b * sizeof *g->texts);
		g->todo = kb_malloc(b * sizeof *g->todo);
		g->v = kb_malloc(b * (size_t)embedder_dim(e) * sizeof *g->v);
		if (!g->recs || !g->rows || !g->texts || !g->todo || !g->v) {
			ingest_free(g);
			return KB_ERR_NOMEM;
		}
		int rc = chunkdb_space(ix, embedder_space(e), embedder_dim(e), embedder_describe(e));
		if (rc) {
			ingest_free(g);
			return rc;
		}
	}
	*out = g;
	return KB_OK;
}

/* Embed the pending chunks that have no vector in this space yet, store their
 * vectors, and drop the pending references. */
static int flush(struct ingest *g)
{
	int rc = KB_OK, m = 0, dim = g->e ? embedder_dim(g->e) : 0;
	for (int i = 0; !rc && i < g->n; i++) {
		bool has;
		rc = chunkdb_has_vector(g->ix, embedder_space(g->e), g->rows[i], &has);
		if (!rc && !has) {
			size_t len;
			g->texts[m] = rec_text(g->recs[i], &len);
			g->todo[m++] = g->rows[i];
		}
	}
	if (!rc && m) {
		double t0 = kb_now();
		rc = embedder_run(g->e, g->texts, m, g->v);
		g->st.t_embed += kb_now() - t0;
		for (int i = 0; !rc && i < m; i++)
			rc = chunkdb_put_vector(g->ix, embedder_space(g->e), g->todo[i], g->v + (size_t)i * (size_t)dim,
						dim);
		g->st.embedded += rc ? 0 : m;
	}
	for (int i = 0; i < g->n; i++)
		json_decref(g->recs[i]);
	g->n = 0;
	return rc;
}

int ingest_add(struct ingest *g, json_t *rec)
{
	int rc;
	if (!g->in_txn && (rc = chunkdb_begin(g->ix))) {
		json_decref(rec);
		return rc;
	}
	g->in_txn++, g->n_in++;
	bool added;
	int64_t row;
	if ((rc = chunkdb_add(g->ix, rec, &added, &row))) {
		json_decref(rec);
		return rc;
	}
	g->st.added += added;
	if (!g->e) {
		json_decref(rec);
	} else {
		g->recs[g->n] = rec, g->rows[g->n++] = row;
		if (g->n == g->batch && (rc = flush(g)))
			return rc;
	}
	/* commit between batches, so a transaction never waits on a half batch */
	if (g->in_txn >= INGEST_TXN_RECORDS && g->n == 0) {
		if ((rc = chunkdb_commit(g->ix)))
			return rc;
		g->in_txn = 0;
	}
	return KB_OK;
}

int ingest_finish(struct ingest *g, bool sweep)
{
	int rc = flush(g);
	if (rc)
		return rc;
	if (!g->n_in || (!sweep && !g->in_txn))
		return KB_OK; /* nothing added, or nothing left to commit */
	if (!g->in_txn && (rc = chunkdb_begin(g->ix)))
		return rc;
	g->in_txn = 1;
	int64_t n = 0;
	if (sweep && (rc = chunkdb_sweep_docs(g->ix, &n)))
		return rc;
	g->st.swept = (long)n;
	if ((rc = chunkdb_commit(g->ix)))
		return rc;
	g->in_txn = 0;
	return KB_OK;
}

const struct ingest_stats *ingest_stats(const struct ingest *g)
{
	return &g->st;
}

void ingest_free(struct ingest *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n; i++)
		json_decref(g->recs[i]);
	free(g->recs);
	free(g->rows);
	free(g->texts);
	free(g->todo);
	free(g->v);
	free(g);
}
