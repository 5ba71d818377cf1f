/* lyaml.c: runbook.yaml, a strict YAML loader for the inventory (plain Lua tables plus marks).
 *
 *   yaml.load(text [, chunkname]) -> document | nil, "chunk:line:col: problem (context)", "protocol"
 *   yaml.mark(tbl [, key]) -> line, column [, key_line, key_column] | nil
 *   yaml.null   the null sentinel (the same object as json.null)
 *
 * Mappings become tables with string keys (keys are never converted), sequences become arrays.
 * Plain (unquoted, untagged) scalars are converted: true/false/yes/no/on/off (lower, Capitalised,
 * UPPER) to booleans; null/Null/NULL/~/empty to null; [-+]?(0|[1-9][0-9]*) and 0x../0o.. to
 * integers (decimal overflow becomes a float); YAML 1.2 floats and .inf/.nan to floats. Numbers
 * with leading zeros (0755) stay strings. Anything quoted or block-styled stays a string.
 * Null: a mapping key whose value is null is left out of the table (its mark is kept, so
 * yaml.mark tells it was written); a null sequence item is yaml.null, so arrays have no holes.
 * Marks are 1-based and live in weak-keyed registry tables, never in the user's tables:
 * yaml.mark(t, k) gives where t[k]'s value starts (and for mappings where key k is written),
 * yaml.mark(t) where t itself starts. The empty stream loads as yaml.null.
 * Refused: anchors and aliases, duplicate keys, non-scalar keys, tags other than the standard
 * !!str !!int !!float !!bool !!null !!map !!seq, more than one document, nesting deeper than 64,
 * input larger than 1 MiB.
 * The libyaml parser and its current event live in a userdata whose __gc frees them, so a Lua
 * error (out of memory) cannot leak them; operational errors free them and return.
 * Depends on: Lua 5.4, libyaml (yaml-0.1), ljson.h for the shared null. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <yaml.h>

#include "ljson.h"
#include "rbaux.h"

#define YAML_MAX_DEPTH 64
#define YAML_MAX_INPUT (1024 * 1024)
#define MARKS_KEY "runbook.yaml.marks"        /* table -> {key -> packed value mark, [0] = self} */
#define KEYMARKS_KEY "runbook.yaml.keymarks"  /* mapping -> {key -> packed key mark} */
#define TAG_PREFIX "tag:yaml.org,2002:"

struct loader {
	yaml_parser_t parser;
	yaml_event_t event;
	int parser_live, event_live;
	lua_State *L;
	const char *chunk;
	const char *text;
	size_t len;
	int marks, keymarks, null;   /* stack indexes */
	char err[400];
};

static void loader_free(struct loader *ld)
{
	if (ld->event_live) {
		yaml_event_delete(&ld->event);
		ld->event_live = 0;
	}
	if (ld->parser_live) {
		yaml_parser_delete(&ld->parser);
		ld->parser_live = 0;
	}
}

static int loader_gc(lua_State *L)
{
	loader_free(lua_touserdata(L, 1));
	return 0;
}

static lua_Integer pack_mark(yaml_mark_t m)
{
	return ((lua_Integer)(m.line + 1) << 24) | (lua_Integer)(m.column + 1);
}

