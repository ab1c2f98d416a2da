#!/bin/sh
# demo.sh — the main job end to end, answering a question with the reader
# model (tests/models/reader.gguf, tests/rag/README): a question about invented
# people and towns from tests/rag/ragdata.py, its eight passages written as one
# document; cut it into chunks (one per passage), index them and compute each
# chunk's KV cache once into a store; retrieve the passages that best match
# the question, build the prompt's cache by blending theirs (CacheBlend, 15% of
# the cached tokens recomputed) instead of prefilling it, and decode the
# answer. The same prompt with a full prefill, and the expected answer, follow.
#   tests/demo.sh BIN_DIR MODEL [SEED]
# SEED picks the question (default 3; seeds from 1000 on were used in training).
set -eu
bin=$1 model=$2 seed=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${TMPDIR:-/tmp}/kvblend-demo.$$
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
export KVBLEND_STORE=$work/store
step() { printf '\n== %s\n' "$*"; }

step "tests/rag/ragdata.py: a question and its passages, written as one document"
python3 "$root/tests/rag/ragdata.py" --seed "$seed" --count 1 --passages 8 --kind single >"$work/q.json"
# the document, and the prompt's prefix and query exactly as the reader was trained on them
python3 - "$root/tests/rag" "$work" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import prompts
w = sys.argv[2]
it = json.load(open(w + "/q.json"))[0]
def put(name, text):
    with open(w + "/" + name, "w") as f:
        f.write(text)
put("doc.txt", "".join(prompts.chunk(c) for c in it["ctxs"]))
put("question.txt", it["question"])
put("expected.txt", it["answers"][0])
put("prefix.txt", prompts.PREFIX)
put("query.txt", prompts.query(it["question"]))
PY
head -c 300 "$work/doc.txt"
printf '...\n(%s bytes, 8 passages)\nquestion: %s\n' "$(wc -c <"$work/doc.txt")" "$(cat "$work/question.txt")"

step "kvblend chunk: the document as chunk records, cut after each passage"
"$bin/kvblend" chunk -m "$model" --split '\.\n\n' --max-tokens 0 "$work/doc.txt" >"$work/chunks.jsonl"
cut -c 1-110 "$work/chunks.jsonl"

step "kvblend embed and prefill: the chunks into the store's index, each chunk's KV cache once"
"$bin/kvblend" embed -v <"$work/chunks.jsonl"
"$bin/kvblend" prefill -m "$model" -v <"$work/chunks.jsonl" >/dev/null

step "kvblend embed -q: the three passages that best match the question, in reading order"
"$bin/kvblend" embed -q "$(cat "$work/question.txt")" -k 3 --order doc | tee "$work/hits.jsonl" | cut -c 1-110

step "kvblend blend | kvblend decode: their caches fused for the new prompt (15% recomputed)"
"$bin/kvblend" blend -m "$model" --prefix-file "$work/prefix.txt" --query-file "$work/query.txt" -v \
	<"$work/hits.jsonl" 2>"$work/blend.err" | "$bin/kvblend" decode -m "$model" -n 8 >"$work/blend.txt"
grep -E 'recomput|tokens' "$work/blend.err" || cat "$work/blend.err"

step "the same prompt with a full prefill, for comparison"
"$bin/kvblend" blend -m "$model" --prefix-file "$work/prefix.txt" --query-file "$work/query.txt" --mode full \
	<"$work/hits.jsonl" | "$bin/kvblend" decode -m "$model" -n 8 >"$work/full.txt"

step "the answers"
printf 'question:       %s\n' "$(cat "$work/question.txt")"
printf 'expected:       %s\n' "$(cat "$work/expected.txt")"
printf 'blend (15%%):    %s\n' "$(sed 's/^ *//' "$work/blend.txt")"
printf 'full prefill:   %s\n' "$(sed 's/^ *//' "$work/full.txt")"
echo "(time to first token: see kvblend bench; on a model this small a prompt takes about a millisecond"
echo " either way, and the ratio of two such times is noise)"
