#if canImport(Glibc)
import Glibc
#endif

/// A monotonic clock in seconds.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Median, minimum and maximum of some timings.
public struct TimingSummary: Sendable, Hashable, Codable {
    public var median: Double
    public var min: Double
    public var max: Double
    public var samples: Int

    public init(_ seconds: [Double]) {
        let sorted = seconds.sorted()
        samples = sorted.count
        min = sorted.first ?? .nan
        max = sorted.last ?? .nan
        if sorted.isEmpty {
            median = .nan
        } else if sorted.count % 2 == 1 {
            median = sorted[sorted.count / 2]
        } else {
            median = (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
    }

    /// (max − min) / median: the noise this case itself shows.
    public var spread: Double { (max - min) / median }
}

/// The process's resident-memory high-water mark, resettable per case (Linux).
///
/// `reset()` writes `5` to `/proc/self/clear_refs`, which sets VmHWM to the current RSS;
/// `peakAboveReset()` is then VmHWM minus VmHWM at the reset: the most memory the case
/// added at any moment. Resolution: the kernel batches RSS counts per CPU, so VmHWM can lag
/// by up to ~32 pages per CPU (≈ 0.1–0.3 MB here); smaller peaks read as about 0. Large allocations are forced to `mmap` (see `init`), so memory a
/// case frees goes back to the system and cannot hide in the heap of a later case.
public struct PeakMemory: Sendable {
    private var baseline = 0

    public init() {
        // A fixed threshold turns off glibc's sliding one, which would otherwise serve the
        // second large allocation from a retained heap and hide it from VmHWM.
        // (mallopt is in <malloc.h>, which Swift's Glibc module does not export.)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            let M_TRIM_THRESHOLD: Int32 = -1, M_MMAP_THRESHOLD: Int32 = -3
            _ = mallopt(M_MMAP_THRESHOLD, 64 * 1024)
            _ = mallopt(M_TRIM_THRESHOLD, 128 * 1024)
        }
    }

    /// Whether this system supports the measurement.
    public static var isAvailable: Bool { status("VmHWM:") != nil && canClearRefs }

    private static var canClearRefs: Bool { access("/proc/self/clear_refs", W_OK) == 0 }

    public mutating func reset() {
        if let fd = Optional(open("/proc/self/clear_refs", O_WRONLY)), fd >= 0 {
            _ = write(fd, "5", 1)
            close(fd)
        }
        // VmHWM, not VmRSS: the two come from differently batched kernel counters (VmRSS is
        // summed exactly, VmHWM from per-CPU batches), so only HWM − HWM is consistent.
        baseline = Self.status("VmHWM:") ?? 0
    }

    /// Bytes of VmHWM above the RSS at the last reset.
    public func peakAboveReset() -> Int? {
        guard let hwm = Self.status("VmHWM:") else { return nil }
        return Swift.max(0, hwm - baseline)
    }

    /// A `/proc/self/status` field in bytes.
    static func status(_ key: String) -> Int? {
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) },
                              as: UTF8.self)
            if text.hasPrefix(key) {
                let digits = text.dropFirst(key.count).filter { $0.isNumber }
                return Int(digits).map { $0 * 1024 }  // the field is in kB
            }
        }
        return nil
    }
}
