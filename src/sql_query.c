/* sql_query.c: conn:query for runbook.sql, prepared statements only.
 *
 * The text goes to mysql_stmt_prepare; every value is bound to a `?` (string, integer, number,
 * boolean, sql.NULL). Results are fetched unbuffered into per-column buffers: integers as
 * LONGLONG (unsigned kept), FLOAT/DOUBLE as double, everything else as the server's text or
 * bytes; a value longer than the first buffer is fetched again with mysql_stmt_fetch_column.
 * The statement, its metadata and every bind array live in userdata on the Lua stack, so a Lua
 * error cannot leak them. conn:query runs as named steps: query_args, prepare_statement,
 * push_write_result (no result set) or bind_columns + fetch_rows.
 * Depends on: Lua 5.4, libmariadb, rbaux.h, sqlint.h (sql_conn.c), ljson.h. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <mysql.h>

#include "ljson.h"
#include "rbaux.h"
#include "sqlint.h"

#define SQL_STRBUF 256          /* first buffer per text column; longer values are re-fetched */
#define SQL_DEFAULT_MAX_ROWS 10000

/* The per-query resources, owned by a userdata on the stack for the length of one query. */
struct sql_stmt {
	MYSQL_STMT *st;
	MYSQL_RES *meta;
};

static int sql_stmt_gc(lua_State *L)
{
	struct sql_stmt *s = luaL_checkudata(L, 1, SQL_STMT);
	if (s->meta) {
		mysql_free_result(s->meta);
		s->meta = NULL;
	}
	if (s->st) {
		mysql_stmt_close(s->st);
		s->st = NULL;
	}
	return 0;
}

static void stmt_release(lua_State *L, int idx)
{
	lua_pushcfunction(L, sql_stmt_gc);
	lua_pushvalue(L, idx);
	lua_call(L, 1, 0);
}

static int stmt_failure(lua_State *L, struct sql_conn *c, struct sql_stmt *s, int sidx, double t0)
{
	int n = sql_push_failure(L, c->where, mysql_stmt_errno(s->st), mysql_stmt_sqlstate(s->st),
	                     mysql_stmt_error(s->st), NULL, rb_mono_now() - t0, c->read_timeout);
	sql_note_dead(c, L);
	stmt_release(L, sidx);
	return n;
}

