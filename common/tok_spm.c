/* tok_spm.c — SentencePiece-style BPE (tokenizer.ggml.model = "llama").
 *
 * The algorithm, as llama.cpp runs it on a fragment of text:
 *   1. prepend " " when asked (add_space_prefix), then write every ' ' as "▁" (U+2581);
 *   2. cut the bytes into UTF-8 characters, the initial symbols (a byte that does not
 *      start a complete UTF-8 sequence is a symbol of its own);
 *   3. repeatedly merge the adjacent pair whose concatenation is a vocabulary token
 *      with the highest score (ties: the leftmost pair), until no pair is a token;
 *   4. each final symbol is its token, or if it is none, one byte-fallback token
 *      <0xXX> per byte.
 * Step 3 uses a max-heap of candidate pairs, so a text of n characters costs
 * O(n log n); pairs made stale by an earlier merge are recognised by their size
 * and skipped. Symbols stay contiguous in the buffer, so a pair's text is looked
 * up in place, with no copy. Neighbouring characters that no token holds side
 * by side (a letter then "▁", a newline, ...) can never be merged, so the text
 * is cut there into pieces merged one at a time: the heap stays small and in
 * cache, and the result is the same.
 */
#include "tok_impl.h"

#include <string.h>

#include "util.h"

struct spm_sym {
	int32_t prev, next; /* neighbours in the chain, -1 at the ends */
	uint32_t off, n;    /* bytes [off, off + n) of the escaped text; n = 0 once merged away */
};

struct spm_pair {
	float score;        /* score of the token the pair would become */
	int32_t left, right;
	uint32_t size;      /* bytes of left + right when pushed (detects stale pairs) */
};

struct spm_heap {
	struct spm_pair *v; /* owned */
	size_t n, cap;
};

/* true when a should be merged before b: higher score, then leftmost. */
static bool pair_before(const struct spm_pair *a, const struct spm_pair *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct spm_heap *h, struct spm_pair p)
{
	if (kb_grow(&h->v, &h->cap, h->n, sizeof *h->v, 64))
		return KB_ERR_NOMEM;
	size_t i = h->n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!pair_before(&p, &h->v[parent]))
			break;
		h->v[i] = h->v[parent];
		i = parent;
	}
	h->v[i] = p;
	return KB_OK;
}

