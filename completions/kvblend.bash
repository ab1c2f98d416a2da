# bash completion for kvblend(1) and the kvblend-<tool> programs.
#
# Nothing here lists options or values by hand: tool names come from
# `kvblend --list-tools`, each tool's options from `kvblend <tool>
# --complete-options` (one per line: "--name", "=" when it takes a value, " -x"
# when a short option stands for it), the words an option's value may be from
# `kvblend <tool> --complete-values --name`, the quantize types and shapes from
# `kvblend quantize --list-types` and `--list-shapes`: the completion follows
# the code. Known here is only which options name a model, a file or a folder,
# and that quantize's --synthetic and --hf stand for its IN operand.

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

# _kvblend_long WORD: the long option WORD names, "=" and all: itself or the one
# its short letter stands for (from the arrays long and short of _kvblend_tool).
_kvblend_long()
{
	local i
	for i in "${!long[@]}"; do
		if [[ ${long[i]%=} == "$1" || ${short[i]} == "$1" ]]; then
			printf '%s\n' "${long[i]}"
			return 0
		fi
	done
	return 1
}

# _kvblend_tool TOOL FIRST: complete for TOOL, whose arguments start at COMP_WORDS[FIRST].
_kvblend_tool()
{
	local tool=$1 first=$2 prev=${COMP_WORDS[COMP_CWORD-1]} words=

	# --opt=value splits into "--opt" "=" "value" with the default COMP_WORDBREAKS.
	if [[ $prev == = && $COMP_CWORD -ge $((first + 1)) ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	# One line per option: "--name", "=" when it takes a value, " -x" when a
	# short option stands for it (a letter means the same in every tool).
	local lines long=() short=() l
	lines=$(kvblend "$tool" --complete-options 2>/dev/null || "kvblend-$tool" --complete-options 2>/dev/null)
	local IFS=$'\n'
	for l in $lines; do
		long+=("${l%% *}")
		[[ $l == *' -'? ]] && short+=("${l##* }") || short+=("")
	done
	unset IFS
	local opt
	opt=$(_kvblend_long "$prev")
	if [[ $opt == *= ]]; then
		opt=${opt%=}
		case $opt in
		--model) _kvblend_files '*.[gG][gG][uU][fF]'; return ;;
		--store | --hf)
			compopt -o filenames 2>/dev/null
			local IFS=$'\n'
			COMPREPLY=($(compgen -d -- "$cur"))
			return ;;
		--file | --output | --cache | --prefix-file | --query-file | --dataset | --plot | --vocab | --chat-template)
			_kvblend_files; return ;;
		--synthetic) words=$(kvblend quantize --list-shapes 2>/dev/null) ;;
		--remote) # a URL: the schemes, then $KVBLEND_REMOTE when set
			compopt -o nospace 2>/dev/null
			words="s3:// https:// http:// ${KVBLEND_REMOTE:-}" ;;
		*) words=$(kvblend "$tool" --complete-values "$opt" 2>/dev/null) ;;
		esac
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		return
	fi

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "${long[*]%=}" -- "$cur"))
		return
	fi

	# Operands: count the ones before the cursor.
	local i n=0 w skip=
	for ((i = first; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		# quantize --synthetic SHAPE OUT TYPE, --hf DIR OUT TYPE: no IN operand
		[[ $w == --synthetic || $w == --hf ]] && n=$((n + 1))
		if [[ $w == = ]]; then
			skip=1
		elif [[ -n $skip ]]; then
			skip=
		elif [[ $w == -* ]]; then
			[[ $(_kvblend_long "$w") == *= ]] && skip=1
		else
			n=$((n + 1))
		fi
	done
	case $tool in
	decode | bench | evict | pull)
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
	if [[ ${COMP_WORDS[1]} == help ]]; then
		((COMP_CWORD == 2)) && [[ $cur != -* ]] && COMPREPLY=($(compgen -W "$(kvblend --list-tools 2>/dev/null)" -- "$cur"))
		return
	fi
	[[ ${COMP_WORDS[1]} == -* ]] && return
	_kvblend_tool "${COMP_WORDS[1]}" 2
}

complete -F _kvblend kvblend
# The tools can also be run directly as kvblend-<tool>.
if command -v kvblend >/dev/null 2>&1; then
	_kvblend_t=$(kvblend --list-tools 2>/dev/null) &&
		[[ -n $_kvblend_t ]] && complete -F _kvblend $(printf 'kvblend-%s ' $_kvblend_t)
	unset _kvblend_t
fi
