import BenchmarkKit
import FlashAttention
import Foundation
import Testing
#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite("Benchmark: arguments")
struct ArgumentTests {
    @Test("lists take spaces and commas; defaults are the documented sweep")
    func lists() throws {
        let cmd = try AttentionBenchCommand.parse([
            "--seq-lens", "256,512", "1024", "--head-dims", "40", "--causal", "none,top-left",
            "--impl", "flash", "--threads", "1", "2", "--kv-heads", "2", "--heads", "8",
            "--batch", "3", "--kv-lens", "77", "--repeats", "4", "--min-time", "0.5",
            "--max-naive-bytes", "1000", "--format", "csv", "--output", "/tmp/x",
        ])
        let s = cmd.specification
        #expect(s.seqLens == [256, 512, 1024])
        #expect(s.kvLens == [77])
        #expect(s.headDims == [40])
        #expect(s.causals == [.none, .topLeft])
        #expect(s.implementations == [.flash])
        #expect(s.threads == [1, 2])
        #expect(s.kvHeads == [2] && s.heads == [8] && s.batches == [3])
        #expect(cmd.policy == TimingPolicy(warmup: 1, repeats: 4, minTime: 0.5))
        #expect(cmd.maxNaiveBytes == 1000 && cmd.format == .csv && cmd.output == "/tmp/x")
        #expect(s.configurations.count == 3 * 2 * 2)
        #expect(s.configurations.allSatisfy { $0.keyLength == 77 && $0.keyValueHeads == 2 })

        #expect(try AttentionBenchCommand.parse(["--pass", "both"]).specification.passes == [.forward, .backward])
        #expect(try AttentionBenchCommand.parse(["--window", "256,-1"]).specification.window
            == SlidingWindow(left: 256, right: nil))
        let masked = try AttentionBenchCommand.parse(["--mask-density", "0.3", "--additive-mask"]).specification
        #expect(masked.maskDensity == 0.3 && masked.additiveMask)
        let sparse = try AttentionBenchCommand.parse(["--block-sparse", "0.1,64"]).specification
        #expect(sparse.blockSparseKeep == 0.1 && sparse.blockSparseSize == 64)
        // A block-sparse case is credited only with the pairs inside its kept blocks.
        var config = BenchConfiguration(batch: 1, queryHeads: 2, keyValueHeads: 2, queryLength: 256,
                                        keyLength: 256, headDim: 16, causal: .none, threads: 1)
        let dense = config.forwardFlops
        config.blockSparseKeep = 0.25
        config.blockSparseSize = 32
        let keptBlocks = config.blockMask!.kept.filter { $0 != 0 }.count
        #expect(config.forwardFlops == dense * Double(keptBlocks) / Double(2 * 8 * 8))
        // --varlen: B sequences of N tokens in all, each ≥ 1, seeded; FLOPs per sequence.
        #expect(try AttentionBenchCommand.parse(["--varlen", "exponential"]).specification.varlen == .exponential)
        for dist in VarlenDistribution.allCases {
            var v = BenchConfiguration(batch: 7, queryHeads: 2, keyValueHeads: 2, queryLength: 1000,
                                       keyLength: 1000, headDim: 16, causal: .bottomRight, threads: 1)
            v.varlen = dist
            let lengths = try #require(v.sequenceLengths)
            #expect(lengths.count == 7 && lengths.reduce(0, +) == 1000 && lengths.allSatisfy { $0 >= 1 })
            #expect(v.sequenceLengths == lengths && v.sequenceOffsets?.last == 1000)
            #expect(dist != .equal || lengths.max()! - lengths.min()! <= 1)
            let pairs = lengths.reduce(0) { $0 + $1 * ($1 + 1) / 2 }  // causal, Lq = Lk
            #expect(v.forwardFlops == Double(4 * 16 * 2 * pairs))
            #expect(v.bufferShape.batch == 1 && v.naiveScoreBytes == 4 * lengths.max()! * lengths.max()!)
        }
        #expect(try AttentionBenchCommand.parse(["--pass", "backward"]).specification.passes == [.backward])
        let defaults = try AttentionBenchCommand.parse([]).specification
        #expect(defaults.passes == [.forward])
        #expect(defaults.seqLens == [256, 512, 1024, 2048, 4096, 8192])
        #expect(defaults.headDims == [64, 128])
        #expect(defaults.heads == [8] && defaults.batches == [1] && defaults.kvHeads == nil)
        #expect(defaults.causals == [.none, .bottomRight])
        #expect(defaults.implementations == [.flash, .naive])
        #expect(defaults.threads == [FlashAttention.defaultThreadCount])
        #expect(defaults.configurations.count == 6 * 2 * 2)
    }

    @Test("--kv-split: auto, none or a positive number of keys, in the Cartesian product")
    func kvSplit() throws {
        #expect(try AttentionBenchCommand.parse([]).specification.kvSplits == [.automatic])
        let cmd = try AttentionBenchCommand.parse(["--kv-split", "auto,none", "512", "--seq-lens", "1",
                                                   "--kv-lens", "100,200", "--head-dims", "64"])
        let s = cmd.specification
        #expect(s.kvSplits == [.automatic, .never, .keys(512)])
        #expect(s.kvSplits.map(\.keySplitSize) == [0, Int.max, 512])
        #expect(s.kvSplits.map(\.description) == ["auto", "none", "512"])
        #expect(s.configurations.count == 3 * 2 * 2)  // splits × lengths × causal modes
        #expect(s.configurations.prefix(2).allSatisfy { $0.kvSplit == .automatic })
        #expect(s.configurations.map(\.kvSplit).filter { $0 == .keys(512) }.count == 4)
        #expect(KVSplit(argument: "NONE") == .never && KVSplit(argument: " 64 ") == .keys(64))
        for bad in ["0", "-1", "", "auto ish", "0x10", "1e3", "9999999999999999999999"] {
            #expect(KVSplit(argument: bad) == nil, "\(bad)")
        }
        // Written and read back by name.
        let json = try JSONEncoder().encode([KVSplit.automatic, .never, .keys(96)])
        #expect(String(decoding: json, as: UTF8.self) == #"["auto","none","96"]"#)
        #expect(try JSONDecoder().decode([KVSplit].self, from: json) == [.automatic, .never, .keys(96)])
    }

    @Test("--scenario decode: head pairs (not their product), the decode lists, the K+V cap")
    func decodeScenario() throws {
        let s = try AttentionBenchCommand.parse(["--scenario", "decode", "--threads", "2"]).specification
        let pairs = [HeadConfiguration(32, 8), HeadConfiguration(32, 32), HeadConfiguration(8, 1)]
        #expect(s.seqLens == [1] && s.kvLens == [1024, 4096, 16384, 32768, 131072])
        #expect(s.headPairs == pairs && s.headConfigurations == pairs)
        #expect(s.batches == [1, 8] && s.headDims == [64, 128] && s.causals == [.none])
        #expect(s.kvSplits == [.automatic, .never] && s.implementations == [.flash])
        #expect(s.maxKeyValueBytes == 6 << 30 && s.threads == [2])
        let all = s.allConfigurations
        #expect(all.count == 2 * 3 * 2 * 2 * 5)  // B × pairs × D × splits × Lk
        #expect(Set(all.map { HeadConfiguration($0.queryHeads, $0.keyValueHeads) }) == Set(pairs))
        #expect(all.allSatisfy { $0.queryLength == 1 && $0.causal == .none && $0.pass == .forward })
        // B·Hkv·Lk·2D·4 over 6 GiB: B = 8 with 8/… at 131072 × D128, and with 32/32 at
        // 131072 (both D) and 32768 × D128 — 4 shapes, each with both splits.
        let out = s.leftOutConfigurations
        #expect(out.count == 4 * 2)
        #expect(s.configurations.count == all.count - 8)
        #expect(out.allSatisfy { $0.batch == 8 && $0.keyValueBufferBytes > 6 << 30 })
        #expect(s.configurations.allSatisfy { $0.keyValueBufferBytes <= 6 << 30 })
        #expect(out.contains { $0.keyValueHeads == 32 && $0.keyLength == 131072 && $0.headDim == 128
            && $0.keyValueBufferBytes == 8 * 32 * 131072 * 256 * 4 })
        #expect(!s.configurations.contains { $0.batch == 8 && $0.keyValueHeads == 32 && $0.keyLength == 32768
            && $0.headDim == 128 })
        #expect(s.configurations.contains { $0.batch == 1 && $0.keyValueHeads == 32 && $0.keyLength == 131072
            && $0.headDim == 128 })
        // The cap counts the packed buffers of a varlen case (no batch dimension).
        var packed = BenchConfiguration(batch: 4, queryHeads: 2, keyValueHeads: 2, queryLength: 100,
                                        keyLength: 100, headDim: 16, causal: .none, threads: 1)
        #expect(packed.keyValueBufferBytes == 4 * 2 * 100 * 32 * 4)
        packed.varlen = .uniform
        #expect(packed.keyValueBufferBytes == 2 * 100 * 32 * 4)

        // Options beside --scenario replace its lists.
        let b1 = try AttentionBenchCommand.parse(["--scenario", "decode", "--batch", "1", "--kv-split", "256",
                                                  "--seq-lens", "4", "--max-kv-bytes", "1G"]).specification
        #expect(b1.batches == [1] && b1.kvSplits == [.keys(256)] && b1.seqLens == [4])
        #expect(b1.kvLens == [1024, 4096, 16384, 32768, 131072] && b1.headConfigurations == pairs)
        #expect(b1.leftOutConfigurations.map(\.keyValueBufferBytes).allSatisfy { $0 > 1 << 30 })
        #expect(b1.leftOutConfigurations.count == 2)  // 32/32 at 131072 with D = 64 and 128
        // --heads / --kv-heads replace the pairs by their product.
        let crossed = try AttentionBenchCommand.parse(["--scenario", "decode", "--heads", "16",
                                                       "--kv-heads", "4,16"]).specification
        #expect(crossed.headPairs == nil)
        #expect(crossed.headConfigurations == [HeadConfiguration(16, 4), HeadConfiguration(16, 16)])
        let mqa = try AttentionBenchCommand.parse(["--scenario", "decode", "--kv-heads", "1"]).specification
        #expect(mqa.headConfigurations == [HeadConfiguration(32, 1), HeadConfiguration(8, 1)])
        // prefill is the default sweep.
        #expect(try AttentionBenchCommand.parse(["--scenario", "prefill"]).specification
            == AttentionBenchCommand.parse([]).specification)
    }

    @Test("bad values are refused with a message",
          arguments: [["--seq-lens", "0"], ["--causal", "sideways"], ["--impl", "magic"],
                      ["--heads", "8", "--kv-heads", "3"], ["--repeats", "0"],
                      ["--threads", "-1"], ["--format", "xml"], ["--seq-lens", "1,,x"],
                      ["--window", "3"], ["--window", "-2,0"], ["--block-sparse", "2,64"],
                      ["--block-sparse", "0.5"], ["--mask-density", "1.5"], ["--varlen", "zipf"],
                      ["--varlen", "uniform", "--kv-lens", "64"], ["--varlen", "equal", "--seq-lens", "4", "--batch", "5"],
                      ["--kv-split", "0"], ["--kv-split", "-64"], ["--kv-split", "auto,0"],
                      ["--kv-split", "lots"], ["--kv-split", "1.5"], ["--kv-split", "none,-8"],
                      ["--scenario", "sideways"], ["--scenario", "decode", "--max-kv-bytes", "1K"],
                      ["--scenario", "decode", "--varlen", "equal"], ["--max-kv-bytes", "-1"]])
    func refused(_ args: [String]) {
        #expect(throws: (any Error).self) { try AttentionBenchCommand.parse(args) }
    }
}

