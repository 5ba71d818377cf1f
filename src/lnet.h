/* lnet.h: TCP connect with a deadline and a local bind, shared by lnet.c (runbook.net),
 * lsmtp.c and ldns.c. Hosts are numeric IP addresses only: this layer never resolves a name
 * (a name lookup through the system resolver would be traffic the caller did not choose). */
#ifndef RUNBOOK_LNET_H
#define RUNBOOK_LNET_H
#include <stddef.h>
#include <sys/socket.h>

struct rbnet_err {
	const char *code;          /* timeout refused unreachable io */
	char msg[256];
};

/* Monotonic clock in seconds. */
double rbnet_now(void);

/* Parses a numeric IPv4/IPv6 address and port into *ss. Returns 0 or -1 (not an IP address). */
int rbnet_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);

/* Waits until fd is ready for events or the monotonic deadline passes.
 * Returns 1 ready, 0 timeout, -1 error (errno set). Retries on EINTR. */
int rbnet_wait(int fd, short events, double deadline);

/* Connects a non-blocking TCP socket to host:port (numeric), optionally bound to the local
 * address bind (numeric or NULL), before the deadline. Returns the fd (left non-blocking,
 * TCP_NODELAY set) or -1 with *e filled. */
int rbnet_connect(const char *host, int port, const char *bind, double deadline,
		  struct rbnet_err *e);

/* The short error code for a socket errno (refused, unreachable, timeout, io). */
const char *rbnet_errno_code(int err);



#include <lua.h>

/* Options-table helpers shared by the network families. Each raises (programming error) on a
 * wrong type; rbnet_check_options raises on a key that is not in the NULL-terminated list. */
void rbnet_check_options(lua_State *L, int idx, const char *const allowed[]);
const char *rbnet_opt_string(lua_State *L, int idx, const char *key, const char *dflt);
double rbnet_opt_number(lua_State *L, int idx, const char *key, double dflt);
int rbnet_opt_bool(lua_State *L, int idx, const char *key, int dflt);

/* Validates an optional numeric "timeout" option (seconds, > 0); default dflt. */
double rbnet_opt_timeout(lua_State *L, int idx, double dflt);
#endif
