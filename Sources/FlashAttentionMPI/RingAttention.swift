import CFlashAttention
import CRingAttention
import FlashAttention

/// How a sequence's tokens are dealt to the ranks of a ring.
public enum RingLayout: Sendable, Hashable {
    /// Rank `r` of `R` holds tokens `⌊r·N/R⌋ ..< ⌊(r+1)·N/R⌋`.
    case contiguous
    /// The sequence is cut into `2R` chunks and rank `r` holds chunks `r` and `2R − 1 − r`, in
    /// that order: with a causal mask every rank then has the same work.
    case zigzag

    var cValue: fa_ring_layout { self == .contiguous ? FA_RING_CONTIGUOUS : FA_RING_ZIGZAG }
}

/// The tokens one rank holds: runs of global positions, stored one after the other along the
/// rank's local sequence dimension.
public struct RingSlice: Sendable, Hashable {
    /// Global positions of each run (one for `.contiguous`, two for `.zigzag`; a run may be
    /// empty).
    public var runs: [Range<Int>]
    /// The local sequence length: the runs' total.
    public var count: Int { runs.reduce(0) { $0 + $1.count } }
}

/// Why a ring call failed. Every failure before the first transfer is collective: when one
/// rank's arguments are bad, every rank of the communicator throws (that rank
/// ``invalidArgument(_:)`` or ``invalidRingArgument(reason:)``, the others
/// ``anotherRankFailed(rank:reason:)``), so no rank waits for a transfer that never comes.
public enum RingAttentionError: Error, Sendable, CustomStringConvertible {
    /// This rank's arguments fail the library's checks (shape, buffers, options), as for a
    /// single-process call.
    case invalidArgument(AttentionError)
    /// This rank's ring arguments are bad: the sequence length, a slice length that is not this
    /// rank's slice, an option the ring does not take.
    case invalidRingArgument(reason: String)
    /// Another rank's arguments are bad; nothing was transferred.
    case anotherRankFailed(rank: Int, reason: String)
    /// The ranks passed different shapes or options (all of them throw this).
    case ranksDisagree(reason: String)
    /// This build has no MPI (the package trait `MPI`), MPI is not initialized or already
    /// finalized, or the communicator is not one.
    case mpiUnavailable(reason: String)
    /// An allocation or a kernel call failed during the ring (this rank only; the transfers
    /// were completed).
    case failedDuringRing(reason: String)

    public var description: String {
        switch self {
        case let .invalidArgument(e): e.description
        case let .invalidRingArgument(reason): "invalid ring argument: \(reason)"
        case let .anotherRankFailed(rank, reason): "rank \(rank) failed its checks: \(reason)"
        case let .ranksDisagree(reason): reason
        case let .mpiUnavailable(reason): reason
        case let .failedDuringRing(reason): reason
        }
    }

    init(_ diag: fa_diagnostic, strides: AttentionTensorStrides) {
        let message = withUnsafeBytes(of: diag.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let kind = diag.values.2 - FA_RING_FAILURE_TAG
        switch kind {
        case Int64(FA_RING_FAILURE_SETUP.rawValue): self = .mpiUnavailable(reason: message)
        case Int64(FA_RING_FAILURE_ARGUMENT.rawValue): self = .invalidRingArgument(reason: message)
        case Int64(FA_RING_FAILURE_OTHER_RANK.rawValue), Int64(FA_RING_FAILURE_CANCELLED.rawValue):
            let prefix = "rank \(diag.values.1): "  // C's message starts with it
            self = .anotherRankFailed(rank: Int(diag.values.1),
                                      reason: message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message)
        case Int64(FA_RING_FAILURE_DISAGREE.rawValue): self = .ranksDisagree(reason: message)
        case Int64(FA_RING_FAILURE_RUN.rawValue): self = .failedDuringRing(reason: message)
        default: self = .invalidArgument(AttentionError(diag, strides: strides))
        }
    }
}

/// Where one rank's time went in a ring call, in seconds summed over the steps.
public struct RingTiming: Sendable, Hashable {
    /// The whole call, the collective check included.
    public var total: Double
    /// The flash kernel calls.
    public var kernel: Double
    /// Merging partial results (forward) or adding gradients (backward).
    public var merge: Double
    /// Blocked on transfers after each step's compute: the communication the compute did not
    /// hide.
    public var wait: Double
    /// Ring steps (the rank count) and kernel calls made.
    public var steps: Int, kernelCalls: Int

