// kernel_grid.c — every kernel path of one ISA over a fixed grid of odd shapes, against a float64
// reference written here, and bitwise across thread counts. `make test-arm64` cross-compiles it
// for aarch64 and runs it under qemu for each ARM64 ISA; it runs natively as well (any ISA the
// CPU has), which is how the driver itself is checked.
//
//   kernel_grid ISA [THREADS…]    ISA: neon | portable | avx2 | … | best   THREADS: default 1 2 3
//
// The grid: query and key lengths 1, 3, 17, 63, 65, 127, 129, 1000 (in pairs chosen so that
// emulation stays within minutes), every head dim 1…256 (Dqk, and Dv ≠ Dqk), GQA and MQA,
// causal bottom-right and top-left, sliding windows, soft-capping, ALiBi, boolean and additive
// masks, decode (one query row) with automatic, explicit and no splits of the keys, the
// backward, half-precision storage (K/V fp16 or bf16 under fp32 Q/O, and everything fp16 or
// bf16), and K/V stored as [B, L, Hkv, D] rows or in HND and NHD pages (block table and CSR,
// pages of 3, 5 and 16 in a seeded order), whose outputs must also be the bits of the same
// values stored [B, Hkv, L, D]. Each case runs on every thread count given; the outputs (O,
// logsumexp, dQ, dK, dV) must be the same bits for every count, and within the tolerance below
// of the reference.
//
// Tolerances (inputs in [−1, 1]): fp32 arithmetic over scores bounded by smax rounds each
// score by about smax·2⁻²³, which moves a softmax weight by as much relatively, so O is within
// smax·2⁻²⁰ (a factor 8 of headroom) and the logsumexp within smax·2⁻²⁰, plus 2·10⁻⁵ for
// the sums. A half output adds its own rounding (2⁻⁹ relative for bf16, 2⁻¹² for fp16, times
// 3 for the two paths rounding values either side of a tie); bf16 dot products, where an ISA
// has them, round P to bf16 (2⁻⁸). Gradients: within 2⁻¹⁰ of the largest reference gradient
// of their tensor, plus smax·2⁻¹⁸ of it (the backward recomputes P from the logsumexp). An
// error of 0.1 % anywhere in a kernel's arithmetic fails these (make test-arm64 shows it).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash_attention.h"

typedef struct {
    const char *name;
    int64_t batch, q_heads, kv_heads, q_len, kv_len, dqk, dv;
    fa_causal causal;
    int64_t window_left, window_right;
    float softcap;
    int alibi;       // ALiBi slopes 2^-(h+1)/2
    int mask;        // 0 none, 1 boolean, 2 additive (finite values and −inf)
    fa_dtype qo, kv; // storage of Q/O and of K/V
    int64_t split;   // kv_split_size (0 automatic)
    int backward;
    int layout;      // K/V storage: 0 [B, Hkv, L, D]; 1 [B, L, Hkv, D]; 2 HND pages; 3 NHD pages
    int64_t page;    // layouts 2, 3: keys per page (pages in a seeded order; 2: block table, 3: CSR)
} grid_case;

static uint64_t rng_state;
static float uniform(void) {  // splitmix64 → [−1, 1)
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1p-52 - 1.0);
}

// A tensor stored in `t`, with the exact fp32 values of what was stored (for the reference).
typedef struct {
    fa_dtype t;
    int64_t n;
    void *data;
    float *exact;
} tensor;

static tensor make_tensor(fa_dtype t, int64_t n, int random) {
    tensor x = {t, n, calloc((size_t)(n ? n : 1), fa_dtype_size(t)), calloc((size_t)(n ? n : 1), sizeof(float))};
    if (random) {
        for (int64_t i = 0; i < n; i++) x.exact[i] = uniform();
        fa_convert(FA_DTYPE_F32, x.exact, t, x.data, n);
        fa_convert(t, x.data, FA_DTYPE_F32, x.exact, n);  // what the library reads
    }
    return x;
}
static void free_tensor(tensor *x) { free(x->data), free(x->exact); }
static void read_back(tensor *x) { fa_convert(x->t, x->data, FA_DTYPE_F32, x->exact, x->n); }

