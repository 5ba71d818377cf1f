# tests/lab/faults.sh - the faults of the mail lab, sourced by tests/lab/lab (and after it,
# tests/lab/faults-more.sh when that file exists).
#
# The contract, for every fault NAME in $FAULTS (function names use _ for -):
#   fault_NAME STATEDIR  break the lab the way the operators' document says it breaks for real
#                        (STATEDIR may keep notes, e.g. the queue id queue-stuck created);
#   heal_NAME STATEDIR   put the lab's KNOWN HEALTHY value back (the lab's own definition:
#                        HEALTHY_* below, the seed rows, the generated configuration), never
#                        only what STATEDIR remembers; idempotent, and correct when STATEDIR is
#                        empty or missing (a killed test); `lab heal all` may call it when the
#                        fault is not active;
#   active_NAME          exit 0 iff the REAL state (postconf, ip rule/route, containers, rows,
#                        DNS answers, queue files, Maildir owners, df) shows the fault. `lab
#                        status`, `lab faults --active`, `lab up` and `lab heal all` use it.
# FAULTS_FIRST lists faults `lab heal all` and `lab up` heal before every other (a stopped
# daemon the other heals need); faults-more.sh extends it. $L/faults/NAME only records who
# applied what: nothing decides on it alone.
# Evidence each fault leaves: tests/lab/README.md, proved by tests/sh/lab-faults.t.

FAULTS="relay-domain-missing relay-transport-wrong mx-missing mx-wrong mx-port-closed dell-unreachable dovecot-down maildir-permissions user-missing user-disabled domain-missing quota-exceeded queue-stuck db-down disk-almost-full"
FAULTS_FIRST=""
# after FAULTS_FIRST: the daemons and the link the other heals need, then the rows users need
FAULTS_ORDER="db-down mx-port-closed dovecot-down dell-unreachable domain-missing user-missing"
valid_fault() { case " $FAULTS " in *" $1 "*) return 0 ;; esac; return 1; }

FAULT_DOMAIN=example.test         # the domain the domain-level faults break
FAULT_USER=$TEST_USER             # the user the user-level faults break
STALE_RELAY_IP=127.0.0.21         # relay-transport-wrong: a stale dell address, nothing listens
ROUTE_TABLE=220                   # dell-unreachable / queue-stuck: the lab's policy routing table
ROUTE_PREF=50
LOCAL_MOVED_PREF=100              # where the `local` lookup goes while the link is cut

# the healthy values, from the lab's own definition (postfix_main_cf, SEED_USERS in tests/lab/lab)
HEALTHY_RELAY_DOMAINS="${DOMAINS// /, }"
HEALTHY_RELAY_TRANSPORT="lmtp:[$DELL_IP]:$LMTP_PORT"
seed_user_field() { # EMAIL 2|3: the seed's enabled (2) or quota (3) of that user
	local u e en q
	for u in "${SEED_USERS[@]}"; do
		read -r e en q <<<"$u"
		[ "$e" = "$1" ] || continue
		if [ "$2" = 2 ]; then echo "$en"; else echo "$q"; fi
		return 0
	done
	return 1
}
HEALTHY_QUOTA=$(seed_user_field "$FAULT_USER" 3)
FILLER_GLOB='.backup-*.tar'       # disk-almost-full's filler, in the root of the mail volume

