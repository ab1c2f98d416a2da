#!/bin/sh
# run.sh — build and run the fuzz targets: gguf (the GGUF reader), kvc (the
# .kvc KV-cache reader), dataset (bench's dataset reader), model (the decoder
# and BERT loaders and their tokenizers, as kvblend embed opens a model),
# tokjson (the tokenizer.json importer, and the tokenizer loaded from its keys),
# safetensors (the reader of Hugging Face weight files, for quantize --hf),
# docformat (chunk's document formats: gzip, zstd, HTML, charsets, PDF pages) and
# s3list (the remote tier's S3 ListObjectsV2 page parser, for evict --remote).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#                                    libFuzzer (clang -fsanitize=fuzzer,address,undefined)
#                                    from the seed corpus, SECONDS in all (default 60),
#                                    shared evenly by the targets (default: all of them)
#   tests/fuzz/run.sh --replay [TARGET...]
#                                    no clang needed: build the standalone drivers with
#                                    $CC + ASan/UBSan and run each over its seeds and any
#                                    crash files kept from earlier runs
#   tests/fuzz/run.sh --seeds [TARGET...]
#                                    regenerate tests/fuzz/corpus/TARGET/ with the
#                                    target's writer (GGUF writer, kvc writer, literal
#                                    dataset files)
#
# Builds go to $FUZZ_BUILD (default build-fuzz/). New interesting inputs collect in
# tests/fuzz/corpus-run/TARGET/ (git-ignored), never in the seed directory; a crash is
# written to build-fuzz/TARGET-crash-<sha1> and the script exits non-zero. Replay one with
#   build-fuzz/fuzz_TARGET build-fuzz/TARGET-crash-<sha1>   (or run.sh --replay without clang)
# Needs clang and its runtime: apt-get install -y clang libclang-rt-14-dev
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${FUZZ_BUILD:-build-fuzz}
all_targets="gguf kvc dataset model tokjson safetensors docformat s3list"
flags="-std=c11 -D_GNU_SOURCE -Icommon -Ikernels $(pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2) -g -O1 -fno-omit-frame-pointer"
mkdir -p "$out"

# srcs TARGET: the sources of a target
srcs() {
	case $1 in
	# gguf_open takes a model by URL (pull.h), so the reader links the downloader too
	gguf) echo "tests/fuzz/fuzz_gguf.c common/gguf.c common/hash.c common/util.c kernels/quant.c common/pull.c common/remote.c common/fetch.c" ;;
	dataset) echo "tests/fuzz/fuzz_dataset.c common/dataset.c common/util.c" ;;
	safetensors) echo "tests/fuzz/fuzz_safetensors.c common/safetensors.c common/util.c kernels/quant.c" ;;
	docformat) echo "tests/fuzz/fuzz_docformat.c common/docformat.c common/htmltext.c common/pdftext.c common/util.c" ;;
	s3list) echo "tests/fuzz/fuzz_s3list.c common/remote.c common/fetch.c common/hash.c common/util.c" ;;
	# the cache reader decodes rows with the kernels (F16C), which need their ISA flags
	model | tokjson | kvc) echo "tests/fuzz/fuzz_$1.c" ;; # and the whole library: lib()
	*)
		echo "run.sh: unknown target '$1' (targets: $all_targets)" >&2
		exit 2
		;;
	esac
}

# libs TARGET: the libraries it links beyond libm and libpthread
libs() {
	case $1 in
	gguf) pkg-config --libs libxxhash libcurl 2>/dev/null || echo -lxxhash -lcurl ;; # the model fingerprint; models by URL
	dataset | safetensors) pkg-config --libs jansson 2>/dev/null || echo -ljansson ;;
	docformat) pkg-config --libs libxml-2.0 zlib libzstd 2>/dev/null || echo -lxml2 -lz -lzstd ;;
	s3list) pkg-config --libs libcurl 2>/dev/null || echo -lcurl ;;
	model | tokjson | kvc) pkg-config --libs jansson libpcre2-8 libcurl sqlite3 libxxhash libzstd 2>/dev/null ||
		echo -ljansson -lpcre2-8 -lcurl -lsqlite3 -lxxhash -lzstd ;;
	esac
}

