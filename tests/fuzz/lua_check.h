/* lua_check.h: the Lua side the Lua-driven harnesses share (fz_json.c, fz_yaml.c, fz_smtp.c,
 * fz_dns.c): one Lua state with the standard libraries and the project module under test, a
 * check function built by the harness's Lua chunk, and the call of that check on each input.
 *
 *   fz_lua_setup(src, name, openf, port)  once: loads the chunk src and calls it with the module
 *                                         (opened as package.loaded[name] by openf) and, when
 *                                         port >= 0, the loopback peer's port; keeps the function
 *                                         the chunk returns
 *   fz_lua_check(harness)                 calls that function with the value on top of the stack
 *                                         (pushed by the harness); a raise is a finding: the
 *                                         message goes to stderr as `HARNESS: MESSAGE` and the
 *                                         harness aborts, so libFuzzer keeps the input
 * Depends on: Lua 5.4. */
#ifndef FUZZ_LUA_CHECK_H
#define FUZZ_LUA_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static lua_State *fz_L;
static int fz_check_ref;

static void fz_lua_setup(const char *src, const char *name, lua_CFunction openf, int port)
{
	int nargs = 1;
	fz_L = luaL_newstate();
	if (!fz_L)
		abort();
	luaL_openlibs(fz_L);
	if (luaL_loadstring(fz_L, src) != LUA_OK)
		abort();
	luaL_requiref(fz_L, name, openf, 0);
	if (port >= 0)
		lua_pushinteger(fz_L, port), nargs++;
	if (lua_pcall(fz_L, nargs, 1, 0) != LUA_OK)
		abort();
	fz_check_ref = luaL_ref(fz_L, LUA_REGISTRYINDEX);
}

static void fz_lua_check(const char *harness)
{
	static unsigned runs;
	lua_rawgeti(fz_L, LUA_REGISTRYINDEX, fz_check_ref);
	lua_insert(fz_L, -2);
	if (lua_pcall(fz_L, 1, 0, 0) != LUA_OK) {
		const char *msg = lua_tostring(fz_L, -1);
		fprintf(stderr, "%s: %s\n", harness, msg ? msg : "(error object)");
		abort();
	}
	if (++runs % 256 == 0)
		lua_gc(fz_L, LUA_GCCOLLECT);
}

#endif
