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
 * This file is the binding: options, connections, the module table. conn:query is sql_query.c;
 * error classification and what both share is sql_conn.c (sqlint.h).
 * Depends on: Lua 5.4, libmariadb, rbaux.h, sqlint.h, ljson.h (the shared null sentinel). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <mysql.h>

#include "ljson.h"
#include "rbaux.h"
#include "sqlint.h"

/* ------------------------------------------------------------------ connection handle */

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

/* A timeout in seconds (>0, <= one day) rounded up to libmariadb's whole seconds. */
static unsigned opt_seconds(lua_State *L, int idx, const char *k, double def)
{
	return (unsigned)ceil(rb_opt_timeout(L, idx, k, def));
}

static const char *const connect_keys[] = {
	"host", "port", "user", "password", "database", "unix_socket", "tls", "tls_ca",
	"connect_timeout", "read_timeout", "write_timeout", NULL
};

/* The checked options of sql.connect; strings stay referenced by the options table. */
struct sql_opts {
	const char *host, *user, *password, *database, *sock, *ca;
	unsigned ct, rt, wt;
	lua_Integer port;
	int tls, verify;
};

/* Checks every option of the table at 1 before anything is acquired. The connect timeout
 * never reaches past the run deadline (whole seconds, at least 1). */
static void read_connect_options(lua_State *L, struct sql_opts *o)
{
	double left;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rb_check_keys(L, 1, connect_keys, "sql.connect");
	o->host = rb_opt_string(L, 1, "host", NULL);
	o->user = rb_opt_string(L, 1, "user", NULL);
	o->password = rb_opt_string(L, 1, "password", "");
	o->database = rb_opt_string(L, 1, "database", NULL);
	o->sock = rb_opt_string(L, 1, "unix_socket", NULL);
	o->ca = rb_opt_string(L, 1, "tls_ca", NULL);
	o->ct = opt_seconds(L, 1, "connect_timeout", 10);
	o->rt = opt_seconds(L, 1, "read_timeout", 30);
	o->wt = opt_seconds(L, 1, "write_timeout", 30);
	left = rb_deadline_in(o->ct) - rb_mono_now();
	if (left < o->ct)
		o->ct = left > 1 ? (unsigned)ceil(left) : 1;
	if (o->host == NULL && o->sock == NULL)
		luaL_error(L, "option 'host' or 'unix_socket' is required");
	if (o->user == NULL)
		luaL_error(L, "option 'user' is required");
	o->port = rb_opt_int(L, 1, "port", 3306, 1, 65535);
	o->tls = o->verify = 0;
	lua_getfield(L, 1, "tls");
	if (lua_type(L, -1) == LUA_TBOOLEAN)
		o->tls = lua_toboolean(L, -1);
	else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "verify") == 0)
		o->tls = o->verify = 1;
	else if (!lua_isnil(L, -1))
		luaL_error(L, "option 'tls' must be false, true or \"verify\"");
	lua_settop(L, 1);
}

/* The client's options: timeouts, no LOCAL INFILE, no reconnect, utf8mb4, no authentication
 * method that sends the password itself, the protocol, TLS. */
static void set_client_options(MYSQL *my, const struct sql_opts *o)
{
	unsigned zero = 0;
	my_bool off = 0, on = 1;
	mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &o->ct);
	mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &o->rt);
	mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &o->wt);
	mysql_options(my, MYSQL_OPT_LOCAL_INFILE, &zero);
	mysql_options(my, MYSQL_OPT_RECONNECT, &off);
	mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* never an authentication method that sends the password itself (mysql_clear_password,
	 * dialog/PAM), whatever the server asks for */
	mysql_options(my, MARIADB_OPT_RESTRICTED_AUTH,
	              "mysql_native_password,client_ed25519,caching_sha2_password,sha256_password");
	if (o->sock)
		mysql_options(my, MYSQL_OPT_PROTOCOL, &(unsigned){MYSQL_PROTOCOL_SOCKET});
	else
		mysql_options(my, MYSQL_OPT_PROTOCOL, &(unsigned){MYSQL_PROTOCOL_TCP});
	if (o->tls) {
		mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on);
		mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, o->verify ? &on : &off);
		if (o->ca)
			mysql_options(my, MYSQL_OPT_SSL_CA, o->ca);
	}
}

/* sql.connect(opts) -> conn | nil, msg, code */
static int sql_connect(lua_State *L)
{
	struct sql_opts o;
	struct sql_conn *c;
	double t0;

	read_connect_options(L, &o);
	c = lua_newuserdatauv(L, sizeof *c, 0);   /* created closed, acquired second */
	c->my = NULL;
	c->dead = 0;
	c->read_timeout = o.rt;
	if (o.sock)
		snprintf(c->where, sizeof c->where, "%s", o.sock);
	else
		snprintf(c->where, sizeof c->where, "%s:%d", o.host, (int)o.port);
	luaL_setmetatable(L, SQL_CONN);
	if ((c->my = mysql_init(NULL)) == NULL)
		return luaL_error(L, "sql.connect: out of memory");
	set_client_options(c->my, &o);
	t0 = rb_mono_now();
	/* client flags: no CLIENT_MULTI_STATEMENTS, no CLIENT_LOCAL_FILES */
	if (mysql_real_connect(c->my, o.sock ? NULL : o.host, o.user, o.password, o.database,
	                       (unsigned)o.port, o.sock, 0) == NULL) {
		int n = sql_push_connect_failure(L, c, o.sock ? NULL : o.host, (unsigned)o.port,
		                                 o.password, rb_mono_now() - t0, o.ct);
		mysql_close(c->my);
		c->my = NULL;
		return n;
	}
	/* libmariadb's ENFORCE alone goes on in plaintext when the server has no TLS ("verify"
	 * refuses before authenticating): refuse here, before any query */
	if (o.tls && mysql_get_ssl_cipher(c->my) == NULL) {
		rb_failf(L, "tls", "%s: TLS required (tls=true) but the server did not negotiate it",
		         c->where);
		mysql_close(c->my);
		c->my = NULL;
		return 3;
	}
	return 1;
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
	double t0 = rb_mono_now();
	if (c->dead)
		return sql_dead_failure(L, c);
	if (mysql_ping(c->my) != 0) {
		int n = sql_push_failure(L, c->where, mysql_errno(c->my), mysql_sqlstate(c->my),
		                     mysql_error(c->my), NULL, rb_mono_now() - t0, c->read_timeout);
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

static const luaL_Reg sql_funcs[] = {
	{"connect", sql_connect},
	{"NULL", NULL},
	{"client_version", NULL},
	{NULL, NULL}
};

int luaopen_runbook_sql(lua_State *L)
{
	rb_handle_type(L, SQL_CONN, conn_methods, conn_close);
	luaL_getmetatable(L, SQL_CONN);
	lua_pushcfunction(L, conn_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	luaL_newlib(L, sql_funcs);
	rb_push_null(L);
	lua_setfield(L, -2, "NULL");
	lua_pushstring(L, mysql_get_client_info());
	lua_setfield(L, -2, "client_version");
	return 1;
}
