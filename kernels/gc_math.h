/* gc_math.h -- vectorisable elementwise math for graphc's generated C.
 *
 * glibc's scalar expf/logf/tanhf/... are opaque calls, so a loop that uses them is never
 * vectorised (glibc's vector variants, libmvec, are only declared under -ffast-math, which graphc
 * does not use because it breaks NaN/Inf).  The functions below are branch-free: range
 * reduction, a fixed polynomial, exponent arithmetic on the bit pattern, and bit-blend selects
 * for the special cases.  No data-dependent branches, no table lookups, no calls: after inlining
 * gcc vectorises any loop that uses them (tests/test_gc_math.py checks -fopt-info-vec).
 *
 * Semantics follow IEEE / NumPy: NaN in gives NaN out; exp overflows to +inf and underflows to 0
 * through correctly rounded denormals; log(+-0) = -inf, log(x<0) = NaN, log(+inf) = +inf;
 * log1p(-1) = -inf; tanh(+-inf) = +-1; sigmoid(+inf) = 1, sigmoid(-inf) = 0; softplus(+inf) =
 * +inf, softplus(-inf) = 0; sin/cos(+-inf) = NaN; odd functions keep the sign of zero.
 *
 * Accuracy (max error against the correctly rounded result, see kernels/README.md): under
 * 2.5 ULP for every function, float and double; exp, log, sin, cos under 1 ULP.  sin/cos are
 * accurate for |x| < 2^31 (float) and |x| < 2^26 (double) only; beyond that the Cody-Waite
 * reduction is not exact and the result is an arbitrary value in [-1, 1] (NaN for +-inf, NaN).
 *
 * Compile flags: gc_sqrtf/gc_sqrt are plain sqrtf/sqrt, which gcc vectorises only with
 * -fno-math-errno (that flag changes nothing but errno).  Everything else vectorises with plain
 * -O3 -march=native.  Uses FMA explicitly when __FMA__ is defined (so -std=c11, which turns off
 * contraction, stays fast); the accuracy above holds with and without FMA.
 *
 * In generated code, write a select whose arms do floating-point work with gc_selectf/gc_select,
 * not ?: (see below), or gcc will not vectorise the loop.
 *
 * Polynomial coefficients are near-minimax fits (mpmath.chebyfit) on the reduced ranges; the
 * techniques are the classic Cephes/fdlibm ones.
 */
#ifndef GC_MATH_H
#define GC_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define GC_MATH_FN static inline __attribute__((always_inline))
#else
#define GC_MATH_FN static inline
#endif

/* Fused multiply-add where the target has it.  gcc contracts a*b+c by itself only in GNU mode;
   under -std=c11 (ISO mode, -ffp-contract=off) the polynomials would cost twice the
   instructions.  Without hardware FMA fma() is a slow library call, so fall back to a*b+c; the
   algorithms are accurate either way (the tests build both variants). */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define GC__FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#define GC__FMA(a, b, c) __builtin_fma((a), (b), (c))
#else
#define GC__FMAF(a, b, c) ((a) * (b) + (c))
#define GC__FMA(a, b, c) ((a) * (b) + (c))
#endif

/* ------------------------------------------------------------------------------------------ */
/* bit casts (unions: gcc turns these into plain register moves and vectorises them)           */

typedef union { float f; uint32_t u; } gc__u32;
typedef union { double f; uint64_t u; } gc__u64;

GC_MATH_FN uint32_t gc__f2u(float f) { gc__u32 v; v.f = f; return v.u; }
GC_MATH_FN float gc__u2f(uint32_t u) { gc__u32 v; v.u = u; return v.f; }
GC_MATH_FN uint64_t gc__d2u(double f) { gc__u64 v; v.f = f; return v.u; }
GC_MATH_FN double gc__u2d(uint64_t u) { gc__u64 v; v.u = u; return v.f; }

/* Selects.  Written as bit blends, not ?:, on purpose: under the default -ftrapping-math gcc
   turns `c ? k : v` into a branch, threads the constant through the code that follows, and the
   duplicated floating-point operations can then not be if-converted, so the loop stays scalar.
   A blend has no branch to thread; it becomes one vpternlog/blend instruction. */
