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
    /// Bytes of K and V a forward case must read (see ``BenchConfiguration/keyValueBytes``);
    /// nil for the backward pass.
    public var keyValueBytes: Int?
    /// `keyValueBytes` over the median time, in decimal GB/s.
    public var keyValueGBps: Double?
    /// `keyValueGBps` as a fraction of the memory-bandwidth roof measured in the same run.
    public var bandwidthFraction: Double?
    /// The best bandwidth-roof pass read between this case's timed runs (memory-bound decode
    /// cases only: see ``BenchRunner/bandwidthProbes``), in GB/s.
    public var localBandwidthGBps: Double?
    /// `keyValueGBps` as a fraction of `localBandwidthGBps`.
    public var localBandwidthFraction: Double?
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
        if configuration.pass == .forward { keyValueBytes = configuration.keyValueBytes }
    }
}

/// Seeded inputs and a preallocated output for one configuration.
struct CaseBuffers {
    var query: [Float]
    var key: [Float]
    var value: [Float]
    var output: [Float]
    // Backward: the forward's output and log-sum-exp, ∂loss/∂output and the gradients.
    var logSumExp: [Float] = []
    var outputGradient: [Float] = []
    var dq: [Float] = [], dk: [Float] = [], dv: [Float] = []
    /// Half-precision cases: the tensors in their storage types (the Float arrays are then
    /// emptied).
    var stored: (q: StoredTensor, k: StoredTensor, v: StoredTensor, o: StoredTensor)?
    /// Half-precision backward cases: dO and the gradients in their storage types.
    var storedGradients: StoredGradients?
    /// Paged cases: Q, O and the K/V pools (the contiguous tensors are then emptied).
    var paged: PagedTensors?

    /// Moves K and V into page pools of `pageSize` keys, pages in a seeded random order of
    /// the pool, in `config`'s storage; Q and O become stored tensors beside them.
    mutating func page(_ config: BenchConfiguration, pageSize: Int) {
        let buffer = config.bufferShape
        let key = stored?.k.floats ?? self.key, value = stored?.v.floats ?? self.value
        let strides = AttentionTensorStrides.packed(.bhld, shape: buffer)
        // The contiguous buffers pack per-sequence keys (a paged configuration's keyOffsets is nil).
        let offsets = config.perSequence.map { BenchConfiguration.offsets($0.keys) }
        let pools = PagedPools(key: key, value: value, keyStrides: strides.key,
                               valueStrides: strides.value, keyOffsets: offsets,
                               keys: config.keysPerSequence, heads: config.keyValueHeads,
                               headDim: config.headDim, valueHeadDim: config.headDim,
                               pageSize: pageSize, layout: config.pageLayout == "nhd" ? .nhd : .hnd,
                               seed: UInt64(config.keyLength &* 31 &+ pageSize))
        paged = PagedTensors(query: stored?.q ?? StoredTensor(query, as: .fp32),
                             key: StoredTensor(pools.key, as: config.storage.keyValue),
                             value: StoredTensor(pools.value, as: config.storage.keyValue),
                             output: stored?.o ?? StoredTensor(output, as: .fp32),
                             pages: pools.pages)
        (self.query, self.key, self.value, self.output) = ([], [], [], [])
        stored = nil
    }

    init(_ shape: AttentionShape, seed: UInt64, pass: BenchPass = .forward,
         storage: BenchStorage = .fp32) {
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
        if storage != .fp32 {
            stored = (StoredTensor(query, as: storage.query), StoredTensor(key, as: storage.keyValue),
                      StoredTensor(value, as: storage.keyValue), StoredTensor(output, as: storage.query))
            (query, key, value, output) = ([], [], [], [])
        }
        if pass == .backward {
            outputGradient = (0 ..< shape.outputCount).map { _ in next() }
            dq = [Float](repeating: 0, count: shape.queryCount)
            dk = [Float](repeating: 0, count: shape.keyCount)
            dv = [Float](repeating: 0, count: shape.valueCount)
            if storage != .fp32 {
                storedGradients = StoredGradients(
                    outputGradient: StoredTensor(outputGradient, as: storage.query),
                    query: StoredTensor(dq, as: storage.query), key: StoredTensor(dk, as: storage.keyValue),
                    value: StoredTensor(dv, as: storage.keyValue))
                (outputGradient, dq, dk, dv) = ([], [], [], [])
            }
        }
    }

