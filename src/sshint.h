/* sshint.h: the ssh family's internals. lssh.c (the Lua binding, runbook.ssh) sits on
 * sshchan.c (channels: exec, streams) and ssh_session.c (sessions: waits, close, connect
 * pieces); neither helper calls back into lssh.c. ldocker.c's SSH transport (docker_tunnel.c)
 * uses the session handle and ssh_open_streamlocal().
 *
 * Every libssh2 session runs in non-blocking mode; every wait goes through ssh_wait(), a poll()
 * on the session socket bounded by an absolute rb_mono_now() deadline (and the run deadline:
 * rb_wait_fd), so nothing can hang.
 * A session whose operation timed out in the middle of a libssh2 state machine cannot be
 * resumed safely: it is marked dead and closed, and later calls answer code "closed".
 * Depends on: libssh2 (1.10), Lua 5.4. */
#ifndef RUNBOOK_SSHINT_H
#define RUNBOOK_SSHINT_H

#include <libssh2.h>
#include <lua.h>

#include "rbaux.h"

#define SSH_SESSION_MT "runbook.ssh.session"
#define SSH_CHANNEL_MT "runbook.ssh.channel"

typedef struct {
	LIBSSH2_SESSION *s;    /* NULL once closed */
	int fd;                /* -1 once closed */
	char label[96];        /* "user@host:port" for messages */
} ssh_session;

/* ssh_wait results */
enum { SSH_WAIT_OK = 0, SSH_WAIT_TIMEOUT = -1, SSH_WAIT_ERROR = -2 };

int ssh_wait(ssh_session *S, double deadline);
/* Idempotent: disconnects politely (bounded), frees the session, closes the socket. */
void ssh_session_close(ssh_session *S, int polite);
/* Pushes nil, "<label>: <what>", code and returns 3. */
int ssh_fail(lua_State *L, ssh_session *S, const char *code, const char *fmt, ...);

/* Loop a libssh2 call returning int while it says EAGAIN; rc becomes the result, or
 * LIBSSH2_ERROR_TIMEOUT / LIBSSH2_ERROR_SOCKET_RECV when the wait fails. */
#define SSH_NB(S, dl, rc, expr)                                              \
	while (((rc) = (expr)) == LIBSSH2_ERROR_EAGAIN) {                        \
		int w_ = ssh_wait((S), (dl));                                        \
		if (w_ != SSH_WAIT_OK) {                                             \
			(rc) = w_ == SSH_WAIT_TIMEOUT ? LIBSSH2_ERROR_TIMEOUT            \
			                              : LIBSSH2_ERROR_SOCKET_RECV;       \
			break;                                                           \
		}                                                                    \
	}

/* ssh_session.c: the pieces of ssh.connect. */
/* A connected non-blocking TCP socket (TCP_NODELAY), or -1 with *code and msg set. */
int ssh_tcp_connect(const char *host, int port, double deadline, const char **code,
                    char *msg, size_t n);
/* Offers the host-key types known_hosts holds for name first (avoids a needless mismatch). */
void ssh_prefer_known_types(LIBSSH2_SESSION *s, LIBSSH2_KNOWNHOSTS *kh, const char *name);
/* Strict known_hosts check (accept_new appends an unknown key); 0, or -1 with code/msg. */
int ssh_check_hostkey(ssh_session *S, const char *path, const char *host, int port,
                      int accept_new, const char **code, char *msg, size_t n);
/* ssh-agent authentication: 0 ok, -1 refused, -2 timed out (msg says why). */
int ssh_auth_agent(ssh_session *S, const char *user, const char *sock, double dl, char *msg,
                   size_t n);
/* A "direct-streamlocal@openssh.com" channel to the unix socket path on the server (what
 * libssh2 1.11's libssh2_channel_direct_streamlocal_ex does; Debian 12 ships 1.10). Returns
 * the channel, or NULL with *code ("denied": the server forbids it or cannot connect to the
 * socket; "timeout": the session was closed; "closed", "protocol") and msg set. */
LIBSSH2_CHANNEL *ssh_open_streamlocal(ssh_session *S, const char *path, double deadline,
                                      const char **code, char *msg, size_t n);

/* sshchan.c: session methods sess:exec and sess:open, and the channel metatable. */
int ssh_sess_exec(lua_State *L);
int ssh_sess_open(lua_State *L);
void ssh_channel_register(lua_State *L);

#endif
