/* smtp_conn.c: the SMTP byte stream (smtp_conn.h): plain or TLS, non-blocking, every wait
 * bounded by a deadline (and the run deadline). Depends on: rbaux.h (wait, address parsing,
 * errno codes), OpenSSL. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "rbaux.h"
#include "smtp_conn.h"

static int tls_fail(struct smtp_conn *c, const char *what)
{
	char e[256] = "";
	unsigned long err = ERR_get_error();
	long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	if (vr != X509_V_OK)
		snprintf(e, sizeof e, "certificate: %s", X509_verify_cert_error_string(vr));
	else if (err)
		ERR_error_string_n(err, e, sizeof e);
	else
		snprintf(e, sizeof e, "%s", errno ? strerror(errno) : "connection closed");
	ERR_clear_error();
	return rb_errf(&c->fail, "tls", "%s:%d: %s: %s", c->host, c->port, what, e);
}

/* Waits for what OpenSSL or the socket wants. 0 ready, -1 timeout/error. */
static int wait_io(struct smtp_conn *c, short ev, double deadline, const char *what)
{
	int r = rb_wait_fd(c->fd, ev, deadline);
	if (r > 0)
		return 0;
	if (r == 0 && rb_run_deadline_passed())
		return rb_errf(&c->fail, "timeout", "%s:%d: no %s before the run deadline", c->host, c->port, what);
	if (r == 0)
		return rb_errf(&c->fail, "timeout", "%s:%d: no %s within %.1fs", c->host, c->port, what, c->timeout);
	return rb_errf(&c->fail, "io", "%s:%d: poll: %s", c->host, c->port, strerror(errno));
}

int conn_fill(struct smtp_conn *c, double deadline)
{
	if (c->rpos > 0) {
		memmove(c->in, c->in + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	for (;;) {
		size_t room = sizeof c->in - c->rlen;
		if (c->ssl) {
			int r, e;
			ERR_clear_error();
			r = SSL_read(c->ssl, c->in + c->rlen, (int)room);
			if (r > 0) {
				c->rlen += (size_t)r;
				return r;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, "reply") != 0)
					return -1;
				continue;
			}
			if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
				return rb_errf(&c->fail, "protocol", "%s:%d: connection closed by the server", c->host, c->port);
			return tls_fail(c, "TLS read");
		} else {
			ssize_t r = recv(c->fd, c->in + c->rlen, room, 0);
			if (r > 0) {
				c->rlen += (size_t)r;
				return (int)r;
			}
			if (r == 0)
				return rb_errf(&c->fail, "protocol", "%s:%d: connection closed by the server", c->host, c->port);
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return rb_errf(&c->fail, errno == ECONNRESET ? "protocol" : rb_errno_code(errno),
						 "%s:%d: %s", c->host, c->port, strerror(errno));
			if (wait_io(c, POLLIN, deadline, "reply") != 0)
				return -1;
		}
	}
}

int conn_send_all(struct smtp_conn *c, const char *s, size_t len)
{
	double deadline = rb_deadline_in(c->timeout);
	size_t off = 0;
	while (off < len) {
		if (c->ssl) {
			int r, e;
			ERR_clear_error();
			r = SSL_write(c->ssl, s + off, (int)(len - off > 65536 ? 65536 : len - off));
			if (r > 0) {
				off += (size_t)r;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return tls_fail(c, "TLS write");
			if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, "write progress") != 0)
				return -1;
		} else {
			ssize_t r = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
			if (r > 0) {
				off += (size_t)r;
			} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
				if (wait_io(c, POLLOUT, deadline, "write progress") != 0)
					return -1;
			} else {
				int e = errno;
				return rb_errf(&c->fail, e == EPIPE || e == ECONNRESET ? "protocol" : rb_errno_code(e),
						 "%s:%d: send: %s", c->host, c->port, strerror(e));
			}
		}
	}
	return 0;
}

int conn_start_tls(struct smtp_conn *c, const char *name, int verify, const char *ca)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	double deadline = rb_deadline_in(c->timeout);

	if (c->rlen > c->rpos)
		return rb_errf(&c->fail, "protocol", "%s:%d: bytes sent ahead of the STARTTLS reply (response injection)",
				 c->host, c->port);
	c->sslctx = SSL_CTX_new(TLS_client_method());
	if (c->sslctx == NULL)
		return tls_fail(c, "TLS context");
	SSL_CTX_set_min_proto_version(c->sslctx, TLS1_2_VERSION);
	if (verify) {
		if (ca ? SSL_CTX_load_verify_locations(c->sslctx, ca, NULL) != 1
		       : SSL_CTX_set_default_verify_paths(c->sslctx) != 1)
			return tls_fail(c, "loading CA certificates");
		SSL_CTX_set_verify(c->sslctx, SSL_VERIFY_PEER, NULL);
	}
	c->ssl = SSL_new(c->sslctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return tls_fail(c, "TLS session");
	if (rb_ip_addr(name, 0, &ss, &sl) == 0) {
		if (verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
			return tls_fail(c, "TLS peer address");
	} else {
		SSL_set_tlsext_host_name(c->ssl, name);
		if (verify && SSL_set1_host(c->ssl, name) != 1)
			return tls_fail(c, "TLS peer name");
	}
	for (;;) {
		int r, e;
		ERR_clear_error();
		errno = 0;
		r = SSL_connect(c->ssl);
		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return tls_fail(c, "TLS handshake");
		if (rb_wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) <= 0)
			return rb_errf(&c->fail, "tls", "%s:%d: TLS handshake timed out after %.1fs",
					 c->host, c->port, c->timeout);
	}
}

void conn_peer_subject(struct smtp_conn *c, char *out, size_t n)
{
	X509 *cert = c->ssl ? SSL_get1_peer_certificate(c->ssl) : NULL;
	out[0] = '\0';
	if (cert) {
		X509_NAME_oneline(X509_get_subject_name(cert), out, (int)n);
		X509_free(cert);
	}
}

void conn_release(struct smtp_conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->sslctx)
		SSL_CTX_free(c->sslctx);
	if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->sslctx = NULL;
	c->fd = -1;
}