@Suite("Benchmark: FLOP counting")
struct FlopTests {
    func bruteForce(_ lq: Int, _ lk: Int, _ causal: CausalMask) -> Int {
        var n = 0
        for i in 0 ..< lq {
            for j in 0 ..< lk {
                switch causal {
                case .none: n += 1
                case .bottomRight: n += j <= i + lk - lq ? 1 : 0
                case .topLeft: n += j <= i ? 1 : 0
                }
            }
        }
        return n
    }

    @Test("visible pairs, including causal with Lq ≠ Lk")
    func pairs() {
        #expect(visibleQueryKeyPairs(queryLength: 4, keyLength: 4, causal: .bottomRight) == 10)
        #expect(visibleQueryKeyPairs(queryLength: 3, keyLength: 5, causal: .bottomRight) == 12)
        #expect(visibleQueryKeyPairs(queryLength: 5, keyLength: 3, causal: .bottomRight) == 6)
        #expect(visibleQueryKeyPairs(queryLength: 3, keyLength: 5, causal: .topLeft) == 6)
        #expect(visibleQueryKeyPairs(queryLength: 5, keyLength: 3, causal: .topLeft) == 12)
        #expect(visibleQueryKeyPairs(queryLength: 7, keyLength: 9, causal: .none) == 63)
        for (lq, lk) in [(1, 1), (1, 9), (9, 1), (17, 64), (64, 17), (33, 33)] {
            for c in [CausalMask.none, .bottomRight, .topLeft] {
                #expect(visibleQueryKeyPairs(queryLength: lq, keyLength: lk, causal: c)
                    == bruteForce(lq, lk, c))
            }
        }
    }

    @Test("visible pairs with a sliding window")
    func windowPairs() {
        func brute(_ lq: Int, _ lk: Int, _ c: CausalMask, _ w: SlidingWindow) -> Int {
            var n = 0
            for i in 0 ..< lq {
                for j in 0 ..< lk {
                    let off = lk - lq
                    var ok = true
                    if c == .bottomRight { ok = ok && j <= i + off }
                    if c == .topLeft { ok = ok && j <= i }
                    if let l = w.left { ok = ok && j >= i + off - l }
                    if let r = w.right { ok = ok && j <= i + off + r }
                    n += ok ? 1 : 0
                }
            }
            return n
        }
        for (lq, lk) in [(10, 10), (7, 20), (20, 7), (64, 64)] {
            for c in [CausalMask.none, .bottomRight, .topLeft] {
                for w in [SlidingWindow(left: 0, right: 0), SlidingWindow(left: 3, right: nil),
                          SlidingWindow(left: nil, right: 2), SlidingWindow(left: 5, right: 1)] {
                    #expect(visibleQueryKeyPairs(queryLength: lq, keyLength: lk, causal: c, window: w)
                        == brute(lq, lk, c, w))
                }
            }
        }
        // N = 8192 with a 256-key causal window: about 257 keys per row.
        let pairs = visibleQueryKeyPairs(queryLength: 8192, keyLength: 8192, causal: .bottomRight,
                                         window: SlidingWindow(left: 256, right: nil))
        #expect(pairs == 8192 * 257 - 256 * 257 / 2)
    }

    @Test("forward FLOPs = 4·B·Hq·D·pairs")
    func flops() {
        let c = BenchConfiguration(batch: 2, queryHeads: 8, keyValueHeads: 2, queryLength: 5,
                                   keyLength: 3, headDim: 64, causal: .bottomRight, threads: 1)
        #expect(c.forwardFlops == 4 * 2 * 8 * 64 * 6)
        #expect(c.naiveScoreBytes == 5 * 3 * 4)
    }

    @Test("--dtype and --kv-dtype: storages in the product, half K/V bytes, runs that agree with naive")
    func storages() throws {
        #expect(try AttentionBenchCommand.parse([]).specification.storages == [.fp32])
        let s = try AttentionBenchCommand.parse(["--dtype", "fp32,bf16", "--kv-dtype", "fp16",
                                                 "--seq-lens", "1", "--kv-lens", "300",
                                                 "--head-dims", "32", "--pass", "both"]).specification
        #expect(s.storages.map(\.description) == ["fp32", "bf16", "fp32/fp16"])
        // Forward and backward cases in each storage (× 2 causal modes).
        for pass in [BenchPass.forward, .backward] {
            let cases = s.configurations.filter { $0.pass == pass }
            #expect(cases.count == 3 * 2 && Set(cases.map(\.storage)) == Set(s.storages), "\(pass)")
        }
        let kvOnly = try AttentionBenchCommand.parse(["--kv-dtype", "bf16"]).specification
        #expect(kvOnly.storages == [BenchStorage(query: .fp32, keyValue: .bf16)])
        for bad in [["--dtype", "fp8"], ["--kv-dtype", "half"]] {
            #expect(throws: (any Error).self) { try AttentionBenchCommand.parse(bad) }
        }
        // A half K/V reads half the bytes.
        var c = BenchConfiguration(batch: 1, queryHeads: 4, keyValueHeads: 2, queryLength: 1,
                                   keyLength: 1000, headDim: 64, causal: .none, threads: 1)
        let full = c.keyValueBytes
        c.storage = BenchStorage(keyValue: .bf16)
        #expect(c.keyValueBytes * 2 == full && c.keyValueBufferBytes * 2 == 2 * 1000 * 2 * 64 * 4)
        // Every storage runs, flash beside naive, and they agree to the storage's rounding.
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("attention-bench-dtype-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cmd = try AttentionBenchCommand.parse([
            "--seq-lens", "3", "--kv-lens", "200", "--head-dims", "32", "--heads", "4",
            "--kv-heads", "2", "--threads", "1", "--causal", "none", "--dtype", "fp32,fp16,bf16",
            "--kv-dtype", "bf16", "--warmup", "0", "--repeats", "1", "--min-time", "0",
            "--bandwidth-bytes", "8M", "--output", dir.path,
        ])
        let report = try cmd.runSweep()
        #expect(report.cases.count == 4 * 2)
        for r in report.cases where r.implementation == .flash {
            let bound: Double = r.configuration.storage.query == .bf16 ? 1e-2 : r.configuration.storage.query == .fp16 ? 1e-3 : 1e-5
            #expect(try #require(r.maxAbsDifference) <= bound, "\(r.configuration.storage)")
        }
        #expect(report.csv().contains(",fp32/bf16,,,,\n"))
        #expect(report.table().contains("fp32/bf16"))
        // The backward in half storage: gradients in their types, flash beside naive.
        let backward = try AttentionBenchCommand.parse([
            "--seq-lens", "40", "--head-dims", "32", "--heads", "2", "--threads", "1",
            "--causal", "bottom-right", "--dtype", "bf16,fp16", "--pass", "backward", "--warmup", "0",
            "--repeats", "1", "--min-time", "0", "--bandwidth-bytes", "8M", "--output", dir.path,
        ]).runSweep()
        #expect(backward.cases.count == 2 * 2)
        for r in backward.cases where r.implementation == .flash {
            let bound: Double = r.configuration.storage.query == .bf16 ? 1e-2 : 1e-3
            #expect(try #require(r.maxAbsDifference) <= bound, "\(r.configuration.storage)")
        }
    }

    @Test("K+V bytes: B·Hkv·(visible keys)·(Dqk + Dv)·4, GQA, causal, windows, varlen")
    func keyValueBytes() {
        // Decode against a cache: every key is read once per key/value head, whatever Hq is.
        var c = BenchConfiguration(batch: 2, queryHeads: 32, keyValueHeads: 8, queryLength: 1,
                                   keyLength: 1000, headDim: 128, causal: .none, threads: 1)
        #expect(c.keyValueBytes == 2 * 8 * 1000 * 256 * 4)
        c.keyValueHeads = 32
        #expect(c.keyValueBytes == 2 * 32 * 1000 * 256 * 4)
        c.keyValueHeads = 1
        c.queryHeads = 8
        #expect(c.keyValueBytes == 2 * 1 * 1000 * 256 * 4)
        // One query, bottom-right causal: still every key; top-left: only key 0.
        c.causal = .bottomRight
        #expect(c.keyValueBytes == 2 * 1000 * 256 * 4)
        c.causal = .topLeft
        #expect(c.keyValueBytes == 2 * 1 * 256 * 4)
        // A 99-key window behind the query: 100 keys.
        c.causal = .bottomRight
        c.windowLeft = 99
        #expect(c.keyValueBytes == 2 * 100 * 256 * 4)
        // Backward cases carry no K+V bandwidth; forward cases do, skipped or not.
        c.pass = .backward
        #expect(CaseResult(configuration: c, implementation: .flash, flops: 0, workspaceBytes: 0)
            .keyValueBytes == nil)
        c.pass = .forward
        #expect(CaseResult(configuration: c, implementation: .naive, flops: 0, workspaceBytes: 0)
            .keyValueBytes == c.keyValueBytes)

        // Packed sequences: per sequence, so the total is the packed length whatever B is.
        for b in [1, 4, 7] {
            var v = BenchConfiguration(batch: b, queryHeads: 4, keyValueHeads: 2, queryLength: 90,
                                       keyLength: 90, headDim: 16, causal: .bottomRight, threads: 1)
            v.varlen = .exponential
            #expect(v.keyValueBytes == 90 * 2 * 32 * 4)
            v.causal = .topLeft  // self-attention: the last row of each sequence sees all of it
            #expect(v.keyValueBytes == 90 * 2 * 32 * 4)
        }

        // The visible-key count against brute force.
        for (lq, lk) in [(1, 1), (1, 9), (9, 1), (17, 64), (64, 17), (33, 33)] {
            for causal in [CausalMask.none, .bottomRight, .topLeft] {
                for w in [nil, SlidingWindow(left: 0, right: 0), SlidingWindow(left: 3, right: nil),
                          SlidingWindow(left: nil, right: 2), SlidingWindow(left: 5, right: 1)] {
                    var seen = Set<Int>()
                    for i in 0 ..< lq {
                        for j in 0 ..< lk {
                            let off = lk - lq
                            var ok = true
                            if causal == .bottomRight { ok = ok && j <= i + off }
                            if causal == .topLeft { ok = ok && j <= i }
                            if let l = w?.left { ok = ok && j >= i + off - l }
                            if let r = w?.right { ok = ok && j <= i + off + r }
                            if ok { seen.insert(j) }
                        }
                    }
                    #expect(visibleKeyCount(queryLength: lq, keyLength: lk, causal: causal, window: w)
                        == seen.count, "\(lq)×\(lk) \(causal) \(String(describing: w))")
                }
            }
        }
    }

    @Test("backward FLOPs are 2.5× the forward's; naive backward holds two score matrices")
    func backwardFlops() {
        var c = BenchConfiguration(batch: 1, queryHeads: 8, keyValueHeads: 8, queryLength: 100,
                                   keyLength: 60, headDim: 32, causal: .topLeft, threads: 2)
        let forward = c.flops
        #expect(forward == c.forwardFlops)
        c.pass = .backward
        #expect(c.flops == 2.5 * forward)
        #expect(c.naiveScoreBytes == 2 * 100 * 60 * 4)
    }

    @Test("timing summary: median of odd and even counts, spread")
    func timing() {
        let t = TimingSummary([3, 1, 2])
        #expect(t.median == 2 && t.min == 1 && t.max == 3 && t.samples == 3)
        #expect(t.spread == 1)
        #expect(TimingSummary([4, 1, 2, 3]).median == 2.5)
    }
}

