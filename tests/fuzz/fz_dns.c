/* fz_dns.c: libFuzzer harness for DNS answers (src/ldns.c on libldns): runbook.dns.query asks
 * a loopback peer (loopback.h) that answers with the input.
 *
 * Byte 0 picks the question type (A AAAA MX TXT PTR CNAME NS SOA) for the name example.test;
 * the rest is the reply message (its ID and QR bit are set to match, so it is parsed: header,
 * question check, rcode, every section into Lua tables). A reply with TC set makes the client
 * ask again over TCP, which gets the same bytes. The query must return a table or nil, msg,
 * code with a documented code and never raise; a violation aborts. 127.0.0.1 only.
 * Depends on: lua_check.h (Lua 5.4), luaopen_runbook_dns, loopback.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "loopback.h"
#include "lua_check.h"

int luaopen_runbook_dns(lua_State *L);

static const char check_src[] =
	"local dns, port = ...\n"
	"local types = { 'A', 'AAAA', 'MX', 'TXT', 'PTR', 'CNAME', 'NS', 'SOA' }\n"
	"local codes = { nxdomain = 1, servfail = 1, refused = 1, timeout = 1, protocol = 1, io = 1 }\n"
	"local function rrs(list)\n"
	"  for _, rr in ipairs(list) do\n"
	"    if type(rr.name) ~= 'string' or type(rr.type) ~= 'string' or type(rr.data) ~= 'string' then\n"
	"      error('PROPERTY: record without name/type/data')\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return function(sel)\n"
	"  local r, msg, code = dns.query { name = 'example.test', type = types[sel % 8 + 1],\n"
	"    server = '127.0.0.1', port = port, timeout = 5, retries = 0 }\n"
	"  if r then\n"
	"    rrs(r.answers) rrs(r.authority) rrs(r.additional)\n"
	"    return\n"
	"  end\n"
	"  if type(msg) ~= 'string' or not codes[code] then\n"
	"    error('PROPERTY: undocumented failure ' .. tostring(code) .. ': ' .. tostring(msg))\n"
	"  end\n"
	"  if code == 'timeout' then error('PROPERTY: timeout although the peer answered: ' .. msg) end\n"
	"end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!fz_L)
		fz_lua_setup(check_src, "runbook.dns", luaopen_runbook_dns, lb_start(1));
	lb_set(data + 1, size - 1);
	lua_pushinteger(fz_L, data[0]);
	fz_lua_check("fz_dns");
	return 0;
}
