/* datafile.c — buffered I/O, atomic commit and header checks shared by the
 * timeline and example files (see datafile.h, docs/data.md). */
#include "datafile.h"

#include "config.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* Linux moves at most ~2 GiB per read() call. */
#define DV_IO_STEP ((size_t)1 << 30)

/* --- reader -------------------------------------------------------------- */

dv365_status dv_breader_open(dv_breader *r, const char *path, size_t buf_bytes)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->path = path;
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return dv_io_error(errno, "open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        dv365_status st = dv_io_error(errno, "stat", path);
        close(fd);
        return st;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return dv_error(DV365_E_IO, "cannot read '%s': not a regular file", path);
    }
    r->cap = DV_MAX(buf_bytes, (size_t)16);
    r->buf = dv_malloc(r->cap);
    if (r->buf == NULL) {
        close(fd);
        return dv_error(DV365_E_NOMEM, "out of memory for a %zu-byte read buffer", r->cap);
    }
    r->fd = fd;
    r->file_size = (uint64_t)sb.st_size;
    return DV365_OK;
}

void dv_breader_close(dv_breader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    dv_free(r->buf);
    r->buf = NULL;
}

/* pread until n bytes or end of file. */
static dv365_status pread_full(dv_breader *r, void *dst, size_t n, uint64_t off, size_t *got)
{
    unsigned char *p = dst;
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(r->fd, p + done, DV_MIN(n - done, DV_IO_STEP), (off_t)(off + done));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return dv_io_error(errno, "read", r->path);
        }
        if (k == 0)
            break;
        done += (size_t)k;
    }
    *got = done;
    return DV365_OK;
}

dv365_status dv_breader_read(dv_breader *r, void *dst, size_t n, size_t *got)
{
    unsigned char *out = dst;
    size_t done = 0;
    /* first what the buffer holds */
    size_t have = r->len - r->pos;
    size_t take = DV_MIN(have, n);
    memcpy(out, r->buf + r->pos, take);
    r->pos += take;
    done += take;
    if (done == n) {
        *got = done;
        return DV365_OK;
    }
    /* buffer empty: a large remainder goes straight to dst, a small one
     * refills the buffer */
    uint64_t off = r->buf_off + r->pos;
    size_t rest = n - done, k;
    dv365_status st;
    if (rest >= r->cap) {
        if ((st = pread_full(r, out + done, rest, off, &k)) != DV365_OK)
            return st;
        r->buf_off = off + k;
        r->pos = r->len = 0;
        *got = done + k;
        return DV365_OK;
    }
    if ((st = pread_full(r, r->buf, r->cap, off, &k)) != DV365_OK)
        return st;
    r->buf_off = off;
    r->len = k;
    r->pos = DV_MIN(k, rest);
    memcpy(out + done, r->buf, r->pos);
    *got = done + r->pos;
    return DV365_OK;
}

void dv_breader_seek(dv_breader *r, uint64_t offset)
{
    /* still inside the buffer? then keep it */
    if (offset >= r->buf_off && offset <= r->buf_off + r->len) {
        r->pos = (size_t)(offset - r->buf_off);
        return;
    }
    r->buf_off = offset;
    r->pos = r->len = 0;
}

/* --- writer -------------------------------------------------------------- */

dv365_status dv_bwriter_open(dv_bwriter *w, const char *path, size_t buf_bytes)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    size_t plen = strlen(path);
    if (plen == 0)
        return dv_error(DV365_E_INVALID, "empty output path");
    if (plen >= sizeof w->path)
        return dv_error(DV365_E_IO, "path too long: '%.100s...'", path);
    memcpy(w->path, path, plen + 1);

    static unsigned long counter;
    unsigned long id = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld.%lu", path, (long)getpid(), id);

    w->cap = DV_MAX(buf_bytes, (size_t)64);
    w->buf = dv_malloc(w->cap);
    if (w->buf == NULL)
        return dv_error(DV365_E_NOMEM, "out of memory for a %zu-byte write buffer", w->cap);
    int fd;
    do
        fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        dv365_status st = dv_io_error(errno, "create", w->tmp);
        dv_free(w->buf);
        w->buf = NULL;
        return st;
    }
    w->fd = fd;
    return DV365_OK;
}

static dv365_status bwriter_flush(dv_bwriter *w)
{
    dv365_status st = dv_write_all(w->fd, w->buf, w->len, w->tmp);
    w->len = 0;
    return st;
}

dv365_status dv_bwriter_write(dv_bwriter *w, const void *src, size_t n)
{
    if (w->fd < 0)
        return dv_error(DV365_E_STATE, "'%s' is already closed", w->path);
    dv365_status st;
    if (w->len + n > w->cap && (st = bwriter_flush(w)) != DV365_OK)
        return st;
    if (n >= w->cap) {
        if ((st = dv_write_all(w->fd, src, n, w->tmp)) != DV365_OK)
            return st;
    } else {
        memcpy(w->buf + w->len, src, n);
        w->len += n;
    }
    w->offset += n;
    return DV365_OK;
}

