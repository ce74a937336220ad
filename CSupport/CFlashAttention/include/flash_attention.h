// flash_attention.h — the one public C header of swift-flash-attention.
//
// Exact attention on the CPU, float32:
//
//   O[b,h] = softmax(scale · Q[b,h] · K[b,g]ᵀ + causal mask) · V[b,g],   g = h / (Hq / Hkv)
//
// Q [B, Hq, Lq, Dqk]   K [B, Hkv, Lk, Dqk]   V [B, Hkv, Lk, Dv]   O [B, Hq, Lq, Dv]
// LSE [B, Hq, Lq] (optional): natural log of each row's sum of exp of the scaled, masked scores.
//
// Every tensor is addressed by element strides for its batch, head and sequence dimensions;
// the last (head) dimension is contiguous. [B,H,L,D] and [B,L,H,D] buffers both work as they are.
//
// fa_forward never materialises the Lq×Lk score matrix: it walks key/value blocks with an online
// softmax (FlashAttention-2) and needs only a per-thread workspace (fa_workspace_bytes).
// fa_naive_forward materialises the scores with cblas_sgemm; it is the baseline and second opinion.
//
// Every entry point validates the whole descriptor first and returns a status; a bad descriptor
// never crashes and never writes anything. Calls are thread-safe: nothing is shared between calls.
//
// Non-finite values (every path, ISA and element type; the DocC article NonFiniteValues has
// the whole statement). Row i *sees* key j when j is in the row's band (causal, window,
// lengths, offsets, pages), the masks keep (i, j) and the final score is not −inf; a masked
// score is replaced by −inf, never added to.
//   - a row that sees no key: O = 0, LSE = −inf; dQ = 0, nothing added to dK, dV;
//   - a NaN or +inf score of a seen key (NaN or inf in Q[i] or K[j], a NaN or +inf additive
//     mask entry, an overflowing scale · q·k): O[i, :] = NaN, LSE[i] = NaN; a −inf score is
//     weight 0 (a −inf scaled score is hidden before any modifier); soft-capping bounds +inf
//     to +softcap;
//   - NaN or inf in V[j, d]: O[i, d] non-finite for the rows that see j, nothing else;
//   - backward: a pair a row does not see has P = dS = 0 exactly; a NaN forward row or NaN in
//     dO[i] makes dQ[i] NaN and dK[j] (and dV[j], in the affected columns) NaN for the keys j
//     the row sees.
// Caveat: keys some rows of a tile see are read for all of them, at weight 0 for the others,
// and 0 · NaN is NaN: a non-finite V (backward: Q, K, dO) of a masked but in-band key may
// reach the row. Keys outside the band are never read.
#ifndef FLASH_ATTENTION_H
#define FLASH_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FA_VERSION_MAJOR 0
#define FA_VERSION_MINOR 1
#define FA_VERSION_PATCH 0

/// Outcome of every call. FA_OK is zero; fa_status_message() describes each value.
typedef enum fa_status {
    FA_OK = 0,
    FA_ERR_NULL_POINTER = 1,       ///< a required pointer (descriptor, q, k, v, o) is NULL
    FA_ERR_INVALID_EXTENT = 2,     ///< a shape extent is zero, negative or too large
    FA_ERR_HEAD_GROUPING = 3,      ///< q_heads is not a multiple of kv_heads
    FA_ERR_INVALID_STRIDE = 4,     ///< strides are negative, or make elements of a tensor overlap
    FA_ERR_OVERLAP = 5,            ///< an output buffer overlaps an input or the other output
    FA_ERR_SIZE_OVERFLOW = 6,      ///< a byte size does not fit in size_t
    FA_ERR_INVALID_SCALE = 7,      ///< scale is infinite (NaN means "default")
    FA_ERR_INVALID_CAUSAL = 8,     ///< causal is not one of fa_causal
    FA_ERR_INVALID_THREADS = 9,    ///< num_threads is negative
    FA_ERR_WORKSPACE_TOO_SMALL = 10, ///< a caller workspace smaller than fa_workspace_bytes
    FA_ERR_OUT_OF_MEMORY = 11,     ///< an allocation failed
    FA_ERR_UNSUPPORTED_ISA = 12,   ///< the requested kernel ISA is unknown or not on this CPU
    FA_ERR_INVALID_WINDOW = 13,    ///< a window side is below −1
    FA_ERR_INVALID_SOFTCAP = 14,   ///< softcap is negative, infinite or NaN
    FA_ERR_INVALID_ALIBI = 15,     ///< an ALiBi slope is infinite or NaN
    FA_ERR_INVALID_LENGTH = 16,    ///< a per-batch length is negative or beyond its extent
    FA_ERR_INVALID_MASK = 17,      ///< mask kind unknown, data NULL, or strides negative/overflowing
    FA_ERR_INVALID_BLOCK_MASK = 18,  ///< block-mask granularity < 1 or strides invalid
    FA_ERR_INVALID_OFFSETS = 19,   ///< packed-sequence offsets not 0-based, decreasing or too large
    FA_ERR_INVALID_SPLIT = 20,     ///< kv_split_size is negative
    FA_ERR_INVALID_DTYPE = 21,     ///< an element type is not a fa_dtype, or its combination is unsupported
    FA_ERR_INVALID_PAGES = 22,     ///< a paged K/V description is inconsistent (see fa_kv_pages)
    FA_ERR_INVALID_ARGUMENT = 23,  ///< an fa_argument selector names something the function does not take
} fa_status;

