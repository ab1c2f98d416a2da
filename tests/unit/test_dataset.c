/* test_dataset — the dataset reader of kvblend bench (common/dataset.c): each
 * format from a small literal (answers as a string, a list, a list of lists;
 * JSON arrays and JSON Lines; --limit; the optional "kind" and its errors),
 * the prompts of the CacheBlend evaluation, errors that name the file and the
 * record (malformed JSON, missing or mistyped fields, mixed formats), and the
 * real files in ../shared/data when they are there. */
#include <stdbool.h>
#include <string.h>

#include "dataset.h"
#include "tap.h"

static struct dataset *load(const char *text, int limit)
{
	struct dataset *d = NULL;
	if (dataset_load_mem(&d, text, strlen(text), "t.json", limit)) {
		diag("%s", kb_error());
		return NULL;
	}
	return d;
}

/* The load fails with KB_ERR_FORMAT and a message containing want. */
static void fails(const char *text, const char *want, const char *name)
{
	struct dataset *d = NULL;
	int rc = dataset_load_mem(&d, text, strlen(text), "t.json", 0);
	ok(rc == KB_ERR_FORMAT && d == NULL && strstr(kb_error(), want) && !strncmp(kb_error(), "'t.json': ", 10),
	   "%s: %s", name, rc ? kb_error() : "(loaded)");
	dataset_free(d);
}

/* got equals want; on a difference both are shown, escaped, as diagnostics. */
static bool str_is(const char *got, const char *want, const char *name)
{
	bool same = got && !strcmp(got, want);
	ok(same, "%s", name);
	if (!same) {
		const char *s[2] = { got ? got : "(null)", want };
		for (int k = 0; k < 2; k++) {
			printf("# %s '", k ? "want" : "got ");
			for (const char *c = s[k]; *c; c++)
				*c == '\n' ? printf("\\n") : putchar(*c);
			printf("'\n");
		}
	}
	return same;
}

static void test_cacheblend(void)
{
	const char *arr = "[{\"question\": \"Where was the wife of Francis I born?\", \"answers\": [[\"Croatia\"]],"
			  "  \"ctxs\": [{\"title\": \"\", \"text\": \"march 1666\"}, {\"title\": \"T\", \"text\": \"x\"}]},"
			  " {\"question\": \"who?\", \"answers\": \"Ann\", \"ctxs\": [{\"text\": \"y\"}]},"
			  " {\"question\": \"when\", \"answers\": [\"1900\", [\"nineteen hundred\", \"1900 AD\"]],"
			  "  \"ctxs\": [{\"title\": \"a\", \"text\": \"b\"}]}]";
	struct dataset *d = load(arr, 0);
	ok(d && d->format == DATASET_CACHEBLEND && d->n_items == 3, "a JSON array in the CacheBlend schema: 3 items");
	if (!d)
		return;
	struct dataset_item *it = &d->items[0];
	ok(it->task == DATASET_QA && it->n_answers == 1 && !strcmp(it->answers[0], "Croatia"),
	   "answers as a list of lists");
	ok(it->n_passages == 2 && !strcmp(it->passages[1].title, "T") && !strcmp(it->passages[0].text, "march 1666"),
	   "passages with titles and texts");
	ok(d->items[1].n_answers == 1 && !strcmp(d->items[1].answers[0], "Ann") && !strcmp(d->items[1].passages[0].title, ""),
	   "answers as a string; a missing title is empty");
	ok(d->items[2].n_answers == 3 && !strcmp(d->items[2].answers[2], "1900 AD"), "answers mixing strings and lists");
	str_is(d->items[1].id, "1", "an item without an id is named by its index");

	char *s = dataset_prefix(d, it);
	str_is(s, "Answer the question based on the given passages. Only give me the answer and do not output any "
		  "other words.\n\nThe following are given passages.\n", "QA prefix (CacheBlend's 2WikiMQA prompt)");
	free(s);
	s = dataset_chunk(d, it, 0);
	str_is(s, "\n\nmarch 1666\n\n", "chunk = title\\n\\ntext\\n\\n (title empty)");
	free(s);
	s = dataset_chunk(d, it, 1);
	str_is(s, "T\n\nx\n\n", "chunk with a title");
	free(s);
	s = dataset_query(d, it);
	str_is(s, "\n\nAnswer the question based on the given passages. Answer the question within 5 words. Do NOT "
		  "repeat the question or output any other words. Question: where was the wife of Francis I born?\nAnswer:",
	       "query: the question with its first letter lowered");
	free(s);
	s = dataset_query(d, &d->items[2]);
	ok(s && strstr(s, "Question: when?\nAnswer:"), "a question without '?' gets one");
	free(s);
	dataset_free(d);

	d = load(arr, 2);
	ok(d && d->n_items == 2, "--limit 2 keeps the first two");
	dataset_free(d);

	const char *lines = "{\"question\": \"q1\", \"answers\": [\"a\"], \"ctxs\": [{\"title\": \"t\", \"text\": \"x\"}]}\n"
			    "\n   \n"
			    "{\"question\": \"q2\", \"answers\": [\"b\"], \"ctxs\": [{\"title\": \"t\", \"text\": \"y\"}]}\n";
	d = load(lines, 0);
	ok(d && d->n_items == 2 && !strcmp(d->items[1].question, "q2"), "JSON Lines, blank lines skipped");
	ok(d && !d->items[0].kind && !d->items[1].kind, "no \"kind\": kind is NULL");
	dataset_free(d);
}

