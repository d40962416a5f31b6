/* SPDX-License-Identifier: MIT */
/* kernels.c - see kernels.h. */
#include "compute/kernels.h"
#include "compute/quant.h"
#include "base/util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---- portable scalar versions ---------------------------------------------------- */

static inline float load_scalar(mh_dtype dt, const void *w, int64_t i)
{
	switch (dt) {
	case MH_F32: return ((const float *)w)[i];
	case MH_F16: return mh_f16_to_f32(((const uint16_t *)w)[i]);
	case MH_BF16: return mh_bf16_to_f32(((const uint16_t *)w)[i]);
	default: return 0.0f;
	}
}

/* --precise: quantized weights multiply F32 activations (kern_set_precise) */
static _Atomic int precise;

/* Quantized rows: each row against each token's x, the row read from
 * memory for the first token and from L1 for the rest; a token's sum is
 * the same whatever the others (quant.h gives the order). */
static void rows_quant_scalar(mh_dtype dt, float *const *y, const float *const *x, int n,
			      const void *w, int64_t r0, int64_t r1, int64_t cols)
{
	size_t rb = mh_row_bytes(dt, cols);
	int exact = atomic_load_explicit(&precise, memory_order_relaxed);
	for (int64_t r = r0; r < r1; r++) {
		const char *wr = (const char *)w + r * rb;
		for (int t = 0; t < n; t++)
			y[t][r] = exact ? quant_dot_f32_ref(dt, wr, x[t], cols)
					: quant_dot_ref(dt, wr, x[t], cols);
	}
}

/* Each token's sum in column order, as for one token alone; the row is
 * read for the first and from cache for the others. */
static void rows_scalar(mh_dtype dt, float *const *y, const float *const *x, int n,
			const void *w, int64_t r0, int64_t r1, int64_t cols)
{
	if (mh_dtype_is_quant(dt)) {
		rows_quant_scalar(dt, y, x, n, w, r0, r1, cols);
		return;
	}
	for (int64_t r = r0; r < r1; r++)
		for (int t = 0; t < n; t++) {
			float s = 0;
			for (int64_t i = 0; i < cols; i++)
				s += load_scalar(dt, w, r * cols + i) * x[t][i];
			y[t][r] = s;
		}
}

static void to_f32_scalar(mh_dtype dt, float *dst, const void *src, int64_t n)
{
	if (mh_dtype_is_quant(dt)) {
		dequant_row(dt, dst, src, n);
		return;
	}
	if (dt == MH_F32) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (int64_t i = 0; i < n; i++)
		dst[i] = load_scalar(dt, src, i);
}

static void dots_scalar(float *s, const float *q, const float *k, int64_t ldk, int64_t n,
			int64_t hd, float scale)
{
	for (int64_t i = 0; i < n; i++) {
		float a = 0;
		for (int64_t d = 0; d < hd; d++)
			a += q[d] * k[i * ldk + d];
		s[i] = a * scale;
	}
}

static void wsum_scalar(float *o, const float *w, const float *v, int64_t ldv, int64_t n,
			int64_t hd)
{
	for (int64_t i = 0; i < n; i++)
		for (int64_t d = 0; d < hd; d++)
			o[d] += w[i] * v[i * ldv + d];
}

static float exp_sum_scalar(float *x, int64_t n, float m)
{
	float sum = 0;
	for (int64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		sum += x[i];
	}
	return sum;
}

static double sum_scalar(const float *x, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += x[i];
	return s;
}

static double sumsq_scalar(const float *x, int64_t n, double c)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += (x[i] - c) * (x[i] - c);
	return s;
}

