/* synth.h — GGUF models with seeded random weights and a given shape.
 *
 * Speed work needs the exact shapes of real models (SmolLM2, Qwen2.5), and
 * correctness tests need small models of each architecture; neither needs
 * trained weights. The file is standard GGUF (llama.cpp loads it too).
 */
#ifndef KB_SYNTH_H
#define KB_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct synth_spec {
	const char *arch;  /* "llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3" or "bert" */
	int n_vocab;       /* >= 259 for the generated vocabulary (SentencePiece; WordPiece for bert) */
	int n_embd, n_layer, n_head, n_kv_head, n_ff, n_ctx;
	float rope_base;   /* 0: 10000 */
	float norm_eps;    /* 0: 1e-5 (bert: 1e-12) */
	int pooling;       /* bert: bert.pooling_type (0 none, 1 mean, 2 cls) */
	bool qkv_bias;     /* attn_{q,k,v}.bias tensors (qwen2) */
	bool tied;         /* no output.weight: the output projection is token_embd */
	int head_dim;      /* 0: n_embd / n_head (written as attention.key_length when it differs) */
	int n_swa;         /* attention.sliding_window (0: none written; gemma2 reads 4096 then) */
	float rope_base_swa; /* gemma: rope.freq_base_swa (0: not written) */
	float attn_softcap, final_softcap; /* gemma2's soft-caps (0: not written) */
	float rope_llama3; /* llama: Llama 3.1 scaling by this factor, as rope_freqs.weight (0: none) */
	int rope_orig_ctx; /* llama3 scaling and phi3 LongRoPE: the original context length */
	int type;          /* the 2-D weights: an enum qtype (F32 = 0) or a K-quant mix, as
			      convert_tensor_type() (convert.h) gives each tensor */
	uint64_t seed;
	const char *tokenizer_json; /* a Hugging Face tokenizer.json (tokjson.h), or a GGUF file whose
				       tokenizer.* keys are copied (llama.cpp's vocabulary files): the
				       vocabulary, and n_vocab (overriding the one above), come from it;
				       NULL: the generated SentencePiece vocabulary */
};

/* Write the model to path (atomically). The tokenizer is the one of
 * s->tokenizer_json when set, else a generated one: for llama/qwen2 a
 * SentencePiece vocabulary (<unk> <s> </s>, the 256 byte tokens, then
 * "▁"-prefixed letter pieces up to n_vocab); for bert a WordPiece one ([PAD]
 * [UNK] [CLS] [SEP] [MASK], each printable ASCII character word-initial and
 * as a continuation, then letter words up to n_vocab).
 * A bert model has the tensors llama.cpp's converter writes for BERT (bert.h):
 * LayerNorm weights near 1 and biases near 0, so activations stay O(1) through
 * the layers. Returns KB_OK or an error. */
int synth_write(const char *path, const struct synth_spec *s) KB_WUR;

/* The spec of a named real-model shape ("smollm2-135m", "smollm2-360m",
 * "qwen2.5-0.5b", "tinyllama-1.1b", "all-minilm-l6-v2", "tiny-llama", "tiny-qwen2",
 * "tiny-llama-tied", "tiny-qwen2-untied", "tiny-256", "tiny-bert"); type and seed
 * are left 0.
 * KB_ERR_ARG for an unknown name. */
int synth_shape(const char *name, struct synth_spec *out) KB_WUR;
/* Name of shape i, or NULL past the last one (for listings). */
const char *synth_shape_name(size_t i);

#endif
