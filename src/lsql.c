/* lsql.c: runbook.sql, a MariaDB/MySQL client for the engine on libmariadb (Connector/C).
 *
 *   sql.connect{host=, port=3306, user=, password=, database=, unix_socket=, tls=false|true|"verify",
 *               tls_ca=, connect_timeout=10, read_timeout=30, write_timeout=30}
 *       -> conn | nil, msg, code        code: auth refused timeout unreachable tls sql
 *   conn:query(sql_text [, params_array [, {max_rows=10000}]])
 *       -> {columns={name...}, rows={{name=value...}...}, affected=n, insert_id=n, warnings=n,
 *           truncated=true|nil} | nil, msg, code   code: sql (server said no), timeout, closed
 *   conn:ping() -> true | nil, msg, code ; conn:close() (idempotent; also __gc and __close)
 *   conn:is_open() -> false once closed or once a timeout/lost connection made it unusable
 *                   (later queries then return nil, msg, "closed" without touching the network)
 *   sql.NULL  the one value that stands for SQL NULL, distinct from "": the engine's shared null
 *             sentinel (sql.NULL == json.null, tostring "null"), so rows encode to JSON as-is
 *
 * Prepared statements only: the text is sent with mysql_stmt_prepare and every value travels
 * bound to a `?` (string, integer, number, boolean, sql.NULL); no function splices values into
 * SQL text, multi-statements are never enabled and LOAD DATA LOCAL is off.
 * Column values: integer types -> Lua integers (an unsigned BIGINT above 2^63-1 -> decimal
 * string); FLOAT/DOUBLE -> Lua numbers; DECIMAL -> string (exact); dates and times -> strings as
 * the server prints them; everything else (text, blobs, enum, set, json, bit) -> byte strings.
 * Rows are keyed by column name: alias duplicated names (`d.name AS domain`).
 * Timeouts are whole seconds for libmariadb (rounded up); read_timeout bounds each network read.
 * The password is never part of a returned message. Every C resource lives in a userdata with a
 * __gc, so a Lua error (even out of memory) cannot leak it.
 * This file: connections, error classification, the module table; conn:query is sql_query.c.
 * Depends on: Lua 5.4, libmariadb, sqlint.h, ljson.h (the shared null sentinel). */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "ljson.h"
#include "sqlint.h"

double sql_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
 * `secs` and return the socket error it gets (0 if it connects now). */
static int probe_connect_errno(const char *host, unsigned port, double secs)
{
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;
	struct sockaddr *sa;
	socklen_t len;
	int fd, err = 0, r;
	socklen_t elen = sizeof err;
	struct pollfd p;

	memset(&a4, 0, sizeof a4);
	memset(&a6, 0, sizeof a6);
	if (host && inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&a4, len = sizeof a4;
	} else if (host && inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&a6, len = sizeof a6;
	} else {
		return 0;
	}
	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	if (connect(fd, sa, len) == 0) {
		close(fd);
		return 0;
	}
	if (errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return err;
	}
	p.fd = fd;
	p.events = POLLOUT;
	do
		r = poll(&p, 1, (int)(secs * 1000));
	while (r < 0 && errno == EINTR);
	if (r == 0)
		err = ETIMEDOUT;
	else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
		err = 0;
	close(fd);
	return err;
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

/* ------------------------------------------------------------------ options */


static const char *opt_string(lua_State *L, int idx, const char *k, const char *def)
{
	const char *v = def;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "option '%s' must be a string", k);
		v = lua_tostring(L, -1);
	}
	lua_pop(L, 1);   /* the string stays referenced by the options table */
	return v;
}

/* A timeout in seconds (>0, <= one day) rounded up to libmariadb's whole seconds. */
static unsigned opt_seconds(lua_State *L, int idx, const char *k, unsigned def)
{
	unsigned v = def;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		int ok;
		double d = lua_tonumberx(L, -1, &ok);
		if (!ok || !(d > 0) || d > 86400)
			luaL_error(L, "option '%s' must be a number of seconds in (0, 86400]", k);
		v = (unsigned)ceil(d);
	}
	lua_pop(L, 1);
	return v;
}

/* ------------------------------------------------------------------ connection handle */

