/* prompt.h — the RAG prompt: prefix + chunks + query as segments of token ids,
 * and the run that turns it into one KV cache (CacheBlend or a baseline).
 *
 * A prompt is built in order. prompt_begin frames the prefix and the query with
 * a chat template (template.h) and tokenizes the head (BOS, the template's
 * opening, the prefix); prompt_add_text and prompt_add_kvc append chunks;
 * prompt_end tokenizes the tail (the query and the template's closing).
 * Segment 0 is the head, 1 .. n_segs - 2 the chunks, the last one the tail.
 * prompt_fit checks the whole against a context before any heavy work.
 *
 * prompt_run builds the prompt's cache for a blend mode: the segments that
 * blend_seg_reused() (blend.h) names take their K/V from their .kvc file or
 * from the chunk-cache store (chunkcache.h: read layer by layer while the first
 * layers run; a miss is computed and stored), then blend.h recomputes what the
 * mode says. This is the one place a prompt is assembled: kvblend-blend and the
 * bench harness both call it.
 */
#ifndef KB_PROMPT_H
#define KB_PROMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "blend.h"
#include "chunkcache.h"
#include "kvc.h"
#include "model.h"
#include "template.h"

struct prompt_seg {
	int32_t *tok;               /* owned, malloc(), [n] (NULL when n == 0) */
	int n;
	bool cacheable;             /* the head or a chunk: its K/V may come from a cache */
	char *path;                 /* owned: the .kvc file of a prompt_add_kvc chunk, else NULL */
	struct kvc_reader *reader;  /* owned: that file, its header read (NULL for the others) */
	const struct kvc_header *h; /* its header (owned by the reader) */
	char *doc;                  /* owned: the chunk record's document (reuse across edits), or NULL */
	int64_t seq;                /* its number in the document (with doc) */
};

struct prompt {
	struct prompt_seg *segs; /* owned, [n_segs]: head, chunks, tail */
	size_t n_segs, cap;
	int n_tokens;            /* the sum of segs[].n */
	char *tail;              /* owned, between prompt_begin and prompt_end: the framed query */
	struct template_spans spans; /* where the prefix and the query are in the head and the tail */
	bool special;            /* set before prompt_begin: special-token text in the prefix and
				  * query is parsed too (default: plain text, as tokenize does) */
};

/* Start p (any previous content is not freed: zero it or prompt_free it
 * first; p->special may be set): frame prefix (NULL or "" for none) and query
 * with template (a template.h name, or "auto"/NULL: template_resolve against
 * m's GGUF, silently; tools resolve it first to say what they use) and tokenize the head, special tokens
 * parsed in the template's markup (in the prefix too with p->special), with
 * the model's BOS. KB_OK, KB_ERR_ARG (unknown template), KB_ERR_NOMEM. */
int prompt_begin(struct prompt *p, const struct model *m, const char *template, const char *prefix,
		 const char *query) KB_WUR;
/* The head prompt_begin makes of template and prefix (with special: special
 * tokens in the prefix parsed too), alone: its tokens into *tok (malloc()ed,
 * the caller frees) and *n. It does not depend on the query: the shared
 * prefix of mode ape (blend.h), which kvblend-prefill --ape computes chunk
 * caches after. KB_OK or prompt_begin's error. */
int prompt_head(const struct model *m, const char *template, const char *prefix, bool special, int32_t **tok,
		int *n) KB_WUR;
/* Append a chunk: text[0..len) tokenized as plain text (no BOS, special
 * tokens not parsed), cut to its first max_tokens tokens when max_tokens > 0.
 * An empty text gives an empty segment, which takes no cache. */
int prompt_add_text(struct prompt *p, const struct model *m, const char *text, size_t len, int max_tokens) KB_WUR;
/* Append a chunk whose cache is the first one in the .kvc file at path: its
 * tokens are the cache's, the cache must be the model's (kvc_check_model).
 * KB_OK or the reader's error (the message names the file). */
int prompt_add_kvc(struct prompt *p, const struct model *m, const char *path) KB_WUR;
/* Say which document (and chunk number in it) the last chunk appended comes
 * from: a chunk cache that misses is then first looked for as the same chunk
 * of an older version (chunkcache_set_similar). KB_OK or KB_ERR_NOMEM. */
int prompt_set_doc(struct prompt *p, const char *doc, int64_t seq) KB_WUR;
/* Tokenize the tail (special tokens parsed in the markup, and in the query
 * with p->special). KB_ERR_ARG when it has no token
 * ("the query is empty"). */
int prompt_end(struct prompt *p, const struct model *m) KB_WUR;
/* Whether the prompt and n_more tokens generated after it fit a context of
 * n_ctx tokens (n_ctx <= 0: no limit). KB_OK, or KB_ERR_ARG with a message
 * naming both numbers ("the prompt has 3697 tokens, more than the context of
 * 128"). */
int prompt_fit(const struct prompt *p, int n_ctx, int n_more) KB_WUR;
/* The prompt's token ids, in order, into out[p->n_tokens]. */
void prompt_tokens(const struct prompt *p, int32_t *out);
/* Free what p owns and zero it; prompt_free of a zeroed prompt is a no-op. */
void prompt_free(struct prompt *p);

struct prompt_stats {
	struct blend_stats blend;      /* what the blend recomputed */
	struct chunkcache_stats cache; /* chunk caches from the store: hits, misses, bytes */
	int n_retries;                 /* runs redone after a stored cache proved unusable */
	double t_ttft;                 /* seconds from the call to the last token's logits */
	double t_blend;                /* of which after the misses were computed */
};

/* Build the cache of p for o->mode into kv (kv->n_ctx >= p->n_tokens; ws from
 * model_ws_init with n_ctx >= p->n_tokens) and the last token's logits
 * ([n_vocab]). Cached segments come from their file or from cc as said above;
 * the positions become 0 .. n_tokens - 1 and kv->n is n_tokens. A stored
 * cache that proves unusable while it is read (corrupt, truncated) is removed
 * from the store and the run is made again with that chunk computed, and a
 * computed cache that cannot be stored is used all the same: cc's warning
 * callback (chunkcache_set_warn) hears of each; ids are segment indices.
 * p is not const: a .kvc file is opened again for a second run.
 * KB_OK or an error (kb_error() set). */
int prompt_run(struct prompt *p, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
	       struct chunkcache *cc, const struct blend_opts *o, float *logits, struct prompt_stats *st) KB_WUR;

struct prompt_fidelity {
	int32_t tok, tok_full; /* the greedy first token of the run, and of a full prefill */
	double kl;             /* KL(full prefill || the run) of the first token (metrics_kl) */
	double t_full;         /* seconds of the full prefill */
};

/* After prompt_run: a full prefill of kv's tokens (kv is overwritten with it)
 * compared with the run's logits. KB_OK or an error. */
int prompt_verify(const struct model *m, struct model_ws *ws, struct kv_cache *kv, const float *logits,
		  struct prompt_fidelity *f) KB_WUR;

#endif
