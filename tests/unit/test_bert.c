/* test_bert.c — the BERT encoder (bert.h) and its embeddings (embedder.h)
 * against a direct computation of the same layers in plain C (double
 * accumulation), on a synthetic model of all-MiniLM-L6-v2's shape: hidden
 * states and pooled vectors in f32, f16 and q8_0; batching; the tokens the
 * embedder feeds it (llama.cpp's bert-bge reference ids); truncation; errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bert.h"
#include "convert.h"
#include "embedder.h"
#include "synth.h"
#include "tap.h"

static const char *tmpdir;

/* ---- the direct computation ---- */

static const float *T(const struct gguf *g, const char *fmt, int l)
{
	char name[96];
	snprintf(name, sizeof name, fmt, l);
	const struct gguf_tensor *t = gguf_find_tensor(g, name);
	ASSERT(t && t->type == QTYPE_F32);
	return t->data;
}

/* y[o] = sum_i W[o][i] x[i] + b[o] */
static void mv(double *y, const float *W, const double *x, const float *b, int n_in, int n_out)
{
	for (int o = 0; o < n_out; o++) {
		double s = b[o];
		for (int i = 0; i < n_in; i++)
			s += (double)W[(size_t)o * n_in + i] * x[i];
		y[o] = s;
	}
}

static void ln(double *x, const float *w, const float *b, int n, double eps)
{
	double mean = 0, var = 0;
	for (int i = 0; i < n; i++)
		mean += x[i];
	mean /= n;
	for (int i = 0; i < n; i++)
		var += (x[i] - mean) * (x[i] - mean);
	double r = 1 / sqrt(var / n + eps);
	for (int i = 0; i < n; i++)
		x[i] = (x[i] - mean) * r * w[i] + b[i];
}

/* Hidden states of one sequence toks[n] into out [n][n_embd], from the f32 GGUF g. */
static void direct(const struct gguf *g, const struct bert_hparams *hp, const int32_t *toks, int n, double *x)
{
	const int d = hp->n_embd, hd = hp->head_dim, ff = hp->n_ff;
	const double eps = hp->norm_eps;
	double *q = calloc((size_t)n * d, sizeof *q), *k = calloc((size_t)n * d, sizeof *k),
	       *v = calloc((size_t)n * d, sizeof *v), *att = calloc(d, sizeof *att), *o = calloc(d, sizeof *o),
	       *h = calloc(ff, sizeof *h), *sc = calloc(n, sizeof *sc), *a = calloc((size_t)n * d, sizeof *a);
	const float *te = T(g, "token_embd.weight", 0), *pe = T(g, "position_embd.weight", 0),
		    *ty = T(g, "token_types.weight", 0);
	for (int t = 0; t < n; t++) {
		for (int i = 0; i < d; i++)
			x[(size_t)t * d + i] = (double)te[(size_t)toks[t] * d + i] + pe[(size_t)t * d + i] + ty[i];
		ln(x + (size_t)t * d, T(g, "token_embd_norm.weight", 0), T(g, "token_embd_norm.bias", 0), d, eps);
	}
	for (int l = 0; l < hp->n_layer; l++) {
		for (int t = 0; t < n; t++) {
			const double *xt = x + (size_t)t * d;
			mv(q + (size_t)t * d, T(g, "blk.%d.attn_q.weight", l), xt, T(g, "blk.%d.attn_q.bias", l), d, d);
			mv(k + (size_t)t * d, T(g, "blk.%d.attn_k.weight", l), xt, T(g, "blk.%d.attn_k.bias", l), d, d);
			mv(v + (size_t)t * d, T(g, "blk.%d.attn_v.weight", l), xt, T(g, "blk.%d.attn_v.bias", l), d, d);
		}
		/* every token sees every token */
		for (int t = 0; t < n; t++) {
			for (int hh = 0; hh < hp->n_head; hh++) {
				double mx = -1e300, sum = 0;
				for (int j = 0; j < n; j++) {
					double s = 0;
					for (int i = 0; i < hd; i++)
						s += q[(size_t)t * d + hh * hd + i] * k[(size_t)j * d + hh * hd + i];
					sc[j] = s / sqrt(hd);
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int j = 0; j < n; j++)
					sum += sc[j] = exp(sc[j] - mx);
				for (int i = 0; i < hd; i++) {
					double s = 0;
					for (int j = 0; j < n; j++)
						s += sc[j] / sum * v[(size_t)j * d + hh * hd + i];
					a[(size_t)t * d + hh * hd + i] = s;
				}
			}
		}
		for (int t = 0; t < n; t++) {
			double *xt = x + (size_t)t * d;
			mv(o, T(g, "blk.%d.attn_output.weight", l), a + (size_t)t * d, T(g, "blk.%d.attn_output.bias", l), d, d);
			for (int i = 0; i < d; i++)
				xt[i] += o[i];
			ln(xt, T(g, "blk.%d.attn_output_norm.weight", l), T(g, "blk.%d.attn_output_norm.bias", l), d, eps);
			(void)att;
			mv(h, T(g, "blk.%d.ffn_up.weight", l), xt, T(g, "blk.%d.ffn_up.bias", l), d, ff);
			for (int i = 0; i < ff; i++) /* GELU, tanh form */
				h[i] = 0.5 * h[i] * (1 + tanh(sqrt(2 / M_PI) * (h[i] + 0.044715 * h[i] * h[i] * h[i])));
			mv(o, T(g, "blk.%d.ffn_down.weight", l), h, T(g, "blk.%d.ffn_down.bias", l), ff, d);
			for (int i = 0; i < d; i++)
				xt[i] += o[i];
			ln(xt, T(g, "blk.%d.layer_output_norm.weight", l), T(g, "blk.%d.layer_output_norm.bias", l), d, eps);
		}
	}
	free(q), free(k), free(v), free(att), free(o), free(h), free(sc), free(a);
}

