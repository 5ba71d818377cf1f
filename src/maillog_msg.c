/* maillog_msg.c: the message part of Postfix and Dovecot lines (after `program[pid]: `).
 *
 * Postfix: `QUEUEID: ` or `NOQUEUE: ` then the daemon's text: client=..., message-id=...,
 * from=<..>, size=, nrcpt= (queue active), to=<..>, orig_to=, relay=, delay=, delays=a/b/c/d,
 * dsn=, status=X (reply), removed, status=expired, reject/milter-reject/... lines, bounce
 * notifications. The reply gives the next hop's `queued as ID` or Dovecot's `<rcpt> SESSION Saved`.
 * Dovecot: `service(user)<pid><session>: Level: [sieve: ]msgid=<..>: saved mail to X | failed ...`
 * in the 2.3+ form and `service(pid, user): SESSION: ...` in the 2.2 form.
 * Depends on: maillog.h, libc. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "maillog.h"

#define SLEN(s) (sizeof(s) - 1)
#define STR(s) ((ml_str){ (s), SLEN(s) })

static ml_str mk(const char *p, const char *e) { return (ml_str){ p, (size_t)(e - p) }; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_upper_hex(int c) { return is_digit(c) || (c >= 'A' && c <= 'F'); }

static int starts(const char *p, const char *e, const char *lit, size_t n)
{
	return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0;
}
#define STARTS(p, e, lit) starts((p), (e), (lit), SLEN(lit))

static const char *find(const char *p, const char *e, const char *lit, size_t n)
{
	if (p >= e)
		return NULL;
	return memmem(p, (size_t)(e - p), lit, n);
}
#define FIND(p, e, lit) find((p), (e), (lit), SLEN(lit))

static const char *rfind(const char *p, const char *e, const char *lit, size_t n)
{
	for (const char *q = e - n; q >= p; q--)
		if (memcmp(q, lit, n) == 0)
			return q;
	return NULL;
}
#define RFIND(p, e, lit) rfind((p), (e), (lit), SLEN(lit))

/* A decimal number at p (exact, via strtod on a bounded copy: lines are not NUL-terminated). */
static double number(const char *p, const char *e, const char **end)
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
static int decimal_long(const char *p, const char *e, long *out)
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
static ml_str angle_or_word(const char *p, const char *e, const char *stop, const char **end)
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
static void split_hostaddr(ml_str s, ml_str *host, ml_str *ip, ml_str *port)
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

/* Inside the parenthesised reply: next hop id, Dovecot session, SMTP code. */
static void parse_reply(ml_str rep, ml_record *r)
{
	const char *p = rep.p, *e = rep.p + rep.n, *q;
	const char *s = NULL;
	if ((q = RFIND(p, e, "queued as ")) != NULL)
		s = q + SLEN("queued as ");
	else if ((q = RFIND(p, e, "forwarded as ")) != NULL)
		s = q + SLEN("forwarded as ");
	if (s) {
		q = s;
		while (q < e && is_alnum((unsigned char)*q))
			q++;
		if (q > s)
			r->queued_as = mk(s, q);
	}
	if (rep.n > 6 && memcmp(e - 6, " Saved", 6) == 0) {
		q = e - 6;
		const char *b = q;
		while (b > p && b[-1] != ' ')
			b--;
		if (b > p && q > b && *b != '<')
			r->session = mk(b, q);
	}
	q = p;
	const char *said = FIND(p, e, " said: ");
	if (said)
		q = said + SLEN(" said: ");
	if (e - q >= 4 && is_digit((unsigned char)q[0]) && is_digit((unsigned char)q[1]) &&
	    is_digit((unsigned char)q[2]) && (q[3] == ' ' || q[3] == '-'))
		r->code = (q[0] - '0') * 100 + (q[1] - '0') * 10 + (q[2] - '0'), r->has_code = 1;
}

