// workspace.c — the per-thread workspace of the flash path.
//
// Each thread that runs flash work keeps 64-byte-aligned buffers, one per use (FA_BUFFER_*),
// each grown to the largest size it has needed and freed when the thread exits (a pthread
// key destructor). A call therefore allocates nothing once its threads are warm, the memory
// stays O(threads × tile) (plus the split-KV partial states of the calling thread), and no
// buffer is ever shared between threads or calls.
#include <pthread.h>
#include <stdlib.h>
#include "internal.h"

typedef struct thread_workspace {
    void *base[FA_BUFFER_COUNT];
    size_t bytes[FA_BUFFER_COUNT];
} thread_workspace;

static pthread_key_t workspace_key;
static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;
static int workspace_key_ok;

static void release(void *ptr) {
    thread_workspace *w = ptr;
    for (int i = 0; i < FA_BUFFER_COUNT; i++) free(w->base[i]);
    free(w);
}

static void make_key(void) {
    workspace_key_ok = pthread_key_create(&workspace_key, release) == 0;
}

float *fa_thread_buffer(fa_buffer use, size_t bytes) {
    pthread_once(&workspace_once, make_key);
    if (!workspace_key_ok) return NULL;
    thread_workspace *w = pthread_getspecific(workspace_key);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w || pthread_setspecific(workspace_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->bytes[use] < bytes) {
        free(w->base[use]);
        const size_t rounded = (bytes + FA_ALIGN - 1) / FA_ALIGN * FA_ALIGN;
        w->base[use] = aligned_alloc(FA_ALIGN, rounded);
        w->bytes[use] = w->base[use] ? rounded : 0;
    }
    return w->base[use];
}

float *fa_thread_workspace(size_t bytes) { return fa_thread_buffer(FA_BUFFER_TILES, bytes); }
