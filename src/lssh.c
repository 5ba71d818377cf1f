/* lssh.c: runbook.ssh, SSH sessions over libssh2 (private to the engine).
 *
 *   ssh.connect{host=, port=22, user=, key=, passphrase=, agent=false, agent_socket=,
 *               known_hosts=, accept_new=false, timeout=10}   -> session | nil, msg, code
 *       (agent_socket defaults to $SSH_AUTH_SOCK; key is tried first, then the agent)
 *   sess:exec(cmd, {timeout=30, max_output=8MiB, stdin=}) -> {stdout, stderr, status, signal,
 *               truncated, ms}                   (sshchan.c)
 *   sess:open(cmd, {timeout=, max_stderr=})     -> channel (ch:read(), ch:close())  (sshchan.c)
 *   sess:tcp_check(host, port, {timeout=10})    -> {ms=} | nil, msg, code (direct-tcpip)
 *   sess:close() / __gc / __close ; sess:is_open()
 *   ssh.quote(argv)                             -> one POSIX-shell-safe command string
 *
 * The TCP connection is non-blocking with TCP_NODELAY; connect, handshake, auth and every
 * channel operation are bounded by the caller's timeout through ssh_wait(). Host keys are
 * checked strictly against known_hosts (OpenSSH format); an unknown key is accepted and
 * appended only with accept_new=true, a changed key never. Codes: timeout refused unreachable
 * auth hostkey protocol io closed denied. The host must be a numeric address (no resolver).
 * This file is the Lua binding only; the session machinery is ssh_session.c, channels sshchan.c.
 * Depends on: sshint.h, ssh_session.c, sshchan.c, libssh2, Lua 5.4. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "sshint.h"

static const char *opt_string(lua_State *L, int idx, const char *name, int required)
{
	const char *s = NULL;
	int t = lua_getfield(L, idx, name);   /* left on the stack: the string stays alive */
	if (t == LUA_TSTRING) {
		s = lua_tostring(L, -1);
		if (strlen(s) != lua_rawlen(L, -1) || *s == '\0')
			luaL_error(L, "option '%s' must be a non-empty string without NUL", name);
	} else if (t != LUA_TNIL || required)
		luaL_error(L, "option '%s' must be a string", name);
	return s;
}

