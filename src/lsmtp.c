/* lsmtp.c: runbook.smtp, one SMTP or LMTP dialogue with a real server, stopping at a chosen
 * stage, with the whole transcript.
 *
 *   smtp.probe{host=IP, port=25, lmtp=false, helo="runbook.test", from="", rcpt=addr|{addr...},
 *              stop="connect"|"helo"|"mail"|"rcpt"|"data" (default "data"),
 *              starttls="auto"|"required"|"never" (default "auto"), tls_verify=false,
 *              tls_name=, tls_ca=FILE, bind=IP, timeout=10 (seconds for each reply and write),
 *              message=body, subject=, message_id="<..>", probe_id=, date=}
 *     -> {ok=, last_stage=, transcript={{dir="S"|"C", text=, code=, enhanced=, t=ms}...},
 *         stages={connect=, greeting=, helo=, starttls=, mail=, rcpt={{addr=,...}...}, data=,
 *         quit=}, queued_as=, lmtp_session=, message_id=, probe_id=, tls=, peer=, ["local"]=,
 *         ms=}
 *     | nil, msg, code, partial   code: refused timeout unreachable protocol tls io; partial is
 *                                 the result so far (transcript, stages) for the trace
 *   smtp.format_message{from=, rcpt=, helo=, subject=, message_id=, probe_id=, date=, message=}
 *     -> message, message_id, probe_id     (exactly what probe would send, for a dry run)
 *
 * A server's negative reply (554 relay denied, 550 unknown user) is an answer, not a failure:
 * the call succeeds and the stage has ok=false. Connection-level failures return nil. Addresses
 * and the HELO name are validated before connecting (CR/LF/NUL raise). STARTTLS via OpenSSL;
 * bytes the server sent ahead of its STARTTLS reply are a protocol error (response injection).
 * Private to the engine. Depends on: lnet.h, smtp_msg.h, OpenSSL, Lua 5.4. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnet.h"
#include "smtp_conn.h"
#include "smtp_msg.h"

enum { STOP_CONNECT, STOP_HELO, STOP_MAIL, STOP_RCPT, STOP_DATA };
static const char *const stop_names[] = { "connect", "helo", "mail", "rcpt", "data", NULL };
enum { TLS_AUTO, TLS_REQUIRED, TLS_NEVER };
static const char *const tls_modes[] = { "auto", "required", "never", NULL };

#define REPLY_MAX 8192
#define LINE_MAX_LEN 2048

struct probe {
	/* options, validated before connecting; strings anchored by the options table */
	struct smtp_msg msg;
	const char *bind, *tls_name, *tls_ca;
	int lmtp, stop, tls_mode, tls_verify;
	/* the stream (C-owned socket and TLS state, released after the protected call) */
	struct smtp_conn c;
	double t0;
	/* the reply being read */
	int code;
	char enhanced[16];
	char reply[REPLY_MAX];
	size_t replylen;
	int nlines;
};

/* stack slots inside probe_protected */
enum { SLOT_P = 1, SLOT_RES, SLOT_TRANSCRIPT, SLOT_STAGES };

static double ms_since(struct probe *p)
{
	return (rbnet_now() - p->t0) * 1000.0;
}

/* Appends {dir=, text=, t=} (and code/enhanced for the server) to the transcript. */
static void transcript_add(lua_State *L, struct probe *p, const char *dir, const char *text,
			   size_t len, int with_code)
{
	lua_createtable(L, 0, 5);
	lua_pushstring(L, dir);
	lua_setfield(L, -2, "dir");
	lua_pushlstring(L, text, len);
	lua_setfield(L, -2, "text");
	lua_pushnumber(L, ms_since(p));
	lua_setfield(L, -2, "t");
	if (with_code) {
		lua_pushinteger(L, p->code);
		lua_setfield(L, -2, "code");
		if (p->enhanced[0]) {
			lua_pushstring(L, p->enhanced);
			lua_setfield(L, -2, "enhanced");
		}
	}
	lua_rawseti(L, SLOT_TRANSCRIPT, luaL_len(L, SLOT_TRANSCRIPT) + 1);
}

