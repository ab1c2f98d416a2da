#!/bin/sh
# The Makefile of kvblend(7) EXAMPLES, taken from the man page as it is, run on
# a corpus made here (Markdown, HTML, gzip, a PDF when pdftotext is there) with
# the reader model (tests/models) and a synthetic tiny BERT: the first run
# computes every chunk's cache and embedding, a second computes nothing,
# touching a document computes nothing, editing one sentence of one document
# chunks only that document and computes only its changed chunks, make -j2
# gives the same store as make -j1, and make query answers.
. "$(dirname "$0")/tap.sh"
# run from make check: the makes here are not the outer one's children
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
need_bin chunk embed prefill blend decode quantize
command -v make >/dev/null 2>&1 || skip_all "make is not installed"
B=$KVBLEND_BIN t=$TAP_TMP
model=$KVBLEND_ROOT/tests/models/reader.gguf
[ -r "$model" ] || skip_all "$model is absent"
kv=$B/kvblend
[ -x "$kv" ] || skip_all "$kv is not built"
"$B/kvblend-quantize" --synthetic tiny-bert "$t/embed.gguf" f32 2>/dev/null || skip_all "no synthetic BERT"

# the Makefile, between the man page's markers, its roff escapes undone
mkdir "$t/a"
sed -n '/^\.\\" corpus\.mk begin/,/^\.\\" corpus\.mk end/p' "$KVBLEND_ROOT/man/kvblend.7" |
	sed '1,2d;$d' | sed '$d' | sed 's/^\\&//; s/\\e/\\/g' >"$t/a/Makefile"
grep -q '^caches/%.jsonl: chunks/%.jsonl$' "$t/a/Makefile"; ok $? "the Makefile is taken from kvblend(7)"
grep -q "$(printf '^\t\\$(KVBLEND) chunk ')" "$t/a/Makefile"; ok $? "... its recipe lines start with a tab"

cd "$t/a" || exit 1
mkdir -p docs/sub
cat >docs/notes.md <<'DOC'
# Notes

The lighthouse keeper lives on the island. He lights the lamp every night.

Ships pass the rocks safely. The keeper writes in his log.

## Weather

Storms come in the autumn. The wind is strong and cold.
DOC
printf '<html><head><title>Harbour</title><script>var boats = 0;</script></head><body><h1>Harbour</h1><p>The harbour has ten boats. Fishermen leave at dawn.</p><p>The market opens at noon.</p></body></html>\n' >docs/sub/harbour.html
printf 'The baker makes bread in the morning.\n\nThe bread is sold in the market.\n' | gzip -c >docs/baker.txt.gz
if command -v pdftotext >/dev/null 2>&1; then
	perl "$KVBLEND_ROOT/tests/cli/mkpdf.pl" "The school is next to the church." "Children learn to read and write." >docs/sub/school.pdf
fi
n_docs=$(find docs -type f | wc -l)
cp -R docs "$t/docs.orig"

mk() {
	make --no-print-directory KVBLEND="$kv" MODEL="$model" EMBED="$t/embed.gguf" MAXTOK=24 VERBOSE=-v "$@" >"$t/make.out" 2>&1
}
# sum WORD: the sum of the numbers before WORD in prefill's -v lines
computed() {
	sed -n 's/^kvblend-prefill: .* \([0-9][0-9]*\) computed .*/\1/p' "$t/make.out" | awk '{ s += $1 } END { print s + 0 }'
}
added() {
	sed -n 's/^kvblend-embed: .* \([0-9][0-9]*\) added, .*/\1/p' "$t/make.out" | awk '{ s += $1 } END { print s + 0 }'
}
ids() { # the distinct chunk ids of the chunk files given
	cat "$@" | sed 's/^{"id":"\([0-9a-f]*\)".*/\1/' | sort -u
}

