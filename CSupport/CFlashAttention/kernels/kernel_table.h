// kernel_table.h — an ISA's fa_kernels table, from the sources compiled in its file (included
// last, after the vector header, tile_kernels.h and row_kernels.h). The ISA file defines
// KERNEL_TABLE (the table's symbol), KERNEL_NAME and KERNEL_KEY_TILE first.
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
    .scores_q = row_scores,
    .softmax_q = row_softmax,
    .accumulate_pv_q = row_accumulate_pv,
};