/* Mean (cls = 0) or first-token (cls = 1) pooling of x [n][d], L2-normalized, into v. */
static void direct_pool(const double *x, int n, int d, int cls, float *v)
{
	double s2 = 0, *acc = calloc(d, sizeof *acc);
	for (int t = 0; t < (cls ? 1 : n); t++)
		for (int i = 0; i < d; i++)
			acc[i] += x[(size_t)t * d + i];
	for (int i = 0; i < d; i++)
		s2 += acc[i] * acc[i];
	for (int i = 0; i < d; i++)
		v[i] = (float)(acc[i] / sqrt(s2));
	free(acc);
}

static double nerr_d(const float *a, const double *b, long n)
{
	double num = 0, den = 0;
	for (long i = 0; i < n; i++) {
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return sqrt(num / den);
}

/* ---- the texts ---- */

static const char *const texts[] = {
	"The rocket carried astronauts to the moon.",
	"Hello, world!",
	"A moon orbits a planet; astronauts walked on it in 1969 and came back safely.",
	"cat",
	"Tom had a big dog named Max who loved to run after the ball in the park every morning.",
};
enum { N_TEXTS = sizeof texts / sizeof *texts };

static int32_t *ids_of(const struct bert *b, const char *text, int *n)
{
	int32_t *ids;
	size_t len;
	ASSERT(tok_encode(b->tok, text, strlen(text), true, false, &ids, &len) == KB_OK);
	*n = (int)len;
	return ids;
}

/* Hidden states of bert_forward (all texts in one batch) against the direct
 * computation, and the embedder's mean and CLS vectors against it. */
static void check_f32(const char *path, const char *what)
{
	struct bert *b;
	if (!ok(bert_load(&b, path) == KB_OK, "%s: loads", what)) {
		diag("%s", kb_error());
		return;
	}
	const int d = b->hp.n_embd;
	ok(d == 384 && b->hp.n_layer == 6 && b->hp.n_head == 12 && b->hp.head_dim == 32 && b->hp.n_ff == 1536 &&
		   b->hp.n_ctx_train == 512 && b->hp.n_vocab == 30522 && b->hp.pooling == BERT_POOL_MEAN &&
		   fabsf(b->hp.norm_eps - 1e-12f) < 1e-18f,
	   "%s: all-MiniLM-L6-v2's hyper-parameters", what);
	int32_t toks[512];
	int len[N_TEXTS], n = 0;
	for (int t = 0; t < N_TEXTS; t++) {
		int32_t *ids = ids_of(b, texts[t], &len[t]);
		memcpy(toks + n, ids, (size_t)len[t] * sizeof *ids);
		n += len[t];
		free(ids);
	}
	struct bert_ws ws;
	ASSERT(bert_ws_init(&ws, b, n) == KB_OK);
	float *x = malloc((size_t)n * d * sizeof *x);
	double *want = malloc((size_t)n * d * sizeof *want);
	ASSERT(bert_forward(b, &ws, toks, len, N_TEXTS, x) == KB_OK);
	for (int t = 0, r = 0; t < N_TEXTS; r += len[t++])
		direct(b->gguf, &b->hp, toks + r, len[t], want + (size_t)r * d);
	double e = nerr_d(x, want, (long)n * d);
	/* f32 weights and activations: only summation order and exp differ */
	ok(e < 1e-5, "%s: hidden states of %d texts in one batch match a direct f32 computation (nerr %.2e < 1e-5)",
	   what, N_TEXTS, e);

	for (int cls = 0; cls < 2; cls++) {
		struct embedder *em;
		if (!ok(embedder_open(&em, path, cls ? "cls" : NULL) == KB_OK, "%s: embedder opens (%s)", what,
			cls ? "cls" : "the file's pooling")) {
			diag("%s", kb_error());
			continue;
		}
		float *got = malloc((size_t)N_TEXTS * d * sizeof *got), *ref = malloc((size_t)d * sizeof *ref);
		ASSERT(embedder_run(em, texts, N_TEXTS, got) == KB_OK);
		double worst = 0;
		for (int t = 0, r = 0; t < N_TEXTS; r += len[t++]) {
			direct_pool(want + (size_t)r * d, len[t], d, cls, ref);
			double et = tap_nerr(got + (size_t)t * d, ref, d);
			worst = et > worst ? et : worst;
		}
		ok(worst < 1e-5, "%s: %s-pooled, normalized vectors match the direct ones (worst nerr %.2e < 1e-5)", what,
		   cls ? "CLS" : "mean", worst);
		ok(strstr(embedder_describe(em), cls ? "bert, 384-d, cls pooling" : "bert, 384-d, mean pooling") != NULL,
		   "%s: describe '%s'", what, embedder_describe(em));
		free(got), free(ref);
		embedder_free(em);
	}
	free(x), free(want);
	bert_ws_free(&ws);
	bert_free(b);
}

/* The embedder's vectors of a converted file against the f32 file's. */
static void check_quant(const char *f32_path, const char *type, double tol)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/minilm-%s.gguf", tmpdir, type);
	if (!ok(convert_gguf(f32_path, path, convert_target_from_name(type), NULL, NULL) == KB_OK,
		"convert to %s", type)) {
		diag("%s", kb_error());
		return;
	}
	struct embedder *e0, *e1;
	ASSERT(embedder_open(&e0, f32_path, NULL) == KB_OK);
	if (!ok(embedder_open(&e1, path, NULL) == KB_OK, "%s: embedder opens", type)) {
		diag("%s", kb_error());
		embedder_free(e0);
		return;
	}
	const int d = embedder_dim(e0);
	float *a = malloc((size_t)N_TEXTS * d * sizeof *a), *b = malloc((size_t)N_TEXTS * d * sizeof *b);
	ASSERT(embedder_run(e0, texts, N_TEXTS, a) == KB_OK && embedder_run(e1, texts, N_TEXTS, b) == KB_OK);
	double worst = 0;
	for (int t = 0; t < N_TEXTS; t++) {
		double e = tap_nerr(b + (size_t)t * d, a + (size_t)t * d, d);
		worst = e > worst ? e : worst;
	}
	ok(worst < tol, "%s vectors near f32's (worst nerr %.2e < %g)", type, worst, tol);
	ok(strcmp(embedder_space(e0), embedder_space(e1)) != 0, "%s: a vector space of its own (the fingerprint)", type);
	free(a), free(b);
	embedder_free(e0);
	embedder_free(e1);
}

