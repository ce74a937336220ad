// avx512_amx.c — AMX-BF16 tiles (Sapphire Rapids and later Xeons) for the bf16 path's scores
// and P·V (amx_tile_kernels.h), on top of the avx512bf16 kernels compiled again here with the
// tile instructions allowed: Q's pairs, the softmax, the modifiers, decoding's row kernels and
// the backward's other products are theirs. Dispatch names this table only where the CPU has
// AMX-TILE and AMX-BF16 and Linux granted the process the tile data state
// (arch_prctl(ARCH_REQ_XCOMP_PERM), dispatch/cpu.c).
// x86 only: elsewhere this file compiles to nothing.
#if (defined(__x86_64__) || defined(__i386__)) && !defined(FA_AMX_EMULATE)
#define VF_EXTRA_TARGET ",avx512bf16,amx-tile,amx-bf16"
#include "vec_avx512.h"

#include "avx512_pack_qt.h"
#define TILE_PACK_QT pack_qt_avx512

#include "tile_kernels.h"
#include "row_kernels.h"
#include "vec_avx512_bf16.h"
#include "bf16_tile_kernels.h"
#include "avx512_bf16_rows.h"
#include "amx_tiles.h"
#include "amx_tile_kernels.h"

#define KERNEL_TABLE fa_kernels_avx512_amx
#define KERNEL_NAME "avx512amx"
// Key blocks are multiples of 32: P·V's tiles take 32 keys, and the zeroed pair rows past a
// block's keys (V's in pack_v_amx, P's in accumulate_pv_amx) stay inside the block's buffers.
#define KERNEL_KEY_TILE 32
#define KERNEL_BF16 1
#define KERNEL_SCORES_T_BF16 scores_t_amx
#define KERNEL_PACK_V_BF16 pack_v_amx
#define KERNEL_ACCUMULATE_PV_BF16 accumulate_pv_amx
#include "kernel_table.h"
#endif  // x86
