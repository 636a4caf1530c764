/* store.c — the embedding store: user id -> blob in LMDB, by generations.
 *
 * Two data databases ("slots") take turns: the current generation lives in
 * one, a new generation is written into the other, and the switch is one
 * write transaction that rewrites meta "current" (and empties the old slot).
 * LMDB transactions are snapshots, so a reader that read "current" reads
 * that generation's slot as of the same instant: never a mix.  The slot
 * handles are opened once at open time, so readers never open or close
 * database handles (which LMDB does not allow concurrently). */
#include "store.h"

#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define READ_POOL_CAP 64                   /* reset read transactions kept for reuse */
#define FLUSH_BYTES ((size_t)32 << 20)     /* buffered blob bytes per write transaction */
#define MAX_READERS 512u                   /* LMDB reader-table slots (all processes) */

struct dv365_store {
    MDB_env *env;
    MDB_dbi meta, slot[2];
    unsigned flags;
    size_t map_size; /* as LMDB uses it, for messages */
    char *path;
    dev_t dev;
    ino_t ino;
    dv365_store *next_open; /* the process-wide list of open stores */

    /* Reset read transactions: dv365_store_get renews one instead of
     * starting a transaction (which takes LMDB's reader-table mutex). */
    pthread_mutex_t pool_lock;
    MDB_txn *pool[READ_POOL_CAP];
    size_t n_pool;

    dv365_store_gen *gen; /* the generation being written, if any */
};

struct dv365_store_reader {
    dv365_store *s;
    MDB_txn *txn; /* kept (reset) between snapshots */
    bool active;
    bool has_gen;
    dv_gen_record gen;
};

typedef struct put_entry {
    uint64_t key;
    size_t seq; /* put order: the last put of a user wins */
    size_t off, size;
} put_entry;

enum { GEN_OPEN = 0, GEN_FAILED = 1, GEN_DONE = 2 };

struct dv365_store_gen {
    dv365_store *s;
    dv_gen_record rec; /* as written at the last flush (count = users on disk) */
    uint32_t k, dim;   /* shape of the blobs, including buffered ones */
    int lock_fd;       /* flock on <store>/generation.lock: one writer at a time */
    int state;
    put_entry *entries;
    size_t n, cap;
    unsigned char *bytes;
    size_t used, cap_bytes;
    size_t seq;
};

/* ------------------------------------------------------------------------ */
/* records and errors                                                        */
/* ------------------------------------------------------------------------ */

void dv_gen_record_write(const dv_gen_record *g, unsigned char out[DV_STORE_RECORD_BYTES])
{
    memset(out, 0, DV_STORE_RECORD_BYTES);
    dv_put_le(out + 0, g->number, 8);
    dv_put_le(out + 8, g->fingerprint, 8);
    dv_put_le(out + 16, (uint64_t)g->created, 8);
    dv_put_le(out + 24, g->count, 8);
    dv_put_le(out + 32, g->k, 4);
    dv_put_le(out + 36, g->dim, 4);
    dv_put_le(out + 40, g->slot, 4);
}

dv365_status dv_gen_record_read(const void *data, size_t size, const char *what,
                                dv_gen_record *g)
{
    const unsigned char *p = data;
    if (size != DV_STORE_RECORD_BYTES)
        return dv_error(DV365_E_FORMAT, "store meta '%s' has %zu bytes, expected %d", what, size,
                        DV_STORE_RECORD_BYTES);
    dv_gen_record r = {
        .number = dv_get_le(p, 8),
        .fingerprint = dv_get_le(p + 8, 8),
        .created = (int64_t)dv_get_le(p + 16, 8),
        .count = dv_get_le(p + 24, 8),
        .k = (uint32_t)dv_get_le(p + 32, 4),
        .dim = (uint32_t)dv_get_le(p + 36, 4),
        .slot = (uint32_t)dv_get_le(p + 40, 4),
    };
    if (r.number == 0 || r.slot > 1 || dv_get_le(p + 44, 4) != 0 || r.created < 0 ||
        r.created > DV365_TIME_MAX || (r.k == 0) != (r.dim == 0))
        return dv_error(DV365_E_FORMAT, "store meta '%s' is corrupt (generation %llu, slot %u)",
                        what, (unsigned long long)r.number, r.slot);
    *g = r;
    return DV365_OK;
}

