// microkernel.h — the contract between the loop nest (frame/) and the ISA leaves (kernels/).
//
// The loop nest knows tile sizes and these function pointers only; it never names an ISA.
// Each ISA file fills one fa_kernels table with static functions; dispatch/cpu.c picks one
// table per call (FA_ISA or the best the CPU supports).
//
// Scores are kept transposed, key-major: st[j, i] is key j against query i. A vector then
// holds one key's scores for consecutive queries, so the row max, exp and row sum of the
// online softmax are plain vertical vector operations, and Q is transposed once per query
// block instead of K once per key block. Queries are padded to a multiple of the vector
// width (pad queries are zero and their results discarded), so no kernel has a query tail.
//
// Layouts (floats, row-major; "rp" = rows padded to vector_width):
//   qt  [dqk × rp]   row stride ldqt    Q block, transposed and multiplied by scale·log2(e)
//   k   [keys × dqk] row stride ldk     the caller's K rows, read where they lie
//   st  [keys × rp]  row stride ldst    scores (log2 units), then probabilities, in place
//   v   [keys × dv]  row stride ldv     the caller's V rows, read where they lie
//   acc [rp × ldacc]                    unnormalised output; ldacc ≥ dv, a multiple of 16
//   row_max, row_sum, alpha, block_max  [rp]  per-query softmax state
#ifndef FA_MICROKERNEL_H
#define FA_MICROKERNEL_H

#include <stdint.h>

/// Coefficients of 2^f ≈ Σ c_k f^k on f ∈ [−0.5, 0.5]: a degree-6 minimax fit of the relative
/// error (1.97e-9 in exact arithmetic; ≤ 1.7 units of 2⁻²⁴ evaluated in float32 by Horner).
#define FA_EXP2_C1 0.6931471824645996f
#define FA_EXP2_C2 0.24022647738456726f
#define FA_EXP2_C3 0.055503323674201965f
#define FA_EXP2_C4 0.00961843691766262f
#define FA_EXP2_C5 0.0013398875016719103f
#define FA_EXP2_C6 0.00015353361959569156f
/// Below this, 2^x is flushed to 0 (also what −inf, i.e. a masked score, becomes).
#define FA_EXP2_MIN (-126.0f)

/// The longest head dim scores_q_bf16dot takes (its query rows are held in registers).
#define FA_ROW_BF16DOT_MAX_DQK 256

/// "No bound" for a side of the band: far beyond any extent, safe to add small numbers to.
#define FA_BAND_OPEN ((int64_t)1 << 40)

/// The keys rows i … i+nr−1 of a band see, among keys 0 … keys−1: [*j0, *j1).
static inline void fa_band_keys(int keys, int64_t i, int64_t nr, int masked, int64_t lo,
                                int64_t hi, int *j0, int *j1) {
    if (!masked) {
        *j0 = 0;
        *j1 = keys;
        return;
    }
    // Row r sees key j iff j + lo ≤ r < j + hi, i.e. r − hi < j ≤ r − lo.
    int64_t a = i - hi + 1, b = i + nr - lo;
    a = a < 0 ? 0 : (a > keys ? keys : a);
    b = b < a ? a : (b > keys ? keys : b);
    *j0 = (int)a;
    *j1 = (int)b;
}

/// log2(e) and ln(2) in float32, and in double (for what is formed once per row or call).
#define FA_LOG2E 1.44269504088896341f
#define FA_LN2 0.693147180559945309f
#define FA_LOG2E_F64 1.442695040888963407359924681001892137
#define FA_LN2_F64 0.693147180559945309417232121458

/// scale · log2(e), the factor that takes Q·Kᵀ into base-2 scores: the product of the float
/// scale and log2(e) in double, rounded once (scale · FA_LOG2E in float adds FA_LOG2E's own
/// error, 1.3·10⁻⁸ of every score). Forward, decode and backward use this same value, so the
/// backward's P = 2^(S − L2) is the softmax whose logsumexp the forward stored.
static inline float fa_scale_log2(float scale) {
    return (float)((double)scale * FA_LOG2E_F64);
}