/* Batched texts give what one text at a time gives. */
static void check_batching(const char *path)
{
	struct embedder *e;
	ASSERT(embedder_open(&e, path, NULL) == KB_OK);
	const int d = embedder_dim(e);
	float *all = malloc((size_t)N_TEXTS * d * sizeof *all), *one = malloc((size_t)N_TEXTS * d * sizeof *one);
	ASSERT(embedder_run(e, texts, N_TEXTS, all) == KB_OK);
	for (int t = 0; t < N_TEXTS; t++)
		ASSERT(embedder_run(e, texts + t, 1, one + (size_t)t * d) == KB_OK);
	double e1 = tap_nerr(all, one, (long)N_TEXTS * d);
	ok(e1 < 1e-6, "%d texts of different lengths in one batch = one at a time (nerr %.2e)", N_TEXTS, e1);
	free(all), free(one);
	embedder_free(e);
}

/* Prefixes: a passage prefix is the same as writing it before the text, and a
 * space of its own; a query prefix applies to queries only, and leaves the
 * space alone (queries are not stored). */
static void check_prefixes(const char *path)
{
	struct embedder *plain, *pre;
	ASSERT(embedder_open(&plain, path, NULL) == KB_OK && embedder_open(&pre, path, NULL) == KB_OK);
	const int d = embedder_dim(plain);
	const char *text = "the cat sat on the mat", *joined_p = "passage: the cat sat on the mat",
		   *joined_q = "query: the cat sat on the mat";
	float *a = malloc((size_t)d * sizeof *a), *b = malloc((size_t)d * sizeof *b);
	char space0[65];
	snprintf(space0, sizeof space0, "%s", embedder_space(pre));
	ASSERT(embedder_set_prefixes(pre, NULL, "query: ") == KB_OK);
	ok(!strcmp(space0, embedder_space(pre)), "a query prefix leaves the vector space alone");
	ASSERT(embedder_run(pre, &text, 1, a) == KB_OK && embedder_run(plain, &text, 1, b) == KB_OK);
	ok(tap_nerr(a, b, d) == 0, "a query prefix does not touch passages");
	ASSERT(embedder_run_query(pre, text, a) == KB_OK && embedder_run(plain, &joined_q, 1, b) == KB_OK);
	ok(tap_nerr(a, b, d) == 0, "embedder_run_query = the text after the query prefix");
	ASSERT(embedder_set_prefixes(pre, "passage: ", "query: ") == KB_OK);
	ASSERT(embedder_run(pre, &text, 1, a) == KB_OK && embedder_run(plain, &joined_p, 1, b) == KB_OK);
	ok(tap_nerr(a, b, d) == 0, "embedder_run = the text after the passage prefix");
	ok(strcmp(space0, embedder_space(pre)) != 0, "a passage prefix makes a space of its own");
	ASSERT(embedder_set_prefixes(pre, "", NULL) == KB_OK);
	ok(!strcmp(space0, embedder_space(pre)), "no prefix again: the plain space");
	free(a), free(b);
	embedder_free(plain);
	embedder_free(pre);
}