/* An LMDB return code as a status with a message naming the store. */
static dv365_status mdb_status(int rc, const dv365_store *s, const char *what)
{
    const char *path = s ? s->path : "?";
    switch (rc) {
    case MDB_MAP_FULL:
        return dv_error(DV365_E_NOMEM,
                        "store %s: %s: map full (map size %zu bytes): reopen the store with a "
                        "larger map_size",
                        path, what, s ? s->map_size : 0);
    case MDB_NOTFOUND:
        return dv_error(DV365_E_NOT_FOUND, "store %s: %s: not found", path, what);
    case MDB_MAP_RESIZED:
        return dv_error(DV365_E_STATE, "store %s: %s: another process grew the map; reopen the store",
                        path, what);
    case MDB_READERS_FULL:
        return dv_error(DV365_E_STATE, "store %s: %s: more than %u concurrent read snapshots", path,
                        what, MAX_READERS);
    case MDB_TXN_FULL:
        return dv_error(DV365_E_NOMEM, "store %s: %s: transaction too large", path, what);
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
        return dv_error(DV365_E_FORMAT, "store %s: %s: %s", path, what, mdb_strerror(rc));
    case MDB_VERSION_MISMATCH:
        return dv_error(DV365_E_VERSION, "store %s: %s: %s", path, what, mdb_strerror(rc));
    case ENOMEM:
        return dv_error(DV365_E_NOMEM, "store %s: %s: out of memory", path, what);
    case ENOSPC:
    case EDQUOT:
        return dv_error(DV365_E_IO, "store %s: %s: the disk is full (%s)", path, what,
                        mdb_strerror(rc));
    case EIO: {
        /* LMDB reports a short write (what a full disk gives) as EIO */
        struct statvfs vfs;
        if (s && statvfs(s->path, &vfs) == 0 &&
            (unsigned long long)vfs.f_bavail * vfs.f_frsize < (1u << 20))
            return dv_error(DV365_E_IO,
                            "store %s: %s: %s: the disk is full (%llu bytes free)", path, what,
                            mdb_strerror(rc),
                            (unsigned long long)vfs.f_bavail * vfs.f_frsize);
        return dv_error(DV365_E_IO, "store %s: %s: %s", path, what, mdb_strerror(rc));
    }
    default:
        return dv_error(DV365_E_IO, "store %s: %s: %s", path, what, mdb_strerror(rc));
    }
}

static MDB_val str_val(const char *s) { return (MDB_val){strlen(s), (void *)s}; }

/* Read meta record name in txn; *found = false when it is absent. */
static dv365_status read_record(const dv365_store *s, MDB_txn *txn, const char *name,
                                dv_gen_record *g, bool *found)
{
    MDB_val k = str_val(name), v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    *found = false;
    if (rc == MDB_NOTFOUND)
        return DV365_OK;
    if (rc != 0)
        return mdb_status(rc, s, name);
    dv365_status st = dv_gen_record_read(v.mv_data, v.mv_size, name, g);
    if (st != DV365_OK)
        return dv_error_context(st, "store %s", s->path);
    *found = true;
    return DV365_OK;
}

static int write_record(const dv365_store *s, MDB_txn *txn, const char *name,
                        const dv_gen_record *g)
{
    unsigned char buf[DV_STORE_RECORD_BYTES];
    dv_gen_record_write(g, buf);
    MDB_val k = str_val(name), v = {sizeof buf, buf};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

static int delete_key(const dv365_store *s, MDB_txn *txn, const char *name)
{
    MDB_val k = str_val(name);
    int rc = mdb_del(txn, s->meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ------------------------------------------------------------------------ */
/* open / close                                                              */
/* ------------------------------------------------------------------------ */

/* LMDB must not open one environment twice in a process (closing either
 * would drop the other's file locks), so open stores are listed here. */
static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static dv365_store *g_open_list;

/* Create the meta and slot databases of a new store, or check an existing
 * one; the handles stay valid after txn commits. */
static dv365_status open_databases(dv365_store *s, MDB_txn *txn, bool ro)
{
    unsigned create = ro ? 0 : MDB_CREATE;
    int rc = mdb_dbi_open(txn, DV_STORE_DB_META, create, &s->meta);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
        return dv_error(DV365_E_FORMAT, "%s is an LMDB environment but not a dv365 store", s->path);
    if (rc != 0)
        return mdb_status(rc, s, "opening the meta database");

    MDB_val k = str_val("format"), v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        /* A new store, unless the environment already holds other data. */
        MDB_dbi main_db;
        MDB_stat ms;
        if (ro || mdb_dbi_open(txn, NULL, 0, &main_db) != 0 || mdb_stat(txn, main_db, &ms) != 0 ||
            ms.ms_entries > 1)
            return dv_error(DV365_E_FORMAT, "%s is not a dv365 store (no format record)", s->path);
        unsigned char fmt[16] = {0};
        memcpy(fmt, DV_STORE_MAGIC, 8);
        dv_put_le(fmt + 8, DV_STORE_FORMAT, 4);
        v = (MDB_val){sizeof fmt, fmt};
        if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
            return mdb_status(rc, s, "writing the format record");
    } else if (rc != 0) {
        return mdb_status(rc, s, "reading the format record");
    } else {
        const unsigned char *p = v.mv_data;
        if (v.mv_size != 16 || memcmp(p, DV_STORE_MAGIC, 8) != 0)
            return dv_error(DV365_E_FORMAT, "%s is not a dv365 store (bad format record)", s->path);
        if (dv_get_le(p + 8, 4) != DV_STORE_FORMAT)
            return dv_error(DV365_E_VERSION, "store %s has format version %u; this library reads %u",
                            s->path, (unsigned)dv_get_le(p + 8, 4), DV_STORE_FORMAT);
    }
    const char *names[2] = {DV_STORE_DB_SLOT0, DV_STORE_DB_SLOT1};
    for (int i = 0; i < 2; i++) {
        rc = mdb_dbi_open(txn, names[i], create, &s->slot[i]);
        if (rc == MDB_NOTFOUND)
            return dv_error(DV365_E_FORMAT, "store %s has no '%s' database", s->path, names[i]);
        if (rc != 0)
            return mdb_status(rc, s, "opening a slot database");
    }
    return DV365_OK;
}

static void store_free(dv365_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_pool; i++)
        mdb_txn_abort(s->pool[i]);
    if (s->env)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->pool_lock);
    dv_free(s->path);
    dv_free(s);
}

