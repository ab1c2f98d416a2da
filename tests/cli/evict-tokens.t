#!/bin/sh
# kvblend evict --tokens: one cache in, a smaller one out, on stories260K.
# streamingllm keeps exactly its sinks and window; every policy keeps the last
# token and makes a cache that decodes (sparse when the kv heads keep their own
# tokens, with per-layer rows in kvblend info); a budget of 100% is the
# identity; files shrink with the budget; pipes work; decode --kv-budget keeps
# generating within a budget with each online policy; bad input gets one line
# and exit 1 or 2; the store and blend refuse evicted caches.
. "$(dirname "$0")/tap.sh"
need_bin kvblend
need_shared models/stories260Ktok512.gguf
K=$KVBLEND_BIN/kvblend
M=$SHARED/models/stories260Ktok512.gguf
t=$TAP_TMP
text="Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends. One day she saw a big red ball under a tree, and she ran to get it"

"$K" prefill -m "$M" -p "$text" -o "$t/full.kvc"
ok $? "a cache to evict from"
n=$("$K" info --json "$t/full.kvc" | sed 's/.*"n_tokens":\([0-9]*\).*/\1/')
[ "$n" -gt 40 ]; ok $? "it holds $n tokens"

# ---- streamingllm: the sinks and the most recent tokens, exactly ----
run "$K" evict --tokens streamingllm --budget 20 --sinks 4 "$t/full.kvc" -o "$t/s.kvc"
ok $RUN_RC "streamingllm --budget 20 (no model needed)"
want=$(seq 0 3 | tr '\n' ,; seq $((n - 16)) $((n - 1)) | tr '\n' , | sed 's/,$//')
like "$("$K" info --json "$t/s.kvc")" "*\"n_tokens\":20,*\"pos\":\[$want\]*" "it keeps positions 0-3 and $((n - 16))-$((n - 1))"
run "$K" info "$t/s.kvc"
case $RUN_OUT in *token-evicted*) r=1 ;; *) r=0 ;; esac
ok $r "the same tokens in every head make an ordinary (dense) cache"
run "$K" decode -m "$M" -n 8 -c "$t/s.kvc"
[ $RUN_RC -eq 0 ] && [ -n "$RUN_OUT" ]; ok $? "it decodes: '$RUN_OUT'"

# ---- every policy ----
for p in h2o snapkv pyramidkv tova cake; do
	run "$K" evict --tokens "$p" --budget 50% --window 8 -m "$M" -o "$t/$p.kvc" "$t/full.kvc"
	ok $RUN_RC "$p --budget 50%: $RUN_ERR"
	"$K" info --json "$t/$p.kvc" >"$t/$p.json"
	# the last token's position is kept by every head of every layer
	last=$((n - 1))
	heads=$(grep -o '\[[0-9,]*\]' "$t/$p.json" | tail -n +3 | grep -c ",$last\]")
	all=$(grep -o '\[[0-9,]*\]' "$t/$p.json" | tail -n +3 | wc -l)
	if grep -q '"evicted"' "$t/$p.json"; then
		[ "$heads" -eq "$all" ] && [ "$all" -eq 20 ]; ok $? "$p: all 20 heads (5 layers x 4) keep the last token"
	else
		like "$(cat "$t/$p.json")" "*\"pos\":\[*,$last\]*" "$p: the last token is kept"
	fi
	run "$K" decode -m "$M" -n 8 -c "$t/$p.kvc"
	[ $RUN_RC -eq 0 ] && [ -n "$RUN_OUT" ]; ok $? "$p: decodes: '$RUN_OUT'"
done
run "$K" info "$t/snapkv.kvc"
like "$RUN_OUT" "*token-evicted*layer 4 *rows*" "info: a sparse cache shows its rows per layer"
run "$K" info "$t/pyramidkv.kvc"
r0=$(printf '%s\n' "$RUN_OUT" | sed -n 's/^ *layer 0 *\([0-9]*\) rows.*/\1/p')
r4=$(printf '%s\n' "$RUN_OUT" | sed -n 's/^ *layer 4 *\([0-9]*\) rows.*/\1/p')
[ -n "$r0" ] && [ "$r0" -gt "$r4" ]; ok $? "pyramidkv: the first layer keeps more rows than the last ($r0 > $r4)"

# ---- sizes shrink with the budget; 100% is the identity ----
"$K" evict --tokens snapkv --budget 25% --window 4 -m "$M" "$t/full.kvc" >"$t/q.kvc"
s25=$(wc -c <"$t/q.kvc") s50=$(wc -c <"$t/snapkv.kvc") s100=$(wc -c <"$t/full.kvc")
[ "$s25" -lt "$s50" ] && [ "$s50" -lt "$s100" ]; ok $? "bytes: 25% $s25 < 50% $s50 < whole $s100"
"$K" evict --tokens snapkv --budget 100% -m "$M" "$t/full.kvc" -o "$t/same.kvc"
a=$("$K" decode -m "$M" -n 24 --ids -c "$t/full.kvc")
b=$("$K" decode -m "$M" -n 24 --ids -c "$t/same.kvc")
[ -n "$a" ] && [ "$a" = "$b" ]; ok $? "a budget of 100%: the same 24 tokens decoded"

