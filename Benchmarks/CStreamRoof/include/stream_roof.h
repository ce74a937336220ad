// stream_roof.h — the memory-bandwidth roof of attention-bench: a multi-threaded read stream
// over a buffer far larger than the last-level cache. Benchmark-only; not part of the library.
#ifndef STREAM_ROOF_H
#define STREAM_ROOF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The L3 size in bytes (sysfs cpu0 index3, else sysconf), or 0 when unknown.
size_t stream_roof_l3_bytes(void);

/// The buffer the roof reads by default: max(1 GiB, 8 × L3), at most 4 GiB and at most a
/// quarter of the physical memory (but never under 64 MiB).
size_t stream_roof_default_bytes(void);

/// The read loop the CPU runs: "avx512", "avx2" or "portable" (chosen at run time).
const char *stream_roof_kernel(void);

/// 1 when built with OpenMP (the threads are OpenMP's, as the kernels'), 0 for pthreads.
int stream_roof_openmp(void);

/// Allocates `bytes` (rounded down to a multiple of threads × 4 KiB, at least that), writes
/// every page on the thread that will read it, runs one untimed pass, then `repeats` timed
/// passes in which each of `threads` threads reads its own contiguous part with independent
/// vector accumulators. Stores each pass's wall time (seconds) in `seconds[0 ..< repeats]` and
/// the bytes one pass reads in `*bytes_read`. Returns 0, or -1 (bad arguments or out of memory).
int stream_roof_measure(size_t bytes, int threads, int repeats, double *seconds,
                        size_t *bytes_read);

/// A buffer kept for repeated measurements (attention-bench's roof measured between the
/// timed runs of a case): allocated, its pages written by the threads that read them and
/// one untimed pass read, as in stream_roof_measure. NULL on bad arguments or out of memory.
typedef struct stream_roof_buffer stream_roof_buffer;
stream_roof_buffer *stream_roof_open(size_t bytes, int threads);
/// The bytes one pass reads (bytes rounded as in stream_roof_measure); 0 for NULL.
size_t stream_roof_buffer_bytes(const stream_roof_buffer *b);
/// `repeats` timed passes, each pass's wall time (seconds) in `seconds[0 ..< repeats]`.
/// Returns 0, or -1 on bad arguments. One buffer must not be read by two callers at once.
int stream_roof_read(stream_roof_buffer *b, int repeats, double *seconds);
void stream_roof_close(stream_roof_buffer *b);

#ifdef __cplusplus
}
#endif

#endif
