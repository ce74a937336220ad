// ring-attention — ring attention across MPI ranks, run under mpirun:
//   check  every rank's rows of the ring's forward and backward against the float64 reference
//          and single-process attention on the same full inputs; bitwise determinism across
//          thread counts; collective errors; a communicator other than the world
//   bench  a long sequence over 1, 2, 4 … ranks: time per call, where it went (kernel, merge,
//          transfers the compute did not hide) and one hop's message time
//
//   mpirun --allow-run-as-root --oversubscribe -np 4 .build-mpi/release/ring-attention check
//   mpirun -np 2 .build-mpi/release/ring-attention bench --length 16384 --ranks 1,2
import ArgumentParser
import FlashAttention
import FlashAttentionMPI
import TestSupport
#if MPI
import CMPI
#endif

@main
struct RingAttentionTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-attention",
        abstract: "Ring attention over MPI: its correctness check and its benchmark (run under mpirun).",
        subcommands: [Check.self, Bench.self])
}

let noMPI = "ring-attention: this build has no MPI (build with --traits OpenMP,MPI and Open MPI installed)"

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ring forward and backward against the float64 reference and single-process attention.")

    @Option(help: "The second thread count of the determinism check (the first is 1).")
    var threads = 2

    func run() throws {
        #if MPI
        MPIEnvironment.initialize()
        defer { MPIEnvironment.finalize() }
        let world = MPICommunicator.world
        if world.rank == 0 { print("ring-attention check: \(world.size) rank(s)") }
        var failures = 0
        for c in ringCases { failures += checkCase(c, on: world, threads: threads) }
        failures += checkCollectiveErrors(on: world)
        failures += checkSubCommunicators(on: world, threads: threads)
        var total = [Double(failures)]
        fa_mpi_max_doubles(world.comm, &total, 1)
        if world.rank == 0 { print(total[0] == 0 ? "ring-attention check: all passed" : "ring-attention check: FAILED") }
        if total[0] != 0 { throw ExitCode(1) }
        #else
        print(noMPI)
        throw ExitCode(2)
        #endif
    }
}

/// One problem of the check: the whole sequence as an ordinary case, dealt out in `layout`.
struct RingCase {
    var layout: RingLayout
    var attention: AttentionCase
}

/// Lengths that are not multiples of the rank counts, tiles or vectors (N = 1 and 3 leave
/// ranks without tokens); causal with zigzag and contiguous, non-causal, GQA, windows, ALiBi,
/// soft-capping, both tensor layouts, batch > 1.
let ringCases: [RingCase] = [
    RingCase(layout: .contiguous, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, queryLength: 1, headDim: 16), seed: 11)),
    RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, queryLength: 3, headDim: 8), causal: .bottomRight, seed: 12)),
    RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 17, headDim: 8),
        causal: .bottomRight, seed: 13)),
    RingCase(layout: .contiguous, attention: AttentionCase(
        shape: AttentionShape(batch: 2, queryHeads: 3, queryLength: 63, headDim: 17, valueHeadDim: 9),
        seed: 14)),
    RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, queryLength: 65, headDim: 32),
        causal: .bottomRight, window: SlidingWindow(left: 7, right: nil),
        alibiSlopes: [0.5, 0.0625], seed: 15)),
    RingCase(layout: .contiguous, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 127, headDim: 64),
        causal: .topLeft, softcap: 20, magnitude: 3, seed: 16)),
    RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 6, keyValueHeads: 2, queryLength: 129, headDim: 24),
        window: SlidingWindow(left: 20, right: 5), layout: .blhd, seed: 17)),
    RingCase(layout: .contiguous, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, queryLength: 200, headDim: 40),
        causal: .bottomRight, window: SlidingWindow(left: 33, right: nil), magnitude: 30, seed: 18)),
    RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: 1000, headDim: 32),
        causal: .bottomRight, seed: 19)),
]

// MARK: Rows of a rank

/// Rows `rows` (global positions) of a packed `[B, H, N, D]` tensor in `layout`, packed again.
func takeRows(_ x: [Float], layout: TensorLayout, batch: Int, heads: Int, length: Int, dim: Int,
              rows: [Int]) -> [Float] {
    let from = AttentionStrides.packed(layout, heads: heads, length: length, dim: dim)
    let to = AttentionStrides.packed(layout, heads: heads, length: rows.count, dim: dim)
    var out = [Float](repeating: 0, count: batch * heads * rows.count * dim)
    for b in 0 ..< batch { for h in 0 ..< heads { for (i, p) in rows.enumerated() { for d in 0 ..< dim {
        out[b * to.batch + h * to.head + i * to.sequence + d] = x[b * from.batch + h * from.head + p * from.sequence + d]
    } } } }
    return out
}

