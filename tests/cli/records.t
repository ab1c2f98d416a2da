#!/bin/sh
# One rule for chunk records in every tool (issue 10 item 9, kvblend-chunks(5)):
# what chunk writes, every reader takes; each record the rule refuses (an empty
# text, a text that is not a string, one holding NUL, a doc, seq, start, end or
# tokens of the wrong type) gets the same one-line message naming the input and
# line from embed, embed --vectors and prefill, is skipped, and the run exits 1;
# the good records around it still go through; blend (strict) stops there. Records also come from files
# given as operands (issue 11), "-" being stdin.
. "$(dirname "$0")/tap.sh"
need_bin chunk embed prefill blend
B=$KVBLEND_BIN t=$TAP_TMP
model=$(tap_shared models/stories260Ktok512.gguf) || model=

printf 'A first paragraph about a red ball.\n\nA second one about a big dog.\n' >"$t/doc.txt"
"$B/kvblend-chunk" --max-tokens 0 "$t/doc.txt" >"$t/chunks.jsonl"
good='{"doc":"g.txt","seq":0,"start":0,"end":9,"tokens":3,"text":"good text"}'

# case LABEL RECORD MESSAGE: a file with a good record, RECORD, a good record
n=0
while IFS='|' read -r label rec msg; do
	n=$((n + 1))
	printf '%s\n%s\n%s\n' "$good" "$rec" "$good" >"$t/case$n.jsonl"
	printf '%s|%s\n' "$label" "$msg" >"$t/case$n.want"
done <<'EOF'
empty text|{"doc":"d","text":""}|the record's text is empty
text a number|{"doc":"d","text":7}|the record's "text" is not a string
text null|{"text":null}|the record's "text" is not a string
text missing|{"doc":"d"}|the record has no "text"
text with NUL|{"text":"a\u0000b"}|a string holds \u0000 (NUL)
doc a number|{"doc":3,"text":"x"}|the record's "doc" is not a string
seq negative|{"seq":-1,"text":"x"}|the record's "seq" is not an integer >= 0
seq a string|{"seq":"2","text":"x"}|the record's "seq" is not an integer >= 0
start a float|{"start":1.5,"text":"x"}|the record's "start" is not an integer >= 0
end an object|{"end":{},"text":"x"}|the record's "end" is not an integer >= 0
tokens a string|{"tokens":"4","text":"x"}|the record's "tokens" is not an integer >= 0
start past end|{"start":9,"end":2,"text":"x"}|the record's "start" 9 is past its "end" 2
EOF

# check TOOL-LABEL OUTLINES CMD...: each case through CMD (the file as operand)
check() {
	what=$1 lines=$2
	shift 2
	i=1
	while [ $i -le $n ]; do
		label=$(cut -d'|' -f1 "$t/case$i.want") msg=$(cut -d'|' -f2- "$t/case$i.want")
		# --vectors embeds a "query" when there is no "text"
		[ "$what:$label" = "kvblend-embed --vectors:text missing" ] && msg='the record has no "text" or "query" to embed'
		run "$@" "$t/case$i.jsonl"
		out=$(printf '%s' "$RUN_OUT" | grep -c .)
		# the first line (embed then says the documents keep their old chunks)
		is "$RUN_RC:$(printf '%s\n' "$RUN_ERR" | head -n 1):$out" "1:${what%% *}: '$t/case$i.jsonl': line 2: $msg:$lines" "$what: $label"
		i=$((i + 1))
	done
}

run "$B/kvblend-embed" --store "$t/st" "$t/chunks.jsonl"
is "$RUN_RC:$RUN_ERR" "0:" "embed takes what chunk writes (a file as operand)"
check "kvblend-embed" 0 "$B/kvblend-embed" --store "$t/st"
run "$B/kvblend-embed" --store "$t/st" -v "$t/case1.jsonl" - <"$t/chunks.jsonl"
like "$RUN_ERR" "*5 chunks read, 0 added, 4 already there, 1 bad;*" "embed: two operands, '-' is stdin; the good records still went in"
run "$B/kvblend-embed" --store "$t/st" - - <"$t/chunks.jsonl"
like "$RUN_RC:$RUN_ERR" "1:kvblend-embed: '-': stdin can be read only once*" "stdin is read once: a second '-' is an error"

# "-" is stdin once, in the library (kbio), for every tool that reads inputs
if [ -x "$B/kvblend-info" ] && [ -n "$model" ]; then
	run "$B/kvblend-info" - - <"$model"
	like "$RUN_RC:$RUN_ERR" "1:kvblend-info: '-': stdin can be read only once" "info - -: the second '-' is refused"
	like "$RUN_OUT" "<stdin>: GGUF v*" "... the first was read (a GGUF on a pipe, sniffed)"
	run "$B/kvblend-decode" -m "$model" -c - -f - -n 1 </dev/null
	like "$RUN_RC:$RUN_ERR" "1:kvblend-decode: '-': stdin can be read only once" "decode -c - -f -: refused"
else
	skip "kvblend-info or stories260K is absent" && skip "absent" && skip "absent"
fi

if [ -n "$model" ]; then
	"$B/kvblend-chunk" -m "$model" --max-tokens 0 "$t/doc.txt" >"$t/chunks.jsonl"
	run "$B/kvblend-prefill" -m "$model" --store "$t/st" --quiet "$t/chunks.jsonl"
	is "$RUN_RC:$RUN_ERR:$(printf '%s\n' "$RUN_OUT" | grep -c '"kv":')" "0::2" "prefill takes what chunk writes (a file as operand)"
	check "kvblend-prefill" 2 "$B/kvblend-prefill" -m "$model" --store "$t/st" --quiet
	run "$B/kvblend-embed" -m "$model" --vectors "$t/chunks.jsonl"
	is "$RUN_RC:$RUN_ERR:$(printf '%s\n' "$RUN_OUT" | grep -c '"embedding":')" "0::2" "embed --vectors takes what chunk writes"
	check "kvblend-embed --vectors" 2 "$B/kvblend-embed" -m "$model" --vectors
	# blend: the same rule, strict (a chunk left out would change the prompt)
	run "$B/kvblend-blend" -m "$model" --template plain --store "$t/st" -q " Who?" -o "$t/b.kvc" <"$t/chunks.jsonl"
	is "$RUN_RC:$RUN_ERR" "0:" "blend takes what chunk writes"
	i=1
	while [ $i -le $n ]; do
		label=$(cut -d'|' -f1 "$t/case$i.want") msg=$(cut -d'|' -f2- "$t/case$i.want")
		run "$B/kvblend-blend" -m "$model" --template plain --store "$t/st" -q " Who?" -o "$t/b.kvc" <"$t/case$i.jsonl"
		is "$RUN_RC:$RUN_ERR" "1:kvblend-blend: '<stdin>': line 2: $msg" "kvblend-blend: $label"
		i=$((i + 1))
	done
else
	skip_rest="stories260K is absent"
	for i in $(seq $((3 * n + 3))); do skip "$skip_rest"; done
fi

done_testing
