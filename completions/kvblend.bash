# bash completion for kvblend(1) and the kvblend-<tool> programs.
#
# Nothing here lists options by hand: tool names come from `kvblend --list-tools`,
# each tool's long options from `kvblend <tool> --complete-options` (one per
# line, "--name=" for those that take a value) and the quantize types from
# `kvblend quantize --list-types`, so the completion follows the code.

# Which long options take a value the tools say themselves: --complete-options
# prints them with a trailing "=". Known here is only what kind of value an
# option name means (a model, a file, a folder, one of a few words) and which
# short options take one.
_kvblend_short_value_opts='-m -p -f -c -n -t -o -b -r -k -q'
# Value lists of the options with a fixed set.
_kvblend_by_values='paragraph sentence heading window ppl'
_kvblend_policy_values='lru lfu s3fifo cost'
_kvblend_mode_values='blend full reuse prefix epic'
_kvblend_template_values='plain chatml llama3 mistral'
_kvblend_metric_values='kv k v'
_kvblend_dtype_values='f16 bf16 f32 q8_0'
_kvblend_order_values='rank reverse doc'
_kvblend_pool_values='mean cls last'

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

# _kvblend_short_flag TOOL OPT: OPT is in _kvblend_short_value_opts but TOOL's
# takes no value (evict -n is --dry-run; chunk and bench -q are --quiet).
_kvblend_short_flag()
{
	[[ ($1 == evict && $2 == -n) || (($1 == chunk || $1 == bench) && $2 == -q) ]]
}

# _kvblend_tool TOOL FIRST: complete for TOOL, whose arguments start at COMP_WORDS[FIRST].
_kvblend_tool()
{
	local tool=$1 first=$2 prev=${COMP_WORDS[COMP_CWORD-1]}

	# --opt=value splits into "--opt" "=" "value" with the default COMP_WORDBREAKS.
	if [[ $prev == = && $COMP_CWORD -ge $((first + 1)) ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	local opts
	opts=$(kvblend "$tool" --complete-options 2>/dev/null || "kvblend-$tool" --complete-options 2>/dev/null)
	_kvblend_short_flag "$tool" "$prev" && prev=
	local takes=
	if [[ $prev == --* ]]; then
		_kvblend_word_in "$prev=" "$opts" && takes=1
	elif [[ -n $prev ]] && _kvblend_word_in "$prev" "$_kvblend_short_value_opts"; then
		takes=1
	fi
	if [[ -n $takes ]]; then
		local words=
		case $prev in
		-m | --model) _kvblend_files '*.[gG][gG][uU][fF]'; return ;;
		--store)
			compopt -o filenames 2>/dev/null
			local IFS=$'\n'
			COMPREPLY=($(compgen -d -- "$cur"))
			return ;;
		-f | -o | -c | --file | --output | --cache | --prefix-file | --query-file | --dataset | --plot | --vocab)
			_kvblend_files; return ;;
		--synthetic) words=$(kvblend quantize --list-shapes 2>/dev/null) ;;
		--by) words=$_kvblend_by_values ;;
		--policy) words=$_kvblend_policy_values ;;
		--mode) words=$_kvblend_mode_values ;;
		--template) words=$_kvblend_template_values ;;
		--metric) words=$_kvblend_metric_values ;;
		--dtype) words=$_kvblend_dtype_values ;;
		--order) words=$_kvblend_order_values ;;
		--pool) words=$_kvblend_pool_values ;;
		esac
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		return
	fi

	if [[ $cur == -* ]]; then
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
			{ _kvblend_word_in "$w=" "$opts" || _kvblend_word_in "$w" "$_kvblend_short_value_opts"; } &&
				! _kvblend_short_flag "$tool" "$w" && skip=1
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
