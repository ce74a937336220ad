// naive.c — materialised attention on BLAS (OpenBLAS; Accelerate on Apple platforms): the
// benchmark's baseline and a second opinion.
//
// For each (batch b, query head h), serially, with g = h / (Hq / Hkv):
//   S = scale · Q[b,h] · K[b,g]ᵀ          cblas_sgemm into an Lq×Lk buffer
//   S[i,j] = −inf where causally hidden
//   P = softmax_rows(S), LSE = m + log Σ exp(S − m)   (rows that see no key: P = 0, LSE = −inf)
//   O[b,h] = P · V[b,g]                    cblas_sgemm straight into the caller's O
// OpenBLAS threads each sgemm itself (num_threads threads); it is never called from inside an
// OpenMP region, so the two thread pools never oversubscribe the cores.
#ifdef __APPLE__
// Apple platforms: Accelerate's BLAS (no OpenBLAS there), which threads sgemm by itself.
#include <Accelerate/Accelerate.h>
static void blas_threads(int n) { (void)n; }
#else
#include <cblas.h>
// OpenBLAS's own thread count for the sgemm calls that follow.
static void blas_threads(int n) {
    if (openblas_get_num_threads() != n) openblas_set_num_threads(n);
}
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../frame/kv_source.h"

// Leading dimension for BLAS: a length-1 dimension may carry any stride, BLAS wants ≥ width.
static int64_t leading_dim(int64_t len, int64_t stride, int64_t width) {
    return len == 1 || stride < width ? width : stride;
}

// Scale 0: BLAS does not read A·B when alpha is 0, so the scores come with alpha 1 and are
// multiplied by 0 here — 0 where q·k is finite, NaN where it is not, as in the kernels (which
// fold the scale into Q).
static void scale_zero(float scale, float *s, int64_t n) {
    if (scale != 0.0f) return;
    for (int64_t i = 0; i < n; i++) s[i] *= 0.0f;
}

// Soft-capping then ALiBi on a whole Lq×Lk score matrix of head h (natural units); with
// `derivative`, also ∂s'/∂s = sech²(s/c) per element.
static void apply_mods(const fa_problem *p, int64_t b, int64_t h, float *s, int64_t lq,
                       int64_t lk, float *derivative) {
    const int64_t offset = fa_diagonal_offset(p, b);
    const float c = p->softcap;
    const float slope = p->alibi_slopes ? p->alibi_slopes[h] : 0.0f;
    if (c <= 0.0f && !p->alibi_slopes && p->mask.kind == FA_MASK_NONE && !p->block_mask.data)
        return;
    const fa_score_mods m = fa_score_mods_for(p, b, h);
    for (int64_t i = 0; i < lq; i++)
        for (int64_t j = 0; j < lk; j++) {
            float x = s[i * lk + j];
            if (x == -INFINITY) {  // a −inf score is a hidden key, before any modifier (as the
                if (derivative) derivative[i * lk + j] = 0.0f;  // kernels' tiles read it)
                continue;
            }
            if (c > 0.0f) {
                if (derivative) derivative[i * lk + j] = fa_sech2(x / c);
                x = c * tanhf(x / c);
            }
            const int64_t dist = i + offset - j;
            x -= slope * (float)(dist < 0 ? -dist : dist);
            if (m.blocks && m.blocks[i / m.block_q * m.blocks_q + j / m.block_k * m.blocks_k] == 0)
                x = -INFINITY;
            if (m.mask_kind != FA_MASK_NONE) {
                const int64_t at = i * m.mask_q + j * m.mask_k;
                if (m.mask_kind == FA_MASK_BOOL) {
                    if (m.mask_bool[at] == 0) x = -INFINITY;
                } else {  // −inf masks whatever x is (NaN + −inf would be NaN)
                    x = m.mask_add[at] == -INFINITY ? -INFINITY : x + m.mask_add[at];
                }
            }
            s[i * lk + j] = x;
        }
}

