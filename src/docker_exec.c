/* docker_exec.c: docker.exec, a command in a running container through the Engine API (what
 * `docker exec` does, without starting the CLI): POST /containers/NAME/exec, POST
 * /exec/ID/start (the multiplexed stdout/stderr stream until the command ends), GET
 * /exec/ID/json (the exit code). stdout and stderr are kept apart, each capped at max_output
 * bytes (the rest is read and dropped, truncated = true). No stdin: a command that reads it
 * sees EOF. The timeout bounds the whole call; like the CLI, it cannot stop the command inside
 * the container once it has started.
 * Depends on: docker_api.c (transport, requests), libcjson, Lua 5.4, rbaux.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "docker_api.h"

#define EXEC_MT "runbook.docker.exec"

struct dexec {
	char *buf[2];              /* stdout, stderr */
	size_t len[2], cap[2];
	size_t limit;
	int truncated, bad;
	unsigned char hdr[8];
	size_t hlen, left;
	int cur;
	char *json;                /* the create request, from cJSON */
};

static int exec_gc(lua_State *L)
{
	struct dexec *x = luaL_checkudata(L, 1, EXEC_MT);
	for (int i = 0; i < 2; i++) {
		free(x->buf[i]);
		x->buf[i] = NULL;
	}
	if (x->json)
		cJSON_free(x->json);
	x->json = NULL;
	return 0;
}

static int append(struct dexec *x, int i, const char *p, size_t n)
{
	if (x->len[i] + n > x->limit) {
		x->truncated = 1;
		n = x->limit - x->len[i];
	}
	if (n == 0)
		return 0;
	if (x->len[i] + n > x->cap[i]) {
		size_t cap = x->cap[i] ? x->cap[i] : 4096;
		while (cap < x->len[i] + n)
			cap *= 2;
		char *q = realloc(x->buf[i], cap);
		if (q == NULL)
			return -1;
		x->buf[i] = q;
		x->cap[i] = cap;
	}
	memcpy(x->buf[i] + x->len[i], p, n);
	x->len[i] += n;
	return 0;
}

/* The start request's body sink: 8-byte frame headers (stream, big-endian length), payloads. */
static size_t exec_sink(void *ud, const char *p, size_t n)
{
	struct dexec *x = ud;
	size_t total = n;
	while (n > 0) {
		if (x->left == 0) {
			size_t k = 8 - x->hlen < n ? 8 - x->hlen : n;
			memcpy(x->hdr + x->hlen, p, k);
			x->hlen += k;
			p += k;
			n -= k;
			if (x->hlen < 8)
				break;
			x->hlen = 0;
			if (x->hdr[0] > 2 || x->hdr[1] || x->hdr[2] || x->hdr[3]) {
				x->bad = 1;
				return 0;   /* curl stops: not a multiplexed stream */
			}
			x->cur = x->hdr[0] == 2 ? 1 : 0;
			x->left = ((size_t)x->hdr[4] << 24) | ((size_t)x->hdr[5] << 16) |
				  ((size_t)x->hdr[6] << 8) | (size_t)x->hdr[7];
			continue;
		}
		size_t k = x->left < n ? x->left : n;
		if (append(x, x->cur, p, k) < 0)
			return 0;
		x->left -= k;
		p += k;
		n -= k;
	}
	return total;
}

static const char *const exec_keys[] = { "socket", "ssh", "container", "argv", "timeout",
	"max_output", NULL };

