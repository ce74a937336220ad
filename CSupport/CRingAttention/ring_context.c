// ring_context.c — the ring's collective check, buffers and per-pair sub-problems.
#ifdef FA_WITH_MPI
#include "ring_context.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fa_ring_available(void) { return 1; }

// A ring-level failure: values = {v0, the rank it concerns, FA_RING_FAILURE_TAG + kind}.
static fa_status ring_fail(fa_diagnostic *d, fa_ring_failure kind, int rank, fa_status status,
                           fa_argument arg, int64_t v0, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static fa_status ring_fail(fa_diagnostic *d, fa_ring_failure kind, int rank, fa_status status,
                           fa_argument arg, int64_t v0, const char *fmt, ...) {
    d->status = status;
    d->argument = arg;
    d->values[0] = v0;
    d->values[1] = rank;
    d->values[2] = FA_RING_FAILURE_TAG + kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
    return status;
}

fa_ring_slice ring_slice(const ring_context *c, int owner) {
    fa_ring_slice s;
    fa_ring_slice_of(c->seq_len, c->ranks, owner, c->layout, &s);
    return s;
}

int64_t ring_slice_floats(const ring_context *c, int64_t n) {
    return c->batch * c->kv_heads * n * (c->dqk + c->dv) * (c->backward ? 2 : 1);
}

// The options the ring does not take, or a reason; NULL when the problem is a ring problem.
static const char *unsupported(const fa_problem *p) {
    if (p->mask.kind != FA_MASK_NONE) return "an element mask";
    if (p->block_mask.data) return "a block mask";
    if (p->q_lengths || p->kv_lengths) return "per-batch lengths";
    if (p->cu_seqlens_q || p->cu_seqlens_k) return "packed sequence offsets";
    if (p->kv_pages.page_size) return "paged K/V";
    if (p->positions.enabled) return "explicit positions (the ring sets them)";
    if (p->q_dtype != FA_DTYPE_F32 || p->k_dtype != FA_DTYPE_F32 || p->v_dtype != FA_DTYPE_F32 ||
        p->o_dtype != FA_DTYPE_F32)
        return "element types other than fp32";
    return NULL;
}

static void *ring_alloc(int64_t floats, int *failed) {
    if (floats <= 0) return NULL;
    void *x = malloc((size_t)floats * sizeof(float));
    if (!x) *failed = 1;
    return x;
}

void ring_end(ring_context *c) {
    free(c->slice[0]);
    free(c->slice[1]);
    free(c->o_tmp);
    free(c->lse_tmp);
    free(c->lse_acc);
    free(c->dq_tmp);
    free(c->dkv_tmp);
    free(c->dkv_local);
    memset(c, 0, sizeof *c);
}

// Everything that can be checked on this rank alone; fills the context's numbers.
static fa_status check_local(ring_context *c, const fa_problem *p, fa_diagnostic *d) {
    if (!p) return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, "problem: the descriptor pointer is NULL");
    if (c->layout != FA_RING_CONTIGUOUS && c->layout != FA_RING_ZIGZAG)
        return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, (int64_t)c->layout,
                         "layout is %d; it must be 0 (contiguous) or 1 (zigzag)", (int)c->layout);
    if (c->seq_len < 1 || c->seq_len > INT32_MAX)
        return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_INVALID_EXTENT, FA_ARG_Q_LEN, c->seq_len,
                         "seq_len is %lld; it must be between 1 and %d", (long long)c->seq_len, INT32_MAX);
    fa_ring_slice_of(c->seq_len, c->ranks, c->rank, c->layout, &c->mine);
    const fa_shape *s = &p->shape;
    c->batch = s->batch;
    c->q_heads = s->q_heads;
    c->kv_heads = s->kv_heads;
    c->dqk = s->head_dim_qk;
    c->dv = s->head_dim_v;
    if (s->q_len != c->mine.total || s->kv_len != c->mine.total)
        return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_INVALID_EXTENT, FA_ARG_Q_LEN, s->q_len,
                         "rank %d holds %lld tokens of %lld, but q_len is %lld and kv_len %lld",
                         c->rank, (long long)c->mine.total, (long long)c->seq_len,
                         (long long)s->q_len, (long long)s->kv_len);
    const char *why = unsupported(p);
    if (why)
        return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, 0,
                         "ring attention does not take %s", why);
    if (c->mine.total > 0) {  // a rank without tokens reads no pointer
        const fa_status st = c->backward ? fa_check_backward(p, d) : fa_check(p, d);
        if (st != FA_OK) return st;
    } else {
        fa_problem one = *p;  // its extents and options still have to be valid
        one.shape.q_len = one.shape.kv_len = 1;
        const fa_status st = fa_check(&one, d);
        if (st != FA_OK && st != FA_ERR_NULL_POINTER && st != FA_ERR_INVALID_STRIDE &&
            st != FA_ERR_OVERLAP)
            return st;
        memset(d, 0, sizeof *d);
    }
    // The longest slice and run decide the buffers; every message's count is an int.
    for (int r = 0; r < c->ranks; r++) {
        const fa_ring_slice sr = ring_slice(c, r);
        if (sr.total > c->max_total) c->max_total = sr.total;
        for (int k = 0; k < sr.runs; k++)
            if (sr.len[k] > c->max_run) c->max_run = sr.len[k];
    }
    const double floats = (double)c->batch * (double)(c->q_heads > c->kv_heads ? c->q_heads : c->kv_heads) *
                          (double)c->max_total * (double)(c->dqk + c->dv) * 2.0;
    if (floats > (double)INT32_MAX)
        return ring_fail(d, FA_RING_FAILURE_ARGUMENT, c->rank, FA_ERR_SIZE_OVERFLOW, FA_ARG_PROBLEM, (int64_t)floats,
                         "a slice's buffers would hold %.0f floats, more than one MPI message takes (%d)",
                         floats, INT32_MAX);
    return FA_OK;
}

