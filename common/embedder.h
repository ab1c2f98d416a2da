/* embedder.h — text → one L2-normalized vector: a BERT-family encoder (mean or
 * CLS pooling), or the last hidden state of a llama/qwen2 decoder pooled by
 * mean or last token. Vectors of one model live in one vector space of the
 * chunk index (index.h), named by embedder_space: the model's fingerprint and
 * the pooling, so vectors of different models or poolings never mix. */
#ifndef KB_EMBEDDER_H
#define KB_EMBEDDER_H

#include "util.h"

struct embedder;

/* Load the GGUF at path: general.architecture bert (bert.h), else a decoder
 * (model.h; llama, qwen2). pool: "mean", "cls" (bert only), "last" (decoders
 * only) or NULL (bert: the file's bert.pooling_type, else mean; decoders:
 * mean); a pooling that does not suit the model is KB_ERR_ARG naming it.
 * KB_ERR_UNSUPPORTED for other architectures. *out is freed by embedder_free. */
int embedder_open(struct embedder **out, const char *path, const char *pool) KB_WUR;
void embedder_free(struct embedder *e);
/* Dimensions of a vector. */
int embedder_dim(const struct embedder *e);
/* The vector space's name: hex of SHA-256(model fingerprint || pooling). */
const char *embedder_space(const struct embedder *e);
/* "arch, pooling, file" for the index's spaces table. */
const char *embedder_describe(const struct embedder *e);
/* Embed n texts (NUL-terminated) into out[n][dim], each L2-normalized. A text
 * is framed as the tokenizer says ([CLS] text [SEP] for WordPiece); one longer
 * than the model's context (at most 512 tokens) is cut to it, keeping the
 * closing [SEP] (or EOS) as its last token. */
int embedder_run(struct embedder *e, const char *const *texts, int n, float *out) KB_WUR;

#endif
