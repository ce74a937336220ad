import CFlashAttention
import FlashAttention
import Testing

// Regressions of arguments that once trapped or overflowed (issue 14's probe and the fuzzer):
// each must give a typed error or a result, never a trap. The C cases overflowed only in
// signed arithmetic, which UndefinedBehaviorSanitizer (`make sanitize-test`) turns into a
// failure; the Swift cases trapped in every build.
@Suite("Hostile arguments: a typed error or a result, never a trap")
struct HostileArgumentTests {
    /// A descriptor whose extents are each valid (2³¹ − 1) but whose products are not.
    private func hugeProblem() -> fa_problem {
        var p = fa_problem()
        fa_problem_init(&p)
        let big = Int64(Int32.max)
        p.shape = fa_shape(batch: big, q_heads: big, kv_heads: 1, q_len: big, kv_len: 1,
                           head_dim_qk: 1, head_dim_v: 1)
        return p
    }

    @Test("workspace and kernel-info queries on extents whose product passes Int64.max")
    func workspaceOfHugeExtents() {
        var p = hugeProblem()
        var bytes = 0
        var info = fa_kernel_info()
        // B·Hq·⌈Lq/BQ⌉ overflowed while choosing the block height.
        _ = fa_workspace_bytes(&p, &bytes)
        #expect(fa_kernel_info_for(&p, &info) == FA_OK)
        #expect(info.block_q >= 1)
        _ = fa_backward_workspace_bytes(&p, &bytes)
    }

    @Test("a block mask whose granularity is Int64.max; the strides of an absent element mask")
    func blockMaskOfHugeGranularity() throws {
        var q = [Float](repeating: 0.5, count: 4 * 8), o = [Float](repeating: 9, count: 4 * 8)
        var kept: [UInt8] = [1]
        var diag = fa_diagnostic()
        let status = q.withUnsafeMutableBufferPointer { qp in
            o.withUnsafeMutableBufferPointer { op in
                kept.withUnsafeMutableBufferPointer { kp in
                    var p = fa_problem()
                    fa_problem_init(&p)
                    p.shape = fa_shape(batch: 1, q_heads: 1, kv_heads: 1, q_len: 4, kv_len: 4,
                                       head_dim_qk: 8, head_dim_v: 8)
                    let st = fa_strides_bhld(1, 4, 8)
                    (p.q_strides, p.k_strides, p.v_strides, p.o_strides) = (st, st, st, st)
                    (p.q, p.k, p.v) = (UnsafeRawPointer(qp.baseAddress), UnsafeRawPointer(qp.baseAddress),
                                       UnsafeRawPointer(qp.baseAddress))
                    p.o = UnsafeMutableRawPointer(op.baseAddress)
                    p.block_mask.data = UnsafePointer(kp.baseAddress)
                    (p.block_mask.block_q, p.block_mask.block_k) = (Int64.max, Int64.max - 1)
                    // No element mask, but strides that would overflow if anything used them.
                    (p.mask.batch, p.mask.head, p.mask.query, p.mask.key) = (.max, .max, .max, .max)
                    _ = fa_check(&p, &diag)
                    return fa_forward(&p)
                }
            }
        }
        #expect(status == FA_OK, "\(diag.status)")
        #expect(o.allSatisfy { abs($0 - 0.5) < 1e-6 })
    }

