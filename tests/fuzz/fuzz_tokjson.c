/* fuzz_tokjson.c — fuzz target for the tokenizer.json importer (common/tokjson.c),
 * which kvblend quantize --vocab runs on files from the Hugging Face hub.
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] tokjson
 * standalone:  built by run.sh --replay with $CC + ASan/UBSan; `fuzz_tokjson
 *              --write-seeds DIR` writes the seed corpus (small byte-level BPE
 *              and WordPiece files in the shapes the hub's have):
 *              tests/fuzz/corpus/tokjson/ was made by `tests/fuzz/run.sh --seeds tokjson`.
 *
 * The input is a tokenizer.json (written to a memfd, since the importer reads
 * a path). It either imports — every token a string, every type known, merges
 * only for BPE; its GGUF keys then load as a tokenizer (tok_load) that encodes
 * a text into ids in range, each of which decodes — or fails with KB_ERR_FORMAT / KB_ERR_UNSUPPORTED /
 * KB_ERR_NOMEM and a message naming the file. Anything else (a crash, a
 * sanitizer report, an ASSERT) is a bug.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "tok.h"
#include "tokjson.h"
#include "memfile.h"
#include "util.h"

static char gguf_path[128];

/* The imported keys as a GGUF file a tokenizer loads from. */
static void load_back(const struct tokjson *tj)
{
	struct gguf_writer *w = gguf_writer_init();
	ASSERT(w);
	int rc = gguf_writer_set_str(w, "general.architecture", "llama");
	if (!rc)
		rc = tokjson_to_gguf(tj, w);
	if (!rc)
		rc = gguf_writer_write(w, gguf_path);
	gguf_writer_free(w);
	ASSERT(rc == KB_OK || rc == KB_ERR_NOMEM);
	if (rc)
		return;
	struct gguf *g;
	struct tok *t = NULL;
	rc = gguf_open(&g, gguf_path);
	ASSERT(rc == KB_OK);
	rc = tok_load(&t, g);
	/* the importer's output may still be a vocabulary the loader refuses (say,
	 * a merge naming a token that is not there): by name, never a crash */
	ASSERT(rc == KB_OK || rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_NOMEM);
	if (rc == KB_OK) {
		static const char text[] = "Hello, world! 1999 caf\xc3\xa9 [CLS] ##ing \xe2\x96\x81x";
		int32_t *ids = NULL;
		size_t n = 0;
		if (tok_encode(t, text, sizeof text - 1, true, true, &ids, &n) == KB_OK) {
			for (size_t i = 0; i < n; i++)
				ASSERT(ids[i] >= 0 && ids[i] < tok_n_vocab(t));
			char buf[256];
			for (size_t i = 0; i < n; i++) {
				size_t need = tok_decode(t, ids[i], true, buf, sizeof buf);
				ASSERT(need < (1u << 20));
			}
			free(ids);
		}
		tok_free(t);
	}
	gguf_close(g);
	unlink(gguf_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_memfile(data, size);
	if (!path)
		return 0;
	if (!gguf_path[0])
		snprintf(gguf_path, sizeof gguf_path, "%s/fuzz_tokjson-%d.gguf",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
	struct tokjson tj;
	int rc = tokjson_load(path, &tj);
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_NOMEM);
		ASSERT(strstr(kb_error(), path) != NULL);
		tokjson_free(&tj);
		return 0;
	}
	ASSERT(tj.n_vocab > 0 && tj.tokens && tj.types && tj.model && tj.pre);
	ASSERT(!strcmp(tj.model, "gpt2") || !strcmp(tj.model, "bert"));
	for (int32_t i = 0; i < tj.n_vocab; i++)
		ASSERT(tj.tokens[i] && tj.types[i] >= 1 && tj.types[i] <= 6);
	ASSERT(!strcmp(tj.model, "gpt2") || tj.n_merges == 0);
	for (int64_t i = 0; i < tj.n_merges; i++)
		ASSERT(tj.merges[i] != NULL);
	load_back(&tj);
	tokjson_free(&tj);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_tokjson"
#include "driver.h"

static const struct fuzz_text_seed seeds[] = {
	{ "bpe.seed",
	  "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true},"
	  " {\"id\": 6, \"content\": \"<|im_start|>\", \"special\": true}, {\"id\": 7, \"content\": \"xyz\", "
	  "\"special\": false}],\n"
	  " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},\n"
	  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"H\": 0, \"e\": 1, \"He\": 2, \"\\u0120\": 3, \"\\u0120w\": 4,"
	  " \"<|endoftext|>\": 5, \"<|im_start|>\": 6, \"xyz\": 7, \"w\": 8}, \"merges\": [\"H e\", \"\\u0120 w\"]}}\n" },
	{ "bpe-pairs-smollm.seed",
	  "{\"added_tokens\": [{\"id\": 0, \"content\": \"<|endoftext|>\", \"special\": true}],\n"
	  " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
	  "\"individual_digits\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false}]},\n"
	  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"<|endoftext|>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3, \"1\": 4},"
	  " \"merges\": [[\"a\", \"b\"]]}}\n" },
	{ "bpe-split-llama3.seed",
	  "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
	  "{\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}"
	  "\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\"}, "
	  "{\"type\": \"ByteLevel\"}]},\n"
	  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}\n" },
	{ "wordpiece.seed",
	  "{\"added_tokens\": [{\"id\": 0, \"content\": \"[PAD]\", \"special\": true}, {\"id\": 1, \"content\": "
	  "\"[UNK]\", \"special\": true}, {\"id\": 2, \"content\": \"[CLS]\", \"special\": true}, {\"id\": 3, "
	  "\"content\": \"[SEP]\", \"special\": true}, {\"id\": 4, \"content\": \"[MASK]\", \"special\": true}],\n"
	  " \"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": true},\n"
	  " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},\n"
	  " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\","
	  " \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1, \"[CLS]\": 2, \"[SEP]\": 3, \"[MASK]\": 4, \"hello\": 5, "
	  "\"world\": 6, \",\": 7, \"!\": 8, \"##ing\": 9, \"cafe\": 10, \"1999\": 11, \"x\": 12}}}\n" },
	{ "unigram.seed", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}\n" },
};

static int write_seeds(const char *dir)
{
	return fuzz_write_text_seeds(dir, seeds, sizeof seeds / sizeof *seeds);
}

#endif
