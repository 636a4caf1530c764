"""4-bit rowwise quantization and the embedding blob (the store's value)."""
import ctypes
import time as _time

import numpy as np

from ._base import ArgumentError, Status, array, as_bytes, check, i64, ptr, size, u64
from ._lib import lib

#: dv365_q4_method by name.
Q4_METHODS = {"minmax": 0, "greedy": 1}


def _method(method):
    if isinstance(method, str):
        if method not in Q4_METHODS:
            raise ArgumentError(Status.E_INVALID, "method must be one of %s, got %r"
                                % (", ".join(Q4_METHODS), method))
        return Q4_METHODS[method]
    if method not in Q4_METHODS.values():
        raise ArgumentError(Status.E_INVALID, "unknown q4 method %r" % (method,))
    return int(method)


def q4_row_bytes(dim):
    """Bytes of one quantized row: ceil(dim/2) + 4 (0 for dim 0)."""
    return lib.q4_row_bytes(size(dim, "dim"))


def q4_quantize(x, method="minmax"):
    """x [rows, D] (or [D]) float32 -> uint8 [rows, ceil(D/2)+4] (or
    [ceil(D/2)+4]): FBGEMM's fused 4-bit rowwise rows (codes, fp16 scale,
    fp16 bias).  method "minmax" (bytes of PyTorch's
    embedding_bag_4bit_prepack) or "greedy" (lower error)."""
    x = array(x, np.float32, "x", [(None,), (None, None)])
    single = x.ndim == 1
    x2 = x.reshape(1, -1) if single else x
    rows, dim = x2.shape
    m = _method(method)
    rb = lib.q4_row_bytes(dim)
    out = np.empty((rows, rb), dtype=np.uint8)
    check(lib.q4_quantize(ptr(x2), rows, dim, m, ptr(out), out.size))
    return out[0] if single else out


def q4_dequantize(q, dim):
    """Rows made by q4_quantize -> float32 [rows, dim] (a 1-D q of one
    row -> [dim]).  q may also be bytes holding whole rows."""
    dim = size(dim, "dim")
    rb = lib.q4_row_bytes(dim)
    if rb == 0:
        raise ArgumentError(Status.E_INVALID, "dim must be > 0")
    if isinstance(q, np.ndarray) and q.ndim == 2:
        q = array(q, np.uint8, "q", [(None, rb)])
        rows, single = q.shape[0], False
    else:
        one_d = isinstance(q, np.ndarray)
        q = as_bytes(q, "q")
        if q.size % rb:
            raise ArgumentError(Status.E_MISMATCH, "q holds %d bytes, not a whole number of %d-byte rows of dim %d"
                                % (q.size, rb, dim))
        rows = q.size // rb
        single = one_d and rows == 1
    out = np.empty((rows, dim), dtype=np.float32)
    check(lib.q4_dequantize(ptr(q), q.size, rows, dim, ptr(out)))
    return out[0] if single else out


def blob_size(k, dim):
    """Total bytes of a blob of k rows of dim (0 when invalid)."""
    return lib.blob_size(size(k, "k"), size(dim, "dim"))


def _fingerprint(model):
    from .model import Model
    if isinstance(model, Model):
        return model.fingerprint
    if model is None:
        return 0
    return u64(model, "fingerprint")


def blob_encode(model, U, created=None, method="minmax"):
    """The key-value-store value of an embedding U [K, D] made by model (a
    Model, or its fingerprint as an int; 0 = unknown): bytes.  created is
    unix seconds (default: now)."""
    U = array(U, np.float32, "U", [(None, None)])
    fp = _fingerprint(model)
    if created is None:
        created = int(_time.time())
    k, dim = U.shape
    n = lib.blob_size(k, dim)
    if n == 0:
        raise ArgumentError(Status.E_INVALID, "U of shape %s cannot make a blob" % list(U.shape))
    out = np.empty(n, dtype=np.uint8)
    check(lib.blob_encode(ptr(U), k, dim, fp, i64(created, "created"), _method(method), ptr(out), n))
    return out.tobytes()


def blob_inspect(blob):
    """Validate a blob and return its header: dict(fingerprint, created, k, dim)."""
    b = as_bytes(blob)
    fp, created = ctypes.c_uint64(), ctypes.c_int64()
    k, dim = ctypes.c_size_t(), ctypes.c_size_t()
    check(lib.blob_inspect(ptr(b), b.size, ctypes.byref(fp), ctypes.byref(created),
                           ctypes.byref(k), ctypes.byref(dim)))
    return {"fingerprint": fp.value, "created": created.value, "k": k.value, "dim": dim.value}


def blob_decode(blob, model=None):
    """blob -> (U [K, D] float32, meta dict(fingerprint, created, k, dim)).
    With model (a Model or a fingerprint int), the blob must have been made
    by it (and, for a Model, be K x D of it): Error E_MISMATCH otherwise."""
    b = as_bytes(blob)
    meta = blob_inspect(b)
    k, dim = meta["k"], meta["dim"]
    from .model import Model
    if isinstance(model, Model):
        k, dim = model.num_tokens, model.dim
    U = np.empty((k, dim), dtype=np.float32)
    check(lib.blob_decode(ptr(b), b.size, _fingerprint(model), k, dim, ptr(U)))
    return U, meta
