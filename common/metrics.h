/* metrics.h — the scores kvblend bench reports: task quality (token F1 and
 * exact match for QA, Rouge-L for summaries, as the SQuAD, CacheBlend and
 * LongBench evaluations compute them), fidelity of a next-token distribution
 * to a reference (KL divergence), and order statistics (median, p90).
 *
 * Text scores work on bytes: ASCII is lowered and its punctuation dropped, as
 * Python's str.lower and string.punctuation do for ASCII; other UTF-8 passes
 * through unchanged (so "Á" and "á" are different words here). Scores are in
 * [0, 1]; out of memory gives NAN.
 */
#ifndef KB_METRICS_H
#define KB_METRICS_H

#include <stddef.h>

/* The SQuAD/LongBench answer normalization: lowercase, remove punctuation,
 * remove the articles a, an, the, collapse white space (single spaces, none at
 * the ends). Returns a malloc()ed string (the caller frees), NULL when out of memory. */
char *metrics_normalize_answer(const char *s);

/* Token F1 of a prediction against one gold answer: both normalized, split on
 * spaces; common = the multiset intersection; F1 = 2PR / (P + R) with
 * P = common / |pred|, R = common / |gold|. When either has no tokens, 1 if
 * both have none, else 0 (CacheBlend's compute_f1). */
double metrics_f1(const char *pred, const char *gold);
/* The best F1 over n gold answers (0 when n == 0). */
double metrics_f1_max(const char *pred, char *const *golds, int n);

/* Exact match (SQuAD's): 1 when the prediction and the gold answer are the
 * same string after metrics_normalize_answer, else 0 (so "The Eiffel Tower."
 * matches "eiffel tower", and two answers empty after normalization match). */
double metrics_exact_match(const char *pred, const char *gold);
/* The best exact match over n gold answers: 1 when any matches (0 when n == 0). */
double metrics_exact_match_max(const char *pred, char *const *golds, int n);

/* Rouge-L F-measure (beta 1) of a prediction against a reference: tokens are
 * the runs of [a-z0-9] after lowering (rouge_score's tokenizer, without its
 * stemmer); F = 2PR / (P + R) with P = LCS / |pred|, R = LCS / |ref|; 0 when
 * either is empty. */
double metrics_rouge_l(const char *pred, const char *ref);
double metrics_rouge_l_max(const char *pred, char *const *refs, int n);

/* ln sum_i e^x[i] over n > 0 logits, in double (the largest taken out first):
 * logits[i] - it is the log-probability of i under softmax(logits). */
double metrics_logsumexp(const float *x, int n);

/* KL(P || Q) in nats, P = softmax(p_logits), Q = softmax(q_logits), both [n]:
 * how far Q (a method's next-token distribution) is from P (the reference's).
 * Computed in double precision; >= 0 up to rounding, 0 for identical logits. */
double metrics_kl(const float *p_logits, const float *q_logits, int n);

/* The q-quantile (0 <= q <= 1) of x[0..n), linear between order statistics
 * (numpy's default): q = 0.5 is the median, 0.9 the p90. NAN when n == 0. */
double metrics_quantile(const double *x, int n, double q);

#endif
