// avx2.c — the AVX2 + FMA kernels: the shared kernel sources compiled over vec_avx2.h (16 ymm
// registers, 8 floats each). All symbols are static; the table at the end is the only export,
// and it only ever runs where dispatch/cpu.c found AVX2 and FMA.
// x86 only: elsewhere this file compiles to nothing (dispatch/cpu.c never names its table).
#if defined(__x86_64__) || defined(__i386__)
#include "vec_avx2.h"
#include "tile_kernels.h"
#include "row_kernels.h"

#define KERNEL_TABLE fa_kernels_avx2
#define KERNEL_NAME "avx2"
// Key blocks (64) stay multiples of 4; 6-key tiles end with a 4-key one.
#define KERNEL_KEY_TILE 4
#include "kernel_table.h"
#endif  // x86
