import AttentionTools
import FlashAttention
import Foundation
import ParityKit
import Testing
import TestSupport

/// Writes a case directory from the float64 reference: inputs as float32 (or `dtype`),
/// expected outputs as float64, and case.json with `json`.
func makeCase(_ c: AttentionCase, json: String, inputsAsFloat64: Bool = false,
              withGradients: Bool = false,
              corrupt: ((inout [Double]) -> Void)? = nil) throws -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("parity-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let (q, k, v) = c.inputs()
    let s = c.shape
    func save(_ name: String, _ t: StridedTensor) throws {
        let (b, h, l, d) = t.extents
        var dense: [Float] = []
        for bi in 0 ..< b { for hi in 0 ..< h { for li in 0 ..< l { for di in 0 ..< d {
            dense.append(t[bi, hi, li, di])
        } } } }
        let array = inputsAsFloat64 ? NpyArray(shape: [b, h, l, d], doubles: dense.map(Double.init))
                                    : NpyArray(shape: [b, h, l, d], floats: dense)
        try array.write(to: dir + "/" + name)
    }
    try save("q.npy", q)
    try save("k.npy", k)
    try save("v.npy", v)
    let ref = c.reference()
    var out = ref.output
    corrupt?(&out)
    try NpyArray(shape: [s.batch, s.queryHeads, s.queryLength, s.valueHeadDim], doubles: out)
        .write(to: dir + "/out.npy")
    try NpyArray(shape: [s.batch, s.queryHeads, s.queryLength], doubles: ref.logSumExp)
        .write(to: dir + "/lse.npy")
    try json.write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
    if withGradients {
        try save("dout.npy", c.outputGradient())
        let g = c.referenceGradients(forward: ref)
        try NpyArray(shape: [s.batch, s.queryHeads, s.queryLength, s.headDim], doubles: g.query)
            .write(to: dir + "/dq.npy")
        try NpyArray(shape: [s.batch, s.keyValueHeads, s.keyLength, s.headDim], doubles: g.key)
            .write(to: dir + "/dk.npy")
        try NpyArray(shape: [s.batch, s.keyValueHeads, s.keyLength, s.valueHeadDim], doubles: g.value)
            .write(to: dir + "/dv.npy")
    }
    return dir
}

@Suite("Parity tool")
struct ParityTests {
    // Tolerances for these unit-magnitude cases: the float64 reference is exact, ours is
    // float32, so errors are a few 1e-7 (see the README's accuracy table); 1e-5 is the default.
    let checker = ParityChecker(implementations: ParityImplementation.allCases.filter(\.isSupported))

