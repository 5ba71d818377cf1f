/* lmaillog.c: runbook.maillog, the Lua binding of the mail-log parser and streaming filter.
 *
 *   maillog.parse(line [, {year=, utc_offset=, now=}]) -> record table | nil (not a mail line)
 *   maillog.scanner{match=, since=, until=, host=, year=, utc_offset=, now=, window=, keys=,
 *                   max_line=, per_line=}   (per_line: parse every line, no find-first)
 *                   -> Scanner (memory bounded by 5 * window + keys*24 + max_line)
 *   sc:feed(chunk) -> {record...}   raw bytes, partial last line kept for the next call
 *   sc:line(line)  -> {record...}   one complete line
 *   sc:feed_file(path) -> {record...} | nil, msg, code   whole file in 1 MiB blocks
 *   sc:open(path) -> true | nil, msg, code     then sc:read() -> {record...}, more | nil, msg, code:
 *                                   the file block by block (at most 1 MiB each, read straight into
 *                                   the scanner's history); more = false after the last block
 *   sc:flush() -> {record...}       the partial last line
 *   sc:watch(key) -> {record...}    report lines of this queue id / session from now on; returns
 *                                   the lines of it read before and kept (context): a session
 *                                   in Dovecot's own log read before the Postfix log naming it
 *   sc:stats() -> {bytes=, lines=, mail_lines=, matched=, reported=, context_dropped=, truncated=,
 *                  unreadable=}
 *   sc:close()                      also __gc and __close
 * Records carry only the fields present in the line; see push_record() and the documentation at
 * the top of lua/runbook/maillog.lua. Scanner records also carry `line` (raw text) and
 * `context = true` for lines replayed from before the first match of their queue id.
 * Options tables go through rbaux (unknown keys and wrong types or ranges raise); failures are
 * nil, msg, code with rbaux's codes (notfound denied io type).
 * Depends on: maillog.h, rbaux.h, Lua 5.4. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "maillog.h"
#include "rbaux.h"

#define SCANNER_MT "runbook.maillog.Scanner"
#define READ_BLOCK (1u << 20)

typedef struct {
	ml_scanner *s;
	int fd;
	char *buf;        /* READ_BLOCK bytes for feed_file, owned here so an error cannot leak it */
	ml_str host;      /* default host: points into host_buf */
	char host_buf[128];
} scanner_ud;

static void set_str(lua_State *L, const char *k, ml_str v)
{
	if (v.p) {
		lua_pushlstring(L, v.p, v.n);
		lua_setfield(L, -2, k);
	}
}

static void set_num(lua_State *L, const char *k, double v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

/* Pushes the record as a table; `host` fills in a missing host. */
static void push_record(lua_State *L, const ml_record *r, ml_str host)
{
	static const char *const dnames[4] = { "before_qmgr", "in_qmgr", "conn_setup", "transmission" };
	lua_createtable(L, 0, 16);
	lua_pushstring(L, r->family == ML_POSTFIX ? "postfix" : "dovecot");
	lua_setfield(L, -2, "family");
	if (r->has_time)
		set_num(L, "time", r->time);
	if (r->has_time && !r->time_zoned) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "zoneless");
	}
	set_str(L, "timestamp", r->timestamp);
	set_str(L, "container", r->container);
	set_str(L, "host", r->host.p ? r->host : host);
	set_str(L, "program", r->program);
	set_str(L, "instance", r->instance);
	set_str(L, "daemon", r->daemon);
	if (r->has_pid)
		set_int(L, "pid", r->pid);
	set_str(L, "message", r->message);
	set_str(L, "level", r->level);
	set_str(L, "event", r->event);
	set_str(L, "queue_id", r->queue_id);
	set_str(L, "from", r->from);
	set_str(L, "to", r->to);
	set_str(L, "orig_to", r->orig_to);
	set_str(L, "relay", r->relay);
	set_str(L, "relay_host", r->relay_host);
	set_str(L, "relay_ip", r->relay_ip);
	set_str(L, "relay_port", r->relay_port);
	if (r->has_delay)
		set_num(L, "delay", r->delay);
	if (r->has_delays) {
		lua_createtable(L, 4, 4);
		for (int i = 0; i < 4; i++) {
			lua_pushnumber(L, r->delays[i]);
			lua_pushvalue(L, -1);
			lua_rawseti(L, -3, i + 1);
			lua_setfield(L, -2, dnames[i]);
		}
		lua_setfield(L, -2, "delays");
	}
	set_str(L, "dsn", r->dsn);
	set_str(L, "status", r->status);
	set_str(L, "reply", r->reply);
	set_str(L, "queued_as", r->queued_as);
	set_str(L, "session", r->session);
	set_str(L, "message_id", r->message_id);
	set_str(L, "client", r->client);
	set_str(L, "client_host", r->client_host);
	set_str(L, "client_ip", r->client_ip);
	set_str(L, "client_port", r->client_port);
	set_str(L, "action", r->action);
	set_str(L, "stage", r->stage);
	if (r->has_code)
		set_int(L, "code", r->code);
	set_str(L, "enhanced", r->enhanced);
	set_str(L, "rejected", r->rejected);
	set_str(L, "reason", r->reason);
	set_str(L, "proto", r->proto);
	set_str(L, "helo", r->helo);
	if (r->has_size)
		set_int(L, "size", r->size);
	if (r->has_nrcpt)
		set_int(L, "nrcpt", r->nrcpt);
	set_str(L, "bounce_id", r->bounce_id);
	set_str(L, "conn_use", r->conn_use);
	set_str(L, "tls", r->tls);
	set_str(L, "service", r->service);
	set_str(L, "user", r->user);
	set_str(L, "mailbox", r->mailbox);
	set_str(L, "error", r->error);
	if (r->saved >= 0) {
		lua_pushboolean(L, r->saved);
		lua_setfield(L, -2, "saved");
	}
	set_str(L, "text", r->text);
	if (r->repeated > 0)
		set_int(L, "repeated", (lua_Integer)r->repeated);
}

