#!/bin/sh
# run.sh — build and run the fuzz targets.
#
#   tests/fuzz/run.sh [SECONDS]      libFuzzer (clang -fsanitize=fuzzer,address,undefined)
#                                    for SECONDS (default 60), from the seed corpus
#   tests/fuzz/run.sh --replay       no clang needed: build the standalone driver with
#                                    $CC + ASan/UBSan and run it over the seeds and any
#                                    crash-* files kept from earlier runs
#   tests/fuzz/run.sh --seeds        regenerate tests/fuzz/corpus/gguf/ with the GGUF writer
#
# Builds go to $FUZZ_BUILD (default build-fuzz/). New interesting inputs collect in
# tests/fuzz/corpus-run/gguf/ (git-ignored), never in the seed directory; a crash is
# written to build-fuzz/crash-<sha1> and the script exits non-zero. Replay one with
#   build-fuzz/fuzz_gguf build-fuzz/crash-<sha1>   (or run.sh --replay without clang)
# Needs clang and its runtime: apt-get install -y clang libclang-rt-14-dev
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${FUZZ_BUILD:-build-fuzz}
seeds=tests/fuzz/corpus/gguf
work=tests/fuzz/corpus-run/gguf
srcs="tests/fuzz/fuzz_gguf.c common/gguf.c common/hash.c common/util.c kernels/quant.c"
flags="-std=c11 -D_GNU_SOURCE -Icommon -Ikernels -g -O1 -fno-omit-frame-pointer"
mkdir -p "$out"

standalone() {
	${CC:-cc} $flags -DKVBLEND_FUZZ_MAIN -fsanitize=address,undefined \
		-fno-sanitize-recover=undefined -o "$out/fuzz_gguf_main" $srcs -lm -lpthread
}

case "${1:-}" in
--seeds)
	standalone
	mkdir -p "$seeds"
	"$out/fuzz_gguf_main" --write-seeds "$seeds"
	ls -l "$seeds"
	exit 0
	;;
--replay)
	standalone
	set -- "$seeds"
	for f in "$out"/crash-* "$work"; do
		[ -e "$f" ] && set -- "$@" "$f"
	done
	exec "$out/fuzz_gguf_main" "$@"
	;;
-h | --help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	exit 0
	;;
esac

secs=${1:-60}
case "$secs" in
'' | *[!0-9]*)
	echo "run.sh: '$secs' is not a number of seconds" >&2
	exit 2
	;;
esac
if ! command -v clang >/dev/null 2>&1; then
	echo "run.sh: clang not found (apt-get install -y clang libclang-rt-14-dev)" >&2
	exit 2
fi

clang $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-o "$out/fuzz_gguf" $srcs -lm -lpthread
mkdir -p "$work"
# the first directory receives new inputs; the seeds are only read
exec "$out/fuzz_gguf" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
	-dict=tests/fuzz/gguf.dict -artifact_prefix="$out/" -print_final_stats=1 \
	"$work" "$seeds"
