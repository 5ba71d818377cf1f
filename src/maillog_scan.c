/* maillog_scan.c: the streaming filter of maillog.h, the hot path for big logs.
 *
 * With needles (an address or domain to follow; at most 8) the scanner runs "find first": the
 * input goes into a history buffer (4 * window bytes; files are read straight into it), the
 * needles are searched over the whole buffer (SSE2: two bytes of the needle tested at 16
 * positions at a time, case-insensitive), and only what a match needs is parsed:
 *  - the matched line;
 *  - the earlier lines of its queue id, found by a look-back in the history (backwards in growing
 *    steps, at most `window` bytes and REACH_SECS before the match, stopping at the queue file's
 *    first line, `client=`/`uid=`, or at the `removed` of an earlier use of the id); the ids a
 *    reported line names (`queued as`, the LMTP reply's Dovecot session, a bounce notification)
 *    get a short look-back of their own (their lines are logged just before);
 *  - the later lines of the ids being followed (until their `removed`): searched for directly
 *    while there are at most 4, else found by a probe of each line's `]: ID:` / `<SESSION>: `.
 * Lines with no match and no followed id are never parsed.
 *
 * Without needles (every mail line is wanted), or with per_line, it parses each line's header and
 * queue id (or Dovecot session), tests the needles (memchr on a case-free anchor byte), and:
 *  - reports the line when a needle matches (inside since/until) or its key is watched; the
 *    first report of a queue id also replays the earlier lines of that id kept in the ring, and
 *    the key becomes watched until `removed`; a reported line's next-hop ids (`queued as`,
 *    LMTP session, bounce notification id) become watched too;
 *  - otherwise keeps a Postfix queue-id line (or a Dovecot LMTP/LDA session line) in a
 *    fixed-size ring (`window` bytes), chained per key through a fixed-size set-associative key
 *    table. Old context is overwritten, never grown.
 * Memory: 4 * window (history, find-first) or window (ring) + keys*24 bytes + one max_line buffer.
 * Depends on: maillog.h (ml_parse_line), libc. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

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

static unsigned char lower[256];

static void init_lower(void)
{
	if (lower['A'] == 'a')
		return;
	for (int i = 0; i < 256; i++)
		lower[i] = (unsigned char)((i >= 'A' && i <= 'Z') ? i + 32 : i);
}

static uint64_t key_hash(const char *k, size_t n)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * UINT64_C(1099511628211);
	return h ? h : 1;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

ml_scanner *ml_scanner_new(const ml_scanner_opts *o)
{
	ml_scanner *s = calloc(1, sizeof *s);
	init_lower();
	if (!s)
		return NULL;
	s->o = *o;
	if (s->o.window < 4096)
		s->o.window = s->o.window ? 4096 : (size_t)4 << 20;
	s->o.window = (s->o.window + 7) & ~(size_t)7;
	if (!s->o.max_line)
		s->o.max_line = 64 * 1024;
	if (s->o.max_line > s->o.window / 4)
		s->o.max_line = s->o.window / 4;
	s->nbuckets = pow2_at_least((s->o.keys ? s->o.keys : 65536) / WAYS);
	if (s->nbuckets < 16)
		s->nbuckets = 16;
	s->ring = malloc(s->o.window);
	s->hkeep = s->o.window;
	s->hcap = s->o.window * 4;
	s->slots = calloc(s->nbuckets * WAYS, sizeof *s->slots);
	s->part = malloc(s->o.max_line);
	if (!s->ring || !s->slots || !s->part) {
		ml_scanner_free(s);
		return NULL;
	}
	return s;
}

void ml_scanner_free(ml_scanner *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nn; i++)
		free(s->nd[i].lc);
	free(s->nd);
	free(s->ring);
	free(s->slots);
	free(s->part);
	free(s->hist);
	free(s);
}

int ml_scanner_add_needle(ml_scanner *s, const char *k, size_t n)
{
	needle *nd;
	if (n == 0)
		return 0;
	nd = realloc(s->nd, (s->nn + 1) * sizeof *nd);
	if (!nd)
		return -1;
	s->nd = nd;
	nd = &s->nd[s->nn];
	if (!(nd->lc = malloc(n)))
		return -1;
	for (size_t i = 0; i < n; i++)
		nd->lc[i] = lower[(unsigned char)k[i]];
	nd->n = n, nd->anchor = 0, nd->anchor_caseless = 0, nd->exact = 0;
	/* prefer '@', then any byte without case */
	for (size_t i = 0; i < n; i++)
		if (nd->lc[i] == '@') {
			nd->anchor = i, nd->anchor_caseless = 1;
			break;
		}
	if (!nd->anchor_caseless)
		for (size_t i = 0; i < n; i++)
			if (!(nd->lc[i] >= 'a' && nd->lc[i] <= 'z')) {
				nd->anchor = i, nd->anchor_caseless = 1;
				break;
			}
	s->nn++;
	return 0;
}

