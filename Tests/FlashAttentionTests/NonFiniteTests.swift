import FlashAttention
import Testing
import TestSupport

/// How NaN and infinities in the inputs reach the outputs (the header, README "Non-finite
/// values" and the DocC article NonFiniteValues state it): NaN in, NaN out, for exactly the
/// rows a value reaches through a key they see, and the same on every path and ISA.
///
/// What is checked exactly: which rows (or, for V and dO, which columns) are NaN, and that every
/// other row equals the float64 reference of the same problem with clean inputs. What is not:
/// a masked pair whose key is still read multiplies a zero weight by its V (or, in the
/// backward, its Q, K or dO), which is NaN when that value is; the documentation says so, and
/// those elements are left unchecked.
@Suite("Non-finite inputs")
struct NonFiniteTests {
    struct Path: CustomStringConvertible, Sendable {
        var implementation: AttentionImplementation
        var kernel: KernelISA = .automatic
        var split = 0
        var description: String {
            implementation == .naive ? "naive" : "flash \(kernel)" + (split > 0 ? " split \(split)" : "")
        }
        func applied(to options: AttentionOptions) -> AttentionOptions {
            var o = options
            o.implementation = implementation
            o.kernel = kernel
            o.keySplitSize = split
            return o
        }
    }

    /// The naive path, the flash path on every ISA this CPU runs, and split-KV.
    static let forwardPaths: [Path] = [Path(implementation: .naive)]
        + FlashAttention.supportedKernels.map { Path(implementation: .flash, kernel: $0) }
        + [Path(implementation: .flash, split: 16)]
    static let backwardPaths: [Path] = [Path(implementation: .naive)]
        + FlashAttention.supportedKernels.map { Path(implementation: .flash, kernel: $0) }

    /// Two query heads over one key/value head (so a key reaches both), 70 keys (past one
    /// 64-key block), head dim 24; Lq = 1 runs the decode row tiles, 37 the key-major tiles.
    static func shape(_ lq: Int) -> AttentionShape {
        AttentionShape(queryHeads: 2, keyValueHeads: 1, queryLength: lq, keyLength: 70, headDim: 24)
    }

    static let (dim, key, column) = (24, 40, 5)

    /// Seeded inputs in ±1, dense bhld.
    static func inputs(_ s: AttentionShape, seed: UInt64 = 7) -> (q: [Float], k: [Float], v: [Float]) {
        var rng = SplitMix64(seed: seed)
        return (randomFloats(s.queryCount, magnitude: 1, using: &rng),
                randomFloats(s.keyCount, magnitude: 1, using: &rng),
                randomFloats(s.valueCount, magnitude: 1, using: &rng))
    }

    static func tensors(_ q: [Float], _ k: [Float], _ v: [Float], _ s: AttentionShape)
        -> (query: StridedTensor, key: StridedTensor, value: StridedTensor)
    {
        let st = AttentionTensorStrides.packed(.bhld, shape: s)
        return (StridedTensor(data: q, strides: st.query, extents: (1, s.queryHeads, s.queryLength, s.headDim)),
                StridedTensor(data: k, strides: st.key, extents: (1, s.keyValueHeads, s.keyLength, s.headDim)),
                StridedTensor(data: v, strides: st.value, extents: (1, s.keyValueHeads, s.keyLength, s.valueHeadDim)))
    }

    /// The float64 reference of the problem (its inputs finite).
    static func reference(_ q: [Float], _ k: [Float], _ v: [Float], _ s: AttentionShape,
                          _ o: AttentionOptions) -> ReferenceResult {
        let (qt, kt, vt) = tensors(q, k, v, s)
        return referenceAttention(query: qt, key: kt, value: vt, shape: s,
                                  scale: Double(o.scale ?? 1 / Float(s.headDim).squareRoot()),
                                  causal: o.causal, softcap: o.softcap.map(Double.init), mask: o.mask)
    }

