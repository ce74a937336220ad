import FlashAttention
import Testing

@Suite("Workspace")
struct WorkspaceTests {
    @Test("does not grow with Lq × Lk, grows with head dims and threads")
    func scaling() throws {
        let options = AttentionOptions(threadCount: 2)
        func bytes(_ l: Int, _ d: Int, threads: Int = 2) throws -> Int {
            var o = options
            o.threadCount = threads
            return try FlashAttention.workspaceBytes(
                shape: AttentionShape(batch: 4, queryHeads: 8, queryLength: l, headDim: d),
                options: o)
        }
        let small = try bytes(256, 64)
        #expect(small > 0)
        #expect(try bytes(65_536, 64) == small)
        #expect(try bytes(1_000_000, 64) == small)
        #expect(try bytes(256, 128) > small)
        // Per thread: the Q, Kᵀ, S and accumulator tiles of 64 rows, about 4·64·(2D + 64 + D)
        // bytes; far below one 256 × 256 score matrix per head.
        #expect(small < 2 * 4 * 64 * (3 * 64 + 64 + 16) + 256)
        #expect(try bytes(256, 64, threads: 4) > small)
        let shape = AttentionShape(queryHeads: 8, queryLength: 8192, headDim: 64)
        #expect(try shape.workspaceBytes > 0)
    }

    @Test("bad shapes are refused")
    func refused() {
        #expect(throws: AttentionError.invalidExtent(argument: "shape.headDim", value: 0)) {
            try FlashAttention.workspaceBytes(
                shape: AttentionShape(queryHeads: 8, queryLength: 5, headDim: 0))
        }
    }
}
