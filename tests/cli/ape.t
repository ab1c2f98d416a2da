#!/bin/sh
# ape.t — blend --mode ape (APE: chunks cached after a shared prefix, the
# query's attention over them corrected): prefill --ape warms the store under
# a prefix and blend then computes nothing; the APE caches are keyed by the
# prefix as well as the chunk; one chunk at T = S = 1 is a full prefill; bench
# --methods ape runs beside the others; bad options are usage errors naming
# them, a .kvc chunk (computed alone) is refused.
. "$(dirname "$0")/tap.sh"
need_bin blend prefill bench
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
B=$KVBLEND_BIN t=$TAP_TMP
export KVBLEND_STORE=$t/default
printf '%s\n' '{"text": "Lily had a red ball. She liked to play with it in the park."}' \
	'{"text": "Tom was her friend. He had a big dog named Max."}' >"$t/chunks.jsonl"
pfx="Once upon a time,"
q=" Then Lily said"
blend() { "$B/kvblend-blend" -m "$model" --prefix "$pfx" -q "$q" --store "$t/store" "$@" <"$t/chunks.jsonl"; }

# the store warmed with APE caches under the prefix: blend computes nothing
"$B/kvblend-prefill" -m "$model" --quiet --ape --prefix "$pfx" --store "$t/store" <"$t/chunks.jsonl" >"$t/ape.jsonl"
ok $? "prefill --ape --prefix stores every chunk's APE cache"
"$B/kvblend-prefill" -m "$model" --quiet --store "$t/plain" <"$t/chunks.jsonl" >"$t/plain.jsonl"
"$B/kvblend-prefill" -m "$model" --quiet --ape --prefix "Long ago," --store "$t/other" <"$t/chunks.jsonl" >"$t/other.jsonl"
keys() { sed -n 's/.*"kv":"\([0-9a-f]*\)".*/\1/p' "$1" | tr '\n' ' '; }
a=$(keys "$t/ape.jsonl") p=$(keys "$t/plain.jsonl") o=$(keys "$t/other.jsonl")
[ "$(echo $a | wc -w)" -eq 2 ] && [ "$a" != "$p" ] && [ "$a" != "$o" ] && [ "$p" != "$o" ]
ok $? "an APE cache's key names the prefix: it differs from the chunk's own and from another prefix's"
blend --mode ape -v --quiet -o "$t/ape.kvc" 2>"$t/v"
rc=$?
[ $rc -eq 0 ] && grep -q "mode ape: .*3 caches from the store, 0 computed" "$t/v"
ok $? "blend --mode ape after prefill --ape: the prefix and both chunks from the store, nothing computed: $(cat "$t/v")"
blend --mode ape --prefix "Long ago," -v --quiet -o /dev/null 2>"$t/v"
grep -q "0 caches from the store, 3 computed" "$t/v"; ok $? "under another prefix nothing is reused: $(cat "$t/v")"
blend --mode ape --ape-temp 1 --ape-scale 0.5 --verify -o /dev/null 2>"$t/v"
ok $? "--ape-temp and --ape-scale: $(cat "$t/v")"

# one chunk at T = S = 1 is a full prefill (computed caches, f32: to float rounding)
head -1 "$t/chunks.jsonl" | "$B/kvblend-blend" -m "$model" --prefix "$pfx" -q "$q" --no-store --mode ape \
	--ape-temp 1 --ape-scale 1 --verify -o /dev/null 2>"$t/v"
rc=$?
kl=$(sed -n 's/.*KL \([0-9.]*\);.*/\1/p' "$t/v")
[ $rc -eq 0 ] && grep -q "first token agrees with full prefill" "$t/v" && awk -v k="${kl:-1}" 'BEGIN { exit !(k < 1e-5) }'
ok $? "one chunk, T = S = 1: a full prefill (KL $kl)"

# bench: ape beside the other methods, its caches warmed into the store
wiki=$(tap_shared data/qa/cacheblend_wikimqa_s_clean.json)
if [ -n "$wiki" ]; then
	"$B/kvblend-bench" -m "$model" --dataset "$wiki" --limit 2 --max-chunk-tokens 32 -t 1 --n-gen 4 \
		--ctx 1024 --store "$t/bench" --methods full,reuse,ape,ape:1:1 --tsv >"$t/b.tsv" 2>"$t/e"
	rc=$?
	got=$(cut -f1 "$t/b.tsv" | tr '\n' ' ')
	[ $rc -eq 0 ] && ! grep -q "missing from the store when timed" "$t/e"
	ok $? "bench --methods ape,ape:1:1 runs with every cache warmed: $got"
	like "$got" "*ape*ape:1:1*" "... a row for each"
else
	skip "bench --methods ape: the 2wikimqa set is absent"
	skip "... a row for each"
fi

# errors
blend --ape-temp 0.5 -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(head -1 "$t/e")" "2:kvblend-blend: --ape-temp and --ape-scale go with --mode ape" "--ape-temp without --mode ape"
blend --mode ape --ape-scale 0 -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(head -1 "$t/e")" "2:kvblend-blend: --ape-scale: '0' is not a number in [0.01, 10]" "--ape-scale 0"
blend --mode ape --ape-temp hot -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(head -1 "$t/e")" "2:kvblend-blend: --ape-temp: 'hot' is not a number in [0.01, 10]" "--ape-temp hot"
"$B/kvblend-blend" -m "$model" --template plain -q "$q" --mode ape -o /dev/null "$t/ape.kvc" 2>"$t/e"; rc=$?
like "$rc:$(cat "$t/e")" "1:kvblend-blend: mode ape: chunk 1 comes from '*ape.kvc', a cache computed alone;*" \
	"a .kvc operand in mode ape: $(cat "$t/e")"
"$B/kvblend-prefill" -m "$model" --prefix "$pfx" --store "$t/store" <"$t/chunks.jsonl" >/dev/null 2>"$t/e"; rc=$?
is "$rc:$(head -1 "$t/e")" "2:kvblend-prefill: --prefix, --prefix-file and --template go with --ape" "prefill --prefix without --ape"
"$B/kvblend-prefill" -m "$model" --ape -p "text" -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(head -1 "$t/e")" "2:kvblend-prefill: --ape goes with chunk records (-p/-f compute one text's cache)" "prefill --ape -p"
"$B/kvblend-bench" -m "$model" --dataset /dev/null --methods ape:2:x 2>"$t/e"; rc=$?
like "$rc:$(head -1 "$t/e")" "2:kvblend-bench: --methods ape:T:S: '2:x' is not a temperature*" "bench --methods ape:2:x"
done_testing
