/* template.h — the named prompt templates kvblend-blend and kvblend-bench frame
 * a prompt with: plain, chatml, llama3, mistral.
 *
 * A blended prompt is head + chunks + tail: the head holds the system prefix
 * and opens the user turn, the chunks follow as they were cached, the tail
 * holds the query and opens the assistant turn. The chunks sit inside the
 * user turn, so their caches are the same whichever template frames them.
 */
#ifndef KB_TEMPLATE_H
#define KB_TEMPLATE_H

#include <stdbool.h>

#include "util.h"

/* The template names, for usage and error messages. */
#define TEMPLATE_NAMES "plain, chatml, llama3, mistral"

/* Whether name is a known template. */
bool template_known(const char *name);

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
