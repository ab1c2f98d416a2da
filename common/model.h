/* model.h — the decoder runtime: llama, qwen2, qwen3, gemma2, gemma3 and phi3 from GGUF, a KV cache, the
 * forward pass, and a per-layer entry point for blend.
 *
 * The GGUF stays mapped for the model's lifetime; weight matrices are used in
 * place (any supported type), small vectors (norms, biases) are copied to f32.
 *
 * Forward pass over a batch of tokens with explicit positions: each token gets
 * a KV-cache slot; attention masks by position (a token at position p sees
 * every slot whose position is <= p), never by slot index, so a cache may hold
 * tokens in any order (blend places chunk caches where it likes).
 */
#ifndef KB_MODEL_H
#define KB_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"
#include "kernels.h"
#include "tok.h"

enum model_arch { ARCH_LLAMA = 1, ARCH_QWEN2, ARCH_QWEN3, ARCH_GEMMA2, ARCH_GEMMA3, ARCH_PHI3 };

enum rope_scaling { ROPE_SCALING_NONE = 0, ROPE_SCALING_LINEAR = 1, ROPE_SCALING_LLAMA3 = 2 };

struct model_hparams {
	enum model_arch arch;
	int n_vocab;     /* rows of token_embd */
	int n_embd;      /* hidden size */
	int n_layer;
	int n_head;      /* query heads */
	int n_kv_head;   /* key/value heads (GQA when < n_head) */
	int head_dim;    /* attention.key_length, else n_embd / n_head */
	int n_ff;        /* feed-forward hidden size */
	int n_ctx_train; /* context_length from the file (phi3 with LongRoPE: its original length) */
	float norm_eps;  /* RMSNorm epsilon */
	int rope_mode;   /* KERN_ROPE_NORM (llama) or KERN_ROPE_NEOX (the others) */
	int n_rot;       /* rope.dimension_count, else head_dim */
	float rope_base; /* rope.freq_base, default 10000 */
	enum rope_scaling rope_scaling;
	float rope_factor;   /* linear / llama3 scaling factor (1 = none) */
	int rope_orig_ctx;   /* llama3: original context length */
	bool qkv_bias;       /* qwen2 */
	bool tied_output;    /* output projection is token_embd */
	/* what the newer architectures add (zero / false: as llama) */
	bool qk_norm;        /* qwen3, gemma3: RMSNorm of each head of Q and K before RoPE */
	bool post_norms;     /* gemma2/3: RMSNorm of the attention and MLP outputs before each residual add */
	bool gelu;           /* gemma2/3: GeGLU (tanh GELU of the gate) instead of SwiGLU */
	float embd_scale;    /* gemma2/3: embeddings times sqrt(n_embd); 0 = none */
	float attn_scale;    /* gemma2/3: score scale (0: 1/sqrt(head_dim)) */
	float attn_softcap;  /* gemma2: attention logit soft-capping (0: none) */
	float final_softcap; /* gemma2: output logit soft-capping (0: none) */
	int n_swa;           /* sliding window of the layers that have one (0: none) */
	int swa_period;      /* with a window, layer l has it when swa_period is 0 (every layer)
			      * or l % swa_period < swa_period - 1 (gemma: 5 of 6, 1 of 2) */
	float rope_base_swa; /* gemma: RoPE base of the sliding-window layers */
	float rope_mscale;   /* phi3 LongRoPE: Q and K magnitude after rotation (1: none) */
};

/* A weight matrix used in place: ne[0] = n_in (contiguous), ne[1] = n_out rows. */
struct weight {
	const void *data; /* into the mapping */
	int type;         /* enum qtype */
	int64_t n_in, n_out;
};

struct model_layer {
	float *attn_norm;         /* owned, (n_embd) */
	struct weight wq;         /* (n_embd -> n_head * head_dim) */
	struct weight wk, wv;     /* (n_embd -> n_kv_head * head_dim) */
	float *bq, *bk, *bv;      /* owned, qwen2 biases or NULL */
	float *q_norm, *k_norm;   /* owned, (head_dim), qwen3/gemma3 or NULL */
	float *attn_post_norm, *ffn_post_norm; /* owned, (n_embd), gemma2/3 or NULL */
	bool swa;                 /* attends within the sliding window hp.n_swa (and rotates with rope_swa) */
	struct weight wo;         /* (n_head * head_dim -> n_embd) */
	float *ffn_norm;          /* owned, (n_embd) */
	struct weight w_gate, w_up; /* (n_embd -> n_ff) */
	struct weight w_down;     /* (n_ff -> n_embd) */
};

struct model {
	struct gguf *gguf;        /* owned, mapped */
	struct model_hparams hp;
	struct weight token_embd; /* (n_embd x n_vocab) */
	float *output_norm;       /* owned, (n_embd) */
	struct weight output;     /* (n_embd -> n_vocab); token_embd when tied */
	struct model_layer *layers; /* owned, [n_layer] */
	float *rope_inv_freq;     /* owned, [n_rot]: [0, n_rot/2) base, scaling and factors folded in;
				   * [n_rot/2, n_rot) the same for the sliding-window layers' base */
	struct kern_rope rope, rope_swa; /* the rotation of each kind of layer (model_rope) */
	struct tok *tok;          /* owned */
	uint8_t fingerprint[32];  /* gguf_fingerprint() */
	uint8_t tok_fingerprint[32];
	struct kern_plan plan[4]; /* the one-token matmul variant of each weight type (model_plan) */
	int n_plan;
};

