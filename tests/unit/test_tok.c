/* test_tok — the tokenizers against llama.cpp's own vocabulary tests
 * (../shared/tokenizers/llamacpp-vocab: llama-spm and phi-3 (SentencePiece BPE),
 * gpt-2, starcoder and deepseek-coder (byte-level BPE), bert-bge (WordPiece), every
 * case of .inp/.out), SmolLM2's 446 reference cases on a GGUF built from its
 * tokenizer.json (and MiniLM's tokenizer.json against bert-bge's cases), the golden
 * prompt of stories260K, round trips, BOS/EOS/EOG, special tokens, warnings, and the
 * errors for vocabularies it does not handle. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <unistd.h>

#include "gguf.h"
#include "synth.h"
#include "tap.h"
#include "tok.h"
#include "tokjson.h"
#include "util.h"

static char tmpdir[256]; /* scratch directory, removed at the end */

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

/* Every case of inp_path against the ids of out_path, no BOS, special tokens not
 * parsed (as llama.cpp's test-tokenizer-0 and llama-tokenize --no-bos produce them).
 * Cases are separated by "\n__ggml_vocab_test__\n" (the newline before the
 * separator is not part of a case); out_path has one line of ids per case. */
static void check_cases(const struct tok *t, const char *name, const char *inp_path, const char *out_path)
{
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
	int32_t *want = malloc(out_len * sizeof *want + sizeof *want); // more than any line holds
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
		size_t n_want = 0;
		for (char *q = op, *e;; q = e) {
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
				diag("%s case %d: '%.*s'", name, n_case, clen > 200 ? 200 : (int)clen, ip);
				diag_ids("  want", want, n_want);
				diag_ids("  got ", got, n_got == (size_t)-1 ? 0 : n_got);
			}
			n_bad++;
		}
		free(got);
		n_case++;
		ip = end ? end + sep_len : inp + inp_len;
	}
	if (*op) {
		diag("%s: more lines in .out than cases in .inp", name);
		n_bad++;
	}
	free(want);
	ok(n_bad == 0 && n_case > 0, "%s: %d of %d llama.cpp cases match", name, n_case - n_bad, n_case);
done:
	free(inp);
	free(out);
}

/* llama.cpp's own vocabulary test for tokenizers/llamacpp-vocab/<name>. */
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
	check_cases(t, name, inp_path, out_path);
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
	// a template's markup around a user's text (blend): <s> parsed, the text plain
	if (tok_encode_framed(t, s, strlen(s), false, true, 3, strlen(s) - 3, &ids, &n) == KB_OK) {
		int32_t *tail_ids;
		size_t n_tail = 0;
		int ok_tail = tok_encode(t, s + 3, strlen(s) - 3, false, false, &tail_ids, &n_tail) == KB_OK;
		bool same = ok_tail && n == n_tail + 1 && ids[0] == 1 && !memcmp(ids + 1, tail_ids, n_tail * sizeof *ids);
		if (!ok(same, "llama-spm: tok_encode_framed parses <s> in the markup, not </s> in the plain span"))
			diag_ids("got", ids, n);
		free(ids);
		if (ok_tail)
			free(tail_ids);
	} else {
		ok(0, "llama-spm: tok_encode_framed: %s", kb_error());
	}
	if (tok_encode_framed(t, s, strlen(s), false, true, 0, 0, &ids, &n) == KB_OK) {
		ok(ids_eq(ids, n, want, 5), "llama-spm: tok_encode_framed with an empty span is tok_encode");
		free(ids);
	}

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


/* A tiny made-up byte-level BPE vocabulary: ranks, a merge through a string that is
 * no token, characters no token holds, special tokens, the pre-tokenizer warnings. */