/// The elementwise score modifiers of one tile (rows from q0, keys from k0), as score_mods
/// applies them; the frame resolves them from the problem (frame/score_mods.c).
typedef struct fa_tile_mods {
    float softcap;        ///< c > 0: s ← c·tanh(s/c) in natural units; 0: none
    int has_alibi;
    float alibi_slope2;   ///< the head's ALiBi slope · log2(e): bias per key of distance
    int64_t alibi_base;   ///< q0 + (Lk − Lq) − k0: row i, key j are |alibi_base + i − j| apart
    /// The element mask (at most one non-NULL), pointing at the tile's (row 0, key 0) element:
    /// (row i, key j) is at i·mask_q + j·mask_k. Bool: 0 masks; additive: added (natural units).
    const uint8_t *mask_bool;
    const float *mask_add;
    int64_t mask_q, mask_k;
} fa_tile_mods;

/// Asks for the mask rows [r0, r1) of a tile (key-contiguous: mask_k = 1), `keys` elements each,
/// a little before a score_mods kernel reads them: rows of a dense mask lie far apart, so the
/// hardware prefetchers do not follow them.
static inline void fa_prefetch_mask_rows(const fa_tile_mods *m, int r0, int r1, int keys) {
    const int size = m->mask_bool ? 1 : 4;
    const char *base = m->mask_bool ? (const char *)m->mask_bool : (const char *)m->mask_add;
    for (int r = r0; r < r1; r++) {
        const char *row = base + (int64_t)r * m->mask_q * size;
        for (int b = 0; b < keys * size; b += 64) __builtin_prefetch(row + b, 0, 2);
        __builtin_prefetch(row + keys * size - 1, 0, 2);
    }
}

/// Coefficients of tanh(x) ≈ x + x·z·P(z), z = x², |x| < FA_TANH_SMALL (Cephes' tanhf: relative
/// error ≈ 1e-7 there). Beyond it tanh|x| = (1 − e)/(1 + e), e = e^(−2|x|) ≤ 0.29, which has no
/// cancellation (unlike 1 − 2/(e^(2x) + 1) near 0).
#define FA_TANH_SMALL 0.625f
#define FA_TANH_P4 (-5.70498872745e-3f)
#define FA_TANH_P3 2.06390887954e-2f
#define FA_TANH_P2 (-5.37397155531e-2f)
#define FA_TANH_P1 1.33314422036e-1f
#define FA_TANH_P0 (-3.33332819422e-1f)

/// Element types of K and V rows the row kernels read; the values are fa_dtype's.
typedef enum fa_kv_type { FA_KV_F32 = 0, FA_KV_F16 = 1, FA_KV_BF16 = 2, FA_KV_TYPES = 3 } fa_kv_type;

/// Rows of keys key … key + keys − 1 of a block (offsets within the block) that lie at one
/// stride: a block of contiguous rows is one run, a block of a paged cache one run per page.
typedef struct fa_row_run {
    int key, keys;
    const void *rows;  ///< the first key's row, in the element type of the table entry
    int64_t ld;        ///< elements between consecutive keys' rows
} fa_row_run;

