/* docker_tunnel.h: the Engine API over an SSH stream-local channel (docker_tunnel.c).
 * Depends on: sshint.h, libssh2, libcurl. */
#ifndef RUNBOOK_DOCKER_TUNNEL_H
#define RUNBOOK_DOCKER_TUNNEL_H

#include <stddef.h>

#include <curl/curl.h>

#include "sshint.h"

struct dk_tunnel {
	ssh_session *S;             /* the Lua session; kept alive by whoever holds this tunnel */
	LIBSSH2_SESSION *sess;      /* S->s when the channel was opened */
	LIBSSH2_CHANNEL *ch;        /* NULL once closed or freed with its session */
	int fd_listen, fd_ours;     /* the one-shot listener; our end of curl's connection */
	char name[80];              /* the listener's abstract name */
	int up_eof, ch_eof, shut, want_out;
	char up[16384];             /* from curl, not yet written to the channel */
	size_t up_len;
	char down[32768];           /* from the channel, not yet written to curl */
	size_t down_pos, down_len;
	const char *code;           /* the failure that ended the tunnel, if any */
	char msg[160];
};

void dk_tunnel_init(struct dk_tunnel *t);
/* Opens the channel to the remote socket path; 0, or -1 with *code and msg set. */
int dk_tunnel_open(struct dk_tunnel *t, ssh_session *S, const char *path, double deadline,
		   const char **code, char *msg, size_t n);
/* Makes curl use the tunnel's socket for its one connection. */
void dk_tunnel_attach(struct dk_tunnel *t, CURL *e);
/* Moves bytes both ways until nothing more can move without waiting; never blocks. */
void dk_tunnel_pump(struct dk_tunnel *t);
/* Fills w (room for 2) with what the pump waits for; returns the count. */
int dk_tunnel_waitfds(struct dk_tunnel *t, struct curl_waitfd *w);
/* Idempotent. */
void dk_tunnel_close(struct dk_tunnel *t);

#endif
