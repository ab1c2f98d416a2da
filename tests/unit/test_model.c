/* test_model.c — the forward pass against golden outputs (stories260K, a real
 * trained llama model) and against a direct f32 computation (synthetic llama and
 * qwen2 models); batching, positions and error cases. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "model.h"
#include "sample.h"
#include "synth.h"
#include "tap.h"

/* ---- golden outputs of stories260Ktok512.gguf ---- */

struct golden {
	int32_t prompt[64];
	int n_prompt;
	int32_t greedy[128];
	int n_greedy;
	int32_t top_id[128][10];
	double top_logit[128][10];
};

static int load_golden(const char *path, struct golden *g)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (!root)
		return -1;
	memset(g, 0, sizeof *g);
	json_t *a = json_object_get(root, "prompt_ids"), *v;
	size_t i, j;
	json_array_foreach(a, i, v) g->prompt[g->n_prompt++] = (int32_t)json_integer_value(v);
	a = json_object_get(root, "greedy_ids");
	json_array_foreach(a, i, v) g->greedy[g->n_greedy++] = (int32_t)json_integer_value(v);
	a = json_object_get(root, "top10_logits_per_step");
	json_array_foreach(a, i, v) {
		json_t *pair;
		json_array_foreach(v, j, pair) {
			g->top_id[i][j] = (int32_t)json_integer_value(json_array_get(pair, 0));
			g->top_logit[i][j] = json_number_value(json_array_get(pair, 1));
		}
	}
	json_decref(root);
	return 0;
}

/* Largest relative error of our logits against a step's golden top-10. */
static double top10_err(const float *logits, const struct golden *g, int step)
{
	double worst = 0;
	for (int j = 0; j < 10; j++) {
		double want = g->top_logit[step][j], got = logits[g->top_id[step][j]];
		double e = fabs(got - want) / fmax(fabs(want), 1.0);
		worst = e > worst ? e : worst;
	}
	return worst;
}

/* Greedy decoding token by token, and the whole sequence as one batch (and in
 * batches of 7): each must give the golden ids and top-10 logits. */
static void check_golden(struct model *m, const char *file)
{
	struct golden *g = malloc(sizeof *g);
	const char *path = tap_shared(file);
	if (!g || !path || load_golden(path, g)) {
		ok(0, "%s: golden file loads", file);
		free(g);
		return;
	}
	const int nv = m->hp.n_vocab, np = g->n_prompt + 1, n_all = np + g->n_greedy;
	int32_t toks[256], pos[256];
	toks[0] = tok_bos(m->tok);
	memcpy(toks + 1, g->prompt, g->n_prompt * sizeof *toks);
	for (int i = 0; i < n_all; i++)
		pos[i] = i;

	/* token by token after a batched prompt, as decode does */
	struct kv_cache kv;
	struct model_ws ws;
	ASSERT(kv_cache_init(&kv, m, n_all) == 0 && model_ws_init(&ws, m, np, n_all) == 0);
	ASSERT(model_forward(m, &ws, &kv, toks, pos, np, ws.logits, false) == 0);
	int ids_ok = 1;
	double worst = 0;
	for (int s = 0; s < g->n_greedy; s++) {
		int32_t next = sample_greedy(ws.logits, nv);
		double e = top10_err(ws.logits, g, s);
		worst = e > worst ? e : worst;
		if (next != g->greedy[s]) {
			if (ids_ok)
				diag("step %d: got %d, want %d", s, next, g->greedy[s]);
			ids_ok = 0;
		}
		toks[np + s] = g->greedy[s];
		if (s + 1 < g->n_greedy)
			ASSERT(model_forward(m, &ws, &kv, &g->greedy[s], &pos[np + s], 1, ws.logits, false) == 0);
	}
	ok(ids_ok, "%s: greedy reproduces the %d golden ids", file, g->n_greedy);
	ok(worst <= 1e-4, "%s: golden top-10 logits within 1e-4 relative (worst %.2e)", file, worst);
	kv_cache_free(&kv);
	model_ws_free(&ws);

	/* the whole sequence at once, then in batches of 7: all logits */
	for (int nb = n_all; nb >= 7; nb = nb == 7 ? 0 : 7) {
		float *all = malloc((size_t)n_all * nv * sizeof *all);
		ASSERT(all && kv_cache_init(&kv, m, n_all) == 0 && model_ws_init(&ws, m, nb, n_all) == 0);
		ASSERT(model_forward(m, &ws, &kv, toks, pos, n_all - 1, all, true) == 0);
		worst = 0;
		int agree = 1;
		for (int s = 0; s < g->n_greedy; s++) {
			const float *lg = all + (size_t)(np - 1 + s) * nv;
			double e = top10_err(lg, g, s);
			worst = e > worst ? e : worst;
			agree &= sample_greedy(lg, nv) == g->greedy[s];
		}
		ok(agree && worst <= 1e-4, "%s: one forward over %d tokens in batches of %d matches (worst %.2e)",
		   file, n_all - 1, nb, worst);
		free(all);
		kv_cache_free(&kv);
		model_ws_free(&ws);
	}
	free(g);
}