/* Values a caller may bind; checked before any I/O. */
static void check_params(lua_State *L, int idx, lua_Integer n)
{
	for (lua_Integer i = 1; i <= n; i++) {
		int t = lua_rawgeti(L, idx, i);
		if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN && !sql_is_null(L, -1))
			luaL_error(L, "bad argument #2 to 'query' (parameter %d: %s cannot be bound; "
			           "use a string, number, boolean or sql.NULL)", (int)i, luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

union sql_scalar {
	long long i;
	double d;
	signed char b;
};

static void bind_params(lua_State *L, int idx, MYSQL_BIND *pb, union sql_scalar *val,
                        unsigned long *len, lua_Integer n)
{
	for (lua_Integer i = 0; i < n; i++) {
		MYSQL_BIND *b = &pb[i];
		lua_rawgeti(L, idx, i + 1);   /* the params table keeps the value alive */
		if (sql_is_null(L, -1)) {
			b->buffer_type = MYSQL_TYPE_NULL;
		} else if (lua_type(L, -1) == LUA_TSTRING) {
			b->buffer_type = MYSQL_TYPE_STRING;
			b->buffer = (void *)lua_tolstring(L, -1, &len[i]);
			b->buffer_length = len[i];
			b->length = &len[i];
		} else if (lua_type(L, -1) == LUA_TBOOLEAN) {
			val[i].b = (signed char)lua_toboolean(L, -1);
			b->buffer_type = MYSQL_TYPE_TINY;
			b->buffer = &val[i].b;
		} else if (lua_isinteger(L, -1)) {
			val[i].i = (long long)lua_tointeger(L, -1);
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &val[i].i;
		} else {
			val[i].d = (double)lua_tonumber(L, -1);
			b->buffer_type = MYSQL_TYPE_DOUBLE;
			b->buffer = &val[i].d;
		}
		lua_pop(L, 1);
	}
}

/* Per result column: what we bind and where it lands. */
struct sql_col {
	unsigned long length;
	my_bool null, error;
	union sql_scalar v;
	char text[SQL_STRBUF];
};

static int is_integer_type(enum enum_field_types t)
{
	return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_INT24 ||
	       t == MYSQL_TYPE_LONG || t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

static void bind_results(MYSQL_FIELD *f, unsigned ncol, MYSQL_BIND *rb, struct sql_col *col)
{
	for (unsigned i = 0; i < ncol; i++) {
		MYSQL_BIND *b = &rb[i];
		b->is_null = &col[i].null;
		b->error = &col[i].error;
		b->length = &col[i].length;
		if (is_integer_type(f[i].type)) {
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &col[i].v.i;
			b->is_unsigned = (f[i].flags & UNSIGNED_FLAG) != 0;
		} else if (f[i].type == MYSQL_TYPE_FLOAT || f[i].type == MYSQL_TYPE_DOUBLE) {
			b->buffer_type = MYSQL_TYPE_DOUBLE;
			b->buffer = &col[i].v.d;
		} else {
			b->buffer_type = MYSQL_TYPE_STRING;   /* server text form, exact */
			b->buffer = col[i].text;
			b->buffer_length = sizeof col[i].text;
		}
	}
}

/* Push column i of the current row; long text is fetched again into a scratch userdata. */
static int push_value(lua_State *L, MYSQL_STMT *st, MYSQL_BIND *rb, struct sql_col *col,
                      unsigned i)
{
	if (col[i].null) {
		rb_push_null(L);
	} else if (rb[i].buffer_type == MYSQL_TYPE_LONGLONG) {
		unsigned long long u = (unsigned long long)col[i].v.i;
		if (rb[i].is_unsigned && u > (unsigned long long)LLONG_MAX) {
			char dec[24];
			snprintf(dec, sizeof dec, "%llu", u);
			lua_pushstring(L, dec);
		} else
			lua_pushinteger(L, (lua_Integer)col[i].v.i);
	} else if (rb[i].buffer_type == MYSQL_TYPE_DOUBLE) {
		lua_pushnumber(L, (lua_Number)col[i].v.d);
	} else if (col[i].length <= sizeof col[i].text) {
		lua_pushlstring(L, col[i].text, col[i].length);
	} else {
		MYSQL_BIND b;
		unsigned long len = col[i].length;
		char *buf = lua_newuserdatauv(L, len, 0);
		memset(&b, 0, sizeof b);
		b.buffer_type = MYSQL_TYPE_STRING;
		b.buffer = buf;
		b.buffer_length = len;
		b.length = &len;
		if (mysql_stmt_fetch_column(st, &b, i, 0) != 0)
			return -1;
		lua_pushlstring(L, buf, len);
		lua_remove(L, -2);
	}
	return 0;
}

static const char *const query_keys[] = { "max_rows", NULL };

/* Checks params (3) and opts (4) before any I/O; returns max_rows, *nparam the param count. */
static lua_Integer query_args(lua_State *L, lua_Integer *nparam)
{
	lua_Integer max_rows;
	*nparam = 0;
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		*nparam = (lua_Integer)lua_rawlen(L, 3);
		check_params(L, 3, *nparam);
	}
	if (!lua_isnoneornil(L, 4))
		luaL_checktype(L, 4, LUA_TTABLE);
	rb_check_keys(L, 4, query_keys, "query");
	max_rows = rb_opt_int(L, 4, "max_rows", SQL_DEFAULT_MAX_ROWS, 0, LUA_MAXINTEGER);
	lua_settop(L, 3);
	return max_rows;
}

/* Prepares q and binds the params at 3 (their buffers in userdata on the stack). Returns 0, or
 * the number of values pushed for a failure (nil, msg, code). Raises when the placeholder count
 * differs from the param count, after releasing the statement. */
static int prepare_statement(lua_State *L, struct sql_conn *c, struct sql_stmt *s, int sidx,
                             const char *q, size_t qlen, lua_Integer nparam, double t0)
{
	if ((s->st = mysql_stmt_init(c->my)) == NULL)
		return sql_push_failure(L, c->where, mysql_errno(c->my), mysql_sqlstate(c->my),
		                    mysql_error(c->my), NULL, 0, 0);
	if (mysql_stmt_prepare(s->st, q, (unsigned long)qlen) != 0)
		return stmt_failure(L, c, s, sidx, t0);
	if ((lua_Integer)mysql_stmt_param_count(s->st) != nparam) {
		unsigned long want = mysql_stmt_param_count(s->st);
		stmt_release(L, sidx);
		return luaL_error(L, "bad argument #3 to 'query' (the statement has %d placeholders, "
		                  "%d parameters given)", (int)want, (int)nparam);
	}
	if (nparam > 0) {
		MYSQL_BIND *pb = lua_newuserdatauv(L, (size_t)nparam * sizeof *pb, 0);
		union sql_scalar *val = lua_newuserdatauv(L, (size_t)nparam * sizeof *val, 0);
		unsigned long *len = lua_newuserdatauv(L, (size_t)nparam * sizeof *len, 0);
		memset(pb, 0, (size_t)nparam * sizeof *pb);
		bind_params(L, 3, pb, val, len, nparam);
		if (mysql_stmt_bind_param(s->st, pb) != 0)
			return stmt_failure(L, c, s, sidx, t0);
	}
	return 0;
}

/* The result of a statement without a result set (INSERT, UPDATE, DELETE ...). */
static int push_write_result(lua_State *L, struct sql_stmt *s, int sidx)
{
	lua_createtable(L, 0, 6);
	lua_newtable(L);
	lua_setfield(L, -2, "columns");
	lua_newtable(L);
	lua_setfield(L, -2, "rows");
	lua_pushinteger(L, (lua_Integer)mysql_stmt_affected_rows(s->st));
	lua_setfield(L, -2, "affected");
	lua_pushinteger(L, (lua_Integer)mysql_stmt_insert_id(s->st));
	lua_setfield(L, -2, "insert_id");
	lua_pushinteger(L, (lua_Integer)mysql_stmt_warning_count(s->st));
	lua_setfield(L, -2, "warnings");
	stmt_release(L, sidx);
	return 1;
}

/* Per-column result buffers, left on the stack until the query ends. */
struct sql_cols {
	unsigned n;
	MYSQL_FIELD *f;
	MYSQL_BIND *rb;
	struct sql_col *col;
};

static int bind_columns(lua_State *L, struct sql_conn *c, struct sql_stmt *s, int sidx, double t0,
                        struct sql_cols *k)
{
	k->n = mysql_num_fields(s->meta);
	k->f = mysql_fetch_fields(s->meta);
	k->rb = lua_newuserdatauv(L, k->n * sizeof *k->rb, 0);
	k->col = lua_newuserdatauv(L, k->n * sizeof *k->col, 0);
	memset(k->rb, 0, k->n * sizeof *k->rb);
	memset(k->col, 0, k->n * sizeof *k->col);
	bind_results(k->f, k->n, k->rb, k->col);
	if (mysql_stmt_bind_result(s->st, k->rb) != 0)
		return stmt_failure(L, c, s, sidx, t0);
	return 0;
}

/* Fetches up to max_rows rows into the rows table on top of the result table. Returns 0 with
 * *truncated set, or the number of values pushed for a failure. */
static int fetch_rows(lua_State *L, struct sql_conn *c, struct sql_stmt *s, int sidx,
                      const struct sql_cols *k, lua_Integer max_rows, int *truncated)
{
	lua_Integer nrows = 0;
	*truncated = 0;
	for (;;) {
		double t0 = rb_mono_now();
		int rc = mysql_stmt_fetch(s->st);
		if (rc == MYSQL_NO_DATA)
			return 0;
		if (rc == 1)
			return stmt_failure(L, c, s, sidx, t0);
		if (nrows == max_rows) {
			*truncated = 1;   /* closing the statement discards the rest */
			return 0;
		}
		lua_createtable(L, 0, (int)k->n);
		for (unsigned i = 0; i < k->n; i++) {
			if (push_value(L, s->st, k->rb, k->col, i) != 0)
				return stmt_failure(L, c, s, sidx, t0);
			lua_setfield(L, -2, k->f[i].name);
		}
		lua_rawseti(L, -2, ++nrows);
	}
}

/* conn:query(sql_text [, params [, opts]]) -> result | nil, msg, code */
int sql_conn_query(lua_State *L)
{
	struct sql_conn *c = sql_check_conn(L);
	size_t qlen;
	const char *q = luaL_checklstring(L, 2, &qlen);
	lua_Integer nparam, max_rows = query_args(L, &nparam);
	struct sql_stmt *s;
	struct sql_cols k;
	int truncated, sidx, n;
	double t0 = rb_mono_now();

	if (c->dead)
		return sql_dead_failure(L, c);
	s = rb_box(L, sizeof *s, SQL_STMT, sql_stmt_gc);
	sidx = lua_gettop(L);
	if ((n = prepare_statement(L, c, s, sidx, q, qlen, nparam, t0)) != 0)
		return n;
	t0 = rb_mono_now();
	if (mysql_stmt_execute(s->st) != 0)
		return stmt_failure(L, c, s, sidx, t0);
	s->meta = mysql_stmt_result_metadata(s->st);
	if (s->meta == NULL) {
		if (mysql_stmt_errno(s->st) != 0)
			return stmt_failure(L, c, s, sidx, t0);
		return push_write_result(L, s, sidx);
	}
	if ((n = bind_columns(L, c, s, sidx, t0, &k)) != 0)
		return n;

	lua_createtable(L, 0, 6);                            /* result */
	lua_createtable(L, (int)k.n, 0);
	for (unsigned i = 0; i < k.n; i++) {
		lua_pushstring(L, k.f[i].name);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "columns");
	lua_newtable(L);                                     /* rows */
	if ((n = fetch_rows(L, c, s, sidx, &k, max_rows, &truncated)) != 0)
		return n;
	lua_setfield(L, -2, "rows");
	lua_pushinteger(L, 0);
	lua_setfield(L, -2, "affected");
	lua_pushinteger(L, 0);
	lua_setfield(L, -2, "insert_id");
	lua_pushinteger(L, (lua_Integer)mysql_stmt_warning_count(s->st));
	lua_setfield(L, -2, "warnings");
	if (truncated) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "truncated");
	}
	stmt_release(L, sidx);   /* k.f (field names) belongs to meta: not used past this point */
	return 1;
}
