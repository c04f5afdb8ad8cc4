/* graphc runtime helpers for generated C: threads, integer power, Philox 4x32-10, BLAS glue.
 * Included by every generated translation unit (after gc_math.h). */
#ifndef GC_RUNTIME_H
#define GC_RUNTIME_H

#include <stdint.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
static inline int gc_thread_num(void) { return omp_get_thread_num(); }
static inline int gc_num_threads(void) { return omp_get_num_threads(); }
#else
static inline int gc_thread_num(void) { return 0; }
static inline int gc_num_threads(void) { return 1; }
#endif

#define GC_MAX_THREADS 256

/* NumPy's integer power for non-negative exponents (negative ones give 0, as 1/x truncated
 * would for |x| > 1; NumPy raises instead, graphc keeps running). */
#define GC_IPOW(T)                                                       \
  static inline T gc_ipow_##T(T base, T e) {                             \
    T r = 1;                                                             \
    if (e < 0) return (base == 1) ? 1 : ((base == -1) ? ((e & 1) ? -1 : 1) : 0); \
    while (e) { if (e & 1) r *= base; base *= base; e >>= 1; }           \
    return r;                                                            \
  }
GC_IPOW(int32_t)
GC_IPOW(int64_t)

/* Philox 4x32-10 (Salmon et al., SC'11): the same bits as graphc.ops.random.philox4x32. */
static inline void gc_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
    uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
    c[1] = (uint32_t)p1; c[3] = (uint32_t)p0; c[0] = n0; c[2] = n2;
  }
}

/* The words for element i of call `call` under key `seed` (see graphc/ops/random.py). */
static inline void gc_philox_words(uint64_t i, uint64_t call, uint64_t seed, uint32_t w[4]) {
  w[0] = (uint32_t)i; w[1] = (uint32_t)(i >> 32); w[2] = (uint32_t)call; w[3] = (uint32_t)(call >> 32);
  gc_philox4x32_10(w, (uint32_t)seed, (uint32_t)(seed >> 32));
}

static inline double gc_u24(uint32_t w) { return (double)(w >> 8) * (1.0 / 16777216.0); }
static inline double gc_u53(uint32_t hi, uint32_t lo) {
  return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) * (1.0 / 9007199254740992.0);
}
static inline double gc_normal(const uint32_t w[4]) {
  double u1 = gc_u53(w[0], w[1]) + 1.0 / 9007199254740992.0;
  double u2 = gc_u53(w[2], w[3]);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.141592653589793 * u2);
}

/* OpenBLAS from the scipy-openblas32 wheel: 32-bit integers, scipy_ symbol prefix. */
enum { GC_ROW_MAJOR = 101, GC_NO_TRANS = 111, GC_TRANS = 112 };
void scipy_cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc);
void scipy_cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                       const double *b, int ldb, double beta, double *c, int ldc);

#endif
