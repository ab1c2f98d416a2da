/* embedder.h — text → one L2-normalized vector: a BERT-family encoder (mean or
 * CLS pooling), or the last hidden state of a llama/qwen2 decoder pooled by
 * mean or last token. Vectors of one model live in one vector space of the
 * chunk index (index.h), named by embedder_space: the model's fingerprint and
 * the pooling, so vectors of different models or poolings never mix. */
#ifndef KB_EMBEDDER_H
#define KB_EMBEDDER_H

#include "util.h"

struct embedder;

/* Load the GGUF at path. pool: "mean", "cls", "last" or NULL (the model's
 * bert.pooling_type, else mean). KB_ERR_UNSUPPORTED for other architectures.
 * *out is freed by embedder_free. */
int embedder_open(struct embedder **out, const char *path, const char *pool) KB_WUR;
void embedder_free(struct embedder *e);
/* Dimensions of a vector. */
int embedder_dim(const struct embedder *e);
/* The vector space's name: hex of SHA-256(model fingerprint || pooling). */
const char *embedder_space(const struct embedder *e);
/* "arch, pooling, file" for the index's spaces table. */
const char *embedder_describe(const struct embedder *e);
/* Embed n texts (NUL-terminated) into out[n][dim], each L2-normalized. A text
 * longer than the model's context is cut to it. */
int embedder_run(struct embedder *e, const char *const *texts, int n, float *out) KB_WUR;

#endif
