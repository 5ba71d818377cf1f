/* engine.h: the only owner of the lua_State. main.c hands it argv; it returns the exit code. */
#ifndef RUNBOOK_ENGINE_H
#define RUNBOOK_ENGINE_H

#include <stddef.h>

#include <lua.h>

/* Exit codes, documented in --help and the README. */
enum {
	RB_EXIT_OK = 0,        /* ran, found nothing wrong */
	RB_EXIT_PROBLEM = 1,   /* ran, found a problem (or would fix one) */
	RB_EXIT_USAGE = 2,     /* usage, runbook or inventory error: nothing ran */
	RB_EXIT_RUNTIME = 3    /* runtime failure: deadline, unhandled primitive error */
};

int engine_main(int argc, char **argv);

/* The engine's lua_Alloc (engine.c): counts what the Lua state holds and refuses growth past
 * `limit` (0 = no limit), and refuses large allocations once the run deadline has passed, so
 * that a C library call that allocates (string.rep, table.concat) cannot outrun the deadline. */
struct rb_alloc {
	size_t used, limit, peak, since_check;
};
void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* The run deadline hook (lcore.c) every thread inherits; the deadline itself is rbaux.h's. */
void core_install_deadline_hook(lua_State *L);

#endif
