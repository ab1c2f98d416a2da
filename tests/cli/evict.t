#!/bin/sh
# kvblend evict: a store filled by kvblend prefill; --stats, --list, --verify on
# a corrupted store and on a lost index, --max-bytes with each policy, pins,
# --dry-run and usage errors (token eviction: evict-tokens.t).
. "$(dirname "$0")/tap.sh"
need_bin evict
E=$KVBLEND_BIN/kvblend-evict
t=$TAP_TMP

# bytes N: the "bytes" figure of --stats --json for store N
bytes() { "$E" --store "$1" --stats --json | sed 's/.*"entries":[0-9]*,"bytes":\([0-9]*\).*/\1/'; }
entries() { "$E" --store "$1" --stats --json | sed 's/.*"entries":\([0-9]*\).*/\1/'; }
objects() { find "$1/objects" -name '*.kvc' | wc -l | tr -d ' '; }

# ---- usage ----
run "$E" --help
[ $RUN_RC -eq 0 ] && case $RUN_OUT in usage:*) true ;; *) false ;; esac; ok $? "--help prints usage, exit 0"
run "$E" --store "$t/u" --max-bytes 1M --policy fifo
[ $RUN_RC -eq 2 ]; ok $? "an unknown --policy: exit 2"
like "$RUN_ERR" "*unknown policy 'fifo'*" "and says which"
run "$E" --store "$t/u" --max-bytes 12Q
[ $RUN_RC -eq 2 ]; ok $? "a bad --max-bytes: exit 2"
run "$E" --store "$t/u"
[ $RUN_RC -eq 2 ]; ok $? "nothing to do: exit 2"
run "$E" --store "$t/u" --stats x.kvc
[ $RUN_RC -eq 2 ]; ok $? "a cache operand without --tokens: exit 2"
like "$RUN_ERR" "*goes with --tokens*" "it says the operand goes with --tokens"
run "$E" --tokens 128
[ $RUN_RC -eq 2 ]; ok $? "--tokens with an unknown policy: exit 2"
like "$RUN_ERR" "*unknown policy '128'*" "and says which"

# ---- bash completion ----
# comp WORD...: the candidates for the last word, sorted, space-separated
comp() {
	PATH=$KVBLEND_BIN:$PATH bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_kvblend >/dev/null 2>&1; printf "%s\n" "${COMPREPLY[@]}" | LC_ALL=C sort | paste -sd" " -' \
		_ "$KVBLEND_ROOT/completions/kvblend.bash" "$@"
}
if command -v bash >/dev/null 2>&1; then
	is "$(comp kvblend evict --policy '')" "cost lfu lru s3fifo" "completion: --policy offers the four policies"
	mkdir "$t/c" "$t/c/st1" && : >"$t/c/file"
	is "$(cd "$t/c" && comp kvblend evict --store '')" "st1" "completion: --store offers folders only"
	is "$(comp kvblend evict -v --dry)" "--dry-run" "completion: -v takes no value"
	is "$(comp kvblend-evict --ver)" "--verbose --verify --version" "completion: the options come from the tool"
else
	for i in 1 2 3 4; do skip "bash is not installed"; done
fi

# ---- a missing store, an empty store ----
run "$E" --store "$t/empty" --stats
[ $RUN_RC -eq 1 ]; ok $? "--stats on a store that does not exist: exit 1"
like "$RUN_ERR" "kvblend-evict: '$t/empty': no such store*" "it says so"
[ ! -e "$t/empty" ]; ok $? "and creates nothing"
for a in --list --verify "--verify --dry-run" "--max-bytes 0" "--pin 0123"; do
	run "$E" --store "$t/empty" $a
	[ $RUN_RC -eq 1 ] && [ ! -e "$t/empty" ]; ok $? "$a on a store that does not exist: exit 1, nothing created"
