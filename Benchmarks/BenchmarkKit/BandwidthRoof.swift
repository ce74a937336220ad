import CStreamRoof

/// The machine's practical memory-read ceiling: every thread of the case reads its own part of
/// a buffer far larger than the L3 cache (8 independent vector accumulators, the widest ISA
/// the CPU has), after the pages were written and one untimed pass. Decode — one new token
/// against a long K/V cache — is bound by this, not by the sgemm roofline, so every case's
/// K+V GB/s is also shown as a fraction of it.
///
/// The buffer is ordinary anonymous memory (no huge-page advice), as the benchmark's own K/V
/// buffers are.
public struct BandwidthRoof: Sendable, Codable {
    /// Bytes one pass reads.
    public var bytes: Int
    public var threads: Int
    /// The best pass in decimal GB/s (10⁹ bytes per second), STREAM's convention.
    public var gbps: Double
    /// The median pass in GB/s.
    public var medianGBps: Double
    /// The timed passes (seconds).
    public var timing: TimingSummary
    /// The read loop: "avx512", "avx2" or "portable".
    public var kernel: String
    /// The L3 size the default buffer was derived from (0 = unknown).
    public var l3Bytes: Int

    public init(bytes: Int, threads: Int, gbps: Double, medianGBps: Double, timing: TimingSummary,
                kernel: String, l3Bytes: Int) {
        self.bytes = bytes
        self.threads = threads
        self.gbps = gbps
        self.medianGBps = medianGBps
        self.timing = timing
        self.kernel = kernel
        self.l3Bytes = l3Bytes
    }

    /// max(1 GiB, 8 × L3), at most 4 GiB and a quarter of the physical memory.
    public static var defaultBytes: Int { Int(stream_roof_default_bytes()) }

    /// The L3 size from sysfs (cpu0, index3), else sysconf; 0 when unknown.
    public static var l3Bytes: Int { Int(stream_roof_l3_bytes()) }

    /// Whether the threads are OpenMP's (the kernels' runtime) rather than pthreads.
    public static var usesOpenMP: Bool { stream_roof_openmp() != 0 }

    /// Reads `bytes` (rounded down to whole pages per thread) `repeats` times on `threads`
    /// threads; nil if the buffer cannot be allocated.
    public static func measure(bytes: Int = defaultBytes, threads: Int, repeats: Int = 10) -> BandwidthRoof? {
        guard bytes > 0, threads > 0, repeats > 0 else { return nil }
        var seconds = [Double](repeating: 0, count: repeats)
        var read = 0
        let status = stream_roof_measure(bytes, Int32(threads), Int32(repeats), &seconds, &read)
        guard status == 0, read > 0 else { return nil }
        let timing = TimingSummary(seconds)
        return BandwidthRoof(bytes: read, threads: threads, gbps: Double(read) / timing.min / 1e9,
                             medianGBps: Double(read) / timing.median / 1e9, timing: timing,
                             kernel: String(cString: stream_roof_kernel()), l3Bytes: l3Bytes)
    }
}

/// A bandwidth-roof buffer kept for the whole sweep, so the roof can also be read between the
/// timed runs of one case: on a shared machine the read bandwidth moves within seconds, and a
/// memory-bound case is best judged against the bandwidth of the same moments. Not `Sendable`:
/// one probe is read by one caller at a time.
public final class BandwidthProbe {
    private let buffer: OpaquePointer
    /// Bytes one pass reads.
    public let bytes: Int
    public let threads: Int

    /// Allocates and faults in `bytes` (rounded as ``BandwidthRoof/measure(bytes:threads:repeats:)``
    /// rounds them) for `threads` threads and reads it once untimed; nil if it cannot.
    public init?(bytes: Int = BandwidthRoof.defaultBytes, threads: Int) {
        guard bytes > 0, threads > 0, let b = stream_roof_open(bytes, Int32(threads)) else { return nil }
        buffer = b
        self.bytes = Int(stream_roof_buffer_bytes(b))
        self.threads = threads
    }

    deinit { stream_roof_close(buffer) }

    /// One timed pass, in decimal GB/s.
    public func passGBps() -> Double? {
        var seconds = 0.0
        guard stream_roof_read(buffer, 1, &seconds) == 0, seconds > 0 else { return nil }
        return Double(bytes) / seconds / 1e9
    }
}
