/* fileio.h — whole-file reads and atomic whole-file writes (internal).
 *
 * Every file the library writes goes through dv_file_write_atomic, so a
 * crash or a full disk never leaves a half-written model or checkpoint
 * behind: readers see either the old file or the complete new one. */
#ifndef DV365_FILEIO_H
#define DV365_FILEIO_H

#include "internal.h"

/* Read the whole file at path into a new dv_malloc'd, 64-byte-aligned buffer
 * (free it with dv_free).  *len is the file size; one NUL byte follows the
 * data (not counted in *len) so text parsers may treat it as a C string.
 * Directories are rejected.  Errors: DV365_E_NULL, DV365_E_IO (message names
 * the path and strerror), DV365_E_NOMEM.  *data and *len are set only on
 * success. */
dv365_status dv_file_read_all(const char *path, void **data, size_t *len);

/* Write the concatenation of n_parts buffers (parts[i], sizes[i] bytes) to
 * path atomically: the bytes go to a unique temporary file in the same
 * directory (path + ".tmp.<pid>.<counter>"), which is fsync'ed, renamed over
 * path, and then the directory is fsync'ed.  On any failure the temporary
 * file is removed, a previous file at path is left untouched, and
 * DV365_E_IO is returned (a full disk says so).  A part may be NULL only if
 * its size is 0.  Safe to call from several threads at once (on different
 * paths; on the same path, the last rename wins). */
dv365_status dv_file_write_atomic(const char *path, size_t n_parts, const void *const *parts,
                                  const size_t *sizes);

/* Write all n bytes to fd, retrying short writes and EINTR.  what names the
 * file in the error message.  DV365_E_IO on failure (ENOSPC/EDQUOT say the
 * disk is full).  Used by dv_file_write_atomic; exposed for tests. */
dv365_status dv_write_all(int fd, const void *buf, size_t n, const char *what);

/* DV365_E_IO "cannot <op> '<path>': <strerror(err)>"; ENOSPC/EDQUOT say the
 * disk is full. */
dv365_status dv_io_error(int err, const char *op, const char *path);

/* fsync the directory that holds path, making a rename there durable. */
dv365_status dv_sync_parent_dir(const char *path);

#endif
