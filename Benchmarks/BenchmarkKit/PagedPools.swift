import FlashAttention

/// K and V copied from contiguous tensors into page pools: every sequence's keys in pages of
/// `pageSize`, the pages in a seeded random order of the pool (so that a sequence's pages are
/// scattered, as in a cache that has served for a while), with the CSR page table.
struct PagedPools {
    var key: [Float]
    var value: [Float]
    var pages: KVPages

    /// `key`/`value` hold sequence b's key j of head g at `base(b) + g·head + j·sequence`, base
    /// b·batch, or the packed row `keyOffsets[b]` when given.
    init(key: [Float], value: [Float], keyStrides: AttentionStrides, valueStrides: AttentionStrides,
         keyOffsets: [Int]?, keys: [Int], heads: Int, headDim: Int, valueHeadDim: Int,
         pageSize: Int, layout: KVPageLayout, seed: UInt64) {
        let counts = keys.map { ($0 + pageSize - 1) / pageSize }
        let total = max(1, counts.reduce(0, +))
        var state = seed | 1
        var order = Array(0 ..< total)
        for i in stride(from: total - 1, to: 0, by: -1) {  // Fisher–Yates, xorshift64
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            order.swapAt(i, Int(state % UInt64(i + 1)))
        }
        let ks = layout.poolStrides(value: false, heads: heads, pageSize: pageSize, dim: headDim)
        let vs = layout.poolStrides(value: true, heads: heads, pageSize: pageSize, dim: valueHeadDim)
        var kPool = [Float](repeating: 0, count: total * heads * pageSize * headDim)
        var vPool = [Float](repeating: 0, count: total * heads * pageSize * valueHeadDim)
        var indptr: [Int32] = [0], indices: [Int32] = [], last: [Int32] = []
        var next = 0
        kPool.withUnsafeMutableBufferPointer { kp in
        vPool.withUnsafeMutableBufferPointer { vp in
        key.withUnsafeBufferPointer { k in
        value.withUnsafeBufferPointer { v in
            for (b, n) in keys.enumerated() {
                let kBase = keyOffsets.map { $0[b] * keyStrides.sequence } ?? b * keyStrides.batch
                let vBase = keyOffsets.map { $0[b] * valueStrides.sequence } ?? b * valueStrides.batch
                for i in 0 ..< counts[b] {
                    let page = order[next]
                    next += 1
                    indices.append(Int32(page))
                    for g in 0 ..< heads {
                        for r in 0 ..< min(pageSize, n - i * pageSize) {
                            let j = i * pageSize + r
                            let kFrom = kBase + g * keyStrides.head + j * keyStrides.sequence
                            let vFrom = vBase + g * valueStrides.head + j * valueStrides.sequence
                            let kTo = page * ks.batch + g * ks.head + r * ks.sequence
                            let vTo = page * vs.batch + g * vs.head + r * vs.sequence
                            for d in 0 ..< headDim { kp[kTo + d] = k[kFrom + d] }
                            for d in 0 ..< valueHeadDim { vp[vTo + d] = v[vFrom + d] }
                        }
                    }
                }
                indptr.append(Int32(indices.count))
                last.append(n == 0 ? 0 : Int32(n - (counts[b] - 1) * pageSize))
            }
        } } } }
        self.key = kPool
        self.value = vPool
        pages = KVPages(pageSize: pageSize, pageCount: total,
                        table: .csr(indptr: indptr, indices: indices, lastPageLengths: last),
                        layout: layout, pagesAreExclusive: true)
    }
}

extension KVPageLayout {
    func poolStrides(value: Bool, heads: Int, pageSize: Int, dim: Int) -> AttentionStrides {
        switch self {
        case .nhd: .packed(.blhd, heads: heads, length: pageSize, dim: dim)
        case .hnd: .packed(.bhld, heads: heads, length: pageSize, dim: dim)
        case let .strided(key, values): value ? values : key
        }
    }
}

/// A paged case's tensors: Q and O, the K/V pools, the page table.
struct PagedTensors {
    let query: StoredTensor, key: StoredTensor, value: StoredTensor, output: StoredTensor
    let pages: KVPages
}

/// One paged forward call: Q and O in one storage type, the pools in another.
func forwardPaged(_ t: PagedTensors, shape: AttentionShape, options: AttentionOptions) throws {
    func run<Q: AttentionElement, KV: AttentionElement>(_: Q.Type, _: KV.Type) throws {
        var options = options
        options.keySequenceOffsets = nil
        try FlashAttention.forward(query: t.query.buffer(Q.self), keyPages: t.key.buffer(KV.self),
                                   valuePages: t.value.buffer(KV.self), pages: t.pages,
                                   output: t.output.mutableBuffer(Q.self), shape: shape,
                                   options: options)
    }
    try withElementTypes(t.query.type, t.key.type) { qt, kvt in try run(qt, kvt) }
}
