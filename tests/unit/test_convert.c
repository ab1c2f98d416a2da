/* test_convert.c — convert_gguf(), what kvblend-quantize runs: every target type
 * on a synthetic model (types chosen per tensor, values within each type's
 * error, metadata kept, general.file_type set), copies byte for byte, the
 * errors, the per-tensor choices of the mixes, and stories260K to q8_0 when
 * ../shared is there. */
#include <errno.h>
#include <sys/stat.h>

#include "convert.h"
#include "gguf.h"
#include "quant.h"
#include "tap.h"

static char tmpdir[256];

/* name in the test's directory (a static buffer: copy it to keep it) */
static const char *tmp_path(const char *name)
{
	static char buf[512];
	snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
	return buf;
}

static int has(const char *needle)
{
	return strstr(kb_error(), needle) != NULL;
}

/* The synthetic model's tensors (f32) and what each becomes for a q8_0 target. */
static const struct {
	const char *name;
	uint32_t n_dims;
	int64_t ne[3];
	enum convert_action q8_action;
} specs[] = {
	{ "token_embd.weight", 2, { 64, 10 }, CONVERT_CONVERTED },
	{ "blk.0.attn_norm.weight", 1, { 64 }, CONVERT_KEPT_1D },
	{ "blk.0.attn_q.weight", 2, { 64, 64 }, CONVERT_CONVERTED },
	{ "blk.0.ffn_down.weight", 2, { 48, 64 }, CONVERT_KEPT_BLOCKS },
	{ "blk.0.experts", 3, { 32, 4, 2 }, CONVERT_CONVERTED },
	{ "output.weight", 2, { 64, 10 }, CONVERT_CONVERTED },
};
#define N_SPECS (sizeof specs / sizeof *specs)

static float *vals[N_SPECS];
static int64_t nvals[N_SPECS];

static int write_synth(const char *path, int extra_type)
{
	struct gguf_writer *w = gguf_writer_init();
	static const char *toks[] = { "a", "b", "c" };
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_u32(w, "general.file_type", 0);
	gguf_writer_set_u32(w, "llama.embedding_length", 64);
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
	gguf_writer_set_str(w, "general.name", "synth");
	for (size_t i = 0; i < N_SPECS; i++)
		gguf_writer_add_tensor(w, specs[i].name, QTYPE_F32, specs[i].n_dims, specs[i].ne, vals[i],
				       (size_t)nvals[i] * 4);
	static uint8_t kq[144 * 2];
	static int32_t ints[5] = { 1, 2, 3, 4, 5 };
	int64_t ne_k[2] = { 256, 2 }, ne_i[1] = { 5 };
	if (extra_type == QTYPE_Q4_K)
		gguf_writer_add_tensor(w, "kquant.weight", QTYPE_Q4_K, 2, ne_k, kq, sizeof kq);
	if (extra_type == 26)
		gguf_writer_add_tensor(w, "positions", 26, 1, ne_i, ints, sizeof ints);
	int rc = gguf_writer_write(w, path);
	gguf_writer_free(w);
	return rc;
}

struct seen {
	int n;
	enum convert_action act[16];
	int to[16];
};

static void on_tensor(void *ctx, const struct convert_tensor *t)
{
	struct seen *s = ctx;
	if (s->n < 16) {
		s->act[s->n] = t->action;
		s->to[s->n] = t->to;
	}
	s->n++;
}

/* Max normalized error of the converted tensors vs the originals, -1 on a structural mismatch. */
static double check_output(const char *path, int type, int ftype)
{
	struct gguf *g;
	if (gguf_open(&g, path) != KB_OK) {
		diag("%s", kb_error());
		return -1;
	}
	double worst = 0;
	uint32_t ft = 99;
	struct gguf_str name;
	int good = g->n_tensors == N_SPECS && gguf_get_u32(g, "general.file_type", &ft) == KB_OK && ft == (uint32_t)ftype &&
		   gguf_get_str(g, "general.name", &name) == KB_OK && gguf_str_eq(name, "synth") &&
		   gguf_str_eq(g->kv[1].key, "general.file_type"); /* replaced in place */
	uint32_t qv;
	good &= (gguf_get_u32(g, "general.quantization_version", &qv) == KB_OK) == qtype_traits(type)->is_quantized;
	for (size_t i = 0; good && i < N_SPECS; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		int want = specs[i].n_dims < 2 || specs[i].ne[0] % qtype_traits(type)->blck_size ? QTYPE_F32 : type;
		good &= gguf_str_eq(t->name, specs[i].name) && t->type == want && t->n_dims == specs[i].n_dims &&
			t->n_elements == nvals[i];
		if (!good)
			break;
		float *back = malloc((size_t)nvals[i] * sizeof *back);
		qtype_traits(t->type)->to_float(t->data, back, nvals[i]);
		double e = tap_nerr(back, vals[i], nvals[i]);
		worst = e > worst ? e : worst;
		free(back);
	}
	gguf_close(g);
	return good ? worst : -1;
}

