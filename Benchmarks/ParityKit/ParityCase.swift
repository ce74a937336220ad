import AttentionTools
import FlashAttention
import Foundation

/// Why a case directory could not be run.
public struct CaseError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One parity case directory: inputs, expected outputs and the parameters of case.json.
///
/// Layout: `q.npy [B,Hq,Lq,Dqk]`, `k.npy [B,Hkv,Lk,Dqk]`, `v.npy [B,Hkv,Lk,Dv]`, expected
/// `out.npy [B,Hq,Lq,Dv]` and optionally `lse.npy [B,Hq,Lq]`, and `case.json`. A side with
/// packed sequences (`cu_seqlens_q` / `cu_seqlens_k`) has FlashAttention's varlen layout
/// instead: `q.npy`, `out.npy`, `dout.npy`, `dq.npy` `[Tq, Hq, D]`, `lse.npy` `[Hq, Tq]`;
/// `k.npy`, `v.npy`, `dk.npy`, `dv.npy` `[Tk, Hkv, D]`. In memory every tensor is head-major
/// (`.bhld`; a packed side `[H, T, D]`), so arrays are transposed on loading and writing.
public struct ParityCase: Sendable {
    public var directory: String
    public var shape: AttentionShape
    public var query: [Float]
    public var key: [Float]
    public var value: [Float]
    public var expectedOutput: NpyArray?
    public var expectedLogSumExp: NpyArray?
    /// ∂loss/∂out, and the expected gradients (any of them may be absent).
    public var outputGradient: [Float]?
    public var expectedGradients: [String: NpyArray] = [:]
    /// Who computed the peer tensors (case.json "peer", e.g. "pytorch 2.5.1 float32"), and
    /// those tensors — `peer_out.npy`, `peer_lse.npy`, `peer_dq.npy`, … in the layouts of
    /// `out.npy`, … — another library's float32 results for the same inputs. The report
    /// puts their error against the expected tensors beside ours, with the ratio.
    public var peer: String?
    public var peerTensors: [String: NpyArray] = [:]
    /// Everything case.json sets: scale, causal mask, window, soft-cap, ALiBi, lengths, masks.
    public var attention = AttentionOptions()
    /// How q.npy (and so the output) and k.npy, v.npy store their elements: float32 (also for
    /// float64 files), float16 (`<f2`) or bfloat16 (`<u2` bit patterns, named by case.json's
    /// "bfloat16" list). The forward and the backward run in these types (dout.npy's values in
    /// the output's type, each gradient in its tensor's, compared widened).
    public var queryType: AttentionElementType = .float32
    public var keyValueType: AttentionElementType = .float32
    /// Features case.json asks for that the library does not have: each fails the case.
    public var unsupported: [String]
    /// A paged case ("pages" in case.json): k.npy and v.npy are then the page pools as they
    /// lie, `[pages, Hkv, page_size, D]` ("layout": "hnd", the default) or `[pages, page_size,
    /// Hkv, D]` ("nhd"), and the table is one of
    /// `{"page_size": P, "indptr": […], "indices": […], "last_page_len": […]}` (FlashInfer's CSR)
    /// or `{"page_size": P, "block_table": [[…], …], "seq_lens": […]}` (vLLM's block table; rows
    /// padded to one length). The forward reads the pages; gradients are not checked.
    public var pages: KVPages?

    /// The case.json keys this version understands.
    public static let supportedKeys: Set<String> = ["scale", "causal", "window", "softcap",
                                                    "alibi_slopes", "query_lengths", "key_lengths",
                                                    "cu_seqlens_q", "cu_seqlens_k",
                                                    "mask", "block_mask", "kv_split_size", "bfloat16",
                                                    "pages", "peer", "positions"]
    /// Keys the format defines for features the library does not have yet.
    public static let pendingKeys: Set<String> = []

