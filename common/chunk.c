/* chunk.c — see chunk.h.
 *
 * One document goes through:
 *   clean     invalid UTF-8 sequences become U+FFFD in a copy (only when there
 *             are any), with anchors to map offsets back to the original bytes;
 *   cut       split_span(level, [a, b)): the cuts of the level (PCRE2, JIT),
 *             every piece measured (in parallel), pieces grouped greedily by
 *             the sum of their tokens, groups of several pieces measured
 *             exactly (in parallel) and regrouped in the rare case the sum
 *             was too low; a piece over the budget recurses one level finer;
 *   tokens    the last level: the span's tokens mapped back to bytes by
 *             decoding them (exact for SentencePiece and byte-level BPE), cut
 *             every max_tokens tokens at the character boundary at or before;
 *             where decoding does not give the text back (WordPiece lowercases)
 *             the longest prefix within the budget is searched for instead;
 *   small     chunks below min_tokens merge with a neighbour.
 * The ppl level is the sentence level thinned out: the document is tokenized
 * once, each token goes to the sentence that holds its last byte (so a word's
 * leading space, which BPE and SentencePiece glue to it, does not move it to
 * the sentence before), the model scores every token (ppl.h), and only the
 * sentence ends where the perplexity dips are kept.
 * Each byte is tokenized a bounded number of times per level, so the whole is
 * linear in the document (no quadratic merging).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "chunk.h"

#include <math.h>
#include <pcre2.h>
#include <stdint.h>
#include <string.h>

#include "metrics.h"
#include "ppl.h"

enum level { L_PPL, L_HEADING, L_REGEX, L_PARAGRAPH, L_SENTENCE, L_LINE, L_WORD, L_TOKEN, L_COUNT };

/* The levels each mode goes through, coarsest first; each ends with L_TOKEN. */
static const enum level mode_levels[][L_COUNT] = {
	[CHUNK_BY_PARAGRAPH] = { L_PARAGRAPH, L_SENTENCE, L_LINE, L_WORD, L_TOKEN },
	[CHUNK_BY_SENTENCE] = { L_SENTENCE, L_LINE, L_WORD, L_TOKEN },
	[CHUNK_BY_HEADING] = { L_HEADING, L_PARAGRAPH, L_SENTENCE, L_LINE, L_WORD, L_TOKEN },
	[CHUNK_BY_REGEX] = { L_REGEX, L_PARAGRAPH, L_SENTENCE, L_LINE, L_WORD, L_TOKEN },
	[CHUNK_BY_WINDOW] = { L_TOKEN },
	[CHUNK_BY_PPL] = { L_PPL, L_SENTENCE, L_LINE, L_WORD, L_TOKEN },
};

/* Runs of blank lines after a line end (a blank line holds horizontal space at most). */
#define RE_BLANK "\\R(?:[\\h\\f\\x0b]*+\\R)++"

static const char *const level_re[L_COUNT] = {
	// group 1: a code fence, inside which # lines are not headings
	[L_HEADING] = "^ {0,3}+(?:#{1,6}(?=[ \\t]|$)|(`{3,}+|~{3,}+))",
	[L_PARAGRAPH] = RE_BLANK,
	// group 1: the end punctuation (the lookbehind starts a match only at the
	// first of a run, so runs of "!!!" stay linear); then closing quotes or
	// brackets, white space and no lowercase letter next. CJK full stops need
	// no space. Paragraph breaks end sentences too.
	[L_SENTENCE] = "((?<![.!?])[.!?]++)[\"'\\x{201D}\\x{2019}\\x{BB})\\]]*+\\s++(?!\\p{Ll})"
		       "|[\\x{3002}\\x{FF01}\\x{FF1F}]++[\"'\\x{201D}\\x{2019}\\x{300D}\\x{300F}\\x{FF09})\\]]*+\\s*+"
		       "|" RE_BLANK,
	[L_LINE] = "\\R",
	[L_WORD] = "\\s++",
};

/* Words that a period follows without ending the sentence (case matters). */
static const char *const abbrevs[] = {
	"Mr", "Mrs", "Ms", "Messrs", "Mme", "Mlle", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Rev",
	"Hon", "Gen", "Col", "Capt", "Lt", "Sgt", "Gov", "Sen", "Fig", "Figs", "No", "Nos", "Vol",
	"Vols", "Ch", "Sec", "Inc", "Ltd", "Co", "Corp", "Dept", "Univ", "Ave", "Blvd", "Rd",
	"Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
	"e.g", "E.g", "i.e", "I.e", "cf", "Cf", "vs", "viz", "al", "approx", "ca", "pp", "a.m",
	"p.m", "U.S", "U.K", "Ph.D",
};

/* A piece longer than this many bytes per budget token is over the budget
 * without measuring it (no tokenizer packs 64 bytes of text into a token on
 * average): a huge line or word is not tokenized whole at every level. Less
 * when the vocabulary's longest token is shorter (see chunker_init). */
#define MAX_BYTES_PER_TOKEN 64

struct anchor {
	size_t clean, orig; /* the same place in the clean text and in the document */
};

struct sizes {
	size_t *v, n, cap;
};

