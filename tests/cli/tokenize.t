#!/bin/sh
# kvblend-tokenize end to end: the golden prompt ids of stories260K, BOS, the
# trailing newline, --pieces, --special, the exit codes and one-line
# messages for usage errors (2) and runtime errors (1), and llama.cpp's ids with a
# byte-level BPE (gpt-2) and a WordPiece (bert-bge) vocabulary.
. "$(dirname "$0")/tap.sh"

need_shared models/stories260Ktok512.gguf models/stories260Ktok512.golden_prompt.json
need_bin tokenize
tok=$KVBLEND_BIN/kvblend-tokenize
model=$SHARED/models/stories260Ktok512.gguf
golden=$SHARED/models/stories260Ktok512.golden_prompt.json

# the golden prompt and its ids, read with perl's core JSON module
text=$(perl -MJSON::PP -0777 -ne 'print decode_json($_)->{prompt_text}' "$golden")
want=$(perl -MJSON::PP -0777 -ne 'print join(" ", @{decode_json($_)->{prompt_ids}})' "$golden")
bos=$(perl -MJSON::PP -0777 -ne 'print decode_json($_)->{bos}' "$golden")
[ -n "$text" ] && [ -n "$want" ]
ok $? "golden prompt read: '$text'"

printf %s "$text" >"$TAP_TMP/prompt.txt"
run "$tok" -m "$model" --no-bos <"$TAP_TMP/prompt.txt"
is "$RUN_OUT" "$want" "golden prompt ids from stdin (--no-bos)"
is "$RUN_RC:$RUN_ERR" "0:" "exit 0, nothing on stderr"

run "$tok" -m "$model" --no-bos "$TAP_TMP/prompt.txt"
is "$RUN_OUT" "$want" "golden prompt ids from a FILE operand"

run "$tok" --model "$model" --no-bos - <"$TAP_TMP/prompt.txt"
is "$RUN_OUT" "$want" "'-' is stdin, --model is -m"

run "$tok" -m "$model" "$TAP_TMP/prompt.txt"
is "$RUN_OUT" "$bos $want" "BOS $bos comes first by default"

run "$KVBLEND_BIN/kvblend" tokenize -m "$model" --no-bos "$TAP_TMP/prompt.txt"
if [ -x "$KVBLEND_BIN/kvblend" ]; then
	is "$RUN_OUT" "$want" "through the dispatcher: kvblend tokenize"
else
	skip "$KVBLEND_BIN/kvblend is not built"
fi

printf '%s\n' "$text" >"$TAP_TMP/prompt-nl.txt"
run "$tok" -m "$model" --no-bos "$TAP_TMP/prompt-nl.txt"
is "$RUN_OUT" "$want 13" "a trailing newline is tokenized too (<0x0A> = 13)"

printf '' >"$TAP_TMP/empty.txt"
run "$tok" -m "$model" --no-bos "$TAP_TMP/empty.txt"
is "$RUN_RC:$(wc -l <"$TAP_TMP/out" | tr -d ' '):$RUN_OUT" "0:1:" "empty input: one empty line"

run "$tok" -m "$model" --pieces "$TAP_TMP/prompt.txt"
ids=$(cut -f1 "$TAP_TMP/out" | tr '\n' ' ' | sed 's/ $//')
is "$ids" "$bos $want" "--pieces: one line per token, the id first"
first=$(sed -n 2p "$TAP_TMP/out")
is "$first" "$(printf '410\t\342\226\201')" "--pieces: id, tab, the piece as stored ('▁')"

printf '<s>Joe' >"$TAP_TMP/special.txt"
run "$tok" -m "$model" --no-bos --special "$TAP_TMP/special.txt"
like "$RUN_OUT" "$bos 410 *" "--special: <s> in the text becomes BOS, a space prefix follows"
run "$tok" -m "$model" --no-bos "$TAP_TMP/special.txt"
case " $RUN_OUT " in *" $bos "*) r=1 ;; *) r=0 ;; esac
ok $r "without --special <s> is plain text"

