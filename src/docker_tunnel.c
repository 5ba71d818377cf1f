/* docker_tunnel.c: the Engine API's SSH transport. A libssh2 "direct-streamlocal" channel to
 * the remote docker socket (ssh_open_streamlocal, on the session the inventory host already
 * uses) is joined to a unix socket that libcurl connects to, so every request and the log
 * stream speak the same HTTP as over a local unix socket. The socket is a one-shot listener in
 * the abstract namespace (no file to clean up), and only a connection from this very process
 * (SO_PEERCRED) is accepted; the listener closes once curl is in. (curl 7.88 cannot take an
 * already connected socket: CURL_SOCKOPT_ALREADY_CONNECTED still calls connect().) Nothing blocks: dk_tunnel_pump() moves what can move both ways and returns;
 * the caller waits on curl's socket plus dk_tunnel_waitfds() with its own bounded timeout.
 * A session closed under us (the Lua side closed it, or a timeout killed it) freed the channel
 * with it: the tunnel then fails with code "closed" and never touches the channel again.
 * Depends on: sshint.h (the session handle, ssh_open_streamlocal), libssh2, libcurl. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "docker_tunnel.h"

void dk_tunnel_init(struct dk_tunnel *t)
{
	memset(t, 0, sizeof *t);
	t->fd_listen = t->fd_ours = -1;
}

static void tunnel_fail(struct dk_tunnel *t, const char *code, const char *msg)
{
	if (t->code == NULL) {
		t->code = code;
		snprintf(t->msg, sizeof t->msg, "%s", msg);
	}
}

static int session_gone(struct dk_tunnel *t)
{
	if (t->ch && (t->S == NULL || t->S->s == NULL || t->S->s != t->sess))
		t->ch = NULL;   /* libssh2 freed it with its session */
	return t->ch == NULL;
}

int dk_tunnel_open(struct dk_tunnel *t, ssh_session *S, const char *path, double deadline,
		   const char **code, char *msg, size_t n)
{
	static unsigned serial;
	struct sockaddr_un a;
	struct timespec ts;

	t->S = S;
	t->sess = S->s;
	t->ch = ssh_open_streamlocal(S, path, deadline, code, msg, n);
	if (t->ch == NULL)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(t->name, sizeof t->name, "runbook-docker-%ld-%u-%ld", (long)getpid(), ++serial,
		 (long)ts.tv_nsec);
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path + 1, t->name, strlen(t->name));
	t->fd_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->fd_listen < 0 ||
	    bind(t->fd_listen, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(t->name))) != 0 ||
	    listen(t->fd_listen, 4) != 0) {
		*code = "io";
		snprintf(msg, n, "docker over ssh: local socket: %s", strerror(errno));
		dk_tunnel_close(t);
		return -1;
	}
	return 0;
}

/* Takes curl's connection off the listener: only one from this process counts. */
static void tunnel_accept(struct dk_tunnel *t)
{
	while (t->fd_ours < 0 && t->fd_listen >= 0) {
		struct ucred cr;
		socklen_t len = sizeof cr;
		int fd = accept4(t->fd_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.pid == getpid()) {
			t->fd_ours = fd;
			close(t->fd_listen);
			t->fd_listen = -1;
		} else {
			close(fd);
		}
	}
}

