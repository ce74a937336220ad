// ring_slices.c — which tokens of a sequence each rank of a ring holds (no MPI needed).
#include "ring_attention.h"

fa_status fa_ring_slice_of(int64_t seq_len, int ranks, int rank, fa_ring_layout layout,
                           fa_ring_slice *slice) {
    if (!slice) return FA_ERR_NULL_POINTER;
    *slice = (fa_ring_slice){0};
    if (seq_len < 1 || seq_len > INT32_MAX || ranks < 1 || rank < 0 || rank >= ranks)
        return FA_ERR_INVALID_EXTENT;
    // ⌊c·N/parts⌋ without overflow: N ≤ 2³¹ and parts ≤ 2³², so the product fits in 64 bits.
    if (layout == FA_RING_CONTIGUOUS) {
        const int64_t a = (int64_t)rank * seq_len / ranks, b = (int64_t)(rank + 1) * seq_len / ranks;
        slice->runs = 1;
        slice->start[0] = a;
        slice->len[0] = b - a;
    } else if (layout == FA_RING_ZIGZAG) {
        const int64_t parts = 2 * (int64_t)ranks;
        const int64_t chunks[2] = {rank, parts - 1 - rank};
        slice->runs = 2;
        for (int r = 0; r < 2; r++) {
            const int64_t a = chunks[r] * seq_len / parts, b = (chunks[r] + 1) * seq_len / parts;
            slice->start[r] = a;
            slice->len[r] = b - a;
        }
    } else {
        return FA_ERR_INVALID_ARGUMENT;
    }
    slice->total = slice->len[0] + slice->len[1];
    return FA_OK;
}
