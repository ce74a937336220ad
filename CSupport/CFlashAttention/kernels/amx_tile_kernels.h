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
// - P·V: C[query][column of V] += A · B with B = V in key pairs (pack_pairs_bf16, as the
//   vdpbf16ps path packs it) and A = P's pairs of one query per row: round_pairs_bf16 leaves
//   P's pairs along the keys query by query in the scores' key-major rows, and amx_p_tile
//   transposes 16 × 16 of them (pairs move whole) once per query tile and 32-key chunk. O
//   comes out query-major, so each block's sums are added to the accumulator rows whole
//   vectors at a time: acc = α·acc + Σ (one fma), as every other path.
// What runs beside the tiles, per 64-key block of BQ queries at D = 128, where the tiles take
// 2·BQ TDPBF16PS (BQ for the scores, BQ for P·V: 32·BQ cycles at the reference's 16 cycles
// each): the scores' scale, band and block max and the fold into acc on vectors (4·BQ and
// 8·BQ of them), and 32·BQ pairs moved by the P transposes. An earlier form computed
// Oᵀ = Vᵀ·Pᵀ, which needs no P transpose but moved V element by element into Vᵀ tiles (8,192
// per block) and folded every sum back one float at a time (128·BQ), and its scores took 64·BQ
// scalar steps: several times the tiles' own time. Same products in the same order: the bits
// did not change (the kernel grid's digest). The P transposes are 64 lane shuffles a tile
// (amx_p_tile), against the 128 cycles of the 8 TDPBF16PS that use each tile at D = 128.
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

// One C tile's scores into st: c holds nk keys (rows, ldc apart) × nq queries (its first nq
// columns); each becomes scale·c, or −inf where the tile was not multiplied (live = 0) or the
// band hides it (query lane i sees key r iff r + lo ≤ i < r + hi, lo and hi relative to the
// tile), and is folded into block_max with vf_max(m, s) per key in order — the bits of the
// scalar m > s ? m : s, a NaN score winning. Whole vectors of 16 / VF_W queries, as
// tile_scores_store, instead of 512 scalar steps per tile pair (about 6× the 128 cycles the
// pair's eight TDPBF16PS take at D = 128, by the reference's throughput). c may be st itself
// (a full tile stored in place).
VF_INLINE void amx_scores_store(int nk, int nq, int live, const float *c, int64_t ldc, float scale,
                                float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                                float *block_max) {
    const vf sc = vf_set1(scale), hidden = vf_set1(-INFINITY);
    for (int v = 0; v * VF_W < nq; v++) {
        const int n = nq - v * VF_W < VF_W ? nq - v * VF_W : VF_W;
        vf mx = vf_load_first_or(block_max + v * VF_W, n, -INFINITY);
        for (int r = 0; r < nk; r++) {
            vf x = live ? vf_mul(vf_loadu(c + r * ldc + v * VF_W), sc) : hidden;
            if (masked) x = tile_band_fill(x, r, v, lo, hi);
            if (n == VF_W) vf_storeu(st + r * ldst + v * VF_W, x);
            else vf_store_first(st + r * ldst + v * VF_W, x, n);
            mx = vf_max(mx, x);
        }
        vf_store_first(block_max + v * VF_W, mx, n);
    }
}

enum { AMX_K_TILES_KEPT = 8 };  // K tail tiles kept per key tile: head dims up to 256

// Whether the K tile of keys j0 … j0 + 15 and elements d0 … d0 + 31 is read in place: 16 keys
// and 32 elements of the head dim.
static inline int amx_k_direct(int nk, int64_t d0, int64_t dqk) { return nk == 16 && d0 + 32 <= dqk; }

// That tile copied, zero past nk keys and past dqk elements (a stale NaN never meets a zero).
static inline void amx_k_tile(const uint16_t *k, int64_t ldk, int j0, int nk, int64_t d0,
                              int64_t dqk, uint16_t *out) {
    for (int r = 0; r < 16; r++)
        for (int e = 0; e < 32; e++)
            out[r * 32 + e] = r < nk && d0 + e < dqk ? k[(int64_t)(j0 + r) * ldk + d0 + e] : 0;
}