/// Rows `rows` of a dense `[outer, N, dim]` array.
func takeDenseRows<T>(_ x: [T], outer: Int, length: Int, dim: Int, rows: [Int]) -> [T] {
    var out: [T] = []
    out.reserveCapacity(outer * rows.count * dim)
    for o in 0 ..< outer { for p in rows { out += x[(o * length + p) * dim ..< (o * length + p + 1) * dim] } }
    return out
}

/// The reference restricted to a rank's rows.
func restrict(_ r: ReferenceResult, _ s: AttentionShape, rows: [Int]) -> ReferenceResult {
    let bh = s.batch * s.queryHeads, n = s.queryLength
    var x = r
    x.output = takeDenseRows(r.output, outer: bh, length: n, dim: s.valueHeadDim, rows: rows)
    x.logSumExp = takeDenseRows(r.logSumExp, outer: bh, length: n, dim: 1, rows: rows)
    x.outputTolerance = takeDenseRows(r.outputTolerance, outer: bh, length: n, dim: 1, rows: rows)
    x.logSumExpTolerance = takeDenseRows(r.logSumExpTolerance, outer: bh, length: n, dim: 1, rows: rows)
    x.visibleKeys = takeDenseRows(r.visibleKeys, outer: bh, length: n, dim: 1, rows: rows)
    x.visibleRanges = takeDenseRows(r.visibleRanges, outer: bh, length: n, dim: 1, rows: rows)
    return x
}

