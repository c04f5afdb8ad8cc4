/* graphc's worker pool (declared in gc_pool.h, whose comment says why it exists).
 *
 * The job's state is one 64-bit word: generation (32 bits) | chunk count (16) | next chunk (16).
 * A claim is a compare-and-swap on the whole word, so a worker that read an older job's
 * descriptor can never claim a chunk of a newer one: its expected generation no longer matches,
 * and a job's descriptor is rewritten only after every chunk of the job was claimed and finished.
 * One job runs at a time (`busy`): a second thread calling meanwhile runs its job alone.
 * Workers are created on first use and live as long as the process (this library is never
 * unloaded). A forked child starts with no workers and an idle pool (pthread_atfork) and makes
 * its own on its first job. A task must not fork: chunks the parent's workers had claimed would
 * never finish in the child. */
#define _GNU_SOURCE
#include "gc_pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GC_POOL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define GC_POOL_PAUSE() __asm__ __volatile__("yield")
#else
#define GC_POOL_PAUSE() ((void)0)
#endif

#define GC_POOL_MAX 64
#define GC_POOL_SPIN_NS 200000  /* 0.2 ms: longer than the gaps between one step's gemms */

typedef struct {
  uint64_t state;     /* generation << 32 | chunks << 16 | next; atomic */
  int64_t done;       /* chunks finished in this generation; atomic */
  gc_pool_task task;  /* the descriptor, written before its generation is published */
  void *ctx;
  int helpers;        /* workers 1..helpers take part in this job */
  int caller_cpu;     /* where the caller runs: a worker woken onto that core stays out of the job */
  int started;        /* workers created */
  int most;           /* workers this process can have (lowered when pthread_create fails) */
  uint32_t spawn_gen; /* the generation before the job a new worker is made for */
  int sleeping;       /* workers asleep on `wake`; atomic */
  uint32_t wake;      /* futex word */
  int busy;           /* a caller holds the pool; atomic */
  int64_t jobs, worker_chunks;  /* counters for gc_pool_stats; atomic */
  pthread_mutex_t grow;
} gc_pool_t;

static gc_pool_t pool = {.most = GC_POOL_MAX, .grow = PTHREAD_MUTEX_INITIALIZER};

/* In a forked child only the forking thread exists: no workers, and no job in progress even if
 * another thread of the parent held the pool. */
static void forked_child(void) {
  pool.started = 0;
  pool.sleeping = 0;
  pool.busy = 0;
  pool.most = GC_POOL_MAX;
  pthread_mutex_init(&pool.grow, NULL);
}

__attribute__((constructor)) static void gc_pool_init(void) { pthread_atfork(NULL, NULL, forked_child); }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint32_t generation(uint64_t s) { return (uint32_t)(s >> 32); }

