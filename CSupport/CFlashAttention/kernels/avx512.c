// avx512.c — the AVX-512 kernels: the shared kernel sources compiled over vec_avx512.h (32
// zmm registers, 16 floats each, mask registers), plus the one thing written for this ISA:
// Q's transpose by gathers. All symbols are static; the table at the end is the only export,
// and it only ever runs where dispatch/cpu.c found AVX-512F/VL/BW/DQ and FMA.
// x86 only: elsewhere this file compiles to nothing (dispatch/cpu.c never names its table).
#if defined(__x86_64__) || defined(__i386__)
#include "vec_avx512.h"

#include "avx512_pack_qt.h"
#define TILE_PACK_QT pack_qt_avx512

#include "tile_kernels.h"
#include "row_kernels.h"

#define KERNEL_TABLE fa_kernels_avx512
#define KERNEL_NAME "avx512"
#define KERNEL_KEY_TILE TILE_ST_K
#include "kernel_table.h"
#endif  // x86
