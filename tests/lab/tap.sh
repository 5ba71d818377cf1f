# tests/lab/tap.sh - TAP and lab helpers for the bash tests tests/sh/lab-*.t (sourced).
# Takes the lab's test lock exclusively (faults must not meet each other), starts from `lab heal
# all` (the lab up and healthy whatever the test before left, one delivery proved), loads `lab
# env` into the shell, and offers: ok is like unlike diag bail done_testing,
# lab_send, wait_maildir, logs_since, wait_log, ssh_ec2, sql, api.
set -uo pipefail

LAB_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB="$LAB_ROOT_DIR/lab"
_tap_n=0
_tap_fail=0


_tap_failing=0
# diag goes to stderr; what explains a failure (the "not ok" line and the diags up to the next
# test) is also appended to RUNBOOK_TEST_FAILLOG when set (make check prints it last)
_tap_faillog() { [ -z "${RUNBOOK_TEST_FAILLOG:-}" ] || printf '%s\n' "$@" >>"$RUNBOOK_TEST_FAILLOG" 2>/dev/null || true; }
diag() {
	printf '%s\n' "$@" | sed 's/^/# /' >&2
	[ "$_tap_failing" = 0 ] || _tap_faillog "$(printf '%s\n' "$@" | sed 's/^/# /')"
}
ok() { # COND-EXIT-STATUS NAME   (use: cmd; ok $? "name")
	_tap_n=$((_tap_n + 1))
	if [ "$1" -eq 0 ]; then
		_tap_failing=0
		echo "ok $_tap_n - $2"
	else
		_tap_failing=1
		echo "not ok $_tap_n - $2"
		_tap_fail=$((_tap_fail + 1))
		_tap_faillog "$0: not ok $_tap_n - $2"
	fi
	return "$1"
}
is() { # GOT WANT NAME
	[ "$1" = "$2" ]; ok $? "$3" || diag "got:  '$1'" "want: '$2'"
}
like() { # STRING ERE NAME
	printf '%s' "$1" | grep -qE -- "$2"; ok $? "$3" || diag "'$(printf '%s' "$1" | tail -c 600)'" "does not match /$2/"
}
unlike() {
	! printf '%s' "$1" | grep -qE -- "$2"; ok $? "$3" || diag "matches /$2/: $(printf '%s' "$1" | grep -E -- "$2" | head -3)"
}
bail() { _tap_faillog "$0: Bail out! $*"; echo "Bail out! $*"; exit 255; }
done_testing() {
	echo "1..$_tap_n"
	diag "$(($(date +%s) - _t_locked)) s with the lab test lock held"
	[ "$_tap_fail" -eq 0 ]
	exit $?
}

[ "$(id -u)" = 0 ] || bail "the mail lab needs root"
eval "$("$LAB" env)"
mkdir -p "$LAB_DIR"
exec 7>>"$LAB_LOCK"
flock -w 900 7 || bail "could not take the lab test lock $LAB_LOCK in 900 s"
_t_locked=$(date +%s)
# holding LAB_LOCK exclusively, nothing else may be breaking the lab: whatever is broken is a
# leftover (a failed or killed test). Start from the healthy lab, proved by one delivery.
_heal_out=$(LAB_REPAIR=1 "$LAB" heal all 2>&1) || bail "lab heal all failed: $(printf '%s' "$_heal_out" | tail -5 | tr '\n' ' ')"
diag "start: $(printf '%s' "$_heal_out" | tr '\n' ';')"

SSH_OPTS=(-i "$LAB_SSH_KEY" -o "UserKnownHostsFile=$LAB_SSH_KNOWN_HOSTS" -o StrictHostKeyChecking=yes
	-o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR -p "$LAB_EC2_SSH_PORT")
