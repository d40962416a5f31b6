/* SPDX-License-Identifier: MIT */
/* threadpool.c - see threadpool.h.
 *
 * A job is [0, total) in units of `align` items.  Each thread owns one
 * contiguous part of it, [i/n, (i+1)/n) of the units, and claims ranges
 * from the front of its part, half of what is left each time but never
 * less than the job's smallest range.  A thread whose part is empty steals
 * from the back of the part with the most left, again half of it.  So each
 * thread reads one long run of memory per job, not a range here and
 * there: two threads reading 64 KiB ranges in turn got 70% of the
 * bandwidth that 1 MiB runs got.  And a worker that the OS has not
 * scheduled (other processes on the same cores) delays nothing: the
 * others take its part.
 *
 * A part is one 64-bit word, hi << 32 | lo, changed only by compare and
 * swap.  The job's other fields are read only after a successful claim:
 * a worker that saw an earlier job may claim a range of the current one,
 * and then runs it as part of the current one, which cannot end (or be
 * replaced) while that range is unfinished.
 *
 * Workers spin briefly for the next job (decode posts hundreds of short
 * jobs per token), then yield, then sleep on a condition variable. */
#include "compute/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* Busy-wait iterations (each a pause instruction) before yielding, and
 * sched_yield calls before sleeping.  Tuned on 2 cores shared with other
 * processes: long pure spinning starves a preempted thread of the pool. */
#ifndef SPIN_ITERS
#define SPIN_ITERS 4000
#endif
#ifndef YIELD_ITERS
#define YIELD_ITERS 50
#endif

typedef struct {
	_Alignas(64) _Atomic uint64_t range; /* hi << 32 | lo: units [lo, hi) unclaimed */
} part;

struct mh_pool {
	int n;
	pthread_t *threads;
	part *parts;              /* one per thread, each on its own cache line */
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_cond_t done_cv;
	atomic_uint posted;       /* generation of the latest job */
	atomic_uint done;         /* units finished in this job */
	atomic_int caller_sleeping;
	atomic_int sleepers;      /* workers waiting on wake */
	atomic_int stop;
	/* the current job: written before its parts are published */
	uint32_t generation, units;
	_Atomic uint32_t min_take; /* the job's smallest range, in units */
	int64_t total, align;
	mh_range_fn fn;
	void *ctx;
};

typedef struct {
	mh_pool *pool;
	int index;
} worker_arg;

/* 1 + the thread's index while it runs part of a job: nested runs go
 * serial on that thread. */
static _Thread_local int in_job;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* One step of waiting: spin, then yield, then 1 when it is time to sleep. */
static int backoff(int *spins)
{
	if (*spins < SPIN_ITERS)
		cpu_relax();
	else if (*spins < SPIN_ITERS + YIELD_ITERS)
		sched_yield();
	else
		return 1;
	++*spins;
	return 0;
}

static uint64_t range_word(uint32_t lo, uint32_t hi)
{
	return (uint64_t)hi << 32 | lo;
}

/* Take half of what is left of part k, at least `least` units (all, if
 * fewer are left): from the front for its owner, from the back for a
 * thief.  Returns the units taken (0 when the part is empty) and the
 * first of them in *first. */
static uint32_t take_half(part *k, uint32_t least, int from_back, uint32_t *first)
{
	uint64_t v = atomic_load_explicit(&k->range, memory_order_acquire);
	for (;;) {
		uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
		if (lo >= hi)
			return 0;
		uint32_t take = (hi - lo) / 2;
		if (take < least)
			take = least;
		if (take > hi - lo)
			take = hi - lo;
		uint64_t nv = from_back ? range_word(lo, hi - take) : range_word(lo + take, hi);
		if (atomic_compare_exchange_weak_explicit(&k->range, &v, nv, memory_order_acq_rel,
							  memory_order_acquire)) {
			*first = from_back ? hi - take : lo;
			return take;
		}
	}
}

/* The part with the most units left, other than `self`; -1 if all are
 * empty. */
static int fullest_part(mh_pool *p, int self)
{
	int best = -1;
	uint32_t most = 0;
	for (int k = 0; k < p->n; k++) {
		if (k == self)
			continue;
		uint64_t v = atomic_load_explicit(&p->parts[k].range, memory_order_relaxed);
		uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
		if (lo < hi && hi - lo > most) {
			most = hi - lo;
			best = k;
		}
	}
	return best;
}

