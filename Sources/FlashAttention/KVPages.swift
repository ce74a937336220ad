import CFlashAttention

/// Which pages of a paged K/V cache each sequence uses, in one of the two common forms.
///
/// Sequence `b`'s key `j` is row `j % pageSize` of page `pages_b[j / pageSize]`.
///
/// - ``csr(indptr:indices:lastPageLengths:)`` is FlashInfer's form: sequence `b`'s pages are
///   `indices[indptr[b] ..< indptr[b + 1]]` and it holds
///   `(pages − 1) · pageSize + lastPageLengths[b]` keys (`lastPageLengths[b]` is `1 … pageSize`,
///   or 0 for a sequence without pages).
/// - ``blockTable(_:pagesPerSequence:sequenceLengths:)`` is vLLM's and FlashAttention's:
///   sequence `b`'s pages are row `b` of a `[batch, pagesPerSequence]` table, the first
///   `⌈sequenceLengths[b] / pageSize⌉` of them (the rest of the row is never read).
///
/// The two convert into each other: `sequenceLengths[b] = (indptr[b+1] − indptr[b] − 1) ·
/// pageSize + lastPageLengths[b]`, and row `b` of the table is `indices[indptr[b]...]`.
public enum KVPageTable: Sendable, Hashable {
    /// FlashInfer's CSR form: `batch + 1` offsets, the page indices, one last-page length per
    /// sequence.
    case csr(indptr: [Int32], indices: [Int32], lastPageLengths: [Int32])
    /// A `[batch, pagesPerSequence]` block table and one length (in keys) per sequence.
    case blockTable(_ table: [Int32], pagesPerSequence: Int, sequenceLengths: [Int32])
}

/// The memory order of a page pool.
public enum KVPageLayout: Sendable, Hashable {
    /// `[pages, keyValueHeads, pageSize, headDim]`: a head's rows contiguous within a page
    /// (FlashInfer's HND).
    case hnd
    /// `[pages, pageSize, keyValueHeads, headDim]`: a key's heads contiguous (FlashInfer's NHD,
    /// vLLM's and FlashAttention's cache layout).
    case nhd
    /// Any strides: `batch` steps from page to page, `head` from head to head, `sequence` from
    /// key to key within a page (the last dimension contiguous).
    case strided(key: AttentionStrides, value: AttentionStrides)

    /// The strides of the key pool (`value: false`) or the value pool.
    func strides(value: Bool, keyValueHeads: Int, pageSize: Int, headDim: Int) -> AttentionStrides {
        switch self {
        case .hnd: .packed(.bhld, heads: keyValueHeads, length: pageSize, dim: headDim)
        case .nhd: .packed(.blhd, heads: keyValueHeads, length: pageSize, dim: headDim)
        case let .strided(key, values): value ? values : key
        }
    }
}

/// A paged K/V cache as one attention call reads it: the pools' geometry and the page table.
///
/// The key and value pools hold `pageCount` pages of `pageSize` keys for every key/value head
/// (``KVPageLayout``). Pages may be shared between sequences (a common prefix);
/// `pagesAreExclusive` claims they are not, and the call then refuses a page listed twice.
///
/// ```swift
/// // Two sequences of 5 and 2 keys in pages of 4, pages 3, 0 and 1 of a pool of 4:
/// let pages = KVPages(pageSize: 4, pageCount: 4,
///                     table: .csr(indptr: [0, 2, 3], indices: [3, 0, 1], lastPageLengths: [1, 2]))
/// ```
public struct KVPages: Sendable, Hashable {
    /// Keys per page (≥ 1).
    public var pageSize: Int
    /// Pages in each pool: page indices are in `0 ..< pageCount`.
    public var pageCount: Int
    /// Which pages each sequence uses.
    public var table: KVPageTable
    /// The pools' memory order.
    public var layout: KVPageLayout
    /// Whether no page is listed twice (checked when `true`).
    public var pagesAreExclusive: Bool

    /// Describes a paged cache.
    public init(pageSize: Int, pageCount: Int, table: KVPageTable, layout: KVPageLayout = .hnd,
                pagesAreExclusive: Bool = false) {
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.table = table
        self.layout = layout
        self.pagesAreExclusive = pagesAreExclusive
    }

    /// The sequences the table describes.
    public var sequenceCount: Int {
        switch table {
        case let .csr(indptr, _, _): max(0, indptr.count - 1)
        case let .blockTable(_, _, lengths): lengths.count
        }
    }

    /// Keys of sequence `b`.
    public func sequenceLength(_ b: Int) -> Int {
        switch table {
        case let .csr(indptr, _, last):
            let pages = Int(indptr[b + 1]) - Int(indptr[b])
            return pages == 0 ? 0 : (pages - 1) * pageSize + Int(last[b])
        case let .blockTable(_, _, lengths):
            return Int(lengths[b])
        }
    }