/* p need not be aligned: bench reads tensors wherever the file put them. */
static inline uint64_t word_at(const char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t read_scalar(const void *p, int64_t n)
{
	const char *c = p;
	uint64_t s[4] = { 0 };
	int64_t i = 0, words = n / 8;
	for (; i + 4 <= words; i += 4)
		for (int k = 0; k < 4; k++)
			s[k] += word_at(c + 8 * (i + k));
	for (; i < words; i++)
		s[0] += word_at(c + 8 * i);
	return s[0] + s[1] + s[2] + s[3];
}

static uint64_t read_any_scalar(const void *p, int64_t n, int way)
{
	(void)way;
	return read_scalar(p, n);
}

static void silu_mul_scalar(float *gate, const float *up, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i];
		gate[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

/* kern_flops: twelve independent multiply-add chains */
static double flops_scalar(int64_t iters)
{
	volatile float seed = 0.999f;
	float a = seed, c[12];
	for (int i = 0; i < 12; i++)
		c[i] = (float)i * 0.001f;
	for (int64_t k = 0; k < iters; k++)
		for (int i = 0; i < 12; i++)
			c[i] = c[i] * a + 0.0001f;
	for (int i = 1; i < 12; i++)
		c[0] += c[i];
	seed = c[0];
	return (double)iters * 12 * 2;
}

/* The largest non-NaN value, -INFINITY if none. */
static float max_scalar(const float *x, int64_t n)
{
	float m = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		if (x[i] > m)
			m = x[i];
	return m;
}

/* ---- AVX2 / FMA / F16C -------------------------------------------------------------- */

#ifdef HAVE_X86_KERNELS
/* One-token decode prefetches the weights this many bytes ahead into L2
 * (T1), not L1 (several tokens prefetch one block of ops.c's walk ahead:
 * rows_dt): measured against a plain read of the same bytes, the T0 hint kept
 * F16 at 74% and F32 at 94% of it, T1 at 85% and 102% (lines fetched to L1
 * that early are evicted by the stream before use). */
#ifndef PF_DIST
#define PF_DIST 8192
#endif
#define PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define TGT __attribute__((target("avx2,fma,f16c")))
#define TGT_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

static TGT_INLINE __m256 ld8(mh_dtype dt, const void *w, int64_t i)
{
	if (dt == MH_F32)
		return _mm256_loadu_ps((const float *)w + i);
	__m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
	if (dt == MH_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* One weight as a float: F16 by the F16C instruction (the portable
 * conversion costs tens of cycles, which a row's peeled head and tail
 * paid on every row). */
static TGT_INLINE float ld1(mh_dtype dt, const void *w, int64_t i)
{
	if (dt == MH_F16)
		return _cvtsh_ss(((const uint16_t *)w)[i]);
	return load_scalar(dt, w, i);
}

/* acc + the products of weights [off, off + h) by x[0, h), h <= 16, h
 * < cols, cols a multiple of 8: a row's peeled head (peel()) in vectors,
 * the last one masked (the product, so that no Inf or NaN of a lane left
 * out can leak in). */
static TGT_INLINE __m256 head_fma(mh_dtype dt, const void *w, int64_t off, const float *x,
				  int64_t h, __m256 acc)
{
	int64_t i = 0;
	if (h >= 8) {
		acc = _mm256_fmadd_ps(ld8(dt, w, off), _mm256_loadu_ps(x), acc);
		i = 8;
	}
	if (i < h) {
		__m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
			_mm256_set1_epi32((int)(h - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
		__m256 p = _mm256_mul_ps(ld8(dt, w, off + i), _mm256_loadu_ps(x + i));
		acc = _mm256_add_ps(acc, _mm256_and_ps(p, m));
	}
	return acc;
}

static TGT_INLINE float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* BF16 for one token, sixteen weights per load: a 32-bit lane holds an
 * even weight in its low half and the next odd one in its high half, so a
 * shift left by 16 gives the even weights as floats and masking off the
 * low half the odd ones.  x comes reordered to match, once per matmul
 * (kern_prepare_x, permute_eo); per weight this is half the instructions
 * of widening each half separately, which lets the loop keep up with a
 * fast memory (0.90 of a plain read of the same bytes, against 0.84).
 * Reordering per range of rows instead cost another 8 points.  The first h
 * entries (peel()) and the tail stay in order. */
static TGT void permute_eo(float *xp, const float *x, int64_t h, int64_t cols)
{
	const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
	int64_t i = 0;
	for (; i < h; i++)
		xp[i] = x[i];
	for (; i + 16 <= cols; i += 16) {
		__m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + i), idx);
		__m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + i + 8), idx);
		_mm256_storeu_ps(xp + i, _mm256_permute2f128_ps(a, b, 0x20));     /* evens */
		_mm256_storeu_ps(xp + i + 8, _mm256_permute2f128_ps(a, b, 0x31)); /* odds */
	}
	for (; i < cols; i++) /* the tail stays in order */
		xp[i] = x[i];
}

static TGT_INLINE __m256 bf16_even(__m256i v)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static TGT_INLINE __m256 bf16_odd(__m256i v)
{
	return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

/* Weights at the start of each row that the one-token kernels take apart
 * from their main loop (head_fma), up to the next 32-byte boundary after
 * the row's start: 8 to 32 bytes.  0 unless every row starts at the same
 * offset from a boundary (rows of a multiple of 32 bytes).
 *
 * Two measured reasons, Qwen2.5-0.5B shape, mmprobe and bench (DEVELOPERS.md):
 * Hugging Face files align tensors to 8 bytes only, and main-loop loads
 * that straddle cache lines decoded such a checkpoint 4-14% slower than the
 * same weights 64-byte aligned; and on aligned rows, taking their first 32
 * bytes apart made the main loop read F32 and F16 weights 10-25% faster
 * (mmprobe: 86-90% -> 107-112% of a plain read), for reasons the VM's
 * missing performance counters did not let us find. */
static int64_t peel(mh_dtype dt, const void *w, int64_t cols)
{
	int64_t es = dt == MH_F32 ? 4 : 2;
	if (cols * es % 32 != 0 || (uintptr_t)w % (uintptr_t)es != 0)
		return 0;
	int64_t h = (int64_t)(32 - (uintptr_t)w % 32) / es;
	return h < cols ? h : 0;
}

/* ---- the float matmul loop -------------------------------------------------------- *
 *
 * The order of a row's sum, the same for one token and for many (batched
 * decode must give a token the bits of its one-token call): one 8-lane
 * accumulator per row and token, started with the head (peel()), then one
 * FMA per 8 weights in column order (BF16: per 16, the even weights then
 * the odd ones, x reordered to match by permute_eo; then at most one
 * vector of 8 in order), then the horizontal sum (hsum8) and the last
 * cols % 8 products in order.
 *
 * A row's single chain of FMAs (latency 4) is interleaved with other rows'
 * and tokens': one token takes four rows at a time (four chains, an FMA a
 * cycle, well above what memory delivers: decode is bound by bandwidth),
 * several tokens go three rows by three tokens (nine chains, each loaded
 * weight vector used by three tokens and each loaded x vector by three
 * rows).  Batched decode is bound by the core: on this Zen 3 VM a core
 * loads about 1.3 vectors a cycle, and this loop makes 1.5 FMAs per load
 * (60-75 GFLOP/s a core in a synthetic test, against 30-40 for the four
 * accumulators per row and token that the one-token loop had before:
 * sixteen loads per twelve FMAs, as no register was left to reuse x).
 *
 * Tried before and dropped with that loop (docs/performance.md): 4 KiB
 * segments with a step taken apart, and a step apart once per 4 KiB of
 * 16-bit rows, which each made a single stream read a few points faster. */
#define MAX_R 4 /* rows at once */
#define MAX_T 3 /* tokens at once */
/* rows at once for one token: 1, 2 and 4 measured (mmprobe -n 1, loaded
 * machine, two rounds): BF16 68-71%, 83%, 79-84% of the read; F32 74-88%,
 * 78-94%, 89%.  The one-token loop before this one read 68% and 71-75%. */
#ifndef ONE_ROWS
#define ONE_ROWS 4
#endif

/* rows r .. r + R of w against the tokens x[0..T): y[t][r + i] (R and T
 * constants after inlining, the loops over them unrolled, or gcc keeps
 * the accumulators on the stack), prefetching each row's line pf bytes
 * ahead every 64 bytes (pf 0: none) */
static TGT_INLINE void rows_rt(mh_dtype dt, const void *w, int64_t r, int64_t cols,
			       const float *const *x, float *const *y, int R, int T, int64_t h,
			       int64_t pf)
{
	const int64_t es = dt == MH_F32 ? 4 : 2;
	const char *wb = (const char *)w + r * cols * es;
	__m256 a[MAX_R][MAX_T];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			a[i][t] = head_fma(dt, w, (r + i) * cols, x[t], h, _mm256_setzero_ps());
	int64_t k = h;
	if (dt == MH_BF16) {
		const uint16_t *wr = (const uint16_t *)w + r * cols;
		for (; k + 16 <= cols; k += 16) {
			__m256i v[MAX_R];
			__m256 xv[MAX_T];
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				if (pf && ((k - h) & 31) == 0)
					PF((const char *)(wr + i * cols + k) + pf);
				v[i] = _mm256_loadu_si256((const __m256i *)(wr + i * cols + k));
			}
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				xv[t] = _mm256_loadu_ps(x[t] + k);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				__m256 e = bf16_even(v[i]);
#pragma GCC unroll 3
				for (int t = 0; t < T; t++)
					a[i][t] = _mm256_fmadd_ps(e, xv[t], a[i][t]);
			}
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				xv[t] = _mm256_loadu_ps(x[t] + k + 8);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				__m256 o = bf16_odd(v[i]);
#pragma GCC unroll 3
				for (int t = 0; t < T; t++)
					a[i][t] = _mm256_fmadd_ps(o, xv[t], a[i][t]);
			}
		}
	}
	for (; k + 8 <= cols; k += 8) {
		__m256 xv[MAX_T];
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			xv[t] = _mm256_loadu_ps(x[t] + k);
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			if (pf && ((k - h) * es & 63) == 0)
				PF(wb + (i * cols + k) * es + pf);
			__m256 v = ld8(dt, w, (r + i) * cols + k);
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				a[i][t] = _mm256_fmadd_ps(v, xv[t], a[i][t]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 3
		for (int t = 0; t < T; t++) {
			float s = hsum8(a[i][t]);
			for (int64_t c = k; c < cols; c++)
				s += ld1(dt, w, (r + i) * cols + c) * x[t][c];
			y[t][r + i] = s;
		}
}

/* rows [r0, r1) against T tokens: R rows at a time, then two, then one */
static TGT_INLINE void rows_t(mh_dtype dt, const void *w, int64_t r0, int64_t r1, int64_t cols,
			      const float *const *x, float *const *y, int R, int T, int64_t h,
			      int64_t pf)
{
	int64_t r = r0;
	for (; r + R <= r1; r += R)
		rows_rt(dt, w, r, cols, x, y, R, T, h, pf);
	if (R > 2 && r + 2 <= r1) {
		rows_rt(dt, w, r, cols, x, y, 2, T, h, pf);
		r += 2;
	}
	for (; r < r1; r++)
		rows_rt(dt, w, r, cols, x, y, 1, T, h, pf);
}

static TGT_INLINE void rows_dt(mh_dtype dt, float *const *y, const float *const *x, int n,
			       const void *w, int64_t r0, int64_t r1, int64_t cols)
{
	int64_t h = peel(dt, w, cols);
	if (n == 1) {
		rows_t(dt, w, r0, r1, cols, x, y, ONE_ROWS, 1, h, PF_DIST);
		return;
	}
	/* The first group of tokens prefetches the rows after r1 as it reads
	 * r0..r1 (the next block of ops.c's walk); the others find the rows
	 * in cache. */
	int64_t pf = (r1 - r0) * cols * (dt == MH_F32 ? 4 : 2);
	/* groups of three tokens, the last two of two where three would leave one */
	for (int t0 = 0; t0 < n;) {
		int g = n - t0 > MAX_T ? (n - t0 == MAX_T + 1 ? 2 : MAX_T) : n - t0;
		if (g == 3)
			rows_t(dt, w, r0, r1, cols, x + t0, y + t0, 3, 3, h, pf);
		else if (g == 2)
			rows_t(dt, w, r0, r1, cols, x + t0, y + t0, 3, 2, h, pf);
		else
			rows_t(dt, w, r0, r1, cols, x + t0, y + t0, 4, 1, h, pf);
		t0 += g;
		pf = 0;
	}
}

/* ---- Q8_0 / Q4_0 ------------------------------------------------------------------ */

static TGT_INLINE __m256i q4_nibbles(const mh_block_q4_0 *b)
{
	__m128i q = _mm_loadu_si128((const __m128i *)b->qs);
	return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
}

#define QDOT_T 4

/* acc[t] + block b's products with token t's 8-bit x times their scales,
 * for T tokens: the block's weights are loaded (and Q8_0's |w| made) once.
 * The products of a block are eight int32 sums of four (exact).  Q8_0:
 * vpmaddubsw needs an unsigned operand, so |w| times x with w's sign
 * (|-128| is 128 unsigned: a foreign file's -128 is fine); Q4_0: the
 * unsigned nibbles times x, less 8 times x's pair sums (vpmaddubsw of 8
 * and x). */
static TGT_INLINE void qstep_t(mh_dtype dt, const char *wb, int64_t b, const int8_t *const *xq,
			       const float *const *xd, __m256 *acc, int T)
{
	__m256i u, s = _mm256_setzero_si256();
	float dw;
	if (dt == MH_Q8_0) {
		const mh_block_q8_0 *bl = (const mh_block_q8_0 *)wb + b;
		s = _mm256_loadu_si256((const __m256i *)bl->qs);
		u = _mm256_sign_epi8(s, s);
		dw = _cvtsh_ss(bl->d);
	} else {
		const mh_block_q4_0 *bl = (const mh_block_q4_0 *)wb + b;
		u = q4_nibbles(bl);
		dw = _cvtsh_ss(bl->d);
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++) {
		__m256i x = _mm256_load_si256((const __m256i *)(xq[t] + b * MH_QBLOCK)), p;
		if (dt == MH_Q8_0)
			p = _mm256_maddubs_epi16(u, _mm256_sign_epi8(x, s));
		else
			p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, x),
					     _mm256_maddubs_epi16(_mm256_set1_epi8(8), x));
		acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[t][b]),
					 _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1))),
					 acc[t]);
	}
}

