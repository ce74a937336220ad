import FlashAttention

/// How long and how often each case runs.
public struct TimingPolicy: Sendable, Hashable, Codable {
    /// Untimed runs first (caches, pages, thread pools).
    public var warmup: Int
    /// At least this many timed runs.
    public var repeats: Int
    /// Keep repeating until this many seconds were spent timing the case.
    public var minTime: Double

    public init(warmup: Int = 1, repeats: Int = 3, minTime: Double = 0.25) {
        self.warmup = warmup
        self.repeats = repeats
        self.minTime = minTime
    }
}

/// One measured (configuration, implementation).
public struct CaseResult: Sendable, Codable {
    public var configuration: BenchConfiguration
    public var implementation: BenchImplementation
    /// `nil` when the case was skipped; `skipReason` then says why.
    public var timing: TimingSummary?
    public var skipReason: String?
    public var flops: Double
    public var gflops: Double?
    /// GFLOP/s as a fraction of the sgemm roofline measured in the same run.
    public var rooflineFraction: Double?
    /// The most resident memory the case added at any moment (bytes), if measurable.
    public var peakExtraBytes: Int?
    /// What the library reports it allocates (flash workspace; the naive score matrix).
    public var workspaceBytes: Int
    /// Flash over naive for the same configuration (on the flash row).
    public var speedupOverNaive: Double?
    /// max |flash − naive| over the outputs of this configuration.
    public var maxAbsDifference: Double?

    public init(configuration: BenchConfiguration, implementation: BenchImplementation,
                flops: Double, workspaceBytes: Int) {
        self.configuration = configuration
        self.implementation = implementation
        self.flops = flops
        self.workspaceBytes = workspaceBytes
    }
}

/// Seeded inputs and a preallocated output for one configuration.
struct CaseBuffers {
    var query: [Float]
    var key: [Float]
    var value: [Float]
    var output: [Float]

    init(_ shape: AttentionShape, seed: UInt64) {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> Float {  // xorshift64*: deterministic, fast, uniform in [-0.5, 0.5)
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return Float((state &* 0x2545_F491_4F6C_DD1D) >> 40) / Float(1 << 24) - 0.5
        }
        query = (0 ..< shape.queryCount).map { _ in next() }
        key = (0 ..< shape.keyCount).map { _ in next() }
        value = (0 ..< shape.valueCount).map { _ in next() }
        output = [Float](repeating: 0, count: shape.outputCount)
    }

    /// One forward call into the preallocated output.
    mutating func run(_ options: AttentionOptions, shape: AttentionShape) throws {
        try query.withUnsafeBufferPointer { q in
            try key.withUnsafeBufferPointer { k in
                try value.withUnsafeBufferPointer { v in
                    try output.withUnsafeMutableBufferPointer { o in
                        try FlashAttention.forward(query: q, key: k, value: v, output: o,
                                                   shape: shape, options: options)
                    }
                }
            }
        }
    }
}

/// Runs a sweep and reports progress through a callback.
public struct BenchRunner {
    public var policy: TimingPolicy
    public var maxNaiveBytes: Int
    /// The sgemm roofline per thread count.
    public var rooflines: [Int: Roofline]
    public var progress: (String) -> Void

    public init(policy: TimingPolicy, maxNaiveBytes: Int, rooflines: [Int: Roofline],
                progress: @escaping (String) -> Void = { _ in }) {
        self.policy = policy
        self.maxNaiveBytes = maxNaiveBytes
        self.rooflines = rooflines
        self.progress = progress
    }

