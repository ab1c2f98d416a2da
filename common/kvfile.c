/* kvfile.c — see kvfile.h. */
#include "kvfile.h"

#include <stdint.h>
#include <string.h>

void kvfile_header(struct kvc_header *h, const struct model *m, const struct kv_cache *kv, int slot0,
		   int n, const float *logits, int dtype, const char *tool, int argc, char **argv)
{
	const struct model_hparams *hp = &m->hp;
	kvc_header_init(h);
	memcpy(h->model_fp, m->fingerprint, 32);
	memcpy(h->tok_fp, m->tok_fingerprint, 32);
	h->n_layer = hp->n_layer;
	h->n_kv_head = hp->n_kv_head;
	h->head_dim = hp->head_dim;
	h->dtype = (enum kvc_dtype)dtype;
	h->rope_mode = hp->rope_mode;
	h->n_rot = hp->n_rot;
	h->rope_base = hp->rope_base;
	h->rope_scaling = hp->rope_scaling;
	h->rope_factor = hp->rope_factor;
	h->rope_orig_ctx = hp->rope_orig_ctx;
	h->k_rotated = true;
	h->n_tokens = n;
	h->tokens = kv->tok + slot0;
	h->pos = kv->pos + slot0;
	h->n_logits = logits ? hp->n_vocab : 0;
	h->logits = (float *)logits;
	if (tool)
		h->tool = (char *)tool;
	h->argc = argv ? argc : 0;
	h->argv = argv;
}

/* The layers of a struct kv_cache start at slot0 and are n_ctx * kv_dim apart. */
static size_t layer_stride(const struct kv_cache *kv)
{
	return (size_t)kv->n_ctx * kv->kv_dim;
}

int kvfile_write_fd(int fd, const struct kvc_header *h, const struct kv_cache *kv, int slot0)
{
	if (kv->hpos)
		return kb_fail(KB_ERR_ARG, "a token-evicted cache in memory cannot be written back as a whole cache");
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, fd, h);
	if (rc)
		return rc;
	for (int l = 0; l < h->n_layer && rc == KB_OK; l++)
		rc = kvc_writer_layer(w, l, kv_k(kv, l, slot0), kv_v(kv, l, slot0), (size_t)kv->kv_dim);
	if (rc == KB_OK)
		rc = kvc_writer_finish(w);
	kvc_writer_free(w);
	return rc;
}

int kvfile_write_path(const char *path, const struct kvc_header *h, const struct kv_cache *kv,
		      int slot0)
{
	if (kv->hpos)
		return kb_fail(KB_ERR_ARG, "a token-evicted cache in memory cannot be written back as a whole cache");
	return kvc_write_file(path, h, kv_k(kv, 0, slot0), kv_v(kv, 0, slot0), layer_stride(kv),
			      (size_t)kv->kv_dim);
}

int kvfile_slots(const struct kvc_header *h)
{
	int n = 0;
	for (int l = 0; l < h->n_layer; l++)
		n = kvc_layer_rows(h, l) > n ? kvc_layer_rows(h, l) : n;
	return kvc_is_sparse(h) ? n : h->n_tokens;
}

/* A token-evicted cache into slots kv->n..: layer l's rows end at the last of
 * them (rows - 1 slots after the first its layer uses), so the last token, which
 * every head keeps, is in the same slot in every layer. */
