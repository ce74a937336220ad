// threads.c — the only place that talks to the OpenMP runtime. Swift's clang ships no omp.h,
// so the two prototypes we call are declared here. Without OpenMP everything runs on one thread.
#include "internal.h"

#ifdef _OPENMP
int omp_get_max_threads(void);
#endif

int fa_resolve_threads(int32_t requested) {
#ifdef _OPENMP
    if (requested > 0) return requested;
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    (void)requested;
    return 1;
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