/* Load a model (and its tokenizer) from a GGUF file. Unknown architectures,
 * missing or misshapen tensors and unsupported types are errors naming the thing.
 * Returns KB_OK and *out (free with model_free), or an error (kb_error() set). */
int model_load(struct model **out, const char *path) KB_WUR;
void model_free(struct model *m);
const char *model_arch_name(enum model_arch a);
/* "q8_0 avx2 (avx512 61 us, avx2 52 us), q6_K avx512": the variant of one-token
 * products chosen for each weight type of m at load (kern_plan_matvec), and the
 * times that chose it; into buf of n bytes. */
const char *model_plan_str(const struct model *m, char *buf, size_t n);
/* Loading pieces shared with the BERT encoder (bert.h). model_load_weight: the
 * matrix name of n_out rows of n_in, used in place; model_load_vec: the vector
 * name of n values as an owned f32 copy (*out = NULL when it is absent and not
 * required). A missing required tensor, another shape or an unsupported type is
 * KB_ERR_FORMAT / KB_ERR_UNSUPPORTED naming the file and the tensor. */
int model_load_weight(const struct gguf *g, const char *name, int64_t n_in, int64_t n_out,
		      struct weight *w) KB_WUR;
int model_load_vec(const struct gguf *g, const char *name, int64_t n, float **out, bool required) KB_WUR;
/* The largest kern_matmul scratch any of the n weights needs for n_batch tokens. */
size_t model_weights_wsize(const struct weight *const *w, size_t n, int n_batch);
/* The tokenizer of g (tok_load), checked to fit the n_vocab rows of token_embd. */
int model_load_tokenizer(const struct gguf *g, int n_vocab, struct tok **out) KB_WUR;
/* The rotation of layer l's queries and keys (blend turns cached keys with it). */
static inline const struct kern_rope *model_rope(const struct model *m, int l)
{
	return m->layers[l].swa ? &m->rope_swa : &m->rope;
}
/* Layer l's attention options (sliding window, scale, soft-capping). */
struct kern_att_opts model_att_opts(const struct model *m, int l);
/* Fill inv_freq[n_rot/2] from the hyper-parameters (and the optional llama3
 * frequency factors, freq_factors[n_rot/2] or NULL). */
void rope_inv_freq(const struct model_hparams *hp, const float *freq_factors, float *inv_freq);

/* ---- KV cache: per layer, slot-major [n_ctx][kv_dim] f32 ---- */
struct kv_cache {
	int n_layer, n_ctx, kv_dim;
	float *k, *v;   /* owned, [n_layer][n_ctx][kv_dim]; K stored rotated (RoPE applied) */
	int32_t *pos;   /* owned, [n_ctx] position of the token in each slot */
	int32_t *tok;   /* owned, [n_ctx] its token id */
	int n;          /* slots in use */
	/* Token-evicted caches (kvfile_read of a sparse .kvc): each kv head of each
	 * layer holds its own tokens, so the position is per (layer, kv head, slot),
	 * INT32_MAX for a slot that head leaves empty (no query sees it), and
	 * attention masks by these; pos[] then holds the largest position in the
	 * slot. NULL for an ordinary cache. */
	int32_t *hpos;  /* owned, [n_layer][n_kv_head][n_ctx], or NULL */
	int n_kv_head;
};
int kv_cache_init(struct kv_cache *kv, const struct model *m, int n_ctx) KB_WUR;
/* The same for a shape given outright (a cache read without its model). */
int kv_cache_init_shape(struct kv_cache *kv, int n_layer, int n_kv_head, int head_dim, int n_ctx) KB_WUR;
void kv_cache_free(struct kv_cache *kv);
static inline float *kv_k(const struct kv_cache *kv, int l, int slot)
{
	return kv->k + ((size_t)l * kv->n_ctx + slot) * kv->kv_dim;
}
static inline float *kv_v(const struct kv_cache *kv, int l, int slot)
{
	return kv->v + ((size_t)l * kv->n_ctx + slot) * kv->kv_dim;
}
/* Copy layer l's K and V of n slots from src at s0 to dst at d0 (the same kv_dim). */
static inline void kv_copy_rows(struct kv_cache *dst, int l, int d0, const struct kv_cache *src, int s0, int n)
{
	memcpy(kv_k(dst, l, d0), kv_k(src, l, s0), (size_t)n * dst->kv_dim * sizeof(float));
	memcpy(kv_v(dst, l, d0), kv_v(src, l, s0), (size_t)n * dst->kv_dim * sizeof(float));
}
/* The n_ctx positions kv head h of layer l holds (kv->hpos must be set). */
static inline int32_t *kv_hpos(const struct kv_cache *kv, int l, int h)
{
	return kv->hpos + ((size_t)l * kv->n_kv_head + h) * kv->n_ctx;
}
/* Give kv per-head positions (kv->hpos), the slots in use taking pos[]. KB_OK
 * (also when it has them) or KB_ERR_NOMEM. */
