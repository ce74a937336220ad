// online_softmax.h — the running state of the online softmax, owned by whoever runs a step.
//
// A step over a key range [k_begin, k_end) (forward.c's key-major tiles, decode.c's row
// tiles) reads and updates, per query row, the running max m (log2 units), the running sum l
// and the unnormalised output acc. Prefill, decoding, split-KV and (later) ring steps are the
// same step over different ranges; what differs is how the state ends:
//   finished:  O = acc / l,  LSE = (m + log2 l) · ln 2     (0 and −inf if l = 0)
// and a partial state over part of the keys is that same pair, merged later (merge.c).
// Non-finite scores make l NaN and keep it so (a NaN or +inf score gives P or α NaN, and
// NaN · anything is NaN): such a row finishes as O = NaN, LSE = NaN — never as an empty row.
#ifndef FA_ONLINE_SOFTMAX_H
#define FA_ONLINE_SOFTMAX_H

#include <string.h>
#include "internal.h"

typedef struct fa_softmax_state {
    float *row_max;  ///< [rows] m, log2 units; −inf before any key
    float *row_sum;  ///< [rows] l
    float *alpha;    ///< [rows] the last block's rescale factors (scratch)
    float *acc;      ///< [rows × ldacc] Σ P·V, unnormalised
    int64_t ldacc;   ///< ≥ Dv rounded up to 16
    int rows;        ///< rows held (padded rows included)
} fa_softmax_state;

/// No key seen yet: m = −inf, l = 0, acc = 0.
static inline void fa_state_reset(fa_softmax_state *s) {
    for (int i = 0; i < s->rows; i++) {
        s->row_max[i] = -INFINITY;
        s->row_sum[i] = 0.0f;
    }
    memset(s->acc, 0, sizeof(float) * (size_t)s->rows * (size_t)s->ldacc);
}

/// Row r's state as (O, LSE): writes dv floats of O to `o` and returns the natural-log LSE.
static inline float fa_state_result(const fa_softmax_state *s, int r, int64_t dv, float *o) {
    const float l = s->row_sum[r];
    if (l == 0.0f) {  // no key seen (a NaN l is a row that saw a NaN or +inf score)
        for (int64_t d = 0; d < dv; d++) o[d] = 0.0f;
        return -INFINITY;
    }
    // A division per element, rounded once (a reciprocal and a product round twice: the
    // output's last bit, once per row and Dv elements, costs nothing measurable).
    const float *a = s->acc + (int64_t)r * s->ldacc;
    for (int64_t d = 0; d < dv; d++) o[d] = a[d] / l;
    // Finished in double, once per row: max (log2 units) + log2(sum), times ln 2, rounded
    // once to float — in float it was three roundings (2–4 ulp of the natural-log result).
    return (float)(((double)s->row_max[r] + log2((double)l)) * FA_LN2_F64);
}

#endif  // FA_ONLINE_SOFTMAX_H
