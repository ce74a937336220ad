import FlashAttention
import Testing
import TestSupport

/// Odd shapes (B, Hq, Hkv, Lq, Lk, D): rows and keys of 1, 3, 17, 63, 65 and 129, so every
/// kernel meets query-row tails (pad rows) and key tails of its 16×16 / 8×8 mask sub-tiles,
/// and head dims 1, 3, 64 and 65.
private let fastPathShapes: [AttentionShape] = [
    AttentionShape(batch: 1, queryHeads: 2, keyValueHeads: 1, queryLength: 1, keyLength: 129, headDim: 3),
    AttentionShape(batch: 1, queryHeads: 2, keyValueHeads: 2, queryLength: 3, keyLength: 17, headDim: 1),
    AttentionShape(batch: 2, queryHeads: 2, keyValueHeads: 1, queryLength: 17, keyLength: 65, headDim: 64),
    AttentionShape(batch: 1, queryHeads: 2, keyValueHeads: 1, queryLength: 63, keyLength: 3, headDim: 65),
    AttentionShape(batch: 1, queryHeads: 1, keyValueHeads: 1, queryLength: 65, keyLength: 63, headDim: 64),
    AttentionShape(batch: 1, queryHeads: 2, keyValueHeads: 2, queryLength: 129, keyLength: 1, headDim: 3),
    AttentionShape(batch: 1, queryHeads: 1, keyValueHeads: 1, queryLength: 129, keyLength: 129, headDim: 65),
]

/// The mask layouts the kernels' score_mods reads differently, each sized exactly (so reading
/// past it, e.g. for pad rows, is an out-of-bounds read AddressSanitizer reports).
private func fastPathStrides(_ s: AttentionShape) -> [(String, MaskStrides)] {
    let lq = s.queryLength, lk = s.keyLength
    return [
        // Key-contiguous, the dense [B, Hq, Lq, Lk] case: rows loaded and transposed.
        ("key-contiguous", .dense(s)),
        // Key-contiguous with rows further apart than Lk (a slice of a wider mask).
        ("key-contiguous, row stride Lk + 5", MaskStrides(batch: s.queryHeads * lq * (lk + 5),
                                                          head: lq * (lk + 5), query: lk + 5, key: 1)),
        // Query-broadcast: a key-padding mask [B, 1, 1, Lk].
        ("query-broadcast", .keyPadding(s)),
        // Query-contiguous: a mask stored [B, Hq, Lk, Lq].
        ("query-contiguous", MaskStrides(batch: s.queryHeads * lq * lk, head: lq * lk, query: 1, key: lq)),
        // Any other strides: the element-by-element path.
        ("general", MaskStrides(batch: 0, head: 2 * lq * lk + 1, query: 2 * lk, key: 2)),
    ]
}

/// Every mask path, bool and additive, forward and backward, on every shape above; every
/// third case also soft-capped and every other one with ALiBi.
let scoreModsFastPathGrid: [AttentionCase] = {
    var cases: [AttentionCase] = []
    var n = 0
    for shape in fastPathShapes {
        for (_, strides) in fastPathStrides(shape) {
            for additive in [false, true] {
                let mask = additive
                    ? randomAdditiveMask(shape, strides, hidden: 0.15, seed: UInt64(4000 + n))
                    : randomBooleanMask(shape, strides, keep: 0.6, seed: UInt64(4000 + n))
                cases.append(AttentionCase(
                    shape: shape, causal: n % 5 == 4 ? .bottomRight : .none,
                    softcap: n % 3 == 0 ? 20 : nil,
                    alibiSlopes: n % 2 == 1 ? alibiSlopes(shape.queryHeads) : nil, mask: mask,
                    layout: n % 2 == 0 ? .bhld : .blhd, seed: UInt64(4100 + n)))
                n += 1
            }
        }
    }
    return cases
}()

/// Soft-capping where it is hard to get right: caps far above the scores (tanh of values near
/// 0, where 1 − 2/(e^{2x} + 1) cancels), caps far below them (saturated tanh, sech² → 0), and
/// in between (the polynomial / exponential switch), with and without ALiBi.
let softcapGrid: [AttentionCase] = {
    var cases: [AttentionCase] = []
    var n = 0
    for shape in [fastPathShapes[2], fastPathShapes[4], fastPathShapes[6]] {
        for (cap, magnitude) in [(Float(2000), Float(1)), (50_000, 3), (2, 30), (0.5, 1), (4, 2)] {
            cases.append(AttentionCase(shape: shape, causal: n % 4 == 3 ? .topLeft : .none,
                                       softcap: cap,
                                       alibiSlopes: n % 3 == 2 ? alibiSlopes(shape.queryHeads) : nil,
                                       layout: n % 2 == 0 ? .bhld : .blhd, magnitude: magnitude,
                                       seed: UInt64(4500 + n)))
            n += 1
        }
    }
    return cases
}()

