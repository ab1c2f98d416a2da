/* kvfile.c — see kvfile.h. */
#include "kvfile.h"

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
	return kvc_write_file(path, h, kv_k(kv, 0, slot0), kv_v(kv, 0, slot0), layer_stride(kv),
			      (size_t)kv->kv_dim);
}

int kvfile_read(struct kvc_reader *r, const struct kvc_header *h, const struct model *m,
		struct kv_cache *kv)
{
	int rc = kvc_check_model(h, m->fingerprint, m->tok_fingerprint, m->hp.n_layer, m->hp.n_kv_head,
				 m->hp.head_dim);
	if (rc)
		return rc;
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
	kv->n += h->n_tokens;
	return KB_OK;
}
