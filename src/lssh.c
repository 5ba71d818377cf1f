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
 * Depends on: sshint.h, libssh2, OpenSSL (base64), Lua 5.4. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "sshint.h"

double ssh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int poll_until(int fd, short events, double deadline)
{
	struct pollfd p = { fd, events, 0 };
	for (;;) {
		double left = deadline - ssh_now();
		int r;
		if (left <= 0)
			return SSH_WAIT_TIMEOUT;
		r = poll(&p, 1, (int)(left * 1000.0) + 1);
		if (r > 0)
			return SSH_WAIT_OK;
		if (r < 0 && errno != EINTR)
			return SSH_WAIT_ERROR;
	}
}

int ssh_wait(ssh_session *S, double deadline)
{
	int dir = libssh2_session_block_directions(S->s);
	short ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	return poll_until(S->fd, ev ? ev : POLLIN, deadline);
}

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

void ssh_session_close(ssh_session *S, int polite)
{
	if (S->s) {
		if (polite) {
			double dl = ssh_now() + 1.0;
			int rc;
			SSH_NB(S, dl, rc, libssh2_session_disconnect(S->s, "bye"));
			(void)rc;
		}
		/* With the socket shut down, freeing cannot wait on the peer. */
		shutdown(S->fd, SHUT_RDWR);
		for (int i = 0; i < 100 && libssh2_session_free(S->s) == LIBSSH2_ERROR_EAGAIN; i++)
			;
		S->s = NULL;
	}
	if (S->fd >= 0) {
		close(S->fd);
		S->fd = -1;
	}
}

int ssh_fail(lua_State *L, ssh_session *S, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	if (S)
		lua_pushfstring(L, "ssh %s: %s", S->label, msg);
	else
		lua_pushstring(L, msg);
	lua_pushstring(L, code);
	return 3;
}

void ssh_check_options(lua_State *L, int idx, const char *const *allowed)
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *k;
		int ok = 0;
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "options: keys must be strings");
		k = lua_tostring(L, -1);
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = 1;
		if (!ok)
			luaL_error(L, "unknown option '%s'", k);
	}
}

double ssh_opt_seconds(lua_State *L, int idx, const char *name, double dflt)
{
	double v = dflt;
	if (lua_isnoneornil(L, idx))
		return dflt;
	if (lua_getfield(L, idx, name) != LUA_TNIL) {
		int isnum;
		v = lua_tonumberx(L, -1, &isnum);
		if (!isnum || !(v > 0) || v > 86400)
			luaL_error(L, "option '%s' must be a number of seconds in (0, 86400]", name);
	}
	lua_pop(L, 1);
	return v;
}

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

static const char *errno_code(int e)
{
	switch (e) {
	case ECONNREFUSED: return "refused";
	case ENETUNREACH: case EHOSTUNREACH: case EHOSTDOWN: case ENETDOWN: return "unreachable";
	case ETIMEDOUT: return "timeout";
	default: return "io";
	}
}

