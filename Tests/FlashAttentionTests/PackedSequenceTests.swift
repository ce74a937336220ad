import FlashAttention
import Testing
import TestSupport

/// Packed variable-length sequences (cu_seqlens): several sequences back to back in one
/// `[total, H, D]` buffer. Each packed call is checked against every sequence run on its own
/// through the float64 reference — so the test does not share the library's notion of packing.
struct PackedSetup: Sendable, CustomStringConvertible {
    var queryLengths: [Int]
    var keyLengths: [Int]
    var packQueries = true
    var packKeys = true
    var queryHeads = 4, keyValueHeads = 2, headDim = 24, valueHeadDim = 16
    var causal = CausalMask.none
    var window: SlidingWindow? = nil
    var softcap: Float? = nil
    var alibi = false
    /// A boolean mask shared by every sequence ([1, Hq, maxLq, maxLk], local indices).
    var sharedMask = false
    var keySplitSize = 0
    var seed: UInt64 = 1

    var description: String {
        "q \(queryLengths)\(packQueries ? "" : " padded") k \(keyLengths)\(packKeys ? "" : " padded") \(causal)"
            + (window.map { " window \($0.left ?? -1),\($0.right ?? -1)" } ?? "")
            + (softcap.map { " softcap \($0)" } ?? "") + (alibi ? " alibi" : "")
            + (sharedMask ? " mask" : "") + (keySplitSize == 0 ? "" : " split \(keySplitSize)")
    }

    var batch: Int { queryLengths.count }
    /// Packed extents carry `extra` unused rows after the last sequence.
    static let extra = 3
    var queryExtent: Int { packQueries ? queryLengths.reduce(0, +) + Self.extra : queryLengths.max()! }
    var keyExtent: Int { packKeys ? keyLengths.reduce(0, +) + Self.extra : keyLengths.max()! }
    static func offsets(_ lengths: [Int]) -> [Int] { lengths.reduce(into: [0]) { $0.append($0.last! + $1) } }

    var mask: AttentionMask? {
        guard sharedMask else { return nil }
        let lq = queryLengths.max()!, lk = keyLengths.max()!
        var rng = SplitMix64(seed: seed &+ 99)
        let values = (0 ..< queryHeads * lq * lk).map { _ in rng.next() % 4 != 0 }
        return AttentionMask(boolean: values, strides: MaskStrides(batch: 0, head: lq * lk, query: lk, key: 1))
    }

    /// Sequence b on its own: a batch-1 problem in .blhd (its rows are then contiguous).
    func sequence(_ b: Int) -> AttentionCase {
        AttentionCase(shape: AttentionShape(batch: 1, queryHeads: queryHeads, keyValueHeads: keyValueHeads,
                                            queryLength: max(queryLengths[b], 1), keyLength: max(keyLengths[b], 1),
                                            headDim: headDim, valueHeadDim: valueHeadDim),
                      causal: causal, window: window, softcap: softcap,
                      alibiSlopes: alibi ? alibiSlopes(queryHeads) : nil, mask: mask,
                      layout: .blhd, seed: seed &+ UInt64(b) &* 7919)
    }

    var shape: AttentionShape {
        AttentionShape(batch: batch, queryHeads: queryHeads, keyValueHeads: keyValueHeads,
                       queryLength: queryExtent, keyLength: keyExtent, headDim: headDim,
                       valueHeadDim: valueHeadDim)
    }

    var options: AttentionOptions {
        var o = AttentionOptions(causal: causal, window: window, softcap: softcap,
                                 alibiSlopes: alibi ? alibiSlopes(queryHeads) : nil, mask: mask,
                                 layout: .blhd)
        o.keySplitSize = keySplitSize
        if packQueries { o.querySequenceOffsets = Self.offsets(queryLengths) } else { o.queryLengths = queryLengths }
        if packKeys { o.keySequenceOffsets = Self.offsets(keyLengths) } else { o.keyLengths = keyLengths }
        return o
    }

    /// Row r of sequence b of one side starts at this row of the side's buffer (in .blhd:
    /// batch entries of padded sides are `extent` rows apart).
    func queryRow(_ b: Int) -> Int { packQueries ? Self.offsets(queryLengths)[b] : b * queryExtent }
    func keyRow(_ b: Int) -> Int { packKeys ? Self.offsets(keyLengths)[b] : b * keyExtent }
    var queryRows: Int { packQueries ? queryExtent : batch * queryExtent }
    var keyRows: Int { packKeys ? keyExtent : batch * keyExtent }

