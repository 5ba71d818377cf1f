/* ldocker.c: runbook.docker, the Docker Engine API over its unix socket (libcurl, cJSON).
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
 *   docker.ping{socket=, timeout=10} -> api_version | nil, msg, code
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
 * Depends on: libcurl, libcjson, Lua 5.4, docker_demux.c, docker_logs.c (the log stream). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "docker_api.h"
#include "docker_demux.h"

#define REQ_MT "runbook.docker.req"
#define BODY_LIMIT (16u << 20)     /* JSON answers (inspect, container lists) */

double dk_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int dk_push_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	va_list ap;
	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_pushstring(L, code);
	return 3;
}

/* ---------------------------------------------------------------- options */

const char *dk_opt_string(lua_State *L, int idx, const char *k, const char *def)
{
	const char *s;
	lua_getfield(L, idx, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		if (def == NULL)
			luaL_error(L, "option '%s' is required", k);
		return def;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "option '%s' must be a string", k);
	s = lua_tostring(L, -1);
	lua_pop(L, 1);    /* still referenced by the options table */
	return s;
}

double dk_opt_number(lua_State *L, int idx, const char *k, double def, double min)
{
	double v = def;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "option '%s' must be a number", k);
		v = lua_tonumber(L, -1);
		if (!(v >= min) || v > 1e9)
			luaL_error(L, "option '%s' out of range", k);
	}
	lua_pop(L, 1);
	return v;
}