/// A small report with one skipped case, for the writers.
func sampleReport() -> SweepReport {
    let roof = Roofline(size: 2048, threads: 2, gflops: 200,
                        timing: TimingSummary([0.1, 0.1, 0.1]))
    let machine = MachineInfo(cpuModel: "Test CPU, \"quoted\" <x>", kernelISA: "portable",
                              threads: 2, libraryVersion: "0.1.0", roofline: roof,
                              rooflines: [roof], date: "2026-01-01T00:00:00Z")
    var cases: [CaseResult] = []
    for (i, n) in [256, 512].enumerated() {
        let config = BenchConfiguration(batch: 1, queryHeads: 8, keyValueHeads: 8, queryLength: n,
                                        keyLength: n, headDim: 64, causal: .none, threads: 2)
        var flash = CaseResult(configuration: config, implementation: .flash,
                               flops: config.forwardFlops, workspaceBytes: 1000)
        flash.timing = TimingSummary([0.001 * Double(i + 1), 0.002, 0.003])
        flash.gflops = 50
        flash.rooflineFraction = 0.25
        flash.peakExtraBytes = 4096
        flash.speedupOverNaive = 1.5
        flash.maxAbsDifference = 1e-7
        var naive = CaseResult(configuration: config, implementation: .naive,
                               flops: config.forwardFlops, workspaceBytes: n * n * 4)
        if n == 512 {
            naive.skipReason = "naive needs 1048576 bytes, over, the limit"
        } else {
            naive.timing = TimingSummary([0.004])
            naive.gflops = 20
            naive.rooflineFraction = 0.1
            naive.peakExtraBytes = n * n * 4
        }
        cases += [flash, naive]
    }
    return SweepReport(machine: machine, policy: TimingPolicy(), cases: cases)
}

