// ring_backward.c — the ring backward. dQ stays home; each slice's dK, dV travel with it.
// For step s = 0 … R − 1, rank r holds the K/V slice of rank o = (r − s) mod R:
//   post  receive of the next K/V slice from r − 1, send of this one to r + 1   (s < R − 1)
//   for each run a of its queries and run c of the slice held (pairs nobody sees skipped):
//     dQ_pair, dK_pair, dV_pair = fa_backward(Q[a], K[c], V[c], O[a], LSE[a], dO[a])
//     dQ[a] += dQ_pair;  local dK, dV [c] += dK_pair, dV_pair
//   the slice's partial dK, dV: from r − 1 (what ranks o … r − 1 added; none at s = 0), plus
//   the local sums, sent on to r + 1.
// After the last step the partial that arrives from r − 1 is this rank's own slice, complete:
// it is written to dk, dv. O and LSE are the global forward's, so each pair's P and
// D = rowsum(dO ∘ O) are the global ones restricted to that pair. Every sum runs in an order
// fixed by the rank count: the gradients are the same bits for every thread count.
#ifdef FA_WITH_MPI
#include <string.h>
#include "ring_context.h"

// dst[i] += src[i].
static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

// Rows [off, off + len) of a dense [B, H, n, D] tensor, += a dense [B, H, len, D] one.
static void add_rows(float *dst, int64_t n, int64_t off, const float *src, int64_t len,
                     int64_t bh, int64_t d) {
    for (int64_t x = 0; x < bh; x++) add_into(dst + (x * n + off) * d, src + x * len * d, len * d);
}

fa_status fa_ring_backward(const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                           int32_t comm, fa_diagnostic *diag) {
    return fa_ring_backward_timed(p, seq_len, layout, comm, NULL, diag);
}

