/* lexec.c: runbook.exec, the local host's primitives.
 *
 *   exec.run(argv, {timeout=, max_output=, stdin=, cwd=, env={K=V}})
 *       -> {stdout=, stderr=, status=, signal=, truncated=, ms=} | nil, msg, code
 *   exec.spawn(argv, {timeout=, cwd=, env=, max_stderr=}) -> proc; proc:read() -> chunk | nil (EOF)
 *       | nil, msg, code; proc:close() -> {status=, signal=, stderr=}
 *   exec.stat(path) / exec.lstat(path) -> {uid, gid, user, group, mode, perms, type, size}
 *   exec.statvfs(path) -> {size_kb, used_kb, avail_kb, use_pct, files, files_free}
 *   exec.readfile(path [, max]) -> string | nil, msg, code
 *   exec.read_private(path [, max]) -> string | nil, msg, code   (secret files: see below)
 *   exec.append(path, data, mode) -> true | nil, msg, code  (one write(2), O_APPEND; journals)
 *   exec.writefile(path, data, mode) -> true | nil, msg, code (temp file + rename)
 *
 * argv only, never a shell. Each child leads its own process group; a timeout kills the whole
 * group (TERM, then KILL after a grace period). Output beyond max_output is drained and dropped.
 * Every file this module reads is opened by rb_open_regular(): O_NONBLOCK (a FIFO cannot block the
 * open or the read) and fstat S_ISREG on the opened descriptor (a FIFO, device or directory is
 * refused with code "type"). read_private and append also refuse a symlink as the last component
 * (O_NOFOLLOW) and a file not owned by the running user or open to group/others ("denied").
 * A command's timeout never reaches past the run deadline. Codes: notfound denied type timeout
 * io cap. The process machinery (fork, pipes, process groups) is exec_spawn.c.
 * Depends on: exec_spawn.h, rbaux.h, Lua 5.4, POSIX. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec_spawn.h"
#include "rbaux.h"

#define PROC_MT "runbook.exec.proc"

static const char *const run_keys[] = { "timeout", "max_output", "max_stderr", "cwd", "env", "stdin", NULL };
static const char *const spawn_keys[] = { "timeout", "max_output", "max_stderr", "cwd", "env", NULL };

/* env = {NAME = value, ...}: at most EXEC_MAX_ENV string pairs, anchored by the options table. */
static void check_env(lua_State *L, int idx, struct exec_cmd *c)
{
	if (lua_type(L, idx) != LUA_TTABLE || lua_getfield(L, idx, "env") == LUA_TNIL) {
		if (lua_type(L, idx) == LUA_TTABLE)
			lua_pop(L, 1);
		return;
	}
	luaL_checktype(L, -1, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (c->nenv >= EXEC_MAX_ENV)
			luaL_error(L, "too many env entries");
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "env entries must be string = string");
		c->env_k[c->nenv] = lua_tostring(L, -2);
		c->env_v[c->nenv] = lua_tostring(L, -1);
		c->nenv++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* argv at 1, options at idx (run: with stdin) into c; raises on anything wrong. */
static void check_opts(lua_State *L, int idx, struct exec_cmd *c, int allow_stdin)
{
	int n = (int)luaL_len(L, 1);
	luaL_argcheck(L, n >= 1 && n <= EXEC_MAX_ARGS, 1, "argv must hold 1..256 strings");
	for (int i = 1; i <= n; i++) {
		size_t len;
		const char *s;
		lua_rawgeti(L, 1, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "bad argument #1 (argv[%d] must be a string)", i);
		s = lua_tolstring(L, -1, &len);
		if (strlen(s) != len)
			luaL_error(L, "bad argument #1 (argv[%d] contains a NUL byte)", i);
		c->argv[i - 1] = s;     /* anchored by the argv table on the stack */
		lua_pop(L, 1);
	}
	c->argv[n] = NULL;
	rb_check_keys(L, idx, allow_stdin ? run_keys : spawn_keys, allow_stdin ? "exec.run" : "exec.spawn");
	c->timeout = rb_opt_timeout(L, idx, "timeout", 10);
	c->max_output = (size_t)rb_opt_int(L, idx, "max_output", 16 * 1024 * 1024, 1, LUA_MAXINTEGER);
	c->max_output = (size_t)rb_opt_int(L, idx, "max_stderr", (lua_Integer)c->max_output, 1, LUA_MAXINTEGER);
	c->cwd = rb_opt_string(L, idx, "cwd", NULL);
	if (allow_stdin)
		c->stdin_data = rb_opt_lstring(L, idx, "stdin", NULL, &c->stdin_len);
	check_env(L, idx, c);
}

static void push_status(lua_State *L, int status)
{
	if (WIFEXITED(status)) {
		lua_pushinteger(L, WEXITSTATUS(status));
		lua_setfield(L, -2, "status");
	} else if (WIFSIGNALED(status)) {
		lua_pushinteger(L, 128 + WTERMSIG(status));
		lua_setfield(L, -2, "status");
		lua_pushinteger(L, WTERMSIG(status));
		lua_setfield(L, -2, "signal");
	}
}

/* The message of a timeout: the command's own, or the run deadline when it came first
 * (deadline was clipped to it). */
static int push_timeout(lua_State *L, const char *argv0, double timeout, double t0, double deadline)
{
	if (deadline < t0 + timeout)
		return rb_failf(L, "timeout", "%s: the run deadline passed (process group killed)", argv0);
	return rb_failf(L, "timeout", "%s: timed out after %s s (process group killed)", argv0,
	                lua_pushfstring(L, "%f", (lua_Number)timeout));   /* Lua's number format */
}

/* exec.run(argv, opts) */
static int exec_run(lua_State *L)
{
	struct exec_cmd c;
	struct rb_buf out = {0}, err = {0};
	int fds[3], status = 0, r;
	double t0, deadline;
	pid_t pid;

	memset(&c, 0, sizeof c);
	luaL_checktype(L, 1, LUA_TTABLE);
	check_opts(L, 2, &c, 1);
	out.max = err.max = c.max_output;
	t0 = rb_mono_now();
	deadline = rb_deadline_in(c.timeout);
	pid = exec_start_child(&c, fds);
	if (pid < 0)
		return rb_failf(L, rb_errno_code((int)-pid), "%s: %s", c.argv[0], strerror((int)-pid));
	r = exec_collect(&c, pid, fds, deadline, &out, &err, &status);
	if (r != 0) {
		rb_buf_free(&out);
		rb_buf_free(&err);
		if (r < 0)
			return luaL_error(L, "out of memory collecting output of %s", c.argv[0]);
		return push_timeout(L, c.argv[0], c.timeout, t0, deadline);
	}
	lua_createtable(L, 0, 6);
	lua_pushlstring(L, out.p ? out.p : "", out.n);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, err.p ? err.p : "", err.n);
	lua_setfield(L, -2, "stderr");
	rb_buf_free(&out);
	rb_buf_free(&err);
	push_status(L, status);
	lua_pushboolean(L, out.truncated || err.truncated);
	lua_setfield(L, -2, "truncated");
	lua_pushnumber(L, (rb_mono_now() - t0) * 1000);
	lua_setfield(L, -2, "ms");
	return 1;
}