@Suite("Benchmark: paged caches and the serving mix")
struct PagedBenchTests {
    @Test("--paged runs each case contiguous and paged, flash beside naive, and they agree")
    func paged() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("attention-bench-paged-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cmd = try AttentionBenchCommand.parse([
            "--scenario", "decode", "--kv-lens", "300", "--heads", "4", "--kv-heads", "2", "--batch", "2",
            "--head-dims", "32", "--kv-split", "auto", "--paged", "16,7", "--page-layout", "nhd",
            "--impl", "flash,naive", "--threads", "1", "--warmup", "0", "--repeats", "1",
            "--min-time", "0", "--bandwidth-bytes", "8M", "--output", dir.path,
        ])
        #expect(cmd.specification.pageSizes == [nil, 16, 7])
        let report = try cmd.runSweep()
        #expect(report.cases.count == 3 * 2)
        for r in report.cases where r.implementation == .flash {
            #expect(try #require(r.maxAbsDifference) <= 1e-5, "\(r.configuration.pageSize.map(String.init) ?? "contiguous")")
        }
        #expect(report.table().contains("paged 16") && report.csv().contains(",16,nhd,,"))
        for bad in [["--paged", "0"], ["--page-layout", "xyz"], ["--paged", "16", "--pass", "backward"]] {
            #expect(throws: (any Error).self) { try AttentionBenchCommand.parse(bad) }
        }
    }

    @Test("--scenario serving: decode sequences of drawn contexts and a chunked prefill in one call")
    func serving() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("attention-bench-serving-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cmd = try AttentionBenchCommand.parse([
            "--scenario", "serving", "--kv-lens", "2048", "--seq-lens", "40", "--batch", "3",
            "--heads", "4", "--kv-heads", "2", "--head-dims", "32", "--impl", "flash,naive",
            "--threads", "1", "--warmup", "0", "--repeats", "1", "--min-time", "0",
            "--bandwidth-bytes", "8M", "--output", dir.path,
        ])
        let config = try #require(cmd.specification.configurations.first)
        let mix = try #require(config.perSequence)
        #expect(mix.queries == [1, 1, 1, 40])
        #expect(mix.keys.prefix(3).allSatisfy { (1024 ... 2048).contains($0) } && mix.keys[3] == 1024 + 40)
        // K+V bytes count each sequence's keys once; FLOPs its visible pairs.
        #expect(config.keyValueBytes == 2 * 64 * 4 * mix.keys.reduce(0, +))
        let report = try cmd.runSweep()
        #expect(report.cases.count == 2 * 2)  // contiguous and paged 16, flash and naive
        let append = try #require(report.cacheAppend)
        #expect(append.sequences == 3 && append.pageSize == 16 && append.appendSeconds > 0)
        #expect(report.table().contains("KVCache.append of one token for 3 sequences"))
        for r in report.cases where r.implementation == .flash {
            #expect(try #require(r.maxAbsDifference) <= 1e-5)
        }
    }
}