func restrict(_ g: ReferenceGradients, _ s: AttentionShape, rows: [Int]) -> ReferenceGradients {
    let bq = s.batch * s.queryHeads, bk = s.batch * s.keyValueHeads, n = s.queryLength
    var x = g
    x.query = takeDenseRows(g.query, outer: bq, length: n, dim: s.headDim, rows: rows)
    x.queryTolerance = takeDenseRows(g.queryTolerance, outer: bq, length: n, dim: s.headDim, rows: rows)
    x.key = takeDenseRows(g.key, outer: bk, length: n, dim: s.headDim, rows: rows)
    x.keyTolerance = takeDenseRows(g.keyTolerance, outer: bk, length: n, dim: s.headDim, rows: rows)
    x.value = takeDenseRows(g.value, outer: bk, length: n, dim: s.valueHeadDim, rows: rows)
    x.valueTolerance = takeDenseRows(g.valueTolerance, outer: bk, length: n, dim: s.valueHeadDim, rows: rows)
    return x
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Double {
    var m = 0.0
    for (x, y) in zip(a, b) where x != y { m = max(m, x.isFinite && y.isFinite ? Double(abs(x - y)) : .infinity) }
    return a.count == b.count ? m : .infinity
}

func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

#if MPI
// MARK: Check

/// Runs one case on `comm` (every rank of it), checks this rank's rows, and agrees on the
/// verdict; the communicator's rank 0 prints it. Returns 1 on failure, else 0.
func checkCase(_ rc: RingCase, on comm: MPICommunicator, threads: Int, label: String = "") -> Int {
    let full = rc.attention, s = full.shape, n = s.queryLength, lay = full.layout
    // [worst err/tol forward, backward, ring−single forward, gradients, not bitwise, errors]
    var verdict = [Double](repeating: 0, count: 6)
    var message = ""
    do {
        let slice = try RingAttention.slice(sequenceLength: n, ranks: comm.size, rank: comm.rank, layout: rc.layout)
        let rows = slice.runs.flatMap { Array($0) }
        let (q, k, v) = full.inputs()
        let dO = full.outputGradient().data
        var local = s
        local.queryLength = rows.count
        local.keyLength = rows.count
        let lq = takeRows(q.data, layout: lay, batch: s.batch, heads: s.queryHeads, length: n, dim: s.headDim, rows: rows)
        let lk = takeRows(k.data, layout: lay, batch: s.batch, heads: s.keyValueHeads, length: n, dim: s.headDim, rows: rows)
        let lv = takeRows(v.data, layout: lay, batch: s.batch, heads: s.keyValueHeads, length: n, dim: s.valueHeadDim, rows: rows)
        let ldO = takeRows(dO, layout: lay, batch: s.batch, heads: s.queryHeads, length: n, dim: s.valueHeadDim, rows: rows)

        var results: [(out: [Float], lse: [Float], grads: AttentionGradients)] = []
        for t in [1, threads] {
            var options = full.options
            options.threadCount = t
            let (out, lse) = try RingAttention.forward(query: lq, key: lk, value: lv, shape: local,
                                                       sequenceLength: n, layout: rc.layout,
                                                       options: options, communicator: comm)
            let g = try RingAttention.backward(query: lq, key: lk, value: lv, output: out, logSumExp: lse,
                                               outputGradient: ldO, shape: local, sequenceLength: n,
                                               layout: rc.layout, options: options, communicator: comm)
            results.append((out, lse, g))
        }
        let (a, b) = (results[0], results[1])
        if !(sameBits(a.out, b.out) && sameBits(a.lse, b.lse) && sameBits(a.grads.query, b.grads.query)
            && sameBits(a.grads.key, b.grads.key) && sameBits(a.grads.value, b.grads.value)) {
            verdict[4] = 1
        }

        let ref = full.reference()
        let refGrads = full.referenceGradients(forward: ref)
        let fwd = compare(output: a.out, strides: .packed(lay, heads: s.queryHeads, length: rows.count, dim: s.valueHeadDim),
                          logSumExp: a.lse, reference: restrict(ref, s, rows: rows), shape: local)
        let bwd = compareGradients(a.grads, layout: lay, reference: restrict(refGrads, s, rows: rows), shape: local)
        verdict[0] = fwd.defects.isEmpty ? fwd.worstRatio : .infinity
        verdict[1] = bwd.defects.isEmpty ? bwd.worstRatio : .infinity
        if !fwd.passed { message += " forward: \(fwd)" }
        if !bwd.passed { message += " backward: \(bwd)" }

        // Single-process attention on the same full inputs, this rank's rows.
        var options = full.options
        options.threadCount = 1
        let (so, sl) = try FlashAttention.forwardWithLogSumExp(query: q.data, key: k.data, value: v.data,
                                                               shape: s, options: options)
        let sg = try FlashAttention.backward(query: q.data, key: k.data, value: v.data, output: so, logSumExp: sl,
                                             outputGradient: dO, shape: s, options: options)
        verdict[2] = max(maxAbsDifference(a.out, takeRows(so, layout: lay, batch: s.batch, heads: s.queryHeads,
                                                          length: n, dim: s.valueHeadDim, rows: rows)),
                         maxAbsDifference(a.lse, takeDenseRows(sl, outer: s.batch * s.queryHeads, length: n,
                                                               dim: 1, rows: rows)))
        verdict[3] = max(maxAbsDifference(a.grads.query, takeRows(sg.query, layout: lay, batch: s.batch, heads: s.queryHeads,
                                                                  length: n, dim: s.headDim, rows: rows)),
                         maxAbsDifference(a.grads.key, takeRows(sg.key, layout: lay, batch: s.batch, heads: s.keyValueHeads,
                                                                length: n, dim: s.headDim, rows: rows)),
                         maxAbsDifference(a.grads.value, takeRows(sg.value, layout: lay, batch: s.batch, heads: s.keyValueHeads,
                                                                  length: n, dim: s.valueHeadDim, rows: rows)))
    } catch {
        verdict[5] = 1
        message += " error: \(error)"
    }
    fa_mpi_max_doubles(comm.comm, &verdict, Int32(verdict.count))
    let failed = verdict[0] > 1 || verdict[1] > 1 || verdict[4] != 0 || verdict[5] != 0
    if !message.isEmpty { print("  rank \(comm.rank)\(label):\(message)") }
    if comm.rank == 0 {
        func f(_ x: Double) -> String { x.isFinite ? String(format4(x)) : "\(x)" }
        print("\(failed ? "FAIL" : "ok  ")\(label) \(rc.layout) N=\(n) \(full.description): "
              + "err/tol forward \(f(verdict[0])) backward \(f(verdict[1])); "
              + "ring vs single-process max |Δ| forward \(f(verdict[2])) gradients \(f(verdict[3])); "
              + "threads 1 vs \(threads) \(verdict[4] == 0 ? "bitwise equal" : "DIFFER")")
    }
    return failed ? 1 : 0
}

func format4(_ x: Double) -> String {
    if x == 0 { return "0" }
    let e = Int((x.magnitude).exponent)
    if e < -10 || e > 20 {
        var m = x, p = 0
        while m.magnitude >= 10 { m /= 10; p += 1 }
        while m.magnitude < 1 { m *= 10; p -= 1 }
        return "\(Double(Int(m * 100)) / 100)e\(p)"
    }
    return "\(Double(Int(x * 10000)) / 10000)"
}

/// Bad arguments on one rank: every rank must throw (no rank may wait forever), the others
/// naming the bad rank; and the ring must work again afterwards.
func checkCollectiveErrors(on comm: MPICommunicator) -> Int {
    let n = 37, R = comm.size, r = comm.rank, bad = R - 1
    let slice = try! RingAttention.slice(sequenceLength: n, ranks: R, rank: r, layout: .zigzag)
    let m = slice.count
    func arrays(_ len: Int) -> [Float] { (0 ..< 2 * len * 8).map { Float(($0 * 7919) % 13) / 13 - 0.5 } }
    struct Trial { var name: String; var run: () throws(RingAttentionError) -> Void }
    let shape = AttentionShape(queryHeads: 2, queryLength: m, headDim: 8)
    let good = arrays(m)
    var trials: [Trial] = [
        Trial(name: "rank \(bad) passes a slice length that is not its slice's (C's check)") { () throws(RingAttentionError) in
            let len = r == bad ? m + 1 : m
            let x = arrays(len)
            _ = try RingAttention.forward(query: x, key: x, value: x,
                                          shape: AttentionShape(queryHeads: 2, queryLength: len, headDim: 8),
                                          sequenceLength: n, layout: .zigzag, communicator: comm)
        },
        Trial(name: "rank \(bad) passes a key array of the wrong size (Swift's check)") { () throws(RingAttentionError) in
            let k = r == bad ? good + [0] : good
            _ = try RingAttention.forward(query: good, key: k, value: good, shape: shape,
                                          sequenceLength: n, layout: .zigzag, communicator: comm)
        },
        Trial(name: "rank \(bad) passes an element mask the ring does not take") { () throws(RingAttentionError) in
            var options = AttentionOptions(causal: .bottomRight)
            if r == bad {
                options.mask = AttentionMask(boolean: [Bool](repeating: true, count: 2 * max(m, 1) * max(m, 1)),
                                             strides: .dense(AttentionShape(queryHeads: 2, queryLength: max(m, 1), headDim: 8)))
            }
            _ = try RingAttention.backward(query: good, key: good, value: good, output: good,
                                           logSumExp: [Float](repeating: 0, count: 2 * m), outputGradient: good,
                                           shape: shape, sequenceLength: n, layout: .zigzag,
                                           options: options, communicator: comm)
        },
    ]
    if R > 1 {
        trials.append(Trial(name: "rank \(bad) passes another scale") { () throws(RingAttentionError) in
            _ = try RingAttention.forward(query: good, key: good, value: good, shape: shape, sequenceLength: n,
                                          layout: .zigzag, options: AttentionOptions(scale: r == bad ? 0.5 : nil),
                                          communicator: comm)
        })
    }
    var failures = 0
    // Not a communicator (MPI_COMM_NULL, a handle MPI never issued): every rank finds it alone.
    for (name, handle) in [("MPI_COMM_NULL", MPICommunicator(fa_mpi_comm_null()!).handle), ("handle 99999", 99999)] {
        var ok = 0.0
        do {
            _ = try RingAttention.forward(query: good, key: good, value: good, shape: shape, sequenceLength: n,
                                          layout: .zigzag, communicator: MPICommunicator(handle: handle))
        } catch {
            if case .mpiUnavailable = error { ok = 1 } else { print("  rank \(r): UNEXPECTED \(error)") }
        }
        var all = [-ok]
        fa_mpi_max_doubles(comm.comm, &all, 1)
        if all[0] != -1 { failures += 1 }
        if r == 0 { print("\(all[0] == -1 ? "ok  " : "FAIL") not a communicator (\(name)): every rank threw mpiUnavailable") }
    }
    for t in trials {
        var ok = 0.0, message = ""
        do {
            try t.run()
            message = "returned normally"
        } catch {
            message = error.description
            // The bad rank reports its own error; the others name it (a disagreement is
            // reported by every rank alike).
            switch error {
            case .invalidArgument, .invalidRingArgument: ok = r == bad ? 1 : 0
            case let .anotherRankFailed(rank, _): ok = r != bad && rank == bad ? 1 : 0
            case .ranksDisagree: ok = R > 1 ? 1 : 0
            default: ok = 0
            }
        }
        var all = [-ok]  // max of −ok: 0 when every rank threw as expected
        fa_mpi_max_doubles(comm.comm, &all, 1)
        if all[0] != -1 { failures += 1 }
        if ok == 0 || r == 0 || r == bad {
            print("  rank \(r): \(ok == 1 ? "" : "UNEXPECTED ")\(message)")
        }
        if r == 0 { print("\(all[0] == -1 ? "ok  " : "FAIL") collective error: \(t.name): every rank threw") }
    }
    return failures
}

/// The world split into communicators of its even and odd ranks (a ring per half, as in
/// context parallelism inside data parallelism), each running its own case at once.
func checkSubCommunicators(on world: MPICommunicator, threads: Int) -> Int {
    guard world.size >= 2 else { return 0 }
    let color = world.rank % 2
    var handle = fa_mpi_comm_split(world.comm, Int32(color), Int32(world.rank))
    let sub = MPICommunicator(handle!)
    defer { MPI_Comm_free(&handle) }
    let c = RingCase(layout: .zigzag, attention: AttentionCase(
        shape: AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: color == 0 ? 45 : 31, headDim: 16),
        causal: .bottomRight, seed: 40 + UInt64(color)))
    var failed = [Double(checkCase(c, on: sub, threads: threads, label: " [sub-communicator \(color) of \(sub.size)]"))]
    fa_mpi_max_doubles(world.comm, &failed, 1)
    return Int(failed[0])
}
#endif

