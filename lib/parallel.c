/* parallel.c — see parallel.h. */
#include "parallel.h"

#include <pthread.h>

typedef struct chunk_job {
    dv_range_fn fn;
    void *ctx;
    size_t begin, end;
    int chunk;
} chunk_job;

static void *run_chunk(void *arg)
{
    chunk_job *j = arg;
    j->fn(j->ctx, j->begin, j->end, j->chunk);
    return NULL;
}

void dv_parallel_for(int nthreads, size_t n, dv_range_fn fn, void *ctx)
{
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > DV_MAX_CHUNKS)
        nthreads = DV_MAX_CHUNKS;
    if ((size_t)nthreads > n)
        nthreads = n > 0 ? (int)n : 1;
    chunk_job jobs[DV_MAX_CHUNKS];
    pthread_t tids[DV_MAX_CHUNKS];
    bool started[DV_MAX_CHUNKS];
    for (int c = 0; c < nthreads; c++) {
        jobs[c] = (chunk_job){.fn = fn, .ctx = ctx, .chunk = c};
        dv_chunk(n, nthreads, c, &jobs[c].begin, &jobs[c].end);
        started[c] = c > 0 && pthread_create(&tids[c], NULL, run_chunk, &jobs[c]) == 0;
    }
    run_chunk(&jobs[0]);
    for (int c = 1; c < nthreads; c++) {
        if (started[c])
            pthread_join(tids[c], NULL);
        else
            run_chunk(&jobs[c]);
    }
}