struct chunker {
	struct chunk_opts o;
	const enum level *levels;
	size_t token_bytes;           /* no token stands for more bytes (as a rule: see above) */
	pcre2_code *re[L_COUNT];      /* owned; NULL where a level has no regex */
	pcre2_match_data *md;         /* owned */
	pcre2_match_context *mctx;    /* owned */
	pcre2_jit_stack *jit_stack;   /* owned */
	struct ppl *ppl;              /* owned; ppl mode only */
	double *seen_ppl, *seen_dip;  /* owned: every sentence's perplexity, every dip's depth */
	size_t n_seen_ppl, n_seen_dip, cap_seen_ppl, cap_seen_dip, n_cuts;
	/* the current document */
	const char *text;             /* the clean text: the document, or clean */
	size_t len;
	char *clean;                  /* owned, malloc(): the document with U+FFFD, when needed */
	size_t clean_cap;
	struct anchor *anch;          /* owned: after each replacement, ascending */
	size_t n_anch, cap_anch;
	struct chunk *v;              /* owned: the chunks */
	size_t n, cap;
};

/* ---- small helpers ---- */

static int sizes_push(struct sizes *s, size_t x)
{
	if (kb_grow(&s->v, &s->cap, s->n, sizeof *s->v, 64))
		return KB_ERR_NOMEM;
	s->v[s->n++] = x;
	return KB_OK;
}

static bool is_space(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool has_content(const char *s, size_t a, size_t b)
{
	for (size_t i = a; i < b; i++)
		if (!is_space((unsigned char)s[i]))
			return true;
	return false;
}

/* The start of the character holding byte p of the clean text. */
static size_t char_floor(const struct chunker *c, size_t p)
{
	while (p > 0 && p < c->len && ((unsigned char)c->text[p] & 0xC0) == 0x80)
		p--;
	return p;
}

/* The end of the character that starts at p. */
static size_t char_next(const struct chunker *c, size_t p)
{
	p++;
	while (p < c->len && ((unsigned char)c->text[p] & 0xC0) == 0x80)
		p++;
	return p;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 when it is
 * invalid; then *bad is the length of its maximal invalid subpart (1-3 bytes),
 * which becomes one U+FFFD. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	*bad = 1;
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		need = 1;
	} else if (c < 0xF0) {
		need = 2;
		lo = c == 0xE0 ? 0xA0 : 0x80;
		hi = c == 0xED ? 0x9F : 0xBF;
	} else if (c < 0xF5) {
		need = 3;
		lo = c == 0xF0 ? 0x90 : 0x80;
		hi = c == 0xF4 ? 0x8F : 0xBF;
	} else {
		return 0;
	}
	if (n < 2 || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (i >= n || (s[i] & 0xC0) != 0x80) {
			*bad = i;
			return 0;
		}
	return need + 1;
}

/* Invalid sequences in s[0..n). */
static size_t utf8_count_invalid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t bad, k = 0;
	for (size_t i = 0; i < n;) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_seq(u + i, n - i, &bad);
		if (l) {
			i += l;
		} else {
			i += bad;
			k++;
		}
	}
	return k;
}

/* Copy s[0..n) to out (room for n + 2 * invalid bytes) with U+FFFD for each
 * invalid sequence; anchors (when a != NULL, room for one per invalid) get the
 * place after each replacement. Returns the bytes written. */
static size_t utf8_replace(const char *s, size_t n, char *out, struct anchor *a)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t bad, o = 0, k = 0;
	for (size_t i = 0; i < n;) {
		size_t l = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i, &bad);
		if (l) {
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i += bad;
			if (a)
				a[k++] = (struct anchor){ o, i };
		}
	}
	return o;
}

char *chunk_utf8_clean(const char *s, size_t n, size_t *out_len, size_t *n_invalid)
{
	size_t k = utf8_count_invalid(s, n), cap;
	if (kb_mul_size(k, 2, &cap) || kb_add_size(cap, n + 1, &cap)) {
		kb_fail(KB_ERR_NOMEM, "string too long");
		return NULL;
	}
	char *out = kb_malloc(cap);
	if (!out)
		return NULL;
	size_t len = utf8_replace(s, n, out, NULL);
	out[len] = '\0';
	if (out_len)
		*out_len = len;
	if (n_invalid)
		*n_invalid = k;
	return out;
}

/* The document offset of clean offset p (a character boundary). */
static size_t map_orig(const struct chunker *c, size_t p)
{
	size_t lo = 0, hi = c->n_anch; // the first anchor after p
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->anch[mid].clean <= p)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return p;
	return c->anch[lo - 1].orig + (p - c->anch[lo - 1].clean);
}

/* ---- names ---- */

static const char *const by_names[] = {
	[CHUNK_BY_PARAGRAPH] = "paragraph",
	[CHUNK_BY_SENTENCE] = "sentence",
	[CHUNK_BY_HEADING] = "heading",
	[CHUNK_BY_REGEX] = "regex",
	[CHUNK_BY_WINDOW] = "window",
	[CHUNK_BY_PPL] = "ppl",
};

int chunk_by_parse(const char *name, enum chunk_by *out)
{
	for (size_t i = 0; i < sizeof by_names / sizeof *by_names; i++)
		if (!strcmp(name, by_names[i])) {
			*out = (enum chunk_by)i;
			return KB_OK;
		}
	return KB_ERR_ARG;
}

