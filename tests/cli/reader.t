#!/bin/sh
# reader.t — the reader model (tests/models/reader.gguf; tests/rag/README):
# its tokenizer, retrained from tests/rag/rtok.py, gives the ids kvblend gives
# on the generator's text (the Python encoder the model was trained with is
# exact); and on 20 held-out questions full prefill answers well (F1 >= 0.8)
# and CacheBlend at 0.15 stays within 0.05 of it. (PyTorch's logits against
# kvblend's: build/tests/test_reader.)
. "$(dirname "$0")/tap.sh"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
need_bin tokenize bench
model=$KVBLEND_ROOT/tests/models/reader.gguf
rag=$KVBLEND_ROOT/tests/rag
[ -r "$model" ] || skip_all "tests/models/reader.gguf is absent"

# ---- the tokenizer: rtok.py's encoder against kvblend tokenize ----
python3 "$rag/rtok.py" train --vocab 1024 --out "$TAP_TMP/tok" 2>/dev/null
ok $? "rtok.py retrains the tokenizer"
python3 - "$rag" "$TAP_TMP" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import prompts, ragdata
out = sys.argv[2]
pieces = []
for i in range(12):
    it = ragdata.item(960, i, 2 + i % 9, "mixed")
    pieces += prompts.pieces(it) + [" " + a for a in it["answers"]]
pieces += ["Zebra crossing, 12 o'clock: it's 3.5 km away!\n\n\tTabs  and   spaces \n", "don't  stop\n\n\n"]
json.dump(pieces, open(out + "/pieces.json", "w"))
PY
ok $? "pieces of prompts written"
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TAP_TMP/pieces.json")
bad=0
i=0
while [ "$i" -lt "$n" ]; do
	python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))[int(sys.argv[2])])' \
		"$TAP_TMP/pieces.json" "$i" >"$TAP_TMP/piece"
	want=$(python3 "$rag/rtok.py" encode "$TAP_TMP/tok" --no-bos <"$TAP_TMP/piece")
	got=$("$KVBLEND_BIN/kvblend" tokenize -m "$model" --no-bos "$TAP_TMP/piece")
	if [ "$got" != "$want" ]; then
		[ "$bad" -eq 0 ] && diag "piece $i: kvblend $got" "piece $i: rtok.py $want"
		bad=$((bad + 1))
	fi
	i=$((i + 1))
done
is "$bad" 0 "kvblend and rtok.py give the same ids on all $n pieces"

# ---- answers: full prefill, and CacheBlend at 0.15 ----
python3 "$rag/ragdata.py" --seed 950 --count 20 --passages 6 >"$TAP_TMP/q.json"
ok $? "20 held-out questions (seed 950), 6 passages each"
run "$KVBLEND_BIN/kvblend-bench" -m "$model" --dataset "$TAP_TMP/q.json" --methods full,blend:0.15 \
	--n-gen 8 -t 2 --store "$TAP_TMP/st" --quiet --json
ok $RUN_RC "bench full,blend:0.15 (exit $RUN_RC)"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/bench.json"
read -r full blend <<EOF
$(python3 -c '
import json, sys
r = {m["method"]: m["f1"] for m in json.load(open(sys.argv[1]))["methods"]}
print(r["full"], r["blend:0.15"])' "$TAP_TMP/bench.json")
EOF
diag "F1: full $full, blend:0.15 $blend"
python3 -c "import sys; sys.exit(not $full >= 0.8)"
ok $? "full prefill answers: F1 $full >= 0.8"
python3 -c "import sys; sys.exit(not $blend >= $full - 0.05)"
ok $? "blend:0.15 within 0.05 of full: F1 $blend vs $full"

done_testing
