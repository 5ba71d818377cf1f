/* ssh_session.c: the session side of the ssh family, below its Lua binding (lssh.c) and its
 * channels (sshchan.c): the monotonic clock, bounded waits on the session socket, the one
 * idempotent close, failure results, and the pieces of ssh.connect (TCP connect through rbaux,
 * strict host-key check against known_hosts, ssh-agent authentication).
 * Never calls back into lssh.c or sshchan.c.
 * Clock, waits, TCP connect and option checks are rbaux.c's (every wait ends by the run deadline).
 * Depends on: sshint.h, rbaux.c, libssh2, OpenSSL (base64), Lua 5.4. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "rbaux.h"
#include "sshint.h"

int ssh_wait(ssh_session *S, double deadline)
{
	int dir = libssh2_session_block_directions(S->s);
	short ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	int r = rb_wait_fd(S->fd, ev ? ev : POLLIN, deadline);   /* ends by the run deadline too */
	return r > 0 ? SSH_WAIT_OK : r == 0 ? SSH_WAIT_TIMEOUT : SSH_WAIT_ERROR;
}

void ssh_session_close(ssh_session *S, int polite)
{
	if (S->s) {
		if (polite) {
			double dl = rb_mono_now() + 1.0;
			int rc;
			SSH_NB(S, dl, rc, libssh2_session_disconnect(S->s, "bye"));
			(void)rc;
		}
		/* With the socket shut down, freeing cannot wait on the peer. */
		shutdown(S->fd, SHUT_RDWR);
		for (int i = 0; i < 100 && libssh2_session_free(S->s) == LIBSSH2_ERROR_EAGAIN; i++)
			;
		S->s = NULL;
	}
	if (S->fd >= 0) {
		close(S->fd);
		S->fd = -1;
	}
}

int ssh_fail(lua_State *L, ssh_session *S, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	if (S)
		lua_pushfstring(L, "ssh %s: %s", S->label, msg);
	else
		lua_pushstring(L, msg);
	lua_pushstring(L, code);
	return 3;
}

/* ---------------------------------------------------------------- connect */

/* rb_tcp_connect, with the ssh family's answer to a name: it is never resolved here. */
int ssh_tcp_connect(const char *host, int port, double deadline, const char **code,
                    char *msg, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (rb_ip_addr(host, port, &ss, &len) != 0) {
		*code = "unreachable";
		snprintf(msg, n, "'%s' is not a numeric address (no name resolution here)", host);
		return -1;
	}
	return rb_tcp_connect(host, port, NULL, deadline, code, msg, n);
}

static const char *hostkey_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
	case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
	default: return "unknown";
	}
}

static int hostkey_bits(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/* "SHA256:<base64 without padding>", as OpenSSH prints it. */
static void fingerprint(LIBSSH2_SESSION *s, char *out, size_t n)
{
	const unsigned char *h = (const unsigned char *)libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char b64[64];
	int len;
	if (h == NULL) {
		snprintf(out, n, "SHA256:?");
		return;
	}
	len = EVP_EncodeBlock(b64, h, 32);
	while (len > 0 && b64[len - 1] == '=')
		len--;
	snprintf(out, n, "SHA256:%.*s", len, (const char *)b64);
}

/* Offer the host key types known_hosts holds for this host first, as OpenSSH does, so a
 * server with several host keys presents the one we can verify. Plain-text names only. */
void ssh_prefer_known_types(LIBSSH2_SESSION *s, LIBSSH2_KNOWNHOSTS *kh, const char *name)
{
	struct libssh2_knownhost *k = NULL;
	char pref[256] = "";
	while (libssh2_knownhost_get(kh, &k, k) == 0) {
		const char *t = NULL;
		if (k->name == NULL || strcmp(k->name, name) != 0)
			continue;
		switch (k->typemask & LIBSSH2_KNOWNHOST_KEY_MASK) {
		case LIBSSH2_KNOWNHOST_KEY_ED25519: t = "ssh-ed25519"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: t = "ecdsa-sha2-nistp256"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: t = "ecdsa-sha2-nistp384"; break;
		case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: t = "ecdsa-sha2-nistp521"; break;
		case LIBSSH2_KNOWNHOST_KEY_SSHRSA: t = "rsa-sha2-512,rsa-sha2-256,ssh-rsa"; break;
		default: break;
		}
		if (t && strstr(pref, t) == NULL && strlen(pref) + strlen(t) + 2 < sizeof pref) {
			if (*pref)
				strcat(pref, ",");
			strcat(pref, t);
		}
	}
	if (*pref)
		(void)libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, pref);
}

