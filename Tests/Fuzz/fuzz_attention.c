// libFuzzer target over the whole C API: the input bytes choose an entry point and a complete
// descriptor (extents including 0, 1 and values past every limit, strides dense, padded,
// random, overlapping or overflowing, every option, every table) and the values it points at.
//
// Every buffer is allocated exactly as large as the documented contract says the call may
// touch, one allocation each, so AddressSanitizer reports any access validation should have
// refused. The oracle, for every call:
//   - an error leaves every output byte as it was;
//   - a success writes exactly the outputs' elements (the gaps between strided elements keep
//     their sentinel bytes);
//   - with finite inputs, a forward equals a float64 reference written here from the header's
//     definitions (within tolerances stated at `forward_tolerance`), and so does the naive
//     path; a backward equals the naive backward; a merge equals a float64 merge; fa_convert
//     equals the one-element conversions bit for bit.
// A violation prints what it saw and aborts (a libFuzzer finding).
//
// Build and run: `make fuzz` (CI: a time-boxed run from Tests/Fuzz/corpus); README, "Fuzzing".
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash_attention.h"

// The harness's own loops over values carry no coverage instrumentation: they say nothing
// about the library, and instrumented they take most of each execution.
#define HARNESS_LOOP __attribute__((no_sanitize("coverage")))

// ---- reading the input ----

typedef struct {
    const uint8_t *p;
    size_t n;
} input;

static uint32_t take8(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}
static uint64_t take64(input *in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | take8(in);
    return v;
}
// Mostly one of 0 … small_max; sometimes a value at or past a limit.
static int64_t pick_count(input *in, int64_t small_max) {
    static const int64_t special[] = {0, 1, -1, 2, 3, 17, 63, 65, 129, INT32_MAX,
                                      (int64_t)INT32_MAX + 1, (int64_t)1 << 32, (int64_t)1 << 62,
                                      INT64_MAX, INT64_MIN, -((int64_t)1 << 31)};
    const uint32_t c = take8(in);
    if (c < 232) return (int64_t)(c % (uint32_t)(small_max + 1));
    return special[(c - 232) % (sizeof special / sizeof special[0])];
}

// a + b, saturating (the harness itself must stay free of undefined behaviour).
static int64_t plus(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

// Values come from a generator seeded by the input, so a short input describes a whole call.
typedef struct {
    uint64_t s;
} rng;
HARNESS_LOOP static uint64_t next64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
HARNESS_LOOP static float uniform(rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)(next64(r) >> 40) * (1.0f / 16777216.0f);
}

// ---- buffers of exactly the contract's size ----

enum { BUDGET_BYTES = 1 << 20 };  // a buffer past this makes the call check-only

typedef enum { SPAN_OK, SPAN_INVALID, SPAN_HUGE } span_kind;

// Elements a (d0, d1, d2, d3) tensor with element strides (s0, s1, s2, 1) may touch: the
// offset of its last element plus one; 0 when an extent is < 1 (the call must then fail).
static span_kind span_of(const int64_t ext[4], const int64_t str[4], int64_t *out) {
    int64_t last = 0;
    for (int d = 0; d < 4; d++) {
        if (ext[d] < 1) {
            *out = 0;
            return SPAN_INVALID;
        }
        if (str[d] < 0) {
            *out = 0;
            return SPAN_INVALID;
        }
        int64_t t;
        if (__builtin_mul_overflow(ext[d] - 1, str[d], &t) || __builtin_add_overflow(last, t, &last)) {
            *out = 0;
            return SPAN_INVALID;
        }
    }
    if (last == INT64_MAX) {
        *out = 0;
        return SPAN_INVALID;
    }
    *out = last + 1;
    return SPAN_OK;
}

typedef struct {
    void *data;
    size_t bytes;
} buffer;

static int huge;  // some buffer the call may touch is past the budget: check only

static buffer make_buffer(span_kind k, int64_t elements, size_t elem_size) {
    buffer b = {0};
    if (k == SPAN_OK && (elements > (int64_t)(BUDGET_BYTES / elem_size))) {
        huge = 1;
        k = SPAN_INVALID;
    }
    // An invalid tensor still gets a (one-element) buffer, so a validation that lets it
    // through is caught by AddressSanitizer instead of dereferencing NULL.
    b.bytes = k == SPAN_OK ? (size_t)elements * elem_size : elem_size;
    b.data = malloc(b.bytes ? b.bytes : 1);
    return b;
}

static size_t dtype_bytes(fa_dtype t) {
    const size_t s = fa_dtype_size(t);
    return s ? s : 4;
}

