// threads.c — the only place that knows which threads run a call's work. A parallel region is
// fa_parallel(threads, body, ctx): body(ctx, me, n) runs once for each me in 0 … n − 1, at
// the same time where the runtime allows, and the call returns when every one has. The loops
// claim their work items from a shared counter or by a fixed interleave of `me`, and an
// item's arithmetic never depends on which `me` runs it, so results are the same bits for any
// thread count on every runtime:
//   OpenMP (Linux, the package trait OpenMP): a parallel region of `threads` threads.
//   Grand Central Dispatch (Apple platforms, where the toolchain has no OpenMP; or any build
//     defining FA_THREADS_DISPATCH, which is how Linux's libdispatch tests it): dispatch_apply
//     over `threads` iterations on a global concurrent queue. GCD may run iterations one after
//     another on fewer threads, so a body never waits for another (fa_parallel_barrier is a
//     no-op there).
//   Neither (or FA_THREADS_SERIAL defined on an Apple platform): body(ctx, 0, 1) on the
//     calling thread.
// Swift's clang ships no omp.h: the OpenMP prototypes we call are declared here.
#include "internal.h"

#if defined(__APPLE__) && !defined(_OPENMP) && !defined(FA_THREADS_SERIAL)
#define FA_THREADS_DISPATCH 1
#endif

#if defined(_OPENMP)
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
#elif defined(FA_THREADS_DISPATCH)
#include <dispatch/dispatch.h>
#include <unistd.h>
#endif

int fa_resolve_threads(int32_t requested) {
#if defined(_OPENMP)
    if (requested > 0) return requested;
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#elif defined(FA_THREADS_DISPATCH)
    if (requested > 0) return requested;
    const long n = sysconf(_SC_NPROCESSORS_ONLN);  // GCD's pool is as wide as the CPUs
    return n > 0 ? (int)(n < 4096 ? n : 4096) : 1;
#else
    (void)requested;
    return 1;
#endif
}

#if defined(FA_THREADS_DISPATCH) && !defined(_OPENMP)
typedef struct {
    fa_parallel_body body;
    void *ctx;
    int n;
} dispatch_region;

static void dispatch_iteration(void *region, size_t me) {
    const dispatch_region *r = region;
    r->body(r->ctx, (int)me, r->n);
}
#endif

void fa_parallel(int threads, fa_parallel_body body, void *ctx) {
    if (threads < 1) threads = 1;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    body(ctx, omp_get_thread_num(), omp_get_num_threads());
#elif defined(FA_THREADS_DISPATCH)
    if (threads == 1) {
        body(ctx, 0, 1);
        return;
    }
    dispatch_region r = {body, ctx, threads};
    dispatch_apply_f((size_t)threads, dispatch_get_global_queue(DISPATCH_QUEUE_PRIORITY_DEFAULT, 0),
                     &r, dispatch_iteration);
#else
    (void)threads;
    body(ctx, 0, 1);
#endif
}

void fa_parallel_barrier(void) {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}

int fa_default_threads(void) {
    return fa_resolve_threads(0);
}

int fa_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

const char *fa_threads_runtime(void) {
#if defined(_OPENMP)
    return "openmp";
#elif defined(FA_THREADS_DISPATCH)
    return "dispatch";
#else
    return "serial";
#endif
}
