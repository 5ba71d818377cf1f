/* tests/c/maillog.c: TAP unit tests of the pure-C mail-log parser and scanner (maillog.h).
 * Header formats with exact epoch times, queue ids, field extraction, and the scanner's
 * context replay, watched next-hop ids, partial lines, time window and bounded ring. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maillog.h"

static int n_tests, n_failed;

static void ok(int cond, const char *name)
{
	n_tests++;
	if (!cond)
		n_failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", n_tests, name);
}

static int str_is(ml_str s, const char *want)
{
	return s.p && s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static void is_str(ml_str s, const char *want, const char *name)
{
	ok(str_is(s, want), name);
	if (!str_is(s, want))
		printf("#      got: '%.*s'\n# expected: '%s'\n", s.p ? (int)s.n : 6, s.p ? s.p : "(null)", want);
}

static void is_num(double got, double want, const char *name)
{
	ok(fabs(got - want) < 1e-6, name);
	if (fabs(got - want) >= 1e-6)
		printf("#      got: %.6f\n# expected: %.6f\n", got, want);
}

static int parse(const char *line, ml_record *r)
{
	ml_time_opts to = { 2026, 0, 0 };
	return ml_parse_line(line, strlen(line), &to, r);
}

/* ------------------------------------------------------------ header formats */
static void test_headers(void)
{
	ml_record r;
	const double nov28 = (double)ml_days_from_civil(2026, 11, 28) * 86400;

	ok(ml_days_from_civil(1970, 1, 1) == 0 && ml_days_from_civil(2000, 3, 1) == 11017, "days_from_civil");

	ok(parse("Nov 28 11:53:42 ec2 postfix-ec2/lmtp[15684]: 848FAA727E2: removed", &r) == ML_POSTFIX, "RFC 3164: postfix");
	is_num(r.time, nov28 + 11 * 3600 + 53 * 60 + 42, "RFC 3164: time with the year option");
	is_str(r.host, "ec2", "RFC 3164: host");
	is_str(r.program, "postfix-ec2/lmtp", "program");
	is_str(r.instance, "postfix-ec2", "instance (syslog_name)");
	is_str(r.daemon, "lmtp", "daemon");
	ok(r.has_pid && r.pid == 15684, "pid");
	is_str(r.queue_id, "848FAA727E2", "queue id");
	is_str(r.event, "removed", "event removed");

	parse("Jun  3 10:40:59 mail postfix/smtp[9890]: x", &r);
	is_num(r.time, (double)ml_days_from_civil(2026, 6, 3) * 86400 + 10 * 3600 + 40 * 60 + 59, "RFC 3164: 2-space day");
	parse("Jun 04 22:24:28 machine postfix/smtpd[3967801]: x", &r);
	is_num(r.time, (double)ml_days_from_civil(2026, 6, 4) * 86400 + 22 * 3600 + 24 * 60 + 28, "RFC 3164: zero-padded day");
	parse("Aug 4 16:47:52 mail3 postfix/smtpd[31152]: x", &r);
	is_num(r.time, (double)ml_days_from_civil(2026, 8, 4) * 86400 + 16 * 3600 + 47 * 60 + 52, "RFC 3164: single-space day");
	ok(parse("Okt 15 23:48:15 c3 postfix/lmtp[48460]: C88761F60D: removed", &r) == ML_POSTFIX &&
	       fabs(r.time - ((double)ml_days_from_civil(2026, 10, 15) * 86400 + 23 * 3600 + 48 * 60 + 15)) < 1e-6,
	   "German month Okt");
	ok(parse("M\xc3\xa4r  1 00:00:00 h postfix/qmgr[1]: x", &r) == ML_POSTFIX && r.time == (double)ml_days_from_civil(2026, 3, 1) * 86400,
	   "German month M\xc3\xa4r (UTF-8)");

	parse("2019-04-11T19:41:56.554496+00:00 09ad1b99d14b postfix/lmtp[238]: 87F043F2BE: removed", &r);
	is_num(r.time, (double)ml_days_from_civil(2019, 4, 11) * 86400 + 19 * 3600 + 41 * 60 + 56.554496, "ISO 8601 with µs and +00:00");
	is_str(r.host, "09ad1b99d14b", "ISO: container-id host");
	is_str(r.timestamp, "2019-04-11T19:41:56.554496+00:00", "raw timestamp kept");
	parse("2024-12-31T06:56:17.784598+01:00 mail dovecot: auth: x", &r);
	is_num(r.time, (double)ml_days_from_civil(2024, 12, 31) * 86400 + 5 * 3600 + 56 * 60 + 17.784598, "ISO: +01:00 offset applied");

	/* docker logs --timestamps in front of a syslog line: the RFC3339Nano stamp wins */
	parse("2026-11-28T11:53:42.123456789Z Nov 28 11:53:41 ec2 postfix/smtpd[1]: connect from a[1.2.3.4]", &r);
	is_num(r.time, nov28 + 11 * 3600 + 53 * 60 + 42.123456789, "docker RFC3339Nano prefix gives the time");
	is_str(r.timestamp, "Nov 28 11:53:41", "docker prefix: the log's own stamp is the raw timestamp");
	is_str(r.client_ip, "1.2.3.4", "docker prefix: message still parsed");
	/* docker logs -t of a container logging to stdout (postlog, no syslog header) */
	parse("2026-11-28T11:53:42.5Z postfix/smtpd[77]: NOQUEUE: reject: RCPT from x[1.1.1.1]: 554 5.7.1 <a@b.test>: Relay access denied; from=<s@o.test> to=<a@b.test> proto=ESMTP helo=<h>", &r);
	ok(r.family == ML_POSTFIX && r.host.p == NULL && r.code == 554, "docker prefix + postlog line without host");

	parse("postfix-mailcow_1    | Jun 28 12:40:30 192 postfix/postfix-script[2870]: fatal: the Postfix mail system is not running", &r);
	is_str(r.container, "postfix-mailcow_1", "compose prefix");
	is_str(r.level, "fatal", "level after compose prefix");
	ok(parse("postfix-mailcow_1    | 2019-06-28 12:40:28,234 INFO exited: postfix (exit status 1; not expected)", &r) == ML_OTHER,
	   "supervisord line is not a mail line");
	ok(parse("postfix/postlog: starting the Postfix mail system", &r) == ML_POSTFIX && !r.has_time, "postlog without header");
	ok(parse("postfix/local[4314]: 0BBC120773: to=<XXX>, relay=local, status=bounced (x)", &r) == ML_POSTFIX &&
	       str_is(r.status, "bounced"), "no header at all");
	ok(parse("@400000004c91b044077a9e94 imap-login: Info: Aborted login: user=<m@w.de>, rip=80.187.101.33", &r) == ML_DOVECOT &&
	       floor(r.time) == 1284616250, "tai64n");
	ok(parse("192.0.2.100 - - [17/Jul/2026:12:09:30 +0200] \"GET / HTTP/1.1\" 302 390", &r) == ML_OTHER, "nginx line rejected");
	ok(parse("", &r) == ML_OTHER && parse("Nov 28", &r) == ML_OTHER, "empty and cut lines rejected");
	ok(parse("Jan 28 06:40:37 mail opendkim[289]: 8BD903012026: not authenticated", &r) == ML_OTHER, "opendkim is not ours");

	/* year rollover: December lines read in January belong to the previous year */
	ml_time_opts jan = { 0, 0, (int64_t)ml_days_from_civil(2027, 1, 2) * 86400 };
	ml_parse_line("Dec 31 23:00:00 h postfix/qmgr[1]: x", 36, &jan, &r);
	is_num(r.time, (double)ml_days_from_civil(2026, 12, 31) * 86400 + 23 * 3600, "no year: December read in January -> last year");
	ml_time_opts off = { 2026, 3600, 0 };
	ml_parse_line("Nov 28 12:00:00 h postfix/qmgr[1]: x", 36, &off, &r);
	is_num(r.time, nov28 + 11 * 3600, "utc_offset applies to zone-less stamps");
}

