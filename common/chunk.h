/* chunk.h — cut a document into chunks at PCRE2 boundaries under a token budget.
 *
 * A document is cut into pieces at the boundaries of a level, then pieces are
 * merged greedily, in order, while the merged text stays within max_tokens;
 * a piece over the budget is cut at the next, finer level and its parts merged
 * the same way, down to tokens:
 *
 *   ppl        the sentences (below) whose perplexity under a model dips below
 *              both neighbours' (Meta-Chunking's PPL chunking, ppl.h): the
 *              text is scored once, whole, in windows; each dip ends a piece
 *   heading    a Markdown ATX heading (# .. ######, up to 3 spaces of indent,
 *              not inside a ``` or ~~~ fence) starts a piece; sections are
 *              never merged with each other (only min_tokens merges them)
 *   regex      the end of each match of the caller's regex (a lookahead makes
 *              the match start the next piece instead)
 *   paragraph  the end of each run of blank lines
 *   sentence   after . ! ? (and closing quotes or brackets) and the white space
 *              that follows, unless a lowercase letter comes next, the word is
 *              a common abbreviation (Mr., e.g., ...), an initial (J.) or a
 *              list number at the start of a line; after 。！？; and paragraphs
 *   line       the end of each line
 *   word       the end of each run of white space
 *   token      token boundaries mapped back to bytes, never inside a UTF-8
 *              sequence
 *
 * The levels used after the first: heading -> paragraph -> sentence -> line ->
 * word -> token; regex and paragraph go on with sentence; sentence with line;
 * ppl with sentence (a group of sentences over the budget is cut between them).
 * A boundary that would leave a piece of only white space (ASCII space, tab,
 * CR, LF, FF, VT) is not taken: white space joins the following piece, and
 * trailing white space the last one.
 *
 * LF, CRLF and lone CR are all line ends. Invalid UTF-8 is allowed: each
 * maximal invalid subsequence (as Unicode's "best practice" defines it) becomes
 * U+FFFD in the chunk texts, which are therefore always valid UTF-8, while
 * start/end stay byte offsets into the document as given.
 *
 * Invariants (tested): outside window mode, the chunks of a document that holds
 * anything but white space are contiguous and cover it (the first starts at 0,
 * each starts where the previous ended, the last ends at its length); a
 * document that is empty or only white space gives no chunks. Every chunk has
 * at most max_tokens tokens, measured alone with the same tokenizer, except a
 * chunk of a single character that alone needs more.
 *
 * Tokens are counted on a chunk's text alone, without BOS, special tokens
 * written in the text counted as plain text. Without a tokenizer, a chunk of n
 * bytes counts as ceil(n / 4) approximate tokens.
 */
#ifndef KB_CHUNK_H
#define KB_CHUNK_H

#include <stdbool.h>
#include <stddef.h>

#include "tok.h"
#include "util.h"

enum chunk_by {
	CHUNK_BY_PARAGRAPH = 0,
	CHUNK_BY_SENTENCE = 1,
	CHUNK_BY_HEADING = 2,
	CHUNK_BY_REGEX = 3,
	CHUNK_BY_WINDOW = 4, /* fixed windows of max_tokens tokens, overlap tokens shared */
	CHUNK_BY_PPL = 5,    /* sentences grouped at perplexity dips (needs a model) */
};

struct model;

