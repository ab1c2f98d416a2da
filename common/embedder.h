/* embedder.h — text → one L2-normalized vector: a BERT-family encoder (mean or
 * CLS pooling), or the last hidden state of a decoder (model.h) pooled by
 * mean or last token. Vectors of one model live in one vector space of the
 * chunk index (chunkdb.h), named by embedder_space: the model's fingerprint and
 * the pooling, so vectors of different models or poolings never mix. */
#ifndef KB_EMBEDDER_H
#define KB_EMBEDDER_H

#include <stdbool.h>

#include "util.h"

struct embedder;

/* Load the GGUF at path: general.architecture bert (bert.h), else a decoder
 * (model.h). pool: "mean", "cls" (bert only), "last" (decoders
 * only) or NULL (bert: the file's bert.pooling_type, else mean; decoders:
 * mean); a pooling that does not suit the model is KB_ERR_ARG naming it.
 * KB_ERR_UNSUPPORTED for other architectures. *out is freed by embedder_free. */
int embedder_open(struct embedder **out, const char *path, const char *pool) KB_WUR;
void embedder_free(struct embedder *e);
/* Dimensions of a vector. */
int embedder_dim(const struct embedder *e);
/* The vector space's name: hex of SHA-256(model fingerprint || pooling [|| passage prefix]). */
const char *embedder_space(const struct embedder *e);
/* "arch, pooling, file" for the index's spaces table. */
const char *embedder_describe(const struct embedder *e);
/* Embed n passages (NUL-terminated texts, each after the passage prefix) into
 * out[n][dim], each L2-normalized. A text is framed as the tokenizer says
 * ([CLS] text [SEP] for WordPiece); one longer than the model's context (at
 * most 512 tokens) is cut to it, keeping the closing [SEP] (or EOS) as its
 * last token. KB_ERR_ARG for a text of no tokens, KB_ERR_FORMAT for a
 * non-finite embedding (broken weights). */
int embedder_run(struct embedder *e, const char *const *texts, int n, float *out) KB_WUR;
/* Embed one query, as embedder_run does a passage but after the query prefix. */
int embedder_run_query(struct embedder *e, const char *query, float *out) KB_WUR;
/* Embed n texts, each a passage or (is_query[i]) a query, into out[n][dim]:
 * the passages in one embedder_run, the queries one by one. Errors as
 * embedder_run's, and KB_ERR_NOMEM. */
int embedder_run_mixed(struct embedder *e, const char *const *texts, const bool *is_query, int n,
		       float *out) KB_WUR;
/* Text put before every passage and every query, as some models were trained
 * (e5: "passage: " and "query: "; bge: an instruction before short queries).
 * The passage prefix is part of the vector space's name, so vectors made with
 * and without it never mix; the query prefix is not (queries are not stored).
 * NULL or "" for none. KB_OK or KB_ERR_NOMEM. */
int embedder_set_prefixes(struct embedder *e, const char *passage, const char *query) KB_WUR;

#endif
