// portable.c — plain C micro-kernels: always compiled, the reference for the SIMD leaves and
// the path on CPUs without AVX2. Inner loops run over contiguous queries so the compiler can
// vectorise them with whatever the baseline target offers.
#include <math.h>
#include <stddef.h>
#include "microkernel.h"

// qt[d, i] = scale · q[i, d]; zero pad queries.
static void pack_qt_portable(int rows, int rows_padded, int64_t dqk, const float *q, int64_t ldq,
                             float scale, float *qt, int64_t ldqt) {
    for (int64_t d = 0; d < dqk; d++) {
        float *row = qt + d * ldqt;
        for (int i = 0; i < rows; i++) row[i] = scale * q[i * ldq + d];
        for (int i = rows; i < rows_padded; i++) row[i] = 0.0f;
    }
}

// st[j, :] = Σ_d k[j, d] · qt[d, :]; causal mask; running block max.
static void scores_t_portable(int keys, int rows_padded, int64_t dqk, const float *k,
                              int64_t ldk, const float *qt, int64_t ldqt, float *st,
                              int64_t ldst, int masked, int64_t lo, int64_t hi,
                              float *block_max) {
    for (int j = 0; j < keys; j++) {
        float *sj = st + j * ldst;
        const float *kj = k + j * ldk;
        for (int i = 0; i < rows_padded; i++) sj[i] = 0.0f;
        for (int64_t d = 0; d < dqk; d++) {
            const float kd = kj[d];
            const float *qd = qt + d * ldqt;
            for (int i = 0; i < rows_padded; i++) sj[i] += kd * qd[i];
        }
        if (masked) {  // query i sees key j iff j + lo ≤ i < j + hi
            int64_t first = j + lo, last = j + hi;
            first = first < 0 ? 0 : (first > rows_padded ? rows_padded : first);
            last = last < first ? first : (last > rows_padded ? rows_padded : last);
            for (int64_t i = 0; i < first; i++) sj[i] = -INFINITY;
            for (int64_t i = last; i < rows_padded; i++) sj[i] = -INFINITY;
        }
        for (int i = 0; i < rows_padded; i++) block_max[i] = sj[i] > block_max[i] ? sj[i] : block_max[i];
    }
}

// 2^x with libm; below FA_EXP2_MIN (and at −inf) exactly 0, as in the SIMD leaves.
static float exp2_portable_one(float x) {
    return x < FA_EXP2_MIN ? 0.0f : exp2f(x);
}

static void softmax_t_portable(int keys, int rows_padded, float *st, int64_t ldst,
                               float *block_max, float *row_max, float *row_sum, float *alpha,
                               int masked, int64_t lo, int64_t hi) {
    (void)masked, (void)lo, (void)hi;  // computes every key: hidden ones are −inf → 0
    for (int i = 0; i < rows_padded; i++) {
        const float m_old = row_max[i];
        const float m_new = block_max[i] > m_old ? block_max[i] : m_old;
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing seen: P = 0
        alpha[i] = exp2_portable_one(m_old - m_use);
        row_sum[i] *= alpha[i];  // then + Σ_j P, key by key below
        row_max[i] = m_new;
        block_max[i] = -INFINITY;
    }
    for (int j = 0; j < keys; j++) {
        float *sj = st + j * ldst;
        for (int i = 0; i < rows_padded; i++) {
            const float m_use = row_max[i] == -INFINITY ? 0.0f : row_max[i];
            sj[i] = exp2_portable_one(sj[i] - m_use);
            row_sum[i] += sj[i];
        }
    }
}

static void accumulate_pv_portable(int rows_padded, int keys, int64_t dv, const float *pt,
                                   int64_t ldpt, const float *v, int64_t ldv, const float *alpha,
                                   float *acc, int64_t ldacc, int masked, int64_t lo,
                                   int64_t hi) {
    for (int i = 0; i < rows_padded; i++) {
        float *ai = acc + i * ldacc;
        if (alpha[i] != 1.0f)
            for (int64_t d = 0; d < dv; d++) ai[d] *= alpha[i];
        // Keys outside row i's band have P = 0 and are skipped.
        int j0, j1;
        fa_band_keys(keys, i, 1, masked, lo, hi, &j0, &j1);
        for (int j = j0; j < j1; j++) {
            const float p = pt[j * ldpt + i];
            const float *vj = v + j * ldv;
            for (int64_t d = 0; d < dv; d++) ai[d] += p * vj[d];
        }
    }
}