/* ------------------------------------------------------------------ fields */
static void test_fields(void)
{
	ml_record r;
	parse("Nov 28 11:53:53 ec2 postfix-ec2/smtp[15884]: CD9CEA72012: to=<info@toyota-phv.test>, orig_to=<alias@toyota-phv.test>, "
	      "relay=127.0.0.20[127.0.0.20]:25, conn_use=2, delay=0.15, delays=0.02/0.03/0.05/0.05, dsn=2.0.0, status=sent "
	      "(250 2.0.0 Ok: queued as EDC38A72065)", &r);
	is_str(r.to, "info@toyota-phv.test", "to");
	is_str(r.orig_to, "alias@toyota-phv.test", "orig_to");
	is_str(r.relay_host, "127.0.0.20", "relay host");
	is_str(r.relay_port, "25", "relay port");
	is_str(r.conn_use, "2", "conn_use");
	is_num(r.delay, 0.15, "delay");
	ok(r.has_delays && r.delays[0] == 0.02 && r.delays[1] == 0.03 && r.delays[2] == 0.05 && r.delays[3] == 0.05, "delays a/b/c/d");
	is_str(r.dsn, "2.0.0", "dsn");
	is_str(r.status, "sent", "status");
	is_str(r.reply, "250 2.0.0 Ok: queued as EDC38A72065", "reply text");
	is_str(r.queued_as, "EDC38A72065", "queued as");
	ok(r.code == 250, "reply code");

	parse("Dec  9 10:18:24 mail postfix/smtp[20049]: BA8F630001DA: to=<r@d.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.38, "
	      "delays=0.23/0.02/0/0.13, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 1310930001DB)", &r);
	is_str(r.queued_as, "1310930001DB", "nested queued as (content filter)");
	parse("Jul  5 06:52:11 prd-mx1 postfix/smtp[22030]: 3mPVKl0Mhjz7sXv: to=<5@c.test>, relay=10.2.2.85[10.2.2.85]:2527, delay=0.51, "
	      "delays=0.44/0.01/0.05/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 3mPVKl3YVXz2pS5Z)", &r);
	is_str(r.queue_id, "3mPVKl0Mhjz7sXv", "long queue id");
	is_str(r.queued_as, "3mPVKl3YVXz2pS5Z", "long next-hop id");
	parse("Jan 28 06:40:37 mail postfix/lmtp[15079]: BF76C3012027: to=<h-f16@h.com>, relay=h[/var/run/dovecot/lmtp], delay=0.06, "
	      "delays=0/0.02/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <h-f16@h.com> pPC9MGVcEmDoOgAAWP5Hkg Saved)", &r);
	is_str(r.session, "pPC9MGVcEmDoOgAAWP5Hkg", "LMTP Saved reply -> Dovecot session");
	is_str(r.relay_ip, "/var/run/dovecot/lmtp", "unix socket relay");
	ok(parse("Nov 28 11:53:31 ec2 postfix-ec2/postfix-script[1]: warning: not owned by postfix: /srv", &r) == ML_POSTFIX &&
	       r.queue_id.p == NULL, "'warning:' is not a queue id");

	parse("Nov 28 11:54:29 ec2 postfix-ec2/qmgr[15959]: 04A85A720E2: from=<sender@example.test>, size=413, nrcpt=1 (queue active)", &r);
	ok(str_is(r.event, "queued") && str_is(r.from, "sender@example.test") && r.size == 413 && r.nrcpt == 1, "qmgr queue active");
	parse("Sep 30 20:46:08 s postfix-239.58.50.50/qmgr[31214]: 23EBE3D5C0: from=<a@b.com>, status=expired, returned to sender", &r);
	ok(str_is(r.event, "expired") && str_is(r.status, "expired") && str_is(r.instance, "postfix-239.58.50.50"), "expired");
	parse("Nov 28 11:54:29 ec2 postfix-ec2/bounce[16125]: 04A85A720E2: sender non-delivery notification: 1310AA72104", &r);
	is_str(r.bounce_id, "1310AA72104", "bounce notification id");
	parse("Nov 28 11:53:53 dell postfix-dell/cleanup[15891]: EDC38A72065: message-id=<20261128115353.015878@vm>", &r);
	is_str(r.message_id, "20261128115353.015878@vm", "message-id");

	parse("Jan 27 07:49:18 mail postfix/postscreen[8291]: NOQUEUE: reject: RCPT from [155.63.95.6]:63966: 550 5.7.1 Service unavailable; "
	      "client [155.63.95.6] blocked using h-b8; from=<a@b.com>, to=<c@d.com>, proto=ESMTP, helo=<W>", &r);
	ok(str_is(r.client_ip, "155.63.95.6") && str_is(r.client_port, "63966") && str_is(r.to, "c@d.com") &&
	       str_is(r.rejected, "155.63.95.6") && str_is(r.reason, "blocked using h-b8"), "postscreen reject (', ' separators, RBL)");
	parse("Feb  8 21:28:47 mx postfix/smtps/smtpd[1036]: DE81A2E2DAA: reject: RCPT from unknown[2a02:168:636a::15e2]: 550 5.1.1 "
	      "<u@h.com>: Recipient address rejected: User unknown in virtual mailbox table; from=<s@h.com> to=<u@h.com> proto=ESMTP "
	      "helo=<[IPv6:2a02:168:636a::15e2]>", &r);
	ok(str_is(r.queue_id, "DE81A2E2DAA") && str_is(r.action, "reject") && str_is(r.stage, "RCPT") && r.code == 550 &&
	       str_is(r.enhanced, "5.1.1") && str_is(r.rejected, "u@h.com") && str_is(r.client_ip, "2a02:168:636a::15e2") &&
	       str_is(r.reason, "Recipient address rejected: User unknown in virtual mailbox table") && str_is(r.instance, "postfix/smtps"),
	   "reject with a queue id, IPv6 client, instance postfix/smtps");
	parse("Jan 25 18:54:51 mx postfix/cleanup[8966]: B37FD2E05B9: milter-reject: END-OF-MESSAGE from h[254.65.43.194]: 4.7.1 Try again "
	      "later; from=<b@h.com> to=<t@h.com> proto=ESMTP helo=<h>", &r);
	ok(str_is(r.action, "milter-reject") && str_is(r.stage, "END-OF-MESSAGE") && !r.has_code && str_is(r.enhanced, "4.7.1") &&
	       str_is(r.reason, "Try again later"), "milter-reject without a reply code");

	/* Dovecot */
	ok(parse("2026-11-28T11:57:04 lmtp(locked@toyota-phv.test)<17212><kMzxEJDBCms8QwAAg+zDdQ>: Info: msgid=<20261128115515.016956@vm>: "
	         "save failed to open mailbox INBOX: stat(/srv/x/tmp) failed: Permission denied (euid=5000(vmail))", &r) == ML_DOVECOT,
	   "Dovecot own log file line");
	ok(str_is(r.service, "lmtp") && str_is(r.user, "locked@toyota-phv.test") && r.pid == 17212 &&
	       str_is(r.session, "kMzxEJDBCms8QwAAg+zDdQ") && str_is(r.level, "Info") && str_is(r.message_id, "20261128115515.016956@vm") &&
	       r.saved == 0 && str_is(r.mailbox, "INBOX") && str_is(r.error, "stat(/srv/x/tmp) failed: Permission denied (euid=5000(vmail))"),
	   "Dovecot: service, user, pid, session, msgid, save failed and why");
	parse("Mar 22 18:18:15 host dovecot: lmtp(22587, email1@example.com): 5GjrDafYTFE7WAAABf1gKA: msgid=<D4@l.com>: saved mail to INBOX", &r);
	ok(str_is(r.user, "email1@example.com") && r.pid == 22587 && str_is(r.session, "5GjrDafYTFE7WAAABf1gKA") && r.saved == 1 &&
	       str_is(r.mailbox, "INBOX") && str_is(r.event, "saved"), "Dovecot 2.2 lmtp(pid, user): SESSION:");
	parse("May 11 11:35:36 mail dovecot: lmtp(q@o.tld)<1522><2E+aO4c4uV7yBQAAUIhAew>: sieve: msgid=<2@m.com>: failed to store into "
	      "mailbox 'INBOX': Quota exceeded (mailbox for user is full)", &r);
	ok(r.saved == 0 && str_is(r.mailbox, "INBOX") && str_is(r.error, "Quota exceeded (mailbox for user is full)"), "sieve quota failure");
	parse("2026-11-28T11:54:20 lmtp(info@t.test)<16006><6O+EG+zACmuGPgAAg+zDdQ>: Error: lmtp-server: conn 127.0.0.10:37345 [2]: "
	      "rcpt info@t.test: Mailbox INBOX: quota: failed: Permission denied", &r);
	ok(str_is(r.event, "rcpt-error") && str_is(r.error, "Mailbox INBOX: quota: failed: Permission denied"), "LMTP RCPT error");
}

