import ArgumentParser
import FlashAttention
import Foundation

/// A first, small benchmark: flash beside naive for a few sequence lengths.
@main
struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention-bench",
        abstract: "Times flash and naive attention forward passes.")

    @Option(parsing: .upToNextOption, help: "Sequence lengths (Lq = Lk).")
    var seqLens: [Int] = [256, 512, 1024, 2048]

    @Option(help: "Head dimension.") var headDim = 64
    @Option(help: "Query (and key/value) heads.") var heads = 8
    @Option(help: "Causal: none, bottom-right or top-left.") var causal = "none"
    @Option(help: "Threads (default: all).") var threads: Int?
    @Option(help: "Timed repeats per case (the median is reported).") var repeats = 5

    func run() throws {
        let mask: CausalMask = switch causal {
        case "bottom-right": .bottomRight
        case "top-left": .topLeft
        default: .none
        }
        print("len   impl    median ms   GFLOP/s")
        for n in seqLens {
            let shape = AttentionShape(queryHeads: heads, queryLength: n, headDim: headDim)
            let q = (0 ..< shape.queryCount).map { Float(($0 * 7919) % 997) / 997 - 0.5 }
            let k = (0 ..< shape.keyCount).map { Float(($0 * 104_729) % 991) / 991 - 0.5 }
            let v = (0 ..< shape.valueCount).map { Float(($0 * 1_299_709) % 983) / 983 - 0.5 }
            var pairs = 0.0
            for i in 0 ..< n { pairs += Double(mask == .none ? n : i + 1) }
            let flops = 4 * Double(heads * headDim) * pairs
            for impl in [AttentionImplementation.flash, .naive] {
                let options = AttentionOptions(causal: mask, threadCount: threads,
                                               implementation: impl)
                _ = try FlashAttention.forward(query: q, key: k, value: v, shape: shape,
                                               options: options)
                var times: [Double] = []
                for _ in 0 ..< repeats {
                    let start = now()
                    _ = try FlashAttention.forward(query: q, key: k, value: v, shape: shape,
                                                   options: options)
                    times.append(now() - start)
                }
                let median = times.sorted()[times.count / 2]
                print(String(format: "%-5d %-6@ %10.3f %9.1f", n, "\(impl)", median * 1e3,
                             flops / median / 1e9))
            }
        }
    }

    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