@Suite("Benchmark: writers")
struct WriterTests {
    @Test("CSV: a header, one row per case, RFC 4180 quoting")
    func csv() {
        let lines = sampleReport().csv().split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 6)  // header, 4 rows, trailing empty
        #expect(lines[0] == Substring(SweepReport.csvHeader.joined(separator: ",")))
        #expect(lines[1].hasPrefix("flash,forward,1,8,8,256,256,64,none,2,"))
        // Ten empty option fields, then K+V bytes (known even for a skipped case), no GB/s,
        // the split, no local roof, the storage, contiguous K/V (no page size, layout,
        // serving mix or per-sequence key lengths).
        #expect(lines[4].hasSuffix(",\"naive needs 1048576 bytes, over, the limit\""
            + String(repeating: ",", count: 10) + ",\(8 * 512 * 128 * 4),,,auto,,,fp32,,,,"))
        #expect(lines[1].split(separator: ",", omittingEmptySubsequences: false).count
            == SweepReport.csvHeader.count)
    }

    @Test("JSON round-trips and carries the machine")
    func json() throws {
        let report = sampleReport()
        let text = try report.json()
        let back = try JSONDecoder().decode(SweepReport.self, from: Data(text.utf8))
        #expect(back.cases.count == 4)
        #expect(back.machine.cpuModel == report.machine.cpuModel)
        #expect(back.machine.roofline.gflops == 200)
        #expect(back.cases[3].skipReason != nil && back.cases[3].timing == nil)
        #expect(back.cases[0].speedupOverNaive == 1.5)
    }

    @Test("table: aligned columns, skipped cases explained")
    func table() {
        let text = sampleReport().table()
        let lines = text.split(separator: "\n")
        let rows = lines.filter { !$0.hasPrefix("#") }
        #expect(rows.count == 5)
        #expect(Set(rows.map(\.count)).count == 1, "columns are aligned")
        #expect(text.contains("# skipped: naive needs"))
        // Cases --max-kv-bytes left out are named under the table.
        var report = sampleReport()
        report.leftOut = [BenchConfiguration(batch: 8, queryHeads: 32, keyValueHeads: 32, queryLength: 1,
                                             keyLength: 131072, headDim: 128, causal: .none, threads: 2)]
        report.maxKeyValueBytes = 6 << 30
        #expect(report.table().contains("# left out: B8 H32/32 N1x131072 D128 none T2 (K+V buffers 34.36 GB, over --max-kv-bytes 6G)"))
    }

    @Test("table: the K+V columns appear when a case is decode-shaped")
    func decodeTable() {
        var report = sampleReport()
        #expect(!report.isDecodeShaped && !report.table().contains("GB/s"))
        report.cases[0].configuration.queryLength = 1
        report.cases[0].keyValueGBps = 12.5
        report.cases[0].bandwidthFraction = 0.5
        report.machine.bandwidthRoofs = [BandwidthRoof(
            bytes: 1 << 30, threads: 2, gbps: 25, medianGBps: 24, timing: TimingSummary([0.043]),
            kernel: "avx512", l3Bytes: 32 << 20)]
        let text = report.table()
        #expect(report.isDecodeShaped)
        let rows = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(rows[0].contains("K+V MB") && rows[0].contains("bw roof"))
        #expect(rows[1].contains("12.5") && rows[1].contains("0.500"))
        #expect(Set(rows.map(\.count)).count == 1, "columns are aligned")
        #expect(text.contains("# bandwidth roof: avx512 read of 1.00 GiB (32× L3)"))
        #expect(text.contains("25.0 GB/s on 2 threads"))
    }

    @Test("SVG: well-formed XML, one chart per head dim, escaped text")
    func svg() throws {
        let charts = sampleReport().charts()
        #expect(charts.map(\.headDim) == [64])
        let svg = charts[0].svg
        #expect(svg.contains("&quot;quoted&quot; &lt;x&gt;"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 4)  // 2 series × 2 panels
        #expect(svg.contains("sgemm 200 GFLOP/s"))
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
    }

    @Test("decode chart: GB/s against Lk per (Hq/Hkv, B, split), the bandwidth roof, written as chart-decode-d<D>.svg")
    func decodeChart() throws {
        var report = sampleReport()
        #expect(report.decodeCharts().isEmpty && !report.isDecodeOnly)
        report.machine.bandwidthRoofs = [BandwidthRoof(
            bytes: 1 << 30, threads: 2, gbps: 27.5, medianGBps: 26, timing: TimingSummary([0.04]),
            kernel: "avx512", l3Bytes: 32 << 20)]
        report.machine.bandwidthRoof = report.machine.bandwidthRoofs.first
        var cases: [CaseResult] = []
        for (hq, hkv) in [(32, 8), (8, 1)] {
            for split in [KVSplit.automatic, .never] {
                for lk in [1024, 4096, 16384] {
                    var c = BenchConfiguration(batch: 1, queryHeads: hq, keyValueHeads: hkv, queryLength: 1,
                                               keyLength: lk, headDim: 128, causal: .none, threads: 2)
                    c.kvSplit = split
                    var r = CaseResult(configuration: c, implementation: .flash, flops: c.flops, workspaceBytes: 0)
                    r.timing = TimingSummary([Double(lk) * 1e-6])
                    r.keyValueGBps = Double(r.keyValueBytes!) / (Double(lk) * 1e-6) / 1e9
                    cases.append(r)
                }
            }
        }
        report.cases = cases
        #expect(report.isDecodeShaped && report.isDecodeOnly)
        let charts = report.decodeCharts()
        #expect(charts.map(\.headDim) == [128])
        let svg = charts[0].svg
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2 * 4)  // 4 lines × 2 panels
        #expect(svg.contains("bandwidth roof 27.5 GB/s"))
        #expect(svg.contains("32/8, B1, split auto") && svg.contains("8/1, B1, split none"))
        #expect(svg.contains("stroke-dasharray=\"6 4\""))  // split none is dashed
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")

        // Written beside the results; the GFLOP/s-against-N chart is left out (one N).
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("attention-bench-decode-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        try AttentionBenchCommand.parse(["--output", dir.path]).write(report)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            == ["chart-decode-d128.svg", "results.csv", "results.json", "results.txt"])
    }

    @Test("axis ticks")
    func ticks() {
        #expect(SVGChart.linearTicksForTesting(max: 233) == [0, 50, 100, 150, 200, 250])
        #expect(SVGChart.logTicksForTesting(min: 0.13, max: 268) == [0.1, 1, 10, 100, 1000])
    }
}

