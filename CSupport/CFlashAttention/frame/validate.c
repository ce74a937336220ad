// validate.c — every descriptor check, one message per failure; defaults; the workspace size.
//
// Nothing in the library reads a pointer of the problem before fa_validate has accepted it.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "forward_plan.h"

/// Largest extent accepted: tile loops index rows and columns with int.
#define FA_MAX_EXTENT ((int64_t)INT32_MAX)

void fa_problem_init(fa_problem *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->scale = FA_SCALE_DEFAULT;
    p->causal = FA_CAUSAL_NONE;
    p->window_left = -1;
    p->window_right = -1;
}

fa_row_band fa_row_band_for(const fa_problem *p, int64_t batch) {
    fa_row_band b = {0};
    b.lk = fa_kv_len_of(p, batch);
    const int64_t off = fa_diagonal_offset(p, batch);  // the window's (bottom-right) offset
    if (p->causal != FA_CAUSAL_NONE) {
        b.has_hi = 1;
        b.c_hi = (p->causal == FA_CAUSAL_BOTTOM_RIGHT || p->positions.enabled ? off : 0) + 1;
    }
    if (p->window_right >= 0) {
        const int64_t c = off + p->window_right + 1;
        b.c_hi = b.has_hi && b.c_hi < c ? b.c_hi : c;
        b.has_hi = 1;
    }
    if (p->window_left >= 0) {
        b.has_lo = 1;
        b.c_lo = off - p->window_left;
    }
    return b;
}

fa_strides fa_strides_bhld(int64_t heads, int64_t len, int64_t dim) {
    return (fa_strides){.batch = heads * len * dim, .head = len * dim, .seq = dim};
}

fa_strides fa_strides_blhd(int64_t heads, int64_t len, int64_t dim) {
    return (fa_strides){.batch = len * heads * dim, .head = dim, .seq = heads * dim};
}

const char *fa_version(void) { return "0.1.0"; }

const char *fa_status_message(fa_status status) {
    switch (status) {
    case FA_OK: return "success";
    case FA_ERR_NULL_POINTER: return "a required pointer is NULL";
    case FA_ERR_INVALID_EXTENT: return "a shape extent is zero, negative or larger than 2^31-1";
    case FA_ERR_HEAD_GROUPING: return "q_heads is not a multiple of kv_heads";
    case FA_ERR_INVALID_STRIDE: return "strides are negative or make elements of a tensor overlap";
    case FA_ERR_OVERLAP: return "an output buffer overlaps an input or the other output";
    case FA_ERR_SIZE_OVERFLOW: return "a byte size does not fit in size_t";
    case FA_ERR_INVALID_SCALE: return "scale is infinite";
    case FA_ERR_INVALID_CAUSAL: return "causal is not a fa_causal value";
    case FA_ERR_INVALID_THREADS: return "num_threads is negative";
    case FA_ERR_WORKSPACE_TOO_SMALL: return "the workspace is smaller than fa_workspace_bytes";
    case FA_ERR_OUT_OF_MEMORY: return "an allocation failed";
    case FA_ERR_UNSUPPORTED_ISA: return "the requested kernel ISA is unknown or not supported by this CPU";
    case FA_ERR_INVALID_WINDOW: return "a sliding-window side is below -1 (-1 means unbounded)";
    case FA_ERR_INVALID_SOFTCAP: return "softcap is negative, infinite or NaN (0 turns it off)";
    case FA_ERR_INVALID_ALIBI: return "an ALiBi slope is infinite or NaN";
    case FA_ERR_INVALID_LENGTH: return "a per-batch length is negative or beyond its extent";
    case FA_ERR_INVALID_MASK: return "the mask's kind is unknown, its data NULL or its strides invalid";
    case FA_ERR_INVALID_BLOCK_MASK: return "the block mask's granularity is below 1 or its strides are invalid";
    case FA_ERR_INVALID_OFFSETS: return "packed-sequence offsets must start at 0, never decrease and end within the extent";
    case FA_ERR_INVALID_SPLIT: return "kv_split_size is negative (0 chooses automatically)";
    case FA_ERR_INVALID_DTYPE: return "an element type is not one of fa_dtype (f32, f16, bf16), or not supported in that combination";
    case FA_ERR_INVALID_PAGES: return "a paged K/V description is inconsistent: its form, an offset, a page index or a length";
    case FA_ERR_INVALID_ARGUMENT: return "an fa_argument selector names something the function does not take";
    }
    return "unknown status";
}

