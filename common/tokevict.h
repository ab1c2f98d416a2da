/* tokevict.h — token-level KV eviction: which tokens each layer and kv head of
 * a cache keeps (kvblend-evict(1) --tokens).
 *
 * The policies of the seed papers, on a whole cache (offline):
 *
 *	streamingllm  the first `sinks` tokens and the most recent ones
 *	h2o           heavy hitters: attention accumulated over every query of
 *	              the prompt, plus the recent `window`
 *	snapkv        votes of the observation window (the last `window` queries)
 *	              over the earlier keys, max-pooled over `pool` neighbours,
 *	              top-k per kv head; the window is kept
 *	pyramidkv     snapkv's scores, layer budgets shrinking with depth
 *	tova          attention of the last query, averaged over the heads: the
 *	              same tokens in every head of a layer
 *	cake          CAKE's indicator (window attention mean + gamma * variance,
 *	              pooled) and layer budgets from each layer's attention
 *	              dispersion (entropy^(1/tau1) * variance^(1/tau2))
 *
 * Every policy keeps the last token in every head. A head's scores sum over
 * the query heads that share it (GQA). Budgets are rows per layer: every kv
 * head of a layer keeps the same number of tokens, so a layer is a rectangle.
 *
 * The pieces are separate so each can be checked against a direct
 * computation: tokevict_accumulate (attention statistics of some queries over
 * the keys), tokevict_layer_budgets, tokevict_select_layer; tokevict_run puts
 * them together over a cache in memory, recomputing the queries it needs with
 * the model.
 */
#ifndef KB_TOKEVICT_H
#define KB_TOKEVICT_H

#include <stdbool.h>
#include <stdint.h>

#include "kvc.h"
#include "model.h"

enum tokevict_policy {
	TOKEVICT_STREAMINGLLM,
	TOKEVICT_H2O,
	TOKEVICT_SNAPKV,
	TOKEVICT_PYRAMIDKV,
	TOKEVICT_TOVA,
	TOKEVICT_CAKE,
	TOKEVICT_POLICY_COUNT,
};

enum tokevict_layers {
	TOKEVICT_LAYERS_DEFAULT, /* the policy's own: pyramid for pyramidkv, cake for cake, else uniform */
	TOKEVICT_LAYERS_UNIFORM,
	TOKEVICT_LAYERS_PYRAMID,
	TOKEVICT_LAYERS_CAKE,
};

struct tokevict_opts {
	enum tokevict_policy policy;
	int budget;         /* rows per layer on average, 1..n_tokens */
	int window;         /* observation / recent window (default 32) */
	int sinks;          /* streamingllm: attention sinks (default 4) */
	int pool;           /* max-pool kernel over neighbouring keys, odd (default 7; 1 = none) */
	enum tokevict_layers layers;
	double pyramid_beta; /* pyramid: the last layer's share is 1/beta of the average (default 20) */
	double cake_tau1, cake_tau2; /* cake layer preference exponents (default 1, 1) */
	double cake_gamma;  /* cake indicator: mean + gamma * variance (default 200) */
};

/* Defaults for policy p. */
void tokevict_opts_init(struct tokevict_opts *o, enum tokevict_policy p);
/* "streamingllm", ...; NULL for an unknown id. */
const char *tokevict_policy_name(int p);
/* The policy named, or -1. */
int tokevict_policy_from_name(const char *name);
/* Does the policy (with its layer budgets) need attention, hence the model? */
bool tokevict_needs_model(const struct tokevict_opts *o);
/* The layer-budget scheme o resolves to (never TOKEVICT_LAYERS_DEFAULT). */
enum tokevict_layers tokevict_layers_of(const struct tokevict_opts *o);

/* Attention statistics of n_q queries over n_kv keys of one layer:
 * q [n_q][n_head * head_dim] (row stride q_stride) at positions q_pos, keys k
 * [n_kv][n_kv_head * head_dim] (row stride kv_stride) at k_pos; query i sees
 * key j when k_pos[j] <= q_pos[i]. For each query head h and key j adds
 * softmax weight p to sum[h * n_kv + j] and p^2 to sumsq[...] (sumsq may be
 * NULL). scale = 1/sqrt(head_dim). */
void tokevict_accumulate(const float *q, int q_stride, const int32_t *q_pos, int n_q, const float *k,
			 int kv_stride, const int32_t *k_pos, int n_kv, int n_head, int n_kv_head, int head_dim,
			 float *sum, float *sumsq);

/* One layer's statistics for the selection: the sums above over n_obs queries
 * (the last n_obs tokens of the cache), and for tova the last query's weights. */
struct tokevict_layer_stats {
	const float *sum, *sumsq; /* [n_head][n], sumsq NULL unless cake */
	const float *last;        /* tova: [n_head][n] of the last query alone, else NULL */
	int n_obs;                /* queries summed */
	int n_head, n_kv_head;
};

/* CAKE's preference of a layer (> 0): entropy^(1/tau1) * variance^(1/tau2) of
 * its window attention over the keys before the window. */
