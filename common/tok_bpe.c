/* tok_bpe.c — byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * The algorithm, as llama.cpp runs it on a fragment of text:
 *   1. the text is read as code points (an invalid byte becomes U+FFFD) and written
 *      back as UTF-8, so what follows sees well-formed text;
 *   2. the pre-tokenizer cuts it into pre-tokens with a list of regexes applied in
 *      turn: each regex splits every piece left by the previous one into its
 *      matches and the text between them;
 *   3. every byte of a pre-token becomes the character GPT-2's byte-to-unicode
 *      table gives it (printable bytes stay, the rest move to U+0100...), one
 *      symbol each;
 *   4. repeatedly the adjacent pair with the lowest merge rank is joined (ties: the
 *      leftmost pair), until no pair has a rank;
 *   5. each final symbol is its token; one that is none falls back to its single
 *      bytes that are tokens (llama.cpp drops the others).
 * llama.cpp writes the regexes for C++'s std::regex on a text with each code point
 * reduced to its category; here they are PCRE2 patterns (UTF, Unicode properties,
 * JIT) meaning the same. Its whitespace is the Unicode White_Space set, spelt out
 * below, where PCRE2's \s would differ (U+180E in, with UCP).
 *
 * Symbols are numbered strings: every token, plus the strings of merges that are not
 * tokens, so a merge is a lookup of (left id, right id) -> (rank, joined id) in one
 * hash table and the merge loop touches no text. It keeps a min-heap of candidate
 * pairs per pre-token: O(n log n) in its length; a pair made stale by an earlier
 * merge is recognised because a side's id has changed.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok_impl.h"

#include <string.h>

#include "util.h"

/* ---- pre-tokenizers ---- */

/* llama.cpp's whitespace (Unicode White_Space), for inside [] */
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define S "[" WS "]"
#define NS "[^" WS "]"

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S "+(?!" NS ")|" S "+"
#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                   \
	RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S \
		       "*[\\r\\n]+|" S "+(?!" NS ")|" S "+"
#define RE_QWEN2                                                                                 \
	RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S \
		       "*[\\r\\n]+|" S "+(?!" NS ")|" S "+"
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_PORO " ?[^(" WS "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"
/* deepseek-llm's letters: the cased letters (Lu Ll Lt) of the ranges its tokenizer lists */
#define RE_DSLLM_LETTERS                                                                                       \
	"[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"              \
	"\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"       \
	"\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"            \
	"\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"          \
	"\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"          \
	"\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"  \
	"\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}" \
	"\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"            \
	"\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"            \
	"\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"            \
	"\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"           \
	"\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"          \
	"\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"        \
	"\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}" \
	"\\x{1E900}-\\x{1E943}]"

/* A pre-tokenizer: the regexes in the order they cut, and what the name implies. */
struct bpe_pre {
	const char *name;         /* canonical name, as llama.cpp's enum calls it */
	const char *re[7];        /* NULL-terminated */
	bool ignore_merges, add_bos, no_bos;
};

enum {
	PRE_DEFAULT, PRE_LLAMA3, PRE_DBRX, PRE_DEEPSEEK_LLM, PRE_DEEPSEEK_CODER, PRE_DEEPSEEK3, PRE_FALCON,
	PRE_GPT2, PRE_STARCODER, PRE_QWEN2, PRE_PORO, PRE_CHATGLM4, PRE_VIKING, PRE_TEKKEN, PRE_CHAMELEON,
};

