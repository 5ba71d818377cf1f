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
 * `timeout` never reaches past the run deadline. http_request runs as named steps: read_options,
 * build_headers, setup_transfer, then push_response or push_failure.
 * Depends on: Lua 5.4, rbaux.h, libcurl >= 7.85 (CURLOPT_PROTOCOLS_STR). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"

#define HTTP_REQ "runbook.http.req"
#define HTTP_DEFAULT_MAX_BODY (8 * 1024 * 1024)

struct http_req {
	CURL *curl;
	struct curl_slist *hdrs;
	struct rb_buf body, head, trace;   /* owned by the request userdata */
	size_t max_body;
	int capped;
};

static int ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
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
	rb_buf_free(&r->body);
	rb_buf_free(&r->head);
	rb_buf_free(&r->trace);
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
	return rb_buf_add(&r->body, data, n) == 0 ? n : 0;
}

/* Keeps only the last response's header block (a 100 Continue comes first). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct http_req *r = ud;
	size_t n = size * nmemb;
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		r->head.n = 0;
	return rb_buf_add(&r->head, data, n) == 0 ? n : 0;
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
static void trace_lines(struct rb_buf *t, const char *prefix, const char *s, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(s, '\n', n);
		size_t len = nl ? (size_t)(nl - s) + 1 : n, show = len;
		int k;
		while (show > 0 && (s[show - 1] == '\n' || s[show - 1] == '\r'))
			show--;
		if (show > 0) {
			rb_buf_add(t, prefix, 2);
			if ((k = secret_header(s, show)) > 0) {
				rb_buf_add(t, s, (size_t)k);
				rb_buf_add(t, " ***", 4);
			} else {
				rb_buf_add(t, s, show);
			}
			rb_buf_add(t, "\n", 1);
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
	case CURLE_COULDNT_CONNECT: {
		/* nothing accepted us: refused, unless the OS says it timed out or had no route */
		const char *code = rb_errno_code((int)oserr);
		return strcmp(code, "timeout") == 0 || strcmp(code, "unreachable") == 0 ? code : "refused";
	}
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
static void push_headers(lua_State *L, const struct rb_buf *h)
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

/* The checked options of one request; strings stay referenced by the options table. */
struct http_opts {
	const char *method, *url, *body, *cainfo, *sock;
	size_t body_len;
	double timeout, connect_timeout;
	lua_Integer max_body;
	int verify;
};

/* Checks every option of the table at 1 before anything is acquired; leaves the headers
 * table (or nil) at index 2. */
static void read_options(lua_State *L, struct http_opts *o)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rb_check_keys(L, 1, request_keys, "http.request");
	o->method = rb_opt_string(L, 1, "method", "GET");
	o->url = rb_opt_required(L, 1, "url");
	o->body = rb_opt_lstring(L, 1, "body", NULL, &o->body_len);
	o->cainfo = rb_opt_string(L, 1, "cainfo", NULL);
	o->sock = rb_opt_string(L, 1, "unix_socket", NULL);
	o->timeout = rb_opt_timeout(L, 1, "timeout", 30);
	o->connect_timeout = rb_opt_timeout(L, 1, "connect_timeout", 10);
	o->verify = rb_opt_bool(L, 1, "verify", 1);
	o->max_body = rb_opt_int(L, 1, "max_body", HTTP_DEFAULT_MAX_BODY, 0, LUA_MAXINTEGER);
	if (strncasecmp(o->url, "http://", 7) != 0 && strncasecmp(o->url, "https://", 8) != 0)
		luaL_error(L, "option 'url' must start with http:// or https://");
	if (!valid_method(o->method))
		luaL_error(L, "option 'method' must be one of GET HEAD POST PUT PATCH DELETE "
		           "OPTIONS, got '%s'", o->method);
	if (o->body && (strcmp(o->method, "GET") == 0 || strcmp(o->method, "HEAD") == 0))
		luaL_error(L, "option 'body' is not allowed with %s", o->method);
	lua_getfield(L, 1, "headers");           /* index 2 */
	if (!lua_isnil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			size_t vlen;
			const char *v;
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "option 'headers' must map strings to strings");
			v = lua_tolstring(L, -1, &vlen);
			check_header(L, lua_tostring(L, -2), v, vlen);
			lua_pop(L, 1);
		}
	}
}