# heal_order: every fault once, FAULTS_FIRST first, then FAULTS_ORDER, then the rest of FAULTS
heal_order() {
	local f seen=" "
	for f in $FAULTS_FIRST $FAULTS_ORDER $FAULTS; do
		case $seen in *" $f "*) continue ;; esac
		valid_fault "$f" || continue
		seen="$seen$f "
		echo "$f"
	done
}
fn_of() { echo "${1//-/_}"; } # fault name -> function suffix
is_active() { "active_$(fn_of "$1")"; }
# faults_real [LIST]: the faults (of LIST, default all) the real state shows, in heal order. The
# active_ checks only read, so they run side by side: about the time of the slowest one.
faults_real() {
	local f d i=0 n out="" pids=()
	d=$(mktemp -d "${TMPDIR:-/tmp}/lab-active.XXXXXX") || return 1
	for f in ${1-$(heal_order)}; do
		i=$((i + 1))
		( is_active "$f" >/dev/null 2>&1 </dev/null && echo "$f" >"$d/$i" ) &
		pids+=($!)
	done
	[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
	for n in $(seq "$i"); do [ -s "$d/$n" ] && out="$out $(cat "$d/$n")"; done
	rm -rf "$d"
	echo "${out# }"
}

# ---------------------------------------------------------------- helpers

ec2_postconf() { postconf -c "$L/ec2/postfix/etc" -h "$1" 2>/dev/null; } # main.cf as ec2 loads it
ec2_postconf_set() { # NAME VALUE: set and reload, as the operator does inside the container
	if container_running ec2 "$EC2_POSTFIX"; then
		dk_ec2 exec "$EC2_POSTFIX" postconf -e "$1=$2" || return 1
		dk_ec2 exec "$EC2_POSTFIX" postfix reload >/dev/null 2>&1 || return 1
	else # stopped (mx-port-closed): the same file, read when it starts
		postconf -c "$L/ec2/postfix/etc" -e "$1=$2" || return 1
	fi
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
db_up() { mysql_root -e 'SELECT 1' >/dev/null 2>&1; }

# wait_dovecot_ready [--flush-negative]: LMTP listening and Dovecot's userdb answering for the
# fault user. --flush-negative (after the database came back): a "doesn't exist" (doveadm exit 67)
# is a cached answer from the outage: flush the auth cache and ask again
wait_dovecot_ready() {
	wait_port "$DELL_IP" "$LMTP_PORT" 15 || return 1
	local i rc
	for i in $(seq 100); do
		timeout 5 "$DOCKER" -H "unix://$L/dell/docker.sock" exec "$DELL_DOVECOT" doveadm user "$FAULT_USER" >/dev/null 2>&1
		rc=$?
		[ $rc = 0 ] && return 0
		[ $rc = 67 ] && [ "${1:-}" = --flush-negative ] && dovecot_auth_flush
		sleep 0.1
	done
	return 1
}

# dovecot_auth_flush: Dovecot forgets every cached auth/userdb answer (the lab's auth cache keeps
# them an hour, negative ones too): after a fault or heal changes a user's row, Dovecot answers
# from the database again, as `doveadm auth cache flush` makes it for an operator
dovecot_auth_flush() {
	[ "$(timeout 10 "$DOCKER" -H "unix://$L/dell/docker.sock" inspect -f '{{.State.Running}}' "$DELL_DOVECOT" 2>/dev/null)" = true ] || return 0
	timeout 10 "$DOCKER" -H "unix://$L/dell/docker.sock" exec "$DELL_DOVECOT" doveadm auth cache flush >/dev/null 2>&1 ||
		{ warn "doveadm auth cache flush failed"; return 1; }
}

# container_stopped HOST NAME: the container exists and is not running (inspect answers)
container_stopped() { [ "$(timeout 10 "$DOCKER" -H "unix://$L/$1/docker.sock" inspect -f '{{.State.Running}}' "$2" 2>/dev/null)" = false ]; }

# ---------------------------------------------------------------- routing (a link that is down)

# On one kernel every lab address is local, so the "link" between ec2 (127.0.0.10) and dell
# (127.0.0.20) is cut with policy routing: the `local` table lookup moves from preference 0 to
# 100 and, before it, traffic from one host's address to the other's is sent to the lab's table
# 220 whose only routes are `unreachable`: connect() fails with EHOSTUNREACH ("No route to host").
# Every rule is added and deleted by its full specification; whatever looks up table 220 is the
# lab's (deleted as `ip rule show` prints it, so the field order never matters).
rule_add() { # SPEC...: add one rule; an identical rule already there is fine
	local err
	err=$(ip rule add "$@" 2>&1) && return 0
	case $err in *"File exists"*) return 0 ;; esac
	warn "ip rule add $*: $err"
	return 1
}
has_local_at() { [ -n "$(ip rule show pref "$1" table local 2>/dev/null)" ]; }
route_cut() {
	local uid
	uid=$(id -u rbops 2>/dev/null) || return 1
	has_local_at "$LOCAL_MOVED_PREF" || rule_add pref "$LOCAL_MOVED_PREF" table local || return 1
	ip route replace unreachable "$DELL_IP/32" table $ROUTE_TABLE || return 1
	ip route replace unreachable "$EC2_IP/32" table $ROUTE_TABLE || return 1
	rule_add pref $ROUTE_PREF from "$EC2_IP/32" to "$DELL_IP/32" table $ROUTE_TABLE || return 1
	rule_add pref $ROUTE_PREF from "$DELL_IP/32" to "$EC2_IP/32" table $ROUTE_TABLE || return 1
	# On a real EC2 host every process shares the network, not only Postfix (which binds
	# 127.0.0.10): whatever ec2's user runs over SSH (a connection test) loses dell as well.
	rule_add pref $ROUTE_PREF to "$DELL_IP/32" uidrange "$uid-$uid" table $ROUTE_TABLE || return 1
	while has_local_at 0; do ip rule del pref 0 table local || return 1; done
	# connections already open keep their route: end them as a dead link would (Postfix keeps
	# a cached LMTP session for a few seconds and would otherwise deliver through it)
	ss -K -t src "$EC2_IP" dst "$DELL_IP" >/dev/null 2>&1
	ss -K -t src "$DELL_IP" dst "$EC2_IP" >/dev/null 2>&1
	return 0
}
route_is_cut() {
	[ -n "$(ip rule show table $ROUTE_TABLE 2>/dev/null)" ] || [ -n "$(ip route show table $ROUTE_TABLE 2>/dev/null)" ] ||
		has_local_at "$LOCAL_MOVED_PREF" || ! has_local_at 0
}
heal_route() { # back to the kernel's default rules (also run by `lab down`)
	local line pref spec
	# the local lookup at preference 0 first, so that local traffic never goes without it
	has_local_at 0 || ip rule add pref 0 table local || return 1
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		pref=${line%%:*} spec=${line#*:}
		ip rule del pref "$pref" $spec || warn "cannot delete rule '$line'"
	done < <(ip rule show table $ROUTE_TABLE 2>/dev/null)
	while has_local_at "$LOCAL_MOVED_PREF"; do ip rule del pref "$LOCAL_MOVED_PREF" table local || break; done
	ip route flush table $ROUTE_TABLE 2>/dev/null
	! route_is_cut || { warn "routing still cut: $(ip rule show | tr '\n\t' '; ')"; return 1; }
}

# ---------------------------------------------------------------- ec2 Postfix configuration

fault_relay_domain_missing() {
	local cur
	cur=$(ec2_postconf relay_domains) || return 1
	# the domain drops out of relay_domains (as when a hand edit is lost on container rebuild)
	ec2_postconf_set relay_domains "$(printf '%s' "$cur" | tr ', ' '\n\n' | grep -v '^$' | grep -vx "$FAULT_DOMAIN" | paste -sd, - | sed 's/,/, /g')"
}
active_relay_domain_missing() { [ -s "$L/ec2/postfix/etc/main.cf" ] && [ "$(ec2_postconf relay_domains)" != "$HEALTHY_RELAY_DOMAINS" ]; }
heal_relay_domain_missing() {
	active_relay_domain_missing || return 0
	ec2_postconf_set relay_domains "$HEALTHY_RELAY_DOMAINS"
}

fault_relay_transport_wrong() { ec2_postconf_set relay_transport "lmtp:[$STALE_RELAY_IP]:$LMTP_PORT"; }
active_relay_transport_wrong() { [ -s "$L/ec2/postfix/etc/main.cf" ] && [ "$(ec2_postconf relay_transport)" != "$HEALTHY_RELAY_TRANSPORT" ]; }
heal_relay_transport_wrong() {
	if active_relay_transport_wrong; then ec2_postconf_set relay_transport "$HEALTHY_RELAY_TRANSPORT" || return 1; fi
	ec2_flush
}

# ---------------------------------------------------------------- DNS

dns_mx() { dig +time=1 +tries=1 @"$DNS_IP" MX "$FAULT_DOMAIN" 2>/dev/null; }
zone_file_mode() { sed -n '1s/.*(generated by tests\/lab\/lab; mode \([a-z-]*\)).*/\1/p' "$L/dns/zone.conf" 2>/dev/null; }
zone_mode() { # the zone as the other DNS fault, applied with `lab fault` and not healed, wants it
	if [ "$1" != mx-missing ] && fault_active mx-missing; then echo mx-missing
	elif [ "$1" != mx-wrong ] && fault_active mx-wrong; then echo mx-wrong
	else echo ok; fi
}
# dnsmasq does not re-read MX records on SIGHUP: restart it (0.1 s)
fault_mx_missing() { write_zone mx-missing; start_dnsmasq; }
active_mx_missing() {
	[ "$(zone_file_mode)" = mx-missing ] && return 0
	local d
	d=$(dns_mx)
	grep -q 'status: NOERROR' <<<"$d" && ! grep -qE 'IN[[:space:]]+MX[[:space:]]' <<<"$d"
}
heal_mx_missing() { write_zone "$(zone_mode mx-missing)"; start_dnsmasq; }
fault_mx_wrong() { write_zone mx-wrong; start_dnsmasq; }
active_mx_wrong() { [ "$(zone_file_mode)" = mx-wrong ] || grep -qE 'IN[[:space:]]+MX[[:space:]]+[0-9]+ mx-old\.' <<<"$(dns_mx)"; }
heal_mx_wrong() { write_zone "$(zone_mode mx-wrong)"; start_dnsmasq; }

# ---------------------------------------------------------------- containers

fault_mx_port_closed() { dk_ec2 stop -t 5 "$EC2_POSTFIX" >/dev/null; }
active_mx_port_closed() { container_stopped ec2 "$EC2_POSTFIX"; }
heal_mx_port_closed() {
	container_running ec2 "$EC2_POSTFIX" || dk_ec2 start "$EC2_POSTFIX" >/dev/null || return 1
	wait_port "$EC2_IP" 25 15
}

fault_dovecot_down() { dk_dell stop -t 5 "$DELL_DOVECOT" >/dev/null; }
active_dovecot_down() { container_stopped dell "$DELL_DOVECOT"; }
heal_dovecot_down() {
	container_running dell "$DELL_DOVECOT" || dk_dell start "$DELL_DOVECOT" >/dev/null || return 1
	wait_dovecot_ready && ec2_flush && dell_flush
}

# (the auth cache is flushed first, as if its hour had passed: else Dovecot answers for info@ from
# it and the database's absence shows only for users it has not cached)
fault_db_down() { dovecot_auth_flush; dk_dell stop -t 10 "$DELL_MARIADB" >/dev/null; }
active_db_down() { container_stopped dell "$DELL_MARIADB"; }
heal_db_down() {
	container_running dell "$DELL_MARIADB" || dk_dell start "$DELL_MARIADB" >/dev/null || return 1
	local i
	for i in $(seq 300); do db_up && break; sleep 0.05; done
	db_up || return 1
	# Dovecot reconnects on its next lookup; wait until it finds the user before mail is retried.
	# Right after the database returns, Dovecot 2.3.19 can answer 550 5.1.1 for a valid user
	# (LAB-NOTES) and keep that in its auth cache (an hour here), so a "doesn't exist" is flushed
	# and asked again (a reload, as runbooks/container-restart.lua does, would also cut the LMTP
	# sessions waiting on auth: their mail would wait deferred for ec2's next queue run)
	if container_running dell "$DELL_DOVECOT"; then wait_dovecot_ready --flush-negative || return 1; fi
	ec2_flush && dell_flush
}

# ---------------------------------------------------------------- the link between the hosts

fault_dell_unreachable() { route_cut; }
active_dell_unreachable() { route_is_cut; }
heal_dell_unreachable() { heal_route && ec2_flush; }

# ---------------------------------------------------------------- queue

queue_files() { # HOST QUEUE...: the message files in those queues (the spool is bind-mounted here)
	local h=$1 q
	shift
	for q; do find "$L/$h/postfix/spool/$q" -type f 2>/dev/null; done
}
postfix_of() { if [ "$1" = ec2 ]; then echo "$EC2_POSTFIX"; else echo "$DELL_POSTFIX"; fi; }
stuck_count() { { queue_files ec2 deferred hold; queue_files dell deferred hold; } | wc -l; }
queued_in() { [ -n "$(find "$L/$1/postfix/spool/$2" -type f -name "$3" 2>/dev/null)" ]; } # HOST QUEUE QID
# dell unreachable for a moment; one message waits deferred in ec2's queue until a flush
fault_queue_stuck() {
	local msgid qid i
	if ! active_dell_unreachable; then route_cut || return 1; touch "$1/route"; fi
	msgid="<queue-stuck.$(date +%s%N)@outside.test>"
	qid=$(send_mail "$FAULT_USER" "lab fault queue-stuck" "$msgid") || { [ -e "$1/route" ] && heal_route; return 1; }
	printf '%s\n' "$qid" >"$1/queue_id"
	printf '%s\n' "$msgid" >"$1/message_id"
	# wait for the real condition (the message in the deferred queue), not a log line: on a loaded
	# machine the first attempt can come late, and restoring the link before it would deliver it
	for i in $(seq 300); do
		queued_in ec2 deferred "$qid" && break
		sleep 0.1
	done
	# the link is back, but the message keeps waiting for its next retry (minimal_backoff_time)
	if [ -e "$1/route" ]; then heal_route || return 1; rm -f "$1/route"; fi
	queued_in ec2 deferred "$qid" || { warn "queue-stuck: $qid never reached the deferred queue"; return 1; }
}
# active: mail waits (deferred or on hold) in either host's queue
active_queue_stuck() { [ "$(stuck_count)" -gt 0 ]; }
# heal: retry everything now and wait (30 s at most) until nothing waits. Under `heal all`
# (HEAL_ALL=1) what still cannot be delivered is removed (postsuper -d), named on stderr: the
# healthy lab has empty queues.
heal_queue_stuck() {
	local i h left
	[ -e "${1:-/nonexistent}/route" ] && { heal_route || return 1; }
	for h in ec2 dell; do
		[ -n "$(queue_files "$h" hold)" ] && dk "$h" exec "$(postfix_of "$h")" postsuper -H ALL >/dev/null 2>&1
	done
	ec2_flush; dell_flush
	active_dell_unreachable && return 0 # the link is down on purpose: nothing can go yet
	for i in $(seq 300); do
		[ "$(stuck_count)" -eq 0 ] && return 0
		[ $((i % 50)) -eq 0 ] && { ec2_flush; dell_flush; }
		sleep 0.1
	done
	[ "${HEAL_ALL:-0}" = 1 ] || { warn "queue-stuck: $(stuck_count) message(s) still waiting after 30 s"; return 1; }
	for h in ec2 dell; do
		left=$(queue_files "$h" deferred hold | xargs -r -n1 basename | tr '\n' ' ')
		[ -n "$left" ] || continue
		warn "removing undeliverable mail from $h's queue: $left"
		dk "$h" exec "$(postfix_of "$h")" postsuper -d ALL deferred >/dev/null 2>&1
	done
	[ "$(stuck_count)" -eq 0 ]
}

# ---------------------------------------------------------------- Maildir

# maildir_wrong: the first entry of the mail volume (below its root, the filler aside) that vmail
# does not own, or a directory vmail cannot enter
maildir_wrong() {
	mountpoint -q "$L/dell/vmail" || return 0
	find "$L/dell/vmail" -mindepth 1 -path "$L/dell/vmail/$FILLER_GLOB" -prune -o \
		\( ! -user vmail -o ! -group vmail -o \( -type d ! -perm -u=rwx \) -o \( -type f ! -perm -u=r \) \) -print -quit 2>/dev/null
}
fault_maildir_permissions() {
	local d=$L/dell/vmail/$FAULT_DOMAIN
	mkdir -p "$d" || return 1
	# a restore or a copy done as root: the domain's tree owned by root, vmail cannot enter it
	chown -R root:root "$d"
	chmod 0700 "$d"
}
active_maildir_permissions() { [ -n "$(maildir_wrong)" ]; }
heal_maildir_permissions() { # the healthy tree: everything vmail:vmail, dirs u+rwx, files u+r
	local v=$L/dell/vmail
	mountpoint -q "$v" || return 1
	find "$v" -mindepth 1 -path "$v/$FILLER_GLOB" -prune -o \( ! -user vmail -o ! -group vmail \) -exec chown -h vmail:vmail {} + || return 1
	find "$v" -mindepth 1 -type d ! -perm -u=rwx -exec chmod u+rwx {} + || return 1
	find "$v" -mindepth 1 -path "$v/$FILLER_GLOB" -prune -o -type f ! -perm -u=r -exec chmod u+r {} + || return 1
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
}
vmail_pct() { mountpoint -q "$L/dell/vmail" && df -P "$L/dell/vmail" | awk 'NR==2 {sub("%","",$5); print $5}'; }
active_disk_almost_full() { compgen -G "$L/dell/vmail/$FILLER_GLOB" >/dev/null || [ "$(vmail_pct || echo 0)" -ge 90 ]; }
heal_disk_almost_full() {
	rm -f "$L"/dell/vmail/$FILLER_GLOB
	[ "$(vmail_pct || echo 0)" -lt 90 ] || { warn "the mail volume is $(vmail_pct)% full without the filler"; return 1; }
}

# ---------------------------------------------------------------- database rows

# a users row as an INSERT that puts back exactly this row (same id, hash, quota, timestamps)
save_user_rows() { # WHERE-CLAUSE FILE
	db --skip-column-names -e "SELECT CONCAT('INSERT INTO users (id, email, domain_id, password, enabled, maildir, quota, created_at) VALUES (',
		id, ', X''', HEX(email), ''', ', domain_id, ', X''', HEX(password), ''', ', enabled, ', X''', HEX(maildir), ''', ',
		quota, ', ''', created_at, ''');') FROM users WHERE $1" >"$2"
}
# db_count SQL: the number the query returns; fails (no output) when the database does not answer
db_count() { local n; n=$(db -e "$1" 2>/dev/null) && [ -n "$n" ] && echo "$n"; }

# the rows saved by the fault (same ids and hashes) when they are there, then the seed rows
# (tests/lab/lab seed_rows) for whatever is still missing
restore_rows() { # STATEDIR
	if [ -s "${1:-/nonexistent}/domain.sql" ] && [ "$(db_count "SELECT COUNT(*) FROM domains WHERE name='$FAULT_DOMAIN'")" = 0 ]; then
		cat "$1/domain.sql" "$1/users.sql" 2>/dev/null | db 2>/dev/null || warn "saved rows not restored; seeding"
	fi
	if [ -s "${1:-/nonexistent}/users.sql" ] && [ "$(db_count "SELECT COUNT(*) FROM users WHERE email='$FAULT_USER'")" = 0 ]; then
		db <"$1/users.sql" 2>/dev/null || warn "saved row not restored; seeding"
	fi
	seed_rows
}

fault_user_missing() {
	save_user_rows "email='$FAULT_USER'" "$1/users.sql" || return 1
	[ -s "$1/users.sql" ] || { warn "user $FAULT_USER does not exist"; return 1; }
	db -e "DELETE FROM users WHERE email='$FAULT_USER'" && dovecot_auth_flush
}
# (a row in another case is address-case, not a missing user)
active_user_missing() { [ "$(db_count "SELECT COUNT(*) FROM users WHERE LOWER(TRIM(email))='$FAULT_USER'")" = 0 ]; }
heal_user_missing() { restore_rows "$1" || return 1; dovecot_auth_flush; ec2_flush; }

fault_user_disabled() {
	[ "$(db_count "SELECT COUNT(*) FROM users WHERE email='$FAULT_USER'")" = 1 ] || { warn "user $FAULT_USER does not exist"; return 1; }
	db -e "UPDATE users SET enabled=0 WHERE email='$FAULT_USER'" && dovecot_auth_flush
}
active_user_disabled() { [ "$(db_count "SELECT enabled FROM users WHERE email='$FAULT_USER'")" = 0 ]; }
heal_user_disabled() {
	db -e "UPDATE users SET enabled=$(seed_user_field "$FAULT_USER" 2) WHERE email='$FAULT_USER'" || return 1
	dovecot_auth_flush; ec2_flush
}

# the domain row goes, and with it (ON DELETE CASCADE) its users; heal puts back both
fault_domain_missing() {
	db -e "SELECT CONCAT('INSERT INTO domains (id, name, created_at) VALUES (', id, ', X''', HEX(name), ''', ''', created_at, ''');')
		FROM domains WHERE name='$FAULT_DOMAIN'" >"$1/domain.sql" || return 1
	[ -s "$1/domain.sql" ] || { warn "domain $FAULT_DOMAIN does not exist"; return 1; }
	save_user_rows "domain_id=(SELECT id FROM domains WHERE name='$FAULT_DOMAIN')" "$1/users.sql" || return 1
	db -e "DELETE FROM domains WHERE name='$FAULT_DOMAIN'" && dovecot_auth_flush
}
active_domain_missing() { [ "$(db_count "SELECT COUNT(*) FROM domains WHERE name='$FAULT_DOMAIN'")" = 0 ]; }
heal_domain_missing() {
	# whatever was re-created meanwhile (through the API) gives way to the exact old rows
	if [ -s "${1:-/nonexistent}/domain.sql" ] && db_up; then
		{ echo "DELETE FROM domains WHERE name='$FAULT_DOMAIN';"; cat "$1/domain.sql" "$1/users.sql"; } | db || return 1
	fi
	restore_rows "" || return 1
	dovecot_auth_flush; ec2_flush
}

fault_quota_exceeded() {
	[ "$(db_count "SELECT COUNT(*) FROM users WHERE email='$FAULT_USER'")" = 1 ] || { warn "user $FAULT_USER does not exist"; return 1; }
	# the mailbox already holds more than its (now 1 KiB) quota
	db -e "UPDATE users SET quota=1024 WHERE email='$FAULT_USER'" || return 1
	dovecot_auth_flush || return 1 # the cached userdb answer carries the old quota_rule
	local n
	n=$(find "$L/dell/vmail/$FAULT_DOMAIN/${FAULT_USER%@*}"/{new,cur} -type f 2>/dev/null | wc -l)
	[ "$n" -gt 0 ] || { warn "mailbox of $FAULT_USER is empty: the first message will be refused at DATA"; }
	return 0
}
active_quota_exceeded() { local q; q=$(db_count "SELECT quota FROM users WHERE email='$FAULT_USER'") && [ "$q" != "$HEALTHY_QUOTA" ]; }
heal_quota_exceeded() { db -e "UPDATE users SET quota=$HEALTHY_QUOTA WHERE email='$FAULT_USER'" || return 1; dovecot_auth_flush; ec2_flush; }