done
mkdir "$t/noindex"
run "$E" --store "$t/noindex" --stats
[ $RUN_RC -eq 1 ] && [ ! -e "$t/noindex/index.db" ]; ok $? "a folder that is no store: exit 1, nothing created"
like "$RUN_ERR" "*'$t/noindex': no cache store here*" "it says so"
# a store whose objects/ is there (its index lost, or new): --verify makes the index
mkdir -p "$t/empty/objects"
run "$E" --store "$t/empty" --verify
[ $RUN_RC -eq 0 ] && [ -f "$t/empty/index.db" ]; ok $? "--verify on a store with objects/ and no index makes the index"
run "$E" --store "$t/empty" --stats
[ $RUN_RC -eq 0 ]; ok $? "--stats on an empty store: exit 0"
like "$RUN_OUT" "*caches*0 (0 pinned)*" "it holds 0 caches"
run "$E" --store "$t/empty" --stats --json
like "$RUN_OUT" '{"store":*"entries":0,"bytes":0,*"models":\[\]}' "--stats --json: one object, empty"
KVBLEND_STORE=$t/empty run "$E" --stats
[ $RUN_RC -eq 0 ]; ok $? "\$KVBLEND_STORE is the default store"
KVBLEND_STORE=$t/env run "$E" --stats
[ $RUN_RC -eq 1 ] && [ ! -e "$t/env" ]; ok $? "a \$KVBLEND_STORE that does not exist: exit 1, nothing created"
run "$E" --store "$t/empty" --verify
[ $RUN_RC -eq 0 ]; ok $? "--verify on an empty store: exit 0"
run "$E" --store "$t/empty" --max-bytes 0
[ $RUN_RC -eq 0 ]; ok $? "--max-bytes on an empty store: exit 0"
like "$RUN_OUT" "nothing to remove*" "nothing to remove"

# ---- a store filled by prefill ----
model=$(tap_shared models/stories260Ktok512.gguf) || { done_testing; }
[ -x "$KVBLEND_BIN/kvblend-prefill" ] || { done_testing; }
for s in "Once upon a time there was a cat" "Joe loves writing stories" "The dog ran to the park" \
	"Lily and Ben played in the garden all day long" "A bird sang" "The sun was hot and the sky was blue" \
	"Tom had a red ball" "Sue found a big box under her bed"; do
	printf '{"text":"%s"}\n' "$s"
done >"$t/chunks.jsonl"
S=$t/st
"$KVBLEND_BIN/kvblend-prefill" -m "$model" --store "$S" --quiet <"$t/chunks.jsonl" >"$t/out.jsonl"
ok $? "prefill fills a store with 8 chunk caches"
keys=$(sed 's/.*"kv":"\([0-9a-f]*\)".*/\1/' "$t/out.jsonl")
is "$(entries "$S")" 8 "--stats: 8 caches"
is "$("$E" --store "$S" --list | wc -l | tr -d ' ')" 8 "--list: 8 lines"
is "$("$E" --store "$S" --list --json | grep -c '"pinned":false')" 8 "--list --json: 8 objects"
total=$(bytes "$S")
[ "$total" -gt 0 ] && [ "$total" -eq "$(cat "$S"/objects/*/*.kvc | wc -c)" ]; ok $? "--stats bytes = the objects' bytes ($total)"
run "$E" --store "$S" --verify
[ $RUN_RC -eq 0 ]; ok $? "--verify: a sound store, exit 0"
like "$RUN_OUT" "verified 8 caches: 8 sound" "8 caches read and sound"
run "$KVBLEND_BIN/kvblend" evict --store "$S" --stats
[ $RUN_RC -eq 0 ]; ok $? "kvblend evict runs through the dispatcher"
cp -R "$S" "$t/clean"

# ---- --dry-run ----
half=$((total / 2))
run "$E" --store "$S" --max-bytes $half --dry-run
[ $RUN_RC -eq 0 ]; ok $? "--dry-run --max-bytes: exit 0"
n=$(printf '%s\n' "$RUN_OUT" | grep -c '^would remove [0-9a-f]\{64\} ')
[ "$n" -ge 1 ]; ok $? "one line per cache it would remove ($n)"
[ "$(entries "$S")" -eq 8 ] && [ "$(objects "$S")" -eq 8 ] && [ "$(bytes "$S")" -eq "$total" ]
ok $? "--dry-run removed nothing"
printf '%s\n' "$RUN_OUT" | grep '^would remove [0-9a-f]' | cut -d' ' -f3 >"$t/dry"
run "$E" --store "$S" --max-bytes $half -v
printf '%s\n' "$RUN_OUT" | grep '^removed [0-9a-f]' | cut -d' ' -f2 >"$t/real"
cmp -s "$t/dry" "$t/real"; ok $? "the real run removes what the dry run said"
[ "$(bytes "$S")" -le $half ] && [ "$(objects "$S")" -eq "$(entries "$S")" ]; ok $? "under the budget, files and rows agree"