const char *chunk_by_name(enum chunk_by by)
{
	return (unsigned)by < sizeof by_names / sizeof *by_names ? by_names[by] : "?";
}

/* ---- setup ---- */

static int compile(struct chunker *c, enum level lv, const char *pattern, const char *what)
{
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	if (!cc)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	pcre2_set_bsr(cc, PCRE2_BSR_ANYCRLF);
	pcre2_set_newline(cc, PCRE2_NEWLINE_ANYCRLF);
	int err;
	PCRE2_SIZE at;
	c->re[lv] = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
				  PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &at, cc);
	pcre2_compile_context_free(cc);
	if (!c->re[lv]) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		return kb_fail(KB_ERR_ARG, "%s '%s': %s at offset %zu", what, pattern, (const char *)msg,
			       (size_t)at);
	}
	(void)pcre2_jit_compile(c->re[lv], PCRE2_JIT_COMPLETE); // without JIT, pcre2_match interprets
	return KB_OK;
}

/* The most bytes a token stands for: 4 for approximate tokens; the longest
 * decoded token of a SentencePiece or BPE vocabulary, at most
 * MAX_BYTES_PER_TOKEN (a piece longer than max_tokens times this cannot fit,
 * except for unknown tokens, rare enough that such a piece is just cut finer);
 * WordPiece's [UNK] stands for whole words, so MAX_BYTES_PER_TOKEN. */
static size_t longest_token(const struct tok *t)
{
	if (!t)
		return 4;
	if (tok_kind(t) == TOK_WPM)
		return MAX_BYTES_PER_TOKEN;
	size_t most = 1;
	char buf[MAX_BYTES_PER_TOKEN];
	for (int32_t id = 0; id < tok_n_vocab(t) && most < MAX_BYTES_PER_TOKEN; id++) {
		size_t d = tok_decode(t, id, false, buf, sizeof buf);
		if (d > most)
			most = d < MAX_BYTES_PER_TOKEN ? d : MAX_BYTES_PER_TOKEN;
	}
	return most;
}

int chunker_init(struct chunker **out, const struct chunk_opts *o)
{
	*out = NULL;
	if ((unsigned)o->by > CHUNK_BY_PPL)
		return kb_fail(KB_ERR_ARG, "unknown chunking mode %d", (int)o->by);
	if (o->by == CHUNK_BY_REGEX && (!o->split || !*o->split))
		return kb_fail(KB_ERR_ARG, "no boundary regex given");
	if (o->by == CHUNK_BY_WINDOW && o->max_tokens == 0)
		return kb_fail(KB_ERR_ARG, "windows need a token budget above 0");
	if (o->by == CHUNK_BY_WINDOW && o->overlap >= o->max_tokens)
		return kb_fail(KB_ERR_ARG, "the overlap (%zu) must be less than the budget (%zu)", o->overlap,
			       o->max_tokens);
	if (o->by == CHUNK_BY_PPL && (!o->model || !o->tok))
		return kb_fail(KB_ERR_ARG, "perplexity chunking needs a model and its tokenizer");
	if (o->by == CHUNK_BY_PPL && !(o->ppl_threshold >= 0 && isfinite(o->ppl_threshold)))
		return kb_fail(KB_ERR_ARG, "the perplexity threshold (%g) must be a number >= 0", o->ppl_threshold);
	struct chunker *c = kb_calloc(1, sizeof *c);
	if (!c)
		return KB_ERR_NOMEM;
	c->o = *o;
	c->levels = mode_levels[o->by];
	c->token_bytes = longest_token(o->tok);
	int rc = KB_OK;
	if (o->by == CHUNK_BY_PPL)
		rc = ppl_init(&c->ppl, o->model,
			      &(struct ppl_opts){ o->ppl_window, o->ppl_context, o->ppl_progress, o->ppl_progress_ctx });
	for (const enum level *lv = c->levels; *lv != L_TOKEN && !rc; lv++)
		rc = *lv == L_PPL ? KB_OK // its sentences come from the next level's regex
		   : *lv == L_REGEX ? compile(c, L_REGEX, o->split, "regex")
				    : compile(c, *lv, level_re[*lv], "built-in regex");
	if (rc)
		goto fail;
	c->md = pcre2_match_data_create(8, NULL);
	c->mctx = pcre2_match_context_create(NULL);
	c->jit_stack = pcre2_jit_stack_create(32 << 10, 1 << 20, NULL);
	if (!c->md || !c->mctx || !c->jit_stack) {
		rc = kb_fail(KB_ERR_NOMEM, "out of memory");
		goto fail;
	}
	pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
	*out = c;
	return KB_OK;
fail:
	chunker_free(c);
	return rc;
}

void chunker_free(struct chunker *c)
{
	if (!c)
		return;
	for (int i = 0; i < L_COUNT; i++)
		pcre2_code_free(c->re[i]);
	pcre2_match_data_free(c->md);
	pcre2_match_context_free(c->mctx);
	pcre2_jit_stack_free(c->jit_stack);
	ppl_free(c->ppl);
	free(c->seen_ppl);
	free(c->seen_dip);
	free(c->clean);
	free(c->anch);
	free(c->v);
	free(c);
}

