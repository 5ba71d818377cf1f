/* rbaux.c: the project's small lauxlib (rbaux.h): nil,msg,code failures, the one errno map,
 * the one monotonic clock and the run deadline, the one TCP connect, the options-table checks
 * and typed getters, and the one safe way to open a file for reading.
 * Depends on: POSIX, Lua 5.4. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "rbaux.h"

/* ---------------------------------------------------------------- failures */

int rb_fail(lua_State *L, const char *msg, const char *code)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	lua_pushstring(L, code);
	return 3;
}

int rb_failf(lua_State *L, const char *code, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	if (n < 0) {
		lua_pushstring(L, fmt);
	} else if ((size_t)n < sizeof small) {
		lua_pushlstring(L, small, (size_t)n);
	} else {
		/* a long message: formatted into a Lua-owned box, so a memory error cannot leak it */
		char *big = lua_newuserdatauv(L, (size_t)n + 1, 0);
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		lua_pushlstring(L, big, (size_t)n);
		lua_remove(L, -2);
	}
	lua_pushstring(L, code);
	return 3;
}

int rb_errf(struct rb_err *e, const char *code, const char *fmt, ...)
{
	va_list ap;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

const char *rb_errno_code(int e)
{
	switch (e) {
	case ETIMEDOUT: return "timeout";
	case ECONNREFUSED: return "refused";
	case EHOSTUNREACH: case ENETUNREACH: case EADDRNOTAVAIL: case ENETDOWN: case EHOSTDOWN:
		return "unreachable";
	case ENOENT: case ENOTDIR: return "notfound";
	case EACCES: case EPERM: return "denied";
	default: return "io";
	}
}

/* ---------------------------------------------------------------- clocks and the deadline */

static double run_deadline;    /* rb_mono_now() seconds; 0 = none */

double rb_mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double rb_run_deadline(void)
{
	return run_deadline;
}

void rb_set_run_deadline(double at)
{
	run_deadline = at > 0 ? at : 0;
}

int rb_run_deadline_passed(void)
{
	return run_deadline > 0 && rb_mono_now() > run_deadline;
}

/* the earlier of deadline and the run deadline */
static double clip(double deadline)
{
	return run_deadline > 0 && run_deadline < deadline ? run_deadline : deadline;
}

double rb_deadline_in(double seconds)
{
	return clip(rb_mono_now() + seconds);
}

/* ---------------------------------------------------------------- sockets */

int rb_ip_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((unsigned short)port);
		*len = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		*len = sizeof *v6;
		return 0;
	}
	return -1;
}

