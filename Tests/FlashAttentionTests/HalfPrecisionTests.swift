import CFlashAttention
import FlashAttention
import Testing
import TestSupport

// Half-precision storage (fp16, bf16) with fp32 arithmetic. Inputs are rounded to the storage
// type first; the float64 reference is evaluated on those rounded values, which the kernels
// see exactly (widening a half to fp32 is exact). So the fp32 tolerance of the reference
// (Tests/TestSupport/ReferenceAttention.swift) holds unchanged for the log-sum-exp and for an
// fp32 output. A half output is the fp32 result x rounded once, to nearest even:
//   |round(x) − ref| ≤ |round(x) − x| + |x − ref| ≤ u_h·(|ref| + tol) + tol (+ half a
// subnormal step for fp16), u_h the type's unit roundoff: 2⁻⁸ (bf16, 8 significant bits) or
// 2⁻¹¹ (fp16, 11 bits) — half a unit in the last place, relative to the value.
// The same tolerances would fail an fp16 accumulator (llama.cpp's CPU decode: 1 % at 1k keys)
// or a reference on the unrounded inputs (checked below: the test can fail).

/// A storage type under test, with its conversions from and to Float.
protocol HalfTestElement: AttentionElement {
    init(rounding x: Float)
    var float: Float { get }
    /// The unit roundoff (half a unit in the last place, relative); half the subnormal spacing.
    static var unitRoundoff: Double { get }
    static var halfSubnormal: Double { get }
}

extension Float: HalfTestElement {
    init(rounding x: Float) { self = x }
    var float: Float { self }
    static var unitRoundoff: Double { 0 }  // no rounding of an fp32 output
    static var halfSubnormal: Double { 0 }
}

extension Float16: HalfTestElement {
    init(rounding x: Float) { self.init(x) }  // Swift's conversion: to nearest even
    var float: Float { Float(self) }
    static var unitRoundoff: Double { 0x1p-11 }
    static var halfSubnormal: Double { 0x1p-25 }
}

extension BFloat16: HalfTestElement {
    init(rounding x: Float) { self.init(x) }
    var float: Float { floatValue }
    static var unitRoundoff: Double { 0x1p-8 }
    static var halfSubnormal: Double { 0x1p-134 }
}

/// A case's inputs rounded to Q's and K/V's storage types: the stored arrays, and the same
/// values as Float tensors for the reference.
func roundedInputs<Q: HalfTestElement, KV: HalfTestElement>(
    _ c: AttentionCase, _: Q.Type, _: KV.Type
) -> (q: [Q], k: [KV], v: [KV], exact: (query: StridedTensor, key: StridedTensor, value: StridedTensor)) {
    var (q, k, v) = c.inputs()
    let qs = q.data.map { Q(rounding: $0) }, ks = k.data.map { KV(rounding: $0) }
    let vs = v.data.map { KV(rounding: $0) }
    q.data = qs.map(\.float)
    k.data = ks.map(\.float)
    v.data = vs.map(\.float)
    return (qs, ks, vs, (q, k, v))
}

/// Compares an output stored as O (converted to Float) with the reference: the reference's
/// fp32 tolerance, widened by O's one final rounding (see the top of the file).
func compareHalf<O: HalfTestElement>(_ out: [O], _ lse: [Float], _ c: AttentionCase,
                                     _ ref: ReferenceResult, extra: Double = 0) -> Comparison {
    let floats = out.map(\.float)
    var widened = ref
    for row in 0 ..< ref.outputTolerance.count {
        let dv = c.shape.valueHeadDim
        let rowMax = (0 ..< dv).reduce(0.0) { max($0, abs(ref.output[row * dv + $1])) }
        let t = ref.outputTolerance[row]
        widened.outputTolerance[row] = t + O.unitRoundoff * (rowMax + t) + O.halfSubnormal + extra
    }
    return compare(output: floats, strides: c.strides.output, logSumExp: lse, reference: widened,
                   shape: c.shape)
}