fa_status fa_ring_backward_timed(const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                                 int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag) {
    fa_ring_timing t = {0};
    const double t0 = MPI_Wtime();
    ring_context c;
    fa_status st = ring_begin(&c, p, seq_len, layout, comm, 1, diag);
    if (st != FA_OK) return st;
    t.steps = c.ranks;

    const int64_t n = c.mine.total, bk = c.batch * c.kv_heads;
    for (int64_t b = 0; b < c.batch; b++)
        for (int64_t h = 0; h < c.q_heads; h++)
            for (int64_t i = 0; i < n; i++)
                memset((float *)p->dq + b * p->dq_strides.batch + h * p->dq_strides.head +
                       i * p->dq_strides.seq, 0, sizeof(float) * (size_t)c.dqk);
    if (n > 0) ring_pack_kv(&c, p, c.slice[0]);

    const int next = (c.rank + 1) % c.ranks, prev = (c.rank + c.ranks - 1) % c.ranks;
    const int64_t partial_at = ring_slice_floats(&c, c.max_total) / 2;
    fa_status failed = FA_OK;
    // The partial dK, dV of a buffer is in flight to r + 1 until its request completes; it is
    // waited for before the buffer's partial is received into again (two steps later).
    MPI_Request send_partial[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    for (int s = 0; s < c.ranks; s++) {
        const int owner = (c.rank - s + c.ranks) % c.ranks;
        const fa_ring_slice so = ring_slice(&c, owner);
        const int64_t m = so.total;
        float *held = c.slice[s & 1], *incoming = c.slice[(s + 1) & 1];
        // The held buffer: K, V, then (at a fixed offset, so that a K/V receive never meets a
        // partial still being sent) the slice's partial dK, dV, which travel on.
        float *partial = held + partial_at;
        MPI_Request req[3];
        int nreq = 0;
        if (s < c.ranks - 1) {
            // The next slice's K/V only: its partial dK, dV come later, when r − 1 has added its
            // part (the incoming buffer's own partial may still be on its way out meanwhile).
            const fa_ring_slice sn = ring_slice(&c, (owner + c.ranks - 1) % c.ranks);
            MPI_Irecv(incoming, (int)(ring_slice_floats(&c, sn.total) / 2), MPI_FLOAT, prev,
                      RING_TAG_KV, c.comm, &req[nreq++]);
            MPI_Isend(held, (int)(ring_slice_floats(&c, m) / 2), MPI_FLOAT, next, RING_TAG_KV,
                      c.comm, &req[nreq++]);
        }
        MPI_Request recv_partial = MPI_REQUEST_NULL;
        double w0 = MPI_Wtime();
        MPI_Wait(&send_partial[s & 1], MPI_STATUS_IGNORE);
        t.wait += MPI_Wtime() - w0;
        if (s > 0)
            MPI_Irecv(partial, (int)(ring_slice_floats(&c, m) / 2), MPI_FLOAT, prev, RING_TAG_DKV,
                      c.comm, &recv_partial);
        float *local_dk = c.dkv_local, *local_dv = c.dkv_local + bk * m * c.dqk;
        memset(c.dkv_local, 0, sizeof(float) * (size_t)(bk * m * (c.dqk + c.dv)));
        for (int a = 0; a < c.mine.runs && failed == FA_OK; a++)
            for (int kc = 0; kc < so.runs && failed == FA_OK; kc++) {
                if (!ring_pair_visible(p, c.mine.start[a], c.mine.len[a], so.start[kc], so.len[kc]))
                    continue;
                fa_problem pair = ring_pair_problem(&c, p, a, &so, kc, held);
                const int64_t qoff = ring_run_offset(&c.mine, a), koff = ring_run_offset(&so, kc);
                const int64_t lq = c.mine.len[a], lk = so.len[kc];
                pair.o = (float *)p->o + qoff * p->o_strides.seq;
                pair.o_strides = p->o_strides;
                pair.lse = p->lse + qoff * p->lse_strides.seq;
                pair.lse_strides = p->lse_strides;
                pair.dout = (const float *)p->dout + qoff * p->dout_strides.seq;
                pair.dq = c.dq_tmp;
                pair.dq_strides = fa_strides_bhld(c.q_heads, lq, c.dqk);
                pair.dk = c.dkv_tmp;
                pair.dk_strides = fa_strides_bhld(c.kv_heads, lk, c.dqk);
                pair.dv = c.dkv_tmp + bk * lk * c.dqk;
                pair.dv_strides = fa_strides_bhld(c.kv_heads, lk, c.dv);
                const double k0 = MPI_Wtime();
                failed = fa_backward(&pair);
                const double k1 = MPI_Wtime();
                t.kernel += k1 - k0;
                t.pairs++;
                if (failed != FA_OK) break;
                for (int64_t b = 0; b < c.batch; b++)
                    for (int64_t h = 0; h < c.q_heads; h++)
                        for (int64_t i = 0; i < lq; i++)
                            add_into((float *)p->dq + b * p->dq_strides.batch + h * p->dq_strides.head +
                                         (qoff + i) * p->dq_strides.seq,
                                     c.dq_tmp + ((b * c.q_heads + h) * lq + i) * c.dqk, c.dqk);
                add_rows(local_dk, m, koff, (const float *)pair.dk, lk, bk, c.dqk);
                add_rows(local_dv, m, koff, (const float *)pair.dv, lk, bk, c.dv);
                t.merge += MPI_Wtime() - k1;
            }
        // The slice's partial: what r − 1 sent (ranks owner … r − 1), then this rank's part.
        if (s > 0) {
            w0 = MPI_Wtime();
            MPI_Wait(&recv_partial, MPI_STATUS_IGNORE);
            t.wait += MPI_Wtime() - w0;
            add_into(partial, c.dkv_local, bk * m * (c.dqk + c.dv));
        } else {
            memcpy(partial, c.dkv_local, sizeof(float) * (size_t)(bk * m * (c.dqk + c.dv)));
        }
        if (c.ranks > 1)
            MPI_Isend(partial, (int)(ring_slice_floats(&c, m) / 2), MPI_FLOAT, next, RING_TAG_DKV,
                      c.comm, &send_partial[s & 1]);
        w0 = MPI_Wtime();
        if (nreq) MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
        t.wait += MPI_Wtime() - w0;
    }
    // This rank's own slice comes home complete from r − 1 (with one rank, it never left).
    float *home_partial = c.slice[c.ranks & 1] + partial_at;
    const double w1 = MPI_Wtime();
    if (c.ranks > 1) {
        // Into the buffer the last step did not hold, once its partial has left.
        MPI_Wait(&send_partial[c.ranks & 1], MPI_STATUS_IGNORE);
        MPI_Recv(home_partial, (int)(ring_slice_floats(&c, n) / 2), MPI_FLOAT, prev, RING_TAG_DKV,
                 c.comm, MPI_STATUS_IGNORE);
        MPI_Wait(&send_partial[(c.ranks - 1) & 1], MPI_STATUS_IGNORE);
    } else {
        home_partial = c.slice[0] + partial_at;
    }
    t.wait += MPI_Wtime() - w1;
    const float *dk = home_partial, *dv = home_partial + bk * n * c.dqk;
    for (int64_t b = 0; b < c.batch; b++)
        for (int64_t g = 0; g < c.kv_heads; g++)
            for (int64_t i = 0; i < n; i++) {
                memcpy((float *)p->dk + b * p->dk_strides.batch + g * p->dk_strides.head + i * p->dk_strides.seq,
                       dk + ((b * c.kv_heads + g) * n + i) * c.dqk, sizeof(float) * (size_t)c.dqk);
                memcpy((float *)p->dv + b * p->dv_strides.batch + g * p->dv_strides.head + i * p->dv_strides.seq,
                       dv + ((b * c.kv_heads + g) * n + i) * c.dv, sizeof(float) * (size_t)c.dv);
            }
    return ring_finish(&c, failed, &t, t0, timing, diag);
}
#endif
