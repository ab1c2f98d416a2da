/* tok.h — tokenizers read from a GGUF's `tokenizer.*` metadata.
 *
 * tokenizer.ggml.model selects the algorithm:
 *   "llama" SentencePiece BPE: scores, byte fallback (<0xXX>), add_space_prefix,
 *           "▁" for spaces (tok_spm.c);
 *   "gpt2"  byte-level BPE: merges ranked by tokenizer.ggml.merges, the pre-tokenizer
 *           regexes that tokenizer.ggml.pre names (gpt-2, llama3/llama-bpe, qwen2,
 *           smollm, starcoder, deepseek-coder, deepseek-llm, ... as llama.cpp lists
 *           them; an unknown name gets the GPT-2 rules and a warning) (tok_bpe.c);
 *   "bert"  WordPiece: BERT's lowercasing, accent stripping and punctuation split,
 *           then greedy longest-first pieces (tok_wpm.c).
 * Anything else is KB_ERR_UNSUPPORTED naming the model. Every kind gives the ids
 * llama.cpp gives for the same GGUF.
 *
 * Special tokens (token_type CONTROL, and UNKNOWN) written literally in the text are
 * matched as single tokens when parse_special is set, otherwise tokenized as plain
 * text; USER_DEFINED tokens are always matched (as llama.cpp does).
 */
#ifndef KB_TOK_H
#define KB_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

enum tok_kind { TOK_SPM = 1, TOK_BPE = 2, TOK_WPM = 3 };

/* GGUF token types (tokenizer.ggml.token_type). */
enum tok_type {
	TOK_TYPE_UNDEFINED = 0,
	TOK_TYPE_NORMAL = 1,
	TOK_TYPE_UNKNOWN = 2,
	TOK_TYPE_CONTROL = 3,
	TOK_TYPE_USER_DEFINED = 4,
	TOK_TYPE_UNUSED = 5,
	TOK_TYPE_BYTE = 6,
};

struct tok; /* opaque */

/* Build a tokenizer from g's metadata (copies what it needs; g may be closed after).
 * Returns KB_OK and *out, or an error with kb_error() set. */
int tok_load(struct tok **out, const struct gguf *g) KB_WUR;
void tok_free(struct tok *t);

enum tok_kind tok_kind(const struct tok *t);
int32_t tok_n_vocab(const struct tok *t);
int32_t tok_bos(const struct tok *t);  /* -1 if none */
int32_t tok_eos(const struct tok *t);  /* -1 if none */
bool tok_add_bos(const struct tok *t); /* tokenizer.ggml.add_bos_token (default per kind) */
/* What the tool should tell the user about this tokenizer (an unknown or missing
 * tokenizer.ggml.pre, say), one line without a newline; NULL if nothing. Owned by t. */
const char *tok_warning(const struct tok *t);
/* true for end-of-generation tokens (EOS, EOT, <|im_end|>, ...). */
bool tok_is_eog(const struct tok *t, int32_t id);

/* Tokenize len bytes of text. add_bos frames the text as llama.cpp's add_special
 * does: BOS first when the vocabulary has one, and at the end [SEP] for WordPiece
 * ([CLS] text [SEP]) or EOS when tokenizer.ggml.add_eos_token is set.
 * parse_special matches special tokens written in the text.
 * On KB_OK, *ids (malloc()ed, caller frees) holds *n ids. Empty text gives n = 0
 * (plus BOS when asked). Invalid UTF-8 is tokenized byte by byte, never an error. */
int tok_encode(const struct tok *t, const char *text, size_t len, bool add_bos,
	       bool parse_special, int32_t **ids, size_t *n) KB_WUR;
/* tok_encode of a template's markup framing a user's text: with parse_special,
 * special tokens are matched everywhere except in text[plain, plain + plain_len),
 * the user's part, which stays plain text (no match may overlap it);
 * user-defined tokens are cut out everywhere, as always. The bytes are
 * tokenized as tok_encode would otherwise: the span cuts nothing by itself. */
int tok_encode_framed(const struct tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
		      size_t plain, size_t plain_len, int32_t **ids, size_t *n) KB_WUR;

/* The raw vocabulary string of id (as stored, e.g. "▁the" or "<0x0A>"); "" if out of range. */
const char *tok_piece(const struct tok *t, int32_t id);

/* Append the text bytes of id to out (at most cap bytes) and return how many bytes
 * it needs (may exceed cap; nothing is truncated mid-write in that case).
 * SPM and WordPiece: "▁" becomes " ", <0xXX> becomes the byte XX; byte-level BPE:
 * each character becomes the byte it stands for ("Ġ" -> " "); control tokens give ""
 * unless show_special. Tokens may form partial UTF-8: callers stream bytes. */
size_t tok_decode(const struct tok *t, int32_t id, bool show_special, char *out, size_t cap);

#endif
