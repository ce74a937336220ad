import FlashAttention
import Testing

@Suite("Workspace")
struct WorkspaceTests {
    /// The most a thread can need at head dims (dqk, dv): the tallest query block (384 rows)
    /// times Qᵀ, scores (64 keys), accumulator (dv rounded to 16) and 4 row vectors, in
    /// floats, with 64-byte alignment slack per region.
    func bound(threads: Int, dqk: Int, dv: Int) -> Int {
        let rows = 384, ldacc = (dv + 15) / 16 * 16
        return threads * (4 * rows * (dqk + 64 + ldacc + 4) + 7 * 64) + 64
    }

    @Test("is bounded independently of Lq × Lk, and grows with head dims (at a fixed block) and threads",
          arguments: FlashAttention.supportedKernels)
    func scaling(_ kernel: KernelISA) throws {
        func bytes(_ l: Int, _ d: Int, threads: Int = 2) throws -> Int {
            try FlashAttention.workspaceBytes(
                shape: AttentionShape(batch: 4, queryHeads: 8, queryLength: l, headDim: d),
                options: AttentionOptions(threadCount: threads, kernel: kernel))
        }
        let long = try bytes(65_536, 64)
        #expect(long > 0)
        #expect(try bytes(1_000_000, 64) == long)
        #expect(try bytes(Int(Int32.max), 64) == long)
        for l in [1, 17, 256, 4096, 65_536] {
            #expect(try bytes(l, 64) <= bound(threads: 2, dqk: 64, dv: 64), "L = \(l)")
            #expect(try bytes(l, 256) <= bound(threads: 2, dqk: 256, dv: 256), "L = \(l)")
        }
        // Head dims grow the workspace at a fixed block height: a short problem's block is
        // the problem. (At long lengths the block height shrinks to keep a thread's working
        // set in half the L2, so 128 may take no more than 64: with a 512 KiB L2, 64 and 128
        // both fill the budget.)
        #expect(try bytes(17, 128) > bytes(17, 64))
        // One workspace per thread (without a thread runtime there is only the caller's).
        #expect(FlashAttention.isOpenMPEnabled == (FlashAttention.threadRuntime == .openMP))
        if FlashAttention.threadRuntime != .serial {
            #expect(try bytes(65_536, 64, threads: 4) > long)
        } else {
            #expect(try bytes(65_536, 64, threads: 4) <= long)
        }
        let shape = AttentionShape(queryHeads: 8, queryLength: 8192, headDim: 64)
        // Far below one 8192 × 8192 score matrix (268 MB).
        #expect(try shape.workspaceBytes < 2 << 20)
    }

    @Test("bad shapes are refused")
    func refused() {
        #expect(throws: AttentionError.invalidExtent(argument: "shape.headDim", value: 0)) {
            try FlashAttention.workspaceBytes(
                shape: AttentionShape(queryHeads: 8, queryLength: 5, headDim: 0))
        }
    }
}