    /// Row `row` (of Hq·Lq) within the reference's tolerance, columns `except` left out.
    static func expectMatches(_ out: [Float], _ lse: [Float], _ ref: ReferenceResult, row: Int,
                              except: Int? = nil, _ what: String) {
        let dv = dim
        var worst = 0.0
        for d in 0 ..< dv where d != except {
            let got = out[row * dv + d]
            guard got.isFinite else {
                Issue.record("\(what): row \(row) element \(d) is \(got)")
                return
            }
            worst = max(worst, abs(Double(got) - ref.output[row * dv + d]) / ref.outputTolerance[row])
        }
        #expect(lse[row].isFinite, "\(what): row \(row) lse \(lse[row])")
        if lse[row].isFinite {
            worst = max(worst, abs(Double(lse[row]) - ref.logSumExp[row]) / ref.logSumExpTolerance[row])
        }
        #expect(worst <= 1, "\(what): row \(row) error/tolerance \(worst)")
    }

    static func expectNaNRow(_ out: [Float], _ lse: [Float], row: Int, _ what: String) {
        #expect(out[(row * dim) ..< (row * dim + dim)].allSatisfy { $0.isNaN }, "\(what): row \(row) output")
        #expect(lse[row].isNaN, "\(what): row \(row) lse \(lse[row])")
    }

