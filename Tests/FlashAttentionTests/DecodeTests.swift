import CFlashAttention
import FlashAttention
import Testing
import TestSupport

// Decoding shapes (at most 16 query rows per sequence) run on row tiles that stack the query
// rows of a whole GQA group; split-KV cuts the keys into chunks whose partial states are
// merged. Everything is held to the float64 reference with the grid's tolerances
// (Tests/TestSupport/ReferenceAttention.swift): splitting adds one merge per chunk, whose
// rounding (a few ulps of the output, one of the log-sum-exp) is far inside them.

/// A forward case with a key split size.
struct DecodeCase: Sendable, CustomStringConvertible {
    var c: AttentionCase
    var split: Int
    var description: String {
        "\(c) split \(split == 0 ? "auto" : split == Int.max ? "none" : String(split))"
    }
    var options: AttentionOptions {
        var o = c.options
        o.keySplitSize = split
        return o
    }
}

/// Lq ∈ {1, 2, 5, 8} × Lk ∈ {1, 17, 1000, 4097}, cycling GQA ratios 1, 4, 8 and MQA, split
/// sizes (auto, none, 1, 7, 256, ≥ Lk), causal modes, head dims and layouts.
let decodeGrid: [DecodeCase] = {
    let heads: [(Int, Int)] = [(4, 4), (8, 2), (16, 2), (8, 1)]
    let dims: [(Int, Int)] = [(64, 64), (128, 128), (17, 17), (1, 1), (256, 256), (40, 80), (96, 3)]
    let causals: [CausalMask] = [.none, .bottomRight, .topLeft]
    var cases: [DecodeCase] = []
    var n = 0
    for lq in [1, 2, 5, 8] {
        for lk in [1, 17, 1000, 4097] {
            for variant in 0 ..< 2 {
                n += 1
                var (hq, hkv) = heads[(n + variant) % heads.count]
                var (dqk, dv) = dims[(n * 3 + variant) % dims.count]
                let splits = [0, Int.max, 1, 7, 256, lk + 5]
                var split = splits[(n + 2 * variant) % splits.count]
                if lk > 1000 {  // keep the float64 reference and the partial states small
                    (dqk, dv) = (min(dqk, 128), min(dv, 128))
                    hq = min(hq, 8)
                    hkv = min(hkv, hq)
                    if split == 1 { split = 7 }
                }
                cases.append(DecodeCase(
                    c: AttentionCase(
                        shape: AttentionShape(batch: 1 + n % 2, queryHeads: hq, keyValueHeads: hkv,
                                              queryLength: lq, keyLength: lk, headDim: dqk,
                                              valueHeadDim: dv),
                        causal: causals[(n + variant) % causals.count],
                        layout: n % 2 == 0 ? .bhld : .blhd,
                        magnitude: n % 5 == 2 ? 30 : 1,
                        seed: UInt64(500 + n)),
                    split: split))
            }
        }
    }
    return cases
}()

/// Every modifier alone and together on decoding shapes, each unsplit, split in 7 and in 256.
let decodeModifierGrid: [DecodeCase] = {
    let s = AttentionShape(batch: 3, queryHeads: 8, keyValueHeads: 2, queryLength: 5,
                           keyLength: 300, headDim: 48)
    var rng = SplitMix64(seed: 77)
    let dense = MaskStrides.dense(s)
    let boolMask = AttentionMask(boolean: (0 ..< s.batch * 8 * 5 * 300).map { _ in rng.next() % 3 != 0 },
                                 strides: dense)
    let addMask = AttentionMask(additive: (0 ..< s.batch * 8 * 5 * 300).map { _ in
        Float(rng.next() % 1000) / 250 - 2 }, strides: dense)
    let window = SlidingWindow(left: 50, right: 0)
    let cases: [AttentionCase] = [
        AttentionCase(shape: s, causal: .bottomRight, seed: 1),
        AttentionCase(shape: s, causal: .topLeft, seed: 2),
        AttentionCase(shape: s, causal: .bottomRight, window: window, seed: 3),
        AttentionCase(shape: s, window: SlidingWindow(left: 20, right: 30), seed: 4),
        AttentionCase(shape: s, alibiSlopes: alibiSlopes(8), seed: 5),
        AttentionCase(shape: s, softcap: 5, magnitude: 4, seed: 6),
        AttentionCase(shape: s, mask: boolMask, seed: 7),
        AttentionCase(shape: s, mask: addMask, seed: 8),
        AttentionCase(shape: s, keyLengths: [300, 17, 0], seed: 9),
        AttentionCase(shape: s, causal: .bottomRight, queryLengths: [5, 2, 0], keyLengths: [123, 300, 4], seed: 10),
        AttentionCase(shape: s, causal: .bottomRight, window: window, softcap: 5,
                      alibiSlopes: alibiSlopes(8), keyLengths: [300, 255, 1], mask: boolMask,
                      layout: .blhd, seed: 11),
    ]
    return cases.flatMap { c in [Int.max, 7, 256].map { DecodeCase(c: c, split: $0) } }
}()