/* ------------------------------------------------------------------ scanner */
typedef struct {
	int n, context;
	char last[256];
} sink;

static int collect(void *ud, const char *line, size_t len, const ml_record *r, int context)
{
	sink *s = ud;
	(void)r;
	s->n++;
	s->context += context;
	snprintf(s->last, sizeof s->last, "%.*s", (int)(len < 200 ? len : 200), line);
	return 0;
}

static const char *const flow =
	"Nov 28 11:53:53 ec2 postfix/smtpd[1]: CD9CEA72012: client=unknown[127.0.0.99]\n"
	"Nov 28 11:53:53 ec2 postfix/cleanup[2]: CD9CEA72012: message-id=<m1@vm>\n"
	"Nov 28 11:53:53 ec2 postfix/qmgr[3]: CD9CEA72012: from=<s@example.test>, size=1, nrcpt=1 (queue active)\n"
	"Nov 28 11:53:53 ec2 postfix/smtpd[1]: 1111111111: client=unknown[127.0.0.98]\n"
	"Nov 28 11:53:53 ec2 postfix/smtp[4]: CD9CEA72012: to=<Info@Toyota-PHV.test>, relay=x[1.2.3.4]:25, delay=1, delays=0/0/0/1, "
	"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as EDC38A72065)\n"
	"Nov 28 11:53:53 ec2 postfix/qmgr[3]: CD9CEA72012: removed\n"
	"Nov 28 11:53:54 dell postfix/smtpd[5]: EDC38A72065: client=unknown[127.0.0.10]\n"
	"Nov 28 11:53:54 dell postfix/qmgr[6]: EDC38A72065: removed\n"
	"Nov 28 11:53:55 ec2 postfix/qmgr[3]: 1111111111: removed\n";

