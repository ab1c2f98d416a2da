/* template.h — the named prompt templates kvblend-blend, kvblend-bench and
 * kvblend-decode frame a prompt with (plain, chatml, llama3, mistral, llama2,
 * mistral-v7, gemma, phi3, phi4), and "auto": the one a model's GGUF names in
 * tokenizer.chat_template, recognised by its text as llama.cpp does.
 *
 * A blended prompt is head + chunks + tail: the head holds the system prefix
 * and opens the user turn, the chunks follow as they were cached, the tail
 * holds the query and opens the assistant turn. The chunks sit inside the
 * user turn, so their caches are the same whichever template frames them.
 * The head's tokens include the template's markup, so a cached head is keyed
 * (store_key of its token ids) by the template that framed it.
 */
#ifndef KB_TEMPLATE_H
#define KB_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* The template names, for usage and error messages. */
#define TEMPLATE_NAMES "auto, plain, chatml, llama3, mistral, llama2, mistral-v7, gemma, phi3, phi4"
/* The same space-separated, for the completions. */
#define TEMPLATE_WORDS "auto plain chatml llama3 mistral llama2 mistral-v7 gemma phi3 phi4"

/* Whether name is a known template ("auto" is not one: see template_resolve). */
bool template_known(const char *name);

/* The template a chat template's text (a GGUF's tokenizer.chat_template, a
 * Jinja source) is recognised as, by the markers each family's text carries:
 * a template.h name, or NULL when it is not one kvblend frames. *family (may
 * be NULL) gets, for NULL, the family recognised ("zephyr", "vicuna", ...) or
 * NULL when none is. text need not be NUL-terminated. */
const char *template_detect(const char *text, size_t len, const char **family);

struct gguf;

/* What a --template request resolved to. */
struct template_choice {
	const char *name; /* a template.h name (static) */
	char why[160];    /* "from tokenizer.chat_template", "given with --template", or
			   * why auto fell back to plain ("the model has no tokenizer.chat_template") */
	bool fallback;    /* auto found no template it frames: name is "plain" (worth one warning) */
};

/* Resolve requested (a template.h name, or "auto" or NULL: the one g's
 * tokenizer.chat_template names) into *c. KB_OK, or KB_ERR_ARG for an
 * unknown name. */
int template_resolve(const char *requested, const struct gguf *g, struct template_choice *c) KB_WUR;

/* Where the user's texts lie in the framed head and tail (byte offsets), so
 * the markup around them can be tokenized with special tokens and they cannot. */
struct template_spans {
	size_t prefix_at, prefix_len; /* in *head */
	size_t query_at, query_len;   /* in *tail */
};

/* Frame prefix (NULL or "" for none) and query with the template name: *head
 * is the text before the chunks, *tail the text after them; both malloc'd.
 * spans (may be NULL): where prefix and query went. KB_ERR_ARG for an unknown
 * name, KB_ERR_NOMEM. */
int template_frame(const char *name, const char *prefix, const char *query, char **head, char **tail,
		   struct template_spans *spans) KB_WUR;

#endif
