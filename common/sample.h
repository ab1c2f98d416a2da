/* sample.h — choosing the next token from logits: greedy, or temperature with
 * top-k and top-p (nucleus) filtering, from a seeded generator (same seed, same
 * logits → same tokens on every machine). */
#ifndef KB_SAMPLE_H
#define KB_SAMPLE_H

#include <stdint.h>

#include "util.h"

struct sampler_params {
	float temp;   /* <= 0: greedy (argmax, lowest id on ties) */
	int top_k;    /* keep the k most likely (0 = all) */
	float top_p;  /* keep the smallest set with cumulative probability >= top_p (>= 1: all) */
	uint64_t seed;
};

struct sampler;

/* A sampler for a vocabulary of n_vocab; NULL on out of memory (kb_error() set). */
struct sampler *sampler_init(int n_vocab, const struct sampler_params *p);
void sampler_free(struct sampler *s);
/* Pick a token from logits [n_vocab] (not modified). No allocation. */
int32_t sampler_sample(struct sampler *s, const float *logits);
/* Argmax (lowest id on ties). */
int32_t sample_greedy(const float *logits, int n_vocab);

#endif