/* Sets ld->err to "chunk:line:col: message" for a 0-based libyaml mark; returns -1. */
static int fail_at(struct loader *ld, yaml_mark_t m, const char *fmt, ...)
{
	int n = snprintf(ld->err, sizeof ld->err, "%s:%zu:%zu: ", ld->chunk, m.line + 1, m.column + 1);
	if (n < 0 || (size_t)n >= sizeof ld->err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, sizeof ld->err - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Line and column of byte offset off (reader errors only report an offset). */
static yaml_mark_t offset_mark(const struct loader *ld, size_t off)
{
	yaml_mark_t m = { off, 0, 0 };
	size_t bol = 0;
	for (size_t i = 0; i < off && i < ld->len; i++)
		if (ld->text[i] == '\n') {
			m.line++;
			bol = i + 1;
		}
	m.column = off - bol;
	return m;
}

/* Replaces the current event by the next one; -1 with ld->err on a libyaml error. */
static int next_event(struct loader *ld)
{
	if (ld->event_live) {
		yaml_event_delete(&ld->event);
		ld->event_live = 0;
	}
	if (yaml_parser_parse(&ld->parser, &ld->event)) {
		ld->event_live = 1;
		return 0;
	}
	const yaml_parser_t *p = &ld->parser;
	const char *problem = p->problem ? p->problem : "unknown error";
	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return fail_at(ld, p->mark, "out of memory");
	case YAML_READER_ERROR:
		if (p->problem_value != -1)
			return fail_at(ld, offset_mark(ld, p->problem_offset), "%s (byte 0x%02x)", problem,
			               (unsigned)p->problem_value & 0xFF);
		return fail_at(ld, offset_mark(ld, p->problem_offset), "%s", problem);
	default:
		if (p->context)
			return fail_at(ld, p->problem_mark, "%s (%s at line %zu column %zu)", problem, p->context,
			               p->context_mark.line + 1, p->context_mark.column + 1);
		return fail_at(ld, p->problem_mark, "%s", problem);
	}
}

static int is_one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

static const char *const null_words[] = { "", "~", "null", "Null", "NULL", NULL };
static const char *const true_words[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL };
static const char *const false_words[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL };

/* Pushes the integer s denotes ([-+]?(0|[1-9][0-9]*), 0x.., 0o..); 0 when it is none. */
static int push_int(lua_State *L, const char *s, size_t n)
{
	size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
	if (n - i > 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o')) {
		int base = s[i + 1] == 'x' ? 16 : 8;
		const char *digits = base == 16 ? "0123456789abcdefABCDEF" : "01234567";
		if (strspn(s + i + 2, digits) != n - i - 2)
			return 0;
		errno = 0;
		unsigned long long v = strtoull(s + i + 2, NULL, base);
		if (errno || v > (unsigned long long)LUA_MAXINTEGER)
			return 0;
		lua_pushinteger(L, s[0] == '-' ? -(lua_Integer)v : (lua_Integer)v);
		return 1;
	}
	if (i == n || strspn(s + i, "0123456789") != n - i || (s[i] == '0' && n - i > 1))
		return 0;
	return lua_stringtonumber(L, s) != 0;   /* an overflowing decimal becomes a float */
}

/* Pushes the float s denotes (YAML 1.2 core: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
 * or [-+]?.inf, .nan); 0 when it is none. */
static int push_float(lua_State *L, const char *s, size_t n)
{
	size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0, d;
	static const char *const inf[] = { ".inf", ".Inf", ".INF", NULL };
	static const char *const nan[] = { ".nan", ".NaN", ".NAN", NULL };
	if (is_one_of(s + i, inf)) {
		lua_pushnumber(L, s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
		return 1;
	}
	if (i == 0 && is_one_of(s, nan)) {
		lua_pushnumber(L, (lua_Number)NAN);
		return 1;
	}
	size_t intdigits = strspn(s + i, "0123456789");
	if (intdigits > 1 && s[i] == '0')
		return 0;                             /* 0755.5: a string, like 0755 */
	d = i + intdigits;
	size_t fracdigits = 0;
	if (s[d] == '.') {
		fracdigits = strspn(s + d + 1, "0123456789");
		d += 1 + fracdigits;
	}
	if (intdigits == 0 && fracdigits == 0)
		return 0;
	if (s[d] == 'e' || s[d] == 'E') {
		size_t e = d + 1;
		if (s[e] == '+' || s[e] == '-')
			e++;
		size_t expdigits = strspn(s + e, "0123456789");
		if (expdigits == 0)
			return 0;
		d = e + expdigits;
	}
	if (d != n)
		return 0;
	lua_pushnumber(L, strtod(s, NULL));
	return 1;
}

/* Pushes the value of the current scalar event (resolution rules in the header comment). */
static int load_scalar(struct loader *ld)
{
	lua_State *L = ld->L;
	const yaml_event_t *ev = &ld->event;
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	const char *kind = NULL;                  /* NULL: plain resolution; "str", "int", ... */
	if (tag && strcmp(tag, "!") != 0) {
		if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) != 0)
			return fail_at(ld, ev->start_mark, "unsupported tag '%s'", tag);
		kind = tag + strlen(TAG_PREFIX);
		static const char *const scalar_kinds[] = { "str", "int", "float", "bool", "null", NULL };
		if (!is_one_of(kind, scalar_kinds))
			return fail_at(ld, ev->start_mark, "unsupported tag '!!%s'", kind);
	} else if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		kind = "str";
	}
	int plain = kind == NULL;
	if (kind && strcmp(kind, "str") == 0) {
		lua_pushlstring(L, s, n);
		return 0;
	}
	if (strlen(s) != n)                       /* a NUL can only come from a quoted "\0" */
		return fail_at(ld, ev->start_mark, "NUL in a %s scalar", kind);
	if ((plain || strcmp(kind, "null") == 0) && is_one_of(s, null_words)) {
		lua_pushvalue(L, ld->null);
		return 0;
	}
	if (plain || strcmp(kind, "bool") == 0) {
		if (is_one_of(s, true_words) || is_one_of(s, false_words)) {
			lua_pushboolean(L, is_one_of(s, true_words));
			return 0;
		}
	}
	if ((plain || strcmp(kind, "int") == 0) && n > 0 && n < 64 && push_int(L, s, n))
		return 0;
	if ((plain || strcmp(kind, "float") == 0) && n > 0 && n < 64) {
		if (push_float(L, s, n))
			return 0;
		if (!plain && push_int(L, s, n)) {    /* !!float 3 */
			lua_pushnumber(L, (lua_Number)lua_tonumber(L, -1));
			lua_remove(L, -2);
			return 0;
		}
	}
	if (!plain)
		return fail_at(ld, ev->start_mark, "invalid !!%s value '%.40s'", kind, s);
	lua_pushlstring(L, s, n);
	return 0;
}

