/* test_core.c — version, status strings, last-error, allocator, workspace. */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(dv365_version_number(), DV365_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", DV365_VERSION_MAJOR, DV365_VERSION_MINOR,
             DV365_VERSION_PATCH);
    assert_string_equal(dv365_version_string(), expect);
}

static void test_status_strings_pinned(void **state)
{
    (void)state;
    /* The numeric values are ABI: they must never change. */
    assert_int_equal(DV365_OK, 0);
    assert_int_equal(DV365_E_NULL, -1);
    assert_int_equal(DV365_E_INVALID, -2);
    assert_int_equal(DV365_E_NONFINITE, -3);
    assert_int_equal(DV365_E_NOMEM, -4);
    assert_int_equal(DV365_E_IO, -5);
    assert_int_equal(DV365_E_PARSE, -6);
    assert_int_equal(DV365_E_CONFIG, -7);
    assert_int_equal(DV365_E_NOT_FOUND, -8);
    assert_int_equal(DV365_E_FORMAT, -9);
    assert_int_equal(DV365_E_CHECKSUM, -10);
    assert_int_equal(DV365_E_VERSION, -11);
    assert_int_equal(DV365_E_MISMATCH, -12);
    assert_int_equal(DV365_E_TIMESTAMP, -13);
    assert_int_equal(DV365_E_BUFFER_TOO_SMALL, -14);
    assert_int_equal(DV365_E_THREAD, -15);
    assert_int_equal(DV365_E_STATE, -16);
    assert_int_equal(DV365_E_INTERNAL, -99);
    for (int s = -16; s <= 0; s++)
        assert_string_not_equal(dv365_status_string((dv365_status)s), "unknown status");
    assert_string_equal(dv365_status_string((dv365_status)-50), "unknown status");
}

static void counting_free_fwd(void *o, void *p) { (void)o; free(p); }

static void test_last_error(void **state)
{
    (void)state;
    ASSERT_ERR(dv365_workspace_create(NULL), DV365_E_NULL, "'out' is NULL");
    ASSERT_ERR(dv365_set_allocator(NULL, counting_free_fwd, NULL), DV365_E_INVALID,
               "both");
}

static size_t g_live_blocks, g_allocs;
static int g_fail_at; /* fail the n-th allocation (1-based); 0 = never */
static void *counting_alloc(void *opaque, size_t size)
{
    (void)opaque;
    if (g_fail_at && ++g_allocs == (size_t)g_fail_at)
        return NULL;
    g_live_blocks++;
    return malloc(size);
}
static void counting_free(void *opaque, void *p)
{
    assert_ptr_equal(opaque, &g_live_blocks);
    g_live_blocks--;
    free(p);
}

static void test_allocator_redirect(void **state)
{
    (void)state;
    dv365_workspace *ws = NULL;
    ASSERT_OK(dv365_set_allocator(counting_alloc, counting_free, &g_live_blocks));
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(dv365_workspace_reserve(ws, 1 << 20));
    assert_true(dv365_workspace_capacity(ws) >= (1 << 20));
    assert_int_equal(g_live_blocks, 2);
    /* Blocks remember their allocator: freeing after a reset still balances. */
    ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
    dv365_workspace_free(ws);
    assert_int_equal(g_live_blocks, 0);

    /* A failing allocator gives DV365_E_NOMEM and a usable handle. */
    ASSERT_OK(dv365_workspace_create(&ws));
    g_allocs = 0;
    g_fail_at = 1;
    ASSERT_OK(dv365_set_allocator(counting_alloc, counting_free, &g_live_blocks));
    ASSERT_ERR(dv365_workspace_reserve(ws, 4096), DV365_E_NOMEM, "4096");
    g_fail_at = 0;
    ASSERT_OK(dv365_workspace_reserve(ws, 4096));
    ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
    dv365_workspace_free(ws);
    assert_int_equal(g_live_blocks, 0);
}

static void test_alignment_and_grow(void **state)
{
    (void)state;
    void *p = NULL;
    assert_true(dv_grow(&p, 0, 100));
    assert_true(((uintptr_t)p & 63) == 0);
    memset(p, 7, 100);
    assert_true(dv_grow(&p, 100, 1000));
    assert_int_equal(((unsigned char *)p)[99], 7);
    dv_free(p);
    assert_null(dv_calloc(SIZE_MAX / 2, 4)); /* overflow is a NULL, not a crash */
}

static void test_rng_reproducible(void **state)
{
    (void)state;
    dv_rng a, b;
    dv_rng_seed(&a, 42);
    dv_rng_seed(&b, 42);
    double sum = 0, sq = 0;
    for (int i = 0; i < 20000; i++) {
        assert_true(dv_rng_next(&a) == dv_rng_next(&b));
        double z = dv_rng_normal(&a);
        dv_rng_normal(&b);
        sum += z;
        sq += z * z;
    }
    assert_true(fabs(sum / 20000) < 0.05);
    assert_true(fabs(sq / 20000 - 1.0) < 0.05);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_status_strings_pinned),
        cmocka_unit_test(test_last_error),
        cmocka_unit_test(test_allocator_redirect),
        cmocka_unit_test(test_alignment_and_grow),
        cmocka_unit_test(test_rng_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
