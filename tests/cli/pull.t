#!/bin/sh
# Models by URL (kvblend pull, and -m URL in any tool) from an HTTP server on
# loopback (tests/remote/faultserver.py): downloaded once into
# $XDG_CACHE_HOME/kvblend/models, resumed with Range after a cut-off transfer,
# a wrong --sha256 refused and nothing kept, an error page never taken for a
# model, and -m URL gives what -m FILE gives.
. "$(dirname "$0")/tap.sh"
need_bin pull decode
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is absent"
command -v curl >/dev/null 2>&1 || skip_all "curl is absent"
B=$KVBLEND_BIN t=$TAP_TMP
faultserver "$t/port" 120 || skip_all "the fault server did not start"
base=http://127.0.0.1:$(cat "$t/port")
fault() { curl -sf -X POST --data "$1" "$base/_fault" >/dev/null; }
count() { curl -sf "$base/_stats" | awk -v m="$1" '$1 == m {n = $2} END {print n + 0}'; }
export XDG_CACHE_HOME=$t/cache KVBLEND_REMOTE_TIMEOUT=1 KVBLEND_REMOTE_RETRIES=0 KVBLEND_REMOTE_BACKOFF=0.01
curl -sf -X PUT --data-binary "@$model" "$base/m/stories.gguf" >/dev/null || skip_all "cannot upload to the server"
sha=$(sha256sum "$model" | cut -c1-64)
url=$base/m/stories.gguf

fault "drop 1"
"$B/kvblend-pull" "$url" >"$t/out" 2>"$t/err"; [ $? -eq 1 ]
ok $? "a transfer cut off midway fails: $(cat "$t/err")"
part=$(ls "$t/cache/kvblend/models/"*.part 2>/dev/null)
[ -n "$part" ] && [ -s "$part" ] && [ "$(wc -c <"$part")" -lt "$(wc -c <"$model")" ]
ok $? "what arrived is kept as NAME.part ($(wc -c <"$part" 2>/dev/null) of $(wc -c <"$model") bytes)"
[ -z "$(ls "$t/cache/kvblend/models" | grep -v '\.part$')" ]; ok $? "and no model file is there yet"
got0=$(count GET)
path=$("$B/kvblend-pull" --sha256 "$sha" "$url" 2>"$t/err"); ok $? "pull again resumes it"
cmp -s "$path" "$model"; ok $? "the model arrives whole: $path"
case $path in "$t/cache/kvblend/models/"*-stories.gguf) ok 0 "in \$XDG_CACHE_HOME/kvblend/models, named HASH-stories.gguf" ;;
*) ok 1 "in \$XDG_CACHE_HOME/kvblend/models ($path)" ;; esac
[ ! -e "$part" ]; ok $? "the .part is gone"
is "$(count GET)" $((got0 + 1)) "one more GET (the rest of the file, with Range)"
path2=$("$B/kvblend-pull" "$url"); [ "$path2" = "$path" ] && [ "$(count GET)" -eq $((got0 + 1)) ]
ok $? "a second pull downloads nothing"

# -m URL in a tool: the cached copy, the same tokens as the local file
want=$("$B/kvblend-decode" -m "$model" -p "Joe loves" -n 8 --ids)
got=$("$B/kvblend-decode" -m "$url" -p "Joe loves" -n 8 --ids 2>"$t/err")
[ -n "$want" ] && [ "$got" = "$want" ]; ok $? "decode -m URL gives what decode -m FILE gives"
is "$(count GET)" $((got0 + 1)) "from the downloaded copy (no GET)"

# a wrong --sha256: refused, nothing kept
curl -sf -X PUT --data-binary "@$model" "$base/m/other.gguf" >/dev/null
bad=0000000000000000000000000000000000000000000000000000000000000000
"$B/kvblend-pull" --sha256 $bad "$base/m/other.gguf" >"$t/out" 2>"$t/err"; [ $? -eq 1 ] && grep -q "SHA-256" "$t/err"
ok $? "a wrong --sha256 is refused: $(cat "$t/err")"
[ -z "$(ls "$t/cache/kvblend/models" | grep other)" ]; ok $? "and neither the file nor a .part is kept"
"$B/kvblend-pull" --sha256 $bad "$url" >/dev/null 2>"$t/err"; [ $? -eq 1 ] && [ -f "$path" ]
ok $? "a model already there with another SHA-256 is refused (and left alone)"
"$B/kvblend-pull" --sha256 xyz "$url" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "a malformed --sha256 is a usage error"

# what is not a model, or not there
printf '<html>not found</html>' >"$t/page.html"
curl -sf -X PUT --data-binary "@$t/page.html" "$base/m/page.gguf" >/dev/null
"$B/kvblend-pull" "$base/m/page.gguf" >/dev/null 2>"$t/err"; [ $? -eq 1 ] && grep -q "not a GGUF" "$t/err"
ok $? "an HTML page is not taken for a model: $(cat "$t/err")"
[ -z "$(ls "$t/cache/kvblend/models" | grep page)" ]; ok $? "and is not kept"
"$B/kvblend-pull" "$base/m/none.gguf" >/dev/null 2>"$t/err"; [ $? -eq 1 ]; ok $? "a missing file: $(cat "$t/err")"
"$B/kvblend-decode" -m "$base/m/none.gguf" -p x -n 1 >/dev/null 2>"$t/err"; [ $? -eq 1 ]
ok $? "-m with a missing URL is an error: $(cat "$t/err")"
done_testing