// st[j, i] = scale · Σ_d k[j, d] · q[i, d], banded, folded into block_max (scores_t_bf16).
VF_FN static void scores_t_amx(int keys, int rows_padded, int64_t dqk, const uint16_t *k,
                               int64_t ldk, const uint32_t *qt2, int64_t ldqt2, float scale,
                               float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                               float *block_max) {
    _Alignas(64) uint16_t kbuf[AMX_K_TILES_KEPT][16 * 32];
    _Alignas(64) uint32_t qbuf[2][16 * 16];
    _Alignas(64) float cbuf[2][16 * 16];
    const int64_t pairs = (dqk + 1) / 2, chunks = (pairs + 15) / 16;
    const int kept = chunks <= AMX_K_TILES_KEPT;  // K tail tiles built once per key tile
    amx_configure();
    for (int j0 = 0; j0 < keys; j0 += 16) {
        const int nk = keys - j0 < 16 ? keys - j0 : 16;
        // K chunks of 16 whole rows of 32 elements are read in place; the others (a head dim's
        // last 32 − dqk mod 32 elements, the keys past a block) are copied into zeroed tiles,
        // once per key tile when they fit kbuf, else at each use.
        if (kept)
            for (int64_t c = 0; c < chunks; c++)
                if (!amx_k_direct(nk, 32 * c, dqk)) amx_k_tile(k, ldk, j0, nk, 32 * c, dqk, kbuf[c]);
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
                    if (amx_k_direct(nk, d0, dqk)) {
                        AMX_LOAD(AMX_A, k + (int64_t)j0 * ldk + d0, ldk * 2);
                    } else {
                        uint16_t *kt = kbuf[kept ? c : 0];
                        if (!kept) amx_k_tile(k, ldk, j0, nk, d0, dqk, kt);
                        AMX_LOAD(AMX_A, kt, 64);
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
            }
            // A whole tile goes straight into st's rows (its 16 columns are this tile's queries
            // and its 16 rows its keys); a tail tile through cbuf. (Tile numbers must be
            // constants: one statement per tile.)
            float *sq[2] = {st + (int64_t)j0 * ldst + i0, st + (int64_t)j0 * ldst + i0 + 16};
            int direct[2];
            for (int t = 0; t < 2; t++) direct[t] = live[t] && nk == 16 && nq[t] == 16;
            if (live[0]) {
                if (direct[0]) AMX_STORE(AMX_C0, sq[0], ldst * 4);
                else AMX_STORE(AMX_C0, cbuf[0], 64);
            }
            if (live[1]) {
                if (direct[1]) AMX_STORE(AMX_C1, sq[1], ldst * 4);
                else AMX_STORE(AMX_C1, cbuf[1], 64);
            }
            for (int t = 0; t < 2; t++) {
                if (nq[t] == 0) continue;
                const int64_t q0 = i0 + 16 * t;
                amx_scores_store(nk, nq[t], live[t], direct[t] ? sq[t] : cbuf[t], direct[t] ? ldst : 16,
                                 scale, sq[t], ldst, masked, lo + j0 - q0, hi + j0 - q0,
                                 block_max + q0);
            }
        }
    }
}

// V's block in key pairs (pack_pairs_bf16: row p holds (v[2p, c], v[2p+1, c]), 0 past n up
// to ldo and for the missing key of an odd count) — P·V's B tiles as they are — with the pair
// rows from ⌈keys/2⌉ to the last 32-key chunk's end zeroed: a B tile reads whole chunks, and a
// stale NaN there would survive its zero weight. Within the buffer the frame gives V
// (⌈BK/2⌉ × ldo pairs, BK a multiple of 32: key_tile).
VF_FN static void pack_v_amx(int keys, int64_t n, const uint16_t *v, int64_t ldv, uint32_t *out,
                             int64_t ldo) {
    pack_pairs_bf16(keys, n, v, ldv, out, ldo);
    const int chunks = (keys + 31) / 32;
    for (int p = (keys + 1) / 2; p < 16 * chunks; p++)
        memset(out + (int64_t)p * ldo, 0, sizeof(uint32_t) * (size_t)ldo);
}