/* One row against T <= QDOT_T tokens' 8-bit x (quant_x), each in
 * quant_dot_ref's order: two accumulators a token, even and odd blocks.
 * A token's steps do not depend on T, so its bits are those of its
 * one-token call (T a constant after inlining, or gcc keeps the
 * accumulators on the stack). */
static TGT_INLINE void qdot_t_avx2(mh_dtype dt, const void *w, const float *const *qx,
				   int64_t cols, float *out, int T)
{
	const int64_t nb = cols / MH_QBLOCK;
	const size_t bs = dt == MH_Q8_0 ? sizeof(mh_block_q8_0) : sizeof(mh_block_q4_0);
	const char *wb = w;
	const int8_t *xq[QDOT_T];
	const float *xd[QDOT_T];
	__m256 a0[QDOT_T], a1[QDOT_T];
#pragma GCC unroll 4
	for (int t = 0; t < T; t++) {
		xq[t] = qx_q(qx[t]);
		xd[t] = qx_d(qx[t], cols);
		a0[t] = a1[t] = _mm256_setzero_ps();
	}
	int64_t b = 0;
	for (; b + 2 <= nb; b += 2) {
		PF(wb + (size_t)b * bs + PF_DIST);
		qstep_t(dt, wb, b, xq, xd, a0, T);
		qstep_t(dt, wb, b + 1, xq, xd, a1, T);
	}
	if (b < nb)
		qstep_t(dt, wb, b, xq, xd, a0, T);
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		out[t] = hsum8(_mm256_add_ps(a0[t], a1[t]));
}

/* A block's 32 weights as floats (scale * value), by eight. */
static TGT_INLINE void block_f32(mh_dtype dt, const void *b, __m256 *w)
{
	__m256 d;
	__m256i q;
	if (dt == MH_Q8_0) {
		d = _mm256_set1_ps(_cvtsh_ss(((const mh_block_q8_0 *)b)->d));
		q = _mm256_loadu_si256((const __m256i *)((const mh_block_q8_0 *)b)->qs);
	} else {
		d = _mm256_set1_ps(_cvtsh_ss(((const mh_block_q4_0 *)b)->d));
		q = _mm256_sub_epi8(q4_nibbles(b), _mm256_set1_epi8(8));
	}
	__m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
	w[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d);
	w[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d);
	w[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d);
	w[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d);
}

