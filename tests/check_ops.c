/* SPDX-License-Identifier: MIT */
/* check_ops.c - the host's tensor services against plain reference code:
 * matmul for every weight dtype and both the few-token and the batched
 * path, attention with and without a sliding window, norms, activations,
 * and the rotary variants (linear, dynamic, llama3) against values
 * computed with transformers' formulas. */
#include "compute/gemm.h"
#include "compute/kernels.h"
#include "compute/quant.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "compute/rope.h"
#include "model/safetensors.h"
#include "plugin/services.h"
#include "testutil.h"
#include "compute/threadpool.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

static void setup(void)
{
	services_init(2);
}

static void teardown(void)
{
	services_shutdown();
	if (kern_select("avx2") != 0) /* back to the best, for CK_FORK=no runs */
		kern_select("scalar");
}

/* The kernel tests run once per kernel set (a loop test's _i); the ones
 * this CPU lacks are skipped, and say so. */
static const char *const ksets[] = { "scalar", "avx2" };
#define N_KSETS 2

static int use_kernels(int i)
{
	if (kern_select(ksets[i]) == 0)
		return 1;
	fprintf(stderr, "check_ops: this CPU has no %s kernels; skipped\n", ksets[i]);
	return 0;
}

/* A weight matrix stored as dtype, and its exact F32 value. */
typedef struct {
	mh_tensor t;
	float *ref;
	void *store;
} weight;

static weight make_weight(mh_dtype dt, int rows, int cols)
{
	weight w = { 0 };
	size_t n = (size_t)rows * cols;
	w.ref = malloc(n * sizeof(float));
	w.store = malloc(n * 4);
	for (size_t i = 0; i < n; i++) {
		float v = frand();
		if (dt == MH_F32) {
			((float *)w.store)[i] = v;
		} else {
			uint16_t h = dt == MH_BF16 ? mh_f32_to_bf16(v) : mh_f32_to_f16(v);
			((uint16_t *)w.store)[i] = h;
			v = dt == MH_BF16 ? mh_bf16_to_f32(h) : mh_f16_to_f32(h);
		}
		w.ref[i] = v;
	}
	w.t = (mh_tensor){ .name = "w", .dtype = dt, .ndim = 2, .shape = { rows, cols },
			   .nelem = (int64_t)n, .data = w.store,
			   .nbytes = n * (dt == MH_F32 ? 4 : 2) };
	return w;
}

START_TEST(matmul_every_dtype_and_path)
{
	if (!use_kernels(_i))
		return;
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16 };
	const int ns[] = { 1, 2, 3, 8, 9, 33 };
	/* widths: vector steps plus a scalar tail; whole steps; a half step
	 * and a tail (BF16's 16-weight step); a row longer than L1 */
	const int shapes[][2] = { { 37, 70 }, { 64, 256 }, { 300, 129 }, { 5, 55 }, { 3, 16400 } };
	const int n_shapes = sizeof shapes / sizeof shapes[0];
	for (int d = 0; d < 3; d++)
		for (int s = 0; s < n_shapes; s++) {
			int rows = shapes[s][0], cols = shapes[s][1];
			weight w = make_weight(dts[d], rows, cols);
			float *bias = malloc(rows * sizeof *bias);
			for (int r = 0; r < rows; r++)
				bias[r] = frand();
			for (int k = 0; k < 6; k++) {
				int n = ns[k];
				float *x = malloc((size_t)n * cols * sizeof *x);
				float *y = malloc((size_t)n * rows * sizeof *y);
				for (int i = 0; i < n * cols; i++)
					x[i] = frand();
				ops_matmul(y, x, &w.t, k % 2 ? bias : NULL, n);
				/* float sums drift with their length: 1e-4 holds to 4096
				 * terms for any BLAS; the reference BLAS adds a 16400-term
				 * row one term at a time, about 1.5e-4 off, so longer rows
				 * get proportionally more */
				double tol = 1e-4 * (cols > 4096 ? cols / 4096.0 : 1);
				for (int t = 0; t < n; t++)
					for (int r = 0; r < rows; r++) {
						double ref = k % 2 ? bias[r] : 0;
						for (int c = 0; c < cols; c++)
							ref += (double)x[t * cols + c] * w.ref[r * cols + c];
						ck_assert_msg(fabs(y[t * rows + r] - ref) < tol * (1 + fabs(ref)),
							      "%s %dx%d n=%d: y[%d,%d] = %g, expected %g",
							      mh_dtype_name(dts[d]), rows, cols, n, t, r,
							      y[t * rows + r], ref);
					}
				free(x);
				free(y);
			}
			free(bias);
			free(w.ref);
			free(w.store);
		}
}
END_TEST

/* ---- Q8_0 / Q4_0 -------------------------------------------------------------------- */

/* ggml's layout and rounding on values each format holds exactly: Q8_0 of
 * k / 4 (k in -127..127 with one block's largest |k| = 127: scale 1/4),
 * Q4_0 of k / 2 (k in -8..7, one block's largest magnitude -8: scale 1/2,
 * stored values k + 8, element i and i + 16 in byte i's low and high
 * nibbles); both dequantize to the input, and the bytes are what ggml's
 * reference quantizers write. */
START_TEST(quant_blocks_are_ggml_layout)
{
	float x[64], back[64];
	for (int i = 0; i < 64; i++)
		x[i] = (float)((i * 37) % 255 - 127) / 4;
	x[5] = 127.0f / 4;
	x[40] = -127.0f / 4;
	mh_block_q8_0 q8[2];
	ck_assert_uint_eq(sizeof q8[0], 34);
	quant_row_q8_0(q8, x, 64);
	ck_assert_uint_eq(q8[0].d, mh_f32_to_f16(0.25f));
	ck_assert_uint_eq(q8[1].d, mh_f32_to_f16(0.25f));
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(q8[i / 32].qs[i % 32], (int)(x[i] * 4));
	dequant_row(MH_Q8_0, back, q8, 64);
	ck_assert_mem_eq(back, x, sizeof x);

	for (int i = 0; i < 64; i++)
		x[i] = (float)((i * 5) % 16 - 8) / 2;
	x[3] = -4.0f; /* the largest magnitude is negative: scale 1/2 */
	x[35] = -4.0f;
	mh_block_q4_0 q4[2];
	ck_assert_uint_eq(sizeof q4[0], 18);
	quant_row_q4_0(q4, x, 64);
	ck_assert_uint_eq(q4[0].d, mh_f32_to_f16(0.5f));
	for (int i = 0; i < 64; i++) {
		int b = i / 32, j = i % 32;
		int v = j < 16 ? q4[b].qs[j] & 15 : q4[b].qs[j - 16] >> 4;
		ck_assert_int_eq(v, (int)(x[i] * 2) + 8);
	}
	dequant_row(MH_Q4_0, back, q4, 64);
	ck_assert_mem_eq(back, x, sizeof x);

	/* ggml rounds Q4_0 half up (x * id + 8.5 truncated): 0.25 / 0.5 = 0.5 -> 9 */
	for (int i = 0; i < 32; i++)
		x[i] = i == 0 ? -4.0f : 0.25f;
	quant_row_q4_0(q4, x, 32);
	ck_assert_int_eq(q4[0].qs[1] & 15, 9);
	/* an all-zero block: scale 0, values 0 (Q8_0) and 8 (Q4_0) */
	memset(x, 0, sizeof x);
	quant_row_q8_0(q8, x, 32);
	quant_row_q4_0(q4, x, 32);
	ck_assert_uint_eq(q8[0].d, 0);
	ck_assert_int_eq(q8[0].qs[7], 0);
	ck_assert_int_eq(q4[0].qs[7], 0x88);
}
END_TEST

/* Every kernel set quantizes as ggml's reference does, byte for byte
 * (weights: Q8_0's roundf ties away from zero, Q4_0's truncation of x *
 * id + 8.5), and activations as quant_x (ties to even), on blocks of
 * random values, of exact halves, of zeros and minus zeros, and with a
 * NaN or an infinity. */
