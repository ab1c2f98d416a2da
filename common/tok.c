/* tok.c — see tok.h. The vocabulary (load, text -> id map, token attributes,
 * special and end-of-generation tokens), the split of special tokens out of
 * the text, and decoding; the per-kind algorithms live in tok_<kind>.c
 * (tok_spm.c, tok_bpe.c, tok_wpm.c).
 *
 * Behaviour follows llama.cpp's llama-vocab.cpp so that the same GGUF gives the
 * same ids: the defaults per kind, how token types become attributes, which
 * token texts mark the end of generation, the phi-3 right-strip rule, and how
 * special tokens are cut out of the text (longest text first, each one over
 * every fragment left to right).
 */
#include "tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- text -> id map ---- */

static uint64_t str_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static bool tok_text_eq(const struct tok *t, int32_t id, const char *s, size_t n)
{
	return t->len[id] == n && memcmp(t->text + t->off[id], s, n) == 0;
}

int32_t tok_lookup(const struct tok *t, const char *s, size_t n)
{
	if (n > t->max_len)
		return -1;
	for (uint64_t i = str_hash(s, n) & t->map.mask;; i = (i + 1) & t->map.mask) {
		int32_t id = t->map.slot[i];
		if (id < 0 || tok_text_eq(t, id, s, n))
			return id;
	}
}

uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
	unsigned char b = s[0];
	size_t need = b < 0x80 ? 1 : b < 0xc0 ? 0 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : b < 0xf8 ? 4 : 0;
	*len = 1;
	if (need == 1)
		return b;
	if (need == 0 || need > n)
		return 0xfffd;
	uint32_t c = b & (0x7f >> need);
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0xfffd;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c > 0x10ffff)
		return 0xfffd; // llama.cpp gives up on the whole text here
	*len = need;
	return c;
}