    /// Loads `directory`. With `requireExpected` false (for --write), out.npy may be missing.
    public init(directory: String, requireExpected: Bool = true) throws {
        self.directory = directory
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

        // case.json
        var params: [String: Any] = [:]
        if exists("case.json") {
            let data = try Data(contentsOf: URL(fileURLWithPath: path("case.json")))
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CaseError("\(path("case.json")): not a JSON object")
            }
            params = object
        }
        var unsupported: [String] = []
        for (key, value) in params.sorted(by: { $0.key < $1.key }) where !Self.supportedKeys.contains(key) {
            if value is NSNull { continue }  // an explicit null is "absent"
            unsupported.append(Self.pendingKeys.contains(key) ? key : "\(key) (unknown key)")
        }
        switch params["scale"] {
        case nil, is NSNull: attention.scale = nil
        case let n as NSNumber:
            guard n.doubleValue.isFinite else { throw CaseError("case.json: scale must be finite") }
            attention.scale = n.floatValue
        default: throw CaseError("case.json: scale must be a number or absent")
        }
        switch params["causal"] {
        case nil, is NSNull: attention.causal = .none
        case let s as String:
            switch s {
            case "none": attention.causal = .none
            case "bottom_right": attention.causal = .bottomRight
            case "top_left": attention.causal = .topLeft
            default: throw CaseError("case.json: causal is '\(s)'; use none, bottom_right or top_left")
            }
        default: throw CaseError("case.json: causal must be a string")
        }
        switch params["window"] {
        case nil, is NSNull: attention.window = nil
        case let pair as [Any]:
            let sides = pair.compactMap { ($0 as? NSNumber).map { $0.intValue } }
            guard pair.count == 2, sides.count == 2, sides.allSatisfy({ $0 >= -1 }) else {
                throw CaseError("case.json: window must be [left, right] with each ≥ −1 (−1 = unbounded)")
            }
            attention.window = SlidingWindow(left: sides[0] < 0 ? nil : sides[0],
                                   right: sides[1] < 0 ? nil : sides[1])
        default: throw CaseError("case.json: window must be [left, right] or absent")
        }
        self.unsupported = unsupported
        switch params["softcap"] {
        case nil, is NSNull: attention.softcap = nil
        case let n as NSNumber:
            guard n.doubleValue.isFinite, n.doubleValue > 0 else {
                throw CaseError("case.json: softcap must be a positive number or absent")
            }
            attention.softcap = n.floatValue
        default: throw CaseError("case.json: softcap must be a number or absent")
        }
        switch params["peer"] {
        case nil, is NSNull: peer = nil
        case let s as String: peer = s
        default: throw CaseError("case.json: peer must be a string (who computed the peer_*.npy files) or absent")
        }
        switch params["positions"] {
        case nil, is NSNull: attention.positions = nil
        case let pair as [Any]:
            let starts = pair.compactMap { ($0 as? NSNumber).map { $0.intValue } }
            guard pair.count == 2, starts.count == 2 else {
                throw CaseError("case.json: positions must be [query_start, key_start]")
            }
            attention.positions = SequencePositions(queryStart: starts[0], keyStart: starts[1])
        default: throw CaseError("case.json: positions must be [query_start, key_start] or absent")
        }
        switch params["kv_split_size"] {
        case nil, is NSNull: attention.keySplitSize = 0  // automatic
        case let n as NSNumber:
            guard n.doubleValue == n.doubleValue.rounded(), n.doubleValue >= 1 else {
                throw CaseError("case.json: kv_split_size must be a positive number of keys or absent")
            }
            attention.keySplitSize = n.intValue
        default: throw CaseError("case.json: kv_split_size must be a number or absent")
        }
        func lengths(_ key: String) throws -> [Int]? {
            switch params[key] {
            case nil, is NSNull: return nil
            case let list as [Any]:
                let values = list.compactMap { ($0 as? NSNumber).map { $0.intValue } }
                guard values.count == list.count else {
                    throw CaseError("case.json: \(key) must be a list of integers")
                }
                return values
            default: throw CaseError("case.json: \(key) must be a list of integers or absent")
            }
        }
        attention.queryLengths = try lengths("query_lengths")
        attention.keyLengths = try lengths("key_lengths")
        attention.querySequenceOffsets = try lengths("cu_seqlens_q")
        attention.keySequenceOffsets = try lengths("cu_seqlens_k")
        let packedQ = attention.querySequenceOffsets != nil, packedK = attention.keySequenceOffsets != nil
        for (name, cu) in [("cu_seqlens_q", attention.querySequenceOffsets), ("cu_seqlens_k", attention.keySequenceOffsets)] {
            if let cu, cu.count < 2 { throw CaseError("case.json: \(name) needs at least two offsets") }
        }
        switch params["alibi_slopes"] {
        case nil, is NSNull: attention.alibiSlopes = nil
        case let file as String:
            let slopes = try NpyArray(contentsOf: path(file))
            guard slopes.shape.count == 1 else {
                throw CaseError("\(file) has shape \(slopes.shape); expected [Hq]")
            }
            attention.alibiSlopes = slopes.floats
        default: throw CaseError("case.json: alibi_slopes must be a file name or absent")
        }

