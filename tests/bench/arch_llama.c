/* arch_llama.c — llama.cpp's side of tests/bench/arch-check.sh, through its
 * public C API (include/llama.h): the same output as arch_ours.c (greedy ids,
 * then each prompt token's final hidden state, llama.cpp's "embeddings" with
 * no pooling). Built by arch-check.sh against LLAMA_CPP's tree; never part of
 * kvblend's build.
 *
 *   arch_llama MODEL.gguf N_PREDICT THREADS < ids */
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
	(void)user;
	if (level == GGML_LOG_LEVEL_ERROR)
		fputs(text, stderr);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: arch_llama MODEL.gguf N_PREDICT THREADS < ids\n");
		return 1;
	}
	int n_pred = atoi(argv[2]), n = 0, cap = 4096;
	llama_token *ids = malloc((size_t)(cap + n_pred) * sizeof *ids);
	while (n < cap && scanf("%d", &ids[n]) == 1)
		n++;
	llama_log_set(quiet, NULL);
	llama_backend_init();
	struct llama_model_params mp = llama_model_default_params();
	struct llama_model *model = llama_model_load_from_file(argv[1], mp);
	if (!model || !n)
		return 1;
	const struct llama_vocab *vocab = llama_model_get_vocab(model);
	const int nv = llama_vocab_n_tokens(vocab), d = llama_model_n_embd(model);
	/* greedy */
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = (uint32_t)(n + n_pred + 16);
	cp.n_batch = cp.n_ubatch = (uint32_t)(n + 16);
	cp.n_threads = cp.n_threads_batch = atoi(argv[3]);
	struct llama_context *ctx = llama_init_from_model(model, cp);
	if (!ctx || llama_decode(ctx, llama_batch_get_one(ids, n)))
		return 1;
	for (int t = 0; t < n_pred; t++) {
		const float *lg = llama_get_logits_ith(ctx, -1);
		int best = 0;
		for (int j = 1; j < nv; j++)
			best = lg[j] > lg[best] ? j : best;
		printf("%s%d", t ? " " : "", best);
		ids[n + t] = best;
		if (llama_decode(ctx, llama_batch_get_one(ids + n + t, 1)))
			return 1;
	}
	printf("\n");
	llama_free(ctx);
	/* hidden states: embeddings of every token, no pooling */
	cp.embeddings = true;
	cp.pooling_type = LLAMA_POOLING_TYPE_NONE;
	ctx = llama_init_from_model(model, cp);
	if (!ctx || llama_decode(ctx, llama_batch_get_one(ids, n)))
		return 1;
	for (int i = 0; i < n; i++) {
		const float *h = llama_get_embeddings_ith(ctx, i);
		if (!h)
			return 1;
		for (int j = 0; j < d; j++)
			printf("%.7g%c", h[j], j == d - 1 ? '\n' : ' ');
	}
	llama_free(ctx);
	llama_model_free(model);
	return 0;
}