static int ci_eq(const unsigned char *a, const unsigned char *lc, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower[a[i]] != lc[i])
			return 0;
	return 1;
}

static int needle_match(const ml_scanner *s, const char *line, size_t len)
{
	const unsigned char *b = (const unsigned char *)line, *e = b + len;
	for (size_t k = 0; k < s->nn; k++) {
		const needle *nd = &s->nd[k];
		if (nd->n > len)
			continue;
		const unsigned char *from = b + nd->anchor, *last = e - (nd->n - nd->anchor);
		if (nd->anchor_caseless) {
			while (from <= last) {
				const unsigned char *x = memchr(from, nd->lc[nd->anchor], (size_t)(last - from) + 1);
				if (!x)
					break;
				if (ci_eq(x - nd->anchor, nd->lc, nd->n))
					return 1;
				from = x + 1;
			}
		} else {
			for (; from <= last; from++)
				if (lower[*from] == nd->lc[0] && ci_eq(from, nd->lc, nd->n))
					return 1;
		}
	}
	return 0;
}

static void wl_remove(ml_scanner *s, uint64_t h)
{
	for (size_t i = 0; i < s->nwl; i++)
		if (s->wl[i].h == h) {
			s->wl[i] = s->wl[--s->nwl];
			return;
		}
	if (s->wl_over)
		s->wl_over--;
}

static key_slot *slot_find(ml_scanner *s, uint64_t h, int create)
{
	key_slot *b = &s->slots[(h & (s->nbuckets - 1)) * WAYS], *victim = NULL;
	for (int i = 0; i < WAYS; i++)
		if (b[i].h == h) {
			b[i].age = ++s->clock;
			return &b[i];
		}
	if (!create)
		return NULL;
	for (int i = 0; i < WAYS; i++) {
		key_slot *c = &b[i];
		if (c->h == 0) {
			victim = c;
			break;
		}
		/* evict the least recently used, context before watched keys */
		if (!victim || (c->watched < victim->watched) ||
		    (c->watched == victim->watched && (uint32_t)(s->clock - c->age) > (uint32_t)(s->clock - victim->age)))
			victim = c;
	}
	if (victim->h && victim->last)
		s->st.context_dropped++;
	if (victim->h && victim->watched == 1)
		s->nwatched--, s->first_map[victim->first]--, wl_remove(s, victim->h);
	victim->h = h, victim->last = 0, victim->watched = 0, victim->age = ++s->clock;
	return victim;
}

/* Sets k's watch state (0, 1 or 2), keeping the counts and the list of watched keys in step. */
static void set_watched(ml_scanner *s, key_slot *k, const char *key, size_t n, int w)
{
	if (k->watched == 1)
		s->nwatched--, s->first_map[k->first]--, wl_remove(s, k->h);
	k->watched = (uint8_t)w, k->first = (unsigned char)key[0];
	if (w == 1) {
		s->nwatched++, s->first_map[k->first]++;
		if (s->nwl < 4 && n < sizeof s->wl[0].k) {
			s->wl[s->nwl].h = k->h, s->wl[s->nwl].n = n;
			memcpy(s->wl[s->nwl].k, key, n);
			s->nwl++;
		} else
			s->wl_over++;
	}
}

void ml_scanner_watch(ml_scanner *s, const char *key, size_t n)
{
	if (n == 0)
		return;
	key_slot *k = slot_find(s, key_hash(key, n), 1);
	set_watched(s, k, key, n, 1);
}

static void unwatch(ml_scanner *s, key_slot *k)
{
	if (k->watched == 1)
		s->nwatched--, s->first_map[k->first]--, wl_remove(s, k->h);
	k->h = 0, k->watched = 0, k->last = 0; /* ids are reused: forget it */
}

static int ring_valid(const ml_scanner *s, uint64_t pos)
{
	return pos + s->o.window >= s->wpos;
}

static void ring_append(ml_scanner *s, key_slot *k, const char *line, size_t len)
{
	size_t need, off;
	if (len > s->o.max_line)
		len = s->o.max_line, s->st.truncated++;
	need = (sizeof(ring_hdr) + len + 7) & ~(size_t)7;
	off = (size_t)(s->wpos % s->o.window);
	if (off + need > s->o.window)
		s->wpos += s->o.window - off, off = 0; /* never straddle the end */
	ring_hdr h = { k->last, (uint32_t)len, 0 };
	memcpy(s->ring + off, &h, sizeof h);
	memcpy(s->ring + off + sizeof h, line, len);
	k->last = s->wpos + 1;
	s->wpos += need;
}