/* `to=<a>, orig_to=<b>, relay=..., delay=..., delays=a/b/c/d, dsn=..., status=sent (reply)`. */
static void parse_delivery(const char *p, const char *e, ml_record *r)
{
	while (p < e) {
		const char *eq = p;
		while (eq < e && (is_alnum((unsigned char)*eq) || *eq == '_'))
			eq++;
		if (eq >= e || *eq != '=')
			break;
		ml_str key = mk(p, eq), v;
		const char *q;
		p = eq + 1;
		if (key.n == 6 && memcmp(key.p, "status", 6) == 0) {
			q = p;
			while (q < e && *q != ' ' && *q != ',')
				q++;
			r->status = mk(p, q);
			p = q;
			while (p < e && *p == ' ')
				p++;
			if (p < e && *p == '(') {
				const char *rp = e;
				while (rp > p && rp[-1] != ')')
					rp--;
				if (rp > p + 1)
					r->reply = mk(p + 1, rp - 1);
				else
					r->reply = mk(p + 1, e);
				parse_reply(r->reply, r);
			} else if (p < e && *p == ',') {
				r->text = mk(p + 1 < e ? p + 2 : e, e); /* `status=expired, returned to sender` */
			}
			return;
		}
		v = angle_or_word(p, e, ",", &q);
		p = q;
		if (p < e && *p == ',')
			p++;
		while (p < e && *p == ' ')
			p++;
#define KEY(lit) (key.n == SLEN(lit) && memcmp(key.p, lit, SLEN(lit)) == 0)
		if (KEY("to"))
			r->to = v;
		else if (KEY("orig_to"))
			r->orig_to = v;
		else if (KEY("from"))
			r->from = v;
		else if (KEY("relay")) {
			r->relay = v;
			split_hostaddr(v, &r->relay_host, &r->relay_ip, &r->relay_port);
		} else if (KEY("delay"))
			r->delay = number(v.p, v.p + v.n, NULL), r->has_delay = 1;
		else if (KEY("delays")) {
			const char *x = v.p, *xe = v.p + v.n;
			int i;
			for (i = 0; i < 4 && x < xe; i++) {
				r->delays[i] = number(x, xe, &x);
				if (x < xe && *x == '/')
					x++;
				else {
					i++;
					break;
				}
			}
			r->has_delays = i == 4;
		} else if (KEY("dsn"))
			r->dsn = v;
		else if (KEY("conn_use"))
			r->conn_use = v;
		else if (KEY("tls"))
			r->tls = v;
		else if (KEY("size"))
			r->has_size = decimal_long(v.p, v.p + v.n, &r->size);
		else if (KEY("nrcpt"))
			r->has_nrcpt = decimal_long(v.p, v.p + v.n, &r->nrcpt);
#undef KEY
	}
	if (p < e)
		r->text = mk(p, e);
}

/* `from=<a> to=<b> proto=ESMTP helo=<h>` (space or `, ` separated) after a reject. */
static void parse_reject_kv(const char *p, const char *e, ml_record *r)
{
	while (p < e) {
		while (p < e && (*p == ' ' || *p == ','))
			p++;
		const char *eq = p;
		while (eq < e && (is_alnum((unsigned char)*eq) || *eq == '_'))
			eq++;
		if (eq >= e || *eq != '=')
			return;
		ml_str key = mk(p, eq);
		const char *q;
		ml_str v = angle_or_word(eq + 1, e, " ,", &q);
		p = q;
		if (key.n == 4 && !memcmp(key.p, "from", 4))
			r->from = v;
		else if (key.n == 2 && !memcmp(key.p, "to", 2))
			r->to = v;
		else if (key.n == 5 && !memcmp(key.p, "proto", 5))
			r->proto = v;
		else if (key.n == 4 && !memcmp(key.p, "helo", 4))
			r->helo = v;
	}
}

