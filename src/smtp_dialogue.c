/* smtp_dialogue.c: one SMTP/LMTP dialogue for smtp.probe (smtp_probe.h), as a table of stages
 * (connect, greeting, helo, starttls, mail, rcpt, data) run in order up to the probe's stop,
 * each a small function; reading multi-line replies, the transcript, capabilities and the
 * "queued as" id. Depends on: rbaux.h, smtp_conn.h (the byte stream), smtp_msg.h, OpenSSL,
 * Lua 5.4. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"
#include "smtp_probe.h"

double smtp_ms_since(const struct probe *p)
{
	return (rb_mono_now() - p->t0) * 1000.0;
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
	lua_pushnumber(L, smtp_ms_since(p));
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
		return rb_errf(&p->c.fail, "io", "command too long");
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
	double deadline = rb_mono_now() + p->c.timeout;
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
				return rb_errf(&p->c.fail, "protocol", "%s:%d: reply line longer than %d bytes",
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
			return rb_errf(&p->c.fail, "protocol", "%s:%d: not an SMTP reply: \"%.*s\"", p->c.host, p->c.port,
				    (int)(len > 80 ? 80 : len), line);
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (p->nlines > 0 && code != p->code)
			return rb_errf(&p->c.fail, "protocol", "%s:%d: reply code changed inside a multi-line reply",
				    p->c.host, p->c.port);
		if (++p->nlines > 200)
			return rb_errf(&p->c.fail, "protocol", "%s:%d: reply of more than 200 lines", p->c.host, p->c.port);
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
	p->c.fail.code = NULL;
}

/* ---------------------------------------------------------------- the dialogue, stage by stage
 *
 * Each stage reads/writes what it must and stores its table in SLOT_STAGES. It returns
 * STAGE_NEXT (go on), STAGE_DONE (the server said no: stop here, the call still succeeds) or
 * -1 (a connection-level failure, p->c.fail set). p->ok is the overall outcome so far. */
enum { STAGE_NEXT = 0, STAGE_DONE = 1 };

/* Stores the stage table on top of the stack as stages[name]; returns its ok. */
static int store_stage(lua_State *L, const char *name)
{
	int ok = stage_ok(L, -1);
	lua_setfield(L, SLOT_STAGES, name);
	return ok;
}

static int stage_connect(lua_State *L, struct probe *p)
{
	char local[INET6_ADDRSTRLEN + 8];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;

	p->c.fd = rb_tcp_connect(p->c.host, p->c.port, p->bind, rb_deadline_in(p->c.timeout),
				 &p->c.fail.code, p->c.fail.msg, sizeof p->c.fail.msg);
	if (p->c.fd < 0)
		return -1;
	local[0] = '\0';
	if (getsockname(p->c.fd, (struct sockaddr *)&ss, &sl) == 0)
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET
			  ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
			  : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, local, sizeof local);
	lua_pushstring(L, local);
	lua_setfield(L, SLOT_RES, "local");
	lua_createtable(L, 0, 2);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "ok");
	lua_pushnumber(L, smtp_ms_since(p));
	lua_setfield(L, -2, "ms");
	lua_setfield(L, SLOT_STAGES, "connect");
	return STAGE_NEXT;
}

static int stage_greeting(lua_State *L, struct probe *p)
{
	if (read_reply(L, p, 0) != 0)
		return -1;
	p->ok = store_stage(L, "greeting");
	return p->ok ? STAGE_NEXT : STAGE_DONE;
}

static int stage_helo(lua_State *L, struct probe *p)
{
	if ((p->offered = hello(L, p)) < 0)
		return -1;
	p->ok = store_stage(L, "helo");
	return p->ok ? STAGE_NEXT : STAGE_DONE;
}

/* Adds the TLS facts to the STARTTLS stage table on top of the stack. */
static void describe_tls(lua_State *L, struct probe *p)
{
	char subject[256];
	lua_pushstring(L, SSL_get_version(p->c.ssl));
	lua_setfield(L, -2, "version");
	lua_pushstring(L, SSL_get_cipher_name(p->c.ssl));
	lua_setfield(L, -2, "cipher");
	lua_pushboolean(L, p->tls_verify);
	lua_setfield(L, -2, "verified");
	conn_peer_subject(&p->c, subject, sizeof subject);
	lua_pushstring(L, subject);
	lua_setfield(L, -2, "peer_subject");
}

/* STARTTLS when offered (and wanted), then EHLO again inside TLS. */
static int stage_starttls(lua_State *L, struct probe *p)
{
	if (p->tls_mode == TLS_REQUIRED && !p->offered)
		return rb_errf(&p->c.fail, "tls", "%s:%d does not offer STARTTLS (starttls=required)",
				 p->c.host, p->c.port);
	if (p->tls_mode == TLS_NEVER || !p->offered)
		return STAGE_NEXT;
	set_last(L, "starttls");
	if (command(L, p, "STARTTLS") != 0 || read_reply(L, p, 0) != 0)
		return -1;
	if (p->code != 220) {
		lua_setfield(L, SLOT_STAGES, "starttls");
		if (p->tls_mode == TLS_REQUIRED)
			return rb_errf(&p->c.fail, "tls", "%s:%d refused STARTTLS: %.200s", p->c.host, p->c.port,
					 p->reply);
		return STAGE_NEXT;
	}
	if (conn_start_tls(&p->c, p->tls_name ? p->tls_name : p->c.host, p->tls_verify, p->tls_ca) != 0)
		return -1;
	describe_tls(L, p);
	lua_setfield(L, SLOT_STAGES, "starttls");
	lua_pushboolean(L, 1);
	lua_setfield(L, SLOT_RES, "tls");
	set_last(L, "helo");
	return stage_helo(L, p);
}