static int load_node(struct loader *ld, int depth);

/* Pushes a new companion of the collection at index t, registered in registry (a stack index);
 * a marks companion also records where the collection starts, under key 0. */
static void new_companion(struct loader *ld, int t, int registry, yaml_mark_t self)
{
	lua_State *L = ld->L;
	lua_newtable(L);
	lua_pushvalue(L, t);
	lua_pushvalue(L, -2);
	lua_rawset(L, registry);
	if (registry == ld->marks) {
		lua_pushinteger(L, pack_mark(self));
		lua_rawseti(L, -2, 0);
	}
}

static int check_collection_tag(struct loader *ld, const char *tag, const char *want)
{
	if (!tag || strcmp(tag, "!") == 0)
		return 0;
	if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0 && strcmp(tag + strlen(TAG_PREFIX), want) == 0)
		return 0;
	return fail_at(ld, ld->event.start_mark, "unsupported tag '%s'", tag);
}

static int load_sequence(struct loader *ld, int depth)
{
	lua_State *L = ld->L;
	yaml_mark_t self = ld->event.start_mark;
	if (check_collection_tag(ld, (const char *)ld->event.data.sequence_start.tag, "seq"))
		return -1;
	lua_newtable(L);
	new_companion(ld, lua_gettop(L), ld->marks, self);
	lua_Integer i = 0;
	for (;;) {
		if (next_event(ld))
			return -1;
		if (ld->event.type == YAML_SEQUENCE_END_EVENT)
			break;
		lua_pushinteger(L, pack_mark(ld->event.start_mark));
		lua_rawseti(L, -2, i + 1);
		if (load_node(ld, depth + 1))
			return -1;
		lua_rawseti(L, -3, ++i);
	}
	lua_pop(L, 1);
	return 0;
}