/* `ACTION: STAGE from HOST[IP](:PORT)?: [CODE ][X.Y.Z ][<data>: ]reason; from=<> to=<> ...` */
static int parse_reject(const char *p, const char *e, ml_record *r)
{
	static const char *const actions[] = { "reject", "milter-reject", "reject_warning", "discard",
		"hold", "warn", "filter", "redirect", "prepend", "bcc", NULL };
	const char *q = memchr(p, ':', (size_t)(e - p));
	int known = 0;
	if (!q || q + 1 >= e || q[1] != ' ')
		return 0;
	for (int i = 0; actions[i]; i++)
		if ((size_t)(q - p) == strlen(actions[i]) && !memcmp(p, actions[i], (size_t)(q - p)))
			known = 1;
	if (!known)
		return 0;
	r->action = mk(p, q);
	p = q + 2;
	q = p;
	while (q < e && (is_alnum((unsigned char)*q) || *q == '-'))
		q++;
	if (q >= e || *q != ' ' || !STARTS(q, e, " from "))
		return 0;
	r->stage = mk(p, q);
	p = q + SLEN(" from ");
	/* client ends at `]: ` or `]:PORT: ` */
	q = p;
	const char *cl_end = NULL;
	while (q < e) {
		const char *rb = memchr(q, ']', (size_t)(e - q));
		if (!rb)
			break;
		const char *x = rb + 1;
		if (x < e && *x == ':' && x + 1 < e && is_digit((unsigned char)x[1])) {
			x++;
			while (x < e && is_digit((unsigned char)*x))
				x++;
		}
		if (e - x >= 2 && x[0] == ':' && x[1] == ' ') {
			cl_end = x;
			break;
		}
		q = rb + 1;
	}
	if (!cl_end)
		return 0;
	r->client = mk(p, cl_end);
	split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
	p = cl_end + 2;
	/* the key=value tail starts at the last `; from=` (or `; to=`, postscreen `; from=`) */
	const char *kv = RFIND(p, e, "; from=");
	if (!kv)
		kv = RFIND(p, e, "; to=");
	if (!kv) /* a MAIL-stage reject names no sender or recipient: `...; proto=ESMTP helo=<...>` */
		kv = RFIND(p, e, "; proto=");
	const char *re = kv ? kv : e;
	if (kv)
		parse_reject_kv(kv + 2, e, r);
	if (re - p >= 4 && is_digit((unsigned char)p[0]) && is_digit((unsigned char)p[1]) &&
	    is_digit((unsigned char)p[2]) && p[3] == ' ') {
		r->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0'), r->has_code = 1;
		p += 4;
	}
	if (re - p >= 5 && (p[0] == '2' || p[0] == '4' || p[0] == '5') && p[1] == '.') {
		q = p + 2;
		while (q < re && (is_digit((unsigned char)*q) || *q == '.'))
			q++;
		if (q < re && *q == ' ')
			r->enhanced = mk(p, q), p = q + 1;
	}
	/* `<data>: reason` or `data: reason` where data has no spaces */
	q = p;
	while (q < re && *q != ' ' && *q != ':')
		q++;
	if (q + 1 < re && *q == ':' && q[1] == ' ' && q > p) {
		ml_str d = mk(p, q);
		if (d.n >= 2 && d.p[0] == '<' && d.p[d.n - 1] == '>')
			d = mk(d.p + 1, d.p + d.n - 1);
		r->rejected = d;
		p = q + 2;
	}
	/* reject_rbl_*: `Service unavailable; client [X] blocked using ZONE[; text]` */
	if (!r->rejected.p && STARTS(p, re, "Service unavailable; ") && (q = FIND(p, re, "] blocked using ")) != NULL) {
		const char *lb = q;
		while (lb > p && *lb != '[')
			lb--;
		if (*lb == '[') {
			r->rejected = mk(lb + 1, q);
			p = q + 2;
		}
	}
	r->reason = mk(p, re);
	r->event = STR("reject");
	return 1;
}

/* The remote client of a line without a fixed shape: `... from HOST[IP](:PORT)?`, a leading
 * `HOST[IP]: ` (SASL warnings) or postscreen's `[IP]:PORT`. */
static void find_client(const char *p, const char *e, ml_record *r)
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
	split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
}

static const char *const levels[] = { "warning", "fatal", "panic", "error", "info", "statistics", NULL };

