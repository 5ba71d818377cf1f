/* maillog.h: pure-C parser and filtering scanner for Postfix and Dovecot log lines (no Lua).
 *
 * ml_parse_line() splits one log line into fields that point into the line (no allocation).
 * ml_scanner is the streaming hot path. It reports only the lines that mention one of the
 * needles (address/domain, case-insensitive) or belong to a watched queue id / Dovecot session,
 * together with the earlier lines of the same queue id. With needles it finds them first (a
 * vectorised search over a bounded history of the raw input) and parses only what a match needs:
 * a look-back in the history for the earlier lines of its ids, and the later lines of watched
 * ids. Without needles every line is parsed (header and queue id) and every mail line reported.
 * Memory is bounded by the options given to ml_scanner_new(), whatever the log size.
 * Depends on: libc only. Used by lmaillog.c (the Lua binding) and tests/c/maillog.c. */
#ifndef RUNBOOK_MAILLOG_H
#define RUNBOOK_MAILLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	const char *p; /* NULL when absent; never NUL-terminated */
	size_t n;
} ml_str;

enum ml_family { ML_OTHER = 0, ML_POSTFIX, ML_DOVECOT };

/* The fields of one line. Strings point into the parsed line. Numbers are valid when their
 * has_* flag is set. */
typedef struct {
	/* header and key fields: the scanner's head-only parse sets and clears only these */
	int family;
	int saved;                 /* Dovecot: 1 saved, 0 failed, -1 neither */
	ml_str timestamp;          /* the log's own timestamp text (innermost header) */
	double time;               /* epoch seconds */
	int has_time;
	int time_zoned;            /* time came from a stamp that names its zone (offset, Z, tai64n) */
	int has_pid;
	long pid;
	ml_str container;          /* docker compose / swarm `name | ` prefix */
	ml_str host, program, instance, daemon;
	ml_str message;            /* everything after `program[pid]: ` */
	ml_str level;              /* warning/fatal/... (Postfix) or Info/Error/... (Dovecot) */
	ml_str event;              /* a static name, see ml_event names in maillog.c */
	ml_str queue_id;           /* short hex, long base-52, or NOQUEUE */
	ml_str session;            /* Dovecot session; also from an LMTP `... SESSION Saved` reply */
	ml_str service, user;      /* Dovecot */
	ml_str text;               /* message text after queue id / Dovecot prefix and level */
	long repeated;             /* N of rsyslog's `message repeated N times: [...]` (unwrapped), else 0 */
	/* message fields (full parse only) */
	ml_str from, to, orig_to, relay, relay_host, relay_ip, relay_port;
	double delay;
	int has_delay;
	int has_delays;
	double delays[4];          /* before qmgr, in qmgr, connection setup, transmission */
	ml_str dsn, status, reply, queued_as, message_id;
	ml_str client, client_host, client_ip, client_port;
	ml_str action, stage, enhanced, rejected, reason, proto, helo;
	int code, has_code;        /* SMTP reply code of a reject or of the remote reply */
	long size, nrcpt;
	int has_size, has_nrcpt;
	ml_str bounce_id;          /* queue id of a bounce/DSN notification */
	ml_str conn_use, tls;
	ml_str mailbox, error;     /* Dovecot */
} ml_record;

typedef struct {
	int year;                  /* for RFC 3164 stamps; 0 = current year with rollover guard */
	long utc_offset;           /* seconds east of UTC assumed for stamps without a zone */
	int64_t now;               /* reference "now" for the rollover guard (epoch seconds) */
} ml_time_opts;

/* Parse one line (without its newline). Returns the family (ML_POSTFIX/ML_DOVECOT) or ML_OTHER
 * (0) for lines that are not Postfix/Dovecot lines; r is filled in either case. */
int ml_parse_line(const char *line, size_t len, const ml_time_opts *to, ml_record *r);

/* The scanner's hot path: header, family, queue id (and `removed`) or Dovecot prefix only; no
 * time conversion. */
int ml_parse_head(const char *line, size_t len, ml_record *r);

/* Days since 1970-01-01 of a proleptic Gregorian date. */
int64_t ml_days_from_civil(int64_t y, unsigned m, unsigned d);

/* ------------------------------------------------------------------ scanner */
typedef struct ml_scanner ml_scanner;

typedef struct {
	size_t window;             /* bytes of look-back for context (default 4 MiB; the history
	                              buffer is 4x this, the per-line ring without needles 1x) */
	size_t max_line;           /* longer lines are cut to this many bytes (default 64 KiB) */
	size_t keys;               /* watched/context key slots (default 65536) */
	double since, until;       /* time filter; NAN = open */
	int per_line;              /* parse every line even with needles (no find-first) */
	ml_time_opts time;
} ml_scanner_opts;

/* Called for every reported line, in log order. Returning non-zero stops the feed. */
typedef int (*ml_emit_fn)(void *ud, const char *line, size_t len, const ml_record *r, int context);

ml_scanner *ml_scanner_new(const ml_scanner_opts *o);
void ml_scanner_free(ml_scanner *s);
/* Add a needle (case-insensitive substring); an empty needle list reports every mail line. */
int ml_scanner_add_needle(ml_scanner *s, const char *needle, size_t n);
/* Watch a queue id, Dovecot session id or message-id: its lines are reported from now on. */
void ml_scanner_watch(ml_scanner *s, const char *key, size_t n);
/* The same, and first reports (as context, oldest first) the lines of key this scanner has
 * already read and kept without reporting them: a Dovecot session in Dovecot's own log, read
 * before the Postfix log whose LMTP reply names it. From the ring without needles or with
 * per_line (queue ids and sessions); in find-first mode from a look-back in the history
 * (sessions only: the lines of a queue id there may have been reported). Nothing when key is
 * watched already. Returns 0, or the callback's non-zero value. */
int ml_scanner_watch_replay(ml_scanner *s, const char *key, size_t n, ml_emit_fn fn, void *ud);
/* Feed raw bytes; a partial last line is kept for the next call. Returns 0, or the non-zero
 * value the callback returned. */
int ml_scanner_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud);
/* Reads at most max bytes from fd (straight into the history in find-first mode) and processes
 * them. Returns 1 after data, 0 at end of file, -1 on a read error (errno set); *rc is the
 * callback's non-zero value, if any. */
int ml_scanner_read(ml_scanner *s, int fd, size_t max, ml_emit_fn fn, void *ud, int *rc);
/* Process the partial last line, if any. */
int ml_scanner_flush(ml_scanner *s, ml_emit_fn fn, void *ud);

typedef struct {
	uint64_t bytes, lines, mail_lines, matched, reported, context_dropped, truncated;
	uint64_t unreadable;       /* lines the fast path took as mail lines but the full parser could not read */
	/* with needles, mail_lines counts only the lines the scanner had to parse */
} ml_scanner_stats;
void ml_scanner_get_stats(const ml_scanner *s, ml_scanner_stats *st);

#endif