void dk_tunnel_pump(struct dk_tunnel *t)
{
	ssize_t r;

	if (t->code)
		return;
	tunnel_accept(t);
	if (t->fd_ours < 0)
		return;
	if (session_gone(t)) {
		tunnel_fail(t, "closed", "docker over ssh: the SSH session was closed");
		return;
	}
	t->want_out = 0;
	for (int progress = 1; progress;) {
		progress = 0;
		/* curl -> channel */
		if (!t->up_eof && t->up_len < sizeof t->up) {
			r = read(t->fd_ours, t->up + t->up_len, sizeof t->up - t->up_len);
			if (r > 0) {
				t->up_len += (size_t)r;
				progress = 1;
			} else if (r == 0) {
				t->up_eof = 1;
			} else if (errno != EAGAIN && errno != EINTR) {
				t->up_eof = 1;
			}
		}
		if (t->up_len > 0) {
			r = libssh2_channel_write(t->ch, t->up, t->up_len);
			if (r > 0) {
				memmove(t->up, t->up + r, t->up_len - (size_t)r);
				t->up_len -= (size_t)r;
				progress = 1;
			} else if (r == LIBSSH2_ERROR_EAGAIN) {
				t->want_out = 1;
			} else {
				tunnel_fail(t, "io", "docker over ssh: channel write failed");
				return;
			}
		}
		/* channel -> curl */
		if (t->down_pos == t->down_len && !t->ch_eof) {
			t->down_pos = t->down_len = 0;
			r = libssh2_channel_read(t->ch, t->down, sizeof t->down);
			if (r > 0) {
				t->down_len = (size_t)r;
				progress = 1;
			} else if (r == 0 || (r == LIBSSH2_ERROR_EAGAIN && libssh2_channel_eof(t->ch))) {
				if (libssh2_channel_eof(t->ch))
					t->ch_eof = 1;
			} else if (r != LIBSSH2_ERROR_EAGAIN) {
				tunnel_fail(t, "io", "docker over ssh: channel read failed");
				return;
			}
		}
		if (t->down_pos < t->down_len) {
			r = write(t->fd_ours, t->down + t->down_pos, t->down_len - t->down_pos);
			if (r > 0) {
				t->down_pos += (size_t)r;
				progress = 1;
			}
		}
	}
	if (t->ch_eof && t->down_pos == t->down_len && !t->shut) {
		shutdown(t->fd_ours, SHUT_WR);   /* the daemon closed: curl sees the end */
		t->shut = 1;
	}
}

int dk_tunnel_waitfds(struct dk_tunnel *t, struct curl_waitfd *w)
{
	int n = 0;
	if (t->code || session_gone(t))
		return 0;
	if (t->fd_ours < 0) {
		if (t->fd_listen < 0)
			return 0;
		w[0].fd = t->fd_listen;
		w[0].events = CURL_WAIT_POLLIN;
		w[0].revents = 0;
		return 1;
	}
	w[n].fd = t->fd_ours;
	w[n].events = (t->up_eof || t->up_len == sizeof t->up ? 0 : CURL_WAIT_POLLIN) |
		      (t->down_pos < t->down_len ? CURL_WAIT_POLLOUT : 0);
	w[n].revents = 0;
	if (w[n].events)
		n++;
	if (!t->ch_eof || t->want_out) {
		int dir = libssh2_session_block_directions(t->S->s);
		w[n].fd = t->S->fd;
		w[n].events = (t->down_pos == t->down_len ? CURL_WAIT_POLLIN : 0) |
			      ((t->want_out || (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)) ? CURL_WAIT_POLLOUT : 0);
		w[n].revents = 0;
		if (w[n].events)
			n++;
	}
	return n;
}

void dk_tunnel_attach(struct dk_tunnel *t, CURL *e)
{
	curl_easy_setopt(e, CURLOPT_ABSTRACT_UNIX_SOCKET, t->name);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
}

void dk_tunnel_close(struct dk_tunnel *t)
{
	if (t->ch && !session_gone(t)) {
		/* bounded: a stalled session is closed rather than waited for */
		double dl = rb_mono_now() + 1.0;
		int rc;
		while ((rc = libssh2_channel_free(t->ch)) == LIBSSH2_ERROR_EAGAIN)
			if (ssh_wait(t->S, dl) != SSH_WAIT_OK) {
				ssh_session_close(t->S, 0);
				break;
			}
	}
	t->ch = NULL;
	t->S = NULL;   /* never consulted again: the session may be gone before this box is */
	if (t->fd_listen >= 0)
		close(t->fd_listen);
	if (t->fd_ours >= 0)
		close(t->fd_ours);
	t->fd_listen = t->fd_ours = -1;
}