/* ---- measuring ---- */

/* Tokens of clean text [a, b) alone. Thread-safe. */
static int count(const struct chunker *c, size_t a, size_t b, size_t *out)
{
	if (!c->o.tok) {
		*out = (b - a) / 4 + ((b - a) % 4 != 0);
		return KB_OK;
	}
	int32_t *ids;
	size_t n;
	int rc = tok_encode(c->o.tok, c->text + a, b - a, false, false, &ids, &n);
	if (rc)
		return rc;
	free(ids);
	*out = n;
	return KB_OK;
}

/* Tokens of the pieces [bd[i], bd[i + 1]) into t[i], i < np, in parallel.
 * Pieces too long to fit get max_tokens + 1 without measuring. */
static int count_pieces(const struct chunker *c, const size_t *bd, size_t np, size_t *t)
{
	size_t max = c->o.max_tokens;
	int failed = 0;
#pragma omp parallel for schedule(dynamic, 16) if (c->o.tok && np >= 64) reduction(| : failed)
	for (long i = 0; i < (long)np; i++) {
		size_t bytes = bd[i + 1] - bd[i];
		if (max && bytes / c->token_bytes > max)
			t[i] = max + 1;
		else if (count(c, bd[i], bd[i + 1], &t[i]))
			failed = 1;
	}
	return failed ? kb_fail(KB_ERR_NOMEM, "out of memory while tokenizing") : KB_OK;
}

static int emit(struct chunker *c, size_t a, size_t b, size_t tokens)
{
	if (kb_grow(&c->v, &c->cap, c->n, sizeof *c->v, 256))
		return KB_ERR_NOMEM;
	c->v[c->n++] = (struct chunk){
		.start = map_orig(c, a), .end = map_orig(c, b), .text = c->text + a, .len = b - a, .tokens = tokens,
	};
	return KB_OK;
}

/* ---- cutting at a level ---- */

/* Whether the period that ends at clean offset p (exclusive: text[p - 1] == '.')
 * ends a sentence: not after an abbreviation, an initial or a list number. */
static bool period_ends_sentence(const struct chunker *c, size_t p)
{
	const char *t = c->text;
	size_t dot = p - 1, w = dot;
	while (w > 0 && (((t[w - 1] | 0x20) >= 'a' && (t[w - 1] | 0x20) <= 'z') || t[w - 1] == '.'))
		w--;
	size_t wl = dot - w;
	if (wl == 1 && t[w] >= 'A' && t[w] <= 'Z' && t[w] != 'I')
		return false; // an initial: J. R. R. Tolkien (not "said I.")
	for (size_t i = 0; wl && i < sizeof abbrevs / sizeof *abbrevs; i++)
		if (strlen(abbrevs[i]) == wl && !memcmp(abbrevs[i], t + w, wl))
			return false;
	if (wl == 0) { // "12." at the start of a line: a numbered list
		size_t d = dot;
		while (d > 0 && t[d - 1] >= '0' && t[d - 1] <= '9')
			d--;
		if (d == dot || dot - d > 3)
			return true;
		while (d > 0 && (t[d - 1] == ' ' || t[d - 1] == '\t'))
			d--;
		return !(d == 0 || t[d - 1] == '\n' || t[d - 1] == '\r');
	}
	return true;
}

/* The piece boundaries of clean text [a, b) at level lv into *bd: a, the cuts,
 * b. A cut that would leave a piece of white space only is not taken. */
static int ppl_cuts(struct chunker *c, size_t a, size_t b, struct sizes *bd);

