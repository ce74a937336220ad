import FlashAttention
import Testing
import TestSupport

// Paged K/V caches: each case is a padded batch (keyLengths) whose keys are copied into the
// pages of a pool in a seeded random order. The paged call must match the float64 reference
// with the grid's tolerances, and be bitwise identical to the same call on the contiguous
// padded tensors (the loops read pages as runs of rows; nothing in the arithmetic moves).

/// How one paged case lays out its pool.
struct PageSetup: Sendable, CustomStringConvertible {
    var pageSize: Int
    var layout: KVPageLayout
    var csr: Bool
    /// Sequences after the first share its first `sharedPrefix` keys, and their pages.
    var sharedPrefix = 0
    var description: String {
        "pages of \(pageSize) \(layout == .hnd ? "HND" : "NHD") \(csr ? "CSR" : "block table")"
            + (sharedPrefix > 0 ? " shared prefix \(sharedPrefix)" : "")
    }
}

/// A padded case's keys and values copied into page pools (element type E), with the table.
struct PagedCache<E: HalfTestElement> {
    var keyPool: [E]
    var valuePool: [E]
    var pages: KVPages
}

/// Overwrites the first `prefix` keys and values of every sequence after the first with
/// sequence 0's (so that they can share pages).
func sharePrefix(_ k: inout StridedTensor, _ v: inout StridedTensor, prefix: Int) {
    let (batch, heads, _, dk) = k.extents, dv = v.extents.3
    for b in 1 ..< batch {
        for g in 0 ..< heads {
            for j in 0 ..< prefix {
                for d in 0 ..< dk {
                    k.data[b * k.strides.batch + g * k.strides.head + j * k.strides.sequence + d] =
                        k.data[g * k.strides.head + j * k.strides.sequence + d]
                }
                for d in 0 ..< dv {
                    v.data[b * v.strides.batch + g * v.strides.head + j * v.strides.sequence + d] =
                        v.data[g * v.strides.head + j * v.strides.sequence + d]
                }
            }
        }
    }
}

/// The pools and table of `k`, `v` (padded, lengths `lengths`), pages in a random order of a
/// pool with a few spare pages; with a shared prefix, whole shared pages are listed by every
/// sequence (the prefix is rounded down to whole pages).
func pagedCache<E: HalfTestElement>(
    key k: StridedTensor, value v: StridedTensor, lengths: [Int], setup: PageSetup, seed: UInt64,
    as _: E.Type
) -> PagedCache<E> {
    let ps = setup.pageSize
    let (batch, heads, _, dk) = k.extents, dv = v.extents.3
    let counts = lengths.map { ($0 + ps - 1) / ps }
    let sharedPages = min(setup.sharedPrefix / ps, counts.min() ?? 0)
    let total = counts.reduce(0, +) - sharedPages * max(0, batch - 1)
    let poolPages = total + 3
    var rng = SplitMix64(seed: seed)
    var order = Array(0 ..< poolPages)
    order.shuffle(using: &rng)
    var next = 0
    var pageLists: [[Int]] = []
    for b in 0 ..< batch {
        var list: [Int] = []
        for i in 0 ..< counts[b] {
            if b > 0 && i < sharedPages { list.append(pageLists[0][i]); continue }
            list.append(order[next])
            next += 1
        }
        pageLists.append(list)
    }
    let ks = setup.layout.poolStrides(heads: heads, pageSize: ps, dim: dk)
    let vs = setup.layout.poolStrides(heads: heads, pageSize: ps, dim: dv)
    // Spare pages and rows past a sequence's end hold garbage that must never be read.
    var kPool = [E](repeating: E(rounding: .nan), count: poolPages * heads * ps * dk)
    var vPool = [E](repeating: E(rounding: .infinity), count: poolPages * heads * ps * dv)
    for b in 0 ..< batch {
        for (i, page) in pageLists[b].enumerated() {
            for g in 0 ..< heads {
                for r in 0 ..< ps where i * ps + r < lengths[b] {
                    let j = i * ps + r
                    for d in 0 ..< dk {
                        kPool[page * ks.batch + g * ks.head + r * ks.sequence + d] = E(rounding: k[b, g, j, d])
                    }
                    for d in 0 ..< dv {
                        vPool[page * vs.batch + g * vs.head + r * vs.sequence + d] = E(rounding: v[b, g, j, d])
                    }
                }
            }
        }
    }
    let table: KVPageTable
    if setup.csr {
        var indptr: [Int32] = [0]
        for list in pageLists { indptr.append(indptr.last! + Int32(list.count)) }
        table = .csr(indptr: indptr, indices: pageLists.flatMap { $0.map { Int32($0) } },
                     lastPageLengths: lengths.map { $0 == 0 ? 0 : Int32($0 - ($0 - 1) / ps * ps) })
    } else {
        let width = max(1, counts.max() ?? 1) + 1  // a spare column, never read
        var rows = [Int32](repeating: -7, count: batch * width)
        for (b, list) in pageLists.enumerated() {
            for (i, page) in list.enumerated() { rows[b * width + i] = Int32(page) }
        }
        table = .blockTable(rows, pagesPerSequence: width, sequenceLengths: lengths.map { Int32($0) })
    }
    return PagedCache(keyPool: kPool, valuePool: vPool,
                      pages: KVPages(pageSize: ps, pageCount: poolPages, table: table,
                                     layout: setup.layout, pagesAreExclusive: sharedPages == 0))
}

