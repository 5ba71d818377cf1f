/* docker_api.c: the Engine API client of the docker family, below its Lua binding (ldocker.c):
 * option getters, the transport (the daemon's unix socket here, or its socket on an SSH host
 * through docker_tunnel.c), one bounded request, API errors, and the JSON -> Lua records.
 * Every transfer runs through the curl multi interface in dk_xfer_wait(), which also pumps the
 * SSH tunnel, so one loop bounds both transports by the timeout and the run deadline.
 * Never calls back into ldocker.c.
 * Depends on: libcurl, libcjson, Lua 5.4, rbaux.c, docker_demux.c, docker_tunnel.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "docker_api.h"
#include "docker_demux.h"

#define BODY_LIMIT (16u << 20)     /* JSON answers (inspect, container lists) */

/* ---------------------------------------------------------------- options */

/* socket= (required: the daemon's socket path, local or on the SSH host) and ssh= (a
 * runbook.ssh session: talk through it). The session stays referenced by the options table. */
void dk_opt_conn(lua_State *L, int idx, struct dk_conn *c)
{
	c->sock = rb_opt_required(L, idx, "socket");
	c->ssh = NULL;
	lua_getfield(L, idx, "ssh");
	if (!lua_isnil(L, -1)) {
		c->ssh = luaL_testudata(L, -1, SSH_SESSION_MT);
		if (c->ssh == NULL)
			luaL_error(L, "option 'ssh' must be a runbook.ssh session");
	}
	lua_pop(L, 1);
}

