// cpu.c — picks the micro-kernel table once per process.
//
// Today only the portable table exists; the SIMD issue adds AVX2 and AVX-512 tables here,
// chosen with __builtin_cpu_supports and overridable with FA_ISA. The loop nest never changes.
#include "../kernels/microkernel.h"

const fa_kernels *fa_select_kernels(void) {
    return &fa_kernels_portable;
}

const char *fa_kernel_name(void) {
    return fa_select_kernels()->name;
}