extension KVPageLayout {
    func poolStrides(heads: Int, pageSize: Int, dim: Int) -> AttentionStrides {
        switch self {
        case .nhd: .packed(.blhd, heads: heads, length: pageSize, dim: dim)
        default: .packed(.bhld, heads: heads, length: pageSize, dim: dim)
        }
    }
}

/// A padded case and the page setups it runs under.
struct PagedCase: Sendable, CustomStringConvertible {
    var c: AttentionCase
    var setups: [PageSetup]
    var splits: [Int] = [0, Int.max, 300]
    var description: String { "\(c)" }
    var lengths: [Int] { c.keyLengths ?? Array(repeating: c.shape.keyLength, count: c.shape.batch) }
}

/// Runs `c` paged (every setup, split and kernel) in types Q, KV: against the contiguous
/// padded call bitwise, and (fp32 storage) against the float64 reference.
func checkPaged<Q: HalfTestElement, KV: HalfTestElement>(_ pc: PagedCase, _: Q.Type, _: KV.Type,
                                                         kernels: [KernelISA] = FlashAttention.supportedKernels,
                                                         implementation: AttentionImplementation = .flash) throws {
    let exact = Q.self == Float.self && KV.self == Float.self
    let base = exact ? pc.c.reference() : nil  // (the float64 reference is the slow part)
    for setup in pc.setups {
        var (q, k, v) = pc.c.inputs()
        if setup.sharedPrefix > 0 { sharePrefix(&k, &v, prefix: setup.sharedPrefix) }
        let qs = q.data.map { Q(rounding: $0) }
        let ks = k.data.map { KV(rounding: $0) }, vs = v.data.map { KV(rounding: $0) }
        let cache = pagedCache(key: k, value: v, lengths: pc.lengths, setup: setup,
                               seed: pc.c.seed &+ UInt64(setup.pageSize), as: KV.self)
        let reference = !exact ? nil : setup.sharedPrefix > 0 ? pc.c.reference(inputs: (q, k, v)) : base
        for kernel in kernels {
            for split in pc.splits {
                var options = pc.c.options
                options.kernel = kernel
                options.keySplitSize = split
                options.implementation = implementation
                let count = pc.c.shape.outputCount
                var want = [Q](repeating: Q(rounding: 0), count: count)
                var wantLSE = [Float](repeating: 0, count: pc.c.shape.batch * pc.c.shape.queryHeads * pc.c.shape.queryLength)
                var got = [Q](repeating: Q(rounding: 7), count: count)
                var gotLSE = [Float](repeating: 7, count: wantLSE.count)
                try qs.withUnsafeBufferPointer { q in
                    try ks.withUnsafeBufferPointer { k in
                        try vs.withUnsafeBufferPointer { v in
                            try want.withUnsafeMutableBufferPointer { o in
                                try wantLSE.withUnsafeMutableBufferPointer { l in
                                    try FlashAttention.forward(query: q, key: k, value: v, output: o, logSumExp: l,
                                                               shape: pc.c.shape, options: options)
                                }
                            }
                        }
                    }
                    var paged = options
                    paged.keyLengths = nil
                    try cache.keyPool.withUnsafeBufferPointer { kp in
                        try cache.valuePool.withUnsafeBufferPointer { vp in
                            try got.withUnsafeMutableBufferPointer { o in
                                try gotLSE.withUnsafeMutableBufferPointer { l in
                                    try FlashAttention.forward(query: q, keyPages: kp, valuePages: vp,
                                                               pages: cache.pages, output: o, logSumExp: l,
                                                               shape: pc.c.shape, options: paged)
                                }
                            }
                        }
                    }
                }
                let same = zip(want, got).allSatisfy { $0.float.bitPattern == $1.float.bitPattern }
                    && zip(wantLSE, gotLSE).allSatisfy { $0.bitPattern == $1.bitPattern }
                #expect(same, "\(kernel) split \(split) \(setup) \(pc): paged differs from contiguous")
                if let reference {
                    let result = compare(output: got.map(\.float), strides: pc.c.strides.output,
                                         logSumExp: gotLSE, reference: reference, shape: pc.c.shape)
                    #expect(result.passed, "\(kernel) split \(split) \(setup) \(pc): \(result)")
                    if verbose { print("paged \(kernel) split \(split) \(setup) \(pc): \(result)") }
                }
            }
        }
    }
}