static const struct bpe_pre pres[] = {
	[PRE_DEFAULT] = { "default", { "[\\p{P}$+<=>^~|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" } },
	[PRE_LLAMA3] = { "llama3", { RE_LLAMA3 }, .ignore_merges = true, .add_bos = true },
	[PRE_DBRX] = { "dbrx", { RE_LLAMA3 } },
	[PRE_DEEPSEEK_LLM] = { "deepseek-llm",
			       { "[\\r\\n]", S "?" RE_DSLLM_LETTERS "+",
				 S "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
				 S "+$", RE_CJK, "\\p{N}+" } },
	[PRE_DEEPSEEK_CODER] = { "deepseek-coder", { "[\\r\\n]", S "?\\p{L}+", S "?\\p{P}+", RE_CJK, "\\p{N}" } },
	// llama.cpp's \p{S} leaves out '~' (its category tables stop at "$+<=>^`|" in ASCII)
	[PRE_DEEPSEEK3] = { "deepseek-v3",
			    { "\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
			      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
			      "|(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+"
			      "| ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+" } },
	[PRE_FALCON] = { "falcon", { "[\\p{P}$+<=>^~|`]+", RE_GPT2, "[0-9][0-9][0-9]" } },
	[PRE_GPT2] = { "gpt-2", { RE_GPT2 } },
	[PRE_STARCODER] = { "starcoder", { "\\p{N}", RE_GPT2 } },
	[PRE_QWEN2] = { "qwen2", { RE_QWEN2 } },
	[PRE_PORO] = { "poro", { RE_PORO } },
	[PRE_CHATGLM4] = { "chatglm-bpe", { RE_LLAMA3 }, .no_bos = true },
	[PRE_VIKING] = { "viking", { RE_PORO, "\\p{N}" } },
	[PRE_TEKKEN] = { "tekken",
			 { "[^\\r\\n\\p{L}\\p{N}]?(?:(?=\\p{L})[^a-z])*(?:(?=\\p{L})[^A-Z])+"
			   "|[^\\r\\n\\p{L}\\p{N}]?(?:(?=\\p{L})[^a-z])+(?:(?=\\p{L})[^A-Z])*"
			   "|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+" },
			 .ignore_merges = true, .add_bos = true },
	[PRE_CHAMELEON] = { "chameleon",
			    { "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
			      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2 },
			    .add_bos = true },
};

/* tokenizer.ggml.pre -> pre-tokenizer, with llama.cpp's names for each. */
static const struct {
	const char *name;
	int pre;
} pre_names[] = {
	{ "default", PRE_DEFAULT },
	{ "llama3", PRE_LLAMA3 }, { "llama-v3", PRE_LLAMA3 }, { "llama-bpe", PRE_LLAMA3 }, { "falcon3", PRE_LLAMA3 },
	{ "dbrx", PRE_DBRX }, { "smaug-bpe", PRE_DBRX },
	{ "deepseek-llm", PRE_DEEPSEEK_LLM }, { "deepseek-coder", PRE_DEEPSEEK_CODER }, { "deepseek-v3", PRE_DEEPSEEK3 },
	{ "falcon", PRE_FALCON },
	{ "gpt-2", PRE_GPT2 }, { "gpt2", PRE_GPT2 }, { "mpt", PRE_GPT2 }, { "olmo", PRE_GPT2 }, { "jais", PRE_GPT2 },
	{ "phi-2", PRE_GPT2 }, { "jina-es", PRE_GPT2 }, { "jina-de", PRE_GPT2 }, { "gigachat", PRE_GPT2 },
	{ "jina-v1-en", PRE_GPT2 }, { "jina-v2-es", PRE_GPT2 }, { "jina-v2-de", PRE_GPT2 },
	{ "jina-v2-code", PRE_GPT2 }, { "roberta-bpe", PRE_GPT2 },
	{ "starcoder", PRE_STARCODER }, { "refact", PRE_STARCODER }, { "command-r", PRE_STARCODER },
	{ "smollm", PRE_STARCODER }, { "codeshell", PRE_STARCODER }, { "exaone", PRE_STARCODER },
	{ "minerva-7b", PRE_STARCODER },
	{ "qwen2", PRE_QWEN2 }, { "stablelm2", PRE_QWEN2 }, { "megrez", PRE_QWEN2 },
	{ "poro-chat", PRE_PORO }, { "bloom", PRE_PORO }, { "gpt3-finnish", PRE_PORO },
	{ "chatglm-bpe", PRE_CHATGLM4 }, { "viking", PRE_VIKING }, { "tekken", PRE_TEKKEN },
	{ "chameleon", PRE_CHAMELEON },
};