static void test_synth(void)
{
	for (size_t i = 0; i < N_SPECS; i++) {
		nvals[i] = 1;
		for (uint32_t d = 0; d < specs[i].n_dims; d++)
			nvals[i] *= specs[i].ne[d];
		vals[i] = malloc((size_t)nvals[i] * sizeof(float));
		for (int64_t j = 0; j < nvals[i]; j++)
			vals[i][j] = tap_randf(-2, 2);
	}
	char in[512];
	snprintf(in, sizeof in, "%s", tmp_path("synth.gguf"));
	ok(write_synth(in, -1) == KB_OK, "synthetic f32 model written");

	static const struct {
		int type, ftype;
		double tol;
	} cases[] = {
		{ QTYPE_F32, 0, 0 }, { QTYPE_F16, 1, 1e-3 }, { QTYPE_BF16, 32, 8e-3 },
		{ QTYPE_Q8_0, 7, 1e-2 }, { QTYPE_Q4_0, 2, 0.15 },
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		const char *name = qtype_name(cases[c].type);
		struct convert_stats st;
		struct seen seen = { 0 };
		struct convert_opts opts = { .on_tensor = on_tensor, .ctx = &seen };
		char out[512];
		snprintf(out, sizeof out, "%s/synth-%s.gguf", tmpdir, name);
		int rc = convert_gguf(in, out, cases[c].type, &opts, &st);
		if (!ok(rc == KB_OK, "convert to %s", name)) {
			diag("%s", kb_error());
			continue;
		}
		double e = check_output(out, cases[c].type, cases[c].ftype);
		if (!ok(e >= 0 && e <= cases[c].tol, "%s: types per tensor, file_type %d, metadata kept, error %.2g <= %.2g",
			name, cases[c].ftype, e, cases[c].tol))
			diag("error %g", e);
		ok(seen.n == (int)N_SPECS && st.n_tensors == N_SPECS && st.n_kept_1d == 1 &&
		   st.in_tensor_bytes > 0 && st.out_file_bytes > 0 && st.in_file_bytes > 0,
		   "%s: the callback saw every tensor, stats counted", name);
		if (cases[c].type == QTYPE_Q8_0) {
			int acts = 1;
			for (size_t i = 0; i < N_SPECS; i++)
				acts &= seen.act[i] == specs[i].q8_action;
			ok(acts && st.n_converted == 4 && st.n_kept_blocks == 1 && st.n_copied == 0,
			   "q8_0: converted / kept-1D / kept-blocks decided per tensor");
			/* 1-D and ffn_down in f32; 5632 elements in q8_0 blocks of 32 x 34 bytes */
			uint64_t want = 64 * 4 + 48 * 64 * 4 + 5632 / 32 * 34;
			ok(st.out_tensor_bytes == want && st.in_tensor_bytes == 35072,
			   "q8_0: tensor bytes %llu -> %llu (want %llu)", (unsigned long long)st.in_tensor_bytes,
			   (unsigned long long)st.out_tensor_bytes, (unsigned long long)want);
			/* q8_0 -> q8_0: copied byte for byte */
			char again[512];
			snprintf(again, sizeof again, "%s/again.gguf", tmpdir);
			rc = convert_gguf(out, again, QTYPE_Q8_0, NULL, &st);
			char *a = NULL, *b = NULL;
			size_t na = 0, nb = 0;
			ok(rc == KB_OK && st.n_copied == 4 && st.n_converted == 0 && kb_read_file(out, &a, &na) == KB_OK &&
			   kb_read_file(again, &b, &nb) == KB_OK && na == nb && memcmp(a, b, na) == 0,
			   "q8_0 -> q8_0 copies: the same file byte for byte");
			free(a);
			free(b);
		}
		if (cases[c].type == QTYPE_F32)
			ok(st.n_copied == 5 && st.out_tensor_bytes == st.in_tensor_bytes, "f32 -> f32: every tensor copied");
	}

	/* errors */
	struct convert_stats st;
	int rc = convert_gguf(in, tmp_path("x.gguf"), QTYPE_Q4_1, NULL, &st);
	ok(rc == KB_ERR_ARG && has("cannot convert to q4_1"), "q4_1 is not a target: KB_ERR_ARG");
	rc = convert_gguf(tmp_path("absent.gguf"), tmp_path("x.gguf"), QTYPE_Q8_0, NULL, &st);
	ok(rc == KB_ERR_IO && has("absent.gguf"), "missing input: KB_ERR_IO naming it");
	rc = convert_gguf(in, tmp_path("no/dir/x.gguf"), QTYPE_Q8_0, NULL, &st);
	ok(rc == KB_ERR_IO && has("no/dir/x.gguf"), "unwritable output: KB_ERR_IO naming it");
	char kq[512];
	snprintf(kq, sizeof kq, "%s", tmp_path("kq.gguf"));
	ok(write_synth(kq, QTYPE_Q4_K) == KB_OK, "a model with a q4_K tensor written");
	if (!qtype_traits(QTYPE_Q4_K)) {
		rc = convert_gguf(kq, tmp_path("x.gguf"), QTYPE_Q8_0, NULL, &st);
		ok(rc == KB_ERR_UNSUPPORTED && has("tensor 'kquant.weight' has type q4_K") &&
		   access(tmp_path("x.gguf"), F_OK) != 0, "a type without conversions: KB_ERR_UNSUPPORTED, no output");
	} else {
		rc = convert_gguf(kq, tmp_path("x.gguf"), QTYPE_Q8_0, NULL, &st);
		ok(rc == KB_OK && st.n_converted == 5, "q4_K converts now that quant.c supports it");
	}
	snprintf(kq, sizeof kq, "%s", tmp_path("ints.gguf"));
	ok(write_synth(kq, 26) == KB_OK, "a model with an i32 tensor written");
	rc = convert_gguf(kq, tmp_path("ints-q8.gguf"), QTYPE_Q8_0, NULL, &st);
	struct gguf *g;
	int good = rc == KB_OK && st.n_kept_as_is == 1 && gguf_open(&g, tmp_path("ints-q8.gguf")) == KB_OK;
	if (good) {
		const struct gguf_tensor *t = gguf_find_tensor(g, "positions");
		good = t && t->type == 26 && kb_le32((const uint8_t *)t->data + 16) == 5;
		gguf_close(g);
	}
	ok(good, "integer tensors are copied as they are");
	for (size_t i = 0; i < N_SPECS; i++)
		free(vals[i]);
}