// Records a failure in `diag` (if any) and returns its status.
fa_status fa_fail(fa_diagnostic *diag, fa_status status, fa_argument arg, int64_t v0,
                  int64_t v1, int64_t v2, const char *fmt, ...) {
    if (diag) {
        diag->status = status;
        diag->argument = arg;
        diag->values[0] = v0;
        diag->values[1] = v1;
        diag->values[2] = v2;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->message, sizeof diag->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

/// One tensor as the checks see it: up to four (extent, stride) dimensions, the last contiguous.
typedef struct tensor_view {
    const char *name;
    fa_argument arg;
    const void *base;
    int64_t extent[4];
    int64_t stride[4];
    int rank;
    size_t elem_bytes;   ///< bytes per element (0: fp32)
    int64_t span;        ///< elements from base to one past the last element
    size_t span_bytes;   ///< the same in bytes
} tensor_view;

// Checks strides (non-negative; no two elements share an address) and computes the byte span.
// Non-overlap: sorted by stride, every dimension of extent > 1 must step over the whole span of
// the dimensions below it. This accepts [B,H,L,D], [B,L,H,D] and any other permutation or
// padding, and rejects strides smaller than the extents they step over.
static fa_status check_tensor(tensor_view *t, fa_diagnostic *diag) {
    for (int i = 0; i < t->rank; i++) {
        if (t->stride[i] < 0)
            return fa_fail(diag, FA_ERR_INVALID_STRIDE, t->arg, i, t->stride[i], 0,
                           "%s: stride of dimension %d is negative (%lld)", t->name, i,
                           (long long)t->stride[i]);
    }
    int order[4];
    int n = 0;
    for (int i = 0; i < t->rank; i++)
        if (t->extent[i] > 1) order[n++] = i;
    for (int a = 1; a < n; a++)  // insertion sort by stride (stable: inner dimensions first)
        for (int b = a; b > 0 && t->stride[order[b]] < t->stride[order[b - 1]]; b--) {
            int tmp = order[b];
            order[b] = order[b - 1];
            order[b - 1] = tmp;
        }
    int64_t span = 1;  // elements from the first to one past the last, over the dims so far
    for (int a = 0; a < n; a++) {
        const int i = order[a];
        if (t->stride[i] < span)
            return fa_fail(diag, FA_ERR_INVALID_STRIDE, t->arg, i, t->stride[i], span,
                           "%s: stride %lld of dimension %d is smaller than the %lld elements it "
                           "steps over",
                           t->name, (long long)t->stride[i], i, (long long)span);
        int64_t step;
        if (__builtin_mul_overflow(t->extent[i] - 1, t->stride[i], &step) ||
            __builtin_add_overflow(span, step, &span))
            return fa_fail(diag, FA_ERR_SIZE_OVERFLOW, t->arg, 0, 0, 0,
                           "%s: the element span overflows 64 bits", t->name);
    }
    size_t bytes;
    const size_t elem = t->elem_bytes ? t->elem_bytes : sizeof(float);
    if ((uint64_t)span > SIZE_MAX / elem || __builtin_mul_overflow((size_t)span, elem, &bytes) ||
        (uintptr_t)t->base > UINTPTR_MAX - bytes)
        return fa_fail(diag, FA_ERR_SIZE_OVERFLOW, t->arg, span, 0, 0,
                       "%s: %lld elements do not fit in the address space", t->name,
                       (long long)span);
    t->span = span;
    t->span_bytes = bytes;
    return FA_OK;
}

fa_status fa_check_strided(const char *name, fa_argument arg, const void *base,
                           const int64_t extent[4], const int64_t stride[4], size_t *span_bytes,
                           fa_diagnostic *diag) {
    tensor_view t = {0};
    t.name = name;
    t.arg = arg;
    t.base = base;
    t.rank = 4;
    memcpy(t.extent, extent, sizeof t.extent);
    memcpy(t.stride, stride, sizeof t.stride);
    const fa_status st = check_tensor(&t, diag);
    if (st == FA_OK && span_bytes) *span_bytes = t.span_bytes;
    return st;
}

static int ranges_overlap(const tensor_view *a, const tensor_view *b) {
    const uintptr_t a0 = (uintptr_t)a->base, a1 = a0 + a->span_bytes;
    const uintptr_t b0 = (uintptr_t)b->base, b1 = b0 + b->span_bytes;
    return a0 < b1 && b0 < a1;
}

fa_forward_layout fa_forward_layout_for(const fa_problem *p, fa_blocking b) {
    const fa_shape *s = &p->shape;
    fa_forward_layout l = {0};
    const size_t bq = (size_t)b.block_q, bk = (size_t)b.block_k;
    const size_t dqk = (size_t)s->head_dim_qk, dv = (size_t)s->head_dim_v;
    l.ldacc = (s->head_dim_v + 15) / 16 * 16;
    // Head dims are < 2^31 and the blocks ≤ 4096, so no product here overflows 64 bits.
    // A block is gathered into kw and vw (both) when K or V is half, or the cache paged.
    const int gathered = p->k_dtype != FA_DTYPE_F32 || p->v_dtype != FA_DTYPE_F32 || fa_is_paged(p);
    const size_t sizes[11] = {dqk * bq, bk * bq, bq * (size_t)l.ldacc, bq, bq, bq, bq,
                              gathered ? bk * dqk : 0, gathered ? bk * dv : 0,
                              p->q_dtype != FA_DTYPE_F32 ? bq * dqk : 0,
                              p->v_dtype == FA_DTYPE_BF16 ? (bk + 1) / 2 * (size_t)l.ldacc : 0};
    size_t offsets[11];
    l.per_thread_bytes = fa_layout_regions(sizes, offsets, 11);
    l.qt = offsets[0];
    l.st = offsets[1];
    l.acc = offsets[2];
    l.row_max = offsets[3];
    l.row_sum = offsets[4];
    l.alpha = offsets[5];
    l.block_max = offsets[6];
    l.kw = offsets[7];
    l.vw = offsets[8];
    l.qw = offsets[9];
    l.v2 = offsets[10];
    return l;
}

// A broadcastable (mask) layout: the first dimension whose stride is negative or whose span
// overflows, or −1 if all four are fine. Strides of 0 broadcast, so overlap is allowed.
static int bad_broadcast_stride(const int64_t ext[4], const int64_t str[4]) {
    int64_t span = 1;
    for (int d = 0; d < 4; d++) {
        int64_t step;
        if (str[d] < 0 || __builtin_mul_overflow(ext[d] - 1, str[d], &step) ||
            __builtin_add_overflow(span, step, &span) || span > (int64_t)(SIZE_MAX / 8))
            return d;
    }
    return -1;
}

// Every extent in [1, 2^31−1], and q_heads a multiple of kv_heads.
static fa_status check_extents(const fa_shape *s, fa_diagnostic *diag) {
    const struct { const char *name; fa_argument arg; int64_t value; } extents[] = {
        {"batch", FA_ARG_BATCH, s->batch},
        {"q_heads", FA_ARG_Q_HEADS, s->q_heads},
        {"kv_heads", FA_ARG_KV_HEADS, s->kv_heads},
        {"q_len", FA_ARG_Q_LEN, s->q_len},
        {"kv_len", FA_ARG_KV_LEN, s->kv_len},
        {"head_dim_qk", FA_ARG_HEAD_DIM_QK, s->head_dim_qk},
        {"head_dim_v", FA_ARG_HEAD_DIM_V, s->head_dim_v},
    };
    for (size_t i = 0; i < sizeof extents / sizeof extents[0]; i++) {
        if (extents[i].value < 1 || extents[i].value > FA_MAX_EXTENT)
            return fa_fail(diag, FA_ERR_INVALID_EXTENT, extents[i].arg, extents[i].value, 0, 0,
                           "shape.%s is %lld; it must be between 1 and %lld", extents[i].name,
                           (long long)extents[i].value, (long long)FA_MAX_EXTENT);
    }
    if (s->q_heads % s->kv_heads != 0)
        return fa_fail(diag, FA_ERR_HEAD_GROUPING, FA_ARG_KV_HEADS, s->q_heads, s->kv_heads, 0,
                       "shape.q_heads (%lld) is not a multiple of shape.kv_heads (%lld)",
                       (long long)s->q_heads, (long long)s->kv_heads);
    return FA_OK;
}

// The view of tensor `arg` of `s` with strides `st` at `base`; `packed`: the tensor's side
// holds packed sequences, so it has no batch dimension.
static tensor_view view_of(const fa_shape *s, fa_argument arg, fa_strides st, const void *base,
                           int packed) {
    tensor_view t = {0};
    t.arg = arg;
    t.base = base;
    t.rank = 4;
    int64_t heads = s->q_heads, len = s->q_len, dim = 1;
    switch (arg) {
    case FA_ARG_Q: t.name = "q"; dim = s->head_dim_qk; break;
    case FA_ARG_K: t.name = "k"; heads = s->kv_heads; len = s->kv_len; dim = s->head_dim_qk; break;
    case FA_ARG_V: t.name = "v"; heads = s->kv_heads; len = s->kv_len; dim = s->head_dim_v; break;
    case FA_ARG_O: t.name = "o"; dim = s->head_dim_v; break;
    case FA_ARG_DOUT: t.name = "dout"; dim = s->head_dim_v; break;
    case FA_ARG_DQ: t.name = "dq"; dim = s->head_dim_qk; break;
    case FA_ARG_DK: t.name = "dk"; heads = s->kv_heads; len = s->kv_len; dim = s->head_dim_qk; break;
    case FA_ARG_DV: t.name = "dv"; heads = s->kv_heads; len = s->kv_len; dim = s->head_dim_v; break;
    default: t.name = "lse"; break;
    }
    const int64_t extent[4] = {packed ? 1 : s->batch, heads, len, dim};
    const int64_t stride[4] = {st.batch, st.head, st.seq, 1};
    memcpy(t.extent, extent, sizeof extent);
    memcpy(t.stride, stride, sizeof stride);
    return t;
}

// A float's bit pattern, for a diagnostic's values (which are integers).
static int64_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (int64_t)u;
}

fa_status fa_tensor_elements(const fa_shape *shape, fa_argument tensor, fa_strides strides,
                             int64_t *elements, fa_diagnostic *diag) {
    if (diag) memset(diag, 0, sizeof *diag);
    if (!shape || !elements)
        return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, 0, 0,
                       "fa_tensor_elements: shape or elements is NULL");
    if (tensor != FA_ARG_Q && tensor != FA_ARG_K && tensor != FA_ARG_V && tensor != FA_ARG_O &&
        tensor != FA_ARG_LSE && tensor != FA_ARG_DOUT && tensor != FA_ARG_DQ &&
        tensor != FA_ARG_DK && tensor != FA_ARG_DV)
        return fa_fail(diag, FA_ERR_INVALID_ARGUMENT, tensor, (int64_t)tensor, 0, 0,
                       "fa_tensor_elements: argument %d is not a tensor", (int)tensor);
    fa_status st = check_extents(shape, diag);
    if (st != FA_OK) return st;
    tensor_view t = view_of(shape, tensor, strides, NULL, 0);
    st = check_tensor(&t, diag);
    if (st != FA_OK) return st;
    *elements = t.span;
    return FA_OK;
}