static dv365_status open_locked(const char *path, unsigned flags, size_t map_size,
                                dv365_store **out)
{
    const bool ro = (flags & DV365_STORE_READONLY) != 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || ro)
            return dv_error(DV365_E_IO, "cannot open store %s: %s", path, strerror(errno));
        if (mkdir(path, 0775) != 0 && errno != EEXIST)
            return dv_error(DV365_E_IO, "cannot create store directory %s: %s", path,
                            strerror(errno));
        if (stat(path, &st) != 0)
            return dv_error(DV365_E_IO, "cannot open store %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return dv_error(DV365_E_IO, "store path %s is not a directory", path);
    for (dv365_store *o = g_open_list; o; o = o->next_open)
        if (o->dev == st.st_dev && o->ino == st.st_ino)
            return dv_error(DV365_E_STATE,
                            "store %s is already open in this process (as %s): share that handle",
                            path, o->path);

    /* A new store gets the default map size; an existing one keeps its own
     * unless the caller asks for another. */
    size_t plen = strlen(path);
    char *data_path = dv_malloc(plen + 16);
    if (!data_path)
        return dv_error(DV365_E_NOMEM, "store %s: out of memory", path);
    snprintf(data_path, plen + 16, "%s/data.mdb", path);
    bool exists = access(data_path, F_OK) == 0;
    dv_free(data_path);
    if (ro && !exists)
        return dv_error(DV365_E_IO, "cannot open store %s read-only: no store there (no data.mdb)",
                        path);

    dv365_store *s = dv_calloc(1, sizeof *s);
    if (!s || !(s->path = dv_strdup(path))) {
        dv_free(s);
        return dv_error(DV365_E_NOMEM, "store %s: out of memory", path);
    }
    pthread_mutex_init(&s->pool_lock, NULL);
    s->flags = flags;
    s->dev = st.st_dev;
    s->ino = st.st_ino;

    dv365_status status = DV365_OK;
    int rc = mdb_env_create(&s->env);
    if (rc != 0) {
        s->env = NULL;
        status = mdb_status(rc, s, "creating the environment");
        goto fail;
    }
    size_t want_map = map_size ? map_size : (exists ? 0 : DV365_STORE_DEFAULT_MAP_SIZE);
    if ((rc = mdb_env_set_maxdbs(s->env, 4)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) != 0 ||
        (want_map && (rc = mdb_env_set_mapsize(s->env, want_map)) != 0)) {
        status = mdb_status(rc, s, "configuring the environment");
        goto fail;
    }
    unsigned env_flags = MDB_NOTLS | (ro ? MDB_RDONLY : 0) |
                         ((flags & DV365_STORE_NOSYNC) ? MDB_NOSYNC : 0);
    if ((rc = mdb_env_open(s->env, path, env_flags, 0664)) != 0) {
        if (rc == EINVAL || rc == ENOMEM) /* mmap refused the map size */
            status = want_map ? dv_error(DV365_E_NOMEM,
                                         "store %s: cannot map %zu bytes of address space (%s): "
                                         "open it with a smaller map_size",
                                         path, want_map, mdb_strerror(rc))
                              : dv_error(DV365_E_NOMEM,
                                         "store %s: cannot map its recorded map size (%s): open "
                                         "it with a smaller map_size",
                                         path, mdb_strerror(rc));
        else
            status = mdb_status(rc, s, "opening the environment");
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead); /* free slots of crashed reader processes */
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0)
        s->map_size = info.me_mapsize;

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, ro ? MDB_RDONLY : 0, &txn)) != 0) {
        status = mdb_status(rc, s, "opening the databases");
        goto fail;
    }
    status = open_databases(s, txn, ro);
    if (status != DV365_OK) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        status = mdb_status(rc, s, "creating the databases");
        goto fail;
    }
    s->next_open = g_open_list;
    g_open_list = s;
    *out = s;
    return DV365_OK;
fail:
    store_free(s);
    return status;
}

dv365_status dv365_store_open(const char *path, unsigned flags, size_t map_size,
                              dv365_store **out)
{
    dv_clear_error();
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    if (flags & ~(DV365_STORE_READONLY | DV365_STORE_NOSYNC))
        return dv_error(DV365_E_INVALID, "dv365_store_open: unknown flags 0x%x", flags);
    if (map_size != 0 && map_size < DV_STORE_MIN_MAP)
        return dv_error(DV365_E_INVALID, "dv365_store_open: map_size %zu is below 1 MiB", map_size);
    if (path[0] == '\0')
        return dv_error(DV365_E_INVALID, "dv365_store_open: empty path");
    pthread_mutex_lock(&g_open_lock);
    dv365_status st = open_locked(path, flags, map_size, out);
    pthread_mutex_unlock(&g_open_lock);
    return st;
}