static int replay(ml_scanner *s, key_slot *k, ml_emit_fn fn, void *ud);
static int lookback(ml_scanner *s, ml_str key, int family, size_t reach, ml_emit_fn fn, void *ud);

static const unsigned char *key_find(ml_str key, const unsigned char *b, const unsigned char *e);

#define NEAR_REACH ((size_t)64 << 10) /* look-back for ids named by a reply: logged just before */
#define REACH_SECS 900.0              /* nor further back in time than this before the match */

/* Epoch time of the line starting at p (before hi), or NAN. */
static double line_time(ml_scanner *s, const unsigned char *p, const unsigned char *hi)
{
	ml_record r;
	const unsigned char *le = memchr(p, '\n', (size_t)(hi - p));
	if (ml_parse_line((const char *)p, (size_t)((le ? le : hi) - p), &s->o.time, &r) == ML_OTHER || !r.has_time)
		return NAN;
	return r.time;
}

/* Makes k watched. Lines of it logged before (the next queue file's smtpd/cleanup lines, a
 * Dovecot session answering before Postfix logs the reply, the earlier lines of a queue id) are
 * reported first: from the ring, or in find-first mode by a look-back in the history. */
static int watch_context(ml_scanner *s, key_slot *k, ml_str key, int family, size_t reach, ml_emit_fn fn, void *ud)
{
	if (k->watched)
		return 0;
	if (s->hist && s->cur) {
		/* a Dovecot session is over when Postfix logs the reply naming it: its lines come
		 * before, so it is marked done (2) rather than watched for later lines */
		set_watched(s, k, key.p, key.n, family == ML_DOVECOT ? 2 : 1);
		return lookback(s, key, family, reach, fn, ud);
	}
	set_watched(s, k, key.p, key.n, 1);
	return k->last ? replay(s, k, fn, ud) : 0;
}

static int report(ml_scanner *s, const char *line, size_t len, int context, ml_emit_fn fn, void *ud)
{
	ml_record r;
	int rc;
	if (ml_parse_line(line, len, &s->o.time, &r) == ML_OTHER) {
		s->st.unreadable++; /* the fast path let a line through that the full parser rejects */
		return 0;
	}
	s->st.reported++;
	if (r.queued_as.p && (rc = watch_context(s, slot_find(s, key_hash(r.queued_as.p, r.queued_as.n), 1), r.queued_as, ML_POSTFIX, NEAR_REACH, fn, ud)) != 0)
		return rc;
	if (r.bounce_id.p && (rc = watch_context(s, slot_find(s, key_hash(r.bounce_id.p, r.bounce_id.n), 1), r.bounce_id, ML_POSTFIX, NEAR_REACH, fn, ud)) != 0)
		return rc;
	if (r.session.p && r.family == ML_POSTFIX &&
	    (rc = watch_context(s, slot_find(s, key_hash(r.session.p, r.session.n), 1), r.session, ML_DOVECOT, NEAR_REACH, fn, ud)) != 0)
		return rc;
	return fn(ud, line, len, &r, context);
}

/* Replays the kept lines of key k, oldest first. */
static int replay(ml_scanner *s, key_slot *k, ml_emit_fn fn, void *ud)
{
	size_t n = 0;
	uint64_t pos = k->last;
	while (pos && n < MAX_CHAIN && ring_valid(s, pos - 1)) {
		ring_hdr h;
		memcpy(&h, s->ring + (pos - 1) % s->o.window, sizeof h);
		s->chain[n++] = pos - 1;
		pos = h.prev;
	}
	if (pos && n < MAX_CHAIN)
		s->st.context_dropped++;
	k->last = 0;
	while (n > 0) {
		ring_hdr h;
		const unsigned char *at = s->ring + s->chain[--n] % s->o.window;
		memcpy(&h, at, sizeof h);
		int rc = report(s, (const char *)at + sizeof h, h.len, 1, fn, ud);
		if (rc)
			return rc;
	}
	return 0;
}

/* Is key the queue id (Postfix) or session (Dovecot) of line [p, e)? Sets *first when the line
 * opens a queue file (smtpd client=, pickup uid=) and *removed when it closes one. */
