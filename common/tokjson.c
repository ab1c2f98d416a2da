/* tokjson.c — see tokjson.h. */
#include "tokjson.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "tok.h"

#define MAX_VOCAB (1 << 24)

/* ---- helpers ---- */

/* The JSON file beside path named name, or NULL when absent; a file that is there
 * but broken is an error. */
static int load_sibling(const char *path, const char *name, json_t **out)
{
	*out = NULL;
	const char *slash = strrchr(path, '/');
	size_t dir = slash ? (size_t)(slash - path + 1) : 0;
	size_t n = dir + strlen(name) + 1;
	char *p = kb_malloc(n);
	if (!p)
		return KB_ERR_NOMEM;
	memcpy(p, path, dir);
	strcpy(p + dir, name);
	FILE *f = fopen(p, "r");
	if (!f) {
		free(p);
		return KB_OK;
	}
	json_error_t err;
	*out = json_loadf(f, 0, &err);
	fclose(f);
	int rc = *out ? KB_OK : kb_fail(KB_ERR_FORMAT, "'%s': line %d: %s", p, err.line, err.text);
	free(p);
	return rc;
}

/* The text of a token entry of tokenizer_config.json: "text" or {"content": "text"}. */
static const char *entry_text(json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "content");
	return json_string_value(v);
}

/* ---- the vocabulary ---- */

struct build {
	const char *path;
	struct tokjson *tj;
	json_t *root, *model, *added, *config, *tconfig;
	bool wordpiece;
};

/* An id read from JSON, checked. */
static int get_id(const struct build *b, json_t *v, const char *what, int32_t *id)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB)
		return kb_fail(KB_ERR_FORMAT, "'%s': %s: not a token id", b->path, what);
	*id = (int32_t)json_integer_value(v);
	return KB_OK;
}

/* The highest id + 1 over model.vocab, the added tokens and config.json's vocab_size. */
static int count_vocab(struct build *b, json_t *vocab)
{
	int32_t n = 0, id;
	const char *key;
	json_t *v;
	int rc;
	json_object_foreach(vocab, key, v) {
		if ((rc = get_id(b, v, key, &id)))
			return rc;
		if (id + 1 > n)
			n = id + 1;
	}
	size_t i;
	json_array_foreach(b->added, i, v) {
		if ((rc = get_id(b, json_object_get(v, "id"), "added_tokens", &id)))
			return rc;
		if (id + 1 > n)
			n = id + 1;
	}
	json_t *vs = json_object_get(b->config, "vocab_size");
	if (json_is_integer(vs) && json_integer_value(vs) > n && json_integer_value(vs) < MAX_VOCAB)
		n = (int32_t)json_integer_value(vs);
	if (n == 0)
		return kb_fail(KB_ERR_FORMAT, "'%s': the vocabulary is empty", b->path);
	b->tj->n_vocab = n;
	return KB_OK;
}

/* llama.cpp's BERT vocabulary: "[x]" as is, "##x" -> "x", "x" -> "▁x". */
static char *wordpiece_text(const char *s)
{
	size_t n = strlen(s);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
		return kb_strndup(s, n);
	if (n >= 2 && s[0] == '#' && s[1] == '#')
		return kb_strndup(s + 2, n - 2);
	char *p = kb_malloc(n + 4);
	if (p) {
		memcpy(p, "\xe2\x96\x81", 3);
		memcpy(p + 3, s, n + 1);
	}
	return p;
}

static int set_token(struct build *b, int32_t id, const char *s, int32_t type)
{
	struct tokjson *tj = b->tj;
	char *p = b->wordpiece ? wordpiece_text(s) : kb_strndup(s, strlen(s));
	if (!p)
		return KB_ERR_NOMEM;
	free(tj->tokens[id]);
	tj->tokens[id] = p;
	tj->types[id] = type;
	return KB_OK;
}