static fa_status allocate(ring_context *c, const fa_problem *p, fa_diagnostic *d) {
    int failed = 0;
    const int64_t bh = c->batch * c->q_heads, bk = c->batch * c->kv_heads;
    c->slice[0] = ring_alloc(ring_slice_floats(c, c->max_total), &failed);
    c->slice[1] = ring_alloc(ring_slice_floats(c, c->max_total), &failed);
    c->o_tmp = ring_alloc(bh * c->max_run * c->dv, &failed);
    c->lse_tmp = ring_alloc(bh * c->max_run, &failed);
    if (!c->backward && !p->lse) c->lse_acc = ring_alloc(bh * (c->mine.total ? c->mine.total : 1), &failed);
    if (c->backward) {
        c->dq_tmp = ring_alloc(bh * c->max_run * c->dqk, &failed);
        c->dkv_tmp = ring_alloc(bk * c->max_run * (c->dqk + c->dv), &failed);
        c->dkv_local = ring_alloc(bk * c->max_total * (c->dqk + c->dv), &failed);
    }
    if (failed) {
        ring_end(c);
        return ring_fail(d, FA_RING_FAILURE_RUN, c->rank, FA_ERR_OUT_OF_MEMORY, FA_ARG_WORKSPACE, 0,
                         "ring buffers: an allocation failed on rank %d", c->rank);
    }
    return FA_OK;
}

