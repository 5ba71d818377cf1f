/* options.h: checking options tables, shared by the C primitive families. */
#ifndef RUNBOOK_OPTIONS_H
#define RUNBOOK_OPTIONS_H
#include <lua.h>

/* Raises unless the table at idx holds only string keys listed in `allowed` (NULL-ended):
 * a typo such as {timout = 5} must be an error, never a silent default. */
void rb_check_keys(lua_State *L, int idx, const char *const allowed[]);

#endif
