/// Which keys a query may see.
public enum CausalMask: Sendable, Hashable {
    /// Every query sees every key.
    case none
    /// Query `i` sees keys `j ≤ i + Lk − Lq`: the mask is aligned to the bottom-right corner
    /// of the score matrix, as in FlashAttention ≥ 2.1 (the right choice for decoding with a
    /// key/value cache). When `Lq > Lk` the first `Lq − Lk` queries see no key at all.
    case bottomRight
    /// Query `i` sees keys `j ≤ i`: aligned to the top-left corner, as PyTorch's `is_causal`.
    case topLeft
}

/// A sliding window in FlashAttention's sense: query `i` sees keys from
/// `i + Lk − Lq − left` to `i + Lk − Lq + right`; `nil` leaves that side unbounded.
///
/// Combined with a causal mask, a key must satisfy both. Key blocks outside the band are never
/// touched, so the work is O(Lq × window).
///
/// ```swift
/// // Mistral-style: each query sees itself and the 4095 keys before it.
/// let options = AttentionOptions(causal: .bottomRight,
///                                window: SlidingWindow(left: 4095, right: 0))
/// ```
public struct SlidingWindow: Sendable, Hashable {
    /// Keys before the query's diagonal it may see (`nil`: all of them).
    public var left: Int?
    /// Keys after the query's diagonal it may see (`nil`: all of them).
    public var right: Int?

    /// Creates a window; each side must be `nil` or ≥ 0.
    public init(left: Int?, right: Int?) {
        self.left = left
        self.right = right
    }
}

/// Which kernel computes the attention.
public enum AttentionImplementation: Sendable, Hashable {
    /// Blockwise FlashAttention-2 with an online softmax: memory O(threads × tile).
    case flash
    /// Materialised scores with OpenBLAS `sgemm`: memory O(Lq × Lk). The baseline.
    case naive
}

/// Which micro-kernels the `.flash` implementation runs.
public enum KernelISA: String, Sendable, Hashable, CaseIterable {
    /// The best the CPU supports (x86: AVX-512 with BF16 > AVX-512 > AVX2 > portable; ARM64:
    /// NEON with BF16 > NEON), or what the environment variable `FA_ISA` names, chosen once
    /// per process.
    case automatic
    /// Plain C: any CPU.
    case portable
    /// AVX2, FMA and F16C.
    case avx2
    /// AVX-512 F/VL/BW/DQ and FMA.
    case avx512
    /// `.avx512` plus BF16 dot products (`vdpbf16ps`), which the forward and the backward use
    /// when the query, keys and values are all ``BFloat16`` (its probabilities are then
    /// rounded to bf16 for P·V: see the README's accuracy notes).
    case avx512bf16
    /// `.avx512bf16` with AMX-BF16 tiles (Sapphire Rapids and later Xeons) for the bf16
    /// forward's scores and P·V and the backward's scores, where Linux grants the process the
    /// tile state. Never chosen by `.automatic` yet (written and tested on emulated tiles, it
    /// waits for a measurement on AMX hardware): ask for it, or set `FA_ISA=avx512amx`.
    case avx512amx
    /// AArch64 NEON (every ARM64 CPU).
    case neon
    /// `.neon` plus BF16 dot products (`BFDOT`, FEAT_BF16: Graviton 3, Neoverse V1/N2, Apple
    /// M2 and later), which the forward (prefill and decoding) and the backward use when the
    /// query, keys and values are all ``BFloat16`` (its probabilities are then rounded to bf16
    /// for P·V, as `.avx512bf16`'s).
    case neonbf16
}

/// Explicit sequence positions, for attention computed in pieces: a slice of the queries
/// against a slice of the keys of one longer sequence (ring attention across processes,
/// chunked prefill). Query row `i` of every batch entry is at position `queryStart + i`, key
/// `j` at `keyStart + j`, and causal masking (either mode) hides keys after the query's
/// position, the window keeps positions `queryStart + i − left … queryStart + i + right`, and
/// ALiBi's distance is the distance between the positions. Element and block masks stay
/// indexed by local rows and keys. Each start must be within ±2⁴⁰.
public struct SequencePositions: Sendable, Hashable {
    /// Position of query row 0.
    public var queryStart: Int
    /// Position of key 0.
    public var keyStart: Int

    public init(queryStart: Int, keyStart: Int) {
        self.queryStart = queryStart
        self.keyStart = keyStart
    }
}

