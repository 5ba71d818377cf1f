/* fz_smtp.c: libFuzzer harness for SMTP/LMTP reply parsing (src/lsmtp.c, src/smtp_conn.c):
 * runbook.smtp.probe talks to a loopback peer (loopback.h) that answers with the input.
 *
 * Byte 0 picks LMTP or SMTP, STARTTLS auto or never, and the stage to stop at; the rest is
 * everything the server says (greeting, EHLO capabilities, MAIL/RCPT/DATA replies, "queued as",
 * Dovecot's "<rcpt> SESSION Saved", multi-line replies, bytes ahead of a STARTTLS reply). The
 * probe must return a result or nil, msg, code with a documented code; it must never raise. A
 * violation aborts. Connections go to 127.0.0.1 only. Depends on: lua_check.h (Lua 5.4),
 * luaopen_runbook_smtp, loopback.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "loopback.h"
#include "lua_check.h"

int luaopen_runbook_smtp(lua_State *L);

static const char check_src[] =
	"local smtp, port = ...\n"
	"local stops = { 'connect', 'helo', 'mail', 'rcpt', 'data' }\n"
	"local codes = { refused = 1, timeout = 1, unreachable = 1, protocol = 1, tls = 1, io = 1 }\n"
	"return function(sel)\n"
	"  local r, msg, code, partial = smtp.probe {\n"
	"    host = '127.0.0.1', port = port, lmtp = sel & 1 == 1,\n"
	"    starttls = sel & 2 == 2 and 'never' or 'auto', stop = stops[(sel >> 2) % 5 + 1],\n"
	"    from = 'probe@runbook.test', rcpt = { 'info@example.test', 'user@example.test' },\n"
	"    helo = 'runbook.test', timeout = 5 }\n"
	"  if r then\n"
	"    if type(r.transcript) ~= 'table' or type(r.stages) ~= 'table' then error('PROPERTY: result shape') end\n"
	"    return\n"
	"  end\n"
	"  if type(msg) ~= 'string' or not codes[code] then\n"
	"    error('PROPERTY: undocumented failure ' .. tostring(code) .. ': ' .. tostring(msg))\n"
	"  end\n"
	"  if code == 'timeout' then error('PROPERTY: timeout although the peer sent everything: ' .. msg) end\n"
	"end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!fz_L)
		fz_lua_setup(check_src, "runbook.smtp", luaopen_runbook_smtp, lb_start(0));
	lb_set(data + 1, size - 1);
	lua_pushinteger(fz_L, data[0]);
	fz_lua_check("fz_smtp");
	return 0;
}
