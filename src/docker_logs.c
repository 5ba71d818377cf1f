/* docker_logs.c: docker.logs, the streaming log reader of runbook.docker (see ldocker.c).
 *
 * One curl easy handle in its own multi handle, driven only from stream:next(). The write
 * callback never calls Lua: it appends to a buffer and pauses the transfer once LOG_HIGH bytes
 * wait there, so memory stays bounded (buffer + one curl chunk + one pending line per stream)
 * whatever the size of the log. docker_demux.c turns the bytes into lines.
 * Over SSH the same transfer runs through the tunnel (docker_tunnel.c), pumped by dk_xfer_step;
 * the stream keeps the session alive as its user value.
 * Depends on: libcurl, Lua 5.4, docker_api.c, docker_demux.c, docker_tunnel.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "docker_api.h"
#include "docker_demux.h"

#define LOGS_MT "runbook.docker.logs"
#define LOG_HIGH (64u << 10)
#define ERR_BODY 1024

struct dlogs {
	CURL *easy;
	CURLM *multi;
	int attached;              /* easy is in multi */
	char *raw;                 /* bytes received, not yet decoded: raw[rpos..rlen) */
	size_t rpos, rlen, rcap, peak;
	struct dmx dmx;
	struct dk_tunnel tun;
	int dmx_ready;
	long status;               /* HTTP status, once known */
	char errbody[ERR_BODY + 1];
	size_t errlen;
	int paused, done, finished, timestamps;
	CURLcode result;
	double budget, idle, waited, last_data;
	const char *code;          /* failure that ended the stream */
	char msg[512];
	char curl_err[CURL_ERROR_SIZE];
	size_t lines, bytes;
};

static void logs_release(struct dlogs *s)
{
	if (s->attached)
		curl_multi_remove_handle(s->multi, s->easy);
	s->attached = 0;
	if (s->easy)
		curl_easy_cleanup(s->easy);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	s->easy = NULL;
	s->multi = NULL;
	dk_tunnel_close(&s->tun);
	free(s->raw);
	s->raw = NULL;
	s->rpos = s->rlen = s->rcap = 0;
	if (s->dmx_ready)
		dmx_free(&s->dmx);
	s->dmx_ready = 0;
}

static int logs_close(lua_State *L)
{
	struct dlogs *s = luaL_checkudata(L, 1, LOGS_MT);
	logs_release(s);
	s->finished = 1;
	return 0;
}

/* Never calls Lua. Returns CURL_WRITEFUNC_PAUSE when LOG_HIGH bytes are already waiting. */
static size_t logs_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct dlogs *s = ud;
	size_t n = sz * nm;

	if (s->status == 0)
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
	s->last_data = rb_mono_now();
	if (s->status != 200) {   /* an API error: keep the start of the JSON message */
		size_t k = ERR_BODY - s->errlen < n ? ERR_BODY - s->errlen : n;
		memcpy(s->errbody + s->errlen, p, k);
		s->errlen += k;
		s->errbody[s->errlen] = '\0';
		return n;
	}
	if (s->rlen - s->rpos >= LOG_HIGH) {
		s->paused = 1;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (s->rpos > 0) {
		memmove(s->raw, s->raw + s->rpos, s->rlen - s->rpos);
		s->rlen -= s->rpos;
		s->rpos = 0;
	}
	if (s->rlen + n > s->rcap) {
		size_t cap = s->rcap ? s->rcap : LOG_HIGH;
		while (cap < s->rlen + n)
			cap *= 2;
		char *q = realloc(s->raw, cap);
		if (q == NULL)
			return 0;
		s->raw = q;
		s->rcap = cap;
	}
	memcpy(s->raw + s->rlen, p, n);
	s->rlen += n;
	s->bytes += n;
	if (s->rlen > s->peak)
		s->peak = s->rlen;
	return n;
}

static void logs_fail(struct dlogs *s, const char *code, const char *msg)
{
	if (s->code == NULL) {
		s->code = code;
		snprintf(s->msg, sizeof s->msg, "%s", msg);
	}
	s->done = 1;
}

/* Drive the transfer once: perform (and pump the SSH tunnel), collect completion, else wait up
 * to the time left. */
static void logs_pump(struct dlogs *s)
{
	int done = 0;
	CURLcode result = CURLE_OK;
	double now = rb_mono_now();
	double idle_left = s->idle - (now - s->last_data), budget_left = s->budget - s->waited;
	double wait = idle_left < budget_left ? idle_left : budget_left;

	if (wait > 0.5)
		wait = 0.5;
	if (s->rlen > s->rpos || s->paused)
		wait = 0;
	if (dk_xfer_step(s->multi, s->easy, s->tun.S ? &s->tun : NULL, wait, &done, &result) < 0) {
		if (s->tun.code)
			return logs_fail(s, s->tun.code, s->tun.msg);
		return logs_fail(s, "io", "docker logs: curl multi failure");
	}
	s->waited += rb_mono_now() - now;
	if (done) {
		s->done = 1;
		s->result = result;
		return;
	}
	if (s->rlen > s->rpos || s->paused)
		return;
	now = rb_mono_now();
	idle_left = s->idle - (now - s->last_data);
	budget_left = s->budget - s->waited;
	if (idle_left <= 0 || budget_left <= 0 || rb_run_deadline_passed()) {
		char msg[160];
		snprintf(msg, sizeof msg, "docker logs: timed out (%s)",
			 rb_run_deadline_passed() ? "the run deadline passed" :
			 idle_left <= 0 ? "no data within idle_timeout" : "total wait exceeded timeout");
		return logs_fail(s, "timeout", msg);
	}
}