/// Page sizes 1, 3, 16, 256 and one past the longest sequence, each layout and form.
func pageSetups(longest: Int) -> [PageSetup] {
    [PageSetup(pageSize: 16, layout: .hnd, csr: true),
     PageSetup(pageSize: 16, layout: .nhd, csr: false),
     PageSetup(pageSize: 3, layout: .nhd, csr: true),
     PageSetup(pageSize: 256, layout: .hnd, csr: false),
     PageSetup(pageSize: longest + 1, layout: .nhd, csr: true),
     PageSetup(pageSize: 1, layout: .hnd, csr: false),
     PageSetup(pageSize: 16, layout: .hnd, csr: true, sharedPrefix: 40)]
}

let pagedGrid: [PagedCase] = {
    let lens = [1, 17, 1000, 4097]
    func shape(_ b: Int, _ hq: Int, _ hkv: Int, _ lq: Int, _ d: Int, _ dv: Int? = nil) -> AttentionShape {
        AttentionShape(batch: b, queryHeads: hq, keyValueHeads: hkv, queryLength: lq,
                       keyLength: 4097, headDim: d, valueHeadDim: dv ?? d)
    }
    return [
        // Decoding: one query per sequence, GQA 4.
        PagedCase(c: AttentionCase(shape: shape(4, 8, 2, 1, 64), keyLengths: lens, seed: 31),
                  setups: pageSetups(longest: 4097)),
        // Speculative rows: 4 queries, bottom-right causal, odd head dims.
        PagedCase(c: AttentionCase(shape: shape(4, 4, 2, 4, 17, 33), causal: .bottomRight,
                                   keyLengths: [17, 1000, 4, 4097], layout: .blhd, seed: 32),
                  setups: pageSetups(longest: 4097)),
        // Ragged batch mixing Lq 1, 4 and 300 (key-major tiles): chunked prefill on a prefix.
        PagedCase(c: AttentionCase(shape: shape(3, 4, 2, 300, 32), causal: .bottomRight,
                                   queryLengths: [1, 4, 300], keyLengths: [1000, 17, 4097], seed: 33),
                  setups: [PageSetup(pageSize: 16, layout: .hnd, csr: true),
                           PageSetup(pageSize: 3, layout: .nhd, csr: false),
                           PageSetup(pageSize: 1, layout: .hnd, csr: true)],
                  splits: [0, 700]),
    ]
}()