/* Returns a connected non-blocking socket, or -1 with *code and msg set. */
static int tcp_connect(const char *host, int port, double deadline, const char **code,
                       char *msg, size_t n)
{
	struct addrinfo hints, *ai = NULL;
	char sport[16];
	int fd, one = 1, err = 0, rc;
	socklen_t len = sizeof err;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(sport, sizeof sport, "%d", port);
	if (getaddrinfo(host, sport, &hints, &ai) != 0 || ai == NULL) {
		*code = "unreachable";
		snprintf(msg, n, "'%s' is not a numeric address (no name resolution here)", host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		*code = "io";
		snprintf(msg, n, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc < 0 && errno != EINPROGRESS) {
		err = errno;
	} else if (rc < 0) {
		rc = poll_until(fd, POLLOUT, deadline);
		if (rc == SSH_WAIT_TIMEOUT) {
			close(fd);
			*code = "timeout";
			snprintf(msg, n, "TCP connect timed out");
			return -1;
		}
		if (rc != SSH_WAIT_OK || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno ? errno : EIO;
	}
	if (err) {
		close(fd);
		*code = errno_code(err);
		snprintf(msg, n, "connect: %s", strerror(err));
		return -1;
	}
	return fd;
}

static const char *hostkey_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
	case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
	default: return "unknown";
	}
}

static int hostkey_bits(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/* "SHA256:<base64 without padding>", as OpenSSH prints it. */
static void fingerprint(LIBSSH2_SESSION *s, char *out, size_t n)
{
	const unsigned char *h = (const unsigned char *)libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char b64[64];
	int len;
	if (h == NULL) {
		snprintf(out, n, "SHA256:?");
		return;
	}
	len = EVP_EncodeBlock(b64, h, 32);
	while (len > 0 && b64[len - 1] == '=')
		len--;
	snprintf(out, n, "SHA256:%.*s", len, (const char *)b64);
}

/* Offer the host key types known_hosts holds for this host first, as OpenSSH does, so a
 * server with several host keys presents the one we can verify. Plain-text names only. */
static void prefer_known_types(LIBSSH2_SESSION *s, LIBSSH2_KNOWNHOSTS *kh, const char *name)
{
	struct libssh2_knownhost *k = NULL;
	char pref[256] = "";
	while (libssh2_knownhost_get(kh, &k, k) == 0) {
		const char *t = NULL;
		if (k->name == NULL || strcmp(k->name, name) != 0)
			continue;
		switch (k->typemask & LIBSSH2_KNOWNHOST_KEY_MASK) {
		case LIBSSH2_KNOWNHOST_KEY_ED25519: t = "ssh-ed25519"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: t = "ecdsa-sha2-nistp256"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: t = "ecdsa-sha2-nistp384"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: t = "ecdsa-sha2-nistp521"; break;
		case LIBSSH2_KNOWNHOST_KEY_SSHRSA: t = "rsa-sha2-512,rsa-sha2-256,ssh-rsa"; break;
		default: break;
		}
		if (t && strstr(pref, t) == NULL && strlen(pref) + strlen(t) + 2 < sizeof pref) {
			if (*pref)
				strcat(pref, ",");
			strcat(pref, t);
		}
	}
	if (*pref)
		(void)libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, pref);
}

/* Append one known_hosts line (OpenSSH format) for name; 0 or -1 with msg. */
static int known_hosts_append(LIBSSH2_KNOWNHOSTS *kh, const char *path, const char *name,
                              const char *key, size_t keylen, int bits, char *msg, size_t n)
{
	struct libssh2_knownhost *node = NULL;
	char line[8192];
	size_t len = 0;
	char last = '\n';
	int fd;
	off_t end;

	if (libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
	                           LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits,
	                           &node) != 0 ||
	    libssh2_knownhost_writeline(kh, node, line, sizeof line, &len,
	                                LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
		snprintf(msg, n, "cannot format a known_hosts line");
		return -1;
	}
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(msg, n, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	end = lseek(fd, 0, SEEK_END);
	if (end > 0 && pread(fd, &last, 1, end - 1) != 1)
		last = '\n';
	if ((last != '\n' && write(fd, "\n", 1) != 1) || write(fd, line, len) != (ssize_t)len) {
		snprintf(msg, n, "cannot write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Verifies the server's host key; 0 when trusted, else -1 with msg (code "hostkey" or "io"). */
static int check_hostkey(ssh_session *S, const char *path, const char *host, int port,
                         int accept_new, const char **code, char *msg, size_t n)
{
	size_t keylen = 0;
	int type = 0, rc, bits;
	const char *key = libssh2_session_hostkey(S->s, &keylen, &type);
	LIBSSH2_KNOWNHOSTS *kh;
	struct libssh2_knownhost *found = NULL;
	char fp[80], name[300];

	*code = "hostkey";
	if (key == NULL) {
		snprintf(msg, n, "server sent no host key");
		return -1;
	}
	fingerprint(S->s, fp, sizeof fp);
	bits = hostkey_bits(type);
	if (port == 22)
		snprintf(name, sizeof name, "%s", host);
	else
		snprintf(name, sizeof name, "[%s]:%d", host, port);
	kh = libssh2_knownhost_init(S->s);
	if (kh == NULL) {
		snprintf(msg, n, "out of memory");
		return -1;
	}
	if (access(path, F_OK) == 0 &&
	    libssh2_knownhost_readfile(kh, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		snprintf(msg, n, "cannot read known_hosts %s", path);
		libssh2_knownhost_free(kh);
		return -1;
	}
	rc = libssh2_knownhost_checkp(kh, host, port, key, keylen,
	                              LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits,
	                              &found);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
		libssh2_knownhost_free(kh);
		return 0;
	}
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
		snprintf(msg, n, "HOST KEY CHANGED: %s %s %s does not match %s; refusing to connect",
		         name, hostkey_name(type), fp, path);
	} else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && accept_new) {
		rc = known_hosts_append(kh, path, name, key, keylen, bits, msg, n);
		libssh2_knownhost_free(kh);
		if (rc != 0)
			*code = "io";
		return rc;
	} else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
		snprintf(msg, n, "unknown host key: %s %s %s is not in %s", name, hostkey_name(type), fp, path);
	} else {
		snprintf(msg, n, "host key check failed for %s %s %s", name, hostkey_name(type), fp);
	}
	libssh2_knownhost_free(kh);
	return -1;
}

static int auth_agent(ssh_session *S, const char *user, const char *sock, double dl, char *msg,
                      size_t n)
{
	LIBSSH2_AGENT *a = libssh2_agent_init(S->s);
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	int rc = -1, r;

	if (a == NULL) {
		snprintf(msg, n, "cannot initialise ssh-agent support");
		return -1;
	}
	if (sock)
		libssh2_agent_set_identity_path(a, sock);
	if (libssh2_agent_connect(a) != 0) {
		snprintf(msg, n, "no ssh-agent reachable (SSH_AUTH_SOCK)");
		libssh2_agent_free(a);
		return -1;
	}
	if (libssh2_agent_list_identities(a) != 0) {
		snprintf(msg, n, "ssh-agent: cannot list identities");
		goto out;
	}
	snprintf(msg, n, "ssh-agent: no identity accepted");
	while (libssh2_agent_get_identity(a, &id, prev) == 0) {
		SSH_NB(S, dl, r, libssh2_agent_userauth(a, user, id));
		if (r == 0) {
			rc = 0;
			break;
		}
		if (r == LIBSSH2_ERROR_TIMEOUT) {
			snprintf(msg, n, "authentication timed out");
			rc = -2;
			break;
		}
		prev = id;
	}
out:
	libssh2_agent_disconnect(a);
	libssh2_agent_free(a);
	return rc;
}

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
	ssh_check_options(L, 1, allowed);
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
	timeout = ssh_opt_seconds(L, 1, "timeout", 10);
	if (!key && !agent)
		return luaL_error(L, "ssh.connect: give 'key' or 'agent = true'");

	/* Created closed, acquired second: __gc releases whatever was acquired. */
	S = (ssh_session *)lua_newuserdatauv(L, sizeof *S, 0);
	S->s = NULL;
	S->fd = -1;
	snprintf(S->label, sizeof S->label, "%s@%s:%d", user, host, port);
	luaL_setmetatable(L, SSH_SESSION_MT);

	dl = ssh_now() + timeout;
	S->fd = tcp_connect(host, port, dl, &code, msg, sizeof msg);
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
				prefer_known_types(S->s, kh, name);
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
	if (check_hostkey(S, kh_path, host, port, accept_new, &code, msg, sizeof msg) != 0) {
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
		rc = auth_agent(S, user, agent_sock, dl, amsg, sizeof amsg);
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
	ssh_check_options(L, 4, allowed);
	timeout = ssh_opt_seconds(L, 4, "timeout", 10);
	if (S->s == NULL)
		return ssh_fail(L, S, "closed", "session is closed");
	t0 = ssh_now();
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
	lua_pushnumber(L, (ssh_now() - t0) * 1000.0);
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