static int load_mapping(struct loader *ld, int depth)
{
	lua_State *L = ld->L;
	yaml_mark_t self = ld->event.start_mark;
	if (check_collection_tag(ld, (const char *)ld->event.data.mapping_start.tag, "map"))
		return -1;
	lua_newtable(L);
	int t = lua_gettop(L);
	new_companion(ld, t, ld->marks, self);
	new_companion(ld, t, ld->keymarks, self);
	int vm = t + 1, km = t + 2;
	for (;;) {
		if (next_event(ld))
			return -1;
		const yaml_event_t *ev = &ld->event;
		if (ev->type == YAML_MAPPING_END_EVENT)
			break;
		if (ev->type == YAML_ALIAS_EVENT)
			return fail_at(ld, ev->start_mark, "aliases are not supported (*%s)", ev->data.alias.anchor);
		if (ev->type != YAML_SCALAR_EVENT)
			return fail_at(ld, ev->start_mark, "mapping keys must be scalars");
		if (ev->data.scalar.anchor)
			return fail_at(ld, ev->start_mark, "aliases are not supported (anchor &%s)", ev->data.scalar.anchor);
		const char *tag = (const char *)ev->data.scalar.tag;
		if (tag && strcmp(tag, "!") != 0 && strcmp(tag, TAG_PREFIX "str") != 0)
			return fail_at(ld, ev->start_mark, "unsupported tag '%s' on a mapping key", tag);
		yaml_mark_t keymark = ev->start_mark;
		lua_pushlstring(L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, km) != LUA_TNIL) {
			lua_Integer first = lua_tointeger(L, -1);
			return fail_at(ld, keymark, "duplicate key '%.60s' (first at line %d column %d)",
			               lua_tostring(L, -2), (int)(first >> 24), (int)(first & 0xFFFFFF));
		}
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushinteger(L, pack_mark(keymark));
		lua_rawset(L, km);
		if (next_event(ld))
			return -1;
		lua_pushvalue(L, -1);
		lua_pushinteger(L, pack_mark(ld->event.start_mark));
		lua_rawset(L, vm);
		if (load_node(ld, depth + 1))
			return -1;
		if (lua_rawequal(L, -1, ld->null))
			lua_pop(L, 2);                    /* key: ~ leaves the key out; its marks stay */
		else
			lua_rawset(L, t);
	}
	lua_pop(L, 2);
	return 0;
}

/* Pushes the node that starts with the current event. */
static int load_node(struct loader *ld, int depth)
{
	const yaml_event_t *ev = &ld->event;
	luaL_checkstack(ld->L, 10, "yaml.load");
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return fail_at(ld, ev->start_mark, "aliases are not supported (*%s)", ev->data.alias.anchor);
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor)
			return fail_at(ld, ev->start_mark, "aliases are not supported (anchor &%s)", ev->data.scalar.anchor);
		return load_scalar(ld);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		int seq = ev->type == YAML_SEQUENCE_START_EVENT;
		const yaml_char_t *anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
		if (anchor)
			return fail_at(ld, ev->start_mark, "aliases are not supported (anchor &%s)", anchor);
		if (depth >= YAML_MAX_DEPTH)
			return fail_at(ld, ev->start_mark, "nesting deeper than %d", YAML_MAX_DEPTH);
		return seq ? load_sequence(ld, depth) : load_mapping(ld, depth);
	}
	default:
		return fail_at(ld, ev->start_mark, "unexpected YAML event %d", (int)ev->type);
	}
}

/* Pushes the registry table name (weak keys), creating it once. */
static void push_weak_registry(lua_State *L, const char *name)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, name) != LUA_TNIL)
		return;
	lua_pop(L, 1);
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, name);
}