GC_MATH_FN float gc__self(int c, float a, float b) {
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return gc__u2f((gc__f2u(a) & m) | (gc__f2u(b) & ~m));
}
GC_MATH_FN double gc__seld(int64_t c, double a, double b) {
    uint64_t m = (uint64_t)0 - (uint64_t)(c != 0);
    return gc__u2d((gc__d2u(a) & m) | (gc__d2u(b) & ~m));
}

/* For generated code: c ? a : b, both evaluated.  Use these instead of ?: whenever a or b does
   floating-point work (a Piecewise/where around gc_expm1f, say): gcc will not vectorise
   `c ? v : gc_expm1f(v)` under -ftrapping-math, even if the call is hoisted into a variable. */
GC_MATH_FN float gc_selectf(int c, float a, float b) { return gc__self(c, a, b); }
GC_MATH_FN double gc_select(int c, double a, double b) { return gc__seld(c, a, b); }

/* ========================================================================================== */
/* float                                                                                       */
/* ========================================================================================== */

#define GC__F_SHIFT 0x1.8p23f               /* x + SHIFT - SHIFT rounds x to an integer        */
#define GC__F_LOG2E 1.44269504f
#define GC__F_LN2HI 0.693145751953125f      /* 16 significant bits: k*LN2HI is exact, |k|<2^8  */
#define GC__F_LN2LO 1.42860677e-06f         /* ln2 - LN2HI                                     */

/* e^r - 1 on |r| <= ln2/2, as r + r^2 P(r): relative error < 2^-28 */
GC_MATH_FN float gc__expm1_poly_f(float r) {
    float p = 1.9891269e-04f;
    p = GC__FMAF(p, r, 1.39339e-03f);
    p = GC__FMAF(p, r, 8.3333105e-03f);
    p = GC__FMAF(p, r, 4.1666463e-02f);
    p = GC__FMAF(p, r, 1.6666667e-01f);
    p = GC__FMAF(p, r, 5.0e-01f);
    return GC__FMAF(r * r, p, r);
}

/* Reduce x (already clamped to a finite range) to x = n*ln2 + r.  Returns r; *n gets n.
 * n is read off the bit pattern of the rounded sum, so there is no float->int conversion. */
GC_MATH_FN float gc__exp_reduce_f(float x, int32_t *n) {
    float z = GC__FMAF(x, GC__F_LOG2E, GC__F_SHIFT);
    float nf = z - GC__F_SHIFT;
    *n = (int32_t)(gc__f2u(z) - gc__f2u(GC__F_SHIFT));
    float r = GC__FMAF(-nf, GC__F_LN2HI, x);  /* exact */
    return GC__FMAF(-nf, GC__F_LN2LO, r);
}

/* 2^n for -126 <= n <= 127 */
GC_MATH_FN float gc__pow2i_f(int32_t n) { return gc__u2f((uint32_t)(n + 127) << 23); }

/* e^x for x in [-104, 89] or NaN (callers clamp) */
GC_MATH_FN float gc__expf_core(float x) {
    int32_t n;
    float r = gc__exp_reduce_f(x, &n);
    float p = 1.0f + gc__expm1_poly_f(r);
    /* n is in [-150, 128]: scale in two exact steps so that 2^n1 and 2^n2 are normal numbers and
       only the last multiplication rounds (correct overflow to inf and correct denormals). */
    int32_t n1 = n >> 1;
    int32_t n2 = n - n1;
    return (p * gc__pow2i_f(n1)) * gc__pow2i_f(n2);
}

GC_MATH_FN float gc_expf(float x) {
    /* exp(89) > FLT_MAX and exp(-104) < 2^-150: the clamps keep n small yet still give inf/0.
       NaN fails every comparison and passes through. */
    x = gc__self(x > 89.0f, 89.0f, x);
    x = gc__self(x < -104.0f, -104.0f, x);
    return gc__expf_core(x);
}

