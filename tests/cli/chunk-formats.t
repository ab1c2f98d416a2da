#!/bin/sh
# kvblend-chunk on documents as people have them (issue 19), every file made
# here: a directory tree (sorted, doc = the path below the directory, hidden
# names passed over, --include/--exclude, a symlink loop reported once and not
# followed, a link to nothing an error); gzip (two members) and zstd text, an
# HTML page in gzip; HTML with scripts and styles (dropped), headings (cut at
# by --by heading), a title (in every record), latin-1 by <meta> and by
# libxml2's fallback, UTF-16 with a byte order mark; URLs whose Content-Type
# declares latin-1 or UTF-16 (a python3 server on 127.0.0.1, a free port);
# PDFs written by hand (tests/cli/mkpdf.pl) and by groff when it has its pdf
# device, page numbers kept; binary files skipped by name, exit 1, -o left
# as it was; corrupt and truncated gzip, zstd and PDF; an unreadable file.
. "$(dirname "$0")/tap.sh"

need_bin chunk
chunk=$KVBLEND_BIN/kvblend-chunk
t=$TAP_TMP
# jq-like field access without jq: perl's JSON::PP, one output line per record
# fields.pl FIELD... < records: the fields of each record, tab-separated
cat >"$t/fields.pl" <<'EOF'
use strict;
use warnings;
use JSON::PP;
my $json = JSON::PP->new->utf8;
binmode STDOUT, ':utf8';
while (my $line = <STDIN>) {
	my $r = $json->decode($line);
	print join("\t", map { my $v = $r->{$_} // '-'; $v =~ s/\n/\\n/g; $v } @ARGV), "\n";
}
EOF
fields() {
	perl "$t/fields.pl" "$@" <"$t/out"
}

# ---- a tree ----
d=$t/tree
mkdir -p "$d/b/deep" "$d/a" "$d/.git" "$d/skip"
printf 'Zeta.\n' >"$d/z.txt"
printf 'In b.\n' >"$d/b/note.md"
printf 'Deep down.\n' >"$d/b/deep/x.txt"
printf 'First.\n' >"$d/a/1.txt"
printf 'Second.\n' >"$d/a/2.txt"
printf 'objects\n' >"$d/.git/config"
printf 'Not wanted.\n' >"$d/skip/s.txt"
ln -s .. "$d/b/deep/up"   # a loop: back to b
run "$chunk" --max-tokens 0 "$d"
is "$RUN_RC" 0 "a directory: exit 0"
is "$(fields doc | paste -sd ' ')" "a/1.txt a/2.txt b/deep/x.txt b/note.md skip/s.txt z.txt" \
	"every file below it, in byte order, named by its path below it; .git passed over"
is "$RUN_ERR" "kvblend-chunk: warning: '$d/b/deep/up': a symlink loop (back to '$d/b'), not followed" \
	"the symlink loop: one warning naming it and where it leads"
run "$chunk" --max-tokens 0 "$d/"
is "$(fields doc | paste -sd ' ')" "a/1.txt a/2.txt b/deep/x.txt b/note.md skip/s.txt z.txt" \
	"DIR/ names the same documents"
run "$chunk" --quiet --max-tokens 0 --exclude skip --exclude '*.md' "$d"
is "$RUN_RC:$RUN_ERR:$(fields doc | paste -sd ' ')" "0::a/1.txt a/2.txt b/deep/x.txt z.txt" \
	"--exclude a folder's name and a glob; --quiet: no warning"
run "$chunk" --quiet --max-tokens 0 --include 'a/*' --include '*.md' "$d"
is "$(fields doc | paste -sd ' ')" "a/1.txt a/2.txt b/note.md" "--include: a path glob (with /) and a name glob"
run "$chunk" --quiet --max-tokens 0 --include '*.txt' --exclude 'b/*/*' "$d" "$d/b/note.md"
is "$(fields doc | paste -sd ' ')" "a/1.txt a/2.txt skip/s.txt z.txt $d/b/note.md" \
	"an --exclude path glob; a file named as an operand is read whatever the globs, named as given"
ln -s nowhere "$d/a/3.txt"
run "$chunk" --quiet --max-tokens 0 "$d/a"
is "$RUN_RC:$RUN_ERR:$(fields doc | paste -sd ' ')" \
	"1:kvblend-chunk: '$d/a/3.txt': No such file or directory:1.txt 2.txt" \
	"a link to nothing: one line, exit 1, the other files still chunked"
rm "$d/a/3.txt"

# ---- compressed text ----
printf 'One paragraph.\n\nAnother paragraph.\n' >"$t/plain.txt"
printf 'A third paragraph.\n' >"$t/more.txt"
gzip -c "$t/plain.txt" >"$t/two.gz"
gzip -c "$t/more.txt" >>"$t/two.gz"   # a second member
cat "$t/plain.txt" "$t/more.txt" >"$t/both.txt"
run "$chunk" --max-tokens 0 "$t/both.txt"
want=$(fields text | paste -sd '|')
run "$chunk" --max-tokens 0 "$t/two.gz"
is "$RUN_RC:$RUN_ERR:$(fields text | paste -sd '|')" "0::$want" "gzip, two members: the text of both"
is "$(fields doc | head -n 1)" "$t/two.gz" "... doc is the file's name"
cp "$t/two.gz" "$t/noext"
run "$chunk" --max-tokens 0 - <"$t/noext"
is "$RUN_RC:$(fields text | paste -sd '|')" "0:$want" "gzip on stdin: known by its bytes, not its name"
if command -v zstd >/dev/null 2>&1; then
	zstd -q -c "$t/both.txt" >"$t/both.zst"
	run "$chunk" --max-tokens 0 "$t/both.zst"
	is "$RUN_RC:$RUN_ERR:$(fields text | paste -sd '|')" "0::$want" "zstd: the text"
	head -c 20 "$t/both.zst" >"$t/cut.zst"
	run "$chunk" "$t/cut.zst"
	is "$RUN_RC:$RUN_OUT:$RUN_ERR" "1::kvblend-chunk: '$t/cut.zst': zstd: truncated (the data ends inside a frame)" \
		"a truncated zstd file: one line, exit 1, no records"
else
	skip "zstd is not installed (bash .ci/setup)"
	skip "zstd is not installed"
fi
head -c 25 "$t/two.gz" >"$t/cut.gz"
run "$chunk" "$t/cut.gz" "$t/plain.txt"
is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/cut.gz': gzip: truncated (the data ends inside the stream)" \
	"a truncated gzip file: one line naming it, exit 1"
is "$(fields doc | sort -u)" "$t/plain.txt" "... and the next file is still chunked"
perl -e 'binmode STDOUT; print "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "\xff" x 40' >"$t/bad.gz"
run "$chunk" "$t/bad.gz"
like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/bad.gz': gzip: corrupt data (*)" "a corrupt gzip file: one line, exit 1"
head -c 300000 /dev/zero | tr '\0' a | gzip -c >"$t/bomb.gz"
run "$chunk" --max-doc-bytes 100k "$t/bomb.gz"
is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/bomb.gz': gzip: decompresses to more than 102400 bytes (--max-doc-bytes)" \
	"--max-doc-bytes bounds what a gzip file decompresses to"

# ---- HTML ----
cat >"$t/page.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>  The Lighthouse
  Keeper </title>
<style>body { color: red } p::before { content: "STYLE" }</style>
<script>document.write("<p>SCRIPT text</p>"); var a = 1 < 2;</script>
</head>
<body>
<script src="x.js"></script>
<h1>The keeper</h1>
<p>The keeper climbed
   the <b>stairs</b> every night.</p>
<div>He lit the lamp.<br>Then he slept.</div>
<h2>The storm</h2>
<ul><li>Wind</li><li>Rain</li></ul>
<p>Ships stayed in the harbour &amp; waited. Caf&eacute;.</p>
<noscript>Enable JavaScript</noscript>
</body></html>
EOF
run "$chunk" --max-tokens 0 "$t/page.html"
body=$(fields text | paste -sd '|')
is "$RUN_RC:$RUN_ERR" "0:" "an HTML page: exit 0"
is "$body" '# The keeper\n\n|The keeper climbed the stairs every night.\n\n|He lit the lamp.\nThen he slept.\n\n|## The storm\n\n|Wind\nRain\n\n|Ships stayed in the harbour & waited. Café.\n' \
	"its text: block elements are paragraphs, white space collapsed, entities decoded, headings as Markdown"
case $body in *SCRIPT* | *STYLE* | *JavaScript* | *color* | *document.write*) r=1 ;; *) r=0 ;; esac
ok $r "... no script, style or noscript text"
is "$(fields title | sort -u)" "The Lighthouse Keeper" "... the <title> in every record, white space collapsed"
run "$chunk" --by heading --max-tokens 0 "$t/page.html"
is "$(fields seq text | cut -c1-20 | paste -sd '|')" "$(printf '0\t# The keeper\\n\\nTh|1\t## The storm\\n\\nWi')" \
	"--by heading: one chunk per heading of the page"
