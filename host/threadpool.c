/* threadpool.c - see threadpool.h.  Workers spin briefly on a generation
 * counter (decode issues hundreds of short jobs per token) and then sleep
 * on a condition variable. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERS 20000

struct mh_pool {
	int n;
	pthread_t *threads;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_cond_t done_cv;
	atomic_uint generation;
	atomic_int pending;
	int stop;
	/* the current job */
	int64_t total, align;
	mh_range_fn fn;
	void *ctx;
};

typedef struct {
	mh_pool *pool;
	int index;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* 1 + the thread's index while it runs a share of a job: nested runs go
 * serial on that thread. */
static _Thread_local int in_job;

static void run_share(mh_pool *p, int index)
{
	int64_t chunk = (p->total + p->n - 1) / p->n;
	chunk = (chunk + p->align - 1) / p->align * p->align;
	int64_t b = (int64_t)index * chunk, e = b + chunk;
	if (e > p->total)
		e = p->total;
	if (b < e) {
		in_job = index + 1;
		p->fn(p->ctx, b, e, index);
		in_job = 0;
	}
}

static void *worker(void *arg)
{
	worker_arg *wa = arg;
	mh_pool *p = wa->pool;
	int index = wa->index;
	free(wa);
	/* Not atomic_load(&p->generation): a job may already have been
	 * posted before this thread got here; no job was posted before the
	 * pool was created. */
	unsigned seen = 0;
	for (;;) {
		int spins = 0;
		while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
		       spins < SPIN_ITERS) {
			cpu_relax();
			spins++;
		}
		if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
			pthread_mutex_lock(&p->mu);
			while (atomic_load(&p->generation) == seen && !p->stop)
				pthread_cond_wait(&p->wake, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (p->stop)
			return NULL;
		seen = atomic_load(&p->generation);
		run_share(p, index);
		if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->done_cv);
			pthread_mutex_unlock(&p->mu);
		}
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
	atomic_fetch_add(&p->generation, 1);
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

int pool_size(const mh_pool *p)
{
	return p ? p->n : 1;
}

void pool_run(mh_pool *p, int64_t n, mh_range_fn fn, void *ctx)
{
	pool_run_aligned(p, n, 1, fn, ctx);
}

void pool_run_aligned(mh_pool *p, int64_t n, int64_t align, mh_range_fn fn, void *ctx)
{
	if (n <= 0)
		return;
	if (!p || p->n == 1 || n <= align || in_job) {
		fn(ctx, 0, n, in_job ? in_job - 1 : 0);
		return;
	}
	p->total = n;
	p->align = align < 1 ? 1 : align;
	p->fn = fn;
	p->ctx = ctx;
	atomic_store(&p->pending, p->n - 1);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	run_share(p, 0);
	int spins = 0;
	while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < SPIN_ITERS) {
		cpu_relax();
		spins++;
	}
	if (atomic_load(&p->pending) > 0) {
		pthread_mutex_lock(&p->mu);
		while (atomic_load(&p->pending) > 0)
			pthread_cond_wait(&p->done_cv, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}