static int level_cuts(struct chunker *c, enum level lv, size_t a, size_t b, struct sizes *bd)
{
	if (lv == L_PPL)
		return ppl_cuts(c, a, b, bd);
	bd->n = 0;
	int rc = sizes_push(bd, a);
	size_t last = a, scanned = a, pos = a;
	bool content = false, in_fence = false;
	char fence_ch = 0;
	size_t fence_len = 0;
	while (!rc && pos < b) {
		int m = pcre2_match(c->re[lv], (PCRE2_SPTR)c->text, b, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
		if (m == PCRE2_ERROR_NOMATCH)
			break;
		if (m < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(m, msg, sizeof msg);
			return kb_fail(KB_ERR_ARG, "%s regex: %s", lv == L_REGEX ? "the boundary" : "a built-in",
				       (const char *)msg);
		}
		const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
		size_t ms = ov[0], me = ov[1], cut = me;
		if (me < ms) // \K in a lookahead: take the end
			ms = me;
		pos = me > ms ? me : ms < b ? char_next(c, ms) : b;
		bool group1 = m >= 2 && ov[2] != PCRE2_UNSET;
		if (lv == L_HEADING) {
			if (group1) {
				char ch = c->text[ov[2]];
				size_t fl = ov[3] - ov[2];
				if (!in_fence) {
					in_fence = true;
					fence_ch = ch;
					fence_len = fl;
				} else if (ch == fence_ch && fl >= fence_len) {
					in_fence = false;
				}
				continue;
			}
			if (in_fence)
				continue;
			cut = ms;
		} else if (lv == L_SENTENCE && group1 && ov[3] - ov[2] == 1 && c->text[ov[2]] == '.' &&
			   !period_ends_sentence(c, ov[3])) {
			continue;
		}
		if (cut <= last || cut >= b)
			continue;
		if (!content && scanned < cut)
			content = has_content(c->text, scanned, cut);
		if (scanned < cut)
			scanned = cut;
		if (!content)
			continue;
		rc = sizes_push(bd, cut);
		last = cut;
		content = false;
	}
	if (rc)
		return rc;
	// trailing white space joins the last piece
	if (bd->n > 1 && !content && !has_content(c->text, scanned > last ? scanned : last, b))
		bd->n--;
	return sizes_push(bd, b);
}

/* ---- the ppl level ---- */

static int token_map(const struct chunker *c, size_t a, size_t b, size_t **offs, size_t *n, int32_t **ids_out);

/* ends[i] = the tokens of sentences 0..i, token k belonging to the sentence
 * [bd[i], bd[i + 1]) that holds its last byte (a zero-width token: its first). */
static void sentence_token_ends(const size_t *bd, size_t ns, const size_t *offs, size_t nt, size_t b,
				size_t *ends)
{
	size_t si = 0;
	for (size_t k = 0; k < nt; k++) {
		size_t end = k + 1 < nt ? offs[k + 1] : b, last = end > offs[k] ? end - 1 : offs[k];
		while (si + 1 < ns && last >= bd[si + 1])
			ends[si++] = k;
	}
	while (si < ns)
		ends[si++] = nt;
}

static int push_double(double **v, size_t *n, size_t *cap, double x)
{
	if (kb_grow(v, cap, *n, sizeof **v, 256))
		return KB_ERR_NOMEM;
	(*v)[(*n)++] = x;
	return KB_OK;
}

/* Keep the ns sentence perplexities and their dips' depths for chunker_ppl_stats. */
static int ppl_remember(struct chunker *c, const double *pp, size_t ns)
{
	int rc = KB_OK;
	for (size_t i = 0; i < ns && !rc; i++) {
		double d = ppl_dip(pp, ns, i);
		if (!isnan(pp[i]))
			rc = push_double(&c->seen_ppl, &c->n_seen_ppl, &c->cap_seen_ppl, pp[i]);
		if (!rc && d > 0)
			rc = push_double(&c->seen_dip, &c->n_seen_dip, &c->cap_seen_dip, d);
	}
	return rc;
}

const double chunk_ppl_q[CHUNK_PPL_NQ] = { 0.1, 0.25, 0.5, 0.75, 0.9 };

void chunker_ppl_stats(const struct chunker *c, struct chunk_ppl_stats *out)
{
	memset(out, 0, sizeof *out);
	out->n_sentences = c->n_seen_ppl;
	out->n_dips = c->n_seen_dip;
	out->n_cuts = c->n_cuts;
	for (int k = 0; k < CHUNK_PPL_NQ; k++) {
		out->ppl[k] = metrics_quantile(c->seen_ppl, (int)c->n_seen_ppl, chunk_ppl_q[k]);
		out->dip[k] = metrics_quantile(c->seen_dip, (int)c->n_seen_dip, chunk_ppl_q[k]);
	}
}

/* The pieces of clean text [a, b) at the ppl level into *bd: its sentences,
 * scored by the model, cut only after the dips (ppl_minima). */
static int ppl_cuts(struct chunker *c, size_t a, size_t b, struct sizes *bd)
{
	int rc = level_cuts(c, L_SENTENCE, a, b, bd);
	size_t ns = bd->n - 1, nt = 0, *offs = NULL, *ends = NULL;
	if (rc || ns < 3) { // no sentence has two neighbours: one piece
		if (!rc) {
			bd->v[1] = b;
			bd->n = 2;
		}
		return rc;
	}
	int32_t *ids = NULL;
	float *lp = NULL;
	double *pp = NULL;
	bool *cut = NULL;
	rc = token_map(c, a, b, &offs, &nt, &ids);
	if (rc == KB_EOF)
		rc = kb_fail(KB_ERR_UNSUPPORTED, "the model's tokens do not decode to the text: sentences cannot be scored");
	if (rc)
		goto out;
	ends = kb_malloc(ns * sizeof *ends);
	lp = kb_malloc((nt ? nt : 1) * sizeof *lp);
	pp = kb_malloc(ns * sizeof *pp);
	cut = kb_malloc(ns * sizeof *cut);
	if (!ends || !lp || !pp || !cut) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	sentence_token_ends(bd->v, ns, offs, nt, b, ends);
	if ((rc = ppl_logprobs(c->ppl, ids, nt, lp)))
		goto out;
	ppl_spans(lp, ends, ns, pp);
	c->n_cuts += ppl_minima(pp, ns, c->o.ppl_threshold, cut);
	if ((rc = ppl_remember(c, pp, ns)))
		goto out;
	size_t w = 1;
	for (size_t i = 0; i + 1 < ns; i++)
		if (cut[i])
			bd->v[w++] = bd->v[i + 1];
	bd->v[w++] = b;
	bd->n = w;
out:
	free(ids);
	free(offs);
	free(ends);
	free(lp);
	free(pp);
	free(cut);
	return rc;
}

/* ---- cutting at tokens ---- */

/* The byte offsets of the tokens of clean text [a, b): (*offs)[k] is where
 * token k starts (malloc()ed, *n of them); their ids in *ids_out (malloc()ed;
 * NULL without a tokenizer) unless ids_out is NULL. KB_EOF (no message) when
 * decoding the tokens does not give the text back, so tokens cannot be placed. */
static int token_map(const struct chunker *c, size_t a, size_t b, size_t **offs, size_t *n, int32_t **ids_out)
{
	*offs = NULL;
	*n = 0;
	if (ids_out)
		*ids_out = NULL;
	if (!c->o.tok) {
		size_t k = (b - a + 3) / 4;
		size_t *o = kb_malloc(k * sizeof *o);
		if (!o)
			return KB_ERR_NOMEM;
		for (size_t i = 0; i < k; i++)
			o[i] = a + 4 * i;
		*offs = o;
		*n = k;
		return KB_OK;
	}
	int32_t *ids;
	size_t k, cap = b - a + 64, used = 0;
	int rc = tok_encode(c->o.tok, c->text + a, b - a, false, false, &ids, &k);
	if (rc)
		return rc;
	size_t *o = kb_malloc((k ? k : 1) * sizeof *o);
	char *buf = kb_malloc(cap);
	if (!o || !buf) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		o[i] = used;
		size_t d = tok_decode(c->o.tok, ids[i], false, buf + used, cap - used);
		if (d > cap - used) { // room for it, then decode again
			if (kb_add_size(cap, d, &cap) || kb_mul_size(cap, 2, &cap)) {
				rc = kb_fail(KB_ERR_NOMEM, "out of memory");
				goto out;
			}
			char *nb = realloc(buf, cap);
			if (!nb) {
				rc = kb_fail(KB_ERR_NOMEM, "out of memory");
				goto out;
			}
			buf = nb;
			d = tok_decode(c->o.tok, ids[i], false, buf + used, cap - used);
		}
		used += d;
	}
	// The decoded text is the text, or (SentencePiece's space prefix) a space and the text.
	size_t skip;
	if (used == b - a && !memcmp(buf, c->text + a, used))
		skip = 0;
	else if (used == b - a + 1 && buf[0] == ' ' && !memcmp(buf + 1, c->text + a, b - a))
		skip = 1;
	else {
		rc = KB_EOF;
		goto out;
	}
	for (size_t i = 0; i < k; i++)
		o[i] = a + (o[i] > skip ? o[i] - skip : 0);
	*offs = o;
	*n = k;
	o = NULL;
	if (ids_out) {
		*ids_out = ids;
		ids = NULL;
	}
out:
	free(o);
	free(buf);
	free(ids);
	return rc;
}