// P's A tile for queries i0 … i0 + nq − 1 (rows; 0 past nq) over the key pairs 16c … 16c + 15:
// a[i, r] = p2[16c + r, i0 + i], the one transpose of the P·V product (16 × 16 pairs: each
// pair's two keys move together, already rounded by round_pairs_bf16). Written with the
// compilers' vector extensions (GCC 12+, clang), so the same source is 16 loads, 64 lane
// shuffles and 16 stores of zmm registers in avx512_amx.c (the caller's target; as clang, which
// builds the package, compiles it: gcc's code keeps the rows on the stack) and plain code in
// the emulated build, where the kernel grid checks it; the scalar loop it replaces compiled
// to 256 single moves and gathers. Four rounds, as the 16 × 16 transposes of AVX-512 code
// usually go: 32-bit and then 64-bit interleaves of row pairs within each 128-bit lane (after
// them lane L of x[4k + j] holds column 4L + j of rows 4k … 4k + 3), then two rounds of
// 128-bit lane moves gather each column's four lanes.
typedef uint32_t amx_u32x16 __attribute__((vector_size(64)));
#define AMX_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#define AMX_LO32 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29
#define AMX_HI32 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31
#define AMX_LO64 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define AMX_HI64 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define AMX_LANES01 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define AMX_LANES23 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define AMX_EVEN_LANES 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define AMX_ODD_LANES 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
VF_INLINE void amx_p_tile(const uint32_t *p2, int64_t ldp2, int i0, int nq, int c, uint32_t *a) {
    const uint32_t *src = p2 + (int64_t)(16 * c) * ldp2 + i0;
    int64_t ld = ldp2;
    _Alignas(64) uint32_t tail[16 * 16];
    if (nq < 16) {  // a query tile's last rows: columns past nq are zero, and so a's rows past nq
        memset(tail, 0, sizeof tail);
        for (int r = 0; r < 16; r++) memcpy(tail + 16 * r, src + (int64_t)r * ldp2, sizeof(uint32_t) * (size_t)nq);
        src = tail;
        ld = 16;
    }
    amx_u32x16 x[16], s[16];
    for (int r = 0; r < 16; r++) memcpy(&x[r], src + (int64_t)r * ld, sizeof x[r]);  // one load a row
    for (int k = 0; k < 16; k += 2) {
        s[k] = AMX_SHUF(x[k], x[k + 1], AMX_LO32);
        s[k + 1] = AMX_SHUF(x[k], x[k + 1], AMX_HI32);
    }
    for (int k = 0; k < 16; k += 4) {
        x[k] = AMX_SHUF(s[k], s[k + 2], AMX_LO64);
        x[k + 1] = AMX_SHUF(s[k], s[k + 2], AMX_HI64);
        x[k + 2] = AMX_SHUF(s[k + 1], s[k + 3], AMX_LO64);
        x[k + 3] = AMX_SHUF(s[k + 1], s[k + 3], AMX_HI64);
    }
    for (int j = 0; j < 4; j++) {  // column 4L + j: lane L of x[j], x[4 + j], x[8 + j], x[12 + j]
        const amx_u32x16 u0 = AMX_SHUF(x[j], x[4 + j], AMX_LANES01);
        const amx_u32x16 u1 = AMX_SHUF(x[j], x[4 + j], AMX_LANES23);
        const amx_u32x16 w0 = AMX_SHUF(x[8 + j], x[12 + j], AMX_LANES01);
        const amx_u32x16 w1 = AMX_SHUF(x[8 + j], x[12 + j], AMX_LANES23);
        const amx_u32x16 y0 = AMX_SHUF(u0, w0, AMX_EVEN_LANES), y1 = AMX_SHUF(u0, w0, AMX_ODD_LANES);
        const amx_u32x16 y2 = AMX_SHUF(u1, w1, AMX_EVEN_LANES), y3 = AMX_SHUF(u1, w1, AMX_ODD_LANES);
        memcpy(a + 16 * j, &y0, sizeof y0);
        memcpy(a + 16 * (4 + j), &y1, sizeof y1);
        memcpy(a + 16 * (8 + j), &y2, sizeof y2);
        memcpy(a + 16 * (12 + j), &y3, sizeof y3);
    }
}

enum { AMX_PV_TILES_KEPT = 8 };  // P tiles kept per query tile: blocks up to 256 keys

