// neon_bf16.c — ARM64 with BF16 dot products (FEAT_BF16: BFDOT, BFCVT; Graviton 3, Neoverse
// V1/N2, Apple M2 and later): the NEON kernels, compiled again with bf16 allowed, plus, for Q,
// K and V all stored in bf16, the key-major kernels over bf16 pairs (bf16_tile_kernels.h over
// vec_neon_bf16.h: prefill and backward, the same source as AVX512-BF16's) and the decoding
// row kernels over bf16 pairs below (the avx512bf16 table's scores_q_bf16dot and
// block_pv_q_bf16dot). A table of its own, so FA_ISA=neon still runs (and tests) the plain
// NEON path on such a CPU.
//
// BFDOT: acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1] per fp32 lane. Without FEAT_EBF16 (FPCR.EBF,
// which Linux leaves 0) the two products and their sums are rounded to odd, not to nearest,
// with subnormals flushed to zero: each step's error is at most one unit of fp32 (2⁻²³
// relative) instead of half, so the scores carry at most twice the fp32 path's rounding — the
// tolerances (kernel_grid.c, the fuzz harness) have a factor 8 of headroom over it. P is
// rounded to bf16 (BFCVT, to nearest even) for P·V, as on x86: each output within 2⁻⁸·max|v|.
// ARM64 only: elsewhere this file compiles to nothing (dispatch/cpu.c never names its table).
#if defined(__aarch64__)
#define VF_EXTRA_TARGET "arch=armv8.2-a+bf16"
#include "vec_neon.h"
#include "tile_kernels.h"
#include "row_kernels.h"
#include "vec_neon_bf16.h"
#include "bf16_tile_kernels.h"

typedef bfloat16x8_t bh8;

VF_INLINE bh8 bh_load(const uint16_t *p) { return vreinterpretq_bf16_u16(vld1q_u16(p)); }

// The first n (0…8) bf16 elements at p, zero after: never reads past them.
VF_INLINE bh8 bh_load_first(const uint16_t *p, int n) {
    uint16_t tmp[8] = {0};
    for (int i = 0; i < n; i++) tmp[i] = p[i];
    return vreinterpretq_bf16_u16(vld1q_u16(tmp));
}

// ---- scores: s[r, j] = scale · Σ_d q2[r, d] · k[j, d] over bf16 pairs along d ----

// NR rows (≤ VF_SCORES_R) against `keys` keys: each key row read once, 8 elements (4 pairs) per
// BFDOT, two accumulator chains per row (even and odd groups of 8), summed at the end.
VF_INLINE void bf16_scores_rows(const int NR, int keys, int64_t dqk, const uint16_t *q2,
                                int64_t ldq2, const uint16_t *k, int64_t ldk, float scale,
                                float *s, int64_t lds) {
    const int64_t whole = dqk / 8 * 8;
    const int tail = (int)(dqk - whole);
    for (int j = 0; j < keys; j++) {
        const uint16_t *kj = k + (int64_t)j * ldk;
        float32x4_t a[VF_SCORES_R][2];
        for (int r = 0; r < NR; r++) a[r][0] = a[r][1] = vdupq_n_f32(0);
        int64_t d = 0;
        for (; d + 16 <= whole; d += 16) {
            const bh8 k0 = bh_load(kj + d), k1 = bh_load(kj + d + 8);
            for (int r = 0; r < NR; r++) {
                a[r][0] = vbfdotq_f32(a[r][0], k0, bh_load(q2 + r * ldq2 + d));
                a[r][1] = vbfdotq_f32(a[r][1], k1, bh_load(q2 + r * ldq2 + d + 8));
            }
        }
        if (d < whole) {
            const bh8 k0 = bh_load(kj + d);
            for (int r = 0; r < NR; r++) a[r][0] = vbfdotq_f32(a[r][0], k0, bh_load(q2 + r * ldq2 + d));
            d += 8;
        }
        if (tail) {  // the key row's last elements alone; q2 is zero past dqk
            const bh8 k0 = bh_load_first(kj + d, tail);
            for (int r = 0; r < NR; r++) a[r][1] = vbfdotq_f32(a[r][1], k0, bh_load(q2 + r * ldq2 + d));
        }
        for (int r = 0; r < NR; r++) s[r * lds + j] = vaddvq_f32(vaddq_f32(a[r][0], a[r][1])) * scale;
    }
}

/// scores_q over bf16 pairs (decoding, Q, K and V all bf16): q2 rows are bf16, zero from dqk
/// to the next multiple of 32; any dqk (the rows are read from memory, not held in registers).
VF_FN static void row_scores_bf16dot(int rows, int keys, int64_t dqk, const uint16_t *q2,
                                     int64_t ldq2, const uint16_t *k, int64_t ldk, float scale,
                                     float *s, int64_t lds) {
    const int pass = rows > VF_SCORES_R ? RowScoreKeys : keys;  // as row_scores
    for (int j0 = 0; j0 < keys; j0 += pass) {
        const int kk = keys - j0 < pass ? keys - j0 : pass;
        int r = 0;
        for (; r + VF_SCORES_R <= rows; r += VF_SCORES_R)
            bf16_scores_rows(VF_SCORES_R, kk, dqk, q2 + r * ldq2, ldq2, k + (int64_t)j0 * ldk, ldk,
                             scale, s + r * lds + j0, lds);
        for (; r < rows; r++)
            bf16_scores_rows(1, kk, dqk, q2 + r * ldq2, ldq2, k + (int64_t)j0 * ldk, ldk, scale,
                             s + r * lds + j0, lds);
    }
}