void dv365_store_close(dv365_store *s)
{
    if (s == NULL)
        return;
    if (s->gen)
        dv365_store_generation_free(s->gen);
    pthread_mutex_lock(&g_open_lock);
    for (dv365_store **p = &g_open_list; *p; p = &(*p)->next_open)
        if (*p == s) {
            *p = s->next_open;
            break;
        }
    pthread_mutex_unlock(&g_open_lock);
    store_free(s);
}

/* ------------------------------------------------------------------------ */
/* reading                                                                   */
/* ------------------------------------------------------------------------ */

static dv365_status read_txn_take(dv365_store *s, MDB_txn **out)
{
    MDB_txn *t = NULL;
    pthread_mutex_lock(&s->pool_lock);
    if (s->n_pool)
        t = s->pool[--s->n_pool];
    pthread_mutex_unlock(&s->pool_lock);
    int rc = t ? mdb_txn_renew(t) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc != 0) {
        if (t)
            mdb_txn_abort(t);
        return mdb_status(rc, s, "starting a read snapshot");
    }
    *out = t;
    return DV365_OK;
}

static void read_txn_give(dv365_store *s, MDB_txn *t)
{
    mdb_txn_reset(t);
    pthread_mutex_lock(&s->pool_lock);
    if (s->n_pool < READ_POOL_CAP) {
        s->pool[s->n_pool++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (t)
        mdb_txn_abort(t);
}

/* Find user_id in generation g (read in the same txn) and validate it. */
static dv365_status lookup(const dv365_store *s, MDB_txn *txn, const dv_gen_record *g,
                           bool has_gen, uint64_t user_id, const uint8_t **blob, size_t *size,
                           dv_blob_header *h)
{
    if (!has_gen)
        return dv_error(DV365_E_NOT_FOUND, "store %s has no committed generation yet", s->path);
    unsigned char kb[8];
    dv_store_key(user_id, kb);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, s->slot[g->slot], &k, &v);
    if (rc == MDB_NOTFOUND)
        return dv_error(DV365_E_NOT_FOUND, "user %llu is not in generation %llu of store %s",
                        (unsigned long long)user_id, (unsigned long long)g->number, s->path);
    if (rc != 0)
        return mdb_status(rc, s, "reading a user");
    dv365_status st = dv_blob_parse(v.mv_data, v.mv_size, h);
    if (st != DV365_OK)
        return dv_error_context(st, "store %s: user %llu", s->path, (unsigned long long)user_id);
    if (h->k != g->k || h->dim != g->dim)
        return dv_error(DV365_E_FORMAT,
                        "store %s: user %llu: blob is %zu x %zu but generation %llu is %u x %u",
                        s->path, (unsigned long long)user_id, h->k, h->dim,
                        (unsigned long long)g->number, g->k, g->dim);
    *blob = v.mv_data;
    *size = v.mv_size;
    return DV365_OK;
}

static void report_info(const dv_gen_record *g, bool has, uint64_t *generation,
                        uint64_t *fingerprint, int64_t *created, size_t *count, size_t *k,
                        size_t *dim)
{
    if (generation)
        *generation = has ? g->number : 0;
    if (fingerprint)
        *fingerprint = has ? g->fingerprint : 0;
    if (created)
        *created = has ? g->created : 0;
    if (count)
        *count = has ? (size_t)g->count : 0;
    if (k)
        *k = has ? g->k : 0;
    if (dim)
        *dim = has ? g->dim : 0;
}

dv365_status dv365_store_info(dv365_store *s, uint64_t *generation, uint64_t *fingerprint,
                              int64_t *created, size_t *count, size_t *k, size_t *dim)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    MDB_txn *txn;
    dv365_status st = read_txn_take(s, &txn);
    if (st != DV365_OK)
        return st;
    dv_gen_record g;
    bool has;
    st = read_record(s, txn, "current", &g, &has);
    read_txn_give(s, txn);
    if (st == DV365_OK)
        report_info(&g, has, generation, fingerprint, created, count, k, dim);
    return st;
}

/* One lookup in a fresh snapshot; fn sees the blob while it is valid. */
static dv365_status get_with(dv365_store *s, uint64_t user_id,
                             dv365_status (*fn)(void *ctx, const uint8_t *blob, size_t size,
                                                const dv_blob_header *h),
                             void *ctx)
{
    MDB_txn *txn;
    dv365_status st = read_txn_take(s, &txn);
    if (st != DV365_OK)
        return st;
    dv_gen_record g;
    bool has;
    const uint8_t *blob;
    size_t size;
    dv_blob_header h;
    st = read_record(s, txn, "current", &g, &has);
    if (st == DV365_OK)
        st = lookup(s, txn, &g, has, user_id, &blob, &size, &h);
    if (st == DV365_OK)
        st = fn(ctx, blob, size, &h);
    read_txn_give(s, txn);
    return st;
}

typedef struct copy_ctx {
    uint8_t *buf;
    size_t cap, size;
    uint64_t user;
} copy_ctx;

