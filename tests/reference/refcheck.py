"""refcheck.py -- the summary table the reference scripts end with."""


def report(rows):
    """Print one line per (name, error, tolerance, passed) row and a total;
    return the exit code (1 when a check failed)."""
    width = max(len(r[0]) for r in rows)
    failed = 0
    for name, err, tol, ok in rows:
        print("%-*s  err %.3e  tol %.1e  %s" % (width, name, err, tol, "ok" if ok else "FAIL"))
        failed += not ok
    print("%d checks, %d failed" % (len(rows), failed))
    return 1 if failed else 0
