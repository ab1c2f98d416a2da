#!/bin/sh
# bench.t — kvblend bench: --speed still measures, and --dataset runs every
# method side by side on stories260K with 2wikimqa questions: the table has a
# row per method (F1 and EM for QA, Rouge-L alone for summaries), --json parses
# and holds what the table says (blend at ratio 1 is full prefill: first token
# agrees, KL ~ 0), --tsv (the split by kind is in bench-kind.t), --plot writes
# an SVG, the other dataset formats, and the errors (bad data: exit 1 naming
# the file and line; bad usage: exit 2).
. "$(dirname "$0")/tap.sh"
need_bin bench
need_shared models/stories260Ktok512.gguf data/qa/cacheblend_wikimqa_s_clean.json
model=$SHARED/models/stories260Ktok512.gguf
wiki=$SHARED/data/qa/cacheblend_wikimqa_s_clean.json
bench=$KVBLEND_BIN/kvblend-bench
st=$TAP_TMP/store
# stories260K's context is 128 tokens, less than any prompt of this set: --ctx lets them run past it
small="-m $model --limit 2 --max-chunk-tokens 48 -t 1 --n-gen 8 --store $st --ctx 1024"

# --speed: unchanged
run "$bench" --speed -m "$model" --n-prompt 16 --n-gen 4 -r 1 -t 1
ok $RUN_RC "--speed runs"
like "$RUN_OUT" "*pp16*tg4*" "--speed: pp16 and tg4 rows"
run "$bench" --speed -m "$model" --n-prompt 16 --n-gen 4 -d 0,32 -r 1 -t 1 --tsv
got=$(printf '%s\n' "$RUN_OUT" | cut -f5 | tr '\n' ' ')
is "$RUN_RC:$got" "0:test pp16 tg4 pp16@d32 tg4@d32 " "--speed -d 0,32: each test at each depth, named as llama-bench names them"
run "$bench" --speed -m "$model" --n-prompt 16 --n-gen 4 -r 1 -t 1 --json
got=$(printf '%s\n' "$RUN_OUT" | perl -MJSON::PP -ne 'my $j = decode_json($_); print "$j->{test}:", ($j->{tokens_per_s} > 0 ? "t/s" : "none"), ":$j->{threads} "')
is "$RUN_RC:$got" "0:pp16:t/s:1 tg4:t/s:1 " "--speed --json: one object per row, with the test, its tokens/s and the threads"
got=$(printf '%s\n' "$RUN_OUT" | perl -MJSON::PP -ne 'my $j = decode_json($_); print(($j->{matvec} =~ /^(generic|avx2|avx512)$/ ? "named" : "none:$j->{matvec}"), " ")')
is "$got" "named named " "--speed --json: each row names the one-token matmul variant chosen"
KVBLEND_MATVEC=generic run "$bench" --speed -m "$model" --n-prompt 0 --n-gen 4 -r 1 -t 1 --tsv
got=$(printf '%s\n' "$RUN_OUT" | cut -f8 | tr '\n' ' ')
is "$RUN_RC:$got" "0:matvec generic " "KVBLEND_MATVEC=generic: the tg rows run the variant forced"
KVBLEND_MATVEC=bogus run "$bench" --speed -m "$model" --n-prompt 0 --n-gen 4 -r 1 -t 1
is "$RUN_RC" 1 "KVBLEND_MATVEC=bogus: exit 1"
like "$RUN_ERR" "*KVBLEND_MATVEC=bogus*" "KVBLEND_MATVEC=bogus: the message names it"