static int failures;
static uint64_t digest = 0xcbf29ce484222325ull;  // FNV-1a over every output's bytes
static void digest_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) digest = (digest ^ b[i]) * 0x100000001b3ull;
}
#define FAIL(...)                                                 \
    do {                                                          \
        fprintf(stderr, "kernel_grid: FAIL %s: ", c->name);       \
        fprintf(stderr, __VA_ARGS__);                             \
        fprintf(stderr, "\n");                                    \
        failures++;                                               \
    } while (0)

// Scores of one query row (double), −inf where hidden; the derivative of the soft cap in dcap.
static void scores_row(const grid_case *c, const fa_problem *p, const tensor *q, const tensor *k,
                       const uint8_t *bmask, const float *amask, int64_t b, int64_t h, int64_t i,
                       double *s, double *dcap) {
    const int64_t hk = h / (c->q_heads / c->kv_heads), diag = i + c->kv_len - c->q_len;
    const double scale = 1.0 / sqrt((double)c->dqk);
    const float *qi = q->exact + ((b * c->q_heads + h) * c->q_len + i) * c->dqk;
    for (int64_t j = 0; j < c->kv_len; j++) {
        s[j] = -INFINITY, dcap[j] = 0;
        if (c->causal == FA_CAUSAL_BOTTOM_RIGHT && j > diag) continue;
        if (c->causal == FA_CAUSAL_TOP_LEFT && j > i) continue;
        if (c->window_left >= 0 && j < diag - c->window_left) continue;
        if (c->window_right >= 0 && j > diag + c->window_right) continue;
        const int64_t m = ((b * c->q_heads + h) * c->q_len + i) * c->kv_len + j;
        if (c->mask == 1 && !bmask[m]) continue;
        if (c->mask == 2 && amask[m] == -INFINITY) continue;
        const float *kj = k->exact + ((b * c->kv_heads + hk) * c->kv_len + j) * c->dqk;
        double dot = 0;
        for (int64_t d = 0; d < c->dqk; d++) dot += (double)qi[d] * (double)kj[d];
        double x = dot * scale;
        dcap[j] = scale;
        if (c->softcap > 0) {
            const double t = tanh(x / c->softcap);
            x = c->softcap * t;
            dcap[j] = scale * (1 - t * t);
        }
        if (p->alibi_slopes) x -= (double)p->alibi_slopes[h] * fabs((double)(diag - j));
        if (c->mask == 2) x += amask[m];
        s[j] = x;
    }
}

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

// K or V stored in case c's layout: `dst` gets the rows of the [B, Hkv, L, d] tensor `src` at
// the strides `st` (for pages: page, head, row in page), key j of entry b in page
// pages[b·per + j / page] (per = pages per entry).
static void *store_layout(const grid_case *c, const tensor *src, int64_t d, fa_strides st,
                          const int32_t *pages, int64_t per, int64_t elements) {
    const size_t es = fa_dtype_size(src->t);
    char *dst = calloc((size_t)(elements ? elements : 1), es);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t g = 0; g < c->kv_heads; g++)
            for (int64_t j = 0; j < c->kv_len; j++) {
                const int64_t at = c->layout >= 2
                    ? pages[b * per + j / c->page] * st.batch + g * st.head + (j % c->page) * st.seq
                    : b * st.batch + g * st.head + j * st.seq;
                memcpy(dst + (size_t)at * es,
                       (const char *)src->data + (size_t)(((b * c->kv_heads + g) * c->kv_len + j) * d) * es,
                       (size_t)d * es);
            }
    return dst;
}

static void check_close(const grid_case *c, const char *what, const float *got, const double *ref,
                        int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++) {
        const int both_inf = isinf(ref[i]) && (double)got[i] == ref[i];
        if (!both_inf && !(fabs((double)got[i] - ref[i]) <= tol)) {
            FAIL("%s[%lld] = %.9g, reference %.9g (tolerance %.3g)", what, (long long)i,
                 (double)got[i], ref[i], tol);
            return;
        }
    }
}