static int opt_bool(lua_State *L, int idx, const char *name)
{
	int t = lua_getfield(L, idx, name), v;
	if (t != LUA_TNIL && t != LUA_TBOOLEAN)
		luaL_error(L, "option '%s' must be a boolean", name);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

static ssh_session *check_session(lua_State *L, int idx)
{
	return (ssh_session *)luaL_checkudata(L, idx, SSH_SESSION_MT);
}

/* ---------------------------------------------------------------- connect */

static int ssh_connect(lua_State *L)
{
	static const char *const allowed[] = { "host", "port", "user", "key", "passphrase", "agent",
		"agent_socket", "known_hosts", "accept_new", "timeout", NULL };
	const char *host, *user, *key, *pass, *kh_path, *agent_sock, *code = "io";
	int port, agent, accept_new, rc;
	double timeout, dl;
	ssh_session *S;
	char msg[512], name[300];

	luaL_checktype(L, 1, LUA_TTABLE);
	rb_check_keys(L, 1, allowed, NULL);
	host = opt_string(L, 1, "host", 1);
	user = opt_string(L, 1, "user", 1);
	key = opt_string(L, 1, "key", 0);
	pass = opt_string(L, 1, "passphrase", 0);
	kh_path = opt_string(L, 1, "known_hosts", 1);
	agent_sock = opt_string(L, 1, "agent_socket", 0);
	lua_getfield(L, 1, "port");
	port = lua_isnil(L, -1) ? 22 : (int)luaL_checkinteger(L, -1);
	lua_pop(L, 1);
	if (port < 1 || port > 65535)
		return luaL_error(L, "option 'port' must be in 1..65535");
	agent = opt_bool(L, 1, "agent");
	accept_new = opt_bool(L, 1, "accept_new");
	timeout = rb_opt_timeout(L, 1, "timeout", 10);
	if (!key && !agent)
		return luaL_error(L, "ssh.connect: give 'key' or 'agent = true'");

	/* Created closed, acquired second: __gc releases whatever was acquired. */
	S = (ssh_session *)lua_newuserdatauv(L, sizeof *S, 0);
	S->s = NULL;
	S->fd = -1;
	snprintf(S->label, sizeof S->label, "%s@%s:%d", user, host, port);
	luaL_setmetatable(L, SSH_SESSION_MT);

	dl = rb_mono_now() + timeout;
	S->fd = ssh_tcp_connect(host, port, dl, &code, msg, sizeof msg);
	if (S->fd < 0)
		return ssh_fail(L, S, code, "%s", msg);
	S->s = libssh2_session_init();
	if (S->s == NULL) {
		ssh_session_close(S, 0);
		return ssh_fail(L, S, "io", "cannot create libssh2 session");
	}
	libssh2_session_set_blocking(S->s, 0);
	if (port == 22)
		snprintf(name, sizeof name, "%s", host);
	else
		snprintf(name, sizeof name, "[%s]:%d", host, port);
	{
		LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(S->s);
		if (kh) {
			if (access(kh_path, R_OK) == 0 &&
			    libssh2_knownhost_readfile(kh, kh_path, LIBSSH2_KNOWNHOST_FILE_OPENSSH) >= 0)
				ssh_prefer_known_types(S->s, kh, name);
			libssh2_knownhost_free(kh);
		}
	}
	SSH_NB(S, dl, rc, libssh2_session_handshake(S->s, S->fd));
	if (rc != 0) {
		char *em = NULL;
		libssh2_session_last_error(S->s, &em, NULL, 0);
		snprintf(msg, sizeof msg, "%s", em ? em : "?");
		ssh_session_close(S, 0);
		if (rc == LIBSSH2_ERROR_TIMEOUT)
			return ssh_fail(L, S, "timeout", "SSH handshake timed out after %.3gs", timeout);
		return ssh_fail(L, S, "protocol", "SSH handshake failed: %s", msg);
	}
	if (ssh_check_hostkey(S, kh_path, host, port, accept_new, &code, msg, sizeof msg) != 0) {
		ssh_session_close(S, 1);
		return ssh_fail(L, S, code, "%s", msg);
	}

	rc = -1;
	snprintf(msg, sizeof msg, "no authentication method");
	if (key) {
		SSH_NB(S, dl, rc, libssh2_userauth_publickey_fromfile_ex(S->s, user, (unsigned)strlen(user),
		                                                         NULL, key, pass));
		if (rc == LIBSSH2_ERROR_TIMEOUT) {
			ssh_session_close(S, 0);
			return ssh_fail(L, S, "timeout", "authentication timed out after %.3gs", timeout);
		}
		if (rc == LIBSSH2_ERROR_FILE)
			snprintf(msg, sizeof msg, "cannot use key file %s (unreadable, bad format or wrong passphrase)", key);
		else if (rc != 0)
			snprintf(msg, sizeof msg, "key %s refused for user %s", key, user);
	}
	if (rc != 0 && agent) {
		char amsg[256];
		rc = ssh_auth_agent(S, user, agent_sock, dl, amsg, sizeof amsg);
		if (rc == -2) {
			ssh_session_close(S, 0);
			return ssh_fail(L, S, "timeout", "authentication timed out after %.3gs", timeout);
		}
		if (rc != 0) {
			size_t used = strlen(msg);
			snprintf(msg + used, sizeof msg - used, "%s%s", key ? "; " : "", amsg);
			if (!key)
				snprintf(msg, sizeof msg, "%s", amsg);
		}
	}
	if (rc != 0) {
		ssh_session_close(S, 1);
		return ssh_fail(L, S, "auth", "authentication failed: %s", msg);
	}
	return 1;
}

/* ---------------------------------------------------------------- session methods */

static int sess_close(lua_State *L)
{
	ssh_session_close(check_session(L, 1), 1);
	return 0;
}

static int sess_is_open(lua_State *L)
{
	lua_pushboolean(L, check_session(L, 1)->s != NULL);
	return 1;
}

static int sess_tostring(lua_State *L)
{
	ssh_session *S = check_session(L, 1);
	lua_pushfstring(L, "ssh session %s (%s)", S->label, S->s ? "open" : "closed");
	return 1;
}

/* sess:tcp_check(host, port, {timeout=10}): can `host:port` be reached FROM the SSH server?
 * Opens a direct-tcpip channel (sshd connects) and closes it at once. sshd reports only
 * "connect failed", so refused and unreachable both answer code "refused"; a target that
 * never answers makes our deadline fire ("timeout", and the session is closed: libssh2 cannot
 * abandon a pending channel open). AllowTcpForwarding=no answers "denied". */
static int sess_tcp_check(lua_State *L)
{
	static const char *const allowed[] = { "timeout", NULL };
	ssh_session *S = check_session(L, 1);
	const char *host = luaL_checkstring(L, 2);
	lua_Integer port = luaL_checkinteger(L, 3);
	double timeout, t0, dl;
	LIBSSH2_CHANNEL *ch;
	int rc;

	luaL_argcheck(L, port >= 1 && port <= 65535, 3, "port must be in 1..65535");
	rb_check_keys(L, 4, allowed, NULL);
	timeout = rb_opt_timeout(L, 4, "timeout", 10);
	if (S->s == NULL)
		return ssh_fail(L, S, "closed", "session is closed");
	t0 = rb_mono_now();
	dl = t0 + timeout;
	for (;;) {
		ch = libssh2_channel_direct_tcpip_ex(S->s, host, (int)port, "127.0.0.1", 0);
		if (ch || libssh2_session_last_errno(S->s) != LIBSSH2_ERROR_EAGAIN)
			break;
		rc = ssh_wait(S, dl);
		if (rc != SSH_WAIT_OK) {
			ssh_session_close(S, 0);
			return ssh_fail(L, S, rc == SSH_WAIT_TIMEOUT ? "timeout" : "io",
			                "tcp_check %s:%d: %s after %.3gs (session closed)", host, (int)port,
			                rc == SSH_WAIT_TIMEOUT ? "no answer" : "poll failed", timeout);
		}
	}
	if (ch == NULL) {
		char *em = NULL, m[256];
		int e = libssh2_session_last_error(S->s, &em, NULL, 0);
		const char *code = "protocol";
		snprintf(m, sizeof m, "%s", em ? em : "failed");   /* em dies with the session */
		if (e == LIBSSH2_ERROR_CHANNEL_FAILURE && strstr(m, "prohibited"))
			code = "denied";
		else if (e == LIBSSH2_ERROR_CHANNEL_FAILURE)
			code = "refused";
		else if (e == LIBSSH2_ERROR_SOCKET_DISCONNECT || e == LIBSSH2_ERROR_SOCKET_RECV ||
		         e == LIBSSH2_ERROR_SOCKET_SEND) {
			ssh_session_close(S, 0);
			code = "closed";
		}
		return ssh_fail(L, S, code, "tcp_check %s:%d: %s", host, (int)port, m);
	}
	SSH_NB(S, dl, rc, libssh2_channel_free(ch));
	if (rc == LIBSSH2_ERROR_TIMEOUT) {
		ssh_session_close(S, 0);
		return ssh_fail(L, S, "timeout", "tcp_check %s:%d: channel close timed out", host, (int)port);
	}
	lua_createtable(L, 0, 1);
	lua_pushnumber(L, (rb_mono_now() - t0) * 1000.0);
	lua_setfield(L, -2, "ms");
	return 1;
}

/* ---------------------------------------------------------------- quote */

/* ssh.quote(argv) -> string: every argument single-quoted, ' written as '\'', joined by
 * spaces: what a POSIX shell turns back into exactly argv. Raises on an empty argv, a
 * non-string element or a NUL byte (no shell argument can carry one). */
static int ssh_quote(lua_State *L)
{
	lua_Integer n, i;
	luaL_Buffer b;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = (lua_Integer)lua_rawlen(L, 1);
	luaL_argcheck(L, n > 0, 1, "argv must be a non-empty list");
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *s;
		if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
			return luaL_error(L, "bad argument #1 to 'quote' (argv[%d] must be a string, got %s)",
			                  (int)i, luaL_typename(L, -1));
		s = lua_tolstring(L, -1, &len);
		if (memchr(s, '\0', len))
			return luaL_error(L, "bad argument #1 to 'quote' (argv[%d] contains a NUL byte)", (int)i);
		lua_pop(L, 1);
	}
	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *s;
		lua_rawgeti(L, 1, i);
		s = lua_tolstring(L, -1, &len);
		lua_pop(L, 1);   /* still referenced by argv */
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_addchar(&b, '\'');
		for (size_t k = 0; k < len; k++) {
			if (s[k] == '\'')
				luaL_addstring(&b, "'\\''");
			else
				luaL_addchar(&b, s[k]);
		}
		luaL_addchar(&b, '\'');
	}
	luaL_pushresult(&b);
	return 1;
}

static const luaL_Reg session_methods[] = {
	{ "exec", ssh_sess_exec },
	{ "open", ssh_sess_open },
	{ "tcp_check", sess_tcp_check },
	{ "close", sess_close },
	{ "is_open", sess_is_open },
	{ NULL, NULL }
};

static const luaL_Reg session_meta[] = {
	{ "__gc", sess_close },
	{ "__close", sess_close },
	{ "__tostring", sess_tostring },
	{ NULL, NULL }
};

static const luaL_Reg ssh_funcs[] = {
	{ "connect", ssh_connect },
	{ "quote", ssh_quote },
	{ NULL, NULL }
};

int luaopen_runbook_ssh(lua_State *L)
{
	static int initialised;
	if (!initialised) {
		if (libssh2_init(0) != 0)
			return luaL_error(L, "libssh2_init failed");
		initialised = 1;
	}
	if (luaL_newmetatable(L, SSH_SESSION_MT)) {
		luaL_setfuncs(L, session_meta, 0);
		luaL_newlib(L, session_methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	ssh_channel_register(L);
	luaL_newlib(L, ssh_funcs);
	return 1;
}
