"""Config, Timeline, Model and Encoder."""
import ctypes
import threading
import weakref

import numpy as np

from ._base import (ArgumentError, Closing, DTypeError, Error, Handle, Status, array, check,
                    cstr, fspath, i64, new_handle, nthreads_arg, ptr, u64, workspace)
from ._lib import lib

#: The categorical vocabularies of an event (dv365_vocab).
VOCABS = {"action": 0, "media_type": 1, "surface": 2}


def _vocab_index(which):
    if isinstance(which, str):
        if which not in VOCABS:
            raise ArgumentError(Status.E_INVALID, "unknown vocabulary %r (one of %s)" % (which, ", ".join(VOCABS)))
        return VOCABS[which]
    i = int(which)
    if i not in VOCABS.values():
        raise ArgumentError(Status.E_INVALID, "unknown vocabulary %d" % i)
    return i


class Config(Handle):
    """A parsed YAML configuration (read-only, shareable between threads).

    ``Config.load(path)`` / ``Config.parse(text)`` own their handle;
    ``model.config`` borrows the model's (valid while the model is open)."""
    _free_fn = "config_free"

    def __init__(self, p, owner=None):
        super().__init__(p)
        self._owner = owner  # a Model when borrowed

    @classmethod
    def load(cls, path):
        return cls(new_handle(lib.config_load, fspath(path)))

    @classmethod
    def parse(cls, text):
        b = text.encode() if isinstance(text, str) else bytes(text)
        return cls(new_handle(lib.config_parse, b, len(b)))

    @property
    def ptr(self):
        if self._owner is not None:
            self._owner.ptr  # raises if the model was closed
        return super().ptr

    @property
    def closed(self):
        return super().closed or (self._owner is not None and self._owner.closed)

    def close(self):
        if self._owner is not None:  # borrowed: the model frees it
            self._ptr = None
            return
        super().close()

    @property
    def dim(self):
        return lib.config_dim(self.ptr)

    @property
    def num_slices(self):
        return lib.config_num_slices(self.ptr)

    @property
    def slice_names(self):
        p = self.ptr
        return [cstr(lib.config_slice_name(p, i)) for i in range(lib.config_num_slices(p))]

    def slice_index(self, name):
        out = ctypes.c_size_t()
        check(lib.config_slice_index(self.ptr, name.encode(), ctypes.byref(out)))
        return out.value

    @property
    def tables(self):
        """[(name, rows)] of the pooling tables, in config order."""
        p = self.ptr
        return [(cstr(lib.config_table_name(p, i)), lib.config_table_rows(p, i))
                for i in range(lib.config_num_tables(p))]

    def vocab(self, which):
        """The names of a vocabulary ('action', 'media_type' or 'surface'), by code."""
        v, p = _vocab_index(which), self.ptr
        return [cstr(lib.config_code_name(p, v, c)) for c in range(lib.config_vocab_size(p, v))]

    def code(self, which, name):
        out = ctypes.c_int32()
        check(lib.config_code(self.ptr, _vocab_index(which), name.encode(), ctypes.byref(out)))
        return out.value

    def code_name(self, which, code):
        s = lib.config_code_name(self.ptr, _vocab_index(which), code)
        if s is None:
            raise Error(Status.E_NOT_FOUND, "%s code %d is not in the vocabulary" % (which, code))
        return cstr(s)

    def codes(self, which, names):
        """An array of names -> int32 codes (Error E_NOT_FOUND for an unknown name)."""
        names = np.asarray(names)
        uniq, inv = np.unique(names, return_inverse=True)
        table = np.array([self.code(which, str(u)) for u in uniq], dtype=np.int32)
        return table[inv].reshape(names.shape) if len(uniq) else np.zeros(names.shape, np.int32)

    @property
    def tasks(self):
        """[(name, is_binary)] of the backbone's training tasks, in logit order."""
        p = self.ptr
        return [(cstr(lib.config_task_name(p, t)), lib.config_task_is_binary(p, t) == 1)
                for t in range(lib.config_num_tasks(p))]

    @property
    def num_tasks(self):
        return lib.config_num_tasks(self.ptr)

    @property
    def num_dense(self):
        return lib.config_num_dense(self.ptr)


