/* maillog_scan.c: the streaming filter of maillog.h, the hot path for big logs.
 *
 * Per line it parses only the header and queue id (or Dovecot session), tests the needles
 * (case-insensitive substring via memchr on a case-free anchor byte), and:
 *  - reports the line when a needle matches (inside since/until) or its key is watched; the
 *    first report of a queue id also replays the earlier lines of that id kept in the ring, and
 *    the key becomes watched until `removed`; a reported line's next-hop ids (`queued as`,
 *    LMTP session, bounce notification id) become watched too;
 *  - otherwise keeps a Postfix queue-id line in a fixed-size ring (`window` bytes), chained per
 *    queue id through a fixed-size set-associative key table. Old context is overwritten, never
 *    grown: memory = window + keys*32 bytes + one max_line buffer.
 * Depends on: maillog.h (ml_parse_line), libc. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maillog.h"

#define WAYS 4
#define MAX_CHAIN 512

typedef struct {
	uint64_t h;     /* key hash, 0 = free */
	uint64_t last;  /* absolute ring position + 1 of the newest context line, 0 = none */
	uint32_t age;
	uint32_t watched;
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
	nd->n = n, nd->anchor = 0, nd->anchor_caseless = 0;
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
	victim->h = h, victim->last = 0, victim->watched = 0, victim->age = ++s->clock;
	return victim;
}

void ml_scanner_watch(ml_scanner *s, const char *key, size_t n)
{
	if (n == 0)
		return;
	key_slot *k = slot_find(s, key_hash(key, n), 1);
	k->watched = 1;
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

/* Watches a next-hop key named by a reported line; lines of it logged before (the next queue
 * file's smtpd/cleanup lines, a Dovecot session answering before Postfix logs the reply) are
 * replayed from the ring first. */
static int watch_replay(ml_scanner *s, ml_str key, ml_emit_fn fn, void *ud)
{
	key_slot *k = slot_find(s, key_hash(key.p, key.n), 1);
	if (k->watched)
		return 0;
	k->watched = 1;
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
	if (r.queued_as.p && (rc = watch_replay(s, r.queued_as, fn, ud)) != 0)
		return rc;
	if (r.bounce_id.p && (rc = watch_replay(s, r.bounce_id, fn, ud)) != 0)
		return rc;
	if (r.session.p && r.family == ML_POSTFIX && (rc = watch_replay(s, r.session, fn, ud)) != 0)
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

static int process_line(ml_scanner *s, const char *line, size_t len, ml_emit_fn fn, void *ud)
{
	ml_record r;
	ml_str key = { NULL, 0 };
	key_slot *k = NULL;
	uint64_t h = 0;
	int matched, rc;

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
	matched = s->nn == 0 || needle_match(s, line, len);
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
			if (!k->watched) {
				k->watched = 1;
				if ((rc = replay(s, k, fn, ud)) != 0)
					return rc;
			}
			if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7))
				k->h = 0, k->watched = 0, k->last = 0; /* ids are reused: forget it */
		}
		return report(s, line, len, 0, fn, ud);
	}
	if (key.p && (r.family == ML_POSTFIX || delivery_service(&r))) {
		if (r.event.p && r.event.n == 7 && !memcmp(r.event.p, "removed", 7)) {
			if (k)
				k->h = 0, k->watched = 0, k->last = 0;
			return 0;
		}
		if (!k)
			k = slot_find(s, h, 1);
		ring_append(s, k, line, len);
	}
	return 0;
}

int ml_scanner_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud)
{
	const char *p = buf, *e = buf + len, *nl;
	int rc;
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
		if ((rc = process_line(s, s->part, n, fn, ud)) != 0)
			return rc;
	}
	while (p < e && (nl = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		if ((rc = process_line(s, p, (size_t)(nl - p), fn, ud)) != 0)
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
	size_t n = s->part_len;
	if (!n)
		return 0;
	s->part_len = 0, s->part_skip = 0;
	return process_line(s, s->part, n, fn, ud);
}

void ml_scanner_get_stats(const ml_scanner *s, ml_scanner_stats *st)
{
	*st = s->st;
}
