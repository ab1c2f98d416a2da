/* chunkcache.h — chunk caches by content: the KV cache of a run of tokens
 * computed alone from position 0 (as CacheBlend stores them), read from the
 * store when it is there, computed (and stored: read-through) when not.
 * The key is store_key(model fingerprint, token ids), so the same text under
 * the same model and tokenizer is computed once, whoever asks. */
#ifndef KB_CHUNKCACHE_H
#define KB_CHUNKCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kvc.h"
#include "model.h"
#include "similar.h"
#include "store.h"

struct chunkcache;

struct chunkcache_stats {
	int hits, misses;        /* lookups served from the store / computed */
	uint64_t bytes_read;     /* .kvc bytes read from the store */
	double t_load, t_compute; /* seconds reading caches / running the model for misses */
	int fetched;             /* of the hits: missing locally, fetched from the remote tier */
	uint64_t bytes_fetched;  /* .kvc bytes downloaded */
	double t_fetch;          /* seconds downloading and verifying them */
	int similar;             /* of the misses: built from a similar stored chunk (chunkcache_set_similar) */
	uint64_t tokens_similar; /* their tokens */
	uint64_t tokens_reused;  /* of those, the tokens whose K/V were the similar chunk's */
};

/* Open the store at dir (NULL: $KVBLEND_STORE, else the default). With
 * store == false nothing is read or written: every chunk is computed. dtype:
 * how new entries are stored (enum kvc_dtype); -1: the store's default
 * (store_default_dtype), else f16. */
int chunkcache_open(struct chunkcache **out, const char *dir, bool store, int dtype) KB_WUR;
void chunkcache_close(struct chunkcache *cc);
/* Provenance of the caches this process stores: the tool and its option
 * names, as kvc_option_names makes them (never a raw argv: shared stores must
 * not hold prompts or queries); kept by reference; default "kvblend", none. */
void chunkcache_set_tool(struct chunkcache *cc, const char *tool, int argc, char **argv);
/* The store in use, or NULL when nothing is stored. */
struct store *chunkcache_store(struct chunkcache *cc);
/* Where the store's troubles go that a lookup survives: a stored cache found
 * unusable (it is removed and the chunk computed instead) or a computed cache
 * that cannot be stored (it is used all the same). warn(ctx, id, message) gets
 * the part's id (chunkcache_part.id; -1 from chunkcache_load) and a one-line
 * reason; default: none. */
void chunkcache_set_warn(struct chunkcache *cc, void (*warn)(void *ctx, int id, const char *msg), void *ctx);
/* fn(ctx, done, total) hears how many of the chunks of a chunkcache_load_begin
 * are looked up or computed (misses are the slow part), from 0 of total to
 * total of total; NULL for none. */
void chunkcache_set_progress(struct chunkcache *cc, void (*fn)(void *ctx, uint64_t done, uint64_t total), void *ctx);

/* ---- the remote tier (remote.h) ----
 * With a remote, the store is a cache of it: a lookup that misses locally asks
 * the remote for KEY.kvc, reads what comes whole (every checksum, the key)
 * before it goes into the store (store_put_commit_verified), and then serves
 * it as a local hit — except in chunkcache_load_begin, which streams the
 * missing parts into the load as they arrive (up to 16 at once, each on its
 * own connection; $KVBLEND_REMOTE_STREAM=0: fetched whole first), checks each
 * layer as it is read, and stores a part only once it has arrived whole and
 * sound (a broken one makes chunkcache_load_end ask for a retry, and is then
 * computed). A cache computed here (chunkcache_load, chunkcache_put)
 * is uploaded unless the remote has it already (HEAD first). A fault never
 * fails a lookup: a missing, unreadable or corrupt remote object is a miss
 * (warned of, when not simply absent), and a remote that cannot be reached is
 * warned of once and not asked again by this chunkcache. */

