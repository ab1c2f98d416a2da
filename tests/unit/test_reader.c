/* test_reader.c — the reader model (tests/models/reader.gguf, trained in
 * PyTorch by tests/rag/train.py and imported by kvblend quantize --hf) gives
 * the logits PyTorch gave: tests/models/reader.check holds, per prompt, its
 * token ids and PyTorch's next-token logits at the last position
 * (tests/rag/export.py writes it). This is what proves the export: the
 * names, the q/k permutation of RoPE, grouped-query attention and the tied
 * output all agree, over prompts of up to ~700 tokens. Also: the file is the
 * one reader.sha256 names.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/hash.h"
#include "../../common/model.h"
#include "../../common/tok.h"
#include "../../common/util.h"
#include "tap.h"

#define MAX_IDS 4096

/* The path of a file of the checkout: under $KVBLEND_ROOT, else relative to
 * the directory make check runs in (the root). */
static const char *root_path(const char *rel, char *buf, size_t n)
{
	const char *root = getenv("KVBLEND_ROOT");
	snprintf(buf, n, "%s%s%s", root ? root : "", root ? "/" : "", rel);
	return buf;
}

/* Read "WORD N v1 .. vN" into out[cap] (ints or floats by is_float); returns N or -1. */
static int read_row(FILE *f, const char *word, int is_float, void *out, int cap)
{
	char w[16];
	int n;
	if (fscanf(f, "%15s %d", w, &n) != 2 || strcmp(w, word) || n < 1 || n > cap)
		return -1;
	for (int i = 0; i < n; i++)
		if (is_float ? fscanf(f, "%f", (float *)out + i) != 1 : fscanf(f, "%d", (int32_t *)out + i) != 1)
			return -1;
	return n;
}

static void skip_comments(FILE *f)
{
	int c;
	while ((c = fgetc(f)) == '#' || c == '\n')
		if (c == '#')
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
	if (c != EOF)
		ungetc(c, f);
}

static void test_logits(struct model *m, const char *check)
{
	FILE *f = fopen(check, "r");
	if (!ok(f != NULL, "%s opens", check)) {
		diag("%s", strerror(errno));
		return;
	}
	int32_t *ids = malloc(MAX_IDS * sizeof *ids), *pos = malloc(MAX_IDS * sizeof *pos);
	float *want = malloc((size_t)m->hp.n_vocab * sizeof *want);
	ASSERT(ids && pos && want);
	int n_prompts = 0;
	for (;;) {
		skip_comments(f);
		int n = read_row(f, "prompt", 0, ids, MAX_IDS);
		if (n < 0)
			break;
		int nv = read_row(f, "logits", 1, want, m->hp.n_vocab);
		if (!ok(nv == m->hp.n_vocab, "prompt %d: %d reference logits (the vocabulary has %d)", n_prompts, nv,
			m->hp.n_vocab))
			break;
		for (int i = 0; i < n; i++)
			pos[i] = i;
		struct kv_cache kv;
		struct model_ws ws;
		ASSERT(kv_cache_init(&kv, m, n) == 0 && model_ws_init(&ws, m, 64, n) == 0);
		ASSERT(model_forward(m, &ws, &kv, ids, pos, n, ws.logits, false) == 0);
		double worst = 0, scale = 0;
		for (int i = 0; i < nv; i++) {
			double d = fabs((double)ws.logits[i] - want[i]);
			worst = d > worst ? d : worst;
			scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
		}
		int a = 0, b = 0;
		for (int i = 1; i < nv; i++) {
			a = ws.logits[i] > ws.logits[a] ? i : a;
			b = want[i] > want[b] ? i : b;
		}
		ok(worst <= 1e-4 * (scale > 1 ? scale : 1) && a == b,
		   "prompt %d (%d tokens): logits equal PyTorch's (worst |diff| %.2e of %.1f; argmax %d, PyTorch %d)",
		   n_prompts, n, worst, scale, a, b);
		kv_cache_free(&kv);
		model_ws_free(&ws);
		n_prompts++;
	}
	ok(n_prompts >= 3, "%s holds %d prompts", check, n_prompts);
	free(ids), free(pos), free(want);
	fclose(f);
}

static void test_sha256(const char *gguf, const char *sums)
{
	char want[65] = "", got[65];
	FILE *f = fopen(sums, "r");
	int r = f ? fscanf(f, "%64s", want) : 0;
	if (f)
		fclose(f);
	uint8_t h[32];
	size_t len = 0;
	char *data = NULL;
	if (!ok(r == 1 && kb_read_file(gguf, &data, &len) == 0, "%s and %s read", sums, gguf))
		return;
	sha256(data, len, h);
	free(data);
	for (int i = 0; i < 32; i++)
		snprintf(got + 2 * i, 3, "%02x", h[i]);
	ok(!strcmp(got, want), "reader.gguf is the file reader.sha256 names (%.16s..., want %.16s...)", got, want);
}

int main(void)
{
	char gguf[4096], check[4096], sums[4096];
	root_path("tests/models/reader.gguf", gguf, sizeof gguf);
	root_path("tests/models/reader.check", check, sizeof check);
	root_path("tests/models/reader.sha256", sums, sizeof sums);
	struct model *m;
	if (!ok(model_load(&m, gguf) == 0, "%s loads", gguf)) {
		diag("%s", kb_error());
		return done_testing();
	}
	ok(m->hp.arch == ARCH_LLAMA && m->hp.n_kv_head < m->hp.n_head && m->hp.n_ctx_train >= 1024,
	   "a llama with grouped-query attention and a context of %d (>= 1024)", m->hp.n_ctx_train);
	test_sha256(gguf, sums);
	test_logits(m, check);
	model_free(m);
	return done_testing();
}
