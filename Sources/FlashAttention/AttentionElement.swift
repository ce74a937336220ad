import CFlashAttention

/// The element types attention tensors can be stored in. Arithmetic is `Float` whatever the
/// storage: scores, maxima, sums, accumulators and the log-sum-exp are `Float`, half elements
/// are widened exactly as they are read, and a half output is rounded (to nearest, ties to
/// even) once, at the end.
public enum AttentionElementType: Sendable, Hashable, CustomStringConvertible {
    /// IEEE binary32 (`Float`).
    case float32
    /// IEEE binary16 (`Float16`).
    case float16
    /// bfloat16 (``BFloat16``).
    case bfloat16

    var cType: fa_dtype {
        switch self {
        case .float32: FA_DTYPE_F32
        case .float16: FA_DTYPE_F16
        case .bfloat16: FA_DTYPE_BF16
        }
    }

    /// Bytes per element.
    public var byteCount: Int { self == .float32 ? 4 : 2 }

    /// The short name: "fp32", "fp16" or "bf16".
    public var description: String {
        switch self {
        case .float32: "fp32"
        case .float16: "fp16"
        case .bfloat16: "bf16"
        }
    }
}

/// A type attention tensors can be stored in: `Float`, `Float16` (where the platform has it)
/// and ``BFloat16``.
///
/// The forward takes the query and the output in one element type and the keys and values in
/// one (possibly another): all `Float`; all half; or `Float` activations over a half-precision
/// K/V cache, which decoding then reads at half the bytes.
public protocol AttentionElement: Sendable {
    /// How the library stores this type.
    static var attentionElementType: AttentionElementType { get }
}

extension Float: AttentionElement {
    public static var attentionElementType: AttentionElementType { .float32 }
}

#if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
extension Float16: AttentionElement {
    public static var attentionElementType: AttentionElementType { .float16 }
}
#endif

extension BFloat16: AttentionElement {
    public static var attentionElementType: AttentionElementType { .bfloat16 }
}
