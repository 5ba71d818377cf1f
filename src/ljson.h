/* ljson.h: what runbook.json shares with the other C modules: the null sentinel (also yaml.null
 * and sql.NULL), the array metatable and the decoder that lives in json_decode.c. */
#ifndef RUNBOOK_LJSON_H
#define RUNBOOK_LJSON_H
#include <lua.h>

#define JSON_MAX_DEPTH 100        /* keep the "100" in error messages in step */
#define ARRAY_MT_KEY "runbook.json.array_mt"

/* Pushes the null sentinel (json.null == yaml.null), creating it once per lua_State. */
void rb_push_null(lua_State *L);

/* Pushes json.array_mt (registry "runbook.json.array_mt"), creating it once per lua_State. */
void rb_json_push_array_mt(lua_State *L);

/* json.decode(text) -> value | nil, message, "protocol" */
int json_decode(lua_State *L);

#endif
