import FlashAttention

/// One forward problem of the test grid: a shape, options and seeded inputs.
public struct AttentionCase: Sendable, CustomStringConvertible {
    public var shape: AttentionShape
    public var causal: CausalMask
    public var window: SlidingWindow?
    public var softcap: Float?
    public var alibiSlopes: [Float]?
    public var queryLengths: [Int]?
    public var keyLengths: [Int]?
    public var mask: AttentionMask?
    public var blockMask: BlockMask?
    public var scale: Float?
    public var layout: TensorLayout
    /// Explicit positions of the rows and keys (nil: the ends aligned).
    public var positions: SequencePositions?
    /// Inputs are uniform in ±magnitude; 30 makes the softmax nearly one-hot.
    public var magnitude: Float
    public var seed: UInt64

    public init(shape: AttentionShape, causal: CausalMask = .none, window: SlidingWindow? = nil,
                softcap: Float? = nil, alibiSlopes: [Float]? = nil,
                queryLengths: [Int]? = nil, keyLengths: [Int]? = nil, mask: AttentionMask? = nil,
                blockMask: BlockMask? = nil, scale: Float? = nil, layout: TensorLayout = .bhld, magnitude: Float = 1,
                seed: UInt64 = 1, positions: SequencePositions? = nil) {
        self.positions = positions
        self.shape = shape
        self.causal = causal
        self.window = window
        self.softcap = softcap
        self.alibiSlopes = alibiSlopes
        self.queryLengths = queryLengths
        self.keyLengths = keyLengths
        self.mask = mask
        self.blockMask = blockMask
        self.scale = scale
        self.layout = layout
        self.magnitude = magnitude
        self.seed = seed
    }

    public var description: String {
        let s = shape
        return "B\(s.batch) H\(s.queryHeads)/\(s.keyValueHeads) L\(s.queryLength)x\(s.keyLength) "
            + "D\(s.headDim)/\(s.valueHeadDim) \(causal)"
            + (window.map { " window(\($0.left.map(String.init) ?? "-"),\($0.right.map(String.init) ?? "-"))" } ?? "")
            + (softcap.map { " softcap \($0)" } ?? "") + (alibiSlopes == nil ? "" : " alibi")
            + (queryLengths.map { " qlens \($0)" } ?? "") + (keyLengths.map { " klens \($0)" } ?? "")
            + (mask.map { m -> String in
                if case .boolean = m.values { return " bool-mask \(m.strides)" }
                return " additive-mask \(m.strides)" } ?? "")
            + (blockMask.map { " block-sparse \($0.blockQuery)x\($0.blockKey)" } ?? "")
            + (positions.map { " positions q\($0.queryStart) k\($0.keyStart)" } ?? "")
            + " scale \(scale.map { "\($0)" } ?? "default") "
            + "\(layout) ±\(magnitude)"
    }

    public var options: AttentionOptions {
        AttentionOptions(scale: scale, causal: causal, window: window, softcap: softcap,
                         alibiSlopes: alibiSlopes, queryLengths: queryLengths,
                         keyLengths: keyLengths, mask: mask, blockMask: blockMask, layout: layout,
                         positions: positions)
    }

    public var strides: AttentionTensorStrides { .packed(layout, shape: shape) }

    /// Seeded query, key and value arrays in `layout`.
    public func inputs() -> (query: StridedTensor, key: StridedTensor, value: StridedTensor) {
        var rng = SplitMix64(seed: seed)
        let s = shape, st = strides
        let q = randomFloats(s.queryCount, magnitude: magnitude, using: &rng)
        let k = randomFloats(s.keyCount, magnitude: magnitude, using: &rng)
        let v = randomFloats(s.valueCount, magnitude: magnitude, using: &rng)
        return (StridedTensor(data: q, strides: st.query,
                              extents: (s.batch, s.queryHeads, s.queryLength, s.headDim)),
                StridedTensor(data: k, strides: st.key,
                              extents: (s.batch, s.keyValueHeads, s.keyLength, s.headDim)),
                StridedTensor(data: v, strides: st.value,
                              extents: (s.batch, s.keyValueHeads, s.keyLength, s.valueHeadDim)))
    }

    /// A seeded upstream gradient of the output, in `layout`.
    public func outputGradient() -> StridedTensor {
        var rng = SplitMix64(seed: seed &+ 0x5EED)
        let s = shape
        return StridedTensor(data: randomFloats(s.outputCount, magnitude: 1, using: &rng),
                             strides: strides.output,
                             extents: (s.batch, s.queryHeads, s.queryLength, s.valueHeadDim))
    }

    /// The scale this case uses.
    public var resolvedScale: Double { Double(scale ?? 1 / Float(shape.headDim).squareRoot()) }

    /// The float64 gradients for these inputs and `outputGradient()`.
    public func referenceGradients(forward: ReferenceResult? = nil) -> ReferenceGradients {
        referenceGradients(inputs: inputs(), outputGradient: outputGradient(),
                           forward: forward ?? reference())
    }

