import FlashAttention
import Testing
import TestSupport

// KVCache: what a sequence holds is checked through attention — the cache's paged call must
// give the bits of the same keys and values stored contiguously (packed per sequence), and
// those match the float64 reference.

/// A cache under test and, beside it, every sequence's rows as plain arrays.
final class CacheModel {
    let cache: KVCache<Float>
    let heads: Int, dim: Int
    var rows: [KVCache<Float>.SequenceID: (k: [Float], v: [Float])] = [:]
    var rng: SplitMix64

    init(heads: Int = 2, dim: Int = 24, pageSize: Int, capacity: Int, seed: UInt64 = 5) throws {
        cache = try KVCache<Float>(keyValueHeads: heads, headDim: dim, pageSize: pageSize, capacity: capacity)
        self.heads = heads
        self.dim = dim
        rng = SplitMix64(seed: seed)
    }

    func add() -> KVCache<Float>.SequenceID {
        let id = cache.addSequence()
        rows[id] = ([], [])
        return id
    }

    /// Appends `tokens[i]` random rows to `ids[i]`, in one call.
    func append(_ ids: [KVCache<Float>.SequenceID], _ tokens: [Int]) throws {
        let n = tokens.reduce(0, +) * heads * dim
        let k = randomFloats(n, magnitude: 1, using: &rng), v = randomFloats(n, magnitude: 1, using: &rng)
        try k.withUnsafeBufferPointer { kp in
            try v.withUnsafeBufferPointer { vp in
                try cache.append(ids, keys: kp, values: vp, tokens: tokens)
            }
        }
        var at = 0
        for (id, t) in zip(ids, tokens) {
            let span = t * heads * dim
            rows[id]!.k += k[at ..< at + span]
            rows[id]!.v += v[at ..< at + span]
            at += span
        }
    }

    /// The cache's attention for `ids` (`queries[i]` rows each, bottom-right causal) and the
    /// same call on contiguous packed keys: (paged, contiguous, reference comparison).
    func attend(_ ids: [KVCache<Float>.SequenceID], queries: [Int], queryHeads: Int = 4,
                seed: UInt64 = 9) throws -> (paged: [Float], contiguous: [Float], reference: [Comparison]) {
        var r = SplitMix64(seed: seed)
        let total = queries.reduce(0, +)
        let q = randomFloats(total * queryHeads * dim, magnitude: 1, using: &r)
        var paged = [Float](repeating: .nan, count: total * queryHeads * dim)
        let options = AttentionOptions(causal: .bottomRight)
        try q.withUnsafeBufferPointer { qp in
            try paged.withUnsafeMutableBufferPointer { o in
                try cache.attention(query: qp, output: o, sequences: ids, queryLengths: queries,
                                    queryHeads: queryHeads, options: options)
            }
        }
        let lengths = ids.map { rows[$0]!.k.count / (heads * dim) }
        let keys = ids.flatMap { rows[$0]!.k }, values = ids.flatMap { rows[$0]!.v }
        let shape = AttentionShape(batch: ids.count, queryHeads: queryHeads, keyValueHeads: heads,
                                   queryLength: total, keyLength: max(1, lengths.reduce(0, +)), headDim: dim)
        var contiguousOptions = options
        contiguousOptions.layout = .blhd
        contiguousOptions.querySequenceOffsets = queries.reduce(into: [0]) { $0.append($0.last! + $1) }
        contiguousOptions.keySequenceOffsets = lengths.reduce(into: [0]) { $0.append($0.last! + $1) }
        let padded = keys.isEmpty ? [Float](repeating: 0, count: heads * dim) : keys
        let paddedV = values.isEmpty ? [Float](repeating: 0, count: heads * dim) : values
        let contiguous = try FlashAttention.forward(query: q, key: padded, value: paddedV, shape: shape,
                                                    options: contiguousOptions)
        // The float64 reference, sequence by sequence (each a batch-1 problem in .blhd).
        var comparisons: [Comparison] = []
        var at = 0
        for (b, id) in ids.enumerated() {
            let lq = queries[b], lk = lengths[b]
            defer { at += lq }
            guard lq > 0 else { continue }
            let s = AttentionShape(queryHeads: queryHeads, keyValueHeads: heads, queryLength: lq,
                                   keyLength: max(1, lk), headDim: dim)
            let st = AttentionTensorStrides.packed(.blhd, shape: s)
            let qb = Array(q[at * queryHeads * dim ..< (at + lq) * queryHeads * dim])
            let kb = lk == 0 ? [Float](repeating: 0, count: heads * dim) : rows[id]!.k
            let vb = lk == 0 ? [Float](repeating: 0, count: heads * dim) : rows[id]!.v
            let ref = referenceAttention(
                query: StridedTensor(data: qb, strides: st.query, extents: (1, queryHeads, lq, dim)),
                key: StridedTensor(data: kb, strides: st.key, extents: (1, heads, max(1, lk), dim)),
                value: StridedTensor(data: vb, strides: st.value, extents: (1, heads, max(1, lk), dim)),
                shape: s, scale: 1 / Double(Float(dim).squareRoot()), causal: .bottomRight,
                keyLengths: [lk])
            let out = Array(paged[at * queryHeads * dim ..< (at + lq) * queryHeads * dim])
            let c = compare(output: out, strides: st.output, logSumExp: nil, reference: ref, shape: s)
            comparisons.append(c)
        }
        return (paged, contiguous, comparisons)
    }

