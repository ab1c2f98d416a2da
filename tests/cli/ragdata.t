#!/bin/sh
# ragdata.t — tests/rag/ragdata.py, the reader model's task generator: the same
# seed gives the same bytes, item i does not depend on --count, every question
# has the schema bench reads, its answer stands in its support passages (and a
# two-hop question needs both), the kinds are what was asked, usage errors exit
# 2, and kvblend bench --dataset reads the output unchanged.
. "$(dirname "$0")/tap.sh"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
gen=$KVBLEND_ROOT/tests/rag/ragdata.py

python3 "$gen" --seed 7 --count 40 --passages 6 >"$TAP_TMP/a.json"
ok $? "generates 40 questions"
python3 "$gen" --seed 7 --count 40 --passages 6 >"$TAP_TMP/b.json"
cmp -s "$TAP_TMP/a.json" "$TAP_TMP/b.json"
ok $? "the same seed gives the same bytes"
python3 "$gen" --seed 8 --count 40 --passages 6 >"$TAP_TMP/c.json"
! cmp -s "$TAP_TMP/a.json" "$TAP_TMP/c.json"
ok $? "another seed gives other questions"
python3 "$gen" --seed 7 --count 10 --passages 6 >"$TAP_TMP/short.json"

# check.py FILE KIND PASSAGES: prints one line per problem found, nothing when sound
cat >"$TAP_TMP/check.py" <<'PY'
import json, sys
path, want_kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = json.load(open(path))
kinds = set()
for it in items:
    where = it.get("id")
    for f, t in (("question", str), ("answers", list), ("ctxs", list), ("kind", str), ("support", list)):
        if not isinstance(it.get(f), t):
            print(where, "field", f)
    if len(it["ctxs"]) != n:
        print(where, "has", len(it["ctxs"]), "passages")
    for c in it["ctxs"]:
        if not (isinstance(c.get("title"), str) and isinstance(c.get("text"), str) and c["text"]):
            print(where, "bad passage", c)
    kinds.add(it["kind"])
    ans = it["answers"][0]
    texts = [c["text"] for c in it["ctxs"]]
    sup = it["support"]
    if not any(ans in texts[i] for i in sup):
        print(where, "answer not in its support passages")
    if it["kind"] == "single" and len(sup) != 1:
        print(where, "single-hop with", len(sup), "support passages")
    if it["kind"] == "twohop":
        if len(sup) != 2:
            print(where, "two-hop with", len(sup), "support passages")
        if it["type"] == "alias":
            name = it["question"][len("Where was "):-len(" born?")]
            holder = [i for i in sup if ans in texts[i]]
            if len(holder) != 1 or name in texts[holder[0]]:
                print(where, "the answer passage names the person")
            if sum(name in t for t in texts) != 1:
                print(where, "the person is named in more than one passage")
        if n >= 3 and abs(sup[0] - sup[1]) < 2:
            print(where, "support passages adjacent")
if want_kind == "mixed":
    if kinds != {"single", "twohop"}:
        print("mixed set has kinds", sorted(kinds))
elif kinds != {want_kind}:
    print("asked for", want_kind, "got", sorted(kinds))
PY
is "$(python3 "$TAP_TMP/check.py" "$TAP_TMP/a.json" mixed 6)" "" "mixed: schema, answers in support passages, two-hop needs both"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a[:10] != b)' \
	"$TAP_TMP/a.json" "$TAP_TMP/short.json"
ok $? "item i does not depend on --count"
for k in single twohop; do
	python3 "$gen" --seed 3 --count 30 --passages 8 --kind $k >"$TAP_TMP/$k.json"
	is "$(python3 "$TAP_TMP/check.py" "$TAP_TMP/$k.json" $k 8)" "" "--kind $k --passages 8"
done
python3 "$gen" --seed 3 --count 5 --passages 1 --kind single >"$TAP_TMP/one.json"
is "$(python3 "$TAP_TMP/check.py" "$TAP_TMP/one.json" single 1)" "" "--passages 1 (single-hop)"
positions=$(python3 -c 'import json,sys; print(len({i["support"][0] for i in json.load(open(sys.argv[1]))}))' "$TAP_TMP/single.json")
[ "$positions" -ge 6 ]
ok $? "the answer passage stands at many positions ($positions of 8)"

run python3 "$gen" --seed 1 --count 2 --kind triple
is "$RUN_RC" 2 "an unknown --kind is a usage error"
run python3 "$gen" --seed 1 --count 2 --kind twohop --passages 1
is "$RUN_RC" 2 "two-hop with one passage is a usage error"
run python3 "$gen" --count 2
is "$RUN_RC" 2 "--seed is required"

if [ -x "$KVBLEND_BIN/kvblend-bench" ] && model=$(tap_shared models/stories260Ktok512.gguf); then
	python3 "$gen" --seed 5 --count 2 --passages 2 >"$TAP_TMP/small.json"
	run "$KVBLEND_BIN/kvblend-bench" --dataset "$TAP_TMP/small.json" -m "$model" --methods full \
		--ctx 1024 --n-gen 4 -t 1 --store "$TAP_TMP/st" --json
	ok $RUN_RC "kvblend bench --dataset reads the output unchanged (exit $RUN_RC)"
	[ $RUN_RC -ne 0 ] && diag "$RUN_ERR"
else
	skip "kvblend-bench or stories260K is not here"
fi
done_testing
