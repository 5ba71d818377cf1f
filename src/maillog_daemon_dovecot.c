/* maillog_daemon_dovecot.c: the message part of Dovecot lines.
 *
 * The prefix names the service and the session: `service(user)<pid><session>: Level: ` in the
 * 2.3+ form, `service(pid, user): Level: SESSION: ` in the 2.2 form, or `service: Level: `
 * (syslog puts the service in the tag instead). The text after it is read by one function per
 * kind of line: the delivery result of lmtp/lda and Pigeonhole (`[sieve: ]msgid=<..>: saved
 * mail to X`, `stored mail into mailbox 'X'`, `failed to store ...`, `save failed to ...`), an
 * LMTP recipient error (`rcpt user: error`), any `Error:`, the user of an auth passdb
 * (`sql(user,ip,<session>)`), and a login (`Login: user=<u>, ..., rip=IP`).
 * Depends on: maillog_parse.h (maillog_msg.c's field readers), libc. */
#include <stdlib.h>
#include <string.h>

#include "maillog_parse.h"

static const char *const dlevels[] = { "Info", "Warning", "Error", "Fatal", "Panic", "Debug", NULL };

static int is_session_char(int c) { return is_alnum(c) || c == '+' || c == '/'; }

/* `service(args)<pid><session>: ` or `service: ` at p, unless the tag named the service:
 * sets service, user, pid, session. Returns where the rest starts (p when there is no prefix). */
static const char *dovecot_prefix(const char *p, const char *e, ml_record *r)
{
	const char *q = p;
	if (r->service.p)
		return p;
	while (q < e && (is_alnum((unsigned char)*q) || *q == '-' || *q == '_'))
		q++;
	if (q == p || q >= e || (*q != '(' && *q != ':'))
		return p;
	ml_str svc = mk(p, q);
	const char *x = q;
	if (*x == '(') {
		const char *rp = memchr(x, ')', (size_t)(e - x));
		if (!rp)
			return p;
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
	return p;
}

/* `Level: ` at p into r->level; returns where the rest starts. */
static const char *dovecot_level(const char *p, const char *e, ml_record *r)
{
	const char *q = memchr(p, ':', (size_t)(e - p));
	if (q)
		for (int i = 0; dlevels[i]; i++)
			if ((size_t)(q - p) == strlen(dlevels[i]) && !memcmp(p, dlevels[i], (size_t)(q - p))) {
				r->level = mk(p, q);
				return q + 1 < e ? q + 2 : e;
			}
	return p;
}

/* Dovecot 2.2: `lmtp(pid, user): SESSION: msgid=...`; returns where the rest starts. */
static const char *dovecot_v22_session(const char *p, const char *e, ml_record *r)
{
	const char *q = p;
	if (r->session.p || !r->user.p)
		return p;
	while (q < e && is_session_char((unsigned char)*q))
		q++;
	if (q - p >= 16 && q - p <= 32 && q + 1 < e && *q == ':' && q[1] == ' ') {
		r->session = mk(p, q);
		return q + 2;
	}
	return p;
}

/* lmtp, lda, Pigeonhole: the delivery result after `[sieve: ]msgid=<..>: [X action: ]`. Sets
 * r->saved (1 or 0) and the mailbox (and the error of a failure). Returns where it ends. */
static const char *dovecot_delivery(const char *p, const char *e, ml_record *r)
{
	const char *q;
	if (STARTS(p, e, "sieve: "))
		p += SLEN("sieve: ");
	if (STARTS(p, e, "msgid=")) {
		const char *x;
		r->message_id = ml_angle_or_word(p + 6, e, ":", &x);
		p = x;
		if (STARTS(p, e, ": "))
			p += 2;
	}
	/* Pigeonhole names the action: `fileinto action: stored mail into mailbox 'Junk'` */
	if ((q = FIND(p, e, " action: ")) != NULL && q - p <= 16 &&
	    (STARTS(q + SLEN(" action: "), e, "stored mail into mailbox ") ||
	     STARTS(q + SLEN(" action: "), e, "failed to store into mailbox ")))
		p = q + SLEN(" action: ");
	return p;
}

/* `saved mail to X`, `stored mail into mailbox 'X'`, `failed to store into mailbox 'X': error`,
 * `save failed to [open mailbox ]X: error`; else an LMTP `rcpt user: error` or any `Error:`. */
static void dovecot_result(const char *p, const char *e, ml_record *r)
{
	const char *q;
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
}

/* auth, auth-worker: `pam(user,ip)` / `sql(user,ip,<session>)` / `passwd-file(user)`. */
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

/* imap-login, pop3-login, ...: `Login: user=<u>, method=PLAIN, rip=IP, lip=...` (and other
 * lines naming user=<u>). */
static void dovecot_login(const char *p, const char *e, ml_record *r)
{
	const char *q;
	if ((q = FIND(p, e, "user=<")) == NULL)
		return;
	const char *x;
	if (!r->user.p)
		r->user = ml_angle_or_word(q + 5, e, ",", &x);
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

int ml_parse_dovecot(const char *p, const char *e, ml_record *r, int full)
{
	p = dovecot_prefix(p, e, r);
	if (p > e)
		p = e;
	p = dovecot_level(p, e, r);
	p = dovecot_v22_session(p, e, r);
	r->text = mk(p, e);
	if (!full)
		return 1;
	p = dovecot_delivery(p, e, r);
	dovecot_result(p, e, r);
	if (!r->user.p)
		passdb_user(p, e, r);
	if (r->saved == 1)
		r->event = STR("saved");
	else if (r->saved == 0)
		r->event = STR("save-failed");
	dovecot_login(p, e, r);
	if (!r->event.p && r->session.p)
		r->event = STR("dovecot");
	return 1;
}