/* The optional "kind" of a CacheBlend record (ragdata.py's), kept as given. */
static void test_kind(void)
{
	const char *arr = "[{\"id\": \"3-0\", \"kind\": \"twohop\", \"type\": \"river\", \"question\": \"q?\", "
			  "\"answers\": [\"a\"], \"ctxs\": [{\"title\": \"t\", \"text\": \"x\"}], \"support\": [0]},"
			  " {\"question\": \"r?\", \"answers\": [\"b\"], \"ctxs\": [{\"text\": \"y\"}]},"
			  " {\"kind\": \"single hop \u00e9\", \"question\": \"s?\", \"answers\": [\"c\"], \"ctxs\": [{\"text\": \"z\"}]}]";
	struct dataset *d = load(arr, 0);
	ok(d && d->n_items == 3, "records with \"kind\" (and ragdata.py's other fields) load");
	if (!d)
		return;
	str_is(d->items[0].kind, "twohop", "the kind of the first record");
	ok(d->items[1].kind == NULL, "a record without one: NULL");
	str_is(d->items[2].kind, "single hop \xc3\xa9", "a kind with a space and UTF-8, as given");
	str_is(d->items[0].id, "3-0", "the id beside it");
	dataset_free(d);
	/* other formats: a "kind" field is not read */
	d = load("{\"input\": \"who?\", \"context\": \"c\", \"answers\": [\"me\"], \"dataset\": \"hotpotqa\", "
		 "\"kind\": \"single\"}", 0);
	ok(d && d->items[0].kind == NULL, "LongBench: \"kind\" is not read");
	dataset_free(d);
	/* bad kinds: one line naming the record */
	fails("[{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]},"
	      " {\"kind\": 2, \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}]",
	      "'t.json': .[1]: \"kind\" is not a string", "a kind that is a number (array index)");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}\n"
	      "{\"kind\": [\"single\"], \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}\n",
	      "'t.json': line 2: \"kind\" is not a string", "a kind that is a list (line number)");
	fails("{\"kind\": null, \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}",
	      "\"kind\" is not a string", "a kind that is null");
	fails("{\"kind\": \"\", \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}",
	      "line 1: \"kind\" is empty", "an empty kind");
	fails("{\"kind\": \"a\\tb\", \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}",
	      "\"kind\" has a control character", "a kind with a tab (it would break bench's TSV)");
	fails("{\"kind\": \"all\", \"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}",
	      "\"kind\" is \"all\"", "the kind \"all\" (bench's rows over every question)");
}

static void test_ircot(void)
{
	const char *line = "{\"question_id\": \"5a8c\", \"question_text\": \"What position?\", \"answers_objects\": "
			   "[{\"number\": \"\", \"date\": {\"day\": \"\"}, \"spans\": [\"Chief of Protocol\"]}], "
			   "\"contexts\": [{\"id\": \"0\", \"title\": \"Meet\", \"paragraph_text\": \"ran from 1943\", "
			   "\"is_supporting\": false}, {\"id\": \"1\", \"title\": \"Shirley\", \"paragraph_text\": \"Chief\", "
			   "\"is_supporting\": true}]}\n";
	struct dataset *d = load(line, 0);
	ok(d && d->format == DATASET_IRCOT && d->n_items == 1, "HotpotQA IRCoT JSON Lines");
	if (!d)
		return;
	struct dataset_item *it = &d->items[0];
	ok(!strcmp(it->question, "What position?") && it->n_answers == 1 && !strcmp(it->answers[0], "Chief of Protocol"),
	   "question_text and answers_objects spans");
	ok(it->n_passages == 2 && !strcmp(it->passages[1].title, "Shirley") && !strcmp(it->passages[1].text, "Chief"),
	   "contexts: title and paragraph_text");
	str_is(it->id, "5a8c", "question_id is the id");
	str_is(d->name, "ircot", "the dataset is named by its format");
	dataset_free(d);
}

