#!/bin/bash
# sshd-fixture.sh: throwaway servers on 127.0.0.31 for the ssh primitive's failure tests.
#
#   sshd-fixture.sh up DIR OWNER_PID     private sshd (own host keys, own authorized_keys, user
#                                        rbsshtest with /bin/sh, removed again by down or the
#                                        watchdog when this call created it); prints KEY=value lines
#   sshd-fixture.sh silent DIR OWNER_PID accepts TCP connections and never says a word
#   sshd-fixture.sh backlog DIR OWNER_PID a listener whose accept queue is full: SYNs are dropped
#   sshd-fixture.sh down DIR             kill everything started for DIR, remove DIR
#
# Every daemon is watched: when OWNER_PID (the test) exits, however it exits, a watchdog kills
# the daemons and removes DIR. Only 127.0.0.31 is used. Needs root (sshd, useradd).
set -euo pipefail
ADDR=127.0.0.31
USER_NAME=rbsshtest

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$(( 20000 + RANDOM % 20000 ))
		if ! (exec 3<>/dev/tcp/$ADDR/$p) 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port" >&2; exit 1
}

wait_port() {   # wait_port PORT: until something listens (at most 5 s)
	for _ in $(seq 1 100); do
		if (exec 3<>/dev/tcp/$ADDR/$1) 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "nothing listens on $ADDR:$1" >&2; return 1
}

watch() {   # watch DIR OWNER_PID: background watchdog
	local dir=$1 owner=$2
	setsid bash -c '
		while kill -0 '"$owner"' 2>/dev/null; do sleep 0.5; done
		for f in "'"$dir"'"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
		sleep 0.2
		bash "'"$SELF"'" release-user "'"$dir"'"
		rm -rf "'"$dir"'"' </dev/null >/dev/null 2>&1 &
}

# release_user DIR: the fixture of DIR created the user: remove it, unless another fixture's sshd
# still runs (two test files at once share the user; the last one would leave it, never break it)
release_user() {
	local d pid
	[ -e "$1/created-user" ] || return 0
	for d in /tmp/runbook-test-ssh-*; do
		[ "$d" = "$1" ] && continue
		pid=$(cat "$d/sshd.pid" 2>/dev/null) || continue
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
	done
	pkill -KILL -u "$USER_NAME" 2>/dev/null || true
	userdel "$USER_NAME" 2>/dev/null || true
}

SELF=$(readlink -f "$0")
cmd=${1:?usage}; dir=${2:?dir}
case "$cmd" in
up)
	owner=${3:?owner pid}
	mkdir -p "$dir" /run/sshd
	chmod 700 "$dir"
	# the user exists only while the fixture does: created here, removed by down or the watchdog
	id "$USER_NAME" >/dev/null 2>&1 || {
		useradd -M -d /tmp -s /bin/sh "$USER_NAME"
		usermod -p '*' "$USER_NAME"
		: > "$dir/created-user"
	}
	ssh-keygen -q -t ed25519 -N '' -C fixture-host -f "$dir/host_ed25519"
	ssh-keygen -q -t ed25519 -N '' -C fixture-host2 -f "$dir/host2_ed25519"
	ssh-keygen -q -t ed25519 -N '' -C client -f "$dir/id_ed25519"
	ssh-keygen -q -t ed25519 -N '' -C wrong -f "$dir/wrong_ed25519"
	ssh-keygen -q -t ed25519 -N 'fixture-secret-passphrase' -C locked -f "$dir/locked_ed25519"
	cat "$dir/id_ed25519.pub" "$dir/locked_ed25519.pub" > "$dir/authorized_keys"
	chmod 644 "$dir/authorized_keys"
	chmod 755 "$dir"   # the user must read authorized_keys; StrictModes is off
	port=$(free_port)
	cat > "$dir/sshd_config" <<-EOF
	ListenAddress $ADDR:$port
	HostKey $dir/host_ed25519
	AuthorizedKeysFile $dir/authorized_keys
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	PubkeyAuthentication yes
	UsePAM no
	UseDNS no
	StrictModes no
	PermitRootLogin no
	AllowUsers $USER_NAME
	AllowTcpForwarding yes
	PidFile $dir/sshd.pid
	LogLevel ERROR
	MaxStartups 50
	EOF
	/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
	watch "$dir" "$owner"
	wait_port "$port"
	echo "[$ADDR]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
	echo "[$ADDR]:$port $(cut -d' ' -f1,2 "$dir/host2_ed25519.pub")" > "$dir/known_hosts_changed"
	cat <<-EOF
	HOST=$ADDR
	PORT=$port
	USER=$USER_NAME
	KEY=$dir/id_ed25519
	WRONG_KEY=$dir/wrong_ed25519
	LOCKED_KEY=$dir/locked_ed25519
	LOCKED_PASSPHRASE=fixture-secret-passphrase
	KNOWN_HOSTS=$dir/known_hosts
	KNOWN_HOSTS_CHANGED=$dir/known_hosts_changed
	HOST_PUB=$dir/host_ed25519.pub
	FINGERPRINT=$(ssh-keygen -l -E sha256 -f "$dir/host_ed25519.pub" | cut -d' ' -f2)
	DIR=$dir
	EOF
	;;
silent | backlog)
	owner=${3:?owner pid}
	mkdir -p "$dir"
	port=$(free_port)
	if [ "$cmd" = silent ]; then
		# accepts every connection, keeps it open, never writes
		perl -MIO::Socket::INET -e '
			my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => $ARGV[1],
				Listen => 16, ReuseAddr => 1) or die "listen: $!";
			my @keep; while (my $c = $s->accept) { push @keep, $c }' "$ADDR" "$port" \
			</dev/null >"$dir/listener.log" 2>&1 &
	else
		# listens with a backlog of 1 and never accepts; two connections fill the accept queue,
		# after which the kernel drops every SYN (IO::Socket treats Listen => 0 as 5)
		perl -MIO::Socket::INET -e '
			my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => $ARGV[1],
				Listen => 1, ReuseAddr => 1) or die "listen: $!";
			my @fill; for (1..2) { push @fill, IO::Socket::INET->new(PeerAddr => $ARGV[0],
				PeerPort => $ARGV[1], Timeout => 1) }
			sleep 3600' "$ADDR" "$port" </dev/null >"$dir/listener.log" 2>&1 &
	fi
	echo $! > "$dir/$cmd.pid"
	watch "$dir" "$owner"
	if [ "$cmd" = silent ]; then wait_port "$port"; else sleep 0.3; fi
	echo "PORT=$port"
	;;
down)
	for f in "$dir"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
	sleep 0.1
	release_user "$dir"
	rm -rf "$dir"
	;;
release-user) release_user "$dir" ;;
*) echo "usage: $0 up|silent|backlog|down|release-user DIR [OWNER_PID]" >&2; exit 2 ;;
esac