# a text node far longer than the converter's first buffer, in <pre> and out
perl -e 'print "<pre>", "x" x 20000, "</pre><p>", "y" x 9000, "</p>"' >"$t/long.html"
run "$chunk" --max-tokens 0 "$t/long.html"
is "$RUN_RC:$(fields text | awk '{ print length($0) }' | paste -sd ' ')" "0:20004 9002" \
	"long text nodes: whole (the text's \\n\\n counted as 4 bytes here)"
# Markdown that starts with HTML, as many READMEs do, stays Markdown; the same
# bytes under another name are HTML
printf '<p align="center"><img src="logo.png"></p>\n\n# Title\n\nText.\n' >"$t/README.md"
run "$chunk" --by heading --max-tokens 0 "$t/README.md"
is "$RUN_RC:$(fields text | paste -sd '|')" '0:<p align="center"><img src="logo.png"></p>\n\n|# Title\n\nText.\n' \
	"a .md file starting with <p>: Markdown, as it is"
cp "$t/README.md" "$t/readme"
run "$chunk" --max-tokens 0 "$t/readme"
is "$RUN_RC:$(fields text | paste -sd '|')" '0:# Title Text.\n' "... the same bytes named 'readme': HTML"
# the same page as XHTML, gzipped, with no telling name
sed 's/<!DOCTYPE html>/<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-\/\/W3C\/\/DTD XHTML 1.0 Strict\/\/EN" "http:\/\/www.w3.org\/TR\/xhtml1\/DTD\/xhtml1-strict.dtd">/; s/<html lang="en">/<html xmlns="http:\/\/www.w3.org\/1999\/xhtml">/; s/<br>/<br \/>/; s/<meta charset="utf-8">/<meta charset="utf-8" \/>/' \
	"$t/page.html" | gzip -c >"$t/page.bin"