static int line_has_key(const unsigned char *p, const unsigned char *e, ml_str key, int family, int *first, int *removed)
{
	ml_record r;
	if (ml_parse_head((const char *)p, (size_t)(e - p), &r) != family)
		return 0;
	ml_str k = family == ML_POSTFIX ? r.queue_id : r.session;
	if (!k.p || k.n != key.n || memcmp(k.p, key.p, key.n) != 0)
		return 0;
	*removed = r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7);
	const char *m = k.p + k.n; /* `ID: client=` / `ID: uid=` */
	size_t left = (size_t)((const char *)e - m);
	*first = family == ML_POSTFIX && ((left >= 9 && !memcmp(m, ": client=", 9)) || (left >= 6 && !memcmp(m, ": uid=", 6)));
	return 1;
}

/* Find-first mode: reports, oldest first, the lines of key logged in the `window` bytes of
 * history before the current line; searched backwards in growing steps, stopping at the line
 * that opened the queue file or at the `removed` of an earlier use of the same id. */
static int lookback(ml_scanner *s, ml_str key, int family, size_t reach, ml_emit_fn fn, void *ud)
{
	const unsigned char *lo = s->hist, *hi = s->cur, *end = hi;
	size_t n = 0, step = 2048;
	int done = 0;
	double now = NAN;
	if (reach > s->hkeep)
		reach = s->hkeep;
	if ((size_t)(hi - lo) > reach)
		lo = hi - reach;
	if (hi - lo > (ptrdiff_t)NEAR_REACH)
		now = line_time(s, hi, s->hist + s->hlen);
	while (!done && end > lo && n < MAX_CHAIN) {
		const unsigned char *start = (size_t)(end - lo) > step ? end - step : lo;
		const unsigned char *lim = end + key.n - 1 < hi ? end + key.n - 1 : hi;
		const unsigned char *x = start, *prev_line = NULL;
		size_t step_first = n;
		while (x < end && (x = key_find(key, x, lim)) != NULL && x < end) {
			const unsigned char *ls = x, *le;
			while (ls > s->hist && ls[-1] != '\n')
				ls--;
			le = memchr(x, '\n', (size_t)(hi - x));
			if (!le)
				le = hi;
			int first = 0, removed = 0;
			if (ls != prev_line && ls >= lo && line_has_key(ls, le, key, family, &first, &removed)) {
				prev_line = ls;
				if (removed) {
					/* an earlier message under the same id: nothing before this line counts */
					n = step_first;
					done = 1;
				} else {
					if (n < MAX_CHAIN)
						s->lb_off[n++] = (size_t)(ls - s->hist);
					if (first)
						done = 1;
				}
			}
			x = le;
		}
		end = start;
		if (step < s->hkeep)
			step *= 2;
		if (!done && !isnan(now) && end > lo && (size_t)(hi - end) > NEAR_REACH) {
			/* a queue file's lines lie close in time: stop REACH_SECS before the match */
			const unsigned char *ls = memchr(end, '\n', (size_t)(hi - end));
			double t = ls ? line_time(s, ls + 1, hi) : NAN;
			if (!isnan(t) && now - t > REACH_SECS)
				break;
		}
	}
	if (!done && family == ML_POSTFIX && reach == s->hkeep && end <= lo && lo > s->hist)
		s->st.context_dropped++; /* the queue file opened before the history kept */
	/* offsets in log order (each step was searched forwards, the steps backwards) */
	for (size_t i = 1; i < n; i++) {
		size_t v = s->lb_off[i], j = i;
		while (j > 0 && s->lb_off[j - 1] > v) {
			s->lb_off[j] = s->lb_off[j - 1];
			j--;
		}
		s->lb_off[j] = v;
	}
	for (size_t i = 0; i < n; i++) {
		const unsigned char *ls = s->hist + s->lb_off[i], *le = memchr(ls, '\n', (size_t)(hi - ls));
		int rc = report(s, (const char *)ls, (size_t)((le ? le : hi) - ls), 1, fn, ud);
		if (rc)
			return rc;
	}
	return 0;
}

static int in_window(const ml_scanner *s, const ml_record *r)
{
	if (!r->has_time)
		return 1;
	if (!isnan(s->o.since) && r->time < s->o.since)
		return 0;
	if (!isnan(s->o.until) && r->time > s->o.until)
		return 0;
	return 1;
}

/* Dovecot's delivery services: their session lines are kept as context (an LMTP session may be
 * logged before the Postfix reply that names it); IMAP/POP3 sessions are not. */
static int delivery_service(const ml_record *r)
{
	ml_str v = r->service;
	return r->family == ML_DOVECOT && v.p &&
	       ((v.n == 4 && !memcmp(v.p, "lmtp", 4)) || (v.n == 3 && !memcmp(v.p, "lda", 3)));
}

/* One line. hit: 1 when the caller's buffer search found a needle in it, 0 when it did not
 * (find-first mode: a watched-key candidate), -1 to test the needles here. */
