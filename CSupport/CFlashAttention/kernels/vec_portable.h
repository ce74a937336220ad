// vec_portable.h — the thin vector layer in plain C (8 floats in a struct; the compiler maps
// the lane loops onto whatever the baseline target has), for kernel sources written once and
// compiled per ISA (row_kernels.h). Include after exp2_portable_one is defined.
#ifndef FA_VEC_PORTABLE_H
#define FA_VEC_PORTABLE_H

typedef struct vf { float v[8]; } vf;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 2
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 2
/// Query vectors per row the scores tile keeps in registers (0: load them for every key).
#define VF_QREG 0
enum { VF_W = 8 };
#define VF_FN
#define VF_INLINE static inline __attribute__((always_inline))

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

#endif
