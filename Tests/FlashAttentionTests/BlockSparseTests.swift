import FlashAttention
import Testing
import TestSupport

/// A seeded dense block mask keeping about `keep` of the blocks.
func randomBlockMask(_ s: AttentionShape, blockQuery: Int, blockKey: Int, keep: Double,
                     seed: UInt64) -> BlockMask {
    var rng = SplitMix64(seed: seed)
    let nq = (s.queryLength + blockQuery - 1) / blockQuery, nk = (s.keyLength + blockKey - 1) / blockKey
    let kept = (0 ..< s.batch * s.queryHeads * nq * nk).map { _ in Double.random(in: 0 ..< 1, using: &rng) < keep }
    return BlockMask(kept: kept, blockQuery: blockQuery, blockKey: blockKey, shape: s)
}

/// Block-sparse masks at granularities aligned and not aligned to the kernels' tiles, alone and
/// with causal masks, element masks and GQA.
let blockSparseGrid: [AttentionCase] = {
    let s = AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: 150,
                           keyLength: 260, headDim: 32, valueHeadDim: 24)
    return [
        AttentionCase(shape: s, blockMask: randomBlockMask(s, blockQuery: 64, blockKey: 64, keep: 0.3, seed: 1), seed: 3000),
        AttentionCase(shape: s, causal: .bottomRight,
                      blockMask: randomBlockMask(s, blockQuery: 32, blockKey: 48, keep: 0.5, seed: 2),
                      layout: .blhd, seed: 3001),
        AttentionCase(shape: s, causal: .topLeft,
                      mask: AttentionMask(boolean: (0 ..< 260).map { $0 % 7 != 0 },
                                          strides: MaskStrides(batch: 0, head: 0, query: 0, key: 1)),
                      blockMask: randomBlockMask(s, blockQuery: 100, blockKey: 13, keep: 0.6, seed: 3),
                      seed: 3002),
        AttentionCase(shape: s, blockMask: randomBlockMask(s, blockQuery: 16, blockKey: 64, keep: 0.0, seed: 4),
                      seed: 3003),  // every block off: zeros and −inf
    ]
}()

@Suite("Block-sparse attention")
struct BlockSparseTests {
    @Test("forward and backward on every kernel ISA and naive", arguments: blockSparseGrid)
    func grid(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("bad granularity or short block masks are refused")
    func invalid() {
        let shape = AttentionShape(queryHeads: 1, queryLength: 10, headDim: 4)
        let x = [Float](repeating: 0.5, count: shape.queryCount)
        for bm in [BlockMask(kept: [true], blockQuery: 0, blockKey: 4,
                             strides: MaskStrides(batch: 0, head: 0, query: 0, key: 0)),
                   BlockMask(kept: [true, false], blockQuery: 4, blockKey: 4, shape: shape)] {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(query: x, key: x, value: x, shape: shape,
                                           options: AttentionOptions(blockMask: bm))
            }
            if case .invalidMask = error {} else { Issue.record("\(String(describing: error))") }
        }
    }
}
