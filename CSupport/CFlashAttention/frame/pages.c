// pages.c — the checks of a paged K/V description (fa_kv_pages), beside nothing else.
//
// Everything the loops will read through a page table is checked here first: which form is
// given, every offset, every page index, every length, and (when the caller claims it)
// that no page is listed twice. Each failure names the argument and the values; nothing is
// written before these pass.
#include <stdlib.h>
#include "internal.h"

// The CSR form: indptr from 0, non-decreasing; last_page_len in 1 … page_size for an entry
// with pages, 0 for one without.
static fa_status check_csr(const fa_problem *p, fa_diagnostic *diag) {
    const fa_kv_pages *pg = &p->kv_pages;
    const int64_t batch = p->shape.batch;
    if (pg->indptr[0] != 0)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_INDPTR, 0, pg->indptr[0], 0,
                       "kv_pages.indptr[0] is %d; it must be 0", (int)pg->indptr[0]);
    for (int64_t b = 0; b < batch; b++) {
        const int32_t from = pg->indptr[b], to = pg->indptr[b + 1];
        if (to < from)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_INDPTR, b + 1, to, from,
                           "kv_pages.indptr[%lld] is %d, below indptr[%lld] = %d; it never "
                           "decreases", (long long)(b + 1), (int)to, (long long)b, (int)from);
        const int32_t last = pg->last_page_len[b];
        if (to == from && last != 0)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_LAST_PAGE_LEN, b, last, 0,
                           "kv_pages.last_page_len[%lld] is %d, but entry %lld has no page; it "
                           "must be 0", (long long)b, (int)last, (long long)b);
        if (to > from && (last < 1 || last > pg->page_size))
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_LAST_PAGE_LEN, b, last,
                           pg->page_size,
                           "kv_pages.last_page_len[%lld] is %d; it must be between 1 and the "
                           "page size %lld", (long long)b, (int)last, (long long)pg->page_size);
    }
    return FA_OK;
}

// The block-table form: seq_lens ≥ 0, and each row long enough for its sequence.
static fa_status check_block_table(const fa_problem *p, fa_diagnostic *diag) {
    const fa_kv_pages *pg = &p->kv_pages;
    if (pg->max_pages < 1 || pg->max_pages > INT32_MAX)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_BLOCK_TABLE, pg->max_pages, 0, 0,
                       "kv_pages.max_pages is %lld; it must be between 1 and 2^31-1",
                       (long long)pg->max_pages);
    for (int64_t b = 0; b < p->shape.batch; b++) {
        const int64_t len = pg->seq_lens[b];
        if (len < 0)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_SEQ_LENS, b, len, 0,
                           "kv_pages.seq_lens[%lld] is %lld; it must be >= 0", (long long)b,
                           (long long)len);
        const int64_t need = fa_ceil_div(len, pg->page_size);
        if (need > pg->max_pages)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_BLOCK_TABLE, b, need, pg->max_pages,
                           "kv_pages.block_table: entry %lld holds %lld keys, which need %lld "
                           "pages of %lld; its row has max_pages = %lld", (long long)b,
                           (long long)len, (long long)need, (long long)pg->page_size,
                           (long long)pg->max_pages);
    }
    return FA_OK;
}