/* ---------------------------------------------------------------- spawn: streaming stdout */

struct proc {
	pid_t pid;             /* 0 once closed */
	int out, err;
	double deadline;
	struct rb_buf errbuf;
	int status, timed_out;
};

static struct proc *check_proc(lua_State *L)
{
	return luaL_checkudata(L, 1, PROC_MT);
}

static void proc_drain_err(struct proc *p)
{
	char chunk[4096];
	ssize_t n = -1;
	while (p->err >= 0 && (n = read(p->err, chunk, sizeof chunk)) > 0)
		rb_buf_add(&p->errbuf, chunk, (size_t)n);
	if (p->err >= 0 && n == 0) {
		close(p->err);
		p->err = -1;
	}
}

/* One idempotent close: kill what is left, reap, free. */
static void proc_release(struct proc *p)
{
	if (p->pid > 0) {
		int st = 0;
		if (p->out >= 0) close(p->out);
		proc_drain_err(p);
		if (p->err >= 0) close(p->err);
		p->out = p->err = -1;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid)
			kill(-p->pid, SIGKILL);
		else
			st = exec_kill_group(p->pid);
		p->status = st;
		p->pid = 0;
	}
}

static int exec_spawn(lua_State *L)
{
	struct exec_cmd c;
	int fds[3];
	struct proc *p;

	memset(&c, 0, sizeof c);
	luaL_checktype(L, 1, LUA_TTABLE);
	check_opts(L, 2, &c, 0);
	p = lua_newuserdatauv(L, sizeof *p, 0);
	memset(p, 0, sizeof *p);
	p->out = p->err = -1;
	luaL_setmetatable(L, PROC_MT);
	pid_t pid = exec_start_child(&c, fds);
	if (pid < 0)
		return rb_failf(L, rb_errno_code((int)-pid), "%s: %s", c.argv[0], strerror((int)-pid));
	p->pid = pid;
	p->out = fds[1];
	p->err = fds[2];
	p->errbuf.max = c.max_output < 65536 ? c.max_output : 65536;
	p->deadline = rb_deadline_in(c.timeout);
	fcntl(p->err, F_SETFL, O_NONBLOCK);
	return 1;
}

