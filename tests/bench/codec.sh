#!/bin/sh
# codec.sh — the compressed KV dtypes side by side (kvblend-kvc(5), the README):
#   1. bytes per token of K and V and the ratio to f16 (kvblend info) for f16,
#      q8_0, kv8, kv4, kv3, kv2: a SmolLM2-135M-shaped model (synthetic weights,
#      q8_0) over 1,500 tokens of text, and the reader model over a held-out
#      six-passage prompt;
#   2. quality in each type, on the reader model (1,000 held-out questions over
#      six passages): F1 of full prefill decoding from the prompt's cache
#      written in the type (bench's full+TYPE), and of reuse and blend:0.15
#      (check layer 1, and 2: blend:0.15@2) with the chunk caches stored in
#      the type (bench --dtype); top-1 agreement and KL of blend:0.15 on
#      stories260K (CacheBlend's 2WikiMQA, 20 questions);
#   3. the codec's encode and decode speed on one core, in GB/s of f16-equivalent
#      data, over the SmolLM2-135M-shaped cache (tests/bench/codec_speed.c).
#   tests/bench/codec.sh                 (THREADS, COUNT)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
shared=${KVBLEND_TESTDATA:-$top/../shared}
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-codec.XXXXXX")
trap 'rm -rf "$work"' EXIT
types="f16 q8_0 kv8 kv4 kv3 kv2"
reader=$top/tests/models/reader.gguf

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "# 1. bytes per token of K and V (ratio to f16)"
"$bin/kvblend" quantize --synthetic smollm2-135m "$work/s.gguf" q8_0 >/dev/null 2>&1
head -c 1500 "$shared/data/text/gutenberg_pg1342_pride_and_prejudice.txt" >"$work/text.txt"
python3 "$top/tests/rag/ragdata.py" --seed 21 --count 1 --passages 6 >"$work/one.json"
python3 - "$top/tests/rag" "$work" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import prompts
it = json.load(open(sys.argv[2] + "/one.json"))[0]
open(sys.argv[2] + "/prompt.txt", "w").write("".join(prompts.pieces(it)))
PY
printf 'type'
for t in $types; do printf '\t%s' "$t"; done
echo
for m in smollm2-135m reader; do
	case $m in smollm2-135m) g=$work/s.gguf f=$work/text.txt ;; *) g=$reader f=$work/prompt.txt ;; esac
	printf '%s' "$m"
	for t in $types; do
		"$bin/kvblend" prefill -m "$g" -f "$f" --dtype "$t" -o "$work/$m.$t.kvc" -t "${THREADS:-2}"
		"$bin/kvblend" info --json "$work/$m.$t.kvc" |
			python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print("\t%.0f (%.2fx)" % (d["bytes_per_token"], d["ratio_to_f16"]), end="")'
	done
	echo
done

echo "# 2. quality in each type"
python3 "$top/tests/rag/ragdata.py" --seed 20 --count "${COUNT:-1000}" --passages 6 >"$work/q.json"
printf 'type\treader full F1\treader reuse F1\treader blend:0.15 F1\treader blend:0.15@2 F1\tstories blend:0.15 top-1\tKL\n'
for t in $types; do
	# full+TYPE: the prompt's cache written in TYPE and decoded from; the
	# others: the chunk caches stored in TYPE
	"$bin/kvblend-bench" -m "$reader" --dataset "$work/q.json" --store "$work/st-r-$t" --dtype "$t" \
		--methods "full,full+$t,reuse,blend:0.15,blend:0.15@2" --n-gen 8 -t "${THREADS:-2}" --quiet --json >"$work/r.json"
	"$bin/kvblend-bench" -m "$shared/models/stories260Ktok512.gguf" \
		--dataset "$shared/data/qa/cacheblend_wikimqa_s_clean.json" --limit 20 --max-chunk-tokens 64 --ctx 1024 \
		--store "$work/st-s-$t" --dtype "$t" --methods full,blend:0.15 --n-gen 8 -t "${THREADS:-2}" --quiet --json >"$work/s.json"
	python3 - "$t" "$work/r.json" "$work/s.json" <<'PY'
import json, sys
t = sys.argv[1]
r = {m["method"]: m for m in json.load(open(sys.argv[2]))["methods"]}
s = {m["method"]: m for m in json.load(open(sys.argv[3]))["methods"]}
print("%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.4f" % (t, r["full+" + t]["f1"], r["reuse"]["f1"], r["blend:0.15"]["f1"],
      r["blend:0.15@2"]["f1"], s["blend:0.15"]["top1_agreement"], s["blend:0.15"]["kl"]))
PY
done

echo "# 3. codec speed, one core, GB/s of f16-equivalent data (SmolLM2-135M shape, 1,500 tokens)"
cc -O2 -std=c11 -D_GNU_SOURCE -I"$top/common" -I"$top/kernels" "$top/tests/bench/codec_speed.c" \
	"$top/build/libkvblend.a" $(pkg-config --libs libzstd 2>/dev/null || echo -lzstd) -lm -fopenmp -o "$work/codec_speed"
printf 'type\tratio to f16\tencode GB/s\tdecode GB/s\n'
"$work/codec_speed" "$work/smollm2-135m.f16.kvc"
