#!/bin/sh
# The whole pipeline of kvblend(7): chunk → embed → prefill → embed --query →
# blend → decode, end to end on stories260K; blend at ratio 1.0 decodes
# exactly as a full prefill of the same retrieved chunks.
. "$(dirname "$0")/tap.sh"
need_bin chunk embed prefill blend decode
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
B=$KVBLEND_BIN t=$TAP_TMP st=$t/st
cat >"$t/doc.txt" <<'DOC'
Lily had a red ball. She liked to play with it in the park every day.

Tom was her friend. He had a big dog named Max who loved to run.

One day, the ball rolled into the pond and the dog jumped in after it.

The sun was hot, so Lily and Tom sat under a tree and ate cake.

At night, the moon was big and the stars were bright over the town.
DOC
"$B/kvblend-chunk" -m "$model" --max-tokens 20 "$t/doc.txt" >"$t/chunks.jsonl"
n=$(wc -l <"$t/chunks.jsonl")
[ "$n" -ge 4 ]; ok $? "chunk: $n chunks"
"$B/kvblend-embed" --store "$st" <"$t/chunks.jsonl"; ok $? "embed stores them"
"$B/kvblend-prefill" -m "$model" --store "$st" <"$t/chunks.jsonl" >/dev/null; ok $? "prefill caches them in the same store"
[ -f "$st/chunks.db" ] && [ -f "$st/index.db" ]; ok $? "one store: chunks.db beside index.db"

q="Where did the dog jump?"
"$B/kvblend-embed" --store "$st" --query "$q" -k 3 --order reverse >"$t/hits.jsonl"; ok $? "embed --query -k 3"
[ "$(wc -l <"$t/hits.jsonl")" -eq 3 ]; ok $? "three chunks retrieved"
tail -1 "$t/hits.jsonl" | grep -q 'pond'; ok $? "the best one (last, nearest the question) is the pond"

blend() { "$B/kvblend-blend" -m "$model" --store "$st" --prefix "Once upon a time," -q " $q" "$@" <"$t/hits.jsonl"; }
blend -v -o /dev/null 2>"$t/v"; diag "$(cat "$t/v")"
grep -q " 3 caches from the store, 1 computed" "$t/v"; ok $? "blend finds the three chunks' caches in the store (the prefix is computed)"
full=$(blend --mode full | "$B/kvblend-decode" -m "$model" -n 16 --ids)
one=$(blend --ratio 1 --dtype f32 | "$B/kvblend-decode" -m "$model" -n 16 --ids)
[ "$(echo "$full" | wc -w)" -eq 16 ]; ok $? "full prefill | decode: $full"
is "$one" "$full" "blend --ratio 1 | decode gives the same tokens as a full prefill"
out=$("$B/kvblend-embed" --store "$st" --query "$q" -k 3 --order reverse |
	"$B/kvblend-blend" -m "$model" --store "$st" -q " $q" | "$B/kvblend-decode" -m "$model" -n 8)
[ -n "$out" ]; ok $? "one pipe, embed | blend | decode: $out"
done_testing
