/* docker_demux.h: pure-C decoder of a Docker Engine API log stream into lines (no Lua, no curl).
 *
 * The body of GET /containers/ID/logs is either multiplexed (each frame: 8-byte header, byte 0
 * the stream 1=stdout 2=stderr, bytes 4-7 the big-endian payload length) or, for a container
 * with a tty, the raw terminal bytes. dmx_feed() takes the body in arbitrary chunks (frames and
 * lines may be split anywhere) and hands back one complete line at a time, CR LF trimmed.
 * Memory is bounded: one pending-line buffer per stream, each capped at max_line bytes (a longer
 * line is delivered in pieces of max_line bytes).
 * Also: dmx_parse_time(), the RFC 3339 parser used for Docker timestamps and since/until.
 * Depends on: libc only. Used by ldocker.c and tests/c/docker_demux.c. */
#ifndef RUNBOOK_DOCKER_DEMUX_H
#define RUNBOOK_DOCKER_DEMUX_H

#include <stddef.h>

enum dmx_mode { DMX_AUTO = 0, DMX_MUX, DMX_RAW };
enum dmx_stream { DMX_STDIN = 0, DMX_STDOUT = 1, DMX_STDERR = 2, DMX_NSTREAMS = 3 };

struct dmx_buf {
	char *p;
	size_t len, cap;
};

struct dmx {
	int mode;                       /* DMX_AUTO decides on the first 8 bytes */
	unsigned char hdr[8];
	size_t hdr_len;                 /* header bytes collected so far */
	unsigned char replay[8];        /* AUTO mode's first bytes, when they turned out to be text */
	size_t replay_len, replay_pos;
	size_t frame_left;              /* payload bytes still to come in the current frame */
	int cur;                        /* stream of the current frame */
	struct dmx_buf line[DMX_NSTREAMS];
	int emitted;                    /* stream whose line was handed out last, -1 if none */
	size_t max_line;
	int failed;                     /* out of memory or a corrupt frame header */
};

/* One delivered line: points into the decoder, valid until the next dmx_* call. */
struct dmx_line {
	int stream;                     /* DMX_STDOUT or DMX_STDERR (raw mode: DMX_STDOUT) */
	const char *p;
	size_t len;
};

void dmx_init(struct dmx *d, int mode, size_t max_line);
void dmx_free(struct dmx *d);

/* Consume bytes from buf until one line is complete or buf is used up. Returns the number of
 * bytes consumed and sets *got to 1 when *out holds a line. Returns (size_t)-1 with d->failed
 * set on a corrupt frame header or out of memory. */
size_t dmx_feed(struct dmx *d, const char *buf, size_t len, struct dmx_line *out, int *got);

/* At the end of the body: hand out a pending unterminated line (one per call). Returns 1 when
 * *out holds one, 0 when nothing is left. */
int dmx_flush(struct dmx *d, struct dmx_line *out);

/* RFC 3339 ("2024-05-01T10:00:00.123456789Z", "...+09:00") -> epoch seconds. Returns 0 on
 * success, -1 when s[0..n) is not such a time. */
int dmx_parse_time(const char *s, size_t n, double *epoch);
/* The same, exact: whole seconds and nanoseconds (digits past the ninth dropped). */
int dmx_parse_time_ns(const char *s, size_t n, long long *sec, long *nsec);

#endif
