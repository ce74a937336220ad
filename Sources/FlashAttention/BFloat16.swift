import CFlashAttention

/// A bfloat16 value: the top 16 bits of a `Float` (8 exponent bits, 7 mantissa bits), the
/// storage type of many models' weights and K/V caches. It is a storage type: convert to
/// `Float` to compute. Conversions are the library's own (the C `fa_float_to_bf16` /
/// `fa_bf16_to_float`): from `Float`, round to nearest, ties to even, ±inf past the largest
/// finite value, NaN stays a (quiet) NaN; to `Float`, exact.
///
/// Equality and order are those of the `Float` values (so NaN is unordered and +0 == −0);
/// ``bitPattern`` tells encodings apart.
@frozen
public struct BFloat16: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The 16 stored bits.
    public var bitPattern: UInt16

    /// The value with these bits.
    @inlinable
    public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    /// `value` rounded to the nearest bfloat16 (ties to even).
    public init(_ value: Float) { bitPattern = fa_float_to_bf16(value) }

    /// The value as a `Float` (exact).
    public var floatValue: Float { fa_bf16_to_float(bitPattern) }

    /// Whether the value is a NaN (any payload).
    public var isNaN: Bool { bitPattern & 0x7FFF > 0x7F80 }

    public static func == (a: BFloat16, b: BFloat16) -> Bool { a.floatValue == b.floatValue }
    public static func < (a: BFloat16, b: BFloat16) -> Bool { a.floatValue < b.floatValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(floatValue) }

    /// The value as `Float` prints it.
    public var description: String { floatValue.description }
}

extension Float {
    /// The bfloat16 `value`, exactly.
    @inlinable
    public init(_ value: BFloat16) { self = value.floatValue }
}
