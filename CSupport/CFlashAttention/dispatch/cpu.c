// cpu.c — which micro-kernel table and which tile sizes a call uses.
//
// CPU features (fa_cpu_features): cpuid on x86, the kernel's hardware capabilities on Linux
// ARM64 (getauxval), sysctl on Apple platforms.
//
// ISA: FA_ISA_AUTO resolves once per process to the FA_ISA environment variable when it names
// a supported ISA, else to the best the CPU supports: on x86 AVX-512 with BF16 > AVX-512 >
// AVX2 > portable, tested with __builtin_cpu_supports (which also checks that the OS saves the
// vector state); on ARM64 NEON, which every ARM64 CPU has. AMX (FA_ISA_AVX512_AMX) only when
// asked for, until measured on AMX hardware.
//
// Tiles: the key block BK is fixed at 64 (a multiple of every key micro-tile): it sets where
// the online softmax rescales, so it never depends on the machine or the thread count. The
// query block BQ is the largest multiple of the ISA's query micro-tile, up to 384 rows,
// whose working set — Qᵀ (Dqk × BQ), scores (BK × BQ), accumulator (BQ × Dv) and the K and
// V blocks (BK × (Dqk + Dv)) — fits in half the L2 cache; then it shrinks while there are
// fewer than 4 work items per thread, and to about half a sliding window's left side. BQ
// never changes results: every query row goes through
// the same arithmetic in any block. FA_BLOCK_Q / FA_BLOCK_K override (rounded to the tiles).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#include "../frame/internal.h"
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#if defined(__aarch64__) && defined(__APPLE__)
static int apple_feature(const char *name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, NULL, 0) == 0 && value != 0;
}
#endif

// FEAT_BF16 (BFDOT, BFCVT), as the operating system reports it.
static int arm_bf16(void) {
#if defined(__aarch64__) && defined(__linux__)
    return (int)((getauxval(AT_HWCAP2) >> 14) & 1);  // HWCAP2_BF16
#elif defined(__aarch64__) && defined(__APPLE__)
    return apple_feature("hw.optional.arm.FEAT_BF16");
#else
    return 0;
#endif
}

#if (defined(__x86_64__) || defined(__i386__)) && !defined(FA_AMX_EMULATE)
// AMX-TILE and AMX-BF16 (cpuid leaf 7: EDX bits 24 and 22), the OS saving the tile state
// (XCR0 bits 17 and 18), and Linux's permission for this process to use it, asked for once
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; a process-wide grant). Elsewhere, or
// refused: no AMX.
static int amx_cpu(void) {
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a < 7) return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!((d >> 24) & 1) || !((d >> 22) & 1)) return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!((c >> 27) & 1)) return 0;  // OSXSAVE: xgetbv is there
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((lo >> 17) & 3) == 3;
}
static int amx_granted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static void amx_request(void) {
#if defined(__linux__)
    enum { ARCH_REQ_XCOMP_PERM_ = 0x1023, XFEATURE_XTILEDATA_ = 18 };
    amx_granted = amx_cpu() && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM_, XFEATURE_XTILEDATA_) == 0;
#else
    amx_granted = 0;
#endif
}
static int amx_bf16_granted(void) {
    pthread_once(&amx_once, amx_request);
    return amx_granted;
}
#endif

int fa_isa_supported(fa_isa isa) {
    switch (isa) {
    case FA_ISA_AUTO:
    case FA_ISA_PORTABLE:
        return 1;
    case FA_ISA_AVX2:
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
#else
        return 0;
#endif
    case FA_ISA_AVX512:
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
#else
        return 0;
#endif
    case FA_ISA_AVX512_BF16:
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return fa_isa_supported(FA_ISA_AVX512) && __builtin_cpu_supports("avx512bf16");
#else
        return 0;
#endif
    case FA_ISA_AVX512_AMX:
#if defined(FA_AMX_EMULATE)
        return 1;  // tiles emulated in plain C (amx_emulated.c)
#elif defined(__x86_64__) || defined(__i386__)
        return fa_isa_supported(FA_ISA_AVX512_BF16) && amx_bf16_granted();
#else
        return 0;
#endif
    case FA_ISA_NEON:
#if defined(__aarch64__)
        return 1;  // Advanced SIMD is part of ARMv8.0
#else
        return 0;
#endif
    case FA_ISA_NEON_BF16:
        return arm_bf16();
    }
    return 0;
}

// ---- the CPU's features, as the operating system reports them (fa_cpu_features) ----

static char cpu_features[256];
static pthread_once_t cpu_features_once = PTHREAD_ONCE_INIT;

static void add_feature(int present, const char *name) {
    if (!present) return;
    const size_t used = strlen(cpu_features);
    snprintf(cpu_features + used, sizeof cpu_features - used, "%s%s", used ? " " : "", name);
}