    /// The packed (or padded) buffers: every sequence's own inputs copied to its rows, and
    /// huge values in every row no sequence owns (they must never be read).
    func inputs() -> (q: [Float], k: [Float], v: [Float], dout: [Float]) {
        let qw = queryHeads * headDim, kw = keyValueHeads * headDim
        let vw = keyValueHeads * valueHeadDim, ow = queryHeads * valueHeadDim
        var q = [Float](repeating: 1e30, count: queryRows * qw)
        var k = [Float](repeating: 1e30, count: keyRows * kw)
        var v = [Float](repeating: -1e30, count: keyRows * vw)
        var dout = [Float](repeating: 1e30, count: queryRows * ow)
        for b in 0 ..< batch {
            let c = sequence(b)
            let (sq, sk, sv) = c.inputs()
            let sd = c.outputGradient()
            let lq = queryLengths[b], lk = keyLengths[b]
            q.replaceSubrange(queryRow(b) * qw ..< (queryRow(b) + lq) * qw, with: sq.data[0 ..< lq * qw])
            dout.replaceSubrange(queryRow(b) * ow ..< (queryRow(b) + lq) * ow, with: sd.data[0 ..< lq * ow])
            k.replaceSubrange(keyRow(b) * kw ..< (keyRow(b) + lk) * kw, with: sk.data[0 ..< lk * kw])
            v.replaceSubrange(keyRow(b) * vw ..< (keyRow(b) + lk) * vw, with: sv.data[0 ..< lk * vw])
        }
        return (q, k, v, dout)
    }
}

let packedGrid: [PackedSetup] = [
    PackedSetup(queryLengths: [1, 7, 64, 300], keyLengths: [1, 7, 64, 300]),
    PackedSetup(queryLengths: [1, 7, 64, 300], keyLengths: [1, 7, 64, 300], causal: .bottomRight, seed: 2),
    PackedSetup(queryLengths: [300, 64, 7, 1], keyLengths: [129, 300, 1, 65], causal: .bottomRight,
                alibi: true, seed: 3),
    PackedSetup(queryLengths: [17, 0, 65, 3], keyLengths: [63, 5, 0, 129], causal: .topLeft, seed: 4),
    PackedSetup(queryLengths: [64, 129, 7], keyLengths: [64, 129, 7], causal: .bottomRight,
                window: SlidingWindow(left: 16, right: 0), softcap: 5, seed: 5),
    PackedSetup(queryLengths: [1, 1, 1], keyLengths: [100, 37, 1], packKeys: false,
                causal: .bottomRight, seed: 6),  // decoding: packed queries, padded cache
    PackedSetup(queryLengths: [1, 3, 2, 0], keyLengths: [700, 37, 1, 9], packKeys: false, queryHeads: 8,
                keyValueHeads: 2, causal: .bottomRight, alibi: true, keySplitSize: 7, seed: 9),  // split
    PackedSetup(queryLengths: [2, 1], keyLengths: [1500, 600], packKeys: false, queryHeads: 8,
                keyValueHeads: 1, causal: .topLeft, softcap: 8, sharedMask: true, seed: 10),  // auto split
    PackedSetup(queryLengths: [40, 129, 3], keyLengths: [65, 17, 129], packQueries: false,
                causal: .bottomRight, seed: 7),
    PackedSetup(queryLengths: [63, 7, 65], keyLengths: [63, 70, 65], queryHeads: 4, keyValueHeads: 1,
                headDim: 65, valueHeadDim: 3, causal: .bottomRight, window: SlidingWindow(left: 20, right: 5),
                softcap: 20, alibi: true, sharedMask: true, seed: 8),
]