        // "bfloat16": the files (by stem: "q", "k", "v", "out", "dout", …) whose `<u2` elements
        // are bfloat16 bit patterns. Each such file is read as bf16, exactly.
        let bf16Files: Set<String>
        switch params["bfloat16"] {
        case nil, is NSNull: bf16Files = []
        case let list as [Any]:
            let names = list.compactMap { $0 as? String }
            guard names.count == list.count else {
                throw CaseError("case.json: bfloat16 must be a list of file stems such as [\"q\", \"k\", \"v\"]")
            }
            bf16Files = Set(names)
        default: throw CaseError("case.json: bfloat16 must be a list of file stems or absent")
        }
        // A tensor file as the library reads it: bf16 bits decoded, anything else as it is.
        func decoded(_ a: NpyArray, _ stem: String) throws -> NpyArray {
            if bf16Files.contains(stem) {
                guard let floats = a.bfloat16Floats else {
                    throw CaseError("\(stem).npy is listed in case.json's bfloat16 but has dtype \(a.dtype.rawValue), not <u2")
                }
                return NpyArray(shape: a.shape, floats: floats)
            }
            if a.dtype == .uint16 {
                throw CaseError("\(stem).npy has dtype <u2; list \"\(stem)\" in case.json's bfloat16 to read it as bfloat16")
            }
            if a.dtype == .bool || a.dtype == .uint8 {
                throw CaseError("\(stem).npy has dtype \(a.dtype.rawValue); a tensor must be float32, float64, float16 or bfloat16 (<u2)")
            }
            return a
        }
        func storage(_ a: NpyArray, _ stem: String) -> AttentionElementType {
            bf16Files.contains(stem) ? .bfloat16 : a.dtype == .float16 ? .float16 : .float32
        }

