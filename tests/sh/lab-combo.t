#!/bin/bash
# Two faults at once (`lab fault A B`) and `lab heal all`.
. "$(dirname "$0")/../lab/tap.sh"

o=$("$LAB" fault relay-domain-missing dovecot-down 2>&1); ok $? "lab fault relay-domain-missing dovecot-down" || diag "$o"
like "$("$LAB" status 2>&1)" "active faults +.*relay-domain-missing.*dovecot-down|dovecot-down.*relay-domain-missing" "lab status lists both faults"
since=$(now_ts)
lab_send "$LAB_USER"; [ $? -ne 0 ]; ok $? "example.test refused (relay-domain-missing)"
like "$SEND_ERR" "554 5\.7\.1 .*Relay access denied" "554 Relay access denied"
lab_send sales@shop.test; ok $? "shop.test still accepted by ec2 ($QID)"
q=$QID m=$MSGID
wait_log ec2 "$since" "$q: to=<sales@shop\.test>, relay=none, .*status=deferred \(connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: Connection refused\)" 10 >/dev/null
ok $? "shop.test deferred: dovecot down (Connection refused)"
o=$("$LAB" heal all 2>&1); ok $? "lab heal all" || diag "$o"
is "$(ls "$LAB_DIR/faults" | wc -l)" 0 "no fault state left"
wait_maildir "$m" 15 "$LAB_VMAIL_DIR/shop.test/sales" >/dev/null; ok $? "the deferred shop.test message is delivered"
delivered "$LAB_USER" "after heal all"
o=$("$LAB" heal all 2>&1); ok $? "lab heal all again is a no-op"

# the document's other path: relay_transport = smtp:[dell]:25 puts dell's Postfix on the way
ec2x() { ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" "$@"; }
old=$(ec2x postconf -h relay_transport)
ec2x postconf -e "relay_transport=smtp:[$LAB_DELL_ADDR]:25" && ec2x postfix reload >/dev/null 2>&1
ok $? "ec2 switched to relay_transport = smtp:[127.0.0.20]:25"
since=$(now_ts)
lab_send "$LAB_USER" "smtp path"; ok $? "accepted by ec2 ($QID)"
l=$(wait_log ec2 "$since" "$QID: to=<$(rx "$LAB_USER")>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:25, .*status=sent \(250 2\.0\.0 Ok: queued as [0-9A-F]+\)" 10)
ok $? "ec2 log: status=sent (250 2.0.0 Ok: queued as ...) by dell's Postfix"
q2=$(printf '%s' "$l" | sed -n 's/.*queued as \([0-9A-F]*\)).*/\1/p' | tail -1)
wait_log dell:postfix "$since" "$q2: to=<$(rx "$LAB_USER")>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 10 >/dev/null
ok $? "dell postfix log: the next hop's queue id $q2 delivered to Dovecot"
wait_maildir "$MSGID" 15 >/dev/null; ok $? "stored in the Maildir through dell's Postfix"
ec2x postconf -e "relay_transport=$old" && ec2x postfix reload >/dev/null 2>&1
is "$(ec2x postconf -h relay_transport)" "lmtp:[127.0.0.20]:2525" "ec2 relay_transport restored"
done_testing