// The numbers every rank must agree on (scale resolved, floats as bit patterns).
enum { AGREED = 14, AGREED_SCALE = 10, AGREED_SOFTCAP = 11 };
static void agreed_values(const ring_context *c, const fa_problem *p, int64_t v[AGREED]) {
    memset(v, 0, sizeof(int64_t) * AGREED);
    if (!p) return;
    uint32_t scale_bits, cap_bits;
    const float scale = isnan(p->scale) ? 1.0f / sqrtf((float)p->shape.head_dim_qk) : p->scale;
    memcpy(&scale_bits, &scale, 4);
    memcpy(&cap_bits, &p->softcap, 4);
    // The slopes by a fingerprint of their bits (0: none), one per query head.
    uint64_t slopes = 0;  // unsigned: the fingerprint wraps
    if (p->alibi_slopes)
        for (int64_t h = 0; h < p->shape.q_heads; h++) {
            uint32_t b;
            memcpy(&b, &p->alibi_slopes[h], 4);
            slopes = slopes * 1000003 + b + 1;
        }
    const int64_t x[AGREED] = {c->seq_len, (int64_t)c->layout, p->shape.batch, p->shape.q_heads,
                               p->shape.kv_heads, p->shape.head_dim_qk, p->shape.head_dim_v,
                               p->causal != FA_CAUSAL_NONE, p->window_left, p->window_right,
                               scale_bits, cap_bits, (int64_t)(slopes >> 1), c->backward};
    memcpy(v, x, sizeof x);
}
static const char *const agreed_names[AGREED] = {
    "seq_len", "layout", "batch", "q_heads", "kv_heads", "head_dim_qk", "head_dim_v", "causal",
    "window_left", "window_right", "scale", "softcap", "ALiBi slopes",
    "the pass (forward or backward)"};

// MPI running and the communicator valid; the context's rank and size. Nothing collective: a
// rank that fails here cannot reach the others.
static fa_status ring_open(ring_context *c, int32_t comm, fa_diagnostic *d) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
        return ring_fail(d, FA_RING_FAILURE_SETUP, -1, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, 0,
                         "MPI is %s", finalized ? "finalized" : "not initialized (call MPI_Init first)");
    c->comm = MPI_Comm_f2c((MPI_Fint)comm);
    if (c->comm == MPI_COMM_NULL || !c->comm)  // Open MPI: NULL for a handle it never issued
        return ring_fail(d, FA_RING_FAILURE_SETUP, -1, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, comm,
                         "communicator handle %d is MPI_COMM_NULL or not a communicator", (int)comm);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->ranks);
    return FA_OK;
}

// The collective agreement every rank reaches before any transfer: on the numbers every rank
// must share, then on the outcome — the lowest failing rank's diagnostic goes to every rank.
// `st` is this rank's own verdict (its diagnostic in d). Frees the context on failure.
static fa_status ring_agree(ring_context *c, const fa_problem *p, fa_status st, fa_diagnostic *d) {
    int64_t v[AGREED], lo[AGREED], hi[AGREED];
    agreed_values(c, st == FA_OK ? p : NULL, v);
    MPI_Allreduce(v, lo, AGREED, MPI_INT64_T, MPI_MIN, c->comm);
    MPI_Allreduce(v, hi, AGREED, MPI_INT64_T, MPI_MAX, c->comm);
    int key = st == FA_OK ? c->ranks : c->rank, first = 0;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, c->comm);
    if (first < c->ranks) {
        fa_diagnostic theirs = *d;
        MPI_Bcast(&theirs, (int)sizeof theirs, MPI_BYTE, first, c->comm);
        if (c->rank != first)
            ring_fail(d, FA_RING_FAILURE_OTHER_RANK, first, FA_ERR_INVALID_ARGUMENT, theirs.argument, first, "rank %d: %.200s",
                      first, theirs.message);
        ring_end(c);
        return d->status;
    }
    for (int i = 0; i < AGREED; i++)
        if (lo[i] != hi[i]) {
            ring_end(c);
            if (i == AGREED_SCALE || i == AGREED_SOFTCAP) {  // bit patterns of floats
                float a, b;
                const uint32_t x = (uint32_t)lo[i], y = (uint32_t)hi[i];
                memcpy(&a, &x, 4);
                memcpy(&b, &y, 4);
                return ring_fail(d, FA_RING_FAILURE_DISAGREE, c->rank, FA_ERR_INVALID_ARGUMENT,
                                 FA_ARG_PROBLEM, i, "the ranks disagree on %s (%g on some, %g on others)",
                                 agreed_names[i], (double)a, (double)b);
            }
            return ring_fail(d, FA_RING_FAILURE_DISAGREE, c->rank, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, i,
                             "the ranks disagree on %s (from %lld to %lld)", agreed_names[i],
                             (long long)lo[i], (long long)hi[i]);
        }
    return FA_OK;
}

