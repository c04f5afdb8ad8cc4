/* gc_cuda.cuh -- device helpers for graphc's generated CUDA (graphc/backends/cuda/emit.py).
 *
 * The scalar expressions of fused kernels are printed by graphc/backends/cexpr.py, the printer the
 * C backend uses: it calls gc_expf, gc_tanhf, gc_sigmoidf, gc_selectf, ... (and the double versions
 * without the f).  On the CPU those come from gc_math.h; here they are __device__ functions over
 * CUDA's own math library (expf, tanhf, ...: IEEE semantics, within 1-2 ulp, no fast-math), so the
 * very same printed text compiles for both.
 *
 * Also here: the C integer types and math macros NVRTC lacks (it has no standard headers), integer
 * power, Philox 4x32-10 with the same bits as gc_runtime.h (and graphc/ops/random.py), and the
 * segmented block reductions (warp shuffles + shared memory) that reduce, softmax, cross-entropy and
 * argmax kernels use.
 *
 * Compiles with NVRTC (no includes at all) and with nvcc.
 */
#ifndef GC_CUDA_CUH
#define GC_CUDA_CUH

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#include <math.h>
#endif

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fc00000)
#endif
#ifndef INT32_MAX
#define INT32_MAX 2147483647
#endif
#ifndef INT32_MIN
#define INT32_MIN (-2147483647 - 1)
#endif
#ifndef INT64_MAX
#define INT64_MAX 9223372036854775807LL
#endif
#ifndef INT64_MIN
#define INT64_MIN (-9223372036854775807LL - 1)
#endif

#define GC_DEV static __device__ __forceinline__
#define GC_FULL_MASK 0xffffffffu
#define GC_LLMAX 9223372036854775807LL

/* ------------------------------------------------------------------------------------------ */
/* elementwise math: the names the printer emits                                                */

GC_DEV float gc_expf(float x) { return expf(x); }
GC_DEV float gc_expm1f(float x) { return expm1f(x); }
GC_DEV float gc_logf(float x) { return logf(x); }
GC_DEV float gc_log1pf(float x) { return log1pf(x); }
GC_DEV float gc_tanhf(float x) { return tanhf(x); }
GC_DEV float gc_sinf(float x) { return sinf(x); }
GC_DEV float gc_cosf(float x) { return cosf(x); }
GC_DEV float gc_sqrtf(float x) { return sqrtf(x); }
/* stable for both signs: num/(1+e) with e = exp(-|x|); NaN stays NaN (x >= 0 is false, e is NaN) */
GC_DEV float gc_sigmoidf(float x) {
  const float e = expf(-fabsf(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}
/* max(x, 0) + log1p(exp(-|x|)); NaN propagates through the log1p term */
GC_DEV float gc_softplusf(float x) { return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x))); }
GC_DEV float gc_selectf(int c, float a, float b) { return c ? a : b; }

GC_DEV double gc_exp(double x) { return exp(x); }
GC_DEV double gc_expm1(double x) { return expm1(x); }
GC_DEV double gc_log(double x) { return log(x); }
GC_DEV double gc_log1p(double x) { return log1p(x); }
GC_DEV double gc_tanh(double x) { return tanh(x); }
GC_DEV double gc_sin(double x) { return sin(x); }
GC_DEV double gc_cos(double x) { return cos(x); }
GC_DEV double gc_sqrt(double x) { return sqrt(x); }
GC_DEV double gc_sigmoid(double x) {
  const double e = exp(-fabs(x));
  const double r = 1.0 / (1.0 + e);
  return x >= 0.0 ? r : e * r;
}
GC_DEV double gc_softplus(double x) { return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x))); }
GC_DEV double gc_select(int c, double a, double b) { return c ? a : b; }

GC_DEV long long gc_minll(long long a, long long b) { return a < b ? a : b; }
GC_DEV long long gc_maxll(long long a, long long b) { return a > b ? a : b; }

/* NumPy's integer power for non-negative exponents; negative ones as gc_runtime.h does */
#define GC_IPOW(T)                                                                  \
  GC_DEV T gc_ipow_##T(T base, T e) {                                               \
    T r = 1;                                                                        \
    if (e < 0) return (base == 1) ? 1 : ((base == -1) ? ((e & 1) ? -1 : 1) : 0);    \
    while (e) { if (e & 1) r *= base; base *= base; e >>= 1; }                      \
    return r;                                                                       \
  }
GC_IPOW(int32_t)
GC_IPOW(int64_t)

/* ------------------------------------------------------------------------------------------ */
/* Philox 4x32-10: the same bits as gc_runtime.h and graphc.ops.random.philox4x32               */

GC_DEV void gc_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
    const uint32_t lo0 = 0xD2511F53u * c[0], hi0 = __umulhi(0xD2511F53u, c[0]);
    const uint32_t lo1 = 0xCD9E8D57u * c[2], hi1 = __umulhi(0xCD9E8D57u, c[2]);
    const uint32_t n0 = hi1 ^ c[1] ^ k0;
    const uint32_t n2 = hi0 ^ c[3] ^ k1;
    c[1] = lo1; c[3] = lo0; c[0] = n0; c[2] = n2;
  }
}

GC_DEV void gc_philox_words(uint64_t i, uint64_t call, uint64_t seed, uint32_t w[4]) {
  w[0] = (uint32_t)i; w[1] = (uint32_t)(i >> 32); w[2] = (uint32_t)call; w[3] = (uint32_t)(call >> 32);
  gc_philox4x32_10(w, (uint32_t)seed, (uint32_t)(seed >> 32));
}

