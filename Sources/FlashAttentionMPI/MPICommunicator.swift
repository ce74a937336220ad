import CRingAttention
#if MPI
import CMPI
#endif

/// An MPI communicator, held as its Fortran handle (`MPI_Comm_c2f`): the integer MPI defines
/// for passing communicators between languages, so this type needs no MPI headers to exist.
///
/// With the package trait `MPI`, ``world`` and ``init(_:)`` make one from MPI itself, and
/// ``rank`` and ``size`` ask MPI. Any communicator works — a split of the world for context
/// parallelism inside data parallelism, for instance.
public struct MPICommunicator: Sendable, Hashable {
    /// The communicator's Fortran handle.
    public var handle: Int32

    /// A communicator from its Fortran handle (`MPI_Comm_c2f(comm)` in C).
    public init(handle: Int32) {
        self.handle = handle
    }

    #if MPI
    /// `MPI_COMM_WORLD`.
    public static var world: MPICommunicator { MPICommunicator(fa_mpi_comm_world()) }

    /// A communicator from a C `MPI_Comm`.
    public init(_ comm: MPI_Comm) {
        self.handle = fa_mpi_comm_handle(comm)
    }

    /// The C `MPI_Comm`.
    public var comm: MPI_Comm { fa_mpi_comm_from_handle(handle) }

    /// This process's rank in the communicator.
    public var rank: Int {
        var r: Int32 = 0
        MPI_Comm_rank(comm, &r)
        return Int(r)
    }

    /// The number of ranks.
    public var size: Int {
        var n: Int32 = 0
        MPI_Comm_size(comm, &n)
        return Int(n)
    }

    /// Waits until every rank of the communicator has called it.
    public func barrier() {
        MPI_Barrier(comm)
    }
    #endif
}

#if MPI
/// Starting and stopping MPI in a Swift program (call ``initialize()`` once before any ring
/// call, ``finalize()`` once at the end; both are no-ops when already done).
public enum MPIEnvironment {
    /// `MPI_Init_thread` asking for `MPI_THREAD_SERIALIZED` — any thread may call MPI, one at
    /// a time (a Swift task may resume on another thread; the kernels' OpenMP threads never
    /// call MPI) — unless MPI is initialized already. Returns the thread level MPI provides.
    @discardableResult
    public static func initialize() -> Int {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        var provided: Int32 = 0
        guard initialized == 0 else {
            MPI_Query_thread(&provided)
            return Int(provided)
        }
        MPI_Init_thread(nil, nil, fa_mpi_thread_serialized(), &provided)
        return Int(provided)
    }

    /// `MPI_Finalize`, unless MPI is finalized already or was never initialized.
    public static func finalize() {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        guard initialized != 0, finalized == 0 else { return }
        MPI_Finalize()
    }
}
#endif
