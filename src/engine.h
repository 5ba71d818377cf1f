/* engine.h: the only owner of the lua_State. main.c hands it argv; it returns the exit code. */
#ifndef RUNBOOK_ENGINE_H
#define RUNBOOK_ENGINE_H

/* Exit codes, documented in --help and the README. */
enum {
	RB_EXIT_OK = 0,        /* ran, found nothing wrong */
	RB_EXIT_PROBLEM = 1,   /* ran, found a problem (or would fix one) */
	RB_EXIT_USAGE = 2,     /* usage, runbook or inventory error: nothing ran */
	RB_EXIT_RUNTIME = 3    /* runtime failure: deadline, unhandled primitive error */
};

int engine_main(int argc, char **argv);

#endif
