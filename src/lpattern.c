/* lpattern.c: runbook.pattern, Lua's pattern matching under the run deadline.
 *
 * string.find, string.match, string.gmatch and string.gsub with the semantics of Lua 5.4's
 * (reference manual, section 6.4.1), implemented here with a step count: a backtracking
 * pattern such as ("a"):rep(3000):find(("a-"):rep(6) .. "b") is one C call that can run for
 * hours without executing a VM instruction, so the instruction-count deadline hook never
 * fires in it. Every 2^16 steps the matcher looks at the clock and raises "deadline exceeded"
 * once the run deadline has passed. engine.c installs these functions in the string table
 * (the one string methods use) in place of the standard ones, which stay available as
 * runbook.pattern.stock for comparison in tests. Plain searches use memmem (linear).
 * Depends on: Lua 5.4, rbaux.h (rb_run_deadline_passed). */
#include <ctype.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"

#define L_ESC '%'
#define SPECIALS "^$*+?.([%-"
#define MAXCAPTURES 32
#define MAXDEPTH 200             /* nested match() calls, as Lua's MAXCCALLS */
#define CHECK_EVERY (1u << 16)   /* steps between two looks at the clock */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

typedef struct {
	const char *src_init, *src_end, *p_end;
	lua_State *L;
	int depth;      /* match() calls left before "pattern too complex" */
	int level;      /* captures open or closed so far */
	unsigned steps; /* until the next look at the clock */
	struct {
		const char *init;
		ptrdiff_t len;
	} capture[MAXCAPTURES];
} MatchState;

static const char *match(MatchState *ms, const char *s, const char *p);

/* One unit of matching work; the deadline is looked at every CHECK_EVERY of them. */
static void step(MatchState *ms)
{
	if (--ms->steps == 0) {
		ms->steps = CHECK_EVERY;
		if (rb_run_deadline_passed())
			luaL_error(ms->L, "deadline exceeded");
	}
}

/* 1-based position pos relative to a string of len bytes, as Lua's string functions read it */
static size_t position(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0)
		return 1;
	if (pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static int check_capture(MatchState *ms, int l)
{
	l -= '1';
	if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
		return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
	return l;
}

static int capture_to_close(MatchState *ms)
{
	int level = ms->level;
	for (level--; level >= 0; level--)
		if (ms->capture[level].len == CAP_UNFINISHED)
			return level;
	return luaL_error(ms->L, "invalid pattern capture");
}

/* the end of the single-character class that starts at p */
static const char *class_end(MatchState *ms, const char *p)
{
	char c = *p++;
	if (c == L_ESC) {
		if (p == ms->p_end)
			luaL_error(ms->L, "malformed pattern (ends with '%%')");
		return p + 1;
	}
	if (c == '[') {
		if (*p == '^')
			p++;
		do {   /* the first character (even ']') belongs to the set */
			if (p == ms->p_end)
				luaL_error(ms->L, "malformed pattern (missing ']')");
			if (*(p++) == L_ESC && p < ms->p_end)
				p++;
		} while (*p != ']');
		return p + 1;
	}
	return p;
}

static int match_class(int c, int cl)
{
	int res;
	switch (tolower(cl)) {
	case 'a': res = isalpha(c); break;
	case 'c': res = iscntrl(c); break;
	case 'd': res = isdigit(c); break;
	case 'g': res = isgraph(c); break;
	case 'l': res = islower(c); break;
	case 'p': res = ispunct(c); break;
	case 's': res = isspace(c); break;
	case 'u': res = isupper(c); break;
	case 'w': res = isalnum(c); break;
	case 'x': res = isxdigit(c); break;
	case 'z': res = (c == 0); break;   /* deprecated, still in Lua 5.4's lstrlib */
	default: return cl == c;
	}
	if (isupper(cl))
		res = !res;
	return res;
}

/* c in the set [p .. ec], p at '[' and ec at ']' */
static int match_set(int c, const char *p, const char *ec)
{
	int sig = 1;
	if (*(p + 1) == '^') {
		sig = 0;
		p++;
	}
	while (++p < ec) {
		if (*p == L_ESC) {
			p++;
			if (match_class(c, (unsigned char)*p))
				return sig;
		} else if (*(p + 1) == '-' && p + 2 < ec) {
			p += 2;
			if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p)
				return sig;
		} else if ((unsigned char)*p == c) {
			return sig;
		}
	}
	return !sig;
}

