// avx512.c — the AVX-512 kernels: the shared kernel sources compiled over vec_avx512.h (32
// zmm registers, 16 floats each, mask registers), plus the one thing written for this ISA:
// Q's transpose by gathers. All symbols are static; the table at the end is the only export,
// and it only ever runs where dispatch/cpu.c found AVX-512F/VL/BW/DQ and FMA.
#include "vec_avx512.h"

// qt[d, i] = scale · q[i, d]: 16 query rows at a time, gathered down the head dimension.
VF_FN static void pack_qt_avx512(int rows, int rows_padded, int64_t dqk, const float *q,
                                 int64_t ldq, float scale, float *qt, int64_t ldqt) {
    for (int i0 = 0; i0 < rows_padded; i0 += VF_W) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VF_W ? VF_W : rows - i0);
        const __mmask16 m = (__mmask16)((1u << live) - 1);
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32((int)ldq));
        const float *base = q + (int64_t)i0 * ldq;
        if (live == 0 || ldq > INT32_MAX / VF_W) {  // huge strides: plain loop
            for (int64_t d = 0; d < dqk; d++)
                for (int i = 0; i < VF_W; i++)
                    qt[d * ldqt + i0 + i] = i < live ? scale * base[i * ldq + d] : 0.0f;
            continue;
        }
        const __m512 s = _mm512_set1_ps(scale);
        for (int64_t d = 0; d < dqk; d++) {
            const __m512 col = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base + d, 4);
            _mm512_storeu_ps(qt + d * ldqt + i0, _mm512_mul_ps(col, s));
        }
    }
}

#define TILE_PACK_QT pack_qt_avx512

#include "tile_kernels.h"
#include "row_kernels.h"

#define KERNEL_TABLE fa_kernels_avx512
#define KERNEL_NAME "avx512"
#define KERNEL_KEY_TILE TILE_ST_K
#include "kernel_table.h"
