#!/bin/bash
# completion.t — the bash completion offers what the tools say they take, and
# every option a tool reports has reached its man page.
# Skips what is not built yet.
. "$(dirname "$0")/tap.sh"
need_bin kvblend
cd "$KVBLEND_ROOT" || exit 1
PATH=$KVBLEND_BIN:$PATH
export PATH
have() { [ -x "$KVBLEND_BIN/kvblend-$1" ]; }

out=$(source completions/kvblend.bash 2>&1)
is "$out" "" "sourcing the bash completion prints nothing"
source completions/kvblend.bash

# cand WORD...: complete the last word of the command line WORD... with the
# function registered for WORD[0]; print the candidates sorted, space-separated.
# Anything the completion itself prints goes to $TAP_TMP/noise.
cand() {
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	local f
	f=$(complete -p "$1" 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
	"${f:-_kvblend}" >>"$TAP_TMP/noise" 2>&1
	printf '%s\n' "${COMPREPLY[@]}" | LC_ALL=C sort | paste -sd ' ' | sed 's/^ *//'
}
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

# kvblend <TAB>: the tools that are installed
tools=$(kvblend --list-tools)
got=$(cand kvblend '')
is "$got" "$(printf '%s\n' $tools | LC_ALL=C sort | paste -sd ' ')" "kvblend <TAB> offers kvblend --list-tools"
for t in decode tokenize quantize; do
	if have $t; then has "$got" $t; ok $? "kvblend <TAB> offers $t"; else skip "kvblend-$t is not built"; fi
done
is "$(cand kvblend --)" "--help --list-tools --version" "kvblend --<TAB> offers the dispatcher's options"
is "$(cand kvblend help -)" "" "kvblend help -<TAB> offers nothing"

mkdir "$TAP_TMP/d" "$TAP_TMP/d/sub" && : >"$TAP_TMP/d/a.gguf" && : >"$TAP_TMP/d/B.GGUF" && : >"$TAP_TMP/d/notes.txt"
cd "$TAP_TMP/d" || exit 1

if have decode; then
	is "$(cand kvblend de)" "decode" "kvblend de<TAB> completes decode"
	is "$(cand kvblend decode --t)" "--temp --threads --top-k --top-p" "kvblend decode --t<TAB>"
	is "$(cand kvblend-decode --no)" "--no-bos --no-parse-special" "kvblend-decode --no<TAB> (the tool run directly)"
	got=$(cand kvblend decode -)
	has "$got" --model && has "$got" --n-predict && ! has "$got" --complete-options
	ok $? "kvblend decode -<TAB> offers the long options, not --complete-options"
	is "$(cand kvblend decode -m '')" "B.GGUF a.gguf sub" "decode -m <TAB> offers .gguf files and directories"
	is "$(cand kvblend decode --model = '')" "B.GGUF a.gguf sub" "decode --model=<TAB> offers .gguf files"
	is "$(cand kvblend decode -m a)" "a.gguf" "decode -m a<TAB>"
	is "$(cand kvblend decode -f '')" "B.GGUF a.gguf notes.txt sub" "decode -f <TAB> offers every file"
	is "$(cand kvblend decode -n '')" "" "decode -n <TAB> offers nothing"
	is "$(cand kvblend decode -m a.gguf '')" "" "decode takes no operand"
else
	for i in 1 2 3 4 5 6 7 8 9 10; do skip "kvblend-decode is not built"; done
fi

if have tokenize; then
	is "$(cand kvblend tokenize -m a.gguf --no-bos '')" "B.GGUF a.gguf notes.txt sub" "tokenize -m M <TAB> offers every file"
else
	skip "kvblend-tokenize is not built"
fi

if have quantize; then
	types=$(cand kvblend quantize -v a.gguf out.gguf '')
	is "$types" "$(kvblend quantize --list-types | LC_ALL=C sort | paste -sd ' ')" \
		"quantize IN OUT <TAB> offers kvblend quantize --list-types"
	miss=
	for ty in f32 f16 bf16 q8_0 q4_0; do has "$types" $ty || miss="$miss $ty"; done
	is "$miss" "" "the types include f32 f16 bf16 q8_0 q4_0"
	miss=
	for ty in $types; do grep -qw -- "$ty" "$KVBLEND_ROOT/man/kvblend-quantize.1" || miss="$miss $ty"; done
	is "$miss" "" "every type is in man/kvblend-quantize.1"
	is "$(cand kvblend quantize a '')" "B.GGUF a.gguf sub" "quantize IN <TAB> offers .gguf files"
	if kvblend quantize --list-shapes >/dev/null 2>&1; then
		is "$(cand kvblend quantize --synthetic '')" \
			"$(kvblend quantize --list-shapes | LC_ALL=C sort | paste -sd ' ')" \
			"quantize --synthetic <TAB> offers kvblend quantize --list-shapes"
		is "$(cand kvblend quantize --synthetic tiny-llama --seed 3 a.gguf '')" "$types" \
			"quantize --synthetic SHAPE OUT <TAB> offers the types"
	else
		for i in 1 2; do skip "kvblend-quantize has no --list-shapes"; done
	fi
else
	for i in 1 2 3 4 5 6; do skip "kvblend-quantize is not built"; done
fi
cd "$KVBLEND_ROOT" || exit 1

# Every tool answers --complete-options with long options, and each of them is
# in its man page: a new option cannot skip its documentation.
for t in $tools; do
	opts=$(kvblend "$t" --complete-options 2>&1)
	rc=$?
	bad=$(printf '%s\n' "$opts" | grep -vxE -- '--[a-z0-9][a-z0-9-]*=?')
	[ $rc -eq 0 ] && [ -n "$opts" ] && [ -z "$bad" ]
	ok $? "kvblend $t --complete-options prints long options, one per line"
	[ -n "$bad" ] && diag "$bad"
	undoc=
	for o in $opts; do
		o=${o%=}
		grep -qE -- "Fl -${o#--}( |$)" "man/kvblend-$t.1" 2>/dev/null || undoc="$undoc $o"
	done
	is "$undoc" "" "every option of kvblend-$t is in man/kvblend-$t.1"
done

if command -v zsh >/dev/null 2>&1; then
	zsh -n completions/_kvblend
	ok $? "the zsh completion parses"
else
	skip "zsh is not installed"
fi

is "$(cat "$TAP_TMP/noise" 2>/dev/null)" "" "completing printed nothing of its own"
done_testing