# the table, with the chunk caches put in a fresh store first
run "$bench" --dataset "$wiki" $small --methods full,reuse,blend:0.15,blend:1 --plot "$TAP_TMP/p.svg" --progress
ok $RUN_RC "--dataset runs (exit $RUN_RC)"
[ -n "$RUN_ERR" ] && diag "$RUN_ERR"
rows=$(printf '%s\n' "$RUN_OUT" | awk '$1 ~ /^(full|reuse|blend:0\.15|blend:1)$/ { print $1 }' | paste -sd ' ')
is "$rows" "full reuse blend:0.15 blend:1" "a row per method, in the order asked"
like "$RUN_OUT" "*method*TTFT ms*load ms*speedup*decode t/s*F1*EM*top-1 agree*KL*KV MiB/q*peak RSS MiB*" "the header names the columns"
case $RUN_OUT in *"# kind"*) r=1 ;; *) r=0 ;; esac
ok $r "a set without kinds has one table"
like "$RUN_OUT" "*stories260Ktok512.gguf on cacheblend_wikimqa_s_clean.json*2 questions*" "the title line names model, dataset, questions"
# 2 questions x (instruction + 10 passages), the instruction the same for both
like "$RUN_ERR" "*22 chunk caches in the store (21 computed now, 1 there already)*" "the store is filled before timing"
like "$RUN_ERR" "*question 2/2*blend:1*" "--progress reports each question and method"
like "$RUN_ERR" "*question 2/2*: full, about * s left*" "--progress: the time left, from the questions done"

# the SVG
[ -s "$TAP_TMP/p.svg" ]
ok $? "--plot writes the SVG"
if command -v xmllint >/dev/null 2>&1; then
	xmllint --noout "$TAP_TMP/p.svg" 2>"$TAP_TMP/xml.err"
	ok $? "the SVG is well-formed XML"
else
	skip "xmllint is not installed"
fi
miss=
for l in full reuse blend:0.15 blend:1 "Time to first token" "top-1 agreement" "2 questions"; do
	grep -q -- ">$l<\|$l" "$TAP_TMP/p.svg" || miss="$miss $l"
done
is "$miss" "" "the SVG has a label per method, the axes and the title"
is "$(grep -c '<circle' "$TAP_TMP/p.svg")" 4 "one point per method"

# --json: the same run again (every cache now from the store)
run "$bench" --dataset "$wiki" $small --methods full,reuse,blend:0.15,blend:1 --json --progress
ok $RUN_RC "--json runs"
like "$RUN_ERR" "*(0 computed now, * there already)*" "a second run finds every chunk cache in the store"
printf '%s\n' "$RUN_OUT" >"$TAP_TMP/out.json"
check=$(perl -MJSON::PP -e '
	local $/; my $j = decode_json(<STDIN>);
	my %m = map { $_->{method} => $_ } @{$j->{methods}};
	my @bad;
	push @bad, "methods" unless join(",", map { $_->{method} } @{$j->{methods}}) eq "full,reuse,blend:0.15,blend:1";
	push @bad, "questions" unless $j->{questions} == 2 && @{$j->{per_question}} == 2;
	push @bad, "task" unless $j->{task} eq "qa" && $j->{n_gen} == 8;
	my $b1 = $m{"blend:1"};
	push @bad, "blend:1 first token" unless $b1->{first_token_agreement} == 1;
	push @bad, "blend:1 top-1 $b1->{top1_agreement}" unless $b1->{top1_agreement} == 1;
	push @bad, "blend:1 KL $b1->{kl}" unless $b1->{kl} < 1e-6;
	push @bad, "blend:1 recompute" unless abs($b1->{recompute} - 1) < 1e-9;
	push @bad, "full" unless $m{full}{kl} == 0 && $m{full}{speedup} == 1 && $m{full}{kv_mib_per_question} == 0;
	push @bad, "steps" unless $m{full}{steps} >= 2 && $m{full}{steps} <= 18 && $m{reuse}{steps} == $m{full}{steps};
	push @bad, "recompute order" unless $m{reuse}{recompute} < $m{"blend:0.15"}{recompute} && $m{"blend:0.15"}{recompute} < 1;
	push @bad, "KV read" unless $m{reuse}{kv_mib_per_question} > 0 && $m{reuse}{kv_mib_per_question} == $m{"blend:0.15"}{kv_mib_per_question};
	for my $x (@{$j->{methods}}) {
		push @bad, "$x->{method} misses" if $x->{store_misses};
		push @bad, "$x->{method} ttft" unless $x->{ttft_ms_median} > 0 && $x->{ttft_ms_p90} >= $x->{ttft_ms_median};
		push @bad, "$x->{method} load" unless $x->{load_ms_median} >= 0 && $x->{load_ms_median} <= $x->{ttft_ms_p90};
		push @bad, "$x->{method} range" unless $x->{f1} >= 0 && $x->{f1} <= 1 && $x->{top1_agreement} <= 1 && $x->{kl} >= 0 && $x->{peak_rss_mib} > 0;
		push @bad, "$x->{method} exact match" unless $x->{exact_match} >= 0 && $x->{exact_match} <= $x->{f1} && $x->{questions} == 2;
	}
	push @bad, "by_kind" if exists $j->{by_kind};
	my $q = $j->{per_question}[0];
	push @bad, "per question" unless $q->{answers}[0] eq "Croatia" && $q->{passages} == 10 && exists $q->{methods}{"blend:0.15"}{answer}
		&& exists $q->{methods}{"blend:0.15"}{exact_match} && !exists $q->{kind};
	print join("; ", @bad);
' <"$TAP_TMP/out.json" 2>&1)
is "$check" "" "--json parses and agrees: blend:1 is full prefill (first token 1, KL ~ 0), reuse recomputes least"

# --tsv
run "$bench" --dataset "$wiki" $small --methods full,blend:0.3 --tsv --quiet
ok $RUN_RC "--tsv runs"
is "$(printf '%s\n' "$RUN_OUT" | awk -F '\t' '{ print NF }' | sort -u)" 19 "--tsv: 19 columns on every line"
is "$(printf '%s\n' "$RUN_OUT" | cut -f1 | paste -sd ' ')" "method full blend:0.3" "--tsv: a header, then a row per method"
is "$(printf '%s\n' "$RUN_OUT" | cut -f16,17 | paste -sd ' ' | sed 's/[0-9.]*\tall/N\tall/g')" "exact_match	kind N	all N	all" \
	"--tsv: exact_match and kind in columns 16-17; no kinds in this set: every row is 'all'"
case $RUN_ERR in *question*) r=1 ;; *) r=0 ;; esac
ok $r "--quiet: no progress"

