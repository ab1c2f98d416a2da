/* test_tok — the SentencePiece-BPE tokenizer against llama.cpp's own vocabulary tests
 * (../shared/tokenizers/llamacpp-vocab: llama-spm and phi-3, every case of .inp/.out),
 * the golden prompt of stories260K, round trips, BOS/EOG, special tokens, and the
 * errors for vocabularies it does not handle. */
#include <jansson.h>
#include <stdbool.h>

#include "gguf.h"
#include "tap.h"
#include "tok.h"
#include "util.h"

/* ---- helpers ---- */

static char *shared_dup(const char *rel)
{
	const char *p = tap_shared(rel);
	return p ? strdup(p) : NULL;
}

static struct tok *load(const char *path, struct gguf **gp)
{
	struct gguf *g;
	struct tok *t;
	if (gguf_open(&g, path)) {
		diag("%s", kb_error());
		return NULL;
	}
	if (tok_load(&t, g)) {
		diag("%s", kb_error());
		gguf_close(g);
		return NULL;
	}
	if (gp)
		*gp = g;
	else
		gguf_close(g);
	return t;
}

/* Encode s (no BOS unless asked); returns the count, ids in *ids (caller frees). */
static size_t enc(const struct tok *t, const char *s, size_t len, bool bos, bool special, int32_t **ids)
{
	size_t n = 0;
	if (tok_encode(t, s, len, bos, special, ids, &n)) {
		diag("tok_encode: %s", kb_error());
		*ids = NULL;
		return (size_t)-1;
	}
	return n;
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
	return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void diag_ids(const char *what, const int32_t *v, size_t n)
{
	char buf[2048];
	size_t p = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && p < sizeof buf - 16; i++)
		p += (size_t)snprintf(buf + p, sizeof buf - p, " %d", v[i]);
	diag("%s:%s", what, buf);
}

/* All the text of ids, decoded and concatenated (malloc()ed, NUL-terminated). */
static char *decode_all(const struct tok *t, const int32_t *ids, size_t n, bool special, size_t *len)
{
	size_t cap = 64, used = 0;
	char *s = malloc(cap);
	for (size_t i = 0; i < n; i++) {
		size_t need = tok_decode(t, ids[i], special, s + used, cap - used - 1);
		if (need > cap - used - 1) {
			cap = 2 * (used + need + 1);
			s = realloc(s, cap);
			tok_decode(t, ids[i], special, s + used, cap - used - 1);
		}
		used += need;
	}
	s[used] = '\0';
	*len = used;
	return s;
}

/* ---- llama.cpp's vocabulary tests ---- */

/* Cases of .inp are separated by "\n__ggml_vocab_test__\n" (the newline before the
 * separator is not part of a case); .out has one line of ids per case. */
static void vocab_cases(const char *name)
{
	char rel[256], *gg, *inp_path, *out_path;
	snprintf(rel, sizeof rel, "tokenizers/llamacpp-vocab/%s", name);
	gg = shared_dup(rel);
	snprintf(rel, sizeof rel, "tokenizers/llamacpp-vocab/%s.inp", name);
	inp_path = shared_dup(rel);
	snprintf(rel, sizeof rel, "tokenizers/llamacpp-vocab/%s.out", name);
	out_path = shared_dup(rel);
	struct tok *t = gg ? load(gg, NULL) : NULL;
	char *inp = NULL, *out = NULL;
	size_t inp_len, out_len;
	if (!t || !inp_path || !out_path || kb_read_file(inp_path, &inp, &inp_len) ||
	    kb_read_file(out_path, &out, &out_len)) {
		ok(0, "%s: load vocabulary and cases", name);
		goto done;
	}

	static const char sep[] = "\n__ggml_vocab_test__\n";
	const size_t sep_len = sizeof sep - 1;
	int n_case = 0, n_bad = 0;
	char *ip = inp, *op = out;
	while (ip < inp + inp_len) {
		char *end = memmem(ip, (size_t)(inp + inp_len - ip), sep, sep_len);
		size_t clen = end ? (size_t)(end - ip) : (size_t)(inp + inp_len - ip);
		char *nl = strchr(op, '\n');
		if (!*op && !nl) {
			diag("%s: more cases in .inp than lines in .out", name);
			n_bad++;
			break;
		}
		if (nl)
			*nl = '\0';
		int32_t want[4096];
		size_t n_want = 0;
		for (char *q = op, *e; n_want < 4096; q = e) {
			long v = strtol(q, &e, 10);
			if (e == q)
				break;
			want[n_want++] = (int32_t)v;
		}
		op = nl ? nl + 1 : op + strlen(op);

		int32_t *got;
		size_t n_got = enc(t, ip, clen, false, false, &got);
		if (!ids_eq(got, n_got, want, n_want)) {
			if (n_bad < 3) {
				diag("%s case %d: '%.*s'", name, n_case, (int)clen, ip);
				diag_ids("  want", want, n_want);
				diag_ids("  got ", got, n_got == (size_t)-1 ? 0 : n_got);
			}
			n_bad++;
		}
		free(got);
		n_case++;
		ip = end ? end + sep_len : inp + inp_len;
	}
	ok(n_bad == 0 && n_case > 0, "%s: %d of %d llama.cpp cases match", name, n_case - n_bad, n_case);
done:
	free(inp);
	free(out);
	free(gg);
	free(inp_path);
	free(out_path);
	tok_free(t);
}