# ---- the first run: everything ----
mk
is "$?" 0 "first make: exit 0"
is "$(grep -c "^$kv chunk " "$t/make.out")" "$n_docs" "... each of the $n_docs documents chunked"
n_ids=$(ids chunks/*.jsonl chunks/sub/*.jsonl | wc -l)
[ "$n_ids" -gt "$n_docs" ]; ok $? "... into $n_ids chunks"
is "$(computed)" "$n_ids" "... every chunk's cache computed"
is "$(added)" "$n_ids" "... every chunk embedded and indexed"
is "$(find store/objects -type f -name '*.kvc' | wc -l)" "$n_ids" "... one cache per chunk in the store"
grep -q '"doc":"docs/sub/harbour.html".*"title":"Harbour"' chunks/sub/harbour.html.jsonl; ok $? "... the HTML page's records carry its title"
grep -q 'var boats' chunks/sub/harbour.html.jsonl; is $? 1 "... and not its script"

# ---- the second run: nothing ----
find store chunks caches embed.stamp -type f -exec ls -l --time-style=+%s.%N {} + | sort >"$t/before"
mk
is "$?:$(cat "$t/make.out")" "0:make: Nothing to be done for 'all'." "second make: nothing to be done"
make -q KVBLEND="$kv" MODEL="$model" EMBED="$t/embed.gguf" MAXTOK=24 >/dev/null 2>&1; ok $? "... make -q says all is up to date"
find store chunks caches embed.stamp -type f -exec ls -l --time-style=+%s.%N {} + | sort >"$t/after"
cmp -s "$t/before" "$t/after"; ok $? "... no file written"

# ---- touching a document: chunked again, nothing computed ----
sleep 1 # a newer mtime than the stamps on any file system
touch docs/notes.md
mk
is "$?:$(grep -c "^$kv chunk " "$t/make.out"):$(computed):$(added)" "0:1:0:0" "touch one document: it is chunked again, no cache computed, nothing embedded"

# ---- one sentence edited: only that document's changed chunks ----
ids chunks/notes.md.jsonl >"$t/old.ids"
sleep 1
sed 's/He lights the lamp every night\./He lights the big lamp at dusk./' docs/notes.md >"$t/n" && cat "$t/n" >docs/notes.md
mk
is "$?" 0 "one sentence edited: exit 0"
is "$(grep "^$kv chunk " "$t/make.out" | sed 's/.* //')" "docs/notes.md" "... only that document is chunked"
ids chunks/notes.md.jsonl >"$t/new.ids"
n_new=$(comm -13 "$t/old.ids" "$t/new.ids" | wc -l)
[ "$n_new" -ge 1 ] && [ "$n_new" -lt "$(wc -l <"$t/new.ids")" ]; ok $? "... $n_new of its $(wc -l <"$t/new.ids") chunks changed"
is "$(grep -c "^$kv prefill " "$t/make.out"):$(computed)" "1:$n_new" "... one prefill, which computes only the changed chunks"
is "$(added)" "$n_new" "... and only they are embedded"
like "$(grep '^kvblend-embed: .* added' "$t/make.out")" "*; $n_new old chunk* of re-indexed documents removed*" \
	"... the document's old chunks leave the index"
"$kv" embed --store store --query "big lamp at dusk" -k 1 >"$t/hit"
grep -q '"doc":"docs/notes.md".*big lamp at dusk' "$t/hit"; ok $? "... and the index finds the new sentence"

# ---- make -j2 gives the same store as make -j1 ----
state() { # DIR: what the store and the stamps hold, file times aside
	(cd "$1" && find store/objects -type f | sort && cat caches/*.jsonl caches/sub/*.jsonl &&
		"$kv" embed --store store --list-docs &&
		"$kv" embed --store store -m "$t/embed.gguf" --query "Who keeps the lighthouse?" -k 5)
}
for j in 1 2; do
	mkdir "$t/j$j" && cp -R "$t/docs.orig" "$t/j$j/docs" && cp Makefile "$t/j$j/"
	(cd "$t/j$j" && mk -j$j)
	is "$?" 0 "a fresh tree with make -j$j: exit 0"
	state "$t/j$j" >"$t/state$j" 2>&1
done
[ -s "$t/state1" ] && cmp -s "$t/state1" "$t/state2"
ok $? "make -j2 and make -j1: the same caches, records, documents and query results"
is "$(find "$t/j2/store" -name '*.tmp' | wc -l)" 0 "... and no temporary file is left"

# ---- make query ----
run make --no-print-directory KVBLEND="$kv" MODEL="$model" EMBED="$t/embed.gguf" MAXTOK=24 query Q='Who keeps the lighthouse?'
[ "$RUN_RC" -eq 0 ] && [ -n "$(printf '%s' "$RUN_OUT" | sed -n '$p')" ]; ok $? "make query Q=...: an answer ($(printf '%s' "$RUN_OUT" | sed -n '$p' | cut -c1-40)...)"
run make --no-print-directory KVBLEND="$kv" MODEL="$model" EMBED="$t/embed.gguf" query
like "$RUN_RC:$RUN_ERR" "2:make query: give the question as Q='...'*" "make query without Q: says what to give"

done_testing