static void test_stories(void)
{
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	if (!path) {
		ok(1, "# SKIP ../shared/models/stories260Ktok512.gguf is absent");
		return;
	}
	struct model *m;
	int rc = model_load(&m, path);
	if (!ok(rc == 0, "stories260K loads")) {
		diag("%s", kb_error());
		return;
	}
	ok(m->hp.arch == ARCH_LLAMA && m->hp.n_embd == 64 && m->hp.n_layer == 5 && m->hp.n_head == 8 &&
		   m->hp.n_kv_head == 4 && m->hp.head_dim == 8 && m->hp.n_ff == 172 && m->hp.n_vocab == 512 &&
		   !m->hp.tied_output,
	   "stories260K hyper-parameters");
	check_golden(m, "models/stories260Ktok512.golden_prompt.json");
	check_golden(m, "models/stories260Ktok512.golden_bos.json");
	model_free(m);
}

/* ---- a direct f32 computation of the same layers, independent of the kernels ---- */

static const float *T(const struct gguf *g, const char *fmt, int l)
{
	char name[96];
	snprintf(name, sizeof name, fmt, l);
	const struct gguf_tensor *t = gguf_find_tensor(g, name);
	return t ? t->data : NULL;
}

/* y[o] = sum_i W[o][i] x[i] (+ b[o]) */
static void mv(double *y, const float *W, const double *x, const float *b, int n_in, int n_out)
{
	for (int o = 0; o < n_out; o++) {
		double s = b ? b[o] : 0;
		for (int i = 0; i < n_in; i++)
			s += (double)W[(size_t)o * n_in + i] * x[i];
		y[o] = s;
	}
}

static void rms(double *y, const double *x, const float *w, int n, double eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	double r = 1 / sqrt(ss / n + eps);
	for (int i = 0; i < n; i++)
		y[i] = x[i] * r * w[i];
}

static void rope(double *x, int n_heads, int hd, int p, double base, int neox)
{
	for (int h = 0; h < n_heads; h++) {
		double *v = x + h * hd;
		for (int i = 0; i < hd / 2; i++) {
			double th = p * pow(base, -2.0 * i / hd), c = cos(th), s = sin(th);
			int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
			double x0 = v[a], x1 = v[b];
			v[a] = x0 * c - x1 * s;
			v[b] = x0 * s + x1 * c;
		}
	}
}