static int process_line(ml_scanner *s, const char *line, size_t len, int hit, ml_emit_fn fn, void *ud)
{
	ml_record r;
	ml_str key = { NULL, 0 };
	key_slot *k = NULL;
	uint64_t h = 0;
	int matched, rc;

	if (hit < 0)
		s->st.lines++;
	if (ml_parse_head(line, len, &r) == ML_OTHER)
		return 0;
	s->st.mail_lines++;
	if (r.family == ML_POSTFIX && r.queue_id.p && !(r.queue_id.n == 7 && !memcmp(r.queue_id.p, "NOQUEUE", 7)))
		key = r.queue_id;
	else if (r.family == ML_DOVECOT && r.session.p)
		key = r.session;
	if (key.p) {
		h = key_hash(key.p, key.n);
		k = slot_find(s, h, 0);
	}
	matched = hit >= 0 ? hit : (s->nn == 0 || needle_match(s, line, len));
	if (matched && !(k && k->watched) && (!isnan(s->o.since) || !isnan(s->o.until))) {
		ml_record t;
		ml_parse_line(line, len, &s->o.time, &t);
		matched = in_window(s, &t);
	}
	if (matched || (k && k->watched)) {
		if (matched)
			s->st.matched++;
		if (key.p) {
			if (!k)
				k = slot_find(s, h, 1);
			if ((rc = watch_context(s, k, key, r.family, (size_t)-1, fn, ud)) != 0)
				return rc;
			if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7))
				unwatch(s, k);
		}
		return report(s, line, len, 0, fn, ud);
	}
	if (!s->hist && key.p && (r.family == ML_POSTFIX || delivery_service(&r))) {
		if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7)) {
			if (k)
				unwatch(s, k);
			return 0;
		}
		if (!k)
			k = slot_find(s, h, 1);
		ring_append(s, k, line, len);
	}
	return 0;
}

/* ---------------------------------------------------------------- find-first mode */

/* First case-insensitive occurrence of needle nd in [b, e), or NULL. Two bytes of the needle
 * (its case-free anchor and its last byte) are tested at 16 positions at a time. */
static const unsigned char *needle_find(const needle *nd, const unsigned char *b, const unsigned char *e);

/* First occurrence of key in [b, e) (exact bytes), or NULL. */
static const unsigned char *key_find(ml_str key, const unsigned char *b, const unsigned char *e)
{
	needle nd = { (unsigned char *)(uintptr_t)key.p, key.n, 0, 1, 1 };
	return key.n ? needle_find(&nd, b, e) : NULL;
}

#ifdef HAVE_AVX2_PATH
/* The AVX2 loop of needle_find (32 positions at a time), used when the CPU has AVX2: returns
 * the match, or NULL with *pp at the first position it did not test. */
__attribute__((target("avx2"))) static const unsigned char *
needle_find_avx2(const needle *nd, const unsigned char **pp, const unsigned char *last, size_t a, size_t z,
                 unsigned char ca, unsigned char cz, unsigned char fa, unsigned char fz)
{
	const __m256i va = _mm256_set1_epi8((char)ca), vz = _mm256_set1_epi8((char)cz);
	const __m256i ma = _mm256_set1_epi8((char)fa), mz = _mm256_set1_epi8((char)fz);
	const unsigned char *p = *pp;
	for (; p + 31 <= last; p += 32) {
		__m256i x = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + a)), ma);
		__m256i y = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + z)), mz);
		unsigned m = (unsigned)_mm256_movemask_epi8(_mm256_and_si256(_mm256_cmpeq_epi8(x, va), _mm256_cmpeq_epi8(y, vz)));
		while (m) {
			unsigned i = (unsigned)__builtin_ctz(m);
			if (nd->exact ? !memcmp(p + i, nd->lc, nd->n) : ci_eq(p + i, nd->lc, nd->n)) {
				*pp = p;
				return p + i;
			}
			m &= m - 1;
		}
	}
	*pp = p;
	return NULL;
}

static int have_avx2(void)
{
	static int known = -1;
	if (known < 0) {
		const char *force = getenv("RUNBOOK_MAILLOG_SIMD"); /* "sse2": the tests of the other path */
		__builtin_cpu_init();
		known = __builtin_cpu_supports("avx2") && !(force && strcmp(force, "sse2") == 0) ? 1 : 0;
	}
	return known;
}
#endif

