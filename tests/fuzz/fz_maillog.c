/* fz_maillog.c: libFuzzer harness for the mail-log parser and scanner (src/maillog*.c).
 *
 * The input is a log: every line goes through ml_parse_line (with and without a fixed year) and
 * ml_parse_head; then the whole input through scanners: the find-first and the per-line one with
 * the same needles (the property below), one with needles fed in chunks whose size the first
 * byte picks (lines split anywhere) with keys watched on the way (their kept lines replayed),
 * and one unfiltered with a time window fed in one piece; all with small bounds, so an input
 * that fills the history, the ring or the key table is cheap to find. Every reported line is
 * read to its last byte so ASan sees an out-of-bounds span. Properties (a violation aborts):
 * every line the full parser takes for a mail line the scanner's head parser takes too; a
 * complete line with a needle that the full parser calls a mail line is reported by the
 * find-first and by the per-line scanner.
 * Depends on: maillog.h. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "maillog.h"

/* Lines a scanner reported (copies), for the property check. */
struct seen {
	char *buf;
	size_t len, cap, nlines;
};

static int emit(void *ud, const char *line, size_t len, const ml_record *r, int context);

static int collect(void *ud, const char *line, size_t len, const ml_record *r, int context)
{
	struct seen *sn = ud;
	if (sn->len + len + 1 > sn->cap) {
		size_t cap = (sn->len + len + 1) * 2;
		char *p = realloc(sn->buf, cap);
		if (!p)
			abort();
		sn->buf = p, sn->cap = cap;
	}
	memcpy(sn->buf + sn->len, line, len);
	sn->len += len;
	sn->buf[sn->len++] = '\n';
	sn->nlines++;
	return emit(NULL, line, len, r, context);
}

static int seen_has(const struct seen *sn, const char *line, size_t len)
{
	if (!sn->buf)
		return 0;
	for (const char *p = sn->buf, *e = sn->buf + sn->len; p < e;) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		if ((size_t)(nl - p) == len && memcmp(p, line, len) == 0)
			return 1;
		p = nl + 1;
	}
	return 0;
}

static int has_needle(const char *p, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++)
		if (strncasecmp(p + i, needle, k) == 0)
			return 1;
	return 0;
}

/* Every complete line that holds a needle and that the full parser takes for a mail line must
 * be reported by both scanner modes (find-first, per-line). */
static void check_matches(const char *text, size_t size)
{
	static const char *const needles[] = { "@example.test", "info" };
	ml_time_opts to = { 2026, 0, 1795867273 };
	struct seen sn[2];
	for (int per_line = 0; per_line < 2; per_line++) {
		ml_scanner_opts o;
		memset(&o, 0, sizeof o);
		o.window = 1 << 16;
		o.keys = 256;
		o.max_line = 8192;
		o.since = NAN;
		o.until = NAN;
		o.per_line = per_line;
		o.time = to;
		ml_scanner *s = ml_scanner_new(&o);
		memset(&sn[per_line], 0, sizeof sn[per_line]);
		if (!s)
			return;
		for (int i = 0; i < 2; i++)
			ml_scanner_add_needle(s, needles[i], strlen(needles[i]));
		ml_scanner_feed(s, text, size, collect, &sn[per_line]);
		ml_scanner_flush(s, collect, &sn[per_line]);
		ml_scanner_free(s);
	}
	for (const char *p = text, *e = text + size; p < e;) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		size_t len = (size_t)((nl ? nl : e) - p);
		ml_record r;
		if (nl && len < 8192 && !memchr(p, '\0', len) && !memchr(p, '\r', len) &&
		    (has_needle(p, len, needles[0]) || has_needle(p, len, needles[1])) &&
		    ml_parse_line(p, len, &to, &r) != ML_OTHER) {
			for (int m = 0; m < 2; m++)
				if (!seen_has(&sn[m], p, len)) {
					fprintf(stderr, "fz_maillog: PROPERTY: %s scanner did not report a line with a needle: %.*s\n",
					        m ? "per-line" : "find-first", (int)len, p);
					abort();
				}
		}
		p += len + (nl != NULL);
	}
	free(sn[0].buf);
	free(sn[1].buf);
}

static int emit(void *ud, const char *line, size_t len, const ml_record *r, int context)
{
	volatile char c = len ? line[len - 1] : 0;
	(void)c, (void)ud, (void)context;
	if (r->queue_id.p && r->queue_id.n) {
		volatile char q = r->queue_id.p[r->queue_id.n - 1];
		(void)q;
	}
	return 0;
}

static void touch(ml_str s)
{
	if (s.p && s.n) {
		volatile char c = s.p[0] ^ s.p[s.n - 1];
		(void)c;
	}
}

static void parse_lines(const char *p, size_t n)
{
	const char *e = p + n;
	ml_time_opts fixed = { 2026, 32400, 1795867273 }, current = { 0, 0, 1795867273 };
	ml_record r;
	while (p < e) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		size_t len = (size_t)((nl ? nl : e) - p);
		ml_parse_line(p, len, &fixed, &r);
		touch(r.from), touch(r.to), touch(r.relay), touch(r.reply), touch(r.text);
		touch(r.status), touch(r.message_id), touch(r.client_ip), touch(r.mailbox);
		int full = ml_parse_line(p, len, &current, &r);
		int head = ml_parse_head(p, len, &r);
		touch(r.queue_id), touch(r.session), touch(r.program);
		if (full != ML_OTHER && head != full) {
			fprintf(stderr, "fz_maillog: PROPERTY: full parse says family %d, head parse %d: %.*s\n", full, head, (int)len, p);
			abort();
		}
		p += len + (nl != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	ml_scanner_opts o;
	ml_scanner *s;

	parse_lines(text, size);
	check_matches(text, size);

	memset(&o, 0, sizeof o);
	o.window = 2048;
	o.keys = 16;
	o.max_line = 512;
	o.since = NAN;
	o.until = NAN;
	o.time = (ml_time_opts){ 2026, 0, 1795867273 };
	s = ml_scanner_new(&o);
	if (s) {
		size_t i = 0, chunk = size ? (size_t)(data[0] % 61) + 1 : 1;
		ml_scanner_add_needle(s, "@example.test", 13);
		ml_scanner_add_needle(s, "info", 4);
		while (i < size) {
			size_t n = size - i < chunk ? size - i : chunk;
			ml_scanner_feed(s, text + i, n, emit, NULL);
			if (n >= 11)
				ml_scanner_watch_replay(s, text + i, 11, emit, NULL);
			i += n;
		}
		ml_scanner_flush(s, emit, NULL);
		ml_scanner_free(s);
	}

	memset(&o, 0, sizeof o);
	o.window = 65536;
	o.keys = 256;
	o.max_line = 8192;
	o.since = 0;
	o.until = 4e9;
	o.time = (ml_time_opts){ 0, 3600, 1795867273 };
	s = ml_scanner_new(&o);
	if (s) {
		ml_scanner_feed(s, text, size, emit, NULL);
		ml_scanner_flush(s, emit, NULL);
		ml_scanner_free(s);
	}
	return 0;
}
