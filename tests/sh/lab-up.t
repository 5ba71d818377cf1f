#!/bin/bash
# The mail lab itself: up is idempotent and recovers from a half-dead run, every service answers
# where the contract says, the operator's paths work (SSH + docker on ec2, compose labels on dell,
# SQL, API, DNS), and a real message from the outside sender lands in the Maildir.
. "$(dirname "$0")/../lab/tap.sh"

# --- facts from lab env
for k in LAB_EC2_ADDR LAB_DELL_ADDR LAB_SSH_KEY LAB_SSH_KNOWN_HOSTS LAB_EC2_DOCKER_SOCK LAB_DELL_DOCKER_SOCK \
	LAB_DB_PASSWORD_FILE LAB_INVENTORY LAB_API_URL LAB_DNS_ADDR LAB_USER; do
	[ -n "${!k:-}" ]; ok $? "lab env gives $k"
done
is "$LAB_EC2_ADDR:$LAB_DELL_ADDR:$LAB_DNS_ADDR:$LAB_SENDER_ADDR" "127.0.0.10:127.0.0.20:127.0.0.53:127.0.0.99" "lab addresses as in the contract"
[ -f "$LAB_INVENTORY" ] && grep -q "socket: $LAB_EC2_DOCKER_SOCK" "$LAB_INVENTORY" && grep -q "key: $LAB_SSH_KEY" "$LAB_INVENTORY"
ok $? "examples/lab.yaml names the lab's sockets and key"
is "$(stat -c %a "$LAB_DB_PASSWORD_FILE")" 600 "db password file is mode 0600"
env_out=$("$LAB" env)
unlike "$env_out" "$(cat "$LAB_DB_PASSWORD_FILE")" "lab env never prints the db password"

# --- idempotent, quick when up
t0=$(date +%s%N)
out=$("$LAB" up 2>&1); ok $? "lab up again succeeds"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 30000 ]; ok $? "lab up on a running lab takes ${ms} ms (< 30 s, generous: the figure is in tests/lab/README.md)"
like "$out" "already up" "lab up on a running lab starts nothing"
"$LAB" status >/dev/null; ok $? "lab status: everything running"

# --- ec2 over SSH as the operator: rbops, /bin/sh, docker finds ec2's socket by itself
who=$(ssh_ec2 'id -un; echo $SHELL; echo $DOCKER_HOST')
is "$(echo $who)" "rbops /bin/sh unix://$LAB_EC2_DOCKER_SOCK" "ssh to ec2 logs in as rbops with /bin/sh and DOCKER_HOST"
rd=$(ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postconf relay_domains relay_transport)
like "$rd" "relay_domains = example.test, shop.test" "ec2 relay_domains over ssh + docker exec"
like "$rd" "relay_transport = lmtp:\[127.0.0.20\]:2525" "ec2 relay_transport over ssh + docker exec"
pn=$(ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" postconf -h mynetworks)
unlike "$pn" "127\.0\.0\.99|127\.0\.0\.0/8" "ec2 mynetworks does not contain the outside sender"
rootssh=$(timeout 10 ssh "${SSH_OPTS[@]}" "root@$LAB_EC2_ADDR" true 2>&1); [ $? -ne 0 ]
ok $? "ec2 sshd refuses root"

# --- dell: compose services by label
for s in postfix dovecot mariadb usermgmt; do
	c=$(dell_container $s)
	st=$(dell_docker inspect -f '{{.State.Status}}' "$c" 2>/dev/null)
	is "$st" running "dell compose service $s ($c) running"
done

# --- DNS: .test answered, everything else refused, never forwarded
is "$(dig +short +time=2 +tries=1 @"$LAB_DNS_ADDR" MX example.test)" "10 mx.example.test." "MX example.test -> mx.example.test"
is "$(dig +short +time=2 +tries=1 @"$LAB_DNS_ADDR" A mx.example.test)" "127.0.0.10" "mx.example.test -> 127.0.0.10"
is "$(dig +short +time=2 +tries=1 @"$LAB_DNS_ADDR" MX shop.test)" "10 mx.example.test." "MX shop.test -> mx.example.test"
like "$(dig +time=2 +tries=1 @"$LAB_DNS_ADDR" A debian.org)" "status: REFUSED" "a name outside .test is refused"

# --- database and API
is "$(sql "SELECT id,name FROM domains WHERE name='example.test'" | cut -f2)" example.test "domain row example.test"
row=$(sql "SELECT u.email, d.name, u.enabled, u.maildir FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email='$LAB_USER'")
is "$row" "$(printf 'info@example.test\texample.test\t1\texample.test/info/')" "user row of the document's query"
r=$(api GET /api/users/$LAB_USER)
like "$r" '^200 .*"enabled": true' "API GET user"
unlike "$r" 'password|SHA512' "API never returns the password"
like "$(api GET /api/domains)" '^200 .*"name": "shop.test"' "API GET domains"
like "$(api GET /api/users/nobody@example.test)" '^404 ' "API GET unknown user is 404"

# --- one real delivery, outside sender -> ec2:25 -> LMTP dell:2525 -> Maildir
since=$(now_ts)
delivered "$LAB_USER" "up"
f=$(wait_maildir "$MSGID" 1)
grep -qF "Message-Id: $MSGID" "$f"; ok $? "stored file carries the Message-ID"
is "$(stat -c %U "$f")" vmail "stored file is owned by vmail"
l=$(wait_log ec2 "$since" "$QID: to=<$LAB_USER>, relay=127.0.0.20\[127.0.0.20\]:2525.*status=sent \(250 2.0.0 <$LAB_USER> [^ ]+ Saved\)" 30)
ok $? "ec2 log (over ssh): status=sent via LMTP to dell"
sid=$(printf '%s' "$l" | grep -oE '<[^>]+> [^ ]+ Saved' | awk '{print $2}' | tail -1)
wait_log dell:dovecot "$since" "lmtp\($(rx "$LAB_USER")\)<[0-9]+><$(rx "$sid")>: Info: msgid=$(rx "$MSGID"): saved mail to INBOX" 30 >/dev/null
ok $? "dovecot log: the same session id saved the same Message-ID"
delivered sales@shop.test "up (shop.test)"

# --- the other documented path: ec2 -> dell Postfix :25 -> Dovecot
since=$(now_ts)
out=$(swaks --server 127.0.0.20:25 --local-interface 127.0.0.10 --helo mx.example.test --from sender@outside.test \
	--to "$LAB_USER" --header "Message-Id: <d.$$@outside.test>" --timeout 15 2>&1)
like "$out" "250 2.0.0 Ok: queued as" "dell postfix :25 accepts mail from ec2's address"
f=$(wait_maildir "<d.$$@outside.test>" 60); ok $? "mail through dell postfix is stored"
wait_log dell:postfix "$since" "relay=127.0.0.20\[127.0.0.20\]:2525.*status=sent" 30 >/dev/null
ok $? "dell postfix log: relay to Dovecot LMTP, status=sent"

# --- recovery: a run that died halfway (dockerd and dnsmasq killed, stale pid files)
kill -9 "$(cat "$LAB_DIR/ec2/dockerd.pid")" "$(cat "$LAB_DIR/dns/dnsmasq.pid")" 2>/dev/null
sleep 0.3
out=$("$LAB" up 2>&1); ok $? "lab up recovers after dockerd and dnsmasq were killed" || diag "$out"
like "$out" "ec2-dockerd" "lab up restarted ec2's dockerd"
"$LAB" status >/dev/null; ok $? "lab status clean after recovery"
delivered "$LAB_USER" "after recovery"

done_testing