int kv_cache_per_head(struct kv_cache *kv) KB_WUR;
/* Drop the per-head positions: an ordinary cache again (its slots hold what
 * pos[] says; use it after kv->n = 0). */
void kv_cache_shared_pos(struct kv_cache *kv);

/* ---- workspace: every buffer a forward pass needs, allocated once ----
 * Sized for batches of up to n_batch rows against up to n_ctx cache slots. */
struct model_ws {
	int n_batch, n_ctx;
	float *x;      /* [n_batch][n_embd] residual stream */
	float *xb;     /* [n_batch][n_embd] normed input / projection out */
	float *q;      /* [n_batch][n_head * head_dim] */
	float *k, *v;  /* [n_batch][kv_dim] fresh keys/values */
	float *att;    /* [n_batch][n_head * head_dim] attention output */
	float *hb, *hb2; /* [n_batch][n_ff] */
	float *logits; /* [n_vocab]: one row of logits for callers that need a buffer */
	void *mm_ws;   /* matmul scratch */
	void *att_ws;  /* attention scratch */
	int32_t *slots; /* [n_batch] slot ids of model_forward's batch */
	int32_t *rpos;  /* [n_batch] positions of model_layer's rows */
	float *q_probe; /* NULL, or [n_layer][n_head * head_dim] set by the caller: each layer
			 * copies its last row's query (rotated) there (online token eviction) */
	const struct kern_ape *ape; /* NULL, or set by the caller: attention is APE's
				     * (kern_attention_ape) with the parallel context at
				     * these cache slots (blend's mode ape) */
};
int model_ws_init(struct model_ws *ws, const struct model *m, int n_batch, int n_ctx) KB_WUR;
void model_ws_free(struct model_ws *ws);

/* Run n tokens at positions pos[] (both [n]) through the model, appending them
 * to kv at slots kv->n .. kv->n + n - 1 (in batches of ws->n_batch).
 * logits: NULL, or [n_vocab] for the last token, or [n][n_vocab] when all_logits.
 * Returns KB_OK, or KB_ERR_ARG when the cache is full or a token id is out of range. */
int model_forward(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		  const int32_t *tokens, const int32_t *pos, int n, float *logits,
		  bool all_logits) KB_WUR;

/* Several independent sequences in one pass (prefill of many chunks: the
 * matrix work is shared, attention stays within each sequence). Sequence s has
 * seq_len[s] tokens; tokens[] and pos[] hold them all back to back, appended to
 * kv at slots kv->n.. in that order. Each sequence sees only its own slots.
 * logits: NULL, or [n_seqs][n_vocab] for the last token of each sequence. */
int model_forward_seqs(const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		       const int32_t *tokens, const int32_t *pos, const int *seq_len, int n_seqs,
		       float *logits) KB_WUR;

/* The pieces model_forward is made of; blend composes them itself.
 * model_embed: x[i] = embedding of tokens[i] (x: [n][n_embd]). */
void model_embed(const struct model *m, const int32_t *tokens, int n, float *x);
/* model_layer: run layer l for n rows (n <= ws->n_batch). x [n][n_embd] holds the
 * rows' hidden states and is updated in place. Row i is the token in cache slot
 * slots[i], whose position kv->pos[slots[i]] the caller has set. The rows' fresh
 * K (rotated) and V are written into their slots, then each row attends to
 * slots [0, n_kv) masked by position. Rows need not be contiguous or ordered. */
void model_layer(const struct model *m, struct model_ws *ws, int l, float *x,
		 const int32_t *slots, int n, struct kv_cache *kv, int n_kv);
/* model_layer_kv: only the start of layer l for n rows: their fresh K (rotated)
 * and V written into their slots, as model_layer writes them; x is unchanged.
 * CacheBlend's check layer needs this for every token, the rest for a few. */
void model_layer_kv(const struct model *m, struct model_ws *ws, int l, const float *x,
		    const int32_t *slots, int n, struct kv_cache *kv);
/* model_layer_seqs: the same, with attention restricted per sequence: rows
 * [row0, row0 + n_rows) attend to slots [slot0, slot0 + n_slots) only. */
struct model_seq {
	int row0, n_rows;   /* rows of x (and slots[]) in this sequence */
	int slot0, n_slots; /* the cache slots they may attend to */
};
void model_layer_seqs(const struct model *m, struct model_ws *ws, int l, float *x,
		      const int32_t *slots, int n, struct kv_cache *kv,
		      const struct model_seq *seqs, int n_seqs);
/* model_logits: final norm + output projection of n rows of x into logits [n][n_vocab]. */
void model_logits(const struct model *m, struct model_ws *ws, const float *x, int n,
		  float *logits);

#endif
