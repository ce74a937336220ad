// amx_tile_kernels.h — the key-major scores and P·V of the bf16 path (Q, K, V all bf16) on AMX
// tiles, over amx_tiles.h: scores_t_amx, pack_v_amx and accumulate_pv_amx replace the
// vdpbf16ps kernels of the same contracts (microkernel.h) in the avx512amx table; everything
// else — Q's pairs, the softmax, the modifiers, the backward's other products — is the
// avx512bf16 table's. Not an ordinary header: static functions, included after
// bf16_tile_kernels.h (round_pairs_bf16) and amx_tiles.h.
//
// One TDPBF16PS multiplies a 16 × 32 bf16 tile by a 32 × 16 one into 16 × 16 fp32 sums: 8,192
// multiply-adds, against vdpbf16ps's 32. The operands already lie as AMX wants them:
// - scores: C[key][query] += A · B with A = 16 rows of K as stored (32 d each: a row's
//   consecutive elements are its pairs) and B = Q's pairs (qt2: row p holds (q[i, 2p],
//   q[i, 2p+1]) for 16 queries), so Sᵀ comes out key-major, as the softmax reads it;
// - P·V: C[column of V][query] += A · B with B = P's pairs along the keys (round_pairs_bf16
//   over the scores, as the vdpbf16ps path) and A = Vᵀ, packed once per key block by
//   pack_v_amx in 16 × 32 tiles (a column's 32 keys per row). The sums come out transposed
//   and are added into the accumulator rows once per block: acc = α·acc + Σ (one fma), as
//   every other path. No P transpose: P stays where the softmax left it.
// Tails: K rows past a block's keys or past 32·⌊d/32⌋ elements, Q pairs past the head dim's
// and queries past the rows are copied into zeroed tiles (so a stale NaN or infinity never
// meets a zero weight); whole tiles of hidden keys (causal, window) are not multiplied.
//
// The arithmetic is the vdpbf16ps path's: exact products, fp32 sums (in another order), P
// rounded to bf16; the same tolerances hold (HalfPrecisionTests, the kernel grid).

// Tile numbers (macros, not enum constants: GCC's intrinsics paste them into the asm text).
#define AMX_C0 0
#define AMX_C1 1
#define AMX_C2 2
#define AMX_C3 3
#define AMX_A 4
#define AMX_B0 5
#define AMX_B1 6
enum { AMX_PV_STRIPS = 4 };  // C tiles per pass over P's pairs: 64 columns of V

// Every tile 16 rows × 64 bytes. Loaded at each kernel call: another library (or a signal
// handler) may have configured the tiles since.
VF_INLINE void amx_configure(void) {
    amx_config c;
    memset(&c, 0, sizeof c);
    c.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    AMX_CONFIGURE(&c);
}

// Whether local queries [i0, i0 + nq) and keys [j0, j0 + nk) hold a visible pair under the
// band (query i sees key j iff j + lo ≤ i < j + hi).
static inline int amx_band_meets(int64_t j0, int nk, int64_t i0, int nq, int64_t lo, int64_t hi) {
    const int64_t least = i0 - (j0 + nk - 1), most = i0 + nq - 1 - j0;  // i − j over the tile
    return most >= lo && least < hi && lo < hi;
}