struct chunk_opts {
	enum chunk_by by;
	const char *split;     /* the boundary regex for CHUNK_BY_REGEX (PCRE2 syntax; UTF, UCP,
				  multi-line: ^ and $ match at line ends, CR LF, CRLF) */
	const struct tok *tok; /* the tokenizer that measures; NULL: ceil(bytes / 4) */
	size_t max_tokens;     /* the budget; 0: none, each piece of the first level is a chunk
				  as it is, neither merged nor cut (not for windows) */
	size_t min_tokens;     /* a chunk below this merges with a neighbour when the two fit
				  the budget; 0: off; ignored for windows */
	size_t overlap;        /* tokens consecutive windows share, < max_tokens (windows only) */
	/* CHUNK_BY_PPL only: */
	const struct model *model; /* scores the sentences; tok must be its tokenizer */
	double ppl_threshold;  /* how far a sentence's perplexity must dip below its neighbours'
				  to end a piece (ppl_minima); >= 0, 0 as in the paper */
	int ppl_window;        /* tokens per model pass (struct ppl_opts); 0: the default */
	int ppl_context;       /* tokens a window reads again; 0: the default */
	void (*ppl_progress)(void *ctx, uint64_t done, uint64_t total); /* NULL, or told the
				  tokens scored of each document (struct ppl_opts) */
	void *ppl_progress_ctx;
};

struct chunk {
	size_t start, end;     /* bytes [start, end) of the document as given */
	const char *text;      /* the text, valid UTF-8 (see above); into the document or the
				  chunker's clean copy, valid until the next chunker_run */
	size_t len;            /* bytes of text */
	size_t tokens;         /* tokens of text alone (approximate without a tokenizer) */
};

struct chunker; /* opaque: options, compiled regexes, buffers reused across documents */

/* Check the options and compile the regexes. Returns KB_OK and *out (free with
 * chunker_free), KB_ERR_ARG with a message for bad options or a regex that does
 * not compile ("--split: missing closing parenthesis at offset 3"), or KB_ERR_NOMEM.
 * The tokenizer must outlive the chunker. */
int chunker_init(struct chunker **out, const struct chunk_opts *o) KB_WUR;
/* chunker_free(NULL) is a no-op. */
void chunker_free(struct chunker *c);

/* Cut len bytes of doc (any bytes; NUL allowed). On KB_OK, *chunks (owned by c,
 * valid until the next call or chunker_free; doc must stay alive as long) holds
 * *n chunks in document order and *n_invalid the number of invalid UTF-8
 * sequences replaced. Errors: KB_ERR_NOMEM, KB_ERR_ARG when the regex cannot be
 * matched (match limit), with a message. */
int chunker_run(struct chunker *c, const char *doc, size_t len, const struct chunk **chunks,
		size_t *n, size_t *n_invalid) KB_WUR;

/* What the ppl mode saw in every document so far, to choose a threshold by:
 * quantiles (q = 0.1, 0.25, 0.5, 0.75, 0.9) of the sentences' perplexities and
 * of the depths of their dips (ppl_dip(): the dips are the cuts at threshold 0;
 * a threshold at the depths' q-quantile keeps about 1 - q of them). Quantiles
 * of nothing are NaN. */
#define CHUNK_PPL_NQ 5
extern const double chunk_ppl_q[CHUNK_PPL_NQ];
struct chunk_ppl_stats {
	size_t n_sentences, n_dips, n_cuts; /* n_cuts: at the chunker's threshold */
	double ppl[CHUNK_PPL_NQ], dip[CHUNK_PPL_NQ];
};
/* Zero counts outside the ppl mode. */
void chunker_ppl_stats(const struct chunker *c, struct chunk_ppl_stats *out);

/* "paragraph", "sentence", "heading", "regex", "window", "ppl" <-> enum chunk_by.
 * chunk_by_parse returns KB_OK, or KB_ERR_ARG (no message) for an unknown name. */
int chunk_by_parse(const char *name, enum chunk_by *out) KB_WUR;
const char *chunk_by_name(enum chunk_by by);

/* A malloc()ed, NUL-terminated copy of s[0..n) with each invalid UTF-8 sequence
 * replaced by U+FFFD (for names and other strings that must be valid UTF-8).
 * Returns NULL when out of memory; *out_len (may be NULL) gets the length and
 * *n_invalid (may be NULL) the replacements. */
char *chunk_utf8_clean(const char *s, size_t n, size_t *out_len, size_t *n_invalid);

#endif
