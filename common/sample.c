/* sample.c — see sample.h. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

struct cand {
	float logit;
	int32_t id;
};

struct sampler {
	struct sampler_params p;
	int n_vocab;
	uint64_t rng;
	struct cand *cands; /* owned, [n_vocab] */
};

struct sampler *sampler_init(int n_vocab, const struct sampler_params *p)
{
	struct sampler *s = kb_calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->p = *p;
	s->n_vocab = n_vocab;
	s->rng = p->seed ? p->seed : 0x853c49e6748fea9bull;
	s->cands = kb_calloc((size_t)n_vocab, sizeof *s->cands);
	if (!s->cands) {
		free(s);
		return NULL;
	}
	return s;
}

void sampler_free(struct sampler *s)
{
	if (!s)
		return;
	free(s->cands);
	free(s);
}

int32_t sample_greedy(const float *logits, int n_vocab)
{
	int32_t best = 0;
	for (int32_t i = 1; i < n_vocab; i++)
		if (logits[i] > logits[best])
			best = i;
	return best;
}

/* splitmix64: small, fast, good enough for sampling; uniform double in [0, 1). */
static double next_uniform(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int cand_desc(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Move the k largest candidates to the front, sorted descending (quickselect + sort). */
static void top_k_sort(struct cand *c, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		struct cand pivot = c[(lo + hi) / 2];
		int i = lo, j = hi;
		while (i <= j) {
			while (cand_desc(&c[i], &pivot) < 0)
				i++;
			while (cand_desc(&c[j], &pivot) > 0)
				j--;
			if (i <= j) {
				struct cand t = c[i];
				c[i++] = c[j];
				c[j--] = t;
			}
		}
		if (k - 1 <= j)
			hi = j;
		else if (k - 1 >= i)
			lo = i;
		else
			break;
	}
	qsort(c, (size_t)k, sizeof *c, cand_desc);
}

int32_t sampler_sample(struct sampler *s, const float *logits)
{
	if (!(s->p.temp > 0))
		return sample_greedy(logits, s->n_vocab);
	int n = s->n_vocab;
	struct cand *c = s->cands;
	for (int i = 0; i < n; i++)
		c[i] = (struct cand){ logits[i], i };
	int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
	top_k_sort(c, n, k);

	/* softmax over the k survivors at temperature temp (in place: logit -> prob) */
	double sum = 0;
	const float max = c[0].logit;
	for (int i = 0; i < k; i++) {
		c[i].logit = expf((c[i].logit - max) / s->p.temp);
		sum += c[i].logit;
	}
	/* nucleus: the smallest prefix whose mass reaches top_p */
	int keep = k;
	if (s->p.top_p > 0 && s->p.top_p < 1) {
		double cum = 0;
		for (int i = 0; i < k; i++) {
			cum += c[i].logit / sum;
			if (cum >= s->p.top_p) {
				keep = i + 1;
				break;
			}
		}
	}
	double mass = 0;
	for (int i = 0; i < keep; i++)
		mass += c[i].logit;
	double r = next_uniform(&s->rng) * mass, acc = 0;
	for (int i = 0; i < keep; i++) {
		acc += c[i].logit;
		if (r < acc)
			return c[i].id;
	}
	return c[keep - 1].id;
}