// st[j, i] = scale · Σ_d k[j, d] · q[i, d], banded, folded into block_max (scores_t_bf16).
VF_FN static void scores_t_amx(int keys, int rows_padded, int64_t dqk, const uint16_t *k,
                               int64_t ldk, const uint32_t *qt2, int64_t ldqt2, float scale,
                               float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                               float *block_max) {
    _Alignas(64) uint16_t kbuf[16 * 32];
    _Alignas(64) uint32_t qbuf[2][16 * 16];
    _Alignas(64) float cbuf[2][16 * 16];
    const int64_t pairs = (dqk + 1) / 2, chunks = (pairs + 15) / 16;
    const int direct_k = dqk % 32 == 0;  // whole 32-element chunks of K rows, read in place
    amx_configure();
    for (int j0 = 0; j0 < keys; j0 += 16) {
        const int nk = keys - j0 < 16 ? keys - j0 : 16;
        for (int i0 = 0; i0 < rows_padded; i0 += 32) {
            int nq[2], live[2];
            for (int t = 0; t < 2; t++) {
                const int left = rows_padded - (i0 + 16 * t);
                nq[t] = left <= 0 ? 0 : (left < 16 ? left : 16);
                live[t] = nq[t] > 0 && (!masked || amx_band_meets(j0, nk, i0 + 16 * t, nq[t], lo, hi));
            }
            if (live[0] || live[1]) {
                AMX_ZERO(AMX_C0);
                AMX_ZERO(AMX_C1);
                for (int64_t c = 0; c < chunks; c++) {
                    const int64_t d0 = 32 * c, p0 = 16 * c;
                    const int np = pairs - p0 < 16 ? (int)(pairs - p0) : 16;
                    if (direct_k && nk == 16) {
                        AMX_LOAD(AMX_A, k + (int64_t)j0 * ldk + d0, ldk * 2);
                    } else {
                        for (int r = 0; r < 16; r++)
                            for (int e = 0; e < 32; e++)
                                kbuf[r * 32 + e] = r < nk && d0 + e < dqk ? k[(int64_t)(j0 + r) * ldk + d0 + e] : 0;
                        AMX_LOAD(AMX_A, kbuf, 64);
                    }
                    for (int t = 0; t < 2; t++) {
                        if (!live[t]) continue;
                        const uint32_t *q = qt2 + p0 * ldqt2 + i0 + 16 * t;
                        const uint32_t *b = q;
                        int64_t ldb = ldqt2 * 4;
                        if (np < 16 || nq[t] < 16) {
                            for (int r = 0; r < 16; r++)
                                for (int i = 0; i < 16; i++)
                                    qbuf[t][r * 16 + i] = r < np && i < nq[t] ? q[r * ldqt2 + i] : 0u;
                            b = qbuf[t];
                            ldb = 64;
                        }
                        if (t == 0) {
                            AMX_LOAD(AMX_B0, b, ldb);
                            AMX_DP(AMX_C0, AMX_A, AMX_B0);
                        } else {
                            AMX_LOAD(AMX_B1, b, ldb);
                            AMX_DP(AMX_C1, AMX_A, AMX_B1);
                        }
                    }
                }
                AMX_STORE(AMX_C0, cbuf[0], 64);
                AMX_STORE(AMX_C1, cbuf[1], 64);
            }
            for (int t = 0; t < 2; t++) {
                const int64_t q0 = i0 + 16 * t;
                for (int r = 0; r < nk; r++) {
                    float *srow = st + (int64_t)(j0 + r) * ldst + q0;
                    for (int i = 0; i < nq[t]; i++) {
                        float s = live[t] ? cbuf[t][r * 16 + i] * scale : -INFINITY;
                        if (masked && !(j0 + r + lo <= q0 + i && q0 + i < j0 + r + hi)) s = -INFINITY;
                        srow[i] = s;
                        const float m = block_max[q0 + i];
                        block_max[q0 + i] = m > s ? m : s;  // a NaN score wins, as vmaxps(m, s)
                    }
                }
            }
        }
    }
}

// V's block as AMX A tiles of Vᵀ: tile (s, c) = columns 16s … 16s + 15 (rows) × keys
// 32c … 32c + 31 (bf16 each), zero past the keys and past n; tile (s, c) starts at
// out + (s·⌈keys/32⌉ + c)·256. Within the pack_pairs_bf16 buffer the frame gives V
// (⌈BK/2⌉ × ldo pairs, ldo ≥ n rounded up to 16, BK a multiple of 32: key_tile).
VF_FN static void pack_v_amx(int keys, int64_t n, const uint16_t *v, int64_t ldv, uint32_t *out,
                             int64_t ldo) {
    (void)ldo;
    const int chunks = (keys + 31) / 32;
    const int64_t strips = (n + 15) / 16;
    for (int64_t s = 0; s < strips; s++)
        for (int c = 0; c < chunks; c++) {
            uint16_t *tile = (uint16_t *)(out + (s * chunks + c) * 256);
            for (int r = 0; r < 16; r++) {
                const int64_t col = 16 * s + r;
                for (int e = 0; e < 32; e++) {
                    const int j = 32 * c + e;
                    tile[r * 32 + e] = col < n && j < keys ? v[(int64_t)j * ldv + col] : 0;
                }
            }
        }
}

