#!/bin/sh
# kvblend-chunk end to end: every file of ../shared/data/text gives valid chunk
# records (checked with perl's core JSON::PP and Digest::SHA, not jq) that
# cover it exactly, with and without a model (tokens within --max-tokens);
# windows; --by ppl (perplexity dips under stories260K: covered, within the
# budget, a higher threshold never more chunks, no -m a one-line error);
# stdin, -o, empty input, CRLF, invalid UTF-8 (a warning, U+FFFD, no
# crash); usage errors (2) and failing inputs (1, one line, the others still
# done); URLs from a local HTTP server (python3 -m http.server on 127.0.0.1, a
# free port; skipped without python3): a document, a redirect followed, a 404,
# --max-doc-bytes exceeded, a refused connection, file:// and unsupported schemes.
. "$(dirname "$0")/tap.sh"

need_bin chunk
chunk=$KVBLEND_BIN/kvblend-chunk
SHARED=${KVBLEND_TESTDATA:-$KVBLEND_ROOT/../shared}
model=$SHARED/models/stories260Ktok512.gguf

# check.pl JSONL DOC NAME [MAX] [MODE]: JSONL holds the chunk records of the
# file DOC named NAME: valid UTF-8 JSON objects, one a line, every field, seq
# from 0, id the SHA-256 of text, tokens <= MAX when MAX is given; MODE cover
# (the default): contiguous, the texts make DOC again; lossy: contiguous (DOC
# has invalid UTF-8); window: advancing and overlapping. Prints the count.
cat >"$TAP_TMP/check.pl" <<'EOF'
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use Encode qw(encode_utf8);
use JSON::PP;
my ($jsonl, $docfile, $name, $max, $mode) = @ARGV;
$mode ||= 'cover';
my $json = JSON::PP->new;
open my $d, '<:raw', $docfile or die "$docfile: $!\n";
my $doc = do { local $/; <$d> } // '';
open my $in, '<:raw', $jsonl or die "$jsonl: $!\n";
my ($n, $start, $end, $cat) = (0, -1, 0, '');
while (my $line = <$in>) {
	$line =~ s/\n\z// or die "line $.: no newline at its end\n";
	# UTF-8 as RFC 3629 defines it (noncharacters such as U+FFFE are fine in JSON)
	$line =~ /\A(?:[\x00-\x7F]|[\xC2-\xDF][\x80-\xBF]|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}
		|\xED[\x80-\x9F][\x80-\xBF]|\xF0[\x90-\xBF][\x80-\xBF]{2}|[\xF1-\xF3][\x80-\xBF]{3}|\xF4[\x80-\x8F][\x80-\xBF]{2})*\z/x
		or die "line $.: not UTF-8\n";
	my $chars = $line;
	utf8::decode($chars) or die "line $.: not UTF-8\n";
	my $r = eval { $json->decode($chars) } // die "line $.: not JSON: $@";
	ref $r eq 'HASH' or die "line $.: not an object\n";
	for my $f (qw(id doc seq start end text)) {
		exists $r->{$f} or die "line $.: no '$f'\n";
	}
	$r->{doc} eq $name or die "line $.: doc '$r->{doc}', want '$name'\n";
	$r->{seq} == $n or die "line $.: seq $r->{seq}, want $n\n";
	my $text = encode_utf8($r->{text});
	sha256_hex($text) eq $r->{id} or die "line $.: id is not the SHA-256 of text\n";
	$r->{end} > $r->{start} && $r->{end} <= length $doc or die "line $.: bad range\n";
	if ($mode eq 'window') {
		$r->{start} > $start && $r->{start} <= $end or die "line $.: window at $r->{start} after [$start, $end)\n";
	} else {
		$r->{start} == $end or die "line $.: starts at $r->{start}, the previous ended at $end\n";
	}
	if ($mode ne 'lossy') {
		substr($doc, $r->{start}, $r->{end} - $r->{start}) eq $text or die "line $.: text is not the bytes [start, end)\n";
	}
	if (defined $max && $max ne '') {
		defined $r->{tokens} or die "line $.: no tokens\n";
		$r->{tokens} <= $max or die "line $.: $r->{tokens} tokens > $max\n";
	}
	$cat .= $text;
	($start, $end) = ($r->{start}, $r->{end});
	$n++;
}
$n == 0 || $end == length $doc or die "the records end at $end, the document at " . length($doc) . "\n";
$mode ne 'cover' || $cat eq $doc or die "the texts do not make the document\n";
print "$n\n";
EOF
check() {
	perl "$TAP_TMP/check.pl" "$@" 2>&1
}

