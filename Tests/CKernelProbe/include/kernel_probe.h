// kernel_probe.h — test-only access to one kernel table's score_mods (not part of the library's
// API): lets the tests check the vectorised tanh and sech² element by element.
#ifndef FA_KERNEL_PROBE_H
#define FA_KERNEL_PROBE_H

#include <stdint.h>

/// Runs ISA `isa`'s score_mods (0 portable, 1 avx2, 2 avx512; the caller checks support) with
/// only soft-capping c on a key-major tile st [keys × rows_padded] (row stride ldst), writing
/// block_max [rows_padded] and derivative (same layout as st). Returns 0, or −1 for an
/// unknown ISA.
int fa_probe_softcap(int isa, int keys, int rows_padded, float *st, int64_t ldst, float softcap,
                     float *block_max, float *derivative);

#endif