// Masks (keys outside [lo, hi) get P = 0), normalises and records the logsumexp of one
// score row in place.
static void softmax_row(float *s, int64_t lk, int64_t lo, int64_t hi, float *lse) {
    for (int64_t j = 0; j < lo; j++) s[j] = 0.0f;
    for (int64_t j = hi > lo ? hi : lo; j < lk; j++) s[j] = 0.0f;
    float m = -INFINITY;
    int nan = 0;
    for (int64_t j = lo; j < hi; j++) {
        nan |= isnan(s[j]);
        m = s[j] > m ? s[j] : m;
    }
    if (nan || m == INFINITY) {  // a NaN or +inf score: the row is NaN (its P, so P·V, too)
        for (int64_t j = lo; j < hi; j++) s[j] = NAN;
        if (lse) *lse = NAN;
        return;
    }
    if (hi <= lo || m == -INFINITY) {
        for (int64_t j = lo; j < hi; j++) s[j] = 0.0f;
        if (lse) *lse = -INFINITY;
        return;
    }
    float sum = 0.0f;
    for (int64_t j = lo; j < hi; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = lo; j < hi; j++) s[j] *= inv;
    if (lse) *lse = m + logf(sum);
}

// The `rows` × `cols` rows of a K or V tensor from element `at` on (row stride ld): fp32 rows
// where they lie, or half rows widened into `scratch` (rows × cols, packed) when `fresh` (the
// first query head of a group; the others reuse them).
static const float *widen_rows(const void *base, fa_dtype t, int64_t at, int64_t ld,
                               int64_t rows, int64_t cols, int fresh, float *scratch) {
    if (t == FA_DTYPE_F32) return (const float *)base + at;
    const uint16_t *h = (const uint16_t *)base + at;
    if (fresh)
        for (int64_t j = 0; j < rows; j++)
            fa_convert(t, h + j * ld, FA_DTYPE_F32, scratch + j * cols, cols);
    return scratch;
}

// Paged K or V (`value`: V): the first kv_len rows of entry b's kv head g as fp32 rows of
// `cols` into scratch when `fresh` — the entry's keys from its pages, zero past them (those
// keys are masked; zero keeps 0·row finite).
static const float *gather_paged(const fa_problem *p, int64_t b, int64_t g, int value,
                                 int64_t cols, int fresh, float *scratch) {
    if (!fresh) return scratch;
    const fa_kv_source src = fa_kv_source_for(p, b, g);
    const int64_t len = fa_kv_len_of(p, b);
    for (int64_t j = 0; j < p->shape.kv_len; j++) {
        float *row = scratch + j * cols;
        if (j >= len) {
            memset(row, 0, (size_t)cols * sizeof(float));
            continue;
        }
        const fa_kv_block r = fa_kv_block_at(&src, j);
        fa_convert(value ? r.v_type : r.k_type, value ? r.v : r.k, FA_DTYPE_F32, row, cols);
    }
    return scratch;
}