    init(_ t: fa_ring_timing) {
        total = t.total
        kernel = t.kernel
        merge = t.merge
        wait = t.wait
        steps = Int(t.steps)
        kernelCalls = Int(t.pairs)
    }
}

/// Exact attention over one sequence spread across the ranks of an MPI communicator (ring
/// attention: Liu, Zaharia and Abbeel, 2023).
///
/// Every rank holds its ``RingSlice`` of Q, K and V and calls the same function at the same
/// time. K/V slices travel around the ring while each rank runs the flash kernel on its own
/// queries against the slice it holds (at global positions, so causal masks, windows and ALiBi
/// mean what they mean on the whole sequence) and merges the partial results by
/// log-sum-exp. The backward keeps dQ at home and sends each slice's dK, dV around with it.
/// Results are bitwise identical for a given rank count whatever the thread counts.
///
/// The arrays are this rank's slice, dense in `options.layout`, with
/// `shape.queryLength == shape.keyLength == slice.count` (0 for a rank without tokens).
/// Options: scale, causal (either alignment), window, softcap, ALiBi, threads, kernel.
/// Masks, lengths, packed offsets and explicit positions are refused. The check of the
/// arguments is collective: a bad argument on one rank makes every rank throw (the others
/// `kernelFailure` naming that rank) before any transfer.
///
/// Ring calls talk to MPI from the calling thread: make them one at a time per process (MPI
/// initialized with at least `MPI_THREAD_SERIALIZED`, as ``MPIEnvironment/initialize()``
/// does), or initialize MPI with `MPI_THREAD_MULTIPLE` to run rings on different
/// communicators from several threads at once.
///
/// Needs the package trait `MPI`; without it ``isAvailable`` is `false` and every call throws.
public enum RingAttention {
    /// Whether this build has MPI.
    public static var isAvailable: Bool { fa_ring_available() != 0 }

    /// The tokens rank `rank` of `ranks` holds.
    public static func slice(sequenceLength: Int, ranks: Int, rank: Int,
                             layout: RingLayout = .zigzag) throws(AttentionError) -> RingSlice {
        guard sequenceLength >= 1, sequenceLength <= Int(Int32.max) else {
            throw .invalidExtent(argument: "sequenceLength", value: sequenceLength)
        }
        guard ranks >= 1, ranks <= Int(Int32.max) else { throw .invalidExtent(argument: "ranks", value: ranks) }
        guard rank >= 0, rank < ranks else { throw .invalidExtent(argument: "rank", value: rank) }
        var s = fa_ring_slice()
        _ = fa_ring_slice_of(Int64(sequenceLength), Int32(ranks), Int32(rank), layout.cValue, &s)
        let starts = [Int(s.start.0), Int(s.start.1)], lens = [Int(s.len.0), Int(s.len.1)]
        return RingSlice(runs: (0 ..< Int(s.runs)).map { starts[$0] ..< starts[$0] + lens[$0] })
    }

    /// The ring forward: this rank's rows of the output and log-sum-exp.
    ///
    /// ```swift
    /// MPIEnvironment.initialize()
    /// let world = MPICommunicator.world
    /// let slice = try RingAttention.slice(sequenceLength: n, ranks: world.size, rank: world.rank)
    /// let local = AttentionShape(queryHeads: 8, queryLength: slice.count, headDim: 64)
    /// let (out, lse) = try RingAttention.forward(query: q, key: k, value: v, shape: local,
    ///                                            sequenceLength: n, layout: .zigzag,
    ///                                            options: AttentionOptions(causal: .bottomRight),
    ///                                            communicator: world)
    /// ```
    public static func forward(query: [Float], key: [Float], value: [Float], shape: AttentionShape,
                               sequenceLength: Int, layout: RingLayout = .zigzag,
                               options: AttentionOptions = AttentionOptions(),
                               communicator: MPICommunicator) throws(RingAttentionError)
        -> (output: [Float], logSumExp: [Float])
    {
        let r = try forwardTimed(query: query, key: key, value: value, shape: shape,
                                 sequenceLength: sequenceLength, layout: layout, options: options,
                                 communicator: communicator)
        return (r.output, r.logSumExp)
    }

