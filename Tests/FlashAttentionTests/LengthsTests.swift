import FlashAttention
import Testing
import TestSupport

/// Padded batches: per-entry query and key lengths, alone and with causal masks, windows,
/// soft-capping, ALiBi and GQA.
let lengthsGrid: [AttentionCase] = {
    var cases: [AttentionCase] = []
    let setups: [([Int]?, [Int]?, CausalMask, SlidingWindow?, Float?, Bool)] = [
        (nil, [40, 129, 7], .none, nil, nil, false),
        ([70, 1, 0], nil, .bottomRight, nil, nil, false),
        ([70, 33, 65], [129, 20, 64], .bottomRight, nil, nil, false),
        ([3, 70, 50], [100, 5, 129], .topLeft, nil, nil, true),
        ([64, 65, 17], [64, 100, 17], .bottomRight, SlidingWindow(left: 10, right: 0), 20, false),
        ([0, 0, 0], [129, 129, 129], .none, nil, nil, false),
    ]
    for (n, s) in setups.enumerated() {
        cases.append(AttentionCase(
            shape: AttentionShape(batch: 3, queryHeads: 4, keyValueHeads: 2, queryLength: 70,
                                  keyLength: 129, headDim: 24, valueHeadDim: 16),
            causal: s.2, window: s.3, softcap: s.4, alibiSlopes: s.5 ? alibiSlopes(4) : nil,
            queryLengths: s.0, keyLengths: s.1, layout: n % 2 == 0 ? .bhld : .blhd,
            magnitude: n == 2 ? 30 : 1, seed: UInt64(1700 + n)))
    }
    return cases
}()

@Suite("Per-batch query and key lengths")
struct LengthsTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: lengthsGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("garbage in the padding never reaches the valid rows")
    func paddingIsNeverRead() throws {
        let c = lengthsGrid[2]
        var (q, k, v) = c.inputs()
        let s = c.shape
        // Huge values in every padding key and value (and query row) of every batch entry.
        for b in 0 ..< s.batch {
            for h in 0 ..< s.keyValueHeads {
                for j in c.keyLengths![b] ..< s.keyLength {
                    for d in 0 ..< s.headDim { k.data[b * k.strides.batch + h * k.strides.head + j * k.strides.sequence + d] = 1e30 }
                    for d in 0 ..< s.valueHeadDim { v.data[b * v.strides.batch + h * v.strides.head + j * v.strides.sequence + d] = -1e30 }
                }
            }
        }
        let out = try FlashAttention.forward(query: q.data, key: k.data, value: v.data, shape: s,
                                             options: c.options)
        #expect(compare(output: out, strides: c.strides.output, logSumExp: nil,
                        reference: c.reference(), shape: s).passed)
    }

    @Test("lengths of the wrong count or out of range are refused")
    func invalid() {
        let shape = AttentionShape(batch: 2, queryHeads: 1, queryLength: 4, headDim: 4)
        let x = [Float](repeating: 0.5, count: shape.queryCount)
        let bad: [AttentionOptions] = [
            AttentionOptions(queryLengths: [4]), AttentionOptions(queryLengths: [4, 5]),
            AttentionOptions(keyLengths: [-1, 2]), AttentionOptions(keyLengths: [1, 2, 3]),
        ]
        for options in bad {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape, options: options)
            }
            if case .invalidLengths = error {} else { Issue.record("\(String(describing: error))") }
        }
    }
}
