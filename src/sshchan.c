/* sshchan.c: command channels on a runbook.ssh session (see lssh.c for the module).
 *
 *   sess:exec(cmd, {timeout=30, max_output=8388608, stdin=STRING})
 *       -> {stdout=, stderr=, status=int|nil, signal=NAME|nil, truncated=bool, ms=}
 *   sess:open(cmd, {timeout=300, max_stderr=65536}) -> channel
 *       ch:read()  -> next stdout chunk (<= 32 KiB), nil at EOF | nil, msg, code
 *       ch:close() -> status|nil, stderr, signal|nil   (idempotent; also __gc, __close)
 *
 * stdout and stderr are kept apart; each is capped at max_output bytes (the rest is read and
 * discarded, truncated = true). stdin (if any) is written, then EOF is sent, always, so a
 * command reading stdin cannot wait forever. `timeout` bounds the whole call from our side:
 * when it fires the session is closed (code "timeout"). It cannot stop the remote command by
 * itself; the Lua layer (runbook.prim.host) prefixes `timeout -k 2 N` to every remote argv so
 * that the server ends the command first. A streaming channel holds at most one 32 KiB chunk
 * plus its stderr cap in memory.
 * Depends on: sshint.h, libssh2, Lua 5.4. */
#include <string.h>

#include <lauxlib.h>

#include "sshint.h"

#define CHUNK 32768
#define STDERR_CAP_MAX (1 << 20)

typedef struct {
	LIBSSH2_CHANNEL *ch;   /* NULL once closed */
	ssh_session *S;        /* the session userdata, kept alive as our user value */
	double deadline;
	int eof, status, has_status;
	char signal[32];
	size_t errlen, errcap;
	int err_truncated;
	char err[];            /* errcap bytes */
} ssh_channel;

/* Growable output in a Lua userdata at stack slot idx: Lua owns the memory, so an error
 * raised while collecting cannot leak it. */
typedef struct {
	int idx;
	char *p;
	size_t len, cap, limit;
	int truncated;
} obuf;

static void obuf_init(lua_State *L, obuf *b, size_t limit)
{
	b->cap = 4096;
	b->p = (char *)lua_newuserdatauv(L, b->cap, 0);
	b->idx = lua_gettop(L);
	b->len = 0;
	b->limit = limit;
	b->truncated = 0;
}

