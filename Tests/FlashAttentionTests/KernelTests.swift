import CFlashAttention
import FlashAttention
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Kernel ISAs and the exponential")
struct KernelTests {
    /// The softmax exponentiates x = s − max ≤ 0 only. Over that whole range, every ISA's 2^x
    /// must be within 2 units of 2⁻²⁴ of the true value (relative), exactly 1 at 0, exactly 0
    /// at −inf and below −126 (the flush point), and NaN for NaN.
    @Test("2^x: relative error ≤ 2·2⁻²⁴ on [−126, 0], exact 0 below and at −inf",
          arguments: FlashAttention.supportedKernels)
    func exp2Accuracy(_ kernel: KernelISA) throws {
        var xs: [Float] = []
        // Dense near 0 (where most probabilities live), then every 1/4096 down to −126,
        // and the fractional ±0.5 rounding boundaries of every integer.
        var x: Float = 0
        while x > -8 { xs.append(x); x -= 1 / 65_536 }
        x = -8
        while x >= -126 { xs.append(x); x -= 1 / 4096 }
        for n in 0 ... 126 {
            let f = Float(-n)
            xs += [f, f - 0.5, f + 0.5, f.nextUp, f.nextDown, (f - 0.5).nextUp, (f - 0.5).nextDown]
        }
        // Positive x up to the last finite power (2^x overflows at 128): every ±0.5 boundary,
        // and the half unit [127.5, 128) whose rounded exponent n = 128 is past the field.
        for n in 1 ... 127 {
            let f = Float(n)
            xs += [f, f - 0.5, f + 0.5, f.nextUp, f.nextDown, (f + 0.5).nextUp, (f + 0.5).nextDown]
        }
        xs += [127.75, Float(128).nextDown]
        xs = xs.filter { $0 < 128 && $0 >= -126 }
        let specials: [Float] = [-.infinity, -126.0001, -127, -149, -1000, -Float.greatestFiniteMagnitude]
        var y = [Float](repeating: .nan, count: xs.count)
        #expect(fa_exp2(cValue(kernel), xs, &y, Int64(xs.count)) == FA_OK)
        var worst = 0.0, worstX: Float = 0
        for (xi, yi) in zip(xs, y) {
            let exact = Glibc.exp2(Double(xi))
            let rel = abs(Double(yi) - exact) / exact
            if rel > worst { (worst, worstX) = (rel, xi) }
        }
        let ulps = worst / 0x1p-24
        #expect(ulps <= 2, "\(kernel): max relative error \(ulps) units of 2⁻²⁴ at x = \(worstX)")
        var ys = [Float](repeating: .nan, count: specials.count)
        #expect(fa_exp2(cValue(kernel), specials, &ys, Int64(specials.count)) == FA_OK)
        #expect(ys.allSatisfy { $0 == 0 }, "\(kernel): \(ys)")
        var one: Float = .nan, nan: Float = 0
        _ = fa_exp2(cValue(kernel), [0], &one, 1)
        _ = fa_exp2(cValue(kernel), [.nan], &nan, 1)
        #expect(one == 1)
        #expect(nan.isNaN)
        var overflow = [Float](repeating: 0, count: 3)
        _ = fa_exp2(cValue(kernel), [128, 1000, .infinity], &overflow, 3)
        #expect(overflow.allSatisfy { $0 == .infinity }, "\(kernel): \(overflow)")
        if verbose { print("exp2 \(kernel): max relative error \(ulps) × 2⁻²⁴ at x = \(worstX)") }
    }

    @Test("every ISA is reported, and the portable one always runs")
    func supported() throws {
        #expect(FlashAttention.supportedKernels.first == .portable)
        #expect(KernelISA.allCases.contains(KernelISA(rawValue: FlashAttention.kernelName) ?? .automatic))
        let info = try FlashAttention.kernelInfo(shape: AttentionShape(queryHeads: 8,
                                                                       queryLength: 4096,
                                                                       headDim: 64))
        #expect(info.kernel != .automatic)
        #expect(info.blockQ % info.vectorWidth == 0 && info.blockQ >= info.vectorWidth)
        #expect(info.blockK == 64)
    }

    @Test("the CPU's features are those the kernels' choice rests on")
    func features() {
        let have = Set(FlashAttention.cpuFeatures)
        let kernels = FlashAttention.supportedKernels
        #if arch(x86_64)
        #expect(kernels.contains(.avx2) == have.isSuperset(of: ["avx2", "fma", "f16c"]), "\(have)")
        #expect(kernels.contains(.avx512)
                == have.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq", "fma"]), "\(have)")
        #expect(kernels.contains(.avx512bf16) == (kernels.contains(.avx512) && have.contains("avx512bf16")))
        // AMX also needs Linux's grant of the tile state, which the features do not show.
        #expect(!kernels.contains(.avx512amx) || (kernels.contains(.avx512bf16) && have.contains("amx-bf16")))
        #expect(!have.contains("neon") && !kernels.contains(.neon) && !kernels.contains(.neonbf16))
        #elseif arch(arm64)
        #expect(have.contains("neon") && kernels.contains(.neon), "\(have)")
        #expect(kernels.contains(.neonbf16) == have.contains("bf16"), "\(have)")
        #endif
        #expect(FlashAttention.cpuFeatures.count == have.count, "no feature named twice")
    }

    @Test("an ISA this CPU lacks is refused")
    func unsupported() throws {
        let missing = [KernelISA.avx2, .avx512, .avx512bf16, .avx512amx, .neon, .neonbf16].filter { !FlashAttention.supportedKernels.contains($0) }
        for kernel in missing {
            #expect(throws: AttentionError.unsupportedKernel(kernel)) {
                try FlashAttention.forward(query: [1], key: [1], value: [1],
                                           shape: AttentionShape(queryHeads: 1, queryLength: 1,
                                                                 headDim: 1),
                                           options: AttentionOptions(kernel: kernel))
            }
        }
        var p = fa_problem()
        fa_problem_init(&p)
        p.isa = fa_isa(rawValue: 9)
        var diag = fa_diagnostic()
        p.shape = fa_shape(batch: 1, q_heads: 1, kv_heads: 1, q_len: 1, kv_len: 1,
                           head_dim_qk: 1, head_dim_v: 1)
        #expect(fa_check(&p, &diag) == FA_ERR_UNSUPPORTED_ISA)
        #expect(diag.argument == FA_ARG_ISA)
    }

    func cValue(_ kernel: KernelISA) -> fa_isa {
        switch kernel {
        case .automatic: FA_ISA_AUTO
        case .portable: FA_ISA_PORTABLE
        case .avx2: FA_ISA_AVX2
        case .avx512: FA_ISA_AVX512
        case .avx512bf16: FA_ISA_AVX512_BF16
        case .avx512amx: FA_ISA_AVX512_AMX
        case .neon: FA_ISA_NEON
        case .neonbf16: FA_ISA_NEON_BF16
        }
    }
}
