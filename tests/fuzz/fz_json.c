/* fz_json.c: libFuzzer harness for runbook.json's decoder (src/json_decode.c, cJSON) and, on
 * what it accepts, the encoder (src/ljson.c), through a real Lua state as the engine calls them.
 *
 * Besides memory errors it checks one property: whatever decode accepts, encode turns into text
 * that decodes and encodes to the same text again (encode(decode(encode(v))) == encode(v)). A
 * violation aborts, so libFuzzer keeps the input. Depends on: Lua 5.4, luaopen_runbook_json. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

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

static lua_State *L;
static int check_ref;

static void setup(void)
{
	L = luaL_newstate();
	luaL_openlibs(L);
	if (luaL_loadstring(L, check_src) != LUA_OK)
		abort();
	luaL_requiref(L, "runbook.json", luaopen_runbook_json, 0);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		abort();
	check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned runs;
	if (!L)
		setup();
	lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "fz_json: %s\n", msg ? msg : "(error object)");
		abort();   /* decode returns nil, msg for bad input: any raise is a finding */
	}
	if (++runs % 256 == 0)
		lua_gc(L, LUA_GCCOLLECT);
	return 0;
}