    /// ``forward(query:key:value:shape:sequenceLength:layout:options:communicator:)``, also
    /// reporting where this rank's time went.
    public static func forwardTimed(query: [Float], key: [Float], value: [Float], shape: AttentionShape,
                                    sequenceLength: Int, layout: RingLayout = .zigzag,
                                    options: AttentionOptions = AttentionOptions(),
                                    communicator: MPICommunicator) throws(RingAttentionError)
        -> (output: [Float], logSumExp: [Float], timing: RingTiming)
    {
        let (strides, problem) = try prepare(shape: shape, options: options, communicator: communicator) {
            () throws(AttentionError) in
            try expectCount(query.count, shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, "query")
            try expectCount(key.count, shape.batch * shape.keyValueHeads * shape.keyLength * shape.headDim, "key")
            try expectCount(value.count, shape.batch * shape.keyValueHeads * shape.keyLength * shape.valueHeadDim, "value")
        }
        var p = problem
        let n = shape.queryLength
        let outputCount = shape.batch * shape.queryHeads * n * shape.valueHeadDim
        let lseCount = shape.batch * shape.queryHeads * n
        var timing = fa_ring_timing()
        var diag = fa_diagnostic()
        var status = FA_OK
        var output = [Float](repeating: 0, count: outputCount)
        var lse = [Float](repeating: 0, count: lseCount)
        do {
        try query.withUnsafeBufferPointer { (q) throws(AttentionError) in
        try key.withUnsafeBufferPointer { (k) throws(AttentionError) in
        try value.withUnsafeBufferPointer { (v) throws(AttentionError) in
        try output.withUnsafeMutableBufferPointer { (o) throws(AttentionError) in
        try lse.withUnsafeMutableBufferPointer { (l) throws(AttentionError) in
            p.q = UnsafeRawPointer(q.baseAddress)
            p.k = UnsafeRawPointer(k.baseAddress)
            p.v = UnsafeRawPointer(v.baseAddress)
            p.o = UnsafeMutableRawPointer(o.baseAddress)
            p.lse = l.baseAddress
            // withScoreModifiers only throws what its body throws: nothing here.
            try withScoreModifiers(options, &p) { (problem) throws(AttentionError) in
                status = fa_ring_forward_timed(&problem, Int64(sequenceLength), layout.cValue,
                                               communicator.handle, &timing, &diag)
            }
        } } } } }
        } catch { throw .invalidArgument(error) }
        guard status == FA_OK else { throw RingAttentionError(diag, strides: strides) }
        return (output, lse, RingTiming(timing))
    }

    /// The ring backward: this rank's rows of dQ, dK and dV, from the ring forward's output and
    /// log-sum-exp (exactly as it returned them) and this rank's rows of ∂loss/∂output.
    public static func backward(query: [Float], key: [Float], value: [Float], output: [Float],
                                logSumExp: [Float], outputGradient: [Float], shape: AttentionShape,
                                sequenceLength: Int, layout: RingLayout = .zigzag,
                                options: AttentionOptions = AttentionOptions(),
                                communicator: MPICommunicator) throws(RingAttentionError)
        -> AttentionGradients
    {
        try backwardTimed(query: query, key: key, value: value, output: output, logSumExp: logSumExp,
                          outputGradient: outputGradient, shape: shape, sequenceLength: sequenceLength,
                          layout: layout, options: options, communicator: communicator).gradients
    }