/// Runs one case with Q/O in Q and K/V in KV on every ISA against the float64 reference on
/// the rounded inputs.
func checkHalf<Q: HalfTestElement, KV: HalfTestElement>(
    _ c: AttentionCase, _ qt: Q.Type, _ kvt: KV.Type, split: Int? = nil
) throws {
    let (q, k, v, exact) = roundedInputs(c, qt, kvt)
    let ref = c.reference(inputs: exact)
    for kernel in FlashAttention.supportedKernels {
        var options = c.options
        options.kernel = kernel
        if let split { options.keySplitSize = split }
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
                                                                 shape: c.shape, options: options)
        // BF16 dot products (Q, K, V all bf16) round each probability to bf16 for P·V:
        // |Σ_j (p̂_j − p_j)·v_j| / Σ_j p_j ≤ 2⁻⁸ · max|v| (p̂ = bf16(p), |p̂ − p| ≤ 2⁻⁸·p).
        let bf16Dots = [.avx512bf16, .avx512amx, .neonbf16].contains(kernel) && Q.self == BFloat16.self
            && KV.self == BFloat16.self
        let vmax = exact.value.data.reduce(0) { max($0, abs(Double($1))) }
        let result = compareHalf(out, lse, c, ref, extra: bf16Dots ? 0x1p-8 * vmax : 0)
        #expect(result.passed, "\(kernel) Q \(Q.attentionElementType) K/V \(KV.attentionElementType) \(c): \(result)")
        if verbose { print("half \(kernel) \(Q.attentionElementType)/\(KV.attentionElementType) \(c): \(result)") }
    }
}

/// The type pairs: Q and O in the first, K and V in the second.
enum HalfPair: String, CaseIterable, Sendable {
    case f32_bf16, f32_f16, bf16_bf16, f16_f16, bf16_f16

    func check(_ c: AttentionCase, split: Int? = nil) throws {
        switch self {
        case .f32_bf16: try checkHalf(c, Float.self, BFloat16.self, split: split)
        case .f32_f16: try checkHalf(c, Float.self, Float16.self, split: split)
        case .bf16_bf16: try checkHalf(c, BFloat16.self, BFloat16.self, split: split)
        case .f16_f16: try checkHalf(c, Float16.self, Float16.self, split: split)
        case .bf16_f16: try checkHalf(c, BFloat16.self, Float16.self, split: split)
        }
    }
}

@Suite("Half precision: fp16 and bf16 storage, fp32 arithmetic")
struct HalfPrecisionTests {
    @Test("prefill grid: odd lengths, head dims 1–256, GQA, causal alignments, every ISA",
          arguments: HalfPair.allCases)
    func prefill(_ pair: HalfPair) throws {
        // Every tenth case of the fp32 grid (13 length pairs × 3 causal modes × 2), shifted per
        // type pair so the pairs see different cases (half the grid over the five pairs).
        let offset = HalfPair.allCases.firstIndex(of: pair)!
        for (n, c) in forwardGrid.enumerated() where n % 10 == 2 * offset {
            try pair.check(c)
        }
    }

    @Test("decoding shapes with split-KV, every ISA", arguments: HalfPair.allCases)
    func decode(_ pair: HalfPair) throws {
        let offset = HalfPair.allCases.firstIndex(of: pair)!
        for (n, d) in decodeGrid.enumerated() where n % 5 == offset {  // the grid over the pairs
            try pair.check(d.c, split: d.split)
        }
    }

