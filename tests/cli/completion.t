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
	is "$(cand kvblend decode --t)" "--temp --template --threads --top-k --top-p" "kvblend decode --t<TAB>"
	is "$(cand kvblend-decode --no)" "--no-bos" "kvblend-decode --no<TAB> (the tool run directly)"
	got=$(cand kvblend decode -)
	has "$got" --model && has "$got" --n-predict && ! has "$got" --complete-options
	ok $? "kvblend decode -<TAB> offers the long options, not --complete-options"
	is "$(cand kvblend decode -m '')" "B.GGUF a.gguf sub" "decode -m <TAB> offers .gguf files and directories"
	is "$(cand kvblend decode --model = '')" "B.GGUF a.gguf sub" "decode --model=<TAB> offers .gguf files"
	is "$(cand kvblend decode -m a)" "a.gguf" "decode -m a<TAB>"
	is "$(cand kvblend decode -f '')" "B.GGUF a.gguf notes.txt sub" "decode -f <TAB> offers every file"
	is "$(cand kvblend decode -n '')" "" "decode -n <TAB> offers nothing"
	is "$(cand kvblend decode -m a.gguf '')" "" "decode takes no operand"
	is "$(cand kvblend decode --template '')" "auto chatml gemma llama2 llama3 mistral mistral-v7 phi3 phi4 plain" \
		"decode --template <TAB> offers auto and the templates"
else
	for i in 1 2 3 4 5 6 7 8 9 10 11; do skip "kvblend-decode is not built"; done
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
	is "$(cand kvblend quantize --chat-template '')" "B.GGUF a.gguf notes.txt sub" "quantize --chat-template <TAB> offers every file"
	if kvblend quantize --list-shapes >/dev/null 2>&1; then
		is "$(cand kvblend quantize --synthetic '')" \
			"$(kvblend quantize --list-shapes | LC_ALL=C sort | paste -sd ' ')" \
			"quantize --synthetic <TAB> offers kvblend quantize --list-shapes"
		is "$(cand kvblend quantize --synthetic tiny-llama --seed 3 a.gguf '')" "$types" \
			"quantize --synthetic SHAPE OUT <TAB> offers the types"
		is "$(cand kvblend quantize --hf '')" "sub" "quantize --hf <TAB> offers folders"
		is "$(cand kvblend quantize -v --hf sub a.gguf '')" "$types" "quantize --hf DIR OUT <TAB> offers the types"
	else
		for i in 1 2 3 4; do skip "kvblend-quantize has no --list-shapes"; done
	fi
else
	for i in 1 2 3 4 5 6 7 8 9; do skip "kvblend-quantize is not built"; done
fi
cd "$KVBLEND_ROOT" || exit 1

# Every tool answers --complete-options with its options, one per line ("--name",
# "=" when it takes a value, " -x" when a short option stands for it), and each
# of them is in its man page: a new option cannot skip its documentation.
: >"$TAP_TMP/shorts"
for t in $tools; do
	opts=$(kvblend "$t" --complete-options 2>&1)
	rc=$?
	bad=$(printf '%s\n' "$opts" | grep -vxE -- '--[a-z0-9][a-z0-9-]*=?( -[a-zA-Z0-9])?')
	[ $rc -eq 0 ] && [ -n "$opts" ] && [ -z "$bad" ]
	ok $? "kvblend $t --complete-options prints its options, one per line"
	[ -n "$bad" ] && diag "$bad"
	undoc=
	while read -r o s; do
		o=${o%=}
		grep -qE -- "Fl -${o#--}( |$)" "man/kvblend-$t.1" 2>/dev/null || undoc="$undoc $o"
		[ -z "$s" ] || grep -qE -- "^\.It Fl ${s#-} , Fl -${o#--}( |$)" "man/kvblend-$t.1" || undoc="$undoc $s"
		[ -z "$s" ] || echo "$s $o $t" >>"$TAP_TMP/shorts"
	done <<EOF
$opts
EOF
	is "$undoc" "" "every option of kvblend-$t is in man/kvblend-$t.1 (short ones as -x, --name)"
	# --complete-values answers for every option that takes a value, and refuses others
	nv=0
	for o in $(printf '%s\n' "$opts" | sed -n 's/^\(--[a-z0-9-]*\)=.*/\1/p'); do
		kvblend "$t" --complete-values "$o" >/dev/null 2>&1 || nv=$((nv + 1))
	done
	kvblend "$t" --complete-values --no-such-option >/dev/null 2>&1
	[ $? -eq 2 ] && [ $nv -eq 0 ]
	ok $? "kvblend $t --complete-values answers for each option with a value, exit 2 for an unknown one"
done

