import FlashAttention
import Foundation

/// Where and on what a sweep ran.
public struct MachineInfo: Sendable, Codable {
    public var cpuModel: String
    public var kernelISA: String
    /// The OpenBLAS kernel family ("SkylakeX", "Haswell", …) and OPENBLAS_CORETYPE if set.
    public var openBLASCore: String = ""
    public var openBLASCoreOverride: String?
    public var threads: Int
    public var libraryVersion: String
    /// The sgemm roofline of the largest thread count in the sweep.
    public var roofline: Roofline
    /// Every thread count's roofline.
    public var rooflines: [Roofline]
    /// The memory-bandwidth roof of the largest thread count (nil if it could not be measured).
    public var bandwidthRoof: BandwidthRoof?
    /// Every thread count's bandwidth roof.
    public var bandwidthRoofs: [BandwidthRoof]
    public var date: String

    public init(cpuModel: String, kernelISA: String, threads: Int, libraryVersion: String,
                roofline: Roofline, rooflines: [Roofline], date: String,
                bandwidthRoofs: [BandwidthRoof] = []) {
        self.bandwidthRoofs = bandwidthRoofs
        self.bandwidthRoof = bandwidthRoofs.max { $0.threads < $1.threads }
        self.cpuModel = cpuModel
        self.kernelISA = kernelISA
        self.threads = threads
        self.libraryVersion = libraryVersion
        self.roofline = roofline
        self.rooflines = rooflines
        self.date = date
    }

    public static func current(threads: Int, rooflines: [Roofline]) -> MachineInfo {
        let roofline = rooflines.max { $0.threads < $1.threads }!
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" }
            ?? "unknown"
        let formatter = ISO8601DateFormatter()
        var info = MachineInfo(cpuModel: cpu, kernelISA: FlashAttention.kernelName, threads: threads,
                               libraryVersion: FlashAttention.version, roofline: roofline,
                               rooflines: rooflines, date: formatter.string(from: Date()))
        info.openBLASCore = Roofline.openBLASCore
        info.openBLASCoreOverride = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"]
        return info
    }
}

/// The whole result of one sweep, as written to results.json.
public struct SweepReport: Sendable, Codable {
    public var machine: MachineInfo
    public var policy: TimingPolicy
    public var flopsConvention: String
    public var bandwidthConvention: String
    public var cases: [CaseResult]
    /// Configurations left out because their K and V buffers exceed `maxKeyValueBytes`.
    public var leftOut: [BenchConfiguration] = []
    public var maxKeyValueBytes: Int?
    /// The serving scenario's KVCache.append against the attention step after it.
    public var cacheAppend: CacheAppendTiming?

    public init(machine: MachineInfo, policy: TimingPolicy, cases: [CaseResult]) {
        self.machine = machine
        self.policy = policy
        self.flopsConvention = "forward FLOPs = 2·(Dqk + Dv)·B·Hq·(visible query–key pairs), "
            + "backward 2.5× that; causal runs count only unmasked pairs"
        self.bandwidthConvention = "K+V bytes (forward) = B·Hkv·(keys some query sees)·(Dqk + Dv)·(4, or 2 for a half K/V), "
            + "per sequence when packed; GB/s = those bytes / median time (10⁹ B/s)"
        self.cases = cases
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }

    public static let csvHeader = [
        "impl", "pass", "batch", "q_heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal", "threads",
        "median_ms", "min_ms", "max_ms", "samples", "gflops", "roofline_fraction",
        "peak_extra_bytes", "workspace_bytes", "speedup_over_naive", "max_abs_diff", "skipped",
        "window_left", "window_right", "softcap", "alibi", "block_sparse_keep", "block_sparse_size",
        "mask_density", "additive_mask", "varlen", "sequence_lengths",
        "kv_bytes", "kv_gbps", "bandwidth_fraction", "kv_split",
        "local_bandwidth_gbps", "local_bandwidth_fraction", "dtype",
        "page_size", "page_layout", "serving", "kv_lengths",
    ]