static void test_longbench(void)
{
	const char *line = "{\"input\": \"\", \"context\": \"Passage 1:\\nFirst news.\\nMore.\\nPassage 2:\\nSecond.\", "
			   "\"answers\": [\"A summary.\"], \"length\": 5, \"dataset\": \"multi_news\", \"_id\": \"x1\"}\n";
	struct dataset *d = load(line, 0);
	ok(d && d->format == DATASET_LONGBENCH && d->n_items == 1 && d->items[0].task == DATASET_SUMMARY,
	   "LongBench multi_news is a summary set");
	if (!d)
		return;
	struct dataset_item *it = &d->items[0];
	ok(it->n_passages == 2 && !strcmp(it->passages[0].text, "Passage 1:\nFirst news.\nMore.\n") &&
		   !strcmp(it->passages[1].text, "Passage 2:\nSecond."),
	   "the context is cut before each 'Passage N:' line, keeping every byte");
	str_is(d->name, "multi_news", "the dataset is named by LongBench's field");
	char *p = dataset_prefix(d, it), *c = dataset_chunk(d, it, 1), *q = dataset_query(d, it);
	ok(p && c && q && !strcmp(p, "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n") &&
		   !strcmp(c, "Passage 2:\nSecond.") &&
		   !strcmp(q, "\n\nNow, write a one-page summary of all the news.\n\nSummary:"),
	   "LongBench's multi_news prompt around the passages");
	free(p), free(c), free(q);
	dataset_free(d);
	fails("{\"input\": \"\", \"context\": \"x\", \"answers\": [\"s\"], \"dataset\": \"gov_report\"}",
	      "LongBench's 'gov_report' is not supported", "an unsupported LongBench set");
	d = load("{\"input\": \"who?\", \"context\": \"no markers here\", \"answers\": [\"me\"], \"dataset\": \"hotpotqa\"}", 0);
	ok(d && d->items[0].task == DATASET_QA && d->items[0].n_passages == 1, "LongBench QA: a context without markers is one passage");
	dataset_free(d);
}

static void test_samsum(void)
{
	const char *lines = "{\"id\": \"1\", \"summary\": \"S1\", \"dialogue\": \"A: hi\\nB: yo\"}\n"
			    "{\"id\": \"2\", \"summary\": \"S2\", \"dialogue\": \"D2\"}\n"
			    "{\"id\": \"3\", \"summary\": \"S3\", \"dialogue\": \"D3\"}\n";
	struct dataset *d = load(lines, 2);
	ok(d && d->format == DATASET_SAMSUM && d->n_items == 2, "SAMSum pairs, --limit 2");
	if (!d)
		return;
	struct dataset_item *it = &d->items[1];
	ok(it->task == DATASET_SUMMARY && !strcmp(it->answers[0], "S2") && it->n_passages == 2,
	   "the item's reference summary and its few-shot examples (the other pairs)");
	char *c0 = dataset_chunk(d, it, 0), *c1 = dataset_chunk(d, it, 1), *q = dataset_query(d, it);
	ok(c0 && c1 && q && !strcmp(c0, "Dialogue: D3\nSummary: S3\n\n") && !strcmp(c1, "Dialogue: A: hi\nB: yo\nSummary: S1\n\n") &&
		   !strcmp(q, "\n\nDialogue: D2\nSummary:"),
	   "few-shot chunks from the next pairs (cyclically, beyond --limit) and the dialogue as the query");
	free(c0), free(c1), free(q);
	dataset_free(d);
	d = load("{\"context\": \"A: x\\r\\nB: y\", \"response\": \"R\"}\n{\"context\": \"C\", \"response\": \"R2\"}\n", 0);
	ok(d && d->n_items == 2 && !strcmp(d->items[0].question, "A: x\nB: y"), "{context, response} pairs, CRLF made LF");
	dataset_free(d);
}

