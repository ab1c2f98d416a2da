#!/bin/sh
# embed.sh — how fast kvblend embed turns chunks into vectors with a BERT
# encoder of all-MiniLM-L6-v2's shape, side by side with llama.cpp's
# llama-bench (-embd 1, one sequence of the same length per pass) on the same
# GGUF files and thread count, in one run.
#
#   tests/bench/embed.sh                      ours only
#   LLAMA_CPP=/path/to/llama.cpp/build/bin tests/bench/embed.sh
#
# Environment: THREADS (default 2), REPS (default 3, the median is printed),
# TYPES (default "f32 q8_0"), CHUNKS (default 1000), TOKENS (tokens per chunk,
# default 200), DIR (models, chunks and stores; default
# $TMPDIR/kvblend-embed-bench, the models kept for reuse), KVBLEND_BIN (default
# build/bin). The models are synthetic (seeded random weights, the real
# vocabulary when ../shared has it): speed does not depend on the weights.
#
# Ours is the whole job — reading records, WordPiece, the encoder, pooling and
# the SQLite writes — over CHUNKS chunks of TOKENS tokens cut from the
# Gutenberg texts in ../shared/data/text; llama.cpp's is the forward pass alone.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
threads=${THREADS:-2} reps=${REPS:-3} types=${TYPES:-"f32 q8_0"}
chunks=${CHUNKS:-1000} tokens=${TOKENS:-200}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-embed-bench}
shared=${KVBLEND_TESTDATA:-$top/../shared}
vocab=$shared/tokenizers/all-MiniLM-L6-v2/tokenizer.json
[ -x "$bin/kvblend-embed" ] || { echo "embed.sh: $bin/kvblend-embed is not built (make)" >&2; exit 1; }
[ -r "$vocab" ] || { echo "embed.sh: skipped: no $vocab" >&2; exit 0; }
mkdir -p "$dir"

# the median of the numbers on stdin
median() { sort -g | awk '{ v[n++] = $1 } END { print n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }'; }

for t in $types; do
	m=$dir/minilm-$t.gguf
	[ -s "$m" ] || "$bin/kvblend-quantize" --synthetic all-minilm-l6-v2 --vocab "$vocab" "$m" "$t" >&2
done
first=$(set -- $types; echo "$1")
cat "$shared"/data/text/gutenberg_*.txt |
	"$bin/kvblend-chunk" -m "$dir/minilm-$first.gguf" --by window --max-tokens "$tokens" |
	head -n "$chunks" >"$dir/chunks.jsonl"
n=$(wc -l <"$dir/chunks.jsonl")

printf '%-6s %14s %14s %8s %10s\n' type "kvblend ch/s" "llama.cpp ch/s" ratio "RSS MiB"
for t in $types; do
	m=$dir/minilm-$t.gguf
	: >"$dir/rates"
	rss=0
	for r in $(seq "$reps"); do
		rm -rf "$dir/store"
		/usr/bin/time -f '%M' -o "$dir/rss" "$bin/kvblend-embed" -m "$m" --store "$dir/store" -t "$threads" -v \
			<"$dir/chunks.jsonl" 2>"$dir/log" >/dev/null ||
			{ cat "$dir/log" >&2; exit 1; }
		sed -n 's/.*embedded in .* (\([0-9.]*\) chunks\/s).*/\1/p' "$dir/log" >>"$dir/rates"
		rss=$(tail -n 1 "$dir/rss")
	done
	ours=$(median <"$dir/rates")
	theirs=-
	if [ -n "${LLAMA_CPP:-}" ]; then
		# llama-bench reports tokens/s of one TOKENS-token sequence per pass
		tps=$("$LLAMA_CPP/llama-bench" -m "$m" -embd 1 -p "$tokens" -n 0 -r "$reps" -t "$threads" -o csv 2>/dev/null |
			awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); col[$i] = i }; next }
				 { gsub(/"/, "", $col["avg_ts"]); print $col["avg_ts"] }')
		[ -n "$tps" ] && theirs=$(awk -v s="$tps" -v k="$tokens" 'BEGIN { printf "%.1f", s / k }')
	fi
	if [ "$theirs" != - ]; then
		printf '%-6s %14.1f %14.1f %7.2fx %10.0f\n' "$t" "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { print a / b }')" "$(($rss / 1024))"
	else
		printf '%-6s %14.1f %14s %8s %10.0f\n' "$t" "$ours" - - "$(($rss / 1024))"
	fi
done
echo "# $n chunks of up to $tokens tokens, threads $threads, median of $reps, $(uname -m), $(date -u +%Y-%m-%d)"