/// Which argument a diagnostic is about.
typedef enum fa_argument {
    FA_ARG_NONE = 0,
    FA_ARG_PROBLEM,
    FA_ARG_BATCH, FA_ARG_Q_HEADS, FA_ARG_KV_HEADS, FA_ARG_Q_LEN, FA_ARG_KV_LEN,
    FA_ARG_HEAD_DIM_QK, FA_ARG_HEAD_DIM_V,
    FA_ARG_Q, FA_ARG_K, FA_ARG_V, FA_ARG_O, FA_ARG_LSE,
    FA_ARG_SCALE, FA_ARG_CAUSAL, FA_ARG_NUM_THREADS, FA_ARG_WORKSPACE, FA_ARG_ISA,
    FA_ARG_DOUT, FA_ARG_DQ, FA_ARG_DK, FA_ARG_DV, FA_ARG_WINDOW, FA_ARG_SOFTCAP, FA_ARG_ALIBI,
    FA_ARG_Q_LENGTHS, FA_ARG_KV_LENGTHS, FA_ARG_MASK, FA_ARG_BLOCK_MASK,
    FA_ARG_CU_SEQLENS_Q, FA_ARG_CU_SEQLENS_K, FA_ARG_KV_SPLIT_SIZE,
    FA_ARG_STATES,   ///< fa_merge_states: the input states (values[0] = which one)
    FA_ARG_MERGED,   ///< fa_merge_states: the output state
    FA_ARG_KV_PAGES,          ///< kv_pages: page_size, num_pages, or which form is given
    FA_ARG_KV_INDPTR,         ///< kv_pages.indptr
    FA_ARG_KV_INDICES,        ///< kv_pages.indices
    FA_ARG_KV_LAST_PAGE_LEN,  ///< kv_pages.last_page_len
    FA_ARG_BLOCK_TABLE,       ///< kv_pages.block_table (and max_pages)
    FA_ARG_SEQ_LENS,          ///< kv_pages.seq_lens
    FA_ARG_POSITIONS,         ///< positions.q_start or positions.kv_start (values[0] = which)
} fa_argument;

/// What a mask's elements mean.
typedef enum fa_mask_kind {
    FA_MASK_NONE = 0,
    FA_MASK_BOOL = 1,      ///< uint8: nonzero = attend, 0 = masked
    FA_MASK_ADDITIVE = 2,  ///< float: added to the scaled (capped, biased) scores; −inf masks
} fa_mask_kind;

/// A block-sparse mask (FlashAttention paper §3.3): the (block_q × block_k) block (qb, kb) of
/// batch entry b and query head h is kept iff data[b·batch + h·head + qb·qblock + kb·kblock]
/// is nonzero (strides in elements; 0 broadcasts). Blocks marked off are never computed.
typedef struct fa_block_mask {
    const uint8_t *data;       ///< NULL: no block mask
    int64_t block_q, block_k;  ///< the granularity, in query rows and keys (≥ 1)
    int64_t batch, head, qblock, kblock;
} fa_block_mask;