START_TEST(quantizers_match_the_reference)
{
	if (!use_kernels(_i))
		return;
	enum { NB = 12, N = NB * 32 };
	float x[N];
	for (int i = 0; i < N; i++)
		x[i] = frand() * 4;
	for (int j = 0; j < 32; j++) {
		x[32 + j] = j == 0 ? 127.0f : (float)(j - 16) + 0.5f; /* scale 1: halves */
		x[64 + j] = j == 0 ? -8.0f : (float)(j % 16 - 8) + 0.5f;  /* Q4_0 scale 1 */
		x[96 + j] = 0.0f;
		x[128 + j] = -0.0f;
		x[160 + j] = j == 7 ? -3.0f : j == 9 ? 3.0f : 1.0f; /* ties for the largest */
	}
	x[200] = NAN;
	x[250] = INFINITY;
	x[300] = -INFINITY;
	for (int q = 0; q < 2; q++) {
		mh_dtype dt = q ? MH_Q4_0 : MH_Q8_0;
		size_t bytes = mh_row_bytes(dt, N);
		unsigned char *a = malloc(bytes), *b = malloc(bytes);
		quant_row(dt, a, x, N);
		kern_quant_row(dt, b, x, N);
		for (size_t k = 0; k < bytes; k++)
			ck_assert_msg(a[k] == b[k], "%s byte %zu: %d, reference %d", mh_dtype_name(dt), k,
				      b[k], a[k]);
		free(a);
		free(b);
	}
	/* the activations as the matmul kernels take them */
	float *buf = aligned_alloc(64, (N + KERN_X_SLACK) * sizeof(float));
	unsigned char *ref = aligned_alloc(64, QX_BYTES(N));
	mh_block_q8_0 w[NB];
	quant_row(MH_Q8_0, w, x, N);
	const unsigned char *got = (const void *)kern_prepare_x(MH_Q8_0, w, x, N, buf);
	quant_x(ref, x, N);
	for (size_t k = 0; k < QX_BYTES(N) - 0; k++)
		if (k < (size_t)N + NB * 8)
			ck_assert_msg(got[k] == ref[k], "activation byte %zu: %d, reference %d", k,
				      got[k], ref[k]);
	free(ref);
	free(buf);
}
END_TEST

/* A quantized weight of rows x cols from random values, and its value as
 * F32 (dequantized). */
static weight make_quant(mh_dtype dt, int rows, int cols)
{
	weight w = { 0 };
	size_t n = (size_t)rows * cols;
	float *src = malloc(n * sizeof *src);
	for (size_t i = 0; i < n; i++)
		src[i] = frand() * (1 + (float)(i % 7));
	w.store = malloc(mh_row_bytes(dt, cols) * rows);
	w.ref = malloc(n * sizeof(float));
	for (int r = 0; r < rows; r++)
		quant_row(dt, (char *)w.store + r * mh_row_bytes(dt, cols), src + (size_t)r * cols, cols);
	dequant_row(dt, w.ref, w.store, (int64_t)n);
	free(src);
	w.t = (mh_tensor){ .name = "wq", .dtype = dt, .ndim = 2, .shape = { rows, cols },
			   .nelem = (int64_t)n, .data = w.store,
			   .nbytes = mh_row_bytes(dt, cols) * rows };
	return w;
}

/* Every kernel set gives the reference's bits for quantized weights, for
 * 8-bit and for F32 activations (--precise), at 1..8 tokens; a token's
 * results are the same whatever the other tokens and however many (batch
 * invariance), and so at 17 and 32 tokens (a short prompt's run); widths
 * of 1, 8, 9 and 17 blocks (the kernels' groups of eight and a tail).
 * Beyond 32 tokens (prefill: dequantized weights through the GEMM) the
 * products match the dequantized weights in double. */
START_TEST(matmul_quant_matches_reference)
{
	if (!use_kernels(_i))
		return;
	const int shapes[][2] = { { 37, 32 }, { 19, 256 }, { 8, 288 }, { 70, 544 } };
	enum { PREFILL = 33 };
	for (int q = 0; q < 2; q++)
		for (int s = 0; s < 4; s++) {
			mh_dtype dt = q ? MH_Q4_0 : MH_Q8_0;
			int rows = shapes[s][0], cols = shapes[s][1];
			weight w = make_quant(dt, rows, cols);
			size_t rb = mh_row_bytes(dt, cols);
			float *x = malloc((size_t)PREFILL * cols * sizeof *x);
			float *y = malloc((size_t)PREFILL * rows * sizeof *y);
			float *y1 = malloc((size_t)rows * sizeof *y1);
			void *qx = aligned_alloc(64, QX_BYTES(cols));
			for (int i = 0; i < PREFILL * cols; i++)
				x[i] = frand() * 3;
			for (int precise = 0; precise < 2; precise++) {
				kern_set_precise(precise);
				for (int n = 1; n <= 32; n = n < 8 ? n + 1 : n == 8 ? 17 : n == 17 ? 32 : 33) {
					ops_matmul(y, x, &w.t, NULL, n);
					for (int t = 0; t < n; t++) {
						const float *xt = x + (size_t)t * cols;
						quant_x(qx, xt, cols);
						for (int r = 0; r < rows; r++) {
							const char *wr = (const char *)w.store + r * rb;
							float ref = precise ? quant_dot_f32_ref(dt, wr, xt, cols)
									    : quant_dot_ref(dt, wr, qx, cols);
							ck_assert_msg(y[t * rows + r] == ref,
								      "%s %dx%d n=%d precise=%d: y[%d,%d] = %.9g, "
								      "reference %.9g", mh_dtype_name(dt), rows,
								      cols, n, precise, t, r, y[t * rows + r], ref);
						}
						/* the token alone gives the same bits */
						ops_matmul(y1, xt, &w.t, NULL, 1);
						ck_assert_mem_eq(y1, y + (size_t)t * rows, rows * sizeof *y1);
					}
				}
			}
			kern_set_precise(0);
			ops_matmul(y, x, &w.t, NULL, PREFILL);
			for (int t = 0; t < PREFILL; t++)
				for (int r = 0; r < rows; r++) {
					double ref = 0;
					for (int c = 0; c < cols; c++)
						ref += (double)x[t * cols + c] * w.ref[r * cols + c];
					ck_assert_msg(fabs(y[t * rows + r] - ref) < 1e-4 * (1 + fabs(ref)),
						      "%s prefill y[%d,%d] = %g, expected %g",
						      mh_dtype_name(dt), t, r, y[t * rows + r], ref);
				}
			free(qx);
			free(y1);
			free(y);
			free(x);
			free(w.ref);
			free(w.store);
		}
}
END_TEST

/* 8-bit activations cost accuracy only as ggml's do: against the exact
 * product of the dequantized weights, the error stays within a small
 * multiple of the activations' rounding; a NaN or infinite activation
 * gives NaN (not a silent 0) in the rows it reaches. */
START_TEST(quant_activations_are_close_and_nan_shows)
{
	if (!use_kernels(_i))
		return;
	const int rows = 16, cols = 256;
	weight w = make_quant(MH_Q8_0, rows, cols);
	float x[256], y[16];
	for (int i = 0; i < cols; i++)
		x[i] = frand();
	ops_matmul(y, x, &w.t, NULL, 1);
	for (int r = 0; r < rows; r++) {
		double ref = 0, mag = 0;
		for (int c = 0; c < cols; c++) {
			ref += (double)x[c] * w.ref[r * cols + c];
			mag += fabs((double)x[c] * w.ref[r * cols + c]);
		}
		ck_assert_msg(fabs(y[r] - ref) <= mag / 127, "row %d: %g vs %g", r, y[r], ref);
	}
	x[100] = NAN;
	ops_matmul(y, x, &w.t, NULL, 1);
	for (int r = 0; r < rows; r++)
		ck_assert_msg(isnan(y[r]), "row %d: %g, expected NaN", r, y[r]);
	free(w.ref);
	free(w.store);
}
END_TEST