static void softmax_grad_t_portable(int keys, int rows_padded, float *st, float *dpt, int64_t ld,
                                    const float *lse2, const float *dsum) {
    for (int j = 0; j < keys; j++) {
        float *sj = st + j * ld, *dj = dpt + j * ld;
        for (int i = 0; i < rows_padded; i++) {
            const float l = lse2[i] == -INFINITY ? INFINITY : lse2[i];  // no key seen: P = 0
            const float p = exp2_portable_one(sj[i] - l);
            sj[i] = p;
            dj[i] = p * (dj[i] - dsum[i]);
        }
    }
}

static void gemm_acc_portable(int M, int64_t N, int K, const float *a, int64_t a_rs,
                              int64_t a_cs, const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int m = 0; m < M; m++) {
        float *cm = c + m * ldc;
        for (int k = 0; k < K; k++) {
            const float amk = a[m * a_rs + k * a_cs];
            const float *bk = b + k * ldb;
            for (int64_t n = 0; n < N; n++) cm[n] += amk * bk[n];
        }
    }
}

// Score s of tile element (row i, key j) with the element mask applied: s + m·log2 e, or
// −inf where a bool mask is 0.
static float masked_portable(const fa_tile_mods *m, float s, int64_t i, int64_t j) {
    const int64_t at = i * m->mask_q + j * m->mask_k;
    if (m->mask_bool) return m->mask_bool[at] ? s : -INFINITY;
    return s + m->mask_add[at] * FA_LOG2E;
}

// Key by key over contiguous queries: softcap (libm tanh), ALiBi, mask, block max.
static void score_mods_portable(const fa_tile_mods *m, int keys, int rows, int rows_padded,
                                float *st, int64_t ldst, float *block_max, float *derivative) {
    const float c = m->softcap;
    const int has_mask = m->mask_bool || m->mask_add;
    for (int i = 0; i < rows_padded; i++) block_max[i] = -INFINITY;
    for (int j = 0; j < keys; j++) {
        float *sj = st + j * ldst;
        float *dj = derivative ? derivative + j * ldst : NULL;
        const int64_t base = m->alibi_base - j;  // row i is |base + i| from key j
        for (int i = 0; i < rows_padded; i++) {
            const float s0 = sj[i];
            float s = s0, d = 1.0f;
            if (c > 0.0f) {
                // x = s·ln2/c;  s' = c·tanh(x)·log2 e;  d = sech²x = 4e/(1 + e)², e = e^(−2|x|)
                const float x = s * FA_LN2 / c;
                const float e = expf(-2.0f * fabsf(x));
                s = c * tanhf(x) * FA_LOG2E;
                d = 4.0f * e / ((1.0f + e) * (1.0f + e));
            }
            if (m->has_alibi) {
                const int64_t dist = base + i;
                s -= m->alibi_slope2 * (float)(dist < 0 ? -dist : dist);
            }
            if (has_mask && i < rows) s = masked_portable(m, s, i, j);  // none for pad rows
            if (s0 == -INFINITY) s = -INFINITY;  // hidden stays hidden
            if (dj) dj[i] = s == -INFINITY ? 0.0f : d;
            sj[i] = s;
            block_max[i] = s > block_max[i] ? s : block_max[i];
        }
    }
}

static void exp2_portable(const float *x, float *y, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = exp2_portable_one(x[j]);
}

// ---- query-major row tiles (decoding), from the shared source ----
#include "vec_portable.h"
#include "row_kernels.h"

const fa_kernels fa_kernels_portable = {
    .name = "portable",
    .vector_width = 8,
    .query_tile = 8,
    .key_tile = 1,
    .pack_qt = pack_qt_portable,
    .scores_t = scores_t_portable,
    .softmax_t = softmax_t_portable,
    .accumulate_pv = accumulate_pv_portable,
    .softmax_grad_t = softmax_grad_t_portable,
    .gemm_acc = gemm_acc_portable,
    .score_mods = score_mods_portable,
    .exp2 = exp2_portable,
    .scores_q = row_scores,
    .softmax_q = row_softmax,
    .accumulate_pv_q = row_accumulate_pv,
};