def as_config(x):
    """A Config from a Config, a Model (its config) or a YAML path."""
    if isinstance(x, Config):
        return x
    if isinstance(x, Model):
        return x.config
    return Config.load(x)


# ---------------------------------------------------------------- Timeline --

_INT_COLS = (("time", np.int64), ("media_id", np.uint64), ("author_id", np.uint64), ("topic_id", np.uint64))
_VOCAB_COLS = ("action", "media_type", "surface")
_FLOAT_COLS = ("duration_ms", "dwell_ms")
FIELDS = tuple(c for c, _ in _INT_COLS) + _VOCAB_COLS + _FLOAT_COLS


def _int_column(x, name, dtype, n):
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "M" and name == "time":  # datetime64 -> unix seconds
            a = a.astype("datetime64[s]").astype(np.int64)
        elif a.size:
            raise DTypeError(Status.E_INVALID, "%s must hold integers, got %s" % (name, a.dtype.name))
        else:
            a = a.astype(np.int64)
    if a.size and a.dtype != dtype:
        info = np.iinfo(dtype)
        lo, hi = int(a.min()), int(a.max())
        if lo < info.min or hi > info.max:
            raise ArgumentError(Status.E_INVALID, "%s holds %d, outside the range of %s"
                                % (name, lo if lo < info.min else hi, np.dtype(dtype).name))
    return a.astype(dtype)


def _column(name, x, n):
    """One event column, converted, 1-D of length n (scalars broadcast)."""
    if name in _VOCAB_COLS:
        a = np.asarray(x)
        if a.dtype.kind in "US" or (a.dtype.kind == "O" and all(isinstance(v, (str, bytes)) for v in a.flat)):
            a = a.astype(str)
        else:
            a = _int_column(a, name, np.int32, n)
    elif name in _FLOAT_COLS:
        a = np.asarray(x)
        if a.dtype.kind not in "iufb" and a.size:
            raise DTypeError(Status.E_INVALID, "%s must hold numbers, got %s" % (name, a.dtype.name))
        a = a.astype(np.float32)
    else:
        a = _int_column(x, name, dict(_INT_COLS)[name], n)
    if a.ndim == 0:
        a = np.full(n, a[()], dtype=a.dtype)
    if a.ndim != 1 or a.shape[0] != n:
        raise ArgumentError(Status.E_MISMATCH, "%s has shape %s; expected [%d] like time"
                            % (name, list(a.shape), n))
    return np.ascontiguousarray(a)