typedef struct fa_kernels {
    const char *name;    ///< "portable", "avx2", "avx512", "avx512bf16", "avx512amx", "neon", "neonbf16"
    int vector_width;    ///< floats per vector: query rows are padded to a multiple of it
    int query_tile;      ///< preferred multiple for the query block (the scores micro-tile)
    int key_tile;        ///< keys per scores micro-tile: key blocks are multiples of it

    /// qt[d, i] = scale · q[i, d] for i < rows; qt[d, i] = 0 for rows ≤ i < rows_padded.
    void (*pack_qt)(int rows, int rows_padded, int64_t dqk, const float *q, int64_t ldq,
                    float scale, float *qt, int64_t ldqt);

    /// st[j, i] = Σ_d k[j, d] · qt[d, i]   (j < keys, i < rows_padded);
    /// if masked: st[j, i] = −inf unless j + lo ≤ i < j + hi (the band of keys query i sees:
    /// causal masks and sliding windows), and register tiles hidden entirely are not computed;
    /// block_max[i] = max(block_max[i], max_j st[j, i]).
    void (*scores_t)(int keys, int rows_padded, int64_t dqk, const float *k, int64_t ldk,
                     const float *qt, int64_t ldqt, float *st, int64_t ldst, int masked,
                     int64_t lo, int64_t hi, float *block_max);

    /// Per query i: m' = max(row_max, block_max); P = 2^(st − m') in place;
    /// alpha = 2^(row_max − m'); row_sum = alpha·row_sum + Σ_j P; row_max = m';
    /// block_max = −inf. A query with m' = −inf (nothing seen yet) gets P = 0 and keeps its
    /// state (alpha·0 + 0). exp2 of −inf and of anything below FA_EXP2_MIN is exactly 0.
    /// If masked (the band of scores_t, whose hidden scores are −inf), keys outside a vector's
    /// band may be written as 0 without computing exp2 — the same values.
    void (*softmax_t)(int keys, int rows_padded, float *st, int64_t ldst, float *block_max,
                      float *row_max, float *row_sum, float *alpha, int masked, int64_t lo,
                      int64_t hi);

    /// acc[i, :] = alpha[i] · acc[i, :] + Σ_j st[j, i] · v[j, :]   (i < rows_padded): the
    /// block's sum formed from zero, keys in order, then added with one fma (one add where
    /// alpha is exactly 1 for a register tile's rows: no row max moved). If
    /// masked (the band of scores_t), keys hidden from every row of a register tile (P = 0
    /// there) are skipped.
    void (*accumulate_pv)(int rows_padded, int keys, int64_t dv, const float *pt, int64_t ldpt,
                          const float *v, int64_t ldv, const float *alpha, float *acc,
                          int64_t ldacc, int masked, int64_t lo, int64_t hi);

    // ---- backward ----

    /// Per query i: P = 2^(st[j, i] − lse2[i]) · (1 + lse2_fix[i]) (0 where lse2[i] = −inf:
    /// a row that saw no key), written over st; dS = P · (dpt[j, i] − dsum[i]), written over
    /// dpt. lse2_fix carries what rounding L2 to float lost: for L2 = hi + lo exactly, hi is
    /// lse2 and 2^(−lo) = 1 + fix to float precision (|fix| < 2⁻²⁰), applied as one fma.
    void (*softmax_grad_t)(int keys, int rows_padded, float *st, float *dpt, int64_t ld,
                           const float *lse2, const float *lse2_fix, const float *dsum);

    /// c[m, n] += Σ_k a[m·a_rs + k·a_cs] · b[k·ldb + n]   (m < M, n < N, k < K).
    /// c rows are read and written as whole vectors up to N rounded up to 16 (so ldc ≥ that);
    /// b is read only where n < N. With a_rs = 1 this is Aᵀ·B for a stored A.
    void (*gemm_acc)(int M, int64_t N, int K, const float *a, int64_t a_rs, int64_t a_cs,
                     const float *b, int64_t ldb, float *c, int64_t ldc);

    /// The score modifiers on a key-major tile of scores_t's output (log2 units), in order:
    ///   s ← c·tanh(s·ln2/c)·log2 e                    (softcap c > 0)
    ///   s ← s − alibi_slope2·|alibi_base + i − j|      (ALiBi)
    ///   s ← s + mask(i, j)·log2 e, or −inf where a bool mask is 0   (rows i < rows only)
    /// for j < keys, i < rows_padded. A score of −inf stays −inf. Pad rows (rows ≤ i) keep
    /// the capped, biased score and never read the mask. block_max[i] = max_j st[j, i] (set,
    /// not folded into the old value). With `derivative` (same layout as st): ∂s'/∂s =
    /// sech²(s·ln2/c) under softcap, else 1; 0 where the result is −inf.
    void (*score_mods)(const fa_tile_mods *m, int keys, int rows, int rows_padded, float *st,
                       int64_t ldst, float *block_max, float *derivative);

    // ---- query-major row tiles (decoding; kernels/row_kernels.h) ----
    // q [rows × ldq]: scaled query rows (log2 units), zero from dqk up to ldq (a multiple of
    // 16); s [rows × lds]: scores, then probabilities, one query's keys contiguous.

    // K and V rows are read in their stored element type and widened as they are loaded:
    // scores_q and block_pv_q have one entry per type, indexed by fa_kv_type (k, v are
    // then float, or uint16_t fp16 / bf16 bits; ldk, ldv count elements).

    /// s[r, j] = Σ_d q[r, d] · k[j, d]   (r < rows, j < keys).
    void (*scores_q[FA_KV_TYPES])(int rows, int keys, int64_t dqk, const float *q, int64_t ldq,
                                  const void *k, int64_t ldk, float *s, int64_t lds);

    /// Per row r: m' = max(row_max, max_j s[r, j]); P = 2^(s − m') in place;
    /// alpha = 2^(row_max − m'); row_sum = alpha·row_sum + Σ_j P; row_max = m'. A row with
    /// m' = −inf keeps its state and gets P = 0.
    void (*softmax_q)(int rows, int keys, float *s, int64_t lds, float *row_max,
                      float *row_sum, float *alpha);

    /// out[r, :] = Σ_j p[r, j] · v[j, :]   (r < rows): the block's P·V, formed on its own (out
    /// is not read) so that the caller adds it to the running output once per block — the
    /// output then sums blocks, not every key, in one chain. The block's V rows are `runs`
    /// (nruns ≥ 1, in key order, covering keys 0 … keys − 1); each output element sees the
    /// keys in order in one chain, so the bits do not depend on how the rows are cut into
    /// runs. The runs may also come over several calls, in key order: the run at key 0
    /// starts the sums (out is not read), a run at a later key adds to out (the row tiles of
    /// several kv heads read each page for all their heads before the next page). out rows
    /// are read and written as whole vectors up to dv rounded up to 16 (ldo ≥ that).
    void (*block_pv_q[FA_KV_TYPES])(int rows, int keys, int64_t dv, const float *p, int64_t ldp,
                                    const fa_row_run *runs, int nruns, float *out, int64_t ldo);

    /// dst[i] = src[i] as fp32, exactly (i < n), src of the entry's element type: half tiles
    /// widened for the key-major kernels.
    void (*widen[FA_KV_TYPES])(const void *src, float *dst, int64_t n);

    /// acc[r, :] = alpha[r] · acc[r, :] + out[r, :]   (r < rows; the multiply skipped where
    /// alpha is exactly 1); rows are read and written as whole vectors up to dv rounded up to 16.
    void (*fold_q)(int rows, int64_t dv, const float *alpha, const float *out, int64_t ldo,
                   float *acc, int64_t ldacc);

    // ---- bf16 dot products (kernels/bf16_tile_kernels.h): NULL where the ISA has none ----
    // Used when Q, K and V are all stored in bf16, forward and backward. Pairs are 32 bits, the
    // even element in the low half.

    /// qt2[p, i] = (q[i, 2p], q[i, 2p+1]) for i < rows, unscaled; zero pad rows and the missing
    /// half of an odd head dim's last pair. qt2 is [⌈dqk/2⌉ × rows_padded], row stride ldqt2.
    void (*pack_qt_bf16)(int rows, int rows_padded, int64_t dqk, const uint16_t *q, int64_t ldq,
                         uint32_t *qt2, int64_t ldqt2);
    /// scores_t over bf16 pairs: st[j, i] = scale · Σ_d k[j, d] · q[i, d], banded and folded
    /// into block_max as scores_t.
    void (*scores_t_bf16)(int keys, int rows_padded, int64_t dqk, const uint16_t *k, int64_t ldk,
                          const uint32_t *qt2, int64_t ldqt2, float scale, float *st,
                          int64_t ldst, int masked, int64_t lo, int64_t hi, float *block_max);
    /// out[p, c] = (x[2p, c], x[2p+1, c]) for c < n: bf16 rows (row stride ldx) paired along
    /// the rows, the reduction axis of a product (V over keys; Q, dO over queries; K over
    /// keys); zero for n ≤ c < ldo (≥ n rounded up to 16) and the missing row of an odd count.
    /// out is [⌈rows/2⌉ × ldo].
    void (*pack_pairs_bf16)(int rows, int64_t n, const uint16_t *x, int64_t ldx, uint32_t *out,
                            int64_t ldo);
    /// The forward's V block (rows = keys, n = dv) in whatever layout this table's
    /// accumulate_pv_bf16 reads, within pack_pairs_bf16's buffer: pack_pairs_bf16 itself, or
    /// AMX's Vᵀ tiles (amx_tile_kernels.h).
    void (*pack_v_bf16)(int rows, int64_t n, const uint16_t *x, int64_t ldx, uint32_t *out,
                        int64_t ldo);
    /// The same from fp32 rows rounded to bf16 (nearest even), n a multiple of 16 (the
    /// backward's dS over keys); in place allowed (out == x, ldo == ldx).
    void (*round_pairs_bf16)(int rows, int n, const float *x, int64_t ldx, uint32_t *out,
                             int64_t ldo);
    /// out[r, c] = bf16(x[r, c]) (nearest even) for c < n, a multiple of 16: each row's
    /// consecutive elements become pairs along the row (the backward's P and dS over queries);
    /// in place allowed (out == (uint16_t *)x, ldo == 2·ldx).
    void (*round_rows_bf16)(int rows, int n, const float *x, int64_t ldx, uint16_t *out,
                            int64_t ldo);
    /// c[m, n] += Σ_p a2[m·a_rs + p·a_ps] · b2[p·ldb2 + n]   (m < M, n < N, p < pairs): gemm_acc
    /// over bf16 pairs. b2 and c rows are read (c written) as whole vectors up to N rounded up
    /// to 16; b2 is zero past N.
    void (*gemm_acc_bf16)(int M, int64_t N, int pairs, const uint32_t *a2, int64_t a_rs,
                          int64_t a_ps, const uint32_t *b2, int64_t ldb2, float *c, int64_t ldc);
    /// accumulate_pv with P rounded to bf16 (to nearest even): acc[i, :] = alpha[i] · acc[i, :]
    /// + Σ_j bf16(pt[j, i]) · v[j, :], V as pack_v_bf16 left it; pt is overwritten (its rows
    /// become P pairs, and AMX's zeroes the pair rows up to its last 32-key tile).
    void (*accumulate_pv_bf16)(int rows_padded, int keys, int64_t dv, float *pt, int64_t ldpt,
                               const uint32_t *v2, int64_t ldv2, const float *alpha, float *acc,
                               int64_t ldacc, int masked, int64_t lo, int64_t hi);

    /// scores_q over bf16 pairs (decoding, Q, K, V all bf16): s[r, j] = scale · Σ_d q2[r, d] ·
    /// k[j, d]; q2 rows are the query's bf16 elements, unscaled, zero from dqk to the next
    /// multiple of 32; dqk ≤ FA_ROW_BF16DOT_MAX_DQK.
    void (*scores_q_bf16dot)(int rows, int keys, int64_t dqk, const uint16_t *q2, int64_t ldq2,
                             const uint16_t *k, int64_t ldk, float scale, float *s, int64_t lds);
    /// block_pv_q over bf16 pairs: out[r, :] = Σ_j bf16(p[r, j]) · v[j, :], P rounded to nearest
    /// even in place (p is overwritten); out rows are written up to dv rounded up to 32 (ldo ≥
    /// that), zero past dv. V rows as in block_pv_q, but all of the block's runs in one call
    /// (P is rounded once), every run but the last starting and ending on an even key (pairs
    /// never straddle runs).
    void (*block_pv_q_bf16dot)(int rows, int keys, int64_t dv, float *p, int64_t ldp,
                               const fa_row_run *runs, int nruns, float *out, int64_t ldo);

    /// y[j] = 2^x[j] for x[j] ≤ 0, as the softmax computes it (exposed for accuracy tests).
    void (*exp2)(const float *x, float *y, int64_t n);
} fa_kernels;

/// The tables. Each ISA file defines its own; the AVX ones only ever run where supported.
extern const fa_kernels fa_kernels_portable;
extern const fa_kernels fa_kernels_avx2;
extern const fa_kernels fa_kernels_avx512;
extern const fa_kernels fa_kernels_avx512_bf16;
extern const fa_kernels fa_kernels_avx512_amx;
extern const fa_kernels fa_kernels_neon;
extern const fa_kernels fa_kernels_neon_bf16;

#endif  // FA_MICROKERNEL_H