/// An element mask broadcastable to [B, Hq, Lq, Lk]: element (b, h, i, j) is at
/// data + b·batch + h·head + i·query + j·key (elements); a stride of 0 broadcasts.
typedef struct fa_mask {
    fa_mask_kind kind;
    const void *data;
    int64_t batch, head, query, key;
} fa_mask;

/// Which micro-kernels fa_forward runs. FA_ISA_AUTO picks the best the CPU supports, or what
/// the environment variable FA_ISA (portable | avx2 | avx512 | avx512bf16 | avx512amx | neon |
/// neonbf16) names, once per process.
typedef enum fa_isa {
    FA_ISA_AUTO = 0,
    FA_ISA_PORTABLE = 1,  ///< plain C, any CPU
    FA_ISA_AVX2 = 2,      ///< AVX2 + FMA + F16C (Haswell, Zen and later)
    FA_ISA_AVX512 = 3,    ///< AVX-512 F/VL/BW/DQ + FMA (Skylake-SP, Zen 4 and later)
    /// FA_ISA_AVX512 plus BF16 dot products (vdpbf16ps: Cooper Lake, Sapphire Rapids, Zen 4),
    /// which the forward and backward use when Q, K and V are all bf16; otherwise the AVX-512
    /// kernels.
    FA_ISA_AVX512_BF16 = 4,
    /// AArch64 NEON (Advanced SIMD, every ARM64 CPU).
    FA_ISA_NEON = 5,
    /// FA_ISA_NEON plus BF16 dot products (FEAT_BF16: BFDOT, BFCVT; Graviton 3, Neoverse V1/N2,
    /// Apple M2 and later), which the forward and backward use when Q, K and V are all bf16;
    /// otherwise the NEON kernels.
    FA_ISA_NEON_BF16 = 6,
    /// FA_ISA_AVX512_BF16 with AMX-BF16 tiles (Sapphire Rapids and later Xeons) for the bf16
    /// forward's scores and P·V and the backward's scores, where Linux grants the process the
    /// tile state. Not chosen by FA_ISA_AUTO yet: written and tested on emulated tiles (make
    /// test-amx-emulated), it waits for a measurement on AMX hardware — force it with
    /// FA_ISA=avx512amx or the isa field.
    FA_ISA_AVX512_AMX = 7,
} fa_isa;

/// Causal masking. Bottom-right (FlashAttention ≥ 2.1): query i sees keys j ≤ i + Lk − Lq.
/// Top-left (PyTorch is_causal): query i sees keys j ≤ i. The two agree when Lq = Lk.
typedef enum fa_causal {
    FA_CAUSAL_NONE = 0,
    FA_CAUSAL_BOTTOM_RIGHT = 1,
    FA_CAUSAL_TOP_LEFT = 2,
} fa_causal;

/// Extents. Every one must be ≥ 1; q_heads must be a multiple of kv_heads (GQA/MQA).
typedef struct fa_shape {
    int64_t batch;        ///< B
    int64_t q_heads;      ///< Hq
    int64_t kv_heads;     ///< Hkv
    int64_t q_len;        ///< Lq
    int64_t kv_len;       ///< Lk
    int64_t head_dim_qk;  ///< Dqk, the head dimension of Q and K
    int64_t head_dim_v;   ///< Dv, the head dimension of V and O
} fa_shape;

/// Element strides of one tensor's batch, head and sequence dimensions (the last dimension is
/// contiguous). For the logsumexp [B, Hq, Lq], `seq` is the stride between query rows.
/// All strides must be ≥ 0 and no two elements of one tensor may share an address.
typedef struct fa_strides {
    int64_t batch;
    int64_t head;
    int64_t seq;
} fa_strides;

/// Element types of stored tensors. Arithmetic is fp32 whatever the storage: scores, maxima,
/// sums, accumulators and the logsumexp are fp32, half elements are widened exactly as they
/// are read, and every rounding to a half type is to nearest, ties to even.
typedef enum fa_dtype {
    FA_DTYPE_F32 = 0,   ///< IEEE binary32
    FA_DTYPE_F16 = 1,   ///< IEEE binary16 (fp16)
    FA_DTYPE_BF16 = 2,  ///< bfloat16: the top 16 bits of a binary32
} fa_dtype;