static dv365_status copy_out(void *ctx, const uint8_t *blob, size_t size, const dv_blob_header *h)
{
    (void)h;
    copy_ctx *c = ctx;
    if (size > c->cap)
        return dv_error(DV365_E_BUFFER_TOO_SMALL,
                        "dv365_store_get: user %llu's blob needs %zu bytes, the buffer has %zu",
                        (unsigned long long)c->user, size, c->cap);
    memcpy(c->buf, blob, size);
    c->size = size;
    return DV365_OK;
}

dv365_status dv365_store_get(dv365_store *s, uint64_t user_id, uint8_t *buf, size_t cap,
                             size_t *size)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    DV_CHECK_NULL(buf);
    DV_CHECK_NULL(size);
    copy_ctx c = {.buf = buf, .cap = cap, .user = user_id};
    dv365_status st = get_with(s, user_id, copy_out, &c);
    if (st == DV365_OK)
        *size = c.size;
    return st;
}

static dv365_status take_created(void *ctx, const uint8_t *blob, size_t size,
                                 const dv_blob_header *h)
{
    (void)blob;
    (void)size;
    *(int64_t *)ctx = h->created;
    return DV365_OK;
}

dv365_status dv365_store_age(dv365_store *s, uint64_t user_id, int64_t now, int64_t *age_seconds)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    DV_CHECK_NULL(age_seconds);
    if (now < 0 || now > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP, "dv365_store_age: now = %lld is outside [0, 2100-01-01]",
                        (long long)now);
    int64_t created = 0;
    dv365_status st = get_with(s, user_id, take_created, &created);
    if (st == DV365_OK)
        *age_seconds = now - created;
    return st;
}

/* --- reader handles ------------------------------------------------------ */

dv365_status dv365_store_reader_create(dv365_store *s, dv365_store_reader **out)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    DV_CHECK_NULL(out);
    dv365_store_reader *r = dv_calloc(1, sizeof *r);
    if (!r)
        return dv_error(DV365_E_NOMEM, "dv365_store_reader_create: out of memory");
    r->s = s;
    *out = r;
    return DV365_OK;
}

void dv365_store_reader_free(dv365_store_reader *r)
{
    if (r == NULL)
        return;
    if (r->txn)
        mdb_txn_abort(r->txn);
    dv_free(r);
}

void dv365_store_reader_end(dv365_store_reader *r)
{
    if (r && r->active) {
        mdb_txn_reset(r->txn);
        r->active = false;
    }
}

dv365_status dv365_store_reader_begin(dv365_store_reader *r)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    dv365_store_reader_end(r); /* begin on an open snapshot moves to the latest */
    int rc = r->txn ? mdb_txn_renew(r->txn) : mdb_txn_begin(r->s->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != 0) {
        if (r->txn)
            mdb_txn_abort(r->txn);
        r->txn = NULL;
        return mdb_status(rc, r->s, "starting a read snapshot");
    }
    dv365_status st = read_record(r->s, r->txn, "current", &r->gen, &r->has_gen);
    if (st != DV365_OK) {
        mdb_txn_reset(r->txn);
        return st;
    }
    r->active = true;
    return DV365_OK;
}

dv365_status dv365_store_reader_info(const dv365_store_reader *r, uint64_t *generation,
                                     uint64_t *fingerprint, int64_t *created, size_t *count,
                                     size_t *k, size_t *dim)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    if (!r->active)
        return dv_error(DV365_E_STATE, "dv365_store_reader_info: no snapshot (call _begin first)");
    report_info(&r->gen, r->has_gen, generation, fingerprint, created, count, k, dim);
    return DV365_OK;
}

dv365_status dv365_store_reader_get(dv365_store_reader *r, uint64_t user_id, const uint8_t **blob,
                                    size_t *size)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    DV_CHECK_NULL(blob);
    DV_CHECK_NULL(size);
    if (!r->active)
        return dv_error(DV365_E_STATE, "dv365_store_reader_get: no snapshot (call _begin first)");
    dv_blob_header h;
    return lookup(r->s, r->txn, &r->gen, r->has_gen, user_id, blob, size, &h);
}

/* ------------------------------------------------------------------------ */
/* writing generations                                                       */
/* ------------------------------------------------------------------------ */

/* Take the store's writer lock: an flock on <store>/generation.lock, held
 * while a generation handle is open.  LMDB serializes write transactions,
 * but a generation spans many of them. */
static dv365_status writer_lock(dv365_store *s, int *fd_out)
{
    if (s->flags & DV365_STORE_READONLY)
        return dv_error(DV365_E_STATE, "store %s is open read-only", s->path);
    if (s->gen)
        return dv_error(DV365_E_STATE, "store %s: a generation is already open on this handle",
                        s->path);
    size_t n = strlen(s->path) + 32;
    char *p = dv_malloc(n);
    if (!p)
        return dv_error(DV365_E_NOMEM, "store %s: out of memory", s->path);
    snprintf(p, n, "%s/generation.lock", s->path);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    int err = errno;
    dv_free(p);
    if (fd < 0)
        return dv_error(DV365_E_IO, "store %s: cannot open generation.lock: %s", s->path,
                        strerror(err));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return dv_error(DV365_E_STATE, "store %s: another process is writing a generation",
                            s->path);
        return dv_error(DV365_E_IO, "store %s: cannot lock generation.lock: %s", s->path,
                        strerror(err));
    }
    *fd_out = fd;
    return DV365_OK;
}

