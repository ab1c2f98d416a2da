/* pool.c — see pool.h.
 *
 * One task at a time (a mutex). Its items are claimed from one 64-bit word,
 * the task's generation in the high half and the next item in the low half,
 * by compare-and-swap: a worker that wakes late, when its task is over and the
 * next one has begun, sees the generation change and claims nothing. The task
 * descriptors alternate between two slots, so the one a worker reads is not
 * rewritten before every item of it has been claimed. */
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "util.h"

/* How long a worker spins for the next task before it sleeps: a decode
 * token's tasks come microseconds apart, its tokens tens of microseconds apart. */
#define POOL_SPIN_NS 200000

struct task {
	_Atomic(kern_task_fn *) fn;
	_Atomic(void *) ctx;
	_Atomic long n;
	_Atomic int nt; /* threads it may use */
};

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	int slots, threads, workers; /* workers started */
	uint32_t gen;                /* the last task's generation (under lock) */
	struct task task[2];
	_Atomic uint64_t claim; /* gen << 32 | next item */
	_Atomic uint32_t wake;  /* gen: what sleeping workers wait on */
	_Atomic uint32_t done;  /* items of the current task done */
	_Atomic int sleepers, caller_waiting;
	long spin_ns;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT };

static _Thread_local int tl_thread = -1; /* in a task: this thread's number */

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int n)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void pool_init(void)
{
	cpu_set_t set;
	pool.slots = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
	if (pool.slots <= 0)
		pool.slots = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (pool.slots <= 0)
		pool.slots = 1;
	const char *env = getenv("OMP_NUM_THREADS");
	int n = env && *env ? atoi(env) : 0;
	pool.threads = n > 0 && n < pool.slots ? n : pool.slots;
	pool.spin_ns = POOL_SPIN_NS;
	env = getenv("KVBLEND_SPIN_US");
	if (env && *env)
		pool.spin_ns = atol(env) * 1000L;
}

int kern_slots(void)
{
	pthread_once(&pool.once, pool_init);
	return pool.slots;
}

void kern_set_threads(int n)
{
	pthread_once(&pool.once, pool_init);
	if (n <= 0) {
		const char *env = getenv("OMP_NUM_THREADS");
		n = env && *env ? atoi(env) : 0;
	}
	pthread_mutex_lock(&pool.lock);
	pool.threads = n > 0 && n < pool.slots ? n : pool.slots;
	pthread_mutex_unlock(&pool.lock);
#ifdef _OPENMP
	omp_set_num_threads(pool.threads); /* the loops outside the kernels that are OpenMP's */
#endif
}

int kern_threads(void)
{
	pthread_once(&pool.once, pool_init);
	return pool.threads;
}

/* Claim and run items of task g until none is left (or g is over). */
static void run_items(uint32_t g, int self)
{
	const struct task *t = &pool.task[g & 1];
	for (;;) {
		uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
		if ((uint32_t)(c >> 32) != g)
			return;
		long n = atomic_load_explicit(&t->n, memory_order_relaxed);
		if (self >= atomic_load_explicit(&t->nt, memory_order_relaxed) || (long)(uint32_t)c >= n)
			return;
		kern_task_fn *fn = atomic_load_explicit(&t->fn, memory_order_relaxed);
		void *ctx = atomic_load_explicit(&t->ctx, memory_order_relaxed);
		if (!atomic_compare_exchange_weak_explicit(&pool.claim, &c, c + 1, memory_order_acq_rel,
							   memory_order_relaxed))
			continue;
		fn(ctx, (long)(uint32_t)c, self);
		if (atomic_fetch_add(&pool.done, 1) + 1 == (uint32_t)n && atomic_load(&pool.caller_waiting))
			futex_wake(&pool.done, 1);
	}
}

/* Wait until *w equals v (until_equal) or differs from it: spin for
 * pool.spin_ns, then sleep on the futex, counted in *sleeping so that the
 * thread that changes *w knows to wake it. */
static void await_word(_Atomic uint32_t *w, uint32_t v, bool until_equal, _Atomic int *sleeping)
{
	long t0 = 0;
	for (int i = 0; (atomic_load_explicit(w, memory_order_acquire) == v) != until_equal; i++) {
		cpu_relax();
		if ((i & 63) != 63)
			continue;
		long t = now_ns();
		if (!t0) {
			t0 = t;
		} else if (t - t0 >= pool.spin_ns) {
			atomic_fetch_add(sleeping, 1);
			uint32_t d;
			while (((d = atomic_load(w)) == v) != until_equal)
				futex_wait(w, d);
			atomic_fetch_sub(sleeping, 1);
			return;
		}
	}
}

static void *worker(void *arg)
{
	const int self = (int)(intptr_t)arg;
	uint32_t seen = atomic_load(&pool.wake);
	tl_thread = self;
	for (;;) {
		await_word(&pool.wake, seen, false, &pool.sleepers);
		seen = atomic_load_explicit(&pool.wake, memory_order_acquire);
		run_items(seen, self);
	}
	return NULL;
}

/* Start workers up to threads - 1 (under lock); a failure leaves fewer. */
static void start_workers(void)
{
	while (pool.workers < pool.threads - 1) {
		pthread_t th;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)(pool.workers + 1));
		pthread_attr_destroy(&at);
		if (rc)
			return;
		pool.workers++;
	}
}

static void run_inline(long n, kern_task_fn *fn, void *ctx, int self)
{
	for (long i = 0; i < n; i++)
		fn(ctx, i, self);
}

void kern_parallel(long n, int nt, kern_task_fn *fn, void *ctx)
{
	if (n <= 0)
		return;
	ASSERT(n < INT32_MAX);
	if (tl_thread >= 0) { /* inside an item */
		run_inline(n, fn, ctx, tl_thread);
		return;
	}
#ifdef _OPENMP
	if (omp_in_parallel()) { /* a caller's OpenMP team: its own numbers */
		int self = omp_get_thread_num();
		run_inline(n, fn, ctx, self < kern_slots() ? self : kern_slots() - 1);
		return;
	}
#endif
	pthread_once(&pool.once, pool_init);
	if (nt <= 0 || nt > pool.threads)
		nt = pool.threads;
	if (n == 1 || nt == 1) {
		tl_thread = 0;
		run_inline(n, fn, ctx, 0);
		tl_thread = -1;
		return;
	}
	pthread_mutex_lock(&pool.lock);
	start_workers();
	uint32_t g = ++pool.gen;
	struct task *t = &pool.task[g & 1];
	atomic_store_explicit(&t->fn, fn, memory_order_relaxed);
	atomic_store_explicit(&t->ctx, ctx, memory_order_relaxed);
	atomic_store_explicit(&t->n, n, memory_order_relaxed);
	atomic_store_explicit(&t->nt, pool.workers < nt ? pool.workers + 1 : nt, memory_order_relaxed);
	atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
	atomic_store_explicit(&pool.claim, (uint64_t)g << 32, memory_order_release);
	atomic_store(&pool.wake, g);
	if (atomic_load(&pool.sleepers))
		futex_wake(&pool.wake, INT_MAX);

	tl_thread = 0;
	run_items(g, 0);
	/* what is left is items that workers hold */
	await_word(&pool.done, (uint32_t)n, true, &pool.caller_waiting);
	tl_thread = -1;
	pthread_mutex_unlock(&pool.lock);
}