@Suite("Decoding: row tiles and split-KV")
struct DecodeTests {
    func check(_ d: DecodeCase) throws {
        let (q, k, v) = d.c.inputs()
        let reference = d.c.reference()
        for kernel in FlashAttention.supportedKernels {
            var options = d.options
            options.kernel = kernel
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q.data, key: k.data, value: v.data, shape: d.c.shape, options: options)
            let result = compare(output: out, strides: d.c.strides.output, logSumExp: lse,
                                 reference: reference, shape: d.c.shape)
            #expect(result.passed, "\(kernel) \(d): \(result)")
            if verbose { print("decode \(kernel) \(d): \(result)") }
        }
    }

    @Test("against the float64 reference: Lq 1–8, Lk 1–4097, GQA, split sizes, every ISA",
          arguments: decodeGrid)
    func grid(_ d: DecodeCase) throws { try check(d) }

    @Test("every modifier alone and combined, split and not, every ISA",
          arguments: decodeModifierGrid)
    func modifiers(_ d: DecodeCase) throws { try check(d) }

    @Test("splitting is bitwise independent of the thread count (auto and explicit), every ISA",
          arguments: FlashAttention.supportedKernels)
    func threadCounts(_ kernel: KernelISA) throws {
        for (split, hkv) in [(0, 1), (7, 2), (100, 1)] {
            let c = AttentionCase(
                shape: AttentionShape(queryHeads: 8, keyValueHeads: hkv, queryLength: 3,
                                      keyLength: 2500, headDim: 72),
                causal: .bottomRight, alibiSlopes: alibiSlopes(8), seed: 31)
            let (q, k, v) = c.inputs()
            var results: [[UInt32]] = []
            for threads in [1, 2, 3] {
                var o = c.options
                o.keySplitSize = split
                o.threadCount = threads
                o.kernel = kernel
                let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                    query: q.data, key: k.data, value: v.data, shape: c.shape, options: o)
                results.append((out + lse).map(\.bitPattern))
            }
            #expect(results[0] == results[1], "split \(split)")
            #expect(results[0] == results[2], "split \(split)")
        }
    }

    @Test("an explicit split size gives the same bits whatever else is in the batch")
    func batchComposition() throws {
        let lk = [1000, 300, 4097]
        let big = AttentionShape(batch: 3, queryHeads: 4, keyValueHeads: 2, queryLength: 1,
                                 keyLength: 4097, headDim: 64)
        let c = AttentionCase(shape: big, keyLengths: lk, seed: 41)
        let (q, k, v) = c.inputs()
        var options = c.options
        options.keySplitSize = 256
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: big, options: options)
        // Entry 0 alone: its rows of Q, K and V ([B, H, L, D] slices), the same split size.
        let alone = AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 1,
                                   keyLength: lk[0], headDim: 64)
        var k0 = [Float](), v0 = [Float]()
        for h in 0 ..< 2 {
            k0 += k.data[h * 4097 * 64 ..< (h * 4097 + lk[0]) * 64]
            v0 += v.data[h * 4097 * 64 ..< (h * 4097 + lk[0]) * 64]
        }
        var single = AttentionOptions()
        single.keySplitSize = 256
        let (o1, l1) = try FlashAttention.forwardWithLogSumExp(
            query: Array(q.data[0 ..< 4 * 64]), key: k0, value: v0, shape: alone, options: single)
        #expect(Array(out[0 ..< 4 * 64]).map(\.bitPattern) == o1.map(\.bitPattern))
        #expect(Array(lse[0 ..< 4]).map(\.bitPattern) == l1.map(\.bitPattern))
        // And it really is split: the unsplit answer differs in some bits (same tolerance).
        single.keySplitSize = .max
        let (o2, _) = try FlashAttention.forwardWithLogSumExp(
            query: Array(q.data[0 ..< 4 * 64]), key: k0, value: v0, shape: alone, options: single)
        #expect(o2.map(\.bitPattern) != o1.map(\.bitPattern))
    }

    @Test("a negative split size is refused, in Swift and in C")
    func refused() throws {
        let shape = AttentionShape(queryHeads: 2, queryLength: 1, keyLength: 10, headDim: 8)
        let x = [Float](repeating: 0, count: shape.queryCount)
        let kv = [Float](repeating: 0, count: shape.keyCount)
        #expect(throws: AttentionError.invalidKeySplitSize(-3)) {
            try FlashAttention.forward(query: x, key: kv, value: kv, shape: shape,
                                       options: AttentionOptions(keySplitSize: -3))
        }
        var p = fa_problem()
        fa_problem_init(&p)
        p.shape = fa_shape(batch: 1, q_heads: 2, kv_heads: 2, q_len: 1, kv_len: 10,
                           head_dim_qk: 8, head_dim_v: 8)
        p.kv_split_size = -1
        var diag = fa_diagnostic()
        #expect(fa_check(&p, &diag) == FA_ERR_INVALID_SPLIT)
        #expect(diag.argument == FA_ARG_KV_SPLIT_SIZE)
    }

    @Test("the workspace holds the partial states: bounded by threads × tile + B·Hq·Lq·splits·(Dv + 1)")
    func workspace() throws {
        let shape = AttentionShape(batch: 2, queryHeads: 8, keyValueHeads: 1, queryLength: 3,
                                   keyLength: 100_000, headDim: 64, valueHeadDim: 40)
        func bytes(_ split: Int) throws -> Int {
            try FlashAttention.workspaceBytes(shape: shape, options: AttentionOptions(threadCount: 2, keySplitSize: split))
        }
        let none = try bytes(.max), auto = try bytes(0), explicit = try bytes(1000)
        #expect(auto > none)
        let splits = 100, partial = 2 * 8 * 3 * splits * (40 + 1) * 4
        #expect(explicit >= none + partial)
        #expect(explicit <= none + partial + 256)
        // The automatic split makes at most FA_SPLIT_TARGET_ITEMS items of these 2 groups.
        #expect(auto <= none + 2 * 8 * 3 * 16 * 41 * 4 + 256)
    }
}

