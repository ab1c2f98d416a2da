#!/bin/bash
# grammar.t — one command-line grammar for every tool (cmd/cli.h): the same
# messages for an unknown option (with a suggestion), a missing or unwanted
# value, an ambiguous abbreviation; --version everywhere; `kvblend help TOOL`;
# sizes; and stdout checked: a tool that cannot write its output exits 1.
. "$(dirname "$0")/tap.sh"
need_bin kvblend
PATH=$KVBLEND_BIN:$PATH
export PATH
tools=$(kvblend --list-tools)
version=$(sed -n 's/^VERSION *:= *//p' "$KVBLEND_ROOT/Makefile")

for t in $tools; do
	run "kvblend-$t" --bogus-option
	is "$RUN_RC:$RUN_ERR" "2:kvblend-$t: unknown option '--bogus-option'
Try 'kvblend-$t --help' for more information." "$t: an unknown option is named, then the hint, exit 2"
	# a near miss of one of the tool's own long options: the last letter changed
	long=$(kvblend "$t" --complete-options | cut -d' ' -f1 | tr -d = | awk 'length($0) >= 8' | head -n 1)
	typo=${long%?}Z
	run "kvblend-$t" "$typo"
	like "$RUN_RC:$RUN_ERR" "2:kvblend-$t: unknown option '$typo' (did you mean '$long'?)
Try*" "$t: $typo suggests $long"
	run "kvblend-$t" --version
	is "$RUN_RC:$RUN_OUT" "0:kvblend-$t $version" "$t --version"
	run "kvblend-$t" --help=yes
	like "$RUN_RC:$RUN_ERR" "2:kvblend-$t: option '--help' takes no value*" "$t: an unwanted value"
	valued=$(kvblend "$t" --complete-options | sed -n 's/^\(--[a-z0-9-]*\)=.*/\1/p' | head -n 1)
	if [ -n "$valued" ]; then
		run "kvblend-$t" "$valued"
		like "$RUN_RC:$RUN_ERR" "2:kvblend-$t: option '$valued' needs a value
Try*" "$t: $valued without its value"
	else
		skip "$t has no option with a value"
	fi
	run "kvblend-$t" -Z
	like "$RUN_RC:$RUN_ERR" "2:kvblend-$t: unknown option '-Z'
Try*" "$t: an unknown short option"
	run kvblend help "$t"
	[ "$RUN_RC" -eq 0 ] && [ "$RUN_OUT" = "$("kvblend-$t" --help)" ]
	ok $? "kvblend help $t shows kvblend-$t --help"
	"kvblend-$t" --help >/dev/full 2>"$TAP_TMP/full"
	is "$?:$(cat "$TAP_TMP/full")" "1:kvblend-$t: write error: No space left on device" "$t --help >/dev/full: exit 1, a message"
done

run kvblend-decode --t 1
like "$RUN_RC:$RUN_ERR" "2:kvblend-decode: option '--t' is ambiguous: --temp, --top-k, --top-p, --threads*" \
	"an ambiguous abbreviation lists what it could be"
run kvblend-decode -m
like "$RUN_RC:$RUN_ERR" "2:kvblend-decode: option '-m' needs a value*" "a short option without its value"
run kvblend-decode --verbose -vZ
like "$RUN_RC:$RUN_ERR" "2:kvblend-decode: unknown option '-Z'*" "an unknown letter in a group after a long option"
run kvblend-decode --threads x
like "$RUN_RC:$RUN_ERR" "2:kvblend-decode: --threads: 'x' is not an integer in*" "a bad number"

run kvblend --help
ok $(case $RUN_OUT in *planned*) echo 1 ;; *) echo 0 ;; esac) "kvblend --help calls nothing planned"
miss=
for t in chunk embed prefill blend decode evict bench tokenize quantize info; do
	printf '%s\n' "$RUN_OUT" | grep -q "^  $t " || miss="$miss $t"
done
is "$miss" "" "kvblend --help lists every tool"
run kvblend help nosuchtool
like "$RUN_RC:$RUN_ERR" "2:kvblend: 'nosuchtool' is not a kvblend tool*" "kvblend help of a tool that does not exist"
kvblend --help >/dev/full 2>"$TAP_TMP/full"
is "$?:$(cat "$TAP_TMP/full")" "1:kvblend: write error: No space left on device" "kvblend --help >/dev/full"

