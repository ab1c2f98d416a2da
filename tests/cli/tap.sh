# tap.sh — TAP helpers for the shell tests in tests/cli (POSIX sh; run by prove).
# Source it first thing from a test:
#
#	. "$(dirname "$0")/tap.sh"
#
# It sets
#	KVBLEND_ROOT   the repository root (the test is assumed to live in tests/cli)
#	KVBLEND_BIN    the built tools: $KVBLEND_BIN, else $KVBLEND_ROOT/build/bin
#	TAP_TMP        a scratch directory, removed when the test exits
# and defines
#	ok STATUS NAME        a test that passes when STATUS is 0:  [ "$a" = "$b" ]; ok $? "same"
#	is GOT WANT NAME      passes when the two strings are equal (both shown when not)
#	like GOT PATTERN NAME passes when GOT matches the shell (case) PATTERN
#	skip NAME             a skipped test ("ok N # SKIP NAME")
#	diag TEXT...          comment lines ("# TEXT") on stdout
#	skip_all REASON       "1..0 # SKIP REASON" and exit 0 (the whole file is skipped)
#	done_testing          print the plan "1..N" and exit 1 if any test failed, else 0
#	tap_shared REL        print the path of REL in the shared test data ($KVBLEND_TESTDATA,
#	                      else ../shared beside the repository); status 1 when absent
#	need_shared REL...    skip_all unless each REL is there; sets SHARED to the data directory
#	need_bin TOOL...      skip_all unless $KVBLEND_BIN/kvblend-TOOL (or kvblend) is built
#	run CMD...            run CMD (stdin as given), setting RUN_RC, RUN_OUT and RUN_ERR
#	                      (stdout and stderr, trailing newlines dropped; the exact bytes
#	                      are in $TAP_TMP/out and $TAP_TMP/err)
#	tap_bg PID            stop the background process PID (a server) when the test exits
#	faultserver PORTFILE [ARG...]
#	                      start tests/remote/faultserver.py on 127.0.0.1 (stopped at exit,
#	                      ARGs passed on), wait up to 10 s for its port in PORTFILE;
#	                      status 1 if it never wrote one

KVBLEND_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KVBLEND_BIN=${KVBLEND_BIN:-$KVBLEND_ROOT/build/bin}
TAP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvblend-test.XXXXXX") || exit 1
# every test has caches of its own: no store, wisdom or model left in the
# user's ~/.cache by another test or another build is ever read
export XDG_CACHE_HOME="$TAP_TMP/cache"
unset KVBLEND_STORE KVBLEND_WISDOM KVBLEND_REMOTE
TAP_PIDS=
trap 'kill $TAP_PIDS 2>/dev/null; wait $TAP_PIDS 2>/dev/null; rm -rf "$TAP_TMP"' EXIT
trap 'exit 1' HUP INT TERM
tap_n=0
tap_failed=0

diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

ok() {
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ] 2>/dev/null; then
		printf 'ok %d - %s\n' "$tap_n" "$2"
	else
		printf 'not ok %d - %s\n' "$tap_n" "$2"
		tap_failed=$((tap_failed + 1))
	fi
}

is() {
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "got:  '$1'" "want: '$2'"
	fi
}

like() {
	case $1 in
	$2) ok 0 "$3" ;;
	*)
		ok 1 "$3"
		diag "got:  '$1'" "want: $2"
		;;
	esac
}

skip() {
	tap_n=$((tap_n + 1))
	printf 'ok %d # SKIP %s\n' "$tap_n" "$1"
}

skip_all() {
	printf '1..0 # SKIP %s\n' "$1"
	exit 0
}

done_testing() {
	printf '1..%d\n' "$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit
}

tap_shared() {
	tap_dir=${KVBLEND_TESTDATA:-$KVBLEND_ROOT/../shared}
	[ -e "$tap_dir/$1" ] || return 1
	printf '%s\n' "$tap_dir/$1"
}

need_shared() {
	SHARED=${KVBLEND_TESTDATA:-$KVBLEND_ROOT/../shared}
	for tap_rel in "$@"; do
		[ -e "$SHARED/$tap_rel" ] || skip_all "$SHARED/$tap_rel is absent"
	done
}

need_bin() {
	for tap_tool in "$@"; do
		case $tap_tool in
		kvblend) tap_exe=$KVBLEND_BIN/kvblend ;;
		*) tap_exe=$KVBLEND_BIN/kvblend-$tap_tool ;;
		esac
		[ -x "$tap_exe" ] || skip_all "$tap_exe is not built"
	done
}

tap_bg() {
	TAP_PIDS="$TAP_PIDS $1"
}

faultserver() {
	_pf=$1
	shift
	python3 "$KVBLEND_ROOT/tests/remote/faultserver.py" "$_pf" "$@" &
	tap_bg $!
	_i=0
	while [ ! -s "$_pf" ] && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
	[ -s "$_pf" ]
}

run() {
	"$@" >"$TAP_TMP/out" 2>"$TAP_TMP/err"
	RUN_RC=$?
	RUN_OUT=$(cat "$TAP_TMP/out")
	RUN_ERR=$(cat "$TAP_TMP/err")
}
