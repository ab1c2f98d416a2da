#!/bin/sh
# Faults of the remote tier never lose a query: against a small HTTP server on
# loopback that misbehaves on request (tests/remote/faultserver.py: drops the
# connection mid-body, answers 500/503, stalls past the timeout, sends a wrong
# Content-Length, a truncated or a corrupt body), blend still answers (exit 0,
# a readable cache), no broken object is kept in the local store, and an
# unreachable remote costs one warning. Write-through puts only what is
# absent. Timeouts are short here ($KVBLEND_REMOTE_TIMEOUT=1).
. "$(dirname "$0")/tap.sh"
need_bin prefill chunk blend evict info
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
text=$(tap_shared data/text/gutenberg_pg1342_pride_and_prejudice.txt) || skip_all "the shared texts are absent"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is absent"
command -v curl >/dev/null 2>&1 || skip_all "curl is absent"
B=$KVBLEND_BIN t=$TAP_TMP

faultserver "$t/port" 120 || skip_all "the fault server did not start"
base=http://127.0.0.1:$(cat "$t/port")
fault() { curl -sf -X POST --data "$1" "$base/_fault" >/dev/null; }
count() { curl -sf "$base/_stats" | awk -v m="$1" '$1 == m {print $2} END {}' | tail -n 1; }
export KVBLEND_REMOTE_TIMEOUT=1 KVBLEND_REMOTE_RETRIES=1 KVBLEND_REMOTE_BACKOFF=0.01
unset KVBLEND_REMOTE AWS_ENDPOINT_URL
R="--remote $base/kv"

head -c 9000 "$text" | tail -c 3000 >"$t/doc.txt"
"$B/kvblend-chunk" -m "$model" --max-tokens 24 "$t/doc.txt" | head -n 4 >"$t/c.jsonl"
q="Who is Elizabeth?"
blend() { # STORE [more options] → $t/out.kvc, $t/err
	st=$1
	shift
	"$B/kvblend-blend" -m "$model" --template plain --store "$st" --ctx 512 -q "$q" -v "$@" <"$t/c.jsonl" >"$t/out.kvc" 2>"$t/err"
}

"$B/kvblend-prefill" -m "$model" --store "$t/A" $R --json <"$t/c.jsonl" >/dev/null 2>"$t/a.err"
ok $? "prefill writes through to a plain HTTP server (PUT)"
is "$(count PUT)" 4 "4 objects PUT"
is "$(count HEAD)" 4 "each after a HEAD that found it absent"
blend "$t/A" $R; ok $? "a blend on the first store (its prompt head written through)"
puts=$(count PUT)
blend "$t/A2" $R; ok $? "a second store blends from the remote"
grep -q "5 fetched from the remote.*, 0 computed" "$t/err"; ok $? "fetching all 5 caches, computing none"
is "$(count PUT)" "$puts" "and uploading nothing (every cache was there)"
cp "$t/out.kvc" "$t/good.kvc"

