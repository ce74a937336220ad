import CFlashAttention

/// The extents of attention states to merge: outputs `[batch, heads, length, headDim]` and
/// log-sum-exps `[batch, heads, length]`.
public struct AttentionStateShape: Sendable, Hashable {
    /// Batch entries.
    public var batch: Int
    /// Heads.
    public var heads: Int
    /// Query rows per head.
    public var length: Int
    /// Elements of an output row (the value head dimension).
    public var headDim: Int

    /// Creates a shape; every extent must be between 1 and `Int32.max`.
    public init(batch: Int = 1, heads: Int, length: Int, headDim: Int) {
        self.batch = batch
        self.heads = heads
        self.length = length
        self.headDim = headDim
    }

    /// The states of the output of a forward of `shape`.
    public init(_ shape: AttentionShape) {
        self.init(batch: shape.batch, heads: shape.queryHeads, length: shape.queryLength,
                  headDim: shape.valueHeadDim)
    }

    /// Elements of a dense output (traps if the product overflows `Int`; the merges check
    /// the shape first and throw instead).
    public var outputCount: Int { batch * heads * length * headDim }
    /// Elements of a dense log-sum-exp (traps if the product overflows `Int`).
    public var logSumExpCount: Int { batch * heads * length }

    /// Throws unless every extent is in 1 … 2³¹ − 1 and a dense output's byte size fits in
    /// `Int` — before anything multiplies extents.
    func validate() throws(AttentionError) {
        for (name, value) in [("shape.batch", batch), ("shape.heads", heads),
                              ("shape.length", length), ("shape.headDim", headDim)]
            where value < 1 || value > Int(Int32.max) {
            throw .invalidExtent(argument: name, value: value)
        }
        guard checkedProduct([batch, heads, length, headDim, MemoryLayout<Float>.size]) != nil else {
            throw .sizeOverflow(argument: "outputs")
        }
    }
}

/// Attention over a set of keys, as a forward returns it: the softmax-normalised output and
/// the natural-log log-sum-exp of every query row.
///
/// States over disjoint sets of keys merge into the state over their union (see
/// ``FlashAttention/mergeStates(_:shape:layout:)``): attention over a split or paged cache,
/// prefix caching, attention across machines.
public struct AttentionState: Sendable, Hashable {
    /// `[batch, heads, length, headDim]` in the layout the merge is given.
    public var output: [Float]
    /// `[batch, heads, length]`, dense; natural logs, `−∞` for a row that saw no key.
    public var logSumExp: [Float]

    /// Creates a state from a forward's output and log-sum-exp.
    public init(output: [Float], logSumExp: [Float]) {
        self.output = output
        self.logSumExp = logSumExp
    }

    /// The state that saw no key — output 0, log-sum-exp −∞: the identity of the merge. (Traps
    /// on a shape whose element counts are negative or overflow, as an array of that count.)
    public static func empty(_ shape: AttentionStateShape) -> Self {
        Self(output: [Float](repeating: 0, count: shape.outputCount),
             logSumExp: [Float](repeating: -.infinity, count: shape.logSumExpCount))
    }
}

extension FlashAttention {
    /// Merges attention states over disjoint key sets into the state over all of them:
    ///
    ///     m = max_i LSE_i,  LSE = m + log Σ_i e^(LSE_i − m),  O = Σ_i e^(LSE_i − LSE) · O_i
    ///
    /// per query row, the states summed in their order (the result is reproducible bit for
    /// bit). A state whose log-sum-exp is −∞ saw no key and is skipped — its output is never
    /// read — so ``AttentionState/empty(_:)`` is the identity and merging only empty states
    /// gives output 0 and log-sum-exp −∞, never NaN.
    ///
    /// Log-sum-exps are natural logs, as `forwardWithLogSumExp` returns them. A base-2 log-sum-exp (FlashInfer's default) converts as `lse₂ · ln 2`.
    ///
    /// ```swift
    /// // Attention over a cache held in two pieces, computed apart and merged:
    /// let a = try FlashAttention.forwardWithLogSumExp(query: q, key: k1, value: v1, shape: s1)
    /// let b = try FlashAttention.forwardWithLogSumExp(query: q, key: k2, value: v2, shape: s2)
    /// let whole = try FlashAttention.mergeStates(
    ///     [AttentionState(output: a.output, logSumExp: a.logSumExp),
    ///      AttentionState(output: b.output, logSumExp: b.logSumExp)],
    ///     shape: AttentionStateShape(s1))
    /// ```
    /// - Parameters:
    ///   - states: At least one state, each with dense outputs in `layout` and a dense
    ///     `[batch, heads, length]` log-sum-exp.
    ///   - shape: The states' extents.
    ///   - layout: The outputs' layout (`.bhld` or `.blhd`); the result has the same.
    public static func mergeStates(_ states: [AttentionState], shape: AttentionStateShape,
                                   layout: TensorLayout = .bhld) throws(AttentionError)
        -> AttentionState
    {
        try shape.validate()
        var merged = AttentionState.empty(shape)
        for (i, s) in states.enumerated() {
            try checkCount("states[\(i)].output", s.output.count, shape.outputCount)
            try checkCount("states[\(i)].logSumExp", s.logSumExp.count, shape.logSumExpCount)
        }
        try withBuffers(states) { (outputs, lses) throws(AttentionError) in
            try merged.output.withUnsafeMutableBufferPointer { o throws(AttentionError) in
                try merged.logSumExp.withUnsafeMutableBufferPointer { l throws(AttentionError) in
                    try mergeStates(outputs: outputs, logSumExps: lses, into: o, logSumExp: l,
                                    shape: shape, outputStrides: outputStrides(shape, layout))
                }
            }
        }
        return merged
    }

