#!/bin/sh
# Provenance without the user's text (issue 10 item 13): caches written by
# prefill (-p, -o and the store) and blend (--query, --prefix, the store) hold
# the tool, its version and the option names, never the values or operands.
. "$(dirname "$0")/tap.sh"
need_shared models/stories260Ktok512.gguf
need_bin prefill blend info
model=$SHARED/models/stories260Ktok512.gguf
P=$KVBLEND_BIN/kvblend-prefill B=$KVBLEND_BIN/kvblend-blend I=$KVBLEND_BIN/kvblend-info

# no SECRET byte in any file under $1
clean() { ! grep -rl SECRET "$1" >/dev/null 2>&1; }

"$P" -m "$model" -p "Once upon a SECRETWORD time" -o "$TAP_TMP/p.kvc"
ok $? "prefill -p writes a cache"
clean "$TAP_TMP/p.kvc"; ok $? "  it holds no byte of the prompt's text"
run "$I" "$TAP_TMP/p.kvc"
like "$RUN_OUT" "*made by     kvblend-prefill 0.1.0: -m -p -o
*" "  info shows the option names: $(printf '%s\n' "$RUN_OUT" | grep 'made by')"

printf '{"id":"a","doc":"SECRETDOC","seq":0,"text":"Joe loves writing stories"}\n' >"$TAP_TMP/c.jsonl"
"$P" --quiet -m "$model" --store="$TAP_TMP/st" <"$TAP_TMP/c.jsonl" >/dev/null
ok $? "prefill stores a chunk's cache"
"$B" -m "$model" --store "$TAP_TMP/st" --query "SECRETQUERY who" --prefix "SECRETPREFIX be brief" \
	-o "$TAP_TMP/b.kvc" <"$TAP_TMP/c.jsonl"
ok $? "blend --query --prefix writes a cache"
clean "$TAP_TMP/b.kvc"; ok $? "  the blended cache holds no byte of the query or the prefix"
clean "$TAP_TMP/st/objects"; ok $? "  nor does any object in the store"
is "$("$I" -j "$TAP_TMP/b.kvc" | perl -MJSON::PP -0777 -ne 'print join(" ", @{decode_json($_)->{provenance}{argv}})')" \
	"-m --store --query --prefix -o --template=plain" "  info --json: provenance.argv is the option names, and the template used"
done_testing
