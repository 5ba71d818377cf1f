#!/bin/bash
# The network rule, proved on the running lab: the lab's Postfix instances cannot bounce or relay
# outside it, nothing resolves names outside .test, and no connection leaves 127.0.0.0/8.
# It judges its own traffic only: the DNS log from its start offset, the Postfix logs since its
# start time (what other tests did before is not this test's evidence).
. "$(dirname "$0")/../lab/tap.sh"

DNSLOG=$LAB_DIR/dns/dnsmasq.log
t_start=$(now_ts)
dns_off=$(stat -c %s "$DNSLOG" 2>/dev/null || echo 0)
dnslog_mine() { tail -c +"$((dns_off + 1))" "$DNSLOG" 2>/dev/null; }
qcount() { dnslog_mine | grep -c "query\[[A-Z]*\] $1 "; }
ec2x() { ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" "$@"; }

# --- configuration that makes it so
for h in ec2 dell; do
	if [ $h = ec2 ]; then pc=$(ec2x postconf default_transport smtp_dns_support_level lmtp_dns_support_level smtpd_peername_lookup relayhost mynetworks)
	else pc=$(dell_docker exec "$(dell_container postfix)" postconf default_transport smtp_dns_support_level lmtp_dns_support_level smtpd_peername_lookup relayhost mynetworks); fi
	like "$pc" "default_transport = error:" "$h: default_transport is an error transport"
	like "$pc" "smtp_dns_support_level = disabled" "$h: smtp client does no DNS"
	like "$pc" "lmtp_dns_support_level = disabled" "$h: lmtp client does no DNS"
	like "$pc" "smtpd_peername_lookup = no" "$h: smtpd does no reverse lookups"
	like "$pc" "relayhost = *$" "$h: no relayhost"
	unlike "$pc" "mynetworks = .*127\.0\.0\.99" "$h: the outside sender is not in mynetworks"
done
is "$(ec2x cat /etc/resolv.conf | grep nameserver)" "nameserver $LAB_DNS_ADDR" "containers resolve through the lab DNS only"

# --- the lab DNS never answers (or forwards) outside .test
before=$(qcount debian.org)
d=$(dig +time=2 +tries=1 @"$LAB_DNS_ADDR" A debian.org)
like "$d" "status: REFUSED" "lab DNS refuses debian.org"
ec2x getent hosts debian.org >/dev/null 2>&1; [ $? -ne 0 ]; ok $? "a lookup of debian.org inside mailserver-postfix finds nothing"
[ -n "$(dnslog_mine | grep -F "query[A] debian.org ")" ]; ok $? "the lab DNS logged this test's query for debian.org"
dnslog_mine | grep -q "forwarded"; [ $? -ne 0 ]; ok $? "dnsmasq forwarded none of this test's queries"

# --- outside sender: relay to a non-hosted domain is refused at RCPT, on both hosts
before=$(qcount example.com)
since=$(now_ts)
lab_send someone@example.com; [ $? -ne 0 ]; ok $? "ec2 refuses relay from the outside sender to example.com"
like "$SEND_ERR" "554 5\.7\.1 <someone@example\.com>: Relay access denied" "answer 554 Relay access denied"
wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 554 5\.7\.1 <someone@example\.com>: Relay access denied" 30 >/dev/null
ok $? "ec2 log has the reject"
out=$(swaks --server "$LAB_DELL_ADDR:25" --local-interface "$LAB_SENDER_ADDR" --helo outside.test --from "$LAB_SENDER" --to someone@example.com --timeout 10 2>&1)
like "$out" "554 5\.7\.1 <someone@example\.com>: Relay access denied" "dell refuses relay from the outside sender"

# --- from inside (mynetworks / local submission): goes to the error transport, bounced, no lookup, no connection
since=$(now_ts)
printf 'Subject: outside\n\nx\n' | ssh_ec2 docker exec -i "$LAB_EC2_POSTFIX_CONTAINER" /usr/sbin/sendmail -f sender@outside.test someone@example.com
ok $? "local submission to someone@example.com on ec2"
l=$(wait_log ec2 "$since" "to=<someone@example\.com>, relay=none, .*status=bounced \(outside the lab" 30)
ok $? "ec2: to=<someone@example.com> relay=none status=bounced by the error transport"
qid=$(printf '%s' "$l" | sed -n 's/.*postfix\/error\[[0-9]*\]: \([0-9A-F]*\): .*/\1/p' | head -1)
# the bounce is the last thing that happens to it: wait for it (the condition), then judge
b=$(wait_log ec2 "$since" "to=<sender@outside\.test>.*status=" 30 | head -1)
logs=$(ec2_logs_since "$since")
unlike "$(printf '%s' "$logs" | grep -F "$qid")" "postfix/smtp\[|connect to" "ec2: no SMTP client ever ran for it ($qid)"
like "$b" "relay=none, .*status=bounced \(outside the lab" "ec2: the bounce to sender@outside.test stays in the lab (error transport)"
is "$(qcount example.com)" "$before" "no DNS query for example.com reached the lab DNS"
is "$(qcount outside.test)" "0" "no DNS query for outside.test at all"

# --- every connection the two Postfix instances made during this test went to 127.0.0.0/8
# (one delivery of its own makes sure there is a next hop to judge)
delivered "$LAB_USER" "isolation"
wait_log ec2 "$t_start" "$QID: to=<.*relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 30 >/dev/null
ok $? "ec2 logged the delivery of its own message ($QID)"
all=$( (ec2_logs_since "$t_start"; dell_logs_since postfix "$t_start") | grep -oE "(connect to|relay=)[^ ,]+" | grep -vE "relay=none" | sort -u)
like "$all" "relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525" "this test's next hops include dell's LMTP"
unlike "$all" "(connect to|relay=)[^1]|(connect to|relay=)1[^2]|(connect to|relay=)12[^7]" "Postfix next hops used during this test are all in 127.0.0.0/8: $(echo $all)"

done_testing