/* docker.exec{socket=, ssh=, container=, argv=, timeout=30, max_output=8MiB} */
int dk_exec(lua_State *L)
{
	struct dk_conn conn;
	char path[400], id[80];
	lua_Integer n;

	rb_check_keys(L, 1, exec_keys, "docker.exec");
	dk_opt_conn(L, 1, &conn);
	const char *container = dk_opt_container(L, 1);
	double timeout = rb_opt_number(L, 1, "timeout", 30, 0.001, 86400);
	lua_Integer limit = rb_opt_int(L, 1, "max_output", 8 << 20, 0, (lua_Integer)1 << 30);
	if (lua_getfield(L, 1, "argv") != LUA_TTABLE || (n = (lua_Integer)lua_rawlen(L, -1)) == 0)
		return luaL_error(L, "docker.exec: option 'argv' must be a non-empty list of strings");
	int argv_idx = lua_gettop(L);
	for (lua_Integer i = 1; i <= n; i++) {
		size_t len;
		if (lua_rawgeti(L, argv_idx, i) != LUA_TSTRING)
			return luaL_error(L, "docker.exec: argv[%d] must be a string", (int)i);
		const char *a = lua_tolstring(L, -1, &len);
		if (memchr(a, '\0', len))
			return luaL_error(L, "docker.exec: argv[%d] contains a NUL byte", (int)i);
		lua_pop(L, 1);
	}
	double t0 = rb_mono_now(), dl = rb_deadline_in(timeout);

	struct dexec *x = lua_newuserdatauv(L, sizeof *x, 0);
	memset(x, 0, sizeof *x);
	luaL_setmetatable(L, EXEC_MT);
	x->limit = (size_t)limit;

	/* the create request: built and printed by cJSON, freed by the box */
	cJSON *req = cJSON_CreateObject(), *cmd = cJSON_CreateArray();
	int ok = req && cmd;
	if (ok) {
		cJSON_AddItemToObject(req, "Cmd", cmd);
		cmd = NULL;
		ok = cJSON_AddTrueToObject(req, "AttachStdout") && cJSON_AddTrueToObject(req, "AttachStderr");
	}
	for (lua_Integer i = 1; ok && i <= n; i++) {
		lua_rawgeti(L, argv_idx, i);   /* a string: checked above, cannot raise */
		ok = cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(req, "Cmd"),
					  cJSON_CreateString(lua_tostring(L, -1)));
		lua_pop(L, 1);
	}
	x->json = ok ? cJSON_PrintUnformatted(req) : NULL;
	cJSON_Delete(req);
	cJSON_Delete(cmd);
	if (x->json == NULL)
		return rb_failf(L, "io", "docker exec: out of memory");

	/* 1. create */
	snprintf(path, sizeof path, "/containers/%s/exec", container);
	struct dreq *r = dk_req_new(L);
	if (dk_req_run(r, &conn, "POST", path, x->json, timeout) < 0) {
		const char *code = r->code;
		if (r->status == 409)
			code = "closed";   /* the container is not running (or is paused) */
		return rb_failf(L, code, "%s: %s", container, r->msg);
	}
	cJSON *root = dk_parse_boxed(L, r->body);
	const cJSON *jid = cJSON_GetObjectItemCaseSensitive(root, "Id");
	if (!cJSON_IsString(jid) || strlen(jid->valuestring) >= sizeof id ||
	    strspn(jid->valuestring, "0123456789abcdef") != strlen(jid->valuestring))
		return rb_failf(L, "protocol", "docker POST %s: no exec id in the answer", path);
	snprintf(id, sizeof id, "%s", jid->valuestring);

	/* 2. start: the output until the command ends and the daemon closes the stream */
	snprintf(path, sizeof path, "/exec/%s/start", id);
	r = dk_req_new(L);
	r->sink = exec_sink;
	r->sink_ud = x;
	double left = dl - rb_mono_now();
	if (left <= 0 || dk_req_run(r, &conn, "POST", path, "{\"Detach\":false,\"Tty\":false}", left) < 0) {
		if (x->bad)
			return rb_failf(L, "protocol", "docker exec %s: not a multiplexed stream", container);
		if (left <= 0)
			return rb_failf(L, "timeout", "docker exec %s: timed out after %.3gs", container, timeout);
		return rb_failf(L, r->code, "docker exec %s: %s", container, r->msg);
	}

	/* 3. the exit code (the stream can end a moment before the daemon records it) */
	snprintf(path, sizeof path, "/exec/%s/json", id);
	for (;;) {
		left = dl - rb_mono_now();
		if (left <= 0)
			return rb_failf(L, "timeout", "docker exec %s: no exit code within %.3gs", container, timeout);
		r = dk_req_new(L);
		if (dk_req_run(r, &conn, "GET", path, NULL, left) < 0)
			return rb_failf(L, r->code, "docker exec %s: %s", container, r->msg);
		root = dk_parse_boxed(L, r->body);
		const cJSON *running = cJSON_GetObjectItemCaseSensitive(root, "Running");
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "ExitCode");
		if (!cJSON_IsTrue(running) && cJSON_IsNumber(code)) {
			lua_createtable(L, 0, 5);
			lua_pushlstring(L, x->buf[0] ? x->buf[0] : "", x->len[0]);
			lua_setfield(L, -2, "stdout");
			lua_pushlstring(L, x->buf[1] ? x->buf[1] : "", x->len[1]);
			lua_setfield(L, -2, "stderr");
			lua_pushinteger(L, (lua_Integer)code->valuedouble);
			lua_setfield(L, -2, "status");
			lua_pushboolean(L, x->truncated);
			lua_setfield(L, -2, "truncated");
			lua_pushnumber(L, (rb_mono_now() - t0) * 1000.0);
			lua_setfield(L, -2, "ms");
			return 1;
		}
		lua_pop(L, 2);   /* the request and JSON boxes of this round */
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
}

void dk_exec_register(lua_State *L)
{
	luaL_newmetatable(L, EXEC_MT);
	lua_pushcfunction(L, exec_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
