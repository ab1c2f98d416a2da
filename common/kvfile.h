/* kvfile.h — between the in-memory KV cache (model.h) and .kvc streams (kvc.h).
 *
 * A saved cache holds a run of slots of a struct kv_cache: their token ids and
 * positions, K (rotated) and V of every layer, and optionally the logits after
 * the last of them, so generation can go on without recomputing anything.
 */
#ifndef KB_KVFILE_H
#define KB_KVFILE_H

#include "kvc.h"
#include "model.h"

/* Describe slots [slot0, slot0 + n) of kv, made by m, in *h (kvc_header_init
 * defaults, then model fingerprints, shape, RoPE, tokens and positions pointing
 * into kv). logits: [n_vocab] or NULL. dtype: enum kvc_dtype. tool/argc/argv:
 * provenance: the option names from kvc_option_names, never a raw argv
 * (argv may be NULL). Nothing is allocated. */
void kvfile_header(struct kvc_header *h, const struct model *m, const struct kv_cache *kv, int slot0,
		   int n, const float *logits, int dtype, const char *tool, int argc, char **argv);

/* Write the cache h describes (slots from h->... as made by kvfile_header with
 * slot0) to fd as one .kvc cache. KB_OK or an error. */
int kvfile_write_fd(int fd, const struct kvc_header *h, const struct kv_cache *kv, int slot0) KB_WUR;

/* Write it atomically to path ("-" = stdout, refusing a terminal). */
int kvfile_write_path(const char *path, const struct kvc_header *h, const struct kv_cache *kv,
		      int slot0) KB_WUR;

/* Read the cache whose header r just returned (h) into kv at slots kv->n.. after
 * checking it was made by m (fingerprints and shape; m NULL: the shape of kv
 * only): its layers, token ids and
 * positions. kv->n grows by kvfile_slots(h). A token-evicted (sparse) cache
 * gives kv per-head positions (struct kv_cache .hpos); each of its heads must
 * keep the last token. KB_OK; KB_ERR_MISMATCH for another model; KB_ERR_ARG
 * when kv has no room; or the reader's error. */
/* The slots kvfile_read takes for the cache: n_tokens, or for a sparse cache
 * the rows of its largest layer. */
int kvfile_slots(const struct kvc_header *h);
int kvfile_read(struct kvc_reader *r, const struct kvc_header *h, const struct model *m,
		struct kv_cache *kv) KB_WUR;

#endif