static void obuf_add(lua_State *L, obuf *b, const char *s, size_t n)
{
	if (n > b->limit - b->len) {
		n = b->limit - b->len;
		b->truncated = 1;
	}
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t nc = b->cap * 2;
		char *np;
		while (nc < b->len + n)
			nc *= 2;
		np = (char *)lua_newuserdatauv(L, nc, 0);
		memcpy(np, b->p, b->len);
		lua_replace(L, b->idx);
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Open a session channel and start cmd; NULL with *rc set on failure. */
static LIBSSH2_CHANNEL *start(ssh_session *S, const char *cmd, size_t len, double dl, int *rc)
{
	LIBSSH2_CHANNEL *ch;
	for (;;) {
		ch = libssh2_channel_open_session(S->s);
		if (ch || libssh2_session_last_errno(S->s) != LIBSSH2_ERROR_EAGAIN)
			break;
		if ((*rc = ssh_wait(S, dl)) != SSH_WAIT_OK) {
			*rc = *rc == SSH_WAIT_TIMEOUT ? LIBSSH2_ERROR_TIMEOUT : LIBSSH2_ERROR_SOCKET_RECV;
			return NULL;
		}
	}
	if (ch == NULL) {
		*rc = libssh2_session_last_errno(S->s);
		return NULL;
	}
	while ((*rc = libssh2_channel_process_startup(ch, "exec", 4, cmd, (unsigned)len)) ==
	       LIBSSH2_ERROR_EAGAIN) {
		int w = ssh_wait(S, dl);
		if (w != SSH_WAIT_OK) {
			*rc = w == SSH_WAIT_TIMEOUT ? LIBSSH2_ERROR_TIMEOUT : LIBSSH2_ERROR_SOCKET_RECV;
			return NULL;   /* the caller closes the session, which frees ch */
		}
	}
	if (*rc != 0) {
		for (int i = 0; i < 100 && libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN; i++)
			(void)ssh_wait(S, dl);
		return NULL;
	}
	return ch;
}

/* Close ch after EOF, collect exit status and signal, free it. 0, or a libssh2 error. */
static int finish(ssh_session *S, LIBSSH2_CHANNEL *ch, double dl, int *status, int *has_status,
                  char *sig, size_t signln)
{
	int rc;
	char *name = NULL;
	size_t namelen = 0;

	*sig = '\0';
	while ((rc = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(S, dl) != SSH_WAIT_OK)
			return LIBSSH2_ERROR_TIMEOUT;
	while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(S, dl) != SSH_WAIT_OK)
			return LIBSSH2_ERROR_TIMEOUT;
	*status = libssh2_channel_get_exit_status(ch);
	*has_status = 1;
	if (libssh2_channel_get_exit_signal(ch, &name, &namelen, NULL, NULL, NULL, NULL) == 0 && name) {
		snprintf(sig, signln, "%.*s", (int)namelen, name);
		libssh2_free(S->s, name);
		*has_status = 0;
	}
	while ((rc = libssh2_channel_free(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(S, dl) != SSH_WAIT_OK)
			return LIBSSH2_ERROR_TIMEOUT;
	return 0;
}

static int io_fail(lua_State *L, ssh_session *S, int rc, const char *what, double timeout)
{
	char *em = NULL;
	if (rc == LIBSSH2_ERROR_TIMEOUT) {
		ssh_session_close(S, 0);
		return ssh_fail(L, S, "timeout", "%s timed out after %.3gs (session closed)", what, timeout);
	}
	if (S->s)
		libssh2_session_last_error(S->s, &em, NULL, 0);
	if (rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND ||
	    rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT) {
		char m[256];
		snprintf(m, sizeof m, "%s", em ? em : "connection lost");
		ssh_session_close(S, 0);
		return ssh_fail(L, S, "closed", "%s: %s (session closed)", what, m);
	}
	if (rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED || rc == LIBSSH2_ERROR_CHANNEL_FAILURE)
		return ssh_fail(L, S, "denied", "%s: %s", what, em ? em : "refused by the server");
	return ssh_fail(L, S, "protocol", "%s: %s", what, em ? em : "libssh2 error");
}

static void check_command(lua_State *L, int idx, const char **cmd, size_t *len)
{
	*cmd = luaL_checklstring(L, idx, len);
	luaL_argcheck(L, *len > 0 && memchr(*cmd, '\0', *len) == NULL, idx,
	              "command must be non-empty and contain no NUL byte");
}

static lua_Integer opt_size(lua_State *L, int idx, const char *name, lua_Integer dflt, lua_Integer max)
{
	lua_Integer v = dflt;
	if (lua_isnoneornil(L, idx))
		return v;
	if (lua_getfield(L, idx, name) != LUA_TNIL) {
		int isint;
		v = lua_tointegerx(L, -1, &isint);
		if (!isint || v < 0 || v > max)
			luaL_error(L, "option '%s' must be an integer in 0..%d", name, (int)max);
	}
	lua_pop(L, 1);
	return v;
}

int ssh_sess_exec(lua_State *L)
{
	static const char *const allowed[] = { "timeout", "max_output", "stdin", NULL };
	ssh_session *S = (ssh_session *)luaL_checkudata(L, 1, SSH_SESSION_MT);
	const char *cmd, *in = NULL;
	size_t cmdlen, inlen = 0, inoff = 0;
	double timeout, t0, dl;
	lua_Integer max;
	obuf out, err;
	LIBSSH2_CHANNEL *ch;
	int rc, eof_sent = 0, status = 0, has_status = 0;
	char sig[32], buf[CHUNK];

	check_command(L, 2, &cmd, &cmdlen);
	rb_check_keys(L, 3, allowed, NULL);
	timeout = rb_opt_timeout(L, 3, "timeout", 30);
	max = opt_size(L, 3, "max_output", 8 << 20, (lua_Integer)1 << 30);
	if (!lua_isnoneornil(L, 3)) {
		int t = lua_getfield(L, 3, "stdin");   /* stays on the stack */
		if (t == LUA_TSTRING)
			in = lua_tolstring(L, -1, &inlen);
		else if (t != LUA_TNIL)
			return luaL_error(L, "option 'stdin' must be a string");
	}
	if (S->s == NULL)
		return ssh_fail(L, S, "closed", "session is closed");
	obuf_init(L, &out, (size_t)max);
	obuf_init(L, &err, (size_t)max);
	t0 = rb_mono_now();
	dl = t0 + timeout;
	ch = start(S, cmd, cmdlen, dl, &rc);
	if (ch == NULL)
		return io_fail(L, S, rc, "exec", timeout);

	for (;;) {
		int progress = 0;
		if (!eof_sent) {
			if (inoff < inlen) {
				ssize_t w = libssh2_channel_write(ch, in + inoff, inlen - inoff);
				if (w > 0) {
					inoff += (size_t)w;
					progress = 1;
				} else if (w != LIBSSH2_ERROR_EAGAIN) {
					inoff = inlen;   /* the command stopped reading: not our failure */
				}
			}
			if (inoff == inlen) {
				rc = libssh2_channel_send_eof(ch);
				if (rc == 0 || rc != LIBSSH2_ERROR_EAGAIN) {
					eof_sent = 1;
					progress = 1;
				}
			}
		}
		for (int stream = 0; stream < 2; stream++) {
			for (;;) {
				ssize_t r = libssh2_channel_read_ex(ch, stream ? SSH_EXTENDED_DATA_STDERR : 0,
				                                    buf, sizeof buf);
				if (r > 0) {
					obuf_add(L, stream ? &err : &out, buf, (size_t)r);
					progress = 1;
					continue;
				}
				if (r == 0 || r == LIBSSH2_ERROR_EAGAIN)
					break;
				return io_fail(L, S, (int)r, "exec", timeout);
			}
		}
		if (libssh2_channel_eof(ch))
			break;
		if (!progress && (rc = ssh_wait(S, dl)) != SSH_WAIT_OK)
			return io_fail(L, S, rc == SSH_WAIT_TIMEOUT ? LIBSSH2_ERROR_TIMEOUT
			                                          : LIBSSH2_ERROR_SOCKET_RECV, "exec", timeout);
	}
	rc = finish(S, ch, dl, &status, &has_status, sig, sizeof sig);
	if (rc != 0)
		return io_fail(L, S, rc, "exec", timeout);

	lua_createtable(L, 0, 6);
	lua_pushlstring(L, out.p, out.len);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, err.p, err.len);
	lua_setfield(L, -2, "stderr");
	if (has_status) {
		lua_pushinteger(L, status);
		lua_setfield(L, -2, "status");
	}
	if (*sig) {
		lua_pushstring(L, sig);
		lua_setfield(L, -2, "signal");
	}
	lua_pushboolean(L, out.truncated || err.truncated);
	lua_setfield(L, -2, "truncated");
	lua_pushnumber(L, (rb_mono_now() - t0) * 1000.0);
	lua_setfield(L, -2, "ms");
	return 1;
}

/* ---------------------------------------------------------------- streaming channel */

static ssh_channel *check_channel(lua_State *L)
{
	return (ssh_channel *)luaL_checkudata(L, 1, SSH_CHANNEL_MT);
}

/* The session may have been closed under us: libssh2 freed the channel with it. */
static int channel_alive(ssh_channel *C)
{
	if (C->ch && C->S->s == NULL)
		C->ch = NULL;
	return C->ch != NULL;
}

static void drain_stderr(ssh_channel *C)
{
	char buf[4096];
	ssize_t r;
	while ((r = libssh2_channel_read_stderr(C->ch, buf, sizeof buf)) > 0) {
		size_t n = (size_t)r;
		if (n > C->errcap - C->errlen) {
			n = C->errcap - C->errlen;
			C->err_truncated = 1;
		}
		memcpy(C->err + C->errlen, buf, n);
		C->errlen += n;
	}
}

/* Idempotent release: after EOF a clean close with exit status; before it, an abrupt close
 * (the remote command loses its stdout and ends on its next write). */
static void channel_release(ssh_channel *C, double dl)
{
	if (!channel_alive(C))
		return;
	if (C->eof) {
		if (finish(C->S, C->ch, dl, &C->status, &C->has_status, C->signal, sizeof C->signal) != 0)
			ssh_session_close(C->S, 0);
	} else {
		int rc;
		while ((rc = libssh2_channel_free(C->ch)) == LIBSSH2_ERROR_EAGAIN)
			if (ssh_wait(C->S, dl) != SSH_WAIT_OK) {
				ssh_session_close(C->S, 0);
				break;
			}
	}
	C->ch = NULL;
}

int ssh_sess_open(lua_State *L)
{
	static const char *const allowed[] = { "timeout", "max_stderr", NULL };
	ssh_session *S = (ssh_session *)luaL_checkudata(L, 1, SSH_SESSION_MT);
	const char *cmd;
	size_t cmdlen;
	double timeout;
	lua_Integer errcap;
	ssh_channel *C;
	int rc;

	check_command(L, 2, &cmd, &cmdlen);
	rb_check_keys(L, 3, allowed, NULL);
	timeout = rb_opt_timeout(L, 3, "timeout", 300);
	errcap = opt_size(L, 3, "max_stderr", 65536, STDERR_CAP_MAX);
	if (S->s == NULL)
		return ssh_fail(L, S, "closed", "session is closed");

	C = (ssh_channel *)lua_newuserdatauv(L, sizeof *C + (size_t)errcap, 1);
	memset(C, 0, sizeof *C);
	C->S = S;
	C->errcap = (size_t)errcap;
	C->deadline = rb_mono_now() + timeout;
	luaL_setmetatable(L, SSH_CHANNEL_MT);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);

	C->ch = start(S, cmd, cmdlen, C->deadline, &rc);
	if (C->ch == NULL)
		return io_fail(L, S, rc, "open", timeout);
	while ((rc = libssh2_channel_send_eof(C->ch)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(S, C->deadline) != SSH_WAIT_OK)
			return io_fail(L, S, LIBSSH2_ERROR_TIMEOUT, "open", timeout);
	return 1;
}

static int chan_read(lua_State *L)
{
	ssh_channel *C = check_channel(L);
	char buf[CHUNK];
	if (!channel_alive(C)) {
		if (C->eof) {
			lua_pushnil(L);
			return 1;
		}
		return ssh_fail(L, C->S, "closed", "channel is closed");
	}
	for (;;) {
		ssize_t r;
		int w;
		drain_stderr(C);
		r = libssh2_channel_read(C->ch, buf, sizeof buf);
		if (r > 0) {
			lua_pushlstring(L, buf, (size_t)r);
			return 1;
		}
		if (r != 0 && r != LIBSSH2_ERROR_EAGAIN) {
			C->ch = NULL;   /* freed with the session by io_fail, or left to it */
			return io_fail(L, C->S, (int)r, "read", 0);
		}
		if (libssh2_channel_eof(C->ch)) {
			drain_stderr(C);
			C->eof = 1;
			channel_release(C, C->deadline);
			lua_pushnil(L);
			return 1;
		}
		if ((w = ssh_wait(C->S, C->deadline)) != SSH_WAIT_OK) {
			C->ch = NULL;
			ssh_session_close(C->S, 0);
			return ssh_fail(L, C->S, w == SSH_WAIT_TIMEOUT ? "timeout" : "io",
			                "read: stream deadline passed (session closed)");
		}
	}
}

static int chan_close(lua_State *L)
{
	ssh_channel *C = check_channel(L);
	double dl = rb_mono_now() + 2.0;
	channel_release(C, dl < C->deadline ? dl : C->deadline);
	if (C->has_status)
		lua_pushinteger(L, C->status);
	else
		lua_pushnil(L);
	lua_pushlstring(L, C->err, C->errlen);
	if (*C->signal)
		lua_pushstring(L, C->signal);
	else
		lua_pushnil(L);
	return 3;
}

static int chan_gc(lua_State *L)
{
	ssh_channel *C = check_channel(L);
	channel_release(C, rb_mono_now() + 1.0);
	return 0;
}

static const luaL_Reg channel_methods[] = {
	{ "read", chan_read },
	{ "close", chan_close },
	{ NULL, NULL }
};

static const luaL_Reg channel_meta[] = {
	{ "__gc", chan_gc },
	{ "__close", chan_gc },
	{ NULL, NULL }
};

void ssh_channel_register(lua_State *L)
{
	if (luaL_newmetatable(L, SSH_CHANNEL_MT)) {
		luaL_setfuncs(L, channel_meta, 0);
		luaL_newlib(L, channel_methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
}
