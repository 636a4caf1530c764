"""check_safetensors.py -- C <-> Python safetensors compatibility.

Usage: check_safetensors.py PATH/TO/test_safetensors

The C test program writes and checks a "canonical" tensor set (defined in
tests/test_safetensors.c and, identically, in canonical() below):
  1. C writes it; the bytes must equal what st.py writes for the same tensors,
     and st.py must load it back exactly (and the layout must follow the spec
     byte by byte: length prefix, space padding, contiguous offsets).
  2. st.py writes it; the C reader must find exactly the canonical set.
  3. A hand-laid-out variant (indented JSON, metadata last, keys out of
     offset order, fields reordered) must also be accepted by the C reader.
  4. A few files st.py must reject, to show its checks can fail.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

WEIRD_NAME = 'name with "quote" \\ and \u00e9\n'
NOTE_VALUE = 'h\u00e9llo "q"\n\t\x01'


def canonical():
    tensors = {
        "encoder.pos": ((np.arange(12, dtype=np.float32) - 5) * np.float32(0.375)).reshape(3, 4),
        "tables.item_media": (0x3C00 + np.arange(5, dtype=np.uint16) * 0x0100).view(np.float16),
        "u8": ((np.arange(6) * 37 + 1) & 255).astype(np.uint8).reshape(2, 3),
        "scalar.i32": np.array(-123456, dtype=np.int32),
        "i64": (np.arange(4, dtype=np.int64) - 2) * 1000000000000,
        "u64": np.array([2**64 - 1, 2**63 + 5], dtype=np.uint64),
        "f64": np.array([[1.0 / 3.0], [-2.5e300]], dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
        WEIRD_NAME: np.array([42.0], dtype=np.float32),
    }
    return tensors, {"format": "pt", "note": NOTE_VALUE}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_layout(data, tensors):
    """The spec, checked independently of st.loads."""
    (hlen,) = struct.unpack("<Q", data[:8])
    assert hlen % 8 == 0, "header length %d is not a multiple of 8" % hlen
    raw = data[8:8 + hlen]
    assert raw[:1] == b"{", "header does not start with '{'"
    body = raw.rstrip(b" ")
    assert body.endswith(b"}") and len(raw) - len(body) < 8, "bad header padding"
    header = json.loads(body.decode("utf-8"))
    keys = list(header)
    assert keys[0] == "__metadata__", "metadata must come first"
    assert keys[1:] == list(tensors), "tensors must be in the order added"
    at = 0
    for name, arr in tensors.items():
        info = header[name]
        assert info["shape"] == list(arr.shape)
        assert info["data_offsets"] == [at, at + arr.nbytes], (name, info)
        assert data[8 + hlen + at:8 + hlen + at + arr.nbytes] == arr.tobytes()
        at += arr.nbytes
    assert len(data) == 8 + hlen + at, "trailing bytes after the last tensor"


def expect_reject(data, what):
    try:
        st.loads(data)
    except st.FormatError:
        return
    raise AssertionError("st.py accepted a file with " + what)


def main():
    exe = sys.argv[1]
    tensors, meta = canonical()
    with tempfile.TemporaryDirectory(prefix="dv365_stpy_") as tmp:
        # 1. C writes, Python reads.
        c_path = os.path.join(tmp, "from_c.safetensors")
        subprocess.run([exe, "--write-canonical", c_path], check=True)
        with open(c_path, "rb") as f:
            c_bytes = f.read()
        check_layout(c_bytes, tensors)
        py_bytes = st.dumps(tensors, meta)
        if c_bytes != py_bytes:
            n = next(i for i in range(min(len(c_bytes), len(py_bytes))) if c_bytes[i] != py_bytes[i])
            raise AssertionError("C and st.py bytes differ first at byte %d: C %r, Python %r"
                                 % (n, c_bytes[n:n + 40], py_bytes[n:n + 40]))
        got, got_meta = st.load_file(c_path)
        assert got_meta == meta, got_meta
        assert list(got) == list(tensors)
        for name in tensors:
            assert same(got[name], tensors[name]), name

        # 2. Python writes, C reads.
        py_path = os.path.join(tmp, "from_py.safetensors")
        st.save(py_path, tensors, meta)
        subprocess.run([exe, "--check-canonical", py_path], check=True)

        # 3. Other layouts the reader must accept.
        header, blobs, at = {}, [], 0
        for name, arr in tensors.items():
            b = np.ascontiguousarray(arr).tobytes()
            header[name] = {"data_offsets": [at, at + len(b)], "shape": list(arr.shape),
                            "dtype": st._dtype_name(arr)}
            blobs.append(b)
            at += len(b)
        shuffled = dict(reversed(list(header.items())))
        shuffled["__metadata__"] = meta
        text = json.dumps(shuffled, indent=2, ensure_ascii=True).encode() + b"   "
        var_path = os.path.join(tmp, "variant.safetensors")
        with open(var_path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        subprocess.run([exe, "--check-canonical", var_path], check=True)
        assert st.load_file(var_path)[1] == meta

        # ... and a wrong file it must refuse (the check can fail).
        wrong = dict(tensors)
        wrong["encoder.pos"] = wrong["encoder.pos"] + 1
        st.save(var_path, wrong, meta)
        r = subprocess.run([exe, "--check-canonical", var_path], capture_output=True, text=True)
        assert r.returncode != 0 and "tensor 0" in r.stderr, (r.returncode, r.stderr)

    # 4. st.py rejects what the C reader rejects.
    good = st.dumps({"a": np.zeros(2, np.float32)})
    expect_reject(good[:-1], "a truncated data section")
    expect_reject(good + b"\0", "trailing data")
    expect_reject(good[:5], "a truncated length")
    bad = good.replace(b'"F32"', b'"Q32"')
    expect_reject(bad, "an unknown dtype")
    print("safetensors C <-> Python: OK (%d bytes, %d tensors)" % (len(c_bytes), len(tensors)))


if __name__ == "__main__":
    main()
