#!/bin/sh
# reader.sh — every method's answer quality on the reader model
# (tests/models/reader.gguf, tests/rag/README.md), by question kind: full
# prefill, prefix caching, reuse, CacheBlend at 0.05, 0.15 and 0.3, and EPIC,
# on held-out questions from tests/rag/ragdata.py.
#
#   tests/bench/reader.sh [bench options...]
#
# SEED (default 20), COUNT (default 200), PASSAGES (default 8) pick the
# questions; METHODS the methods; THREADS (default 2) the threads. Extra
# arguments go to kvblend bench (--json, --tsv, --plot FILE).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
model=${MODEL:-$top/tests/models/reader.gguf}
[ -x "$bin/kvblend-bench" ] || { echo "reader.sh: $bin/kvblend-bench is not built (make)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-reader.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$top/tests/rag/ragdata.py" --seed "${SEED:-20}" --count "${COUNT:-200}" \
	--passages "${PASSAGES:-8}" >"$work/questions.json"
"$bin/kvblend-bench" -m "$model" --dataset "$work/questions.json" \
	--methods "${METHODS:-full,prefix,reuse,blend:0.05,blend:0.15,blend:0.3,epic}" \
	--n-gen 8 -t "${THREADS:-2}" --store "$work/store" --quiet "$@"