/* Turns a finished transfer into the stream's final state (code/msg when it failed). */
static void logs_finish_status(struct dlogs *s)
{
	if (s->code)
		return;
	if (s->result != CURLE_OK) {
		char msg[400];
		snprintf(msg, sizeof msg, "docker logs: %s", s->curl_err[0] ? s->curl_err : curl_easy_strerror(s->result));
		logs_fail(s, dk_curl_code(s->result), msg);
	} else if (s->status != 200) {
		char msg[512];
		const char *code;
		dk_http_error(s->errbody, s->status, &code, msg, sizeof msg);
		logs_fail(s, code, msg);
	}
}

static void push_line(lua_State *L, struct dlogs *s, const struct dmx_line *l)
{
	static const char *const names[] = { "stdin", "stdout", "stderr" };
	const char *sp;
	double e;

	s->lines++;
	lua_pushstring(L, names[l->stream]);
	if (s->timestamps && (sp = memchr(l->p, ' ', l->len)) != NULL &&
	    dmx_parse_time(l->p, (size_t)(sp - l->p), &e) == 0) {
		lua_pushlstring(L, l->p, (size_t)(sp - l->p));
		lua_pushnumber(L, e);
		lua_pushlstring(L, sp + 1, l->len - (size_t)(sp - l->p) - 1);
	} else {
		lua_pushnil(L);
		lua_pushnil(L);
		lua_pushlstring(L, l->p, l->len);
	}
}

/* stream:next() -> stream, ts, epoch, line | nil | nil, msg, code */
static int logs_next(lua_State *L)
{
	struct dlogs *s = luaL_checkudata(L, 1, LOGS_MT);
	struct dmx_line l;
	int got;

	for (;;) {
		if (s->finished || s->multi == NULL) {
			if (s->code)
				return rb_failf(L, s->code, "%s", s->msg);
			lua_pushnil(L);
			return 1;
		}
		while (s->rpos < s->rlen) {
			size_t t = dmx_feed(&s->dmx, s->raw + s->rpos, s->rlen - s->rpos, &l, &got);
			if (t == (size_t)-1) {
				logs_fail(s, "protocol", "docker logs: corrupt stream (bad frame header)");
				break;
			}
			s->rpos += t;
			if (got) {
				push_line(L, s, &l);
				return 4;
			}
		}
		if (s->rpos >= s->rlen)
			s->rpos = s->rlen = 0;
		if (s->done) {
			logs_finish_status(s);
			if (s->code == NULL && dmx_flush(&s->dmx, &l)) {
				push_line(L, s, &l);
				return 4;
			}
			s->finished = 1;
			logs_release(s);
			continue;
		}
		if (s->paused) {
			s->paused = 0;
			curl_easy_pause(s->easy, CURLPAUSE_CONT);   /* may deliver the held chunk now */
			continue;
		}
		logs_pump(s);
	}
}

static int logs_iter(lua_State *L)
{
	int n = logs_next(L);
	if (n == 4)
		return 4;
	lua_pushnil(L);   /* end or error: the loop ends; stream:err() tells which */
	return 1;
}

static int logs_lines(lua_State *L)
{
	luaL_checkudata(L, 1, LOGS_MT);
	lua_pushcfunction(L, logs_iter);
	lua_pushvalue(L, 1);
	return 2;
}

static int logs_err(lua_State *L)
{
	struct dlogs *s = luaL_checkudata(L, 1, LOGS_MT);
	if (s->code == NULL)
		return 0;
	lua_pushstring(L, s->msg);
	lua_pushstring(L, s->code);
	return 2;
}

static int logs_stats(lua_State *L)
{
	struct dlogs *s = luaL_checkudata(L, 1, LOGS_MT);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)s->lines);
	lua_setfield(L, -2, "lines");
	lua_pushinteger(L, (lua_Integer)s->bytes);
	lua_setfield(L, -2, "bytes");
	lua_pushinteger(L, (lua_Integer)s->peak);
	lua_setfield(L, -2, "buffer");
	lua_pushboolean(L, s->finished);
	lua_setfield(L, -2, "finished");
	return 1;
}

