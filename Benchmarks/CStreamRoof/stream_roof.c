// stream_roof.c — a STREAM-like read-bandwidth roof for attention-bench (benchmark-only).
//
// Each thread reads its own contiguous part of one large buffer with eight independent vector
// accumulators, so the loop is bound by loads (by memory), not by the latency of the adds. The
// vector width is chosen at run time (AVX-512, AVX2, else GCC/Clang vector types), so the
// target needs no -march flag. With OpenMP the threads are OpenMP's (the kernels' pool);
// without it, pthreads. Swift's clang ships no omp.h: the prototypes we call are declared here.
#define _GNU_SOURCE
#include "stream_roof.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STREAM_ROOF_X86 1
#endif

#ifdef _OPENMP
int omp_get_thread_num(void);
int omp_get_num_threads(void);
#endif

// Parts are whole pages, so every part is aligned for any vector load below.
#define PART_ALIGN 4096
// The most threads one measurement takes (the per-thread sums live on the stack).
#define MAX_THREADS 1024

/// Sums n floats (n a multiple of 128; p 64-byte aligned).
typedef float (*read_fn)(const float *p, size_t n);

typedef float v4f __attribute__((vector_size(16), aligned(16), may_alias));

static float read_portable(const float *p, size_t n) {
    v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    for (size_t i = 0; i < n; i += 32) {
        const v4f *v = (const v4f *)(p + i);
        a0 += v[0]; a1 += v[1]; a2 += v[2]; a3 += v[3];
        a4 += v[4]; a5 += v[5]; a6 += v[6]; a7 += v[7];
    }
    const v4f s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    return (s[0] + s[1]) + (s[2] + s[3]);
}

#ifdef STREAM_ROOF_X86
__attribute__((target("avx2")))
static float read_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t i = 0; i < n; i += 64) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

__attribute__((target("avx512f")))
static float read_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
        a4 = _mm512_add_ps(a4, _mm512_load_ps(p + i + 64));
        a5 = _mm512_add_ps(a5, _mm512_load_ps(p + i + 80));
        a6 = _mm512_add_ps(a6, _mm512_load_ps(p + i + 96));
        a7 = _mm512_add_ps(a7, _mm512_load_ps(p + i + 112));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    return _mm512_reduce_add_ps(s);
}
#endif

static read_fn choose(const char **name) {
#ifdef STREAM_ROOF_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) { *name = "avx512"; return read_avx512; }
    if (__builtin_cpu_supports("avx2")) { *name = "avx2"; return read_avx2; }
#endif
    *name = "portable";
    return read_portable;
}

const char *stream_roof_kernel(void) {
    const char *name;
    (void)choose(&name);
    return name;
}

int stream_roof_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/// "32768K" → 33554432; 0 when unreadable.
static size_t read_size_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    char unit = 0;
    const int got = fscanf(f, "%llu%c", &v, &unit);
    fclose(f);
    if (got < 1) return 0;
    if (got == 2) {
        if (unit == 'K' || unit == 'k') v <<= 10;
        else if (unit == 'M' || unit == 'm') v <<= 20;
        else if (unit == 'G' || unit == 'g') v <<= 30;
    }
    return (size_t)v;
}

size_t stream_roof_l3_bytes(void) {
    const size_t level = read_size_file("/sys/devices/system/cpu/cpu0/cache/index3/level");
    if (level == 3) {
        const size_t s = read_size_file("/sys/devices/system/cpu/cpu0/cache/index3/size");
        if (s > 0) return s;
    }
#ifdef _SC_LEVEL3_CACHE_SIZE
    const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) return (size_t)v;
#endif
    return 0;
}

size_t stream_roof_default_bytes(void) {
    const size_t gib = (size_t)1 << 30;
    size_t want = 8 * stream_roof_l3_bytes();
    if (want < gib) want = gib;
    size_t cap = 4 * gib;
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        const size_t quarter = (size_t)pages * (size_t)page / 4;
        if (quarter < cap) cap = quarter;
    }
    if (want > cap) want = cap;
    const size_t floor = (size_t)64 << 20;
    return want < floor ? floor : want;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    float *base;
    size_t part;       // floats per part
    int parts;         // one part per requested thread
    int write;         // 1: fault the pages in (write), 0: read
    read_fn fn;
    float sums[MAX_THREADS];
} job_t;