/* Put the store in front of the remote url (NULL: $KVBLEND_REMOTE; NULL or
 * empty: no remote). Needs a store. KB_OK, or KB_ERR_ARG for a URL that is not
 * a remote (remote_open's message) or for a chunkcache without a store. */
int chunkcache_set_remote(struct chunkcache *cc, const char *url) KB_WUR;
/* The remote in use, or NULL (none, or given up after a fault). */
struct remote *chunkcache_remote(struct chunkcache *cc);
/* Bring key's object from the remote into the store, verified. KB_OK when it
 * is now stored; KB_EOF when it is not (no remote, absent there, or a fault:
 * warned of); counts go to st (may be NULL). */
int chunkcache_fetch(struct chunkcache *cc, const char *key, struct chunkcache_stats *st) KB_WUR;
/* Write key's stored object through to the remote unless it has it (HEAD,
 * then PUT): for caches stored before the remote was given. true when it was
 * uploaded now; a fault is warned of (and stops the uploads, or the remote). */
bool chunkcache_push(struct chunkcache *cc, const char *key);

/* Make slots [slot0, slot0 + n) of kv hold the cache of tokens[0..n) computed
 * alone at positions 0..n-1 (kv->pos and kv->tok set accordingly; kv->n is
 * left at slot0 + n): from the store on a hit, else computed with ws (its
 * n_ctx >= n) and stored (a store that fails is warned of, not an error). key_out (65 bytes) gets the store key when not NULL.
 * Counts go to st (may be NULL). */
int chunkcache_load(struct chunkcache *cc, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		    int slot0, const int32_t *tokens, int n, char *key_out, struct chunkcache_stats *st) KB_WUR;

/* Store slots [slot0, slot0 + n) of kv, computed alone from position 0 by m
 * (as chunkcache_load computes a miss), under key (store_key of m and the
 * tokens); cost: the seconds computing them took (eviction weighs it). The
 * store must be open (chunkcache_store(cc) != NULL). KB_OK or the store's
 * error. */
int chunkcache_put(struct chunkcache *cc, const struct model *m, const struct kv_cache *kv, int slot0, int n,
		   const char *key, double cost) KB_WUR;

/* chunkcache_put, recording the chunk's document and sequence number (doc NULL
 * and seq < 0 when unknown) and its parent (the key of the cache it was built
 * from; NULL: computed from scratch) with its sketch in the store's index
 * (store_sketch_put), so a later edit of the chunk finds it. A sketch that
 * cannot be recorded is warned of, not an error. */
int chunkcache_put_doc(struct chunkcache *cc, const struct model *m, const struct kv_cache *kv, int slot0, int n,
		       const char *key, double cost, const char *doc, int64_t seq, const char *parent) KB_WUR;

/* ---- reuse across edits (similar.h) ---- */

struct chunkcache_similar {
	double min_sim;      /* the least estimated similarity of a candidate (SIMILAR_MIN_DEFAULT) */
	struct blend_opts bo; /* what is recomputed: mode blend, ratio, check layer */
	/* told of each chunk built from a similar one (may be NULL): the part's id
	 * (-1 outside chunkcache_load_begin), the parent's key, the estimated
	 * similarity, whether it was found by (doc, seq), the counts */
	void (*report)(void *ctx, int id, const char *parent, double sim, bool by_doc, const struct similar_stats *s);
	void *ctx;
};
/* From now on, a miss of chunkcache_load and chunkcache_load_begin is first
 * built from a similar stored chunk (chunkcache_build_similar; the parts'
 * doc and seq are used when given), and only computed from scratch when
 * there is none. o is copied; NULL turns it off. Needs a store. */
void chunkcache_set_similar(struct chunkcache *cc, const struct chunkcache_similar *o);
/* Build the cache of tokens[0..n) (store key key) in slots [slot0, slot0 + n)
 * of kv from the stored chunk most like it (store_sketch_find with doc and seq,
 * then similar_rebuild with o), store it with its parent, and read it back as
 * stored (as a computed miss is). KB_OK (*st counts, parent and *sim set when
 * not NULL), KB_EOF when no stored chunk is similar enough (nothing done), or
 * an error. Needs a store. */