fa_status fa_validate_shape_options(const fa_problem *p, fa_diagnostic *diag) {
    if (diag) memset(diag, 0, sizeof *diag);
    if (!p)
        return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, 0, 0,
                       "problem: the descriptor pointer is NULL");
    const fa_shape *s = &p->shape;
    fa_status st = check_extents(s, diag);
    if (st != FA_OK) return st;
    if (isinf(p->scale))
        return fa_fail(diag, FA_ERR_INVALID_SCALE, FA_ARG_SCALE, float_bits(p->scale), 0, 0,
                       "scale is %s; it must be finite (NaN selects 1/sqrt(head_dim_qk))",
                       p->scale > 0 ? "+inf" : "-inf");
    if (p->causal != FA_CAUSAL_NONE && p->causal != FA_CAUSAL_BOTTOM_RIGHT &&
        p->causal != FA_CAUSAL_TOP_LEFT)
        return fa_fail(diag, FA_ERR_INVALID_CAUSAL, FA_ARG_CAUSAL, (int64_t)p->causal, 0, 0,
                       "causal is %d; it must be 0 (none), 1 (bottom-right) or 2 (top-left)",
                       (int)p->causal);
    if (p->window_left < -1 || p->window_right < -1)
        return fa_fail(diag, FA_ERR_INVALID_WINDOW, FA_ARG_WINDOW, p->window_left, p->window_right, 0,
                       "window is (%lld, %lld); each side must be -1 (unbounded) or >= 0",
                       (long long)p->window_left, (long long)p->window_right);
    if (p->positions.enabled) {
        const int64_t at[2] = {p->positions.q_start, p->positions.kv_start};
        for (int w = 0; w < 2; w++)
            if (at[w] < -FA_MAX_POSITION || at[w] > FA_MAX_POSITION)
                return fa_fail(diag, FA_ERR_INVALID_EXTENT, FA_ARG_POSITIONS, w, at[w], 0,
                               "positions.%s is %lld; it must be within ±%lld",
                               w ? "kv_start" : "q_start", (long long)at[w],
                               (long long)FA_MAX_POSITION);
    }
    if (p->window_left > FA_MAX_EXTENT || p->window_right > FA_MAX_EXTENT)
        return fa_fail(diag, FA_ERR_INVALID_WINDOW, FA_ARG_WINDOW, p->window_left, p->window_right, 0,
                       "window is (%lld, %lld); each side must be at most %lld",
                       (long long)p->window_left, (long long)p->window_right,
                       (long long)FA_MAX_EXTENT);
    if (!(p->softcap >= 0.0f) || isinf(p->softcap))
        return fa_fail(diag, FA_ERR_INVALID_SOFTCAP, FA_ARG_SOFTCAP, float_bits(p->softcap), 0, 0,
                       "softcap is %g; it must be finite and >= 0 (0 turns it off)",
                       (double)p->softcap);
    if (p->alibi_slopes)
        for (int64_t h = 0; h < s->q_heads; h++)
            if (!isfinite(p->alibi_slopes[h]))
                return fa_fail(diag, FA_ERR_INVALID_ALIBI, FA_ARG_ALIBI, h, 0, 0,
                               "alibi_slopes[%lld] is %g; slopes must be finite", (long long)h,
                               (double)p->alibi_slopes[h]);
    const struct { const int32_t *lengths; int64_t extent; fa_argument arg; const char *name; } lens[] = {
        {p->q_lengths, s->q_len, FA_ARG_Q_LENGTHS, "q_lengths"},
        {p->kv_lengths, s->kv_len, FA_ARG_KV_LENGTHS, "kv_lengths"},
    };
    const struct { const int32_t *offsets; const int32_t *lengths; int64_t extent; fa_argument arg; const char *name; } packs[] = {
        {p->cu_seqlens_q, p->q_lengths, s->q_len, FA_ARG_CU_SEQLENS_Q, "cu_seqlens_q"},
        {p->cu_seqlens_k, p->kv_lengths, s->kv_len, FA_ARG_CU_SEQLENS_K, "cu_seqlens_k"},
    };
    for (int l = 0; l < 2; l++) {
        const int32_t *cu = packs[l].offsets;
        if (!cu) continue;
        if (packs[l].lengths)
            return fa_fail(diag, FA_ERR_INVALID_OFFSETS, packs[l].arg, 0, 0, 0,
                           "%s and %s are both given; a side is either packed or padded",
                           packs[l].name, l == 0 ? "q_lengths" : "kv_lengths");
        if (cu[0] != 0)
            return fa_fail(diag, FA_ERR_INVALID_OFFSETS, packs[l].arg, 0, cu[0], 0,
                           "%s[0] is %d; packed offsets start at 0", packs[l].name, (int)cu[0]);
        for (int64_t b = 0; b < s->batch; b++)
            if (cu[b + 1] < cu[b])
                return fa_fail(diag, FA_ERR_INVALID_OFFSETS, packs[l].arg, b + 1, cu[b + 1], cu[b],
                               "%s[%lld] is %d, below %s[%lld] = %d; offsets never decrease",
                               packs[l].name, (long long)(b + 1), (int)cu[b + 1], packs[l].name,
                               (long long)b, (int)cu[b]);
        if (cu[s->batch] > packs[l].extent)
            return fa_fail(diag, FA_ERR_INVALID_OFFSETS, packs[l].arg, s->batch, cu[s->batch],
                           packs[l].extent, "%s[%lld] is %d, past the extent %lld", packs[l].name,
                           (long long)s->batch, (int)cu[s->batch], (long long)packs[l].extent);
    }
    for (int l = 0; l < 2; l++)
        if (lens[l].lengths)
            for (int64_t b = 0; b < s->batch; b++)
                if (lens[l].lengths[b] < 0 || lens[l].lengths[b] > lens[l].extent)
                    return fa_fail(diag, FA_ERR_INVALID_LENGTH, lens[l].arg, b, lens[l].lengths[b],
                                   lens[l].extent, "%s[%lld] is %d; it must be between 0 and %lld",
                                   lens[l].name, (long long)b, (int)lens[l].lengths[b],
                                   (long long)lens[l].extent);
    if (p->mask.kind != FA_MASK_NONE) {
        if (p->mask.kind != FA_MASK_BOOL && p->mask.kind != FA_MASK_ADDITIVE)
            return fa_fail(diag, FA_ERR_INVALID_MASK, FA_ARG_MASK, (int64_t)p->mask.kind, 0, 0,
                           "mask.kind is %d; it must be 0 (none), 1 (bool) or 2 (additive)",
                           (int)p->mask.kind);
        if (!p->mask.data)
            return fa_fail(diag, FA_ERR_INVALID_MASK, FA_ARG_MASK, 0, 0, 0, "mask.data is NULL");
        const int64_t ext[4] = {s->batch, s->q_heads, s->q_len, s->kv_len};
        const int64_t str[4] = {p->mask.batch, p->mask.head, p->mask.query, p->mask.key};
        const int bad = bad_broadcast_stride(ext, str);
        if (bad >= 0)
            return fa_fail(diag, FA_ERR_INVALID_MASK, FA_ARG_MASK, bad, str[bad], 0,
                           "mask stride %d (%lld) is negative or overflows; 0 broadcasts", bad,
                           (long long)str[bad]);
    }
    if (p->block_mask.data) {
        const fa_block_mask *bm = &p->block_mask;
        if (bm->block_q < 1 || bm->block_k < 1)
            return fa_fail(diag, FA_ERR_INVALID_BLOCK_MASK, FA_ARG_BLOCK_MASK, bm->block_q, bm->block_k,
                           0, "block_mask granularity is %lld × %lld; both must be >= 1",
                           (long long)bm->block_q, (long long)bm->block_k);
        const int64_t ext[4] = {s->batch, s->q_heads, fa_ceil_div(s->q_len, bm->block_q),
                                fa_ceil_div(s->kv_len, bm->block_k)};
        const int64_t str[4] = {bm->batch, bm->head, bm->qblock, bm->kblock};
        const int bad = bad_broadcast_stride(ext, str);
        if (bad >= 0)
            return fa_fail(diag, FA_ERR_INVALID_BLOCK_MASK, FA_ARG_BLOCK_MASK, bad, str[bad], 0,
                           "block_mask stride %d (%lld) is negative or overflows; 0 broadcasts", bad,
                           (long long)str[bad]);
    }
    st = fa_check_pages(p, diag);
    if (st != FA_OK) return st;
    if (p->kv_split_size < 0)
        return fa_fail(diag, FA_ERR_INVALID_SPLIT, FA_ARG_KV_SPLIT_SIZE, p->kv_split_size, 0, 0,
                       "kv_split_size is %lld; it must be 0 (automatic) or a number of keys >= 1",
                       (long long)p->kv_split_size);
    if (p->num_threads < 0)
        return fa_fail(diag, FA_ERR_INVALID_THREADS, FA_ARG_NUM_THREADS, p->num_threads, 0, 0,
                       "num_threads is %d; it must be 0 (default) or positive", (int)p->num_threads);

    if (p->isa < FA_ISA_AUTO || p->isa > FA_ISA_AVX512_AMX)
        return fa_fail(diag, FA_ERR_UNSUPPORTED_ISA, FA_ARG_ISA, (int64_t)p->isa, 0, 0,
                       "isa is %d; it must be a fa_isa value", (int)p->isa);
    if (!fa_isa_supported(p->isa))
        return fa_fail(diag, FA_ERR_UNSUPPORTED_ISA, FA_ARG_ISA, (int64_t)p->isa, 0, 0,
                       "isa %s is not supported by this CPU", fa_kernels_for(p->isa)->name);
    return FA_OK;
}

