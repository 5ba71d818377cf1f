#!/bin/bash
# tests/bench/sql.sh: SQL round trip of runbook.sql on one kept connection (prepared
# `SELECT ? + 1`, median of N) next to what an operator does today: one `mariadb -e` process per
# query (median of M). Also the connect cost of each.
#   tests/bench/sql.sh [N] [M]       N runbook queries (default 2000), M CLI runs (default 50)
#   BENCH_SQL_TARGET=lab tests/bench/sql.sh   measure against the lab's MariaDB (127.0.0.20:3306)
# Default target: a private throwaway mariadbd on 127.0.0.32 (tests/lib/fixture_mariadb.sh).
# Depends on: ./runbook (make), mariadb-server, mariadb-client.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RUNBOOK:-$root/runbook}
N=${1:-2000}
M=${2:-50}
work=/tmp/runbook-test-sqlbench-$$
mkdir -p "$work"
cleanup() {
	[ "${BENCH_SQL_TARGET:-}" = lab ] || "$root/tests/lib/fixture_mariadb.sh" stop "$work/db" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ "${BENCH_SQL_TARGET:-}" = lab ]; then
	eval "$("$root/tests/lab/lab" env | grep -E '^LAB_DB_')"
	host=$LAB_DB_HOST port=$LAB_DB_PORT user=$LAB_DB_USER db=$LAB_DB_NAME pwfile=$LAB_DB_PASSWORD_FILE
	target="lab MariaDB $host:$port"
else
	eval "$("$root/tests/lib/fixture_mariadb.sh" start "$work/db" | sed 's/^/DB_/')"
	host=127.0.0.32 port=$DB_PORT user=$DB_USER db=$DB_DATABASE pwfile=$DB_PASSWORD_FILE
	target="private mariadbd $host:$port"
fi
# The CLI reads the password from a 0600 option file, never from its command line.
umask 077
printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword=%s\n' "$host" "$port" "$user" "$(cat "$pwfile")" >"$work/client.cnf"

cat >"$work/bench.lua" <<'EOF'
local sql = require "runbook.sql"
local core = require "runbook.core"
local host, port, user, db, pwfile, n = arg[1], tonumber(arg[2]), arg[3], arg[4], arg[5], tonumber(arg[6])
local f = assert(io.open(pwfile)); local pw = f:read("l"); f:close()
local function median(t) table.sort(t); return t[(#t + 1) // 2] end
local conns = {}
for i = 1, 20 do
  local t0 = core.now()
  local c = assert(sql.connect { host = host, port = math.tointeger(port), user = user, password = pw, database = db })
  conns[i] = (core.now() - t0) * 1000
  c:close()
end
local c = assert(sql.connect { host = host, port = math.tointeger(port), user = user, password = pw, database = db })
local times = {}
for i = 1, n do
  local t0 = core.now()
  local r = assert(c:query("SELECT ? + 1 AS v", { i }))
  times[i] = (core.now() - t0) * 1000
  assert(r.rows[1].v == i + 1)
end
c:close()
local total = 0
for _, v in ipairs(times) do total = total + v end
io.write(("%.3f %.3f %.3f\n"):format(median(times), total / n, median(conns)))
EOF

read -r rb_median rb_mean rb_connect < <("$bin" lua "$work/bench.lua" "$host" "$port" "$user" "$db" "$pwfile" "$N")

cli_times=()
for i in $(seq "$M"); do
	t0=$(date +%s%N)
	out=$(mariadb --defaults-extra-file="$work/client.cnf" --batch --skip-column-names "$db" -e "SELECT $i + 1")
	t1=$(date +%s%N)
	[ "$out" = "$((i + 1))" ] || { echo "mariadb CLI returned '$out'" >&2; exit 1; }
	cli_times+=($(( (t1 - t0) / 1000 )))
done
cli_median=$(printf '%s\n' "${cli_times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]/1000}')

echo "sql round trip against $target"
printf '  %-62s %10s\n' "what" "median ms"
printf '  %-62s %10s\n' "runbook.sql, kept connection, prepared SELECT ? + 1 (n=$N)" "$rb_median"
printf '  %-62s %10s\n' "runbook.sql, connect + auth (n=20)" "$rb_connect"
printf '  %-62s %10s\n' "mariadb -e 'SELECT i + 1', one process per query (n=$M)" "$cli_median"
awk -v a="$cli_median" -v b="$rb_median" 'BEGIN { if (b > 0) printf "  kept-connection query is %.0fx faster than a CLI process per query\n", a / b }'
