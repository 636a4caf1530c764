"""dv365 — Python binding of libdv365 (pure ctypes, numpy in and out).

    import dv365, numpy as np
    model = dv365.Model.init("configs/small.yaml", seed=42)   # or Model.load(dir)
    tl = dv365.Timeline(time=t, media_id=m, author_id=a, topic_id=tp,
                        action=["view", "like", ...], media_type="video",
                        surface="reels", duration_ms=dur, dwell_ms=dwell)
    U = model.embed(tl, cutoff)                  # [K, D] float32
    blob = dv365.blob_encode(model, U)           # the key-value store value
    U2, meta = dv365.blob_decode(blob, model)

Conventions:
  * Arrays in are numpy arrays (or sequences).  ndarrays must convert to the
    dtype the library wants without loss (float32 tensors: float64 is
    refused with DTypeError rather than silently rounded); non-contiguous
    arrays are copied.  Shapes are checked before calling C.
  * Every failure raises dv365.Error (.status: the dv365_status int, see
    dv365.Status; .message: the library's message).  Arguments refused by
    the binding raise its subclasses ArgumentError (also a ValueError) and
    DTypeError (also a TypeError).
  * Handles (Model, Config, Adapter, Trainer, Store, ...) free their C
    object on close(), at the end of a ``with`` block, or when collected.
  * Threads: ctypes releases the GIL during each call.  A Model, Encoder,
    Adapter or Store may be shared by threads (each thread gets its own
    scratch workspace automatically); a Trainer, a writer, a reader or a
    Generation belongs to one thread at a time.
  * The library is found through DV365_LIBRARY, a build tree above this
    package, the installed copy, or the loader path (see dv365._lib).
"""
from ._base import ArgumentError, DTypeError, Error, Status
from ._lib import lib as _lib
from .adapter import ADAPTER_KINDS, Adapter
from .data import (ExampleReader, ExampleWriter, TimelineReader, TimelineWriter, csv_to_examples,
                   csv_to_timelines)
from .model import FIELDS, VOCABS, Config, Encoder, Model, Timeline
from .quant import (Q4_METHODS, blob_decode, blob_encode, blob_inspect, blob_size, q4_dequantize,
                    q4_quantize, q4_row_bytes)
from .store import Generation, Store, StoreReader, generate
from .train import Trainer

__all__ = [
    "Error", "ArgumentError", "DTypeError", "Status", "version", "version_number", "library_path",
    "hash_row", "Config", "Timeline", "Model", "Encoder", "FIELDS", "VOCABS",
    "q4_row_bytes", "q4_quantize", "q4_dequantize", "blob_size", "blob_encode", "blob_inspect",
    "blob_decode", "Q4_METHODS", "Adapter", "ADAPTER_KINDS", "Trainer", "TimelineWriter",
    "TimelineReader", "ExampleWriter", "ExampleReader", "csv_to_timelines", "csv_to_examples",
    "Store", "StoreReader", "Generation", "generate",
]

#: Largest timestamp the library accepts (2100-01-01T00:00:00Z).
TIME_MAX = 4102444800


def version():
    """The version string of the loaded libdv365 ("0.1.0")."""
    return _lib.version_string().decode()


def version_number():
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded libdv365."""
    return _lib.version_number()


def library_path():
    """The path the binding loaded libdv365 from."""
    return _lib.path


def hash_row(id, rows):
    """The table row (0..rows-1) an id hashes to."""
    from ._base import size, u64
    return _lib.hash_row(u64(id, "id"), size(rows, "rows"))


__version__ = version()
