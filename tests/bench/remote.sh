#!/bin/sh
# remote.sh — what a cold read from the remote tier costs (kvblend(7), MANY
# MACHINES; the README): a synthetic SmolLM2-135M-shaped model (q8_0, the
# SmolLM2 tokenizer), 10 passages of about 150 tokens (MuSiQue-sized, cut from
# a book in ../shared/data), an S3-compatible server on loopback (s3rver,
# installed by .ci/setup into build/npm). One blend prompt, timed to its first
# token (median of RUNS runs, each on a fresh store for the remote case):
#   full      full prefill of the whole prompt (no caches)
#   local     blend with every chunk cache in the local store
#   remote    blend with an empty local store: every cache streamed from the
#             server into the load (layer 0 is used while later layers arrive),
#             checked as it arrives, stored after
#   whole     the same with KVBLEND_REMOTE_STREAM=0: every cache downloaded
#             whole, checked and stored before the blend starts
# and the download rate of the whole fetches (MiB of .kvc per second).
#   tests/bench/remote.sh            RUNS=5 THREADS=2 DTYPE=f16 by default; the figures of
#                                    kvblend(7) and the README: THREADS=2 RUNS=5
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
shared=${KVBLEND_TESTDATA:-$top/../shared}
runs=${RUNS:-5} threads=${THREADS:-2} dtype=${DTYPE:-f16}
s3rver=$top/build/npm/node_modules/.bin/s3rver
[ -x "$s3rver" ] || { echo "remote.sh: s3rver is not installed (run .ci/setup)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-remote.XXXXXX")
s3pid=
trap '[ -n "$s3pid" ] && kill $s3pid 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

"$bin/kvblend-quantize" --synthetic smollm2-135m --vocab "$shared/tokenizers/smollm2-135m-instruct/tokenizer.json" \
	"$work/smol.gguf" q8_0 2>/dev/null
m=$work/smol.gguf
head -c 60000 "$shared/data/text/gutenberg_pg1342_pride_and_prejudice.txt" | tail -c 30000 >"$work/doc.txt"
"$bin/kvblend-chunk" -m "$m" --by paragraph --max-tokens 160 "$work/doc.txt" |
	awk 'match($0, /"tokens":[0-9]+/) && substr($0, RSTART + 9, RLENGTH - 9) + 0 >= 100' | head -n 10 >"$work/c.jsonl"
q="What does Elizabeth think of Mr. Darcy?"

mkdir "$work/s3"
: >"$work/s3.log"
"$s3rver" -d "$work/s3" -a 127.0.0.1 -p 0 --configure-bucket kvb-bench >"$work/s3.log" 2>&1 &
s3pid=$!
i=0
while ! grep -q "listening on" "$work/s3.log" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/s3.log")
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
R="--remote s3://kvb-bench/fleet"

tokens=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' "$work/c.jsonl" | awk '{s += $1} END {print s}')
"$bin/kvblend-prefill" -m "$m" --store "$work/A" $R --dtype "$dtype" -t "$threads" --quiet <"$work/c.jsonl" >/dev/null
blend() { # store [options] → the -v line on stdout
	st=$1
	shift
	"$bin/kvblend-blend" -m "$m" --store "$st" -t "$threads" -q "$q" -v --quiet "$@" <"$work/c.jsonl" 2>&1 >/dev/null |
		grep "time to first token"
}
ttft() { sed -n 's/.*time to first token \([0-9.]*\) s.*/\1/p'; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
blend "$work/A" $R >/dev/null # the prompt's head, computed once and written through
: >"$work/full" && : >"$work/local" && : >"$work/remote" && : >"$work/whole" && : >"$work/rate"
one() { # full | local | remote | whole, run r
	case $1 in
	full) "$bin/kvblend-blend" -m "$m" --no-store --mode full -t "$threads" -q "$q" -v --quiet <"$work/c.jsonl" 2>&1 >/dev/null |
		ttft >>"$work/full" ;;
	local) blend "$work/A" | tee -a "$work/local.log" | ttft >>"$work/local" ;;
	remote)
		line=$(blend "$work/R$2" $R)
		echo "$line" >>"$work/remote.log"
		echo "$line" | ttft >>"$work/remote"
		;;
	whole)
		line=$(export KVBLEND_REMOTE_STREAM=0; blend "$work/W$2" $R)
		echo "$line" >>"$work/whole.log"
		echo "$line" | ttft >>"$work/whole"
		echo "$line" | sed -n 's/.*(\([0-9]*\) fetched from the remote: \([0-9.]*\) MiB in \([0-9.]*\) s).*/\1 \2 \3/p' >>"$work/rate" ;;
	esac
}
for r in $(seq "$runs"); do # the order turns with each run: a busy neighbour weighs on each alike
	case $((r % 4)) in
	0) one full $r; one local $r; one remote $r; one whole $r ;;
	1) one local $r; one remote $r; one whole $r; one full $r ;;
	2) one remote $r; one whole $r; one full $r; one local $r ;;
	3) one whole $r; one full $r; one local $r; one remote $r ;;
	esac
done
mib=$(awk '{print $2}' "$work/rate" | median)
rate=$(awk '$3 > 0 {print $2 / $3}' "$work/rate" | median)
fetch_s=$(awk '{print $3}' "$work/rate" | median)
n=$(awk '{print $1}' "$work/rate" | median)
f=$(median <"$work/full") l=$(median <"$work/local") x=$(median <"$work/remote") w=$(median <"$work/whole")
echo "model: synthetic smollm2-135m q8_0; $(wc -l <"$work/c.jsonl") passages, $tokens tokens; caches $dtype; $threads threads; $(lscpu | sed -n 's/^Model name: *//p')"
echo "fetched whole per cold blend: $n caches, $mib MiB in $fetch_s s, one after another: $rate MiB/s downloaded, checked and stored (s3rver on loopback; medians)"
printf '%-28s %8s %8s\n' "time to first token (median of $runs)" seconds "x full"
printf '%-28s %8.3f %8.2f\n' "full prefill" "$f" 1
printf '%-28s %8.3f %8.2f\n' "blend, local caches" "$l" "$(echo "$f / $l" | bc -l)"
printf '%-28s %8.3f %8.2f\n' "blend, remote, streamed" "$x" "$(echo "$f / $x" | bc -l)"
printf '%-28s %8.3f %8.2f\n' "blend, remote, whole first" "$w" "$(echo "$f / $w" | bc -l)"