/* matmul_n, embed and rows() on quantized weights agree with matmul and
 * the dequantized values. */
START_TEST(quant_matmul_n_embed_rows)
{
	if (!use_kernels(_i))
		return;
	const mh_services *svc = services_init(2);
	weight a = make_quant(MH_Q8_0, 24, 96), b = make_quant(MH_Q4_0, 40, 96);
	float x[3 * 96], ya[3 * 24], yb[3 * 40], za[3 * 24], zb[3 * 40], e[2 * 96];
	for (int i = 0; i < 3 * 96; i++)
		x[i] = frand();
	for (int n = 1; n <= 3; n++) {
		float *ys[2] = { ya, yb };
		const mh_tensor *ws[2] = { &a.t, &b.t };
		svc->matmul_n(ys, x, ws, NULL, 2, n);
		ops_matmul(za, x, &a.t, NULL, n);
		ops_matmul(zb, x, &b.t, NULL, n);
		ck_assert_mem_eq(ya, za, (size_t)n * 24 * sizeof(float));
		ck_assert_mem_eq(yb, zb, (size_t)n * 40 * sizeof(float));
	}
	int32_t ids[2] = { 39, 3 };
	ck_assert_int_eq(ops_embed(e, &b.t, ids, 2), 0);
	ck_assert_mem_eq(e, b.ref + 39 * 96, 96 * sizeof(float));
	ck_assert_mem_eq(e + 96, b.ref + 3 * 96, 96 * sizeof(float));
	mh_tensor v;
	ck_assert_int_eq(svc->rows(&b.t, 10, 5, &v), 0);
	ck_assert_int_eq(v.dtype, MH_Q4_0);
	ck_assert_ptr_eq(v.data, (const char *)b.store + 10 * mh_row_bytes(MH_Q4_0, 96));
	ck_assert_uint_eq(v.nbytes, 5 * mh_row_bytes(MH_Q4_0, 96));
	ops_matmul(za, x, &v, NULL, 1);
	ck_assert_mem_eq(za, yb + 10, 5 * sizeof(float));
	free(a.ref);
	free(a.store);
	free(b.ref);
	free(b.store);
}
END_TEST

/* weight() hands quantized tensors only to plugins built for ABI 1.2 or
 * later (the session sets quant_ok from the plugin's minor), converts
 * once (the same tensor again on the next call), and leaves a matrix
 * whose rows are not whole blocks, and every vector, as stored. */
START_TEST(weight_quantizes_for_new_plugins_only)
{
	const mh_services *svc = services_init(2);
	char err[MH_ERRLEN], *path = tu_data_path("fixtures/models/llama");
	mh_dir *d = modeldir_open(path, err);
	ck_assert_msg(d != NULL, "%s", err);
	const char *q = "model.layers.0.self_attn.q_proj.weight";
	const char *down = "model.layers.0.mlp.down_proj.weight";
	const mh_tensor *raw = modeldir_tensor(d, q), *raw_down = modeldir_tensor(d, down);
	int64_t rows = raw->shape[0], cols = raw->shape[1];
	d->quant = d->quant_io = MH_Q8_0;
	d->quant_ok = 0;
	ck_assert_ptr_eq(svc->weight(d, q, 2, rows, cols), raw);
	d->quant_ok = 1;
	const mh_tensor *t = svc->weight(d, q, 2, rows, cols);
	ck_assert_int_eq(t->dtype, MH_Q8_0);
	ck_assert_int_eq(t->shape[1], cols);
	ck_assert_uint_eq(t->nbytes, mh_row_bytes(MH_Q8_0, cols) * rows);
	ck_assert_ptr_eq(svc->weight(d, q, 2, rows, cols), t);
	float *a = malloc(rows * cols * sizeof *a), *b = malloc(rows * cols * sizeof *b);
	ops_to_f32(a, raw, 0, rows * cols);
	ops_to_f32(b, t, 0, rows * cols);
	for (int64_t i = 0; i < rows * cols; i++) { /* half a step of the block's scale */
		float amax = 0;
		for (int64_t k = i / 32 * 32; k < i / 32 * 32 + 32; k++)
			amax = fabsf(a[k]) > amax ? fabsf(a[k]) : amax;
		ck_assert_msg(fabsf(a[i] - b[i]) <= amax * (1.0f / 254 + 1e-3f), "%g vs %g", a[i], b[i]);
	}
	ck_assert_ptr_eq(svc->weight(d, down, 2, raw_down->shape[0], raw_down->shape[1]), raw_down);
	const mh_tensor *norm = modeldir_tensor(d, "model.norm.weight");
	ck_assert_ptr_eq(svc->weight(d, "model.norm.weight", 1, norm->shape[0], 0), norm);
	free(a);
	free(b);
	modeldir_close(d);
	free(path);
}
END_TEST

/* Checkpoints align tensors to 8 bytes, and 2-byte weights may start
 * anywhere even: the one-token kernels take a row's first weights apart up
 * to a 32-byte boundary, go through the rest in 4 KiB segments, and place
 * x to match (kern_prepare_x).  Every even offset from a boundary, rows
 * whose length keeps it (64, 1024 and 2112 columns: 2112 are 2 or 3
 * segments) or not (70), alone and in one matmul_n with a weight of
 * another offset, which must not share its x. */
START_TEST(matmul_one_token_at_every_alignment)
{
	if (!use_kernels(_i))
		return;
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16 };
	const int widths[] = { 64, 1024, 2112, 70 };
	for (int d = 0; d < 3; d++)
		for (int c = 0; c < 4; c++) {
			int rows = 19, cols = widths[c];
			size_t es = dts[d] == MH_F32 ? 4 : 2, bytes = (size_t)rows * cols * es;
			weight w = make_weight(dts[d], rows, cols);
			float *x = malloc(cols * sizeof *x), *y = malloc(rows * sizeof *y);
			float *y2 = malloc(rows * sizeof *y2), *ref = malloc(rows * sizeof *ref);
			for (int i = 0; i < cols; i++)
				x[i] = frand();
			for (int r = 0; r < rows; r++) {
				double a = 0;
				for (int k = 0; k < cols; k++)
					a += (double)x[k] * w.ref[r * cols + k];
				ref[r] = (float)a;
			}
			char *block = NULL, *block2 = NULL;
			ck_assert_int_eq(posix_memalign((void **)&block, 64, bytes + 64), 0);
			ck_assert_int_eq(posix_memalign((void **)&block2, 64, bytes + 64), 0);
			for (size_t off = 0; off < 32; off += es) {
				mh_tensor t = w.t, t2 = w.t;
				t.data = memcpy(block + off, w.store, bytes);
				t2.data = memcpy(block2 + (off + 8) % 32, w.store, bytes);
				ops_matmul(y, x, &t, NULL, 1);
				ops_matmul(y2, x, &t2, NULL, 1);
				for (int r = 0; r < rows; r++)
					ck_assert_msg(fabs(y[r] - ref[r]) < 1e-4 * (1 + fabs(ref[r])) &&
							      fabs(y2[r] - ref[r]) < 1e-4 * (1 + fabs(ref[r])),
						      "%s %dx%d at %zu mod 32: y[%d] = %g / %g, expected %g",
						      mh_dtype_name(dts[d]), rows, cols, off, r, y[r], y2[r],
						      ref[r]);
				float *ys[2] = { y2, y };
				ops_matmul_n(ys, x, (const mh_tensor *[]){ &t2, &t }, NULL, 2, 1);
				for (int r = 0; r < rows; r++)
					ck_assert_msg(fabs(y[r] - ref[r]) < 1e-4 * (1 + fabs(ref[r])) &&
							      fabs(y2[r] - ref[r]) < 1e-4 * (1 + fabs(ref[r])),
						      "matmul_n %s %dx%d at %zu and %zu mod 32: %g / %g, expected %g",
						      mh_dtype_name(dts[d]), rows, cols, (off + 8) % 32, off,
						      y2[r], y[r], ref[r]);
			}
			free(block);
			free(block2);
			free(x);
			free(y);
			free(y2);
			free(ref);
			free(w.ref);
			free(w.store);
		}
}
END_TEST

