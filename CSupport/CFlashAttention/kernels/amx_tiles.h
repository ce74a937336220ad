// amx_tiles.h — the AMX tile operations amx_tile_kernels.h is written against: configure,
// zero, load, store and TDPBF16PS, on the tile registers (avx512_amx.c) or, in an emulation
// build (FA_AMX_EMULATE, amx_emulated.c), on eight thread-local arrays that follow the
// instruction set reference's definitions — so that the kernels' tiling, packing and tails run
// and are tested on any CPU (make test-amx-emulated), the same source either way.
//
// Every tile here is configured 16 rows × 64 bytes (palette 1): C tiles of 16 × 16 fp32, A and
// B tiles of 16 × 16 bf16 pairs. TDPBF16PS(C, A, B): C[m][n] += Σ_k A[m].pair[k] · B[k].pair[n],
// each pair's two products added in turn (exact products, each add rounded to nearest even,
// subnormal inputs and results as zero: vdpbf16ps's arithmetic, one pair of A's row at a time).
#ifndef FA_AMX_TILES_H
#define FA_AMX_TILES_H
#include <stdint.h>
#include <string.h>

/// LDTILECFG's 64-byte operand.
typedef struct amx_config {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

#ifndef FA_AMX_EMULATE

#define AMX_CONFIGURE(cfg) _tile_loadconfig(cfg)
#define AMX_ZERO(t) _tile_zero(t)
#define AMX_LOAD(t, base, stride) _tile_loadd(t, base, stride)
#define AMX_STORE(t, base, stride) _tile_stored(t, base, stride)
#define AMX_DP(c, a, b) _tile_dpbf16ps(c, a, b)

#else  // emulated: the reference's pseudocode, one thread's tiles in thread-local arrays

typedef struct amx_tile {
    uint8_t row[16][64];
    int rows, colsb;
} amx_tile;
static _Thread_local amx_tile amx_emu[8];

static inline void amx_emu_configure(const amx_config *c) {
    for (int t = 0; t < 8; t++) {
        amx_emu[t].rows = c->rows[t];
        amx_emu[t].colsb = c->colsb[t];
        memset(amx_emu[t].row, 0, sizeof amx_emu[t].row);
    }
}
static inline void amx_emu_zero(int t) { memset(amx_emu[t].row, 0, sizeof amx_emu[t].row); }
static inline void amx_emu_load(int t, const void *base, int64_t stride) {
    amx_tile *x = &amx_emu[t];
    memset(x->row, 0, sizeof x->row);
    for (int r = 0; r < x->rows; r++) memcpy(x->row[r], (const uint8_t *)base + r * stride, (size_t)x->colsb);
}
static inline void amx_emu_store(int t, void *base, int64_t stride) {
    const amx_tile *x = &amx_emu[t];
    for (int r = 0; r < x->rows; r++) memcpy((uint8_t *)base + r * stride, x->row[r], (size_t)x->colsb);
}
static inline float amx_emu_bf16(const uint8_t *p) {  // subnormal inputs as zero
    uint16_t h;
    memcpy(&h, p, 2);
    if (!(h & 0x7F80u)) h &= 0x8000u;
    return fa_bf16_to_f32(h);
}
static inline float amx_emu_ftz(float x) {
    const uint32_t b = fa_float_bits(x);
    return (b & 0x7F800000u) ? x : fa_bits_float(b & 0x80000000u);
}
static inline void amx_emu_dpbf16ps(int c, int a, int b) {
    amx_tile *C = &amx_emu[c];
    const amx_tile *A = &amx_emu[a], *B = &amx_emu[b];
    for (int m = 0; m < C->rows; m++) {
        float tmp[16];
        memcpy(tmp, C->row[m], sizeof tmp);
        for (int k = 0; k < A->colsb / 4; k++)
            for (int n = 0; n < C->colsb / 4; n++) {
                tmp[n] = amx_emu_ftz(tmp[n] + amx_emu_bf16(A->row[m] + 4 * k) * amx_emu_bf16(B->row[k] + 4 * n));
                tmp[n] = amx_emu_ftz(tmp[n] + amx_emu_bf16(A->row[m] + 4 * k + 2) *
                                                  amx_emu_bf16(B->row[k] + 4 * n + 2));
            }
        memcpy(C->row[m], tmp, sizeof tmp);
    }
}

#define AMX_CONFIGURE(cfg) amx_emu_configure(cfg)
#define AMX_ZERO(t) amx_emu_zero(t)
#define AMX_LOAD(t, base, stride) amx_emu_load(t, base, stride)
#define AMX_STORE(t, base, stride) amx_emu_store(t, base, stride)
#define AMX_DP(c, a, b) amx_emu_dpbf16ps(c, a, b)

#endif  // FA_AMX_EMULATE
#endif  // FA_AMX_TILES_H
