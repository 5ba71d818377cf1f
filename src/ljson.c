/* ljson.c: runbook.json, JSON for the engine (audit journal, trace, HTTP bodies, docker API).
 *
 *   json.encode(value [, {pretty=false, sort_keys=true}]) -> string      (raises on misuse)
 *   json.decode(text) -> value | nil, message, "protocol"               (src/json_decode.c)
 *   json.null       unique sentinel for JSON null (the same object as yaml.null and sql.NULL)
 *   json.array_mt   metatable marking a table as a JSON array (decoded arrays carry it)
 *
 * Encoding writes into a growable buffer owned by a userdata, so a raise in the middle frees it
 * through __gc; cJSON's printer is not used because it cannot carry NUL bytes, 64-bit integers
 * or our invalid-UTF-8 policy. Tables whose keys are exactly 1..n (n >= 1) are arrays, others
 * objects ({} unless marked with json.array_mt); keys must be strings or integers; object keys
 * are sorted bytewise by default. Integers print exactly; floats print in the shortest form
 * that reads back to the same double, keeping a ".0" when integral; inf and NaN raise. Each byte
 * that does not start a valid UTF-8 sequence (overlong forms, surrogates and code points above
 * U+10FFFF included) is replaced by U+FFFD, written as its UTF-8 bytes, so
 * encode(decode(encode(x))) == encode(x); control characters and DEL are escaped as \u00XX
 * (or \n \t ...). Nesting deeper than 100 and cycles raise, naming the path ($.a[2].b).
 * Depends on: Lua 5.4, ljson.h (json_decode.c is the cJSON side). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "ljson.h"
#include "rbaux.h"

#define NULL_KEY "runbook.null"

/* ------------------------------------------------------------------ shared sentinels */

static int null_tostring(lua_State *L)
{
	lua_pushliteral(L, "null");
	return 1;
}

/* Pushes the null sentinel: one full userdata per state, shared with runbook.yaml. */
void rb_push_null(lua_State *L)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY) != LUA_TNIL)
		return;
	lua_pop(L, 1);
	lua_newuserdatauv(L, 0, 0);
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "null");
	lua_setfield(L, -2, "__name");
	lua_pushcfunction(L, null_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");   /* nobody replaces it */
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
}

/* Pushes json.array_mt, creating it once per state. */
void rb_json_push_array_mt(lua_State *L)
{
	if (luaL_newmetatable(L, ARRAY_MT_KEY)) {
		lua_pushliteral(L, "json.array");
		lua_setfield(L, -2, "__name");
	}
}

/* ------------------------------------------------------------------ output buffer */

/* The output is an rb_buf boxed in a userdata (rb_buf_box), so a raise cannot leak it. */
static void jbuf_add(lua_State *L, struct rb_buf *b, const char *s, size_t n)
{
	if (b->cap - b->n > n) {          /* the common case, without a call (b->max is 0) */
		memcpy(b->p + b->n, s, n);
		b->n += n;
		b->p[b->n] = '\0';
	} else if (rb_buf_add(b, s, n) != 0) {
		luaL_error(L, "json.encode: out of memory");
	}
}

#define jbuf_lit(L, b, s) jbuf_add((L), (b), "" s, sizeof(s) - 1)

/* ------------------------------------------------------------------ encoder */

struct path_elem {
	const char *key;       /* NULL: array index */
	size_t keylen;
	lua_Integer index;
};

struct encoder {
	lua_State *L;
	struct rb_buf *b;
	int pretty, sort_keys;
	int visiting;          /* stack index of the set of tables being encoded (cycle check) */
	int depth;
	struct path_elem path[JSON_MAX_DEPTH + 2];
};

