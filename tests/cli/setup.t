#!/bin/bash
# setup.t — .ci/setup waits for the dpkg lock (bounded) instead of failing when
# another apt holds it. apt-get, dpkg-query and id are stand-ins on PATH: the
# real package database is never touched.
. "$(dirname "$0")/tap.sh"
cd "$KVBLEND_ROOT" || exit 1
stub=$TAP_TMP/bin
mkdir -p "$stub"
# One package is missing; everything else is installed.
cat >"$stub/dpkg-query" <<'EOF'
#!/bin/sh
for a; do p=$a; done
[ "$p" = mandoc ] && { printf 'un '; exit 0; }
printf 'ii '
EOF
cat >"$stub/id" <<'EOF'
#!/bin/sh
echo 0
EOF
# apt-get: the lock is held by someone else; only a caller that waits for it
# (DPkg::Lock::Timeout) gets it, as apt does when the other apt finishes.
cat >"$stub/apt-get" <<'EOF'
#!/bin/sh
echo "$*" >>"$APT_LOG"
case " $* " in
*" DPkg::Lock::Timeout="[1-9]*) exit 0 ;;
esac
echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2
exit 100
EOF
chmod +x "$stub"/*
export APT_LOG=$TAP_TMP/apt.log
run env PATH="$stub:$PATH" bash .ci/setup
is "$RUN_RC" 0 "setup succeeds while another apt holds the dpkg lock (it waits)"
like "$RUN_ERR" "*installing mandoc*waiting up to 300 s*" "it says it may wait, and how long"
is "$(grep -c 'DPkg::Lock::Timeout=300' "$APT_LOG")" 2 "apt-get update and install both wait, 300 s at most"
run env PATH="$stub:$PATH" KVBLEND_SETUP_LOCK_TIMEOUT=7 bash .ci/setup
like "$(tail -n 1 "$APT_LOG")" "*DPkg::Lock::Timeout=7 *install*mandoc*" "KVBLEND_SETUP_LOCK_TIMEOUT sets the bound"
done_testing
