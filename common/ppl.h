/* ppl.h — how well a decoder model predicts each token of a text, and the
 * perplexity-minimum boundary rule of Meta-Chunking (Zhao et al. 2024, "PPL
 * chunking"), which the chunker's ppl mode is built on.
 *
 * A text of any length is scored in windows: each window is one batched
 * forward pass from an empty cache over at most `window` tokens (BOS first when
 * the model has one), the first `context` of which were scored by the window
 * before and are only read again, so every token after the first window is
 * predicted from at least `context` tokens before it, at most window - 1:
 *
 *   window 1:  BOS t0 ........................ t(w-2)        scores t0 ..
 *   window 2:  BOS [t(w-1-c) .. t(w-2)] t(w-1) ..            scores t(w-1) ..
 *
 * A window costs about window * (model FLOPs per token); reading the context
 * again makes the whole window / (window - context) times a plain prefill.
 */
#ifndef KB_PPL_H
#define KB_PPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "util.h"

/* The default window: the model's training context, at most this. */
#define PPL_WINDOW_MAX 1024

struct ppl_opts {
	int window;  /* tokens per pass, BOS included; 0: min(n_ctx_train, PPL_WINDOW_MAX) */
	int context; /* tokens a window reads again before those it scores, < window - 1
			(- 1 with BOS); 0: window / 4 */
	/* NULL, or called after each window of ppl_logprobs with the tokens scored
	 * so far and the total (the library prints nothing; a tool shows progress) */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *progress_ctx;
};

struct ppl; /* opaque: the model, a KV cache and a workspace for one window */

/* Check the options against the model and allocate a window's cache and
 * workspace. Returns KB_OK and *out (free with ppl_free), KB_ERR_ARG with a
 * message for a window below 2 or a context that leaves nothing to score, or
 * KB_ERR_NOMEM. The model must outlive *out. */
int ppl_init(struct ppl **out, const struct model *m, const struct ppl_opts *o) KB_WUR;
/* ppl_free(NULL) is a no-op. */
void ppl_free(struct ppl *p);
/* The window and context in use (defaults resolved). */
int ppl_window(const struct ppl *p);
int ppl_context(const struct ppl *p);

/* lp[i] = ln p(tokens[i] | BOS, the tokens of its window before it), natural
 * log, for the n tokens (text tokens only, no BOS: ppl adds it per window).
 * Without a BOS nothing predicts the first token: lp[0] is NaN.
 * Returns KB_OK, or KB_ERR_ARG for a token out of the vocabulary (message). */
int ppl_logprobs(struct ppl *p, const int32_t *tokens, size_t n, float *lp) KB_WUR;

/* The perplexity of consecutive spans of tokens: span i is tokens
 * [ends[i - 1], ends[i]) (ends[-1] = 0, ends ascending), and
 * ppl[i] = exp(-mean lp) over its tokens whose lp is not NaN; NaN for a span
 * with none. */
void ppl_spans(const float *lp, const size_t *ends, size_t n_spans, double *ppl);

/* The boundary rule on a sequence of n sentence perplexities: cut[i] is set
 * when sentence i ends a piece, i.e. it is a dip of the sequence. The rule
 * (Meta-Chunking, section "PPL Chunking"): a sentence the model finds more
 * predictable than both neighbours closes a logically complete unit, so i
 * (0 < i < n - 1) is a boundary when
 *     ppl[i - 1] - ppl[i] > threshold  and  ppl[i + 1] - ppl[i] > threshold,
 * or when ppl[i - 1] - ppl[i] > threshold and ppl[i + 1] == ppl[i] (the dip
 * starts a flat stretch). The first and last sentences never qualify (the end
 * of the text is a boundary anyway); a NaN never compares, so a sentence with
 * no scored token is neither a dip nor the side of one. threshold 0 (the
 * paper's default) takes every strict local minimum; larger ones keep only
 * sharper dips. Returns the number of cuts. Pure: no model needed. */
size_t ppl_minima(const double *ppl, size_t n, double threshold, bool *cut);

/* How deep sentence i dips, in the rule's terms: the smaller of the drops from
 * its two neighbours, or the drop before it when the sequence stays flat after
 * it; ppl_minima cuts after i exactly when this is above the threshold (and
 * positive). <= 0 when i is no dip, NaN for the first and last sentences and
 * next to a NaN. The depths of a text's dips are the thresholds that matter:
 * a threshold at their q-quantile keeps about 1 - q of the cuts. */
double ppl_dip(const double *ppl, size_t n, size_t i);

#endif
