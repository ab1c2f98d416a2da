#!/bin/sh
# reader.t — the reader model (tests/models/reader.gguf; tests/rag/README.md):
# its tokenizer, retrained by tests/rag/rtok.py, gives the ids kvblend gives on
# the generator's text and on text of other shapes (so the Python encoder the
# model was trained with is exact). PyTorch's logits against kvblend's:
# build/tests/test_reader. The quality test of issue 12 (full prefill F1 >=
# 0.8 on 20 held-out questions, CacheBlend at 0.15 within 0.05) comes with a
# model that meets it; the interim model does not (tests/rag/README.md).
. "$(dirname "$0")/tap.sh"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
need_bin tokenize
model=$KVBLEND_ROOT/tests/models/reader.gguf
rag=$KVBLEND_ROOT/tests/rag
[ -r "$model" ] || skip_all "tests/models/reader.gguf is absent"

# ---- the tokenizer: rtok.py's encoder against kvblend tokenize ----
python3 "$rag/rtok.py" train --vocab 1024 --out "$TAP_TMP/tok" 2>/dev/null
ok $? "rtok.py retrains the tokenizer"
# every piece of 12 held-out prompts (and two texts of other shapes): the ids
# of rtok.py's encoder against kvblend tokenize's; prints "N BAD" after the
# first difference, if any, as a comment
python3 - "$rag" "$TAP_TMP/tok" "$KVBLEND_BIN/kvblend" "$model" >"$TAP_TMP/cmp" <<'PY'
import subprocess, sys
sys.path.insert(0, sys.argv[1])
import prompts, ragdata, rtok
tok = rtok.Tokenizer.load(sys.argv[2])
pieces = ["Zebra crossing, 12 o'clock: it's 3.5 km away!\n\n\tTabs  and   spaces \n", "don't  stop\n\n\n"]
for i in range(12):
    it = ragdata.item(960, i, 2 + i % 9, "mixed")
    pieces += prompts.pieces(it) + [" " + a for a in it["answers"]]
bad = 0
for p in pieces:
    got = subprocess.run([sys.argv[3], "tokenize", "-m", sys.argv[4], "--no-bos"], input=p.encode(),
                         capture_output=True, check=True).stdout.split()
    want = [str(i).encode() for i in tok.encode(p)]
    if got != want:
        if not bad:
            print("# %r: kvblend %s, rtok.py %s" % (p[:40], got[:8], want[:8]))
        bad += 1
print(len(pieces), bad)
PY
ok $? "the comparison ran"
grep '^#' "$TAP_TMP/cmp"
read -r n bad <<EOF
$(grep -v '^#' "$TAP_TMP/cmp")
EOF
is "$bad" 0 "kvblend and rtok.py give the same ids on all $n pieces"

done_testing
