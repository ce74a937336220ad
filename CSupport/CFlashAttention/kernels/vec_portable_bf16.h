// vec_portable_bf16.h — the bf16 pair layer in plain C, for bf16_tile_kernels.h over
// vec_portable.h: a vector of VF_W = 8 pairs of bf16 (32 bits each, low half first) against the
// 8 fp32 lanes of vf. It computes what vdpbf16ps computes — each product exact in fp32, the two
// adds rounded to nearest even, subnormal inputs and results as zero — one lane at a time.
// Only amx_emulated.c uses it: the AMX kernels, run on any CPU in an emulation build (make
// test-amx-emulated), need a whole table around them.
#ifndef FA_VEC_PORTABLE_BF16_H
#define FA_VEC_PORTABLE_BF16_H

typedef struct vbh { uint32_t p[8]; } vbh;

// A bf16 as vdpbf16ps reads it: subnormals (exponent 0) as zero of the same sign.
static inline float bf16_daz(uint16_t h) {
    return fa_bf16_to_f32((h & 0x7F80u) ? h : (uint16_t)(h & 0x8000u));
}
// A result as vdpbf16ps writes it: subnormals flushed to zero of the same sign.
static inline float f32_ftz(float x) {
    const uint32_t b = fa_float_bits(x);
    return (b & 0x7F800000u) ? x : fa_bits_float(b & 0x80000000u);
}

/// VF_W pairs from p.
VF_INLINE vbh vbh_loadu(const uint32_t *p) { vbh r; VF_LANES(r.p[l_] = p[l_]); return r; }
/// One pair in every lane.
VF_INLINE vbh vbh_set1(uint32_t pair) { vbh r; VF_LANES(r.p[l_] = pair); return r; }
/// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1] per lane, as vdpbf16ps.
VF_INLINE vf vf_dot_bf16(vf acc, vbh a, vbh b) {
    vf r;
    VF_LANES({
        const float lo = bf16_daz((uint16_t)a.p[l_]) * bf16_daz((uint16_t)b.p[l_]);
        const float hi = bf16_daz((uint16_t)(a.p[l_] >> 16)) * bf16_daz((uint16_t)(b.p[l_] >> 16));
        const float t = f32_ftz(acc.v[l_] + lo);
        r.v[l_] = f32_ftz(t + hi);
    });
    return r;
}
/// out[l] = (bf16(a[l]), bf16(b[l])), l < VF_W, rounded to nearest even.
VF_INLINE void vbh_store_rounded(uint32_t *out, vf a, vf b) {
    VF_LANES(out[l_] = (uint32_t)fa_f32_to_bf16(a.v[l_]) | (uint32_t)fa_f32_to_bf16(b.v[l_]) << 16);
}
/// out[l] = (a[l], b[l]) for l < VF_W, bf16 bits as they are (b NULL: 0).
VF_INLINE void vbh_store_zipped(uint32_t *out, const uint16_t *a, const uint16_t *b) {
    VF_LANES(out[l_] = (uint32_t)a[l_] | (b ? (uint32_t)b[l_] << 16 : 0u));
}
/// out[0 … 2·VF_W) = bf16(a), bf16(b), rounded to nearest even.
VF_INLINE void vf_store_bf16x2(uint16_t *out, vf a, vf b) {
    uint16_t t[2 * VF_W];  // both read before either is stored (in-place rounding)
    VF_LANES(t[l_] = fa_f32_to_bf16(a.v[l_]); t[VF_W + l_] = fa_f32_to_bf16(b.v[l_]));
    for (int i = 0; i < 2 * VF_W; i++) out[i] = t[i];
}
/// out[0 … VF_W) = bf16(a), rounded to nearest even.
VF_INLINE void vf_store_bf16(uint16_t *out, vf a) {
    uint16_t t[VF_W];
    VF_LANES(t[l_] = fa_f32_to_bf16(a.v[l_]));
    for (int i = 0; i < VF_W; i++) out[i] = t[i];
}

#endif  // FA_VEC_PORTABLE_BF16_H