int chunkcache_build_similar(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
			     const int32_t *tokens, int n, const char *key, const char *doc, int64_t seq,
			     const struct chunkcache_similar *o, struct similar_stats *st,
			     char parent[STORE_KEY_HEX + 1], double *sim, bool *by_doc) KB_WUR;

/* ---- APE caches (blend.h's mode ape) ----
 * APE needs each chunk's cache computed after a shared prefix: the prefix's
 * tokens at positions 0 .. P-1, the chunk's at P .. P+n-1, as one causal run.
 * That is exactly the cache of the token run prefix + chunk computed from
 * position 0, so it is stored as that: its key is store_key(model, prefix +
 * chunk) and its object holds the P + n rows (the prefix's included; a user
 * of the chunk's rows skips the first P). The key names the prefix as well as
 * the chunk, so an APE cache is never taken for a chunk's cache computed alone
 * (those have no prefix before them) nor for the chunk under another prefix,
 * and the store's invariant holds unchanged (an object's key is the hash of its
 * model and the tokens its header holds): store_verify, eviction and the
 * remote tier need nothing new. chunkcache_load and chunkcache_load_begin
 * serve them like any run of tokens (a miss is computed whole, prefix and
 * chunk, from position 0); kvblend-prefill --ape warms a store with them. */

/* The token run of chunk[0..n) after prefix[0..n_prefix): a malloc()ed array
 * of n_prefix + n ids (the caller frees), or NULL (out of memory). */
int32_t *chunkcache_ape_tokens(const int32_t *prefix, int n_prefix, const int32_t *chunk, int n);
/* A cache of at least n slots for m that the caller may load runs into before
 * it copies their rows elsewhere (prompt.c loads APE caches there), kept by cc
 * between calls, so its pages are not faulted in again for every prompt.
 * Owned by cc (valid until the next call or chunkcache_close); kv->n is 0.
 * NULL when out of memory. */
struct kv_cache *chunkcache_staging(struct chunkcache *cc, const struct model *m, int n);

/* ---- pipelined loading of many chunks ----
 * chunkcache_load_begin looks every part up: a miss is computed (and stored)
 * at once; the hits' headers are read and checked, their tokens and positions
 * set in kv, and a thread starts reading their layers, layer 0 of every part
 * first, then layer 1, ... so the caller can compute layer l while later
 * layers are still being read. chunkcache_wait_layer (a blend_loader
 * wait_layer) returns once layer l of every part is in kv. chunkcache_load_end
 * waits for the thread, checks every cache's end record and frees *ld; an
 * object found broken is removed from the store, warned of, and *retry set:
 * the caller may load again (that part is then a miss). kv->n is set to the
 * end of the last part. A hit whose header is unusable, or a computed part
 * that cannot be stored, is warned of and the loading goes on. */
struct chunkcache_part {
	int slot0;             /* slots [slot0, slot0 + n) */
	const int32_t *tokens; /* [n] */
	int n;
	int id;                /* the caller's name for it, in warnings */
	const char *doc;       /* its document (reuse across edits); NULL: unknown */
	int64_t seq;           /* its number in the document (used with doc) */
};
struct chunkcache_loading;
int chunkcache_load_begin(struct chunkcache *cc, const struct model *m, struct model_ws *ws,
			  struct kv_cache *kv, const struct chunkcache_part *parts, int n_parts,
			  struct chunkcache_stats *st, struct chunkcache_loading **ld) KB_WUR;
int chunkcache_wait_layer(void *ld, int layer) KB_WUR;
/* Join the loader; KB_OK or the first error it met, *retry (may be NULL) set
 * when that error was a stored object's, now removed. Frees ld (NULL: no-op). */
int chunkcache_load_end(struct chunkcache_loading *ld, bool *retry) KB_WUR;

#endif