#define BPE_MAX_RE 7

/* (left id, right id) -> the rank of their merge and the id of the joined string. */
struct bpe_merge {
	uint64_t key;  /* left << 32 | right; UINT64_MAX = empty slot */
	int32_t rank;
	int32_t id;
};

struct tok_bpe {
	int pre;                      /* index into pres[] */
	pcre2_code *re[BPE_MAX_RE];   /* owned, JIT-compiled where JIT is available */
	int n_re;

	struct bpe_merge *merge;      /* owned, [merge_mask + 1], open addressing */
	uint64_t merge_mask;

	int32_t byte_sym[256];        /* string id of each byte's character */
	uint8_t byte_of[324];         /* code point (< 0x144) -> the byte it stands for */
	bool is_byte_char[324];       /* ... when it stands for one */

	/* strings that are no token (ids n_vocab, n_vocab + 1, ...): their bytes */
	char *xtext;                  /* owned */
	uint32_t *xoff, *xlen;        /* owned, [n_x] */
	int32_t n_x, cap_x;
	size_t xtext_len, xtext_cap;
	int32_t *xmap;                /* owned, [xmap_mask + 1]: extra string -> its index; -1 empty (load only) */
	uint64_t xmap_mask;
};

/* ---- the byte <-> character table of GPT-2 ---- */

static bool byte_is_printable(int b)
{
	return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* cpt[b] = the character byte b becomes. */
static void byte_chars(uint32_t cpt[256])
{
	uint32_t next = 256;
	for (int b = 0; b < 256; b++)
		cpt[b] = byte_is_printable(b) ? (uint32_t)b : next++;
}

/* ---- string ids ---- */

static uint64_t str_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static int xmap_grow(struct tok_bpe *b)
{
	uint64_t cap = b->xmap ? 2 * (b->xmap_mask + 1) : 1024;
	int32_t *m = kb_malloc(cap * sizeof *m);
	if (!m)
		return KB_ERR_NOMEM;
	memset(m, 0xff, cap * sizeof *m);
	for (int32_t x = 0; x < b->n_x; x++) {
		uint64_t i = str_hash(b->xtext + b->xoff[x], b->xlen[x]) & (cap - 1);
		while (m[i] >= 0)
			i = (i + 1) & (cap - 1);
		m[i] = x;
	}
	free(b->xmap);
	b->xmap = m;
	b->xmap_mask = cap - 1;
	return KB_OK;
}

/* The id of string s[0..n): its token id, else an extra id (added if new). */
static int string_id(const struct tok *t, struct tok_bpe *b, const char *s, size_t n, int32_t *id)
{
	int32_t tid = tok_lookup(t, s, n);
	if (tid >= 0) {
		*id = tid;
		return KB_OK;
	}
	if ((uint64_t)(b->n_x + 1) * 2 > b->xmap_mask + 1 || !b->xmap) {
		int rc = xmap_grow(b);
		if (rc)
			return rc;
	}
	uint64_t i = str_hash(s, n) & b->xmap_mask;
	for (; b->xmap[i] >= 0; i = (i + 1) & b->xmap_mask) {
		int32_t x = b->xmap[i];
		if (b->xlen[x] == n && memcmp(b->xtext + b->xoff[x], s, n) == 0) {
			*id = t->n_vocab + x;
			return KB_OK;
		}
	}
	if (b->n_x >= INT32_MAX - t->n_vocab - 1 || b->xtext_len + n > UINT32_MAX)
		return kb_fail(KB_ERR_FORMAT, "too many merge strings that are not tokens");
	if (b->n_x == b->cap_x) {
		int32_t cap = b->cap_x ? 2 * b->cap_x : 256;
		uint32_t *o = kb_realloc_array(b->xoff, (size_t)cap, sizeof *o);
		if (!o)
			return KB_ERR_NOMEM;
		b->xoff = o;
		uint32_t *l = kb_realloc_array(b->xlen, (size_t)cap, sizeof *l);
		if (!l)
			return KB_ERR_NOMEM;
		b->xlen = l;
		b->cap_x = cap;
	}
	if (b->xtext_len + n > b->xtext_cap) {
		size_t cap = 2 * (b->xtext_len + n) + 256;
		char *p = kb_realloc_array(b->xtext, cap, 1);
		if (!p)
			return KB_ERR_NOMEM;
		b->xtext = p;
		b->xtext_cap = cap;
	}
	memcpy(b->xtext + b->xtext_len, s, n);
	b->xoff[b->n_x] = (uint32_t)b->xtext_len;
	b->xlen[b->n_x] = (uint32_t)n;
	b->xtext_len += n;
	b->xmap[i] = b->n_x;
	*id = t->n_vocab + b->n_x++;
	return KB_OK;
}

/* The bytes of string id. */
static const char *string_of(const struct tok *t, int32_t id, uint32_t *n)
{
	if (id < t->n_vocab) {
		*n = t->len[id];
		return t->text + t->off[id];
	}
	const struct tok_bpe *b = t->bpe;
	*n = b->xlen[id - t->n_vocab];
	return b->xtext + b->xoff[id - t->n_vocab];
}

/* ---- merges ---- */

static uint64_t pair_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k;
}