/* Logits of every token of toks[n] (positions 0..n-1) into out [n][n_vocab]. */
static void direct_forward(const struct model *m, const int32_t *toks, int n, float *out)
{
	const struct gguf *g = m->gguf;
	const struct model_hparams *hp = &m->hp;
	const int d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_kv_head * hd,
		  ff = hp->n_ff, nv = hp->n_vocab, neox = hp->arch == ARCH_QWEN2;
	double *x = calloc((size_t)n * d, sizeof *x), *xb = calloc(d, sizeof *xb);
	double *q = calloc((size_t)n * qd, sizeof *q), *k = calloc((size_t)n * kvd, sizeof *k),
	       *v = calloc((size_t)n * kvd, sizeof *v), *att = calloc(qd, sizeof *att),
	       *o = calloc(d, sizeof *o), *h1 = calloc(ff, sizeof *h1), *h2 = calloc(ff, sizeof *h2),
	       *sc = calloc(n, sizeof *sc), *lg = calloc(nv, sizeof *lg);
	const float *emb = T(g, "token_embd.weight", 0);
	for (int t = 0; t < n; t++)
		for (int i = 0; i < d; i++)
			x[(size_t)t * d + i] = emb[(size_t)toks[t] * d + i];
	for (int l = 0; l < hp->n_layer; l++) {
		for (int t = 0; t < n; t++) {
			rms(xb, x + (size_t)t * d, T(g, "blk.%d.attn_norm.weight", l), d, hp->norm_eps);
			mv(q + (size_t)t * qd, T(g, "blk.%d.attn_q.weight", l), xb, T(g, "blk.%d.attn_q.bias", l), d, qd);
			mv(k + (size_t)t * kvd, T(g, "blk.%d.attn_k.weight", l), xb, T(g, "blk.%d.attn_k.bias", l), d, kvd);
			mv(v + (size_t)t * kvd, T(g, "blk.%d.attn_v.weight", l), xb, T(g, "blk.%d.attn_v.bias", l), d, kvd);
			rope(q + (size_t)t * qd, hp->n_head, hd, t, hp->rope_base, neox);
			rope(k + (size_t)t * kvd, hp->n_kv_head, hd, t, hp->rope_base, neox);
		}
		for (int t = 0; t < n; t++) {
			for (int h = 0; h < hp->n_head; h++) {
				int kh = h / (hp->n_head / hp->n_kv_head);
				double mx = -1e300, sum = 0;
				for (int j = 0; j <= t; j++) {
					double s = 0;
					for (int i = 0; i < hd; i++)
						s += q[(size_t)t * qd + h * hd + i] * k[(size_t)j * kvd + kh * hd + i];
					sc[j] = s / sqrt(hd);
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int j = 0; j <= t; j++)
					sum += sc[j] = exp(sc[j] - mx);
				for (int i = 0; i < hd; i++) {
					double a = 0;
					for (int j = 0; j <= t; j++)
						a += sc[j] / sum * v[(size_t)j * kvd + kh * hd + i];
					att[h * hd + i] = a;
				}
			}
			double *xt = x + (size_t)t * d;
			mv(o, T(g, "blk.%d.attn_output.weight", l), att, NULL, qd, d);
			for (int i = 0; i < d; i++)
				xt[i] += o[i];
			rms(xb, xt, T(g, "blk.%d.ffn_norm.weight", l), d, hp->norm_eps);
			mv(h1, T(g, "blk.%d.ffn_gate.weight", l), xb, NULL, d, ff);
			mv(h2, T(g, "blk.%d.ffn_up.weight", l), xb, NULL, d, ff);
			for (int i = 0; i < ff; i++)
				h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
			mv(o, T(g, "blk.%d.ffn_down.weight", l), h1, NULL, ff, d);
			for (int i = 0; i < d; i++)
				xt[i] += o[i];
		}
	}
	const float *wout = T(g, "output.weight", 0) ? T(g, "output.weight", 0) : emb;
	for (int t = 0; t < n; t++) {
		rms(xb, x + (size_t)t * d, T(g, "output_norm.weight", 0), d, hp->norm_eps);
		mv(lg, wout, xb, NULL, d, nv);
		for (int i = 0; i < nv; i++)
			out[(size_t)t * nv + i] = (float)lg[i];
	}
	free(x), free(xb), free(q), free(k), free(v), free(att), free(o), free(h1), free(h2), free(sc), free(lg);
}

static void test_synthetic(const char *arch, bool bias, bool tied)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-model");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = arch, .n_vocab = 300, .n_embd = 64, .n_layer = 3, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = 128, .rope_base = 1e6f,
				 .qkv_bias = bias, .tied = tied, .type = QTYPE_F32, .seed = 1234 };
	struct model *m = NULL;
	if (!ok(synth_write(path, &sp) == 0 && model_load(&m, path) == 0, "synthetic %s model loads", arch)) {
		diag("%s", kb_error());
		unlink(path);
		return;
	}
	ok(m->hp.qkv_bias == bias && m->hp.tied_output == tied &&
		   m->hp.rope_mode == (strcmp(arch, "qwen2") ? KERN_ROPE_NORM : KERN_ROPE_NEOX),
	   "synthetic %s: bias %d, tied %d, rope mode", arch, bias, tied);
	enum { N = 23 };
	int32_t toks[N], pos[N];
	for (int i = 0; i < N; i++)
		toks[i] = (i * 37 + 5) % sp.n_vocab, pos[i] = i;
	float *want = malloc((size_t)N * sp.n_vocab * sizeof *want), *got = malloc((size_t)N * sp.n_vocab * sizeof *got);
	direct_forward(m, toks, N, want);
	struct kv_cache kv;
	struct model_ws ws;
	ASSERT(kv_cache_init(&kv, m, N) == 0 && model_ws_init(&ws, m, 8, N) == 0);
	ASSERT(model_forward(m, &ws, &kv, toks, pos, N, got, true) == 0);
	double e = tap_nerr(got, want, (long)N * sp.n_vocab);
	/* f32 weights and activations throughout: only summation order differs */
	ok(e < 1e-5, "synthetic %s: logits match a direct f32 computation (nerr %.2e < 1e-5)", arch, e);
	free(want);
	free(got);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	unlink(path);
}

/* Positions, not slot order, decide attention: the same tokens fed in a
 * shuffled slot order give the same last-token logits. */
