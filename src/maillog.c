/* maillog.c: the line parser of maillog.h (no Lua, no allocation).
 *
 * A line is: [container | ] [timestamp ...] [host] program[pid]: message. Timestamps may be
 * RFC 3164 (English or German month, any day padding), ISO 8601/RFC 3339 (T or space, µs or
 * nanoseconds, Z/offset or none, comma fraction of supervisord), tai64n, or several of them
 * (docker --timestamps in front of a syslog line). The message is then split by family:
 * Postfix (queue id, delivery key=values, rejects, qmgr, cleanup, bounce) or Dovecot
 * (service(user)<pid><session>: Level: msgid=<...>: saved/failed ...): maillog_daemon_postfix.c
 * and maillog_daemon_dovecot.c.
 * Depends on: maillog_parse.h, libc. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "maillog_parse.h"

static int is_space(int c) { return c == ' ' || c == '\t'; }

/* Reads up to max digits; returns the value or -1 when there is none. */
static long digits(const char **pp, const char *e, int max)
{
	const char *p = *pp;
	long v = 0;
	int n = 0;
	while (p < e && n < max && is_digit((unsigned char)*p)) {
		v = v * 10 + (*p - '0');
		p++, n++;
	}
	if (n == 0)
		return -1;
	*pp = p;
	return v;
}

/* Howard Hinnant's days_from_civil. */
int64_t ml_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static double civil_time(int64_t y, int mo, int d, int h, int mi, int s)
{
	return (double)(ml_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s);
}

/* --------------------------------------------------------------- timestamps */
static const struct { const char *name; unsigned char len, mon; } months[] = {
	{ "Jan", 3, 1 }, { "Feb", 3, 2 }, { "Mar", 3, 3 }, { "Apr", 3, 4 }, { "May", 3, 5 },
	{ "Jun", 3, 6 }, { "Jul", 3, 7 }, { "Aug", 3, 8 }, { "Sep", 3, 9 }, { "Oct", 3, 10 },
	{ "Nov", 3, 11 }, { "Dec", 3, 12 },
	/* German (journalctl/syslog under de_DE) */
	{ "M\xc3\xa4r", 4, 3 }, { "Mrz", 3, 3 }, { "Mai", 3, 5 }, { "Okt", 3, 10 }, { "Dez", 3, 12 },
};

static int hms(const char **pp, const char *e, int *h, int *mi, int *s)
{
	const char *p = *pp;
	long a, b, c;
	if ((a = digits(&p, e, 2)) < 0 || p >= e || *p++ != ':' || (b = digits(&p, e, 2)) < 0 ||
	    p >= e || *p++ != ':' || (c = digits(&p, e, 2)) < 0 || a > 24 || b > 59 || c > 60)
		return 0;
	*h = (int)a, *mi = (int)b, *s = (int)c;
	*pp = p;
	return 1;
}

/* `Mmm dd HH:MM:SS` (day padded with a space or zero, or not at all). Quality 1. */
static int parse_rfc3164(const char *p, const char *e, const ml_time_opts *to, double *t, const char **end)
{
	int mon = 0, h, mi, s;
	long day;
	if (e - p < 15 || !(*p >= 'A' && *p <= 'Z'))
		return 0;
	for (size_t i = 0; i < sizeof months / sizeof months[0]; i++)
		if (months[i].name[0] == *p && months[i].name[1] == p[1] && starts(p, e, months[i].name, months[i].len)) {
			mon = months[i].mon;
			p += months[i].len;
			break;
		}
	if (!mon || p >= e || *p != ' ')
		return 0;
	while (p < e && *p == ' ')
		p++;
	if ((day = digits(&p, e, 2)) < 1 || day > 31 || p >= e || *p++ != ' ' || !hms(&p, e, &h, &mi, &s))
		return 0;
	if (p < e && *p == '.') /* rsyslog high precision without year: skip the fraction */
		for (p++; p < e && is_digit((unsigned char)*p); p++)
			;
	if (p < e && *p != ' ')
		return 0;
	*end = p;
	if (to) {
		int64_t year = to->year;
		if (year == 0) {
			int64_t now = to->now, days = now / 86400, y400, doe, yoe, doy, mp;
			/* civil_from_days, for the current year */
			days += 719468;
			y400 = (days >= 0 ? days : days - 146096) / 146097;
			doe = days - y400 * 146097;
			yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
			doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
			mp = (5 * doy + 2) / 153;
			year = yoe + y400 * 400 + (mp >= 10);
			*t = civil_time(year, mon, (int)day, h, mi, s) - (double)to->utc_offset;
			if (*t > (double)now + 7 * 86400.0) /* December lines read in January */
				*t = civil_time(year - 1, mon, (int)day, h, mi, s) - (double)to->utc_offset;
		} else
			*t = civil_time(year, mon, (int)day, h, mi, s) - (double)to->utc_offset;
	}
	return 1;
}