    /// The forward's output and log-sum-exp, which every backward run reads (untimed).
    mutating func prepareBackward(_ options: AttentionOptions, shape: AttentionShape) throws {
        var forward = options
        forward.implementation = .flash
        if let s = stored {
            logSumExp = [Float](repeating: 0, count: shape.batch * shape.queryHeads * shape.queryLength)
            try logSumExp.withUnsafeMutableBufferPointer { l in
                try forwardStored(query: s.q, key: s.k, value: s.v, output: s.o, logSumExp: l,
                                  shape: shape, options: forward)
            }
            return
        }
        (output, logSumExp) = try FlashAttention.forwardWithLogSumExp(
            query: query, key: key, value: value, shape: shape, options: forward)
    }

    /// One backward call into the preallocated gradients.
    mutating func runBackward(_ options: AttentionOptions, shape: AttentionShape) throws {
        if let s = stored, let g = storedGradients {
            try logSumExp.withUnsafeBufferPointer { l in
                try backwardStored(query: s.q, key: s.k, value: s.v, output: s.o, logSumExp: l,
                                   gradients: g, shape: shape, options: options)
            }
            return
        }
        try query.withUnsafeBufferPointer { q in
        try key.withUnsafeBufferPointer { k in
        try value.withUnsafeBufferPointer { v in
        try output.withUnsafeBufferPointer { o in
        try logSumExp.withUnsafeBufferPointer { l in
        try outputGradient.withUnsafeBufferPointer { g in
        try dq.withUnsafeMutableBufferPointer { dqp in
        try dk.withUnsafeMutableBufferPointer { dkp in
        try dv.withUnsafeMutableBufferPointer { dvp in
            try FlashAttention.backward(query: q, key: k, value: v, output: o, logSumExp: l,
                                        outputGradient: g, queryGradient: dqp, keyGradient: dkp,
                                        valueGradient: dvp, shape: shape, options: options)
        } } } } } } } } }
    }

    /// The pass's result, for comparing implementations.
    var result: [Float] {
        if let p = paged { return p.output.floats }
        if let g = storedGradients { return g.query.floats + g.key.floats + g.value.floats }
        return stored?.o.floats ?? (dq.isEmpty ? output : dq + dk + dv)
    }

