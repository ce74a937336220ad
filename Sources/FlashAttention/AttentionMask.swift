/// Element strides of a mask over `[B, Hq, Lq, Lk]`; a stride of 0 broadcasts that dimension.
public struct MaskStrides: Sendable, Hashable {
    /// Elements between batch entries.
    public var batch: Int
    /// Elements between query heads.
    public var head: Int
    /// Elements between query rows.
    public var query: Int
    /// Elements between keys.
    public var key: Int

    /// Explicit strides.
    public init(batch: Int, head: Int, query: Int, key: Int) {
        self.batch = batch
        self.head = head
        self.query = query
        self.key = key
    }

    /// Elements these strides address over `extents` (batch, head, query, key): one past the
    /// largest offset; nil for a negative stride or an overflow.
    func span(over extents: [Int]) -> Int? {
        var span = 1
        for (n, stride) in zip(extents, [batch, head, query, key]) {
            guard stride >= 0 else { return nil }
            let (step, o1) = (n - 1).multipliedReportingOverflow(by: stride)
            let (sum, o2) = span.addingReportingOverflow(step)
            guard !o1, !o2 else { return nil }
            span = sum
        }
        return span
    }

    /// A dense `[B, Hq, Lq, Lk]` mask. Its strides are plain `Int` products, which trap if
    /// they overflow (as Swift arithmetic does).
    ///
    /// ```swift
    /// let strides = MaskStrides.dense(shape)
    /// ```
    public static func dense(_ s: AttentionShape) -> Self {
        Self(batch: s.queryHeads * s.queryLength * s.keyLength, head: s.queryLength * s.keyLength,
             query: s.keyLength, key: 1)
    }

    /// A `[Lq, Lk]` mask shared by every batch entry and head.
    public static func shared(_ s: AttentionShape) -> Self {
        Self(batch: 0, head: 0, query: s.keyLength, key: 1)
    }

    /// A `[B, Lk]` key-padding mask: one row of keys per batch entry, for every head and query.
    public static func keyPadding(_ s: AttentionShape) -> Self {
        Self(batch: s.keyLength, head: 0, query: 0, key: 1)
    }
}

/// An element mask broadcastable to `[B, Hq, Lq, Lk]`: boolean (`true` = attend) or additive
/// (added to the scaled scores after soft-capping and ALiBi; `-.infinity` masks).
///
/// ```swift
/// // Hide the last 3 keys of every batch entry's row of keys:
/// var keep = [Bool](repeating: true, count: shape.batch * shape.keyLength)
/// for b in 0 ..< shape.batch { for j in shape.keyLength - 3 ..< shape.keyLength { keep[b * shape.keyLength + j] = false } }
/// let options = AttentionOptions(mask: AttentionMask(boolean: keep, strides: .keyPadding(shape)))
/// ```
public struct AttentionMask: Sendable, Hashable {
    /// The mask's elements.
    public enum Values: Sendable, Hashable {
        /// 1 = attend, 0 = masked.
        case boolean([UInt8])
        /// Added to the scores.
        case additive([Float])
    }

    /// The mask's elements.
    public var values: Values
    /// How the elements map onto `[B, Hq, Lq, Lk]`.
    public var strides: MaskStrides

    /// A boolean mask (`true` = attend).
    public init(boolean: [Bool], strides: MaskStrides) {
        values = .boolean(boolean.map { $0 ? 1 : 0 })
        self.strides = strides
    }

    /// An additive mask.
    public init(additive: [Float], strides: MaskStrides) {
        values = .additive(additive)
        self.strides = strides
    }

    var count: Int {
        switch values {
        case let .boolean(v): v.count
        case let .additive(v): v.count
        }
    }

    /// Elements the strides address for `shape` (nil on overflow or negative strides).
    func requiredCount(_ s: AttentionShape) -> Int? {
        strides.span(over: [s.batch, s.queryHeads, s.queryLength, s.keyLength])
    }
}

/// A block-sparse mask (FlashAttention paper §3.3): attention is computed only inside the kept
/// `blockQuery × blockKey` blocks of the score matrix; blocks marked off are skipped, so the
/// cost follows the number of kept blocks.
///
/// ```swift
/// // Keep every 10th 64 × 64 block of an [B, Hq, Lq/64, Lk/64] grid:
/// let nq = (shape.queryLength + 63) / 64, nk = (shape.keyLength + 63) / 64
/// let kept = (0 ..< shape.batch * shape.queryHeads * nq * nk).map { $0 % 10 == 0 }
/// let options = AttentionOptions(blockMask: BlockMask(kept: kept, blockQuery: 64, blockKey: 64,
///                                                     shape: shape))
/// ```
public struct BlockMask: Sendable, Hashable {
    /// 1 = the block is kept.
    public var kept: [UInt8]
    /// Query rows per block (≥ 1).
    public var blockQuery: Int
    /// Keys per block (≥ 1).
    public var blockKey: Int
    /// Strides over [B, Hq, block rows, block columns]; 0 broadcasts.
    public var strides: MaskStrides

    /// A block mask with explicit strides.
    public init(kept: [Bool], blockQuery: Int, blockKey: Int, strides: MaskStrides) {
        self.kept = kept.map { $0 ? 1 : 0 }
        self.blockQuery = blockQuery
        self.blockKey = blockKey
        self.strides = strides
    }

    /// A dense `[B, Hq, ⌈Lq/blockQuery⌉, ⌈Lk/blockKey⌉]` block mask. Its strides are plain
    /// `Int` products, which trap if they overflow (as Swift arithmetic does); any granularity
    /// works, `Int.max` included.
    public init(kept: [Bool], blockQuery: Int, blockKey: Int, shape s: AttentionShape) {
        let nq = ceilDivide(s.queryLength, max(blockQuery, 1))
        let nk = ceilDivide(s.keyLength, max(blockKey, 1))
        self.init(kept: kept, blockQuery: blockQuery, blockKey: blockKey,
                  strides: MaskStrides(batch: s.queryHeads * nq * nk, head: nq * nk, query: nk, key: 1))
    }

    /// Elements the strides address for `shape` (nil on bad granularity, strides or overflow).
    func requiredCount(_ s: AttentionShape) -> Int? {
        guard blockQuery >= 1, blockKey >= 1 else { return nil }
        let nq = ceilDivide(s.queryLength, blockQuery), nk = ceilDivide(s.keyLength, blockKey)
        return strides.span(over: [s.batch, s.queryHeads, nq, nk])
    }

    /// Whether element (b, h, i, j) lies in a kept block.
    public func keeps(batch b: Int, head h: Int, query i: Int, key j: Int) -> Bool {
        kept[b * strides.batch + h * strides.head + (i / blockQuery) * strides.query
             + (j / blockKey) * strides.key] != 0
    }
}

/// ⌈a / b⌉ for a ≥ 0 and b ≥ 1, without the overflow of (a + b − 1) / b at b near Int.max.
func ceilDivide(_ a: Int, _ b: Int) -> Int { a / b + (a % b == 0 ? 0 : 1) }