/* Sends one command line (CRLF added) and records it. */
static int command(lua_State *L, struct probe *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int command(lua_State *L, struct probe *p, const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 2)
		return conn_fail(&p->c, "io", "command too long");
	transcript_add(L, p, "C", line, (size_t)n, 0);
	memcpy(line + n, "\r\n", 2);
	return conn_send_all(&p->c, line, (size_t)n + 2);
}

/* "2.1.0" style enhanced status code at the start of text, when present. */
static void parse_enhanced(struct probe *p, const char *t, size_t len)
{
	size_t i = 0, dots = 0;
	p->enhanced[0] = '\0';
	if (len < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
		return;
	for (i = 0; i < len && i < sizeof p->enhanced - 1 && t[i] != ' '; i++) {
		if (t[i] == '.')
			dots++;
		else if (t[i] < '0' || t[i] > '9')
			return;
	}
	if (dots == 2 && t[i - 1] != '.') {
		memcpy(p->enhanced, t, i);
		p->enhanced[i] = '\0';
	}
}

/* Reads one whole (possibly multi-line) reply before one deadline, records it in the
 * transcript and pushes the stage table {ok=, code=, enhanced=, text=}. ok means 2xx (or 3xx
 * when intermediate_ok). Garbage or a closed connection is a protocol failure. */
static int read_reply(lua_State *L, struct probe *p, int intermediate_ok)
{
	double deadline = rbnet_now() + p->c.timeout;
	p->replylen = 0;
	p->nlines = 0;
	p->code = 0;
	for (;;) {
		char *line = p->c.in + p->c.rpos, *nl;
		size_t len;
		int code;
		nl = memchr(line, '\n', p->c.rlen - p->c.rpos);
		if (nl == NULL) {
			if (p->c.rlen - p->c.rpos >= LINE_MAX_LEN)
				return conn_fail(&p->c, "protocol", "%s:%d: reply line longer than %d bytes",
					    p->c.host, p->c.port, LINE_MAX_LEN);
			if (conn_fill(&p->c, deadline) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - line);
		p->c.rpos += len + 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-') ||
		    memchr(line, '\0', len))
			return conn_fail(&p->c, "protocol", "%s:%d: not an SMTP reply: \"%.*s\"", p->c.host, p->c.port,
				    (int)(len > 80 ? 80 : len), line);
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (p->nlines > 0 && code != p->code)
			return conn_fail(&p->c, "protocol", "%s:%d: reply code changed inside a multi-line reply",
				    p->c.host, p->c.port);
		if (++p->nlines > 200)
			return conn_fail(&p->c, "protocol", "%s:%d: reply of more than 200 lines", p->c.host, p->c.port);
		p->code = code;
		if (p->nlines == 1)
			parse_enhanced(p, line + 4, len > 4 ? len - 4 : 0);
		if (p->replylen + len + 1 < REPLY_MAX) {
			if (p->replylen)
				p->reply[p->replylen++] = '\n';
			memcpy(p->reply + p->replylen, line, len);
			p->replylen += len;
		}
		if (len == 3 || line[3] == ' ')
			break;
	}
	transcript_add(L, p, "S", p->reply, p->replylen, 1);
	lua_createtable(L, 0, 4);
	lua_pushboolean(L, p->code / 100 == 2 || (intermediate_ok && p->code / 100 == 3));
	lua_setfield(L, -2, "ok");
	lua_pushinteger(L, p->code);
	lua_setfield(L, -2, "code");
	if (p->enhanced[0]) {
		lua_pushstring(L, p->enhanced);
		lua_setfield(L, -2, "enhanced");
	}
	lua_pushlstring(L, p->reply, p->replylen);
	lua_setfield(L, -2, "text");
	return 0;
}

static int stage_ok(lua_State *L, int idx)
{
	int ok;
	lua_getfield(L, idx, "ok");
	ok = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return ok;
}

/* From the EHLO/LHLO reply on the stack: capabilities list; returns whether STARTTLS is offered. */
static int parse_capabilities(lua_State *L, struct probe *p)
{
	int starttls = 0, n = 0;
	const char *s = p->reply, *end = p->reply + p->replylen;
	lua_newtable(L);
	while (s < end) {
		const char *e = memchr(s, '\n', (size_t)(end - s));
		if (e == NULL)
			e = end;
		if (s != p->reply && e - s > 4) {   /* the first line is the greeting name */
			lua_pushlstring(L, s + 4, (size_t)(e - s - 4));
			lua_rawseti(L, -2, ++n);
			if (e - s - 4 == 8 && strncasecmp(s + 4, "STARTTLS", 8) == 0)
				starttls = 1;
		}
		s = e + 1;
	}
	lua_setfield(L, -2, "capabilities");
	lua_pushboolean(L, starttls);
	lua_setfield(L, -2, "starttls_offered");
	return starttls;
}

/* EHLO (or LHLO), falling back to HELO when an SMTP server refuses EHLO. Leaves the stage on
 * the stack. Returns -1 on failure, else whether STARTTLS is offered. */
static int hello(lua_State *L, struct probe *p)
{
	const char *verb = p->lmtp ? "LHLO" : "EHLO";
	if (command(L, p, "%s %s", verb, p->msg.helo) != 0 || read_reply(L, p, 0) != 0)
		return -1;
	if (!p->lmtp && p->code / 100 == 5) {
		lua_pop(L, 1);
		verb = "HELO";
		if (command(L, p, "HELO %s", p->msg.helo) != 0 || read_reply(L, p, 0) != 0)
			return -1;
	}
	lua_pushstring(L, verb);
	lua_setfield(L, -2, "verb");
	return parse_capabilities(L, p);
}

/* Parses "queued as ID" (Postfix) or "<rcpt> SESSIONID Saved" (Dovecot LMTP) from the reply. */
static void parse_queue_id(lua_State *L, struct probe *p)
{
	const char *q;
	char id[128];
	size_t n = 0;
	p->reply[p->replylen] = '\0';
	if ((q = strstr(p->reply, "queued as ")) != NULL) {
		q += 10;
		while (q[n] && q[n] != ' ' && q[n] != '\n' && n < sizeof id - 1)
			n++;
		memcpy(id, q, n);
		id[n] = '\0';
		lua_pushstring(L, id);
		lua_setfield(L, SLOT_RES, "queued_as");
		return;
	}
	if (p->lmtp && (q = strchr(p->reply, '>')) != NULL && q[1] == ' ') {
		const char *s = q + 2, *e = strchr(s, ' ');
		if (e && strncmp(e, " Saved", 6) == 0 && (size_t)(e - s) < sizeof id) {
			lua_pushlstring(L, s, (size_t)(e - s));
			lua_pushvalue(L, -1);
			lua_setfield(L, SLOT_RES, "lmtp_session");
			lua_setfield(L, SLOT_RES, "queued_as");
		}
	}
}

static void set_last(lua_State *L, const char *stage)
{
	lua_pushstring(L, stage);
	lua_setfield(L, SLOT_RES, "last_stage");
}

/* QUIT politely; its failure does not change the outcome, and it waits at most 5 s. */
static void quit(lua_State *L, struct probe *p)
{
	double saved = p->c.timeout;
	if (p->c.timeout > 5)
		p->c.timeout = 5;
	if (command(L, p, "QUIT") == 0 && read_reply(L, p, 0) == 0)
		lua_setfield(L, SLOT_STAGES, "quit");
	p->c.timeout = saved;
	p->c.fail_code = NULL;
}

/* The dialogue up to p->stop. Returns 0 (the server answered, whatever it said) or -1 with
 * fail set for a connection-level failure. Stage tables land in SLOT_STAGES as they complete. */
static int dialogue(lua_State *L, struct probe *p)
{
	struct rbnet_err e;
	char local[INET6_ADDRSTRLEN + 8];
	int offered, ok, accepted = 0, accepted_idx[SMTP_MAX_RCPT];

	set_last(L, "connect");
	p->c.fd = rbnet_connect(p->c.host, p->c.port, p->bind, rbnet_now() + p->c.timeout, &e);
	if (p->c.fd < 0)
		return conn_fail(&p->c, e.code, "%s", e.msg);
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		local[0] = '\0';
		if (getsockname(p->c.fd, (struct sockaddr *)&ss, &sl) == 0)
			inet_ntop(ss.ss_family, ss.ss_family == AF_INET
				  ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
				  : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, local, sizeof local);
	}
	lua_pushstring(L, local);
	lua_setfield(L, SLOT_RES, "local");
	lua_createtable(L, 0, 2);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "ok");
	lua_pushnumber(L, ms_since(p));
	lua_setfield(L, -2, "ms");
	lua_setfield(L, SLOT_STAGES, "connect");

	set_last(L, "greeting");
	if (read_reply(L, p, 0) != 0)
		return -1;
	ok = stage_ok(L, -1);
	lua_setfield(L, SLOT_STAGES, "greeting");
	if (!ok || p->stop == STOP_CONNECT)
		goto done;

	set_last(L, "helo");
	if ((offered = hello(L, p)) < 0)
		return -1;
	ok = stage_ok(L, -1);
	lua_setfield(L, SLOT_STAGES, "helo");
	if (!ok)
		goto done;
	if (p->tls_mode == TLS_REQUIRED && !offered)
		return conn_fail(&p->c, "tls", "%s:%d does not offer STARTTLS (starttls=required)", p->c.host, p->c.port);
	if (p->tls_mode != TLS_NEVER && offered) {
		set_last(L, "starttls");
		if (command(L, p, "STARTTLS") != 0 || read_reply(L, p, 0) != 0)
			return -1;
		if (p->code != 220) {
			lua_setfield(L, SLOT_STAGES, "starttls");
			if (p->tls_mode == TLS_REQUIRED)
				return conn_fail(&p->c, "tls", "%s:%d refused STARTTLS: %.200s", p->c.host, p->c.port, p->reply);
		} else {
			char subject[256];
			if (conn_start_tls(&p->c, p->tls_name ? p->tls_name : p->c.host, p->tls_verify,
					   p->tls_ca) != 0)
				return -1;
			lua_pushstring(L, SSL_get_version(p->c.ssl));
			lua_setfield(L, -2, "version");
			lua_pushstring(L, SSL_get_cipher_name(p->c.ssl));
			lua_setfield(L, -2, "cipher");
			lua_pushboolean(L, p->tls_verify);
			lua_setfield(L, -2, "verified");
			conn_peer_subject(&p->c, subject, sizeof subject);
			lua_pushstring(L, subject);
			lua_setfield(L, -2, "peer_subject");
			lua_setfield(L, SLOT_STAGES, "starttls");
			lua_pushboolean(L, 1);
			lua_setfield(L, SLOT_RES, "tls");
			set_last(L, "helo");
			if (hello(L, p) < 0)
				return -1;
			ok = stage_ok(L, -1);
			lua_setfield(L, SLOT_STAGES, "helo");
			if (!ok)
				goto done;
		}
	}
	if (p->stop == STOP_HELO)
		goto done;

	set_last(L, "mail");
	if (command(L, p, "MAIL FROM:<%s>", p->msg.from) != 0 || read_reply(L, p, 0) != 0)
		return -1;
	ok = stage_ok(L, -1);
	lua_setfield(L, SLOT_STAGES, "mail");
	if (!ok || p->stop == STOP_MAIL)
		goto done;

	set_last(L, "rcpt");
	lua_createtable(L, p->msg.nrcpt, 0);
	lua_setfield(L, SLOT_STAGES, "rcpt");
	for (int i = 0; i < p->msg.nrcpt; i++) {
		if (command(L, p, "RCPT TO:<%s>", p->msg.rcpt[i]) != 0 || read_reply(L, p, 0) != 0)
			return -1;
		lua_pushstring(L, p->msg.rcpt[i]);
		lua_setfield(L, -2, "addr");
		if (stage_ok(L, -1))
			accepted_idx[accepted++] = i;
		lua_getfield(L, SLOT_STAGES, "rcpt");
		lua_insert(L, -2);
		lua_rawseti(L, -2, i + 1);
		lua_pop(L, 1);
	}
	ok = accepted == p->msg.nrcpt;
	if (accepted == 0 || p->stop == STOP_RCPT)
		goto done;

	set_last(L, "data");
	smtp_push_message(L, &p->msg);       /* message, message_id, probe_id */
	lua_setfield(L, SLOT_RES, "probe_id");
	lua_setfield(L, SLOT_RES, "message_id");
	if (command(L, p, "DATA") != 0 || read_reply(L, p, 1) != 0)
		return -1;
	if (p->code != 354) {
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "ok");
		lua_setfield(L, SLOT_STAGES, "data");
		ok = 0;
		goto done;
	}
	lua_pop(L, 1);                        /* the 354 stays in the transcript */
	{
		size_t len, slen;
		const char *m = lua_tolstring(L, -1, &len);
		const char *stuffed;
		smtp_push_dot_stuffed(L, m, len);
		stuffed = lua_tolstring(L, -1, &slen);
		transcript_add(L, p, "C", stuffed, slen >= 2 ? slen - 2 : slen, 0);
		if (conn_send_all(&p->c, stuffed, slen) != 0)
			return -1;
		lua_pop(L, 2);
	}
	if (!p->lmtp) {
		if (read_reply(L, p, 0) != 0)
			return -1;
		ok = ok && stage_ok(L, -1);
		parse_queue_id(L, p);
		lua_setfield(L, SLOT_STAGES, "data");
	} else {
		/* LMTP answers DATA once per accepted recipient, in RCPT order */
		int all = 1;
		lua_createtable(L, accepted, 0);
		for (int i = 0; i < accepted; i++) {
			if (read_reply(L, p, 0) != 0)
				return -1;
			lua_pushstring(L, p->msg.rcpt[accepted_idx[i]]);
			lua_setfield(L, -2, "addr");
			all = all && stage_ok(L, -1);
			lua_getfield(L, SLOT_RES, "lmtp_session");
			if (lua_isnil(L, -1))
				parse_queue_id(L, p);
			lua_pop(L, 1);
			lua_rawseti(L, -2, i + 1);
		}
		lua_createtable(L, 0, 4);
		lua_rawgeti(L, -2, 1);          /* the first reply stands for the stage */
		lua_getfield(L, -1, "code");
		lua_setfield(L, -3, "code");
		lua_getfield(L, -1, "text");
		lua_setfield(L, -3, "text");
		lua_getfield(L, -1, "enhanced");
		lua_setfield(L, -3, "enhanced");
		lua_pop(L, 1);
		lua_pushboolean(L, all);
		lua_setfield(L, -2, "ok");
		lua_insert(L, -2);
		lua_setfield(L, -2, "replies");
		lua_setfield(L, SLOT_STAGES, "data");
		ok = ok && all;
	}