# lib TARGET fuzzer|standalone: the library a target links, built by the
# Makefile (its kernels need their own ISA flags) with the target's sanitizers,
# without OpenMP; prints its path, or nothing for a target of a few sources
lib() {
	case $1 in model | tokjson | kvc) ;; *) return 0 ;; esac
	if [ "$2" = fuzzer ]; then
		make -s -j"${JOBS:-2}" CC=clang OPENMP=0 B="$out/lib-fuzzer" CFLAGS="-O1 -fsanitize=fuzzer-no-link,address,undefined \
			-fno-sanitize-recover=undefined -fno-omit-frame-pointer" "$out/lib-fuzzer/libkvblend.a" >&2
		echo "$out/lib-fuzzer/libkvblend.a"
	else
		make -s -j"${JOBS:-2}" CC="${CC:-cc}" OPENMP=0 DEBUG=1 B="$out/lib-standalone" "$out/lib-standalone/libkvblend.a" >&2
		echo "$out/lib-standalone/libkvblend.a"
	fi
}

standalone() {
	# shellcheck disable=SC2046,SC2086
	${CC:-cc} $flags -DKVBLEND_FUZZ_MAIN -fsanitize=address,undefined \
		-fno-sanitize-recover=undefined -o "$out/fuzz_$1_main" $(srcs "$1") $(lib "$1" standalone) $(libs "$1") \
		-lm -lpthread
}

mode=run
case "${1:-}" in
--seeds | --replay)
	mode=${1#--}
	shift
	;;
-h | --help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	exit 0
	;;
esac

secs=60
if [ "$mode" = run ] && [ $# -gt 0 ]; then
	secs=$1
	shift
	case "$secs" in
	'' | *[!0-9]*)
		echo "run.sh: '$secs' is not a number of seconds" >&2
		exit 2
		;;
	esac
fi
targets=${*:-$all_targets}
for t in $targets; do srcs "$t" >/dev/null; done

case $mode in
seeds)
	for t in $targets; do
		standalone "$t"
		mkdir -p "tests/fuzz/corpus/$t"
		"$out/fuzz_${t}_main" --write-seeds "tests/fuzz/corpus/$t"
		ls -l "tests/fuzz/corpus/$t"
	done
	exit 0
	;;
replay)
	bad=0
	for t in $targets; do
		standalone "$t"
		set -- "tests/fuzz/corpus/$t"
		for f in "$out/$t"-crash-* "tests/fuzz/corpus-run/$t"; do
			[ -e "$f" ] && set -- "$@" "$f"
		done
		# crash files of the gguf target from before targets had their own prefix
		if [ "$t" = gguf ]; then
			for f in "$out"/crash-*; do
				[ -e "$f" ] && set -- "$@" "$f"
			done
		fi
		"$out/fuzz_${t}_main" "$@" || bad=1
	done
	exit $bad
	;;
esac

if ! command -v clang >/dev/null 2>&1; then
	echo "run.sh: clang not found (apt-get install -y clang libclang-rt-14-dev)" >&2
	exit 2
fi
n=$(echo "$targets" | wc -w)
each=$((secs / n))
[ $each -ge 1 ] || each=1
for t in $targets; do
	# shellcheck disable=SC2046,SC2086
	clang $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o "$out/fuzz_$t" $(srcs "$t") $(lib "$t" fuzzer) $(libs "$t") -lm -lpthread
	work=tests/fuzz/corpus-run/$t
	mkdir -p "$work"
	echo "run.sh: fuzz_$t for $each s"
	# the first directory receives new inputs; the seeds are only read
	maxlen=16384
	[ "$t" = model ] && maxlen=32768 # the seed models are up to 26 KB
	"$out/fuzz_$t" -max_total_time="$each" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
		-dict="tests/fuzz/$t.dict" -artifact_prefix="$out/$t-" -print_final_stats=1 \
		"$work" "tests/fuzz/corpus/$t"
done