/* Container names and ids: [A-Za-z0-9][A-Za-z0-9_.-]*, so they need no URL escaping. */
const char *dk_opt_container(lua_State *L, int idx)
{
	const char *c = rb_opt_required(L, idx, "container");
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


/* ---------------------------------------------------------------- transport */

/* The options every transfer shares, and its connection: the local socket is checked first so
 * that a missing daemon gives a clear message rather than curl's; over SSH the tunnel opens
 * its channel now (a refusal is code "denied"). Returns 0, or -1 with code/msg set. */
int dk_setup_easy(CURL *e, const struct dk_conn *conn, struct dk_tunnel *tun, const char *url,
		  double timeout, char *errbuf, const char **code, char *msg, size_t msgsz)
{
	long ms = (long)(timeout * 1000);
	if (ms < 1)
		ms = 1;
	if (conn->ssh) {
		if (dk_tunnel_open(tun, conn->ssh, conn->sock, rb_deadline_in(timeout), code, msg, msgsz) < 0)
			return -1;
		dk_tunnel_attach(tun, e);
	} else {
		struct stat st;
		if (stat(conn->sock, &st) != 0) {
			*code = "refused";
			snprintf(msg, msgsz, "docker socket %s: %s (is the daemon running?)", conn->sock, strerror(errno));
			return -1;
		}
		if (!S_ISSOCK(st.st_mode)) {
			*code = "refused";
			snprintf(msg, msgsz, "docker socket %s: not a socket", conn->sock);
			return -1;
		}
		if (access(conn->sock, R_OK | W_OK) != 0) {
			*code = "denied";
			snprintf(msg, msgsz, "docker socket %s: %s", conn->sock, strerror(errno));
			return -1;
		}
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, conn->sock);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = '\0';
	return 0;
}

/* One round of a transfer: perform, pump the tunnel, and if nothing is finished wait (at most
 * max_wait seconds and never past the run deadline) for curl's socket or the tunnel's. Sets
 * *done and *result when the transfer completed. Returns 0, or -1 when the tunnel failed. */
int dk_xfer_step(CURLM *m, CURL *e, struct dk_tunnel *tun, double max_wait, int *done,
		 CURLcode *result)
{
	struct curl_waitfd w[2];
	int running = 0, left, n = 0;
	CURLMsg *msg;

	if (curl_multi_perform(m, &running) != CURLM_OK)
		return -1;
	while ((msg = curl_multi_info_read(m, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
			*done = 1;
			*result = msg->data.result;
		}
	if (tun && tun->S) {
		dk_tunnel_pump(tun);
		if (tun->code)
			return -1;
		/* the pump may have handed curl bytes: let curl look before anyone waits */
		if (curl_multi_perform(m, &running) != CURLM_OK)
			return -1;
		while ((msg = curl_multi_info_read(m, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
				*done = 1;
				*result = msg->data.result;
			}
		n = dk_tunnel_waitfds(tun, w);
		/* Bytes the pump wrote that curl has not read yet (curl's end of the tunnel holds the
		 * whole rest of the response once the channel delivered it): curl, resumed after a
		 * pause, was seen (curl 7.88) not to wait on its socket, and nothing new arrives on
		 * ours, so a long wait here cost 200-700 ms per log read. Look again soon instead. */
		int queued = 0;
		if (tun->fd_ours >= 0 && ioctl(tun->fd_ours, SIOCOUTQ, &queued) == 0 && queued > 0 && max_wait > 0.002)
			max_wait = 0.002;
	}
	if (*done || max_wait <= 0)
		return 0;
	double dl = rb_run_deadline();
	if (dl > 0 && dl - rb_mono_now() < max_wait)
		max_wait = dl - rb_mono_now();
	if (max_wait <= 0)
		return 0;
	curl_multi_poll(m, w, (unsigned)n, (int)(max_wait * 1000) + 1, NULL);
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


/* ---------------------------------------------------------------- one request */

static void req_release(struct dreq *r);

static int req_gc(lua_State *L)
{
	struct dreq *r = luaL_checkudata(L, 1, DK_REQ_MT);
	req_release(r);
	free(r->body);
	r->body = NULL;
	return 0;
}

static size_t req_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct dreq *r = ud;
	size_t n = sz * nm;
	if (r->sink)
		return r->sink(r->sink_ud, p, n);
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

/* Pushes a request box: it owns all C memory of the request, so a raise later frees it. */
struct dreq *dk_req_new(lua_State *L)
{
	struct dreq *r = lua_newuserdatauv(L, sizeof *r, 0);
	memset(r, 0, sizeof *r);
	dk_tunnel_init(&r->tun);
	luaL_setmetatable(L, DK_REQ_MT);
	return r;
}

static void req_release(struct dreq *r)
{
	if (r->attached)
		curl_multi_remove_handle(r->multi, r->easy);
	r->attached = 0;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	if (r->multi)
		curl_multi_cleanup(r->multi);
	if (r->hdrs)
		curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->multi = NULL;
	r->hdrs = NULL;
	dk_tunnel_close(&r->tun);
}

static int req_run(struct dreq *r, const struct dk_conn *conn, const char *method, const char *path,
		   const char *json, double timeout);

/* Performs method path (json: the request body, or NULL) within timeout. Returns 0 with
 * r->status and r->body set, or -1 with r->code and r->msg set. The connection (and over SSH
 * its channel) is closed before it returns; only the body stays in the box. */
int dk_req_run(struct dreq *r, const struct dk_conn *conn, const char *method, const char *path,
	       const char *json, double timeout)
{
	int rc = req_run(r, conn, method, path, json, timeout);
	req_release(r);
	return rc;
}

static int req_run(struct dreq *r, const struct dk_conn *conn, const char *method, const char *path,
		   const char *json, double timeout)
{
	char url[1024];
	CURLcode rc = CURLE_OK;
	int done = 0;

	snprintf(url, sizeof url, "http://docker%s", path);
	r->easy = curl_easy_init();
	r->multi = curl_multi_init();
	if (r->easy == NULL || r->multi == NULL) {
		r->code = "io";
		snprintf(r->msg, sizeof r->msg, "docker: cannot create a curl handle");
		return -1;
	}
	if (dk_setup_easy(r->easy, conn, &r->tun, url, timeout, r->err, &r->code, r->msg, sizeof r->msg) < 0)
		return -1;
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000) + 1);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, req_write);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, json ? json : "");
		if (json) {
			r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
			curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
		}
	}
	if (curl_multi_add_handle(r->multi, r->easy) != CURLM_OK) {
		r->code = "io";
		snprintf(r->msg, sizeof r->msg, "docker: cannot start the transfer");
		return -1;
	}
	r->attached = 1;
	double dl = rb_deadline_in(timeout + 0.5);   /* curl's own timeout fires first */
	while (!done) {
		double left = dl - rb_mono_now();
		if (left <= 0) {
			r->code = "timeout";
			snprintf(r->msg, sizeof r->msg, "docker %s %s: timed out after %.3gs", method, path, timeout);
			return -1;
		}
		if (dk_xfer_step(r->multi, r->easy, &r->tun, left < 0.5 ? left : 0.5, &done, &rc) < 0) {
			r->code = r->tun.code ? r->tun.code : "io";
			snprintf(r->msg, sizeof r->msg, "docker %s %s: %s", method, path,
				 r->tun.code ? r->tun.msg : "curl multi failure");
			return -1;
		}
	}
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

void dk_set_str(lua_State *L, const char *k, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring;
		if (*s == '/')
			s++;   /* container names come as "/name" */
		lua_pushstring(L, s);
		lua_setfield(L, -2, k);
	}
}

void dk_set_labels(lua_State *L, const cJSON *labels)
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
int dk_json_gc(lua_State *L)
{
	cJSON **j = lua_touserdata(L, 1);
	cJSON_Delete(*j);
	*j = NULL;
	return 0;
}

cJSON *dk_parse_boxed(lua_State *L, const char *body)
{
	cJSON **j = lua_newuserdatauv(L, sizeof *j, 0);
	*j = NULL;
	luaL_setmetatable(L, DK_JSON_MT);
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
	dk_set_str(L, "name", cJSON_GetObjectItemCaseSensitive(root, "Name"));
	dk_set_str(L, "id", cJSON_GetObjectItemCaseSensitive(root, "Id"));
	v = cJSON_GetObjectItemCaseSensitive(root, "RestartCount");
	lua_pushinteger(L, cJSON_IsNumber(v) ? (lua_Integer)v->valuedouble : 0);
	lua_setfield(L, -2, "restart_count");
	dk_set_str(L, "status", cJSON_GetObjectItemCaseSensitive(state, "Status"));
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
	dk_set_str(L, "error", cJSON_GetObjectItemCaseSensitive(state, "Error"));
	dk_set_str(L, "health", cJSON_GetObjectItemCaseSensitive(
			   cJSON_GetObjectItemCaseSensitive(state, "Health"), "Status"));
	v = cJSON_GetObjectItemCaseSensitive(state, "StartedAt");
	dk_set_str(L, "started_at", v);
	if (cJSON_IsString(v) && dmx_parse_time(v->valuestring, strlen(v->valuestring), &t) == 0 && t > 0) {
		lua_pushnumber(L, t);
		lua_setfield(L, -2, "started");
	}
	v = cJSON_GetObjectItemCaseSensitive(state, "FinishedAt");
	dk_set_str(L, "finished_at", v);
	if (cJSON_IsString(v) && dmx_parse_time(v->valuestring, strlen(v->valuestring), &t) == 0 && t > 0) {
		lua_pushnumber(L, t);
		lua_setfield(L, -2, "finished");
	}
	dk_set_str(L, "image", cJSON_GetObjectItemCaseSensitive(config, "Image"));
	lua_pushboolean(L, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "Tty")));
	lua_setfield(L, -2, "tty");
	dk_set_labels(L, cJSON_GetObjectItemCaseSensitive(config, "Labels"));
}


/* Shared by inspect and logs (tty detection): leaves boxes on the stack, pushes the record. */
int dk_inspect_into(lua_State *L, const struct dk_conn *conn, const char *container, double timeout)
{
	char path[320];
	struct dreq *r = dk_req_new(L);
	cJSON *root;

	snprintf(path, sizeof path, "/containers/%s/json", container);
	if (dk_req_run(r, conn, "GET", path, NULL, timeout) < 0)
		return rb_failf(L, r->code, "%s", r->msg);
	root = dk_parse_boxed(L, r->body);
	if (!cJSON_IsObject(root))
		return rb_failf(L, "protocol", "docker GET %s: answer is not a JSON object", path);
	push_inspect(L, root);
	return 1;
}


void dk_api_register(lua_State *L)
{
	luaL_newmetatable(L, DK_REQ_MT);
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, DK_JSON_MT);
	lua_pushcfunction(L, dk_json_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
