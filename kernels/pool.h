/* pool.h — the kernels' threads: a pool that runs the items of a task.
 *
 * kern_parallel(n, nt, fn, ctx) calls fn(ctx, item, thread) once for each item
 * in [0, n), on the calling thread and up to nt - 1 workers (nt <= 0: up to
 * kern_threads() - 1; nt == 1: on the calling thread alone), and
 * returns when every item is done. Items are claimed one at a time, so the
 * task ends as soon as its items are done: a worker that the system has not
 * scheduled (another process holds its core) is never waited for unless it
 * holds an item, and the threads that run do its share. That is what keeps
 * decode steady under load, where a barrier that waits for every thread of a
 * team stalls at each of the ~200 regions a token takes.
 *
 * Workers spin a little between tasks (a token's tasks follow each other within
 * microseconds), then sleep on a futex; the caller never waits for one to wake.
 *
 * An item must not depend on which thread runs it, nor on the order of items:
 * `thread` (0 = the caller, < kern_threads()) only picks per-thread scratch. So
 * results are the same whatever the scheduling. A kern_parallel inside an item,
 * or from a thread while another thread's task runs, runs its items inline on
 * that thread, with the same `thread`. */
#ifndef KB_POOL_H
#define KB_POOL_H

typedef void kern_task_fn(void *ctx, long item, int thread);

void kern_parallel(long n_items, int nt, kern_task_fn *fn, void *ctx);

/* Threads a task may use: n (n <= 0: OMP_NUM_THREADS when set, else the
 * processors this process may run on), at most kern_slots(). */
void kern_set_threads(int n);
int kern_threads(void);
/* The processors this process may run on: an upper bound of `thread` + 1, for
 * sizing per-thread scratch once, whatever the thread count is set to later. */
int kern_slots(void);

#endif