    static func run(_ q: [Float], _ k: [Float], _ v: [Float], _ s: AttentionShape,
                    _ o: AttentionOptions, _ path: Path) throws -> ([Float], [Float]) {
        try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v, shape: s,
                                                options: path.applied(to: o))
    }

    /// Whether query row i (of Lq) sees `key` under the causal mode (Lk = 70).
    static func sees(_ i: Int, _ lq: Int, _ causal: CausalMask, key j: Int) -> Bool {
        causal == .bottomRight ? j <= i + 70 - lq : true
    }

    // ---- forward ----

    @Test("a NaN in one query row: that row's output and LSE are NaN, every other row as before",
          arguments: forwardPaths, [(1, CausalMask.none), (37, .none), (37, .bottomRight)])
    func queryNaN(_ path: Path, _ c: (lq: Int, causal: CausalMask)) throws {
        let s = Self.shape(c.lq)
        var (q, k, v) = Self.inputs(s)
        let options = AttentionOptions(causal: c.causal)
        let ref = Self.reference(q, k, v, s, options)
        let bad = c.lq - 1  // head 0's last row
        q[bad * Self.dim + 3] = .nan
        let (out, lse) = try Self.run(q, k, v, s, options, path)
        for row in 0 ..< 2 * c.lq {
            if row == bad { Self.expectNaNRow(out, lse, row: row, "\(path)") }
            else { Self.expectMatches(out, lse, ref, row: row, "\(path)") }
        }
    }

    @Test("a NaN in one key row: exactly the rows that see that key are NaN; a mask hides it",
          arguments: forwardPaths, [(1, CausalMask.none, 0), (37, .none, 0), (37, .bottomRight, 0),
                                    (37, .none, 1), (37, .bottomRight, 2), (1, .none, 2)])
    func keyNaN(_ path: Path, _ c: (lq: Int, causal: CausalMask, hide: Int)) throws {
        let s = Self.shape(c.lq)
        var (q, k, v) = Self.inputs(s)
        var options = AttentionOptions(causal: c.causal)
        // hide 1: a boolean key-padding mask without the key; 2: an additive one, −inf there.
        if c.hide == 1 {
            options.mask = AttentionMask(boolean: (0 ..< 70).map { $0 != Self.key },
                                         strides: .keyPadding(s))
        } else if c.hide == 2 {
            options.mask = AttentionMask(additive: (0 ..< 70).map { $0 == Self.key ? -.infinity : 0.25 },
                                         strides: .keyPadding(s))
        }
        let ref = Self.reference(q, k, v, s, options)
        k[Self.key * Self.dim] = .nan
        let (out, lse) = try Self.run(q, k, v, s, options, path)
        for row in 0 ..< 2 * c.lq {
            let i = row % c.lq
            if c.hide == 0 && Self.sees(i, c.lq, c.causal, key: Self.key) {
                Self.expectNaNRow(out, lse, row: row, "\(path)")
            } else {
                Self.expectMatches(out, lse, ref, row: row, "\(path)")
            }
        }
    }

    @Test("a NaN in one value element: that column of the rows that see the key, nothing else",
          arguments: forwardPaths, [(1, CausalMask.none), (37, .none), (37, .bottomRight)])
    func valueNaN(_ path: Path, _ c: (lq: Int, causal: CausalMask)) throws {
        let s = Self.shape(c.lq)
        var (q, k, v) = Self.inputs(s)
        let options = AttentionOptions(causal: c.causal)
        let ref = Self.reference(q, k, v, s, options)
        v[Self.key * Self.dim + Self.column] = .nan
        let (out, lse) = try Self.run(q, k, v, s, options, path)
        for row in 0 ..< 2 * c.lq {
            // The LSE and the other columns of every row are as before; the column is NaN in
            // the rows that see the key (and unspecified in those that do not: 0 · NaN).
            Self.expectMatches(out, lse, ref, row: row, except: Self.column, "\(path)")
            if Self.sees(row % c.lq, c.lq, c.causal, key: Self.key) {
                #expect(out[row * Self.dim + Self.column].isNaN, "\(path): row \(row)")
            }
        }
    }

    @Test("±inf in a key row: a +inf score makes its row NaN (soft-capped: +softcap), a −inf score hides the key",
          arguments: forwardPaths, [(1, Float?.none), (37, nil), (37, 5)])
    func keyInfinity(_ path: Path, _ c: (lq: Int, softcap: Float?)) throws {
        let lq = c.lq
        let s = Self.shape(lq)
        var (q, k, v) = Self.inputs(s)
        // Head 0's row 0 all positive (score +inf), head 1's row 0 all negative (−inf).
        for d in 0 ..< Self.dim {
            q[d] = abs(q[d]) + 0.01
            q[lq * Self.dim + d] = -abs(q[lq * Self.dim + d]) - 0.01
        }
        // The reference of row (1, 0): the same problem without the key (a −inf scaled score
        // is hidden before soft-capping).
        let without = AttentionOptions(softcap: c.softcap,
                                       mask: AttentionMask(boolean: (0 ..< 70).map { $0 != Self.key },
                                                           strides: .keyPadding(s)))
        let ref = Self.reference(q, k, v, s, without)
        for d in 0 ..< Self.dim { k[Self.key * Self.dim + d] = .infinity }
        let (out, lse) = try Self.run(q, k, v, s, AttentionOptions(softcap: c.softcap), path)
        if c.softcap == nil {
            Self.expectNaNRow(out, lse, row: 0, "\(path)")
        } else {
            #expect(Self.row(out, 0).allSatisfy { $0.isFinite } && lse[0].isFinite, "\(path)")
        }
        Self.expectMatches(out, lse, ref, row: lq, "\(path)")
    }

    @Test("half-precision K/V caches keep NaN a NaN: the same rows are NaN, the others unchanged",
          arguments: [false, true], [1, 37])
    func halfCaches(_ bf16: Bool, _ lq: Int) throws {
        if bf16 { try halfCache(lq) { BFloat16($0) } } else { try halfCache(lq) { Float16($0) } }
    }

    func halfCache<C: AttentionElement>(_ lq: Int, _ convert: (Float) -> C) throws {
        let s = Self.shape(lq)
        let (q, k, v) = Self.inputs(s)
        var bad = k
        bad[Self.key * Self.dim + 1] = .nan
        let options = AttentionOptions(causal: .bottomRight)
        for path in Self.forwardPaths {
            let o = path.applied(to: options)
            let (clean, cleanLSE) = try FlashAttention.forwardWithLogSumExp(
                query: q, key: k.map(convert), value: v.map(convert), shape: s, options: o)
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q, key: bad.map(convert), value: v.map(convert), shape: s, options: o)
            for row in 0 ..< 2 * lq {
                if Self.sees(row % lq, lq, .bottomRight, key: Self.key) {
                    Self.expectNaNRow(out, lse, row: row, "\(path) \(C.self)")
                } else {  // the key's score is replaced by −inf: the row is computed as before
                    #expect(Self.row(out, row) == Self.row(clean, row) && lse[row] == cleanLSE[row],
                            "\(path) \(C.self): row \(row)")
                }
            }
        }
    }

    @Test("additive mask entries: +inf and NaN make their row NaN, −inf hides the key",
          arguments: forwardPaths)
    func maskEntries(_ path: Path) throws {
        let s = Self.shape(37)
        let (q, k, v) = Self.inputs(s)
        var values = [Float](repeating: 0, count: 2 * 37 * 70)
        values[3 * 70 + 10] = .infinity   // head 0, row 3
        values[40 * 70 + 11] = .nan       // head 1, row 3
        values[5 * 70 + 12] = -.infinity  // head 0, row 5: key 12 hidden
        var options = AttentionOptions(causal: .bottomRight)
        let clean = values.map { $0.isFinite || $0 == -.infinity ? $0 : 0 }
        options.mask = AttentionMask(additive: clean, strides: .dense(s))
        let ref = Self.reference(q, k, v, s, options)
        options.mask = AttentionMask(additive: values, strides: .dense(s))
        let (out, lse) = try Self.run(q, k, v, s, options, path)
        for row in 0 ..< 74 {
            if row == 3 || row == 40 { Self.expectNaNRow(out, lse, row: row, "\(path)") }
            else { Self.expectMatches(out, lse, ref, row: row, "\(path)") }
        }
    }

    @Test("scale 0 averages, a negative scale is a scale, an overflowing one gives +inf scores",
          arguments: forwardPaths)
    func scales(_ path: Path) throws {
        let s = Self.shape(37)
        var (q, k, v) = Self.inputs(s)
        for scale: Float in [0, -0.7] {
            let options = AttentionOptions(scale: scale, causal: .bottomRight)
            let ref = Self.reference(q, k, v, s, options)
            let (out, lse) = try Self.run(q, k, v, s, options, path)
            for row in 0 ..< 74 { Self.expectMatches(out, lse, ref, row: row, "\(path) scale \(scale)") }
        }
        // Positive inputs: every score overflows to +inf, so every row is NaN.
        q = q.map(abs)
        k = k.map(abs)
        let (out, lse) = try Self.run(q, k, v, s, AttentionOptions(scale: 3.4e38), path)
        for row in 0 ..< 74 { Self.expectNaNRow(out, lse, row: row, "\(path) scale 3.4e38") }
    }

    @Test("soft-capping bounds huge and infinite logits", arguments: forwardPaths)
    func softcapBounds(_ path: Path) throws {
        let s = Self.shape(37)
        var (q, k, v) = Self.inputs(s)
        q = q.map { $0 * 1e15 }
        k = k.map { $0 * 1e15 }
        let options = AttentionOptions(causal: .bottomRight, softcap: 5)
        let ref = Self.reference(q, k, v, s, options)
        let (out, lse) = try Self.run(q, k, v, s, options, path)
        for row in 0 ..< 74 { Self.expectMatches(out, lse, ref, row: row, "\(path) huge") }
        // An infinite logit is capped at +5: finite.
        for d in 0 ..< Self.dim {
            q[d] = abs(q[d]) + 1
            k[Self.key * Self.dim + d] = .infinity
        }
        let (capped, cappedLSE) = try Self.run(q, k, v, s, AttentionOptions(softcap: 5), path)
        #expect(capped[0 ..< Self.dim].allSatisfy { $0.isFinite } && cappedLSE[0].isFinite, "\(path)")
    }

    // ---- backward ----

    static func gradients(_ q: [Float], _ k: [Float], _ v: [Float], _ dO: [Float],
                          _ s: AttentionShape, _ options: AttentionOptions, _ path: Path) throws
        -> AttentionGradients
    {
        let (out, lse) = try run(q, k, v, s, options, path)
        return try FlashAttention.backward(query: q, key: k, value: v, output: out, logSumExp: lse,
                                           outputGradient: dO, shape: s,
                                           options: path.applied(to: options))
    }

    static func row(_ x: [Float], _ r: Int) -> ArraySlice<Float> { x[(r * dim) ..< (r * dim + dim)] }

    @Test("a NaN in one query row: its dQ row, and dK and dV of the keys it sees, are NaN",
          arguments: backwardPaths, [CausalMask.none, .bottomRight])
    func backwardQueryNaN(_ path: Path, _ causal: CausalMask) throws {
        let s = Self.shape(37)
        var (q, k, v) = Self.inputs(s)
        var rng = SplitMix64(seed: 11)
        let dO = randomFloats(s.outputCount, magnitude: 1, using: &rng)
        let bad = 5  // head 0, row 5: sees keys 0 ... 38 under bottom-right causal
        q[bad * Self.dim] = .nan
        let g = try Self.gradients(q, k, v, dO, s, AttentionOptions(causal: causal), path)
        for r in 0 ..< 74 {
            let ok = Self.row(g.query, r).allSatisfy { $0.isFinite }
            #expect(r == bad ? Self.row(g.query, r).allSatisfy { $0.isNaN } : ok, "\(path): dQ row \(r)")
        }
        for j in 0 ..< 70 {
            if Self.sees(bad, 37, causal, key: j) {
                #expect(Self.row(g.key, j).allSatisfy { $0.isNaN }, "\(path): dK row \(j)")
                #expect(Self.row(g.value, j).allSatisfy { $0.isNaN }, "\(path): dV row \(j)")
            } else {  // P = 0 exactly, and dO is finite (dK: 0 · NaN of the query, unspecified)
                #expect(Self.row(g.value, j).allSatisfy { $0.isFinite }, "\(path): dV row \(j)")
            }
        }
    }

    @Test("a NaN in one output-gradient element: dQ of its row, dK of the keys the row sees, that column of their dV",
          arguments: backwardPaths, [CausalMask.none, .bottomRight])
    func backwardOutputGradientNaN(_ path: Path, _ causal: CausalMask) throws {
        let s = Self.shape(37)
        let (q, k, v) = Self.inputs(s)
        var rng = SplitMix64(seed: 11)
        var dO = randomFloats(s.outputCount, magnitude: 1, using: &rng)
        let bad = 5
        dO[bad * Self.dim + 2] = .nan
        let g = try Self.gradients(q, k, v, dO, s, AttentionOptions(causal: causal), path)
        for r in 0 ..< 74 {
            let row = Self.row(g.query, r)
            #expect(r == bad ? row.allSatisfy { $0.isNaN } : row.allSatisfy { $0.isFinite }, "\(path): dQ row \(r)")
        }
        for j in 0 ..< 70 {
            let dv = Self.row(g.value, j)
            if Self.sees(bad, 37, causal, key: j) {
                #expect(Self.row(g.key, j).allSatisfy { $0.isNaN }, "\(path): dK row \(j)")
                #expect(dv.indices.allSatisfy { ($0 - dv.startIndex == 2) == dv[$0].isNaN },
                        "\(path): dV row \(j)")
            } else {  // dS = 0 exactly: dK finite (dV's column 2: 0 · NaN, unspecified)
                #expect(Self.row(g.key, j).allSatisfy { $0.isFinite }, "\(path): dK row \(j)")
                #expect(dv.indices.allSatisfy { $0 - dv.startIndex == 2 || dv[$0].isFinite },
                        "\(path): dV row \(j)")
            }
        }
    }
}
