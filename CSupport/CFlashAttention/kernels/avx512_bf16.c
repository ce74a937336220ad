// avx512_bf16.c — AVX-512 with BF16 dot products (vdpbf16ps: Cooper Lake, Sapphire Rapids,
// Zen 4 and later): the AVX-512 kernels, compiled again with the bf16 instructions allowed,
// plus the bf16 key-major kernels (bf16_tile_kernels.h over vec_avx512_bf16.h) and decoding
// row kernels (avx512_bf16_rows.h) for Q, K and V stored in bf16. A table
// of its own, so FA_ISA=avx512 still runs (and tests) the plain AVX-512 path on such a CPU.
// x86 only: elsewhere this file compiles to nothing (dispatch/cpu.c never names its table).
#if defined(__x86_64__) || defined(__i386__)
#define VF_EXTRA_TARGET ",avx512bf16"
#include "vec_avx512.h"

// Q's transpose by gathers, as avx512.c.
#include "avx512_pack_qt.h"
#define TILE_PACK_QT pack_qt_avx512

#include "tile_kernels.h"
#include "row_kernels.h"
#include "vec_avx512_bf16.h"
#include "bf16_tile_kernels.h"
#include "avx512_bf16_rows.h"

#define KERNEL_TABLE fa_kernels_avx512_bf16
#define KERNEL_NAME "avx512bf16"
#define KERNEL_KEY_TILE TILE_ST_K
#define KERNEL_BF16 1
#include "kernel_table.h"
#endif  // x86
