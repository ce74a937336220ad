// ring_attention.h — attention over one sequence spread across the ranks of an MPI communicator
// (ring attention, Liu, Zaharia and Abbeel 2023; context parallelism).
//
// Every rank holds a slice of the sequence's Q, K and V (fa_ring_slice_of says which tokens)
// and calls the same function at the same time. The K/V slices travel around the ring —
// rank r sends to r + 1 and receives from r − 1 — while each rank runs the library's kernel on
// its own queries against the slice it holds (explicit positions, so causal masking, windows
// and ALiBi see global positions), and merges the partial results by logsumexp
// (fa_merge_state_into). The next slice's transfer is posted before the kernel call and waited
// for after it. In the backward, dQ stays home and each slice's dK, dV travel with it and come
// home at the end. Everything is summed in a fixed order, so the results are bitwise identical
// for a given rank count whatever the thread counts.
//
// The header needs no <mpi.h>: a communicator is passed as its Fortran handle (MPI_Comm_c2f,
// an int), so programs that never touch MPI can include it. With <mpi.h> included first, the
// *_comm variants take an MPI_Comm. The library must be built with MPI (SwiftPM trait `MPI`);
// without it every call returns FA_ERR_INVALID_ARGUMENT saying so (fa_ring_available() is 0).
#ifndef RING_ATTENTION_H
#define RING_ATTENTION_H

#include <stdint.h>
#include "flash_attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/// How the tokens of a sequence of length N are dealt to R ranks.
typedef enum fa_ring_layout {
    /// Rank r holds tokens ⌊r·N/R⌋ … ⌊(r+1)·N/R⌋ − 1.
    FA_RING_CONTIGUOUS = 0,
    /// The sequence is cut into 2R chunks (chunk c: ⌊c·N/2R⌋ … ⌊(c+1)·N/2R⌋ − 1) and rank r
    /// holds chunks r and 2R − 1 − r, in that order: with a causal mask every rank then has
    /// the same work (the "zigzag" layout of ring-flash-attention and Llama 3's context
    /// parallelism).
    FA_RING_ZIGZAG = 1,
} fa_ring_layout;

/// What a ring call's failure concerns. A diagnostic whose values[2] is FA_RING_FAILURE_TAG + a
/// kind is the ring's own (values[1]: the rank it concerns, −1 for none); any other diagnostic
/// is the library's check of this rank's problem (fa_check, fa_check_backward) and means what
/// it means there.
typedef enum fa_ring_failure {
    FA_RING_FAILURE_SETUP = 1,       ///< no MPI in this build, MPI not running, or not a communicator
    FA_RING_FAILURE_ARGUMENT = 2,    ///< this rank's ring arguments: seq_len, layout, a slice
                                     ///< length, an option the ring does not take, a size
    FA_RING_FAILURE_OTHER_RANK = 3,  ///< another rank's arguments failed (values[1] names it)
    FA_RING_FAILURE_DISAGREE = 4,    ///< the ranks passed different shapes or options
    FA_RING_FAILURE_CANCELLED = 5,   ///< this rank called fa_ring_cancel
    FA_RING_FAILURE_RUN = 6,         ///< an allocation or a kernel call failed during the ring
} fa_ring_failure;
#define FA_RING_FAILURE_TAG ((int64_t)0x52494E4700)  // "RING", then the kind

/// The tokens one rank holds: `runs` (1 or 2) runs of consecutive global positions, stored
/// one after the other along the rank's local sequence dimension.
typedef struct fa_ring_slice {
    int runs;
    int64_t start[2];  ///< global position of each run's first token
    int64_t len[2];    ///< tokens in each run (may be 0)
    int64_t total;     ///< len[0] + len[1]: the local sequence length (may be 0)
} fa_ring_slice;

/// Which tokens rank `rank` of `ranks` holds. FA_ERR_INVALID_EXTENT for seq_len < 1,
/// ranks < 1 or rank outside [0, ranks); FA_ERR_INVALID_ARGUMENT for an unknown layout.
fa_status fa_ring_slice_of(int64_t seq_len, int ranks, int rank, fa_ring_layout layout,
                           fa_ring_slice *slice);

/// Ring forward. `local` describes this rank's slice as an ordinary problem: shape with
/// q_len = kv_len = its slice's total (0 for a rank without tokens, whose pointers are then
/// not read), q, k, v, o and optionally lse with their strides; scale, causal (either
/// alignment: the whole problem is self-attention), window, softcap, ALiBi slopes,
/// num_threads, isa, kv_split_size. Not taken (FA_ERR_INVALID_ARGUMENT): masks, block masks,
/// per-batch lengths, packed offsets, pages, explicit positions (the ring sets them), element
/// types other than fp32. Every rank must pass the same shape (but its own q_len, kv_len) and
/// options; the check is collective, so a rank's bad argument makes every rank return an error
/// before any transfer starts (the others with FA_ERR_INVALID_ARGUMENT naming the rank and
/// its message). o and lse are the global result's rows of this rank.
fa_status fa_ring_forward(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                          int32_t comm, fa_diagnostic *diag);

/// Where one rank's time went in a ring call (seconds, MPI_Wtime; summed over the steps).
typedef struct fa_ring_timing {
    double total;     ///< the whole call, collective check included
    double kernel;    ///< the library's kernel calls (fa_forward / fa_backward)
    double merge;     ///< merging partial results (forward), adding gradients (backward)
    double wait;      ///< blocked on transfers after the step's compute: communication the
                      ///< compute did not hide
    int32_t steps;    ///< ring steps (the rank count)
    int32_t pairs;    ///< kernel calls made (pairs of runs nobody sees are skipped)
} fa_ring_timing;

/// fa_ring_forward, also reporting where this rank's time went (`timing` may be NULL).
fa_status fa_ring_forward_timed(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                                int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag);

/// Ring backward: `local` as for the forward plus lse (required), o and lse as the ring
/// forward wrote them, dout, and dq, dk, dv, which receive this rank's rows of the global
/// gradients.
fa_status fa_ring_backward(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                           int32_t comm, fa_diagnostic *diag);

/// fa_ring_backward, also reporting where this rank's time went (`timing` may be NULL).
fa_status fa_ring_backward_timed(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                                 int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag);

/// For a rank that finds its arguments bad before it calls fa_ring_forward or fa_ring_backward
/// (a wrapper's own checks, say): joins the collective check the other ranks are in, so that
/// their calls return FA_ERR_INVALID_ARGUMENT ("rank N: reason") instead of waiting for it
/// forever. Returns FA_ERR_INVALID_ARGUMENT with `reason` in diag (or, when MPI is not running
/// or the communicator is not one, that error, and the other ranks are not reached).
fa_status fa_ring_cancel(int32_t comm, const char *reason, fa_diagnostic *diag);

/// 1 if this build has MPI (the ring runs), else 0.
int fa_ring_available(void);

#if defined(MPI_VERSION)
static inline fa_status fa_ring_forward_comm(const fa_problem *local, int64_t seq_len,
                                             fa_ring_layout layout, MPI_Comm comm,
                                             fa_diagnostic *diag) {
    return fa_ring_forward(local, seq_len, layout, (int32_t)MPI_Comm_c2f(comm), diag);
}
static inline fa_status fa_ring_backward_comm(const fa_problem *local, int64_t seq_len,
                                              fa_ring_layout layout, MPI_Comm comm,
                                              fa_diagnostic *diag) {
    return fa_ring_backward(local, seq_len, layout, (int32_t)MPI_Comm_c2f(comm), diag);
}
#endif

#ifdef __cplusplus
}
#endif

#endif  // RING_ATTENTION_H
