/* testutil.h — small helpers shared by the cmocka tests. */
#ifndef DV365_TESTUTIL_H
#define DV365_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dv365.h"

/* Assert a call returns DV365_OK, printing the library message if not. */
#define ASSERT_OK(call)                                                              \
    do {                                                                             \
        dv365_status st_ = (call);                                                   \
        if (st_ != DV365_OK)                                                         \
            fail_msg("%s -> %d (%s): %s", #call, (int)st_, dv365_status_string(st_), \
                     dv365_last_error());                                            \
    } while (0)

/* Assert a call fails with code and that the message contains needle. */
#define ASSERT_ERR(call, code, needle)                                               \
    do {                                                                             \
        dv365_status st_ = (call);                                                   \
        if (st_ != (code))                                                           \
            fail_msg("%s -> %d, expected %d; message: %s", #call, (int)st_, (int)(code), \
                     dv365_last_error());                                            \
        test_assert_message_contains(needle);                                        \
    } while (0)

void test_assert_message_contains(const char *needle);

/* Path of a file in the source tree (static buffer; copy before the next call). */
const char *test_source_path(const char *relative);

/* A fresh directory "/tmp/dv365_<tag>_XXXXXX" into dir (cap bytes), and its
 * removal with everything in it: 0 on success, -1 on failure, as cmocka's
 * group setup / teardown return. */
int test_make_tmpdir(char *dir, size_t cap, const char *tag);
int test_remove_tmpdir(const char *dir);

/* Max |a-b| / max(1, |b|) over n floats. */
double test_max_rel_diff(const float *a, const float *b, size_t n);

#endif