static int load_tokens(struct build *b)
{
	struct tokjson *tj = b->tj;
	json_t *vocab = json_object_get(b->model, "vocab");
	if (!json_is_object(vocab))
		return kb_fail(KB_ERR_FORMAT, "'%s': model.vocab is not an object", b->path);
	int rc = count_vocab(b, vocab);
	if (rc)
		return rc;
	tj->tokens = kb_calloc((size_t)tj->n_vocab, sizeof *tj->tokens);
	tj->types = kb_calloc((size_t)tj->n_vocab, sizeof *tj->types);
	if (!tj->tokens || !tj->types)
		return KB_ERR_NOMEM;
	const char *key;
	json_t *v;
	json_object_foreach(vocab, key, v) {
		int32_t id = (int32_t)json_integer_value(v);
		if (tj->tokens[id])
			return kb_fail(KB_ERR_FORMAT, "'%s': id %d is given to '%.64s' and '%.64s'", b->path, id,
				       tj->tokens[id], key);
		if ((rc = set_token(b, id, key, TOK_TYPE_NORMAL)))
			return rc;
	}
	size_t i;
	json_array_foreach(b->added, i, v) {
		const char *s = json_string_value(json_object_get(v, "content"));
		if (!s)
			return kb_fail(KB_ERR_FORMAT, "'%s': added token %zu has no content", b->path, i);
		int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
		bool special = json_is_true(json_object_get(v, "special"));
		if ((rc = set_token(b, id, s, special ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED)))
			return rc;
	}
	// ids nobody names (a vocab_size larger than the vocabulary) are unused padding
	for (int32_t id = 0; id < tj->n_vocab; id++)
		if (!tj->tokens[id]) {
			char buf[32];
			snprintf(buf, sizeof buf, "[PAD%d]", id);
			if (!(tj->tokens[id] = kb_strndup(buf, strlen(buf))))
				return KB_ERR_NOMEM;
			tj->types[id] = TOK_TYPE_UNUSED;
		}
	return KB_OK;
}

static int load_merges(struct build *b)
{
	struct tokjson *tj = b->tj;
	json_t *merges = json_object_get(b->model, "merges");
	if (!json_is_array(merges))
		return kb_fail(KB_ERR_FORMAT, "'%s': model.merges is not a list", b->path);
	size_t n = json_array_size(merges), i;
	tj->merges = kb_calloc(n ? n : 1, sizeof *tj->merges);
	if (!tj->merges)
		return KB_ERR_NOMEM;
	json_t *v;
	json_array_foreach(merges, i, v) {
		const char *s = json_string_value(v);
		if (s) {
			tj->merges[i] = kb_strndup(s, strlen(s));
		} else if (json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
			   json_is_string(json_array_get(v, 1))) {
			const char *l = json_string_value(json_array_get(v, 0)), *r = json_string_value(json_array_get(v, 1));
			size_t nl = strlen(l), nr = strlen(r);
			if ((tj->merges[i] = kb_malloc(nl + nr + 2))) {
				memcpy(tj->merges[i], l, nl);
				tj->merges[i][nl] = ' ';
				memcpy(tj->merges[i] + nl + 1, r, nr + 1);
			}
		} else {
			return kb_fail(KB_ERR_FORMAT, "'%s': merge %zu is neither \"a b\" nor [\"a\", \"b\"]", b->path, i);
		}
		if (!tj->merges[i])
			return KB_ERR_NOMEM;
		tj->n_merges = (int64_t)i + 1;
	}
	return KB_OK;
}

/* ---- the pre-tokenizer ---- */

/* The regexes of Hugging Face's Split steps that llama.cpp knows by name. */
static const char re_llama3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
	"\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
	"\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* One step as a letter: B ByteLevel with its regex, b ByteLevel without, D digits one
 * by one, L/Q/G a Split on the llama3/qwen2/gpt-2 regex, ? anything else. */
static char step_code(json_t *p)
{
	const char *type = json_string_value(json_object_get(p, "type"));
	if (!type)
		return '?';
	if (!strcmp(type, "ByteLevel")) {
		json_t *ur = json_object_get(p, "use_regex");
		return ur && json_is_false(ur) ? 'b' : 'B';
	}
	if (!strcmp(type, "Digits"))
		return json_is_true(json_object_get(p, "individual_digits")) ? 'D' : '?';
	if (!strcmp(type, "Split")) {
		const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
		if (re && !strcmp(re, re_llama3))
			return 'L';
		if (re && !strcmp(re, re_qwen2))
			return 'Q';
		if (re && !strcmp(re, re_gpt2))
			return 'G';
	}
	return '?';
}

static int infer_pre(struct build *b)
{
	struct tokjson *tj = b->tj;
	const char *pre = NULL;
	if (b->wordpiece) {
		pre = "default"; // WordPiece has no pre-tokenizer choice in llama.cpp
	} else {
		json_t *pt = json_object_get(b->root, "pre_tokenizer");
		char sig[8] = "";
		size_t n = 0;
		const char *type = json_string_value(json_object_get(pt, "type"));
		if (type && !strcmp(type, "Sequence")) {
			size_t i;
			json_t *p;
			json_array_foreach(json_object_get(pt, "pretokenizers"), i, p) {
				if (n < sizeof sig - 1)
					sig[n++] = step_code(p);
			}
		} else if (type) {
			sig[n++] = step_code(pt);
		}
		sig[n] = '\0';
		static const struct {
			const char *sig, *pre;
		} known[] = { { "B", "gpt-2" }, { "Gb", "gpt-2" }, { "DB", "smollm" }, { "Lb", "llama-bpe" },
			      { "Qb", "qwen2" } };
		for (size_t i = 0; i < sizeof known / sizeof *known && !pre; i++)
			if (!strcmp(sig, known[i].sig))
				pre = known[i].pre;
		if (!pre) {
			pre = "gpt-2";
			snprintf(tj->warning, sizeof tj->warning,
				 "pre-tokenizer %s not recognised: wrote tokenizer.ggml.pre = gpt-2",
				 type ? type : "(none)");
		}
	}
	return (tj->pre = kb_strndup(pre, strlen(pre))) ? KB_OK : KB_ERR_NOMEM;
}