# ---- the shared texts ----
texts=$SHARED/data/text
if [ -d "$texts" ] && ls "$texts"/*.txt >/dev/null 2>&1; then
	for f in "$texts"/*.txt; do
		b=${f##*/}
		run "$chunk" "$f"
		n=$(check "$TAP_TMP/out" "$f" "$f")
		like "$RUN_RC:$RUN_ERR:$n" "0::[1-9]*" "$b: valid records that cover it exactly ($n)"
	done
	if [ -r "$model" ]; then
		for f in "$texts"/*.txt; do
			b=${f##*/}
			run "$chunk" -m "$model" --max-tokens 128 "$f"
			n=$(check "$TAP_TMP/out" "$f" "$f" 128)
			like "$RUN_RC:$n" "0:[1-9]*" "$b, -m stories260K --max-tokens 128: tokens <= 128, covered ($n)"
		done
		f=$texts/rfc2616.txt
		run "$chunk" -m "$model" --by window --max-tokens 64 --overlap 16 "$f"
		n=$(check "$TAP_TMP/out" "$f" "$f" 64 window)
		like "$RUN_RC:$n" "0:[1-9]*" "rfc2616.txt, windows of 64 tokens, overlap 16 ($n)"
		run "$chunk" -m "$model" --by sentence --max-tokens 32 --min-tokens 8 "$f"
		n=$(check "$TAP_TMP/out" "$f" "$f" 32)
		like "$RUN_RC:$n" "0:[1-9]*" "rfc2616.txt, sentences, 32 tokens, min 8 ($n)"
		f=$texts/gutenberg_pg11_alice_in_wonderland.txt
		run "$chunk" -m "$model" --by ppl --max-tokens 128 "$f"
		n=$(check "$TAP_TMP/out" "$f" "$f" 128)
		like "$RUN_RC:$RUN_ERR:$n" "0::[1-9]*" "alice, --by ppl --max-tokens 128: tokens <= 128, covered ($n)"
	else
		for i in 1 2 3 4 5 6 7 8 9 10; do skip "$model is absent"; done
	fi
	f=$texts/gutenberg_pg11_alice_in_wonderland.txt
	if [ -r "$f" ]; then
		run "$chunk" --by heading --max-tokens 64 "$f"
		n=$(check "$TAP_TMP/out" "$f" "$f")
		like "$RUN_RC:$n" "0:[1-9]*" "alice (CRLF), --by heading: covered ($n)"
	else
		skip "$f is absent"
	fi
else
	skip "$texts is absent"
fi

# ---- small documents ----
printf 'First paragraph, one line.\n\nSecond paragraph.\nStill second.\n\n\nThird.\n' >"$TAP_TMP/p.txt"
run "$chunk" --max-tokens 0 <"$TAP_TMP/p.txt"
n=$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" -)
is "$RUN_RC:$n:$RUN_ERR" "0:3:" "stdin: doc is '-'; --max-tokens 0: one record per paragraph"
run "$chunk" --max-tokens 0 - <"$TAP_TMP/p.txt"
is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" -)" 3 "'-' is stdin"
# the first record with its id left out
first() {
	head -n 1 "$TAP_TMP/out" | sed 's/^{"id":"[0-9a-f]\{64\}",/{/'
}
is "$(first)" '{"doc":"-","seq":0,"start":0,"end":28,"text":"First paragraph, one line.\n\n"}' \
	"fields in order, compact, id first (64 hex digits), no tokens without -m"

if [ -r "$model" ]; then
	run "$chunk" -m "$model" --max-tokens 0 "$TAP_TMP/p.txt"
	like "$(head -n 1 "$TAP_TMP/out")" '*,"end":28,"tokens":[1-9]*,"text":*' "-m: tokens before text"
else
	skip "$model is absent"
fi