    /// The longest sequence, in keys (what `shape.keyLength` must at least be).
    public var longestSequence: Int {
        (0..<sequenceCount).map(sequenceLength).max() ?? 0
    }

    /// Checks what only Swift knows (array counts) for a batch of `batch` sequences.
    func checkCounts(batch: Int) throws(AttentionError) {
        guard pageSize >= 1, pageCount >= 1 else {
            throw .invalidPages(argument: "pages",
                                reason: "pageSize is \(pageSize) and pageCount \(pageCount); both must be >= 1")
        }
        switch table {
        case let .csr(indptr, indices, last):
            guard indptr.count == batch + 1 else {
                throw .invalidPages(argument: "pages.table.indptr",
                                    reason: "\(indptr.count) offsets for \(batch) sequences; it needs batch + 1")
            }
            guard last.count == batch else {
                throw .invalidPages(argument: "pages.table.lastPageLengths",
                                    reason: "\(last.count) lengths for \(batch) sequences")
            }
            if let end = indptr.last, Int(end) > indices.count {
                throw .invalidPages(argument: "pages.table.indices",
                                    reason: "indptr[\(batch)] is \(end), but indices holds \(indices.count) pages")
            }
        case let .blockTable(table, perSequence, lengths):
            guard lengths.count == batch else {
                throw .invalidPages(argument: "pages.table.sequenceLengths",
                                    reason: "\(lengths.count) lengths for \(batch) sequences")
            }
            guard perSequence >= 1, perSequence <= Int(Int32.max) else {
                throw .invalidPages(argument: "pages.table",
                                    reason: "pagesPerSequence is \(perSequence); it must be >= 1")
            }
            guard table.count >= batch * perSequence else {
                throw .invalidPages(argument: "pages.table",
                                    reason: "the table holds \(table.count) entries; \(batch) rows of \(perSequence) need \(batch * perSequence)")
            }
        }
    }
}

extension FlashAttention {
    /// Attention over a paged K/V cache, without copies: each sequence's keys and values are
    /// read from the pages its table lists.
    ///
    /// `shape.batch` is the number of sequences, `shape.keyLength` at least the longest of them
    /// (``KVPages/longestSequence``; masks are sized by it). The query, output and log-sum-exp
    /// are laid out as in ``forward(query:key:value:output:logSumExp:shape:strides:options:)``
    /// (their `strides`; the key and value strides there are ignored), including packed query
    /// rows (`options.querySequenceOffsets`: one query per sequence to decode, a few to verify
    /// speculated tokens, hundreds for a chunk of prefill, in one call). Every option works on
    /// pages except `keyLengths` and `keySequenceOffsets` (the table gives the lengths). The
    /// results are bitwise those of the same keys stored contiguously.
    ///
    /// ```swift
    /// try FlashAttention.forward(query: q, keyPages: kPool, valuePages: vPool, pages: pages,
    ///                            output: o, shape: shape)
    /// ```
    public static func forward<Element: AttentionElement, Cache: AttentionElement>(
        query: UnsafeBufferPointer<Element>,
        keyPages: UnsafeBufferPointer<Cache>,
        valuePages: UnsafeBufferPointer<Cache>,
        pages: KVPages,
        output: UnsafeMutableBufferPointer<Element>,
        logSumExp: UnsafeMutableBufferPointer<Float>? = nil,
        shape: AttentionShape,
        strides: AttentionTensorStrides? = nil,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) {
        try shape.validate()
        var strides = strides ?? .packed(options.layout, shape: shape)
        strides.key = pages.layout.strides(value: false, keyValueHeads: shape.keyValueHeads,
                                           pageSize: pages.pageSize, headDim: shape.headDim)
        strides.value = pages.layout.strides(value: true, keyValueHeads: shape.keyValueHeads,
                                             pageSize: pages.pageSize, headDim: shape.valueHeadDim)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        try pages.checkCounts(batch: shape.batch)
        try checkBuffer(.query, count: query.count, shape: shape, strides: strides, options: options)
        try checkBuffer(.output, count: output.count, shape: shape, strides: strides, options: options)
        var pool = shape
        pool.batch = pages.pageCount
        pool.keyLength = pages.pageSize
        try checkBuffer(.key, count: keyPages.count, shape: pool, strides: strides, options: AttentionOptions())
        try checkBuffer(.value, count: valuePages.count, shape: pool, strides: strides, options: AttentionOptions())
        if let logSumExp {
            try checkBuffer(.logSumExp, count: logSumExp.count, shape: shape, strides: strides, options: options)
            problem.lse = logSumExp.baseAddress
        }
        problem.bind(query: query, key: keyPages, value: valuePages, output: UnsafeRawPointer(output.baseAddress))
        try withScoreModifiers(options, &problem) { (p) throws(AttentionError) in
            try withPageTable(pages, &p) { (p) throws(AttentionError) in
                try run(&p, implementation: options.implementation, strides: strides)
            }
        }
    }

