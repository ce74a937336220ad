// merge.c — merging attention states (O_i, LSE_i) over disjoint key sets:
//
//   m = max_i LSE_i;  w_i = e^(LSE_i − m);  s = Σ_i w_i
//   LSE = m + log s;  O = Σ_i (w_i / s) · O_i
//
// States with LSE = −inf saw no key: they are skipped (their O is never read), so (0, −inf) is
// the identity and merging only such states gives (0, −inf), never NaN. A NaN LSE makes the
// row NaN. The states of a row are summed in their order, so a merge is reproducible bit for
// bit. Split-KV (split.c) merges its chunks with fa_merge_row; fa_merge_states is the public,
// strided form.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "forward_plan.h"

float fa_merge_row(int64_t n, const float *o, int64_t o_step, const float *lse,
                   int64_t lse_step, int64_t dv, float *out) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        const float l = lse[i * lse_step];
        if (isnan(l)) {
            for (int64_t d = 0; d < dv; d++) out[d] = NAN;
            return NAN;
        }
        if (l > m) m = l;
    }
    if (m == -INFINITY) {
        for (int64_t d = 0; d < dv; d++) out[d] = 0.0f;
        return -INFINITY;
    }
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float l = lse[i * lse_step];
        if (l != -INFINITY) s += expf(l - m);
    }
    const float inv = 1.0f / s;
    int first = 1;
    for (int64_t i = 0; i < n; i++) {
        const float l = lse[i * lse_step];
        if (l == -INFINITY) continue;
        const float c = expf(l - m) * inv;
        const float *oi = o + i * o_step;
        if (first) {
            for (int64_t d = 0; d < dv; d++) out[d] = c * oi[d];
            first = 0;
        } else {
            for (int64_t d = 0; d < dv; d++) out[d] += c * oi[d];
        }
    }
    return m + logf(s);
}

// One state's O and LSE as the checks see them.
static fa_status check_state(const fa_state_shape *sh, const fa_attention_state *st,
                             const char *name, fa_argument arg, int64_t which,
                             size_t spans[2], fa_diagnostic *diag) {
    if (!st->o || !st->lse)
        return fa_fail(diag, FA_ERR_NULL_POINTER, arg, which, 0, 0, "%s %lld: its %s is NULL",
                       name, (long long)which, st->o ? "lse" : "o");
    const int64_t o_ext[4] = {sh->batch, sh->heads, sh->len, sh->head_dim};
    const int64_t o_str[4] = {st->o_strides.batch, st->o_strides.head, st->o_strides.seq, 1};
    const int64_t l_ext[4] = {sh->batch, sh->heads, sh->len, 1};
    const int64_t l_str[4] = {st->lse_strides.batch, st->lse_strides.head, st->lse_strides.seq, 1};
    char label[48];
    snprintf(label, sizeof label, "%s %lld o", name, (long long)which);
    fa_status s = fa_check_strided(label, arg, st->o, o_ext, o_str, &spans[0], diag);
    if (s != FA_OK) return s;
    snprintf(label, sizeof label, "%s %lld lse", name, (long long)which);
    return fa_check_strided(label, arg, st->lse, l_ext, l_str, &spans[1], diag);
}

static int bytes_overlap(const void *a, size_t an, const void *b, size_t bn) {
    const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + bn && b0 < a0 + an;
}

static int same_state(const fa_attention_state *a, const fa_attention_state *b) {
    return a->o == b->o && a->lse == b->lse &&
           memcmp(&a->o_strides, &b->o_strides, sizeof a->o_strides) == 0 &&
           memcmp(&a->lse_strides, &b->lse_strides, sizeof a->lse_strides) == 0;
}