    /// In place: `state` becomes the merge of `state` and `other` (see
    /// ``mergeStates(_:shape:layout:)``).
    ///
    /// ```swift
    /// var total = AttentionState.empty(shape)
    /// for piece in pieces { try FlashAttention.mergeState(piece, into: &total, shape: shape) }
    /// ```
    public static func mergeState(_ other: AttentionState, into state: inout AttentionState,
                                  shape: AttentionStateShape,
                                  layout: TensorLayout = .bhld) throws(AttentionError) {
        try shape.validate()
        try checkCount("state.output", state.output.count, shape.outputCount)
        try checkCount("state.logSumExp", state.logSumExp.count, shape.logSumExpCount)
        try checkCount("other.output", other.output.count, shape.outputCount)
        try checkCount("other.logSumExp", other.logSumExp.count, shape.logSumExpCount)
        let strides = outputStrides(shape, layout)
        try other.output.withUnsafeBufferPointer { (po) throws(AttentionError) in
            try other.logSumExp.withUnsafeBufferPointer { (pl) throws(AttentionError) in
                try state.output.withUnsafeMutableBufferPointer { (o) throws(AttentionError) in
                    try state.logSumExp.withUnsafeMutableBufferPointer { (l) throws(AttentionError) in
                        try mergeStates(outputs: [UnsafeBufferPointer(o), po],
                                        logSumExps: [UnsafeBufferPointer(l), pl],
                                        into: o, logSumExp: l, shape: shape,
                                        outputStrides: strides)
                    }
                }
            }
        }
    }

