#!/bin/sh
# chunk-formats.sh — how fast kvblend chunk reads documents that are not plain
# text: a 5 MB HTML page (libxml2) and two 100-page PDFs (pdftotext), one
# written by hand (tests/cli/mkpdf.pl) and one by groff -Tpdf when groff has
# its pdf device, each beside the plain text it turns into, so the cost of the
# conversion shows. Every file is made in $DIR (default $TMPDIR/kvblend-chunk-speed),
# never in the checkout. Each line: the median and the range of REPS runs
# (default 5) of
#	kvblend chunk -v -m MODEL FILE > /dev/null
# with MODEL the reader model (tests/models/reader.gguf) unless MODEL is set.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
reps=${REPS:-5} model=${MODEL:-$top/tests/models/reader.gguf}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-chunk-speed}
mkdir -p "$dir"
[ -x "$bin/kvblend-chunk" ] || { echo "chunk-formats.sh: $bin/kvblend-chunk is not built (make)" >&2; exit 1; }

# a long article of 5 MiB: sections with headings, paragraphs with inline
# markup, lists, tables, and a script and a style every 20 sections
perl -e '
my $want = 5 << 20;
my @w = qw(the cache of each chunk is computed once and reused when a query retrieves it again so
	the first token comes sooner while the answer keeps its quality across many documents);
my $out = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>A long article</title>\n"
	. "<style>body { font: 14px serif }</style></head><body>\n";
my $s = 0;
while (length $out < $want) {
	$s++;
	$out .= "<script>window.track && track($s, \"<p>not text</p>\");</script>\n<style>.s$s { color: #333 }</style>\n" if $s % 20 == 1;
	$out .= "<h2>Section $s</h2>\n";
	for my $p (1 .. 6) {
		my $t = join " ", map { $w[($s * 13 + $p * 7 + $_ * 3) % @w] } 0 .. 59;
		$t =~ s/(\w+) (\w+) (\w+)/$1 <b>$2<\/b> <a href="#x$s">$3<\/a>/;
		$out .= "<p>\u$t.</p>\n";
	}
	$out .= "<ul><li>first item of $s</li><li>second item</li><li>third item</li></ul>\n";
	$out .= "<table><tr><th>key</th><th>value</th></tr><tr><td>s</td><td>$s</td></tr></table>\n" if $s % 5 == 0;
}
print $out, "</body></html>\n";' >"$dir/article.html"
perl "$top/tests/cli/mkpdf.pl" --pages 100 >"$dir/byhand.pdf"
files="article.html byhand.pdf"
if command -v groff >/dev/null 2>&1 && perl -e '
my @w = qw(the cache of each chunk is computed once and reused when a query retrieves it again so
	the first token comes sooner);
print ".TL\nA long report\n";
for my $s (1 .. 279) {
	print ".NH\nSection $s\n";
	for my $p (1 .. 4) {
		print ".PP\n", join(" ", map { $w[($s * 5 + $p * 3 + $_) % @w] } 0 .. 70), ".\n";
	}
}' >"$dir/report.ms" 2>/dev/null && groff -ms -Tpdf "$dir/report.ms" >"$dir/groff.pdf" 2>/dev/null; then
	files="$files groff.pdf"
fi
# the text each turns into, to chunk as it is
for f in $files; do
	"$bin/kvblend-chunk" --max-tokens 0 "$dir/$f" | perl -MJSON::PP -ne 'BEGIN { binmode STDOUT } print JSON::PP->new->utf8->decode($_)->{text}' >"$dir/$f.txt"
	files="$files $f.txt"
done

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores; model: ${model##*/}; $reps runs each"
printf '%-18s %10s %6s %8s %9s  %s\n' file bytes pages chunks "median s" "range s"
for f in $files; do
	pages=-
	case $f in *.pdf) pages=$(pdfinfo "$dir/$f" 2>/dev/null | sed -n 's/^Pages: *//p') ;; esac
	times=
	for r in $(seq "$reps"); do
		"$bin/kvblend-chunk" -v -m "$model" "$dir/$f" 2>"$dir/v" >/dev/null
		times="$times $(sed -n 's/.* \([0-9.]*\) s$/\1/p' "$dir/v")"
	done
	chunks=$(sed -n 's/.*: \([0-9]*\) chunks,.*/\1/p' "$dir/v")
	printf '%s\n' $times | sort -n | awk -v f="$f" -v b="$(wc -c <"$dir/$f")" -v p="$pages" -v c="$chunks" \
		'{ t[NR] = $1 } END { printf "%-18s %10d %6s %8s %9.2f  %.2f-%.2f\n", f, b, p, c, t[int((NR + 1) / 2)], t[1], t[NR] }'
done
