/* test_metrics — the scores of kvblend bench (common/metrics.c) on known
 * answers: the answer normalization, token F1 (the SQuAD/LongBench examples:
 * articles, case, punctuation, partial overlaps, repeated words, empty
 * answers), exact match on the same normalization (1 only where F1 is 1),
 * Rouge-L on hand-computed LCS, KL of identical and of known distributions,
 * and quantiles as numpy computes them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"

static int near(double a, double b, double tol)
{
	return fabs(a - b) <= tol;
}

static void norm(const char *in, const char *want)
{
	char *got = metrics_normalize_answer(in);
	ok(got && !strcmp(got, want), "normalize '%s' -> '%s' (got '%s')", in, want, got ? got : "(null)");
	free(got);
}

static void f1(const char *pred, const char *gold, double want)
{
	double got = metrics_f1(pred, gold);
	ok(near(got, want, 1e-12), "F1('%s', '%s') = %.6f (got %.6f)", pred, gold, want, got);
}

static void em(const char *pred, const char *gold, double want)
{
	double got = metrics_exact_match(pred, gold);
	ok(got == want, "EM('%s', '%s') = %g (got %g)", pred, gold, want, got);
}

static void rl(const char *pred, const char *ref, double want)
{
	double got = metrics_rouge_l(pred, ref);
	ok(near(got, want, 1e-12), "Rouge-L('%s', '%s') = %.6f (got %.6f)", pred, ref, want, got);
}

static void test_normalize(void)
{
	norm("The Eiffel Tower", "eiffel tower");
	norm("  an apple,  a PEAR; and the... plum!  ", "apple pear and plum");
	norm("theatre anthem", "theatre anthem"); /* articles are whole words only */
	norm("Odeon - Theatre de l'Europe", "odeon theatre de leurope");
	norm("", "");
	norm("the a an", "");
	norm("Rákóczi", "rákóczi"); /* non-ASCII passes through */
	norm("1,000 km/h", "1000 kmh");
}

static void test_f1(void)
{
	f1("the Eiffel Tower", "Eiffel tower", 1);
	f1("Eiffel Tower.", "the eiffel tower", 1);
	f1("Paris", "London", 0);
	/* pred 3 words, gold 2, 1 common: P 1/3, R 1/2, F1 = 2 * 1/6 / (5/6) = 0.4 */
	f1("Paris in France", "Paris Texas", 0.4);
	/* pred 2 words, gold 4, 2 common: P 1, R 1/2, F1 = 2/3 */
	f1("john smith", "john william smith jr", 2.0 / 3);
	/* a repeated word counts once per occurrence in the other: pred "a b b" vs gold "b c": common 1 */
	f1("x y y", "y z", 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5));
	f1("y y", "y y z", 2 * 1.0 * (2.0 / 3) / (1 + 2.0 / 3));
	/* empty after normalization: 1 only when both are */
	f1("", "", 1);
	f1("the", "", 1);
	f1("", "Croatia", 0);
	f1("Croatia", "", 0);
	char *golds[] = { "Zagreb", "Croatia", "the Republic of Croatia" };
	double got = metrics_f1_max("croatia", golds, 3);
	ok(near(got, 1, 1e-12), "F1 max over gold answers = 1 (got %g)", got);
	got = metrics_f1_max("republic", golds, 3);
	ok(near(got, 0.5, 1e-12), "F1 max picks the best partial match: 0.5 (got %g)", got);
	ok(metrics_f1_max("x", golds, 0) == 0, "F1 max over no answers is 0");
}

static void test_exact_match(void)
{
	/* SQuAD's normalization: case, punctuation, articles, white space */
	em("Croatia", "Croatia", 1);
	em("the Eiffel Tower.", "Eiffel   tower", 1);
	em("  An apple!", "apple", 1);
	em("Odeon - Theatre de l'Europe", "odeon theatre de leurope", 1);
	/* a partial answer has F1 between 0 and 1 but no exact match */
	em("Paris in France", "Paris", 0);
	em("Paris", "Paris Texas", 0);
	em("theatre", "atre", 0); /* articles are whole words: "theatre" stays */
	em("1,000", "1000", 1);
	em("Rákóczi", "rákóczi", 1);
	em("Á", "á", 0); /* non-ASCII is not lowered */
	/* empty after normalization: a match only when both are */
	em("", "", 1);
	em("the", "a", 1);
	em("", "Croatia", 0);
	em("Croatia", "", 0);
	/* exact match 1 exactly where F1 is 1 and the words come in the same order */
	const char *pairs[][2] = { { "the Eiffel Tower", "eiffel tower" }, { "tower eiffel", "eiffel tower" },
				   { "a b", "b a c" }, { "New York City", "new york" } };
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		double f = metrics_f1(pairs[i][0], pairs[i][1]), e = metrics_exact_match(pairs[i][0], pairs[i][1]);
		ok(e == 0 || f == 1, "EM 1 implies F1 1: '%s' vs '%s' (EM %g, F1 %g)", pairs[i][0], pairs[i][1], e, f);
	}
	/* F1 1 with the words reordered is no exact match */
	em("tower eiffel", "eiffel tower", 0);
	char *golds[] = { "Zagreb", "Croatia", "the Republic of Croatia" };
	ok(metrics_exact_match_max("croatia.", golds, 3) == 1, "EM max: any gold answer matching gives 1");
	ok(metrics_exact_match_max("Republic of Croatia", golds, 3) == 1, "EM max: the third answer matches");
	ok(metrics_exact_match_max("republic", golds, 3) == 0, "EM max: partial matches give 0");
	ok(metrics_exact_match_max("x", golds, 0) == 0, "EM max over no answers is 0");
}