    func expectAgrees(_ ids: [KVCache<Float>.SequenceID], queries: [Int], _ note: String) throws {
        let (paged, contiguous, reference) = try attend(ids, queries: queries)
        #expect(paged.map(\.bitPattern) == contiguous.map(\.bitPattern), "\(note): paged differs from contiguous")
        #expect(!reference.isEmpty && reference.allSatisfy(\.passed), "\(note): \(reference)")
    }
}

@Suite("KVCache: a paged cache that owns its pages")
struct KVCacheTests {
    @Test("appends across page boundaries, one token and several at a time, decode and prefill rows")
    func appends() throws {
        let m = try CacheModel(pageSize: 3, capacity: 200)
        let a = m.add(), b = m.add(), c = m.add()
        try m.append([a, b, c], [1, 1, 1])
        try m.append([a, c], [7, 2])
        for _ in 0 ..< 5 { try m.append([a, b, c], [1, 1, 1]) }
        try m.append([b], [40])
        #expect(try m.cache.length(of: a) == 13 && m.cache.length(of: b) == 46 && m.cache.length(of: c) == 8)
        try m.expectAgrees([a, b, c], queries: [1, 1, 1], "decode")
        try m.expectAgrees([b, a, c], queries: [4, 1, 8], "speculative and prefill rows")
        #expect(m.cache.freePageCount == 200 - (5 + 16 + 3))
    }

    @Test("fork shares pages; diverging copies only the shared partial page; the parent never changes")
    func forkThenDiverge() throws {
        let m = try CacheModel(pageSize: 4, capacity: 50)
        let parent = m.add()
        try m.append([parent], [10])  // pages: 4, 4, 2 (partial)
        let before = try m.attend([parent], queries: [1]).paged
        let used = 50 - m.cache.freePageCount
        let child = try m.cache.fork(parent)
        m.rows[child] = m.rows[parent]
        #expect(m.cache.freePageCount == 50 - used, "a fork copies nothing")
        try m.append([child], [1])  // writes into the shared partial page: one copy
        #expect(m.cache.freePageCount == 50 - used - 1)
        try m.append([child], [6])  // 11 → 17 keys: fills the copy, then two new pages
        #expect(m.cache.freePageCount == 50 - used - 3)
        try m.append([parent], [3])  // its partial page is its own again: no copy, one new page
        #expect(m.cache.freePageCount == 50 - used - 4)
        try m.expectAgrees([parent, child], queries: [1, 2], "parent and child")
        // The parent's first 10 keys are unchanged: a query over them alone (a fork taken
        // before its last append, freed after) gives the old bits.
        let m2 = try CacheModel(pageSize: 4, capacity: 50)
        let p2 = m2.add()
        try m2.append([p2], [10])
        let c2 = try m2.cache.fork(p2)
        m2.rows[c2] = m2.rows[p2]
        try m2.append([c2], [5])
        #expect(try m2.attend([p2], queries: [1]).paged.map(\.bitPattern) == before.map(\.bitPattern))
    }

    @Test("free returns pages (shared ones when their last holder goes) and they are reused")
    func freeAndReuse() throws {
        let m = try CacheModel(pageSize: 8, capacity: 10)
        let a = m.add()
        try m.append([a], [20])  // 3 pages
        let f = try m.cache.fork(a)
        try m.cache.free(a)
        #expect(m.cache.freePageCount == 7, "the fork still holds the pages")
        try m.cache.free(f)
        #expect(m.cache.freePageCount == 10)
        let b = m.add()
        try m.append([b], [80])  // all 10 pages
        try m.expectAgrees([b], queries: [3], "reused pages")
        #expect(throws: KVCacheError.unknownSequence(a.rawValue)) { try m.cache.length(of: a) }
        #expect(throws: KVCacheError.unknownSequence(f.rawValue)) { try m.cache.free(f) }
    }

