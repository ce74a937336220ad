// vec_portable.h — the thin vector layer in plain C (8 floats in a struct; the compiler maps
// the lane loops onto whatever the baseline target has), for the kernel sources written once
// and compiled per ISA (tile_kernels.h, row_kernels.h). The path on CPUs without AVX2, and the
// template for a new ISA's layer.
#ifndef FA_VEC_PORTABLE_H
#define FA_VEC_PORTABLE_H
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include "microkernel.h"
#include "half.h"

typedef struct vf { float v[8]; } vf;
/// A lane predicate, and a "first n lanes" one for loads and stores (n itself).
typedef struct vm { int m[8]; } vm;
typedef int vtail;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 2
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 2
/// Query vectors per row the scores tile keeps in registers (0: load them for every key).
#define VF_QREG 0
/// Key-major tiles (tile_kernels.h): small, since the lanes live wherever the compiler puts
/// them (SSE2 registers at the x86-64 baseline: two per vector).
#define TILE_ST_K 4
#define TILE_ST_Q 1
#define TILE_ST_K1 4
#define TILE_PV_R 4
#define TILE_PV_V 2
#define TILE_PV_LAST_R 4
#define TILE_SOFTMAX_CHAINS 2
enum { VF_W = 8 };
#define VF_FN
#define VF_INLINE static inline __attribute__((always_inline))

// 2^x with libm; below FA_EXP2_MIN (and at −inf) exactly 0, as in the SIMD layers.
static inline float exp2_portable_one(float x) { return x < FA_EXP2_MIN ? 0.0f : exp2f(x); }

#define VF_LANES(expr) do { for (int l_ = 0; l_ < VF_W; l_++) { expr; } } while (0)
VF_INLINE vf vf_zero(void) { vf r; VF_LANES(r.v[l_] = 0.0f); return r; }
VF_INLINE vf vf_set1(float x) { vf r; VF_LANES(r.v[l_] = x); return r; }
VF_INLINE vf vf_loadu(const float *p) { vf r; VF_LANES(r.v[l_] = p[l_]); return r; }
VF_INLINE vf vf_load_first_or(const float *p, int n, float fill) {
    vf r;
    VF_LANES(r.v[l_] = l_ < n ? p[l_] : fill);
    return r;
}
VF_INLINE void vf_storeu(float *p, vf v) { VF_LANES(p[l_] = v.v[l_]); }
VF_INLINE void vf_store_first(float *p, vf v, int n) { VF_LANES(if (l_ < n) p[l_] = v.v[l_]); }
VF_INLINE vf vf_fma(vf a, vf b, vf c) { vf r; VF_LANES(r.v[l_] = a.v[l_] * b.v[l_] + c.v[l_]); return r; }
VF_INLINE vf vf_add(vf a, vf b) { vf r; VF_LANES(r.v[l_] = a.v[l_] + b.v[l_]); return r; }
VF_INLINE vf vf_sub(vf a, vf b) { vf r; VF_LANES(r.v[l_] = a.v[l_] - b.v[l_]); return r; }
VF_INLINE vf vf_mul(vf a, vf b) { vf r; VF_LANES(r.v[l_] = a.v[l_] * b.v[l_]); return r; }
VF_INLINE vf vf_max(vf a, vf b) { vf r; VF_LANES(r.v[l_] = a.v[l_] > b.v[l_] ? a.v[l_] : b.v[l_]); return r; }
VF_INLINE float vf_hsum(vf v) {
    const float a = (v.v[0] + v.v[4]) + (v.v[2] + v.v[6]);
    const float b = (v.v[1] + v.v[5]) + (v.v[3] + v.v[7]);
    return a + b;
}
VF_INLINE float vf_hmax(vf v) {
    float m = v.v[0];
    VF_LANES(m = v.v[l_] > m ? v.v[l_] : m);
    return m;
}
VF_INLINE void vf_hsum4(vf a, vf b, vf c, vf d, float out[4]) {
    out[0] = vf_hsum(a);
    out[1] = vf_hsum(b);
    out[2] = vf_hsum(c);
    out[3] = vf_hsum(d);
}
VF_INLINE vf vf_exp2(vf x) { vf r; VF_LANES(r.v[l_] = exp2_portable_one(x.v[l_])); return r; }
VF_INLINE float vf_first(vf v) { return v.v[0]; }

// ---- half-precision elements, widened exactly as they are loaded ----
VF_INLINE vf vf_load_f16(const uint16_t *p) { vf r; VF_LANES(r.v[l_] = fa_f16_to_f32(p[l_])); return r; }
VF_INLINE vf vf_load_f16_first(const uint16_t *p, int n) {
    vf r;
    VF_LANES(r.v[l_] = l_ < n ? fa_f16_to_f32(p[l_]) : 0.0f);
    return r;
}
VF_INLINE vf vf_load_bf16(const uint16_t *p) { vf r; VF_LANES(r.v[l_] = fa_bf16_to_f32(p[l_])); return r; }
VF_INLINE vf vf_load_bf16_first(const uint16_t *p, int n) {
    vf r;
    VF_LANES(r.v[l_] = l_ < n ? fa_bf16_to_f32(p[l_]) : 0.0f);
    return r;
}