fa_status fa_naive_forward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate(p, NULL, &r);
    if (st != FA_OK) return st;
    const fa_shape *sh = &p->shape;
    size_t count, bytes;  // one score matrix of the largest (packed) sequence
    if (__builtin_mul_overflow((size_t)fa_max_q_rows(p), (size_t)fa_max_kv_rows(p), &count) ||
        __builtin_mul_overflow(count > 0 ? count : 1, sizeof(float), &bytes))
        return FA_ERR_SIZE_OVERFLOW;
    float *s = malloc(bytes);
    if (!s) return FA_ERR_OUT_OF_MEMORY;
    const int64_t dqk = sh->head_dim_qk, dv = sh->head_dim_v;
    // Half K or V: each kv head's rows widened to fp32 (exactly) before the products.
    // Half Q: each head's rows widened too; half O: computed in fp32, then rounded.
    const int paged = fa_is_paged(p);  // gathered like half rows, into the same scratch
    const int k_half = p->k_dtype != FA_DTYPE_F32 || paged;
    const int v_half = p->v_dtype != FA_DTYPE_F32 || paged;
    const int q_half = p->q_dtype != FA_DTYPE_F32;
    float *kw = NULL, *vw = NULL, *qw = NULL, *ow = NULL;
    const size_t kv_rows = (size_t)fa_max_kv_rows(p), q_rows = (size_t)fa_max_q_rows(p);
    if (k_half) kw = malloc((kv_rows > 0 ? kv_rows : 1) * (size_t)dqk * sizeof(float));
    if (v_half) vw = malloc((kv_rows > 0 ? kv_rows : 1) * (size_t)dv * sizeof(float));
    if (q_half) qw = malloc((q_rows > 0 ? q_rows : 1) * (size_t)dqk * sizeof(float));
    if (q_half) ow = malloc((q_rows > 0 ? q_rows : 1) * (size_t)dv * sizeof(float));
    if ((k_half && !kw) || (v_half && !vw) || (q_half && (!qw || !ow))) {
        free(s), free(kw), free(vw), free(qw), free(ow);
        return FA_ERR_OUT_OF_MEMORY;
    }

    blas_threads(r.threads);
    const int64_t lq_max = sh->q_len, lk_max = sh->kv_len;
    const int64_t ldq = q_half ? dqk : leading_dim(lq_max, p->q_strides.seq, dqk);
    const int64_t ldk = k_half ? dqk : leading_dim(lk_max, p->k_strides.seq, dqk);
    const int64_t ldv = v_half ? dv : leading_dim(lk_max, p->v_strides.seq, dv);
    const int64_t ldo = q_half ? dv : leading_dim(lq_max, p->o_strides.seq, dv);
    if (ldq > INT32_MAX || ldk > INT32_MAX || ldv > INT32_MAX || ldo > INT32_MAX) {
        free(s), free(kw), free(vw), free(qw), free(ow);  // OpenBLAS: 32-bit leading dims
        return FA_ERR_SIZE_OVERFLOW;
    }

    for (int64_t b = 0; b < sh->batch; b++) {
        // This entry's rows and keys: the extents, or its packed sequence's.
        const int64_t lq = fa_q_rows_of(p, b), lk = fa_kv_rows_of(p, b);
        for (int64_t h = 0; h < sh->q_heads && lq > 0; h++) {
            const int64_t g = h / r.group;
            const float *q = widen_rows(p->q, p->q_dtype, fa_q_entry(p, b, p->q_strides) +
                                        h * p->q_strides.head, p->q_strides.seq, lq, dqk, 1, qw);
            const int fresh = h % r.group == 0;
            const float *k = paged ? gather_paged(p, b, g, 0, dqk, fresh, kw)
                                   : widen_rows(p->k, p->k_dtype, fa_kv_entry(p, b, p->k_strides) +
                                                g * p->k_strides.head, p->k_strides.seq, lk, dqk,
                                                fresh, kw);
            const float *v = paged ? gather_paged(p, b, g, 1, dv, fresh, vw)
                                   : widen_rows(p->v, p->v_dtype, fa_kv_entry(p, b, p->v_strides) +
                                                g * p->v_strides.head, p->v_strides.seq, lk, dv,
                                                fresh, vw);
            float *o = q_half ? ow : (float *)p->o + fa_q_entry(p, b, p->o_strides) +
                                         h * p->o_strides.head;
            const int64_t o_seq = q_half ? dv : p->o_strides.seq;
            float *lse_h = p->lse ? p->lse + fa_q_entry(p, b, p->lse_strides) +
                                        h * p->lse_strides.head
                                  : NULL;
            if (lk == 0) {  // a sequence without keys: every row sees nothing
                for (int64_t i = 0; i < lq; i++) {
                    for (int64_t d = 0; d < dv; d++) o[i * o_seq + d] = 0.0f;
                    if (lse_h) lse_h[i * p->lse_strides.seq] = -INFINITY;
                }
            } else {
                // S = scale · Q · Kᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)dqk,
                            r.scale == 0.0f ? 1.0f : r.scale, q, (int)ldq, k, (int)ldk, 0.0f, s,
                            (int)lk);
                scale_zero(r.scale, s, lq * lk);
                apply_mods(p, b, h, s, lq, lk, NULL);
                const fa_row_band band = fa_row_band_for(p, b);
                const int64_t q_valid = fa_q_len_of(p, b);
                for (int64_t i = 0; i < lq; i++) {
                    float *lse = lse_h ? lse_h + i * p->lse_strides.seq : NULL;
                    // Padding rows (i ≥ the valid length) see nothing: P = 0, output 0, lse −inf.
                    const int64_t lo = i < q_valid ? fa_row_lo(&band, i) : 0;
                    const int64_t hi = i < q_valid ? fa_row_hi(&band, i) : 0;
                    softmax_row(s + i * lk, lk, lo, hi, lse);
                }
                // O = P · V
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lq, (int)dv, (int)lk, 1.0f,
                            s, (int)lk, v, (int)ldv, 0.0f, o, (int)ldo);
            }
            if (q_half)  // O rounded into its type once
                for (int64_t i = 0; i < lq; i++)
                    fa_convert(FA_DTYPE_F32, ow + i * dv, p->o_dtype, fa_o_row(p, b, h, i), dv);
        }
    }
    free(s), free(kw), free(vw), free(qw), free(ow);
    fa_clear_unpacked_rows(p, 0);
    return FA_OK;
}

