#!/bin/sh
# fingerprint.sh — what the model fingerprint costs (gguf.h: SHA-256 of the
# metadata and of each tensor's XXH3-128), in ms per GB of tensor data, warm
# page cache.
#
#   tests/bench/fingerprint.sh
#
# Writes a seeded synthetic model of Qwen2.5-0.5B's shape in f16 (0.99 GB) into
# DIR (default $TMPDIR/kvblend-fp-bench, kept for reuse), reads it once to warm
# the page cache, then times `kvblend info` on it REPS times (default 10) and
# prints the best: the whole run (opening and validating the file, then both
# fingerprints), so ms per GB is an upper bound on the fingerprint's cost.
# THREADS (default: OpenMP's) sets how many tensors are hashed at once.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
reps=${REPS:-10}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-fp-bench}
[ -x "$bin/kvblend-info" ] || { echo "fingerprint.sh: $bin/kvblend-info is not built (make)" >&2; exit 1; }
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS="$THREADS"
mkdir -p "$dir"
m=$dir/qwen2.5-0.5b-f16.gguf
[ -s "$m" ] || "$bin/kvblend-quantize" --synthetic qwen2.5-0.5b --seed 1 "$m" f16
cat "$m" >/dev/null
bytes=$(wc -c <"$m")
best=
i=0
while [ $i -lt "$reps" ]; do
	t0=$(date +%s%N)
	"$bin/kvblend-info" "$m" >/dev/null
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	[ -z "$best" ] || [ $ms -lt "$best" ] && best=$ms
	i=$((i + 1))
done
awk -v ms="$best" -v b="$bytes" 'BEGIN {
	printf "kvblend info on %.2f GB: best of '"$reps"' %d ms, <= %.0f ms per GB\n", b / 1e9, ms, ms / (b / 1e9) }'
