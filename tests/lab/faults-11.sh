# tests/lab/faults-11.sh - the faults of "every part answers, yet the mail goes somewhere else"
# (issue 11): aliases, sieve, the +tag delimiter, address case, Dovecot's negative auth cache,
# size limits and address classes of the two Postfix hops. Sourced by tests/lab/lab after
# tests/lab/faults.sh and tests/lab/faults-more.sh; uses their helpers (db, db_count, dk_*,
# send_mail, postfix_main_cf, write_ec2_aliases, healthy_aliases, dovecot_auth_flush, ...).
#
# The contract (see faults.sh): fault_NAME STATEDIR breaks the lab as it breaks for real and, where
# the evidence is a message, sends one (its queue id and Message-ID in STATEDIR/queue_id,
# STATEDIR/message_id); heal_NAME STATEDIR puts back the lab's known healthy state, idempotent and
# correct with an empty or missing STATEDIR; active_NAME exits 0 iff the REAL state shows the fault.
#
# The lab parts these faults act on (tests/lab/lab, tests/lab/README.md):
# - table `aliases` (source = user@domain or @domain, destination, domain, enabled) in
#   mailserver_usermgmt; seed: abuse@example.test -> postmaster@example.test and the one catch-all
#   @shop.test -> sales@shop.test (harmless: shop.test's one mailbox maps to itself).
#   dell's Postfix reads it: virtual_alias_maps = mysql:/etc/postfix/mysql-virtual-aliases.cf.
#   ec2's Postfix (the MX; on the lab's LMTP path the only Postfix) reads its export:
#   virtual_alias_maps = hash:/etc/postfix/virtual_aliases, written from the table's enabled rows
#   (ORDER BY id) by the lab's sync (sync_ec2_aliases: `lab up`, the faults and heals), as an
#   operator's sync job keeps a gateway's copy. So an alias row acts on both paths.
# - recipient_delimiter = + on both Postfix hops and in Dovecot; message_size_limit = 10240000 on
#   both hops; virtual_alias_domains = (empty) on both hops.
# - Dovecot: auth_cache_size = 1M, auth_cache_ttl = 1 hour, auth_cache_negative_ttl = 1 hour;
#   Pigeonhole sieve in LMTP (sieve = file:~/sieve;active=~/dovecot.sieve; healthy: no script);
#   every enabled seed user has INBOX and Junk, both subscribed.
# - users.email and aliases.source compare byte for byte (utf8mb4_bin).
# Evidence each fault leaves is written above its fault_NAME, proved by tests/sh/lab-faults-11.t.

FAULTS="$FAULTS catchall alias-elsewhere sieve-junk plus-tag address-case negative-cache size-mismatch domain-two-classes"
# a row in another case must be put back before user-missing's heal looks for info@'s row
FAULTS_ORDER="${FAULTS_ORDER/domain-missing/address-case domain-missing}"

F11_CATCHALL_TARGET=postmaster@example.test   # catchall: where @example.test goes
F11_ALIAS_TARGET=sales@shop.test              # alias-elsewhere: where info@ goes
F11_TAG_ADDR=info+tag@example.test            # plus-tag: the tagged address the fault mails
F11_CASE_EMAIL=Info@example.test              # address-case: info@'s row as the fault writes it
F11_DELL_SIZE=1048576                         # size-mismatch: dell's message_size_limit (ec2: 10240000)
F11_SIEVE_NAME=lab-junk                       # sieve-junk: the script's name
F11_DOVECOT_CONF=$L/dell/dovecot/etc/dovecot.conf
F11_UDIR=$L/dell/vmail/$FAULT_DOMAIN/${FAULT_USER%@*}   # info@'s home and Maildir (on the host)

# ---------------------------------------------------------------- helpers

f11_dk() { local h=$1; shift; timeout "${F11_DK_TIMEOUT:-30}" "$DOCKER" -H "unix://$L/$h/docker.sock" "$@"; }
f11_running() { [ "$(f11_dk "$1" inspect -f '{{.State.Running}}' "$2" 2>/dev/null)" = true ]; }
f11_doveadm() { f11_dk dell exec -i "$DELL_DOVECOT" doveadm "$@"; }
f11_etc() { echo "$L/$1/postfix/etc"; }

