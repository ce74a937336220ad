import FlashAttention
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport

// Flash and naive, both against the float64 reference (Tests/TestSupport/ReferenceAttention.swift
// states the tolerance and why), on shapes that are not multiples of the 64-row tiles or of any
// vector width.

/// The grid: every (Lq, Lk) pair × every causal mode, cycling through head dims, head groupings,
/// batch sizes, layouts, scales and magnitudes with co-prime periods, so each value meets many
/// others without the full product (which would take hours in float64).
let forwardGrid: [AttentionCase] = {
    let lengths: [(Int, Int)] = [
        (1, 1), (3, 17), (17, 3), (63, 64), (64, 63), (65, 65), (127, 129), (129, 127),
        (1, 1000), (1000, 1), (17, 1000), (1000, 65), (1000, 1000),
    ]
    let dims: [(Int, Int)] = [
        (1, 1), (3, 3), (16, 16), (40, 40), (64, 64), (80, 80), (96, 96), (128, 128),
        (256, 256), (64, 40), (3, 16), (256, 80), (40, 128),
    ]
    let heads: [(Int, Int)] = [(1, 1), (4, 4), (8, 2), (8, 1)]
    let causals: [CausalMask] = [.none, .bottomRight, .topLeft]
    var cases: [AttentionCase] = []
    var n = 0
    for (lq, lk) in lengths {
        for causal in causals {
            for variant in 0 ..< 2 {
                n += 1
                var (dqk, dv) = dims[(n * 5 + variant) % dims.count]
                var (hq, hkv) = heads[(n / 3 + variant) % heads.count]
                var batch = 1 + (n / 2) % 2
                // Keep the float64 reference affordable: big score matrices get one head.
                if lq * lk > 20_000 { (hq, hkv, batch) = ((hq / hkv) > 1 ? 2 : 1, 1, 1) }
                if lq * lk > 200_000 { (dqk, dv) = (min(dqk, 96), min(dv, 80)) }
                cases.append(AttentionCase(
                    shape: AttentionShape(batch: batch, queryHeads: hq, keyValueHeads: hkv,
                                          queryLength: lq, keyLength: lk,
                                          headDim: dqk, valueHeadDim: dv),
                    causal: causal,
                    scale: n % 3 == 0 ? 0.3 : nil,
                    layout: n % 2 == 0 ? .bhld : .blhd,
                    magnitude: n % 4 == 1 ? 30 : 1,
                    seed: UInt64(n)))
            }
        }
    }
    return cases
}()

/// Flash with each kernel ISA this CPU supports, then naive: (label, options).
func implementationsUnderTest(_ base: AttentionOptions) -> [(String, AttentionOptions)] {
    var all: [(String, AttentionOptions)] = []
    for kernel in FlashAttention.supportedKernels {
        var o = base
        o.implementation = .flash
        o.kernel = kernel
        all.append(("flash-\(kernel.rawValue)", o))
    }
    var naive = base
    naive.implementation = .naive
    all.append(("naive", naive))
    return all
}

/// FA_TEST_VERBOSE=1 prints every comparison (for the accuracy notes in the README).
let verbose = getenv("FA_TEST_VERBOSE") != nil

@Suite("Forward against the float64 reference")
struct ForwardGridTests {
    @Test("flash on every kernel ISA, and naive", arguments: forwardGrid)
    func grid(_ c: AttentionCase) throws {
        let (q, k, v) = c.inputs()
        let reference = c.reference()
        for (name, options) in implementationsUnderTest(c.options) {
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
            let result = compare(output: out, strides: c.strides.output, logSumExp: lse,
                                 reference: reference, shape: c.shape)
            #expect(result.passed, "\(name) \(c): \(result)")
            if verbose { print("error \(name) \(c): \(result)") }
        }
    }

    @Test("every head dimension from 1 to 256 (flash, every kernel ISA)",
          arguments: FlashAttention.supportedKernels)
    func everyHeadDim(_ kernel: KernelISA) throws {
        for d in 1 ... 256 {
            let c = AttentionCase(
                shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 5,
                                      keyLength: 67, headDim: d, valueHeadDim: 257 - d),
                causal: d % 2 == 0 ? .bottomRight : .none, seed: UInt64(1000 + d))
            let (q, k, v) = c.inputs()
            var options = c.options
            options.kernel = kernel
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
            let result = compare(output: out, strides: c.strides.output, logSumExp: lse,
                                 reference: c.reference(), shape: c.shape)
            #expect(result.passed, "\(kernel) \(c): \(result)")
        }
    }
}

@Suite("The comparison can fail")
struct ComparisonSensitivityTests {
    let c = AttentionCase(
        shape: AttentionShape(queryHeads: 2, queryLength: 65, keyLength: 129, headDim: 64),
        causal: .bottomRight, seed: 99)

    func flash(_ options: AttentionOptions) throws -> Comparison {
        let (q, k, v) = c.inputs()
        let (out, lse) = try FlashAttention.forwardWithLogSumExp(
            query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
        return compare(output: out, strides: c.strides.output, logSumExp: lse,
                       reference: c.reference(), shape: c.shape)
    }

    @Test("the right answer passes")
    func rightAnswer() throws {
        #expect(try flash(c.options).passed)
    }

    @Test("a causal mask shifted by Lk − Lq keys fails")
    func wrongAlignment() throws {
        var options = c.options
        options.causal = .topLeft
        #expect(try !flash(options).passed)
    }

    @Test("a scale off by 0.1 % fails")
    func wrongScale() throws {
        var options = c.options
        options.scale = 1.001 / 8
        #expect(try !flash(options).passed)
    }

    @Test("one output element off by 1e-4 fails")
    func perturbedElement() throws {
        let (q, k, v) = c.inputs()
        var out = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                             shape: c.shape, options: c.options)
        out[out.count / 2] += 1e-4
        #expect(!compare(output: out, strides: c.strides.output, logSumExp: nil,
                         reference: c.reference(), shape: c.shape).passed)
    }
}
