// convert.c — the public element-type conversions (fa_convert and the scalar ones), over the
// converters the kernels use (kernels/half.h), so a caller converting a tensor gets exactly
// the bits the library's own paths produce.
#include "../kernels/half.h"
#include "flash_attention.h"

float fa_bf16_to_float(uint16_t h) { return fa_bf16_to_f32(h); }
uint16_t fa_float_to_bf16(float f) { return fa_f32_to_bf16(f); }
float fa_f16_to_float(uint16_t h) { return fa_f16_to_f32(h); }
uint16_t fa_float_to_f16(float f) { return fa_f32_to_f16(f); }

size_t fa_dtype_size(fa_dtype t) {
    switch (t) {
    case FA_DTYPE_F32: return 4;
    case FA_DTYPE_F16:
    case FA_DTYPE_BF16: return 2;
    }
    return 0;
}

fa_status fa_convert(fa_dtype from, const void *src, fa_dtype to, void *dst, int64_t n) {
    if (fa_dtype_size(from) == 0 || fa_dtype_size(to) == 0) return FA_ERR_INVALID_DTYPE;
    if (n < 0) return FA_ERR_INVALID_EXTENT;
    if (n == 0) return FA_OK;
    if (!src || !dst) return FA_ERR_NULL_POINTER;
    // The pair of types is dispatched once, outside the loops. Element i is read before it
    // is written, so src == dst works when the sizes match; other overlaps are the caller's
    // error (as for memcpy).
    const float *sf = src;
    const uint16_t *sh = src;
    float *df = dst;
    uint16_t *dh = dst;
#define FA_CONVERT_LOOP(expr) for (int64_t i = 0; i < n; i++) expr; break
    switch (from * 3 + to) {
    case FA_DTYPE_F32 * 3 + FA_DTYPE_F32: FA_CONVERT_LOOP(df[i] = sf[i]);
    case FA_DTYPE_F32 * 3 + FA_DTYPE_F16: FA_CONVERT_LOOP(dh[i] = fa_f32_to_f16(sf[i]));
    case FA_DTYPE_F32 * 3 + FA_DTYPE_BF16: FA_CONVERT_LOOP(dh[i] = fa_f32_to_bf16(sf[i]));
    case FA_DTYPE_F16 * 3 + FA_DTYPE_F32: FA_CONVERT_LOOP(df[i] = fa_f16_to_f32(sh[i]));
    case FA_DTYPE_F16 * 3 + FA_DTYPE_F16: FA_CONVERT_LOOP(dh[i] = sh[i]);
    case FA_DTYPE_F16 * 3 + FA_DTYPE_BF16: FA_CONVERT_LOOP(dh[i] = fa_f32_to_bf16(fa_f16_to_f32(sh[i])));
    case FA_DTYPE_BF16 * 3 + FA_DTYPE_F32: FA_CONVERT_LOOP(df[i] = fa_bf16_to_f32(sh[i]));
    case FA_DTYPE_BF16 * 3 + FA_DTYPE_F16: FA_CONVERT_LOOP(dh[i] = fa_f32_to_f16(fa_bf16_to_f32(sh[i])));
    case FA_DTYPE_BF16 * 3 + FA_DTYPE_BF16: FA_CONVERT_LOOP(dh[i] = sh[i]);
    default: break;
    }
#undef FA_CONVERT_LOOP
    return FA_OK;
}
