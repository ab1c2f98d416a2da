/* template.c — see template.h. The texts follow each family's chat format;
 * special tokens are written as text and matched by the tokenizer (callers
 * tokenize the head and tail with special tokens enabled outside the spans of
 * the user's prefix and query, tok_encode_framed). */
#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* A template's frame: with a prefix the head is sys_open + prefix + sys_close,
 * without one it is no_sys; the tail is the query + close. */
struct frame {
	const char *name;
	const char *sys_open, *sys_close, *no_sys, *close;
};

static const struct frame frames[] = {
	{ "plain", "", "", "", "" },
	{ "chatml", "<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n", "<|im_start|>user\n",
	  "<|im_end|>\n<|im_start|>assistant\n" },
	{ "llama3", "<|start_header_id|>system<|end_header_id|>\n\n",
	  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>user<|end_header_id|>\n\n",
	  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" },
	/* Mistral v1/v3 and Llama 2 without <<SYS>>: the system text opens the first user turn */
	{ "mistral", "[INST] ", "\n\n", "[INST] ", " [/INST]" },
	{ "llama2", "[INST] <<SYS>>\n", "\n<</SYS>>\n\n", "[INST] ", " [/INST]" },
	{ "mistral-v7", "[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT][INST] ", "[INST] ", "[/INST]" },
	/* Gemma has no system role: the system text opens the first user turn */
	{ "gemma", "<start_of_turn>user\n", "\n\n", "<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n" },
	{ "phi3", "<|system|>\n", "<|end|>\n<|user|>\n", "<|user|>\n", "<|end|>\n<|assistant|>\n" },
	{ "phi4", "<|im_start|>system<|im_sep|>", "<|im_end|><|im_start|>user<|im_sep|>", "<|im_start|>user<|im_sep|>",
	  "<|im_end|><|im_start|>assistant<|im_sep|>" },
};

static const struct frame *find_frame(const char *name)
{
	for (size_t i = 0; i < sizeof frames / sizeof *frames; i++)
		if (!strcmp(name, frames[i].name))
			return &frames[i];
	return NULL;
}

bool template_known(const char *name)
{
	return find_frame(name) != NULL;
}

/* The markers that tell the families apart, tried in order (the order
 * llama.cpp's detection uses: chatml-like texts first, then [INST], then the
 * rest); the first row whose markers are both in the text decides. A row with
 * no name is a family kvblend does not frame: detection stops there, so its
 * text is never taken for a later family's. */
static const struct marker {
	const char *a, *b;  /* b NULL: a alone */
	const char *name;   /* a template.h name, or NULL */
	const char *family; /* for messages */
} markers[] = {
	{ "<|im_start|>", "<|im_sep|>", "phi4", "phi4" },
	{ "<|im_start|>", "<end_of_utterance>", NULL, "smolvlm" },
	{ "<|im_start|>", NULL, "chatml", "chatml" },
	{ "[INST]", "[SYSTEM_PROMPT]", "mistral-v7", "mistral-v7" },
	{ "[INST]", "[AVAILABLE_TOOLS]", "mistral", "mistral" },
	{ "' [INST] ' + system_message", NULL, "mistral", "mistral" },
	{ "[INST]", "<<SYS>>", "llama2", "llama2" },
	{ "[INST]", NULL, "mistral", "mistral" },
	{ "<|assistant|>", "<|end|>", "phi3", "phi3" },
	{ "[gMASK]<sop>", NULL, NULL, "chatglm4" },
	{ "<|assistant|>", "<|user|>", NULL, "falcon3 or glm-edge" },
	{ "<|user|>", "<|endoftext|>", NULL, "zephyr" },
	{ "bos_token + message['role']", NULL, NULL, "monarch" },
	{ "<start_of_turn>", NULL, "gemma", "gemma" },
	{ "GPT4 Correct ", NULL, NULL, "openchat" },
	{ "USER: ", "ASSISTANT: ", NULL, "vicuna" },
	{ "### Instruction:", "<|EOT|>", NULL, "deepseek" },
	{ "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", NULL, "command-r" },
	{ "<|start_header_id|>", "<|end_header_id|>", "llama3", "llama3" },
	{ "<|start_of_role|>", NULL, NULL, "granite" },
	{ "<|header_start|>", "<|header_end|>", NULL, "llama4" },
};

static bool contains(const char *text, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; n <= len && i <= len - n; i++)
		if (text[i] == needle[0] && !memcmp(text + i, needle, n))
			return true;
	return false;
}

