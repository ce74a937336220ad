// sgemm_reference.c — the two OpenBLAS entry points the naive reference calls, in plain C, for
// cross builds with no OpenBLAS for the target (make test-arm64): cblas_sgemm by the definition
// (each element one float32 dot product, summed in order), and the thread-count pair.
#include <cblas.h>

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint m, const blasint n, const blasint k,
                 const float alpha, const float *a, const blasint lda, const float *b,
                 const blasint ldb, const float beta, float *c, const blasint ldc) {
    if (order == CblasColMajor) {  // Cᵀ = Bᵀ·Aᵀ in row-major terms
        cblas_sgemm(CblasRowMajor, tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
        return;
    }
    for (blasint i = 0; i < m; i++)
        for (blasint j = 0; j < n; j++) {
            float s = 0.0f;
            for (blasint p = 0; p < k; p++) {
                const float x = ta == CblasNoTrans ? a[(long)i * lda + p] : a[(long)p * lda + i];
                const float y = tb == CblasNoTrans ? b[(long)p * ldb + j] : b[(long)j * ldb + p];
                s += x * y;
            }
            float *out = &c[(long)i * ldc + j];
            *out = beta == 0.0f ? alpha * s : alpha * s + beta * *out;
        }
}

static int threads = 1;
void openblas_set_num_threads(int n) { threads = n; }
int openblas_get_num_threads(void) { return threads; }
