/* fuzz_util.c — scratch files and source-tree access for the fuzz targets. */
#include "fuzz.h"

#include <dirent.h>
#include <unistd.h>

#ifndef DV365_SOURCE_ROOT
#define DV365_SOURCE_ROOT "."
#endif

static char g_dir[512];

static void remove_tmpdir(void)
{
    DIR *d = opendir(g_dir);
    if (d != NULL) {
        struct dirent *e;
        char path[1024];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(g_dir);
}

const char *fuzz_tmpdir(void)
{
    if (g_dir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/dv365-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (mkdtemp(g_dir) == NULL) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return g_dir;
}

const char *fuzz_write_file(const char *name, const void *data, size_t size)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

const char *fuzz_write_data_file(const char *name, uint8_t flags, const uint8_t *file, size_t n,
                                 void (*fix)(uint8_t *f, size_t size))
{
    uint8_t *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, file, n);
    if (flags & 1)
        fix(copy, n);
    const char *path = fuzz_write_file(name, copy, n);
    free(copy);
    return path;
}

char *fuzz_read_source(const char *relative, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", DV365_SOURCE_ROOT, relative);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = 2 * cap + 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}