@Suite("Packed variable-length sequences")
struct PackedSequenceTests {
    @Test("forward and backward equal each sequence alone (every kernel ISA and naive)",
          arguments: packedGrid)
    func grid(_ setup: PackedSetup) throws {
        let (q, k, v, dout) = setup.inputs()
        let shape = setup.shape
        let hq = setup.queryHeads, hk = setup.keyValueHeads
        let dqk = setup.headDim, dv = setup.valueHeadDim
        let references = (0 ..< setup.batch).map { b -> (AttentionCase, ReferenceResult, ReferenceGradients)? in
            guard setup.queryLengths[b] > 0, setup.keyLengths[b] > 0 else { return nil }
            let c = setup.sequence(b)
            let f = c.reference()
            return (c, f, c.referenceGradients(forward: f))
        }
        for (name, options) in implementationsUnderTest(setup.options) {
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q, key: k, value: v, shape: shape, options: options)
            let g = try FlashAttention.backward(query: q, key: k, value: v, output: out,
                                                logSumExp: lse, outputGradient: dout,
                                                shape: shape, options: options)
            #expect(out.count == setup.queryRows * hq * dv && lse.count == hq * setup.queryRows)
            // lse is [Hq, rows] on a packed side, [B, Hq, rows] on a padded one.
            func lseIndex(_ b: Int, _ h: Int, _ i: Int) -> Int {
                setup.packQueries ? h * setup.queryExtent + setup.queryRow(b) + i
                                  : (b * hq + h) * setup.queryExtent + i
            }
            var ownedQueryRows = Set<Int>(), ownedKeyRows = Set<Int>()
            for b in 0 ..< setup.batch {
                let lq = setup.queryLengths[b], lk = setup.keyLengths[b]
                let q0 = setup.queryRow(b), k0 = setup.keyRow(b)
                ownedQueryRows.formUnion(q0 ..< q0 + lq)
                ownedKeyRows.formUnion(k0 ..< k0 + lk)
                let o = Array(out[q0 * hq * dv ..< (q0 + lq) * hq * dv])
                let dq = Array(g.query[q0 * hq * dqk ..< (q0 + lq) * hq * dqk])
                let dk = Array(g.key[k0 * hk * dqk ..< (k0 + lk) * hk * dqk])
                let dvv = Array(g.value[k0 * hk * dv ..< (k0 + lk) * hk * dv])
                guard let (c, f, rg) = references[b] else {
                    // An empty side: rows without keys are 0 / −inf / zero dQ; keys without
                    // queries get zero dK, dV.
                    #expect(o.allSatisfy { $0 == 0 } && dq.allSatisfy { $0 == 0 }, "\(name) \(setup) sequence \(b)")
                    #expect(dk.allSatisfy { $0 == 0 } && dvv.allSatisfy { $0 == 0 }, "\(name) \(setup) sequence \(b)")
                    for h in 0 ..< hq { for i in 0 ..< lq { #expect(lse[lseIndex(b, h, i)] == -.infinity) } }
                    continue
                }
                var l = [Float]()
                for h in 0 ..< hq { for i in 0 ..< lq { l.append(lse[lseIndex(b, h, i)]) } }
                let fr = compare(output: o, strides: c.strides.output, logSumExp: l, reference: f, shape: c.shape)
                #expect(fr.passed, "forward \(name) \(setup) sequence \(b): \(fr)")
                let br = compareGradients(AttentionGradients(query: dq, key: dk, value: dvv), layout: .blhd,
                                          reference: rg, shape: c.shape)
                #expect(br.passed, "backward \(name) \(setup) sequence \(b): \(br)")
                if verbose { print("packed \(name) \(setup) #\(b): \(fr) | \(br)") }
            }
            // Rows and keys no sequence owns (padding, and the rows past the last offset).
            for r in 0 ..< setup.queryRows where !ownedQueryRows.contains(r) {
                #expect(out[r * hq * dv ..< (r + 1) * hq * dv].allSatisfy { $0 == 0 }, "\(name) output row \(r)")
                #expect(g.query[r * hq * dqk ..< (r + 1) * hq * dqk].allSatisfy { $0 == 0 }, "\(name) dq row \(r)")
            }
            if setup.packQueries {
                for h in 0 ..< hq {
                    for r in setup.queryExtent - PackedSetup.extra ..< setup.queryExtent {
                        #expect(lse[h * setup.queryExtent + r] == -.infinity, "\(name) lse row \(r)")
                    }
                }
            }
            for r in 0 ..< setup.keyRows where !ownedKeyRows.contains(r) {
                #expect(g.key[r * hk * dqk ..< (r + 1) * hk * dqk].allSatisfy { $0 == 0 }, "\(name) dk row \(r)")
                #expect(g.value[r * hk * dv ..< (r + 1) * hk * dv].allSatisfy { $0 == 0 }, "\(name) dv row \(r)")
            }
        }
    }

    @Test("every output element is written: rows past the last offset, and empty sequences")
    func everyElementWritten() throws {
        let setup = packedGrid[3]  // has a sequence without queries and one without keys
        let (q, k, v, dout) = setup.inputs()
        let shape = setup.shape
        for (name, options) in implementationsUnderTest(setup.options) {
            // Caller-owned buffers full of NaN: whatever the call leaves is seen.
            var out = [Float](repeating: .nan, count: setup.queryRows * setup.queryHeads * setup.valueHeadDim)
            var lse = [Float](repeating: .nan, count: setup.queryRows * setup.queryHeads)
            var dq = [Float](repeating: .nan, count: q.count)
            var dk = [Float](repeating: .nan, count: k.count)
            var dv = [Float](repeating: .nan, count: v.count)
            try q.withUnsafeBufferPointer { q in try k.withUnsafeBufferPointer { k in
            try v.withUnsafeBufferPointer { v in try dout.withUnsafeBufferPointer { g in
            try out.withUnsafeMutableBufferPointer { o in try lse.withUnsafeMutableBufferPointer { l in
                try FlashAttention.forward(query: q, key: k, value: v, output: o, logSumExp: l,
                                           shape: shape, options: options)
                try dq.withUnsafeMutableBufferPointer { dq in try dk.withUnsafeMutableBufferPointer { dk in
                try dv.withUnsafeMutableBufferPointer { dv in
                    try FlashAttention.backward(query: q, key: k, value: v, output: UnsafeBufferPointer(o),
                                                logSumExp: UnsafeBufferPointer(l), outputGradient: g,
                                                queryGradient: dq, keyGradient: dk, valueGradient: dv,
                                                shape: shape, options: options)
                } } }
            } } } } } }
            #expect(!out.contains { $0.isNaN } && !lse.contains { $0.isNaN }, "\(name) forward left NaN")
            #expect(!dq.contains { $0.isNaN } && !dk.contains { $0.isNaN } && !dv.contains { $0.isNaN },
                    "\(name) backward left NaN")
            let tail = setup.queryExtent - PackedSetup.extra
            let ow = setup.queryHeads * setup.valueHeadDim
            #expect(out[tail * ow ..< setup.queryExtent * ow].allSatisfy { $0 == 0 }, "\(name)")
            for h in 0 ..< setup.queryHeads {
                #expect(lse[h * setup.queryExtent + tail ..< (h + 1) * setup.queryExtent].allSatisfy { $0 == -.infinity }, "\(name)")
            }
            let kw = setup.keyValueHeads * setup.headDim, ktail = setup.keyExtent - PackedSetup.extra
            #expect(dk[ktail * kw ..< setup.keyExtent * kw].allSatisfy { $0 == 0 }, "\(name)")
        }
    }

