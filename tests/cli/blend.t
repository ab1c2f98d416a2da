#!/bin/sh
# kvblend blend: chunk → prefill → blend → decode as a pipeline; ratio 1 is a
# full prefill; the baselines; the store is read through; errors.
. "$(dirname "$0")/tap.sh"
need_bin blend prefill decode chunk
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
B=$KVBLEND_BIN t=$TAP_TMP
export KVBLEND_STORE=$t/store
cat >"$t/doc.txt" <<'DOC'
Lily had a red ball. She liked to play with it in the park every day.

Tom was her friend. He had a big dog named Max who loved to run.

One day, the ball rolled into the pond and the dog jumped in after it.
DOC
"$B/kvblend-chunk" -m "$model" --max-tokens 24 "$t/doc.txt" >"$t/chunks.jsonl"
[ "$(wc -l <"$t/chunks.jsonl")" -ge 3 ]; ok $? "chunk makes several chunks"
"$B/kvblend-prefill" -m "$model" --quiet <"$t/chunks.jsonl" >"$t/kv.jsonl"
ok $? "prefill stores every chunk"
grep -c '"kv":"[0-9a-f]\{64\}"' "$t/kv.jsonl" | grep -qx "$(wc -l <"$t/chunks.jsonl")"; ok $? "each record gets its kv key"

q=" Then Lily said"
blend() { "$B/kvblend-blend" -m "$model" --template plain --prefix "Once upon a time," -q "$q" "$@" <"$t/chunks.jsonl"; }
out=$(blend | "$B/kvblend-decode" -m "$model" -n 16 --ids)
[ "$(echo "$out" | wc -w)" -eq 16 ]; ok $? "blend | decode generates: $out"
full=$(blend --mode full | "$B/kvblend-decode" -m "$model" -n 16 --ids)
one=$(blend --ratio 1 --dtype f32 | "$B/kvblend-decode" -m "$model" -n 16 --ids)
[ "$one" = "$full" ]; ok $? "ratio 1.0 decodes exactly as a full prefill"

blend --ratio 1 --verify -o /dev/null 2>"$t/v"
grep -q "first token agrees with full prefill.*KL 0.0000" "$t/v"; ok $? "--verify at ratio 1: $(cat "$t/v")"
for mode in reuse prefix epic blend; do
	blend --mode $mode --verify -o "$t/$mode.kvc" 2>"$t/v"
	ok $? "--mode $mode: $(sed 's/^kvblend-blend: verify: //' "$t/v")"
done
"$B/kvblend-blend" -m "$model" -q "$q" --verify -o /dev/null "$t/reuse.kvc" 2>/dev/null
ok $? "a .kvc operand is a chunk too"

blend -v -o /dev/null 2>"$t/v"
grep -q "0 computed" "$t/v"; ok $? "every chunk came from the store: $(cat "$t/v")"

# a first blend (every chunk computed and stored in f16) and the next (every
# chunk read back) are the same bit for bit: the first uses what it stored
KVBLEND_STORE=$t/fresh blend --dtype f32 -o "$t/first.kvc" 2>/dev/null
KVBLEND_STORE=$t/fresh blend --dtype f32 -o "$t/second.kvc" 2>/dev/null
cmp -s "$t/first.kvc" "$t/second.kvc"; ok $? "a first blend into an empty store equals the next, bit for bit"
blend --no-store -v -o /dev/null 2>"$t/v"
grep -q "0 caches from the store" "$t/v"; ok $? "--no-store computes every chunk"