// acc[i, :] = α[i]·acc[i, :] + Σ_j bf16(pt[j, i]) · v[j, :] (accumulate_pv_bf16), V as
// pack_v_amx left it; pt's rows become P's pairs, and the pair rows from ⌈keys/2⌉ up to the
// last tile's end (rows of the scores buffer past this block's keys: BK is a multiple of 32)
// are zeroed.
VF_FN static void accumulate_pv_amx(int rows_padded, int keys, int64_t dv, float *pt, int64_t ldpt,
                                    const uint32_t *vt, int64_t ldvt, const float *alpha,
                                    float *acc, int64_t ldacc, int masked, int64_t lo, int64_t hi) {
    (void)ldvt;
    _Alignas(64) uint32_t pbuf[16 * 16];
    _Alignas(64) float cbuf[AMX_PV_STRIPS][16 * 16];
    uint32_t *p2 = (uint32_t *)pt;
    round_pairs_bf16(keys, rows_padded, pt, ldpt, p2, ldpt);
    const int chunks = (keys + 31) / 32;
    for (int p = (keys + 1) / 2; p < 16 * chunks; p++)
        memset(p2 + (int64_t)p * ldpt, 0, sizeof(uint32_t) * (size_t)rows_padded);
    const int strips = (int)((dv + 15) / 16);
    amx_configure();
    for (int i0 = 0; i0 < rows_padded; i0 += 16) {
        const int nq = rows_padded - i0 < 16 ? rows_padded - i0 : 16;
        for (int s0 = 0; s0 < strips; s0 += AMX_PV_STRIPS) {
            const int ns = strips - s0 < AMX_PV_STRIPS ? strips - s0 : AMX_PV_STRIPS;
            AMX_ZERO(AMX_C0);
            AMX_ZERO(AMX_C1);
            AMX_ZERO(AMX_C2);
            AMX_ZERO(AMX_C3);
            for (int c = 0; c < chunks; c++) {
                if (masked && !amx_band_meets(32 * c, 32, i0, nq, lo, hi)) continue;  // P = 0
                const uint32_t *b = p2 + (int64_t)(16 * c) * ldpt + i0;
                int64_t ldb = ldpt * 4;
                if (nq < 16) {
                    for (int r = 0; r < 16; r++)
                        for (int i = 0; i < 16; i++) pbuf[r * 16 + i] = i < nq ? b[r * ldpt + i] : 0u;
                    b = pbuf;
                    ldb = 64;
                }
                AMX_LOAD(AMX_B0, b, ldb);
                const uint32_t *a = vt + ((int64_t)s0 * chunks + c) * 256;
                const int64_t next = (int64_t)chunks * 256;  // the same keys, 16 columns on
                AMX_LOAD(AMX_A, a, 64);
                AMX_DP(AMX_C0, AMX_A, AMX_B0);
                if (ns > 1) {
                    AMX_LOAD(AMX_A, a + next, 64);
                    AMX_DP(AMX_C1, AMX_A, AMX_B0);
                }
                if (ns > 2) {
                    AMX_LOAD(AMX_A, a + 2 * next, 64);
                    AMX_DP(AMX_C2, AMX_A, AMX_B0);
                }
                if (ns > 3) {
                    AMX_LOAD(AMX_A, a + 3 * next, 64);
                    AMX_DP(AMX_C3, AMX_A, AMX_B0);
                }
            }
            AMX_STORE(AMX_C0, cbuf[0], 64);
            AMX_STORE(AMX_C1, cbuf[1], 64);
            AMX_STORE(AMX_C2, cbuf[2], 64);
            AMX_STORE(AMX_C3, cbuf[3], 64);
            for (int t = 0; t < ns; t++)
                for (int i = 0; i < nq; i++) {
                    const float al = alpha[i0 + i];
                    float *row = acc + (int64_t)(i0 + i) * ldacc + 16 * (s0 + t);
                    for (int r = 0; r < 16; r++) row[r] = fmaf(al, row[r], cbuf[t][r * 16 + i]);
                }
        }
    }
}