/* ISO 8601 / RFC 3339: `YYYY-MM-DD[T ]HH:MM:SS[.,frac][Z|+HH:MM|+HHMM|+HH]`. Quality 2 without
 * zone, 3 with one. */
static int parse_iso(const char *p, const char *e, const ml_time_opts *to, double *t, const char **end)
{
	long y, mo, d;
	int h, mi, s, q = 2;
	double frac = 0, off;
	if (e - p < 19 || !is_digit((unsigned char)*p) || p[4] != '-' || (y = digits(&p, e, 4)) < 1000 || p >= e || *p++ != '-' || (mo = digits(&p, e, 2)) < 1 || mo > 12 ||
	    p >= e || *p++ != '-' || (d = digits(&p, e, 2)) < 1 || d > 31 || p >= e || (*p != 'T' && *p != ' '))
		return 0;
	p++;
	if (!hms(&p, e, &h, &mi, &s))
		return 0;
	if (p < e && (*p == '.' || *p == ',')) {
		char buf[24] = "0.";
		size_t n = 2;
		for (p++; p < e && is_digit((unsigned char)*p); p++)
			if (n < sizeof buf - 1)
				buf[n++] = *p;
		buf[n] = '\0';
		frac = strtod(buf, NULL);
	}
	off = to ? (double)to->utc_offset : 0;
	if (p < e && *p == 'Z') {
		p++, off = 0, q = 3;
	} else if (p < e && (*p == '+' || *p == '-') && p + 3 <= e && is_digit((unsigned char)p[1])) {
		int sign = *p == '-' ? -1 : 1;
		long oh, om = 0;
		p++;
		if ((oh = digits(&p, e, 2)) < 0)
			return 0;
		if (p < e && *p == ':')
			p++;
		if (p < e && is_digit((unsigned char)*p) && (om = digits(&p, e, 2)) < 0)
			return 0;
		off = sign * (double)(oh * 3600 + om * 60), q = 3;
	}
	if (p < e && *p != ' ')
		return 0;
	*end = p;
	*t = civil_time(y, (int)mo, (int)d, h, mi, s) + frac - off;
	return q;
}

/* tai64n label `@4000000000000000xxxxxxxx`. Quality 3. */
static int parse_tai64n(const char *p, const char *e, double *t, const char **end)
{
	uint64_t label = 0, nano = 0;
	if (e - p < 25 || *p != '@')
		return 0;
	for (int i = 1; i <= 24; i++) {
		int c = (unsigned char)p[i], v;
		if (is_digit(c))
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return 0;
		if (i <= 16)
			label = label << 4 | (uint64_t)v;
		else
			nano = nano << 4 | (uint64_t)v;
	}
	if (p + 25 < e && p[25] != ' ')
		return 0;
	*t = (double)(int64_t)(label - UINT64_C(0x400000000000000a)) + (double)nano / 1e9;
	*end = p + 25;
	return 3;
}

