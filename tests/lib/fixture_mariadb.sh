#!/bin/bash
# fixture_mariadb.sh: a private throwaway mariadbd on 127.0.0.32 for the runbook.sql tests
# (failure cases the lab cannot give: wrong password, hung reads, hostile data in a scratch table).
#   fixture_mariadb.sh start DIR [tls] -> prints PORT=, SOCK=, USER=, PASSWORD_FILE=, DATABASE= lines
#       with "tls": a self-signed certificate for IP 127.0.0.32 (CA_FILE= line) and TLS enabled
#   fixture_mariadb.sh stop DIR    -> kills that server (by its pid file) and removes DIR
# The server runs under `timeout 600` so a test that dies cannot leave it running for long.
# Depends on: mariadb-server (mariadb-install-db, mariadbd), mariadb-client, openssl (tls).
set -eu
cmd=$1 dir=$2 mode=${3:-}
case "$cmd" in
start)
	mkdir -p "$dir"
	mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
		--auth-root-authentication-method=normal >"$dir/install.log" 2>&1
	head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/Pw-/' >"$dir/password"
	chmod 600 "$dir/password"
	tlsopts=()
	if [ "$mode" = tls ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.32 \
			-addext subjectAltName=IP:127.0.0.32 -keyout "$dir/key.pem" -out "$dir/cert.pem" \
			>/dev/null 2>&1
		tlsopts=(--ssl-cert="$dir/cert.pem" --ssl-key="$dir/key.pem")
	fi
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 20000))
		timeout 600 mariadbd --no-defaults --datadir="$dir/data" --port="$port" \
			--bind-address=127.0.0.32 --socket="$dir/sock" --pid-file="$dir/pid" \
			--skip-name-resolve --user=root --log-error="$dir/err.log" \
			--innodb-buffer-pool-size=16M --skip-log-bin "${tlsopts[@]}" >/dev/null 2>&1 &
		echo $! >"$dir/timeout.pid"
		for _ in $(seq 100); do
			[ -S "$dir/sock" ] && break
			kill -0 "$(cat "$dir/timeout.pid")" 2>/dev/null || break
			sleep 0.05
		done
		[ -S "$dir/sock" ] && break
	done
	[ -S "$dir/sock" ] || { echo "mariadbd did not start: $(tail -3 "$dir/err.log")" >&2; exit 1; }
	mariadb --no-defaults -S "$dir/sock" -uroot <<SQL
DELETE FROM mysql.global_priv WHERE User='';
FLUSH PRIVILEGES;
CREATE USER 'rbtest'@'%' IDENTIFIED BY '$(cat "$dir/password")';
CREATE DATABASE rbtest;
GRANT ALL ON rbtest.* TO 'rbtest'@'%';
SQL
	echo "PORT=$port"
	echo "SOCK=$dir/sock"
	echo "USER=rbtest"
	echo "PASSWORD_FILE=$dir/password"
	echo "DATABASE=rbtest"
	[ "$mode" != tls ] || echo "CA_FILE=$dir/cert.pem"
	;;
stop)
	if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
	if [ -f "$dir/timeout.pid" ]; then
		for _ in $(seq 100); do kill -0 "$(cat "$dir/timeout.pid")" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$(cat "$dir/timeout.pid")" 2>/dev/null || true
	fi
	case "$dir" in /tmp/runbook-test-*) rm -rf "$dir" ;; esac
	;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
