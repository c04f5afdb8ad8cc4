/* graphc's float32 gemm for the sizes of a training step: C = alpha * op(A) @ op(B) + beta * C,
 * row-major, C contiguous (ldc = m), beta 0 or 1 (the cblas_sgemm arguments, row-major order).
 *
 * Why not OpenBLAS everywhere: at the sizes of an MLP or RNN step (a batch of 16-128 rows, k and
 * m of a few hundred) OpenBLAS packs both operands on every call, and the scipy-openblas32 build
 * runs its AVX2-era kernels on CPUs whose AVX-512 units are full width (AMD Zen 5: two 512-bit
 * FMAs per cycle). Measured on such a 2-core VM (benchmarks/RESULTS.md): OpenBLAS 110-220 GFLOP/s,
 * this kernel 260-410 GFLOP/s from 16x784x512 to 1024^3.
 *
 * How: an 8 x 48 register tile (24 zmm accumulators) walks the whole k range, reading op(B)'s
 * rows in place (a k x 48 panel stays in L2 across the row tiles) and broadcasting op(A)'s
 * elements through strides, so neither operand is packed. A transposed B is the exception: its
 * panel is transposed into a per-thread buffer by 16 x 16 register transposes. Each element of C
 * is summed by one thread in p order, so the result does not depend on the thread count or on
 * which thread took which tile.
 * Above GC_GEMM_OWN_MAX floats of operands (where blocking for L2 and L3 would matter), or
 * without AVX-512, OpenBLAS runs instead. */
#ifndef GC_GEMM_H
#define GC_GEMM_H

#include <stdint.h>
#include <stdlib.h>
#include "gc_runtime.h"
#include "gc_pool.h"

#define GC_GEMM_OWN_MAX (3 * 1024 * 1024)  /* floats in A + B + C: up to 1024^3 */
/* multiply-adds up to which one thread runs. Through graphc's pool (gc_pool.h: the caller never
 * waits for a worker to wake) two threads win above 2^21 (16x784x512: 55 -> 31 µs; 128^3 ties);
 * through OpenMP, whose region waits for a sleeping worker's wake-up (100-150 µs on a VM), only
 * above 2^24 (256^3 measured 128 µs serial, 158 µs threaded). */
#define GC_GEMM_PAR_MIN (1 << 21)
#define GC_GEMM_OMP_PAR_MIN (1 << 24)
#define GC_GEMM_SMALL_B (1 << 16)  /* floats of B that stay in L2 beside the rows of C */
#define GC_GEMM_PACK_K 8192  /* a transposed B's panel (k x 48 floats) stays within 1.5 MB */

#if defined(__AVX512F__)
#include <immintrin.h>


#define GC_GEMM_MR 8
#define GC_GEMM_NV 3
#define GC_GEMM_NR (16 * GC_GEMM_NV)

/* One mr x 16*nv tile (nv <= 3; lanes past the mask are neither read nor written): c[r, :] = alpha * sum_p a[r*rsa + p*csa] * b[p*ldb, :] (+ c[r, :] if beta). */
static inline __attribute__((always_inline)) void gc_sgemm_tile(
    int mr, int nv, int64_t kk, const float *restrict a, int64_t rsa, int64_t csa, const float *restrict b, int64_t ldb,
    float *restrict c, int64_t ldc, __mmask16 m0, __mmask16 m1, __mmask16 m2, float alpha, int beta) {
  const __mmask16 mask[GC_GEMM_NV] = {m0, m1, m2};
  __m512 acc[GC_GEMM_MR][GC_GEMM_NV];
  for (int r = 0; r < GC_GEMM_MR; r++)
    for (int v = 0; v < GC_GEMM_NV; v++) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kk; p++) {
    const float *bp = b + p * ldb, *ap = a + p * csa;
    __m512 bv[GC_GEMM_NV];
    for (int v = 0; v < GC_GEMM_NV; v++) if (v < nv) bv[v] = _mm512_maskz_loadu_ps(mask[v], bp + 16 * v);
    for (int r = 0; r < GC_GEMM_MR; r++)
      if (r < mr) {
        const __m512 av = _mm512_set1_ps(ap[r * rsa]);
        for (int v = 0; v < GC_GEMM_NV; v++) if (v < nv) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
      }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < GC_GEMM_MR; r++)
    if (r < mr)
      for (int v = 0; v < nv; v++) {
        float *cv = c + r * ldc + 16 * v;
        __m512 x = acc[r][v];
        if (beta) x = _mm512_fmadd_ps(al, x, _mm512_maskz_loadu_ps(mask[v], cv));
        else if (alpha != 1.0f) x = _mm512_mul_ps(al, x);
        _mm512_mask_storeu_ps(cv, mask[v], x);
      }
}

