import CFlashAttention

/// Strides of the gradient tensors of a backward call; each defaults to the strides of the
/// tensor it is the gradient of.
public struct AttentionGradientStrides: Sendable, Hashable {
    /// ∂loss/∂output `[B, Hq, Lq, Dv]` (an input of the backward).
    public var output: AttentionStrides
    /// ∂loss/∂query `[B, Hq, Lq, Dqk]`.
    public var query: AttentionStrides
    /// ∂loss/∂key `[B, Hkv, Lk, Dqk]`.
    public var key: AttentionStrides
    /// ∂loss/∂value `[B, Hkv, Lk, Dv]`.
    public var value: AttentionStrides

    /// The gradients laid out like the tensors they belong to.
    ///
    /// ```swift
    /// let g = AttentionGradientStrides(matching: .packed(.blhd, shape: shape))
    /// ```
    public init(matching strides: AttentionTensorStrides) {
        output = strides.output
        query = strides.query
        key = strides.key
        value = strides.value
    }

    /// Explicit strides for each gradient.
    public init(output: AttentionStrides, query: AttentionStrides, key: AttentionStrides,
                value: AttentionStrides) {
        self.output = output
        self.query = query
        self.key = key
        self.value = value
    }
}

/// The gradients of a loss with respect to the attention inputs.
public struct AttentionGradients: Sendable {
    /// ∂loss/∂query, laid out like the query.
    public var query: [Float]
    /// ∂loss/∂key, summed over the query heads that share each key head.
    public var key: [Float]
    /// ∂loss/∂value, summed over the query heads that share each value head.
    public var value: [Float]

    /// Gradients from their three arrays (e.g. slices of a packed batch's gradients).
    public init(query: [Float], key: [Float], value: [Float]) {
        self.query = query
        self.key = key
        self.value = value
    }
}

/// What a training forward keeps for its backward: the inputs (arrays are shared, not
/// copied), the output and the log-sum-exp.
///
/// ```swift
/// let step = try FlashAttention.forwardForTraining(query: q, key: k, value: v, shape: shape)
/// let loss = zip(step.output, target).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
/// let dOut = zip(step.output, target).map { 2 * ($0 - $1) }
/// let grads = try step.backward(outputGradient: dOut)   // grads.query, .key, .value
/// ```
public struct AttentionActivations: Sendable {
    /// The forward's query (shared storage, not a copy).
    public var query: [Float]
    /// The forward's key.
    public var key: [Float]
    /// The forward's value.
    public var value: [Float]
    /// The forward's output, dense in `options.layout`.
    public var output: [Float]
    /// The forward's log-sum-exp, dense `[B, Hq, Lq]`.
    public var logSumExp: [Float]
    /// The forward's shape.
    public var shape: AttentionShape
    /// The forward's options; the backward uses the same (scale, causal mask, kernel, …).
    public var options: AttentionOptions

    /// The gradients for an upstream gradient of the output (dense, `options.layout`).
    public func backward(outputGradient: [Float]) throws(AttentionError) -> AttentionGradients {
        try FlashAttention.backward(query: query, key: key, value: value, output: output,
                                    logSumExp: logSumExp, outputGradient: outputGradient,
                                    shape: shape, options: options)
    }
}

extension FlashAttention {
    /// Runs the forward and keeps what the backward needs.
    ///
    /// ```swift
    /// let step = try FlashAttention.forwardForTraining(query: q, key: k, value: v, shape: shape,
    ///                                                  options: AttentionOptions(causal: .bottomRight))
    /// let grads = try step.backward(outputGradient: dOut)
    /// ```
    public static func forwardForTraining(query: [Float], key: [Float], value: [Float],
                                          shape: AttentionShape,
                                          options: AttentionOptions = AttentionOptions())
        throws(AttentionError) -> AttentionActivations
    {
        let (output, lse) = try forwardWithLogSumExp(query: query, key: key, value: value,
                                                     shape: shape, options: options)
        return AttentionActivations(query: query, key: key, value: value, output: output,
                                    logSumExp: lse, shape: shape, options: options)
    }

