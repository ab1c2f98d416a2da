#!/bin/sh
# The store under concurrent prefills and killed ones: four processes on
# overlapping chunk sets store each chunk once and leave a store that verifies
# clean; a prefill killed with SIGKILL mid-write leaves nothing broken.
. "$(dirname "$0")/tap.sh"
need_bin prefill chunk evict blend
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
text=$(tap_shared data/text/gutenberg_pg1342_pride_and_prejudice.txt) || skip_all "the shared texts are absent"
B=$KVBLEND_BIN t=$TAP_TMP st=$t/store
head -c 14000 "$text" | tail -c 6000 >"$t/doc.txt"
"$B/kvblend-chunk" -m "$model" --max-tokens 24 "$t/doc.txt" >"$t/all.jsonl"
n=$(wc -l <"$t/all.jsonl")
[ "$n" -ge 60 ]; ok $? "$n chunks to share out"
# four overlapping sets: halves and middles
q=$((n / 4))
sed -n "1,$((2 * q))p" "$t/all.jsonl" >"$t/a"
sed -n "$((q + 1)),$((3 * q))p" "$t/all.jsonl" >"$t/b"
sed -n "$((2 * q + 1)),${n}p" "$t/all.jsonl" >"$t/c"
awk 'NR % 2' "$t/all.jsonl" >"$t/d"
for s in a b c d; do
	"$B/kvblend-prefill" -m "$model" --store "$st" --batch 32 --quiet <"$t/$s" >"$t/$s.out" 2>"$t/$s.err" &
done
fails=0
for j in 1 2 3 4; do wait %$j || fails=$((fails + 1)); done
[ $fails -eq 0 ]; ok $? "four concurrent prefills succeed"
cat "$t"/?.out | sed 's/.*"kv":"\([0-9a-f]*\)".*/\1/' | sort -u >"$t/keys"
uniq=$(wc -l <"$t/keys")
objs=$(find "$st/objects" -name '*.kvc' | wc -l)
[ "$objs" -eq "$uniq" ]; ok $? "each distinct chunk stored once ($objs objects for $uniq distinct chunks)"
[ -z "$(find "$st/objects" -name '.tmp-*')" ]; ok $? "no temporary files left"
"$B/kvblend-evict" --store "$st" --verify >"$t/v" 2>&1
ok $? "evict --verify: $(tail -n 1 "$t/v")"
"$B/kvblend-evict" --store "$st" --stats >"$t/s"
grep -q "^caches *$uniq " "$t/s"; ok $? "the index has one row per object"

# kill prefills at several moments: nothing broken is left or served
"$B/kvblend-chunk" -m "$model" --max-tokens 20 "$t/doc.txt" >"$t/new.jsonl"
for after in 1 5 12 30; do
	: >"$t/k.out" # exists before the loop below reads it, however late the job starts
	"$B/kvblend-prefill" -m "$model" --store "$st" --batch 8 --quiet <"$t/new.jsonl" >"$t/k.out" 2>/dev/null &
	pid=$!
	i=0
	while [ "$(wc -l <"$t/k.out")" -lt $after ] && [ $i -lt 400 ]; do sleep 0.02; i=$((i + 1)); done
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	# a kill between an object's rename and its row's COMMIT leaves a sound
	# object without a row (never served): verify adopts it; nothing else may turn up
	"$B/kvblend-evict" --store "$st" --verify >"$t/v" 2>&1
	rc=$?
	if [ $rc -ne 0 ] && ! grep -v "adopted" "$t/v" | grep -qi "corrupt\|missing\|removed\|truncat"; then
		"$B/kvblend-evict" --store "$st" --verify >"$t/v" 2>&1
		rc=$?
	fi
	[ $rc -eq 0 ]; ok $? "SIGKILL after $(wc -l <"$t/k.out") records: the store verifies clean ($(tail -n 1 "$t/v"))"
done
# and what is stored serves: blend reads every chunk of a set from the store
head -n 5 "$t/new.jsonl" | "$B/kvblend-prefill" -m "$model" --store "$st" --quiet >/dev/null
head -n 5 "$t/new.jsonl" | "$B/kvblend-blend" -m "$model" --store "$st" -q " Then" -v -o /dev/null 2>"$t/v"
grep -Eq "(5|6) caches from the store" "$t/v"; ok $? "after the kills, blend finds the chunks in the store"
# a store the user may not write (issue 10, item 7): blend and prefill of
# stored chunks still work, as the user nobody (root ignores file modes)
cp -R "$st" "$t/ro" && chmod -R a+rX,a-w "$t/ro" && chmod a+rx "$t"
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1; then
	skip "not root, or no setpriv: cannot run as another user"
	skip "not root, or no setpriv"
elif ! setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$t/ro/index.db"; then
	skip "the scratch folder is not readable by nobody"
	skip "the scratch folder is not readable by nobody"
else
	head -n 5 "$t/new.jsonl" | setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$B/kvblend-blend" -m "$model" --store "$t/ro" -q " Then" -v -o /dev/null 2>"$t/v"
	rc=$?
	[ $rc -eq 0 ] && grep -q "0 computed" "$t/v"; ok $? "blend on a read-only store: every chunk from the store ($(tail -n 1 "$t/v"))"
	head -n 5 "$t/new.jsonl" | setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$B/kvblend-prefill" -m "$model" --store "$t/ro" --quiet >/dev/null 2>"$t/v"
	[ $? -eq 0 ] && [ ! -s "$t/v" ]; ok $? "prefill of stored chunks on a read-only store: exit 0, no message"
fi
chmod -R u+w "$t/ro"
done_testing