static int single_match(MatchState *ms, const char *s, const char *p, const char *ep)
{
	int c;
	if (s >= ms->src_end)
		return 0;
	c = (unsigned char)*s;
	switch (*p) {
	case '.': return 1;
	case L_ESC: return match_class(c, (unsigned char)*(p + 1));
	case '[': return match_set(c, p, ep - 1);
	default: return (unsigned char)*p == c;
	}
}

static const char *match_balance(MatchState *ms, const char *s, const char *p)
{
	int b, e, open = 1;
	if (p >= ms->p_end - 1)
		luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= ms->src_end || *s != *p)
		return NULL;
	b = *p;
	e = *(p + 1);
	while (++s < ms->src_end) {
		step(ms);
		if (*s == e) {
			if (--open == 0)
				return s + 1;
		} else if (*s == b) {
			open++;
		}
	}
	return NULL;
}

static const char *max_expand(MatchState *ms, const char *s, const char *p, const char *ep)
{
	ptrdiff_t i = 0;
	while (single_match(ms, s + i, p, ep)) {
		step(ms);
		i++;
	}
	for (; i >= 0; i--) {   /* try the longest first */
		const char *res = match(ms, s + i, ep + 1);
		if (res)
			return res;
	}
	return NULL;
}

static const char *min_expand(MatchState *ms, const char *s, const char *p, const char *ep)
{
	for (;;) {
		const char *res = match(ms, s, ep + 1);
		if (res)
			return res;
		if (!single_match(ms, s, p, ep))
			return NULL;
		s++;
	}
}

static const char *start_capture(MatchState *ms, const char *s, const char *p, int what)
{
	const char *res;
	int level = ms->level;
	if (level >= MAXCAPTURES)
		luaL_error(ms->L, "too many captures");
	ms->capture[level].init = s;
	ms->capture[level].len = what;
	ms->level = level + 1;
	if ((res = match(ms, s, p)) == NULL)
		ms->level--;
	return res;
}

static const char *end_capture(MatchState *ms, const char *s, const char *p)
{
	int l = capture_to_close(ms);
	const char *res;
	ms->capture[l].len = s - ms->capture[l].init;
	if ((res = match(ms, s, p)) == NULL)
		ms->capture[l].len = CAP_UNFINISHED;
	return res;
}

static const char *match_capture(MatchState *ms, const char *s, int l)
{
	size_t len;
	l = check_capture(ms, l);
	len = (size_t)ms->capture[l].len;
	if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
		return s + len;
	return NULL;
}

/* match(ms, s, p) -> the end of the match of pattern p at s, or NULL */
static const char *match(MatchState *ms, const char *s, const char *p)
{
	if (ms->depth-- == 0)
		luaL_error(ms->L, "pattern too complex");
	for (;;) {
		const char *ep;
		step(ms);
		if (p == ms->p_end)
			break;
		switch (*p) {
		case '(':
			if (*(p + 1) == ')')
				s = start_capture(ms, s, p + 2, CAP_POSITION);
			else
				s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
			goto done;
		case ')':
			s = end_capture(ms, s, p + 1);
			goto done;
		case '$':
			if (p + 1 != ms->p_end)
				goto single;
			s = (s == ms->src_end) ? s : NULL;
			goto done;
		case L_ESC:
			switch (*(p + 1)) {
			case 'b':
				s = match_balance(ms, s, p + 2);
				if (s == NULL)
					goto done;
				p += 4;
				continue;
			case 'f': {
				const char *set_end;
				int prev, cur;
				p += 2;
				if (*p != '[')
					luaL_error(ms->L, "missing '[' after '%%f' in pattern");
				set_end = class_end(ms, p);
				prev = (s == ms->src_init) ? '\0' : (unsigned char)*(s - 1);
				cur = (s < ms->src_end) ? (unsigned char)*s : '\0';
				if (!match_set(prev, p, set_end - 1) && match_set(cur, p, set_end - 1)) {
					p = set_end;
					continue;
				}
				s = NULL;
				goto done;
			}
			case '0': case '1': case '2': case '3': case '4':
			case '5': case '6': case '7': case '8': case '9':
				s = match_capture(ms, s, (unsigned char)*(p + 1));
				if (s == NULL)
					goto done;
				p += 2;
				continue;
			default:
				goto single;
			}
		default:
		single:
			ep = class_end(ms, p);
			if (!single_match(ms, s, p, ep)) {
				if (*ep == '*' || *ep == '?' || *ep == '-') {   /* may match nothing */
					p = ep + 1;
					continue;
				}
				s = NULL;
				goto done;
			}
			switch (*ep) {
			case '?': {
				const char *res = match(ms, s + 1, ep + 1);
				if (res) {
					s = res;
					goto done;
				}
				p = ep + 1;
				continue;
			}
			case '+': s = max_expand(ms, s + 1, p, ep); goto done;
			case '*': s = max_expand(ms, s, p, ep); goto done;
			case '-': s = min_expand(ms, s, p, ep); goto done;
			default: s++; p = ep; continue;
			}
		}
	}
done:
	ms->depth++;
	return s;
}