# ---- through pipes ----
out=$("$K" prefill -m "$M" -p "$text" -o - | "$K" evict --tokens snapkv --budget 30% -m "$M" | "$K" decode -m "$M" -n 6)
[ -n "$out" ]; ok $? "prefill | evict | decode: '$out'"

# ---- bad input ----
run "$K" evict --tokens snapkv --budget 0 -m "$M" "$t/full.kvc" -o "$t/x.kvc"
[ $RUN_RC -eq 2 ]; ok $? "--budget 0: exit 2"
like "$RUN_ERR" "*--budget*" "and names --budget"
run "$K" evict --tokens snapkv --budget 100000 -m "$M" "$t/full.kvc" -o "$t/x.kvc"
[ $RUN_RC -eq 2 ]; ok $? "a budget over the cache: exit 2"
like "$RUN_ERR" "*more than the cache's $n*" "and says the cache's size"
run "$K" evict --tokens snapkv --budget 10 "$t/full.kvc" -o "$t/x.kvc"
[ $RUN_RC -eq 2 ]; ok $? "snapkv without -m: exit 2"
like "$RUN_ERR" "*needs the model's attention*-m MODEL*" "and says to give -m"
"$K" quantize --synthetic tiny-llama "$t/other.gguf" f32 2>/dev/null
run "$K" evict --tokens snapkv --budget 10 -m "$t/other.gguf" "$t/full.kvc" -o "$t/x.kvc"
[ $RUN_RC -eq 1 ]; ok $? "a cache of another model: exit 1"
like "$RUN_ERR" "*another model*" "and says so"
run "$K" evict --tokens snapkv --budget 10 -m "$M" "$t/snapkv.kvc" -o "$t/x.kvc"
[ $RUN_RC -eq 1 ]; ok $? "an evicted cache again: exit 1"
like "$RUN_ERR" "*token-evicted already*" "and says so"
printf 'not a cache\n' >"$t/text.txt"
run "$K" evict --tokens streamingllm --budget 10 "$t/text.txt" -o "$t/x.kvc"
[ $RUN_RC -eq 1 ]; ok $? "a text file: exit 1"
like "$RUN_ERR" "*not a KV cache*" "and says so"
run "$K" evict --tokens snapkv --budget 10 --pool 4 -m "$M" "$t/full.kvc"
[ $RUN_RC -eq 2 ]; ok $? "--pool 4 (even): exit 2"
run "$K" evict --tokens streamingllm --budget 10 --store "$t/st" "$t/full.kvc"
[ $RUN_RC -eq 2 ]; ok $? "--tokens with a store option: exit 2"
[ ! -e "$t/x.kvc" ]; ok $? "no output was left by any failure"

# ---- decode --kv-budget: eviction while generating ----
a=$("$K" decode -m "$M" -p "$text" -n 40 --ids)
b=$("$K" decode -m "$M" -p "$text" -n 40 --ids --kv-budget 1000)
[ -n "$a" ] && [ "$a" = "$b" ]; ok $? "--kv-budget larger than everything: the same tokens"
for e in streamingllm h2o tova lazyeviction; do
	run "$K" decode -m "$M" -p "$text" -n 200 --ids --kv-budget 24 --evict "$e"
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -w)" -gt 60 ]; ok $? "decode --kv-budget 24 --evict $e: goes on past the model's context ($(printf '%s\n' "$RUN_OUT" | wc -w) tokens)"
done
run "$K" decode -m "$M" -c "$t/full.kvc" -n 20 --kv-budget 16 --evict tova
[ $RUN_RC -eq 0 ] && [ -n "$RUN_OUT" ]; ok $? "a cached prompt longer than the budget is cut to it first"
run "$K" decode -m "$M" -p "$text" -n 5 --evict h2o
[ $RUN_RC -eq 2 ]; ok $? "--evict without --kv-budget: exit 2"
run "$K" decode -m "$M" -p "$text" -n 5 --kv-budget 1
[ $RUN_RC -eq 2 ]; ok $? "--kv-budget 1: exit 2"
run "$K" decode -m "$M" -p "$text" -n 5 --kv-budget 8 --evict snapkv
[ $RUN_RC -eq 2 ]; ok $? "--evict snapkv (not an online policy): exit 2"
like "$RUN_ERR" "*unknown policy 'snapkv'*" "and says so"

# ---- evicted caches stay out of blend ----
run "$K" blend -m "$M" -q "what?" -o "$t/b.kvc" "$t/snapkv.kvc" </dev/null
[ $RUN_RC -eq 1 ]; ok $? "blend refuses an evicted cache as a chunk: exit 1"
like "$RUN_ERR" "*token-evicted*" "and says why"

done_testing