# the Postfix main.cf of HOST (ec2|dell), read from the file as the instance loads it
f11_cf_get() { postconf -c "$(f11_etc "$1")" -h "$2" 2>/dev/null; }
# f11_cf_line HOST NAME: the exact line the lab's definition writes (exit 1: the lab does not set it)
f11_cf_line() {
	postfix_main_cf "$1" | awk -v n="$2" 'index($0, n " =") == 1 && !found { print; found = 1 } END { exit !found }'
}
# f11_cf_drift HOST NAME: exit 0 if the file's NAME differs from the lab's healthy line
f11_cf_drift() {
	local want
	if want=$(f11_cf_line "$1" "$2"); then
		[ "$(grep -E "^$2[[:space:]]*=" "$(f11_etc "$1")/main.cf")" != "$want" ]
	else
		[ -n "$(postconf -c "$(f11_etc "$1")" -n "$2" 2>/dev/null)" ]
	fi
}
# f11_cf_restore HOST NAME...: the lab's exact line back in place (or the parameter removed with
# its continuation lines when the lab does not set it); exit 0 if anything changed
f11_cf_restore() {
	local h=$1 n want changed=1 tmp etc
	shift
	etc=$(f11_etc "$h")
	for n; do
		f11_cf_drift "$h" "$n" || continue
		want=$(f11_cf_line "$h" "$n") || want=""
		tmp=$(mktemp "$etc/.main.cf.XXXXXX") || return 2
		awk -v n="$n" -v want="$want" '
			skip && /^[ \t]/ { next }
			{ skip = 0 }
			$0 ~ "^" n "[ \t]*=" { skip = 1; if (want != "" && !done) { print want; done = 1 }; next }
			{ print }
			END { if (want != "" && !done) print want }' "$etc/main.cf" >"$tmp" || { rm -f "$tmp"; return 2; }
		chmod 0644 "$tmp" && mv -f "$tmp" "$etc/main.cf" || return 2
		changed=0
	done
	return $changed
}
# in HOST's Postfix container, as the operator: postconf -e, postfix reload
f11_pf() { local h=$1; shift; f11_dk "$h" exec "$(postfix_of "$h")" "$@"; }
f11_pf_reload() { f11_running "$1" "$(postfix_of "$1")" || return 0; f11_pf "$1" postfix reload >/dev/null 2>&1; }
f11_pf_set() { f11_pf "$1" postconf -e "$2=$3" >/dev/null && f11_pf_reload "$1"; }

# f11_sync: the sync job: the aliases table's enabled rows exported to ec2's map, ec2 reloaded
f11_sync() { sync_ec2_aliases; [ $? -le 1 ]; }
# f11_alias_set SOURCE DESTINATION: one alias row (as the admin tool writes it), then the sync
f11_alias_set() {
	db -e "INSERT INTO aliases (source, destination, domain, enabled) VALUES ('$1', '$2', SUBSTRING_INDEX('$1', '@', -1), 1)
		ON DUPLICATE KEY UPDATE destination=VALUES(destination), enabled=1" || return 1
	f11_sync
}
# f11_map_has KEY [EXCEPT-VALUE]: ec2's alias map source has KEY (with a value other than EXCEPT-VALUE)
f11_map_has() { awk -v k="$1" -v x="${2:-}" '$1 == k && $2 != x { f = 1 } END { exit !f }' "$L/ec2/postfix/etc/$EC2_ALIAS_MAP" 2>/dev/null; }
# the healthy aliases: every seed row as the seed has it, the fault's rows gone, the map their export
f11_aliases_heal() { # SQL-WHERE of the rows this fault adds
	db -e "DELETE FROM aliases WHERE $1" || return 1
	seed_rows >/dev/null || return 1
	f11_sync
}

