/* test_template — the prompt templates (common/template.c): each frame's head
 * and tail written out by hand, the prefix left out when empty, unknown names
 * refused, and chat-template texts of each family (abridged from the models'
 * tokenizer_config.json) recognised, with the families kvblend does not frame
 * left to plain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
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

	frame("llama2", "P", "[INST] <<SYS>>\nP\n<</SYS>>\n\n", "Q? [/INST]");
	frame("llama2", "", "[INST] ", "Q? [/INST]");
	frame("mistral-v7", "P", "[SYSTEM_PROMPT] P[/SYSTEM_PROMPT][INST] ", "Q?[/INST]");
	frame("mistral-v7", NULL, "[INST] ", "Q?[/INST]");
	/* Gemma: no system turn, the prefix opens the user's */
	frame("gemma", "P", "<start_of_turn>user\nP\n\n", "Q?<end_of_turn>\n<start_of_turn>model\n");
	frame("gemma", NULL, "<start_of_turn>user\n", "Q?<end_of_turn>\n<start_of_turn>model\n");
	frame("phi3", "P", "<|system|>\nP<|end|>\n<|user|>\n", "Q?<|end|>\n<|assistant|>\n");
	frame("phi3", NULL, "<|user|>\n", "Q?<|end|>\n<|assistant|>\n");
	frame("phi4", "P", "<|im_start|>system<|im_sep|>P<|im_end|><|im_start|>user<|im_sep|>",
	      "Q?<|im_end|><|im_start|>assistant<|im_sep|>");

	/* the spans: where the prefix and the query lie */
	char *h, *t;
	struct template_spans sp;
	if (ok(template_frame("phi3", "PRE", "QUERY", &h, &t, &sp) == KB_OK, "phi3 frames with spans")) {
		ok(sp.prefix_at == strlen("<|system|>\n") && sp.prefix_len == 3 && !memcmp(h + sp.prefix_at, "PRE", 3),
		   "  the prefix span is the prefix");
		ok(sp.query_at == 0 && sp.query_len == 5 && !memcmp(t, "QUERY", 5), "  the query span is the query");
		free(h), free(t);
	}

	const char *known[] = { "plain", "chatml", "llama3", "mistral", "llama2", "mistral-v7", "gemma", "phi3", "phi4" };
	for (int i = 0; i < 9; i++)
		ok(template_known(known[i]), "'%s' is known", known[i]);
	char *head = (char *)1, *tail = (char *)1;
	ok(!template_known("chatML") && !template_known(""), "names are exact");
	ok(template_frame("vicuna", "P", "Q", &head, &tail, NULL) == KB_ERR_ARG && !head && !tail,
	   "unknown template: KB_ERR_ARG, nothing allocated");
	ok(strstr(kb_error(), "'vicuna'") != NULL, "the error names it: %s", kb_error());
	ok(!template_known("auto"), "auto is not a frame");

	/* detection from tokenizer.chat_template texts */
	static const struct {
		const char *text, *want, *family;
	} texts[] = {
		{ "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
		  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
		  "chatml", NULL },
		{ "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
		  "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}",
		  "llama3", NULL },
		{ "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] "
		  "| trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
		  "gemma", NULL },
		{ "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
		  "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
		  "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
		  "phi3", NULL },
		{ "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + "
		  "'<|im_end|>'}}{% endfor %}", "phi4", NULL },
		{ "{{ bos_token }}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
		  "message['content'] + ' [/INST]' }}{% endif %}{% endfor %}", "mistral", NULL },
		{ "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
		  "'\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}",
		  "llama2", NULL },
		{ "{{ bos_token }}{% if system_message %}{{ '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{% endif %}"
		  "{{ '[INST]' + message['content'] + '[/INST]' }}", "mistral-v7", NULL },
		{ "chatml", "chatml", NULL },
		/* families kvblend does not frame: named, and not taken for another */
		{ "{% for message in messages %}{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}{% endfor %}",
		  NULL, "zephyr" },
		{ "{{ '<|im_start|>' }}{% for message in messages %}User: {{ message['content'] }}<end_of_utterance>"
		  "{% endfor %}", NULL, "smolvlm" },
		{ "{% for message in messages %}{{ 'USER: ' + message['content'] + ' ASSISTANT: ' }}{% endfor %}", NULL, "vicuna" },
		{ "{{ messages[0]['content'] }}", NULL, NULL },
		{ "", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		const char *fam = "unset";
		const char *got = template_detect(texts[i].text, strlen(texts[i].text), &fam);
		bool same = texts[i].want ? got && !strcmp(got, texts[i].want) : !got;
		bool fam_ok = texts[i].family ? fam && !strcmp(fam, texts[i].family) : !fam;
		ok(same && fam_ok, "detect #%zu: %s (family %s)", i, got ? got : "none", fam ? fam : "none");
	}
	/* the text need not end at a NUL: only len bytes are read */
	ok(template_detect("<|im_start|>XYZ", 5, NULL) == NULL, "detect reads len bytes only");

	/* resolve without a GGUF: auto falls back, a name is taken, an unknown one refused */
	struct template_choice tc;
	ok(template_resolve("auto", NULL, &tc) == KB_OK && !strcmp(tc.name, "plain") && tc.fallback &&
	   strstr(tc.why, "no tokenizer.chat_template"), "auto without a model: plain, fallback (%s)", tc.why);
	ok(template_resolve(NULL, NULL, &tc) == KB_OK && tc.fallback, "NULL is auto");
	ok(template_resolve("gemma", NULL, &tc) == KB_OK && !strcmp(tc.name, "gemma") && !tc.fallback &&
	   !strcmp(tc.why, "given with --template"), "a name is taken as given");
	ok(template_resolve("vicuna", NULL, &tc) == KB_ERR_ARG && strstr(kb_error(), "'vicuna'"), "unknown name refused");

	/* resolve against GGUFs: one with a Gemma template, one with an unknown one */
	static const struct {
		const char *text, *want;
		bool fallback;
	} ggufs[] = {
		{ "{{ bos_token }}{{ '<start_of_turn>user\\n' }}", "gemma", false },
		{ "{{ messages[0]['content'] }}", "plain", true },
	};
	for (size_t i = 0; i < 2; i++) {
		char path[4200];
		snprintf(path, sizeof path, "%s/t%zu.gguf", tap_tmpdir(), i);
		struct gguf_writer *w = gguf_writer_init();
		struct gguf *g = NULL;
		int rc = !w || gguf_writer_set_str(w, "general.architecture", "llama") ||
			 gguf_writer_set_str(w, "tokenizer.chat_template", ggufs[i].text) || gguf_writer_write(w, path) ||
			 gguf_open(&g, path);
		gguf_writer_free(w);
		if (!ok(rc == 0, "a GGUF with a chat template (%s)", rc ? kb_error() : path))
			continue;
		ok(template_resolve("auto", g, &tc) == KB_OK && !strcmp(tc.name, ggufs[i].want) &&
		   tc.fallback == ggufs[i].fallback, "auto: %s (%s)", tc.name, tc.why);
		ok(template_resolve("llama3", g, &tc) == KB_OK && !strcmp(tc.name, "llama3"), "a name overrides the GGUF's");
		gguf_close(g);
	}
	return done_testing();
}