# each fault on one object (the first chunk's), on a fresh store, in both ways
# of reading the remote: streamed into the load (the default) and fetched whole
# first ($KVBLEND_REMOTE_STREAM=0). The query is answered, nothing broken kept.
k1=$("$B/kvblend-prefill" -m "$model" --store "$t/P" <"$t/c.jsonl" | sed -n 's/.*"kv":"\([0-9a-f]*\)".*/\1/p' | head -n 1)
# expect MODE FAULT → "fetched computed warnings" after it. A streamed cache
# found broken while the blend ran makes prompt_run load again (the blend's -v
# then counts that last attempt: the other 4 came in the first and are local).
expect() {
	case $1/$2 in
	*/"drop 1" | */"503 1") echo "5 0 0" ;;            # within the retries: nothing lost
	stream/"short 2") echo "5 0 0" ;;                  # every byte came, the length lied
	stream/"drop 2") echo "1 0 1" ;;                   # cut twice mid-layer: loaded again, fetched then
	stream/"trunc 1" | stream/"corrupt 1") echo "0 1 1" ;; # whole but wrong: computed in the second load
	*) echo "4 1 1" ;;                                 # that cache computed here, one warning
	esac
}
n=0
for mode in stream whole; do
	[ $mode = whole ] && export KVBLEND_REMOTE_STREAM=0
	for f in "drop 2" "500 2" "503 2" "short 2" "trunc 1" "corrupt 1" "drop 1" "503 1"; do
		n=$((n + 1))
		fault "$f $k1"
		blend "$t/F$n" $R
		rc=$?
		curl -sf -X POST "$base/_clear" >/dev/null
		"$B/kvblend-info" "$t/out.kvc" >/dev/null 2>&1
		[ $rc -eq 0 ] && [ $? -eq 0 ]; ok $? "$mode, fault '$f': blend answers (exit 0, a readable cache)"
		"$B/kvblend-evict" --store "$t/F$n" --verify >"$t/v" 2>&1
		ok $? "$mode, fault '$f': the store holds nothing broken: $(tail -n 1 "$t/v")"
		[ -z "$(find "$t/F$n/objects" -name '.tmp-*')" ]; ok $? "$mode, fault '$f': no temporary file left"
		set -- $(expect $mode "$f")
		got=$(sed -n 's/.*(\([0-9]*\) fetched from the remote.*, \([0-9]*\) computed.*/\1 \2/p' "$t/err")
		is "$got $(grep -c warning "$t/err")" "$1 $2 $3" \
			"$mode, fault '$f': $1 fetched, $2 computed, $3 warning(s) $(grep warning "$t/err" | head -n 1)"
		if [ "$2" -eq 0 ]; then
			cmp -s "$t/out.kvc" "$t/good.kvc"; ok $? "$mode, fault '$f': the same blend bit for bit"
		fi
	done
	unset KVBLEND_REMOTE_STREAM
done

# a corrupt remote copy is replaced by the computed one
curl -sf -X PUT --data-binary "not a cache" "$base/kv/$k1.kvc" >/dev/null
blend "$t/G" $R; ok $? "a garbage object on the remote: blend answers"
grep -q "4 fetched from the remote.*, 1 computed" "$t/err"; ok $? "that cache is computed here, not kept"
[ "$(curl -sf "$base/kv/$k1.kvc" | head -c 4)" != "not " ]; ok $? "and the remote's garbage is replaced by the good cache"

# a stall past the timeout: the remote is given up after one warning
fault "stall 100"
blend "$t/S" $R; ok $? "a stalled remote: blend answers"
curl -sf -X POST "$base/_clear" >/dev/null
[ "$(grep -c warning "$t/err")" -eq 1 ] && grep -q "timed out" "$t/err"; ok $? "one warning: $(grep warning "$t/err")"
grep -q ", 5 computed" "$t/err"; ok $? "and everything computed here"

# nothing listening: one warning, the query answered
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
blend "$t/U" --remote "http://127.0.0.1:$port/kv"; ok $? "an unreachable remote: blend answers"
[ "$(grep -c warning "$t/err")" -eq 1 ]; ok $? "with exactly one warning: $(grep warning "$t/err")"
"$B/kvblend-prefill" -m "$model" --store "$t/U2" --remote "http://127.0.0.1:$port/kv" <"$t/c.jsonl" >/dev/null 2>"$t/err"
ok $? "prefill with an unreachable remote succeeds"
[ "$(grep -c warning "$t/err")" -eq 1 ]; ok $? "with one warning"
"$B/kvblend-blend" -m "$model" --template plain --remote "not-a-url" -q "$q" <"$t/c.jsonl" >/dev/null 2>"$t/err"
[ $? -eq 2 ]; ok $? "a malformed --remote is a usage error: $(head -n 1 "$t/err")"
done_testing
