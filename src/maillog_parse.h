/* maillog_parse.h: internals shared by the files of the mail-log line parser (maillog.c, the
 * header and tag; maillog_msg.c, field readers; maillog_daemon_postfix.c and
 * maillog_daemon_dovecot.c, the message parsers). Not part of the maillog.h interface.
 * Depends on: maillog.h, libc. */
#ifndef RUNBOOK_MAILLOG_PARSE_H
#define RUNBOOK_MAILLOG_PARSE_H

#include <string.h>

#include "maillog.h"

#define SLEN(s) (sizeof(s) - 1)
#define STR(s) ((ml_str){ (s), SLEN(s) })

static inline ml_str mk(const char *p, const char *e) { return (ml_str){ p, (size_t)(e - p) }; }
static inline int is_digit(int c) { return c >= '0' && c <= '9'; }
static inline int is_alnum(int c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static inline int starts(const char *p, const char *e, const char *lit, size_t n)
{
	return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0;
}
#define STARTS(p, e, lit) starts((p), (e), (lit), SLEN(lit))

static inline const char *find(const char *p, const char *e, const char *lit, size_t n)
{
	if (p >= e)
		return NULL;
	return memmem(p, (size_t)(e - p), lit, n);
}
#define FIND(p, e, lit) find((p), (e), (lit), SLEN(lit))

/* Whether s is exactly the NUL-terminated name (s may contain NUL bytes). */
static inline int str_eq(ml_str s, const char *name)
{
	size_t n = strlen(name);
	return s.n == n && memcmp(s.p, name, n) == 0;
}

/* ---------------------------------------------------- field readers (maillog_msg.c) */
/* A Postfix queue id at p followed by `: ` (or the end): its length, else 0. */
size_t ml_queue_id_len(const char *p, const char *e);
/* `<addr>` (without the brackets) or a bare value up to one of the stop characters; *end is
 * set after it. */
ml_str ml_angle_or_word(const char *p, const char *e, const char *stop, const char **end);
/* `host[ip]:port`, `host[ip]` or `[ip]:port` into its parts (absent parts are left alone). */
void ml_split_hostaddr(ml_str s, ml_str *host, ml_str *ip, ml_str *port);
/* A decimal number at p (digits and dots); *end, when given, is set after it. 0 when none. */
double ml_number(const char *p, const char *e, const char **end);
/* A non-negative decimal integer at p into *out; 0 when there is none or it does not fit. */
int ml_decimal_long(const char *p, const char *e, long *out);
/* The remote client named anywhere in a free-form text (`from HOST[IP]`, `HOST[IP]: `,
 * `[IP]:PORT`) into r->client and its parts. */
void ml_find_client(const char *p, const char *e, ml_record *r);

/* ------------------------------------------- message parsers (maillog_daemon_*.c) */
/* The message of a Postfix line (after `program[pid]: `), daemon named by r->daemon. */
int ml_parse_postfix(const char *p, const char *e, ml_record *r);
/* The message of a Dovecot line; full = 0 stops after the prefix, level and session. */
int ml_parse_dovecot(const char *p, const char *e, ml_record *r, int full);

#endif
