#!/bin/sh
# bench-kind.t — kvblend bench on the reader model's questions
# (tests/rag/ragdata.py, with "kind" single or twohop), on stories260K: the
# table has an EM column beside F1 and one table per kind after the main one;
# the kinds' question counts add up to the total; full agrees with itself in
# every kind; --json has "by_kind" whose numbers are the per-kind means of
# the per-question ones, and exact match in [0, 1] and never above F1; --tsv
# keeps its old columns and adds exact_match and kind ("all" for the rows over
# every question); exact match is 1 where the gold answer is full's own answer
# written differently (case, punctuation, an article); a dataset with one kind
# (or none) is not split, questions without a kind are kind "none"; a "kind"
# that is not a string is an error naming the record.
. "$(dirname "$0")/tap.sh"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
need_bin bench
need_shared models/stories260Ktok512.gguf
model=$SHARED/models/stories260Ktok512.gguf
bench=$KVBLEND_BIN/kvblend-bench
gen=$KVBLEND_ROOT/tests/rag/ragdata.py
ds=$TAP_TMP/rag.json
# 6 questions of 3 passages: 2 single-hop, 4 two-hop. The prompts (~320 tokens)
# are longer than stories260K's context of 128: --ctx lets them run past it.
python3 "$gen" --seed 3 --count 6 --passages 3 >"$ds"
ok $? "ragdata.py writes 6 questions"
opts="-m $model --max-chunk-tokens 30 --n-gen 4 -t 1 --store $TAP_TMP/st --ctx 1024 --quiet"
methods=full,reuse,blend:0.15

# the table: the main one, then one per kind, in the order of their names
run "$bench" --dataset "$ds" $opts --methods $methods
ok $RUN_RC "the table (exit $RUN_RC)"
[ $RUN_RC -ne 0 ] && diag "$RUN_ERR"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/table"
is "$(grep '^#' "$TAP_TMP/table" | sed 's/, .*//; s/ (.*//')" "# stories260Ktok512.gguf on rag.json
# kind single: 2 questions
# kind twohop: 4 questions" "a title line, then one line per kind, single before twohop"
is "$(grep -c '^method .*F1 *EM *1st agree' "$TAP_TMP/table")" 3 "each table's header has EM beside F1"
# rows: method, TTFT, p90, load, speedup, decode, F1, EM, 1st agree, top-1, KL, ...
rows=$(awk '$1 ~ /^(full|reuse|blend:0\.15)$/ { print $1 }' "$TAP_TMP/table" | paste -sd ' ')
is "$rows" "full reuse blend:0.15 full reuse blend:0.15 full reuse blend:0.15" "a row per method in each table"
is "$(awk '$1 == "full" { print $9, $10, $11 }' "$TAP_TMP/table" | sort -u)" "1.000 1.000 0.00000" \
	"full's first-token and top-1 agreement are 1, its KL 0, in every table"
bad=$(awk '$1 ~ /^(full|reuse|blend:)/ && !($8 >= 0 && $8 <= 1 && $8 <= $7 + 1e-9) { print }' "$TAP_TMP/table")
is "$bad" "" "EM is in [0, 1] and not above F1 in every row"
total=$(sed -n 's/^# stories.*: \([0-9]*\) questions.*/\1/p' "$TAP_TMP/table")
sum=$(sed -n 's/^# kind [a-z]*: \([0-9]*\) questions.*/\1/p' "$TAP_TMP/table" | awk '{ n += $1 } END { print n }')
is "$total:$sum" "6:6" "the kinds' counts add up to the total"

# --json: by_kind, and its numbers are the kinds' means of the questions'
run "$bench" --dataset "$ds" $opts --methods $methods --json
ok $RUN_RC "--json (exit $RUN_RC)"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/out.json"
cat >"$TAP_TMP/check.py" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
bad = []
qs = j["per_question"]
kinds = sorted({q["kind"] for q in qs})
if list(j["by_kind"]) != kinds or kinds != ["single", "twohop"]:
    bad.append("by_kind keys %s, kinds %s" % (list(j["by_kind"]), kinds))
order = [m["method"] for m in j["methods"]]
if order != ["full", "reuse", "blend:0.15"]:
    bad.append("methods %s" % order)
counts = {k: sum(q["kind"] == k for q in qs) for k in kinds}
if sum(counts.values()) != j["questions"] or sum(ms[0]["questions"] for ms in j["by_kind"].values()) != j["questions"]:
    bad.append("counts %s of %d" % (counts, j["questions"]))
groups = [("all", j["methods"], qs)] + [(k, j["by_kind"][k], [q for q in qs if q["kind"] == k]) for k in kinds]
for kind, ms, sub in groups:
    if [m["method"] for m in ms] != order:
        bad.append("%s: methods %s" % (kind, [m["method"] for m in ms]))
    for m in ms:
        name = "%s %s" % (kind, m["method"])
        per = [q["methods"][m["method"]] for q in sub]
        if m["questions"] != len(sub):
            bad.append("%s: %d questions, %d in per_question" % (name, m["questions"], len(sub)))
        if not 0 <= m["exact_match"] <= 1:
            bad.append("%s: exact_match %s" % (name, m["exact_match"]))
        for key in ("f1", "exact_match"):
            mean = sum(p[key] for p in per) / len(per)
            if abs(m[key] - mean) > 1e-9:
                bad.append("%s: %s %s, the questions' mean %s" % (name, key, m[key], mean))
        first = sum(p["first_token_agrees"] for p in per) / len(per)
        if abs(m["first_token_agreement"] - first) > 1e-9:
            bad.append("%s: first_token_agreement %s, the questions' %s" % (name, m["first_token_agreement"], first))
        if m["method"] == "full" and (m["first_token_agreement"] != 1 or m["top1_agreement"] != 1 or m["kl"] != 0):
            bad.append("%s: not 1, 1, 0" % name)
        if not (m["ttft_ms_median"] > 0 and m["ttft_ms_p90"] >= m["ttft_ms_median"] and 0 < m["recompute"] <= 1):
            bad.append("%s: TTFT or recompute" % name)
    # the kinds' steps add up to every question's
    if kind != "all":
        continue
    for i, m in enumerate(ms):
        if sum(j["by_kind"][k][i]["steps"] for k in kinds) != m["steps"]:
            bad.append("steps of %s do not add up" % m["method"])