# prompts that do not fit the context: skipped with a count; none fits: exit 1
run "$bench" --dataset "$wiki" -m "$model" --limit 2 --max-chunk-tokens 48 -t 1 --n-gen 8 --store "$st" --methods full --tsv --quiet --ctx 720 --template plain
is "$RUN_RC:$(printf '%s\n' "$RUN_OUT" | grep -c '^full')" "0:1" "--ctx 720: the question that fits is measured"
like "$RUN_ERR" "kvblend-bench: warning: 1 of 2 questions skipped: prompts of up to 725 tokens (with the 9 generated) do not fit the context of 720 (--ctx;*" \
	"--ctx 720: the other is skipped, with the count and both sizes"
run "$bench" --dataset "$wiki" -m "$model" --limit 2 --max-chunk-tokens 48 -t 1 --n-gen 8 --store "$st" --methods full --tsv --quiet --template plain
lines=$(printf '%s\n' "$RUN_ERR" | grep -c .)
like "$RUN_RC:$lines:$RUN_OUT:$RUN_ERR" "1:1::kvblend-bench: 2 of 2 questions skipped: prompts of up to 725 tokens (with the 9 generated) do not fit the context of 128 (the model's;*" \
	"no prompt fits the model's context of 128: exit 1, one line with both sizes, no table"

# the other formats
hotpot=$(tap_shared data/qa/hotpotqa_distractor_dev500_ircot.jsonl)
if [ -n "$hotpot" ]; then
	run "$bench" --dataset "$hotpot" -m "$model" --limit 1 --max-passages 3 --max-chunk-tokens 16 --n-gen 4 -t 1 \
		--store "$st" --ctx 1024 --methods full,blend --tsv --quiet
	is "$RUN_RC:$(printf '%s\n' "$RUN_OUT" | cut -f1 | paste -sd ' ')" "0:method full blend" "HotpotQA (IRCoT JSON Lines)"
else
	skip "hotpotqa is absent"