/* Claim and run chunks of generation `gen` until none is left. */
static void work(uint32_t gen, gc_pool_task task, void *ctx, int slot) {
  uint64_t s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
  for (;;) {
    const uint32_t chunks = (uint32_t)(s >> 16) & 0xFFFF, next = (uint32_t)s & 0xFFFF;
    if (generation(s) != gen || next >= chunks) return;
    if (!__atomic_compare_exchange_n(&pool.state, &s, s + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
    task(ctx, next, slot);
    if (slot) __atomic_fetch_add(&pool.worker_chunks, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&pool.done, 1, __ATOMIC_RELEASE);
    s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
  }
}

/* Wait for a generation other than `seen`: spin (yielding the core to any other runnable
 * thread, an OpenMP worker or another process) for GC_POOL_SPIN_NS, then sleep on the futex. */
static uint32_t next_job(uint32_t seen) {
  const uint64_t t0 = now_ns();
  for (unsigned spins = 0;; spins++) {
    const uint64_t s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
    if (generation(s) != seen) return generation(s);
    if (spins & 1) sched_yield(); else GC_POOL_PAUSE();
    if ((spins & 15) == 15 && now_ns() - t0 > GC_POOL_SPIN_NS) {
      const uint32_t w = __atomic_load_n(&pool.wake, __ATOMIC_SEQ_CST);
      __atomic_fetch_add(&pool.sleeping, 1, __ATOMIC_SEQ_CST);
      if (generation(__atomic_load_n(&pool.state, __ATOMIC_SEQ_CST)) == seen)  /* else a job came meanwhile */
        syscall(SYS_futex, &pool.wake, FUTEX_WAIT_PRIVATE, w, NULL, NULL, 0);
      __atomic_fetch_sub(&pool.sleeping, 1, __ATOMIC_SEQ_CST);
      return generation(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE));  /* may be `seen`: spin again */
    }
  }
}

/* Keep a worker off the caller's core: it is allowed every core of the process but the one the
 * caller last ran on. Left to itself, the kernel (on a 2-vCPU VM, measured) woke a sleeping worker
 * onto the caller's core, queued behind the caller until the job was done, while the other core
 * idled: woken after a pause of 1 ms or more, a worker ran 2-3% of a job's chunks. Changed only
 * when the caller moves, so a syscall or two per move. */
typedef struct {
  cpu_set_t allowed;  /* the cores the worker had at its start */
  int usable;         /* the mask above could be read */
  int avoiding;       /* the caller's core now excluded, or -1 */
} placement_t;

static void avoid_core(placement_t *p, int caller_cpu) {
  if (!p->usable || caller_cpu == p->avoiding || caller_cpu < 0 || caller_cpu >= CPU_SETSIZE) return;
  cpu_set_t others = p->allowed;
  CPU_CLR(caller_cpu, &others);
  if (CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0) p->avoiding = caller_cpu;
}

static void *worker(void *arg) {
  const int slot = (int)(intptr_t)arg;
  placement_t place = {.avoiding = -1};
  place.usable = sched_getaffinity(0, sizeof place.allowed, &place.allowed) == 0;
  uint32_t seen = __atomic_load_n(&pool.spawn_gen, __ATOMIC_ACQUIRE);
  for (;;) {
    const uint32_t gen = next_job(seen);
    if (gen == seen) continue;
    seen = gen;
    /* read after the generation (acquire); a claim in work() succeeds only while this job is
     * live, so a descriptor already overwritten by a later job is never used */
    gc_pool_task task = __atomic_load_n(&pool.task, __ATOMIC_RELAXED);
    void *ctx = __atomic_load_n(&pool.ctx, __ATOMIC_RELAXED);
    const int helpers = __atomic_load_n(&pool.helpers, __ATOMIC_RELAXED);
    const int caller_cpu = __atomic_load_n(&pool.caller_cpu, __ATOMIC_RELAXED);
    if (slot > helpers) continue;
    avoid_core(&place, caller_cpu);
    /* still on the caller's core (it cannot move): it would take a chunk and be preempted by the
     * caller, who then waits for that chunk, so it stays out of this job */
    if (sched_getcpu() != caller_cpu) work(gen, task, ctx, slot);
  }
  return NULL;
}

/* Workers 1..min(n, most) exist; 0 if there is none. */
static int grow(int n) {
  if (n > __atomic_load_n(&pool.most, __ATOMIC_RELAXED)) n = __atomic_load_n(&pool.most, __ATOMIC_RELAXED);
  if (__atomic_load_n(&pool.started, __ATOMIC_ACQUIRE) >= n) return n > 0;
  pthread_mutex_lock(&pool.grow);
  /* the job about to be posted is the next generation: a new worker takes part in it */
  __atomic_store_n(&pool.spawn_gen, generation(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE)), __ATOMIC_RELEASE);
  while (pool.started < n) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);  /* tasks keep large buffers on the heap */
    const int ok = pthread_create(&t, &attr, worker, (void *)(intptr_t)(pool.started + 1)) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {  /* out of threads: do not try again on every call */
      __atomic_store_n(&pool.most, pool.started, __ATOMIC_RELAXED);
      break;
    }
    __atomic_store_n(&pool.started, pool.started + 1, __ATOMIC_RELEASE);
  }
  const int any = pool.started > 0;
  pthread_mutex_unlock(&pool.grow);
  return any;
}

void gc_pool_run(int nthreads, int64_t chunks, gc_pool_task task, void *ctx) {
  int idle = 0;
  if (nthreads > GC_POOL_MAX) nthreads = GC_POOL_MAX;
  if (nthreads < 2 || chunks < 2 || chunks > 0xFFFF ||
      !__atomic_compare_exchange_n(&pool.busy, &idle, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    for (int64_t c = 0; c < chunks; c++) task(ctx, c, 0);
    return;
  }
  if (!grow(nthreads - 1)) {
    __atomic_store_n(&pool.busy, 0, __ATOMIC_RELEASE);
    for (int64_t c = 0; c < chunks; c++) task(ctx, c, 0);
    return;
  }
  __atomic_fetch_add(&pool.jobs, 1, __ATOMIC_RELAXED);
  const uint32_t gen = generation(__atomic_load_n(&pool.state, __ATOMIC_RELAXED)) + 1;
  const int started = __atomic_load_n(&pool.started, __ATOMIC_ACQUIRE);
  __atomic_store_n(&pool.task, task, __ATOMIC_RELAXED);  /* ordered by the release of `state` */
  __atomic_store_n(&pool.ctx, ctx, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.helpers, nthreads - 1 < started ? nthreads - 1 : started, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.caller_cpu, sched_getcpu(), __ATOMIC_RELAXED);
  __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.state, ((uint64_t)gen << 32) | ((uint64_t)chunks << 16), __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&pool.sleeping, __ATOMIC_SEQ_CST)) {
    __atomic_fetch_add(&pool.wake, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &pool.wake, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);  /* all: futex picks any sleeper */
  }
  work(gen, task, ctx, 0);
  /* only chunks a worker claimed and is running are left: a few µs each */
  for (unsigned spins = 0; __atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < chunks; spins++) {
    if (spins < 256) GC_POOL_PAUSE();
    else sched_yield();  /* the worker may have been moved onto this core since it claimed */
  }
  __atomic_store_n(&pool.busy, 0, __ATOMIC_RELEASE);
}

void gc_pool_stats(int64_t out[3]) {
  out[0] = __atomic_load_n(&pool.started, __ATOMIC_ACQUIRE);
  out[1] = __atomic_load_n(&pool.jobs, __ATOMIC_RELAXED);
  out[2] = __atomic_load_n(&pool.worker_chunks, __ATOMIC_RELAXED);
}
