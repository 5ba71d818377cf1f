/* maillog_simd.c: the scanner's vectorised searches: a needle (case-insensitive) or a key
 * (exact) over a buffer, the end of a syslog tag, and newline counting. SSE2 where the compiler
 * has it, AVX2 for the needle search when the CPU has it (runtime check; RUNBOOK_MAILLOG_SIMD=sse2
 * forces the SSE2 loop, for its tests), plain loops otherwise.
 * Depends on: maillog_scan.h, libc, <emmintrin.h>/<immintrin.h>. */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#include "maillog_scan.h"

/* First occurrence of key in [b, e) (exact bytes), or NULL. */
const unsigned char *mls_key_find(ml_str key, const unsigned char *b, const unsigned char *e)
{
	needle nd = { (unsigned char *)(uintptr_t)key.p, key.n, 0, 1, 1 };
	return key.n ? mls_needle_find(&nd, b, e) : NULL;
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

const unsigned char *mls_needle_find(const needle *nd, const unsigned char *b, const unsigned char *e)
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
const unsigned char *mls_find_tag_end(const unsigned char *p, const unsigned char *e)
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

/* Newlines in [p, e). */
size_t mls_count_lines(const unsigned char *p, const unsigned char *e)
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
