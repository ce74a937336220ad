import CFlashAttention
import FlashAttention
import Testing
import TestSupport

/// A seeded boolean mask keeping about `keep` of the elements addressed by `strides`.
func randomBooleanMask(_ shape: AttentionShape, _ strides: MaskStrides, keep: Double,
                       seed: UInt64) -> AttentionMask {
    var rng = SplitMix64(seed: seed)
    let n = AttentionMask(boolean: [], strides: strides).requiredCountForTests(shape)
    return AttentionMask(boolean: (0 ..< n).map { _ in Double.random(in: 0 ..< 1, using: &rng) < keep },
                         strides: strides)
}

/// A seeded additive mask in [−3, 3) with about `hidden` of the elements at −inf.
func randomAdditiveMask(_ shape: AttentionShape, _ strides: MaskStrides, hidden: Double,
                        seed: UInt64) -> AttentionMask {
    var rng = SplitMix64(seed: seed)
    let n = AttentionMask(additive: [], strides: strides).requiredCountForTests(shape)
    return AttentionMask(additive: (0 ..< n).map { _ in
        Double.random(in: 0 ..< 1, using: &rng) < hidden ? -.infinity : Float.random(in: -3 ..< 3, using: &rng)
    }, strides: strides)
}

extension AttentionMask {
    func requiredCountForTests(_ s: AttentionShape) -> Int {
        1 + (s.batch - 1) * strides.batch + (s.queryHeads - 1) * strides.head
            + (s.queryLength - 1) * strides.query + (s.keyLength - 1) * strides.key
    }
}

/// Masks: boolean and additive, dense and broadcast (shared, key padding, per-head), alone and
/// combined with causal masks, windows, soft-capping, ALiBi, GQA and per-batch lengths.
let maskGrid: [AttentionCase] = {
    let shape = AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: 65,
                               keyLength: 129, headDim: 24, valueHeadDim: 16)
    let perHead = MaskStrides(batch: 0, head: shape.queryLength * shape.keyLength,
                              query: shape.keyLength, key: 1)  // [1, Hq, Lq, Lk]
    var cases: [AttentionCase] = []
    let strideSets: [MaskStrides] = [.dense(shape), .shared(shape), .keyPadding(shape), perHead]
    for (n, st) in strideSets.enumerated() {
        cases.append(AttentionCase(shape: shape, mask: randomBooleanMask(shape, st, keep: 0.7, seed: UInt64(n)),
                                   seed: UInt64(2000 + n)))
        cases.append(AttentionCase(shape: shape, causal: .bottomRight,
                                   mask: randomAdditiveMask(shape, st, hidden: 0.2, seed: UInt64(10 + n)),
                                   layout: .blhd, seed: UInt64(2100 + n)))
    }
    // Everything at once.
    cases.append(AttentionCase(shape: shape, causal: .bottomRight,
                               window: SlidingWindow(left: 50, right: 0), softcap: 20,
                               alibiSlopes: alibiSlopes(4), queryLengths: [65, 30],
                               keyLengths: [100, 129],
                               mask: randomAdditiveMask(shape, .dense(shape), hidden: 0.1, seed: 77),
                               magnitude: 1, seed: 2200))
    // Whole key blocks hidden for every row (keys 64 ..< 192 of 300): those blocks are skipped.
    let wide = AttentionShape(queryHeads: 2, queryLength: 150, keyLength: 300, headDim: 32)
    cases.append(AttentionCase(shape: wide, causal: .bottomRight,
                               mask: AttentionMask(boolean: (0 ..< 300).map { $0 < 64 || $0 >= 192 },
                                                   strides: MaskStrides(batch: 0, head: 0, query: 0, key: 1)),
                               seed: 2400))
    // A mask of all −inf: every row sees nothing.
    cases.append(AttentionCase(shape: shape, mask: AttentionMask(boolean: [false], strides:
        MaskStrides(batch: 0, head: 0, query: 0, key: 0)), seed: 2300))
    return cases
}()

@Suite("Element masks")
struct MaskTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: maskGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("an all-masked mask gives zeros and −inf everywhere")
    func allMasked() throws {
        let c = maskGrid.last!
        let (q, k, v) = c.inputs()
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: c.shape, options: c.options)
        #expect(out.allSatisfy { $0 == 0 })
        #expect(lse.allSatisfy { $0 == -.infinity })
    }

    @Test("a mask that changes nothing (all true) gives the unmasked bits")
    func allTrue() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 70, headDim: 16),
                              causal: .topLeft, seed: 3)
        let (q, k, v) = c.inputs()
        let plain = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                               shape: c.shape, options: c.options)
        var o = c.options
        o.mask = AttentionMask(additive: [0], strides: MaskStrides(batch: 0, head: 0, query: 0, key: 0))
        let masked = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                                shape: c.shape, options: o)
        #expect(plain == masked)
    }

    @Test("masks too short or with negative strides are refused")
    func invalid() {
        let shape = AttentionShape(batch: 2, queryHeads: 1, queryLength: 4, headDim: 4)
        let x = [Float](repeating: 0.5, count: shape.queryCount)
        for mask in [AttentionMask(boolean: [true, false], strides: .dense(shape)),
                     AttentionMask(additive: [0, 0], strides: MaskStrides(batch: -1, head: 0, query: 0, key: 1))] {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(mask: mask))
            }
            if case .invalidMask = error {} else { Issue.record("\(String(describing: error))") }
        }
    }
}
