# tests/lab/faults.sh - the faults of the mail lab, sourced by tests/lab/lab.
#
# Each fault NAME has fault_NAME STATEDIR (break the lab the way the operators' document says it
# breaks for real, saving the exact previous value in STATEDIR) and heal_NAME STATEDIR (put that
# value back and make delivery work again). `lab fault` / `lab heal` hold the lab lock and keep
# the bookkeeping ($L/faults/NAME marks an active fault). Every heal is idempotent.
# Evidence each fault leaves: tests/lab/README.md, proved by tests/sh/lab-faults*.t.

FAULTS="relay-domain-missing relay-transport-wrong mx-missing mx-wrong mx-port-closed dell-unreachable dovecot-down maildir-permissions user-missing user-disabled domain-missing quota-exceeded queue-stuck db-down disk-almost-full"
valid_fault() { case " $FAULTS " in *" $1 "*) return 0 ;; esac; return 1; }

FAULT_DOMAIN=example.test         # the domain the domain-level faults break
FAULT_USER=$TEST_USER             # the user the user-level faults break
STALE_RELAY_IP=127.0.0.21         # relay-transport-wrong: a stale dell address, nothing listens
ROUTE_TABLE=220                   # dell-unreachable / queue-stuck: policy routing table
ROUTE_PREF=50

# ---------------------------------------------------------------- helpers

ec2_postconf() { dk_ec2 exec "$EC2_POSTFIX" postconf -h "$1"; }
ec2_postconf_set() { # NAME VALUE: set and reload, as the operator does inside the container
	dk_ec2 exec "$EC2_POSTFIX" postconf -e "$1=$2" || return 1
	dk_ec2 exec "$EC2_POSTFIX" postfix reload >/dev/null 2>&1 || return 1
}
ec2_flush() { # retry now what waits in ec2's queue (also revives a destination marked dead)
	container_running ec2 "$EC2_POSTFIX" && dk_ec2 exec "$EC2_POSTFIX" postqueue -f >/dev/null 2>&1
	return 0
}
dell_flush() {
	container_running dell "$DELL_POSTFIX" && dk_dell exec "$DELL_POSTFIX" postqueue -f >/dev/null 2>&1
	return 0
}
db() { mysql_root "$DB_NAME" "$@"; }