// MARK: - Merging attention states

/// Keys [a, b) of every head of a [B, H, L, D] (.bhld) tensor.
func keySlice(_ t: [Float], batch: Int, heads: Int, length: Int, dim: Int, _ r: Range<Int>) -> [Float] {
    var out = [Float]()
    for bh in 0 ..< batch * heads {
        out += t[(bh * length + r.lowerBound) * dim ..< (bh * length + r.upperBound) * dim]
    }
    return out
}

@Suite("Merging attention states")
struct MergeTests {
    /// One problem's keys cut into ranges (some empty), each attended on its own, merged.
    @Test("split keys, attend each range, merge: equals attention over all keys",
          arguments: [(1, [0, 0, 37, 38, 500, 1000]), (33, [0, 200, 200, 999, 1000]), (7, [0, 1000])])
    func rangesMerge(_ lq: Int, _ cuts: [Int]) throws {
        let shape = AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: lq,
                                   keyLength: 1000, headDim: 40)
        let c = AttentionCase(shape: shape, magnitude: 3, seed: 61)
        let (q, k, v) = c.inputs()
        let stateShape = AttentionStateShape(shape)
        var states: [AttentionState] = []
        for (a, b) in zip(cuts, cuts.dropFirst()) {
            guard b > a else {
                states.append(.empty(stateShape))
                continue
            }
            var s = shape
            s.keyLength = b - a
            let ks = keySlice(k.data, batch: 2, heads: 2, length: 1000, dim: 40, a ..< b)
            let vs = keySlice(v.data, batch: 2, heads: 2, length: 1000, dim: 40, a ..< b)
            let (o, l) = try FlashAttention.forwardWithLogSumExp(query: q.data, key: ks, value: vs, shape: s)
            states.append(AttentionState(output: o, logSumExp: l))
        }
        let merged = try FlashAttention.mergeStates(states, shape: stateShape)
        let result = compare(output: merged.output, strides: c.strides.output,
                             logSumExp: merged.logSumExp, reference: c.reference(), shape: shape)
        #expect(result.passed, "\(cuts): \(result)")
        // Folding in place, one state at a time, gives the same answer within the tolerance.
        var folded = AttentionState.empty(stateShape)
        for s in states { try FlashAttention.mergeState(s, into: &folded, shape: stateShape) }
        #expect(compare(output: folded.output, strides: c.strides.output, logSumExp: folded.logSumExp,
                        reference: c.reference(), shape: shape).passed)
    }

    @Test("(0, −inf) is the identity; only empty states give (0, −inf) and never NaN")
    func identityAndEmpty() throws {
        let s = AttentionStateShape(batch: 1, heads: 2, length: 3, headDim: 5)
        var rng = SplitMix64(seed: 5)
        let a = AttentionState(output: randomFloats(s.outputCount, magnitude: 2, using: &rng),
                               logSumExp: randomFloats(s.logSumExpCount, magnitude: 50, using: &rng))
        let withEmpty = try FlashAttention.mergeStates([.empty(s), a, .empty(s)], shape: s)
        #expect(withEmpty.output.map(\.bitPattern) == a.output.map(\.bitPattern))
        #expect(withEmpty.logSumExp.map(\.bitPattern) == a.logSumExp.map(\.bitPattern))
        // Empty states' outputs are never read: NaN there changes nothing.
        var garbage = AttentionState.empty(s)
        garbage.output = [Float](repeating: .nan, count: s.outputCount)
        let onlyEmpty = try FlashAttention.mergeStates([garbage, .empty(s)], shape: s)
        #expect(onlyEmpty.output.allSatisfy { $0 == 0 })
        #expect(onlyEmpty.logSumExp.allSatisfy { $0 == -.infinity })
        let mixed = try FlashAttention.mergeStates([garbage, a], shape: s)
        #expect(mixed.output == a.output)
    }

    @Test("weights far apart: no overflow, the dominant state wins")
    func farApart() throws {
        let s = AttentionStateShape(heads: 1, length: 1, headDim: 2)
        let big = AttentionState(output: [1, 2], logSumExp: [1000])
        let small = AttentionState(output: [-5, 7], logSumExp: [-1000])
        let m = try FlashAttention.mergeStates([small, big], shape: s)
        #expect(m.output == [1, 2] && m.logSumExp == [1000])
        let even = try FlashAttention.mergeStates([AttentionState(output: [2, 0], logSumExp: [3]),
                                                   AttentionState(output: [0, 4], logSumExp: [3])], shape: s)
        #expect(even.output == [1, 2])
        #expect(abs(even.logSumExp[0] - (3 + 0.6931472)) < 1e-6)  // 3 + log 2
    }

    @Test("strided states (.blhd, padded rows) merge like dense ones; in place through pointers")
    func strided() throws {
        let s = AttentionStateShape(batch: 2, heads: 3, length: 4, headDim: 6)
        var rng = SplitMix64(seed: 9)
        let states = (0 ..< 3).map { _ in
            AttentionState(output: randomFloats(s.outputCount, magnitude: 1, using: &rng),
                           logSumExp: randomFloats(s.logSumExpCount, magnitude: 5, using: &rng))
        }
        let dense = try FlashAttention.mergeStates(states, shape: s)
        // The same states in .blhd with each row padded to 8 floats, LSE as [B, L, H].
        let os = AttentionStrides(batch: 4 * 3 * 8, head: 8, sequence: 3 * 8)
        let ls = AttentionStrides(batch: 12, head: 1, sequence: 3)
        func restride(_ st: AttentionState) -> ([Float], [Float]) {
            var o = [Float](repeating: .nan, count: 2 * 4 * 3 * 8), l = [Float](repeating: .nan, count: 24)
            for b in 0 ..< 2 { for h in 0 ..< 3 { for i in 0 ..< 4 {
                let row = (b * 3 + h) * 4 + i
                l[b * ls.batch + h * ls.head + i * ls.sequence] = st.logSumExp[row]
                for d in 0 ..< 6 { o[b * os.batch + h * os.head + i * os.sequence + d] = st.output[row * 6 + d] }
            } } }
            return (o, l)
        }
        var bufs = states.map(restride)
        let (o0, l0) = (bufs[0].0, bufs[0].1)
        var acc = (o0, l0)
        // In place: the output is state 0's buffers.
        try acc.0.withUnsafeMutableBufferPointer { o in
            try acc.1.withUnsafeMutableBufferPointer { l in
                try bufs[1].0.withUnsafeBufferPointer { o1 in
                    try bufs[1].1.withUnsafeBufferPointer { l1 in
                        try bufs[2].0.withUnsafeBufferPointer { o2 in
                            try bufs[2].1.withUnsafeBufferPointer { l2 in
                                try FlashAttention.mergeStates(
                                    outputs: [UnsafeBufferPointer(o), o1, o2],
                                    logSumExps: [UnsafeBufferPointer(l), l1, l2],
                                    into: o, logSumExp: l, shape: s, outputStrides: os,
                                    logSumExpStrides: ls)
                            }
                        }
                    }
                }
            }
        }
        bufs[0] = acc
        let back = restrideBack(bufs[0], os: os, ls: ls)
        #expect(back.0.map(\.bitPattern) == dense.output.map(\.bitPattern))
        #expect(back.1.map(\.bitPattern) == dense.logSumExp.map(\.bitPattern))
        // The padding between rows is never written.
        for b in 0 ..< 2 { for h in 0 ..< 3 { for i in 0 ..< 4 { for d in 6 ..< 8 {
            #expect(bufs[0].0[b * os.batch + h * os.head + i * os.sequence + d].isNaN)
        } } } }
    }

    func restrideBack(_ t: ([Float], [Float]), os: AttentionStrides, ls: AttentionStrides) -> ([Float], [Float]) {
        var o = [Float](), l = [Float]()
        for b in 0 ..< 2 { for h in 0 ..< 3 { for i in 0 ..< 4 {
            l.append(t.1[b * ls.batch + h * ls.head + i * ls.sequence])
            for d in 0 ..< 6 { o.append(t.0[b * os.batch + h * os.head + i * os.sequence + d]) }
        } } }
        return (o, l)
    }

    @Test("bad arguments throw naming the argument")
    func refused() throws {
        let s = AttentionStateShape(heads: 2, length: 3, headDim: 4)
        #expect(throws: AttentionError.invalidExtent(argument: "states", value: 0)) {
            _ = try FlashAttention.mergeStates([], shape: s)
        }
        #expect(throws: AttentionError.wrongCount(argument: "states[1].output", expected: 24, count: 23)) {
            _ = try FlashAttention.mergeStates([.empty(s), AttentionState(output: .init(repeating: 0, count: 23),
                                                                         logSumExp: .init(repeating: 0, count: 6))], shape: s)
        }
        #expect(throws: AttentionError.invalidExtent(argument: "shape.headDim", value: 0)) {
            let zero = AttentionStateShape(heads: 2, length: 3, headDim: 0)
            _ = try FlashAttention.mergeStates([.empty(zero)], shape: zero)
        }
        // An output that overlaps an input without being it.
        var buffer = [Float](repeating: 0, count: 64), lses = [Float](repeating: 0, count: 16)
        #expect(throws: AttentionError.overlappingBuffers(argument: "output", other: "states[0]")) {
            try buffer.withUnsafeMutableBufferPointer { b in
                try lses.withUnsafeMutableBufferPointer { l in
                    let input = UnsafeBufferPointer(rebasing: b[0 ..< 24])
                    let output = UnsafeMutableBufferPointer(rebasing: b[4 ..< 28])
                    try FlashAttention.mergeStates(
                        outputs: [input], logSumExps: [UnsafeBufferPointer(rebasing: l[0 ..< 6])],
                        into: output, logSumExp: UnsafeMutableBufferPointer(rebasing: l[8 ..< 14]), shape: s)
                }
            }
        }
    }
}
