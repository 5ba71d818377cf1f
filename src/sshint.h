/* sshint.h: what src/lssh.c (sessions) and src/sshchan.c (channels: exec, streams) share.
 *
 * Every libssh2 session runs in non-blocking mode; every wait goes through ssh_wait(), a poll()
 * on the session socket bounded by an absolute CLOCK_MONOTONIC deadline, so nothing can hang.
 * A session whose operation timed out in the middle of a libssh2 state machine cannot be
 * resumed safely: it is marked dead and closed, and later calls answer code "closed".
 * Depends on: libssh2 (1.10), Lua 5.4. */
#ifndef RUNBOOK_SSHINT_H
#define RUNBOOK_SSHINT_H

#include <libssh2.h>
#include <lua.h>

#define SSH_SESSION_MT "runbook.ssh.session"
#define SSH_CHANNEL_MT "runbook.ssh.channel"

typedef struct {
	LIBSSH2_SESSION *s;    /* NULL once closed */
	int fd;                /* -1 once closed */
	char label[96];        /* "user@host:port" for messages */
} ssh_session;

/* ssh_wait results */
enum { SSH_WAIT_OK = 0, SSH_WAIT_TIMEOUT = -1, SSH_WAIT_ERROR = -2 };

double ssh_now(void);
int ssh_wait(ssh_session *S, double deadline);
/* Idempotent: disconnects politely (bounded), frees the session, closes the socket. */
void ssh_session_close(ssh_session *S, int polite);
/* Pushes nil, "<label>: <what>", code and returns 3. */
int ssh_fail(lua_State *L, ssh_session *S, const char *code, const char *fmt, ...);
/* Rejects option keys not in the NULL-terminated list (raises). */
void ssh_check_options(lua_State *L, int idx, const char *const *allowed);
/* Optional positive number field (seconds); dflt when absent. Raises on a bad value. */
double ssh_opt_seconds(lua_State *L, int idx, const char *name, double dflt);

/* sshchan.c: session methods sess:exec and sess:open, and the channel metatable. */
int ssh_sess_exec(lua_State *L);
int ssh_sess_open(lua_State *L);
void ssh_channel_register(lua_State *L);

#endif
