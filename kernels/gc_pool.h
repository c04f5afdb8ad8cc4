/* graphc's worker pool for the gemm: a join that never waits for a worker that has not started.
 *
 * Why not an OpenMP region: its end barrier waits for every thread of the team, so each region
 * pays the wake-up of a sleeping worker (35-50 µs with OMP_WAIT_POLICY=PASSIVE on a 2-vCPU VM,
 * measured with an empty region) even when the caller could have done the whole job alone in
 * that time; and spinning OpenMP workers hold off OpenBLAS and other processes. Here the caller
 * posts a job of chunks, wakes the workers, and claims chunks itself at once; a worker that
 * arrives claims what is left. The caller then waits only for chunks a worker has claimed and is
 * running (a few µs each), never for a worker to wake. After a job a worker spins for
 * GC_POOL_SPIN_NS (the gemms of one training step come tens of µs apart), then sleeps on a futex.
 *
 * The job's state is one 64-bit word: generation (32 bits) | chunk count (16) | next chunk (16).
 * A claim is a compare-and-swap on the whole word, so a worker that read an older job's
 * descriptor can never claim a chunk of a newer one: its expected generation no longer matches,
 * and a job's descriptor is rewritten only after all of its chunks were claimed and finished.
 *
 * One job runs at a time in a process-wide pool (gc_pool_lock): a second thread that calls while
 * a job runs does its work alone. Linux only (futex); elsewhere the caller runs serially. */
#ifndef GC_POOL_H
#define GC_POOL_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* One chunk of a job: `slot` is 0 on the caller, 1.. on the workers (an index for per-thread
 * buffers, below the nthreads passed to gc_pool_run). */
typedef void (*gc_pool_task)(void *ctx, int64_t chunk, int slot);

/* Run task(ctx, c, slot) for every c in [0, chunks) on the caller and up to nthreads - 1 workers;
 * returns when all have finished. Defined in gc_pool.c, a library graphc builds once and loads
 * with RTLD_GLOBAL before any generated library (graphc/backends/c/pool.py); the reference is
 * weak, so a library loaded without it runs its jobs on the caller alone. */
void gc_pool_run(int nthreads, int64_t chunks, gc_pool_task task, void *ctx) __attribute__((weak));

/* out = {workers started in this process, jobs run through the pool, chunks the workers ran} */
void gc_pool_stats(int64_t out[3]) __attribute__((weak));

/* Whether gc_pool_run is there (graphc loaded the pool before this library). */
static inline int gc_pool_available(void) { return gc_pool_run != 0; }

/* gc_pool_run where the pool is there; else an OpenMP loop over the chunks (whose end barrier
 * waits for every thread: callers ask for threads only above a larger size then). */
static inline void gc_pool_jobs(int nthreads, int64_t chunks, gc_pool_task task, void *ctx) {
  if (nthreads < 2 || chunks < 2) {
    for (int64_t c = 0; c < chunks; c++) task(ctx, c, 0);
  } else if (gc_pool_run) {
    gc_pool_run(nthreads, chunks, task, ctx);
  } else {
#ifdef _OPENMP
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t c = 0; c < chunks; c++) task(ctx, c, omp_get_thread_num());
#else
    for (int64_t c = 0; c < chunks; c++) task(ctx, c, 0);
#endif
  }
}

#endif