/* --precise: against F32 x, in quant_dot_f32_ref's order. */
static TGT_INLINE float qdot_f32_avx2(mh_dtype dt, const void *w, const float *x, int64_t cols)
{
	const size_t bs = dt == MH_Q8_0 ? sizeof(mh_block_q8_0) : sizeof(mh_block_q4_0);
	__m256 a[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
			_mm256_setzero_ps() };
	for (int64_t b = 0; b < cols / MH_QBLOCK; b++) {
		__m256 wv[4];
		block_f32(dt, (const char *)w + (size_t)b * bs, wv);
#pragma GCC unroll 4
		for (int k = 0; k < 4; k++)
			a[k] = _mm256_fmadd_ps(wv[k], _mm256_loadu_ps(x + b * MH_QBLOCK + 8 * k), a[k]);
	}
	return hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

static TGT_INLINE void rows_quant_dt(mh_dtype dt, float *const *y, const float *const *x, int n,
				     const void *w, int64_t r0, int64_t r1, int64_t cols)
{
	size_t rb = mh_row_bytes(dt, cols);
	if (atomic_load_explicit(&precise, memory_order_relaxed)) {
		for (int64_t r = r0; r < r1; r++)
			for (int t = 0; t < n; t++)
				y[t][r] = qdot_f32_avx2(dt, (const char *)w + r * rb, x[t], cols);
		return;
	}
	for (int64_t r = r0; r < r1; r++) {
		const char *wr = (const char *)w + r * rb;
		float o[QDOT_T];
		for (int t = 0; t < n; t += QDOT_T) {
			int m = n - t < QDOT_T ? n - t : QDOT_T;
			switch (m) { /* constant T: the accumulators stay in registers */
			case 4: qdot_t_avx2(dt, wr, x + t, cols, o, 4); break;
			case 3: qdot_t_avx2(dt, wr, x + t, cols, o, 3); break;
			case 2: qdot_t_avx2(dt, wr, x + t, cols, o, 2); break;
			default: qdot_t_avx2(dt, wr, x + t, cols, o, 1);
			}
			for (int k = 0; k < m; k++)
				y[t + k][r] = o[k];
		}
	}
}

static TGT void dequant_avx2(mh_dtype dt, float *dst, const void *src, int64_t n)
{
	const size_t bs = dt == MH_Q8_0 ? sizeof(mh_block_q8_0) : sizeof(mh_block_q4_0);
	for (int64_t b = 0; b < n / MH_QBLOCK; b++) {
		__m256 wv[4];
		block_f32(dt, (const char *)src + (size_t)b * bs, wv);
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(dst + b * MH_QBLOCK + 8 * k, wv[k]);
	}
}

/* |x| of eight floats */
static TGT_INLINE __m256 abs8(__m256 x)
{
	return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

/* The largest |x| of a block of 32, NaNs skipped (max_ps returns its
 * second operand when either is NaN), as the scalar loops find it. */
static TGT_INLINE float block_amax(const float *x)
{
	__m256 m = _mm256_setzero_ps();
	for (int k = 0; k < 4; k++)
		m = _mm256_max_ps(abs8(_mm256_loadu_ps(x + 8 * k)), m);
	__m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	h = _mm_max_ps(_mm_movehl_ps(h, h), h);
	h = _mm_max_ss(_mm_movehdup_ps(h), h);
	return _mm_cvtss_f32(h);
}

/* quant_row_q8_0's bytes: roundf (half away from zero) as trunc(v +
 * copysign(0.49999997, v)), exact for |v| < 2^22; NaN to 0. */
static TGT void quant_q8_0_avx2(void *dst, const float *x, int64_t n)
{
	mh_block_q8_0 *y = dst;
	const __m256 half = _mm256_set1_ps(0.49999997f), sign = _mm256_set1_ps(-0.0f);
	const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
	for (int64_t b = 0; b < n / MH_QBLOCK; b++, x += MH_QBLOCK) {
		float amax = block_amax(x);
		float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
		y[b].d = mh_f32_to_f16(d);
		__m256 vid = _mm256_set1_ps(id);
		__m256i q[4];
		for (int k = 0; k < 4; k++) {
			__m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
			__m256 ok = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
			v = _mm256_add_ps(v, _mm256_or_ps(half, _mm256_and_ps(v, sign)));
			v = _mm256_min_ps(_mm256_max_ps(_mm256_round_ps(v, _MM_FROUND_TO_ZERO |
									_MM_FROUND_NO_EXC), lo), hi);
			q[k] = _mm256_cvttps_epi32(_mm256_and_ps(v, ok));
		}
		__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
					       _mm256_packs_epi32(q[2], q[3]));
		/* the packs work per 128-bit half: 0-3 8-11 16-19 24-27 | 4-7 ... */
		p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
		_mm256_storeu_si256((__m256i *)y[b].qs, p);
	}
}

/* quant_row_q4_0's bytes: the first value of largest magnitude, then
 * (int)(x * id + 8.5) cut to 0..15 (NaN to 0, as cvtt's INT_MIN is cut). */
static TGT void quant_q4_0_avx2(void *dst, const float *x, int64_t n)
{
	mh_block_q4_0 *y = dst;
	const __m256 off = _mm256_set1_ps(8.5f);
	for (int64_t b = 0; b < n / MH_QBLOCK; b++, x += MH_QBLOCK) {
		float amax = block_amax(x), max = 0;
		for (int j = 0; amax > 0 && j < MH_QBLOCK; j++)
			if (fabsf(x[j]) == amax) {
				max = x[j];
				break;
			}
		float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
		y[b].d = mh_f32_to_f16(d);
		__m256 vid = _mm256_set1_ps(id);
		__m256i q[4];
		for (int k = 0; k < 4; k++) {
			__m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid), off);
			q[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(v),
								 _mm256_setzero_si256()),
						_mm256_set1_epi32(15));
		}
		/* elements 0-15 (q[0], q[1]) low nibbles, 16-31 (q[2], q[3]) high */
		__m256i a = _mm256_packs_epi32(q[0], q[1]), c = _mm256_packs_epi32(q[2], q[3]);
		a = _mm256_permute4x64_epi64(a, 0xd8); /* 16-bit values 0..15 in order */
		c = _mm256_permute4x64_epi64(c, 0xd8);
		__m256i v16 = _mm256_or_si256(a, _mm256_slli_epi16(c, 4));
		__m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(v16),
						 _mm256_extracti128_si256(v16, 1));
		_mm_storeu_si128((__m128i *)y[b].qs, bytes);
	}
}

static TGT void quant_row_avx2(mh_dtype dt, void *dst, const float *x, int64_t n)
{
	if (dt == MH_Q8_0)
		quant_q8_0_avx2(dst, x, n);
	else
		quant_q4_0_avx2(dst, x, n);
}

/* quant_x's layout and values: round half to even is the vector round's
 * own; a block with a NaN or infinity gets a NaN scale and zeros. */
