/// The extents of one attention problem.
///
/// Query `[B, Hq, Lq, Dqk]`, key `[B, Hkv, Lk, Dqk]`, value `[B, Hkv, Lk, Dv]`,
/// output `[B, Hq, Lq, Dv]`, log-sum-exp `[B, Hq, Lq]`. Query head `h` reads key/value head
/// `h / (Hq / Hkv)`, so `Hq == Hkv` is multi-head attention, `Hkv == 1` multi-query attention
/// and anything between grouped-query attention.
///
/// ```swift
/// // 8 query heads sharing 2 key/value heads, 100 queries over 300 keys, head dim 64.
/// let shape = AttentionShape(queryHeads: 8, keyValueHeads: 2,
///                            queryLength: 100, keyLength: 300, headDim: 64)
/// ```
public struct AttentionShape: Sendable, Hashable {
    /// `B`, the batch size.
    public var batch: Int
    /// `Hq`, the number of query (and output) heads.
    public var queryHeads: Int
    /// `Hkv`, the number of key/value heads; `queryHeads` must be a multiple of it.
    public var keyValueHeads: Int
    /// `Lq`, the number of queries per sequence.
    public var queryLength: Int
    /// `Lk`, the number of keys (and values) per sequence.
    public var keyLength: Int
    /// `Dqk`, the head dimension of queries and keys.
    public var headDim: Int
    /// `Dv`, the head dimension of values and outputs.
    public var valueHeadDim: Int

    /// Creates a shape. Omitted arguments default to the usual self-attention case:
    /// `keyValueHeads = queryHeads`, `keyLength = queryLength`, `valueHeadDim = headDim`.
    ///
    /// ```swift
    /// let shape = AttentionShape(batch: 2, queryHeads: 8, queryLength: 512, headDim: 64)
    /// ```
    public init(batch: Int = 1, queryHeads: Int, keyValueHeads: Int? = nil,
                queryLength: Int, keyLength: Int? = nil,
                headDim: Int, valueHeadDim: Int? = nil) {
        self.batch = batch
        self.queryHeads = queryHeads
        self.keyValueHeads = keyValueHeads ?? queryHeads
        self.queryLength = queryLength
        self.keyLength = keyLength ?? queryLength
        self.headDim = headDim
        self.valueHeadDim = valueHeadDim ?? headDim
    }

    /// Elements of a densely packed query tensor, `B·Hq·Lq·Dqk`.
    ///
    /// These counts are plain `Int` products: like any Swift arithmetic they trap if the
    /// product overflows. The attention entry points never compute them for a shape they have
    /// not checked (such a shape throws ``AttentionError/sizeOverflow(argument:)``).
    ///
    /// ```swift
    /// let query = [Float](repeating: 0, count: shape.queryCount)
    /// ```
    public var queryCount: Int { batch * queryHeads * queryLength * headDim }
    /// Elements of a densely packed key tensor, `B·Hkv·Lk·Dqk`.
    public var keyCount: Int { batch * keyValueHeads * keyLength * headDim }
    /// Elements of a densely packed value tensor, `B·Hkv·Lk·Dv`.
    public var valueCount: Int { batch * keyValueHeads * keyLength * valueHeadDim }
    /// Elements of a densely packed output tensor, `B·Hq·Lq·Dv`.
    public var outputCount: Int { batch * queryHeads * queryLength * valueHeadDim }
    /// Elements of a densely packed log-sum-exp tensor, `B·Hq·Lq`.
    public var logSumExpCount: Int { batch * queryHeads * queryLength }
}

extension AttentionShape {
    /// Throws unless every extent is in 1 … 2³¹ − 1 (as the C library requires), the query
    /// heads group over the key/value heads, and every tensor's dense byte size fits in `Int` —
    /// before anything multiplies extents (strides, counts), so that no shape traps.
    package func validate() throws(AttentionError) {
        for (name, value) in [("shape.batch", batch), ("shape.queryHeads", queryHeads),
                              ("shape.keyValueHeads", keyValueHeads), ("shape.queryLength", queryLength),
                              ("shape.keyLength", keyLength), ("shape.headDim", headDim),
                              ("shape.valueHeadDim", valueHeadDim)]
            where value < 1 || value > Int(Int32.max) {
            throw .invalidExtent(argument: name, value: value)
        }
        guard queryHeads % keyValueHeads == 0 else {
            throw .headCountMismatch(queryHeads: queryHeads, keyValueHeads: keyValueHeads)
        }
        for (name, extents) in [("query", [batch, queryHeads, queryLength, headDim]),
                                ("key", [batch, keyValueHeads, keyLength, headDim]),
                                ("value", [batch, keyValueHeads, keyLength, valueHeadDim]),
                                ("output", [batch, queryHeads, queryLength, valueHeadDim])] {
            guard checkedProduct(extents + [MemoryLayout<Float>.size]) != nil else {
                throw .sizeOverflow(argument: name)
            }
        }
    }
}

/// The product of `factors`, or nil if it overflows `Int`.
func checkedProduct(_ factors: [Int]) -> Int? {
    var product = 1
    for factor in factors {
        let (next, overflow) = product.multipliedReportingOverflow(by: factor)
        if overflow { return nil }
        product = next
    }
    return product
}

/// The memory order of a densely packed four-dimensional tensor.
public enum TensorLayout: Sendable, Hashable {
    /// `[batch, heads, length, dim]`: PyTorch's `scaled_dot_product_attention` layout.
    case bhld
    /// `[batch, length, heads, dim]`: how most models store projections (FlashAttention's layout).
    case blhd
}

/// Element strides of a tensor's batch, head and sequence dimensions.
///
/// The last dimension (the head dimension) is always contiguous. Strides must not make two
/// elements share an address; any permutation of the dimensions, with or without padding, works.
///
/// ```swift
/// // A [B, L, H, D] query buffer with H = 8, D = 64:
/// let strides = AttentionStrides(batch: 512 * 8 * 64, head: 64, sequence: 8 * 64)
/// // ... which is what .packed(.blhd, ...) computes:
/// assert(strides == .packed(.blhd, heads: 8, length: 512, dim: 64))
/// ```
public struct AttentionStrides: Sendable, Hashable {
    /// Elements between consecutive batch entries.
    public var batch: Int
    /// Elements between consecutive heads.
    public var head: Int
    /// Elements between consecutive positions (rows) of a sequence.
    public var sequence: Int

    /// Creates strides from explicit element counts.
    public init(batch: Int, head: Int, sequence: Int) {
        self.batch = batch
        self.head = head
        self.sequence = sequence
    }

    /// The strides of a densely packed tensor in `layout`: plain `Int` products, which trap if
    /// they overflow (as Swift arithmetic does).
    ///
    /// ```swift
    /// let s = AttentionStrides.packed(.bhld, heads: 8, length: 128, dim: 64)
    /// // s.batch == 65536, s.head == 8192, s.sequence == 64
    /// ```
    public static func packed(_ layout: TensorLayout, heads: Int, length: Int, dim: Int) -> Self {
        switch layout {
        case .bhld:
            return Self(batch: heads * length * dim, head: length * dim, sequence: dim)
        case .blhd:
            return Self(batch: length * heads * dim, head: dim, sequence: heads * dim)
        }
    }
}
