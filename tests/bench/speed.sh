#!/bin/sh
# speed.sh — our prompt processing and generation speed, side by side with
# llama.cpp's llama-bench on the same GGUF files and thread count, in one run.
#
#   tests/bench/speed.sh                      ours only
#   LLAMA_CPP=/path/to/llama.cpp/build/bin tests/bench/speed.sh
#
# Environment: THREADS (default 2), REPS (default 3), TYPES (default "q8_0 q4_0"),
# SHAPE (default smollm2-135m), PP (default 512,2048), TG (default 128),
# DEPTH (default 0: tokens already in the cache, comma-separated, as
# llama-bench -d; a llama-bench without -d is measured at depth 0 only),
# CONTENTION (default 0: that many busy loops run beside every measurement,
# so that a quiet run and a contended one show what share each tool keeps),
# DIR (where the synthetic models go; default $TMPDIR/kvblend-speed, kept for reuse),
# KVBLEND_BIN (default build/bin). It prints the CPU and the decode kernel
# kvblend chose for each type. The models are synthetic (seeded random
# weights, the real model's shape and, when ../shared has it, its tokenizer):
# speed does not depend on the weights' values.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
threads=${THREADS:-2} reps=${REPS:-3} types=${TYPES:-"q8_0 q4_0"} shape=${SHAPE:-smollm2-135m}
pp=${PP:-512,2048} tg=${TG:-128} depth=${DEPTH:-0} contention=${CONTENTION:-0}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-speed}
shared=${KVBLEND_TESTDATA:-$top/../shared}
vocab=$shared/tokenizers/smollm2-135m-instruct/tokenizer.json
mkdir -p "$dir"
[ -x "$bin/kvblend-bench" ] || { echo "speed.sh: $bin/kvblend-bench is not built (make)" >&2; exit 1; }

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores; kernels: ${KVBLEND_ISA:-the best this CPU has}"
busy=
trap 'for p in $busy; do kill "$p" 2>/dev/null; done' EXIT INT TERM
i=0
while [ "$i" -lt "$contention" ]; do
	# a busy loop that ends by itself within the hour, whatever happens to this script
	timeout 3600 sh -c 'while :; do :; done' &
	busy="$busy $!"
	i=$((i + 1))
done
[ "$contention" -gt 0 ] && echo "# contention: $contention busy loops beside every measurement"
out=$dir/results.tsv chosen=
: >"$out"
for t in $types; do
	m=$dir/$shape-$t.gguf
	if [ ! -s "$m" ]; then
		if [ "$shape" = smollm2-135m ] && [ -r "$vocab" ]; then
			"$bin/kvblend-quantize" --synthetic "$shape" --vocab "$vocab" "$m" "$t"
		else
			"$bin/kvblend-quantize" --synthetic "$shape" "$m" "$t"
		fi
	fi
	echo "# $m: kvblend" >&2
	"$bin/kvblend-bench" --speed --tsv -m "$m" --n-prompt "$pp" --n-gen "$tg" -d "$depth" -r "$reps" -t "$threads" \
		>"$dir/kvblend.tsv"
	awk -F'\t' -v t="$t" 'NR > 1 { print t "\t" $5 "\tkvblend\t" $6 }' "$dir/kvblend.tsv" >>"$out"
	# the variant kvblend timed and chose for one-token products (decode)
	chosen="$chosen $t:$(awk -F'\t' 'NR == 2 { print $8 }' "$dir/kvblend.tsv")"
	if [ -n "${LLAMA_CPP:-}" ]; then
		echo "# $m: llama.cpp" >&2
		# depth where llama-bench has -d; both flash-attention settings where
		# it has -fa, each test keeping llama.cpp's faster one (at depth on
		# CPU, 2026's default -fa 1 took tg128@d4096 from 18 to 8 t/s here)
		dopt= help=$("$LLAMA_CPP/llama-bench" --help 2>&1)
		case $help in *"-d, --n-depth"*) dopt="-d $depth" ;; esac
		case $help in *"-fa, --flash-attn"*) dopt="$dopt -fa 0,1" ;; esac
		# shellcheck disable=SC2086
		"$LLAMA_CPP/llama-bench" -m "$m" -p "$pp" -n "$tg" $dopt -r "$reps" -t "$threads" -o csv 2>/dev/null |
			awk -F, -v t="$t" '
			NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); col[$i] = i }; next }
			{ for (i = 1; i <= NF; i++) gsub(/"/, "", $i)
			  test = $col["n_prompt"] > 0 ? "pp" $col["n_prompt"] : "tg" $col["n_gen"]
			  if (("n_depth" in col) && $col["n_depth"] > 0) test = test "@d" $col["n_depth"]
			  print t "\t" test "\tllama.cpp\t" $col["avg_ts"] }' >>"$out"
	fi
done

printf '%-6s %-12s %12s %12s %8s\n' type test "kvblend t/s" "llama.cpp" ratio
awk -F'\t' '
	{ key = $1 "\t" $2; if (!(key in seen)) { seen[key] = 1; order[n++] = key }
	  if (!((key, $3) in v) || $4 + 0 > v[key, $3] + 0) v[key, $3] = $4 }
	END {
		for (i = 0; i < n; i++) {
			split(order[i], k, "\t"); ours = v[order[i], "kvblend"]; theirs = v[order[i], "llama.cpp"]
			if (theirs > 0) printf "%-6s %-12s %12.1f %12.1f %7.2fx\n", k[1], k[2], ours, theirs, ours / theirs
			else printf "%-6s %-12s %12.1f %12s %8s\n", k[1], k[2], ours, "-", "-"
		}
	}' "$out"
echo "# kvblend's one-token matmul (chosen at load, KVBLEND_MATVEC forces one):$chosen"
echo "# threads $threads, reps $reps, $(uname -m), $(date -u +%Y-%m-%d)"
