/* smtp_conn.h: the byte stream under an SMTP/LMTP dialogue (lsmtp.c): a non-blocking TCP socket,
 * optionally wrapped in TLS after STARTTLS, with a read buffer and a deadline on every read and
 * write. Failures fill code/msg with a stable code (timeout protocol tls io ...). */
#ifndef RUNBOOK_SMTP_CONN_H
#define RUNBOOK_SMTP_CONN_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "rbaux.h"

struct smtp_conn {
	const char *host;          /* numeric IP, for messages */
	int port;
	double timeout;            /* seconds for each reply, each write, the TLS handshake */
	int fd;                    /* -1 when closed */
	SSL_CTX *sslctx;
	SSL *ssl;
	char in[16384];
	size_t rpos, rlen;         /* unread bytes are in[rpos..rlen) */
	struct rb_err fail;         /* set by every failing call (rb_errf) */
};

/* Reads more bytes into c->in before the deadline. Returns > 0, or -1 (EOF is "protocol"). */
int conn_fill(struct smtp_conn *c, double deadline);

/* Writes all of s within c->timeout. Returns 0 or -1. */
int conn_send_all(struct smtp_conn *c, const char *s, size_t len);

/* TLS handshake on the connected socket. name: SNI / the name or IP to verify (when verify);
 * ca: CA file, NULL = system store. Returns 0 or -1 with code "tls" (or "protocol" when the
 * server sent bytes ahead of its STARTTLS reply: response injection). */
int conn_start_tls(struct smtp_conn *c, const char *name, int verify, const char *ca);

/* Subject of the peer certificate into out ("" when none). */
void conn_peer_subject(struct smtp_conn *c, char *out, size_t n);

/* Frees TLS state and closes the socket; idempotent. */
void conn_release(struct smtp_conn *c);

#endif