// Element types: each a fa_dtype, in a supported combination (q and o the same type, k and v
// each any; the backward's dout, dq, dk, dv in o's, q's, k's and v's).
static fa_status check_dtypes(const fa_problem *p, int backward, fa_diagnostic *diag) {
    const struct { fa_argument arg; const char *name; fa_dtype type; } t[] = {
        {FA_ARG_Q, "q", p->q_dtype}, {FA_ARG_K, "k", p->k_dtype},
        {FA_ARG_V, "v", p->v_dtype}, {FA_ARG_O, "o", p->o_dtype},
    };
    for (int i = 0; i < 4; i++)
        if (fa_dtype_size(t[i].type) == 0)
            return fa_fail(diag, FA_ERR_INVALID_DTYPE, t[i].arg, (int64_t)t[i].type, 0, 0,
                           "%s_dtype is %d; it must be a fa_dtype value", t[i].name,
                           (int)t[i].type);
    (void)backward;  // the backward's gradients take their tensors' types
    // q and o share a type (fp32, or both the same half type); k and v any.
    if (p->q_dtype != p->o_dtype)
        return fa_fail(diag, FA_ERR_INVALID_DTYPE, FA_ARG_O, (int64_t)p->o_dtype,
                       (int64_t)p->q_dtype, 0,
                       "o_dtype (%d) differs from q_dtype (%d); the output is stored in the "
                       "query's type", (int)p->o_dtype, (int)p->q_dtype);
    return FA_OK;
}