const char *template_detect(const char *text, size_t len, const char **family)
{
	const char *fam = NULL;
	if (family)
		*family = NULL;
	/* the text may be a template's name itself (a GGUF written with one) */
	char name[16];
	if (len > 0 && len < sizeof name) {
		memcpy(name, text, len);
		name[len] = '\0';
		if (find_frame(name))
			return find_frame(name)->name;
	}
	for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
		const struct marker *k = &markers[i];
		if (contains(text, len, k->a) && (!k->b || contains(text, len, k->b))) {
			if (!k->name)
				fam = k->family;
			if (family)
				*family = fam;
			return k->name;
		}
	}
	if (len >= 7 && !memcmp(text, "mistral", 7)) /* a name of Mistral's: "mistral-v3", ... */
		return len >= 10 && !memcmp(text, "mistral-v7", 10) ? "mistral-v7" : "mistral";
	return NULL;
}

int template_resolve(const char *requested, const struct gguf *g, struct template_choice *c)
{
	memset(c, 0, sizeof *c);
	if (requested && strcmp(requested, "auto")) {
		const struct frame *f = find_frame(requested);
		if (!f)
			return kb_fail(KB_ERR_ARG, "'%s': unknown template (%s)", requested, TEMPLATE_NAMES);
		c->name = f->name;
		snprintf(c->why, sizeof c->why, "given with --template");
		return KB_OK;
	}
	struct gguf_str s;
	const char *family = NULL;
	if (!g || gguf_get_str(g, "tokenizer.chat_template", &s) != KB_OK) {
		snprintf(c->why, sizeof c->why, "the model has no tokenizer.chat_template");
	} else if ((c->name = template_detect(s.data, (size_t)s.len, &family))) {
		snprintf(c->why, sizeof c->why, "from tokenizer.chat_template");
		return KB_OK;
	} else if (family) {
		snprintf(c->why, sizeof c->why, "the model's tokenizer.chat_template is %s's, which kvblend does not frame",
			 family);
	} else {
		snprintf(c->why, sizeof c->why, "the model's tokenizer.chat_template is not one kvblend recognises");
	}
	c->name = "plain";
	c->fallback = true;
	return KB_OK;
}

int template_frame(const char *name, const char *prefix, const char *query, char **head, char **tail,
		   struct template_spans *spans)
{
	bool pre = prefix && *prefix;
	const struct frame *f = find_frame(name);
	*head = *tail = NULL;
	if (!f)
		return kb_fail(KB_ERR_ARG, "'%s': unknown template (%s)", name, TEMPLATE_NAMES);
	int a = pre ? asprintf(head, "%s%s%s", f->sys_open, prefix, f->sys_close) : asprintf(head, "%s", f->no_sys);
	int b = asprintf(tail, "%s%s", query, f->close);
	if (a < 0 || b < 0) {
		if (a >= 0)
			free(*head);
		if (b >= 0)
			free(*tail);
		*head = *tail = NULL;
		return kb_fail(KB_ERR_NOMEM, "prompt template: out of memory");
	}
	if (spans) /* the query always opens the tail */
		*spans = (struct template_spans){ .prefix_at = pre ? strlen(f->sys_open) : 0,
						  .prefix_len = pre ? strlen(prefix) : 0, .query_len = strlen(query) };
	return KB_OK;
}
