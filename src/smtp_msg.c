/* smtp_msg.c: the probe message (headers that make it findable in the logs: a unique
 * Message-ID and X-Runbook-Probe), DATA dot-stuffing, and validation of command parts.
 * Depends on: Lua 5.4 (luaL_Buffer: everything here runs where raising is safe), rbaux.h. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"
#include "smtp_msg.h"

void smtp_check_address(lua_State *L, const char *s, int empty_ok, const char *what)
{
	size_t n = strlen(s);
	if (n == 0 && !empty_ok)
		luaL_error(L, "%s: empty address", what);
	if (n > 254)
		luaL_error(L, "%s: address longer than 254 bytes", what);
	if (strpbrk(s, "\r\n"))
		luaL_error(L, "%s: CR or LF in address (refusing SMTP command injection)", what);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == ' ' || c == '<' || c == '>')
			luaL_error(L, "%s: control byte, space or angle bracket in address", what);
	}
}

void smtp_check_header(lua_State *L, const char *s, const char *what)
{
	size_t n = strlen(s);
	if (n > 900)
		luaL_error(L, "option '%s' longer than 900 bytes", what);
	if (strpbrk(s, "\r\n"))
		luaL_error(L, "option '%s': CR or LF (refusing header injection)", what);
}

/* A string option that must not contain NUL: lua strings can, C strings cannot. */
static const char *opt_cstring(lua_State *L, int idx, const char *key)
{
	size_t len;
	const char *s = rb_opt_lstring(L, idx, key, NULL, &len);   /* anchored by the options table */
	if (s && strlen(s) != len)
		luaL_error(L, "option '%s': NUL byte", key);
	return s;
}

