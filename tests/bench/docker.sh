#!/bin/bash
# tests/bench/docker.sh: ctx:docker_logs of a 100,000-line container log filtered for one
# address, next to what an operator does today: `docker logs C 2>&1 | grep -i ADDR`.
# Wall time and peak RSS (GNU time: '%e %M'; for the pipeline, the largest process in it) of
# each, median of R runs. The container prints Postfix-like lines; 5 of them carry the address.
#   tests/bench/docker.sh [LINES] [RUNS]      defaults 100000 and 3; then the MX checks below
#   tests/bench/docker.sh mx                  the MX checks only (MX_RUNS=11)
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
	if [ -s "$work/twin.pid" ]; then kill "$(cat "$work/twin.pid")" 2>/dev/null || true; fi
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

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ---------------------------------------------------------------- the MX-side checks (the lab)
# The ten checks an operator runs on the MX (ec2) when mail does not arrive: its Postfix log
# (the last 500 lines), postconf relay_domains and relay_transport, postqueue -p, the
# container's state, and five trivial commands in the container. Each way is a whole process
# timed from outside (start-up, SSH login, all ten), run in turn, median of MX_RUNS (11):
#   A  runbook: one `runbook lua` process, the lab inventory (ec2 over SSH): ctx:docker_logs,
#      ctx:service_exec x8, ctx:container_state, through the Engine API in a stream-local
#      channel of the SSH session (the lab's sshd allows local forwarding, as an sshd with
#      default settings does).
#   A' runbook against a twin of the lab's sshd on another port that says AllowTcpForwarding no
#      (which OpenSSH applies to stream-local channels too): the docker CLI fallback (one
#      `docker` per check); the same key, host key and user.
#   B  the docker CLI on the MX itself (what an operator logged in on ec2 types)
#   C  OpenSSH, one `ssh ec2 docker ...` per check
# Targets: A within 1.25x of B; A at least 8x faster than C. Needs the lab (tests/lab/lab up).
mx_checks() {
	local lab_env
	lab_env=$("$root/tests/lab/lab" env 2>/dev/null) || { echo "(MX checks skipped: no lab)"; return 0; }
	eval "$(printf '%s\n' "$lab_env" | grep -E '^LAB_(DIR|EC2_ADDR|EC2_SSH_PORT|EC2_SSH_USER|SSH_KEY|SSH_KNOWN_HOSTS|INVENTORY|EC2_DOCKER_HOST|EC2_POSTFIX_CONTAINER)=')"
	local C=$LAB_EC2_POSTFIX_CONTAINER R=${MX_RUNS:-11} port p
	mkdir -p "$work"
	# the twin sshd: the lab's config, another port, forwarding refused
	for _ in $(seq 50); do
		p=$(( 20000 + RANDOM % 20000 ))
		if ! (exec 3<>"/dev/tcp/$LAB_EC2_ADDR/$p") 2>/dev/null; then port=$p; break; fi
	done
	sed -e "s/^ListenAddress .*/ListenAddress $LAB_EC2_ADDR:$port/" -e "s|^PidFile .*|PidFile $work/twin.pid|" \
		-e "s/^AllowTcpForwarding .*/AllowTcpForwarding no/" "$LAB_DIR/sshd/sshd_config" >"$work/twin.conf"
	/usr/sbin/sshd -f "$work/twin.conf" -E "$work/twin.log" || { echo "MX checks: twin sshd failed" >&2; return 1; }
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/$LAB_EC2_ADDR/$port") 2>/dev/null && break; sleep 0.05; done
	sed "s/^\[$LAB_EC2_ADDR\]:$LAB_EC2_SSH_PORT /[$LAB_EC2_ADDR]:$port /" "$LAB_SSH_KNOWN_HOSTS" >"$work/twin_known_hosts"
	sed -e "s/^    port: $LAB_EC2_SSH_PORT\$/    port: $port/" -e "s|^    known_hosts: .*|    known_hosts: $work/twin_known_hosts|" \
		"$LAB_INVENTORY" >"$work/twin.yaml"
	grep -q "port: $port" "$work/twin.yaml" || { echo "MX checks: cannot point the inventory at the twin" >&2; return 1; }
	cat >"$work/mx.lua" <<-'EOF'
	local ctx = require("runbook.context").new { inventory = arg[1] }
	local n = 0
	for _ in assert(ctx:docker_logs("ec2/postfix", { tail = 500 })) do n = n + 1 end
	local function x(argv) local r = assert(ctx:service_exec("ec2/postfix", argv)); assert(r.status == 0, argv[1]) end
	x { "postconf", "-h", "relay_domains" }
	x { "postconf", "-h", "relay_transport" }
	x { "postqueue", "-p" }
	assert(ctx:container_state("ec2/postfix").running)
	x { "cat", "/etc/hostname" }
	x { "cat", "/etc/os-release" }
	x { "stat", "/var/spool/postfix" }
	x { "cat", "/proc/loadavg" }
	x { "stat", "/etc/postfix/main.cf" }
	print("backend " .. require("runbook.prim.docker").backend(ctx, "ec2").how)
	ctx:close()
	EOF
	# the same ten as docker CLI commands; B runs them on the MX, C one ssh login each
	cat >"$work/mx-checks.txt" <<-EOF
	logs --tail 500 $C
	exec $C postconf -h relay_domains
	exec $C postconf -h relay_transport
	exec $C postqueue -p
	inspect --type container $C
	exec $C cat /etc/hostname
	exec $C cat /etc/os-release
	exec $C stat /var/spool/postfix
	exec $C cat /proc/loadavg
	exec $C stat /etc/postfix/main.cf
	EOF
	cat >"$work/mx-cli.sh" <<-EOF
	#!/bin/sh
	export DOCKER_HOST=$LAB_EC2_DOCKER_HOST
	while read -r line; do $DOCKER \$line >/dev/null 2>&1 || exit 1; done <"$work/mx-checks.txt"
	EOF
	cat >"$work/mx-ssh.sh" <<-EOF
	#!/bin/sh
	while read -r line; do
		ssh -n -i "$LAB_SSH_KEY" -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \\
			-o BatchMode=yes -o LogLevel=ERROR -p "$LAB_EC2_SSH_PORT" "$LAB_EC2_SSH_USER@$LAB_EC2_ADDR" \\
			"docker \$line" >/dev/null 2>&1 || exit 1
	done <"$work/mx-checks.txt"
	EOF
	chmod +x "$work/mx-cli.sh" "$work/mx-ssh.sh"
	now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
	local a=() a2=() b=() c=() t0 i
	for i in $(seq "$R"); do
		t0=$(now_ms); env RUNBOOK_HOME="$root" "$bin" lua "$work/mx.lua" "$LAB_INVENTORY" >"$work/mx.out" ||
			{ echo "MX checks: runbook failed" >&2; return 1; }
		a+=($(( $(now_ms) - t0 )))
		t0=$(now_ms); env RUNBOOK_HOME="$root" "$bin" lua "$work/mx.lua" "$work/twin.yaml" >"$work/mx-cli.out" ||
			{ echo "MX checks: runbook (twin sshd, forwarding off) failed" >&2; return 1; }
		a2+=($(( $(now_ms) - t0 )))
		t0=$(now_ms); "$work/mx-cli.sh" || { echo "MX checks: docker CLI failed" >&2; return 1; }
		b+=($(( $(now_ms) - t0 )))
		t0=$(now_ms); "$work/mx-ssh.sh" || { echo "MX checks: ssh failed" >&2; return 1; }
		c+=($(( $(now_ms) - t0 )))
	done
	kill "$(cat "$work/twin.pid")" 2>/dev/null || true
	grep -q '^backend Engine API' "$work/mx.out" || { echo "MX checks: A did not get the Engine API back end" >&2; return 1; }
	grep -q '^backend Engine API' "$work/mx-cli.out" && { echo "MX checks: A' did not get the CLI fallback" >&2; return 1; }
	local ma ma2 mb mc
	ma=$(printf '%s\n' "${a[@]}" | median) mb=$(printf '%s\n' "${b[@]}" | median) mc=$(printf '%s\n' "${c[@]}" | median)
	ma2=$(printf '%s\n' "${a2[@]}" | median)
	printf '\nthe ten MX-side checks (log, postconf x2, postqueue, state, 5 commands), whole process, median of %d\n' "$R"
	printf '  %-52s %8s\n' "" "wall ms"
	printf '  %-52s %8s\n' "A runbook (one SSH session, Engine API through it)" "$ma"
	printf '  %-52s %8s\n' "A' runbook, sshd with forwarding off (the CLI)" "$ma2"
	printf '  %-52s %8s\n' "B docker CLI on the MX itself" "$mb"
	printf '  %-52s %8s\n' "C OpenSSH, one ssh per check" "$mc"
	awk -v a="$ma" -v b="$mb" -v c="$mc" 'BEGIN { printf "  A/B = %.2fx (target at most 1.25x); C/A = %.1fx (target at least 8x)\n", a / b, c / a }'
}

if [ "${1:-}" = mx ]; then mx_checks; exit; fi

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
mx_checks