static const struct bpe_merge *merge_find(const struct tok_bpe *b, int32_t left, int32_t right)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	for (uint64_t i = pair_hash(key) & b->merge_mask;; i = (i + 1) & b->merge_mask) {
		const struct bpe_merge *m = &b->merge[i];
		if (m->key == key)
			return m;
		if (m->key == UINT64_MAX)
			return NULL;
	}
}

/* Read tokenizer.ggml.merges: "left right", rank = index; a pair listed twice keeps
 * its first rank (as llama.cpp's map does). */
static int load_merges(struct tok *t, struct tok_bpe *b, const struct gguf *g, const char *path)
{
	const struct gguf_str *m;
	uint64_t n;
	int rc = gguf_get_arr_str(g, "tokenizer.ggml.merges", &m, &n);
	if (rc == KB_EOF)
		return kb_fail(KB_ERR_FORMAT, "'%s': byte-level BPE without merges (tokenizer.ggml.merges is missing)",
			       path);
	if (rc)
		return rc;
	if (n > INT32_MAX / 4)
		return kb_fail(KB_ERR_FORMAT, "'%s': tokenizer.ggml.merges has %llu entries", path,
			       (unsigned long long)n);
	uint64_t cap = 64;
	while (cap < 2 * n)
		cap *= 2;
	b->merge = kb_malloc(cap * sizeof *b->merge);
	if (!b->merge)
		return KB_ERR_NOMEM;
	memset(b->merge, 0xff, cap * sizeof *b->merge);
	b->merge_mask = cap - 1;

	char *joined = NULL;
	size_t joined_cap = 0;
	for (uint64_t r = 0; r < n && rc == KB_OK; r++) {
		const char *s = m[r].data;
		size_t len = (size_t)m[r].len;
		const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
		if (!sp)
			continue; // no pair: it can never apply
		size_t nl = (size_t)(sp - s), nr = len - nl - 1;
		if (nr == 0)
			continue;
		if (len > joined_cap) {
			char *p = kb_realloc_array(joined, len, 1);
			if (!p) {
				rc = KB_ERR_NOMEM;
				break;
			}
			joined = p;
			joined_cap = len;
		}
		memcpy(joined, s, nl);
		memcpy(joined + nl, sp + 1, nr);
		int32_t l, rt, id;
		if ((rc = string_id(t, b, s, nl, &l)) || (rc = string_id(t, b, sp + 1, nr, &rt)) ||
		    (rc = string_id(t, b, joined, nl + nr, &id)))
			break;
		uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)rt;
		uint64_t i = pair_hash(key) & b->merge_mask;
		while (b->merge[i].key != UINT64_MAX && b->merge[i].key != key)
			i = (i + 1) & b->merge_mask;
		if (b->merge[i].key == UINT64_MAX)
			b->merge[i] = (struct bpe_merge){ key, (int32_t)r, id };
	}
	free(joined);
	return rc;
}

