/* sqlint.h: the sql family's insides. lsql.c (the binding: runbook.sql, connections) uses
 * sql_conn.c (error classification, connection state) and sql_query.c (conn:query, prepared
 * statements); sql_query.c uses sql_conn.c; nothing calls back into lsql.c.
 * Depends on: Lua 5.4, libmariadb. */
#ifndef RUNBOOK_SQLINT_H
#define RUNBOOK_SQLINT_H
#include <lua.h>
#include <mysql.h>

#define SQL_CONN "runbook.sql.conn"
#define SQL_STMT "runbook.sql.stmt"

struct sql_conn {
	MYSQL *my;                  /* NULL once closed */
	int dead;                   /* a timeout or lost connection: unusable, still to be closed */
	unsigned read_timeout;
	char where[300];            /* "host:port" or the socket path, for messages */
};

/* sql_conn.c: */
/* Is the value at idx sql.NULL (the shared null sentinel)? */
int sql_is_null(lua_State *L, int idx);
/* The open connection at argument 1; raises when it was closed. */
struct sql_conn *sql_check_conn(lua_State *L);
/* Pushes nil, "<where>: ERROR errno (SQLSTATE): message" (secret scrubbed), code; returns 3.
 * waited/limit let a lost connection that hit its timeout be reported as "timeout". */
int sql_push_failure(lua_State *L, const char *where, unsigned err, const char *state,
                     const char *msg, const char *secret, double waited, double limit);
/* The same for a failed mysql_real_connect on c (host NULL for a unix socket): the TCP reason
 * libmariadb lost is recovered by one more connect within what is left of connect_timeout. */
int sql_push_connect_failure(lua_State *L, struct sql_conn *c, const char *host, unsigned port,
                             const char *password, double waited, unsigned connect_timeout);
/* After sql_push_failure: a timeout or lost connection marks the handle dead. */
void sql_note_dead(struct sql_conn *c, lua_State *L);
/* nil, msg, "closed" for a handle already marked dead; returns 3. */
int sql_dead_failure(lua_State *L, struct sql_conn *c);

/* sql_query.c: conn:query. */
int sql_conn_query(lua_State *L);
#endif