// Backward, materialised, per (batch b, query head h), serially, with g = h / (Hq / Hkv):
//   S = scale · Q·Kᵀ;  P = exp(S − LSE) (0 where hidden or the row saw no key)
//   dV[b,g] (+)= Pᵀ·dO;  dP = dO·Vᵀ;  D = rowsum(dO ∘ O);  dS = P ∘ (dP − D)
//   dQ[b,h] = scale · dS·K;  dK[b,g] (+)= scale · dSᵀ·Q      ("+=" for later heads of a group)
// One tensor's rows (`batches` × `heads` × `len` rows of `width` elements) from `src` (type
// `from`, strides s) to `dst` (type `to`, strides t), converted element by element.
static void convert_rows(const void *src, fa_dtype from, fa_strides s, void *dst, fa_dtype to,
                         fa_strides t, int64_t batches, int64_t heads, int64_t len,
                         int64_t width) {
    const int64_t fs = (int64_t)fa_dtype_size(from), ts = (int64_t)fa_dtype_size(to);
    for (int64_t b = 0; b < batches; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t l = 0; l < len; l++)
                fa_convert(from, (const char *)src + (b * s.batch + h * s.head + l * s.seq) * fs, to,
                           (char *)dst + (b * t.batch + h * t.head + l * t.seq) * ts, width);
}

