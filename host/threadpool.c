/* threadpool.c - see threadpool.h.
 *
 * A job is [0, total) in units of `align` items.  Every thread, the
 * caller's included, claims ranges of units from one atomic counter until
 * none is left, so a worker that the OS has not scheduled (other processes
 * on the same cores) delays nothing: the others take its share.  Claims are
 * guided: each takes 1/(2 x threads) of what is left, but never less than
 * the job's smallest range, so the ranges shrink towards the end and the
 * threads finish together (with 8 equal ranges per matmul, decode's threads
 * waited for each other a tenth of the time).  The counter carries the
 * job's generation in its high half, so a late worker can never claim a
 * range of a job other than the one it saw posted.
 *
 * Workers spin briefly for the next job (decode posts hundreds of short
 * jobs per token), then yield, then sleep on a condition variable. */
#include "threadpool.h"

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

struct mh_pool {
	int n;
	pthread_t *threads;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_cond_t done_cv;
	_Atomic uint64_t claim;   /* generation << 32 | units not yet claimed */
	_Atomic uint32_t min_take; /* the current job's smallest range, in units */
	atomic_uint done;         /* units finished in this job */
	atomic_int caller_sleeping;
	atomic_int sleepers;      /* workers waiting on wake */
	atomic_int stop;
	/* the current job: written before claim publishes it, read by a worker
	 * only once it holds an unfinished range (the job cannot end before) */
	uint32_t generation;
	int64_t total, align;
	uint32_t units;
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

/* Claim and run ranges of generation gen until none is left. */
static void work(mh_pool *p, uint32_t gen, int index)
{
	for (;;) {
		uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
		uint32_t left = (uint32_t)v;
		if ((uint32_t)(v >> 32) != gen || left == 0)
			return;
		/* min_take may already belong to a later job; then the CAS below
		 * fails (that job cannot be posted while this one has units left)
		 * and the value is not used */
		uint32_t take = left / (2 * (uint32_t)p->n);
		uint32_t least = atomic_load_explicit(&p->min_take, memory_order_relaxed);
		if (take < least)
			take = least;
		if (take > left)
			take = left;
		if (!atomic_compare_exchange_weak_explicit(&p->claim, &v, v - take,
							   memory_order_acq_rel,
							   memory_order_acquire))
			continue;
		uint32_t units = p->units;
		int64_t b = (int64_t)(units - left) * p->align;
		int64_t e = (int64_t)(units - left + take) * p->align;
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
		while ((gen = (uint32_t)(atomic_load_explicit(&p->claim, memory_order_acquire) >>
					 32)) == seen) {
			if (backoff(&spins)) {
				pthread_mutex_lock(&p->mu);
				atomic_fetch_add(&p->sleepers, 1);
				while ((uint32_t)(atomic_load(&p->claim) >> 32) == seen && !p->stop)
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
		work(p, gen, index);
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
	if (!p->threads) {
		free(p);
		return NULL;
	}
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
	p->generation++;
	atomic_store(&p->claim, (uint64_t)p->generation << 32);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done_cv);
	free(p->threads);
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
	while (units > INT32_MAX) { /* keep the count in the claim word */
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
	uint32_t gen = ++p->generation;
	atomic_store(&p->claim, (uint64_t)gen << 32 | (uint32_t)units);
	/* wake sleepers; spinning workers see the new generation by themselves */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mu);
	}
	work(p, gen, 0);
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