/* ------------------------------------------------------------ program tags */
static const char *const postfix_daemons[] = {
	"smtpd", "smtp", "lmtp", "qmgr", "cleanup", "pickup", "bounce", "local", "virtual", "pipe",
	"error", "retry", "discard", "postscreen", "trivial-rewrite", "tlsmgr", "tlsproxy", "anvil",
	"scache", "verify", "proxymap", "postdrop", "sendmail", "postsuper", "showq", "dnsblog",
	"postlog", "postqueue", "master", "postfix-script", "oqmgr", "flush", "spawn", "qmqpd", NULL,
};
static const char *const dovecot_services[] = {
	"dovecot", "lmtp", "lda", "deliver", "imap", "pop3", "imap-login", "pop3-login", "auth",
	"auth-worker", "master", "managesieve", "managesieve-login", "submission", "submission-login",
	"indexer", "indexer-worker", "dict", "stats", "config", "log", "doveadm", "quota-status",
	"anvil", "imap-hibernate", "replicator", "aggregator", NULL,
};

/* Whether s (not NUL-terminated, and may contain NUL bytes) is exactly one of the names in l. */
static int in_list(const char *const *l, ml_str s)
{
	if (s.n == 0)
		return 0;
	for (; *l; l++)
		if ((*l)[0] == s.p[0] && strlen(*l) == s.n && memcmp(*l, s.p, s.n) == 0)
			return 1;
	return 0;
}

static unsigned char tag_chars[256];

static int tag_char(int c)
{
	if (!tag_chars['a']) {
		for (int i = 0; i < 256; i++)
			tag_chars[i] = (unsigned char)(is_alnum(i) || i == '/' || i == '-' || i == '_' || i == '.' || i == '+' || i == '@');
	}
	return tag_chars[c];
}

/* Parses `name[pid]: `, `name: `, or the Dovecot form `name(args)<pid><session>: `. On success
 * sets program/pid, *paren when the Dovecot form was used, and *msg to the message start. */
static int parse_tag(const char *p, const char *e, ml_record *r, int *paren, const char **msg)
{
	const char *n0 = p;
	*paren = 0;
	while (p < e && tag_char((unsigned char)*p))
		p++;
	if (p == n0 || p >= e)
		return 0;
	ml_str name = mk(n0, p);
	if (*p == '[') {
		const char *q = p + 1;
		long pid = digits(&q, e, 10);
		if (pid < 0 || q >= e || *q != ']')
			return 0;
		r->pid = pid, r->has_pid = 1;
		p = q + 1;
	} else if (*p == '(') {
		const char *q = memchr(p, ')', (size_t)(e - p));
		if (!q || q - p > 512)
			return 0;
		p = q + 1;
		while (p < e && *p == '<') {
			q = memchr(p, '>', (size_t)(e - p));
			if (!q || q - p > 128)
				return 0;
			p = q + 1;
		}
		*paren = 1;
	}
	if (p >= e || *p != ':' || (p + 1 < e && p[1] != ' '))
		return 0;
	r->program = name;
	*msg = p + 1 < e ? p + 2 : e;
	return 1;
}

static int classify(ml_record *r, int paren)
{
	ml_str name = r->program;
	const char *slash = NULL;
	for (const char *q = name.p + name.n; q > name.p; q--)
		if (q[-1] == '/') {
			slash = q - 1;
			break;
		}
	if (slash) {
		r->instance = mk(name.p, slash);
		r->daemon = mk(slash + 1, name.p + name.n);
	} else
		r->daemon = name;
	if (paren)
		return in_list(dovecot_services, name) ? ML_DOVECOT : ML_OTHER;
	if (name.n >= 7 && memcmp(name.p, "postfix", 7) == 0 && (name.n == 7 || name.p[7] == '/' || name.p[7] == '-'))
		return ML_POSTFIX; /* postfix, postfix/..., postfix-out/... (not postfix_message_level) */
	if (slash)
		return in_list(postfix_daemons, r->daemon) ? ML_POSTFIX : ML_OTHER;
	if (name.n == 7 && memcmp(name.p, "dovecot", 7) == 0)
		return ML_DOVECOT;
	if (r->has_pid)
		return in_list(postfix_daemons, name) ? ML_POSTFIX : ML_OTHER;
	return in_list(dovecot_services, name) ? ML_DOVECOT : ML_OTHER;
}

