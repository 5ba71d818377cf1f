/* exec_spawn.c: starting a child from an argv in its own process group, collecting its output
 * within a deadline, killing the group on timeout (exec_spawn.h). Depends on: POSIX, rbaux.h
 * (the clock and the run deadline). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec_spawn.h"
#include "rbaux.h"

pid_t exec_start_child(const struct exec_cmd *c, int fds[3])
{
	int in[2] = {-1, -1}, out[2], err[2], rep[2];
	pid_t pid;
	int e = 0;

	if (pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(err, O_CLOEXEC) < 0) {
		e = errno;
		close(out[0]); close(out[1]);
		return -e;
	}
	if (pipe2(rep, O_CLOEXEC) < 0 || (c->stdin_data && pipe2(in, O_CLOEXEC) < 0)) {
		e = errno;
		close(out[0]); close(out[1]); close(err[0]); close(err[1]);
		return -e;
	}
	pid = fork();
	if (pid < 0) {
		e = errno;
		close(out[0]); close(out[1]); close(err[0]); close(err[1]); close(rep[0]); close(rep[1]);
		if (in[0] >= 0) { close(in[0]); close(in[1]); }
		return -e;
	}
	if (pid == 0) {
		int devnull;
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		if (in[0] >= 0)
			dup2(in[0], 0);
		else if ((devnull = open("/dev/null", O_RDONLY)) >= 0)
			dup2(devnull, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		for (int i = 0; i < c->nenv; i++)
			setenv(c->env_k[i], c->env_v[i], 1);
		if (c->cwd && chdir(c->cwd) < 0) {
			e = errno;
			if (write(rep[1], &e, sizeof e) < 0) { /* nothing to do */ }
			_exit(127);
		}
		execvp(c->argv[0], (char *const *)c->argv);
		e = errno;
		if (write(rep[1], &e, sizeof e) < 0) { /* nothing to do */ }
		_exit(127);
	}
	setpgid(pid, pid);      /* both sides, so the group exists before any kill */
	close(out[1]); close(err[1]); close(rep[1]);
	if (in[0] >= 0)
		close(in[0]);
	if (read(rep[0], &e, sizeof e) == (ssize_t)sizeof e) {
		close(rep[0]); close(out[0]); close(err[0]);
		if (in[1] >= 0)
			close(in[1]);
		waitpid(pid, NULL, 0);
		return -e;
	}
	close(rep[0]);
	fds[0] = in[1];
	fds[1] = out[0];
	fds[2] = err[0];
	return pid;
}

int exec_kill_group(pid_t pid)
{
	int status = 0;
	kill(-pid, SIGTERM);
	for (int i = 0; i < 20; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			kill(-pid, SIGKILL);   /* stragglers in the group */
			return status;
		}
		usleep(25000);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

/* Writes what the child's stdin can take now; closes it when all is written (or it failed). */
static void feed_stdin(const struct exec_cmd *c, int fds[3], size_t *in_off)
{
	ssize_t w = write(fds[0], c->stdin_data + *in_off, c->stdin_len - *in_off);
	if (w > 0)
		*in_off += (size_t)w;
	if (w < 0 && errno != EAGAIN)
		*in_off = c->stdin_len;
	if (*in_off >= c->stdin_len) {
		close(fds[0]);
		fds[0] = -1;
	}
}

/* Reads what fds[which] has into b; closes it at EOF or on an error. Returns -1 out of memory. */
static int drain(int fds[3], int which, struct rb_buf *b)
{
	char chunk[65536];
	ssize_t n = read(fds[which], chunk, sizeof chunk);
	if (n > 0)
		return rb_buf_add(b, chunk, (size_t)n);
	if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
		close(fds[which]);
		fds[which] = -1;
	}
	return 0;
}

/* The pipes: 0 both output pipes closed, 1 the deadline passed, -1 out of memory. */
static int pump(const struct exec_cmd *c, int fds[3], double deadline, struct rb_buf *out,
		struct rb_buf *err)
{
	size_t in_off = 0;
	while (fds[1] >= 0 || fds[2] >= 0) {
		struct pollfd p[3];
		int np = 0, ms = (int)((deadline - rb_mono_now()) * 1000), r;
		if (ms <= 0)
			return 1;
		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0) {
				p[np].fd = fds[i];
				p[np].events = i == 0 ? POLLOUT : POLLIN;
				p[np].revents = 0;
				np++;
			}
		r = poll(p, (nfds_t)np, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 0;
		for (int j = 0; j < np; j++) {
			if (!p[j].revents)
				continue;
			if (p[j].fd == fds[0])
				feed_stdin(c, fds, &in_off);
			else if (drain(fds, p[j].fd == fds[1] ? 1 : 2, p[j].fd == fds[1] ? out : err) < 0)
				return -1;
		}
	}
	return 0;
}

int exec_collect(const struct exec_cmd *c, pid_t pid, int fds[3], double deadline,
		 struct rb_buf *out, struct rb_buf *err, int *status)
{
	int r;
	if (fds[0] >= 0 && c->stdin_len == 0) {
		close(fds[0]);
		fds[0] = -1;
	}
	if (fds[0] >= 0)
		fcntl(fds[0], F_SETFL, O_NONBLOCK);
	r = pump(c, fds, deadline, out, err);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	*status = 0;
	if (r != 0) {
		*status = exec_kill_group(pid);
		return r;
	}
	/* Pipes closed: the child is exiting; wait for it within what is left of the deadline. */
	for (;;) {
		if (waitpid(pid, status, WNOHANG) == pid)
			break;
		if (rb_mono_now() > deadline) {
			*status = exec_kill_group(pid);
			return 1;
		}
		usleep(2000);
	}
	kill(-pid, SIGKILL);   /* no background leftovers of a finished command */
	return 0;
}