/// Paged K/V caches (vLLM's PagedAttention, FlashInfer, FlashAttention's flash_attn_with_kvcache):
/// K and V live in pools of fixed-size pages, and each batch entry's keys are the pages its
/// table lists, in order. With page_size ≥ 1, `k` and `v` are the pools, [num_pages, kv_heads,
/// page_size, D] addressed by their strides with the dimensions renamed: `batch` steps from
/// page to page, `head` from kv head to kv head, `seq` from key to key within a page. The two
/// common layouts are
///   HND  [pages, Hkv, page_size, D]: fa_strides_bhld(kv_heads, page_size, D)
///   NHD  [pages, page_size, Hkv, D]: fa_strides_blhd(kv_heads, page_size, D)
/// (any other strides work). Key j of entry b is row j mod page_size of page
/// pages_b[j / page_size]. The pages are given in one of two forms, side by side:
///   CSR (FlashInfer): indptr[batch + 1], indices[indptr[batch]], last_page_len[batch]: entry
///     b's pages are indices[indptr[b]] … indices[indptr[b+1] − 1], and it holds
///     (pages − 1)·page_size + last_page_len[b] keys (0 keys, and last_page_len[b] = 0, when
///     it has no page).
///   Block table (vLLM, FlashAttention): block_table[batch × max_pages] and seq_lens[batch]:
///     entry b's pages are block_table[b·max_pages …], the first ⌈seq_lens[b] / page_size⌉ of
///     them (the rest of the row is never read).
/// Converting: seq_lens[b] = (indptr[b+1] − indptr[b] − 1)·page_size + last_page_len[b];
/// block_table row b = indices[indptr[b] …]; and back, indptr[b+1] = indptr[b] +
/// ⌈seq_lens[b] / page_size⌉, last_page_len[b] = seq_lens[b] − (pages − 1)·page_size.
/// `shape.kv_len` is then the longest sequence the call allows (every entry's keys ≤ it; masks
/// are sized by it), as with kv_lengths of a padded batch; kv_lengths and cu_seqlens_k must be
/// NULL. Pages may be shared between entries (a common prefix); `exclusive` claims they are
/// not, and the check then refuses any page listed twice. The forward (fa_forward,
/// fa_naive_forward) reads paged K/V with every option; the backward does not take it.
/// Results are bitwise those of the same keys stored contiguously.
typedef struct fa_kv_pages {
    int64_t page_size;             ///< keys per page (≥ 1); 0 (the default): K and V are not paged
    int64_t num_pages;             ///< pages in each pool (≥ 1): page indices are in [0, num_pages)
    const int32_t *indptr;         ///< CSR: [batch + 1], from 0, non-decreasing
    const int32_t *indices;        ///< CSR: [indptr[batch]] page indices
    const int32_t *last_page_len;  ///< CSR: [batch], 1 … page_size (0 for an entry without pages)
    const int32_t *block_table;    ///< block table: [batch × max_pages] page indices
    int64_t max_pages;             ///< block table: int32 elements per row (≥ 1)
    const int32_t *seq_lens;       ///< block table: [batch] keys per entry (0 … kv_len)
    int32_t exclusive;             ///< nonzero: no page is listed twice (checked)
} fa_kv_pages;

/// Explicit sequence positions, for attention computed in pieces: context parallelism (ring
/// attention, where a rank holds a slice of the queries and is handed slices of the keys),
/// chunked prefill against a cache, or any call whose rows and keys are parts of a longer
/// sequence. With `enabled`, query row i of every batch entry is at position q_start + i and
/// key j at kv_start + j, and these positions replace the alignment of the ends: causal masking
/// (either mode) hides a key whose position is after the query's; the window keeps keys at
/// positions pq − window_left … pq + window_right; ALiBi's distance is |pq − pk|. Masks and
/// block masks stay indexed by the local (i, j). |q_start| and |kv_start| ≤ FA_MAX_POSITION.
/// Without it, bottom-right alignment is q_start − kv_start = Lk − Lq (per entry), top-left
/// causal masking 0.
typedef struct fa_positions {
    int32_t enabled;   ///< 0 (the default): the ends are aligned as `causal` says
    int64_t q_start;   ///< position of query row 0 of each batch entry
    int64_t kv_start;  ///< position of key 0 of each batch entry
} fa_positions;

/// The largest |position| fa_positions takes (2⁴⁰).
#define FA_MAX_POSITION ((int64_t)1 << 40)

