"""st.py -- a tiny pure-Python (numpy) safetensors reader/writer.

Reference scripts import it to exchange tensors with the C tests:

    import st
    st.save("x.safetensors", {"encoder.pos": pos}, metadata={"format": "pt"})
    tensors = st.load("x.safetensors")              # dict name -> numpy array
    tensors, meta = st.load_file("x.safetensors")   # ... plus the __metadata__ dict

The byte layout is the one in docs/weights.md and matches lib/safetensors.c:
the same tensors and metadata give byte-identical files from both writers
(compact JSON, "__metadata__" first, tensors in insertion order, no padding
between tensors, header padded with spaces to a multiple of 8).  The reader checks
the same rules as the C one (it is used to check files the C library writes).
"""

import json
import os
import struct

import numpy as np

DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "U8": np.dtype("u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
    "F64": np.dtype("<f8"),
}
_NAMES = {dt: name for name, dt in DTYPES.items()}
MAX_HEADER = 100 << 20
METADATA_KEY = "__metadata__"


class FormatError(ValueError):
    """A malformed safetensors file."""


def _dtype_name(arr):
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    for known, name in _NAMES.items():
        if dt == known:
            return name
    raise TypeError("unsupported dtype %s (supported: %s)" % (arr.dtype, " ".join(DTYPES)))


def dumps(tensors, metadata=None):
    """The file bytes for a dict name -> array (insertion order kept)."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata keys and values must be strings")
        header[METADATA_KEY] = dict(metadata)
    blobs, offset = [], 0
    for name, arr in tensors.items():
        if name == METADATA_KEY:
            raise ValueError("%r is reserved" % name)
        arr = np.asarray(arr)
        dname = _dtype_name(arr)
        data = np.ascontiguousarray(arr, dtype=DTYPES[dname]).tobytes()
        header[name] = {
            "dtype": dname,
            "shape": [int(d) for d in arr.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save(path, tensors, metadata=None):
    """Write atomically: temp file in the same directory, fsync, rename."""
    data = dumps(tensors, metadata)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise FormatError("duplicate key %r" % k)
        out[k] = v
    return out


def _reject_constant(name):
    raise FormatError("%s is not allowed" % name)


def _reject_float(text):
    raise FormatError("non-integer number %s" % text)


def loads(buf):
    """(tensors, metadata) from file bytes; tensors in data-offset order."""
    buf = bytes(buf)
    if len(buf) < 8:
        raise FormatError("file is %d bytes, shorter than 8" % len(buf))
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > MAX_HEADER:
        raise FormatError("header length %d exceeds 100 MiB" % hlen)
    if hlen > len(buf) - 8:
        raise FormatError("header length %d larger than the %d bytes after it" % (hlen, len(buf) - 8))
    raw = buf[8:8 + hlen]
    text = raw.rstrip(b" ")
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_float=_reject_float, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError("invalid JSON header: %s" % e) from None
    if not isinstance(header, dict):
        raise FormatError("the header must be a JSON object")
    data = buf[8 + hlen:]
    metadata = header.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError("__metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError("tensor %r: needs exactly dtype, shape, data_offsets" % name)
        if info["dtype"] not in DTYPES:
            raise FormatError("tensor %r: unsupported dtype %r" % (name, info["dtype"]))
        shape, offs = info["shape"], info["data_offsets"]
        ints = lambda xs: isinstance(xs, list) and all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64 for x in xs)
        if not ints(shape) or len(shape) > 8:
            raise FormatError("tensor %r: bad shape %r" % (name, shape))
        if not ints(offs) or len(offs) != 2:
            raise FormatError("tensor %r: bad data_offsets %r" % (name, offs))
        dt = DTYPES[info["dtype"]]
        nbytes = int(np.prod(shape, dtype=object)) * dt.itemsize
        if nbytes >= 2**64:
            raise FormatError("tensor %r: size overflows" % name)
        if offs[1] < offs[0] or offs[1] - offs[0] != nbytes:
            raise FormatError("tensor %r: data_offsets %r do not match %s %r" % (name, offs, info["dtype"], shape))
        if offs[1] > len(data):
            raise FormatError("tensor %r: data_offsets out of bounds" % name)
        entries.append((offs[0], offs[1], len(entries), name, dt, shape))
    entries.sort()
    at, tensors = 0, {}
    for begin, end, _, name, dt, shape in entries:
        if begin != at:
            raise FormatError("tensor %r: %s at byte %d" % (name, "overlap" if begin < at else "gap", begin))
        tensors[name] = np.frombuffer(data, dtype=dt, count=(end - begin) // dt.itemsize,
                                      offset=begin).reshape(shape).copy()
        at = end
    if at != len(data):
        raise FormatError("%d bytes of trailing data" % (len(data) - at))
    return tensors, metadata


def load_file(path):
    """(tensors, metadata) of a file."""
    with open(path, "rb") as f:
        return loads(f.read())


def load(path):
    """dict name -> numpy array, in file order."""
    return load_file(path)[0]