static void test_errors(void)
{
	fails("", "empty dataset", "an empty file");
	fails("  \n ", "empty dataset", "white space only");
	fails("[]", "no records", "an empty array");
	fails("{\"id\": \"1\", \"summary\": \"S\", \"dialogue\": \"D\"}", "SAMSum needs two or more",
	      "one SAMSum dialogue: no few-shot examples");
	fails("[{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]},", "line 1: not JSON",
	      "a truncated array");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}\n{\"question\": \"q\"",
	      "line 2: not JSON", "a truncated line");
	fails("[1]", ".[0]: not a JSON object", "an array of numbers");
	fails("[{\"answers\": [\"a\"], \"ctxs\": []}]", ".[0]: no \"question\"", "no question (array index)");
	fails("\n{\"question\": \"q\", \"ctxs\": [{\"text\": \"x\"}]}", "line 2: no \"answers\"", "no answers (line number)");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"title\": \"t\"}]}",
	      "line 1: .ctxs[0]: no \"text\"", "a passage without text");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": 3}]}", ".ctxs[0]: \"text\" is not a string",
	      "a passage text that is a number");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": {}}", "\"ctxs\" is not a list", "ctxs not a list");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": []}", "no passages", "no passages");
	fails("{\"question\": \"q\", \"answers\": [], \"ctxs\": [{\"text\": \"x\"}]}", "\"answers\" is empty", "no answers");
	fails("{\"question\": \"q\", \"answers\": [1], \"ctxs\": [{\"text\": \"x\"}]}", ".answers[0]", "a numeric answer");
	fails("{\"question\": \"q\", \"answers\": [[\"a\", 2]], \"ctxs\": [{\"text\": \"x\"}]}", "element 1 is not a string",
	      "a number in a list of answers");
	fails("{\"question\": \"\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}", "\"question\" is empty",
	      "an empty question");
	fails("{\"question\": 7, \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}", "\"question\" is not a string",
	      "a question that is a number");
	fails("{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}\n"
	      "{\"id\": \"1\", \"summary\": \"S1\", \"dialogue\": \"D\"}\n",
	      "line 2: a samsum record in a cacheblend file", "mixed formats");
	fails("{\"question_text\": \"q\", \"answers_objects\": [{\"spans\": \"x\"}], \"contexts\": []}",
	      ".answers_objects[0]: \"spans\" is not a list", "IRCoT spans not a list");
	fails("{\"question\": \"q\", \"question\": \"r\", \"answers\": [\"a\"], \"ctxs\": [{\"text\": \"x\"}]}",
	      "duplicate", "a duplicate key");
	struct dataset *d;
	int rc = dataset_load(&d, "/nonexistent/x.json", 0);
	ok(rc == KB_ERR_IO && strstr(kb_error(), "/nonexistent/x.json"), "a missing file: %s", kb_error());
}

static void test_shared(void)
{
	const char *path = tap_shared("data/qa/cacheblend_wikimqa_s_clean.json");
	struct dataset *d;
	if (!path) {
		ok(1, "# SKIP ../shared/data is absent");
		return;
	}
	if (dataset_load(&d, path, 0)) {
		ok(0, "%s", kb_error());
		return;
	}
	int n10 = 0;
	for (int i = 0; i < d->n_items; i++)
		n10 += d->items[i].n_passages == 10;
	ok(d->format == DATASET_CACHEBLEND && d->n_items == 102 && n10 == 102, "wikimqa_s_clean: 102 questions of 10 passages");
	ok(!strcmp(d->items[0].answers[0], "Croatia"), "its first gold answer is 'Croatia'");
	dataset_free(d);
	if ((path = tap_shared("data/qa/hotpotqa_distractor_dev500_ircot.jsonl")) && dataset_load(&d, path, 0) == KB_OK) {
		ok(d->format == DATASET_IRCOT && d->n_items == 500, "hotpotqa IRCoT: 500 questions");
		ok(!strcmp(d->items[0].answers[0], "Chief of Protocol"), "its first answer");
		dataset_free(d);
	} else
		ok(0, "hotpotqa: %s", path ? kb_error() : "absent");
	if ((path = tap_shared("data/summ/longbench_multi_news.jsonl")) && dataset_load(&d, path, 0) == KB_OK) {
		double mean = 0;
		for (int i = 0; i < d->n_items; i++)
			mean += d->items[i].n_passages;
		mean /= d->n_items;
		ok(d->n_items == 200 && d->items[0].task == DATASET_SUMMARY && mean > 2.5 && mean < 3.2,
		   "multi_news: 200 summaries, %.2f passages each (SOURCES.md: 2.85)", mean);
		dataset_free(d);
	} else
		ok(0, "multi_news: %s", path ? kb_error() : "absent");
	if ((path = tap_shared("data/summ/samsum_test.jsonl")) && dataset_load(&d, path, 10) == KB_OK) {
		ok(d->n_items == 10 && d->items[0].n_passages == DATASET_SHOTS && d->items[0].task == DATASET_SUMMARY,
		   "samsum test: --limit 10, %d shots each", DATASET_SHOTS);
		dataset_free(d);
	} else
		ok(0, "samsum: %s", path ? kb_error() : "absent");
}

int main(void)
{
	test_cacheblend();
	test_kind();
	test_ircot();
	test_longbench();
	test_samsum();
	test_errors();
	test_shared();
	return done_testing();
}