/// Pass as `scale` to use 1/sqrt(head_dim_qk).
#define FA_SCALE_DEFAULT (__builtin_nanf(""))

/// One attention problem. Fill it with fa_problem_init(), then set shapes, strides and pointers.
typedef struct fa_problem {
    fa_shape shape;

    const void *q; fa_strides q_strides;   ///< elements of q_dtype (strides count elements)
    const void *k; fa_strides k_strides;   ///< elements of k_dtype
    const void *v; fa_strides v_strides;   ///< elements of v_dtype
    void *o;       fa_strides o_strides;   ///< elements of o_dtype
    float *lse;     fa_strides lse_strides;  ///< optional output; NULL to skip (head_dim ignored)

    /// Element types of q, k, v and o; FA_DTYPE_F32 (0) by default. q and o share one type, k
    /// and v each take any (all half; or fp32 activations over a half K/V cache, which
    /// decoding then reads at half the bytes); outputs are rounded to nearest even once, at
    /// the end. The backward's gradients take their tensors' types (see dout below). Other
    /// combinations are FA_ERR_INVALID_DTYPE.
    fa_dtype q_dtype, k_dtype, v_dtype, o_dtype;
    float scale;        ///< multiplier of Q·Kᵀ; FA_SCALE_DEFAULT (NaN) means 1/sqrt(head_dim_qk)
    fa_causal causal;   ///< FA_CAUSAL_NONE by default
    /// Sliding window in FlashAttention's sense: query i sees keys i + Lk − Lq − window_left …
    /// i + Lk − Lq + window_right; −1 = unbounded on that side (both −1, the default: no
    /// window). Combined with `causal` (both must allow a key). Blocks outside the band are
    /// never touched, so the work is O(Lq · window).
    int64_t window_left, window_right;
    /// Logit soft-capping (Gemma 2): the scaled score s becomes softcap · tanh(s / softcap)
    /// before masks and biases. 0 (the default) turns it off.
    float softcap;
    /// ALiBi: one slope per query head (q_heads floats); the bias −slope · |i + Lk − Lq − j| is
    /// added to the scaled (and capped) scores. NULL (the default) turns it off.
    const float *alibi_slopes;
    /// Padded batches: the valid query rows and keys of each batch entry (batch int32 each, in
    /// [0, q_len] and [0, kv_len]); NULL means all. Batch entry b is then the problem
    /// (q_lengths[b], kv_lengths[b]) in the first rows and keys of its buffers — causal
    /// alignment, windows and ALiBi use those lengths — and its padding rows get output 0,
    /// logsumexp −inf and zero gradients; padding keys are never seen.
    const int32_t *q_lengths;
    const int32_t *kv_lengths;
    /// Packed variable-length sequences (FlashAttention's cu_seqlens_q / cu_seqlens_k): the
    /// queries (keys and values) of all batch entries lie back to back along the sequence
    /// dimension, entry b in rows cu_seqlens[b] … cu_seqlens[b+1] − 1; `batch` is the number
    /// of sequences and q_len (kv_len) the packed dimension's extent. batch + 1 int32 each,
    /// starting at 0, non-decreasing, the last ≤ the extent; NULL: not packed. On a packed side
    /// the tensors have no batch dimension (their batch strides are ignored), so Q is e.g.
    /// [total_q, Hq, D] with strides {_, D, Hq·D}, and LSE [Hq, total_q]. Each sequence attends
    /// only within itself, as its own (Lq_b, Lk_b) problem: causal alignment, windows and ALiBi
    /// are per sequence; element and block masks are indexed (b, h, i, j) with i, j local to
    /// the sequence. Rows past the last offset get output 0, logsumexp −inf and zero dQ; keys
    /// past it zero dK, dV. Either side may be packed alone (e.g. one query per sequence
    /// against a padded cache with kv_lengths); a side cannot have both offsets and lengths.
    const int32_t *cu_seqlens_q;
    const int32_t *cu_seqlens_k;
    /// Paged K/V (page_size 0 by default: K and V are strided tensors). See fa_kv_pages.
    fa_kv_pages kv_pages;
    /// Explicit positions of the rows and keys (not enabled by default). See fa_positions.
    fa_positions positions;
    /// An element mask (FA_MASK_NONE by default), applied after soft-capping and ALiBi and
    /// combined with the causal mask, window and lengths.
    fa_mask mask;
    /// A block-sparse mask (none by default), combined with everything above.
    fa_block_mask block_mask;
    /// Split-KV (fa_forward only; the naive path and the backward ignore it): each query tile's keys are cut into chunks of kv_split_size keys (counted
    /// from each sequence's first key), every chunk's partial state (normalised output and
    /// logsumexp) is computed on its own, and the chunks are merged in order (fa_merge_states'
    /// arithmetic). It keeps every thread busy when there are few (batch, kv head, query tile)
    /// items: decoding at batch 1, MQA. 0 (the default): chosen from the problem alone
    /// (query rows, heads, key lengths), never from the thread count — decode-shaped problems (at most
    /// FA_DECODE_MAX_Q query rows per sequence) are split when they have fewer than
    /// FA_SPLIT_TARGET_ITEMS items, others not; ≥ the key length (e.g. INT64_MAX): never.
    /// Results are bitwise identical for every thread count, and for an explicit size the
    /// same whatever else is in the batch. The partial states live in the workspace.
    int64_t kv_split_size;
    int32_t num_threads;  ///< 0: as many as OpenMP offers (omp_get_max_threads); results never depend on it
    fa_isa isa;           ///< FA_ISA_AUTO by default; forcing another is for tests and benchmarks

    /// Optional caller-owned workspace, at least fa_workspace_bytes() (forward) or
    /// fa_backward_workspace_bytes() (backward) long; the library aligns it. NULL: each thread
    /// uses its own cached workspace (allocated once, never inside the loops).
    void *workspace;
    size_t workspace_bytes;

    /// Backward only (fa_backward, fa_naive_backward): there q, k, v, o and lse are inputs —
    /// o and lse exactly as the forward wrote them — and so is dout; dq, dk, dv are written.
    /// Each gradient is stored in its tensor's type: dout in o_dtype, dq in q_dtype, dk in
    /// k_dtype, dv in v_dtype (accumulated in fp32 and rounded once).
    const void *dout; fa_strides dout_strides;   ///< ∂loss/∂o  [B, Hq, Lq, Dv]
    void *dq; fa_strides dq_strides;             ///< ∂loss/∂q  [B, Hq, Lq, Dqk]
    void *dk; fa_strides dk_strides;             ///< ∂loss/∂k  [B, Hkv, Lk, Dqk] (summed over a group)
    void *dv; fa_strides dv_strides;             ///< ∂loss/∂v  [B, Hkv, Lk, Dv]  (summed over a group)
} fa_problem;

