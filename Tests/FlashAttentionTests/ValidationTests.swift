import CFlashAttention
import FlashAttention
import Testing
import TestSupport

/// Runs `body` on fresh buffers for `shape` whose outputs start as a sentinel, and checks that
/// a refused call wrote nothing.
private func expectRefused(_ expected: AttentionError, shape: AttentionShape,
                           strides: AttentionTensorStrides? = nil,
                           options: AttentionOptions = AttentionOptions(),
                           counts: (q: Int, k: Int, v: Int, o: Int)? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    let c = counts ?? (max(shape.queryCount, 1), max(shape.keyCount, 1), max(shape.valueCount, 1),
                       max(shape.outputCount, 1))
    let q = [Float](repeating: 1, count: max(c.q, 0))
    let k = [Float](repeating: 1, count: max(c.k, 0))
    let v = [Float](repeating: 1, count: max(c.v, 0))
    var o = [Float](repeating: -7, count: max(c.o, 0))
    for implementation in [AttentionImplementation.flash, .naive] {
        var opts = options
        opts.implementation = implementation
        let error = #expect(throws: AttentionError.self, sourceLocation: sourceLocation) {
            try q.withUnsafeBufferPointer { q in
                try k.withUnsafeBufferPointer { k in
                    try v.withUnsafeBufferPointer { v in
                        try o.withUnsafeMutableBufferPointer { o in
                            try FlashAttention.forward(query: q, key: k, value: v, output: o,
                                                       shape: shape, strides: strides,
                                                       options: opts)
                        }
                    }
                }
            }
        }
        #expect(error == expected, "\(error.map { "\($0)" } ?? "no error")",
                sourceLocation: sourceLocation)
        #expect(o.allSatisfy { $0 == -7 }, "a refused call wrote output", sourceLocation: sourceLocation)
    }
}

