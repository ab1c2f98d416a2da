#!/bin/sh
# kvblend quantize: conversions that decode, synthetic models of real shapes, errors.
. "$(dirname "$0")/tap.sh"
need_bin quantize decode
q=$KVBLEND_BIN/kvblend-quantize
d=$KVBLEND_BIN/kvblend-decode

"$q" --synthetic tiny-qwen2 --seed 3 "$TAP_TMP/tq.gguf" q8_0 2>"$TAP_TMP/err"
ok $? "--synthetic tiny-qwen2 writes a model"
out=$("$d" -m "$TAP_TMP/tq.gguf" -p "ab cd ef" -n 6 --ids)
[ "$(echo "$out" | wc -w)" -eq 6 ]; ok $? "the synthetic qwen2 model decodes: $out"
"$q" --synthetic tiny-qwen2 --seed 3 "$TAP_TMP/tq2.gguf" q8_0 2>/dev/null
cmp -s "$TAP_TMP/tq.gguf" "$TAP_TMP/tq2.gguf"; ok $? "the same seed writes the same file"
"$q" --list-shapes | grep -qx smollm2-135m; ok $? "--list-shapes lists smollm2-135m"
"$q" --synthetic nosuch "$TAP_TMP/x.gguf" f32 2>/dev/null; [ $? -eq 2 ]; ok $? "an unknown shape is a usage error"
"$q" "$TAP_TMP/tq.gguf" "$TAP_TMP/x.gguf" q9_9 2>/dev/null; [ $? -eq 2 ]; ok $? "an unknown type is a usage error"
"$q" "$TAP_TMP/none.gguf" "$TAP_TMP/x.gguf" f16 2>"$TAP_TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "^kvblend-quantize: .*none.gguf" "$TAP_TMP/err"; ok $? "a missing input exits 1 naming it"
[ ! -e "$TAP_TMP/x.gguf" ]; ok $? "nothing is left at OUT after a failure"

model=$(tap_shared models/stories260Ktok512.gguf)
if [ -n "$model" ]; then
	want=$("$d" -m "$model" -p "Joe loves writing stories" -n 16 --ids)
	for t in f16 bf16 q8_0 q4_0; do
		"$q" "$model" "$TAP_TMP/s-$t.gguf" $t 2>"$TAP_TMP/err"
		ok $? "stories260K to $t: $(cat "$TAP_TMP/err")"
		got=$("$d" -m "$TAP_TMP/s-$t.gguf" -p "Joe loves writing stories" -n 16 --ids)
		[ "$(echo "$got" | wc -w)" -eq 16 ]; ok $? "$t decodes 16 tokens"
		if [ $t = f16 ]; then # quantized types may drift from f32 on a 64-wide model
			[ "$got" = "$want" ]; ok $? "$t gives the f32 model's greedy tokens"
		fi
	done
else
	skip "stories260K is absent"
fi
done_testing
