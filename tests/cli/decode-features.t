#!/bin/sh
# decode-features.t — what users expect from llama.cpp's decoding (issue 17),
# on stories260K: --stop (split across tokens, never printed), the penalties
# and min-p (greedy untouched when they are off), --json (one object per
# token, then the text, ids, stop reason and timings), and a full context
# (exit 0, one line naming the limit, "context" in the JSON).
. "$(dirname "$0")/tap.sh"
need_bin decode tokenize
need_shared models/stories260Ktok512.gguf
model=$SHARED/models/stories260Ktok512.gguf
D=$KVBLEND_BIN/kvblend-decode t=$TAP_TMP
p="Joe loves writing stories"
dec() { "$D" -m "$model" --template plain -p "$p" "$@"; }
np=$(printf '%s' "$p" | "$KVBLEND_BIN/kvblend-tokenize" -m "$model" | wc -w) # BOS included

# greedy: ". He liked to play with his toys and run around the house. He liked ..."
full=$(dec -n 32)
ids=$(dec -n 32 --ids)
is "$(dec -n 32 --ids --repeat-penalty 1 --presence-penalty 0 --frequency-penalty 0 --min-p 0)" "$ids" \
	"greedy with every penalty and min-p off: the same ids"

# --stop: "toys" is three tokens (" to", "y", "s"): caught, and nothing of it printed
is "$(dec -n 32 --stop toys)" ". He liked to play with his " "--stop toys (split across three tokens): the text before it"
is "$(dec -n 32 --stop ' liked')" ". He" "--stop ' liked' (' li' + 'ked'): the text before it"
is "$(dec -n 32 --stop 'no such words')" "$full" "a stop string never reached: the whole text"
is "$(dec -n 32 --stop house --stop ' run')" ". He liked to play with his toys and" "two stop strings: the first in the text ends it"
is "$(dec -n 32 --stop 'toys and r')" ". He liked to play with his " "a stop string ending inside a token: the text before it"
is "$(dec -n 32 --stop toys --ids)" "426 346 397 355 267 337 335 345 267 422 419" "--ids: every id up to the one that completes the stop string"

# --json: the objects, and the last one agrees with the plain output
dec -n 32 --json >"$t/j"
is "$?:$(wc -l <"$t/j")" "0:33" "--json: 32 token objects and a last one"
perl -MJSON::PP -ne 'decode_json($_)' "$t/j"; ok $? "  each line is JSON"
last() { tail -1 "$1" | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{$ARGV[0]}' "$2"; }
is "$(last "$t/j" 'text')" "$full" "  its text is the plain output"
is "$(tail -1 "$t/j" | perl -MJSON::PP -ne 'print join " ", @{decode_json($_)->{ids}}')" "$ids" "  its ids are --ids'"
is "$(last "$t/j" 'stop'):$(last "$t/j" 'n_generated'):$(last "$t/j" 'n_prompt')" "max_tokens:32:$np" \
	"  stop max_tokens, 32 generated, $np prompt tokens"
perl -MJSON::PP -ne '$j = decode_json($_); exit 1 if exists $j->{done} && !($j->{timings}{prompt_ms} > 0 && $j->{timings}{decode_ms} > 0 && $j->{timings}{tokens_per_s} > 0)' "$t/j"
ok $? "  timings: prompt and decode ms, tokens/s"
is "$(head -32 "$t/j" | perl -MJSON::PP -ne '$j = decode_json($_); print $j->{text}')" "$full" "  the token objects' texts make the text"
perl -MJSON::PP -ne '$j = decode_json($_); exit 1 if exists $j->{id} && !($j->{logprob} <= 0)' "$t/j"; ok $? "  each token's logprob is <= 0"
dec -n 8 --json --logprobs 3 >"$t/j3"
perl -MJSON::PP -ne '$j = decode_json($_); next unless exists $j->{id}; $t = $j->{top};
	exit 1 unless @$t == 3 && $t->[0]{id} == $j->{id} && abs($t->[0]{logprob} - $j->{logprob}) < 1e-6
		&& $t->[0]{logprob} >= $t->[1]{logprob} && $t->[1]{logprob} >= $t->[2]{logprob}' "$t/j3"
ok $? "--logprobs 3: three alternatives, most likely first, the greedy choice at the top"
dec -n 32 --json --stop toys >"$t/js"
is "$(last "$t/js" 'stop'):$(last "$t/js" 'stop_string'):$(last "$t/js" 'text')" "stop:toys:. He liked to play with his " \
	"--json --stop: stop, the string, the text cut before it"
# a full context: stories260K's is 128 tokens
dec -n 500 --json >"$t/jc" 2>"$t/e"
is "$?:$(last "$t/jc" 'stop'):$(cat "$t/e")" \
	"0:context:kvblend-decode: stopped after $((128 - np + 1)) tokens: context full at 128 tokens (the model's context; --ctx N for more)" \
	"a full context: exit 0, 'context', one line naming the limit"
dec --ctx 40 -n 500 --ids >/dev/null 2>"$t/e"
is "$?:$(cat "$t/e")" "0:kvblend-decode: stopped after $((40 - np + 1)) tokens: context full at 40 tokens (--ctx)" "  with --ctx: the line says so"

# the penalties and min-p change greedy and sampled choices as they should
rp=$(dec -n 32 --repeat-penalty 1.3)
is "$rp" ". He liked to play with his friends and run all day long. One day, he saw something un" \
	"--repeat-penalty 1.3: greedy no longer repeats its sentence"
is "$(dec -n 32 --repeat-penalty 1.3 --repeat-last-n 0)" "$full" "--repeat-last-n 0: no penalty"
pp=$(dec -n 32 --presence-penalty 1)
[ "$pp" != "$full" ] && [ "$pp" != "$rp" ]; ok $? "--presence-penalty 1 changes the text: $pp"
[ "$(dec -n 32 --frequency-penalty 0.5)" != "$full" ]; ok $? "--frequency-penalty 0.5 changes the text"
is "$(dec -n 32 --temp 1 --seed 3 --min-p 1 --ids)" "$ids" "--min-p 1 leaves only the most likely token: greedy"
a=$(dec -n 24 --temp 1.5 --seed 5 --min-p 0.2 --ids) b=$(dec -n 24 --temp 1.5 --seed 5 --min-p 0.2 --ids)
c=$(dec -n 24 --temp 1.5 --seed 5 --ids)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]; ok $? "--min-p 0.2 with a seed: reproducible, and not what no min-p samples"

# usage errors
for bad in "--json --ids" "--logprobs 3" "--stop=" "--min-p 1.5" "--repeat-penalty 0" "--logprobs 21 --json" "--repeat-last-n -1"; do
	# shellcheck disable=SC2086
	dec -n 2 $bad >/dev/null 2>&1
	is "$?" 2 "'$bad' is a usage error"
done
done_testing