/* The longest prefix [s, e) of clean text [s, hi) within the budget, found by
 * measuring prefixes (exponential, then binary search over character
 * boundaries); at least one character. *tk gets its tokens. */
static int fit_search(const struct chunker *c, size_t s, size_t hi, size_t *e_out, size_t *tk)
{
	size_t max = c->o.max_tokens, good = char_next(c, s), bad, t;
	int rc = count(c, s, good, tk);
	if (rc || *tk > max || good >= hi) {
		*e_out = good;
		return rc;
	}
	size_t step = max < SIZE_MAX / 16 ? 4 * max + 4 : SIZE_MAX;
	for (;;) { // exponential: the first prefix over the budget
		size_t probe = step < hi - s ? char_floor(c, s + step) : hi;
		step = step < SIZE_MAX / 2 ? 2 * step : SIZE_MAX;
		if (probe <= good)
			continue;
		if ((rc = count(c, s, probe, &t)))
			return rc;
		if (t > max) {
			bad = probe;
			break;
		}
		good = probe;
		*tk = t;
		if (probe == hi) {
			*e_out = hi;
			return KB_OK;
		}
	}
	for (;;) { // binary: good fits, bad does not
		size_t mid = char_floor(c, good + (bad - good) / 2);
		if (mid <= good)
			mid = char_next(c, good);
		if (mid >= bad)
			break;
		if ((rc = count(c, s, mid, &t)))
			return rc;
		if (t <= max) {
			good = mid;
			*tk = t;
		} else {
			bad = mid;
		}
	}
	*e_out = good;
	return KB_OK;
}

/* The chunk that starts at s (tokens from index i on; offs as token_map gives
 * them for a span ending at b): up to max_tokens tokens ending at a character
 * boundary, shrunk until it measures within the budget alone. */
static int fit_tokens(const struct chunker *c, const size_t *offs, size_t n, size_t i, size_t s, size_t b,
		      size_t *e_out, size_t *tk)
{
	size_t max = c->o.max_tokens, one = char_next(c, s);
	size_t j = n - i > max ? i + max : n;
	for (;;) {
		size_t e = j >= n ? b : char_floor(c, offs[j]);
		if (e <= s)
			e = one;
		int rc = count(c, s, e, tk);
		if (rc)
			return rc;
		*e_out = e;
		if (*tk <= max || e <= one)
			return KB_OK; // fits, or a single character over the budget
		size_t over = *tk - max;
		if (j > i + 1)
			j = j - i > over ? j - over : i + 1;
		else // a part of a token that re-tokenizes longer alone: search bytes
			return fit_search(c, s, e, e_out, tk);
	}
}

