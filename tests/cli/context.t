#!/bin/sh
# prefill and the model's context (issue 10 item 10): a text longer than the
# context is one line naming both numbers, exit 1, before any forward pass; in
# a stream of chunk records, that record is the error and the others go on.
. "$(dirname "$0")/tap.sh"
need_shared models/stories260Ktok512.gguf
need_bin prefill tokenize
model=$SHARED/models/stories260Ktok512.gguf
P=$KVBLEND_BIN/kvblend-prefill

long=$(perl -e 'print "Once upon a time " x 60')
np=$(printf %s "$long" | "$KVBLEND_BIN/kvblend-tokenize" -m "$model" | wc -w)
run "$P" -m "$model" -p "$long" -o "$TAP_TMP/x.kvc"
is "$RUN_RC:$RUN_ERR" "1:kvblend-prefill: the prompt has $np tokens, more than the context of 128" \
	"prefill -p past the context: one line with both numbers, exit 1"
[ ! -e "$TAP_TMP/x.kvc" ]; ok $? "  no cache is written"

# a 1 MB record between two good ones
perl -e 'print "{\"id\":\"a\",\"doc\":\"d\",\"seq\":0,\"text\":\"Joe loves writing stories\"}\n";
	print "{\"id\":\"b\",\"doc\":\"d\",\"seq\":1,\"text\":\"", "Once upon a time " x 60000, "\"}\n";
	print "{\"id\":\"c\",\"doc\":\"d\",\"seq\":2,\"text\":\"Lily had a red ball\"}\n"' >"$TAP_TMP/c.jsonl"
t0=$(date +%s)
run "$P" --quiet -m "$model" --store "$TAP_TMP/st" <"$TAP_TMP/c.jsonl"
t1=$(date +%s)
like "$RUN_ERR" "kvblend-prefill: '<stdin>': line 2: the text has * tokens, more than the context of 128" \
	"a record past the context is named, with both numbers"
is "$RUN_RC:$(printf '%s\n' "$RUN_ERR" | wc -l | tr -d ' ')" "1:1" "  one line, exit 1"
is "$(printf '%s\n' "$RUN_OUT" | grep -c '"kv"')" 2 "  the two other records are stored and echoed"
[ $((t1 - t0)) -lt 60 ]; ok $? "  in $((t1 - t0)) s, not minutes"
# chunk's default budget fits the model it is given (256 > stories260K's 128)
if [ -x "$KVBLEND_BIN/kvblend-chunk" ]; then
	perl -e 'print "Once upon a time there was a little girl named Lily. " x 80, "\n"' >"$TAP_TMP/doc.txt"
	"$KVBLEND_BIN/kvblend-chunk" -m "$model" --by window "$TAP_TMP/doc.txt" >"$TAP_TMP/w.jsonl"
	max=$(perl -MJSON::PP -ne '$m = decode_json($_)->{tokens}; $x = $m if $m > $x; END { print $x }' "$TAP_TMP/w.jsonl")
	[ "$max" = 128 ]; ok $? "chunk -m: the default budget is the model's context, 128 (longest window: $max tokens)"
	"$KVBLEND_BIN/kvblend-chunk" -m "$model" --by window --max-tokens 200 "$TAP_TMP/doc.txt" >"$TAP_TMP/w2.jsonl"
	max=$(perl -MJSON::PP -ne '$m = decode_json($_)->{tokens}; $x = $m if $m > $x; END { print $x }' "$TAP_TMP/w2.jsonl")
	[ "$max" = 200 ]; ok $? "  --max-tokens given: as given ($max)"
else
	skip "kvblend-chunk is not built"
	skip "kvblend-chunk is not built"
fi
done_testing
