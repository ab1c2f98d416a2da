/* tokjson.h — a Hugging Face tokenizer.json as the tokenizer.ggml.* keys of GGUF.
 *
 * Reads model.type "BPE" (byte-level: vocab, merges as "a b" strings or [a, b]
 * pairs; a SentencePiece-style one, with byte_fallback, is refused) or
 * "WordPiece" (vocab), the added tokens (special ones become CONTROL,
 * the others USER_DEFINED), and infers tokenizer.ggml.pre from the pre_tokenizer
 * (ByteLevel alone, or a Split on GPT-2's regex: gpt-2; Digits one by one then
 * ByteLevel: smollm; a Split on the Llama-3 or the Qwen2 regex: llama-bpe, qwen2;
 * anything else: gpt-2, with a warning). A
 * WordPiece vocabulary is written the way llama.cpp converts BERT models: a
 * continuation "##x" as "x", a word-initial "x" as "▁x", "[...]" as is.
 * Special ids come from config.json and tokenizer_config.json beside the file
 * when they exist, else from well-known token texts (and the guess is recorded).
 * The result is what llama.cpp's converter writes, so tok_load() then gives the
 * same ids as llama.cpp on a converted model.
 */
#ifndef KB_TOKJSON_H
#define KB_TOKJSON_H

#include <stdint.h>

#include "gguf.h"
#include "util.h"

struct tokjson {
	char *model;       /* owned: tokenizer.ggml.model, "gpt2" or "bert" */
	char *pre;         /* owned: tokenizer.ggml.pre */
	int32_t n_vocab;
	char **tokens;     /* owned, [n_vocab], each owned (a hole is "[PAD<id>]") */
	int32_t *types;    /* owned, [n_vocab]: enum tok_type */
	char **merges;     /* owned, [n_merges], each owned: "left right"; NULL for WordPiece */
	int64_t n_merges;
	int32_t bos, eos, unk, pad, sep, cls, mask; /* -1 when none */
	int add_bos, add_eos; /* 0 or 1, -1 when nothing says (no key is written) */
	char warning[256]; /* "" or what was guessed, for the caller to report */
};

/* Read path (a tokenizer.json) into *out (zeroed first; tokjson_free() it, also after
 * an error). Returns KB_OK, or an error with kb_error() naming the file and the
 * problem (KB_ERR_UNSUPPORTED for a model type other than BPE and WordPiece). */
int tokjson_load(const char *path, struct tokjson *out) KB_WUR;
void tokjson_free(struct tokjson *tj);

/* Write the tokenizer.ggml.* keys of tj (model, pre, tokens, token_type, merges,
 * the special ids, add_bos_token/add_eos_token when known) into w. The caller adds
 * general.architecture and the rest of the model. */
int tokjson_to_gguf(const struct tokjson *tj, struct gguf_writer *w) KB_WUR;

#endif