/* The time options shared by parse() and scanner(), from the options table at idx (or none). */
static void time_opts(lua_State *L, int idx, ml_time_opts *to)
{
	to->year = (int)rb_opt_int(L, idx, "year", to->year, 0, 9999);
	to->utc_offset = (long)rb_opt_int(L, idx, "utc_offset", to->utc_offset, -86400, 86400);
	to->now = (int64_t)rb_opt_number(L, idx, "now", (double)to->now, 0, 253402300799.0);
}

static int maillog_parse(lua_State *L)
{
	size_t len;
	const char *line = luaL_checklstring(L, 1, &len);
	static const char *const keys[] = { "year", "utc_offset", "now", NULL };
	ml_time_opts to = { 0, 0, (int64_t)time(NULL) };
	ml_record r;
	rb_check_keys(L, 2, keys, "maillog.parse");
	time_opts(L, 2, &to);
	if (ml_parse_line(line, len, &to, &r) == ML_OTHER) {
		lua_pushnil(L);
		return 1;
	}
	push_record(L, &r, (ml_str){ NULL, 0 });
	return 1;
}

/* ------------------------------------------------------------------ Scanner */
static scanner_ud *check_open(lua_State *L)
{
	scanner_ud *u = luaL_checkudata(L, 1, SCANNER_MT);
	if (!u->s)
		luaL_error(L, "attempt to use a closed maillog scanner");
	return u;
}

static void scanner_release(scanner_ud *u)
{
	if (u->fd >= 0)
		close(u->fd), u->fd = -1;
	ml_scanner_free(u->s);
	u->s = NULL;
	free(u->buf);
	u->buf = NULL;
}

static int scanner_close(lua_State *L)
{
	scanner_ud *u = luaL_checkudata(L, 1, SCANNER_MT);
	scanner_release(u);
	return 0;
}

typedef struct {
	lua_State *L;
	int out;          /* stack index of the result array */
	lua_Integer n;
	ml_str host;
} emit_ctx;

static int emit_record(void *ud, const char *line, size_t len, const ml_record *r, int context)
{
	emit_ctx *c = ud;
	lua_State *L = c->L;
	push_record(L, r, c->host);
	lua_pushlstring(L, line, len);
	lua_setfield(L, -2, "line");
	if (context) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "context");
	}
	lua_rawseti(L, c->out, ++c->n);
	return 0;
}