fa_status fa_validate_mode(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r,
                           fa_mode mode) {
    if (diag) memset(diag, 0, sizeof *diag);
    if (!p)
        return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_PROBLEM, 0, 0, 0,
                       "problem: the descriptor pointer is NULL");
    const fa_shape *s = &p->shape;
    fa_status st = fa_validate_shape_options(p, diag);
    if (st != FA_OK) return st;

    const int backward = mode == FA_MODE_BACKWARD;
    st = check_dtypes(p, backward, diag);
    if (st != FA_OK) return st;
    // The backward reads paged K/V where each sequence lies in one page: rows 0 … kv_len − 1
    // of that page are then an ordinary strided tensor (dK and dV are ordinary tensors).
    if (backward && fa_is_paged(p)) {
        if (s->kv_len > p->kv_pages.page_size)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, s->kv_len,
                           p->kv_pages.page_size, 0,
                           "kv_pages: the backward reads paged K/V only where every sequence lies "
                           "in one page; shape.kv_len (%lld) is above page_size (%lld)",
                           (long long)s->kv_len, (long long)p->kv_pages.page_size);
        for (int64_t b = 0; b < s->batch; b++)
            if (fa_kv_len_of(p, b) < 1)
                return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, b, 0, 0,
                               "kv_pages: the backward reads paged K/V only where every sequence "
                               "lies in one page; entry %lld has no key (no page)", (long long)b);
    }
    // Every tensor the call touches: inputs first, then outputs (which must not overlap).
    tensor_view views[10];
    int n = 0, first_output = 0;
    const struct {
        fa_argument arg; fa_strides strides; const void *ptr; int required; fa_dtype type;
    } all[] = {
        {FA_ARG_Q, p->q_strides, p->q, 1, p->q_dtype},
        {FA_ARG_K, p->k_strides, p->k, 1, p->k_dtype},
        {FA_ARG_V, p->v_strides, p->v, 1, p->v_dtype},
        {FA_ARG_O, p->o_strides, p->o, 1, p->o_dtype},
        {FA_ARG_LSE, p->lse_strides, p->lse, backward, FA_DTYPE_F32},
        {FA_ARG_DOUT, p->dout_strides, p->dout, backward, p->o_dtype},
        {FA_ARG_DQ, p->dq_strides, p->dq, backward, p->q_dtype},
        {FA_ARG_DK, p->dk_strides, p->dk, backward, p->k_dtype},
        {FA_ARG_DV, p->dv_strides, p->dv, backward, p->v_dtype},
    };
    const int count = backward ? 9 : 5;
    for (int i = 0; i < count; i++) {
        if (!all[i].ptr) {
            if (!all[i].required) continue;
            tensor_view t = view_of(s, all[i].arg, all[i].strides, NULL, 0);
            if (all[i].arg == FA_ARG_LSE)
                return fa_fail(diag, FA_ERR_NULL_POINTER, FA_ARG_LSE, 0, 0, 0,
                               "lse is NULL; the backward needs the forward's logsumexp");
            return fa_fail(diag, FA_ERR_NULL_POINTER, all[i].arg, 0, 0, 0, "%s is NULL", t.name);
        }
        // Forward: q, k, v in; o, lse out. Backward: q … dout in; dq, dk, dv out.
        if ((backward && all[i].arg == FA_ARG_DQ) || (!backward && all[i].arg == FA_ARG_O))
            first_output = n;
        const fa_argument a = all[i].arg;
        const int key_side = a == FA_ARG_K || a == FA_ARG_V || a == FA_ARG_DK || a == FA_ARG_DV;
        const int packed = key_side ? p->cu_seqlens_k != NULL : p->cu_seqlens_q != NULL;
        views[n] = view_of(s, a, all[i].strides, all[i].ptr, packed);
        if (fa_is_paged(p) && (a == FA_ARG_K || a == FA_ARG_V)) {
            // A page pool: [num_pages, kv_heads, page_size, D], the strides renamed.
            views[n].name = a == FA_ARG_K ? "k (page pool)" : "v (page pool)";
            views[n].extent[0] = p->kv_pages.num_pages;
            views[n].extent[2] = p->kv_pages.page_size;
        }
        views[n++].elem_bytes = fa_dtype_size(all[i].type);
    }
    for (int i = 0; i < n; i++) {
        st = check_tensor(&views[i], diag);
        if (st != FA_OK) return st;
    }
    // Outputs may not share a byte with any input or with each other.
    for (int out = first_output; out < n; out++)
        for (int other = 0; other < out; other++)
            if (ranges_overlap(&views[out], &views[other]))
                return fa_fail(diag, FA_ERR_OVERLAP, views[out].arg, (int64_t)views[other].arg, 0, 0,
                               "%s overlaps %s", views[out].name, views[other].name);

    const int threads = fa_resolve_threads(p->num_threads);
    if (p->workspace) {
        size_t need = 0;
        st = backward ? fa_backward_workspace_bytes(p, &need) : fa_workspace_bytes(p, &need);
        if (st != FA_OK) return fa_fail(diag, st, FA_ARG_WORKSPACE, 0, 0, 0,
                                        "workspace: its size cannot be computed");
        if (p->workspace_bytes < need)
            return fa_fail(diag, FA_ERR_WORKSPACE_TOO_SMALL, FA_ARG_WORKSPACE,
                           (int64_t)p->workspace_bytes, (int64_t)need, 0,
                           "workspace_bytes is %zu; this problem needs %zu", p->workspace_bytes,
                           need);
    }
    if (r) {
        r->scale = isnan(p->scale) ? 1.0f / sqrtf((float)s->head_dim_qk) : p->scale;
        r->threads = threads;
        r->group = s->q_heads / s->kv_heads;
    }
    return FA_OK;
}