/* Raises "json.encode: <what> at $.a[2].b" with the path of the value being encoded. */
static void encode_error(struct encoder *e, const char *what)
{
	char where[256];
	size_t n = 0;
	where[n++] = '$';
	for (int i = 1; i <= e->depth && n < sizeof where - 1; i++) {
		if (i == 12 && e->depth > 16) {      /* deep paths: keep the head and the tail */
			n += (size_t)snprintf(where + n, sizeof where - n, "...");
			i = e->depth - 3;
		}
		const struct path_elem *p = &e->path[i];
		int w;
		if (p->key)
			w = snprintf(where + n, sizeof where - n, ".%.*s", (int)(p->keylen > 40 ? 40 : p->keylen), p->key);
		else
			w = snprintf(where + n, sizeof where - n, "[%lld]", (long long)p->index);
		if (w < 0 || (size_t)w >= sizeof where - n) {
			n = sizeof where - 1;
			break;
		}
		n += (size_t)w;
	}
	where[n] = '\0';
	luaL_error(e->L, "json.encode: %s at %s", what, where);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the byte there starts none. */
size_t rb_utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && s[1] < 0xA0)
			return 0;     /* overlong */
		if (c == 0xED && s[1] >= 0xA0)
			return 0;     /* UTF-16 surrogate */
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
			return 0;
		if (c == 0xF0 && s[1] < 0x90)
			return 0;     /* overlong */
		if (c == 0xF4 && s[1] >= 0x90)
			return 0;     /* above U+10FFFF */
		return 4;
	}
	return 0;
}

int rb_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, step;
	while (i < n && (step = rb_utf8_seq_len(s + i, n - i)))
		i += step;
	return i == n;
}

void rb_push_utf8_clean(lua_State *L, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0, step; i < n; i += step) {
		step = rb_utf8_seq_len(s + i, n - i);
		if (step) {
			luaL_addlstring(&b, str + i, step);
		} else {
			luaL_addlstring(&b, "\xEF\xBF\xBD", 3);
			step = 1;
		}
	}
	luaL_pushresult(&b);
}

static void encode_string(struct encoder *e, const char *str, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;    /* run: start of the pending verbatim span */
	jbuf_lit(e->L, e->b, "\"");
	while (i < len) {
		unsigned char c = s[i];
		const char *esc = NULL;
		char ubuf[6];
		size_t step = 1;
		if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			step = rb_utf8_seq_len(s + i, len - i);
			if (step) {
				i += step;
				continue;
			}
			step = 1;
			esc = "\xEF\xBF\xBD";   /* U+FFFD, raw: re-encoding decoded output is stable */
		} else if (c == '"') {
			esc = "\\\"";
		} else if (c == '\\') {
			esc = "\\\\";
		} else if (c == '\n') {
			esc = "\\n";
		} else if (c == '\r') {
			esc = "\\r";
		} else if (c == '\t') {
			esc = "\\t";
		} else if (c == '\b') {
			esc = "\\b";
		} else if (c == '\f') {
			esc = "\\f";
		} else {              /* other control characters and DEL */
			memcpy(ubuf, "\\u00", 4);
			ubuf[4] = hex[c >> 4];
			ubuf[5] = hex[c & 15];
		}
		jbuf_add(e->L, e->b, str + run, i - run);
		if (esc)
			jbuf_add(e->L, e->b, esc, strlen(esc));
		else
			jbuf_add(e->L, e->b, ubuf, 6);
		i += step;
		run = i;
	}
	jbuf_add(e->L, e->b, str + run, i - run);
	jbuf_lit(e->L, e->b, "\"");
}

static void encode_number(struct encoder *e, int idx)
{
	char buf[64];
	int n;
	if (lua_isinteger(e->L, idx)) {
		n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
	} else {
		double d = lua_tonumber(e->L, idx);
		if (isnan(d) || isinf(d))
			encode_error(e, isnan(d) ? "cannot encode NaN" : "cannot encode infinity");
		/* shortest of %.15g..%.17g that reads back to the same double */
		for (int prec = 15; prec <= 17; prec++) {
			n = snprintf(buf, sizeof buf, "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
		int plain = 1;
		for (int i = 0; i < n; i++) {
			if (buf[i] == ',')
				buf[i] = '.';     /* a non-C LC_NUMERIC must not leak into JSON */
			if (buf[i] == '.' || buf[i] == 'e' || buf[i] == ',')
				plain = 0;
		}
		if (plain && n + 2 < (int)sizeof buf) {   /* keep floats floats: 2.0, not 2 */
			buf[n++] = '.';
			buf[n++] = '0';
			buf[n] = '\0';
		}
	}
	jbuf_add(e->L, e->b, buf, (size_t)n);
}

static void encode_newline(struct encoder *e)
{
	if (!e->pretty)
		return;
	jbuf_lit(e->L, e->b, "\n");
	for (int i = 0; i < e->depth; i++)
		jbuf_lit(e->L, e->b, "  ");
}

struct sort_entry {
	const char *s;         /* a string key's bytes, or NULL: the text is num[] */
	size_t len;
	int slot;              /* index into the keys table */
	char num[24];          /* decimal form of an integer key */
};

static int sort_entry_cmp(const void *a, const void *b)
{
	const struct sort_entry *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s ? x->s : x->num, y->s ? y->s : y->num, n);
	if (c)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

static void encode_value(struct encoder *e, int idx);

/* Table at the top of the stack: classify it as array (returns n >= 0) or object (-1). */
static lua_Integer table_array_length(struct encoder *e, int t, int marked_array)
{
	lua_State *L = e->L;
	lua_Integer count = 0, max = 0;
	int object = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
			lua_Integer k = lua_tointeger(L, -1);
			if (k > max)
				max = k;
		} else if (lua_type(L, -1) == LUA_TSTRING || lua_isinteger(L, -1)) {
			object = 1;
		} else {
			char what[80];
			snprintf(what, sizeof what, "table key of type %s (keys must be strings or integers)",
			         luaL_typename(L, -1));
			lua_pop(L, 1);
			encode_error(e, what);
		}
		count++;
	}
	if (!object && count == max && (count > 0 || marked_array))
		return count;
	if (marked_array)
		encode_error(e, "table marked with json.array_mt has keys other than 1..n");
	return -1;
}

