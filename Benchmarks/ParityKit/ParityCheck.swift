import AttentionTools
import FlashAttention
import Foundation

/// How one produced tensor compares with the expected one.
public struct TensorComparison: Sendable, Codable {
    public var tensor: String
    public var maxAbsError: Double
    /// maxAbsError / max |expected| (over finite expected values).
    public var relativeError: Double
    /// Elements where exactly one side is NaN or ±inf, or both are but differ.
    public var nonFiniteMismatches: Int
    /// atol + rtol · max |expected|.
    public var tolerance: Double
    public var passed: Bool
    /// √(mean (got − expected)²) over the elements finite on both sides: the typical error,
    /// where maxAbsError is the one worst element.
    public var rmsError: Double
    /// The peer's max |error| against the same expected tensor (when the case has one), and
    /// ours over it: below 1, we are closer to the expected tensor than the peer.
    public var peerMaxAbsError: Double?
    public var errorRatio: Double?
    /// The same for the RMS error. The accuracy targets compare these: a ratio of two maxima
    /// is the ratio of two single elements, and between two equally accurate computations it
    /// swings by a factor of 2 from one random input to the next; the RMS ratio does not.
    public var peerRmsError: Double?
    public var rmsRatio: Double?

    /// Compares element by element; both tensors in the same (dense) order. With `peer`, the
    /// peer's tensor is measured the same way (its non-finite mismatches are not counted).
    public init(tensor: String, got: [Float], expected: [Double], atol: Double, rtol: Double,
                peer: [Float]? = nil) {
        self.tensor = tensor
        let (maxAbs, rms, maxExpected, mismatches) = Self.errors(got, expected)
        maxAbsError = maxAbs
        rmsError = rms
        relativeError = maxExpected > 0 ? maxAbs / maxExpected : maxAbs
        nonFiniteMismatches = mismatches
        tolerance = atol + rtol * maxExpected
        passed = mismatches == 0 && maxAbs <= tolerance
        if let peer {
            let peerErrors = Self.errors(peer, expected)
            peerMaxAbsError = peerErrors.maxAbs
            errorRatio = Self.ratio(maxAbs, peerErrors.maxAbs)
            peerRmsError = peerErrors.rms
            rmsRatio = Self.ratio(rms, peerErrors.rms)
        }
    }

    /// ours / peer's; 1 when both are exact.
    private static func ratio(_ ours: Double, _ peer: Double) -> Double {
        peer > 0 ? ours / peer : (ours == 0 ? 1 : .infinity)
    }

    /// max |got − expected|, the RMS of got − expected and max |expected| over elements finite
    /// on both sides; elements where exactly one side is NaN or ±inf (or both are but differ),
    /// and any length mismatch.
    private static func errors(_ got: [Float], _ expected: [Double])
        -> (maxAbs: Double, rms: Double, maxExpected: Double, mismatches: Int)
    {
        var maxAbs = 0.0, squares = 0.0, finite = 0, maxExpected = 0.0, mismatches = 0
        for (g, e) in zip(got, expected) {
            let gd = Double(g)
            if e.isFinite && gd.isFinite {
                maxAbs = max(maxAbs, abs(gd - e))
                squares += (gd - e) * (gd - e)
                finite += 1
                maxExpected = max(maxExpected, abs(e))
            } else if !(e.isNaN && gd.isNaN) && !(e.isInfinite && gd == e) {
                mismatches += 1
            }
        }
        if got.count != expected.count { mismatches += abs(got.count - expected.count) }
        let rms = finite > 0 ? (squares / Double(finite)).squareRoot() : 0
        return (maxAbs, rms, maxExpected, mismatches)
    }
}

/// One case run with one implementation.
public struct ImplementationResult: Sendable, Codable {
    public var implementation: String
    public var tensors: [TensorComparison]
    public var error: String?
    public var passed: Bool { error == nil && !tensors.isEmpty && tensors.allSatisfy(\.passed) }
}

/// Everything about one case directory.
public struct CaseResult: Sendable, Codable {
    public var directory: String
    public var shape: String
    /// Who computed the case's peer tensors, if it has any.
    public var peer: String?
    public var unsupported: [String]
    public var error: String?
    public var results: [ImplementationResult]
    /// A case passes only if it ran, asked for nothing unsupported, and every
    /// implementation matched every tensor.
    public var passed: Bool {
        error == nil && unsupported.isEmpty && !results.isEmpty && results.allSatisfy(\.passed)
    }
}

/// The implementations the tool can run (shared with attention-bench).
public typealias ParityImplementation = ToolImplementation

/// Runs cases and compares them with their expected tensors.
public struct ParityChecker: Sendable {
    public var atol: Double
    public var rtol: Double
    public var implementations: [ParityImplementation]

    public init(atol: Double = 1e-5, rtol: Double = 1e-5,
                implementations: [ParityImplementation] = [.flash, .naive]) {
        self.atol = atol
        self.rtol = rtol
        self.implementations = implementations
    }

