/* json_decode.c: json.decode for runbook.json (registered by ljson.c; split out for size).
 *
 *   json.decode(text) -> value | nil, "json.decode: <what> at line L column C near '...'", "protocol"
 *
 * Parses with cJSON; the tree is held in a userdata box, freed before an error is returned and
 * by __gc if a Lua error (out of memory) unwinds. A strict second pass over the text rejects
 * what cJSON lets through (raw control characters in strings, non-JSON numbers like 01, 1. or
 * -.5, floats that overflow, stray control bytes outside strings) and enforces the depth limit
 * (100). cJSON visits keys, strings and numbers in text order, so a cursor walks the text in
 * step with it: numbers are re-read from their text so integers keep all 64 bits (integer
 * literals that fit are Lua integers, anything with a fraction or exponent is a float), and
 * strings holding \u0000 are re-read so they are not truncated. Arrays get json.array_mt;
 * null is the shared null sentinel; duplicate object keys: the last one wins. Invalid UTF-8
 * inside a JSON string becomes U+FFFD (as json.encode writes it), so a round trip is stable.
 * Depends on: Lua 5.4, cJSON (libcjson), ljson.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "ljson.h"
#include "rbaux.h"

struct tree_box {
	cJSON *root;
};

static int tree_box_gc(lua_State *L)
{
	struct tree_box *box = lua_touserdata(L, 1);
	if (box->root) {
		cJSON_Delete(box->root);
		box->root = NULL;
	}
	return 0;
}

static struct tree_box *tree_box_new(lua_State *L)
{
	return rb_box(L, sizeof(struct tree_box), "runbook.json.tree", tree_box_gc);
}

/* Position of byte offset off in s as 1-based line and column (columns count bytes). */
static void text_position(const char *s, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, bol = 0;
	for (size_t i = 0; i < off; i++)
		if (s[i] == '\n') {
			l++;
			bol = i + 1;
		}
	*line = l;
	*col = off - bol + 1;
}

/* Pushes "json.decode: <what> at line L column C[ near '...']". */
static void push_decode_error(lua_State *L, const char *s, size_t len, size_t off, const char *what)
{
	size_t line, col;
	char near[24];
	size_t n = 0;
	if (off > len)
		off = len;
	text_position(s, off, &line, &col);
	for (size_t i = off; i < len && n < 16; i++)
		near[n++] = (s[i] >= 0x20 && s[i] < 0x7F) ? s[i] : '?';
	near[n] = '\0';
	if (n)
		lua_pushfstring(L, "json.decode: %s at line %I column %I near '%s'", what,
		                (lua_Integer)line, (lua_Integer)col, near);
	else
		lua_pushfstring(L, "json.decode: %s at line %I column %I", what,
		                (lua_Integer)line, (lua_Integer)col);
}

static int is_number_char(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* 1 when s[0..n) is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int valid_json_number(const char *s, size_t n)
{
	size_t i = 0, d;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return 0;
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i == n;
}

/* Strict second pass over text cJSON accepted. Returns 0, or -1 with *off and *what set. */
static int json_strict_check(const char *s, size_t len, size_t *off, const char **what)
{
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++) {
				if ((unsigned char)s[i] < 0x20) {
					*off = i;
					*what = "raw control character in string";
					return -1;
				}
				if (s[i] == '\\')
					i++;
			}
		} else if (c == '[' || c == '{') {
			if (++depth > JSON_MAX_DEPTH) {
				*off = i;
				*what = "nesting deeper than " "100";
				return -1;
			}
		} else if (c == ']' || c == '}') {
			depth--;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t start = i;
			while (i < len && is_number_char(s[i]))
				i++;
			if (!valid_json_number(s + start, i - start)) {
				*off = start;
				*what = "invalid number";
				return -1;
			}
			/* every length is checked: a long mantissa must not slip past as infinity */
			char small[80], *num = small;
			if (i - start >= sizeof small && !(num = malloc(i - start + 1))) {
				*off = start;
				*what = "out of memory";
				return -1;
			}
			memcpy(num, s + start, i - start);
			num[i - start] = '\0';
			int inf = isinf(strtod(num, NULL));
			if (num != small)
				free(num);
			if (inf) {
				*off = start;
				*what = "number out of range";
				return -1;
			}
			i--;
		} else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			*off = i;
			*what = "invalid character";
			return -1;
		}
	}
	return 0;
}

struct decoder {
	lua_State *L;
	const char *s;
	size_t len, pos;     /* pos: scan cursor for the next number token */
};

/* Advances d->pos over the next string or number token (cJSON visits keys, strings and numbers
 * in text order, so this cursor walks in step with it). Sets *start and *end; *has_nul tells
 * whether a string token holds \u0000, which cJSON's NUL-terminated strings would truncate. */