/* The embedder tokenizes as llama.cpp does: a few of bert-bge's reference cases
 * (.inp / .out, ids without the [CLS] [SEP] frame) through the model's tokenizer,
 * and the embedder's vector of each text equals the direct one of [CLS] ids [SEP]. */
static void check_ids(const char *path)
{
	const char *inp = tap_shared("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf.inp");
	char *in_text = NULL, *out_text = NULL;
	size_t n_in = 0, n_out = 0;
	FILE *f;
	if (inp && (f = fopen(inp, "r"))) {
		in_text = calloc(1, 1 << 16);
		n_in = fread(in_text, 1, (1 << 16) - 1, f);
		fclose(f);
	}
	const char *outp = tap_shared("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf.out");
	if (outp && (f = fopen(outp, "r"))) {
		out_text = calloc(1, 1 << 16);
		n_out = fread(out_text, 1, (1 << 16) - 1, f);
		fclose(f);
	}
	if (!n_in || !n_out) {
		ok(1, "# SKIP bert-bge reference ids absent");
		free(in_text), free(out_text);
		return;
	}
	struct bert *b;
	struct embedder *e;
	ASSERT(bert_load(&b, path) == KB_OK && embedder_open(&e, path, NULL) == KB_OK);
	const int d = b->hp.n_embd;
	char *ip = in_text, *op = out_text;
	int checked = 0, good = 0, vec_good = 0;
	float *got = malloc((size_t)d * sizeof *got), *ref = malloc((size_t)d * sizeof *ref);
	while (ip && op && *op && checked < 8) {
		char *sep = strstr(ip, "\n__ggml_vocab_test__\n"), *nl = strchr(op, '\n');
		if (!sep || !nl)
			break;
		*sep = '\0', *nl = '\0';
		int32_t want[256];
		int n_want = 0;
		for (char *p = op, *end; n_want < 256; p = end) {
			long v = strtol(p, &end, 10);
			if (end == p)
				break;
			want[n_want++] = (int32_t)v;
		}
		if (n_want >= 2 && n_want < 64) { /* a text with words */
			int32_t *ids;
			size_t n;
			ASSERT(tok_encode(b->tok, ip, strlen(ip), false, false, &ids, &n) == KB_OK);
			good += (int)n == n_want && !memcmp(ids, want, n * sizeof *ids);
			free(ids);
			int32_t framed[66];
			framed[0] = 101;
			memcpy(framed + 1, want, (size_t)n_want * sizeof *want);
			framed[n_want + 1] = 102;
			double *x = malloc((size_t)(n_want + 2) * d * sizeof *x);
			direct(b->gguf, &b->hp, framed, n_want + 2, x);
			direct_pool(x, n_want + 2, d, 0, ref);
			const char *one[1] = { ip };
			ASSERT(embedder_run(e, one, 1, got) == KB_OK);
			vec_good += tap_nerr(got, ref, d) < 1e-5;
			free(x);
			checked++;
		}
		ip = sep + strlen("\n__ggml_vocab_test__\n");
		op = nl + 1;
	}
	ok(checked >= 4 && good == checked, "the model's tokenizer gives bert-bge's reference ids (%d of %d texts)",
	   good, checked);
	ok(checked >= 4 && vec_good == checked,
	   "the embedder's vector of each is the direct one of [CLS] ids [SEP] (%d of %d)", vec_good, checked);
	free(got), free(ref), free(in_text), free(out_text);
	embedder_free(e);
	bert_free(b);
}

