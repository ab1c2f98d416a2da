/* test_pool.c — the kernels' thread pool (kernels/pool.h): every item of every
 * task runs exactly once, on a valid thread number, and the task is over when
 * kern_parallel returns; whatever the thread count, nesting, concurrent callers,
 * or workers that have gone to sleep between tasks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "pool.h"
#include "tap.h"

#define MAX_ITEMS 100000

struct count {
	_Atomic int *hits;
	_Atomic int bad_thread, max_thread;
	int limit; /* thread numbers must stay below it */
};

static void count_item(void *ctx, long i, int thread)
{
	struct count *c = ctx;
	atomic_fetch_add(&c->hits[i], 1);
	if (thread < 0 || thread >= c->limit)
		atomic_store(&c->bad_thread, 1);
	int m = atomic_load(&c->max_thread);
	while (thread > m && !atomic_compare_exchange_weak(&c->max_thread, &m, thread))
		;
}

/* Runs n items with nt threads; 1 when each ran once on a valid thread. */
static int run_count(long n, int nt, int limit, int *max_thread)
{
	static _Atomic int hits[MAX_ITEMS];
	for (long i = 0; i < n; i++)
		atomic_store(&hits[i], 0);
	struct count c = { .hits = hits, .limit = limit };
	kern_parallel(n, nt, count_item, &c);
	int good = !atomic_load(&c.bad_thread);
	for (long i = 0; i < n; i++)
		good &= atomic_load(&hits[i]) == 1;
	if (max_thread)
		*max_thread = atomic_load(&c.max_thread);
	return good;
}

static void test_counts(void)
{
	static const long sizes[] = { 0, 1, 2, 3, 7, 64, 1000, MAX_ITEMS };
	const int all = kern_threads();
	ok(all >= 1 && all <= kern_slots(), "kern_threads %d within 1..kern_slots %d", all, kern_slots());
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
		for (int nt = 0; nt <= all + 1; nt++)
			ok(run_count(sizes[s], nt, all, NULL), "%ld items, nt %d: each once, threads < %d", sizes[s],
			   nt, all);
	int mx = -1;
	ok(run_count(1000, 1, 1, &mx) && mx == 0, "nt 1: every item on the calling thread");
	kern_set_threads(1);
	ok(kern_threads() == 1 && run_count(1000, 0, 1, &mx) && mx == 0,
	   "kern_set_threads(1): every item on the calling thread");
	kern_set_threads(all);
	ok(kern_threads() == all, "kern_set_threads(%d) restores", all);
	kern_set_threads(1 << 20);
	ok(kern_threads() == kern_slots(), "a count past the processors is capped at %d", kern_slots());
	kern_set_threads(all);
}

/* A task inside an item runs inline, on the item's thread, before it returns. */
struct nest {
	_Atomic int bad, inner_total;
};

struct inner {
	struct nest *n;
	int outer_thread;
	int ran[16];
};

static void inner_item(void *ctx, long i, int thread)
{
	struct inner *in = ctx;
	in->ran[i]++;
	if (thread != in->outer_thread)
		atomic_store(&in->n->bad, 1);
	atomic_fetch_add(&in->n->inner_total, 1);
}

static void outer_item(void *ctx, long i, int thread)
{
	struct inner in = { .n = ctx, .outer_thread = thread };
	(void)i;
	kern_parallel(16, 0, inner_item, &in);
	for (int k = 0; k < 16; k++)
		if (in.ran[k] != 1)
			atomic_store(&in.n->bad, 1);
}

static void test_nested(void)
{
	struct nest n = { 0 };
	kern_parallel(50, 0, outer_item, &n);
	ok(!atomic_load(&n.bad) && atomic_load(&n.inner_total) == 50 * 16,
	   "nested tasks run inline on the item's thread, each item once");
}

/* Each task stamps its number into every item's slot: a worker that ran an
 * item of an earlier task late, or twice, leaves a wrong stamp or count. */
struct stamp {
	int task;
	int *slot;
	_Atomic int *runs;
};

static void stamp_item(void *ctx, long i, int thread)
{
	struct stamp *s = ctx;
	(void)thread;
	s->slot[i] = s->task;
	atomic_fetch_add(&s->runs[i], 1);
}

static int stamp_tasks(int n_tasks, int max_items, unsigned seed, int pause_every)
{
	int slot[64];
	_Atomic int runs[64];
	int good = 1;
	for (int t = 1; t <= n_tasks && good; t++) {
		seed = seed * 1103515245u + 12345u;
		int n = 1 + (int)((seed >> 16) % (unsigned)max_items);
		for (int i = 0; i < n; i++)
			atomic_store(&runs[i], 0);
		struct stamp s = { .task = t, .slot = slot, .runs = runs };
		kern_parallel(n, 0, stamp_item, &s);
		for (int i = 0; i < n; i++)
			good &= slot[i] == t && atomic_load(&runs[i]) == 1;
		if (pause_every && t % pause_every == 0) {
			/* past the workers' spin: they go to sleep and must be woken */
			struct timespec ts = { 0, 2000000 };
			nanosleep(&ts, NULL);
		}
	}
	return good;
}

static void test_tasks_in_a_row(void)
{
	ok(stamp_tasks(20000, 40, 1, 0), "20000 tasks back to back: each item once, of its own task");
	ok(stamp_tasks(60, 40, 2, 1), "60 tasks with the workers asleep between them");
}

struct caller {
	unsigned seed;
	int good;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	c->good = stamp_tasks(3000, 64, c->seed, 0);
	return NULL;
}

/* Two threads of the program's own run tasks at once: one waits for the other. */
static void test_two_callers(void)
{
	struct caller c[2] = { { .seed = 7 }, { .seed = 8 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, caller_main, &c[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ok(c[0].good && c[1].good, "two callers at once: 3000 tasks each, each item once");
}

int main(void)
{
	diag("processors %d, threads %d", kern_slots(), kern_threads());
	test_counts();
	test_nested();
	test_tasks_in_a_row();
	test_two_callers();
	return done_testing();
}
