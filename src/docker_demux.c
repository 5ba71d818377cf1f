/* docker_demux.c: Docker log stream decoder and RFC 3339 time parser (see docker_demux.h).
 * Depends on: libc only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "docker_demux.h"

void dmx_init(struct dmx *d, int mode, size_t max_line)
{
	memset(d, 0, sizeof *d);
	d->mode = mode;
	d->emitted = -1;
	d->max_line = max_line ? max_line : 256 * 1024;
}

void dmx_free(struct dmx *d)
{
	for (int i = 0; i < DMX_NSTREAMS; i++) {
		free(d->line[i].p);
		d->line[i].p = NULL;
		d->line[i].len = d->line[i].cap = 0;
	}
}

static int buf_append(struct dmx_buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void emit(struct dmx *d, int stream, struct dmx_line *out, int *got)
{
	struct dmx_buf *b = &d->line[stream];
	size_t n = b->len;
	if (n > 0 && b->p[n - 1] == '\n')
		n--;
	if (n > 0 && b->p[n - 1] == '\r')
		n--;
	out->stream = stream;
	out->p = b->p ? b->p : "";
	out->len = n;
	d->emitted = stream;
	*got = 1;
}

/* Append up to the first newline of p[0..n) to the stream's line; emits when the line is
 * complete or reaches max_line. Returns bytes taken, or (size_t)-1 when out of memory. */
static size_t take_line(struct dmx *d, int stream, const char *p, size_t n,
			struct dmx_line *out, int *got)
{
	struct dmx_buf *b = &d->line[stream];
	const char *nl = memchr(p, '\n', n);
	size_t take = nl ? (size_t)(nl - p) + 1 : n;
	size_t room = d->max_line > b->len ? d->max_line - b->len : 0;

	if (take > room) {
		take = room;
		nl = NULL;
	}
	if (buf_append(b, p, take) < 0) {
		d->failed = 1;
		return (size_t)-1;
	}
	if (nl || b->len >= d->max_line)
		emit(d, stream, out, got);
	return take;
}

static int header_valid(const unsigned char *h)
{
	return h[0] <= 2 && h[1] == 0 && h[2] == 0 && h[3] == 0;
}

/* Once AUTO mode learns that the body is not multiplexed, the 8 bytes it looked at are text:
 * they are decoded first, from d->replay. */
static void start_raw(struct dmx *d)
{
	memcpy(d->replay, d->hdr, d->hdr_len);
	d->replay_len = d->hdr_len;
	d->replay_pos = 0;
	d->hdr_len = 0;
	d->mode = DMX_RAW;
}

/* The decoding loop over one input span. */
static size_t process(struct dmx *d, const char *buf, size_t len, struct dmx_line *out, int *got)
{
	size_t i = 0;

	while (!*got) {
		if (d->mode == DMX_RAW && d->replay_pos < d->replay_len) {
			size_t t = take_line(d, DMX_STDOUT, (const char *)d->replay + d->replay_pos,
					     d->replay_len - d->replay_pos, out, got);
			if (t == (size_t)-1)
				return t;
			d->replay_pos += t;
			continue;
		}
		if (i >= len)
			break;
		if (d->mode == DMX_RAW) {
			size_t t = take_line(d, DMX_STDOUT, buf + i, len - i, out, got);
			if (t == (size_t)-1)
				return t;
			i += t;
			continue;
		}
		if (d->frame_left == 0) {
			size_t need = 8 - d->hdr_len;
			size_t n = len - i < need ? len - i : need;
			memcpy(d->hdr + d->hdr_len, buf + i, n);
			d->hdr_len += n;
			i += n;
			if (d->hdr_len < 8)
				break;
			if (!header_valid(d->hdr)) {
				if (d->mode == DMX_AUTO) {   /* not multiplexed: a tty container */
					start_raw(d);
					continue;
				}
				d->failed = 1;
				return (size_t)-1;
			}
			d->mode = DMX_MUX;
			d->cur = d->hdr[0];
			d->frame_left = (size_t)d->hdr[4] << 24 | (size_t)d->hdr[5] << 16 |
					(size_t)d->hdr[6] << 8 | (size_t)d->hdr[7];
			d->hdr_len = 0;
			continue;
		}
		size_t n = len - i < d->frame_left ? len - i : d->frame_left;
		size_t t = take_line(d, d->cur, buf + i, n, out, got);
		if (t == (size_t)-1)
			return t;
		i += t;
		d->frame_left -= t;
	}
	return i;
}

size_t dmx_feed(struct dmx *d, const char *buf, size_t len, struct dmx_line *out, int *got)
{
	*got = 0;
	if (d->failed)
		return (size_t)-1;
	if (d->emitted >= 0) {
		d->line[d->emitted].len = 0;
		d->emitted = -1;
	}
	return process(d, buf, len, out, got);
}

int dmx_flush(struct dmx *d, struct dmx_line *out)
{
	int got = 0;

	if (d->failed)
		return 0;
	if (d->mode == DMX_AUTO && d->hdr_len > 0)
		start_raw(d);   /* fewer than 8 bytes in the whole body: plain text */
	if (dmx_feed(d, NULL, 0, out, &got) == (size_t)-1)
		return 0;
	if (got)
		return 1;
	for (int s = 0; s < DMX_NSTREAMS; s++) {
		if (d->line[s].len > 0) {
			emit(d, s, out, &got);
			return 1;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- RFC 3339 */

static int digits(const char *s, size_t n, size_t at, size_t count, int *v)
{
	int x = 0;
	if (at + count > n)
		return -1;
	for (size_t i = at; i < at + count; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static long days_from_civil(long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long)doe - 719468;
}

int dmx_parse_time_ns(const char *s, size_t n, long long *secs, long *nsec)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0;
	size_t i;
	long ns = 0, scale = 100000000L;

	if (digits(s, n, 0, 4, &Y) || n < 19 || s[4] != '-' || digits(s, n, 5, 2, &M) ||
	    s[7] != '-' || digits(s, n, 8, 2, &D) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s, n, 11, 2, &h) ||
	    s[13] != ':' || digits(s, n, 14, 2, &m) || s[16] != ':' || digits(s, n, 17, 2, &sec))
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -1;
	i = 19;
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return -1;
		while (i < n && s[i] >= '0' && s[i] <= '9') {
			ns += (s[i] - '0') * scale;   /* digits past the ninth are dropped */
			scale /= 10;
			i++;
		}
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < n && (s[i] == '+' || s[i] == '-')) {
		int sign = s[i] == '-' ? -1 : 1;
		if (digits(s, n, i + 1, 2, &oh) || i + 3 >= n || s[i + 3] != ':' ||
		    digits(s, n, i + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		oh *= sign;
		om *= sign;
		i += 6;
	} else {
		return -1;
	}
	if (i != n)
		return -1;
	*secs = (long long)days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400LL +
		h * 3600LL + m * 60LL + sec - oh * 3600LL - om * 60LL;
	*nsec = ns;
	return 0;
}

int dmx_parse_time(const char *s, size_t n, double *epoch)
{
	long long sec;
	long ns;
	if (dmx_parse_time_ns(s, n, &sec, &ns) != 0)
		return -1;
	*epoch = (double)sec + (double)ns / 1e9;
	return 0;
}
