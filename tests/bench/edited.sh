#!/bin/sh
# edited.sh — reuse across edits (kvblend prefill/blend/bench --reuse-similar)
# beside a fresh prefill of the edited chunks, for four kinds of edit made
# once in every chunk or passage: a word replaced, a sentence replaced, one
# dropped, one inserted.
#
# 1. Time to a usable cache: two shared plain texts (../shared/data/text,
#    SOURCES.md; TEXTS, BYTES of each) cut into chunks of at most 256 tokens
#    by the synthetic SmolLM2-135M shape (kvblend quantize --synthetic
#    smollm2-135m, q8_0) and prefilled into a store; then, for each kind, the
#    edited chunks prefilled into a copy of that store from scratch, and into
#    another copy with --reuse-similar: each prefill's wall-clock seconds
#    (model load, lookups, compute or find + align + rebuild, and the store's
#    writes: the time until the caches are usable), and the share of tokens
#    reused.
# 2. Fidelity: the reader model (tests/models/reader.gguf) on COUNT questions
#    from tests/rag/ragdata.py; its store warmed with the original passages;
#    for each kind an edited copy of the questions (the edits leave the gold
#    answers' words alone) benched with methods full, reuse and blend:0.15
#    twice: the edited passages' caches computed fresh, and built with
#    --reuse-similar from the originals. F1, top-1 agreement and KL against
#    full prefill, side by side.
#
#   tests/bench/edited.sh            THREADS (default 2), COUNT (default 100)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
shared=${KVBLEND_TESTDATA:-$top/../shared}
threads=${THREADS:-2} count=${COUNT:-100} bytes=${BYTES:-8000}
texts=${TEXTS:-"gutenberg_pg11_alice_in_wonderland.txt rfc2616.txt"}
[ -x "$bin/kvblend-prefill" ] || { echo "edited.sh: $bin/kvblend-prefill is not built (make)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-edited.XXXXXX")
trap 'rm -rf "$work"' EXIT

