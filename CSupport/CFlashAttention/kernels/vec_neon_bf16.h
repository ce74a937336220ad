// vec_neon_bf16.h — the bf16 pair layer over ARM64 FEAT_BF16 (BFDOT, BFCVT), for
// bf16_tile_kernels.h: a vector of VF_W = 8 pairs of bf16 (32 bits each, low half first) in
// two 128-bit registers, against the 8 fp32 lanes of vec_neon.h's vf. Included by
// neon_bf16.c after vec_neon.h (compiled with arch=armv8.2-a+bf16).
//
// BFDOT without FEAT_EBF16 (FPCR.EBF, which Linux leaves 0) rounds its two products' sum and
// the accumulation to odd, with subnormals flushed: at most one unit of fp32 per step where
// vdpbf16ps has half (neon_bf16.c). BFCVT rounds to nearest even (FPCR's mode, which Linux
// leaves at nearest) and keeps NaN a NaN.
#ifndef FA_VEC_NEON_BF16_H
#define FA_VEC_NEON_BF16_H

typedef struct vbh { bfloat16x8_t lo, hi; } vbh;

/// VF_W pairs from p.
VF_INLINE vbh vbh_loadu(const uint32_t *p) {
    return (vbh){vreinterpretq_bf16_u32(vld1q_u32(p)), vreinterpretq_bf16_u32(vld1q_u32(p + 4))};
}
/// One pair in every lane.
VF_INLINE vbh vbh_set1(uint32_t pair) {
    const bfloat16x8_t d = vreinterpretq_bf16_u32(vdupq_n_u32(pair));
    return (vbh){d, d};
}
/// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1] per lane.
VF_INLINE vf vf_dot_bf16(vf acc, vbh a, vbh b) {
    return (vf){vbfdotq_f32(acc.lo, a.lo, b.lo), vbfdotq_f32(acc.hi, a.hi, b.hi)};
}

// The 8 floats of v as 8 bf16, rounded to nearest even (BFCVTN, BFCVTN2).
VF_INLINE uint16x8_t bf16_of(vf v) {
    return vreinterpretq_u16_bf16(vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(v.lo), v.hi));
}
// out[l] = (a[l], b[l]) for the 8 lanes of two rows of bf16 bits.
VF_INLINE void store_zip(uint32_t *out, uint16x8_t a, uint16x8_t b) {
    vst1q_u32(out, vreinterpretq_u32_u16(vzip1q_u16(a, b)));
    vst1q_u32(out + 4, vreinterpretq_u32_u16(vzip2q_u16(a, b)));
}
/// out[l] = (bf16(a[l]), bf16(b[l])), l < VF_W, rounded to nearest even.
VF_INLINE void vbh_store_rounded(uint32_t *out, vf a, vf b) { store_zip(out, bf16_of(a), bf16_of(b)); }
/// out[l] = (a[l], b[l]) for l < VF_W, bf16 bits as they are (b NULL: 0).
VF_INLINE void vbh_store_zipped(uint32_t *out, const uint16_t *a, const uint16_t *b) {
    store_zip(out, vld1q_u16(a), b ? vld1q_u16(b) : vdupq_n_u16(0));
}
/// out[0 … 2·VF_W) = bf16(a), bf16(b), rounded to nearest even.
VF_INLINE void vf_store_bf16x2(uint16_t *out, vf a, vf b) {
    const uint16x8_t x = bf16_of(a), y = bf16_of(b);  // both read before either is stored
    vst1q_u16(out, x);
    vst1q_u16(out + VF_W, y);
}
/// out[0 … VF_W) = bf16(a), rounded to nearest even.
VF_INLINE void vf_store_bf16(uint16_t *out, vf a) { vst1q_u16(out, bf16_of(a)); }

#endif  // FA_VEC_NEON_BF16_H
