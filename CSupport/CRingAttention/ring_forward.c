// ring_forward.c — the ring forward. For step s = 0 … R − 1, rank r holds the K/V slice of rank
// (r − s) mod R:
//   post  receive of the next slice from r − 1, send of this one to r + 1   (s < R − 1)
//   for each run a of its queries and run c of the slice held (pairs nobody sees skipped):
//     (O, LSE)_pair = fa_forward(Q[a], K[c], V[c]) at global positions
//     (O, LSE)[a]   = merge((O, LSE)[a], (O, LSE)_pair)               fa_merge_state_into
//   wait for both transfers.
// The order of the merges is fixed by s, a and c: the result is the same bits for every thread
// count.
#ifdef FA_WITH_MPI
#include <math.h>
#include <string.h>
#include "ring_context.h"

fa_status fa_ring_forward(const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                          int32_t comm, fa_diagnostic *diag) {
    return fa_ring_forward_timed(p, seq_len, layout, comm, NULL, diag);
}

fa_status fa_ring_forward_timed(const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                                int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag) {
    fa_ring_timing t = {0};
    const double t0 = MPI_Wtime();
    ring_context c;
    fa_status st = ring_begin(&c, p, seq_len, layout, comm, 0, diag);
    if (st != FA_OK) return st;
    t.steps = c.ranks;

    const int64_t n = c.mine.total;
    float *lse = p->lse ? p->lse : c.lse_acc;
    const fa_strides lse_strides = p->lse ? p->lse_strides : (fa_strides){c.q_heads * n, n, 1};
    // The identity state: O = 0, LSE = −inf, on this rank's rows.
    for (int64_t b = 0; b < c.batch; b++)
        for (int64_t h = 0; h < c.q_heads; h++)
            for (int64_t i = 0; i < n; i++) {
                float *o = (float *)p->o + b * p->o_strides.batch + h * p->o_strides.head + i * p->o_strides.seq;
                memset(o, 0, sizeof(float) * (size_t)c.dv);
                lse[b * lse_strides.batch + h * lse_strides.head + i * lse_strides.seq] = -INFINITY;
            }
    if (n > 0) ring_pack_kv(&c, p, c.slice[0]);

    const int next = (c.rank + 1) % c.ranks, prev = (c.rank + c.ranks - 1) % c.ranks;
    fa_status failed = FA_OK;
    for (int s = 0; s < c.ranks; s++) {
        const int owner = (c.rank - s + c.ranks) % c.ranks;
        const fa_ring_slice so = ring_slice(&c, owner);
        float *held = c.slice[s & 1], *incoming = c.slice[(s + 1) & 1];
        MPI_Request req[2];
        int nreq = 0;
        if (s < c.ranks - 1) {
            const fa_ring_slice sn = ring_slice(&c, (owner + c.ranks - 1) % c.ranks);
            MPI_Irecv(incoming, (int)ring_slice_floats(&c, sn.total), MPI_FLOAT, prev, RING_TAG_KV,
                      c.comm, &req[nreq++]);
            MPI_Isend(held, (int)ring_slice_floats(&c, so.total), MPI_FLOAT, next, RING_TAG_KV,
                      c.comm, &req[nreq++]);
        }
        for (int a = 0; a < c.mine.runs && failed == FA_OK; a++)
            for (int kc = 0; kc < so.runs && failed == FA_OK; kc++) {
                if (!ring_pair_visible(p, c.mine.start[a], c.mine.len[a], so.start[kc], so.len[kc]))
                    continue;
                fa_problem pair = ring_pair_problem(&c, p, a, &so, kc, held);
                // Checked collectively already; a failure here (out of memory for a thread's
                // workspace) still lets the ring finish its transfers before it is returned.
                const double k0 = MPI_Wtime();
                failed = fa_forward(&pair);
                const double k1 = MPI_Wtime();
                t.kernel += k1 - k0;
                t.pairs++;
                if (failed != FA_OK) break;
                const int64_t off = ring_run_offset(&c.mine, a);
                const fa_state_shape shape = {c.batch, c.q_heads, c.mine.len[a], c.dv};
                const fa_attention_state acc = {
                    (float *)p->o + off * p->o_strides.seq, p->o_strides,
                    lse + off * lse_strides.seq, lse_strides};
                const fa_attention_state part = {pair.o, pair.o_strides, pair.lse, pair.lse_strides};
                failed = fa_merge_state_into(&shape, &acc, &part, NULL);
                t.merge += MPI_Wtime() - k1;
            }
        const double w0 = MPI_Wtime();
        if (nreq) MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
        t.wait += MPI_Wtime() - w0;
    }
    return ring_finish(&c, failed, &t, t0, timing, diag);
}
#endif
