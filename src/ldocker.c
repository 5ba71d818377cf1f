/* ldocker.c: runbook.docker, the Docker Engine API over its unix socket, local or on an SSH host
 * (libcurl, cJSON). This file is the Lua binding only: see docker_api.h for the helpers below it.
 *
 *   docker.logs{socket=, container=, since=, ["until"]=, tail=, timestamps=true, stdout=true,
 *               stderr=true, tty=, max_line=, timeout=30, idle_timeout=timeout}
 *       -> stream | nil, msg, code
 *     stream:next() -> "stdout"|"stderr", ts_string, epoch, line | nil (end) | nil, msg, code
 *     stream:lines() -> iterator of the same (ends at the end or at an error: see stream:err())
 *     stream:err() -> msg, code of the failure that ended the stream, or nothing
 *     stream:stats() -> {lines=, bytes=, buffer=}   stream:close()
 *   docker.inspect{socket=, container=, timeout=10} -> record | nil, msg, code
 *   docker.find{socket=, labels={k=v,...}, all=true, timeout=10} -> {{name=,id=,state=,status=,labels=},...}
 *   docker.restart{socket=, container=, grace=, timeout=30} / docker.stop{...} / docker.start{...}
 *       -> true, "done"|"unchanged" | nil, msg, code
 *   docker.exec{socket=, container=, argv={...}, timeout=30, max_output=8MiB}
 *       -> {stdout=, stderr=, status=, truncated=, ms=} | nil, msg, code  (code "closed": the
 *       container is not running; a command the container cannot start is status 126/127)
 *   docker.ping{socket=, timeout=10} -> api_version | nil, msg, code
 * Every function also takes ssh = a runbook.ssh session: the daemon is then the one listening
 * on `socket` on that SSH host, reached through a stream-local channel of the session
 * (docker_tunnel.c). An sshd that forbids it (AllowStreamLocalForwarding no), or a socket the
 * SSH user cannot open, answers code "denied" before any request is made.
 *   docker.parse_time(rfc3339) -> epoch | nil
 * Codes: refused (no daemon on the socket), denied (socket permissions), notfound (no such
 * container), timeout, http (other API error), protocol (corrupt stream), io.
 *
 * The log body is read through the curl multi interface, driven only from next(): the write
 * callback copies into a buffer of about 64 KiB and pauses the transfer when it is full, so a
 * log of any size streams in bounded memory and no Lua runs inside a curl callback.
 * Timeouts: `timeout` bounds connecting and the total time spent waiting for the daemon;
 * `idle_timeout` bounds one wait without a byte. Time the caller spends between next() calls
 * does not count (the daemon simply waits on a paused connection).
 * Depends on: docker_api.c, docker_logs.c, docker_exec.c, docker_demux.c, libcurl, libcjson, Lua 5.4. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "docker_api.h"
#include "docker_demux.h"

static const char *const inspect_keys[] = { "socket", "ssh", "container", "timeout", NULL };

static int docker_inspect(lua_State *L)
{
	struct dk_conn conn;
	rb_check_keys(L, 1, inspect_keys, "docker.inspect");
	dk_opt_conn(L, 1, &conn);
	const char *container = dk_opt_container(L, 1);
	double timeout = rb_opt_number(L, 1, "timeout", 10, 0.001, 1e9);
	return dk_inspect_into(L, &conn, container, timeout);
}

static const char *const find_keys[] = { "socket", "ssh", "labels", "all", "timeout", NULL };

static int docker_find(lua_State *L)
{
	char path[2048];
	const cJSON *it;
	int n = 0;

	struct dk_conn conn;
	rb_check_keys(L, 1, find_keys, "docker.find");
	dk_opt_conn(L, 1, &conn);
	int all = rb_opt_bool(L, 1, "all", 1);
	double timeout = rb_opt_number(L, 1, "timeout", 10, 0.001, 1e9);

	/* filters={"label":["k=v",...]} built in a luaL_Buffer, then URL-escaped */
	luaL_Buffer b;
	lua_getfield(L, 1, "labels");
	int labels = lua_gettop(L);
	if (!lua_isnil(L, labels) && !lua_istable(L, labels))
		return luaL_error(L, "option 'labels' must be a table");
	luaL_buffinit(L, &b);
	luaL_addstring(&b, "{\"label\":[");
	if (lua_istable(L, labels)) {
		int first = 1;
		lua_pushnil(L);
		while (lua_next(L, labels)) {
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				return luaL_error(L, "option 'labels': keys and values must be strings");
			const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
			for (const char *p = k; *p; p++)
				if (*p == '"' || *p == '\\' || *p == '=' || (unsigned char)*p < 0x20)
					return luaL_error(L, "option 'labels': bad label name '%s'", k);
			for (const char *p = v; *p; p++)
				if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
					return luaL_error(L, "option 'labels': bad value for '%s'", k);
			lua_pop(L, 1);
			luaL_addstring(&b, first ? "\"" : ",\"");
			luaL_addstring(&b, k);
			luaL_addchar(&b, '=');
			luaL_addstring(&b, v);
			luaL_addchar(&b, '"');
			first = 0;
		}
	}
	luaL_addstring(&b, "]}");
	luaL_pushresult(&b);
	const char *filters = lua_tostring(L, -1);

	struct dreq *r = dk_req_new(L);
	r->easy = curl_easy_init();
	char *esc = r->easy ? curl_easy_escape(r->easy, filters, 0) : NULL;
	if (esc == NULL || strlen(esc) > sizeof path - 64) {
		curl_free(esc);
		return rb_failf(L, "io", "docker: cannot build the container filter");
	}
	snprintf(path, sizeof path, "/containers/json?all=%d&filters=%s", all, esc);
	curl_free(esc);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	if (dk_req_run(r, &conn, "GET", path, NULL, timeout) < 0)
		return rb_failf(L, r->code, "%s", r->msg);
	cJSON *root = dk_parse_boxed(L, r->body);
	if (!cJSON_IsArray(root))
		return rb_failf(L, "protocol", "docker GET /containers/json: answer is not a JSON array");
	lua_newtable(L);
	cJSON_ArrayForEach(it, root) {
		lua_newtable(L);
		dk_set_str(L, "name", cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(it, "Names"), 0));
		dk_set_str(L, "id", cJSON_GetObjectItemCaseSensitive(it, "Id"));
		dk_set_str(L, "state", cJSON_GetObjectItemCaseSensitive(it, "State"));
		dk_set_str(L, "status", cJSON_GetObjectItemCaseSensitive(it, "Status"));
		dk_set_labels(L, cJSON_GetObjectItemCaseSensitive(it, "Labels"));
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

