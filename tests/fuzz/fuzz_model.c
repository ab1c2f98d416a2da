/* fuzz_model.c — fuzz target for the model loaders behind a GGUF file: the
 * llama/qwen2 decoder (model_load), the BERT encoder (bert_load) and the
 * tokenizers they load (tok_load: SentencePiece, WordPiece), reached as
 * kvblend embed reaches them, through embedder_open.
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] model   (the library built by the
 *              Makefile with clang and -fsanitize=fuzzer-no-link,address,undefined)
 * standalone:  built by run.sh --replay with $CC + ASan/UBSan; `fuzz_model
 *              --write-seeds DIR` writes the seed corpus, tiny synthetic models
 *              (synth.h): tests/fuzz/corpus/model/ was made by
 *              `tests/fuzz/run.sh --seeds model`.
 *
 * The input is a GGUF file (written to a memfd, since the loaders map a path).
 * It either loads — then three texts are embedded, each into a finite vector
 * of norm 1 (or 0 for an all-zero state), or refused by name (no tokens; a
 * non-finite embedding from broken weights) — or fails with
 * KB_ERR_FORMAT / KB_ERR_UNSUPPORTED / KB_ERR_ARG / KB_ERR_NOMEM and a
 * message naming the file. Anything else (a crash, a sanitizer report, an
 * ASSERT, a NaN) is a bug.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "embedder.h"
#include "memfile.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *texts[] = { "Once upon a time, Lily saw a cat. It was big!", "x", "\xc3\xa9t\xc3\xa9 [SEP] ##a" };
	const char *path = fuzz_memfile(data, size);
	if (!path)
		return 0;
	struct embedder *e = NULL;
	int rc = embedder_open(&e, path, NULL);
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_ARG || rc == KB_ERR_NOMEM);
		ASSERT(e == NULL && kb_error()[0]);
		return 0;
	}
	const int dim = embedder_dim(e);
	ASSERT(dim > 0);
	float *v = kb_malloc(3 * (size_t)dim * sizeof *v);
	ASSERT(v);
	rc = embedder_run(e, texts, 3, v);
	/* a text may have no token in a strange vocabulary, broken weights give
	 * NaN: both refused by name */
	ASSERT(rc == KB_OK || rc == KB_ERR_ARG || rc == KB_ERR_FORMAT);
	ASSERT(rc == KB_OK || kb_error()[0]);
	for (int i = 0; rc == KB_OK && i < 3; i++) {
		double s = 0;
		for (int j = 0; j < dim; j++) {
			float x = v[(size_t)i * dim + j];
			ASSERT(isfinite(x));
			s += (double)x * x;
		}
		ASSERT(s == 0 || fabs(s - 1) < 1e-4);
	}
	free(v);
	embedder_free(e);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_model"
#include "driver.h"

#include "convert.h"
#include "quant.h"
#include "synth.h"

/* ---- the seed corpus: tiny models of each architecture and a few types ---- */

static int write_seeds(const char *dir)
{
	static const struct {
		const char *name;
		struct synth_spec s;
	} seeds[] = {
		{ "llama-f32.seed", { .arch = "llama", .n_vocab = 259, .n_embd = 8, .n_layer = 1, .n_head = 2,
				      .n_kv_head = 1, .n_ff = 16, .n_ctx = 32, .type = QTYPE_F32, .seed = 1 } },
		{ "qwen2-tied-f16.seed", { .arch = "qwen2", .n_vocab = 259, .n_embd = 8, .n_layer = 2, .n_head = 2,
					   .n_kv_head = 2, .n_ff = 8, .n_ctx = 16, .qkv_bias = true, .tied = true,
					   .type = QTYPE_F16, .seed = 2 } },
		{ "llama-q8_0.seed", { .arch = "llama", .n_vocab = 259, .n_embd = 32, .n_layer = 1, .n_head = 4,
				       .n_kv_head = 2, .n_ff = 32, .n_ctx = 16, .tied = true, .type = QTYPE_Q8_0,
				       .seed = 3 } },
		{ "bert-mean.seed", { .arch = "bert", .n_vocab = 259, .n_embd = 8, .n_layer = 1, .n_head = 2,
				      .n_kv_head = 2, .n_ff = 16, .n_ctx = 16, .pooling = 1, .type = QTYPE_F32,
				      .seed = 4 } },
		{ "bert-cls-f16.seed", { .arch = "bert", .n_vocab = 259, .n_embd = 8, .n_layer = 2, .n_head = 1,
					 .n_kv_head = 1, .n_ff = 8, .n_ctx = 8, .pooling = 2, .type = QTYPE_F16,
					 .seed = 5 } },
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, seeds[i].name);
		if (synth_write(p, &seeds[i].s) != KB_OK) {
			fprintf(stderr, FUZZ_NAME ": %s: %s\n", seeds[i].name, kb_error());
			bad = 1;
		}
	}
	return bad;
}

#endif
