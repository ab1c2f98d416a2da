/* arch_ours.c — kvblend's side of tests/bench/arch-check.sh: for a model and
 * prompt token ids (stdin, one line), print the greedy continuation's ids (one
 * line), then each prompt token's final hidden state (after the output norm),
 * one line of floats per token. arch_llama.c prints the same from llama.cpp.
 *
 *   arch_ours MODEL.gguf N_PREDICT < ids */
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "model.h"
#include "util.h"

int main(int argc, char **argv)
{
	struct model *m;
	if (argc != 3 || model_load(&m, argv[1])) {
		fprintf(stderr, "usage: arch_ours MODEL.gguf N_PREDICT < ids (%s)\n", argc == 3 ? kb_error() : "");
		return 1;
	}
	int n_pred = atoi(argv[2]), n = 0, cap = 4096;
	int32_t *ids = malloc((size_t)(cap + n_pred) * sizeof *ids), *pos = malloc((size_t)(cap + n_pred) * sizeof *pos);
	while (n < cap && scanf("%d", &ids[n]) == 1)
		n++;
	for (int i = 0; i < cap + n_pred; i++)
		pos[i] = i;
	const int nv = m->hp.n_vocab, d = m->hp.n_embd;
	struct kv_cache kv;
	struct model_ws ws;
	float *logits = malloc((size_t)nv * sizeof *logits);
	if (!n || kv_cache_init(&kv, m, n + n_pred) || model_ws_init(&ws, m, n, n + n_pred))
		return 1;
	/* the prompt's hidden states: the layers by hand, then the output norm */
	for (int i = 0; i < n; i++) {
		ws.slots[i] = i;
		kv.pos[i] = i;
		kv.tok[i] = ids[i];
	}
	model_embed(m, ids, n, ws.x);
	for (int l = 0; l < m->hp.n_layer; l++)
		model_layer(m, &ws, l, ws.x, ws.slots, n, &kv, n);
	float *h = malloc((size_t)n * d * sizeof *h);
	kern_rmsnorm(h, ws.x, m->output_norm, n, d, m->hp.norm_eps);
	/* greedy from a fresh cache through the ordinary entry point */
	kv.n = 0;
	if (model_forward(m, &ws, &kv, ids, pos, n, logits, false))
		return 1;
	for (int t = 0; t < n_pred; t++) {
		int best = 0;
		for (int j = 1; j < nv; j++)
			best = logits[j] > logits[best] ? j : best;
		printf("%s%d", t ? " " : "", best);
		ids[n + t] = best;
		if (model_forward(m, &ws, &kv, ids + n + t, pos + n + t, 1, logits, false))
			return 1;
	}
	printf("\n");
	for (int i = 0; i < n; i++)
		for (int j = 0; j < d; j++)
			printf("%.7g%c", h[(size_t)i * d + j], j == d - 1 ? '\n' : ' ');
	return 0;
}
