/* template.c — see template.h. The texts follow each family's chat format;
 * special tokens are written as text and matched by the tokenizer (callers
 * tokenize the head and tail with special tokens enabled outside the spans of
 * the user's prefix and query, tok_encode_framed). */
#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = { "plain", "chatml", "llama3", "mistral" };

bool template_known(const char *name)
{
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (!strcmp(name, names[i]))
			return true;
	return false;
}

int template_frame(const char *name, const char *prefix, const char *query, char **head, char **tail,
		   struct template_spans *spans)
{
	int a, b;
	bool pre = prefix && *prefix;
	const char *opening = ""; /* what comes before the prefix in the head */
	*head = *tail = NULL;
	if (!template_known(name))
		return kb_fail(KB_ERR_ARG, "'%s': unknown template (%s)", name, TEMPLATE_NAMES);
	if (!strcmp(name, "chatml")) {
		opening = pre ? "<|im_start|>system\n" : "";
		a = asprintf(head, "%s%s%s<|im_start|>user\n", opening, pre ? prefix : "",
			     pre ? "<|im_end|>\n" : "");
		b = asprintf(tail, "%s<|im_end|>\n<|im_start|>assistant\n", query);
	} else if (!strcmp(name, "llama3")) {
		opening = pre ? "<|start_header_id|>system<|end_header_id|>\n\n" : "";
		a = asprintf(head, "%s%s%s<|start_header_id|>user<|end_header_id|>\n\n", opening, pre ? prefix : "",
			     pre ? "<|eot_id|>" : "");
		b = asprintf(tail, "%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", query);
	} else if (!strcmp(name, "mistral")) {
		opening = "[INST] ";
		a = asprintf(head, "%s%s%s", opening, pre ? prefix : "", pre ? "\n\n" : "");
		b = asprintf(tail, "%s [/INST]", query);
	} else {
		a = asprintf(head, "%s", pre ? prefix : "");
		b = asprintf(tail, "%s", query);
	}
	if (a < 0 || b < 0) {
		if (a >= 0)
			free(*head);
		if (b >= 0)
			free(*tail);
		*head = *tail = NULL;
		return kb_fail(KB_ERR_NOMEM, "prompt template: out of memory");
	}
	if (spans) /* the query always opens the tail */
		*spans = (struct template_spans){ .prefix_at = strlen(opening), .prefix_len = pre ? strlen(prefix) : 0,
						  .query_len = strlen(query) };
	return KB_OK;
}
