/* rbaux.c: TAP unit test of src/rbaux.c, the helpers every primitive family shares: the
 * nil,msg,code failures, the one errno map, the run deadline that bounds every wait, the TCP
 * connect (on 127.0.0.1 only), the unknown-key check and the typed option getters. */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "rbaux.h"

static int n_test, n_fail;

static void ok(int v, const char *name)
{
	n_test++;
	if (!v)
		n_fail++;
	printf("%s %d - %s\n", v ? "ok" : "not ok", n_test, name);
}

static void is_str(const char *got, const char *want, const char *name)
{
	int v = got && strcmp(got, want) == 0;
	ok(v, name);
	if (!v)
		printf("#      got: %s\n# expected: %s\n", got ? got : "(null)", want);
}

/* ---------------------------------------------------------------- options, run from Lua */

static const char *const keys[] = { "host", "port", "timeout", "tls", "name", "ratio", NULL };

/* opts(t): checks t's keys, then reads every option; returns them so the test can look. */
static int opts(lua_State *L)
{
	size_t len;
	rb_check_keys(L, 1, keys, "t.opts");
	lua_pushstring(L, rb_opt_lstring(L, 1, "host", "127.0.0.1", &len));
	lua_pushinteger(L, rb_opt_int(L, 1, "port", 25, 1, 65535));
	lua_pushnumber(L, rb_opt_timeout(L, 1, "timeout", 5));
	lua_pushboolean(L, rb_opt_bool(L, 1, "tls", 0));
	lua_pushnumber(L, rb_opt_number(L, 1, "ratio", 0.5, 0, 1));
	lua_pushinteger(L, (lua_Integer)len);
	return 6;
}

static int need_name(lua_State *L)
{
	rb_check_keys(L, 1, keys, NULL);
	lua_pushstring(L, rb_opt_required(L, 1, "name"));
	return 1;
}

static int failf_long(lua_State *L)
{
	return rb_failf(L, "io", "%s:%d: %s", "127.0.0.1", 25, luaL_checkstring(L, 1));
}

static const char lua_checks[] =
	"local opts, need_name, failf_long = ...\n"
	"local out = {}\n"
	"local function err(f, ...) local ok, e = pcall(f, ...); return ok and 'no error' or e end\n"
	"local h, p, to, tls, ratio, len = opts(nil)\n"
	"out[#out+1] = h == '127.0.0.1' and p == 25 and to == 5 and tls == false and ratio == 0.5 and len == 9\n"
	"h, p, to, tls = opts{ host = '::1', port = 2525, timeout = 0.5, tls = true }\n"
	"out[#out+1] = h == '::1' and p == 2525 and to == 0.5 and tls == true\n"
	"out[#out+1] = err(opts, { timout = 5 })\n"
	"out[#out+1] = err(need_name, { nmae = 'x' })\n"
	"out[#out+1] = err(opts, { [1] = 'x' })\n"
	"out[#out+1] = err(opts, 'host')\n"
	"out[#out+1] = err(opts, { host = 5 })\n"
	"out[#out+1] = err(opts, { port = 0 })\n"
	"out[#out+1] = err(opts, { port = 25.5 })\n"
	"out[#out+1] = err(opts, { timeout = 0 })\n"
	"out[#out+1] = err(opts, { timeout = '5' })\n"
	"out[#out+1] = err(opts, { tls = 'yes' })\n"
	"out[#out+1] = err(opts, { ratio = 2 })\n"
	"out[#out+1] = err(opts, { ratio = 0/0 })\n"
	"out[#out+1] = err(need_name, {})\n"
	"out[#out+1] = need_name { name = 'mx' }\n"
	"local r, msg, code = failf_long(string.rep('x', 3000))\n"
	"out[#out+1] = r == nil and #msg == #'127.0.0.1:25: ' + 3000 and msg:sub(1, 14) == '127.0.0.1:25: ' and code == 'io'\n"
	"for i = 1, #out do out[i] = tostring(out[i]) end\n"
	"return table.concat(out, '\\n')\n";

