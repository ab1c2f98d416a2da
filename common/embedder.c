/* embedder.c — see embedder.h. */
#include "embedder.h"

struct embedder {
	int dim;
};

int embedder_open(struct embedder **out, const char *path, const char *pool)
{
	*out = NULL;
	return kb_fail(KB_ERR_UNSUPPORTED, "'%s': dense embeddings are not implemented yet", path);
}

void embedder_free(struct embedder *e)
{
	free(e);
}

int embedder_dim(const struct embedder *e)
{
	return e->dim;
}

const char *embedder_space(const struct embedder *e)
{
	return "";
}

const char *embedder_describe(const struct embedder *e)
{
	return "";
}

int embedder_run(struct embedder *e, const char *const *texts, int n, float *out)
{
	return kb_fail(KB_ERR_UNSUPPORTED, "dense embeddings are not implemented yet");
}
