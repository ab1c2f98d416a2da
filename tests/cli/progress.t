#!/bin/bash
# progress.t — one progress meter (cmd/progress.h) for long work: a count, the
# total when it is known, the rate and the time left, on stderr only when it is
# a terminal or with -v/--progress; --quiet silences it; logs stay clean.
. "$(dirname "$0")/tap.sh"
need_shared models/stories260Ktok512.gguf
need_bin prefill embed chunk blend
model=$SHARED/models/stories260Ktok512.gguf
B=$KVBLEND_BIN
for i in $(seq 30); do
	printf '{"id":"c%d","doc":"d","seq":%d,"text":"Once upon a time number %d there was a cat"}\n' "$i" "$i" "$i"
done >"$TAP_TMP/c.jsonl"

run "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st1" -v <"$TAP_TMP/c.jsonl"
like "$RUN_RC:$RUN_ERR" "0:*kvblend-prefill: 30/30 chunks (100%), *.*/s*" "prefill -v: the count of the total, done (a file on stdin gives the total)"
run "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st2" --progress <"$TAP_TMP/c.jsonl"
like "$RUN_RC:$RUN_ERR" "0:kvblend-prefill: 30/30 chunks (100%)*" "prefill --progress: the same"
run "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st3" <"$TAP_TMP/c.jsonl"
is "$RUN_RC:$RUN_ERR" "0:" "prefill, stderr not a terminal: no progress, nothing on stderr"
run "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st4" -v --quiet <"$TAP_TMP/c.jsonl"
ok $(case $RUN_ERR in *"chunks ("*) echo 1 ;; *) echo 0 ;; esac) "prefill -v --quiet: no progress"
cat "$TAP_TMP/c.jsonl" | "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st5" --progress >/dev/null 2>"$TAP_TMP/e"
like "$(cat "$TAP_TMP/e")" "kvblend-prefill: 30 chunks, *.*/s*" "prefill from a pipe: the count and the rate, no total"

mkdir "$TAP_TMP/e1" "$TAP_TMP/e2"
run "$B/kvblend-embed" --store "$TAP_TMP/e1" -v <"$TAP_TMP/c.jsonl"
like "$RUN_RC:$RUN_ERR" "0:kvblend-embed: 30/30 chunks (100%)*" "embed -v: progress of the indexing"
run "$B/kvblend-embed" --store "$TAP_TMP/e2" -v --quiet <"$TAP_TMP/c.jsonl"
ok $(case $RUN_ERR in *"chunks ("*) echo 1 ;; *) echo 0 ;; esac) "embed --quiet: no progress"

# blend: the caches loaded or computed, of how many (the head, BOS here, and the first 5 records)
head -n 5 "$TAP_TMP/c.jsonl" >"$TAP_TMP/c5.jsonl"
run "$B/kvblend-blend" -m "$model" --template plain --store "$TAP_TMP/b1" -q "Who was there?" -v -o "$TAP_TMP/b.kvc" <"$TAP_TMP/c5.jsonl"
like "$RUN_RC:$RUN_ERR" "0:kvblend-blend: template: plain (given with --template)
kvblend-blend: 6/6 chunk caches (100%)*" "blend -v: the template, then progress of the chunk caches"
run "$B/kvblend-blend" -m "$model" --template plain --store "$TAP_TMP/b1" -q "Who was there?" -v --quiet -o "$TAP_TMP/b.kvc" <"$TAP_TMP/c5.jsonl"
ok $(case $RUN_ERR in *"chunk caches ("*) echo 1 ;; *) echo 0 ;; esac) "blend --quiet: no progress"

yes "Once upon a time there was a little cat. It was happy. The dog ran away." | head -n 20 >"$TAP_TMP/doc.txt"
run "$B/kvblend-chunk" -m "$model" --by ppl -v "$TAP_TMP/doc.txt"
like "$RUN_RC:$RUN_ERR" "0:kvblend-chunk: *tokens of '*doc.txt' scored (100%)*" "chunk --by ppl -v: the tokens scored"
run "$B/kvblend-chunk" -m "$model" --by ppl -v --quiet "$TAP_TMP/doc.txt"
ok $(case $RUN_ERR in *scored\ \(*) echo 1 ;; *) echo 0 ;; esac) "chunk --by ppl --quiet: no progress"

# On a terminal: one line redrawn in place (\r ... ESC[K), with the time left.
if command -v script >/dev/null 2>&1; then
	script -qec "$B/kvblend-prefill -m '$model' --store '$TAP_TMP/st6' --batch 8 <'$TAP_TMP/c.jsonl' >/dev/null" /dev/null >"$TAP_TMP/tty" 2>&1
	tr '\r\033' '\n#' <"$TAP_TMP/tty" >"$TAP_TMP/tty.txt"
	grep -q "^kvblend-prefill: [0-9]*/30 chunks ([0-9]*%), .*left#\[K" "$TAP_TMP/tty.txt"
	ok $? "prefill on a terminal: 'N/30 chunks (P%), R/s, M:SS left', redrawn in place"
	run script -qec "$B/kvblend-prefill -m '$model' --store '$TAP_TMP/st7' --quiet <'$TAP_TMP/c.jsonl' >/dev/null" /dev/null
	is "$RUN_OUT" "" "--quiet on a terminal: nothing"
else
	skip "script(1) is not installed"
	skip "script(1) is not installed"
fi
# --json: prefill's summary as one JSON object on stderr (stdout carries the records)
run "$B/kvblend-prefill" -m "$model" --store "$TAP_TMP/st8" --json <"$TAP_TMP/c.jsonl"
got=$(printf '%s\n' "$RUN_ERR" | perl -MJSON::PP -ne 'my $j = decode_json($_); print "$j->{chunks}:$j->{computed}:$j->{already_stored}:", ($j->{tokens} > 0 ? "tokens" : "none")')
is "$RUN_RC:$got:$(grep -c '"kv"' "$TAP_TMP/out")" "0:30:30:0:tokens:30" "prefill --json: the summary as JSON on stderr, the records on stdout"
run "$B/kvblend-prefill" -m "$model" -p "Once upon a time" -o "$TAP_TMP/x.kvc" -j
got=$(printf '%s\n' "$RUN_ERR" | perl -MJSON::PP -ne 'my $j = decode_json($_); print "$j->{dtype}:", ($j->{tokens} > 0 ? "tokens" : "none"), ":", ($j->{output} =~ /x\.kvc$/ ? "out" : "?")')
is "$RUN_RC:$got" "0:f16:tokens:out" "prefill -p -o -j: the cache's summary as JSON"
done_testing
