/* fuzz_gguf.c — fuzz target for the GGUF reader (and the fingerprints).
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS]     (clang -fsanitize=fuzzer,address,undefined)
 * standalone:  cc -DKVBLEND_FUZZ_MAIN ... builds a main() that runs the target
 *              over the files and directories named on the command line, and
 *              `fuzz_gguf --write-seeds DIR` writes the seed corpus with the
 *              GGUF writer (tests/fuzz/corpus/gguf/ was made that way).
 *
 * Every input must either open, with every key, array element, string and
 * tensor byte range readable, or fail with KB_ERR_FORMAT and a message naming
 * the input; anything else (a crash, a sanitizer report, an ASSERT) is a bug.
 */
#include <stdint.h>
#include <string.h>

#include "gguf.h"
#include "hash.h"
#include "quant.h"

static volatile uint64_t sink;

static void touch_kv(const struct gguf *g, uint64_t i)
{
	const struct gguf_kv *kv = &g->kv[i];
	char *key = gguf_str_dup(kv->key);
	if (!key)
		return;
	/* a key holding a NUL byte cannot be named by a C string */
	if (memchr(kv->key.data, 0, kv->key.len)) {
		free(key);
		return;
	}
	ASSERT(gguf_find_key(g, key) == (int64_t)i);
	uint32_t u;
	int64_t s;
	float f;
	bool b;
	struct gguf_str str;
	enum gguf_vtype t;
	uint64_t n;
	const void *data;
	const struct gguf_str *strs;
	/* every getter on every key: OK or a type/range error, never a crash */
	int rc[7] = {
		gguf_get_u32(g, key, &u), gguf_get_i64(g, key, &s), gguf_get_f32(g, key, &f),
		gguf_get_bool(g, key, &b), gguf_get_str(g, key, &str), gguf_get_arr(g, key, &t, &n, &data),
		gguf_get_arr_str(g, key, &strs, &n),
	};
	for (int k = 0; k < 7; k++)
		ASSERT(rc[k] == KB_OK || rc[k] == KB_ERR_FORMAT);
	if (rc[4] == KB_OK)
		for (uint64_t j = 0; j < str.len; j++)
			sink += (uint8_t)str.data[j];
	if (rc[5] == KB_OK && t != GGUF_TYPE_STRING) {
		for (uint64_t j = 0; j < n; j++)
			sink += (uint64_t)gguf_arr_get_i64(t, data, j) + (uint64_t)(gguf_arr_get_f64(t, data, j) != 0);
	}
	if (rc[6] == KB_OK)
		for (uint64_t j = 0; j < n; j++)
			if (strs[j].len)
				sink += (uint8_t)strs[j].data[0] + (uint8_t)strs[j].data[strs[j].len - 1];
	free(key);
}

static void touch_tensor(const struct gguf *g, uint64_t i)
{
	const struct gguf_tensor *t = &g->tensors[i];
	const uint8_t *p = t->data;
	ASSERT(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
	ASSERT(p >= g->base + g->data_offset && t->size <= g->size - (size_t)(p - g->base));
	if (t->size) {
		sink += p[0] + p[t->size - 1];
		sink += p[t->size / 2];
	}
	char *name = gguf_str_dup(t->name);
	if (name && !memchr(t->name.data, 0, t->name.len))
		ASSERT(gguf_find_tensor(g, name) == t);
	free(name);
	/* where quant.c can convert the type, the first row converts */
	const struct qtype_traits *tr = qtype_traits(t->type);
	if (tr && t->ne[0] > 0 && t->ne[0] <= 4096 && t->n_elements > 0) {
		float row[4096];
		tr->to_float(t->data, row, t->ne[0]);
		sink += row[0] != 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf *g;
	int rc = gguf_open_mem(&g, data, size, "fuzz");
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_NOMEM);
		ASSERT(strncmp(kb_error(), "'fuzz': ", 8) == 0 || rc == KB_ERR_NOMEM);
		return 0;
	}
	for (uint64_t i = 0; i < g->n_kv; i++)
		touch_kv(g, i);
	for (uint64_t i = 0; i < g->n_tensors; i++)
		touch_tensor(g, i);
	uint8_t fp[32];
	gguf_fingerprint(g, fp);
	sink += fp[0];
	gguf_tokenizer_fingerprint(g, fp);
	sink += fp[0];
	gguf_close(g);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_gguf"
#include "driver.h"

/* ---- the seed corpus ---- */

static int seed(const char *dir, const char *name, struct gguf_writer *w)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int rc = gguf_writer_write(w, path);
	gguf_writer_free(w);
	if (rc != KB_OK)
		fprintf(stderr, "fuzz_gguf: %s\n", kb_error());
	return rc != KB_OK;
}