/// Every modifier on pages: window, ALiBi, softcap, element masks by local position, decode
/// and prefill tiles.
let pagedModifierGrid: [PagedCase] = {
    let s = AttentionShape(batch: 3, queryHeads: 8, keyValueHeads: 2, queryLength: 5,
                           keyLength: 300, headDim: 48)
    var rng = SplitMix64(seed: 78)
    let dense = MaskStrides.dense(s)
    let boolMask = AttentionMask(boolean: (0 ..< s.batch * 8 * 5 * 300).map { _ in rng.next() % 3 != 0 },
                                 strides: dense)
    let addMask = AttentionMask(additive: (0 ..< s.batch * 8 * 5 * 300).map { _ in
        Float(rng.next() % 1000) / 250 - 2 }, strides: dense)
    var prefill = s
    prefill.queryLength = 40
    let setups = [PageSetup(pageSize: 16, layout: .nhd, csr: true),
                  PageSetup(pageSize: 7, layout: .hnd, csr: false)]
    let lens = [300, 123, 1]
    return [
        AttentionCase(shape: s, causal: .bottomRight, window: SlidingWindow(left: 50, right: 0),
                      keyLengths: lens, seed: 41),
        AttentionCase(shape: s, softcap: 5, alibiSlopes: alibiSlopes(8), keyLengths: lens,
                      magnitude: 4, seed: 42),
        AttentionCase(shape: s, keyLengths: lens, mask: boolMask, seed: 43),
        AttentionCase(shape: s, causal: .bottomRight, keyLengths: lens, mask: addMask, seed: 44),
        AttentionCase(shape: prefill, causal: .bottomRight, window: SlidingWindow(left: 30, right: 0),
                      softcap: 5, alibiSlopes: alibiSlopes(8), keyLengths: [300, 45, 0], seed: 45),
    ].map { PagedCase(c: $0, setups: setups, splits: [0, Int.max, 64]) }
}()

@Suite("Paged K/V caches")
struct PagedTests {
    @Test("fp32: against the reference and bitwise the contiguous call; page sizes 1–4098, HND and NHD, CSR and block tables, shared prefixes, splits, every ISA",
          arguments: pagedGrid)
    func grid(_ pc: PagedCase) throws { try checkPaged(pc, Float.self, Float.self) }

    @Test("every modifier on pages", arguments: pagedModifierGrid)
    func modifiers(_ pc: PagedCase) throws { try checkPaged(pc, Float.self, Float.self) }

    @Test("half caches bitwise the contiguous call: fp16 and bf16 under fp32 queries, all bf16 (the pair kernels, pages of odd size splitting pairs)")
    func half() throws {
        let s = AttentionShape(batch: 3, queryHeads: 8, keyValueHeads: 2, queryLength: 2,
                               keyLength: 1000, headDim: 64)
        let setups = [PageSetup(pageSize: 16, layout: .hnd, csr: true),
                      PageSetup(pageSize: 5, layout: .nhd, csr: false),
                      PageSetup(pageSize: 1, layout: .hnd, csr: true)]
        let decode = PagedCase(c: AttentionCase(shape: s, causal: .bottomRight, keyLengths: [1000, 517, 3], seed: 51),
                               setups: setups, splits: [0, 301])
        var p = s
        p.queryLength = 33
        let prefill = PagedCase(c: AttentionCase(shape: p, causal: .bottomRight, keyLengths: [1000, 517, 3], seed: 52),
                                setups: setups, splits: [0])
        for pc in [decode, prefill] {
            try checkPaged(pc, Float.self, Float16.self)
            try checkPaged(pc, Float.self, BFloat16.self)
            try checkPaged(pc, BFloat16.self, BFloat16.self)
            try checkPaged(pc, Float16.self, Float16.self)
        }
    }

    @Test("the naive baseline reads pages too")
    func naive() throws {
        let pc = PagedCase(c: AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                                  queryLength: 3, keyLength: 200, headDim: 16),
                                            causal: .bottomRight, keyLengths: [200, 37], seed: 61),
                           setups: [PageSetup(pageSize: 16, layout: .nhd, csr: true)], splits: [0])
        try checkPaged(pc, Float.self, Float.self, kernels: [.automatic], implementation: .naive)
    }
}

