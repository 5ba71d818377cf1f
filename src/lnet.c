/* lnet.c: runbook.net, TCP reachability from this machine, and the connect helper that the
 * smtp and dns families share (lnet.h).
 *
 *   net.tcp_check{host=IP, port=N, bind=IP|nil, timeout=seconds(default 5)}
 *     -> {ms=, peer="ip:port", ["local"]="ip:port"} | nil, msg, code
 *   codes: refused (RST), timeout (no SYN-ACK in time), unreachable (ICMP/no route), io
 *
 * Non-blocking connect + poll, so every connect has a deadline. Hosts are numeric IP addresses:
 * names are resolved by the caller through an explicit DNS server, never here.
 * Private to the engine. Depends on: Lua 5.4, POSIX sockets. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnet.h"

double rbnet_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int rbnet_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((unsigned short)port);
		*len = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		*len = sizeof *v6;
		return 0;
	}
	return -1;
}

int rbnet_wait(int fd, short events, double deadline)
{
	for (;;) {
		double left = deadline - rbnet_now();
		struct pollfd p = { .fd = fd, .events = events };
		int r;
		if (left <= 0)
			return 0;
		r = poll(&p, 1, (int)(left * 1000.0) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			continue;         /* rounding: loop re-checks the deadline */
		return 1;
	}
}

const char *rbnet_errno_code(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return "refused";
	case ETIMEDOUT:
		return "timeout";
	case EHOSTUNREACH: case ENETUNREACH: case ENETDOWN: case EHOSTDOWN:
	case EADDRNOTAVAIL: case EACCES: case EPERM:
		return "unreachable";
	default:
		return "io";
	}
}

static void set_err(struct rbnet_err *e, const char *code, const char *fmt, const char *a,
		    int port, const char *why)
{
	e->code = code;
	snprintf(e->msg, sizeof e->msg, fmt, a, port, why);
}

int rbnet_connect(const char *host, int port, const char *bind_addr, double deadline,
		  struct rbnet_err *e)
{
	struct sockaddr_storage ss, ls;
	socklen_t sl, ll;
	int fd, err = 0, one = 1;
	socklen_t elen = sizeof err;

	if (rbnet_addr(host, port, &ss, &sl) != 0) {
		set_err(e, "io", "%s:%d: %s", host, port, "not an IP address");
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		set_err(e, "io", "%s:%d: socket: %s", host, port, strerror(errno));
		return -1;
	}
	if (bind_addr) {
		if (rbnet_addr(bind_addr, 0, &ls, &ll) != 0 || ls.ss_family != ss.ss_family) {
			close(fd);
			set_err(e, "io", "%s:%d: %s", host, port,
				"bind address is not an IP address of the same family");
			return -1;
		}
		if (bind(fd, (struct sockaddr *)&ls, ll) != 0) {
			int b = errno;
			close(fd);
			e->code = "io";
			snprintf(e->msg, sizeof e->msg, "cannot bind %s: %s", bind_addr, strerror(b));
			return -1;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		int r;
		if (errno != EINPROGRESS) {
			err = errno;
			goto fail;
		}
		r = rbnet_wait(fd, POLLOUT, deadline);
		if (r == 0) {
			close(fd);
			set_err(e, "timeout", "connect to %s:%d: %s", host, port,
				"no answer before the timeout");
			return -1;
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			err = errno;
		if (err)
			goto fail;
	}
	return fd;
fail:
	close(fd);
	set_err(e, rbnet_errno_code(err), "connect to %s:%d: %s", host, port, strerror(err));
	return -1;
}

/* ---------------------------------------------------------------- options helpers */

void rbnet_check_options(lua_State *L, int idx, const char *const allowed[])
{
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int known = 0;
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *k = lua_tostring(L, -1);
			for (int i = 0; allowed[i]; i++)
				if (strcmp(k, allowed[i]) == 0)
					known = 1;
			if (!known)
				luaL_error(L, "unknown option '%s'", k);
		} else {
			luaL_error(L, "option names must be strings (got a %s)", luaL_typename(L, -1));
		}
	}
}