/* proc:read() -> next stdout chunk | nil at EOF | nil, msg, "timeout" */
static int proc_read(lua_State *L)
{
	struct proc *p = check_proc(L);
	char chunk[65536];
	if (p->pid == 0 || p->out < 0) {
		lua_pushnil(L);
		return 1;
	}
	for (;;) {
		struct pollfd pf[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
		int ms = (int)((p->deadline - rb_mono_now()) * 1000);
		if (ms <= 0) {
			p->timed_out = 1;
			proc_release(p);
			return rb_fail(L, "command timed out (process group killed)", "timeout");
		}
		int r = poll(pf, p->err >= 0 ? 2 : 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (p->err >= 0 && pf[1].revents)
			proc_drain_err(p);
		if (pf[0].revents) {
			ssize_t n = read(p->out, chunk, sizeof chunk);
			if (n > 0) {
				lua_pushlstring(L, chunk, (size_t)n);
				return 1;
			}
			if (n == 0 || errno != EINTR) {
				close(p->out);
				p->out = -1;
				lua_pushnil(L);
				return 1;
			}
		}
	}
}

/* proc:close() -> {status=, signal=, stderr=, timed_out=} */
static int proc_close(lua_State *L)
{
	struct proc *p = check_proc(L);
	proc_release(p);
	lua_createtable(L, 0, 4);
	push_status(L, p->status);
	lua_pushlstring(L, p->errbuf.p ? p->errbuf.p : "", p->errbuf.n);
	lua_setfield(L, -2, "stderr");
	lua_pushboolean(L, p->timed_out);
	lua_setfield(L, -2, "timed_out");
	rb_buf_free(&p->errbuf);
	return 1;
}

static int proc_gc(lua_State *L)
{
	struct proc *p = check_proc(L);
	proc_release(p);
	rb_buf_free(&p->errbuf);
	return 0;
}

/* ---------------------------------------------------------------- files */

static int push_stat(lua_State *L, int use_lstat)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;
	char perms[8];
	if ((use_lstat ? lstat(path, &st) : stat(path, &st)) < 0)
		return rb_failf(L, rb_errno_code(errno), "%s: %s", path, strerror(errno));
	struct passwd *pw = getpwuid(st.st_uid);
	struct group *gr = getgrgid(st.st_gid);
	lua_createtable(L, 0, 8);
	lua_pushinteger(L, st.st_uid); lua_setfield(L, -2, "uid");
	lua_pushinteger(L, st.st_gid); lua_setfield(L, -2, "gid");
	if (pw) { lua_pushstring(L, pw->pw_name); lua_setfield(L, -2, "user"); }
	if (gr) { lua_pushstring(L, gr->gr_name); lua_setfield(L, -2, "group"); }
	lua_pushinteger(L, st.st_mode & 07777); lua_setfield(L, -2, "mode");
	snprintf(perms, sizeof perms, "%04o", (unsigned)(st.st_mode & 07777));
	lua_pushstring(L, perms); lua_setfield(L, -2, "perms");
	lua_pushstring(L, rb_type_name(st.st_mode)); lua_setfield(L, -2, "type");
	lua_pushinteger(L, (lua_Integer)st.st_size); lua_setfield(L, -2, "size");
	return 1;
}

static int exec_stat(lua_State *L) { return push_stat(L, 0); }
static int exec_lstat(lua_State *L) { return push_stat(L, 1); }

static int exec_statvfs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct statvfs v;
	if (statvfs(path, &v) < 0)
		return rb_failf(L, rb_errno_code(errno), "%s: %s", path, strerror(errno));
	double bs = (double)v.f_frsize / 1024.0;
	double size = (double)v.f_blocks * bs, avail = (double)v.f_bavail * bs;
	double used = ((double)v.f_blocks - (double)v.f_bfree) * bs;
	lua_createtable(L, 0, 6);
	lua_pushinteger(L, (lua_Integer)size); lua_setfield(L, -2, "size_kb");
	lua_pushinteger(L, (lua_Integer)used); lua_setfield(L, -2, "used_kb");
	lua_pushinteger(L, (lua_Integer)avail); lua_setfield(L, -2, "avail_kb");
	/* as df(1): used / (used + available), rounded up */
	double denom = used + avail;
	lua_pushinteger(L, denom > 0 ? (lua_Integer)((used * 100 + denom - 1) / denom) : 0);
	lua_setfield(L, -2, "use_pct");
	lua_pushinteger(L, (lua_Integer)v.f_files); lua_setfield(L, -2, "files");
	lua_pushinteger(L, (lua_Integer)v.f_favail); lua_setfield(L, -2, "files_free");
	return 1;
}

