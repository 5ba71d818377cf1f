#!/usr/bin/env bash
# install.t: `make install` into a temporary prefix works and the installed binary finds its
# Lua library, its runbooks and its man page without help from the environment.
set -u
root=${RUNBOOK_ROOT:?}
tmp=$(mktemp -d /tmp/runbook-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0; fail=0
ok() { n=$((n+1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
echo "1..8"
make -s -C "$root" install PREFIX=/opt/runbook-test DESTDIR="$tmp" >"$tmp/log" 2>&1; ok $? "make install PREFIX=... DESTDIR=..."
bin="$tmp/opt/runbook-test/bin/runbook"
test -x "$bin"; ok $? "binary installed"
test -s "$tmp/opt/runbook-test/share/man/man1/runbook.1"; ok $? "man page installed"
out=$(cd / && env -u RUNBOOK_HOME -u RUNBOOK_PATH "$bin" list 2>&1)
echo "$out" | grep -q '^undelivered '; ok $? "installed binary lists the installed runbooks"
(cd / && env -u RUNBOOK_HOME -u RUNBOOK_PATH "$bin" check undelivered >/dev/null 2>&1); ok $? "installed binary loads its Lua library and checks a runbook"
(cd / && env -u RUNBOOK_HOME -u RUNBOOK_PATH "$bin" check $(cd "$root/runbooks" && ls *.lua | sed 's/\.lua$//') >"$tmp/check" 2>&1); ok $? "installed binary checks every shipped runbook (their libraries are installed: $(grep -c '^ok' "$tmp/check") ok)"
test -s "$tmp/opt/runbook-test/share/runbook/lua/runbook/api.lua" && (cd / && env -u RUNBOOK_HOME "$bin" doc step 2>&1 | grep -q '^ctx:step(name, fn \[, title\])'); ok $? "the API definitions (api.lua) are installed beside the Lua modules and runbook doc reads them"
out=$(cd / && "$bin" run undelivered --addr 'x; rm -rf /' 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'not a mail address'; ok $? "installed binary validates arguments (exit $rc)"
exit $fail
