#!/bin/sh
# Every -o is atomic (issue 10 item 4): a SIGTERM, SIGINT or SIGHUP during
# chunk -o (its input held open on a pipe) or during quantize's write (caught
# while its temporary file exists) leaves no temporary file and no target;
# leftovers of dead processes are removed when the same file is written again,
# those of live processes kept. prefill -o and blend -o write through the same
# code (kvc_write_file): tests/unit/test_kvfile.c stops one in the middle.
. "$(dirname "$0")/tap.sh"

need_bin chunk quantize
chunk=$KVBLEND_BIN/kvblend-chunk
t=$TAP_TMP

# temps NAME: the temporary files of NAME in $t
temps() {
	ls -A "$t" | grep "^\.$1\..*\.tmp$"
}

# wait_for NAME: until a temporary file of NAME exists (at most about 20 s)
wait_for() {
	i=0
	while [ $i -lt 1000 ] && [ -z "$(temps "$1")" ]; do
		sleep 0.02
		i=$((i + 1))
	done
	[ -n "$(temps "$1")" ]
}

for sig in TERM:15 INT:2 HUP:1; do
	num=${sig#*:} sig=${sig%:*}
	fifo=$t/in.$sig
	mkfifo "$fifo"
	# sh starts background commands with SIGINT ignored, and a test run under
	# nohup has SIGHUP ignored: perl gives each its default action back
	perl -e '$SIG{$_} = "DEFAULT" for qw(INT HUP TERM); exec @ARGV or die' "$chunk" -o "$t/c.jsonl" <"$fifo" 2>"$t/err" &
	pid=$!
	exec 3>"$fifo" # the writer end stays open: chunk waits for its input
	printf 'a paragraph\n\n' >&3
	if wait_for c.jsonl; then
		name=$(temps c.jsonl)
		kill -$sig $pid
		wait $pid 2>/dev/null
		rc=$?
		exec 3>&-
		is "$rc:$(temps c.jsonl)" "$((128 + num)):" "chunk -o, SIG$sig while writing: died of it, $name removed"
		[ ! -e "$t/c.jsonl" ]; ok $? "... and no c.jsonl"
	else
		exec 3>&-
		wait $pid 2>/dev/null
		ok 1 "chunk -o made no temporary file in 20 s"
		skip "no temporary file"
	fi
done

# a nohup'ed run (SIGHUP ignored) is not killed by it and finishes the file
mkfifo "$t/in.nohup"
(trap '' HUP; exec "$chunk" -o "$t/n.jsonl" <"$t/in.nohup") &
pid=$!
exec 3>"$t/in.nohup"
printf 'a paragraph\n\n' >&3
if wait_for n.jsonl; then
	kill -HUP $pid
	sleep 0.2
	exec 3>&-
	wait $pid 2>/dev/null
	rc=$?
	is "$rc:$(temps n.jsonl):$(grep -c paragraph "$t/n.jsonl" 2>/dev/null)" "0::1" "an ignored SIGHUP stays ignored: the file is written"
else
	exec 3>&-
	wait $pid 2>/dev/null
	ok 1 "chunk -o made no temporary file in 20 s"
fi

# leftovers: the host's tag from a temporary file seen above
host=$(printf '%s\n' "$name" | sed -n 's/^\.c\.jsonl\.[0-9]*\.\([0-9a-f]\{8\}\)\.[0-9]*\.tmp$/\1/p')
if [ -n "$host" ]; then
	sh -c 'exit 0' &
	dead=$!
	wait $dead
	printf 'half' >"$t/.c.jsonl.$dead.$host.0.tmp"
	printf 'half' >"$t/.c.jsonl.$$.$host.0.tmp"
	printf 'text\n' >"$t/p.txt"
	run "$chunk" -o "$t/c.jsonl" "$t/p.txt"
	[ $RUN_RC -eq 0 ] && [ ! -e "$t/.c.jsonl.$dead.$host.0.tmp" ]; ok $? "a dead process's leftover is removed when c.jsonl is written again"
	[ -e "$t/.c.jsonl.$$.$host.0.tmp" ]; ok $? "a live process's is kept"
else
	skip "no host tag in '$name'" && skip "no host tag"
fi

# quantize: 140 MB written and fsynced; SIGTERM once its temporary file exists
"$KVBLEND_BIN/kvblend-quantize" --synthetic smollm2-135m "$t/q.gguf" q8_0 2>/dev/null &
pid=$!
if wait_for q.gguf; then
	kill -TERM $pid
	wait $pid 2>/dev/null
	rc=$?
	if [ -e "$t/q.gguf" ]; then
		skip "quantize renamed its file before the signal came"
	else
		is "$rc:$(temps q.gguf)" "143:" "quantize, SIGTERM while writing: no temporary file of 140 MB left"
	fi
else
	wait $pid 2>/dev/null
	skip "quantize's temporary file was never seen (it was too quick)"
fi
rm -f "$t"/.q.gguf.* "$t/q.gguf"

done_testing