done:
	lua_pushboolean(L, ok);
	lua_setfield(L, SLOT_RES, "ok");
	quit(L, p);
	return 0;
}

/* Runs under lua_pcall; p's socket and TLS objects are released by the caller. */
static int probe_protected(lua_State *L)
{
	struct probe *p = lua_touserdata(L, SLOT_P);
	int r;
	lua_settop(L, SLOT_P);
	lua_createtable(L, 0, 12);            /* SLOT_RES */
	lua_newtable(L);                      /* SLOT_TRANSCRIPT */
	lua_pushvalue(L, -1);
	lua_setfield(L, SLOT_RES, "transcript");
	lua_newtable(L);                      /* SLOT_STAGES */
	lua_pushvalue(L, -1);
	lua_setfield(L, SLOT_RES, "stages");
	lua_pushfstring(L, "%s:%d", p->c.host, p->c.port);
	lua_setfield(L, SLOT_RES, "peer");
	lua_pushboolean(L, 0);
	lua_setfield(L, SLOT_RES, "tls");
	lua_pushboolean(L, 0);
	lua_setfield(L, SLOT_RES, "ok");
	p->t0 = rbnet_now();
	r = dialogue(L, p);
	lua_settop(L, SLOT_STAGES);
	lua_pushnumber(L, ms_since(p));
	lua_setfield(L, SLOT_RES, "ms");
	if (r == 0) {
		lua_pushvalue(L, SLOT_RES);
		return 1;
	}
	lua_pushnil(L);
	lua_pushstring(L, p->c.fail_msg);
	lua_pushstring(L, p->c.fail_code);
	lua_pushvalue(L, SLOT_RES);
	return 4;
}