        // Tensors.
        let qFile = try NpyArray(contentsOf: path("q.npy"))
        let kFile = try NpyArray(contentsOf: path("k.npy"))
        let vFile = try NpyArray(contentsOf: path("v.npy"))
        queryType = storage(qFile, "q")
        keyValueType = storage(kFile, "k")
        guard storage(vFile, "v") == keyValueType else {
            throw CaseError("k.npy (\(keyValueType)) and v.npy (\(storage(vFile, "v"))) must share an element type")
        }
        let q = try decoded(qFile, "q"), k = try decoded(kFile, "k"), v = try decoded(vFile, "v")
        if let spec = params["pages"], !(spec is NSNull) {
            guard let spec = spec as? [String: Any] else { throw CaseError("case.json: pages must be an object") }
            let p = try Self.paged(spec, directory: directory, q: q, k: k, v: v, attention: attention,
                                   load: { name in try decoded(try NpyArray(contentsOf: path(name + ".npy")), name) },
                                   exists: exists, requireExpected: requireExpected)
            (pages, shape, query, key, value) = (p.pages, p.shape, p.query, p.key, p.value)
            (expectedOutput, expectedLogSumExp) = (p.output, p.logSumExp)
            if exists("dout.npy") { self.unsupported.append("dout.npy with pages (the backward does not read paged K/V)") }
            return
        }
        for (name, a, packed) in [("q", q, packedQ), ("k", k, packedK), ("v", v, packedK)] {
            if packed && a.shape.count != 3 {
                throw CaseError("\(name).npy has shape \(a.shape); a packed side is [T, H, D]")
            }
            if !packed && a.shape.count != 4 {
                throw CaseError("\(name).npy has shape \(a.shape); expected 4 dimensions [B, H, L, D]")
            }
        }
        // [B, H, L, D] of each side (a packed side: B from its offsets, L the packed total).
        func dims(_ a: NpyArray, _ cu: [Int]?) -> (b: Int, h: Int, l: Int, d: Int) {
            if let cu { return (cu.count - 1, a.shape[1], a.shape[0], a.shape[2]) }
            return (a.shape[0], a.shape[1], a.shape[2], a.shape[3])
        }
        let qd = dims(q, attention.querySequenceOffsets), kd = dims(k, attention.keySequenceOffsets)
        let vd = dims(v, attention.keySequenceOffsets)
        let (b, hq, lq, dqk) = qd
        let (hkv, lk) = (kd.h, kd.l)
        let dv = vd.d
        guard kd.b == b, vd.b == b else {
            throw CaseError("batch sizes differ: q \(q.shape), k \(k.shape), v \(v.shape) (offsets count as batch + 1)")
        }
        guard kd.d == dqk else {
            throw CaseError("k.npy head dim \(kd.d) differs from q.npy's \(dqk)")
        }
        guard vd.h == hkv, vd.l == lk else {
            throw CaseError("v.npy \(v.shape) does not match k.npy \(k.shape) in heads and length")
        }
        guard hkv > 0, hq % hkv == 0 else {
            throw CaseError("q has \(hq) heads, not a multiple of k's \(hkv)")
        }
        if let slopes = attention.alibiSlopes, slopes.count != hq {
            throw CaseError("alibi_slopes has \(slopes.count) slopes for \(hq) query heads")
        }
        shape = AttentionShape(batch: b, queryHeads: hq, keyValueHeads: hkv, queryLength: lq,
                               keyLength: lk, headDim: dqk, valueHeadDim: dv)
        query = packedQ ? Self.headMajor(q) : q.floats
        key = packedK ? Self.headMajor(k) : k.floats
        value = packedK ? Self.headMajor(v) : v.floats
        // Masks are indexed by local positions: on a packed side, up to the longest sequence.
        func longest(_ cu: [Int]?, _ extent: Int) -> Int {
            guard let cu else { return extent }
            return max(1, zip(cu.dropFirst(), cu).map { $0 - $1 }.max() ?? 1)
        }
        let (mq, mk) = (longest(attention.querySequenceOffsets, lq), longest(attention.keySequenceOffsets, lk))

        // mask: {"file": "mask.npy", "kind": "bool" | "additive"}, broadcastable (NumPy rules,
        // dimensions aligned to the right) to [B, Hq, Lq, Lk].
        switch params["mask"] {
        case nil, is NSNull: attention.mask = nil
        case let spec as [String: Any]:
            guard let file = spec["file"] as? String, let kind = spec["kind"] as? String,
                  kind == "bool" || kind == "additive" else {
                throw CaseError("case.json: mask must be {\"file\": …, \"kind\": \"bool\" or \"additive\"}")
            }
            let m = try NpyArray(contentsOf: path(file))
            let ms = try Self.broadcastStrides(of: m, to: [b, hq, mq, mk], file: file)
            attention.mask = kind == "bool" ? AttentionMask(boolean: m.floats.map { $0 != 0 }, strides: ms)
                                  : AttentionMask(additive: m.floats, strides: ms)
        default: throw CaseError("case.json: mask must be an object or absent")
        }