class Timeline(Closing):
    """One user's events, as columns (numpy arrays or sequences):

    ``Timeline(time=, media_id=, author_id=, topic_id=, action=, media_type=,
    surface=, duration_ms=, dwell_ms=)``

    time: unix seconds (int64, or datetime64); ids: non-negative integers
    (uint64); action / media_type / surface: int codes of the config's
    vocabularies OR their names (str), resolved through the config of the
    model the timeline is first used with (an unknown name raises
    Error E_NOT_FOUND then); duration_ms / dwell_ms: numbers (float32).
    Every column but time may also be a scalar, repeated for every event.
    Events need not be in time order.

    The C timeline needs a config, so it is built lazily, once per config it
    is used with, and cached (validation errors of the library surface at
    that first use).  A timeline read from a file (TimelineReader) lives in
    C only: its columns are not available from Python.
    """

    def __init__(self, time, media_id, author_id, topic_id, action, media_type, surface,
                 duration_ms, dwell_ms):
        t = np.asarray(time)
        if t.ndim != 1:
            raise ArgumentError(Status.E_MISMATCH, "time must be 1-D, got shape %s" % list(t.shape))
        n = t.shape[0]
        given = dict(time=time, media_id=media_id, author_id=author_id, topic_id=topic_id,
                     action=action, media_type=media_type, surface=surface,
                     duration_ms=duration_ms, dwell_ms=dwell_ms)
        self._cols = {f: _column(f, given[f], n) for f in FIELDS}
        for a in self._cols.values():
            a.flags.writeable = False
        self._n = n
        self._native = None   # (Config, handle) for a timeline from a file
        self._handles = {}    # id(Config) -> (Config, handle)
        self._lock = threading.Lock()

    @classmethod
    def _wrap(cls, handle, config):
        self = cls.__new__(cls)
        self._cols = None
        self._n = lib.timeline_size(handle)
        self._native = (config, handle)
        self._handles = {}
        self._lock = threading.Lock()
        return self

    def __len__(self):
        return self._n

    def __repr__(self):
        return "<dv365.Timeline of %d events%s>" % (self._n, " (from a file)" if self._native else "")

    def column(self, name):
        """A read-only column by name (see FIELDS)."""
        if name not in FIELDS:
            raise ArgumentError(Status.E_INVALID, "unknown column %r" % name)
        if self._cols is None:
            raise Error(Status.E_STATE, "a timeline read from a file keeps its events in C")
        return self._cols[name]

    def handle(self, config):
        """The dv365_timeline* of this timeline for config (built on first use)."""
        with self._lock:
            if self._native is not None:
                if self._native[0].closed:
                    raise Error(Status.E_STATE, "the config of this file timeline is closed")
                return self._native[1]
            for key in [k for k, (c, _) in self._handles.items() if c.closed]:
                lib.timeline_free(self._handles.pop(key)[1])  # its config is gone
            entry = self._handles.get(id(config))
            if entry is not None:
                return entry[1]
            cfg = config.ptr
            h = new_handle(lib.timeline_create, cfg)
            try:
                if self._n:
                    c = self._cols
                    voc = [c[f] if c[f].dtype == np.int32 else config.codes(f, c[f]) for f in _VOCAB_COLS]
                    check(lib.timeline_append(h, self._n, ptr(c["time"]), ptr(c["media_id"]),
                                              ptr(c["author_id"]), ptr(c["topic_id"]), ptr(voc[0]),
                                              ptr(voc[1]), ptr(voc[2]), ptr(c["duration_ms"]),
                                              ptr(c["dwell_ms"])))
            except BaseException:
                lib.timeline_free(h)
                raise
            self._handles[id(config)] = (config, h)
            return h

    def close(self):
        """Free the C timelines (the columns stay; they are rebuilt on use)."""
        with self._lock:
            for _, h in self._handles.values():
                lib.timeline_free(h)
            self._handles = {}
            if self._native is not None:
                lib.timeline_free(self._native[1])
                self._native = (self._native[0], None)


def _column_property(name):
    return property(lambda self: self.column(name), doc="the %s column (read-only)" % name)


for _f in FIELDS:
    setattr(Timeline, _f, _column_property(_f))


def _timeline_handles(timelines, config, what="timelines"):
    if isinstance(timelines, Timeline):
        raise ArgumentError(Status.E_INVALID, "%s must be a sequence of Timeline" % what)
    tls = list(timelines)
    for i, t in enumerate(tls):
        if not isinstance(t, Timeline):
            raise DTypeError(Status.E_INVALID, "%s[%d] is a %s, not a dv365.Timeline" % (what, i, type(t).__name__))
    handles = (ctypes.c_void_p * max(1, len(tls)))(*[t.handle(config) for t in tls])
    return tls, handles


def _encode(enc, n, d, k, X, nthreads):
    X = array(X, np.float32, "X", [(n, d), (None, n, d)])
    single = X.ndim == 2
    b = 1 if single else X.shape[0]
    U = np.empty((b, k, d), dtype=np.float32)
    check(lib.encode(enc, workspace(), b, ptr(X), ptr(U), nthreads_arg(nthreads)))
    return U[0] if single else U


# ------------------------------------------------------------------- Model --

