#!/bin/sh
# kvblend quantize: conversions that decode, synthetic models of real shapes, errors.
. "$(dirname "$0")/tap.sh"
need_bin quantize decode info
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

# K-quants: tiny-256 has rows of 256 (2 layers: layer 1 is the last eighth)
"$q" --synthetic tiny-256 --seed 5 "$TAP_TMP/k-f32.gguf" f32 2>/dev/null
ok $? "--synthetic tiny-256 writes an f32 model"
want=$("$d" -m "$TAP_TMP/k-f32.gguf" -p "ab cd ef" -n 8 --ids)
for t in q4_k q5_k q6_k q4_k_m q5_k_m; do
	"$q" "$TAP_TMP/k-f32.gguf" "$TAP_TMP/k-$t.gguf" $t 2>"$TAP_TMP/err"
	ok $? "tiny-256 to $t: $(cat "$TAP_TMP/err")"
	got=$("$d" -m "$TAP_TMP/k-$t.gguf" -p "ab cd ef" -n 8 --ids)
	[ "$(echo "$got" | wc -w)" -eq 8 ]; ok $? "$t decodes 8 tokens: $got (f32: $want)"
done
"$q" -v "$TAP_TMP/k-f32.gguf" "$TAP_TMP/k-m.gguf" q4_k_m 2>"$TAP_TMP/err"
types=$(sed -n 's/^kvblend-quantize: \([^ ]*\) .* -> \([^ ]*\).*/\1=\2/p' "$TAP_TMP/err" |
	grep -E '^(output|token_embd|blk\.[01]\.(attn_v|ffn_down|attn_q))\.weight=' | paste -sd ' ')
is "$types" "token_embd.weight=q4_K output.weight=q6_K blk.0.attn_q.weight=q4_K blk.0.attn_v.weight=q4_K blk.0.ffn_down.weight=q4_K blk.1.attn_q.weight=q4_K blk.1.attn_v.weight=q6_K blk.1.ffn_down.weight=q6_K" \
	"q4_k_m: q6_K for the output, attn_v and ffn_down of the last layer"
"$q" --synthetic tiny-256 --seed 5 "$TAP_TMP/k-syn.gguf" q4_k_m 2>/dev/null
info() { "$KVBLEND_BIN/kvblend" info "$1" | grep -E '^  (tensors|model) ' | paste -sd ' '; }
is "$(info "$TAP_TMP/k-syn.gguf")" "$(info "$TAP_TMP/k-m.gguf")" \
	"--synthetic q4_k_m gives the tensors (types, bytes, fingerprint) of the f32 model converted"
got=$("$d" -m "$TAP_TMP/k-syn.gguf" -p "ab cd ef" -n 8 --ids)
[ "$(echo "$got" | wc -w)" -eq 8 ]; ok $? "--synthetic tiny-256 q4_k_m decodes: $got"
# rows of 64 (tiny-qwen2): the K-quant falls back to q8_0
"$q" -v "$TAP_TMP/tq.gguf" "$TAP_TMP/tq-k.gguf" q4_k 2>"$TAP_TMP/err"
grep -q "attn_q.weight \[64, 64\] q8_0 -> q8_0 (rows are not whole q4_K blocks)" "$TAP_TMP/err"
ok $? "rows of 64 fall back to q8_0 for q4_k"
got=$("$d" -m "$TAP_TMP/tq-k.gguf" -p "ab cd ef" -n 6 --ids)
[ "$got" = "$out" ]; ok $? "...and decode as the q8_0 model did ($got)"
"$q" --list-types | grep -qx q4_k_m; ok $? "--list-types lists q4_k_m"

