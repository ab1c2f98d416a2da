/* sample.h — choosing the next token from logits, the way llama.cpp's default
 * sampler chain does: penalties on the logits of recent tokens (repeat,
 * presence, frequency), then top-k, top-p (nucleus) and min-p filtering of the
 * distribution at temperature 1, then the temperature, then a draw from a
 * seeded generator (same seed, same logits → same tokens on every machine).
 * Greedy (temp <= 0) is the argmax of the penalized logits; with no penalty it
 * is sample_greedy of the logits as they are. */
#ifndef KB_SAMPLE_H
#define KB_SAMPLE_H

#include <stdint.h>

#include "util.h"

struct sampler_params {
	float temp;              /* <= 0: greedy (argmax, lowest id on ties) */
	int top_k;               /* keep the k most likely (0 = all) */
	float top_p;             /* keep the smallest set with cumulative probability >= top_p (>= 1: all) */
	float min_p;             /* keep the tokens with probability >= min_p x the largest (0 = off) */
	float repeat_penalty;    /* logits of recent tokens: divided by it when > 0, else multiplied
				  * (0 or 1 = off) */
	int repeat_last_n;       /* the penalties look at the last n tokens sampler_accept saw (0 = off) */
	float presence_penalty;  /* subtracted once from the logit of each recent token (0 = off) */
	float frequency_penalty; /* subtracted from it once per occurrence (0 = off) */
	uint64_t seed;
};

struct sampler;

/* A sampler for a vocabulary of n_vocab; NULL on out of memory (kb_error() set). */
struct sampler *sampler_init(int n_vocab, const struct sampler_params *p);
void sampler_free(struct sampler *s);
/* Tell the penalties about a token of the sequence (the prompt's, then each
 * one generated); the last repeat_last_n are kept. No allocation. */
void sampler_accept(struct sampler *s, int32_t id);
/* Pick a token from logits [n_vocab] (not modified). No allocation. */
int32_t sampler_sample(struct sampler *s, const float *logits);
/* The distribution sampler_sample draws from (after the penalties, the filters
 * and the temperature): its size n, most likely first, into ids[n] and
 * probs[n] (summing to 1; both [n_vocab] at most). No draw is made. */
int sampler_dist(struct sampler *s, const float *logits, int32_t *ids, float *probs);
/* Argmax (lowest id on ties). */
int32_t sample_greedy(const float *logits, int n_vocab);

#endif
