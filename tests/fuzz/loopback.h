/* loopback.h: the peer of the network harnesses (fz_smtp.c, fz_dns.c), a thread serving the
 * current fuzz input on 127.0.0.1 (never anything else) so the real client code, sockets,
 * reply reading and parsing included, runs against it.
 *
 *   lb_start(dns)     once: a TCP listener (and for DNS a UDP socket on the same port) on
 *                     127.0.0.1, an ephemeral port; returns the port
 *   lb_set(data, n)   the bytes the next exchanges answer with (copied; call before the client)
 *
 * SMTP (dns = 0): each accepted connection gets the whole input, then a half close; the thread
 * reads until the client closes, so the client sees every byte and then EOF, never a wait.
 * DNS (dns = 1): each UDP query and each TCP query (2-byte length framing) is answered with the
 * input as the reply message, padded to a 12-byte header, with the query's ID copied in and the
 * QR bit set, so the client accepts it as the answer and parses the rest.
 * Depends on: POSIX sockets, pthreads. */
#ifndef FUZZ_LOOPBACK_H
#define FUZZ_LOOPBACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LB_MAX 65535

static struct {
	int tcp, udp, dns, port;
	pthread_mutex_t mu;
	uint8_t data[LB_MAX];
	size_t size;
} lb = { -1, -1, 0, 0, PTHREAD_MUTEX_INITIALIZER, { 0 }, 0 };

static void lb_set(const uint8_t *data, size_t n)
{
	pthread_mutex_lock(&lb.mu);
	lb.size = n < LB_MAX ? n : LB_MAX;
	memcpy(lb.data, data, lb.size);
	pthread_mutex_unlock(&lb.mu);
}

/* The reply to a DNS query of qlen bytes at q: the input with the query's ID, QR set. */
static size_t lb_dns_reply(const uint8_t *q, size_t qlen, uint8_t *out)
{
	size_t n;
	pthread_mutex_lock(&lb.mu);
	n = lb.size < 12 ? 12 : lb.size;
	memset(out, 0, 12);
	memcpy(out, lb.data, lb.size);
	pthread_mutex_unlock(&lb.mu);
	if (qlen >= 2)
		out[0] = q[0], out[1] = q[1];
	out[2] |= 0x80;
	return n;
}

static int lb_read_full(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r, n -= (size_t)r;
	}
	return 0;
}

static void lb_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w, n -= (size_t)w;
	}
}

static void lb_serve_tcp(int fd)
{
	static uint8_t buf[LB_MAX + 2];
	if (lb.dns) {
		uint8_t len[2], q[LB_MAX];
		size_t qlen, n;
		if (lb_read_full(fd, len, 2) != 0)
			return;
		qlen = (size_t)len[0] << 8 | len[1];
		if (lb_read_full(fd, q, qlen) != 0)
			return;
		n = lb_dns_reply(q, qlen, buf + 2);
		buf[0] = (uint8_t)(n >> 8), buf[1] = (uint8_t)n;
		lb_write_all(fd, buf, n + 2);
	} else {
		size_t n;
		pthread_mutex_lock(&lb.mu);
		n = lb.size;
		memcpy(buf, lb.data, n);
		pthread_mutex_unlock(&lb.mu);
		lb_write_all(fd, buf, n);
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, sizeof buf) > 0)
		;
}

static void *lb_thread(void *arg)
{
	static uint8_t q[LB_MAX], reply[LB_MAX];
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { lb.tcp, POLLIN, 0 }, { lb.udp, POLLIN, 0 } };
		if (poll(p, lb.udp >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			int fd = accept(lb.tcp, NULL, NULL);
			if (fd >= 0) {
				lb_serve_tcp(fd);
				close(fd);
			}
		}
		if (lb.udp >= 0 && (p[1].revents & POLLIN)) {
			struct sockaddr_in from;
			socklen_t fl = sizeof from;
			ssize_t r = recvfrom(lb.udp, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
			if (r > 0) {
				size_t n = lb_dns_reply(q, (size_t)r, reply);
				sendto(lb.udp, reply, n, 0, (struct sockaddr *)&from, fl);
			}
		}
	}
	return NULL;
}

static int lb_start(int dns)
{
	pthread_t th;
	int one = 1;

	lb.dns = dns;
	for (int tries = 0; tries < 50; tries++) {   /* DNS: until UDP gets the TCP port too */
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lb.tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lb.tcp < 0 || setsockopt(lb.tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
		    bind(lb.tcp, (struct sockaddr *)&a, sizeof a) != 0 || listen(lb.tcp, 16) != 0 ||
		    getsockname(lb.tcp, (struct sockaddr *)&a, &al) != 0) {
			perror("loopback: tcp");
			abort();
		}
		lb.port = ntohs(a.sin_port);
		if (!dns)
			break;
		lb.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (lb.udp >= 0 && bind(lb.udp, (struct sockaddr *)&a, sizeof a) == 0)
			break;
		if (lb.udp >= 0)
			close(lb.udp);
		close(lb.tcp);
		lb.tcp = lb.udp = -1;
	}
	if (lb.tcp < 0) {
		fprintf(stderr, "loopback: no port free for both TCP and UDP\n");
		abort();
	}
	if (pthread_create(&th, NULL, lb_thread, NULL) != 0)
		abort();
	pthread_detach(th);
	return lb.port;
}

#endif