run "$chunk" -o "$TAP_TMP/o.jsonl" --max-tokens 0 "$TAP_TMP/p.txt"
is "$RUN_RC:$RUN_OUT:$(check "$TAP_TMP/o.jsonl" "$TAP_TMP/p.txt" "$TAP_TMP/p.txt")" "0::3" "-o FILE: the records in FILE, nothing on stdout"
# issue 10 item 4: -o is atomic; a failing run leaves the old output as it was
cp "$TAP_TMP/o.jsonl" "$TAP_TMP/o.before"
printf 'Another text.\n' >"$TAP_TMP/q.txt"
run "$chunk" -o "$TAP_TMP/o.jsonl" --max-tokens 0 "$TAP_TMP/q.txt" "$TAP_TMP/missing.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$TAP_TMP/missing.txt': No such file*" "-o and a missing input: exit 1, named"
cmp -s "$TAP_TMP/o.jsonl" "$TAP_TMP/o.before"; ok $? "... the old output is untouched (no partial file for make)"
is "$(ls -A "$TAP_TMP" | grep -c '^\.o\.jsonl\..*\.tmp$')" 0 "... and no temporary file is left"
run "$chunk" -o "$TAP_TMP/new.jsonl" "$TAP_TMP/missing.txt"
[ $RUN_RC -eq 1 ] && [ ! -e "$TAP_TMP/new.jsonl" ]; ok $? "a failing run with a new -o FILE creates nothing"

run "$KVBLEND_BIN/kvblend" chunk --max-tokens 0 "$TAP_TMP/p.txt"
if [ -x "$KVBLEND_BIN/kvblend" ]; then
	is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$TAP_TMP/p.txt")" 3 "through the dispatcher: kvblend chunk"
else
	skip "$KVBLEND_BIN/kvblend is not built"
fi

printf '' >"$TAP_TMP/empty.txt"
printf ' \n\t\n' >"$TAP_TMP/blank.txt"
run "$chunk" "$TAP_TMP/empty.txt" "$TAP_TMP/blank.txt"
is "$RUN_RC:$RUN_OUT:$RUN_ERR" "0::" "empty and blank documents: no records, exit 0"

printf 'one\r\ntwo\r\n\r\nthree\r\n' >"$TAP_TMP/crlf.txt"
run "$chunk" --max-tokens 0 "$TAP_TMP/crlf.txt"
n=$(check "$TAP_TMP/out" "$TAP_TMP/crlf.txt" "$TAP_TMP/crlf.txt")
is "$RUN_RC:$n:$(first)" '0:2:{"doc":"'"$TAP_TMP"'/crlf.txt","seq":0,"start":0,"end":12,"text":"one\r\ntwo\r\n\r\n"}' \
	"CRLF: blank lines found, bytes kept"

run "$chunk" --by heading --max-tokens 0 - <<'EOF'
intro
# One
text
```
# not a heading
```
## Two
EOF
is "$(grep -c . "$TAP_TMP/out")" 3 "--by heading: headings start chunks, not inside fences"

run "$chunk" --split '^---$\R?' --max-tokens 0 - <<'EOF'
a
---
b
---
c
EOF
is "$(grep -c . "$TAP_TMP/out"):$(tail -n 1 "$TAP_TMP/out" | sed 's/.*"text"://')" '3:"c\n"}' "--split: cut after each match"

# invalid UTF-8: a warning per document, U+FFFD in the text, offsets of the bytes
printf 'ab\377cd\n\nef\300\n' >"$TAP_TMP/bad.txt"
run "$chunk" --max-tokens 0 "$TAP_TMP/bad.txt"
n=$(check "$TAP_TMP/out" "$TAP_TMP/bad.txt" "$TAP_TMP/bad.txt" "" lossy)
is "$RUN_RC:$n" "0:2" "invalid UTF-8: exit 0, valid records that cover the bytes"
is "$RUN_ERR" "kvblend-chunk: '$TAP_TMP/bad.txt': 2 invalid UTF-8 sequences (replaced by U+FFFD)" \
	"... one warning naming the file and the count"
