import FlashAttention
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Float64 gradients of attention and, per element, the error a correct float32 backward may
/// make. All tensors dense `[B, H, L, D]`.
public struct ReferenceGradients: Sendable {
    public var query: [Double]
    public var key: [Double]
    public var value: [Double]
    public var queryTolerance: [Double]
    public var keyTolerance: [Double]
    public var valueTolerance: [Double]
}

/// The backward written out in float64 from the definition (P from exact scores):
///   D_i = Σ_d dO_id·O_id;  dP_ij = dO_i·V_j;  dS_ij = P_ij·(dP_ij − D_i);
///   dQ_i = scale·Σ_j dS_ij·K_j;  dK_j = scale·Σ_i dS_ij·Q_i;  dV_j = Σ_i P_ij·dO_i
/// (dK and dV summed over the query heads of each group).
///
/// Tolerances, first-order bounds for a float32 backward fed the float32 forward's O and LSE
/// (u = 2⁻²⁴; `forward` supplies the forward's own bounds):
/// - P_ij is off by a relative ε_i = δs_i + δLSE_i + 4u·(1 + |LSE_i| + max_j |s_ij|): the score
///   error of the forward's bound, the forward's LSE error, and the base-2 conversion;
/// - D_i by δD_i = outTol_i·Σ_d|dO_id| + (Dv + 2)·u·Σ_d|dO_id·O_id|;
/// - dP_ij by (Dv + 2)·u·Σ_d|dO_id·V_jd|;
/// - dS_ij by δdS_ij = P_ij·(ε_i·|dP_ij − D_i| + δdP_ij + δD_i) + u·|dS_ij|;
/// - each gradient by the δdS (or ε·P) it sums, times the other factor, plus (n + 2)·u times
///   the sum of absolute products, n being the number of terms it adds;
/// - and below float32's normal range, where relative bounds stop holding: P under 2⁻¹²⁶ is
///   flushed to 0 (an absolute error ≤ 2⁻¹²⁵ per probability, carried through like ε·P), and
///   every result is only representable to 2⁻¹⁴⁹ (the subnormal spacing).
///
/// `productRounding` r > 0 is for a backward that rounds P and dS (relative error ≤ r each) before
/// the products dV = Pᵀ·dO, dK = dSᵀ·Q, dQ = dS·K, and runs them with subnormals flushed (bf16
/// dot products: r = 2⁻⁸, bf16's unit roundoff): each gradient then also carries r times the
/// sum of absolute products it adds, plus 2⁻¹²⁶ per term (a flushed factor or partial sum)
/// times (1 + the other factor).
public func referenceBackward(query: StridedTensor, key: StridedTensor, value: StridedTensor,
                              outputGradient dO: StridedTensor, shape: AttentionShape,
                              scale: Double, causal: CausalMask,
                              forward: ReferenceResult, softcap: Double? = nil,
                              alibiSlopes: [Float]? = nil, queryLengths: [Int]? = nil,
                              keyLengths: [Int]? = nil, mask: AttentionMask? = nil,
                              blockMask: BlockMask? = nil,
                              productRounding: Double = 0,
                              positions: SequencePositions? = nil) -> ReferenceGradients {
    let (bN, hq, hkv, lq, lk) = (shape.batch, shape.queryHeads, shape.keyValueHeads,
                                 shape.queryLength, shape.keyLength)
    let (dqk, dv) = (shape.headDim, shape.valueHeadDim)
    let group = hq / hkv
    let u = float32Roundoff
    let flush = 0x1p-125, subnormal = 0x1p-149
    let r = productRounding, daz = productRounding > 0 ? 0x1p-126 : 0
    var gq = [Double](repeating: 0, count: bN * hq * lq * dqk)
    var gk = [Double](repeating: 0, count: bN * hkv * lk * dqk)
    var gv = [Double](repeating: 0, count: bN * hkv * lk * dv)
    var tq = gq, tk = gk, tv = gv
    // Σ|products| per dK / dV element, for the summation bound added at the end.
    var absK = gk, absV = gv
    // Per (b, g, j): terms added into dK_j / dV_j (for the summation bound).
    var terms = [Int](repeating: 0, count: bN * hkv * lk)
    var p = [Double](repeating: 0, count: lk), ds = p, dds = p, capFactor = p
    for b in 0 ..< bN {
        for h in 0 ..< hq {
            let g = h / group
            for i in 0 ..< lq {
                let row = (b * hq + h) * lq + i
                let n = forward.visibleKeys[row]
                guard n > 0 else { continue }
                let keys = forward.visibleRanges[row]
                let lse = forward.logSumExp[row]
                // D_i and its error.
                var dsum = 0.0, dAbs = 0.0, dOAbs = 0.0
                for d in 0 ..< dv {
                    let go = Double(dO[b, h, i, d]), o = forward.output[row * dv + d]
                    dsum += go * o
                    dAbs += abs(go * o)
                    dOAbs += abs(go)
                }
                let deltaD = forward.outputTolerance[row] * dOAbs + Double(dv + 2) * u * dAbs
                var smax = 0.0, qkMax = 0.0
                for j in keys {
                    var s = 0.0, absQK = 0.0
                    for d in 0 ..< dqk {
                        let prod = Double(query[b, h, i, d]) * Double(key[b, g, j, d])
                        s += prod
                        absQK += abs(prod)
                    }
                    s *= scale
                    // dS is taken with respect to the raw scaled score: × (1 − tanh²).
                    let modified = modifiedScore(s, row: i, key: j, queryLength: queryLengths?[b] ?? lq,
                                                 keyLength: keyLengths?[b] ?? lk,
                                                 softcap: softcap, slope: alibiSlopes.map { Double($0[h]) },
                                                 mask: maskValue(mask, b, h, i, j, blocks: blockMask),
                                                 positions: positions)
                    if let c = softcap { let ch = cosh(s / c); capFactor[j] = 1 / (ch * ch) } else { capFactor[j] = 1 }
                    s = modified
                    p[j] = exp(s - lse)
                    if s.isFinite { smax = max(smax, abs(s)) }  // masked keys: P = 0
                    qkMax = max(qkMax, absQK)
                }
                let diagonal = positions.map { $0.queryStart - $0.keyStart } ?? lk - lq
                let maxDistance = Double(max(lq, lk) + abs(diagonal))
                let biasError = 4 * u * ((softcap ?? 0) + abs(Double(alibiSlopes?[h] ?? 0)) * maxDistance)
                let eps = Double(dqk + 2) * u * abs(scale) * qkMax + forward.logSumExpTolerance[row]
                    + 4 * u * (1 + abs(lse) + smax) + biasError
                for j in keys {
                    var dp = 0.0, dpAbs = 0.0
                    for d in 0 ..< dv {
                        let prod = Double(dO[b, h, i, d]) * Double(value[b, g, j, d])
                        dp += prod
                        dpAbs += abs(prod)
                    }
                    ds[j] = p[j] * (dp - dsum) * capFactor[j]
                    dds[j] = (p[j] * (eps * abs(dp - dsum) + Double(dv + 2) * u * dpAbs + deltaD)
                        + flush * abs(dp - dsum)) * capFactor[j]
                        + (softcap == nil ? 2 : 8) * u * abs(ds[j])  // sech² adds a few ulps
                }
                // dQ_i
                for d in 0 ..< dqk {
                    var acc = 0.0, err = 0.0, absSum = 0.0, kAbs = 0.0
                    for j in keys {
                        let kd = Double(key[b, g, j, d])
                        acc += ds[j] * kd
                        err += dds[j] * abs(kd)
                        absSum += abs(ds[j] * kd)
                        kAbs += abs(kd)
                    }
                    gq[row * dqk + d] = scale * acc
                    tq[row * dqk + d] = abs(scale) * (err + (Double(n + 2) * u + r) * absSum
                        + daz * (Double(n) + kAbs))
                }
                // dK_j, dV_j (error sums here; the summation bound added at the end)
                for j in keys {
                    let kv = (b * hkv + g) * lk + j
                    terms[kv] += 1
                    for d in 0 ..< dqk {
                        let qd = Double(query[b, h, i, d])
                        gk[kv * dqk + d] += scale * ds[j] * qd
                        tk[kv * dqk + d] += abs(scale) * (dds[j] * abs(qd) + r * abs(ds[j] * qd)
                            + daz * (1 + abs(qd)))
                        absK[kv * dqk + d] += abs(scale * ds[j] * qd)
                    }
                    for d in 0 ..< dv {
                        let go = Double(dO[b, h, i, d])
                        gv[kv * dv + d] += p[j] * go
                        tv[kv * dv + d] += (eps * p[j] + flush) * abs(go) + r * abs(p[j] * go)
                            + daz * (1 + abs(go))
                        absV[kv * dv + d] += abs(p[j] * go)
                    }
                }
            }
        }
    }
    for i in tq.indices { tq[i] += subnormal }
    for i in tk.indices { tk[i] += subnormal }
    for i in tv.indices { tv[i] += subnormal }
    for kv in 0 ..< terms.count {
        let c = Double(terms[kv] + 2) * u
        for d in 0 ..< dqk { tk[kv * dqk + d] += c * absK[kv * dqk + d] }
        for d in 0 ..< dv { tv[kv * dv + d] += c * absV[kv * dv + d] }
    }
    return ReferenceGradients(query: gq, key: gk, value: gv, queryTolerance: tq,
                              keyTolerance: tk, valueTolerance: tv)
}

