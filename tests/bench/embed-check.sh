#!/bin/sh
# embed-check.sh — our embeddings against llama.cpp's on the same GGUF files:
# a BERT encoder of all-MiniLM-L6-v2's shape (mean and CLS pooling) and a
# decoder of SmolLM2-135M's shape (mean and last), both f32 with synthetic
# weights and the real vocabularies. Two implementations written apart agree
# only if the layers, the GELU form, the norms, the positions and the pooling
# all agree; prints the lowest cosine and the largest difference per case.
#
#   LLAMA_CPP=/path/to/llama.cpp/build/bin tests/bench/embed-check.sh
#
# Needs llama.cpp's llama-embedding (cmake --build build --target llama-embedding).
# Environment: DIR (models, kept for reuse; default $TMPDIR/kvblend-embed-check),
# KVBLEND_BIN (default build/bin), THREADS (default 2).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
threads=${THREADS:-2}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-embed-check}
shared=${KVBLEND_TESTDATA:-$top/../shared}
[ -n "${LLAMA_CPP:-}" ] && [ -x "$LLAMA_CPP/llama-embedding" ] ||
	{ echo "embed-check.sh: set LLAMA_CPP to a llama.cpp bin directory with llama-embedding" >&2; exit 1; }
[ -x "$bin/kvblend-embed" ] || { echo "embed-check.sh: $bin/kvblend-embed is not built (make)" >&2; exit 1; }
mkdir -p "$dir"

cat >"$dir/texts.txt" <<'EOF'
The quick brown fox jumps over the lazy dog.
Hello, world!
CacheBlend fuses the KV caches of retrieved chunks and recomputes a few tokens.
unaffable résumé naïve café, 1999-2024: 42% of $3.50
Where was the wife of Francis I Rákóczi born?
EOF
awk '{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); print "{\"text\":\"" $0 "\"}" }' "$dir/texts.txt" >"$dir/texts.jsonl"

model() { # NAME SHAPE VOCAB
	[ -s "$dir/$1.gguf" ] || "$bin/kvblend-quantize" --synthetic "$2" --vocab "$3" "$dir/$1.gguf" f32 >&2
}
model minilm all-minilm-l6-v2 "$shared/tokenizers/all-MiniLM-L6-v2/tokenizer.json"
model smollm2 smollm2-135m "$shared/tokenizers/smollm2-135m-instruct/tokenizer.json"

printf '%-8s %-5s %6s %12s %12s\n' model pool texts "min cosine" "max |diff|"
for case in "minilm mean" "minilm cls" "smollm2 mean" "smollm2 last"; do
	set -- $case
	"$bin/kvblend-embed" -m "$dir/$1.gguf" --pool "$2" --vectors -t "$threads" <"$dir/texts.jsonl" >"$dir/ours"
	"$LLAMA_CPP/llama-embedding" -m "$dir/$1.gguf" -f "$dir/texts.txt" --pooling "$2" --embd-normalize 2 \
		--embd-output-format array -c 512 -b 512 -ub 512 -t "$threads" 2>"$dir/llama.err" >"$dir/theirs" ||
		{ tail -n 5 "$dir/llama.err" >&2; exit 1; }
	# ours: one record per line with "embedding":[...]; theirs: [[...],[...]] on one line
	awk -v m="$1" -v p="$2" '
		FNR == NR { s = $0; sub(/.*"embedding":\[/, "", s); sub(/\].*/, "", s); ours[n++] = s; next }
		NF { s = $0; gsub(/^\[\[|\]\]$/, "", s); k = split(s, rows, /\],\[/) }
		END {
			if (k != n) { printf "%-8s %-5s: %d vectors from kvblend, %d from llama.cpp\n", m, p, n, k; exit 1 }
			mincos = 2; maxd = 0
			for (i = 0; i < n; i++) {
				da = split(ours[i], a, ","); db = split(rows[i + 1], b, ",")
				if (da != db) { printf "%-8s %-5s: dimensions %d and %d\n", m, p, da, db; exit 1 }
				dot = 0
				for (j = 1; j <= da; j++) { dot += a[j] * b[j]; d = a[j] - b[j]; if (d < 0) d = -d; if (d > maxd) maxd = d }
				if (dot < mincos) mincos = dot
			}
			printf "%-8s %-5s %6d %12.7f %12.2e\n", m, p, n, mincos, maxd
		}' "$dir/ours" "$dir/theirs"
done
echo "# f32 synthetic weights, $(wc -l <"$dir/texts.txt") texts; llama.cpp prints 7 decimals"
