/* cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int parse_opts(int argc, char **argv, opt *opts, size_t n_opts, const char **positional,
               size_t max_pos, size_t *n_pos)
{
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            size_t k = 0;
            while (k < n_opts && strcmp(argv[i] + 2, opts[k].name) != 0)
                k++;
            if (k == n_opts || i + 1 >= argc) {
                fprintf(stderr, "dv365: %s option %s\n",
                        k == n_opts ? "unknown" : "missing value for", argv[i]);
                return -1;
            }
            opts[k].value = argv[++i];
        } else if (*n_pos < max_pos) {
            positional[(*n_pos)++] = argv[i];
        } else {
            fprintf(stderr, "dv365: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

int opt_u64(const opt *o, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(o->value, &end, 10);
    if (errno || end == o->value || *end || o->value[0] == '-') {
        fprintf(stderr, "dv365: --%s needs a whole number, got '%s'\n", o->name, o->value);
        return -1;
    }
    *out = v;
    return 0;
}

int take_resume_progress(int argc, char **argv, char **rest, int cap, int *resume,
                         int *progress)
{
    int n = 0;
    for (int i = 0; i < argc && n < cap; i++) {
        if (!strcmp(argv[i], "--resume"))
            *resume = 1;
        else if (!strcmp(argv[i], "--progress"))
            *progress = 1;
        else
            rest[n++] = argv[i];
    }
    return n;
}

int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int fail_status(const char *what, dv365_status st)
{
    fprintf(stderr, "dv365: %s: %s (%s)\n", what, dv365_last_error(), dv365_status_string(st));
    return 1;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(progress_bar *p, const char *label, const char *unit, int force)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->on = force || isatty(STDERR_FILENO);
    p->t0 = now_s();
    p->last_pct = (size_t)-1;
}

void progress_show(progress_bar *p, size_t done, size_t total)
{
    if (!p->on)
        return;
    size_t pct = total ? done * 100 / total : 100;
    double now = now_s();
    if (done != total && (pct == p->last_pct || now - p->last_t < 0.1))
        return;
    p->last_pct = pct;
    p->last_t = now;
    char bar[41];
    size_t fill = pct * 40 / 100;
    for (size_t i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[40] = '\0';
    double el = now - p->t0;
    double eta = done ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%s [%s] %3zu%% %zu/%zu %s  %.1f s, eta %.0f s %s ", p->label, bar, pct,
            done, total, p->unit, el, eta, p->extra);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}