for q in qs:
    for name, p in q["methods"].items():
        if p["exact_match"] not in (0, 1) or p["exact_match"] > p["f1"]:
            bad.append("%s %s: exact_match %s, f1 %s" % (q["id"], name, p["exact_match"], p["f1"]))
print("; ".join(bad))
PY
is "$(python3 "$TAP_TMP/check.py" "$TAP_TMP/out.json" 2>&1)" "" \
	"--json parses; by_kind per kind (counts add up, full 1 and 0 KL, means of the questions, EM in [0, 1])"

# --tsv: the old 15 columns in place, then exact_match and kind, then kv_kept and evict_ms_median
run "$bench" --dataset "$ds" $opts --methods $methods --tsv
ok $RUN_RC "--tsv (exit $RUN_RC)"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/out.tsv"
is "$(awk -F '\t' '{ print NF }' "$TAP_TMP/out.tsv" | sort -u)" 19 "--tsv: 19 columns on every line"
is "$(head -1 "$TAP_TMP/out.tsv" | cut -f1,9,15-19)" "method	quality	peak_rss_mib	exact_match	kind	kv_kept	evict_ms_median" \
	"--tsv: the old columns keep their places; exact_match, kind, kv_kept, evict_ms_median after them"
is "$(sed 1d "$TAP_TMP/out.tsv" | cut -f1,17 | tr '\t\n' ': ')" \
	"full:all reuse:all blend:0.15:all full:single reuse:single blend:0.15:single full:twohop reuse:twohop blend:0.15:twohop " \
	"--tsv: the rows over every question ('all'), then each kind's"
em=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join("%.4f" % m["exact_match"] for m in j["methods"]))' "$TAP_TMP/out.json")
is "$(awk -F '\t' '$17 == "all" { printf "%s ", $16 }' "$TAP_TMP/out.tsv")" "$em " "--tsv: exact_match is --json's"

# exact match 1: the gold answer is full's own, in capitals, with "The" and a full stop
python3 - "$TAP_TMP/out.json" "$ds" >"$TAP_TMP/gold.json" <<'PY'
import json, sys
got = {q["id"]: q["methods"]["full"]["answer"] for q in json.load(open(sys.argv[1]))["per_question"]}
items = json.load(open(sys.argv[2]))
for it in items:
    it["answers"] = ["The " + got[it["id"]].upper().strip() + "."]
json.dump(items, sys.stdout)
PY
run "$bench" --dataset "$TAP_TMP/gold.json" $opts --methods full --json
check=$(printf '%s\n' "$RUN_OUT" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print([m["exact_match"] for m in j["methods"] + [ms[0] for ms in j["by_kind"].values()]],
      sorted({(q["methods"]["full"]["exact_match"], q["methods"]["full"]["f1"]) for q in j["per_question"]}))' 2>&1)
is "$RUN_RC:$check" "0:[1.0, 1.0, 1.0] [(1.0, 1.0)]" "gold = full's answer written otherwise: exact match and F1 are 1 (overall and by kind)"

# one kind, or none: one table; some questions without a kind: kind "none"
python3 "$gen" --seed 3 --count 3 --passages 3 --kind twohop >"$TAP_TMP/twohop.json"
run "$bench" --dataset "$TAP_TMP/twohop.json" $opts --methods full --json
check=$(printf '%s\n' "$RUN_OUT" | python3 -c 'import json, sys; j = json.load(sys.stdin); print("by_kind" in j, j["questions"], j["per_question"][0]["kind"])' 2>&1)
is "$RUN_RC:$check" "0:False 3 twohop" "one kind: no by_kind (each question still names its kind)"
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); [i.pop("kind") for i in a]; json.dump(a, sys.stdout)' "$ds" >"$TAP_TMP/nokind.json"
run "$bench" --dataset "$TAP_TMP/nokind.json" $opts --methods full,reuse --tsv
is "$RUN_RC:$(grep -c '# kind' "$TAP_TMP/out"):$(sed 1d "$TAP_TMP/out" | cut -f17 | paste -sd ' ')" "0:0:all all" \
	"no kinds: only the rows over every question"
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); a[0].pop("kind"); json.dump(a, sys.stdout)' "$ds" >"$TAP_TMP/some.json"
run "$bench" --dataset "$TAP_TMP/some.json" $opts --methods full
is "$RUN_RC:$(grep '^# kind' "$TAP_TMP/out" | sed 's/, .*//' | paste -sd ';')" \
	"0:# kind none: 1 question;# kind single: 2 questions;# kind twohop: 3 questions" \
	"a question without a kind among others is kind none"

# a kind that is not a string: exit 1, one line naming the record
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); a[1]["kind"] = 2; json.dump(a, sys.stdout)' "$ds" >"$TAP_TMP/bad.json"
run "$bench" --dataset "$TAP_TMP/bad.json" $opts
is "$RUN_RC:$RUN_ERR" "1:kvblend-bench: '$TAP_TMP/bad.json': .[1]: \"kind\" is not a string" "a kind that is a number: exit 1 naming the record"
done_testing
