/* tok_impl.h — private to the tokenizer module (tok.c and tok_<kind>.c): the
 * vocabulary shared by every kind and the per-kind entry points. Nothing outside
 * common/tok*.c includes this; the public interface is tok.h.
 */
#ifndef KB_TOK_IMPL_H
#define KB_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tok.h"

/* Token attributes: a bit set, derived from tokenizer.ggml.token_type and then
 * adjusted by name the way llama.cpp does (end-of-generation texts become
 * CONTROL, phi-3 special tokens strip whitespace to their right). */
enum tok_attr {
	TOK_ATTR_UNDEFINED = 0,
	TOK_ATTR_UNKNOWN = 1 << 0,
	TOK_ATTR_UNUSED = 1 << 1,
	TOK_ATTR_NORMAL = 1 << 2,
	TOK_ATTR_CONTROL = 1 << 3,
	TOK_ATTR_USER_DEFINED = 1 << 4,
	TOK_ATTR_BYTE = 1 << 5,
	TOK_ATTR_LSTRIP = 1 << 7, /* strip whitespace left of the token when matched in text */
	TOK_ATTR_RSTRIP = 1 << 8, /* ... and right of it */
};

/* Text -> id: open addressing over the token strings, built once at load. */
struct tok_map {
	int32_t *slot;  /* owned, [mask + 1]; -1 = empty */
	uint64_t mask;  /* capacity - 1, capacity a power of two >= 2 n_vocab */
};

/* The growable output of an encoder. */
struct tok_ids {
	int32_t *v;     /* owned, malloc() */
	size_t n, cap;
};

struct tok {
	enum tok_kind kind;
	int32_t n_vocab;
	char *text;        /* owned: every token's bytes, each NUL-terminated */
	uint32_t *off;     /* owned, [n_vocab]: start of token i in text */
	uint32_t *len;     /* owned, [n_vocab]: its length in bytes (without the NUL) */
	float *score;      /* owned, [n_vocab]: SPM merge priority (higher merges first) */
	uint16_t *attr;    /* owned, [n_vocab]: enum tok_attr bits */
	int16_t *byte_val; /* owned, [n_vocab]: value of a BYTE token <0xXX>, else -1 */
	uint32_t max_len;  /* longest token in bytes */
	struct tok_map map;

	int32_t byte_tok[256]; /* byte -> token for byte fallback (<0xXX>, else the 1-byte string, else unk; -1 none) */
	/* SPM: every pair of adjacent characters found inside some token, packed as
	 * (first << 32 | second), each character's bytes little-endian in 32 bits.
	 * Where two neighbouring characters of a text form no such pair, no merge can
	 * ever join them, so the text is cut there and each piece merged alone. */
	uint64_t *pair_set; /* owned, [pair_mask + 1]; UINT64_MAX = empty */
	uint64_t pair_mask;

	int32_t bos, eos, unk, eot, eom, pad, sep; /* -1 when absent (sep: WordPiece [SEP]) */
	bool add_bos, add_eos, add_space_prefix;
	bool ignore_merges; /* BPE: a pre-token that is a token is taken whole (llama3, tekken) */
	struct tok_bpe *bpe; /* owned, BPE only: pre-tokenizer regexes and merge ranks (tok_bpe.c) */
	char *warning;       /* owned, NULL if none: what tok_warning() reports */

	int32_t *special;  /* owned, [n_special]: CONTROL/USER_DEFINED/UNKNOWN ids, longest text first */
	int32_t n_special;
	int32_t *eog;      /* owned, [n_eog]: sorted end-of-generation ids */
	int32_t n_eog;
};

/* One code point of s[0..n) (n >= 1) decoded as llama.cpp's unicode_cpt_from_utf8
 * does: a lead byte with its continuation bytes (overlong forms and surrogates
 * accepted); an invalid sequence, or one above U+10FFFF, is U+FFFD for one byte.
 * Sets *len to the bytes consumed. */
uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *len);

/* Write cpt as UTF-8 (1 to 4 bytes, surrogates too) into out; return the length. */
size_t tok_utf8_encode(uint32_t cpt, char *out);

/* Id of the token whose text is s[0..n), or -1. */
int32_t tok_lookup(const struct tok *t, const char *s, size_t n);

/* Append one id (KB_ERR_NOMEM on failure). */
int tok_ids_push(struct tok_ids *out, int32_t id) KB_WUR;

/* SPM: build what tok_spm_encode needs beyond the vocabulary (t->pair_set). */
int tok_spm_init(struct tok *t) KB_WUR;

/* SPM: tokenize one text fragment (no special tokens inside), appending to out.
 * prefix_space prepends " " first (add_space_prefix after BOS/a special token/start). */
int tok_spm_encode(const struct tok *t, const char *text, size_t len, bool prefix_space,
		   struct tok_ids *out) KB_WUR;

/* BPE: the pre-tokenizer chosen by tokenizer.ggml.pre and the merge ranks
 * (tokenizer.ggml.merges). Runs after the vocabulary is read and before the keys
 * for special ids: it sets the defaults the pre-tokenizer implies (t->add_bos,
 * t->bos, t->ignore_merges), and t->warning for a missing or unknown name. */
int tok_bpe_init(struct tok *t, const struct gguf *g, const char *path) KB_WUR;
void tok_bpe_free(struct tok_bpe *b);

/* BPE: tokenize one text fragment (no special tokens inside), appending to out. */
int tok_bpe_encode(const struct tok *t, const char *text, size_t len, struct tok_ids *out) KB_WUR;

/* BPE: the bytes a NORMAL token stands for (its text through the byte decoder),
 * written to out as tok_decode() does; returns the length needed. */
size_t tok_bpe_decode(const struct tok *t, int32_t id, char *out, size_t cap);

/* WordPiece: tokenize one text fragment, appending to out. */
int tok_wpm_encode(const struct tok *t, const char *text, size_t len, struct tok_ids *out) KB_WUR;

#endif
