import FlashAttention
import Testing
import TestSupport

/// Sliding windows on odd shapes, alone and with both causal alignments, Lq ≠ Lk, GQA.
let windowGrid: [AttentionCase] = {
    let windows: [(SlidingWindow, CausalMask)] = [
        (SlidingWindow(left: 0, right: 0), .none),          // the diagonal key only
        (SlidingWindow(left: 4, right: 0), .bottomRight),   // local causal
        (SlidingWindow(left: 16, right: 8), .none),
        (SlidingWindow(left: nil, right: 3), .none),        // right side only
        (SlidingWindow(left: 70, right: nil), .topLeft),    // window with top-left causal
        (SlidingWindow(left: 100, right: 100), .none),      // wider than some problems
        (SlidingWindow(left: 64, right: 0), .bottomRight),  // exactly one key block
    ]
    let shapes: [(Int, Int, Int, Int, Int, Int)] = [  // Hq, Hkv, Lq, Lk, Dqk, Dv
        (2, 1, 65, 129, 40, 24), (4, 4, 129, 65, 16, 16), (2, 2, 200, 200, 64, 64),
        (8, 2, 3, 300, 8, 8), (1, 1, 300, 17, 96, 96),
    ]
    var cases: [AttentionCase] = []
    for (n, s) in shapes.enumerated() {
        for (m, (window, causal)) in windows.enumerated() {
            let k = n * windows.count + m
            cases.append(AttentionCase(
                shape: AttentionShape(queryHeads: s.0, keyValueHeads: s.1, queryLength: s.2,
                                      keyLength: s.3, headDim: s.4, valueHeadDim: s.5),
                causal: causal, window: window, layout: k % 2 == 0 ? .bhld : .blhd,
                magnitude: k % 5 == 2 ? 30 : 1, seed: UInt64(900 + k)))
        }
    }
    return cases
}()

@Suite("Sliding windows")
struct WindowTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: windowGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("a window wider than the keys is no window, bit for bit")
    func wideWindow() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 150, keyLength: 130,
                                                    headDim: 32), causal: .bottomRight, seed: 5)
        let (q, k, v) = c.inputs()
        let plain = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                               shape: c.shape, options: c.options)
        var options = c.options
        options.window = SlidingWindow(left: 1000, right: 1000)
        let wide = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                              shape: c.shape, options: options)
        #expect(plain.map(\.bitPattern) == wide.map(\.bitPattern))
    }

    @Test("rows whose window holds no key: output 0, log-sum-exp −inf, no gradient",
          arguments: [AttentionImplementation.flash, .naive])
    func emptyRows(_ implementation: AttentionImplementation) throws {
        // Lq = 100, Lk = 20, offset −80: row i sees keys i − 80 − 2 … i − 80, so rows 0 … 79
        // see nothing, and the window's left side cuts the rest to three keys.
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 100, keyLength: 20,
                                                    headDim: 8),
                              window: SlidingWindow(left: 2, right: 0), seed: 6)
        let (q, k, v) = c.inputs()
        var options = c.options
        options.implementation = implementation
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
        for h in 0 ..< 2 {
            for i in 0 ..< 80 {
                #expect(lse[h * 100 + i] == -.infinity)
                #expect(out[(h * 100 + i) * 8 ..< (h * 100 + i) * 8 + 8].allSatisfy { $0 == 0 })
            }
        }
        #expect(compare(output: out, strides: c.strides.output, logSumExp: lse,
                        reference: c.reference(), shape: c.shape).passed)
        let g = try libraryGradients(c, options)
        #expect(g.query[0 ..< 80 * 8].allSatisfy { $0 == 0 })
        #expect(compareGradients(g, layout: c.layout, reference: c.referenceGradients(),
                                 shape: c.shape).passed)
    }

    @Test("negative window sides are refused")
    func invalid() {
        let shape = AttentionShape(queryHeads: 1, queryLength: 4, headDim: 4)
        let x = [Float](repeating: 0, count: 16)
        for window in [SlidingWindow(left: -1, right: 0), SlidingWindow(left: 3, right: -2),
                       SlidingWindow(left: Int(Int32.max) + 1, right: nil)] {
            #expect(throws: AttentionError.invalidWindow(left: window.left, right: window.right)) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(window: window))
            }
        }
    }

    @Test("gradients stay bitwise identical across thread counts with a window")
    func determinism() throws {
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                    queryLength: 300, keyLength: 280, headDim: 32),
                              causal: .bottomRight, window: SlidingWindow(left: 90, right: nil),
                              seed: 8)
        var bits: [[UInt32]] = []
        for threads in [1, 2, 3] {
            var o = c.options
            o.threadCount = threads
            let (q, k, v) = c.inputs()
            let out = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                                 shape: c.shape, options: o)
            let g = try libraryGradients(c, o)
            bits.append((out + g.query + g.key + g.value).map(\.bitPattern))
        }
        #expect(bits[0] == bits[1] && bits[0] == bits[2])
    }
}
