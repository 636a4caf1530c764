/* datafile.h — pieces shared by the timeline and example files (internal).
 *
 * Both formats (docs/data.md) are little-endian, start with a 64-byte header
 * that ends in its own XXH64, and are written through a temporary file that
 * is renamed over the final name only when the writer closes.  This header
 * holds the small buffered reader/writer, the temp-file commit, and the
 * little-endian field helpers they share. */
#ifndef DV365_DATAFILE_H
#define DV365_DATAFILE_H

#include "internal.h"

#include <string.h>

/* Bulk columns are written and read as in memory. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the data files assume a little-endian host");

#define DV_DATA_HEADER_BYTES 64
#define DV_DATA_BUFFER_DEFAULT ((size_t)1 << 20) /* 1 MiB read/write buffer */
#define DV_DATA_PATH_MAX 4096

/* --- little-endian fields ------------------------------------------------ */

static inline void dv_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void dv_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint32_t dv_get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t dv_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* --- buffered sequential reader ------------------------------------------ */

/* Reads a regular file through one fixed buffer; large reads bypass it. */
typedef struct dv_breader {
    int fd;
    const char *path;   /* for messages; owned by the caller */
    uint64_t file_size; /* at open */
    unsigned char *buf;
    size_t cap, pos, len; /* buf[pos..len) is unread */
    uint64_t buf_off;     /* file offset of buf[0] */
} dv_breader;

/* Open path for reading with a buffer of buf_bytes (>= 16).  Directories
 * and files that are not regular are rejected (DV365_E_IO). */
dv365_status dv_breader_open(dv_breader *r, const char *path, size_t buf_bytes);
void dv_breader_close(dv_breader *r);
/* File offset of the next byte read. */
static inline uint64_t dv_breader_tell(const dv_breader *r) { return r->buf_off + r->pos; }
/* Read up to n bytes into dst; *got < n only at end of file. */
dv365_status dv_breader_read(dv_breader *r, void *dst, size_t n, size_t *got);
/* Position the next read at offset (no I/O until then). */
void dv_breader_seek(dv_breader *r, uint64_t offset);

/* --- buffered writer into a temporary file, committed atomically ---------- */

typedef struct dv_bwriter {
    int fd;                          /* -1 once closed */
    char path[DV_DATA_PATH_MAX];     /* final name */
    char tmp[DV_DATA_PATH_MAX + 64]; /* temporary name, in the same directory */
    unsigned char *buf;
    size_t cap, len;
    uint64_t offset; /* bytes written so far (flushed + buffered) */
} dv_bwriter;

/* Create path's temporary file "<path>.tmp.<pid>.<n>" (O_EXCL). */
dv365_status dv_bwriter_open(dv_bwriter *w, const char *path, size_t buf_bytes);
dv365_status dv_bwriter_write(dv_bwriter *w, const void *src, size_t n);
/* Flush, overwrite the first n bytes of the file with header, fsync, close,
 * rename over the final path and fsync the directory.  On failure the
 * temporary file is removed.  Either way the writer is closed afterwards. */
dv365_status dv_bwriter_commit(dv_bwriter *w, const void *header, size_t n);
/* Close and remove the temporary file (no-op when already closed). */
void dv_bwriter_abort(dv_bwriter *w);

/* --- shared checks ------------------------------------------------------- */

/* XXH64 (seed 0) of the three vocabularies' names, in code order: a data
 * file records it so that codes are never read with another vocabulary. */
uint64_t dv_vocab_fingerprint(const dv365_config *cfg);

/* Check a header's magic, version and checksum (bytes 56..63 hold the
 * XXH64 of bytes 0..55).  what names the file in messages. */
dv365_status dv_check_header(const unsigned char *h, size_t got, const char *magic,
                             uint32_t version, const char *what);
/* Fill bytes 56..63 of a header with the checksum of bytes 0..55. */
void dv_seal_header(unsigned char *h);

/* Open path for reading (dv_breader_open) and read up to a header's
 * DV_DATA_HEADER_BYTES into h; *got < that only for a short file. */
dv365_status dv_data_open(dv_breader *in, const char *path, size_t buf_bytes, unsigned char *h,
                          size_t *got);

/* --- the writers' close, shared by both formats ------------------------- */

/* The checks that open a writer's close (fn names it in messages): a second
 * close is refused, and after an earlier failed write the temporary file is
 * removed and no file is written.  Marks the writer closed. */
dv365_status dv_data_close_begin(dv_bwriter *out, bool *closed, bool failed, const char *fn);
/* Zero the header h and write its magic, version and size. */
void dv_data_header_start(unsigned char *h, const char *magic, uint32_t version);
/* Seal the header h and commit the file (dv_bwriter_commit). */
dv365_status dv_data_commit(dv_bwriter *out, unsigned char *h, const char *fn);

/* --- internal entry points with tunables (tests use them) ---------------- */

dv365_status dv_timeline_reader_open_ex(const char *path, const dv365_config *cfg,
                                        size_t buf_bytes, dv365_timeline_reader **out);
/* Has the writer a record of user_id already? */
bool dv_timeline_writer_has_user(dv365_timeline_writer *w, uint64_t user_id);
/* chunk_rows = 0 picks the default (chunks of about 1 MiB). */
dv365_status dv_example_writer_open_ex(const char *path, size_t n_dense, size_t n_tasks,
                                       size_t chunk_rows, dv365_example_writer **out);

#endif
