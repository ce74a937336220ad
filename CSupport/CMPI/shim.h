// Open MPI's C interface as a Swift-visible system module (pkg-config ompi-c), plus what Swift
// cannot import from it: MPI_COMM_WORLD, MPI_COMM_SELF and MPI_THREAD_* are macros over
// Open MPI's predefined globals, so they come back here as functions.
#include <mpi.h>
#include <stdint.h>

static inline MPI_Comm fa_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm fa_mpi_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm fa_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline int fa_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int fa_mpi_success(void) { return MPI_SUCCESS; }
/// A communicator's Fortran handle, the integer ring_attention.h takes (MPI_Comm_c2f).
static inline int32_t fa_mpi_comm_handle(MPI_Comm comm) { return (int32_t)MPI_Comm_c2f(comm); }
static inline MPI_Comm fa_mpi_comm_from_handle(int32_t handle) { return MPI_Comm_f2c((MPI_Fint)handle); }
/// In place over the communicator: the maximum, element by element (MPI_DOUBLE, MPI_MAX).
static inline int fa_mpi_max_doubles(MPI_Comm comm, double *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_MAX, comm);
}
/// In place over the communicator: the sum, element by element (MPI_DOUBLE, MPI_SUM).
static inline int fa_mpi_sum_doubles(MPI_Comm comm, double *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, comm);
}
/// MPI_Comm_split; color < 0 means MPI_UNDEFINED (the rank gets MPI_COMM_NULL).
static inline MPI_Comm fa_mpi_comm_split(MPI_Comm comm, int color, int key) {
    MPI_Comm out = MPI_COMM_NULL;
    MPI_Comm_split(comm, color < 0 ? MPI_UNDEFINED : color, key, &out);
    return out;
}
/// Sends `count` floats to `next` while receiving as many from `prev` (one ring hop).
static inline int fa_mpi_ring_hop(MPI_Comm comm, const float *send, float *recv, int count, int next, int prev) {
    return MPI_Sendrecv(send, count, MPI_FLOAT, next, 7201, recv, count, MPI_FLOAT, prev, 7201, comm,
                        MPI_STATUS_IGNORE);
}
/// A barrier that sleeps instead of spinning (idle ranks of an oversubscribed machine leave
/// the cores to the busy ones): MPI_Ibarrier, then MPI_Test every millisecond.
#include <time.h>
static inline void fa_mpi_sleepy_barrier(MPI_Comm comm) {
    MPI_Request r;
    MPI_Ibarrier(comm, &r);
    int done = 0;
    for (;;) {
        MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        if (done) return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