static void detect_cpu_features(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    add_feature(__builtin_cpu_supports("avx2"), "avx2");
    add_feature(__builtin_cpu_supports("fma"), "fma");
    add_feature(__builtin_cpu_supports("f16c"), "f16c");
    add_feature(__builtin_cpu_supports("avx512f"), "avx512f");
    add_feature(__builtin_cpu_supports("avx512vl"), "avx512vl");
    add_feature(__builtin_cpu_supports("avx512bw"), "avx512bw");
    add_feature(__builtin_cpu_supports("avx512dq"), "avx512dq");
    add_feature(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
#if !defined(FA_AMX_EMULATE)
    add_feature(amx_cpu(), "amx-bf16");
#endif
#elif defined(__aarch64__) && defined(__linux__)
    // Bit numbers of the kernel's uapi (asm/hwcap.h), which every ARM64 Linux keeps.
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    add_feature(1, "neon");                  // Advanced SIMD: ARMv8.0
    add_feature((hw >> 10) & 1, "fp16");     // HWCAP_ASIMDHP: half-precision arithmetic
    add_feature((hw >> 20) & 1, "dotprod");  // HWCAP_ASIMDDP
    add_feature((hw2 >> 14) & 1, "bf16");    // HWCAP2_BF16: BFDOT, BFMMLA, BFCVT
    add_feature((hw2 >> 13) & 1, "i8mm");    // HWCAP2_I8MM
    add_feature((hw >> 22) & 1, "sve");      // HWCAP_SVE
#elif defined(__aarch64__) && defined(__APPLE__)
    add_feature(1, "neon");
    add_feature(apple_feature("hw.optional.arm.FEAT_FP16"), "fp16");
    add_feature(apple_feature("hw.optional.arm.FEAT_DotProd"), "dotprod");
    add_feature(apple_feature("hw.optional.arm.FEAT_BF16"), "bf16");
    add_feature(apple_feature("hw.optional.arm.FEAT_I8MM"), "i8mm");
#endif
}

const char *fa_cpu_features(void) {
    pthread_once(&cpu_features_once, detect_cpu_features);
    return cpu_features;
}

static fa_isa detect_auto(void) {
    const char *env = getenv("FA_ISA");
    if (env) {
        const struct { const char *name; fa_isa isa; } names[] = {
            {"portable", FA_ISA_PORTABLE}, {"scalar", FA_ISA_PORTABLE},
            {"avx2", FA_ISA_AVX2}, {"avx512", FA_ISA_AVX512},
            {"avx512bf16", FA_ISA_AVX512_BF16}, {"avx512amx", FA_ISA_AVX512_AMX}, {"neon", FA_ISA_NEON},
            {"neonbf16", FA_ISA_NEON_BF16},
        };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const char *a = env, *b = names[i].name;
            while (*a && *a == *b) { a++; b++; }
            if (*a == 0 && *b == 0 && fa_isa_supported(names[i].isa)) return names[i].isa;
        }
    }
    if (fa_isa_supported(FA_ISA_NEON_BF16)) return FA_ISA_NEON_BF16;
    if (fa_isa_supported(FA_ISA_NEON)) return FA_ISA_NEON;
    if (fa_isa_supported(FA_ISA_AVX512_BF16)) return FA_ISA_AVX512_BF16;
    if (fa_isa_supported(FA_ISA_AVX512)) return FA_ISA_AVX512;
    if (fa_isa_supported(FA_ISA_AVX2)) return FA_ISA_AVX2;
    return FA_ISA_PORTABLE;
}

fa_isa fa_resolve_isa(fa_isa requested) {
    if (requested != FA_ISA_AUTO) return requested;
    static int cached = -1;  // a benign race: every thread computes the same value
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = (int)detect_auto();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return (fa_isa)v;
}

const fa_kernels *fa_kernels_for(fa_isa isa) {
    switch (fa_resolve_isa(isa)) {
#if defined(FA_AMX_EMULATE) || defined(__x86_64__) || defined(__i386__)
    case FA_ISA_AVX512_AMX: return &fa_kernels_avx512_amx;
#endif
#if defined(__x86_64__) || defined(__i386__)  // the x86 tables exist only in x86 builds
    case FA_ISA_AVX512_BF16: return &fa_kernels_avx512_bf16;
    case FA_ISA_AVX512: return &fa_kernels_avx512;
    case FA_ISA_AVX2: return &fa_kernels_avx2;
#endif
#if defined(__aarch64__)  // and the NEON table only in ARM64 builds
    case FA_ISA_NEON: return &fa_kernels_neon;
    case FA_ISA_NEON_BF16: return &fa_kernels_neon_bf16;
#endif
    default: return &fa_kernels_portable;
    }
}

const char *fa_kernel_name(void) {
    return fa_kernels_for(FA_ISA_AUTO)->name;
}

