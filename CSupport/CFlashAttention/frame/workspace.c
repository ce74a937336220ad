// workspace.c — the per-thread workspace of the flash path.
//
// Each thread that runs flash work keeps one 64-byte-aligned buffer, grown to the largest
// per-thread workspace it has needed and freed when the thread exits (a pthread key
// destructor). A call therefore allocates nothing once its threads are warm, the memory stays
// O(threads × tile), and no buffer is ever shared between threads or calls.
#include <pthread.h>
#include <stdlib.h>
#include "internal.h"

typedef struct thread_workspace {
    void *base;
    size_t bytes;
} thread_workspace;

static pthread_key_t workspace_key;
static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;
static int workspace_key_ok;

static void release(void *ptr) {
    thread_workspace *w = ptr;
    free(w->base);
    free(w);
}

static void make_key(void) {
    workspace_key_ok = pthread_key_create(&workspace_key, release) == 0;
}

float *fa_thread_workspace(size_t bytes) {
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
    if (w->bytes < bytes) {
        free(w->base);
        const size_t rounded = (bytes + FA_ALIGN - 1) / FA_ALIGN * FA_ALIGN;
        w->base = aligned_alloc(FA_ALIGN, rounded);
        w->bytes = w->base ? rounded : 0;
    }
    return w->base;
}
