/* lcore.c: runbook.core, the engine's small OS services for its Lua policy.
 *
 * Monotonic and wall clocks, the run deadline (an instruction-count hook that raises once the
 * deadline passes, so a runaway runbook loop cannot hang the run), terminal facts, the operator's
 * identity, sha256 (OpenSSL EVP), a no-echo prompt on /dev/tty, random run ids and sleep.
 * Private to the engine: runbooks never see it. Depends on: Lua 5.4, OpenSSL libcrypto. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <openssl/evp.h>

#include "engine.h"
#include "rbaux.h"

/* The run deadline itself lives in rbaux.c (rb_run_deadline), so every C wait ends by it. */
#define HOOK_COUNT 1000        /* VM instructions between two looks at the clock */

/* core.now() -> monotonic seconds */
static int core_now(lua_State *L)
{
	lua_pushnumber(L, rb_mono_now());
	return 1;
}

/* core.time() -> wall-clock epoch seconds with sub-second precision */
static int core_time(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	return 1;
}

static void deadline_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	/* Raises again at every tick past the deadline, so a runbook that catches the error with
	 * pcall cannot keep running; core.pcall_deadline restores the previous deadline (none,
	 * outside a run) when the runbook has returned. */
	if (rb_run_deadline_passed())
		luaL_error(L, "deadline exceeded");
}

/* Installed once on the main thread when the engine creates the state: a hook belongs to a
 * thread, and a coroutine inherits its creator's hook, so every coroutine (also one a runbook
 * file creates while it loads) is bounded by the deadline. With no deadline the hook only
 * compares a number. */
void core_install_deadline_hook(lua_State *L)
{
	lua_sethook(L, deadline_hook, LUA_MASKCOUNT, HOOK_COUNT);
}

/* A state the engine did not create (a C test) gets the hook on first use. */
static void ensure_hook(lua_State *L)
{
	if (lua_gethook(L) != deadline_hook)
		core_install_deadline_hook(L);
}

static double check_seconds(lua_State *L, int arg)
{
	double secs = luaL_checknumber(L, arg);
	luaL_argcheck(L, isfinite(secs) && secs > 0 && secs <= 366 * 86400.0, arg,
		      "deadline must be a positive, finite number of seconds (at most a year)");
	return secs;
}

/* core.set_deadline(seconds_from_now | nil): arm or disarm the run deadline. */
static int core_set_deadline(lua_State *L)
{
	ensure_hook(L);
	if (lua_isnoneornil(L, 1)) {
		rb_set_run_deadline(0);
		return 0;
	}
	rb_set_run_deadline(rb_mono_now() + check_seconds(L, 1));
	return 0;
}

/* core.pcall_deadline(seconds | nil, msgh, f, ...) -> true, f's results | false, err, why
 * Calls f like xpcall(f, msgh, ...) with the deadline armed seconds from now (never later than
 * a deadline already armed; nil keeps the current one), then restores the previous deadline
 * with no Lua code in between, so the hook cannot fire in the caller once f is over.
 * why: "deadline" when the deadline had passed when f ended, "memory" when an allocation was
 * refused (the memory limit), else nil. */
static int core_pcall_deadline(lua_State *L)
{
	double prev = rb_run_deadline();
	int n = lua_gettop(L), status, expired;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	ensure_hook(L);
	if (!lua_isnil(L, 1)) {
		double d = rb_mono_now() + check_seconds(L, 1);
		if (prev <= 0 || d < prev)
			rb_set_run_deadline(d);
	}
	status = lua_pcall(L, n - 3, LUA_MULTRET, 2);
	expired = rb_run_deadline_passed();
	rb_set_run_deadline(prev);
	if (status == LUA_OK) {
		lua_pushboolean(L, 1);
		lua_replace(L, 2);   /* over msgh: true, results... */
		return lua_gettop(L) - 1;
	}
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	if (expired)
		lua_pushliteral(L, "deadline");
	else if (status == LUA_ERRMEM)
		lua_pushliteral(L, "memory");
	else
		lua_pushnil(L);
	return 3;
}

