/// The strides of all five tensors of one call.
///
/// Use ``packed(_:shape:)`` for dense buffers, or set each tensor's strides to work on views
/// (a slice of a larger buffer, a fused QKV projection, a padded cache) without copying.
///
/// ```swift
/// // Q, K and V interleaved in one [B, L, 3, H, D] projection buffer:
/// let h = 8, d = 64, l = 128
/// var strides = AttentionTensorStrides.packed(.blhd, shape: shape)
/// strides.query = AttentionStrides(batch: l * 3 * h * d, head: d, sequence: 3 * h * d)
/// strides.key = strides.query
/// strides.value = strides.query
/// // ... and pass base + h*d, base + 2*h*d as key and value.
/// ```
public struct AttentionTensorStrides: Sendable, Hashable {
    /// Strides of the query `[B, Hq, Lq, Dqk]`.
    public var query: AttentionStrides
    /// Strides of the key `[B, Hkv, Lk, Dqk]`.
    public var key: AttentionStrides
    /// Strides of the value `[B, Hkv, Lk, Dv]`.
    public var value: AttentionStrides
    /// Strides of the output `[B, Hq, Lq, Dv]`.
    public var output: AttentionStrides
    /// Strides of the log-sum-exp `[B, Hq, Lq]` (`sequence` steps between query rows).
    public var logSumExp: AttentionStrides

    /// Creates the strides of five tensors.
    public init(query: AttentionStrides, key: AttentionStrides, value: AttentionStrides,
                output: AttentionStrides, logSumExp: AttentionStrides) {
        self.query = query
        self.key = key
        self.value = value
        self.output = output
        self.logSumExp = logSumExp
    }

    /// Dense buffers in `layout`; the log-sum-exp is always a dense `[B, Hq, Lq]`.
    ///
    /// ```swift
    /// let strides = AttentionTensorStrides.packed(.bhld, shape: shape)
    /// ```
    public static func packed(_ layout: TensorLayout, shape: AttentionShape) -> Self {
        Self(
            query: .packed(layout, heads: shape.queryHeads, length: shape.queryLength,
                           dim: shape.headDim),
            key: .packed(layout, heads: shape.keyValueHeads, length: shape.keyLength,
                         dim: shape.headDim),
            value: .packed(layout, heads: shape.keyValueHeads, length: shape.keyLength,
                           dim: shape.valueHeadDim),
            output: .packed(layout, heads: shape.queryHeads, length: shape.queryLength,
                            dim: shape.valueHeadDim),
            logSumExp: .packed(.bhld, heads: shape.queryHeads, length: shape.queryLength, dim: 1))
    }
}