dv365_status dv_bwriter_commit(dv_bwriter *w, const void *header, size_t n)
{
    if (w->fd < 0)
        return dv_error(DV365_E_STATE, "'%s' is already closed", w->path);
    dv365_status st = bwriter_flush(w);
    const unsigned char *h = header;
    size_t done = 0;
    while (st == DV365_OK && done < n) {
        ssize_t k = pwrite(w->fd, h + done, n - done, (off_t)done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            st = dv_io_error(k < 0 ? errno : EIO, "write", w->tmp);
        else
            done += (size_t)k;
    }
    if (st == DV365_OK && fsync(w->fd) != 0)
        st = dv_io_error(errno, "sync", w->tmp);
    if (close(w->fd) != 0 && st == DV365_OK) /* NFS reports late errors here */
        st = dv_io_error(errno, "close", w->tmp);
    w->fd = -1;
    dv_free(w->buf);
    w->buf = NULL;
    if (st == DV365_OK && rename(w->tmp, w->path) != 0)
        st = dv_error(DV365_E_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path,
                      strerror(errno));
    if (st != DV365_OK) {
        unlink(w->tmp);
        return st;
    }
    return dv_sync_parent_dir(w->path);
}

void dv_bwriter_abort(dv_bwriter *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
        w->fd = -1;
    }
    dv_free(w->buf);
    w->buf = NULL;
}

/* --- checks -------------------------------------------------------------- */

uint64_t dv_vocab_fingerprint(const dv365_config *cfg)
{
    XXH64_state_t s;
    XXH64_reset(&s, 0);
    char *const *names[3] = {cfg->action_names, cfg->media_type_names, cfg->surface_names};
    const size_t counts[3] = {cfg->n_actions, cfg->n_media_types, cfg->n_surfaces};
    for (int v = 0; v < 3; v++) {
        unsigned char n[8];
        dv_put_u64(n, counts[v]);
        XXH64_update(&s, n, sizeof n);
        for (size_t i = 0; i < counts[v]; i++) /* names with their NUL: unambiguous */
            XXH64_update(&s, names[v][i], strlen(names[v][i]) + 1);
    }
    return XXH64_digest(&s);
}

void dv_seal_header(unsigned char *h)
{
    dv_put_u64(h + 56, XXH64(h, 56, 0));
}

dv365_status dv_check_header(const unsigned char *h, size_t got, const char *magic,
                             uint32_t version, const char *what)
{
    if (got < 8 || memcmp(h, magic, 8) != 0)
        return dv_error(DV365_E_FORMAT, "'%s' is not a %s file (no '%.8s' magic at byte 0)",
                        what, magic, magic);
    if (got < DV_DATA_HEADER_BYTES)
        return dv_error(DV365_E_FORMAT, "'%s' is truncated: %zu bytes, the header alone has %d",
                        what, got, DV_DATA_HEADER_BYTES);
    uint32_t v = dv_get_u32(h + 8);
    if (v != version)
        return dv_error(DV365_E_VERSION,
                        "'%s' has format version %u; this library reads version %u", what,
                        (unsigned)v, (unsigned)version);
    if (XXH64(h, 56, 0) != dv_get_u64(h + 56))
        return dv_error(DV365_E_CHECKSUM, "'%s': the file header's checksum does not match",
                        what);
    if (dv_get_u32(h + 12) != DV_DATA_HEADER_BYTES)
        return dv_error(DV365_E_FORMAT, "'%s': header size %u, expected %d", what,
                        (unsigned)dv_get_u32(h + 12), DV_DATA_HEADER_BYTES);
    return DV365_OK;
}

/* --- opening and closing ------------------------------------------------ */

dv365_status dv_data_open(dv_breader *in, const char *path, size_t buf_bytes, unsigned char *h,
                          size_t *got)
{
    dv365_status st = dv_breader_open(in, path, buf_bytes);
    if (st == DV365_OK)
        st = dv_breader_read(in, h, DV_DATA_HEADER_BYTES, got);
    return st;
}


dv365_status dv_data_close_begin(dv_bwriter *out, bool *closed, bool failed, const char *fn)
{
    if (*closed)
        return dv_error(DV365_E_STATE, "%s: already closed", fn);
    *closed = true;
    if (failed) {
        dv_bwriter_abort(out);
        return dv_error(DV365_E_STATE,
                        "%s: an earlier write to '%s' failed; no file was written", fn,
                        out->path);
    }
    return DV365_OK;
}

void dv_data_header_start(unsigned char *h, const char *magic, uint32_t version)
{
    memset(h, 0, DV_DATA_HEADER_BYTES);
    memcpy(h, magic, 8);
    dv_put_u32(h + 8, version);
    dv_put_u32(h + 12, DV_DATA_HEADER_BYTES);
}

dv365_status dv_data_commit(dv_bwriter *out, unsigned char *h, const char *fn)
{
    dv_seal_header(h);
    dv365_status st = dv_bwriter_commit(out, h, DV_DATA_HEADER_BYTES);
    if (st != DV365_OK)
        return dv_error_context(st, "%s", fn);
    return DV365_OK;
}
