// amx_emulated.c — the AMX kernels on emulated tiles (amx_tiles.h), for tests on any CPU: only
// in a build with FA_AMX_EMULATE defined (make test-amx-emulated), where FA_ISA_AVX512_AMX
// names this table instead of avx512_amx.c's. Around amx_tile_kernels.h it is the portable
// table with bf16 pair kernels in plain C (vec_portable_bf16.h), so the frame runs the same
// calls — Q's pairs, the tiles' tails, the zeroed pair rows, P's transposed tiles, the band's
// skipped tiles — as on a Xeon. Elsewhere this file compiles to nothing.
#ifdef FA_AMX_EMULATE
#include "vec_portable.h"
#include "tile_kernels.h"
#include "row_kernels.h"
#include "vec_portable_bf16.h"
#include "bf16_tile_kernels.h"
#include "amx_tiles.h"
#include "amx_tile_kernels.h"

#define KERNEL_TABLE fa_kernels_avx512_amx
#define KERNEL_NAME "avx512amx (emulated)"
#define KERNEL_KEY_TILE 32
#define KERNEL_BF16 1
#define KERNEL_NO_BF16_ROWS 1
#define KERNEL_SCORES_T_BF16 scores_t_amx
#define KERNEL_PACK_V_BF16 pack_v_amx
#define KERNEL_ACCUMULATE_PV_BF16 accumulate_pv_amx
#include "kernel_table.h"
#endif  // FA_AMX_EMULATE
