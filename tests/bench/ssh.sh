#!/bin/bash
# tests/bench/ssh.sh: per-call latency of one remote command (`true`) on the lab's ec2 sshd,
# runbook's libssh2 session (reused, TCP_NODELAY) next to OpenSSH, median of N calls each:
#   runbook.ssh  sess:exec("true")             raw module, one session for all calls
#   ctx:ssh_exec {"true"}                      the runbook-facing call: trace event, quoting,
#                                              and the remote `timeout -k 2 N` wrapper
#   ssh HOST true                              OpenSSH, a new connection per call
#   ssh -S CTL HOST true                       OpenSSH with a ControlMaster (multiplexed)
#   tests/bench/ssh.sh [N]                     default N=200 (OpenSSH without master: N/10)
# Target: runbook's reused session at most half the ControlMaster figure.
# Depends on: ./runbook (make), the lab (tests/lab/lab up), openssh-client.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RUNBOOK:-$root/runbook}
N=${1:-200}
"$root/tests/lab/lab" up >/dev/null 2>&1 || echo "bench: lab up reported a problem; using its sshd if it answers" >&2
eval "$("$root/tests/lab/lab" env | grep -E '^LAB_(EC2_ADDR|EC2_SSH_PORT|EC2_SSH_USER|SSH_KEY|SSH_KNOWN_HOSTS|INVENTORY)=')"
work=/tmp/runbook-bench-ssh-$$
mkdir -p "$work"
ctl=$work/ctl
cleanup() {
	ssh -S "$ctl" -O exit -p "$LAB_EC2_SSH_PORT" "$LAB_EC2_SSH_USER@$LAB_EC2_ADDR" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

SSHOPTS=(-i "$LAB_SSH_KEY" -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" -o StrictHostKeyChecking=yes
	-o BatchMode=yes -o LogLevel=ERROR -p "$LAB_EC2_SSH_PORT")
TARGET=$LAB_EC2_SSH_USER@$LAB_EC2_ADDR

now_us() { local t; t=$(date +%s%N); echo $((t / 1000)); }
median_ms() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'; }

# runbook: the raw module and the ctx call, timed inside the process (no process start-up)
cat > "$work/bench.lua" <<EOF
local ssh = require "runbook.ssh"
local core = require "runbook.core"
local N = $N
local function median(t) table.sort(t) local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2 end
local s = assert(ssh.connect { host = "$LAB_EC2_ADDR", port = $LAB_EC2_SSH_PORT, user = "$LAB_EC2_SSH_USER",
  key = "$LAB_SSH_KEY", known_hosts = "$LAB_SSH_KNOWN_HOSTS", timeout = 5 })
local raw = {}
for i = 1, N do local t0 = core.now(); assert(s:exec("true").status == 0); raw[i] = (core.now() - t0) * 1000 end
s:close()
local inv = assert(require("runbook.inventory").validate {
  hosts = { ec2 = { transport = "ssh", address = "$LAB_EC2_ADDR", port = $LAB_EC2_SSH_PORT,
    user = "$LAB_EC2_SSH_USER", key = "$LAB_SSH_KEY", known_hosts = "$LAB_SSH_KNOWN_HOSTS" } } })
local ctx = require("runbook.context").new { inventory = inv }
assert(ctx:ssh_exec("ec2", { "true" }, { read_only = true }))   -- connect outside the timing
local wrapped = {}
for i = 1, N do local t0 = core.now(); assert(ctx:ssh_exec("ec2", { "true" }, { read_only = true }).status == 0)
  wrapped[i] = (core.now() - t0) * 1000 end
ctx:close()
print(("%.2f %.2f"):format(median(raw), median(wrapped)))
EOF
read -r raw_ms ctx_ms < <(RUNBOOK_TEST=1 "$bin" lua "$work/bench.lua")

# OpenSSH, a new connection for every call
M=$(( N / 10 > 5 ? N / 10 : 5 ))
for _ in $(seq "$M"); do
	t0=$(now_us); ssh "${SSHOPTS[@]}" "$TARGET" true; echo $(( $(now_us) - t0 ))
done > "$work/plain"
plain_ms=$(median_ms < "$work/plain")

# OpenSSH with a ControlMaster
ssh "${SSHOPTS[@]}" -o ControlMaster=yes -o ControlPath="$ctl" -o ControlPersist=60 -fN "$TARGET"
for _ in $(seq "$N"); do
	t0=$(now_us); ssh "${SSHOPTS[@]}" -o ControlPath="$ctl" "$TARGET" true; echo $(( $(now_us) - t0 ))
done > "$work/master"
master_ms=$(median_ms < "$work/master")

printf 'ssh: one remote `true` on %s:%s, median per call\n' "$LAB_EC2_ADDR" "$LAB_EC2_SSH_PORT"
printf '  %-52s %8s ms  (%d calls)\n' "runbook.ssh sess:exec, reused libssh2 session" "$raw_ms" "$N"
printf '  %-52s %8s ms  (%d calls)\n' "runbook ctx:ssh_exec (trace, quote, remote timeout)" "$ctx_ms" "$N"
printf '  %-52s %8s ms  (%d calls)\n' "OpenSSH ssh HOST true (new connection each)" "$plain_ms" "$M"
printf '  %-52s %8s ms  (%d calls)\n' "OpenSSH ssh -S CTL HOST true (ControlMaster)" "$master_ms" "$N"
awk -v r="$ctx_ms" -v m="$master_ms" 'BEGIN {
	printf "  target ctx:ssh_exec <= ControlMaster/2 (%.2f ms): %s\n", m / 2, (r <= m / 2) ? "met" : "NOT met" }'
