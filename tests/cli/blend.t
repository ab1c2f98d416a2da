#!/bin/sh
# kvblend blend: chunk → prefill → blend → decode as a pipeline; ratio 1 is a
# full prefill; the baselines; the store is read through; errors.
. "$(dirname "$0")/tap.sh"
need_bin blend prefill decode chunk
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
B=$KVBLEND_BIN t=$TAP_TMP
export KVBLEND_STORE=$t/store
cat >"$t/doc.txt" <<'DOC'
Lily had a red ball. She liked to play with it in the park every day.

Tom was her friend. He had a big dog named Max who loved to run.

One day, the ball rolled into the pond and the dog jumped in after it.
DOC
"$B/kvblend-chunk" -m "$model" --max-tokens 24 "$t/doc.txt" >"$t/chunks.jsonl"
[ "$(wc -l <"$t/chunks.jsonl")" -ge 3 ]; ok $? "chunk makes several chunks"
"$B/kvblend-prefill" -m "$model" -q <"$t/chunks.jsonl" >"$t/kv.jsonl"
ok $? "prefill stores every chunk"
grep -c '"kv":"[0-9a-f]\{64\}"' "$t/kv.jsonl" | grep -qx "$(wc -l <"$t/chunks.jsonl")"; ok $? "each record gets its kv key"

q=" Then Lily said"
blend() { "$B/kvblend-blend" -m "$model" --prefix "Once upon a time," -q "$q" "$@" <"$t/chunks.jsonl"; }
out=$(blend | "$B/kvblend-decode" -m "$model" -n 16 --ids)
[ "$(echo "$out" | wc -w)" -eq 16 ]; ok $? "blend | decode generates: $out"
full=$(blend --mode full | "$B/kvblend-decode" -m "$model" -n 16 --ids)
one=$(blend --ratio 1 --dtype f32 | "$B/kvblend-decode" -m "$model" -n 16 --ids)
[ "$one" = "$full" ]; ok $? "ratio 1.0 decodes exactly as a full prefill"

blend --ratio 1 --verify -o /dev/null 2>"$t/v"
grep -q "first token agrees with full prefill.*KL 0.0000" "$t/v"; ok $? "--verify at ratio 1: $(cat "$t/v")"
for mode in reuse prefix epic blend; do
	blend --mode $mode --verify -o "$t/$mode.kvc" 2>"$t/v"
	ok $? "--mode $mode: $(sed 's/^kvblend-blend: verify: //' "$t/v")"
done
"$B/kvblend-blend" -m "$model" -q "$q" --verify -o /dev/null "$t/reuse.kvc" 2>/dev/null
ok $? "a .kvc operand is a chunk too"

blend -v -o /dev/null 2>"$t/v"
grep -q "0 computed" "$t/v"; ok $? "every chunk came from the store: $(cat "$t/v")"
blend --no-store -v -o /dev/null 2>"$t/v"
grep -q "0 caches stored" "$t/v"; ok $? "--no-store computes every chunk"

"$B/kvblend-blend" -m "$model" <"$t/chunks.jsonl" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "no query is a usage error"
blend --mode nosuch >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "an unknown mode is a usage error"
echo '{"id": "x"}' | "$B/kvblend-blend" -m "$model" -q "$q" -o /dev/null 2>"$t/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: the record has no "text"' "$t/e"; ok $? "a record without text: $(cat "$t/e")"
echo 'not json' | "$B/kvblend-blend" -m "$model" -q "$q" -o /dev/null 2>"$t/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: not JSON' "$t/e"; ok $? "a line that is not JSON: $(cat "$t/e")"
done_testing