/* e^x - 1 for x in [-40, 89] or NaN (callers clamp); exact to the ULP only for |x| >= 2^-25 */
GC_MATH_FN float gc__expm1f_core(float x) {
    int32_t n;
    float r = gc__exp_reduce_f(x, &n);
    float p = gc__expm1_poly_f(r);
    /* expm1(x) = 2^n p + 2^n - 1 = 2 (t p + (t - 1/2)) with t = 2^(n-1), n in [-58, 128] */
    float t = gc__pow2i_f(n - 1);
    return 2.0f * GC__FMAF(t, p, t - 0.5f);
}

GC_MATH_FN float gc_expm1f(float x) {
    /* expm1(x) rounds to -1 for x < -17.4 */
    float xc = gc__self(x > 89.0f, 89.0f, x);
    xc = gc__self(xc < -40.0f, -40.0f, xc);
    float y = gc__expm1f_core(xc);
    /* tiny x (zeros, denormals): expm1(x) = x, keeping the sign of zero */
    return gc__self(fabsf(x) < 0x1p-25f, x, y);
}

/* log(m) for m in [sqrt(1/2), sqrt(2)) given f = m - 1, fdlibm style:
   s = f/(2+f), log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)).  Returns log(m) + k*ln2. */
GC_MATH_FN float gc__log_kernel_f(float f, float kf) {
    float s = f / (2.0f + f);
    float z = s * s;
    float q = 2.957995e-01f;
    q = GC__FMAF(q, z, 3.998878e-01f);
    q = GC__FMAF(q, z, 6.6666687e-01f);
    float R = z * q;
    float hfsq = 0.5f * f * f;
    return GC__FMAF(kf, GC__F_LN2HI, f - (hfsq - GC__FMAF(s, hfsq + R, kf * GC__F_LN2LO)));
}

/* Split a positive normal x as 2^k m with m in [sqrt(1/2), sqrt(2)); returns m, *k gets k. */
GC_MATH_FN float gc__log_split_f(float x, int32_t *k) {
    uint32_t ix = gc__f2u(x);
    uint32_t t = ix - 0x3f3504f3u;           /* bits of sqrt(1/2) */
    *k = (int32_t)t >> 23;
    return gc__u2f(ix - (t & 0xff800000u));
}

GC_MATH_FN float gc_logf(float x) {
    /* denormals: scale into the normal range first */
    int sub = x < 0x1p-126f;
    float xs = x * gc__self(sub, 0x1p23f, 1.0f);
    int32_t k;
    float m = gc__log_split_f(xs, &k);
    k -= sub ? 23 : 0;
    float y = gc__log_kernel_f(m - 1.0f, (float)k);
    y = gc__self(x < INFINITY, y, x);            /* +inf and NaN */
    y = gc__self(x == 0.0f, -INFINITY, y);
    return gc__self(x < 0.0f, NAN, y);
}

/* log1p(x) for x >= -1 finite, or NaN; wrong for +-0 and denormals (callers select) */
GC_MATH_FN float gc__log1pf_core(float x) {
    /* u = 1 + x rounded; c = the exact rounding error (two-sum), so 1 + x = u + c */
    float u = 1.0f + x;
    float bv = u - x;
    float av = u - bv;
    float c = (1.0f - bv) + (x - av);
    int32_t k;
    float m = gc__log_split_f(u, &k);
    /* 1 + x = 2^k (m + c 2^-k).  For k > 24 the correction is negligible; clamp so 2^-k stays
       normal. */
    int32_t kc = k > 100 ? 100 : k;
    float f = GC__FMAF(c, gc__pow2i_f(-kc), m - 1.0f);
    return gc__log_kernel_f(f, (float)k);
}

GC_MATH_FN float gc_log1pf(float x) {
    float y = gc__log1pf_core(x);
    y = gc__self(fabsf(x) < 0x1p-26f, x, y);     /* zeros, denormals: log1p(x) = x */
    y = gc__self(x < INFINITY, y, x);            /* +inf and NaN */
    y = gc__self(x == -1.0f, -INFINITY, y);
    return gc__self(x < -1.0f, NAN, y);
}