/// How to compute attention: everything that is not a shape or a buffer.
///
/// ```swift
/// var options = AttentionOptions()
/// options.causal = .bottomRight
/// options.threadCount = 1
/// ```
public struct AttentionOptions: Sendable, Hashable {
    /// The multiplier of `Q·Kᵀ`; `nil` means `1/√headDim`. Must be finite.
    public var scale: Float?
    /// The causal mask; `.none` by default.
    public var causal: CausalMask
    /// A sliding window; `nil` (no window) by default.
    public var window: SlidingWindow?
    /// Logit soft-capping (Gemma 2): scaled scores `s` become `softcap · tanh(s / softcap)`
    /// before masks and biases; `nil` (off) by default. Must be finite and > 0.
    public var softcap: Float?
    /// ALiBi: one slope per query head; the bias `−slope · |i + Lk − Lq − j|` is added to the
    /// scaled (and capped) scores. `nil` (off) by default.
    public var alibiSlopes: [Float]?
    /// Padded batches: the valid query rows of each batch entry (`batch` values in
    /// `0 … queryLength`); `nil` means all. Padding rows get output 0, log-sum-exp −∞ and zero
    /// gradients; causal alignment, windows and ALiBi use the valid lengths.
    public var queryLengths: [Int]?
    /// Padded batches: the valid keys of each batch entry (`batch` values in `0 … keyLength`);
    /// `nil` means all. Padding keys are never seen.
    public var keyLengths: [Int]?
    /// Packed variable-length sequences (FlashAttention's `cu_seqlens_q`): the queries of all
    /// `batch` sequences lie back to back along the query sequence dimension, sequence `b` in
    /// rows `offsets[b] ..< offsets[b + 1]`; `batch + 1` values from 0, non-decreasing, the last
    /// at most `shape.queryLength` (the packed extent). `nil` (not packed) by default.
    ///
    /// The query-side tensors (query, output, log-sum-exp and their gradients) then have no
    /// batch dimension: `[Lq, Hq, D]` in `.blhd`, `[Hq, Lq, D]` in `.bhld`, log-sum-exp
    /// `[Hq, Lq]`. Each sequence attends only within itself as its own problem — causal
    /// alignment, windows and ALiBi per sequence; masks are indexed by sequence and local
    /// positions. Rows past the last offset get output 0 and log-sum-exp −∞. Exclusive with
    /// ``queryLengths``.
    ///
    /// ```swift
    /// // Three sequences of 5, 1 and 12 tokens in one [18, H, D] buffer:
    /// let shape = AttentionShape(batch: 3, queryHeads: 8, queryLength: 18, keyLength: 18, headDim: 64)
    /// let options = AttentionOptions(causal: .bottomRight, layout: .blhd,
    ///                                querySequenceOffsets: [0, 5, 6, 18],
    ///                                keySequenceOffsets: [0, 5, 6, 18])
    /// ```
    public var querySequenceOffsets: [Int]?
    /// Packed variable-length key/value sequences (`cu_seqlens_k`), as
    /// ``querySequenceOffsets`` for the key, value and their gradients (no batch dimension;
    /// keys past the last offset get zero gradients). Either side may be packed alone — e.g.
    /// packed queries against a padded cache with ``keyLengths``. Exclusive with ``keyLengths``.
    public var keySequenceOffsets: [Int]?
    /// An element mask (boolean or additive), combined with everything above; `nil` by default.
    public var mask: AttentionMask?
    /// A block-sparse mask; `nil` by default.
    public var blockMask: BlockMask?
    /// Split-KV (the `.flash` forward; `.naive` and the backward have nothing to split and
    /// ignore it): the key range of each query tile is cut into chunks of this many keys, each
    /// chunk's partial attention state is computed on its own, and the states are merged in a
    /// fixed order (the arithmetic of ``FlashAttention/mergeStates(_:shape:layout:)``). This keeps every
    /// thread busy when there are fewer (batch, key/value head, query tile) items than threads
    /// — decoding one token against a long cache at batch 1, MQA.
    ///
    /// `0` (the default) chooses from the problem alone (query rows, heads and key lengths:
    /// decode-shaped calls with few items are split), never from the thread count; `Int.max` never splits; any other positive value is the
    /// chunk size in keys. Results are bitwise the same for every thread count, and for a given
    /// explicit size the same whatever else is in the batch.
    public var keySplitSize: Int
    /// Explicit positions of the rows and keys (``SequencePositions``); `nil` (the default)
    /// aligns the ends as ``causal`` says.
    public var positions: SequencePositions?
    /// Threads to use; `nil` uses every thread OpenMP offers. Results are bitwise the same for
    /// every thread count.
    public var threadCount: Int?
    /// The kernel; `.flash` by default.
    public var implementation: AttentionImplementation
    /// The layout of the array arguments of the array-based entry points (and the default
    /// strides of the pointer-based ones); `.bhld` by default.
    public var layout: TensorLayout
    /// The `.flash` micro-kernels; `.automatic` by default. Forcing one is for tests and
    /// benchmarks; an ISA the CPU lacks throws ``AttentionError/unsupportedKernel(_:)``.
    public var kernel: KernelISA

    /// Creates options; every argument has the documented default.
    ///
    /// ```swift
    /// let options = AttentionOptions(causal: .topLeft, implementation: .naive)
    /// ```
    public init(scale: Float? = nil, causal: CausalMask = .none, window: SlidingWindow? = nil,
                softcap: Float? = nil, alibiSlopes: [Float]? = nil,
                queryLengths: [Int]? = nil, keyLengths: [Int]? = nil, mask: AttentionMask? = nil,
                blockMask: BlockMask? = nil, threadCount: Int? = nil, implementation: AttentionImplementation = .flash,
                layout: TensorLayout = .bhld, kernel: KernelISA = .automatic,
                querySequenceOffsets: [Int]? = nil, keySequenceOffsets: [Int]? = nil,
                keySplitSize: Int = 0, positions: SequencePositions? = nil) {
        self.scale = scale
        self.causal = causal
        self.window = window
        self.softcap = softcap
        self.alibiSlopes = alibiSlopes
        self.queryLengths = queryLengths
        self.keyLengths = keyLengths
        self.mask = mask
        self.blockMask = blockMask
        self.threadCount = threadCount
        self.implementation = implementation
        self.layout = layout
        self.kernel = kernel
        self.querySequenceOffsets = querySequenceOffsets
        self.keySequenceOffsets = keySequenceOffsets
        self.keySplitSize = keySplitSize
        self.positions = positions
    }
}