/* The stream: exactly one document (or none, which loads as null). */
static int load_stream(struct loader *ld)
{
	if (next_event(ld))
		return -1;
	if (ld->event.type != YAML_STREAM_START_EVENT)
		return fail_at(ld, ld->event.start_mark, "expected the start of the stream");
	if (next_event(ld))
		return -1;
	if (ld->event.type == YAML_STREAM_END_EVENT) {
		lua_pushvalue(ld->L, ld->null);
		return 0;
	}
	if (next_event(ld) || load_node(ld, 0))   /* past DOCUMENT-START to the root node */
		return -1;
	if (next_event(ld))                       /* DOCUMENT-END */
		return -1;
	if (next_event(ld))
		return -1;
	if (ld->event.type == YAML_DOCUMENT_START_EVENT)
		return fail_at(ld, ld->event.start_mark, "multiple documents are not supported");
	if (ld->event.type != YAML_STREAM_END_EVENT)
		return fail_at(ld, ld->event.start_mark, "expected the end of the stream");
	return 0;
}

/* yaml.load(text [, chunkname]) -> document | nil, message, "protocol" */
static int yaml_load(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	const char *chunk = luaL_optstring(L, 2, "yaml");
	lua_settop(L, 2);
	if (len > YAML_MAX_INPUT) {
		return rb_failf(L, "protocol", "%s: input too large (%zu bytes, limit %d)", chunk, len,
		                YAML_MAX_INPUT);
	}
	push_weak_registry(L, MARKS_KEY);
	push_weak_registry(L, KEYMARKS_KEY);
	rb_push_null(L);
	struct loader *ld = rb_box(L, sizeof *ld, "runbook.yaml.loader", loader_gc);
	ld->L = L;
	ld->chunk = chunk;
	ld->text = text;
	ld->len = len;
	ld->marks = 3;
	ld->keymarks = 4;
	ld->null = 5;
	if (!yaml_parser_initialize(&ld->parser))
		return luaL_error(L, "yaml.load: out of memory");
	ld->parser_live = 1;
	yaml_parser_set_input_string(&ld->parser, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&ld->parser, YAML_UTF8_ENCODING);
	int rc = load_stream(ld);
	loader_free(ld);
	if (rc) {
		lua_settop(L, 6);
		return rb_fail(L, ld->err, "protocol");
	}
	return 1;
}

/* yaml.mark(tbl [, key]) -> line, column [, key_line, key_column] | nil
 * Without key: where tbl itself starts. With key: where tbl[key]'s value starts, and for a
 * mapping also where the key is written. nil when tbl (or key) did not come from yaml.load. */
static int yaml_mark(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	int has_key = !lua_isnoneornil(L, 2);
	lua_settop(L, 2);
	if (!has_key) {
		lua_pushinteger(L, 0);
		lua_replace(L, 2);
	}
	lua_Integer m[2] = { 0, 0 };              /* packed value mark, packed key mark */
	const char *registries[2] = { MARKS_KEY, KEYMARKS_KEY };
	for (int i = 0; i < 1 + has_key; i++) {
		push_weak_registry(L, registries[i]);
		lua_pushvalue(L, 1);
		if (lua_rawget(L, -2) == LUA_TTABLE) {
			lua_pushvalue(L, 2);
			if (lua_rawget(L, -2) == LUA_TNUMBER)
				m[i] = lua_tointeger(L, -1);
		}
		lua_settop(L, 2);
	}
	if (!m[0])
		return 0;
	lua_pushinteger(L, m[0] >> 24);
	lua_pushinteger(L, m[0] & 0xFFFFFF);
	if (!m[1])
		return 2;
	lua_pushinteger(L, m[1] >> 24);
	lua_pushinteger(L, m[1] & 0xFFFFFF);
	return 4;
}

static const luaL_Reg yaml_funcs[] = {
	{ "load", yaml_load },
	{ "mark", yaml_mark },
	{ NULL, NULL }
};

int luaopen_runbook_yaml(lua_State *L)
{
	luaL_newlib(L, yaml_funcs);
	rb_push_null(L);
	lua_setfield(L, -2, "null");
	return 1;
}
