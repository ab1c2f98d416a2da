#!/bin/sh
# The remote tier on a real S3-compatible server (s3rver from npm, on
# loopback, started and stopped here): prefill writes through; awscli, an
# independent client, lists and reads what kvblend wrote; a second "machine"
# (another store on the same bucket) computes nothing and its blend equals the
# first's bit for bit; a third prefills nothing; no credential appears in any
# message, cache or index; evict --remote lists, verifies and deletes.
. "$(dirname "$0")/tap.sh"
need_bin prefill chunk blend evict
model=$(tap_shared models/stories260Ktok512.gguf) || skip_all "stories260K is absent"
text=$(tap_shared data/text/gutenberg_pg1342_pride_and_prejudice.txt) || skip_all "the shared texts are absent"
s3rver=$KVBLEND_ROOT/build/npm/node_modules/.bin/s3rver
command -v node >/dev/null 2>&1 || skip_all "node is absent (.ci/setup installs it)"
[ -x "$s3rver" ] || skip_all "s3rver is not installed (.ci/setup installs it into build/npm)"
if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=$(command -v aws) || skip_all "awscli is absent (.ci/setup installs it)"; fi
B=$KVBLEND_BIN t=$TAP_TMP

# the server: a free port on 127.0.0.1, a bucket made at start, stopped at exit
mkdir "$t/s3"
: >"$t/s3.log"
"$s3rver" -d "$t/s3" -a 127.0.0.1 -p 0 --configure-bucket kvb-fleet >"$t/s3.log" 2>&1 &
tap_bg $!
i=0
while ! grep -q "listening on" "$t/s3.log" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$t/s3.log")
[ -n "$port" ] || { cat "$t/s3.log" >&2; skip_all "s3rver did not start"; }
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=kvbSecretKey42 AWS_SESSION_TOKEN=kvbSessionToken42
export KVBLEND_REMOTE_TIMEOUT=5 KVBLEND_REMOTE_RETRIES=1 KVBLEND_REMOTE_BACKOFF=0.05
unset KVBLEND_REMOTE
aws() { "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
R="--remote s3://kvb-fleet/team/kv"

head -c 9000 "$text" | tail -c 3000 >"$t/doc.txt"
"$B/kvblend-chunk" -m "$model" --max-tokens 24 "$t/doc.txt" | head -n 5 >"$t/c.jsonl"
q="Who is Elizabeth?"

# machine A: prefill (computes, writes through), then blend
"$B/kvblend-prefill" -m "$model" --store "$t/A" $R --json <"$t/c.jsonl" >"$t/a.jsonl" 2>"$t/a.err"
ok $? "machine A: prefill --remote s3://... succeeds"
grep -q '"computed":5,.*"fetched":0' "$t/a.err"; ok $? "machine A computed the 5 chunks: $(cat "$t/a.err")"
sed 's/.*"kv":"\([0-9a-f]*\)".*/\1.kvc/' "$t/a.jsonl" | sort >"$t/want"
aws s3 ls s3://kvb-fleet/team/kv/ >"$t/ls" 2>"$t/ls.err"
awk '{print $4}' "$t/ls" | sort >"$t/got"
cmp -s "$t/want" "$t/got"; ok $? "awscli lists exactly the 5 objects under the prefix, named KEY.kvc"
k=$(head -n 1 "$t/want")
aws s3 cp "s3://kvb-fleet/team/kv/$k" "$t/fromaws.kvc" >/dev/null 2>&1
cmp -s "$t/fromaws.kvc" "$t/A/objects/$(echo "$k" | cut -c1-2)/$(echo "$k" | cut -c3-)"
ok $? "awscli reads an object back byte for byte as machine A stored it"
"$B/kvblend-blend" -m "$model" --template plain --store "$t/A" $R --ctx 512 -q "$q" <"$t/c.jsonl" >/dev/null 2>&1
"$B/kvblend-blend" -m "$model" --template plain --store "$t/A" $R --ctx 512 -q "$q" -v <"$t/c.jsonl" >"$t/a.kvc" 2>"$t/ab.err"
ok $? "machine A: blend (its second: the prompt's head was computed and written through by the first)"

# machine B: an empty store, the same bucket
"$B/kvblend-blend" -m "$model" --template plain --store "$t/B" $R --ctx 512 -q "$q" -v <"$t/c.jsonl" >"$t/b.kvc" 2>"$t/b.err"
ok $? "machine B: blend from an empty store"
grep -q "6 fetched from the remote.*, 0 computed" "$t/b.err"; ok $? "machine B computed nothing, fetched all 6 caches: $(grep -o '[0-9]* caches from.*computed' "$t/b.err")"
cmp -s "$t/a.kvc" "$t/b.kvc"; ok $? "machine B's blend equals machine A's bit for bit"
"$B/kvblend-evict" --store "$t/B" --verify >/dev/null 2>&1; ok $? "machine B's store verifies clean"
[ "$(find "$t/B/objects" -name '*.kvc' | wc -l)" -eq 6 ]; ok $? "and keeps the 6 fetched caches"
"$B/kvblend-blend" -m "$model" --template plain --store "$t/B" $R --ctx 512 -q "$q" -v <"$t/c.jsonl" >"$t/b2.kvc" 2>"$t/b2.err"
grep -q "(0 fetched from the remote" "$t/b2.err"; ok $? "machine B again: all from its local store, nothing fetched"

# machine C: prefill with the remote from $KVBLEND_REMOTE
KVBLEND_REMOTE=s3://kvb-fleet/team/kv "$B/kvblend-prefill" -m "$model" --store "$t/C" --json <"$t/c.jsonl" >/dev/null 2>"$t/c.err"
grep -q '"computed":0,"already_stored":5,"fetched":5' "$t/c.err"; ok $? "machine C (\$KVBLEND_REMOTE): prefill computes nothing: $(cat "$t/c.err")"

# a store filled before the remote was given: prefill --remote uploads what it has
"$B/kvblend-prefill" -m "$model" --store "$t/O" <"$t/c.jsonl" >/dev/null 2>&1
"$B/kvblend-prefill" -m "$model" --store "$t/O" --remote s3://kvb-fleet/team/old --json <"$t/c.jsonl" >/dev/null 2>"$t/o.err"
grep -q '"computed":0,"already_stored":5,"fetched":0,"uploaded":5' "$t/o.err"
ok $? "prefill --remote on a store filled before uploads its 5 caches: $(cat "$t/o.err")"
[ "$(aws s3 ls s3://kvb-fleet/team/old/ 2>/dev/null | wc -l)" -eq 5 ]; ok $? "awscli lists them"
"$B/kvblend-prefill" -m "$model" --store "$t/O" --remote s3://kvb-fleet/team/old --json <"$t/c.jsonl" >/dev/null 2>"$t/o.err"
grep -q '"uploaded":0' "$t/o.err"; ok $? "again: nothing to upload (each HEAD finds it)"

# credentials never written anywhere
if grep -rl -e kvbSecretKey42 -e kvbSessionToken42 "$t/A" "$t/B" "$t/C" "$t"/*.err "$t"/*.kvc "$t"/*.jsonl >/dev/null 2>&1; then
	ok 1 "no credential in messages, caches or indexes"
else
	ok 0 "no credential in messages, caches or indexes"
fi
"$B/kvblend-blend" -m "$model" --template plain --store "$t/D" --remote s3://kvb-nobucket/x --ctx 512 -q "$q" <"$t/c.jsonl" >"$t/d.kvc" 2>"$t/d.err"
ok $? "a bucket that does not exist: the blend is still answered"
[ "$(wc -l <"$t/d.err")" -eq 1 ] && ! grep -q -e kvbSecretKey42 -e kvbSessionToken42 -e S3RVER "$t/d.err"
ok $? "one warning, with no credential in it: $(head -n 1 "$t/d.err")"

# evict --remote: list, verify, delete within a budget
"$B/kvblend-evict" $R --list >"$t/rl" 2>"$t/rl.err"
ok $? "evict --remote --list"
[ "$(wc -l <"$t/rl")" -eq 6 ]; ok $? "lists the 6 objects on the remote"
"$B/kvblend-evict" $R --verify >"$t/rv" 2>&1; ok $? "evict --remote --verify: $(tail -n 1 "$t/rv")"
# one object replaced by a corrupt one, with awscli
head -c 3000 "$t/fromaws.kvc" >"$t/bad.kvc"
aws s3 cp "$t/bad.kvc" "s3://kvb-fleet/team/kv/$k" >/dev/null 2>&1
"$B/kvblend-evict" $R --verify --dry-run >"$t/rv" 2>&1; [ $? -eq 1 ] && grep -q "${k%.kvc}" "$t/rv"
ok $? "--verify --dry-run finds the truncated object (exit 1): $(grep "${k%.kvc}" "$t/rv" | head -n 1)"
aws s3 ls "s3://kvb-fleet/team/kv/$k" >/dev/null 2>&1; ok $? "and a dry run leaves it there"
"$B/kvblend-evict" $R --verify >"$t/rv" 2>&1; [ $? -eq 1 ]; ok $? "--verify removes it (exit 1: something was wrong)"
! aws s3 ls "s3://kvb-fleet/team/kv/$k" >/dev/null 2>&1; ok $? "awscli no longer sees it"
"$B/kvblend-evict" $R --verify >/dev/null 2>&1; ok $? "the remote verifies clean now"
total=$(awk '{s += $3} END {print s}' "$t/ls")
"$B/kvblend-evict" $R --max-bytes 20000 --dry-run >"$t/ev" 2>&1
n_before=$(aws s3 ls s3://kvb-fleet/team/kv/ | wc -l)
[ "$n_before" -eq 5 ]; ok $? "--max-bytes --dry-run removes nothing ($n_before objects)"
"$B/kvblend-evict" $R --max-bytes 20000 -v >"$t/ev" 2>&1; ok $? "evict --remote --max-bytes 20000: $(tail -n 1 "$t/ev")"
left=$(aws s3 ls s3://kvb-fleet/team/kv/ | awk '{s += $3} END {print s + 0}')
[ "$left" -le 20000 ]; ok $? "the remote's objects now take $left bytes <= 20000 (of $total before)"

# SigV4 as S3 checks it: a server that verifies every signature with its own
# code (tests/remote/faultserver.py --sigv4) accepts awscli's (botocore's)
# requests, so it checks what AWS checks; then kvblend's (libcurl's) too.
command -v python3 >/dev/null 2>&1 || { done_testing; }
faultserver "$t/sport" 60 --sigv4 "AKIDKVB:s3cr/t+Key"
export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$t/sport") AWS_ACCESS_KEY_ID=AKIDKVB AWS_SECRET_ACCESS_KEY=s3cr/t+Key
unset AWS_SESSION_TOKEN
aws s3api put-object --bucket kvb-sig --key x/probe --body "$t/doc.txt" >/dev/null 2>&1 &&
	aws s3api head-object --bucket kvb-sig --key x/probe >/dev/null 2>&1
ok $? "the signature-checking server accepts awscli's signed requests"
AWS_SECRET_ACCESS_KEY=wrong aws s3api head-object --bucket kvb-sig --key x/probe >/dev/null 2>&1; [ $? -ne 0 ]
ok $? "and refuses them signed with another secret"
"$B/kvblend-prefill" -m "$model" --store "$t/E" --remote s3://kvb-sig/fleet --json <"$t/c.jsonl" >/dev/null 2>"$t/e.err"
ok $? "prefill writes through to it"
[ "$(grep -c warning "$t/e.err")" -eq 0 ] && grep -q '"computed":5' "$t/e.err"; ok $? "with no warning: every signed HEAD and PUT accepted"
"$B/kvblend-blend" -m "$model" --template plain --store "$t/F" --remote s3://kvb-sig/fleet --ctx 512 -q "$q" -v <"$t/c.jsonl" >/dev/null 2>"$t/f.err"
grep -q "(5 fetched from the remote" "$t/f.err" && [ "$(grep -c warning "$t/f.err")" -eq 0 ]
ok $? "another store blends from it: signed GETs accepted"
"$B/kvblend-evict" --remote s3://kvb-sig/fleet --list >"$t/sl" 2>&1; [ "$(wc -l <"$t/sl")" -eq 6 ]
ok $? "evict --remote --list: a signed ListObjectsV2, paged ($(wc -l <"$t/sl") objects)"
AWS_SECRET_ACCESS_KEY=wrong "$B/kvblend-evict" --remote s3://kvb-sig/fleet --list >/dev/null 2>"$t/w.err"; [ $? -eq 1 ]
ok $? "a wrong secret is refused: $(cat "$t/w.err")"
done_testing