static TGT void quant_x_avx2(void *dst, const float *x, int64_t cols)
{
	int8_t *q = dst;
	float *d = (float *)(q + cols);
	int32_t *sum = (int32_t *)(d + cols / 32);
	const __m256 inf = _mm256_set1_ps(INFINITY);
	for (int64_t b = 0; b < cols / MH_QBLOCK; b++) {
		const float *xb = x + b * MH_QBLOCK;
		__m256 m = _mm256_setzero_ps();
		int bad = 0;
		for (int k = 0; k < 4; k++) {
			__m256 a = abs8(_mm256_loadu_ps(xb + 8 * k));
			/* not below infinity: infinite or NaN */
			bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
			m = _mm256_max_ps(a, m);
		}
		__m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
		h = _mm_max_ps(_mm_movehl_ps(h, h), h);
		h = _mm_max_ss(_mm_movehdup_ps(h), h);
		float amax = _mm_cvtss_f32(h);
		if (bad) {
			memset(q + b * MH_QBLOCK, 0, MH_QBLOCK);
			d[b] = NAN;
			sum[b] = 0;
			continue;
		}
		float s = amax / 127, id = s != 0 ? 1.0f / s : 0.0f;
		__m256 vid = _mm256_set1_ps(id);
		__m256i v[4], t = _mm256_setzero_si256();
		for (int k = 0; k < 4; k++) {
			__m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), vid),
						   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)),
					  _mm256_set1_ps(127.0f));
			v[k] = _mm256_cvtps_epi32(r);
			t = _mm256_add_epi32(t, v[k]);
		}
		__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]),
					       _mm256_packs_epi32(v[2], v[3]));
		p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
		_mm256_store_si256((__m256i *)(q + b * MH_QBLOCK), p);
		__m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
		t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
		d[b] = s;
		sum[b] = _mm_cvtsi128_si32(t4);
	}
}

static TGT void rows_avx2(mh_dtype dt, float *const *y, const float *const *x, int n,
			  const void *w, int64_t r0, int64_t r1, int64_t cols)
{
	switch (dt) {
	case MH_F32: rows_dt(MH_F32, y, x, n, w, r0, r1, cols); break;
	case MH_F16: rows_dt(MH_F16, y, x, n, w, r0, r1, cols); break;
	case MH_BF16: rows_dt(MH_BF16, y, x, n, w, r0, r1, cols); break;
	case MH_Q8_0: rows_quant_dt(MH_Q8_0, y, x, n, w, r0, r1, cols); break;
	case MH_Q4_0: rows_quant_dt(MH_Q4_0, y, x, n, w, r0, r1, cols); break;
	default: rows_scalar(dt, y, x, n, w, r0, r1, cols);
	}
}

static TGT void to_f32_avx2(mh_dtype dt, float *dst, const void *src, int64_t n)
{
	if (mh_dtype_is_quant(dt)) {
		dequant_avx2(dt, dst, src, n);
		return;
	}
	int64_t i = 0;
	if (dt == MH_F16) {
		for (; i + 16 <= n; i += 16) {
			_mm256_storeu_ps(dst + i, ld8(MH_F16, src, i));
			_mm256_storeu_ps(dst + i + 8, ld8(MH_F16, src, i + 8));
		}
	} else if (dt == MH_BF16) {
		for (; i + 16 <= n; i += 16) {
			_mm256_storeu_ps(dst + i, ld8(MH_BF16, src, i));
			_mm256_storeu_ps(dst + i + 8, ld8(MH_BF16, src, i + 8));
		}
	}
	to_f32_scalar(dt, dst + i, (const char *)src + i * mh_dtype_size(dt), n - i);
}

/* e^x for eight floats: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by
 * Cephes' degree-6 polynomial, 2^n put straight into the exponent; within
 * 2 ulp of expf.  x is clamped to where e^x is a normal float, so the
 * extremes give the largest or smallest normal instead of inf or 0 (which
 * changes nothing in 1 + e^x); NaN stays NaN. */
static TGT_INLINE __m256 exp8(__m256 x)
{
	x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f),
			  _mm256_max_ps(_mm256_set1_ps(-87.3365447504f), x));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	/* n is in [-126, 128) here; 2^127 * p for n = 128 is done as 2 * 2^127 */
	__m256i e = _mm256_cvtps_epi32(n);
	__m256i big = _mm256_cmpgt_epi32(e, _mm256_set1_epi32(127));
	e = _mm256_sub_epi32(e, _mm256_and_si256(big, _mm256_set1_epi32(1)));
	p = _mm256_mul_ps(p, _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(2.0f),
					      _mm256_castsi256_ps(big)));
	__m256 scale = _mm256_castsi256_ps(
		_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
	return _mm256_mul_ps(p, scale);
}

/* Attention for one query against n keys: four keys per pass, their four
 * accumulators reduced together, so the horizontal sums cost a quarter. */
static TGT void dots_avx2(float *s, const float *q, const float *k, int64_t ldk, int64_t n,
			  int64_t hd, float scale)
{
	int64_t i = 0, hd8 = hd & ~(int64_t)7;
	for (; i + 4 <= n; i += 4) {
		const float *k0 = k + i * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
		for (int64_t d = 0; d < hd8; d += 8) {
			__m256 qv = _mm256_loadu_ps(q + d);
			a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
			a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
			a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
			a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
		}
		/* per 128-bit half: [sum a0, sum a1, sum a2, sum a3]; add halves */
		__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
		float r[4];
		_mm_storeu_ps(r, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
		for (int64_t d = hd8; d < hd; d++) {
			r[0] += q[d] * k0[d];
			r[1] += q[d] * k1[d];
			r[2] += q[d] * k2[d];
			r[3] += q[d] * k3[d];
		}
		for (int t = 0; t < 4; t++)
			s[i + t] = r[t] * scale;
	}
	for (; i < n; i++) {
		const float *kr = k + i * ldk;
		__m256 a = _mm256_setzero_ps();
		for (int64_t d = 0; d < hd8; d += 8)
			a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kr + d), a);
		float r = hsum8(a);
		for (int64_t d = hd8; d < hd; d++)
			r += q[d] * kr[d];
		s[i] = r * scale;
	}
}

/* o += sum of w[i] * row i of v: o stays in registers, 64 floats at a
 * time, over all n rows. */
static TGT void wsum_avx2(float *o, const float *w, const float *v, int64_t ldv, int64_t n,
			  int64_t hd)
{
	int64_t d0 = 0;
	for (; d0 + 64 <= hd; d0 += 64) {
		/* the loops over j unrolled, or gcc -O2 keeps a[] on the stack
		 * and every FMA waits on a store and a load */
		__m256 a[8];
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
			a[j] = _mm256_loadu_ps(o + d0 + 8 * j);
		for (int64_t i = 0; i < n; i++) {
			__m256 wi = _mm256_set1_ps(w[i]);
			const float *vr = v + i * ldv + d0;
#pragma GCC unroll 8
			for (int j = 0; j < 8; j++)
				a[j] = _mm256_fmadd_ps(wi, _mm256_loadu_ps(vr + 8 * j), a[j]);
		}
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
			_mm256_storeu_ps(o + d0 + 8 * j, a[j]);
	}
	for (; d0 + 8 <= hd; d0 += 8) {
		__m256 a = _mm256_loadu_ps(o + d0);
		for (int64_t i = 0; i < n; i++)
			a = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), _mm256_loadu_ps(v + i * ldv + d0), a);
		_mm256_storeu_ps(o + d0, a);
	}
	if (d0 < hd)
		for (int64_t i = 0; i < n; i++)
			for (int64_t d = d0; d < hd; d++)
				o[d] += w[i] * v[i * ldv + d];
}

static TGT float exp_sum_avx2(float *x, int64_t n, float m)
{
	__m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
		_mm256_storeu_ps(x + i, e);
		acc = _mm256_add_ps(acc, e);
	}
	return hsum8(acc) + exp_sum_scalar(x + i, n - i, m);
}