    @Test("exhaustion refuses the whole step and writes nothing")
    func exhaustion() throws {
        let m = try CacheModel(pageSize: 4, capacity: 3)
        let a = m.add(), b = m.add()
        try m.append([a, b], [4, 3])  // 2 pages
        let k = [Float](repeating: 1, count: 6 * 2 * 24)
        #expect(throws: KVCacheError.capacityExhausted(needed: 2, free: 1)) {
            try k.withUnsafeBufferPointer { try m.cache.append([a, b], keys: $0, values: $0, tokens: [5, 1]) }
        }
        #expect(try m.cache.length(of: a) == 4 && m.cache.length(of: b) == 3 && m.cache.freePageCount == 1)
        try m.expectAgrees([a, b], queries: [1, 1], "after the refusal")
        // A fork's write into a shared partial page needs a copy: counted too.
        let c = try m.cache.fork(b)
        m.rows[c] = m.rows[b]
        try m.append([c], [1])  // the copy takes the last page
        let d = try m.cache.fork(b)  // shares b's partial page again; no page is free
        let one = [Float](repeating: 1, count: 2 * 24)
        #expect(throws: KVCacheError.capacityExhausted(needed: 1, free: 0)) {
            try one.withUnsafeBufferPointer { try m.cache.append([d], keys: $0, values: $0) }
        }
        #expect(try m.cache.length(of: d) == 3)
    }

    @Test("misuse: unknown sequences, mismatched sizes and heads, bad geometry")
    func misuse() throws {
        #expect(throws: KVCacheError.invalidArgument(argument: "pageSize", reason: "0; it must be between 1 and \(Int32.max)")) {
            _ = try KVCache<Float>(keyValueHeads: 2, headDim: 8, pageSize: 0, capacity: 4)
        }
        let m = try CacheModel(pageSize: 4, capacity: 8)
        let a = m.add()
        let ghost = m.add()  // freed: as unknown as one never added
        try m.cache.free(ghost)
        let k = [Float](repeating: 1, count: 2 * 24)
        #expect(throws: KVCacheError.unknownSequence(ghost.rawValue)) {
            try k.withUnsafeBufferPointer { try m.cache.append([a, ghost], keys: $0, values: $0, tokens: [1, 0]) }
        }
        #expect(try m.cache.length(of: a) == 0, "nothing appended")
        #expect(throws: KVCacheError.mismatchedShape(argument: "keys", expected: 2 * 2 * 24, got: 48)) {
            try k.withUnsafeBufferPointer { try m.cache.append([a], keys: $0, values: $0, tokens: [2]) }
        }
        try m.append([a], [3])
        let q = [Float](repeating: 1, count: 3 * 24)
        var o = [Float](repeating: 0, count: 3 * 24)
        #expect(throws: KVCacheError.invalidArgument(argument: "queryHeads", reason: "3 is not a positive multiple of the cache's 2 key/value heads")) {
            try q.withUnsafeBufferPointer { qp in
                try o.withUnsafeMutableBufferPointer { op in
                    try m.cache.attention(query: qp, output: op, sequences: [a], queryHeads: 3)
                }
            }
        }
        let q2 = [Float](repeating: 1, count: 2 * 24)
        var o2 = [Float](repeating: 0, count: 2 * 24)
        #expect(throws: KVCacheError.unknownSequence(ghost.rawValue)) {
            try q2.withUnsafeBufferPointer { qp in
                try o2.withUnsafeMutableBufferPointer { op in
                    try m.cache.attention(query: qp, output: op, sequences: [ghost], queryHeads: 2)
                }
            }
        }
    }

    @Test("many tasks append to their own sequences at once")
    func concurrentAppends() async throws {
        let m = try CacheModel(pageSize: 5, capacity: 8 * 21)
        let ids = (0 ..< 8).map { _ in m.add() }
        let cache = m.cache
        let all: [[([Float], [Float])]] = try await withThrowingTaskGroup(of: (Int, [([Float], [Float])]).self) { group in
            for (n, id) in ids.enumerated() {
                group.addTask {
                    var rng = SplitMix64(seed: UInt64(100 + n))
                    var steps: [([Float], [Float])] = []
                    for _ in 0 ..< 100 {
                        let k = randomFloats(2 * 24, magnitude: 1, using: &rng)
                        let v = randomFloats(2 * 24, magnitude: 1, using: &rng)
                        try k.withUnsafeBufferPointer { kp in
                            try v.withUnsafeBufferPointer { vp in try cache.append([id], keys: kp, values: vp) }
                        }
                        steps.append((k, v))
                    }
                    return (n, steps)
                }
            }
            var out = [[([Float], [Float])]](repeating: [], count: 8)
            for try await (n, steps) in group { out[n] = steps }
            return out
        }
        for (n, id) in ids.enumerated() {
            m.rows[id] = (all[n].flatMap(\.0), all[n].flatMap(\.1))
        }
        #expect(m.cache.freePageCount == 8 * 21 - 8 * 20)
        try m.expectAgrees(ids, queries: Array(repeating: 1, count: 8), "after concurrent appends")
    }
}
