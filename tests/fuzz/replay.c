/* replay.c — main() for the fuzz targets without libFuzzer: runs the
 * target once on every file named on the command line (directories are
 * read recursively, in name order).  With it the seed corpora and every
 * crash regression run in the default (gcc) test suite.
 * usage: fuzz_<target>_replay FILE_OR_DIR... */
#include "fuzz.h"

#include <dirent.h>
#include <sys/stat.h>

static size_t g_runs;

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        perror(path);
        return 1;
    }
    if (S_ISDIR(sb.st_mode)) {
        struct dirent **list;
        int n = scandir(path, &list, NULL, by_name), bad = 0;
        if (n < 0) {
            perror(path);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (list[i]->d_name[0] != '.') {
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, list[i]->d_name);
                bad |= run_path(sub);
            }
            free(list[i]);
        }
        free(list);
        return bad;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (data == NULL || fread(data, 1, size, f) != size) {
        fprintf(stderr, "%s: cannot read\n", path);
        fclose(f);
        free(data);
        return 1;
    }
    fclose(f);
    fprintf(stderr, "running %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    g_runs++;
    return 0;
}

int main(int argc, char **argv)
{
    int bad = 0;
    for (int i = 1; i < argc; i++)
        bad |= run_path(argv[i]);
    printf("%zu inputs ran\n", g_runs);
    return bad || g_runs == 0;
}
