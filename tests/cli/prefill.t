#!/bin/sh
# kvblend prefill → decode: a saved cache continues exactly as decoding the
# text does; pipes and files; corrupt and foreign caches are clear errors.
. "$(dirname "$0")/tap.sh"
need_bin prefill decode quantize
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
P=$KVBLEND_BIN/kvblend-prefill D=$KVBLEND_BIN/kvblend-decode
t=$TAP_TMP
text="Joe loves writing stories"
want=$("$D" -m "$model" -p "$text" -n 32 --ids)

for dt in f32 f16 bf16 q8_0; do
	"$P" -m "$model" -p "$text" --dtype $dt -o "$t/joe-$dt.kvc"
	ok $? "prefill --dtype $dt writes a cache"
	got=$("$D" -m "$model" -c "$t/joe-$dt.kvc" -n 32 --ids)
	if [ $dt = f32 ] || [ $dt = f16 ]; then
		[ "$got" = "$want" ]; ok $? "$dt cache: decode -c gives exactly decode's 32 tokens"
	else
		[ "$(echo "$got" | wc -w)" -eq 32 ]; ok $? "$dt cache: decode -c generates 32 tokens"
	fi
done
got=$("$P" -m "$model" -p "$text" | "$D" -m "$model" -n 32 --ids)
[ "$got" = "$want" ]; ok $? "prefill | decode: a cache on stdin"
got=$("$P" -m "$model" -p "$text" --no-logits --dtype f32 | "$D" -m "$model" -n 32 --ids)
[ "$got" = "$want" ]; ok $? "a cache without logits: the last token is run again"
got=$("$P" -m "$model" -p "Joe loves" --dtype f32 | "$D" -m "$model" -c - -p "writing stories" -n 32 --ids)
[ "$got" = "$("$D" -m "$model" -p "Joe loves writing stories" -n 32 --ids)" ]
ok $? "a cache on stdin (-c -) followed by more text continues it"

"$P" -m "$model" -p "$text" -o - >"$t/file.kvc"
"$P" -m "$model" -p "$text" -o - | cat >"$t/pipe.kvc"
cmp -s "$t/file.kvc" "$t/pipe.kvc"; ok $? "a cache written to a pipe equals the file form byte for byte"
"$P" -m "$model" -p "$text" 2>"$t/err" | cat >/dev/null
"$P" -m "$model" -p "" -o "$t/x.kvc" 2>"$t/err"; [ $? -eq 1 ] && grep -q "text is empty" "$t/err"
ok $? "empty text is an error"
"$P" -m "$model" -o "$t/x.kvc" 2>/dev/null; [ $? -eq 2 ]; ok $? "no text is a usage error"

# corrupt and foreign caches: each its own message, exit 1, one line
bad() { # name expected-substring file [model]
	"$D" -m "${4:-$model}" -c "$3" -n 4 >/dev/null 2>"$t/e"; rc=$?
	[ $rc -eq 1 ] && [ "$(wc -l <"$t/e")" -eq 1 ] && grep -q "$2" "$t/e"
	ok $? "$1: $(cat "$t/e")"
}
f=$t/joe-f32.kvc
size=$(wc -c <"$f")
flip() { # file offset → copy with one bit flipped
	perl -e 'open F, "<:raw", $ARGV[0] or die; local $/; $d = <F>; substr($d, $ARGV[1], 1) ^= "\x01"; print $d' "$1" "$2"
}
flip "$f" 40 >"$t/hdr.kvc";            bad "a bit flipped in the header" "header checksum" "$t/hdr.kvc"
flip "$f" $((size - 200)) >"$t/lay.kvc"; bad "a bit flipped in a layer payload" "layer 4: payload checksum" "$t/lay.kvc"
for cut in 10 100 3000 $((size - 70)) $((size - 1)); do
	head -c $cut "$f" >"$t/cut.kvc"; bad "truncated at $cut of $size bytes" "truncated" "$t/cut.kvc"
done
perl -e 'open F, "<:raw", $ARGV[0] or die; local $/; $d = <F>; substr($d, 4, 2) = pack("v", 9); print $d' "$f" >"$t/major.kvc"
bad "another major version" "major version 9" "$t/major.kvc"
printf 'this is not a cache at all, just some text' >"$t/garbage.kvc"
bad "garbage" "bad magic" "$t/garbage.kvc"
"$KVBLEND_BIN/kvblend-quantize" "$model" "$t/q8.gguf" q8_0 2>/dev/null
bad "a cache used with another model" "another model" "$f" "$t/q8.gguf"
done_testing