fa_status fa_validate(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r) {
    return fa_validate_mode(p, diag, r, FA_MODE_FORWARD);
}

fa_status fa_check(const fa_problem *p, fa_diagnostic *diag) {
    return fa_validate_mode(p, diag, NULL, FA_MODE_FORWARD);
}

fa_status fa_check_backward(const fa_problem *p, fa_diagnostic *diag) {
    return fa_validate_mode(p, diag, NULL, FA_MODE_BACKWARD);
}

fa_status fa_workspace_bytes(const fa_problem *p, size_t *bytes) {
    if (!p || !bytes) return FA_ERR_NULL_POINTER;
    fa_status st = fa_validate_shape_options(p, NULL);
    if (st != FA_OK) return st;
    const int threads = fa_resolve_threads(p->num_threads);
    // Each thread may run both tile kinds (a batch mixing decode and prefill entries).
    size_t per_thread = 0;
    if (fa_uses_row_tiles(p)) per_thread = fa_row_layout_for(p).per_thread_bytes;
    if (fa_uses_key_major(p)) {
        const fa_blocking b = fa_blocking_for(fa_kernels_for(p->isa), &p->shape, threads,
                                              p->window_left,
                                              p->block_mask.data ? p->block_mask.block_q : 0);
        const size_t bytes = fa_forward_layout_for(p, b).per_thread_bytes;
        per_thread = bytes > per_thread ? bytes : per_thread;
    }
    // Per thread tiles, then the split-KV partial states (aligned), plus slack to align the base.
    const fa_split_plan split = fa_split_plan_for(p);
    size_t total;
    if (__builtin_mul_overflow(per_thread, (size_t)threads, &total) ||
        __builtin_add_overflow(total, split.bytes, &total) ||
        __builtin_add_overflow(total, (size_t)2 * FA_ALIGN, &total))
        return FA_ERR_SIZE_OVERFLOW;
    *bytes = total;
    return FA_OK;
}