/* core.remaining() -> seconds left before the deadline, or nil when there is none */
static int core_remaining(lua_State *L)
{
	if (rb_run_deadline() <= 0)
		return 0;
	lua_pushnumber(L, rb_run_deadline() - rb_mono_now());
	return 1;
}

/* The engine's allocator state, or NULL in a state the engine did not create. */
static struct rb_alloc *engine_mem(lua_State *L)
{
	void *ud;
	return lua_getallocf(L, &ud) == engine_alloc ? ud : NULL;
}

/* core.set_memory_limit(bytes | nil): cap what the Lua state may hold (nil: no cap). */
static int core_set_memory_limit(lua_State *L)
{
	struct rb_alloc *a = engine_mem(L);
	lua_Integer n = luaL_optinteger(L, 1, 0);
	luaL_argcheck(L, n == 0 || n >= 16 * 1024 * 1024, 1, "a memory limit is at least 16 MiB");
	if (a == NULL)
		return luaL_error(L, "set_memory_limit: this Lua state was not created by the engine");
	a->limit = (size_t)n;
	return 0;
}

/* core.memory() -> bytes in use, limit (0 = none), peak; nil outside the engine's state */
static int core_memory(lua_State *L)
{
	struct rb_alloc *a = engine_mem(L);
	if (a == NULL)
		return 0;
	lua_pushinteger(L, (lua_Integer)a->used);
	lua_pushinteger(L, (lua_Integer)a->limit);
	lua_pushinteger(L, (lua_Integer)a->peak);
	return 3;
}

static int core_isatty(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	lua_pushboolean(L, isatty(fd));
	return 1;
}

/* core.user() -> the operator: $SUDO_USER when run through sudo, else the uid's login name */
static int core_user(lua_State *L)
{
	const char *sudo = getenv("SUDO_USER");
	struct passwd *pw = getpwuid(getuid());
	if (sudo && *sudo)
		lua_pushfstring(L, "%s (via sudo as %s)", sudo, pw ? pw->pw_name : "?");
	else if (pw)
		lua_pushstring(L, pw->pw_name);
	else
		lua_pushfstring(L, "uid %d", (int)getuid());
	return 1;
}

static int core_hostname(lua_State *L)
{
	char h[HOST_NAME_MAX + 1];
	if (gethostname(h, sizeof h) != 0)
		return luaL_fileresult(L, 0, NULL);
	h[sizeof h - 1] = '\0';
	lua_pushstring(L, h);
	return 1;
}

static void push_hex(lua_State *L, const unsigned char *d, unsigned n)
{
	static const char hex[] = "0123456789abcdef";
	char out[2 * EVP_MAX_MD_SIZE + 1];
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	lua_pushlstring(L, out, 2 * n);
}

/* core.sha256(string) -> hex digest */
static int core_sha256(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (!EVP_Digest(s, len, md, &n, EVP_sha256(), NULL))
		return luaL_error(L, "sha256 failed");
	push_hex(L, md, n);
	return 1;
}

/* core.sha256_file(path) -> hex digest | nil, msg, code */
static int core_sha256_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	unsigned n = 0;
	ssize_t r;
	char why[160];
	int fd;
	EVP_MD_CTX *ctx;
	/* a FIFO given as the runbook must not block the run */
	const char *code = rb_open_regular(path, O_RDONLY, 0, 0, &fd, why, sizeof why);

	if (code)
		return rb_failf(L, code, "%s: %s", path, why);
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		close(fd);
		return luaL_error(L, "sha256 failed");
	}
	while ((r = read(fd, buf, sizeof buf)) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)r);
	EVP_DigestFinal_ex(ctx, md, &n);
	EVP_MD_CTX_free(ctx);
	close(fd);
	if (r < 0)
		return rb_failf(L, "io", "%s: read error", path);
	push_hex(L, md, n);
	return 1;
}

/* core.prompt(text [, echo [, timeout]]) -> line | nil, msg, code. Reads from /dev/tty; with
 * echo false the terminal does not show what is typed (passwords). Nothing may hang: with no
 * answer within timeout seconds (default 300) it returns nil, msg, "timeout". */