GC_MATH_FN float gc_tanhf(float x) {
    /* tanh|x| = e / (e + 2), e = expm1(2|x|): relative accuracy down to 0, no cancellation.
       tanh rounds to 1 for |x| > 9.01; the clamp keeps e finite (NaN passes).  tanh x rounds to
       x for |x| < 2^-13 (zeros, denormals). */
    float a = fabsf(x);
    a = gc__self(a > 9.5f, 9.5f, a);
    float e = gc__expm1f_core(2.0f * a);
    float y = gc__self(a < 0x1p-13f, a, e / (e + 2.0f));
    return copysignf(y, x);
}

/* e^-|x|: never overflows; 0 for |x| > 104 */
GC_MATH_FN float gc__expnegabsf(float x) {
    float na = -fabsf(x);
    return gc__expf_core(gc__self(na < -104.0f, -104.0f, na));
}

GC_MATH_FN float gc_sigmoidf(float x) {
    /* 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0: e = e^-|x| never overflows. */
    float e = gc__expnegabsf(x);
    float num = gc__self(x >= 0.0f, 1.0f, e);
    return num / (1.0f + e);
}

GC_MATH_FN float gc_softplusf(float x) {
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|); e is in [0, 1] or NaN */
    float e = gc__expnegabsf(x);
    float l = gc__self(e < 0x1p-26f, e, gc__log1pf_core(e));
    float m = gc__self(x > 0.0f, x, 0.0f);
    return m + l;
}

/* sin/cos: Cody-Waite reduction by pi/2 done in double (a float times the exact 21-bit pieces
   of pi/2 is exact in double for |j| < 2^32), then the polynomials in double: about 0.5 ULP.
   Quadrant logic with selects.  qoff = 0 gives sin, qoff = 1 gives cos (cos x = sin(x + pi/2)). */
#define GC__PIO2_F1 1.570796012878418
#define GC__PIO2_F2 3.139164164167596e-07
#define GC__PIO2_F3 6.22337468017542e-14
#define GC__PIO2_F4 (-2.508278806334166e-20)

GC_MATH_FN float gc__sincosf(float x, uint32_t qoff) {
    double xd = (double)x;
    double z = GC__FMA(xd, 0.6366197723675814, 0x1.8p52);
    double j = z - 0x1.8p52;
    uint32_t q = (uint32_t)gc__d2u(z) + qoff;
    double r = GC__FMA(-j, GC__PIO2_F1, xd);
    r = GC__FMA(-j, GC__PIO2_F2, r);
    r = GC__FMA(-j, GC__PIO2_F3, r);
    r = GC__FMA(-j, GC__PIO2_F4, r);
    /* outside the accurate range keep the result bounded (NaN passes) */
    r = gc__seld(r > 0.7854, 0.7854, r);
    r = gc__seld(r < -0.7854, -0.7854, r);
    double z2 = r * r;
    double ps = 2.7249925497335146e-06;
    ps = GC__FMA(ps, z2, -0.00019840086733027048);
    ps = GC__FMA(ps, z2, 0.008333331874705844);
    ps = GC__FMA(ps, z2, -0.16666666663855279);
    double s = GC__FMA(r * z2, ps, r);
    double pc = -2.7300958948734467e-07;
    pc = GC__FMA(pc, z2, 2.4800600375188895e-05);
    pc = GC__FMA(pc, z2, -0.0013888887672013149);
    pc = GC__FMA(pc, z2, 0.04166666666432119);
    double c = GC__FMA(z2 * z2, pc, 1.0 - 0.5 * z2);
    double v = gc__seld(q & 1u, c, s);
    v = gc__u2d(gc__d2u(v) ^ ((uint64_t)(q & 2u) << 62));  /* negate in quadrants 2, 3 */
    v = gc__seld((fabs(xd) < 0x1p-12) & (qoff == 0u), xd, v);  /* sin of tiny x is x, keeps -0.0 */
    return (float)v;
}

