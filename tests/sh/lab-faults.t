#!/bin/bash
# Every fault of the mail lab: `lab fault NAME` leaves the real evidence where the operators'
# document says to look (ec2's Postfix log over SSH, postconf, postqueue -j, dell's container
# logs and states, the SQL rows, DNS, df), and `lab heal NAME` makes delivery work again
# (a new message, sent from the outside sender, is stored in the Maildir).
. "$(dirname "$0")/../lab/tap.sh"

U=$LAB_USER
UDIR=$LAB_VMAIL_DIR/example.test/info
re_u=${U//./\\.}
fault() { local o; o=$("$LAB" fault "$@" 2>&1); ok $? "lab fault $*" || diag "$o"; }
heal() { local o; o=$("$LAB" heal "$@" 2>&1); ok $? "lab heal $*" || diag "$o"; }
dig1() { dig +time=2 +tries=1 @"$LAB_DNS_ADDR" "$@"; }
queue_has() { ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postqueue -j | grep -F "\"queue_id\": \"$1\""; }

# --- relay-domain-missing: ec2 refuses to relay for the domain
fault relay-domain-missing
rd=$(ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postconf -h relay_domains)
unlike "$rd" "example\.test" "relay-domain-missing: postconf relay_domains lacks example.test ($rd)"
since=$(now_ts)
lab_send "$U"; [ $? -ne 0 ]; ok $? "relay-domain-missing: ec2 refuses the message"
like "$SEND_ERR" "554 5\.7\.1 <$re_u>: Relay access denied" "relay-domain-missing: SMTP answer 554 Relay access denied"
wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 554 5\.7\.1 <$re_u>: Relay access denied" 30 >/dev/null
ok $? "relay-domain-missing: ec2 log has the NOQUEUE reject line"
heal relay-domain-missing
is "$(ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postconf -h relay_domains)" "example.test, shop.test" "relay-domain-missing: heal restores the exact value"
delivered "$U" "relay-domain-missing healed"

# --- relay-transport-wrong: accepted, then deferred (stale next hop refuses)
fault relay-transport-wrong
is "$(ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postconf -h relay_transport)" "lmtp:[127.0.0.21]:2525" "relay-transport-wrong: postconf shows the stale next hop"
since=$(now_ts)
lab_send "$U"; ok $? "relay-transport-wrong: ec2 still accepts the message ($QID)"
q1=$QID m1=$MSGID
wait_log ec2 "$since" "$q1: to=<$re_u>, relay=none, .*status=deferred \(connect to 127\.0\.0\.21\[127\.0\.0\.21\]:2525: Connection refused\)" 30 >/dev/null
ok $? "relay-transport-wrong: ec2 log status=deferred, connect to the stale address refused"
queue_has "$q1" >/dev/null; ok $? "relay-transport-wrong: the message waits in ec2's queue (postqueue -j)"
heal relay-transport-wrong
wait_maildir "$m1" 60 "$UDIR" >/dev/null; ok $? "relay-transport-wrong: the deferred message is delivered after heal"
delivered "$U" "relay-transport-wrong healed"

# --- mx-missing: no MX record for the domain
fault mx-missing
d=$(dig1 MX example.test)
like "$d" "status: NOERROR" "mx-missing: the domain still exists (NOERROR)"
like "$d" "ANSWER: 0," "mx-missing: no MX record in the answer"
like "$(dig1 +short TXT example.test)" "v=spf1" "mx-missing: other records of the domain remain"
heal mx-missing
is "$(dig1 +short MX example.test)" "10 mx.example.test." "mx-missing: heal restores the MX"
delivered "$U" "mx-missing healed"

# --- mx-wrong: MX points at a lab address where nothing listens
fault mx-wrong
is "$(dig1 +short MX example.test)" "10 mx-old.example.test." "mx-wrong: MX points at mx-old.example.test"
ip=$(dig1 +short A mx-old.example.test)
is "$ip" "$LAB_WRONG_MX_ADDR" "mx-wrong: mx-old.example.test resolves to $LAB_WRONG_MX_ADDR"
out=$(swaks --server "$ip:25" --local-interface "$LAB_SENDER_ADDR" --helo outside.test --from "$LAB_SENDER" --to "$U" --timeout 5 2>&1)
like "$out" "Connection refused" "mx-wrong: a sender following the MX gets Connection refused"
is "$(dig1 +short MX shop.test)" "10 mx.example.test." "mx-wrong: the other domain is untouched"
heal mx-wrong
is "$(dig1 +short MX example.test)" "10 mx.example.test." "mx-wrong: heal restores the MX"
delivered "$U" "mx-wrong healed"

# --- mx-port-closed: ec2's Postfix container stopped
fault mx-port-closed
st=$(ssh_ec2 docker ps -a --filter name=^/"$LAB_EC2_POSTFIX_CONTAINER"$ --format '{{.Status}}')
like "$st" "^Exited" "mx-port-closed: docker ps on ec2 shows the container exited ($st)"
lab_send "$U"; [ $? -ne 0 ]; ok $? "mx-port-closed: the message cannot be sent"
like "$SEND_ERR" "Connection refused" "mx-port-closed: port 25 refuses connections"
heal mx-port-closed
delivered "$U" "mx-port-closed healed"

# --- dell-unreachable: the link ec2 <-> dell is down
fault dell-unreachable
since=$(now_ts)
lab_send "$U"; ok $? "dell-unreachable: ec2 accepts the message ($QID)"
q1=$QID m1=$MSGID
wait_log ec2 "$since" "$q1: to=<$re_u>, relay=none, .*status=deferred \(connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: No route to host\)" 30 >/dev/null
ok $? "dell-unreachable: ec2 log status=deferred, No route to host"
j=$(queue_has "$q1"); ok $? "dell-unreachable: postqueue -j lists the message"
like "$j" "No route to host" "dell-unreachable: its delay_reason says No route to host"
heal dell-unreachable
wait_maildir "$m1" 60 "$UDIR" >/dev/null; ok $? "dell-unreachable: the waiting message is delivered after heal"
delivered "$U" "dell-unreachable healed"

# --- dovecot-down: docker stop of the dovecot container
fault dovecot-down
c=$(dell_container dovecot)
is "$(dell_docker inspect -f '{{.State.Status}}' "$c")" exited "dovecot-down: dell's compose service dovecot is exited"
like "$(dell_docker logs --tail 5 "$c" 2>&1)" "master: Warning: Killed with signal 15" "dovecot-down: dovecot's log ends with its shutdown"
since=$(now_ts)
lab_send "$U"; ok $? "dovecot-down: ec2 accepts the message ($QID)"
q1=$QID m1=$MSGID
wait_log ec2 "$since" "$q1: to=<$re_u>, relay=none, .*status=deferred \(connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: Connection refused\)" 30 >/dev/null
ok $? "dovecot-down: ec2 log status=deferred, LMTP port refused"
heal dovecot-down
wait_maildir "$m1" 60 "$UDIR" >/dev/null; ok $? "dovecot-down: the waiting message is delivered after heal"
delivered "$U" "dovecot-down healed"

# --- maildir-permissions: the domain's Maildir tree owned by root
fault maildir-permissions
is "$(dell_docker exec "$(dell_container dovecot)" stat -c '%U:%G %a' /var/mail/vmail/example.test)" "root:root 700" \
	"maildir-permissions: ls in the dovecot container shows root:root 700"
since=$(now_ts)
lab_send "$U"; ok $? "maildir-permissions: ec2 accepts the message ($QID)"
q1=$QID m1=$MSGID
wait_log dell:dovecot "$since" "lmtp\($re_u\).*Permission denied \(euid=[0-9]+\(vmail\) .*missing \+x perm: /var/mail/vmail/example\.test, dir owned by 0:0 mode=0700\)" 30 >/dev/null
ok $? "maildir-permissions: dovecot log has Permission denied ... missing +x perm"
wait_log ec2 "$since" "$q1: to=<$re_u>, relay=127\.0\.0\.20.*status=deferred \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 451 4\.[23]\.0 " 30 >/dev/null
ok $? "maildir-permissions: ec2 log status=deferred with a 451 from dell"
heal maildir-permissions
is "$(stat -c '%U:%G' "$LAB_VMAIL_DIR/example.test" "$UDIR" | sort -u)" "vmail:vmail" "maildir-permissions: heal restores the owners"
wait_maildir "$m1" 60 "$UDIR" >/dev/null; ok $? "maildir-permissions: the waiting message is delivered after heal"
delivered "$U" "maildir-permissions healed"

# --- user-missing: the users row is gone
fault user-missing
is "$(sql "SELECT u.email, d.name, u.enabled, u.maildir FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email='$U'")" "" "user-missing: the document's user query returns no row"
is "$(sql "SELECT id,name FROM domains WHERE name='example.test'" | cut -f2)" example.test "user-missing: the domain row is still there"
like "$(api GET /api/users/$U)" "^404 " "user-missing: API GET user is 404"
since=$(now_ts)
lab_send "$U"; ok $? "user-missing: ec2 accepts the message ($QID)"
wait_log ec2 "$since" "$QID: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist" 30 >/dev/null
ok $? "user-missing: ec2 log status=bounced, 550 5.1.1 User doesn't exist"
heal user-missing
like "$(api GET /api/users/$U)" '^200 .*"enabled": true' "user-missing: heal puts the row back"
delivered "$U" "user-missing healed"

# --- user-disabled: enabled = 0 (looks like unknown from the outside; only SQL tells)
fault user-disabled
is "$(sql "SELECT u.enabled FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email='$U'")" 0 "user-disabled: SQL shows enabled=0"
since=$(now_ts)
lab_send "$U"; ok $? "user-disabled: ec2 accepts the message ($QID)"
wait_log ec2 "$since" "$QID: .*status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist" 30 >/dev/null
ok $? "user-disabled: ec2 log shows the same 550 5.1.1 as an unknown user"
# the document's remedy: the User Management API
echo '{"enabled": true}' >"$LAB_DIR/t-enable.json"
like "$(api PATCH /api/users/$U "$LAB_DIR/t-enable.json")" '^200 .*"enabled": true' "user-disabled: API PATCH enables the user"
rm -f "$LAB_DIR/t-enable.json"
heal user-disabled
is "$(sql "SELECT enabled FROM users WHERE email='$U'")" 1 "user-disabled: enabled=1"
delivered "$U" "user-disabled healed"

# --- domain-missing: the domains row is gone (its users go with it: ON DELETE CASCADE)
fault domain-missing
is "$(sql "SELECT id,name FROM domains WHERE name='example.test'")" "" "domain-missing: the document's domain query returns no row"
is "$(sql "SELECT COUNT(*) FROM users WHERE email LIKE '%@example.test'")" 0 "domain-missing: no users of the domain"
since=$(now_ts)
lab_send "$U"; ok $? "domain-missing: ec2 still accepts the message ($QID) (relay_domains unchanged)"
wait_log ec2 "$since" "$QID: .*status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist" 30 >/dev/null
ok $? "domain-missing: ec2 log status=bounced, 550 5.1.1"
# the document's remedy through the API (the password goes in a 0600 file, never on a command line)
echo '{"name": "example.test"}' >"$LAB_DIR/t-dom.json"
like "$(api POST /api/domains "$LAB_DIR/t-dom.json")" '^201 .*"name": "example.test"' "domain-missing: API POST /api/domains re-creates the domain"
(umask 077; printf '{"email": "%s", "password": "%s", "domain": "example.test"}' "$U" "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$LAB_DIR/t-user.json")
like "$(api POST /api/users "$LAB_DIR/t-user.json")" '^201 .*"maildir": "example.test/info/"' "domain-missing: API POST /api/users re-creates the user"
like "$(api POST /api/users "$LAB_DIR/t-user.json")" '^409 ' "domain-missing: API POST of an existing user is 409"
rm -f "$LAB_DIR/t-dom.json" "$LAB_DIR/t-user.json"
# Dovecot's auth cache still holds the "no such user" of the bounce (auth_cache_negative_ttl = 1
# hour): the operator's last step is to flush it
o=$(dell_docker exec "$(dell_container dovecot)" doveadm user "$U" 2>&1); is "$?" 67 "domain-missing: Dovecot still answers from its negative cache: doveadm user exits 67" || diag "$o"
dell_docker exec "$(dell_container dovecot)" doveadm auth cache flush >/dev/null; ok $? "domain-missing: doveadm auth cache flush"
delivered "$U" "domain-missing fixed through the API"
heal domain-missing
is "$(sql "SELECT COUNT(*) FROM users WHERE email LIKE '%@example.test'")" 3 "domain-missing: heal restores the exact rows (3 users)"
delivered "$U" "domain-missing healed"

# --- quota-exceeded: the mailbox is over its quota: 552 5.2.2 at RCPT
fault quota-exceeded
is "$(sql "SELECT quota FROM users WHERE email='$U'")" 1024 "quota-exceeded: SQL shows the quota (1024 bytes)"
since=$(now_ts)
lab_send "$U"; ok $? "quota-exceeded: ec2 accepts the message ($QID)"
wait_log ec2 "$since" "$QID: .*status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 552 5\.2\.2 <$re_u> Quota exceeded" 30 >/dev/null
ok $? "quota-exceeded: ec2 log status=bounced, 552 5.2.2 Quota exceeded"
heal quota-exceeded
is "$(sql "SELECT quota FROM users WHERE email='$U'")" 52428800 "quota-exceeded: heal restores the quota"
delivered "$U" "quota-exceeded healed"

# --- queue-stuck: a message deferred and waiting in ec2's queue until a flush
fault queue-stuck
q1=$(cat "$LAB_DIR/faults/queue-stuck.state/queue_id") m1=$(cat "$LAB_DIR/faults/queue-stuck.state/message_id")
j=$(queue_has "$q1"); ok $? "queue-stuck: postqueue -j in mailserver-postfix lists $q1"
like "$j" '"queue_name": "deferred"' "queue-stuck: it is in the deferred queue"
like "$j" "\"address\": \"$re_u\"" "queue-stuck: for $U"
like "$j" "delay_reason\": \"connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: No route to host" "queue-stuck: delay_reason tells why"
port_ok=1; timeout 2 bash -c "exec 3<>/dev/tcp/$LAB_DELL_ADDR/$LAB_DELL_LMTP_PORT" 2>/dev/null && port_ok=0
ok $port_ok "queue-stuck: dell's LMTP answers again"
sleep 2
queue_has "$q1" >/dev/null; ok $? "queue-stuck: the message keeps waiting though dell is back"
heal queue-stuck
f=$(wait_maildir "$m1" 60 "$UDIR"); ok $? "queue-stuck: heal (postqueue -f) delivers it"
queue_has "$q1" >/dev/null; [ $? -ne 0 ]; ok $? "queue-stuck: ec2's queue no longer holds it"
delivered "$U" "queue-stuck healed"

# --- db-down: the mariadb container stopped
fault db-down
is "$(dell_docker inspect -f '{{.State.Status}}' "$(dell_container mariadb)")" exited "db-down: dell's compose service mariadb is exited"
e=$(sql "SELECT 1" 2>&1); [ $? -ne 0 ]; ok $? "db-down: the SQL check fails"
like "$e" "Can't connect to (MySQL |MariaDB )?server on '127\.0\.0\.20'" "db-down: the database address does not answer"
like "$(api GET /api/health)" "^503 " "db-down: the API answers 503"
since=$(now_ts)
lab_send "$U"; ok $? "db-down: ec2 accepts the message ($QID)"
wait_log dell:dovecot "$since" "mysql\(127\.0\.0\.20\): Connect failed to database \(mailserver_usermgmt\): Can't connect to (MySQL |MariaDB )?server on '127\.0\.0\.20'" 30 >/dev/null
ok $? "db-down: dovecot log: Connect failed to database"
heal db-down
like "$(api GET /api/health)" "^200 " "db-down: the API works again"
delivered "$U" "db-down healed"

# --- disk-almost-full: the mail volume above 90 %
fault disk-almost-full
pct=$(dell_docker exec "$(dell_container dovecot)" df -P /var/mail/vmail | awk 'NR==2 {sub("%","",$5); print $5}')
[ "${pct:-0}" -ge 90 ]; ok $? "disk-almost-full: df of /var/mail/vmail in the dovecot container shows ${pct}% (>= 90)"
heal disk-almost-full
pct=$(dell_docker exec "$(dell_container dovecot)" df -P /var/mail/vmail | awk 'NR==2 {sub("%","",$5); print $5}')
[ "${pct:-100}" -lt 90 ]; ok $? "disk-almost-full: heal frees the volume (${pct}%)"
delivered "$U" "disk-almost-full healed"

# --- heal is idempotent; unknown names are refused
out=$("$LAB" heal dovecot-down 2>&1); ok $? "heal of an inactive fault is a no-op"
"$LAB" fault no-such-fault >/dev/null 2>&1; [ $? -ne 0 ]; ok $? "unknown fault refused"
"$LAB" status >/dev/null; ok $? "lab status clean at the end"

done_testing