/* ---- stories260K's golden prompt ---- */

static void golden_prompt(void)
{
	char *model = shared_dup("models/stories260Ktok512.gguf");
	char *golden = shared_dup("models/stories260Ktok512.golden_prompt.json");
	struct tok *t = model ? load(model, NULL) : NULL;
	json_error_t err;
	json_t *root = golden ? json_load_file(golden, 0, &err) : NULL;
	if (!t || !root) {
		ok(0, "stories260K: load model and golden prompt");
		goto done;
	}
	const char *text = json_string_value(json_object_get(root, "prompt_text"));
	json_t *a = json_object_get(root, "prompt_ids"), *v;
	size_t i, n_want = json_array_size(a);
	int32_t want[256];
	json_array_foreach(a, i, v) if (i < 256) want[i] = (int32_t)json_integer_value(v);
	int32_t *got;
	size_t n_got = enc(t, text, strlen(text), false, false, &got);
	if (!ok(text && n_want > 0 && ids_eq(got, n_got, want, n_want), "stories260K: golden prompt ids")) {
		diag_ids("want", want, n_want);
		diag_ids("got ", got, n_got);
	}
	free(got);

	// BOS comes first when asked, and only then
	int32_t bos = (int32_t)json_integer_value(json_object_get(root, "bos"));
	n_got = enc(t, text, strlen(text), true, false, &got);
	ok(tok_add_bos(t) && tok_bos(t) == bos && n_got == n_want + 1 && got[0] == bos &&
		   ids_eq(got + 1, n_got - 1, want, n_want),
	   "stories260K: add_bos puts BOS %d first", bos);
	free(got);
	ok(tok_n_vocab(t) == 512 && tok_kind(t) == TOK_SPM, "stories260K: 512 tokens, SPM");
done:
	json_decref(root);
	tok_free(t);
	free(model);
	free(golden);
}

/* ---- properties on a real vocabulary ---- */

