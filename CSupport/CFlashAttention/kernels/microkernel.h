// microkernel.h — the contract between the loop nest (frame/) and the ISA leaves (kernels/).
//
// The loop nest knows tile sizes and these function pointers only; it never names an ISA.
// Each ISA file fills one fa_kernels table; dispatch/cpu.c picks one table per process.
// Layouts (all row-major, floats):
//   q   [rows × dqk]  row stride ldq      the query block, already multiplied by scale
//   kt  [dqk × cols]  row stride ldkt     the key block, transposed by pack_kt
//   s   [rows × cols] row stride lds      scores, then probabilities in place
//   v   [cols × dv]   row stride ldv      the value block, read where it lies
//   acc [rows × dv]   row stride ldacc    the unnormalised output accumulator
#ifndef FA_MICROKERNEL_H
#define FA_MICROKERNEL_H

#include <stdint.h>

typedef struct fa_kernels {
    const char *name;   ///< "portable", later "avx2", "avx512"
    int block_q;        ///< query rows per block (BQ)
    int block_k;        ///< keys per block (BK)

    /// kt[d·ldkt + j] = k[j·ldk + d]   for j < cols, d < dqk
    void (*pack_kt)(int cols, int64_t dqk, const float *k, int64_t ldk, float *kt, int64_t ldkt);

    /// s[i, j] = Σ_d q[i, d] · kt[d, j]   for i < rows, j < cols
    void (*scores)(int rows, int cols, int64_t dqk, const float *q, int64_t ldq,
                   const float *kt, int64_t ldkt, float *s, int64_t lds);

    /// acc[i, :] += Σ_j p[i, j] · v[j, :]   for i < rows
    void (*accumulate_pv)(int rows, int cols, int64_t dv, const float *p, int64_t ldp,
                          const float *v, int64_t ldv, float *acc, int64_t ldacc);

    /// returns max_j x[j] (−inf for n = 0 or an all −inf row)
    float (*row_max)(const float *x, int n);

    /// x[j] ← exp(x[j] − m); returns Σ_j x[j]. m is finite; exp(−inf − m) = 0.
    float (*exp_sum)(float *x, int n, float m);

    /// x[j] ← a · x[j]
    void (*scale_row)(float *x, int64_t n, float a);
} fa_kernels;

/// The portable C table: always compiled, the default for every slot.
extern const fa_kernels fa_kernels_portable;

/// The table this process uses (chosen once, thread-safe).
const fa_kernels *fa_select_kernels(void);

#endif  // FA_MICROKERNEL_H
