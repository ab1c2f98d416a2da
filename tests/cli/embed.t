#!/bin/sh
# kvblend embed: chunk records into the chunk index, BM25 top-k retrieval,
# orders, queries on stdin, hostile query text, bad records, usage errors;
# dense search with a decoder (stories260K) and a BERT encoder (synthetic MiniLM).
. "$(dirname "$0")/tap.sh"
need_bin embed
E=$KVBLEND_BIN/kvblend-embed t=$TAP_TMP st=$t/st
cat >"$t/chunks.jsonl" <<'REC'
{"doc":"pets.txt","seq":0,"text":"Lily had a red ball and a small cat."}
{"doc":"pets.txt","seq":1,"text":"Tom had a big dog named Max who loved to run after the ball."}
{"doc":"space.txt","seq":0,"text":"The rocket carried astronauts to the moon."}
{"doc":"space.txt","seq":1,"text":"A moon orbits a planet; astronauts walked on it in 1969."}
{"id":"cook-1","doc":"cook.txt","seq":0,"text":"Bake the bread at a high heat.","lang":"en"}
REC
run "$E" --store "$st" -v <"$t/chunks.jsonl"
[ $RUN_RC -eq 0 ] && [ -z "$RUN_OUT" ]; ok $? "five chunks go in, nothing on stdout"
like "$RUN_ERR" "*5 added, 0 already there, 0 bad; 5 in the index*" "-v counts them: $RUN_ERR"
[ -f "$st/chunks.db" ]; ok $? "the index is DIR/chunks.db"
run "$E" --store "$st" -v <"$t/chunks.jsonl"
like "$RUN_ERR" "*0 added, 5 already there*" "stored chunks are skipped the second time"