@Suite("Bad input gives a typed error naming the argument")
struct ValidationTests {
    let shape = AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: 5,
                               keyLength: 6, headDim: 8, valueHeadDim: 3)

    @Test("zero, negative and too large extents")
    func extents() {
        let cases: [(WritableKeyPath<AttentionShape, Int>, String)] = [
            (\.batch, "shape.batch"), (\.queryHeads, "shape.queryHeads"),
            (\.keyValueHeads, "shape.keyValueHeads"), (\.queryLength, "shape.queryLength"),
            (\.keyLength, "shape.keyLength"), (\.headDim, "shape.headDim"),
            (\.valueHeadDim, "shape.valueHeadDim"),
        ]
        for (path, name) in cases {
            for value in [0, -3] {
                var s = shape
                s[keyPath: path] = value
                expectRefused(.invalidExtent(argument: name, value: value), shape: s,
                              strides: .packed(.bhld, shape: shape), counts: (1000, 1000, 1000, 1000))
            }
        }
        var huge = shape
        huge.queryLength = Int(Int32.max) + 1
        expectRefused(.invalidExtent(argument: "shape.queryLength", value: Int(Int32.max) + 1),
                      shape: huge, strides: .packed(.bhld, shape: shape),
                      counts: (1000, 1000, 1000, 1000))
    }

    @Test("query heads not a multiple of key/value heads")
    func headGrouping() {
        var s = shape
        s.keyValueHeads = 3
        expectRefused(.headCountMismatch(queryHeads: 4, keyValueHeads: 3), shape: s)
    }

    @Test("negative and overlapping strides")
    func strides() throws {
        var st = AttentionTensorStrides.packed(.bhld, shape: shape)
        st.key.head = -st.key.head
        let error = AttentionError.invalidStrides(
            argument: "key", strides: st.key,
            reason: "k: stride of dimension 1 is negative (-48)")
        expectRefused(error, shape: shape, strides: st)

        // Sequence stride smaller than the head dim it steps over: rows would overlap.
        st = .packed(.bhld, shape: shape)
        st.query.sequence = 7
        expectRefused(.invalidStrides(argument: "query", strides: st.query,
                                      reason: "q: stride 7 of dimension 2 is smaller than the 8 elements it steps over"),
                      shape: shape, strides: st)

        // Two heads sharing the same memory (head stride 0) in the output.
        st = .packed(.bhld, shape: shape)
        st.output.head = 0
        expectRefused(.invalidStrides(argument: "output", strides: st.output,
                                      reason: "o: stride 0 of dimension 1 is smaller than the 1 elements it steps over"),
                      shape: shape, strides: st)
    }

    @Test("buffers shorter than their shape and strides")
    func shortBuffers() {
        let full = (shape.queryCount, shape.keyCount, shape.valueCount, shape.outputCount)
        expectRefused(.bufferTooSmall(argument: "query", required: full.0, count: full.0 - 1),
                      shape: shape, counts: (full.0 - 1, full.1, full.2, full.3))
        expectRefused(.bufferTooSmall(argument: "key", required: full.1, count: 0),
                      shape: shape, counts: (full.0, 0, full.2, full.3))
        expectRefused(.bufferTooSmall(argument: "value", required: full.2, count: 5),
                      shape: shape, counts: (full.0, full.1, 5, full.3))
        expectRefused(.bufferTooSmall(argument: "output", required: full.3, count: full.3 - 1),
                      shape: shape, counts: (full.0, full.1, full.2, full.3 - 1))
    }

    @Test("arrays of the wrong length")
    func wrongCounts() {
        let q = [Float](repeating: 0, count: shape.queryCount)
        let k = [Float](repeating: 0, count: shape.keyCount + 1)
        let v = [Float](repeating: 0, count: shape.valueCount)
        #expect(throws: AttentionError.wrongCount(argument: "key", expected: shape.keyCount,
                                                  count: shape.keyCount + 1)) {
            try FlashAttention.forward(query: q, key: k, value: v, shape: shape)
        }
    }

    @Test("strides whose span overflows")
    func overflow() {
        var st = AttentionTensorStrides.packed(.bhld, shape: shape)
        st.value.batch = Int.max / 2
        expectRefused(.sizeOverflow(argument: "value"), shape: shape, strides: st)
    }

    @Test("infinite or NaN scale, and bad thread counts")
    func options() {
        for scale in [Float.infinity, -.infinity, .nan] {
            let error = #expect(throws: AttentionError.self) {
                try FlashAttention.forward(
                    query: [Float](repeating: 0, count: shape.queryCount),
                    key: [Float](repeating: 0, count: shape.keyCount),
                    value: [Float](repeating: 0, count: shape.valueCount), shape: shape,
                    options: AttentionOptions(scale: scale))
            }
            if case .invalidScale = error {} else { Issue.record("got \(String(describing: error))") }
        }
        for threads in [0, -1, Int(Int32.max) + 1] {
            expectRefused(.invalidThreadCount(threads), shape: shape,
                          options: AttentionOptions(threadCount: threads))
        }
    }

    @Test("outputs overlapping inputs or each other")
    func overlap() throws {
        let s = AttentionShape(queryHeads: 1, queryLength: 4, headDim: 4)  // 16 elements each
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0.5)
        let q = UnsafeBufferPointer(rebasing: buffer[0 ..< 16])
        let k = UnsafeBufferPointer(rebasing: buffer[16 ..< 32])
        let v = UnsafeBufferPointer(rebasing: buffer[32 ..< 48])
        func run(_ o: UnsafeMutableBufferPointer<Float>,
                 _ lse: UnsafeMutableBufferPointer<Float>? = nil) throws {
            try FlashAttention.forward(query: q, key: k, value: v, output: o, logSumExp: lse,
                                       shape: s)
        }
        #expect(throws: AttentionError.overlappingBuffers(argument: "output", other: "key")) {
            try run(UnsafeMutableBufferPointer(rebasing: buffer[20 ..< 36]))
        }
        #expect(throws: AttentionError.overlappingBuffers(argument: "output", other: "query")) {
            try run(UnsafeMutableBufferPointer(rebasing: buffer[0 ..< 16]))
        }
        #expect(throws: AttentionError.overlappingBuffers(argument: "logSumExp", other: "output")) {
            try run(UnsafeMutableBufferPointer(rebasing: buffer[48 ..< 64]),
                    UnsafeMutableBufferPointer(rebasing: buffer[60 ..< 64]))
        }
        #expect(throws: AttentionError.overlappingBuffers(argument: "logSumExp", other: "value")) {
            try run(UnsafeMutableBufferPointer(rebasing: buffer[48 ..< 64]),
                    UnsafeMutableBufferPointer(rebasing: buffer[44 ..< 48]))
        }
        #expect(buffer.allSatisfy { $0 == 0.5 })
        // Adjacent but disjoint is fine.
        try run(UnsafeMutableBufferPointer(rebasing: buffer[48 ..< 64]))
    }

    @Test("errors describe themselves")
    func descriptions() {
        let e = AttentionError.headCountMismatch(queryHeads: 8, keyValueHeads: 3)
        #expect(e.description == "shape.queryHeads (8) is not a multiple of shape.keyValueHeads (3)")
        #expect(AttentionError.invalidExtent(argument: "shape.batch", value: 0).description
            .contains("shape.batch is 0"))
    }
}