static void encode_array(struct encoder *e, int t, lua_Integer n)
{
	jbuf_lit(e->L, e->b, "[");
	for (lua_Integer i = 1; i <= n; i++) {
		if (i > 1)
			jbuf_lit(e->L, e->b, ",");
		e->path[e->depth].key = NULL;
		e->path[e->depth].index = i;
		encode_newline(e);
		lua_rawgeti(e->L, t, i);
		encode_value(e, lua_gettop(e->L));
		lua_pop(e->L, 1);
	}
	e->depth--;
	if (n > 0)
		encode_newline(e);
	e->depth++;
	jbuf_lit(e->L, e->b, "]");
}

static void encode_member(struct encoder *e, const char *k, size_t klen, int first)
{
	if (!first)
		jbuf_lit(e->L, e->b, ",");
	e->path[e->depth].key = k;
	e->path[e->depth].keylen = klen;
	encode_newline(e);
	encode_string(e, k, klen);
	if (e->pretty)
		jbuf_lit(e->L, e->b, ": ");
	else
		jbuf_lit(e->L, e->b, ":");
}

/* Object keys as JSON strings: a string key itself, an integer key in decimal. */
static const char *key_text(lua_State *L, int idx, char num[24], size_t *len)
{
	if (lua_type(L, idx) == LUA_TSTRING)
		return lua_tolstring(L, idx, len);
	*len = (size_t)snprintf(num, 24, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
	return num;
}

static void encode_object(struct encoder *e, int t)
{
	lua_State *L = e->L;
	int first = 1;
	jbuf_lit(L, e->b, "{");
	if (!e->sort_keys) {
		lua_pushnil(L);
		while (lua_next(L, t)) {
			char num[24];
			size_t klen;
			const char *k = key_text(L, -2, num, &klen);
			encode_member(e, k, klen, first);
			first = 0;
			encode_value(e, lua_gettop(L));
			lua_pop(L, 1);
		}
	} else {
		int n = 0;
		lua_newtable(L);                     /* keys, anchored while their text is used */
		int keys = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, t)) {
			lua_pop(L, 1);
			lua_pushvalue(L, -1);
			lua_rawseti(L, keys, ++n);
		}
		struct sort_entry *v = lua_newuserdatauv(L, sizeof *v * (size_t)(n ? n : 1), 0);
		for (int i = 0; i < n; i++) {
			lua_rawgeti(L, keys, i + 1);
			v[i].s = key_text(L, -1, v[i].num, &v[i].len);
			if (v[i].s == v[i].num)
				v[i].s = NULL;           /* qsort moves entries: refer to num[] by flag */
			v[i].slot = i + 1;
			if (v[i].s && !rb_utf8_valid(v[i].s, v[i].len)) {
				/* sorted and compared as written (U+FFFD): the output stays sorted */
				rb_push_utf8_clean(L, v[i].s, v[i].len);
				v[i].s = lua_tolstring(L, -1, &v[i].len);
				lua_rawseti(L, keys, n + i + 1);   /* anchored beside the real keys */
			}
			lua_pop(L, 1);               /* a string key stays alive in keys */
		}
		qsort(v, (size_t)n, sizeof *v, sort_entry_cmp);
		for (int i = 0; i < n; i++) {
			if (i > 0 && sort_entry_cmp(&v[i - 1], &v[i]) == 0)
				encode_error(e, "duplicate object key (the same text once written: an integer and a string key, or strings that differ only in invalid UTF-8)");
			encode_member(e, v[i].s ? v[i].s : v[i].num, v[i].len, first);
			first = 0;
			lua_rawgeti(L, keys, v[i].slot);
			lua_rawget(L, t);
			encode_value(e, lua_gettop(L));
			lua_pop(L, 1);
		}
		lua_pop(L, 2);
	}
	e->depth--;
	if (!first)
		encode_newline(e);
	e->depth++;
	jbuf_lit(L, e->b, "}");
}

