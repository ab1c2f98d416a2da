/* search.c — see search.h. */
#include "search.h"

#include <stdlib.h>
#include <string.h>

struct search {
	struct chunkdb *ix;            /* borrowed */
	struct embedder *e;            /* borrowed; NULL for lexical */
	enum search_method method;
	struct chunkdb_vectors vecs;   /* owned: the embedder's space */
	const struct chunkdb_dense_ops *ops;
	void *state;                   /* owned by ops */
	float *qv;                     /* owned: the query's embedding, dim floats */
};

const char *search_method_name(enum search_method m)
{
	return m == SEARCH_LEXICAL ? "lexical" : m == SEARCH_DENSE ? "dense" : "hybrid";
}

int search_open(struct search **out, struct chunkdb *ix, struct embedder *e, enum search_method method)
{
	*out = NULL;
	if (method != SEARCH_LEXICAL && !e)
		return kb_fail(KB_ERR_ARG, "%s search needs an embedding model", search_method_name(method));
	struct search *s = kb_calloc(1, sizeof *s);
	if (!s)
		return KB_ERR_NOMEM;
	*s = (struct search){ .ix = ix, .e = method == SEARCH_LEXICAL ? NULL : e, .method = method,
			      .ops = &chunkdb_dense_exact };
	int rc = KB_OK;
	if (s->e) {
		if ((rc = chunkdb_load_vectors(ix, embedder_space(e), &s->vecs)) || (rc = s->ops->build(&s->state, &s->vecs)))
			goto fail;
		if (!(s->qv = kb_malloc((size_t)embedder_dim(e) * sizeof *s->qv))) {
			rc = KB_ERR_NOMEM;
			goto fail;
		}
	}
	*out = s;
	return KB_OK;
fail:
	search_free(s);
	return rc;
}

/* The dense side: the best depth chunks by the query's embedding. */
static int search_dense(struct search *s, const char *query, int depth, struct chunkdb_hit **hits, int *n)
{
	int rc = embedder_run_query(s->e, query, s->qv);
	if (rc)
		return rc;
	struct chunkdb_hit *h = kb_malloc((size_t)depth * sizeof *h);
	if (!h)
		return KB_ERR_NOMEM;
	int m = s->ops->search(s->state, &s->vecs, s->qv, depth, h);
	if (m < 0) {
		free(h);
		return m;
	}
	*hits = h;
	*n = m;
	return KB_OK;
}

int search_run(struct search *s, const char *query, int k, struct chunkdb_hit **hits, int *n)
{
	*hits = NULL;
	*n = 0;
	if (k <= 0)
		return KB_OK;
	struct chunkdb_hit *lex = NULL, *den = NULL;
	int n_lex = 0, n_den = 0, rc = KB_OK;
	int depth = s->method == SEARCH_HYBRID ? (k < SEARCH_HYBRID_DEPTH ? SEARCH_HYBRID_DEPTH : k) : k;
	if (s->method != SEARCH_DENSE && (rc = chunkdb_search_lexical(s->ix, query, depth, &lex, &n_lex)))
		return rc;
	if (s->method != SEARCH_LEXICAL && (rc = search_dense(s, query, depth, &den, &n_den)))
		goto out;
	if (s->method == SEARCH_HYBRID) {
		const struct chunkdb_hit *lists[2] = { lex, den };
		int lens[2] = { n_lex, n_den };
		rc = chunkdb_rrf(lists, lens, 2, SEARCH_RRF_K, k, hits, n);
	} else if (s->method == SEARCH_LEXICAL) {
		*hits = lex, *n = n_lex, lex = NULL;
	} else {
		*hits = den, *n = n_den < k ? n_den : k, den = NULL;
	}
out:
	free(lex);
	free(den);
	return rc;
}

int64_t search_n_vectors(const struct search *s)
{
	return s->e ? s->vecs.n : 0;
}

const char *search_dense_name(const struct search *s)
{
	return s->e ? s->ops->name : "";
}

void search_free(struct search *s)
{
	if (!s)
		return;
	if (s->ops && s->state)
		s->ops->free(s->state);
	chunkdb_vectors_free(&s->vecs);
	free(s->qv);
	free(s);
}

/* ---- ordering ---- */

struct placed {
	struct chunkdb_hit h;
	int rank;
	char *doc; /* owned */
	int64_t seq;
};

static int cmp_doc(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	int c = strcmp(x->doc, y->doc);
	if (c)
		return c;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->rank - y->rank;
}

int search_order(struct chunkdb *ix, struct chunkdb_hit *hits, int n, enum search_order order, int *rank)
{
	struct placed *p = kb_calloc((size_t)(n ? n : 1), sizeof *p);
	if (!p)
		return KB_ERR_NOMEM;
	int rc = KB_OK;
	for (int i = 0; i < n; i++) {
		p[i] = (struct placed){ .h = hits[i], .rank = i + 1 };
		if (order == SEARCH_ORDER_DOC && !rc)
			rc = chunkdb_doc_seq(ix, hits[i].row, &p[i].doc, &p[i].seq);
	}
	if (!rc) {
		if (order == SEARCH_ORDER_DOC)
			qsort(p, (size_t)n, sizeof *p, cmp_doc);
		for (int j = 0; j < n; j++) {
			const struct placed *q = &p[order == SEARCH_ORDER_REVERSE ? n - 1 - j : j];
			hits[j] = q->h, rank[j] = q->rank;
		}
	}
	for (int i = 0; i < n; i++)
		free(p[i].doc);
	free(p);
	return rc;
}

int search_order_from_name(const char *name, enum search_order *order)
{
	static const char *const names[] = { [SEARCH_ORDER_RANK] = "rank", [SEARCH_ORDER_REVERSE] = "reverse",
					     [SEARCH_ORDER_DOC] = "doc" };
	for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
		if (!strcmp(name, names[i])) {
			*order = (enum search_order)i;
			return KB_OK;
		}
	return kb_fail(KB_ERR_ARG, "unknown order '%s' (rank, reverse, doc)", name);
}

int search_hit_record(struct chunkdb *ix, const struct chunkdb_hit *hit, int rank, const char *query,
		      const json_t *qid, json_t **rec)
{
	int rc = chunkdb_record(ix, hit->row, rec);
	if (rc)
		return rc;
	if (json_object_set_new(*rec, "score", json_real(hit->score)) ||
	    json_object_set_new(*rec, "rank", json_integer(rank)) ||
	    (query && json_object_set_new(*rec, "query", json_string(query))) ||
	    (qid && json_object_set(*rec, "qid", (json_t *)qid))) {
		json_decref(*rec);
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	}
	return KB_OK;
}
