/* lhttp.c: runbook.http, one HTTP(S) request at a time on libcurl's easy interface.
 *
 *   http.request{method="GET", url=, headers={Name="value"}, body=, timeout=30, connect_timeout=10,
 *                verify=true, cainfo=, max_body=8 MiB, unix_socket=}
 *       -> {status=n, headers={lowercased-name="value"}, body="...", ms=n, transcript="..."}
 *        | nil, msg, code      code: refused timeout unreachable tls http cap
 *   http.escape(s) -> s percent-encoded like curl_easy_escape (only ALPHA DIGIT - . _ ~ kept)
 *
 * A 4xx/5xx answer is a result (its status says so), not a failure: the Lua wrapper decides.
 * Only http and https, no redirects followed, TLS verified unless verify=false, no proxy from
 * the environment (a proxy would carry the request somewhere the caller did not name), no
 * signals. `timeout` bounds the whole exchange, `connect_timeout` the TCP/TLS connect.
 * Response headers with the same name are joined with ", ". The transcript holds the request
 * line and headers as sent ("> ") and the response status and headers ("< ") for --trace, with
 * Authorization/Cookie values replaced by "***"; it never holds a body.
 * Every C resource lives in a userdata with a __gc, so a Lua error cannot leak it.
 * Depends on: Lua 5.4, libcurl >= 7.85 (CURLOPT_PROTOCOLS_STR). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "options.h"

#define HTTP_REQ "runbook.http.req"
#define HTTP_DEFAULT_MAX_BODY (8 * 1024 * 1024)

/* A growable byte buffer owned by the request userdata. */
struct bytes {
	char *p;
	size_t n, cap;
	int oom;
};

struct http_req {
	CURL *curl;
	struct curl_slist *hdrs;
	struct bytes body, head, trace;
	size_t max_body;
	int capped;
};

static int ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int bytes_add(struct bytes *b, const char *s, size_t n)
{
	if (b->oom)
		return -1;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;
		while (cap < b->n + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return -1;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

static int req_gc(lua_State *L)
{
	struct http_req *r = luaL_checkudata(L, 1, HTTP_REQ);
	if (r->curl) {
		curl_easy_cleanup(r->curl);
		r->curl = NULL;
	}
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	free(r->body.p);
	free(r->head.p);
	free(r->trace.p);
	memset(&r->body, 0, sizeof r->body);
	memset(&r->head, 0, sizeof r->head);
	memset(&r->trace, 0, sizeof r->trace);
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct http_req *r = ud;
	size_t n = size * nmemb;
	if (r->body.n + n > r->max_body) {
		r->capped = 1;
		return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return bytes_add(&r->body, data, n) == 0 ? n : 0;
}

/* Keeps only the last response's header block (a 100 Continue comes first). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct http_req *r = ud;
	size_t n = size * nmemb;
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		r->head.n = 0;
	return bytes_add(&r->head, data, n) == 0 ? n : 0;
}

static int secret_header(const char *line, size_t n)
{
	static const char *const names[] = { "authorization:", "proxy-authorization:", "cookie:",
	                                     "set-cookie:", NULL };
	for (int i = 0; names[i]; i++) {
		size_t k = strlen(names[i]);
		if (n >= k && strncasecmp(line, names[i], k) == 0)
			return (int)k;
	}
	return 0;
}

/* Appends header text to the transcript, one prefixed line at a time, secrets masked. */
static void trace_lines(struct bytes *t, const char *prefix, const char *s, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(s, '\n', n);
		size_t len = nl ? (size_t)(nl - s) + 1 : n, show = len;
		int k;
		while (show > 0 && (s[show - 1] == '\n' || s[show - 1] == '\r'))
			show--;
		if (show > 0) {
			bytes_add(t, prefix, 2);
			if ((k = secret_header(s, show)) > 0) {
				bytes_add(t, s, (size_t)k);
				bytes_add(t, " ***", 4);
			} else {
				bytes_add(t, s, show);
			}
			bytes_add(t, "\n", 1);
		}
		s += len;
		n -= len;
	}
}

static int on_debug(CURL *h, curl_infotype type, char *data, size_t n, void *ud)
{
	struct http_req *r = ud;
	(void)h;
	if (type == CURLINFO_HEADER_OUT)
		trace_lines(&r->trace, "> ", data, n);
	else if (type == CURLINFO_HEADER_IN)
		trace_lines(&r->trace, "< ", data, n);
	return 0;
}

/* ------------------------------------------------------------------ options */

static const char *const request_keys[] = {
	"method", "url", "headers", "body", "timeout", "connect_timeout", "verify", "cainfo",
	"max_body", "unix_socket", NULL
};

static const char *opt_string(lua_State *L, int idx, const char *k, const char *def, size_t *len)
{
	const char *v = def;
	if (len)
		*len = def ? strlen(def) : 0;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "option '%s' must be a string", k);
		v = lua_tolstring(L, -1, len);
	}
	lua_pop(L, 1);   /* still referenced by the options table */
	return v;
}

