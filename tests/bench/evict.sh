#!/bin/sh
# evict.sh — the token-eviction table of kvblend-evict(1) and the README: every
# policy at 10%, 20% and 50% of the prompt, alone (after full prefill) and after
# blend:0.15, by kvblend bench, one run per share:
#   reader      tests/models/reader.gguf on generated questions (tests/rag/ragdata.py,
#               SEED 20, COUNT 100, PASSAGES 6): F1 and exact match by kind
#   stories     stories260K on CacheBlend's 2WikiMQA (first 20 questions, chunks cut
#               to 64 tokens): it cannot answer, so read top-1 agreement and KL
#   tests/bench/evict.sh [reader|stories] [bench options...]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
which=${1:-reader}
[ $# -gt 0 ] && shift
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-evict.XXXXXX")
trap 'rm -rf "$work"' EXIT
case $which in
reader)
	model=$top/tests/models/reader.gguf
	python3 "$top/tests/rag/ragdata.py" --seed "${SEED:-20}" --count "${COUNT:-100}" --passages "${PASSAGES:-6}" \
		>"$work/q.json"
	set -- --dataset "$work/q.json" "$@"
	;;
stories)
	shared=${KVBLEND_TESTDATA:-$top/../shared}
	model=$shared/models/stories260Ktok512.gguf
	set -- --dataset "$shared/data/qa/cacheblend_wikimqa_s_clean.json" --limit "${COUNT:-20}" \
		--max-chunk-tokens 64 --ctx 1024 "$@"
	;;
*)
	echo "evict.sh: reader or stories, not '$which'" >&2
	exit 2
	;;
esac
for share in 0.1 0.2 0.5; do
	m=full,blend:0.15
	for p in streamingllm h2o snapkv pyramidkv tova cake; do m="$m,$p:$share,blend:0.15+$p:$share"; done
	"$bin/kvblend-bench" -m "$model" --methods "$m" --n-gen 8 -t "${THREADS:-2}" --store "$work/store" --quiet "$@"
	echo
done
