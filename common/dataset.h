/* dataset.h — evaluation datasets for kvblend bench: multi-passage questions
 * (or documents to summarize) with their gold answers, and the prompt each one
 * becomes in the CacheBlend evaluation: an instruction prefix, one chunk per
 * passage, and a query.
 *
 * Formats, recognized by the fields of the first record (a JSON array of
 * objects, or JSON Lines: one object per line):
 *
 *  DATASET_CACHEBLEND  CacheBlend's inputs/ files (wikimqa_s.json, ...):
 *                      {"question", "answers", "ctxs": [{"title", "text"}]}
 *                      answers: a string, a list of strings or a list of lists
 *                      of strings (2WikiMQA's [["Croatia"]]); all are gold.
 *                      Optional "kind": the question's kind, a label by which
 *                      bench splits its results (tests/rag/ragdata.py writes
 *                      "single" or "twohop"): a non-empty string without
 *                      control characters, not "all" (bench's name for every
 *                      question). Other fields are ignored.
 *  DATASET_IRCOT       HotpotQA as processed by IRCoT:
 *                      {"question_text", "answers_objects": [{"spans": [..]}],
 *                       "contexts": [{"title", "paragraph_text"}]}
 *  DATASET_LONGBENCH   LongBench: {"input", "context", "answers": [..],
 *                      "dataset"}; the context is cut into its "Passage N:"
 *                      parts. multi_news (and the other summary sets of
 *                      LongBench) are summaries, the rest QA.
 *  DATASET_SAMSUM      dialogue/summary pairs, {"dialogue", "summary"} (the
 *                      SAMSum test split) or {"context", "response"}: each pair
 *                      is a dialogue to summarize, with the next
 *                      DATASET_SHOTS pairs of the file (cyclically) as its
 *                      few-shot examples, one chunk each.
 *
 * Errors name the file and where: "'f.jsonl': line 3: .ctxs[2]: no \"text\""
 * for JSON Lines, "'f.json': .[4]: no \"question\"" for an array (jq paths,
 * counting from 0).
 */
#ifndef KB_DATASET_H
#define KB_DATASET_H

#include <stddef.h>

#include "util.h"

#define DATASET_SHOTS 5 /* few-shot examples per SAMSum item */

enum dataset_format { DATASET_CACHEBLEND = 0, DATASET_IRCOT, DATASET_LONGBENCH, DATASET_SAMSUM };
enum dataset_task { DATASET_QA = 0, DATASET_SUMMARY };

struct dataset_passage {
	char *title; /* owned, "" when none */
	char *text;  /* owned */
};

struct dataset_item {
	char *id;                          /* owned: the record's id, else its index */
	char *kind;                        /* owned: the question's kind (CacheBlend's "kind"), NULL when none */
	char *question;                    /* owned: QA: the question; summary: the input ("" for multi_news) */
	char **answers;                    /* owned, [n_answers]: gold answers or reference summaries */
	int n_answers;                     /* >= 1 */
	struct dataset_passage *passages;  /* owned, [n_passages] */
	int n_passages;
	enum dataset_task task;
};

struct dataset {
	enum dataset_format format;
	char *name;                  /* owned: LongBench's "dataset" field, else the format's name */
	struct dataset_item *items;  /* owned, [n_items], in file order */
	int n_items;
};

/* Read the dataset in path ("-": stdin), at most limit items (0: all).
 * Returns KB_OK and *out (free with dataset_free), KB_ERR_IO, or
 * KB_ERR_FORMAT with a message naming the file and the record. An empty file
 * is an error. */
int dataset_load(struct dataset **out, const char *path, int limit) KB_WUR;
/* The same from len bytes of data; name is used in messages. */
int dataset_load_mem(struct dataset **out, const char *data, size_t len, const char *name, int limit) KB_WUR;
/* dataset_free(NULL) is a no-op. */
void dataset_free(struct dataset *d);

const char *dataset_format_name(enum dataset_format f);
const char *dataset_task_name(enum dataset_task t);

/* ---- prompts, as in the CacheBlend evaluation ----
 * prompt = prefix + chunk(0) + .. + chunk(n-1) + query. Each function returns a
 * malloc()ed string (the caller frees), or NULL when out of memory.
 *
 * QA (CacheBlend example/blend_wikimqa.py and utils.py):
 *   prefix  "Answer the question based on the given passages. Only give me the
 *            answer and do not output any other words.\n\nThe following are
 *            given passages.\n"
 *   chunk   "{title}\n\n{text}\n\n"
 *   query   "\n\nAnswer the question based on the given passages. Answer the
 *            question within 5 words. Do NOT repeat the question or output any
 *            other words. Question: {question}\nAnswer:"
 *           with the question's first letter lowered and a "?" added when it
 *           has none (CacheBlend's normalize_question).
 * multi_news (LongBench's prompt, cut around its {context}):
 *   prefix  "You are given several news passages. Write a one-page summary of
 *            all news. \n\nNews:\n"
 *   chunk   "Passage {i}:\n{text}" as it stands in the context
 *   query   "\n\nNow, write a one-page summary of all the news.\n\nSummary:"
 * SAMSum (CacheBlend example/blend_samsum.py, LongBench's samsum):
 *   prefix  "Summarize the dialogue into a few short sentences. The following
 *            are some examples.\n\n"
 *   chunk   "Dialogue: {dialogue}\nSummary: {summary}\n\n"
 *   query   "\n\nDialogue: {dialogue}\nSummary:"
 */
char *dataset_prefix(const struct dataset *d, const struct dataset_item *it);
char *dataset_chunk(const struct dataset *d, const struct dataset_item *it, int i);
char *dataset_query(const struct dataset *d, const struct dataset_item *it);

#endif