static void run_case(const grid_case *c, fa_isa isa, const int *threads, int nthreads) {
    const int64_t B = c->batch, Hq = c->q_heads, Hkv = c->kv_heads, Lq = c->q_len, Lk = c->kv_len;
    const int64_t nq = B * Hq * Lq * c->dqk, nk = B * Hkv * Lk * c->dqk, nv = B * Hkv * Lk * c->dv,
                  no = B * Hq * Lq * c->dv, nl = B * Hq * Lq, nm = B * Hq * Lq * Lk;
    rng_state = 0x5eed0000u + (uint64_t)(Lq * 131 + Lk * 7 + c->dqk * 3 + c->dv);
    tensor q = make_tensor(c->qo, nq, 1), k = make_tensor(c->kv, nk, 1), v = make_tensor(c->kv, nv, 1);
    tensor dout = make_tensor(c->qo, c->backward ? no : 0, 1);
    uint8_t *bmask = NULL;
    float *amask = NULL, slopes[64];
    if (c->mask == 1) {
        bmask = malloc((size_t)nm);
        for (int64_t i = 0; i < nm; i++) bmask[i] = uniform() > -0.6f;  // 80 % attend
    }
    if (c->mask == 2) {
        amask = malloc(sizeof(float) * (size_t)nm);
        for (int64_t i = 0; i < nm; i++) {
            const float u = uniform();
            amask[i] = u < -0.8f ? -INFINITY : 2 * u;
        }
    }
    for (int h = 0; h < Hq && h < 64; h++) slopes[h] = powf(2.0f, -(float)(h + 1) / 2);

    fa_problem p;
    fa_problem_init(&p);
    p.shape = (fa_shape){B, Hq, Hkv, Lq, Lk, c->dqk, c->dv};
    p.q = q.data, p.k = k.data, p.v = v.data;
    p.q_strides = fa_strides_bhld(Hq, Lq, c->dqk);
    p.k_strides = fa_strides_bhld(Hkv, Lk, c->dqk);
    p.v_strides = fa_strides_bhld(Hkv, Lk, c->dv);
    p.o_strides = fa_strides_bhld(Hq, Lq, c->dv);
    p.lse_strides = fa_strides_bhld(Hq, Lq, 1);
    p.q_dtype = p.o_dtype = c->qo, p.k_dtype = c->kv, p.v_dtype = c->kv;
    p.causal = c->causal, p.window_left = c->window_left, p.window_right = c->window_right;
    p.softcap = c->softcap;
    p.alibi_slopes = c->alibi ? slopes : NULL;
    if (c->mask) {
        p.mask = (fa_mask){c->mask == 1 ? FA_MASK_BOOL : FA_MASK_ADDITIVE,
                           c->mask == 1 ? (const void *)bmask : (const void *)amask,
                           Hq * Lq * Lk, Lq * Lk, Lk, 1};
    }
    p.kv_split_size = c->split;
    p.isa = isa;
    // Another K/V layout: the same values, stored so; its outputs must be the bits of the
    // [B, Hkv, L, D] call (tiles of several kv heads read pages and interleaved rows).
    const fa_problem dense = p;
    void *k_store = NULL, *v_store = NULL;
    int32_t *pages = NULL, *indptr = NULL, *last = NULL, *lens = NULL;
    if (c->layout) {
        const int64_t per = c->layout >= 2 ? (Lk + c->page - 1) / c->page : 0, np = B * per + 1;
        if (c->layout >= 2) {  // B·per pages in a seeded order, and one page no entry uses
            pages = malloc(sizeof(int32_t) * (size_t)np);
            for (int64_t i = 0; i < np; i++) pages[i] = (int32_t)i;
            for (int64_t i = np - 1; i > 0; i--) {
                const int64_t j = (int64_t)((uniform() + 1) * 0.5 * (double)(i + 1)) % (i + 1);
                const int32_t t = pages[i];
                pages[i] = pages[j], pages[j] = t;
            }
        }
        fa_strides ks, vs;
        int64_t kn, vn;
        if (c->layout == 1) {
            ks = fa_strides_blhd(Hkv, Lk, c->dqk), vs = fa_strides_blhd(Hkv, Lk, c->dv);
            kn = nk, vn = nv;
        } else {
            ks = c->layout == 2 ? fa_strides_bhld(Hkv, c->page, c->dqk) : fa_strides_blhd(Hkv, c->page, c->dqk);
            vs = c->layout == 2 ? fa_strides_bhld(Hkv, c->page, c->dv) : fa_strides_blhd(Hkv, c->page, c->dv);
            kn = np * Hkv * c->page * c->dqk, vn = np * Hkv * c->page * c->dv;
        }
        k_store = store_layout(c, &k, c->dqk, ks, pages, per, kn);
        v_store = store_layout(c, &v, c->dv, vs, pages, per, vn);
        p.k = k_store, p.v = v_store, p.k_strides = ks, p.v_strides = vs;
        if (c->layout >= 2) {
            p.kv_pages.page_size = c->page, p.kv_pages.num_pages = np, p.kv_pages.exclusive = 1;
            if (c->layout == 2) {  // block table
                lens = malloc(sizeof(int32_t) * (size_t)B);
                for (int64_t b = 0; b < B; b++) lens[b] = (int32_t)Lk;
                p.kv_pages.block_table = pages, p.kv_pages.max_pages = per, p.kv_pages.seq_lens = lens;
            } else {  // CSR
                indptr = malloc(sizeof(int32_t) * (size_t)(B + 1)), last = malloc(sizeof(int32_t) * (size_t)B);
                for (int64_t b = 0; b <= B; b++) indptr[b] = (int32_t)(b * per);
                for (int64_t b = 0; b < B; b++) last[b] = (int32_t)(Lk - (per - 1) * c->page);
                p.kv_pages.indptr = indptr, p.kv_pages.indices = pages, p.kv_pages.last_page_len = last;
            }
        }
    }

    // The reference, and a bound on |score| for the tolerances.
    double *o_ref = calloc((size_t)(no ? no : 1), sizeof(double)), *lse_ref = calloc((size_t)(nl ? nl : 1), sizeof(double));
    double *dq_ref = calloc((size_t)(nq ? nq : 1), sizeof(double)), *dk_ref = calloc((size_t)(nk ? nk : 1), sizeof(double)),
           *dv_ref = calloc((size_t)(nv ? nv : 1), sizeof(double));
    double *s = malloc(sizeof(double) * (size_t)(Lk ? Lk : 1)), *dcap = malloc(sizeof(double) * (size_t)(Lk ? Lk : 1));
    double smax = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Lq; i++) {
                scores_row(c, &p, &q, &k, bmask, amask, b, h, i, s, dcap);
                const int64_t row = (b * Hq + h) * Lq + i, hk = h / (Hq / Hkv);
                double m = -INFINITY;
                for (int64_t j = 0; j < Lk; j++) {
                    if (s[j] > m) m = s[j];
                    if (isfinite(s[j]) && fabs(s[j]) > smax) smax = fabs(s[j]);
                }
                double *o = o_ref + row * c->dv;
                if (m == -INFINITY) {
                    lse_ref[row] = -INFINITY;
                    continue;
                }
                double sum = 0;
                for (int64_t j = 0; j < Lk; j++) {
                    if (s[j] == -INFINITY) continue;
                    const double w = exp(s[j] - m);
                    sum += w;
                    const float *vj = v.exact + ((b * Hkv + hk) * Lk + j) * c->dv;
                    for (int64_t d = 0; d < c->dv; d++) o[d] += w * vj[d];
                }
                for (int64_t d = 0; d < c->dv; d++) o[d] /= sum;
                lse_ref[row] = m + log(sum);
                if (!c->backward) continue;
                // dP = dO·Vᵀ, D = Σ P·dP, dS = P (dP − D), through the cap and the scale.
                const float *doi = dout.exact + row * c->dv;
                const float *qi = q.exact + row * c->dqk;
                double dsum = 0;
                for (int64_t d = 0; d < c->dv; d++) dsum += (double)doi[d] * o[d];
                for (int64_t j = 0; j < Lk; j++) {
                    if (s[j] == -INFINITY) continue;
                    const double pj = exp(s[j] - lse_ref[row]);
                    const float *vj = v.exact + ((b * Hkv + hk) * Lk + j) * c->dv;
                    const float *kj = k.exact + ((b * Hkv + hk) * Lk + j) * c->dqk;
                    double dp = 0;
                    for (int64_t d = 0; d < c->dv; d++) dp += (double)doi[d] * vj[d];
                    const double ds = pj * (dp - dsum) * dcap[j];
                    double *dqi = dq_ref + row * c->dqk, *dkj = dk_ref + ((b * Hkv + hk) * Lk + j) * c->dqk,
                           *dvj = dv_ref + ((b * Hkv + hk) * Lk + j) * c->dv;
                    for (int64_t d = 0; d < c->dqk; d++) dqi[d] += ds * kj[d], dkj[d] += ds * qi[d];
                    for (int64_t d = 0; d < c->dv; d++) dvj[d] += pj * doi[d];
                }
            }

    double o_tol = 2e-5 + smax * 0x1p-20 * 2, lse_tol = 2e-5 + smax * 0x1p-20;
    if (c->qo == FA_DTYPE_BF16) o_tol += 0x1p-8 + 3 * 0x1p-8;  // bf16 dot products, O rounded
    if (c->qo == FA_DTYPE_F16) o_tol += 3 * 0x1p-11;

    // Forward on each thread count: the same bits, within tolerance of the reference.
    tensor o0 = make_tensor(c->qo, no, 0), o1 = make_tensor(c->qo, no, 0);
    float *lse0 = calloc((size_t)(nl ? nl : 1), sizeof(float)), *lse1 = calloc((size_t)(nl ? nl : 1), sizeof(float));
    for (int t = 0; t < nthreads; t++) {
        tensor *o = t == 0 ? &o0 : &o1;
        float *lse = t == 0 ? lse0 : lse1;
        memset(o->data, 0xA5, (size_t)no * fa_dtype_size(c->qo));
        p.o = o->data, p.lse = lse, p.num_threads = threads[t];
        const fa_status st = fa_forward(&p);
        if (st != FA_OK) {
            FAIL("fa_forward on %d threads returned %d", threads[t], (int)st);
            break;
        }
        if (t > 0 && (!same_bits(o0.data, o1.data, (size_t)no * fa_dtype_size(c->qo)) ||
                      !same_bits(lse0, lse1, sizeof(float) * (size_t)nl)))
            FAIL("forward on %d threads differs from %d thread(s) in its bits", threads[t], threads[0]);
    }
    if (c->layout) {  // the [B, Hkv, L, D] call's bits
        fa_problem d = dense;
        d.o = o1.data, d.lse = lse1, d.num_threads = threads[0];
        if (fa_forward(&d) != FA_OK)
            FAIL("fa_forward on [B, Hkv, L, D] K/V failed");
        else if (!same_bits(o0.data, o1.data, (size_t)no * fa_dtype_size(c->qo)) ||
                 !same_bits(lse0, lse1, sizeof(float) * (size_t)nl))
            FAIL("forward over layout %d differs from [B, Hkv, L, D] K/V in its bits", c->layout);
    }
    digest_bytes(o0.data, (size_t)no * fa_dtype_size(c->qo));
    digest_bytes(lse0, sizeof(float) * (size_t)nl);
    read_back(&o0);
    check_close(c, "O", o0.exact, o_ref, no, o_tol);
    check_close(c, "logsumexp", lse0, lse_ref, nl, lse_tol);

    if (c->backward) {
        tensor dq[2] = {make_tensor(c->qo, nq, 0), make_tensor(c->qo, nq, 0)};
        tensor dk[2] = {make_tensor(c->kv, nk, 0), make_tensor(c->kv, nk, 0)};
        tensor dv[2] = {make_tensor(c->kv, nv, 0), make_tensor(c->kv, nv, 0)};
        p.o = o0.data, p.lse = lse0;
        p.dout = dout.data, p.dout_strides = p.o_strides;
        p.dq_strides = p.q_strides, p.dk_strides = p.k_strides, p.dv_strides = p.v_strides;
        for (int t = 0; t < nthreads; t++) {
            const int x = t == 0 ? 0 : 1;
            p.dq = dq[x].data, p.dk = dk[x].data, p.dv = dv[x].data, p.num_threads = threads[t];
            const fa_status st = fa_backward(&p);
            if (st != FA_OK) {
                FAIL("fa_backward on %d threads returned %d", threads[t], (int)st);
                break;
            }
            if (t > 0 && (!same_bits(dq[0].data, dq[1].data, (size_t)nq * fa_dtype_size(c->qo)) ||
                          !same_bits(dk[0].data, dk[1].data, (size_t)nk * fa_dtype_size(c->kv)) ||
                          !same_bits(dv[0].data, dv[1].data, (size_t)nv * fa_dtype_size(c->kv))))
                FAIL("backward on %d threads differs from %d thread(s) in its bits", threads[t], threads[0]);
        }
        const struct { tensor *got; const double *ref; int64_t n; const char *name; } g[] = {
            {&dq[0], dq_ref, nq, "dQ"}, {&dk[0], dk_ref, nk, "dK"}, {&dv[0], dv_ref, nv, "dV"}};
        for (int t = 0; t < 3; t++) {
            digest_bytes(g[t].got->data, (size_t)g[t].n * fa_dtype_size(g[t].got->t));
            read_back(g[t].got);
            double top = 0;
            for (int64_t i = 0; i < g[t].n; i++) top = fmax(top, fabs(g[t].ref[i]));
            const fa_dtype dt = g[t].got->t;
            const double half = dt == FA_DTYPE_BF16 ? 0x1p-7 : dt == FA_DTYPE_F16 ? 0x1p-10 : 0;
            check_close(c, g[t].name, g[t].got->exact, g[t].ref, g[t].n,
                        1e-5 + top * (0x1p-10 + half) + smax * top * 0x1p-18);
        }
        for (int x = 0; x < 2; x++) free_tensor(&dq[x]), free_tensor(&dk[x]), free_tensor(&dv[x]);
    }

    free_tensor(&q), free_tensor(&k), free_tensor(&v), free_tensor(&dout);
    free_tensor(&o0), free_tensor(&o1);
    free(lse0), free(lse1), free(bmask), free(amask);
    free(k_store), free(v_store), free(pages), free(indptr), free(last), free(lens);
    free(o_ref), free(lse_ref), free(dq_ref), free(dk_ref), free(dv_ref), free(s), free(dcap);
}

