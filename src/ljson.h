/* ljson.h: what runbook.json shares with the other C modules (runbook.yaml uses the same null). */
#ifndef RUNBOOK_LJSON_H
#define RUNBOOK_LJSON_H
#include <lua.h>

/* Pushes the null sentinel (json.null == yaml.null), creating it once per lua_State. */
void rb_push_null(lua_State *L);

#endif
