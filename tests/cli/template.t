#!/bin/sh
# template.t — --template auto (issue 17): tiny synthetic models given a
# tokenizer.chat_template of each family by kvblend quantize --chat-template
# (the way llama.cpp's gguf-new-metadata sets one) are recognised by decode,
# blend and bench; a model without one, or with one kvblend does not frame,
# falls back to plain with one warning; -v says which and why; the caches
# record the template used; a cached head is not reused under another
# template; decode frames a one-off question as blend frames it.
. "$(dirname "$0")/tap.sh"
need_bin quantize decode blend info
B=$KVBLEND_BIN t=$TAP_TMP

"$B/kvblend-quantize" --synthetic tiny-qwen2 "$t/base.gguf" f32 2>/dev/null
ok $? "a tiny synthetic model (no chat template)"

# chat templates as the models ship them (abridged), one file each
cat >"$t/chatml.jinja" <<'EOF'
{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
EOF
cat >"$t/llama3.jinja" <<'EOF'
{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}
EOF
cat >"$t/gemma.jinja" <<'EOF'
{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}
EOF
cat >"$t/phi3.jinja" <<'EOF'
{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}
EOF
cat >"$t/vicuna.jinja" <<'EOF'
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + '\n' }}{% else %}{{ 'ASSISTANT: ' + message['content'] + '</s>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}
EOF
for f in chatml llama3 gemma phi3 vicuna; do
	"$B/kvblend-quantize" --chat-template "$t/$f.jinja" "$t/base.gguf" "$t/$f.gguf" f32 2>/dev/null || echo "quantize $f failed"
done
[ -s "$t/gemma.gguf" ] && grep -q "start_of_turn" "$t/gemma.gguf"; ok $? "quantize --chat-template writes the key"
cmp -s "$t/base.gguf" "$t/chatml.gguf"; [ $? -eq 1 ]; ok $? "  into a new file"

# info says what auto makes of a model
is "$("$B/kvblend-info" "$t/gemma.gguf" | grep '^  template')" "  template     gemma (from tokenizer.chat_template)" "info: the template auto takes"
is "$("$B/kvblend-info" -j "$t/vicuna.gguf" | perl -MJSON::PP -0777 -ne '$t = decode_json($_)->{template}; print "$t->{name}:", ($t->{fallback} ? 1 : 0)')" \
	"plain:1" "info --json: the template, a fallback"

# decode -v names the template and why
for f in chatml llama3 gemma phi3; do
	"$B/kvblend-decode" -m "$t/$f.gguf" -p "Hello there" -n 2 -v --ids >/dev/null 2>"$t/e"
	is "$(grep 'template' "$t/e")" "kvblend-decode: template: $f (from tokenizer.chat_template)" "decode -v: $f recognised"
done
"$B/kvblend-decode" -m "$t/gemma.gguf" --template phi3 -p "Hello there" -n 2 -v --ids >/dev/null 2>"$t/e"
is "$(grep 'template' "$t/e")" "kvblend-decode: template: phi3 (given with --template)" "--template NAME overrides the model's"
"$B/kvblend-decode" -m "$t/chatml.gguf" -p "Hello there" -n 2 --ids >/dev/null 2>"$t/e"
is "$(cat "$t/e")" "" "  without -v: nothing on stderr"

# the fallback: one warning, whatever the reason
"$B/kvblend-decode" -m "$t/base.gguf" -p "Hello there" -n 2 --ids >/dev/null 2>"$t/e"
is "$(cat "$t/e")" "kvblend-decode: warning: template: plain (the model has no tokenizer.chat_template; --template NAME to choose one)" \
	"no chat template: plain, one warning"
"$B/kvblend-decode" -m "$t/vicuna.gguf" -p "Hello there" -n 2 --ids >/dev/null 2>"$t/e"
is "$(cat "$t/e")" "kvblend-decode: warning: template: plain (the model's tokenizer.chat_template is vicuna's, which kvblend does not frame; --template NAME to choose one)" \
	"a family kvblend does not frame: plain, one warning naming it"
"$B/kvblend-decode" -m "$t/base.gguf" --template plain -p "Hello there" -n 2 --ids >/dev/null 2>"$t/e"
is "$(cat "$t/e")" "" "--template plain: no warning"
"$B/kvblend-decode" -m "$t/base.gguf" -p "Hello there" -n 2 --ids --quiet >/dev/null 2>"$t/e"
is "$(cat "$t/e")" "" "--quiet: no warning"
"$B/kvblend-decode" -m "$t/base.gguf" --template vicuna -p "Hello there" -n 2 >/dev/null 2>"$t/e"
is "$?:$(head -1 "$t/e")" "2:kvblend-decode: --template: unknown template 'vicuna' (auto, plain, chatml, llama3, mistral, llama2, mistral-v7, gemma, phi3, phi4)" \
	"an unknown template: usage error"

# decode frames the question as the model's template says: the first token's
# distribution (its five most likely tokens) is that of --template chatml on
# the model without one, and not that of plain
first() { "$B/kvblend-decode" -n 1 --json --logprobs 5 "$@" 2>/dev/null | head -1; }
auto=$(first -m "$t/chatml.gguf" -p "Hello there")
named=$(first -m "$t/base.gguf" --template chatml -p "Hello there")
plain=$(first -m "$t/chatml.gguf" --template plain -p "Hello there")
[ -n "$auto" ] && [ "$auto" = "$named" ]; ok $? "decode: auto on a chatml model = --template chatml"
[ "$auto" != "$plain" ]; ok $? "  and not plain"

# ... and as blend frames it: a blend of the question alone (no chunks) continues the same way
"$B/kvblend-blend" -m "$t/chatml.gguf" -q "Hello there" --no-store -o "$t/q.kvc" </dev/null 2>"$t/e"
ok $? "blend of the question alone"
is "$(cat "$t/e")" "" "  blend with a recognised template: nothing on stderr"
fromcache=$(first -m "$t/chatml.gguf" -c "$t/q.kvc")
is "$(printf '%s' "$fromcache" | perl -MJSON::PP -ne '$j = decode_json($_); printf "%s", join " ", map { "$_->{id}:" . sprintf("%.3f", $_->{logprob}) } @{$j->{top}}')" \
	"$(printf '%s' "$auto" | perl -MJSON::PP -ne '$j = decode_json($_); printf "%s", join " ", map { "$_->{id}:" . sprintf("%.3f", $_->{logprob}) } @{$j->{top}}')" \
	"decode -p QUESTION = decode of blend -q QUESTION (top 5 ids and logprobs)"

# provenance: the template used, auto or not
"$B/kvblend-info" "$t/q.kvc" | grep -q -- "made by .*--template=chatml"; ok $? "the blended cache records --template=chatml (auto)"
printf '{"text": "Lily went to the park."}\n{"text": "Tom stayed home."}\n{"text": "It rained."}\n' >"$t/c.jsonl"
"$B/kvblend-blend" -m "$t/base.gguf" -q "Who went out?" --no-store -o "$t/p.kvc" <"$t/c.jsonl" 2>"$t/e"
is "$(grep -c warning "$t/e")" 1 "blend of three chunks on a model without a template: one warning"
"$B/kvblend-info" "$t/p.kvc" | grep -q -- "made by .*--template=plain"; ok $? "  the cache records --template=plain"
"$B/kvblend-blend" -m "$t/gemma.gguf" --template chatml -q "Who went out?" --no-store -o "$t/p.kvc" <"$t/c.jsonl" 2>/dev/null
"$B/kvblend-info" -j "$t/p.kvc" | perl -MJSON::PP -0777 -ne 'print join(" ", @{decode_json($_)->{provenance}{argv}})' >"$t/argv"
is "$(cat "$t/argv")" "-m --template=chatml -q --no-store -o" "  --template given: its entry carries the value"

# the cache keys: the head (prefix + the template's opening) is keyed by its
# tokens, so another template computes its own; the chunks are shared
st=$t/store
bl() { "$B/kvblend-blend" -v -m "$t/chatml.gguf" --store "$st" --prefix "Answer briefly." -q "Who went out?" -o /dev/null "$@" <"$t/c.jsonl" 2>&1 | grep -o '[0-9]* caches from the store, [0-9]* computed'; }
is "$(bl)" "0 caches from the store, 4 computed" "store: the first blend computes the head and three chunks"
is "$(bl --template plain)" "3 caches from the store, 1 computed" "  under plain: the chunks come from the store, the head is computed"
is "$(bl --template gemma)" "3 caches from the store, 1 computed" "  under gemma: its own head too"
is "$(bl)" "4 caches from the store, 0 computed" "  auto (chatml) again: all from the store"

# bench: one warning for the run, not one per question; the JSON names the template
if wiki=$(tap_shared data/qa/cacheblend_wikimqa_s_clean.json); then
	"$B/kvblend-bench" --dataset "$wiki" -m "$t/base.gguf" --limit 3 --max-chunk-tokens 16 --max-passages 2 -t 1 \
		--n-gen 2 --store "$t/bst" --methods full --json --quiet >"$t/bj" 2>"$t/e"
	is "$?:$(grep -c 'template' "$t/e")" "0:1" "bench on a model without a template: one warning for three questions"
	"$B/kvblend-bench" --dataset "$wiki" -m "$t/gemma.gguf" --limit 1 --max-chunk-tokens 16 --max-passages 2 -t 1 \
		--n-gen 2 --store "$t/bst" --methods full --json --quiet >"$t/bj" 2>"$t/e"
	is "$(perl -MJSON::PP -0777 -ne 'print decode_json($_)->{template}' "$t/bj")" gemma "bench --json: the template used (gemma, auto)"
else
	skip "bench: no ../shared data/qa"
	skip "bench --json"
fi

# quantize --chat-template: its errors
: >"$t/empty.jinja"
"$B/kvblend-quantize" --chat-template "$t/empty.jinja" "$t/base.gguf" "$t/x.gguf" f32 2>"$t/e"
is "$?:$(cat "$t/e")" "1:kvblend-quantize: '$t/empty.jinja': the chat template is empty" "quantize --chat-template: an empty file is an error"
"$B/kvblend-quantize" --chat-template "$t/chatml.jinja" --synthetic tiny-qwen2 "$t/x.gguf" f32 2>/dev/null
is "$?" 2 "  --chat-template with --synthetic: usage error"
done_testing
