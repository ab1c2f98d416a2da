/* chunkcache.c — see chunkcache.h. */
#include "chunkcache.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvfile.h"
#include "store.h"

struct chunkcache {
	struct store *st; /* NULL: compute everything, store nothing */
	int dtype;
	const char *tool;
	int argc;
	char **argv;
};

int chunkcache_open(struct chunkcache **out, const char *dir, bool store, int dtype)
{
	struct chunkcache *cc = kb_calloc(1, sizeof *cc);
	if (!cc)
		return KB_ERR_NOMEM;
	cc->dtype = dtype;
	cc->tool = "kvblend";
	if (store) {
		int rc = store_open(&cc->st, dir);
		if (rc) {
			free(cc);
			return rc;
		}
	}
	*out = cc;
	return KB_OK;
}

void chunkcache_close(struct chunkcache *cc)
{
	if (!cc)
		return;
	store_close(cc->st);
	free(cc);
}

void chunkcache_set_tool(struct chunkcache *cc, const char *tool, int argc, char **argv)
{
	cc->tool = tool;
	cc->argc = argc;
	cc->argv = argv;
}

struct store *chunkcache_store(struct chunkcache *cc)
{
	return cc->st;
}

/* Read key's object into slots from slot0. KB_OK, KB_EOF on a miss, or an
 * error when the object is there but unusable (the caller recomputes it). */
static int load_stored(struct chunkcache *cc, const struct model *m, struct kv_cache *kv, int slot0,
		       const int32_t *tokens, int n, const char *key, uint64_t *bytes)
{
	int fd, rc = store_get_fd(cc->st, key, &fd);
	if (rc)
		return rc;
	struct stat sb;
	struct kvc_reader *r = NULL;
	const struct kvc_header *h;
	if (fstat(fd, &sb) == 0)
		*bytes = (uint64_t)sb.st_size;
	if ((rc = kvc_reader_open_fd(&r, fd, key)) == KB_OK && (rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		if (h->n_tokens != n || memcmp(h->tokens, tokens, (size_t)n * sizeof *tokens) != 0)
			rc = kb_fail(KB_ERR_MISMATCH, "stored object %.12s… holds other tokens", key);
		else {
			kv->n = slot0;
			rc = kvfile_read(r, h, m, kv);
		}
	} else if (rc == KB_EOF) {
		rc = kb_fail(KB_ERR_FORMAT, "stored object %.12s… is empty", key);
	}
	kvc_reader_free(r);
	close(fd);
	return rc;
}

/* Compute the chunk alone into its slots, positions 0..n-1. */
static int compute(const struct model *m, struct model_ws *ws, struct kv_cache *kv, int slot0,
		   const int32_t *tokens, int n)
{
	int32_t *pos = kb_malloc((size_t)n * sizeof *pos);
	if (!pos)
		return KB_ERR_NOMEM;
	for (int i = 0; i < n; i++)
		pos[i] = i;
	kv->n = slot0;
	int rc = model_forward_seqs(m, ws, kv, tokens, pos, &n, 1, NULL);
	free(pos);
	return rc;
}

static int store_computed(struct chunkcache *cc, const struct model *m, const struct kv_cache *kv, int slot0,
			  int n, const char *key, double cost)
{
	struct store_put p;
	int rc = store_put_begin(cc->st, key, &p);
	if (rc)
		return rc;
	struct kvc_header h;
	kvfile_header(&h, m, kv, slot0, n, NULL, cc->dtype, cc->tool, cc->argc, cc->argv);
	if ((rc = kvfile_write_fd(p.fd, &h, kv, slot0))) {
		store_put_abort(cc->st, &p);
		return rc;
	}
	struct store_meta meta = { .n_tokens = n, .cost = cost, .tool = cc->tool };
	memcpy(meta.model_fp, m->fingerprint, 32);
	return store_put_commit(cc->st, &p, &meta);
}

int chunkcache_load(struct chunkcache *cc, const struct model *m, struct model_ws *ws, struct kv_cache *kv,
		    int slot0, const int32_t *tokens, int n, char *key_out, struct chunkcache_stats *st)
{
	char key[STORE_KEY_HEX + 1];
	struct chunkcache_stats dummy = { 0 };
	if (!st)
		st = &dummy;
	if (n <= 0)
		return kb_fail(KB_ERR_ARG, "an empty chunk has no cache");
	if (slot0 < 0 || n > kv->n_ctx - slot0)
		return kb_fail(KB_ERR_ARG, "a chunk of %d tokens does not fit the context at slot %d", n, slot0);
	store_key(m->fingerprint, tokens, (size_t)n, key);
	if (key_out)
		memcpy(key_out, key, sizeof key);
	if (cc->st) {
		uint64_t bytes = 0;
		double t0 = kb_now();
		int rc = load_stored(cc, m, kv, slot0, tokens, n, key, &bytes);
		if (rc == KB_OK) {
			st->hits++;
			st->bytes_read += bytes;
			st->t_load += kb_now() - t0;
			return KB_OK;
		}
		if (rc != KB_EOF && store_remove(cc->st, key) < KB_EOF)
			return rc; /* unusable and cannot even be removed */
	}
	double t0 = kb_now();
	int rc = compute(m, ws, kv, slot0, tokens, n);
	double cost = kb_now() - t0;
	st->misses++;
	st->t_compute += cost;
	if (rc == KB_OK && cc->st)
		rc = store_computed(cc, m, kv, slot0, n, key, cost);
	return rc;
}
