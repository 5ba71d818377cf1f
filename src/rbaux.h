/* rbaux.h: helpers every primitive family shares (the project's small lauxlib).
 * Depends on: POSIX. */
#ifndef RUNBOOK_RBAUX_H
#define RUNBOOK_RBAUX_H
#include <stddef.h>
#include <sys/types.h>

/* Short stable error code for a file-system errno: notfound, denied or io. */
const char *rb_errno_code(int e);

/* "file", "directory", "symlink", "socket", "fifo" or "other". */
const char *rb_type_name(mode_t m);

/* Opens path for reading or appending (flags) so that it never blocks and is a regular file.
 * private_file: no symlink followed, owned by the running user, no group/other bits (secrets,
 * the audit journal). Returns NULL with *fdp open (blocking again), or a short error code
 * (notfound denied io type) with the reason in why. */
const char *rb_open_regular(const char *path, int flags, int private_file, mode_t create_mode,
			    int *fdp, char *why, size_t whylen);

#endif
