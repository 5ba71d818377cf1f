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
 * This file: the scanner, its key table and context ring, the per-line path and reporting;
 * find-first mode is maillog_findfirst.c, the vectorised searches maillog_simd.c.
 * Depends on: maillog_scan.h, maillog.h (ml_parse_line, ml_parse_head), libc. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maillog_scan.h"

unsigned char ml_lower[256];

static void init_lower(void)
{
	if (ml_lower['A'] == 'a')
		return;
	for (int i = 0; i < 256; i++)
		ml_lower[i] = (unsigned char)((i >= 'A' && i <= 'Z') ? i + 32 : i);
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
		nd->lc[i] = ml_lower[(unsigned char)k[i]];
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
				if (ml_lower[*from] == nd->lc[0] && ci_eq(from, nd->lc, nd->n))
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

key_slot *mls_slot_find(ml_scanner *s, uint64_t h, int create)
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
	key_slot *k = mls_slot_find(s, key_hash(key, n), 1);
	set_watched(s, k, key, n, 1);
}

static int replay(ml_scanner *s, key_slot *k, ml_emit_fn fn, void *ud);

int ml_scanner_watch_replay(ml_scanner *s, const char *key, size_t n, ml_emit_fn fn, void *ud)
{
	if (n == 0)
		return 0;
	key_slot *k = mls_slot_find(s, key_hash(key, n), 1);
	if (k->watched)
		return 0;
	set_watched(s, k, key, n, 1);
	if (memchr(key, '\n', n))
		return 0; /* no line's key */
	if (s->hist)
		return mls_lookback_read(s, (ml_str){ key, n }, ML_DOVECOT, fn, ud);
	return k->last ? replay(s, k, fn, ud) : 0;
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
		return mls_lookback(s, key, family, reach, fn, ud);
	}
	set_watched(s, k, key.p, key.n, 1);
	return k->last ? replay(s, k, fn, ud) : 0;
}

int mls_report(ml_scanner *s, const char *line, size_t len, int context, ml_emit_fn fn, void *ud)
{
	ml_record r;
	int rc;
	if (ml_parse_line(line, len, &s->o.time, &r) == ML_OTHER) {
		s->st.unreadable++; /* the fast path let a line through that the full parser rejects */
		return 0;
	}
	s->st.reported++;
	if (r.queued_as.p && (rc = watch_context(s, mls_slot_find(s, key_hash(r.queued_as.p, r.queued_as.n), 1), r.queued_as, ML_POSTFIX, NEAR_REACH, fn, ud)) != 0)
		return rc;
	if (r.bounce_id.p && (rc = watch_context(s, mls_slot_find(s, key_hash(r.bounce_id.p, r.bounce_id.n), 1), r.bounce_id, ML_POSTFIX, NEAR_REACH, fn, ud)) != 0)
		return rc;
	if (r.session.p && r.family == ML_POSTFIX &&
	    (rc = watch_context(s, mls_slot_find(s, key_hash(r.session.p, r.session.n), 1), r.session, ML_DOVECOT, NEAR_REACH, fn, ud)) != 0)
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
		int rc = mls_report(s, (const char *)at + sizeof h, h.len, 1, fn, ud);
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
int mls_process_line(ml_scanner *s, const char *line, size_t len, int hit, ml_emit_fn fn, void *ud)
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
		k = mls_slot_find(s, h, 0);
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
				k = mls_slot_find(s, h, 1);
			if ((rc = watch_context(s, k, key, r.family, (size_t)-1, fn, ud)) != 0)
				return rc;
			if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7))
				unwatch(s, k);
		}
		return mls_report(s, line, len, 0, fn, ud);
	}
	if (!s->hist && key.p && (r.family == ML_POSTFIX || delivery_service(&r))) {
		if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7)) {
			if (k)
				unwatch(s, k);
			return 0;
		}
		if (!k)
			k = mls_slot_find(s, h, 1);
		ring_append(s, k, line, len);
	}
	return 0;
}

int ml_scanner_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud)
{
	const char *p = buf, *e = buf + len, *nl;
	int rc;
	if (mls_fast_mode(s))
		return mls_fast_feed(s, buf, len, fn, ud);
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
		if ((rc = mls_process_line(s, s->part, n, -1, fn, ud)) != 0)
			return rc;
	}
	while (p < e && (nl = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		if ((rc = mls_process_line(s, p, (size_t)(nl - p), -1, fn, ud)) != 0)
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

int ml_scanner_flush(ml_scanner *s, ml_emit_fn fn, void *ud)
{
	if (s->hist)
		return mls_fast_flush(s, fn, ud);
	size_t n = s->part_len;
	if (!n)
		return 0;
	s->part_len = 0, s->part_skip = 0;
	return mls_process_line(s, s->part, n, -1, fn, ud);
}

void ml_scanner_get_stats(const ml_scanner *s, ml_scanner_stats *st)
{
	*st = s->st;
}