# edit.py KIND < records/questions > edited: one edit of KIND in the middle of
# every chunk record's text (mode records) or every passage (mode qa), never
# touching a gold answer's words
cat >"$work/edit.py" <<'EOF'
import json, re, sys
mode, kind = sys.argv[1], sys.argv[2]
NEW = "Nobody there had ever seen anything like it before."
def edit(text, keep):
    sents = re.split(r'(?<=[.!?])\s+', text.strip())
    ok = [i for i, s in enumerate(sents) if not any(k and k.lower() in s.lower() for k in keep)]
    mid = ok[len(ok) // 2] if ok else None
    if kind == "word":
        words = [(m.start(), m.end()) for m in re.finditer(r'\b[a-z]{4,}\b', text)
                 if not any(k and m.group(0) in k.lower() for k in keep)]
        if not words:
            return text
        a, b = words[len(words) // 2]
        return text[:a] + "little" + text[b:]
    if kind == "insert":
        i = (mid if mid is not None else 0) + 1
        return " ".join(sents[:i] + [NEW] + sents[i:])
    if mid is None or len(sents) < 2 and kind == "drop":
        return text
    if kind == "replace":
        sents[mid] = NEW
    else:
        del sents[mid]
    return " ".join(sents)
if mode == "records":
    for line in sys.stdin:
        r = json.loads(line)
        r["text"] = edit(r["text"], [])
        r.pop("id", None)
        print(json.dumps(r))
else:
    qs = json.load(sys.stdin)
    for q in qs:
        for c in q["ctxs"]:
            c["text"] = edit(c["text"], q["answers"])
    json.dump(qs, sys.stdout)
EOF
kinds="word replace drop insert"

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads threads; the machine may be shared: times are single runs, side by side"
# ---- 1. time to a usable cache: synthetic SmolLM2-135M shape ----
if [ -d "$shared/data/text" ]; then
	"$bin/kvblend-quantize" --synthetic smollm2-135m "$work/s.gguf" q8_0 >/dev/null 2>&1
	for t in $texts; do
		head -c "$bytes" "$shared/data/text/$t" >"$work/$t"
		"$bin/kvblend-chunk" -m "$work/s.gguf" --max-tokens 256 "$work/$t"
	done >"$work/v1.jsonl"
	"$bin/kvblend-prefill" -m "$work/s.gguf" -t "$threads" --store "$work/s0" --quiet "$work/v1.jsonl" >/dev/null
	echo
	echo "# time to a usable cache of the edited chunks: synthetic SmolLM2-135M (q8_0), $(wc -l <"$work/v1.jsonl") chunks of $texts (first $bytes bytes each)"
	printf '%-8s %7s %8s %10s %10s %8s %10s\n' edit chunks tokens "fresh s" "similar s" speedup reused
	now() { perl -MTime::HiRes=time -e 'printf "%.3f\n", time'; }
	for k in $kinds; do
		python3 "$work/edit.py" records $k <"$work/v1.jsonl" >"$work/v2-$k.jsonl"
		rm -rf "$work/sf" "$work/sr"
		cp -R "$work/s0" "$work/sf" && cp -R "$work/s0" "$work/sr"
		t0=$(now)
		"$bin/kvblend-prefill" -m "$work/s.gguf" -t "$threads" --store "$work/sf" --quiet -j "$work/v2-$k.jsonl" \
			2>"$work/f.json" >/dev/null
		t1=$(now)
		"$bin/kvblend-prefill" -m "$work/s.gguf" -t "$threads" --store "$work/sr" --quiet -j --reuse-similar \
			"$work/v2-$k.jsonl" 2>"$work/r.json" >/dev/null
		t2=$(now)
		perl -MJSON::PP -e '
			my ($f, $r) = map { open my $h, "<", $_ or die; JSON::PP->new->decode(scalar <$h>) } @ARGV[1, 2];
			my ($tf, $tr) = ($ARGV[4] - $ARGV[3], $ARGV[5] - $ARGV[4]);
			printf "%-8s %7d %8d %10.3f %10.3f %7.2fx %9.1f%%\n", $ARGV[0], $f->{computed}, $f->{tokens},
				$tf, $tr, $tr > 0 ? $tf / $tr : 0, $r->{tokens} ? 100 * $r->{tokens_reused} / $r->{tokens} : 0
			' "$k" "$work/f.json" "$work/r.json" "$t0" "$t1" "$t2"
	done
	rm -rf "$work/sf" "$work/sr" "$work/s0" "$work/s.gguf"
else
	echo "# time to a usable cache: skipped ($shared/data/text is absent)"
fi

# ---- 2. fidelity: the reader model on edited passages ----
model=${MODEL:-$top/tests/models/reader.gguf}
python3 "$top/tests/rag/ragdata.py" --seed 20 --count "$count" --passages 8 >"$work/q.json"
"$bin/kvblend-bench" -m "$model" --dataset "$work/q.json" --methods full --n-gen 8 -t "$threads" \
	--store "$work/r0" --quiet >/dev/null
for k in $kinds; do
	python3 "$work/edit.py" qa $k <"$work/q.json" >"$work/q-$k.json"
	for how in fresh similar; do
		rm -rf "$work/r1" && cp -R "$work/r0" "$work/r1"
		opt=
		[ $how = similar ] && opt=--reuse-similar
		"$bin/kvblend-bench" -m "$model" --dataset "$work/q-$k.json" --methods full,reuse,blend:0.15 --n-gen 8 \
			-t "$threads" --store "$work/r1" --quiet --json $opt >"$work/b-$k-$how.json" 2>"$work/b.err"
		[ $how = similar ] && sed "s/^kvblend-bench: /# $k: /" "$work/b.err"
	done
done
echo
echo "# fidelity on edited passages: the reader model, $count questions (ragdata.py --seed 20 --passages 8); caches of the edited passages computed fresh, or built from the originals (similar)"
printf '%-8s %-11s %7s %7s %7s %9s %9s %9s\n' edit method "F1" "F1 sim" "top1" "top1 sim" KL "KL sim"
for k in $kinds; do
	perl -MJSON::PP -e '
		sub load { open my $h, "<", $_[0] or die; local $/; JSON::PP->new->decode(<$h>) }
		my ($f, $s) = (load($ARGV[1]), load($ARGV[2]));
		my %s = map { $_->{method} => $_ } @{$s->{methods} // $s->{groups}[0]{methods}};
		for my $m (@{$f->{methods} // $f->{groups}[0]{methods}}) {
			my $o = $s{$m->{method}};
			printf "%-8s %-11s %7.3f %7.3f %7.3f %9.3f %9.5f %9.5f\n", $ARGV[0], $m->{method}, $m->{f1}, $o->{f1},
				$m->{top1_agreement}, $o->{top1_agreement}, $m->{kl}, $o->{kl};
		}' "$k" "$work/b-$k-fresh.json" "$work/b-$k-similar.json"
done