static int stage_mail(lua_State *L, struct probe *p)
{
	if (command(L, p, "MAIL FROM:<%s>", p->msg.from) != 0 || read_reply(L, p, 0) != 0)
		return -1;
	p->ok = store_stage(L, "mail");
	return p->ok ? STAGE_NEXT : STAGE_DONE;
}

/* One RCPT per recipient; the accepted ones are remembered for LMTP's per-recipient replies. */
static int stage_rcpt(lua_State *L, struct probe *p)
{
	p->accepted = 0;
	lua_createtable(L, p->msg.nrcpt, 0);
	lua_setfield(L, SLOT_STAGES, "rcpt");
	for (int i = 0; i < p->msg.nrcpt; i++) {
		if (command(L, p, "RCPT TO:<%s>", p->msg.rcpt[i]) != 0 || read_reply(L, p, 0) != 0)
			return -1;
		lua_pushstring(L, p->msg.rcpt[i]);
		lua_setfield(L, -2, "addr");
		if (stage_ok(L, -1))
			p->accepted_idx[p->accepted++] = i;
		lua_getfield(L, SLOT_STAGES, "rcpt");
		lua_insert(L, -2);
		lua_rawseti(L, -2, i + 1);
		lua_pop(L, 1);
	}
	p->ok = p->accepted == p->msg.nrcpt;
	return p->accepted > 0 ? STAGE_NEXT : STAGE_DONE;
}

/* Sends the dot-stuffed message (on top of the stack, popped) and records it. */
static int send_message(lua_State *L, struct probe *p)
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
	return 0;
}

/* LMTP answers DATA once per accepted recipient, in RCPT order; the first reply stands for
 * the stage, all of them are its "replies". */
static int lmtp_data_replies(lua_State *L, struct probe *p)
{
	int all = 1;
	lua_createtable(L, p->accepted, 0);
	for (int i = 0; i < p->accepted; i++) {
		if (read_reply(L, p, 0) != 0)
			return -1;
		lua_pushstring(L, p->msg.rcpt[p->accepted_idx[i]]);
		lua_setfield(L, -2, "addr");
		all = all && stage_ok(L, -1);
		lua_getfield(L, SLOT_RES, "lmtp_session");
		if (lua_isnil(L, -1))
			parse_queue_id(L, p);
		lua_pop(L, 1);
		lua_rawseti(L, -2, i + 1);
	}
	lua_createtable(L, 0, 4);
	lua_rawgeti(L, -2, 1);
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
	p->ok = p->ok && all;
	return 0;
}

static int stage_data(lua_State *L, struct probe *p)
{
	smtp_push_message(L, &p->msg);       /* message, message_id, probe_id */
	lua_setfield(L, SLOT_RES, "probe_id");
	lua_setfield(L, SLOT_RES, "message_id");
	if (command(L, p, "DATA") != 0 || read_reply(L, p, 1) != 0)
		return -1;
	if (p->code != 354) {
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "ok");
		lua_setfield(L, SLOT_STAGES, "data");
		p->ok = 0;
		return STAGE_DONE;
	}
	lua_pop(L, 1);                        /* the 354 stays in the transcript */
	if (send_message(L, p) != 0)
		return -1;
	if (p->lmtp)
		return lmtp_data_replies(L, p) != 0 ? -1 : STAGE_NEXT;
	if (read_reply(L, p, 0) != 0)
		return -1;
	p->ok = p->ok && stage_ok(L, -1);
	parse_queue_id(L, p);
	lua_setfield(L, SLOT_STAGES, "data");
	return STAGE_NEXT;
}

/* The dialogue in order. last: what last_stage says while the stage runs (NULL: the stage
 * names itself, STARTTLS only when it is tried); stop: the probe's stop option that ends the
 * dialogue after this stage (-1: none). */
static const struct stage {
	const char *last;
	int (*run)(lua_State *L, struct probe *p);
	int stop;
} stages[] = {
	{ "connect", stage_connect, -1 },
	{ "greeting", stage_greeting, STOP_CONNECT },
	{ "helo", stage_helo, -1 },
	{ NULL, stage_starttls, STOP_HELO },
	{ "mail", stage_mail, STOP_MAIL },
	{ "rcpt", stage_rcpt, STOP_RCPT },
	{ "data", stage_data, -1 },
};

/* Stage tables land in SLOT_STAGES as they complete; a dialogue that did not fail ends with a
 * polite QUIT. */
int smtp_dialogue(lua_State *L, struct probe *p)
{
	for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
		int r;
		if (stages[i].last)
			set_last(L, stages[i].last);
		r = stages[i].run(L, p);
		if (r < 0)
			return -1;
		if (r == STAGE_DONE || stages[i].stop == p->stop)
			break;
	}
	lua_pushboolean(L, p->ok);
	lua_setfield(L, SLOT_RES, "ok");
	quit(L, p);
	return 0;
}