/* Cut clean text [a, b), over the budget, at tokens. */
static int split_tokens(struct chunker *c, size_t a, size_t b)
{
	size_t *offs, n, i = 0, s = a, e, tk;
	int rc = token_map(c, a, b, &offs, &n, NULL);
	if (rc == KB_EOF) {
		for (rc = KB_OK; s < b; s = e)
			if ((rc = fit_search(c, s, b, &e, &tk)) || (rc = emit(c, s, e, tk)))
				break;
		return rc;
	}
	while (s < b) {
		if ((rc = fit_tokens(c, offs, n, i, s, b, &e, &tk)) || (rc = emit(c, s, e, tk)))
			break;
		s = e;
		while (i < n && offs[i] < e)
			i++;
	}
	free(offs);
	return rc;
}

/* ---- cutting under the budget ---- */

struct group {
	size_t p0, p1;  /* pieces [p0, p1) */
	size_t tokens;  /* the sum of the pieces', then the exact count */
	bool big;       /* one piece over the budget */
};

/* Group pieces [p0, p1) again measuring every prefix (the sum of the pieces
 * was below the budget but the text is not). */
static int regroup(struct chunker *c, const size_t *bd, const size_t *t, size_t p0, size_t p1)
{
	int rc = KB_OK;
	for (size_t k = p0; k < p1 && !rc;) {
		size_t j = k + 1, tk = t[k], t2;
		for (; j < p1; j++) {
			if ((rc = count(c, bd[k], bd[j + 1], &t2)))
				return rc;
			if (t2 > c->o.max_tokens)
				break;
			tk = t2;
		}
		rc = emit(c, bd[k], bd[j], tk);
		k = j;
	}
	return rc;
}

static int split_span(struct chunker *c, const enum level *lv, size_t a, size_t b);

/* Emit the groups in order; pieces over the budget recurse a level finer. */
static int emit_groups(struct chunker *c, const enum level *lv, const size_t *bd, const size_t *t,
		       struct group *g, size_t ng)
{
	size_t max = c->o.max_tokens;
	int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) if (c->o.tok && ng >= 16) reduction(| : failed)
	for (long k = 0; k < (long)ng; k++)
		if (!g[k].big && g[k].p1 - g[k].p0 > 1 && count(c, bd[g[k].p0], bd[g[k].p1], &g[k].tokens))
			failed = 1;
	if (failed)
		return kb_fail(KB_ERR_NOMEM, "out of memory while tokenizing");
	int rc = KB_OK;
	for (size_t k = 0; k < ng && !rc; k++) {
		size_t x = bd[g[k].p0], y = bd[g[k].p1];
		if (g[k].big)
			rc = split_span(c, lv + 1, x, y);
		else if (g[k].tokens <= max)
			rc = emit(c, x, y, g[k].tokens);
		else
			rc = regroup(c, bd, t, g[k].p0, g[k].p1);
	}
	return rc;
}

/* Chunks for clean text [a, b) from level *lv down. */
static int split_span(struct chunker *c, const enum level *lv, size_t a, size_t b)
{
	if (*lv == L_TOKEN)
		return split_tokens(c, a, b);
	struct sizes bd = { 0 };
	size_t *t = NULL, max = c->o.max_tokens, ng = 0;
	struct group *g = NULL;
	int rc = level_cuts(c, *lv, a, b, &bd);
	if (rc)
		goto out;
	size_t np = bd.n - 1;
	t = kb_malloc(np * sizeof *t);
	g = kb_malloc(np * sizeof *g);
	if (!t || !g) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	if ((rc = count_pieces(c, bd.v, np, t)))
		goto out;
	if (max == 0) { // no budget: the pieces as they are
		for (size_t i = 0; i < np && !rc; i++)
			rc = emit(c, bd.v[i], bd.v[i + 1], t[i]);
		goto out;
	}
	bool hard = *lv == L_HEADING; // sections are not merged
	for (size_t i = 0; i < np; i++) {
		struct group *last = ng ? &g[ng - 1] : NULL;
		if (t[i] <= max && last && !last->big && !hard && t[i] <= max - last->tokens) {
			last->p1 = i + 1;
			last->tokens += t[i];
		} else {
			g[ng++] = (struct group){ i, i + 1, t[i], t[i] > max };
		}
	}
	rc = emit_groups(c, lv, bd.v, t, g, ng);
out:
	free(bd.v);
	free(t);
	free(g);
	return rc;
}

/* ---- windows ---- */

/* The first place after s where the last `overlap` tokens of [s, e) begin,
 * found by measuring suffixes; e when none fits. */
static int back_search(const struct chunker *c, size_t s, size_t e, size_t *p_out)
{
	size_t lo = char_next(c, s), hi = e, t; // the answer is in [lo, hi]
	while (lo < hi) {
		size_t mid = char_floor(c, lo + (hi - lo) / 2);
		if (mid < lo)
			mid = lo;
		int rc = count(c, mid, e, &t);
		if (rc)
			return rc;
		if (t <= c->o.overlap)
			hi = mid;
		else
			lo = char_next(c, mid);
	}
	*p_out = hi < e ? hi : e;
	return KB_OK;
}