static void test_slot_order(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-model");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = "qwen2", .n_vocab = 300, .n_embd = 64, .n_layer = 2, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = 64, .qkv_bias = true, .seed = 99 };
	struct model *m;
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	enum { N = 12 };
	int32_t toks[N], pos[N], stoks[N], spos[N];
	for (int i = 0; i < N; i++)
		toks[i] = 3 + i * 11, pos[i] = i;
	/* slot order: even positions first, then odd, last token last */
	int j = 0;
	for (int i = 0; i < N - 1; i += 2)
		stoks[j] = toks[i], spos[j++] = i;
	for (int i = 1; i < N - 1; i += 2)
		stoks[j] = toks[i], spos[j++] = i;
	stoks[j] = toks[N - 1], spos[j] = N - 1;
	struct kv_cache kv;
	struct model_ws ws;
	float *a = malloc(sp.n_vocab * sizeof *a), *b = malloc(sp.n_vocab * sizeof *b);
	ASSERT(kv_cache_init(&kv, m, N) == 0 && model_ws_init(&ws, m, N, N) == 0);
	ASSERT(model_forward(m, &ws, &kv, toks, pos, N, a, false) == 0);
	kv.n = 0;
	ASSERT(model_forward(m, &ws, &kv, stoks, spos, N, b, false) == 0);
	double e = tap_nerr(b, a, sp.n_vocab);
	ok(e < 1e-5, "shuffled slot order gives the same logits (nerr %.2e)", e);

	/* model_layer_kv writes the K/V model_layer writes, and leaves x alone */
	const int d = sp.n_embd, kvd = kv.kv_dim;
	float *x = malloc((size_t)N * d * sizeof *x), *x0 = malloc((size_t)N * d * sizeof *x0);
	float *k1 = malloc((size_t)N * kvd * sizeof *k1), *v1 = malloc((size_t)N * kvd * sizeof *v1);
	int32_t slots[N];
	for (int i = 0; i < N; i++)
		slots[i] = N - 1 - i, kv.pos[i] = i, kv.tok[i] = toks[i];
	model_embed(m, toks, N, x);
	model_layer(m, &ws, 0, x, slots, N, &kv, N); /* layer 1's input */
	memcpy(x0, x, (size_t)N * d * sizeof *x);
	model_layer(m, &ws, 1, x, slots, N, &kv, N);
	memcpy(k1, kv_k(&kv, 1, 0), (size_t)N * kvd * sizeof *k1);
	memcpy(v1, kv_v(&kv, 1, 0), (size_t)N * kvd * sizeof *v1);
	memset(kv_k(&kv, 1, 0), 0, (size_t)N * kvd * sizeof(float));
	memset(kv_v(&kv, 1, 0), 0, (size_t)N * kvd * sizeof(float));
	memcpy(x, x0, (size_t)N * d * sizeof *x);
	model_layer_kv(m, &ws, 1, x, slots, N, &kv);
	ok(memcmp(kv_k(&kv, 1, 0), k1, (size_t)N * kvd * sizeof *k1) == 0 &&
	   memcmp(kv_v(&kv, 1, 0), v1, (size_t)N * kvd * sizeof *v1) == 0 &&
	   memcmp(x, x0, (size_t)N * d * sizeof *x) == 0,
	   "model_layer_kv writes the K/V model_layer writes, and leaves the hidden states alone");
	free(x), free(x0), free(k1), free(v1);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	free(a);
	free(b);
	unlink(path);
}

/* Logits of every position of a fixed 48-token sequence. */
static float *all_logits(struct model *m, int n)
{
	int32_t toks[64], pos[64];
	toks[0] = tok_bos(m->tok);
	for (int i = 1; i < n; i++)
		toks[i] = 3 + (i * 131) % (m->hp.n_vocab - 3);
	for (int i = 0; i < n; i++)
		pos[i] = i;
	struct kv_cache kv;
	struct model_ws ws;
	float *lg = malloc((size_t)n * m->hp.n_vocab * sizeof *lg);
	ASSERT(lg && kv_cache_init(&kv, m, n) == 0 && model_ws_init(&ws, m, 16, n) == 0);
	ASSERT(model_forward(m, &ws, &kv, toks, pos, n, lg, true) == 0);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	return lg;
}

/* stories260K converted by our own writer runs in every weight type, close to f32.
 * Thresholds: normalized error of all logits over 48 positions, about 3x what was
 * measured (f16 ~3e-4, bf16 ~1.9e-3, q8_0 ~7.6e-3 incl. int8 activations, q4_0 ~0.09:
 * 4-bit weights in a 64-wide model are coarse). */
