/* rbaux.c: helpers every primitive family shares: the errno-to-code map for files, file type
 * names and the one safe way to open a file for reading (rbaux.h). Depends on: POSIX. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rbaux.h"

const char *rb_errno_code(int e)
{
	switch (e) {
	case ENOENT: case ENOTDIR: return "notfound";
	case EACCES: case EPERM: return "denied";
	default: return "io";
	}
}

const char *rb_type_name(mode_t m)
{
	if (S_ISREG(m)) return "file";
	if (S_ISDIR(m)) return "directory";
	if (S_ISLNK(m)) return "symlink";
	if (S_ISSOCK(m)) return "socket";
	if (S_ISFIFO(m)) return "fifo";
	return "other";
}

/* The one helper every file-reading primitive uses:
 * never blocks on a FIFO, never reads anything but a regular file; private files (secrets, the
 * audit journal) are opened without following a symlink and must belong to the running user
 * with no group/other permission bits. */
const char *rb_open_regular(const char *path, int flags, int private_file, mode_t create_mode,
			    int *fdp, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | (private_file ? O_NOFOLLOW : 0), create_mode);
	*fdp = -1;
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP && private_file) {
			snprintf(why, whylen, "is a symbolic link (refused: secrets and journals are opened without following links)");
			return "denied";
		}
		snprintf(why, whylen, "%s", strerror(e));
		return rb_errno_code(e);
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		close(fd);
		return "io";
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file (%s)", rb_type_name(st.st_mode));
		close(fd);
		return "type";
	}
	if (private_file && st.st_uid != geteuid()) {
		snprintf(why, whylen, "owned by uid %u, not by the user running runbook (uid %u)",
			 (unsigned)st.st_uid, (unsigned)geteuid());
		close(fd);
		return "denied";
	}
	if (private_file && (st.st_mode & 077) != 0) {
		snprintf(why, whylen, "readable by group or others (mode %04o): chmod 600 it",
			 (unsigned)(st.st_mode & 07777));
		close(fd);
		return "denied";
	}
	/* regular files never block; the flag only mattered for opening a FIFO */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*fdp = fd;
	return NULL;
}