/* The index of the first token at or after byte p, from index i on. */
static size_t token_at(const size_t *offs, size_t n, size_t i, size_t p)
{
	while (i < n && offs[i] < p)
		i++;
	return i;
}

/* Windows of max_tokens tokens, each starting `overlap` tokens before the end
 * of the one before. A window that would end where the one before ended (it
 * re-tokenizes longer alone and was shortened) starts later instead, so every
 * window adds text. */
static int windows(struct chunker *c)
{
	size_t *offs, n, i = 0, s = 0, e, tk, len = c->len, ov = c->o.overlap, prev_e = 0;
	int rc = token_map(c, 0, len, &offs, &n, NULL);
	if (rc == KB_EOF) { // tokens cannot be placed: measure instead
		for (rc = KB_OK;;) {
			if ((rc = fit_search(c, s, len, &e, &tk)))
				break;
			if (c->n && e <= prev_e) { // nothing new: no overlap this time
				s = prev_e;
				continue;
			}
			if ((rc = emit(c, s, e, tk)) || e >= len)
				break;
			prev_e = e;
			if (ov && (rc = back_search(c, s, e, &s)))
				break;
			if (!ov)
				s = e;
		}
		return rc;
	}
	for (;;) {
		if ((rc = fit_tokens(c, offs, n, i, s, len, &e, &tk)))
			break;
		if (c->n && e <= prev_e) { // nothing new: start at the next token, at most at prev_e
			size_t ni = i + 1;
			while (ni < n && char_floor(c, offs[ni]) <= s)
				ni++;
			if (ni < n && char_floor(c, offs[ni]) < prev_e) {
				s = char_floor(c, offs[ni]);
				i = ni;
			} else {
				s = prev_e;
				i = token_at(offs, n, i, s);
			}
			continue;
		}
		if ((rc = emit(c, s, e, tk)) || e >= len)
			break;
		prev_e = e;
		size_t end = token_at(offs, n, i, e);
		size_t ni = end - i > ov ? end - ov : i + 1;
		while (ni < n && char_floor(c, offs[ni]) <= s)
			ni++;
		if (ov == 0 || ni >= n || char_floor(c, offs[ni]) >= e) {
			s = e;
			i = end;
		} else {
			s = char_floor(c, offs[ni]);
			i = ni;
		}
	}
	free(offs);
	return rc;
}

/* ---- small chunks ---- */

/* Merge each chunk below min_tokens with its neighbour when the two fit. */
static int merge_small(struct chunker *c)
{
	size_t min = c->o.min_tokens, w = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct chunk *p = w ? &c->v[w - 1] : NULL, *q = &c->v[i];
		if (p && (p->tokens < min || q->tokens < min)) {
			size_t x = (size_t)(p->text - c->text), y = (size_t)(q->text - c->text) + q->len, tk;
			int rc = count(c, x, y, &tk);
			if (rc)
				return rc;
			if (tk <= c->o.max_tokens) {
				p->end = q->end;
				p->len = y - x;
				p->tokens = tk;
				continue;
			}
		}
		c->v[w++] = *q;
	}
	c->n = w;
	return KB_OK;
}

/* ---- a document ---- */

/* c->text = the document, or a copy with U+FFFD for invalid sequences. */
static int clean_doc(struct chunker *c, const char *doc, size_t len, size_t *n_invalid)
{
	size_t k = utf8_count_invalid(doc, len), need;
	*n_invalid = k;
	c->n_anch = 0;
	c->text = doc;
	c->len = len;
	if (k == 0)
		return KB_OK;
	if (kb_mul_size(k, 2, &need) || kb_add_size(need, len + 1, &need))
		return kb_fail(KB_ERR_NOMEM, "document too large");
	if (need > c->clean_cap) {
		char *p = realloc(c->clean, need);
		if (!p)
			return kb_fail(KB_ERR_NOMEM, "out of memory (%zu bytes)", need);
		c->clean = p;
		c->clean_cap = need;
	}
	if (k > c->cap_anch) {
		struct anchor *a = kb_realloc_array(c->anch, k, sizeof *a);
		if (!a)
			return KB_ERR_NOMEM;
		c->anch = a;
		c->cap_anch = k;
	}
	c->len = utf8_replace(doc, len, c->clean, c->anch);
	c->clean[c->len] = '\0';
	c->n_anch = k;
	c->text = c->clean;
	return KB_OK;
}

int chunker_run(struct chunker *c, const char *doc, size_t len, const struct chunk **chunks, size_t *n,
		size_t *n_invalid)
{
	*chunks = NULL;
	*n = 0;
	c->n = 0;
	int rc = clean_doc(c, doc, len, n_invalid);
	if (rc || !has_content(c->text, 0, c->len))
		return rc;
	if (c->o.by == CHUNK_BY_WINDOW)
		rc = windows(c);
	else
		rc = split_span(c, c->levels, 0, c->len);
	if (!rc && c->o.min_tokens && c->o.max_tokens && c->o.by != CHUNK_BY_WINDOW)
		rc = merge_small(c);
	if (rc) {
		c->n = 0;
		return rc;
	}
	*chunks = c->v;
	*n = c->n;
	return KB_OK;
}