        // block_mask: {"file": "blocks.npy", "block": [block_q, block_k]}; the array
        // broadcasts to [B, Hq, ⌈Lq/block_q⌉, ⌈Lk/block_k⌉]; nonzero = kept.
        switch params["block_mask"] {
        case nil, is NSNull: attention.blockMask = nil
        case let spec as [String: Any]:
            let sizes = (spec["block"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? []
            guard let file = spec["file"] as? String, sizes.count == 2, sizes.allSatisfy({ $0 >= 1 }) else {
                throw CaseError("case.json: block_mask must be {\"file\": …, \"block\": [rows, keys]}")
            }
            let m = try NpyArray(contentsOf: path(file))
            let target = [b, hq, ceilDivide(mq, sizes[0]), ceilDivide(mk, sizes[1])]
            attention.blockMask = BlockMask(kept: m.floats.map { $0 != 0 }, blockQuery: sizes[0], blockKey: sizes[1],
                                  strides: try Self.broadcastStrides(of: m, to: target, file: file))
        default: throw CaseError("case.json: block_mask must be an object or absent")
        }

        // Expected tensors, as on disk, then in memory order.
        let fileShapes = Self.fileShapes(shape, packedQ: packedQ, packedK: packedK)
        func load(_ name: String, file: String? = nil) throws -> NpyArray {
            let file = file ?? name
            let a = try decoded(try NpyArray(contentsOf: path(file + ".npy")), file)
            guard a.shape == fileShapes[name]! else {
                throw CaseError("\(file).npy has shape \(a.shape); expected \(fileShapes[name]!)")
            }
            let packed = name == "dk" || name == "dv" ? packedK : packedQ
            return packed && name != "lse" ? NpyArray(shape: a.shape, floats: Self.headMajor(a)) : a
        }
        if exists("out.npy") {
            expectedOutput = try load("out")
        } else if requireExpected {
            throw CaseError("\(path("out.npy")) is missing")
        }
        if exists("lse.npy") {
            expectedLogSumExp = try load("lse")
        }
        if exists("dout.npy") {
            outputGradient = try load("dout").floats
            for name in ["dq", "dk", "dv"] where exists(name + ".npy") {
                expectedGradients[name] = try load(name)
            }
        } else {
            for name in ["dq", "dk", "dv"] where exists(name + ".npy") {
                throw CaseError("\(path(name + ".npy")) is given without dout.npy")
            }
        }
        for name in ["out", "lse", "dq", "dk", "dv"] where exists("peer_" + name + ".npy") {
            peerTensors[name] = try load(name, file: "peer_" + name)
        }
    }

    /// A paged case: q.npy `[B, Hq, Lq, Dqk]` (or packed `[Tq, Hq, Dqk]` with cu_seqlens_q),
    /// k.npy and v.npy the page pools, `spec` the "pages" object.
    static func paged(_ spec: [String: Any], directory: String, q: NpyArray, k: NpyArray, v: NpyArray,
                      attention: AttentionOptions, load: (String) throws -> NpyArray,
                      exists: (String) -> Bool, requireExpected: Bool) throws
        -> (pages: KVPages, shape: AttentionShape, query: [Float], key: [Float], value: [Float],
            output: NpyArray?, logSumExp: NpyArray?)
    {
        func ints(_ key: String) throws -> [Int32]? {
            guard let list = spec[key] as? [Any] else { return nil }
            let values = list.compactMap { ($0 as? NSNumber).map { Int32(truncatingIfNeeded: $0.intValue) } }
            guard values.count == list.count else { throw CaseError("case.json: pages.\(key) must be a list of integers") }
            return values
        }
        guard let pageSize = (spec["page_size"] as? NSNumber)?.intValue, pageSize >= 1 else {
            throw CaseError("case.json: pages.page_size must be a positive integer")
        }
        let layoutName = spec["layout"] as? String ?? "hnd"
        guard layoutName == "hnd" || layoutName == "nhd" else {
            throw CaseError("case.json: pages.layout is '\(layoutName)'; use hnd or nhd")
        }
        let nhd = layoutName == "nhd"
        guard attention.keySequenceOffsets == nil, attention.keyLengths == nil else {
            throw CaseError("case.json: a paged case takes its key lengths from pages; no cu_seqlens_k or key_lengths")
        }
        for (name, a) in [("k", k), ("v", v)] where a.shape.count != 4 || a.shape[nhd ? 1 : 2] != pageSize {
            throw CaseError("\(name).npy has shape \(a.shape); a page pool is [pages, \(nhd ? "page_size, Hkv" : "Hkv, page_size"), D] with page_size \(pageSize)")
        }
        let (pageCount, hkv, dqk, dv) = (k.shape[0], k.shape[nhd ? 2 : 1], k.shape[3], v.shape[3])
        guard v.shape[0] == pageCount, v.shape[nhd ? 2 : 1] == hkv else {
            throw CaseError("v.npy \(v.shape) and k.npy \(k.shape) must hold the same pages and heads")
        }
        let table: KVPageTable
        if let indptr = try ints("indptr"), let indices = try ints("indices"), let last = try ints("last_page_len") {
            table = .csr(indptr: indptr, indices: indices, lastPageLengths: last)
        } else if let rows = spec["block_table"] as? [[Any]], let lens = try ints("seq_lens") {
            let width = max(1, rows.map(\.count).max() ?? 1)
            guard rows.allSatisfy({ $0.count == width }) else {
                throw CaseError("case.json: pages.block_table rows must all have one length")
            }
            let flat = rows.flatMap { $0.map { Int32(truncatingIfNeeded: ($0 as? NSNumber)?.intValue ?? -1) } }
            table = .blockTable(flat, pagesPerSequence: width, sequenceLengths: lens)
        } else {
            throw CaseError("case.json: pages needs indptr, indices and last_page_len, or block_table and seq_lens")
        }
        let pages = KVPages(pageSize: pageSize, pageCount: pageCount, table: table, layout: nhd ? .nhd : .hnd)
        let packedQ = attention.querySequenceOffsets != nil
        let b = packedQ ? attention.querySequenceOffsets!.count - 1 : q.shape[0]
        let (hq, lq) = packedQ ? (q.shape[1], q.shape[0]) : (q.shape[1], q.shape[2])
        guard q.shape.count == (packedQ ? 3 : 4), q.shape.last == dqk else {
            throw CaseError("q.npy has shape \(q.shape); expected [B, Hq, Lq, \(dqk)] (or [T, Hq, \(dqk)] packed)")
        }
        guard pages.sequenceCount == b else {
            throw CaseError("pages describe \(pages.sequenceCount) sequences; q.npy has \(b)")
        }
        let longest = (0 ..< b).map { pages.sequenceLength($0) }.max() ?? 1
        let shape = AttentionShape(batch: b, queryHeads: hq, keyValueHeads: hkv, queryLength: lq,
                                   keyLength: max(1, longest), headDim: dqk, valueHeadDim: dv)
        let fileShapes = Self.fileShapes(shape, packedQ: packedQ, packedK: false)
        func expected(_ name: String) throws -> NpyArray? {
            guard exists(name + ".npy") else { return nil }
            let a = try load(name)
            guard a.shape == fileShapes[name]! else {
                throw CaseError("\(name).npy has shape \(a.shape); expected \(fileShapes[name]!)")
            }
            return packedQ && name != "lse" ? NpyArray(shape: a.shape, floats: Self.headMajor(a)) : a
        }
        let output = try expected("out")
        if output == nil && requireExpected { throw CaseError("\(directory)/out.npy is missing") }
        // The pools as they lie; packed queries head-major, as every other case.
        return (pages, shape, packedQ ? headMajor(q) : q.floats, k.floats, v.floats, output,
                try expected("lse"))
    }

    /// Strides that broadcast `m` to the four-dimensional `target` by NumPy's rules (dimensions
    /// aligned to the right; a dimension of 1 broadcasts with stride 0).
    static func broadcastStrides(of m: NpyArray, to target: [Int], file: String) throws -> MaskStrides {
        let fail = CaseError("\(file) has shape \(m.shape); it must broadcast to \(target)")
        guard m.shape.count <= 4 else { throw fail }
        let dims = [Int](repeating: 1, count: 4 - m.shape.count) + m.shape
        var strides = [0, 0, 0, 0]
        var step = 1
        for d in (0 ..< 4).reversed() {
            guard dims[d] == target[d] || dims[d] == 1 else { throw fail }
            strides[d] = dims[d] == 1 ? 0 : step
            step *= dims[d]
        }
        return MaskStrides(batch: strides[0], head: strides[1], query: strides[2], key: strides[3])
    }

    /// The on-disk shapes of out, lse, dout, dq, dk and dv.
    static func fileShapes(_ s: AttentionShape, packedQ: Bool, packedK: Bool) -> [String: [Int]] {
        let (b, hq, hkv, lq, lk) = (s.batch, s.queryHeads, s.keyValueHeads, s.queryLength, s.keyLength)
        func q(_ d: Int) -> [Int] { packedQ ? [lq, hq, d] : [b, hq, lq, d] }
        func k(_ d: Int) -> [Int] { packedK ? [lk, hkv, d] : [b, hkv, lk, d] }
        return ["out": q(s.valueHeadDim), "dout": q(s.valueHeadDim), "dq": q(s.headDim),
                "lse": packedQ ? [hq, lq] : [b, hq, lq], "dk": k(s.headDim), "dv": k(s.valueHeadDim)]
    }

    /// [T, H, D] → [H, T, D].
    static func headMajor(_ a: NpyArray) -> [Float] {
        let (t, h, d) = (a.shape[0], a.shape[1], a.shape[2])
        let x = a.floats
        var y = [Float](repeating: 0, count: x.count)
        for i in 0 ..< t { for j in 0 ..< h { for c in 0 ..< d { y[(j * t + i) * d + c] = x[(i * h + j) * d + c] } } }
        return y
    }

    /// A result tensor (`out`, `lse`, `dq`, `dk`, `dv`) as its file holds it.
    public func fileArray(_ name: String, _ values: [Float]) -> NpyArray {
        let packedQ = attention.querySequenceOffsets != nil, packedK = attention.keySequenceOffsets != nil
        let shape = Self.fileShapes(self.shape, packedQ: packedQ, packedK: packedK)[name]!
        let packed = name == "dk" || name == "dv" ? packedK : packedQ
        guard packed, name != "lse" else { return NpyArray(shape: shape, floats: values) }
        // [H, T, D] → [T, H, D]
        let (t, h, d) = (shape[0], shape[1], shape[2])
        var y = [Float](repeating: 0, count: values.count)
        for j in 0 ..< h { for i in 0 ..< t { for c in 0 ..< d { y[(i * h + j) * d + c] = values[(j * t + i) * d + c] } } }
        return NpyArray(shape: shape, floats: y)
    }

    /// The forward in the case's storage types (output and log-sum-exp as Float; a half output
    /// widened exactly).
    public func forward(_ options: AttentionOptions) throws -> (output: [Float], logSumExp: [Float]) {
        func run<Q: AttentionElement, KV: AttentionElement>(
            _ q: (Float) -> Q, _ kv: (Float) -> KV, _ back: (Q) -> Float
        ) throws -> ([Float], [Float]) {
            if let pages {
                let qs = query.map(q), ks = key.map(kv), vs = value.map(kv)
                var out = [Q](repeating: q(0), count: shape.outputCount)
                var lse = [Float](repeating: 0, count: shape.batch * shape.queryHeads * shape.queryLength)
                try qs.withUnsafeBufferPointer { qp in
                try ks.withUnsafeBufferPointer { kp in
                try vs.withUnsafeBufferPointer { vp in
                try out.withUnsafeMutableBufferPointer { op in
                try lse.withUnsafeMutableBufferPointer { lp in
                    try FlashAttention.forward(query: qp, keyPages: kp, valuePages: vp, pages: pages,
                                               output: op, logSumExp: lp, shape: shape, options: options)
                } } } } }
                return (out.map(back), lse)
            }
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: query.map(q), key: key.map(kv), value: value.map(kv), shape: shape,
                options: options)
            return (out.map(back), lse)
        }
        func withKV<Q: AttentionElement>(_ q: (Float) -> Q, _ back: (Q) -> Float) throws -> ([Float], [Float]) {
            switch keyValueType {
            case .float32: try run(q, { $0 }, back)
            case .float16: try run(q, { Float16($0) }, back)
            case .bfloat16: try run(q, { BFloat16($0) }, back)
            }
        }
        // Every value came from a file of its type, so these conversions are exact.
        switch queryType {
        case .float32: return try withKV({ $0 }, { $0 })
        case .float16: return try withKV({ Float16($0) }, { Float($0) })
        case .bfloat16: return try withKV({ BFloat16($0) }, { $0.floatValue })
        }
    }

