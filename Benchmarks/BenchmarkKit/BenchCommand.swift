import ArgumentParser
import FlashAttention
import Foundation

/// A list option that accepts `--seq-lens 256 512` as well as `--seq-lens 256,512`.
public struct ListArgument<Element: ExpressibleByArgument & Sendable>: ExpressibleByArgument, Sendable {
    public var values: [Element]

    public init(_ values: [Element]) { self.values = values }

    public init?(argument: String) {
        var values: [Element] = []
        for part in argument.split(separator: ",") {
            guard let v = Element(argument: String(part.trimmingCharacters(in: .whitespaces))) else {
                return nil
            }
            values.append(v)
        }
        guard !values.isEmpty else { return nil }
        self.values = values
    }
}

extension BenchCausal: ExpressibleByArgument {}
extension VarlenDistribution: ExpressibleByArgument {}
extension KVSplit: ExpressibleByArgument {}
extension BenchElementType: ExpressibleByArgument {}

/// A byte count: an integer, optionally with a binary suffix K, M, G or T (KiB, MiB, …; 1024-based).
public struct ByteCount: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    public var bytes: Int

    public init(_ bytes: Int) { self.bytes = bytes }

    public init?(argument: String) {
        var text = argument.trimmingCharacters(in: .whitespaces).uppercased()
        for unit in ["IB", "B"] where text.hasSuffix(unit) && text.count > unit.count {
            text.removeLast(unit.count)
            break
        }
        var shift = 0
        if let last = text.last, let s = ["K": 10, "M": 20, "G": 30, "T": 40][String(last)] {
            shift = s
            text.removeLast()
        }
        guard let n = Int(text), n >= 0, n <= Int.max >> shift else { return nil }
        bytes = n << shift
    }

    /// The largest exact binary suffix: 6442450944 is "6G", 1000 stays "1000".
    public var description: String {
        for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)]
        where bytes > 0 && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return "\(bytes)"
    }
}

/// --pass values.
public enum PassChoice: String, CaseIterable, ExpressibleByArgument, Sendable {
    case forward, backward, both

    var passes: [BenchPass] {
        switch self {
        case .forward: [.forward]
        case .backward: [.backward]
        case .both: [.forward, .backward]
        }
    }
}

/// --scenario values: the named sweeps (see ``SweepPreset``).
public enum BenchScenario: String, CaseIterable, ExpressibleByArgument, Sendable {
    case prefill, decode, serving

    public var preset: SweepPreset {
        switch self {
        case .prefill: .prefill
        case .decode: .decode
        case .serving: .serving
        }
    }
}

/// The output format on stdout.
public enum OutputFormat: String, CaseIterable, ExpressibleByArgument, Sendable {
    case table, csv, json
}

