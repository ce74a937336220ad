// kernel_table.h — an ISA's fa_kernels table, from the sources compiled in its file (included
// last, after the vector header, tile_kernels.h and row_kernels.h). The ISA file defines
// KERNEL_TABLE (the table's symbol), KERNEL_NAME and KERNEL_KEY_TILE first, and KERNEL_BF16
// when it compiled bf16_tile_kernels.h and defines the decoding row kernels over bf16 pairs
// (every bf16 pair kernel; KERNEL_NO_BF16_ROWS: the tile kernels only). KERNEL_SCORES_T_BF16,
// KERNEL_PACK_V_BF16 and KERNEL_ACCUMULATE_PV_BF16 name replacements (all three or none).
#ifndef KERNEL_SCORES_T_BF16  // the AMX table replaces these three (amx_tile_kernels.h)
#define KERNEL_SCORES_T_BF16 scores_t_bf16
#define KERNEL_PACK_V_BF16 pack_pairs_bf16
#define KERNEL_ACCUMULATE_PV_BF16 accumulate_pv_bf16
#endif
const fa_kernels KERNEL_TABLE = {
    .name = KERNEL_NAME,
    .vector_width = VF_W,
    .query_tile = TILE_ST_Q * VF_W,
    .key_tile = KERNEL_KEY_TILE,
    .pack_qt = TILE_PACK_QT,
    .scores_t = tile_scores_t,
    .softmax_t = tile_softmax_t,
    .accumulate_pv = tile_accumulate_pv,
    .softmax_grad_t = tile_softmax_grad_t,
    .gemm_acc = tile_gemm_acc,
    .score_mods = tile_score_mods,
    .exp2 = tile_exp2,
    .scores_q = {row_scores_f32, row_scores_f16, row_scores_bf16},
    .softmax_q = row_softmax,
    .block_pv_q = {row_block_pv_f32, row_block_pv_f16, row_block_pv_bf16},
    .fold_q = row_fold,
    .widen = {row_widen_f32, row_widen_f16, row_widen_bf16},
#ifdef KERNEL_BF16
#ifndef KERNEL_NO_BF16_ROWS
    .scores_q_bf16dot = row_scores_bf16dot,
    .block_pv_q_bf16dot = row_block_pv_bf16dot,
#endif
    .pack_qt_bf16 = pack_qt_bf16,
    .scores_t_bf16 = KERNEL_SCORES_T_BF16,
    .pack_pairs_bf16 = pack_pairs_bf16,
    .pack_v_bf16 = KERNEL_PACK_V_BF16,
    .round_pairs_bf16 = round_pairs_bf16,
    .round_rows_bf16 = round_rows_bf16,
    .gemm_acc_bf16 = gemm_acc_bf16,
    .accumulate_pv_bf16 = KERNEL_ACCUMULATE_PV_BF16,
#endif
};