static double opt_seconds(lua_State *L, int idx, const char *k, double def)
{
	double v = def;
	lua_getfield(L, idx, k);
	if (!lua_isnil(L, -1)) {
		int ok;
		v = lua_tonumberx(L, -1, &ok);
		if (!ok || !(v > 0) || v > 86400)
			luaL_error(L, "option '%s' must be a number of seconds in (0, 86400]", k);
	}
	lua_pop(L, 1);
	return v;
}

static int valid_method(const char *m)
{
	static const char *const ok[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
	                                  "OPTIONS", NULL };
	for (int i = 0; ok[i]; i++)
		if (strcmp(ok[i], m) == 0)
			return 1;
	return 0;
}

/* Header names are RFC 9110 tokens; values may not break the line (no CR, LF or NUL). */
static void check_header(lua_State *L, const char *name, const char *val, size_t vlen)
{
	if (*name == '\0')
		luaL_error(L, "header name must not be empty");
	for (const char *p = name; *p; p++)
		if (!(ascii_alnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p)))
			luaL_error(L, "invalid header name '%s'", name);
	for (size_t i = 0; i < vlen; i++)
		if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
			luaL_error(L, "header '%s' has a line break or NUL in its value", name);
}

/* ------------------------------------------------------------------ results */

/* Maps a failed transfer to a short code. */
static const char *curl_code(struct http_req *r, CURLcode rc, long oserr)
{
	if (r->capped)
		return "cap";
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_COULDNT_CONNECT:
		if (oserr == ETIMEDOUT)
			return "timeout";
		if (oserr == EHOSTUNREACH || oserr == ENETUNREACH || oserr == EADDRNOTAVAIL)
			return "unreachable";
		return "refused";
	case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
		return "unreachable";
	case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_USE_SSL_FAILED: case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_SHUTDOWN_FAILED:
		return "tls";
	default:
		return "http";
	}
}

/* Parses the kept header block into a table of lowercased names. */
static void push_headers(lua_State *L, const struct bytes *h)
{
	const char *s = h->p ? h->p : "", *end = s + h->n;
	lua_newtable(L);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *eol = nl ? nl : end, *colon, *v, *ve;
		if (eol > s && eol[-1] == '\r')
			eol--;
		colon = memchr(s, ':', (size_t)(eol - s));
		if (colon && colon > s && strncmp(s, "HTTP/", 5) != 0) {
			luaL_Buffer b;
			for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
				;
			for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
				;
			luaL_buffinit(L, &b);
			for (const char *p = s; p < colon; p++)
				luaL_addchar(&b, (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p);
			luaL_pushresult(&b);                    /* name */
			lua_pushvalue(L, -1);
			if (lua_rawget(L, -3) == LUA_TSTRING) {  /* repeated: join */
				lua_pushliteral(L, ", ");
				lua_pushlstring(L, v, (size_t)(ve - v));
				lua_concat(L, 3);
			} else {
				lua_pop(L, 1);
				lua_pushlstring(L, v, (size_t)(ve - v));
			}
			lua_rawset(L, -3);
		}
		s = nl ? nl + 1 : end;
	}
}

