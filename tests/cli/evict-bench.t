#!/bin/sh
# kvblend bench --methods with token eviction (METHOD+POLICY:SHARE, POLICY:SHARE)
# on the reader model (tests/models/reader.gguf) and generated questions: the
# share kept is as asked, the first token is untouched (it comes from the
# whole cache), a share of 1 is the identity, full stays the reference, a
# needle in an early passage is kept by snapkv far more often than by
# streamingllm (tests/bench/needle.sh), and bad method lists are usage errors.
. "$(dirname "$0")/tap.sh"
need_bin bench
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
bench=$KVBLEND_BIN/kvblend-bench
model=$KVBLEND_ROOT/tests/models/reader.gguf
ds=$TAP_TMP/q.json
python3 "$KVBLEND_ROOT/tests/rag/ragdata.py" --seed 7 --count 4 --passages 4 >"$ds"
opts="-m $model --store $TAP_TMP/st --n-gen 6 -t 2 --quiet"

run "$bench" --dataset "$ds" $opts --methods snapkv:1,full,snapkv:0.5,blend:0.15+streamingllm:0.3,h2o:0.3 --json
ok $RUN_RC "bench with eviction methods runs: $RUN_ERR"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/out.json"
python3 - "$TAP_TMP/out.json" >"$TAP_TMP/check" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = {x["method"]: x for x in r["methods"]}
print("labels", " ".join(x["method"] for x in r["methods"]))
print("kept", "%.2f %.2f %.2f" % (m["snapkv:0.5"]["kv_kept"], m["blend:0.15+streamingllm:0.3"]["kv_kept"],
                                  m["h2o:0.3"]["kv_kept"]))
print("policy", m["blend:0.15+streamingllm:0.3"]["evict"]["policy"], m["blend:0.15+streamingllm:0.3"]["mode"])
print("first", min(m[k]["first_token_agreement"] for k in ("snapkv:0.5", "h2o:0.3")))
s1, f = m["snapkv:1"], m["full"]
print("identity", s1["kv_kept"] == 1 and s1["top1_agreement"] == 1 and s1["kl"] < 1e-9 and s1["f1"] == f["f1"])
print("full", "evict" in f)
PY
check=$(cat "$TAP_TMP/check")
like "$check" "*labels snapkv:1 full snapkv:0.5 blend:0.15+streamingllm:0.3 h2o:0.3*" "the methods as listed"
like "$check" "*kept 0.50 0.30 0.30*" "the KV kept is the share asked"
like "$check" "*policy streamingllm blend*" "blend:0.15+streamingllm:0.3: blend's mode, then streamingllm"
like "$check" "*first 1.0*" "the first token comes from the whole cache: it agrees with full's"
like "$check" "*identity True*" "snapkv:1 keeps everything: full's answers, top-1 agreement 1, KL 0"
like "$check" "*full False*" "full is the reference, not an evicting method"

run "$bench" --dataset "$ds" $opts --methods full,snapkv:0.5
like "$RUN_OUT" "*KV kept*evict ms*snapkv:0.5 *50.0%*" "the table shows the KV kept"

# the needle: the answer only in the first two of six passages, the question at the end
run env COUNT=120 METHODS=full,snapkv:0.2,streamingllm:0.2 sh "$KVBLEND_ROOT/tests/bench/needle.sh" --json
ok $RUN_RC "needle.sh runs: $(printf '%s\n' "$RUN_ERR" | head -1)"
printf '%s\n' "$RUN_OUT" | python3 -c '
import json, sys
m = {x["method"]: x["f1"] for x in json.load(sys.stdin)["methods"]}
print("%.3f %.3f %.3f" % (m["full"], m["snapkv:0.2"], m["streamingllm:0.2"]))' >"$TAP_TMP/needle"
read -r f s l <"$TAP_TMP/needle"
python3 -c "import sys; sys.exit(0 if $f >= 0.5 and $s >= 1.5 * $l and $s < $f else 1)"
ok $? "needle at 20%: snapkv keeps the fact far more often than streamingllm (F1 full $f, snapkv $s, streamingllm $l)"

run "$bench" --dataset "$ds" $opts --methods full,snapkv
[ $RUN_RC -eq 2 ]; ok $? "a policy without its share: exit 2"
like "$RUN_ERR" "*snapkv:SHARE*" "and says how to give it"
run "$bench" --dataset "$ds" $opts --methods full,blend:0.15+lru:0.2
[ $RUN_RC -eq 2 ]; ok $? "an unknown policy: exit 2"
like "$RUN_ERR" "*unknown eviction policy 'lru'*" "and names it"
run "$bench" --dataset "$ds" $opts --methods full,snapkv:1.5
[ $RUN_RC -eq 2 ]; ok $? "a share over 1: exit 2"
done_testing
