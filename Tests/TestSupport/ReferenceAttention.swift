import FlashAttention
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A float64 attention reference in plain Swift, independent of the C library, with the
// float32 error bound every test compares against.

/// A dense float32 tensor with explicit strides, as the library sees it.
public struct StridedTensor: Sendable {
    public var data: [Float]
    public var strides: AttentionStrides
    /// `[batch, heads, length, dim]` extents.
    public var extents: (Int, Int, Int, Int)
    /// Index of element (0, 0, 0, 0) in `data`.
    public var offset: Int

    public init(data: [Float], strides: AttentionStrides, extents: (Int, Int, Int, Int),
                offset: Int = 0) {
        self.data = data
        self.strides = strides
        self.extents = extents
        self.offset = offset
    }

    /// Element (b, h, l, d).
    @inlinable public subscript(b: Int, h: Int, l: Int, d: Int) -> Float {
        data[offset + b * strides.batch + h * strides.head + l * strides.sequence + d]
    }
}

/// What the float64 reference computes for one problem.
public struct ReferenceResult: Sendable {
    /// Output `[B, Hq, Lq, Dv]`, dense bhld.
    public var output: [Double]
    /// Log-sum-exp `[B, Hq, Lq]`, dense.
    public var logSumExp: [Double]
    /// Per row `[B, Hq, Lq]`: the largest absolute error a correct float32 kernel may make in
    /// any element of that output row.
    public var outputTolerance: [Double]
    /// Per row: the largest absolute error a correct float32 kernel may make in its logsumexp.
    public var logSumExpTolerance: [Double]
    /// Per row: how many keys the row sees (0: the row must be exactly 0 with logsumexp −inf).
    public var visibleKeys: [Int]
    /// Per row: the band of keys the row may see (causal mask, window, lengths); an element mask
    /// may hide some of them (their modified score is −inf).
    public var visibleRanges: [Range<Int>]
}

/// The unit roundoff of float32, 2⁻²⁴.
public let float32Roundoff = 0x1p-24

/// Keys row `i` may see are `0 ..< visibleEnd(i)`.
public func visibleEnd(row i: Int, queryLength lq: Int, keyLength lk: Int,
                       causal: CausalMask) -> Int {
    visibleRange(row: i, queryLength: lq, keyLength: lk, causal: causal, window: nil).upperBound
}

/// A scaled score after soft-capping (`c·tanh(s/c)`) and ALiBi (`− slope·|i + Lk − Lq − j|`).
public func modifiedScore(_ s: Double, row i: Int, key j: Int, queryLength lq: Int,
                          keyLength lk: Int, softcap: Double?, slope: Double?,
                          mask: Double? = 0, positions: SequencePositions? = nil) -> Double {
    var x = s
    if let c = softcap { x = c * tanh(x / c) }
    let diagonal = positions.map { $0.queryStart - $0.keyStart } ?? lk - lq
    if let slope { x -= slope * Double(abs(i + diagonal - j)) }
    guard let mask else { return -.infinity }  // a boolean mask's 0
    return x + mask
}

/// The additive value of (b, h, i, j): 0 without a mask, nil where a boolean mask or a block
/// mask hides it.
func maskValue(_ mask: AttentionMask?, _ b: Int, _ h: Int, _ i: Int, _ j: Int,
               blocks: BlockMask? = nil) -> Double? {
    if let blocks, !blocks.keeps(batch: b, head: h, query: i, key: j) { return nil }
    guard let mask else { return 0 }
    return mask.value(batch: b, head: h, query: i, key: j)
}

extension AttentionMask {
    /// Element (b, h, i, j) as an additive value: nil where a boolean mask hides the key.
    public func value(batch b: Int, head h: Int, query i: Int, key j: Int) -> Double? {
        let at = b * strides.batch + h * strides.head + i * strides.query + j * strides.key
        switch values {
        case let .boolean(v): return v[at] != 0 ? 0 : nil
        case let .additive(v): return Double(v[at])
        }
    }
}

/// The keys row `i` sees, written from the definitions: causal bottom-right `j ≤ i + Lk − Lq`,
/// top-left `j ≤ i`; window `i + Lk − Lq − left ≤ j ≤ i + Lk − Lq + right`; all that apply.
/// With explicit positions, row i is at `queryStart + i` and key j at `keyStart + j`: causal
/// (either mode) `keyStart + j ≤ queryStart + i`, the window around the row's position.
public func visibleRange(row i: Int, queryLength lq: Int, keyLength lk: Int,
                         causal: CausalMask, window: SlidingWindow?,
                         positions: SequencePositions? = nil) -> Range<Int> {
    var lo = 0, hi = lk  // [lo, hi)
    let diagonal = positions.map { $0.queryStart - $0.keyStart } ?? lk - lq
    switch causal {
    case .none: break
    case .bottomRight: hi = min(hi, i + diagonal + 1)
    case .topLeft: hi = min(hi, i + (positions == nil ? 0 : diagonal) + 1)
    }
    if let left = window?.left { lo = max(lo, i + diagonal - left) }
    if let right = window?.right { hi = min(hi, i + diagonal + right + 1) }
    lo = max(0, min(lk, lo))
    hi = max(lo, min(lk, hi))
    return lo ..< hi
}