/* http.request(opts) -> response | nil, msg, code */
static int http_request(lua_State *L)
{
	const char *method, *url, *body, *cainfo, *sock;
	size_t body_len = 0;
	double timeout, connect_timeout;
	lua_Integer max_body = HTTP_DEFAULT_MAX_BODY;
	int verify = 1;
	struct http_req *r;
	CURLcode rc;
	long status = 0, oserr = 0;
	curl_off_t us = 0;
	char errbuf[CURL_ERROR_SIZE];

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rb_check_keys(L, 1, request_keys, "http.request");
	method = opt_string(L, 1, "method", "GET", NULL);
	url = opt_string(L, 1, "url", NULL, NULL);
	body = opt_string(L, 1, "body", NULL, &body_len);
	cainfo = opt_string(L, 1, "cainfo", NULL, NULL);
	sock = opt_string(L, 1, "unix_socket", NULL, NULL);
	timeout = opt_seconds(L, 1, "timeout", 30);
	connect_timeout = opt_seconds(L, 1, "connect_timeout", 10);
	if (url == NULL)
		return luaL_error(L, "option 'url' is required");
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
		return luaL_error(L, "option 'url' must start with http:// or https://");
	if (!valid_method(method))
		return luaL_error(L, "option 'method' must be one of GET HEAD POST PUT PATCH DELETE "
		                  "OPTIONS, got '%s'", method);
	if (body && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
		return luaL_error(L, "option 'body' is not allowed with %s", method);
	lua_getfield(L, 1, "verify");
	if (!lua_isnil(L, -1)) {
		if (!lua_isboolean(L, -1))
			return luaL_error(L, "option 'verify' must be a boolean");
		verify = lua_toboolean(L, -1);
	}
	lua_getfield(L, 1, "max_body");
	if (!lua_isnil(L, -1)) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
			return luaL_error(L, "option 'max_body' must be a non-negative integer");
		max_body = lua_tointeger(L, -1);
	}
	lua_getfield(L, 1, "headers");           /* index 4 */
	if (!lua_isnil(L, -1)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 4) != 0) {
			size_t vlen;
			const char *v;
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				return luaL_error(L, "option 'headers' must map strings to strings");
			v = lua_tolstring(L, -1, &vlen);
			check_header(L, lua_tostring(L, -2), v, vlen);
			lua_pop(L, 1);
		}
	}

	r = lua_newuserdatauv(L, sizeof *r, 0);  /* index 5: created empty, acquired second */
	memset(r, 0, sizeof *r);
	r->max_body = (size_t)max_body;
	luaL_setmetatable(L, HTTP_REQ);
	if ((r->curl = curl_easy_init()) == NULL)
		return luaL_error(L, "http.request: out of memory");
	if (lua_istable(L, 4)) {
		lua_pushnil(L);
		while (lua_next(L, 4) != 0) {
			struct curl_slist *n;
			lua_pushvalue(L, -2);
			lua_pushliteral(L, ": ");
			lua_pushvalue(L, -3);
			lua_concat(L, 3);
			if ((n = curl_slist_append(r->hdrs, lua_tostring(L, -1))) == NULL)
				return luaL_error(L, "http.request: out of memory");
			r->hdrs = n;
			lua_pop(L, 2);
		}
	}
	{
		struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");   /* no 100-continue */
		if (n == NULL)
			return luaL_error(L, "http.request: out of memory");
		r->hdrs = n;
	}
	errbuf[0] = '\0';
	curl_easy_setopt(r->curl, CURLOPT_URL, url);
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_PROXY, "");
	/* whole milliseconds, never 0 (0 would mean "no timeout" to libcurl) */
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)ceil(timeout * 1000));
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(connect_timeout * 1000));
	curl_easy_setopt(r->curl, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
	curl_easy_setopt(r->curl, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
	if (cainfo)
		curl_easy_setopt(r->curl, CURLOPT_CAINFO, cainfo);
	if (sock)
		curl_easy_setopt(r->curl, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "runbook/" RUNBOOK_VERSION);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(r->curl, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->curl, CURLOPT_DEBUGFUNCTION, on_debug);
	curl_easy_setopt(r->curl, CURLOPT_DEBUGDATA, r);
	curl_easy_setopt(r->curl, CURLOPT_VERBOSE, 1L);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(r->curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(r->curl, CURLOPT_CUSTOMREQUEST, method);
		if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
		    strcmp(method, "PATCH") == 0) {
			curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
			curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body ? body : "");
		}
	}

	rc = curl_easy_perform(r->curl);   /* the body string stays referenced by the options */
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->curl, CURLINFO_OS_ERRNO, &oserr);
	curl_easy_getinfo(r->curl, CURLINFO_TOTAL_TIME_T, &us);
	if (r->body.oom || r->head.oom || r->trace.oom)
		return luaL_error(L, "http.request: out of memory");
	if (rc != CURLE_OK) {
		lua_pushnil(L);
		if (r->capped)
			lua_pushfstring(L, "%s: response body larger than max_body (%I bytes)", url,
			                max_body);
		else
			lua_pushfstring(L, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		lua_pushstring(L, curl_code(r, rc, oserr));
		return 3;
	}
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	push_headers(L, &r->head);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.n);
	lua_setfield(L, -2, "body");
	lua_pushnumber(L, (lua_Number)us / 1000.0);
	lua_setfield(L, -2, "ms");
	lua_pushlstring(L, r->trace.p ? r->trace.p : "", r->trace.n);
	lua_setfield(L, -2, "transcript");
	lua_pushcfunction(L, req_gc);    /* release now rather than at the next collection */
	lua_pushvalue(L, 5);
	lua_call(L, 1, 0);
	return 1;
}

/* http.escape(s): percent-encode every byte but ALPHA DIGIT - . _ ~ (curl_easy_escape's set),
 * built in a luaL_Buffer so nothing C-owned is live if Lua raises. */
static int http_escape(lua_State *L)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (ascii_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			luaL_addchar(&b, (char)c);
		} else {
			luaL_addchar(&b, '%');
			luaL_addchar(&b, hex[c >> 4]);
			luaL_addchar(&b, hex[c & 15]);
		}
	}
	luaL_pushresult(&b);
	return 1;
}

static const luaL_Reg http_funcs[] = {
	{"request", http_request},
	{"escape", http_escape},
	{"curl_version", NULL},
	{NULL, NULL}
};

int luaopen_runbook_http(lua_State *L)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return luaL_error(L, "curl_global_init failed");
	luaL_newmetatable(L, HTTP_REQ);
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newlib(L, http_funcs);
	lua_pushstring(L, curl_version());
	lua_setfield(L, -2, "curl_version");
	return 1;
}
