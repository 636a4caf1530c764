/* version.c — the runtime version of the loaded library. */
#include "internal.h"

#define DV_STR2(x) #x
#define DV_STR(x) DV_STR2(x)

unsigned dv365_version_number(void) { return DV365_VERSION_NUMBER; }

const char *dv365_version_string(void)
{
    return DV_STR(DV365_VERSION_MAJOR) "." DV_STR(DV365_VERSION_MINOR) "." DV_STR(
        DV365_VERSION_PATCH);
}