/* Commit txn if st is OK, else abort it; the status of the whole. */
static dv365_status txn_finish(const dv365_store *s, MDB_txn *txn, dv365_status st,
                               const char *what)
{
    if (st != DV365_OK) {
        mdb_txn_abort(txn);
        return st;
    }
    int rc = mdb_txn_commit(txn);
    return rc == 0 ? DV365_OK : mdb_status(rc, s, what);
}

static dv365_status gen_new(dv365_store *s, int lock_fd, const dv_gen_record *rec,
                            dv365_store_gen **out)
{
    dv365_store_gen *g = dv_calloc(1, sizeof *g);
    if (!g)
        return dv_error(DV365_E_NOMEM, "store %s: out of memory", s->path);
    g->s = s;
    g->rec = *rec;
    g->k = rec->k;
    g->dim = rec->dim;
    g->lock_fd = lock_fd;
    s->gen = g;
    *out = g;
    return DV365_OK;
}

dv365_status dv365_store_begin_generation(dv365_store *s, uint64_t fingerprint, int64_t created,
                                          dv365_store_gen **out)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    DV_CHECK_NULL(out);
    if (created < 0 || created > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP,
                        "dv365_store_begin_generation: created = %lld is outside [0, 2100-01-01]",
                        (long long)created);
    int fd;
    dv365_status st = writer_lock(s, &fd);
    if (st != DV365_OK)
        return st;

    /* One transaction: empty the free slot, forget any abandoned pending
     * generation and its checkpoint, record the new one. */
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        close(fd);
        return mdb_status(rc, s, "beginning a generation");
    }
    dv_gen_record cur, rec = {.fingerprint = fingerprint, .created = created};
    bool has;
    st = read_record(s, txn, "current", &cur, &has);
    if (st == DV365_OK) {
        rec.number = (has ? cur.number : 0) + 1;
        rec.slot = has ? 1 - cur.slot : 0;
        if ((rc = mdb_drop(txn, s->slot[rec.slot], 0)) != 0 ||
            (rc = delete_key(s, txn, "checkpoint")) != 0 ||
            (rc = write_record(s, txn, "pending", &rec)) != 0)
            st = mdb_status(rc, s, "beginning a generation");
    }
    st = txn_finish(s, txn, st, "beginning a generation");
    if (st == DV365_OK)
        st = gen_new(s, fd, &rec, out);
    if (st != DV365_OK)
        close(fd);
    return st;
}

dv365_status dv365_store_resume_generation(dv365_store *s, dv365_store_gen **out)
{
    dv_clear_error();
    DV_CHECK_NULL(s);
    DV_CHECK_NULL(out);
    int fd;
    dv365_status st = writer_lock(s, &fd);
    if (st != DV365_OK)
        return st;
    MDB_txn *txn;
    st = read_txn_take(s, &txn);
    if (st != DV365_OK) {
        close(fd);
        return st;
    }
    dv_gen_record cur, rec;
    bool has_cur, has_pending;
    st = read_record(s, txn, "current", &cur, &has_cur);
    if (st == DV365_OK)
        st = read_record(s, txn, "pending", &rec, &has_pending);
    read_txn_give(s, txn);
    if (st == DV365_OK && !has_pending)
        st = dv_error(DV365_E_NOT_FOUND, "store %s has no pending generation to resume", s->path);
    if (st == DV365_OK && has_cur && (rec.slot == cur.slot || rec.number <= cur.number))
        st = dv_error(DV365_E_FORMAT,
                      "store %s: the pending generation %llu (slot %u) conflicts with the current "
                      "one %llu (slot %u)",
                      s->path, (unsigned long long)rec.number, rec.slot,
                      (unsigned long long)cur.number, cur.slot);
    if (st == DV365_OK)
        st = gen_new(s, fd, &rec, out);
    if (st != DV365_OK)
        close(fd);
    return st;
}