# issue 10 item 1: the weights are part of the fingerprint. Two seeds of one
# shape: different fingerprints; a cache of one is refused by the other, and
# the store does not take one's chunk as the other's.
"$q" --synthetic tiny-qwen2 --seed 4 "$TAP_TMP/tq4.gguf" q8_0 2>/dev/null
fp() { "$KVBLEND_BIN/kvblend-info" -j "$1" | sed -n 's/.*"model_fingerprint": *"\([0-9a-f]*\)".*/\1/p'; }
fp3=$(fp "$TAP_TMP/tq.gguf") fp4=$(fp "$TAP_TMP/tq4.gguf")
[ ${#fp3} -eq 64 ] && [ "$fp3" != "$fp4" ]; ok $? "--seed 3 and --seed 4: different model fingerprints ($fp3, $fp4)"
is "$(fp "$TAP_TMP/tq2.gguf")" "$fp3" "the same seed: the same fingerprint"
"$KVBLEND_BIN/kvblend-prefill" -m "$TAP_TMP/tq.gguf" -p "ab cd ef" -o "$TAP_TMP/tq.kvc" 2>/dev/null
"$d" -m "$TAP_TMP/tq4.gguf" -c "$TAP_TMP/tq.kvc" -n 2 >/dev/null 2>"$TAP_TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "another model" "$TAP_TMP/err"
ok $? "decode refuses a cache of the other seed's model: $(cat "$TAP_TMP/err")"
printf '{"id":"a","doc":"d","seq":0,"text":"ab cd ef gh"}\n' >"$TAP_TMP/c.jsonl"
"$KVBLEND_BIN/kvblend-prefill" --quiet -m "$TAP_TMP/tq.gguf" --store "$TAP_TMP/st" <"$TAP_TMP/c.jsonl" >"$TAP_TMP/k3" 2>/dev/null
"$KVBLEND_BIN/kvblend-prefill" --quiet -m "$TAP_TMP/tq4.gguf" --store "$TAP_TMP/st" <"$TAP_TMP/c.jsonl" >"$TAP_TMP/k4" 2>/dev/null
k3=$(sed -n 's/.*"kv": *"\([0-9a-f]*\)".*/\1/p' "$TAP_TMP/k3") k4=$(sed -n 's/.*"kv": *"\([0-9a-f]*\)".*/\1/p' "$TAP_TMP/k4")
[ -n "$k3" ] && [ -n "$k4" ] && [ "$k3" != "$k4" ]; ok $? "prefill stores the chunk once per model: two keys ($k3, $k4)"

# the 2026 families: each tiny shape writes, loads and decodes; --untied varies greedy output
for shape in tiny-qwen3 tiny-llama3 tiny-gemma2 tiny-gemma3 tiny-phi3; do
	"$q" --synthetic $shape "$TAP_TMP/$shape.gguf" q8_0 2>/dev/null
	got=$("$d" -m "$TAP_TMP/$shape.gguf" --template plain -p "one two three" -n 6 --ids 2>"$TAP_TMP/err")
	[ "$(echo "$got" | wc -w)" -eq 6 ]; ok $? "--synthetic $shape decodes: $got $(cat "$TAP_TMP/err")"
done
"$q" --synthetic tiny-qwen3 --untied "$TAP_TMP/tu.gguf" f32 2>/dev/null
got=$("$d" -m "$TAP_TMP/tu.gguf" --template plain -p "one two three" -n 8 --ids)
[ "$(echo "$got" | tr ' ' '\n' | sort -u | wc -l)" -gt 1 ]; ok $? "--untied: greedy ids vary ($got)"
"$q" --synthetic tiny-gemma2 --untied "$TAP_TMP/x.gguf" f32 2>"$TAP_TMP/err"; [ $? -eq 1 ]
ok $? "gemma2 refuses --untied: $(cat "$TAP_TMP/err")"
"$q" --untied "$TAP_TMP/tu.gguf" "$TAP_TMP/x.gguf" f32 2>/dev/null; [ $? -eq 2 ]
ok $? "--untied without --synthetic is a usage error"
vocab=$(tap_shared tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf)
if [ -n "$vocab" ]; then
	"$q" --synthetic tiny-phi3 --vocab "$vocab" "$TAP_TMP/pv.gguf" f32 2>/dev/null
	ok $? "--vocab takes a GGUF vocabulary (llama.cpp's Phi-3 one)"
	"$KVBLEND_BIN/kvblend-info" "$TAP_TMP/pv.gguf" >"$TAP_TMP/info" 2>&1
	grep -q "32064 tokens" "$TAP_TMP/info"; ok $? "the model has Phi-3's 32064 tokens"
	want=$(sed -n 1p "$(dirname "$vocab")/ggml-vocab-phi-3.gguf.inp")
	got=$(printf '%s' "$want" | "$KVBLEND_BIN/kvblend-tokenize" -m "$TAP_TMP/pv.gguf" --no-bos 2>/dev/null)
	ref=$(sed -n 1p "$(dirname "$vocab")/ggml-vocab-phi-3.gguf.out" | sed 's/^ *//')
	[ -n "$got" ] && [ "$got" = "$ref" ]; ok $? "it tokenizes as llama.cpp does with Phi-3's vocabulary: $got"
else
	for i in 1 2 3; do skip "the Phi-3 vocabulary is absent"; done
fi
printf 'not a vocabulary' >"$TAP_TMP/bad.gguf"
"$q" --synthetic tiny-phi3 --vocab "$TAP_TMP/bad.gguf" "$TAP_TMP/x.gguf" f32 2>"$TAP_TMP/err"; [ $? -eq 1 ]
ok $? "a bad --vocab file is an error: $(cat "$TAP_TMP/err")"

model=$(tap_shared models/stories260Ktok512.gguf)
if [ -n "$model" ]; then
	want=$("$d" -m "$model" --template plain -p "Joe loves writing stories" -n 16 --ids)
	for t in f16 bf16 q8_0 q4_0; do
		"$q" "$model" "$TAP_TMP/s-$t.gguf" $t 2>"$TAP_TMP/err"
		ok $? "stories260K to $t: $(cat "$TAP_TMP/err")"
		got=$("$d" -m "$TAP_TMP/s-$t.gguf" --template plain -p "Joe loves writing stories" -n 16 --ids)
		[ "$(echo "$got" | wc -w)" -eq 16 ]; ok $? "$t decodes 16 tokens"
		if [ $t = f16 ]; then # quantized types may drift from f32 on a 64-wide model
			[ "$got" = "$want" ]; ok $? "$t gives the f32 model's greedy tokens"
		fi
	done
else
	skip "stories260K is absent"
fi
done_testing
