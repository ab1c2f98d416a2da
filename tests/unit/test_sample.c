/* test_sample — the sampler chain (common/sample.c) against distributions
 * worked out by hand for the logits {2, 1, 0, -1}: top-k, top-p, min-p and the
 * temperature alone and in llama.cpp's order (the filters see temperature 1,
 * the temperature comes last), the repeat, presence and frequency penalties
 * and their window, greedy with and without penalties, and draws that follow
 * the distribution. */
#include "sample.h"
#include "tap.h"

static const float L[4] = { 2, 1, 0, -1 };

/* The sampler's distribution for p after accepting hist[0..n_hist): ids and
 * probabilities as want_ids / want_p (n of them), within 1e-5. */
static void dist_is(const char *name, struct sampler_params p, const int32_t *hist, int n_hist, int n,
		    const int32_t *want_ids, const double *want_p)
{
	struct sampler *s = sampler_init(4, &p);
	if (!ok(s != NULL, "%s: sampler", name))
		return;
	for (int i = 0; i < n_hist; i++)
		sampler_accept(s, hist[i]);
	int32_t ids[4];
	float probs[4];
	int got = sampler_dist(s, L, ids, probs);
	int same = got == n;
	for (int i = 0; same && i < n; i++)
		same = ids[i] == want_ids[i] && fabs(probs[i] - want_p[i]) < 1e-5;
	ok(same, "%s: %d tokens, first %d at %.6f", name, got, ids[0], probs[0]);
	if (!same)
		for (int i = 0; i < got; i++)
			fprintf(stderr, "#   %d: %.6f\n", ids[i], probs[i]);
	sampler_free(s);
}

#define P(...) ((struct sampler_params){ __VA_ARGS__ })
#define IDS(...) ((const int32_t[]){ __VA_ARGS__ })
#define PS(...) ((const double[]){ __VA_ARGS__ })

