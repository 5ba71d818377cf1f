/* ljson.h: what runbook.json shares with the other C modules: the null sentinel (also yaml.null
 * and sql.NULL), the array metatable and the decoder that lives in json_decode.c. */
#ifndef RUNBOOK_LJSON_H
#define RUNBOOK_LJSON_H
#include <stddef.h>
#include <lua.h>

#define JSON_MAX_DEPTH 100        /* keep the "100" in error messages in step */
#define ARRAY_MT_KEY "runbook.json.array_mt"

/* Pushes the null sentinel (json.null == yaml.null), creating it once per lua_State. */
void rb_push_null(lua_State *L);

/* Pushes json.array_mt (registry "runbook.json.array_mt"), creating it once per lua_State. */
void rb_json_push_array_mt(lua_State *L);

/* Length of the valid UTF-8 sequence at s (1..4, n bytes available), 0 when none starts there. */
size_t rb_utf8_seq_len(const unsigned char *s, size_t n);

/* 1 when s[0..n) is valid UTF-8. */
int rb_utf8_valid(const char *s, size_t n);

/* Pushes s[0..n) with every byte that starts no valid UTF-8 sequence replaced by U+FFFD. */
void rb_push_utf8_clean(lua_State *L, const char *s, size_t n);

/* json.decode(text) -> value | nil, message, "protocol" */
int json_decode(lua_State *L);

#endif
