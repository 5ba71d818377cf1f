#!/bin/bash
# tests/bench/undelivered.sh: the whole `undelivered` diagnosis on the healthy lab (no --probe):
# wall time (median of N runs), primitive calls and SSH sessions opened per run, next to the
# same core checks done by hand the way the document does them (mariadb CLI queries, dig,
# `ssh ec2 docker logs|grep`, `ssh ec2 docker exec postconf`, `ssh ec2 docker exec postqueue`,
# `docker logs dovecot|grep`), one process each.   Target: under 3 s per diagnosis.
#   tests/bench/undelivered.sh [N]   (default 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RUNBOOK:-$root/runbook}
N=${1:-5}
"$root/tests/lab/lab" up >/dev/null 2>&1 || true
eval "$("$root/tests/lab/lab" env | grep -E '^LAB_[A-Z0-9_]+=' )"
inv=$root/examples/lab.yaml
addr=info@example.test
"$root/tests/lab/lab" send "$addr" >/dev/null 2>&1 || true
work=$(mktemp -d /tmp/runbook-bench-undelivered-XXXXXX)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

for i in $(seq "$N"); do
	t0=$(now)
	"$bin" run undelivered --addr "$addr" -i "$inv" --format json >"$work/run.$i.json" 2>&1 || true
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }' >>"$work/rb.times"
done
calls=$(tail -1 "$work/run.1.json" | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')
sessions=$(grep -c '"op":"ssh.connect"' "$work/run.1.json" || true)
status=$(tail -1 "$work/run.1.json" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')

SSH=(ssh -i "$LAB_SSH_KEY" -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" -o StrictHostKeyChecking=yes -o BatchMode=yes
	-o LogLevel=ERROR -p "$LAB_EC2_SSH_PORT" "$LAB_EC2_SSH_USER@$LAB_EC2_ADDR")
cnf=$LAB_DB_DEFAULTS_FILE   # the lab's 0600 client option file: no password on a command line
DELL=(docker -H "unix://$LAB_DELL_DOCKER_SOCK")
for i in $(seq "$N"); do
	t0=$(now)
	mariadb --defaults-extra-file="$cnf" "$LAB_DB_NAME" -e "SELECT id,name FROM domains WHERE name='example.test'" >/dev/null
	mariadb --defaults-extra-file="$cnf" "$LAB_DB_NAME" -e "SELECT u.email,d.name,u.enabled,u.maildir FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email='$addr'" >/dev/null
	dig +short @"$LAB_DNS_ADDR" -p "$LAB_DNS_PORT" MX example.test >/dev/null
	"${SSH[@]}" "docker logs --since 1h mailserver-postfix 2>&1 | grep -i example.test" >/dev/null || true
	"${SSH[@]}" "docker exec mailserver-postfix postconf relay_domains relay_transport" >/dev/null
	"${SSH[@]}" "docker exec mailserver-postfix postqueue -j" >/dev/null
	"${DELL[@]}" logs --since 1h mailserver-dovecot-1 2>&1 | grep -i example.test >/dev/null || true
	"${DELL[@]}" ps >/dev/null
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }' >>"$work/manual.times"
done
rb=$(median <"$work/rb.times")
man=$(median <"$work/manual.times")
printf '%-58s %10s %8s %10s\n' "undelivered on the healthy lab (median of $N)" "wall s" "calls" "ssh opens"
printf '%-58s %10.3f %8s %10s\n' "runbook run undelivered (verdict: $status)" "$rb" "$calls" "$sessions"
printf '%-58s %10.3f %8s %10s\n' "the core checks by hand (8 CLI processes, 3 ssh logins)" "$man" "8" "3"
awk -v r="$rb" 'BEGIN { if (r < 3) print "target: under 3 s -> met"; else print "target: under 3 s -> NOT met" }'
