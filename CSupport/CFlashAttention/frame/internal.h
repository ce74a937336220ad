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

/// Which tensors a call reads and writes.
typedef enum fa_mode { FA_MODE_FORWARD, FA_MODE_BACKWARD } fa_mode;

/// Validates `p` for a forward (diag may be NULL) and resolves defaults into `r` (may be NULL).
fa_status fa_validate(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r);
/// The same for either mode.
fa_status fa_validate_mode(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r,
                           fa_mode mode);

/// Validates extents and options only (no pointers): enough for sizes and kernel choices.
fa_status fa_validate_shape_options(const fa_problem *p, fa_diagnostic *diag);

/// Tile sizes of one call.
typedef struct fa_blocking {
    int block_q;  ///< query rows per block (a multiple of the vector width)
    int block_k;  ///< keys per block (a multiple of the key micro-tile)
} fa_blocking;

/// FA_ISA_AUTO → the process's choice; anything else unchanged.
fa_isa fa_resolve_isa(fa_isa requested);
/// The kernel table for an ISA (which must be supported).
const fa_kernels *fa_kernels_for(fa_isa isa);
/// The per-core L2 cache size in bytes (0 if unknown).
int64_t fa_l2_bytes(void);
/// The tile sizes for a problem (dispatch/cpu.c explains the heuristic).
fa_blocking fa_blocking_for(const fa_kernels *kr, const fa_shape *s, int threads);

/// Per-thread workspace of the forward: regions, each FA_ALIGN-aligned, offsets in floats.
typedef struct fa_forward_layout {
    size_t qt;         ///< Dqk × BQ  the query block, transposed and scaled
    size_t st;         ///< BK × BQ   scores, then probabilities (key-major)
    size_t acc;        ///< BQ × ldacc  the unnormalised output
    size_t row_max;    ///< BQ  running row max (log2 units)
    size_t row_sum;    ///< BQ  running row sum
    size_t alpha;      ///< BQ  this block's rescale factors
    size_t block_max;  ///< BQ  this block's row max
    int64_t ldacc;     ///< Dv rounded up to 16
    size_t per_thread_bytes;  ///< the sum, rounded to FA_ALIGN
} fa_forward_layout;

/// Region offsets and bytes per thread for a shape and tiling.
fa_forward_layout fa_forward_layout_for(const fa_shape *s, fa_blocking b);

/// This thread's cached workspace of at least `bytes` (64-byte aligned), or NULL if it cannot
/// be allocated. Valid until the thread's next call; freed when the thread exits.
float *fa_thread_workspace(size_t bytes);

/// Under a causal mask query row i sees keys j < causal_visible_end(i, …): j ≤ i + offset,
/// clamped to [0, Lk]. offset is Lk − Lq (bottom-right) or 0 (top-left).
static inline int64_t causal_visible_end(int64_t i, int64_t offset, int64_t lk) {
    const int64_t end = i + offset + 1;
    return end < 0 ? 0 : (end > lk ? lk : end);
}

/// Threads OpenMP would give a call that asks for `requested` (0 = the default).
int fa_resolve_threads(int32_t requested);

#endif  // FA_INTERNAL_H
