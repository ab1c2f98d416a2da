# bash completion for kvblend(1) and the kvblend-<tool> programs.
#
# Nothing here lists options by hand: tool names come from `kvblend --list-tools`,
# each tool's long options from `kvblend <tool> --complete-options` (one per
# line, a trailing "=" tolerated) and the quantize types from
# `kvblend quantize --list-types`, so the completion follows the code.
# Only the kinds of option values are known here: which options name a model,
# a file, a folder, or a number, the four values of chunk --by and the four
# evict --policy values.

# Options whose value is a GGUF model, any file, or something to type.
_kvblend_model_opts='-m --model'
_kvblend_file_opts='-f --file -o --output'
_kvblend_value_opts='-p --prompt -n --n-predict --temp --top-k --top-p --seed -t --threads --ctx
	--n-prompt --n-gen -r --reps -b --batch --synthetic --split --max-tokens --min-tokens --overlap
	--max-bytes --timeout --half-life --pin --unpin --tokens'
# Options whose value is a folder: the store.
_kvblend_dir_opts='--store'
# Options with a fixed set of values: chunk --by, evict --policy.
_kvblend_by_values='paragraph sentence heading window'
_kvblend_policy_values='lru lfu s3fifo cost'

# Complete file names in $cur; $1, if given, is a glob the files must match
# (directories are always offered, to descend into).
_kvblend_files()
{
	local IFS=$'\n'
	compopt -o filenames 2>/dev/null
	if [[ -n $1 ]]; then
		COMPREPLY=($(compgen -d -- "$cur") $(compgen -f -X "!$1" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}

_kvblend_word_in()
{
	local w
	for w in $2; do
		[[ $1 == "$w" ]] && return 0
	done
	return 1
}

# _kvblend_tool TOOL FIRST: complete for TOOL, whose arguments start at COMP_WORDS[FIRST].
_kvblend_tool()
{
	local tool=$1 first=$2 prev=${COMP_WORDS[COMP_CWORD-1]}

	# --opt=value splits into "--opt" "=" "value" with the default COMP_WORDBREAKS.
	if [[ $prev == = && $COMP_CWORD -ge $((first + 1)) ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	# evict -n is --dry-run, which takes no value
	[[ $tool == evict && $prev == -n ]] && prev=
	if [[ $tool == quantize && $prev == --synthetic ]]; then
		COMPREPLY=($(compgen -W "$(kvblend quantize --list-shapes 2>/dev/null)" -- "$cur"))
		return
	elif [[ $prev == --by ]]; then
		COMPREPLY=($(compgen -W "$_kvblend_by_values" -- "$cur"))
		return
	elif [[ $prev == --policy ]]; then
		COMPREPLY=($(compgen -W "$_kvblend_policy_values" -- "$cur"))
		return
	elif _kvblend_word_in "$prev" "$_kvblend_dir_opts"; then
		compopt -o filenames 2>/dev/null
		local IFS=$'\n'
		COMPREPLY=($(compgen -d -- "$cur"))
		return
	elif _kvblend_word_in "$prev" "$_kvblend_model_opts"; then
		_kvblend_files '*.[gG][gG][uU][fF]'
		return
	elif _kvblend_word_in "$prev" "$_kvblend_file_opts"; then
		_kvblend_files
		return
	elif _kvblend_word_in "$prev" "$_kvblend_value_opts"; then
		COMPREPLY=()
		return
	fi

	if [[ $cur == -* ]]; then
		local opts
		opts=$(kvblend "$tool" --complete-options 2>/dev/null ||
		       "kvblend-$tool" --complete-options 2>/dev/null)
		COMPREPLY=($(compgen -W "${opts//=/}" -- "$cur"))
		return
	fi

	# Operands: count the ones before the cursor.
	local i n=0 w skip=
	for ((i = first; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		# quantize --synthetic SHAPE OUT TYPE: no IN operand
		[[ $w == --synthetic ]] && n=$((n + 1))
		if [[ $w == = ]]; then
			skip=1
		elif [[ -n $skip ]]; then
			skip=
		elif [[ $w == -* ]]; then
			_kvblend_word_in "$w" "$_kvblend_model_opts $_kvblend_file_opts $_kvblend_value_opts $_kvblend_dir_opts --by --policy" && skip=1
		else
			n=$((n + 1))
		fi
	done
	case $tool in
	decode | bench | evict)
		COMPREPLY=() ;;
	quantize)
		case $n in
		0 | 1) _kvblend_files '*.[gG][gG][uU][fF]' ;;
		2) COMPREPLY=($(compgen -W "$(kvblend quantize --list-types 2>/dev/null)" -- "$cur")) ;;
		*) COMPREPLY=() ;;
		esac ;;
	*)
		_kvblend_files ;;
	esac
}

_kvblend()
{
	local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[0]##*/}
	COMPREPLY=()
	if [[ $cmd == kvblend-* ]]; then
		_kvblend_tool "${cmd#kvblend-}" 1
		return
	fi
	if ((COMP_CWORD == 1)); then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W '--help --version --list-tools' -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$(kvblend --list-tools 2>/dev/null)" -- "$cur"))
		fi
		return
	fi
	[[ ${COMP_WORDS[1]} == -* || ${COMP_WORDS[1]} == help ]] && return
	_kvblend_tool "${COMP_WORDS[1]}" 2
}

complete -F _kvblend kvblend
# The tools can also be run directly as kvblend-<tool>.
if command -v kvblend >/dev/null 2>&1; then
	_kvblend_t=$(kvblend --list-tools 2>/dev/null) &&
		[[ -n $_kvblend_t ]] && complete -F _kvblend $(printf 'kvblend-%s ' $_kvblend_t)
	unset _kvblend_t
fi
