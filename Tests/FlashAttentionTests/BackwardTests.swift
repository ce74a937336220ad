import CFlashAttention
import FlashAttention
import Testing
import TestSupport

/// The backward grid: odd shapes with GQA, MQA, Lq ≠ Lk, Dqk ≠ Dv, both causal alignments, a
/// custom scale, both layouts and magnitude-30 inputs. Smaller than the forward grid: the
/// float64 reference does about four times the forward's work.
let backwardGrid: [AttentionCase] = {
    let shapes: [(Int, Int, Int, Int, Int, Int, Int)] = [  // B, Hq, Hkv, Lq, Lk, Dqk, Dv
        (1, 1, 1, 1, 1, 1, 1), (2, 4, 4, 3, 17, 16, 16), (1, 8, 2, 17, 3, 40, 24),
        (1, 8, 1, 63, 65, 64, 64), (2, 2, 1, 65, 64, 3, 80), (1, 2, 2, 127, 129, 96, 96),
        (1, 4, 2, 129, 127, 128, 40), (1, 1, 1, 200, 200, 256, 256), (1, 2, 1, 1, 300, 80, 80),
        (1, 1, 1, 300, 100, 64, 128),
        // Head dim 256 with 1100 keys: the dK/dV accumulators span several key chunks (a chunk
        // fills the L2: 512 keys at 1 MiB), so dQ is summed across chunks.
        (1, 2, 1, 40, 1100, 256, 256),
    ]
    let causals: [CausalMask] = [.none, .bottomRight, .topLeft]
    var cases: [AttentionCase] = []
    for (n, s) in shapes.enumerated() {
        for (m, causal) in causals.enumerated() {
            let k = n * 3 + m
            cases.append(AttentionCase(
                shape: AttentionShape(batch: s.0, queryHeads: s.1, keyValueHeads: s.2,
                                      queryLength: s.3, keyLength: s.4, headDim: s.5,
                                      valueHeadDim: s.6),
                causal: causal, scale: k % 4 == 2 ? 0.3 : nil,
                layout: k % 2 == 0 ? .bhld : .blhd, magnitude: k % 5 == 3 ? 30 : 1,
                seed: UInt64(500 + k)))
        }
    }
    return cases
}()

/// Runs the backward of `c` with `options` on the library's own forward output and lse.
func libraryGradients(_ c: AttentionCase, _ options: AttentionOptions) throws -> AttentionGradients {
    let (q, k, v) = c.inputs()
    var forward = c.options
    forward.kernel = options.kernel
    let (out, lse) = try FlashAttention.forwardWithLogSumExp(
        query: q.data, key: k.data, value: v.data, shape: c.shape, options: forward)
    return try FlashAttention.backward(query: q.data, key: k.data, value: v.data, output: out,
                                       logSumExp: lse, outputGradient: c.outputGradient().data,
                                       shape: c.shape, options: options)
}

/// Checks `c`'s forward (output and log-sum-exp) and backward against the float64 reference,
/// for flash on every kernel ISA and for naive.
func expectForwardAndBackward(_ c: AttentionCase,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let forward = c.reference()
    let gradients = c.referenceGradients(forward: forward)
    let (q, k, v) = c.inputs()
    for (name, options) in implementationsUnderTest(c.options) {
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
        let f = compare(output: out, strides: c.strides.output, logSumExp: lse,
                        reference: forward, shape: c.shape)
        #expect(f.passed, "forward \(name) \(c): \(f)", sourceLocation: sourceLocation)
        let g = try libraryGradients(c, options)
        let b = compareGradients(g, layout: c.layout, reference: gradients, shape: c.shape)
        #expect(b.passed, "backward \(name) \(c): \(b)", sourceLocation: sourceLocation)
    }
}

