/* sql_conn.c: what the connection binding (lsql.c) and conn:query (sql_query.c) share, so that
 * neither calls into the other: the SQL NULL test, the classification of libmariadb errors into
 * the family's codes (with the password scrubbed from every message), and the dead-connection
 * bookkeeping. Depends on: Lua 5.4, libmariadb, rbaux.h, sqlint.h, ljson.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "ljson.h"
#include "rbaux.h"
#include "sqlint.h"

int sql_is_null(lua_State *L, int idx)
{
	int eq;
	if (lua_type(L, idx) != LUA_TUSERDATA)
		return 0;
	idx = lua_absindex(L, idx);
	rb_push_null(L);
	eq = lua_rawequal(L, idx, -1);
	lua_pop(L, 1);
	return eq;
}

/* ------------------------------------------------------------------ error classification */

/* The system errno libmariadb appends to client messages: "... (111)" or "system error: 110". */
static int message_errno(const char *msg)
{
	const char *p = strstr(msg, "system error: ");
	if (p)
		return atoi(p + 14);
	p = strrchr(msg, '(');
	if (p && p[1] >= '0' && p[1] <= '9')
		return atoi(p + 1);
	return 0;
}

/* libmariadb reports a failed non-blocking connect with errno EINPROGRESS, losing the real
 * reason. On that path only, repeat the TCP connect to a numeric address (never a name) within
 * `secs` and return the socket error it gets (0 if it connects now, or host is no address). */
static int probe_connect_errno(const char *host, unsigned port, double secs)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *code;
	char msg[160];
	int fd;

	if (host == NULL || rb_ip_addr(host, (int)port, &ss, &sl) != 0)
		return 0;
	fd = rb_tcp_connect(host, (int)port, NULL, rb_deadline_in(secs), &code, msg, sizeof msg);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return errno;
}

/* Classify a failed connect/query. `waited` is how long the blocking call took and `limit` the
 * timeout that bounded it: libmariadb reports a timed-out read as a lost connection. */
static const char *error_code(unsigned err, double waited, double limit, int sys)
{
	switch (err) {
	case ER_ACCESS_DENIED_ERROR: case ER_DBACCESS_DENIED_ERROR:
	case ER_ACCESS_DENIED_NO_PASSWORD_ERROR: case ER_HOST_NOT_PRIVILEGED:
	case ER_NOT_SUPPORTED_AUTH_MODE:
		return "auth";
	case CR_SSL_CONNECTION_ERROR:
		return "tls";
	case CR_UNKNOWN_HOST:
		return "unreachable";
	case CR_CONN_HOST_ERROR: case CR_CONNECTION_ERROR:
		if (sys == ECONNREFUSED || sys == ENOENT)
			return "refused";
		if (sys == ETIMEDOUT || sys == EAGAIN || waited >= limit - 0.2)
			return "timeout";
		if (sys == EHOSTUNREACH || sys == ENETUNREACH || sys == EADDRNOTAVAIL)
			return "unreachable";
		return "refused";   /* fast failure, no recoverable reason: nothing accepted us */
	case CR_SERVER_LOST: case CR_SERVER_GONE_ERROR: case CR_SERVER_LOST_EXTENDED:
		if (sys == ETIMEDOUT || sys == EAGAIN || (limit > 0 && waited >= limit - 0.2))
			return "timeout";
		return "closed";
	default:
		return err >= 2000 && err < 3000 ? "closed" : "sql";
	}
}

/* Push `s` with every occurrence of `secret` replaced by "***". */
static void push_scrubbed(lua_State *L, const char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	const char *hit;
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	while (n > 0 && (hit = strstr(s, secret)) != NULL) {
		luaL_addlstring(&b, s, (size_t)(hit - s));
		luaL_addstring(&b, "***");
		s = hit + n;
	}
	luaL_addstring(&b, s);
	luaL_pushresult(&b);
}

/* nil, "<where>: ERROR errno (SQLSTATE): message", code */
int sql_push_failure(lua_State *L, const char *where, unsigned err, const char *state,
                     const char *msg, const char *secret, double waited, double limit)
{
	const char *code = error_code(err, waited, limit, message_errno(msg));
	lua_pushnil(L);
	lua_pushfstring(L, "%s: ERROR %d (%s): ", where, (int)err, state);
	push_scrubbed(L, msg, secret);
	lua_concat(L, 2);
	lua_pushstring(L, code);
	return 3;
}

/* nil, "<where>: ERROR errno (SQLSTATE): message [reason]", code for a failed connect; the
 * TCP reason libmariadb lost is recovered by a second connect (probe_connect_errno). */
int sql_push_connect_failure(lua_State *L, struct sql_conn *c, const char *host, unsigned port,
                             const char *password, double waited, unsigned connect_timeout)
{
	unsigned e = mysql_errno(c->my);
	const char *msg = mysql_error(c->my);
	int sys = message_errno(msg);
	if ((e == CR_CONN_HOST_ERROR || e == CR_CONNECTION_ERROR) && host != NULL &&
	    (sys == EINPROGRESS || sys == 0) && waited < connect_timeout - 0.2)
		sys = probe_connect_errno(host, port, connect_timeout - waited);
	lua_pushnil(L);
	lua_pushfstring(L, "%s: ERROR %d (%s): ", c->where, (int)e, mysql_sqlstate(c->my));
	push_scrubbed(L, msg, password);
	if (sys != 0 && sys != message_errno(msg))
		lua_pushfstring(L, " [%s]", strerror(sys));
	else
		lua_pushliteral(L, "");
	lua_concat(L, 3);
	lua_pushstring(L, error_code(e, waited, connect_timeout, sys));
	return 3;
}

/* ------------------------------------------------------------------ connection state */

struct sql_conn *sql_check_conn(lua_State *L)
{
	struct sql_conn *c = luaL_checkudata(L, 1, SQL_CONN);
	if (c->my == NULL)
		luaL_error(L, "attempt to use a closed sql connection");
	return c;
}

/* A failure that leaves the connection unusable marks it dead. */
void sql_note_dead(struct sql_conn *c, lua_State *L)
{
	const char *code = lua_tostring(L, -1);
	if (strcmp(code, "timeout") == 0 || strcmp(code, "closed") == 0)
		c->dead = 1;
}

int sql_dead_failure(lua_State *L, struct sql_conn *c)
{
	return rb_failf(L, "closed", "%s: the connection was lost earlier (timeout or closed by the server)",
	                c->where);
}