/* In-register transpose of 16 rows of 16 floats (unpack pairs, then quads, then 128-bit lanes). */
static inline void gc_transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  /* r[4g + c] now holds, in its 128-bit lane L, rows 4g..4g+3 of column 4L + c */
  for (int c = 0; c < 4; c++) {
    __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* pk[p*48 + q] = bt[q*ldb + p] for q < w (rows of the stored, transposed B), 0 for w <= q < 48. */
static void gc_pack_transposed(float *restrict pk, const float *restrict bt, int64_t ldb, int64_t w, int64_t kk) {
  for (int64_t p0 = 0; p0 < kk; p0 += 16) {
    const int64_t np = kk - p0 < 16 ? kk - p0 : 16;
    const __mmask16 pm = np == 16 ? 0xFFFF : (__mmask16)((1u << np) - 1);
    for (int64_t q0 = 0; q0 < GC_GEMM_NR; q0 += 16) {
      __m512 r[16];
      for (int s = 0; s < 16; s++)
        r[s] = q0 + s < w ? _mm512_maskz_loadu_ps(pm, bt + (q0 + s) * ldb + p0) : _mm512_setzero_ps();
      gc_transpose16(r);
      for (int64_t s = 0; s < np; s++) _mm512_storeu_ps(pk + (p0 + s) * GC_GEMM_NR + q0, r[s]);
    }
  }
}

#define GC_GEMM_TILE(h, v) gc_sgemm_tile(h, v, kk, ai, rsa, csa, bj, ldbj, ci, m, mask[0], mask[1], mask[2], alpha, beta)
#define GC_GEMM_ROWS_CASE(h) case h: { if (nv == 3) GC_GEMM_TILE(h, 3); else if (nv == 2) GC_GEMM_TILE(h, 2); \
                                      else GC_GEMM_TILE(h, 1); } break;

/* Tiles [t0, t1) of the (column tile, row tile) grid: column-major when B is large (a thread then
 * keeps one k x 48 panel of B in L2 over the row tiles), row-major when all of B stays in L2
 * (C is then read and written along its rows). */
static void gc_sgemm_tiles(int64_t t0, int64_t t1, int64_t n, int64_t m, int64_t kk, float alpha,
                           const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb, int64_t csb,
                           int beta, float *c, float *pk) {
  const int64_t nrow = (n + GC_GEMM_MR - 1) / GC_GEMM_MR, ncol = (m + GC_GEMM_NR - 1) / GC_GEMM_NR;
  const int by_rows = !pk && kk * m <= GC_GEMM_SMALL_B;
  int64_t packed = -1;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t jt = by_rows ? t % ncol : t / nrow, it = by_rows ? t / ncol : t % nrow;
    const int64_t j = jt * GC_GEMM_NR, w = m - j < GC_GEMM_NR ? m - j : GC_GEMM_NR;
    __mmask16 mask[GC_GEMM_NV];
    for (int v = 0; v < GC_GEMM_NV; v++) {
      const int64_t x = w - 16 * v;
      mask[v] = x >= 16 ? 0xFFFF : x <= 0 ? 0 : (__mmask16)((1u << x) - 1);
    }
    const float *bj = b + j * csb;
    int64_t ldbj = rsb;
    if (pk) {
      if (packed != jt) gc_pack_transposed(pk, bj, csb, w, kk);
      packed = jt;
      bj = pk;
      ldbj = GC_GEMM_NR;
    }
    const int64_t i = it * GC_GEMM_MR, h = n - i < GC_GEMM_MR ? n - i : GC_GEMM_MR;
    const float *ai = a + i * rsa;
    float *ci = c + i * m + j;
    const int nv = (int)((w + 15) / 16);
    if (h == GC_GEMM_MR && nv == GC_GEMM_NV) GC_GEMM_TILE(GC_GEMM_MR, GC_GEMM_NV);
    else switch (h) {  /* constant row and vector counts: the tile's loops unroll */
      GC_GEMM_ROWS_CASE(1) GC_GEMM_ROWS_CASE(2) GC_GEMM_ROWS_CASE(3) GC_GEMM_ROWS_CASE(4)
      GC_GEMM_ROWS_CASE(5) GC_GEMM_ROWS_CASE(6) GC_GEMM_ROWS_CASE(7) default: GC_GEMM_ROWS_CASE(8)
    }
  }
}

/* One gemm's arguments for the pool: chunk c is tiles [c * chunk, (c + 1) * chunk). */
typedef struct {
  int64_t n, m, kk;
  float alpha;
  const float *a;
  int64_t rsa, csa;
  const float *b;
  int64_t rsb, csb;
  int beta;
  float *c, *pk;
  int64_t per, chunk, tiles;
} gc_sgemm_job;