/* A row's sum does not depend on where its range of rows starts: the
 * kernels take rows four or three at a time, counted from the range's
 * start (rows_dt), and the pool's ranges change from run to run.  Rows of
 * 896 columns,
 * 32-byte aligned and 8 bytes off; every split point against one whole
 * range, bit for bit, and ops_matmul (the pool's ranges) the same. */
START_TEST(one_token_rows_do_not_depend_on_their_range)
{
	if (!use_kernels(_i))
		return;
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16 };
	enum { ROWS = 24, COLS = 896 };
	float x[COLS], whole[ROWS], part[ROWS], pooled[ROWS];
	float *buf = NULL;
	ck_assert_int_eq(posix_memalign((void **)&buf, 64, (COLS + KERN_X_SLACK) * sizeof *buf), 0);
	for (int i = 0; i < COLS; i++)
		x[i] = frand();
	for (int d = 0; d < 3; d++) {
		weight w = make_weight(dts[d], ROWS, COLS);
		char *block = NULL;
		ck_assert_int_eq(posix_memalign((void **)&block, 64, w.t.nbytes + 64), 0);
		for (size_t off = 0; off <= 8; off += 8) {
			mh_tensor t = w.t;
			t.data = memcpy(block + off, w.store, w.t.nbytes);
			const float *xp = kern_prepare_x(t.dtype, t.data, x, COLS, buf);
			float *yw = whole, *yp = part;
			kern_rows(t.dtype, &yw, &xp, 1, t.data, 0, ROWS, COLS);
			for (int start = 1; start < ROWS; start++) {
				kern_rows(t.dtype, &yp, &xp, 1, t.data, 0, start, COLS);
				kern_rows(t.dtype, &yp, &xp, 1, t.data, start, ROWS, COLS);
				for (int r = 0; r < ROWS; r++)
					ck_assert_msg(part[r] == whole[r],
						      "%s at %zu mod 64, ranges split at row %d: row %d "
						      "%.9g != %.9g",
						      mh_dtype_name(t.dtype), off, start, r, part[r], whole[r]);
			}
			for (int rep = 0; rep < 20; rep++) {
				ops_matmul(pooled, x, &t, NULL, 1);
				for (int r = 0; r < ROWS; r++)
					ck_assert_msg(pooled[r] == whole[r], "%s pooled row %d: %.9g != %.9g",
						      mh_dtype_name(t.dtype), r, pooled[r], whole[r]);
			}
		}
		free(block);
		free(w.ref);
		free(w.store);
	}
	free(buf);
}
END_TEST

/* Batched decode: kern_rows over n tokens gives every token the bits of
 * its one-token call (the kernels interleave tokens but never share an
 * accumulator), for every dtype, every offset of the weights from a
 * 32-byte boundary, rows of one, two and three 4 KiB segments and rows
 * with a tail (of quantized blocks: an odd count), and every n up to 8
 * (groups of three, then two; quantized, of four); and
 * ops_matmul of n rows is n one-row matmuls bit for bit. */
START_TEST(many_tokens_are_each_one_token)
{
	if (!use_kernels(_i))
		return;
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16, MH_Q8_0, MH_Q4_0 };
	const int widths[] = { 64, 1024, 2112, 70, 4104, 96 }; /* 96: an odd count of blocks */
	enum { ROWS = 11, N = 8 };
	for (int d = 0; d < 5; d++)
		for (int c = 0; c < 6; c++) {
			mh_dtype dt = dts[d];
			int cols = widths[c], quant = mh_dtype_is_quant(dt);
			if (quant && cols % MH_QBLOCK)
				continue;
			weight w = quant ? make_quant(dt, ROWS, cols) : make_weight(dt, ROWS, cols);
			size_t bytes = (size_t)ROWS * mh_row_bytes(dt, cols);
			size_t es = dt == MH_F32 ? 4 : 2, slot = (size_t)cols + KERN_X_SLACK;
			float *x = malloc((size_t)N * cols * sizeof *x);
			float *one = malloc((size_t)N * ROWS * sizeof *one);
			float *many = malloc((size_t)N * ROWS * sizeof *many);
			float *buf = NULL;
			char *block = NULL;
			ck_assert_int_eq(posix_memalign((void **)&buf, 64, N * slot * sizeof *buf), 0);
			ck_assert_int_eq(posix_memalign((void **)&block, 64, bytes + 64), 0);
			for (int i = 0; i < N * cols; i++)
				x[i] = frand();
			for (size_t off = 0; off < 32; off += quant ? 32 : es) {
				const void *wd = memcpy(block + off, w.store, bytes);
				const float *xp[N];
				float *y1[N], *yn[N];
				for (int t = 0; t < N; t++) {
					xp[t] = kern_prepare_x(dt, wd, x + (size_t)t * cols, cols,
							       buf + t * slot);
					y1[t] = one + t * ROWS;
					yn[t] = many + t * ROWS;
					kern_rows(dt, &y1[t], &xp[t], 1, wd, 0, ROWS, cols);
				}
				for (int n = 2; n <= N; n++) {
					memset(many, 0, (size_t)N * ROWS * sizeof *many);
					kern_rows(dt, yn, xp, n, wd, 0, 5, cols);
					kern_rows(dt, yn, xp, n, wd, 5, ROWS, cols);
					for (int t = 0; t < n; t++)
						for (int r = 0; r < ROWS; r++)
							ck_assert_msg(many[t * ROWS + r] == one[t * ROWS + r],
								      "%s %dx%d at %zu mod 32, %d tokens: "
								      "token %d row %d %.9g != %.9g alone",
								      mh_dtype_name(dt), ROWS, cols, off, n, t,
								      r, many[t * ROWS + r], one[t * ROWS + r]);
				}
				mh_tensor t = w.t;
				t.data = (void *)wd;
				ops_matmul(many, x, &t, NULL, N);
				for (int k = 0; k < N; k++) {
					ops_matmul(one, x + (size_t)k * cols, &t, NULL, 1);
					for (int r = 0; r < ROWS; r++)
						ck_assert_msg(many[k * ROWS + r] == one[r],
							      "%s ops_matmul of %d rows: row %d, %d: %.9g "
							      "!= %.9g alone",
							      mh_dtype_name(dt), N, k, r, many[k * ROWS + r],
							      one[r]);
				}
			}
			free(block);
			free(buf);
			free(x);
			free(one);
			free(many);
			free(w.ref);
			free(w.store);
		}
}
END_TEST

/* Prefill gives the same bits whatever the pool: the same input through
 * pools of 1, 2 and 3 threads, and 10 times through 2, for a batched
 * matmul of each dtype (the host's GEMM; with the scalar kernels,
 * OpenBLAS's SGEMM, whose rounding depends on how many rows each call
 * gets) and for silu_mul over more elements than it does
 * serially (whose vector loop and scalar tail round differently). */
