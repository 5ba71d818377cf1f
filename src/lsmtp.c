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
 * The dialogue itself is smtp_dialogue.c. Private to the engine. Depends on: rbaux.h,
 * smtp_probe.h, smtp_msg.h, Lua 5.4. */
#include <string.h>
#include <sys/socket.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"
#include "smtp_probe.h"

static const char *const stop_names[] = { "connect", "helo", "mail", "rcpt", "data", NULL };
static const char *const tls_modes[] = { "auto", "required", "never", NULL };

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
	p->t0 = rb_mono_now();
	r = smtp_dialogue(L, p);
	lua_settop(L, SLOT_STAGES);
	lua_pushnumber(L, smtp_ms_since(p));
	lua_setfield(L, SLOT_RES, "ms");
	if (r == 0) {
		lua_pushvalue(L, SLOT_RES);
		return 1;
	}
	lua_pushnil(L);
	lua_pushstring(L, p->c.fail.msg);
	lua_pushstring(L, p->c.fail.code);
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
	const char *v = rb_opt_string(L, 1, key, dflt);
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
	int status, base;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	rb_check_keys(L, 1, probe_options, "smtp.probe");
	p = lua_newuserdatauv(L, sizeof *p, 0);   /* Lua-owned memory; fd/TLS released below */
	memset(p, 0, sizeof *p);
	p->c.fd = -1;
	p->c.host = rb_opt_string(L, 1, "host", NULL);
	if (p->c.host == NULL || rb_ip_addr(p->c.host, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'host' must be a numeric IP address (got %s)",
				  p->c.host ? p->c.host : "nil");
	p->bind = rb_opt_string(L, 1, "bind", NULL);
	if (p->bind && rb_ip_addr(p->bind, 0, &ss, &sl) != 0)
		return luaL_error(L, "option 'bind' must be a numeric IP address");
	p->lmtp = rb_opt_bool(L, 1, "lmtp", 0);
	p->c.port = (int)rb_opt_int(L, 1, "port", p->lmtp ? 24 : 25, 1, 65535);
	p->stop = opt_enum(L, "stop", "data", stop_names);
	p->tls_mode = opt_enum(L, "starttls", "auto", tls_modes);
	p->tls_verify = rb_opt_bool(L, 1, "tls_verify", 0);
	p->tls_name = rb_opt_string(L, 1, "tls_name", NULL);
	p->tls_ca = rb_opt_string(L, 1, "tls_ca", NULL);
	p->c.timeout = rb_opt_timeout(L, 1, "timeout", 10.0);
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
	rb_check_keys(L, 1, format_options, "smtp.format_message");
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