@Suite("Paged K/V caches: invalid tables")
struct PagedValidationTests {
    /// Two sequences of 5 and 2 keys (pages of 4, a pool of 4 pages), one query each.
    static let shape = AttentionShape(batch: 2, queryHeads: 2, keyValueHeads: 1, queryLength: 1,
                                      keyLength: 8, headDim: 4)
    static let good = KVPages(pageSize: 4, pageCount: 4,
                              table: .csr(indptr: [0, 2, 3], indices: [3, 0, 1], lastPageLengths: [1, 2]),
                              pagesAreExclusive: true)

    /// Runs the paged forward on `pages`; returns the error (nil if it ran) and whether the
    /// output kept its sentinel.
    func attempt(_ pages: KVPages, shape: AttentionShape = shape,
                 options: AttentionOptions = AttentionOptions(), poolPages: Int = 4) -> (AttentionError?, Bool) {
        let q = [Float](repeating: 0.5, count: shape.queryCount)
        let pool = [Float](repeating: 0.25, count: poolPages * shape.keyValueHeads * 4 * shape.headDim)
        var out = [Float](repeating: 9, count: shape.outputCount)
        var error: AttentionError? = nil
        q.withUnsafeBufferPointer { q in
            pool.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { o in
                    do {
                        try FlashAttention.forward(query: q, keyPages: p, valuePages: p, pages: pages,
                                                   output: o, shape: shape, options: options)
                    } catch let e as AttentionError { error = e } catch {}
                }
            }
        }
        return (error, out.allSatisfy { $0 == 9 })
    }

    func expectRefused(_ pages: KVPages, _ argument: String, _ fragment: String,
                       shape: AttentionShape = shape, options: AttentionOptions = AttentionOptions(),
                       poolPages: Int = 4) {
        let (error, untouched) = attempt(pages, shape: shape, options: options, poolPages: poolPages)
        guard case let .invalidPages(name, reason)? = error else {
            Issue.record("expected invalidPages(\(argument)), got \(String(describing: error))")
            return
        }
        #expect(name == argument, "\(reason)")
        #expect(reason.contains(fragment), "\(reason)")
        #expect(untouched, "the output was written")
    }

    @Test("a valid table runs (the control), and a shared page is fine unless exclusive is claimed")
    func control() {
        #expect(attempt(Self.good).0 == nil)
        var shared = Self.good
        shared.table = .csr(indptr: [0, 2, 3], indices: [3, 0, 3], lastPageLengths: [1, 2])
        shared.pagesAreExclusive = false
        #expect(attempt(shared).0 == nil)
        shared.pagesAreExclusive = true
        expectRefused(shared, "pages.table.indices", "page 3 is listed twice")
    }

    @Test("page indices outside the pool, CSR and block table")
    func outOfRange() {
        var p = Self.good
        p.table = .csr(indptr: [0, 2, 3], indices: [3, 4, 1], lastPageLengths: [1, 2])
        expectRefused(p, "pages.table.indices", "is 4; page indices are in [0, num_pages = 4)")
        p.table = .blockTable([3, 0, 1, -1], pagesPerSequence: 2, sequenceLengths: [5, 2])
        #expect(attempt(p).0 == nil, "entries past a sequence's pages are never read")
        p.table = .blockTable([3, -1, 1, 0], pagesPerSequence: 2, sequenceLengths: [5, 2])
        expectRefused(p, "pages.table", "(entry 0, page 1) is -1")
    }

    @Test("last page lengths of 0 or above the page size")
    func lastPageLength() {
        var p = Self.good
        p.table = .csr(indptr: [0, 2, 3], indices: [3, 0, 1], lastPageLengths: [0, 2])
        expectRefused(p, "pages.table.lastPageLengths", "is 0; it must be between 1 and the page size 4")
        p.table = .csr(indptr: [0, 2, 3], indices: [3, 0, 1], lastPageLengths: [1, 5])
        expectRefused(p, "pages.table.lastPageLengths", "is 5")
        p.table = .csr(indptr: [0, 2, 2], indices: [3, 0], lastPageLengths: [1, 1])
        expectRefused(p, "pages.table.lastPageLengths", "has no page")
    }

    @Test("decreasing or misplaced offsets, and tables shorter than a sequence needs")
    func offsetsAndShortTables() {
        var p = Self.good
        p.table = .csr(indptr: [0, 2, 1], indices: [3, 0, 1], lastPageLengths: [1, 2])
        expectRefused(p, "pages.table.indptr", "never decreases")
        p.table = .csr(indptr: [1, 2, 3], indices: [3, 0, 1], lastPageLengths: [1, 2])
        expectRefused(p, "pages.table.indptr", "it must be 0")
        p.table = .csr(indptr: [0, 2, 4], indices: [3, 0, 1], lastPageLengths: [1, 2])
        expectRefused(p, "pages.table.indices", "indices holds 3 pages")
        p.table = .blockTable([3, 0, 1, 2], pagesPerSequence: 2, sequenceLengths: [9, 2])
        expectRefused(p, "pages.table", "need 3 pages of 4; its row has max_pages = 2")
        p.table = .blockTable([3, 0, 1], pagesPerSequence: 2, sequenceLengths: [5, 2])
        expectRefused(p, "pages.table", "2 rows of 2 need 4")
        p.table = .blockTable([3, 0, 1, 2], pagesPerSequence: 2, sequenceLengths: [5, -1])
        expectRefused(p, "pages.table.sequenceLengths", "is -1")
        p.table = .csr(indptr: [0, 2], indices: [3, 0], lastPageLengths: [1])
        expectRefused(p, "pages.table.indptr", "2 offsets for 2 sequences")
    }

    @Test("sequences beyond shape.keyLength, lengths given twice, bad page geometry, small pools")
    func geometry() {
        var short = Self.shape
        short.keyLength = 4
        expectRefused(Self.good, "pages.table.indptr", "more than shape.kv_len = 4", shape: short)
        var options = AttentionOptions()
        options.keyLengths = [5, 2]
        expectRefused(Self.good, "pages", "take their lengths from the page table", options: options)
        var p = Self.good
        p.pageSize = 0
        expectRefused(p, "pages", "pageSize is 0")
        p = Self.good
        p.pageCount = 5  // the buffer holds 4 pages
        let (error, untouched) = attempt(p)
        #expect(error == .bufferTooSmall(argument: "key", required: 80, count: 64))
        #expect(untouched)
    }
}