# ---- each policy ----
for pol in lru lfu s3fifo cost; do
	rm -rf "$t/p" && cp -R "$t/clean" "$t/p"
	budget=$((total * 2 / 3))
	run "$E" --store "$t/p" --max-bytes $budget --policy $pol
	[ $RUN_RC -eq 0 ] && [ "$(bytes "$t/p")" -le $budget ] && [ "$(bytes "$t/p")" -gt 0 ]
	ok $? "--policy $pol --max-bytes $budget: under the budget, not empty"
	like "$RUN_OUT" "removed * caches, *($pol); the store holds*" "--policy $pol: the summary"
done
rm -rf "$t/p" && cp -R "$t/clean" "$t/p"
run "$E" --store "$t/p" --max-bytes 1K --dry-run
like "$RUN_OUT" "*budget 1.0 KiB)" "--max-bytes 1K is 1024 bytes"
run "$E" --store "$t/p" --max-bytes 1.5KiB --half-life 2h --policy cost --dry-run
like "$RUN_OUT" "*budget 1.5 KiB)" "--max-bytes 1.5KiB, --half-life 2h"

# ---- pins ----
k1=$(echo "$keys" | sed -n 1p) k2=$(echo "$keys" | sed -n 2p)
run "$E" --store "$t/p" --pin "$k1" --pin "$(echo "$k2" | cut -c1-8)" --max-bytes 0 --policy lfu
[ $RUN_RC -eq 1 ]; ok $? "pinned caches over a budget of 0: exit 1"
like "$RUN_ERR" "*over the budget: 2 pinned caches take*" "it says the pinned caches are over the budget"
[ "$("$E" --store "$t/p" --list | cut -d' ' -f1 | sort | paste -sd' ')" = "$(printf '%s\n' "$k1" "$k2" | sort | paste -sd' ')" ]
ok $? "--pin (a full key and a prefix): only the pinned caches are left"
run "$E" --store "$t/p" --pin 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
[ $RUN_RC -eq 1 ]; ok $? "pinning a key not in the store: exit 1"
run "$E" --store "$t/p" --unpin "$k1" --unpin "$k2" --max-bytes 0
[ $RUN_RC -eq 0 ] && [ "$(entries "$t/p")" -eq 0 ] && [ "$(objects "$t/p")" -eq 0 ]; ok $? "--unpin: then everything goes"

# ---- --verify on a corrupted store ----
f=$(find "$S/objects" -name '*.kvc' | head -1)
key=$(basename "$(dirname "$f")")$(basename "$f" .kvc)
size=$(wc -c <"$f")
perl -e 'open F, "+<:raw", $ARGV[0] or die; seek F, $ARGV[1], 0; read F, $c, 1; seek F, $ARGV[1], 0; print F chr(ord($c) ^ 1)' "$f" $((size - 100))
n=$(entries "$S")
run "$E" --store "$S" --verify --dry-run
[ $RUN_RC -eq 1 ] && [ -f "$f" ]; ok $? "--verify --dry-run: a flipped byte found (exit 1), nothing removed"
run "$E" --store "$S" --verify
[ $RUN_RC -eq 1 ]; ok $? "--verify: a flipped byte, exit 1"
like "$RUN_OUT" "$key: *checksum mismatch*(removed)*" "it names the cache and the checksum, and removed it"
[ ! -f "$f" ] && [ "$(entries "$S")" -eq $((n - 1)) ]; ok $? "the cache and its row are gone"
run "$E" --store "$S" --verify
[ $RUN_RC -eq 0 ]; ok $? "a second --verify: exit 0"

# ---- a lost index, an unfinished write ----
n=$(objects "$S")
rm -f "$S/index.db" "$S/index.db-wal" "$S/index.db-shm"
d=$(find "$S/objects" -mindepth 1 -maxdepth 1 -type d | head -1)
printf 'half a cache' >"$d/.tmp-999999-deadbeef"
touch -d '2 hours ago' "$d/.tmp-999999-deadbeef"
run "$E" --store "$S" --verify
[ $RUN_RC -eq 1 ]; ok $? "--verify with the index lost: exit 1"
is "$(printf '%s\n' "$RUN_OUT" | grep -c '(adopted)')" "$n" "every sound cache is adopted"
like "$RUN_OUT" "*.tmp-999999-deadbeef: an unfinished write*(removed)*" "an old unfinished write is removed"
[ ! -e "$d/.tmp-999999-deadbeef" ] && [ "$(entries "$S")" -eq "$n" ]; ok $? "the index has them all again"
run "$E" --store "$S" --verify
[ $RUN_RC -eq 0 ]; ok $? "and verifies clean"
# ---- a planted key, a FIFO, a folder (issue 10, items 2 and 6) ----
rm -rf "$t/pk" && cp -R "$t/clean" "$t/pk"
printf 'precious' >"$t/victim.kvc"
if command -v sqlite3 >/dev/null 2>&1; then
	# the old path of key "../../victim" was STORE/objects/..//../victim.kvc = $t/victim.kvc
	sqlite3 "$t/pk/index.db" "INSERT INTO objects (key, size, n_tokens, model, created, last_used) VALUES ('../../victim', 8, 1, 'x', 0, 0)"
	run "$E" --store "$t/pk" --max-bytes 0
	[ $RUN_RC -eq 0 ] && [ -f "$t/victim.kvc" ]; ok $? "evict --max-bytes 0 with a planted '../../victim' row: the file outside the store stays"
	like "$RUN_OUT" "*removed 1 index row whose key is not a store key (no file touched)*" "it removes the row and says so"
