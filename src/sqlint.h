/* sqlint.h: what lsql.c (runbook.sql: connections) and sql_query.c (prepared statements) share.
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

/* Monotonic clock, seconds. */
double sql_now(void);
/* Is the value at idx sql.NULL (the shared null sentinel)? */
int sql_is_null(lua_State *L, int idx);
/* Raises on a key of the options table at idx that is not in the NULL-terminated list. */
#include "options.h"
/* The open connection at argument 1; raises when it was closed. */
struct sql_conn *sql_check_conn(lua_State *L);
/* Pushes nil, "<where>: ERROR errno (SQLSTATE): message" (secret scrubbed), code; returns 3.
 * waited/limit let a lost connection that hit its timeout be reported as "timeout". */
int sql_push_failure(lua_State *L, const char *where, unsigned err, const char *state,
                     const char *msg, const char *secret, double waited, double limit);
/* After sql_push_failure: a timeout or lost connection marks the handle dead. */
void sql_note_dead(struct sql_conn *c, lua_State *L);
/* nil, msg, "closed" for a handle already marked dead; returns 3. */
int sql_dead_failure(lua_State *L, struct sql_conn *c);

/* conn:query (sql_query.c) and the __gc of its per-query userdata. */
int sql_conn_query(lua_State *L);
int sql_stmt_gc(lua_State *L);
#endif
