/* rbaux.h: the project's small lauxlib, what every primitive family shares:
 *   failures   rb_fail, rb_failf: push nil, message, code (STYLE.md rule 3) and return 3;
 *              struct rb_err / rb_errf: the same recorded in C state, pushed later
 *   codes      rb_errno_code: the one errno -> short stable code map
 *   clocks     rb_mono_now, the run deadline (armed by lcore.c) and rb_deadline_in
 *   sockets    rb_ip_addr, rb_wait_fd, rb_tcp_connect (numeric hosts only, deadline-bound)
 *   options    rb_check_keys (unknown keys raise) and the typed getters rb_opt_*
 *   buffers    struct rb_buf, a growable C byte buffer (optionally boxed in a Lua userdata)
 *   userdata   rb_box (a C resource freed by __gc), rb_handle_type (a handle's metatable)
 *   files      rb_type_name, rb_open_regular
 * Depends on: POSIX, Lua 5.4. */
#ifndef RUNBOOK_RBAUX_H
#define RUNBOOK_RBAUX_H
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <lauxlib.h>
#include <lua.h>

/* ---------------------------------------------------------------- failures */

/* Pushes nil, msg, code; returns 3 (return rb_fail(L, "...", "timeout");). */
int rb_fail(lua_State *L, const char *msg, const char *code);
/* The same with a printf-style message of any length. */
int rb_failf(lua_State *L, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A failure recorded in C state where no Lua call may run (inside a dialogue, a retry loop),
 * pushed later with rb_fail(L, e.msg, e.code). */
struct rb_err {
	const char *code;          /* NULL: none */
	char msg[512];
};
/* Records code and the formatted message in e; returns -1 (return rb_errf(&e, ...);). */
int rb_errf(struct rb_err *e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The short stable code for an errno, decided once for every family:
 *   ETIMEDOUT timeout; ECONNREFUSED refused;
 *   EHOSTUNREACH ENETUNREACH EADDRNOTAVAIL ENETDOWN EHOSTDOWN unreachable;
 *   ENOENT ENOTDIR notfound; EACCES EPERM denied; anything else io.
 * A caller that knows more (a reset in the middle of an SMTP reply is a protocol failure)
 * decides before asking. */
const char *rb_errno_code(int e);

/* ---------------------------------------------------------------- clocks and the deadline */

/* CLOCK_MONOTONIC in seconds. */
double rb_mono_now(void);

/* The run deadline, in rb_mono_now() seconds, 0 when none is armed. lcore.c arms it
 * (core.set_deadline, core.pcall_deadline); every wait below ends by it. */
double rb_run_deadline(void);
void rb_set_run_deadline(double at);
int rb_run_deadline_passed(void);

/* The absolute deadline `seconds` from now, never later than the run deadline. */
double rb_deadline_in(double seconds);

/* ---------------------------------------------------------------- sockets */

/* Parses a numeric IPv4/IPv6 address and a port into *ss. Returns 0, or -1 when host is not
 * an IP address (no name is ever resolved here: a lookup would be traffic nobody chose). */
int rb_ip_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);

/* Waits until fd is ready for events, or until deadline (absolute, rb_mono_now() seconds;
 * never past the run deadline) passes. Returns 1 ready, 0 timeout, -1 error (errno set).
 * Retries on EINTR. */
int rb_wait_fd(int fd, short events, double deadline);

/* Connects a TCP socket to host:port (numeric), optionally bound to the local address
 * bind_addr (numeric, same family, or NULL), before deadline (and the run deadline).
 * Returns the fd (non-blocking, close-on-exec, TCP_NODELAY), or -1 with *code (timeout
 * refused unreachable denied io), msg ("connect to HOST:PORT: reason") and errno (the reason;
 * ETIMEDOUT for a timeout) set. */
int rb_tcp_connect(const char *host, int port, const char *bind_addr, double deadline,
		   const char **code, char *msg, size_t msglen);

/* ---------------------------------------------------------------- options tables */

/* Raises unless the value at idx is a table whose keys are all strings listed in allowed
 * (NULL-ended): a typo such as {timout = 5} is an error, never a silent default. None or nil
 * counts as an empty table. what (e.g. "http.request", or NULL) prefixes the message:
 * "http.request: unknown option 'timout'". */
void rb_check_keys(lua_State *L, int idx, const char *const allowed[], const char *what);

/* Typed getters. idx is an options table, or none/nil (every option then takes its default).
 * Each raises (a programming error) "option 'KEY' must be ..." on a wrong type or range.
 * Strings stay referenced by the options table, so they live as long as it does. */
const char *rb_opt_string(lua_State *L, int idx, const char *key, const char *dflt);
const char *rb_opt_lstring(lua_State *L, int idx, const char *key, const char *dflt, size_t *len);
/* Raises "option 'KEY' is required" when absent. */
const char *rb_opt_required(lua_State *L, int idx, const char *key);
lua_Integer rb_opt_int(lua_State *L, int idx, const char *key, lua_Integer dflt,
		       lua_Integer min, lua_Integer max);
/* A finite number in [min, max]. */
double rb_opt_number(lua_State *L, int idx, const char *key, double dflt, double min, double max);
int rb_opt_bool(lua_State *L, int idx, const char *key, int dflt);
/* Seconds in (0, 86400]. */
double rb_opt_timeout(lua_State *L, int idx, const char *key, double dflt);

/* ---------------------------------------------------------------- userdata */

/* Pushes a new zeroed userdata of size bytes whose metatable tname (created on first use) has
 * gc as __gc: a C resource boxed this way cannot leak when Lua raises (STYLE.md rule 5). */
void *rb_box(lua_State *L, size_t size, const char *tname, lua_CFunction gc);

/* Creates the metatable tname of a handle type (once): methods as __index, close as both __gc
 * and __close, so one idempotent close serves close(), the collector and `<close>` (STYLE.md
 * rule 4). Leaves the stack as it was. */
void rb_handle_type(lua_State *L, const char *tname, const luaL_Reg methods[], lua_CFunction close);

/* ---------------------------------------------------------------- buffers */

/* A growable byte buffer owned by C (so it can fill while no Lua call may raise), kept
 * NUL-terminated once it holds a byte. max > 0: bytes past max are dropped and truncated is
 * set. A failed allocation sets oom; every later add fails too. Zero-initialise it. */
struct rb_buf {
	char *p;
	size_t n, cap, max;
	int truncated, oom;
};

/* Appends n bytes. Returns 0 (also when they were dropped past max), or -1 out of memory. */
int rb_buf_add(struct rb_buf *b, const void *s, size_t n);
/* Frees the bytes and empties b; idempotent. */
void rb_buf_free(struct rb_buf *b);
/* Pushes a userdata holding an empty rb_buf whose __gc frees it, so a Lua error cannot leak
 * the bytes; returns the buffer. */
struct rb_buf *rb_buf_box(lua_State *L);

/* ---------------------------------------------------------------- files */

/* "file", "directory", "symlink", "socket", "fifo" or "other". */
const char *rb_type_name(mode_t m);

/* Opens path for reading or appending (flags) so that it never blocks and is a regular file.
 * private_file: no symlink followed, owned by the running user, no group/other bits (secrets,
 * the audit journal). Returns NULL with *fdp open (blocking again), or a short error code
 * (notfound denied io type) with the reason in why. */
const char *rb_open_regular(const char *path, int flags, int private_file, mode_t create_mode,
			    int *fdp, char *why, size_t whylen);

#endif