# each mode's result, from -v and --verify: "N tokens in P parts, C from caches; ...
# S tokens in the others" (S: tokens recomputed after the check layer) and the KL
# of the first token's distribution to a full prefill's
vb() { # name want-N-C-S kl-test blend-options...
	name=$1 want=$2 kltest=$3
	shift 3
	blend "$@" -v --verify -o /dev/null 2>"$t/v"
	rc=$?
	got=$(sed -n 's/.*: \([0-9]*\) tokens in [0-9]* parts, \([0-9]*\) from caches;.* \([0-9]*\) tokens in the others.*/\1 \2 \3/p' "$t/v")
	kl=$(sed -n 's/.*verify: first token agrees with full prefill.*, KL \([0-9.]*\);.*/\1/p' "$t/v")
	awk -v k="${kl:-x}" "BEGIN { exit !(k != \"x\" && ($kltest)) }"
	klok=$?
	[ $rc -eq 0 ] && [ "$got" = "$want" ] && [ $klok -eq 0 ]
	ok $? "$name: tokens, cached, recomputed $got (want $want), KL $kl ($kltest)"
	KL=$kl
}
N=$(blend -v -o /dev/null 2>&1 | sed -n 's/.*: \([0-9]*\) tokens in.*/\1/p')
C=$(blend -v -o /dev/null 2>&1 | sed -n 's/.* \([0-9]*\) from caches.*/\1/p')
nchunks=$(wc -l <"$t/chunks.jsonl")
[ "$N" -gt "$C" ] && [ "$C" -gt 0 ]; ok $? "the prompt has $N tokens, $C of them in chunk caches"
vb "full" "$N 0 $N" "k == 0" --mode full
vb "blend --ratio 1" "$N $C $N" "k < 1e-5" --ratio 1
vb "reuse" "$N $C $((N - C))" "k > 0" --mode reuse
kl_reuse=$KL
vb "blend --ratio 0 is reuse" "$N $C $((N - C))" "k == $kl_reuse" --ratio 0
vb "blend --ratio 0.5" "$N $C $((N - C + (C + 1) / 2))" "k > 0 && k < $kl_reuse" --ratio 0.5
vb "blend (0.15)" "$N $C $((N - C + (C * 15 + 99) / 100))" "k > 0" --verify
vb "epic --epic-k 4" "$N $((C - 4 * (nchunks + 1))) $((N - C + 4 * (nchunks + 1)))" "k > 0 && k < $kl_reuse" --mode epic --epic-k 4
# prefix: only the head's cache is used, and it is exact (computed alone at position 0, as in a full prefill)
head=$(blend --mode prefix -v -o /dev/null 2>&1 | sed -n 's/.* \([0-9]*\) from caches.*/\1/p')
vb "prefix" "$N $head $((N - head))" "k < 1e-5" --mode prefix
[ "$head" -gt 0 ] && [ "$head" -lt "$C" ]; ok $? "prefix: the head's $head tokens come from its cache"
reuse0=$(blend --mode reuse | "$B/kvblend-decode" -m "$model" -n 8 --ids)
ratio0=$(blend --ratio 0 | "$B/kvblend-decode" -m "$model" -n 8 --ids)
[ -n "$reuse0" ] && [ "$reuse0" = "$ratio0" ]; ok $? "ratio 0 decodes exactly as reuse: $ratio0"

# the context: a prompt that does not fit is one line naming both numbers, before any work
: >"$t/long.jsonl"
for i in 1 2 3 4 5 6 7 8; do cat "$t/chunks.jsonl" >>"$t/long.jsonl"; done
KVBLEND_STORE=$t/store-ctx "$B/kvblend-blend" -m "$model" --template plain -q "$q" -o "$t/long.kvc" <"$t/long.jsonl" 2>"$t/e"; rc=$?
like "$rc:$(cat "$t/e")" "1:kvblend-blend: the prompt has * tokens, more than the context of 128 (the model's; --ctx N to go past it)" \
	"a prompt longer than the model's context: $(cat "$t/e")"
[ "$(grep -c . "$t/e")" -eq 1 ] && [ ! -e "$t/store-ctx" ] && [ ! -e "$t/long.kvc" ]
ok $? "... one line, and nothing was computed or stored"
blend --ctx $((N - 1)) -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(cat "$t/e")" "1:kvblend-blend: the prompt has $N tokens, more than the context of $((N - 1))" "--ctx $((N - 1)): the prompt does not fit"
blend --ctx "$N" -o /dev/null 2>"$t/e"
ok $? "--ctx $N: it fits"

