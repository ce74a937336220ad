import CFlashAttention
import FlashAttention
import Testing

/// bf16 and fp16 storage conversions (kernels/half.h through fa_convert and the scalar C
/// functions, and BFloat16). References are independent: Swift's own `Float16` conversions
/// for fp16, and nearest-even chosen by exact `Double` distances for bf16.
@Suite("Half-precision conversions")
struct HalfConversionTests {
    /// The bf16 nearest to a finite float, ties to even, found by comparing exact distances.
    static func referenceBF16(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let lo = UInt16(bits >> 16), hi = lo &+ 1
        let x = Double(f)
        let dl = abs(Double(Float(bitPattern: UInt32(lo) << 16)) - x)
        // Past the largest finite value the next value is ±inf, which IEEE rounding treats as
        // ±2¹²⁸ (one ulp further on) when deciding between the two.
        var hiValue = Double(Float(bitPattern: UInt32(hi) << 16))
        if hiValue.isInfinite { hiValue = hiValue < 0 ? -0x1p128 : 0x1p128 }
        let dh = abs(hiValue - x)
        if dl < dh { return lo }
        if dh < dl { return hi }
        return lo & 1 == 0 ? lo : hi
    }

    /// Floats that probe rounding: every bf16/fp16 value, the midpoints between neighbours and
    /// one float either side of them, plus a seeded spread over the whole range.
    static let probes: [Float] = {
        var out: [Float] = []
        for h in 0 ... UInt32(0xFFFF) {
            let a = Float(bitPattern: h << 16)
            if a.isFinite {
                let mid = Float(bitPattern: (h << 16) | 0x8000)
                out += [a, mid, mid.nextUp, mid.nextDown]
            }
            let f = Float(Float16(bitPattern: UInt16(h)))
            if f.isFinite {
                let next = Float(Float16(bitPattern: UInt16(h)).nextUp)
                if next.isFinite {
                    let m = (Double(f) + Double(next)) / 2  // exact in Float: 11-bit values
                    let mf = Float(m)
                    out += [f, mf, mf.nextUp, mf.nextDown]
                }
            }
        }
        var state: UInt64 = 0x9E3779B97F4A7C15
        for _ in 0 ..< 200_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            out.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32)))
        }
        out += [65504, 65519.99, 65520, 65536, 0x1p-24, 0x1p-25, 0x1.8p-25, 0x1p-26, 0x1p-14,
                0x1.ffcp-15, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity,
                -.infinity, 0, -0.0]
        return out
    }()

    @Test("every bf16 and fp16 bit pattern round-trips exactly; NaN stays NaN")
    func roundTrips() {
        var badBF = 0, badF16 = 0
        for h in 0 ... UInt16.max {
            let f = fa_bf16_to_float(h)
            #expect(f.bitPattern == UInt32(h) << 16)
            let back = fa_float_to_bf16(f)
            if f.isNaN {
                if !(back & 0x7FFF > 0x7F80 && back & 0x8000 == h & 0x8000 && back & 0x40 != 0) { badBF += 1 }
            } else if back != h { badBF += 1 }
            let g = fa_f16_to_float(h)
            let ref = Float(Float16(bitPattern: h))
            if g.isNaN != ref.isNaN || (!g.isNaN && g.bitPattern != ref.bitPattern) { badF16 += 1 }
            let back16 = fa_float_to_f16(g)
            if g.isNaN {
                if !(back16 & 0x7FFF > 0x7C00 && back16 & 0x8000 == h & 0x8000 && back16 & 0x200 != 0) { badF16 += 1 }
            } else if back16 != h { badF16 += 1 }
            #expect(BFloat16(bitPattern: h).isNaN == f.isNaN)
        }
        #expect(badBF == 0)
        #expect(badF16 == 0)
    }

    @Test("fp32 → half rounds to nearest, ties to even: midpoints, subnormals, overflow")
    func rounding() {
        var badBF: [Float] = [], badF16: [Float] = []
        for f in Self.probes where !f.isNaN {
            if fa_float_to_bf16(f) != Self.referenceBF16(f), badBF.count < 5 { badBF.append(f) }
            if fa_float_to_f16(f) != Float16(f).bitPattern, badF16.count < 5 { badF16.append(f) }
        }
        #expect(badBF.isEmpty, "bf16 rounding differs at \(badBF)")
        #expect(badF16.isEmpty, "fp16 rounding differs at \(badF16)")
        // Named edge cases.
        #expect(fa_float_to_f16(65520) == 0x7C00 && fa_float_to_f16(-65520) == 0xFC00)
        #expect(fa_float_to_f16(65519.99) == 0x7BFF)
        #expect(fa_float_to_f16(0x1p-25) == 0 && fa_float_to_f16(0x1.8p-25) == 1)
        #expect(fa_float_to_f16(-0x1p-25) == 0x8000)
        #expect(fa_float_to_f16(0x1.ffcp-15) == 0x0400)  // rounds up into the smallest normal
        #expect(fa_float_to_bf16(.greatestFiniteMagnitude) == 0x7F80)
        #expect(fa_float_to_bf16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie, even below
        #expect(fa_float_to_bf16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie, even above
        // NaN payloads: quiet, sign kept, top payload bits kept.
        let snan = Float(bitPattern: 0xFF81_2345)
        #expect(fa_float_to_bf16(snan) == 0xFFC1 && fa_float_to_f16(snan) == 0xFE09)
    }

    @Test("fa_convert: every pair of types, in place, and bad arguments refused")
    func convert() {
        let src: [Float] = [1, -2.5, 65520, 0x1p-25, .nan, 3.14159, -0.0]
        var h = [UInt16](repeating: 0, count: src.count)
        var b = [UInt16](repeating: 0, count: src.count)
        #expect(fa_convert(FA_DTYPE_F32, src, FA_DTYPE_F16, &h, Int64(src.count)) == FA_OK)
        #expect(fa_convert(FA_DTYPE_F32, src, FA_DTYPE_BF16, &b, Int64(src.count)) == FA_OK)
        #expect(h == src.map(fa_float_to_f16) && b == src.map(fa_float_to_bf16))
        // Half to half goes through the exact fp32 value.
        var hb = [UInt16](repeating: 0, count: src.count)
        #expect(fa_convert(FA_DTYPE_F16, h, FA_DTYPE_BF16, &hb, Int64(src.count)) == FA_OK)
        #expect(hb == h.map { fa_float_to_bf16(fa_f16_to_float($0)) })
        var back = [Float](repeating: 0, count: src.count)
        #expect(fa_convert(FA_DTYPE_BF16, b, FA_DTYPE_F32, &back, Int64(src.count)) == FA_OK)
        #expect(back.map(\.bitPattern) == b.map(fa_bf16_to_float).map(\.bitPattern))
        var inPlace = h
        #expect(fa_convert(FA_DTYPE_F16, inPlace, FA_DTYPE_BF16, &inPlace, Int64(src.count)) == FA_OK)
        #expect(inPlace == hb)
        #expect(fa_convert(fa_dtype(rawValue: 7), src, FA_DTYPE_F16, &h, 1) == FA_ERR_INVALID_DTYPE)
        #expect(fa_convert(FA_DTYPE_F32, src, FA_DTYPE_F16, &h, -1) == FA_ERR_INVALID_EXTENT)
        #expect(fa_convert(FA_DTYPE_F32, nil, FA_DTYPE_F16, &h, 1) == FA_ERR_NULL_POINTER)
        #expect(fa_convert(FA_DTYPE_F32, nil, FA_DTYPE_F16, nil, 0) == FA_OK)
        #expect(fa_dtype_size(FA_DTYPE_F32) == 4 && fa_dtype_size(FA_DTYPE_BF16) == 2
                && fa_dtype_size(fa_dtype(rawValue: 9)) == 0)
        #expect(String(cString: fa_status_message(FA_ERR_INVALID_DTYPE)).contains("element type"))
    }

    @Test("BFloat16: conversions, Float's equality and order, hashing, description")
    func bfloat16() {
        #expect(BFloat16(1.0).bitPattern == 0x3F80)
        #expect(Float(BFloat16(3.14159)) == Float(bitPattern: 0x4049_0000))
        #expect(BFloat16(0.0) == BFloat16(-0.0) && BFloat16(0.0).bitPattern != BFloat16(-0.0).bitPattern)
        #expect(Set([BFloat16(0.0), BFloat16(-0.0)]).count == 1)
        #expect(BFloat16(.nan) != BFloat16(.nan) && BFloat16(.nan).isNaN)
        #expect(BFloat16(1) < BFloat16(2) && !(BFloat16(.nan) < BFloat16(1)))
        #expect(BFloat16(-1.5).description == "-1.5")
        #expect(BFloat16(Float.greatestFiniteMagnitude).floatValue == .infinity)
    }
}