    /// The gradients of attention over dense arrays (`options.layout`; the log-sum-exp dense
    /// `[B, Hq, Lq]`), given the forward's output and log-sum-exp and ∂loss/∂output.
    ///
    /// The flash backward recomputes the probabilities block by block from the log-sum-exp
    /// (memory O(N·D)) and is bitwise reproducible for any thread count.
    ///
    /// ```swift
    /// let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v, shape: shape)
    /// let g = try FlashAttention.backward(query: q, key: k, value: v, output: out, logSumExp: lse,
    ///                                     outputGradient: dOut, shape: shape)
    /// ```
    public static func backward(query: [Float], key: [Float], value: [Float], output: [Float],
                                logSumExp: [Float], outputGradient: [Float],
                                shape: AttentionShape,
                                options: AttentionOptions = AttentionOptions())
        throws(AttentionError) -> AttentionGradients
    {
        try shape.validate()
        let strides = AttentionTensorStrides.packed(options.layout, shape: shape)
        _ = try makeProblem(shape: shape, strides: strides, options: options)
        let arrays: [(TensorRole, Int)] = [
            (.query, query.count), (.key, key.count), (.value, value.count),
            (.output, output.count), (.logSumExp, logSumExp.count),
            (.outputGradient, outputGradient.count),
        ]
        for (role, count) in arrays {
            let required = try requiredElements(role, shape: shape, strides: strides, options: options)
            guard count == required else {
                if role == .logSumExp && count == 0 { throw .missingLogSumExp }
                throw .wrongCount(argument: role.name, expected: required, count: count)
            }
        }
        var dq = [Float](repeating: 0, count: query.count)
        var dk = [Float](repeating: 0, count: key.count)
        var dv = [Float](repeating: 0, count: value.count)
        try query.withUnsafeBufferPointer { (q) throws(AttentionError) in
        try key.withUnsafeBufferPointer { (k) throws(AttentionError) in
        try value.withUnsafeBufferPointer { (v) throws(AttentionError) in
        try output.withUnsafeBufferPointer { (o) throws(AttentionError) in
        try logSumExp.withUnsafeBufferPointer { (l) throws(AttentionError) in
        try outputGradient.withUnsafeBufferPointer { (g) throws(AttentionError) in
        try dq.withUnsafeMutableBufferPointer { (dqp) throws(AttentionError) in
        try dk.withUnsafeMutableBufferPointer { (dkp) throws(AttentionError) in
        try dv.withUnsafeMutableBufferPointer { (dvp) throws(AttentionError) in
            try backward(query: q, key: k, value: v, output: o, logSumExp: l, outputGradient: g,
                         queryGradient: dqp, keyGradient: dkp, valueGradient: dvp, shape: shape,
                         strides: strides, options: options)
        } } } } } } } } }
        return AttentionGradients(query: dq, key: dk, value: dv)
    }