static TGT float max_avx2(const float *x, int64_t n)
{
	/* max_ps returns its second operand when either is NaN: NaNs in x are
	 * skipped */
	__m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
		m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
	}
	float o[8], m = max_scalar(x + i, n - i);
	_mm256_storeu_ps(o, _mm256_max_ps(m0, m1));
	for (int k = 0; k < 8; k++)
		if (o[k] > m)
			m = o[k];
	return m;
}

static TGT void silu_mul_avx2(float *gate, const float *up, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 g = _mm256_loadu_ps(gate + i);
		__m256 d = _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g)));
		_mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + i)));
	}
	silu_mul_scalar(gate + i, up + i, n - i);
}

/* Norms' sums in double, as the scalar loops: four lanes in each of two
 * accumulators, so the additions do not wait on each other. */
static TGT double sum_avx2(const float *x, int64_t n)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = a0;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
		a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
	}
	double o[4];
	_mm256_storeu_pd(o, _mm256_add_pd(a0, a1));
	return o[0] + o[1] + o[2] + o[3] + sum_scalar(x + i, n - i);
}

static TGT double sumsq_avx2(const float *x, int64_t n, double c)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = a0, vc = _mm256_set1_pd(c);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), vc);
		__m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), vc);
		a0 = _mm256_fmadd_pd(d0, d0, a0);
		a1 = _mm256_fmadd_pd(d1, d1, a1);
	}
	double o[4];
	_mm256_storeu_pd(o, _mm256_add_pd(a0, a1));
	return o[0] + o[1] + o[2] + o[3] + sumsq_scalar(x + i, n - i, c);
}

/* KERN_READ_PIECES(_PF): in 4 KiB pieces, each one's first 32 bytes read
 * before the rest, as the one-token kernels read a row (peel()); _PF with
 * their software prefetch too. */
#define READ_PIECE 4096

static TGT uint64_t read_avx2(const void *p, int64_t n, int way)
{
	const char *c = p;
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	/* from a 32-byte boundary on, as the one-token kernels read (peel());
	 * whole words before it, so the sum is the same */
	uint64_t head = 0;
	if ((uintptr_t)c % 8 == 0) {
		int64_t h = (int64_t)((32 - (uintptr_t)c % 32) % 32);
		h = h < n ? h : n / 8 * 8;
		head = read_scalar(c, h);
		c += h;
		n -= h;
	}
	int64_t i = 0;
	for (; way != KERN_READ_STREAM && i + READ_PIECE <= n; i += READ_PIECE) {
		const char *r = c + i;
		a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)r));
		int64_t k = 32;
		for (; k + 128 <= READ_PIECE; k += 128) {
			if (way == KERN_READ_PIECES_PF) {
				PF(r + k + PF_DIST);
				PF(r + k + PF_DIST + 64);
			}
			a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(r + k)));
			a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(r + k + 32)));
			a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(r + k + 64)));
			a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(r + k + 96)));
		}
		for (; k < READ_PIECE; k += 32)
			a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(r + k)));
	}
	for (; i + 128 <= n; i += 128) {
		a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(c + i)));
		a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(c + i + 32)));
		a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(c + i + 64)));
		a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(c + i + 96)));
	}
	uint64_t o[4];
	_mm256_storeu_si256((__m256i *)o,
			    _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
	return head + o[0] + o[1] + o[2] + o[3] + read_scalar(c + i, n - i);
}
/* kern_gemm_pack: eight rows by eight columns at a time through an 8x8
 * transpose in registers; a block with rows past nr, and the last kc % 8
 * columns, one float at a time. */
