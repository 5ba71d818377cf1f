/* maillog_daemon_postfix.c: the message part of Postfix lines (after `program[pid]: `).
 *
 * `QUEUEID: ` or `NOQUEUE: ` then the daemon's text, read by one function per message shape:
 * delivery agents (smtp, lmtp, local, virtual, pipe, error, discard, retry) `to=<..>, relay=,
 * delay=, delays=a/b/c/d, dsn=, status=X (reply)` where the reply gives the next hop's `queued
 * as ID` or Dovecot's `<rcpt> SESSION Saved`; qmgr `from=<..>, size=, nrcpt= (queue active)`,
 * `status=expired` and `removed`; smtpd `client=`, `connect from`; cleanup `message-id=`; bounce
 * notifications; pickup `uid=`; reject/milter-reject/... lines (smtpd, cleanup, postscreen).
 * A table maps each daemon to the shapes it logs, tried first; then every other shape in order,
 * then a free-form line (level, client). The shapes' tests exclude each other, so the result
 * does not depend on the order in which they are tried: only the speed does.
 * Depends on: maillog_parse.h (maillog_msg.c's field readers), libc. */
#include <stdlib.h>
#include <string.h>

#include "maillog_parse.h"

static const char *rfind(const char *p, const char *e, const char *lit, size_t n)
{
	for (const char *q = e - n; q >= p; q--)
		if (memcmp(q, lit, n) == 0)
			return q;
	return NULL;
}
#define RFIND(p, e, lit) rfind((p), (e), (lit), SLEN(lit))

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
		v = ml_angle_or_word(p, e, ",", &q);
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
			ml_split_hostaddr(v, &r->relay_host, &r->relay_ip, &r->relay_port);
		} else if (KEY("delay"))
			r->delay = ml_number(v.p, v.p + v.n, NULL), r->has_delay = 1;
		else if (KEY("delays")) {
			const char *x = v.p, *xe = v.p + v.n;
			int i;
			for (i = 0; i < 4 && x < xe; i++) {
				r->delays[i] = ml_number(x, xe, &x);
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
			r->has_size = ml_decimal_long(v.p, v.p + v.n, &r->size);
		else if (KEY("nrcpt"))
			r->has_nrcpt = ml_decimal_long(v.p, v.p + v.n, &r->nrcpt);
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
		ml_str v = ml_angle_or_word(eq + 1, e, " ,", &q);
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
	ml_split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
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

/* ------------------------------------------------------------------ message shapes
 * Each reads one kind of message (p: the text after the queue id) into r and returns 1, or
 * returns 0 when the text does not have its shape. */
typedef int (*shape_fn)(const char *p, const char *e, ml_record *r);

/* delivery agents: `to=<a>, ..., status=sent (reply)`; without status= a recipient line */
static int shape_delivery(const char *p, const char *e, ml_record *r)
{
	if (!STARTS(p, e, "to="))
		return 0;
	parse_delivery(p, e, r);
	r->event = r->status.p ? STR("delivery") : STR("recipient");
	return 1;
}

/* qmgr: `from=<s>, size=N, nrcpt=N (queue active)` or `from=<s>, status=expired, returned to sender` */
static int shape_qmgr_from(const char *p, const char *e, ml_record *r)
{
	if (!STARTS(p, e, "from="))
		return 0;
	parse_delivery(p, e, r);
	if (r->status.p)
		r->event = STR("expired");
	else if (FIND(p, e, "(queue active)"))
		r->event = STR("queued");
	else
		r->event = STR("from");
	return 1;
}

/* smtpd: `client=host[ip]:port`, the first line of a queue file */
static int shape_smtpd_client(const char *p, const char *e, ml_record *r)
{
	const char *x;
	if (!STARTS(p, e, "client="))
		return 0;
	r->client = ml_angle_or_word(p + 7, e, ",", &x);
	ml_split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
	r->event = STR("client");
	return 1;
}

/* cleanup: `message-id=<id>` */
static int shape_cleanup_message_id(const char *p, const char *e, ml_record *r)
{
	const char *x;
	if (!STARTS(p, e, "message-id="))
		return 0;
	r->message_id = ml_angle_or_word(p + SLEN("message-id="), e, " ,", &x);
	r->event = STR("message-id");
	return 1;
}

/* qmgr, postsuper: `removed`, the last line of a queue file */
static int shape_removed(const char *p, const char *e, ml_record *r)
{
	if (e - p != 7 || !STARTS(p, e, "removed"))
		return 0;
	r->event = STR("removed");
	return 1;
}

/* Whether the text has one of the shapes above, which are known by how the text starts: the
 * shapes below test it first, so that no text has two shapes. */
static int keyed_start(const char *p, const char *e)
{
	return STARTS(p, e, "to=") || STARTS(p, e, "from=") || STARTS(p, e, "client=") ||
	       STARTS(p, e, "message-id=") || (e - p == 7 && STARTS(p, e, "removed"));
}

/* The ` notification: ` of a bounce line (a text of a queue file without a keyed start), else
 * NULL. Tested by the shapes after it too: a bounce line is no other shape. */
static const char *notification(const char *p, const char *e, const ml_record *r)
{
	return r->queue_id.p && !keyed_start(p, e) ? FIND(p, e, " notification: ") : NULL;
}

/* bounce: `sender non-delivery notification: ID` names the queue id of the notification */
static int shape_bounce(const char *p, const char *e, ml_record *r)
{
	const char *q = notification(p, e, r), *s;
	if (!q)
		return 0;
	q += SLEN(" notification: ");
	s = q;
	while (q < e && is_alnum((unsigned char)*q))
		q++;
	r->bounce_id = mk(s, q);
	r->event = STR("bounce");
	return 1;
}

/* pickup: `uid=0 from=<root>` */
static int shape_pickup(const char *p, const char *e, ml_record *r)
{
	const char *q;
	if (!STARTS(p, e, "uid=") || notification(p, e, r))
		return 0;
	if ((q = FIND(p, e, "from=")) != NULL) {
		const char *x;
		r->from = ml_angle_or_word(q + 5, e, " ,", &x);
	}
	r->event = STR("pickup");
	return 1;
}

/* smtpd, cleanup, postscreen: `reject: RCPT from host[ip]: 550 ...; from=<> to=<> ...` */
static int shape_reject(const char *p, const char *e, ml_record *r)
{
	return !notification(p, e, r) && parse_reject(p, e, r);
}

/* smtpd, postscreen (no queue id): `connect from host[ip]`, `disconnect from host[ip] ...` */
static int shape_connect(const char *p, const char *e, ml_record *r)
{
	const char *s, *q;
	if (r->queue_id.p || !(STARTS(p, e, "connect from ") || STARTS(p, e, "disconnect from ")))
		return 0;
	s = p + (p[0] == 'c' ? SLEN("connect from ") : SLEN("disconnect from "));
	q = s;
	while (q < e && *q != ' ')
		q++;
	r->client = mk(s, q);
	ml_split_hostaddr(r->client, &r->client_host, &r->client_ip, &r->client_port);
	r->event = p[0] == 'c' ? STR("connect") : STR("disconnect");
	return 1;
}

static const char *const levels[] = { "warning", "fatal", "panic", "error", "info", "statistics", NULL };

/* any other line: `warning: ...` and the like, with the client it names */
static void shape_other(const char *p, const char *e, ml_record *r)
{
	const char *q = memchr(p, ':', (size_t)(e - p));
	if (q)
		for (int i = 0; levels[i]; i++)
			if ((size_t)(q - p) == strlen(levels[i]) && !memcmp(p, levels[i], (size_t)(q - p))) {
				r->level = mk(p, q);
				r->text = mk(q + 1 < e ? q + 2 : e, e);
				break;
			}
	ml_find_client(r->text.p, r->text.p + r->text.n, r);
}

/* Every shape, in the order of the tests' precedence (which keyed_start and notification
 * make irrelevant). */
static const shape_fn all_shapes[] = { shape_delivery, shape_qmgr_from, shape_smtpd_client,
	shape_cleanup_message_id, shape_removed, shape_bounce, shape_pickup, shape_reject,
	shape_connect, NULL };

#define MAX_OWN 3

/* The shapes each daemon logs (r->daemon: the tag after its last `/`). */
static const struct {
	const char *daemon;
	shape_fn own[MAX_OWN];
} daemons[] = {
	{ "smtp", { shape_delivery } },
	{ "lmtp", { shape_delivery } },
	{ "local", { shape_delivery } },
	{ "virtual", { shape_delivery } },
	{ "pipe", { shape_delivery } },
	{ "error", { shape_delivery } },
	{ "retry", { shape_delivery } },
	{ "discard", { shape_delivery } },
	{ "qmgr", { shape_qmgr_from, shape_removed } },
	{ "oqmgr", { shape_qmgr_from, shape_removed } },
	{ "smtpd", { shape_smtpd_client, shape_connect, shape_reject } },
	{ "cleanup", { shape_cleanup_message_id, shape_reject } },
	{ "bounce", { shape_bounce } },
	{ "pickup", { shape_pickup } },
	{ "postsuper", { shape_removed } },
	{ "postscreen", { shape_connect, shape_reject } },
};

int ml_parse_postfix(const char *p, const char *e, ml_record *r)
{
	size_t qn = ml_queue_id_len(p, e);
	const shape_fn *own = NULL;
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
	if (r->daemon.p)
		for (size_t i = 0; i < sizeof daemons / sizeof daemons[0]; i++)
			if (r->daemon.p[0] == daemons[i].daemon[0] && str_eq(r->daemon, daemons[i].daemon)) {
				own = daemons[i].own;
				break;
			}
	for (int i = 0; own && i < MAX_OWN && own[i]; i++)
		if (own[i](p, e, r))
			return 1;
	for (int i = 0; all_shapes[i]; i++) {
		int tried = 0;
		for (int j = 0; own && j < MAX_OWN && own[j]; j++)
			tried |= own[j] == all_shapes[i];
		if (!tried && all_shapes[i](p, e, r))
			return 1;
	}
	shape_other(p, e, r);
	return 1;
}