is "$(first)" '{"doc":"'"$TAP_TMP"'/bad.txt","seq":0,"start":0,"end":7,"text":"ab'"$(printf '\357\277\275')"'cd\n\n"}' \
	"... U+FFFD in the text, end counts the bytes read"
run "$chunk" --quiet --max-tokens 0 "$TAP_TMP/bad.txt"
is "$RUN_RC:$RUN_ERR" "0:" "--quiet: no warning"
# random bytes but NUL (a NUL makes a document binary: see below)
head -c 3000 /dev/urandom | tr -d '\000' >"$TAP_TMP/random.bin"
run "$chunk" --quiet --max-tokens 16 "$TAP_TMP/random.bin"
n=$(check "$TAP_TMP/out" "$TAP_TMP/random.bin" "$TAP_TMP/random.bin" "" lossy)
like "$RUN_RC:$n" "0:[1-9]*" "random bytes: valid records, no crash ($n)"
# issue 10 item 9: a record never holds NUL (embed would refuse it): a document
# holding one is binary, refused by name; the next input is still chunked
printf 'text\000more text\n\nand a paragraph\n' >"$TAP_TMP/nul.txt"
run "$chunk" --max-tokens 0 "$TAP_TMP/nul.txt" "$TAP_TMP/p.txt"
is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$TAP_TMP/nul.txt': binary data (a NUL byte at offset 4), not text, HTML, PDF, gzip or zstd: skipped" \
	"a NUL byte: the document is refused as binary, exit 1, one line"
is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$TAP_TMP/p.txt")" 3 "... the next file is still chunked"
grep -q 'u0000' "$TAP_TMP/out"; is $? 1 "... and no record holds \\u0000"

# ---- perplexity ----
cat >"$TAP_TMP/story.txt" <<'EOF'
Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, she saw a big red ball in the park. She ran to the ball and kicked it. The ball went very high!

Lily's mom called her home. "Lily, it is time to eat," she said. Lily ran home and ate her soup. It was yummy. After dinner, Lily went to bed. She dreamed of the big red ball.

Tom was a small dog. He liked to dig in the garden. One day, he found a bone. He was very happy. He showed the bone to his friend, the cat. The cat did not like bones. Tom and the cat played together all day.
EOF
if [ -r "$model" ]; then
	run "$chunk" -m "$model" --by ppl --max-tokens 0 "$TAP_TMP/story.txt"
	n0=$(check "$TAP_TMP/out" "$TAP_TMP/story.txt" "$TAP_TMP/story.txt")
	like "$RUN_RC:$RUN_ERR:$n0" "0::[2-9]*" "--by ppl --max-tokens 0: groups of sentences, covered ($n0)"
	run "$chunk" -m "$model" --by ppl --max-tokens 0 --ppl-threshold 3 - <"$TAP_TMP/story.txt"
	n3=$(check "$TAP_TMP/out" "$TAP_TMP/story.txt" -)
	[ -n "$n3" ] && [ "$n3" -ge 1 ] && [ "$n3" -le "$n0" ]
	ok $? "--ppl-threshold 3: no more groups than threshold 0 ($n3 <= $n0)"
	run "$chunk" -m "$model" --by ppl --max-tokens 24 --min-tokens 8 "$TAP_TMP/story.txt"
	n=$(check "$TAP_TMP/out" "$TAP_TMP/story.txt" "$TAP_TMP/story.txt" 24)
	like "$RUN_RC:$n" "0:[1-9]*" "--by ppl --max-tokens 24 --min-tokens 8: tokens <= 24, covered ($n)"
	like "$(first)" '{"doc":"'"$TAP_TMP"'/story.txt","seq":0,"start":0,"end":[1-9]*,"tokens":[1-9]*,"text":"Once upon*"}' \
		"--by ppl: the same record fields in the same order"
	run "$chunk" -m "$model" --by ppl --max-tokens 0 -v "$TAP_TMP/story.txt"
	dips=$(printf '%s\n' "$RUN_ERR" | sed -n 's/.*: \([0-9]*\) dips (the cuts at threshold 0).*/\1/p')
	like "$RUN_ERR" "*--by ppl: 1 input, * bytes: $n0 chunks, * tokens, * s*sentences scored, perplexity p10 *, p90 *cut at --ppl-threshold 0 *" \
		"-v: counts, the perplexities' quantiles, the cuts"
	[ -n "$dips" ] && [ "$dips" -eq $((n0 - 1)) ]; ok $? "-v: the dips are the cuts at threshold 0 ($dips, $n0 groups)"
	run "$chunk" -m "$model" --by ppl --ppl-window 24 --ppl-context 6 --max-tokens 32 "$TAP_TMP/story.txt"
	n=$(check "$TAP_TMP/out" "$TAP_TMP/story.txt" "$TAP_TMP/story.txt" 32)
	like "$RUN_RC:$n" "0:[1-9]*" "--ppl-window 24 --ppl-context 6: many short passes, covered ($n)"
	run "$chunk" -m "$model" --by ppl --ppl-window 24 --ppl-context 30 "$TAP_TMP/story.txt"
	like "$RUN_RC:$RUN_ERR" "2:kvblend-chunk: --ppl-window, --ppl-context: a context of 30 tokens leaves nothing to score in a window of 24*" \
		"a context that fills the window: usage, exit 2"
