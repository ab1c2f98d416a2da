#!/bin/sh
# similar.t — reuse across edits: prefill --reuse-similar builds an edited
# chunk's cache from its older version (reporting the share reused), at ratio
# 1 one that decodes as a fresh prefill does; an unrelated document has no
# candidate and is computed; blend --reuse-similar does the same for a chunk
# that misses; the options' usage errors. The reader model, no ../shared.
. "$(dirname "$0")/tap.sh"
need_bin chunk prefill blend decode
model=$KVBLEND_ROOT/tests/models/reader.gguf
[ -r "$model" ] || skip_all "the reader model is absent"
B=$KVBLEND_BIN t=$TAP_TMP
json_field() { perl -MJSON::PP -e 'my $j = JSON::PP->new->decode(<STDIN>); print $j->{$ARGV[0]}' "$1"; }
key_of() { grep "\"seq\":$1," "$2" | sed 's/.*"kv":"\([0-9a-f]*\)".*/\1/'; }
obj() { echo "$1/objects/$(echo "$2" | cut -c1-2)/$(echo "$2" | cut -c3-).kvc"; }

# a document of a few chunks; version 2 replaces one word in its third paragraph
for p in one two three four; do
	echo "Paragraph $p. The reader model answers questions about short passages of $p kind, and its caches are kept in a store so that each chunk of part $p is computed once and reused when a later prompt holds it again."
	echo
done >"$t/doc.txt"
"$B/kvblend-chunk" -m "$model" --by paragraph --max-tokens 128 "$t/doc.txt" >"$t/v1.jsonl"
"$B/kvblend-prefill" -m "$model" --store "$t/st" "$t/v1.jsonl" >"$t/v1.out"
ok $? "version 1 is stored"
perl -0pi -e 's/(Paragraph three\. The reader model) answers/$1 replies to/' "$t/doc.txt"
"$B/kvblend-chunk" -m "$model" --by paragraph --max-tokens 128 "$t/doc.txt" >"$t/v2.jsonl"
[ "$(wc -l <"$t/v2.jsonl")" -eq "$(wc -l <"$t/v1.jsonl")" ] && ! cmp -s "$t/v1.jsonl" "$t/v2.jsonl"
ok $? "version 2 has the same chunks, one of them edited"

cp -R "$t/st" "$t/st1"
"$B/kvblend-prefill" -m "$model" --store "$t/st" --reuse-similar -v "$t/v2.jsonl" >"$t/v2.out" 2>"$t/err"
ok $? "prefill --reuse-similar stores version 2"
grep -q "line .*: built from .* (similarity .*, by document): [0-9]* of [0-9]* tokens reused" "$t/err" &&
	grep -q "1 of 1 computed built from similar chunks: [1-9][0-9]* of [0-9]* tokens reused" "$t/err"
ok $? "the edited chunk is built from its older version, the share reused said: $(grep -c built "$t/err") lines"
"$B/kvblend-prefill" -m "$model" --store "$t/st1" --reuse-similar -j "$t/v2.jsonl" >/dev/null 2>"$t/j"
[ "$(json_field similar <"$t/j")" = 1 ] && [ "$(json_field tokens_reused <"$t/j")" -gt 0 ] &&
	[ "$(json_field tokens_reused <"$t/j")" -lt "$(json_field tokens_similar <"$t/j")" ]
ok $? "-j: similar 1, $(json_field tokens_reused <"$t/j") of $(json_field tokens_similar <"$t/j") tokens reused"

# at ratio 1 the cache is a fresh prefill's: it decodes the same tokens
rm -rf "$t/st1" && cp -R "$t/st" "$t/st1" && rm -rf "$t/st"
"$B/kvblend-prefill" -m "$model" --store "$t/st" "$t/v1.jsonl" >/dev/null
"$B/kvblend-prefill" -m "$model" --store "$t/st" --reuse-similar --ratio 1 --dtype f32 "$t/v2.jsonl" >/dev/null 2>"$t/err"
"$B/kvblend-prefill" -m "$model" --store "$t/fresh" --dtype f32 "$t/v2.jsonl" >/dev/null
k=$(key_of 2 "$t/v2.out")
a=$("$B/kvblend-decode" -m "$model" -c "$(obj "$t/st" "$k")" -n 16 --ids)
b=$("$B/kvblend-decode" -m "$model" -c "$(obj "$t/fresh" "$k")" -n 16 --ids)
[ -n "$a" ] && [ "$a" = "$b" ] && grep -q "1 of 1 computed built from similar" "$t/err"
ok $? "--ratio 1: the rebuilt cache decodes as a fresh prefill's ($a)"

# an unrelated document: no candidate, computed as usual
printf 'Completely different words about sailing ships, harbours, tides and the weather at sea tonight.\n' >"$t/other.txt"
"$B/kvblend-chunk" -m "$model" "$t/other.txt" |
	"$B/kvblend-prefill" -m "$model" --store "$t/st" --reuse-similar -j >/dev/null 2>"$t/j"
[ "$(json_field computed <"$t/j")" = 1 ] && [ "$(json_field similar <"$t/j")" = 0 ]
ok $? "an unrelated chunk has no candidate: computed from scratch"

# blend: the edited chunk misses and is built from the stored version 1, found
# by its document and number, or (records without a doc) by its sketch
"$B/kvblend-prefill" -m "$model" --store "$t/b" "$t/v1.jsonl" >/dev/null
cp -R "$t/b" "$t/b2"
"$B/kvblend-blend" -m "$model" --store "$t/b" -q "What does the reader model do?" --reuse-similar -v \
	-o "$t/p.kvc" <"$t/v2.jsonl" 2>"$t/err"
ok $? "blend --reuse-similar"
grep -q "chunk 3: built from .* (similarity .*, by document): [0-9]* of [0-9]* tokens reused" "$t/err" &&
	grep -q "1 of [0-9]* chunk caches computed built from similar chunks" "$t/err"
ok $? "blend builds the missing chunk from its older version: $(grep 'built from similar' "$t/err")"
sed 's/"doc":"[^"]*",//' "$t/v2.jsonl" |
	"$B/kvblend-blend" -m "$model" --store "$t/b2" -q "What does the reader model do?" --reuse-similar -v \
	-o "$t/p.kvc" 2>"$t/err"
grep -q "chunk 3: built from .* (similarity .*, by sketch)" "$t/err"
ok $? "without a document, by its sketch"

# usage
"$B/kvblend-prefill" -m "$model" --ratio 0.5 "$t/v1.jsonl" >/dev/null 2>&1; [ $? -eq 2 ]
ok $? "prefill --ratio without --reuse-similar is a usage error"
"$B/kvblend-prefill" -m "$model" -p "text" --reuse-similar -o "$t/x.kvc" 2>/dev/null; [ $? -eq 2 ]
ok $? "prefill -p --reuse-similar is a usage error"
"$B/kvblend-prefill" -m "$model" --store "$t/st" --reuse-similar --check-layer 99 "$t/v1.jsonl" >/dev/null 2>&1
[ $? -eq 2 ]; ok $? "a check layer past the model's layers is a usage error"
"$B/kvblend-blend" -m "$model" -q x --min-similarity 0.3 -o "$t/x.kvc" </dev/null 2>/dev/null; [ $? -eq 2 ]
ok $? "blend --min-similarity without --reuse-similar is a usage error"
"$B/kvblend-blend" -m "$model" -q x --reuse-similar --no-store -o "$t/x.kvc" </dev/null 2>/dev/null; [ $? -eq 2 ]
ok $? "blend --reuse-similar --no-store is a usage error"
done_testing