/// What a failed check found: the status, the argument it is about, and a readable sentence.
typedef struct fa_diagnostic {
    fa_status status;
    fa_argument argument;
    /// The offending values (meaning per status; see the message). For FA_ERR_INVALID_SCALE and
    /// FA_ERR_INVALID_SOFTCAP, values[0] holds the float's bit pattern (as uint32_t).
    int64_t values[3];
    char message[256];
} fa_diagnostic;

/// Fills `p` with defaults: zero shapes and pointers, scale FA_SCALE_DEFAULT, no causal mask,
/// num_threads 0, no workspace.
void fa_problem_init(fa_problem *p);

/// Strides of a densely packed [B, H, L, D] tensor ("head-major", the PyTorch default layout).
fa_strides fa_strides_bhld(int64_t heads, int64_t len, int64_t dim);
/// Strides of a densely packed [B, L, H, D] tensor ("sequence-major", as many models store it).
fa_strides fa_strides_blhd(int64_t heads, int64_t len, int64_t dim);

/// Elements a buffer must hold for `tensor` (FA_ARG_Q, _K, _V, _O or _LSE) of `shape` laid out
/// with `strides`: one past the largest offset. Fails on bad extents or strides, like fa_check;
/// FA_ERR_INVALID_ARGUMENT if `tensor` is not a tensor (FA_ARG_DOUT … FA_ARG_DV are also taken).
fa_status fa_tensor_elements(const fa_shape *shape, fa_argument tensor, fa_strides strides,
                             int64_t *elements, fa_diagnostic *diag);

/// Checks everything fa_forward and fa_naive_forward check, without computing. `diag` may be NULL.
fa_status fa_check(const fa_problem *p, fa_diagnostic *diag);

