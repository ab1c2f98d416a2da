# fish completion for kvblend(1) and the kvblend-<tool> programs.
#
# Like the bash and zsh completions, it lists no options or values by hand:
# tool names come from `kvblend --list-tools`, each tool's options from
# `kvblend <tool> --complete-options` (one per line: "--name", "=" when it takes
# a value, " -x" when a short option stands for it), the words an option's value
# may be from `kvblend <tool> --complete-values --name`, the quantize types and
# shapes from `kvblend quantize --list-types` and `--list-shapes`. Known here is
# only which options name a model, a file or a folder, and that quantize's
# --synthetic and --hf stand for its IN operand.

# __kvblend_long WORD LINES...: the long option WORD names ("--name" or
# "--name="): itself, or the one its short letter stands for.
function __kvblend_long
    set -l word $argv[1]
    for l in $argv[2..-1]
        set -l f (string split ' ' -- $l)
        if test (string trim -r -c = -- $f[1]) = "$word"; or begin; test (count $f) -ge 2; and test "$f[2]" = "$word"; end
            echo $f[1]
            return 0
        end
    end
    return 1
end

# __kvblend_value TOOL OPT CUR: the candidates for the value of TOOL's long option OPT.
function __kvblend_value
    set -l tool $argv[1]
    set -l opt $argv[2]
    set -l cur $argv[3]
    switch $opt
        case --model
            __fish_complete_suffix $cur .gguf
        case --store --hf
            __fish_complete_directories $cur
        case --file --output --cache --prefix-file --query-file --dataset --plot --vocab --chat-template
            __fish_complete_path $cur
        case --synthetic
            kvblend quantize --list-shapes 2>/dev/null
        case --remote
            printf '%s\n' s3:// https:// http:// $KVBLEND_REMOTE
        case '*'
            kvblend $tool --complete-values $opt 2>/dev/null
    end
end

function __kvblend_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmd (string replace -r '.*/' '' -- $words[1])
    set -l tool
    set -l first
    if string match -q 'kvblend-*' -- $cmd
        set tool (string replace 'kvblend-' '' -- $cmd)
        set first 2
    else
        if test (count $words) -lt 2
            if string match -q -- '-*' $cur
                printf '%s\n' --help --version --list-tools
            else
                kvblend --list-tools 2>/dev/null
            end
            return
        end
        set tool $words[2]
        if test "$tool" = help
            if test (count $words) -eq 2; and not string match -q -- '-*' $cur
                kvblend --list-tools 2>/dev/null
            end
            return
        end
        string match -q -- '-*' $tool; and return
        set first 3
    end
    set -l lines (kvblend $tool --complete-options 2>/dev/null; or kvblend-$tool --complete-options 2>/dev/null)

    # The value of an option: "--opt=VALUE", or the word after the option.
    set -l prev
    test (count $words) -ge $first; and set prev $words[-1]
    set -l prefix ''
    if string match -q -r -- '^--[^=]+=' $cur
        set prev (string replace -r '=.*' '' -- $cur)
        set prefix $prev=
        set cur (string replace -r '^[^=]*=' '' -- $cur)
    end
    set -l opt (__kvblend_long $prev $lines)
    if string match -q -- '*=' "$opt"
        for c in (__kvblend_value $tool (string trim -r -c = -- $opt) $cur)
            echo $prefix$c
        end
        return
    end

    if string match -q -- '-*' $cur
        for l in $lines
            string replace -r '=?( .*)?$' '' -- $l
        end
        return
    end

    # Operands: count the ones before the cursor.
    set -l n 0
    set -l skip 0
    if test (count $words) -ge $first
        for w in $words[$first..-1]
            if test $skip -eq 1
                set skip 0
                continue
            end
            # quantize --synthetic SHAPE / --hf DIR OUT TYPE: no IN
            contains -- "$w" --synthetic --hf; and set n (math $n + 1)
            if string match -q -- '-*' $w
                string match -q -- '*=' (__kvblend_long $w $lines); and set skip 1
            else
                set n (math $n + 1)
            end
        end
    end
    switch $tool
        case decode bench evict pull
            return
        case quantize
            switch $n
                case 0 1
                    __fish_complete_suffix $cur .gguf
                case 2
                    kvblend quantize --list-types 2>/dev/null
            end
        case '*'
            __fish_complete_path $cur
    end
end

complete -c kvblend -f -a '(__kvblend_complete)'
# The tools can also be run directly as kvblend-<tool>.
for t in (kvblend --list-tools 2>/dev/null)
    complete -c kvblend-$t -f -a '(__kvblend_complete)'
end
