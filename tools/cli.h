/* cli.h — what every `dv365` command shares: options, errors, progress. */
#ifndef DV365_CLI_H
#define DV365_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dv365.h"

#define EXIT_USAGE 2

/* "--name value" options; value holds the default until parsed. */
typedef struct opt {
    const char *name;
    const char *value;
} opt;

/* Parse argv into opts (and at most max_pos positional arguments); prints
 * the problem and returns -1 on an unknown option or a missing value. */
int parse_opts(int argc, char **argv, opt *opts, size_t n_opts, const char **positional,
               size_t max_pos, size_t *n_pos);
/* Take the flags --resume and --progress (they have no value) out of argv:
 * sets *resume / *progress, copies the other arguments (at most cap) to rest
 * and returns how many. */
int take_resume_progress(int argc, char **argv, char **rest, int cap, int *resume,
                         int *progress);
/* A whole number option (prints the problem and returns -1 if not). */
int opt_u64(const opt *o, uint64_t *out);
/* Whether argv asks for --help / -h. */
int wants_help(int argc, char **argv);
/* Print "dv365: what: <library message> (<status>)" and return 1. */
int fail_status(const char *what, dv365_status st);
/* Seconds on a monotonic clock. */
double now_s(void);

/* Run a library call; on failure print it, set rc = 1 and goto done. */
#define TRY(what, call)                                                                     \
    do {                                                                                    \
        dv365_status st_ = (call);                                                          \
        if (st_ != DV365_OK) {                                                              \
            rc = fail_status(what, st_);                                                    \
            goto done;                                                                      \
        }                                                                                   \
    } while (0)

/* A one-line progress bar on stderr, drawn only when stderr is a terminal
 * or when forced; redrawn at most every 0.1 s. */
typedef struct progress_bar {
    const char *label, *unit;
    int on;
    double t0, last_t;
    size_t last_pct;
    char extra[64]; /* shown after the counts, e.g. "loss 0.53" */
} progress_bar;

void progress_init(progress_bar *p, const char *label, const char *unit, int force);
void progress_show(progress_bar *p, size_t done, size_t total);

#endif
