/* gc_math.h -- vectorisable elementwise math for graphc's generated C.
 *
 * glibc's scalar expf/logf/tanhf/... are opaque calls, so a loop that uses them is never
 * vectorised (glibc's vector variants, libmvec, are only declared under -ffast-math, which graphc
 * does not use because it breaks NaN/Inf).  The functions below are branch-free: range
 * reduction, a fixed polynomial, exponent arithmetic on the bit pattern, and bit-blend selects
 * for the special cases.  No data-dependent branches and no calls: after inlining gcc vectorises
 * any loop that uses them (tests/test_gc_math.py checks -fopt-info-vec).  The one table is
 * sin/cos's bits of 2/pi (gc_pio2_table.h), read with plain indexed loads from a static const
 * array, which gcc vectorises as gathers (vpgather on AVX2, or element loads and inserts where
 * -march tunes gathers off, as for AMD Zen).
 *
 * Semantics follow IEEE / NumPy: NaN in gives NaN out; exp overflows to +inf and underflows to 0
 * through correctly rounded denormals; log(+-0) = -inf, log(x<0) = NaN, log(+inf) = +inf;
 * log1p(-1) = -inf; tanh(+-inf) = +-1; sigmoid(+inf) = 1, sigmoid(-inf) = 0; softplus(+inf) =
 * +inf, softplus(-inf) = 0; sin/cos(+-inf) = NaN; odd functions keep the sign of zero.
 *
 * Accuracy (max error against the correctly rounded result, see kernels/README.md): under
 * 2.5 ULP for every function, float and double; exp, log, sin, cos under 1 ULP.  sin/cos hold
 * that for every finite x, up to FLT_MAX/DBL_MAX: the argument reduction is exact (Payne-Hanek,
 * computed for every element, since a branch would stop vectorisation; it costs about 2x the
 * old Cody-Waite sin/cos on ordinary arguments, see kernels/README.md).
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

#include "gc_pio2_table.h"

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

/* (double)k for |k| < 2^51 by the magic-number trick: a 64-bit integer add and a bit cast, which
   AVX2 vectorises (a plain int64 -> double conversion needs AVX-512DQ, and without it gcc left
   log, log1p and softplus scalar). */
GC_MATH_FN double gc__small_i2d(int64_t k) {
    return gc__u2d((uint64_t)k + 0x4338000000000000ull) - 0x1.8p52;
}

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

/* Payne-Hanek for float, branch-free (ARM optimized-routines style): x = M 2^(E-150) with M
   the 24-bit integer significand, so x 2/pi = M C_E (mod 4), C_E = 2^(E-150) 2/pi mod 4, and
   gc__pio2_f[E] holds C_E to 94 fraction bits.  Three 32x32->64 integer products give M C_E
   mod 4 in 2.62 fixed point (integer wrap-around does the mod 4); rounding the top bits gives
   the quadrant, the rest the signed fraction.  Absolute error of f < 2^-61: the closest a
   float comes to a multiple of pi/2 is f ~ 2^-30 (x = 16367173 2^72), relative error 2^-31.  Returns r = f pi/2
   in [-pi/4, pi/4]; *q gets n mod 4 (correct for both signs). */
GC_MATH_FN double gc__reduce_pio2f(float x, uint32_t *q) {
    uint32_t ux = gc__f2u(x);
    uint32_t e = (ux >> 23) & 0xffu;
    uint32_t m = (ux & 0x7fffffu) | ((uint32_t)(e != 0u) << 23);  /* denormals: no implicit 1 */
    /* indexed loads (not a row pointer): gcc vectorises those as gathers */
    uint64_t a0 = (uint64_t)m * gc__pio2_f[e][0];
    uint64_t a1 = (uint64_t)m * gc__pio2_f[e][1];
    uint32_t a2 = m * gc__pio2_f[e][2];          /* its high bits are multiples of 4: dropped */
    uint64_t hi = ((uint64_t)a2 << 32) + a1 + (a0 >> 32);  /* 2^-62 units; mod 2^64 is mod 4 */
    uint64_t n = (hi + (1ull << 61)) >> 62;
    int64_t s = (int64_t)(hi - (n << 62));  /* |s| <= 2^61 */
    /* s to double with one rounding: two exact 32-bit halves (int64->double needs AVX-512DQ) */
    double d = GC__FMA(gc__small_i2d(s >> 32), 0x1p32, gc__small_i2d(s & 0xffffffff));
    double r = d * 3.4061215800865545e-19;  /* pi/2 2^-62 */
    uint64_t neg = (uint64_t)0 - (uint64_t)(ux >> 31);  /* x < 0: -n, -r */
    *q = (uint32_t)((n ^ neg) - neg);
    return gc__u2d(gc__d2u(r) ^ (neg << 63));
}