GC_DEV double gc_u24(uint32_t w) { return (double)(w >> 8) * (1.0 / 16777216.0); }
GC_DEV double gc_u53(uint32_t hi, uint32_t lo) {
  return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) * (1.0 / 9007199254740992.0);
}
GC_DEV double gc_normal(const uint32_t w[4]) {
  const double u1 = gc_u53(w[0], w[1]) + 1.0 / 9007199254740992.0;
  const double u2 = gc_u53(w[2], w[3]);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.141592653589793 * u2);
}

/* ------------------------------------------------------------------------------------------ */
/* reductions                                                                                    */

/* combine functions; max/min let NaN win, as NumPy does */
struct GcSum { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; } };
struct GcMax {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (b > a || b != b) ? b : a; }
};
struct GcMin {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (b < a || b != b) ? b : a; }
};

GC_DEV float gc_shfl_xor(float v, int m, int w) { return __shfl_xor_sync(GC_FULL_MASK, v, m, w); }
GC_DEV double gc_shfl_xor(double v, int m, int w) { return __shfl_xor_sync(GC_FULL_MASK, v, m, w); }
GC_DEV int gc_shfl_xor(int v, int m, int w) { return __shfl_xor_sync(GC_FULL_MASK, v, m, w); }
GC_DEV long long gc_shfl_xor(long long v, int m, int w) { return __shfl_xor_sync(GC_FULL_MASK, v, m, w); }
GC_DEV unsigned char gc_shfl_xor(unsigned char v, int m, int w) {
  return (unsigned char)__shfl_xor_sync(GC_FULL_MASK, (int)v, m, w);
}

/* Reduce `v` over each group of L consecutive threads of the block, L a power of two <= 32 or
 * L == blockDim.x (a multiple of 32, at most 32 warps); every lane of the group gets the result.
 * Every thread of the block must call it (it may synchronise the block). `shm` holds one T per
 * warp. The combining order is fixed, so results are deterministic. */
template <class T, class F>
__device__ __forceinline__ T gc_group_reduce(T v, int L, F f, T *shm) {
  if (L <= 32) {
    for (int m = L >> 1; m > 0; m >>= 1) v = f(v, gc_shfl_xor(v, m, L));
    return v;
  }
  for (int m = 16; m > 0; m >>= 1) v = f(v, gc_shfl_xor(v, m, 32));
  const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads(); /* shm may still be read by the previous call */
  if ((threadIdx.x & 31) == 0) shm[warp] = v;
  __syncthreads();
  v = shm[0];
  for (int i = 1; i < nwarps; i++) v = f(v, shm[i]);
  return v;
}

/* argmax: (value, index) pairs. NaN beats every number, then larger values; ties (and NaN vs
 * NaN) go to the smaller index: the first maximum, or the first NaN, as in NumPy. */
template <class T>
__device__ __forceinline__ void gc_argmax_combine(T &v, long long &i, T v2, long long i2) {
  if (i2 < 0) return;                        /* index -1: an empty partial */
  if (i < 0) { v = v2; i = i2; return; }
  const bool n1 = v != v, n2 = v2 != v2;
  bool take;
  if (n1 || n2) take = n2 && (!n1 || i2 < i);
  else take = v2 > v || (v2 == v && i2 < i);
  if (take) { v = v2; i = i2; }
}

template <class T>
__device__ __forceinline__ void gc_group_argmax(T &v, long long &i, int L, T *shv, long long *shi) {
  if (L <= 32) {
    for (int m = L >> 1; m > 0; m >>= 1) {
      const T v2 = gc_shfl_xor(v, m, L);
      const long long i2 = gc_shfl_xor(i, m, L);
      gc_argmax_combine(v, i, v2, i2);
    }
    return;
  }
  for (int m = 16; m > 0; m >>= 1) {
    const T v2 = gc_shfl_xor(v, m, 32);
    const long long i2 = gc_shfl_xor(i, m, 32);
    gc_argmax_combine(v, i, v2, i2);
  }
  const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) { shv[warp] = v; shi[warp] = i; }
  __syncthreads();
  v = shv[0]; i = shi[0];
  for (int k = 1; k < nwarps; k++) gc_argmax_combine(v, i, shv[k], shi[k]);
}

/* scatter-add for take's gradient (any dtype the graph can produce) */
GC_DEV void gc_atomic_add(float *p, float v) { atomicAdd(p, v); }
GC_DEV void gc_atomic_add(double *p, double v) { atomicAdd(p, v); }
GC_DEV void gc_atomic_add(int *p, int v) { atomicAdd(p, v); }
GC_DEV void gc_atomic_add(long long *p, long long v) {
  atomicAdd((unsigned long long *)p, (unsigned long long)v);
}
#ifndef __CUDACC_RTC__
GC_DEV void gc_atomic_add(long *p, long v) { atomicAdd((unsigned long long *)p, (unsigned long long)v); }
GC_DEV long gc_shfl_xor(long v, int m, int w) { return (long)__shfl_xor_sync(GC_FULL_MASK, (long long)v, m, w); }
#endif

/* An out-of-range index: remember the first bad position of check `c` (E[c] = max of
 * LLMAX - position; the host zeroes E before each call and reads it afterwards). */
GC_DEV void gc_bad_index(long long *E, int c, long long position) {
  atomicMax(E + c, GC_LLMAX - position);
}

#endif