HARNESS_LOOP static float load(const void *base, fa_dtype t, int64_t i) {
    switch (t) {
    case FA_DTYPE_F16: return fa_f16_to_float(((const uint16_t *)base)[i]);
    case FA_DTYPE_BF16: return fa_bf16_to_float(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}
HARNESS_LOOP static void store(void *base, fa_dtype t, int64_t i, float v) {
    switch (t) {
    case FA_DTYPE_F16: ((uint16_t *)base)[i] = fa_float_to_f16(v); break;
    case FA_DTYPE_BF16: ((uint16_t *)base)[i] = fa_float_to_bf16(v); break;
    default: ((float *)base)[i] = v; break;
    }
}
HARNESS_LOOP static void fill(buffer *b, fa_dtype t, rng *r, float lo, float hi) {
    const int64_t n = (int64_t)(b->bytes / dtype_bytes(t));
    for (int64_t i = 0; i < n; i++) store(b->data, t, i, uniform(r, lo, hi));
}

#define SENTINEL 0xA7
HARNESS_LOOP static void poison(buffer *b) { memset(b->data, SENTINEL, b->bytes); }
HARNESS_LOOP static int untouched(const buffer *b) {
    const uint8_t *p = b->data;
    for (size_t i = 0; i < b->bytes; i++)
        if (p[i] != SENTINEL) return 0;
    return 1;
}

#define FINDING(...)                                                                     \
    do {                                                                                 \
        fprintf(stderr, "fuzz_attention finding (%s:%d): ", __FILE__, __LINE__);         \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                           \
        abort();                                                                         \
    } while (0)

// ---- one generated problem ----

typedef struct {
    fa_problem p;
    buffer q, k, v, o, lse;
    buffer dout, dq, dk, dv, dq_ref, dk_ref, dv_ref;
    buffer alibi, q_lengths, kv_lengths, cu_q, cu_k, mask, block_mask, workspace;
    buffer indptr, indices, last_page_len, block_table, seq_lens;
    int finite;          // every input value and option is finite and in range
    int options_finite;  // every option is (the values may hold one NaN or infinity)
    int bad_input;       // 0, or 1 / 2 / 3: Q / K / V holds one NaN or ±inf
    float smax;          // a bound on |score| (after scale, cap, ALiBi and mask)
    int mask_sign;       // the additive mask holds −inf entries
} problem;

static void free_problem(problem *g) {
    buffer *all[] = {&g->q, &g->k, &g->v, &g->o, &g->lse, &g->dout,
                     &g->dq, &g->dk, &g->dv, &g->dq_ref, &g->dk_ref, &g->dv_ref, &g->alibi,
                     &g->q_lengths, &g->kv_lengths, &g->cu_q, &g->cu_k, &g->mask,
                     &g->block_mask, &g->workspace, &g->indptr, &g->indices,
                     &g->last_page_len, &g->block_table, &g->seq_lens};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->data);
}

static fa_strides pick_strides(input *in, int64_t heads, int64_t len, int64_t dim) {
    const uint32_t mode = take8(in) % 10;
    const int64_t h = heads > 0 && heads < 4096 ? heads : 1, l = len > 0 && len < 4096 ? len : 1,
                  d = dim > 0 && dim < 4096 ? dim : 1;
    switch (mode) {
    case 0: case 1: case 2: case 3: return fa_strides_bhld(h, l, d);
    case 4: case 5: return fa_strides_blhd(h, l, d);
    case 6: {  // padded rows and heads
        const int64_t pad = 1 + take8(in) % 7;
        return (fa_strides){h * (l * (d + pad) + pad), l * (d + pad) + pad, d + pad};
    }
    case 7: return (fa_strides){pick_count(in, 200), pick_count(in, 100), pick_count(in, 50)};
    case 8: {  // one stride too small (elements overlap) or zero
        fa_strides s = fa_strides_bhld(h, l, d);
        const uint32_t which = take8(in) % 3;
        if (which == 0) s.batch = take8(in) % 2 ? 0 : s.batch - 1;
        if (which == 1) s.head = take8(in) % 2 ? 0 : s.head - 1;
        if (which == 2) s.seq = take8(in) % 2 ? 0 : d - 1;
        return s;
    }
    default: {  // strides whose products overflow
        static const int64_t big[] = {INT64_MAX, (int64_t)1 << 62, (int64_t)1 << 40, -1, INT64_MIN};
        fa_strides s = fa_strides_bhld(h, l, d);
        const uint32_t which = take8(in) % 3;
        const int64_t value = big[take8(in) % 5];
        if (which == 0) s.batch = value;
        if (which == 1) s.head = value;
        if (which == 2) s.seq = value;
        return s;
    }
    }
}

static fa_dtype pick_dtype(input *in) {
    const uint32_t c = take8(in);
    if (c < 150) return FA_DTYPE_F32;
    if (c < 200) return FA_DTYPE_BF16;
    if (c < 250) return FA_DTYPE_F16;
    return (fa_dtype)(c % 2 ? 3 : -1);
}

// Offsets 0 = c[0] ≤ … ≤ c[batch] ≤ extent, sometimes broken.
static buffer make_offsets(input *in, int64_t batch, int64_t extent) {
    buffer b = make_buffer(SPAN_OK, batch + 1, 4);
    int32_t *c = b.data;
    c[0] = 0;
    int64_t left = extent > 0 && extent < INT32_MAX ? extent : 0;
    for (int64_t i = 1; i <= batch; i++) {
        const int64_t step = left ? (int64_t)(take8(in) % (uint32_t)(left + 1)) : 0;
        c[i] = (int32_t)(c[i - 1] + step);
        left -= step;
    }
    switch (take8(in) % 16) {
    case 0: c[0] = 1; break;
    case 1: c[batch] = (int32_t)(extent < INT32_MAX ? extent + 1 : INT32_MAX); break;
    case 2: if (batch > 1) c[1] = c[batch] + 1; break;
    case 3: c[take8(in) % (uint32_t)(batch + 1)] = -1; break;
    default: break;
    }
    return b;
}

static buffer make_lengths(input *in, int64_t batch, int64_t extent) {
    buffer b = make_buffer(SPAN_OK, batch, 4);
    int32_t *l = b.data;
    const int64_t top = extent > 0 && extent < INT32_MAX ? extent : 0;
    for (int64_t i = 0; i < batch; i++) {
        const uint32_t c = take8(in);
        l[i] = c < 16 ? (int32_t)(c == 0 ? -1 : c == 1 ? INT32_MAX : (int32_t)(top + 1))
                      : (int32_t)(c % (uint32_t)(top + 1));
    }
    return b;
}

// Paged K/V: a pool of num_pages pages and a CSR or block table over it.
static void make_pages(input *in, problem *g, int64_t batch, int64_t kv_len, int64_t *pool_pages,
                       int64_t *page_rows) {
    fa_kv_pages *kp = &g->p.kv_pages;
    kp->page_size = plus(pick_count(in, 9), take8(in) % 4 == 0 ? 0 : 1);
    kp->num_pages = plus(pick_count(in, 24), 1);
    kp->exclusive = (int32_t)(take8(in) % 2);
    *pool_pages = kp->num_pages;
    *page_rows = kp->page_size;
    const int64_t ps = kp->page_size, np = kp->num_pages;
    const int sane = ps >= 1 && ps <= 64 && np >= 1 && np <= 64 && kv_len >= 0 && kv_len <= 4096;
    int64_t lens[64] = {0}, counts[64] = {0}, total = 0;
    for (int64_t b = 0; b < batch; b++) {
        lens[b] = sane ? (int64_t)(take8(in) % (uint32_t)(kv_len + 1)) : 1;
        counts[b] = sane ? (lens[b] + ps - 1) / ps : 1;
        total += counts[b];
    }
    const uint32_t corrupt = take8(in) % 24;
    rng r = {take64(in)};
    const int32_t page_hi = (int32_t)(np > 0 && np < INT32_MAX ? np : 1);
    if (take8(in) % 2 == 0) {  // CSR
        g->indptr = make_buffer(SPAN_OK, batch + 1, 4);
        g->last_page_len = make_buffer(SPAN_OK, batch, 4);
        int32_t *ip = g->indptr.data, *last = g->last_page_len.data;
        ip[0] = 0;
        for (int64_t b = 0; b < batch; b++) {
            ip[b + 1] = (int32_t)(ip[b] + counts[b]);
            last[b] = (int32_t)(counts[b] ? lens[b] - (counts[b] - 1) * ps : 0);
        }
        if (corrupt == 0) ip[0] = 1;
        if (corrupt == 1 && batch > 1) ip[1] = ip[batch] + 1;
        if (corrupt == 2) last[take8(in) % (uint32_t)batch] = (int32_t)plus(ps, 1);
        if (corrupt == 3) last[take8(in) % (uint32_t)batch] = 0;
        if (corrupt == 4) ip[batch] = -1;
        const int64_t n = ip[batch] > 0 ? ip[batch] : 0;
        g->indices = make_buffer(SPAN_OK, n, 4);
        int32_t *ix = g->indices.data;
        for (int64_t i = 0; i < n; i++) ix[i] = (int32_t)(next64(&r) % (uint64_t)page_hi);
        if (corrupt == 5 && n) ix[take8(in) % (uint32_t)n] = page_hi;
        if (corrupt == 6 && n) ix[take8(in) % (uint32_t)n] = -1;
        if (corrupt == 7 && n > 1) ix[1] = ix[0];
        kp->indptr = ip;
        kp->indices = ix;
        kp->last_page_len = last;
    } else {  // block table
        int64_t widest = 1;
        for (int64_t b = 0; b < batch; b++)
            if (counts[b] > widest) widest = counts[b];
        kp->max_pages = corrupt == 8 ? widest - 1 : widest + take8(in) % 3;
        if (corrupt == 9) kp->max_pages = pick_count(in, 3);
        const int64_t rows = kp->max_pages > 0 && kp->max_pages <= 256 ? kp->max_pages : 1;
        g->block_table = make_buffer(SPAN_OK, batch * rows, 4);
        g->seq_lens = make_buffer(SPAN_OK, batch, 4);
        int32_t *bt = g->block_table.data, *sl = g->seq_lens.data;
        for (int64_t i = 0; i < batch * rows; i++) bt[i] = (int32_t)(next64(&r) % (uint64_t)page_hi);
        for (int64_t b = 0; b < batch; b++) sl[b] = (int32_t)lens[b];
        if (corrupt == 10) sl[take8(in) % (uint32_t)batch] = -1;
        if (corrupt == 11) sl[take8(in) % (uint32_t)batch] = (int32_t)plus(kv_len, 1);
        if (corrupt == 12) bt[take8(in) % (uint32_t)(batch * rows)] = page_hi;
        if (corrupt == 13 && batch * rows > 1) bt[1] = bt[0];
        kp->block_table = bt;
        kp->seq_lens = sl;
        if (corrupt == 14) kp->indptr = bt;  // both forms at once
    }
    (void)total;
}

// Builds the call. Returns 0 when the input is too short to say anything.
static int make_problem(input *in, problem *g, int backward) {
    memset(g, 0, sizeof *g);
    fa_problem *p = &g->p;
    fa_problem_init(p);
    fa_shape *s = &p->shape;
    s->batch = plus(pick_count(in, 3), take8(in) % 8 ? 1 : 0);
    s->kv_heads = plus(pick_count(in, 2), 1);
    const int64_t group = plus(pick_count(in, 2), 1);
    s->q_heads = take8(in) % 16 ? (s->kv_heads > 0 && s->kv_heads < 64 && group > 0 && group < 64 ? s->kv_heads * group : 1)
                                : pick_count(in, 5);
    s->q_len = pick_count(in, 24);
    s->kv_len = pick_count(in, 40);
    s->head_dim_qk = pick_count(in, 24);
    s->head_dim_v = take8(in) % 4 ? s->head_dim_qk : pick_count(in, 24);
    if (in->n == 0) return 0;

    const int small_batch = s->batch >= 1 && s->batch <= 64;
    const uint32_t layout = take8(in);
    const int packed_q = small_batch && (layout & 1) && !(layout & 16);
    const int packed_k = small_batch && (layout & 2) && !(layout & 32);
    const int paged = small_batch && (layout & 4) && !packed_k && !backward;
    const int padded_q = small_batch && (layout & 16);
    const int padded_k = small_batch && (layout & 32) && !paged;
    if (packed_q) g->cu_q = make_offsets(in, s->batch, s->q_len), p->cu_seqlens_q = g->cu_q.data;
    if (packed_k) g->cu_k = make_offsets(in, s->batch, s->kv_len), p->cu_seqlens_k = g->cu_k.data;
    if (padded_q) g->q_lengths = make_lengths(in, s->batch, s->q_len), p->q_lengths = g->q_lengths.data;
    if (padded_k) g->kv_lengths = make_lengths(in, s->batch, s->kv_len), p->kv_lengths = g->kv_lengths.data;
    int64_t pool_pages = 0, page_rows = 0;
    if (paged) make_pages(in, g, s->batch, s->kv_len, &pool_pages, &page_rows);
    // page_size 0 means "not paged": K and V are then ordinary tensors.
    const int pool = paged && p->kv_pages.page_size != 0;

    p->q_dtype = pick_dtype(in);
    p->k_dtype = take8(in) % 3 ? p->q_dtype : pick_dtype(in);
    p->v_dtype = take8(in) % 3 ? p->k_dtype : pick_dtype(in);
    p->o_dtype = take8(in) % 8 ? p->q_dtype : pick_dtype(in);

    p->q_strides = pick_strides(in, s->q_heads, s->q_len, s->head_dim_qk);
    p->k_strides = pool ? pick_strides(in, s->kv_heads, page_rows, s->head_dim_qk)
                         : pick_strides(in, s->kv_heads, s->kv_len, s->head_dim_qk);
    p->v_strides = take8(in) % 2 ? p->k_strides
                   : pool        ? pick_strides(in, s->kv_heads, page_rows, s->head_dim_v)
                                 : pick_strides(in, s->kv_heads, s->kv_len, s->head_dim_v);
    p->o_strides = pick_strides(in, s->q_heads, s->q_len, s->head_dim_v);
    const int want_lse = backward || take8(in) % 2;
    if (want_lse) {
        const fa_strides ls = pick_strides(in, s->q_heads, s->q_len, 1);
        p->lse_strides = ls;
    }

    // Spans: a packed side has no batch dimension; a paged K/V is a pool of pages.
    const int64_t kb = pool ? pool_pages : s->batch, kl = pool ? page_rows : s->kv_len;
    struct { buffer *b; fa_dtype t; int64_t e[4]; fa_strides st; int packed; } tensors[] = {
        {&g->q, p->q_dtype, {s->batch, s->q_heads, s->q_len, s->head_dim_qk}, p->q_strides, packed_q},
        {&g->k, p->k_dtype, {kb, s->kv_heads, kl, s->head_dim_qk}, p->k_strides, packed_k && !pool},
        {&g->v, p->v_dtype, {kb, s->kv_heads, kl, s->head_dim_v}, p->v_strides, packed_k && !pool},
        {&g->o, p->o_dtype, {s->batch, s->q_heads, s->q_len, s->head_dim_v}, p->o_strides, packed_q},
        {&g->lse, FA_DTYPE_F32, {s->batch, s->q_heads, s->q_len, 1}, p->lse_strides, packed_q},
    };
    for (size_t t = 0; t < sizeof tensors / sizeof tensors[0]; t++) {
        if (tensors[t].b == &g->lse && !want_lse) continue;
        int64_t e[4], st[4] = {tensors[t].st.batch, tensors[t].st.head, tensors[t].st.seq, 1}, n;
        memcpy(e, tensors[t].e, sizeof e);
        if (tensors[t].packed) st[0] = 0, e[0] = e[0] >= 1 ? 1 : e[0];
        const span_kind k = span_of(e, st, &n);
        *tensors[t].b = make_buffer(k, n, dtype_bytes(tensors[t].t));
    }
    if (backward) {
        struct { buffer *b; fa_dtype t; int64_t e[4]; fa_strides *st; int packed; } grads[] = {
            {&g->dout, p->o_dtype, {s->batch, s->q_heads, s->q_len, s->head_dim_v}, &p->dout_strides, packed_q},
            {&g->dq, p->q_dtype, {s->batch, s->q_heads, s->q_len, s->head_dim_qk}, &p->dq_strides, packed_q},
            {&g->dk, p->k_dtype, {s->batch, s->kv_heads, s->kv_len, s->head_dim_qk}, &p->dk_strides, packed_k},
            {&g->dv, p->v_dtype, {s->batch, s->kv_heads, s->kv_len, s->head_dim_v}, &p->dv_strides, packed_k},
            {&g->dq_ref, p->q_dtype, {s->batch, s->q_heads, s->q_len, s->head_dim_qk}, &p->dq_strides, packed_q},
            {&g->dk_ref, p->k_dtype, {s->batch, s->kv_heads, s->kv_len, s->head_dim_qk}, &p->dk_strides, packed_k},
            {&g->dv_ref, p->v_dtype, {s->batch, s->kv_heads, s->kv_len, s->head_dim_v}, &p->dv_strides, packed_k},
        };
        for (size_t t = 0; t < sizeof grads / sizeof grads[0]; t++) {
            if (t < 4) {
                const fa_strides same = t == 0 ? p->o_strides : t == 1 ? p->q_strides
                                      : t == 2 ? p->k_strides : p->v_strides;
                *grads[t].st = take8(in) % 4 ? same
                               : pick_strides(in, grads[t].e[1], grads[t].e[2], grads[t].e[3]);
            }
            int64_t e[4], st[4] = {grads[t].st->batch, grads[t].st->head, grads[t].st->seq, 1}, n;
            memcpy(e, grads[t].e, sizeof e);
            if (grads[t].packed) st[0] = 0, e[0] = e[0] >= 1 ? 1 : e[0];
            const span_kind k = span_of(e, st, &n);
            *grads[t].b = make_buffer(k, n, dtype_bytes(grads[t].t));
        }
    }

    // Options.
    g->finite = 1;
    const uint32_t sc = take8(in) % 12;
    static const float scales[] = {0.0f, -0.5f, 3.4e38f, INFINITY, -INFINITY, 0.0f};
    if (sc < 6) p->scale = FA_SCALE_DEFAULT;
    else if (sc < 9) p->scale = (float)(take8(in) % 64) / 32.0f - 0.5f;
    else p->scale = scales[take8(in) % 6];
    if (!isnan(p->scale) && fabsf(p->scale) > 4.0f) g->finite = 0;
    const int64_t causal = take8(in) % 8;
    p->causal = causal < 5 ? FA_CAUSAL_NONE : causal < 6 ? FA_CAUSAL_BOTTOM_RIGHT
                : causal < 7 ? FA_CAUSAL_TOP_LEFT : (fa_causal)pick_count(in, 5);
    if (take8(in) % 4 == 0) {
        p->window_left = plus(pick_count(in, 40), -1);
        p->window_right = plus(pick_count(in, 40), -1);
    }
    if (take8(in) % 6 == 0) {  // explicit positions: nearby, far apart, or out of range
        static const int64_t far[] = {FA_MAX_POSITION, -FA_MAX_POSITION, FA_MAX_POSITION + 1,
                                      INT64_MIN, INT64_MAX};
        p->positions.enabled = 1 + (int32_t)(take8(in) % 2);
        p->positions.q_start = plus(pick_count(in, 300), -100);
        p->positions.kv_start = take8(in) % 8 == 0 ? far[take8(in) % 5] : plus(pick_count(in, 300), -100);
    }
    const uint32_t cap = take8(in) % 8;
    if (cap == 1) p->softcap = (float)(1 + take8(in) % 30);
    if (cap == 2) p->softcap = (const float[]){-1.0f, NAN, INFINITY, 1e-30f}[take8(in) % 4];
    float alibi_max = 0;
    if (take8(in) % 4 == 0 && s->q_heads >= 1 && s->q_heads <= 256) {
        g->alibi = make_buffer(SPAN_OK, s->q_heads, 4);
        rng r = {take64(in)};
        float *a = g->alibi.data;
        for (int64_t h = 0; h < s->q_heads; h++) {
            a[h] = uniform(&r, -0.5f, 1.0f);
            if (fabsf(a[h]) > alibi_max) alibi_max = fabsf(a[h]);
        }
        if (take8(in) % 8 == 0) a[take8(in) % (uint32_t)s->q_heads] = NAN;
        p->alibi_slopes = a;
    }
    float mask_max = 0;
    const uint32_t mk = take8(in) % 6;
    if (mk == 1 || mk == 2 || mk == 5) {
        p->mask.kind = mk == 5 ? (fa_mask_kind)pick_count(in, 4) : (fa_mask_kind)mk;
        // Broadcast strides: each 0 or a dense stride of [B, Hq, Lq, Lk], or anything.
        const int64_t lk = s->kv_len > 0 && s->kv_len < 4096 ? s->kv_len : 1;
        const int64_t lq = s->q_len > 0 && s->q_len < 4096 ? s->q_len : 1;
        const int64_t hq = s->q_heads > 0 && s->q_heads < 4096 ? s->q_heads : 1;
        const int64_t dense[4] = {hq * lq * lk, lq * lk, lk, 1};
        int64_t st[4];
        const uint32_t bits = take8(in);
        for (int d = 0; d < 4; d++) st[d] = (bits >> d) & 1 ? 0 : dense[d];
        if (bits & 0x80) st[take8(in) % 4] = pick_count(in, 300);
        p->mask.batch = st[0], p->mask.head = st[1], p->mask.query = st[2], p->mask.key = st[3];
        const int64_t e[4] = {s->batch, s->q_heads, s->q_len, s->kv_len};
        int64_t n;
        const span_kind k = span_of(e, st, &n);
        const size_t es = p->mask.kind == FA_MASK_BOOL ? 1 : 4;
        g->mask = make_buffer(k, n, es);
        rng r = {take64(in)};
        const int64_t count = (int64_t)(g->mask.bytes / es);
        const uint32_t density = take8(in);
        for (int64_t i = 0; i < count; i++) {
            if (es == 1) {
                ((uint8_t *)g->mask.data)[i] = (uint8_t)((next64(&r) & 255) < density);
            } else {
                float m = uniform(&r, -3.0f, 3.0f);
                if ((next64(&r) & 255) >= density) m = -INFINITY;
                ((float *)g->mask.data)[i] = m;
                if (fabsf(m) > mask_max && isfinite(m)) mask_max = fabsf(m);
            }
        }
        if (es == 4 && count && take8(in) % 8 == 0) {
            ((float *)g->mask.data)[take8(in) % (uint32_t)count] = take8(in) % 2 ? NAN : INFINITY;
            g->finite = 0;
        }
        p->mask.data = take8(in) % 32 ? g->mask.data : NULL;
    }
    if (take8(in) % 5 == 0) {
        fa_block_mask *bm = &p->block_mask;
        bm->block_q = pick_count(in, 20);
        bm->block_k = pick_count(in, 40);
        const int64_t nq = bm->block_q >= 1 && s->q_len >= 1 ? s->q_len / bm->block_q + (s->q_len % bm->block_q != 0) : 1;
        const int64_t nk = bm->block_k >= 1 && s->kv_len >= 1 ? s->kv_len / bm->block_k + (s->kv_len % bm->block_k != 0) : 1;
        const int64_t hq = s->q_heads > 0 && s->q_heads < 4096 ? s->q_heads : 1;
        const uint32_t bits = take8(in);
        const int64_t q_blocks = nq < 4096 ? nq : 1, k_blocks = nk < 4096 ? nk : 1;
        int64_t st[4] = {hq * q_blocks * k_blocks, q_blocks * k_blocks, k_blocks, 1};
        for (int d = 0; d < 4; d++)
            if ((bits >> d) & 1) st[d] = 0;
        if (bits & 0x80) st[take8(in) % 4] = pick_count(in, 100);
        bm->batch = st[0], bm->head = st[1], bm->qblock = st[2], bm->kblock = st[3];
        const int64_t e[4] = {s->batch, s->q_heads, nq, nk};
        int64_t n;
        const span_kind k = bm->block_q >= 1 && bm->block_k >= 1 ? span_of(e, st, &n) : SPAN_INVALID;
        if (k != SPAN_OK) n = 0;
        g->block_mask = make_buffer(k, n, 1);
        rng r = {take64(in)};
        for (size_t i = 0; i < g->block_mask.bytes; i++)
            ((uint8_t *)g->block_mask.data)[i] = (uint8_t)(next64(&r) % 4 != 0);
        bm->data = g->block_mask.data;
    }
    const uint32_t split = take8(in) % 8;
    p->kv_split_size = split < 4 ? 0 : split == 7 ? plus(pick_count(in, 3), -1) : pick_count(in, 40);
    p->num_threads = (int32_t)(take8(in) % 4);
    if (take8(in) % 32 == 0) p->num_threads = -1;
    const uint32_t isa = take8(in) % 18;
    p->isa = isa < 9 ? FA_ISA_AUTO : (fa_isa)(isa - 9);  // 5, 6: ARM64's; 7: AMX; 8: unknown

    // Values: uniform in [-2, 2], sometimes a NaN or an infinity.
    rng r = {take64(in)};
    fill(&g->q, p->q_dtype, &r, -2.0f, 2.0f);
    fill(&g->k, p->k_dtype, &r, -2.0f, 2.0f);
    fill(&g->v, p->v_dtype, &r, -2.0f, 2.0f);
    if (backward) fill(&g->dout, p->o_dtype, &r, -1.0f, 1.0f);
    const uint32_t bad = take8(in) % 32;
    if (bad < 3) {
        buffer *b = bad == 0 ? &g->q : bad == 1 ? &g->k : &g->v;
        const fa_dtype t = bad == 0 ? p->q_dtype : bad == 1 ? p->k_dtype : p->v_dtype;
        const int64_t n = (int64_t)(b->bytes / dtype_bytes(t));
        if (n) store(b->data, t, (int64_t)(next64(&r) % (uint64_t)n),
                     (const float[]){NAN, INFINITY, -INFINITY}[take8(in) % 3]);
        g->bad_input = (int)bad + 1;
    }
    if (p->softcap < 0 || isnan(p->softcap) || isinf(p->softcap)) g->finite = 0;
    g->options_finite = g->finite;
    if (g->bad_input) g->finite = 0;
    const float sc_abs = isnan(p->scale) ? 1.0f : fabsf(p->scale);
    const float dqk = s->head_dim_qk > 0 && s->head_dim_qk < 4096 ? (float)s->head_dim_qk : 1;
    float smax = sc_abs * dqk * 4.0f;
    if (p->softcap > 0 && smax > p->softcap) smax = p->softcap;
    // ALiBi's largest distance: the lengths, plus the gap between the starts of explicit positions.
    const double gap = p->positions.enabled ? fabs((double)p->positions.q_start - (double)p->positions.kv_start) : 0;
    const float reach = s->kv_len > 0 && s->kv_len < 4096 && s->q_len < 4096 ? (float)(s->kv_len + s->q_len + gap) : 0;
    g->smax = smax + alibi_max * reach + mask_max;

    // Work past a budget (B·Hq·Lq·Lk·(Dqk + Dv) multiply-adds) is check-only too: a few
    // milliseconds per execution keep 100,000 of them within CI's time box.
    const int64_t ext[6] = {s->batch, s->q_heads, s->q_len, s->kv_len, plus(s->head_dim_qk, s->head_dim_v), 1};
    int64_t work = 1;
    for (int d = 0; d < 5; d++)
        if (ext[d] > 0 && __builtin_mul_overflow(work, ext[d], &work)) work = INT64_MAX;
    if (work > (1 << 18)) huge = 1;

    // Null pointers, now and then.
    const uint32_t nul = take8(in) % 64;
    if (nul == 0) p->q = NULL; else p->q = g->q.data;
    if (nul == 1) p->k = NULL; else p->k = g->k.data;
    if (nul == 2) p->v = NULL; else p->v = g->v.data;
    if (nul == 3) p->o = NULL; else p->o = g->o.data;
    p->lse = want_lse ? g->lse.data : NULL;
    if (backward) {
        p->dout = nul == 4 ? NULL : g->dout.data;
        p->dq = nul == 5 ? NULL : g->dq.data;
        p->dk = nul == 6 ? NULL : g->dk.data;
        p->dv = nul == 7 ? NULL : g->dv.data;
    }
    if (nul == 8) p->o = (void *)p->q;  // an output over an input
    return 1;
}

// ---- the float64 forward reference, from the header's definitions ----

// Entry b's query rows (first row, count) and keys (count) as the header defines them.
static int64_t q_first(const fa_problem *p, int64_t b) { return p->cu_seqlens_q ? p->cu_seqlens_q[b] : 0; }
static int64_t q_count(const fa_problem *p, int64_t b) {
    if (p->cu_seqlens_q) return p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    return p->q_lengths ? p->q_lengths[b] : p->shape.q_len;
}
static int64_t k_count(const fa_problem *p, int64_t b) {
    const fa_kv_pages *kp = &p->kv_pages;
    if (kp->page_size) {
        if (kp->indptr) {
            const int64_t pages = kp->indptr[b + 1] - kp->indptr[b];
            return pages ? (pages - 1) * kp->page_size + kp->last_page_len[b] : 0;
        }
        return kp->seq_lens[b];
    }
    if (p->cu_seqlens_k) return p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
    return p->kv_lengths ? p->kv_lengths[b] : p->shape.kv_len;
}
// Element offset of key j's row (head hk) of entry b in K (or V with its strides).
HARNESS_LOOP static int64_t key_row(const fa_problem *p, fa_strides st, int64_t b, int64_t hk, int64_t j) {
    const fa_kv_pages *kp = &p->kv_pages;
    if (kp->page_size) {
        const int32_t page = kp->indptr ? kp->indices[kp->indptr[b] + j / kp->page_size]
                                        : kp->block_table[b * kp->max_pages + j / kp->page_size];
        return page * st.batch + hk * st.head + (j % kp->page_size) * st.seq;
    }
    if (p->cu_seqlens_k) return hk * st.head + (p->cu_seqlens_k[b] + j) * st.seq;
    return b * st.batch + hk * st.head + j * st.seq;
}
HARNESS_LOOP static int64_t query_row(const fa_problem *p, fa_strides st, int64_t b, int64_t h, int64_t i) {
    if (p->cu_seqlens_q) return h * st.head + (p->cu_seqlens_q[b] + i) * st.seq;
    return b * st.batch + h * st.head + i * st.seq;
}

// Whether key j is visible to local query i of a (lq, lk) entry, and its score (double).
// Row i lines up with key i + diagonal_offset (bottom-right alignment, or explicit positions).
HARNESS_LOOP static int64_t diagonal_offset(const fa_problem *p, int64_t lq, int64_t lk) {
    return p->positions.enabled ? p->positions.q_start - p->positions.kv_start : lk - lq;
}
HARNESS_LOOP static int visible(const fa_problem *p, int64_t lq, int64_t lk, int64_t i, int64_t j) {
    const int64_t diag = i + diagonal_offset(p, lq, lk);
    if (p->causal == FA_CAUSAL_BOTTOM_RIGHT && j > diag) return 0;
    if (p->causal == FA_CAUSAL_TOP_LEFT && j > (p->positions.enabled ? diag : i)) return 0;
    if (p->window_left >= 0 && j < diag - p->window_left) return 0;
    if (p->window_right >= 0 && j > diag + p->window_right) return 0;
    return 1;
}

// Row i's scores (score[j], −inf where hidden), their maximum and whether one is NaN or +inf;
// with dcap, also ∂score/∂(q·k·scale) (the soft cap's 1 − tanh², else 1), in sabs the sum
// of the absolute values fp32 rounds on the way to each score (|scale|·Σ|q||k|, ALiBi's term,
// the mask's value) and in xabs that of q·k·scale alone, before the cap.
HARNESS_LOOP static void reference_scores(const problem *g, int64_t b, int64_t h, int64_t i, int64_t lq,
                                          int64_t lk, double *score, double *dcap, double *sabs,
                                          double *xabs, double *max, int *nan_row) {
    const fa_problem *p = &g->p;
    const fa_shape *s = &p->shape;
    const int64_t hk = h / (s->q_heads / s->kv_heads);
    const double scale = isnan(p->scale) ? 1.0 / sqrt((double)s->head_dim_qk) : (double)p->scale;
    const int64_t qrow = query_row(p, p->q_strides, b, h, i);
    double m = -INFINITY;
    *nan_row = 0;  // a seen score is NaN or +inf (the header's non-finite semantics)
    for (int64_t j = 0; j < lk; j++) {
        score[j] = -INFINITY;
        if (dcap) dcap[j] = 0, sabs[j] = 0, xabs[j] = 0;
        if (!visible(p, lq, lk, i, j)) continue;
        if (p->block_mask.data) {
            const fa_block_mask *bm = &p->block_mask;
            if (!bm->data[b * bm->batch + h * bm->head + (i / bm->block_q) * bm->qblock +
                          (j / bm->block_k) * bm->kblock])
                continue;
        }
        // (A descriptor without a mask may carry any mask strides: the library never reads
        // them, so neither does this reference.)
        const int64_t moff = p->mask.kind == FA_MASK_NONE ? 0
                             : b * p->mask.batch + h * p->mask.head + i * p->mask.query + j * p->mask.key;
        if (p->mask.kind == FA_MASK_BOOL && !((const uint8_t *)p->mask.data)[moff]) continue;
        if (p->mask.kind == FA_MASK_ADDITIVE && ((const float *)p->mask.data)[moff] == -INFINITY)
            continue;  // −inf masks, whatever the score
        const int64_t krow = key_row(p, p->k_strides, b, hk, j);
        double dot = 0, dot_abs = 0;
        for (int64_t d = 0; d < s->head_dim_qk; d++) {
            const double t = (double)load(p->q, p->q_dtype, qrow + d) * (double)load(p->k, p->k_dtype, krow + d);
            dot += t;
            dot_abs += fabs(t);
        }
        double x = dot * scale;
        if (x == -INFINITY) continue;  // hidden, before any modifier (the header's semantics)
        double cap = 1;
        if (p->softcap > 0) {
            const double t = tanh(x / p->softcap);
            x = p->softcap * t;
            cap = 1 - t * t;
        }
        const double base = x;
        if (p->alibi_slopes) x -= (double)p->alibi_slopes[h] * fabs((double)(i + diagonal_offset(p, lq, lk) - j));
        if (p->mask.kind == FA_MASK_ADDITIVE) x += (double)((const float *)p->mask.data)[moff];
        if (dcap) {
            dcap[j] = cap;
            sabs[j] = dot_abs * fabs(scale) * cap + fabs(base) + fabs(x - base) + fabs(x);
            xabs[j] = dot_abs * fabs(scale);
        }
        score[j] = x;
        if (isnan(x) || x == INFINITY) *nan_row = 1;
        if (x > m) m = x;
    }
    *max = m;
}

HARNESS_LOOP static void reference_forward(const problem *g, double *o_out, double *lse_out, int64_t b,
                              int64_t h, int64_t i, int64_t lq, int64_t lk) {
    const fa_problem *p = &g->p;
    const fa_shape *s = &p->shape;
    const int64_t hk = h / (s->q_heads / s->kv_heads);
    double m;
    int nan_row;
    double *score = malloc(sizeof(double) * (size_t)(lk ? lk : 1));
    reference_scores(g, b, h, i, lq, lk, score, NULL, NULL, NULL, &m, &nan_row);
    for (int64_t d = 0; d < s->head_dim_v; d++) o_out[d] = nan_row ? NAN : 0;
    if (nan_row) {
        *lse_out = NAN;
        free(score);
        return;
    }
    if (m == -INFINITY) {
        *lse_out = -INFINITY;
        free(score);
        return;
    }
    double sum = 0;
    for (int64_t j = 0; j < lk; j++) {
        if (score[j] == -INFINITY) continue;
        const double w = exp(score[j] - m);
        sum += w;
        const int64_t vrow = key_row(p, p->v_strides, b, hk, j);
        for (int64_t d = 0; d < s->head_dim_v; d++) o_out[d] += w * (double)load(p->v, p->v_dtype, vrow + d);
    }
    for (int64_t d = 0; d < s->head_dim_v; d++) o_out[d] /= sum;
    *lse_out = m + log(sum);
    free(score);
}

// How many units u of the rounding scale reference_backward gives a gradient element may
// separate a correct fp32 gradient from the float64 one: the largest seen, over 520,000
// fuzzed backward and naive backward calls, was 1.3 (a dV element); 32 leaves room for sums
// the fuzzer has not yet drawn, and is still a millionth of what a dropped key or a wrong
// row costs.
#define GRAD_ROUNDINGS 32.0

// The float64 backward from the same definitions (dS = P ∘ (dP − D)·cap′ with D = Σ_j P·dP,
// dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO), into arrays laid out as the gradient
// buffers (element offsets), together with each element's rounding scale: the sum of the
// absolute values an fp32 evaluation rounds on its way to that element, so that a correct
// fp32 backward, whatever order it sums in, is within a small multiple of u = 2⁻²⁴ of it
// (GRAD_ROUNDINGS, at the check). Where a row sees few keys, P is near 1 and dP near D, and
// dS = P·(dP − D) is a difference of nearly equal terms: its error is that of dP and D,
// u·P·(Σ|dO||V| + Σ_j P·Σ|dO||V|), not a fraction of the result. P's relative error is u·r_j
// with r_j = sabs_j + max sabs + log(Lk) + 1 (its score's roundings and the log-sum-exp's,
// through exp); D reads the stored O, itself off by u·r·|V| (and by its rounding to half
// precision, where O is stored so); and a soft cap's derivative 1 − tanh² carries an
// absolute error of a few u (cancellation near |tanh| = 1) plus what its argument's rounding
// moves it, up to 1 where the cap is smaller than that rounding (a cap of 1e-30 takes the
// derivative from 1 to 0 for a score of 1e-8 that float64 finds to be 0). A wrong index, a
// lost block or a misplaced mask is off by the gradient's own size instead.
HARNESS_LOOP static void reference_backward(const problem *g, double *dq, double *dk, double *dv,
                                            double *eq, double *ek, double *ev) {
    const fa_problem *p = &g->p;
    const fa_shape *s = &p->shape;
    const double scale = isnan(p->scale) ? 1.0 / sqrt((double)s->head_dim_qk) : (double)p->scale;
    const double vmax = 2.0;  // |V| ≤ 2 (make_problem)
    // O stored in half precision: its rounding (2⁻⁹ or 2⁻¹² relative, a unit for ties), in u.
    const double o_rounding = p->o_dtype == FA_DTYPE_BF16 ? 0x1p16 : p->o_dtype == FA_DTYPE_F16 ? 0x1p13 : 0;
    for (int64_t b = 0; b < s->batch; b++) {
        const int64_t lq = q_count(p, b), lk = k_count(p, b);
        double *score = malloc(sizeof(double) * (size_t)(lk ? lk : 1) * 7);
        double *dcap = score + lk, *sabs = dcap + lk, *xabs = sabs + lk, *dp = xabs + lk,
               *abs_dp = dp + lk, *pw = abs_dp + lk;
        for (int64_t h = 0; h < s->q_heads; h++) {
            const int64_t hk = h / (s->q_heads / s->kv_heads);
            for (int64_t i = 0; i < lq; i++) {
                double m;
                int nan_row;
                reference_scores(g, b, h, i, lq, lk, score, dcap, sabs, xabs, &m, &nan_row);
                if (nan_row || m == -INFINITY) continue;  // no key seen: no gradient
                const int64_t qrow = query_row(p, p->q_strides, b, h, i);
                const int64_t orow = query_row(p, p->dout_strides, b, h, i);
                const int64_t dqrow = query_row(p, p->dq_strides, b, h, i);
                double sum = 0, dsum = 0, abs_d = 0, abs_do = 0, lse_r = log((double)(lk > 1 ? lk : 1)) + 1;
                for (int64_t j = 0; j < lk; j++) {
                    if (score[j] == -INFINITY) continue;
                    sum += exp(score[j] - m);
                    lse_r = fmax(lse_r, sabs[j] + log((double)lk) + 1);
                }
                for (int64_t c = 0; c < s->head_dim_v; c++) abs_do += fabs((double)load(p->dout, p->o_dtype, orow + c));
                for (int64_t j = 0; j < lk; j++) {
                    pw[j] = score[j] == -INFINITY ? 0 : exp(score[j] - m) / sum;
                    dp[j] = abs_dp[j] = 0;
                    if (pw[j] == 0) continue;
                    const int64_t vrow = key_row(p, p->v_strides, b, hk, j);
                    for (int64_t c = 0; c < s->head_dim_v; c++) {
                        const double x = (double)load(p->dout, p->o_dtype, orow + c) *
                                         (double)load(p->v, p->v_dtype, vrow + c);
                        dp[j] += x;
                        abs_dp[j] += fabs(x);
                    }
                    dsum += pw[j] * dp[j];
                    abs_d += pw[j] * abs_dp[j];
                }
                abs_d += abs_do * vmax * (lse_r + o_rounding);  // D from the stored O
                for (int64_t j = 0; j < lk; j++) {
                    if (pw[j] == 0) continue;
                    const double r = sabs[j] + lse_r;  // P's relative error, in units of u
                    const double gap = dp[j] - dsum;
                    const double ds = pw[j] * gap * dcap[j];
                    // Under a soft cap c the derivative moves by up to (the score's rounding)/c,
                    // 4·u·xabs/c, and by at most 1: a cap far below the score's rounding leaves
                    // the gradient through it to the rounding, as no fp32 backward can help.
                    const double cap_moves = p->softcap > 0
                        ? 8.0 + fmin(0x1p24 / GRAD_ROUNDINGS, 4.0 * xabs[j] / (double)p->softcap)
                        : 0.0;
                    const double ds_err = pw[j] * (dcap[j] * (abs_dp[j] + abs_d + r * fabs(gap)) +
                                                   cap_moves * fabs(gap));
                    const int64_t krow = key_row(p, p->k_strides, b, hk, j);
                    const int64_t dv_row = key_row(p, p->dv_strides, b, hk, j);
                    const int64_t dk_row = key_row(p, p->dk_strides, b, hk, j);
                    for (int64_t c = 0; c < s->head_dim_v; c++) {
                        const double o = (double)load(p->dout, p->o_dtype, orow + c);
                        dv[dv_row + c] += pw[j] * o;
                        ev[dv_row + c] += pw[j] * fabs(o) * (1.0 + r);
                    }
                    for (int64_t d = 0; d < s->head_dim_qk; d++) {
                        const double qd = (double)load(p->q, p->q_dtype, qrow + d);
                        const double kd = (double)load(p->k, p->k_dtype, krow + d);
                        dq[dqrow + d] += scale * ds * kd;
                        eq[dqrow + d] += fabs(scale) * (fabs(ds) + ds_err) * fabs(kd);
                        dk[dk_row + d] += scale * ds * qd;
                        ek[dk_row + d] += fabs(scale) * (fabs(ds) + ds_err) * fabs(qd);
                    }
                }
            }
        }
        free(score);
    }
}


// The tolerances. fp32 arithmetic over scores bounded by smax: each score's rounding error
// is about smax·2⁻²³ (a few ulps of the largest term), which moves a softmax weight by the
// same relative amount, so O moves by |V|max·smax·2⁻²⁰ with a factor 8 of headroom and the
// LSE by smax·2⁻²⁰. bf16 dot products round P to bf16 (relative 2⁻⁹ per weight): O within
// |V|max·2⁻⁸. A half output adds one rounding of O (half an ulp: 2⁻⁹ relative for bf16,
// 2⁻¹² for fp16, on |O| ≤ 2) — plus one more ulp for the two paths rounding different fp32
// values either side of a tie.
static void forward_tolerance(const problem *g, double *o_tol, double *lse_tol) {
    const fa_problem *p = &g->p;
    const double vmax = 2.0;
    *o_tol = 2e-5 + vmax * g->smax * 0x1p-20;
    *lse_tol = 2e-5 + g->smax * 0x1p-20;
    if (p->q_dtype == FA_DTYPE_BF16 && p->k_dtype == FA_DTYPE_BF16 && p->v_dtype == FA_DTYPE_BF16)
        *o_tol += vmax * 0x1p-8;
    if (p->o_dtype == FA_DTYPE_BF16) *o_tol += 3 * vmax * 0x1p-8;
    if (p->o_dtype == FA_DTYPE_F16) *o_tol += 3 * vmax * 0x1p-11;
}

// Marks which bytes of a buffer are elements of a [d0, d1, d2, d3] tensor.
HARNESS_LOOP static uint8_t *owned_bytes(const buffer *b, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                            fa_strides st, int packed, size_t es) {
    uint8_t *own = calloc(b->bytes ? b->bytes : 1, 1);
    for (int64_t x = 0; x < (packed ? 1 : d0); x++)
        for (int64_t y = 0; y < d1; y++)
            for (int64_t z = 0; z < d2; z++)
                for (int64_t w = 0; w < d3; w++) {
                    const int64_t off = (x * st.batch + y * st.head + z * st.seq + w) * (int64_t)es;
                    memset(own + off, 1, es);
                }
    return own;
}
HARNESS_LOOP static void check_gaps(const buffer *b, const uint8_t *own, const char *name) {
    const uint8_t *data = b->data;
    for (size_t i = 0; i < b->bytes; i++)
        if (!own[i] && data[i] != SENTINEL) FINDING("%s: byte %zu between elements was written", name, i);
}

HARNESS_LOOP static void check_forward(problem *g, int naive) {
    fa_problem *p = &g->p;
    const fa_shape *s = &p->shape;
    poison(&g->o);
    if (g->lse.data) poison(&g->lse);
    const fa_status st = naive ? fa_naive_forward(p) : fa_forward(p);
    if (st != FA_OK) {
        if (!untouched(&g->o) || (g->lse.data && !untouched(&g->lse)))
            FINDING("status %d, but an output was written", (int)st);
        return;
    }
    const int packed_q = p->cu_seqlens_q != NULL;
    uint8_t *own_o = owned_bytes(&g->o, s->batch, s->q_heads, s->q_len, s->head_dim_v, p->o_strides,
                                 packed_q, fa_dtype_size(p->o_dtype));
    check_gaps(&g->o, own_o, "o");
    free(own_o);
    if (g->lse.data) {
        uint8_t *own_l = owned_bytes(&g->lse, s->batch, s->q_heads, s->q_len, 1, p->lse_strides, packed_q, 4);
        check_gaps(&g->lse, own_l, "lse");
        free(own_l);
    }
    // With finite options and one NaN or infinity among the values, the non-finite semantics
    // are checked too: a row is NaN where the reference's is (a NaN or +inf score), an output
    // element non-finite where the reference's is; a NaN in V may also reach a row through a
    // masked key that a tile reads at weight 0 (the header's caveat), so those are let pass.
    const int nonfinite = !g->finite;
    if (nonfinite && !(g->options_finite && g->bad_input)) return;

    double o_tol, lse_tol;
    forward_tolerance(g, &o_tol, &lse_tol);
    double *ref = malloc(sizeof(double) * (size_t)s->head_dim_v);
    for (int64_t b = 0; b < s->batch; b++) {
        const int64_t lq = q_count(p, b), lk = k_count(p, b);
        for (int64_t h = 0; h < s->q_heads; h++)
            for (int64_t i = 0; i < lq; i++) {
                double lse;
                reference_forward(g, ref, &lse, b, h, i, lq, lk);
                const int64_t orow = query_row(p, p->o_strides, b, h, i);
                for (int64_t d = 0; d < s->head_dim_v; d++) {
                    const double got = load(g->o.data, p->o_dtype, orow + d);
                    if (nonfinite && !isfinite(ref[d])) {
                        if (isfinite(got))
                            FINDING("%s o[b=%lld h=%lld i=%lld d=%lld] = %.9g, reference %g",
                                    naive ? "naive" : "flash", (long long)b, (long long)h,
                                    (long long)i, (long long)d, got, ref[d]);
                        continue;
                    }
                    if (nonfinite && g->bad_input == 3 && !isfinite(got)) continue;
                    if (!(fabs(got - ref[d]) <= o_tol))
                        FINDING("%s o[b=%lld h=%lld i=%lld d=%lld] = %.9g, reference %.9g (tolerance %.3g)",
                                naive ? "naive" : "flash", (long long)b, (long long)h, (long long)i,
                                (long long)d, got, ref[d], o_tol);
                }
                if (g->lse.data) {
                    const double got = ((const float *)g->lse.data)[query_row(p, p->lse_strides, b, h, i)];
                    const int both_empty = lse == -INFINITY && got == -INFINITY;
                    const int both_nan = isnan(lse) && isnan(got);
                    if (!both_empty && !both_nan && !(fabs(got - lse) <= lse_tol * (1 + fabs(lse))))
                        FINDING("%s lse[b=%lld h=%lld i=%lld] = %.9g, reference %.9g",
                                naive ? "naive" : "flash", (long long)b, (long long)h, (long long)i, got, lse);
                }
            }
    }
    free(ref);
}

// ---- entry points ----

static void trace(const problem *g) {
    const fa_problem *p = &g->p;
    if (getenv("FUZZ_TRACE")) {
        const fa_shape *s = &p->shape;
        fprintf(stderr, "forward B %lld Hq %lld Hkv %lld Lq %lld Lk %lld D %lld/%lld dtypes %d %d %d %d causal %d window %lld %lld softcap %g scale %g\n",
                (long long)s->batch, (long long)s->q_heads, (long long)s->kv_heads, (long long)s->q_len,
                (long long)s->kv_len, (long long)s->head_dim_qk, (long long)s->head_dim_v, (int)p->q_dtype,
                (int)p->k_dtype, (int)p->v_dtype, (int)p->o_dtype, (int)p->causal, (long long)p->window_left,
                (long long)p->window_right, (double)p->softcap, (double)p->scale);
        fprintf(stderr, "  positions %d q %lld kv %lld; alibi %p\n", (int)p->positions.enabled,
                (long long)p->positions.q_start, (long long)p->positions.kv_start, (const void *)p->alibi_slopes);
        fprintf(stderr, "  mask kind %d strides %lld %lld %lld %lld; block mask %p %lld×%lld; cu_q %p cu_k %p q_lengths %p kv_lengths %p pages %lld split %lld threads %d isa %d huge %d\n",
                (int)p->mask.kind, (long long)p->mask.batch, (long long)p->mask.head, (long long)p->mask.query,
                (long long)p->mask.key, (const void *)p->block_mask.data, (long long)p->block_mask.block_q,
                (long long)p->block_mask.block_k, (const void *)p->cu_seqlens_q, (const void *)p->cu_seqlens_k,
                (const void *)p->q_lengths, (const void *)p->kv_lengths, (long long)p->kv_pages.page_size,
                (long long)p->kv_split_size, (int)p->num_threads, (int)p->isa, huge);
        fprintf(stderr, "  strides q %lld %lld %lld k %lld %lld %lld v %lld %lld %lld o %lld %lld %lld; pages %lld of %lld, csr %p table %p max %lld\n",
                (long long)p->q_strides.batch, (long long)p->q_strides.head, (long long)p->q_strides.seq,
                (long long)p->k_strides.batch, (long long)p->k_strides.head, (long long)p->k_strides.seq,
                (long long)p->v_strides.batch, (long long)p->v_strides.head, (long long)p->v_strides.seq,
                (long long)p->o_strides.batch, (long long)p->o_strides.head, (long long)p->o_strides.seq,
                (long long)p->kv_pages.page_size, (long long)p->kv_pages.num_pages,
                (const void *)p->kv_pages.indptr, (const void *)p->kv_pages.block_table,
                (long long)p->kv_pages.max_pages);
        fprintf(stderr, "  gradient strides dout %lld %lld %lld dq %lld %lld %lld dk %lld %lld %lld dv %lld %lld %lld\n",
                (long long)p->dout_strides.batch, (long long)p->dout_strides.head, (long long)p->dout_strides.seq,
                (long long)p->dq_strides.batch, (long long)p->dq_strides.head, (long long)p->dq_strides.seq,
                (long long)p->dk_strides.batch, (long long)p->dk_strides.head, (long long)p->dk_strides.seq,
                (long long)p->dv_strides.batch, (long long)p->dv_strides.head, (long long)p->dv_strides.seq);
        if (p->cu_seqlens_k) {
            fprintf(stderr, "  cu_k");
            for (int64_t b = 0; b <= p->shape.batch; b++) fprintf(stderr, " %d", p->cu_seqlens_k[b]);
            fprintf(stderr, "\n");
        }
    }
}


static void run_forward(input *in) {
    problem g;
    huge = 0;
    if (!make_problem(in, &g, 0)) {
        free_problem(&g);
        return;
    }
    fa_problem *p = &g.p;
    trace(&g);
    fa_diagnostic diag;
    const fa_status checked = fa_check(p, &diag);
    if (checked != diag.status) FINDING("fa_check returned %d, its diagnostic says %d", (int)checked, (int)diag.status);
    if (checked != FA_OK && diag.message[0] == 0) FINDING("status %d without a message", (int)checked);
    size_t ws = 0;
    const fa_status wst = fa_workspace_bytes(p, &ws);
    fa_kernel_info info;
    (void)fa_kernel_info_for(p, &info);
    if (huge) {
        free_problem(&g);
        return;
    }
    if (wst == FA_OK && take8(in) % 4 == 0 && ws <= BUDGET_BYTES) {
        const size_t claim = take8(in) % 4 == 0 && ws ? ws - 1 : ws;
        g.workspace = make_buffer(SPAN_OK, (int64_t)(claim ? claim : 1), 1);
        p->workspace = g.workspace.data;
        p->workspace_bytes = claim;
    }
    check_forward(&g, 0);
    if (checked == FA_OK && take8(in) % 2 == 0) {
        p->workspace = NULL, p->workspace_bytes = 0;
        check_forward(&g, 1);
    }
    free_problem(&g);
}

// Backward: a forward writes O and LSE, then the flash backward is compared with the naive
// one (relative to the largest gradient: |a − b| ≤ 2⁻¹⁰·max|b| + 10⁻⁵, plus two roundings
// of a half gradient).
static void run_backward(input *in) {
    problem g;
    huge = 0;
    if (!make_problem(in, &g, 1)) {
        free_problem(&g);
        return;
    }
    fa_problem *p = &g.p;
    trace(&g);
    fa_diagnostic diag;
    const fa_status checked = fa_check_backward(p, &diag);
    size_t ws = 0;
    (void)fa_backward_workspace_bytes(p, &ws);
    if (huge || checked != FA_OK || !g.lse.data || p->o == p->q) {
        if (!huge && checked != FA_OK) {
            poison(&g.dq), poison(&g.dk), poison(&g.dv);
            if (fa_backward(p) == FA_OK) FINDING("fa_backward accepted what fa_check_backward refused");
            if (!untouched(&g.dq) || !untouched(&g.dk) || !untouched(&g.dv))
                FINDING("a refused backward wrote a gradient");
        }
        free_problem(&g);
        return;
    }
    if (fa_forward(p) != FA_OK) {
        free_problem(&g);
        return;
    }
    poison(&g.dq), poison(&g.dk), poison(&g.dv);
    const fa_status st = fa_backward(p);
    if (st != FA_OK) {
        if (!untouched(&g.dq) || !untouched(&g.dk) || !untouched(&g.dv))
            FINDING("backward status %d, but a gradient was written", (int)st);
        free_problem(&g);
        return;
    }
    const fa_shape *s = &p->shape;
    struct { buffer *got, *ref; void **slot; fa_dtype t; fa_strides st; int64_t h, l, d; int packed; const char *name; } gr[] = {
        {&g.dq, &g.dq_ref, &p->dq, p->q_dtype, p->dq_strides, s->q_heads, s->q_len, s->head_dim_qk, p->cu_seqlens_q != NULL, "dq"},
        {&g.dk, &g.dk_ref, &p->dk, p->k_dtype, p->dk_strides, s->kv_heads, s->kv_len, s->head_dim_qk, p->cu_seqlens_k != NULL, "dk"},
        {&g.dv, &g.dv_ref, &p->dv, p->v_dtype, p->dv_strides, s->kv_heads, s->kv_len, s->head_dim_v, p->cu_seqlens_k != NULL, "dv"},
    };
    for (int t = 0; t < 3; t++) {
        uint8_t *own = owned_bytes(gr[t].got, s->batch, gr[t].h, gr[t].l, gr[t].d, gr[t].st, gr[t].packed,
                                   fa_dtype_size(gr[t].t));
        check_gaps(gr[t].got, own, gr[t].name);
        free(own);
    }
    // Scores so large that their fp32 rounding (smax·2⁻²³) moves a softmax weight by a factor
    // e^0.5 or more (ALiBi over explicit positions 2⁴⁰ apart, say) leave P, and so every
    // gradient, to the rounding: no two correct fp32 implementations need agree. The checks
    // above (what was written, and where) still hold.
    if (!g.finite || g.smax > 0x1p22f) {
        free_problem(&g);
        return;
    }
    p->dq = g.dq_ref.data, p->dk = g.dk_ref.data, p->dv = g.dv_ref.data;
    p->workspace = NULL, p->workspace_bytes = 0;
    if (fa_naive_backward(p) != FA_OK) FINDING("the naive backward refused what the flash backward accepted");
    double *ref[3], *err[3];
    for (int t = 0; t < 3; t++) {
        const size_t n = gr[t].got->bytes / dtype_bytes(gr[t].t);
        ref[t] = calloc(n ? n : 1, sizeof(double));
        err[t] = calloc(n ? n : 1, sizeof(double));
    }
    reference_backward(&g, ref[0], ref[1], ref[2], err[0], err[1], err[2]);
    for (int t = 0; t < 3; t++) {
        const int64_t n = (int64_t)(gr[t].got->bytes / dtype_bytes(gr[t].t));
        uint8_t *own = owned_bytes(gr[t].got, s->batch, gr[t].h, gr[t].l, gr[t].d, gr[t].st, gr[t].packed,
                                   fa_dtype_size(gr[t].t));
        const size_t es = dtype_bytes(gr[t].t);
        // A gradient stored in half precision: one rounding of the fp32 value (half an ulp,
        // 2⁻⁹ relative for bf16, 2⁻¹² for fp16; a unit for ties either side), and fp16's
        // subnormal spacing 2⁻²⁴ near 0.
        const double half = gr[t].t == FA_DTYPE_BF16 ? 0x1p-8 : gr[t].t == FA_DTYPE_F16 ? 0x1p-11 : 0;
        const double floor_abs = gr[t].t == FA_DTYPE_F16 ? 0x1p-23 : 0x1p-40;
        // Q, K, V all bf16: the backward may run on bf16 dot products with P and dS rounded
        // to bf16 (README, Half precision), each gradient within 2⁻⁸ of its sum of absolute
        // products. That sum is at most (Lq·group + 1)·8·Dv·max(|scale|, 1) here (|dO| ≤ 1,
        // |Q|, |K|, |V| ≤ 2, Σ_j P_ij = 1, P_ij ≤ 1); HalfPrecisionTests holds that path to
        // the per-element bound, this check only to the loose one.
        double bf16dot = 0;
        if (p->q_dtype == FA_DTYPE_BF16 && p->k_dtype == FA_DTYPE_BF16 && p->v_dtype == FA_DTYPE_BF16) {
            const double sc = isnan(p->scale) ? 1.0 : fmax(fabs((double)p->scale), 1.0);
            bf16dot = 0x1p-8 * (double)(s->q_len * (s->q_heads / s->kv_heads) + 1) * 8.0 * (double)s->head_dim_v * sc;
        }
        for (int64_t i = 0; i < n; i++) {
            if (!own[i * (int64_t)es]) continue;
            const double tol = GRAD_ROUNDINGS * 0x1p-24 * err[t][i] + half * fabs(ref[t][i]) + floor_abs + bf16dot;
            const double a = load(gr[t].got->data, gr[t].t, i), b = load(gr[t].ref->data, gr[t].t, i);
            if (getenv("FUZZ_GRAD_RATIO") && err[t][i] > 0 && half == 0 && bf16dot == 0) {
                static double worst = 0;
                const double q = fmax(fabs(a - ref[t][i]), fabs(b - ref[t][i])) / (0x1p-24 * err[t][i]);
                if (q > worst) {
                    worst = q;
                    fprintf(stderr, "grad ratio %s %.3g (flash %.9g naive %.9g ref %.9g scale %.3g)\n",
                            gr[t].name, q, a, b, ref[t][i], err[t][i]);
                }
            }
            if (!(fabs(a - ref[t][i]) <= tol))
                FINDING("%s element %lld: flash %.9g, float64 %.9g (tolerance %.3g; naive %.9g)", gr[t].name,
                        (long long)i, a, ref[t][i], tol, b);
            if (!(fabs(b - ref[t][i]) <= tol))
                FINDING("%s element %lld: naive %.9g, float64 %.9g (tolerance %.3g; flash %.9g)", gr[t].name,
                        (long long)i, b, ref[t][i], tol, a);
        }
        free(own);
        free(ref[t]);
        free(err[t]);
    }
    free_problem(&g);
}

// Merging states, against a float64 merge of the same states.
static void run_merge(input *in) {
    fa_state_shape sh = {pick_count(in, 3), pick_count(in, 3), pick_count(in, 9), pick_count(in, 20)};
    const int64_t count = pick_count(in, 4);
    // Spans decide the buffers (invalid extents or strides: one element; past the budget: the
    // call is skipped); the float64 merge runs when the whole batch is small.
    const int sane = sh.batch >= 1 && sh.heads >= 1 && sh.len >= 1 && sh.head_dim >= 1 &&
                     sh.batch <= 8 && sh.heads <= 256 && sh.len <= 256 && sh.head_dim <= 256;
    const int64_t n_states = count >= 1 && count <= 8 ? count : 1;
    fa_attention_state states[9];
    buffer bo[9] = {{0}}, bl[9] = {{0}};
    int spans_ok = 1;
    rng r = {take64(in)};
    const int in_place = take8(in) % 3 == 0;
    huge = count > 8;  // more states than the array holds: a valid count the call would read
    for (int64_t i = 0; i <= n_states; i++) {
        fa_strides os = pick_strides(in, sh.heads, sh.len, sh.head_dim), ls = pick_strides(in, sh.heads, sh.len, 1);
        int64_t eo[4] = {sh.batch, sh.heads, sh.len, sh.head_dim}, so[4] = {os.batch, os.head, os.seq, 1};
        int64_t el[4] = {sh.batch, sh.heads, sh.len, 1}, sl[4] = {ls.batch, ls.head, ls.seq, 1};
        int64_t no, nl;
        const span_kind ko = span_of(eo, so, &no);
        const span_kind kl = span_of(el, sl, &nl);
        if (ko != SPAN_OK || kl != SPAN_OK) spans_ok = 0;
        bo[i] = make_buffer(ko, no, 4);
        bl[i] = make_buffer(kl, nl, 4);
        fill(&bo[i], FA_DTYPE_F32, &r, -2, 2);
        fill(&bl[i], FA_DTYPE_F32, &r, -20, 20);
        float *l = bl[i].data;
        for (size_t e = 0; e < bl[i].bytes / 4; e++)
            if (next64(&r) % 4 == 0) l[e] = -INFINITY;
        states[i] = (fa_attention_state){bo[i].data, os, bl[i].data, ls};
    }
    if (take8(in) % 64 == 0) states[0].o = NULL;
    const fa_attention_state out = in_place ? states[0] : states[n_states];
    // The expected merge, in float64, before anything is written.
    const int64_t rows = sane ? sh.batch * sh.heads * sh.len : 0;
    double *want_o = calloc((size_t)(rows * (sane ? sh.head_dim : 1)) + 1, sizeof(double));
    double *want_l = calloc((size_t)rows + 1, sizeof(double));
    const int valid = sane && count >= 1 && spans_ok && !huge && states[0].o;
    if (valid)
        for (int64_t b = 0; b < sh.batch; b++)
            for (int64_t h = 0; h < sh.heads; h++)
                for (int64_t t = 0; t < sh.len; t++) {
                    const int64_t row = (b * sh.heads + h) * sh.len + t;
                    double m = -INFINITY;
                    for (int64_t i = 0; i < n_states; i++) {
                        const fa_strides ls = states[i].lse_strides;
                        m = fmax(m, states[i].lse[b * ls.batch + h * ls.head + t * ls.seq]);
                    }
                    if (m == -INFINITY) {
                        want_l[row] = -INFINITY;
                        continue;
                    }
                    double sum = 0;
                    for (int64_t i = 0; i < n_states; i++) {
                        const fa_strides ls = states[i].lse_strides;
                        sum += exp(states[i].lse[b * ls.batch + h * ls.head + t * ls.seq] - m);
                    }
                    want_l[row] = m + log(sum);
                    for (int64_t i = 0; i < n_states; i++) {
                        const fa_strides ls = states[i].lse_strides, os = states[i].o_strides;
                        const double l = states[i].lse[b * ls.batch + h * ls.head + t * ls.seq];
                        if (l == -INFINITY) continue;
                        const double w = exp(l - want_l[row]);
                        for (int64_t d = 0; d < sh.head_dim; d++)
                            want_o[row * sh.head_dim + d] += w * states[i].o[b * os.batch + h * os.head + t * os.seq + d];
                    }
                }
    if (getenv("FUZZ_TRACE")) {
        fprintf(stderr, "merge shape %lld %lld %lld %lld count %lld in_place %d huge %d\n", (long long)sh.batch,
                (long long)sh.heads, (long long)sh.len, (long long)sh.head_dim, (long long)count, in_place, huge);
        for (int64_t i = 0; i <= n_states; i++)
            fprintf(stderr, "  state %lld o %lld %lld %lld (%zu B) lse %lld %lld %lld (%zu B)\n", (long long)i,
                    (long long)states[i].o_strides.batch, (long long)states[i].o_strides.head,
                    (long long)states[i].o_strides.seq, bo[i].bytes, (long long)states[i].lse_strides.batch,
                    (long long)states[i].lse_strides.head, (long long)states[i].lse_strides.seq, bl[i].bytes);
    }
    fa_diagnostic diag;
    // A state past the budget has a one-element buffer: the call would be valid, so skip it.
    const fa_status st = huge ? FA_ERR_INVALID_EXTENT : fa_merge_states(&sh, states, count, &out, &diag);
    if (st == FA_OK && valid)
        for (int64_t b = 0; b < sh.batch; b++)
            for (int64_t h = 0; h < sh.heads; h++)
                for (int64_t t = 0; t < sh.len; t++) {
                    const int64_t row = (b * sh.heads + h) * sh.len + t;
                    const float got_l = out.lse[b * out.lse_strides.batch + h * out.lse_strides.head + t * out.lse_strides.seq];
                    if (!(got_l == want_l[row] || fabs(got_l - want_l[row]) <= 1e-5 * (1 + fabs(want_l[row]))))
                        FINDING("merge lse %.9g, reference %.9g", got_l, want_l[row]);
                    for (int64_t d = 0; d < sh.head_dim; d++) {
                        const float got = out.o[b * out.o_strides.batch + h * out.o_strides.head + t * out.o_strides.seq + d];
                        if (!(fabs(got - want_o[row * sh.head_dim + d]) <= 2e-5 * n_states))
                            FINDING("merge o %.9g, reference %.9g", got, want_o[row * sh.head_dim + d]);
                    }
                }
    free(want_o), free(want_l);
    for (int64_t i = 0; i <= n_states; i++) free(bo[i].data), free(bl[i].data);
}

// fa_convert against the one-element conversions (a copy between equal types), bit for bit.
static void run_convert(input *in) {
    const fa_dtype from = pick_dtype(in), to = pick_dtype(in);
    const int64_t n = pick_count(in, 100);
    const int sane = n >= 0 && n <= 4096 && fa_dtype_size(from) && fa_dtype_size(to);
    buffer src = make_buffer(sane ? SPAN_OK : SPAN_INVALID, sane ? n : 0, dtype_bytes(from));
    buffer dst = make_buffer(sane ? SPAN_OK : SPAN_INVALID, sane ? n : 0, dtype_bytes(to));
    rng r = {take64(in)};
    uint8_t *bytes = src.data;
    for (size_t i = 0; i < src.bytes; i++) bytes[i] = (uint8_t)next64(&r);
    poison(&dst);
    if (n > 4096 && fa_dtype_size(from) && fa_dtype_size(to)) {  // valid, past the budget
        free(src.data), free(dst.data);
        return;
    }
    const fa_status st = fa_convert(from, src.data, to, take8(in) % 64 ? dst.data : NULL, n);
    if (st == FA_OK && sane)
        for (int64_t i = 0; i < n; i++) {
            const float x = load(src.data, from, i);
            uint8_t want[4];
            if (from == to)  // a copy, bit for bit (signalling NaNs included)
                memcpy(want, (uint8_t *)src.data + i * (int64_t)dtype_bytes(to), fa_dtype_size(to));
            else
                store(want, to, 0, x);
            if (memcmp(want, (uint8_t *)dst.data + i * (int64_t)dtype_bytes(to), fa_dtype_size(to)) != 0)
                FINDING("fa_convert element %lld differs from the one-element conversion", (long long)i);
        }
    else if (st != FA_OK && !untouched(&dst))
        FINDING("fa_convert failed with %d but wrote", (int)st);
    free(src.data), free(dst.data);
}

static void run_queries(input *in) {
    fa_shape s = {pick_count(in, 4), pick_count(in, 4), pick_count(in, 4), pick_count(in, 40),
                  pick_count(in, 40), pick_count(in, 40), pick_count(in, 40)};
    const fa_argument arg = (fa_argument)pick_count(in, 40);
    const fa_strides st = pick_strides(in, s.q_heads, s.q_len, s.head_dim_qk);
    int64_t elements = -1;
    fa_diagnostic diag;
    (void)fa_tensor_elements(&s, arg, st, &elements, &diag);
    fa_problem p;
    fa_problem_init(&p);
    p.shape = s;
    size_t bytes;
    fa_kernel_info info;
    (void)fa_workspace_bytes(&p, &bytes);
    (void)fa_backward_workspace_bytes(&p, &bytes);
    (void)fa_kernel_info_for(&p, &info);
    (void)fa_status_message((fa_status)pick_count(in, 30));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    switch (take8(&in) % 8) {
    case 0: case 1: case 2: case 3: run_forward(&in); break;
    case 4: case 5: run_backward(&in); break;
    case 6: run_merge(&in); break;
    default: take8(&in) % 2 ? run_convert(&in) : run_queries(&in); break;
    }
    return 0;
}
