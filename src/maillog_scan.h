/* maillog_scan.h: internals shared by the files of the streaming scanner of maillog.h:
 * maillog_scan.c (the scanner, its key table, context ring and per-line path),
 * maillog_findfirst.c (find-first mode: history, look-back, watched-key search) and
 * maillog_simd.c (the vectorised searches). Not part of the maillog.h interface.
 * Depends on: maillog.h, libc. */
#ifndef RUNBOOK_MAILLOG_SCAN_H
#define RUNBOOK_MAILLOG_SCAN_H

#include <stdint.h>
#include <string.h>

#include "maillog.h"

#define WAYS 4
#define MAX_CHAIN 512

typedef struct {
	uint64_t h;     /* key hash, 0 = free */
	uint64_t last;  /* absolute ring position + 1 of the newest context line, 0 = none */
	uint32_t age;
	uint8_t watched;   /* 1 watched (its later lines are reported), 2 context done (a session) */
	uint8_t first;     /* first byte of the key, for the probe's prefilter */
	uint16_t pad;
} key_slot;

typedef struct {
	uint64_t prev;  /* absolute position + 1 of the previous line of the same key */
	uint32_t len;
	uint32_t pad;
} ring_hdr;

typedef struct {
	unsigned char *lc; /* lower-cased needle */
	size_t n, anchor;  /* anchor: index of a byte that has no case, or 0 */
	int anchor_caseless;
	int exact;         /* compare bytes as they are (queue ids, sessions) */
} needle;

struct ml_scanner {
	ml_scanner_opts o;
	unsigned char *ring;
	uint64_t wpos;
	key_slot *slots;
	size_t nbuckets;
	uint32_t clock;
	needle *nd;
	size_t nn;
	char *part;
	size_t part_len;
	int part_skip;   /* the partial line overflowed max_line: drop bytes up to the newline */
	uint64_t chain[MAX_CHAIN];
	ml_scanner_stats st;
	/* find-first mode (needles given): raw history, lines before hproc are processed */
	unsigned char *hist;
	size_t hcap, hlen, hproc, hkeep;
	int hskip;                 /* a partial line overflowed max_line: drop bytes up to the newline */
	size_t nwatched;           /* watched key slots: the per-line key probe runs only when > 0 */
	const unsigned char *cur;  /* start of the line being processed (look-backs end there) */
	size_t lb_off[MAX_CHAIN];
	uint32_t first_map[256];   /* watched (1) keys per first byte */
	/* the watched keys themselves while they are few: searched for directly between matches */
	struct { uint64_t h; size_t n; char k[32]; } wl[4];
	size_t nwl, wl_over;       /* keys in wl; watched keys not in it (then the tag probe runs) */
};

#define NEAR_REACH ((size_t)64 << 10) /* look-back for ids named by a reply: logged just before */
#define REACH_SECS 900.0              /* nor further back in time than this before the match */

extern unsigned char ml_lower[256]; /* ASCII lower case of each byte (set by ml_scanner_new) */

static inline int ci_eq(const unsigned char *a, const unsigned char *lc, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ml_lower[a[i]] != lc[i])
			return 0;
	return 1;
}

static inline uint64_t key_hash(const char *k, size_t n)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * UINT64_C(1099511628211);
	return h ? h : 1;
}

/* ------------------------------------------------------------ maillog_scan.c */
/* The slot of key hash h (created, evicting the least recently used, when create is set). */
key_slot *mls_slot_find(ml_scanner *s, uint64_t h, int create);
/* Reports one line (full parse); the ids it names (next hop, bounce, Dovecot session) become
 * watched, their earlier lines reported first. Returns the callback's non-zero value. */
int mls_report(ml_scanner *s, const char *line, size_t len, int context, ml_emit_fn fn, void *ud);
/* One line. hit: 1 when the caller's buffer search found a needle in it, 0 when it did not
 * (find-first mode: a watched-key candidate), -1 to test the needles here. */
int mls_process_line(ml_scanner *s, const char *line, size_t len, int hit, ml_emit_fn fn, void *ud);

/* ------------------------------------------------------- maillog_findfirst.c */
/* Whether the scanner runs (or now starts) in find-first mode; allocates the history. */
int mls_fast_mode(ml_scanner *s);
int mls_fast_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud);
/* ml_scanner_flush in find-first mode. */
int mls_fast_flush(ml_scanner *s, ml_emit_fn fn, void *ud);
/* Reports, oldest first, the lines of key in the history before the current line. */
int mls_lookback(ml_scanner *s, ml_str key, int family, size_t reach, ml_emit_fn fn, void *ud);
/* The same from the end of what has been read (between feeds), as far back as the history goes. */
int mls_lookback_read(ml_scanner *s, ml_str key, int family, ml_emit_fn fn, void *ud);

/* ----------------------------------------------------------- maillog_simd.c */
/* First case-insensitive occurrence of needle nd in [b, e), or NULL. Two bytes of the needle
 * (its case-free anchor and its last byte) are tested at 16 or 32 positions at a time. */
const unsigned char *mls_needle_find(const needle *nd, const unsigned char *b, const unsigned char *e);
/* First occurrence of key in [b, e) (exact bytes), or NULL. */
const unsigned char *mls_key_find(ml_str key, const unsigned char *b, const unsigned char *e);
/* The next `]: ` (the end of a syslog tag) or `>: ` (the end of a Dovecot `<pid><session>`
 * prefix) at or after p, or NULL. */
const unsigned char *mls_find_tag_end(const unsigned char *p, const unsigned char *e);
/* Newlines in [p, e). */
size_t mls_count_lines(const unsigned char *p, const unsigned char *e);

#endif