# Item 5 on real output, not only --help: each tool's results to a full disk
if model=$(tap_shared models/stories260Ktok512.gguf); then
	full() { # NAME CMD...: CMD's stdout is /dev/full: exit 1 and a message naming the failure
		name=$1
		shift
		"$@" >/dev/full 2>"$TAP_TMP/full" </dev/null
		like "$?:$(cat "$TAP_TMP/full")" "1:*No space left on device*" "$name >/dev/full: exit 1, a message"
	}
	printf 'Once upon a time.\n' >"$TAP_TMP/story.txt"
	full decode "$KVBLEND_BIN/kvblend-decode" -m "$model" -p "Once upon" -n 8
	full info "$KVBLEND_BIN/kvblend-info" "$model"
	full "info --json" "$KVBLEND_BIN/kvblend-info" --json "$model"
	full tokenize "$KVBLEND_BIN/kvblend-tokenize" -m "$model" "$TAP_TMP/story.txt"
	full chunk "$KVBLEND_BIN/kvblend-chunk" "$TAP_TMP/story.txt"
	full "prefill -o -" "$KVBLEND_BIN/kvblend-prefill" -m "$model" -p "Once upon" -o -
else
	for t in decode info "info --json" tokenize chunk "prefill -o -"; do skip "$t >/dev/full: no ../shared model"; done
fi

# Sizes: one parser (k, M, G, T: powers of 1024), the same error everywhere.
if [ -x "$KVBLEND_BIN/kvblend-evict" ]; then
	st=$TAP_TMP/st # no store: a size that parses gets as far as opening it (exit 1), a bad one is a usage error
	for s in 0 1 1k 1K 1KB 1KiB 1kib 1.5G 16E0; do
		run kvblend-evict --store "$st" --max-bytes "$s" --dry-run
		case $s in
		16E0) like "$RUN_RC:$RUN_ERR" "2:kvblend-evict: --max-bytes: '16E0' is not a size*" "evict --max-bytes $s: not a size" ;;
		*) like "$RUN_RC:$RUN_ERR" "1:kvblend-evict: '$st': no such store*" "evict --max-bytes $s is a size" ;;
		esac
	done
	for s in -1 1X 1.G .5k 1kk 18446744073709551616 17179869184G 16777216T "" 1e3; do
		run kvblend-evict --store "$st" --max-bytes "$s" --dry-run
		like "$RUN_RC:$RUN_ERR" "2:kvblend-evict: --max-bytes: '$s' is not a size*" "evict --max-bytes '$s': usage error"
	done
	run kvblend-evict --store "$st" --max-bytes 16383P --dry-run
	like "$RUN_RC:$RUN_ERR" "2:*is not a size*" "an unknown unit"
else
	for i in $(seq 22); do skip "kvblend-evict is not built"; done
fi
if [ -x "$KVBLEND_BIN/kvblend-chunk" ]; then
	printf 'a b c\n' >"$TAP_TMP/doc.txt"
	for s in 1k 64KiB 1.5M; do
		run kvblend-chunk --max-doc-bytes "$s" "$TAP_TMP/doc.txt"
		is "$RUN_RC" 0 "chunk --max-doc-bytes $s is a size"
	done
	run kvblend-chunk --max-doc-bytes 2T "$TAP_TMP/doc.txt"
	like "$RUN_RC:$RUN_ERR" "2:kvblend-chunk: --max-doc-bytes: '2T' is not a size in ?1, 1099511627776? bytes*" \
		"chunk --max-doc-bytes: the same message, with its range"
	run kvblend-chunk --max-bytes 1k "$TAP_TMP/doc.txt"
	like "$RUN_RC:$RUN_ERR" "2:kvblend-chunk: unknown option '--max-bytes' (did you mean '--max-doc-bytes'?)*" \
		"chunk --max-bytes is evict's budget only: chunk says so"
else
	for i in 1 2 3 4 5; do skip "kvblend-chunk is not built"; done
fi
done_testing