static int maillog_scanner(lua_State *L)
{
	static const char *const keys[] = { "match", "since", "until", "host", "year", "utc_offset", "now",
		"window", "keys", "max_line", "per_line", NULL };
	ml_scanner_opts o;
	scanner_ud *u;
	size_t hostlen = 0;
	const char *host;
	int match_idx = 0;

	memset(&o, 0, sizeof o);
	o.time.now = (int64_t)time(NULL);
	rb_check_keys(L, 1, keys, "maillog.scanner");
	time_opts(L, 1, &o.time);
	o.since = rb_opt_number(L, 1, "since", NAN, -1e15, 1e15);
	o.until = rb_opt_number(L, 1, "until", NAN, -1e15, 1e15);
	o.window = (size_t)rb_opt_int(L, 1, "window", 0, 0, (lua_Integer)1 << 30);
	o.keys = (size_t)rb_opt_int(L, 1, "keys", 0, 0, (lua_Integer)1 << 24);
	o.max_line = (size_t)rb_opt_int(L, 1, "max_line", 0, 0, (lua_Integer)1 << 24);
	o.per_line = rb_opt_bool(L, 1, "per_line", 0);
	host = rb_opt_lstring(L, 1, "host", NULL, &hostlen);
	if (host && hostlen >= sizeof u->host_buf)
		return luaL_error(L, "option 'host' too long");
	if (lua_istable(L, 1)) {
		lua_getfield(L, 1, "match");
		match_idx = lua_gettop(L);
		if (lua_istable(L, match_idx)) {
			lua_Integer n = luaL_len(L, match_idx);
			for (lua_Integer i = 1; i <= n; i++)
				if (lua_rawgeti(L, match_idx, i) != LUA_TSTRING)
					return luaL_error(L, "option 'match' must be a string or a list of strings");
				else
					lua_pop(L, 1);
		} else if (!lua_isnil(L, match_idx) && lua_type(L, match_idx) != LUA_TSTRING)
			return luaL_error(L, "option 'match' must be a string or a list of strings");
	}
	u = lua_newuserdatauv(L, sizeof *u, 0);
	u->s = NULL, u->fd = -1, u->buf = NULL, u->host = (ml_str){ NULL, 0 };
	luaL_setmetatable(L, SCANNER_MT);
	if (!(u->s = ml_scanner_new(&o)))
		return luaL_error(L, "out of memory");
	if (host) {
		memcpy(u->host_buf, host, hostlen);
		u->host = (ml_str){ u->host_buf, hostlen };
	}
	if (match_idx) {
		if (lua_type(L, match_idx) == LUA_TSTRING) {
			size_t n;
			const char *m = lua_tolstring(L, match_idx, &n);
			if (ml_scanner_add_needle(u->s, m, n))
				return luaL_error(L, "out of memory");
		} else if (lua_istable(L, match_idx)) {
			lua_Integer n = luaL_len(L, match_idx);
			for (lua_Integer i = 1; i <= n; i++) {
				size_t ln;
				lua_rawgeti(L, match_idx, i);
				const char *m = lua_tolstring(L, -1, &ln);
				if (ml_scanner_add_needle(u->s, m, ln))
					return luaL_error(L, "out of memory");
				lua_pop(L, 1);
			}
		}
	}
	return 1;
}

static emit_ctx begin_out(lua_State *L, scanner_ud *u)
{
	emit_ctx c = { L, 0, 0, u->host };
	lua_newtable(L);
	c.out = lua_gettop(L);
	return c;
}

static int scanner_feed(lua_State *L)
{
	scanner_ud *u = check_open(L);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	emit_ctx c = begin_out(L, u);
	ml_scanner_feed(u->s, data, len, emit_record, &c);
	return 1;
}

static int scanner_line(lua_State *L)
{
	scanner_ud *u = check_open(L);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	emit_ctx c = begin_out(L, u);
	ml_scanner_flush(u->s, emit_record, &c);
	ml_scanner_feed(u->s, data, len, emit_record, &c);
	ml_scanner_flush(u->s, emit_record, &c);
	return 1;
}

static int scanner_flush(lua_State *L)
{
	scanner_ud *u = check_open(L);
	emit_ctx c = begin_out(L, u);
	ml_scanner_flush(u->s, emit_record, &c);
	return 1;
}

static int open_error(lua_State *L, scanner_ud *u, const char *path)
{
	int err = errno;
	if (u->fd >= 0)
		close(u->fd), u->fd = -1;
	return rb_failf(L, rb_errno_code(err), "%s: %s", path, strerror(err));
}

/* Opens the log file into u->fd: a regular file only, and a FIFO never blocks the run. */
static int open_log(lua_State *L, scanner_ud *u, const char *path)
{
	char why[160];
	if (u->fd >= 0)
		close(u->fd), u->fd = -1;
	const char *code = rb_open_regular(path, O_RDONLY, 0, 0, &u->fd, why, sizeof why);
	if (!code)
		return 0;
	return rb_failf(L, code, "%s: %s", path, why);
}

static int scanner_feed_file(lua_State *L)
{
	scanner_ud *u = check_open(L);
	const char *path = luaL_checkstring(L, 2);
	emit_ctx c;
	int r, rc;

	if ((rc = open_log(L, u, path)) != 0)
		return rc;
	c = begin_out(L, u);
	while ((r = ml_scanner_read(u->s, u->fd, READ_BLOCK, emit_record, &c, &rc)) != 0)
		if (r < 0 && errno != EINTR)
			return open_error(L, u, path);
	close(u->fd), u->fd = -1;
	ml_scanner_flush(u->s, emit_record, &c);
	return 1;
}