/* Run ranges of the current job until no part has units left. */
static void work(mh_pool *p, int index)
{
	for (;;) {
		/* min_take may belong to an earlier job if this thread is late;
		 * it only sizes the claim, which stays inside the part */
		uint32_t least = atomic_load_explicit(&p->min_take, memory_order_relaxed);
		uint32_t first, take = take_half(&p->parts[index], least, 0, &first);
		while (!take) {
			int k = fullest_part(p, index);
			if (k < 0)
				return;
			take = take_half(&p->parts[k], least, 1, &first);
		}
		uint32_t units = p->units;
		int64_t b = (int64_t)first * p->align;
		int64_t e = (int64_t)(first + take) * p->align;
		if (e > p->total)
			e = p->total;
		in_job = index + 1;
		p->fn(p->ctx, b, e, index);
		in_job = 0;
		if (atomic_fetch_add(&p->done, take) + take == units &&
		    atomic_load(&p->caller_sleeping)) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->done_cv);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

static void *worker(void *arg)
{
	worker_arg *wa = arg;
	mh_pool *p = wa->pool;
	int index = wa->index;
	free(wa);
	uint32_t seen = 0; /* no job was posted before the pool existed */
	for (;;) {
		uint32_t gen;
		int spins = 0;
		while ((gen = atomic_load_explicit(&p->posted, memory_order_acquire)) == seen) {
			if (backoff(&spins)) {
				pthread_mutex_lock(&p->mu);
				atomic_fetch_add(&p->sleepers, 1);
				while (atomic_load(&p->posted) == seen && !p->stop)
					pthread_cond_wait(&p->wake, &p->mu);
				atomic_fetch_sub(&p->sleepers, 1);
				pthread_mutex_unlock(&p->mu);
				spins = 0;
				if (p->stop)
					return NULL;
			}
		}
		if (p->stop)
			return NULL;
		seen = gen;
		work(p, index);
	}
}

mh_pool *pool_new(int n_threads)
{
	if (n_threads < 1)
		n_threads = 1;
	mh_pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->n = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->threads = calloc(n_threads, sizeof *p->threads);
	p->parts = aligned_alloc(_Alignof(part), n_threads * sizeof *p->parts);
	if (!p->threads || !p->parts) {
		free(p->threads);
		free(p->parts);
		free(p);
		return NULL;
	}
	for (int i = 0; i < n_threads; i++)
		atomic_init(&p->parts[i].range, 0);
	for (int i = 1; i < n_threads; i++) {
		worker_arg *wa = malloc(sizeof *wa);
		if (!wa || (wa->pool = p, wa->index = i,
			    pthread_create(&p->threads[i], NULL, worker, wa)) != 0) {
			free(wa);
			p->n = i; /* run with the threads we got */
			break;
		}
	}
	return p;
}

void pool_free(mh_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	atomic_store(&p->posted, ++p->generation);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done_cv);
	free(p->threads);
	free(p->parts);
	free(p);
}

int pool_thread(void)
{
	return in_job ? in_job - 1 : 0;
}

int pool_size(const mh_pool *p)
{
	return p ? p->n : 1;
}

void pool_run(mh_pool *p, int64_t n, mh_range_fn fn, void *ctx)
{
	pool_run_chunks(p, n, 1, 0, fn, ctx);
}

void pool_run_aligned(mh_pool *p, int64_t n, int64_t align, mh_range_fn fn, void *ctx)
{
	pool_run_chunks(p, n, align, 0, fn, ctx);
}

void pool_run_chunks(mh_pool *p, int64_t n, int64_t align, int chunks, mh_range_fn fn,
		     void *ctx)
{
	if (n <= 0)
		return;
	if (align < 1)
		align = 1;
	if (!p || p->n == 1 || n <= align || in_job) {
		fn(ctx, 0, n, in_job ? in_job - 1 : 0);
		return;
	}
	if (chunks <= 0)
		chunks = p->n;
	int64_t units = (n + align - 1) / align;
	while (units > INT32_MAX) { /* keep the bounds in a part's word */
		align *= 2;
		units = (n + align - 1) / align;
	}
	if (chunks > units)
		chunks = (int)units;
	p->total = n;
	p->align = align;
	p->units = (uint32_t)units;
	p->fn = fn;
	p->ctx = ctx;
	atomic_store_explicit(&p->min_take, (uint32_t)((units + chunks - 1) / chunks),
			      memory_order_relaxed);
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	for (int i = 0; i < p->n; i++)
		atomic_store_explicit(&p->parts[i].range,
				      range_word((uint32_t)(units * i / p->n),
						 (uint32_t)(units * (i + 1) / p->n)),
				      memory_order_release);
	atomic_store(&p->posted, ++p->generation);
	/* wake sleepers; spinning workers see the new generation by themselves */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mu);
	}
	work(p, 0);
	int spins = 0;
	while (atomic_load_explicit(&p->done, memory_order_acquire) < p->units) {
		if (backoff(&spins)) {
			pthread_mutex_lock(&p->mu);
			atomic_store(&p->caller_sleeping, 1);
			while (atomic_load(&p->done) < p->units)
				pthread_cond_wait(&p->done_cv, &p->mu);
			atomic_store(&p->caller_sleeping, 0);
			pthread_mutex_unlock(&p->mu);
			break;
		}
	}
}
