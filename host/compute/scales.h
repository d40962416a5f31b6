/* SPDX-License-Identifier: MIT */
/* scales.h - the block scales of stored Q8_0/Q4_0 tensors, checked for
 * Inf/NaN on first use.  Model directories open without reading them
 * (ST_DEFER_SCALES); before the first forward pass the session hands the
 * dir to scales_watch(), and every op that reads a weight asks
 * scales_check_use() first: a tensor is checked, over the thread pool,
 * just before its first use, so that the op then reads it from cache
 * rather than from memory a second time.  A bad scale is an error on the
 * dir, and the op does not run. */
#ifndef MH_SCALES_H
#define MH_SCALES_H

#include "model/modeldir.h"

/* Watch d's stored quantized tensors until each has been checked (nothing
 * when it has none or d->scales_checked).  -1 when out of memory: the
 * caller checks them all now instead (quantize_check_scales). */
int scales_watch(mh_dir *d);
/* Before an op reads weight w (or a view of it): check the watched tensor
 * that holds w's data if it was not yet.  0, or -1 with an error recorded
 * on its dir naming the tensor.  Costs one atomic load once every watched
 * tensor is checked. */
int scales_check_use(const mh_tensor *w);

#endif