static void encode_table(struct encoder *e, int t)
{
	lua_State *L = e->L;
	if (e->depth >= JSON_MAX_DEPTH)
		encode_error(e, "nesting deeper than " "100");
	luaL_checkstack(L, 8, "json.encode");
	lua_pushvalue(L, t);
	if (lua_rawget(L, e->visiting) != LUA_TNIL)
		encode_error(e, "cycle detected (table contains itself)");
	lua_pop(L, 1);
	lua_pushvalue(L, t);
	lua_pushboolean(L, 1);
	lua_rawset(L, e->visiting);

	int marked_array = 0;
	if (lua_getmetatable(L, t)) {
		luaL_getmetatable(L, ARRAY_MT_KEY);
		marked_array = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	lua_Integer n = table_array_length(e, t, marked_array);
	e->depth++;
	if (n >= 0)
		encode_array(e, t, n);
	else
		encode_object(e, t);
	e->depth--;

	lua_pushvalue(L, t);
	lua_pushnil(L);
	lua_rawset(L, e->visiting);
}

static void encode_value(struct encoder *e, int idx)
{
	lua_State *L = e->L;
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		jbuf_lit(L, e->b, "null");
		break;
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			jbuf_lit(L, e->b, "true");
		else
			jbuf_lit(L, e->b, "false");
		break;
	case LUA_TNUMBER:
		encode_number(e, idx);
		break;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		encode_string(e, s, len);
		break;
	}
	case LUA_TTABLE:
		encode_table(e, idx);
		break;
	case LUA_TUSERDATA:
		rb_push_null(L);
		if (lua_rawequal(L, -1, idx)) {
			lua_pop(L, 1);
			jbuf_lit(L, e->b, "null");
			break;
		}
		lua_pop(L, 1);
		/* fall through */
	default: {
		char what[64];
		snprintf(what, sizeof what, "cannot encode a value of type %s", luaL_typename(L, idx));
		encode_error(e, what);
	}
	}
}

static const char *const encode_keys[] = { "pretty", "sort_keys", NULL };

/* Reads {pretty=, sort_keys=} at index idx over the defaults in e; unknown keys and wrong types
 * raise. */
static void encode_options(lua_State *L, int idx, struct encoder *e)
{
	if (!lua_isnoneornil(L, idx))
		luaL_checktype(L, idx, LUA_TTABLE);
	rb_check_keys(L, idx, encode_keys, "json.encode");
	e->pretty = rb_opt_bool(L, idx, "pretty", e->pretty);
	e->sort_keys = rb_opt_bool(L, idx, "sort_keys", e->sort_keys);
}

/* json.encode(value [, opts]) -> string */
static int json_encode(lua_State *L)
{
	struct encoder e;
	luaL_checkany(L, 1);
	e.L = L;
	e.pretty = 0;
	e.sort_keys = 1;
	e.depth = 0;
	encode_options(L, 2, &e);
	lua_settop(L, 1);
	lua_newtable(L);
	e.visiting = lua_gettop(L);
	e.b = rb_buf_box(L);
	encode_value(&e, 1);
	lua_pushlstring(L, e.b->p ? e.b->p : "", e.b->n);
	rb_buf_free(e.b);
	return 1;
}

static const luaL_Reg json_funcs[] = {
	{ "encode", json_encode },
	{ "decode", json_decode },
	{ NULL, NULL }
};

int luaopen_runbook_json(lua_State *L)
{
	luaL_newlib(L, json_funcs);
	rb_push_null(L);
	lua_setfield(L, -2, "null");
	rb_json_push_array_mt(L);
	lua_setfield(L, -2, "array_mt");
	return 1;
}