/// `attention-bench`: sequence-length sweeps of flash vs naive, against the sgemm roofline.
public struct AttentionBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "attention-bench",
        abstract: "Sweeps attention passes: time, GFLOP/s against the sgemm roofline, K+V GB/s "
            + "against the memory-bandwidth roof, and peak memory, flash beside naive.",
        discussion: """
        Every list option takes values separated by spaces or commas. The sweep is the \
        Cartesian product of the lists. Writes results.csv, results.json, results.txt and one \
        SVG chart per head dim to --output (and chart-decode-d<D>.svg, GB/s against Lk, when \
        the sweep is decode-shaped: Lq ≤ 16), and a table (or --format csv/json) to stdout; \
        progress goes to stderr.

        Scenarios (--scenario) set every list at once; an option given beside --scenario \
        replaces the scenario's value for that list (--heads or --kv-heads replace its head \
        pairs by the product of the two).

        prefill: the default sweep, --seq-lens 256,512,1024,2048,4096,8192 (Lk = Lq) \
        --heads 8 --batch 1 --head-dims 64,128 --causal none,bottom-right --impl flash,naive \
        --kv-split auto.

        serving: one step of a server, all in one call: --batch decode sequences (one query \
        each, contexts drawn log-uniformly in [1024, Lk], seeded) and one chunked prefill of N \
        rows on a prefix of 1024 keys, bottom-right causal; --seq-lens 512 --kv-lens 32768 \
        --batch 8, Hq/Hkv 32/8, --head-dims 128 --paged 16 (beside contiguous) --impl flash. \
        K+V bytes count each sequence's keys once. It also times KVCache.append of one token \
        for each decode sequence (into a cache holding their contexts) against the paged \
        attention step that follows it (a line under the table; cacheAppend in JSON).

        decode: one new token against a long K/V cache, --seq-lens 1 \
        --kv-lens 1024,4096,16384,32768,131072, Hq/Hkv in the pairs 32/8, 32/32 and 8/1 (not \
        their product), --batch 1,8 --head-dims 64,128 --kv-split auto,none --impl flash \
        --causal none. Cases whose K+V buffers exceed --max-kv-bytes are left out (each named \
        on stderr).

        Two roofs are measured before and after the sweep with each thread count of the sweep \
        (the better of the two counts): OpenBLAS sgemm 2048³ (GFLOP/s) and a read stream over \
        a buffer far larger than the L3 (GB/s, 10⁹ bytes/s; --bandwidth-bytes). Forward cases \
        report the bytes of K+V they must read (B·Hkv·visible keys·(Dqk + Dv)·4), those bytes \
        over the median time and that as a fraction of the bandwidth roof; the table shows \
        these columns when some case has Lq ≤ 16, CSV and JSON always. Decode cases whose K+V \
        reads are at least twice the L3 also read the roof's buffer (kept through the sweep) \
        between their timed runs, about every 50 ms, untimed: "bw local" is their GB/s over \
        the best of those passes, the bandwidth of the same seconds.
        """)

    @Option(help: "A named sweep: prefill (the default sweep) or decode; see above.")
    public var scenario: BenchScenario?

    @Option(name: .customLong("seq-lens"), parsing: .upToNextOption,
            help: "Query lengths N (Lk = N unless --kv-lens is given; default 256 … 8192; decode: 1).")
    public var seqLens: [ListArgument<Int>] = []

    @Option(name: .customLong("kv-lens"), parsing: .upToNextOption,
            help: "Key lengths Lk (decode: 1024,4096,16384,32768,131072).")
    public var kvLens: [ListArgument<Int>] = []

    @Option(name: .customLong("head-dims"), parsing: .upToNextOption, help: "Head dims D (default 64,128).")
    public var headDims: [ListArgument<Int>] = []

    @Option(parsing: .upToNextOption, help: "Query heads Hq (default 8; decode: the pairs 32/8, 32/32, 8/1).")
    public var heads: [ListArgument<Int>] = []

    @Option(name: .customLong("kv-heads"), parsing: .upToNextOption,
            help: "Key/value heads Hkv (default: Hq); combinations where Hq % Hkv ≠ 0 are left out.")
    public var kvHeads: [ListArgument<Int>] = []

    @Option(parsing: .upToNextOption, help: "Batch sizes B (default 1; decode: 1,8).")
    public var batch: [ListArgument<Int>] = []

    @Option(parsing: .upToNextOption,
            help: "Causal modes: none, bottom-right, top-left (default none,bottom-right; decode: none).")
    public var causal: [ListArgument<BenchCausal>] = []

    @Option(parsing: .upToNextOption,
            help: "Implementations: flash, naive, flash-portable (or flash-scalar), flash-avx2, flash-avx512, flash-avx512bf16, flash-avx512amx, flash-neon, flash-neonbf16 (default flash,naive; decode: flash).")
    public var impl: [ListArgument<BenchImplementation>] = []

    @Option(parsing: .upToNextOption, help: "Thread counts (default: every core OpenMP offers).")
    public var threads: [ListArgument<Int>] = []

    @Option(name: .customLong("kv-split"), parsing: .upToNextOption,
            help: ArgumentHelp("Split-KV chunk sizes (AttentionOptions.keySplitSize): auto (the library chooses), none (never split) or a number of keys (default auto; decode: auto,none).", valueName: "SIZES"))
    public var kvSplit: [ListArgument<KVSplit>] = []

    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Element types of every tensor, forward and backward: fp32, fp16, bf16 (default fp32). Sums and accumulators are fp32 whatever the storage; all-bf16 cases on AVX512-BF16 form their products over bf16 pairs (P, and the backward's dS, rounded to bf16).", valueName: "TYPES"))
    public var dtype: [ListArgument<BenchElementType>] = []

    @Option(name: .customLong("kv-dtype"), parsing: .upToNextOption,
            help: ArgumentHelp("Element types of K and V alone, Q and O staying fp32 (a half K/V cache; decode then reads half the bytes). Cases of --dtype and --kv-dtype are both run.", valueName: "TYPES"))
    public var kvDtype: [ListArgument<BenchElementType>] = []

    @Option(help: "Sliding window LEFT,RIGHT in FlashAttention's sense (-1 = unbounded side).")
    public var window: String?

    @Option(help: "Logit soft-cap c (scores become c·tanh(s/c)).")
    public var softcap: Float?

    @Flag(help: "Add ALiBi biases with BLOOM's slopes.")
    public var alibi = false

    @Option(name: .customLong("block-sparse"),
            help: "Block-sparse mask KEEP,SIZE: keep this fraction of SIZE×SIZE blocks (seeded).")
    public var blockSparse: String?

    @Option(name: .customLong("mask-density"),
            help: "A dense random boolean mask keeping this fraction of [B, Hq, Lq, Lk].")
    public var maskDensity: Double?

    @Flag(name: .customLong("additive-mask"), help: "A dense random additive mask in [-2, 2).")
    public var additiveMask = false

    @Option(help: ArgumentHelp("Packed variable-length sequences: each case packs --batch sequences of N tokens in all (keys the same sequences), lengths drawn from DIST: equal, uniform or exponential.", valueName: "DIST"))
    public var varlen: VarlenDistribution?

    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Paged K/V caches: each case also runs with K and V in pages of these sizes (pages in a seeded random order of the pool, so the reads are scattered), beside the contiguous case (serving: 16).", valueName: "PAGE_SIZES"))
    public var paged: [ListArgument<Int>] = []

    @Option(name: .customLong("page-layout"),
            help: "The page pools' layout: hnd ([pages, Hkv, page, D]) or nhd ([pages, page, Hkv, D]).")
    public var pageLayout = "hnd"

    @Option(help: "Passes: forward, backward or both.")
    public var pass: PassChoice = .forward

    @Option(help: "Untimed runs before each case.")
    public var warmup = 1

    @Option(help: "Timed runs per case, at least.")
    public var repeats = 3

    @Option(name: .customLong("min-time"), help: "Keep repeating a case until this many seconds were timed.")
    public var minTime = 0.25

    @Option(name: .customLong("max-naive-bytes"),
            help: "Skip naive cases whose score matrix would exceed this many bytes.")
    public var maxNaiveBytes = 2 << 30

    @Option(name: .customLong("max-kv-bytes"),
            help: ArgumentHelp("Leave out cases whose K and V buffers would take more bytes (suffixes K, M, G: 1024-based).", valueName: "BYTES"))
    public var maxKVBytes = ByteCount(6 << 30)

    @Option(name: .customLong("bandwidth-bytes"),
            help: ArgumentHelp("Bytes the bandwidth roof reads (suffixes K, M, G: 1024-based; default max(1 GiB, 8 × L3), at most 4 GiB and a quarter of the RAM).", valueName: "BYTES"))
    public var bandwidthBytes: ByteCount?

    @Option(help: "Format on stdout: table, csv or json.")
    public var format: OutputFormat = .table

    @Option(help: "Directory for results.csv, results.json and the SVG charts.")
    public var output = "results"

    @Flag(help: "Print the kernel ISA, tile sizes and cache sizes the sweep would use, and exit.")
    public var info = false

    public init() {}

    /// The sweep: the scenario's lists (prefill's by default), each replaced by the option
    /// given on the command line, if any.
    public var specification: SweepSpecification {
        let preset = (scenario ?? .prefill).preset
        func given<T>(_ list: [ListArgument<T>]) -> [T]? { list.isEmpty ? nil : list.flatMap(\.values) }
        // Explicit --heads / --kv-heads replace the scenario's pairs by their product.
        let explicitHeads = !heads.isEmpty || !kvHeads.isEmpty
        var spec = SweepSpecification(
            seqLens: given(seqLens) ?? preset.seqLens,
            kvLens: given(kvLens) ?? preset.kvLens,
            headDims: given(headDims) ?? preset.headDims,
            heads: given(heads) ?? preset.heads,
            kvHeads: given(kvHeads),
            batches: given(batch) ?? preset.batches,
            causals: given(causal) ?? preset.causals,
            implementations: given(impl) ?? preset.implementations,
            threads: given(threads) ?? [FlashAttention.defaultThreadCount])
        spec.headPairs = explicitHeads ? nil : preset.headPairs
        spec.kvSplits = given(kvSplit) ?? preset.kvSplits
        var storages = (given(dtype) ?? (kvDtype.isEmpty ? [.fp32] : [])).map {
            BenchStorage(query: $0, keyValue: $0)
        }
        for t in given(kvDtype) ?? [] where !storages.contains(BenchStorage(keyValue: t)) {
            storages.append(BenchStorage(keyValue: t))
        }
        spec.storages = storages
        spec.maxKeyValueBytes = maxKVBytes.bytes
        spec.passes = pass.passes
        spec.window = parsedWindow
        spec.softcap = softcap
        spec.alibi = alibi
        spec.maskDensity = maskDensity
        spec.additiveMask = additiveMask
        spec.varlen = varlen
        let pages = given(paged) ?? (scenario == .serving ? [16] : [])
        spec.pageSizes = [nil] + pages.map { Optional($0) }
        spec.pageLayout = pageLayout
        spec.serving = scenario == .serving
        if let (keep, size) = parsedBlockSparse {
            spec.blockSparseKeep = keep
            spec.blockSparseSize = size
        }
        return spec
    }

    var parsedBlockSparse: (Double, Int)? {
        guard let blockSparse else { return nil }
        let parts = blockSparse.split(separator: ",")
        guard parts.count == 2, let keep = Double(parts[0]), let size = Int(parts[1]),
              keep >= 0, keep <= 1, size >= 1 else { return nil }
        return (keep, size)
    }

    /// --window as a SlidingWindow (nil when absent or malformed; validate() reports the latter).
    var parsedWindow: SlidingWindow? {
        guard let window else { return nil }
        let sides = window.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sides.count == 2, let l = sides[0], let r = sides[1], l >= -1, r >= -1 else { return nil }
        return SlidingWindow(left: l < 0 ? nil : l, right: r < 0 ? nil : r)
    }

    public var policy: TimingPolicy {
        TimingPolicy(warmup: warmup, repeats: repeats, minTime: minTime)
    }

    public func validate() throws {
        let s = specification
        for (name, list) in [("--seq-lens", s.seqLens), ("--kv-lens", s.kvLens ?? [1]),
                             ("--head-dims", s.headDims), ("--heads", s.heads),
                             ("--kv-heads", s.kvHeads ?? [1]), ("--batch", s.batches),
                             ("--threads", s.threads)] {
            if let bad = list.first(where: { $0 < 1 }) {
                throw ValidationError("\(name) takes positive integers; got \(bad)")
            }
        }
        if let softcap, !(softcap.isFinite && softcap > 0) {
            throw ValidationError("--softcap must be a positive number; got \(softcap)")
        }
        if let maskDensity, !(maskDensity >= 0 && maskDensity <= 1) {
            throw ValidationError("--mask-density takes a fraction between 0 and 1")
        }
        if blockSparse != nil && parsedBlockSparse == nil {
            throw ValidationError("--block-sparse takes KEEP,SIZE with 0 ≤ KEEP ≤ 1 and SIZE ≥ 1")
        }
        if window != nil && parsedWindow == nil {
            throw ValidationError("--window takes LEFT,RIGHT, each ≥ -1 (-1 = unbounded); got \(window!)")
        }
        if varlen != nil {
            if s.kvLens != nil || blockSparse != nil || maskDensity != nil || additiveMask {
                throw ValidationError("--varlen packs self-attention sequences: it takes no --kv-lens (nor --scenario decode), --block-sparse, --mask-density or --additive-mask")
            }
            if let n = s.seqLens.min(), let b = s.batches.max(), n < b {
                throw ValidationError("--varlen needs at least one token per sequence: N = \(n) < --batch \(b)")
            }
        }
        if let bad = s.pageSizes.compactMap({ $0 }).first(where: { $0 < 1 }) {
            throw ValidationError("--paged takes page sizes ≥ 1; got \(bad)")
        }
        if pageLayout != "hnd" && pageLayout != "nhd" {
            throw ValidationError("--page-layout is hnd or nhd; got \(pageLayout)")
        }
        if s.pageSizes.count > 1 && s.passes.contains(.backward) {
            throw ValidationError("--paged runs the forward only (the backward does not read paged K/V)")
        }
        if s.serving && (varlen != nil || s.passes.contains(.backward)) {
            throw ValidationError("--scenario serving is a forward step with its own lengths: no --varlen, no backward")
        }
        if s.headConfigurations.isEmpty {
            throw ValidationError("no configuration: every --kv-heads value must divide a --heads value")
        }
        if s.configurations.isEmpty {
            throw ValidationError("no configuration: every case's K+V buffers exceed --max-kv-bytes \(maxKVBytes)")
        }
        if warmup < 0 || repeats < 1 || minTime < 0 || maxNaiveBytes < 0 {
            throw ValidationError("--warmup ≥ 0, --repeats ≥ 1, --min-time ≥ 0 and --max-naive-bytes ≥ 0")
        }
        if let bandwidthBytes, bandwidthBytes.bytes < 1 {
            throw ValidationError("--bandwidth-bytes must be positive")
        }
    }

    public func run() throws {
        if info {
            print(try infoText(), terminator: "")
            return
        }
        let report = try runSweep { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        switch format {
        case .table: print(report.table(), terminator: "")
        case .csv: print(report.csv(), terminator: "")
        case .json: print(try report.json(), terminator: "")
        }
        try write(report)
    }

    /// What --info prints.
    public func infoText() throws -> String {
        let spec = specification
        var out = "swift-flash-attention \(FlashAttention.version)\n"
        out += "kernels: \(FlashAttention.kernelName) (supported: "
            + FlashAttention.supportedKernels.map(\.rawValue).joined(separator: ", ")
            + "; FA_ISA=\(ProcessInfo.processInfo.environment["FA_ISA"] ?? "unset"))\n"
        out += "CPU features: \(FlashAttention.cpuFeatures.joined(separator: " "))\n"
        out += "threads: \(FlashAttention.defaultThreadCount) by default; sweep: "
            + spec.threads.map(String.init).joined(separator: ", ") + "\n"
        out += "OpenBLAS core: \(Roofline.openBLASCore)"
            + (ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map { " (OPENBLAS_CORETYPE=\($0))" } ?? "")
            + "\n"
        var printedCaches = false
        for impl in spec.implementations where impl != .naive {
            for d in spec.headDims {
                for n in spec.seqLens {
                    let heads = spec.headConfigurations[0]
                    let shape = AttentionShape(batch: spec.batches[0], queryHeads: heads.queryHeads,
                                               keyValueHeads: heads.keyValueHeads,
                                               queryLength: n, keyLength: spec.kvLens?.first ?? n,
                                               headDim: d)
                    let options = AttentionOptions(threadCount: spec.threads[0], kernel: impl.kernel)
                    guard let k = try? FlashAttention.kernelInfo(shape: shape, options: options) else {
                        out += "\(impl.rawValue): not supported on this CPU\n"
                        break
                    }
                    if !printedCaches {
                        out += "caches: L1d \(k.l1dBytes / 1024) KiB, L2 \(k.l2Bytes / 1024) KiB, "
                            + "L3 \(k.l3Bytes / 1024) KiB\n"
                        printedCaches = true
                    }
                    let ws = try FlashAttention.workspaceBytes(shape: shape, options: options)
                    out += "\(impl.rawValue) D=\(d) N=\(n): \(k.kernel.rawValue), vector \(k.vectorWidth) floats, "
                        + "block \(k.blockQ) queries × \(k.blockK) keys, workspace \(ws) bytes\n"
                }
            }
        }
        return out
    }

    /// Measures the rooflines — sgemm and the memory-bandwidth roof — before and after the
    /// sweep (the faster of the two is the ceiling, so a slow moment of a noisy machine does
    /// not inflate every fraction), runs the sweep and returns the report.
    public func runSweep(progress: @escaping (String) -> Void = { _ in }) throws -> SweepReport {
        let spec = specification
        let threadCounts = Array(Set(spec.threads)).sorted()
        let streamBytes = bandwidthBytes?.bytes ?? BandwidthRoof.defaultBytes
        func measureAll(_ when: String) -> (sgemm: [Int: Roofline], bandwidth: [Int: BandwidthRoof]) {
            var out: [Int: Roofline] = [:]
            var bandwidth: [Int: BandwidthRoof] = [:]
            for t in threadCounts {
                progress("roofline \(when): OpenBLAS sgemm 2048³ on \(t) threads …")
                out[t] = Roofline.measure(threads: t)
                progress(String(format: "roofline \(when): %.1f GFLOP/s", out[t]!.gflops))
                progress(String(format: "bandwidth roof \(when): reading %.2f GiB on %d threads …",
                                Double(streamBytes) / 1073741824, t))
                if let roof = BandwidthRoof.measure(bytes: streamBytes, threads: t) {
                    bandwidth[t] = roof
                    progress(String(format: "bandwidth roof \(when): %.1f GB/s (median pass %.1f)",
                                    roof.gbps, roof.medianGBps))
                } else {
                    progress("bandwidth roof \(when): could not allocate \(streamBytes) bytes")
                }
            }
            return (out, bandwidth)
        }
        for c in spec.leftOutConfigurations {
            progress("left out: " + BenchRunner.label(c)
                + String(format: " (K+V buffers %.2f GB, over --max-kv-bytes ", Double(c.keyValueBufferBytes) / 1e9)
                + "\(maxKVBytes))")
        }
        let before = measureAll("before")
        var runner = BenchRunner(policy: policy, maxNaiveBytes: maxNaiveBytes, rooflines: before.sgemm,
                                 progress: progress)
        // The roof's buffer is kept through the sweep when some case is memory-bound decode,
        // to be read between that case's timed runs (BenchRunner.bandwidthProbes).
        if spec.configurations.contains(where: runner.readsLocalRoof) {
            for t in threadCounts {
                progress("bandwidth probe: keeping \(streamBytes) bytes for \(t) threads")
                runner.bandwidthProbes[t] = BandwidthProbe(bytes: streamBytes, threads: t)
            }
        }
        var cases = try runner.run(spec.configurations, implementations: spec.implementations)
        let after = measureAll("after")
        var rooflines: [Int: Roofline] = [:]
        var bandwidthRoofs: [Int: BandwidthRoof] = [:]
        for t in threadCounts {
            let b = before.sgemm[t]!, a = after.sgemm[t]!
            var best = a.gflops > b.gflops ? a : b
            best.verified = a.verified && b.verified
            rooflines[t] = best
            bandwidthRoofs[t] = [before.bandwidth[t], after.bandwidth[t]].compactMap { $0 }
                .max { $0.gbps < $1.gbps }
        }
        for i in cases.indices {
            if let g = cases[i].gflops, let roof = rooflines[cases[i].configuration.threads] {
                cases[i].rooflineFraction = g / roof.gflops
            }
            if let g = cases[i].keyValueGBps, let roof = bandwidthRoofs[cases[i].configuration.threads] {
                cases[i].bandwidthFraction = g / roof.gbps
            }
        }
        var machine = MachineInfo.current(threads: spec.threads.max()!,
                                          rooflines: rooflines.values.sorted { $0.threads < $1.threads })
        machine.bandwidthRoofs = bandwidthRoofs.values.sorted { $0.threads < $1.threads }
        machine.bandwidthRoof = machine.bandwidthRoofs.max { $0.threads < $1.threads }
        var report = SweepReport(machine: machine, policy: policy, cases: cases)
        report.leftOut = spec.leftOutConfigurations
        if spec.serving, let config = spec.configurations.first {
            let pageSize = spec.pageSizes.compactMap { $0 }.first ?? 16
            progress("KVCache.append: one token for \(config.batch) sequences, pages of \(pageSize) …")
            report.cacheAppend = try CacheAppendTiming.measure(config, pageSize: pageSize)
        }
        report.maxKeyValueBytes = spec.maxKeyValueBytes
        return report
    }

    /// Writes results.csv, results.json, results.txt and the charts into `output`:
    /// chart-d<D>.svg (GFLOP/s against N; not when every case is decode-shaped, where N is
    /// one point) and chart-decode-d<D>.svg (GB/s against Lk) when some case is decode-shaped.
    public func write(_ report: SweepReport) throws {
        let dir = URL(fileURLWithPath: output, isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try report.csv().write(to: dir.appendingPathComponent("results.csv"), atomically: true, encoding: .utf8)
        try report.json().write(to: dir.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
        try report.table().write(to: dir.appendingPathComponent("results.txt"), atomically: true, encoding: .utf8)
        if !report.isDecodeOnly {
            for chart in report.charts() {
                try chart.svg.write(to: dir.appendingPathComponent("chart-d\(chart.headDim).svg"),
                                    atomically: true, encoding: .utf8)
            }
        }
        for chart in report.decodeCharts() {
            try chart.svg.write(to: dir.appendingPathComponent("chart-decode-d\(chart.headDim).svg"),
                                atomically: true, encoding: .utf8)
        }
    }
}