static int core_prompt(lua_State *L)
{
	const char *text = luaL_checkstring(L, 1);
	int echo = lua_toboolean(L, 2);
	double timeout = luaL_optnumber(L, 3, 300);
	char line[4096];
	struct termios old, raw;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC), restore = 0;
	FILE *f;

	if (fd < 0) {
		return rb_fail(L, "no terminal to ask on", "notty");
	}
	if (!echo && tcgetattr(fd, &old) == 0) {
		raw = old;
		raw.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(fd, TCSAFLUSH, &raw) == 0;
	}
	if (write(fd, text, strlen(text)) < 0) { /* best effort */ }
	{
		struct pollfd pfd = {fd, POLLIN, 0};
		int ms = timeout > 0 ? (int)(timeout * 1000) : 0, r;
		while ((r = poll(&pfd, 1, ms)) < 0 && errno == EINTR)
			;
		if (r <= 0) {
			if (restore) {
				tcsetattr(fd, TCSAFLUSH, &old);
				if (write(fd, "\n", 1) < 0) { /* best effort */ }
			}
			close(fd);
			return rb_fail(L, "no answer in time", "timeout");
		}
	}
	f = fdopen(fd, "r");
	if (f == NULL) {
		if (restore)
			tcsetattr(fd, TCSAFLUSH, &old);
		close(fd);
		return luaL_fileresult(L, 0, "/dev/tty");
	}
	char *got = fgets(line, sizeof line, f);
	if (restore) {
		tcsetattr(fd, TCSAFLUSH, &old);
		if (write(fd, "\n", 1) < 0) { /* best effort */ }
	}
	fclose(f);
	if (got == NULL) {
		return rb_fail(L, "no answer (end of input)", "eof");
	}
	line[strcspn(line, "\r\n")] = '\0';
	lua_pushstring(L, line);
	explicit_bzero(line, sizeof line);
	return 1;
}

/* core.random_hex(nbytes) -> hex string from /dev/urandom */
static int core_random_hex(lua_State *L)
{
	int n = (int)luaL_optinteger(L, 1, 8);
	unsigned char buf[64];
	luaL_argcheck(L, n > 0 && n <= (int)sizeof buf, 1, "1..64 bytes");
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, (size_t)n) != n) {
		if (fd >= 0)
			close(fd);
		return luaL_error(L, "cannot read /dev/urandom");
	}
	close(fd);
	push_hex(L, buf, (unsigned)n);
	return 1;
}

static int core_sleep(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	struct timespec ts;
	if (s <= 0)
		return 0;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

static int core_getpid(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)getpid());
	return 1;
}

/* core.realpath(path) -> absolute path | nil, msg, code */
static int core_realpath(lua_State *L)
{
	const char *p = luaL_checkstring(L, 1);
	char out[PATH_MAX];
	if (realpath(p, out) == NULL) {
		int e = errno;
		return rb_failf(L, rb_errno_code(e), "%s: %s", p, strerror(e));
	}
	lua_pushstring(L, out);
	return 1;
}

static int core_build(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, "runbook.build");
	return 1;
}

static const luaL_Reg core_funcs[] = {
	{"now", core_now},
	{"time", core_time},
	{"set_deadline", core_set_deadline},
	{"remaining", core_remaining},
	{"pcall_deadline", core_pcall_deadline},
	{"set_memory_limit", core_set_memory_limit},
	{"memory", core_memory},
	{"isatty", core_isatty},
	{"user", core_user},
	{"hostname", core_hostname},
	{"sha256", core_sha256},
	{"sha256_file", core_sha256_file},
	{"prompt", core_prompt},
	{"random_hex", core_random_hex},
	{"sleep", core_sleep},
	{"getpid", core_getpid},
	{"realpath", core_realpath},
	{"build", core_build},
	{NULL, NULL}
};

int luaopen_runbook_core(lua_State *L)
{
	luaL_newlib(L, core_funcs);
	return 1;
}
