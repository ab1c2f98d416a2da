#!/bin/bash
# completion.t — the bash completion offers what the tools say they take, and
# every option a tool reports has reached its man page.
# Uses $KVBLEND_BIN (default build/bin); skips what is not built yet.
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
bin=${KVBLEND_BIN:-$top/build/bin}

n=0 failed=0
ok() { # ok STATUS NAME
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

if [ ! -x "$bin/kvblend" ]; then
	echo "1..0 # SKIP $bin/kvblend is not built"
	exit 0
fi
PATH=$bin:$PATH
export PATH
have() { [ -x "$bin/kvblend-$1" ]; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-completion.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

out=$(source completions/kvblend.bash 2>&1)
[ -z "$out" ]
ok $? "sourcing the bash completion prints nothing"
[ -n "$out" ] && diag "$out"
source completions/kvblend.bash

# cand WORD...: complete the last word of the command line WORD..., print the
# candidates one per line, sorted; stray output of the completion goes to $tmp/noise.
cand() {
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	local f
	f=$(complete -p "${COMP_WORDS[0]}" 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
	"${f:-_kvblend}" >>"$tmp/noise" 2>&1
	[ ${#COMPREPLY[@]} -gt 0 ] && printf '%s\n' "${COMPREPLY[@]}" | LC_ALL=C sort
}
# is GOT WANT NAME: the candidates are exactly WANT (space-separated).
is() {
	local want
	want=$(printf '%s\n' $2 | LC_ALL=C sort)
	[ "$1" = "$want" ]
	ok $? "$3"
	[ "$1" = "$want" ] || diag "got:" $1 "want:" $2
}
has() { printf '%s\n' "$1" | grep -qxF -- "$2"; }

# kvblend <TAB>: the tools that are installed
tools=$(kvblend --list-tools)
got=$(cand kvblend '')
is "$got" "$tools" "kvblend <TAB> offers kvblend --list-tools"
for t in decode tokenize quantize; do
	if have $t; then has "$got" $t; ok $? "kvblend <TAB> offers $t"; else skip "kvblend-$t is not built"; fi
done
is "$(cand kvblend --)" "--help --list-tools --version" "kvblend --<TAB> offers the dispatcher's options"
is "$(cand kvblend help -)" "" "kvblend help -<TAB> offers nothing"

if have decode; then
	is "$(cand kvblend de)" "decode" "kvblend de<TAB> completes decode"
	is "$(cand kvblend decode --t)" "--temp --threads --top-k --top-p" "kvblend decode --t<TAB>"
	is "$(cand kvblend-decode --no)" "--no-bos --no-parse-special" "kvblend-decode --no<TAB> (the tool run directly)"
	got=$(cand kvblend decode -)
	has "$got" --model && has "$got" --n-predict && ! has "$got" --complete-options
	ok $? "kvblend decode -<TAB> offers the long options, not --complete-options"

	mkdir "$tmp/d" "$tmp/d/sub" && : >"$tmp/d/a.gguf" && : >"$tmp/d/B.GGUF" && : >"$tmp/d/notes.txt"
	(
		cd "$tmp/d" || exit 1
		is "$(cand kvblend decode -m '')" "B.GGUF a.gguf sub" "decode -m <TAB> offers .gguf files and directories"
		is "$(cand kvblend decode --model = '')" "B.GGUF a.gguf sub" "decode --model=<TAB> offers .gguf files"
		is "$(cand kvblend decode -m a)" "a.gguf" "decode -m a<TAB>"
		is "$(cand kvblend decode -f '')" "B.GGUF a.gguf notes.txt sub" "decode -f <TAB> offers every file"
		is "$(cand kvblend decode -n '')" "" "decode -n <TAB> offers nothing"
		is "$(cand kvblend decode -m a.gguf '')" "" "decode takes no operand"
		exit $failed
	)
	fails=$?
	n=$((n + 6)) failed=$((failed + fails))
else
	for i in 1 2 3 4 5 6 7 8 9 10; do skip "kvblend-decode is not built"; done
fi

if have quantize; then
	(
		cd "$tmp/d" 2>/dev/null || { mkdir -p "$tmp/d/sub" && : >"$tmp/d/a.gguf" && cd "$tmp/d"; } || exit 1
		types=$(cand kvblend quantize -v a.gguf out.gguf '')
		is "$types" "bf16 f16 f32 q4_0 q8_0" "quantize IN OUT <TAB> offers the types"
		help=$(kvblend-quantize --help 2>&1)
		miss=
		for ty in $types; do printf '%s' "$help" | grep -qw -- "$ty" || miss="$miss $ty"; done
		[ -z "$miss" ]
		ok $? "every type offered is in kvblend-quantize --help"
		[ -n "$miss" ] && diag "not in --help:$miss"
		got=$(cand kvblend quantize a.gguf '')
		has "$got" a.gguf && has "$got" sub && ! has "$got" notes.txt
		ok $? "quantize IN <TAB> offers .gguf files"
		exit $failed
	)
	fails=$?
	n=$((n + 3)) failed=$((failed + fails))
else
	for i in 1 2 3; do skip "kvblend-quantize is not built"; done
fi

# Every tool answers --complete-options with long options, and each of them is
# in its man page: a new option cannot skip its documentation.
for t in $tools; do
	opts=$(kvblend "$t" --complete-options 2>&1)
	rc=$?
	bad=$(printf '%s\n' "$opts" | grep -vxE -- '--[a-z0-9][a-z0-9-]*=?')
	[ $rc -eq 0 ] && [ -n "$opts" ] && [ -z "$bad" ]
	ok $? "kvblend $t --complete-options prints long options, one per line"
	[ -n "$bad" ] && diag "$bad"
	page=man/kvblend-$t.1
	undoc=
	for o in $opts; do
		o=${o%=}
		grep -qE -- "Fl -${o#--}( |$)" "$page" 2>/dev/null || undoc="$undoc $o"
	done
	[ -z "$undoc" ]
	ok $? "every option of kvblend-$t is in $page"
	[ -n "$undoc" ] && diag "missing:$undoc"
done

if command -v zsh >/dev/null 2>&1; then
	zsh -n completions/_kvblend
	ok $? "the zsh completion parses"
else
	skip "zsh is not installed"
fi

[ -s "$tmp/noise" ]
ok $((!$?)) "completing printed nothing of its own"
[ -s "$tmp/noise" ] && diag "$(cat "$tmp/noise")"

echo "1..$n"
[ $failed -eq 0 ]