/* capture i (0-based) of a match from s to e, pushed; the whole match when there is none */
static void push_capture(MatchState *ms, int i, const char *s, const char *e)
{
	if (i >= ms->level) {
		if (i != 0)
			luaL_error(ms->L, "invalid capture index %%%d", i + 1);
		lua_pushlstring(ms->L, s, (size_t)(e - s));
		return;
	}
	ptrdiff_t l = ms->capture[i].len;
	if (l == CAP_UNFINISHED)
		luaL_error(ms->L, "unfinished capture");
	else if (l == CAP_POSITION)
		lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
	else
		lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

static int push_captures(MatchState *ms, const char *s, const char *e)
{
	int n = (ms->level == 0 && s) ? 1 : ms->level;
	luaL_checkstack(ms->L, n, "too many captures");
	for (int i = 0; i < n; i++)
		push_capture(ms, i, s, e);
	return n;
}

static void prepare(MatchState *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
	ms->L = L;
	ms->src_init = s;
	ms->src_end = s + ls;
	ms->p_end = p + lp;
	ms->steps = CHECK_EVERY;
}

static void restart(MatchState *ms)
{
	ms->level = 0;
	ms->depth = MAXDEPTH;
}

static int has_specials(const char *p, size_t lp)
{
	for (size_t i = 0; i < lp; i++)
		if (p[i] != '\0' && strchr(SPECIALS, p[i]))
			return 1;
	return 0;
}

static int find_aux(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = position(luaL_optinteger(L, 3, 1), ls) - 1;
	MatchState ms;

	if (init > ls) {
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
		const char *hit = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
		if (hit) {
			lua_pushinteger(L, (hit - s) + 1);
			lua_pushinteger(L, (lua_Integer)((hit - s) + lp));
			return 2;
		}
		luaL_pushfail(L);
		return 1;
	}
	const char *s1 = s + init;
	int anchor = (*p == '^');
	if (anchor) {
		p++;
		lp--;
	}
	prepare(&ms, L, s, ls, p, lp);
	do {
		const char *res;
		restart(&ms);
		if ((res = match(&ms, s1, p)) != NULL) {
			if (find) {
				lua_pushinteger(L, (s1 - s) + 1);
				lua_pushinteger(L, res - s);
				return push_captures(&ms, NULL, 0) + 2;
			}
			return push_captures(&ms, s1, res);
		}
	} while (s1++ < ms.src_end && !anchor);
	luaL_pushfail(L);
	return 1;
}

static int pattern_find(lua_State *L) { return find_aux(L, 1); }
static int pattern_match(lua_State *L) { return find_aux(L, 0); }

typedef struct {
	const char *src, *p, *lastmatch;
	MatchState ms;
} GMatchState;

static int gmatch_next(lua_State *L)
{
	GMatchState *gm = lua_touserdata(L, lua_upvalueindex(3));
	gm->ms.L = L;
	for (const char *src = gm->src; src <= gm->ms.src_end; src++) {
		const char *e;
		restart(&gm->ms);
		if ((e = match(&gm->ms, src, gm->p)) != NULL && e != gm->lastmatch) {
			gm->src = gm->lastmatch = e;
			return push_captures(&gm->ms, src, e);
		}
	}
	return 0;
}

static int pattern_gmatch(lua_State *L)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = position(luaL_optinteger(L, 3, 1), ls) - 1;
	GMatchState *gm;

	lua_settop(L, 2);   /* the string and the pattern stay alive as upvalues */
	gm = lua_newuserdatauv(L, sizeof *gm, 0);
	if (init > ls)
		init = ls + 1;   /* start past the end: no match */
	prepare(&gm->ms, L, s, ls, p, lp);
	gm->src = s + init;
	gm->p = p;
	gm->lastmatch = NULL;
	lua_pushcclosure(L, gmatch_next, 3);
	return 1;
}