static const char *const probe_options[] = {
	"host", "port", "lmtp", "helo", "from", "rcpt", "stop", "starttls", "tls_verify",
	"tls_name", "tls_ca", "bind", "timeout", "message", "subject", "message_id", "probe_id",
	"date", NULL
};

static int opt_enum(lua_State *L, const char *key, const char *dflt, const char *const names[])
{
	const char *v = rbnet_opt_string(L, 1, key, dflt);
	for (int i = 0; names[i]; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	return luaL_error(L, "option '%s': unknown value '%s'", key, v);
}

/* smtp.probe(opts): see the file comment. */
static int smtp_probe(lua_State *L)
{
	struct probe *p;
	struct sockaddr_storage ss;
	socklen_t sl;
	double port;
	int status, base;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rbnet_check_options(L, 1, probe_options);
	p = lua_newuserdatauv(L, sizeof *p, 0);   /* Lua-owned memory; fd/TLS released below */
	memset(p, 0, sizeof *p);
	p->c.fd = -1;
	p->c.host = rbnet_opt_string(L, 1, "host", NULL);
	if (p->c.host == NULL || rbnet_addr(p->c.host, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'host' must be a numeric IP address (got %s)",
				  p->c.host ? p->c.host : "nil");
	p->bind = rbnet_opt_string(L, 1, "bind", NULL);
	if (p->bind && rbnet_addr(p->bind, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'bind' must be a numeric IP address");
	p->lmtp = rbnet_opt_bool(L, 1, "lmtp", 0);
	port = rbnet_opt_number(L, 1, "port", p->lmtp ? 24 : 25);
	if (!(port >= 1 && port <= 65535 && port == (int)port))
		return luaL_error(L, "option 'port' must be an integer 1..65535");
	p->c.port = (int)port;
	p->stop = opt_enum(L, "stop", "data", stop_names);
	p->tls_mode = opt_enum(L, "starttls", "auto", tls_modes);
	p->tls_verify = rbnet_opt_bool(L, 1, "tls_verify", 0);
	p->tls_name = rbnet_opt_string(L, 1, "tls_name", NULL);
	p->tls_ca = rbnet_opt_string(L, 1, "tls_ca", NULL);
	p->c.timeout = rbnet_opt_timeout(L, 1, 10.0);
	smtp_read_message_options(L, 1, &p->msg, p->stop >= STOP_RCPT);

	base = lua_gettop(L);
	lua_pushcfunction(L, probe_protected);
	lua_pushlightuserdata(L, p);
	status = lua_pcall(L, 1, LUA_MULTRET, 0);
	conn_release(&p->c);
	if (status != LUA_OK)
		return lua_error(L);
	return lua_gettop(L) - base;
}

static const char *const format_options[] = {
	"from", "rcpt", "helo", "subject", "message_id", "probe_id", "date", "message", NULL
};

/* smtp.format_message(opts) -> message, message_id, probe_id: what probe would send in DATA. */
static int smtp_format_message(lua_State *L)
{
	struct smtp_msg m;
	luaL_checktype(L, 1, LUA_TTABLE);
	rbnet_check_options(L, 1, format_options);
	smtp_read_message_options(L, 1, &m, 1);
	smtp_push_message(L, &m);
	return 3;
}

static const luaL_Reg smtp_funcs[] = {
	{"probe", smtp_probe},
	{"format_message", smtp_format_message},
	{NULL, NULL}
};

int luaopen_runbook_smtp(lua_State *L)
{
	luaL_newlib(L, smtp_funcs);
	return 1;
}
