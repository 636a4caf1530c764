/* fuzz_timeline_file.c — the on-disk timeline format (DV365TLF, docs/data.md)
 * through dv365_timeline_reader_open / _next / _seek / _rewind.
 *
 * Input: one flag byte, then the file.  Flag bit 0 recomputes the header,
 * record and index checksums wherever the structure allows, so mutations
 * reach the checks behind them (counts, codes, times, order, index); bit 1
 * reads through a 64-byte buffer instead of 1 MiB (records straddle it).
 * Contract: no crash; after a failed _next the next call fails the same
 * way; rewind then reads the same users again. */
#include "fuzz.h"

#include "datafile.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

static dv365_config *g_cfg;
static dv365_timeline *g_tl;

static void fix_checksums(uint8_t *f, size_t size)
{
    if (size < 64)
        return;
    fuzz_put_u64(f + 56, XXH64(f, 56, 0));
    uint64_t index_off = fuzz_u64(f + 40);
    size_t pos = 64;
    while (pos + 32 <= size && pos + 32 <= index_off && fuzz_u32(f + pos) == 0x52545644u) {
        uint64_t n = fuzz_u64(f + pos + 16);
        if (n > (size - pos - 32) / 52)
            break;
        XXH64_state_t xs;
        XXH64_reset(&xs, 0);
        XXH64_update(&xs, f + pos, 24);
        XXH64_update(&xs, f + pos + 32, (size_t)n * 52);
        fuzz_put_u64(f + pos + 24, XXH64_digest(&xs));
        pos += 32 + (size_t)n * 52;
    }
    if (index_off <= size && size - index_off >= 24) {
        uint64_t n = fuzz_u64(f + index_off + 8);
        if (n <= (size - index_off - 24) / 24) {
            size_t body = 16 + (size_t)n * 24;
            fuzz_put_u64(f + index_off + body, XXH64(f + index_off, body, 0));
        }
    }
}

/* Read users until the end or an error (at most 1000 calls). */
static size_t read_all(dv365_timeline_reader *r, uint64_t *ids, size_t max_ids)
{
    size_t users = 0;
    for (int guard = 0; guard < 1000; guard++) {
        uint64_t uid = 1;
        int done = -1;
        dv365_status st = dv365_timeline_reader_next(r, &uid, g_tl, &done);
        fuzz_check_status(st);
        if (st != DV365_OK) {
            /* the reader stays on the bad record */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", dv365_last_error());
            FUZZ_CHECK(dv365_timeline_reader_next(r, &uid, g_tl, &done) == st);
            FUZZ_CHECK(strcmp(msg, dv365_last_error()) == 0);
            break;
        }
        FUZZ_CHECK(done == 0 || done == 1);
        if (done) {
            FUZZ_CHECK(uid == 0 && dv365_timeline_size(g_tl) == 0);
            FUZZ_CHECK(users == dv365_timeline_reader_count(r));
            break;
        }
        if (users < max_ids)
            ids[users] = uid;
        users++;
        FUZZ_CHECK(users <= dv365_timeline_reader_count(r));
    }
    return users;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_cfg == NULL) {
        size_t len;
        char *yaml = fuzz_read_source("configs/small.yaml", &len);
        FUZZ_CHECK(yaml != NULL);
        FUZZ_CHECK(dv365_config_parse(yaml, len, &g_cfg) == DV365_OK);
        free(yaml);
        FUZZ_CHECK(dv365_timeline_create(g_cfg, &g_tl) == DV365_OK);
    }
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const char *path = fuzz_write_data_file("t.dvt", flags, data + 1, size - 1, fix_checksums);

    dv365_timeline_reader *r = NULL;
    dv365_status st =
        dv_timeline_reader_open_ex(path, g_cfg, (flags & 2) ? 64 : DV_DATA_BUFFER_DEFAULT, &r);
    fuzz_check_status(st);
    if (st != DV365_OK) {
        FUZZ_CHECK(r == NULL);
        return 0;
    }
    uint64_t ids[64];
    size_t users = read_all(r, ids, 64);
    FUZZ_CHECK(dv365_timeline_reader_rewind(r) == DV365_OK);
    FUZZ_CHECK(read_all(r, ids, 0) == users);
    /* seek to the users read (the index is read and checked here) and to one
     * that is not there */
    for (size_t i = 0; i < users && i < 64; i++) {
        st = dv365_timeline_reader_seek(r, ids[i]);
        fuzz_check_status(st);
        if (st != DV365_OK)
            break;
        uint64_t uid = 0;
        int done = -1;
        st = dv365_timeline_reader_next(r, &uid, g_tl, &done);
        fuzz_check_status(st);
        if (st == DV365_OK)
            FUZZ_CHECK(done == 0 && uid == ids[i]);
    }
    /* a user that is not there: seek fails, or (a forged index names it) the
     * record read after the seek fails its check or really is that user */
    const uint64_t absent = UINT64_C(0xfeedfacecafebeef);
    st = dv365_timeline_reader_seek(r, absent);
    fuzz_check_status(st);
    if (st == DV365_OK) {
        uint64_t uid = 0;
        int done = -1;
        st = dv365_timeline_reader_next(r, &uid, g_tl, &done);
        fuzz_check_status(st);
        FUZZ_CHECK(st != DV365_OK || (done == 0 && uid == absent));
    }
    dv365_timeline_reader_free(r);
    return 0;
}