    @Test("results do not depend on the thread count (bitwise)")
    func threadCounts() throws {
        let setup = packedGrid[2]
        let (q, k, v, _) = setup.inputs()
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            var o = setup.options
            o.threadCount = threads
            results.append(try FlashAttention.forward(query: q, key: k, value: v, shape: setup.shape, options: o))
        }
        #expect(results.allSatisfy { $0 == results[0] })
    }

    @Test("invalid offsets are refused with the argument named")
    func invalid() {
        let shape = AttentionShape(batch: 2, queryHeads: 1, queryLength: 6, keyLength: 6, headDim: 4)
        let x = [Float](repeating: 0.5, count: 6 * 4)
        let bad: [(AttentionOptions, String)] = [
            (AttentionOptions(querySequenceOffsets: [0, 3]), "options.querySequenceOffsets"),         // count
            (AttentionOptions(querySequenceOffsets: [1, 3, 6]), "options.querySequenceOffsets"),      // not 0-based
            (AttentionOptions(keySequenceOffsets: [0, 4, 3]), "options.keySequenceOffsets"),          // decreasing
            (AttentionOptions(keySequenceOffsets: [0, 3, 7]), "options.keySequenceOffsets"),          // past the extent
            (AttentionOptions(queryLengths: [3, 3], querySequenceOffsets: [0, 3, 6]), "options.querySequenceOffsets"),
        ]
        for (options, argument) in bad {
            var o = options
            o.layout = .blhd
            if o.querySequenceOffsets == nil { o.querySequenceOffsets = [0, 3, 6] }
            if o.keySequenceOffsets == nil && o.keyLengths == nil { o.keySequenceOffsets = [0, 3, 6] }
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape, options: o)
            }
            if case let .invalidSequenceOffsets(name, _) = error {
                #expect(name == argument)
            } else {
                Issue.record("\(String(describing: error))")
            }
        }
    }
}