    public func run(_ configurations: [BenchConfiguration],
                    implementations: [BenchImplementation]) throws -> [CaseResult] {
        var results: [CaseResult] = []
        var memory = PeakMemory()
        let totalWork = configurations.reduce(0) { $0 + $1.forwardFlops } * Double(implementations.count)
        var doneWork = 0.0
        let start = monotonicSeconds()
        let totalCases = configurations.count * implementations.count
        var caseIndex = 0
        for config in configurations {
            let shape = config.shape
            var buffers = CaseBuffers(shape, seed: UInt64(config.queryLength * 131 + config.keyLength * 17 + config.headDim))
            var outputs: [BenchImplementation: [Float]] = [:]
            var rows: [CaseResult] = []
            for impl in implementations {
                caseIndex += 1
                let elapsed = monotonicSeconds() - start
                let eta = doneWork > 0 ? elapsed / doneWork * (totalWork - doneWork) : .nan
                progress("case \(caseIndex)/\(totalCases) \(impl.rawValue) \(Self.label(config))"
                    + "  elapsed \(Self.seconds(elapsed))"
                    + (eta.isFinite ? "  remaining ~\(Self.seconds(eta))" : ""))
                doneWork += config.forwardFlops
                var row = CaseResult(configuration: config, implementation: impl, flops: config.forwardFlops,
                                     workspaceBytes: 0)
                let options = AttentionOptions(causal: config.causal.mask,
                                               threadCount: config.threads,
                                               implementation: impl.library, kernel: impl.kernel)
                if impl != .naive && !FlashAttention.supportedKernels.contains(impl.kernel)
                    && impl.kernel != .automatic {
                    row.skipReason = "this CPU does not support \(impl.kernel.rawValue)"
                    rows.append(row)
                    continue
                }
                switch impl {
                case .flash, .flashPortable, .flashAVX2, .flashAVX512:
                    row.workspaceBytes = try FlashAttention.workspaceBytes(shape: shape, options: options)
                case .naive:
                    row.workspaceBytes = config.naiveScoreBytes
                    if config.naiveScoreBytes > maxNaiveBytes {
                        row.skipReason = "naive needs \(config.naiveScoreBytes) bytes for its "
                            + "score matrix (over --max-naive-bytes \(maxNaiveBytes))"
                        rows.append(row)
                        continue
                    }
                    Roofline.setBLASThreads(config.threads)
                }
                for _ in 0 ..< policy.warmup { try buffers.run(options, shape: shape) }
                memory.reset()
                var times: [Double] = []
                var spent = 0.0
                while times.count < max(1, policy.repeats) || spent < policy.minTime {
                    let t0 = monotonicSeconds()
                    try buffers.run(options, shape: shape)
                    let t = monotonicSeconds() - t0
                    times.append(t)
                    spent += t
                }
                row.peakExtraBytes = PeakMemory.isAvailable ? memory.peakAboveReset() : nil
                let timing = TimingSummary(times)
                row.timing = timing
                row.gflops = config.forwardFlops / timing.median / 1e9
                if let roof = rooflines[config.threads] {
                    row.rooflineFraction = row.gflops.map { $0 / roof.gflops }
                }
                outputs[impl] = buffers.output
                rows.append(row)
            }
            // Every flash row beside naive: speedup and agreement (the largest on the naive row).
            if let naive = outputs[.naive],
               let n = rows.firstIndex(where: { $0.implementation == .naive }),
               let nt = rows[n].timing {
                for f in rows.indices where rows[f].implementation != .naive {
                    guard let flash = outputs[rows[f].implementation], let ft = rows[f].timing
                    else { continue }
                    rows[f].speedupOverNaive = nt.median / ft.median
                    var diff = 0.0
                    for (a, b) in zip(flash, naive) { diff = max(diff, Double(abs(a - b))) }
                    rows[f].maxAbsDifference = diff
                    rows[n].maxAbsDifference = max(rows[n].maxAbsDifference ?? 0, diff)
                }
            }
            results += rows
        }
        progress("done: \(totalCases) cases in \(Self.seconds(monotonicSeconds() - start))")
        return results
    }

    static func label(_ c: BenchConfiguration) -> String {
        "B\(c.batch) H\(c.queryHeads)/\(c.keyValueHeads) N\(c.queryLength)"
            + (c.keyLength == c.queryLength ? "" : "x\(c.keyLength)")
            + " D\(c.headDim) \(c.causal.rawValue) T\(c.threads)"
    }

    static func seconds(_ s: Double) -> String {
        s < 60 ? "\(Int(s.rounded()))s" : "\(Int(s) / 60)m\(Int(s) % 60)s"
    }
}