    @Test("every modifier (window, ALiBi, softcap, masks, lengths) on half K/V, every ISA",
          arguments: [HalfPair.f32_bf16, .f16_f16])
    func modifiers(_ pair: HalfPair) throws {
        for d in decodeModifierGrid where d.split == 7 { try pair.check(d.c, split: d.split) }
        let s = AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: 130,
                               keyLength: 200, headDim: 40)
        try pair.check(AttentionCase(shape: s, causal: .bottomRight,
                                     window: SlidingWindow(left: 30, right: 0), softcap: 5,
                                     alibiSlopes: alibiSlopes(4), keyLengths: [200, 77],
                                     layout: .blhd, magnitude: 3, seed: 5))
    }

    @Test("the tolerance can fail: the reference on unrounded inputs is refused for bf16 K/V")
    func negativeControl() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 3,
                                                    keyLength: 500, headDim: 64), seed: 9)
        let (q, k, v, _) = roundedInputs(c, Float.self, BFloat16.self)
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
                                                                 shape: c.shape, options: c.options)
        #expect(!compareHalf(out, lse, c, c.reference()).passed)
    }

    @Test("bitwise independent of the thread count, prefill and decode, every ISA",
          arguments: FlashAttention.supportedKernels)
    func threads(_ kernel: KernelISA) throws {
        try Self.checkThreads(kernel, Float16.self)   // widened fp32 arithmetic
        try Self.checkThreads(kernel, BFloat16.self)  // all bf16: the dot products where the ISA has them
    }

    static func checkThreads<KV: HalfTestElement>(_ kernel: KernelISA, _ kvt: KV.Type) throws {
        for (lq, split) in [(150, Int?.none), (2, 0), (3, 100)] {
            let c = AttentionCase(shape: AttentionShape(queryHeads: 8, keyValueHeads: 2,
                                                        queryLength: lq, keyLength: 1500,
                                                        headDim: 72),
                                  causal: .bottomRight, alibiSlopes: alibiSlopes(8), seed: 77)
            let (q, k, v, _) = roundedInputs(c, BFloat16.self, kvt)
            var bits: [[UInt16]] = []
            var lses: [[UInt32]] = []
            for threads in [1, 2, 3] {
                var o = c.options
                o.kernel = kernel
                o.threadCount = threads
                if let split { o.keySplitSize = split }
                let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
                                                                         shape: c.shape, options: o)
                bits.append(out.map(\.bitPattern))
                lses.append(lse.map(\.bitPattern))
            }
            #expect(bits[0] == bits[1] && bits[0] == bits[2], "Lq \(lq) K/V \(KV.attentionElementType)")
            #expect(lses[0] == lses[1] && lses[0] == lses[2], "Lq \(lq) K/V \(KV.attentionElementType)")
        }
    }

    @Test("128k keys of fp16 K/V with a constant V: the output is V to fp32 accuracy, no drift")
    func longConstantValue() throws {
        // An fp16 accumulator stops growing once its sum reaches 2048 ulps; ours is fp32 with
        // per-block rescaling. Every query sees 131,072 keys; V is one constant row.
        let lk = 131_072, d = 128
        let shape = AttentionShape(queryHeads: 4, keyValueHeads: 1, queryLength: 1,
                                   keyLength: lk, headDim: d)
        var rng = SplitMix64(seed: 3)
        let q = randomFloats(shape.queryCount, magnitude: 1, using: &rng)
        let k = randomFloats(shape.keyCount, magnitude: 1, using: &rng).map { Float16($0) }
        let row = randomFloats(d, magnitude: 1, using: &rng).map { Float16($0) }
        let v = (0 ..< lk).flatMap { _ in row }
        for kernel in FlashAttention.supportedKernels {
            for split in [Int.max, 0] {
                var o = AttentionOptions(kernel: kernel)
                o.keySplitSize = split
                let out = try FlashAttention.forward(query: q, key: k, value: v, shape: shape, options: o)
                let maxV = row.reduce(0) { max($0, abs(Double(Float($1)))) }
                var err = 0.0
                for h in 0 ..< 4 {
                    for c in 0 ..< d { err = max(err, abs(Double(out[h * d + c]) - Double(Float(row[c])))) }
                }
                // Σ_j p_j·v / Σ_j p_j with every p_j·v in fp32: a few ulps of |v| (1e-5
                // relative is the bound for any context length).
                #expect(err / maxV <= 1e-5, "\(kernel) split \(split): \(err / maxV)")
            }
        }
    }

    @Test("fp16 K/V at a 128k context: error ≤ 1e-5 of max|O| against the float64 reference")
    func longContextAccuracy() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 1, queryLength: 1,
                                                    keyLength: 131_072, headDim: 128), seed: 12)
        let (q, k, v, exact) = roundedInputs(c, Float.self, Float16.self)
        let ref = c.reference(inputs: exact)
        let refMax = ref.output.reduce(0) { max($0, abs($1)) }
        for kernel in FlashAttention.supportedKernels {
            let out = try FlashAttention.forward(query: q, key: k, value: v, shape: c.shape,
                                                 options: AttentionOptions(kernel: kernel))
            var err = 0.0
            for (i, x) in out.enumerated() { err = max(err, abs(Double(x) - ref.output[i])) }
            #expect(err / refMax <= 1e-5, "\(kernel): \(err / refMax)")
        }
    }

    @Test("extreme values: fp16 inputs at ±65504 and logits far beyond the half range stay finite")
    func extremes() throws {
        let shape = AttentionShape(queryHeads: 2, queryLength: 5, keyLength: 300, headDim: 64)
        var rng = SplitMix64(seed: 4)
        let signs = (0 ..< 3).map { _ in
            randomFloats(shape.queryCount * 60, magnitude: 1, using: &rng).map { Float16($0 < 0 ? -65504 : 65504) }
        }
        let q = Array(signs[0][0 ..< shape.queryCount])
        let k = Array(signs[1][0 ..< shape.keyCount]), v = Array(signs[2][0 ..< shape.valueCount])
        for kernel in FlashAttention.supportedKernels {
            // Scores ≈ 65504² · 64 / 8 ≈ 3e10: far past fp16, fine in fp32.
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q, key: k, value: v, shape: shape, options: AttentionOptions(kernel: kernel))
            let finite = out.allSatisfy { $0.isFinite && abs(Float($0)) <= 65504 }
            let finiteLSE = lse.allSatisfy { $0.isFinite }
            #expect(finite, "\(kernel)")
            #expect(finiteLSE, "\(kernel)")
        }
    }

    @Test("C refuses unknown element types and a q/o type mismatch, forward and backward")
    func refusals() throws {
        var p = fa_problem()
        fa_problem_init(&p)
        p.shape = fa_shape(batch: 1, q_heads: 1, kv_heads: 1, q_len: 2, kv_len: 2,
                           head_dim_qk: 4, head_dim_v: 4)
        p.o_dtype = FA_DTYPE_BF16
        var diag = fa_diagnostic()
        #expect(fa_check_backward(&p, &diag) == FA_ERR_INVALID_DTYPE)
        #expect(diag.argument == FA_ARG_O)
        p.o_dtype = FA_DTYPE_F32
        p.k_dtype = fa_dtype(rawValue: 3)
        #expect(fa_check(&p, &diag) == FA_ERR_INVALID_DTYPE)
        #expect(fa_check_backward(&p, &diag) == FA_ERR_INVALID_DTYPE)
        #expect(diag.argument == FA_ARG_K)
    }
}