/// Bytes of workspace fa_forward needs for `p` (shape and thread count only; pointers unused).
/// It grows with threads × tile × head dims, never with Lq × Lk.
fa_status fa_workspace_bytes(const fa_problem *p, size_t *bytes);

/// FlashAttention-2 forward: blockwise, online softmax, OpenMP over (batch, head, query block).
fa_status fa_forward(const fa_problem *p);

/// Materialised reference: S = scale·Q·Kᵀ per (batch, head) with cblas_sgemm, masked row softmax,
/// O = P·V with cblas_sgemm. Allocates Lq×Lk floats. OpenBLAS runs with num_threads threads.
fa_status fa_naive_forward(const fa_problem *p);

/// Checks everything fa_backward and fa_naive_backward check (lse, dout, dq, dk, dv required;
/// dq, dk, dv may not overlap any input or each other).
fa_status fa_check_backward(const fa_problem *p, fa_diagnostic *diag);

/// Bytes of workspace fa_backward needs: per thread, the dK/dV accumulators of one chunk of
/// keys (about the L2 cache's size, at most Lk × (Dqk + Dv) floats) and one query block's
/// tiles; never anything Lq × Lk.
fa_status fa_backward_workspace_bytes(const fa_problem *p, size_t *bytes);

/// FlashAttention-2 backward: recomputes P from q, k and lse block by block;
///   D = rowsum(dout ∘ o);  dV = Pᵀ·dout;  dP = dout·Vᵀ;  dS = P ∘ (dP − D);
///   dQ = scale·dS·K;  dK = scale·dSᵀ·Q   (dK, dV summed over the query heads of a group).
/// OpenMP over (batch, kv head); each is computed by one thread in a fixed order, so the
/// gradients are bitwise identical for any thread count, with no atomics. With fewer
/// (batch, kv head) pairs than threads, dK/dV (by key ranges) and dQ (by query blocks) are
/// computed apart, recomputing P — the same bits, every thread busy.
fa_status fa_backward(const fa_problem *p);

/// Materialised backward with cblas_sgemm (Lq × Lk floats twice): the baseline.
fa_status fa_naive_backward(const fa_problem *p);

/// Query rows per sequence up to which fa_forward stacks the rows of every query head of a
/// GQA group into one query-major tile (decoding): each K/V block is then read once for the
/// whole group, with every vector lane live.
#define FA_DECODE_MAX_Q 16
/// Automatic split-KV (kv_split_size = 0) aims for this many work items.
#define FA_SPLIT_TARGET_ITEMS 32

// ---- merging attention states ----
//
// An attention state over a set of keys is (O, LSE): O the softmax-normalised output over
// those keys and LSE the natural log of the sum of exp of their (scaled, masked) scores —
// exactly what fa_forward writes as o and lse. States over disjoint key sets merge into the
// state over their union:
//   m = max_i LSE_i;  LSE = m + log Σ_i e^(LSE_i − m);  O = Σ_i e^(LSE_i − LSE) · O_i
// (0, −inf) is the identity: a state that saw no key is skipped (its O is never read, so it
// may hold anything), and merging only such states gives (0, −inf), never NaN. This is what
// split-KV, prefix caches and attention across machines are built on.
// LSEs are natural logs. A base-2 LSE (FlashInfer's default) converts as LSE = LSE₂ · ln 2.

/// Extents of a batch of attention states: O [batch, heads, len, head_dim], LSE
/// [batch, heads, len]; each ≥ 1.
typedef struct fa_state_shape {
    int64_t batch, heads, len, head_dim;
} fa_state_shape;

/// One attention state: O and LSE addressed by element strides (batch, head, seq; the last
/// dimension of O is contiguous; for the LSE, seq is the stride between rows).
typedef struct fa_attention_state {
    float *o;   fa_strides o_strides;
    float *lse; fa_strides lse_strides;
} fa_attention_state;

/// Merges `count` (≥ 1) states, in order, into `out`. `out` may be one of the inputs exactly
/// (same pointers and strides: merging in place); any other overlap between `out` and an
/// input, or between its O and LSE, is FA_ERR_OVERLAP. Bad extents, NULL pointers or strides
/// that overlap elements are refused before anything is written. `diag` may be NULL.
fa_status fa_merge_states(const fa_state_shape *shape, const fa_attention_state *states,
                          int64_t count, const fa_attention_state *out, fa_diagnostic *diag);