    /// One forward call into the preallocated output.
    mutating func run(_ options: AttentionOptions, shape: AttentionShape) throws {
        if let p = paged {
            try forwardPaged(p, shape: shape, options: options)
            return
        }
        if let s = stored {
            try forwardStored(query: s.q, key: s.k, value: s.v, output: s.o, shape: shape,
                              options: options)
            return
        }
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
    /// Bandwidth-roof buffers per thread count. A decode-shaped forward case (Lq ≤ 16) whose
    /// K+V reads are at least `localRoofMinBytes` reads one pass of its thread count's probe
    /// before its first timed run, after every timed run that ends 50 ms or more after the
    /// previous pass, and after its last run (none of them timed), so its GB/s can be set
    /// against the bandwidth of the same seconds: on a shared machine the read bandwidth moves
    /// by half within a minute.
    public var bandwidthProbes: [Int: BandwidthProbe] = [:]
    /// Smaller cases (caches: the passes would evict them) are not probed. Default 2 × L3.
    public var localRoofMinBytes: Int = 2 * max(BandwidthRoof.l3Bytes, 32 << 20)

    /// Whether `config` is memory-bound decode that reads a local roof (given a probe for its
    /// thread count): a forward pass with Lq ≤ 16 reading at least `localRoofMinBytes` of K+V.
    public func readsLocalRoof(_ config: BenchConfiguration) -> Bool {
        config.pass == .forward && config.queryLength <= 16 && config.keyValueBytes >= localRoofMinBytes
    }
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
        let totalWork = configurations.reduce(0) { $0 + $1.flops } * Double(implementations.count)
        var doneWork = 0.0
        let start = monotonicSeconds()
        let totalCases = configurations.count * implementations.count
        var caseIndex = 0
        for config in configurations {
            let shape = config.shape
            var buffers = CaseBuffers(config.bufferShape, seed: UInt64(config.queryLength * 131 + config.keyLength * 17 + config.headDim),
                                      pass: config.pass, storage: config.storage)
            if let pageSize = config.pageSize { buffers.page(config, pageSize: pageSize) }
            let run: (inout CaseBuffers, AttentionOptions) throws -> Void = config.pass == .forward
                ? { try $0.run($1, shape: shape) } : { try $0.runBackward($1, shape: shape) }
            var outputs: [BenchImplementation: [Float]] = [:]
            var rows: [CaseResult] = []
            for impl in implementations {
                caseIndex += 1
                let elapsed = monotonicSeconds() - start
                let eta = doneWork > 0 ? elapsed / doneWork * (totalWork - doneWork) : .nan
                progress("case \(caseIndex)/\(totalCases) \(impl.rawValue) \(Self.label(config))"
                    + "  elapsed \(Self.seconds(elapsed))"
                    + (eta.isFinite ? "  remaining ~\(Self.seconds(eta))" : ""))
                doneWork += config.flops
                var row = CaseResult(configuration: config, implementation: impl, flops: config.flops,
                                     workspaceBytes: 0)
                let options = AttentionOptions(causal: config.causal.mask,
                                               window: config.window, softcap: config.softcap,
                                               alibiSlopes: config.alibiSlopes,
                                               mask: config.elementMask,
                                               blockMask: config.blockMask,
                                               threadCount: config.threads,
                                               implementation: impl.implementation,
                                               kernel: impl.kernel,
                                               querySequenceOffsets: config.sequenceOffsets,
                                               keySequenceOffsets: config.keyOffsets,
                                               keySplitSize: config.kvSplit.keySplitSize)
                if !impl.isSupported {
                    row.skipReason = "this CPU does not support \(impl.kernel.rawValue)"
                    rows.append(row)
                    continue
                }
                switch impl {
                case .flash, .flashPortable, .flashAVX2, .flashAVX512, .flashAVX512BF16, .flashAVX512AMX, .flashNEON,
                     .flashNEONBF16:
                    row.workspaceBytes = config.pass == .forward
                        ? try FlashAttention.workspaceBytes(shape: shape, options: options,
                                                            queryType: config.storage.query.elementType,
                                                            keyValueType: config.storage.keyValue.elementType)
                        : try FlashAttention.backwardWorkspaceBytes(shape: shape, options: options,
                                                                    queryType: config.storage.query.elementType,
                                                                    keyValueType: config.storage.keyValue.elementType)
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
                if config.pass == .backward && buffers.logSumExp.isEmpty {
                    try buffers.prepareBackward(options, shape: shape)
                }
                for _ in 0 ..< policy.warmup { try run(&buffers, options) }
                let probe = readsLocalRoof(config) ? bandwidthProbes[config.threads] : nil
                var passes: [Double] = []
                var lastPass = -Double.infinity
                func readProbe(always: Bool) {
                    guard let probe, always || monotonicSeconds() - lastPass >= 0.05 else { return }
                    if let g = probe.passGBps() { passes.append(g) }
                    lastPass = monotonicSeconds()
                }
                readProbe(always: true)
                memory.reset()
                var times: [Double] = []
                var spent = 0.0
                while times.count < max(1, policy.repeats) || spent < policy.minTime {
                    let t0 = monotonicSeconds()
                    try run(&buffers, options)
                    let t = monotonicSeconds() - t0
                    times.append(t)
                    spent += t
                    readProbe(always: false)
                }
                readProbe(always: true)
                row.peakExtraBytes = PeakMemory.isAvailable ? memory.peakAboveReset() : nil
                let timing = TimingSummary(times)
                row.timing = timing
                row.gflops = config.flops / timing.median / 1e9
                row.keyValueGBps = row.keyValueBytes.map { Double($0) / timing.median / 1e9 }
                if let local = passes.max(), let g = row.keyValueGBps {
                    row.localBandwidthGBps = local
                    row.localBandwidthFraction = g / local
                }
                if let roof = rooflines[config.threads] {
                    row.rooflineFraction = row.gflops.map { $0 / roof.gflops }
                }
                outputs[impl] = buffers.result
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
            + (c.kvSplit == .automatic ? "" : " split \(c.kvSplit)")
            + (c.storage == .fp32 ? "" : " \(c.storage)")
            + (c.pass == .forward ? "" : " backward")
            + (c.window == nil ? "" : " window(\(c.windowLeft ?? -1),\(c.windowRight ?? -1))")
            + (c.softcap.map { " softcap \($0)" } ?? "") + (c.alibi ? " alibi" : "")
            + (c.blockSparseKeep.map { " block-sparse \($0)" } ?? "")
            + (c.maskDensity.map { " mask \($0)" } ?? "") + (c.additiveMask ? " additive-mask" : "")
            + (c.varlen.map { " varlen \($0.rawValue) (longest \(c.sequenceLengths?.max() ?? 0))" } ?? "")
            + (c.serving ? " serving (contexts \(c.keysPerSequence.map(String.init).joined(separator: ",")))" : "")
            + (c.pageSize.map { " paged \($0) \(c.pageLayout)" } ?? "")
    }

    static func seconds(_ s: Double) -> String {
        s < 60 ? "\(Int(s.rounded()))s" : "\(Int(s) / 60)m\(Int(s) % 60)s"
    }
}