int dk_opt_bool(lua_State *L, int idx, const char *k, int def)
{
	int v = def;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		if (!lua_isboolean(L, -1))
			luaL_error(L, "option '%s' must be a boolean", k);
		v = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

/* Container names and ids: [A-Za-z0-9][A-Za-z0-9_.-]*, so they need no URL escaping. */
const char *dk_opt_container(lua_State *L, int idx)
{
	const char *c = dk_opt_string(L, idx, "container", NULL);
	size_t n = strlen(c);
	int good = n > 0 && n < 256 && c[0] != '.' && c[0] != '-' && c[0] != '_';
	for (size_t i = 0; good && i < n; i++)
		good = (c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
		       (c[i] >= '0' && c[i] <= '9') || c[i] == '_' || c[i] == '.' || c[i] == '-';
	if (!good)
		luaL_error(L, "option 'container': invalid container name '%s'", c);
	return c;
}

/* since/until: epoch seconds (number or digits) or RFC 3339 -> "SECONDS.NANOS" for the API,
 * exact for RFC 3339 strings (a record's own ts can be passed back as a bound). */
int dk_opt_time(lua_State *L, int idx, const char *k, char *out, size_t outsz)
{
	long long sec;
	long ns;
	double e;

	lua_getfield(L, idx, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		size_t n;
		const char *s = lua_tolstring(L, -1, &n);
		if (dmx_parse_time_ns(s, n, &sec, &ns) == 0) {
			lua_pop(L, 1);
			if (sec < 0)
				return luaL_error(L, "option '%s' out of range", k);
			snprintf(out, outsz, "%lld.%09ld", sec, ns);
			return 1;
		}
		if (!lua_isnumber(L, -1) || s[0] < '0' || s[0] > '9')
			return luaL_error(L, "option '%s': expected epoch seconds or an RFC 3339 time, got '%s'", k, s);
	} else if (lua_type(L, -1) != LUA_TNUMBER) {
		return luaL_error(L, "option '%s' must be a number or a string", k);
	}
	e = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!(e >= 0) || e > 1e11)
		return luaL_error(L, "option '%s' out of range", k);
	sec = (long long)floor(e);
	ns = lround((e - (double)sec) * 1e9);
	if (ns >= 1000000000L) {
		sec += 1;
		ns -= 1000000000L;
	}
	snprintf(out, outsz, "%lld.%09ld", sec, ns);
	return 1;
}

/* ---------------------------------------------------------------- one request */

struct dreq {
	CURL *easy;
	char *body;
	size_t len, cap;
	long status;
	const char *code;
	char msg[512];
	char err[CURL_ERROR_SIZE];
};

static int req_gc(lua_State *L)
{
	struct dreq *r = luaL_checkudata(L, 1, REQ_MT);
	if (r->easy)
		curl_easy_cleanup(r->easy);
	free(r->body);
	r->easy = NULL;
	r->body = NULL;
	return 0;
}

static size_t req_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct dreq *r = ud;
	size_t n = sz * nm;
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8192;
		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap > BODY_LIMIT)
			return 0;
		char *q = realloc(r->body, cap);
		if (q == NULL)
			return 0;
		r->body = q;
		r->cap = cap;
	}
	memcpy(r->body + r->len, p, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* The options every handle shares. The socket is checked first so that a missing daemon gives
 * a clear message rather than curl's. Returns 0, or -1 with code/msg set. */
int dk_setup_easy(CURL *e, const char *sock, const char *url, double timeout, char *errbuf,
		      const char **code, char *msg, size_t msgsz)
{
	struct stat st;
	long ms = (long)(timeout * 1000);
	if (stat(sock, &st) != 0) {
		*code = "refused";
		snprintf(msg, msgsz, "docker socket %s: %s (is the daemon running?)", sock, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		*code = "refused";
		snprintf(msg, msgsz, "docker socket %s: not a socket", sock);
		return -1;
	}
	if (access(sock, R_OK | W_OK) != 0) {
		*code = "denied";
		snprintf(msg, msgsz, "docker socket %s: %s", sock, strerror(errno));
		return -1;
	}
	if (ms < 1)
		ms = 1;
	curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = '\0';
	return 0;
}

const char *dk_curl_code(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT: return "refused";
	case CURLE_OPERATION_TIMEDOUT: return "timeout";
	default: return "io";
	}
}

/* Message of an API error body {"message":"..."}, else the status line. */
void dk_http_error(const char *body, long status, const char **code, char *msg, size_t msgsz)
{
	cJSON *j = body ? cJSON_Parse(body) : NULL;
	cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
	*code = status == 404 ? "notfound" : "http";
	if (cJSON_IsString(m))
		snprintf(msg, msgsz, "docker: %s (HTTP %ld)", m->valuestring, status);
	else
		snprintf(msg, msgsz, "docker: HTTP %ld", status);
	cJSON_Delete(j);
}

/* Pushes a request box and performs method path. Returns 0 (r->status, r->body set) or -1
 * (r->code, r->msg set). The box owns all C memory, so a raise later frees it. */
static struct dreq *req_new(lua_State *L)
{
	struct dreq *r = lua_newuserdatauv(L, sizeof *r, 0);
	memset(r, 0, sizeof *r);
	luaL_setmetatable(L, REQ_MT);
	return r;
}

static int req_run(struct dreq *r, const char *sock, const char *method, const char *path,
		   double timeout)
{
	char url[1024];
	CURLcode rc;

	snprintf(url, sizeof url, "http://docker%s", path);
	r->easy = curl_easy_init();
	if (r->easy == NULL) {
		r->code = "io";
		snprintf(r->msg, sizeof r->msg, "docker: cannot create a curl handle");
		return -1;
	}
	if (dk_setup_easy(r->easy, sock, url, timeout, r->err, &r->code, r->msg, sizeof r->msg) < 0)
		return -1;
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000) + 1);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, req_write);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, "");
	}
	rc = curl_easy_perform(r->easy);
	if (rc != CURLE_OK) {
		r->code = dk_curl_code(rc);
		snprintf(r->msg, sizeof r->msg, "docker %s %s: %s", method, path, r->err[0] ? r->err : curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status >= 400) {
		dk_http_error(r->body, r->status, &r->code, r->msg, sizeof r->msg);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- JSON -> Lua */

static void set_str(lua_State *L, const char *k, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring;
		if (*s == '/')
			s++;   /* container names come as "/name" */
		lua_pushstring(L, s);
		lua_setfield(L, -2, k);
	}
}

static void set_labels(lua_State *L, const cJSON *labels)
{
	const cJSON *it;
	lua_newtable(L);
	cJSON_ArrayForEach(it, labels) {
		if (cJSON_IsString(it) && it->string) {
			lua_pushstring(L, it->valuestring);
			lua_setfield(L, -2, it->string);
		}
	}
	lua_setfield(L, -2, "labels");
}

/* Builds the inspect record from the JSON body in r; the parsed tree is freed before any raise
 * could escape, by parking it in a box of its own. */
static int json_gc(lua_State *L)
{
	cJSON **j = lua_touserdata(L, 1);
	cJSON_Delete(*j);
	*j = NULL;
	return 0;
}

static cJSON *parse_boxed(lua_State *L, const char *body)
{
	cJSON **j = lua_newuserdatauv(L, sizeof *j, 0);
	*j = NULL;
	luaL_setmetatable(L, "runbook.docker.json");
	*j = body ? cJSON_Parse(body) : NULL;
	return *j;
}

static void push_inspect(lua_State *L, const cJSON *root)
{
	const cJSON *state = cJSON_GetObjectItemCaseSensitive(root, "State");
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "Config");
	const cJSON *v;
	double t;

	lua_newtable(L);
	set_str(L, "name", cJSON_GetObjectItemCaseSensitive(root, "Name"));
	set_str(L, "id", cJSON_GetObjectItemCaseSensitive(root, "Id"));
	v = cJSON_GetObjectItemCaseSensitive(root, "RestartCount");
	lua_pushinteger(L, cJSON_IsNumber(v) ? (lua_Integer)v->valuedouble : 0);
	lua_setfield(L, -2, "restart_count");
	set_str(L, "status", cJSON_GetObjectItemCaseSensitive(state, "Status"));
	lua_pushboolean(L, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "Running")));
	lua_setfield(L, -2, "running");
	lua_pushboolean(L, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "OOMKilled")));
	lua_setfield(L, -2, "oom_killed");
	v = cJSON_GetObjectItemCaseSensitive(state, "ExitCode");
	lua_pushinteger(L, cJSON_IsNumber(v) ? (lua_Integer)v->valuedouble : 0);
	lua_setfield(L, -2, "exit_code");
	v = cJSON_GetObjectItemCaseSensitive(state, "Pid");
	lua_pushinteger(L, cJSON_IsNumber(v) ? (lua_Integer)v->valuedouble : 0);
	lua_setfield(L, -2, "pid");
	set_str(L, "error", cJSON_GetObjectItemCaseSensitive(state, "Error"));
	set_str(L, "health", cJSON_GetObjectItemCaseSensitive(
			   cJSON_GetObjectItemCaseSensitive(state, "Health"), "Status"));
	v = cJSON_GetObjectItemCaseSensitive(state, "StartedAt");
	set_str(L, "started_at", v);
	if (cJSON_IsString(v) && dmx_parse_time(v->valuestring, strlen(v->valuestring), &t) == 0 && t > 0) {
		lua_pushnumber(L, t);
		lua_setfield(L, -2, "started");
	}
	v = cJSON_GetObjectItemCaseSensitive(state, "FinishedAt");
	set_str(L, "finished_at", v);
	if (cJSON_IsString(v) && dmx_parse_time(v->valuestring, strlen(v->valuestring), &t) == 0 && t > 0) {
		lua_pushnumber(L, t);
		lua_setfield(L, -2, "finished");
	}
	set_str(L, "image", cJSON_GetObjectItemCaseSensitive(config, "Image"));
	lua_pushboolean(L, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "Tty")));
	lua_setfield(L, -2, "tty");
	set_labels(L, cJSON_GetObjectItemCaseSensitive(config, "Labels"));
}

