#!/bin/sh
# man.t — every man page renders without a warning under mandoc and under groff,
# which man-db uses on Debian (make lint-man runs the same checks).
. "$(dirname "$0")/tap.sh"
cd "$KVBLEND_ROOT" || exit 1
for m in man/*.[1-9]; do
	if command -v mandoc >/dev/null 2>&1; then
		w=$(mandoc -Tlint -Wwarning "$m" 2>&1)
		is "$w" "" "$m: mandoc -Tlint"
	else
		skip "mandoc is not installed"
	fi
	if command -v groff >/dev/null 2>&1; then
		w=$(groff -mandoc -Tutf8 -ww -z "$m" 2>&1)
		is "$w" "" "$m: groff -mandoc -ww"
	else
		skip "groff is not installed"
	fi
done
done_testing