static void test_rouge(void)
{
	rl("the cat sat on the mat", "the cat sat on the mat", 1);
	/* LCS("the cat was found under the bed", "the cat was under the bed") = 6 of 7 and 6 */
	rl("the cat was found under the bed", "the cat was under the bed", 2 * (6.0 / 7) * 1 / (6.0 / 7 + 1));
	/* order matters: LCS of "a b c d" and "d c b a" is 1 */
	rl("a b c d", "d c b a", 0.25);
	/* LCS("police killed the gunman", "police kill the gunman") = police the gunman: 3/4 each */
	rl("police killed the gunman", "police kill the gunman", 0.75);
	rl("Hello, World!", "hello world", 1); /* case and punctuation are not tokens */
	rl("", "something", 0);
	rl("x", "", 0);
	rl("alpha beta", "gamma delta", 0);
	char *refs[] = { "one two three", "two three four five" };
	double got = metrics_rouge_l_max("two three", refs, 2);
	/* vs refs[0]: LCS 2, P 1, R 2/3 -> 0.8; vs refs[1]: P 1, R 1/2 -> 2/3 */
	ok(near(got, 0.8, 1e-12), "Rouge-L max over references = 0.8 (got %g)", got);
}

static void test_kl(void)
{
	float a[5] = { 1, 2, 3, 4, 5 }, b[5], c[5];
	ok(metrics_kl(a, a, 5) == 0, "KL of identical logits is 0");
	for (int i = 0; i < 5; i++)
		b[i] = a[i] + 7.5f; /* a shift does not change the distribution */
	ok(near(metrics_kl(a, b, 5), 0, 1e-12), "KL is invariant to shifting the logits (%g)", metrics_kl(a, b, 5));
	/* two outcomes, P = (1/2, 1/2), Q = (1/(1+e), e/(1+e)):
	 * KL = 0.5 ln(0.5 (1+e)) + 0.5 ln(0.5 (1+e)/e) */
	float p2[2] = { 0, 0 }, q2[2] = { 0, 1 };
	double e = exp(1), want = 0.5 * log(0.5 * (1 + e)) + 0.5 * log(0.5 * (1 + e) / e);
	ok(near(metrics_kl(p2, q2, 2), want, 1e-9), "KL of two known distributions = %.9f (got %.9f)", want,
	   metrics_kl(p2, q2, 2));
	for (int i = 0; i < 5; i++)
		c[i] = -a[i];
	ok(metrics_kl(a, c, 5) > 1, "KL of reversed logits is large (%g)", metrics_kl(a, c, 5));
	float u[3] = { 0, 0, 0 }, v[3] = { 0, 0, 2 };
	ok(fabs(metrics_kl(u, v, 3) - metrics_kl(v, u, 3)) > 1e-3, "KL is directed: KL(P||Q) != KL(Q||P)");
	/* large logits do not overflow */
	float big[3] = { 1000, 999, -1000 }, big2[3] = { 999, 1000, -1000 };
	double k = metrics_kl(big, big2, 3);
	ok(isfinite(k) && k > 0, "KL of large logits is finite and positive (%g)", k);
	/* a big vocabulary, a small perturbation: KL small and >= 0 */
	enum { V = 49152 };
	float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
	tap_seed();
	for (int i = 0; i < V; i++) {
		x[i] = tap_randf(-10, 10);
		y[i] = x[i] + tap_randf(-1e-3f, 1e-3f);
	}
	k = metrics_kl(x, y, V);
	diag("KL of the perturbed distribution: %g", k);
	ok(k >= 0 && k < 1e-5, "KL of a perturbed 49152-way distribution is tiny (%g)", k);
	free(x), free(y);
}

static void test_quantile(void)
{
	double x[] = { 5, 1, 4, 2, 3 };
	ok(metrics_quantile(x, 5, 0.5) == 3, "median of 5 values");
	double y[] = { 4, 1, 3, 2 };
	ok(metrics_quantile(y, 4, 0.5) == 2.5, "median of 4 values is the mean of the middle two");
	/* numpy.percentile([1..10], 90) = 9.1 */
	double z[] = { 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	ok(near(metrics_quantile(z, 10, 0.9), 9.1, 1e-12), "p90 of 1..10 = 9.1 (got %g)", metrics_quantile(z, 10, 0.9));
	ok(metrics_quantile(z, 10, 0) == 1 && metrics_quantile(z, 10, 1) == 10, "q 0 and 1 are the min and max");
	ok(metrics_quantile(x, 1, 0.9) == 5, "one value is every quantile");
	ok(isnan(metrics_quantile(x, 0, 0.5)), "no values: NAN");
	ok(x[0] == 5 && x[1] == 1, "the input is not reordered");
}

int main(void)
{
	test_normalize();
	test_f1();
	test_exact_match();
	test_rouge();
	test_kl();
	test_quantile();
	return done_testing();
}