# an empty text is an error, as in prefill and embed
printf '{"text": "Lily"}\n{"text": ""}\n' | "$B/kvblend-blend" -m "$model" --template plain -q "$q" -o /dev/null 2>"$t/e"; rc=$?
is "$rc:$(cat "$t/e")" "1:kvblend-blend: '<stdin>': line 2: the record's text is empty" "a record with an empty text"

# a corrupt stored cache: warned of, removed, recomputed; the result is the same
flip() { # file: invert a byte two thirds into it (a layer's payload)
	perl -e 'my ($p) = @ARGV; open(my $f, "+<", $p) or die; binmode $f; my $o = int((-s $p) * 2 / 3);
		seek($f, $o, 0); read($f, my $c, 1); seek($f, $o, 0); print $f chr(ord($c) ^ 0xff); close $f' "$1"
}
good=$(blend | "$B/kvblend-decode" -m "$model" -n 8 --ids)
for f in $(find "$t/store/objects" -name '*.kvc' | sort | head -2); do flip "$f"; done
got=$(blend 2>"$t/e" | "$B/kvblend-decode" -m "$model" -n 8 --ids)
is "$got" "$good" "corrupt stored caches: blend recomputes them and gives the same result"
like "$(cat "$t/e")" "kvblend-blend: warning: * *: '*': layer *: payload checksum mismatch*; removed from the store, computing it instead" \
	"... with a warning naming the chunk and the reason: $(head -1 "$t/e")"
is "$(grep -c 'warning' "$t/e")" 2 "... one per corrupt cache"
blend -v -o /dev/null 2>"$t/v"
grep -q "0 computed" "$t/v"; ok $? "... and the next run finds them stored again"

# a full store disk: the caches are computed and used, each store failure a warning
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
	mkdir -p "$t/mnt"
	unshare -m sh -c '
		mount -t tmpfs -o size=200k tmpfs "$1/mnt" || exit 3
		export KVBLEND_STORE=$1/mnt/store
		echo "{\"text\": \"Lily\"}" | "$2/kvblend-blend" -m "$3" -q " said" -o /dev/null || exit 4
		dd if=/dev/zero of="$1/mnt/fill" bs=4k 2>/dev/null; truncate -s -40k "$1/mnt/fill"
		"$2/kvblend-blend" -m "$3" --template plain --prefix "Once upon a time," -q "$4" -o "$1/full.kvc" <"$1/chunks.jsonl" 2>"$1/e1" || exit 5
		rm -f "$1/mnt/fill"; dd if=/dev/zero of="$1/mnt/fill" bs=4k 2>/dev/null
		"$2/kvblend-blend" -m "$3" --template plain --prefix "Once upon a time," -q "$4" -o "$1/full0.kvc" <"$1/chunks.jsonl" 2>"$1/e2" || exit 6
	' sh "$t" "$B" "$model" "$q"
	rc=$?
	is "$rc" 0 "a full store disk: blend succeeds (-o elsewhere)"
	like "$(head -1 "$t/e1")" "kvblend-blend: warning: *: its cache was computed but cannot be stored: *" \
		"... warning of each cache it could not store: $(head -1 "$t/e1")"
	like "$(cat "$t/e2")" "kvblend-blend: warning: *index.db*: computing every chunk's cache" \
		"... or, the disk too full to open the store, of computing every chunk: $(cat "$t/e2")"
	for k in full full0; do
		got=$("$B/kvblend-decode" -m "$model" -n 8 --ids <"$t/$k.kvc")
		is "$got" "$good" "... and its result is the same ($k.kvc)"
	done
else
	skip "a full store disk: needs root and unshare -m to mount a small tmpfs"
fi

"$B/kvblend-blend" -m "$model" <"$t/chunks.jsonl" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "no query is a usage error"
blend --mode nosuch >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "an unknown mode is a usage error"
echo '{"id": "x"}' | "$B/kvblend-blend" -m "$model" -q "$q" -o /dev/null 2>"$t/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: the record has no "text"' "$t/e"; ok $? "a record without text: $(cat "$t/e")"
echo 'not json' | "$B/kvblend-blend" -m "$model" -q "$q" -o /dev/null 2>"$t/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: not JSON' "$t/e"; ok $? "a line that is not JSON: $(cat "$t/e")"
done_testing
