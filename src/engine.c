/* engine.c: the only owner of the lua_State.
 *
 * It finds the Lua library (lua/runbook/ modules) next to the binary (a build tree) or in the
 * installed share directory, opens the standard libraries, registers every built-in C module
 * (build/modules.c) in package.preload, removes the searchers that load C code from disk, and
 * runs runbook.cli's main(argv) under lua_pcall with a traceback. All policy is Lua.
 * The state is created with engine_alloc, a counting allocator with a memory limit (set by
 * runbook.core.set_memory_limit), and with the run deadline's hook installed before any
 * coroutine exists, so that every thread inherits it (not for `runbook lua`, which is trusted).
 * Depends on: modules.h (generated table), lcore.c (deadline), Lua 5.4. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "engine.h"
#include "modules.h"
#include "rbaux.h"

/* Allocations of at least this size, and every this many bytes in total, look at the clock. */
#define ALLOC_BIG   (64u * 1024)
#define ALLOC_CHECK (1024u * 1024)

void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct rb_alloc *a = ud;
	void *p;

	if (ptr == NULL)
		osize = 0;   /* then osize only tells the type of object */
	if (nsize == 0) {
		free(ptr);
		a->used -= osize;
		return NULL;
	}
	if (nsize > osize) {
		size_t grow = nsize - osize;
		if (a->limit && (a->used + grow < a->used || a->used + grow > a->limit))
			return NULL;   /* Lua collects garbage, retries, then raises "not enough memory" */
		a->since_check += grow;
		if ((grow >= ALLOC_BIG || a->since_check >= ALLOC_CHECK)) {
			a->since_check = 0;
			if (rb_run_deadline_passed())
				return NULL;
		}
	}
	p = realloc(ptr, nsize);
	if (p == NULL)
		return nsize <= osize ? ptr : NULL;   /* a shrink must not fail: keep the block */
	a->used = a->used - osize + nsize;
	if (a->used > a->peak)
		a->peak = a->used;
	return p;
}

static int panic(lua_State *L)
{
	const char *msg = lua_tostring(L, -1);
	fprintf(stderr, "runbook: unprotected error: %s\n", msg ? msg : "(no message)");
	return 0;   /* then abort() */
}

static int file_exists(const char *dir, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	if (snprintf(p, sizeof p, "%s/%s", dir, rel) >= (int)sizeof p)
		return 0;
	return stat(p, &st) == 0;
}

/* The directory that holds lua/ and runbooks/: $RUNBOOK_HOME, the binary's directory or its
 * parent (build trees), <bindir>/../share/runbook (an installed, relocatable tree), else the
 * compiled-in share directory. */
static void find_root(char *root, size_t n)
{
	const char *env = getenv("RUNBOOK_HOME");
	char exe[PATH_MAX];
	ssize_t len;

	if (env && *env) {
		snprintf(root, n, "%s", env);
		return;
	}
	len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (len > 0) {
		char *slash;
		exe[len] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			if (file_exists(exe, "lua/runbook/cli.lua")) {
				snprintf(root, n, "%s", exe);
				return;
			}
			slash = strrchr(exe, '/');
			if (slash) {
				*slash = '\0';
				if (file_exists(exe, "lua/runbook/cli.lua")) {
					snprintf(root, n, "%s", exe);
					return;
				}
				if (file_exists(exe, "share/runbook/lua/runbook/cli.lua")
				    && snprintf(root, n, "%s/share/runbook", exe) < (int)n)
					return;
			}
		}
	}
	snprintf(root, n, "%s", RUNBOOK_SHAREDIR);
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

int luaopen_runbook_pattern(lua_State *L);
static const char *const pattern_funcs[] = {"find", "match", "gmatch", "gsub", NULL};

/* Runs in protected mode: sets up package, then calls require("runbook.cli").main(argv). */
static int pmain(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = (char **)lua_touserdata(L, 2);
	const char *root = lua_tostring(L, 3);
	const struct rb_module *m;
	const char *test = getenv("RUNBOOK_TEST");

	luaL_openlibs(L);
	/* Pattern matching bounded by the run deadline (lpattern.c), for every string, also
	 * through string methods, which look into this same table. */
	luaL_requiref(L, "runbook.pattern", luaopen_runbook_pattern, 0);
	lua_getglobal(L, "string");
	for (const char *const *f = pattern_funcs; *f; f++) {
		lua_getfield(L, -2, *f);
		lua_setfield(L, -2, *f);
	}
	lua_pop(L, 2);

	lua_getglobal(L, "package");
	/* Lua modules from our tree only; no C modules from disk, ever. */
	if (test && strcmp(test, "1") == 0)
		lua_pushfstring(L, "%s/lua/?.lua;%s/tests/lib/?.lua", root, root);
	else
		lua_pushfstring(L, "%s/lua/?.lua", root);
	lua_setfield(L, -2, "path");
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_getfield(L, -1, "searchers");
	lua_pushnil(L);
	lua_rawseti(L, -2, 4);   /* all-in-one C loader */
	lua_pushnil(L);
	lua_rawseti(L, -2, 3);   /* C loader */
	lua_pop(L, 1);
	lua_getfield(L, -1, "preload");
	for (m = rb_modules; m->name; m++) {
		lua_pushcfunction(L, m->open);
		lua_setfield(L, -2, m->name);
	}
	lua_pop(L, 2);

	/* Facts the Lua side needs about this binary. */
	lua_newtable(L);
	lua_pushstring(L, root);
	lua_setfield(L, -2, "root");
	lua_pushliteral(L, RUNBOOK_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushliteral(L, RUNBOOK_SHAREDIR);
	lua_setfield(L, -2, "sharedir");
	lua_setfield(L, LUA_REGISTRYINDEX, "runbook.build");

	lua_getglobal(L, "require");
	lua_pushliteral(L, "runbook.cli");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "main");
	lua_createtable(L, argc, 0);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_call(L, 1, 1);
	return 1;
}

int engine_main(int argc, char **argv)
{
	static struct rb_alloc mem;   /* no limit until the command line sets one */
	char root[PATH_MAX];
	lua_State *L;
	int status, code;

	signal(SIGPIPE, SIG_IGN);   /* a closed peer is an error return, not a death */
	find_root(root, sizeof root);
	L = lua_newstate(engine_alloc, &mem);
	if (L == NULL) {
		fprintf(stderr, "runbook: cannot create Lua state: out of memory\n");
		return RB_EXIT_RUNTIME;
	}
	lua_atpanic(L, panic);
	/* `runbook lua` runs trusted scripts (tests, benchmarks): a hook makes the VM trace every
	 * instruction (about 2x slower loops), so they get it only when they arm a deadline. */
	if (!(argc > 1 && strcmp(argv[1], "lua") == 0))
		core_install_deadline_hook(L);
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, pmain);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	lua_pushstring(L, root);
	status = lua_pcall(L, 3, 1, 1);
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "runbook: internal error: %s\n", msg ? msg : "(no message)");
		code = RB_EXIT_RUNTIME;
	} else {
		code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : RB_EXIT_RUNTIME;
	}
	fflush(stdout);
	lua_close(L);
	return code;
}