/* `NAME   | ` prefix of docker compose / swarm service logs. */
static const char *skip_container(const char *p, const char *e, ml_record *r)
{
	const char *q = p;
	while (q < e && q - p < 200 && (is_alnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '.' || *q == '@'))
		q++;
	if (q == p || q >= e || *q != ' ')
		return p;
	const char *n = q;
	while (q < e && *q == ' ')
		q++;
	if (e - q >= 2 && q[0] == '|' && q[1] == ' ') {
		r->container = mk(p, n);
		return q + 2;
	}
	return p;
}

/* full = 0: the scanner's hot path; Postfix messages only get their queue id and `removed`. */
static int parse_line(const char *line, size_t len, const ml_time_opts *to, ml_record *r, int full);

int ml_parse_line(const char *line, size_t len, const ml_time_opts *to, ml_record *r)
{
	return parse_line(line, len, to, r, 1);
}

int ml_parse_head(const char *line, size_t len, ml_record *r)
{
	return parse_line(line, len, NULL, r, 0);
}

/* Whether [p, t) holds `: ` or `(` (t < e, t[-1] a space: the bytes up to e may be read). 16
 * positions at a time: this runs for every line of the per-line scanner. */
static int earlier_tag_mark(const char *p, const char *t, const char *e)
{
#ifdef __SSE2__
	const __m128i colon = _mm_set1_epi8(':'), sp = _mm_set1_epi8(' '), paren = _mm_set1_epi8('(');
	for (; p + 1 < t && e - p >= 17; p += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i a = _mm_cmpeq_epi8(x, colon);
		__m128i b = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 1)), sp);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_and_si128(a, b), _mm_cmpeq_epi8(x, paren)));
		size_t lim = (size_t)(t - 1 - p); /* a mark at p + i counts when i < lim (t[-1] is a space) */
		if (lim < 16)
			m &= (1u << lim) - 1;
		if (m)
			return 1;
	}
#endif
	for (; p + 1 < t; p++)
		if ((p[0] == ':' && p[1] == ' ') || p[0] == '(')
			return 1;
	return 0;
}

/* Fast path of ml_parse_head for the dominant shape `... tag[pid]: QUEUEID: ...`: finds the
 * first `]: `, checks the tag, reads the queue id. Returns -1 when the line needs the general
 * parser. Only family, queue_id and event are set. */
static int parse_fast(const char *line, size_t len, ml_record *r)
{
	const char *e = line + len, *rb, *lb, *t;
	size_t lim = len < 256 ? len : 256;
	rb = memchr(line, ']', lim);
	if (!rb || e - rb < 3 || rb[1] != ':' || rb[2] != ' ')
		return -1;
	/* the tag must be one the general parser takes: 1 to 10 digits of pid and tag characters
	 * (`(` is none), else it reads this word as the host */
	unsigned bad = 0;
	lb = rb;
	while (lb > line && lb[-1] != '[' && lb[-1] != ' ')
		lb--, bad |= !is_digit((unsigned char)*lb);
	if (lb == line || lb[-1] != '[' || bad || rb - lb < 1 || rb - lb > 10)
		return -1;
	t = --lb;
	(void)tag_char(0); /* the table is set */
	while (t > line && t[-1] != ' ')
		t--, bad |= !tag_chars[(unsigned char)*t];
	if (bad || t == lb || (t > line && t - line < 15)) /* a tag needs a header (or nothing) before it */
		return -1;
	/* A `: ` before it ends an earlier tag (`postfix-out: ... x[1]: `, `dovecot: `), a `(` before
	 * it or in it opens a Dovecot one that may span it (`lmtp(user)<pid ... x[1]: ...><s>: `):
	 * the tag is that one, and this `]: ` is in it or in its message. No header or Postfix tag
	 * holds either. */
	if (earlier_tag_mark(line, t, e))
		return -1;
	r->program = (ml_str){ t, (size_t)(lb - t) };
	r->has_pid = 1;
	r->family = classify(r, 0);
	if (r->family != ML_POSTFIX)
		return r->family == ML_OTHER ? ML_OTHER : -1;
	const char *msg = rb + 3;
	size_t qn = ml_queue_id_len(msg, e);
	if (qn) {
		r->queue_id = (ml_str){ msg, qn };
		if (e - msg == (ptrdiff_t)qn + 9 && memcmp(msg + qn, ": removed", 9) == 0)
			r->event = (ml_str){ "removed", 7 };
	}
	return ML_POSTFIX;
}