const char *rbnet_opt_string(lua_State *L, int idx, const char *key, const char *dflt)
{
	const char *s = dflt;
	int t = lua_getfield(L, idx, key);
	if (t == LUA_TSTRING)
		s = lua_tostring(L, -1);   /* anchored by the options table */
	else if (t != LUA_TNIL)
		luaL_error(L, "option '%s' must be a string (got %s)", key, lua_typename(L, t));
	lua_pop(L, 1);
	return s;
}

double rbnet_opt_number(lua_State *L, int idx, const char *key, double dflt)
{
	double v = dflt;
	int t = lua_getfield(L, idx, key);
	if (t == LUA_TNUMBER)
		v = lua_tonumber(L, -1);
	else if (t != LUA_TNIL)
		luaL_error(L, "option '%s' must be a number (got %s)", key, lua_typename(L, t));
	lua_pop(L, 1);
	return v;
}

int rbnet_opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
	int v = dflt;
	int t = lua_getfield(L, idx, key);
	if (t == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else if (t != LUA_TNIL)
		luaL_error(L, "option '%s' must be a boolean (got %s)", key, lua_typename(L, t));
	lua_pop(L, 1);
	return v;
}

double rbnet_opt_timeout(lua_State *L, int idx, double dflt)
{
	double t = rbnet_opt_number(L, idx, "timeout", dflt);
	if (!(t > 0 && t <= 86400))
		luaL_error(L, "option 'timeout' must be seconds in (0, 86400]");
	return t;
}

/* ---------------------------------------------------------------- net.tcp_check */

/* Formats the peer (peer=1) or local address of fd as "ip:port" / "[ip6]:port" into out. */
static void format_sockname(int fd, int peer, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";

	out[0] = '\0';
	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
		  : getsockname(fd, (struct sockaddr *)&ss, &sl)) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, n, "%s:%d", ip, ntohs(a->sin_port));
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "[%s]:%d", ip, ntohs(a->sin6_port));
	}
}

static const char *const tcp_check_options[] = { "host", "port", "bind", "timeout", NULL };

/* net.tcp_check(opts): does a TCP handshake to host:port complete before the timeout? */
static int net_tcp_check(lua_State *L)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct rbnet_err e;
	const char *host, *bind_addr;
	lua_Integer port;
	double timeout, t0;
	int fd;

	luaL_checktype(L, 1, LUA_TTABLE);
	rbnet_check_options(L, 1, tcp_check_options);
	host = rbnet_opt_string(L, 1, "host", NULL);
	bind_addr = rbnet_opt_string(L, 1, "bind", NULL);
	if (host == NULL || rbnet_addr(host, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'host' must be a numeric IP address (got %s)",
				  host ? host : "nil");
	if (bind_addr && rbnet_addr(bind_addr, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'bind' must be a numeric IP address");
	if (lua_getfield(L, 1, "port") != LUA_TNUMBER || !lua_isinteger(L, -1))
		return luaL_error(L, "option 'port' must be an integer");
	port = lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (port < 1 || port > 65535)
		return luaL_error(L, "option 'port' out of range 1..65535");
	timeout = rbnet_opt_timeout(L, 1, 5.0);

	t0 = rbnet_now();
	fd = rbnet_connect(host, (int)port, bind_addr, t0 + timeout, &e);
	if (fd < 0) {
		lua_pushnil(L);
		lua_pushstring(L, e.msg);
		lua_pushstring(L, e.code);
		return 3;
	}
	{
		/* copy everything out of the socket and close it before any Lua allocation */
		char peer[INET6_ADDRSTRLEN + 16], local[INET6_ADDRSTRLEN + 16];
		double ms = (rbnet_now() - t0) * 1000.0;
		format_sockname(fd, 1, peer, sizeof peer);
		format_sockname(fd, 0, local, sizeof local);
		close(fd);
		lua_createtable(L, 0, 3);
		lua_pushnumber(L, ms);
		lua_setfield(L, -2, "ms");
		lua_pushstring(L, peer);
		lua_setfield(L, -2, "peer");
		lua_pushstring(L, local);
		lua_setfield(L, -2, "local");
	}
	return 1;
}

static const luaL_Reg net_funcs[] = {
	{"tcp_check", net_tcp_check},
	{NULL, NULL}
};

int luaopen_runbook_net(lua_State *L)
{
	luaL_newlib(L, net_funcs);
	return 1;
}
