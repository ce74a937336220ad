#if canImport(COpenBLAS)
import COpenBLAS
#elseif canImport(Accelerate)
import Accelerate  // Apple platforms: cblas_sgemm from Accelerate (built by review only)
#endif

/// The machine's practical float32 ceiling: the BLAS's `sgemm` on a square product (OpenBLAS
/// on Linux, Accelerate on Apple platforms), with the
/// thread count the attention kernels use. Every GFLOP/s the benchmark prints is also shown
/// as a fraction of this, so results compare across noisy and different machines.
public struct Roofline: Sendable, Codable {
    public var size: Int
    public var threads: Int
    public var gflops: Double
    public var timing: TimingSummary
    /// Whether the product came out exactly as expected (0.5 · 0.25 · n in every element).
    public var verified: Bool

    public init(size: Int, threads: Int, gflops: Double, timing: TimingSummary,
                verified: Bool = true) {
        self.size = size
        self.threads = threads
        self.gflops = gflops
        self.timing = timing
        self.verified = verified
    }

    /// The OpenBLAS kernel family in use ("Haswell", "SkylakeX", "Zen", …); "Accelerate"
    /// on Apple platforms.
    public static var openBLASCore: String {
        #if canImport(COpenBLAS)
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
        #else
        return "Accelerate"
        #endif
    }

    /// Runs `repeats` timed `size³` products after one warm-up.
    public static func measure(size: Int = 2048, threads: Int, repeats: Int = 5) -> Roofline {
        setBLASThreads(threads)
        let n = size
        let a = [Float](repeating: 0.5, count: n * n)
        let b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var times: [Double] = []
        for run in 0 ... repeats {
            let start = monotonicSeconds()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n),
                        1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
            if run > 0 { times.append(monotonicSeconds() - start) }
        }
        let timing = TimingSummary(times)
        // Every element is a sum of n products 0.125: exact in float32 for n ≤ 2²⁴.
        let expected = Float(0.125 * Double(n))
        let verified = c.allSatisfy { $0 == expected }
        return Roofline(size: n, threads: threads,
                        gflops: 2 * Double(n) * Double(n) * Double(n) / timing.median / 1e9,
                        timing: timing, verified: verified)
    }

    static func setBLASThreads(_ threads: Int) {
        #if canImport(COpenBLAS)
        if openblas_get_num_threads() != Int32(threads) { openblas_set_num_threads(Int32(threads)) }
        #else
        _ = threads  // Accelerate chooses its own threads
        #endif
    }
}
