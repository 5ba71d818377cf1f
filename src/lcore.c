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
#include <openssl/evp.h>

static double deadline;        /* CLOCK_MONOTONIC seconds; 0 = none */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* core.now() -> monotonic seconds */
static int core_now(lua_State *L)
{
	lua_pushnumber(L, mono_now());
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
	 * pcall cannot keep running; the engine disarms the hook once the runbook has returned. */
	if (deadline > 0 && mono_now() > deadline)
		luaL_error(L, "deadline exceeded");
}

/* core.set_deadline(seconds_from_now | nil): arm or disarm the run deadline on this thread
 * (coroutines created later inherit the hook). */
static int core_set_deadline(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		deadline = 0;
		lua_sethook(L, NULL, 0, 0);
		return 0;
	}
	double secs = luaL_checknumber(L, 1);
	luaL_argcheck(L, secs > 0, 1, "deadline must be positive");
	deadline = mono_now() + secs;
	lua_sethook(L, deadline_hook, LUA_MASKCOUNT, 10000);
	return 0;
}

/* core.remaining() -> seconds left before the deadline, or nil when there is none */
static int core_remaining(lua_State *L)
{
	if (deadline <= 0)
		return 0;
	lua_pushnumber(L, deadline - mono_now());
	return 1;
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
	/* O_NONBLOCK and S_ISREG: a FIFO given as the runbook must not block the run */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	EVP_MD_CTX *ctx;

	if (fd < 0) {
		int e = errno;
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(e));
		lua_pushstring(L, e == ENOENT ? "notfound" : e == EACCES ? "denied" : "io");
		return 3;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		lua_pushnil(L);
		lua_pushfstring(L, "%s: not a regular file", path);
		lua_pushliteral(L, "type");
		return 3;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
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
	if (r < 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: read error", path);
		lua_pushliteral(L, "io");
		return 3;
	}
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
		lua_pushnil(L);
		lua_pushliteral(L, "no terminal to ask on");
		lua_pushliteral(L, "notty");
		return 3;
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
			lua_pushnil(L);
			lua_pushliteral(L, "no answer in time");
			lua_pushliteral(L, "timeout");
			return 3;
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
		lua_pushnil(L);
		lua_pushliteral(L, "no answer (end of input)");
		lua_pushliteral(L, "eof");
		return 3;
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
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", p, strerror(e));
		lua_pushstring(L, e == ENOENT ? "notfound" : "io");
		return 3;
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