START_TEST(prefill_does_not_depend_on_the_pool)
{
	if (!use_kernels(_i))
		return;
	enum { ROWS = 896, COLS = 896, N = 40, EW = 40000 };
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16 };
	mh_pool *services_pool = ops_pool();
	float *x = malloc(N * COLS * sizeof *x), *g0 = malloc(EW * sizeof *g0);
	float *up = malloc(EW * sizeof *up), *g = malloc(EW * sizeof *g);
	float *want[3], *y = malloc((size_t)N * ROWS * sizeof *y);
	for (int i = 0; i < N * COLS; i++)
		x[i] = frand();
	/* silu's inputs: pairs that the AVX2 vector loop and the scalar tail
	 * round differently, so that any element a range's end leaves to the
	 * tail shows */
	enum { PAIRS = 64 };
	float pg[PAIRS], pu[PAIRS];
	int found = 0, vector = kern_select("avx2") == 0;
	for (int tries = 0; found < PAIRS; tries++) {
		float t = 8 * frand(), m = frand(), v[8], u[8], sv = t;
		for (int k = 0; k < 8; k++)
			v[k] = t, u[k] = m;
		if (vector && tries < 100000) { /* else: any pairs */
			kern_select("avx2");
			kern_silu_mul(v, u, 8);
			kern_select("scalar");
			kern_silu_mul(&sv, &m, 1);
			if (v[0] == sv)
				continue;
		}
		pg[found] = t;
		pu[found++] = m;
	}
	ck_assert(use_kernels(_i));
	for (int i = 0; i < EW; i++) {
		g0[i] = pg[i % PAIRS];
		up[i] = pu[i % PAIRS];
	}
	weight w[3];
	for (int d = 0; d < 3; d++) {
		w[d] = make_weight(dts[d], ROWS, COLS);
		want[d] = malloc((size_t)N * ROWS * sizeof *want[d]);
	}
	float *gwant = malloc(EW * sizeof *gwant);
	for (int threads = 1; threads <= 3; threads++) {
		mh_pool *p = pool_new(threads);
		ops_set_pool(p);
		for (int rep = 0; rep < (threads == 2 ? 10 : 1); rep++) {
			for (int d = 0; d < 3; d++) {
				ops_matmul(threads == 1 ? want[d] : y, x, &w[d].t, NULL, N);
				if (threads > 1)
					for (int e = 0; e < N * ROWS; e++)
						ck_assert_msg(y[e] == want[d][e],
							      "%s matmul, %d threads: [%d] %.9g != %.9g",
							      mh_dtype_name(dts[d]), threads, e, y[e],
							      want[d][e]);
			}
			memcpy(g, g0, EW * sizeof *g);
			ops_silu_mul(g, up, EW);
			if (threads == 1)
				memcpy(gwant, g, EW * sizeof *g);
			for (int e = 0; e < EW; e++)
				ck_assert_msg(g[e] == gwant[e], "silu_mul, %d threads: [%d] %.9g != %.9g",
					      threads, e, g[e], gwant[e]);
		}
		ops_set_pool(services_pool);
		pool_free(p);
	}
	for (int d = 0; d < 3; d++) {
		free(want[d]);
		free(w[d].ref);
		free(w[d].store);
	}
	free(gwant);
	free(x);
	free(g0);
	free(up);
	free(g);
	free(y);
}
END_TEST

/* The host's GEMM (prompts): every result is the chain of fused
 * multiply-adds over its row of x and of the weights' exact values, in
 * column order, bit for bit; for every dtype, widths below, at and past a
 * panel's columns, rows that leave partial tiles both ways, and rows of x
 * taken out of order with gaps (a batch's prompt pieces), whose gaps it
 * must not write.  Sets without a tile kernel say so. */
START_TEST(gemm_is_one_fma_chain_a_result)
{
	if (!use_kernels(_i))
		return;
	weight probe = make_weight(MH_F32, 1, 8);
	int ok = gemm_ok(&probe.t);
	free(probe.ref);
	free(probe.store);
	if (!ok) {
		fprintf(stderr, "check_ops: the %s kernels have no GEMM tile; skipped\n", ksets[_i]);
		return;
	}
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16, MH_Q8_0, MH_Q4_0 };
	const int shapes[][2] = { { 37, 70 }, { 16, 256 }, { 45, 600 }, { 21, 96 }, { 33, 544 } };
	const int ms[] = { 1, 5, 6, 7, 40 };
	enum { XR = 90 };
	float *x = malloc((size_t)XR * 600 * sizeof *x);
	for (int i = 0; i < XR * 600; i++)
		x[i] = frand();
	for (int d = 0; d < 5; d++)
		for (int s = 0; s < 5; s++) {
			mh_dtype dt = dts[d];
			int rows = shapes[s][0], cols = shapes[s][1];
			if (mh_dtype_is_quant(dt) && cols % MH_QBLOCK)
				continue;
			weight w = mh_dtype_is_quant(dt) ? make_quant(dt, rows, cols)
							 : make_weight(dt, rows, cols);
			ck_assert(gemm_ok(&w.t));
			float *y = malloc((size_t)XR * rows * sizeof *y);
			for (int k = 0; k < 5; k++) {
				int m = ms[k], row[40];
				for (int t = 0; t < m; t++) /* descending, every other row */
					row[t] = 2 * (m - 1 - t) + 1;
				for (int e = 0; e < XR * rows; e++)
					y[e] = -7.0f;
				const mh_tensor *wt = &w.t;
				gemm_rows(ops_pool(), &y, x, row, m, &wt, 1, cols);
				for (int t = 0; t < m; t++) {
					const float *xt = x + (size_t)row[t] * cols;
					for (int r = 0; r < rows; r++) {
						float s0 = 0.0f;
						for (int c = 0; c < cols; c++)
							s0 = fmaf(xt[c], w.ref[(size_t)r * cols + c], s0);
						float got = y[(size_t)row[t] * rows + r];
						ck_assert_msg(got == s0,
							      "%s %dx%d, %d rows: row %d (x row %d), %d: "
							      "%.9g != %.9g",
							      mh_dtype_name(dt), rows, cols, m, t, row[t], r,
							      got, s0);
					}
				}
				for (int t = 0; t < 2 * m; t += 2)
					for (int r = 0; r < rows; r++)
						ck_assert_msg(y[(size_t)t * rows + r] == -7.0f,
							      "%s: row %d, not asked for, was written",
							      mh_dtype_name(dt), t);
			}
			free(y);
			free(w.ref);
			free(w.store);
		}
	free(x);
}
END_TEST

/* matmul_n is matmul for each weight, whatever their dtypes and sizes; a
 * weight of another width starts a new group; NULL biases are skipped. */
START_TEST(matmul_n_is_matmul_for_each)
{
	if (!use_kernels(_i))
		return;
	const int ns[] = { 1, 3, 8, 12 };
	weight w[5] = { make_weight(MH_F32, 37, 64), make_weight(MH_BF16, 64, 64),
			make_weight(MH_F16, 20, 64), make_weight(MH_F32, 16, 48),
			make_weight(MH_BF16, 9, 48) };
	float *bias[5] = { NULL };
	for (int i = 0; i < 5; i += 2) {
		bias[i] = malloc(w[i].t.shape[0] * sizeof(float));
		for (int r = 0; r < w[i].t.shape[0]; r++)
			bias[i][r] = frand();
	}
	const mh_tensor *wt[5];
	for (int i = 0; i < 5; i++)
		wt[i] = &w[i].t;
	for (int k = 0; k < 4; k++) {
		int n = ns[k];
		float x[12 * 64], *y[5], *want[5];
		for (int i = 0; i < n * 64; i++)
			x[i] = frand();
		for (int i = 0; i < 5; i++) {
			y[i] = malloc((size_t)n * w[i].t.shape[0] * sizeof(float));
			want[i] = malloc((size_t)n * w[i].t.shape[0] * sizeof(float));
		}
		/* weights 0-2 read x as [n, 64]; 3-4 read the same memory as [n, 48] */
		ops_matmul_n(y, x, wt, (const float *const *)bias, 3, n);
		ops_matmul_n(y + 3, x, wt + 3, NULL, 2, n);
		for (int i = 0; i < 5; i++) {
			ops_matmul(want[i], x, wt[i], i < 3 ? bias[i] : NULL, n);
			for (int64_t e = 0; e < n * w[i].t.shape[0]; e++)
				ck_assert_msg(y[i][e] == want[i][e], "n=%d weight %d [%lld]: %g != %g", n,
					      i, (long long)e, y[i][e], want[i][e]);
		}
		/* mixed widths in one call are grouped, not mixed up */
		ops_matmul_n(y + 2, x, wt + 2, NULL, 2, n);
		ops_matmul(want[3], x, wt[3], NULL, n);
		for (int64_t e = 0; e < n * w[3].t.shape[0]; e++)
			ck_assert_float_eq(y[3][e], want[3][e]);
		for (int i = 0; i < 5; i++) {
			free(y[i]);
			free(want[i]);
		}
	}
	for (int i = 0; i < 5; i++) {
		free(bias[i]);
		free(w[i].ref);
		free(w[i].store);
	}
}
END_TEST