static struct spm_pair heap_pop(struct spm_heap *h)
{
	struct spm_pair top = h->v[0];
	struct spm_pair last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c]))
			c++;
		if (!pair_before(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

/* Length of the UTF-8 character at s[0..n): its lead byte's length when that many
 * bytes follow and all are continuation bytes; otherwise 1, so an invalid byte is a
 * symbol of its own (and falls back to its byte token). llama.cpp trusts the lead
 * byte alone, which for invalid input can swallow the next character (even a "▁");
 * on valid UTF-8 the two agree. */
static uint32_t utf8_len(const unsigned char *s, size_t n)
{
	static const uint8_t len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
	uint32_t c = s[0] >= 0xf8 ? 1 : len[s[0] >> 4];
	if (c > n)
		return 1;
	for (uint32_t i = 1; i < c; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return c;
}

/* *out (malloc()ed, *out_len bytes) = " " (if prefix_space) + text with every
 * ' ' written as "▁". */
static int spm_escape(const char *text, size_t len, bool prefix_space, char **out, size_t *out_len)
{
	size_t spaces = prefix_space;
	for (size_t i = 0; i < len; i++)
		spaces += text[i] == ' ';
	size_t n;
	if (kb_mul_size(spaces, 2, &n) || kb_add_size(n, len + prefix_space, &n) || n > UINT32_MAX - 1)
		return kb_fail(KB_ERR_ARG, "text too long to tokenize at once (%zu bytes)", len);
	char *buf = kb_malloc(n);
	if (!buf)
		return KB_ERR_NOMEM;
	char *p = buf;
	if (prefix_space) {
		memcpy(p, "\xe2\x96\x81", 3);
		p += 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(p, "\xe2\x96\x81", 3);
			p += 3;
		} else {
			*p++ = text[i];
		}
	}
	*out = buf;
	*out_len = n;
	return KB_OK;
}

/* Push the pair (left, right) when its concatenation is a token. */
static int try_pair(const struct tok *t, const char *buf, const struct spm_sym *sym,
		    int32_t left, int32_t right, struct spm_heap *h)
{
	if (left < 0 || right < 0)
		return KB_OK;
	uint32_t size = sym[left].n + sym[right].n;
	if (size > t->max_len)
		return KB_OK;
	int32_t id = tok_lookup(t, buf + sym[left].off, size);
	if (id < 0)
		return KB_OK;
	return heap_push(h, (struct spm_pair){ t->score[id], left, right, size });
}

/* Append the tokens of one final symbol: itself, or its bytes. */
static int emit_symbol(const struct tok *t, const char *s, uint32_t n, struct tok_ids *out)
{
	int32_t id = tok_lookup(t, s, n);
	if (id >= 0)
		return tok_ids_push(out, id);
	for (uint32_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)s[i];
		if (t->byte_tok[b] < 0)
			return kb_fail(KB_ERR_UNSUPPORTED,
				       "the vocabulary has no token for byte 0x%02X and no unknown token", b);
		int rc = tok_ids_push(out, t->byte_tok[b]);
		if (rc)
			return rc;
	}
	return KB_OK;
}

/* Merge the symbols of buf[0..n) (one segment) and append their tokens. sym and
 * heap are scratch space, sym with room for n symbols. */
static int spm_segment(const struct tok *t, const char *buf, uint32_t n, struct spm_sym *sym,
		       struct spm_heap *heap, struct tok_ids *out)
{
	int rc;
	heap->n = 0;

	// the initial symbols: one per UTF-8 character
	int32_t n_sym = 0;
	for (uint32_t off = 0; off < n; n_sym++) {
		uint32_t c = utf8_len((const unsigned char *)buf + off, n - off);
		sym[n_sym] = (struct spm_sym){ n_sym - 1, -1, off, c };
		if (n_sym > 0)
			sym[n_sym - 1].next = n_sym;
		off += c;
	}

	// seed the queue with every adjacent pair that is a token
	for (int32_t i = 1; i < n_sym; i++)
		if ((rc = try_pair(t, buf, sym, i - 1, i, heap)))
			return rc;

	// merge the best pair until none is left
	while (heap->n) {
		struct spm_pair p = heap_pop(heap);
		struct spm_sym *l = &sym[p.left], *r = &sym[p.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
			continue; // stale: one side was merged since
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			sym[r->next].prev = p.left;
		if ((rc = try_pair(t, buf, sym, l->prev, p.left, heap)) ||
		    (rc = try_pair(t, buf, sym, p.left, l->next, heap)))
			return rc;
	}

	for (int32_t i = n_sym ? 0 : -1; i >= 0; i = sym[i].next)
		if ((rc = emit_symbol(t, buf + sym[i].off, sym[i].n, out)))
			return rc;
	return KB_OK;
}

/* A character's bytes (1 to 4) packed little-endian; distinct characters differ. */
static uint64_t char_key(const unsigned char *s, uint32_t n)
{
	uint64_t k = 0;
	for (uint32_t i = 0; i < n; i++)
		k |= (uint64_t)s[i] << (8 * i);
	return k;
}

static uint64_t pair_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k;
}

/* Whether characters a then b occur next to each other in some token. */
static bool pair_known(const struct tok *t, uint64_t a, uint64_t b)
{
	uint64_t key = a << 32 | b;
	for (uint64_t i = pair_hash(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
		if (t->pair_set[i] == key)
			return true;
		if (t->pair_set[i] == UINT64_MAX)
			return false;
	}
}

static void pair_add(struct tok *t, uint64_t key)
{
	uint64_t i = pair_hash(key) & t->pair_mask;
	for (; t->pair_set[i] != UINT64_MAX; i = (i + 1) & t->pair_mask)
		if (t->pair_set[i] == key)
			return;
	t->pair_set[i] = key;
}

int tok_spm_init(struct tok *t)
{
	// at most one pair per byte of the vocabulary; 1/2 load at most
	uint64_t bytes = 0;
	for (int32_t i = 0; i < t->n_vocab; i++)
		bytes += t->len[i];
	uint64_t cap = 64;
	while (cap < 2 * bytes)
		cap *= 2;
	t->pair_set = kb_malloc(cap * sizeof *t->pair_set);
	if (!t->pair_set)
		return KB_ERR_NOMEM;
	memset(t->pair_set, 0xff, cap * sizeof *t->pair_set);
	t->pair_mask = cap - 1;
	for (int32_t i = 0; i < t->n_vocab; i++) {
		const unsigned char *s = (const unsigned char *)t->text + t->off[i];
		uint32_t n = t->len[i], c0 = 0;
		for (uint32_t off = 0; off < n;) {
			uint32_t c = utf8_len(s + off, n - off);
			if (off > 0)
				pair_add(t, char_key(s + off - c0, c0) << 32 | char_key(s + off, c));
			c0 = c;
			off += c;
		}
	}
	return KB_OK;
}

/* The text is cut between neighbouring characters that no token has side by side
 * (see pair_set): no merge can cross such a cut, so merging each piece on its
 * own gives the same tokens as merging the whole, with small heaps. */
int tok_spm_encode(const struct tok *t, const char *text, size_t len, bool prefix_space,
		   struct tok_ids *out)
{
	size_t n = 0;
	char *buf = NULL;
	int rc = spm_escape(text, len, prefix_space, &buf, &n);
	if (rc)
		return rc;
	struct spm_heap heap = { 0 };
	struct spm_sym *sym = NULL; // room for the longest piece so far
	size_t sym_cap = 0;
	const unsigned char *u = (const unsigned char *)buf;
	size_t start = 0;
	uint64_t prev = 0;
	for (size_t off = 0; off <= n && rc == KB_OK;) {
		uint32_t c = off < n ? utf8_len(u + off, n - off) : 0;
		uint64_t cur = off < n ? char_key(u + off, c) : 0;
		if (off > start && (off == n || !pair_known(t, prev, cur))) {
			// buf[start, off) is a piece no merge can leave
			if (off - start > sym_cap) {
				struct spm_sym *s = kb_realloc_array(sym, off - start, sizeof *sym);
				if (!s) {
					rc = KB_ERR_NOMEM;
					break;
				}
				sym = s;
				sym_cap = off - start;
			}
			rc = spm_segment(t, buf + start, (uint32_t)(off - start), sym, &heap, out);
			start = off;
		}
		if (off == n)
			break;
		prev = cur;
		off += c;
	}
	free(heap.v);
	free(sym);
	free(buf);
	return rc;
}