    /// The gradients of attention over a paged K/V cache whose sequences each lie in one page
    /// (`shape.keyLength` ≤ `pageSize`, every sequence holding a key): K and V are read from the
    /// pages, dK and dV written as ordinary `[B, Hkv, Lk, D]` tensors in `options.layout`
    /// (`strides` and `gradientStrides` as in the contiguous backward; their key and value
    /// strides are the gradients'). Other paged problems are refused with `.invalidPages`.
    public static func backward<Element: AttentionElement, Cache: AttentionElement>(
        query: UnsafeBufferPointer<Element>,
        keyPages: UnsafeBufferPointer<Cache>,
        valuePages: UnsafeBufferPointer<Cache>,
        pages: KVPages,
        output: UnsafeBufferPointer<Element>,
        logSumExp: UnsafeBufferPointer<Float>,
        outputGradient: UnsafeBufferPointer<Element>,
        queryGradient: UnsafeMutableBufferPointer<Element>,
        keyGradient: UnsafeMutableBufferPointer<Cache>,
        valueGradient: UnsafeMutableBufferPointer<Cache>,
        shape: AttentionShape,
        strides: AttentionTensorStrides? = nil,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) {
        try shape.validate()
        var strides = strides ?? .packed(options.layout, shape: shape)
        let gradients = AttentionGradientStrides(matching: strides)
        try pages.checkCounts(batch: shape.batch)
        var pool = shape
        pool.batch = pages.pageCount
        pool.keyLength = pages.pageSize
        strides.key = pages.layout.strides(value: false, keyValueHeads: shape.keyValueHeads,
                                           pageSize: pages.pageSize, headDim: shape.headDim)
        strides.value = pages.layout.strides(value: true, keyValueHeads: shape.keyValueHeads,
                                             pageSize: pages.pageSize, headDim: shape.valueHeadDim)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        try checkBuffer(.key, count: keyPages.count, shape: pool, strides: strides, options: AttentionOptions())
        try checkBuffer(.value, count: valuePages.count, shape: pool, strides: strides, options: AttentionOptions())
        let counts: [(TensorRole, Int)] = [
            (.query, query.count), (.output, output.count), (.outputGradient, outputGradient.count),
            (.queryGradient, queryGradient.count), (.keyGradient, keyGradient.count),
            (.valueGradient, valueGradient.count),
        ]
        for (role, count) in counts {
            try checkBuffer(role, count: count, shape: shape, strides: strides, options: options, gradients: gradients)
        }
        guard logSumExp.count > 0 else { throw .missingLogSumExp }
        try checkBuffer(.logSumExp, count: logSumExp.count, shape: shape, strides: strides, options: options)
        problem.bind(query: query, key: keyPages, value: valuePages, output: UnsafeRawPointer(output.baseAddress))
        problem.bindGradients(logSumExp: logSumExp, outputGradient: outputGradient,
                              queryGradient: queryGradient, keyGradient: keyGradient,
                              valueGradient: valueGradient, strides: gradients)
        try withScoreModifiers(options, &problem) { (p) throws(AttentionError) in
            try withPageTable(pages, &p) { (p) throws(AttentionError) in
                try runBackward(&p, implementation: options.implementation, strides: strides,
                                gradients: gradients)
            }
        }
    }

    /// Runs `body` with the problem's kv_pages pointing at `pages`' table.
    private static func withPageTable(_ pages: KVPages, _ p: inout fa_problem,
                                      _ body: (inout fa_problem) throws(AttentionError) -> Void)
        throws(AttentionError)
    {
        p.kv_pages.page_size = Int64(pages.pageSize)
        p.kv_pages.num_pages = Int64(pages.pageCount)
        p.kv_pages.exclusive = pages.pagesAreExclusive ? 1 : 0
        defer { p.kv_pages = fa_kv_pages() }
        switch pages.table {
        case let .csr(indptr, indices, last):
            // (An empty array may have no address; C needs one even where it reads nothing.)
            let indices = indices.isEmpty ? [0] : indices
            try indptr.withUnsafeBufferPointer { (ip) throws(AttentionError) in
                try indices.withUnsafeBufferPointer { (ix) throws(AttentionError) in
                    try last.withUnsafeBufferPointer { (lp) throws(AttentionError) in
                        p.kv_pages.indptr = ip.baseAddress
                        p.kv_pages.indices = ix.baseAddress
                        p.kv_pages.last_page_len = lp.baseAddress
                        try body(&p)
                    }
                }
            }
        case let .blockTable(table, perSequence, lengths):
            let table = table.isEmpty ? [0] : table
            try table.withUnsafeBufferPointer { (tb) throws(AttentionError) in
                try lengths.withUnsafeBufferPointer { (sl) throws(AttentionError) in
                    p.kv_pages.block_table = tb.baseAddress
                    p.kv_pages.max_pages = Int64(perSequence)
                    p.kv_pages.seq_lens = sl.baseAddress
                    try body(&p)
                }
            }
        }
    }
}
