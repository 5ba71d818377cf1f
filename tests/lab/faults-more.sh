# tests/lab/faults-more.sh - more faults and the stalls of the mail lab, for the open verdict of
# `undelivered` (issue 10). Sourced by tests/lab/lab after tests/lab/faults.sh; uses its helpers
# (dk_*, spawn, wait_port, write_if_changed, postfix_master_cf, fm_ec2_flush, ...).
#
# The contract (see faults.sh): fault_NAME STATEDIR breaks the lab as it breaks for real;
# heal_NAME STATEDIR puts back the lab's known healthy state, idempotent and correct with an
# empty or missing STATEDIR (a killed test); active_NAME exits 0 iff the REAL state shows the
# fault (config files, processes, their run state), never from bookkeeping.
#
# ec2 configuration faults change ec2's /etc/postfix (= $L/ec2/postfix/etc, mounted into the
# container) with postconf -e / postmap inside the container, as an operator does; heals read and
# write the same files with the host's postconf -c (the same binary), so they are fast and need
# no docker, and restore the exact bytes: a parameter the lab sets goes back to the lab's value
# (postfix_main_cf), one it does not set is removed (postconf -X), map files the lab has not are
# deleted. Stalls stop a daemon with SIGSTOP (heal: SIGCONT) or hold a port with a listener that
# accepts and never answers; those whose daemons other heals need are in FAULTS_FIRST.
# Evidence each fault leaves: tests/lab/README.md, proved by tests/sh/lab-faults-more.t.

FAULTS="$FAULTS mx-recipient-refused alias-rewrite size-limit mail-loop tls-required storage-insufficient transport-unavailable lookup-failure domain-local mx-stall lmtp-stall db-stall dns-stall docker-stall-ec2 docker-stall-dell"
# healed before every other fault, in this order: the docker daemons first (every other heal
# talks to them), then DNS, the database, Dovecot and the MX port
FAULTS_FIRST="docker-stall-ec2 docker-stall-dell dns-stall db-stall lmtp-stall mx-stall ${FAULTS_FIRST:-}"

FM_ETC=$L/ec2/postfix/etc          # ec2's /etc/postfix
FM_DOVECOT_CONF=$L/dell/dovecot/etc/dovecot.conf
FM_STALL=$L/stall                   # listener script and pid files of the port stalls
FM_ALIAS_TARGET=postmaster@example.test      # alias-rewrite: where info@ is sent instead
FM_SIZE_LIMIT=65536                 # size-limit: Dovecot's limit (bytes); ec2 accepts 10240000
FM_BOGUS_TRANSPORT=amavisfeed       # transport-unavailable: a transport not in master.cf

# ---------------------------------------------------------------- helpers

# fm_dk HOST ARGS...: docker of HOST with a time limit (a stalled daemon must not hang a heal)
fm_dk() { local h=$1; shift; timeout "${FM_DK_TIMEOUT:-30}" "$DOCKER" -H "unix://$L/$h/docker.sock" "$@"; }
fm_running() { [ "$(fm_dk "$1" inspect -f '{{.State.Running}}' "$2" 2>/dev/null)" = true ]; }

