/* bert.h — the BERT encoder (general.architecture = bert: all-MiniLM, bge, e5,
 * ...) from GGUF, as llama.cpp's converter writes it, for embeddings.
 *
 * Post-LayerNorm BERT, every token of a sequence seeing every other:
 *   x = LN(tok_embd[t] + position_embd[p] + token_types[0])
 *   per layer:  a = attention(x)                       (bidirectional, 1/sqrt(head_dim))
 *               x = LN(x + W_o a + b_o)                (attn_output_norm)
 *               x = LN(x + W_down GELU(W_up x + b_up) + b_down)   (layer_output_norm)
 * GELU is the tanh form llama.cpp uses for bert (kern_gelu). The output is the
 * last layer's hidden state of every token; pooling is the caller's
 * (embedder.h). Weights are used in place in any type kern_matmul supports;
 * vectors (norms, biases, the type-0 row) are copied to f32.
 */
#ifndef KB_BERT_H
#define KB_BERT_H

#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "tok.h"

/* bert.pooling_type as llama.cpp numbers it (only these mean something here). */
enum bert_pooling { BERT_POOL_NONE = 0, BERT_POOL_MEAN = 1, BERT_POOL_CLS = 2 };

struct bert_hparams {
	int n_vocab;     /* rows of token_embd */
	int n_embd;      /* hidden size */
	int n_layer;
	int n_head;
	int head_dim;    /* n_embd / n_head */
	int n_ff;        /* intermediate size */
	int n_ctx_train; /* rows of position_embd: the longest sequence */
	float norm_eps;  /* LayerNorm epsilon (attention.layer_norm_epsilon, default 1e-12) */
	int pooling;     /* bert.pooling_type, or -1 when the file does not say */
};

struct bert_layer {
	struct weight wq, wk, wv;       /* (n_embd -> n_embd) */
	float *bq, *bk, *bv;            /* owned, (n_embd) */
	struct weight wo;               /* (n_embd -> n_embd) */
	float *bo;                      /* owned, (n_embd) */
	float *attn_norm, *attn_norm_b; /* owned, (n_embd): attn_output_norm */
	struct weight w_up;             /* (n_embd -> n_ff) */
	float *b_up;                    /* owned, (n_ff) */
	struct weight w_down;           /* (n_ff -> n_embd) */
	float *b_down;                  /* owned, (n_embd) */
	float *out_norm, *out_norm_b;   /* owned, (n_embd): layer_output_norm */
};

struct bert {
	struct gguf *gguf;             /* owned, mapped */
	struct bert_hparams hp;
	struct weight token_embd;      /* (n_embd x n_vocab) */
	struct weight pos_embd;        /* (n_embd x n_ctx_train) */
	float *type0;                  /* owned, (n_embd): token_types row 0 (every token is
					  "sentence A", as llama.cpp does); NULL without token_types */
	float *embd_norm, *embd_norm_b; /* owned, (n_embd): token_embd_norm */
	struct bert_layer *layers;     /* owned, [n_layer] */
	struct tok *tok;               /* owned */
	uint8_t fingerprint[32];       /* gguf_fingerprint() */
};

/* Load an encoder (and its tokenizer) from a GGUF file whose architecture is
 * bert. A missing or misshapen tensor, an unsupported type, a causal encoder
 * or another architecture is an error naming the file and the thing. Returns
 * KB_OK and *out (free with bert_free), or an error with kb_error() set. */
int bert_load(struct bert **out, const char *path) KB_WUR;
void bert_free(struct bert *b);

/* Every buffer of a forward pass over up to n_batch tokens, allocated once. */
struct bert_ws {
	int n_batch;
	float *xb;       /* [n_batch][n_embd] projection out */
	float *q, *k, *v, *att; /* [n_batch][n_embd] */
	float *hb;       /* [n_batch][n_ff] */
	int32_t *zeros;  /* [n_batch] the one position every token is given for attention */
	void *mm_ws;     /* matmul scratch */
	void *att_ws;    /* attention scratch */
};
int bert_ws_init(struct bert_ws *ws, const struct bert *b, int n_batch) KB_WUR;
void bert_ws_free(struct bert_ws *ws);

/* Run n_seqs sequences, seq_len[s] tokens each, back to back in tokens[]
 * (positions 0.. within each sequence; in all at most ws->n_batch tokens, each
 * sequence at most n_ctx_train). Tokens attend within their own sequence only.
 * x [n][n_embd] (n = the sum) gets the last layer's hidden state of each token.
 * Returns KB_OK, or KB_ERR_ARG (with kb_error()) for an empty or too long
 * sequence, too many tokens or a token id out of range. */
int bert_forward(const struct bert *b, struct bert_ws *ws, const int32_t *tokens, const int *seq_len,
		 int n_seqs, float *x) KB_WUR;

#endif