static void test_converted(void)
{
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	if (!path) {
		ok(1, "# SKIP ../shared/models/stories260Ktok512.gguf is absent");
		return;
	}
	static const struct { const char *type; double max_err; } cases[] = {
		{ "f16", 1e-3 }, { "bf16", 1e-2 }, { "q8_0", 2e-2 }, { "q4_0", 0.3 },
	};
	enum { N = 48 };
	struct model *m;
	ASSERT(model_load(&m, path) == 0);
	float *ref = all_logits(m, N);
	const int nv = m->hp.n_vocab;
	model_free(m);
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		char out[4200];
		int fd = tap_mkstemp(out, sizeof out, "kvblend-test-conv");
		ASSERT(fd >= 0);
		close(fd);
		int type = qtype_from_name(cases[c].type);
		if (!ok(convert_gguf(path, out, type, NULL, NULL) == 0 && model_load(&m, out) == 0,
			"stories260K converted to %s loads", cases[c].type)) {
			diag("%s", kb_error());
			unlink(out);
			continue;
		}
		ok(m->layers[0].wq.type == type, "%s: weights are %s", cases[c].type, qtype_name(m->layers[0].wq.type));
		float *got = all_logits(m, N);
		double e = tap_nerr(got, ref, (long)N * nv);
		ok(e < cases[c].max_err, "%s: logits within %.0e of f32 (nerr %.2e)", cases[c].type, cases[c].max_err, e);
		free(got);
		model_free(m);
		unlink(out);
	}
	free(ref);
}

/* K-quants on a model: a synthetic one with rows of 256 in f32, converted to
 * q6_k, q4_k and q4_k_m, runs with logits near the f32 model's. Batches of 32
 * tokens (the kernels' repacked panels) and single tokens (register tiles). */
static void test_kquants(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-kq");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = "llama", .n_vocab = 300, .n_embd = 256, .n_layer = 2, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 512, .n_ctx = 128, .type = QTYPE_F32, .seed = 77 };
	ASSERT(synth_write(path, &sp) == 0);
	/* The weights' round-trip error (q6_k 0.0135, q4_k 0.054 on uniform data)
	 * compounds through 2 layers and the output projection, plus the int8
	 * activations (4e-3): measured 0.022 (q6_k), 0.086 (q4_k), 0.066 (q4_k_m,
	 * q6_K for the output and layer 1's attn_v, ffn_down); bounds 1.5x that. */
	static const struct { int target, wtype; double max_err; } cases[] = {
		{ QTYPE_Q6_K, QTYPE_Q6_K, 0.035 }, { QTYPE_Q4_K, QTYPE_Q4_K, 0.13 }, { CONVERT_Q4_K_M, QTYPE_Q4_K, 0.1 },
	};
	enum { N = 40 };
	float *ref = NULL;
	for (int c = -1; c < (int)(sizeof cases / sizeof *cases); c++) {
		char out[4200];
		const char *name = c < 0 ? "f32" : convert_target_name(cases[c].target);
		fd = tap_mkstemp(out, sizeof out, "kvblend-test-kq-conv");
		ASSERT(fd >= 0);
		close(fd);
		struct model *m;
		if (!ok((c < 0 || convert_gguf(path, out, cases[c].target, NULL, NULL) == 0) &&
			model_load(&m, c < 0 ? path : out) == 0, "synthetic model with rows of 256 in %s loads", name)) {
			diag("%s", kb_error());
			unlink(out);
			continue;
		}
		int32_t toks[N], pos[N];
		for (int i = 0; i < N; i++)
			toks[i] = (i * 97 + 11) % sp.n_vocab, pos[i] = i;
		float *lg = malloc((size_t)N * sp.n_vocab * sizeof *lg);
		struct kv_cache kv;
		struct model_ws ws;
		ASSERT(lg && kv_cache_init(&kv, m, N) == 0 && model_ws_init(&ws, m, 32, N) == 0);
		/* 32 tokens in one batch, then the rest one at a time */
		ASSERT(model_forward(m, &ws, &kv, toks, pos, 32, lg, true) == 0);
		for (int i = 32; i < N; i++)
			ASSERT(model_forward(m, &ws, &kv, toks + i, pos + i, 1, lg + (size_t)i * sp.n_vocab, true) == 0);
		if (c < 0) {
			ref = lg;
		} else {
			double e = tap_nerr(lg, ref, (long)N * sp.n_vocab);
			ok(m->layers[0].wq.type == cases[c].wtype && e < cases[c].max_err,
			   "%s: weights %s, logits within %.2g of f32 (nerr %.3g)", name,
			   qtype_name(m->layers[0].wq.type), cases[c].max_err, e);
			free(lg);
		}
		kv_cache_free(&kv);
		model_ws_free(&ws);
		model_free(m);
		unlink(out);
	}
	free(ref);
	unlink(path);
}

/* Independent sequences in one pass (prefill prepacking) give each sequence
 * exactly what it gets alone: the same cached K/V and last-token logits. */
