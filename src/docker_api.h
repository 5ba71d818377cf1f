/* docker_api.h: the docker family's internals. ldocker.c (the Lua binding, runbook.docker)
 * sits on docker_api.c (options, transport, requests, records), docker_logs.c (the log
 * stream), docker_exec.c (exec) and docker_tunnel.c (the SSH transport); none of them calls
 * back into ldocker.c. Depends on: libcurl, libcjson, Lua 5.4, rbaux.h. */
#ifndef RUNBOOK_DOCKER_API_H
#define RUNBOOK_DOCKER_API_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <lua.h>

#include "docker_tunnel.h"
#include "rbaux.h"

#define DK_REQ_MT "runbook.docker.req"
#define DK_JSON_MT "runbook.docker.json"

/* Where the daemon is: its socket path, on this machine or (ssh set) on the SSH host. */
struct dk_conn {
	const char *sock;
	ssh_session *ssh;
};

/* socket= and ssh= of the options table at idx (the strings and the session stay referenced
 * by the table). Raises on a wrong type. */
void dk_opt_conn(lua_State *L, int idx, struct dk_conn *c);
const char *dk_opt_container(lua_State *L, int idx);
/* since/until -> "SECONDS.NANOS" in out; returns 1 when set, 0 when absent */
int dk_opt_time(lua_State *L, int idx, const char *k, char *out, size_t outsz);

/* The connection (local socket checks, or the SSH tunnel's channel) and the options every
 * transfer shares; 0, or -1 with *code and msg set. */
int dk_setup_easy(CURL *e, const struct dk_conn *conn, struct dk_tunnel *tun, const char *url,
		  double timeout, char *errbuf, const char **code, char *msg, size_t msgsz);
/* One round of a multi transfer (perform, pump tun if any, wait at most max_wait). */
int dk_xfer_step(CURLM *m, CURL *e, struct dk_tunnel *tun, double max_wait, int *done,
		 CURLcode *result);
const char *dk_curl_code(CURLcode rc);
void dk_http_error(const char *body, long status, const char **code, char *msg, size_t msgsz);

/* One request, boxed in a userdata that owns its memory (freed by __gc). */
struct dreq {
	CURL *easy;
	CURLM *multi;
	int attached;
	struct dk_tunnel tun;
	struct curl_slist *hdrs;
	char *body;
	size_t len, cap;
	size_t (*sink)(void *ud, const char *p, size_t n);   /* body consumer instead of body */
	void *sink_ud;
	long status;
	const char *code;
	char msg[512];
	char err[CURL_ERROR_SIZE];
};
struct dreq *dk_req_new(lua_State *L);
int dk_req_run(struct dreq *r, const struct dk_conn *conn, const char *method, const char *path,
	       const char *json, double timeout);

/* JSON -> Lua */
void dk_set_str(lua_State *L, const char *k, const cJSON *v);
void dk_set_labels(lua_State *L, const cJSON *labels);
cJSON *dk_parse_boxed(lua_State *L, const char *body);
int dk_json_gc(lua_State *L);
/* pushes the inspect record (1) or nil, msg, code (3); may leave boxes below the results */
int dk_inspect_into(lua_State *L, const struct dk_conn *conn, const char *container, double timeout);

void dk_api_register(lua_State *L);

/* docker_logs.c */
int dk_logs(lua_State *L);
void dk_logs_metatable(lua_State *L);
/* docker_exec.c */
int dk_exec(lua_State *L);
void dk_exec_register(lua_State *L);

#endif
