/* SPDX-License-Identifier: MIT */
/* blas.c - see blas.h. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "config.h"
#include "compute/blas.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>

#if defined(HAVE_OPENBLAS_SET_NUM_THREADS) && defined(HAVE_OPENBLAS_GET_CORENAME)
/* Linked against OpenBLAS itself: its cblas.h declares both. */
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
#else
/* Linked against a CBLAS whose implementation is chosen at run time (Debian's
 * libblas.so.3 alternatives, FlexiBLAS's backends): ask the loaded library
 * for the thread controls the known ones export. */
#include <dlfcn.h>

static struct {
	int looked;
	void (*openblas_threads)(int);
	char *(*openblas_core)(void);
	void (*flexiblas_threads)(int);
	int (*flexiblas_backend)(char *, size_t);
	void (*blis_threads)(int64_t);  /* BLIS's dim_t */
} lib;

static void look_up(void)
{
	if (lib.looked)
		return;
	lib.looked = 1;
	*(void **)&lib.openblas_threads = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
	*(void **)&lib.openblas_core = dlsym(RTLD_DEFAULT, "openblas_get_corename");
	*(void **)&lib.flexiblas_threads = dlsym(RTLD_DEFAULT, "flexiblas_set_num_threads");
	*(void **)&lib.flexiblas_backend = dlsym(RTLD_DEFAULT, "flexiblas_current_backend");
	*(void **)&lib.blis_threads = dlsym(RTLD_DEFAULT, "bli_thread_set_num_threads");
}

int blas_set_threads(int n)
{
	look_up();
	if (lib.flexiblas_threads)
		lib.flexiblas_threads(n);
	else if (lib.openblas_threads)
		lib.openblas_threads(n);
	else if (lib.blis_threads)
		lib.blis_threads(n);
	else
		return 0;
	return 1;
}

const char *blas_describe(void)
{
	static char name[160];
	look_up();
	char backend[128] = "";
	if (lib.flexiblas_backend && lib.flexiblas_backend(backend, sizeof backend) > 0)
		snprintf(name, sizeof name, "%s (flexiblas)", backend);
	else if (lib.openblas_core && lib.openblas_core())
		snprintf(name, sizeof name, "%s (openblas via %s)", lib.openblas_core(), MH_BLAS_NAME);
	else if (lib.blis_threads)
		snprintf(name, sizeof name, "blis via %s", MH_BLAS_NAME);
	else
		snprintf(name, sizeof name, "%s", MH_BLAS_NAME);
	return name;
}
#endif