static void test_stories(void)
{
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	if (!path) {
		diag("skipping stories260K: ../shared/models/stories260Ktok512.gguf is absent");
		return;
	}
	char out[512];
	snprintf(out, sizeof out, "%s", tmp_path("stories-q8_0.gguf"));
	struct convert_stats st;
	int rc = convert_gguf(path, out, QTYPE_Q8_0, NULL, &st);
	if (!ok(rc == KB_OK, "stories260K -> q8_0")) {
		diag("%s", kb_error());
		return;
	}
	/* 5 layers: attn_norm, ffn_norm (1-D) + output_norm; ffn_down has 172 columns */
	ok(st.n_tensors == 48 && st.n_kept_1d == 11 && st.n_kept_blocks == 5 && st.n_converted == 32,
	   "stories260K: 32 converted, 11 1-D, 5 ffn_down with 172 columns kept in f32");
	struct gguf *a, *b;
	if (gguf_open(&a, path) != KB_OK || gguf_open(&b, out) != KB_OK) {
		ok(0, "open both: %s", kb_error());
		return;
	}
	uint8_t fa[32], fb[32], ta[32], tb[32];
	gguf_fingerprint(a, fa);
	gguf_fingerprint(b, fb);
	gguf_tokenizer_fingerprint(a, ta);
	gguf_tokenizer_fingerprint(b, tb);
	ok(memcmp(ta, tb, 32) == 0 && memcmp(fa, fb, 32) != 0,
	   "same tokenizer fingerprint; a different model fingerprint (the tensor types changed)");
	ok(b->n_kv == a->n_kv + 2, "every key kept, general.file_type and quantization_version added");
	double worst = 0;
	for (uint64_t i = 0; i < a->n_tensors; i++) {
		const struct gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
		float *fx = malloc((size_t)x->n_elements * 4), *fy = malloc((size_t)x->n_elements * 4);
		qtype_traits(x->type)->to_float(x->data, fx, x->n_elements);
		qtype_traits(y->type)->to_float(y->data, fy, y->n_elements);
		double e = tap_nerr(fy, fx, x->n_elements);
		worst = e > worst ? e : worst;
		free(fx);
		free(fy);
	}
	ok(worst < 0.01, "stories260K q8_0 weights within 1%% of f32 (worst tensor %.2g)", worst);
	gguf_close(a);
	gguf_close(b);
}

/* What convert_tensor_type() picks for single tensors, as llama.cpp's quantizer does. */
static void test_types(void)
{
	ok(convert_tensor_type(QTYPE_Q8_0, "blk.0.attn_q.weight", 2, 384, 6, false, NULL) == QTYPE_Q8_0,
	   "a matrix gets the target type");
	ok(convert_tensor_type(QTYPE_Q8_0, "blk.0.attn_q.bias", 1, 384, 6, false, NULL) == QTYPE_F32,
	   "a vector stays f32");
	ok(convert_tensor_type(QTYPE_Q8_0, "position_embd.weight", 2, 384, 6, false, NULL) == QTYPE_F32 &&
		   convert_tensor_type(CONVERT_Q4_K_M, "token_types.weight", 2, 384, 6, false, NULL) == QTYPE_F32,
	   "BERT's position and token-type tables stay f32");
	ok(convert_tensor_type(QTYPE_Q4_K, "blk.0.ffn_up.weight", 2, 384, 6, false, NULL) == QTYPE_Q8_0,
	   "a K-quant row of 384 (not whole super-blocks) falls back to q8_0");
	ok(convert_tensor_type(CONVERT_Q4_K_M, "token_embd.weight", 2, 512, 8, false, NULL) == QTYPE_Q6_K,
	   "q4_k_m: a tied token_embd gets q6_k");
}

int main(void)
{
	tap_seed();
	snprintf(tmpdir, sizeof tmpdir, "%s/kvb-convert-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_types();
	test_synth();
	test_stories();
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