static void test_seqs(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-model");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = "qwen2", .n_vocab = 300, .n_embd = 64, .n_layer = 2, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = 64, .qkv_bias = true, .seed = 7 };
	struct model *m;
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	enum { NS = 3 };
	const int len[NS] = { 5, 20, 7 };
	int32_t toks[32], pos[32];
	for (int s = 0, i = 0; s < NS; s++)
		for (int j = 0; j < len[s]; j++, i++)
			toks[i] = 3 + (i * 29 + s) % 290, pos[i] = j;
	const int nv = sp.n_vocab, kvd = m->hp.n_kv_head * m->hp.head_dim;
	struct kv_cache kv, one;
	struct model_ws ws, ws1;
	float *lg = malloc(NS * nv * sizeof *lg), *lg1 = malloc(nv * sizeof *lg1);
	/* batch of 16 rows: sequence 1 is split across batches */
	ASSERT(kv_cache_init(&kv, m, 32) == 0 && model_ws_init(&ws, m, 16, 32) == 0);
	ASSERT(kv_cache_init(&one, m, 32) == 0 && model_ws_init(&ws1, m, 32, 32) == 0);
	ASSERT(model_forward_seqs(m, &ws, &kv, toks, pos, len, NS, lg) == 0);
	double worst_lg = 0, worst_kv = 0;
	for (int s = 0, off = 0; s < NS; off += len[s], s++) {
		one.n = 0;
		ASSERT(model_forward(m, &ws1, &one, toks + off, pos + off, len[s], lg1, false) == 0);
		double e = tap_nerr(lg + (size_t)s * nv, lg1, nv);
		worst_lg = e > worst_lg ? e : worst_lg;
		for (int l = 0; l < m->hp.n_layer; l++) {
			e = tap_nerr(kv_k(&kv, l, off), kv_k(&one, l, 0), (long)len[s] * kvd);
			worst_kv = e > worst_kv ? e : worst_kv;
			e = tap_nerr(kv_v(&kv, l, off), kv_v(&one, l, 0), (long)len[s] * kvd);
			worst_kv = e > worst_kv ? e : worst_kv;
		}
	}
	ok(worst_lg < 1e-5, "sequences packed in one pass: last logits as alone (nerr %.2e)", worst_lg);
	ok(worst_kv < 1e-5, "sequences packed in one pass: K/V as alone (nerr %.2e)", worst_kv);
	ok(kv.n == 32, "the packed sequences fill 32 slots");
	free(lg), free(lg1);
	kv_cache_free(&kv), kv_cache_free(&one);
	model_ws_free(&ws), model_ws_free(&ws1);
	model_free(m);
	unlink(path);
}

static void test_errors(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-model");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = "gptneox", .n_vocab = 300, .n_embd = 32, .n_layer = 1, .n_head = 2,
				 .n_kv_head = 2, .n_ff = 32, .n_ctx = 64, .seed = 5 };
	struct model *m = NULL;
	ASSERT(synth_write(path, &sp) == 0);
	int rc = model_load(&m, path);
	ok(rc == KB_ERR_UNSUPPORTED && strstr(kb_error(), "architecture 'gptneox' is not supported"),
	   "unknown architecture is refused by name: %s", kb_error());
	rc = model_load(&m, "/nonexistent/model.gguf");
	ok(rc == KB_ERR_IO && strstr(kb_error(), "/nonexistent/model.gguf"), "missing file names the file: %s",
	   kb_error());

	sp.arch = "llama";
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	struct kv_cache kv;
	struct model_ws ws;
	ASSERT(kv_cache_init(&kv, m, 4) == 0 && model_ws_init(&ws, m, 4, 4) == 0);
	int32_t toks[5] = { 1, 2, 3, 4, 5 }, pos[5] = { 0, 1, 2, 3, 4 };
	ok(model_forward(m, &ws, &kv, toks, pos, 5, NULL, false) == KB_ERR_ARG && strstr(kb_error(), "context is full"),
	   "overfilling the context is an error: %s", kb_error());
	toks[0] = 300;
	ok(model_forward(m, &ws, &kv, toks, pos, 1, NULL, false) == KB_ERR_ARG && strstr(kb_error(), "out of range"),
	   "a token id past the vocabulary is an error: %s", kb_error());
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	unlink(path);
}

/* ---- the newer architectures against llama.cpp ----
 * tests/models/arch-golden.txt holds, for the tiny synthetic model of each
 * architecture, llama.cpp's greedy continuation of a prompt and the last
 * prompt token's final hidden state (tests/bench/arch-check.sh --golden). The
 * models are made here from the same seed, f32. */

/* The final hidden state (after the output norm) of the last of n tokens, into h [n_embd]. */
static void last_hidden(const struct model *m, const int32_t *ids, int n, float *h)
{
	struct kv_cache kv;
	struct model_ws ws;
	ASSERT(kv_cache_init(&kv, m, n) == 0 && model_ws_init(&ws, m, n, n) == 0);
	for (int i = 0; i < n; i++) {
		ws.slots[i] = i;
		kv.pos[i] = i;
		kv.tok[i] = ids[i];
	}
	model_embed(m, ids, n, ws.x);
	for (int l = 0; l < m->hp.n_layer; l++)
		model_layer(m, &ws, l, ws.x, ws.slots, n, &kv, n);
	kern_rmsnorm(h, ws.x + (size_t)(n - 1) * m->hp.n_embd, m->output_norm, 1, m->hp.n_embd, m->hp.norm_eps);
	model_ws_free(&ws);
	kv_cache_free(&kv);
}