static const unsigned char *needle_find(const needle *nd, const unsigned char *b, const unsigned char *e)
{
	size_t n = nd->n, a = nd->anchor, z = n - 1;
	if ((size_t)(e - b) < n)
		return NULL;
	if (z == a)
		z = 0;
	const unsigned char *last = e - n, *p = b;
	unsigned char ca = nd->lc[a], cz = nd->lc[z];
	unsigned char fa = (!nd->exact && ca >= 'a' && ca <= 'z') ? 0x20 : 0;
	unsigned char fz = (!nd->exact && cz >= 'a' && cz <= 'z') ? 0x20 : 0;
#ifdef HAVE_AVX2_PATH
	if ((size_t)(last - p) >= 64 && have_avx2()) {
		const unsigned char *x = needle_find_avx2(nd, &p, last, a, z, ca, cz, fa, fz);
		if (x)
			return x;
	}
#endif
#ifdef __SSE2__
	const __m128i va = _mm_set1_epi8((char)ca), vz = _mm_set1_epi8((char)cz);
	const __m128i ma = _mm_set1_epi8((char)fa), mz = _mm_set1_epi8((char)fz);
	for (; p + 15 <= last; p += 16) {
		__m128i x = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + a)), ma);
		__m128i y = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + z)), mz);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(y, vz)));
		while (m) {
			unsigned i = (unsigned)__builtin_ctz(m);
			if (nd->exact ? !memcmp(p + i, nd->lc, n) : ci_eq(p + i, nd->lc, n))
				return p + i;
			m &= m - 1;
		}
	}
#endif
	for (; p <= last; p++)
		if ((p[a] | fa) == ca && (p[z] | fz) == cz && (nd->exact ? !memcmp(p, nd->lc, n) : ci_eq(p, nd->lc, n)))
			return p;
	return NULL;
}

/* The next `]: ` (the end of a syslog tag) or `>: ` (the end of a Dovecot `<pid><session>`
 * prefix) at or after p, or NULL. */
static const unsigned char *find_tag_end(const unsigned char *p, const unsigned char *e)
{
#ifdef __SSE2__
	const __m128i rb = _mm_set1_epi8(']'), gt = _mm_set1_epi8('>'), sp = _mm_set1_epi8(' ');
	for (; p + 18 <= e; p += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i a = _mm_or_si128(_mm_cmpeq_epi8(x, rb), _mm_cmpeq_epi8(x, gt));
		__m128i c = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 2)), sp);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(a, c));
		while (m) {
			unsigned i = (unsigned)__builtin_ctz(m);
			if (p[i + 1] == ':')
				return p + i;
			m &= m - 1;
		}
	}
#endif
	for (; p + 3 <= e; p++)
		if ((p[0] == ']' || p[0] == '>') && p[1] == ':' && p[2] == ' ')
			return p;
	return NULL;
}

/* Processes the whole line of [b, e) that holds position x; *next is set past its newline. */
static int process_line_at(ml_scanner *s, const unsigned char *b, const unsigned char *e,
			   const unsigned char *x, const unsigned char **next, ml_emit_fn fn, void *ud)
{
	const unsigned char *ls = x, *le = memchr(x, '\n', (size_t)(e - x));
	while (ls > b && ls[-1] != '\n')
		ls--;
	if (!le)
		le = e;
	s->cur = ls;
	*next = le + 1;
	return process_line(s, (const char *)ls, (size_t)(le - ls), 0, fn, ud);
}

/* Lines of [b, e) whose queue id (the token after `]: `) is watched are processed; the rest are
 * skipped unparsed. */