# a command on ec2 as the operator runs it: over SSH as rbops (docker finds ec2's socket itself)
ssh_ec2() { timeout 30 ssh "${SSH_OPTS[@]}" "$LAB_EC2_SSH_USER@$LAB_EC2_ADDR" "$@"; }
dell_docker() { timeout 30 docker -H "$LAB_DELL_DOCKER_HOST" "$@"; }
# the dell container of a compose service, found by its labels as the engine does
dell_container() {
	dell_docker ps -a --filter "label=com.docker.compose.project=$LAB_COMPOSE_PROJECT" \
		--filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}
sql() { timeout 20 mariadb --defaults-extra-file="$LAB_DB_DEFAULTS_FILE" --connect-timeout=3 --batch --skip-column-names "$LAB_DB_NAME" -e "$1"; }
api() { # METHOD PATH [JSON-FILE] -> "CODE BODY"
	local out
	if [ -n "${3:-}" ]; then
		out=$(curl -s --noproxy '*' --max-time 10 -X "$1" -H 'Content-Type: application/json' --data-binary "@$3" -w '\n%{http_code}' "$LAB_API_URL$2")
	else
		out=$(curl -s --noproxy '*' --max-time 10 -X "$1" -w '\n%{http_code}' "$LAB_API_URL$2")
	fi
	printf '%s %s\n' "$(printf '%s' "$out" | tail -1)" "$(printf '%s' "$out" | sed '$d')"
}
now_ts() { date +%s.%N; }
rx() { printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g'; } # a string as a literal ERE
# logs of ec2's Postfix since TS, read over SSH like the runbook does
ec2_logs_since() { ssh_ec2 docker logs --since "$1" "$LAB_EC2_POSTFIX_CONTAINER" 2>&1; }
dell_logs_since() { dell_docker logs --since "$2" "$(dell_container "$1")" 2>&1; }
# wait_log ec2|dell:SERVICE SINCE ERE SECONDS -> prints the matching lines
wait_log() {
	local where=$1 since=$2 re=$3 secs=${4:-10} end out
	end=$(($(date +%s) + secs))
	while :; do
		if [ "$where" = ec2 ]; then out=$(ec2_logs_since "$since"); else out=$(dell_logs_since "${where#dell:}" "$since"); fi
		printf '%s\n' "$out" | grep -E -- "$re" && return 0
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.3
	done
}

# lab_send ADDR -> sets QID and MSGID (and SEND_ERR on refusal); returns swaks' verdict
lab_send() {
	MSGID="<t.$(date +%s%N).$$@outside.test>"
	SUBJECT="${2:-lab test} $MSGID"
	local err
	err=$(mktemp)
	QID=$("$LAB" send "$1" --subject "$SUBJECT" --message-id "$MSGID" 2>"$err")
	local rc=$?
	SEND_ERR=$(cat "$err"); rm -f "$err"
	return $rc
}
# wait_maildir MSGID [SECONDS] [USER-DIR] -> prints the path of the stored message file
wait_maildir() {
	local id=$1 secs=${2:-60} dir=${3:-$LAB_VMAIL_DIR} end f
	end=$(($(date +%s) + secs))
	while :; do
		f=$(grep -rlsF -- "Message-Id: $id" "$dir" 2>/dev/null | grep -E '/(new|cur)/' | head -1)
		[ -n "$f" ] && { echo "$f"; return 0; }
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
# proves one delivery end to end: accepted by ec2, stored in the user's Maildir with its headers
delivered() { # ADDR LABEL
	local addr=$1 label=$2 f
	lab_send "$addr" "$label"; ok $? "$label: message to $addr accepted by ec2 (queue id ${QID:-none})" || diag "$SEND_ERR"
	f=$(wait_maildir "$MSGID" 60 "$LAB_VMAIL_DIR/${addr#*@}/${addr%@*}")
	ok $? "$label: stored in the Maildir of $addr" || return 1
	grep -qF "Subject: $SUBJECT" "$f"; ok $? "$label: stored message has its Subject and Message-ID"
}