static int read_sparse(struct kvc_reader *r, const struct kvc_header *h, struct kv_cache *kv)
{
	const int n = kvfile_slots(h), slot0 = kv->n, last = h->n_tokens - 1;
	if (n > kv->n_ctx - kv->n)
		return kb_fail(KB_ERR_ARG, "a cache of %d slots does not fit the context (%d of %d used)", n, kv->n,
			       kv->n_ctx);
	for (int l = 0; l < h->n_layer; l++)
		for (int head = 0; head < h->n_kv_head; head++)
			if (kvc_keep(h, l, head)[kvc_layer_rows(h, l) - 1] != last)
				return kb_fail(KB_ERR_FORMAT, "token-evicted cache: layer %d, kv head %d dropped the last "
					       "token (every head must keep it)", l, head);
	int rc = kv_cache_per_head(kv);
	if (rc)
		return rc;
	int l, want = 0;
	for (;;) {
		const int lw = want < kv->n_layer ? want : 0, off = n - kvc_layer_rows(h, lw);
		l = kvc_reader_layer(r, kv_k(kv, lw, slot0 + off), kv_v(kv, lw, slot0 + off), (size_t)kv->kv_dim);
		if (l < 0)
			break;
		if (l != want)
			return kb_fail(KB_ERR_FORMAT, "cache layer %d came where layer %d was expected", l, want);
		memset(kv_k(kv, l, slot0), 0, (size_t)off * kv->kv_dim * sizeof(float));
		memset(kv_v(kv, l, slot0), 0, (size_t)off * kv->kv_dim * sizeof(float));
		for (int head = 0; head < h->n_kv_head; head++) {
			int32_t *hp = kv_hpos(kv, l, head) + slot0;
			const int32_t *keep = kvc_keep(h, l, head);
			for (int j = 0; j < off; j++)
				hp[j] = INT32_MAX;
			for (int j = 0; j < n - off; j++)
				hp[off + j] = h->pos[keep[j]];
		}
		want++;
	}
	if (l != KB_EOF)
		return l;
	if (want != h->n_layer)
		return kb_fail(KB_ERR_FORMAT, "cache ended after %d of %d layers", want, h->n_layer);
	/* pos[] and tok[] of a slot: the largest position any head holds there */
	for (int s = 0; s < n; s++) {
		int32_t best = INT32_MIN, tok = -1;
		for (int ll = 0; ll < h->n_layer; ll++) {
			const int off = n - kvc_layer_rows(h, ll);
			if (s < off)
				continue;
			for (int head = 0; head < h->n_kv_head; head++) {
				int i = kvc_keep(h, ll, head)[s - off];
				if (h->pos[i] > best)
					best = h->pos[i], tok = h->tokens[i];
			}
		}
		kv->pos[slot0 + s] = best;
		kv->tok[slot0 + s] = tok;
	}
	kv->n += n;
	return KB_OK;
}

int kvfile_read(struct kvc_reader *r, const struct kvc_header *h, const struct model *m,
		struct kv_cache *kv)
{
	int rc = m ? kvc_check_model(h, m->fingerprint, m->tok_fingerprint, m->hp.n_layer, m->hp.n_kv_head,
				     m->hp.head_dim)
		   : kvc_check_model(h, NULL, NULL, kv->n_layer, kv->n_kv_head, kv->kv_dim / kv->n_kv_head);
	if (rc)
		return rc;
	if (kvc_is_sparse(h))
		return read_sparse(r, h, kv);
	if (h->n_tokens > kv->n_ctx - kv->n)
		return kb_fail(KB_ERR_ARG, "a cache of %d tokens does not fit the context (%d of %d used)",
			       h->n_tokens, kv->n, kv->n_ctx);
	const int slot0 = kv->n;
	int l, want = 0;
	while ((l = kvc_reader_layer(r, kv_k(kv, want < kv->n_layer ? want : 0, slot0),
				     kv_v(kv, want < kv->n_layer ? want : 0, slot0), (size_t)kv->kv_dim)) >= 0) {
		if (l != want)
			return kb_fail(KB_ERR_FORMAT, "cache layer %d came where layer %d was expected", l, want);
		want++;
	}
	if (l != KB_EOF)
		return l;
	if (want != h->n_layer)
		return kb_fail(KB_ERR_FORMAT, "cache ended after %d of %d layers", want, h->n_layer);
	memcpy(kv->tok + slot0, h->tokens, (size_t)h->n_tokens * sizeof *kv->tok);
	memcpy(kv->pos + slot0, h->pos, (size_t)h->n_tokens * sizeof *kv->pos);
	for (int ll = 0; kv->hpos && ll < kv->n_layer; ll++)
		for (int head = 0; head < kv->n_kv_head; head++)
			memcpy(kv_hpos(kv, ll, head) + slot0, h->pos, (size_t)h->n_tokens * sizeof *kv->pos);
	kv->n += h->n_tokens;
	return KB_OK;
}
