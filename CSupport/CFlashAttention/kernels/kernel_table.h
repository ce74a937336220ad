// kernel_table.h — an ISA's fa_kernels table, from the sources compiled in its file (included
// last, after the vector header, tile_kernels.h and row_kernels.h). The ISA file defines
// KERNEL_TABLE (the table's symbol), KERNEL_NAME and KERNEL_KEY_TILE first, and KERNEL_BF16
// when it compiled bf16_tile_kernels.h and defines the decoding row kernels over bf16 pairs
// (every bf16 pair kernel).
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
    .scores_q_bf16dot = row_scores_bf16dot,
    .block_pv_q_bf16dot = row_block_pv_bf16dot,
    .pack_qt_bf16 = pack_qt_bf16,
    .scores_t_bf16 = scores_t_bf16,
    .pack_pairs_bf16 = pack_pairs_bf16,
    .round_pairs_bf16 = round_pairs_bf16,
    .round_rows_bf16 = round_rows_bf16,
    .gemm_acc_bf16 = gemm_acc_bf16,
    .accumulate_pv_bf16 = accumulate_pv_bf16,
#endif
};