/* ---- load ---- */

static int compile_pre(struct tok_bpe *b, const char *path)
{
	const struct bpe_pre *p = &pres[b->pre];
	for (int i = 0; i < BPE_MAX_RE && p->re[i]; i++) {
		int err;
		PCRE2_SIZE at;
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)p->re[i], PCRE2_ZERO_TERMINATED,
					       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &err,
					       &at, NULL);
		if (!re) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(err, msg, sizeof msg);
			return kb_fail(KB_ERR_UNSUPPORTED, "'%s': pre-tokenizer '%s', regex %d: %s at offset %zu", path,
				       p->name, i + 1, (const char *)msg, (size_t)at);
		}
		b->re[b->n_re++] = re;
		(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // without JIT, pcre2_match interprets
	}
	return KB_OK;
}

static int set_warning(struct tok *t, const char *fmt, const char *arg)
{
	size_t n = strlen(fmt) + strlen(arg) + 1;
	free(t->warning);
	t->warning = kb_malloc(n);
	if (!t->warning)
		return KB_ERR_NOMEM;
	snprintf(t->warning, n, fmt, arg);
	return KB_OK;
}

int tok_bpe_init(struct tok *t, const struct gguf *g, const char *path)
{
	struct tok_bpe *b = kb_calloc(1, sizeof *b);
	if (!b)
		return KB_ERR_NOMEM;
	t->bpe = b;

	// the pre-tokenizer
	struct gguf_str pre;
	int rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre);
	if (rc && rc != KB_EOF)
		return rc;
	b->pre = -1;
	if (rc == KB_EOF || pre.len == 0) {
		b->pre = PRE_DEFAULT;
		if ((rc = set_warning(t, "no pre-tokenizer (tokenizer.ggml.pre): using llama.cpp's '%s' rules",
				      "default")))
			return rc;
	} else {
		for (size_t i = 0; i < sizeof pre_names / sizeof *pre_names && b->pre < 0; i++)
			if (gguf_str_eq(pre, pre_names[i].name))
				b->pre = pre_names[i].pre;
		if (b->pre < 0) {
			char name[72];
			snprintf(name, sizeof name, "%.*s", pre.len > 64 ? 64 : (int)pre.len, pre.data);
			for (char *c = name; *c; c++)
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					*c = '?';
			b->pre = PRE_GPT2;
			if ((rc = set_warning(t, "unknown pre-tokenizer '%s': using the GPT-2 rules", name)))
				return rc;
		}
	}
	const struct bpe_pre *p = &pres[b->pre];
	t->ignore_merges = p->ignore_merges;
	if (p->add_bos)
		t->add_bos = true;
	if (p->no_bos)
		t->bos = -1;
	if ((rc = compile_pre(b, path)))
		return rc;

	// the characters of the 256 bytes, then the merges
	uint32_t cpt[256];
	byte_chars(cpt);
	for (int i = 0; i < 256; i++) {
		char s[4];
		size_t n = tok_utf8_encode(cpt[i], s);
		if ((rc = string_id(t, b, s, n, &b->byte_sym[i])))
			return rc;
		b->byte_of[cpt[i]] = (uint8_t)i;
		b->is_byte_char[cpt[i]] = true;
	}
	if ((rc = load_merges(t, b, g, path)))
		return rc;
	free(b->xmap); // only needed while loading
	b->xmap = NULL;
	return KB_OK;
}