// MARK: Bench

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A long sequence over 1, 2, 4 … ranks: time per call, kernel, merge, exposed transfers, message time.")

    @Option(help: "Sequence length.") var length = 16384
    @Option(help: "Query heads.") var heads = 4
    @Option(help: "Key/value heads (default: as many as query heads).") var kvHeads: Int?
    @Option(help: "Head dim.") var headDim = 64
    @Flag(inversion: .prefixedNo, help: "Causal mask.") var causal = true
    @Option(help: "Token layout: zigzag or contiguous.") var layout = "zigzag"
    @Option(help: "Rank counts to run, each on the first ranks of the world (the others sleep).")
    var ranks = "1,2"
    @Option(help: "Threads per rank.") var threads = 1
    @Option(help: "Timed repeats (after one warm-up); the median is reported.") var repeats = 3
    @Flag(help: "Time the backward too.") var backward = false

    func run() throws {
        #if MPI
        MPIEnvironment.initialize()
        defer { MPIEnvironment.finalize() }
        let world = MPICommunicator.world
        let counts = ranks.split(separator: ",").compactMap { Int($0) }.filter { $0 >= 1 && $0 <= world.size }
        guard layout == "zigzag" || layout == "contiguous" else { throw ValidationError("--layout: zigzag or contiguous") }
        let ringLayout: RingLayout = layout == "zigzag" ? .zigzag : .contiguous
        let kvh = kvHeads ?? heads
        if world.rank == 0 {
            print("ring-attention bench: N=\(length) H=\(heads)/\(kvh) D=\(headDim) \(causal ? "causal" : "non-causal") "
                  + "\(layout), \(threads) thread(s) per rank, \(world.size) process(es), median of \(repeats)")
            print("pass      ranks  time s   ×1 rank  kernel s  merge s  exposed wait s  one hop s  kernel calls")
        }
        var baseline: [String: Double] = [:]
        // The single-process kernel on the whole sequence, for reference (rank 0 alone).
        if world.rank == 0 {
            let shape = AttentionShape(queryHeads: heads, keyValueHeads: kvh, queryLength: length, headDim: headDim)
            let q = randomArray(shape.queryCount, seed: 1), k = randomArray(shape.keyCount, seed: 2), v = randomArray(shape.valueCount, seed: 3)
            let options = AttentionOptions(causal: causal ? .bottomRight : .none, threadCount: threads)
            var times: [Double] = []
            var out: ([Float], [Float]) = ([], [])
            for i in 0 ... repeats {
                let t0 = MPI_Wtime()
                out = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v, shape: shape, options: options)
                if i > 0 { times.append(MPI_Wtime() - t0) }
            }
            print("forward   single-process \(fmt(median(times)))")
            if backward {
                let dO = randomArray(shape.outputCount, seed: 4)
                times = []
                for i in 0 ... repeats {
                    let t0 = MPI_Wtime()
                    _ = try FlashAttention.backward(query: q, key: k, value: v, output: out.0, logSumExp: out.1,
                                                    outputGradient: dO, shape: shape, options: options)
                    if i > 0 { times.append(MPI_Wtime() - t0) }
                }
                print("backward  single-process \(fmt(median(times)))")
            }
        }
        fa_mpi_sleepy_barrier(world.comm)
        for r in counts {
            let active = world.rank < r
            var sub = fa_mpi_comm_split(world.comm, active ? 0 : -1, Int32(world.rank))
            if active, let handle = sub {
                let comm = MPICommunicator(handle)
                let slice = try RingAttention.slice(sequenceLength: length, ranks: r, rank: comm.rank, layout: ringLayout)
                let shape = AttentionShape(queryHeads: heads, keyValueHeads: kvh, queryLength: slice.count, headDim: headDim)
                let seed = UInt64(comm.rank) * 16
                let q = randomArray(shape.queryCount, seed: seed + 1), k = randomArray(shape.keyCount, seed: seed + 2)
                let v = randomArray(shape.valueCount, seed: seed + 3), dO = randomArray(shape.outputCount, seed: seed + 4)
                let options = AttentionOptions(causal: causal ? .bottomRight : .none, threadCount: threads)
                var fwd: [RingTiming] = [], bwd: [RingTiming] = []
                var out: ([Float], [Float]) = ([], [])
                for i in 0 ... repeats {
                    comm.barrier()
                    let f = try RingAttention.forwardTimed(query: q, key: k, value: v, shape: shape, sequenceLength: length,
                                                           layout: ringLayout, options: options, communicator: comm)
                    out = (f.output, f.logSumExp)
                    if i > 0 { fwd.append(f.timing) }
                }
                if backward {
                    for i in 0 ... repeats {
                        comm.barrier()
                        let b = try RingAttention.backwardTimed(query: q, key: k, value: v, output: out.0, logSumExp: out.1,
                                                                outputGradient: dO, shape: shape, sequenceLength: length,
                                                                layout: ringLayout, options: options, communicator: comm)
                        if i > 0 { bwd.append(b.timing) }
                    }
                }
                // One hop of the largest slice's K/V (the forward's message; the backward's
                // dK/dV messages are as large again).
                var hop = 0.0
                if r > 1 {
                    let floats = (length + r - 1) / r * kvh * 2 * headDim
                    let send = [Float](repeating: 1, count: floats)
                    var recv = [Float](repeating: 0, count: floats)
                    var hops: [Double] = []
                    for _ in 0 ..< 5 {
                        comm.barrier()
                        let t0 = MPI_Wtime()
                        fa_mpi_ring_hop(comm.comm, send, &recv, Int32(floats), Int32((comm.rank + 1) % r),
                                        Int32((comm.rank + r - 1) % r))
                        hops.append(MPI_Wtime() - t0)
                    }
                    hop = median(hops)
                }
                for (name, timings) in [("forward", fwd), ("backward", bwd)] where !timings.isEmpty {
                    // Each repeat's slowest rank; the median over repeats.
                    var rows: [[Double]] = []
                    for t in timings {
                        var x = [t.total, t.kernel, t.merge, t.wait, hop, Double(t.kernelCalls)]
                        fa_mpi_max_doubles(comm.comm, &x, Int32(x.count))
                        rows.append(x)
                    }
                    let total = median(rows.map { $0[0] })
                    let row = rows.first { $0[0] == total } ?? rows[0]
                    if r == 1 { baseline[name] = total }
                    if comm.rank == 0 {
                        let ratio = baseline[name].map { fmt(total / $0) } ?? "-"
                        print("\(name.padding(9)) \(String(r).padding(6)) \(fmt(total).padding(8)) \(ratio.padding(8)) "
                              + "\(fmt(row[1]).padding(9)) \(fmt(row[2]).padding(8)) \(fmt(row[3]).padding(15)) "
                              + "\(fmt(row[4]).padding(10)) \(Int(row[5]))")
                    }
                }
                MPI_Comm_free(&sub)
            }
            fa_mpi_sleepy_barrier(world.comm)
        }
        #else
        print(noMPI)
        throw ExitCode(2)
        #endif
    }
}

func randomArray(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return randomFloats(count, magnitude: 1, using: &rng)
}

func median(_ x: [Double]) -> Double {
    let s = x.sorted()
    return s.isEmpty ? .nan : s[s.count / 2]
}

func fmt(_ x: Double) -> String {
    x < 0.001 ? "\(Double(Int(x * 1e6)) / 1e6)" : "\(Double(Int(x * 1e4)) / 1e4)"
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