static const char *const action_keys[] = { "socket", "ssh", "container", "timeout", "grace", NULL };

/* POST /containers/NAME/<action>: 204 done, 304 already in that state. */
static int container_action(lua_State *L, const char *action)
{
	char path[320];
	struct dk_conn conn;
	rb_check_keys(L, 1, action_keys, action);
	dk_opt_conn(L, 1, &conn);
	const char *container = dk_opt_container(L, 1);
	double timeout = rb_opt_number(L, 1, "timeout", 30, 0.001, 1e9);
	double grace = rb_opt_number(L, 1, "grace", timeout / 2 < 10 ? floor(timeout / 2) : 10, 0, 1e9);
	if (strcmp(action, "start") == 0)
		snprintf(path, sizeof path, "/containers/%s/start", container);
	else
		snprintf(path, sizeof path, "/containers/%s/%s?t=%ld", container, action, (long)grace);
	struct dreq *r = dk_req_new(L);
	if (dk_req_run(r, &conn, "POST", path, NULL, timeout) < 0)
		return rb_failf(L, r->code, "%s", r->msg);
	lua_pushboolean(L, 1);
	lua_pushstring(L, r->status == 304 ? "unchanged" : "done");
	return 2;
}

static int docker_restart(lua_State *L) { return container_action(L, "restart"); }
static int docker_stop(lua_State *L) { return container_action(L, "stop"); }
static int docker_start(lua_State *L) { return container_action(L, "start"); }

static const char *const ping_keys[] = { "socket", "ssh", "timeout", NULL };

static int docker_ping(lua_State *L)
{
	struct dk_conn conn;
	rb_check_keys(L, 1, ping_keys, "docker.ping");
	dk_opt_conn(L, 1, &conn);
	double timeout = rb_opt_number(L, 1, "timeout", 10, 0.001, 1e9);
	struct dreq *r = dk_req_new(L);
	if (dk_req_run(r, &conn, "GET", "/version", NULL, timeout) < 0)
		return rb_failf(L, r->code, "%s", r->msg);
	cJSON *root = dk_parse_boxed(L, r->body);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "ApiVersion");
	if (!cJSON_IsString(v))
		return rb_failf(L, "protocol", "docker GET /version: no ApiVersion");
	lua_pushstring(L, v->valuestring);
	return 1;
}

static int docker_parse_time(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	double e;
	if (dmx_parse_time(s, n, &e) != 0)
		return 0;
	lua_pushnumber(L, e);
	return 1;
}

static const luaL_Reg docker_funcs[] = {
	{ "logs", dk_logs },
	{ "inspect", docker_inspect },
	{ "find", docker_find },
	{ "restart", docker_restart },
	{ "stop", docker_stop },
	{ "start", docker_start },
	{ "exec", dk_exec },
	{ "ping", docker_ping },
	{ "parse_time", docker_parse_time },
	{ NULL, NULL }
};

int luaopen_runbook_docker(lua_State *L)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	dk_api_register(L);
	dk_exec_register(L);
	dk_logs_metatable(L);
	luaL_newlib(L, docker_funcs);
	return 1;
}
