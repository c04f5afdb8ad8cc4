/* graphc's worker pool: a join that never waits for a worker that has not started. It runs the
 * float32 gemm's tiles (gc_gemm.h), the elementwise kernels' loops (gc_pool_range below) and the
 * pieces of column reductions; the other parallel loops are still OpenMP regions.
 *
 * Why not an OpenMP region: its end barrier waits for every thread of the team, so each region
 * pays the wake-up of a sleeping worker (35-50 µs with OMP_WAIT_POLICY=PASSIVE on a 2-vCPU VM,
 * measured with an empty region; after a 0.12 s pause a 2-thread column sum ran at one thread's
 * speed) even when the caller could have done the whole job alone in that time; and spinning
 * OpenMP workers hold off OpenBLAS and other processes. Here the caller posts a job of chunks,
 * wakes the workers, and claims chunks itself at once; a worker that arrives claims what is left.
 * The caller then waits only for chunks a worker has claimed and is running (a few µs each),
 * never for a worker to wake. After a job a worker spins for 0.2 ms (the kernels of one training
 * step come µs apart), yielding its core to any other runnable thread, then sleeps on a futex.
 * A worker keeps off the core the caller last ran on (gc_pool.c says why).
 *
 * The job's state is one 64-bit word: generation (32 bits) | chunk count (16) | next chunk (16).
 * A claim is a compare-and-swap on the whole word, so a worker that read an older job's
 * descriptor can never claim a chunk of a newer one: its expected generation no longer matches,
 * and a job's descriptor is rewritten only after all of its chunks were claimed and finished.
 *
 * One job runs at a time in a process-wide pool: a second thread that calls while a job runs
 * does its work alone, as does a job of more than 65535 chunks. Linux only (futex); elsewhere,
 * or without the pool, gc_pool_jobs is an OpenMP loop. A task must not fork. */
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

/* The threads a job may ask for: OpenMP's count (graphc sets it from the cores really free,
 * graphc/backends/c/threads.py), 1 inside a parallel region. */
static inline int gc_max_threads(void) {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

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

/* A loop over [0, n) whose body is a range function of the kernel's tables (the C backend's
 * elementwise kernels): pieces of `chunk` iterations (at most 4096 pieces) through the pool. */
typedef void (*gc_range_fn)(void **B, const int64_t *D, int64_t lo, int64_t hi);
typedef struct { gc_range_fn fn; void **B; const int64_t *D; int64_t n, chunk; } gc_range_job;

static void gc_range_piece(void *ctx, int64_t c, int slot) {
  const gc_range_job *j = (const gc_range_job *)ctx;
  const int64_t lo = c * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
  (void)slot;
  j->fn(j->B, j->D, lo, hi);
}

static inline void gc_pool_range(gc_range_fn fn, void **B, const int64_t *D, int64_t n, int64_t chunk) {
  if (chunk < 1) chunk = 1;
  if ((n + chunk - 1) / chunk > 4096) chunk = (n + 4095) / 4096;
  gc_range_job job = {fn, B, D, n, chunk};
  gc_pool_jobs(gc_max_threads(), (n + chunk - 1) / chunk, gc_range_piece, &job);
}

#endif
