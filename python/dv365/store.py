"""The embedding store (user id -> blob, LMDB) and batch generation."""
import ctypes
import weakref

import numpy as np

from ._base import (DTypeError, Error, Handle, Status, as_bytes, check, fspath, i64,
                    new_handle, nthreads_arg, ptr, size, u64)
from ._lib import GENERATE_PROGRESS, GenerateOptions, lib
from .model import Model
from .quant import _method

READONLY = 1
NOSYNC = 2


def _info(fn, h):
    gen, fp, created = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_int64()
    count, k, dim = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
    check(fn(h, ctypes.byref(gen), ctypes.byref(fp), ctypes.byref(created), ctypes.byref(count),
             ctypes.byref(k), ctypes.byref(dim)))
    return {"generation": gen.value, "fingerprint": fp.value, "created": created.value,
            "count": count.value, "k": k.value, "dim": dim.value}


class Store(Handle):
    """An embedding store in directory path (created unless readonly).

    Reads (get, age, info, readers) may come from any number of threads.
    Open a store once per process and share the handle; close it after its
    readers and generations."""
    _free_fn = "store_close"

    def __init__(self, path, readonly=False, nosync=False, map_size=0):
        flags = (READONLY if readonly else 0) | (NOSYNC if nosync else 0)
        self._children = weakref.WeakSet()  # readers and generations: closed first
        super().__init__(new_handle(lib.store_open, fspath(path), flags, size(map_size, "map_size")))

    def close(self):
        if any(not c.closed for c in getattr(self, "_children", ())):
            raise Error(Status.E_STATE, "close the store's readers and generations first")
        super().close()

    @classmethod
    def open(cls, path, readonly=False, nosync=False, map_size=0):
        return cls(path, readonly=readonly, nosync=nosync, map_size=map_size)

    def info(self):
        """The current generation: dict(generation, fingerprint, created, count, k, dim)."""
        return _info(lib.store_info, self.ptr)

    def get(self, user_id):
        """user_id's blob (bytes) in the current generation (Error
        E_NOT_FOUND when absent)."""
        s, uid = self.ptr, u64(user_id, "user_id")
        inf = self.info()
        cap = max(lib.blob_size(inf["k"], inf["dim"]), 64)
        n = ctypes.c_size_t()
        for _ in range(3):  # a new generation may have committed since info()
            buf = np.empty(cap, dtype=np.uint8)
            st = lib.store_get(s, uid, ptr(buf), cap, ctypes.byref(n))
            if st != Status.E_BUFFER_TOO_SMALL:
                check(st)
                return buf[: n.value].tobytes()
            inf = self.info()
            cap = max(cap * 2, lib.blob_size(inf["k"], inf["dim"]))
        check(st)

    def age(self, user_id, now):
        """now - the creation time of user_id's blob, in seconds."""
        out = ctypes.c_int64()
        check(lib.store_age(self.ptr, u64(user_id, "user_id"), i64(now, "now"), ctypes.byref(out)))
        return out.value

    def reader(self):
        """A read snapshot for a request: ``with store.reader() as r: r.get(uid)``."""
        return StoreReader(self)

    def begin_generation(self, model=0, created=0):
        """Start writing generation current+1.  model: the Model (or its
        fingerprint; 0 = unchecked) every blob must come from; created:
        unix seconds.  ``with`` commits on success and aborts on an exception."""
        fp = model.fingerprint if isinstance(model, Model) else u64(model, "fingerprint")
        return Generation(self, new_handle(lib.store_begin_generation, self.ptr, fp, i64(created, "created")))

    def resume_generation(self):
        """Continue the uncommitted generation of an interrupted writer."""
        return Generation(self, new_handle(lib.store_resume_generation, self.ptr))

    def generate(self, model, timelines_path, cutoff, **options):
        """dv365.generate(model, timelines_path, cutoff, self, **options)."""
        return generate(model, timelines_path, cutoff, self, **options)