static void synthetic_bpe(void)
{
	//                         0    1    2    3         4     5     6      7          8
	static const char *v[] = { "a", "b", "c", "\xc4\xa0", "ab", "bc", "abc", "\xc4\xa0" "a", "<|endoftext|>",
				   //  9      10     11
				   "cca", "<X>", "d\xc4\xa0" };
	static const int32_t ty[] = { 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 4, 1 };
	static const char *merges[] = { "b c", "a b", "a bc", "\xc4\xa0 a", "c c", "cc a" };
	struct gguf *g = NULL;
	struct tok *t = NULL;
	int32_t *ids;
	size_t n;

	for (int k = 0; k < 3; k++) {
		mini_init(&mini);
		kv_str(&mini, "tokenizer.ggml.model", "gpt2");
		if (k == 1)
			kv_str(&mini, "tokenizer.ggml.pre", "no-such-pre");
		if (k == 2)
			kv_str(&mini, "tokenizer.ggml.pre", "gpt-2");
		kv_strs(&mini, "tokenizer.ggml.tokens", v, 12);
		kv_i32s(&mini, "tokenizer.ggml.token_type", ty, 12);
		kv_strs(&mini, "tokenizer.ggml.merges", merges, 6);
		kv_u32(&mini, "tokenizer.ggml.eos_token_id", 8);
		int rc = mini_open(&mini, &g);
		if (rc == KB_OK)
			rc = tok_load(&t, g);
		gguf_close(g);
		g = NULL;
		if (!ok(rc == KB_OK, "synthetic BPE vocabulary loads (%d)", k)) {
			diag("%s", kb_error());
			return;
		}
		const char *w = tok_warning(t);
		if (k == 0)
			ok(w && strstr(w, "no pre-tokenizer") && strstr(w, "default"),
			   "no tokenizer.ggml.pre: llama.cpp's default rules, with a warning (%s)", w ? w : "none");
		else if (k == 1)
			ok(w && strstr(w, "unknown pre-tokenizer 'no-such-pre'") && strstr(w, "GPT-2"),
			   "unknown tokenizer.ggml.pre: GPT-2 rules, with a warning (%s)", w ? w : "none");
		else
			ok(w == NULL, "gpt-2 pre-tokenizer: no warning");
		if (k < 2)
			tok_free(t);
	}

	n = enc(t, "abc", 3, false, false, &ids);
	// a b c: "b c" (rank 0) before "a b" (rank 1), then "a bc" (rank 2)
	ok(n == 1 && ids[0] == 6, "synthetic BPE: the lowest rank merges first");
	free(ids);
	n = enc(t, " ab", 3, false, false, &ids);
	// " ab" is one pre-token: Ġ a b; "a b" (1) before "Ġ a" (3); then Ġ + ab has no merge
	int32_t w1[] = { 3, 4 };
	if (!ok(ids_eq(ids, n, w1, 2), "synthetic BPE: a merge uses up its symbols"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, "cca", 3, false, false, &ids);
	// "c c" makes "cc", which is no token, and "cc a" makes the token "cca"
	ok(n == 1 && ids[0] == 9, "synthetic BPE: merges through a string that is no token");
	free(ids);
	n = enc(t, "adb", 3, false, false, &ids);
	// no token for 'd' and no merge with it: llama.cpp drops it
	int32_t w2[] = { 0, 1 };
	if (!ok(ids_eq(ids, n, w2, 2), "synthetic BPE: a character no token holds is dropped, as llama.cpp does"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, "a<|endoftext|>b", 15, false, true, &ids);
	int32_t w3[] = { 0, 8, 1 };
	if (!ok(ids_eq(ids, n, w3, 3), "synthetic BPE: parse_special splits <|endoftext|> out"))
		diag_ids("got", ids, n);
	free(ids);
	n = enc(t, "a<|endoftext|>b", 15, false, false, &ids);
	bool plain = n >= 2 && ids[0] == 0 && ids[n - 1] == 1;
	for (size_t i = 0; i < n; i++)
		plain = plain && ids[i] != 8;
	ok(plain, "synthetic BPE: without parse_special <|endoftext|> is text");
	free(ids);
	n = enc(t, "a<X>b", 5, false, false, &ids);
	int32_t w4[] = { 0, 10, 1 };
	if (!ok(ids_eq(ids, n, w4, 3), "synthetic BPE: a user-defined token is split out without parse_special"))
		diag_ids("got", ids, n);
	free(ids);
	ok(tok_kind(t) == TOK_BPE && !tok_add_bos(t) && tok_bos(t) == -1 && tok_eos(t) == 8 && tok_is_eog(t, 8) &&
		   !tok_is_eog(t, 0),
	   "synthetic BPE: no BOS by default, EOS from the key ends generation");
	char buf[16];
	size_t m = tok_decode(t, 7, false, buf, sizeof buf);
	ok(m == 2 && memcmp(buf, " a", 2) == 0, "synthetic BPE: decode 'Ġa' -> ' a'");
	m = tok_decode(t, 10, false, buf, sizeof buf);
	ok(m == 3 && memcmp(buf, "<X>", 3) == 0, "synthetic BPE: a user-defined token decodes as written");
	ok(tok_decode(t, 8, false, buf, sizeof buf) == 0, "synthetic BPE: a control token decodes to nothing");
	tok_free(t);

	// no merges: refused
	mini_init(&mini);
	kv_str(&mini, "tokenizer.ggml.model", "gpt2");
	kv_str(&mini, "tokenizer.ggml.pre", "gpt-2");
	kv_strs(&mini, "tokenizer.ggml.tokens", v, 12);
	int rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	ok(rc == KB_ERR_FORMAT && strstr(kb_error(), "tokenizer.ggml.merges"), "BPE without merges refused (%s)",
	   kb_error());
	gguf_close(g);
}

/* A made-up WordPiece vocabulary, as llama.cpp converts BERT's. */
static void synthetic_wpm(void)
{
	//                         0        1        2        3        4          5        6       7     8
	static const char *v[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xe2\x96\x81un", "able", "\xe2\x96\x81!",
				   "\xe2\x96\x81" "cafe", "\xe2\x96\x81\xe4\xb8\xad" };
	static const int32_t ty[] = { 3, 3, 3, 3, 1, 1, 1, 1, 1 };
	struct gguf *g = NULL;
	struct tok *t = NULL;
	mini_init(&mini);
	kv_str(&mini, "tokenizer.ggml.model", "bert");
	kv_strs(&mini, "tokenizer.ggml.tokens", v, 9);
	kv_i32s(&mini, "tokenizer.ggml.token_type", ty, 9);
	kv_u32(&mini, "tokenizer.ggml.unknown_token_id", 1);
	kv_u32(&mini, "tokenizer.ggml.cls_token_id", 2);
	kv_u32(&mini, "tokenizer.ggml.seperator_token_id", 3);
	kv_u32(&mini, "tokenizer.ggml.padding_token_id", 0);
	int rc = mini_open(&mini, &g);
	if (rc == KB_OK)
		rc = tok_load(&t, g);
	gguf_close(g);
	if (!ok(rc == KB_OK, "synthetic WordPiece vocabulary loads")) {
		diag("%s", kb_error());
		return;
	}
	// "Unable!" -> ▁un able ▁!; "CAFÉ" -> ▁cafe (lowercase, accent stripped); 中 alone;
	// "unx" cannot be cut completely -> [UNK]
	const char *s = "Unable! CAF\xc3\x89\t\xe4\xb8\xad unx";
	int32_t *ids;
	size_t n = enc(t, s, strlen(s), true, false, &ids);
	int32_t want[] = { 2, 4, 5, 6, 7, 8, 1, 3 };
	if (!ok(ids_eq(ids, n, want, 8), "synthetic WordPiece: [CLS] pieces [SEP], lowercase, accents, CJK, [UNK]"))
		diag_ids("got", ids, n);
	free(ids);
	ok(tok_kind(t) == TOK_WPM && tok_add_bos(t) && tok_bos(t) == 2, "synthetic WordPiece: [CLS] is BOS, added");
	char buf[16];
	size_t m = tok_decode(t, 4, false, buf, sizeof buf);
	size_t m2 = tok_decode(t, 5, false, buf + m, sizeof buf - m);
	ok(m + m2 == 7 && memcmp(buf, " unable", 7) == 0, "synthetic WordPiece: decode ▁un able -> ' unable'");
	tok_free(t);
}

/* ---- byte-level BPE and WordPiece on real vocabularies ---- */

/* decode(encode(x)) == x for valid UTF-8 (byte-level BPE loses nothing but invalid bytes). */
static void bpe_round_trips(const struct tok *t, const char *name)
{
	static const char *atoms[] = { "a", "the", " ", "  ", "\n", "\t", "\r\n", "Hello", "\xc3\xa9", "\xe4\xb8\xad",
				       "\xf0\x9f\xa6\x99", "0", "42", "12345", ".", "'s", "'LL", "\xe2\x80\x83",
				       "\xc2\x85", "<|x|>", "\xd0\xbd\xd0\xb5" };
	int bad = 0;
	for (int k = 0; k < 300; k++) {
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
		if (blen != len || memcmp(back, s, len) != 0) {
			if (bad < 3)
				diag("%s: random round trip %d differs: '%.*s' -> '%s'", name, k, (int)len, s, back);
			bad++;
		}
		free(back);
		free(ids);
	}
	ok(bad == 0, "%s: 300 random round trips decode(encode(x)) == x", name);

	// invalid UTF-8 is read as U+FFFD per bad byte, as llama.cpp does
	const char *bad_utf8 = "a\xff" "b\xc3";
	int32_t *ids;
	size_t n = enc(t, bad_utf8, strlen(bad_utf8), false, false, &ids), blen;
	char *back = decode_all(t, ids, n, false, &blen);
	ok(strcmp(back, "a\xef\xbf\xbd" "b\xef\xbf\xbd") == 0, "%s: invalid bytes become U+FFFD", name);
	free(back);
	free(ids);

	// a long run of spaces and newlines (deep backtracking for \s+(?!\S))
	size_t big = 300000;
	char *sp = malloc(big + 2);
	memset(sp, ' ', big);
	for (size_t i = 0; i < big; i += 1000)
		sp[i] = '\n';
	memcpy(sp + big, "a", 2);
	n = enc(t, sp, big + 1, false, false, &ids);
	back = decode_all(t, ids, n, false, &blen);
	ok(n != (size_t)-1 && blen == big + 1 && memcmp(back, sp, big + 1) == 0, "%s: 300 kB of whitespace", name);
	free(back);
	free(ids);
	free(sp);
}

static void gpt2_vocab(void)
{
	char *path = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
	struct tok *t = path ? load(path, NULL) : NULL;
	if (!ok(t != NULL, "gpt-2: load")) {
		free(path);
		return;
	}
	bpe_round_trips(t, "gpt-2");
	ok(tok_kind(t) == TOK_BPE && !tok_add_bos(t) && tok_bos(t) == 50256 && tok_is_eog(t, 50256) &&
		   !tok_is_eog(t, 11) && tok_warning(t) == NULL,
	   "gpt-2: no BOS added, <|endoftext|> ends generation, no warning");
	const char *s = "Hello world<|endoftext|>";
	int32_t *ids;
	size_t n = enc(t, s, strlen(s), false, true, &ids);
	int32_t want[] = { 15496, 995, 50256 };
	if (!ok(ids_eq(ids, n, want, 3), "gpt-2: parse_special splits <|endoftext|> out"))
		diag_ids("got", ids, n);
	free(ids);
	char buf[16];
	size_t m = tok_decode(t, 995, false, buf, sizeof buf);
	ok(m == 6 && memcmp(buf, " world", 6) == 0, "gpt-2: decode 'Ġworld' -> ' world'");
	ok(strcmp(tok_piece(t, 995), "\xc4\xa0world") == 0, "gpt-2: the piece is stored text ('Ġworld')");
	tok_free(t);
	free(path);

	path = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-deepseek-coder.gguf");
	t = path ? load(path, NULL) : NULL;
	if (ok(t != NULL, "deepseek-coder: load")) {
		bpe_round_trips(t, "deepseek-coder");
		n = enc(t, "x", 1, true, false, &ids);
		ok(tok_add_bos(t) && n == 2 && ids[0] == 32013, "deepseek-coder: add_bos_token puts BOS 32013 first");
		free(ids);
		ok(tok_is_eog(t, 32014) && !tok_is_eog(t, 32013), "deepseek-coder: EOS ends generation, BOS does not");
	}
	tok_free(t);
	free(path);
}

static void bert_vocab(void)
{
	char *path = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf");
	struct tok *t = path ? load(path, NULL) : NULL;
	if (!ok(t != NULL, "bert-bge: load")) {
		free(path);
		return;
	}
	const char *s = "Hello, World!";
	int32_t *ids;
	size_t n = enc(t, s, strlen(s), tok_add_bos(t), false, &ids);
	int32_t want[] = { 101, 7592, 1010, 2088, 999, 102 };
	if (!ok(ids_eq(ids, n, want, 6), "bert-bge: add_bos frames the text as [CLS] ... [SEP]"))
		diag_ids("got", ids, n);
	size_t len;
	char *back = decode_all(t, ids, n, false, &len);
	ok(strcmp(back, " hello , world !") == 0, "bert-bge: decode, token by token ('%s')", back);
	free(back);
	free(ids);
	n = enc(t, "[CLS] hi [SEP]", 14, false, true, &ids);
	ok(n == 3 && ids[0] == 101 && ids[2] == 102, "bert-bge: parse_special matches [CLS] and [SEP]");
	free(ids);
	tok_free(t);
	free(path);
}

/* Write the tokenizer of a tokenizer.json as a vocabulary-only GGUF at out. */
static int json_to_gguf(const char *json, const char *out, struct tokjson *tj)
{
	struct gguf_writer *w = gguf_writer_init();
	int rc = w ? tokjson_load(json, tj) : KB_ERR_NOMEM;
	if (rc == KB_OK && (rc = gguf_writer_set_str(w, "general.architecture", "llama")) == KB_OK &&
	    (rc = tokjson_to_gguf(tj, w)) == KB_OK)
		rc = gguf_writer_write(w, out);
	gguf_writer_free(w);
	return rc;
}

static void smollm2(void)
{
	char *json = shared_dup("tokenizers/smollm2-135m-instruct/tokenizer.json");
	char *inp = shared_dup("tokenizers/smollm2-135m-instruct/reference.inp");
	char *out = shared_dup("tokenizers/smollm2-135m-instruct/reference.out");
	char gg[300];
	snprintf(gg, sizeof gg, "%s/smollm2-vocab.gguf", tmpdir);
	struct tokjson tj;
	int rc = json ? json_to_gguf(json, gg, &tj) : KB_ERR_IO;
	if (!ok(rc == KB_OK, "smollm2: tokenizer.json -> GGUF")) {
		diag("%s", kb_error());
		goto done;
	}
	ok(!strcmp(tj.model, "gpt2") && !strcmp(tj.pre, "smollm") && tj.n_vocab == 49152 && tj.n_merges == 48900 &&
		   tj.bos == 1 && tj.eos == 2 && tj.pad == 2 && tj.types[0] == TOK_TYPE_CONTROL &&
		   tj.types[100] == TOK_TYPE_NORMAL && tj.warning[0] == '\0',
	   "smollm2: gpt2, pre smollm, 49152 tokens, 48900 merges, BOS 1 / EOS 2 from config.json");
	struct tok *t = load(gg, NULL);
	check_cases(t, "smollm2", inp, out);
	if (t) {
		ok(tok_is_eog(t, 2) && tok_is_eog(t, 0) && !tok_is_eog(t, 1) && tok_warning(t) == NULL,
		   "smollm2: <|im_end|> and <|endoftext|> end generation, <|im_start|> does not");
		const char *s = "<|im_start|>user\nHi<|im_end|>\n";
		int32_t *ids;
		size_t n = enc(t, s, strlen(s), false, true, &ids);
		ok(n >= 4 && ids[0] == 1 && ids[n - 2] == 2, "smollm2: parse_special splits the chat markers out");
		free(ids);
		bpe_round_trips(t, "smollm2");
	}
	tok_free(t);
done:
	tokjson_free(&tj);
	free(json);
	free(inp);
	free(out);
}

/* MiniLM's tokenizer.json holds bert-bge's vocabulary: its GGUF must give bert-bge's ids. */
static void minilm(void)
{
	char *json = shared_dup("tokenizers/all-MiniLM-L6-v2/tokenizer.json");
	char *inp = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf.inp");
	char *out = shared_dup("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf.out");
	char gg[300];
	snprintf(gg, sizeof gg, "%s/minilm-vocab.gguf", tmpdir);
	struct tokjson tj;
	int rc = json ? json_to_gguf(json, gg, &tj) : KB_ERR_IO;
	if (!ok(rc == KB_OK, "MiniLM: tokenizer.json -> GGUF")) {
		diag("%s", kb_error());
		goto done;
	}
	ok(!strcmp(tj.model, "bert") && tj.n_vocab == 30522 && tj.cls == 101 && tj.bos == 101 && tj.sep == 102 &&
		   tj.unk == 100 && tj.pad == 0 && tj.mask == 103 && !tj.merges && tj.types[101] == TOK_TYPE_CONTROL &&
		   !strcmp(tj.tokens[2088], "\xe2\x96\x81world"),
	   "MiniLM: bert, [CLS] 101 / [SEP] 102 / [UNK] 100, word-initial pieces as '▁x'");
	struct tok *t = load(gg, NULL);
	check_cases(t, "MiniLM via tokenizer.json", inp, out);
	tok_free(t);
done:
	tokjson_free(&tj);
	free(json);
	free(inp);
	free(out);
}

/* A synthetic model whose vocabulary comes from a tokenizer.json. */
static void synth_json(void)
{
	char *json = shared_dup("tokenizers/smollm2-135m-instruct/tokenizer.json");
	char gg[300];
	snprintf(gg, sizeof gg, "%s/smollm2-tiny.gguf", tmpdir);
	struct synth_spec sp = { .arch = "llama", .n_vocab = 300, .n_embd = 64, .n_layer = 1, .n_head = 4,
				 .n_kv_head = 4, .n_ff = 128, .n_ctx = 256, .tied = true, .seed = 7,
				 .tokenizer_json = json };
	int rc = json ? synth_write(gg, &sp) : KB_ERR_IO;
	struct gguf *g = NULL;
	struct tok *t = rc == KB_OK ? load(gg, &g) : NULL;
	if (!ok(t != NULL, "synth: a model with SmolLM2's tokenizer.json")) {
		diag("%s", kb_error());
		free(json);
		return;
	}
	const int64_t *ne = NULL;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (gguf_str_eq(g->tensors[i].name, "token_embd.weight"))
			ne = g->tensors[i].ne;
	ok(tok_n_vocab(t) == 49152 && tok_kind(t) == TOK_BPE && ne && ne[0] == 64 && ne[1] == 49152,
	   "synth: n_vocab 49152 from the tokenizer (not the spec's 300), token_embd 64 x 49152");
	int32_t *ids;
	size_t n = enc(t, "Hello world", 11, false, false, &ids);
	int32_t want[] = { 19556, 905 };
	if (!ok(ids_eq(ids, n, want, 2), "synth: SmolLM2's ids for 'Hello world'"))
		diag_ids("got", ids, n);
	free(ids);
	tok_free(t);
	gguf_close(g);
	free(json);
}

static void tokjson_errors(void)
{
	struct tokjson tj;
	char path[300];
	int rc = tokjson_load("/no/such/tokenizer.json", &tj);
	ok(rc == KB_ERR_IO && strstr(kb_error(), "/no/such/tokenizer.json"), "tokjson: a missing file (%s)", kb_error());
	tokjson_free(&tj);

	static const struct {
		const char *json, *want;
		int rc;
	} cases[] = {
		{ "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "'Unigram' is not supported", KB_ERR_UNSUPPORTED },
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 3}}", "merges", KB_ERR_FORMAT },
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "id 0", KB_ERR_FORMAT },
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "not a token id", KB_ERR_FORMAT },
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "empty", KB_ERR_FORMAT },
		{ "{\"model\": ", "line", KB_ERR_FORMAT },
		{ "[1, 2]", "not a tokenizer.json", KB_ERR_FORMAT },
	};
	snprintf(path, sizeof path, "%s/bad-tokenizer.json", tmpdir);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		FILE *f = fopen(path, "w");
		fputs(cases[i].json, f);
		fclose(f);
		rc = tokjson_load(path, &tj);
		ok(rc == cases[i].rc && strstr(kb_error(), cases[i].want) && strstr(kb_error(), "bad-tokenizer.json"),
		   "tokjson: bad input %zu refused (%s)", i, kb_error());
		tokjson_free(&tj);
	}

	// a BPE tokenizer.json with a pre-tokenizer it does not know: written as gpt-2, with a warning
	FILE *f = fopen(path, "w");
	fputs("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"added_tokens\": [{\"id\": 3, \"content\": \"<u>\","
	      " \"special\": false}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
	      " \"merges\": [[\"a\", \"b\"]]}}",
	      f);
	fclose(f);
	rc = tokjson_load(path, &tj);
	ok(rc == KB_OK && !strcmp(tj.pre, "gpt-2") && strstr(tj.warning, "Whitespace") && tj.n_vocab == 4 &&
		   !strcmp(tj.merges[0], "a b") && !strcmp(tj.tokens[2], "[PAD2]") && tj.types[2] == TOK_TYPE_UNUSED &&
		   tj.types[3] == TOK_TYPE_USER_DEFINED,
	   "tokjson: [a, b] merges, holes as [PAD<id>], a non-special added token is user-defined, unknown "
	   "pre-tokenizer warned (%s)",
	   tj.warning);
	tokjson_free(&tj);
	unlink(path);
}

int main(void)
{
	tap_seed();
	snprintf(tmpdir, sizeof tmpdir, "%s/kvb-tok-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	synthetic();
	synthetic_bpe();
	synthetic_wpm();
	tokjson_errors();
	if (!tap_shared("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf")) {
		diag("../shared is absent: skipping the tests on real vocabularies");
		rmdir(tmpdir);
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
	gpt2_vocab();
	bert_vocab();
	smollm2();
	minilm();
	synth_json();
	tok_free(NULL);
	char p[300];
	const char *made[] = { "smollm2-vocab.gguf", "minilm-vocab.gguf", "smollm2-tiny.gguf" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", tmpdir, made[i]);
		unlink(p);
	}
	rmdir(tmpdir);
	return done_testing();
}