static void next_token(struct decoder *d, size_t *start, size_t *end, int *has_nul)
{
	const char *s = d->s;
	size_t i = d->pos;
	*has_nul = 0;
	while (i < d->len && s[i] != '"' && s[i] != '-' && !(s[i] >= '0' && s[i] <= '9'))
		i++;
	*start = i;
	if (i < d->len && s[i] == '"') {
		for (i++; i < d->len && s[i] != '"'; i++)
			if (s[i] == '\\') {
				if (i + 5 < d->len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
					*has_nul = 1;
				i++;
			}
		if (i < d->len)
			i++;
	} else {
		while (i < d->len && is_number_char(s[i]))
			i++;
	}
	*end = d->pos = i;
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/* Pushes the string token s[start..end) (quotes included, already validated by cJSON). */
static void push_json_string(lua_State *L, const char *s, size_t start, size_t end)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = start + 1; i + 1 < end; i++) {
		if (s[i] != '\\') {
			luaL_addchar(&b, s[i]);
			continue;
		}
		char c = s[++i];
		switch (c) {
		case 'b': luaL_addchar(&b, '\b'); break;
		case 'f': luaL_addchar(&b, '\f'); break;
		case 'n': luaL_addchar(&b, '\n'); break;
		case 'r': luaL_addchar(&b, '\r'); break;
		case 't': luaL_addchar(&b, '\t'); break;
		case 'u': {
			unsigned cp = hex4(s + i + 1);
			i += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < end && s[i + 1] == '\\' && s[i + 2] == 'u') {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + i + 3) - 0xDC00);
				i += 6;
			}
			char u[4];
			int n;
			if (cp < 0x80) {
				u[0] = (char)cp; n = 1;
			} else if (cp < 0x800) {
				u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2;
			} else if (cp < 0x10000) {
				u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
			} else {
				u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
				u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
			}
			luaL_addlstring(&b, u, (size_t)n);
			break;
		}
		default: luaL_addchar(&b, c); break;   /* " \ / */
		}
	}
	luaL_pushresult(&b);
}

/* Pushes the string cJSON decoded (str), re-read from the text when it holds \u0000. */
static void decode_string(struct decoder *d, const char *str)
{
	size_t start, end;
	int has_nul;
	next_token(d, &start, &end, &has_nul);
	if (has_nul)
		push_json_string(d->L, d->s, start, end);
	else
		lua_pushstring(d->L, str);
	size_t n;
	const char *t = lua_tolstring(d->L, -1, &n);
	if (!rb_utf8_valid(t, n)) {      /* as json.encode writes it: the round trip is stable */
		rb_push_utf8_clean(d->L, t, n);
		lua_remove(d->L, -2);
	}
}

/* Pushes the number whose text is the next token: integers that fit lua_Integer stay
 * integers with all 64 bits (cJSON only keeps a double). */
static void decode_number(struct decoder *d, const cJSON *node)
{
	size_t start, end;
	int has_nul;
	next_token(d, &start, &end, &has_nul);
	char buf[80];
	if (end - start > 0 && end - start < sizeof buf) {
		memcpy(buf, d->s + start, end - start);
		buf[end - start] = '\0';
		if (lua_stringtonumber(d->L, buf))
			return;
	}
	lua_pushnumber(d->L, node->valuedouble);
}

static void decode_node(struct decoder *d, const cJSON *node)
{
	lua_State *L = d->L;
	luaL_checkstack(L, 4, "json.decode");
	if (cJSON_IsNull(node)) {
		rb_push_null(L);
	} else if (cJSON_IsFalse(node)) {
		lua_pushboolean(L, 0);
	} else if (cJSON_IsTrue(node)) {
		lua_pushboolean(L, 1);
	} else if (cJSON_IsNumber(node)) {
		decode_number(d, node);
	} else if (cJSON_IsString(node)) {
		decode_string(d, node->valuestring);
	} else if (cJSON_IsArray(node)) {
		lua_createtable(L, cJSON_GetArraySize(node), 0);
		lua_Integer i = 0;
		for (const cJSON *c = node->child; c; c = c->next) {
			decode_node(d, c);
			lua_rawseti(L, -2, ++i);
		}
		rb_json_push_array_mt(L);
		lua_setmetatable(L, -2);
	} else {   /* object; duplicate keys: the last one wins */
		lua_createtable(L, 0, cJSON_GetArraySize(node));
		for (const cJSON *c = node->child; c; c = c->next) {
			decode_string(d, c->string);
			decode_node(d, c);
			lua_rawset(L, -3);
		}
	}
}

/* json.decode(text) -> value | nil, message, "protocol" */
int json_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	lua_settop(L, 1);
	struct tree_box *box = tree_box_new(L);
	const char *end = NULL;
	/* len + 1: cJSON wants the terminating NUL counted to accept the end of input */
	box->root = cJSON_ParseWithLengthOpts(s, len + 1, &end, 1);
	if (!box->root) {
		size_t off = end ? (size_t)(end - s) : 0;
		lua_pushnil(L);
		push_decode_error(L, s, len, off, off >= len ? "unexpected end of input" : "syntax error");
		lua_pushliteral(L, "protocol");
		return 3;
	}
	size_t off;
	const char *what;
	if (json_strict_check(s, len, &off, &what) != 0) {
		cJSON_Delete(box->root);
		box->root = NULL;
		lua_pushnil(L);
		push_decode_error(L, s, len, off, what);
		lua_pushliteral(L, "protocol");
		return 3;
	}
	struct decoder d = { L, s, len, 0 };
	decode_node(&d, box->root);   /* a raise here (out of memory) leaves the tree to __gc */
	cJSON_Delete(box->root);
	box->root = NULL;
	return 1;
}