@Suite("The C API refuses bad descriptors with a status and a message")
struct CValidationTests {
    /// A valid 1×2×3×4 problem over static buffers.
    final class Buffers {
        var q = [Float](repeating: 0.25, count: 2 * 3 * 4)
        var k = [Float](repeating: 0.5, count: 2 * 3 * 4)
        var v = [Float](repeating: 1, count: 2 * 3 * 4)
        var o = [Float](repeating: 9, count: 2 * 3 * 4)

        func problem(_ edit: (inout fa_problem) -> Void) -> (fa_status, fa_diagnostic, fa_status) {
            q.withUnsafeBufferPointer { q in
                k.withUnsafeBufferPointer { k in
                    v.withUnsafeBufferPointer { v in
                        o.withUnsafeMutableBufferPointer { o in
                            var p = fa_problem()
                            fa_problem_init(&p)
                            p.shape = fa_shape(batch: 1, q_heads: 2, kv_heads: 2, q_len: 3,
                                               kv_len: 3, head_dim_qk: 4, head_dim_v: 4)
                            let st = fa_strides_bhld(2, 3, 4)
                            (p.q_strides, p.k_strides, p.v_strides, p.o_strides) = (st, st, st, st)
                            (p.q, p.k, p.v) = (UnsafeRawPointer(q.baseAddress),
                                               UnsafeRawPointer(k.baseAddress),
                                               UnsafeRawPointer(v.baseAddress))
                            p.o = UnsafeMutableRawPointer(o.baseAddress)
                            edit(&p)
                            var diag = fa_diagnostic()
                            let checked = fa_check(&p, &diag)
                            let flash = fa_forward(&p)
                            let naive = fa_naive_forward(&p)
                            #expect(flash == naive)
                            return (checked, diag, flash)
                        }
                    }
                }
            }
        }
    }

    @Test("a NULL descriptor")
    func nullDescriptor() {
        var diag = fa_diagnostic()
        #expect(fa_check(nil, &diag) == FA_ERR_NULL_POINTER)
        #expect(fa_forward(nil) == FA_ERR_NULL_POINTER)
        #expect(fa_naive_forward(nil) == FA_ERR_NULL_POINTER)
        var bytes = 0
        #expect(fa_workspace_bytes(nil, &bytes) == FA_ERR_NULL_POINTER)
    }