struct sql_conn *sql_check_conn(lua_State *L)
{
	struct sql_conn *c = luaL_checkudata(L, 1, SQL_CONN);
	if (c->my == NULL)
		luaL_error(L, "attempt to use a closed sql connection");
	return c;
}

static int conn_close(lua_State *L)
{
	struct sql_conn *c = luaL_checkudata(L, 1, SQL_CONN);
	if (c->my) {
		mysql_close(c->my);
		c->my = NULL;
	}
	return 0;
}

static int conn_tostring(lua_State *L)
{
	struct sql_conn *c = luaL_checkudata(L, 1, SQL_CONN);
	lua_pushfstring(L, "sql.conn (%s%s)", c->where,
	                c->my == NULL ? ", closed" : c->dead ? ", lost" : "");
	return 1;
}

static const char *const connect_keys[] = {
	"host", "port", "user", "password", "database", "unix_socket", "tls", "tls_ca",
	"connect_timeout", "read_timeout", "write_timeout", NULL
};

/* sql.connect(opts) -> conn | nil, msg, code */
static int sql_connect(lua_State *L)
{
	const char *host, *user, *password, *database, *sock, *ca;
	unsigned ct, rt, wt, zero = 0;
	lua_Integer port = 3306;
	int tls = 0, verify = 0;
	struct sql_conn *c;
	my_bool off = 0, on = 1;
	double t0;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rb_check_keys(L, 1, connect_keys, "sql.connect");
	host = opt_string(L, 1, "host", NULL);
	user = opt_string(L, 1, "user", NULL);
	password = opt_string(L, 1, "password", "");
	database = opt_string(L, 1, "database", NULL);
	sock = opt_string(L, 1, "unix_socket", NULL);
	ca = opt_string(L, 1, "tls_ca", NULL);
	ct = opt_seconds(L, 1, "connect_timeout", 10);
	rt = opt_seconds(L, 1, "read_timeout", 30);
	wt = opt_seconds(L, 1, "write_timeout", 30);
	if (host == NULL && sock == NULL)
		luaL_error(L, "option 'host' or 'unix_socket' is required");
	if (user == NULL)
		luaL_error(L, "option 'user' is required");
	lua_getfield(L, 1, "port");
	if (!lua_isnil(L, -1)) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 65535)
			luaL_error(L, "option 'port' must be an integer in 1..65535");
		port = lua_tointeger(L, -1);
	}
	lua_getfield(L, 1, "tls");
	if (lua_type(L, -1) == LUA_TBOOLEAN)
		tls = lua_toboolean(L, -1);
	else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "verify") == 0)
		tls = verify = 1;
	else if (!lua_isnil(L, -1))
		luaL_error(L, "option 'tls' must be false, true or \"verify\"");
	lua_settop(L, 1);

	c = lua_newuserdatauv(L, sizeof *c, 0);   /* created closed, acquired second */
	c->my = NULL;
	c->dead = 0;
	c->read_timeout = rt;
	if (sock)
		snprintf(c->where, sizeof c->where, "%s", sock);
	else
		snprintf(c->where, sizeof c->where, "%s:%d", host, (int)port);
	luaL_setmetatable(L, SQL_CONN);
	if ((c->my = mysql_init(NULL)) == NULL)
		return luaL_error(L, "sql.connect: out of memory");
	mysql_options(c->my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	mysql_options(c->my, MYSQL_OPT_READ_TIMEOUT, &rt);
	mysql_options(c->my, MYSQL_OPT_WRITE_TIMEOUT, &wt);
	mysql_options(c->my, MYSQL_OPT_LOCAL_INFILE, &zero);
	mysql_options(c->my, MYSQL_OPT_RECONNECT, &off);
	mysql_options(c->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* never an authentication method that sends the password itself (mysql_clear_password,
	 * dialog/PAM), whatever the server asks for */
	mysql_options(c->my, MARIADB_OPT_RESTRICTED_AUTH,
	              "mysql_native_password,client_ed25519,caching_sha2_password,sha256_password");
	if (sock)
		mysql_options(c->my, MYSQL_OPT_PROTOCOL, &(unsigned){MYSQL_PROTOCOL_SOCKET});
	else
		mysql_options(c->my, MYSQL_OPT_PROTOCOL, &(unsigned){MYSQL_PROTOCOL_TCP});
	if (tls) {
		mysql_options(c->my, MYSQL_OPT_SSL_ENFORCE, &on);
		mysql_options(c->my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, verify ? &on : &off);
		if (ca)
			mysql_options(c->my, MYSQL_OPT_SSL_CA, ca);
	}
	t0 = sql_now();
	/* client flags: no CLIENT_MULTI_STATEMENTS, no CLIENT_LOCAL_FILES */
	if (mysql_real_connect(c->my, sock ? NULL : host, user, password, database,
	                       (unsigned)port, sock, 0) == NULL) {
		unsigned e = mysql_errno(c->my);
		const char *msg = mysql_error(c->my);
		double waited = sql_now() - t0;
		int sys = message_errno(msg);
		if ((e == CR_CONN_HOST_ERROR || e == CR_CONNECTION_ERROR) && sock == NULL &&
		    (sys == EINPROGRESS || sys == 0) && waited < ct - 0.2)
			sys = probe_connect_errno(host, (unsigned)port, ct - waited);
		lua_pushnil(L);
		lua_pushfstring(L, "%s: ERROR %d (%s): ", c->where, (int)e, mysql_sqlstate(c->my));
		push_scrubbed(L, msg, password);
		if (sys != 0 && sys != message_errno(msg))
			lua_pushfstring(L, " [%s]", strerror(sys));
		else
			lua_pushliteral(L, "");
		lua_concat(L, 3);
		lua_pushstring(L, error_code(e, waited, ct, sys));
		mysql_close(c->my);
		c->my = NULL;
		return 3;
	}
	/* libmariadb's ENFORCE alone goes on in plaintext when the server has no TLS ("verify"
	 * refuses before authenticating): refuse here, before any query */
	if (tls && mysql_get_ssl_cipher(c->my) == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: TLS required (tls=true) but the server did not negotiate it",
		                c->where);
		lua_pushliteral(L, "tls");
		mysql_close(c->my);
		c->my = NULL;
		return 3;
	}
	return 1;
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
	lua_pushnil(L);
	lua_pushfstring(L, "%s: the connection was lost earlier (timeout or closed by the server)",
	                c->where);
	lua_pushliteral(L, "closed");
	return 3;
}

