/* exec_spawn.h: the process machinery under runbook.exec (lexec.c): a child started from an
 * argv (never a shell) in its own process group with pipes, its output collected within a
 * deadline, and the group killed on timeout. Plain C: nothing here touches Lua, so nothing here
 * can raise while a child or a C buffer is live. Depends on: POSIX. */
#ifndef RUNBOOK_EXEC_SPAWN_H
#define RUNBOOK_EXEC_SPAWN_H
#include <stddef.h>
#include <sys/types.h>

#include "rbaux.h"

#define EXEC_MAX_ARGS 256
#define EXEC_MAX_ENV 64

/* Collected, checked arguments of run/spawn: everything that can raise is done before fork.
 * The strings stay referenced by the caller's Lua tables. */
struct exec_cmd {
	const char *argv[EXEC_MAX_ARGS + 1];
	const char *env_k[EXEC_MAX_ENV], *env_v[EXEC_MAX_ENV];
	int nenv;
	const char *cwd;
	const char *stdin_data;
	size_t stdin_len;
	double timeout;
	size_t max_output;
};

/* Forks the child in its own process group. Returns the pid, or -errno (an exec or chdir error
 * comes back through a close-on-exec pipe). fds: [0] the child's stdin writer (-1 without
 * stdin_data), [1] its stdout, [2] its stderr. */
pid_t exec_start_child(const struct exec_cmd *c, int fds[3]);

/* Kills the child's whole group: TERM, a short grace, then KILL; reaps it. Returns its status. */
int exec_kill_group(pid_t pid);

/* Feeds c->stdin_data and collects stdout/stderr into out/err (C-owned, capped by their max)
 * until both close or the
 * deadline (absolute, rb_mono_now() seconds) passes, then reaps the child, killing its group on
 * a timeout or when memory ran out. Closes fds. Returns 0 with *status set, 1 timed out, or
 * -1 out of memory. */
int exec_collect(const struct exec_cmd *c, pid_t pid, int fds[3], double deadline,
		 struct rb_buf *out, struct rb_buf *err, int *status);

#endif
