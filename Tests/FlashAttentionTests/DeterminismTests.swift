import FlashAttention
import Testing
import TestSupport

@Suite("Reproducibility")
struct DeterminismTests {
    /// Causal and not, GQA, tails in every tile dimension: enough work items for 3 threads.
    static let cases = [
        AttentionCase(shape: AttentionShape(batch: 2, queryHeads: 4, keyValueHeads: 2,
                                            queryLength: 257, keyLength: 300, headDim: 40),
                      causal: .bottomRight, seed: 7),
        AttentionCase(shape: AttentionShape(queryHeads: 3, queryLength: 130, headDim: 64,
                                            valueHeadDim: 17),
                      layout: .blhd, seed: 8),
    ]

    @Test("outputs are bitwise identical for 1, 2 and 3 threads, on every kernel ISA",
          arguments: cases, FlashAttention.supportedKernels)
    func threadCounts(_ c: AttentionCase, _ kernel: KernelISA) throws {
        let (q, k, v) = c.inputs()
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            var options = c.options
            options.threadCount = threads
            options.kernel = kernel
            let (out, lse) = try FlashAttention.forwardWithLogSumExp(
                query: q.data, key: k.data, value: v.data, shape: c.shape, options: options)
            results.append(out + lse)
        }
        // Compare bit patterns, so that NaN == NaN and -0 ≠ +0 would both be caught.
        let bits = results.map { $0.map(\.bitPattern) }
        #expect(bits[0] == bits[1])
        #expect(bits[0] == bits[2])
    }

    @Test("many concurrent calls from Swift tasks give the serial answer")
    func concurrentTasks() async throws {
        let c = AttentionCase(shape: AttentionShape(queryHeads: 2, queryLength: 100,
                                                    keyLength: 77, headDim: 32),
                              causal: .topLeft, seed: 11)
        let (q, k, v) = c.inputs()
        let shape = c.shape, options = c.options
        let serial = try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                                shape: shape, options: options)
        let results = try await withThrowingTaskGroup(of: [Float].self) { group in
            for index in 0 ..< 32 {
                group.addTask {
                    var o = options
                    o.implementation = index % 4 == 3 ? .naive : .flash
                    o.threadCount = 1 + index % 2
                    return try FlashAttention.forward(query: q.data, key: k.data, value: v.data,
                                                      shape: shape, options: o)
                }
            }
            var all: [[Float]] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(results.count == 32)
        let reference = c.reference()
        for r in results {
            // naive differs from flash in rounding, so each result is held to the reference;
            // the flash ones must also equal the serial flash run bit for bit.
            #expect(compare(output: r, strides: c.strides.output, logSumExp: nil,
                            reference: reference, shape: shape).passed)
        }
        let flashCount = results.filter { $0.map(\.bitPattern) == serial.map(\.bitPattern) }.count
        #expect(flashCount >= 24)
    }
}