/* the replacement string (argument 3) for the match s..e, with %0-%9 and %% */
static void add_string(MatchState *ms, luaL_Buffer *b, const char *s, const char *e)
{
	size_t l;
	lua_State *L = ms->L;
	const char *news = lua_tolstring(L, 3, &l);
	const char *p;
	while ((p = memchr(news, L_ESC, l)) != NULL) {
		luaL_addlstring(b, news, (size_t)(p - news));
		p++;
		if (*p == L_ESC) {
			luaL_addchar(b, *p);
		} else if (*p == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit((unsigned char)*p)) {
			push_capture(ms, *p - '1', s, e);
			luaL_tolstring(L, -1, NULL);
			lua_remove(L, -2);
			luaL_addvalue(b);
		} else {
			luaL_error(L, "invalid use of '%c' in replacement string", L_ESC);
		}
		l -= (size_t)(p + 1 - news);
		news = p + 1;
	}
	luaL_addlstring(b, news, l);
}

/* adds the replacement of the match s..e; 0 when the original text was kept */
static int add_value(MatchState *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
	lua_State *L = ms->L;
	switch (tr) {
	case LUA_TFUNCTION: {
		int n;
		lua_pushvalue(L, 3);
		n = push_captures(ms, s, e);
		lua_call(L, n, 1);
		break;
	}
	case LUA_TTABLE:
		push_capture(ms, 0, s, e);
		lua_gettable(L, 3);
		break;
	default:
		add_string(ms, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) {   /* nil or false: keep the original text */
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
		return 0;
	}
	if (!lua_isstring(L, -1))
		return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	luaL_addvalue(b);
	return 1;
}

static int pattern_gsub(lua_State *L)
{
	size_t srcl, lp;
	const char *src = luaL_checklstring(L, 1, &srcl);
	const char *p = luaL_checklstring(L, 2, &lp);
	const char *lastmatch = NULL;
	int tr = lua_type(L, 3);
	lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
	int anchor = (*p == '^');
	lua_Integer n = 0;
	int changed = 0;
	MatchState ms;
	luaL_Buffer b;

	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE,
			 3, "string/function/table");
	luaL_buffinit(L, &b);
	if (anchor) {
		p++;
		lp--;
	}
	prepare(&ms, L, src, srcl, p, lp);
	while (n < max_s) {
		const char *e;
		restart(&ms);
		step(&ms);
		if ((e = match(&ms, src, p)) != NULL && e != lastmatch) {
			n++;
			changed = add_value(&ms, &b, src, e, tr) | changed;
			src = lastmatch = e;
		} else if (src < ms.src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	if (!changed) {
		lua_pushvalue(L, 1);
	} else {
		luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
		luaL_pushresult(&b);
	}
	lua_pushinteger(L, n);
	return 2;
}

static const luaL_Reg pattern_funcs[] = {
	{"find", pattern_find},
	{"match", pattern_match},
	{"gmatch", pattern_gmatch},
	{"gsub", pattern_gsub},
	{NULL, NULL}
};

/* runbook.pattern: {find, match, gmatch, gsub, stock = the string library's own four} */
int luaopen_runbook_pattern(lua_State *L)
{
	luaL_newlib(L, pattern_funcs);
	lua_newtable(L);
	if (lua_getglobal(L, "string") == LUA_TTABLE) {
		for (const luaL_Reg *f = pattern_funcs; f->name; f++) {
			lua_getfield(L, -1, f->name);
			if (lua_tocfunction(L, -1) == f->func) {   /* already replaced: no stock left */
				lua_pop(L, 1);
				continue;
			}
			lua_setfield(L, -3, f->name);
		}
	}
	lua_pop(L, 1);
	lua_setfield(L, -2, "stock");
	return 1;
}
