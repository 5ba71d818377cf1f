/* fz_demux.c: libFuzzer harness for the Docker log stream demuxer and the RFC 3339 parsers
 * (src/docker_demux.c).
 *
 * Byte 0 picks the mode (auto, multiplexed, raw), byte 1 the chunk size and the line cap; the
 * rest is the response body, fed in chunks so frames and lines split anywhere, then flushed.
 * The body is also given to both time parsers, whole and line by line. Depends on:
 * docker_demux.h. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "docker_demux.h"

static void touch(const struct dmx_line *l)
{
	volatile char c = l->len ? l->p[0] ^ l->p[l->len - 1] : 0;
	(void)c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmx d;
	struct dmx_line l;
	const char *body;
	size_t i = 0, chunk, max_line;
	double epoch;
	long long sec;
	long ns;
	int got;

	if (size < 2)
		return 0;
	chunk = (size_t)(data[1] % 37) + 1;
	max_line = (size_t)(data[1] >> 5) * 16 + 1;
	dmx_init(&d, data[0] % 3, max_line);
	body = (const char *)data + 2;
	size -= 2;
	while (i < size && !d.failed) {
		size_t n = size - i < chunk ? size - i : chunk, off = 0;
		while (off < n) {
			size_t used = dmx_feed(&d, body + i + off, n - off, &l, &got);
			if (used == (size_t)-1)
				goto done;
			if (got)
				touch(&l);
			if (used == 0 && !got)
				break;
			off += used;
		}
		i += n;
	}
	while (dmx_flush(&d, &l))
		touch(&l);
done:
	dmx_free(&d);

	dmx_parse_time(body, size, &epoch);
	dmx_parse_time_ns(body, size, &sec, &ns);
	for (const char *p = body, *e = body + size; p < e;) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		size_t len = (size_t)((nl ? nl : e) - p);
		const char *sp = memchr(p, ' ', len);
		dmx_parse_time(p, sp ? (size_t)(sp - p) : len, &epoch);
		dmx_parse_time_ns(p, sp ? (size_t)(sp - p) : len, &sec, &ns);
		p += len + (nl != NULL);
	}
	return 0;
}