/// A dense additive mask and nothing else — the kernels' dedicated path (rows transposed in
/// registers, no soft-capping or ALiBi) — on every shape, both key-contiguous layouts, with
/// and without a causal band (whose hidden scores must stay hidden whatever the mask adds).
let additiveOnlyGrid: [AttentionCase] = {
    var cases: [AttentionCase] = []
    var n = 0
    for shape in fastPathShapes {
        for (_, strides) in fastPathStrides(shape).prefix(2) {
            for causal in [CausalMask.none, .bottomRight] {
                cases.append(AttentionCase(
                    shape: shape, causal: causal,
                    mask: randomAdditiveMask(shape, strides, hidden: 0.15, seed: UInt64(4500 + n)),
                    layout: n % 2 == 0 ? .bhld : .blhd, seed: UInt64(4600 + n)))
                n += 1
            }
        }
    }
    return cases
}()

@Suite("Vectorised score modifiers: every mask path and soft-capping")
struct ScoreModsFastPathTests {
    @Test("a dense additive mask alone (the dedicated path), with and without causal",
          arguments: additiveOnlyGrid)
    func additiveOnly(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("mask paths (key-contiguous, query-broadcast, query-contiguous, general; bool and additive)",
          arguments: scoreModsFastPathGrid)
    func maskPaths(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }

    @Test("soft-capping near 0, saturated and in between", arguments: softcapGrid)
    func softcap(_ c: AttentionCase) throws {
        try expectForwardAndBackward(c)
    }
}

import CKernelProbe
#if canImport(Glibc)
import Glibc
#endif

/// The soft-cap of each ISA's score_mods element by element against float64: s' =
/// c·tanh(s·ln2/c)·log2 e within a few float32 ulps of |s'| everywhere, including scores near 0
/// (where tanh through 1 − 2/(e^{2x} + 1) or (1 − e)/(1 + e) would lose all but a few bits),
/// around the polynomial/exponential switch and in saturation; ∂s'/∂s = sech²(x) likewise
/// (for |x| ≤ 2, where it is well conditioned).
@Suite("Soft-capping tanh and sech² per ISA")
struct SoftcapAccuracyTests {
    @Test("relative error ≤ 8 ulps of tanh and sech²", arguments: FlashAttention.supportedKernels)
    func accuracy(_ kernel: KernelISA) throws {
        let isa: Int32 = kernel == .portable ? 0 : kernel == .avx2 ? 1 : 2
        let rows = 64
        for cap: Float in [0.5, 5, 30, 2000] {
            // Scores from 2⁻³⁰·c to 2⁶·c (log spaced, both signs), the switch point, and ±0.
            var xs: [Float] = []
            var t = -30.0
            while t < 6 { xs.append(Float(exp2(t)) * cap); xs.append(-Float(exp2(t)) * cap); t += 1.0 / 64 }
            let switchScore = 0.625 * cap / Float(M_LN2)
            xs += [switchScore, switchScore.nextUp, switchScore.nextDown, 0, -0.0]
            while xs.count % rows != 0 { xs.append(1) }
            let keys = xs.count / rows
            var st = xs, derivative = [Float](repeating: .nan, count: xs.count)
            var blockMax = [Float](repeating: .nan, count: rows)
            #expect(fa_probe_softcap(isa, Int32(keys), Int32(rows), &st, Int64(rows), cap, &blockMax,
                                     &derivative) == 0)
            var worst = 0.0, worstD = 0.0, worstAt: Float = 0
            for (n, s) in xs.enumerated() {
                let x = Double(s) * M_LN2 / Double(cap)
                let exact = Double(cap) * tanh(x) * 1.4426950408889634
                let ulp = Double(Float(abs(exact)).ulp)
                let err = exact == 0 ? Double(abs(st[n])) : abs(Double(st[n]) - exact) / ulp
                if err > worst { (worst, worstAt) = (err, s) }
                let c2 = cosh(x), sech2 = 1 / (c2 * c2)
                // sech² amplifies an error in x by 2|x|: checked where that is ≤ 4 ulps.
                if abs(x) <= 2 {
                    worstD = max(worstD, abs(Double(derivative[n]) - sech2) / Double(Float(sech2).ulp))
                }
            }
            #expect(worst <= 8, "\(kernel) c \(cap): tanh off by \(worst) ulps at s = \(worstAt)")
            #expect(worstD <= 8, "\(kernel) c \(cap): sech² off by \(worstD) ulps")
            if verbose { print("softcap \(kernel) c \(cap): \(worst) ulps, sech² \(worstD) ulps") }
        }
    }
}