static int scanner_open(lua_State *L)
{
	scanner_ud *u = check_open(L);
	const char *path = luaL_checkstring(L, 2);
	int rc = open_log(L, u, path);
	if (rc)
		return rc;
	lua_pushboolean(L, 1);
	return 1;
}

static int scanner_read(lua_State *L)
{
	scanner_ud *u = check_open(L);
	int rc, r;
	if (u->fd < 0)
		return luaL_error(L, "maillog scanner: read without an open file");
	emit_ctx c = begin_out(L, u);
	while ((r = ml_scanner_read(u->s, u->fd, READ_BLOCK, emit_record, &c, &rc)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return open_error(L, u, "read");
	if (r == 0) {
		close(u->fd), u->fd = -1;
		ml_scanner_flush(u->s, emit_record, &c);
	}
	lua_pushboolean(L, r > 0);
	return 2;
}

static int scanner_watch(lua_State *L)
{
	scanner_ud *u = check_open(L);
	size_t n;
	const char *k = luaL_checklstring(L, 2, &n);
	emit_ctx c = begin_out(L, u);
	ml_scanner_watch_replay(u->s, k, n, emit_record, &c);
	return 1;
}

static int scanner_stats(lua_State *L)
{
	scanner_ud *u = check_open(L);
	ml_scanner_stats st;
	ml_scanner_get_stats(u->s, &st);
	lua_createtable(L, 0, 8);
	set_int(L, "bytes", (lua_Integer)st.bytes);
	set_int(L, "lines", (lua_Integer)st.lines);
	set_int(L, "mail_lines", (lua_Integer)st.mail_lines);
	set_int(L, "matched", (lua_Integer)st.matched);
	set_int(L, "reported", (lua_Integer)st.reported);
	set_int(L, "context_dropped", (lua_Integer)st.context_dropped);
	set_int(L, "truncated", (lua_Integer)st.truncated);
	set_int(L, "unreadable", (lua_Integer)st.unreadable);
	return 1;
}

static int scanner_tostring(lua_State *L)
{
	scanner_ud *u = luaL_checkudata(L, 1, SCANNER_MT);
	lua_pushfstring(L, "maillog.Scanner (%s)", u->s ? "open" : "closed");
	return 1;
}

static const luaL_Reg scanner_methods[] = {
	{ "feed", scanner_feed },
	{ "line", scanner_line },
	{ "feed_file", scanner_feed_file },
	{ "open", scanner_open },
	{ "read", scanner_read },
	{ "flush", scanner_flush },
	{ "watch", scanner_watch },
	{ "stats", scanner_stats },
	{ "close", scanner_close },
	{ NULL, NULL },
};

static const luaL_Reg scanner_meta[] = {
	{ "__gc", scanner_close },
	{ "__close", scanner_close },
	{ "__tostring", scanner_tostring },
	{ "__index", NULL },
	{ NULL, NULL },
};

static const luaL_Reg maillog_funcs[] = {
	{ "parse", maillog_parse },
	{ "scanner", maillog_scanner },
	{ NULL, NULL },
};

/* `require "runbook.maillog"` returns the Lua layer (lua/runbook/maillog.lua, found on
 * package.path and called with this core table as its argument); without that file, the core. */
int luaopen_runbook_maillog(lua_State *L)
{
	luaL_newmetatable(L, SCANNER_MT);
	luaL_setfuncs(L, scanner_meta, 0);
	luaL_newlib(L, scanner_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newlib(L, maillog_funcs);
	int core = lua_gettop(L);
	if (lua_getglobal(L, "package") != LUA_TTABLE) {
		lua_settop(L, core);
		return 1;
	}
	lua_getfield(L, -1, "searchpath");
	lua_pushliteral(L, "runbook.maillog");
	lua_getfield(L, -3, "path");
	if (!lua_isfunction(L, -3) || !lua_isstring(L, -1)) {
		lua_settop(L, core);
		return 1;
	}
	lua_call(L, 2, 1);
	if (!lua_isstring(L, -1)) {
		lua_settop(L, core);
		return 1;
	}
	if (luaL_loadfilex(L, lua_tostring(L, -1), "t") != LUA_OK)
		return lua_error(L);
	lua_pushvalue(L, core);
	lua_call(L, 1, 1);
	return 1;
}