/// How float32 gradients (dense, in `layout`) compare with the reference.
public func compareGradients(_ got: AttentionGradients, layout: TensorLayout,
                             reference r: ReferenceGradients,
                             shape s: AttentionShape) -> Comparison {
    var c = Comparison()
    func check(_ name: String, _ values: [Float], _ want: [Double], _ tol: [Double],
               heads: Int, length: Int, dim: Int) {
        let st = AttentionStrides.packed(layout, heads: heads, length: length, dim: dim)
        var maxRef = 0.0
        for b in 0 ..< s.batch { for h in 0 ..< heads { for l in 0 ..< length { for d in 0 ..< dim {
            let dense = ((b * heads + h) * length + l) * dim + d
            let g = values[b * st.batch + h * st.head + l * st.sequence + d]
            guard g.isFinite else { c.defects.append("\(name)[\(dense)] is \(g)"); continue }
            let err = abs(Double(g) - want[dense])
            maxRef = max(maxRef, abs(want[dense]))
            c.maxAbsError = max(c.maxAbsError, err)
            let t = tol[dense]
            let ratio = t > 0 ? err / t : (err > 0 ? .infinity : 0)
            if ratio > c.worstRatio {
                c.worstRatio = ratio
                c.worstPlace = "\(name)[\(dense)] = \(g), expected \(want[dense]) ± \(t)"
            }
        } } } }
        if maxRef > 0 { c.maxRelativeError = max(c.maxRelativeError, c.maxAbsError / maxRef) }
    }
    check("dq", got.query, r.query, r.queryTolerance, heads: s.queryHeads, length: s.queryLength, dim: s.headDim)
    check("dk", got.key, r.key, r.keyTolerance, heads: s.keyValueHeads, length: s.keyLength, dim: s.headDim)
    check("dv", got.value, r.value, r.valueTolerance, heads: s.keyValueHeads, length: s.keyLength, dim: s.valueHeadDim)
    return c
}