# A short option means one thing in every tool: the same letter, the same long
# option (and so the same kind of value), everywhere; kvblend(7) lists them.
conflicts=$(sort -u "$TAP_TMP/shorts" | awk '{ if ($1 in long && long[$1] != $2) print $1 ": " long[$1] " (" tool[$1] ") and " $2 " (" $3 ")"; long[$1] = $2; tool[$1] = $3 }')
is "$conflicts" "" "a short option stands for the same long option in every tool"
[ -s "$TAP_TMP/shorts" ]; ok $? "the tools have short options to compare"
unlisted=
for pair in $(awk '{ print $1 "," $2 }' "$TAP_TMP/shorts" | sort -u); do
	s=${pair%%,*} o=${pair#*,}
	o=${o%=}
	grep -qE -- "^\.It Fl ${s#-} , Fl -${o#--}( |$)" man/kvblend.7 || unlisted="$unlisted $s"
done
is "$unlisted" "" "kvblend(7) lists every short option with its one meaning"

# Values come from the tools: the completion offers what --complete-values says.
cd "$TAP_TMP/d" || exit 1
if have chunk; then
	is "$(cand kvblend chunk --by '')" "$(kvblend chunk --complete-values --by | LC_ALL=C sort | paste -sd ' ')" \
		"chunk --by <TAB> offers kvblend chunk --complete-values --by"
	has "$(cand kvblend chunk --by '')" ppl; ok $? "... which include ppl"
	is "$(cand kvblend chunk -o x --quiet '')" "B.GGUF a.gguf notes.txt sub" "chunk --quiet takes no value: an operand follows"
	is "$(cand kvblend chunk --exclude '')" "" "chunk --exclude <TAB>: a glob, so no file names"
	is "$(cand kvblend chunk --include '*.md' '')" "B.GGUF a.gguf notes.txt sub" "chunk --include GLOB <TAB>: files and directories (the operands)"
else
	for i in 1 2 3 4 5; do skip "kvblend-chunk is not built"; done
fi
if have blend; then
	is "$(cand kvblend blend -q x --mode '')" "ape blend epic full prefix reuse" "blend -q Q --mode <TAB>: -q takes a value, the modes follow"
	is "$(cand kvblend blend --metric = '')" "k kv v" "blend --metric=<TAB>"
	is "$(cand kvblend blend --ape-)" "--ape-scale --ape-temp" "blend --ape-<TAB>: APE's options"
else
	for i in 1 2 3; do skip "kvblend-blend is not built"; done
fi
if have prefill; then
	is "$(cand kvblend prefill --ape --template '')" "$(printf '%s\n' auto plain chatml llama3 mistral llama2 mistral-v7 gemma phi3 phi4 | LC_ALL=C sort | paste -sd ' ')" "prefill --ape --template <TAB>"
else
	skip "kvblend-prefill is not built"
fi
is "$(cand kvblend help '')" "$(printf '%s\n' $tools | LC_ALL=C sort | paste -sd ' ')" "kvblend help <TAB> offers the tools"
cd "$KVBLEND_ROOT" || exit 1

if command -v zsh >/dev/null 2>&1; then
	zsh -n completions/_kvblend
	ok $? "the zsh completion parses"
else
	skip "zsh is not installed"
fi

# fish: the same candidates, from the same tools.
if command -v fish >/dev/null 2>&1; then
	fish -n completions/kvblend.fish
	ok $? "the fish completion parses"
	fcand() { fish -c "source completions/kvblend.fish; complete -C'$1'" 2>>"$TAP_TMP/noise" | cut -f1 | LC_ALL=C sort | paste -sd ' '; }
	is "$(fish -c 'source completions/kvblend.fish' 2>&1)" "" "sourcing the fish completion prints nothing"
	is "$(fcand 'kvblend ')" "$(printf '%s\n' $tools | LC_ALL=C sort | paste -sd ' ')" "fish: kvblend <TAB> offers the tools"
	if have evict; then
		is "$(fcand 'kvblend evict --policy ')" "cost lfu lru s3fifo" "fish: evict --policy <TAB> offers the policies"
		is "$(fcand 'kvblend-evict --ver')" "--verbose --verify --version" "fish: kvblend-evict --ver<TAB>"
	else
		for i in 1 2; do skip "kvblend-evict is not built"; done
	fi
	if have blend; then
		is "$(fcand 'kvblend blend --template ')" "auto chatml gemma llama2 llama3 mistral mistral-v7 phi3 phi4 plain" \
			"fish: blend --template <TAB> offers auto and the templates"
	else
		skip "kvblend-blend is not built"
	fi
	if have chunk; then
		is "$(fcand 'kvblend chunk --by=p')" "--by=paragraph --by=ppl" "fish: chunk --by=p<TAB>"
		is "$(fcand 'kvblend chunk --exclude ')" "" "fish: chunk --exclude <TAB>: a glob, no file names"
	else
		for i in 1 2; do skip "kvblend-chunk is not built"; done
	fi
	if have blend; then
		is "$(fcand 'kvblend blend --mode ')" "ape blend epic full prefix reuse" "fish: blend --mode <TAB> offers the modes, ape too"
	else
		skip "kvblend-blend is not built"
	fi
	if have quantize; then
		is "$(fcand 'kvblend quantize a.gguf b.gguf ')" "$(kvblend quantize --list-types | LC_ALL=C sort | paste -sd ' ')" \
			"fish: quantize IN OUT <TAB> offers the types"
		is "$(fcand 'kvblend quantize --hf d b.gguf ')" "$(kvblend quantize --list-types | LC_ALL=C sort | paste -sd ' ')" \
			"fish: quantize --hf DIR OUT <TAB> offers the types"
	else
		for i in 1 2; do skip "kvblend-quantize is not built"; done
	fi
else
	for i in 1 2 3 4 5 6 7 8 9 10; do skip "fish is not installed"; done
fi

# reuse across edits: the options reach the completions of bash and fish
if have prefill && have blend; then
	is "$(cand kvblend prefill --reuse)" "--reuse-similar" "prefill --reuse<TAB> offers --reuse-similar"
	is "$(cand kvblend blend --min)" "--min-similarity" "blend --min<TAB> offers --min-similarity"
	if command -v fish >/dev/null 2>&1; then
		is "$(fcand 'kvblend prefill --reuse')" "--reuse-similar" "fish: prefill --reuse<TAB>"
	else
		skip "fish is not installed"
	fi
else
	for i in 1 2 3; do skip "kvblend-prefill or kvblend-blend is not built"; done
fi

is "$(cat "$TAP_TMP/noise" 2>/dev/null)" "" "completing printed nothing of its own"
done_testing