    @Test("cases covering every supported case.json key pass",
          arguments: [
            ("{}", CausalMask.none, Float?.none),
            ("{\"scale\": 0.3, \"causal\": \"none\"}", .none, 0.3),
            ("{\"causal\": \"bottom_right\", \"window\": null}", .bottomRight, nil),
            ("{\"causal\": \"top_left\", \"scale\": null}", .topLeft, nil),
            ("{\"causal\": \"bottom_right\", \"window\": [8, -1]}", .bottomRight, nil),
            ("{\"window\": [-1, 5], \"scale\": 0.3}", .none, 0.3),
          ])
    func supportedKeys(_ json: String, _ causal: CausalMask, _ scale: Float?) throws {
        let window: SlidingWindow? = json.contains("[8, -1]") ? SlidingWindow(left: 8, right: nil)
            : json.contains("[-1, 5]") ? SlidingWindow(left: nil, right: 5) : nil
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                    queryLength: 37, keyLength: 70, headDim: 24,
                                                    valueHeadDim: 16),
                              causal: causal, window: window, scale: scale, seed: 5)
        let dir = try makeCase(c, json: json, inputsAsFloat64: causal == .topLeft)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        #expect(result.results.count == checker.implementations.count)
        #expect(result.results.allSatisfy { $0.tensors.map(\.tensor) == ["out", "lse"] })
    }

    @Test("a wrong expected output fails, and the report says which tensor")
    func wrongExpected() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 20, headDim: 8), seed: 9)
        let dir = try makeCase(c, json: "{}") { out in out[17] += 1e-3 }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = checker.check(directory: dir)
        #expect(!result.passed)
        for r in result.results {
            #expect(r.tensors.first { $0.tensor == "out" }?.passed == false)
            #expect(r.tensors.first { $0.tensor == "lse" }?.passed == true)
        }
        #expect(ParityReport.text([result], atol: 1e-5, rtol: 1e-5).contains("FAIL"))
        let json = try ParityReport.json([result], atol: 1e-5, rtol: 1e-5)
        #expect(json.contains("\"failed\" : 1"))
    }

    @Test("rows that see no key: −inf log-sum-exp and zero output match, NaN does not")
    func maskedRows() throws {
        // Lq > Lk, bottom-right: the first 10 rows see nothing.
        let c = AttentionCase(shape: AttentionShape(queryHeads: 1, queryLength: 30, keyLength: 20,
                                                    headDim: 8), causal: .bottomRight, seed: 2)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\"}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(checker.check(directory: dir).passed)
        var lse = try NpyArray(contentsOf: dir + "/lse.npy").doubles
        #expect(lse[0] == -.infinity)
        lse[0] = .nan
        try NpyArray(shape: [1, 1, 30], doubles: lse).write(to: dir + "/lse.npy")
        let result = checker.check(directory: dir)
        #expect(!result.passed)
        #expect(result.results[0].tensors[1].nonFiniteMismatches == 1)
    }

    @Test("gradients: dout.npy with dq, dk, dv are checked through the backward")
    func gradients() throws {
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                                    queryLength: 33, keyLength: 47, headDim: 16,
                                                    valueHeadDim: 24),
                              causal: .bottomRight, scale: 0.3, layout: .bhld, seed: 21)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"scale\": 0.3}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        #expect(result.results.allSatisfy { $0.tensors.map(\.tensor) == ["out", "lse", "dq", "dk", "dv"] })
        // A wrong dk fails, on dk alone.
        var dk = try NpyArray(contentsOf: dir + "/dk.npy").doubles
        dk[5] += 1e-3
        try NpyArray(shape: [2, 2, 47, 16], doubles: dk).write(to: dir + "/dk.npy")
        let bad = checker.check(directory: dir)
        #expect(!bad.passed)
        #expect(bad.results.allSatisfy { r in r.tensors.filter { !$0.passed }.map(\.tensor) == ["dk"] })
        // --write adds our gradients.
        let written = try ParityChecker.write(directory: dir, overwrite: true)
        #expect(written.map { ($0 as NSString).lastPathComponent }
            == ["out.npy", "lse.npy", "dq.npy", "dk.npy", "dv.npy"])
        #expect(checker.check(directory: dir).passed)
    }

    @Test("peer tensors: the report gives the peer's error beside ours and the ratio")
    func peerTensors() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 17, keyLength: 33,
                                                    headDim: 8), causal: .bottomRight, seed: 9)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"peer\": \"a test peer\"}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The peer: the reference's output moved by exactly 2⁻¹⁰ in one element (exact in
        // float32), its log-sum-exp exactly the reference's rounded to float32.
        let ref = c.reference()
        var peerOut = ref.output.map { Float($0) }
        peerOut[5] += 0x1p-10
        try NpyArray(shape: [1, 2, 17, 8], floats: peerOut).write(to: dir + "/peer_out.npy")
        try NpyArray(shape: [1, 2, 17], floats: ref.logSumExp.map { Float($0) })
            .write(to: dir + "/peer_lse.npy")
        let result = ParityChecker(implementations: [.flash]).check(directory: dir)
        #expect(result.passed && result.peer == "a test peer")
        let tensors = try #require(result.results.first?.tensors)
        let out = try #require(tensors.first { $0.tensor == "out" })
        let peerError = try #require(out.peerMaxAbsError)
        // 2⁻¹⁰ plus at most the float32 rounding of the reference element.
        #expect(abs(peerError - 0x1p-10) < 1e-7, "\(peerError)")
        #expect(out.errorRatio == out.maxAbsError / peerError)
        #expect(try #require(out.errorRatio) < 0.01)
        // The RMS over all 272 elements: that one error dominates (the float32 roundings of the
        // others are below 2⁻²⁴ each).
        let peerRms = try #require(out.peerRmsError)
        #expect(abs(peerRms - 0x1p-10 / Double(272).squareRoot()) < 1e-7, "\(peerRms)")
        #expect(out.rmsRatio == out.rmsError / peerRms)
        #expect(out.rmsError > 0 && out.rmsError <= out.maxAbsError)
        // No peer file for the gradients: no peer figures there.
        #expect(tensors.filter { ["dq", "dk", "dv"].contains($0.tensor) }.allSatisfy { $0.peerMaxAbsError == nil })
        let text = ParityReport.text([result], atol: 1e-5, rtol: 1e-5)
        #expect(text.contains("peer: a test peer") && text.contains("ratio max 0.0") && text.contains(" rms 0.0"), "\(text)")
        // A peer file of the wrong shape is an error naming it.
        try NpyArray(shape: [1, 2, 17], floats: [Float](repeating: 0, count: 34))
            .write(to: dir + "/peer_dq.npy")
        let bad = ParityChecker(implementations: [.flash]).check(directory: dir)
        #expect(bad.error?.contains("peer_dq.npy") == true, "\(bad.error ?? "no error")")
    }

    @Test("softcap and alibi_slopes keys")
    func modifiers() throws {
        let slopes: [Float] = [0.5, 0.25, 0.125, 0.0625]
        let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 30,
                                                    keyLength: 50, headDim: 16),
                              causal: .bottomRight, softcap: 20, alibiSlopes: slopes, seed: 44)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"softcap\": 20, \"alibi_slopes\": \"slopes.npy\"}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try NpyArray(shape: [4], floats: slopes).write(to: dir + "/slopes.npy")
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        // Dropping the slopes from case.json makes the same expected tensors fail.
        try "{\"causal\": \"bottom_right\", \"softcap\": 20}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(!checker.check(directory: dir).passed)
    }

    @Test("kv_split_size key: a decode case split in chunks of 7 keys")
    func splitSize() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 8, keyValueHeads: 2, queryLength: 2,
                                                    keyLength: 300, headDim: 16),
                              causal: .bottomRight, seed: 46)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"kv_split_size\": 7}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loaded = try ParityCase(directory: dir)
        #expect(loaded.attention.keySplitSize == 7)
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        try "{\"kv_split_size\": -3}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try ParityCase(directory: dir) }
    }

    @Test("positions key: rows 40 … 56 of a longer sequence against its keys 10 … 79, causal and ALiBi")
    func positions() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 17, keyLength: 70, headDim: 16),
                              causal: .bottomRight, alibiSlopes: [0.25, 0.0625], seed: 47,
                              positions: SequencePositions(queryStart: 40, keyStart: 10))
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"alibi_slopes\": \"slopes.npy\", \"positions\": [40, 10]}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try NpyArray(shape: [2], floats: [0.25, 0.0625]).write(to: dir + "/slopes.npy")
        let loaded = try ParityCase(directory: dir)
        #expect(loaded.attention.positions == SequencePositions(queryStart: 40, keyStart: 10))
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        // Without the key the rows are aligned at the bottom right instead: a different answer.
        try "{\"causal\": \"bottom_right\", \"alibi_slopes\": \"slopes.npy\"}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(!checker.check(directory: dir).passed)
        try "{\"positions\": [1]}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try ParityCase(directory: dir) }
    }

    @Test("half tensors: q.npy as <f2, k.npy and v.npy as bf16 bits (<u2) named by the bfloat16 key")
    func halfTensors() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 5,
                                                    keyLength: 90, headDim: 16),
                              causal: .bottomRight, seed: 61)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"bfloat16\": [\"k\", \"v\"]}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Rewrite the inputs in their half types, and the expected output from the float64
        // reference on those rounded values.
        var (q, k, v) = c.inputs()
        q.data = q.data.map { Float(Float16($0)) }
        k.data = k.data.map { BFloat16($0).floatValue }
        v.data = v.data.map { BFloat16($0).floatValue }
        let s = c.shape
        try NpyArray(shape: [1, 4, 5, 16], floats: q.data, storing: .float16).write(to: dir + "/q.npy")
        try NpyArray(shape: [1, 2, 90, 16], floats: k.data, storing: .bfloat16).write(to: dir + "/k.npy")
        try NpyArray(shape: [1, 2, 90, 16], floats: v.data, storing: .bfloat16).write(to: dir + "/v.npy")
        let ref = c.reference(inputs: (q, k, v))
        try NpyArray(shape: [1, 4, 5, 16], doubles: ref.output).write(to: dir + "/out.npy")
        try NpyArray(shape: [1, 4, 5], doubles: ref.logSumExp).write(to: dir + "/lse.npy")
        let loaded = try ParityCase(directory: dir)
        #expect(loaded.queryType == .float16 && loaded.keyValueType == .bfloat16)
        #expect(loaded.key == k.data && s.keyCount == loaded.key.count)
        // The output is fp16 (one rounding: 2⁻¹¹ relative); everything else is fp32 arithmetic.
        let halfChecker = ParityChecker(atol: 1e-5, rtol: 1e-3, implementations: checker.implementations)
        let result = halfChecker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-3))")
        // The fp32 tolerance fails it: the output really is fp16.
        #expect(!checker.check(directory: dir).passed)
        // <u2 without the key, or the key on a float file, is an error.
        try "{\"bfloat16\": [\"k\"]}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try ParityCase(directory: dir) }  // v is <u2, unlisted
        try "{\"bfloat16\": [\"q\", \"k\", \"v\"]}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try ParityCase(directory: dir) }  // q is <f2
    }

    @Test("bf16 cases with dout: the backward runs in the file types (bf16 gradients) and matches")
    func halfBackward() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 4, keyValueHeads: 2, queryLength: 33,
                                                    keyLength: 70, headDim: 32),
                              causal: .bottomRight, seed: 62)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"bfloat16\": [\"q\", \"k\", \"v\", \"dout\"]}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var (q, k, v) = c.inputs()
        var dO = c.outputGradient()
        q.data = q.data.map { BFloat16($0).floatValue }
        k.data = k.data.map { BFloat16($0).floatValue }
        v.data = v.data.map { BFloat16($0).floatValue }
        dO.data = dO.data.map { BFloat16($0).floatValue }
        let s = c.shape
        let (qs, ks) = ([1, 4, 33, 32], [1, 2, 70, 32])
        try NpyArray(shape: qs, floats: q.data, storing: .bfloat16).write(to: dir + "/q.npy")
        try NpyArray(shape: ks, floats: k.data, storing: .bfloat16).write(to: dir + "/k.npy")
        try NpyArray(shape: ks, floats: v.data, storing: .bfloat16).write(to: dir + "/v.npy")
        try NpyArray(shape: qs, floats: dO.data, storing: .bfloat16).write(to: dir + "/dout.npy")
        let ref = c.reference(inputs: (q, k, v))
        try NpyArray(shape: qs, doubles: ref.output).write(to: dir + "/out.npy")
        try NpyArray(shape: [1, 4, 33], doubles: ref.logSumExp).write(to: dir + "/lse.npy")
        let g = c.referenceGradients(inputs: (q, k, v), outputGradient: dO, forward: ref)
        try NpyArray(shape: qs, doubles: g.query).write(to: dir + "/dq.npy")
        try NpyArray(shape: ks, doubles: g.key).write(to: dir + "/dk.npy")
        try NpyArray(shape: ks, doubles: g.value).write(to: dir + "/dv.npy")
        #expect(try ParityCase(directory: dir).outputGradient == dO.data && s.outputCount == dO.data.count)
        // Every tensor is bf16: each output and gradient is rounded once (2⁻⁸ relative, under
        // 4e-3 of the tensor's max), plus, on AVX512-BF16, P and dS rounded to bf16 for the
        // products (2⁻⁸ of the absolute products): 1e-2 of the max holds both.
        let result = ParityChecker(atol: 1e-5, rtol: 1e-2, implementations: checker.implementations)
            .check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-2))")
        #expect(result.results.allSatisfy { $0.tensors.map(\.tensor) == ["out", "lse", "dq", "dk", "dv"] })
        // The fp32 tolerance fails the gradients: they really are bf16.
        let strict = checker.check(directory: dir)
        #expect(strict.results.allSatisfy { r in r.tensors.contains { ["dk", "dv"].contains($0.tensor) && !$0.passed } })
    }

    @Test("query_lengths and key_lengths keys")
    func lengths() throws {
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 2, queryLength: 30,
                                                    keyLength: 40, headDim: 8),
                              causal: .bottomRight, queryLengths: [30, 12], keyLengths: [25, 40],
                              seed: 45)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"query_lengths\": [30, 12], \"key_lengths\": [25, 40]}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        try "{\"causal\": \"bottom_right\", \"key_lengths\": [25, 40, 3]}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(!checker.check(directory: dir).passed)
    }

    @Test("cu_seqlens_q and cu_seqlens_k keys: packed [T, H, D] tensors, checked and written")
    func packedSequences() throws {
        // Sequences of 5, 1 and 17 queries against 9, 4 and 17 keys, each its own reference.
        let lq = [5, 1, 17], lk = [9, 4, 17]
        let (hq, hkv, d, dv) = (4, 2, 8, 6)
        let cases = (0 ..< 3).map { b in
            AttentionCase(shape: AttentionShape(queryHeads: hq, keyValueHeads: hkv, queryLength: lq[b],
                                                keyLength: lk[b], headDim: d, valueHeadDim: dv),
                          causal: .bottomRight, seed: 60 + UInt64(b))
        }
        let (tq, tk) = (lq.reduce(0, +), lk.reduce(0, +))
        var q = [Float](), k = [Float](), v = [Float](), dout = [Float]()
        var out = [Double](), lse = [Double](repeating: 0, count: hq * tq)
        var dq = [Double](), dk = [Double](), dvv = [Double]()
        var row = 0
        for (b, c) in cases.enumerated() {
            let (cq, ck, cv) = c.inputs()
            let g = c.outputGradient()
            let f = c.reference()
            let r = c.referenceGradients(forward: f)
            // [1, H, L, D] (bhld) per sequence → rows of [T, H, D].
            for i in 0 ..< lq[b] {
                for h in 0 ..< hq {
                    for x in 0 ..< d { q.append(cq[0, h, i, x]); dq.append(r.query[(h * lq[b] + i) * d + x]) }
                    for x in 0 ..< dv { dout.append(g[0, h, i, x]); out.append(f.output[(h * lq[b] + i) * dv + x]) }
                    lse[h * tq + row + i] = f.logSumExp[h * lq[b] + i]
                }
            }
            for j in 0 ..< lk[b] {
                for h in 0 ..< hkv {
                    for x in 0 ..< d { k.append(ck[0, h, j, x]); dk.append(r.key[(h * lk[b] + j) * d + x]) }
                    for x in 0 ..< dv { v.append(cv[0, h, j, x]); dvv.append(r.value[(h * lk[b] + j) * dv + x]) }
                }
            }
            row += lq[b]
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parity-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try NpyArray(shape: [tq, hq, d], floats: q).write(to: dir + "/q.npy")
        try NpyArray(shape: [tk, hkv, d], floats: k).write(to: dir + "/k.npy")
        try NpyArray(shape: [tk, hkv, dv], floats: v).write(to: dir + "/v.npy")
        try NpyArray(shape: [tq, hq, dv], floats: dout).write(to: dir + "/dout.npy")
        try NpyArray(shape: [tq, hq, dv], doubles: out).write(to: dir + "/out.npy")
        try NpyArray(shape: [hq, tq], doubles: lse).write(to: dir + "/lse.npy")
        try NpyArray(shape: [tq, hq, d], doubles: dq).write(to: dir + "/dq.npy")
        try NpyArray(shape: [tk, hkv, d], doubles: dk).write(to: dir + "/dk.npy")
        try NpyArray(shape: [tk, hkv, dv], doubles: dvv).write(to: dir + "/dv.npy")
        let json = "{\"causal\": \"bottom_right\", \"cu_seqlens_q\": [0, 5, 6, 23], \"cu_seqlens_k\": [0, 9, 13, 30]}"
        try json.write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        #expect(result.results.allSatisfy { $0.tensors.map(\.tensor) == ["out", "lse", "dq", "dk", "dv"] })
        // Other boundaries between the same tokens: the same files must fail.
        try json.replacingOccurrences(of: "[0, 5, 6, 23]", with: "[0, 6, 7, 23]")
            .write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(!checker.check(directory: dir).passed)
        // --write writes [T, H, D] / [H, T] files that pass against the same case.
        try json.write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        _ = try ParityChecker.write(directory: dir, overwrite: true)
        #expect(try NpyArray(contentsOf: dir + "/out.npy").shape == [tq, hq, dv])
        #expect(try NpyArray(contentsOf: dir + "/lse.npy").shape == [hq, tq])
        #expect(try NpyArray(contentsOf: dir + "/dk.npy").shape == [tk, hkv, d])
        let rewritten = checker.check(directory: dir)
        #expect(rewritten.passed, "\(ParityReport.text([rewritten], atol: 1e-5, rtol: 1e-5))")
    }

    @Test("pages key: page pools (HND and NHD) with CSR and block tables, against the float64 reference")
    func pagedCases() throws {
        let c = AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2, queryLength: 3,
                                                    keyLength: 11, headDim: 8),
                              causal: .bottomRight, keyLengths: [11, 6], seed: 71)
        let (q, k, v) = c.inputs()
        let s = c.shape, ps = 4
        // Sequence 0: pages 4, 1, 3; sequence 1: pages 0, 5 (a pool of 6; page 2 unused).
        let lists = [[4, 1, 3], [0, 5]]
        for nhd in [false, true] {
            for csr in [true, false] {
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parity-\(UUID().uuidString)").path
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                var kp = [Float](repeating: 0, count: 6 * 2 * ps * 8), vp = kp
                for (b, list) in lists.enumerated() {
                    for (i, page) in list.enumerated() {
                        for g in 0 ..< 2 { for r in 0 ..< ps where i * ps + r < c.keyLengths![b] { for d in 0 ..< 8 {
                            let at = nhd ? ((page * ps + r) * 2 + g) * 8 + d : ((page * 2 + g) * ps + r) * 8 + d
                            kp[at] = k[b, g, i * ps + r, d]
                            vp[at] = v[b, g, i * ps + r, d]
                        } } }
                    }
                }
                let poolShape = nhd ? [6, ps, 2, 8] : [6, 2, ps, 8]
                try NpyArray(shape: poolShape, floats: kp).write(to: dir + "/k.npy")
                try NpyArray(shape: poolShape, floats: vp).write(to: dir + "/v.npy")
                try NpyArray(shape: [2, 4, 3, 8], floats: q.data).write(to: dir + "/q.npy")
                let ref = c.reference()
                try NpyArray(shape: [2, 4, 3, 8], doubles: ref.output).write(to: dir + "/out.npy")
                try NpyArray(shape: [2, 4, 3], doubles: ref.logSumExp).write(to: dir + "/lse.npy")
                let table = csr ? "\"indptr\": [0, 3, 5], \"indices\": [4, 1, 3, 0, 5], \"last_page_len\": [3, 2]"
                                : "\"block_table\": [[4, 1, 3], [0, 5, -1]], \"seq_lens\": [11, 6]"
                let json = "{\"causal\": \"bottom_right\", \"pages\": {\"page_size\": 4, \"layout\": \"\(nhd ? "nhd" : "hnd")\", \(table)}}"
                try json.write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
                let result = checker.check(directory: dir)
                #expect(result.passed, "\(nhd ? "NHD" : "HND") \(csr ? "CSR" : "table"): \(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
                // The control: a table naming another page fails.
                try json.replacingOccurrences(of: "[4, 1, 3", with: "[4, 2, 3")
                    .write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
                #expect(!checker.check(directory: dir).passed)
                _ = s
            }
        }
    }

    @Test("mask key: a broadcast boolean mask and a dense additive one")
    func masks() throws {
        let shape = AttentionShape(batch: 2, queryHeads: 2, queryLength: 20, keyLength: 30, headDim: 8)
        // [B, 1, 1, Lk] key padding, as a (2, 1, 1, 30) uint8 array.
        var keep = [Float](repeating: 1, count: 60)
        for j in 25 ..< 30 { keep[j] = 0 }
        for j in 0 ..< 4 { keep[30 + j] = 0 }
        let boolMask = AttentionMask(boolean: keep.map { $0 != 0 }, strides: .keyPadding(shape))
        var c = AttentionCase(shape: shape, causal: .bottomRight, mask: boolMask, seed: 46)
        var dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"mask\": {\"file\": \"mask.npy\", \"kind\": \"bool\"}}",
                               withGradients: true)
        try NpyArray(shape: [2, 1, 1, 30], floats: keep).write(to: dir + "/mask.npy")
        var result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        try? FileManager.default.removeItem(atPath: dir)

        var rng = SplitMix64(seed: 9)
        let add = randomFloats(shape.batch * shape.queryHeads * 20 * 30, magnitude: 2, using: &rng)
        c = AttentionCase(shape: shape, mask: AttentionMask(additive: add, strides: .dense(shape)), seed: 47)
        dir = try makeCase(c, json: "{\"mask\": {\"file\": \"mask.npy\", \"kind\": \"additive\"}}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try NpyArray(shape: [2, 2, 20, 30], floats: add).write(to: dir + "/mask.npy")
        result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
        // A mask that does not broadcast is an error.
        try NpyArray(shape: [3, 30], floats: [Float](repeating: 0, count: 90)).write(to: dir + "/mask.npy")
        #expect(checker.check(directory: dir).error?.contains("must broadcast") == true)
    }

    @Test("block_mask key")
    func blockMask() throws {
        let shape = AttentionShape(batch: 1, queryHeads: 2, queryLength: 40, keyLength: 50, headDim: 8)
        // [1, 1, 3, 4] blocks of 16 × 16, shared by both heads.
        let kept: [Float] = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0]
        let bm = BlockMask(kept: kept.map { $0 != 0 }, blockQuery: 16, blockKey: 16,
                           strides: MaskStrides(batch: 0, head: 0, query: 4, key: 1))
        let c = AttentionCase(shape: shape, causal: .bottomRight, blockMask: bm, seed: 48)
        let dir = try makeCase(c, json: "{\"causal\": \"bottom_right\", \"block_mask\": {\"file\": \"blocks.npy\", \"block\": [16, 16]}}",
                               withGradients: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try NpyArray(shape: [1, 1, 3, 4], floats: kept).write(to: dir + "/blocks.npy")
        let result = checker.check(directory: dir)
        #expect(result.passed, "\(ParityReport.text([result], atol: 1e-5, rtol: 1e-5))")
    }

    @Test("features the library lacks are reported unsupported and fail",
          arguments: ["{\"something_new\": 1}", "{\"varlen\": [0, 3, 5]}"])
    func unsupported(_ json: String) throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 1, queryLength: 5, headDim: 4), seed: 1)
        let dir = try makeCase(c, json: json)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = checker.check(directory: dir)
        #expect(!result.passed)
        #expect(result.unsupported.count == 1)
        #expect(result.unsupported[0].contains("unknown key"))
        #expect(ParityReport.text([result], atol: 1e-5, rtol: 1e-5).contains("unsupported: "))
    }

    @Test("bad cases give an error, not a crash")
    func badCases() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 5, headDim: 4), seed: 1)
        let dir = try makeCase(c, json: "{\"causal\": \"diagonal\"}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(checker.check(directory: dir).error?.contains("causal is 'diagonal'") == true)
        try "{\"window\": [-2, 0]}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        #expect(checker.check(directory: dir).error?.contains("window must be") == true)
        try "{}".write(toFile: dir + "/case.json", atomically: true, encoding: .utf8)
        try NpyArray(shape: [1, 2, 5], floats: [Float](repeating: 0, count: 10)).write(to: dir + "/k.npy")
        #expect(checker.check(directory: dir).error?.contains("k.npy has shape [1, 2, 5]") == true)
        #expect(checker.check(directory: "/nonexistent").error != nil)

        // A block granularity of Int.max: one block per row and column, not a trap.
        let ok = try makeCase(c, json: "{\"block_mask\": {\"file\": \"blocks.npy\", \"block\": [9223372036854775807, 1]}}")
        defer { try? FileManager.default.removeItem(atPath: ok) }
        try NpyArray(shape: [1, 1, 1, 1], floats: [1]).write(to: ok + "/blocks.npy")
        #expect(checker.check(directory: ok).error == nil)
        // A bool file where a tensor belongs.
        let header = "{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2, 5, 4), }"
        var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
        var h = Array(header.utf8)
        h += [UInt8](repeating: 0x20, count: 63 - (10 + h.count) % 64) + [0x0A]
        bytes += [UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h + [UInt8](repeating: 1, count: 40)
        try Data(bytes).write(to: URL(fileURLWithPath: ok + "/q.npy"))
        let error = checker.check(directory: ok).error ?? ""
        #expect(error.contains("q.npy has dtype |b1"), "\(error)")
    }

    @Test("--write produces files that then pass the check")
    func writeMode() throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 9, keyLength: 13,
                                                    headDim: 8), causal: .topLeft, seed: 4)
        let dir = try makeCase(c, json: "{\"causal\": \"top_left\"}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: CaseError.self) { try ParityChecker.write(directory: dir) }  // exists
        let written = try ParityChecker.write(directory: dir, overwrite: true)
        #expect(written.count == 2)
        let ours = try NpyArray(contentsOf: dir + "/out.npy")
        #expect(ours.dtype == .float32 && ours.shape == [1, 2, 9, 8])
        #expect(checker.check(directory: dir).passed)
    }

    @Test("the command line parses and exits non-zero on failure")
    func commandLine() throws {
        let cmd = try ParityCommand.parse(["a", "b", "--atol", "1e-4", "--impl", "naive", "--json"])
        #expect(cmd.directories == ["a", "b"] && cmd.atol == 1e-4 && cmd.impl == [.naive] && cmd.json)
        #expect(throws: (any Error).self) { try ParityCommand.parse([]) }
        #expect(throws: (any Error).self) { try ParityCommand.parse(["a", "--rtol", "-1"]) }
        let failing = try ParityCommand.parse(["/nonexistent"])
        #expect(throws: (any Error).self) { try failing.run() }
    }
}