int main(void)
{
	/* softmax of {2, 1, 0, -1}: e^2, e^1, 1, e^-1 over their sum 11.475217 */
	dist_is("temperature 1", P(.temp = 1), NULL, 0, 4, IDS(0, 1, 2, 3), PS(.643914, .236883, .087144, .032059));
	/* e^(l/2): e, e^.5, 1, e^-.5 over 5.973534 */
	dist_is("temperature 2", P(.temp = 2), NULL, 0, 4, IDS(0, 1, 2, 3), PS(.455054, .276005, .167405, .101536));
	dist_is("top-k 2", P(.temp = 1, .top_k = 2), NULL, 0, 2, IDS(0, 1), PS(.731059, .268941));
	/* cumulative .643914, .880797: 0.85 is reached by the second */
	dist_is("top-p 0.85", P(.temp = 1, .top_p = 0.85f), NULL, 0, 2, IDS(0, 1), PS(.731059, .268941));
	dist_is("top-p 0.6", P(.temp = 1, .top_p = 0.6f), NULL, 0, 1, IDS(0), PS(1));
	/* relative to the largest: 1, .367879, .135335, .049787 */
	dist_is("min-p 0.3", P(.temp = 1, .min_p = 0.3f), NULL, 0, 2, IDS(0, 1), PS(.731059, .268941));
	dist_is("min-p 0.1", P(.temp = 1, .min_p = 0.1f), NULL, 0, 3, IDS(0, 1, 2), PS(.665241, .244728, .090031));
	/* the filters see temperature 1, then temperature 2 reweights the two left:
	 * e, e^.5 over 4.367003 (with the temperature first, top-p would keep three) */
	dist_is("top-p 0.85 then temperature 2", P(.temp = 2, .top_p = 0.85f), NULL, 0, 2, IDS(0, 1),
		PS(.622459, .377541));
	dist_is("min-p 0.3 then temperature 2", P(.temp = 2, .min_p = 0.3f), NULL, 0, 2, IDS(0, 1),
		PS(.622459, .377541));
	dist_is("top-k 3, top-p 0.9, min-p 0.2", P(.temp = 1, .top_k = 3, .top_p = 0.9f, .min_p = 0.2f), NULL, 0, 2,
		IDS(0, 1), PS(.731059, .268941));

	/* repeat penalty 4 on tokens 0 and 3: 2 / 4 = 0.5, -1 x 4 = -4 → {0.5, 1, 0, -4}:
	 * e^.5, e, 1, e^-4 over 5.385319 */
	dist_is("repeat penalty 4", P(.temp = 1, .repeat_penalty = 4, .repeat_last_n = 64), IDS(0, 3), 2, 4,
		IDS(1, 0, 2, 3), PS(.504758, .306151, .185690, .003401));
	/* a token seen twice is penalized once */
	dist_is("repeat penalty: once per token", P(.temp = 1, .repeat_penalty = 4, .repeat_last_n = 64),
		IDS(0, 3, 0, 0), 4, 4, IDS(1, 0, 2, 3), PS(.504758, .306151, .185690, .003401));
	/* presence 1.5, frequency 0.5 after 1, 1, 2: 1 - (2 x .5 + 1.5) = -1.5, 0 - (.5 + 1.5) = -2
	 * → {2, -1.5, -2, -1}: e^2, e^-1.5, e^-2, e^-1 over 8.115400 */
	dist_is("presence and frequency", P(.temp = 1, .presence_penalty = 1.5f, .frequency_penalty = 0.5f,
					    .repeat_last_n = 64), IDS(1, 1, 2), 3, 4, IDS(0, 3, 1, 2),
		PS(.910498, .045332, .027495, .016677));
	/* the window: of 0, 3, 3 only the last two count → {2, 1, 0, -4} over 11.125654 */
	dist_is("repeat-last-n 2", P(.temp = 1, .repeat_penalty = 4, .repeat_last_n = 2), IDS(0, 3, 3), 3, 4,
		IDS(0, 1, 2, 3), PS(.664154, .244327, .089883, .001646));
	dist_is("repeat-last-n 0: no penalty", P(.temp = 1, .repeat_penalty = 4, .repeat_last_n = 0), IDS(0, 3), 2, 4,
		IDS(0, 1, 2, 3), PS(.643914, .236883, .087144, .032059));
	/* greedy takes the penalized argmax */
	dist_is("greedy with a repeat penalty", P(.temp = 0, .repeat_penalty = 4, .repeat_last_n = 64), IDS(0), 1, 1,
		IDS(1), PS(1));
	dist_is("greedy", P(.temp = 0), NULL, 0, 1, IDS(0), PS(1));

	/* greedy without penalties is sample_greedy itself, on any logits */
	enum { NV = 1000 };
	static float big[NV];
	uint64_t x = 12345;
	int same = 1;
	struct sampler *g = sampler_init(NV, &P(.temp = 0, .repeat_penalty = 1, .repeat_last_n = 64));
	for (int r = 0; r < 50 && g; r++) {
		for (int i = 0; i < NV; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			big[i] = (float)((x >> 40) % 1000) / 100.0f;
		}
		sampler_accept(g, (int32_t)(x % NV));
		same &= sampler_sample(g, big) == sample_greedy(big, NV);
	}
	ok(g && same, "greedy with penalties off (repeat 1) is sample_greedy on 50 random logit vectors");
	sampler_free(g);

	/* draws follow the distribution: 40000 draws of temperature 2 (seeded) */
	struct sampler *s = sampler_init(4, &P(.temp = 2, .seed = 7));
	int hits[4] = { 0 };
	for (int i = 0; s && i < 40000; i++)
		hits[sampler_sample(s, L)]++;
	const double want[4] = { .455054, .276005, .167405, .101536 };
	int close = 1;
	for (int i = 0; i < 4; i++)
		close &= fabs(hits[i] / 40000.0 - want[i]) < 0.01;
	ok(s && close, "draws follow the distribution: %d %d %d %d of 40000", hits[0], hits[1], hits[2], hits[3]);
	sampler_free(s);
	return done_testing();
}