fa_status fa_merge_states(const fa_state_shape *shape, const fa_attention_state *states,
                          int64_t count, const fa_attention_state *out, fa_diagnostic *diag) {
    if (diag) memset(diag, 0, sizeof *diag);
    if (!shape || !states || !out)
        return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, 0, 0,
                       "fa_merge_states: shape, states or out is NULL");
    const struct { const char *name; int64_t value; } ext[4] = {
        {"batch", shape->batch}, {"heads", shape->heads}, {"len", shape->len},
        {"head_dim", shape->head_dim}};
    for (int i = 0; i < 4; i++)
        if (ext[i].value < 1 || ext[i].value > INT32_MAX)
            return fa_fail(diag, FA_ERR_INVALID_EXTENT, FA_ARG_PROBLEM, i, ext[i].value, 0,
                           "state shape %s is %lld; it must be between 1 and 2^31-1",
                           ext[i].name, (long long)ext[i].value);
    if (count < 1)
        return fa_fail(diag, FA_ERR_INVALID_EXTENT, FA_ARG_STATES, count, 0, 0,
                       "count is %lld; merging needs at least one state", (long long)count);
    size_t out_spans[2];
    fa_status s = check_state(shape, out, "merged state", FA_ARG_MERGED, 0, out_spans, diag);
    if (s != FA_OK) return s;
    if (bytes_overlap(out->o, out_spans[0], out->lse, out_spans[1]))
        return fa_fail(diag, FA_ERR_OVERLAP, FA_ARG_MERGED, 0, 0, 0,
                       "the merged state's o and lse overlap");
    for (int64_t i = 0; i < count; i++) {
        size_t spans[2];
        s = check_state(shape, &states[i], "state", FA_ARG_STATES, i, spans, diag);
        if (s != FA_OK) return s;
        if (same_state(&states[i], out)) continue;  // merging in place
        if (bytes_overlap(out->o, out_spans[0], states[i].o, spans[0]) ||
            bytes_overlap(out->o, out_spans[0], states[i].lse, spans[1]) ||
            bytes_overlap(out->lse, out_spans[1], states[i].o, spans[0]) ||
            bytes_overlap(out->lse, out_spans[1], states[i].lse, spans[1]))
            return fa_fail(diag, FA_ERR_OVERLAP, FA_ARG_MERGED, i, 0, 0,
                           "the merged state overlaps state %lld without being it", (long long)i);
    }
    // Each row's states are gathered first (so that out may be one of them), then merged.
    const int64_t dv = shape->head_dim;
    size_t need;
    if (__builtin_mul_overflow((size_t)count, (size_t)dv + 1, &need) ||
        __builtin_mul_overflow(need, sizeof(float), &need))
        return fa_fail(diag, FA_ERR_SIZE_OVERFLOW, FA_ARG_STATES, count, 0, 0,
                       "%lld states of %lld floats do not fit in memory", (long long)count,
                       (long long)dv);
    float *rows = malloc(need);
    if (!rows)
        return fa_fail(diag, FA_ERR_OUT_OF_MEMORY, FA_ARG_STATES, count, 0, 0,
                       "fa_merge_states: no memory for %zu bytes of row buffers", need);
    float *lses = rows + (size_t)count * (size_t)dv;
    for (int64_t b = 0; b < shape->batch; b++)
        for (int64_t h = 0; h < shape->heads; h++)
            for (int64_t l = 0; l < shape->len; l++) {
                for (int64_t i = 0; i < count; i++) {
                    const fa_attention_state *st = &states[i];
                    lses[i] = st->lse[b * st->lse_strides.batch + h * st->lse_strides.head +
                                      l * st->lse_strides.seq];
                    if (lses[i] == -INFINITY) continue;  // never read: it may hold anything
                    memcpy(rows + i * dv,
                           st->o + b * st->o_strides.batch + h * st->o_strides.head +
                               l * st->o_strides.seq,
                           sizeof(float) * (size_t)dv);
                }
                float *o = out->o + b * out->o_strides.batch + h * out->o_strides.head +
                           l * out->o_strides.seq;
                out->lse[b * out->lse_strides.batch + h * out->lse_strides.head +
                         l * out->lse_strides.seq] = fa_merge_row(count, rows, dv, lses, 1, dv, o);
            }
    free(rows);
    return FA_OK;
}

fa_status fa_merge_state_into(const fa_state_shape *shape, const fa_attention_state *acc,
                              const fa_attention_state *other, fa_diagnostic *diag) {
    if (!acc || !other) {
        if (diag) memset(diag, 0, sizeof *diag);
        return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, 0, 0,
                       "fa_merge_state_into: acc or other is NULL");
    }
    const fa_attention_state both[2] = {*acc, *other};
    return fa_merge_states(shape, both, 2, acc, diag);
}