    /// The backward in the case's storage types, fed the forward's `output` and `logSumExp` as
    /// `forward` returned them: dO rounded to the output's type (exact when dout.npy stores that
    /// type), each gradient in its tensor's type, widened exactly.
    public func backward(output: [Float], logSumExp: [Float], outputGradient: [Float],
                         options: AttentionOptions) throws
        -> (query: [Float], key: [Float], value: [Float])
    {
        func run<Q: AttentionElement, KV: AttentionElement>(
            _ q: (Float) -> Q, _ kv: (Float) -> KV, _ qBack: (Q) -> Float, _ kvBack: (KV) -> Float
        ) throws -> ([Float], [Float], [Float]) {
            let (qs, ks, vs) = (query.map(q), key.map(kv), value.map(kv))
            let (os, gs) = (output.map(q), outputGradient.map(q))
            var dq = [Q](repeating: q(0), count: qs.count)
            var dk = [KV](repeating: kv(0), count: ks.count)
            var dv = [KV](repeating: kv(0), count: vs.count)
            try qs.withUnsafeBufferPointer { qp in
            try ks.withUnsafeBufferPointer { kp in
            try vs.withUnsafeBufferPointer { vp in
            try os.withUnsafeBufferPointer { op in
            try logSumExp.withUnsafeBufferPointer { lp in
            try gs.withUnsafeBufferPointer { gp in
            try dq.withUnsafeMutableBufferPointer { dqp in
            try dk.withUnsafeMutableBufferPointer { dkp in
            try dv.withUnsafeMutableBufferPointer { dvp in
                try FlashAttention.backward(query: qp, key: kp, value: vp, output: op, logSumExp: lp,
                                            outputGradient: gp, queryGradient: dqp, keyGradient: dkp,
                                            valueGradient: dvp, shape: shape, options: options)
            } } } } } } } } }
            return (dq.map(qBack), dk.map(kvBack), dv.map(kvBack))
        }
        func withKV<Q: AttentionElement>(_ q: (Float) -> Q, _ back: (Q) -> Float) throws
            -> ([Float], [Float], [Float])
        {
            switch keyValueType {
            case .float32: try run(q, { $0 }, back, { $0 })
            case .float16: try run(q, { Float16($0) }, back, { Float($0) })
            case .bfloat16: try run(q, { BFloat16($0) }, back, { $0.floatValue })
            }
        }
        switch queryType {
        case .float32: return try withKV({ $0 }, { $0 })
        case .float16: return try withKV({ Float16($0) }, { Float($0) })
        case .bfloat16: return try withKV({ BFloat16($0) }, { $0.floatValue })
        }
    }

    /// The options for one implementation.
    public func options(_ implementation: AttentionImplementation,
                        kernel: KernelISA = .automatic) -> AttentionOptions {
        var o = attention
        o.implementation = implementation
        o.kernel = kernel
        return o
    }
}

/// ⌈a / b⌉ for a ≥ 0 and b ≥ 1, without overflowing at b near Int.max.
private func ceilDivide(_ a: Int, _ b: Int) -> Int { a / b + (a % b == 0 ? 0 : 1) }
