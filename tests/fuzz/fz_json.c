/* fz_json.c: libFuzzer harness for runbook.json's decoder (src/json_decode.c, cJSON) and, on
 * what it accepts, the encoder (src/ljson.c), through a real Lua state as the engine calls them.
 *
 * Besides memory errors it checks one property: whatever decode accepts, encode turns into text
 * that decodes and encodes to the same text again (encode(decode(encode(v))) == encode(v)). A
 * violation aborts, so libFuzzer keeps the input. Depends on: lua_check.h (Lua 5.4), luaopen_runbook_json. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua_check.h"

int luaopen_runbook_json(lua_State *L);

static const char check_src[] =
	"local json = ...\n"
	"return function(s)\n"
	"  local v = json.decode(s)\n"
	"  if v == nil then return end\n"
	"  local ok, once = pcall(json.encode, v)\n"
	"  if not ok then error('PROPERTY: encode refused a decoded value: ' .. tostring(once)) end\n"
	"  local w, msg = json.decode(once)\n"
	"  if w == nil then error('PROPERTY: encode output does not decode: ' .. msg) end\n"
	"  local twice = json.encode(w)\n"
	"  if twice ~= once then error('PROPERTY: not stable: ' .. once .. ' then ' .. twice) end\n"
	"end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz_L)
		fz_lua_setup(check_src, "runbook.json", luaopen_runbook_json, -1);
	lua_pushlstring(fz_L, (const char *)data, size);
	fz_lua_check("fz_json"); /* a raise is a finding */
	return 0;
}
