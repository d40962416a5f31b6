/* SPDX-License-Identifier: MIT */
/* quant.c - see quant.h. */
#include "compute/quant.h"
#include "base/util.h"

#include <math.h>
#include <string.h>

/* v rounded and cut to [lo, hi]; 0 for NaN (a cast of NaN is undefined) */
static inline int clamp_round(float v, int lo, int hi)
{
	if (!(v >= (float)lo))
		return v != v ? 0 : lo;
	return v > (float)hi ? hi : (int)roundf(v);
}

/* ggml's quantize_row_q8_0_ref */
void quant_row_q8_0(void *dst, const float *x, int64_t n)
{
	mh_block_q8_0 *y = dst;
	for (int64_t b = 0; b < n / MH_QBLOCK; b++, x += MH_QBLOCK) {
		float amax = 0;
		for (int j = 0; j < MH_QBLOCK; j++)
			amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
		float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
		y[b].d = mh_f32_to_f16(d);
		for (int j = 0; j < MH_QBLOCK; j++)
			y[b].qs[j] = (int8_t)clamp_round(x[j] * id, -127, 127);
	}
}

/* ggml's quantize_row_q4_0_ref: the value of largest magnitude, sign
 * kept, maps to -8, so the block uses the full range on its wide side */
void quant_row_q4_0(void *dst, const float *x, int64_t n)
{
	mh_block_q4_0 *y = dst;
	for (int64_t b = 0; b < n / MH_QBLOCK; b++, x += MH_QBLOCK) {
		float amax = 0, max = 0;
		for (int j = 0; j < MH_QBLOCK; j++)
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
		y[b].d = mh_f32_to_f16(d);
		for (int j = 0; j < MH_QBLOCK / 2; j++) {
			/* ggml truncates x * id + 8.5 toward zero: round half up */
			float v0 = x[j] * id + 8.5f, v1 = x[j + 16] * id + 8.5f;
			int q0 = v0 >= 0 && v0 < 16 ? (int)v0 : v0 >= 16 ? 15 : 0;
			int q1 = v1 >= 0 && v1 < 16 ? (int)v1 : v1 >= 16 ? 15 : 0;
			y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
		}
	}
}

void quant_row(mh_dtype dt, void *dst, const float *x, int64_t n)
{
	if (dt == MH_Q8_0)
		quant_row_q8_0(dst, x, n);
	else
		quant_row_q4_0(dst, x, n);
}

void dequant_row(mh_dtype dt, float *dst, const void *src, int64_t n)
{
	if (dt == MH_Q8_0) {
		const mh_block_q8_0 *b = src;
		for (int64_t i = 0; i < n / MH_QBLOCK; i++) {
			float d = mh_f16_to_f32(b[i].d);
			for (int j = 0; j < MH_QBLOCK; j++)
				dst[i * MH_QBLOCK + j] = d * b[i].qs[j];
		}
	} else {
		const mh_block_q4_0 *b = src;
		for (int64_t i = 0; i < n / MH_QBLOCK; i++) {
			float d = mh_f16_to_f32(b[i].d);
			for (int j = 0; j < MH_QBLOCK / 2; j++) {
				dst[i * MH_QBLOCK + j] = d * ((b[i].qs[j] & 15) - 8);
				dst[i * MH_QBLOCK + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
			}
		}
	}
}

void quant_x(void *dst, const float *x, int64_t cols)
{
	int8_t *q = dst;
	float *d = (float *)(q + cols);
	int32_t *sum = (int32_t *)(d + cols / 32);
	for (int64_t b = 0; b < cols / MH_QBLOCK; b++) {
		const float *xb = x + b * MH_QBLOCK;
		float amax = 0;
		int bad = 0;
		for (int j = 0; j < MH_QBLOCK; j++) {
			bad |= !isfinite(xb[j]);
			amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
		}
		float s = amax / 127, id = s != 0 ? 1.0f / s : 0.0f;
		int32_t t = 0;
		for (int j = 0; j < MH_QBLOCK; j++) {
			float v = bad ? 0.0f : xb[j] * id;
			int qv = v > 127 ? 127 : v < -127 ? -127 : (int)nearbyintf(v);
			q[b * MH_QBLOCK + j] = (int8_t)qv;
			t += qv;
		}
		d[b] = bad ? NAN : s;
		sum[b] = t;
	}
}

/* Block b's 32 weights as integers (Q4_0 without its offset of 8) and
 * scale; *off is what to subtract times the block's x sum. */
static inline float block_ints(mh_dtype dt, const void *w, int64_t b, int *q, int *off)
{
	if (dt == MH_Q8_0) {
		const mh_block_q8_0 *bl = (const mh_block_q8_0 *)w + b;
		for (int j = 0; j < MH_QBLOCK; j++)
			q[j] = bl->qs[j];
		*off = 0;
		return mh_f16_to_f32(bl->d);
	}
	const mh_block_q4_0 *bl = (const mh_block_q4_0 *)w + b;
	for (int j = 0; j < MH_QBLOCK / 2; j++) {
		q[j] = bl->qs[j] & 15;
		q[j + 16] = bl->qs[j] >> 4;
	}
	*off = 8;
	return mh_f16_to_f32(bl->d);
}

float quant_dot_ref(mh_dtype dt, const void *w, const void *qx, int64_t cols)
{
	const int8_t *xq = qx_q(qx);
	const float *xd = qx_d(qx, cols);
	float l[2][8] = { { 0 } };
	for (int64_t b = 0; b < cols / MH_QBLOCK; b++) {
		int q[MH_QBLOCK], off;
		float d = block_ints(dt, w, b, q, &off) * xd[b];
		for (int k = 0; k < 8; k++) {
			int32_t s = 0;
			for (int j = 4 * k; j < 4 * k + 4; j++)
				s += (q[j] - off) * xq[b * MH_QBLOCK + j];
			l[b % 2][k] = fmaf(d, (float)s, l[b % 2][k]);
		}
	}
	float r[8];
	for (int k = 0; k < 8; k++)
		r[k] = l[0][k] + l[1][k];
	return quant_hsum8(r);
}

float quant_dot_f32_ref(mh_dtype dt, const void *w, const float *x, int64_t cols)
{
	float a[4][8] = { { 0 } };
	for (int64_t b = 0; b < cols / MH_QBLOCK; b++) {
		int q[MH_QBLOCK], off;
		float d = block_ints(dt, w, b, q, &off);
		for (int j = 0; j < MH_QBLOCK; j++)
			a[j / 8][j % 8] = fmaf(d * (float)(q[j] - off), x[b * MH_QBLOCK + j],
					       a[j / 8][j % 8]);
	}
	float l[8];
	for (int k = 0; k < 8; k++)
		l[k] = (a[0][k] + a[1][k]) + (a[2][k] + a[3][k]);
	return quant_hsum8(l);
}

int quant_scales_finite(mh_dtype dt, const void *data, int64_t rows, int64_t cols)
{
	size_t bs = dt == MH_Q8_0 ? sizeof(mh_block_q8_0) : sizeof(mh_block_q4_0);
	int64_t nb = rows * (cols / MH_QBLOCK);
	const unsigned char *p = data;
	for (int64_t i = 0; i < nb; i++) {
		uint16_t d;
		memcpy(&d, p + (size_t)i * bs, 2);
		if ((d & 0x7c00) == 0x7c00)
			return 0;
	}
	return 1;
}
