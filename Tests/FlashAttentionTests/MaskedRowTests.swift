import FlashAttention
import Testing
import TestSupport

@Suite("Rows that see no key")
struct MaskedRowTests {
    @Test("bottom-right causal with Lq > Lk: the first Lq − Lk rows are 0 with logsumexp −inf",
          arguments: [AttentionImplementation.flash, .naive])
    func bottomRightEmptyRows(_ implementation: AttentionImplementation) throws {
        // Lq = 150, Lk = 70: rows 0 ..< 80 see nothing; 80 crosses a 64-row tile boundary.
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 150,
                                                    keyLength: 70, headDim: 24),
                              causal: .bottomRight, magnitude: 30, seed: 5)
        let (q, k, v) = c.inputs()
        var options = c.options
        options.implementation = implementation
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
        for h in 0 ..< 2 {
            for i in 0 ..< 150 {
                let row = h * 150 + i
                let slice = out[(row * 24) ..< (row * 24 + 24)]
                if i < 80 {
                    #expect(slice.allSatisfy { $0 == 0 && $0.sign == .plus }, "row \(i)")
                    #expect(lse[row] == -.infinity, "row \(i)")
                } else {
                    #expect(slice.allSatisfy { $0.isFinite })
                    #expect(lse[row].isFinite)
                }
            }
        }
        #expect(compare(output: out, strides: c.strides.output, logSumExp: lse,
                        reference: c.reference(), shape: c.shape).passed)
    }
}