// Cache sizes from sysconf, else sysfs (index0 = L1d, index2 = L2, index3 = L3), else 0.
static int64_t cache_bytes(int level) {
    long v = 0;
#ifdef _SC_LEVEL1_DCACHE_SIZE
    v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE
                                                                  : _SC_LEVEL3_CACHE_SIZE);
#endif
    if (v > 0) return v;
    char path[64];  // index0 is the L1 data cache (index1 the L1 instruction cache)
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size",
             level == 1 ? 0 : level);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long kb = 0;
    char unit = 0;
    if (fscanf(f, "%ld%c", &kb, &unit) < 1) kb = 0;
    fclose(f);
    return unit == 'M' ? (int64_t)kb << 20 : (int64_t)kb << 10;
}

int64_t fa_l2_bytes(void) { return cache_bytes(2); }

static int64_t env_int(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (end && *end == 0 && v > 0 && v <= 4096) ? v : 0;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

fa_blocking fa_blocking_for(const fa_kernels *kr, const fa_shape *s, int threads,
                            int64_t window_left, int64_t mask_block_q) {
    fa_blocking b;
    b.block_k = 64;
    const int64_t over_k = env_int("FA_BLOCK_K");
    if (over_k) b.block_k = (int)round_up(over_k, kr->key_tile);

    const int64_t qt = kr->query_tile;
    const int64_t l2 = cache_bytes(2) > 0 ? cache_bytes(2) : 512 * 1024;
    const int64_t dqk = s->head_dim_qk, ldacc = round_up(s->head_dim_v, 16);
    int64_t bq = qt;
    for (int64_t cand = (384 / qt) * qt; cand >= qt; cand -= qt) {
        const int64_t ws = 4 * (dqk * cand + (int64_t)b.block_k * cand + cand * ldacc +
                                (int64_t)b.block_k * (dqk + s->head_dim_v) + 4 * cand);
        if (ws <= l2 / 2) { bq = cand; break; }
    }
    // A sliding window's band is window_left keys wide: taller blocks would mostly compute
    // their masked triangles.
    if (window_left >= 0) {
        const int64_t cap = (window_left / 2 / qt) * qt;
        const int64_t floor_rows = 2 * qt;
        const int64_t limit = cap > floor_rows ? cap : floor_rows;
        if (bq > limit) bq = limit;
    }
    // A block-sparse mask skips whole blocks only when a query block stays inside one of its
    // block rows: use its row granularity (rounded down to vectors), if smaller.
    if (mask_block_q > 0) {
        int64_t aligned = mask_block_q / kr->vector_width * kr->vector_width;
        if (aligned < kr->vector_width) aligned = kr->vector_width;
        if (bq > aligned) bq = aligned;
    }
    // Enough work items for the threads (BQ never changes the numbers, only the schedule).
    // (heads < the target first: B·Hq·⌈Lq/BQ⌉ can pass INT64_MAX with every extent valid.)
    const int64_t heads = s->batch * s->q_heads, target = 4 * (int64_t)threads;
    while (bq > qt && heads < target && heads * fa_ceil_div(s->q_len, bq) < target) bq -= qt;
    // No block taller than the problem (rounded to the vector width).
    const int64_t tallest = round_up(s->q_len, kr->vector_width);
    if (bq > tallest) bq = tallest;
    const int64_t over_q = env_int("FA_BLOCK_Q");
    if (over_q) bq = round_up(over_q, kr->vector_width);
    b.block_q = (int)bq;
    return b;
}

fa_status fa_kernel_info_for(const fa_problem *p, fa_kernel_info *info) {
    if (!p || !info) return FA_ERR_NULL_POINTER;
    fa_diagnostic diag;
    fa_status st = fa_validate_shape_options(p, &diag);
    if (st != FA_OK) return st;
    const fa_isa isa = fa_resolve_isa(p->isa);
    const fa_kernels *kr = fa_kernels_for(isa);
    const fa_blocking b = fa_blocking_for(kr, &p->shape, fa_resolve_threads(p->num_threads),
                                          p->window_left,
                                          p->block_mask.data ? p->block_mask.block_q : 0);
    info->isa = isa;
    info->name = kr->name;
    info->vector_width = kr->vector_width;
    info->block_q = b.block_q;
    info->block_k = b.block_k;
    info->l1d_bytes = cache_bytes(1);
    info->l2_bytes = cache_bytes(2);
    info->l3_bytes = cache_bytes(3);
    return FA_OK;
}

fa_status fa_exp2(fa_isa isa, const float *x, float *y, int64_t n) {
    if (!x || !y) return FA_ERR_NULL_POINTER;
    if (n < 0) return FA_ERR_INVALID_EXTENT;
    if (isa < FA_ISA_AUTO || isa > FA_ISA_AVX512_AMX || !fa_isa_supported(isa))
        return FA_ERR_UNSUPPORTED_ISA;
    fa_kernels_for(isa)->exp2(x, y, n);
    return FA_OK;
}