    /// Merges states held in caller memory, addressed by strides (no copies). `output` and
    /// `logSumExp` may be one of the inputs exactly (same buffer, same strides): that merges
    /// in place. Any other overlap throws ``AttentionError/overlappingBuffers(argument:other:)``.
    ///
    /// - Parameters:
    ///   - outputs: One buffer per state, laid out with `outputStrides`.
    ///   - logSumExps: One buffer per state, laid out with `logSumExpStrides`.
    ///   - output: Receives the merged output (may be one of `outputs` exactly).
    ///   - logSumExp: Receives the merged log-sum-exp (may be one of `logSumExps` exactly).
    ///   - shape: The states' extents.
    ///   - outputStrides: `nil`: dense `[batch, heads, length, headDim]`.
    ///   - logSumExpStrides: `nil`: dense `[batch, heads, length]` (`sequence` steps rows).
    public static func mergeStates(outputs: [UnsafeBufferPointer<Float>],
                                   logSumExps: [UnsafeBufferPointer<Float>],
                                   into output: UnsafeMutableBufferPointer<Float>,
                                   logSumExp: UnsafeMutableBufferPointer<Float>,
                                   shape: AttentionStateShape,
                                   outputStrides: AttentionStrides? = nil,
                                   logSumExpStrides: AttentionStrides? = nil) throws(AttentionError)
    {
        guard !outputs.isEmpty else { throw .invalidExtent(argument: "states", value: 0) }
        guard logSumExps.count == outputs.count else {
            throw .wrongCount(argument: "logSumExps", expected: outputs.count, count: logSumExps.count)
        }
        try shape.validate()
        let os = outputStrides ?? .packed(.bhld, heads: shape.heads, length: shape.length,
                                           dim: shape.headDim)
        let ls = logSumExpStrides ?? .packed(.bhld, heads: shape.heads, length: shape.length, dim: 1)
        let needO = try span(shape, os, dim: shape.headDim, name: "outputStrides")
        let needL = try span(shape, ls, dim: 1, name: "logSumExpStrides")
        for i in outputs.indices {
            guard outputs[i].count >= needO, outputs[i].baseAddress != nil else {
                throw .bufferTooSmall(argument: "outputs[\(i)]", required: needO, count: outputs[i].count)
            }
            guard logSumExps[i].count >= needL, logSumExps[i].baseAddress != nil else {
                throw .bufferTooSmall(argument: "logSumExps[\(i)]", required: needL, count: logSumExps[i].count)
            }
        }
        guard output.count >= needO, output.baseAddress != nil else {
            throw .bufferTooSmall(argument: "output", required: needO, count: output.count)
        }
        guard logSumExp.count >= needL, logSumExp.baseAddress != nil else {
            throw .bufferTooSmall(argument: "logSumExp", required: needL, count: logSumExp.count)
        }
        var cShape = fa_state_shape(batch: Int64(shape.batch), heads: Int64(shape.heads),
                                    len: Int64(shape.length), head_dim: Int64(shape.headDim))
        let states = outputs.indices.map { i in
            fa_attention_state(o: UnsafeMutablePointer(mutating: outputs[i].baseAddress),
                               o_strides: os.cStrides,
                               lse: UnsafeMutablePointer(mutating: logSumExps[i].baseAddress),
                               lse_strides: ls.cStrides)
        }
        var out = fa_attention_state(o: output.baseAddress, o_strides: os.cStrides,
                                     lse: logSumExp.baseAddress, lse_strides: ls.cStrides)
        var diag = fa_diagnostic()
        let status = states.withUnsafeBufferPointer { s in
            fa_merge_states(&cShape, s.baseAddress, Int64(s.count), &out, &diag)
        }
        guard status == FA_OK else {
            let message = withUnsafeBytes(of: diag.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            switch status {
            case FA_ERR_OVERLAP:
                throw .overlappingBuffers(argument: "output", other: "states[\(diag.values.0)]")
            case FA_ERR_OUT_OF_MEMORY:
                throw .outOfMemory(argument: "merge row buffers")
            case FA_ERR_INVALID_STRIDE:
                throw .invalidStrides(argument: "outputStrides or logSumExpStrides",
                                      strides: os, reason: message)
            default:
                throw .kernelFailure(status: Int(status.rawValue), message: message)
            }
        }
    }

    private static func checkCount(_ name: String, _ count: Int, _ expected: Int) throws(AttentionError) {
        guard count == expected else { throw .wrongCount(argument: name, expected: expected, count: count) }
    }

    private static func outputStrides(_ s: AttentionStateShape, _ layout: TensorLayout) -> AttentionStrides {
        .packed(layout, heads: s.heads, length: s.length, dim: s.headDim)
    }

    /// Elements a buffer needs for `shape` with `strides` and rows of `dim` contiguous floats.
    private static func span(_ s: AttentionStateShape, _ st: AttentionStrides, dim: Int,
                             name: String) throws(AttentionError) -> Int {
        guard st.batch >= 0, st.head >= 0, st.sequence >= 0 else {
            throw .invalidStrides(argument: name, strides: st, reason: "strides must not be negative")
        }
        var total = dim
        for (extent, stride) in [(s.batch, st.batch), (s.heads, st.head), (s.length, st.sequence)] {
            let (step, o1) = (extent - 1).multipliedReportingOverflow(by: stride)
            let (sum, o2) = total.addingReportingOverflow(step)
            guard !o1, !o2 else { throw .sizeOverflow(argument: name) }
            total = sum
        }
        return total
    }

    /// Runs `body` with every state's buffers as pointers (the arrays gathered into one
    /// buffer each: no nesting as deep as the number of states).
    private static func withBuffers<R>(
        _ states: [AttentionState],
        _ body: ([UnsafeBufferPointer<Float>], [UnsafeBufferPointer<Float>]) throws(AttentionError) -> R
    ) throws(AttentionError) -> R {
        let outputs = states.flatMap(\.output), lses = states.flatMap(\.logSumExp)
        let no = states.first?.output.count ?? 0, nl = states.first?.logSumExp.count ?? 0
        return try outputs.withUnsafeBufferPointer { (o) throws(AttentionError) in
            try lses.withUnsafeBufferPointer { (l) throws(AttentionError) in
                try body(states.indices.map { UnsafeBufferPointer(rebasing: o[$0 * no ..< ($0 + 1) * no]) },
                         states.indices.map { UnsafeBufferPointer(rebasing: l[$0 * nl ..< ($0 + 1) * nl]) })
            }
        }
    }
}