class Model(Handle):
    """Config + pooling tables + encoder (+ the training backbone), saved as
    a directory.  Read-only while it embeds: share one between threads
    (each thread gets its own workspace)."""
    _free_fn = "model_free"

    def __init__(self, p):
        super().__init__(p)
        self._config = None
        self._trainers = weakref.WeakSet()

    @classmethod
    def init(cls, config_path, seed=0):
        """A fresh model with seeded weights (pooler seed, encoder seed + 1)."""
        return cls(new_handle(lib.model_init, fspath(config_path), u64(seed, "seed")))

    @classmethod
    def load(cls, path):
        """Load a model directory (config.yaml + weights.safetensors)."""
        return cls(new_handle(lib.model_load, fspath(path)))

    def save(self, path):
        check(lib.model_save(self.ptr, fspath(path)))

    def close(self):
        if any(not t.closed for t in self._trainers):
            raise Error(Status.E_STATE, "close the Trainer of this model first")
        if self._config is not None:
            self._config.close()
        super().close()

    @property
    def config(self):
        """The model's Config (borrowed: valid while the model is open)."""
        if self._config is None:
            self._config = Config(lib.model_config(self.ptr), owner=self)
        return self._config

    @property
    def num_slices(self):
        return lib.model_num_slices(self.ptr)

    @property
    def dim(self):
        return lib.model_dim(self.ptr)

    @property
    def num_tokens(self):
        return lib.model_num_tokens(self.ptr)

    @property
    def fingerprint(self):
        """XXH64 of the config and weights (what blobs carry), an int."""
        return lib.model_fingerprint(self.ptr)

    @property
    def slice_names(self):
        return self.config.slice_names

    def table(self, which):
        """A copy of pooling table ``which`` (index or name): [rows, D] float32."""
        if isinstance(which, str):
            names = [n for n, _ in self.config.tables]
            if which not in names:
                raise Error(Status.E_NOT_FOUND, "no table %r (tables: %s)" % (which, ", ".join(names)))
            which = names.index(which)
        data, rows = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib.pooler_table(lib.model_pooler(self.ptr), which, ctypes.byref(data), ctypes.byref(rows)))
        n = rows.value * self.dim
        return np.ctypeslib.as_array((ctypes.c_float * n).from_address(data.value)).reshape(rows.value, self.dim).copy()

    def pool(self, timeline, cutoff):
        """Pool the events strictly before cutoff: (X [N, D] float32,
        counts [N] uint32 events per slice)."""
        if not isinstance(timeline, Timeline):
            raise DTypeError(Status.E_INVALID, "timeline must be a dv365.Timeline")
        m = self.ptr
        X = np.empty((self.num_slices, self.dim), dtype=np.float32)
        counts = np.empty(self.num_slices, dtype=np.uint32)
        check(lib.pool_forward(lib.model_pooler(m), workspace(), timeline.handle(self.config),
                               i64(cutoff, "cutoff"), ptr(X), ptr(counts), None))
        return X, counts

    def encode(self, X, nthreads=1):
        """X [N, D] or [B, N, D] float32 -> U [K, D] or [B, K, D]."""
        return _encode(lib.model_encoder(self.ptr), self.num_slices, self.dim, self.num_tokens,
                       X, nthreads)

    def embed(self, timelines, cutoffs, nthreads=1):
        """Pool and encode: one Timeline and a cutoff -> U [K, D]; a sequence
        of B timelines and one cutoff or B cutoffs -> U [B, K, D]."""
        single = isinstance(timelines, Timeline)
        tls, handles = _timeline_handles([timelines] if single else timelines, self.config)
        b = len(tls)
        c = np.asarray(cutoffs)
        if c.ndim == 0:
            c = np.full(b, i64(cutoffs, "cutoff"), dtype=np.int64)
        else:
            c = array(cutoffs, np.int64, "cutoffs", [(b,)])
        U = np.empty((b, self.num_tokens, self.dim), dtype=np.float32)
        check(lib.model_embed(self.ptr, workspace(), b, handles, ptr(c), ptr(U), nthreads_arg(nthreads)))
        return U[0] if single else U


class Encoder(Handle):
    """A standalone user encoder (the model carries one already):
    X [N, D] pooled slices -> U [K, D].  Read-only while encoding."""
    _free_fn = "encoder_free"

    def __init__(self, p, config):
        super().__init__(p)
        self._n, self._d = config.num_slices, config.dim  # the encoder copies the config

    @classmethod
    def create(cls, config, seed=0):
        cfg = as_config(config)
        return cls(new_handle(lib.encoder_create, cfg.ptr, u64(seed, "seed")), cfg)

    @classmethod
    def load(cls, config, path):
        cfg = as_config(config)
        return cls(new_handle(lib.encoder_load, cfg.ptr, fspath(path)), cfg)

    def save(self, path):
        check(lib.encoder_save(self.ptr, fspath(path)))

    @property
    def num_tokens(self):
        return lib.encoder_num_tokens(self.ptr)

    @property
    def num_params(self):
        return lib.encoder_num_params(self.ptr)

    def encode(self, X, nthreads=1):
        return _encode(self.ptr, self._n, self._d, self.num_tokens, X, nthreads)