static void test_options(void)
{
	lua_State *L = luaL_newstate();
	const char *want[] = {
		"true", "true",
		"t.opts: unknown option 'timout'",
		"unknown option 'nmae'",
		"t.opts: option names must be strings (got a number)",
		"bad argument #1 to '?' (table expected, got string)",
		"option 'host' must be a string (got number)",
		"option 'port' must be an integer in 1..65535",
		"option 'port' must be an integer in 1..65535",
		"option 'timeout' must be a number of seconds in (0, 86400]",
		"option 'timeout' must be a number of seconds (got string)",
		"option 'tls' must be a boolean (got string)",
		"option 'ratio' out of range [0.0, 1.0]",
		"option 'ratio' out of range [0.0, 1.0]",
		"option 'name' is required",
		"mx",
		"true",
	};
	const char *names[] = {
		"getters: defaults with no options table",
		"getters: values from the table",
		"rb_check_keys: an unknown key raises, named with what",
		"rb_check_keys: what NULL: the bare message",
		"rb_check_keys: a non-string key raises",
		"rb_check_keys: a non-table raises",
		"rb_opt_string: wrong type",
		"rb_opt_int: out of range",
		"rb_opt_int: not an integer",
		"rb_opt_timeout: zero",
		"rb_opt_timeout: a string is not seconds",
		"rb_opt_bool: wrong type",
		"rb_opt_number: out of range",
		"rb_opt_number: NaN",
		"rb_opt_required: absent",
		"rb_opt_required: present",
		"rb_failf: a 3000-byte message arrives whole, with nil and the code",
	};
	luaL_openlibs(L);
	if (luaL_loadstring(L, lua_checks) != LUA_OK) {
		ok(0, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	lua_pushcfunction(L, opts);
	lua_pushcfunction(L, need_name);
	lua_pushcfunction(L, failf_long);
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
		ok(0, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	{
		const char *s = lua_tostring(L, -1);
		for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
			const char *nl = strchr(s, '\n');
			size_t n = nl ? (size_t)(nl - s) : strlen(s);
			char line[256];
			snprintf(line, sizeof line, "%.*s", (int)n, s);
			is_str(line, want[i], names[i]);
			s += n + (nl ? 1 : 0);
		}
	}
	lua_close(L);
}

/* ---------------------------------------------------------------- errno, clocks, sockets */

static void test_errno(void)
{
	is_str(rb_errno_code(ETIMEDOUT), "timeout", "errno: ETIMEDOUT timeout");
	is_str(rb_errno_code(ECONNREFUSED), "refused", "errno: ECONNREFUSED refused");
	is_str(rb_errno_code(EHOSTUNREACH), "unreachable", "errno: EHOSTUNREACH unreachable");
	is_str(rb_errno_code(ENETUNREACH), "unreachable", "errno: ENETUNREACH unreachable");
	is_str(rb_errno_code(EADDRNOTAVAIL), "unreachable", "errno: EADDRNOTAVAIL unreachable");
	is_str(rb_errno_code(ENOENT), "notfound", "errno: ENOENT notfound");
	is_str(rb_errno_code(EACCES), "denied", "errno: EACCES denied");
	is_str(rb_errno_code(EIO), "io", "errno: anything else io");
	{
		struct rb_err e = { NULL, "" };
		char longname[1000];
		memset(longname, 'n', sizeof longname - 1);
		longname[sizeof longname - 1] = '\0';
		ok(rb_errf(&e, "protocol", "%s:%d: bad", "127.0.0.1", 25) == -1, "rb_errf returns -1");
		is_str(e.code, "protocol", "rb_errf: the code is recorded");
		is_str(e.msg, "127.0.0.1:25: bad", "rb_errf: the message is formatted");
		rb_errf(&e, "io", "%s", longname);
		ok(strlen(e.msg) == sizeof e.msg - 1, "rb_errf: a long message is cut to the buffer, terminated");
	}
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listener(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

static void test_connect(void)
{
	const char *code = NULL;
	char msg[256];
	int port = 0, lfd = listener(&port), fd;
	char want[64];

	ok(lfd >= 0, "a listener on 127.0.0.1");
	fd = rb_tcp_connect("127.0.0.1", port, "127.0.0.1", rb_deadline_in(5), &code, msg, sizeof msg);
	ok(fd >= 0, "rb_tcp_connect: connects to a listener (bound to 127.0.0.1)");
	if (fd >= 0)
		close(fd);
	close(lfd);
	fd = rb_tcp_connect("127.0.0.1", port, NULL, rb_deadline_in(5), &code, msg, sizeof msg);
	ok(fd < 0, "rb_tcp_connect: the port closed: fails");
	is_str(code, "refused", "... code refused");
	snprintf(want, sizeof want, "connect to 127.0.0.1:%d: Connection refused", port);
	is_str(msg, want, "... the message names host and port");
	fd = rb_tcp_connect("localhost", 25, NULL, rb_deadline_in(5), &code, msg, sizeof msg);
	ok(fd < 0, "rb_tcp_connect: a name is never resolved");
	is_str(msg, "localhost:25: not an IP address", "... saying it is not an IP address");
	fd = rb_tcp_connect("127.0.0.1", 25, "::1", rb_deadline_in(5), &code, msg, sizeof msg);
	ok(fd < 0 && strstr(msg, "same family") != NULL, "rb_tcp_connect: a bind address of another family");
}

static void test_deadline(void)
{
	int sv[2];
	double t0, waited;
	int r;

	ok(rb_run_deadline() == 0 && !rb_run_deadline_passed(), "no run deadline armed at start");
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "a socket pair with nothing to read");
	t0 = rb_mono_now();
	rb_set_run_deadline(t0 + 0.2);
	ok(rb_deadline_in(10) <= t0 + 0.2 + 1e-9, "rb_deadline_in: never later than the run deadline");
	r = rb_wait_fd(sv[0], POLLIN, t0 + 5);
	waited = rb_mono_now() - t0;
	ok(r == 0, "rb_wait_fd: times out");
	ok(waited >= 0.19 && waited < 1.0, "... at the run deadline (0.2 s), not the caller's 5 s");
	ok(rb_run_deadline_passed(), "rb_run_deadline_passed after it");
	rb_set_run_deadline(0);
	ok(!rb_run_deadline_passed() && rb_deadline_in(10) > rb_mono_now() + 9,
	   "disarmed: the caller's deadline alone");
	ok(write(sv[1], "x", 1) == 1 && rb_wait_fd(sv[0], POLLIN, rb_deadline_in(5)) == 1,
	   "rb_wait_fd: ready when there is data");
	close(sv[0]);
	close(sv[1]);
}

/* ---------------------------------------------------------------- userdata */

static int closes, gcs;

static int h_close(lua_State *L)
{
	int *open = luaL_checkudata(L, 1, "t.handle");
	if (*open) {          /* idempotent, as rb_handle_type's contract asks */
		*open = 0;
		closes++;
	}
	return 0;
}

static int h_new(lua_State *L)
{
	int *open = lua_newuserdatauv(L, sizeof *open, 0);
	*open = 1;
	luaL_setmetatable(L, "t.handle");
	return 1;
}

static int box_gc(lua_State *L)
{
	(void)L;
	gcs++;
	return 0;
}

static int box_new(lua_State *L)
{
	int *z = rb_box(L, 64, "t.box", box_gc);
	int zero = 1;
	for (int i = 0; i < 16; i++)
		zero = zero && z[i] == 0;
	lua_pushboolean(L, zero);
	return 2;
}

static void test_userdata(void)
{
	static const luaL_Reg methods[] = { { "close", h_close }, { NULL, NULL } };
	lua_State *L = luaL_newstate();
	const char *src =
		"local new, box = ...\n"
		"do local h <close> = new() end\n"           /* __close */
		"local h = new(); h:close(); h:close()\n"     /* method, twice: one close */
		"new()\n"                                      /* dropped: __gc */
		"local b, zeroed = box(); b = nil\n"
		"collectgarbage(); collectgarbage()\n"
		"return zeroed\n";
	luaL_openlibs(L);
	rb_handle_type(L, "t.handle", methods, h_close);
	ok(lua_gettop(L) == 0, "rb_handle_type: leaves the stack as it was");
	if (luaL_loadstring(L, src) != LUA_OK) {
		ok(0, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	lua_pushcfunction(L, h_new);
	lua_pushcfunction(L, box_new);
	if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
		ok(0, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	ok(closes == 3, "rb_handle_type: one close serves <close>, the method (idempotent) and __gc");
	ok(lua_toboolean(L, -1), "rb_box: the userdata starts zeroed");
	ok(gcs == 1, "rb_box: its __gc runs when it is collected");
	lua_close(L);
}

static void test_buf(void)
{
	struct rb_buf b = {0}, capped = {0};
	char big[1000];
	int r = 0;

	memset(big, 'x', sizeof big);
	for (int i = 0; i < 100; i++)
		r |= rb_buf_add(&b, big, sizeof big);
	ok(r == 0 && b.n == 100000 && b.p[b.n] == '\0' && !b.truncated && !b.oom,
	   "rb_buf: 100 x 1000 bytes, NUL-terminated, no max");
	capped.max = 1500;
	rb_buf_add(&capped, big, sizeof big);
	r = rb_buf_add(&capped, "abcdefghij", 10);
	ok(r == 0 && capped.n == 1010 && !capped.truncated, "rb_buf: under max: kept");
	r = rb_buf_add(&capped, big, sizeof big);
	ok(r == 0 && capped.n == 1500 && capped.truncated, "rb_buf: past max: cut at max, truncated set");
	r = rb_buf_add(&capped, "y", 1);
	ok(r == 0 && capped.n == 1500 && strncmp(capped.p + 1000, "abcdefghij", 10) == 0,
	   "rb_buf: at max: further bytes dropped, the kept ones intact");
	rb_buf_free(&b);
	rb_buf_free(&b);
	ok(b.p == NULL && b.n == 0, "rb_buf_free: empties, idempotent");
	rb_buf_free(&capped);
}

int main(void)
{
	test_buf();
	test_userdata();
	test_errno();
	test_options();
	test_connect();
	test_deadline();
	printf("1..%d\n", n_test);
	return n_fail != 0;
}