int ml_parse_postfix(const char *p, const char *e, ml_record *r)
{
	size_t qn = ml_queue_id_len(p, e);
	const char *q;
	if (qn) {
		r->queue_id = mk(p, p + qn);
		p += qn + 1;
		if (p < e)
			p++;
	} else if (STARTS(p, e, "NOQUEUE: ")) {
		r->queue_id = mk(p, p + 7);
		p += SLEN("NOQUEUE: ");
	}
	r->text = mk(p, e);
	if (STARTS(p, e, "to=<") || STARTS(p, e, "to=")) {
		parse_delivery(p, e, r);
		r->event = r->status.p ? STR("delivery") : STR("recipient");
	} else if (STARTS(p, e, "from=")) {
		parse_delivery(p, e, r);
		if (r->status.p)
			r->event = STR("expired");
		else if (FIND(p, e, "(queue active)"))
			r->event = STR("queued");
		else
			r->event = STR("from");
	} else if (STARTS(p, e, "client=")) {
		const char *x;
		r->client = angle_or_word(p + 7, e, ",", &x);
		split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
		r->event = STR("client");
	} else if (STARTS(p, e, "message-id=")) {
		const char *x;
		r->message_id = angle_or_word(p + SLEN("message-id="), e, " ,", &x);
		r->event = STR("message-id");
	} else if (e - p == 7 && STARTS(p, e, "removed")) {
		r->event = STR("removed");
	} else if ((q = FIND(p, e, " notification: ")) != NULL && r->queue_id.p) {
		q += SLEN(" notification: ");
		const char *s = q;
		while (q < e && is_alnum((unsigned char)*q))
			q++;
		r->bounce_id = mk(s, q);
		r->event = STR("bounce");
	} else if (STARTS(p, e, "uid=")) {
		if ((q = FIND(p, e, "from=")) != NULL) {
			const char *x;
			r->from = angle_or_word(q + 5, e, " ,", &x);
		}
		r->event = STR("pickup");
	} else if (parse_reject(p, e, r)) {
		/* event set */
	} else if (!r->queue_id.p && (STARTS(p, e, "connect from ") || STARTS(p, e, "disconnect from "))) {
		const char *s = p + (p[0] == 'c' ? SLEN("connect from ") : SLEN("disconnect from "));
		q = s;
		while (q < e && *q != ' ')
			q++;
		r->client = mk(s, q);
		split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
		r->event = p[0] == 'c' ? STR("connect") : STR("disconnect");
	} else {
		q = memchr(p, ':', (size_t)(e - p));
		if (q)
			for (int i = 0; levels[i]; i++)
				if ((size_t)(q - p) == strlen(levels[i]) && !memcmp(p, levels[i], (size_t)(q - p))) {
					r->level = mk(p, q);
					r->text = mk(q + 1 < e ? q + 2 : e, e);
					break;
				}
		find_client(r->text.p, r->text.p + r->text.n, r);
	}
	return 1;
}

/* ------------------------------------------------------------------ Dovecot */
static const char *const dlevels[] = { "Info", "Warning", "Error", "Fatal", "Panic", "Debug", NULL };

static int is_session_char(int c) { return is_alnum(c) || c == '+' || c == '/'; }

/* `pam(user,ip)` / `sql(user,ip,<session>)` / `passwd-file(user)` in auth(-worker) lines. */
static void passdb_user(const char *p, const char *e, ml_record *r)
{
	static const char *const drivers[] = { "pam(", "sql(", "passwd-file(", "ldap(", "passwd(",
		"shadow(", "checkpassword(", "static(", "lua(", "oauth2(", "bsdauth(", NULL };
	for (int i = 0; drivers[i]; i++) {
		const char *q = find(p, e, drivers[i], strlen(drivers[i]));
		if (!q || (q > p && is_alnum((unsigned char)q[-1])))
			continue;
		const char *s = q + strlen(drivers[i]), *x = s;
		while (x < e && *x != ',' && *x != ')')
			x++;
		if (x >= e || x == s || *s == '?')
			return;
		r->user = mk(s, x);
		if (*x == ',') {
			const char *ip = ++x;
			while (x < e && *x != ',' && *x != ')')
				x++;
			if (x < e && x > ip && *ip != '<')
				r->client_ip = mk(ip, x);
		}
		return;
	}
}