fi
samsum=$(tap_shared data/summ/samsum_test.jsonl)
if [ -n "$samsum" ]; then
	run "$bench" --dataset "$samsum" -m "$model" --limit 1 --max-passages 2 --max-chunk-tokens 24 --n-gen 4 -t 1 \
		--store "$st" --ctx 1024 --methods full,reuse --json --quiet
	like "$RUN_RC:$RUN_OUT" '0:*"task": "summary"*"rouge_l": *' "SAMSum: a summary set scored by Rouge-L"
	case $RUN_OUT in *exact_match*) r=1 ;; *) r=0 ;; esac
	ok $r "SAMSum: no exact match (summaries have Rouge-L alone)"
	run "$bench" --dataset "$samsum" -m "$model" --limit 1 --max-passages 2 --max-chunk-tokens 24 --n-gen 4 -t 1 \
		--store "$st" --ctx 1024 --methods full --quiet
	like "$RUN_RC:$RUN_OUT" "0:*Rouge-L 1st agree*" "SAMSum: the table has no EM column"
else
	for i in 1 2 3; do skip "samsum is absent"; done
fi

# the prompt of --template chatml has the chat markers around it (stories has none: they are text)
run "$bench" --dataset "$wiki" -m "$model" --limit 1 --max-passages 1 --max-chunk-tokens 8 --n-gen 2 -t 1 \
	--store "$st" --ctx 1024 --methods full --template chatml --json --quiet
like "$RUN_RC:$RUN_OUT" '0:*"template": "chatml"*' "--template chatml"

# errors: exit 1 with one line naming the file and the record
err1() { # name want cmd...
	name=$1 want=$2
	shift 2
	run "$@"
	lines=$(printf '%s\n' "$RUN_ERR" | grep -c .)
	case $RUN_ERR in "kvblend-bench: "*"$want"*) r=0 ;; *) r=1 ;; esac
	[ "$RUN_RC" -eq 1 ] && [ "$lines" -eq 1 ] && [ $r -eq 0 ]
	ok $? "$name: $RUN_ERR"
}
printf '{"question": "q", "answers": ["a"], "ctxs": [{"title": "t", "text": "x"}]}\n{"question": "q", "answers": [\n' >"$TAP_TMP/bad.jsonl"
err1 "malformed JSON Lines" "'$TAP_TMP/bad.jsonl': line 2: not JSON" "$bench" --dataset "$TAP_TMP/bad.jsonl" -m "$model" --store "$st"
printf '[{"question": "q", "answers": ["a"], "ctxs": [{"title": "t"}]}]' >"$TAP_TMP/bad.json"
err1 "a passage without text" "'$TAP_TMP/bad.json': .[0].ctxs[0]: no \"text\"" "$bench" --dataset "$TAP_TMP/bad.json" -m "$model" --store "$st"
err1 "a missing dataset" "nonexistent.json" "$bench" --dataset "$TAP_TMP/nonexistent.json" -m "$model" --store "$st"

# usage errors: exit 2
usage2() { # name cmd...
	name=$1
	shift
	run "$@"
	[ "$RUN_RC" -eq 2 ]
	ok $? "$name: exit 2 ($(printf '%s\n' "$RUN_ERR" | head -1))"
}
usage2 "an unknown method" "$bench" --dataset "$wiki" -m "$model" --methods full,magic
usage2 "a ratio out of range" "$bench" --dataset "$wiki" -m "$model" --methods blend:1.5
usage2 "a check layer that is not a number" "$bench" --dataset "$wiki" -m "$model" --methods blend:0.15@x
usage2 "eviction and a type together" "$bench" --dataset "$wiki" -m "$model" --methods full+snapkv:0.5+kv4
usage2 "a check layer past the model's" "$bench" --dataset "$wiki" -m "$model" --methods blend:0.15@99
usage2 "--depth with --dataset" "$bench" --dataset "$wiki" -m "$model" --depth 64
usage2 "--speed and --dataset" "$bench" --speed --dataset "$wiki" -m "$model"
usage2 "neither --speed nor --dataset" "$bench" -m "$model"
usage2 "--json and --tsv" "$bench" --dataset "$wiki" -m "$model" --json --tsv
usage2 "--limit with --speed" "$bench" --speed -m "$model" --limit 3
usage2 "--reps with --dataset" "$bench" --dataset "$wiki" -m "$model" --reps 3
usage2 "an unknown template" "$bench" --dataset "$wiki" -m "$model" --template nope
done_testing