/* conn:is_open() -> boolean */
static int conn_is_open(lua_State *L)
{
	struct sql_conn *c = luaL_checkudata(L, 1, SQL_CONN);
	lua_pushboolean(L, c->my != NULL && !c->dead);
	return 1;
}

/* conn:ping() -> true | nil, msg, code */
static int conn_ping(lua_State *L)
{
	struct sql_conn *c = sql_check_conn(L);
	double t0 = sql_now();
	if (c->dead)
		return sql_dead_failure(L, c);
	if (mysql_ping(c->my) != 0) {
		int n = sql_push_failure(L, c->where, mysql_errno(c->my), mysql_sqlstate(c->my),
		                     mysql_error(c->my), NULL, sql_now() - t0, c->read_timeout);
		sql_note_dead(c, L);
		return n;
	}
	lua_pushboolean(L, 1);
	return 1;
}


static const luaL_Reg conn_methods[] = {
	{"query", sql_conn_query},
	{"ping", conn_ping},
	{"is_open", conn_is_open},
	{"close", conn_close},
	{NULL, NULL}
};

static const luaL_Reg conn_meta[] = {
	{"__gc", conn_close},
	{"__close", conn_close},
	{"__tostring", conn_tostring},
	{"__index", NULL},
	{NULL, NULL}
};

static const luaL_Reg sql_funcs[] = {
	{"connect", sql_connect},
	{"NULL", NULL},
	{"client_version", NULL},
	{NULL, NULL}
};

int luaopen_runbook_sql(lua_State *L)
{
	luaL_newmetatable(L, SQL_CONN);
	luaL_setfuncs(L, conn_meta, 0);
	luaL_newlib(L, conn_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newmetatable(L, SQL_STMT);
	lua_pushcfunction(L, sql_stmt_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	luaL_newlib(L, sql_funcs);
	rb_push_null(L);
	lua_setfield(L, -2, "NULL");
	lua_pushstring(L, mysql_get_client_info());
	lua_setfield(L, -2, "client_version");
	return 1;
}