/* sin/cos: x 2/pi = n + f exactly (Payne-Hanek, see gc__reduce_pio2f), r = f pi/2 in double,
   then the polynomials in double: about 0.5 ULP for every finite x.  Quadrant logic with
   selects.  qoff = 0 gives sin, qoff = 1 gives cos (cos x = sin(x + pi/2)). */
GC_MATH_FN float gc__sincosf(float x, uint32_t qoff) {
    double xd = (double)x;
    uint32_t q;
    double r = gc__reduce_pio2f(x, &q);
    q += qoff;
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
    v = gc__seld(fabs(xd) <= 0x1.fffffep127, v, NAN);  /* inf, NaN */
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

/* Exact product a b = *p + (return value), for |a b| well inside the double range: FMA where
   the target has it, else Dekker's product on Veltkamp halves (b's halves are constants). */
GC_MATH_FN double gc__two_prod(double a, double b, double bh, double bl, double *p) {
    double ab = a * b;
    *p = ab;
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    (void)bh; (void)bl;
    return __builtin_fma(a, b, -ab);
#else
    double c = 134217729.0 * a;  /* 2^27 + 1 */
    double ah = c - (c - a);
    double al = a - ah;
    return ((ah * bh - ab) + ah * bl + al * bh) + al * bl;
#endif
}

#define GC__PIO2_HI 1.5707963267948966          /* pi/2 = HI + LO to 107 bits */
#define GC__PIO2_LO 6.123233995736766e-17
#define GC__PIO2_HIH 1.5707963407039642         /* HI = HIH + HIL, 26 + 27 bits (Veltkamp) */
#define GC__PIO2_HIL (-1.3909067675399456e-08)

/* Payne-Hanek for double, branch-free, exact for every finite x: x = M 2^(E-1075) with M the
   53-bit integer significand, so x 2/pi = M C_E (mod 4) with C_E = 2^(E-1075) 2/pi mod 4, and
   gc__pio2_d[E - GC__PIO2_D_E0] holds C_E to 190 fraction bits (kernels/gen_pio2_table.py).
   M C_E mod 4 is computed in integers, 32-bit limbs, 11 products 32x32->64 (wrap-around does
   the mod 4), with an absolute error < 2^-137, and f is kept to 2^-126; the closest a double
   comes to a multiple of pi/2 is f ~ 2^-61.6 (x = 6381956970095103 2^797), so f keeps about 64
   correct bits.  The fraction f (2 integer bits rounded off into n) is converted to double-double from
   exact 52-bit pieces, then times pi/2 as a double-double.  Returns r with *lo (r + lo = f pi/2,
   |r| <= pi/4); *q gets n mod 4 (correct for both signs). */
GC_MATH_FN double gc__reduce_pio2(double x, uint64_t *q, double *lo) {
    uint64_t ux = gc__d2u(x);
    int64_t e = (int64_t)((ux >> 52) & 0x7ffu);
    int64_t row = e - GC__PIO2_D_E0;  /* row 0 is zero: |x| < 2^-191 reduces to 0 (cos = 1) */
    row = row < 0 ? 0 : row;
    row = row > GC__PIO2_D_ROWS - 1 ? GC__PIO2_D_ROWS - 1 : row;  /* inf, NaN: callers select */
    uint64_t m = (ux & 0xfffffffffffffull) | (1ull << 52);
    uint64_t m0 = m & 0xffffffffu, m1 = m >> 32;  /* m1 < 2^21 */
    const uint64_t L = 0xffffffffu;
    /* indexed loads, vectorised as gathers; the row is C_E's six 32-bit limbs */
    uint64_t t0 = gc__pio2_d[row][0], t1 = gc__pio2_d[row][1], t2 = gc__pio2_d[row][2];
    uint64_t w0 = t0 & L, w1 = t0 >> 32, w2 = t1 & L, w3 = t1 >> 32, w4 = t2 & L, w5 = t2 >> 32;
    uint64_t a0 = m0 * w0, a1 = m0 * w1, a2 = m0 * w2, a3 = m0 * w3, a4 = m0 * w4, a5 = m0 * w5;
    uint64_t b0 = m1 * w0, b1 = m1 * w1, b2 = m1 * w2, b3 = m1 * w3, b4 = m1 * w4;
    /* columns of 32 bits, carries in 64-bit sums (each below 2^35); column 0 has no carry out
       that matters beyond a0 >> 32 */
    uint64_t c = (a0 >> 32) + (a1 & L) + (b0 & L);
    c = (c >> 32) + (a1 >> 32) + (b0 >> 32) + (a2 & L) + (b1 & L);
    uint64_t r2 = c & L;
    c = (c >> 32) + (a2 >> 32) + (b1 >> 32) + (a3 & L) + (b2 & L);
    uint64_t r3 = c & L;
    c = (c >> 32) + (a3 >> 32) + (b2 >> 32) + (a4 & L) + (b3 & L);
    uint64_t r4 = c & L;
    c = (c >> 32) + (a4 >> 32) + (b3 >> 32) + a5 + b4;   /* only the low word counts: mod 4 */
    uint64_t hi = (c << 32) | r4;         /* x 2/pi mod 4 in units of 2^-62 */
    uint64_t low = (r3 << 32) | r2;       /* the next 64 bits, units of 2^-126 */
    uint64_t n = (hi + (1ull << 61)) >> 62;
    uint64_t s = hi - (n << 62);          /* f 2^62, two's complement, |.| <= 2^61 */
    uint64_t fneg = (uint64_t)((int64_t)s >> 63);
    /* |f| 2^126 = uh 2^64 + ul (one's complement for f < 0: 2^-126 off, below the error) */
    uint64_t uh = s ^ fneg, ul = low ^ fneg;
    double da = gc__u2d((uh >> 9) | 0x4330000000000000ull) - 0x1p52;
    double db = gc__u2d((((uh & 0x1ffu) << 43) | (ul >> 21)) | 0x4330000000000000ull) - 0x1p52;
    double dc = gc__u2d((ul & 0x1fffffu) | 0x4330000000000000ull) - 0x1p52;
    da *= 0x1p-53;  /* bits 73..124 */
    db *= 0x1p-105; /* bits 21..72: below da's last bit, so the sum below is a fast two-sum */
    double fh = da + db;
    double fl = (db - (fh - da)) + dc * 0x1p-126;
    /* f pi/2 as a double-double */
    double ph;
    double pe = gc__two_prod(fh, GC__PIO2_HI, GC__PIO2_HIH, GC__PIO2_HIL, &ph);
    pe += GC__FMA(fh, GC__PIO2_LO, fl * GC__PIO2_HI);
    double r = ph + pe;
    double rl = pe - (r - ph);
    uint64_t xneg = (uint64_t)((int64_t)ux >> 63);
    uint64_t flip = (fneg ^ xneg) & 0x8000000000000000ull;
    *lo = gc__u2d(gc__d2u(rl) ^ flip);
    *q = (n ^ xneg) - xneg;
    return gc__u2d(gc__d2u(r) ^ flip);
}

GC_MATH_FN double gc__sincos(double x, uint64_t qoff) {
    uint64_t q;
    double lo;
    double r = gc__reduce_pio2(x, &q, &lo);
    q += qoff;
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
    v = gc__seld((fabs(x) < 0x1p-27) & (qoff == 0u), x, v);  /* sin of tiny x is x, keeps -0.0 */
    return gc__seld(fabs(x) <= 0x1.fffffffffffffp1023, v, NAN);  /* inf, NaN */
}

GC_MATH_FN double gc_sin(double x) { return gc__sincos(x, 0u); }

GC_MATH_FN double gc_cos(double x) { return gc__sincos(x, 1u); }

/* Vectorised by gcc only with -fno-math-errno. */
GC_MATH_FN double gc_sqrt(double x) { return sqrt(x); }

#endif /* GC_MATH_H */
