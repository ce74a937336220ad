// ring_context.h — what the ring forward and backward share: the collective check that runs
// before any transfer, the slice buffers, and the per-pair sub-problems they hand to the
// library's kernels. Only compiled with MPI (FA_WITH_MPI).
#ifndef RING_CONTEXT_H
#define RING_CONTEXT_H

#include <mpi.h>
#include "ring_attention.h"

enum { RING_TAG_KV = 7101, RING_TAG_DKV = 7102 };

typedef struct ring_context {
    MPI_Comm comm;
    int rank, ranks;
    int backward;
    fa_ring_layout layout;
    int64_t seq_len;
    int64_t batch, q_heads, kv_heads, dqk, dv;
    fa_ring_slice mine;
    int64_t max_total, max_run;  ///< the longest slice and run over the ranks
    /// Two slice buffers, K then V of one rank's slice, dense [B, Hkv, n, D] each; the
    /// backward's also hold that slice's dK then dV partial sums after them.
    float *slice[2];
    float *o_tmp, *lse_tmp;  ///< one pair's state [B, Hq, run, Dv], [B, Hq, run]
    float *lse_acc;          ///< the forward's running LSE when the caller passes none
    float *dq_tmp;           ///< [B, Hq, run, Dqk]
    float *dkv_tmp;          ///< one pair's dK then dV, dense [B, Hkv, run, D]
    float *dkv_local;        ///< this step's dK, dV over the slice held: [B, Hkv, n, D] each
} ring_context;

/// Local checks, allocation and the collective agreement: on FA_OK every rank of the
/// communicator got FA_OK and `c` is ready; otherwise every rank returns an error (a rank whose
/// own arguments failed, its own; the others FA_ERR_INVALID_ARGUMENT naming that rank) and
/// nothing is allocated.
fa_status ring_begin(ring_context *c, const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                     int32_t comm, int backward, fa_diagnostic *diag);
void ring_end(ring_context *c);
/// The end of a ring call: frees the context, finishes and hands out the timing, and turns a
/// kernel failure during the ring into this rank's diagnostic. Returns `failed`.
fa_status ring_finish(ring_context *c, fa_status failed, fa_ring_timing *t, double t0,
                      fa_ring_timing *timing, fa_diagnostic *diag);

/// The slice rank `owner` holds.
fa_ring_slice ring_slice(const ring_context *c, int owner);
/// Floats of K then V of a slice of n tokens (the backward's dK, dV partials: as many again).
int64_t ring_slice_floats(const ring_context *c, int64_t n);

/// Whether any row of the query run [qs, qs + lq) sees any key of [ks, ks + lk) under the
/// causal mask and window of `p` (positions global).
int ring_pair_visible(const fa_problem *p, int64_t qs, int64_t lq, int64_t ks, int64_t lk);

/// The sub-problem of query run a of this rank against key run kc of a slice `so` whose
/// K/V lie in `buffer`: the caller's problem with those rows, K and V read from the buffer,
/// explicit positions.
fa_problem ring_pair_problem(const ring_context *c, const fa_problem *p, int a,
                             const fa_ring_slice *so, int kc, const float *buffer);

/// Row offset of run r within a slice.
static inline int64_t ring_run_offset(const fa_ring_slice *s, int r) { return r == 0 ? 0 : s->len[0]; }

/// Copies this rank's K and V rows (caller's strides) into a dense slice buffer.
void ring_pack_kv(const ring_context *c, const fa_problem *p, float *buffer);

#endif  // RING_CONTEXT_H