// ---- P·V: out[r, :] += Σ_j bf16(p[r, j]) · v[j, :] over pairs of keys ----

// NR rows × 8 columns from column c over one run: V rows 2jp and 2jp + 1 interleaved (zip1:
// columns 0–3 as pairs, zip2: 4–7), each dotted with the row's broadcast P pair. `live`
// columns of the 8 are read (the rest are zero).
VF_INLINE void bf16_pv_columns(const int NR, int live, int keys, const uint32_t *p2,
                               int64_t ldp2, const uint16_t *v, int64_t ldv, int64_t c,
                               float32x4_t acc[VF_PV_R][2]) {
    for (int jp = 0; 2 * jp < keys; jp++) {
        const uint16_t *a = v + (int64_t)(2 * jp) * ldv + c;
        const int has_b = 2 * jp + 1 < keys;
        const uint16x8_t va = live == 8 ? vld1q_u16(a) : vreinterpretq_u16_bf16(bh_load_first(a, live));
        const uint16x8_t vb = !has_b ? vdupq_n_u16(0)
                              : live == 8 ? vld1q_u16(a + ldv)
                                          : vreinterpretq_u16_bf16(bh_load_first(a + ldv, live));
        const bh8 lo = vreinterpretq_bf16_u16(vzip1q_u16(va, vb));
        const bh8 hi = vreinterpretq_bf16_u16(vzip2q_u16(va, vb));
        for (int r = 0; r < NR; r++) {
            const bh8 pair = vreinterpretq_bf16_u32(vdupq_n_u32(p2[r * ldp2 + jp]));
            acc[r][0] = vbfdotq_f32(acc[r][0], pair, lo);
            acc[r][1] = vbfdotq_f32(acc[r][1], pair, hi);
        }
    }
}

VF_INLINE void bf16_pv_rows(const int NR, int fresh, int keys, int64_t dv, const uint32_t *p2,
                            int64_t ldp2, const uint16_t *v, int64_t ldv, float *out,
                            int64_t ldo) {
    for (int64_t c = 0; c < dv; c += 8) {
        const int live = dv - c < 8 ? (int)(dv - c) : 8;
        float32x4_t acc[VF_PV_R][2];
        for (int r = 0; r < NR; r++) {
            acc[r][0] = fresh ? vdupq_n_f32(0) : vld1q_f32(out + r * ldo + c);
            acc[r][1] = fresh ? vdupq_n_f32(0) : vld1q_f32(out + r * ldo + c + 4);
        }
        bf16_pv_columns(NR, live, keys, p2, ldp2, v, ldv, c, acc);
        for (int r = 0; r < NR; r++) {
            vst1q_f32(out + r * ldo + c, acc[r][0]);
            vst1q_f32(out + r * ldo + c + 4, acc[r][1]);
        }
    }
}

/// block_pv_q over bf16 pairs: P rounded to bf16 in place (each row's keys become pairs),
/// then every run of V rows in order (every run but the last starts and ends on an even key,
/// so no pair straddles two); out rows written up to dv rounded up to 32, zero past dv.
VF_FN static void row_block_pv_bf16dot(int rows, int keys, int64_t dv, float *p, int64_t ldp,
                                       const fa_row_run *runs, int nruns, float *out,
                                       int64_t ldo) {
    const int rounded = (keys + 7) / 8 * 8;
    for (int r = 0; r < rows; r++) {  // 8 floats → 8 bf16 in place (read before written)
        float *pr = p + (int64_t)r * ldp;
        uint16_t *o = (uint16_t *)pr;
        for (int c = 0; c < rounded; c += 8) {
            const bfloat16x8_t h = vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(vld1q_f32(pr + c)),
                                                       vld1q_f32(pr + c + 4));
            vst1q_u16(o + c, vreinterpretq_u16_bf16(h));
        }
        if (keys & 1) o[keys] = 0;  // an odd count's missing partner (its lane is stale)
    }
    const int64_t cols = (dv + 31) / 32 * 32;
    for (int i = 0; i < nruns; i++) {
        const uint32_t *p2 = (const uint32_t *)p + runs[i].key / 2;
        int r = 0;
        for (; r + VF_PV_R <= rows; r += VF_PV_R)
            bf16_pv_rows(VF_PV_R, i == 0, runs[i].keys, dv, p2 + r * ldp, ldp,
                         (const uint16_t *)runs[i].rows, runs[i].ld, out + r * ldo, ldo);
        for (; r < rows; r++)
            bf16_pv_rows(1, i == 0, runs[i].keys, dv, p2 + r * ldp, ldp,
                         (const uint16_t *)runs[i].rows, runs[i].ld, out + r * ldo, ldo);
    }
    for (int r = 0; r < rows; r++)
        for (int64_t c = (dv + 7) / 8 * 8; c < cols; c++) out[r * ldo + c] = 0.0f;
    if (nruns == 0)
        for (int r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) out[r * ldo + c] = 0.0f;
}

#define KERNEL_TABLE fa_kernels_neon_bf16
#define KERNEL_NAME "neonbf16"
#define KERNEL_KEY_TILE 4
#define KERNEL_BF16 1
#include "kernel_table.h"
#endif  // __aarch64__
