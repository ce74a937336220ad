import FlashAttention

/// An element type as the command line spells it.
public enum BenchElementType: String, CaseIterable, Sendable, Codable {
    case fp32, fp16, bf16

    public var elementType: AttentionElementType {
        switch self {
        case .fp32: .float32
        case .fp16: .float16
        case .bf16: .bfloat16
        }
    }

    public var byteCount: Int { elementType.byteCount }
}

/// The storage of a case: Q and O in one type, K and V in another (`--dtype T` sets both,
/// `--kv-dtype T` the K/V cache alone under fp32 activations).
public struct BenchStorage: Sendable, Hashable, Codable, CustomStringConvertible {
    public var query: BenchElementType
    public var keyValue: BenchElementType

    public init(query: BenchElementType = .fp32, keyValue: BenchElementType = .fp32) {
        self.query = query
        self.keyValue = keyValue
    }

    public static let fp32 = BenchStorage()

    /// "fp32", "bf16" (all one type) or "fp32/bf16" (Q and O / K and V).
    public var description: String {
        query == keyValue ? query.rawValue : "\(query.rawValue)/\(keyValue.rawValue)"
    }
}

/// A tensor's elements stored in one of the element types, in memory this object owns
/// (64-byte aligned), for the benchmark's half-precision cases.
final class StoredTensor {
    let type: BenchElementType
    let count: Int
    let raw: UnsafeMutableRawBufferPointer

    /// `values` rounded to `type` (to nearest even).
    init(_ values: [Float], as type: BenchElementType) {
        self.type = type
        count = values.count
        raw = .allocate(byteCount: max(1, values.count * type.byteCount), alignment: 64)
        switch type {
        case .fp32: for (i, x) in values.enumerated() { raw.storeBytes(of: x, toByteOffset: 4 * i, as: Float.self) }
        case .fp16: for (i, x) in values.enumerated() { raw.storeBytes(of: Float16(x).bitPattern, toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16: for (i, x) in values.enumerated() { raw.storeBytes(of: BFloat16(x).bitPattern, toByteOffset: 2 * i, as: UInt16.self) }
        }
    }

    deinit { raw.deallocate() }

    func buffer<T>(_: T.Type) -> UnsafeBufferPointer<T> {
        UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: T.self), count: count)
    }

    func mutableBuffer<T>(_: T.Type) -> UnsafeMutableBufferPointer<T> {
        UnsafeMutableBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: T.self), count: count)
    }

    /// The elements as Float (exactly).
    var floats: [Float] {
        switch type {
        case .fp32: Array(buffer(Float.self))
        case .fp16: buffer(UInt16.self).map { Float(Float16(bitPattern: $0)) }
        case .bf16: buffer(UInt16.self).map { BFloat16(bitPattern: $0).floatValue }
        }
    }
}

/// Calls `body` with Swift types for Q's and K's storage types.
func withElementTypes(_ q: BenchElementType, _ kv: BenchElementType,
                              _ body: (any AttentionElement.Type, any AttentionElement.Type) throws -> Void)
    rethrows
{
    func type(_ t: BenchElementType) -> any AttentionElement.Type {
        switch t {
        case .fp32: Float.self
        case .fp16: Float16.self
        case .bf16: BFloat16.self
        }
    }
    try body(type(q), type(kv))
}

/// One forward call over stored tensors: Q and O of one type, K and V of another (and the
/// log-sum-exp, if given).
func forwardStored(query q: StoredTensor, key k: StoredTensor, value v: StoredTensor,
                   output o: StoredTensor, logSumExp: UnsafeMutableBufferPointer<Float>? = nil,
                   shape: AttentionShape, options: AttentionOptions) throws {
    func run<Q: AttentionElement, KV: AttentionElement>(_: Q.Type, _: KV.Type) throws {
        try FlashAttention.forward(query: q.buffer(Q.self), key: k.buffer(KV.self),
                                   value: v.buffer(KV.self), output: o.mutableBuffer(Q.self),
                                   logSumExp: logSumExp, shape: shape, options: options)
    }
    try withElementTypes(q.type, k.type) { qt, kvt in try run(qt, kvt) }
}

/// The stored tensors of a half-precision backward case: dO in O's type, each gradient in its
/// tensor's type.
struct StoredGradients {
    let outputGradient: StoredTensor
    let query: StoredTensor, key: StoredTensor, value: StoredTensor
}

/// One backward call over stored tensors into stored gradients.
func backwardStored(query q: StoredTensor, key k: StoredTensor, value v: StoredTensor,
                    output o: StoredTensor, logSumExp: UnsafeBufferPointer<Float>,
                    gradients g: StoredGradients, shape: AttentionShape,
                    options: AttentionOptions) throws {
    func run<Q: AttentionElement, KV: AttentionElement>(_: Q.Type, _: KV.Type) throws {
        try FlashAttention.backward(query: q.buffer(Q.self), key: k.buffer(KV.self),
                                    value: v.buffer(KV.self), output: o.buffer(Q.self),
                                    logSumExp: logSumExp,
                                    outputGradient: g.outputGradient.buffer(Q.self),
                                    queryGradient: g.query.mutableBuffer(Q.self),
                                    keyGradient: g.key.mutableBuffer(KV.self),
                                    valueGradient: g.value.mutableBuffer(KV.self),
                                    shape: shape, options: options)
    }
    try withElementTypes(q.type, k.type) { qt, kvt in try run(qt, kvt) }
}
