#!/bin/sh
# needle.sh — token eviction on the reader model when the fact is early: single-hop
# questions of tests/rag/ragdata.py over P passages (default 6) whose answer is
# found only in the first two passages, the question at the end of the prompt;
# kvblend bench with full prefill, then each eviction policy keeping SHARE of
# the prompt (default 0.2), alone and after blend:0.15. SnapKV, whose window
# holds the question, should keep the fact; StreamingLLM (sinks and the most
# recent tokens) should lose it.
#   tests/bench/needle.sh [bench options...]     (SEED, COUNT, PASSAGES, SHARE, METHODS)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
model=${MODEL:-$top/tests/models/reader.gguf}
share=${SHARE:-0.2}
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-needle.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$top/tests/rag/ragdata.py" --seed "${SEED:-30}" --count "${COUNT:-400}" --passages "${PASSAGES:-6}" \
	--kind single >"$work/all.json"
python3 - "$work/all.json" "$work/needle.json" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))
keep = []
for it in items:
    where = [i for i, c in enumerate(it["ctxs"]) if any(a in c["text"] for a in it["answers"])]
    if where and max(where) <= 1:
        keep.append(it)
json.dump(keep, open(sys.argv[2], "w"))
print(f"needle.sh: {len(keep)} of {len(items)} questions have their answer only in the first two passages",
      file=sys.stderr)
PY
m="full"
for p in streamingllm h2o snapkv pyramidkv tova cake; do m="$m,$p:$share"; done
m=${METHODS:-"$m,blend:0.15,blend:0.15+snapkv:$share,blend:0.15+streamingllm:$share"}
"$bin/kvblend-bench" -m "$model" --dataset "$work/needle.json" --methods "$m" --n-gen 8 \
	-t "${THREADS:-2}" --store "$work/store" --quiet "$@"