GC_MATH_FN float gc_sinf(float x) { return gc__sincosf(x, 0u); }

GC_MATH_FN float gc_cosf(float x) { return gc__sincosf(x, 1u); }

/* Vectorised by gcc only with -fno-math-errno (otherwise it keeps a scalar errno path). */
GC_MATH_FN float gc_sqrtf(float x) { return sqrtf(x); }

/* ========================================================================================== */
/* double                                                                                      */
/* ========================================================================================== */

#define GC__D_SHIFT 0x1.8p52
#define GC__D_LOG2E 1.4426950408889634
#define GC__D_LN2HI 0.6931471806019545      /* 32 significant bits: k*LN2HI exact, |k| < 2^11 */
#define GC__D_LN2LO (-4.2009150726810846e-11)

/* e^r - 1 on |r| <= ln2/2, as r + r^2 P(r): relative error < 2^-60 */
GC_MATH_FN double gc__expm1_poly(double r) {
    double p = 2.0914898727175524e-09;
    p = GC__FMA(p, r, 2.5105513541847086e-08);
    p = GC__FMA(p, r, 2.755727313289604e-07);
    p = GC__FMA(p, r, 2.7557254685728803e-06);
    p = GC__FMA(p, r, 2.480158732595111e-05);
    p = GC__FMA(p, r, 0.0001984126987538548);
    p = GC__FMA(p, r, 0.0013888888888883633);
    p = GC__FMA(p, r, 0.008333333333325973);
    p = GC__FMA(p, r, 0.04166666666666667);
    p = GC__FMA(p, r, 0.1666666666666667);
    p = GC__FMA(p, r, 0.5);
    return GC__FMA(r * r, p, r);
}

GC_MATH_FN double gc__exp_reduce(double x, int64_t *n) {
    double z = GC__FMA(x, GC__D_LOG2E, GC__D_SHIFT);
    double nf = z - GC__D_SHIFT;
    *n = (int64_t)(gc__d2u(z) - gc__d2u(GC__D_SHIFT));
    double r = GC__FMA(-nf, GC__D_LN2HI, x);  /* exact */
    return GC__FMA(-nf, GC__D_LN2LO, r);
}

/* 2^n for -1022 <= n <= 1023 */
GC_MATH_FN double gc__pow2i(int64_t n) { return gc__u2d((uint64_t)(n + 1023) << 52); }

/* e^x for x in [-746, 710] or NaN (callers clamp) */
GC_MATH_FN double gc__exp_core(double x) {
    int64_t n;
    double r = gc__exp_reduce(x, &n);
    double p = 1.0 + gc__expm1_poly(r);
    int64_t n1 = n >> 1;   /* n in [-1077, 1025]: two exact scalings, one rounding */
    int64_t n2 = n - n1;
    return (p * gc__pow2i(n1)) * gc__pow2i(n2);
}

GC_MATH_FN double gc_exp(double x) {
    /* exp(710) > DBL_MAX, exp(-746) < 2^-1075 */
    x = gc__seld(x > 710.0, 710.0, x);
    x = gc__seld(x < -746.0, -746.0, x);
    return gc__exp_core(x);
}

/* e^x - 1 for x in [-80, 710] or NaN (callers clamp); exact to the ULP only for |x| >= 2^-54 */
GC_MATH_FN double gc__expm1_core(double x) {
    int64_t n;
    double r = gc__exp_reduce(x, &n);
    double p = gc__expm1_poly(r);
    double t = gc__pow2i(n - 1);   /* n in [-116, 1024] */
    return 2.0 * GC__FMA(t, p, t - 0.5);
}

GC_MATH_FN double gc_expm1(double x) {
    /* expm1(x) rounds to -1 for x < -37.5 */
    double xc = gc__seld(x > 710.0, 710.0, x);
    xc = gc__seld(xc < -80.0, -80.0, xc);
    double y = gc__expm1_core(xc);
    return gc__seld(fabs(x) < 0x1p-54, x, y);
}

