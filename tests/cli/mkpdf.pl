#!/usr/bin/perl
# mkpdf.pl — write a small, valid PDF by hand (no tool needed): one page per
# argument, each argument's lines ('\n'-separated) set in Helvetica 11 pt,
# top-down. Used by tests/cli/chunk-formats.t and to make the 100-page PDF
# that chunk's speed is measured on (man/kvblend-chunk.1):
#	perl tests/cli/mkpdf.pl "page one" "page two" > two.pdf
#	perl tests/cli/mkpdf.pl --pages 100 > big.pdf      # 100 pages of prose
use strict;
use warnings;

my @pages = @ARGV;
if (@pages == 2 && $pages[0] eq '--pages') {
	my $n = $pages[1];
	my @words = qw(the cache of each chunk is computed once and reused when the chunk
		is retrieved again by another query so the time to the first token falls);
	@pages = ();
	for my $p (1 .. $n) {
		my @lines;
		for my $l (1 .. 50) {
			my $s = join ' ', map { $words[($p * 7 + $l * 3 + $_) % @words] } 0 .. 11;
			push @lines, ucfirst($s) . ($l % 6 ? ',' : '.');
		}
		push @pages, join "\n", "Page $p of the report.", @lines;
	}
}
@pages or die "usage: mkpdf.pl TEXT... | --pages N\n";

my @obj;    # bodies, object i + 1
push @obj, "<< /Type /Catalog /Pages 2 0 R >>";
push @obj, "";    # the page tree, filled in below
push @obj, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";
my @kids;
for my $text (@pages) {
	my $s = "BT /F1 11 Tf 14 TL 56 780 Td\n";
	for my $line (split /\n/, $text) {
		(my $e = $line) =~ s/([\\()])/\\$1/g;
		$s .= "($e) Tj T*\n";
	}
	$s .= "ET\n";
	push @obj, "<< /Length " . length($s) . " >>\nstream\n$s" . "endstream";
	my $content = scalar @obj;
	push @obj, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
	  . "/Resources << /Font << /F1 3 0 R >> >> /Contents $content 0 R >>";
	push @kids, scalar(@obj) . " 0 R";
}
$obj[1] = "<< /Type /Pages /Kids [@kids] /Count " . scalar(@kids) . " >>";

binmode STDOUT;
my $out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
my @off;
for my $i (0 .. $#obj) {
	push @off, length $out;
	$out .= ($i + 1) . " 0 obj\n$obj[$i]\nendobj\n";
}
my $xref = length $out;
$out .= "xref\n0 " . (@obj + 1) . "\n0000000000 65535 f \n";
$out .= sprintf "%010d 00000 n \n", $_ for @off;
$out .= "trailer\n<< /Size " . (@obj + 1) . " /Root 1 0 R >>\nstartxref\n$xref\n%%EOF\n";
print $out;
