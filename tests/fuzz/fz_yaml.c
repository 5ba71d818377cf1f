/* fz_yaml.c: libFuzzer harness for runbook.yaml's loader (src/lyaml.c, libyaml) through a real
 * Lua state, as the inventory loader calls it: load, then the marks of the document and of
 * every key and value down the tree. yaml.load answers nil, msg, "protocol" for bad input, so any
 * raise is a finding (abort). Depends on: lua_check.h (Lua 5.4), luaopen_runbook_yaml. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_check.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz_L)
		fz_lua_setup(check_src, "runbook.yaml", luaopen_runbook_yaml, -1);
	lua_pushlstring(fz_L, (const char *)data, size);
	fz_lua_check("fz_yaml"); /* a raise is a finding */
	return 0;
}
