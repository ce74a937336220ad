import ArgumentParser
import Foundation


/// `attention-parity`: checks our attention against tensors saved by PyTorch or NumPy.
public struct ParityCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "attention-parity",
        abstract: "Compares swift-flash-attention with expected tensors in .npy case directories.",
        discussion: """
        A case directory holds q.npy, k.npy, v.npy, out.npy, optionally lse.npy, optionally \
        dout.npy with the expected dq.npy, dk.npy, dv.npy (checked through the backward), and \
        case.json with "scale", "causal" ("none", "bottom_right", "top_left"), "window" \
        ([left, right], −1 = unbounded), "softcap" (number), "alibi_slopes" (a .npy of Hq \
        slopes), "query_lengths" and "key_lengths" (B integers: padded batches) and "mask" \
        ({"file": …, "kind": "bool" | "additive"}, broadcastable to [B, Hq, Lq, Lk]). A tensor \
        passes when max |ours − expected| ≤ atol + rtol · max |expected| and NaN/inf agree. \
        A case asking for a feature the library lacks reports "unsupported: <feature>" and \
        fails. Exits 1 if any case fails. With --write, runs flash on each case's inputs and \
        writes out.npy and lse.npy (and the gradients, given dout.npy) into the directory.
        """)

    @Argument(help: "Case directories.")
    public var directories: [String]

    @Option(help: "Absolute tolerance.") public var atol = 1e-5
    @Option(help: "Tolerance relative to the expected tensor's max magnitude.") public var rtol = 1e-5

    @Option(parsing: .upToNextOption,
            help: "Implementations: flash, naive, flash-portable, flash-avx2, flash-avx512, flash-avx512bf16, flash-avx512amx, flash-neon, flash-neonbf16.")
    public var impl: [ParityImplementation] = [.flash, .naive]

    @Flag(help: "Print the report as JSON.") public var json = false

    @Flag(help: "Write our out.npy and lse.npy into each case directory instead of checking.")
    public var write = false

    @Flag(help: "With --write, replace existing out.npy / lse.npy.") public var overwrite = false

    public init() {}

    public func validate() throws {
        guard !directories.isEmpty else { throw ValidationError("give at least one case directory") }
        guard atol >= 0, rtol >= 0 else { throw ValidationError("--atol and --rtol must be ≥ 0") }
    }

    public func run() throws {
        if write {
            var failed = false
            for dir in directories {
                do {
                    for path in try ParityChecker.write(directory: dir, implementation: impl.first ?? .flash,
                                                        overwrite: overwrite) {
                        print("wrote \(path)")
                    }
                } catch {
                    FileHandle.standardError.write(Data("\(error)\n".utf8))
                    failed = true
                }
            }
            if failed { throw ExitCode(1) }
            return
        }
        let checker = ParityChecker(atol: atol, rtol: rtol, implementations: impl)
        let results = directories.map(checker.check(directory:))
        print(json ? try ParityReport.json(results, atol: atol, rtol: rtol)
                   : ParityReport.text(results, atol: atol, rtol: rtol), terminator: "")
        if !results.allSatisfy(\.passed) { throw ExitCode(1) }
    }
}
