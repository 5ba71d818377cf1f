#!/bin/bash
# The lab parts of issue 11 and their eight faults (tests/lab/faults-11.sh).
# Parts, on the healthy lab: Pigeonhole sieve in Dovecot's LMTP with no script, Junk and INBOX
# subscribed in every seed mailbox, the aliases table read by dell's Postfix (mysql:) and exported
# to ec2's hash map with one harmless catch-all, recipient_delimiter = + on both Postfix hops and
# in Dovecot (info+tag@ reaches info's INBOX), equal message_size_limit on both hops, Dovecot's
# auth cache. Then for each fault: `lab fault NAME` -> `lab faults --active` lists it (the real
# state) -> the evidence where an operator looks (the reply, ec2's log over SSH, dell's container
# logs, the folder the message is in, SQL, postmap -q, doveadm, doveconf, EHLO) -> `lab heal NAME`
# with the bookkeeping deleted heals it -> a second heal says "not active" -> the exact
# configuration, rows and sieve files are back -> a new message lands in INBOX. Last, `lab heal
# all` proves a delivery. F11_ONLY="name ..." runs only those faults (while developing).
. "$(dirname "$0")/../lab/tap.sh"

U=$LAB_USER
P=postmaster@example.test
S=sales@shop.test
UDIR=$LAB_VMAIL_DIR/example.test/info
PDIR=$LAB_VMAIL_DIR/example.test/postmaster
SDIR=$LAB_VMAIL_DIR/shop.test/sales
re_u=${U//./\\.}
re_p=${P//./\\.}
re_s=${S//./\\.}
EC2=$LAB_EC2_POSTFIX_CONTAINER
DOVE=$(dell_container dovecot)
DPF=$(dell_container postfix)
EC2_MAP=hash:/etc/postfix/virtual_aliases
DELL_MAP=mysql:/etc/postfix/mysql-virtual-aliases.cf
TIMINGS=""
CURRENT=""

ms() { echo $(($(date +%s%N) / 1000000)); }
KNOWN=" parts heal-all $("$LAB" faults | tr '\n' ' ') "
# want NAME: run that part (F11_ONLY, when set, names the parts to run; a fault the lab does not have is skipped)
want() {
	case $KNOWN in *" $1 "*) ;; *) return 1 ;; esac
	[ -z "${F11_ONLY:-}" ] && return 0
	case " $F11_ONLY " in *" $1 "*) return 0 ;; esac
	return 1
}
ec2x() { ssh_ec2 docker exec "$EC2" "$@"; }
dellpf() { dell_docker exec "$DPF" "$@"; }
dove() { dell_docker exec "$DOVE" "$@"; }
# in_folder MSGID MAILDIR [SECONDS]: the message file in that Maildir folder's new/ or cur/ (not below)
in_folder() {
	local end=$(($(date +%s) + ${3:-0})) f
	while :; do
		f=$(grep -lsF -- "Message-Id: $1" "$2"/new/* "$2"/cur/* 2>/dev/null | head -1)
		[ -n "$f" ] && { echo "$f"; return 0; }
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
# inbox_delivery ADDR DIR LABEL: a new message to ADDR lands in DIR's INBOX (not in a folder)
inbox_delivery() {
	lab_send "$1" "$3"; ok $? "$3: message to $1 accepted by ec2 ($QID)" || diag "$SEND_ERR"
	in_folder "$MSGID" "$2" 30 >/dev/null; ok $? "$3: it is in the INBOX of $2"
}
# everything a heal must put back exactly: both Postfix configurations (every file), Dovecot's,
# the rows of users and aliases, info@'s sieve files, the containers and since when they run
fingerprint() {
	local h
	# (a .db is rebuilt by postmap with other bytes for the same content: its entries are compared)
	for h in ec2 dell; do (cd "$LAB_DIR/$h/postfix/etc" && find . -type f ! -name '.*' ! -name '*.db' -print0 | sort -z | xargs -0 sha256sum); done
	postmap -c "$LAB_DIR/ec2/postfix/etc" -s "hash:$LAB_DIR/ec2/postfix/etc/virtual_aliases" | sort
	(cd "$LAB_DIR/dell/dovecot/etc" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
	sql "SELECT id, email, domain_id, HEX(password), enabled, maildir, quota, created_at FROM users ORDER BY id"
	sql "SELECT * FROM aliases ORDER BY id"
	(cd "$UDIR" && find . -maxdepth 2 \( -name '*.sieve' -o -name '*.svbin' \) | sort)
	timeout 20 docker -H "$LAB_EC2_DOCKER_HOST" ps -a --format '{{.Names}} {{.State}}'
	timeout 20 docker -H "$LAB_DELL_DOCKER_HOST" ps -a --format '{{.Names}} {{.State}}'
	timeout 20 docker -H "$LAB_EC2_DOCKER_HOST" inspect -f '{{.Name}} {{.State.StartedAt}}' "$EC2"
	timeout 20 docker -H "$LAB_DELL_DOCKER_HOST" inspect -f '{{.Name}} {{.State.StartedAt}}' $(dell_docker ps -aq)
}
begin() { CURRENT=$1; FP0=$(fingerprint); }
fault() { # NAME: apply, then the real state must show it
	local o t
	t=$(ms)
	o=$("$LAB" fault "$1" 2>&1); ok $? "lab fault $1" || diag "$o"
	T_FAULT=$(($(ms) - t))
	STATE=$LAB_DIR/faults/$1.state
	like "$("$LAB" faults --active | tr '\n' ' ')" "(^| )$1( |$)" "$1: lab faults --active lists it (the real state)"
}
state_line() { sed -n "${2}p" "$STATE/$1" 2>/dev/null; } # FILE N: line N of a fault's note
finish() { # NAME: heal without bookkeeping (a killed test), exact state back, delivery to INBOX
	local n=$1 o t th fp
	rm -rf "$LAB_DIR/faults/$n" "$LAB_DIR/faults/$n.state"
	t=$(ms)
	o=$("$LAB" heal "$n" 2>&1); ok $? "$n: lab heal without bookkeeping (as after a killed test)" || diag "$o"
	th=$(($(ms) - t))
	like "$o" "fault $n healed" "$n: active_ found it in the real state"
	o=$("$LAB" heal "$n" 2>&1); ok $? "$n: a second heal is a no-op" || diag "$o"
	like "$o" "fault $n not active" "$n: active_ is false after heal"
	unlike "$("$LAB" faults --active | tr '\n' ' ')" "(^| )$n( |$)" "$n: lab faults --active no longer lists it"
	fp=$(fingerprint)
	[ "$fp" = "$FP0" ]; ok $? "$n: heal restores the exact configuration, rows, sieve files and containers" ||
		diag "$(diff <(printf '%s\n' "$FP0") <(printf '%s\n' "$fp"))"
	inbox_delivery "$U" "$UDIR" "$n healed"
	TIMINGS="$TIMINGS$(printf '%-20s fault %5d ms   heal %5d ms' "$n" "$T_FAULT" "$th")"$'\n'
	CURRENT=""
}
cleanup() { [ -n "$CURRENT" ] || return 0; "$LAB" heal $CURRENT >/dev/null 2>&1 || "$LAB" heal all >/dev/null 2>&1; }
trap cleanup EXIT

# ---------------------------------------------------------------- the parts, on the healthy lab

if want parts; then
	like "$(dove doveconf -h -f protocol=lmtp mail_plugins)" "(^| )sieve( |$)" "parts: Dovecot's LMTP loads the Pigeonhole sieve plugin"
	is "$(dove doveconf -h plugin/sieve)" "file:~/sieve;active=~/dovecot.sieve" "parts: per-user sieve scripts in ~/sieve, the active one ~/dovecot.sieve"
	is "$(dove doveadm sieve list -u "$U")" "" "parts: info@ has no sieve script (healthy)"
	[ ! -e "$UDIR/dovecot.sieve" ] && ! compgen -G "$UDIR/sieve/*.sieve" >/dev/null; ok $? "parts: ... and none on disk"
	for a in "$U:$UDIR" "$P:$PDIR" "$S:$SDIR"; do
		is "$(dove doveadm mailbox list -s -u "${a%%:*}" | sort | tr '\n' ' ')" "INBOX Junk " "parts: ${a%%:*} has INBOX and Junk, both subscribed"
		[ -d "${a#*:}/.Junk/cur" ] && [ "$(stat -c %U "${a#*:}/.Junk")" = vmail ]; ok $? "parts: ${a%%:*}'s .Junk Maildir folder is there, owned by vmail"
	done
	like "$(dove doveadm mailbox status -u "$U" all Junk)" "messages=" "parts: doveadm reads info@'s Junk"
	is "$(dove doveconf -h auth_cache_size)" "1 M" "parts: Dovecot's auth cache is on (auth_cache_size = 1 M)"
	is "$(dove doveconf -h auth_cache_negative_ttl)" "1 hours" "parts: negative answers are cached for an hour"
	is "$(dove doveconf -h recipient_delimiter)" "+" "parts: Dovecot's recipient_delimiter is +"
	is "$(ec2x postconf -h recipient_delimiter)" "+" "parts: ec2's recipient_delimiter is +"
	is "$(dellpf postconf -h recipient_delimiter)" "+" "parts: dell's recipient_delimiter is +"
	is "$(ec2x postconf -h message_size_limit):$(dellpf postconf -h message_size_limit)" "10240000:10240000" "parts: both hops take 10240000 bytes"
	is "$(ec2x postconf -h virtual_alias_domains):$(dellpf postconf -h virtual_alias_domains)" ":" "parts: no virtual alias domains on either hop"
	is "$(ec2x postconf -h virtual_alias_maps)" "$EC2_MAP" "parts: ec2's virtual_alias_maps is the hash export"
	is "$(dellpf postconf -h virtual_alias_maps)" "$DELL_MAP" "parts: dell's virtual_alias_maps reads the database"
	is "$(sql "SELECT source, destination, enabled FROM aliases ORDER BY id" | tr '\t\n' ' ;')" \
		"abuse@example.test postmaster@example.test 1;@shop.test sales@shop.test 1;" "parts: the aliases table: one alias, one catch-all"
	is "$(sql "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='$LAB_DB_NAME' AND TABLE_NAME='users' AND COLUMN_NAME='email'")" \
		utf8mb4_bin "parts: users.email compares byte for byte"
	is "$(ec2x postmap -q @shop.test "$EC2_MAP")" "$S" "parts: ec2 postmap -q @shop.test: the catch-all"
	is "$(dellpf postmap -q @shop.test "$DELL_MAP")" "$S" "parts: dell postmap -q @shop.test (mysql): the catch-all"
	is "$(dellpf postmap -q abuse@example.test "$DELL_MAP")" "$P" "parts: dell postmap -q abuse@example.test (mysql)"
	dellpf postmap -q "$U" "$DELL_MAP" >/dev/null; is "$?" 1 "parts: info@ is no alias on dell (postmap -q exit 1)"
	ec2x postmap -q @example.test "$EC2_MAP" >/dev/null; is "$?" 1 "parts: no catch-all for example.test on ec2"
	cf=$LAB_DIR/dell/postfix/etc/mysql-virtual-aliases.cf
	is "$(stat -c '%U:%G %a' "$cf")" "root:postfix 640" "parts: dell's mysql map file (with its password) is root:postfix 0640"
	unlike "$("$LAB" env; "$LAB" status 2>&1)" "$(cat "$LAB_DIR/secrets/postfix_db_password")" "parts: the postfix database password is never printed"
	# mail as the parts route it
	since=$(now_ts)
	inbox_delivery "$S" "$SDIR" "parts: the catch-all is harmless"
	l=$(wait_log ec2 "$since" "$QID: to=<$re_s>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 10)
	ok $? "parts: ec2 log: sales@ sent to Dovecot"
	unlike "$l" "orig_to=" "parts: ... not rewritten (the catch-all maps sales@ to itself)"
	since=$(now_ts)
	inbox_delivery "info+tag@example.test" "$UDIR" "parts: +tag"
	wait_log ec2 "$since" "$QID: to=<info\+tag@example\.test>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent \(250 2\.0\.0 <info\+tag@example\.test> [^ ]+ Saved\)" 10 >/dev/null
	ok $? "parts: ec2 passes info+tag@ on over LMTP; Dovecot saves it to info@'s INBOX"
	since=$(now_ts)
	inbox_delivery abuse@example.test "$PDIR" "parts: an alias on the MX"
	wait_log ec2 "$since" "$QID: to=<$re_p>, orig_to=<abuse@example\.test>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 10 >/dev/null
	ok $? "parts: ec2 log to=<postmaster@...>, orig_to=<abuse@example.test>"
	# the smtp:[dell]:25 path: dell's Postfix applies the database's aliases itself
	since=$(now_ts)
	mid="<p11.$(date +%s%N)@outside.test>"
	out=$(swaks --server "$LAB_DELL_ADDR:25" --local-interface "$LAB_EC2_ADDR" --helo mx.example.test --from sender@outside.test \
		--to abuse@example.test --header "Message-Id: $mid" --timeout 15 2>&1)
	like "$out" "250 2\.0\.0 Ok: queued as" "parts: dell's Postfix accepts abuse@ from ec2's address"
	wait_log dell:postfix "$since" "to=<$re_p>, orig_to=<abuse@example\.test>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent" 20 >/dev/null
	ok $? "parts: dell log to=<postmaster@...>, orig_to=<abuse@...>: its mysql: alias map at work"
	in_folder "$mid" "$PDIR" 20 >/dev/null; ok $? "parts: in postmaster's INBOX"
fi

# ---------------------------------------------------------------- catchall

if want catchall; then
	begin catchall
	since=$(now_ts)
	fault catchall
	q1=$(state_line queue_id 1) m1=$(state_line message_id 1)
	like "$q1" "^[0-9A-F]+$" "catchall: the fault sent one message ($q1)"
	is "$(sql "SELECT destination FROM aliases WHERE source='@example.test'")" "$P" "catchall: SQL: @example.test -> postmaster@"
	ec2x postmap -q "$U" "$EC2_MAP" >/dev/null; is "$?" 1 "catchall: no identity entry for info@ (ec2 postmap -q exit 1)"
	is "$(ec2x postmap -q @example.test "$EC2_MAP")" "$P" "catchall: ec2 postmap -q @example.test = postmaster@"
	is "$(dellpf postmap -q @example.test "$DELL_MAP")" "$P" "catchall: dell postmap -q @example.test (mysql) = postmaster@"
	l=$(wait_log ec2 "$since" "$q1: to=<$re_p>, orig_to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 <$re_p> [^ ]+ Saved\)" 15)
	ok $? "catchall: ec2 log status=sent to=<postmaster@>, orig_to=<info@>"
	wait_log dell:dovecot "$since" "lmtp\($re_p\)<[0-9]+><[^>]+>: Info: msgid=$(rx "$m1"): saved mail to INBOX" 10 >/dev/null
	ok $? "catchall: dovecot log: saved to postmaster@'s INBOX"
	in_folder "$m1" "$PDIR" 10 >/dev/null; ok $? "catchall: the message is in postmaster's INBOX"
	! grep -rqsF -- "$m1" "$UDIR"; ok $? "catchall: and nowhere in info's Maildir"
	finish catchall
fi

# ---------------------------------------------------------------- alias-elsewhere

if want alias-elsewhere; then
	begin alias-elsewhere
	since=$(now_ts)
	fault alias-elsewhere
	q1=$(state_line queue_id 1) m1=$(state_line message_id 1)
	is "$(sql "SELECT destination FROM aliases WHERE source='$U'")" "$S" "alias-elsewhere: SQL: info@ -> sales@shop.test"
	is "$(dellpf postmap -q "$U" "$DELL_MAP")" "$S" "alias-elsewhere: dell postmap -q info@ (mysql) = sales@shop.test"
	is "$(ec2x postmap -q "$U" "$EC2_MAP")" "$S" "alias-elsewhere: ec2 postmap -q info@ (the export) = sales@shop.test"
	wait_log ec2 "$since" "$q1: to=<$re_s>, orig_to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*status=sent \(250 2\.0\.0 <$re_s> [^ ]+ Saved\)" 15 >/dev/null
	ok $? "alias-elsewhere: ec2 log status=sent to=<sales@shop.test>, orig_to=<info@>"
	wait_log dell:dovecot "$since" "lmtp\($re_s\)<[0-9]+><[^>]+>: Info: msgid=$(rx "$m1"): saved mail to INBOX" 10 >/dev/null
	ok $? "alias-elsewhere: dovecot log: saved to sales@'s INBOX"
	in_folder "$m1" "$SDIR" 10 >/dev/null; ok $? "alias-elsewhere: the message is in sales@shop.test's INBOX"
	! grep -rqsF -- "$m1" "$UDIR"; ok $? "alias-elsewhere: and nowhere in info's Maildir"
	finish alias-elsewhere
fi

# ---------------------------------------------------------------- sieve-junk

if want sieve-junk; then
	begin sieve-junk
	since=$(now_ts)
	fault sieve-junk
	q1=$(state_line queue_id 1) m1=$(state_line message_id 1)
	is "$(dove doveadm sieve list -u "$U")" "lab-junk ACTIVE" "sieve-junk: doveadm sieve list: lab-junk ACTIVE"
	like "$(dove doveadm sieve get -u "$U" lab-junk)" 'fileinto "Junk"' "sieve-junk: the script files into Junk"
	[ -L "$UDIR/dovecot.sieve" ] && [ "$(readlink "$UDIR/dovecot.sieve")" = sieve/lab-junk.sieve ]
	ok $? "sieve-junk: on disk: dovecot.sieve -> sieve/lab-junk.sieve"
	l=$(wait_log ec2 "$since" "$q1: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 <$re_u> [^ ]+ Saved\)" 15)
	ok $? "sieve-junk: ec2 log status=sent ... Saved"
	sid=$(printf '%s' "$l" | grep -oE '<[^>]+> [^ ]+ Saved' | awk '{print $2}' | tail -1)
	wait_log dell:dovecot "$since" "lmtp\($re_u\)<[0-9]+><$(rx "$sid")>: Info: sieve: msgid=$(rx "$m1"): fileinto action: stored mail into mailbox 'Junk'" 10 >/dev/null
	ok $? "sieve-junk: dovecot log (same session): sieve: fileinto action: stored mail into mailbox 'Junk'"
	in_folder "$m1" "$UDIR/.Junk" 10 >/dev/null; ok $? "sieve-junk: the message is in info's Junk"
	in_folder "$m1" "$UDIR" >/dev/null; [ $? -ne 0 ]; ok $? "sieve-junk: and not in info's INBOX"
	like "$(dove doveadm search -u "$U" mailbox Junk header message-id "$m1")" "^[0-9a-f]{32} [0-9]+$" "sieve-junk: doveadm search finds it in Junk by Message-ID"
	like "$(dove doveadm mailbox list -s -u "$U" | tr '\n' ' ')" "Junk" "sieve-junk: Junk is subscribed"
	finish sieve-junk
	in_folder "$m1" "$UDIR/.Junk" >/dev/null; ok $? "sieve-junk: the mail filed before the heal stays in Junk"
fi

# ---------------------------------------------------------------- plus-tag

if want plus-tag; then
	begin plus-tag
	since=$(now_ts)
	fault plus-tag
	q1=$(state_line queue_id 1)
	is "$(dove doveconf -h recipient_delimiter)" "" "plus-tag: Dovecot's recipient_delimiter is empty"
	is "$(ec2x postconf -h recipient_delimiter):$(dellpf postconf -h recipient_delimiter)" "+:+" "plus-tag: both Postfix hops still split at +"
	wait_log ec2 "$since" "$q1: to=<info\+tag@example\.test>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <info\+tag@example\.test> User doesn't exist: info\+tag@example\.test \(in reply to RCPT TO command\)\)" 15 >/dev/null
	ok $? "plus-tag: ec2 log status=bounced, 550 5.1.1 <info+tag@example.test> User doesn't exist"
	inbox_delivery "$U" "$UDIR" "plus-tag: info@ without a tag"
	finish plus-tag
	inbox_delivery "info+tag@example.test" "$UDIR" "plus-tag healed: info+tag@"
fi

# ---------------------------------------------------------------- address-case

if want address-case; then
	begin address-case
	since=$(now_ts)
	fault address-case
	q1=$(state_line queue_id 1)
	is "$(sql "SELECT u.email FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email='$U'")" "" "address-case: the document's user query finds no row"
	is "$(sql "SELECT email, maildir FROM users WHERE LOWER(email)='$U'" | tr '\t' ' ')" "Info@example.test example.test/info/" "address-case: the row is Info@example.test"
	o=$(dove doveadm user "$U" 2>&1); rc=$?
	is "$rc" 67 "address-case: doveadm user info@ exits 67"
	like "$o" "user $re_u doesn't exist" "address-case: doveadm user: doesn't exist"
	like "$(api GET /api/users/$U)" "^404 " "address-case: API GET info@ is 404"
	wait_log ec2 "$since" "$q1: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist: $re_u \(in reply to RCPT TO command\)\)" 15 >/dev/null
	ok $? "address-case: ec2 log status=bounced, 550 5.1.1 User doesn't exist"
	like "$("$LAB" faults --active | tr '\n' ' ')" "^address-case $|^address-case$" "address-case: the only fault seen (not user-missing or user-disabled)"
	finish address-case
fi

# ---------------------------------------------------------------- negative-cache

if want negative-cache; then
	begin negative-cache
	since=$(now_ts)
	fault negative-cache
	q1=$(state_line queue_id 1) q2=$(state_line queue_id 2)
	like "$q1 $q2" "^[0-9A-F]+ [0-9A-F]+$" "negative-cache: the fault sent two messages ($q1 before, $q2 after the user was enabled)"
	is "$(sql "SELECT enabled FROM users WHERE email='$U'")" 1 "negative-cache: SQL enabled=1"
	like "$(api GET /api/users/$U)" '^200 .*"enabled": true' "negative-cache: API: enabled"
	wait_log dell:usermgmt "$since" 'PATCH /api/users/info@example\.test' 5 >/dev/null; ok $? "negative-cache: the user was enabled through the API"
	wait_log ec2 "$since" "$q2: to=<$re_u>, relay=127\.0\.0\.20\[127\.0\.0\.20\]:2525, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist: $re_u \(in reply to RCPT TO command\)\)" 15 >/dev/null
	ok $? "negative-cache: ec2 log: the message sent after enabling bounced, 550 5.1.1"
	o=$(dove doveadm user "$U" 2>&1); rc=$?
	is "$rc" 67 "negative-cache: doveadm user info@ exits 67 (from the cache) while the row is enabled"
	like "$o" "doesn't exist" "negative-cache: doveadm user: doesn't exist"
	lab_send "$U"; ok $? "negative-cache: ec2 accepts another message ($QID)"
	wait_log ec2 "$since" "$QID: .*status=bounced \(host 127\.0\.0\.20\[127\.0\.0\.20\] said: 550 5\.1\.1 <$re_u> User doesn't exist" 15 >/dev/null
	ok $? "negative-cache: ... and it bounces too"
	finish negative-cache
	o=$(dove doveadm user "$U" 2>&1); ok $? "negative-cache healed: doveadm user finds info@" || diag "$o"
fi

# ---------------------------------------------------------------- size-mismatch

if want size-mismatch; then
	begin size-mismatch
	fault size-mismatch
	is "$(ec2x postconf -h message_size_limit):$(dellpf postconf -h message_size_limit)" "10240000:1048576" "size-mismatch: ec2 takes 10240000 bytes, dell 1048576"
	ehlo() { printf 'EHLO outside.test\r\nQUIT\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/$1/25; cat >&3; cat <&3" 2>/dev/null | tr -d '\r'; }
	like "$(ehlo "$LAB_EC2_ADDR")" "250-SIZE 10240000" "size-mismatch: ec2's EHLO: SIZE 10240000"
	like "$(ehlo "$LAB_DELL_ADDR")" "250-SIZE 1048576" "size-mismatch: dell's EHLO: SIZE 1048576"
	mail_size() { printf 'EHLO mx.example.test\r\nMAIL FROM:<sender@outside.test> SIZE=2000000\r\nRSET\r\nQUIT\r\n' |
		timeout 5 bash -c "exec 3<>/dev/tcp/$1/25; cat >&3; cat <&3" 2>/dev/null | tr -d '\r'; }
	like "$(mail_size "$LAB_DELL_ADDR")" "552 5\.3\.4 Message size exceeds fixed limit" "size-mismatch: dell refuses MAIL FROM SIZE=2000000 (552 5.3.4)"
	like "$(mail_size "$LAB_EC2_ADDR")" "250 2\.1\.0 Ok" "size-mismatch: ec2 accepts the same MAIL FROM"
	finish size-mismatch
fi

# ---------------------------------------------------------------- domain-two-classes

if want domain-two-classes; then
	begin domain-two-classes
	since=$(now_ts)
	fault domain-two-classes
	is "$(ec2x postconf -h virtual_alias_domains)" example.test "domain-two-classes: ec2 virtual_alias_domains = example.test"
	like "$(ec2x postconf -h relay_domains)" "example\.test" "domain-two-classes: ... and relay_domains still lists it"
	like "$(cat "$STATE/refusal")" "550 5\.1\.1 <$re_u>: Recipient address rejected: User unknown in virtual alias table" "domain-two-classes: the fault's message was refused 550 5.1.1 User unknown in virtual alias table"
	lab_send "$U"; [ $? -ne 0 ]; ok $? "domain-two-classes: ec2 refuses info@"
	like "$SEND_ERR" "550 5\.1\.1 <$re_u>: Recipient address rejected: User unknown in virtual alias table" "domain-two-classes: reply 550 5.1.1 User unknown in virtual alias table"
	wait_log ec2 "$since" "NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.99\]: 550 5\.1\.1 <$re_u>: Recipient address rejected: User unknown in virtual alias table; from=<sender@outside\.test> to=<$re_u>" 10 >/dev/null
	ok $? "domain-two-classes: ec2 log NOQUEUE reject, User unknown in virtual alias table"
	wait_log ec2 "$since" "warning: do not list domain example\.test in BOTH virtual_alias_domains and relay_domains" 10 >/dev/null
	ok $? "domain-two-classes: ec2 log: do not list domain example.test in BOTH virtual_alias_domains and relay_domains"
	finish domain-two-classes
fi

# ---------------------------------------------------------------- heal all

known() { case $KNOWN in *" $1 "*) return 0 ;; esac; return 1; }
if want heal-all && known sieve-junk && known negative-cache; then
	CURRENT="sieve-junk negative-cache"
	FP0=$(fingerprint)
	o=$("$LAB" fault sieve-junk negative-cache 2>&1); ok $? "two faults: sieve-junk and negative-cache" || diag "$o"
	rm -rf "$LAB_DIR/faults/"*
	t=$(ms); o=$(timeout 300 "$LAB" heal all 2>&1); ok $? "heal all finds and heals both ($(($(ms) - t)) ms)" || diag "$o"
	like "$o" "healed: .*sieve-junk" "heal all names sieve-junk"
	like "$o" "healed: .*negative-cache" "heal all names negative-cache"
	like "$o" "delivery: [0-9.]+ s \(queue id [0-9A-F]+ -> example\.test/info/(new|cur)/" "heal all proved one delivery to info's INBOX"
	[ "$(fingerprint)" = "$FP0" ]; ok $? "heal all: the exact configuration, rows, sieve files and containers"
	CURRENT=""
fi

diag "fault and heal times (heal: lab heal with the bookkeeping deleted):" "$TIMINGS"
done_testing
