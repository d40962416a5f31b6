/* SPDX-License-Identifier: MIT */
/* blas.c - see blas.h. */
#include "config.h"
#include "compute/blas.h"

#include <cblas.h>
#include <stdio.h>

#if defined(HAVE_OPENBLAS_SET_NUM_THREADS) && defined(HAVE_OPENBLAS_GET_CORENAME)
/* OpenBLAS's cblas.h declares both. */
int blas_set_threads(int n)
{
	openblas_set_num_threads(n);
	return 1;
}

const char *blas_describe(void)
{
	const char *core = openblas_get_corename();
	return core ? core : "unknown";
}
#elif defined(HAVE_FLEXIBLAS_API_H)
#include <flexiblas_api.h>

int blas_set_threads(int n)
{
	flexiblas_set_num_threads(n);
	return 1;
}

const char *blas_describe(void)
{
	static char name[128];
	if (flexiblas_current_backend(name, sizeof name) <= 0)
		snprintf(name, sizeof name, "flexiblas");
	return name;
}
#else
int blas_set_threads(int n)
{
	return 0;
}

const char *blas_describe(void)
{
	return MH_BLAS_NAME;
}
#endif