/* Rows of every dtype come out exactly; 70 columns take the vector loop
 * and a tail. */
START_TEST(embed_and_convert)
{
	if (!use_kernels(_i))
		return;
	const mh_dtype dts[] = { MH_F32, MH_BF16, MH_F16 };
	for (int d = 0; d < 3; d++) {
		weight w = make_weight(dts[d], 10, 70);
		float out[140];
		int32_t ids[2] = { 7, 2 };
		ck_assert_int_eq(ops_embed(out, &w.t, ids, 2), 0);
		for (int i = 0; i < 70; i++) {
			ck_assert_float_eq(out[i], w.ref[7 * 70 + i]);
			ck_assert_float_eq(out[70 + i], w.ref[2 * 70 + i]);
		}
		ids[1] = 10;
		ck_assert_int_eq(ops_embed(out, &w.t, ids, 2), -1);
		free(w.ref);
		free(w.store);
	}
}
END_TEST

/* Plain causal attention with an optional window. */
static void ref_attention(float *out, const float *q, const float *k, const float *v, int n,
			  int pos0, int nh, int nkv, int hd, int window, float scale)
{
	for (int t = 0; t < n; t++)
		for (int h = 0; h < nh; h++) {
			int i = pos0 + t, g = h / (nh / nkv);
			double w[256], mx = -1e30, sum = 0;
			for (int j = 0; j <= i; j++) {
				if (window > 0 && j <= i - window) {
					w[j] = -1e30;
					continue;
				}
				double s = 0;
				for (int d = 0; d < hd; d++)
					s += (double)q[(t * nh + h) * hd + d] * k[(j * nkv + g) * hd + d];
				w[j] = s * scale;
				if (w[j] > mx)
					mx = w[j];
			}
			for (int j = 0; j <= i; j++) {
				w[j] = w[j] <= -1e29 ? 0 : exp(w[j] - mx);
				sum += w[j];
			}
			for (int d = 0; d < hd; d++) {
				double o = 0;
				for (int j = 0; j <= i; j++)
					o += w[j] / sum * v[(j * nkv + g) * hd + d];
				out[(t * nh + h) * hd + d] = (float)o;
			}
		}
}

/* Every kernel set, head sizes with and without a vector tail and past one
 * 64-float block, windows that cut the keys anywhere, and query heads
 * sharing a KV head in groups of 1 to 4, shared out whole or split
 * between the threads (one token, fewer KV heads than threads).  Rows go
 * in blocks of 16 KiB: 56 rows at head size 72, so 70 positions take two. */
START_TEST(attention_windows)
{
	if (!use_kernels(_i))
		return;
	enum { MAXNH = 6, MAXHD = 72, CTX = 70 };
	static float q[CTX * MAXNH * MAXHD], k[CTX * MAXNH * MAXHD], v[CTX * MAXNH * MAXHD];
	static float out[CTX * MAXNH * MAXHD], ref[CTX * MAXNH * MAXHD];
	for (int i = 0; i < CTX * MAXNH * MAXHD; i++) {
		k[i] = frand();
		v[i] = frand();
		q[i] = frand();
	}
	const int heads[][2] = { { 4, 2 }, { 4, 1 }, { 3, 1 }, { 6, 2 }, { 2, 2 } }; /* nh, nkv */
	const int hds[] = { 24, 20, 72 };
	const int windows[] = { 0, 1, 5, 64 };
	const int cases[][2] = { { 0, 70 }, { 69, 1 }, { 10, 7 }, { 40, 1 } }; /* pos0, n */
	for (int a = 0; a < 5; a++)
		for (int d = 0; d < 3; d++)
			for (int w = 0; w < 4; w++)
				for (int c = 0; c < 4; c++) {
					int nh = heads[a][0], nkv = heads[a][1], hd = hds[d];
					int pos0 = cases[c][0], n = cases[c][1];
					ops_attention(out, q, k, v, n, pos0, nh, nkv, hd, windows[w], 0.2f);
					ref_attention(ref, q, k, v, n, pos0, nh, nkv, hd, windows[w], 0.2f);
					for (int i = 0; i < n * nh * hd; i++)
						ck_assert_msg(fabsf(out[i] - ref[i]) < 1e-5,
							      "%d heads on %d, hd %d, window %d, pos0 %d: "
							      "%g vs %g at %d", nh, nkv, hd, windows[w],
							      pos0, out[i], ref[i], i);
				}
}
END_TEST

START_TEST(norms_and_activations)
{
	float x[6] = { 1, -2, 3, 0.5f, -0.25f, 4 }, w[3] = { 0.5f, 2, -1 }, b[3] = { 0.1f, 0, -0.1f };
	float y[6];
	ops_rmsnorm(y, x, w, 2, 3, 1e-5f);
	double r = 1 / sqrt((1 + 4 + 9) / 3.0 + 1e-5);
	ck_assert_double_eq_tol(y[0], 0.5 * r, 1e-6);
	ck_assert_double_eq_tol(y[2], -3 * r, 1e-6);
	ops_layernorm(y, x, w, b, 2, 3, 1e-5f);
	double mean = 2 / 3.0, var = ((1 - mean) * (1 - mean) + (-2 - mean) * (-2 - mean) +
				      (3 - mean) * (3 - mean)) / 3;
	ck_assert_double_eq_tol(y[1], (-2 - mean) / sqrt(var + 1e-5) * 2, 1e-5);
	ck_assert_double_eq_tol(y[2], (3 - mean) / sqrt(var + 1e-5) * -1 - 0.1, 1e-5);
	float g[3] = { 1, -1, 2 }, up[3] = { 2, 3, -1 };
	ops_silu_mul(g, up, 3);
	ck_assert_double_eq_tol(g[1], -1 / (1 + exp(1.0)) * 3, 1e-6);
	float a[2] = { 1, -0.5f }, c[2] = { 1, -0.5f };
	ops_gelu(a, 2);
	ops_gelu_tanh(c, 2);
	ck_assert_double_eq_tol(a[0], 0.8413447460685429, 1e-6);      /* x * Phi(x) */
	ck_assert_double_eq_tol(c[0], 0.8411919906082768, 1e-6);      /* tanh form */
	ck_assert_double_eq_tol(a[1], -0.15426876936299344, 1e-6);
	float s[3] = { 1, 2, 3 };
	ops_softmax(s, 3);
	ck_assert_double_eq_tol(s[2], exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0)), 1e-6);
}
END_TEST

/* A directory with config.json and a one-tensor model.safetensors. */
static mh_dir *dir_with(const char *dir, const char *config)
{
	char err[MH_ERRLEN], p[4200];
	tu_write(dir, "config.json", config);
	float one = 1;
	mh_tensor t = { .name = "x", .dtype = MH_F32, .ndim = 1, .shape = { 1 }, .nelem = 1,
			.data = &one, .nbytes = 4 };
	snprintf(p, sizeof p, "%s/model.safetensors", dir);
	ck_assert_int_eq(st_write(p, &t, 1, err), 0);
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	return d;
}

/* The angle rope gives pair i of a head at position pos. */
static double angle(const mh_rope *r, int head_dim, int i, int pos)
{
	float *x = calloc(head_dim, sizeof *x);
	int half = rope_rot_dim(r) / 2;
	x[i] = 1;
	rope_apply(r, x, 1, 1, pos);
	double a = atan2(x[i + half], x[i]);
	free(x);
	return a;
}

