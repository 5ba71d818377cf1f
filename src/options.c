/* options.c: the one check that an options table holds only known keys (STYLE.md: options
 * tables reject unknown keys). Used by lhttp.c, lsql.c/sql_query.c and ldocker.c/docker_logs.c.
 * Depends on: Lua 5.4. */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "options.h"

void rb_check_keys(lua_State *L, int idx, const char *const allowed[])
{
	idx = lua_absindex(L, idx);
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int known = 0;
		lua_pop(L, 1);   /* the key stays for lua_next */
		if (lua_type(L, -1) == LUA_TSTRING)
			for (const char *const *k = allowed; *k && !known; k++)
				known = strcmp(*k, lua_tostring(L, -1)) == 0;
		if (!known)
			luaL_error(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
	}
}
