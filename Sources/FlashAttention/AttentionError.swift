/// Why an attention call refused its arguments. Nothing was written to any output.
///
/// Arguments are named as in the Swift API: `"query"`, `"key"`, `"value"`, `"output"`,
/// `"logSumExp"`, `"shape.queryHeads"`, `"options.scale"`, …
///
/// ```swift
/// do {
///     _ = try FlashAttention.forward(query: q, key: k, value: v, shape: shape)
/// } catch let error as AttentionError {
///     print(error)   // e.g. "shape.queryHeads (8) is not a multiple of shape.keyValueHeads (3)"
/// }
/// ```
public enum AttentionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A shape extent is zero, negative or larger than 2³¹ − 1.
    case invalidExtent(argument: String, value: Int)
    /// `queryHeads` is not a multiple of `keyValueHeads`.
    case headCountMismatch(queryHeads: Int, keyValueHeads: Int)
    /// A tensor's strides are negative or make two of its elements share an address.
    case invalidStrides(argument: String, strides: AttentionStrides, reason: String)
    /// A buffer holds fewer elements than its shape and strides address.
    case bufferTooSmall(argument: String, required: Int, count: Int)
    /// An array does not hold exactly the elements its shape needs.
    case wrongCount(argument: String, expected: Int, count: Int)
    /// An output buffer shares memory with an input or with the other output.
    case overlappingBuffers(argument: String, other: String)
    /// A size does not fit in memory addresses.
    case sizeOverflow(argument: String)
    /// The scale is infinite or NaN.
    case invalidScale(Float)
    /// A sliding-window side is negative (use `nil` for unbounded) or larger than 2³¹ − 1.
    case invalidWindow(left: Int?, right: Int?)
    /// The soft-cap is zero, negative, infinite or NaN.
    case invalidSoftcap(Float)
    /// The ALiBi slopes are not one finite value per query head.
    case invalidALiBiSlopes(reason: String)
    /// Per-batch lengths are not one value per batch entry within the extent.
    case invalidLengths(argument: String, reason: String)
    /// Packed-sequence offsets are not `batch + 1` values from 0, non-decreasing and within the
    /// packed extent, or are given together with per-batch lengths for the same side.
    case invalidSequenceOffsets(argument: String, reason: String)
    /// The mask's strides are negative or address more elements than it holds.
    case invalidMask(reason: String)
    /// The thread count is zero, negative or larger than `Int32.max`.
    case invalidThreadCount(Int)
    /// ``AttentionOptions/keySplitSize`` is negative.
    case invalidKeySplitSize(Int)
    /// Memory for the workspace (flash) or the score matrix (naive) could not be allocated.
    case outOfMemory(argument: String)
    /// The backward was not given the forward's log-sum-exp.
    case missingLogSumExp
    /// The requested kernel ISA does not run on this CPU.
    case unsupportedKernel(KernelISA)
    /// A tensor's element type is not supported in this combination (for example a half
    /// precision backward).
    case unsupportedElementType(argument: String, reason: String)
    /// A paged K/V description is inconsistent: a count, an offset, a page index out of the
    /// pool, a page listed twice where pages are exclusive, a length out of range.
    case invalidPages(argument: String, reason: String)
    /// A buffer the call needs has no storage (an empty buffer, or a nil base address).
    case missingBuffer(argument: String)
    /// The C kernel reported a status this wrapper does not expect.
    case kernelFailure(status: Int, message: String)

    /// A sentence naming the argument and its offending values.
    public var description: String {
        switch self {
        case let .invalidExtent(argument, value):
            return "\(argument) is \(value); it must be between 1 and \(Int32.max)"
        case let .headCountMismatch(queryHeads, keyValueHeads):
            return "shape.queryHeads (\(queryHeads)) is not a multiple of "
                + "shape.keyValueHeads (\(keyValueHeads))"
        case let .invalidStrides(argument, strides, reason):
            return "\(argument) strides (batch \(strides.batch), head \(strides.head), "
                + "sequence \(strides.sequence)) are invalid: \(reason)"
        case let .bufferTooSmall(argument, required, count):
            return "\(argument) holds \(count) elements; its shape and strides need \(required)"
        case let .wrongCount(argument, expected, count):
            return "\(argument) has \(count) elements; its shape needs exactly \(expected)"
        case let .overlappingBuffers(argument, other):
            return "\(argument) overlaps \(other); outputs must not share memory with any input"
        case let .sizeOverflow(argument):
            return "\(argument) is too large: its byte size overflows"
        case let .invalidScale(scale):
            return "options.scale is \(scale); it must be finite"
        case let .invalidWindow(left, right):
            return "options.window is (left \(left.map(String.init) ?? "nil"), right "
                + "\(right.map(String.init) ?? "nil")); each side must be nil or between 0 and \(Int32.max)"
        case let .missingBuffer(argument):
            return "\(argument) has no storage; the call needs its elements"
        case let .invalidSoftcap(value):
            return "options.softcap is \(value); it must be finite and > 0 (nil turns it off)"
        case let .invalidALiBiSlopes(reason):
            return "options.alibiSlopes: \(reason)"
        case let .invalidLengths(argument, reason):
            return "\(argument): \(reason)"
        case let .invalidSequenceOffsets(argument, reason):
            return "\(argument): \(reason)"
        case let .invalidMask(reason):
            return "options.mask: \(reason)"
        case let .invalidThreadCount(count):
            return "options.threadCount is \(count); it must be between 1 and \(Int32.max)"
        case let .invalidKeySplitSize(size):
            return "options.keySplitSize is \(size); it must be 0 (automatic), Int.max (no split) "
                + "or a positive number of keys"
        case let .outOfMemory(argument):
            return "out of memory allocating the \(argument)"
        case .missingLogSumExp:
            return "logSumExp is missing; the backward needs the forward's log-sum-exp "
                + "(forwardWithLogSumExp or forwardForTraining)"
        case let .unsupportedKernel(kernel):
            return "options.kernel is \(kernel.rawValue), which this CPU does not support"
        case let .unsupportedElementType(argument, reason):
            return "\(argument): unsupported element type: \(reason)"
        case let .invalidPages(argument, reason):
            return "\(argument): \(reason)"
        case let .kernelFailure(status, message):
            return "attention kernel failed with status \(status): \(message)"
        }
    }
}