# f11_send RCPT SUBJECT STATEDIR: one message from the outside sender; queue id and Message-ID
# kept in STATEDIR; prints the queue id. A refusal is returned (1) with the reply in STATEDIR/refusal.
f11_send() {
	local msgid qid err
	msgid="<$(printf '%s' "$2" | tr -c 'a-z0-9-' '-').$(date +%s%N)@outside.test>"
	err=$(mktemp) || return 1
	qid=$(send_mail "$1" "lab fault $2" "$msgid" 2>"$err")
	local rc=$?
	[ -d "${3:-}" ] && { printf '%s\n' "$msgid" >>"$3/message_id"; cat "$err" >>"$3/refusal"; }
	rm -f "$err"
	[ $rc -eq 0 ] || return 1
	[ -d "${3:-}" ] && printf '%s\n' "$qid" >>"$3/queue_id"
	echo "$qid"
}
# f11_wait_gone QID SECONDS: ec2 has handed the message on (no queue file of it left: sent or bounced)
f11_wait_gone() {
	local i
	for i in $(seq $(($2 * 10))); do
		[ -z "$(find "$L/ec2/postfix/spool/incoming" "$L/ec2/postfix/spool/active" "$L/ec2/postfix/spool/deferred" \
			-type f -name "$1" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	warn "message $1 still in ec2's queue after $2 s"
	return 1
}
# f11_dovecot_reload: after a dovecot.conf change; waits until LMTP answers for the fault user again
f11_dovecot_reload() {
	f11_running dell "$DELL_DOVECOT" || return 0
	f11_doveadm reload >/dev/null 2>&1 || return 1
	sleep 0.3 # a SIGHUP: the new lmtp/auth processes start behind it
	wait_dovecot_ready
}

# ---------------------------------------------------------------- catchall

# A catch-all for example.test is added (row @example.test -> postmaster@example.test in the
# aliases table, exported to ec2's map) while info@ has no identity entry: Postfix's virtual(5)
# search (user@domain, then @domain) hands info@'s mail to postmaster. The fault sends one message.
# Evidence: accepted; ec2 log `QID: to=<postmaster@example.test>, orig_to=<info@example.test>,
# relay=127.0.0.20[127.0.0.20]:2525, ..., dsn=2.0.0, status=sent (250 2.0.0 <postmaster@example.test>
# SESSION Saved)`; dovecot log `lmtp(postmaster@example.test)<PID><SESSION>: Info: msgid=<...>: saved
# mail to INBOX`; the message in example.test/postmaster/new, not in info's Maildir; ec2
# `postmap -q info@example.test hash:/etc/postfix/virtual_aliases`: nothing (exit 1),
# `postmap -q @example.test hash:/etc/postfix/virtual_aliases` = postmaster@example.test; dell
# `postmap -q @example.test mysql:/etc/postfix/mysql-virtual-aliases.cf` = postmaster@example.test;
# SQL `SELECT destination FROM aliases WHERE source='@example.test'` = postmaster@example.test.
fault_catchall() {
	f11_alias_set "@$FAULT_DOMAIN" "$F11_CATCHALL_TARGET" || return 1
	f11_send "$FAULT_USER" catchall "$1" >/dev/null
}
active_catchall() {
	[ "$(db_count "SELECT COUNT(*) FROM aliases WHERE source='@$FAULT_DOMAIN'")" = 1 ] || f11_map_has "@$FAULT_DOMAIN"
}
heal_catchall() { f11_aliases_heal "source='@$FAULT_DOMAIN'"; }

# ---------------------------------------------------------------- alias-elsewhere

# An alias row in the database sends info@ to another mailbox (info@example.test ->
# sales@shop.test, an old forward nobody removed); dell's Postfix reads it (mysql:) and the sync
# exports it to ec2's map. The fault sends one message.
# Evidence: accepted; ec2 log `QID: to=<sales@shop.test>, orig_to=<info@example.test>,
# relay=127.0.0.20[127.0.0.20]:2525, ..., status=sent (250 2.0.0 <sales@shop.test> SESSION Saved)`;
# dovecot log `lmtp(sales@shop.test)<PID><SESSION>: Info: msgid=<...>: saved mail to INBOX`; the
# message in shop.test/sales/new, not in info's Maildir; SQL `SELECT destination FROM aliases WHERE
# source='info@example.test'` = sales@shop.test; `postmap -q info@example.test` on ec2's
# hash:/etc/postfix/virtual_aliases and on dell's mysql:/etc/postfix/mysql-virtual-aliases.cf =
# sales@shop.test. (The MX-only variant, a hash map of its own, is alias-rewrite.)
fault_alias_elsewhere() {
	f11_alias_set "$FAULT_USER" "$F11_ALIAS_TARGET" || return 1
	f11_send "$FAULT_USER" alias-elsewhere "$1" >/dev/null
}
active_alias_elsewhere() {
	[ "$(db_count "SELECT COUNT(*) FROM aliases WHERE source='$FAULT_USER' AND destination<>'$FAULT_USER'")" = 1 ] ||
		f11_map_has "$FAULT_USER" "$FAULT_USER"
}
heal_alias_elsewhere() { f11_aliases_heal "source='$FAULT_USER' AND destination<>'$FAULT_USER'"; }

# ---------------------------------------------------------------- sieve-junk

# info@'s active sieve script (put and activated with `doveadm sieve put -a`, as ManageSieve or a
# webmail filter page does) files mail from outside.test into Junk. Postfix and Dovecot both say
# "Saved". The fault sends one message.
# Evidence: ec2 log `QID: to=<info@example.test>, relay=127.0.0.20[127.0.0.20]:2525, ..., dsn=2.0.0,
# status=sent (250 2.0.0 <info@example.test> SESSION Saved)`; dovecot log
# `lmtp(info@example.test)<PID><SESSION>: Info: sieve: msgid=<...>: fileinto action: stored mail
# into mailbox 'Junk'`; the message in example.test/info/.Junk/new (not new/ or cur/ of INBOX);
# `doveadm sieve list -u info@example.test` = `lab-junk ACTIVE`; `doveadm search -u info@example.test
# mailbox Junk header message-id <ID>` finds it; `doveadm mailbox list -s -u info@example.test`
# lists Junk (subscribed). On disk: example.test/info/sieve/lab-junk.sieve and the link
# example.test/info/dovecot.sieve -> sieve/lab-junk.sieve.
F11_SIEVE_SCRIPT='require ["fileinto"];
# filed by a rule the user once made: everything from outside.test is spam
if address :domain :is "from" "outside.test" {
  fileinto "Junk";
  stop;
}'
fault_sieve_junk() {
	printf '%s\n' "$F11_SIEVE_SCRIPT" | f11_doveadm sieve put -u "$FAULT_USER" -a "$F11_SIEVE_NAME" || return 1
	f11_send "$FAULT_USER" sieve-junk "$1" >/dev/null
}
# (any script or active link: healthy is none; `doveadm sieve list` alone makes an empty ~/sieve)
active_sieve_junk() {
	local f
	for f in dovecot.sieve .dovecot.sieve; do [ -e "$F11_UDIR/$f" ] || [ -L "$F11_UDIR/$f" ] && return 0; done
	compgen -G "$F11_UDIR/sieve/*.sieve" >/dev/null
}
# healthy: no script at all (the active link, the scripts and their compiled forms go); the mail
# already filed stays where it is, as in a real mailbox
# (.dovecot.sieve too: with the Maildir in the home, Maildir++ takes it for a folder and the quota
# count fails on it, 451 4.2.0 at RCPT; the lab names the link dovecot.sieve for that reason)
heal_sieve_junk() { rm -rf "$F11_UDIR/dovecot.sieve" "$F11_UDIR/dovecot.svbin" "$F11_UDIR/.dovecot.sieve" "$F11_UDIR/.dovecot.svbin" "$F11_UDIR/sieve"; }

# ---------------------------------------------------------------- plus-tag

# Dovecot loses its recipient_delimiter (`recipient_delimiter =` in dovecot.conf, reloaded) while
# both Postfix hops keep `+`: Postfix passes info+tag@example.test unchanged over LMTP and Dovecot
# looks up the whole address. The fault sends one message to info+tag@example.test.
# Evidence: ec2 log `QID: to=<info+tag@example.test>, relay=127.0.0.20[127.0.0.20]:2525, ...,
# dsn=5.1.1, status=bounced (host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <info+tag@example.test>
# User doesn't exist: info+tag@example.test (in reply to RCPT TO command))`; `doveconf -h
# recipient_delimiter` in the dovecot container: empty; `postconf -h recipient_delimiter` on both
# hops: `+`; mail to info@example.test itself is still delivered.
fault_plus_tag() {
	sed -i 's/^recipient_delimiter = .*/recipient_delimiter =/' "$F11_DOVECOT_CONF" || return 1
	grep -qx 'recipient_delimiter =' "$F11_DOVECOT_CONF" || return 1
	f11_dovecot_reload || return 1
	local qid
	qid=$(f11_send "$F11_TAG_ADDR" plus-tag "$1") && f11_wait_gone "$qid" 15
	return 0
}
active_plus_tag() { ! grep -qx 'recipient_delimiter = +' "$F11_DOVECOT_CONF" 2>/dev/null; }
heal_plus_tag() {
	active_plus_tag || return 0
	local tmp
	tmp=$(mktemp "$F11_DOVECOT_CONF.XXXXXX") || return 1
	# the lab's own line back (added after lmtp_rcpt_check_quota when it was removed)
	awk '/^recipient_delimiter[ \t]*=/ { next } { print } /^lmtp_rcpt_check_quota = / { print "recipient_delimiter = +" }' \
		"$F11_DOVECOT_CONF" >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$F11_DOVECOT_CONF" || { rm -f "$tmp"; return 1; }
	f11_dovecot_reload
}

# ---------------------------------------------------------------- address-case

# info@'s row is written Info@example.test (an import that kept the case). users.email compares byte
# for byte, so the document's query and Dovecot's user_query (auth_username_format = %Lu) find no
# row: Dovecot answers as for an unknown user. The fault sends one message.
# Evidence: ec2 log `QID: to=<info@example.test>, relay=127.0.0.20[127.0.0.20]:2525, ..., dsn=5.1.1,
# status=bounced (host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <info@example.test> User doesn't
# exist: info@example.test (in reply to RCPT TO command))`; SQL `SELECT email FROM users WHERE
# email='info@example.test'`: no row, `... WHERE LOWER(email)='info@example.test'` = Info@example.test
# (same id, maildir example.test/info/); `doveadm user info@example.test`: `userdb lookup: user
# info@example.test doesn't exist` (exit 67); API GET /api/users/info@example.test: 404.
fault_address_case() {
	[ "$(db_count "SELECT COUNT(*) FROM users WHERE email='$FAULT_USER'")" = 1 ] || { warn "user $FAULT_USER does not exist"; return 1; }
	db -e "UPDATE users SET email='$F11_CASE_EMAIL' WHERE email='$FAULT_USER'" || return 1
	dovecot_auth_flush || return 1
	local qid
	qid=$(f11_send "$FAULT_USER" address-case "$1") && f11_wait_gone "$qid" 15
	return 0
}
active_address_case() {
	local n
	n=$(db_count "SELECT COUNT(*) FROM users WHERE LOWER(TRIM(email))='$FAULT_USER' AND BINARY email<>'$FAULT_USER'") && [ "$n" -gt 0 ]
}
# the row gets its address back (same id and hash); a row made for info@ meanwhile (through the
# API) gives way to it
heal_address_case() {
	active_address_case || return 0
	db -e "DELETE FROM users WHERE BINARY email='$FAULT_USER'
		AND EXISTS (SELECT 1 FROM (SELECT id FROM users WHERE LOWER(TRIM(email))='$FAULT_USER' AND BINARY email<>'$FAULT_USER') x);
		UPDATE users SET email='$FAULT_USER' WHERE LOWER(TRIM(email))='$FAULT_USER' AND BINARY email<>'$FAULT_USER' LIMIT 1;
		DELETE FROM users WHERE LOWER(TRIM(email))='$FAULT_USER' AND BINARY email<>'$FAULT_USER';" || return 1
	dovecot_auth_flush
	ec2_flush
}

# ---------------------------------------------------------------- negative-cache

# The user is enabled in the database, but Dovecot still refuses it from its negative auth cache
# (auth_cache_negative_ttl = 1 hour). The fault plays the story: info@ is disabled, a message to
# it is refused (Dovecot caches "no such user"), the operator enables it again through the User
# Management API (PATCH {"enabled": true}), a second message is refused all the same.
# STATEDIR/queue_id: the two queue ids (the second is the one refused while the row is enabled).
# Evidence: ec2 log for the second message `QID: to=<info@example.test>, relay=127.0.0.20[127.0.0.20]:2525,
# ..., dsn=5.1.1, status=bounced (host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <info@example.test>
# User doesn't exist: info@example.test (in reply to RCPT TO command))`, logged after the row was
# enabled; SQL `enabled` = 1, API GET enabled true; `doveadm user info@example.test`: `userdb
# lookup: user info@example.test doesn't exist` (exit 67; it asks the same cache);
# `doveconf -h auth_cache_size auth_cache_negative_ttl` = `1 M` / `1 hours`; after `doveadm auth
# cache flush` (the remedy) `doveadm user` finds it and mail is delivered.
fault_negative_cache() {
	[ "$(db_count "SELECT enabled FROM users WHERE email='$FAULT_USER'")" = 1 ] || { warn "user $FAULT_USER is not there and enabled"; return 1; }
	db -e "UPDATE users SET enabled=0 WHERE email='$FAULT_USER'" || return 1
	dovecot_auth_flush || return 1
	local qid out
	qid=$(f11_send "$FAULT_USER" negative-cache-before "$1") && f11_wait_gone "$qid" 15
	out=$(curl -s --noproxy '*' --max-time 10 -X PATCH -H 'Content-Type: application/json' \
		--data '{"enabled": true}' -o /dev/null -w '%{http_code}' "http://$DELL_IP:$API_PORT/api/users/$FAULT_USER")
	[ "$out" = 200 ] || { warn "API PATCH answered $out; enabling with SQL"; db -e "UPDATE users SET enabled=1 WHERE email='$FAULT_USER'" || return 1; }
	qid=$(f11_send "$FAULT_USER" negative-cache "$1") && f11_wait_gone "$qid" 15
	return 0
}
# the row is there and enabled, yet Dovecot's userdb (through its cache) does not find the user
active_negative_cache() {
	[ "$(db_count "SELECT enabled FROM users WHERE email='$FAULT_USER'")" = 1 ] || return 1
	# a stalled dockerd or Dovecot cannot answer: that is their own fault, not this one
	! fm_any_stopped $(fm_dockerd_pids dell) $(fm_dovecot_pids) || return 1
	F11_DK_TIMEOUT=5 f11_running dell "$DELL_DOVECOT" || return 1
	local out
	out=$(F11_DK_TIMEOUT=5 f11_doveadm user "$FAULT_USER" 2>&1)
	[ $? = 67 ] || grep -q "doesn't exist" <<<"$out"
}
heal_negative_cache() { dovecot_auth_flush || return 1; ec2_flush; }

# ---------------------------------------------------------------- size-mismatch

# The MX accepts bigger mail than the mail server's Postfix: dell's message_size_limit is lowered
# to 1048576 (postconf -e, reload) while ec2 keeps 10240000. On the LMTP path nothing refuses yet
# (dell's Postfix is not on it); on the smtp:[dell]:25 path ec2 would accept a 2 MB message and
# dell's Postfix refuse it. A mismatch the pair check finds before mail fails.
# Evidence: `postconf -h message_size_limit`: ec2 10240000, dell 1048576; EHLO at 127.0.0.10:25
# `250-SIZE 10240000`, at 127.0.0.20:25 `250-SIZE 1048576`; `MAIL FROM:<sender@outside.test>
# SIZE=2000000` at dell:25 is answered `552 5.3.4 Message size exceeds fixed limit`, at ec2:25
# `250 2.1.0 Ok`.
fault_size_mismatch() { f11_pf_set dell message_size_limit "$F11_DELL_SIZE"; }
f11_size() { local v; v=$(f11_cf_get "$1" message_size_limit) || return 1; [ "$v" = 0 ] && v=999999999999; echo "$v"; }
active_size_mismatch() {
	local e d
	f11_cf_drift ec2 message_size_limit || f11_cf_drift dell message_size_limit && return 0
	e=$(f11_size ec2) && d=$(f11_size dell) && [ "$e" -gt "$d" ]
}
heal_size_mismatch() {
	local h
	for h in ec2 dell; do
		f11_cf_restore "$h" message_size_limit && { f11_pf_reload "$h" || return 1; }
	done
	return 0
}

# ---------------------------------------------------------------- domain-two-classes

# example.test is also listed in ec2's virtual_alias_domains (it stays in relay_domains). The
# virtual alias class wins: an address of it must be an alias, and info@ is not one.
# Evidence: the sender gets `550 5.1.1 <info@example.test>: Recipient address rejected: User unknown
# in virtual alias table`; ec2 log `NOQUEUE: reject: RCPT from unknown[127.0.0.99]: 550 5.1.1
# <info@example.test>: Recipient address rejected: User unknown in virtual alias table;
# from=<sender@outside.test> to=<info@example.test> proto=ESMTP helo=<outside.test>`, and from
# trivial-rewrite `warning: do not list domain example.test in BOTH virtual_alias_domains and
# relay_domains`; `postconf -h virtual_alias_domains` = example.test, `relay_domains` still lists
# it. The fault sends one message (refused: STATEDIR/refusal).
fault_domain_two_classes() {
	f11_pf_set ec2 virtual_alias_domains "$FAULT_DOMAIN" || return 1
	f11_send "$FAULT_USER" domain-two-classes "$1" >/dev/null
	return 0
}
active_domain_two_classes() { f11_cf_drift ec2 virtual_alias_domains || f11_cf_drift dell virtual_alias_domains; }
heal_domain_two_classes() {
	local h
	for h in ec2 dell; do
		f11_cf_restore "$h" virtual_alias_domains && { f11_pf_reload "$h" || return 1; }
	done
	return 0
}