#define F32 FA_DTYPE_F32
#define F16 FA_DTYPE_F16
#define BF16 FA_DTYPE_BF16
#define NONE FA_CAUSAL_NONE
#define BR FA_CAUSAL_BOTTOM_RIGHT
#define TL FA_CAUSAL_TOP_LEFT
#define NO_SPLIT INT64_MAX

// name, B, Hq, Hkv, Lq, Lk, Dqk, Dv, causal, window, softcap, alibi, mask, Q/O, K/V, split, backward,
// K/V layout, page size
static const grid_case grid[] = {
    {"one row, one key", 1, 1, 1, 1, 1, 1, 1, NONE, -1, -1, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"3x17 GQA bottom-right", 2, 4, 2, 3, 17, 3, 5, BR, -1, -1, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"17x3 top-left", 1, 2, 2, 17, 3, 17, 17, TL, -1, -1, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"63x65 MQA soft cap", 1, 3, 1, 63, 65, 64, 64, BR, -1, -1, 30, 0, 0, F32, F32, 0, 1, 0, 0},
    {"65x129 window ALiBi", 1, 2, 2, 65, 129, 127, 129, NONE, 20, 5, 0, 1, 0, F32, F32, 0, 1, 0, 0},
    {"129x127 boolean mask", 1, 2, 1, 129, 127, 33, 31, BR, -1, -1, 0, 0, 1, F32, F32, 0, 1, 0, 0},
    {"127x63 additive mask", 1, 1, 1, 127, 63, 40, 24, TL, -1, -1, 0, 1, 2, F32, F32, 0, 1, 0, 0},
    {"1000x1000 GQA causal", 1, 2, 1, 1000, 1000, 32, 32, BR, -1, -1, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"1000x65 causal window", 1, 1, 1, 1000, 65, 16, 16, BR, 30, 0, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"65x1000 every modifier", 1, 2, 1, 65, 1000, 24, 8, BR, 400, -1, 20, 1, 2, F32, F32, 0, 1, 0, 0},
    {"17x65 head dim 256", 1, 2, 1, 17, 65, 256, 256, BR, -1, -1, 0, 0, 0, F32, F32, 0, 1, 0, 0},
    {"129x17 head dims 200/256", 1, 1, 1, 129, 17, 200, 256, NONE, -1, -1, 0, 1, 0, F32, F32, 0, 1, 0, 0},
    // Decode: one row against long keys, split automatically, in 128s, not at all.
    {"decode 1x1000 auto split", 2, 8, 2, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, F32, F32, 0, 0, 0, 0},
    {"decode 1x1000 split 128", 2, 8, 2, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, F32, F32, 128, 0, 0, 0},
    {"decode 1x1000 no split", 2, 8, 2, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, F32, F32, NO_SPLIT, 0, 0, 0},
    {"decode 3x129 head dim 256 modifiers", 1, 4, 1, 3, 129, 256, 256, BR, 100, -1, 25, 1, 1, F32, F32, 17, 0, 0, 0},
    {"decode 1x1000 fp16 cache", 1, 4, 1, 1, 1000, 128, 128, BR, -1, -1, 0, 0, 0, F32, F16, 0, 0, 0, 0},
    {"decode 1x1000 bf16 cache", 1, 4, 1, 1, 1000, 128, 128, BR, -1, -1, 0, 0, 0, F32, BF16, 0, 0, 0, 0},
    {"decode 1x1000 all bf16", 1, 4, 4, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, BF16, BF16, 0, 0, 0, 0},
    {"decode 1x129 all bf16 GQA odd dims split 51", 1, 8, 2, 1, 129, 65, 63, BR, -1, -1, 0, 0, 0, BF16, BF16, 51, 0, 0, 0},
    {"decode 2x1000 all bf16 head dim 256 ALiBi", 2, 4, 1, 2, 1000, 256, 256, BR, -1, -1, 0, 1, 0, BF16, BF16, 0, 0, 0, 0},
    {"decode 1x129 all fp16 split 64", 1, 4, 2, 1, 129, 65, 63, BR, -1, -1, 0, 0, 0, F16, F16, 64, 0, 0, 0},
    // Half storage: forward and backward.
    {"65x129 bf16 cache under fp32", 1, 2, 1, 65, 129, 64, 64, BR, -1, -1, 0, 0, 0, F32, BF16, 0, 0, 0, 0},
    {"63x127 fp16 cache under fp32", 1, 2, 2, 63, 127, 17, 33, TL, -1, -1, 0, 1, 0, F32, F16, 0, 0, 0, 0},
    {"129x65 all bf16", 1, 2, 1, 129, 65, 64, 64, BR, -1, -1, 0, 0, 0, BF16, BF16, 0, 1, 0, 0},
    {"65x63 all fp16", 1, 2, 2, 65, 63, 40, 40, NONE, -1, -1, 0, 0, 1, F16, F16, 0, 1, 0, 0},
    // All bf16 where the ISA has bf16 dot products: the key-major pair kernels (odd head dims
    // leave a last element alone, odd key and query counts a last pair half empty).
    {"17x63 all bf16 GQA odd head dims", 2, 4, 2, 17, 63, 33, 31, TL, -1, -1, 0, 0, 0, BF16, BF16, 0, 1, 0, 0},
    {"127x129 all bf16 every modifier", 1, 2, 1, 127, 129, 65, 127, BR, 40, -1, 20, 1, 2, BF16, BF16, 0, 1, 0, 0},
    {"3x65 all bf16 head dim 256", 1, 2, 2, 3, 65, 256, 256, NONE, -1, -1, 0, 0, 1, BF16, BF16, 0, 1, 0, 0},
    {"65x17 all bf16 head dim 1", 1, 1, 1, 65, 17, 1, 1, BR, -1, -1, 0, 0, 0, BF16, BF16, 0, 1, 0, 0},
    // Bands whose edge leaves one visible score in a 16 × 16 tile (the diagonal 17 keys on:
    // query 15 against key 32) and a window with both sides: skipping a tile the band still
    // reaches, or computing one it hides, fails them.
    {"48x65 all bf16 causal, diagonal 17 keys on", 1, 2, 1, 48, 65, 32, 32, BR, -1, -1, 0, 0, 0, BF16, BF16, 0, 1, 0, 0},
    {"40x77 all bf16 window 6 left 5 right", 1, 2, 1, 40, 77, 48, 40, NONE, 6, 5, 0, 0, 0, BF16, BF16, 0, 1, 0, 0},
    // Other K/V layouts (bitwise those of [B, Hkv, L, D]): rows interleaving the heads and
    // pages, where row tiles take several kv heads (packed differently on 1, 2, 3 threads).
    {"decode 1x1000 [B, L, Hkv, D] no split", 1, 16, 8, 1, 1000, 32, 32, BR, -1, -1, 0, 0, 0, F32, F32, NO_SPLIT, 0, 1, 0},
    {"decode 1x1000 GQA HND pages of 16", 2, 8, 4, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, F32, F32, 0, 0, 2, 16},
    {"decode 3x129 NHD pages of 3 modifiers", 2, 6, 3, 3, 129, 65, 63, BR, 100, -1, 25, 1, 1, F32, F32, 51, 0, 3, 3},
    {"decode 1x1000 fp16 cache NHD pages of 16", 1, 8, 4, 1, 1000, 128, 128, BR, -1, -1, 0, 0, 0, F32, F16, 0, 0, 3, 16},
    {"decode 1x1000 all bf16 HND pages of 16", 1, 8, 4, 1, 1000, 64, 64, BR, -1, -1, 0, 0, 0, BF16, BF16, 0, 0, 2, 16},
    {"decode 1x129 all bf16 NHD pages of 5", 1, 4, 2, 1, 129, 65, 63, BR, -1, -1, 0, 1, 0, BF16, BF16, 0, 0, 3, 5},
    {"65x129 HND pages of 16", 1, 4, 2, 65, 129, 64, 64, BR, -1, -1, 0, 0, 0, F32, F32, 0, 0, 2, 16},
};