/* Read "WORD v1 v2 ..." (the rest of the line) into out[cap]; returns the count. */
static int read_line_vals(FILE *f, const char *word, bool fl, void *out, int cap)
{
	char line[65536], *p = line, *end;
	int n = 0;
	if (!fgets(line, sizeof line, f) || strncmp(line, word, strlen(word)))
		return -1;
	p += strlen(word);
	for (; n < cap; n++) {
		double v = strtod(p, &end);
		if (end == p)
			break;
		if (fl)
			((float *)out)[n] = (float)v;
		else
			((int32_t *)out)[n] = (int32_t)v;
		p = end;
	}
	return n;
}

static void test_arch_golden(void)
{
	const char *root = getenv("KVBLEND_ROOT");
	char gpath[4096], path[4200];
	snprintf(gpath, sizeof gpath, "%s%stests/models/arch-golden.txt", root ? root : "", root ? "/" : "");
	FILE *f = fopen(gpath, "r");
	if (!ok(f != NULL, "%s opens", gpath))
		return;
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-arch");
	ASSERT(fd >= 0);
	close(fd);
	char line[256], shape[64];
	int untied, n_models = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#' || sscanf(line, "shape %63s untied %d", shape, &untied) != 2)
			continue;
		int32_t prompt[256], want[64], got[64];
		static float hid[8192], h[8192];
		int np = read_line_vals(f, "prompt", false, prompt, 256);
		int ng = read_line_vals(f, "greedy", false, want, 64);
		int nh = read_line_vals(f, "hidden", true, hid, 8192);
		struct synth_spec sp;
		struct model *m;
		ASSERT(np > 0 && ng > 0 && nh > 0 && synth_shape(shape, &sp) == 0);
		sp.tied = !untied;
		sp.seed = 1;
		if (!ok(synth_write(path, &sp) == 0 && model_load(&m, path) == 0, "%s loads", shape)) {
			diag("%s", kb_error());
			continue;
		}
		n_models++;
		ok(nh == m->hp.n_embd, "%s: the golden hidden state has n_embd %d values", shape, m->hp.n_embd);
		last_hidden(m, prompt, np, h);
		double dot = 0, aa = 0, bb = 0;
		for (int i = 0; i < nh && i < m->hp.n_embd; i++)
			dot += (double)h[i] * hid[i], aa += (double)h[i] * h[i], bb += (double)hid[i] * hid[i];
		double cos = dot / sqrt(aa * bb);
		ok(cos >= 0.99999, "%s (%s): final hidden state cosine %.7f to llama.cpp's (>= 0.99999)", shape,
		   model_arch_name(m->hp.arch), cos);
		/* greedy, prompt then one token at a time: the window slides over the cache */
		struct kv_cache kv;
		struct model_ws ws;
		int32_t pos[256 + 64], ids[256 + 64];
		float *lg = malloc((size_t)m->hp.n_vocab * sizeof *lg);
		ASSERT(lg && kv_cache_init(&kv, m, np + ng) == 0 && model_ws_init(&ws, m, 64, np + ng) == 0);
		memcpy(ids, prompt, (size_t)np * sizeof *ids);
		for (int i = 0; i < np + ng; i++)
			pos[i] = i;
		ASSERT(model_forward(m, &ws, &kv, ids, pos, np, lg, false) == 0);
		for (int t = 0; t < ng; t++) {
			got[t] = sample_greedy(lg, m->hp.n_vocab);
			ids[np + t] = got[t];
			ASSERT(model_forward(m, &ws, &kv, ids + np + t, pos + np + t, 1, lg, false) == 0);
		}
		ok(memcmp(got, want, (size_t)ng * sizeof *got) == 0, "%s: %d greedy ids equal llama.cpp's", shape, ng);
		free(lg);
		model_ws_free(&ws);
		kv_cache_free(&kv);
		model_free(m);
	}
	fclose(f);
	unlink(path);
	ok(n_models >= 6, "%d architectures checked against llama.cpp", n_models);
}

/* Each tiny architecture: a prompt run in one batch, in batches of 5, and a
 * token at a time gives the same logits (windows and per-layer rotations see
 * the cache, not only the batch). */