static int read_file(lua_State *L, int private_file)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, 16 * 1024 * 1024);
	luaL_Buffer b;
	char why[160];
	int fd;
	const char *code = rb_open_regular(path, O_RDONLY, private_file, 0, &fd, why, sizeof why);
	if (code)
		return rb_failf(L, code, "%s: %s", path, why);
	luaL_buffinit(L, &b);   /* a Lua error below would leak fd: only allocation can raise */
	for (;;) {
		char *p = luaL_prepbuffer(&b);
		ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return rb_failf(L, "io", "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		luaL_addsize(&b, (size_t)n);
		if ((lua_Integer)luaL_bufflen(&b) > max) {
			close(fd);
			return rb_failf(L, "cap", "%s: larger than %lld bytes", path, (long long)max);
		}
	}
	close(fd);
	luaL_pushresult(&b);
	return 1;
}

static int exec_readfile(lua_State *L) { return read_file(L, 0); }
static int exec_read_private(lua_State *L) { return read_file(L, 1); }

/* exec.append(path, data, mode): the audit journal. Created with mode (0600) if missing; an
 * existing file must be a regular file of ours, not a symlink, closed to group and others. */
static int exec_append(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	mode_t mode = (mode_t)luaL_optinteger(L, 3, 0600);
	char why[160];
	int fd;
	const char *code = rb_open_regular(path, O_WRONLY | O_APPEND | O_CREAT, 1, mode & 0700, &fd, why, sizeof why);
	if (code)
		return rb_failf(L, code, "%s: %s", path, why);
	ssize_t w = write(fd, data, len);
	int e = errno;
	if (close(fd) < 0 && w == (ssize_t)len)
		return rb_failf(L, "io", "%s: %s", path, strerror(errno));
	if (w != (ssize_t)len)
		return rb_failf(L, "io", "%s: %s", path, w < 0 ? strerror(e) : "short write");
	lua_pushboolean(L, 1);
	return 1;
}

static int exec_writefile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	mode_t mode = (mode_t)luaL_optinteger(L, 3, 0644);
	const char *tmp = lua_pushfstring(L, "%s.runbook-tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return rb_failf(L, rb_errno_code(errno), "%s: %s", path, strerror(errno));
	ssize_t w = write(fd, data, len);
	int e = errno;
	if (w != (ssize_t)len || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return rb_failf(L, "io", "%s: %s", path, w < 0 ? strerror(e) : "short write");
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		return rb_failf(L, rb_errno_code(e), "%s: %s", path, strerror(e));
	}
	lua_pushboolean(L, 1);
	return 1;
}

static const luaL_Reg exec_funcs[] = {
	{"run", exec_run},
	{"spawn", exec_spawn},
	{"stat", exec_stat},
	{"lstat", exec_lstat},
	{"statvfs", exec_statvfs},
	{"readfile", exec_readfile},
	{"read_private", exec_read_private},
	{"append", exec_append},
	{"writefile", exec_writefile},
	{NULL, NULL}
};

static const luaL_Reg proc_methods[] = {
	{"read", proc_read},
	{"close", proc_close},
	{NULL, NULL}
};

int luaopen_runbook_exec(lua_State *L)
{
	rb_handle_type(L, PROC_MT, proc_methods, proc_gc);
	luaL_newlib(L, exec_funcs);
	return 1;
}