run "$chunk" --max-tokens 0 "$t/page.bin"
is "$RUN_RC:$(fields text | paste -sd '|')" "0:$body" "XHTML in gzip, named .bin: told by its bytes, the same text"
# latin-1, declared in the page, and undeclared (libxml2 falls back to latin-1)
printf '<html><head><meta charset="iso-8859-1"><title>Caf\351</title></head><body><p>Cr\350me br\373l\351e.</p></body></html>\n' >"$t/latin1.html"
run "$chunk" "$t/latin1.html"
is "$RUN_RC:$RUN_ERR:$(fields title text)" "0::Café	Crème brûlée.\n" "latin-1 HTML (<meta charset>): the right characters"
printf '<p>Cr\350me br\373l\351e.</p>\n' >"$t/latin1-bare.htm"
run "$chunk" "$t/latin1-bare.htm"
is "$RUN_RC:$RUN_ERR:$(fields text)" "0::Crème brûlée.\n" "latin-1 HTML with no charset: not U+FFFD"
printf '<html><body><h3>Na\303\257ve</h3><p>\342\202\254 5</p></body></html>' | iconv -f UTF-8 -t UTF-16LE |
	{ printf '\377\376'; cat; } >"$t/utf16.html"
run "$chunk" --max-tokens 0 "$t/utf16.html"
is "$RUN_RC:$RUN_ERR:$(fields text | paste -sd '|')" '0::### Naïve\n\n|€ 5\n' "UTF-16 HTML with a byte order mark"