void tok_bpe_free(struct tok_bpe *b)
{
	if (!b)
		return;
	for (int i = 0; i < b->n_re; i++)
		pcre2_code_free(b->re[i]);
	free(b->merge);
	free(b->xtext);
	free(b->xoff);
	free(b->xlen);
	free(b->xmap);
	free(b);
}

/* ---- encode ---- */

/* The text as llama.cpp sees it: code points written back as UTF-8. Most text
 * comes back unchanged (then *norm = *subj = text); otherwise *norm is a new
 * buffer and *subj, what the regexes read, is *norm with every surrogate (valid
 * for llama.cpp, not for PCRE2) written as U+FFFD, which falls in the same
 * classes (neither letter, number, punctuation nor space). */
static int normalize(const char *text, size_t len, char **norm, char **subj, size_t *n_out, char **owned)
{
	const unsigned char *u = (const unsigned char *)text;
	size_t i = 0;
	bool same = true;
	for (; i < len;) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t c = tok_utf8_decode(u + i, len - i, &n);
		char buf[4];
		size_t m = tok_utf8_encode(c, buf);
		if (m != n || memcmp(buf, u + i, n) != 0 || (c >= 0xd800 && c <= 0xdfff))
			same = false;
		i += n;
	}
	*owned = NULL;
	if (same) {
		*norm = *subj = (char *)text;
		*n_out = len;
		return KB_OK;
	}
	size_t cap; // each byte becomes at most 3 (an invalid one is U+FFFD), twice
	if (kb_mul_size(len, 6, &cap))
		return kb_fail(KB_ERR_ARG, "text too long to tokenize at once (%zu bytes)", len);
	char *buf = kb_malloc(cap + 1);
	if (!buf)
		return KB_ERR_NOMEM;
	char *nb = buf, *sb = buf + 3 * len;
	size_t k = 0;
	for (i = 0; i < len;) {
		size_t n;
		uint32_t c = tok_utf8_decode(u + i, len - i, &n);
		size_t m = tok_utf8_encode(c, nb + k);
		if (c >= 0xd800 && c <= 0xdfff)
			memcpy(sb + k, "\xef\xbf\xbd", 3);
		else
			memcpy(sb + k, nb + k, m);
		k += m;
		i += n;
	}
	*norm = nb;
	*subj = sb;
	*n_out = k;
	*owned = buf;
	return KB_OK;
}

/* Scratch for one tok_bpe_encode call (so that calls on other threads share nothing). */
struct bpe_work {
	pcre2_match_data *md;     /* owned, reused for every match */
	pcre2_match_context *mc;  /* owned, NULL until a bigger JIT stack is needed */
	pcre2_jit_stack *js;      /* owned, ditto */
	struct bpe_sym {
		int32_t id;           /* string id; -1 once merged into its left neighbour */
		int32_t prev, next;
	} *sym;                   /* owned, [sym_cap] */
	size_t sym_cap;
	struct bpe_pair {
		int32_t rank, left, right, lid, rid;
	} *heap;                  /* owned, [heap_cap] */
	size_t heap_n, heap_cap;
	char *word;               /* owned: a pre-token's characters (ignore_merges) */
	size_t word_cap;
};

/* One match of re in subj[0..n) at or after start: KB_OK with [*ms, *me), KB_EOF if none. */
static int re_match(struct bpe_work *w, const pcre2_code *re, const char *subj, size_t n, size_t start,
		    size_t *ms, size_t *me)
{
	for (;;) {
		int rc = pcre2_match(re, (PCRE2_SPTR)subj, n, start, PCRE2_NO_UTF_CHECK, w->md, w->mc);
		if (rc == PCRE2_ERROR_NOMATCH)
			return KB_EOF;
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !w->js) {
			// a very long run (of spaces, say): retry with a JIT stack that can grow large
			w->mc = pcre2_match_context_create(NULL);
			w->js = pcre2_jit_stack_create(64 * 1024, 512 * 1024 * 1024, NULL);
			if (!w->mc || !w->js)
				return kb_fail(KB_ERR_NOMEM, "out of memory (regex stack)");
			pcre2_jit_stack_assign(w->mc, NULL, w->js);
			continue;
		}
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof msg);
			return kb_fail(KB_ERR_ARG, "pre-tokenizer regex failed: %s", (const char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
		*ms = ov[0];
		*me = ov[1];
		return KB_OK;
	}
}

