/* fileio.c — whole-file reads and atomic writes (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Linux moves at most ~2 GiB per read()/write() call: go in 1 GiB steps. */
#define DV_IO_CHUNK ((size_t)1 << 30)

dv365_status dv_io_error(int err, const char *op, const char *path)
{
    if (err == ENOSPC || err == EDQUOT)
        return dv_error(DV365_E_IO, "cannot %s '%s': the disk is full (%s)", op, path,
                        strerror(err));
    return dv_error(DV365_E_IO, "cannot %s '%s': %s", op, path, strerror(err));
}

/* Read until EOF into a growing buffer (pipes and other files without a
 * size); *cap is the current buffer size, *len what it holds. */
static dv365_status read_to_eof(int fd, const char *path, unsigned char **buf, size_t *len,
                                size_t *cap)
{
    for (;;) {
        if (*cap - *len < 2) { /* room for at least one byte + the NUL */
            size_t new_cap;
            if (!dv_mul_size(*cap < 4096 ? 4096 : *cap, 2, &new_cap) ||
                !dv_grow((void **)buf, *len, new_cap))
                return dv_error(DV365_E_NOMEM, "out of memory reading '%s'", path);
            *cap = new_cap;
        }
        size_t want = DV_MIN(*cap - *len - 1, DV_IO_CHUNK);
        ssize_t got = read(fd, *buf + *len, want);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return dv_io_error(errno, "read", path);
        }
        if (got == 0)
            return DV365_OK;
        *len += (size_t)got;
    }
}

dv365_status dv_file_read_all(const char *path, void **data, size_t *len)
{
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(data);
    DV_CHECK_NULL(len);

    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return dv_io_error(errno, "open", path);

    dv365_status st = DV365_OK;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = dv_io_error(errno, "stat", path);
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = dv_error(DV365_E_IO, "cannot read '%s': it is a directory", path);
        goto done;
    }
    if (S_ISREG(sb.st_mode) && sb.st_size > 0) {
        /* Known size: one allocation, then a read loop (a file that shrinks
         * meanwhile gives what is left; /proc files report size 0 and take
         * the other path). */
        if ((uintmax_t)sb.st_size >= SIZE_MAX - 128) {
            st = dv_error(DV365_E_NOMEM, "'%s' is too large to read into memory", path);
            goto done;
        }
        cap = (size_t)sb.st_size + 1;
        buf = dv_malloc(cap);
        if (buf == NULL) {
            st = dv_error(DV365_E_NOMEM, "out of memory reading '%s' (%zu bytes)", path,
                          cap - 1);
            goto done;
        }
        while (n < cap - 1) {
            ssize_t got = read(fd, buf + n, DV_MIN(cap - 1 - n, DV_IO_CHUNK));
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                st = dv_io_error(errno, "read", path);
                goto done;
            }
            if (got == 0)
                break;
            n += (size_t)got;
        }
    } else {
        st = read_to_eof(fd, path, &buf, &n, &cap);
    }
    if (st == DV365_OK && buf == NULL) { /* empty pipe: still hand back a buffer */
        buf = dv_malloc(1);
        if (buf == NULL)
            st = dv_error(DV365_E_NOMEM, "out of memory reading '%s'", path);
    }

done:
    close(fd);
    if (st != DV365_OK) {
        dv_free(buf);
        return st;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return DV365_OK;
}

dv365_status dv_write_all(int fd, const void *buf, size_t n, const char *what)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, DV_MIN(n, DV_IO_CHUNK));
        if (put < 0) {
            if (errno == EINTR)
                continue;
            return dv_io_error(errno, "write", what);
        }
        if (put == 0) /* should not happen for regular files; do not spin */
            return dv_io_error(EIO, "write", what);
        p += put;
        n -= (size_t)put;
    }
    return DV365_OK;
}

/* fsync the directory holding path, so that the rename itself is durable. */
dv365_status dv_sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return dv_error(DV365_E_IO, "path too long: '%.100s...'", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return dv_io_error(errno, "open directory", dir);
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot sync a directory (EINVAL): nothing to do. */
    if (rc != 0 && err != EINVAL)
        return dv_io_error(err, "sync directory", dir);
    return DV365_OK;
}

dv365_status dv_file_write_atomic(const char *path, size_t n_parts, const void *const *parts,
                                  const size_t *sizes)
{
    DV_CHECK_NULL(path);
    if (n_parts > 0) {
        DV_CHECK_NULL(parts);
        DV_CHECK_NULL(sizes);
    }
    for (size_t i = 0; i < n_parts; i++)
        if (parts[i] == NULL && sizes[i] > 0)
            return dv_error(DV365_E_NULL, "dv_file_write_atomic: part %zu is NULL but has %zu bytes",
                            i, sizes[i]);
    if (path[0] == '\0')
        return dv_error(DV365_E_INVALID, "dv_file_write_atomic: empty path");

    /* Unique per process and per call, so concurrent writers never share a
     * temporary file. */
    static unsigned long counter;
    unsigned long id = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    char tmp[PATH_MAX];
    int need = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lu", path, (long)getpid(), id);
    if (need < 0 || (size_t)need >= sizeof tmp)
        return dv_error(DV365_E_IO, "path too long: '%.100s...'", path);

    int fd;
    do
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return dv_io_error(errno, "create", tmp);

    dv365_status st = DV365_OK;
    for (size_t i = 0; i < n_parts && st == DV365_OK; i++)
        st = dv_write_all(fd, parts[i], sizes[i], tmp);
    if (st == DV365_OK && fsync(fd) != 0)
        st = dv_io_error(errno, "sync", tmp);
    /* close() can report a deferred write error (NFS): it must be checked. */
    if (close(fd) != 0 && st == DV365_OK)
        st = dv_io_error(errno, "close", tmp);
    if (st == DV365_OK && rename(tmp, path) != 0)
        st = dv_error(DV365_E_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                      strerror(errno));
    if (st != DV365_OK) {
        unlink(tmp);
        return st;
    }
    return dv_sync_parent_dir(path);
}
