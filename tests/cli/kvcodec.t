#!/bin/sh
# Compressed caches (--dtype kv8, kv4, kv3, kv2; kvblend-kvc(5)) on stories260K:
# prefill writes them, info verifies them and says their bytes per token and
# ratio to f16, decode continues from them (kv8 and kv4 as from f16 here), a
# store of kv4 chunk caches serves blend, evict --recompress turns an f16 store
# into kv4 in place, a store's default type (evict --default-dtype) is what
# prefill and blend store new caches in, and a corrupt compressed layer is a
# one-line error.
. "$(dirname "$0")/tap.sh"
need_bin kvblend
need_shared models/stories260Ktok512.gguf
K=$KVBLEND_BIN/kvblend
M=$SHARED/models/stories260Ktok512.gguf
t=$TAP_TMP
text="Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends. One day she saw a big red ball under a tree, and she ran to get it"

"$K" prefill -m "$M" -p "$text" -o "$t/f16.kvc"
want=$("$K" decode -m "$M" -c "$t/f16.kvc" -n 16 --ids)
prev=$(wc -c <"$t/f16.kvc")
for d in kv8 kv4 kv3 kv2; do
	run "$K" prefill -m "$M" -p "$text" --dtype $d -o "$t/$d.kvc"
	ok $RUN_RC "prefill --dtype $d"
	size=$(wc -c <"$t/$d.kvc")
	[ "$size" -lt "$prev" ]; ok $? "$d: smaller than the type before ($size < $prev bytes)"
	prev=$size
	run "$K" info "$t/$d.kvc"
	like "$RUN_OUT" "*dtype       $d*verified*stored*smaller than f16*" "info: $d, verified, its bytes per token and ratio"
	run "$K" decode -m "$M" -c "$t/$d.kvc" -n 16 --ids
	[ $RUN_RC -eq 0 ] && [ -n "$RUN_OUT" ]; ok $? "decode continues from a $d cache"
	case $d in kv8 | kv4) is "$RUN_OUT" "$want" "$d: the same 16 tokens as from f16" ;; esac
done
ratio=$("$K" info --json "$t/kv4.kvc" | sed 's/.*"ratio_to_f16":\([0-9.]*\).*/\1/')
python3 -c "import sys; sys.exit(0 if $ratio > 3 else 1)" 2>/dev/null || awk "BEGIN { exit !($ratio > 3) }"
ok $? "kv4 is over 3x smaller than f16 on this short cache ($ratio)"

# a store of kv4 chunk caches serves blend
printf '%s\n' "$text" >"$t/doc.txt"
"$K" chunk -m "$M" --by sentence --max-tokens 24 "$t/doc.txt" | "$K" prefill -m "$M" --store "$t/st" --dtype kv4 >"$t/chunks.jsonl"
ok $? "prefill --store --dtype kv4"
run "$K" blend -m "$M" --store "$t/st" -q "Who saw the ball?" -o "$t/b.kvc" <"$t/chunks.jsonl"
ok $RUN_RC "blend reads the kv4 chunk caches: $RUN_ERR"
run "$K" evict --store "$t/st" --verify
ok $RUN_RC "evict --verify: the kv4 store is sound"