static void test_scanner(void)
{
	ml_scanner_opts o;
	memset(&o, 0, sizeof o);
	o.since = o.until = NAN;
	o.time.year = 2026;
	ml_scanner *s = ml_scanner_new(&o);
	sink k = { 0, 0, "" };
	ml_scanner_stats st;

	ml_scanner_add_needle(s, "info@toyota-phv.test", 20);
	ml_scanner_feed(s, flow, strlen(flow), collect, &k);
	ml_scanner_get_stats(s, &st);
	ok(st.lines == 9, "scanner counts lines");
	ok(st.mail_lines > 0 && st.mail_lines < 9, "find-first: only the lines it had to read are parsed, not every line");
	ok(st.matched == 1, "one line matches the address (case-insensitive)");
	ok(k.context == 3, "three earlier lines of CD9CEA72012 replayed as context");
	ok(k.n == 7, "reported: 3 context + match + removed + 2 lines of the next hop EDC38A72065");
	ok(strstr(k.last, "EDC38A72065: removed") != NULL, "next hop followed to its end");
	ml_scanner_free(s);

	/* the same stream fed one byte at a time */
	s = ml_scanner_new(&o);
	ml_scanner_add_needle(s, "info@toyota-phv.test", 20);
	sink k1 = { 0, 0, "" };
	for (size_t i = 0; flow[i]; i++)
		ml_scanner_feed(s, flow + i, 1, collect, &k1);
	ml_scanner_flush(s, collect, &k1);
	ok(k1.n == k.n && k1.context == k.context, "byte-by-byte feed reports the same lines");
	ml_scanner_free(s);

	/* time window: the match is outside -> nothing */
	o.since = (double)ml_days_from_civil(2026, 11, 28) * 86400 + 12 * 3600;
	s = ml_scanner_new(&o);
	ml_scanner_add_needle(s, "info@toyota-phv.test", 20);
	sink k2 = { 0, 0, "" };
	ml_scanner_feed(s, flow, strlen(flow), collect, &k2);
	ok(k2.n == 0, "since after the match: nothing reported");
	ml_scanner_free(s);
	o.since = NAN;

	/* bounded ring: 4 KiB window, 2000 unrelated queue files, then a match for the first one */
	o.window = 4096;
	o.keys = 64;
	s = ml_scanner_new(&o);
	ml_scanner_add_needle(s, "needle@x.test", 13);
	char line[256];
	sink k3 = { 0, 0, "" };
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(line, sizeof line, "Nov 28 11:00:00 h postfix/cleanup[1]: %010X: message-id=<%d@h>\n", 0xA00000 + i, i);
		ml_scanner_feed(s, line, (size_t)n, collect, &k3);
	}
	int n = snprintf(line, sizeof line, "Nov 28 11:00:01 h postfix/smtp[1]: %010X: to=<needle@x.test>, relay=none, status=deferred (x)\n", 0xA00000);
	ml_scanner_feed(s, line, (size_t)n, collect, &k3);
	n = snprintf(line, sizeof line, "Nov 28 11:00:01 h postfix/smtp[1]: %010X: to=<needle@x.test>, relay=none, status=deferred (x)\n", 0xA00000 + 1999);
	ml_scanner_feed(s, line, (size_t)n, collect, &k3);
	ml_scanner_get_stats(s, &st);
	ok(k3.n == 3 && k3.context == 1, "old context overwritten (bounded), recent context replayed");
	ok(st.context_dropped > 0, "dropped context is counted");
	ml_scanner_free(s);

	/* find-first look-back: an earlier message under the same queue id is not context */
	{
		static const char *const reuse =
			"Nov 28 10:00:00 h postfix/smtpd[1]: ABCDEF0123: client=unknown[127.0.0.1]\n"
			"Nov 28 10:00:00 h postfix/qmgr[2]: ABCDEF0123: from=<a@x.test>, size=1, nrcpt=1 (queue active)\n"
			"Nov 28 10:00:01 h postfix/smtp[3]: ABCDEF0123: to=<other@x.test>, relay=none, status=sent (250 ok)\n"
			"Nov 28 10:00:01 h postfix/qmgr[2]: ABCDEF0123: removed\n"
			"Nov 28 10:05:00 h postfix/qmgr[2]: ABCDEF0123: from=<b@x.test>, size=1, nrcpt=1 (queue active)\n"
			"Nov 28 10:05:01 h postfix/smtp[3]: ABCDEF0123: to=<needle@x.test>, relay=none, status=deferred (x)\n"
			"Nov 28 10:05:02 h postfix/smtp[3]: 0000000001: to=<unrelated@x.test>, relay=none, status=deferred (x)\n"
			"Nov 28 10:15:00 h postfix/qmgr[2]: ABCDEF0123: from=<b@x.test>, status=expired, returned to sender\n"
			"Nov 28 10:15:00 h postfix/qmgr[2]: ABCDEF0123: removed\n";
		o.window = 0, o.keys = 0;
		s = ml_scanner_new(&o);
		ml_scanner_add_needle(s, "NEEDLE@x.test", 13);
		sink k5 = { 0, 0, "" };
		ml_scanner_feed(s, reuse, strlen(reuse), collect, &k5);
		ok(k5.n == 4 && k5.context == 1, "look-back stops at the removed of the earlier message; later lines of the watched id follow");
		ok(strstr(k5.last, "10:15:00") && strstr(k5.last, "removed"), "followed to its removed (expired line in between)");
		ml_scanner_free(s);
	}

	/* an over-long line is cut, not grown */
	o.window = 8192;
	o.max_line = 100;
	s = ml_scanner_new(&o);
	char *big = malloc(5000);
	memset(big, 'a', 5000);
	memcpy(big, "Nov 28 11:00:00 h postfix/cleanup[1]: AAAAAAAAAA: x", 51);
	sink k4 = { 0, 0, "" };
	ml_scanner_feed(s, big, 5000, collect, &k4);
	ml_scanner_feed(s, "\n", 1, collect, &k4);
	ml_scanner_get_stats(s, &st);
	ok(st.truncated >= 1 && st.lines == 1 && k4.n == 1, "partial line longer than max_line is truncated");
	free(big);
	ml_scanner_free(s);
}