wait_dovecot_ready() { # LMTP listening and Dovecot's userdb answering for the fault user
	wait_port "$DELL_IP" "$LMTP_PORT" 15 || return 1
	local i
	for i in $(seq 100); do
		timeout 5 "$DOCKER" -H "unix://$L/dell/docker.sock" exec "$DELL_DOVECOT" doveadm user "$FAULT_USER" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- routing (a link that is down)

# On one kernel every lab address is local, so the "link" between ec2 (127.0.0.10) and dell
# (127.0.0.20) is cut with policy routing: the `local` table lookup moves from preference 0 to
# 100 and, before it, traffic from one host's address to the other's is sent to a table whose
# only route is `unreachable`: connect() fails with EHOSTUNREACH ("No route to host").
route_cut() {
	ip rule show | grep -q "^100:.*lookup local" || ip rule add pref 100 lookup local || return 1
	ip rule show | grep -q "^0:.*lookup local" && { ip rule del pref 0 lookup local || return 1; }
	ip route replace unreachable "$DELL_IP/32" table $ROUTE_TABLE || return 1
	ip route replace unreachable "$EC2_IP/32" table $ROUTE_TABLE || return 1
	ip rule show | grep -q "^$ROUTE_PREF:.*from $EC2_IP to $DELL_IP" || ip rule add pref $ROUTE_PREF from "$EC2_IP" to "$DELL_IP/32" lookup $ROUTE_TABLE || return 1
	ip rule show | grep -q "^$ROUTE_PREF:.*from $DELL_IP to $EC2_IP" || ip rule add pref $ROUTE_PREF from "$DELL_IP" to "$EC2_IP/32" lookup $ROUTE_TABLE || return 1
	# On a real EC2 host every process shares the network, not only Postfix (which binds
	# 127.0.0.10): whatever ec2's user runs over SSH (a connection test) loses dell as well.
	local uid
	uid=$(id -u rbops 2>/dev/null) || return 1
	ip rule show | grep -q "^$ROUTE_PREF:.*uidrange $uid-$uid.*$DELL_IP" ||
		ip rule add pref $ROUTE_PREF uidrange "$uid-$uid" to "$DELL_IP/32" lookup $ROUTE_TABLE || return 1
	# connections already open keep their route: end them as a dead link would (Postfix keeps
	# a cached LMTP session for a few seconds and would otherwise deliver through it)
	ss -K -t src "$EC2_IP" dst "$DELL_IP" >/dev/null 2>&1
	ss -K -t src "$DELL_IP" dst "$EC2_IP" >/dev/null 2>&1
	return 0
}
heal_route() { # back to the kernel's default rules (also run by `lab down`)
	while ip rule show | grep -q "^$ROUTE_PREF:"; do ip rule del pref $ROUTE_PREF || break; done
	ip route flush table $ROUTE_TABLE 2>/dev/null
	ip rule show | grep -q "^0:.*lookup local" || ip rule add pref 0 lookup local || return 1
	while ip rule show | grep -q "^100:.*lookup local"; do ip rule del pref 100 lookup local || break; done
	return 0
}

# ---------------------------------------------------------------- ec2 Postfix configuration

fault_relay_domain_missing() {
	local cur
	cur=$(ec2_postconf relay_domains) || return 1
	printf '%s\n' "$cur" >"$1/relay_domains"
	# the domain drops out of relay_domains (as when a hand edit is lost on container rebuild)
	ec2_postconf_set relay_domains "$(printf '%s' "$cur" | tr ', ' '\n\n' | grep -v '^$' | grep -vx "$FAULT_DOMAIN" | paste -sd, - | sed 's/,/, /g')"
}
heal_relay_domain_missing() {
	[ -s "$1/relay_domains" ] || return 0
	ec2_postconf_set relay_domains "$(cat "$1/relay_domains")"
}

fault_relay_transport_wrong() {
	ec2_postconf relay_transport >"$1/relay_transport" || return 1
	ec2_postconf_set relay_transport "lmtp:[$STALE_RELAY_IP]:$LMTP_PORT"
}
heal_relay_transport_wrong() {
	[ -s "$1/relay_transport" ] || return 0
	ec2_postconf_set relay_transport "$(cat "$1/relay_transport")" && ec2_flush
}

# ---------------------------------------------------------------- DNS

zone_mode() { # the zone as the active DNS faults (minus $1) want it
	if fault_active mx-missing && [ "$1" != mx-missing ]; then echo mx-missing
	elif fault_active mx-wrong && [ "$1" != mx-wrong ]; then echo mx-wrong
	else echo ok; fi
}
# dnsmasq does not re-read MX records on SIGHUP: restart it (0.1 s)
fault_mx_missing() { write_zone mx-missing; start_dnsmasq; }
heal_mx_missing() { write_zone "$(zone_mode mx-missing)"; start_dnsmasq; }
fault_mx_wrong() { write_zone mx-wrong; start_dnsmasq; }
heal_mx_wrong() { write_zone "$(zone_mode mx-wrong)"; start_dnsmasq; }

# ---------------------------------------------------------------- containers

fault_mx_port_closed() { dk_ec2 stop -t 5 "$EC2_POSTFIX" >/dev/null; }
heal_mx_port_closed() {
	container_running ec2 "$EC2_POSTFIX" || dk_ec2 start "$EC2_POSTFIX" >/dev/null || return 1
	wait_port "$EC2_IP" 25 15
}

fault_dovecot_down() { dk_dell stop -t 5 "$DELL_DOVECOT" >/dev/null; }
heal_dovecot_down() {
	container_running dell "$DELL_DOVECOT" || dk_dell start "$DELL_DOVECOT" >/dev/null || return 1
	wait_dovecot_ready && ec2_flush && dell_flush
}

fault_db_down() { dk_dell stop -t 10 "$DELL_MARIADB" >/dev/null; }
heal_db_down() {
	container_running dell "$DELL_MARIADB" || dk_dell start "$DELL_MARIADB" >/dev/null || return 1
	local i
	for i in $(seq 200); do mysql_root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.05; done
	# Dovecot reconnects on its next lookup; wait for it before mail is retried, so the retry
	# does not meet the 550 that Dovecot 2.3.19 answers right after a reconnect (LAB-NOTES)
	fault_active dovecot-down || { wait_dovecot_ready || return 1; }
	ec2_flush && dell_flush
}

# ---------------------------------------------------------------- the link between the hosts

fault_dell_unreachable() { route_cut; }
heal_dell_unreachable() {
	fault_active queue-stuck && [ -e "$L/faults/queue-stuck.state/route" ] || heal_route || return 1
	ec2_flush
}

# ---------------------------------------------------------------- queue

# dell unreachable for a moment; one message waits deferred in ec2's queue until a flush
fault_queue_stuck() {
	local msgid qid i
	if ! fault_active dell-unreachable; then route_cut || return 1; touch "$1/route"; fi
	msgid="<queue-stuck.$(date +%s%N)@outside.test>"
	qid=$(send_mail "$FAULT_USER" "lab fault queue-stuck" "$msgid") || { [ -e "$1/route" ] && heal_route; return 1; }
	printf '%s\n' "$qid" >"$1/queue_id"
	printf '%s\n' "$msgid" >"$1/message_id"
	# wait for the real condition (the message in the deferred queue), not a log line: on a loaded
	# machine the first attempt can come late, and restoring the link before it would deliver it
	for i in $(seq 150); do
		dk_ec2 exec "$EC2_POSTFIX" postqueue -j 2>/dev/null |
			grep "\"queue_id\": *\"$qid\"" | grep -q '"queue_name": *"deferred"' && break
		sleep 0.2
	done
	# the link is back, but the message keeps waiting for its next retry (minimal_backoff_time)
	if [ -e "$1/route" ]; then heal_route || return 1; rm -f "$1/route"; fi
	dk_ec2 exec "$EC2_POSTFIX" postqueue -j | grep -q "\"queue_id\": *\"$qid\"" || return 1
}
heal_queue_stuck() {
	[ -e "$1/route" ] && { heal_route || return 1; }
	ec2_flush
}

# ---------------------------------------------------------------- Maildir

fault_maildir_permissions() {
	local d=$L/dell/vmail/$FAULT_DOMAIN
	mkdir -p "$d" && [ -s "$1/perms" ] || (cd "$L/dell/vmail" && find "$FAULT_DOMAIN" -printf '%U %G %m %p\n') >"$1/perms" || return 1
	# a restore or a copy done as root: the domain's tree owned by root, vmail cannot enter it
	chown -R root:root "$d"
	chmod 0700 "$d"
}
heal_maildir_permissions() {
	local u g m p
	[ -s "$1/perms" ] || return 0
	while read -r u g m p; do
		chown "$u:$g" "$L/dell/vmail/$p" 2>/dev/null
		chmod "$m" "$L/dell/vmail/$p" 2>/dev/null
	done <"$1/perms"
	ec2_flush
}

fault_disk_almost_full() {
	local total used want
	read -r total used <<<"$(df -P -B1 "$L/dell/vmail" | awk 'NR==2 {print $2, $3}')"
	want=$((total * 93 / 100 - used))
	[ "$want" -gt 0 ] || return 0
	# a big file nobody cleaned up (a backup left in the mail volume): 93 % used
	fallocate -l "$want" "$L/dell/vmail/.backup-$(date +%Y%m%d).tar" 2>/dev/null ||
		head -c "$want" /dev/zero >"$L/dell/vmail/.backup-$(date +%Y%m%d).tar" || return 1
	ls "$L/dell/vmail"/.backup-*.tar >"$1/files"
}
heal_disk_almost_full() {
	local f
	[ -s "$1/files" ] || return 0
	while read -r f; do rm -f "$f"; done <"$1/files"
}

# ---------------------------------------------------------------- database rows

# a users row as an INSERT that puts back exactly this row (same id, hash, quota, timestamps)
save_user_rows() { # WHERE-CLAUSE FILE
	db --skip-column-names -e "SELECT CONCAT('INSERT INTO users (id, email, domain_id, password, enabled, maildir, quota, created_at) VALUES (',
		id, ', X''', HEX(email), ''', ', domain_id, ', X''', HEX(password), ''', ', enabled, ', X''', HEX(maildir), ''', ',
		quota, ', ''', created_at, ''');') FROM users WHERE $1" >"$2"
}

fault_user_missing() {
	save_user_rows "email='$FAULT_USER'" "$1/users.sql" || return 1
	[ -s "$1/users.sql" ] || { warn "user $FAULT_USER does not exist"; return 1; }
	db -e "DELETE FROM users WHERE email='$FAULT_USER'"
}
heal_user_missing() {
	[ -s "$1/users.sql" ] || return 0
	{ echo "DELETE FROM users WHERE email='$FAULT_USER';"; cat "$1/users.sql"; } | db || return 1
	ec2_flush
}

fault_user_disabled() {
	db -e "SELECT enabled FROM users WHERE email='$FAULT_USER'" >"$1/enabled" || return 1
	[ -s "$1/enabled" ] || { warn "user $FAULT_USER does not exist"; return 1; }
	db -e "UPDATE users SET enabled=0 WHERE email='$FAULT_USER'"
}
heal_user_disabled() {
	[ -s "$1/enabled" ] || return 0
	db -e "UPDATE users SET enabled=$(tr -dc 0-9 <"$1/enabled") WHERE email='$FAULT_USER'" && ec2_flush
}

# the domain row goes, and with it (ON DELETE CASCADE) its users; heal puts back both exactly
fault_domain_missing() {
	db -e "SELECT CONCAT('INSERT INTO domains (id, name, created_at) VALUES (', id, ', X''', HEX(name), ''', ''', created_at, ''');')
		FROM domains WHERE name='$FAULT_DOMAIN'" >"$1/domain.sql" || return 1
	[ -s "$1/domain.sql" ] || { warn "domain $FAULT_DOMAIN does not exist"; return 1; }
	save_user_rows "domain_id=(SELECT id FROM domains WHERE name='$FAULT_DOMAIN')" "$1/users.sql" || return 1
	db -e "DELETE FROM domains WHERE name='$FAULT_DOMAIN'"
}
heal_domain_missing() {
	[ -s "$1/domain.sql" ] || return 0
	# whatever was re-created meanwhile (through the API) gives way to the exact old rows
	{ echo "DELETE FROM domains WHERE name='$FAULT_DOMAIN';"; cat "$1/domain.sql" "$1/users.sql"; } | db || return 1
	ec2_flush
}

fault_quota_exceeded() {
	db -e "SELECT quota FROM users WHERE email='$FAULT_USER'" >"$1/quota" || return 1
	[ -s "$1/quota" ] || { warn "user $FAULT_USER does not exist"; return 1; }
	# the mailbox already holds more than its (now 1 KiB) quota
	db -e "UPDATE users SET quota=1024 WHERE email='$FAULT_USER'" || return 1
	local n
	n=$(find "$L/dell/vmail/$FAULT_DOMAIN/${FAULT_USER%@*}"/{new,cur} -type f 2>/dev/null | wc -l)
	[ "$n" -gt 0 ] || { warn "mailbox of $FAULT_USER is empty: the first message will be refused at DATA"; }
	return 0
}
heal_quota_exceeded() {
	[ -s "$1/quota" ] || return 0
	db -e "UPDATE users SET quota=$(tr -dc 0-9 <"$1/quota") WHERE email='$FAULT_USER'" && ec2_flush
}
