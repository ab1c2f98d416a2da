#!/bin/sh
# retrieval.sh — BM25 retrieval quality of kvblend embed on HotpotQA
# (distractor dev, 500 questions, IRCoT's processed file): every question's
# passages pooled into one store (duplicates stored once), then each question
# asked with -k 10; prints recall@2, @5 and @10 of the two supporting passages
# (the share found, averaged over questions) and the share of questions with
# both found. A passage's text is its title, a newline and its paragraph.
#
#	sh tests/bench/retrieval.sh [DATA.jsonl]     (KVBLEND_BIN: the built tools)
#
# Extra arguments after the data file go to every query (e.g. -m MODEL --hybrid).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$root/build/bin}
data=${1:-$root/../shared/data/qa/hotpotqa_distractor_dev500_ircot.jsonl}
[ $# -gt 0 ] && shift
[ -r "$data" ] || { echo "retrieval.sh: cannot read '$data'" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-retrieval.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# chunk records, queries (qid = line number) and the gold ids per question
perl -MJSON::PP -MDigest::SHA=sha256_hex -MEncode=encode_utf8 -ne '
	BEGIN { $js = JSON::PP->new->utf8->canonical; open C, ">", "'"$tmp"'/chunks.jsonl" or die;
		open Q, ">", "'"$tmp"'/queries.jsonl" or die; open G, ">", "'"$tmp"'/gold.tsv" or die }
	my $r = decode_json($_); $n++;
	for my $c (@{$r->{contexts}}) {
		my $text = "$c->{title}\n$c->{paragraph_text}";
		my $id = sha256_hex(encode_utf8($text));
		print C $js->encode({ id => $id, doc => $c->{title}, seq => 0, text => $text }), "\n";
		print G "$n\t$id\n" if $c->{is_supporting};
	}
	print Q $js->encode({ query => $r->{question_text}, qid => $n }), "\n";
' "$data"

t0=$(date +%s.%N)
"$bin/kvblend-embed" --store "$tmp/st" -v "$@" <"$tmp/chunks.jsonl"
t1=$(date +%s.%N)
"$bin/kvblend-embed" --store "$tmp/st" -k 10 -v "$@" <"$tmp/queries.jsonl" >"$tmp/hits.jsonl" || true
t2=$(date +%s.%N)

perl -MJSON::PP -e '
	open G, "<", $ARGV[0] or die; while (<G>) { chomp; my ($q, $id) = split /\t/; $gold{$q}{$id} = 1 }
	open H, "<", $ARGV[1] or die;
	while (<H>) { my $r = decode_json($_); push @{$hits{$r->{qid}}}, [$r->{rank}, $r->{id}] }
	my @ks = (2, 5, 10); my (%rec, %both); my $nq = 0;
	for my $q (keys %gold) {
		$nq++; my @g = keys %{$gold{$q}};
		my @h = sort { $a->[0] <=> $b->[0] } @{$hits{$q} || []};
		for my $k (@ks) {
			my %top = map { $_->[1] => 1 } grep { $_->[0] <= $k } @h;
			my $f = grep { $top{$_} } @g;
			$rec{$k} += $f / @g; $both{$k}++ if $f == @g;
		}
	}
	printf "questions %d (gold passages: 2 each)\n", $nq;
	printf "recall\@%-3d %.3f   both supporting passages in the top %d: %.3f\n", $_, $rec{$_} / $nq, $_, $both{$_} / $nq for @ks;
' "$tmp/gold.tsv" "$tmp/hits.jsonl"
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "store %.2f s, %s\n", b - a, "queries " c - b " s" }'
