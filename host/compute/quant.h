/* SPDX-License-Identifier: MIT */
/* quant.h - ggml's Q8_0 and Q4_0 block formats (modelhost/plugin.h,
 * mh_block_q8_0 / mh_block_q4_0): the reference quantizers, dequantizing,
 * and the 8-bit form of activations the integer kernels multiply with.
 *
 * The reference quantizers are ggml's (quantize_row_q8_0_ref,
 * quantize_row_q4_0_ref): round to nearest, an F16 scale per block, so a
 * tensor quantized here has the bytes ggml's would have.  Activations go
 * to 8 bits per block of 32 with an F32 scale (ggml keeps it F16; F32 is
 * free here and a little closer), rounding half to even. */
#ifndef MH_QUANT_H
#define MH_QUANT_H

#include <modelhost/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* Quantize n floats (n a multiple of MH_QBLOCK) into blocks at dst. */
void quant_row_q8_0(void *dst, const float *x, int64_t n);
void quant_row_q4_0(void *dst, const float *x, int64_t n);
void quant_row(mh_dtype dt, void *dst, const float *x, int64_t n);
/* dst[0..n) from the blocks at src (n a multiple of MH_QBLOCK). */
void dequant_row(mh_dtype dt, float *dst, const void *src, int64_t n);

/* Activations as the integer kernels read them: for a row of cols floats
 * (cols a multiple of MH_QBLOCK), cols int8 values, then cols / 32 F32
 * scales, then cols / 32 int32 sums of each block's values (Q4_0's
 * offset of 8 comes out of them), QX_BYTES(cols) in all, 64-byte
 * multiples so that rows stay aligned.  A block holding a NaN or an
 * infinity gets a NaN scale, so the result is NaN as a float dot product's
 * would be. */
#define QX_BYTES(cols) ((((size_t)(cols) + (size_t)(cols) / 32 * 8) + 63) / 64 * 64)
void quant_x(void *dst, const float *x, int64_t cols);
static inline const int8_t *qx_q(const void *qx) { return qx; }
static inline const float *qx_d(const void *qx, int64_t cols)
{
	return (const float *)((const int8_t *)qx + cols);
}
static inline const int32_t *qx_sum(const void *qx, int64_t cols)
{
	return (const int32_t *)((const int8_t *)qx + cols + cols / 32 * 4);
}

/* The reference dot products, in the order every kernel set keeps (so
 * that all give the same bits), ggml's: block b's weights times x in
 * eight integer sums of four (exact), each times (w scale * x scale) into
 * lane k of accumulator b % 2 by a fused multiply-add; then the two
 * accumulators added and their lanes summed as ((l0 + l4) + (l2 + l6)) +
 * ((l1 + l5) + (l3 + l7)). */
float quant_dot_ref(mh_dtype dt, const void *w, const void *qx, int64_t cols);
/* The same weights against F32 activations (--precise): per block, its 32
 * weights (scale * value, rounded to float) times x go into four vectors
 * of eight lanes by their index / 8, lane index % 8, fused; then
 * hsum8((a0 + a1) + (a2 + a3)) as above. */
float quant_dot_f32_ref(mh_dtype dt, const void *w, const float *x, int64_t cols);
/* ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) */
static inline float quant_hsum8(const float *l)
{
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* 1 if every scale of rows x cols blocks at data is a finite F16. */
int quant_scales_finite(mh_dtype dt, const void *data, int64_t rows, int64_t cols);

#endif
