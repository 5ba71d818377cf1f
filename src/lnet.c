/* lnet.c: runbook.net, TCP reachability from this machine.
 *
 *   net.tcp_check{host=IP, port=N, bind=IP|nil, timeout=seconds(default 5)}
 *     -> {ms=, peer="ip:port", ["local"]="ip:port"} | nil, msg, code
 *   codes: refused (RST), timeout (no SYN-ACK in time, or the run deadline passed),
 *   unreachable (ICMP/no route), denied (a local firewall said EPERM/EACCES), io
 *
 * The connect is rbaux.h's rb_tcp_connect (non-blocking connect + poll, so every connect has a
 * deadline). Hosts are numeric IP addresses: names are resolved by the caller through an
 * explicit DNS server, never here. Private to the engine. Depends on: rbaux.h, Lua 5.4. */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"

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
	const char *host, *bind_addr, *code;
	char msg[256];
	lua_Integer port;
	double timeout, t0;
	int fd;

	luaL_checktype(L, 1, LUA_TTABLE);
	rb_check_keys(L, 1, tcp_check_options, "net.tcp_check");
	host = rb_opt_string(L, 1, "host", NULL);
	bind_addr = rb_opt_string(L, 1, "bind", NULL);
	if (host == NULL || rb_ip_addr(host, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'host' must be a numeric IP address (got %s)",
				  host ? host : "nil");
	if (bind_addr && rb_ip_addr(bind_addr, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'bind' must be a numeric IP address");
	if (lua_getfield(L, 1, "port") == LUA_TNIL)
		return luaL_error(L, "option 'port' is required");
	lua_pop(L, 1);
	port = rb_opt_int(L, 1, "port", 0, 1, 65535);
	timeout = rb_opt_timeout(L, 1, "timeout", 5.0);

	t0 = rb_mono_now();
	fd = rb_tcp_connect(host, (int)port, bind_addr, rb_deadline_in(timeout), &code, msg, sizeof msg);
	if (fd < 0)
		return rb_fail(L, msg, code);
	{
		/* copy everything out of the socket and close it before any Lua allocation */
		char peer[INET6_ADDRSTRLEN + 16], local[INET6_ADDRSTRLEN + 16];
		double ms = (rb_mono_now() - t0) * 1000.0;
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