/* tiny-bert (generated WordPiece, context 64): a text longer than the context is
 * cut to [CLS] + 62 tokens + [SEP]; CLS pooling from the file's pooling_type. */
static void check_tiny(void)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/tiny-bert.gguf", tmpdir);
	struct synth_spec sp;
	ASSERT(synth_shape("tiny-bert", &sp) == KB_OK);
	sp.type = QTYPE_F32, sp.seed = 9, sp.pooling = BERT_POOL_CLS;
	if (!ok(synth_write(path, &sp) == KB_OK, "tiny-bert: written (generated WordPiece vocabulary)")) {
		diag("%s", kb_error());
		return;
	}
	struct bert *b;
	struct embedder *e;
	ASSERT(bert_load(&b, path) == KB_OK && embedder_open(&e, path, NULL) == KB_OK);
	ok(strstr(embedder_describe(e), "cls pooling") != NULL, "bert.pooling_type 2: CLS pooling ('%s')",
	   embedder_describe(e));
	char text[2048] = "";
	for (int i = 0; i < 40; i++)
		strcat(text, i % 3 ? "ab, " : "cd! ");
	int n;
	int32_t *ids = ids_of(b, text, &n);
	ok(n > 64 && ids[0] == 2 && ids[n - 1] == 3, "a long text: %d tokens framed by [CLS] 2 .. [SEP] 3", n);
	ids[63] = ids[n - 1]; /* the cut the embedder makes */
	const int d = b->hp.n_embd;
	double *x = malloc((size_t)64 * d * sizeof *x);
	float *got = malloc((size_t)d * sizeof *got), *ref = malloc((size_t)d * sizeof *ref);
	direct(b->gguf, &b->hp, ids, 64, x);
	direct_pool(x, 64, d, 1, ref);
	const char *one[1] = { text };
	ASSERT(embedder_run(e, one, 1, got) == KB_OK);
	double err = tap_nerr(got, ref, d);
	ok(err < 1e-5, "cut to the context, [SEP] kept: the vector of [CLS] + 62 tokens + [SEP] (nerr %.2e)", err);
	struct bert_ws ws;
	ASSERT(bert_ws_init(&ws, b, 128) == KB_OK);
	int len = 65;
	float *hx = malloc((size_t)128 * d * sizeof *hx);
	ok(bert_forward(b, &ws, ids, &len, 1, hx) == KB_ERR_ARG && strstr(kb_error(), "exceeds the context of 64"),
	   "bert_forward refuses a sequence past the context: %s", kb_error());
	int32_t bad = 400;
	len = 1;
	ok(bert_forward(b, &ws, &bad, &len, 1, hx) == KB_ERR_ARG && strstr(kb_error(), "out of range"),
	   "and a token id out of range: %s", kb_error());
	free(hx), free(x), free(got), free(ref), free(ids);
	bert_ws_free(&ws);
	embedder_free(e);
	bert_free(b);
}