fa_status fa_check_pages(const fa_problem *p, fa_diagnostic *diag) {
    const fa_kv_pages *pg = &p->kv_pages;
    const int csr = pg->indptr || pg->indices || pg->last_page_len;
    const int table = pg->block_table || pg->seq_lens;
    if (pg->page_size == 0) {
        if (csr || table)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, 0, 0, 0,
                           "kv_pages: a page table is given but page_size is 0 (not paged)");
        return FA_OK;
    }
    if (pg->page_size < 0 || pg->page_size > INT32_MAX)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, pg->page_size, 0, 0,
                       "kv_pages.page_size is %lld; it must be 0 (not paged) or between 1 and "
                       "2^31-1", (long long)pg->page_size);
    if (pg->num_pages < 1 || pg->num_pages > INT32_MAX)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, pg->num_pages, 0, 0,
                       "kv_pages.num_pages is %lld; it must be between 1 and 2^31-1",
                       (long long)pg->num_pages);
    if (csr == table)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, csr, table, 0,
                       "kv_pages: give exactly one form, CSR (indptr, indices, last_page_len) "
                       "or block table (block_table, seq_lens); %s",
                       csr ? "both are given" : "neither is given");
    if (csr && !(pg->indptr && pg->indices && pg->last_page_len))
        return fa_fail(diag, FA_ERR_INVALID_PAGES,
                       !pg->indptr ? FA_ARG_KV_INDPTR
                                   : !pg->indices ? FA_ARG_KV_INDICES : FA_ARG_KV_LAST_PAGE_LEN,
                       0, 0, 0, "kv_pages: the CSR form needs indptr, indices and last_page_len; "
                       "%s is NULL", !pg->indptr ? "indptr" : !pg->indices ? "indices"
                                                                          : "last_page_len");
    if (table && !(pg->block_table && pg->seq_lens))
        return fa_fail(diag, FA_ERR_INVALID_PAGES,
                       pg->block_table ? FA_ARG_SEQ_LENS : FA_ARG_BLOCK_TABLE, 0, 0, 0,
                       "kv_pages: the block-table form needs block_table and seq_lens; %s is "
                       "NULL", pg->block_table ? "seq_lens" : "block_table");
    if (p->kv_lengths || p->cu_seqlens_k)
        return fa_fail(diag, FA_ERR_INVALID_PAGES, FA_ARG_KV_PAGES, 0, 0, 0,
                       "kv_pages: paged K/V take their lengths from the page table; %s must be "
                       "NULL", p->kv_lengths ? "kv_lengths" : "cu_seqlens_k");
    fa_status st = csr ? check_csr(p, diag) : check_block_table(p, diag);
    if (st != FA_OK) return st;

    // Every entry's length within kv_len, every page it uses in the pool.
    const int64_t batch = p->shape.batch;
    for (int64_t b = 0; b < batch; b++) {
        const int64_t len = fa_kv_len_of(p, b);
        if (len > p->shape.kv_len)
            return fa_fail(diag, FA_ERR_INVALID_PAGES, csr ? FA_ARG_KV_INDPTR : FA_ARG_SEQ_LENS,
                           b, len, p->shape.kv_len,
                           "kv_pages: entry %lld holds %lld keys, more than shape.kv_len = %lld "
                           "(the longest sequence the call allows)", (long long)b,
                           (long long)len, (long long)p->shape.kv_len);
        const int32_t *pages = fa_pages_of(p, b);
        const int64_t used = fa_ceil_div(len, pg->page_size);
        for (int64_t i = 0; i < used; i++)
            if (pages[i] < 0 || pages[i] >= pg->num_pages) {
                const int64_t at = csr ? (int64_t)pg->indptr[b] + i : b * pg->max_pages + i;
                return fa_fail(diag, FA_ERR_INVALID_PAGES,
                               csr ? FA_ARG_KV_INDICES : FA_ARG_BLOCK_TABLE, at, pages[i],
                               pg->num_pages,
                               "kv_pages.%s[%lld] (entry %lld, page %lld) is %d; page indices "
                               "are in [0, num_pages = %lld)", csr ? "indices" : "block_table",
                               (long long)at, (long long)b, (long long)i, (int)pages[i],
                               (long long)pg->num_pages);
            }
    }
    // CSR lists pages an entry does not use only if its last_page_len says so: none.
    if (!pg->exclusive) return FA_OK;
    uint8_t *seen = calloc((size_t)(pg->num_pages + 7) / 8, 1);
    if (!seen)
        return fa_fail(diag, FA_ERR_OUT_OF_MEMORY, FA_ARG_KV_PAGES, pg->num_pages, 0, 0,
                       "kv_pages: no memory to check %lld pages for duplicates",
                       (long long)pg->num_pages);
    for (int64_t b = 0; b < batch; b++) {
        const int32_t *pages = fa_pages_of(p, b);
        const int64_t used = fa_ceil_div(fa_kv_len_of(p, b), pg->page_size);
        for (int64_t i = 0; i < used; i++) {
            const int32_t page = pages[i];
            if (seen[page / 8] & (1u << (page % 8))) {
                free(seen);
                return fa_fail(diag, FA_ERR_INVALID_PAGES,
                               csr ? FA_ARG_KV_INDICES : FA_ARG_BLOCK_TABLE, b, i, page,
                               "kv_pages: page %d is listed twice (again as entry %lld's page "
                               "%lld), but exclusive is set", (int)page, (long long)b,
                               (long long)i);
            }
            seen[page / 8] |= (uint8_t)(1u << (page % 8));
        }
    }
    free(seen);
    return FA_OK;
}