// The backward of a problem with half tensors: every tensor copied to dense fp32, the fp32
// backward, the gradients rounded back into their types (the baseline allocates freely).
static fa_status naive_backward_widened(const fa_problem *p) {
    const fa_shape *s = &p->shape;
    const int64_t bq = p->cu_seqlens_q ? 1 : s->batch, bk = p->cu_seqlens_k ? 1 : s->batch;
    const struct {
        const void *src; void *out; fa_dtype type; int64_t batches, heads, len, width;
    } t[] = {  // inputs (src), then the gradients (out)
        {p->q, NULL, p->q_dtype, bq, s->q_heads, s->q_len, s->head_dim_qk},
        {p->k, NULL, p->k_dtype, bk, s->kv_heads, s->kv_len, s->head_dim_qk},
        {p->v, NULL, p->v_dtype, bk, s->kv_heads, s->kv_len, s->head_dim_v},
        {p->o, NULL, p->o_dtype, bq, s->q_heads, s->q_len, s->head_dim_v},
        {p->dout, NULL, p->o_dtype, bq, s->q_heads, s->q_len, s->head_dim_v},
        {NULL, p->dq, p->q_dtype, bq, s->q_heads, s->q_len, s->head_dim_qk},
        {NULL, p->dk, p->k_dtype, bk, s->kv_heads, s->kv_len, s->head_dim_qk},
        {NULL, p->dv, p->v_dtype, bk, s->kv_heads, s->kv_len, s->head_dim_v},
    };
    fa_problem w = *p;
    fa_strides *strides[8] = {&w.q_strides, &w.k_strides, &w.v_strides, &w.o_strides,
                              &w.dout_strides, &w.dq_strides, &w.dk_strides, &w.dv_strides};
    const fa_strides given[8] = {p->q_strides, p->k_strides, p->v_strides, p->o_strides,
                                 p->dout_strides, p->dq_strides, p->dk_strides, p->dv_strides};
    float *buf[8] = {0};
    fa_status st = FA_OK;
    for (int i = 0; i < 8 && st == FA_OK; i++) {
        const size_t n =
            (size_t)t[i].batches * (size_t)t[i].heads * (size_t)t[i].len * (size_t)t[i].width;
        buf[i] = malloc((n > 0 ? n : 1) * sizeof(float));
        if (!buf[i]) st = FA_ERR_OUT_OF_MEMORY;
        *strides[i] = fa_strides_bhld(t[i].heads, t[i].len, t[i].width);
        if (buf[i] && t[i].src)
            convert_rows(t[i].src, t[i].type, given[i], buf[i], FA_DTYPE_F32, *strides[i],
                         t[i].batches, t[i].heads, t[i].len, t[i].width);
    }
    if (st == FA_OK) {
        w.q = buf[0], w.k = buf[1], w.v = buf[2], w.o = buf[3], w.dout = buf[4];
        w.dq = buf[5], w.dk = buf[6], w.dv = buf[7];
        w.q_dtype = w.k_dtype = w.v_dtype = w.o_dtype = FA_DTYPE_F32;
        w.workspace = NULL, w.workspace_bytes = 0;
        st = fa_naive_backward(&w);
    }
    for (int i = 5; i < 8 && st == FA_OK; i++)
        convert_rows(buf[i], FA_DTYPE_F32, *strides[i], t[i].out, t[i].type, given[i],
                     t[i].batches, t[i].heads, t[i].len, t[i].width);
    for (int i = 0; i < 8; i++) free(buf[i]);
    return st;
}

// The backward of a paged problem whose sequences each lie in one page: K and V gathered into
// dense [B, Hkv, kv_len, D] tensors of their types, then the ordinary naive backward.
static fa_status naive_backward_unpaged(const fa_problem *p) {
    const fa_shape *sh = &p->shape;
    const size_t ks = fa_dtype_size(p->k_dtype), vs = fa_dtype_size(p->v_dtype);
    const size_t rows = (size_t)sh->batch * (size_t)sh->kv_heads * (size_t)sh->kv_len;
    char *k = malloc(rows * (size_t)sh->head_dim_qk * ks), *v = malloc(rows * (size_t)sh->head_dim_v * vs);
    if (!k || !v) {
        free(k), free(v);
        return FA_ERR_OUT_OF_MEMORY;
    }
    for (int64_t b = 0; b < sh->batch; b++)
        for (int64_t g = 0; g < sh->kv_heads; g++) {
            const fa_kv_source src = fa_kv_source_for(p, b, g);
            const fa_kv_block first = fa_kv_block_at(&src, 0);
            for (int64_t j = 0; j < sh->kv_len; j++) {
                const size_t row = ((size_t)b * (size_t)sh->kv_heads + (size_t)g) * (size_t)sh->kv_len + (size_t)j;
                memcpy(k + row * (size_t)sh->head_dim_qk * ks,
                       (const char *)first.k + j * first.ldk * (int64_t)ks, (size_t)sh->head_dim_qk * ks);
                memcpy(v + row * (size_t)sh->head_dim_v * vs,
                       (const char *)first.v + j * first.ldv * (int64_t)vs, (size_t)sh->head_dim_v * vs);
            }
        }
    fa_problem w = *p;
    memset(&w.kv_pages, 0, sizeof w.kv_pages);
    w.k = k, w.v = v;
    w.k_strides = fa_strides_bhld(sh->kv_heads, sh->kv_len, sh->head_dim_qk);
    w.v_strides = fa_strides_bhld(sh->kv_heads, sh->kv_len, sh->head_dim_v);
    // The entries' lengths: the pages', now per-batch lengths of the dense tensors.
    int32_t *lengths = malloc((size_t)sh->batch * sizeof(int32_t));
    if (!lengths) {
        free(k), free(v);
        return FA_ERR_OUT_OF_MEMORY;
    }
    for (int64_t b = 0; b < sh->batch; b++) lengths[b] = (int32_t)fa_kv_len_of(p, b);
    w.kv_lengths = lengths;
    const fa_status st = fa_naive_backward(&w);
    free(k), free(v), free(lengths);
    return st;
}