run "$E" --store "$st" --query "Who walked on the moon?" -k 2
[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 2 ]; ok $? "-k 2 gives two records"
first=$(printf '%s\n' "$RUN_OUT" | head -1)
like "$first" '*"text":"A moon orbits a planet; astronauts walked on it in 1969."*"score":*"rank":1*' "the best passage first"
like "$first" '*"id":"[0-9a-f][0-9a-f][0-9a-f][0-9a-f]*' "records without id got the SHA-256 of the text"
want=$(printf '%s' "A moon orbits a planet; astronauts walked on it in 1969." | sha256sum | cut -d' ' -f1)
like "$first" "*\"id\":\"$want\"*" "the id is the SHA-256 hex of the text"
run "$E" --store "$st" --query "Who walked on the moon?" -k 2 --order reverse
is "$(printf '%s\n' "$RUN_OUT" | tail -1)" "$first" "--order reverse puts the best last"
run "$E" --store "$st" --query "ball dog cat moon" -k 5 --order doc
is "$(printf '%s\n' "$RUN_OUT" | sed 's/.*"doc":"\([^"]*\)","seq":\([0-9]*\).*/\1 \2/' | tr '\n' ,)" \
	"pets.txt 0,pets.txt 1,space.txt 0,space.txt 1," "--order doc: by doc, then seq"
run "$E" --store "$st" --query "bread" -k 1
like "$RUN_OUT" '{"id":"cook-1","doc":"cook.txt","seq":0,"text":"Bake the bread at a high heat.","lang":"en","score":*,"rank":1}' \
	"every stored field comes back, in order, with score and rank"

for q in '"' 'moon AND' 'NOT moon' 'moon*' '(moon' 'text:moon' 'NEAR(moon rocket)' '^moon' "it's -moon +rocket" '\'; do
	run "$E" --store "$st" --query "$q" -k 1
	[ $RUN_RC -le 1 ] && [ -z "$RUN_ERR" ]; ok $? "FTS5 syntax in the query is plain text: '$q'"
done
run "$E" --store "$st" --query '?!' -k 3
[ $RUN_RC -eq 1 ] && [ -z "$RUN_OUT" ]; ok $? "no words, no match: exit 1"
run "$E" --store "$st" --query "zzzzunknown" -k 3
[ $RUN_RC -eq 1 ] && [ -z "$RUN_OUT" ]; ok $? "nothing matches: exit 1"

printf '%s\n' '{"query":"rocket moon","qid":"q1"}' '{"query":"dog ball","qid":2}' >"$t/q.jsonl"
run "$E" --store "$st" -k 1 <"$t/q.jsonl"
[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 2 ]; ok $? "queries as JSON Lines: one block each"
like "$(printf '%s\n' "$RUN_OUT" | head -1)" '*The rocket*"query":"rocket moon","qid":"q1"}' "the block names its query"
like "$(printf '%s\n' "$RUN_OUT" | tail -1)" '*big dog*"query":"dog ball","qid":2}' "the second block"
printf '%s\n' '{"q":"x"}' '{"query":"moon"}' | "$E" --store "$st" -k 1 >"$t/o" 2>"$t/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: the record has no "query" string' "$t/e" && [ "$(wc -l <"$t/o")" -eq 1 ]
ok $? "a query line without query: an error, the others still answered"

printf '%s\n' '{"text":""}' 'not json' '{"id":3,"text":"x"}' '{"doc":"n.txt","text":"A new chunk about rockets."}' |
	"$E" --store "$st" -v 2>"$t/e"; rc=$?
[ $rc -eq 1 ]; ok $? "bad records: exit 1"
grep -q "line 1: the record's text is empty" "$t/e"; ok $? "empty text named: $(sed -n 1p "$t/e")"
grep -q "line 2: not JSON" "$t/e"; ok $? "not JSON named"
grep -q "line 3: the record's \"id\" is not a non-empty string" "$t/e"; ok $? "bad id named"
grep -q "1 added, 0 already there, 3 bad; 6 in the index" "$t/e"; ok $? "the good record still went in"

KVBLEND_STORE=$st run "$E" --query "bread" -k 1
like "$RUN_OUT" '*cook-1*' "\$KVBLEND_STORE is the default store"
run "$E" --store "$st" --query "x" --order sideways
[ $RUN_RC -eq 2 ]; ok $? "an unknown order is a usage error"
run "$E" --store "$st" --query "x" --lexical --hybrid
[ $RUN_RC -eq 2 ]; ok $? "two methods are a usage error"
run "$E" --store "$st" --query "x" --dense
[ $RUN_RC -eq 2 ]; ok $? "--dense without a model is a usage error"
run "$E" --store "$st" --query "x" -k 0
[ $RUN_RC -eq 2 ]; ok $? "-k 0 is a usage error"
run "$E" --store "$st" "$t/nonexistent.jsonl"
like "$RUN_RC:$RUN_ERR" "1:kvblend-embed: '$t/nonexistent.jsonl': No such file*" "records from a missing file: exit 1, named"
run "$E" --store "$st" --query x somefile
[ $RUN_RC -eq 2 ]; ok $? "an operand with --query is a usage error"
mkdir -p "$t/bad" && echo "not a database at all, definitely not one, no" >"$t/bad/chunks.db"
run "$E" --store "$t/bad" --query x
[ $RUN_RC -eq 1 ]; ok $? "a broken chunks.db: exit 1: $RUN_ERR"
# dense and hybrid search with a decoder's pooled hidden state (stories260K)
if model=$(tap_shared models/stories260Ktok512.gguf); then
	run "$E" --store "$t/d1" -m "$model" --batch 32 -v <"$t/chunks.jsonl"
	like "$RUN_ERR" "*5 added*; 5 embedded in*chunks/s)" "-m embeds every chunk: $RUN_ERR"
	run "$E" --store "$t/d1" -m "$model" -v <"$t/chunks.jsonl"
	like "$RUN_ERR" "*0 added, 5 already there*; 0 embedded*" "stored vectors are not computed again"
	"$E" --store "$t/d2" -m "$model" --batch 1 <"$t/chunks.jsonl"
	"$E" --store "$t/d1" -m "$model" --dense -q "the moon and astronauts" -k 5 >"$t/a"
	"$E" --store "$t/d2" -m "$model" --dense -q "the moon and astronauts" -k 5 >"$t/b"
	ok $? "--dense search"
	[ "$(wc -l <"$t/a")" -eq 5 ] && perl -ne '/"id":"([^"]+)".*"score":([-0-9.e]+)/ and printf "%s %.5f\n", $1, $2' "$t/a" >"$t/a2" &&
		perl -ne '/"id":"([^"]+)".*"score":([-0-9.e]+)/ and printf "%s %.5f\n", $1, $2' "$t/b" >"$t/b2" && cmp -s "$t/a2" "$t/b2"
	ok $? "batched embeddings equal one-by-one ones (ids and cosines)"
	run "$E" --store "$t/d1" -m "$model" -q "the moon and astronauts" -k 3
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 3 ]; ok $? "-m: hybrid by default"
	like "$(printf '%s\n' "$RUN_OUT" | head -1)" '*"score":0.03*' "hybrid scores are reciprocal-rank sums (k = 60)"
	run "$E" --store "$st" -m "$model" --dense -q "moon" -k 3
	[ $RUN_RC -eq 1 ] && like "$RUN_ERR" "*no vectors of this model*" "--dense on a store without this model's vectors: $RUN_ERR"
	run "$E" --store "$t/d1" -m "$model" --pool cls -q "moon"
	[ $RUN_RC -eq 1 ]; ok $? "cls pooling on a decoder: $RUN_ERR"
else
	skip "stories260K is absent: no dense tests"
fi

# dense search with a BERT encoder: a synthetic model of all-MiniLM-L6-v2's shape
# (its real vocabulary when ../shared has it, else a generated WordPiece one)
vocab= && v=$(tap_shared tokenizers/all-MiniLM-L6-v2/tokenizer.json) && vocab="--vocab $v"
Q=$KVBLEND_BIN/kvblend-quantize
if [ -x "$Q" ] && "$Q" --synthetic all-minilm-l6-v2 $vocab "$t/minilm.gguf" q8_0 2>/dev/null; then
	run "$E" --store "$t/bst1" -m "$t/minilm.gguf" -v <"$t/chunks.jsonl"
	[ $RUN_RC -eq 0 ] && like "$RUN_ERR" "*5 added*; 5 embedded in*chunks/s)" "bert: -m embeds every chunk: $RUN_ERR"
	run "$E" --store "$t/bst1" -m "$t/minilm.gguf" --dense -q "Who walked on the moon?" -k 5
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 5 ]; ok $? "bert: --dense gives five records"
	like "$(printf '%s\n' "$RUN_OUT" | head -1)" '*"score":0.*"rank":1}' "bert: cosine scores, best first"
	"$E" --store "$t/bst2" -m "$t/minilm.gguf" --batch 1 <"$t/chunks.jsonl" &&
		"$E" --store "$t/bst2" -m "$t/minilm.gguf" --dense -q "Who walked on the moon?" -k 5 >"$t/b"
	printf '%s\n' "$RUN_OUT" | perl -ne '/"id":"([^"]+)".*"score":([-0-9.e]+)/ and printf "%s %.5f\n", $1, $2' >"$t/a2"
	perl -ne '/"id":"([^"]+)".*"score":([-0-9.e]+)/ and printf "%s %.5f\n", $1, $2' "$t/b" >"$t/b2"
	cmp -s "$t/a2" "$t/b2"; ok $? "bert: batched embeddings equal one-by-one ones (ids and cosines)"
	run "$E" --store "$t/bst1" -m "$t/minilm.gguf" --pool cls --dense -q "moon"
	[ $RUN_RC -eq 1 ] && like "$RUN_ERR" "*no vectors of this model*" "bert: cls pooling is another vector space: $RUN_ERR"
	run "$E" --store "$t/bst1" -m "$t/minilm.gguf" --pool last -q "moon"
	[ $RUN_RC -eq 1 ] && [ "$(printf '%s\n' "$RUN_ERR" | wc -l)" -eq 1 ]
	like "$RUN_ERR" "kvblend-embed: *minilm.gguf': pooling 'last' does not suit a BERT encoder (mean or cls)" \
		"bert: --pool last is one line naming the pooling, exit 1"
	# --vectors: the records back with their embeddings, which are the ones search uses
	run "$E" -m "$t/minilm.gguf" --vectors <"$t/chunks.jsonl"
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | grep -c '"embedding":\[')" -eq 5 ]
	ok $? "--vectors: five records with an embedding"
	norms=$(printf '%s\n' "$RUN_OUT" | perl -ne '/"doc":"[^"]+","seq":\d.*"embedding":\[([^\]]*)\]/ or next;
		my $s = 0; $s += $_ * $_ for split /,/, $1; printf "%d:%.5f ", scalar(split /,/, $1), sqrt $s')
	is "$norms" "384:1.00000 384:1.00000 384:1.00000 384:1.00000 384:1.00000 " \
		"--vectors: 384 numbers of norm 1 after the record's own fields"
	printf '%s\n' "$RUN_OUT" >"$t/vecs"
	printf '{"query":"Who walked on the moon?","qid":3}\n' | "$E" -m "$t/minilm.gguf" --vectors >"$t/qvec"
	"$E" --store "$t/bst1" -m "$t/minilm.gguf" --dense -q "Who walked on the moon?" -k 1 >"$t/top"
	perl -e 'sub vec_of { $_[0] =~ /"embedding":\[([^\]]*)\]/; [split /,/, $1] }
		open my $q, "<", $ARGV[0]; my $qv = vec_of(scalar <$q>);
		open my $t, "<", $ARGV[1]; my $top = <$t>; $top =~ /("text":"[^"]+").*"score":([-0-9.e]+)/ or exit 1;
		my ($text, $score) = ($1, $2);
		open my $v, "<", $ARGV[2]; while (<$v>) { next unless /\Q$text\E/; my $cv = vec_of($_);
			my $d = 0; $d += $qv->[$_] * $cv->[$_] for 0 .. $#$qv; exit(abs($d - $score) < 1e-5 ? 0 : 1) }
		exit 1' "$t/qvec" "$t/top" "$t/vecs"
	ok $? "--vectors: the query's and the best chunk's vectors give the search's score"
	like "$(cat "$t/qvec")" '{"query":"Who walked on the moon?","qid":3,"embedding":\[*\]}' "--vectors: a query record keeps its fields"
	# a batch that mixes passages and a query: each vector as when embedded alone
	{ head -n 2 "$t/chunks.jsonl"; printf '{"query":"Who walked on the moon?","qid":3}\n'; sed -n 3p "$t/chunks.jsonl"; } |
		"$E" -m "$t/minilm.gguf" --vectors >"$t/mixed"
	{ head -n 2 "$t/vecs"; cat "$t/qvec"; sed -n 3p "$t/vecs"; } >"$t/mixed.want"
	cmp -s "$t/mixed" "$t/mixed.want"
	ok $? "--vectors: passages and a query in one batch get the vectors each gets alone"
	run "$E" -m "$t/minilm.gguf" --vectors <<-EOF
	{"text":"one"}
	{"title":"no text"}
	{"text":"two"}
	EOF
	[ $RUN_RC -eq 1 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 2 ]
	like "$RUN_ERR" "kvblend-embed: '<stdin>': line 2: the record has no \"text\" or \"query\" to embed" \
		"--vectors: a record with nothing to embed is named, the others printed, exit 1"
	run "$E" -m "$t/minilm.gguf" --vectors --store "$t/bst1" </dev/null
	like "$RUN_RC:$RUN_ERR" "2:kvblend-embed: --vectors prints embeddings: it takes no --store*" "--vectors --store: usage, exit 2"
	# prefixes (e5's "passage: " / "query: "): the passage prefix is a space of its own
	"$E" --store "$t/bst1" -m "$t/minilm.gguf" --passage-prefix "passage: " <"$t/chunks.jsonl"
	run "$E" --store "$t/bst1" -m "$t/minilm.gguf" --passage-prefix "passage: " --query-prefix "query: " \
		--dense -q "Who walked on the moon?" -k 5
	[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 5 ]
	ok $? "--passage-prefix: the chunks embedded again into their own space, searched with --query-prefix"
	printf '{"text":"passage: A moon orbits a planet."}\n{"query":"query: moon"}\n' |
		"$E" -m "$t/minilm.gguf" --vectors >"$t/pv1"
	printf '{"text":"A moon orbits a planet."}\n{"query":"moon"}\n' |
		"$E" -m "$t/minilm.gguf" --vectors --passage-prefix "passage: " --query-prefix "query: " >"$t/pv2"
	sed 's/.*"embedding"//' "$t/pv1" >"$t/pv1e"
	sed 's/.*"embedding"//' "$t/pv2" >"$t/pv2e"
	[ "$(wc -l <"$t/pv1e")" -eq 2 ] && cmp -s "$t/pv1e" "$t/pv2e"
	ok $? "--vectors: a text after --passage-prefix and a query after --query-prefix, as if written in them"
	run "$E" --store "$t/bst1" --lexical --query-prefix "query: " -q moon
	like "$RUN_RC:$RUN_ERR" "2:kvblend-embed: --passage-prefix and --query-prefix go with an embedding model*" \
		"a prefix with --lexical: usage, exit 2"
	"$Q" --synthetic tiny-bert "$t/tiny.gguf" f32 2>/dev/null &&
		perl -0777 -pe 's/blk\.1\.ffn_up\.bias/blk.1.ffn_up.bixs/' "$t/tiny.gguf" >"$t/broken.gguf"
	run "$E" --store "$t/bst3" -m "$t/broken.gguf" <"$t/chunks.jsonl"
	[ $RUN_RC -eq 1 ] && [ "$(printf '%s\n' "$RUN_ERR" | wc -l)" -eq 1 ]
	like "$RUN_ERR" "kvblend-embed: *broken.gguf': missing tensor 'blk.1.ffn_up.bias'" \
		"bert: a missing tensor is one line naming it, exit 1"
else
	skip "kvblend-quantize cannot write a synthetic bert: no bert tests"
fi

# a model whose weights hold NaN (a fuzz regression seed): refused, not stored or printed
printf '{"text":"Once upon a time"}\n' >"$t/one.jsonl"
run "$E" -m "$KVBLEND_ROOT/tests/fuzz/corpus/model/regress-nan-weights.seed" --vectors <"$t/one.jsonl"
like "$RUN_RC:$RUN_OUT:$RUN_ERR" "1::kvblend-embed: *regress-nan-weights.seed': the model gives a non-finite embedding*" \
	"NaN weights: a one-line error naming the model, exit 1, nothing printed"
run "$E" -m "$KVBLEND_ROOT/tests/fuzz/corpus/model/regress-block-count.seed" --vectors <"$t/one.jsonl"
like "$RUN_RC:$RUN_ERR" "1:kvblend-embed: *': block_count 805306368, but the file holds only 12 tensors" \
	"a block_count beyond the tensors: refused before allocating for it"

run "$E" --vectors </dev/null
like "$RUN_RC:$RUN_ERR" "2:kvblend-embed: --vectors needs an embedding model (-m MODEL)*" "--vectors without -m: usage, exit 2"

run "$E" --help
[ $RUN_RC -eq 0 ] && like "$RUN_OUT" "usage: kvblend embed*" "--help"
# ---- a mistyped --store (issue 10, item 19) ----
run "$E" --store "$t/nostore" --query moon
[ $RUN_RC -eq 1 ]; ok $? "--query on a store that does not exist: exit 1"
like "$RUN_ERR" "kvblend-embed: '$t/nostore': no such store*" "it says so: $RUN_ERR"
[ ! -e "$t/nostore" ]; ok $? "and creates nothing"
mkdir "$t/bare"
run "$E" --store "$t/bare" --query moon
[ $RUN_RC -eq 1 ] && [ ! -e "$t/bare/chunks.db" ]; ok $? "--query on a store with no chunk index: exit 1, nothing created"
like "$RUN_ERR" "*'$t/bare': no chunk index in this store*" "it says so"
run "$E" --store "$t/nostore" --list-docs
[ $RUN_RC -eq 1 ] && [ ! -e "$t/nostore" ]; ok $? "--list-docs on a store that does not exist: exit 1, nothing created"

# ---- long queries (issue 10, item 11) ----
awk 'BEGIN { for (i = 1; i <= 50; i++) printf "{\"doc\":\"m%d\",\"text\":\"moon rocket number %d\"}\n", i, i }' |
	"$E" --store "$t/moons"
awk 'BEGIN { for (i = 0; i < 8000; i++) printf "moon "; print "" }' >"$t/longq"
start=$(date +%s)
run "$E" --store "$t/moons" --query "$(cat "$t/longq")" -k 3
end=$(date +%s)
[ $RUN_RC -eq 0 ] && [ "$(printf '%s\n' "$RUN_OUT" | wc -l)" -eq 3 ]; ok $? "a query of one word 8,000 times answers"
[ $((end - start)) -le 5 ]; ok $? "in seconds, not minutes ($((end - start)) s; 18 s before the terms were de-duplicated)"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "w%d ", i; print "moon" }' >"$t/distinct"
start=$(date +%s)
run "$E" --store "$st" --query "$(cat "$t/distinct")" -k 3
end=$(date +%s)
[ $RUN_RC -le 1 ] && [ -z "$RUN_ERR" ] && [ $((end - start)) -le 5 ]; ok $? "20,000 distinct words: capped, answered in $((end - start)) s"

# ---- documents (issue 10, item 20) ----
d=$t/docs
printf '%s\n' '{"doc":"a.txt","seq":0,"text":"The old rocket was painted red."}' \
	'{"doc":"a.txt","seq":1,"text":"Moon dust covers everything."}' \
	'{"doc":"b.txt","seq":0,"text":"Bread rises in a warm oven."}' | "$E" --store "$d"
run "$E" --store "$d" --list-docs
is "$RUN_OUT" "$(printf 'a.txt\t2\nb.txt\t1')" "--list-docs: each document and its number of chunks"
# a.txt edited: its first chunk changes, its second stays
printf '%s\n' '{"doc":"a.txt","seq":0,"text":"The new shuttle was painted white."}' \
	'{"doc":"a.txt","seq":1,"text":"Moon dust covers everything."}' | "$E" --store "$d" -v 2>"$t/e"
ok $? "a.txt indexed again"
grep -q "1 old chunk of re-indexed documents removed" "$t/e"; ok $? "-v says one old chunk went: $(cat "$t/e")"
run "$E" --store "$d" --query "old rocket painted red" -k 5
[ $RUN_RC -eq 1 ] || ! printf '%s\n' "$RUN_OUT" | grep -q "old rocket"; ok $? "the edited document's old chunk is no longer found"
run "$E" --store "$d" --query "shuttle" -k 5
like "$RUN_OUT" '*"doc":"a.txt","seq":0,"text":"The new shuttle*' "its new chunk is"
run "$E" --store "$d" --list-docs
is "$RUN_OUT" "$(printf 'a.txt\t2\nb.txt\t1')" "a.txt still has two chunks, b.txt is untouched"
# a bad record keeps a document's old chunks (its new ones may be incomplete)
printf '%s\n' '{"doc":"b.txt","seq":0,"text":"Rye bread is dense."}' '{"doc":"b.txt","seq":1,"text":""}' |
	"$E" --store "$d" 2>"$t/e"
[ $? -eq 1 ] && grep -q "keep their old chunks" "$t/e"; ok $? "with a bad record, documents keep their old chunks (and it says so)"
run "$E" --store "$d" --query "oven" -k 1
like "$RUN_OUT" '*warm oven*' "b.txt's old chunk is still found"
run "$E" --store "$d" --delete b.txt -v
[ $RUN_RC -eq 0 ]; ok $? "--delete b.txt: exit 0"
like "$RUN_ERR" "*'b.txt': 2 chunks removed*" "-v: how many chunks went"
run "$E" --store "$d" --query "bread oven rye" -k 5
[ $RUN_RC -eq 1 ] && [ -z "$RUN_OUT" ]; ok $? "its chunks are gone from search"
run "$E" --store "$d" --delete b.txt
[ $RUN_RC -eq 1 ]; ok $? "--delete of a document not there: exit 1"
like "$RUN_ERR" "kvblend-embed: 'b.txt': no such document in the chunk index" "it says so"
run "$E" --store "$d" --delete a.txt --query moon
[ $RUN_RC -eq 2 ]; ok $? "--delete with --query: a usage error"
# ---- a read-only store (issue 10, item 7): searched as the user nobody ----
cp -R "$st" "$t/ro" && chmod -R a+rX,a-w "$t/ro" && chmod a+rx "$t"
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1; then
	skip "not root, or no setpriv: cannot search as another user"
	skip "not root, or no setpriv"
elif ! setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$t/ro/chunks.db"; then
	skip "the scratch folder is not readable by nobody"
	skip "the scratch folder is not readable by nobody"
else
	run setpriv --reuid=65534 --regid=65534 --clear-groups "$E" --store "$t/ro" --query "moon" -k 1
	[ $RUN_RC -eq 0 ] && [ -n "$RUN_OUT" ]; ok $? "--query on a store nobody may not write: found ($RUN_ERR)"
	run setpriv --reuid=65534 --regid=65534 --clear-groups "$E" --store "$t/ro" --delete pets.txt
	[ $RUN_RC -eq 1 ]; ok $? "--delete there: exit 1, saying read-only ($RUN_ERR)"
fi
chmod -R u+w "$t/ro"
# --json: the summaries as one JSON object on stderr (issue 10 item 18)
printf '%s\n' '{"doc":"j.txt","seq":0,"text":"Jellyfish drift in the warm sea."}' >"$t/j.jsonl"
run "$E" --store "$t/js" --json "$t/j.jsonl"
[ $RUN_RC -eq 0 ] && [ -z "$RUN_OUT" ]; ok $? "--json indexing: exit 0, nothing on stdout"
like "$RUN_ERR" '{"chunks":1,"added":1,"already_indexed":0,"bad":0,"in_index":1,"seconds":*,"embedded":0,*"swept":0}' \
	"--json indexing: the counts as JSON ($RUN_ERR)"
run "$E" --store "$t/js" -j -q jellyfish
like "$RUN_ERR" '{"queries":1,"found":1,"seconds":*,"method":"lexical"}' "--json searching: the counts as JSON"
like "$RUN_OUT" '*"Jellyfish drift*' "and the hit on stdout"
done_testing
