/* fuzz_example_file.c — the on-disk example format (DV365EXF, docs/data.md)
 * through dv365_example_reader_open / _next / _seek.
 *
 * Input: one flag byte, then the file.  Flag bit 0 recomputes the header
 * and chunk checksums wherever the structure allows, so mutations reach the
 * value checks behind them.  Contract: no crash; every example read has a
 * valid label time and finite floats; after a failed _next the next call
 * fails the same way; seek(i) then _next reads example i again. */
#include "fuzz.h"

#include "datafile.h"

#include <math.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

static void fix_checksums(uint8_t *f, size_t size)
{
    if (size < 64)
        return;
    fuzz_put_u64(f + 56, XXH64(f, 56, 0));
    uint64_t n_dense = fuzz_u32(f + 16), n_tasks = fuzz_u32(f + 20);
    uint64_t row = 40 + 4 * (n_dense + n_tasks);
    size_t pos = 64;
    while (pos + 16 <= size && fuzz_u32(f + pos) == 0x43455644u) {
        uint64_t rows = fuzz_u32(f + pos + 4);
        if (rows > (size - pos - 16) / row)
            break;
        XXH64_state_t xs;
        XXH64_reset(&xs, 0);
        XXH64_update(&xs, f + pos, 8);
        XXH64_update(&xs, f + pos + 16, (size_t)(rows * row));
        fuzz_put_u64(f + pos + 8, XXH64_digest(&xs));
        pos += 16 + (size_t)(rows * row);
    }
}

typedef struct example {
    uint64_t user, media, author, topic;
    int64_t time;
} example;

static void check_example(const example *e, const float *dense, size_t nd, const float *labels,
                          size_t nt)
{
    FUZZ_CHECK(e->time >= 0 && e->time <= DV365_TIME_MAX);
    for (size_t i = 0; i < nd; i++)
        FUZZ_CHECK(isfinite(dense[i]));
    for (size_t i = 0; i < nt; i++)
        FUZZ_CHECK(isfinite(labels[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const char *path = fuzz_write_data_file("e.dve", flags, data + 1, size - 1, fix_checksums);

    dv365_example_reader *r = NULL;
    dv365_status st = dv365_example_reader_open(path, &r);
    fuzz_check_status(st);
    if (st != DV365_OK) {
        FUZZ_CHECK(r == NULL);
        return 0;
    }
    size_t count = dv365_example_reader_count(r);
    size_t nd = dv365_example_reader_num_dense(r), nt = dv365_example_reader_num_tasks(r);
    FUZZ_CHECK(nd <= 65536 && nt >= 1 && nt <= 65536);
    float *dense = malloc((nd + 1) * sizeof(float)), *labels = malloc(nt * sizeof(float));
    FUZZ_CHECK(dense && labels);
    example e, first = {0, 0, 0, 0, -1};
    size_t got = 0;
    for (int guard = 0; guard < 5000; guard++) {
        int done = -1;
        st = dv365_example_reader_next(r, &e.user, &e.time, &e.media, &e.author, &e.topic,
                                       dense, labels, &done);
        fuzz_check_status(st);
        if (st != DV365_OK) {
            FUZZ_CHECK(dv365_example_reader_next(r, &e.user, &e.time, &e.media, &e.author,
                                                 &e.topic, dense, labels, &done) == st);
            break;
        }
        if (done) {
            FUZZ_CHECK(got == count);
            break;
        }
        check_example(&e, dense, nd, labels, nt);
        if (got == 0)
            first = e;
        got++;
        FUZZ_CHECK(got <= count);
    }
    if (got > 0) {
        FUZZ_CHECK(dv365_example_reader_seek(r, 0) == DV365_OK);
        int done = -1;
        st = dv365_example_reader_next(r, &e.user, &e.time, &e.media, &e.author, &e.topic, dense,
                                       labels, &done);
        FUZZ_CHECK(st == DV365_OK && done == 0);
        FUZZ_CHECK(memcmp(&e, &first, sizeof e) == 0);
    }
    FUZZ_CHECK(dv365_example_reader_seek(r, count) == DV365_OK);
    FUZZ_CHECK(dv365_example_reader_seek(r, count + 1) != DV365_OK);
    free(dense);
    free(labels);
    dv365_example_reader_free(r);
    return 0;
}