fa_status fa_naive_backward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate_mode(p, NULL, &r, FA_MODE_BACKWARD);
    if (st != FA_OK) return st;
    // Paged K/V (each sequence in one page, validated): rows 0 … kv_len − 1 of every entry's
    // page copied into dense tensors, and the backward of that problem (the baseline
    // allocates freely).
    if (fa_is_paged(p)) return naive_backward_unpaged(p);
    if (p->q_dtype != FA_DTYPE_F32 || p->k_dtype != FA_DTYPE_F32 || p->v_dtype != FA_DTYPE_F32)
        return naive_backward_widened(p);
    const fa_shape *sh = &p->shape;
    size_t count, bytes;  // score matrices of the largest (packed) sequence
    if (__builtin_mul_overflow((size_t)fa_max_q_rows(p), (size_t)fa_max_kv_rows(p), &count) ||
        __builtin_mul_overflow(count > 0 ? count : 1, 2 * sizeof(float), &bytes))
        return FA_ERR_SIZE_OVERFLOW;
    const int capped = p->softcap > 0.0f;  // a third Lq×Lk buffer for ∂s'/∂s
    if (capped && __builtin_mul_overflow(count > 0 ? count : 1, 3 * sizeof(float), &bytes))
        return FA_ERR_SIZE_OVERFLOW;
    float *s = malloc(bytes);
    if (!s) return FA_ERR_OUT_OF_MEMORY;
    float *dp = s + count;
    float *dmod = capped ? s + 2 * count : NULL;

    blas_threads(r.threads);
    const int64_t lq_max = sh->q_len, lk_max = sh->kv_len;
    const int64_t dqk = sh->head_dim_qk, dv = sh->head_dim_v;
    const int64_t ld[8] = {
        leading_dim(lq_max, p->q_strides.seq, dqk), leading_dim(lk_max, p->k_strides.seq, dqk),
        leading_dim(lk_max, p->v_strides.seq, dv), leading_dim(lq_max, p->o_strides.seq, dv),
        leading_dim(lq_max, p->dout_strides.seq, dv), leading_dim(lq_max, p->dq_strides.seq, dqk),
        leading_dim(lk_max, p->dk_strides.seq, dqk), leading_dim(lk_max, p->dv_strides.seq, dv)};
    for (int i = 0; i < 8; i++)
        if (ld[i] > INT32_MAX) {
            free(s);
            return FA_ERR_SIZE_OVERFLOW;
        }
    const int ldq = (int)ld[0], ldk = (int)ld[1], ldv = (int)ld[2];
    const int lddo = (int)ld[4], lddq = (int)ld[5], lddk = (int)ld[6], lddv = (int)ld[7];

    for (int64_t b = 0; b < sh->batch; b++) {
        const int64_t lq = fa_q_rows_of(p, b), lk = fa_kv_rows_of(p, b);
        for (int64_t h = 0; h < sh->q_heads; h++) {
            const int64_t g = h / r.group;
            const float first = h % r.group == 0 ? 0.0f : 1.0f;  // beta: start or add
            const float *q = (const float *)p->q + fa_q_entry(p, b, p->q_strides) + h * p->q_strides.head;
            const float *k = (const float *)p->k + fa_kv_entry(p, b, p->k_strides) + g * p->k_strides.head;
            const float *v = (const float *)p->v + fa_kv_entry(p, b, p->v_strides) + g * p->v_strides.head;
            const float *o = (const float *)p->o + fa_q_entry(p, b, p->o_strides) + h * p->o_strides.head;
            const float *lse = p->lse + fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head;
            const float *dout = (const float *)p->dout + fa_q_entry(p, b, p->dout_strides) + h * p->dout_strides.head;
            float *dq = (float *)p->dq + fa_q_entry(p, b, p->dq_strides) + h * p->dq_strides.head;
            float *dk = (float *)p->dk + fa_kv_entry(p, b, p->dk_strides) + g * p->dk_strides.head;
            float *dvg = (float *)p->dv + fa_kv_entry(p, b, p->dv_strides) + g * p->dv_strides.head;
            if (lq == 0 || lk == 0) {  // an empty sequence: zero gradients, no product
                for (int64_t i = 0; i < lq; i++)
                    for (int64_t c = 0; c < dqk; c++) dq[i * p->dq_strides.seq + c] = 0.0f;
                for (int64_t j = 0; j < lk && first == 0.0f; j++) {
                    for (int64_t c = 0; c < dqk; c++) dk[j * p->dk_strides.seq + c] = 0.0f;
                    for (int64_t c = 0; c < dv; c++) dvg[j * p->dv_strides.seq + c] = 0.0f;
                }
                continue;
            }
            // S = scale · Q·Kᵀ, then P in place.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)dqk,
                        r.scale == 0.0f ? 1.0f : r.scale, q, ldq, k, ldk, 0.0f, s, (int)lk);
            scale_zero(r.scale, s, lq * lk);
            apply_mods(p, b, h, s, lq, lk, dmod);
            const fa_row_band band = fa_row_band_for(p, b);
            const int64_t q_valid = fa_q_len_of(p, b);
            // dP = dO·Vᵀ
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)dv, 1.0f,
                        dout, lddo, v, ldv, 0.0f, dp, (int)lk);
            for (int64_t i = 0; i < lq; i++) {
                const int64_t lo = i < q_valid ? fa_row_lo(&band, i) : 0;
                const int64_t hi = i < q_valid ? fa_row_hi(&band, i) : 0;
                const float l = lse[i * p->lse_strides.seq];
                float d = 0.0f;
                for (int64_t c = 0; c < dv; c++)
                    d += dout[i * p->dout_strides.seq + c] * o[i * p->o_strides.seq + c];
                float *si = s + i * lk, *gi = dp + i * lk;
                for (int64_t j = 0; j < lk; j++) {
                    // A hidden pair (outside the band, or a −inf score) has P = dS = 0 exactly,
                    // even in a row whose LSE or D is NaN.
                    const int seen = j >= lo && j < hi && l != -INFINITY && si[j] != -INFINITY;
                    const float pij = seen ? expf(si[j] - l) : 0.0f;
                    si[j] = pij;
                    gi[j] = seen ? pij * (gi[j] - d) : 0.0f;  // dS with respect to the modified score
                    if (dmod) gi[j] *= dmod[i * lk + j];  // … and to the raw one
                }
            }
            // dV (+)= Pᵀ·dO;  dK (+)= scale · dSᵀ·Q;  dQ = scale · dS·K
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)lk, (int)dv, (int)lq, 1.0f, s,
                        (int)lk, dout, lddo, first, dvg, lddv);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)lk, (int)dqk, (int)lq, r.scale,
                        dp, (int)lk, q, ldq, first, dk, lddk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lq, (int)dqk, (int)lk,
                        r.scale, dp, (int)lk, k, ldk, 0.0f, dq, lddq);
        }
    }
    free(s);
    fa_clear_unpacked_rows(p, 1);
    return FA_OK;
}
