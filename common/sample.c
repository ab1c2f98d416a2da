/* sample.c — see sample.h. */
#include "sample.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

struct cand {
	float logit;
	int32_t id;
	double w; /* weight in the final distribution (not normalized) */
};

struct sampler {
	struct sampler_params p;
	int n_vocab;
	uint64_t rng;
	struct cand *cands; /* owned, [n_vocab] */
	int32_t *count;     /* owned, [n_vocab] when penalties are on: zero between calls */
	int32_t *hist;      /* owned, ring of the last repeat_last_n accepted tokens */
	int n_hist, at;     /* tokens in the ring, next slot */
};

static bool penalties_on(const struct sampler_params *p)
{
	return p->repeat_last_n > 0 && ((p->repeat_penalty != 0 && p->repeat_penalty != 1) ||
					p->presence_penalty != 0 || p->frequency_penalty != 0);
}

struct sampler *sampler_init(int n_vocab, const struct sampler_params *p)
{
	struct sampler *s = kb_calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->p = *p;
	s->n_vocab = n_vocab;
	s->rng = p->seed ? p->seed : 0x853c49e6748fea9bull;
	s->cands = kb_calloc((size_t)n_vocab, sizeof *s->cands);
	bool pen = penalties_on(p);
	if (pen) {
		s->count = kb_calloc((size_t)n_vocab, sizeof *s->count);
		s->hist = kb_calloc((size_t)p->repeat_last_n, sizeof *s->hist);
	}
	if (!s->cands || (pen && (!s->count || !s->hist))) {
		sampler_free(s);
		return NULL;
	}
	return s;
}

void sampler_free(struct sampler *s)
{
	if (!s)
		return;
	free(s->cands);
	free(s->count);
	free(s->hist);
	free(s);
}

void sampler_accept(struct sampler *s, int32_t id)
{
	if (!s->hist)
		return;
	s->hist[s->at] = id;
	s->at = (s->at + 1) % s->p.repeat_last_n;
	if (s->n_hist < s->p.repeat_last_n)
		s->n_hist++;
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

/* The penalties on c (indexed by id) for each token of the window, once per
 * distinct token: the repeat penalty scales the logit towards less likely,
 * then count x frequency and presence are subtracted (llama.cpp's order). */
static void penalize(struct sampler *s, struct cand *c)
{
	const struct sampler_params *p = &s->p;
	float rp = p->repeat_penalty != 0 ? p->repeat_penalty : 1;
	for (int i = 0; i < s->n_hist; i++)
		s->count[s->hist[i]]++;
	for (int i = 0; i < s->n_hist; i++) {
		int32_t t = s->hist[i];
		int n = s->count[t];
		if (n == 0)
			continue; /* done already */
		float *l = &c[t].logit;
		*l = *l <= 0 ? *l * rp : *l / rp;
		*l -= (float)n * p->frequency_penalty + p->presence_penalty;
		s->count[t] = 0;
	}
}

/* The final distribution into c[0 .. return): c[i].w its weights, descending. */
static int dist(struct sampler *s, const float *logits, double *mass)
{
	int n = s->n_vocab;
	struct cand *c = s->cands;
	for (int i = 0; i < n; i++)
		c[i] = (struct cand){ logits[i], i, 0 };
	if (s->hist)
		penalize(s, c);
	if (!(s->p.temp > 0)) { /* greedy on the penalized logits */
		int best = 0;
		for (int i = 1; i < n; i++)
			if (c[i].logit > c[best].logit)
				best = i;
		c[0] = (struct cand){ c[best].logit, c[best].id, 1 };
		*mass = 1;
		return 1;
	}
	int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
	top_k_sort(c, n, k);

	/* top-p and min-p see the distribution at temperature 1 */
	double sum = 0;
	const float max = c[0].logit;
	for (int i = 0; i < k; i++)
		sum += c[i].w = exp((double)c[i].logit - max);
	int keep = k;
	/* nucleus: the smallest prefix whose mass reaches top_p */
	if (s->p.top_p > 0 && s->p.top_p < 1) {
		double cum = 0;
		for (int i = 0; i < k; i++) {
			cum += c[i].w / sum;
			if (cum >= s->p.top_p) {
				keep = i + 1;
				break;
			}
		}
	}
	/* min-p: what is at least min_p as likely as the most likely (whose weight is 1) */
	if (s->p.min_p > 0)
		for (int i = 1; i < keep; i++)
			if (c[i].w < s->p.min_p) {
				keep = i;
				break;
			}
	/* then the temperature, on the survivors */
	*mass = 0;
	for (int i = 0; i < keep; i++)
		*mass += c[i].w = exp(((double)c[i].logit - max) / s->p.temp);
	return keep;
}

int32_t sampler_sample(struct sampler *s, const float *logits)
{
	if (!(s->p.temp > 0) && !s->hist)
		return sample_greedy(logits, s->n_vocab);
	double mass;
	int keep = dist(s, logits, &mass);
	const struct cand *c = s->cands;
	double r = next_uniform(&s->rng) * mass, acc = 0;
	for (int i = 0; i < keep; i++) {
		acc += c[i].w;
		if (r < acc)
			return c[i].id;
	}
	return c[keep - 1].id;
}

int sampler_dist(struct sampler *s, const float *logits, int32_t *ids, float *probs)
{
	if (!(s->p.temp > 0) && !s->hist) {
		ids[0] = sample_greedy(logits, s->n_vocab);
		probs[0] = 1;
		return 1;
	}
	double mass;
	int keep = dist(s, logits, &mass);
	for (int i = 0; i < keep; i++) {
		ids[i] = s->cands[i].id;
		probs[i] = (float)(s->cands[i].w / mass);
	}
	return keep;
}