@Suite("Benchmark: bandwidth roof")
struct BandwidthRoofTests {
    @Test("a small buffer gives a positive, finite rate")
    func small() throws {
        let roof = try #require(BandwidthRoof.measure(bytes: 4 << 20, threads: 2, repeats: 3))
        #expect(roof.gbps.isFinite && roof.gbps > 0)
        #expect(roof.medianGBps.isFinite && roof.medianGBps > 0 && roof.medianGBps <= roof.gbps)
        #expect(roof.bytes == 4 << 20 && roof.threads == 2 && roof.timing.samples == 3)
        #expect(["avx512", "avx2", "portable"].contains(roof.kernel))
        // Sizes round down to whole pages per thread, and up to one page each.
        #expect(BandwidthRoof.measure(bytes: 3 * 4096 + 100, threads: 3, repeats: 1)?.bytes == 3 * 4096)
        #expect(BandwidthRoof.measure(bytes: 1, threads: 3, repeats: 1)?.bytes == 3 * 4096)
        #expect(BandwidthRoof.measure(bytes: 4096, threads: 0) == nil)
        // The default: max(1 GiB, 8 × L3), within [64 MiB, 4 GiB].
        #expect(BandwidthRoof.defaultBytes >= 64 << 20 && BandwidthRoof.defaultBytes <= 4 << 30)
        if BandwidthRoof.l3Bytes > 0 && BandwidthRoof.defaultBytes < 4 << 30 {
            #expect(BandwidthRoof.defaultBytes >= min(8 * BandwidthRoof.l3Bytes, 1 << 30))
        }
    }

