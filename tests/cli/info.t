#!/bin/sh
# kvblend info: GGUF models and .kvc streams (files, pipes, several caches in
# one stream), --json (parsed with jq when installed, else perl's core
# JSON::PP), and the errors: garbage, empty input, a missing file (exit 1, the
# other files still described), a flipped payload byte naming its layer,
# truncation in the header, in a layer and before the end record; usage (2).
# The cache tests need kvblend-prefill and the model in ../shared; they skip
# without them.
. "$(dirname "$0")/tap.sh"
need_bin info
I=$KVBLEND_BIN/kvblend-info P=$KVBLEND_BIN/kvblend-prefill
t=$TAP_TMP

# json FILTER: a jq-style path (.a.b) or a comparison run over the one-object
# lines on stdin; prints one result per line.
if command -v jq >/dev/null 2>&1; then
	json() { jq -r "$1"; }
	json_ok() { jq -e . >/dev/null 2>&1; }
else
	# the subset used here: .key.key (values printed as jq -r does)
	json() {
		perl -MJSON::PP -e 'my $path = shift; while (<STDIN>) { my $v = JSON::PP->new->decode($_);
			for my $k (grep { length } split /\./, $path) { $v = $v->{$k} }
			print((ref $v eq "JSON::PP::Boolean" ? ($v ? "true" : "false") : $v // "null"), "\n") }' "$1"
	}
	json_ok() { perl -MJSON::PP -e 'JSON::PP->new->decode($_) while <STDIN>' 2>/dev/null; }
fi

# ---- usage and plain errors ----
run "$I" --help
like "$RUN_RC/$RUN_OUT" "0/usage: kvblend info*" "--help: usage on stdout, exit 0"
is "$("$I" --complete-options | LC_ALL=C sort | paste -sd ' ')" "--help -h --json -j --version" "--complete-options"
run "$I" --bogus
is "$RUN_RC" 2 "an unknown option: exit 2"
printf 'Once upon a time\n' >"$t/text.txt"
run "$I" "$t/text.txt"
is "$RUN_RC" 1 "a text file: exit 1"
is "$RUN_ERR" "kvblend-info: '$t/text.txt': not a kvc stream or a GGUF model (unknown magic)" "  with a one-line message"
run "$I" </dev/null
is "$RUN_RC/$RUN_ERR" "1/kvblend-info: '<stdin>': empty input" "empty stdin: exit 1, 'empty input'"
run "$I" "$t/nope.kvc"
is "$RUN_RC" 1 "a missing file: exit 1"
like "$RUN_ERR" "*nope.kvc*No such file*" "  the message names it"

# ---- a GGUF model ----
model=$(tap_shared models/stories260Ktok512.gguf)
if [ -n "$model" ]; then
	run "$I" "$model"
	is "$RUN_RC" 0 "a GGUF model: exit 0"
	like "$RUN_OUT" "*GGUF v3*architecture llama*llama.block_count*5*tokenizer    llama, 512 tokens*tensors      48*f32 x 48*" \
		"  architecture, hyper-parameters, tokenizer, tensors"
	gj=$("$I" --json "$model")
	printf '%s\n' "$gj" | json_ok
	ok $? "  --json is one valid JSON object"
	is "$(printf '%s\n' "$gj" | json .format)/$(printf '%s\n' "$gj" | json .hparams.block_count)/$(printf '%s\n' "$gj" | json .tokenizer.n_vocab)/$(printf '%s\n' "$gj" | json .n_tensors)" \
		"gguf/5/512/48" "  --json: format, hparams.block_count, tokenizer.n_vocab, n_tensors"
	model_fp=$(printf '%s\n' "$gj" | json .model_fingerprint)
	like "$model_fp" "????????????????????????????????????????????????????????????????" "  a 64-digit model fingerprint"
	is "$("$I" -j <"$model" | json .model_fingerprint)" "$model_fp" "  the same model on stdin"
	run "$I" "$t/text.txt" "$model"
	like "$RUN_RC/$RUN_OUT" "1/*architecture llama*" "a bad file and a good one: exit 1, the good one still described"
else
	for i in 1 2 3 4 5 6 7; do skip "stories260K is absent"; done
fi

# ---- .kvc streams (made by kvblend prefill) ----
if [ -z "$model" ] || [ ! -x "$P" ]; then
	diag "kvblend-prefill or the model is missing: the cache tests are skipped"
	for i in $(seq 1 19); do skip "needs kvblend-prefill and stories260K"; done
	done_testing
fi

"$P" -m "$model" -p "Once upon a time" -o "$t/a.kvc" &&
	"$P" -m "$model" -p "Joe loves writing stories" --dtype q8_0 --no-logits -o "$t/b.kvc"
ok $? "prefill writes two caches"
run "$I" "$t/a.kvc"
is "$RUN_RC" 0 "a cache: exit 0"
like "$RUN_OUT" "*kvc 1.1 cache 1 at byte 0*dtype       f16*5 layers x 4 kv heads x 8 (kv_dim 32)*tokens      5: 1 *positions   0..4*rope        norm, n_rot 8*logits      512*made by     kvblend-prefill 0.1.0: -m -p -o*verified    5 layer checksums and the end record*" \
	"  version, dtype, shape, tokens, positions, rope, logits, provenance, verification"
like "$RUN_OUT" "*model       $(printf %.16s "$model_fp")...*" "  the model fingerprint is the GGUF's"
aj=$("$I" --json "$t/a.kvc")
is "$(printf '%s\n' "$aj" | json .format)/$(printf '%s\n' "$aj" | json .n_tokens)/$(printf '%s\n' "$aj" | json .ok)/$(printf '%s\n' "$aj" | json .provenance.tool)/$(printf '%s\n' "$aj" | json .n_logits)" \
	"kvc/5/true/kvblend-prefill/512" "  --json: format, n_tokens, ok, provenance.tool, n_logits"
is "$(printf '%s\n' "$aj" | json .model_fingerprint)" "$model_fp" "  --json: the model fingerprint equals the GGUF's"
is "$(printf '%s\n' "$aj" | json .rope.mode)/$(printf '%s\n' "$aj" | json .k_rotated)/$(printf '%s\n' "$aj" | json .bytes)" \
	"norm/true/$(wc -c <"$t/a.kvc" | tr -d ' ')" "  --json: rope.mode, k_rotated, bytes = the file size"

# pipes and concatenations
got=$("$P" -m "$model" -p "Once upon a time" | "$I" -j | json .n_tokens)
is "$got" 5 "prefill | info: a cache through a pipe"
cat "$t/a.kvc" "$t/b.kvc" >"$t/ab.kvc"
run "$I" "$t/ab.kvc"
like "$RUN_RC/$RUN_OUT" "0/*cache 1 at byte 0*dtype       f16*cache 2 at byte $(wc -c <"$t/a.kvc" | tr -d ' ')*dtype       q8_0*logits      none*" \
	"two caches in one file: both described, each verified"
got=$(cat "$t/a.kvc" "$t/b.kvc" "$t/a.kvc" | "$I" --json | json .cache | paste -sd ' ')
is "$got" "1 2 3" "three caches through a pipe: three JSON lines"

# corruption and truncation: exit 1, the message says what and where
perl -e '
	local $/; open my $f, "<:raw", $ARGV[0] or die; my $s = <$f>;
	my ($at, $n) = (-1, 0);
	while (($at = index($s, "LAYR", $at + 1)) >= 0) { last if $n++ == 2 }
	substr($s, $at + 16 + 20, 1) ^= "\x01";
	open my $o, ">:raw", $ARGV[1] or die; print $o $s' "$t/a.kvc" "$t/bad.kvc"
run "$I" "$t/bad.kvc"
is "$RUN_RC" 1 "a flipped bit in layer 2: exit 1"
is "$RUN_ERR" "kvblend-info: '$t/bad.kvc': layer 2: payload checksum mismatch (corrupt layer)" "  the message names the layer"
like "$RUN_OUT" "*kvc 1.1 cache 1*" "  the header was still described"
is "$("$I" -j "$t/bad.kvc" 2>/dev/null | json .ok)" "false" "  --json: ok false"
size=$(wc -c <"$t/a.kvc" | tr -d ' ')
head -c 100 "$t/a.kvc" >"$t/cut1.kvc"
run "$I" "$t/cut1.kvc"
[ $RUN_RC -eq 1 ]; ok $? "cut in the header: exit 1"
like "$RUN_ERR" "*truncated header (100 of *" "  truncated header"
head -c $((size / 2)) "$t/a.kvc" | "$I" >/dev/null 2>"$t/err"
like "$(cat "$t/err")" "kvblend-info: '<stdin>': truncated in layer ?*" "cut in a layer, through a pipe: truncated in layer N"
head -c $((size - 16)) "$t/a.kvc" >"$t/cut3.kvc"
run "$I" "$t/cut3.kvc"
like "$RUN_RC/$RUN_ERR" "1/*truncated before the end record*" "cut before the end record"
printf 'trailing' >>"$t/ab.kvc"
run "$I" "$t/ab.kvc"
like "$RUN_RC/$RUN_ERR" "1/*cache 3: not a kvc stream (bad magic)" "garbage after the caches"
done_testing