static void round_trips(const struct tok *t, const char *name)
{
	static const char *texts[] = {
		"Hello world",
		"  two leading spaces, trailing two  ",
		"line one\nline two\n\n\ttabbed\r\n",
		"caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99 \xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe",
		"bytes that need fallback: \x01\x02\x7f and invalid UTF-8 \xff\xfe\x80 \xc3 \xe4\xb8",
		"3.14159 ====== ''''' ``` \"\"\" !!! ???",
	};
	int bad = 0;
	for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
		int32_t *ids;
		size_t n = enc(t, texts[k], strlen(texts[k]), false, false, &ids), len;
		char *back = decode_all(t, ids, n, false, &len);
		if (len != strlen(texts[k]) + 1 || back[0] != ' ' || memcmp(back + 1, texts[k], len - 1) != 0) {
			diag("%s: round trip of text %zu gives '%s'", name, k, back);
			bad++;
		}
		free(back);
		free(ids);
	}
	ok(bad == 0, "%s: decode(encode(x)) == \" \" + x for UTF-8, control and invalid bytes", name);

	// random strings of words, spaces, newlines, multibyte characters and raw bytes
	// (not "▁" itself: SPM writes spaces as "▁", so a "▁" in the text decodes to " ")
	static const char *atoms[] = { "a", "the", " ", "  ", "\n", "\t", "Hello", "\xc3\xa9", "\xe4\xb8\xad",
				       "\xf0\x9f\xa6\x99", "\x80", "\xff", "\xc3", "0", "42", ".", "'s" };
	bad = 0;
	for (int k = 0; k < 200; k++) {
		char s[512];
		size_t len = 0;
		int n_atoms = 1 + (int)tap_randf(0, 40);
		for (int j = 0; j < n_atoms; j++) {
			const char *a = atoms[(int)tap_randf(0, sizeof atoms / sizeof *atoms)];
			memcpy(s + len, a, strlen(a));
			len += strlen(a);
		}
		int32_t *ids;
		size_t n = enc(t, s, len, false, false, &ids), blen;
		char *back = decode_all(t, ids, n, false, &blen);
		if (blen != len + 1 || memcmp(back + 1, s, len) != 0) {
			if (bad < 3)
				diag("%s: random round trip %d differs: '%.*s'", name, k, (int)len, s);
			bad++;
		}
		free(back);
		free(ids);
	}
	ok(bad == 0, "%s: 200 random round trips", name);

	int32_t *ids;
	size_t n = enc(t, "", 0, false, false, &ids);
	ok(n == 0 && ids != NULL, "%s: empty text gives no tokens", name);
	free(ids);
	n = enc(t, "", 0, true, false, &ids);
	ok(n == 1 && ids[0] == tok_bos(t), "%s: empty text with BOS gives [BOS]", name);
	free(ids);
}