fa_status ring_begin(ring_context *c, const fa_problem *p, int64_t seq_len, fa_ring_layout layout,
                     int32_t comm, int backward, fa_diagnostic *diag) {
    fa_diagnostic scratch;
    fa_diagnostic *d = diag ? diag : &scratch;
    memset(d, 0, sizeof *d);
    memset(c, 0, sizeof *c);
    fa_status st = ring_open(c, comm, d);
    if (st != FA_OK) return st;
    c->backward = backward;
    c->layout = layout;
    c->seq_len = seq_len;
    st = check_local(c, p, d);
    if (st == FA_OK) st = allocate(c, p, d);
    return ring_agree(c, p, st, d);
}

fa_status fa_ring_cancel(int32_t comm, const char *reason, fa_diagnostic *diag) {
    fa_diagnostic scratch;
    fa_diagnostic *d = diag ? diag : &scratch;
    memset(d, 0, sizeof *d);
    ring_context c;
    memset(&c, 0, sizeof c);
    const fa_status st = ring_open(&c, comm, d);
    if (st != FA_OK) return st;
    ring_fail(d, FA_RING_FAILURE_CANCELLED, c.rank, FA_ERR_INVALID_ARGUMENT, FA_ARG_PROBLEM, 0, "%.200s",
              reason && reason[0] ? reason : "cancelled by the caller");
    return ring_agree(&c, NULL, FA_ERR_INVALID_ARGUMENT, d);
}

fa_status ring_finish(ring_context *c, fa_status failed, fa_ring_timing *t, double t0,
                      fa_ring_timing *timing, fa_diagnostic *diag) {
    const int rank = c->rank;
    ring_end(c);
    t->total = MPI_Wtime() - t0;
    if (timing) *timing = *t;
    if (failed != FA_OK && diag) {
        memset(diag, 0, sizeof *diag);
        ring_fail(diag, FA_RING_FAILURE_RUN, rank, failed, FA_ARG_WORKSPACE, 0,
                  "a kernel call of the ring failed: %s", fa_status_message(failed));
    }
    return failed;
}

int ring_pair_visible(const fa_problem *p, int64_t qs, int64_t lq, int64_t ks, int64_t lk) {
    if (lq <= 0 || lk <= 0) return 0;
    // Row P sees keys lo(P) … hi(P); both ends grow with P and consecutive rows' ranges touch,
    // so the run's rows see lo(qs) … hi(qe) together.
    const int64_t qe = qs + lq - 1, ke = ks + lk - 1;
    int64_t hi = INT64_MAX;
    if (p->causal != FA_CAUSAL_NONE) hi = qe;
    if (p->window_right >= 0 && qe + p->window_right < hi) hi = qe + p->window_right;
    const int64_t lo = p->window_left >= 0 ? qs - p->window_left : INT64_MIN;
    return ks <= hi && ke >= lo;
}