GC_MATH_FN double gc__log_kernel(double f, double kf) {
    double s = f / (2.0 + f);
    double z = s * s;
    double q = 0.14616451042434167;
    q = GC__FMA(q, z, 0.15331721490738642);
    q = GC__FMA(q, z, 0.18182889128565508);
    q = GC__FMA(q, z, 0.22222211134749734);
    q = GC__FMA(q, z, 0.28571428625975764);
    q = GC__FMA(q, z, 0.39999999999899505);
    q = GC__FMA(q, z, 0.666666666666667);
    double R = z * q;
    double hfsq = 0.5 * f * f;
    return GC__FMA(kf, GC__D_LN2HI, f - (hfsq - GC__FMA(s, hfsq + R, kf * GC__D_LN2LO)));
}

/* (double)k for |k| < 2^51 by the magic-number trick: a 64-bit integer add and a bit cast, which
   AVX2 vectorises (a plain int64 -> double conversion needs AVX-512DQ, and without it gcc left
   log, log1p and softplus scalar). */
GC_MATH_FN double gc__small_i2d(int64_t k) {
    return gc__u2d((uint64_t)k + 0x4338000000000000ull) - 0x1.8p52;
}

GC_MATH_FN double gc__log_split(double x, int64_t *k) {
    uint64_t ix = gc__d2u(x);
    uint64_t t = ix - 0x3fe6a09e667f3bcdull;  /* bits of sqrt(1/2) */
    *k = (int64_t)t >> 52;
    return gc__u2d(ix - (t & 0xfff0000000000000ull));
}

GC_MATH_FN double gc_log(double x) {
    int sub = x < 0x1p-1022;
    double xs = x * gc__seld(sub, 0x1p52, 1.0);
    int64_t k;
    double m = gc__log_split(xs, &k);
    k -= sub ? 52 : 0;
    double y = gc__log_kernel(m - 1.0, gc__small_i2d(k));
    y = gc__seld(x < INFINITY, y, x);
    y = gc__seld(x == 0.0, -INFINITY, y);
    return gc__seld(x < 0.0, NAN, y);
}

GC_MATH_FN double gc__log1p_core(double x) {
    double u = 1.0 + x;
    double bv = u - x;
    double av = u - bv;
    double c = (1.0 - bv) + (x - av);
    int64_t k;
    double m = gc__log_split(u, &k);
    int64_t kc = k > 1000 ? 1000 : k;
    double f = GC__FMA(c, gc__pow2i(-kc), m - 1.0);
    return gc__log_kernel(f, gc__small_i2d(k));
}

GC_MATH_FN double gc_log1p(double x) {
    double y = gc__log1p_core(x);
    y = gc__seld(fabs(x) < 0x1p-55, x, y);
    y = gc__seld(x < INFINITY, y, x);
    y = gc__seld(x == -1.0, -INFINITY, y);
    return gc__seld(x < -1.0, NAN, y);
}

GC_MATH_FN double gc_tanh(double x) {
    /* tanh rounds to 1 for |x| > 19.1 and to x for |x| < 2^-27 */
    double a = fabs(x);
    a = gc__seld(a > 20.0, 20.0, a);
    double e = gc__expm1_core(2.0 * a);
    double y = gc__seld(a < 0x1p-27, a, e / (e + 2.0));
    return copysign(y, x);
}

GC_MATH_FN double gc__expnegabs(double x) {
    double na = -fabs(x);
    return gc__exp_core(gc__seld(na < -746.0, -746.0, na));
}

GC_MATH_FN double gc_sigmoid(double x) {
    double e = gc__expnegabs(x);
    double num = gc__seld(x >= 0.0, 1.0, e);
    return num / (1.0 + e);
}

GC_MATH_FN double gc_softplus(double x) {
    double e = gc__expnegabs(x);
    double l = gc__seld(e < 0x1p-55, e, gc__log1p_core(e));
    double m = gc__seld(x > 0.0, x, 0.0);
    return m + l;
}

