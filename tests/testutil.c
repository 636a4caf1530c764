/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_assert_message_contains(const char *needle)
{
    const char *msg = dv365_last_error();
    if (needle != NULL && strstr(msg, needle) == NULL)
        fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
}

const char *test_source_path(const char *relative)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", DV365_SOURCE_ROOT, relative);
    return buf;
}

int test_make_tmpdir(char *dir, size_t cap, const char *tag)
{
    if (snprintf(dir, cap, "/tmp/dv365_%s_XXXXXX", tag) >= (int)cap)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

int test_remove_tmpdir(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

double test_max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) /* NaN counts as worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}