    @Test("each bad field gives its status, argument and a message naming it")
    func badFields() {
        let b = Buffers()
        // Packed-sequence offsets (batch 1: two values each), alive for the whole test.
        let offsets = UnsafeMutablePointer<Int32>.allocate(capacity: 8)
        defer { offsets.deallocate() }
        let lengths = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        defer { lengths.deallocate() }
        for (i, x) in [1, 3, 0, 4, 0, -1, 0, 2].enumerated() { offsets[i] = Int32(x) }
        lengths[0] = 2
        let cases: [(String, (inout fa_problem) -> Void, fa_status, fa_argument, String)] = [
            ("offsets not 0-based", { $0.cu_seqlens_q = UnsafePointer(offsets) }, FA_ERR_INVALID_OFFSETS,
             FA_ARG_CU_SEQLENS_Q, "cu_seqlens_q[0] is 1"),
            ("offsets past the extent", { $0.cu_seqlens_k = UnsafePointer(offsets + 2) },
             FA_ERR_INVALID_OFFSETS, FA_ARG_CU_SEQLENS_K, "cu_seqlens_k[1] is 4, past the extent 3"),
            ("offsets decreasing", { $0.cu_seqlens_q = UnsafePointer(offsets + 4) },
             FA_ERR_INVALID_OFFSETS, FA_ARG_CU_SEQLENS_Q, "cu_seqlens_q[1] is -1, below"),
            ("offsets and lengths", { p in
                p.cu_seqlens_k = UnsafePointer(offsets + 6)
                p.kv_lengths = UnsafePointer(lengths)
            }, FA_ERR_INVALID_OFFSETS, FA_ARG_CU_SEQLENS_K, "both given"),
            ("dtype 9", { $0.k_dtype = fa_dtype(rawValue: 9) }, FA_ERR_INVALID_DTYPE, FA_ARG_K,
             "k_dtype is 9"),
            ("q and o types differ", { $0.q_dtype = FA_DTYPE_BF16 }, FA_ERR_INVALID_DTYPE, FA_ARG_O,
             "o_dtype (0) differs from q_dtype (2)"),
            ("null q", { $0.q = nil }, FA_ERR_NULL_POINTER, FA_ARG_Q, "q is NULL"),
            ("null o", { $0.o = nil }, FA_ERR_NULL_POINTER, FA_ARG_O, "o is NULL"),
            ("zero heads", { $0.shape.q_heads = 0 }, FA_ERR_INVALID_EXTENT, FA_ARG_Q_HEADS,
             "shape.q_heads is 0"),
            ("grouping", { $0.shape.kv_heads = 3 }, FA_ERR_INVALID_EXTENT, FA_ARG_KV_HEADS, ""),
            ("causal 7", { $0.causal = fa_causal(rawValue: 7) }, FA_ERR_INVALID_CAUSAL,
             FA_ARG_CAUSAL, "causal is 7"),
            ("threads", { $0.num_threads = -2 }, FA_ERR_INVALID_THREADS, FA_ARG_NUM_THREADS,
             "num_threads is -2"),
            ("scale", { $0.scale = -.infinity }, FA_ERR_INVALID_SCALE, FA_ARG_SCALE, "-inf"),
            ("stride", { $0.v_strides.seq = 2 }, FA_ERR_INVALID_STRIDE, FA_ARG_V, "v: stride 2"),
            ("overlap", { $0.o = UnsafeMutableRawPointer(mutating: $0.q) }, FA_ERR_OVERLAP, FA_ARG_O,
             "o overlaps q"),
            ("overflow", { $0.k_strides.batch = Int64.max }, FA_ERR_INVALID_STRIDE, FA_ARG_K, ""),
            ("workspace", { p in
                p.workspace = UnsafeMutableRawPointer(mutating: p.q)
                p.workspace_bytes = 16
            }, FA_ERR_WORKSPACE_TOO_SMALL, FA_ARG_WORKSPACE, "workspace_bytes is 16"),
        ]
        for (label, edit, status, argument, text) in cases {
            b.o = [Float](repeating: 9, count: b.o.count)
            let (checked, diag, ran) = b.problem(edit)
            if label == "grouping" {
                // kv_heads 3 > q_heads 2: the extent is valid, the grouping is not.
                #expect(checked == FA_ERR_HEAD_GROUPING, "\(label)")
                #expect(ran == FA_ERR_HEAD_GROUPING, "\(label)")
                continue
            }
            if label == "overflow" {
                // batch has extent 1, so its stride is irrelevant: this one is valid.
                #expect(checked == FA_OK && ran == FA_OK, "\(label)")
                continue
            }
            #expect(checked == status, "\(label): \(checked)")
            #expect(ran == status, "\(label): fa_forward gave \(ran)")
            #expect(diag.argument == argument, "\(label)")
            let message = withUnsafeBytes(of: diag.message) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            #expect(message.contains(text), "\(label): \(message)")
            #expect(b.o.allSatisfy { $0 == 9 }, "\(label): a refused call wrote output")
        }
    }

    @Test("every status has its own message")
    func messages() {
        let statuses = (0 ... 23).map { fa_status(rawValue: UInt32($0)) }
        let messages = statuses.map { String(cString: fa_status_message($0)) }
        #expect(Set(messages).count == statuses.count)
        #expect(!messages.contains("unknown status"))
        #expect(String(cString: fa_status_message(fa_status(rawValue: 999))) == "unknown status")
    }

    @Test("a caller workspace gives the same bits as the internal one")
    func callerWorkspace() throws {
        let b = Buffers()
        b.q = (0 ..< 24).map { Float($0) / 7 }
        _ = b.problem { _ in }
        let ownWorkspace = b.o
        var bytes = 0
        var shapeOnly = fa_problem()
        fa_problem_init(&shapeOnly)
        shapeOnly.shape = fa_shape(batch: 1, q_heads: 2, kv_heads: 2, q_len: 3, kv_len: 3,
                                   head_dim_qk: 4, head_dim_v: 4)
        #expect(fa_workspace_bytes(&shapeOnly, &bytes) == FA_OK)
        let ws = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 1)
        defer { ws.deallocate() }
        b.o = [Float](repeating: 0, count: 24)
        let (checked, _, ran) = b.problem { p in
            p.workspace = ws + 1  // deliberately misaligned: the library aligns inside
            p.workspace_bytes = bytes - 1
        }
        #expect(checked == FA_ERR_WORKSPACE_TOO_SMALL && ran == FA_ERR_WORKSPACE_TOO_SMALL)
        let (checked2, _, ran2) = b.problem { p in
            p.workspace = ws
            p.workspace_bytes = bytes
        }
        #expect(checked2 == FA_OK && ran2 == FA_OK)
        #expect(b.o.map(\.bitPattern) == ownWorkspace.map(\.bitPattern))
    }
}
