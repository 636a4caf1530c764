/* test_store.c — the LMDB embedding store: round trips, generations and
 * their atomic switch under concurrent readers, resume, errors. */
#include "testutil.h"

#include "internal.h"
#include "store.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 INT64_C(1750000000)

static char tmpdir[64];
static char pathbuf[256];

static const char *tmp_path(const char *name)
{
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", tmpdir, name);
    return pathbuf;
}

static int setup(void **state)
{
    (void)state;
    return test_make_tmpdir(tmpdir, sizeof tmpdir, "store");
}

static int teardown(void **state)
{
    (void)state;
    return test_remove_tmpdir(tmpdir);
}

/* The blob of (user, tag): K x D values that depend on both, so a blob
 * read back identifies exactly what was written. */
static size_t make_blob(uint64_t user, uint64_t tag, size_t K, size_t D, uint64_t fp,
                        int64_t created, uint8_t *out)
{
    float *U = malloc(K * D * sizeof *U);
    uint64_t s = dv_mix64(user * 1000003u + tag);
    for (size_t i = 0; i < K * D; i++) {
        s = dv_mix64(s + i);
        U[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    size_t n = dv365_blob_size(K, D);
    ASSERT_OK(dv365_blob_encode(U, K, D, fp, created, DV365_Q4_MINMAX, out, n));
    free(U);
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    const size_t K = 58, D = 256, N = 5000; /* 5000 x 7704 B: more than one write batch */
    const size_t bs = dv365_blob_size(K, D);
    assert_int_equal(bs, 7704);
    const uint64_t fp = 0x1234abcdULL;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("rt"), DV365_STORE_NOSYNC, 0, &s));

    uint64_t gen_no;
    size_t count;
    ASSERT_OK(dv365_store_info(s, &gen_no, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen_no, 0);
    assert_int_equal(count, 0);
    uint8_t *buf = malloc(bs), *want = malloc(bs);
    size_t got;
    ASSERT_ERR(dv365_store_get(s, 1, buf, bs, &got), DV365_E_NOT_FOUND, "no committed generation");

    dv365_store_gen *g;
    ASSERT_OK(dv365_store_begin_generation(s, fp, T0, &g));
    /* ids in a scrambled order (not ascending), one user put twice */
    for (size_t i = 0; i < N; i++) {
        uint64_t id = dv_mix64(i) >> 8;
        make_blob(id, i == 17 ? 99 : 0, K, D, fp, T0, want);
        ASSERT_OK(dv365_store_put(g, id, want, bs));
    }
    make_blob(dv_mix64(17) >> 8, 0, K, D, fp, T0, want);
    ASSERT_OK(dv365_store_put(g, dv_mix64(17) >> 8, want, bs)); /* the last put wins */
    /* before the commit, readers see no generation */
    ASSERT_ERR(dv365_store_get(s, dv_mix64(3) >> 8, buf, bs, &got), DV365_E_NOT_FOUND,
               "no committed generation");
    ASSERT_OK(dv365_store_commit_generation(g));
    ASSERT_ERR(dv365_store_put(g, 5, want, bs), DV365_E_STATE, "already committed");
    dv365_store_generation_free(g);

    uint64_t f2;
    int64_t created;
    size_t k2, d2;
    ASSERT_OK(dv365_store_info(s, &gen_no, &f2, &created, &count, &k2, &d2));
    assert_int_equal(gen_no, 1);
    assert_true(f2 == fp);
    assert_int_equal(created, T0);
    assert_int_equal(count, N);
    assert_int_equal(k2, K);
    assert_int_equal(d2, D);

    for (size_t i = 0; i < N; i++) {
        uint64_t id = dv_mix64(i) >> 8;
        make_blob(id, 0, K, D, fp, T0, want);
        ASSERT_OK(dv365_store_get(s, id, buf, bs, &got));
        assert_int_equal(got, bs);
        assert_memory_equal(buf, want, bs);
    }
    /* missing user, small buffer, age */
    uint64_t missing = 12345;
    ASSERT_ERR(dv365_store_get(s, missing, buf, bs, &got), DV365_E_NOT_FOUND,
               "user 12345 is not in generation 1");
    uint64_t id0 = dv_mix64(0) >> 8;
    ASSERT_ERR(dv365_store_get(s, id0, buf, bs - 1, &got), DV365_E_BUFFER_TOO_SMALL, "7704 bytes");
    int64_t age;
    ASSERT_OK(dv365_store_age(s, id0, T0 + 3600, &age));
    assert_int_equal(age, 3600);
    ASSERT_ERR(dv365_store_age(s, id0, -1, &age), DV365_E_TIMESTAMP, "now");
    ASSERT_ERR(dv365_store_get(s, id0, NULL, bs, &got), DV365_E_NULL, "buf");

    /* the zero-copy reader sees the same bytes */
    dv365_store_reader *r;
    ASSERT_OK(dv365_store_reader_create(s, &r));
    const uint8_t *p;
    size_t n;
    ASSERT_ERR(dv365_store_reader_get(r, id0, &p, &n), DV365_E_STATE, "_begin");
    ASSERT_OK(dv365_store_reader_begin(r));
    ASSERT_OK(dv365_store_reader_info(r, &gen_no, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen_no, 1);
    assert_int_equal(count, N);
    make_blob(id0, 0, K, D, fp, T0, want);
    ASSERT_OK(dv365_store_reader_get(r, id0, &p, &n));
    assert_int_equal(n, bs);
    assert_memory_equal(p, want, bs);
    ASSERT_ERR(dv365_store_reader_get(r, missing, &p, &n), DV365_E_NOT_FOUND, "not in generation");
    dv365_store_reader_end(r);
    dv365_store_reader_free(r);
    dv365_store_close(s);

    /* read-only reopen: same data; no writing */
    ASSERT_OK(dv365_store_open(tmp_path("rt"), DV365_STORE_READONLY, 0, &s));
    ASSERT_OK(dv365_store_get(s, id0, buf, bs, &got));
    assert_memory_equal(buf, want, bs);
    ASSERT_ERR(dv365_store_begin_generation(s, fp, T0, &g), DV365_E_STATE, "read-only");
    dv365_store_close(s);
    free(buf);
    free(want);
}

static void test_put_validation(void **state)
{
    (void)state;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("val"), DV365_STORE_NOSYNC, 0, &s));
    dv365_store_gen *g, *g2;
    ASSERT_ERR(dv365_store_begin_generation(s, 7, -5, &g), DV365_E_TIMESTAMP, "created");
    ASSERT_OK(dv365_store_begin_generation(s, 7, T0, &g));
    ASSERT_ERR(dv365_store_begin_generation(s, 7, T0, &g2), DV365_E_STATE, "already open");
    ASSERT_ERR(dv365_store_resume_generation(s, &g2), DV365_E_STATE, "already open");
    uint8_t b[2048], other[2048];
    size_t n = make_blob(1, 0, 4, 16, 7, T0, b);
    ASSERT_OK(dv365_store_put(g, 1, b, n));
    /* a foreign buffer, a damaged blob, another model, another shape */
    uint8_t junk[200] = {1, 2, 3};
    ASSERT_ERR(dv365_store_put(g, 2, junk, sizeof junk), DV365_E_FORMAT, "user 2");
    memcpy(other, b, n);
    other[n - 1] ^= 0x10;
    ASSERT_ERR(dv365_store_put(g, 2, other, n), DV365_E_CHECKSUM, "user 2");
    size_t n2 = make_blob(2, 0, 4, 16, 8, T0, other);
    ASSERT_ERR(dv365_store_put(g, 2, other, n2), DV365_E_MISMATCH, "fingerprint");
    n2 = make_blob(2, 0, 5, 16, 7, T0, other);
    ASSERT_ERR(dv365_store_put(g, 2, other, n2), DV365_E_MISMATCH, "5 x 16");
    ASSERT_ERR(dv365_store_put(g, 2, NULL, n), DV365_E_NULL, "blob");
    /* the generation is still usable */
    n2 = make_blob(2, 0, 4, 16, 7, T0, other);
    ASSERT_OK(dv365_store_put(g, 2, other, n2));
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    size_t count;
    ASSERT_OK(dv365_store_info(s, NULL, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(count, 2);
    dv365_store_close(s);
}

static void test_generations_and_abort(void **state)
{
    (void)state;
    const size_t K = 4, D = 16;
    uint8_t b[1024], out[1024];
    size_t n = dv365_blob_size(K, D), got;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("gens"), DV365_STORE_NOSYNC, 0, &s));
    for (uint64_t gno = 1; gno <= 3; gno++) {
        dv365_store_gen *g;
        ASSERT_OK(dv365_store_begin_generation(s, 100 + gno, T0 + (int64_t)gno, &g));
        uint64_t num;
        ASSERT_OK(dv365_store_generation_info(g, &num, NULL, NULL, NULL));
        assert_int_equal(num, gno);
        /* generation g holds users g .. g+99 */
        for (uint64_t u = gno; u < gno + 100; u++) {
            make_blob(u, gno, K, D, 100 + gno, T0 + (int64_t)gno, b);
            ASSERT_OK(dv365_store_put(g, u, b, n));
        }
        ASSERT_OK(dv365_store_commit_generation(g));
        dv365_store_generation_free(g);
        uint64_t cur, fp;
        size_t count;
        ASSERT_OK(dv365_store_info(s, &cur, &fp, NULL, &count, NULL, NULL));
        assert_int_equal(cur, gno);
        assert_int_equal(fp, 100 + gno);
        assert_int_equal(count, 100);
        /* users of the previous generation are gone, the new ones present */
        ASSERT_ERR(dv365_store_get(s, gno - 1, out, sizeof out, &got), DV365_E_NOT_FOUND,
                   "not in generation");
        make_blob(gno + 99, gno, K, D, 100 + gno, T0 + (int64_t)gno, b);
        ASSERT_OK(dv365_store_get(s, gno + 99, out, sizeof out, &got));
        assert_memory_equal(out, b, n);
    }

    /* An aborted generation leaves the current one untouched. */
    dv365_store_gen *g;
    ASSERT_OK(dv365_store_begin_generation(s, 999, T0, &g));
    make_blob(5, 77, K, D, 999, T0, b);
    ASSERT_OK(dv365_store_put(g, 5, b, n));
    ASSERT_OK(dv365_store_checkpoint(g, "x", 1));
    ASSERT_OK(dv365_store_abort_generation(g));
    ASSERT_ERR(dv365_store_abort_generation(g), DV365_E_STATE, "already");
    dv365_store_generation_free(g);
    ASSERT_ERR(dv365_store_resume_generation(s, &g), DV365_E_NOT_FOUND, "no pending");
    uint64_t cur;
    ASSERT_OK(dv365_store_info(s, &cur, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(cur, 3);
    make_blob(5, 3, K, D, 103, T0 + 3, b);
    ASSERT_OK(dv365_store_get(s, 5, out, sizeof out, &got));
    assert_memory_equal(out, b, n);

    /* An empty generation is allowed. */
    ASSERT_OK(dv365_store_begin_generation(s, 0, T0, &g));
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    size_t count, k;
    ASSERT_OK(dv365_store_info(s, &cur, NULL, NULL, &count, &k, NULL));
    assert_int_equal(cur, 4);
    assert_int_equal(count, 0);
    assert_int_equal(k, 0);
    ASSERT_ERR(dv365_store_get(s, 5, out, sizeof out, &got), DV365_E_NOT_FOUND, "generation 4");
    dv365_store_close(s);

    /* Only one slot holds data once a switch is done: the old one is emptied. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi d0, d1;
    MDB_stat s0, s1;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    assert_int_equal(mdb_env_open(env, tmp_path("gens"), MDB_RDONLY, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, DV_STORE_DB_SLOT0, 0, &d0), 0);
    assert_int_equal(mdb_dbi_open(txn, DV_STORE_DB_SLOT1, 0, &d1), 0);
    mdb_stat(txn, d0, &s0);
    mdb_stat(txn, d1, &s1);
    assert_int_equal(s0.ms_entries + s1.ms_entries, 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void test_checkpoint_resume(void **state)
{
    (void)state;
    const size_t K = 4, D = 16, n = dv365_blob_size(K, D);
    uint8_t b[1024], out[1024];
    size_t got;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("resume"), DV365_STORE_NOSYNC, 0, &s));
    dv365_store_gen *g;
    ASSERT_OK(dv365_store_begin_generation(s, 5, T0, &g));
    char ck[32];
    ASSERT_ERR(dv365_store_generation_checkpoint(g, ck, sizeof ck, &got), DV365_E_NOT_FOUND,
               "no checkpoint");
    for (uint64_t u = 0; u < 100; u++) {
        make_blob(u, 0, K, D, 5, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_OK(dv365_store_checkpoint(g, "first-100", 9));
    for (uint64_t u = 100; u < 150; u++) { /* buffered, then lost */
        make_blob(u, 0, K, D, 5, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_ERR(dv365_store_checkpoint(g, NULL, 3), DV365_E_NULL, "data");
    dv365_store_generation_free(g); /* the writer is "interrupted" */
    /* Nothing of it is visible to readers. */
    ASSERT_ERR(dv365_store_get(s, 0, out, sizeof out, &got), DV365_E_NOT_FOUND, "no committed");
    dv365_store_close(s);

    ASSERT_OK(dv365_store_open(tmp_path("resume"), DV365_STORE_NOSYNC, 0, &s));
    ASSERT_OK(dv365_store_resume_generation(s, &g));
    size_t stored;
    uint64_t num, fp;
    ASSERT_OK(dv365_store_generation_info(g, &num, &fp, NULL, &stored));
    assert_int_equal(num, 1);
    assert_int_equal(fp, 5);
    assert_int_equal(stored, 100);
    ASSERT_ERR(dv365_store_generation_checkpoint(g, ck, 4, &got), DV365_E_BUFFER_TOO_SMALL, "9");
    ASSERT_OK(dv365_store_generation_checkpoint(g, ck, sizeof ck, &got));
    assert_int_equal(got, 9);
    assert_memory_equal(ck, "first-100", 9);
    for (uint64_t u = 100; u < 200; u++) {
        make_blob(u, 0, K, D, 5, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    size_t count;
    ASSERT_OK(dv365_store_info(s, &num, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(num, 1);
    assert_int_equal(count, 200);
    for (uint64_t u = 0; u < 200; u += 7) {
        make_blob(u, 0, K, D, 5, T0, b);
        ASSERT_OK(dv365_store_get(s, u, out, sizeof out, &got));
        assert_memory_equal(out, b, n);
    }
    /* A new begin discards an abandoned pending generation. */
    ASSERT_OK(dv365_store_begin_generation(s, 6, T0, &g));
    make_blob(1, 1, K, D, 6, T0, b);
    ASSERT_OK(dv365_store_put(g, 1, b, n));
    ASSERT_OK(dv365_store_checkpoint(g, "", 0));
    dv365_store_generation_free(g);
    ASSERT_OK(dv365_store_begin_generation(s, 6, T0, &g));
    ASSERT_OK(dv365_store_generation_info(g, &num, NULL, NULL, &stored));
    assert_int_equal(num, 2);
    assert_int_equal(stored, 0);
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    ASSERT_ERR(dv365_store_get(s, 1, out, sizeof out, &got), DV365_E_NOT_FOUND, "generation 2");
    dv365_store_close(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    dv365_store *s, *s2;
    ASSERT_ERR(dv365_store_open(tmp_path("missing"), DV365_STORE_READONLY, 0, &s), DV365_E_IO,
               "missing");
    struct stat st;
    assert_int_equal(stat(tmp_path("missing"), &st), -1); /* nothing created */
    mkdir(tmp_path("emptydir"), 0775);
    ASSERT_ERR(dv365_store_open(tmp_path("emptydir"), DV365_STORE_READONLY, 0, &s), DV365_E_IO,
               "no store there");
    FILE *f = fopen(tmp_path("afile"), "w");
    fputs("x", f);
    fclose(f);
    ASSERT_ERR(dv365_store_open(tmp_path("afile"), 0, 0, &s), DV365_E_IO, "not a directory");
    ASSERT_ERR(dv365_store_open(tmp_path("x"), 8, 0, &s), DV365_E_INVALID, "flags");
    ASSERT_ERR(dv365_store_open(tmp_path("x"), 0, 4096, &s), DV365_E_INVALID, "map_size");
    ASSERT_ERR(dv365_store_open(NULL, 0, 0, &s), DV365_E_NULL, "path");
    ASSERT_ERR(dv365_store_open("", 0, 0, &s), DV365_E_INVALID, "empty");

    ASSERT_OK(dv365_store_open(tmp_path("twice"), DV365_STORE_NOSYNC, 0, &s));
    ASSERT_ERR(dv365_store_open(tmp_path("twice"), DV365_STORE_READONLY, 0, &s2), DV365_E_STATE,
               "already open");
    dv365_store_close(s);
    ASSERT_OK(dv365_store_open(tmp_path("twice"), DV365_STORE_READONLY, 0, &s2));
    dv365_store_close(s2);

    /* An LMDB environment with other data is not taken over. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mkdir(tmp_path("foreign"), 0775);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, tmp_path("foreign"), 0, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {3, "abc"}, v = {3, "def"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ASSERT_ERR(dv365_store_open(tmp_path("foreign"), 0, 0, &s), DV365_E_FORMAT, "not a dv365 store");
    ASSERT_ERR(dv365_store_open(tmp_path("foreign"), DV365_STORE_READONLY, 0, &s), DV365_E_FORMAT,
               "not a dv365 store");
}

/* Open the store's LMDB environment directly (the store must be closed). */
static void raw_open(const char *path, MDB_env **env, MDB_txn **txn, MDB_dbi *meta)
{
    assert_int_equal(mdb_env_create(env), 0);
    mdb_env_set_maxdbs(*env, 4);
    assert_int_equal(mdb_env_open(*env, path, 0, 0664), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
    assert_int_equal(mdb_dbi_open(*txn, DV_STORE_DB_META, 0, meta), 0);
}

static void test_corrupt_values(void **state)
{
    (void)state;
    const size_t K = 4, D = 16, n = dv365_blob_size(K, D);
    uint8_t b[1024], out[1024];
    size_t got;
    dv365_store *s;
    dv365_store_gen *g;
    ASSERT_OK(dv365_store_open(tmp_path("corrupt"), DV365_STORE_NOSYNC, 0, &s));
    ASSERT_OK(dv365_store_begin_generation(s, 9, T0, &g));
    for (uint64_t u = 1; u <= 3; u++) {
        make_blob(u, 0, K, D, 9, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    dv365_store_close(s);

    /* Flip a bit of user 2's value and truncate user 3's, behind the
     * store's back. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, slot;
    raw_open(tmp_path("corrupt"), &env, &txn, &meta);
    assert_int_equal(mdb_dbi_open(txn, DV_STORE_DB_SLOT0, 0, &slot), 0);
    unsigned char key[8];
    MDB_val k = {8, key}, v;
    dv_store_key(2, key);
    assert_int_equal(mdb_get(txn, slot, &k, &v), 0);
    memcpy(b, v.mv_data, v.mv_size);
    b[v.mv_size - 5] ^= 4;
    v.mv_data = b;
    assert_int_equal(mdb_put(txn, slot, &k, &v, 0), 0);
    dv_store_key(3, key);
    assert_int_equal(mdb_get(txn, slot, &k, &v), 0);
    v.mv_size -= 10;
    memcpy(b, v.mv_data, v.mv_size);
    v.mv_data = b;
    assert_int_equal(mdb_put(txn, slot, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    ASSERT_OK(dv365_store_open(tmp_path("corrupt"), DV365_STORE_READONLY, 0, &s));
    ASSERT_OK(dv365_store_get(s, 1, out, sizeof out, &got));
    ASSERT_ERR(dv365_store_get(s, 2, out, sizeof out, &got), DV365_E_CHECKSUM, "user 2");
    ASSERT_ERR(dv365_store_get(s, 3, out, sizeof out, &got), DV365_E_FORMAT, "user 3");
    int64_t age;
    ASSERT_ERR(dv365_store_age(s, 2, T0, &age), DV365_E_CHECKSUM, "user 2");
    dv365_store_close(s);

    /* A damaged "current" record: every read says so, nothing crashes. */
    raw_open(tmp_path("corrupt"), &env, &txn, &meta);
    k = (MDB_val){7, "current"};
    v = (MDB_val){5, "short"};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ASSERT_OK(dv365_store_open(tmp_path("corrupt"), DV365_STORE_NOSYNC, 0, &s));
    ASSERT_ERR(dv365_store_get(s, 1, out, sizeof out, &got), DV365_E_FORMAT, "'current'");
    ASSERT_ERR(dv365_store_info(s, NULL, NULL, NULL, NULL, NULL, NULL), DV365_E_FORMAT, "current");
    ASSERT_ERR(dv365_store_begin_generation(s, 9, T0, &g), DV365_E_FORMAT, "current");
    dv365_store_close(s);

    /* Another format version. */
    raw_open(tmp_path("corrupt"), &env, &txn, &meta);
    unsigned char fmt[16] = "DV365STO";
    fmt[8] = 2;
    k = (MDB_val){6, "format"};
    v = (MDB_val){16, fmt};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ASSERT_ERR(dv365_store_open(tmp_path("corrupt"), 0, 0, &s), DV365_E_VERSION, "version 2");
}

static void test_map_full(void **state)
{
    (void)state;
    const size_t K = 58, D = 256, n = dv365_blob_size(K, D);
    uint8_t *b = malloc(n);
    dv365_store *s;
    dv365_store_gen *g;
    ASSERT_OK(dv365_store_open(tmp_path("full"), DV365_STORE_NOSYNC, (size_t)1 << 20, &s));
    ASSERT_OK(dv365_store_begin_generation(s, 3, T0, &g));
    for (uint64_t u = 0; u < 300; u++) { /* 2.3 MB into a 1 MiB map */
        make_blob(u, 0, K, D, 3, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_ERR(dv365_store_commit_generation(g), DV365_E_NOMEM, "map full");
    ASSERT_ERR(dv365_store_put(g, 1, b, n), DV365_E_STATE, "failed");
    ASSERT_ERR(dv365_store_commit_generation(g), DV365_E_STATE, "failed");
    dv365_store_generation_free(g);
    uint64_t cur;
    ASSERT_OK(dv365_store_info(s, &cur, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(cur, 0);
    dv365_store_close(s);

    /* Reopened with a larger map, the pending generation resumes. */
    ASSERT_OK(dv365_store_open(tmp_path("full"), DV365_STORE_NOSYNC, (size_t)16 << 20, &s));
    ASSERT_OK(dv365_store_resume_generation(s, &g));
    for (uint64_t u = 0; u < 300; u++) {
        make_blob(u, 0, K, D, 3, T0, b);
        ASSERT_OK(dv365_store_put(g, u, b, n));
    }
    ASSERT_OK(dv365_store_commit_generation(g));
    dv365_store_generation_free(g);
    size_t count;
    ASSERT_OK(dv365_store_info(s, &cur, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(cur, 1);
    assert_int_equal(count, 300);
    dv365_store_close(s);
    free(b);
}

/* --- concurrent readers during refreshes --------------------------------- */

#define CC_GENS 6
#define CC_USERS 1500
#define CC_READERS 4
#define CC_K 4
#define CC_D 16

typedef struct cc_shared {
    dv365_store *s;
    size_t blob_size;
    uint8_t *blobs; /* [CC_GENS][CC_USERS][blob_size]: what generation g holds */
    atomic_int done;
    atomic_ulong seen[CC_READERS]; /* highest generation each reader saw */
} cc_shared;

typedef struct cc_reader {
    cc_shared *sh;
    int id;
    size_t reads, snapshot_reads;
    unsigned long gens_seen_mask;
    char error[256];
} cc_reader;

static uint64_t cc_fp(uint64_t gno) { return 0xF00D0000ULL + gno; }
static int64_t cc_created(uint64_t gno) { return T0 + 3600 * (int64_t)gno; }

static void *cc_read_loop(void *arg)
{
    cc_reader *r = arg;
    cc_shared *sh = r->sh;
    dv365_store_reader *h;
    uint8_t buf[1024];
    uint64_t rnd = 77 + (uint64_t)r->id, last_gen = 0;
    if (dv365_store_reader_create(sh->s, &h) != DV365_OK) {
        snprintf(r->error, sizeof r->error, "reader_create: %s", dv365_last_error());
        return NULL;
    }
    while (!atomic_load(&sh->done) && !r->error[0]) {
        /* (a) a snapshot: every blob belongs to the generation it reports */
        uint64_t gno, fp;
        int64_t created;
        size_t count;
        if (dv365_store_reader_begin(h) != DV365_OK ||
            dv365_store_reader_info(h, &gno, &fp, &created, &count, NULL, NULL) != DV365_OK) {
            snprintf(r->error, sizeof r->error, "begin/info: %s", dv365_last_error());
            break;
        }
        if (gno != 0) {
            if (gno > CC_GENS || fp != cc_fp(gno) || created != cc_created(gno) ||
                count != CC_USERS || gno < last_gen) {
                snprintf(r->error, sizeof r->error, "snapshot gen %llu fp %llx count %zu",
                         (unsigned long long)gno, (unsigned long long)fp, count);
                break;
            }
            last_gen = gno;
            r->gens_seen_mask |= 1ul << gno;
            atomic_store(&sh->seen[r->id], (unsigned long)gno);
            for (int i = 0; i < 8; i++) {
                rnd = dv_mix64(rnd);
                uint64_t u = rnd % CC_USERS;
                const uint8_t *p;
                size_t n;
                uint64_t bfp;
                int64_t bcr;
                if (dv365_store_reader_get(h, u, &p, &n) != DV365_OK ||
                    dv365_blob_inspect(p, n, &bfp, &bcr, NULL, NULL) != DV365_OK) {
                    snprintf(r->error, sizeof r->error, "reader_get %llu: %s",
                             (unsigned long long)u, dv365_last_error());
                    break;
                }
                const uint8_t *want =
                    sh->blobs + ((gno - 1) * CC_USERS + u) * sh->blob_size;
                if (bfp != fp || bcr != created || n != sh->blob_size ||
                    memcmp(p, want, n) != 0) {
                    snprintf(r->error, sizeof r->error,
                             "user %llu in snapshot of gen %llu holds another blob",
                             (unsigned long long)u, (unsigned long long)gno);
                    break;
                }
                r->snapshot_reads++;
            }
        }
        dv365_store_reader_end(h);

        /* (b) a plain copying get: a complete blob of some generation */
        rnd = dv_mix64(rnd);
        uint64_t u = rnd % CC_USERS;
        size_t n;
        dv365_status st = dv365_store_get(sh->s, u, buf, sizeof buf, &n);
        if (st == DV365_E_NOT_FOUND && gno == 0)
            continue;
        uint64_t bfp;
        if (st != DV365_OK || dv365_blob_inspect(buf, n, &bfp, NULL, NULL, NULL) != DV365_OK) {
            snprintf(r->error, sizeof r->error, "get %llu: %s", (unsigned long long)u,
                     dv365_last_error());
            break;
        }
        uint64_t g2 = bfp - cc_fp(0);
        if (g2 < 1 || g2 > CC_GENS || g2 < gno ||
            memcmp(buf, sh->blobs + ((g2 - 1) * CC_USERS + u) * sh->blob_size, n) != 0) {
            snprintf(r->error, sizeof r->error, "get %llu: blob of no generation (fp %llx)",
                     (unsigned long long)u, (unsigned long long)bfp);
            break;
        }
        r->reads++;
    }
    dv365_store_reader_free(h);
    return NULL;
}

static void test_atomic_switch_concurrent_readers(void **state)
{
    (void)state;
    cc_shared sh = {0};
    sh.blob_size = dv365_blob_size(CC_K, CC_D);
    sh.blobs = malloc((size_t)CC_GENS * CC_USERS * sh.blob_size);
    for (uint64_t g = 1; g <= CC_GENS; g++)
        for (uint64_t u = 0; u < CC_USERS; u++)
            make_blob(u, g, CC_K, CC_D, cc_fp(g), cc_created(g),
                      sh.blobs + ((g - 1) * CC_USERS + u) * sh.blob_size);
    ASSERT_OK(dv365_store_open(tmp_path("cc"), DV365_STORE_NOSYNC, 0, &sh.s));

    pthread_t th[CC_READERS];
    cc_reader rd[CC_READERS];
    for (int i = 0; i < CC_READERS; i++) {
        rd[i] = (cc_reader){.sh = &sh, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, cc_read_loop, &rd[i]), 0);
    }
    for (uint64_t g = 1; g <= CC_GENS; g++) {
        dv365_store_gen *gen;
        ASSERT_OK(dv365_store_begin_generation(sh.s, cc_fp(g), cc_created(g), &gen));
        /* many small write transactions, so readers run between them */
        for (uint64_t u = 0; u < CC_USERS; u++) {
            uint64_t uu = (u * 7919) % CC_USERS; /* not in key order */
            ASSERT_OK(dv365_store_put(gen, uu, sh.blobs + ((g - 1) * CC_USERS + uu) * sh.blob_size,
                                      sh.blob_size));
            if (u % 100 == 99)
                ASSERT_OK(dv365_store_checkpoint(gen, &u, sizeof u));
        }
        ASSERT_OK(dv365_store_commit_generation(gen));
        dv365_store_generation_free(gen);
        /* Wait until every reader has read this generation (or failed), so
         * each one reads through every switch. */
        for (int i = 0; i < CC_READERS; i++)
            while (atomic_load(&sh.seen[i]) < g && !rd[i].error[0])
                sched_yield();
    }
    atomic_store(&sh.done, 1);
    for (int i = 0; i < CC_READERS; i++) {
        pthread_join(th[i], NULL);
        if (rd[i].error[0])
            fail_msg("reader %d: %s", i, rd[i].error);
        assert_true(rd[i].reads > 0);
        assert_true(rd[i].snapshot_reads > 0);
        for (uint64_t g = 1; g <= CC_GENS; g++)
            assert_true(rd[i].gens_seen_mask & (1ul << g));
    }
    dv365_store_close(sh.s);
    free(sh.blobs);
}

static void test_null_handles(void **state)
{
    (void)state;
    size_t n;
    uint8_t b[8];
    const uint8_t *p;
    dv365_store_gen *g;
    ASSERT_ERR(dv365_store_get(NULL, 1, b, 8, &n), DV365_E_NULL, "'s'");
    ASSERT_ERR(dv365_store_info(NULL, NULL, NULL, NULL, NULL, NULL, NULL), DV365_E_NULL, "'s'");
    ASSERT_ERR(dv365_store_reader_get(NULL, 1, &p, &n), DV365_E_NULL, "'r'");
    ASSERT_ERR(dv365_store_begin_generation(NULL, 0, T0, &g), DV365_E_NULL, "'s'");
    ASSERT_ERR(dv365_store_put(NULL, 1, b, 8), DV365_E_NULL, "'g'");
    ASSERT_ERR(dv365_store_commit_generation(NULL), DV365_E_NULL, "'g'");
    dv365_store_close(NULL);
    dv365_store_reader_free(NULL);
    dv365_store_generation_free(NULL);
    dv365_store_reader_end(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_put_validation),
        cmocka_unit_test(test_generations_and_abort),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_corrupt_values),
        cmocka_unit_test(test_map_full),
        cmocka_unit_test(test_atomic_switch_concurrent_readers),
        cmocka_unit_test(test_null_handles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