    @Test("a kept probe buffer reads pass after pass; rounding as the roof's")
    func probe() throws {
        let probe = try #require(BandwidthProbe(bytes: 3 * 4096 + 100, threads: 3))
        #expect(probe.bytes == 3 * 4096 && probe.threads == 3)
        for _ in 0 ..< 3 {
            let g = try #require(probe.passGBps())
            #expect(g.isFinite && g > 0)
        }
        #expect(BandwidthProbe(bytes: 4096, threads: 0) == nil)
        #expect(BandwidthProbe(bytes: 0, threads: 1) == nil)
    }

    @Test("memory-bound decode cases get a local roof read between their runs; others do not")
    func localRoof() throws {
        var runner = BenchRunner(policy: TimingPolicy(warmup: 0, repeats: 2, minTime: 0),
                                 maxNaiveBytes: 1 << 30, rooflines: [:])
        let probe = try #require(BandwidthProbe(bytes: 4 << 20, threads: 1))
        runner.bandwidthProbes[1] = probe
        let decode = BenchConfiguration(batch: 1, queryHeads: 4, keyValueHeads: 2, queryLength: 1,
                                        keyLength: 4096, headDim: 64, causal: .none, threads: 1)
        let prefill = BenchConfiguration(batch: 1, queryHeads: 2, keyValueHeads: 2, queryLength: 64,
                                         keyLength: 64, headDim: 16, causal: .none, threads: 1)
        // K+V of the decode case: 2 · 4096 · 128 · 4 = 4 MiB.
        runner.localRoofMinBytes = decode.keyValueBytes
        let probed = try runner.run([decode, prefill], implementations: [.flash])
        let local = try #require(probed[0].localBandwidthGBps)
        #expect(local.isFinite && local > 0)
        let fraction = try #require(probed[0].localBandwidthFraction)
        #expect(abs(fraction - probed[0].keyValueGBps! / local) <= 1e-12 * fraction)
        #expect(probed[1].localBandwidthGBps == nil && probed[1].localBandwidthFraction == nil)
        // Under the threshold (a cache-sized case) or without a probe for its thread count: none.
        runner.localRoofMinBytes = decode.keyValueBytes + 1
        #expect(try runner.run([decode], implementations: [.flash])[0].localBandwidthGBps == nil)
        runner.localRoofMinBytes = 0
        runner.bandwidthProbes = [:]
        #expect(try runner.run([decode], implementations: [.flash])[0].localBandwidthGBps == nil)
    }