/// The backward over arrays of any element types (the buffer entry point, with fresh gradients).
func halfBackward<Q: HalfTestElement, KV: HalfTestElement>(
    query q: [Q], key k: [KV], value v: [KV], output out: [Q], logSumExp lse: [Float],
    outputGradient dO: [Q], shape: AttentionShape, options: AttentionOptions
) throws -> (dq: [Q], dk: [KV], dv: [KV]) {
    var dq = [Q](repeating: Q(rounding: 0), count: q.count)
    var dk = [KV](repeating: KV(rounding: 0), count: k.count)
    var dv = [KV](repeating: KV(rounding: 0), count: v.count)
    try q.withUnsafeBufferPointer { qp in
    try k.withUnsafeBufferPointer { kp in
    try v.withUnsafeBufferPointer { vp in
    try out.withUnsafeBufferPointer { op in
    try lse.withUnsafeBufferPointer { lp in
    try dO.withUnsafeBufferPointer { gp in
    try dq.withUnsafeMutableBufferPointer { dqp in
    try dk.withUnsafeMutableBufferPointer { dkp in
    try dv.withUnsafeMutableBufferPointer { dvp in
        try FlashAttention.backward(query: qp, key: kp, value: vp, output: op, logSumExp: lp,
                                    outputGradient: gp, queryGradient: dqp, keyGradient: dkp,
                                    valueGradient: dvp, shape: shape, options: options)
    } } } } } } } } }
    return (dq, dk, dv)
}

