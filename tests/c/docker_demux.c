/* docker_demux.c: TAP unit test of the Docker log stream decoder and the RFC 3339 parser.
 * Bodies are built here byte for byte as the Engine API sends them (frames verified against a
 * real dockerd in tests/lua/docker_api.t) and fed in every chunk size from 1 byte up, so frame
 * headers, payloads and lines are split at every possible place. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker_demux.h"

static int n_test, n_fail;

static void ok(int v, const char *name)
{
	n_test++;
	if (!v)
		n_fail++;
	printf("%s %d - %s\n", v ? "ok" : "not ok", n_test, name);
}

struct body {
	char *p;
	size_t len;
};

static void put(struct body *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->len + n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void frame(struct body *b, int stream, const char *payload)
{
	size_t n = strlen(payload);
	unsigned char h[8] = { (unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24),
			       (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };
	put(b, h, 8);
	put(b, payload, n);
}

/* Decode body in chunks of `chunk` bytes; writes "S:line\n" for each line into out. */
static int decode(const struct body *b, size_t chunk, int mode, size_t max_line, char *out, size_t outsz)
{
	struct dmx d;
	struct dmx_line l;
	size_t pos = 0, o = 0;
	int got, rc = 0;

	dmx_init(&d, mode, max_line);
	out[0] = '\0';
	while (pos < b->len) {
		size_t n = b->len - pos < chunk ? b->len - pos : chunk;
		size_t used = 0;
		while (used < n) {
			size_t t = dmx_feed(&d, b->p + pos + used, n - used, &l, &got);
			if (t == (size_t)-1) {
				rc = -1;
				goto done;
			}
			used += t;
			if (got)
				o += (size_t)snprintf(out + o, outsz - o, "%d:%.*s\n", l.stream, (int)l.len, l.p);
		}
		pos += n;
	}
	while (dmx_flush(&d, &l))
		o += (size_t)snprintf(out + o, outsz - o, "%d:%.*s|\n", l.stream, (int)l.len, l.p);
done:
	dmx_free(&d);
	return rc;
}

static void all_chunks(const struct body *b, int mode, size_t max_line, const char *want, const char *name)
{
	static char out[1 << 16];
	int good = 1;
	char label[200];
	for (size_t chunk = 1; chunk <= b->len + 1; chunk++) {
		if (decode(b, chunk, mode, max_line, out, sizeof out) != 0 || strcmp(out, want) != 0) {
			if (good)
				printf("# chunk %zu:\n# got:  %s\n# want: %s\n", chunk, out, want);
			good = 0;
		}
	}
	snprintf(label, sizeof label, "%s (every chunk size 1..%zu)", name, b->len + 1);
	ok(good, label);
}

int main(void)
{
	static char out[1 << 16];
	struct body b = { 0 };

	printf("1..17\n");

	/* multiplexed, interleaved streams, CRLF, an empty line, a line split over two frames */
	frame(&b, 1, "2024-05-01T10:00:00.5Z out one\n");
	frame(&b, 2, "2024-05-01T10:00:01Z err one\r\n");
	frame(&b, 1, "\n");
	frame(&b, 1, "half ");
	frame(&b, 2, "err two\n");
	frame(&b, 1, "and half\n");
	frame(&b, 1, "");
	frame(&b, 2, "no newline at end");
	all_chunks(&b, DMX_AUTO, 0,
		   "1:2024-05-01T10:00:00.5Z out one\n2:2024-05-01T10:00:01Z err one\n1:\n"
		   "2:err two\n1:half and half\n2:no newline at end|\n",
		   "multiplexed body, AUTO detection");
	all_chunks(&b, DMX_MUX, 0,
		   "1:2024-05-01T10:00:00.5Z out one\n2:2024-05-01T10:00:01Z err one\n1:\n"
		   "2:err two\n1:half and half\n2:no newline at end|\n",
		   "multiplexed body, MUX mode");

	/* a frame holding several lines */
	free(b.p);
	b = (struct body){ 0 };
	frame(&b, 1, "a\nbb\nccc\n");
	all_chunks(&b, DMX_AUTO, 0, "1:a\n1:bb\n1:ccc\n", "several lines in one frame");

	/* tty: raw text, no headers, CR LF from the terminal */
	free(b.p);
	b = (struct body){ 0 };
	put(&b, "2024-05-01T10:00:00Z hello\r\n2024-05-01T10:00:01Z world\r\n", 56);
	all_chunks(&b, DMX_AUTO, 0, "1:2024-05-01T10:00:00Z hello\n1:2024-05-01T10:00:01Z world\n",
		   "tty body detected as raw");
	all_chunks(&b, DMX_RAW, 0, "1:2024-05-01T10:00:00Z hello\n1:2024-05-01T10:00:01Z world\n",
		   "tty body in RAW mode");

	/* raw text with newlines inside the first 8 bytes, and a body shorter than 8 bytes */
	free(b.p);
	b = (struct body){ 0 };
	put(&b, "a\nb\r\ncdefghij\nk", 15);
	all_chunks(&b, DMX_AUTO, 0, "1:a\n1:b\n1:cdefghij\n1:k|\n", "newlines inside the first 8 bytes");
	free(b.p);
	b = (struct body){ 0 };
	put(&b, "x\ny\nz", 5);
	all_chunks(&b, DMX_AUTO, 0, "1:x|\n1:y|\n1:z|\n", "body shorter than one header (all at the end)");

	/* line longer than max_line is delivered in pieces */
	free(b.p);
	b = (struct body){ 0 };
	frame(&b, 2, "0123456789abcdefXYZ\nok\n");
	all_chunks(&b, DMX_AUTO, 8, "2:01234567\n2:89abcdef\n2:XYZ\n2:ok\n", "max_line splits a long line");

	/* corrupt header once multiplexing is known */
	free(b.p);
	b = (struct body){ 0 };
	frame(&b, 1, "fine\n");
	put(&b, "\x07\x01zzzzzzzz\n", 11);
	ok(decode(&b, 4, DMX_AUTO, 0, out, sizeof out) == -1, "corrupt frame header after a good one fails");

	/* empty body */
	free(b.p);
	b = (struct body){ 0 };
	ok(decode(&b, 1, DMX_AUTO, 0, out, sizeof out) == 0 && out[0] == '\0', "empty body gives no line");
	free(b.p);

	/* RFC 3339 */
	double e = 0;
	ok(dmx_parse_time("1970-01-01T00:00:00Z", 20, &e) == 0 && e == 0, "epoch zero");
	ok(dmx_parse_time("2024-05-01T10:00:00.123456789Z", 30, &e) == 0 &&
	   fabs(e - 1714557600.123456789) < 1e-6, "nanosecond fraction");
	ok(dmx_parse_time("2024-05-01T19:00:00+09:00", 25, &e) == 0 && e == 1714557600, "positive offset");
	ok(dmx_parse_time("2024-04-30T23:30:00-10:30", 25, &e) == 0 && e == 1714557600, "negative offset");
	ok(dmx_parse_time("2000-02-29T00:00:00Z", 20, &e) == 0 && e == 951782400, "leap day");
	ok(dmx_parse_time("2024-05-01T10:00:00", 19, &e) == -1, "missing zone rejected");
	ok(dmx_parse_time("2024-13-01T10:00:00Z", 20, &e) == -1 &&
	   dmx_parse_time("yesterday", 9, &e) == -1 &&
	   dmx_parse_time("2024-05-01T10:00:00.Z", 21, &e) == -1, "garbage rejected");
	return n_fail ? 1 : 0;
}
