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
wait_log ec2 "$since" "$q: to=<sales@shop\.test>, relay=none, .*status=deferred \(connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: Connection refused\)" 30 >/dev/null
ok $? "shop.test deferred: dovecot down (Connection refused)"
o=$("$LAB" heal all 2>&1); ok $? "lab heal all" || diag "$o"
is "$(ls "$LAB_DIR/faults" | wc -l)" 0 "no fault state left"
wait_maildir "$m" 60 "$LAB_VMAIL_DIR/shop.test/sales" >/dev/null; ok $? "the deferred shop.test message is delivered"
delivered "$LAB_USER" "after heal all"
o=$("$LAB" heal all 2>&1); ok $? "lab heal all again is a no-op"

# --- the real state is the truth: a test killed mid-fault leaves no bookkeeping behind
o=$("$LAB" fault dell-unreachable user-disabled 2>&1); ok $? "lab fault dell-unreachable user-disabled" || diag "$o"
rules=$(ip rule show)
like "$rules" "from all to 127\.0\.0\.20 uidrange [0-9]+-[0-9]+ lookup 220" "ip rule prints the uidrange rule with the address first"
rm -rf "$LAB_DIR"/faults/*   # what a killed test leaves: the faults, without their records
o=$("$LAB" fault dell-unreachable 2>&1); ok $? "applying dell-unreachable again over the same rules works (no 'File exists')" || diag "$o"
is "$(ip rule show | grep -c 'lookup 220')" 3 "each rule exists once (3 rules look up table 220)"
rm -rf "$LAB_DIR"/faults/*
st=$("$LAB" status 2>&1); [ $? -ne 0 ]; ok $? "lab status exits 1: faults active without any record"
like "$st" "active faults +.*dell-unreachable" "lab status reports dell-unreachable from the routing rules"
like "$st" "active faults +.*user-disabled" "lab status reports user-disabled from the users row"
since=$(now_ts)
lab_send "$LAB_USER"; ok $? "accepted while the link is cut ($QID)"
q=$QID
wait_log ec2 "$since" "$q: to=<$(rx "$LAB_USER")>, relay=none, .*status=deferred \(connect to 127\.0\.0\.20\[127\.0\.0\.20\]:2525: No route to host\)" 30 >/dev/null
ok $? "deferred: No route to host"
o=$("$LAB" heal all 2>&1); ok $? "lab heal all without any record" || diag "$o"
like "$o" "healed: .*dell-unreachable" "heal all healed dell-unreachable (found in the real state)"
like "$o" "healed: .*user-disabled" "heal all healed user-disabled (found in the real state)"
like "$o" "delivery: [0-9.]+ s \(queue id [0-9A-F]+ -> example\.test/info/" "heal all proved one delivery to the Maildir"
rules=$(ip rule show)
unlike "$rules" "lookup 220" "no rule looks up table 220 after heal all"
like "$rules" "^0:[[:space:]]+from all lookup local" "the local lookup is back at preference 0"
unlike "$rules" "^100:" "nothing left at preference 100"
is "$(ip route show table 220 2>/dev/null)" "" "table 220 is empty"
is "$(sql "SELECT enabled FROM users WHERE email='$LAB_USER'")" 1 "the user is enabled again"
is "$("$LAB" faults --active)" "" "lab faults --active: nothing"

# the document's other path: relay_transport = smtp:[dell]:25 puts dell's Postfix on the way
ec2x() { ssh_ec2 docker exec "$LAB_EC2_POSTFIX_CONTAINER" "$@"; }
old=$(ec2x postconf -h relay_transport)
ec2x postconf -e "relay_transport=smtp:[$LAB_DELL_ADDR]:25" && ec2x postfix reload >/dev/null 2>&1
ok $? "ec2 switched to relay_transport = smtp:[127.0.0.20]:25"
since=$(now_ts)
lab_send "$LAB_USER" "smtp path"; ok $? "accepted by ec2 ($QID)"
l=$(wait_log ec2 "$since" "$QID: to=<$(rx "$LAB_USER")>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:25, .*status=sent \(250 2\.0\.0 Ok: queued as [0-9A-F]+\)" 30)
ok $? "ec2 log: status=sent (250 2.0.0 Ok: queued as ...) by dell's Postfix"
q2=$(printf '%s' "$l" | sed -n 's/.*queued as \([0-9A-F]*\)).*/\1/p' | tail -1)
wait_log dell:postfix "$since" "$q2: to=<$(rx "$LAB_USER")>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 30 >/dev/null
ok $? "dell postfix log: the next hop's queue id $q2 delivered to Dovecot"
wait_maildir "$MSGID" 60 >/dev/null; ok $? "stored in the Maildir through dell's Postfix"
# left as it is (a test that died before restoring it): heal all puts the healthy value back
o=$("$LAB" heal all 2>&1); ok $? "lab heal all after a hand change of relay_transport" || diag "$o"
like "$o" "healed: .*relay-transport-wrong" "heal all saw the changed relay_transport"
is "$(ec2x postconf -h relay_transport)" "lmtp:[127.0.0.20]:2525" "ec2 relay_transport restored"
[ "$old" = "lmtp:[127.0.0.20]:2525" ]; ok $? "that is the value it had before this test"
done_testing