static void test_arch_batching(const char *shape)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-arch");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp;
	struct model *m;
	ASSERT(synth_shape(shape, &sp) == 0);
	sp.seed = 3;
	sp.tied = !strcmp(sp.arch, "gemma2");
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	enum { N = 40 };
	const int nv = m->hp.n_vocab;
	int32_t toks[N], pos[N];
	for (int i = 0; i < N; i++)
		toks[i] = 3 + (i * 37) % (nv - 3), pos[i] = i;
	float *a = malloc((size_t)nv * sizeof *a), *b = malloc((size_t)nv * sizeof *b), *c = malloc((size_t)nv * sizeof *c);
	struct kv_cache kv;
	struct model_ws ws1, ws5;
	ASSERT(kv_cache_init(&kv, m, N) == 0 && model_ws_init(&ws1, m, N, N) == 0 && model_ws_init(&ws5, m, 5, N) == 0);
	ASSERT(model_forward(m, &ws1, &kv, toks, pos, N, a, false) == 0);
	kv.n = 0;
	ASSERT(model_forward(m, &ws5, &kv, toks, pos, N, b, false) == 0);
	kv.n = 0;
	for (int i = 0; i < N; i++)
		ASSERT(model_forward(m, &ws5, &kv, toks + i, pos + i, 1, c, false) == 0);
	double e1 = tap_nerr(b, a, nv), e2 = tap_nerr(c, a, nv);
	bool finite = true;
	for (int i = 0; i < nv; i++)
		finite &= isfinite(a[i]);
	ok(finite && e1 < 1e-5 && e2 < 1e-5, "%s: one batch = batches of 5 = one token at a time (nerr %.1e, %.1e)",
	   shape, e1, e2);
	if (m->hp.n_swa > 0 && m->hp.n_swa < N) {
		int n_swa = 0;
		for (int l = 0; l < m->hp.n_layer; l++)
			n_swa += m->layers[l].swa;
		ok(n_swa > 0 && n_swa < m->hp.n_layer, "%s: %d of %d layers have the window of %d", shape, n_swa,
		   m->hp.n_layer, m->hp.n_swa);
	}
	if (m->hp.arch == ARCH_PHI3)
		ok(m->hp.n_ctx_train == sp.rope_orig_ctx && m->hp.rope_mscale > 1.0f,
		   "%s: LongRoPE: the context is the original %d tokens (short factors), magnitude %.4f", shape,
		   m->hp.n_ctx_train, m->hp.rope_mscale);
	free(a), free(b), free(c);
	model_ws_free(&ws1), model_ws_free(&ws5);
	kv_cache_free(&kv);
	model_free(m);
	unlink(path);
}

/* A Mistral-style window on a llama GGUF (attention.sliding_window): every
 * layer has it, so a token far enough back cannot reach the last logits
 * (3 layers of 8 see 21 tokens back); without the window it does. */
static void test_mistral_window(void)
{
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-swa");
	ASSERT(fd >= 0);
	close(fd);
	enum { N = 40 };
	double diff[2];
	for (int w = 0; w < 2; w++) {
		struct synth_spec sp;
		struct model *m;
		ASSERT(synth_shape("tiny-llama", &sp) == 0);
		sp.n_layer = 3;
		sp.n_swa = w ? 8 : 0;
		ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
		int n_swa = 0;
		for (int l = 0; l < m->hp.n_layer; l++)
			n_swa += m->layers[l].swa;
		if (w)
			ok(m->hp.n_swa == 8 && n_swa == 3, "llama with attention.sliding_window 8: all %d layers windowed",
			   n_swa);
		const int nv = m->hp.n_vocab;
		int32_t toks[N], pos[N];
		for (int i = 0; i < N; i++)
			toks[i] = 5 + (i * 13) % 400, pos[i] = i;
		float *a = malloc((size_t)nv * sizeof *a), *b = malloc((size_t)nv * sizeof *b);
		struct kv_cache kv;
		struct model_ws ws;
		ASSERT(kv_cache_init(&kv, m, N) == 0 && model_ws_init(&ws, m, N, N) == 0);
		ASSERT(model_forward(m, &ws, &kv, toks, pos, N, a, false) == 0);
		toks[0] = 7, toks[10] = 9;
		kv.n = 0;
		ASSERT(model_forward(m, &ws, &kv, toks, pos, N, b, false) == 0);
		diff[w] = tap_nerr(b, a, nv);
		free(a), free(b);
		model_ws_free(&ws);
		kv_cache_free(&kv);
		model_free(m);
	}
	ok(diff[1] == 0 && diff[0] > 1e-4,
	   "tokens 0 and 10 change the last logits without the window (nerr %.1e), not with it (%.1e)", diff[0],
	   diff[1]);
	unlink(path);
}

int main(void)
{
	tap_seed();
	test_stories();
	test_synthetic("llama", false, false);
	test_synthetic("qwen2", true, true);
	test_synthetic("qwen2", true, false);
	test_slot_order();
	test_converted();
	test_kquants();
	test_seqs();
	test_errors();
	test_arch_golden();
	test_mistral_window();
	static const char *const shapes[] = { "tiny-qwen3", "tiny-llama3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3" };
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
		test_arch_batching(shapes[i]);
	return done_testing();
}