# ec2 main.cf read from the file: fm_cf_set NAME (set explicitly?), fm_cf_get NAME (its value)
fm_cf_set() { [ -n "$(postconf -c "$FM_ETC" -n "$1" 2>/dev/null)" ]; }
fm_cf_get() { postconf -c "$FM_ETC" -nh "$1" 2>/dev/null; }
# fm_cf_line NAME: the exact line the lab's definition (postfix_main_cf) writes for NAME
# (exit 1: the lab does not set it); awk reads all its input (pipefail and an early exit)
fm_cf_line() {
	postfix_main_cf ec2 | awk -v n="$1" 'index($0, n " =") == 1 && !found { print; found = 1 } END { exit !found }'
}
fm_cf_healthy() { local l; l=$(fm_cf_line "$1") || return 1; l=${l#"$1 ="}; printf '%s\n' "${l# }"; }
# fm_cf_drift NAME: exit 0 if the file's NAME differs from the lab's healthy definition
fm_cf_drift() {
	local want
	if want=$(fm_cf_line "$1"); then
		[ "$(grep -E "^$1[[:space:]]*=" "$FM_ETC/main.cf")" != "$want" ]
	else
		fm_cf_set "$1"
	fi
}
# fm_cf_restore NAME...: back to the lab's exact line, in place (or removed, with its
# continuation lines, when the lab does not set it); exit 0 if anything changed
fm_cf_restore() {
	local n want changed=1 tmp
	for n; do
		fm_cf_drift "$n" || continue
		want=$(fm_cf_line "$n") || want=""
		tmp=$(mktemp "$FM_ETC/.main.cf.XXXXXX") || return 2
		awk -v n="$n" -v want="$want" '
			skip && /^[ \t]/ { next }
			{ skip = 0 }
			$0 ~ "^" n "[ \t]*=" { skip = 1; if (want != "" && !done) { print want; done = 1 }; next }
			{ print }
			END { if (want != "" && !done) print want }' "$FM_ETC/main.cf" >"$tmp" || { rm -f "$tmp"; return 2; }
		chmod 0644 "$tmp" && mv -f "$tmp" "$FM_ETC/main.cf" || return 2
		changed=0
	done
	return $changed
}
# in the container, as the operator: postconf -e, postmap, postfix reload
fm_ec2() { fm_dk ec2 exec "$EC2_POSTFIX" "$@"; }
fm_ec2_set() { fm_ec2 postconf -e "$1=$2" >/dev/null && fm_ec2_reload; }
fm_ec2_flush() { fm_running ec2 "$EC2_POSTFIX" && fm_ec2 postqueue -f >/dev/null 2>&1; return 0; }
fm_ec2_reload() {
	fm_running ec2 "$EC2_POSTFIX" || return 0 # a stopped instance reads main.cf when it starts
	fm_ec2 postfix reload >/dev/null 2>&1
}
fm_ec2_map() { # NAME CONTENT: /etc/postfix/NAME written and postmap'ed (hash:)
	printf '%s\n' "$2" >"$FM_ETC/$1" && fm_ec2 postmap "hash:/etc/postfix/$1"
}
fm_rm_maps() { # NAME...: remove map sources and their .db; exit 0 if anything was there
	local n r=1
	for n; do
		[ -e "$FM_ETC/$n" ] || [ -e "$FM_ETC/$n.db" ] || continue
		rm -f "$FM_ETC/$n" "$FM_ETC/$n.db"; r=0
	done
	return $r
}
fm_maps_exist() { local n; for n; do [ -e "$FM_ETC/$n" ] || [ -e "$FM_ETC/$n.db" ] && return 0; done; return 1; }

# a list parameter (transport_maps) shared by two faults: each adds and removes its own map
fm_list_has() { fm_cf_get "$1" | tr ', ' '\n\n' | grep -qxF -- "$2"; }
fm_list_add() { # PARAM ELEMENT (in the container)
	local cur
	fm_list_has "$1" "$2" && return 0
	cur=$(fm_cf_get "$1")
	fm_ec2 postconf -e "$1=$2${cur:+, $cur}" >/dev/null
}
fm_list_remove() { # PARAM ELEMENT: exit 0 if changed; an empty list goes back to the lab's value
	local rest
	fm_list_has "$1" "$2" || return 1
	rest=$(fm_cf_get "$1" | tr ', ' '\n\n' | grep -v '^$' | grep -vxF -- "$2" | paste -sd, - | sed 's/,/, /g')
	if [ -n "$rest" ]; then postconf -c "$FM_ETC" -e "$1=$rest"
	else fm_cf_restore "$1"; fi
	return 0
}

# processes: state of a pid (R S D T ...), pids by a fixed string in their cmdline
fm_pstate() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }
fm_pids_cmdline() { # FIXED-STRING: one argument of the command line, exactly
	local f p
	for f in $(grep -lsaF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null); do
		p=${f#/proc/}; p=${p%/cmdline}
		tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -- "$1" && echo "$p"
	done
}
# pids of a dell container's main program and its children, found by the host's cgroup (not
# through dockerd: it may be the stalled one): EXE-PREFIX (e.g. /usr/lib/dovecot/ or /usr/sbin/mariadbd)
fm_dell_pids() {
	local p e
	for p in $(cat /sys/fs/cgroup/*/runbook-lab-dell/*/cgroup.procs 2>/dev/null | sort -un); do
		e=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
		for pre; do case $e in "$pre"*) echo "$p"; break ;; esac; done
	done
}
fm_any_stopped() { local p; for p; do [ "$(fm_pstate "$p")" = T ] && return 0; done; return 1; }
fm_signal() { # SIG PID...
	local s=$1 p; shift
	for p; do kill -s "$s" "$p" 2>/dev/null; done
	return 0
}
fm_dovecot_pids() { fm_dell_pids /usr/sbin/dovecot /usr/lib/dovecot/; }
fm_mariadb_pids() { fm_dell_pids /usr/sbin/mariadbd; }
fm_dnsmasq_pids() { fm_pids_cmdline "--conf-file=$L/dns/dnsmasq.conf"; }
fm_dockerd_pids() { fm_pids_cmdline "--pidfile=$L/$1/dockerd.pid"; }

# fm_greets IP PORT SECS: the server sends its first bytes within SECS
fm_greets() {
	timeout "$3" bash -c "exec 3<>/dev/tcp/$1/$2 && head -c 1 <&3 | grep -q ." 2>/dev/null
}

# ---------------------------------------------------------------- mx-recipient-refused

# an access table on the MX refuses one recipient at RCPT:
# 550 5.7.1 <info@example.test>: Recipient address rejected: Access denied
fault_mx_recipient_refused() {
	fm_ec2_map recipient_access "$FAULT_USER 550 5.7.1 Access denied" || return 1
	fm_ec2_set smtpd_recipient_restrictions "check_recipient_access hash:/etc/postfix/recipient_access"
}
active_mx_recipient_refused() { fm_cf_drift smtpd_recipient_restrictions || fm_maps_exist recipient_access; }
heal_mx_recipient_refused() {
	local c=1
	fm_cf_restore smtpd_recipient_restrictions && c=0
	fm_rm_maps recipient_access && c=0
	[ $c = 1 ] || fm_ec2_reload
}

# ---------------------------------------------------------------- alias-rewrite

# a virtual alias on the MX sends info@ to another mailbox (delivered, to someone else):
# to=<postmaster@example.test>, orig_to=<info@example.test>, ... status=sent
fault_alias_rewrite() {
	fm_ec2_map virtual "$FAULT_USER $FM_ALIAS_TARGET" || return 1
	fm_ec2_set virtual_alias_maps "hash:/etc/postfix/virtual"
}
active_alias_rewrite() { fm_cf_drift virtual_alias_maps || fm_maps_exist virtual; }
heal_alias_rewrite() {
	local c=1
	fm_cf_restore virtual_alias_maps && c=0
	fm_rm_maps virtual && c=0
	[ $c = 1 ] || fm_ec2_reload
}

# ---------------------------------------------------------------- size-limit

# Dovecot (the mail server side) refuses mail over 64 KiB that the MX (10 MB) accepts, at end of
# DATA, with a temporary reply (Dovecot 2.3.19): the MX defers and retries until the queue lifetime:
# status=deferred (host 127.0.0.20[127.0.0.20] said: 451 4.2.0 <info@example.test> Mail size is
# larger than the maximum size allowed by server configuration (in reply to end of DATA command)).
# The fault sends one such message (STATEDIR/queue_id, message_id): it waits in ec2's queue.
fault_size_limit() {
	grep -q '^ *quota_max_mail_size *=' "$FM_DOVECOT_CONF" ||
		sed -i "s/^\( *\)quota_rule = \*:storage=0\$/&\n\1quota_max_mail_size = $FM_SIZE_LIMIT/" "$FM_DOVECOT_CONF" || return 1
	grep -q '^ *quota_max_mail_size *=' "$FM_DOVECOT_CONF" || return 1
	fm_dk dell exec "$DELL_DOVECOT" doveadm reload >/dev/null 2>&1 || return 1
	sleep 0.5
	local msgid qid
	msgid="<size-limit.$(date +%s%N)@outside.test>"
	qid=$(fm_send_big "$FAULT_USER" "lab fault size-limit" "$msgid" $((FM_SIZE_LIMIT * 2))) || return 1
	printf '%s\n' "$qid" >"$1/queue_id"
	printf '%s\n' "$msgid" >"$1/message_id"
}
active_size_limit() { grep -q '^ *quota_max_mail_size *=' "$FM_DOVECOT_CONF" 2>/dev/null; }
heal_size_limit() {
	active_size_limit || return 0
	sed -i '/^ *quota_max_mail_size *=/d' "$FM_DOVECOT_CONF" || return 1
	fm_running dell "$DELL_DOVECOT" || return 0
	fm_dk dell exec "$DELL_DOVECOT" doveadm reload >/dev/null 2>&1 || return 1
	sleep 0.3 # the reload is a SIGHUP: let the new lmtp processes start before the retry
	fm_ec2_flush
}
# fm_send_big RCPT SUBJECT MSGID BYTES: a message of about BYTES from the outside sender; prints the queue id
fm_send_big() {
	local body out qid
	body=$(mktemp "$L/.big.XXXXXX") || return 1
	{ printf 'A large message (about %s bytes) from the runbook mail lab.\n' "$4"
	  head -c $(($4 * 3 / 4)) /dev/urandom | base64 -w 76; } >"$body"
	out=$(swaks --server "$EC2_IP:25" --local-interface "$OUT_IP" --helo outside.test \
		--from sender@outside.test --to "$1" --timeout 20 \
		--header "Subject: $2" --header "Message-Id: $3" --body "$body" --suppress-data 2>&1)
	rm -f "$body"
	qid=$(printf '%s\n' "$out" | sed -n 's/^<- *250 .*queued as \([0-9A-Za-z]*\).*/\1/p' | tail -1)
	[ -n "$qid" ] || { printf '%s\n' "$out" | grep -E '^(<\*\*|\*\*\*)' >&2; return 1; }
	echo "$qid"
}

# ---------------------------------------------------------------- transport_maps faults

# mail-loop: a transport entry sends the domain to the MX itself (smtp:[127.0.0.10]:25):
# status=bounced (mail for example.test loops back to myself)
fault_mail_loop() {
	fm_ec2_map transport_relay "$FAULT_DOMAIN smtp:[$EC2_IP]:25" || return 1
	fm_list_add transport_maps hash:/etc/postfix/transport_relay && fm_ec2_reload
}
active_mail_loop() { fm_list_has transport_maps hash:/etc/postfix/transport_relay || fm_maps_exist transport_relay; }
heal_mail_loop() {
	local c=1
	fm_list_remove transport_maps hash:/etc/postfix/transport_relay && c=0
	fm_rm_maps transport_relay && c=0
	[ $c = 1 ] || fm_ec2_reload
}

# transport-unavailable: the domain routed to a transport master.cf does not have:
# qmgr "warning: connect to transport private/amavisfeed: No such file or directory",
# status=deferred (mail transport unavailable)
fault_transport_unavailable() {
	fm_ec2_map transport "$FAULT_DOMAIN $FM_BOGUS_TRANSPORT:[127.0.0.1]:10024" || return 1
	fm_list_add transport_maps hash:/etc/postfix/transport && fm_ec2_reload
}
active_transport_unavailable() { fm_list_has transport_maps hash:/etc/postfix/transport || fm_maps_exist transport; }
heal_transport_unavailable() {
	local c=1
	fm_list_remove transport_maps hash:/etc/postfix/transport && c=0
	fm_rm_maps transport && c=0
	[ $c = 1 ] || { fm_ec2_reload; fm_ec2_flush; }
}

# ---------------------------------------------------------------- tls-required

# the MX demands TLS from the next hop, which offers none (Dovecot LMTP, ssl = no):
# status=deferred (TLS is required, but was not offered by host 127.0.0.20[127.0.0.20])
fault_tls_required() { fm_ec2_set lmtp_tls_security_level encrypt; }
active_tls_required() { fm_cf_drift lmtp_tls_security_level; }
heal_tls_required() { fm_cf_restore lmtp_tls_security_level || return 0; fm_ec2_reload; fm_ec2_flush; }

# ---------------------------------------------------------------- storage-insufficient

# the MX's queue file system has less free space than queue_minfree:
# 452 4.3.1 Insufficient system storage (at MAIL FROM)
fault_storage_insufficient() {
	local free
	free=$(df -P -B1 "$L/ec2/postfix/spool" | awk 'NR==2 {print $4}')
	[ -n "$free" ] || return 1
	# a threshold set for a bigger disk than the one the queue is on: twice the free space
	fm_ec2_set queue_minfree $((free * 2 + 1073741824))
}
active_storage_insufficient() { fm_cf_drift queue_minfree; }
heal_storage_insufficient() { fm_cf_restore queue_minfree || return 0; fm_ec2_reload; }

# ---------------------------------------------------------------- lookup-failure

# a table Postfix cannot open (source written, postmap forgotten): every RCPT for a relay
# domain gets 451 4.3.0 <a@d>: Temporary lookup failure, and smtpd logs
# "hash:/etc/postfix/relay_recipients is unavailable. open database ...: No such file or directory"
fault_lookup_failure() {
	printf '%s OK\n' "$FAULT_USER" "postmaster@$FAULT_DOMAIN" >"$FM_ETC/relay_recipients" || return 1
	rm -f "$FM_ETC/relay_recipients.db"
	fm_ec2_set relay_recipient_maps hash:/etc/postfix/relay_recipients
}
active_lookup_failure() { fm_cf_drift relay_recipient_maps || fm_maps_exist relay_recipients; }
heal_lookup_failure() {
	local c=1
	fm_cf_restore relay_recipient_maps && c=0
	fm_rm_maps relay_recipients && c=0
	[ $c = 1 ] || fm_ec2_reload
}

# ---------------------------------------------------------------- domain-local

# the domain is also in the MX's mydestination: Postfix treats it as local (trivial-rewrite warns
# "do not list domain example.test in BOTH mydestination and relay_domains") and the local
# transport bounces: status=bounced (no local mailboxes on this host)
fault_domain_local() { fm_ec2_set mydestination "$FAULT_DOMAIN"; }
active_domain_local() { fm_cf_drift mydestination; }
heal_domain_local() { fm_cf_restore mydestination || return 0; fm_ec2_reload; }

# ---------------------------------------------------------------- port stalls

# fm_hold_script: a listener that accepts TCP connections and never sends a byte; it reads and
# drops what clients send and closes when they do. argv: ADDR PORT PIDFILE
fm_hold_script() {
	mkdir -p "$FM_STALL" || return 1
	cat >"$FM_STALL/holdport.py" <<-'EOF'
		# tests/lab/faults-more.sh: accept TCP connections and never answer (a stalled daemon)
		import os, selectors, socket, sys, time
		addr, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
		s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		end = time.time() + 15
		while True:
		    try:
		        s.bind((addr, port))
		        break
		    except OSError:
		        if time.time() > end:
		            sys.exit("holdport: cannot bind %s:%d" % (addr, port))
		        time.sleep(0.1)
		s.listen(128)
		with open(pidfile + ".tmp", "w") as f:
		    f.write("%d\n" % os.getpid())
		os.rename(pidfile + ".tmp", pidfile)
		sel = selectors.DefaultSelector()
		sel.register(s, selectors.EVENT_READ)
		while True:
		    for key, _ in sel.select():
		        if key.fileobj is s:
		            c, _ = s.accept()
		            sel.register(c, selectors.EVENT_READ)
		        else:
		            try:
		                data = key.fileobj.recv(65536)
		            except OSError:
		                data = b""
		            if not data:
		                sel.unregister(key.fileobj)
		                key.fileobj.close()
	EOF
}
fm_hold_pids() { fm_pids_cmdline "$FM_STALL/hold-$1-$2.pid"; } # ADDR PORT
fm_hold_start() { # ADDR PORT
	local pf=$FM_STALL/hold-$1-$2.pid i
	[ -n "$(fm_hold_pids "$1" "$2")" ] && return 0
	fm_hold_script || return 1
	rm -f "$pf"
	spawn setsid -f "$PY" "$FM_STALL/holdport.py" "$1" "$2" "$pf" </dev/null >>"$FM_STALL/holdport.log" 2>&1
	for i in $(seq 200); do [ -s "$pf" ] && return 0; sleep 0.1; done
	warn "listener on $1:$2 did not start (see $FM_STALL/holdport.log)"
	return 1
}
fm_hold_stop() { # ADDR PORT: exit 0 if a listener was stopped
	local pids i
	pids=$(fm_hold_pids "$1" "$2")
	[ -n "$pids" ] || { rm -f "$FM_STALL/hold-$1-$2.pid"; return 1; }
	kill $pids 2>/dev/null
	for i in $(seq 50); do [ -z "$(fm_hold_pids "$1" "$2")" ] && break; sleep 0.05; done
	pids=$(fm_hold_pids "$1" "$2"); [ -z "$pids" ] || kill -9 $pids 2>/dev/null
	rm -f "$FM_STALL/hold-$1-$2.pid"
	return 0
}

# mx-stall: ec2's Postfix no longer listens on :25 (the smtp/inet service commented out in
# master.cf) and something else holds 127.0.0.10:25: connections are accepted, no 220 ever comes.
# The container keeps running and its queue works.
fault_mx_stall() {
	fm_ec2 postconf -M# smtp/inet >/dev/null || return 1
	fm_ec2_reload || return 1
	fm_hold_start "$EC2_IP" 25
}
# no master.cf yet is a lab not built yet (a cold `lab up` writes it), not a stalled MX
fm_master_drift() { [ -e "$FM_ETC/master.cf" ] && ! postfix_master_cf | cmp -s - "$FM_ETC/master.cf"; }
active_mx_stall() { [ -n "$(fm_hold_pids "$EC2_IP" 25)" ] || fm_master_drift; }
heal_mx_stall() {
	local c=1
	fm_hold_stop "$EC2_IP" 25 && c=0
	if fm_master_drift; then postfix_master_cf | write_if_changed "$FM_ETC/master.cf" 0644; c=0; fi
	[ $c = 1 ] && return 0
	fm_ec2_reload || return 1
	fm_running ec2 "$EC2_POSTFIX" || return 0
	local i
	for i in $(seq 100); do fm_greets "$EC2_IP" 25 2 && return 0; sleep 0.1; done
	return 1
}

# lmtp-stall: Dovecot hangs (every Dovecot process of the container stopped with SIGSTOP):
# 127.0.0.20:2525 accepts, never greets; the container stays "running"
fault_lmtp_stall() {
	local pids
	pids=$(fm_dovecot_pids)
	[ -n "$pids" ] || { warn "no Dovecot process in dell's containers"; return 1; }
	fm_signal STOP $pids
}
active_lmtp_stall() { fm_any_stopped $(fm_dovecot_pids); }
heal_lmtp_stall() { active_lmtp_stall || return 0; fm_signal CONT $(fm_dovecot_pids); }

# db-stall: MariaDB hangs (mariadbd stopped with SIGSTOP): 127.0.0.20:3306 accepts, never greets
fault_db_stall() {
	local pids
	pids=$(fm_mariadb_pids)
	[ -n "$pids" ] || { warn "no mariadbd in dell's containers"; return 1; }
	dovecot_auth_flush # Dovecot must ask the database, not its auth cache (as db-down)
	fm_signal STOP $pids
}
active_db_stall() { fm_any_stopped $(fm_mariadb_pids); }
heal_db_stall() { active_db_stall || return 0; fm_signal CONT $(fm_mariadb_pids); }

# dns-stall: the lab's dnsmasq stopped (SIGSTOP): queries to 127.0.0.53:53 are received, never answered
fault_dns_stall() {
	local pids
	pids=$(fm_dnsmasq_pids)
	[ -n "$pids" ] || { warn "dnsmasq is not running"; return 1; }
	fm_signal STOP $pids
}
active_dns_stall() { fm_any_stopped $(fm_dnsmasq_pids); }
heal_dns_stall() { active_dns_stall || return 0; fm_signal CONT $(fm_dnsmasq_pids); }

# docker-stall-HOST: that host's dockerd stopped (SIGSTOP): its socket accepts, the Engine API
# never answers (docker ps hangs); the containers keep running and mail keeps flowing
fm_docker_stall() {
	local pids
	pids=$(fm_dockerd_pids "$1")
	[ -n "$pids" ] || { warn "dockerd of $1 is not running"; return 1; }
	fm_signal STOP $pids
}
fm_docker_heal() {
	fm_any_stopped $(fm_dockerd_pids "$1") || return 0
	fm_signal CONT $(fm_dockerd_pids "$1")
	local i
	for i in $(seq 100); do FM_DK_TIMEOUT=3 fm_dk "$1" version >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}
fault_docker_stall_ec2() { fm_docker_stall ec2; }
active_docker_stall_ec2() { fm_any_stopped $(fm_dockerd_pids ec2); }
heal_docker_stall_ec2() { fm_docker_heal ec2; }
fault_docker_stall_dell() { fm_docker_stall dell; }
active_docker_stall_dell() { fm_any_stopped $(fm_dockerd_pids dell); }
heal_docker_stall_dell() { fm_docker_heal dell; }