static const char *const inspect_keys[] = { "socket", "container", "timeout", NULL };

/* Shared by inspect and logs (tty detection): leaves boxes on the stack, pushes the record. */
int dk_inspect_into(lua_State *L, const char *sock, const char *container, double timeout)
{
	char path[320];
	struct dreq *r = req_new(L);
	cJSON *root;

	snprintf(path, sizeof path, "/containers/%s/json", container);
	if (req_run(r, sock, "GET", path, timeout) < 0)
		return dk_push_fail(L, r->code, "%s", r->msg);
	root = parse_boxed(L, r->body);
	if (!cJSON_IsObject(root))
		return dk_push_fail(L, "protocol", "docker GET %s: answer is not a JSON object", path);
	push_inspect(L, root);
	return 1;
}

static int docker_inspect(lua_State *L)
{
	rb_check_keys(L, 1, inspect_keys);
	const char *sock = dk_opt_string(L, 1, "socket", NULL);
	const char *container = dk_opt_container(L, 1);
	double timeout = dk_opt_number(L, 1, "timeout", 10, 0.001);
	return dk_inspect_into(L, sock, container, timeout);
}

static const char *const find_keys[] = { "socket", "labels", "all", "timeout", NULL };

static int docker_find(lua_State *L)
{
	char path[2048];
	const cJSON *it;
	int n = 0;

	rb_check_keys(L, 1, find_keys);
	const char *sock = dk_opt_string(L, 1, "socket", NULL);
	int all = dk_opt_bool(L, 1, "all", 1);
	double timeout = dk_opt_number(L, 1, "timeout", 10, 0.001);

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

	struct dreq *r = req_new(L);
	r->easy = curl_easy_init();
	char *esc = r->easy ? curl_easy_escape(r->easy, filters, 0) : NULL;
	if (esc == NULL || strlen(esc) > sizeof path - 64) {
		curl_free(esc);
		return dk_push_fail(L, "io", "docker: cannot build the container filter");
	}
	snprintf(path, sizeof path, "/containers/json?all=%d&filters=%s", all, esc);
	curl_free(esc);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	if (req_run(r, sock, "GET", path, timeout) < 0)
		return dk_push_fail(L, r->code, "%s", r->msg);
	cJSON *root = parse_boxed(L, r->body);
	if (!cJSON_IsArray(root))
		return dk_push_fail(L, "protocol", "docker GET /containers/json: answer is not a JSON array");
	lua_newtable(L);
	cJSON_ArrayForEach(it, root) {
		lua_newtable(L);
		set_str(L, "name", cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(it, "Names"), 0));
		set_str(L, "id", cJSON_GetObjectItemCaseSensitive(it, "Id"));
		set_str(L, "state", cJSON_GetObjectItemCaseSensitive(it, "State"));
		set_str(L, "status", cJSON_GetObjectItemCaseSensitive(it, "Status"));
		set_labels(L, cJSON_GetObjectItemCaseSensitive(it, "Labels"));
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

static const char *const action_keys[] = { "socket", "container", "timeout", "grace", NULL };

/* POST /containers/NAME/<action>: 204 done, 304 already in that state. */
static int container_action(lua_State *L, const char *action)
{
	char path[320];
	rb_check_keys(L, 1, action_keys);
	const char *sock = dk_opt_string(L, 1, "socket", NULL);
	const char *container = dk_opt_container(L, 1);
	double timeout = dk_opt_number(L, 1, "timeout", 30, 0.001);
	double grace = dk_opt_number(L, 1, "grace", timeout / 2 < 10 ? floor(timeout / 2) : 10, 0);
	if (strcmp(action, "start") == 0)
		snprintf(path, sizeof path, "/containers/%s/start", container);
	else
		snprintf(path, sizeof path, "/containers/%s/%s?t=%ld", container, action, (long)grace);
	struct dreq *r = req_new(L);
	if (req_run(r, sock, "POST", path, timeout) < 0)
		return dk_push_fail(L, r->code, "%s", r->msg);
	lua_pushboolean(L, 1);
	lua_pushstring(L, r->status == 304 ? "unchanged" : "done");
	return 2;
}

static int docker_restart(lua_State *L) { return container_action(L, "restart"); }
static int docker_stop(lua_State *L) { return container_action(L, "stop"); }
static int docker_start(lua_State *L) { return container_action(L, "start"); }

static const char *const ping_keys[] = { "socket", "timeout", NULL };

static int docker_ping(lua_State *L)
{
	rb_check_keys(L, 1, ping_keys);
	const char *sock = dk_opt_string(L, 1, "socket", NULL);
	double timeout = dk_opt_number(L, 1, "timeout", 10, 0.001);
	struct dreq *r = req_new(L);
	if (req_run(r, sock, "GET", "/version", timeout) < 0)
		return dk_push_fail(L, r->code, "%s", r->msg);
	cJSON *root = parse_boxed(L, r->body);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "ApiVersion");
	if (!cJSON_IsString(v))
		return dk_push_fail(L, "protocol", "docker GET /version: no ApiVersion");
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
	{ "ping", docker_ping },
	{ "parse_time", docker_parse_time },
	{ NULL, NULL }
};

int luaopen_runbook_docker(lua_State *L)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	luaL_newmetatable(L, REQ_MT);
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, "runbook.docker.json");
	lua_pushcfunction(L, json_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	dk_logs_metatable(L);
	luaL_newlib(L, docker_funcs);
	return 1;
}