// acc[i, :] = α[i]·acc[i, :] + Σ_j bf16(pt[j, i]) · v[j, :] (accumulate_pv_bf16), V as
// pack_v_amx left it. pt's rows become P's pairs (round_pairs_bf16, in place) and the pair rows
// from ⌈keys/2⌉ up to the last chunk's end (rows of the scores buffer past this block's keys:
// BK is a multiple of 32) are zeroed; each query tile's P tiles are transposed once and kept
// for every strip of V's columns. O = P·V comes out query-major, so each block's sums are
// added to the accumulator rows a whole vector at a time: acc = α·acc + Σ (one fma).
VF_FN static void accumulate_pv_amx(int rows_padded, int keys, int64_t dv, float *pt, int64_t ldpt,
                                    const uint32_t *vt, int64_t ldvt, const float *alpha,
                                    float *acc, int64_t ldacc, int masked, int64_t lo, int64_t hi) {
    _Alignas(64) uint32_t ptiles[AMX_PV_TILES_KEPT][16 * 16];
    _Alignas(64) float cbuf[16 * 16];
    uint32_t *p2 = (uint32_t *)pt;
    round_pairs_bf16(keys, rows_padded, pt, ldpt, p2, ldpt);
    const int chunks = (keys + 31) / 32;
    for (int p = (keys + 1) / 2; p < 16 * chunks; p++)
        memset(p2 + (int64_t)p * ldpt, 0, sizeof(uint32_t) * (size_t)rows_padded);
    const int strips = (int)((dv + 15) / 16);
    const int kept = chunks <= AMX_PV_TILES_KEPT;  // else each P tile is built per strip pass
    const int64_t ldb = ldvt * 4;
    amx_configure();
    for (int i0 = 0; i0 < rows_padded; i0 += 16) {
        const int nq = rows_padded - i0 < 16 ? rows_padded - i0 : 16;
        if (kept)
            for (int c = 0; c < chunks; c++)
                if (!masked || amx_band_meets(32 * c, 32, i0, nq, lo, hi))
                    amx_p_tile(p2, ldpt, i0, nq, c, ptiles[c]);
        for (int s0 = 0; s0 < strips; s0 += AMX_PV_STRIPS) {
            const int ns = strips - s0 < AMX_PV_STRIPS ? strips - s0 : AMX_PV_STRIPS;
            AMX_ZERO(AMX_C0);
            AMX_ZERO(AMX_C1);
            AMX_ZERO(AMX_C2);
            AMX_ZERO(AMX_C3);
            for (int c = 0; c < chunks; c++) {
                if (masked && !amx_band_meets(32 * c, 32, i0, nq, lo, hi)) continue;  // P = 0
                uint32_t *a = ptiles[kept ? c : 0];
                if (!kept) amx_p_tile(p2, ldpt, i0, nq, c, a);
                AMX_LOAD(AMX_A, a, 64);
                const uint32_t *b = vt + (int64_t)(16 * c) * ldvt + 16 * s0;  // 16 columns a tile
                AMX_LOAD(AMX_B0, b, ldb);
                AMX_DP(AMX_C0, AMX_A, AMX_B0);
                if (ns > 1) {
                    AMX_LOAD(AMX_B1, b + 16, ldb);
                    AMX_DP(AMX_C1, AMX_A, AMX_B1);
                }
                if (ns > 2) {
                    AMX_LOAD(AMX_B0, b + 32, ldb);
                    AMX_DP(AMX_C2, AMX_A, AMX_B0);
                }
                if (ns > 3) {
                    AMX_LOAD(AMX_B1, b + 48, ldb);
                    AMX_DP(AMX_C3, AMX_A, AMX_B1);
                }
            }
            // Tile numbers must be constants: one store per tile, each folded before the next.
            for (int t = 0; t < ns; t++) {
                if (t == 0) AMX_STORE(AMX_C0, cbuf, 64);
                if (t == 1) AMX_STORE(AMX_C1, cbuf, 64);
                if (t == 2) AMX_STORE(AMX_C2, cbuf, 64);
                if (t == 3) AMX_STORE(AMX_C3, cbuf, 64);
                for (int i = 0; i < nq; i++) {
                    const vf al = vf_set1(alpha[i0 + i]);
                    float *row = acc + (int64_t)(i0 + i) * ldacc + 16 * (s0 + t);
                    for (int w = 0; w < 16; w += VF_W)
                        vf_storeu(row + w, vf_fma(al, vf_loadu(row + w), vf_loadu(cbuf + i * 16 + w)));
                }
            }
        }
    }
}
