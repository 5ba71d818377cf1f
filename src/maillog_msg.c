/* maillog_msg.c: the field readers every message parser shares: the Postfix queue id, `<addr>`
 * or bare values, `host[ip]:port`, numbers, and the remote client named in a free-form text.
 * The message parsers themselves are per program family: maillog_daemon_postfix.c (a table
 * from daemon name to the message shapes it logs) and maillog_daemon_dovecot.c.
 * Depends on: maillog_parse.h, libc. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "maillog_parse.h"

static int is_upper_hex(int c) { return is_digit(c) || (c >= 'A' && c <= 'F'); }

/* A decimal number at p (exact, via strtod on a bounded copy: lines are not NUL-terminated). */
double ml_number(const char *p, const char *e, const char **end)
{
	char buf[32];
	size_t n = 0;
	while (p + n < e && n < sizeof buf - 1 && (is_digit((unsigned char)p[n]) || p[n] == '.'))
		n++;
	memcpy(buf, p, n);
	buf[n] = '\0';
	if (end)
		*end = p + n;
	return n ? strtod(buf, NULL) : 0;
}

/* A non-negative decimal integer at the start of [p, e) into *out. Returns 0 when there is no
 * digit or the value does not fit a long (Postfix never logs one), so the field is left absent. */
int ml_decimal_long(const char *p, const char *e, long *out)
{
	long v = 0;
	const char *q = p;
	for (; q < e && is_digit((unsigned char)*q); q++) {
		int d = *q - '0';
		if (v > (LONG_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	if (q == p)
		return 0;
	*out = v;
	return 1;
}

/* A Postfix queue id: short upper-case hex, or a long id (base 52 without vowels, `z` between
 * the time and inode parts). Returns its length when `p` starts with `ID: `, else 0. */
size_t ml_queue_id_len(const char *p, const char *e)
{
	const char *q = p;
	/* fast path: short upper-case hex id followed by `: ` */
	while (q < e && q - p < 32 && is_upper_hex((unsigned char)*q))
		q++;
	if (q - p >= 5 && q < e && *q == ':' && (q + 1 == e || q[1] == ' '))
		return (size_t)(q - p);
	if (q < e && *q == ':')
		return 0;
	q = p;
	int hex = 1, z = 0, vowel = 0;
	while (q < e && is_alnum((unsigned char)*q) && q - p < 32) {
		int c = (unsigned char)*q;
		if (!is_upper_hex(c))
			hex = 0;
		if (c == 'z')
			z = 1;
		else if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'A' || c == 'E' || c == 'I' ||
		         c == 'O' || c == 'U')
			vowel = 1;
		q++;
	}
	size_t n = (size_t)(q - p);
	if (e - q < 1 || *q != ':' || (q + 1 < e && q[1] != ' '))
		return 0;
	if (hex && n >= 5)
		return n;
	if (!hex && z && !vowel && n >= 12)
		return n;
	return 0;
}

/* `<addr>` or a bare value up to one of the stop characters. */
ml_str ml_angle_or_word(const char *p, const char *e, const char *stop, const char **end)
{
	if (p < e && *p == '<') {
		const char *q = memchr(p, '>', (size_t)(e - p));
		if (q) {
			*end = q + 1;
			return mk(p + 1, q);
		}
	}
	const char *q = p;
	while (q < e && !strchr(stop, *q))
		q++;
	*end = q;
	return mk(p, q);
}

/* `host[ip]:port` or `host[ip]` or `[ip]:port`. */
void ml_split_hostaddr(ml_str s, ml_str *host, ml_str *ip, ml_str *port)
{
	const char *p = s.p, *e = s.p + s.n;
	const char *lb = memchr(p, '[', s.n);
	if (!lb) {
		*host = s;
		return;
	}
	const char *rb = memchr(lb, ']', (size_t)(e - lb));
	if (!rb)
		return;
	*host = mk(p, lb);
	*ip = mk(lb + 1, rb);
	if (rb + 1 < e && rb[1] == ':')
		*port = mk(rb + 2, e);
}

/* The remote client of a line without a fixed shape: `... from HOST[IP](:PORT)?`, a leading
 * `HOST[IP]: ` (SASL warnings) or postscreen's `[IP]:PORT`. */
void ml_find_client(const char *p, const char *e, ml_record *r)
{
	const char *q = FIND(p, e, " from "), *s, *x;
	if (q)
		s = q + SLEN(" from ");
	else if ((q = memchr(p, '[', (size_t)(e - p))) != NULL && (q == p || q[-1] == ' ' || memchr(p, ' ', (size_t)(q - p)) == NULL)) {
		s = q;
		while (s > p && s[-1] != ' ')
			s--;
	} else
		return;
	x = s;
	while (x < e && *x != ' ' && *x != '[')
		x++;
	if (x >= e || *x != '[' || !(x = memchr(x, ']', (size_t)(e - x))))
		return;
	x++;
	if (x + 1 < e && *x == ':' && is_digit((unsigned char)x[1]))
		for (x++; x < e && is_digit((unsigned char)*x); x++)
			;
	if (x < e && *x != ':' && *x != ' ' && *x != ',' && *x != ';')
		return;
	r->client = mk(s, x);
	ml_split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
}
