#!/bin/bash
# tests/bench/docker.sh: ctx:docker_logs of a 100,000-line container log filtered for one
# address, next to what an operator does today: `docker logs C 2>&1 | grep -i ADDR`.
# Wall time and peak RSS (GNU time: '%e %M'; for the pipeline, the largest process in it) of
# each, median of R runs. The container prints Postfix-like lines; 5 of them carry the address.
#   tests/bench/docker.sh [LINES] [RUNS]      defaults 100000 and 3
# Target: a private throwaway dockerd under /tmp/runbook-test-docker-$$ (LAB-NOTES flags).
# Depends on: ./runbook (make), docker.io, GNU time (/usr/bin/time).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RUNBOOK:-$root/runbook}
LINES=${1:-100000}
RUNS=${2:-3}
ADDR=needle@example.test
work=/tmp/runbook-test-docker-$$
sock=$work/docker.sock
DOCKER=$(command -v /usr/bin/docker || command -v docker)
dk() { "$DOCKER" -H "unix://$sock" "$@"; }

cleanup() {
	if [ -s "$work/dockerd.pid" ]; then
		ids=$(dk ps -aq 2>/dev/null || true)
		[ -z "$ids" ] || dk rm -f $ids >/dev/null 2>&1 || true
		pid=$(cat "$work/dockerd.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	awk -v d="$work" 'index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/data" "$work/exec" "$work/empty"
setsid dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
	--data-root="$work/data" --exec-root="$work/exec" --pidfile="$work/dockerd.pid" \
	--host="unix://$sock" >"$work/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 200); do dk version >/dev/null 2>&1 && break; sleep 0.1; done
dk version >/dev/null || { echo "dockerd did not start" >&2; tail "$work/dockerd.log" >&2; exit 1; }
tar -C "$work/empty" -c . | dk import - runbook-bench/empty:1 >/dev/null
dk run -d --name bench --network none -v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro -v /bin:/bin:ro \
	runbook-bench/empty:1 /bin/sh -c "i=0; while [ \$i -lt $LINES ]; do
if [ \$((i % ($LINES / 5))) -eq 17 ]; then a=$ADDR; else a=user\$i@example.test; fi
echo \"Nov 28 12:00:00 mx postfix/smtp[4242]: 4Q\$i: to=<\$a>, relay=127.0.0.20[127.0.0.20]:2525, delay=0.12, delays=0.01/0/0.01/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)\"
i=\$((i+1)); done" >/dev/null
for _ in $(seq 600); do [ "$(dk inspect -f '{{.State.Running}}' bench)" = false ] && break; sleep 0.1; done
size=$(du -k "$(dk inspect -f '{{.LogPath}}' bench)" | cut -f1)

cat >"$work/inventory.yaml" <<EOF
defaults: { timeout: 60s, connect_timeout: 5s }
hosts:
  box:
    transport: local
    docker: { socket: $sock }
    services:
      postfix: { container: bench, kind: postfix }
EOF
cat >"$work/bench.lua" <<'EOF'
local context = require "runbook.context"
local ctx = context.new { inventory = arg[1] }
local logs = assert(ctx:docker_logs("box/postfix", { grep = arg[2] }))
local n = 0
for rec in logs do n = n + 1; io.write(rec.line, "\n") end
io.stderr:write(("read %d matched %d\n"):format(logs.read, logs.matched))
EOF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rb_t=() rb_m=() cli_t=() cli_m=()
for _ in $(seq "$RUNS"); do
	set -- $(/usr/bin/time -f '%e %M' -o "$work/t" env RUNBOOK_HOME="$root" "$bin" lua "$work/bench.lua" \
		"$work/inventory.yaml" "$ADDR" >"$work/rb.out" 2>"$work/rb.err"; cat "$work/t")
	rb_t+=("$1") rb_m+=("$2")
	set -- $(/usr/bin/time -f '%e %M' -o "$work/t" sh -c "'$DOCKER' -H 'unix://$sock' logs bench 2>&1 | grep -i '$ADDR'" \
		>"$work/cli.out"; cat "$work/t")
	cli_t+=("$1") cli_m+=("$2")
done
rb_lines=$(wc -l <"$work/rb.out") cli_lines=$(wc -l <"$work/cli.out")
[ "$rb_lines" = "$cli_lines" ] || { echo "MISMATCH: runbook found $rb_lines lines, grep $cli_lines" >&2; exit 1; }

printf 'docker logs of %d lines (%d KiB json-file log), filtered for %s: %s lines, median of %d\n' \
	"$LINES" "$size" "$ADDR" "$rb_lines" "$RUNS"
printf '  %-40s %10s %14s\n' "" "wall s" "peak RSS KiB"
printf '  %-40s %10s %14s\n' "runbook ctx:docker_logs{grep=ADDR}" \
	"$(printf '%s\n' "${rb_t[@]}" | median)" "$(printf '%s\n' "${rb_m[@]}" | median)"
printf '  %-40s %10s %14s\n' "docker logs C 2>&1 | grep -i ADDR" \
	"$(printf '%s\n' "${cli_t[@]}" | median)" "$(printf '%s\n' "${cli_m[@]}" | median)"
base=$( /usr/bin/time -f '%M' -o "$work/t" env RUNBOOK_HOME="$root" "$bin" lua /dev/null; cat "$work/t")
printf '  (runbook doing nothing: %s KiB peak RSS)\n' "$base"