int rb_wait_fd(int fd, short events, double deadline)
{
	deadline = clip(deadline);
	for (;;) {
		double left = deadline - rb_mono_now();
		struct pollfd p = { .fd = fd, .events = events };
		int r;
		if (left <= 0)
			return 0;
		r = poll(&p, 1, (int)(left * 1000.0) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			continue;         /* rounding: the loop re-checks the deadline */
		return 1;
	}
}

int rb_tcp_connect(const char *host, int port, const char *bind_addr, double deadline,
		   const char **code, char *msg, size_t msglen)
{
	struct sockaddr_storage ss, ls;
	socklen_t sl, ll;
	int fd, err = 0, one = 1;
	socklen_t elen = sizeof err;

	if (rb_ip_addr(host, port, &ss, &sl) != 0) {
		*code = "io";
		snprintf(msg, msglen, "%s:%d: not an IP address", host, port);
		errno = EINVAL;
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = errno;
		*code = rb_errno_code(err);
		snprintf(msg, msglen, "%s:%d: socket: %s", host, port, strerror(err));
		errno = err;
		return -1;
	}
	if (bind_addr) {
		if (rb_ip_addr(bind_addr, 0, &ls, &ll) != 0 || ls.ss_family != ss.ss_family) {
			close(fd);
			*code = "io";
			snprintf(msg, msglen, "%s:%d: bind address is not an IP address of the same family",
				 host, port);
			errno = EINVAL;
			return -1;
		}
		if (bind(fd, (struct sockaddr *)&ls, ll) != 0) {
			err = errno;
			close(fd);
			*code = "io";
			snprintf(msg, msglen, "cannot bind %s: %s", bind_addr, strerror(err));
			errno = err;
			return -1;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		int r;
		if (errno != EINPROGRESS) {
			err = errno;
			goto fail;
		}
		r = rb_wait_fd(fd, POLLOUT, deadline);
		if (r == 0) {
			int by_run = clip(deadline) < deadline;
			close(fd);
			*code = "timeout";
			snprintf(msg, msglen, "connect to %s:%d: %s", host, port,
				 by_run ? "the run deadline passed" : "no answer before the timeout");
			errno = ETIMEDOUT;
			return -1;
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			err = errno;
		if (err)
			goto fail;
	}
	return fd;
fail:
	close(fd);
	*code = rb_errno_code(err);
	snprintf(msg, msglen, "connect to %s:%d: %s", host, port, strerror(err));
	errno = err;
	return -1;
}

/* ---------------------------------------------------------------- options tables */

void rb_check_keys(lua_State *L, int idx, const char *const allowed[], const char *what)
{
	const char *sep = what ? ": " : "";
	if (!what)
		what = "";
	idx = lua_absindex(L, idx);
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int known = 0;
		lua_pop(L, 1);   /* the key stays for lua_next */
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s%soption names must be strings (got a %s)", what, sep,
				   luaL_typename(L, -1));
		for (const char *const *k = allowed; *k && !known; k++)
			known = strcmp(*k, lua_tostring(L, -1)) == 0;
		if (!known)
			luaL_error(L, "%s%sunknown option '%s'", what, sep, lua_tostring(L, -1));
	}
}

/* Pushes options[key] and returns 1 when it is present and of type want; returns 0 with nothing
 * pushed when it is absent (or idx holds no table); raises "option 'KEY' must be WHAT (got
 * TYPE)" for any other type. */
static int opt_value(lua_State *L, int idx, const char *key, int want, const char *what)
{
	int t;
	if (lua_type(L, idx) != LUA_TTABLE)
		return 0;
	t = lua_getfield(L, idx, key);
	if (t == want)
		return 1;
	if (t != LUA_TNIL)
		luaL_error(L, "option '%s' must be %s (got %s)", key, what, lua_typename(L, t));
	lua_pop(L, 1);
	return 0;
}

const char *rb_opt_lstring(lua_State *L, int idx, const char *key, const char *dflt, size_t *len)
{
	const char *s = dflt;
	if (len)
		*len = dflt ? strlen(dflt) : 0;
	if (opt_value(L, lua_absindex(L, idx), key, LUA_TSTRING, "a string")) {
		s = lua_tolstring(L, -1, len);   /* anchored by the options table */
		lua_pop(L, 1);
	}
	return s;
}

const char *rb_opt_string(lua_State *L, int idx, const char *key, const char *dflt)
{
	return rb_opt_lstring(L, idx, key, dflt, NULL);
}

const char *rb_opt_required(lua_State *L, int idx, const char *key)
{
	const char *s = rb_opt_lstring(L, idx, key, NULL, NULL);
	if (s == NULL)
		luaL_error(L, "option '%s' is required", key);
	return s;
}

lua_Integer rb_opt_int(lua_State *L, int idx, const char *key, lua_Integer dflt,
		       lua_Integer min, lua_Integer max)
{
	lua_Integer v = dflt;
	if (opt_value(L, lua_absindex(L, idx), key, LUA_TNUMBER, "an integer")) {
		int isint;
		v = lua_tointegerx(L, -1, &isint);
		if (!isint || v < min || v > max)
			luaL_error(L, "option '%s' must be an integer in %I..%I", key, min, max);
		lua_pop(L, 1);
	}
	return v;
}

double rb_opt_number(lua_State *L, int idx, const char *key, double dflt, double min, double max)
{
	double v = dflt;
	if (opt_value(L, lua_absindex(L, idx), key, LUA_TNUMBER, "a number")) {
		v = lua_tonumber(L, -1);
		if (!isfinite(v) || v < min || v > max)
			luaL_error(L, "option '%s' out of range [%s, %s]", key,
				   lua_pushfstring(L, "%f", (lua_Number)min),
				   lua_pushfstring(L, "%f", (lua_Number)max));
		lua_pop(L, 1);
	}
	return v;
}

int rb_opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
	int v = dflt;
	if (opt_value(L, lua_absindex(L, idx), key, LUA_TBOOLEAN, "a boolean")) {
		v = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	return v;
}

double rb_opt_timeout(lua_State *L, int idx, const char *key, double dflt)
{
	double v = dflt;
	if (opt_value(L, lua_absindex(L, idx), key, LUA_TNUMBER, "a number of seconds")) {
		v = lua_tonumber(L, -1);
		if (!(v > 0 && v <= 86400))
			luaL_error(L, "option '%s' must be a number of seconds in (0, 86400]", key);
		lua_pop(L, 1);
	}
	return v;
}

/* ---------------------------------------------------------------- userdata */

void *rb_box(lua_State *L, size_t size, const char *tname, lua_CFunction gc)
{
	void *p = lua_newuserdatauv(L, size, 0);
	memset(p, 0, size);
	if (luaL_newmetatable(L, tname)) {
		lua_pushcfunction(L, gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	return p;
}

void rb_handle_type(lua_State *L, const char *tname, const luaL_Reg methods[], lua_CFunction close)
{
	if (luaL_newmetatable(L, tname)) {
		lua_newtable(L);
		luaL_setfuncs(L, methods, 0);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, close);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
}

/* ---------------------------------------------------------------- buffers */

int rb_buf_add(struct rb_buf *b, const void *s, size_t n)
{
	if (b->oom)
		return -1;
	if (b->max && n > b->max - (b->n < b->max ? b->n : b->max)) {
		b->truncated = 1;
		n = b->max > b->n ? b->max - b->n : 0;
	}
	if (n == 0)
		return 0;
	if (n >= (size_t)-1 / 2 - b->n) {
		b->oom = 1;
		return -1;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->n + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return -1;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

void rb_buf_free(struct rb_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

static int buf_box_gc(lua_State *L)
{
	rb_buf_free(lua_touserdata(L, 1));
	return 0;
}

struct rb_buf *rb_buf_box(lua_State *L)
{
	return rb_box(L, sizeof(struct rb_buf), "runbook.buffer", buf_box_gc);
}

/* ---------------------------------------------------------------- files */

const char *rb_type_name(mode_t m)
{
	if (S_ISREG(m)) return "file";
	if (S_ISDIR(m)) return "directory";
	if (S_ISLNK(m)) return "symlink";
	if (S_ISSOCK(m)) return "socket";
	if (S_ISFIFO(m)) return "fifo";
	return "other";
}

/* The one helper every file-reading primitive uses:
 * never blocks on a FIFO, never reads anything but a regular file; private files (secrets, the
 * audit journal) are opened without following a symlink and must belong to the running user
 * with no group/other permission bits. */
const char *rb_open_regular(const char *path, int flags, int private_file, mode_t create_mode,
			    int *fdp, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | (private_file ? O_NOFOLLOW : 0), create_mode);
	*fdp = -1;
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP && private_file) {
			snprintf(why, whylen, "is a symbolic link (refused: secrets and journals are opened without following links)");
			return "denied";
		}
		snprintf(why, whylen, "%s", strerror(e));
		return rb_errno_code(e);
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		close(fd);
		return "io";
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file (%s)", rb_type_name(st.st_mode));
		close(fd);
		return "type";
	}
	if (private_file && st.st_uid != geteuid()) {
		snprintf(why, whylen, "owned by uid %u, not by the user running runbook (uid %u)",
			 (unsigned)st.st_uid, (unsigned)geteuid());
		close(fd);
		return "denied";
	}
	if (private_file && (st.st_mode & 077) != 0) {
		snprintf(why, whylen, "readable by group or others (mode %04o): chmod 600 it",
			 (unsigned)(st.st_mode & 07777));
		close(fd);
		return "denied";
	}
	/* regular files never block; the flag only mattered for opening a FIFO */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*fdp = fd;
	return NULL;
}