    @Test("--bandwidth-bytes takes bytes with binary suffixes")
    func byteCounts() throws {
        #expect(ByteCount(argument: "4096")?.bytes == 4096)
        #expect(ByteCount(argument: "8M")?.bytes == 8 << 20)
        #expect(ByteCount(argument: "1g")?.bytes == 1 << 30)
        #expect(ByteCount(argument: "6GiB")?.bytes == 6 << 30)
        #expect(ByteCount(argument: "64KB")?.bytes == 64 << 10)
        #expect(ByteCount(6 << 30).description == "6G" && ByteCount(1000).description == "1000"
            && ByteCount(3 << 20).description == "3M")
        for bad in ["", "M", "-1", "1.5G", "12Q", "GiB"] { #expect(ByteCount(argument: bad) == nil, "\(bad)") }
        #expect(try AttentionBenchCommand.parse(["--bandwidth-bytes", "2G"]).bandwidthBytes?.bytes == 2 << 30)
        #expect(throws: (any Error).self) { try AttentionBenchCommand.parse(["--bandwidth-bytes", "0"]) }
    }
}

@Suite("Benchmark: end to end")
struct SmokeTests {
    @Test("a tiny sweep writes its files")
    func tinySweep() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("attention-bench-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cmd = try AttentionBenchCommand.parse([
            "--seq-lens", "32", "--head-dims", "16,24", "--heads", "2", "--threads", "1",
            "--causal", "none,bottom-right", "--warmup", "0", "--repeats", "1", "--min-time", "0",
            "--bandwidth-bytes", "8M",
            "--max-naive-bytes", "4000", "--output", dir.path,
        ])
        var report = try cmd.runSweep()
        // Roofline at 2048³ is measured; a tiny sweep still measures it once. So is the
        // bandwidth roof (here on the 8 MiB --bandwidth-bytes asked for).
        #expect(report.machine.roofline.gflops > 0)
        let bandwidth = try #require(report.machine.bandwidthRoof)
        #expect(bandwidth.gbps > 0 && bandwidth.bytes == 8 << 20 && bandwidth.threads == 1)
        #expect(report.cases.count == 2 * 2 * 2)
        // 32×32×4 = 4096 bytes > 4000: every naive case is skipped, with the bytes it needs.
        #expect(report.cases.filter { $0.implementation == .naive }
            .allSatisfy { $0.skipReason?.contains("4096 bytes") == true })
        #expect(report.cases.filter { $0.implementation == .flash }
            .allSatisfy { ($0.gflops ?? 0) > 0 && $0.timing?.samples == 1 })
        try cmd.write(report)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(files == ["chart-d16.svg", "chart-d24.svg", "results.csv", "results.json",
                          "results.txt"])
        let csv = try String(contentsOf: dir.appendingPathComponent("results.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 1 + 8)

        // With naive allowed, flash and naive agree and the speedup is filled in.
        let both = try AttentionBenchCommand.parse([
            "--seq-lens", "32", "--head-dims", "16", "--heads", "2", "--threads", "1",
            "--causal", "top-left", "--warmup", "0", "--repeats", "1", "--min-time", "0",
            "--bandwidth-bytes", "8M",
            "--output", dir.path,
        ])
        report = try both.runSweep()
        let flash = try #require(report.cases.first { $0.implementation == .flash })
        #expect(flash.speedupOverNaive != nil)
        #expect(try #require(flash.maxAbsDifference) < 1e-5)

        // The backward pass: both implementations run, agree, and are credited 2.5× the FLOPs.
        let backward = try AttentionBenchCommand.parse([
            "--seq-lens", "40", "--head-dims", "16", "--heads", "2", "--kv-heads", "1",
            "--threads", "1", "--causal", "bottom-right", "--pass", "both", "--warmup", "0",
            "--repeats", "1", "--min-time", "0", "--bandwidth-bytes", "8M", "--output", dir.path,
        ])
        report = try backward.runSweep()
        #expect(report.cases.count == 4)
        let bwd = try #require(report.cases.first { $0.implementation == .flash && $0.configuration.pass == .backward })
        let fwd = try #require(report.cases.first { $0.implementation == .flash && $0.configuration.pass == .forward })
        #expect(bwd.flops == 2.5 * fwd.flops)
        #expect(try #require(bwd.maxAbsDifference) < 1e-4)
        #expect(bwd.workspaceBytes > 0)

        // Packed sequences: flash and naive agree in both passes.
        let varlen = try AttentionBenchCommand.parse([
            "--seq-lens", "90", "--batch", "4", "--head-dims", "16", "--heads", "2", "--threads", "1",
            "--causal", "bottom-right", "--varlen", "exponential", "--pass", "both", "--warmup", "0",
            "--repeats", "1", "--min-time", "0", "--bandwidth-bytes", "8M", "--output", dir.path,
        ])
        report = try varlen.runSweep()
        #expect(report.cases.count == 4)
        #expect(report.cases.allSatisfy { $0.skipReason == nil && ($0.maxAbsDifference ?? 1) < 1e-4 })
    }
}