/* ------------------------------------------- head (scanner) and full parse agree */
/* The scanner's head parse must take every line the full parse takes for a mail line, or a
 * line with the followed address is never reported. Its fast path reads the tag at the first
 * `]: `; a headerless line whose own tag (`postfix-NAME: `) comes first has that `]: ` in its
 * message (tests/fixtures/fuzz/maillog/full-vs-head-family.txt, found by fz_maillog), inside
 * the tag's own `(...)<...>` (full-vs-head-paren-tag.txt), or in a first word that the general
 * parser reads as the host (full-vs-head-host-word.txt). */
static void test_head_agrees(void)
{
	static const char *const lines[] = {
		"postfix-maied: postfix (exNbsdauth(smtpd[1]: ABCDEF0123: client=unkno7[22: from=<s@example.test>, size=1, nrcpt=1 (queue active)",
		"postfix-out: fatal: bad line in smtpd[12]: x <s@example.test>",
		"Nov 28 11:53:53 host postfix-out: warning: opendkim[3]: <s@example.test>",
		"dovecot: lmtp(s@example.test)<7><abc>: Info: from x[1]: y",
		"Nov 28 11:53:53 ec2 postfix/smtpd[1]: CD9CEA72012: client=unknown[127.0.0.99] s@example.test",
		/* a Dovecot tag whose `<...>` holds the `]: ` (full-vs-head-paren-tag.txt) */
		"2026-11-28T11:57:04 lmtp(s@example.test)<17211:53:41 ec2 postfix/smtpd[1]: conn12><kMzxEJDBCms8QwAAg+zDdQ>: Info: x",
		/* a first word that is no tag is the host (full-vs-head-host-word.txt): a byte outside
		 * the tag characters, a pid that is not 1 to 10 digits */
		"2026-11-28T11:53:42.5Z p\x01stfi/smtpd[77]: dovecot: imap-login: Info: Login: user=<s@example.test>",
		"Nov 28 11:53:53 postfix/smtpd[x1]: dovecot: imap-login: Info: Login: user=<s@example.test>",
		"Nov 28 11:53:53 postfix/smtpd[12345678901]: dovecot: imap-login: Info: Login: user=<s@example.test>",
	};
	ml_time_opts to = { 2026, 0, 0 };
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		ml_record full, head;
		char name[96];
		size_t n = strlen(lines[i]);
		int ff = ml_parse_line(lines[i], n, &to, &full), hf = ml_parse_head(lines[i], n, &head);
		snprintf(name, sizeof name, "head and full parse agree on the family of line %zu (%d, %d)", i + 1, ff, hf);
		ok(ff != ML_OTHER && ff == hf, name);
		for (int per_line = 0; per_line < 2; per_line++) {
			ml_scanner_opts o;
			memset(&o, 0, sizeof o);
			o.since = o.until = NAN;
			o.per_line = per_line;
			o.time = to;
			ml_scanner *s = ml_scanner_new(&o);
			sink k = { 0, 0, "" };
			ml_scanner_add_needle(s, "s@example.test", 14);
			ml_scanner_feed(s, lines[i], n, collect, &k);
			ml_scanner_feed(s, "\n", 1, collect, &k);
			snprintf(name, sizeof name, "%s scanner reports line %zu (it holds the needle)", per_line ? "per-line" : "find-first", i + 1);
			ok(k.n == 1, name);
			ml_scanner_free(s);
		}
	}
}