/// In place: `acc` ← merge(acc, other). The same as fa_merge_states with states
/// {acc, other} and out = acc.
fa_status fa_merge_state_into(const fa_state_shape *shape, const fa_attention_state *acc,
                              const fa_attention_state *other, fa_diagnostic *diag);

/// A sentence describing a status (static storage; never NULL).
const char *fa_status_message(fa_status status);

/// The micro-kernel set FA_ISA_AUTO selects in this process ("portable", "avx2", "avx512").
const char *fa_kernel_name(void);

/// Whether `isa` can run on this CPU (FA_ISA_AUTO and FA_ISA_PORTABLE always can).
int fa_isa_supported(fa_isa isa);

/// The CPU features the kernels may use, as the operating system reports them, space
/// separated (static storage, computed once): on x86 from cpuid (`__builtin_cpu_supports`:
/// avx2 fma f16c avx512f avx512vl avx512bw avx512dq avx512bf16); on Linux ARM64 from the
/// kernel's hardware capabilities (getauxval AT_HWCAP / AT_HWCAP2: neon fp16 dotprod bf16
/// i8mm sve); on Apple ARM64 from sysctl (hw.optional.arm.FEAT_FP16, FEAT_DotProd, FEAT_BF16,
/// FEAT_I8MM). Which kernels run is fa_isa_supported's; this names what the CPU has.
const char *fa_cpu_features(void);

/// What fa_forward would use for a problem: kernels, tile sizes and the cache sizes they were
/// chosen from. Tile sizes follow the L2 size (see dispatch/cpu.c); FA_BLOCK_Q and FA_BLOCK_K
/// override them.
typedef struct fa_kernel_info {
    fa_isa isa;           ///< the resolved ISA (never FA_ISA_AUTO)
    const char *name;     ///< "portable", "avx2", "avx512"
    int vector_width;     ///< floats per vector
    int block_q;          ///< query rows per block
    int block_k;          ///< keys per block
    int64_t l1d_bytes, l2_bytes, l3_bytes;  ///< per-core L1d and L2, shared L3 (0 if unknown)
} fa_kernel_info;
fa_status fa_kernel_info_for(const fa_problem *p, fa_kernel_info *info);

/// Bytes of one element of `t` (0 for a value that is not an fa_dtype).
size_t fa_dtype_size(fa_dtype t);

/// Converts n contiguous elements from `from` to `to`, as the library's own paths do: to a
/// half type rounding to nearest, ties to even (beyond the largest finite value: ±inf;
/// fp16 subnormals exact); half to fp32 exactly; NaN stays NaN (quiet, sign and top payload
/// kept); between equal types it is a copy, bit for bit. src == dst is allowed when both types have the same size; other overlaps are not.
/// FA_ERR_INVALID_DTYPE, FA_ERR_INVALID_EXTENT (n < 0) or FA_ERR_NULL_POINTER (n > 0).
fa_status fa_convert(fa_dtype from, const void *src, fa_dtype to, void *dst, int64_t n);

/// One element at a time, the same rounding as fa_convert.
float fa_bf16_to_float(uint16_t h);
uint16_t fa_float_to_bf16(float f);
float fa_f16_to_float(uint16_t h);
uint16_t fa_float_to_f16(float f);

/// y[i] = 2^x[i] exactly as the softmax of `isa` computes it (for accuracy tests): within
/// 2 units of 2⁻²⁴ relative for x ≥ −126, exactly 0 below −126 and at −inf.
fa_status fa_exp2(fa_isa isa, const float *x, float *y, int64_t n);

/// The thread count a call with num_threads = 0 uses (OpenMP's default; 1 without OpenMP).
int fa_default_threads(void);

/// 1 if the library was built with OpenMP (the package trait `OpenMP`), else 0: then every
/// call runs on its caller's thread, whatever num_threads says.
int fa_openmp_enabled(void);

/// Which runtime runs a call's threads: "openmp" (Linux with the trait OpenMP), "dispatch"
/// (Grand Central Dispatch: Apple platforms, where there is no OpenMP) or "serial" (every
/// call on its caller's thread). Results are the same bits on each.
const char *fa_threads_runtime(void);

/// The library version as "major.minor.patch" (static storage).
const char *fa_version(void);

#ifdef __cplusplus
}
#endif

#endif  // FLASH_ATTENTION_H