/* Append one known_hosts line (OpenSSH format) for name; 0 or -1 with msg. */
static int known_hosts_append(LIBSSH2_KNOWNHOSTS *kh, const char *path, const char *name,
                              const char *key, size_t keylen, int bits, char *msg, size_t n)
{
	struct libssh2_knownhost *node = NULL;
	char line[8192];
	size_t len = 0;
	char last = '\n';
	int fd;
	off_t end;

	if (libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
	                           LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits,
	                           &node) != 0 ||
	    libssh2_knownhost_writeline(kh, node, line, sizeof line, &len,
	                                LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
		snprintf(msg, n, "cannot format a known_hosts line");
		return -1;
	}
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(msg, n, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	end = lseek(fd, 0, SEEK_END);
	if (end > 0 && pread(fd, &last, 1, end - 1) != 1)
		last = '\n';
	if ((last != '\n' && write(fd, "\n", 1) != 1) || write(fd, line, len) != (ssize_t)len) {
		snprintf(msg, n, "cannot write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Verifies the server's host key; 0 when trusted, else -1 with msg (code "hostkey" or "io"). */
int ssh_check_hostkey(ssh_session *S, const char *path, const char *host, int port,
                         int accept_new, const char **code, char *msg, size_t n)
{
	size_t keylen = 0;
	int type = 0, rc, bits;
	const char *key = libssh2_session_hostkey(S->s, &keylen, &type);
	LIBSSH2_KNOWNHOSTS *kh;
	struct libssh2_knownhost *found = NULL;
	char fp[80], name[300];

	*code = "hostkey";
	if (key == NULL) {
		snprintf(msg, n, "server sent no host key");
		return -1;
	}
	fingerprint(S->s, fp, sizeof fp);
	bits = hostkey_bits(type);
	if (port == 22)
		snprintf(name, sizeof name, "%s", host);
	else
		snprintf(name, sizeof name, "[%s]:%d", host, port);
	kh = libssh2_knownhost_init(S->s);
	if (kh == NULL) {
		snprintf(msg, n, "out of memory");
		return -1;
	}
	if (access(path, F_OK) == 0 &&
	    libssh2_knownhost_readfile(kh, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		snprintf(msg, n, "cannot read known_hosts %s", path);
		libssh2_knownhost_free(kh);
		return -1;
	}
	rc = libssh2_knownhost_checkp(kh, host, port, key, keylen,
	                              LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits,
	                              &found);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
		libssh2_knownhost_free(kh);
		return 0;
	}
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
		snprintf(msg, n, "HOST KEY CHANGED: %s %s %s does not match %s; refusing to connect",
		         name, hostkey_name(type), fp, path);
	} else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && accept_new) {
		rc = known_hosts_append(kh, path, name, key, keylen, bits, msg, n);
		libssh2_knownhost_free(kh);
		if (rc != 0)
			*code = "io";
		return rc;
	} else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
		snprintf(msg, n, "unknown host key: %s %s %s is not in %s", name, hostkey_name(type), fp, path);
	} else {
		snprintf(msg, n, "host key check failed for %s %s %s", name, hostkey_name(type), fp);
	}
	libssh2_knownhost_free(kh);
	return -1;
}

int ssh_auth_agent(ssh_session *S, const char *user, const char *sock, double dl, char *msg,
                      size_t n)
{
	LIBSSH2_AGENT *a = libssh2_agent_init(S->s);
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	int rc = -1, r;

	if (a == NULL) {
		snprintf(msg, n, "cannot initialise ssh-agent support");
		return -1;
	}
	if (sock)
		libssh2_agent_set_identity_path(a, sock);
	if (libssh2_agent_connect(a) != 0) {
		snprintf(msg, n, "no ssh-agent reachable (SSH_AUTH_SOCK)");
		libssh2_agent_free(a);
		return -1;
	}
	if (libssh2_agent_list_identities(a) != 0) {
		snprintf(msg, n, "ssh-agent: cannot list identities");
		goto out;
	}
	snprintf(msg, n, "ssh-agent: no identity accepted");
	while (libssh2_agent_get_identity(a, &id, prev) == 0) {
		SSH_NB(S, dl, r, libssh2_agent_userauth(a, user, id));
		if (r == 0) {
			rc = 0;
			break;
		}
		if (r == LIBSSH2_ERROR_TIMEOUT) {
			snprintf(msg, n, "authentication timed out");
			rc = -2;
			break;
		}
		prev = id;
	}
out:
	libssh2_agent_disconnect(a);
	libssh2_agent_free(a);
	return rc;
}

/* ---------------------------------------------------------------- stream-local forwarding */

static void put_u32(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

LIBSSH2_CHANNEL *ssh_open_streamlocal(ssh_session *S, const char *path, double deadline,
                                      const char **code, char *msg, size_t n)
{
	static const char type[] = "direct-streamlocal@openssh.com";
	static const char shost[] = "127.0.0.1";   /* reserved fields, as libssh2 1.11 sends them */
	unsigned char req[4 + 4096 + 4 + sizeof shost + 4];
	size_t plen = strlen(path), slen = sizeof shost - 1, len;
	LIBSSH2_CHANNEL *ch;

	if (S->s == NULL) {
		*code = "closed";
		snprintf(msg, n, "session is closed");
		return NULL;
	}
	if (plen == 0 || plen > 4096) {
		*code = "protocol";
		snprintf(msg, n, "socket path length %zu out of range", plen);
		return NULL;
	}
	put_u32(req, (unsigned)plen);
	memcpy(req + 4, path, plen);
	put_u32(req + 4 + plen, (unsigned)slen);
	memcpy(req + 8 + plen, shost, slen);
	put_u32(req + 8 + plen + slen, 22);
	len = 12 + plen + slen;
	for (;;) {
		ch = libssh2_channel_open_ex(S->s, type, sizeof type - 1, LIBSSH2_CHANNEL_WINDOW_DEFAULT,
		                             LIBSSH2_CHANNEL_PACKET_DEFAULT, (const char *)req,
		                             (unsigned)len);
		if (ch || libssh2_session_last_errno(S->s) != LIBSSH2_ERROR_EAGAIN)
			break;
		int w = ssh_wait(S, deadline);
		if (w != SSH_WAIT_OK) {
			/* libssh2 cannot abandon a pending channel open: the session goes */
			ssh_session_close(S, 0);
			*code = w == SSH_WAIT_TIMEOUT ? "timeout" : "io";
			snprintf(msg, n, "stream-local channel to %s: %s (session closed)", path,
			         w == SSH_WAIT_TIMEOUT ? "no answer" : "poll failed");
			return NULL;
		}
	}
	if (ch == NULL) {
		char *em = NULL;
		int e = libssh2_session_last_error(S->s, &em, NULL, 0);
		snprintf(msg, n, "stream-local channel to %s: %s", path, em ? em : "failed");
		if (e == LIBSSH2_ERROR_CHANNEL_FAILURE) {
			*code = "denied";   /* prohibited by sshd, or sshd could not connect to the socket */
		} else if (e == LIBSSH2_ERROR_SOCKET_DISCONNECT || e == LIBSSH2_ERROR_SOCKET_RECV ||
		           e == LIBSSH2_ERROR_SOCKET_SEND) {
			ssh_session_close(S, 0);
			*code = "closed";
		} else {
			*code = "protocol";
		}
	}
	return ch;
}