static int probe_region(ml_scanner *s, const unsigned char *b, const unsigned char *e, ml_emit_fn fn, void *ud)
{
	const unsigned char *p = b, *c;
	while (s->nwatched > 0 && (c = find_tag_end(p, e)) != NULL) {
		const unsigned char *q = c + 3, *t = q;
		p = q;
		if (*c == '>') { /* Dovecot: `<SESSION>: ` */
			const unsigned char *lt = c;
			while (lt > b && c - lt < 40 && lt[-1] != '<' && lt[-1] != ' ')
				lt--;
			if (lt == c || lt == b || lt[-1] != '<' || !s->first_map[*lt])
				continue;
			q = lt, t = c;
		} else {
			if (q >= e || !s->first_map[*q])
				continue;
			while (t < e && t - q < 20 && ((*t >= '0' && *t <= '9') || (*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z')))
				t++;
			if (t >= e || *t != ':')
				continue;
		}
		key_slot *k = slot_find(s, key_hash((const char *)q, (size_t)(t - q)), 0);
		if (!k || k->watched != 1)
			continue;
		int rc = process_line_at(s, b, e, c, &p, fn, ud);
		if (rc)
			return rc;
	}
	return 0;
}

/* Lines of [b, e) with a watched key: while the watched keys are few and listed, found by
 * searching for the keys themselves, else by the tag probe. */
static int watched_region(ml_scanner *s, const unsigned char *b, const unsigned char *e, ml_emit_fn fn, void *ud)
{
	const unsigned char *p = b;
	while (p < e && s->nwatched > 0) {
		if (s->wl_over || s->nwl == 0)
			return probe_region(s, p, e, fn, ud);
		const unsigned char *best = NULL;
		for (size_t i = 0; i < s->nwl; i++) {
			ml_str k = { s->wl[i].k, s->wl[i].n };
			const unsigned char *x = key_find(k, p, best && best + k.n < e ? best + k.n : e);
			if (x && (!best || x < best))
				best = x;
		}
		if (!best)
			break;
		int rc = process_line_at(s, b, e, best, &p, fn, ud);
		if (rc)
			return rc;
	}
	return 0;
}

/* Newlines in [p, e). */
static size_t count_lines(const unsigned char *p, const unsigned char *e)
{
	size_t n = 0;
#ifdef __SSE2__
	const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
	while (p + 16 <= e) {
		/* per-byte counters (cmpeq gives -1 per newline), summed every 255 blocks */
		__m128i acc = zero;
		for (int i = 0; i < 255 && p + 16 <= e; i++, p += 16)
			acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), nl));
		__m128i sad = _mm_sad_epu8(acc, zero);
		n += (size_t)_mm_cvtsi128_si32(sad) + (size_t)_mm_extract_epi16(sad, 4);
	}
#endif
	for (; p < e; p++)
		n += *p == '\n';
	return n;
}

/* Processes the complete lines of history in [hproc, end) (end just after a newline). */
static int fast_region(ml_scanner *s, size_t end, ml_emit_fn fn, void *ud)
{
	const unsigned char *b = s->hist + s->hproc, *e = s->hist + end, *pos = b;
	const unsigned char *next[8];
	size_t nn = s->nn < 8 ? s->nn : 8;
	int rc = 0;
	s->st.lines += count_lines(b, e);
	for (size_t i = 0; i < nn; i++)
		next[i] = NULL;
	while (pos < e) {
		/* the next needle occurrence at or after pos (per-needle results are reused) */
		const unsigned char *m = e;
		for (size_t i = 0; i < s->nn; i++) {
			const unsigned char *x;
			if (i < nn && next[i] && next[i] >= pos)
				x = next[i];
			else {
				x = needle_find(&s->nd[i], pos, e);
				if (!x)
					x = e;
				if (i < nn)
					next[i] = x;
			}
			if (x < m)
				m = x;
		}
		const unsigned char *ms = m;
		if (m < e)
			while (ms > pos && ms[-1] != '\n')
				ms--;
		/* lines before the match: only watched keys matter */
		if (s->nwatched > 0 && pos < ms && (rc = watched_region(s, pos, ms, fn, ud)) != 0)
			goto out;
		if (m >= e)
			break;
		const unsigned char *le = memchr(m, '\n', (size_t)(e - m));
		if (!le)
			le = e;
		s->cur = ms;
		if ((rc = process_line(s, (const char *)ms, (size_t)(le - ms), 1, fn, ud)) != 0)
			goto out;
		pos = le + 1;
	}
out:
	s->cur = NULL;
	s->hproc = end;
	return rc;
}

/* Makes room in the history: keeps the last `hkeep` processed bytes (from a line start) and
 * the unprocessed tail. */
static void fast_compact(ml_scanner *s)
{
	size_t from = s->hproc > s->hkeep ? s->hproc - s->hkeep : 0;
	while (from > 0 && from < s->hproc && s->hist[from - 1] != '\n')
		from++;
	if (from == 0)
		return;
	memmove(s->hist, s->hist + from, s->hlen - from);
	s->hlen -= from;
	s->hproc -= from;
}

static int fast_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud)
{
	int rc;
	s->st.bytes += len;
	while (len > 0) {
		if (s->hskip) { /* the rest of an over-long line */
			const char *nl = memchr(buf, '\n', len);
			if (!nl)
				return 0;
			len -= (size_t)(nl + 1 - buf), buf = nl + 1;
			s->hskip = 0;
			continue;
		}
		if (s->hlen == s->hcap)
			fast_compact(s);
		if (s->hlen - s->hproc >= s->o.max_line) {
			/* an over-long partial line: process what fits, drop the rest up to its newline */
			const char *nl = memchr(s->hist + s->hproc, '\n', s->hlen - s->hproc);
			if (!nl) {
				size_t cut = s->hproc + s->o.max_line;
				s->st.truncated++;
				s->hist[cut] = '\n';
				s->hlen = cut + 1;
				s->hskip = 1;
				if ((rc = fast_region(s, s->hlen, fn, ud)) != 0)
					return rc;
				continue;
			}
		}
		size_t take = s->hcap - s->hlen;
		if (take > len)
			take = len;
		memcpy(s->hist + s->hlen, buf, take);
		s->hlen += take, buf += take, len -= take;
		const unsigned char *nl = s->hlen > s->hproc ? memrchr(s->hist + s->hproc, '\n', s->hlen - s->hproc) : NULL;
		if (nl && (rc = fast_region(s, (size_t)(nl + 1 - s->hist), fn, ud)) != 0)
			return rc;
	}
	return 0;
}