static int write_seeds(const char *dir)
{
	static const char *toks[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81" "a", "<0x0A>" };
	static const float scores[] = { 0, 0, 0, -1.5f, -2 };
	static const int32_t types[] = { 2, 3, 3, 1, 6 };
	static const uint8_t u8s[] = { 0, 255 };
	static const int8_t i8s[] = { -128, 127 };
	static const uint16_t u16s[] = { 0, 65535 };
	static const int16_t i16s[] = { -32768, 32767 };
	static const uint32_t u32s[] = { 0, 4294967295u };
	static const uint64_t u64s[] = { 0, UINT64_MAX };
	static const int64_t i64s[] = { INT64_MIN, INT64_MAX };
	static const double f64s[] = { -0.0, 1e308 };
	static const uint8_t bools[] = { 1, 0 };
	static uint8_t blob[2048];
	int bad = 0;
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (uint8_t)(i * 37 + 11);

	/* header only */
	bad |= seed(dir, "empty.seed", gguf_writer_init());

	/* metadata of every kind */
	struct gguf_writer *w = gguf_writer_init();
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "general.name", "seed");
	gguf_writer_set_u32(w, "llama.block_count", 1);
	gguf_writer_set_i32(w, "llama.i32", -1);
	gguf_writer_set_u64(w, "llama.u64", 1);
	gguf_writer_set_f32(w, "llama.rope.freq_base", 10000);
	gguf_writer_set_bool(w, "llama.flag", true);
	gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, u8s, 2);
	gguf_writer_set_arr(w, "a.i8", GGUF_TYPE_INT8, i8s, 2);
	gguf_writer_set_arr(w, "a.u16", GGUF_TYPE_UINT16, u16s, 2);
	gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, i16s, 2);
	gguf_writer_set_arr(w, "a.u32", GGUF_TYPE_UINT32, u32s, 2);
	gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, types, 5);
	gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, scores, 5);
	gguf_writer_set_arr(w, "a.u64", GGUF_TYPE_UINT64, u64s, 2);
	gguf_writer_set_arr(w, "a.i64", GGUF_TYPE_INT64, i64s, 2);
	gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, f64s, 2);
	gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, bools, 2);
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
	bad |= seed(dir, "metadata.seed", w);

	/* a tiny model: tokenizer and a few tensors of the supported types */
	w = gguf_writer_init();
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_u32(w, "llama.embedding_length", 32);
	gguf_writer_set_u32(w, "llama.block_count", 1);
	gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
	gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 5);
	gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 5);
	int64_t ne_norm[1] = { 32 }, ne_mat[2] = { 32, 3 }, ne_4d[4] = { 2, 2, 2, 2 };
	gguf_writer_add_tensor(w, "output_norm.weight", QTYPE_F32, 1, ne_norm, blob, 128);
	gguf_writer_add_tensor(w, "blk.0.attn_q.weight", QTYPE_Q8_0, 2, ne_mat, blob, 3 * 34);
	gguf_writer_add_tensor(w, "blk.0.attn_k.weight", QTYPE_Q4_0, 2, ne_mat, blob, 3 * 18);
	gguf_writer_add_tensor(w, "blk.0.attn_v.weight", QTYPE_F16, 2, ne_mat, blob, 3 * 64);
	gguf_writer_add_tensor(w, "four.d", QTYPE_BF16, 4, ne_4d, blob, 32);
	bad |= seed(dir, "tiny-model.seed", w);

	/* another alignment, a K-quant and a zero-sized tensor */
	w = gguf_writer_init();
	gguf_writer_set_u32(w, "general.alignment", 64);
	gguf_writer_set_str(w, "general.architecture", "qwen2");
	int64_t ne_k[2] = { 256, 1 }, ne_0[2] = { 0, 4 };
	gguf_writer_add_tensor(w, "q4_k", QTYPE_Q4_K, 2, ne_k, blob, 144);
	gguf_writer_add_tensor(w, "zero", QTYPE_F32, 2, ne_0, blob, 0);
	gguf_writer_add_tensor(w, "q6_k", QTYPE_Q6_K, 1, ne_k, blob, 210);
	bad |= seed(dir, "align64.seed", w);
	return bad;
}

#endif
