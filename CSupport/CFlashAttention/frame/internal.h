// internal.h — what the frame files share: resolved problem values, workspace layout, threads.
#ifndef FA_INTERNAL_H
#define FA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "../include/flash_attention.h"
#include "../kernels/microkernel.h"

/// Alignment of every workspace region (a cache line; also what AVX-512 loads like best).
#define FA_ALIGN 64

/// Values derived from a validated problem.
typedef struct fa_resolved {
    float scale;        ///< the scale actually used (default resolved)
    int threads;        ///< the thread count actually used (0 resolved)
    int64_t group;      ///< q_heads / kv_heads: query heads per key/value head
} fa_resolved;

/// Validates `p` (diag may be NULL) and resolves defaults into `r` (may be NULL).
fa_status fa_validate(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r);

/// Per-thread workspace of the forward: regions, each FA_ALIGN-aligned, in floats.
typedef struct fa_forward_layout {
    size_t q_tile;    ///< BQ × Dqk  the scaled query block
    size_t kt_tile;   ///< Dqk × BK  the transposed key block
    size_t s_tile;    ///< BQ × BK   scores, then probabilities
    size_t acc;       ///< BQ × Dv   the unnormalised output
    size_t row_max;   ///< BQ        running row max
    size_t row_sum;   ///< BQ        running row sum
    size_t per_thread_bytes;  ///< the sum, rounded to FA_ALIGN
} fa_forward_layout;

/// Region offsets (in floats) and bytes per thread; 0 bytes on overflow.
fa_forward_layout fa_forward_layout_for(const fa_shape *s, const fa_kernels *kr);

/// Threads OpenMP would give a call that asks for `requested` (0 = the default).
int fa_resolve_threads(int32_t requested);

#endif  // FA_INTERNAL_H