else
	for i in 1 2 3 4 5 6 7 8; do skip "$model is absent"; done
fi
run "$chunk" --ppl-window 64 "$TAP_TMP/story.txt"
like "$RUN_RC:$RUN_ERR" "2:kvblend-chunk: --ppl-window and --ppl-context are for --by ppl*" "--ppl-window without --by ppl: usage, exit 2"
run "$chunk" -v --max-tokens 0 "$TAP_TMP/story.txt"
like "$RUN_RC:$RUN_ERR" "0:kvblend-chunk: --by paragraph: 1 input, 584 bytes: 3 chunks, * tokens (about bytes / 4), * s" \
	"-v without a model: one line, tokens approximate"
run "$chunk" --by ppl "$TAP_TMP/story.txt"
like "$RUN_RC:$RUN_OUT:$RUN_ERR" "2::kvblend-chunk: --by ppl needs a model to score the sentences: give -m MODEL*Try*" \
	"--by ppl without -m: a usage error, exit 2 (as decode and prefill without -m)"

# ---- failures ----
run "$chunk" "$TAP_TMP/no-such.txt" "$TAP_TMP/p.txt"
is "$RUN_RC" 1 "a missing file: exit 1"
is "$RUN_ERR" "kvblend-chunk: '$TAP_TMP/no-such.txt': No such file or directory" "... one line naming it"
is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$TAP_TMP/p.txt")" 1 "... and the next file is still chunked"
mkdir "$TAP_TMP/empty.d"
run "$chunk" "$TAP_TMP/empty.d"
is "$RUN_RC:$RUN_OUT:$RUN_ERR" "0::" "an empty directory: no records, exit 0 (directories: chunk-tree.t)"
run "$chunk" -m "$TAP_TMP/p.txt" "$TAP_TMP/p.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: *p.txt*" "a model that is not GGUF: exit 1"

# ---- usage ----
run "$chunk" --help
like "$RUN_RC:$RUN_OUT:$RUN_ERR" "0:usage: kvblend chunk *:" "--help: usage on stdout, exit 0"
run "$chunk" --complete-options
is "$RUN_RC:$(echo $RUN_OUT)" "0:--model= -m --by= --split= --max-tokens= --min-tokens= --overlap= --ppl-threshold= --ppl-window= --ppl-context= --max-doc-bytes= --timeout= --include= --exclude= --output= -o --quiet --verbose -v --help -h --version" \
	"--complete-options lists the long options (a trailing = on those with a value, then the short one)"
for args in "--by bogus" "--by regex" "--split (" "--overlap 4" "--by window --overlap 8 --max-tokens 8" \
	"--by window --max-tokens 0" "--max-tokens -1" "--max-tokens x" "--min-tokens 300" "--by window --min-tokens 1" \
	"--split a --by sentence" "--ppl-threshold 1" "--by sentence --ppl-threshold 1" "--by ppl --ppl-threshold -1" \
	"--by ppl --ppl-threshold x" "--by ppl --ppl-threshold nan" "--max-doc-bytes 0" "--max-doc-bytes 1X" "--timeout -1" "--bogus" "-x"; do
	# shellcheck disable=SC2086
	run "$chunk" $args "$TAP_TMP/p.txt"
	like "$RUN_RC:$RUN_OUT:$(wc -l <"$TAP_TMP/err" | tr -d ' '):$RUN_ERR" "2::2:kvblend-chunk: *Try*" "usage error: $args"
