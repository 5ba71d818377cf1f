#!/bin/bash
# Nothing left behind: `lab down` returns the machine to what it was before `lab up`, even when
# it comes while faults are active (a test killed mid-fault): the routing policy (`ip rule`), the
# routes (`ip route show table all`), addresses, users and groups, mounts, and processes are
# compared as snapshots taken before `lab up` and after `lab down`. The lab is left up and healthy.
. "$(dirname "$0")/../lab/tap.sh"

# snapshot DIR: the machine state the lab may touch. Mounts and processes of other tests'
# private daemons (/tmp/runbook-test-*) are not the lab's and may come and go meanwhile.
snapshot() {
	local d=$1
	mkdir -p "$d"
	ip rule show >"$d/rules"
	ip route show table all >"$d/routes"
	ip -4 route show table all >"$d/routes4"
	ip addr show | sed -E 's/ (valid_lft|preferred_lft) [^ ]+//g' >"$d/addrs"
	cat /etc/passwd >"$d/passwd"
	cat /etc/group >"$d/group"
	awk '{ print $5, $9, $10 }' /proc/self/mountinfo | grep -v ' /tmp/runbook-test-\|^/tmp/runbook-test-' | sort >"$d/mounts"
	# processes of the lab: anything naming its directory, run by its users, in its cgroups,
	# or listening on its addresses (zombies aside: PID 1 here does not reap them; tests
	# waiting for LAB_LOCK name it on their command lines and are not the lab's)
	{
		ps -eo pid=,stat=,user:32=,args= | awk '$2 !~ /^Z/' |
			grep -E "runbook-lab|^ *[0-9]+ +[^ ]+ +(rbops|vmail) " | grep -v -E "grep -E|ps -eo|\.testlock" |
			awk '{ $1 = ""; $2 = ""; print }'
		cat /sys/fs/cgroup/runbook-lab-*/cgroup.procs /sys/fs/cgroup/*/runbook-lab-*/cgroup.procs 2>/dev/null | sed 's/^/cgroup /'
		ss -Hltnu 2>/dev/null | awk '{ print $5 }' | grep -E '^127\.0\.0\.(10|20|53|99|30):' | sed 's/^/listening /'
	} | sort >"$d/procs"
	[ -d /run/sshd ] && echo "/run/sshd exists" >"$d/misc" || echo "no /run/sshd" >"$d/misc"
}
same() { # NAME FILE
	local out
	out=$(diff "$SNAP/before/$2" "$SNAP/after/$2")
	ok $? "after lab down, $1 as before lab up" || diag "$out"
}

SNAP=$(mktemp -d /tmp/runbook-test-labdown.XXXXXX)
trap 'rm -rf "$SNAP"' EXIT

o=$("$LAB" down 2>&1); ok $? "lab down" || diag "$o"
snapshot "$SNAP/before"
is "$(ip rule show | grep -c 'lookup 220')" 0 "no rule looks up the lab's table 220 after lab down"
is "$(cat "$SNAP/before/procs")" "" "no lab process, listener or cgroup member after lab down"

o=$(LAB_REPAIR=1 "$LAB" up 2>&1); ok $? "lab up from nothing" || diag "$o"
like "$o" "one delivery [0-9.]+ s" "lab up proved one delivery"
# break what leaves traces on the machine: policy routing (twice: the link and a stuck
# queue), the DNS zone, the Maildir owner, the disk filler
o=$("$LAB" fault dell-unreachable queue-stuck 2>&1); ok $? "lab fault dell-unreachable queue-stuck" || diag "$o"
o=$("$LAB" fault mx-wrong maildir-permissions 2>&1); ok $? "lab fault mx-wrong maildir-permissions" || diag "$o"
o=$("$LAB" fault disk-almost-full 2>&1); ok $? "lab fault disk-almost-full" || diag "$o"
like "$(ip rule show)" "from all to 127\.0\.0\.20 uidrange [0-9]+-[0-9]+ lookup 220" "the uidrange rule is there, as ip rule prints it"
like "$("$LAB" faults --active | tr '\n' ' ')" "dell-unreachable.*mx-wrong.*maildir-permissions.*queue-stuck.*disk-almost-full" \
	"lab faults --active: the real state shows every fault"
# a test killed now: nothing healed, then the lab taken down
o=$("$LAB" down 2>&1); ok $? "lab down with five faults active" || diag "$o"
snapshot "$SNAP/after"
same "the routing policy (ip rule)" rules
same "the routes (ip route show table all)" routes
same "the addresses" addrs
same "/etc/passwd" passwd
same "/etc/group" group
same "the mounts" mounts
same "the lab's processes" procs
same "/run/sshd" misc

# leave the lab up and healthy for the tests after this one
o=$(LAB_REPAIR=1 "$LAB" heal all 2>&1); ok $? "lab heal all brings the lab back" || diag "$o"
like "$o" "delivery: [0-9.]+ s" "heal all proved one delivery"
is "$("$LAB" faults --active)" "" "no fault active at the end"
delivered "$LAB_USER" "after down and up"

done_testing