static int parse_line(const char *line, size_t len, const ml_time_opts *to, ml_record *r, int full)
{
	if (!full) {
		int fam;
		r->family = 0, r->queue_id.p = NULL, r->event.p = NULL, r->session.p = NULL;
		r->instance.p = NULL, r->has_pid = 0, r->repeated = 0;
		if ((fam = parse_fast(line, len, r)) >= 0)
			return fam;
	}
	const char *p = line, *e = line + len, *q, *msg = NULL;
	int best = 0, paren = 0;
	memset(r, 0, full ? sizeof *r : offsetof(ml_record, from));
	r->saved = -1;
	while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
		e--;
	p = skip_container(p, e, r);
	for (int i = 0; i < 3; i++) {
		double t = 0;
		int qual;
		while (p < e && is_space((unsigned char)*p))
			p++;
		if (p >= e)
			break;
		if ((qual = parse_iso(p, e, to, &t, &q)) == 0 && (qual = parse_tai64n(p, e, &t, &q)) == 0)
			qual = parse_rfc3164(p, e, to, &t, &q);
		if (!qual)
			break;
		r->timestamp = mk(p, q);
		if (to && qual > best)
			r->time = t, r->has_time = 1, r->time_zoned = qual >= 3, best = qual;
		else if (!to && !best)
			best = qual;
		p = q;
	}
	while (p < e && is_space((unsigned char)*p))
		p++;
	if (p >= e)
		return ML_OTHER;
	const char *tag = p;
	if (!parse_tag(p, e, r, &paren, &msg)) {
		if (!r->timestamp.p)
			return ML_OTHER;
		q = p;
		while (q < e && *q != ' ')
			q++;
		r->host = mk(p, q);
		while (q < e && *q == ' ')
			q++;
		tag = q;
		r->has_pid = 0;
		if (!parse_tag(q, e, r, &paren, &msg))
			return ML_OTHER;
	}
	r->family = classify(r, paren);
	if (r->family == ML_OTHER)
		return ML_OTHER;
	if (paren)
		msg = tag; /* Dovecot's own log file: the tag is the service prefix */
	if (STARTS(msg, e, "[ID ") && (q = memchr(msg, ']', (size_t)(e - msg))) != NULL)
		msg = q + 1 < e ? q + 2 : e; /* Solaris msgid */
	if (msg > e)
		msg = e;
	r->message = mk(msg, e);
	/* rsyslog's `message repeated N times: [ MSG]` stands for N more copies of MSG */
	if (STARTS(msg, e, "message repeated ")) {
		const char *x = msg + SLEN("message repeated ");
		long n = digits(&x, e, 9);
		if (n > 0 && STARTS(x, e, " times: [") && e - x > (ptrdiff_t)SLEN(" times: [") && e[-1] == ']') {
			msg = x + SLEN(" times: [");
			e--;
			while (msg < e && *msg == ' ')
				msg++;
			r->repeated = n;
			r->message = mk(msg, e);
		}
	}
	if (r->family == ML_POSTFIX && !full) {
		size_t qn = ml_queue_id_len(msg, e);
		if (qn) {
			r->queue_id = (ml_str){ msg, qn };
			if (e - msg == (ptrdiff_t)qn + 9 && memcmp(msg + qn, ": removed", 9) == 0)
				r->event = (ml_str){ "removed", 7 };
		}
	} else if (r->family == ML_POSTFIX)
		ml_parse_postfix(msg, e, r);
	else {
		if (!paren && !(r->program.n == 7 && memcmp(r->program.p, "dovecot", 7) == 0)) {
			/* `master: Info: ...`: the tag is the service */
			r->service = r->program;
		}
		ml_parse_dovecot(msg, e, r, full);
	}
	return r->family;
}
