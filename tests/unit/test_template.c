/* test_template — the prompt templates (common/template.c): each frame's head
 * and tail written out by hand, the prefix left out when empty, and unknown
 * names refused. */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "template.h"

static void frame(const char *name, const char *prefix, const char *want_head, const char *want_tail)
{
	char *head, *tail;
	int rc = template_frame(name, prefix, "Q?", &head, &tail, NULL);
	if (!ok(rc == KB_OK, "%s: frames (prefix '%s')", name, prefix ? prefix : "(null)"))
		return;
	ok(!strcmp(head, want_head), "%s: head '%s'", name, head);
	ok(!strcmp(tail, want_tail), "%s: tail '%s'", name, tail);
	free(head);
	free(tail);
}

int main(void)
{
	frame("plain", "P", "P", "Q?");
	frame("plain", NULL, "", "Q?");
	frame("chatml", "P", "<|im_start|>system\nP<|im_end|>\n<|im_start|>user\n",
	      "Q?<|im_end|>\n<|im_start|>assistant\n");
	frame("chatml", "", "<|im_start|>user\n", "Q?<|im_end|>\n<|im_start|>assistant\n");
	frame("llama3", "P",
	      "<|start_header_id|>system<|end_header_id|>\n\nP<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n",
	      "Q?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
	frame("mistral", "P", "[INST] P\n\n", "Q? [/INST]");
	frame("mistral", NULL, "[INST] ", "Q? [/INST]");

	const char *known[] = { "plain", "chatml", "llama3", "mistral" };
	for (int i = 0; i < 4; i++)
		ok(template_known(known[i]), "'%s' is known", known[i]);
	char *head = (char *)1, *tail = (char *)1;
	ok(!template_known("chatML") && !template_known(""), "names are exact");
	ok(template_frame("vicuna", "P", "Q", &head, &tail, NULL) == KB_ERR_ARG && !head && !tail,
	   "unknown template: KB_ERR_ARG, nothing allocated");
	ok(strstr(kb_error(), "'vicuna'") != NULL, "the error names it: %s", kb_error());
	return done_testing();
}