    @Test("array calls whose extents fit Int32 but whose element counts overflow Int")
    func overflowingCounts() {
        let e = 1 << 21
        let shape = AttentionShape(queryHeads: e, queryLength: e, headDim: e)
        #expect(throws: AttentionError.sizeOverflow(argument: "query")) {
            _ = try FlashAttention.forward(query: [], key: [], value: [], shape: shape)
        }
        #expect(throws: AttentionError.sizeOverflow(argument: "query")) {
            _ = try FlashAttention.backward(query: [], key: [], value: [], output: [], logSumExp: [],
                                            outputGradient: [], shape: shape)
        }
        #expect(throws: AttentionError.sizeOverflow(argument: "query")) {
            _ = try FlashAttention.workspaceBytes(shape: shape)
        }
        #expect(throws: AttentionError.sizeOverflow(argument: "query")) {
            _ = try FlashAttention.kernelInfo(shape: shape)
        }
    }

    /// State shapes the merges must refuse before multiplying extents: (shape, the error).
    static let badStateShapes: [(AttentionStateShape, AttentionError)] = [
        (AttentionStateShape(batch: 0, heads: 1, length: 1, headDim: 1),
         .invalidExtent(argument: "shape.batch", value: 0)),
        (AttentionStateShape(heads: -1, length: 1, headDim: 1),
         .invalidExtent(argument: "shape.heads", value: -1)),
        (AttentionStateShape(heads: 1, length: .max, headDim: 1),
         .invalidExtent(argument: "shape.length", value: .max)),
        (AttentionStateShape(heads: 1, length: 1, headDim: Int(Int32.max) + 1),
         .invalidExtent(argument: "shape.headDim", value: Int(Int32.max) + 1)),
        (AttentionStateShape(batch: Int(Int32.max), heads: Int(Int32.max), length: Int(Int32.max),
                             headDim: 1),
         .sizeOverflow(argument: "outputs")),
    ]

    @Test("merges of states whose shape is zero, negative, past Int32 or overflowing, through every entry point",
          arguments: 0 ..< badStateShapes.count)
    func mergeShapes(_ index: Int) {
        let (shape, error) = Self.badStateShapes[index]
        let state = AttentionState(output: [1], logSumExp: [0])
        // The array merges once built AttentionState.empty(shape) first: a trap.
        #expect(throws: error) { _ = try FlashAttention.mergeStates([state, state], shape: shape) }
        #expect(throws: error) { _ = try FlashAttention.mergeStates([], shape: shape) }
        var into = state
        #expect(throws: error) { try FlashAttention.mergeState(state, into: &into, shape: shape) }
        #expect(into == state)
        var o: [Float] = [1], l: [Float] = [0]
        _ = o.withUnsafeMutableBufferPointer { ob in
            l.withUnsafeMutableBufferPointer { lb in
                #expect(throws: error) {
                    try FlashAttention.mergeStates(outputs: [UnsafeBufferPointer(ob)],
                                                   logSumExps: [UnsafeBufferPointer(lb)],
                                                   into: ob, logSumExp: lb, shape: shape)
                }
            }
        }
    }

    @Test("a KVCache whose pools overflow the address space or cannot be allocated")
    func cachePools() {
        let big = Int(Int32.max)
        // keyValueHeads · pageSize · headDim overflowed Int before the capacity was checked.
        #expect(throws: KVCacheError.self) {
            _ = try KVCache<Float>(keyValueHeads: big, headDim: big, pageSize: big, capacity: 1)
        }
        #expect(throws: KVCacheError.self) {
            _ = try KVCache<Float>(keyValueHeads: 1, headDim: big, valueHeadDim: 1, pageSize: big,
                                   capacity: big)
        }
        // 2³¹ − 1 pages of 4096 fp32 elements: 32 TiB, which the system refuses (a trap in
        // UnsafeMutableRawPointer.allocate before; now an error naming the capacity).
        do {
            _ = try KVCache<Float>(keyValueHeads: 1, headDim: 4096, pageSize: 1, capacity: big)
            Issue.record("a 32 TiB pool was allocated")
        } catch {
            guard case let .invalidArgument(argument, reason) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(argument == "capacity" && reason.contains("could not be allocated"), "\(reason)")
        }
        // The control: a small cache is fine.
        #expect(throws: Never.self) {
            _ = try KVCache<Float>(keyValueHeads: 2, headDim: 8, pageSize: 4, capacity: 3)
        }
    }

    @Test("packed offsets with batch = Int.max")
    func offsetsOfHugeBatch() {
        let shape = AttentionShape(batch: .max, queryHeads: 1, queryLength: 4, headDim: 2)
        let options = AttentionOptions(querySequenceOffsets: [0, 4])
        #expect(throws: AttentionError.invalidExtent(argument: "shape.batch", value: .max)) {
            _ = try FlashAttention.forward(query: [], key: [], value: [], shape: shape, options: options)
        }
    }

    @Test("BlockMask with blockQuery = Int.max builds, validates and runs")
    func blockMaskOfIntMax() throws {
        let shape = AttentionShape(queryHeads: 1, queryLength: 5, headDim: 3)
        let mask = BlockMask(kept: [true], blockQuery: .max, blockKey: .max, shape: shape)
        let q = [Float](repeating: 0.25, count: shape.queryCount)
        let out = try FlashAttention.forward(query: q, key: q, value: q, shape: shape,
                                             options: AttentionOptions(blockMask: mask))
        #expect(out.allSatisfy { abs($0 - 0.25) < 1e-6 })
    }

    @Test("the C diagnostic keeps the caller's softcap and scale; a NULL buffer is a missing buffer")
    func diagnosticValues() {
        var p = fa_problem()
        fa_problem_init(&p)
        p.shape = fa_shape(batch: 1, q_heads: 1, kv_heads: 1, q_len: 1, kv_len: 1,
                           head_dim_qk: 1, head_dim_v: 1)
        var diag = fa_diagnostic()
        p.softcap = -2.5
        #expect(fa_check(&p, &diag) == FA_ERR_INVALID_SOFTCAP)
        #expect(Float(bitPattern: UInt32(truncatingIfNeeded: diag.values.0)) == -2.5)
        p.softcap = 0
        p.scale = -.infinity
        #expect(fa_check(&p, &diag) == FA_ERR_INVALID_SCALE)
        #expect(Float(bitPattern: UInt32(truncatingIfNeeded: diag.values.0)) == -.infinity)
        var elements: Int64 = 0
        var shape = p.shape
        #expect(fa_tensor_elements(&shape, FA_ARG_SCALE, fa_strides_bhld(1, 1, 1), &elements, &diag)
                == FA_ERR_INVALID_ARGUMENT)
        #expect(AttentionError.missingBuffer(argument: "query").description.contains("query"))
    }
}
