import AttentionTools
import Foundation
import FlashAttention

/// What the benchmark can run in one case (shared with attention-parity).
public typealias BenchImplementation = ToolImplementation

/// The causal modes as the command line spells them.
public enum BenchCausal: String, CaseIterable, Sendable, Codable {
    case none
    case bottomRight = "bottom-right"
    case topLeft = "top-left"

    public var mask: CausalMask {
        switch self {
        case .none: .none
        case .bottomRight: .bottomRight
        case .topLeft: .topLeft
        }
    }
}

/// How --varlen draws the lengths of the packed sequences of a case.
public enum VarlenDistribution: String, CaseIterable, Sendable, Codable {
    /// Every sequence N / B tokens (what padding costs nothing for).
    case equal
    /// Lengths proportional to uniform draws in (0, 1].
    case uniform
    /// Lengths proportional to exponential draws: a few long sequences, many short ones.
    case exponential
}

/// A seeded uniform generator in [0, 1) (a 64-bit LCG's top 53 bits): the benchmark's masks
/// and lengths are the same on every run and for every implementation.
struct SeededUniform {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / Double(1 << 53)
    }
}

/// How a flash case cuts its keys into split-KV chunks (`AttentionOptions.keySplitSize`), as
/// --kv-split spells it: `auto`, `none` or a chunk size in keys.
public enum KVSplit: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The library chooses (keySplitSize 0).
    case automatic
    /// Never split (keySplitSize Int.max).
    case never
    /// Chunks of this many keys (> 0).
    case keys(Int)

    /// `auto`, `none` or a positive integer; nil for anything else (0, negatives, junk).
    public init?(argument: String) {
        switch argument.trimmingCharacters(in: .whitespaces).lowercased() {
        case "auto": self = .automatic
        case "none": self = .never
        case let text:
            guard let n = Int(text), n > 0 else { return nil }
            self = .keys(n)
        }
    }

    /// The value of `AttentionOptions.keySplitSize`.
    public var keySplitSize: Int {
        switch self {
        case .automatic: 0
        case .never: .max
        case .keys(let n): n
        }
    }

    /// As the command line and the reports spell it.
    public var description: String {
        switch self {
        case .automatic: "auto"
        case .never: "none"
        case .keys(let n): "\(n)"
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = KVSplit(argument: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not a --kv-split value: \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Which pass a case times.
public enum BenchPass: String, CaseIterable, Sendable, Codable {
    case forward, backward
}

/// One benchmark problem: a shape, a causal mode and a thread count (the implementation is
/// chosen per measurement, so flash and naive of one configuration sit side by side).
public struct BenchConfiguration: Sendable, Hashable, Codable {
    public var batch: Int
    public var queryHeads: Int
    public var keyValueHeads: Int
    public var queryLength: Int
    public var keyLength: Int
    public var headDim: Int
    public var causal: BenchCausal
    public var threads: Int
    public var pass: BenchPass = .forward
    /// Sliding window sides (nil = unbounded on that side; both nil = no window).
    public var windowLeft: Int?
    public var windowRight: Int?
    /// Logit soft-cap (nil = off) and ALiBi (BLOOM's slopes for Hq heads when true).
    public var softcap: Float?
    public var alibi = false
    /// Block-sparse: the fraction of blocks kept and the (square) block size; nil = dense.
    public var blockSparseKeep: Double?
    public var blockSparseSize: Int?

    /// A dense element mask: boolean keeping this fraction (`maskDensity`), or additive
    /// (finite values, `additiveMask`); seeded, the same for every implementation.
    public var maskDensity: Double?
    public var additiveMask = false
    /// Packed variable-length sequences: `batch` sequences, `queryLength` tokens in all (keys
    /// the same sequences), lengths drawn from this distribution; nil = a padded batch.
    public var varlen: VarlenDistribution?
    /// The split-KV chunking flash is asked for (`AttentionOptions.keySplitSize`).
    public var kvSplit: KVSplit = .automatic
    /// K and V in a paged cache of pages of this many keys (pages in a seeded random order of
    /// the pool, HND or NHD: `pageLayout`); nil: contiguous tensors.
    public var pageSize: Int?
    /// The pools' layout when paged: "hnd" or "nhd".
    public var pageLayout = "hnd"
    /// The serving mix: `batch` decode sequences (one query each, contexts drawn log-uniformly
    /// in [1024, keyLength], seeded) and one chunked prefill of `queryLength` rows on a prefix of
    /// 1024 keys, bottom-right causal, all in one call (``servingLengths``).
    public var serving = false
    /// Element types of Q/O and K/V (dO and the gradients follow their tensors).
    public var storage: BenchStorage = .fp32

    /// The seeded lengths of a varlen case: `batch` values ≥ 1 summing to `queryLength`.
    public var sequenceLengths: [Int]? {
        guard let varlen else { return nil }
        var random = SeededUniform(seed: 0xD1B5_4A32_D192_ED03)
        let weights: [Double] = (0 ..< batch).map { _ in
            switch varlen {  // draws in (0, 1]
            case .equal: 1
            case .uniform: random.next() + 0x1p-53
            case .exponential: -log(random.next() + 0x1p-53) + 1e-9
            }
        }
        // One token each, the rest shared in proportion (largest remainders get the leftovers).
        let spare = max(0, queryLength - batch), total = weights.reduce(0, +)
        let exact = weights.map { Double(spare) * $0 / total }
        var lengths = exact.map { 1 + Int($0) }
        let order = exact.indices.sorted { exact[$0] - floor(exact[$0]) > exact[$1] - floor(exact[$1]) }
        for i in order.prefix(queryLength - lengths.reduce(0, +)) { lengths[i] += 1 }
        return lengths
    }

    /// The packed offsets of a varlen case (cu_seqlens).
    /// The serving mix's (query rows, keys) per sequence: `batch` decode sequences, then the
    /// chunked prefill.
    public var servingLengths: (queries: [Int], keys: [Int])? {
        guard serving else { return nil }
        var random = SeededUniform(seed: 0x5EED_CAFE)
        let low = min(1024.0, Double(keyLength)), high = Double(keyLength)
        let contexts = (0 ..< batch).map { _ in Int((low * pow(high / low, random.next())).rounded()) }
        return (Array(repeating: 1, count: batch) + [queryLength],
                contexts + [min(1024, keyLength) + queryLength])
    }

    /// Per-sequence (query rows, keys) when the sequences differ (--varlen, the serving mix);
    /// nil for a rectangular batch.
    public var perSequence: (queries: [Int], keys: [Int])? {
        if let mix = servingLengths { return mix }
        return sequenceLengths.map { ($0, $0) }
    }

    /// The sequences of one call (the serving mix adds its chunked prefill to `batch`).
    public var sequenceCount: Int { perSequence?.queries.count ?? batch }

    /// Keys of every sequence.
    public var keysPerSequence: [Int] {
        perSequence?.keys ?? Array(repeating: keyLength, count: batch)
    }

    static func offsets(_ lengths: [Int]) -> [Int] { lengths.reduce(into: [0]) { $0.append($0.last! + $1) } }

    /// Packed query offsets (cu_seqlens_q) of a case with per-sequence lengths.
    public var sequenceOffsets: [Int]? { perSequence.map { Self.offsets($0.queries) } }

    /// Packed key offsets (cu_seqlens_k): per-sequence lengths stored contiguously (a paged
    /// case takes its lengths from the page table).
    public var keyOffsets: [Int]? { pageSize == nil ? perSequence.map { Self.offsets($0.keys) } : nil }

    /// The shape the contiguous buffers are allocated with: packed sequences have no batch
    /// dimension.
    public var bufferShape: AttentionShape {
        var s = shape
        if let per = perSequence {
            s.batch = 1
            s.queryLength = per.queries.reduce(0, +)
            s.keyLength = per.keys.reduce(0, +)
        }
        return s
    }

    public var elementMask: AttentionMask? {
        guard maskDensity != nil || additiveMask else { return nil }
        var random = SeededUniform(seed: 0x2545_F491_4F6C_DD1D)
        func next() -> Double { random.next() }
        let s = shape
        let n = s.batch * s.queryHeads * queryLength * keyLength
        if additiveMask {
            return AttentionMask(additive: (0 ..< n).map { _ in Float(next() * 4 - 2) }, strides: .dense(s))
        }
        let keep = maskDensity ?? 1
        return AttentionMask(boolean: (0 ..< n).map { _ in next() < keep }, strides: .dense(s))
    }

    /// The seeded block mask of a block-sparse case (the same for every implementation).
    public var blockMask: BlockMask? {
        guard let keep = blockSparseKeep, let size = blockSparseSize else { return nil }
        var random = SeededUniform(seed: 0x9E37_79B9_7F4A_7C15)
        let s = shape
        let nq = (queryLength + size - 1) / size, nk = (keyLength + size - 1) / size
        let kept = (0 ..< s.batch * s.queryHeads * nq * nk).map { _ in random.next() < keep }
        return BlockMask(kept: kept, blockQuery: size, blockKey: size, shape: s)
    }

    /// BLOOM's ALiBi slopes for `heads` heads: 2^(−8k/heads), k = 1 … heads.
    public var alibiSlopes: [Float]? {
        guard alibi else { return nil }
        return (1 ... queryHeads).map { Float(exp2(-8.0 * Double($0) / Double(queryHeads))) }
    }

    /// The window as the library takes it.
    public var window: SlidingWindow? {
        windowLeft == nil && windowRight == nil ? nil
            : SlidingWindow(left: windowLeft, right: windowRight)
    }

    public init(batch: Int, queryHeads: Int, keyValueHeads: Int, queryLength: Int,
                keyLength: Int, headDim: Int, causal: BenchCausal, threads: Int,
                pass: BenchPass = .forward) {
        self.pass = pass
        self.batch = batch
        self.queryHeads = queryHeads
        self.keyValueHeads = keyValueHeads
        self.queryLength = queryLength
        self.keyLength = keyLength
        self.headDim = headDim
        self.causal = causal
        self.threads = threads
    }

    public var shape: AttentionShape {
        var s = AttentionShape(batch: batch, queryHeads: queryHeads, keyValueHeads: keyValueHeads,
                               queryLength: queryLength, keyLength: keyLength, headDim: headDim)
        if let per = perSequence {  // packed extents
            s.batch = per.queries.count
            s.queryLength = per.queries.reduce(0, +)
            s.keyLength = per.keys.reduce(0, +)
        }
        if pageSize != nil { s.keyLength = max(1, keysPerSequence.max() ?? 1) }  // the longest
        return s
    }

    /// Query–key pairs the mask leaves visible, over one (batch, head).
    public var visiblePairs: Int {
        visibleQueryKeyPairs(queryLength: queryLength, keyLength: keyLength, causal: causal.mask,
                             window: window)
    }

    /// Forward FLOPs: 2·Dqk per score and 2·Dv per probability–value product, over the visible
    /// pairs only (= 4·B·Hq·D·pairs when Dv = Dqk). Masked pairs are not counted, so a causal
    /// run is credited only with the work it must do.
    public var forwardFlops: Double {
        Double(2 * headDim + 2 * headDim) * Double(totalVisiblePairs)
    }

    /// Visible pairs over every (batch, head): the causal/window pairs, only inside kept blocks
    /// for a block-sparse case.
    public var totalVisiblePairs: Int {
        if let per = perSequence {
            return queryHeads * zip(per.queries, per.keys).reduce(0) {
                $0 + visibleQueryKeyPairs(queryLength: $1.0, keyLength: $1.1, causal: causal.mask, window: window)
            }
        }
        guard let bm = blockMask else { return batch * queryHeads * visiblePairs }
        var total = 0
        for b in 0 ..< batch {
            for h in 0 ..< queryHeads {
                for i in 0 ..< queryLength {
                    let range = rowRange(i)
                    var j = range.lowerBound
                    while j < range.upperBound {  // whole block columns at a time
                        let end = min(range.upperBound, (j / bm.blockKey + 1) * bm.blockKey)
                        if bm.keeps(batch: b, head: h, query: i, key: j) { total += end - j }
                        j = end
                    }
                }
            }
        }
        return total
    }

    func rowRange(_ i: Int) -> Range<Int> {
        let off = keyLength - queryLength
        var lo = 0, hi = keyLength
        switch causal {
        case .none: break
        case .bottomRight: hi = min(hi, i + off + 1)
        case .topLeft: hi = min(hi, i + 1)
        }
        if let l = windowLeft { lo = max(lo, i + off - l) }
        if let r = windowRight { hi = min(hi, i + off + r + 1) }
        lo = max(0, min(keyLength, lo))
        return lo ..< max(lo, min(keyLength, hi))
    }

    /// Keys at least one query row sees (the causal mask and the window; element masks and
    /// block sparsity are not subtracted), over one (batch, head).
    public var visibleKeys: Int {
        visibleKeyCount(queryLength: queryLength, keyLength: keyLength, causal: causal.mask, window: window)
    }

    /// Bytes of K and V the forward pass must read at least once: B · Hkv · (visible keys) ·
    /// (Dqk + Dv) · 4, per sequence for packed (varlen) cases. With `--kv-lens` and no causal
    /// mask every one of the Lk keys is visible. The bound decode is judged by: one query
    /// against a long cache reads each key and value once and does little else.
    public var keyValueBytes: Int {
        let perKey = keyValueHeads * (headDim + headDim) * storage.keyValue.byteCount
        if let per = perSequence {
            return perKey * zip(per.queries, per.keys).reduce(0) {
                $0 + visibleKeyCount(queryLength: $1.0, keyLength: $1.1, causal: causal.mask, window: window)
            }
        }
        return batch * perKey * visibleKeys
    }

    /// Bytes the case's K and V buffers take (all of Lk, padded batch or packed), what
    /// --max-kv-bytes caps.
    public var keyValueBufferBytes: Int {
        let s = bufferShape
        // A paged case holds the contiguous tensors and the pools while it builds the pools.
        return (s.keyCount + s.valueCount) * storage.keyValue.byteCount * (pageSize == nil ? 1 : 2)
    }

    /// FLOPs credited to this case's pass: the forward's, or 2.5× that for the backward
    /// (FlashAttention's convention: five products of the forward's two sizes).
    public var flops: Double { pass == .forward ? forwardFlops : 2.5 * forwardFlops }

    /// Bytes the naive implementation's score matrices take: one Lq×Lk float32 buffer for
    /// the forward, two (P and dP) for the backward.
    public var naiveScoreBytes: Int {
        let queries = perSequence?.queries.max() ?? queryLength
        let keys = pageSize != nil ? shape.keyLength : perSequence?.keys.max() ?? keyLength
        return (pass == .forward ? 1 : 2) * queries * keys * MemoryLayout<Float>.size
    }
}

/// Σ over query rows of the keys each row sees (causal mask and sliding window).
public func visibleQueryKeyPairs(queryLength lq: Int, keyLength lk: Int,
                                 causal: CausalMask, window: SlidingWindow? = nil) -> Int {
    let off = lk - lq
    var total = 0
    for i in 0 ..< lq {
        var lo = 0, hi = lk
        switch causal {
        case .none: break
        case .bottomRight: hi = min(hi, i + off + 1)
        case .topLeft: hi = min(hi, i + 1)
        }
        if let left = window?.left { lo = max(lo, i + off - left) }
        if let right = window?.right { hi = min(hi, i + off + right + 1) }
        total += max(0, min(lk, hi) - max(0, lo))
    }
    return total
}

/// Keys j that at least one query row i sees (causal mask and sliding window): the size of
/// the union of the rows' key ranges.
public func visibleKeyCount(queryLength lq: Int, keyLength lk: Int,
                            causal: CausalMask, window: SlidingWindow? = nil) -> Int {
    let off = lk - lq
    var total = 0, covered = 0  // keys below `covered` are counted
    // Both ends of a row's range never decrease with i, so one sweep merges them.
    for i in 0 ..< lq {
        var lo = 0, hi = lk
        switch causal {
        case .none: break
        case .bottomRight: hi = min(hi, i + off + 1)
        case .topLeft: hi = min(hi, i + 1)
        }
        if let left = window?.left { lo = max(lo, i + off - left) }
        if let right = window?.right { hi = min(hi, i + off + right + 1) }
        lo = max(0, lo)
        hi = min(lk, hi)
        guard hi > lo else { continue }
        let start = max(lo, covered)
        if hi > start { total += hi - start }
        covered = max(covered, hi)
        if window == nil && causal == .none { break }  // every row sees the same keys
    }
    return total
}

/// A query-head count with its key/value-head count (Hq a multiple of Hkv).
public struct HeadConfiguration: Sendable, Hashable, Codable, CustomStringConvertible {
    public var queryHeads: Int
    public var keyValueHeads: Int

    public init(_ queryHeads: Int, _ keyValueHeads: Int) {
        self.queryHeads = queryHeads
        self.keyValueHeads = keyValueHeads
    }

    public var isValid: Bool { queryHeads > 0 && keyValueHeads > 0 && queryHeads % keyValueHeads == 0 }

    public var description: String { "\(queryHeads)/\(keyValueHeads)" }
}

/// The named sweeps of --scenario: every list a sweep needs. Options given beside
/// --scenario replace the scenario's value for that list.
public struct SweepPreset: Sendable, Hashable {
    public var seqLens: [Int]
    public var kvLens: [Int]?
    public var headDims: [Int]
    /// Query heads, crossed with --kv-heads (default Hkv = Hq) when `headPairs` is nil or
    /// --heads / --kv-heads is given.
    public var heads: [Int]
    /// (Hq, Hkv) pairs taken as they are, not as a product.
    public var headPairs: [HeadConfiguration]?
    public var batches: [Int]
    public var causals: [BenchCausal]
    public var implementations: [BenchImplementation]
    public var kvSplits: [KVSplit]

    /// The compute-bound sweep (the default): Lq = Lk from 256 to 8192, H = 8, B = 1,
    /// D ∈ {64, 128}, non-causal and causal, flash beside naive.
    public static let prefill = SweepPreset(
        seqLens: [256, 512, 1024, 2048, 4096, 8192], kvLens: nil, headDims: [64, 128], heads: [8],
        headPairs: nil, batches: [1], causals: [.none, .bottomRight], implementations: [.flash, .naive],
        kvSplits: [.automatic])

    /// One new token against a long K/V cache (bound by memory bandwidth): Lq = 1,
    /// Lk ∈ {1024, 4096, 16384, 32768, 131072}, Hq/Hkv ∈ {32/8, 32/32, 8/1}, B ∈ {1, 8},
    /// D ∈ {64, 128}, split-KV auto and none, flash, non-causal.
    public static let decode = SweepPreset(
        seqLens: [1], kvLens: [1024, 4096, 16384, 32768, 131072], headDims: [64, 128], heads: [32, 8],
        headPairs: [HeadConfiguration(32, 8), HeadConfiguration(32, 32), HeadConfiguration(8, 1)],
        batches: [1, 8], causals: [.none], implementations: [.flash], kvSplits: [.automatic, .never])

    /// A serving step (with ``BenchConfiguration/serving``): 8 decode sequences of contexts
    /// 1k–32k and one 512-row chunked prefill, Hq/Hkv 32/8, D 128, bottom-right causal.
    public static let serving = SweepPreset(
        seqLens: [512], kvLens: [32768], headDims: [128], heads: [32],
        headPairs: [HeadConfiguration(32, 8)], batches: [8], causals: [.bottomRight],
        implementations: [.flash], kvSplits: [.automatic])
}

/// The lists a sweep is the Cartesian product of.
public struct SweepSpecification: Sendable, Hashable {
    public var seqLens: [Int]
    public var kvLens: [Int]?
    public var headDims: [Int]
    public var heads: [Int]
    public var kvHeads: [Int]?
    public var batches: [Int]
    public var causals: [BenchCausal]
    public var implementations: [BenchImplementation]
    public var threads: [Int]
    public var passes: [BenchPass] = [.forward]
    public var window: SlidingWindow?
    public var softcap: Float?
    public var alibi = false
    public var blockSparseKeep: Double?
    public var blockSparseSize: Int?
    public var maskDensity: Double?
    public var additiveMask = false
    public var varlen: VarlenDistribution?
    /// --kv-split values.
    public var kvSplits: [KVSplit] = [.automatic]
    /// --dtype and --kv-dtype: the storages each configuration runs in, forward and backward.
    public var storages: [BenchStorage] = [.fp32]
    /// (Hq, Hkv) pairs taken as they are; when set, `heads` and `kvHeads` are not crossed.
    public var headPairs: [HeadConfiguration]?
    /// Configurations whose K and V buffers would take more bytes are left out (nil = no cap).
    public var maxKeyValueBytes: Int?
    /// K/V storage of each configuration: nil (contiguous) and page sizes (--paged).
    public var pageSizes: [Int?] = [nil]
    /// The pools' layout of paged configurations (--page-layout).
    public var pageLayout = "hnd"
    /// The serving mix (--scenario serving).
    public var serving = false

    public init(seqLens: [Int], kvLens: [Int]? = nil, headDims: [Int], heads: [Int],
                kvHeads: [Int]? = nil, batches: [Int], causals: [BenchCausal],
                implementations: [BenchImplementation], threads: [Int]) {
        self.seqLens = seqLens
        self.kvLens = kvLens
        self.headDims = headDims
        self.heads = heads
        self.kvHeads = kvHeads
        self.batches = batches
        self.causals = causals
        self.implementations = implementations
        self.threads = threads
    }

    /// The head configurations: `headPairs` as they are, else every Hq with every Hkv that
    /// divides it (Hkv = Hq when `kvHeads` is nil).
    public var headConfigurations: [HeadConfiguration] {
        if let headPairs { return headPairs.filter(\.isValid) }
        return heads.flatMap { h in (kvHeads ?? [h]).map { HeadConfiguration(h, $0) } }.filter(\.isValid)
    }

    /// The configurations the sweep runs: the product, less those over `maxKeyValueBytes`.
    public var configurations: [BenchConfiguration] {
        guard let cap = maxKeyValueBytes else { return allConfigurations }
        return allConfigurations.filter { $0.keyValueBufferBytes <= cap }
    }

    /// The configurations `maxKeyValueBytes` leaves out.
    public var leftOutConfigurations: [BenchConfiguration] {
        guard let cap = maxKeyValueBytes else { return [] }
        return allConfigurations.filter { $0.keyValueBufferBytes > cap }
    }

    /// Every configuration of the product, ordered so that a chart's lines read left to right:
    /// threads, batch, heads, head dim, causal, pass, split, then lengths.
    public var allConfigurations: [BenchConfiguration] {
        var out: [BenchConfiguration] = []
        for t in threads {
            for b in batches {
                for hc in headConfigurations {
                    for d in headDims {
                        for c in causals {
                            for pass in passes {
                                for split in kvSplits {
                                  for storage in storages {
                                    for page in pageSizes {
                                    for lq in seqLens {
                                        for lk in kvLens ?? [lq] {
                                            var config = BenchConfiguration(
                                                batch: b, queryHeads: hc.queryHeads,
                                                keyValueHeads: hc.keyValueHeads,
                                                queryLength: lq, keyLength: lk, headDim: d,
                                                causal: c, threads: t, pass: pass)
                                            config.windowLeft = window?.left
                                            config.windowRight = window?.right
                                            config.softcap = softcap
                                            config.alibi = alibi
                                            config.blockSparseKeep = blockSparseKeep
                                            config.blockSparseSize = blockSparseSize
                                            config.maskDensity = maskDensity
                                            config.additiveMask = additiveMask
                                            config.varlen = varlen
                                            config.kvSplit = split
                                            config.storage = storage
                                            config.pageSize = page
                                            config.pageLayout = pageLayout
                                            config.serving = serving
                                            out.append(config)
                                        }
                                    }
                                    }
                                  }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