# ---- URLs with a declared charset ----
if command -v python3 >/dev/null 2>&1; then
	mkdir -p "$t/www"
	printf '<p>Cr\350me br\373l\351e.</p>' >"$t/www/latin1"
	printf '<p>Cr\303\250me br\303\273l\303\251e.</p>' | iconv -f UTF-8 -t UTF-16BE | { printf '\376\377'; cat; } >"$t/www/utf16"
	printf 'Cr\350me.\n' >"$t/www/plain-latin1"
	cat >"$t/serve.py" <<'EOF'
import http.server, os, sys
root = sys.argv[1]
types = {'/latin1': 'text/html; charset=ISO-8859-1', '/utf16': 'text/html; charset=UTF-16',
	 '/plain-latin1': 'text/plain; charset=iso-8859-1'}
class H(http.server.BaseHTTPRequestHandler):
	def do_GET(self):
		if self.path not in types:
			self.send_error(404)
			return
		body = open(os.path.join(root, self.path[1:]), 'rb').read()
		self.send_response(200)
		self.send_header('Content-Type', types[self.path])
		self.send_header('Content-Length', str(len(body)))
		self.end_headers()
		self.wfile.write(body)
	def log_message(self, *a):
		pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
	python3 -u "$t/serve.py" "$t/www" >"$t/port" 2>"$t/serve.err" &
	srv=$!
	tap_bg $srv
	port=
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
		port=$(head -n 1 "$t/port" 2>/dev/null)
		[ -n "$port" ] && break
		sleep 0.2
	done
fi
if [ -n "${port:-}" ]; then
	u=http://127.0.0.1:$port
	run "$chunk" --timeout 20 "$u/latin1"
	is "$RUN_RC:$RUN_ERR:$(fields text)" "0::Crème brûlée.\n" "a URL served as text/html; charset=ISO-8859-1"
	run "$chunk" --timeout 20 "$u/utf16"
	is "$RUN_RC:$RUN_ERR:$(fields text)" "0::Crème brûlée.\n" "a URL served as text/html; charset=UTF-16"
	run "$chunk" --timeout 20 "$u/plain-latin1"
	is "$RUN_RC:$RUN_ERR:$(fields text)" "0::Crème.\n" "a URL served as text/plain; charset=iso-8859-1"
	kill $srv 2>/dev/null
else
	for i in 1 2 3; do skip "no python3 HTTP server"; done
fi

# ---- PDF ----
if command -v pdftotext >/dev/null 2>&1; then
	perl "$KVBLEND_ROOT/tests/cli/mkpdf.pl" "The first page (of three).
