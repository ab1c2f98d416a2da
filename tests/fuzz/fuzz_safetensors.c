/* fuzz_safetensors.c — fuzz target for the safetensors reader (common/safetensors.c),
 * which kvblend quantize --hf runs on model files from anywhere.
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] safetensors
 * standalone:  built by run.sh --replay with $CC + ASan/UBSan; `fuzz_safetensors
 *              --write-seeds DIR` writes the seed corpus (small files with every
 *              dtype, metadata, a scalar, an empty tensor, a padded header):
 *              tests/fuzz/corpus/safetensors/ was made by `tests/fuzz/run.sh --seeds safetensors`.
 *
 * Every input either opens — each tensor of a known dtype and rank, its bytes
 * inside the data section and no other's, found by its name, every row
 * readable — or fails with KB_ERR_FORMAT / KB_ERR_UNSUPPORTED / KB_ERR_NOMEM
 * and a message naming the input. Anything else (a crash, a sanitizer report,
 * an ASSERT) is a bug.
 */
#include <stdint.h>
#include <string.h>

#include "quant.h"
#include "safetensors.h"

static volatile float sink;

static void touch(const struct safetensors *st)
{
	const uint8_t *data = NULL;
	for (size_t i = 0; i < st->n_tensors; i++) {
		const struct safetensors_tensor *t = &st->tensors[i];
		ASSERT(t->type == QTYPE_F32 || t->type == QTYPE_F16 || t->type == QTYPE_BF16);
		ASSERT(t->n_dims <= SAFETENSORS_MAX_DIMS && t->name[0]);
		ASSERT(safetensors_find(st, t->name) == t);
		const uint8_t *p = t->data;
		ASSERT(p >= st->base + 8 && t->size <= st->size - (size_t)(p - st->base));
		/* in data order, and apart (empty tensors may sit anywhere) */
		if (t->size) {
			ASSERT(!data || p >= data);
			data = p + t->size;
		}
		int64_t n = safetensors_row_len(t), rows = safetensors_n_rows(t);
		ASSERT(n * rows == t->n_elements || n == 0);
		if (n <= 0 || n > 4096)
			continue;
		float row[4096];
		for (int64_t r = 0; r < rows && r < 64; r++) {
			safetensors_row_to_float(t, r, row);
			sink += row[0] + row[n - 1];
		}
	}
	for (size_t i = 0; i < st->n_meta; i++)
		ASSERT(safetensors_meta(st, st->meta_keys[i]) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct safetensors *st;
	int rc = safetensors_open_mem(&st, data, size, "fuzz");
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_UNSUPPORTED || rc == KB_ERR_NOMEM);
		ASSERT(strncmp(kb_error(), "'fuzz': ", 8) == 0 || rc == KB_ERR_NOMEM);
		ASSERT(st == NULL);
		return 0;
	}
	touch(st);
	safetensors_close(st);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_safetensors"
#include "driver.h"

/* dir/name: the header's length, the header, n bytes of data. */
static int seed(const char *dir, const char *name, const char *header, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	uint64_t h = strlen(header);
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(h >> (8 * i));
	int bad = !f || fwrite(len, 1, 8, f) != 8 || fputs(header, f) < 0;
	for (size_t i = 0; !bad && i < n; i++)
		bad = fputc((int)((i * 37 + 11) & 0x7f), f) == EOF;
	if (!f || fclose(f) != 0 || bad) {
		perror(path);
		return 1;
	}
	return 0;
}

static int write_seeds(const char *dir)
{
	int bad = 0;
	bad |= seed(dir, "empty.seed", "{}", 0);
	bad |= seed(dir, "dtypes.seed",
		    "{\"__metadata__\":{\"format\":\"pt\"},"
		    "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]},"
		    "\"model.norm.weight\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[32,36]},"
		    "\"lm_head.weight\":{\"dtype\":\"BF16\",\"shape\":[4,2],\"data_offsets\":[36,52]}}",
		    52);
	bad |= seed(dir, "scalar-empty-padded.seed",
		    "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
		    "\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[2,2]},"
		    "\"odd\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,3],\"data_offsets\":[5,11]}}      ",
		    11);
	bad |= seed(dir, "unsupported.seed", "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
	bad |= seed(dir, "overlap.seed",
		    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		    12);
	return bad;
}

#endif