/* ---- special ids ---- */

static int32_t find_token(const struct tokjson *tj, const char *s)
{
	for (int32_t id = 0; s && id < tj->n_vocab; id++)
		if (!strcmp(tj->tokens[id], s))
			return id;
	return -1;
}

/* The id of the first of texts that is a token, or -1. */
static int32_t find_any(const struct tokjson *tj, const char *const *texts)
{
	int32_t id = -1;
	for (; *texts && id < 0; texts++)
		id = find_token(tj, *texts);
	return id;
}

/* As llama.cpp's converter: tokenizer_config.json's "<x>_token" first, then
 * config.json's "<x>_token_id", then the model's unk_token; last, texts every
 * tokenizer of the kind uses (recorded in the warning). */
static void load_special_ids(struct build *b)
{
	struct tokjson *tj = b->tj;
	static const char *const names[] = { "bos", "eos", "unk", "pad", "sep", "cls", "mask" };
	int32_t *ids[] = { &tj->bos, &tj->eos, &tj->unk, &tj->pad, &tj->sep, &tj->cls, &tj->mask };
	for (int i = 0; i < 7; i++) {
		char key[32];
		*ids[i] = -1;
		snprintf(key, sizeof key, "%s_token", names[i]);
		const char *s = entry_text(json_object_get(b->tconfig, key));
		if (s)
			*ids[i] = find_token(tj, s);
		snprintf(key, sizeof key, "%s_token_id", names[i]);
		json_t *v = json_object_get(b->config, key);
		if (*ids[i] < 0 && json_is_integer(v) && json_integer_value(v) >= 0 &&
		    json_integer_value(v) < tj->n_vocab)
			*ids[i] = (int32_t)json_integer_value(v);
	}
	if (tj->unk < 0) {
		const char *s = json_string_value(json_object_get(b->model, "unk_token"));
		tj->unk = s ? find_token(tj, s) : -1;
		if (tj->unk >= 0 && b->wordpiece && s[0] != '[')
			tj->unk = -1; // stored as "▁<unk>": not the text itself
	}
	json_t *ab = json_object_get(b->tconfig, "add_bos_token"), *ae = json_object_get(b->tconfig, "add_eos_token");
	tj->add_bos = json_is_boolean(ab) ? json_is_true(ab) : -1;
	tj->add_eos = json_is_boolean(ae) ? json_is_true(ae) : -1;

	bool guessed = false;
	if (b->wordpiece) {
		static const char *const cls[] = { "[CLS]", NULL }, *const sep[] = { "[SEP]", NULL },
					 *const pad[] = { "[PAD]", NULL }, *const mask[] = { "[MASK]", NULL },
					 *const unk[] = { "[UNK]", NULL };
		if (tj->cls < 0 && (tj->cls = find_any(tj, cls)) >= 0)
			guessed = true;
		if (tj->sep < 0 && (tj->sep = find_any(tj, sep)) >= 0)
			guessed = true;
		if (tj->pad < 0)
			tj->pad = find_any(tj, pad);
		if (tj->mask < 0)
			tj->mask = find_any(tj, mask);
		if (tj->unk < 0)
			tj->unk = find_any(tj, unk);
		if (tj->bos < 0)
			tj->bos = tj->cls;
	} else {
		static const char *const bos[] = { "<|begin_of_text|>", "<s>", "<|endoftext|>", NULL },
					 *const eos[] = { "<|end_of_text|>", "</s>", "<|endoftext|>", NULL };
		if (tj->bos < 0 && (tj->bos = find_any(tj, bos)) >= 0)
			guessed = true;
		if (tj->eos < 0 && (tj->eos = find_any(tj, eos)) >= 0)
			guessed = true;
	}
	if (guessed && !tj->warning[0])
		snprintf(tj->warning, sizeof tj->warning, "no config names the special tokens: took %s '%s'",
			 b->wordpiece ? "[CLS]/[SEP] from" : "BOS/EOS from the texts, BOS",
			 b->wordpiece ? "the vocabulary" : tj->bos >= 0 ? tj->tokens[tj->bos] : "(none)");
}