/// Attention in float64 from float32 inputs, the definition written out:
/// `O = softmax(scale · Q·Kᵀ + mask) · V` row by row, with `m = max s`, `LSE = m + log Σ exp(s − m)`.
///
/// Tolerances (the bound a correct float32 kernel stays within, element by element, for row i):
/// - each score `s_ij = scale · Σ_d q_id·k_jd` computed in float32 is off by at most
///   `δs_i = (Dqk + 2)·u·scale·max_j Σ_d |q_id·k_jd|` (the classic dot-product bound γ_n with
///   n = Dqk, plus the scale multiply and the subtraction of the max);
/// - a softmax output moves by at most `2·δs_i·max|v|` when every score moves by ≤ δs_i
///   (∂o/∂s_j = p_j·(v_j − o), and Σ_j p_j·|v_j − o| ≤ 2·max|v|);
/// - `exp` (a few ulps each), the row sum and the P·V accumulation over `n_i` visible keys
///   add at most `(n_i + Dv + 8)·u·max|v|` (γ bound of a sum of n_i non-negative terms);
/// - the logsumexp moves by at most `δs_i` (it is 1-Lipschitz in the scores) plus
///   `(n_i + 8)·u·(1 + |LSE|)` for the sum, the log and the final add.
/// These are worst-case bounds, so a correct kernel never exceeds them, yet they are small
/// enough (≈ 1e-5 relative for unit inputs) that a missing or extra key, a wrong scale or a
/// wrong rescale (errors of order p_j ≈ 1/n) does.
public func referenceAttention(query: StridedTensor, key: StridedTensor, value: StridedTensor,
                               shape: AttentionShape, scale: Double,
                               causal: CausalMask, window: SlidingWindow? = nil,
                               softcap: Double? = nil, alibiSlopes: [Float]? = nil,
                               queryLengths: [Int]? = nil, keyLengths: [Int]? = nil,
                               mask: AttentionMask? = nil, blockMask: BlockMask? = nil,
                               positions: SequencePositions? = nil) -> ReferenceResult {
    let (bN, hq, lq, lk) = (shape.batch, shape.queryHeads, shape.queryLength, shape.keyLength)
    let (dqk, dv) = (shape.headDim, shape.valueHeadDim)
    let group = shape.queryHeads / shape.keyValueHeads
    let u = float32Roundoff
    var output = [Double](repeating: 0, count: bN * hq * lq * dv)
    var lse = [Double](repeating: -.infinity, count: bN * hq * lq)
    var outTol = [Double](repeating: 0, count: bN * hq * lq)
    var lseTol = [Double](repeating: 0, count: bN * hq * lq)
    var visible = [Int](repeating: 0, count: bN * hq * lq)
    var ranges = [Range<Int>](repeating: 0 ..< 0, count: bN * hq * lq)
    var scores = [Double](repeating: 0, count: lk)
    var acc = [Double](repeating: 0, count: dv)
    for b in 0 ..< bN {
        for h in 0 ..< hq {
            let g = h / group
            for i in 0 ..< lq {
                let row = (b * hq + h) * lq + i
                // Batch entry b is the problem (its query length, its key length); its padding
                // rows see nothing.
                let (lqb, lkb) = (queryLengths?[b] ?? lq, keyLengths?[b] ?? lk)
                let keys = i < lqb ? visibleRange(row: i, queryLength: lqb, keyLength: lkb,
                                                  causal: causal, window: window,
                                                  positions: positions) : 0 ..< 0
                ranges[row] = keys
                guard !keys.isEmpty else { continue }  // output 0, lse −inf
                var m = -Double.infinity
                var magnitude = 0.0  // max_j Σ_d |q_id k_jd|
                var vmax = 0.0
                for j in keys {
                    var dot = 0.0, absDot = 0.0
                    for d in 0 ..< dqk {
                        let prod = Double(query[b, h, i, d]) * Double(key[b, g, j, d])
                        dot += prod
                        absDot += abs(prod)
                    }
                    scores[j] = modifiedScore(scale * dot, row: i, key: j, queryLength: lqb,
                                              keyLength: lkb, softcap: softcap,
                                              slope: alibiSlopes.map { Double($0[h]) },
                                              mask: maskValue(mask, b, h, i, j, blocks: blockMask),
                                              positions: positions)
                    m = max(m, scores[j])
                    magnitude = max(magnitude, absDot)
                    for d in 0 ..< dv { vmax = max(vmax, abs(Double(value[b, g, j, d]))) }
                }
                // A row whose every key is masked sees nothing: output 0, lse −inf.
                let n = keys.filter { scores[$0] > -.infinity }.count
                visible[row] = n
                guard n > 0 else { continue }
                var sum = 0.0
                for d in 0 ..< dv { acc[d] = 0 }
                for j in keys {
                    let p = exp(scores[j] - m)
                    sum += p
                    for d in 0 ..< dv { acc[d] += p * Double(value[b, g, j, d]) }
                }
                for d in 0 ..< dv { output[row * dv + d] = acc[d] / sum }
                lse[row] = m + log(sum)
                // Soft-capping (|tanh′| ≤ 1) passes the score error on and rounds to ±u·c; the
                // ALiBi bias rounds to u·|bias| (and its key distance is exact).
                let diagonal = positions.map { $0.queryStart - $0.keyStart } ?? lk - lq
                let maxDistance = Double(max(lq, lk) + abs(diagonal))
                let biasError = 4 * u * ((softcap ?? 0) + abs(Double(alibiSlopes?[h] ?? 0)) * maxDistance)
                let scoreError = Double(dqk + 2) * u * abs(scale) * magnitude + biasError
                outTol[row] = 2 * scoreError * vmax + Double(n + dv + 8) * u * vmax
                lseTol[row] = scoreError + Double(n + 8) * u * (1 + abs(lse[row]))
            }
        }
    }
    return ReferenceResult(output: output, logSumExp: lse, outputTolerance: outTol,
                           logSumExpTolerance: lseTol, visibleKeys: visible, visibleRanges: ranges)
}

