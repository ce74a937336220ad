import ArgumentParser
import FlashAttention

/// The implementations the command-line tools can run, by the names they take.
public enum ToolImplementation: String, CaseIterable, Sendable, Codable, ExpressibleByArgument {
    /// Flash with the kernels the library picks for this CPU.
    case flash
    /// The materialised OpenBLAS baseline.
    case naive
    /// Flash forced onto one ISA's kernels, to compare the paths.
    case flashPortable = "flash-portable"
    case flashAVX2 = "flash-avx2"
    case flashAVX512 = "flash-avx512"
    case flashAVX512BF16 = "flash-avx512bf16"
    case flashAVX512AMX = "flash-avx512amx"
    case flashNEON = "flash-neon"
    case flashNEONBF16 = "flash-neonbf16"

    /// Also accepts `flash-scalar` for `flash-portable`.
    public init?(argument: String) {
        if argument == "flash-scalar" { self = .flashPortable; return }
        self.init(rawValue: argument)
    }

    /// The library implementation.
    public var implementation: AttentionImplementation { self == .naive ? .naive : .flash }

    /// The kernel ISA it forces (`.automatic` for flash and naive).
    public var kernel: KernelISA {
        switch self {
        case .flash, .naive: .automatic
        case .flashPortable: .portable
        case .flashAVX2: .avx2
        case .flashAVX512: .avx512
        case .flashAVX512BF16: .avx512bf16
        case .flashAVX512AMX: .avx512amx
        case .flashNEON: .neon
        case .flashNEONBF16: .neonbf16
        }
    }

    /// Whether this CPU can run it.
    public var isSupported: Bool {
        kernel == .automatic || FlashAttention.supportedKernels.contains(kernel)
    }
}