else
	skip "sqlite3 (the shell) is not installed: cannot plant a row"
	skip "sqlite3 (the shell) is not installed"
fi
rm -rf "$t/ff" && cp -R "$t/clean" "$t/ff"
f1=$(find "$t/ff/objects" -name '*.kvc' | sed -n 1p) f2=$(find "$t/ff/objects" -name '*.kvc' | sed -n 2p)
rm "$f1" "$f2" && mkfifo "$f1" && mkdir "$f2"
run timeout 60 "$E" --store "$t/ff" --verify
[ $RUN_RC -eq 1 ]; ok $? "--verify with a FIFO and a folder in objects' places: exit 1, no hang"
[ "$(printf '%s\n' "$RUN_OUT" | grep -c 'not a regular file (removed)')" -eq 2 ]; ok $? "both reported as not regular files and removed"
run timeout 60 "$E" --store "$t/ff" --verify
[ $RUN_RC -eq 0 ] && [ ! -e "$f1" ] && [ ! -e "$f2" ]; ok $? "a second --verify is clean"

# ---- a read-only store (issue 10, item 7) ----
# root ignores file modes: read as the user nobody (setpriv), else skip
asnobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
rm -rf "$t/ro" && cp -R "$t/clean" "$t/ro" && chmod -R a+rX,a-w "$t/ro" && chmod a+rx "$t"
if [ "$(id -u)" -ne 0 ]; then
	why="not root: cannot become another user (setpriv)"
elif ! command -v setpriv >/dev/null 2>&1; then
	why="setpriv is not installed"
elif ! asnobody test -r "$t/ro/index.db" || asnobody test -w "$t/ro"; then
	why="the scratch folder is not readable by nobody"
else
	why=
fi
if [ -z "$why" ]; then
	run asnobody "$E" --store "$t/ro" --stats
	[ $RUN_RC -eq 0 ]; ok $? "--stats on a store nobody may not write: exit 0 ($RUN_ERR)"
	like "$RUN_OUT" "*caches*8 (0 pinned)*" "it lists the 8 caches"
	run asnobody "$E" --store "$t/ro" --list
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 8 ]; ok $? "--list: 8 lines"
	run asnobody "$E" --store "$t/ro" --verify --dry-run
	[ $RUN_RC -eq 0 ]; ok $? "--verify --dry-run reads every cache: exit 0"
	run asnobody "$E" --store "$t/ro" --max-bytes 0
	[ $RUN_RC -eq 1 ]; ok $? "--max-bytes on a read-only store: exit 1"
	like "$RUN_ERR" "kvblend-evict: '$t/ro/index.db': read-only*cannot evict" "it says the store is read-only"
	[ "$(entries "$t/ro")" -eq 8 ]; ok $? "and nothing was removed"
	rm -rf "$t/ro2" && cp -R "$t/clean" "$t/ro2" && chmod -R a+rX,a-w "$t/ro2"
	printf '%s\n' "$(sed -n 1p "$t/chunks.jsonl")" >"$t/one.jsonl"
	run asnobody "$KVBLEND_BIN/kvblend-prefill" -m "$model" --store "$t/ro2" --quiet <"$t/one.jsonl"
	[ $RUN_RC -eq 0 ]; ok $? "prefill of a stored chunk on a read-only store: exit 0 ($RUN_ERR)"
else
	for i in 1 2 3 4 5 6 7 8; do skip "$why"; done
fi
chmod -R u+w "$t/ro" "$t/ro2" 2>/dev/null
done_testing