# help, options, usage errors (exit 2)
run "$tok" --help
like "$RUN_RC:$RUN_OUT" "0:usage: *" "--help: usage on stdout, exit 0"
is "$RUN_ERR" "" "--help: nothing on stderr"
run "$tok" -h
like "$RUN_RC:$RUN_OUT" "0:usage: *" "-h too"

run "$tok" --complete-options
is "$RUN_RC:$(echo $RUN_OUT)" "0:--model= -m --no-bos --special --pieces --help -h --version" "--complete-options lists the long options (\"=\": takes a value; then the short one)"

run "$tok" -m "$model" --bogus "$TAP_TMP/prompt.txt"
is "$RUN_RC" 2 "a bad option exits 2"
like "$RUN_ERR" "kvblend-tokenize: *--bogus*--help*" "... naming the option, with a hint"
is "$RUN_OUT" "" "... and nothing on stdout"

run "$tok" "$TAP_TMP/prompt.txt"
like "$RUN_RC:$RUN_ERR" "2:kvblend-tokenize: *-m*" "no model: exit 2"
run "$tok" -m "$model" "$TAP_TMP/prompt.txt" "$TAP_TMP/prompt.txt"
is "$RUN_RC" 2 "two input files: exit 2"
run "$tok" -m
is "$RUN_RC" 2 "-m without a value: exit 2"

# runtime errors: one line naming the file, exit 1
missing=$TAP_TMP/no-such-model.gguf
run "$tok" -m "$missing" "$TAP_TMP/prompt.txt"
is "$RUN_RC" 1 "a missing model exits 1"
like "$RUN_ERR" "kvblend-tokenize: *$missing*" "... with an error naming the file"
is "$(wc -l <"$TAP_TMP/err" | tr -d ' ')" 1 "... on one line"

run "$tok" -m "$model" "$TAP_TMP/no-such-input.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-tokenize: *no-such-input.txt*" "a missing input file exits 1, named"

run "$tok" -m "$TAP_TMP/prompt.txt" "$TAP_TMP/prompt.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-tokenize: *prompt.txt*" "a model that is not GGUF exits 1, named"

# byte-level BPE and WordPiece vocabularies (llama.cpp's ids)
if gpt2=$(tap_shared tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf); then
	printf 'Hello world' >"$TAP_TMP/hello.txt"
	run "$tok" -m "$gpt2" "$TAP_TMP/hello.txt"
	is "$RUN_RC:$RUN_OUT:$RUN_ERR" "0:15496 995:" "gpt-2: 'Hello world', no BOS (the vocabulary adds none)"
	run "$tok" -m "$gpt2" --pieces "$TAP_TMP/hello.txt"
	is "$(cut -f2 "$TAP_TMP/out" | tr '\n' ' ')" "$(printf 'Hello \304\240world ')" "gpt-2: --pieces shows the stored pieces (Ġworld)"
	printf 'a<|endoftext|>' >"$TAP_TMP/eot.txt"
	run "$tok" -m "$gpt2" --special "$TAP_TMP/eot.txt"
	is "$RUN_OUT" "64 50256" "gpt-2: --special turns <|endoftext|> into 50256"
else
	skip "ggml-vocab-gpt-2.gguf is absent"
	skip "ggml-vocab-gpt-2.gguf is absent"
	skip "ggml-vocab-gpt-2.gguf is absent"
fi
if bert=$(tap_shared tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf); then
	printf 'Hello, World!' >"$TAP_TMP/bert.txt"
	run "$tok" -m "$bert" "$TAP_TMP/bert.txt"
	is "$RUN_RC:$RUN_OUT" "0:101 7592 1010 2088 999 102" "bert-bge: [CLS] hello , world ! [SEP]"
	run "$tok" -m "$bert" --no-bos "$TAP_TMP/bert.txt"
	is "$RUN_OUT" "7592 1010 2088 999" "bert-bge: --no-bos leaves out [CLS] and [SEP]"
else
	skip "ggml-vocab-bert-bge.gguf is absent"
	skip "ggml-vocab-bert-bge.gguf is absent"
fi

done_testing
