// kernel_probe.c — see include/kernel_probe.h.
#include "kernel_probe.h"
#include "../../CSupport/CFlashAttention/kernels/microkernel.h"

int fa_probe_softcap(int isa, int keys, int rows_padded, float *st, int64_t ldst, float softcap,
                     float *block_max, float *derivative) {
    const fa_kernels *kr = isa == 0 ? &fa_kernels_portable
                         : isa == 1 ? &fa_kernels_avx2
                         : isa == 2 ? &fa_kernels_avx512 : 0;
    if (!kr) return -1;
    fa_tile_mods m = {0};
    m.softcap = softcap;
    kr->score_mods(&m, keys, rows_padded, rows_padded, st, ldst, block_max, derivative);
    return 0;
}
