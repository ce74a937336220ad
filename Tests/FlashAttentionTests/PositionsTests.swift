import FlashAttention
import Testing
import TestSupport

/// Explicit positions: slices of one longer sequence, as ring attention and chunked prefill
/// hand them to a call. Query slices before, on and after their key slices (the diagonal
/// through the tile, left of it, right of it, and slices that see nothing at all), with causal
/// masks of both modes, windows, ALiBi with soft-capping, GQA and decode-shaped rows.
let positionsGrid: [AttentionCase] = {
    typealias Variant = (CausalMask, SlidingWindow?, Bool, SequencePositions)
    let variants: [Variant] = [
        (.bottomRight, nil, false, SequencePositions(queryStart: 300, keyStart: 300)),  // diagonal slice
        (.topLeft, nil, false, SequencePositions(queryStart: 1000, keyStart: 937)),    // partly past it
        (.bottomRight, nil, false, SequencePositions(queryStart: 5000, keyStart: 0)),  // all keys before
        (.topLeft, nil, false, SequencePositions(queryStart: 0, keyStart: 4000)),      // no key visible
        (.none, SlidingWindow(left: 50, right: 7), false, SequencePositions(queryStart: 130, keyStart: 100)),
        (.bottomRight, SlidingWindow(left: 90, right: nil), true, SequencePositions(queryStart: 2000, keyStart: 1961)),
        (.none, nil, true, SequencePositions(queryStart: -40, keyStart: 25)),          // ALiBi only
    ]
    let shapes: [(Int, Int, Int, Int, Int)] = [  // Hq, Hkv, Lq, Lk, D
        (4, 2, 65, 129, 32), (2, 2, 127, 63, 64), (8, 2, 3, 300, 16), (1, 1, 17, 1000, 128),
    ]
    var cases: [AttentionCase] = []
    for (n, s) in shapes.enumerated() {
        for (m, v) in variants.enumerated() {
            let k = n * variants.count + m
            cases.append(AttentionCase(
                shape: AttentionShape(queryHeads: s.0, keyValueHeads: s.1, queryLength: s.2,
                                      keyLength: s.3, headDim: s.4),
                causal: v.0, window: v.1, softcap: v.2 ? 10 : nil,
                alibiSlopes: v.2 ? alibiSlopes(s.0) : nil, layout: k % 2 == 0 ? .bhld : .blhd,
                seed: UInt64(2600 + k), positions: v.3))
        }
    }
    return cases
}()

@Suite("Explicit positions")
struct PositionsTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: positionsGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("positions that put the ends where the alignment does change no bit",
          arguments: [CausalMask.bottomRight, .topLeft])
    func sameAsAlignment(_ causal: CausalMask) throws {
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                    queryLength: 70, keyLength: 190, headDim: 40),
                              causal: causal, window: SlidingWindow(left: 60, right: 3),
                              alibiSlopes: alibiSlopes(4), seed: 2690)
        let (q, k, v) = c.inputs()
        // Bottom-right puts row i at key i + Lk − Lq; top-left causal (only causal) at i, but the
        // window and ALiBi stay bottom-right: compare with a problem that has no window or ALiBi
        // in the top-left case.
        var plain = c.options
        var placed = c.options
        if causal == .topLeft {
            plain.window = nil
            plain.alibiSlopes = nil
            placed = plain
            placed.positions = SequencePositions(queryStart: 777, keyStart: 777)
        } else {
            placed.positions = SequencePositions(queryStart: 120 + 5, keyStart: 5)
        }
        let a = try FlashAttention.forwardWithLogSumExp(query: q.data, key: k.data, value: v.data,
                                                        shape: c.shape, options: plain)
        let b = try FlashAttention.forwardWithLogSumExp(query: q.data, key: k.data, value: v.data,
                                                        shape: c.shape, options: placed)
        let same = a.output.map(\.bitPattern) == b.output.map(\.bitPattern)
            && a.logSumExp.map(\.bitPattern) == b.logSumExp.map(\.bitPattern)
        #expect(same, "outputs or log-sum-exps differ")
    }

    @Test("a query slice split in two at any row gives the whole slice's rows, bit for bit")
    func splitQueries() throws {
        // Rows 0 … 99 at positions 400 … 499 against keys 0 … 449: the same call cut into rows
        // 0 … 36 and 37 … 99 (each its own positions) returns the same rows.
        let shape = AttentionShape(queryHeads: 2, queryLength: 100, keyLength: 450, headDim: 32)
        let c = AttentionCase(shape: shape, causal: .bottomRight, seed: 2691,
                              positions: SequencePositions(queryStart: 400, keyStart: 0))
        let (q, k, v) = c.inputs()
        let whole = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                               shape: shape, options: c.options)
        var pieces: [Float] = []
        var parts = [[Float]](repeating: [], count: 2)
        for (n, rows) in [0 ..< 37, 37 ..< 100].enumerated() {
            var sub = shape
            sub.queryLength = rows.count
            var qs: [Float] = []
            for h in 0 ..< 2 { qs += q.data[(h * 100 + rows.lowerBound) * 32 ..< (h * 100 + rows.upperBound) * 32] }
            var o = c.options
            o.positions = SequencePositions(queryStart: 400 + rows.lowerBound, keyStart: 0)
            parts[n] = try FlashAttention.forward(query: qs, key: k.data, value: v.data, shape: sub, options: o)
        }
        for h in 0 ..< 2 {
            pieces += parts[0][h * 37 * 32 ..< (h + 1) * 37 * 32]
            pieces += parts[1][h * 63 * 32 ..< (h + 1) * 63 * 32]
        }
        let same = whole.map(\.bitPattern) == pieces.map(\.bitPattern)
        #expect(same, "the split rows differ from the whole slice's")
    }

    @Test("positions beyond ±2⁴⁰ are refused, naming the argument")
    func invalid() {
        let shape = AttentionShape(queryHeads: 1, queryLength: 4, headDim: 4)
        let x = [Float](repeating: 0, count: 16)
        for (positions, name) in [(SequencePositions(queryStart: (1 << 40) + 1, keyStart: 0), "options.positions.queryStart"),
                                  (SequencePositions(queryStart: 0, keyStart: Int.min), "options.positions.keyStart")] {
            #expect(throws: AttentionError.invalidExtent(argument: name, value: name.hasSuffix("queryStart") ? (1 << 40) + 1 : Int.min)) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(positions: positions))
            }
        }
    }
}
