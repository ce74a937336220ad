// portable.c — the plain C kernels: the shared kernel sources compiled over vec_portable.h
// (8-float vectors as structs, lanes in loops the compiler maps onto the baseline target).
// Always compiled; the path on CPUs without AVX2, and what a new ISA starts from.
#include "vec_portable.h"
#include "tile_kernels.h"
#include "row_kernels.h"

#define KERNEL_TABLE fa_kernels_portable
#define KERNEL_NAME "portable"
#define KERNEL_KEY_TILE 1
#include "kernel_table.h"
