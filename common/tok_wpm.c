/* tok_wpm.c — WordPiece (tokenizer.ggml.model = "bert").
 *
 * The algorithm, as llama.cpp runs it on a fragment of text:
 *   1. read the text as code points (an invalid byte is U+FFFD) and replace each by
 *      the first code point of its canonical decomposition (NFD): accents go, "é"
 *      becomes "e";
 *   2. cut words: whitespace ends a word and is dropped; NUL, U+FFFD and control
 *      characters (Cc Cf Co Cs) are dropped; a punctuation character (P*), an ASCII
 *      symbol ($+<=>^`|~) or a CJK ideograph is a word of its own; anything else is
 *      lowercased and added to the current word;
 *   3. each word, written "▁word" (llama.cpp's converted vocabularies store a
 *      word-initial piece as "▁piece" and a continuation "##piece" as "piece"), is
 *      cut greedily, longest token first, from left to right; a word that cannot be
 *      cut completely is one [UNK].
 * The Unicode facts come from the tables in tok_unicode.c.
 */
#include "tok_impl.h"

#include <string.h>

#include "tok_unicode.h"
#include "util.h"

static bool is_whitespace(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
	       c == 0x3000;
}

static enum tok_uc_class uc_class(uint32_t c)
{
	if (c >= 0x110000)
		return TOK_UC_UNDEFINED;
	// the last run starting at or before c
	uint32_t lo = 0, hi = tok_uc_n_class;
	while (hi - lo > 1) {
		uint32_t mid = (lo + hi) / 2;
		if (tok_uc_class_start[mid] <= c)
			lo = mid;
		else
			hi = mid;
	}
	return (enum tok_uc_class)tok_uc_class_val[lo];
}

static uint32_t uc_lower(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	uint32_t lo = 0, hi = tok_uc_n_lower;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (tok_uc_lower[mid][0] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < tok_uc_n_lower && tok_uc_lower[lo][0] == c ? tok_uc_lower[lo][1] : c;
}

static uint32_t uc_nfd_first(uint32_t c)
{
	if (c < 0xc0)
		return c;
	uint32_t lo = 0, hi = tok_uc_n_nfd;
	while (lo < hi) { // first run whose last >= c
		uint32_t mid = (lo + hi) / 2;
		if (tok_uc_nfd[mid][1] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < tok_uc_n_nfd && tok_uc_nfd[lo][0] <= c ? tok_uc_nfd[lo][2] : c;
}

/* The CJK ideograph blocks that BERT splits into single characters (as llama.cpp
 * and HF tokenizers list them, the latter's 0x2B920 start included). */
static bool is_chinese(uint32_t c)
{
	return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
	       (c >= 0x2a700 && c <= 0x2b73f) || (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
	       (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* Cut "▁" + word (w[0..n), the "▁" included) into tokens, or one [UNK]. */
static int wpm_word(const struct tok *t, const char *w, size_t n, struct tok_ids *out)
{
	size_t mark = out->n;
	int rc;
	for (size_t i = 0; i < n;) {
		// the longest token starting at byte i
		size_t end = n - i > (size_t)t->max_len ? i + t->max_len : n;
		int32_t id = -1;
		while (end > i && (id = tok_lookup(t, w + i, end - i)) < 0)
			end--;
		if (id < 0) {
			out->n = mark; // the word cannot be cut: drop what was found
			break;
		}
		if ((rc = tok_ids_push(out, id)))
			return rc;
		i = end;
	}
	if (out->n == mark && t->unk >= 0)
		return tok_ids_push(out, t->unk);
	return KB_OK;
}

int tok_wpm_encode(const struct tok *t, const char *text, size_t len, struct tok_ids *out)
{
	const unsigned char *u = (const unsigned char *)text;
	// a word is at most 4 bytes per input byte after "▁" (NFD and lowercase keep one
	// code point per code point, each of 4 bytes at most)
	size_t cap;
	if (kb_mul_size(len, 4, &cap) || kb_add_size(cap, 4, &cap))
		return kb_fail(KB_ERR_ARG, "text too long to tokenize at once (%zu bytes)", len);
	char *w = kb_malloc(cap);
	if (!w)
		return KB_ERR_NOMEM;
	memcpy(w, "\xe2\x96\x81", 3);
	size_t wn = 3; // bytes of the current word, "▁" included
	int rc = KB_OK;
	for (size_t i = 0; i < len && rc == KB_OK;) {
		size_t n;
		uint32_t c = uc_nfd_first(tok_utf8_decode(u + i, len - i, &n));
		i += n;
		if (is_whitespace(c)) {
			if (wn > 3)
				rc = wpm_word(t, w, wn, out);
			wn = 3;
			continue;
		}
		enum tok_uc_class k = uc_class(c);
		if (c == 0 || c == 0xfffd || k == TOK_UC_CONTROL)
			continue;
		uint32_t lc = uc_lower(c);
		if (k == TOK_UC_PUNCT || (c < 0x7f && k == TOK_UC_SYMBOL) || is_chinese(c)) {
			if (wn > 3 && (rc = wpm_word(t, w, wn, out)))
				break;
			wn = 3 + tok_utf8_encode(lc, w + 3);
			rc = wpm_word(t, w, wn, out);
			wn = 3;
		} else {
			wn += tok_utf8_encode(lc, w + wn);
		}
	}
	if (rc == KB_OK && wn > 3)
		rc = wpm_word(t, w, wn, out);
	free(w);
	return rc;
}