    /// One row per case; empty fields where a value does not apply; RFC 4180 quoting.
    public func csv() -> String {
        var lines = [Self.csvHeader.joined(separator: ",")]
        for r in cases {
            let c = r.configuration
            let fields: [String] = [
                r.implementation.rawValue, c.pass.rawValue, "\(c.batch)", "\(c.queryHeads)", "\(c.keyValueHeads)",
                "\(c.queryLength)", "\(c.keyLength)", "\(c.headDim)", c.causal.rawValue,
                "\(c.threads)",
                Self.number(r.timing.map { $0.median * 1e3 }),
                Self.number(r.timing.map { $0.min * 1e3 }),
                Self.number(r.timing.map { $0.max * 1e3 }),
                r.timing.map { "\($0.samples)" } ?? "",
                Self.number(r.gflops), Self.number(r.rooflineFraction),
                r.peakExtraBytes.map { "\($0)" } ?? "", "\(r.workspaceBytes)",
                Self.number(r.speedupOverNaive), Self.number(r.maxAbsDifference),
                r.skipReason ?? "",
                c.windowLeft.map(String.init) ?? "", c.windowRight.map(String.init) ?? "",
                c.softcap.map { "\($0)" } ?? "", c.alibi ? "1" : "",
                c.blockSparseKeep.map { "\($0)" } ?? "", c.blockSparseSize.map { "\($0)" } ?? "",
                c.maskDensity.map { "\($0)" } ?? "", c.additiveMask ? "1" : "",
                c.varlen?.rawValue ?? "",
                c.sequenceLengths.map { $0.map(String.init).joined(separator: " ") } ?? "",
                r.keyValueBytes.map { "\($0)" } ?? "",
                Self.number(r.keyValueGBps), Self.number(r.bandwidthFraction),
                c.kvSplit.description,
                Self.number(r.localBandwidthGBps), Self.number(r.localBandwidthFraction),
                c.storage.description,
                c.pageSize.map(String.init) ?? "", c.pageSize == nil ? "" : c.pageLayout,
                c.serving ? "1" : "",
                c.perSequence.map { $0.keys.map(String.init).joined(separator: " ") } ?? "",
            ]
            lines.append(fields.map(Self.quoted).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func number(_ x: Double?) -> String {
        guard let x else { return "" }
        return String(format: "%.6g", x)
    }

    static func quoted(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// How the bandwidth roof was measured and what it came to, for the table's header.
    func bandwidthRoofLine() -> String {
        let roofs = machine.bandwidthRoofs
        guard let r = roofs.last else { return "not measured" }
        let l3 = r.l3Bytes > 0 ? String(format: " (%.0f× L3)", Double(r.bytes) / Double(r.l3Bytes)) : ""
        return String(format: "%@ read of %.2f GiB", r.kernel, Double(r.bytes) / 1073741824) + l3
            + ", best of \(r.timing.samples) passes, best of before and after the sweep: "
            + roofs.map { String(format: "%.1f GB/s on %d threads", $0.gbps, $0.threads) }
                .joined(separator: ", ")
    }

    /// Whether some case is decode-shaped: a forward pass with at most 16 queries (per
    /// sequence), which reads the K/V cache and is bound by memory bandwidth.
    public var isDecodeShaped: Bool {
        cases.contains { $0.configuration.pass == .forward && ($0.configuration.queryLength <= 16 || $0.configuration.serving) }
    }

    /// An aligned, human-readable table.
    public func table() -> String {
        let m = machine
        var out = "# \(m.cpuModel), kernels \(m.kernelISA), \(m.threads) threads, "
            + "swift-flash-attention \(m.libraryVersion)\n"
            + "# roofline: OpenBLAS (\(m.openBLASCore)"
            + (m.openBLASCoreOverride.map { ", forced by OPENBLAS_CORETYPE=\($0)" } ?? "")
            + ") sgemm \(m.roofline.size)³, best of before and after the sweep: "
            + m.rooflines.map { String(format: "%.1f GFLOP/s on %d threads", $0.gflops, $0.threads) }
                .joined(separator: ", ")
            + (m.rooflines.allSatisfy(\.verified) ? "" : " (WRONG RESULT: OpenBLAS miscomputed)")
            + "\n# bandwidth roof: " + bandwidthRoofLine() + "\n"
            + "# \(flopsConvention)\n"
        // The K+V columns only when some case is decode-shaped (a forward pass with Lq ≤ 16):
        // the rest of the time the kernels are compute-bound and GFLOP/s is the measure.
        let bandwidth = isDecodeShaped
        if bandwidth {
            out += "# \(bandwidthConvention); bw roof = GB/s / bandwidth roof; bw local = GB/s / "
                + "the best roof pass read between the case's own timed runs (memory-bound cases)\n"
        }
        var header = ["impl", "pass", "dtype", "K/V", "B", "Hq/Hkv", "Lq", "Lk", "D", "causal", "T", "split", "median ms",
                      "min–max ms", "GFLOP/s", "roofline"]
        if bandwidth { header += ["K+V MB", "GB/s", "bw roof", "bw local"] }
        header += ["peak MB", "workspace MB", "vs naive", "max |Δ|"]
        var rows: [[String]] = [header]
        for r in cases {
            let c = r.configuration
            var row = [r.implementation.rawValue, c.pass == .forward ? "fwd" : "bwd",
                       c.storage.description,
                       (c.serving ? "serving " : "") + (c.pageSize.map { "paged \($0)" } ?? "contiguous"),
                       "\(c.batch)",
                       "\(c.queryHeads)/\(c.keyValueHeads)",
                       "\(c.queryLength)", "\(c.keyLength)", "\(c.headDim)", c.causal.rawValue,
                       "\(c.threads)", c.kvSplit.description]
            let kvMB = r.keyValueBytes.map { String(format: "%.1f", Double($0) / 1e6) } ?? ""
            if let t = r.timing {
                row += [String(format: "%.3f", t.median * 1e3),
                        String(format: "%.3f–%.3f", t.min * 1e3, t.max * 1e3),
                        String(format: "%.1f", r.gflops ?? .nan),
                        String(format: "%.3f", r.rooflineFraction ?? .nan)]
                if bandwidth {
                    row += [kvMB, r.keyValueGBps.map { String(format: "%.1f", $0) } ?? "",
                            r.bandwidthFraction.map { String(format: "%.3f", $0) } ?? "",
                            r.localBandwidthFraction.map { String(format: "%.3f", $0) } ?? ""]
                }
                row += [r.peakExtraBytes.map { String(format: "%.2f", Double($0) / 1e6) } ?? "n/a",
                        String(format: "%.2f", Double(r.workspaceBytes) / 1e6),
                        r.speedupOverNaive.map { String(format: "%.2f×", $0) } ?? "",
                        r.maxAbsDifference.map { String(format: "%.1e", $0) } ?? ""]
            } else {
                row += ["skipped", "", "", ""]
                if bandwidth { row += [kvMB, "", "", ""] }
                row += ["", String(format: "%.2f", Double(r.workspaceBytes) / 1e6), "", ""]
            }
            rows.append(row)
        }
        let widths = header.indices.map { col in rows.map { $0[col].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { col, cell in
                let pad = String(repeating: " ", count: widths[col] - cell.count)
                return col <= 3 ? cell + pad : pad + cell
            }
            out += cells.joined(separator: "  ") + "\n"
        }
        for r in cases where r.skipReason != nil {
            out += "# skipped: \(r.skipReason!)\n"
        }
        // A serving step mixes compute-bound prefill rows with bandwidth-bound decode rows: no
        // schedule beats the larger of its two roof times (FLOPs at the sgemm roof, K+V bytes at
        // the bandwidth roof), so the fraction of that bound is the larger of the two fractions.
        for r in cases where r.configuration.serving {
            guard let t = r.timing, let c = r.rooflineFraction, let b = r.bandwidthFraction else { continue }
            out += String(format: "# serving step (%@): %.1f ms at the sgemm roof, %.1f ms at the bandwidth roof; "
                + "%.3f ms measured, %.3f of the larger bound\n",
                r.configuration.pageSize.map { "paged \($0)" } ?? "contiguous",
                c * t.median * 1e3, b * t.median * 1e3, t.median * 1e3, max(c, b))
        }
        if let a = cacheAppend {
            out += String(format: "# KVCache.append of one token for %d sequences (pages of %d): %.1f µs median; "
                + "the paged attention step after it %.2f ms: %.3f %% of it\n", a.sequences, a.pageSize,
                a.appendSeconds * 1e6, a.stepSeconds * 1e3, a.fraction * 100)
        }
        for c in leftOut {
            out += "# left out: " + BenchRunner.label(c)
                + String(format: " (K+V buffers %.2f GB, over --max-kv-bytes ", Double(c.keyValueBufferBytes) / 1e9)
                + "\(ByteCount(maxKeyValueBytes ?? 0)))\n"
        }
        return out
    }
}