    /// The float64 gradients for other inputs and output gradient of this case's shape (e.g.
    /// rounded to a half type), given the forward the backward is fed.
    public func referenceGradients(inputs: (query: StridedTensor, key: StridedTensor, value: StridedTensor),
                                   outputGradient: StridedTensor,
                                   forward: ReferenceResult,
                                   productRounding: Double = 0) -> ReferenceGradients {
        let (q, k, v) = inputs
        return referenceBackward(query: q, key: k, value: v, outputGradient: outputGradient,
                                 shape: shape, scale: resolvedScale, causal: causal,
                                 forward: forward,
                                 softcap: softcap.map(Double.init), alibiSlopes: alibiSlopes,
                                 queryLengths: queryLengths, keyLengths: keyLengths, mask: mask,
                                 blockMask: blockMask, productRounding: productRounding,
                                 positions: positions)
    }

    /// The float64 reference for these inputs.
    public func reference() -> ReferenceResult { reference(inputs: inputs()) }

    /// The float64 reference for other inputs of this case's shape and layout (e.g. its
    /// inputs rounded to a half type).
    public func reference(inputs: (query: StridedTensor, key: StridedTensor, value: StridedTensor))
        -> ReferenceResult
    {
        let (q, k, v) = inputs
        let scale = Double(self.scale ?? 1 / Float(shape.headDim).squareRoot())
        return referenceAttention(query: q, key: k, value: v, shape: shape, scale: scale,
                                  causal: causal, window: window,
                                  softcap: softcap.map(Double.init), alibiSlopes: alibiSlopes,
                                  queryLengths: queryLengths, keyLengths: keyLengths, mask: mask,
                                  blockMask: blockMask, positions: positions)
    }
}

/// How far a float32 result is from the reference, measured against its tolerance.
public struct Comparison: Sendable, CustomStringConvertible {
    /// max over elements of |error| / tolerance of its row: ≤ 1 passes.
    public var worstRatio = 0.0
    /// max |error| over output elements, and relative to max |reference output|.
    public var maxAbsError = 0.0
    public var maxRelativeError = 0.0
    /// max |error| over logsumexp values of rows that see a key.
    public var maxLogSumExpError = 0.0
    /// The same in units in the last place of the float32 nearest the reference value.
    public var maxLogSumExpUlps = 0.0
    /// Where the worst ratio was seen (gradients only).
    public var worstPlace = ""
    /// Problems that fail regardless of tolerance: NaN, nonzero output or finite lse on a row
    /// that sees no key.
    public var defects: [String] = []

    public var passed: Bool { worstRatio <= 1 && defects.isEmpty }

    public var description: String {
        "worst error/tolerance \(worstRatio), max abs error \(maxAbsError) "
            + "(relative \(maxRelativeError)), lse error \(maxLogSumExpError) (\(maxLogSumExpUlps) ulp)"
            + (defects.isEmpty ? "" : ", defects: \(defects.prefix(3))")
            + (worstPlace.isEmpty ? "" : ", worst at \(worstPlace)")
    }
}

/// Compares an output in `strides` (and optionally a dense logsumexp) with the reference.
public func compare(output: [Float], strides: AttentionStrides, logSumExp: [Float]?,
                    reference ref: ReferenceResult, shape: AttentionShape) -> Comparison {
    var c = Comparison()
    let (bN, hq, lq, dv) = (shape.batch, shape.queryHeads, shape.queryLength, shape.valueHeadDim)
    let refMax = ref.output.reduce(0) { max($0, abs($1)) }
    for b in 0 ..< bN {
        for h in 0 ..< hq {
            for i in 0 ..< lq {
                let row = (b * hq + h) * lq + i
                let base = b * strides.batch + h * strides.head + i * strides.sequence
                let tol = ref.outputTolerance[row]
                for d in 0 ..< dv {
                    let got = output[base + d]
                    let want = ref.output[row * dv + d]
                    guard !got.isNaN, got.isFinite else {
                        c.defects.append("row \(row) element \(d) is \(got)")
                        continue
                    }
                    let err = abs(Double(got) - want)
                    c.maxAbsError = max(c.maxAbsError, err)
                    if ref.visibleKeys[row] == 0 {
                        if got != 0 { c.defects.append("masked row \(row) output \(got) ≠ 0") }
                    } else {
                        c.worstRatio = max(c.worstRatio, tol > 0 ? err / tol : (err > 0 ? .infinity : 0))
                    }
                }
                if let logSumExp {
                    let got = logSumExp[row]
                    if ref.visibleKeys[row] == 0 {
                        if got != -.infinity { c.defects.append("masked row \(row) lse \(got) ≠ −inf") }
                    } else if !got.isFinite {
                        c.defects.append("row \(row) lse is \(got)")
                    } else {
                        let err = abs(Double(got) - ref.logSumExp[row])
                        c.maxLogSumExpError = max(c.maxLogSumExpError, err)
                        let ulp = Double(Float(ref.logSumExp[row]).ulp)
                        if ulp > 0 { c.maxLogSumExpUlps = max(c.maxLogSumExpUlps, err / ulp) }
                        c.worstRatio = max(c.worstRatio, err / ref.logSumExpTolerance[row])
                    }
                }
            }
        }
    }
    c.maxRelativeError = refMax > 0 ? c.maxAbsError / refMax : c.maxAbsError
    return c
}