static dv365_status gen_usable(const dv365_store_gen *g, const char *fn)
{
    if (g->state == GEN_DONE)
        return dv_error(DV365_E_STATE, "%s: the generation was already committed or aborted", fn);
    if (g->state == GEN_FAILED)
        return dv_error(DV365_E_STATE,
                        "%s: an earlier write of generation %llu failed; abort it, or free it and "
                        "resume after fixing the cause",
                        fn, (unsigned long long)g->rec.number);
    return DV365_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const put_entry *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Write the buffered puts into the generation's slot in txn, in key order
 * (appending while keys ascend past the slot's last key: LMDB then fills
 * pages densely), and update the pending record's count and shape. */
static dv365_status write_buffered(dv365_store_gen *g, MDB_txn *txn)
{
    dv365_store *s = g->s;
    MDB_dbi dbi = s->slot[g->rec.slot];
    if (g->n > 1)
        qsort(g->entries, g->n, sizeof *g->entries, cmp_entry);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0)
        return mdb_status(rc, s, "writing a generation");
    MDB_val k, v;
    bool have_last = false;
    uint64_t last = 0;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8) {
        const unsigned char *kb = k.mv_data;
        for (int i = 0; i < 8; i++)
            last = (last << 8) | kb[i];
        have_last = true;
    }
    rc = 0;
    for (size_t i = 0; i < g->n && rc == 0; i++) {
        const put_entry *e = &g->entries[i];
        if (i + 1 < g->n && g->entries[i + 1].key == e->key)
            continue; /* a later put of the same user wins */
        unsigned char kb[8];
        dv_store_key(e->key, kb);
        k = (MDB_val){8, kb};
        v = (MDB_val){e->size, g->bytes + e->off};
        bool append = !have_last || e->key > last;
        rc = mdb_cursor_put(c, &k, &v, append ? MDB_APPEND : 0);
        if (rc == 0 && append) {
            last = e->key;
            have_last = true;
        }
    }
    mdb_cursor_close(c);
    if (rc != 0)
        return mdb_status(rc, s, "writing a generation");
    MDB_stat ms;
    if ((rc = mdb_stat(txn, dbi, &ms)) != 0)
        return mdb_status(rc, s, "writing a generation");
    g->rec.count = ms.ms_entries;
    g->rec.k = g->k;
    g->rec.dim = g->dim;
    return DV365_OK;
}

/* Drop the buffered puts (written or failed). */
static void clear_buffer(dv365_store_gen *g)
{
    g->n = 0;
    g->used = 0;
}

/* Write the buffer, the pending record and (if ckpt) the checkpoint in
 * one transaction.  A failure marks the generation failed. */
static dv365_status gen_flush(dv365_store_gen *g, const void *ckpt, size_t ckpt_size,
                              bool with_ckpt)
{
    dv365_store *s = g->s;
    dv_gen_record saved = g->rec;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    dv365_status st = rc ? mdb_status(rc, s, "writing a generation") : DV365_OK;
    if (rc == 0) {
        st = write_buffered(g, txn);
        if (st == DV365_OK && (rc = write_record(s, txn, "pending", &g->rec)) != 0)
            st = mdb_status(rc, s, "writing a generation");
        if (st == DV365_OK && with_ckpt) {
            MDB_val k = str_val("checkpoint"), v = {ckpt_size, (void *)ckpt};
            if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
                st = mdb_status(rc, s, "writing a checkpoint");
        }
        st = txn_finish(s, txn, st, "committing a generation batch");
    }
    clear_buffer(g);
    if (st != DV365_OK) {
        g->rec = saved;
        g->state = GEN_FAILED;
    }
    return st;
}

dv365_status dv365_store_put(dv365_store_gen *g, uint64_t user_id, const uint8_t *blob,
                             size_t size)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    DV_CHECK_NULL(blob);
    dv365_status st = gen_usable(g, "dv365_store_put");
    if (st != DV365_OK)
        return st;
    dv_blob_header h;
    if ((st = dv_blob_parse(blob, size, &h)) != DV365_OK)
        return dv_error_context(st, "dv365_store_put: user %llu", (unsigned long long)user_id);
    if (g->rec.fingerprint != 0 && h.fingerprint != g->rec.fingerprint)
        return dv_error(DV365_E_MISMATCH,
                        "dv365_store_put: user %llu's blob has model fingerprint %016llx, the "
                        "generation %016llx",
                        (unsigned long long)user_id, (unsigned long long)h.fingerprint,
                        (unsigned long long)g->rec.fingerprint);
    if (g->k != 0 && (h.k != g->k || h.dim != g->dim))
        return dv_error(DV365_E_MISMATCH,
                        "dv365_store_put: user %llu's blob is %zu x %zu, the generation's are "
                        "%u x %u",
                        (unsigned long long)user_id, h.k, h.dim, g->k, g->dim);

    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 1024, old, bytes;
        if (!dv_mul_size(g->cap, sizeof *g->entries, &old) ||
            !dv_mul_size(cap, sizeof *g->entries, &bytes) ||
            !dv_grow((void **)&g->entries, old, bytes))
            return dv_error(DV365_E_NOMEM, "dv365_store_put: out of memory");
        g->cap = cap;
    }
    if (size > g->cap_bytes - g->used) {
        size_t cap = DV_MAX(g->cap_bytes * 2, g->used + size);
        cap = DV_MAX(cap, (size_t)1 << 20);
        if (!dv_grow((void **)&g->bytes, g->cap_bytes, cap))
            return dv_error(DV365_E_NOMEM, "dv365_store_put: out of memory");
        g->cap_bytes = cap;
    }
    memcpy(g->bytes + g->used, blob, size);
    g->entries[g->n++] = (put_entry){.key = user_id, .seq = g->seq++, .off = g->used, .size = size};
    g->used += size;
    g->k = (uint32_t)h.k;
    g->dim = (uint32_t)h.dim;
    if (g->used >= FLUSH_BYTES)
        return gen_flush(g, NULL, 0, false);
    return DV365_OK;
}