/// Worker `t` of `nt`: parts t, t + nt, … (OpenMP may grant fewer threads than asked).
static void work(job_t *job, int t, int nt) {
    float acc = 0;
    for (int i = t; i < job->parts; i += nt) {
        float *p = job->base + (size_t)i * job->part;
        if (job->write) {
            for (size_t j = 0; j < job->part; j++) p[j] = 1.0f;
        } else {
            acc += job->fn(p, job->part);
        }
    }
    job->sums[t] = acc;
}

#ifndef _OPENMP
typedef struct { job_t *job; int t, nt; } arg_t;
static void *thread_main(void *p) {
    arg_t *a = (arg_t *)p;
    work(a->job, a->t, a->nt);
    return NULL;
}
#endif

/// One pass over the buffer on `job->parts` threads; returns the sum of what was read.
static float run(job_t *job) {
#ifdef _OPENMP
    #pragma omp parallel num_threads(job->parts)
    work(job, omp_get_thread_num(), omp_get_num_threads());
#else
    pthread_t ids[MAX_THREADS];
    arg_t args[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < job->parts; t++) {
        args[t] = (arg_t){job, t, job->parts};
        if (pthread_create(&ids[t], NULL, thread_main, &args[t]) != 0) break;
        started = t;
    }
    // Parts whose thread did not start are read here, after part 0.
    args[0] = (arg_t){job, 0, job->parts};
    work(job, 0, job->parts);
    for (int t = started + 1; t < job->parts; t++) work(job, t, job->parts);
    for (int t = 1; t <= started; t++) pthread_join(ids[t], NULL);
#endif
    float total = 0;
    for (int t = 0; t < job->parts; t++) total += job->sums[t];
    return total;
}

struct stream_roof_buffer {
    job_t job;
    size_t bytes;
};

stream_roof_buffer *stream_roof_open(size_t bytes, int threads) {
    if (threads < 1 || threads > MAX_THREADS) return NULL;
    const size_t unit = (size_t)threads * PART_ALIGN;
    bytes = bytes < unit ? unit : bytes / unit * unit;
    stream_roof_buffer *b = calloc(1, sizeof *b);  // one per buffer: buffers may be read concurrently
    if (!b) return NULL;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        free(b);
        return NULL;
    }
    const char *name;
    b->bytes = bytes;
    b->job.base = (float *)mem;
    b->job.part = bytes / (size_t)threads / sizeof(float);
    b->job.parts = threads;
    b->job.fn = choose(&name);
    b->job.write = 1;
    (void)run(&b->job);  // fault every page in, on the thread that reads it
    b->job.write = 0;
    volatile float sink = run(&b->job);  // warm-up pass (TLB, thread pool)
    (void)sink;
    return b;
}

size_t stream_roof_buffer_bytes(const stream_roof_buffer *b) { return b ? b->bytes : 0; }

int stream_roof_read(stream_roof_buffer *b, int repeats, double *seconds) {
    if (!b || repeats < 1 || !seconds) return -1;
    // The sums go to a volatile, so no pass can be optimised away.
    volatile float sink = 0;
    for (int r = 0; r < repeats; r++) {
        const double t0 = now_seconds();
        sink = run(&b->job);
        seconds[r] = now_seconds() - t0;
    }
    (void)sink;
    return 0;
}

void stream_roof_close(stream_roof_buffer *b) {
    if (!b) return;
    munmap(b->job.base, b->bytes);
    free(b);
}

int stream_roof_measure(size_t bytes, int threads, int repeats, double *seconds,
                        size_t *bytes_read) {
    if (threads < 1 || threads > MAX_THREADS || repeats < 1 || !seconds) return -1;
    stream_roof_buffer *b = stream_roof_open(bytes, threads);
    if (!b) return -1;
    const int status = stream_roof_read(b, repeats, seconds);
    if (bytes_read) *bytes_read = b->bytes;
    stream_roof_close(b);
    return status;
}