size_t tok_utf8_encode(uint32_t c, char *out)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | (c >> 6 & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (c >> 18 & 0x07));
	out[1] = (char)(0x80 | (c >> 12 & 0x3f));
	out[2] = (char)(0x80 | (c >> 6 & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Build the map over all tokens; a text that occurs twice is an error (as in llama.cpp). */
static int map_build(struct tok *t, const char *path)
{
	uint64_t cap = 16;
	while (cap < 2 * (uint64_t)t->n_vocab)
		cap *= 2;
	t->map.slot = kb_malloc(cap * sizeof *t->map.slot);
	if (!t->map.slot)
		return KB_ERR_NOMEM;
	memset(t->map.slot, 0xff, cap * sizeof *t->map.slot);
	t->map.mask = cap - 1;
	for (int32_t id = 0; id < t->n_vocab; id++) {
		const char *s = t->text + t->off[id];
		uint64_t i = str_hash(s, t->len[id]) & t->map.mask;
		for (; t->map.slot[i] >= 0; i = (i + 1) & t->map.mask)
			if (tok_text_eq(t, t->map.slot[i], s, t->len[id]))
				return kb_fail(KB_ERR_FORMAT, "'%s': duplicate token in vocabulary: '%.64s' has ids %d and %d",
					       path, s, t->map.slot[i], id);
		t->map.slot[i] = id;
	}
	return KB_OK;
}

int tok_ids_push(struct tok_ids *out, int32_t id)
{
	if (kb_grow(&out->v, &out->cap, out->n, sizeof *out->v, 256))
		return KB_ERR_NOMEM;
	out->v[out->n++] = id;
	return KB_OK;
}

/* ---- load ---- */

/* Token texts that end generation (llama.cpp marks them CONTROL too). */
static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
	"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
};

static int32_t find_text(const struct tok *t, const char *s)
{
	return tok_lookup(t, s, strlen(s));
}

/* tokenizer.ggml.<name> as a bool into *v when present; an unusable value is an error. */
static int get_flag(const struct gguf *g, const char *key, bool *v)
{
	int rc = gguf_get_bool(g, key, v);
	return rc == KB_EOF ? KB_OK : rc;
}

/* A special token id: *id keeps its default when the key is absent or out of range. */
static int get_id(const struct gguf *g, const char *key, int32_t n_vocab, int32_t *id)
{
	if (*id >= n_vocab)
		*id = -1;
	int64_t v;
	int rc = gguf_get_i64(g, key, &v);
	if (rc == KB_EOF)
		return KB_OK;
	if (rc)
		return rc;
	if (v >= 0 && v < n_vocab)
		*id = (int32_t)v;
	return KB_OK;
}

/* A numeric array parallel to the tokens, or *data = NULL when absent. */
static int get_parallel(const struct gguf *g, const char *path, const char *key, bool want_int,
			uint64_t n, enum gguf_vtype *type, const void **data)
{
	uint64_t m;
	*data = NULL;
	int rc = gguf_get_arr(g, key, type, &m, data);
	if (rc == KB_EOF) {
		*data = NULL;
		return KB_OK;
	}
	if (rc)
		return rc;
	bool is_int = *type <= GGUF_TYPE_INT32 || *type == GGUF_TYPE_UINT64 || *type == GGUF_TYPE_INT64;
	bool is_float = *type == GGUF_TYPE_FLOAT32 || *type == GGUF_TYPE_FLOAT64;
	if (want_int ? !is_int : !(is_int || is_float))
		return kb_fail(KB_ERR_FORMAT, "'%s': %s has elements of type %s", path, key, gguf_vtype_name(*type));
	if (m < n)
		return kb_fail(KB_ERR_FORMAT, "'%s': %s has %llu elements for %llu tokens", path, key,
			       (unsigned long long)m, (unsigned long long)n);
	return KB_OK;
}

static uint16_t attr_of_type(int64_t type)
{
	switch (type) {
	case TOK_TYPE_NORMAL: return TOK_ATTR_NORMAL;
	case TOK_TYPE_UNKNOWN: return TOK_ATTR_UNKNOWN;
	case TOK_TYPE_CONTROL: return TOK_ATTR_CONTROL;
	case TOK_TYPE_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
	case TOK_TYPE_UNUSED: return TOK_ATTR_UNUSED;
	case TOK_TYPE_BYTE: return TOK_ATTR_BYTE;
	default: return TOK_ATTR_UNDEFINED;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Copy the token strings, scores and types into t. */
static int load_vocab(struct tok *t, const struct gguf *g, const char *path)
{
	const struct gguf_str *strs;
	uint64_t n;
	int rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", &strs, &n);
	if (rc == KB_EOF)
		return kb_fail(KB_ERR_FORMAT, "'%s': no vocabulary (tokenizer.ggml.tokens is missing)", path);
	if (rc)
		return rc;
	if (n == 0 || n > INT32_MAX / 2)
		return kb_fail(KB_ERR_FORMAT, "'%s': tokenizer.ggml.tokens has %llu tokens", path,
			       (unsigned long long)n);
	enum gguf_vtype score_type = GGUF_TYPE_FLOAT32, type_type = GGUF_TYPE_INT32;
	const void *scores, *types;
	if ((rc = get_parallel(g, path, "tokenizer.ggml.scores", false, n, &score_type, &scores)) ||
	    (rc = get_parallel(g, path, "tokenizer.ggml.token_type", true, n, &type_type, &types)))
		return rc;

	t->n_vocab = (int32_t)n;
	t->off = kb_malloc(n * sizeof *t->off);
	t->len = kb_malloc(n * sizeof *t->len);
	t->score = kb_malloc(n * sizeof *t->score);
	t->attr = kb_malloc(n * sizeof *t->attr);
	t->byte_val = kb_malloc(n * sizeof *t->byte_val);
	if (!t->off || !t->len || !t->score || !t->attr || !t->byte_val)
		return KB_ERR_NOMEM;

	// an empty token becomes "[EMPTY_<id>]" (as llama.cpp names it), so every text is unique
	uint64_t total = 0;
	for (uint64_t i = 0; i < n; i++)
		total += (strs[i].len ? strs[i].len : 24) + 1;
	if (total > UINT32_MAX)
		return kb_fail(KB_ERR_FORMAT, "'%s': vocabulary strings too large (%llu bytes)", path,
			       (unsigned long long)total);
	t->text = kb_malloc(total);
	if (!t->text)
		return KB_ERR_NOMEM;
	uint32_t pos = 0;
	for (uint64_t i = 0; i < n; i++) {
		char *dst = t->text + pos;
		if (strs[i].len) {
			memcpy(dst, strs[i].data, strs[i].len);
			t->len[i] = (uint32_t)strs[i].len;
		} else {
			t->len[i] = (uint32_t)snprintf(dst, 25, "[EMPTY_%llu]", (unsigned long long)i);
		}
		dst[t->len[i]] = '\0';
		t->off[i] = pos;
		pos += t->len[i] + 1;
		if (t->len[i] > t->max_len)
			t->max_len = t->len[i];

		t->score[i] = scores ? (float)gguf_arr_get_f64(score_type, scores, i) : 0.0f;
		t->attr[i] = types ? attr_of_type(gguf_arr_get_i64(type_type, types, i)) : TOK_ATTR_NORMAL;
		t->byte_val[i] = -1;
		if ((t->attr[i] & TOK_ATTR_BYTE) && t->len[i] == 6 && memcmp(dst, "<0x", 3) == 0 && dst[5] == '>' &&
		    hexval(dst[3]) >= 0 && hexval(dst[4]) >= 0)
			t->byte_val[i] = (int16_t)(hexval(dst[3]) << 4 | hexval(dst[4]));
	}
	return map_build(t, path);
}

/* The defaults of each kind (llama.cpp's), before the keys are read. */
static void kind_defaults(struct tok *t)
{
	t->eot = t->eom = t->pad = t->sep = -1;
	t->add_eos = false;
	t->add_space_prefix = false;
	switch (t->kind) {
	case TOK_SPM: // <unk> 0, <s> 1, </s> 2, BOS added, a space prefix
		t->unk = 0;
		t->bos = 1;
		t->eos = 2;
		t->add_bos = true;
		t->add_space_prefix = true;
		break;
	case TOK_BPE: // none unless the keys say (llama.cpp's default, id 11, is "," in GPT-2: not copied)
		t->unk = t->bos = t->eos = -1;
		t->add_bos = false;
		break;
	case TOK_WPM: // [PAD] 0, [UNK] 100, [CLS] 101 as BOS, [SEP] 102 at the end
		t->pad = 0;
		t->unk = 100;
		t->bos = 101;
		t->sep = 102;
		t->eos = -1;
		t->add_bos = true;
		break;
	}
}

/* Special ids and flags from the keys (over the defaults). */
static int load_specials(struct tok *t, const struct gguf *g)
{
	int rc;
	if (t->kind == TOK_WPM && (rc = get_id(g, "tokenizer.ggml.cls_token_id", t->n_vocab, &t->bos)))
		return rc;
	if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos)) ||
	    (rc = get_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos)) ||
	    (rc = get_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk)) ||
	    (rc = get_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot)) ||
	    (rc = get_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom)) ||
	    (rc = get_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad)) ||
	    (rc = get_id(g, "tokenizer.ggml.seperator_token_id", t->n_vocab, &t->sep)) ||
	    (rc = get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
	    (rc = get_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) ||
	    (rc = get_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
		return rc;
	if (t->unk >= t->n_vocab)
		t->unk = -1;

	// SPM byte fallback: <0xXX>, else the byte itself as a token, else <unk>
	for (int b = 0; b < 256; b++) {
		char hex[7], one[1] = { (char)b };
		snprintf(hex, sizeof hex, "<0x%02X>", b);
		int32_t id = find_text(t, hex);
		if (id < 0)
			id = tok_lookup(t, one, 1);
		t->byte_tok[b] = id >= 0 ? id : t->unk;
	}
	return KB_OK;
}

/* Fill-in-the-middle tokens, found by text: llama.cpp makes them CONTROL (so they
 * are only matched with parse_special) and the pad/repo/file-separator ones end
 * generation. fim[i] = the id of the first of group i found, or -1. */
static const char *const fim_texts[6][5] = {
	{ "<|fim_prefix|>", "<fim-prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>" },
	{ "<|fim_suffix|>", "<fim-suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "<SUF>" },
	{ "<|fim_middle|>", "<fim-middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>" },
	{ "<|fim_pad|>", "<fim-pad>", "<PAD>" },
	{ "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>" },
	{ "<|file_sep|>" },
};

static void load_fim(struct tok *t, int32_t fim[6])
{
	for (int i = 0; i < 6; i++) {
		fim[i] = -1;
		for (int j = 0; j < 5 && fim_texts[i][j] && fim[i] < 0; j++)
			fim[i] = find_text(t, fim_texts[i][j]);
		if (fim[i] >= 0)
			t->attr[fim[i]] = TOK_ATTR_CONTROL;
	}
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

static bool eog_has_text(const struct tok *t, const int32_t *ids, int32_t n, const char *s, int32_t *id)
{
	for (int32_t i = 0; i < n; i++)
		if (strcmp(tok_piece(t, ids[i]), s) == 0) {
			if (id)
				*id = ids[i];
			return true;
		}
	return false;
}

static void eog_remove(int32_t *ids, int32_t *n, int32_t id)
{
	for (int32_t i = 0; i < *n; i++)
		if (ids[i] == id) {
			memmove(ids + i, ids + i + 1, (size_t)(*n - i - 1) * sizeof *ids);
			(*n)--;
			return;
		}
}

/* The end-of-generation set: tokens with a known end text (made CONTROL), EOS, EOT, EOM,
 * the FIM pad/repo/separator tokens; then llama.cpp's two exceptions (harmony-style
 * "<|end|>", gemma4-style "</s>"). */
static int load_eog(struct tok *t)
{
	int32_t fim[6];
	load_fim(t, fim);
	size_t cap = sizeof eog_texts / sizeof *eog_texts + 6;
	t->eog = kb_malloc(cap * sizeof *t->eog);
	if (!t->eog)
		return KB_ERR_NOMEM;
	int32_t n = 0;
	for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++) {
		int32_t id = find_text(t, eog_texts[i]);
		if (id >= 0) {
			t->eog[n++] = id;
			t->attr[id] |= TOK_ATTR_CONTROL;
		}
	}
	int32_t extra[6] = { t->eos, t->eot, t->eom, fim[3], fim[4], fim[5] };
	for (int i = 0; i < 6; i++) {
		bool have = extra[i] < 0;
		for (int32_t j = 0; j < n && !have; j++)
			have = t->eog[j] == extra[i];
		if (!have)
			t->eog[n++] = extra[i];
	}
	int32_t end_id = -1, s_id = -1;
	bool has_call = eog_has_text(t, t->eog, n, "<|call|>", NULL) || eog_has_text(t, t->eog, n, "<|calls|>", NULL);
	if (eog_has_text(t, t->eog, n, "<|end|>", &end_id) && has_call &&
	    (eog_has_text(t, t->eog, n, "<|return|>", NULL) || eog_has_text(t, t->eog, n, "<|flush|>", NULL))) {
		eog_remove(t->eog, &n, end_id);
		t->attr[end_id] = TOK_ATTR_USER_DEFINED;
	}
	if (eog_has_text(t, t->eog, n, "<|tool_response>", NULL) && eog_has_text(t, t->eog, n, "</s>", &s_id)) {
		eog_remove(t->eog, &n, s_id);
		t->attr[s_id] = TOK_ATTR_NORMAL;
	}
	qsort(t->eog, (size_t)n, sizeof *t->eog, cmp_i32);
	t->n_eog = n;
	return KB_OK;
}

static _Thread_local const struct tok *cmp_ctx; /* the vocabulary cmp_special sorts by */

static int cmp_special(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint32_t lx = cmp_ctx->len[x], ly = cmp_ctx->len[y];
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return (x > y) - (x < y);
}

/* The tokens matched in text before tokenizing (longest first), and the phi-3 rule
 * that its special tokens eat the whitespace to their right. */
static int load_special_cache(struct tok *t, const struct gguf *g)
{
	const uint16_t special = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
	int32_t n = 0;
	for (int32_t id = 0; id < t->n_vocab; id++)
		n += (t->attr[id] & special) != 0;
	t->special = kb_malloc((size_t)(n ? n : 1) * sizeof *t->special);
	if (!t->special)
		return KB_ERR_NOMEM;
	t->n_special = 0;
	for (int32_t id = 0; id < t->n_vocab; id++)
		if (t->attr[id] & special)
			t->special[t->n_special++] = id;
	cmp_ctx = t;
	qsort(t->special, (size_t)n, sizeof *t->special, cmp_special);
	cmp_ctx = NULL;

	// jina-v2's <mask> eats the whitespace to its left
	struct gguf_str pre;
	if (gguf_get_str(g, "tokenizer.ggml.pre", &pre) == KB_OK &&
	    (gguf_str_eq(pre, "jina-v2-de") || gguf_str_eq(pre, "jina-v2-es") || gguf_str_eq(pre, "jina-v2-code"))) {
		int32_t id = find_text(t, "<mask>");
		if (id >= 0)
			t->attr[id] |= TOK_ATTR_LSTRIP;
	}

	struct gguf_str name;
	if (gguf_get_str(g, "general.name", &name) != KB_OK)
		return KB_OK;
	char lower[256];
	size_t ln = name.len < sizeof lower - 1 ? (size_t)name.len : sizeof lower - 1;
	for (size_t i = 0; i < ln; i++) {
		char c = name.data[i];
		lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	lower[ln] = '\0';
	if (strstr(lower, "phi-3") || strstr(lower, "phi3")) {
		for (int32_t i = 0; i < t->n_special; i++)
			t->attr[t->special[i]] |= TOK_ATTR_RSTRIP;
		int32_t id = find_text(t, "</s>");
		if (id >= 0)
			t->attr[id] |= TOK_ATTR_RSTRIP;
		const char *keep[] = { "<unk>", "<s>", "<|endoftext|>" };
		for (int i = 0; i < 3; i++)
			if ((id = find_text(t, keep[i])) >= 0)
				t->attr[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
	}
	return KB_OK;
}

int tok_load(struct tok **out, const struct gguf *g)
{
	*out = NULL;
	const char *path = g->path ? g->path : "<gguf>";
	struct gguf_str model;
	int rc = gguf_get_str(g, "tokenizer.ggml.model", &model);
	if (rc == KB_EOF)
		return kb_fail(KB_ERR_FORMAT, "'%s': no tokenizer (tokenizer.ggml.model is missing)", path);
	if (rc)
		return rc;
	enum tok_kind kind;
	if (gguf_str_eq(model, "llama"))
		kind = TOK_SPM;
	else if (gguf_str_eq(model, "gpt2"))
		kind = TOK_BPE;
	else if (gguf_str_eq(model, "bert"))
		kind = TOK_WPM;
	else
		return kb_fail(KB_ERR_UNSUPPORTED, "'%s': unknown tokenizer '%.*s'", path,
			       model.len > 64 ? 64 : (int)model.len, model.data);

	struct tok *t = kb_calloc(1, sizeof *t);
	if (!t)
		return KB_ERR_NOMEM;
	t->kind = kind;
	kind_defaults(t);
	if ((rc = load_vocab(t, g, path)) || (kind == TOK_BPE && (rc = tok_bpe_init(t, g, path))) ||
	    (rc = load_specials(t, g)) || (rc = load_eog(t)) || (rc = load_special_cache(t, g)) ||
	    (kind == TOK_SPM && (rc = tok_spm_init(t)))) {
		tok_free(t);
		return rc;
	}
	*out = t;
	return KB_OK;
}

void tok_free(struct tok *t)
{
	if (!t)
		return;
	free(t->text);
	free(t->off);
	free(t->len);
	free(t->score);
	free(t->attr);
	free(t->byte_val);
	free(t->map.slot);
	free(t->special);
	free(t->eog);
	free(t->pair_set);
	tok_bpe_free(t->bpe);
	free(t->warning);
	free(t);
}

/* ---- accessors ---- */

enum tok_kind tok_kind(const struct tok *t) { return t->kind; }
int32_t tok_n_vocab(const struct tok *t) { return t->n_vocab; }
int32_t tok_bos(const struct tok *t) { return t->bos; }
int32_t tok_eos(const struct tok *t) { return t->eos; }
bool tok_add_bos(const struct tok *t) { return t->add_bos && t->bos >= 0; }
const char *tok_warning(const struct tok *t) { return t->warning; }

bool tok_is_eog(const struct tok *t, int32_t id)
{
	return id >= 0 && bsearch(&id, t->eog, (size_t)t->n_eog, sizeof *t->eog, cmp_i32) != NULL;
}

const char *tok_piece(const struct tok *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab ? t->text + t->off[id] : "";
}

/* ---- encode ---- */

/* A piece of the input: raw text [off, off + len), or a special token (id >= 0). */
struct frag {
	size_t off, len;
	int32_t id;
};

struct frags {
	struct frag *v; /* owned */
	size_t n, cap;
};

static int frags_push(struct frags *f, size_t off, size_t len, int32_t id)
{
	if (kb_grow(&f->v, &f->cap, f->n, sizeof *f->v, 16))
		return KB_ERR_NOMEM;
	f->v[f->n++] = (struct frag){ off, len, id };
	return KB_OK;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Cut every occurrence of special token id out of the raw fragments of in, into out. */
/* Bytes [a, b) that special tokens parse_special governs (CONTROL, UNKNOWN)
 * are not matched across: a user's text inside a template's markup. */
struct plain_span {
	size_t a, b;
};

static int split_on(const struct tok *t, int32_t id, const char *text, const struct frags *in,
		    const struct plain_span *plain, struct frags *out)
{
	const char *s = t->text + t->off[id];
	size_t slen = t->len[id];
	uint16_t attr = t->attr[id];
	bool governed = attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN);
	int rc;
	out->n = 0;
	for (size_t i = 0; i < in->n; i++) {
		struct frag f = in->v[i];
		if (f.id >= 0) {
			if ((rc = frags_push(out, f.off, f.len, f.id)))
				return rc;
			continue;
		}
		size_t base = f.off, end = f.off + f.len, from = base;
		for (;;) {
			const char *m = from < end ? memmem(text + from, end - from, s, slen) : NULL;
			size_t at = m ? (size_t)(m - text) : 0;
			if (m && governed && at < plain->b && at + slen > plain->a) {
				from = at + 1; /* inside the plain text: not this one */
				continue;
			}
			if (!m) {
				if (end > base && (rc = frags_push(out, base, end - base, -1)))
					return rc;
				break;
			}
			size_t left = at - base;
			if (attr & TOK_ATTR_LSTRIP)
				while (left > 0 && is_space(text[base + left - 1]))
					left--;
			if (left && (rc = frags_push(out, base, left, -1)))
				return rc;
			if ((rc = frags_push(out, at, slen, id)))
				return rc;
			base = at + slen;
			if (attr & TOK_ATTR_RSTRIP)
				while (base < end && is_space(text[base]))
					base++;
			from = base;
		}
	}
	return KB_OK;
}

/* The fragments of text: special tokens cut out (CONTROL and UNKNOWN ones only with
 * parse_special; USER_DEFINED ones always, as llama.cpp does). */
static int partition(const struct tok *t, const char *text, size_t len, bool parse_special,
		     const struct plain_span *plain, struct frags *f)
{
	struct frags tmp = { 0 };
	int rc = KB_OK;
	if (len && (rc = frags_push(f, 0, len, -1)))
		return rc;
	// which bytes, and which pairs of neighbouring bytes, the text has: a special token
	// whose first two bytes never meet is skipped without a search (vocabularies with
	// hundreds of user-defined tokens would scan the text hundreds of times)
	uint64_t *seen = t->n_special > 16 && len > 4096 ? kb_calloc(1024 + 4, sizeof *seen) : NULL;
	if (seen) {
		const unsigned char *u = (const unsigned char *)text;
		for (size_t i = 0; i < len; i++) {
			seen[1024 + (u[i] >> 6)] |= 1ull << (u[i] & 63);
			if (i + 1 < len) {
				unsigned pair = (unsigned)u[i] << 8 | u[i + 1];
				seen[pair >> 6] |= 1ull << (pair & 63);
			}
		}
	}
	for (int32_t i = 0; i < t->n_special && f->n; i++) {
		int32_t id = t->special[i];
		if (!parse_special && (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
			continue;
		if (seen) {
			const unsigned char *s = (const unsigned char *)t->text + t->off[id];
			unsigned key = t->len[id] == 1 ? 1024u * 64 + s[0] : (unsigned)s[0] << 8 | s[1];
			if (!(seen[key >> 6] >> (key & 63) & 1))
				continue;
		}
		bool any = false;
		for (size_t k = 0; k < f->n && !any; k++)
			any = f->v[k].id < 0 && memmem(text + f->v[k].off, f->v[k].len, t->text + t->off[id], t->len[id]);
		if (!any)
			continue;
		if ((rc = split_on(t, id, text, f, plain, &tmp)))
			break;
		struct frags swap = *f;
		*f = tmp;
		tmp = swap;
	}
	free(seen);
	free(tmp.v);
	return rc;
}

/* One raw fragment with the kind's algorithm. after_special: it follows BOS, a
 * special token, or starts the text. */
static int encode_fragment(const struct tok *t, const char *text, size_t len, bool after_special,
			   struct tok_ids *out)
{
	switch (t->kind) {
	case TOK_SPM:
		return tok_spm_encode(t, text, len, t->add_space_prefix && after_special, out);
	case TOK_BPE:
		return tok_bpe_encode(t, text, len, out);
	case TOK_WPM:
		return tok_wpm_encode(t, text, len, out);
	}
	return kb_fail(KB_ERR_UNSUPPORTED, "tokenizer kind %d is not supported", (int)t->kind);
}

int tok_encode(const struct tok *t, const char *text, size_t len, bool add_bos,
	       bool parse_special, int32_t **ids, size_t *n)
{
	return tok_encode_framed(t, text, len, add_bos, parse_special, 0, 0, ids, n);
}

int tok_encode_framed(const struct tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
		      size_t plain, size_t plain_len, int32_t **ids, size_t *n)
{
	const struct plain_span span = { plain, plain + plain_len };
	struct tok_ids out = { 0 };
	struct frags f = { 0 };
	*ids = NULL;
	*n = 0;
	int rc = tok_ids_push(&out, 0); // so that *ids is never NULL
	out.n = 0;
	if (rc)
		goto fail;
	if (add_bos && t->bos >= 0 && (rc = tok_ids_push(&out, t->bos)))
		goto fail;
	if ((rc = partition(t, text, len, parse_special, &span, &f)))
		goto fail;
	bool after_special = true;
	for (size_t i = 0; i < f.n; i++) {
		if (f.v[i].id >= 0)
			rc = tok_ids_push(&out, f.v[i].id);
		else
			rc = encode_fragment(t, text + f.v[i].off, f.v[i].len, after_special, &out);
		if (rc)
			goto fail;
		after_special = f.v[i].id >= 0;
	}
	// the end of a sequence: [SEP] for WordPiece, else EOS when the vocabulary asks
	if (add_bos && t->kind == TOK_WPM && t->sep >= 0)
		rc = tok_ids_push(&out, t->sep);
	else if (add_bos && t->kind != TOK_WPM && t->add_eos && t->eos >= 0)
		rc = tok_ids_push(&out, t->eos);
	if (rc)
		goto fail;
	free(f.v);
	*ids = out.v;
	*n = out.n;
	return KB_OK;
fail:
	free(f.v);
	free(out.v);
	return rc;
}

/* ---- decode ---- */

size_t tok_decode(const struct tok *t, int32_t id, bool show_special, char *out, size_t cap)
{
	if (id < 0 || id >= t->n_vocab)
		return 0;
	uint16_t attr = t->attr[id];
	const char *s = t->text + t->off[id];
	size_t n = t->len[id];
	if (attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)) {
		if (!show_special)
			return 0;
	} else if (attr & TOK_ATTR_USER_DEFINED) {
		// as written
	} else if ((attr & TOK_ATTR_NORMAL) && t->kind == TOK_BPE) {
		return tok_bpe_decode(t, id, out, cap);
	} else if (attr & TOK_ATTR_NORMAL) {
		// "▁" -> " "
		size_t need = 0;
		for (size_t i = 0; i < n; i++, need++)
			if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0)
				i += 2;
		if (need <= cap)
			for (size_t i = 0, j = 0; i < n; i++, j++) {
				if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
					out[j] = ' ';
					i += 2;
				} else {
					out[j] = s[i];
				}
			}
		return need;
	} else if (attr & TOK_ATTR_BYTE) {
		if (t->byte_val[id] < 0)
			return 0;
		if (cap >= 1)
			out[0] = (char)t->byte_val[id];
		return 1;
	} else {
		return 0; // unused and undefined tokens are suppressed
	}
	if (n <= cap)
		memcpy(out, s, n);
	return n;
}
