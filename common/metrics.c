/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Python's string.punctuation: every printable ASCII that is not a letter, a digit or a space. */
static bool is_punct(unsigned char c)
{
	return c > ' ' && c < 0x7f && !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z');
}

static bool is_article(const char *w, size_t n)
{
	return (n == 1 && w[0] == 'a') || (n == 2 && !memcmp(w, "an", 2)) || (n == 3 && !memcmp(w, "the", 3));
}

char *metrics_normalize_answer(const char *s)
{
	size_t n = strlen(s);
	char *t = kb_malloc(n + 1), *out = kb_malloc(n + 1);
	if (!t || !out) {
		free(t), free(out);
		return NULL;
	}
	/* lower, without punctuation */
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_punct(c))
			continue;
		t[m++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	/* words that are not articles, one space apart */
	size_t o = 0;
	for (size_t i = 0; i < m;) {
		while (i < m && is_space((unsigned char)t[i]))
			i++;
		size_t w = i;
		while (i < m && !is_space((unsigned char)t[i]))
			i++;
		if (i > w && !is_article(t + w, i - w)) {
			if (o)
				out[o++] = ' ';
			memcpy(out + o, t + w, i - w);
			o += i - w;
		}
	}
	out[o] = '\0';
	free(t);
	return out;
}

/* Split s in place at spaces: *words (malloc()ed) points into s. Returns the count, or -1. */
static int split(char *s, char ***words)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ' ';
	char **w = kb_malloc(cap * sizeof *w);
	if (!w)
		return -1;
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(s, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		w[n++] = tok;
	*words = w;
	return n;
}

double metrics_f1(const char *pred, const char *gold)
{
	char *p = metrics_normalize_answer(pred), *g = metrics_normalize_answer(gold);
	char **pw = NULL, **gw = NULL;
	double f1 = NAN;
	int np = -1, ng = -1;
	if (!p || !g || (np = split(p, &pw)) < 0 || (ng = split(g, &gw)) < 0)
		goto out;
	if (np == 0 || ng == 0) {
		f1 = np == ng;
		goto out;
	}
	/* multiset intersection: each gold word matches at most one predicted word */
	int common = 0;
	for (int i = 0; i < ng; i++)
		for (int j = 0; j < np; j++)
			if (pw[j] && !strcmp(gw[i], pw[j])) {
				pw[j] = NULL;
				common++;
				break;
			}
	if (common == 0) {
		f1 = 0;
		goto out;
	}
	double prec = (double)common / np, rec = (double)common / ng;
	f1 = 2 * prec * rec / (prec + rec);
out:
	free(p), free(g), free(pw), free(gw);
	return f1;
}

double metrics_f1_max(const char *pred, char *const *golds, int n)
{
	double best = 0;
	for (int i = 0; i < n; i++) {
		double f = metrics_f1(pred, golds[i]);
		if (isnan(f))
			return f;
		best = f > best ? f : best;
	}
	return best;
}

double metrics_exact_match(const char *pred, const char *gold)
{
	char *p = metrics_normalize_answer(pred), *g = metrics_normalize_answer(gold);
	double em = p && g ? !strcmp(p, g) : NAN;
	free(p), free(g);
	return em;
}

double metrics_exact_match_max(const char *pred, char *const *golds, int n)
{
	double best = 0;
	for (int i = 0; i < n && best < 1; i++) {
		double e = metrics_exact_match(pred, golds[i]);
		if (isnan(e))
			return e;
		best = e > best ? e : best;
	}
	return best;
}

/* rouge_score's tokens: lower, runs of [a-z0-9]. Returns a malloc()ed copy of
 * s holding them NUL-separated, with *words pointing at each; the count or -1. */
static int rouge_tokens(const char *s, char **buf, char ***words)
{
	size_t n = strlen(s);
	char *b = kb_malloc(n + 1);
	char **w = kb_malloc((n / 2 + 1) * sizeof *w);
	if (!b || !w) {
		free(b), free(w);
		return -1;
	}
	int k = 0;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		while (i < n && !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
			i++;
		if (i == n)
			break;
		w[k++] = b + o;
		while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) {
			char c = s[i++];
			b[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		b[o++] = '\0';
	}
	*buf = b;
	*words = w;
	return k;
}

double metrics_rouge_l(const char *pred, const char *ref)
{
	char *pb = NULL, *rb = NULL, **pw = NULL, **rw = NULL;
	int *row = NULL;
	double f = NAN;
	int np = rouge_tokens(pred, &pb, &pw), nr = np < 0 ? -1 : rouge_tokens(ref, &rb, &rw);
	if (np < 0 || nr < 0)
		goto out;
	if (np == 0 || nr == 0) {
		f = 0;
		goto out;
	}
	/* LCS by dynamic programming, one row of the table (over ref) at a time */
	row = kb_calloc((size_t)nr + 1, sizeof *row);
	if (!row)
		goto out;
	for (int i = 0; i < np; i++) {
		int diag = 0; /* table[i][j] */
		for (int j = 0; j < nr; j++) {
			int up = row[j + 1]; /* table[i][j + 1] */
			row[j + 1] = !strcmp(pw[i], rw[j]) ? diag + 1 : (up > row[j] ? up : row[j]);
			diag = up;
		}
	}
	int lcs = row[nr];
	if (lcs == 0) {
		f = 0;
		goto out;
	}
	double prec = (double)lcs / np, rec = (double)lcs / nr;
	f = 2 * prec * rec / (prec + rec);
out:
	free(pb), free(rb), free(pw), free(rw), free(row);
	return f;
}

double metrics_rouge_l_max(const char *pred, char *const *refs, int n)
{
	double best = 0;
	for (int i = 0; i < n; i++) {
		double f = metrics_rouge_l(pred, refs[i]);
		if (isnan(f))
			return f;
		best = f > best ? f : best;
	}
	return best;
}

double metrics_logsumexp(const float *x, int n)
{
	double m = -INFINITY, z = 0;
	for (int i = 0; i < n; i++)
		m = x[i] > m ? x[i] : m;
	for (int i = 0; i < n; i++)
		z += exp(x[i] - m);
	return m + log(z);
}

double metrics_kl(const float *p_logits, const float *q_logits, int n)
{
	double kl = 0;
	const double lzp = metrics_logsumexp(p_logits, n), lzq = metrics_logsumexp(q_logits, n);
	for (int i = 0; i < n; i++) {
		double lp = p_logits[i] - lzp, lq = q_logits[i] - lzq;
		kl += exp(lp) * (lp - lq);
	}
	return kl;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double metrics_quantile(const double *x, int n, double q)
{
	if (n <= 0)
		return NAN;
	double *s = kb_malloc((size_t)n * sizeof *s);
	if (!s)
		return NAN;
	memcpy(s, x, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	q = q < 0 ? 0 : q > 1 ? 1 : q;
	double pos = q * (n - 1);
	int lo = (int)floor(pos);
	int hi = lo + 1 < n ? lo + 1 : lo;
	double r = s[lo] + (pos - lo) * (s[hi] - s[lo]);
	free(s);
	return r;
}