static const char *const logs_keys[] = { "socket", "ssh", "container", "since", "until", "tail",
	"timestamps", "stdout", "stderr", "tty", "max_line", "timeout", "idle_timeout", NULL };

int dk_logs(lua_State *L)
{
	char since[48], until[48], tail[32] = "all", url[512], path[400];
	int has_since, has_until, tty;

	struct dk_conn conn;
	rb_check_keys(L, 1, logs_keys, "docker.logs");
	dk_opt_conn(L, 1, &conn);
	const char *container = dk_opt_container(L, 1);
	has_since = dk_opt_time(L, 1, "since", since, sizeof since);
	has_until = dk_opt_time(L, 1, "until", until, sizeof until);
	lua_getfield(L, 1, "tail");
	if (lua_type(L, -1) == LUA_TNUMBER) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
			return luaL_error(L, "option 'tail' must be a non-negative integer or \"all\"");
		snprintf(tail, sizeof tail, "%lld", (long long)lua_tointeger(L, -1));
	} else if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "all") == 0)) {
		return luaL_error(L, "option 'tail' must be a non-negative integer or \"all\"");
	}
	lua_pop(L, 1);
	int timestamps = rb_opt_bool(L, 1, "timestamps", 1);
	int out = rb_opt_bool(L, 1, "stdout", 1), err = rb_opt_bool(L, 1, "stderr", 1);
	double max_line = rb_opt_number(L, 1, "max_line", 256 * 1024, 64, 1e9);
	double timeout = rb_opt_number(L, 1, "timeout", 30, 0.001, 1e9);
	double idle = rb_opt_number(L, 1, "idle_timeout", timeout, 0.001, 1e9);
	lua_getfield(L, 1, "tty");
	if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
		return luaL_error(L, "option 'tty' must be a boolean");
	tty = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	int base = lua_gettop(L);

	if (tty < 0) {   /* a tty container sends raw text: ask the daemon (also finds notfound early) */
		int n = dk_inspect_into(L, &conn, container, timeout);
		if (n == 3)
			return 3;
		lua_getfield(L, -1, "tty");
		tty = lua_toboolean(L, -1);
		lua_settop(L, base);
	}

	snprintf(path, sizeof path, "/containers/%s/logs?follow=0&stdout=%d&stderr=%d&timestamps=%d&tail=%s%s%s%s%s",
		 container, out, err, timestamps, tail, has_since ? "&since=" : "", has_since ? since : "",
		 has_until ? "&until=" : "", has_until ? until : "");
	snprintf(url, sizeof url, "http://docker%s", path);

	struct dlogs *s = lua_newuserdatauv(L, sizeof *s, 1);
	memset(s, 0, sizeof *s);
	dk_tunnel_init(&s->tun);
	s->finished = 1;   /* created closed */
	luaL_setmetatable(L, LOGS_MT);
	if (conn.ssh) {   /* the session must outlive the stream's channel */
		lua_getfield(L, 1, "ssh");
		lua_setiuservalue(L, -2, 1);
	}

	dmx_init(&s->dmx, tty ? DMX_RAW : DMX_MUX, (size_t)max_line);
	s->dmx_ready = 1;
	s->timestamps = timestamps;
	s->budget = timeout;
	s->idle = idle;
	s->easy = curl_easy_init();
	s->multi = curl_multi_init();
	if (s->easy == NULL || s->multi == NULL)
		return rb_failf(L, "io", "docker logs: cannot create curl handles");
	if (dk_setup_easy(s->easy, &conn, &s->tun, url, timeout, s->curl_err, &s->code, s->msg, sizeof s->msg) < 0) {
		const char *code = s->code;
		logs_release(s);
		return rb_failf(L, code, "%s", s->msg);
	}
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, logs_write);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	if (curl_multi_add_handle(s->multi, s->easy) != CURLM_OK)
		return rb_failf(L, "io", "docker logs: cannot start the transfer");
	s->attached = 1;
	s->finished = 0;
	s->last_data = rb_mono_now();

	/* Wait for the status line so that refused/notfound/timeout come from docker.logs itself. */
	while (!s->done && s->status == 0) {
		logs_pump(s);
		if (s->status == 0)
			curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
	}
	while (s->status != 200 && !s->done)
		logs_pump(s);   /* the small error body */
	if (s->done) {
		logs_finish_status(s);
		if (s->code) {
			logs_release(s);
			return rb_failf(L, s->code, "%s", s->msg);
		}
	}
	return 1;
}

static const luaL_Reg logs_methods[] = {
	{ "next", logs_next },
	{ "lines", logs_lines },
	{ "err", logs_err },
	{ "stats", logs_stats },
	{ "close", logs_close },
	{ NULL, NULL }
};

void dk_logs_metatable(lua_State *L)
{
	luaL_newmetatable(L, LOGS_MT);
	luaL_newlib(L, logs_methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, logs_close);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, logs_close);
	lua_setfield(L, -2, "__close");
	lua_pushliteral(L, "runbook.docker.logs");
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}