It has two lines." "The second page." "The third page, \\ with a backslash." >"$t/three.pdf"
	run "$chunk" --max-tokens 0 "$t/three.pdf"
	is "$RUN_RC:$RUN_ERR" "0:" "a PDF written by hand: exit 0"
	is "$(fields page last_page text | paste -sd '|')" \
		'1	1	The first page (of three).\nIt has two lines.\n\n|2	2	The second page.\n\n|3	3	The third page, \ with a backslash.\n' \
		"... one paragraph per page, each record with its page"
	run "$chunk" --max-tokens 100 "$t/three.pdf"
	is "$(fields page last_page | paste -sd '|')" '1	3' "... one chunk over three pages: page 1, last_page 3"
	head -c 600 "$t/three.pdf" >"$t/cut.pdf"
	run "$chunk" "$t/cut.pdf" "$t/plain.txt"
	is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/cut.pdf': a truncated PDF (no %%EOF at its end)" \
		"a truncated PDF: one line, exit 1"
	is "$(fields doc | sort -u)" "$t/plain.txt" "... and the next file is still chunked"
	printf '%%PDF-1.4\nnot a pdf at all\n%%%%EOF\n' >"$t/broken.pdf"
	run "$chunk" "$t/broken.pdf"
	like "$RUN_RC:$RUN_OUT:$RUN_ERR" "1::kvblend-chunk: '$t/broken.pdf': pdftotext: * (exit status 1)" \
		"a broken PDF: pdftotext's reason, one line, exit 1"
	gzip -c "$t/three.pdf" >"$t/three.pdf.gz"
	run "$chunk" --max-tokens 0 "$t/three.pdf.gz"
	is "$RUN_RC:$(fields page | paste -sd ' ')" "0:1 2 3" "a gzipped PDF"
	# a PDF made by a Debian tool: groff's pdf device (package groff)
	printf '.TL\nA Report\n.PP\nPage one of the report.\n.bp\n.PP\nPage two of the report.\n' >"$t/r.ms"
	if groff -ms -Tpdf "$t/r.ms" >"$t/r.pdf" 2>/dev/null && [ -s "$t/r.pdf" ]; then
		run "$chunk" --max-tokens 0 "$t/r.pdf"
		is "$RUN_RC:$RUN_ERR:$(fields page text | grep -c 'of the report')" "0::2" "a PDF made by groff -Tpdf: both pages"
		like "$(fields page text | paste -sd '|')" "1	A Report*|1	Page one of the report.*|2	*Page two of the report.*" \
			"... with their page numbers"
	else
		skip "groff has no pdf device (install groff)"
		skip "groff has no pdf device"
	fi
	# a pdftotext that never ends is stopped (the limit lowered for the test)
	mkdir -p "$t/slowbin"
	printf '#!/bin/sh\nexec sleep 30\n' >"$t/slowbin/pdftotext"
	chmod +x "$t/slowbin/pdftotext"
	run env PATH="$t/slowbin:$PATH" KVBLEND_PDF_TIMEOUT=1 "$chunk" "$t/three.pdf"
	like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/three.pdf': pdftotext ran past 1 s and was stopped" \
		"a pdftotext that hangs is stopped: one line, exit 1"
	run env PATH=/nonexistent "$chunk" "$t/three.pdf"
	like "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/three.pdf': cannot run pdftotext (install poppler-utils): *" \
		"no pdftotext: one line saying what to install"
else
	for i in 1 2 3 4 5 6 7 8 9 10 11 12; do skip "pdftotext is not installed (bash .ci/setup)"; done
fi

# ---- binary and unreadable files ----
mkdir -p "$t/mixed"
printf 'Text here.\n' >"$t/mixed/a.txt"
printf '\211PNG\r\n\032\n\000\000\000\rIHDR' >"$t/mixed/b.png"
printf 'More text.\n' >"$t/mixed/c.txt"
run "$chunk" --max-tokens 0 "$t/mixed"
is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/mixed/b.png': binary data (a NUL byte at offset 8), not text, HTML, PDF, gzip or zstd: skipped" \
	"a binary file in a tree: one line naming it, exit 1"
is "$(fields doc | paste -sd ' ')" "a.txt c.txt" "... the other files are chunked"
printf 'old\n' >"$t/out.jsonl"
run "$chunk" -o "$t/out.jsonl" "$t/mixed"
is "$RUN_RC:$(cat "$t/out.jsonl")" "1:old" "... with -o, the output is left as it was (all or nothing, for make)"
run "$chunk" -o "$t/out.jsonl" --exclude '*.png' "$t/mixed"
is "$RUN_RC:$RUN_ERR:$(wc -l <"$t/out.jsonl")" "0::2" "... --exclude '*.png' leaves it out: exit 0"
printf 'secret\n' >"$t/mixed/locked.txt"
chmod 000 "$t/mixed/locked.txt"
if [ -r "$t/mixed/locked.txt" ]; then
	skip "running as root: every file is readable"
else
	run "$chunk" --exclude '*.png' "$t/mixed"
	is "$RUN_RC:$RUN_ERR" "1:kvblend-chunk: '$t/mixed/locked.txt': Permission denied" "an unreadable file: one line, exit 1"
fi
chmod 600 "$t/mixed/locked.txt"
mkdir "$t/mixed/fifo.d" && mkfifo "$t/mixed/fifo.d/p"
run "$chunk" --exclude '*.png' "$t/mixed"
is "$RUN_RC:$RUN_ERR" "0:kvblend-chunk: warning: '$t/mixed/fifo.d/p': not a regular file, skipped" \
	"a FIFO in a tree is not opened: a warning"

done_testing