static void gc_sgemm_chunk(void *ctx, int64_t c, int slot) {
  const gc_sgemm_job *j = (const gc_sgemm_job *)ctx;
  const int64_t t0 = c * j->chunk, t1 = t0 + j->chunk < j->tiles ? t0 + j->chunk : j->tiles;
  gc_sgemm_tiles(t0, t1, j->n, j->m, j->kk, j->alpha, j->a, j->rsa, j->csa, j->b, j->rsb, j->csb, j->beta, j->c,
                 j->pk ? j->pk + j->per * slot : NULL);
}

/* The kernel above over the whole product; 0 (nothing written) where it does not apply. */
static int gc_sgemm_own(int ta, int tb, int64_t n, int64_t m, int64_t kk, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c) {
  if ((beta == 0.0f || beta == 1.0f) && n * kk + kk * m + n * m <= GC_GEMM_OWN_MAX && (!tb || kk <= GC_GEMM_PACK_K)) {
    const int64_t rsa = ta ? 1 : lda, csa = ta ? lda : 1, rsb = tb ? 1 : ldb, csb = tb ? ldb : 1;
    const int64_t tiles = ((m + GC_GEMM_NR - 1) / GC_GEMM_NR) * ((n + GC_GEMM_MR - 1) / GC_GEMM_MR);
    const int most = gc_max_threads();  /* 1 inside a parallel region */
    const int par = most > 1 && tiles > 1 && n * m * kk > (gc_pool_available() ? GC_GEMM_PAR_MIN : GC_GEMM_OMP_PAR_MIN);
    const int nthreads = par ? most : 1;
    /* a transposed B's panels, one buffer per thread, taken before any thread starts */
    const int64_t per = tb ? GC_GEMM_NR * (kk + 16) : 0;
    float *pk = per ? (float *)malloc(sizeof(float) * per * nthreads) : NULL;
    if (!per || pk) {
      if (par) {
        /* tiles are claimed in chunks, not split in fixed halves: a thread that starts late or
         * shares its core takes fewer, and through the pool the caller never waits for a worker
         * that has not started (benchmarks/RESULTS.md) */
        const int64_t nrow = (n + GC_GEMM_MR - 1) / GC_GEMM_MR;
        int64_t chunk = pk ? (nrow + nthreads - 1) / nthreads : tiles / (8 * (int64_t)nthreads);
        if (chunk < 1) chunk = 1;
        gc_sgemm_job job = {n, m, kk, alpha, a, rsa, csa, b, rsb, csb, beta != 0.0f, c, pk, per, chunk, tiles};
        gc_pool_jobs(nthreads, (tiles + chunk - 1) / chunk, gc_sgemm_chunk, &job);
      } else {
        gc_sgemm_tiles(0, tiles, n, m, kk, alpha, a, rsa, csa, b, rsb, csb, beta != 0.0f, c, pk);
      }
      free(pk);
      return 1;
    }
  }
  return 0;
}

/* C = op(A) B^T with few rows in C: computed as C^T = B op(A)^T into a buffer, then transposed
 * into C, so that the small op(A) is the packed (or unpacked, when ta) operand instead of the
 * large B (an MLP's backward dX = dY W^T at batch 16 packed the whole weight on every call). */
static int gc_sgemm_swapped(int ta, int64_t n, int64_t m, int64_t kk, float alpha, const float *a, int64_t lda,
                            const float *b, int64_t ldb, float beta, float *c) {
  if (!(n * (kk + m) < m * kk) || (beta != 0.0f && beta != 1.0f)) return 0;
  float *t = (float *)malloc(sizeof(float) * n * m);
  if (!t) return 0;
  const int done = gc_sgemm_own(0, !ta, m, n, kk, alpha, b, ldb, a, lda, 0.0f, t);
  if (done)
    for (int64_t i = 0; i < n; i++) {
      float *ci = c + i * m;
      if (beta != 0.0f) for (int64_t j = 0; j < m; j++) ci[j] += t[j * n + i];
      else for (int64_t j = 0; j < m; j++) ci[j] = t[j * n + i];
    }
  free(t);
  return done;
}
#endif /* __AVX512F__ */

/* cblas_sgemm's arguments in row-major order (C's leading dimension is m); the sizes fit an int
 * (checked by the caller, as for OpenBLAS). */
static void gc_sgemm(int ta, int tb, int64_t n, int64_t m, int64_t kk, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c) {
#if defined(__AVX512F__)
  if (tb && gc_sgemm_swapped(ta, n, m, kk, alpha, a, lda, b, ldb, beta, c)) return;
  if (gc_sgemm_own(ta, tb, n, m, kk, alpha, a, lda, b, ldb, beta, c)) return;
#endif
  scipy_cblas_sgemm(GC_ROW_MAJOR, ta ? GC_TRANS : GC_NO_TRANS, tb ? GC_TRANS : GC_NO_TRANS, (int)n, (int)m, (int)kk,
                    alpha, a, (int)lda, b, (int)ldb, beta, c, (int)m);
}

#endif