// The backward with half tensors. The backward is fed O as the forward stored it (rounded to
// Q's type) and dO rounded to that type, so the float64 reference is evaluated on exactly
// those: the rounded Q, K, V, dO, and the stored O in D = rowsum(dO ∘ O) (its tolerance then
// has no forward error to carry: outputTolerance 0). Arithmetic is fp32 throughout, so the
// reference's fp32 bounds hold; each gradient is then rounded once into its type, which adds
// its unit roundoff times (|ref| + tol), as for the forward's output. With Q, K, V all bf16 on
// the bf16 dot-product kernels, P and dS are also rounded to bf16 before the products that
// form dV, dK and dQ: 2⁻⁸ (bf16's unit roundoff) times each gradient's sum of absolute
// products more (the reference's productRounding).
/// `productRounding` overrides the reference's (nil: 2⁻⁸ on the bf16 dot-product path, else 0);
/// with `expectPass` false the comparisons are only returned.
@discardableResult
func checkHalfBackward<Q: HalfTestElement, KV: HalfTestElement>(
    _ c: AttentionCase, _ qt: Q.Type, _ kvt: KV.Type, kernels: [KernelISA] = FlashAttention.supportedKernels,
    implementation: AttentionImplementation = .flash, productRounding: Double? = nil,
    expectPass: Bool = true
) throws -> [Comparison] {
    precondition(c.layout == .bhld, "the reference's dense outputs are bhld")
    let (q, k, v, exact) = roundedInputs(c, qt, kvt)
    var dO = c.outputGradient()
    let dOs = dO.data.map { Q(rounding: $0) }
    dO.data = dOs.map(\.float)
    let s = c.shape
    var results: [Comparison] = []
    for kernel in kernels {
        var options = c.options
        options.kernel = kernel
        options.implementation = implementation
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
                                                                 shape: s, options: options)
        let (dq, dk, dv) = try halfBackward(query: q, key: k, value: v, output: out, logSumExp: lse,
                                            outputGradient: dOs, shape: s, options: options)
        var forward = c.reference(inputs: exact)
        forward.output = out.map { Double($0.float) }
        forward.outputTolerance = forward.outputTolerance.map { _ in 0 }
        let bf16Dots = implementation == .flash && [.avx512bf16, .avx512amx, .neonbf16].contains(kernel)
            && Q.self == BFloat16.self
            && KV.self == BFloat16.self
        var ref = c.referenceGradients(inputs: exact, outputGradient: dO, forward: forward,
                                       productRounding: productRounding ?? (bf16Dots ? 0x1p-8 : 0))
        func widen(_ tol: [Double], _ want: [Double], _ u: Double, _ sub: Double) -> [Double] {
            zip(tol, want).map { t, w in t + u * (abs(w) + t) + sub }
        }
        ref.queryTolerance = widen(ref.queryTolerance, ref.query, Q.unitRoundoff, Q.halfSubnormal)
        ref.keyTolerance = widen(ref.keyTolerance, ref.key, KV.unitRoundoff, KV.halfSubnormal)
        ref.valueTolerance = widen(ref.valueTolerance, ref.value, KV.unitRoundoff, KV.halfSubnormal)
        let got = AttentionGradients(query: dq.map(\.float), key: dk.map(\.float), value: dv.map(\.float))
        let result = compareGradients(got, layout: c.layout, reference: ref, shape: s)
        if expectPass {
            #expect(result.passed, "\(implementation) \(kernel) Q \(Q.attentionElementType) K/V \(KV.attentionElementType) \(c): \(result)")
        }
        if verbose { print("half backward \(kernel) \(Q.attentionElementType)/\(KV.attentionElementType) \(c): \(result)") }
        results.append(result)
    }
    return results
}

extension HalfPair {
    func checkBackward(_ c: AttentionCase, kernels: [KernelISA] = FlashAttention.supportedKernels,
                       implementation: AttentionImplementation = .flash) throws {
        let (k, i) = (kernels, implementation)
        switch self {
        case .f32_bf16: try checkHalfBackward(c, Float.self, BFloat16.self, kernels: k, implementation: i)
        case .f32_f16: try checkHalfBackward(c, Float.self, Float16.self, kernels: k, implementation: i)
        case .bf16_bf16: try checkHalfBackward(c, BFloat16.self, BFloat16.self, kernels: k, implementation: i)
        case .f16_f16: try checkHalfBackward(c, Float16.self, Float16.self, kernels: k, implementation: i)
        case .bf16_f16: try checkHalfBackward(c, BFloat16.self, Float16.self, kernels: k, implementation: i)
        }
    }
}

