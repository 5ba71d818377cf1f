#!/bin/bash
# The faults and stalls of tests/lab/faults-more.sh: for each, `lab fault NAME` leaves the real
# evidence where an operator looks (the reply the sender gets, ec2's Postfix log read over SSH,
# dell's container logs, postqueue -j, postconf/postmap, process states, what a probe with a
# timeout sees), `lab faults --active` finds it from the real state, and `lab heal NAME` with the
# bookkeeping deleted (as after a killed test) puts back the exact configuration (sha256 of
# ec2's /etc/postfix and dell's dovecot.conf), the same containers, and delivery.
# FM_ONLY="name ..." runs only those faults (while developing). Timings go to the TAP diagnostics.
. "$(dirname "$0")/../lab/tap.sh"

U=$LAB_USER
P=postmaster@example.test
UDIR=$LAB_VMAIL_DIR/example.test/info
PDIR=$LAB_VMAIL_DIR/example.test/postmaster
re_u=${U//./\\.}
re_p=${P//./\\.}
EC2=$LAB_EC2_POSTFIX_CONTAINER
TIMINGS=""
CURRENT=""

ms() { echo $(($(date +%s%N) / 1000000)); }
want() { [ -z "${FM_ONLY:-}" ] && return 0; case " $FM_ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
ec2x() { ssh_ec2 docker exec "$EC2" "$@"; }
# everything a heal must put back exactly: ec2's /etc/postfix (every file), dell's Dovecot
# configuration, and which containers run since when
fingerprint() {
	(cd "$LAB_DIR/ec2/postfix/etc" && find . -type f ! -name '.*' -print0 | sort -z | xargs -0 sha256sum)
	sha256sum "$LAB_DIR/dell/dovecot/etc/dovecot.conf"
	timeout 20 docker -H "$LAB_EC2_DOCKER_HOST" ps -a --format '{{.Names}} {{.State}}'
	timeout 20 docker -H "$LAB_DELL_DOCKER_HOST" ps -a --format '{{.Names}} {{.State}}'
	timeout 20 docker -H "$LAB_EC2_DOCKER_HOST" inspect -f '{{.Name}} {{.State.StartedAt}}' "$EC2"
	timeout 20 docker -H "$LAB_DELL_DOCKER_HOST" inspect -f '{{.Name}} {{.State.StartedAt}}' $(dell_docker ps -aq)
}
# stalled PID...: every pid is stopped (state T in /proc/PID/stat, what ps shows as T)
pstate() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }
all_stopped() { local p; [ $# -gt 0 ] || return 1; for p; do [ "$(pstate "$p")" = T ] || return 1; done; }
# the pids of a dell container's processes, as `docker top` would list them (read via /proc, as
# docker itself may be the stalled one): CONTAINER-ID-PREFIX-less, by executable
dell_procs() { # EXE-PREFIX
	local p e
	for p in $(cat /sys/fs/cgroup/*/runbook-lab-dell/*/cgroup.procs 2>/dev/null | sort -un); do
		e=$(readlink "/proc/$p/exe" 2>/dev/null) && case $e in "$1"*) echo "$p" ;; esac
	done
}
# pids_by_arg ARG: the processes with exactly ARG on their command line (not the grep itself)
pids_by_arg() {
	local f p
	for f in $(grep -lsaF -- "$1" /proc/[0-9]*/cmdline); do
		p=${f#/proc/}; p=${p%/cmdline}
		tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -- "$1" && echo "$p"
	done
}
# silent IP PORT SECS: TCP connect succeeds but not one byte arrives within SECS
silent() {
	local r
	r=$(timeout "$3" bash -c "exec 3<>/dev/tcp/$1/$2 || exit 7; echo connected; head -c 1 <&3 | od -An -c" 2>/dev/null)
	[ "$r" = connected ]
}
greeting() { timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && head -1 <&3" 2>/dev/null | tr -d '\r'; }
queue_json() { ec2x postqueue -j | grep -F "\"queue_id\": \"$1\""; }

begin() { # NAME: the fingerprint before the fault
	CURRENT=$1
	FP0=$(fingerprint)
}
fault() { # NAME...
	local o t
	t=$(ms)
	o=$("$LAB" fault "$@" 2>&1); ok $? "lab fault $*" || diag "$o"
	T_FAULT=$(($(ms) - t))
}
# finish NAME: bookkeeping deleted (a killed test): `lab heal NAME` heals only what active_NAME
# finds in the real state, so "healed" proves active_ true, and a second heal's "not active"
# proves it false; then the exact state is back, and delivery
finish() {
	local n=$1 o t th fp
	rm -rf "$LAB_DIR/faults/$n" "$LAB_DIR/faults/$n.state"
	t=$(ms)
	o=$("$LAB" heal "$n" 2>&1); ok $? "$n: lab heal without bookkeeping (as after a killed test)" || diag "$o"
	th=$(($(ms) - t))
	like "$o" "fault $n healed" "$n: active_ found it in the real state"
	t=$(ms)
	o=$("$LAB" heal "$n" 2>&1); ok $? "$n: a second heal is a no-op ($(($(ms) - t)) ms)" || diag "$o"
	like "$o" "fault $n not active" "$n: active_ is false after heal"
	fp=$(fingerprint)
	[ "$fp" = "$FP0" ]; ok $? "$n: heal restores the exact configuration files and container states" ||
		diag "$(diff <(printf '%s\n' "$FP0") <(printf '%s\n' "$fp"))"
	delivered "$U" "$n healed"
	TIMINGS="$TIMINGS$(printf '%-22s fault %5d ms   heal %5d ms' "$n" "$T_FAULT" "$th")"$'\n'
	CURRENT=""
}
cleanup() { # a failing or interrupted run leaves nothing broken
	[ -n "$CURRENT" ] || return 0
	"$LAB" heal $CURRENT >/dev/null 2>&1 || "$LAB" heal all >/dev/null 2>&1
}
trap cleanup EXIT

# ---------------------------------------------------------------- ec2 configuration faults

if want mx-recipient-refused; then
	begin mx-recipient-refused
	fault mx-recipient-refused
	like "$(ec2x postconf -h smtpd_recipient_restrictions)" "^check_recipient_access hash:/etc/postfix/recipient_access$" \
		"mx-recipient-refused: postconf shows the access table in smtpd_recipient_restrictions"
	is "$(ec2x postmap -q "$U" hash:/etc/postfix/recipient_access)" "550 5.7.1 Access denied" \
		"mx-recipient-refused: postmap -q $U answers the refusal"
	since=$(now_ts)
	lab_send "$U"; [ $? -ne 0 ]; ok $? "mx-recipient-refused: ec2 refuses the message"
	like "$SEND_ERR" "550 5\.7\.1 <$re_u>: Recipient address rejected: Access denied" "mx-recipient-refused: reply 550 5.7.1 Recipient address rejected"
	wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 550 5\.7\.1 <$re_u>: Recipient address rejected: Access denied; from=<sender@outside\.test> to=<$re_u>" 5 >/dev/null
	ok $? "mx-recipient-refused: ec2 log has the NOQUEUE reject line"
	delivered "$P" "mx-recipient-refused: only $U is refused"
	finish mx-recipient-refused
fi

if want alias-rewrite; then
	begin alias-rewrite
	fault alias-rewrite
	is "$(ec2x postmap -q "$U" hash:/etc/postfix/virtual)" "$P" "alias-rewrite: postmap -q $U on virtual_alias_maps gives $P"
	since=$(now_ts)
	lab_send "$U"; ok $? "alias-rewrite: ec2 accepts the message ($QID)"
	wait_log ec2 "$since" "$QID: to=<$re_p>, orig_to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent \(250 2\.0\.0 <$re_p> .* Saved\)" 10 >/dev/null
	ok $? "alias-rewrite: ec2 log status=sent to=<$P>, orig_to=<$U>"
	wait_maildir "$MSGID" 10 "$PDIR" >/dev/null; ok $? "alias-rewrite: the message is in $P's Maildir"
	wait_maildir "$MSGID" 1 "$UDIR" >/dev/null; [ $? -ne 0 ]; ok $? "alias-rewrite: and not in $U's"
	finish alias-rewrite
fi

if want size-limit; then
	begin size-limit
	since=$(now_ts)
	fault size-limit
	q1=$(cat "$LAB_DIR/faults/size-limit.state/queue_id" 2>/dev/null) m1=$(cat "$LAB_DIR/faults/size-limit.state/message_id" 2>/dev/null)
	like "$q1" "^[0-9A-F]+$" "size-limit: the fault sent a large message ($q1)"
	like "$(grep -E '^ *quota_max_mail_size' "$LAB_DIR/dell/dovecot/etc/dovecot.conf")" "quota_max_mail_size = 65536" \
		"size-limit: dovecot.conf has quota_max_mail_size = 65536"
	wait_log ec2 "$since" "$q1: from=<sender@outside\.test>, size=[0-9]{6,}, nrcpt=1" 10 >/dev/null
	ok $? "size-limit: ec2 accepted it (size over 100000 bytes)"
	wait_log ec2 "$since" "$q1: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 451 4\.2\.0 <$re_u> Mail size is larger than the maximum size allowed by server configuration \(in reply to end of DATA command\)\)" 10 >/dev/null
	ok $? "size-limit: ec2 log status=deferred, 451 4.2.0 Mail size is larger than the maximum size"
	wait_log dell:dovecot "$since" "lmtp\($re_u\).*msgid=$(rx "$m1"): save failed to INBOX: Mail size is larger than the maximum size allowed by server configuration" 5 >/dev/null
	ok $? "size-limit: dovecot log: save failed to INBOX: Mail size is larger ..."
	like "$(queue_json "$q1")" '"queue_name": "deferred".*Mail size is larger than the maximum size' "size-limit: postqueue -j: deferred, with the reason"
	delivered "$U" "size-limit: a small message still arrives"
	finish size-limit
	wait_maildir "$m1" 15 "$UDIR" >/dev/null; ok $? "size-limit: the waiting large message is delivered after heal"
fi

if want mail-loop; then
	begin mail-loop
	fault mail-loop
	is "$(ec2x postmap -q example.test hash:/etc/postfix/transport_relay)" "smtp:[127.0.0.10]:25" "mail-loop: postmap -q example.test on transport_maps: the MX itself"
	like "$(ec2x postconf -h transport_maps)" "hash:/etc/postfix/transport_relay" "mail-loop: postconf transport_maps"
	since=$(now_ts)
	lab_send "$U"; ok $? "mail-loop: ec2 accepts the message ($QID)"
	wait_log ec2 "$since" "$QID: to=<$re_u>, relay=none, .*dsn=5\.4\.6, status=bounced \(mail for 127\.0\.0\.10 loops back to myself\)" 10 >/dev/null
	ok $? "mail-loop: ec2 log status=bounced (mail for 127.0.0.10 loops back to myself)"
	finish mail-loop
fi

if want transport-unavailable; then
	begin transport-unavailable
	fault transport-unavailable
	is "$(ec2x postmap -q example.test hash:/etc/postfix/transport)" "amavisfeed:[127.0.0.1]:10024" "transport-unavailable: transport_maps names transport amavisfeed"
	ec2x postconf -M amavisfeed/unix 2>&1 | grep -q '^amavisfeed'; [ $? -ne 0 ]; ok $? "transport-unavailable: master.cf has no amavisfeed service"
	since=$(now_ts)
	lab_send "$U"; ok $? "transport-unavailable: ec2 accepts the message ($QID)"
	q1=$QID m1=$MSGID
	wait_log ec2 "$since" "qmgr\[[0-9]+\]: warning: connect to transport private/amavisfeed: No such file or directory" 10 >/dev/null
	ok $? "transport-unavailable: ec2 log: qmgr cannot connect to transport private/amavisfeed"
	wait_log ec2 "$since" "$q1: to=<$re_u>, relay=none, .*dsn=4\.3\.0, status=deferred \(mail transport unavailable\)" 10 >/dev/null
	ok $? "transport-unavailable: ec2 log status=deferred (mail transport unavailable)"
	like "$(queue_json "$q1")" '"queue_name": "deferred".*"delay_reason": "mail transport unavailable"' "transport-unavailable: postqueue -j: deferred, mail transport unavailable"
	finish transport-unavailable
	wait_maildir "$m1" 15 "$UDIR" >/dev/null; ok $? "transport-unavailable: the waiting message is delivered after heal"
fi

if want tls-required; then
	begin tls-required
	fault tls-required
	is "$(ec2x postconf -h lmtp_tls_security_level)" encrypt "tls-required: postconf lmtp_tls_security_level = encrypt"
	like "$(printf 'LHLO mx.example.test\r\nQUIT\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/$LAB_DELL_ADDR/$LAB_DELL_LMTP_PORT; cat >&3; cat <&3" | tr -d '\r')" \
		"250 PIPELINING" "tls-required: dell's LMTP answers LHLO ..."
	unlike "$(printf 'LHLO mx.example.test\r\nQUIT\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/$LAB_DELL_ADDR/$LAB_DELL_LMTP_PORT; cat >&3; cat <&3")" \
		"STARTTLS" "tls-required: ... without STARTTLS"
	since=$(now_ts)
	lab_send "$U"; ok $? "tls-required: ec2 accepts the message ($QID)"
	q1=$QID m1=$MSGID
	wait_log ec2 "$since" "$q1: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=4\.7\.4, status=deferred \(TLS is required, but was not offered by host 127\.0\.0\.20\[127\.0\.0\.20\]\)" 10 >/dev/null
	ok $? "tls-required: ec2 log status=deferred (TLS is required, but was not offered by host ...)"
	finish tls-required
	wait_maildir "$m1" 15 "$UDIR" >/dev/null; ok $? "tls-required: the waiting message is delivered after heal"
fi

if want storage-insufficient; then
	begin storage-insufficient
	fault storage-insufficient
	minfree=$(ec2x postconf -h queue_minfree)
	free=$(ec2x df -P -B1 /var/spool/postfix | awk 'NR==2 {print $4}')
	[ "${minfree:-0}" -gt "${free:-0}" ]; ok $? "storage-insufficient: queue_minfree ($minfree) above the queue's free space ($free, df in the container)"
	since=$(now_ts)
	lab_send "$U"; [ $? -ne 0 ]; ok $? "storage-insufficient: ec2 refuses the message"
	like "$SEND_ERR" "452 4\.3\.1 Insufficient system storage" "storage-insufficient: reply 452 4.3.1 Insufficient system storage"
	wait_log ec2 "$since" "NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.99\]: 452 4\.3\.1 Insufficient system storage" 5 >/dev/null
	ok $? "storage-insufficient: ec2 log NOQUEUE reject at MAIL FROM"
	wait_log ec2 "$since" "warning: not enough free space in mail queue: [0-9]+ bytes < 1\.5\*message size limit" 5 >/dev/null
	ok $? "storage-insufficient: ec2 log warning: not enough free space in mail queue"
	finish storage-insufficient
fi

if want lookup-failure; then
	begin lookup-failure
	fault lookup-failure
	is "$(ec2x postconf -h relay_recipient_maps)" "hash:/etc/postfix/relay_recipients" "lookup-failure: postconf relay_recipient_maps"
	o=$(ec2x postmap -q "$U" hash:/etc/postfix/relay_recipients 2>&1); [ $? -ne 0 ]; ok $? "lookup-failure: postmap -q fails"
	like "$o" "open database /etc/postfix/relay_recipients\.db: No such file or directory" "lookup-failure: ... the .db was never built"
	since=$(now_ts)
	lab_send "$U"; [ $? -ne 0 ]; ok $? "lookup-failure: ec2 refuses the message (temporarily)"
	like "$SEND_ERR" "451 4\.3\.0 <$re_u>: Temporary lookup failure" "lookup-failure: reply 451 4.3.0 Temporary lookup failure"
	wait_log ec2 "$since" "warning: hash:/etc/postfix/relay_recipients is unavailable\. open database /etc/postfix/relay_recipients\.db: No such file or directory" 5 >/dev/null
	ok $? "lookup-failure: ec2 log: hash:/etc/postfix/relay_recipients is unavailable"
	wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 451 4\.3\.0 <$re_u>: Temporary lookup failure" 5 >/dev/null
	ok $? "lookup-failure: ec2 log NOQUEUE reject 451 4.3.0"
	finish lookup-failure
fi

if want domain-local; then
	begin domain-local
	fault domain-local
	is "$(ec2x postconf -h mydestination)" example.test "domain-local: postconf mydestination = example.test (also in relay_domains)"
	since=$(now_ts)
	lab_send "$U"; [ $? -ne 0 ]; ok $? "domain-local: ec2 refuses the message"
	like "$SEND_ERR" "550 5\.1\.1 <$re_u>: Recipient address rejected: no local mailboxes on this host" "domain-local: reply 550 5.1.1 ... no local mailboxes on this host"
	wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 550 5\.1\.1 <$re_u>: Recipient address rejected: no local mailboxes on this host" 5 >/dev/null
	ok $? "domain-local: ec2 log NOQUEUE reject"
	finish domain-local
fi

# ---------------------------------------------------------------- stalls

if want mx-stall; then
	begin mx-stall
	fault mx-stall
	silent "$LAB_EC2_ADDR" 25 3; ok $? "mx-stall: 127.0.0.10:25 accepts the connection and sends nothing in 3 s"
	is "$(ssh_ec2 docker inspect -f '{{.State.Status}}' "$EC2")" running "mx-stall: the ec2 postfix container is running"
	unlike "$(ec2x postconf -M 2>/dev/null)" "^smtp +inet" "mx-stall: master.cf has no smtp/inet service"
	t=$(ms); o=$(swaks --server "$LAB_EC2_ADDR:25" --local-interface "$LAB_SENDER_ADDR" --to "$U" --timeout 3 --quit-after CONNECT 2>&1)
	like "$o" "Timeout \(3 secs\) waiting for server response" "mx-stall: swaks: timeout waiting for the banner ($(($(ms) - t)) ms)"
	finish mx-stall
	like "$(greeting "$LAB_EC2_ADDR" 25)" "^220 mx\.example\.test ESMTP" "mx-stall: after heal the banner is Postfix's"
fi

if want lmtp-stall; then
	begin lmtp-stall
	fault lmtp-stall
	pids=$(dell_procs /usr/lib/dovecot/lmtp)
	all_stopped $(dell_procs /usr/sbin/dovecot) $pids; ok $? "lmtp-stall: Dovecot's master and lmtp processes are stopped (T)"
	is "$(dell_docker inspect -f '{{.State.Status}}' "$(dell_container dovecot)")" running "lmtp-stall: the dovecot container is running"
	silent "$LAB_DELL_ADDR" "$LAB_DELL_LMTP_PORT" 3; ok $? "lmtp-stall: 127.0.0.20:2525 accepts and sends nothing in 3 s"
	lab_send "$U"; ok $? "lmtp-stall: ec2 accepts the message ($QID)"
	q1=$QID m1=$MSGID
	sleep 3
	wait_maildir "$m1" 1 "$UDIR" >/dev/null; [ $? -ne 0 ]; ok $? "lmtp-stall: not delivered after 3 s"
	like "$(queue_json "$q1")" '"queue_name": "active"' "lmtp-stall: postqueue -j: the message sits in the active queue"
	finish lmtp-stall
	wait_maildir "$m1" 15 "$UDIR" >/dev/null; ok $? "lmtp-stall: the waiting message is delivered after heal"
fi

if want db-stall; then
	begin db-stall
	fault db-stall
	all_stopped $(dell_procs /usr/sbin/mariadbd); ok $? "db-stall: mariadbd is stopped (T)"
	is "$(dell_docker inspect -f '{{.State.Status}}' "$(dell_container mariadb)")" running "db-stall: the mariadb container is running"
	silent "$LAB_DELL_ADDR" "$LAB_DB_PORT" 3; ok $? "db-stall: 127.0.0.20:3306 accepts and sends no handshake in 3 s"
	t=$(ms); e=$(sql "SELECT 1" 2>&1); rc=$?
	[ $rc -ne 0 ]; ok $? "db-stall: the SQL check fails ($(($(ms) - t)) ms)"
	like "$e" "Lost connection to (MySQL |MariaDB )?server at 'handshake: reading initial communication packet'" "db-stall: ... waiting for the handshake"
	t=$(ms); a=$(curl -s --noproxy '*' --max-time 4 -o /dev/null -w '%{http_code}' "$LAB_API_URL/api/health"); rc=$?
	[ $rc -eq 28 ]; ok $? "db-stall: the API's health check does not answer in 4 s (curl $rc, $(($(ms) - t)) ms)"
	finish db-stall
	like "$(api GET /api/health)" "^200 " "db-stall: the API answers again"
fi

if want dns-stall; then
	begin dns-stall
	fault dns-stall
	all_stopped $(pids_by_arg "--conf-file=$LAB_DIR/dns/dnsmasq.conf"); ok $? "dns-stall: dnsmasq is stopped (T)"
	t=$(ms); o=$(dig +time=2 +tries=1 @"$LAB_DNS_ADDR" MX example.test 2>&1); rc=$?
	is "$rc" 9 "dns-stall: dig MX example.test: no reply ($(($(ms) - t)) ms)"
	like "$o" "timed out" "dns-stall: ... connection timed out"
	finish dns-stall
	like "$(dig +time=2 +tries=1 +short @"$LAB_DNS_ADDR" MX example.test)" "^10 mx\.example\.test\.$" "dns-stall: dig answers again"
fi

for h in ec2 dell; do
	want docker-stall-$h || continue
	begin docker-stall-$h
	fault docker-stall-$h
	all_stopped $(pids_by_arg "--pidfile=$LAB_DIR/$h/dockerd.pid"); ok $? "docker-stall-$h: $h's dockerd is stopped (T)"
	t=$(ms); o=$(curl -s --max-time 3 --unix-socket "$LAB_DIR/$h/docker.sock" http://docker/_ping 2>&1); rc=$?
	is "$rc" 28 "docker-stall-$h: the Engine API socket accepts, /_ping gets no answer in 3 s ($(($(ms) - t)) ms)"
	if [ $h = ec2 ]; then
		is "$(ssh_ec2 echo reachable)" reachable "docker-stall-ec2: ec2 answers over SSH"
		ssh_ec2 timeout 4 docker ps >/dev/null 2>&1; is "$?" 124 "docker-stall-ec2: ... but docker ps there hangs (timeout 4)"
	else
		timeout 4 docker -H "$LAB_DELL_DOCKER_HOST" ps >/dev/null 2>&1; is "$?" 124 "docker-stall-dell: docker ps hangs (timeout 4)"
	fi
	greeting "$LAB_EC2_ADDR" 25 | grep -q '^220 '; ok $? "docker-stall-$h: the containers keep running (ec2 greets)"
	finish docker-stall-$h
done

# ---------------------------------------------------------------- heal all after a killed test

# a stall and a config fault together, bookkeeping lost: heal all SIGCONTs dockerd first
# (FAULTS_FIRST), then removes the access table, and proves delivery
if want heal-all; then
	CURRENT="mx-recipient-refused docker-stall-ec2"
	FP0=$(fingerprint)
	o=$("$LAB" fault mx-recipient-refused docker-stall-ec2 2>&1); ok $? "two faults: mx-recipient-refused then docker-stall-ec2" || diag "$o"
	rm -rf "$LAB_DIR/faults/"*
	t=$(ms); o=$(timeout 300 "$LAB" heal all 2>&1); ok $? "heal all finds and heals both ($(($(ms) - t)) ms)" || diag "$o"
	like "$o" "docker-stall-ec2" "heal all names docker-stall-ec2"
	like "$o" "mx-recipient-refused" "heal all names mx-recipient-refused"
	o=$("$LAB" heal mx-recipient-refused docker-stall-ec2 2>&1)
	like "$o" "fault mx-recipient-refused not active" "heal all: mx-recipient-refused no longer active"
	like "$o" "fault docker-stall-ec2 not active" "heal all: docker-stall-ec2 no longer active"
	[ "$(fingerprint)" = "$FP0" ]; ok $? "heal all: the exact configuration and containers"
	CURRENT=""
	delivered "$U" "heal all"
fi

diag "fault and heal times (heal: lab heal with the bookkeeping deleted):" "$TIMINGS"
done_testing