START_TEST(rope_variants)
{
	char *tmp = tu_tmpdir();
	/* llama3 (Llama 3.1 8B settings); expected inv_freq from transformers'
	 * _compute_llama3_parameters: unchanged, smoothed, divided by 8 */
	mh_dir *d = dir_with(tmp, "{\"max_position_embeddings\": 131072, \"rope_theta\": 500000.0,"
				  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0,"
				  "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
				  "\"original_max_position_embeddings\": 8192}}");
	mh_rope *r = rope_new(d, 128, 0);
	ck_assert_ptr_nonnull(r);
	const struct { int i; double inv; } l3[] = {
		{ 20, 0.016560440080994446 }, { 30, 0.0013718935677611381 },
		{ 33, 0.00031269375038406517 }, { 40, 3.428102195952591e-05 },
		{ 63, 3.068925988914511e-07 },
	};
	for (int k = 0; k < 5; k++)
		ck_assert_double_eq_tol(angle(r, 128, l3[k].i, 1) / l3[k].inv, 1.0, 1e-4);
	rope_free(r);
	modeldir_close(d);

	/* linear: every frequency divided by the factor; partial rotary from
	 * the transformers 5 spelling */
	d = dir_with(tmp, "{\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 4.0,"
			  "\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.5}}");
	r = rope_new(d, 32, 0);
	ck_assert_int_eq(rope_rot_dim(r), 16);
	ck_assert_double_eq_tol(angle(r, 32, 1, 3), 3 * pow(10000, -2.0 / 16) / 4, 1e-6);
	rope_free(r);
	modeldir_close(d);

	/* dynamic NTK: positions inside the original length are unscaled,
	 * beyond it the base grows with the sequence (theta' = 15894.51 for
	 * 40 positions, factor 2, original 32, dim 16) */
	d = dir_with(tmp, "{\"max_position_embeddings\": 32, \"rope_theta\": 10000.0,"
			  "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}");
	r = rope_new(d, 16, 64);
	ck_assert_double_eq_tol(angle(r, 16, 1, 1), pow(10000, -2.0 / 16), 1e-6);
	ck_assert_double_eq_tol(angle(r, 16, 3, 39) / 39, 0.026578613 /* 15894.51^(-6/16) */, 1e-6);
	rope_free(r);
	modeldir_close(d);

	/* refused by name */
	d = dir_with(tmp, "{\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1]}}");
	ck_assert_ptr_null(rope_new(d, 16, 0));
	ck_assert_msg(strstr(d->err, "config.json: rope type 'longrope' (rope_scaling.type) is not "
				     "supported") != NULL, "%s", d->err);
	modeldir_close(d);
	tu_rmtree(tmp);
	free(tmp);
}
END_TEST

/* The bandwidth probe's read returns the 64-bit sum of what it read, tail
 * included (so the compiler cannot skip the reads, and bench's number is
 * the bytes asked for). */