/* dst[q * NR + r] = row r's element s + q (rows ld apart), r, q < 8 */
static TGT_INLINE void gemm_tr8(mh_dtype dt, float *dst, const void *src, int64_t s, int64_t ld)
{
	__m256 r0 = ld8(dt, src, s), r1 = ld8(dt, src, s + ld);
	__m256 r2 = ld8(dt, src, s + 2 * ld), r3 = ld8(dt, src, s + 3 * ld);
	__m256 r4 = ld8(dt, src, s + 4 * ld), r5 = ld8(dt, src, s + 5 * ld);
	__m256 r6 = ld8(dt, src, s + 6 * ld), r7 = ld8(dt, src, s + 7 * ld);
	__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
	__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
	__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
	__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
	__m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
	__m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
	__m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
	__m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
	_mm256_store_ps(dst + 0 * KERN_GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
	_mm256_store_ps(dst + 1 * KERN_GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
	_mm256_store_ps(dst + 2 * KERN_GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
	_mm256_store_ps(dst + 3 * KERN_GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
	_mm256_store_ps(dst + 4 * KERN_GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
	_mm256_store_ps(dst + 5 * KERN_GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
	_mm256_store_ps(dst + 6 * KERN_GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
	_mm256_store_ps(dst + 7 * KERN_GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
}

static TGT_INLINE void gemm_pack_dt(mh_dtype dt, float *dst, const void *src, int64_t ld, int nr,
				    int kc)
{
	int k8 = kc / 8 * 8;
	for (int j = 0; j < KERN_GEMM_NR; j += 8) {
		if (j + 8 > nr) {
			for (int k = 0; k < k8; k++)
				for (int q = j; q < j + 8; q++)
					dst[(size_t)k * KERN_GEMM_NR + q] =
						q < nr ? ld1(dt, src, q * ld + k) : 0.0f;
			continue;
		}
		for (int k = 0; k < k8; k += 8)
			gemm_tr8(dt, dst + (size_t)k * KERN_GEMM_NR + j, src, j * ld + k, ld);
	}
	for (int k = k8; k < kc; k++)
		for (int j = 0; j < KERN_GEMM_NR; j++)
			dst[(size_t)k * KERN_GEMM_NR + j] = j < nr ? ld1(dt, src, j * ld + k) : 0.0f;
}

/* The block formats: eight rows' blocks dequantized into 1 KiB on the
 * stack, then transposed from there (rows past nr zero). */
static TGT void gemm_pack_quant(mh_dtype dt, float *dst, const void *src, int64_t ld, int nr,
				int kc)
{
	float t[8][MH_QBLOCK] __attribute__((aligned(32)));
	size_t row = mh_row_bytes(dt, ld);
	for (int j = 0; j < KERN_GEMM_NR; j += 8)
		for (int b = 0; b < kc; b += MH_QBLOCK) {
			const char *p = (const char *)src + j * row + mh_row_bytes(dt, b);
			for (int q = 0; q < 8; q++) {
				__m256 w[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),
						_mm256_setzero_ps(), _mm256_setzero_ps() };
				if (j + q < nr)
					block_f32(dt, p + q * row, w);
				for (int v = 0; v < 4; v++)
					_mm256_store_ps(t[q] + 8 * v, w[v]);
			}
			for (int c = 0; c < MH_QBLOCK; c += 8)
				gemm_tr8(MH_F32, dst + (size_t)(b + c) * KERN_GEMM_NR + j, t, c, MH_QBLOCK);
		}
}

static TGT void gemm_pack_avx2(mh_dtype dt, float *dst, const void *src, int64_t ld, int nr,
			       int kc)
{
	if (mh_dtype_is_quant(dt))
		gemm_pack_quant(dt, dst, src, ld, nr, kc);
	else if (dt == MH_BF16)
		gemm_pack_dt(MH_BF16, dst, src, ld, nr, kc);
	else if (dt == MH_F16)
		gemm_pack_dt(MH_F16, dst, src, ld, nr, kc);
	else
		gemm_pack_dt(MH_F32, dst, src, ld, nr, kc);
}

/* kern_flops: as many independent FMA chains as the tile kernel keeps */
static TGT double flops_avx2(int64_t iters)
{
	volatile float seed = 0.999f;
	__m256 a = _mm256_set1_ps(seed), b = _mm256_set1_ps(0.0001f), c[12];
	for (int i = 0; i < 12; i++)
		c[i] = _mm256_set1_ps((float)i * 0.001f);
	for (int64_t k = 0; k < iters; k++) {
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			c[i] = _mm256_fmadd_ps(a, c[i], b);
	}
	for (int i = 1; i < 12; i++)
		c[0] = _mm256_add_ps(c[0], c[i]);
	seed = _mm256_cvtss_f32(c[0]);
	return (double)iters * 12 * 16;
}

/* A tile of mr (a constant where inlined) rows by 16: two accumulators a
 * row (two vectors of weights times a broadcast activation a column),
 * each lane one chain of FMAs in k order.  Spelled out row by row: with
 * an array of accumulators and unrolled loops, clang 14 kept them in
 * memory. */
#define GT_INIT(i)                                                                 \
	__m256 c##i##a = _mm256_setzero_ps(), c##i##b = _mm256_setzero_ps();       \
	if (mr > i && acc) {                                                       \
		c##i##a = _mm256_loadu_ps(y[i]);                                   \
		c##i##b = _mm256_loadu_ps(y[i] + 8);                               \
	}
#define GT_STEP(i)                                                                 \
	if (mr > i) {                                                              \
		__m256 a = _mm256_broadcast_ss(xp + i);                            \
		c##i##a = _mm256_fmadd_ps(a, b0, c##i##a);                         \
		c##i##b = _mm256_fmadd_ps(a, b1, c##i##b);                         \
	}
#define GT_STORE(i)                                                                \
	if (mr > i) {                                                              \
		_mm256_storeu_ps(y[i], c##i##a);                                   \
		_mm256_storeu_ps(y[i] + 8, c##i##b);                               \
	}
static TGT_INLINE void gemm_tile_rows(float *const *y, int mr, int acc, const float *xp,
				      const float *wp, int kc)
{
	GT_INIT(0) GT_INIT(1) GT_INIT(2) GT_INIT(3) GT_INIT(4) GT_INIT(5)
#pragma GCC unroll 2
	for (int k = 0; k < kc; k++) {
		__m256 b0 = _mm256_load_ps(wp), b1 = _mm256_load_ps(wp + 8);
		GT_STEP(0) GT_STEP(1) GT_STEP(2) GT_STEP(3) GT_STEP(4) GT_STEP(5)
		xp += KERN_GEMM_MR;
		wp += KERN_GEMM_NR;
	}
	GT_STORE(0) GT_STORE(1) GT_STORE(2) GT_STORE(3) GT_STORE(4) GT_STORE(5)
}
#undef GT_INIT
#undef GT_STEP
#undef GT_STORE

/* kern_gemm_tile: a loop for each row count, so that a prompt's last
 * rows cost what they are (pp128's last tile has 2 rows of 6); a tile
 * short of columns runs on a copy (the other lanes' sums are thrown away;
 * a lane's bits do not depend on them). */
static TGT void gemm_tile_avx2(float *const *y, int mr, int nr, int acc, const float *xp,
			       const float *wp, int kc)
{
	float t[KERN_GEMM_MR][KERN_GEMM_NR];
	float *ty[KERN_GEMM_MR];
	float *const *yy = y;
	if (nr < KERN_GEMM_NR) {
		for (int i = 0; i < mr; i++) {
			ty[i] = t[i];
			for (int j = 0; j < KERN_GEMM_NR; j++)
				t[i][j] = acc && j < nr ? y[i][j] : 0.0f;
		}
		yy = ty;
	}
	switch (mr) {
	case 6: gemm_tile_rows(yy, 6, acc, xp, wp, kc); break;
	case 5: gemm_tile_rows(yy, 5, acc, xp, wp, kc); break;
	case 4: gemm_tile_rows(yy, 4, acc, xp, wp, kc); break;
	case 3: gemm_tile_rows(yy, 3, acc, xp, wp, kc); break;
	case 2: gemm_tile_rows(yy, 2, acc, xp, wp, kc); break;
	default: gemm_tile_rows(yy, 1, acc, xp, wp, kc); break;
	}
	if (nr < KERN_GEMM_NR)
		for (int i = 0; i < mr; i++)
			memcpy(y[i], t[i], (size_t)nr * sizeof(float));
}
#endif

/* ---- dispatch ------------------------------------------------------------------------ */

/* Quantized weights (unless --precise): x to 8 bits per token, QX_BYTES
 * apart (quant_x), the same for every kernel set; NULL for other dtypes. */
static const float *prepare_x_quant(mh_dtype dt, const float *x, int64_t cols, float *buf,
				    void (*qx)(void *, const float *, int64_t))
{
	if (!mh_dtype_is_quant(dt) || atomic_load_explicit(&precise, memory_order_relaxed))
		return NULL;
	qx(buf, x, cols);
	return buf;
}

/* kern_x_key's value for x quantized by prepare_x_quant */
#define X_KEY_QUANT (-1)

static int x_key_quant(mh_dtype dt)
{
	return mh_dtype_is_quant(dt) && !atomic_load_explicit(&precise, memory_order_relaxed);
}

static const float *prepare_x_scalar(mh_dtype dt, const void *w, const float *x, int64_t cols,
				     float *buf)
{
	(void)w;
	const float *q = prepare_x_quant(dt, x, cols, buf, quant_x);
	return q ? q : x;
}

static int x_key_scalar(mh_dtype dt, const void *w, int64_t cols)
{
	(void)w, (void)cols;
	return x_key_quant(dt) ? X_KEY_QUANT : 0;
}

#ifdef HAVE_X86_KERNELS
/* For one token: BF16 reordered (permute_eo), and x placed so that its
 * loads are aligned where the weights' are (peel(); buf is 64-byte
 * aligned). */
static const float *prepare_x_avx2(mh_dtype dt, const void *w, const float *x, int64_t cols,
				   float *buf)
{
	if (mh_dtype_is_quant(dt)) {
		const float *q = prepare_x_quant(dt, x, cols, buf, quant_x_avx2);
		return q ? q : x;
	}
	int64_t h = peel(dt, w, cols);
	if (dt != MH_BF16 && h % 8 == 0)
		return x;
	float *xp = buf + (8 - h % 8) % 8;
	if (dt == MH_BF16)
		permute_eo(xp, x, h, cols);
	else
		memcpy(xp, x, (size_t)cols * sizeof *x);
	return xp;
}

static int x_key_avx2(mh_dtype dt, const void *w, int64_t cols)
{
	if (mh_dtype_is_quant(dt))
		return x_key_quant(dt) ? X_KEY_QUANT : 0;
	return (int)dt * 64 + (int)peel(dt, w, cols) + 1;
}

static int avx2_supported(void)
{
	/* F16C from CPUID itself: clang before 16 has no "f16c" for
	 * __builtin_cpu_supports (the OS side is AVX's, checked with avx2) */
	unsigned a, b, c, d;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

/* A kernel set: one entry per inner loop. */
typedef struct {
	const char *name;
	int (*supported)(void); /* NULL: every CPU */
	void (*rows)(mh_dtype, float *const *, const float *const *, int, const void *, int64_t,
		     int64_t, int64_t);
	const float *(*prepare_x)(mh_dtype, const void *, const float *, int64_t, float *);
	int (*x_key)(mh_dtype, const void *, int64_t);
	void (*to_f32)(mh_dtype, float *, const void *, int64_t);
	void (*dots)(float *, const float *, const float *, int64_t, int64_t, int64_t, float);
	void (*wsum)(float *, const float *, const float *, int64_t, int64_t, int64_t);
	float (*exp_sum)(float *, int64_t, float);
	float (*max)(const float *, int64_t);
	double (*sum)(const float *, int64_t);
	double (*sumsq)(const float *, int64_t, double);
	uint64_t (*read)(const void *, int64_t, int);
	void (*silu_mul)(float *, const float *, int64_t);
	void (*quant_row)(mh_dtype, void *, const float *, int64_t);
	/* both NULL in a set whose prompts go through OpenBLAS */
	void (*gemm_pack)(mh_dtype, float *, const void *, int64_t, int, int);
	void (*gemm_tile)(float *const *, int, int, int, const float *, const float *, int);
	double (*flops)(int64_t);
} kernel_set;

/* The sets, best last. */
static const kernel_set sets[] = {
	{ "scalar", NULL, rows_scalar, prepare_x_scalar, x_key_scalar, to_f32_scalar, dots_scalar,
	  wsum_scalar, exp_sum_scalar, max_scalar, sum_scalar, sumsq_scalar, read_any_scalar,
	  silu_mul_scalar, quant_row, NULL, NULL, flops_scalar },
#ifdef HAVE_X86_KERNELS
	{ "avx2", avx2_supported, rows_avx2, prepare_x_avx2, x_key_avx2, to_f32_avx2, dots_avx2,
	  wsum_avx2, exp_sum_avx2, max_avx2, sum_avx2, sumsq_avx2, read_avx2, silu_mul_avx2,
	  quant_row_avx2, gemm_pack_avx2, gemm_tile_avx2, flops_avx2 },
#endif
};
enum { N_SETS = sizeof sets / sizeof sets[0] };

/* The set in use, decided on first use (or by kern_select); threads that
 * race to decide agree, and a relaxed atomic makes the race well defined
 * at no cost. */
static _Atomic int kset = -1;

static int supported(int k)
{
	return !sets[k].supported || sets[k].supported();
}

/* The best set the CPU has, capped by MH_KERNELS=NAME. */
static const kernel_set *ks(void)
{
	int v = atomic_load_explicit(&kset, memory_order_relaxed);
	if (v < 0) {
		int cap = N_SETS - 1;
		const char *e = getenv("MH_KERNELS");
		for (int k = 0; e && k < N_SETS; k++)
			if (strcmp(e, sets[k].name) == 0)
				cap = k;
		for (v = cap; !supported(v); v--)
			;
		atomic_store_explicit(&kset, v, memory_order_relaxed);
	}
	return &sets[v];
}

int kern_select(const char *name)
{
	for (int k = 0; k < N_SETS; k++)
		if (strcmp(name, sets[k].name) == 0) {
			if (!supported(k))
				return -1;
			atomic_store_explicit(&kset, k, memory_order_relaxed);
			return 0;
		}
	return -1;
}

void kern_set_precise(int on)
{
	atomic_store_explicit(&precise, on != 0, memory_order_relaxed);
}

int kern_precise(void)
{
	return atomic_load_explicit(&precise, memory_order_relaxed);
}

const char *kern_name(void)
{
	return ks()->name;
}

void kern_rows(mh_dtype dt, float *const *y, const float *const *x, int n, const void *w,
	       int64_t r0, int64_t r1, int64_t cols)
{
	ks()->rows(dt, y, x, n, w, r0, r1, cols);
}

const float *kern_prepare_x(mh_dtype dt, const void *w, const float *x, int64_t cols, float *buf)
{
	return ks()->prepare_x(dt, w, x, cols, buf);
}

int kern_x_key(mh_dtype dt, const void *w, int64_t cols)
{
	return ks()->x_key(dt, w, cols);
}

void kern_to_f32(mh_dtype dt, float *dst, const void *src, int64_t n)
{
	ks()->to_f32(dt, dst, src, n);
}

void kern_dots(float *s, const float *q, const float *k, int64_t ldk, int64_t n, int64_t hd,
	       float scale)
{
	ks()->dots(s, q, k, ldk, n, hd, scale);
}

void kern_wsum(float *o, const float *w, const float *v, int64_t ldv, int64_t n, int64_t hd)
{
	ks()->wsum(o, w, v, ldv, n, hd);
}

float kern_exp_sum(float *x, int64_t n)
{
	const kernel_set *k = ks();
	return k->exp_sum(x, n, k->max(x, n));
}

double kern_sum(const float *x, int64_t n)
{
	return ks()->sum(x, n);
}

double kern_sumsq(const float *x, int64_t n, double c)
{
	return ks()->sumsq(x, n, c);
}

uint64_t kern_read(const void *p, int64_t n, int way)
{
	return ks()->read(p, n, way);
}

int64_t kern_argmax(const float *x, int64_t n)
{
	float m = ks()->max(x, n);
	if (m == -INFINITY)
		return 0;
	int64_t i = 0;
	while (x[i] != m)
		i++;
	return i;
}

void kern_quant_row(mh_dtype dt, void *dst, const float *x, int64_t n)
{
	ks()->quant_row(dt, dst, x, n);
}

void kern_silu_mul(float *gate, const float *up, int64_t n)
{
	ks()->silu_mul(gate, up, n);
}

int kern_gemm_ok(void)
{
	return ks()->gemm_tile != NULL;
}

void kern_gemm_pack(mh_dtype dt, float *dst, const void *src, int64_t ld, int nr, int kc)
{
	ks()->gemm_pack(dt, dst, src, ld, nr, kc);
}

void kern_gemm_tile(float *const *y, int mr, int nr, int acc, const float *xp, const float *wp,
		    int kc)
{
	ks()->gemm_tile(y, mr, nr, acc, xp, wp, kc);
}

double kern_flops(int64_t iters)
{
	return ks()->flops(iters);
}

void kern_add(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += x[i];
}