@Suite("Paged K/V caches: the backward where each sequence lies in one page")
struct PagedBackwardTests {
    @Test("gradients bitwise those of the contiguous padded call, flash and naive, every ISA, HND and NHD",
          arguments: [KVPageLayout.hnd, .nhd])
    func oneSequencePerPage(_ layout: KVPageLayout) throws {
        let s = AttentionShape(batch: 3, queryHeads: 4, keyValueHeads: 2, queryLength: 5, keyLength: 16,
                               headDim: 24, valueHeadDim: 20)
        let c = AttentionCase(shape: s, causal: .bottomRight, keyLengths: [16, 9, 1], seed: 81)
        let (q, k, v) = c.inputs()
        let setup = PageSetup(pageSize: 16, layout: layout, csr: true)
        let cache = pagedCache(key: k, value: v, lengths: [16, 9, 1], setup: setup, seed: 3, as: Float.self)
        // Padding rows past a sequence's keys in its page must be finite: fill them as the
        // contiguous tensors hold them (the backward reads rows 0 ..< keyLength of a page).
        var kPool = cache.keyPool, vPool = cache.valuePool
        let ks = layout.poolStrides(heads: 2, pageSize: 16, dim: 24), vs = layout.poolStrides(heads: 2, pageSize: 16, dim: 20)
        guard case let .csr(_, indices, _) = cache.pages.table else {
            Issue.record("the setup asks for a CSR table")
            return
        }
        for b in 0 ..< 3 { for g in 0 ..< 2 { for j in [16, 9, 1][b] ..< 16 {
            let page = Int(indices[b])
            for d in 0 ..< 24 { kPool[page * ks.batch + g * ks.head + j * ks.sequence + d] = k[b, g, j, d] }
            for d in 0 ..< 20 { vPool[page * vs.batch + g * vs.head + j * vs.sequence + d] = v[b, g, j, d] }
        } } }
        let dO = c.outputGradient().data
        for kernel in FlashAttention.supportedKernels {
            for implementation in [AttentionImplementation.flash, .naive] {
                var options = c.options
                options.kernel = kernel
                options.implementation = implementation
                let (o, lse) = try FlashAttention.forwardWithLogSumExp(query: q.data, key: k.data, value: v.data,
                                                                       shape: s, options: options)
                let want = try FlashAttention.backward(query: q.data, key: k.data, value: v.data, output: o,
                                                       logSumExp: lse, outputGradient: dO, shape: s, options: options)
                var paged = options
                paged.keyLengths = nil
                var dq = [Float](repeating: 7, count: s.queryCount), dk = [Float](repeating: 7, count: s.keyCount)
                var dv = [Float](repeating: 7, count: s.valueCount)
                try q.data.withUnsafeBufferPointer { qp in
                try kPool.withUnsafeBufferPointer { kp in
                try vPool.withUnsafeBufferPointer { vp in
                try o.withUnsafeBufferPointer { op in
                try lse.withUnsafeBufferPointer { lp in
                try dO.withUnsafeBufferPointer { gp in
                try dq.withUnsafeMutableBufferPointer { dqp in
                try dk.withUnsafeMutableBufferPointer { dkp in
                try dv.withUnsafeMutableBufferPointer { dvp in
                    try FlashAttention.backward(query: qp, keyPages: kp, valuePages: vp, pages: cache.pages,
                                                output: op, logSumExp: lp, outputGradient: gp,
                                                queryGradient: dqp, keyGradient: dkp, valueGradient: dvp,
                                                shape: s, options: paged)
                } } } } } } } } }
                #expect(dq.map(\.bitPattern) == want.query.map(\.bitPattern), "\(kernel) \(implementation) dq")
                #expect(dk.map(\.bitPattern) == want.key.map(\.bitPattern), "\(kernel) \(implementation) dk")
                #expect(dv.map(\.bitPattern) == want.value.map(\.bitPattern), "\(kernel) \(implementation) dv")
            }
        }
    }