    /// ``backward(query:key:value:output:logSumExp:outputGradient:shape:sequenceLength:layout:options:communicator:)``,
    /// also reporting where this rank's time went.
    public static func backwardTimed(query: [Float], key: [Float], value: [Float], output: [Float],
                                     logSumExp: [Float], outputGradient: [Float], shape: AttentionShape,
                                     sequenceLength: Int, layout: RingLayout = .zigzag,
                                     options: AttentionOptions = AttentionOptions(),
                                     communicator: MPICommunicator) throws(RingAttentionError)
        -> (gradients: AttentionGradients, timing: RingTiming)
    {
        let (strides, problem) = try prepare(shape: shape, options: options, communicator: communicator) {
            () throws(AttentionError) in
            let n = shape.queryLength
            try expectCount(query.count, shape.batch * shape.queryHeads * n * shape.headDim, "query")
            try expectCount(key.count, shape.batch * shape.keyValueHeads * shape.keyLength * shape.headDim, "key")
            try expectCount(value.count, shape.batch * shape.keyValueHeads * shape.keyLength * shape.valueHeadDim, "value")
            try expectCount(output.count, shape.batch * shape.queryHeads * n * shape.valueHeadDim, "output")
            try expectCount(outputGradient.count, output.count, "outputGradient")
            try expectCount(logSumExp.count, shape.batch * shape.queryHeads * n, "logSumExp")
        }
        var p = problem
        p.dout_strides = strides.output.cStrides
        p.dq_strides = strides.query.cStrides
        p.dk_strides = strides.key.cStrides
        p.dv_strides = strides.value.cStrides
        var timing = fa_ring_timing()
        var diag = fa_diagnostic()
        var status = FA_OK
        var dq = [Float](repeating: 0, count: query.count)
        var dk = [Float](repeating: 0, count: key.count)
        var dv = [Float](repeating: 0, count: value.count)
        do {
        try query.withUnsafeBufferPointer { (q) throws(AttentionError) in
        try key.withUnsafeBufferPointer { (k) throws(AttentionError) in
        try value.withUnsafeBufferPointer { (v) throws(AttentionError) in
        try output.withUnsafeBufferPointer { (o) throws(AttentionError) in
        try logSumExp.withUnsafeBufferPointer { (l) throws(AttentionError) in
        try outputGradient.withUnsafeBufferPointer { (g) throws(AttentionError) in
        try dq.withUnsafeMutableBufferPointer { (dqp) throws(AttentionError) in
        try dk.withUnsafeMutableBufferPointer { (dkp) throws(AttentionError) in
        try dv.withUnsafeMutableBufferPointer { (dvp) throws(AttentionError) in
            p.q = UnsafeRawPointer(q.baseAddress)
            p.k = UnsafeRawPointer(k.baseAddress)
            p.v = UnsafeRawPointer(v.baseAddress)
            p.o = UnsafeMutableRawPointer(mutating: o.baseAddress)
            p.lse = UnsafeMutablePointer(mutating: l.baseAddress)
            p.dout = UnsafeRawPointer(g.baseAddress)
            p.dq = UnsafeMutableRawPointer(dqp.baseAddress)
            p.dk = UnsafeMutableRawPointer(dkp.baseAddress)
            p.dv = UnsafeMutableRawPointer(dvp.baseAddress)
            // withScoreModifiers only throws what its body throws: nothing here.
            try withScoreModifiers(options, &p) { (problem) throws(AttentionError) in
                status = fa_ring_backward_timed(&problem, Int64(sequenceLength), layout.cValue,
                                                communicator.handle, &timing, &diag)
            }
        } } } } } } } } }
        } catch { throw .invalidArgument(error) }
        guard status == FA_OK else { throw RingAttentionError(diag, strides: strides) }
        return (AttentionGradients(query: dq, key: dk, value: dv), RingTiming(timing))
    }

    /// The checks Swift makes before the C call. A rank whose arguments fail them still joins the
    /// collective check the other ranks are in (``fa_ring_cancel``), so they throw too instead
    /// of waiting for it.
    private static func prepare(shape: AttentionShape, options: AttentionOptions,
                                communicator: MPICommunicator,
                                counts: () throws(AttentionError) -> Void) throws(RingAttentionError)
        -> (AttentionTensorStrides, fa_problem)
    {
        do {
            try validate(shape)
            let strides = AttentionTensorStrides.packed(options.layout, shape: shape)
            let p = try makeProblem(shape: shape, strides: strides, options: options)
            try counts()
            return (strides, p)
        } catch {
            var diag = fa_diagnostic()
            _ = fa_ring_cancel(communicator.handle, error.description, &diag)
            throw .invalidArgument(error)
        }
    }

    /// The shape's checks, with a rank that holds no token checked as if it held one.
    private static func validate(_ shape: AttentionShape) throws(AttentionError) {
        var checked = shape
        if shape.queryLength == 0 && shape.keyLength == 0 {
            checked.queryLength = 1
            checked.keyLength = 1
        }
        try checked.validate()
    }

    private static func expectCount(_ count: Int, _ expected: Int, _ name: String) throws(AttentionError) {
        guard count == expected else { throw .wrongCount(argument: name, expected: expected, count: count) }
    }
}
