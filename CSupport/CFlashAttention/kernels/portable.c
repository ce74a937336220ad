// portable.c — plain C micro-kernels. Written so that the compiler can vectorise the inner
// loops (unit stride, no reductions across lanes except where noted); no ISA-specific code.
#include <math.h>
#include "microkernel.h"

// kt[d, j] = k[j, d]: one transposed copy per key block, so scores() streams rows of kt.
static void pack_kt_portable(int cols, int64_t dqk, const float *k, int64_t ldk, float *kt,
                             int64_t ldkt) {
    for (int j = 0; j < cols; j++) {
        const float *kj = k + j * ldk;
        for (int64_t d = 0; d < dqk; d++) kt[d * ldkt + j] = kj[d];
    }
}

// s[i, :] = Σ_d q[i, d] · kt[d, :]   (an outer-product update per d; vectorises over j)
static void scores_portable(int rows, int cols, int64_t dqk, const float *q, int64_t ldq,
                            const float *kt, int64_t ldkt, float *s, int64_t lds) {
    for (int i = 0; i < rows; i++) {
        float *si = s + i * lds;
        const float *qi = q + i * ldq;
        for (int j = 0; j < cols; j++) si[j] = 0.0f;
        for (int64_t d = 0; d < dqk; d++) {
            const float qd = qi[d];
            const float *kd = kt + d * ldkt;
            for (int j = 0; j < cols; j++) si[j] += qd * kd[j];
        }
    }
}

// acc[i, :] += Σ_j p[i, j] · v[j, :]   (vectorises over the value dimension)
static void accumulate_pv_portable(int rows, int cols, int64_t dv, const float *p, int64_t ldp,
                                   const float *v, int64_t ldv, float *acc, int64_t ldacc) {
    for (int i = 0; i < rows; i++) {
        float *ai = acc + i * ldacc;
        const float *pi = p + i * ldp;
        for (int j = 0; j < cols; j++) {
            const float pij = pi[j];
            const float *vj = v + j * ldv;
            for (int64_t d = 0; d < dv; d++) ai[d] += pij * vj[d];
        }
    }
}

// max_j x[j]
static float row_max_portable(const float *x, int n) {
    float m = -INFINITY;
    for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

// x ← exp(x − m); Σ x   (summed left to right: the order never depends on threads)
static float exp_sum_portable(float *x, int n, float m) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        const float e = expf(x[j] - m);
        x[j] = e;
        sum += e;
    }
    return sum;
}

// x ← a · x
static void scale_row_portable(float *x, int64_t n, float a) {
    for (int64_t j = 0; j < n; j++) x[j] *= a;
}

const fa_kernels fa_kernels_portable = {
    .name = "portable",
    .block_q = 64,
    .block_k = 64,
    .pack_kt = pack_kt_portable,
    .scores = scores_portable,
    .accumulate_pv = accumulate_pv_portable,
    .row_max = row_max_portable,
    .exp_sum = exp_sum_portable,
    .scale_row = scale_row_portable,
};