class StoreReader(Handle):
    """A snapshot of one generation, between begin() and end() (or inside
    ``with``).  Belongs to one thread."""
    _free_fn = "store_reader_free"

    def __init__(self, store):
        self.store = store
        super().__init__(new_handle(lib.store_reader_create, store.ptr))
        self._active = False
        store._children.add(self)

    def begin(self):
        check(lib.store_reader_begin(self.ptr))
        self._active = True

    def end(self):
        if self._active:
            self._active = False
            lib.store_reader_end(self.ptr)

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc):
        self.end()
        self.close()

    def close(self):
        if not self.closed:
            self.end()
        super().close()

    def info(self):
        return _info(lib.store_reader_info, self.ptr)

    def get(self, user_id):
        """user_id's blob in the snapshot (a copy, bytes)."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib.store_reader_get(self.ptr, u64(user_id, "user_id"), ctypes.byref(p), ctypes.byref(n)))
        return ctypes.string_at(p.value, n.value)


class Generation(Handle):
    """A generation being written: put(), checkpoint(), then commit() or
    abort().  ``with`` commits if the block succeeds, aborts otherwise."""
    _free_fn = "store_generation_free"

    def __init__(self, store, p):
        self.store = store
        super().__init__(p)
        self._done = False
        store._children.add(self)

    def put(self, user_id, blob):
        b = as_bytes(blob)
        check(lib.store_put(self.ptr, u64(user_id, "user_id"), ptr(b), b.size))

    def checkpoint(self, data=b""):
        """Write the buffered puts and data (<= 65536 bytes of progress) in one transaction."""
        b = as_bytes(data, "data")
        check(lib.store_checkpoint(self.ptr, ptr(b) if b.size else None, b.size))

    def checkpoint_data(self):
        """The last checkpoint's data (Error E_NOT_FOUND if none)."""
        cap = 65536
        buf = np.empty(cap, dtype=np.uint8)
        n = ctypes.c_size_t()
        check(lib.store_generation_checkpoint(self.ptr, ptr(buf), cap, ctypes.byref(n)))
        return buf[: n.value].tobytes()

    def info(self):
        gen, fp, created, stored = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_int64(), ctypes.c_size_t()
        check(lib.store_generation_info(self.ptr, ctypes.byref(gen), ctypes.byref(fp), ctypes.byref(created),
                                        ctypes.byref(stored)))
        return {"generation": gen.value, "fingerprint": fp.value, "created": created.value,
                "stored": stored.value}

    def commit(self):
        check(lib.store_commit_generation(self.ptr))
        self._done = True

    def abort(self):
        check(lib.store_abort_generation(self.ptr))
        self._done = True

    def __exit__(self, exc_type, *exc):
        try:
            if not self._done and not self.closed:
                if exc_type is None:
                    self.commit()
                else:
                    self.abort()
        finally:
            self.close()


def generate(model, timelines_path, cutoff, store, nthreads=1, batch=64, resume=False,
             method="minmax", created=0, progress=None):
    """Embed every user of a timeline file (history before cutoff) into a
    new, committed generation of store.  progress(done, total) after each
    checkpoint; a truthy return stops (Error E_STATE) leaving the
    generation pending (resume=True continues it)."""
    if not isinstance(model, Model):
        raise DTypeError(Status.E_INVALID, "model must be a dv365.Model")
    if not isinstance(store, Store):
        raise DTypeError(Status.E_INVALID, "store must be a dv365.Store")
    opt = GenerateOptions()
    lib.generate_options_init(ctypes.byref(opt))
    if opt.struct_size != ctypes.sizeof(GenerateOptions):
        raise Error(Status.E_VERSION, "dv365_generate_options is %d bytes in %s, %d in this binding"
                    % (opt.struct_size, lib.path, ctypes.sizeof(GenerateOptions)))
    opt.nthreads = nthreads_arg(nthreads)
    opt.batch = size(batch, "batch")
    opt.resume = 1 if resume else 0
    opt.method = _method(method)
    opt.created = i64(created, "created")
    raised = []

    def cb(_ctx, done, total):
        try:
            return 1 if progress(done, total) else 0
        except BaseException as e:
            raised.append(e)
            return 1

    fn = None
    if progress is not None:
        fn = GENERATE_PROGRESS(cb)  # kept alive until the call returns
        opt.progress = ctypes.cast(fn, ctypes.c_void_p)
    st = lib.generate(model.ptr, fspath(timelines_path), i64(cutoff, "cutoff"), store.ptr, ctypes.byref(opt))
    if raised:
        raise raised[0]
    check(st)
