// neon.c — the AArch64 NEON kernels: the shared kernel sources compiled over vec_neon.h (8-float
// vectors in pairs of q registers, 32 of them). All symbols are static; the table at the end
// is the only export. NEON is part of ARMv8.0, so every ARM64 CPU runs it.
// ARM64 only: elsewhere this file compiles to nothing (dispatch/cpu.c never names its table).
#if defined(__aarch64__)
#include "vec_neon.h"
#include "tile_kernels.h"
#include "row_kernels.h"

#define KERNEL_TABLE fa_kernels_neon
#define KERNEL_NAME "neon"
// Key blocks (64) stay multiples of 4; 6-key tiles end with a 4-key one (as AVX2).
#define KERNEL_KEY_TILE 4
#include "kernel_table.h"
#endif  // __aarch64__