    public func check(directory: String) -> CaseResult {
        let c: ParityCase
        do {
            c = try ParityCase(directory: directory)
        } catch {
            return CaseResult(directory: directory, shape: "", peer: nil, unsupported: [],
                              error: "\(error)", results: [])
        }
        let s = c.shape
        let shapeText = "B\(s.batch) Hq\(s.queryHeads) Hkv\(s.keyValueHeads) Lq\(s.queryLength) "
            + "Lk\(s.keyLength) Dqk\(s.headDim) Dv\(s.valueHeadDim)"
        var result = CaseResult(directory: directory, shape: shapeText,
                                peer: c.peerTensors.isEmpty ? nil : (c.peer ?? "unnamed"),
                                unsupported: c.unsupported, error: nil, results: [])
        guard c.unsupported.isEmpty else { return result }  // never run half a case
        for impl in implementations {
            var r = ImplementationResult(implementation: impl.rawValue, tensors: [], error: nil)
            do {
                let (out, lse) = try c.forward(c.options(impl.implementation, kernel: impl.kernel))
                if let expected = c.expectedOutput {
                    r.tensors.append(TensorComparison(tensor: "out", got: out, expected: expected.doubles,
                                                      atol: atol, rtol: rtol,
                                                      peer: c.peerTensors["out"]?.floats))
                }
                if let expected = c.expectedLogSumExp {
                    r.tensors.append(TensorComparison(tensor: "lse", got: lse, expected: expected.doubles,
                                                      atol: atol, rtol: rtol,
                                                      peer: c.peerTensors["lse"]?.floats))
                }
                if let dout = c.outputGradient {
                    // The backward of this implementation, fed its own forward's out and lse.
                    let g = try c.backward(output: out, logSumExp: lse, outputGradient: dout,
                                           options: c.options(impl.implementation, kernel: impl.kernel))
                    for (name, got) in [("dq", g.query), ("dk", g.key), ("dv", g.value)] {
                        if let expected = c.expectedGradients[name] {
                            r.tensors.append(TensorComparison(tensor: name, got: got,
                                                              expected: expected.doubles,
                                                              atol: atol, rtol: rtol,
                                                              peer: c.peerTensors[name]?.floats))
                        }
                    }
                }
            } catch {
                r.error = "\(error)"
            }
            result.results.append(r)
        }
        return result
    }

    /// Runs `implementation` on a case's inputs and writes out.npy and lse.npy — and, when the
    /// case has dout.npy, dq.npy, dk.npy and dv.npy — into its directory (refusing to replace
    /// existing files unless `overwrite`).
    public static func write(directory: String, implementation: ParityImplementation = .flash,
                             overwrite: Bool = false) throws -> [String] {
        let c = try ParityCase(directory: directory, requireExpected: false)
        guard c.unsupported.isEmpty else {
            throw CaseError("\(directory): unsupported: \(c.unsupported.joined(separator: ", "))")
        }
        let (out, lse) = try c.forward(c.options(implementation.implementation, kernel: implementation.kernel))
        var written: [String] = []
        var arrays = [("out.npy", c.fileArray("out", out)), ("lse.npy", c.fileArray("lse", lse))]
        if let dout = c.outputGradient {
            let g = try c.backward(output: out, logSumExp: lse, outputGradient: dout,
                                   options: c.options(implementation.implementation, kernel: implementation.kernel))
            arrays += [("dq.npy", c.fileArray("dq", g.query)), ("dk.npy", c.fileArray("dk", g.key)),
                       ("dv.npy", c.fileArray("dv", g.value))]
        }
        for (name, array) in arrays {
            let path = (directory as NSString).appendingPathComponent(name)
            if !overwrite && FileManager.default.fileExists(atPath: path) {
                throw CaseError("\(path) exists; pass --overwrite to replace it")
            }
            try array.write(to: path)
            written.append(path)
        }
        return written
    }
}

/// Human-readable and JSON reports.
public enum ParityReport {
    public static func text(_ results: [CaseResult], atol: Double, rtol: Double) -> String {
        var out = ""
        for c in results {
            out += "\(c.passed ? "PASS" : "FAIL")  \(c.directory)  \(c.shape)\n"
            if let e = c.error { out += "      error: \(e)\n" }
            if let p = c.peer { out += "      peer: \(p) (error against the expected tensors beside ours; ratio = ours / peer's)\n" }
            for u in c.unsupported { out += "      unsupported: \(u)\n" }
            for r in c.results {
                if let e = r.error { out += "      \(r.implementation): error: \(e)\n" }
                for t in r.tensors {
                    out += String(format: "      %-14@ %-4@ max abs %.3e  rel %.3e  non-finite mismatches %d  (tol %.3e) %@",
                                  r.implementation, t.tensor, t.maxAbsError, t.relativeError,
                                  t.nonFiniteMismatches, t.tolerance, t.passed ? "ok" : "FAIL")
                    if let pe = t.peerMaxAbsError, let ratio = t.errorRatio,
                       let pr = t.peerRmsError, let rmsRatio = t.rmsRatio {
                        out += String(format: "\n%@rms %.3e  peer max abs %.3e  rms %.3e  ratio max %.2f  rms %.2f",
                                      String(repeating: " ", count: 26), t.rmsError, pe, pr, ratio, rmsRatio)
                    }
                    out += "\n"
                }
            }
        }
        let passed = results.filter(\.passed).count
        out += "\(passed) passed, \(results.count - passed) failed (atol \(atol), rtol \(rtol))\n"
        return out
    }

    public static func json(_ results: [CaseResult], atol: Double, rtol: Double) throws -> String {
        struct Document: Codable {
            var atol: Double, rtol: Double, passed: Int, failed: Int, cases: [CaseResult]
        }
        let passed = results.filter(\.passed).count
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let doc = Document(atol: atol, rtol: rtol, passed: passed, failed: results.count - passed,
                           cases: results)
        return String(decoding: try encoder.encode(doc), as: UTF8.self) + "\n"
    }
}
