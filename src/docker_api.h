/* docker_api.h: helpers shared by ldocker.c (requests, options) and docker_logs.c (the log
 * stream of runbook.docker). Internal to the docker family. Depends on: libcurl, Lua 5.4. */
#ifndef RUNBOOK_DOCKER_API_H
#define RUNBOOK_DOCKER_API_H

#include <stddef.h>

#include <curl/curl.h>
#include <lua.h>

double dk_mono(void);
/* pushes nil, formatted message, code; returns 3 */
int dk_push_fail(lua_State *L, const char *code, const char *fmt, ...);
/* raises "unknown option 'k'" for any key of the table at idx not in keys (NULL-terminated) */
#include "options.h"
/* def NULL: required. The string stays referenced by the options table. */
const char *dk_opt_string(lua_State *L, int idx, const char *k, const char *def);
double dk_opt_number(lua_State *L, int idx, const char *k, double def, double min);
int dk_opt_bool(lua_State *L, int idx, const char *k, int def);
const char *dk_opt_container(lua_State *L, int idx);
/* since/until -> "SECONDS.NANOS" in out; returns 1 when set, 0 when absent */
int dk_opt_time(lua_State *L, int idx, const char *k, char *out, size_t outsz);
/* socket checks and the options every handle shares; 0, or -1 with *code and msg set */
int dk_setup_easy(CURL *e, const char *sock, const char *url, double timeout, char *errbuf,
		  const char **code, char *msg, size_t msgsz);
const char *dk_curl_code(CURLcode rc);
void dk_http_error(const char *body, long status, const char **code, char *msg, size_t msgsz);
/* pushes the inspect record (1) or nil, msg, code (3); may leave boxes below the results */
int dk_inspect_into(lua_State *L, const char *sock, const char *container, double timeout);

int dk_logs(lua_State *L);
void dk_logs_metatable(lua_State *L);

#endif