/* ---- entry points ---- */

int tokjson_load(const char *path, struct tokjson *out)
{
	memset(out, 0, sizeof *out);
	out->bos = out->eos = out->unk = out->pad = out->sep = out->cls = out->mask = -1;
	out->add_bos = out->add_eos = -1;
	struct build b = { .path = path, .tj = out };
	int rc = KB_OK;
	FILE *f = fopen(path, "r");
	if (!f)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	json_error_t err;
	b.root = json_loadf(f, 0, &err);
	fclose(f);
	if (!b.root)
		return kb_fail(KB_ERR_FORMAT, "'%s': line %d: %s", path, err.line, err.text);
	b.model = json_object_get(b.root, "model");
	b.added = json_object_get(b.root, "added_tokens");
	const char *type = json_string_value(json_object_get(b.model, "type"));
	if (!json_is_object(b.model)) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': no model object: not a tokenizer.json", path);
		goto done;
	}
	if (!type && json_object_get(b.model, "merges"))
		type = "BPE"; // old files say nothing
	if (type && !strcmp(type, "WordPiece")) {
		b.wordpiece = true;
	} else if (!type || strcmp(type, "BPE")) {
		rc = kb_fail(KB_ERR_UNSUPPORTED, "'%s': tokenizer model '%.32s' is not supported (BPE and WordPiece are)",
			     path, type ? type : "(none)");
		goto done;
	}
	/* SentencePiece-style BPE (Llama 2, Mistral: "▁" for spaces, <0xNN> byte tokens)
	 * is not byte-level: read as one, it would give other ids */
	if (!b.wordpiece && json_is_true(json_object_get(b.model, "byte_fallback"))) {
		rc = kb_fail(KB_ERR_UNSUPPORTED, "'%s': a SentencePiece-style BPE (byte_fallback) is not supported "
			     "(byte-level BPE and WordPiece are)", path);
		goto done;
	}
	if (b.added && !json_is_array(b.added)) {
		rc = kb_fail(KB_ERR_FORMAT, "'%s': added_tokens is not a list", path);
		goto done;
	}
	if ((rc = load_sibling(path, "config.json", &b.config)) ||
	    (rc = load_sibling(path, "tokenizer_config.json", &b.tconfig)))
		goto done;
	out->model = kb_strndup(b.wordpiece ? "bert" : "gpt2", 4);
	if (!out->model) {
		rc = KB_ERR_NOMEM;
		goto done;
	}
	if ((rc = load_tokens(&b)) || (!b.wordpiece && (rc = load_merges(&b))) || (rc = infer_pre(&b)))
		goto done;
	load_special_ids(&b);
done:
	json_decref(b.root);
	json_decref(b.config);
	json_decref(b.tconfig);
	return rc;
}

void tokjson_free(struct tokjson *tj)
{
	if (!tj)
		return;
	for (int32_t i = 0; tj->tokens && i < tj->n_vocab; i++)
		free(tj->tokens[i]);
	for (int64_t i = 0; tj->merges && i < tj->n_merges; i++)
		free(tj->merges[i]);
	free(tj->tokens);
	free(tj->types);
	free(tj->merges);
	free(tj->model);
	free(tj->pre);
	memset(tj, 0, sizeof *tj);
}

int tokjson_to_gguf(const struct tokjson *tj, struct gguf_writer *w)
{
	int rc;
	if ((rc = gguf_writer_set_str(w, "tokenizer.ggml.model", tj->model)) ||
	    (rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", tj->pre)) ||
	    (rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tj->tokens,
					  (uint64_t)tj->n_vocab)) ||
	    (rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, tj->types,
				      (uint64_t)tj->n_vocab)))
		return rc;
	if (tj->merges && (rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)tj->merges,
							 (uint64_t)tj->n_merges)))
		return rc;
	static const char *const keys[] = {
		"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
		"tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.cls_token_id",
		"tokenizer.ggml.mask_token_id",
	};
	const int32_t ids[] = { tj->bos, tj->eos, tj->unk, tj->pad, tj->sep, tj->cls, tj->mask };
	for (int i = 0; i < 7; i++)
		if (ids[i] >= 0 && (rc = gguf_writer_set_u32(w, keys[i], (uint32_t)ids[i])))
			return rc;
	if (tj->add_bos >= 0 && (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", tj->add_bos)))
		return rc;
	if (tj->add_eos >= 0 && (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", tj->add_eos)))
		return rc;
	return KB_OK;
}