    @Test("sequences longer than a page are refused, naming the reason")
    func refusal() throws {
        let s = AttentionShape(batch: 1, queryHeads: 2, keyValueHeads: 1, queryLength: 2, keyLength: 8, headDim: 4)
        let pages = KVPages(pageSize: 4, pageCount: 2,
                            table: .csr(indptr: [0, 2], indices: [1, 0], lastPageLengths: [4]))
        let pool = [Float](repeating: 0.5, count: 2 * 4 * 4)
        let q = [Float](repeating: 0.1, count: s.queryCount), lse = [Float](repeating: 0, count: 2 * 2)
        var dq = q, dk = [Float](repeating: 0, count: s.keyCount), dv = dk
        var thrown: AttentionError?
        q.withUnsafeBufferPointer { qp in pool.withUnsafeBufferPointer { pp in lse.withUnsafeBufferPointer { lp in
        dq.withUnsafeMutableBufferPointer { dqp in dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
            do {
                try FlashAttention.backward(query: qp, keyPages: pp, valuePages: pp, pages: pages, output: qp,
                                            logSumExp: lp, outputGradient: qp, queryGradient: dqp,
                                            keyGradient: dkp, valueGradient: dvp, shape: s)
            } catch let e as AttentionError { thrown = e } catch {}
        } } } } } }
        guard case let .invalidPages(argument, reason)? = thrown else {
            Issue.record("expected invalidPages, got \(String(describing: thrown))")
            return
        }
        #expect(argument == "pages" && reason.contains("every sequence lies in one page"), "\(reason)")
    }
}
