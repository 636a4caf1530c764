"""Errors, argument checks, handles and the per-thread workspace."""
import ctypes
import enum
import operator
import os
import threading

import numpy as np

from ._lib import lib


class Status(enum.IntEnum):
    """dv365_status: pinned values of include/dv365.h."""
    OK = 0
    E_NULL = -1
    E_INVALID = -2
    E_NONFINITE = -3
    E_NOMEM = -4
    E_IO = -5
    E_PARSE = -6
    E_CONFIG = -7
    E_NOT_FOUND = -8
    E_FORMAT = -9
    E_CHECKSUM = -10
    E_VERSION = -11
    E_MISMATCH = -12
    E_TIMESTAMP = -13
    E_BUFFER_TOO_SMALL = -14
    E_THREAD = -15
    E_STATE = -16
    E_INTERNAL = -99


class Error(Exception):
    """A failed libdv365 call, or an argument the binding refused before
    calling C.  ``status`` is the dv365_status (an int, see Status) and
    ``message`` the library's message (dv365_last_error())."""

    def __init__(self, status, message):
        self.status = int(status)
        self.message = message
        super().__init__(self.status, message)

    @property
    def status_string(self):
        """The library's short description of the status."""
        s = lib.status_string(self.status)
        return s.decode() if s else str(self.status)

    def __str__(self):
        try:
            name = Status(self.status).name
        except ValueError:
            name = str(self.status)
        return "%s (%s): %s" % (self.status_string, name, self.message)


class ArgumentError(Error, ValueError):
    """A shape, size or value refused by the binding before calling C
    (status E_MISMATCH for shapes, E_INVALID otherwise)."""


class DTypeError(Error, TypeError):
    """An array whose dtype cannot be converted without loss (status E_INVALID)."""


def check(st):
    """Raise Error for a non-zero dv365_status, with this thread's message."""
    if st != 0:
        msg = lib.last_error()
        raise Error(st, msg.decode("utf-8", "replace") if msg else "")


# ------------------------------------------------------------- arguments --

def fspath(path):
    """A path argument as bytes for C."""
    try:
        return os.fsencode(path)
    except TypeError:
        raise DTypeError(Status.E_INVALID, "expected a path (str, bytes or os.PathLike), got %s"
                         % type(path).__name__) from None


def integer(v, name, lo, hi):
    try:
        i = operator.index(v)
    except TypeError:
        raise DTypeError(Status.E_INVALID, "%s must be an integer, got %s" % (name, type(v).__name__)) from None
    if not lo <= i <= hi:
        raise ArgumentError(Status.E_INVALID, "%s = %d is outside [%d, %d]" % (name, i, lo, hi))
    return i


def u64(v, name):
    return integer(v, name, 0, 2**64 - 1)


def i64(v, name):
    return integer(v, name, -2**63, 2**63 - 1)


def size(v, name):
    return integer(v, name, 0, 2**64 - 1)


def nthreads_arg(v):
    return integer(v, "nthreads", 1, 1 << 20)


def _shape_str(shape):
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def array(x, dtype, name, shapes=None):
    """x as a C-contiguous array of dtype, checked against shapes (a list of
    allowed shapes, None = any size in that axis).

    Float targets: an ndarray must convert without loss (numpy's 'safe'
    casting: a float64 array is refused rather than silently rounded and
    copied); lists and other sequences of numbers are converted.  Integer
    targets: any integer array or sequence whose values fit (ids given as
    int64 arrays are fine, negative ids are not); floats are refused."""
    dtype = np.dtype(dtype)
    try:
        a = x if isinstance(x, np.ndarray) else np.asarray(x)
    except (TypeError, ValueError) as e:
        raise DTypeError(Status.E_INVALID, "%s: cannot convert to an array: %s" % (name, e)) from None
    if a.dtype != dtype and a.size:
        k = a.dtype.kind
        if dtype.kind in "iu":
            if k not in "iub":
                raise DTypeError(Status.E_INVALID, "%s must hold integers (%s), got %s"
                                 % (name, dtype.name, a.dtype.name))
            info = np.iinfo(dtype)
            lo, hi = int(a.min()), int(a.max())
            if lo < info.min or hi > info.max:
                raise ArgumentError(Status.E_INVALID, "%s holds %d, outside the range of %s"
                                    % (name, lo if lo < info.min else hi, dtype.name))
        elif k not in "iufb":
            raise DTypeError(Status.E_INVALID, "%s must hold numbers (%s), got %s" % (name, dtype.name, a.dtype.name))
        elif isinstance(x, np.ndarray) and not np.can_cast(a.dtype, dtype, "safe"):
            raise DTypeError(Status.E_INVALID, "%s must be %s (got %s; convert it with .astype(np.%s))"
                             % (name, dtype.name, a.dtype.name, dtype.name))
    if shapes is not None:
        ok = False
        for shape in shapes:
            if a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape)):
                ok = True
                break
        if not ok:
            raise ArgumentError(Status.E_MISMATCH, "%s has shape %s, expected %s" % (
                name, list(a.shape), " or ".join(_shape_str(s) for s in shapes)))
    if a.dtype != dtype or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=dtype)
    return a


def as_bytes(blob, name="blob"):
    """bytes, bytearray, memoryview or a uint8 array -> a uint8 array (no copy when possible)."""
    if isinstance(blob, np.ndarray):
        return array(blob, np.uint8, name).reshape(-1)
    try:
        mv = memoryview(blob)
    except TypeError:
        raise DTypeError(Status.E_INVALID, "%s must be bytes-like or a uint8 array, got %s"
                         % (name, type(blob).__name__)) from None
    return np.frombuffer(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv, dtype=np.uint8)


def ptr(arr):
    """The data pointer of a numpy array for a c_void_p argument (None -> NULL)."""
    return None if arr is None else arr.ctypes.data


# --------------------------------------------------------------- handles --

class Closing:
    """close() by the context manager or by garbage collection (the class
    defines close)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class Handle(Closing):
    """An owned C handle: close() (or the context manager, or garbage
    collection) frees it once; using it afterwards raises Error(E_STATE)."""
    _free_fn = None  # name of the lib function that frees the handle

    def __init__(self, p):
        self._ptr = p

    @property
    def ptr(self):
        p = getattr(self, "_ptr", None)
        if not p:
            raise Error(Status.E_STATE, "%s is closed" % type(self).__name__)
        return p

    @property
    def closed(self):
        return not getattr(self, "_ptr", None)

    def close(self):
        p = getattr(self, "_ptr", None)
        if p:
            self._ptr = None
            getattr(lib, self._free_fn)(p)



def new_handle(fn, *args):
    """Call a C constructor whose last argument is the handle out-pointer."""
    out = ctypes.c_void_p()
    check(fn(*args, ctypes.byref(out)))
    return out.value


class _Workspace(Handle):
    _free_fn = "workspace_free"


_tls = threading.local()


def workspace():
    """This thread's scratch workspace (dv365 workspaces belong to one
    thread; one per thread serves every model, encoder and adapter)."""
    ws = getattr(_tls, "ws", None)
    if ws is None:
        ws = _Workspace(new_handle(lib.workspace_create))
        _tls.ws = ws
    return ws.ptr


def cstr(p):
    return p.decode("utf-8", "replace") if p is not None else None