    /// The gradients over caller-owned memory, without copies. `output` and `logSumExp` are
    /// exactly what the forward wrote; the three gradients are written (dK and dV summed over
    /// the query heads of each group) and must not overlap any input or each other.
    ///
    /// ```swift
    /// try FlashAttention.backward(query: q, key: k, value: v, output: o, logSumExp: lse,
    ///                             outputGradient: dO, queryGradient: dQ, keyGradient: dK,
    ///                             valueGradient: dV, shape: shape)
    /// ```
    /// - Parameters:
    ///   - query: `[B, Hq, Lq, Dqk]`, as the forward read it.
    ///   - key: `[B, Hkv, Lk, Dqk]`.
    ///   - value: `[B, Hkv, Lk, Dv]`.
    ///   - output: `[B, Hq, Lq, Dv]`, exactly as the forward wrote it.
    ///   - logSumExp: `[B, Hq, Lq]`, exactly as the forward wrote it.
    ///   - outputGradient: ∂loss/∂output, laid out like the output.
    ///   - queryGradient: Receives ∂loss/∂query, laid out like the query.
    ///   - keyGradient: Receives ∂loss/∂key, summed over the query heads sharing each key head.
    ///   - valueGradient: Receives ∂loss/∂value, summed like the key gradient.
    ///   - shape: The extents of every tensor.
    ///   - strides: The strides of query … logSumExp; `nil` means dense in `options.layout`.
    ///   - gradientStrides: The strides of the gradients; `nil` means like their tensors.
    ///   - options: The forward's options (masks, modifiers, lengths), plus threads and kernel.
    ///
    /// Half precision: the query, output and their gradients in one element type, the keys,
    /// values and theirs in one (possibly another), as the forward took them; the gradients
    /// are accumulated in `Float` and rounded once.
    public static func backward<Element: AttentionElement, Cache: AttentionElement>(
        query: UnsafeBufferPointer<Element>,
        key: UnsafeBufferPointer<Cache>,
        value: UnsafeBufferPointer<Cache>,
        output: UnsafeBufferPointer<Element>,
        logSumExp: UnsafeBufferPointer<Float>,
        outputGradient: UnsafeBufferPointer<Element>,
        queryGradient: UnsafeMutableBufferPointer<Element>,
        keyGradient: UnsafeMutableBufferPointer<Cache>,
        valueGradient: UnsafeMutableBufferPointer<Cache>,
        shape: AttentionShape,
        strides: AttentionTensorStrides? = nil,
        gradientStrides: AttentionGradientStrides? = nil,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) {
        try shape.validate()
        let strides = strides ?? .packed(options.layout, shape: shape)
        let gradients = gradientStrides ?? AttentionGradientStrides(matching: strides)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        let counts: [(TensorRole, Int)] = [
            (.query, query.count), (.key, key.count), (.value, value.count),
            (.output, output.count), (.outputGradient, outputGradient.count),
            (.queryGradient, queryGradient.count), (.keyGradient, keyGradient.count),
            (.valueGradient, valueGradient.count),
        ]
        for (role, count) in counts {
            try checkBuffer(role, count: count, shape: shape, strides: strides, options: options, gradients: gradients)
        }
        guard logSumExp.count > 0 else { throw .missingLogSumExp }
        try checkBuffer(.logSumExp, count: logSumExp.count, shape: shape, strides: strides, options: options)
        problem.bind(query: query, key: key, value: value, output: UnsafeRawPointer(output.baseAddress))
        problem.bindGradients(logSumExp: logSumExp, outputGradient: outputGradient,
                              queryGradient: queryGradient, keyGradient: keyGradient,
                              valueGradient: valueGradient, strides: gradients)
        try withScoreModifiers(options, &problem) { (p) throws(AttentionError) in
            try runBackward(&p, implementation: options.implementation, strides: strides,
                            gradients: gradients)
        }
    }

    /// Bytes the `.flash` backward allocates for one call: per thread, the key and value
    /// gradient accumulators of one key/value head (`Lk × (Dqk + Dv)` floats) and one query
    /// block's tiles — O(N·D), never O(Lq × Lk).
    ///
    /// ```swift
    /// let bytes = try FlashAttention.backwardWorkspaceBytes(shape: shape)
    /// ```
    ///
    /// With a half-precision query (`queryType`), add the `Float` query gradient it is
    /// accumulated in (`B·Hq·Lq·Dqk` floats); half keys and values add their widened blocks.
    public static func backwardWorkspaceBytes(shape: AttentionShape,
                                              options: AttentionOptions = AttentionOptions(),
                                              queryType: AttentionElementType = .float32,
                                              keyValueType: AttentionElementType = .float32)
        throws(AttentionError) -> Int
    {
        try shape.validate()
        let strides = AttentionTensorStrides.packed(.bhld, shape: shape)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        (problem.q_dtype, problem.o_dtype) = (queryType.cType, queryType.cType)
        (problem.k_dtype, problem.v_dtype) = (keyValueType.cType, keyValueType.cType)
        _ = try requiredElements(.query, shape: shape, strides: strides, options: options)
        var bytes = 0
        guard fa_backward_workspace_bytes(&problem, &bytes) == FA_OK else {
            throw .sizeOverflow(argument: "workspace")
        }
        return bytes
    }
}
