import FlashAttention
import Testing
import TestSupport

@Suite("Caller memory, strides and spans")
struct StridesTests {
    /// Q, K and V interleaved in one fused projection [B, L, 3, H, D], output padded to a row
    /// stride of Dv + 5 and logsumexp every other element: no copies, results as the reference.
    @Test("a fused QKV buffer, a padded output and a strided logsumexp",
          arguments: [AttentionImplementation.flash, .naive])
    func fusedQKV(_ implementation: AttentionImplementation) throws {
        let (b, l, h, d) = (2, 70, 3, 20)
        let shape = AttentionShape(batch: b, queryHeads: h, queryLength: l, headDim: d)
        var rng = SplitMix64(seed: 3)
        let qkv = randomFloats(b * l * 3 * h * d, magnitude: 1, using: &rng)
        let inStrides = AttentionStrides(batch: l * 3 * h * d, head: d, sequence: 3 * h * d)
        let outStrides = AttentionStrides(batch: h * l * (d + 5), head: l * (d + 5),
                                          sequence: d + 5)
        let lseStrides = AttentionStrides(batch: h * l * 2, head: l * 2, sequence: 2)
        let strides = AttentionTensorStrides(query: inStrides, key: inStrides, value: inStrides,
                                             output: outStrides, logSumExp: lseStrides)
        let sentinel: Float = 12345
        var out = [Float](repeating: sentinel, count: b * h * l * (d + 5))
        var lse = [Float](repeating: sentinel, count: b * h * l * 2)
        try qkv.withUnsafeBufferPointer { all in
            let q = UnsafeBufferPointer(rebasing: all[0...])
            let k = UnsafeBufferPointer(rebasing: all[(h * d)...])
            let v = UnsafeBufferPointer(rebasing: all[(2 * h * d)...])
            try out.withUnsafeMutableBufferPointer { o in
                try lse.withUnsafeMutableBufferPointer { s in
                    try FlashAttention.forward(
                        query: q, key: k, value: v, output: o, logSumExp: s, shape: shape,
                        strides: strides,
                        options: AttentionOptions(causal: .topLeft,
                                                  implementation: implementation))
                }
            }
        }
        let extents = (b, h, l, d)
        let reference = referenceAttention(
            query: StridedTensor(data: qkv, strides: inStrides, extents: extents),
            key: StridedTensor(data: qkv, strides: inStrides, extents: extents, offset: h * d),
            value: StridedTensor(data: qkv, strides: inStrides, extents: extents,
                                 offset: 2 * h * d),
            shape: shape, scale: 1 / Double(d).squareRoot(), causal: .topLeft)
        let denseLSE = (0 ..< b * h * l).map { lse[2 * $0] }
        let result = compare(output: out, strides: outStrides, logSumExp: denseLSE,
                             reference: reference, shape: shape)
        #expect(result.passed, "\(result)")
        // Padding was not written.
        for row in 0 ..< b * h * l {
            #expect(out[row * (d + 5) + d ..< row * (d + 5) + d + 5].allSatisfy { $0 == sentinel })
            #expect(lse[2 * row + 1] == sentinel)
        }
    }

    @Test("the Span entry point matches the array entry point bit for bit")
    func spans() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 33, keyLength: 65,
                                                    headDim: 16),
                              causal: .bottomRight, seed: 4)
        let (q, k, v) = c.inputs()
        let expected = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                                  shape: c.shape, options: c.options)
        var out = [Float](repeating: .nan, count: c.shape.outputCount)
        var span = out.mutableSpan
        try FlashAttention.forward(query: q.data.span, key: k.data.span, value: v.data.span,
                                   output: &span, shape: c.shape, options: c.options)
        _ = consume span
        #expect(out.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    @Test("[B,L,H,D] and [B,H,L,D] give the same numbers")
    func layoutsAgree() throws {
        let bhld = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                       queryLength: 19, keyLength: 23, headDim: 8),
                                 layout: .bhld, seed: 21)
        let (q, k, v) = bhld.inputs()
        let s = bhld.shape
        // Transpose every input to [B, L, H, D].
        func transpose(_ t: StridedTensor) -> [Float] {
            let (nb, nh, nl, nd) = t.extents
            var out = [Float](repeating: 0, count: t.data.count)
            for b in 0 ..< nb { for h in 0 ..< nh { for l in 0 ..< nl { for d in 0 ..< nd {
                out[((b * nl + l) * nh + h) * nd + d] = t[b, h, l, d]
            } } } }
            return out
        }
        let a = try FlashAttention.forward(query: q.data, key: k.data, value: v.data, shape: s)
        let t = try FlashAttention.forward(query: transpose(q), key: transpose(k),
                                           value: transpose(v), shape: s,
                                           options: AttentionOptions(layout: .blhd))
        let back = StridedTensor(data: t, strides: .packed(.blhd, heads: 4, length: 19, dim: 8),
                                 extents: (2, 4, 19, 8))
        var same = true
        for b in 0 ..< 2 { for h in 0 ..< 4 { for l in 0 ..< 19 { for d in 0 ..< 8 {
            same = same && back[b, h, l, d] == a[((b * 4 + h) * 19 + l) * 8 + d]
        } } } }
        #expect(same)
    }
}
