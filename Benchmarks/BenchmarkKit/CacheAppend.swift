import FlashAttention

/// What one `KVCache.append` of a serving step costs: one token for each decode sequence of a
/// serving configuration, into a cache holding their contexts (pages of the configuration's
/// size), against the paged attention step over the same sequences that follows it.
public struct CacheAppendTiming: Sendable, Codable {
    public var sequences: Int
    public var pageSize: Int
    /// Median of the timed appends and of the attention steps after them, in seconds.
    public var appendSeconds: Double
    public var stepSeconds: Double
    public var fraction: Double { appendSeconds / stepSeconds }

    /// Fills a cache with the decode sequences' contexts, then times `steps` rounds of
    /// (append one token to each, attention of one query each), median of each.
    public static func measure(_ config: BenchConfiguration, pageSize: Int, steps: Int = 21) throws
        -> CacheAppendTiming?
    {
        guard let mix = config.perSequence else { return nil }
        let contexts = Array(mix.keys.prefix(config.batch))  // the decode sequences
        let (hkv, d, hq) = (config.keyValueHeads, config.headDim, config.queryHeads)
        let capacity = contexts.reduce(0) { $0 + ($1 + steps + pageSize) / pageSize + 1 }
        let cache = try KVCache<Float>(keyValueHeads: hkv, headDim: d, pageSize: pageSize, capacity: capacity)
        let ids = contexts.map { _ in cache.addSequence() }
        let chunk = 1024
        let rows = [Float](repeating: 0.01, count: chunk * hkv * d)
        for (id, n) in zip(ids, contexts) {
            var left = n
            while left > 0 {
                let t = min(chunk, left)
                try rows.withUnsafeBufferPointer { r in
                    try cache.append([id], keys: UnsafeBufferPointer(rebasing: r[0 ..< t * hkv * d]),
                                     values: UnsafeBufferPointer(rebasing: r[0 ..< t * hkv * d]), tokens: [t])
                }
                left -= t
            }
        }
        let token = (0 ..< ids.count * hkv * d).map { Float($0 % 7) * 0.1 }
        let q = [Float](repeating: 0.02, count: ids.count * hq * d)
        var o = [Float](repeating: 0, count: ids.count * hq * d)
        var appends: [Double] = [], attention: [Double] = []
        let options = AttentionOptions(threadCount: config.threads)
        for _ in 0 ..< steps {
            let t0 = monotonicSeconds()
            try token.withUnsafeBufferPointer { t in try cache.append(ids, keys: t, values: t) }
            let t1 = monotonicSeconds()
            try q.withUnsafeBufferPointer { qp in
                try o.withUnsafeMutableBufferPointer { op in
                    try cache.attention(query: qp, output: op, sequences: ids, queryHeads: hq, options: options)
                }
            }
            appends.append(t1 - t0)
            attention.append(monotonicSeconds() - t1)
        }
        return CacheAppendTiming(sequences: ids.count, pageSize: pageSize,
                                 appendSeconds: appends.sorted()[steps / 2],
                                 stepSeconds: attention.sorted()[steps / 2])
    }
}