fa_problem ring_pair_problem(const ring_context *c, const fa_problem *p, int a,
                             const fa_ring_slice *so, int kc, const float *buffer) {
    fa_problem s = *p;
    const int64_t qoff = ring_run_offset(&c->mine, a), koff = ring_run_offset(so, kc);
    const int64_t n = so->total, lq = c->mine.len[a];
    s.shape.q_len = lq;
    s.shape.kv_len = so->len[kc];
    s.q = (const float *)p->q + qoff * p->q_strides.seq;
    s.k = buffer + koff * c->dqk;
    s.k_strides = fa_strides_bhld(c->kv_heads, n, c->dqk);
    s.v = buffer + c->batch * c->kv_heads * n * c->dqk + koff * c->dv;
    s.v_strides = fa_strides_bhld(c->kv_heads, n, c->dv);
    s.positions.enabled = 1;
    s.positions.q_start = c->mine.start[a];
    s.positions.kv_start = so->start[kc];
    if (s.causal != FA_CAUSAL_NONE) s.causal = FA_CAUSAL_BOTTOM_RIGHT;  // the same, with positions
    s.workspace = NULL;
    s.workspace_bytes = 0;
    // The pair's own state: the forward's o, lse (the backward sets its own rows).
    s.o = c->o_tmp;
    s.o_strides = fa_strides_bhld(c->q_heads, lq, c->dv);
    s.lse = c->lse_tmp;
    s.lse_strides = (fa_strides){c->q_heads * lq, lq, 1};
    return s;
}

void ring_pack_kv(const ring_context *c, const fa_problem *p, float *buffer) {
    const int64_t n = c->mine.total;
    float *kd = buffer, *vd = buffer + c->batch * c->kv_heads * n * c->dqk;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t g = 0; g < c->kv_heads; g++)
            for (int64_t i = 0; i < n; i++) {
                const float *k = (const float *)p->k + b * p->k_strides.batch + g * p->k_strides.head +
                                 i * p->k_strides.seq;
                const float *v = (const float *)p->v + b * p->v_strides.batch + g * p->v_strides.head +
                                 i * p->v_strides.seq;
                memcpy(kd + ((b * c->kv_heads + g) * n + i) * c->dqk, k, sizeof(float) * (size_t)c->dqk);
                memcpy(vd + ((b * c->kv_heads + g) * n + i) * c->dv, v, sizeof(float) * (size_t)c->dv);
            }
}

#else  // no MPI in this build

#include "ring_attention.h"
#include <stdio.h>
#include <string.h>

int fa_ring_available(void) { return 0; }

static fa_status no_mpi(fa_diagnostic *d) {
    if (d) {
        memset(d, 0, sizeof *d);
        d->status = FA_ERR_INVALID_ARGUMENT;
        d->argument = FA_ARG_PROBLEM;
        d->values[1] = -1;
        d->values[2] = FA_RING_FAILURE_TAG + FA_RING_FAILURE_SETUP;
        snprintf(d->message, sizeof d->message,
                 "this build has no MPI: build with the package trait MPI (Open MPI, pkg-config ompi-c)");
    }
    return FA_ERR_INVALID_ARGUMENT;
}

fa_status fa_ring_forward(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                          int32_t comm, fa_diagnostic *diag) {
    (void)local, (void)seq_len, (void)layout, (void)comm;
    return no_mpi(diag);
}

fa_status fa_ring_backward(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                           int32_t comm, fa_diagnostic *diag) {
    (void)local, (void)seq_len, (void)layout, (void)comm;
    return no_mpi(diag);
}

fa_status fa_ring_forward_timed(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                                int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag) {
    (void)local, (void)seq_len, (void)layout, (void)comm;
    if (timing) memset(timing, 0, sizeof *timing);
    return no_mpi(diag);
}

fa_status fa_ring_backward_timed(const fa_problem *local, int64_t seq_len, fa_ring_layout layout,
                                 int32_t comm, fa_ring_timing *timing, fa_diagnostic *diag) {
    (void)local, (void)seq_len, (void)layout, (void)comm;
    if (timing) memset(timing, 0, sizeof *timing);
    return no_mpi(diag);
}

fa_status fa_ring_cancel(int32_t comm, const char *reason, fa_diagnostic *diag) {
    (void)comm, (void)reason;
    return no_mpi(diag);
}

#endif
