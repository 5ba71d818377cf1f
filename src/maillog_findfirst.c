/* maillog_findfirst.c: the scanner's find-first mode (maillog.h; used when needles are given).
 *
 * The input goes into a history buffer (4 * window bytes; files are read straight into it),
 * the needles are searched over the whole buffer (maillog_simd.c), and only what a match needs
 * is parsed: the matched line; the earlier lines of its queue id, found by a look-back in the
 * history (backwards in growing steps, at most `window` bytes and REACH_SECS before the match,
 * stopping at the queue file's first line or at the `removed` of an earlier use of the id); the
 * later lines of the ids being followed, searched for directly while there are at most 4, else
 * found by a probe of each line's `]: ID:` / `<SESSION>: `.
 * Depends on: maillog_scan.h (maillog_scan.c: process_line, report; maillog_simd.c), libc. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "maillog_scan.h"

/* Epoch time of the line starting at p (before hi), or NAN. */
static double line_time(ml_scanner *s, const unsigned char *p, const unsigned char *hi)
{
	ml_record r;
	const unsigned char *le = memchr(p, '\n', (size_t)(hi - p));
	if (ml_parse_line((const char *)p, (size_t)((le ? le : hi) - p), &s->o.time, &r) == ML_OTHER || !r.has_time)
		return NAN;
	return r.time;
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
int mls_lookback(ml_scanner *s, ml_str key, int family, size_t reach, ml_emit_fn fn, void *ud)
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
		while (x < end && (x = mls_key_find(key, x, lim)) != NULL && x < end) {
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
			x = le > x ? le : x + 1; /* a key that starts with a newline matches at le again */
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
		int rc = mls_report(s, (const char *)ls, (size_t)((le ? le : hi) - ls), 1, fn, ud);
		if (rc)
			return rc;
	}
	return 0;
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
	return mls_process_line(s, (const char *)ls, (size_t)(le - ls), 0, fn, ud);
}

/* Lines of [b, e) whose queue id (the token after `]: `) is watched are processed; the rest are
 * skipped unparsed. */
static int probe_region(ml_scanner *s, const unsigned char *b, const unsigned char *e, ml_emit_fn fn, void *ud)
{
	const unsigned char *p = b, *c;
	while (s->nwatched > 0 && (c = mls_find_tag_end(p, e)) != NULL) {
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
		key_slot *k = mls_slot_find(s, key_hash((const char *)q, (size_t)(t - q)), 0);
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
			const unsigned char *x = mls_key_find(k, p, best && best + k.n < e ? best + k.n : e);
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

/* Processes the complete lines of history in [hproc, end) (end just after a newline). */
static int fast_region(ml_scanner *s, size_t end, ml_emit_fn fn, void *ud)
{
	const unsigned char *b = s->hist + s->hproc, *e = s->hist + end, *pos = b;
	const unsigned char *next[8];
	size_t nn = s->nn < 8 ? s->nn : 8;
	int rc = 0;
	s->st.lines += mls_count_lines(b, e);
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
				x = mls_needle_find(&s->nd[i], pos, e);
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
		if ((rc = mls_process_line(s, (const char *)ms, (size_t)(le - ms), 1, fn, ud)) != 0)
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

int mls_fast_feed(ml_scanner *s, const char *buf, size_t len, ml_emit_fn fn, void *ud)
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

int mls_fast_mode(ml_scanner *s)
{
	if (s->hist)
		return 1;
	if (s->nn == 0 || s->nn > 8 || s->o.per_line)
		return 0;
	s->hist = malloc(s->hcap + 1);
	return s->hist != NULL;
}

int ml_scanner_read(ml_scanner *s, int fd, size_t max, ml_emit_fn fn, void *ud, int *rc)
{
	char tmp[65536];
	*rc = 0;
	if (!mls_fast_mode(s) || s->hskip) {
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
			*rc = mls_fast_feed(s, tmp, (size_t)n, fn, ud);
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

int mls_fast_flush(ml_scanner *s, ml_emit_fn fn, void *ud)
{
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

int mls_lookback_read(ml_scanner *s, ml_str key, int family, ml_emit_fn fn, void *ud)
{
	int rc;
	if (s->cur) /* called while a region is processed: from the current line */
		return mls_lookback(s, key, family, (size_t)-1, fn, ud);
	s->cur = s->hist + s->hproc;
	rc = mls_lookback(s, key, family, (size_t)-1, fn, ud);
	s->cur = NULL;
	return rc;
}
