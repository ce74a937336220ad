#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a ``KVCache`` refused a call. Nothing was written.
public enum KVCacheError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The sequence was never added to this cache, or has been freed.
    case unknownSequence(Int)
    /// The pool has `free` pages; the call needs `needed`.
    case capacityExhausted(needed: Int, free: Int)
    /// An argument's size does not match the cache or the other arguments.
    case mismatchedShape(argument: String, expected: Int, got: Int)
    /// An argument is out of range (page size, capacity, heads, dims, lengths).
    case invalidArgument(argument: String, reason: String)
    /// The attention call refused its arguments.
    case attention(AttentionError)

    /// A sentence naming the argument or sequence and what is wrong.
    public var description: String {
        switch self {
        case let .unknownSequence(id):
            return "sequence \(id) is not in this cache (never added, or freed)"
        case let .capacityExhausted(needed, free):
            return "the cache has \(free) free pages; this call needs \(needed)"
        case let .mismatchedShape(argument, expected, got):
            return "\(argument) has \(got) elements; the cache and the other arguments need \(expected)"
        case let .invalidArgument(argument, reason):
            return "\(argument): \(reason)"
        case let .attention(error):
            return error.description
        }
    }
}

/// One model layer's K/V cache in pages: it owns a pool of fixed-size pages for the keys and
/// the values of every key/value head, hands pages to sequences as they grow, shares them
/// between forks, and runs attention for a batch of its sequences over them.
///
/// A class, not a noncopyable struct: a cache is one shared, mutable resource (a server's
/// tasks append to their own sequences at once, and a model holds it by reference per layer),
/// so it has identity, and a lock keeps its page tables consistent. Page memory is allocated
/// once, at `init`; nothing is allocated per token.
///
/// - Pages hold `pageSize` keys of every head, in ``KVPageLayout/hnd`` order.
/// - ``append(_:keys:values:tokens:)`` writes a step's rows for several sequences at once,
///   straight from the caller's buffers into the pages.
/// - ``fork(_:)`` makes a sequence that shares all of its parent's pages (prefix sharing);
///   a page is copied only when a sequence writes into a page someone else still holds
///   (copy on write), so the parent never changes.
/// - ``attention(query:output:logSumExp:sequences:queryLengths:queryHeads:options:)`` runs
///   one call over the cache: decode rows, speculative rows and prefill chunks together.
///
/// ```swift
/// let cache = try KVCache<Float>(keyValueHeads: 8, headDim: 128, pageSize: 16, capacity: 4096)
/// let a = cache.addSequence()
/// try cache.append([a], keys: k, values: v)           // one token: [1, 8, 128] each
/// try cache.attention(query: q, output: o, sequences: [a], queryHeads: 32,
///                     options: AttentionOptions(causal: .bottomRight))
/// ```
public final class KVCache<Element: AttentionElement>: @unchecked Sendable {
    /// A sequence of this cache.
    public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
        public typealias RawValue = Int
        /// The cache's number for the sequence (unique for the cache's lifetime).
        public let rawValue: Int
        /// "sequence N".
        public var description: String { "sequence \(rawValue)" }
    }

    /// Key/value heads per token.
    public let keyValueHeads: Int
    /// The head dim of the keys.
    public let headDim: Int
    /// The head dim of the values.
    public let valueHeadDim: Int
    /// Keys per page.
    public let pageSize: Int
    /// Pages in each pool (keys and values).
    public let capacity: Int

    private let keyPool: UnsafeMutableBufferPointer<Element>
    private let valuePool: UnsafeMutableBufferPointer<Element>
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    // Guarded by `lock`:
    private var references: [Int32]          // per page: sequences holding it (0: free)
    private var freePages: [Int32]           // a stack of free pages
    private var sequences: [Int: (pages: [Int32], length: Int)] = [:]
    private var nextID = 0

    /// Creates a cache of `capacity` pages of `pageSize` keys for `keyValueHeads` heads.
    public init(keyValueHeads: Int, headDim: Int, valueHeadDim: Int? = nil, pageSize: Int = 16,
                capacity: Int) throws(KVCacheError) {
        let dv = valueHeadDim ?? headDim
        for (name, value) in [("keyValueHeads", keyValueHeads), ("headDim", headDim),
                              ("valueHeadDim", dv), ("pageSize", pageSize), ("capacity", capacity)]
        where value < 1 || value > Int(Int32.max) {
            throw .invalidArgument(argument: name, reason: "\(value); it must be between 1 and \(Int32.max)")
        }
        let stride = MemoryLayout<Element>.stride
        guard let kBytes = checkedProduct([capacity, keyValueHeads, pageSize, headDim, stride]),
              let vBytes = checkedProduct([capacity, keyValueHeads, pageSize, dv, stride]) else {
            throw .invalidArgument(argument: "capacity", reason: "\(capacity) pages overflow the address space")
        }
        self.keyValueHeads = keyValueHeads
        self.headDim = headDim
        self.valueHeadDim = dv
        self.pageSize = pageSize
        self.capacity = capacity
        guard let keys = Self.allocatePool(bytes: kBytes) else {
            throw .invalidArgument(argument: "capacity", reason: "\(capacity) pages: \(kBytes) bytes of keys could not be allocated")
        }
        guard let values = Self.allocatePool(bytes: vBytes) else {
            freePool(keys.baseAddress)
            throw .invalidArgument(argument: "capacity", reason: "\(capacity) pages: \(vBytes) bytes of values could not be allocated")
        }
        keyPool = keys
        valuePool = values
        // Zero bits are 0 in every element type: pages never hold garbage.
        UnsafeMutableRawBufferPointer(keyPool).initializeMemory(as: UInt8.self, repeating: 0)
        UnsafeMutableRawBufferPointer(valuePool).initializeMemory(as: UInt8.self, repeating: 0)
        references = [Int32](repeating: 0, count: capacity)
        freePages = Array((0 ..< Int32(capacity)).reversed())
        pthread_mutex_init(lock, nil)
    }

    /// Pool memory: 2 MiB-aligned and, on Linux, advised into transparent huge pages — every
    /// page of a sequence is a jump to somewhere else in the pool, and with 4 KiB pages each
    /// jump is a TLB miss (page-16 decoding ran 10–20 % faster from huge pages, Zen 4).
    /// nil if the system refuses (a pool too large is an error, not a trap).
    private static func allocatePool(bytes: Int) -> UnsafeMutableBufferPointer<Element>? {
        let count = bytes / MemoryLayout<Element>.stride
        var memory: UnsafeMutableRawPointer?
        guard posix_memalign(&memory, 2 << 20, max(1, bytes)) == 0, let raw = memory else { return nil }
        #if os(Linux)
        _ = madvise(raw, max(1, bytes), 14)  // MADV_HUGEPAGE; a refusal only costs speed
        #endif
        return UnsafeMutableBufferPointer(start: raw.bindMemory(to: Element.self, capacity: count),
                                          count: count)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
        freePool(keyPool.baseAddress)  // posix_memalign's
        freePool(valuePool.baseAddress)
    }

    private func locked<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body()
    }

    /// Pages not held by any sequence.
    public var freePageCount: Int { locked { freePages.count } }

    /// The live sequences.
    public var sequenceIDs: [SequenceID] {
        locked { sequences.keys.sorted().map { SequenceID(rawValue: $0) } }
    }

    /// A new, empty sequence (it takes pages as it grows).
    public func addSequence() -> SequenceID {
        locked {
            let id = nextID
            nextID += 1
            sequences[id] = ([], 0)
            return SequenceID(rawValue: id)
        }
    }

    /// Keys stored for `sequence`.
    public func length(of sequence: SequenceID) throws(KVCacheError) -> Int {
        try locked { () throws(KVCacheError) -> Int in
            guard let s = sequences[sequence.rawValue] else { throw .unknownSequence(sequence.rawValue) }
            return s.length
        }
    }

    /// Frees `sequence`: its pages return to the pool once no fork holds them.
    public func free(_ sequence: SequenceID) throws(KVCacheError) {
        try locked { () throws(KVCacheError) in
            guard let s = sequences.removeValue(forKey: sequence.rawValue) else {
                throw .unknownSequence(sequence.rawValue)
            }
            for page in s.pages { release(page) }
        }
    }

    /// A new sequence holding the same keys as `sequence`, sharing its pages: no copy now; a
    /// shared page is copied when either sequence writes into it.
    public func fork(_ sequence: SequenceID) throws(KVCacheError) -> SequenceID {
        try locked { () throws(KVCacheError) -> SequenceID in
            guard let s = sequences[sequence.rawValue] else { throw .unknownSequence(sequence.rawValue) }
            for page in s.pages { references[Int(page)] += 1 }
            let id = nextID
            nextID += 1
            sequences[id] = s
            return SequenceID(rawValue: id)
        }
    }

    private func release(_ page: Int32) {
        references[Int(page)] -= 1
        if references[Int(page)] == 0 { freePages.append(page) }
    }

    private func take() -> Int32 {
        let page = freePages.removeLast()
        references[Int(page)] = 1
        return page
    }

    /// Copies `dim` elements of row `row` of `head` into `page` of a pool ([pages, Hkv, P, dim])
    /// as bytes: an unspecialized generic caller would otherwise copy element by element.
    private func copyRow(pool: UnsafeMutableBufferPointer<Element>, dim: Int, page: Int32, row: Int,
                         head: Int, from source: UnsafePointer<Element>) {
        let stride = MemoryLayout<Element>.stride
        let at = ((Int(page) * keyValueHeads + head) * pageSize + row) * dim
        UnsafeMutableRawPointer(pool.baseAddress! + at)
            .copyMemory(from: UnsafeRawPointer(source), byteCount: dim * stride)
    }

    /// Copies a whole page (every head's rows) of K and V into another page.
    private func copyPage(_ from: Int32, to: Int32) {
        for (pool, dim) in [(keyPool, headDim), (valuePool, valueHeadDim)] {
            let size = keyValueHeads * pageSize * dim
            UnsafeMutableRawPointer(pool.baseAddress! + Int(to) * size)
                .copyMemory(from: UnsafeRawPointer(pool.baseAddress! + Int(from) * size),
                            byteCount: size * MemoryLayout<Element>.stride)
        }
    }

    /// Appends a step's keys and values to several sequences at once: `tokens[i]` rows to
    /// `sequences[i]` (one each by default), read in order from `keys` `[Σ tokens, Hkv, D]`
    /// and `values` `[Σ tokens, Hkv, Dv]` (a K/V projection's output as it lies) straight into
    /// the pages. Either everything is appended or, on an error (an unknown sequence, a size
    /// mismatch, too few free pages for the whole step), nothing is.
    public func append(_ sequences: [SequenceID], keys: UnsafeBufferPointer<Element>,
                       values: UnsafeBufferPointer<Element>, tokens: [Int]? = nil) throws(KVCacheError) {
        let counts = tokens ?? Array(repeating: 1, count: sequences.count)
        guard counts.count == sequences.count else {
            throw .mismatchedShape(argument: "tokens", expected: sequences.count, got: counts.count)
        }
        if let bad = counts.firstIndex(where: { $0 < 0 }) {
            throw .invalidArgument(argument: "tokens", reason: "tokens[\(bad)] is \(counts[bad]); it must be >= 0")
        }
        guard Set(sequences).count == sequences.count else {
            throw .invalidArgument(argument: "sequences", reason: "a sequence is listed twice")
        }
        let rows = counts.reduce(0, +)
        guard keys.count == rows * keyValueHeads * headDim else {
            throw .mismatchedShape(argument: "keys", expected: rows * keyValueHeads * headDim, got: keys.count)
        }
        guard values.count == rows * keyValueHeads * valueHeadDim else {
            throw .mismatchedShape(argument: "values", expected: rows * keyValueHeads * valueHeadDim,
                                   got: values.count)
        }
        try locked { () throws(KVCacheError) in
            // Pages the step needs: new pages past each sequence's last, plus a copy of a
            // shared, partly filled last page that the sequence is about to write into.
            var needed = 0
            for (id, n) in zip(sequences, counts) {
                guard let s = self.sequences[id.rawValue] else { throw .unknownSequence(id.rawValue) }
                guard n > 0 else { continue }
                let have = s.pages.count, want = (s.length + n + pageSize - 1) / pageSize
                needed += want - have
                if s.length % pageSize != 0, let last = s.pages.last, references[Int(last)] > 1 { needed += 1 }
            }
            guard needed <= freePages.count else {
                throw .capacityExhausted(needed: needed, free: freePages.count)
            }
            var row = 0
            for (id, n) in zip(sequences, counts) {
                defer { row += n }
                guard n > 0 else { continue }
                // Taken out of the table while it grows, so its page list is not copied.
                var s = self.sequences.removeValue(forKey: id.rawValue)!
                if s.length % pageSize != 0, let last = s.pages.last, references[Int(last)] > 1 {
                    let copy = take()  // copy on write: the other holders keep the old page
                    copyPage(last, to: copy)
                    release(last)
                    s.pages[s.pages.count - 1] = copy
                }
                for t in 0 ..< n {
                    let position = s.length + t
                    if position / pageSize == s.pages.count { s.pages.append(take()) }
                    let page = s.pages[position / pageSize]
                    for g in 0 ..< keyValueHeads {
                        copyRow(pool: keyPool, dim: headDim, page: page, row: position % pageSize, head: g,
                                from: keys.baseAddress! + ((row + t) * keyValueHeads + g) * headDim)
                        copyRow(pool: valuePool, dim: valueHeadDim, page: page, row: position % pageSize,
                                head: g, from: values.baseAddress! + ((row + t) * keyValueHeads + g) * valueHeadDim)
                    }
                }
                s.length += n
                self.sequences[id.rawValue] = s
            }
        }
    }

    /// The page table of `sequences` (CSR) and their lengths, as a paged call reads them.
    public func pages(for sequences: [SequenceID]) throws(KVCacheError) -> (pages: KVPages, lengths: [Int]) {
        try locked { () throws(KVCacheError) -> (KVPages, [Int]) in
            var indptr: [Int32] = [0], indices: [Int32] = [], last: [Int32] = [], lengths: [Int] = []
            for id in sequences {
                guard let s = self.sequences[id.rawValue] else { throw .unknownSequence(id.rawValue) }
                let used = (s.length + pageSize - 1) / pageSize
                indices += s.pages.prefix(used)
                indptr.append(Int32(indices.count))
                last.append(s.length == 0 ? 0 : Int32(s.length - (used - 1) * pageSize))
                lengths.append(s.length)
            }
            let pages = KVPages(pageSize: pageSize, pageCount: capacity,
                                table: .csr(indptr: indptr, indices: indices, lastPageLengths: last),
                                layout: .hnd)
            return (pages, lengths)
        }
    }

    /// Attention for a batch of this cache's sequences: `queryLengths[i]` query rows (1 by
    /// default: decoding) of `sequences[i]`, packed in `query` `[Σ rows, queryHeads, D]`, into
    /// `output` `[Σ rows, queryHeads, Dv]` (and `logSumExp` `[queryHeads, Σ rows]`). Each
    /// sequence's rows are its last positions (append their keys first); pass
    /// `AttentionOptions(causal: .bottomRight)` for rows that must not see later keys of their
    /// own step (speculative rows, prefill chunks). Every option applies except the key
    /// lengths and offsets, which the cache supplies. Appends to these sequences must not run
    /// during the call.
    public func attention<Q: AttentionElement>(
        query: UnsafeBufferPointer<Q>, output: UnsafeMutableBufferPointer<Q>,
        logSumExp: UnsafeMutableBufferPointer<Float>? = nil, sequences: [SequenceID],
        queryLengths: [Int]? = nil, queryHeads: Int, options: AttentionOptions = AttentionOptions()
    ) throws(KVCacheError) {
        let rows = queryLengths ?? Array(repeating: 1, count: sequences.count)
        guard rows.count == sequences.count else {
            throw .mismatchedShape(argument: "queryLengths", expected: sequences.count, got: rows.count)
        }
        guard !sequences.isEmpty else {
            throw .invalidArgument(argument: "sequences", reason: "no sequence given")
        }
        if let bad = rows.firstIndex(where: { $0 < 0 }) {
            throw .invalidArgument(argument: "queryLengths", reason: "queryLengths[\(bad)] is \(rows[bad])")
        }
        guard queryHeads >= 1, queryHeads % keyValueHeads == 0 else {
            throw .invalidArgument(argument: "queryHeads",
                                   reason: "\(queryHeads) is not a positive multiple of the cache's \(keyValueHeads) key/value heads")
        }
        let total = rows.reduce(0, +)
        guard query.count == total * queryHeads * headDim else {
            throw .mismatchedShape(argument: "query", expected: total * queryHeads * headDim, got: query.count)
        }
        guard output.count == total * queryHeads * valueHeadDim else {
            throw .mismatchedShape(argument: "output", expected: total * queryHeads * valueHeadDim,
                                   got: output.count)
        }
        let (pages, lengths) = try self.pages(for: sequences)
        let shape = AttentionShape(batch: sequences.count, queryHeads: queryHeads,
                                   keyValueHeads: keyValueHeads, queryLength: max(1, total),
                                   keyLength: max(1, lengths.max() ?? 1), headDim: headDim,
                                   valueHeadDim: valueHeadDim)
        var options = options
        options.layout = .blhd
        options.keyLengths = nil
        options.keySequenceOffsets = nil
        options.querySequenceOffsets = rows.reduce(into: [0]) { $0.append($0.last! + $1) }
        options.queryLengths = nil
        guard total > 0 else { return }
        do {
            try FlashAttention.forward(query: query,
                                       keyPages: UnsafeBufferPointer(keyPool),
                                       valuePages: UnsafeBufferPointer(valuePool), pages: pages,
                                       output: output, logSumExp: logSumExp, shape: shape,
                                       options: options)
        } catch { throw .attention(error) }
    }
}

/// The C allocator's `free`, for the pools (inside `KVCache`, `free` is the sequence method).
private func freePool<T>(_ pool: UnsafeMutablePointer<T>?) { free(pool) }