START_TEST(read_sums_every_word)
{
	if (!use_kernels(_i))
		return;
	enum { N = 1500 }; /* 12000 bytes: two 4 KiB pieces, 128-byte steps and a tail */
	uint64_t *w = malloc(N * sizeof *w), want = 0;
	for (int i = 0; i < N; i++)
		want += w[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
	for (int way = 0; way < KERN_READ_WAYS; way++) {
		ck_assert_uint_eq(kern_read(w, N * 8, way), want);
		ck_assert_uint_eq(kern_read(w, 8 * 3, way), w[0] + w[1] + w[2]);
		/* from 8 and 16 bytes past a 32-byte boundary: the same words */
		ck_assert_uint_eq(kern_read(w + 1, (N - 1) * 8, way), want - w[0]);
		ck_assert_uint_eq(kern_read(w + 2, (N - 2) * 8, way), want - w[0] - w[1]);
		/* unaligned, with bytes past the last whole word ignored */
		uint64_t v;
		memcpy(&v, (char *)w + 3, 8);
		ck_assert_uint_eq(kern_read((char *)w + 3, 8 + 5, way), v);
	}
	free(w);
}
END_TEST

/* Both norms against a double-precision reference, for widths in and past
 * the vector loop, on values far from zero mean (layernorm's variance must
 * not cancel). */
START_TEST(norms_match_double)
{
	if (!use_kernels(_i))
		return;
	const int dims[] = { 1, 8, 13, 901 };
	for (int d = 0; d < 4; d++) {
		int dim = dims[d];
		float *x = malloc(2 * dim * sizeof *x), *w = malloc(dim * sizeof *w);
		float *b = malloc(dim * sizeof *b), *y = malloc(2 * dim * sizeof *y);
		for (int i = 0; i < 2 * dim; i++)
			x[i] = 100.0f + frand();
		for (int i = 0; i < dim; i++) {
			w[i] = 1.0f + frand();
			b[i] = frand();
		}
		ops_rmsnorm(y, x, w, 2, dim, 1e-6f);
		for (int t = 0; t < 2; t++) {
			double ss = 0;
			for (int i = 0; i < dim; i++)
				ss += (double)x[t * dim + i] * x[t * dim + i];
			double r = 1 / sqrt(ss / dim + 1e-6);
			for (int i = 0; i < dim; i++)
				ck_assert_double_eq_tol(y[t * dim + i], w[i] * x[t * dim + i] * r,
							2e-6 * fabs(w[i] * x[t * dim + i] * r));
		}
		ops_layernorm(y, x, w, b, 2, dim, 1e-5f);
		for (int t = 0; t < 2 && dim > 1; t++) {
			double mean = 0, var = 0;
			for (int i = 0; i < dim; i++)
				mean += x[t * dim + i];
			mean /= dim;
			for (int i = 0; i < dim; i++)
				var += (x[t * dim + i] - mean) * (x[t * dim + i] - mean);
			var /= dim;
			for (int i = 0; i < dim; i++) {
				double ref = (x[t * dim + i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
				ck_assert_msg(fabs(y[t * dim + i] - ref) < 1e-4 * (1 + fabs(ref)),
					      "layernorm dim %d [%d]: %g vs %g", dim, i, y[t * dim + i],
					      ref);
			}
		}
		free(x);
		free(w);
		free(b);
		free(y);
	}
}
END_TEST

/* silu(g) * up to within a few float roundings of the exact value, across
 * the whole range of e^-g (both clamps of the vector exp included), in the
 * vector loop and its tail; NaN stays NaN. */
START_TEST(silu_mul_is_accurate)
{
	if (!use_kernels(_i))
		return;
	enum { N = 4003 };
	float *g = malloc(N * sizeof *g), *up = malloc(N * sizeof *up), *g0 = malloc(N * sizeof *g0);
	for (int i = 0; i < N; i++) {
		g0[i] = g[i] = -100.0f + 200.0f * i / (N - 1) + 0.01f * frand();
		up[i] = 1.0f + frand();
	}
	g0[17] = g[17] = 88.5f;   /* e^-g below the smallest normal */
	g0[18] = g[18] = -88.5f;  /* e^-g above the largest float */
	g0[19] = g[19] = 0.0f;
	g0[N - 1] = g[N - 1] = -3.25f; /* the tail */
	g[N - 2] = NAN;
	kern_silu_mul(g, up, N);
	for (int i = 0; i < N - 2; i++) {
		double ref = (double)g0[i] / (1.0 + exp(-(double)g0[i])) * up[i];
		ck_assert_msg(fabs(g[i] - ref) <= 1e-6 * fabs(ref) + 1e-36,
			      "silu(%.9g) * %.9g = %.9g, expected %.9g", g0[i], up[i], g[i], ref);
	}
	ck_assert_float_nan(g[N - 2]);
	double ref = -3.25 / (1 + exp(3.25)) * up[N - 1];
	ck_assert_double_eq_tol(g[N - 1], ref, 1e-6 * fabs(ref));
	free(g);
	free(up);
	free(g0);
}
END_TEST

/* Greedy's pick: the first of equal maxima, NaNs skipped, wherever the
 * maximum sits relative to the vector loop and its tail. */
START_TEST(argmax_first_max_skips_nan)
{
	if (!use_kernels(_i))
		return;
	enum { N = 1003 };
	float *x = malloc(N * sizeof *x);
	for (int i = 0; i < N; i++)
		x[i] = frand();
	const int at[] = { 0, 7, 15, 16, 500, 991, 1000, N - 1 };
	for (int k = 0; k < 8; k++) {
		float keep = x[at[k]];
		x[at[k]] = 2.0f;
		ck_assert_int_eq(kern_argmax(x, N), at[k]);
		x[at[k]] = keep;
	}
	x[100] = x[900] = 3.0f; /* a tie goes to the lower index */
	x[50] = x[950] = NAN;
	ck_assert_int_eq(kern_argmax(x, N), 100);
	ck_assert_int_eq(kern_argmax(x + 101, N - 101), 900 - 101);
	for (int i = 0; i < N; i++)
		x[i] = i % 3 ? -INFINITY : NAN;
	ck_assert_int_eq(kern_argmax(x, N), 0);
	x[777] = -1e30f;
	ck_assert_int_eq(kern_argmax(x, N), 777);
	free(x);
}
END_TEST

/* ---- the thread pool --------------------------------------------------------------- */

typedef struct {
	int *seen;     /* per item: the tag of the last job that ran it */
	int *runs;     /* per item: how many times this job ran it */
	int tag;
	int64_t align, n;
	int bad;       /* ranges not aligned, or past n */
} tag_job;

static void tag_items(void *ctx, int64_t b, int64_t e, int thread)
{
	tag_job *j = ctx;
	(void)thread;
	if (b % j->align != 0 || e > j->n || b >= e)
		__atomic_fetch_add(&j->bad, 1, __ATOMIC_RELAXED);
	for (int64_t i = b; i < e; i++) {
		j->seen[i] = j->tag;
		__atomic_fetch_add(&j->runs[i], 1, __ATOMIC_RELAXED);
	}
}

/* Every item of every job is written by that job exactly once before
 * pool_run returns, however the range is cut; many short jobs back to back
 * (decode posts hundreds per token) catch a worker that claims a range of
 * a job that has ended or not yet been published. */
START_TEST(pool_covers_every_item_once)
{
	for (int threads = 1; threads <= 3; threads++) {
		mh_pool *p = pool_new(threads);
		ck_assert_ptr_nonnull(p);
		ck_assert_int_eq(pool_size(p), threads);
		enum { N = 97 };
		int seen[N], runs[N];
		memset(seen, 0, sizeof seen);
		memset(runs, 0, sizeof runs);
		int jobs = threads == 2 ? 1000000 : 100000; /* the CI machine has 2 cores */
		for (int tag = 1; tag <= jobs; tag++) {
			int64_t n = 1 + tag % N, align = 1 + tag % 5;
			int chunks = tag % 7;   /* 0: one per thread */
			tag_job j = { seen, runs, tag, align, n, 0 };
			pool_run_chunks(p, n, align, chunks, tag_items, &j);
			for (int64_t i = 0; i < n; i++) {
				if (seen[i] != tag || runs[i] != 1)
					ck_abort_msg("%d threads, job %d: item %lld of %lld holds %d, "
						     "ran %d times", threads, tag, (long long)i,
						     (long long)n, seen[i], runs[i]);
				runs[i] = 0;
			}
			ck_assert_int_eq(j.bad, 0);
		}
		pool_free(p);
	}
}
END_TEST

typedef struct {
	mh_pool *pool;
	int *seen;
	_Atomic int inner_threads_differ;
} nest_job;

static void inner(void *ctx, int64_t b, int64_t e, int thread)
{
	int *t = ctx;
	if (b != 0 || e != 8 || thread != *t)
		*t = -1;
}

static void outer(void *ctx, int64_t b, int64_t e, int thread)
{
	nest_job *j = ctx;
	for (int64_t i = b; i < e; i++) {
		int t = thread;
		pool_run(j->pool, 8, inner, &t); /* runs whole, on this thread */
		if (t != thread)
			j->inner_threads_differ = 1;
		j->seen[i]++;
	}
}

/* A plugin may call matmul from inside parallel_for: each call, on
 * whichever thread, gets the result it would get alone (the BF16 kernel's
 * reordered x must not be shared between threads). */
typedef struct {
	const mh_tensor *w;
	const float *x;
	float *y;
	int cols, rows;
} mm_in_job;

static void matmul_each(void *ctx, int64_t b, int64_t e, int thread)
{
	const mm_in_job *j = ctx;
	for (int64_t i = b; i < e; i++)
		ops_matmul(j->y + i * j->rows, j->x + i * j->cols, j->w, NULL, 1);
}

START_TEST(matmul_inside_a_job)
{
	if (!use_kernels(_i))
		return;
	/* calls long enough (~20 us) that both threads run them at once */
	enum { ROWS = 256, COLS = 1030, N = 32 };
	weight w = make_weight(MH_BF16, ROWS, COLS);
	float *x = malloc(N * COLS * sizeof *x), *y = malloc(N * ROWS * sizeof *y);
	for (int i = 0; i < N * COLS; i++)
		x[i] = frand();
	for (int rep = 0; rep < 10; rep++) {
		mm_in_job j = { &w.t, x, y, COLS, ROWS };
		pool_run(ops_pool(), N, matmul_each, &j);
		for (int i = 0; i < N; i++)
			for (int r = 0; r < ROWS; r++) {
				double ref = 0;
				for (int c = 0; c < COLS; c++)
					ref += (double)x[i * COLS + c] * w.ref[r * COLS + c];
				ck_assert_msg(fabs(y[i * ROWS + r] - ref) < 1e-4 * (1 + fabs(ref)),
					      "call %d row %d: %g, expected %g", i, r, y[i * ROWS + r],
					      ref);
			}
	}
	free(x);
	free(y);
	free(w.ref);
	free(w.store);
}
END_TEST

START_TEST(pool_nested_runs_go_serial)
{
	mh_pool *p = pool_new(2);
	int seen[64] = { 0 };
	nest_job j = { p, seen, 0 };
	pool_run(p, 64, outer, &j);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(seen[i], 1);
	ck_assert_int_eq(j.inner_threads_differ, 0);
	pool_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ops");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, matmul_every_dtype_and_path, 0, N_KSETS);
	tcase_add_loop_test(tc, matmul_n_is_matmul_for_each, 0, N_KSETS);
	tcase_add_loop_test(tc, matmul_one_token_at_every_alignment, 0, N_KSETS);
	tcase_add_loop_test(tc, one_token_rows_do_not_depend_on_their_range, 0, N_KSETS);
	tcase_add_loop_test(tc, many_tokens_are_each_one_token, 0, N_KSETS);
	tcase_add_loop_test(tc, prefill_does_not_depend_on_the_pool, 0, N_KSETS);
	tcase_add_loop_test(tc, gemm_is_one_fma_chain_a_result, 0, N_KSETS);
	tcase_add_test(tc, quant_blocks_are_ggml_layout);
	tcase_add_loop_test(tc, quantizers_match_the_reference, 0, N_KSETS);
	tcase_add_test(tc, weight_quantizes_for_new_plugins_only);
	tcase_add_loop_test(tc, matmul_quant_matches_reference, 0, N_KSETS);
	tcase_add_loop_test(tc, quant_activations_are_close_and_nan_shows, 0, N_KSETS);
	tcase_add_loop_test(tc, quant_matmul_n_embed_rows, 0, N_KSETS);
	tcase_add_loop_test(tc, embed_and_convert, 0, N_KSETS);
	tcase_add_loop_test(tc, attention_windows, 0, N_KSETS);
	tcase_add_test(tc, norms_and_activations);
	tcase_add_test(tc, rope_variants);
	tcase_add_loop_test(tc, read_sums_every_word, 0, N_KSETS);
	tcase_add_loop_test(tc, argmax_first_max_skips_nan, 0, N_KSETS);
	tcase_add_loop_test(tc, silu_mul_is_accurate, 0, N_KSETS);
	tcase_add_loop_test(tc, norms_match_double, 0, N_KSETS);
	tcase_add_loop_test(tc, matmul_inside_a_job, 0, N_KSETS);
	tcase_add_test(tc, pool_covers_every_item_once);
	tcase_add_test(tc, pool_nested_runs_go_serial);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