void smtp_read_message_options(lua_State *L, int idx, struct smtp_msg *m, int need_rcpt)
{
	int t;
	char what[40];

	memset(m, 0, sizeof *m);
	m->from = opt_cstring(L, idx, "from");
	if (m->from == NULL)
		m->from = "";
	smtp_check_address(L, m->from, 1, "option 'from'");
	m->helo = opt_cstring(L, idx, "helo");
	if (m->helo == NULL)
		m->helo = "runbook.test";
	if (*m->helo == '\0' || strlen(m->helo) > 255)
		luaL_error(L, "option 'helo': 1..255 bytes");
	for (const char *c = m->helo; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			luaL_error(L, "option 'helo': CR, LF, space or control byte (refusing SMTP command injection)");
	t = lua_getfield(L, idx, "rcpt");
	if (t == LUA_TSTRING) {
		size_t len;
		m->rcpt[0] = lua_tolstring(L, -1, &len);
		if (strlen(m->rcpt[0]) != len)
			luaL_error(L, "option 'rcpt': NUL byte (refusing SMTP command injection)");
		smtp_check_address(L, m->rcpt[0], 0, "option 'rcpt'");
		m->nrcpt = 1;
	} else if (t == LUA_TTABLE) {
		lua_Integer n = luaL_len(L, -1);
		if (n > SMTP_MAX_RCPT)
			luaL_error(L, "option 'rcpt': more than %d recipients", SMTP_MAX_RCPT);
		for (lua_Integer i = 1; i <= n; i++) {
			size_t len;
			snprintf(what, sizeof what, "option 'rcpt' #%d", (int)i);
			if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
				luaL_error(L, "%s must be a string", what);
			m->rcpt[i - 1] = lua_tolstring(L, -1, &len);   /* anchored by the rcpt table */
			lua_pop(L, 1);
			if (strlen(m->rcpt[i - 1]) != len)
				luaL_error(L, "%s: NUL byte (refusing SMTP command injection)", what);
			smtp_check_address(L, m->rcpt[i - 1], 0, what);
		}
		m->nrcpt = (int)n;
	} else if (t != LUA_TNIL) {
		luaL_error(L, "option 'rcpt' must be a string or a list of strings");
	}
	lua_pop(L, 1);   /* the rcpt table stays anchored by the options table */
	if (need_rcpt && m->nrcpt == 0)
		luaL_error(L, "option 'rcpt' is required to go past MAIL");
	m->subject = opt_cstring(L, idx, "subject");
	m->message_id = opt_cstring(L, idx, "message_id");
	m->probe_id = opt_cstring(L, idx, "probe_id");
	m->date = opt_cstring(L, idx, "date");
	m->body = opt_cstring(L, idx, "message");
	if (m->subject)
		smtp_check_header(L, m->subject, "subject");
	if (m->message_id) {
		smtp_check_header(L, m->message_id, "message_id");
		if (m->message_id[0] != '<' || m->message_id[strlen(m->message_id) - 1] != '>' ||
		    strchr(m->message_id, ' '))
			luaL_error(L, "option 'message_id' must look like <local@domain>");
	}
	if (m->probe_id) {
		smtp_check_header(L, m->probe_id, "probe_id");
		if (*m->probe_id == '\0' || strchr(m->probe_id, ' '))
			luaL_error(L, "option 'probe_id' must be one non-empty word");
	}
	if (m->date)
		smtp_check_header(L, m->date, "date");
}

static void random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[32];
	if (nbytes > sizeof b)
		nbytes = sizeof b;
	if (getrandom(b, nbytes, 0) != (ssize_t)nbytes) {
		/* getrandom on Linux >= 3.17 does not fail for <= 256 bytes; keep it unique anyway */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		for (size_t i = 0; i < nbytes; i++)
			b[i] = (unsigned char)((unsigned long)ts.tv_nsec >> (i % 4 * 8)) ^ (unsigned char)i;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

void smtp_push_message(lua_State *L, const struct smtp_msg *m)
{
	char probe[40], mid[400], date[64];
	luaL_Buffer b;

	if (m->probe_id)
		snprintf(probe, sizeof probe, "%.39s", m->probe_id);
	else
		random_hex(probe, 8);
	if (m->message_id) {
		snprintf(mid, sizeof mid, "%s", m->message_id);
	} else {
		char r[33];
		random_hex(r, 12);
		snprintf(mid, sizeof mid, "<runbook-probe.%s.%s@%s>", probe, r, m->helo);
	}
	if (m->date) {
		snprintf(date, sizeof date, "%s", m->date);
	} else {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	}
	luaL_buffinit(L, &b);
	luaL_addstring(&b, "From: <");
	luaL_addstring(&b, m->from);
	luaL_addstring(&b, ">\r\nTo: ");
	for (int i = 0; i < m->nrcpt; i++) {
		if (i)
			luaL_addstring(&b, ",\r\n ");
		luaL_addchar(&b, '<');
		luaL_addstring(&b, m->rcpt[i]);
		luaL_addchar(&b, '>');
	}
	luaL_addstring(&b, "\r\nSubject: ");
	if (m->subject) {
		luaL_addstring(&b, m->subject);
	} else {
		luaL_addstring(&b, "runbook delivery probe ");
		luaL_addstring(&b, probe);
	}
	luaL_addstring(&b, "\r\nDate: ");
	luaL_addstring(&b, date);
	luaL_addstring(&b, "\r\nMessage-ID: ");
	luaL_addstring(&b, mid);
	luaL_addstring(&b, "\r\nX-Runbook-Probe: ");
	luaL_addstring(&b, probe);
	luaL_addstring(&b, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
	if (m->body) {
		/* line endings become CRLF here so that the message is what goes on the wire */
		for (const char *c = m->body; *c; c++) {
			if (*c == '\r' && c[1] == '\n')
				continue;
			if (*c == '\r' || *c == '\n')
				luaL_addstring(&b, "\r\n");
			else
				luaL_addchar(&b, *c);
		}
		if (*m->body && m->body[strlen(m->body) - 1] != '\n' && m->body[strlen(m->body) - 1] != '\r')
			luaL_addstring(&b, "\r\n");
	} else {
		luaL_addstring(&b, "This is a delivery probe sent by runbook (probe ");
		luaL_addstring(&b, probe);
		luaL_addstring(&b, ") to check that mail\r\nreaches this mailbox. It can be deleted.\r\n");
	}
	luaL_pushresult(&b);
	lua_pushstring(L, mid);
	lua_pushstring(L, probe);
}

void smtp_push_dot_stuffed(lua_State *L, const char *s, size_t len)
{
	luaL_Buffer b;
	int bol = 1;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;         /* the LF writes the CRLF */
		if (c == '\r' || c == '\n') {
			luaL_addstring(&b, "\r\n");
			bol = 1;
			continue;
		}
		if (bol && c == '.')
			luaL_addchar(&b, '.');
		luaL_addchar(&b, c);
		bol = 0;
	}
	if (!bol)
		luaL_addstring(&b, "\r\n");
	luaL_addstring(&b, ".\r\n");
	luaL_pushresult(&b);
}
