#!/bin/sh
# wisdom.t — the one-token matmul variant timed once per machine and kept
# (common/wisdom.h): the first load records it, later loads take it without
# timing (so every run gives the same bits), the file's value is what runs,
# KVBLEND_MATVEC still wins, and a file that is garbage, names a variant that
# does not exist, or cannot be written never stops a tool.
. "$(dirname "$0")/tap.sh"
need_bin bench
top=$(cd "$(dirname "$0")/../.." && pwd)
model=$top/tests/models/reader.gguf
bench=$KVBLEND_BIN/kvblend-bench
w=$TAP_TMP/wisdom.tsv
speed="--speed -m $model --n-prompt 0 --n-gen 4 -r 1 -t 1"

KVBLEND_WISDOM=$w run "$bench" $speed --tsv
ok $RUN_RC "a first run with a wisdom file to write"
isa=$(printf '%s\n' "$RUN_OUT" | awk -F'\t' 'NR == 2 { print $4 }')
if [ "$isa" != avx512 ]; then
	# one candidate only below AVX-512: nothing is timed, nothing recorded
	is "$(cat "$w" 2>/dev/null)" "" "$isa: nothing to time, nothing recorded"
	for i in 1 2 3 4 5 6 7 8; do skip "the variants are timed only on AVX-512 machines ($isa here)"; done
	done_testing
	exit
fi
type=$(printf '%s\n' "$RUN_OUT" | awk -F'\t' 'NR == 2 { print $2 }')
like "$(cat "$w")" "*matvec	*	avx512	$type	*" "the variant chosen for $type is recorded, keyed by CPU, level and type"
cp "$w" "$TAP_TMP/before"
KVBLEND_WISDOM=$w run "$bench" $speed
like "$RUN_OUT" "*# one-token matmul: $type * (timed before: wisdom)*" "a second run takes it without timing"
cmp -s "$w" "$TAP_TMP/before"; ok $? "... and leaves the file as it was"

# the file's value is what runs
sed "s/	$type	[a-z0-9]*\$/	$type	vnni256/; s/	$type	vnni256\$/	$type	avx2/" "$TAP_TMP/before" >"$w"
want=$(awk -F'\t' -v t="$type" '$4 == t { print $5 }' "$w")
KVBLEND_WISDOM=$w run "$bench" $speed --tsv
is "$RUN_RC:$(printf '%s\n' "$RUN_OUT" | awk -F'\t' 'NR == 2 { print $8 }')" "0:$want" "an edited value ($want) is the variant that runs"
KVBLEND_WISDOM=$w KVBLEND_MATVEC=generic run "$bench" $speed --tsv
is "$RUN_RC:$(printf '%s\n' "$RUN_OUT" | awk -F'\t' 'NR == 2 { print $8 }')" "0:generic" "KVBLEND_MATVEC wins over the file"

# garbage, a variant that does not exist, a place that cannot be written
head -c 3000 /dev/urandom | tr -d '\000' >"$w"
KVBLEND_WISDOM=$w run "$bench" $speed
ok $RUN_RC "a garbage file: the run goes on"
grep -q "^matvec	.*	$type	" "$w"; ok $? "... and the variant is recorded beside the garbage"
printf 'matvec\t%s\tavx512\t%s\tbogus\n' "$(sed -n "s/^matvec	\(.*\)	avx512	$type	.*/\1/p" "$TAP_TMP/before")" "$type" >"$w"
KVBLEND_WISDOM=$w run "$bench" $speed --tsv
is "$RUN_RC:$(grep -c bogus "$w")" "0:0" "a variant that does not exist is timed again and replaced"
KVBLEND_WISDOM=/nonexistent/dir/wisdom.tsv run "$bench" $speed
ok $RUN_RC "a file that cannot be written: the run goes on"
done_testing
