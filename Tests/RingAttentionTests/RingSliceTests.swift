import FlashAttention
import FlashAttentionMPI
import Testing

/// The parts of ring attention that need no MPI: how tokens are dealt to ranks, and what a
/// build without MPI says. (The ring itself runs under mpirun: `make mpi-test`.)
@Suite struct RingSliceTests {
    @Test("every token goes to exactly one rank, in runs of consecutive positions",
          arguments: [RingLayout.contiguous, .zigzag])
    func partition(_ layout: RingLayout) throws {
        for n in [1, 2, 3, 7, 17, 63, 64, 65, 1000] {
            for ranks in 1 ... 9 {
                var owner = [Int](repeating: -1, count: n)
                for r in 0 ..< ranks {
                    let s = try RingAttention.slice(sequenceLength: n, ranks: ranks, rank: r, layout: layout)
                    #expect(s.runs.count == (layout == .zigzag ? 2 : 1))
                    for p in s.runs.joined() {
                        #expect(owner[p] == -1, "position \(p) of \(n) dealt twice")
                        owner[p] = r
                    }
                }
                #expect(!owner.contains(-1), "N=\(n), \(ranks) ranks: a position has no rank")
            }
        }
    }

    @Test("contiguous slices are in rank order and differ in length by at most one")
    func contiguousBalance() throws {
        let n = 1001, ranks = 7
        var next = 0
        var lengths: [Int] = []
        for r in 0 ..< ranks {
            let s = try RingAttention.slice(sequenceLength: n, ranks: ranks, rank: r, layout: .contiguous)
            #expect(s.runs[0].lowerBound == next)
            next = s.runs[0].upperBound
            lengths.append(s.count)
        }
        #expect(lengths.max()! - lengths.min()! <= 1)
    }

    @Test("zigzag gives every rank the same causal work, to within one chunk's rows")
    func zigzagBalance() throws {
        // Causal work of a rank: the keys each of its rows sees, Σ (p + 1).
        for (n, ranks) in [(16384, 2), (16384, 4), (1000, 3), (999, 4)] {
            var work: [Int] = []
            for r in 0 ..< ranks {
                let s = try RingAttention.slice(sequenceLength: n, ranks: ranks, rank: r, layout: .zigzag)
                #expect(s.runs[0].upperBound <= s.runs[1].lowerBound)
                work.append(s.runs.joined().reduce(0) { $0 + $1 + 1 })
            }
            let chunk = (n + 2 * ranks - 1) / (2 * ranks)
            #expect(work.max()! - work.min()! <= 2 * chunk * chunk + n, "N=\(n) R=\(ranks): \(work)")
        }
    }

    @Test("bad slice arguments are typed errors naming the argument")
    func badSlices() {
        #expect(throws: AttentionError.invalidExtent(argument: "sequenceLength", value: 0)) {
            try RingAttention.slice(sequenceLength: 0, ranks: 2, rank: 0)
        }
        #expect(throws: AttentionError.invalidExtent(argument: "ranks", value: 0)) {
            try RingAttention.slice(sequenceLength: 5, ranks: 0, rank: 0)
        }
        #expect(throws: AttentionError.invalidExtent(argument: "rank", value: 2)) {
            try RingAttention.slice(sequenceLength: 5, ranks: 2, rank: 2)
        }
    }

    #if !MPI
    @Test("without the trait MPI the ring is unavailable, and a call says so instead of crashing")
    func unavailable() {
        #expect(!RingAttention.isAvailable)
        let shape = AttentionShape(queryHeads: 1, queryLength: 4, headDim: 2)
        let x = [Float](repeating: 0.5, count: 8)
        do {
            _ = try RingAttention.forward(query: x, key: x, value: x, shape: shape, sequenceLength: 4,
                                          communicator: MPICommunicator(handle: 0))
            Issue.record("the ring ran without MPI")
        } catch {
            guard case let .mpiUnavailable(reason) = error else {
                Issue.record("expected mpiUnavailable, got \(error)")
                return
            }
            #expect(reason.contains("no MPI"))
        }
    }
    #endif
}