/* Cut subj[off, off + n) with regex `stage` into its matches and the text between
 * them, and pass each on to the next regex; after the last, merge it (a pre-token of
 * norm, which is subj with surrogates kept). Depth-first, so no list of pieces. */
static int split(const struct tok *t, struct bpe_work *w, int stage, const char *norm, const char *subj,
		 size_t off, size_t n, struct tok_ids *out);

/* true when a merges before b: lower rank, then leftmost. */
static bool pair_before(const struct bpe_pair *a, const struct bpe_pair *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(struct bpe_work *w, struct bpe_pair p)
{
	if (kb_grow(&w->heap, &w->heap_cap, w->heap_n, sizeof *w->heap, 64))
		return KB_ERR_NOMEM;
	size_t i = w->heap_n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!pair_before(&p, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = p;
	return KB_OK;
}

static struct bpe_pair heap_pop(struct bpe_work *w)
{
	struct bpe_pair top = w->heap[0];
	struct bpe_pair last = w->heap[--w->heap_n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= w->heap_n)
			break;
		if (c + 1 < w->heap_n && pair_before(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!pair_before(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (w->heap_n)
		w->heap[i] = last;
	return top;
}

/* Queue the pair (left, right) when its strings have a merge. */
static int try_pair(const struct tok_bpe *b, struct bpe_work *w, int32_t left, int32_t right)
{
	if (left < 0 || right < 0)
		return KB_OK;
	const struct bpe_merge *m = merge_find(b, w->sym[left].id, w->sym[right].id);
	if (!m)
		return KB_OK;
	return heap_push(w, (struct bpe_pair){ m->rank, left, right, w->sym[left].id, w->sym[right].id });
}

/* Append the token of string id: itself, else its single bytes that are tokens. */
static int emit(const struct tok *t, int32_t id, struct tok_ids *out)
{
	if (id < t->n_vocab)
		return tok_ids_push(out, id);
	uint32_t n;
	const char *s = string_of(t, id, &n);
	for (uint32_t i = 0; i < n; i++) {
		int32_t one = tok_lookup(t, s + i, 1);
		int rc;
		if (one >= 0 && (rc = tok_ids_push(out, one)))
			return rc;
	}
	return KB_OK;
}

/* Merge the bytes of one pre-token and append its tokens. */
static int bpe_word(const struct tok *t, struct bpe_work *w, const unsigned char *s, size_t n,
		    struct tok_ids *out)
{
	const struct tok_bpe *b = t->bpe;
	int rc;
	if (t->ignore_merges) {
		// the whole pre-token, as characters, may be a token
		size_t need = 2 * n;
		if (need > w->word_cap) {
			char *p = kb_realloc_array(w->word, need, 1);
			if (!p)
				return KB_ERR_NOMEM;
			w->word = p;
			w->word_cap = need;
		}
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t len;
			const char *c = string_of(t, b->byte_sym[s[i]], &len);
			memcpy(w->word + k, c, len);
			k += len;
		}
		int32_t id = tok_lookup(t, w->word, k);
		if (id >= 0)
			return tok_ids_push(out, id);
	}
	if (n > w->sym_cap) {
		struct bpe_sym *v = kb_realloc_array(w->sym, n, sizeof *v);
		if (!v)
			return KB_ERR_NOMEM;
		w->sym = v;
		w->sym_cap = n;
	}
	for (size_t i = 0; i < n; i++)
		w->sym[i] = (struct bpe_sym){ b->byte_sym[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1 };
	w->heap_n = 0;
	for (size_t i = 1; i < n; i++)
		if ((rc = try_pair(b, w, (int32_t)i - 1, (int32_t)i)))
			return rc;
	while (w->heap_n) {
		struct bpe_pair p = heap_pop(w);
		struct bpe_sym *l = &w->sym[p.left], *r = &w->sym[p.right];
		if (l->id != p.lid || r->id != p.rid || l->next != p.right)
			continue; // stale: a side was merged since
		l->id = merge_find(b, p.lid, p.rid)->id;
		r->id = -1;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = p.left;
		if ((rc = try_pair(b, w, l->prev, p.left)) || (rc = try_pair(b, w, p.left, l->next)))
			return rc;
	}
	for (int32_t i = n ? 0 : -1; i >= 0; i = w->sym[i].next)
		if ((rc = emit(t, w->sym[i].id, out)))
			return rc;
	return KB_OK;
}

static int split(const struct tok *t, struct bpe_work *w, int stage, const char *norm, const char *subj,
		 size_t off, size_t n, struct tok_ids *out)
{
	const struct tok_bpe *b = t->bpe;
	if (stage == b->n_re)
		return bpe_word(t, w, (const unsigned char *)norm + off, n, out);
	const char *p = subj + off;
	size_t pos = 0, from = 0, ms = 0, me = 0;
	int rc;
	while (from < n) {
		if ((rc = re_match(w, b->re[stage], p, n, from, &ms, &me)) == KB_EOF)
			break;
		if (rc)
			return rc;
		if (me == ms) { // no pattern here matches empty text, but never loop on one
			size_t c;
			tok_utf8_decode((const unsigned char *)p + ms, n - ms, &c);
			from = ms + c;
			continue;
		}
		if (ms > pos && (rc = split(t, w, stage + 1, norm, subj, off + pos, ms - pos, out)))
			return rc;
		if ((rc = split(t, w, stage + 1, norm, subj, off + ms, me - ms, out)))
			return rc;
		pos = from = me;
	}
	if (pos < n)
		return split(t, w, stage + 1, norm, subj, off + pos, n - pos, out);
	return KB_OK;
}

int tok_bpe_encode(const struct tok *t, const char *text, size_t len, struct tok_ids *out)
{
	const struct tok_bpe *b = t->bpe;
	char *norm = NULL, *subj = NULL, *owned = NULL;
	size_t n = 0;
	int rc = normalize(text, len, &norm, &subj, &n, &owned);
	if (rc)
		return rc;
	struct bpe_work w = { 0 };
	w.md = pcre2_match_data_create_from_pattern(b->re[0], NULL);
	if (!w.md) {
		free(owned);
		return kb_fail(KB_ERR_NOMEM, "out of memory (regex match data)");
	}
	if (n)
		rc = split(t, &w, 0, norm, subj, 0, n, out);
	pcre2_match_data_free(w.md);
	pcre2_match_context_free(w.mc);
	pcre2_jit_stack_free(w.js);
	free(w.sym);
	free(w.heap);
	free(w.word);
	free(owned);
	return rc;
}

/* ---- decode ---- */

size_t tok_bpe_decode(const struct tok *t, int32_t id, char *out, size_t cap)
{
	const struct tok_bpe *b = t->bpe;
	const unsigned char *s = (const unsigned char *)t->text + t->off[id];
	size_t n = t->len[id], need = 0;
	for (size_t i = 0; i < n;) {
		size_t c;
		uint32_t cpt = tok_utf8_decode(s + i, n - i, &c);
		need += cpt < 324 && b->is_byte_char[cpt] ? 1 : c; // a character of no byte stays as written
		i += c;
	}
	if (need > cap)
		return need;
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		size_t c;
		uint32_t cpt = tok_utf8_decode(s + i, n - i, &c);
		if (cpt < 324 && b->is_byte_char[cpt]) {
			out[k++] = (char)b->byte_of[cpt];
		} else {
			memcpy(out + k, s + i, c);
			k += c;
		}
		i += c;
	}
	return need;
}
