// replay_corpus.c — runs fuzz inputs through the C API harness (Tests/Fuzz/fuzz_attention.c)
// without libFuzzer, for targets that have none: `make test-arm64` cross-compiles both for
// aarch64 and runs them under qemu. Every argument is an input file or a folder of them; the
// harness aborts on the first finding (a wrong result, a write outside the outputs, a status
// that disagrees with the reference), so a zero exit means every input passed. An argument
// `random:N:SEED` adds N inputs of random bytes (1 to 512 of them), from a fixed generator.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long replayed;

static void replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay_corpus: cannot open %s\n", path);
        exit(2);
    }
    uint8_t buf[1 << 16];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *copy = malloc(n ? n : 1);  // exactly as long as the input, as libFuzzer gives it
    memcpy(copy, buf, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    replayed++;
}

static void replay_random(long count, uint64_t seed) {
    uint8_t buf[512];
    for (long i = 0; i < count; i++) {
        const size_t n = 1 + (size_t)(seed % sizeof buf);
        for (size_t j = 0; j < n; j++) {  // splitmix64
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            buf[j] = (uint8_t)(z ^ (z >> 31));
        }
        uint8_t *copy = malloc(n);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        replayed++;
    }
}

static void replay(const char *path) {
    long count;
    unsigned long long seed;
    if (sscanf(path, "random:%ld:%llu", &count, &seed) == 2) {
        replay_random(count, seed);
        return;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay_corpus: no such file or folder: %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        replay(child);
    }
    if (d) closedir(d);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) replay(argv[i]);
    printf("replay_corpus: %ld inputs, no finding\n", replayed);
    return replayed > 0 ? 0 : 1;
}
