/* fz_yaml.c: libFuzzer harness for runbook.yaml's loader (src/lyaml.c, libyaml) through a real
 * Lua state, as the inventory loader calls it: load, then the marks of the document and of
 * every key and value down the tree. yaml.load answers nil, msg, "protocol" for bad input, so any
 * raise is a finding (abort). Depends on: Lua 5.4, luaopen_runbook_yaml. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_runbook_yaml(lua_State *L);

static const char check_src[] =
	"local yaml = ...\n"
	"local function walk(t, depth)\n"
	"  yaml.mark(t)\n"
	"  for k, v in pairs(t) do\n"
	"    yaml.mark(t, k)\n"
	"    if type(v) == 'table' and depth < 70 then walk(v, depth + 1) end\n"
	"  end\n"
	"end\n"
	"return function(s)\n"
	"  local v, msg, code = yaml.load(s, 'fuzz.yaml')\n"
	"  if v == nil then\n"
	"    if type(msg) ~= 'string' or code ~= 'protocol' then error('PROPERTY: bad failure ' .. tostring(msg)) end\n"
	"    return\n"
	"  end\n"
	"  if type(v) == 'table' then walk(v, 0) end\n"
	"end\n";

static lua_State *L;
static int check_ref;

static void setup(void)
{
	L = luaL_newstate();
	luaL_openlibs(L);
	if (luaL_loadstring(L, check_src) != LUA_OK)
		abort();
	luaL_requiref(L, "runbook.yaml", luaopen_runbook_yaml, 0);
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
		fprintf(stderr, "fz_yaml: %s\n", msg ? msg : "(error object)");
		abort();
	}
	if (++runs % 256 == 0)
		lua_gc(L, LUA_GCCOLLECT);
	return 0;
}