/// 2·VF_W bf16 elements at p split by parity, as floats (exact).
VF_INLINE void vf_load_bf16_split(const uint16_t *p, vf *even, vf *odd) {
    for (int l = 0; l < VF_W; l++) {
        even->v[l] = fa_bf16_to_f32(p[2 * l]);
        odd->v[l] = fa_bf16_to_f32(p[2 * l + 1]);
    }
}
/// 2·VF_W floats (a, then b) split by parity, and back.
VF_INLINE void vf_split_parity(vf a, vf b, vf *even, vf *odd) {
    float x[2 * VF_W];
    for (int l = 0; l < VF_W; l++) x[l] = a.v[l], x[VF_W + l] = b.v[l];
    for (int l = 0; l < VF_W; l++) even->v[l] = x[2 * l], odd->v[l] = x[2 * l + 1];
}
VF_INLINE void vf_merge_parity(vf even, vf odd, vf *a, vf *b) {
    float x[2 * VF_W];
    for (int l = 0; l < VF_W; l++) x[2 * l] = even.v[l], x[2 * l + 1] = odd.v[l];
    for (int l = 0; l < VF_W; l++) a->v[l] = x[l], b->v[l] = x[VF_W + l];
}

/// 2^x for any x.
VF_INLINE vf vf_exp2_any(vf x) { return vf_exp2(x); }

// ---- lane predicates, tails, and what the key-major tiles need besides arithmetic ----
VF_INLINE vtail vf_tail(int n) { return n; }
VF_INLINE vf vf_load_tail(const float *p, vtail t) { return vf_load_first_or(p, t, 0.0f); }
VF_INLINE void vf_store_tail(float *p, vf v, vtail t) { vf_store_first(p, v, t); }
VF_INLINE vf vf_zero_past(vf v, vtail t) { vf r; VF_LANES(r.v[l_] = l_ < t ? v.v[l_] : 0.0f); return r; }
VF_INLINE vm vf_eq(vf a, vf b) { vm r; VF_LANES(r.m[l_] = a.v[l_] == b.v[l_]); return r; }
VF_INLINE vm vf_neq(vf a, vf b) { vm r; VF_LANES(r.m[l_] = !(a.v[l_] == b.v[l_])); return r; }
VF_INLINE vm vf_lt(vf a, vf b) { vm r; VF_LANES(r.m[l_] = a.v[l_] < b.v[l_]); return r; }
VF_INLINE vm vf_or_mask(vm a, vm b) { vm r; VF_LANES(r.m[l_] = a.m[l_] || b.m[l_]); return r; }
VF_INLINE vf vf_select(vm m, vf a, vf b) { vf r; VF_LANES(r.v[l_] = m.m[l_] ? b.v[l_] : a.v[l_]); return r; }
VF_INLINE vf vf_zero_unless(vm m, vf a) { vf r; VF_LANES(r.v[l_] = m.m[l_] ? a.v[l_] : 0.0f); return r; }
VF_INLINE vf vf_fill_outside(vf v, int f, int l, float fill) {
    vf r;
    VF_LANES(r.v[l_] = l_ < f || l_ >= l ? fill : v.v[l_]);
    return r;
}
VF_INLINE vf vf_div(vf a, vf b) { vf r; VF_LANES(r.v[l_] = a.v[l_] / b.v[l_]); return r; }
VF_INLINE vf vf_fnma(vf a, vf b, vf c) { vf r; VF_LANES(r.v[l_] = c.v[l_] - a.v[l_] * b.v[l_]); return r; }
VF_INLINE vf vf_abs(vf x) { vf r; VF_LANES(r.v[l_] = fabsf(x.v[l_])); return r; }
VF_INLINE vf vf_with_sign_of(vf mag, vf x) { vf r; VF_LANES(r.v[l_] = copysignf(mag.v[l_], x.v[l_])); return r; }
VF_INLINE vf vf_abs_lane_offset(int32_t base) {
    vf r;
    VF_LANES({
        const int32_t d = (int32_t)((uint32_t)base + (uint32_t)l_);
        r.v[l_] = (float)(d < 0 ? -(int64_t)d : (int64_t)d);
    });
    return r;
}
VF_INLINE vf vf_bool_bytes(const uint8_t *p, int n) {
    vf r;
    VF_LANES(r.v[l_] = l_ < n && p[l_] ? 0.0f : -INFINITY);
    return r;
}
VF_INLINE void vf_transpose(vf r[VF_W]) {
    vf t[8];
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 8; c++) t[c].v[i] = r[i].v[c];
    for (int c = 0; c < 8; c++) r[c] = t[c];
}

#endif
