#!/bin/sh
# demo.sh — the main job end to end: chunk a document, index the chunks and
# compute every chunk's KV cache once into a store, retrieve the chunks that
# best match a query, build the prompt's cache by blending theirs (CacheBlend)
# instead of prefilling it, and decode. The prompt (two retrieved chunks of at
# most 40 tokens, a prefix and the query) and 32 generated tokens fit
# stories260K's context of 128 tokens.
#   tests/demo.sh BIN_DIR MODEL [QUERY]
set -eu
bin=$1 model=$2 query=${3:-" The next day, Lily"}
work=${TMPDIR:-/tmp}/kvblend-demo.$$
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
export KVBLEND_STORE=$work/store
cat >"$work/story.txt" <<'TXT'
Once upon a time, there was a little girl named Lily. She lived in a small house
near the woods with her mom and her dog, Max.

Every morning, Lily and Max went to the park. Lily liked to swing high and Max
liked to chase the birds.

One day, Lily found a shiny red ball under a big tree. She threw it and Max ran
after it. They played until the sun went down.
TXT
step() { printf '\n== %s\n' "$*"; }
step "kvblend chunk: the document as chunk records"
"$bin/kvblend" chunk -m "$model" --max-tokens 40 "$work/story.txt" | tee "$work/chunks.jsonl" | cut -c 1-110
step "kvblend embed and prefill: the chunks into the store's index, each chunk's KV cache once"
"$bin/kvblend" embed -v <"$work/chunks.jsonl"
"$bin/kvblend" prefill -m "$model" -v <"$work/chunks.jsonl" >/dev/null
step "kvblend embed -q: the two chunks that best match the query, in reading order"
"$bin/kvblend" embed -q "$query" -k 2 --order doc | tee "$work/hits.jsonl" | cut -c 1-110
step "kvblend blend | kvblend decode: their caches fused for a new prompt (15% recomputed)"
"$bin/kvblend" blend -m "$model" --prefix "A story." -q "$query" -v --verify <"$work/hits.jsonl" |
	"$bin/kvblend" decode -m "$model" -n 32
step "the same prompt with a full prefill, for comparison"
"$bin/kvblend" blend -m "$model" --prefix "A story." -q "$query" --mode full <"$work/hits.jsonl" |
	"$bin/kvblend" decode -m "$model" -n 32