/* The request headers: the caller's (table at hidx, checked) and "Expect:" (no 100-continue). */
static void build_headers(lua_State *L, struct http_req *r, int hidx)
{
	struct curl_slist *n;
	if (lua_istable(L, hidx)) {
		lua_pushnil(L);
		while (lua_next(L, hidx) != 0) {
			lua_pushvalue(L, -2);
			lua_pushliteral(L, ": ");
			lua_pushvalue(L, -3);
			lua_concat(L, 3);
			if ((n = curl_slist_append(r->hdrs, lua_tostring(L, -1))) == NULL)
				luaL_error(L, "http.request: out of memory");
			r->hdrs = n;
			lua_pop(L, 2);
		}
	}
	if ((n = curl_slist_append(r->hdrs, "Expect:")) == NULL)
		luaL_error(L, "http.request: out of memory");
	r->hdrs = n;
}

/* Milliseconds for libcurl: whole, never 0 (0 would mean "no timeout"), never past the run
 * deadline. */
static long timeout_ms(double seconds)
{
	double left = rb_deadline_in(seconds) - rb_mono_now();
	return left > 0.001 ? (long)ceil(left * 1000) : 1L;
}

static void setup_transfer(struct http_req *r, const struct http_opts *o, char *errbuf)
{
	CURL *e = r->curl;
	errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms(o->timeout));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms(o->connect_timeout));
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
	if (o->cainfo)
		curl_easy_setopt(e, CURLOPT_CAINFO, o->cainfo);
	if (o->sock)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, o->sock);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "runbook/" RUNBOOK_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
	curl_easy_setopt(e, CURLOPT_DEBUGDATA, r);
	curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	if (strcmp(o->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(o->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
		if (o->body || strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0 ||
		    strcmp(o->method, "PATCH") == 0) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body ? o->body : "");
		}
	}
}

static int push_failure(lua_State *L, struct http_req *r, const struct http_opts *o, CURLcode rc,
                        const char *errbuf)
{
	long oserr = 0;
	curl_easy_getinfo(r->curl, CURLINFO_OS_ERRNO, &oserr);
	if (r->capped)
		return rb_failf(L, "cap", "%s: response body larger than max_body (%lld bytes)", o->url,
		                (long long)o->max_body);
	return rb_failf(L, curl_code(r, rc, oserr), "%s: %s", o->url,
	                errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* {status, headers, body, ms, transcript}; releases the request (at ridx) at once. */
static int push_response(lua_State *L, struct http_req *r, int ridx)
{
	long status = 0;
	curl_off_t us = 0;
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->curl, CURLINFO_TOTAL_TIME_T, &us);
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
	lua_pushvalue(L, ridx);
	lua_call(L, 1, 0);
	return 1;
}

/* http.request(opts) -> response | nil, msg, code */
static int http_request(lua_State *L)
{
	struct http_opts o;
	struct http_req *r;
	CURLcode rc;
	char errbuf[CURL_ERROR_SIZE];

	read_options(L, &o);                     /* headers at 2 */
	r = rb_box(L, sizeof *r, HTTP_REQ, req_gc);   /* index 3: created empty, acquired second */
	r->max_body = (size_t)o.max_body;
	if ((r->curl = curl_easy_init()) == NULL)
		return luaL_error(L, "http.request: out of memory");
	build_headers(L, r, 2);
	setup_transfer(r, &o, errbuf);
	rc = curl_easy_perform(r->curl);   /* the body string stays referenced by the options */
	if (r->body.oom || r->head.oom || r->trace.oom)
		return luaL_error(L, "http.request: out of memory");
	if (rc != CURLE_OK)
		return push_failure(L, r, &o, rc, errbuf);
	return push_response(L, r, 3);
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
	luaL_newlib(L, http_funcs);
	lua_pushstring(L, curl_version());
	lua_setfield(L, -2, "curl_version");
	return 1;
}
