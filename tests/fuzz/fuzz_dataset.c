/* fuzz_dataset.c — fuzz target for the dataset reader of kvblend bench
 * (common/dataset.c).
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] dataset   (clang -fsanitize=fuzzer,address,undefined)
 * standalone:  cc -DKVBLEND_FUZZ_MAIN ... builds a main() that runs the target
 *              over the files and directories named on the command line, and
 *              `fuzz_dataset --write-seeds DIR` writes the seed corpus (one
 *              small file per format, as an array and as JSON Lines):
 *              tests/fuzz/corpus/dataset/ was made by `tests/fuzz/run.sh --seeds dataset`.
 *
 * Every input either loads — every item has at least one answer and one
 * passage, every string is a C string, a kind is NULL or a non-empty line
 * that is not "all", and every prompt piece can be built —
 * or fails with KB_ERR_FORMAT and a message naming the input; with a limit the
 * result is the same items, cut. Anything else (a crash, a sanitizer report, an
 * ASSERT) is a bug.
 */
#include <stdint.h>
#include <string.h>

#include "dataset.h"

static volatile size_t sink;

static void touch(const struct dataset *d)
{
	ASSERT(d->n_items > 0 && d->name);
	for (int i = 0; i < d->n_items; i++) {
		const struct dataset_item *it = &d->items[i];
		ASSERT(it->id && it->question && it->n_answers >= 1 && it->n_passages >= 1);
		ASSERT(!it->kind || (d->format == DATASET_CACHEBLEND && *it->kind && strcmp(it->kind, "all") != 0));
		for (const char *k = it->kind; k && *k; k++)
			ASSERT((unsigned char)*k >= 0x20 && *k != 0x7f);
		for (int k = 0; k < it->n_answers; k++)
			sink += strlen(it->answers[k]);
		char *p = dataset_prefix(d, it), *q = dataset_query(d, it);
		ASSERT(p && q);
		sink += strlen(p) + strlen(q);
		free(p), free(q);
		for (int k = 0; k < it->n_passages; k++) {
			char *c = dataset_chunk(d, it, k);
			ASSERT(c && it->passages[k].title && it->passages[k].text);
			sink += strlen(c);
			free(c);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dataset *d = NULL, *d1 = NULL;
	int rc = dataset_load_mem(&d, (const char *)data, size, "fuzz", 0);
	if (rc != KB_OK) {
		ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_NOMEM);
		ASSERT(strncmp(kb_error(), "'fuzz': ", 8) == 0);
		ASSERT(d == NULL);
		return 0;
	}
	touch(d);
	/* the first item alone: the same as the first of all */
	rc = dataset_load_mem(&d1, (const char *)data, size, "fuzz", 1);
	ASSERT(rc == KB_OK && d1->n_items == 1 && d1->format == d->format);
	ASSERT(strcmp(d1->items[0].question, d->items[0].question) == 0);
	ASSERT(d1->items[0].n_passages == d->items[0].n_passages && d1->items[0].n_answers == d->items[0].n_answers);
	ASSERT(!d1->items[0].kind == !d->items[0].kind);
	ASSERT(!d->items[0].kind || strcmp(d1->items[0].kind, d->items[0].kind) == 0);
	dataset_free(d1);
	dataset_free(d);
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_dataset"
#include "driver.h"

/* ---- the seed corpus: one small file per format ---- */

static const struct fuzz_text_seed seeds[] = {
	{ "cacheblend-array.seed",
	  "[{\"question\": \"Where was the wife of Francis I born?\", \"answers\": [[\"Croatia\"]],\n"
	  "  \"ctxs\": [{\"title\": \"\", \"text\": \"march 1666, she married\"}, {\"title\": \"T\", \"text\": \"x\"}]},\n"
	  " {\"question\": \"who\", \"answers\": \"Ann\", \"ctxs\": [{\"text\": \"y\"}]}]\n" },
	{ "cacheblend-lines.seed",
	  "{\"question\": \"q1?\", \"answers\": [\"a\", [\"b\", \"c\"]], \"ctxs\": [{\"title\": \"t\", \"text\": \"x\"}]}\n"
	  "\n"
	  "{\"question\": \"Q2\", \"answers\": [\"\"], \"ctxs\": [{\"title\": \"\\u00e9\", \"text\": \"\\n\"}]}\n" },
	{ "cacheblend-kinds.seed",
	  "[{\"id\": \"3-0\", \"kind\": \"twohop\", \"type\": \"river\", \"question\": \"Which river?\", "
	  "\"answers\": [\"Zoukshi\"], \"ctxs\": [{\"title\": \"Z\", \"text\": \"the Zoukshi River\"}, "
	  "{\"title\": \"T\", \"text\": \"born in Z\"}], \"support\": [0, 1]},\n"
	  " {\"id\": \"3-1\", \"kind\": \"single\", \"question\": \"Where?\", \"answers\": [\"Bousholm\"], "
	  "\"ctxs\": [{\"title\": \"M\", \"text\": \"born in Bousholm\"}], \"support\": [0]},\n"
	  " {\"question\": \"no kind\", \"answers\": [\"x\"], \"ctxs\": [{\"text\": \"x\"}]}]\n" },
	{ "ircot.seed",
	  "{\"question_id\": \"5a8c\", \"question_text\": \"What position?\", \"answers_objects\": [{\"number\": \"\", "
	  "\"date\": {\"day\": \"\", \"month\": \"\", \"year\": \"\"}, \"spans\": [\"Chief of\", \"Protocol\"]}], "
	  "\"contexts\": [{\"id\": \"0\", \"title\": \"Meet\", \"paragraph_text\": \"ran from 1943\", \"is_supporting\": "
	  "false}, {\"id\": \"1\", \"title\": \"S\", \"paragraph_text\": \"Chief\", \"is_supporting\": true}]}\n" },
	{ "longbench.seed",
	  "{\"input\": \"\", \"context\": \"Passage 1:\\nFirst.\\nPassage 2:\\nSecond.\\nPassage 10:\\n\", "
	  "\"answers\": [\"A summary.\"], \"length\": 5, \"dataset\": \"multi_news\", \"language\": \"en\", "
	  "\"all_classes\": null, \"_id\": \"x1\"}\n" },
	{ "longbench-qa.seed",
	  "{\"input\": \"who?\", \"context\": \"Passage 1:\\nA\\n\", \"answers\": [\"me\"], \"dataset\": \"hotpotqa\"}\n" },
	{ "samsum.seed",
	  "{\"id\": \"1\", \"summary\": \"S1\", \"dialogue\": \"A: hi\\nB: yo\"}\n"
	  "{\"id\": \"2\", \"summary\": \"S2\", \"dialogue\": \"D2\"}\n" },
	{ "samsum-pairs.seed",
	  "[{\"context\": \"A: x\\r\\nB: y\", \"response\": \"R\"}, {\"context\": \"C\", \"response\": \"R2\"}]" },
};

static int write_seeds(const char *dir)
{
	return fuzz_write_text_seeds(dir, seeds, sizeof seeds / sizeof *seeds);
}

#endif