/* Bad files and poolings: errors naming the thing. */
static void check_errors(void)
{
	char path[4300], bad[4300];
	snprintf(path, sizeof path, "%s/tiny-bert.gguf", tmpdir);
	snprintf(bad, sizeof bad, "%s/missing.gguf", tmpdir);
	struct embedder *e = NULL;
	ok(embedder_open(&e, path, "last") == KB_ERR_ARG && strstr(kb_error(), "pooling 'last' does not suit a BERT"),
	   "pool last on a bert: %s", kb_error());
	/* the same file without blk.1.ffn_up.bias: rewrite it from the reader, skipping that tensor */
	struct gguf *g;
	ASSERT(gguf_open(&g, path) == KB_OK);
	struct gguf_writer *w = gguf_writer_init();
	for (uint64_t i = 0; i < g->n_kv; i++)
		ASSERT(gguf_writer_copy_kv(w, g, i) == KB_OK);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.data);
		if (strcmp(name, "blk.1.ffn_up.bias"))
			ASSERT(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->size) == KB_OK);
	}
	ASSERT(gguf_writer_write(w, bad) == KB_OK);
	gguf_writer_free(w);
	gguf_close(g);
	ok(embedder_open(&e, bad, NULL) == KB_ERR_FORMAT && strstr(kb_error(), "missing tensor 'blk.1.ffn_up.bias'"),
	   "a missing tensor is named: %s", kb_error());
	unlink(bad);
	unlink(path);
}

int main(void)
{
	tmpdir = tap_tmpdir();
	char path[4300];
	snprintf(path, sizeof path, "%s/minilm-f32.gguf", tmpdir);
	struct synth_spec sp;
	ASSERT(synth_shape("all-minilm-l6-v2", &sp) == KB_OK);
	sp.type = QTYPE_F32, sp.seed = 3;
	sp.tokenizer_json = tap_shared("tokenizers/all-MiniLM-L6-v2/tokenizer.json");
	const char *what = sp.tokenizer_json ? "MiniLM (real vocabulary)" : "MiniLM (generated vocabulary)";
	if (!sp.tokenizer_json)
		diag("../shared is absent: all-MiniLM-L6-v2's shape with a generated WordPiece vocabulary");
	if (!ok(synth_write(path, &sp) == KB_OK, "synthetic all-minilm-l6-v2 (f32) written")) {
		diag("%s", kb_error());
		return done_testing();
	}
	check_f32(path, what);
	check_quant(path, "f16", 2e-3);
	check_quant(path, "q8_0", 2e-2);
	check_batching(path);
	check_prefixes(path);
	if (sp.tokenizer_json)
		check_ids(path);
	else
		skip("bert-bge reference ids: ../shared is absent");
	check_tiny();
	check_errors();
	return done_testing(); /* tap_tmpdir() goes at exit */
}