static void llama_spm(void)
{
	char *path = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
	struct tok *t = path ? load(path, NULL) : NULL;
	if (!ok(t != NULL, "llama-spm: load")) {
		free(path);
		return;
	}
	round_trips(t, "llama-spm");
	ok(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_add_bos(t) && tok_n_vocab(t) == 32000,
	   "llama-spm: BOS 1, EOS 2, add_bos, 32000 tokens");
	ok(tok_is_eog(t, 2) && !tok_is_eog(t, 1) && !tok_is_eog(t, 0) && !tok_is_eog(t, 15043) &&
		   !tok_is_eog(t, -1) && !tok_is_eog(t, 99999),
	   "llama-spm: </s> is the only end of generation");

	// special tokens: matched only with parse_special; a space prefix follows each one
	const char *s = "<s>Hello</s> world";
	int32_t *ids;
	size_t n = enc(t, s, strlen(s), false, true, &ids);
	int32_t want[] = { 1, 15043, 2, 29871, 3186 }; // <s> ▁Hello </s> ▁ ▁world
	if (!ok(ids_eq(ids, n, want, 5), "llama-spm: parse_special splits <s> and </s> out"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, s, strlen(s), false, false, &ids);
	bool plain = n > 5;
	for (size_t i = 0; i < n; i++)
		plain = plain && ids[i] != 1 && ids[i] != 2;
	ok(plain, "llama-spm: without parse_special <s> is plain text");
	free(ids);

	// decode
	char buf[32];
	size_t m = tok_decode(t, 15043, false, buf, sizeof buf);
	ok(m == 6 && memcmp(buf, " Hello", 6) == 0, "llama-spm: decode ▁Hello -> ' Hello'");
	m = tok_decode(t, 13, false, buf, sizeof buf);
	ok(m == 1 && buf[0] == '\n', "llama-spm: decode <0x0A> -> newline byte");
	ok(tok_decode(t, 1, false, buf, sizeof buf) == 0, "llama-spm: decode <s> -> '' by default");
	m = tok_decode(t, 1, true, buf, sizeof buf);
	ok(m == 3 && memcmp(buf, "<s>", 3) == 0, "llama-spm: decode <s> -> '<s>' with show_special");
	memset(buf, 'x', sizeof buf);
	m = tok_decode(t, 15043, false, buf, 3);
	ok(m == 6 && buf[0] == 'x', "llama-spm: decode into a short buffer reports the size, writes nothing");
	ok(strcmp(tok_piece(t, 15043), "\xe2\x96\x81Hello") == 0 && strcmp(tok_piece(t, 13), "<0x0A>") == 0 &&
		   strcmp(tok_piece(t, -1), "") == 0 && strcmp(tok_piece(t, 32000), "") == 0,
	   "llama-spm: tok_piece gives the stored text, '' out of range");
	tok_free(t);
	free(path);
}

static void phi3(void)
{
	char *path = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
	struct tok *t = path ? load(path, NULL) : NULL;
	if (!ok(t != NULL, "phi-3: load")) {
		free(path);
		return;
	}
	round_trips(t, "phi-3");
	ok(tok_eos(t) == 32000 && tok_is_eog(t, 32000) && tok_is_eog(t, 32007) && !tok_is_eog(t, 32001) &&
		   !tok_is_eog(t, 1),
	   "phi-3: <|endoftext|> and <|end|> end generation, <|assistant|> does not");

	// a chat turn: phi-3's special tokens eat the newline after them (llama.cpp's rstrip rule)
	const char *s = "<|user|>\nHello<|end|>\n<|assistant|>";
	int32_t *ids;
	size_t n = enc(t, s, strlen(s), true, true, &ids);
	int32_t want[] = { 1, 32010, 15043, 32007, 32001 };
	if (!ok(ids_eq(ids, n, want, 5), "phi-3: chat turn with parse_special"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, s, strlen(s), false, false, &ids);
	bool plain = n > 5;
	for (size_t i = 0; i < n; i++)
		plain = plain && ids[i] < 32000;
	ok(plain, "phi-3: without parse_special the chat markers are plain text");
	free(ids);
	tok_free(t);
	free(path);
}

/* ---- made-up vocabularies ---- */

/* A GGUF v3 file in memory with only metadata; the keys are added with kv_*(). */
struct mini {
	uint8_t buf[1 << 16];
	size_t n;
	uint64_t n_kv;
};

static void put(struct mini *m, const void *p, size_t n)
{
	memcpy(m->buf + m->n, p, n);
	m->n += n;
}
static void put_u32(struct mini *m, uint32_t v) { uint8_t b[4] = { v, v >> 8, v >> 16, v >> 24 }; put(m, b, 4); }
static void put_u64(struct mini *m, uint64_t v) { put_u32(m, (uint32_t)v); put_u32(m, (uint32_t)(v >> 32)); }
static void put_str(struct mini *m, const char *s) { put_u64(m, strlen(s)); put(m, s, strlen(s)); }
static void mini_init(struct mini *m)
{
	m->n = 0;
	m->n_kv = 0;
	put(m, "GGUF", 4);
	put_u32(m, 3);
	put_u64(m, 0); // tensors
	put_u64(m, 0); // kv count, patched by mini_finish
}
static void kv_str(struct mini *m, const char *key, const char *v)
{
	put_str(m, key);
	put_u32(m, GGUF_TYPE_STRING);
	put_str(m, v);
	m->n_kv++;
}
static void kv_strs(struct mini *m, const char *key, const char *const *v, uint64_t n)
{
	put_str(m, key);
	put_u32(m, GGUF_TYPE_ARRAY);
	put_u32(m, GGUF_TYPE_STRING);
	put_u64(m, n);
	for (uint64_t i = 0; i < n; i++)
		put_str(m, v[i]);
	m->n_kv++;
}
static void kv_i32s(struct mini *m, const char *key, const int32_t *v, uint64_t n)
{
	put_str(m, key);
	put_u32(m, GGUF_TYPE_ARRAY);
	put_u32(m, GGUF_TYPE_INT32);
	put_u64(m, n);
	for (uint64_t i = 0; i < n; i++)
		put_u32(m, (uint32_t)v[i]);
	m->n_kv++;
}
static void kv_f32s(struct mini *m, const char *key, const float *v, uint64_t n)
{
	put_str(m, key);
	put_u32(m, GGUF_TYPE_ARRAY);
	put_u32(m, GGUF_TYPE_FLOAT32);
	put_u64(m, n);
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		put_u32(m, u);
	}
	m->n_kv++;
}
static void kv_u32(struct mini *m, const char *key, uint32_t v)
{
	put_str(m, key);
	put_u32(m, GGUF_TYPE_UINT32);
	put_u32(m, v);
	m->n_kv++;
}
static int mini_open(struct mini *m, struct gguf **g)
{
	for (int i = 0; i < 8; i++) // patch the kv count
		m->buf[16 + i] = (uint8_t)(m->n_kv >> (8 * i));
	while (m->n % 32)
		m->buf[m->n++] = 0;
	return gguf_open_mem(g, m->buf, m->n, "mini.gguf");
}

static struct mini mini;

/* A tiny made-up SPM vocabulary: merges by score, unk fallback without byte tokens,
 * a user-defined token that is split out even without parse_special. */
static void synthetic(void)
{
	struct gguf *g = NULL;
	struct tok *t = NULL;

	mini_init(&mini);
	kv_str(&mini, "general.architecture", "llama");
	int rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "tokenizer.ggml.model") && strstr(kb_error(), "mini.gguf"),
	   "no tokenizer.ggml.model: a clear error naming the file (%s)", kb_error());
	gguf_close(g);
	g = NULL;

	mini_init(&mini);
	kv_str(&mini, "tokenizer.ggml.model", "rwkv");
	rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	ok(rc == KB_ERR_UNSUPPORTED && strstr(kb_error(), "'rwkv'"), "unknown tokenizer kind refused (%s)", kb_error());
	gguf_close(g);
	g = NULL;

	static const char *dup_vocab[] = { "<unk>", "a", "b", "a" };
	mini_init(&mini);
	kv_str(&mini, "tokenizer.ggml.model", "llama");
	kv_strs(&mini, "tokenizer.ggml.tokens", dup_vocab, 4);
	rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "duplicate"), "duplicate token text refused (%s)", kb_error());
	gguf_close(g);
	g = NULL;

	//                         0        1      2       3     4     5     6      7       8      9
	static const char *v[] = { "<unk>", "<s>", "</s>", "▁",  "a",  "b",  "ab",  "▁ab", "<X>", "ba" };
	static const float sc[] = { 0, 0, 0, -1, -2, -2, -0.5f, -0.1f, 0, -0.2f };
	static const int32_t ty[] = { 2, 3, 3, 1, 1, 1, 1, 1, 4, 1 };
	mini_init(&mini);
	kv_str(&mini, "tokenizer.ggml.model", "llama");
	kv_strs(&mini, "tokenizer.ggml.tokens", v, 10);
	kv_f32s(&mini, "tokenizer.ggml.scores", sc, 10);
	kv_i32s(&mini, "tokenizer.ggml.token_type", ty, 10);
	kv_u32(&mini, "tokenizer.ggml.eos_token_id", 2);
	rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	if (!ok(rc == KB_OK, "synthetic vocabulary loads")) {
		diag("%s", kb_error());
		gguf_close(g);
		return;
	}
	gguf_close(g); // the tokenizer keeps its own copy

	int32_t *ids;
	size_t n = enc(t, "ab", 2, false, false, &ids);
	// "▁ab": ▁+a is no token; a+b -> ab (-0.5); then ▁+ab -> ▁ab (-0.1)
	ok(n == 1 && ids[0] == 7, "synthetic: merges follow the scores");
	free(ids);
	n = enc(t, "bab", 3, false, false, &ids);
	// ▁ b a b: ba (-0.2) beats ab (-0.5) and is leftmost among equals -> ▁ ba b
	int32_t w1[] = { 3, 9, 5 };
	if (!ok(ids_eq(ids, n, w1, 3), "synthetic: highest score first"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, "ac", 2, false, false, &ids);
	// no byte tokens: 'c' falls back to <unk>
	int32_t w2[] = { 3, 4, 0 };
	if (!ok(ids_eq(ids, n, w2, 3), "synthetic: unknown character without byte tokens gives <unk>"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, "a<X>b", 5, false, false, &ids);
	// the user-defined <X> is cut out even without parse_special; a space prefix follows it
	int32_t w3[] = { 3, 4, 8, 3, 5 };
	if (!ok(ids_eq(ids, n, w3, 5), "synthetic: user-defined token split out without parse_special"))
		diag_ids("got", ids, n);
	free(ids);
	ok(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_is_eog(t, 2) && tok_add_bos(t), "synthetic: SPM defaults");
	tok_free(t);
}

int main(void)
{
	tap_seed();
	synthetic();
	if (!tap_shared("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf")) {
		diag("../shared is absent: skipping the tests on real vocabularies");
		return done_testing();
	}
	vocab_cases("ggml-vocab-llama-spm.gguf");
	vocab_cases("ggml-vocab-phi-3.gguf");
	golden_prompt();
	llama_spm();
	phi3();
	vocab_cases("ggml-vocab-gpt-2.gguf");
	vocab_cases("ggml-vocab-starcoder.gguf");
	vocab_cases("ggml-vocab-deepseek-coder.gguf");
	vocab_cases("ggml-vocab-bert-bge.gguf");
	tok_free(NULL);
	return done_testing();
}