int ml_parse_dovecot(const char *p, const char *e, ml_record *r, int full)
{
	const char *q;
	if (!r->service.p) {
		q = p;
		while (q < e && (is_alnum((unsigned char)*q) || *q == '-' || *q == '_'))
			q++;
		if (q > p && q < e && (*q == '(' || *q == ':')) {
			ml_str svc = mk(p, q);
			const char *x = q;
			if (*x == '(') {
				const char *rp = memchr(x, ')', (size_t)(e - x));
				if (!rp)
					goto body;
				/* args: `user`, `pid`, `pid, user` */
				const char *a = x + 1;
				while (a < rp) {
					const char *ae = memchr(a, ',', (size_t)(rp - a));
					if (!ae)
						ae = rp;
					const char *t = a;
					while (t < ae && is_digit((unsigned char)*t))
						t++;
					if (t == ae && ae > a) {
						r->pid = strtol(a, NULL, 10), r->has_pid = 1;
					} else if (ae > a)
						r->user = mk(a, ae);
					a = ae + 1;
					while (a < rp && *a == ' ')
						a++;
				}
				x = rp + 1;
				for (int i = 0; x < e && *x == '<' && i < 2; i++) {
					const char *gt = memchr(x, '>', (size_t)(e - x));
					if (!gt)
						break;
					if (i == 0)
						r->pid = strtol(x + 1, NULL, 10), r->has_pid = 1;
					else
						r->session = mk(x + 1, gt);
					x = gt + 1;
				}
			}
			if (e - x >= 1 && *x == ':') {
				r->service = svc;
				p = x + 1 < e ? x + 2 : e;
			}
		}
	}
body:
	if (p > e)
		p = e;
	q = memchr(p, ':', (size_t)(e - p));
	if (q)
		for (int i = 0; dlevels[i]; i++)
			if ((size_t)(q - p) == strlen(dlevels[i]) && !memcmp(p, dlevels[i], (size_t)(q - p))) {
				r->level = mk(p, q);
				p = q + 1 < e ? q + 2 : e;
				break;
			}
	/* Dovecot 2.2: `lmtp(pid, user): SESSION: msgid=...` */
	if (!r->session.p && r->user.p) {
		q = p;
		while (q < e && is_session_char((unsigned char)*q))
			q++;
		if (q - p >= 16 && q - p <= 32 && q + 1 < e && *q == ':' && q[1] == ' ') {
			r->session = mk(p, q);
			p = q + 2;
		}
	}
	r->text = mk(p, e);
	if (!full)
		return 1;
	if (STARTS(p, e, "sieve: "))
		p += SLEN("sieve: ");
	if (STARTS(p, e, "msgid=")) {
		const char *x;
		r->message_id = angle_or_word(p + 6, e, ":", &x);
		p = x;
		if (STARTS(p, e, ": "))
			p += 2;
	}
	/* Pigeonhole names the action: `fileinto action: stored mail into mailbox 'Junk'` */
	if ((q = FIND(p, e, " action: ")) != NULL && q - p <= 16 &&
	    (STARTS(q + SLEN(" action: "), e, "stored mail into mailbox ") ||
	     STARTS(q + SLEN(" action: "), e, "failed to store into mailbox ")))
		p = q + SLEN(" action: ");
	if (STARTS(p, e, "saved mail to ")) {
		r->saved = 1;
		r->mailbox = mk(p + SLEN("saved mail to "), e);
	} else if (STARTS(p, e, "stored mail into mailbox ")) {
		p += SLEN("stored mail into mailbox ");
		r->saved = 1;
		if (p < e && *p == '\'' && (q = memchr(p + 1, '\'', (size_t)(e - p - 1))) != NULL)
			r->mailbox = mk(p + 1, q);
		else
			r->mailbox = mk(p, e);
	} else if (STARTS(p, e, "failed to store into mailbox ") || STARTS(p, e, "save failed to ")) {
		p += p[0] == 'f' ? SLEN("failed to store into mailbox ") : SLEN("save failed to ");
		if (STARTS(p, e, "open mailbox "))
			p += SLEN("open mailbox ");
		r->saved = 0;
		if (p < e && *p == '\'' && (q = memchr(p + 1, '\'', (size_t)(e - p - 1))) != NULL) {
			r->mailbox = mk(p + 1, q);
			p = q + 1;
		} else {
			q = FIND(p, e, ": ");
			r->mailbox = mk(p, q ? q : e);
			p = q ? q : e;
		}
		if (STARTS(p, e, ": "))
			p += 2;
		r->error = mk(p, e);
	} else if ((q = FIND(p, e, ": rcpt ")) != NULL || STARTS(p, e, "rcpt ")) {
		q = q ? q + SLEN(": rcpt ") : p + SLEN("rcpt ");
		const char *c = FIND(q, e, ": ");
		if (c) {
			if (!r->user.p)
				r->user = mk(q, c);
			r->error = mk(c + 2, e);
			r->event = STR("rcpt-error");
		}
	} else if (r->level.p && r->level.n == 5 && !memcmp(r->level.p, "Error", 5)) {
		r->error = mk(p, e);
	}
	if (!r->user.p)
		passdb_user(p, e, r);
	if (r->saved == 1)
		r->event = STR("saved");
	else if (r->saved == 0)
		r->event = STR("save-failed");
	if ((q = FIND(p, e, "user=<")) != NULL) {
		const char *x;
		if (!r->user.p)
			r->user = angle_or_word(q + 5, e, ",", &x);
		if ((q = FIND(p, e, "rip=")) != NULL) {
			const char *s = q + 4;
			q = s;
			while (q < e && *q != ',' && *q != ' ')
				q++;
			r->client_ip = mk(s, q);
		}
		if (!r->event.p && FIND(p, e, "Login: "))
			r->event = STR("login");
	}
	if (!r->event.p && r->session.p)
		r->event = STR("dovecot");
	return 1;
}