static int fast_mode(ml_scanner *s)
{
	if (s->hist)
		return 1;
	if (s->nn == 0 || s->nn > 8 || s->o.per_line)
		return 0;
	s->hist = malloc(s->hcap + 1);
	return s->hist != NULL;
}

int ml_scanner_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud)
{
	const char *p = buf, *e = buf + len, *nl;
	int rc;
	if (fast_mode(s))
		return fast_feed(s, buf, len, fn, ud);
	s->st.bytes += len;
	if (s->part_len || s->part_skip) {
		nl = memchr(p, '\n', len);
		size_t take = (size_t)((nl ? nl : e) - p);
		if (!s->part_skip) {
			size_t room = s->o.max_line - s->part_len;
			if (take > room) {
				take = room, s->part_skip = 1, s->st.truncated++;
			}
			memcpy(s->part + s->part_len, p, take);
			s->part_len += take;
		}
		if (!nl)
			return 0;
		p = nl + 1;
		size_t n = s->part_len;
		s->part_len = 0, s->part_skip = 0;
		if ((rc = process_line(s, s->part, n, -1, fn, ud)) != 0)
			return rc;
	}
	while (p < e && (nl = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		if ((rc = process_line(s, p, (size_t)(nl - p), -1, fn, ud)) != 0)
			return rc;
		p = nl + 1;
	}
	if (p < e) {
		size_t n = (size_t)(e - p);
		if (n > s->o.max_line)
			n = s->o.max_line, s->part_skip = 1, s->st.truncated++;
		memcpy(s->part, p, n);
		s->part_len = n;
	}
	return 0;
}

int ml_scanner_read(ml_scanner *s, int fd, size_t max, ml_emit_fn fn, void *ud, int *rc)
{
	char tmp[65536];
	*rc = 0;
	if (!fast_mode(s) || s->hskip) {
		/* the line-by-line path (or the rest of an over-long line): through a small buffer */
		ssize_t n = read(fd, tmp, sizeof tmp < max ? sizeof tmp : max);
		if (n > 0)
			*rc = ml_scanner_feed(s, tmp, (size_t)n, fn, ud);
		return n < 0 ? -1 : (int)(n > 0);
	}
	if (s->hlen == s->hcap)
		fast_compact(s);
	if (s->hlen - s->hproc >= s->o.max_line || s->hlen == s->hcap) {
		ssize_t n = read(fd, tmp, 1); /* let fast_feed cut the over-long partial line */
		if (n > 0)
			*rc = fast_feed(s, tmp, (size_t)n, fn, ud);
		return n < 0 ? -1 : (int)(n > 0);
	}
	size_t room = s->hcap - s->hlen;
	ssize_t n = read(fd, s->hist + s->hlen, room < max ? room : max);
	if (n <= 0)
		return n < 0 ? -1 : 0;
	s->st.bytes += (size_t)n;
	s->hlen += (size_t)n;
	const unsigned char *nl = memrchr(s->hist + s->hproc, '\n', s->hlen - s->hproc);
	if (nl)
		*rc = fast_region(s, (size_t)(nl + 1 - s->hist), fn, ud);
	return 1;
}

int ml_scanner_flush(ml_scanner *s, ml_emit_fn fn, void *ud)
{
	if (s->hist) {
		if (s->hlen == s->hproc)
			return 0;
		if (s->hlen == s->hcap)
			fast_compact(s);
		if (s->hlen == s->hcap)
			s->hlen--; /* cannot happen: max_line < hcap - hkeep; keep room for the newline */
		s->hist[s->hlen++] = '\n';
		s->hskip = 0;
		return fast_region(s, s->hlen, fn, ud);
	}
	size_t n = s->part_len;
	if (!n)
		return 0;
	s->part_len = 0, s->part_skip = 0;
	return process_line(s, s->part, n, -1, fn, ud);
}

void ml_scanner_get_stats(const ml_scanner *s, ml_scanner_stats *st)
{
	*st = s->st;
}
