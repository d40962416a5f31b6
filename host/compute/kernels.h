/* SPDX-License-Identifier: MIT */
/* kernels.h - the inner loops of the tensor ops, vectorised per stored
 * dtype.  kernels.c holds a portable scalar version of each and an
 * AVX2/FMA/F16C version (compiled with target attributes, so no special
 * compiler flags are needed); the best one the CPU supports is chosen at
 * run time on first use.  MH_KERNELS=scalar in the environment forces the
 * portable ones. */
#ifndef MH_KERNELS_H
#define MH_KERNELS_H

#include <modelhost/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* y[t][r] = dot(row r of w, x[t]) for r in [r0, r1), t < n <=
 * KERN_ROWS_MAX, where w is
 * rows x cols of dtype F32, F16, BF16, Q8_0 or Q4_0 and each x[t] is one
 * token's activations as kern_prepare_x returned them for w.  A token's
 * results have the bits of its own n = 1 call, whatever n and the other
 * tokens (the rule batching needs: see ops.c's routing and
 * docs/batching.md): the tokens share the weights' loads, never an
 * accumulator.  Quantized weights multiply x quantized to 8 bits per block
 * (quant_x, ggml's way), unless kern_set_precise(1): then F32 x; either
 * way every kernel set gives the same bits (quant.h). */
#define KERN_ROWS_MAX 8
void kern_rows(mh_dtype dt, float *const *y, const float *const *x, int n, const void *w,
	       int64_t r0, int64_t r1, int64_t cols);
/* The kernel for dt may read x in an order and at an alignment of its own,
 * which depend on the weights w (rows of cols): once per token and
 * matmul, before its ranges of rows, this returns x itself or a pointer
 * into buf (64-byte aligned, room for cols + KERN_X_SLACK floats) holding
 * x so. */
#define KERN_X_SLACK 16
const float *kern_prepare_x(mh_dtype dt, const void *w, const float *x, int64_t cols, float *buf);
/* Equal for two weight matrices of cols columns, of any dtypes, whose
 * kernels read the same prepared x (one kern_prepare_x then serves both). */
int kern_x_key(mh_dtype dt, const void *w, int64_t cols);
/* dst[0..n) = src[0..n) converted from dt (F32, F16, BF16) to F32. */
void kern_to_f32(mh_dtype dt, float *dst, const void *src, int64_t n);
/* Attention's inner loops.  s[i] = scale * dot(q, k + i * ldk), vectors
 * of hd floats, for i < n. */
void kern_dots(float *s, const float *q, const float *k, int64_t ldk, int64_t n, int64_t hd,
	       float scale);
/* o[0..hd) += sum over i < n of w[i] * (v + i * ldv)[0..hd). */
void kern_wsum(float *o, const float *w, const float *v, int64_t ldv, int64_t n, int64_t hd);
/* x[i] = e^(x[i] - max of x) in place; returns their sum (softmax without
 * the division).  The exp is within 2 ulp of expf. */
float kern_exp_sum(float *x, int64_t n);
/* The norms' sums, accumulated in double: sum of x[i], and of (x[i] - c)^2. */
double kern_sum(const float *x, int64_t n);
double kern_sumsq(const float *x, int64_t n, double c);
/* Read n bytes at p (any alignment) as 64-bit integers and return their
 * sum, ignoring the last n % 8: a bandwidth probe that whatever the bytes
 * hold cannot slow down.  Three ways through them, the same sum: one
 * straight loop; 4 KiB pieces, each read from its 32nd byte on after its
 * first 32, as the one-token kernels read a row; the same with their
 * software prefetch.  On this VM each was the fastest by 10-40% for some
 * file at some moment (DEVELOPERS.md). */
enum { KERN_READ_STREAM, KERN_READ_PIECES, KERN_READ_PIECES_PF, KERN_READ_WAYS };
uint64_t kern_read(const void *p, int64_t n, int way);
/* Index of the first largest value of x[0..n); NaNs never win, and 0 if
 * nothing is above -infinity.  Greedy decoding's pick. */
int64_t kern_argmax(const float *x, int64_t n);
void kern_silu_mul(float *gate, const float *up, int64_t n);
/* quant_row (quant.h): ggml's reference quantizers, the same bytes in
 * every kernel set. */
void kern_quant_row(mh_dtype dt, void *dst, const float *x, int64_t n);
void kern_add(float *y, const float *x, int64_t n);
/* The tiles of the host's GEMM (gemm.c): KERN_GEMM_MR rows of x against
 * KERN_GEMM_NR weight rows, both packed column by column. */
#define KERN_GEMM_MR 6
#define KERN_GEMM_NR 16
/* Whether the set in use has these two (the scalar set has not: its
 * prompts go through OpenBLAS). */
int kern_gemm_ok(void);
/* dst[k * KERN_GEMM_NR + j] = src[j * ld + k] as F32 for j < nr <=
 * KERN_GEMM_NR and k < kc, 0 for nr <= j < KERN_GEMM_NR; src of dtype dt
 * (F32, F16, BF16, or Q8_0/Q4_0 with ld and kc whole blocks and src at
 * one's start), dst 32-byte aligned. */
void kern_gemm_pack(mh_dtype dt, float *dst, const void *src, int64_t ld, int nr, int kc);
/* y[i][j] = fmaf(xp[k * MR + i], wp[k * NR + j], ...) for k = 0 .. kc - 1
 * in that order, starting from y[i][j] (acc) or 0, for i < mr, j < nr:
 * every sum one chain of fused multiply-adds in column order, so that
 * a result's bits depend on its own row of x and of weights alone. */
void kern_gemm_tile(float *const *y, int mr, int nr, int acc, const float *xp, const float *wp,
		    int kc);
/* --precise: quantized weights multiply F32 activations from now on. */
void kern_set_precise(int on);
int kern_precise(void);
/* Name of the kernel set in use: "avx2" or "scalar". */
const char *kern_name(void);
/* Use the named set from now on; -1 if the CPU lacks it or there is no
 * such set.  For tests and comparisons; MH_KERNELS=NAME in the environment
 * caps the choice made on first use the same way. */
int kern_select(const char *name);
/* The arithmetic limit: iters steps of independent multiply-add chains in
 * registers, as wide as the set's tiles; returns the FLOPs done (bench's
 * prefill limit). */
double kern_flops(int64_t iters);

#endif