/* pi/2 in 27-bit pieces: j * piece is exact for |j| < 2^26 */
#define GC__PIO2_D1 1.570796325802803
#define GC__PIO2_D2 9.920935739593517e-10
#define GC__PIO2_D3 5.721188709663575e-18
#define GC__PIO2_D4 1.6446256936324258e-26

GC_MATH_FN double gc__sincos(double x, uint64_t qoff) {
    double z = GC__FMA(x, 0.6366197723675814, GC__D_SHIFT);
    double j = z - GC__D_SHIFT;
    uint64_t q = gc__d2u(z) + qoff;
    /* x - j*pi/2 as a two-word r + lo.  j*D1, j*D2, j*D3 are exact products and x - j*D1 is
       exact; the two subtractions that follow may round, and two-sum recovers their errors.
       (When r is tiny they are exact by Sterbenz, and only the last piece, j*D4, is inexact.) */
    double r1 = GC__FMA(-j, GC__PIO2_D1, x);
    double t2 = j * GC__PIO2_D2;
    double r2 = r1 - t2;
    double a2 = r2 + t2;
    double b2 = r2 - a2;
    double e2 = (r1 - a2) - (t2 + b2);
    double t3 = j * GC__PIO2_D3;
    double r3 = r2 - t3;
    double a3 = r3 + t3;
    double b3 = r3 - a3;
    double e3 = (r2 - a3) - (t3 + b3);
    double lo = GC__FMA(-j, GC__PIO2_D4, e2 + e3);
    double r = r3 + lo;
    lo = (r3 - r) + lo;
    /* outside the accurate range keep the result bounded (NaN passes) */
    lo = gc__seld(fabs(r) > 0.7854, 0.0, lo);
    r = gc__seld(r > 0.7854, 0.7854, r);
    r = gc__seld(r < -0.7854, -0.7854, r);
    double z2 = r * r;
    double ps = -7.586697057471806e-13;
    ps = GC__FMA(ps, z2, 1.6058531617964313e-10);
    ps = GC__FMA(ps, z2, -2.505210623244113e-08);
    ps = GC__FMA(ps, z2, 2.7557319219339146e-06);
    ps = GC__FMA(ps, z2, -0.00019841269841265065);
    ps = GC__FMA(ps, z2, 0.008333333333333331);
    ps = GC__FMA(ps, z2, -0.16666666666666666);
    /* sin(r + lo) = sin r + lo cos r;  cos(r + lo) = cos r - lo sin r  (to first order) */
    double s = r + GC__FMA(r * z2, ps, lo * (1.0 - 0.5 * z2));
    double pc = 4.745871868553664e-14;
    pc = GC__FMA(pc, z2, -1.147046088704184e-11);
    pc = GC__FMA(pc, z2, 2.087675579107684e-09);
    pc = GC__FMA(pc, z2, -2.7557319221402814e-07);
    pc = GC__FMA(pc, z2, 2.4801587301584645e-05);
    pc = GC__FMA(pc, z2, -0.0013888888888888887);
    pc = GC__FMA(pc, z2, 0.041666666666666664);
    /* cos = (1 - z/2) + z^2 P: add the rounding error of 1 - z/2 back (fdlibm) */
    double hz = 0.5 * z2;
    double w = 1.0 - hz;
    double c = w + (((1.0 - w) - hz) + GC__FMA(z2 * z2, pc, -r * lo));
    double v = gc__seld(q & 1u, c, s);
    v = gc__u2d(gc__d2u(v) ^ ((q & 2u) << 62));  /* negate in quadrants 2, 3 */
    return gc__seld((fabs(x) < 0x1p-27) & (qoff == 0u), x, v);  /* sin of tiny x is x, keeps -0.0 */
}

GC_MATH_FN double gc_sin(double x) { return gc__sincos(x, 0u); }

GC_MATH_FN double gc_cos(double x) { return gc__sincos(x, 1u); }

/* Vectorised by gcc only with -fno-math-errno. */
GC_MATH_FN double gc_sqrt(double x) { return sqrt(x); }

#endif /* GC_MATH_H */
