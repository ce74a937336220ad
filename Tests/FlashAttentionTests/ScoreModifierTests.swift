import CFlashAttention
import FlashAttention
import Testing
import TestSupport

/// ALiBi slopes as BLOOM/MPT define them for h heads: 2^(−8k/h), k = 1 … h.
func alibiSlopes(_ heads: Int) -> [Float] {
    (1 ... heads).map { Float(pow2(-8.0 * Double($0) / Double(heads))) }
}

private func pow2(_ x: Double) -> Double {
    var r = 1.0, y = x
    while y <= -1 { r /= 2; y += 1 }
    // 2^y for y in (−1, 0]: a few Taylor terms are plenty for test slopes.
    var term = 1.0, sum = 1.0
    for n in 1 ... 20 { term *= y * 0.6931471805599453 / Double(n); sum += term }
    return r * sum
}

/// Soft-capping and ALiBi, alone and combined with causal masks, windows and GQA.
let modifierGrid: [AttentionCase] = {
    var cases: [AttentionCase] = []
    let shapes: [(Int, Int, Int, Int, Int)] = [(4, 2, 65, 129, 32), (2, 2, 129, 65, 64),
                                              (8, 1, 17, 300, 16), (1, 1, 200, 200, 96)]
    for (n, s) in shapes.enumerated() {
        let variants: [(Float?, Bool, CausalMask, SlidingWindow?)] = [
            (5, false, .none, nil), (30, false, .bottomRight, nil), (nil, true, .none, nil),
            (nil, true, .topLeft, nil), (8, true, .bottomRight, SlidingWindow(left: 40, right: 0)),
        ]
        for (m, v) in variants.enumerated() {
            let k = n * variants.count + m
            cases.append(AttentionCase(
                shape: AttentionShape(queryHeads: s.0, keyValueHeads: s.1, queryLength: s.2,
                                      keyLength: s.3, headDim: s.4),
                causal: v.2, window: v.3, softcap: v.0, alibiSlopes: v.1 ? alibiSlopes(s.0) : nil,
                layout: k % 2 == 0 ? .bhld : .blhd, magnitude: k % 4 == 1 ? 30 : 1,
                seed: UInt64(1300 + k)))
        }
    }
    return cases
}()

@Suite("Soft-capping and ALiBi")
struct ScoreModifierTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: modifierGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("the modifiers change the answer: without them the reference disagrees")
    func sensitivity() throws {
        var c = modifierGrid[0]  // softcap 5
        let (q, k, v) = c.inputs()
        let out = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                             shape: c.shape, options: c.options)
        let withCap = c.reference()
        c.softcap = nil
        #expect(compare(output: out, strides: c.strides.output, logSumExp: nil,
                        reference: withCap, shape: c.shape).passed)
        #expect(!compare(output: out, strides: c.strides.output, logSumExp: nil,
                         reference: c.reference(), shape: c.shape).passed)
    }

    @Test("bad soft-caps and slopes are refused")
    func invalid() {
        let shape = AttentionShape(queryHeads: 2, queryLength: 4, headDim: 4)
        let x = [Float](repeating: 0.5, count: 32)
        for cap in [Float(0), -1, .infinity, .nan] {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(softcap: cap))
            }
            if case .invalidSoftcap = error {} else { Issue.record("softcap \(cap): \(String(describing: error))") }
        }
        for slopes in [[Float(0.5)], [0.5, .nan], [.infinity, 1]] {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(alibiSlopes: slopes))
            }
            if case .invalidALiBiSlopes = error {} else { Issue.record("\(slopes): \(String(describing: error))") }
        }
        // C: a NaN slope names its index.
        var p = fa_problem()
        fa_problem_init(&p)
        p.shape = fa_shape(batch: 1, q_heads: 2, kv_heads: 2, q_len: 1, kv_len: 1, head_dim_qk: 1,
                           head_dim_v: 1)
        let slopes: [Float] = [1, .nan]
        var diag = fa_diagnostic()
        slopes.withUnsafeBufferPointer { s in
            p.alibi_slopes = s.baseAddress
            #expect(fa_check(&p, &diag) == FA_ERR_INVALID_ALIBI)
        }
        #expect(diag.argument == FA_ARG_ALIBI)
        p.alibi_slopes = nil
        p.softcap = -2
        #expect(fa_check(&p, &diag) == FA_ERR_INVALID_SOFTCAP)
    }
}