@Suite("Half precision: the backward")
struct HalfBackwardTests {
    static let cases: [AttentionCase] = [
        AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 65,
                                            keyLength: 127, headDim: 64), causal: .bottomRight, seed: 1),
        AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 2, queryLength: 129, keyLength: 63,
                                            headDim: 17), causal: .topLeft, seed: 2),
        AttentionCase(shape: AttentionShape(queryHeads: 8, keyValueHeads: 1, queryLength: 3,
                                            keyLength: 1000, headDim: 128), causal: .bottomRight, seed: 3),
        AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 100, keyLength: 130, headDim: 40,
                                            valueHeadDim: 24),
                      window: SlidingWindow(left: 30, right: 5), softcap: 5, alibiSlopes: alibiSlopes(2),
                      seed: 4),
        AttentionCase(shape: AttentionShape(queryHeads: 1, queryLength: 1000, keyLength: 1000, headDim: 1),
                      seed: 5),
        AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 2, queryLength: 70, keyLength: 90,
                                            headDim: 256), causal: .bottomRight,
                      queryLengths: [70, 33], keyLengths: [90, 41], seed: 6),
    ]

    @Test("against the float64 reference on the rounded tensors, every ISA", arguments: HalfPair.allCases)
    func grid(_ pair: HalfPair) throws {
        // Half the cases per type pair, alternating, so every case meets several pairs.
        let offset = HalfPair.allCases.firstIndex(of: pair)!
        for (n, c) in Self.cases.enumerated() where (n + offset) % 2 == 0 { try pair.checkBackward(c) }
        // The naive baseline (every tensor widened, the fp32 backward, gradients rounded).
        try pair.checkBackward(Self.cases[offset % 2], kernels: [.automatic], implementation: .naive)
    }

    @Test("the bf16 dot-product backward rounds P and dS to bf16: the fp32 bound alone fails it, and holds for the widened path")
    func productRoundingControl() throws {
        guard FlashAttention.supportedKernels.contains(.avx512bf16) else {
            print("skipped: this CPU has no AVX512-BF16, so there is no bf16 dot-product backward to check")
            return
        }
        // Measured: 22× and 100× the fp32 bound on these two cases (0.93 and 0.98 widened; with
        // the 2⁻⁸ term the dot path is at 0.68 and below). So the grid's bf16 cases run the dot
        // products, and the term is what lets them pass.
        for c in Self.cases.prefix(2) {
            let dots = try checkHalfBackward(c, BFloat16.self, BFloat16.self, kernels: [.avx512bf16],
                                             productRounding: 0, expectPass: false)
            let widened = try checkHalfBackward(c, BFloat16.self, BFloat16.self, kernels: [.avx512],
                                                productRounding: 0, expectPass: false)
            #expect(dots[0].worstRatio > 2, "\(c): \(dots[0])")
            #expect(widened[0].passed, "\(c): \(widened[0])")
        }
    }

    // Where the CPU has AMX-BF16 and Linux grants the tile state, every suite that runs "every
    // ISA" takes .avx512amx in (the forward grid, decoding, modifiers, this backward grid, the
    // thread-count checks); this one names it, so that a run without it says so.
    @Test("AMX tiles (.avx512amx): the all-bf16 forward and backward against the float64 reference",
          .enabled(if: FlashAttention.supportedKernels.contains(.avx512amx),
                   "this CPU has no AMX-BF16 tiles (or Linux refused the tile state): make test-amx-emulated runs the AMX kernels on emulated tiles instead"))
    func amxTiles() throws {
        for c in Self.cases { try checkHalfBackward(c, BFloat16.self, BFloat16.self, kernels: [.avx512amx]) }
    }

    @Test("bitwise independent of the thread count (one pass and the two-phase split)",
          arguments: FlashAttention.supportedKernels)
    func threads(_ kernel: KernelISA) throws {
        try Self.checkThreads(kernel, Float16.self)   // fp32 arithmetic on widened tiles
        try Self.checkThreads(kernel, BFloat16.self)  // all bf16: the bf16 dot products where the ISA has them
    }

    static func checkThreads<KV: HalfTestElement>(_ kernel: KernelISA, _ kvt: KV.Type) throws {
        for hkv in [4, 1] {  // 4 kv heads: one-phase items; 1: fewer items than threads, split
            let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: hkv, queryLength: 150,
                                                        keyLength: 2100, headDim: 48),
                                  causal: .bottomRight, seed: 8)
            let (q, k, v, _) = roundedInputs(c, BFloat16.self, kvt)
            let dO = c.outputGradient().data.map { BFloat16($0) }
            var results: [[UInt32]] = []  // the widened gradients' bits (widening is exact)
            for threads in [1, 2, 3] {
                var o = c.options
                o.kernel = kernel
                o.threadCount = threads
                let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
                                                                         shape: c.shape, options: o)
                let (dq, dk, dv) = try halfBackward(query: q, key: k, value: v, output: out,
                                                    logSumExp: lse, outputGradient: dO,
                                                    shape: c.shape, options: o)
                results.append((dq.map(\.float) + dk.map(\.float) + dv.map(\.float)).map(\.bitPattern))
            }
            #expect(results[0] == results[1] && results[0] == results[2], "Hkv \(hkv) K/V \(KV.attentionElementType)")
        }
    }
}