// Every head dim 1…256, Dv = Dqk and Dv = 257 − Dqk (17 queries × 33 keys, causal).
static void head_dims(fa_isa isa, const int *threads, int nthreads) {
    for (int64_t d = 1; d <= 256; d++) {
        grid_case c = {"every head dim", 1, 1, 1, 17, 33, d, d % 2 ? d : 257 - d, BR, -1, -1, 0, 0, 0,
                       F32, F32, 0, d % 16 == 1, 0, 0};
        char name[64];
        snprintf(name, sizeof name, "head dims %lld/%lld", (long long)c.dqk, (long long)c.dv);
        c.name = name;
        run_case(&c, isa, threads, nthreads);
    }
}

int main(int argc, char **argv) {
    const struct { const char *name; fa_isa isa; } isas[] = {
        {"portable", FA_ISA_PORTABLE}, {"avx2", FA_ISA_AVX2}, {"avx512", FA_ISA_AVX512},
        {"avx512bf16", FA_ISA_AVX512_BF16}, {"avx512amx", FA_ISA_AVX512_AMX}, {"neon", FA_ISA_NEON},
        {"neonbf16", FA_ISA_NEON_BF16},
    };
    if (argc < 2) {
        fprintf(stderr, "usage: kernel_grid ISA [THREADS…]\n");
        return 2;
    }
    fa_isa isa = FA_ISA_AUTO;
    float x = 0, y;
    const char *name = argv[1];
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const int best = strcmp(argv[1], "best") == 0 && fa_exp2(isas[i].isa, &x, &y, 1) == FA_OK;
        if (best || strcmp(argv[1], isas[i].name) == 0) isa = isas[i].isa, name = isas[i].name;
    }
    if (isa == FA_ISA_AUTO || fa_exp2(isa, &x, &y, 1) != FA_OK) {
        fprintf(stderr, "kernel_grid: %s is not an ISA this CPU runs\n", argv[1]);
        return 2;
    }
    int threads[8] = {1, 2, 3}, nthreads = 3;
    if (argc > 2) {
        nthreads = 0;
        for (int i = 2; i < argc && nthreads < 8; i++) threads[nthreads++] = atoi(argv[i]);
    }
    const size_t n = sizeof grid / sizeof grid[0];
    for (size_t i = 0; i < n; i++) run_case(&grid[i], isa, threads, nthreads);
    head_dims(isa, threads, nthreads);
    // The digest of every output: equal digests, equal bits (comparing builds, compilers, or
    // a change that should not move any result).
    printf("kernel_grid %s (CPU features: %s; threads: %s): %zu cases and head dims 1-256 on %d thread counts: %s; "
           "outputs' digest %016llx\n",
           name, fa_cpu_features(), fa_threads_runtime(), n, nthreads,
           failures ? "FAILED" : "every output within tolerance, the same bits on each",
           (unsigned long long)digest);
    return failures ? 1 : 0;
}