# evict --recompress: the f16 store's cold caches into kv4, atomically, kept as they were used
"$K" chunk -m "$M" --by sentence --max-tokens 24 "$t/doc.txt" | "$K" prefill -m "$M" --store "$t/rs" >"$t/rs.jsonl"
"$K" blend -m "$M" --store "$t/rs" -q "Who saw the ball?" <"$t/rs.jsonl" | "$K" decode -m "$M" -n 8 --ids >"$t/before"
bytes() { "$K" evict --store "$1" --stats --json | sed 's/.*"entries":[0-9]*,"bytes":\([0-9]*\).*/\1/'; }
b0=$(bytes "$t/rs")
run "$K" evict --store "$t/rs" --recompress kv4 --older-than 1d
like "$RUN_OUT" "recompressed 0 caches of 0 cold*" "--older-than 1d: nothing is that cold"
run "$K" evict --store "$t/rs" --recompress kv4 --dry-run
like "$RUN_OUT" "*would recompress * caches of * cold*" "--dry-run says what it would do"
[ "$(bytes "$t/rs")" = "$b0" ]; ok $? "and changes nothing"
run "$K" evict --store "$t/rs" --recompress kv4
ok $RUN_RC "--recompress kv4: $RUN_OUT"
b1=$(bytes "$t/rs")
[ "$b1" -lt "$b0" ]; ok $? "the store shrinks ($b0 -> $b1 bytes)"
run "$K" evict --store "$t/rs" --recompress kv4
like "$RUN_OUT" "recompressed 0 caches*" "again: every cache is kv4 already"
run "$K" evict --store "$t/rs" --verify
ok $RUN_RC "the recompressed store verifies: $RUN_OUT"
"$K" evict --store "$t/rs" --list | grep -q " 1 hits\| 2 hits"; ok $? "the caches keep their hits"
"$K" blend -m "$M" --store "$t/rs" -q "Who saw the ball?" <"$t/rs.jsonl" | "$K" decode -m "$M" -n 8 --ids >"$t/after"
[ -s "$t/after" ]; ok $? "blend reads the recompressed store: $(cat "$t/after")"
# a store's default type: new caches go in it unless --dtype says otherwise
run "$K" evict --store "$t/ds" --default-dtype kv4
is "$RUN_OUT" "new caches go into $t/ds as kv4" "--default-dtype kv4 on a new store"
"$K" chunk -m "$M" --by sentence --max-tokens 24 "$t/doc.txt" | "$K" prefill -m "$M" --store "$t/ds" >"$t/ds.jsonl"
n_all=$("$K" evict --store "$t/ds" --list | wc -l)
n_kv4=$("$K" evict --store "$t/ds" --list | grep -c ' kv4 ')
[ "$n_all" -gt 0 ] && [ "$n_kv4" -eq "$n_all" ]; ok $? "prefill without --dtype stores kv4 ($n_kv4 of $n_all)"
"$K" evict --store "$t/ds" --list --json | grep -q '"dtype":"kv4"'; ok $? "--list --json says each cache's dtype"
"$K" evict --store "$t/ds" --stats | grep -q '^new caches kv4$'; ok $? "--stats says the default"
printf 'A new sentence that no chunk had before, about a cat.\n' >"$t/new.txt"
"$K" chunk -m "$M" "$t/new.txt" >"$t/new.jsonl"
"$K" blend -m "$M" --store "$t/ds" -q "What was it about?" -o "$t/nb.kvc" <"$t/new.jsonl"
n2=$("$K" evict --store "$t/ds" --list | wc -l)
n_kv4=$("$K" evict --store "$t/ds" --list | grep -c ' kv4 ')
[ "$n2" -gt "$n_all" ] && [ "$n_kv4" -eq "$n2" ]; ok $? "blend stores the caches it missed as kv4 too ($n_kv4 of $n2)"
"$K" chunk -m "$M" "$t/doc.txt" | "$K" prefill -m "$M" --store "$t/ds" --dtype f16 >/dev/null
"$K" evict --store "$t/ds" --list | grep -q ' f16 '; ok $? "prefill --dtype f16 overrides the default"
run "$K" evict --store "$t/ds" --default-dtype none
is "$RUN_OUT" "new caches go into $t/ds as f16 (no default set)" "--default-dtype none clears it"
run "$K" evict --store "$t/ds" --default-dtype kv5
[ $RUN_RC -eq 2 ]; ok $? "an unknown type: exit 2 ($(printf '%s' "$RUN_ERR" | head -1))"

run "$K" evict --store "$t/rs" --older-than 1d --stats
[ $RUN_RC -eq 2 ]; ok $? "--older-than without --recompress: exit 2"

# a corrupt compressed layer: one line, exit 1
cp "$t/kv4.kvc" "$t/bad.kvc"
off=$(($(wc -c <"$t/bad.kvc") - 200))
printf 'X' | dd of="$t/bad.kvc" bs=1 seek=$off conv=notrunc 2>/dev/null
run "$K" info "$t/bad.kvc"
[ $RUN_RC -eq 1 ]; ok $? "info on a corrupt kv4 cache: exit 1"
like "$RUN_ERR" "*layer*corrupt*" "and names the layer"
run "$K" prefill -m "$M" -p "$text" --dtype kv5 -o "$t/x.kvc"
[ $RUN_RC -eq 2 ]; ok $? "--dtype kv5: exit 2"
done_testing