/* ------------------------------------ watch with replay: a session read before its reply */
/* Dovecot's own log read first (its session lines name only `info`), then the key is watched
 * (the tracker learned it from the Postfix log's LMTP reply): the kept lines are reported. */
static void test_watch_replay(void)
{
	static const char *const dove =
		"Nov 28 14:00:01 dell dovecot: lmtp(400): Connect from local\n"
		"Nov 28 14:00:01 dell dovecot: lmtp(info)<400><Pq1LA3mXBmZ2BQAA0J78UA>: Info: msgid=<short-1@outside.test>: saved mail to INBOX\n"
		"Nov 28 14:00:01 dell dovecot: lmtp(400): Disconnect from local: Client has quit the connection (state=READY)\n";
	static const char *const session = "Pq1LA3mXBmZ2BQAA0J78UA";
	for (int per_line = 0; per_line < 2; per_line++) {
		ml_scanner_opts o;
		char name[96];
		memset(&o, 0, sizeof o);
		o.since = o.until = NAN;
		o.per_line = per_line;
		o.time.year = 2026;
		ml_scanner *s = ml_scanner_new(&o);
		sink k = { 0, 0, "" };
		ml_scanner_add_needle(s, "info@toyota-phv.test", 20);
		ml_scanner_feed(s, dove, strlen(dove), collect, &k);
		snprintf(name, sizeof name, "%s: the session lines alone are not reported", per_line ? "per-line" : "find-first");
		ok(k.n == 0, name);
		ml_scanner_watch_replay(s, session, strlen(session), collect, &k);
		snprintf(name, sizeof name, "%s: watching the session replays its saved line as context", per_line ? "per-line" : "find-first");
		ok(k.n == 1 && k.context == 1 && strstr(k.last, "saved mail to INBOX") != NULL, name);
		ml_scanner_watch_replay(s, session, strlen(session), collect, &k);
		snprintf(name, sizeof name, "%s: watching it again replays nothing", per_line ? "per-line" : "find-first");
		ok(k.n == 1, name);
		ml_scanner_watch_replay(s, "ABCDEF0123", 10, collect, &k);
		snprintf(name, sizeof name, "%s: a key never seen replays nothing", per_line ? "per-line" : "find-first");
		ok(k.n == 1, name);
		ml_scanner_free(s);
	}
}

int main(void)
{
	test_headers();
	test_fields();
	test_scanner();
	test_head_agrees();
	test_watch_replay();
	printf("1..%d\n", n_tests);
	return n_failed ? 1 : 0;
}