@Suite("Backward against the float64 reference")
struct BackwardTests {
    @Test("flash on every kernel ISA, and naive", arguments: backwardGrid)
    func grid(_ c: AttentionCase) throws {
        let forward = c.reference()
        let reference = c.referenceGradients(forward: forward)
        for (name, options) in implementationsUnderTest(c.options) {
            let g = try libraryGradients(c, options)
            let result = compareGradients(g, layout: c.layout, reference: reference, shape: c.shape)
            #expect(result.passed, "\(name) \(c): \(result)")
            if verbose { print("grad \(name) \(c): \(result)") }
        }
    }

    @Test("the float64 reference agrees with central finite differences")
    func finiteDifferences() throws {
        // Inputs on a 2⁻⁸ grid, so x ± h (h = 2⁻⁸) is exact in float32 and the differences
        // carry only the O(h²) truncation error.
        for causal in [CausalMask.none, .bottomRight, .topLeft] {
            let shape = AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 3,
                                       keyLength: 5, headDim: 4, valueHeadDim: 3)
            var rng = SplitMix64(seed: 77)
            func grid(_ n: Int) -> [Float] { (0 ..< n).map { _ in Float(Int.random(in: -256 ... 256, using: &rng)) / 256 } }
            var q = grid(shape.queryCount), k = grid(shape.keyCount), v = grid(shape.valueCount)
            let w = grid(shape.outputCount)  // loss = Σ O ∘ W, so dO = W
            let st = AttentionTensorStrides.packed(.bhld, shape: shape)
            func tensors() -> (StridedTensor, StridedTensor, StridedTensor) {
                (StridedTensor(data: q, strides: st.query, extents: (1, 2, 3, 4)),
                 StridedTensor(data: k, strides: st.key, extents: (1, 1, 5, 4)),
                 StridedTensor(data: v, strides: st.value, extents: (1, 1, 5, 3)))
            }
            func loss() -> Double {
                let (tq, tk, tv) = tensors()
                let r = referenceAttention(query: tq, key: tk, value: tv, shape: shape, scale: 0.5,
                                           causal: causal)
                return zip(r.output, w).reduce(0) { $0 + $1.0 * Double($1.1) }
            }
            let (tq, tk, tv) = tensors()
            let fwd = referenceAttention(query: tq, key: tk, value: tv, shape: shape, scale: 0.5,
                                         causal: causal)
            let g = referenceBackward(query: tq, key: tk, value: tv,
                                      outputGradient: StridedTensor(data: w, strides: st.output, extents: (1, 2, 3, 3)),
                                      shape: shape, scale: 0.5, causal: causal, forward: fwd)
            let h: Float = 1.0 / 256
            var worst = 0.0
            func set(_ which: Int, _ idx: Int, _ value: Float) {
                switch which {
                case 0: q[idx] = value
                case 1: k[idx] = value
                default: v[idx] = value
                }
            }
            for (which, analytic) in [g.query, g.key, g.value].enumerated() {
                let original = which == 0 ? q : which == 1 ? k : v
                for idx in original.indices {
                    let x0 = original[idx]
                    set(which, idx, x0 + h); let up = loss()
                    set(which, idx, x0 - h); let down = loss()
                    set(which, idx, x0)
                    let numeric = (up - down) / Double(2 * h)
                    worst = max(worst, abs(numeric - analytic[idx]))
                }
            }
            // Truncation error of a central difference: h²/6 · |f'''| ≈ 1.5e-5 · O(1).
            #expect(worst < 2e-4, "\(causal): max |numeric − analytic| = \(worst)")
        }
    }

    @Test("gradients are bitwise identical for 1, 2, 3 and 5 threads, on every kernel ISA",
          arguments: FlashAttention.supportedKernels)
    func determinism(_ kernel: KernelISA) throws {
        // B·Hkv = 4 items, then MQA at batch 1 — one item, so 2 and 3 threads take the
        // two-phase split (dK/dV by key ranges, then dQ by query blocks) — with keys spanning
        // several L2 chunks at head dim 256, and causal.
        let cases = [
            AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                queryLength: 150, keyLength: 170, headDim: 40,
                                                valueHeadDim: 24),
                          causal: .bottomRight, seed: 31),
            AttentionCase(shape: AttentionShape(queryHeads: 3, keyValueHeads: 1, queryLength: 130,
                                                keyLength: 1100, headDim: 256, valueHeadDim: 256),
                          causal: .bottomRight, seed: 32),
            AttentionCase(shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 200,
                                                keyLength: 190, headDim: 16),
                          window: SlidingWindow(left: 50, right: 3), seed: 33),
        ]
        for c in cases {
            var bits: [[UInt32]] = []
            for threads in [1, 2, 3, 5] {
                var o = c.options
                o.kernel = kernel
                o.threadCount = threads
                let g = try libraryGradients(c, o)
                bits.append((g.query + g.key + g.value).map(\.bitPattern))
            }
            #expect(bits.allSatisfy { $0 == bits[0] }, "\(c)")
        }
    }

    @Test("rows that saw no key: dQ row 0, nothing added to dK and dV",
          arguments: [AttentionImplementation.flash, .naive])
    func maskedRows(_ implementation: AttentionImplementation) throws {
        // Lq = 100 > Lk = 30, bottom-right: rows 0 ..< 70 see nothing.
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 100, keyLength: 30,
                                                    headDim: 8), causal: .bottomRight, seed: 3)
        var o = c.options
        o.implementation = implementation
        let g = try libraryGradients(c, o)
        for h in 0 ..< 2 {
            for i in 0 ..< 70 {
                let row = (h * 100 + i) * 8
                #expect(g.query[row ..< row + 8].allSatisfy { $0 == 0 }, "row \(i)")
            }
        }
        #expect(compareGradients(g, layout: c.layout, reference: c.referenceGradients(),
                                 shape: c.shape).passed)
    }

    @Test("the training convenience matches forward then backward")
    func trainingStep() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 3, queryLength: 33, headDim: 16),
                              causal: .topLeft, seed: 12)
        let (q, k, v) = c.inputs()
        let step = try FlashAttention.forwardForTraining(query: q.data, key: k.data, value: v.data,
                                                         shape: c.shape, options: c.options)
        let g1 = try step.backward(outputGradient: c.outputGradient().data)
        let g2 = try libraryGradients(c, c.options)
        #expect(g1.query.map(\.bitPattern) == g2.query.map(\.bitPattern))
        #expect(g1.key.map(\.bitPattern) == g2.key.map(\.bitPattern))
        #expect(g1.value.map(\.bitPattern) == g2.value.map(\.bitPattern))
    }

    @Test("a wrong gradient fails the comparison")
    func sensitivity() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 40,
                                                    keyLength: 50, headDim: 16), seed: 8)
        var g = try libraryGradients(c, c.options)
        let reference = c.referenceGradients()
        #expect(compareGradients(g, layout: c.layout, reference: reference, shape: c.shape).passed)
        g.key[7] += 1e-4
        #expect(!compareGradients(g, layout: c.layout, reference: reference, shape: c.shape).passed)
        // Forgetting the sum over a group's heads (dK of one head only) fails too.
        var oneHead = c.options
        oneHead.scale = 0.25 * 1.001
        let wrongScale = try libraryGradients(c, oneHead)
        #expect(!compareGradients(wrongScale, layout: c.layout, reference: reference,
                                  shape: c.shape).passed)
    }

    @Test("bad input: missing log-sum-exp, wrong lengths, overlapping outputs")
    func badInput() throws {
        let shape = AttentionShape(queryHeads: 2, queryLength: 4, headDim: 4)
        let q = [Float](repeating: 0.1, count: shape.queryCount)
        let lse = [Float](repeating: 0, count: shape.logSumExpCount)
        #expect(throws: AttentionError.missingLogSumExp) {
            try FlashAttention.backward(query: q, key: q, value: q, output: q, logSumExp: [],
                                        outputGradient: q, shape: shape)
        }
        #expect(throws: AttentionError.wrongCount(argument: "outputGradient", expected: 32, count: 31)) {
            try FlashAttention.backward(query: q, key: q, value: q, output: q, logSumExp: lse,
                                        outputGradient: Array(q.dropLast()), shape: shape)
        }
        // dQ on top of the query buffer.
        var buffer = [Float](repeating: 0.1, count: 32 * 8)
        let error = #expect(throws: AttentionError.self) {
            try buffer.withUnsafeMutableBufferPointer { all in
                let p = UnsafeBufferPointer(all)
                func part(_ i: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(rebasing: p[(32 * i) ..< (32 * i + 32)]) }
                try FlashAttention.backward(
                    query: part(0), key: part(1), value: part(2), output: part(3),
                    logSumExp: UnsafeBufferPointer(rebasing: p[128 ..< 136]), outputGradient: part(5),
                    queryGradient: UnsafeMutableBufferPointer(rebasing: all[0 ..< 32]),
                    keyGradient: UnsafeMutableBufferPointer(rebasing: all[192 ..< 224]),
                    valueGradient: UnsafeMutableBufferPointer(rebasing: all[224 ..< 256]),
                    shape: shape)
            }
        }
        #expect(error == .overlappingBuffers(argument: "queryGradient", other: "query"))
        // C: a NULL dout names the argument.
        var p = fa_problem()
        fa_problem_init(&p)
        p.shape = shape.cShapeForTests
        var diag = fa_diagnostic()
        q.withUnsafeBufferPointer { qb in
            var dq = [Float](repeating: 0, count: 32)
            dq.withUnsafeMutableBufferPointer { d in
                let s = fa_strides_bhld(2, 4, 4)
                let raw = UnsafeRawPointer(qb.baseAddress)
                (p.q, p.k, p.v) = (raw, raw, raw)
                (p.q_strides, p.k_strides, p.v_strides, p.o_strides) = (s, s, s, s)
                p.o = UnsafeMutableRawPointer(mutating: raw)
                p.lse = UnsafeMutablePointer(mutating: qb.baseAddress)
                p.lse_strides = fa_strides(batch: 8, head: 4, seq: 1)
                p.dq = UnsafeMutableRawPointer(d.baseAddress)
                #expect(fa_check_backward(&p, &diag) == FA_ERR_NULL_POINTER)
                #expect(diag.argument == FA_ARG_DOUT)
                #expect(fa_backward(&p) == FA_ERR_NULL_POINTER)
            }
        }
    }

    @Test("workspace never grows with Lq, and stops growing with Lk at one key chunk")
    func workspace() throws {
        func bytes(_ lq: Int, _ lk: Int) throws -> Int {
            try FlashAttention.backwardWorkspaceBytes(
                shape: AttentionShape(queryHeads: 8, queryLength: lq, keyLength: lk, headDim: 64),
                options: AttentionOptions(threadCount: 2))
        }
        #expect(try bytes(1024, 1024) == bytes(65_536, 1024))
        #expect(try bytes(64, 64) <= bytes(1024, 1024))
        let capped = try bytes(1024, 65_536)
        #expect(try bytes(1024, 1_000_000) == capped)
        // Per thread at most a generous 4 MiB L2 plus one query block's tiles.
        #expect(capped < 2 * ((4 << 20) + (1 << 20)))
        #expect(try bytes(8192, 8192) < 20 << 20)  // vs 256 MB for one 8192² score matrix
    }
}

extension AttentionShape {
    var cShapeForTests: fa_shape {
        fa_shape(batch: Int64(batch), q_heads: Int64(queryHeads), kv_heads: Int64(keyValueHeads),
                 q_len: Int64(queryLength), kv_len: Int64(keyLength), head_dim_qk: Int64(headDim),
                 head_dim_v: Int64(valueHeadDim))
    }
}