done
run "$chunk" -m
like "$RUN_RC:$RUN_ERR" "2:kvblend-chunk: option '-m' needs a value*" "-m without a value: exit 2"
run "$chunk" --split 'a(b' "$TAP_TMP/p.txt"
like "$RUN_ERR" "kvblend-chunk: --split*a(b*offset 3*" "a bad regex: its offset in the message"

# ---- URLs ----
run "$chunk" http://127.0.0.1:1/x.txt "$TAP_TMP/p.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: 'http://127.0.0.1:1/x.txt': *" "a refused connection: exit 1, the URL named"
is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$TAP_TMP/p.txt")" 1 "... and the next input is still chunked"
run "$chunk" "ftp://127.0.0.1/x.txt"
like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: 'ftp://127.0.0.1/x.txt': *" "an unsupported scheme: exit 1"
run "$chunk" --max-tokens 0 "file://$TAP_TMP/p.txt"
is "$RUN_RC:$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "file://$TAP_TMP/p.txt")" "0:3" "a file:// URL, named as given"

if command -v python3 >/dev/null 2>&1; then
	mkdir -p "$TAP_TMP/www/moved"
	cp "$TAP_TMP/p.txt" "$TAP_TMP/www/doc.txt"
	# served as text/html, so read as HTML: the paragraphs of p.txt, lines joined
	printf '<p>First paragraph, one line.</p>\n<p>Second paragraph.\nStill second.</p><p>Third.' \
		>"$TAP_TMP/www/moved/index.html"
	printf 'First paragraph, one line.\n\nSecond paragraph. Still second.\n\nThird.\n' >"$TAP_TMP/moved.txt"
	head -c 10000 /dev/zero | tr '\0' 'x' >"$TAP_TMP/www/big.txt"
	# port 0: the kernel picks a free one, and the server says which
	python3 -u -m http.server --bind 127.0.0.1 --directory "$TAP_TMP/www" 0 >"$TAP_TMP/http.log" 2>&1 &
	srv=$!
	tap_bg $srv
	port=
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do
		port=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$TAP_TMP/http.log" | head -n 1)
		[ -n "$port" ] && break
		sleep 0.2
	done
fi
if [ -n "$port" ]; then
	url=http://127.0.0.1:$port
	run "$chunk" --timeout 20 --max-tokens 0 "$url/doc.txt"
	is "$RUN_RC:$RUN_ERR:$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$url/doc.txt")" "0::3" "http: a document by URL, doc is the URL"
	run "$chunk" --timeout 20 --max-tokens 0 "$url/moved"
	is "$RUN_RC:$RUN_ERR:$(check "$TAP_TMP/out" "$TAP_TMP/moved.txt" "$url/moved")" "0::3" \
		"http: a redirect (301 to moved/) is followed, doc is the URL as given, the HTML made text"
	run "$chunk" --timeout 20 "$url/nope.txt" "$url/doc.txt"
	is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$url/nope.txt': HTTP 404" "http: a 404 exits 1 with one line naming the URL"
	is "$(check "$TAP_TMP/out" "$TAP_TMP/p.txt" "$url/doc.txt")" 1 "... and the next URL is still chunked"
	run "$chunk" --timeout 20 --max-doc-bytes 1k "$url/big.txt"
	is "$RUN_RC:$RUN_OUT:$RUN_ERR" "1::kvblend-chunk: '$url/big.txt': larger than the limit of 1024 bytes" \
		"http: --max-doc-bytes exceeded: exit 1, a clear error"
	run "$chunk" --timeout 20 --max-doc-bytes 10000 "$url/big.txt"
	like "$RUN_RC:$RUN_ERR:$RUN_OUT" "0::{*" "http: exactly --max-doc-bytes is accepted"
	kill $srv 2>/dev/null
else
	for i in 1 2 3 4 5 6; do skip "no local HTTP server (python3 -m http.server)"; done
fi

done_testing