dv365_status dv365_store_checkpoint(dv365_store_gen *g, const void *data, size_t size)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    if (data == NULL && size != 0)
        return dv_error(DV365_E_NULL, "dv365_store_checkpoint: data is NULL but size is %zu", size);
    if (size > DV_STORE_MAX_CHECKPOINT)
        return dv_error(DV365_E_INVALID, "dv365_store_checkpoint: %zu bytes is above the %u limit",
                        size, DV_STORE_MAX_CHECKPOINT);
    dv365_status st = gen_usable(g, "dv365_store_checkpoint");
    if (st != DV365_OK)
        return st;
    return gen_flush(g, data ? data : "", size, true);
}

dv365_status dv365_store_generation_checkpoint(dv365_store_gen *g, void *buf, size_t cap,
                                               size_t *size)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    DV_CHECK_NULL(size);
    if (buf == NULL && cap != 0)
        return dv_error(DV365_E_NULL, "dv365_store_generation_checkpoint: buf is NULL");
    dv365_store *s = g->s;
    MDB_txn *txn;
    dv365_status st = read_txn_take(s, &txn);
    if (st != DV365_OK)
        return st;
    MDB_val k = str_val("checkpoint"), v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        st = dv_error(DV365_E_NOT_FOUND, "store %s: generation %llu has no checkpoint", s->path,
                      (unsigned long long)g->rec.number);
    else if (rc != 0)
        st = mdb_status(rc, s, "reading the checkpoint");
    else if (v.mv_size > cap)
        st = dv_error(DV365_E_BUFFER_TOO_SMALL,
                      "dv365_store_generation_checkpoint: the checkpoint has %zu bytes, the buffer "
                      "%zu",
                      v.mv_size, cap);
    else {
        if (v.mv_size)
            memcpy(buf, v.mv_data, v.mv_size);
        *size = v.mv_size;
    }
    read_txn_give(s, txn);
    return st;
}

dv365_status dv365_store_generation_info(const dv365_store_gen *g, uint64_t *generation,
                                         uint64_t *fingerprint, int64_t *created, size_t *stored)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    if (generation)
        *generation = g->rec.number;
    if (fingerprint)
        *fingerprint = g->rec.fingerprint;
    if (created)
        *created = g->rec.created;
    if (stored)
        *stored = (size_t)g->rec.count;
    return DV365_OK;
}

static void release_lock(dv365_store_gen *g)
{
    if (g->lock_fd >= 0) {
        close(g->lock_fd); /* drops the flock */
        g->lock_fd = -1;
    }
}

dv365_status dv365_store_commit_generation(dv365_store_gen *g)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    dv365_status st = gen_usable(g, "dv365_store_commit_generation");
    if (st != DV365_OK)
        return st;
    dv365_store *s = g->s;
    dv_gen_record saved = g->rec;

    /* The switch: the last puts, "current" = this generation, the pending
     * record and checkpoint gone, the old generation's slot emptied, all in
     * one transaction.  Readers holding older snapshots keep their pages. */
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return mdb_status(rc, s, "committing a generation");
    dv_gen_record cur;
    bool has;
    st = read_record(s, txn, "current", &cur, &has);
    if (st == DV365_OK)
        st = write_buffered(g, txn);
    if (st == DV365_OK &&
        ((rc = write_record(s, txn, "current", &g->rec)) != 0 ||
         (rc = delete_key(s, txn, "pending")) != 0 || (rc = delete_key(s, txn, "checkpoint")) != 0 ||
         (has && cur.slot != g->rec.slot && (rc = mdb_drop(txn, s->slot[cur.slot], 0)) != 0)))
        st = mdb_status(rc, s, "committing a generation");
    st = txn_finish(s, txn, st, "committing a generation");
    clear_buffer(g);
    if (st != DV365_OK) {
        g->rec = saved;
        g->state = GEN_FAILED;
        return st;
    }
    g->state = GEN_DONE;
    release_lock(g);
    return DV365_OK;
}

dv365_status dv365_store_abort_generation(dv365_store_gen *g)
{
    dv_clear_error();
    DV_CHECK_NULL(g);
    if (g->state == GEN_DONE)
        return dv_error(DV365_E_STATE,
                        "dv365_store_abort_generation: the generation was already committed or "
                        "aborted");
    dv365_store *s = g->s;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return mdb_status(rc, s, "aborting a generation");
    dv365_status st = DV365_OK;
    if ((rc = mdb_drop(txn, s->slot[g->rec.slot], 0)) != 0 ||
        (rc = delete_key(s, txn, "pending")) != 0 || (rc = delete_key(s, txn, "checkpoint")) != 0)
        st = mdb_status(rc, s, "aborting a generation");
    st = txn_finish(s, txn, st, "aborting a generation");
    if (st != DV365_OK)
        return st;
    clear_buffer(g);
    g->state = GEN_DONE;
    release_lock(g);
    return DV365_OK;
}

void dv365_store_generation_free(dv365_store_gen *g)
{
    if (g == NULL)
        return;
    release_lock(g);
    if (g->s->gen == g)
        g->s->gen = NULL;
    dv_free(g->entries);
    dv_free(g->bytes);
    dv_free(g);
}