double tokevict_cake_pref(const struct tokevict_opts *o, const struct tokevict_layer_stats *s, int n);

/* Rows per layer: budgets[l] in [1, n], summing to n_layer * o->budget (or as
 * near as the caps allow). pref: [n_layer] CAKE preferences (cake scheme only). */
void tokevict_layer_budgets(const struct tokevict_opts *o, int n_layer, int n, const double *pref,
			    int32_t *budgets);

/* Choose `rows` of the n tokens for every kv head of one layer: keep[h * rows
 * + j], ascending in j, always holding n - 1. s may be NULL for streamingllm.
 * scratch: tokevict_scratch_floats(n) floats. */
size_t tokevict_scratch_floats(int n);
void tokevict_select_layer(const struct tokevict_opts *o, const struct tokevict_layer_stats *s, int n,
			   int n_kv_head, int rows, float *scratch, int32_t *keep);

/* A selection over a whole cache, in the layout of struct kvc_header's sparse
 * fields: rows[l], keep[] layer by layer, head by head. */
struct tokevict_sel {
	int n_layer, n_kv_head, n;
	int32_t *rows; /* [n_layer] */
	int32_t *keep; /* [n_kv_head * sum(rows)] indices into the cache's tokens */
};
void tokevict_sel_free(struct tokevict_sel *s);

/* Select for the n slots of kv (a dense cache loaded at slots 0..n-1, positions
 * in kv->pos). Policies that need attention recompute the queries of the last
 * tokens (all of them for h2o) with m, layer by layer against the cache; kv's
 * K and V are left as they were. KB_OK and *sel, KB_ERR_ARG (a budget out of
 * range, a policy needing a model without one), KB_ERR_NOMEM. */
int tokevict_run(const struct model *m, struct kv_cache *kv, const struct tokevict_opts *o,
		 struct tokevict_sel *sel) KB_WUR;

/* Apply sel to the cache it was made for, in place: kv gets per-head
 * positions (struct kv_cache .hpos), each layer's rows right-aligned in slots
 * 0..max(rows)-1 (the last token in the last slot of every layer), kv->n =
 * max(rows); a forward pass then goes on after it as after a loaded
 * token-evicted cache. KB_OK, KB_ERR_ARG (a selection of another shape),
 * KB_ERR_NOMEM. */
int tokevict_apply(struct kv_cache *kv, const struct tokevict_sel *sel) KB_WUR;

/* ---- online eviction while decoding (kvblend-decode --kv-budget) ----
 * The cache stays within `budget` slots: after each token is appended (kv->n =
 * budget + 1), one token per kv head of each layer goes, chosen with the
 * attention of the query just computed (model_ws .q_probe):
 *	streamingllm  the oldest after the `sinks` first
 *	h2o           the least attention accumulated since decoding began,
 *	              the `window` most recent kept
 *	tova          the least attention from the current query (averaged over
 *	              the query heads of the kv head)
 *	lazyeviction  the most overdue against its own recurrence interval: each
 *	              slot remembers when it was last attended above the uniform
 *	              share and the longest gap between such hits; the slot whose
 *	              time since its last hit exceeds that gap by most goes (the
 *	              sinks and the recent window kept)
 * The newest token always stays. The freed slot is refilled with the last
 * slot's entry, so the cache stays dense in slots; positions are per head
 * (kv->hpos). */
enum tokevict_online_policy {
	TOKEVICT_ONLINE_STREAMINGLLM,
	TOKEVICT_ONLINE_H2O,
	TOKEVICT_ONLINE_TOVA,
	TOKEVICT_ONLINE_LAZY,
	TOKEVICT_ONLINE_COUNT,
};
struct tokevict_online;
const char *tokevict_online_name(int p);
int tokevict_online_from_name(const char *name);
/* An evictor for kv (its n_ctx must exceed budget). KB_OK, KB_ERR_ARG, KB_ERR_NOMEM. */
int tokevict_online_init(struct tokevict_online **ev, enum tokevict_online_policy policy, int budget, int sinks,
			 int window, const struct model *m, const struct kv_cache *kv) KB_WUR;
/* After a forward step: when kv->n > budget, evict one token per kv head and
 * layer (kv->n drops by one). q_probe: [n_layer][n_head * head_dim], the last
 * token's queries (ws->q_probe), at position q_pos. */
int tokevict_online_step(struct tokevict_online *ev, struct kv_cache *kv, const float *q_probe, int32_t q_pos) KB_WUR;
void tokevict_online_free(struct tokevict_online *ev);

/* Write the tokens sel keeps of kv (loaded from the cache whose header is in)
 * to path ("-" = stdout), atomically (kvc_write_file_cb): a dense cache when
 * every head of every layer keeps the same tokens, else a sparse one (its
 * tokens: those some head keeps). Shape, dtype, RoPE and logits as in; the
 * provenance is tool and argv (option names). KB_OK or an error. */
int tokevict_write(const char *path, const struct kvc_header *in, const struct kv_cache *kv,
		   const struct tokevict_sel *sel, const char *tool, int argc, char **argv) KB_WUR;

#endif
