#!/usr/bin/python3
"""q4_ref.py — libdv365's 4-bit rows and blobs against PyTorch, byte for byte.

Usage: /usr/bin/python3 tests/reference/q4_ref.py path/to/libdv365.so [--errors]
(--errors: print the round-trip error table of docs/quant.md instead)

Checks, through ctypes on the built shared library:
  * dv365_q4_quantize(MINMAX) == torch.ops.quantized.embedding_bag_4bit_prepack
  * dv365_q4_quantize(GREEDY) == the same with optimized_qparams=True
    (nbins 200, ratio 0.16: torch.choose_qparams_optimized)
  * dv365_q4_dequantize == torch.ops.quantized.embedding_bag_4bit_unpack
  * odd D (which torch 1.13 refuses) against a numpy transcription of the
    prepack arithmetic, itself checked equal to torch on even D here;
  * the blob layout of docs/quant.md, parsed here with struct, its checksum
    recomputed with libxxhash's XXH3_64bits.
Exits non-zero on the first difference, printing the row.
"""
import ctypes
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)

if len(sys.argv) not in (2, 3):
    sys.exit("usage: q4_ref.py LIBDV365.so [--errors]")
lib = ctypes.CDLL(sys.argv[1])
c_size = ctypes.c_size_t
f32p = ctypes.POINTER(ctypes.c_float)
u8p = ctypes.POINTER(ctypes.c_uint8)
lib.dv365_q4_row_bytes.restype = c_size
lib.dv365_q4_row_bytes.argtypes = [c_size]
lib.dv365_q4_quantize.restype = ctypes.c_int
lib.dv365_q4_quantize.argtypes = [f32p, c_size, c_size, ctypes.c_int, u8p, c_size]
lib.dv365_q4_dequantize.restype = ctypes.c_int
lib.dv365_q4_dequantize.argtypes = [u8p, c_size, c_size, c_size, f32p]
lib.dv365_blob_size.restype = c_size
lib.dv365_blob_size.argtypes = [c_size, c_size]
lib.dv365_blob_encode.restype = ctypes.c_int
lib.dv365_blob_encode.argtypes = [f32p, c_size, c_size, ctypes.c_uint64, ctypes.c_int64,
                                  ctypes.c_int, u8p, c_size]
lib.dv365_last_error.restype = ctypes.c_char_p

MINMAX, GREEDY = 0, 1
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)
    if failures > 10:
        sys.exit(1)


def ours(x, method):
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, dim = x.shape
    rb = lib.dv365_q4_row_bytes(dim)
    out = np.zeros((rows, rb), dtype=np.uint8)
    st = lib.dv365_q4_quantize(x.ctypes.data_as(f32p), rows, dim, method,
                               out.ctypes.data_as(u8p), out.size)
    if st != 0:
        raise RuntimeError("dv365_q4_quantize -> %d: %s" % (st, lib.dv365_last_error().decode()))
    return out


def ours_dequant(q, dim):
    rows = q.shape[0]
    out = np.zeros((rows, dim), dtype=np.float32)
    st = lib.dv365_q4_dequantize(np.ascontiguousarray(q).ctypes.data_as(u8p), q.size, rows, dim,
                                 out.ctypes.data_as(f32p))
    if st != 0:
        raise RuntimeError("dv365_q4_dequantize -> %d: %s" % (st, lib.dv365_last_error().decode()))
    return out


def torch_prepack(x, method):
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if method == GREEDY:
        return torch.ops.quantized.embedding_bag_4bit_prepack(t, True, 200, 0.16).numpy()
    return torch.ops.quantized.embedding_bag_4bit_prepack(t).numpy()


def numpy_prepack(x, method):
    """The arithmetic of PyTorch's non-FBGEMM prepack, in float32 numpy, any D."""
    x = np.asarray(x, dtype=np.float32)
    rows, dim = x.shape
    nb = (dim + 1) // 2
    out = np.zeros((rows, nb + 4), dtype=np.uint8)
    for r in range(rows):
        row = x[r]
        if method == GREEDY:
            hi, lo = torch.choose_qparams_optimized(torch.from_numpy(row.copy()), dim, 200, 0.16, 4)
            xmin, xmax = np.float32(lo.item()), np.float32(hi.item())
        else:
            xmin, xmax = row[np.argmin(row)], row[np.argmax(row)]  # first min / first max
        bias = np.float16(xmin)
        xmin = np.float32(bias)
        rng = np.float32(xmax - xmin)
        scale = np.float16(np.float32(1.0) if rng == 0 else rng / np.float32(15))
        inv = np.float32(1.0) if scale == 0 else np.float32(1.0) / np.float32(scale)
        if scale == 0 or np.isinf(inv):
            scale, inv = np.float16(1.0), np.float32(1.0)
        q = np.clip(np.rint((row - xmin) * inv), 0, 15).astype(np.uint8)  # rint: half to even
        q = np.concatenate([q, np.zeros(dim % 2, np.uint8)])
        out[r, :nb] = q[0::2] | (q[1::2] << 4)
        out[r, nb:nb + 2] = np.frombuffer(scale.tobytes(), np.uint8)
        out[r, nb + 2:] = np.frombuffer(bias.tobytes(), np.uint8)
    return out


def compare(name, x, a, b):
    if a.shape != b.shape or not np.array_equal(a, b):
        bad = [r for r in range(x.shape[0]) if not np.array_equal(a[r], b[r])] if a.shape == b.shape else [0]
        r = bad[0]
        fail("%s: %d rows differ; first row %d\n  x    = %r\n  ours = %r\n  ref  = %r"
             % (name, len(bad), r, x[r].tolist()[:16], a[r].tolist(), b[r].tolist()))
        return False
    return True


def edge_rows(dim, rng):
    """Rows that stress min/max, fp16 rounding and the corner cases."""
    rows = []
    f32 = np.float32
    for c in [0.0, -0.0, 1.0, -3.7, 0.1, 1e-8, 65504.0, -65504.0, 65519.0, 6.1e-5, 3e-8]:
        rows.append(np.full(dim, c, f32))
    z = np.zeros(dim, f32)
    z[::2] = -0.0
    rows.append(z)                       # -0 first: the bias keeps the sign
    z = np.zeros(dim, f32)
    z[1::2] = -0.0
    rows.append(z)                       # +0 first
    z = np.abs(rng.standard_normal(dim)).astype(f32)
    z[dim // 2] = -0.0
    z[dim // 3] = 0.0
    rows.append(z)                       # zero minimum of mixed signs
    one = np.zeros(dim, f32)
    one[dim // 2] = 1.0
    rows.append(one)                     # single outlier
    rows.append(np.where(np.arange(dim) % 2 == 0, f32(1.0), f32(2.0)))
    a = f32(1000.0)
    rows.append(np.where(np.arange(dim) % 3 == 0, a, np.nextafter(a, f32(2e3))))  # 1-ulp range
    rows.append(np.linspace(-1, 1, dim, dtype=f32))
    rows.append(np.linspace(0, 15, dim, dtype=f32))                 # codes on exact ties
    rows.append(np.linspace(100.05, 100.06, dim, dtype=f32))        # bias rounds above values
    rows.append((rng.standard_normal(dim) * 1e-6).astype(f32))      # subnormal fp16 scale
    rows.append((rng.standard_normal(dim) * 1e-9).astype(f32))      # scale rounds to 0
    rows.append(np.clip(rng.standard_normal(dim) * 2e4, -65504, 65504).astype(f32))  # big
    rows.append((rng.uniform(-65504, 65504, dim)).astype(f32))
    rows.append(rng.integers(-8, 8, dim).astype(f32))
    rows.append((rng.standard_normal(dim) + 300).astype(f32))       # offset: bias rounding
    return np.stack(rows)


def random_rows(rows, dim, rng):
    scales = 10.0 ** rng.uniform(-4, 3.5, (rows, 1))
    offsets = rng.standard_normal((rows, 1)) * 10.0 ** rng.uniform(-3, 3, (rows, 1))
    x = rng.standard_normal((rows, dim)) * scales + offsets
    heavy = rng.standard_t(2, (rows, dim)) * scales
    pick = rng.random((rows, 1)) < 0.3
    return np.clip(np.where(pick, heavy, x), -60000, 60000).astype(np.float32)


def greedy_safe(x):
    """Rows on which torch's greedy search terminates: its step must move an
    end (torch loops forever otherwise; libdv365 stops, see docs/quant.md)."""
    keep = []
    for r in range(x.shape[0]):
        lo, hi = np.float32(x[r].min()), np.float32(x[r].max())
        step = np.float32((hi - lo) / np.float32(200))
        ok = hi == lo or (lo + step != lo and hi - step != hi and
                          np.spacing(max(abs(lo), abs(hi))) * 4 < step)
        keep.append(ok)
    return x[np.array(keep)]


def check_quant():
    rng = np.random.default_rng(365)
    total = 0
    for dim in [2, 4, 6, 8, 16, 30, 32, 34, 64, 100, 128, 256, 258, 1024]:
        x = np.concatenate([random_rows(200 if dim <= 256 else 40, dim, rng), edge_rows(dim, rng)])
        for method in (MINMAX, GREEDY):
            xs = x if method == MINMAX else greedy_safe(x)
            a = ours(xs, method)
            b = torch_prepack(xs, method)
            name = "D=%d %s vs torch prepack" % (dim, "minmax" if method == MINMAX else "greedy")
            compare(name, xs, a, b)
            # the numpy transcription used for odd D must agree with torch too
            sub = xs[:: max(1, xs.shape[0] // 20)]
            compare("numpy transcription " + name, sub, numpy_prepack(sub, method),
                    torch_prepack(sub, method))
            total += xs.shape[0]
            # dequantize: identical floats to torch's unpack
            deq = torch.ops.quantized.embedding_bag_4bit_unpack(torch.from_numpy(b)).numpy()
            mine = ours_dequant(a, dim)
            if not np.array_equal(mine.view(np.uint32), deq.view(np.uint32)):
                fail("D=%d dequantize differs from embedding_bag_4bit_unpack" % dim)
    for dim in [1, 3, 5, 17, 31, 33, 255, 257]:
        x = np.concatenate([random_rows(100, dim, rng), edge_rows(dim, rng)])
        for method in (MINMAX, GREEDY):
            xs = x if method == MINMAX else greedy_safe(x)
            compare("odd D=%d method %d vs numpy transcription" % (dim, method), xs,
                    ours(xs, method), numpy_prepack(xs, method))
            total += xs.shape[0]
    print("quantize: %d rows byte-identical to PyTorch (minmax and greedy, D 1..1024)" % total)


def check_blob():
    rng = np.random.default_rng(7)
    xxh = ctypes.CDLL("libxxhash.so.0")
    xxh.XXH3_64bits.restype = ctypes.c_uint64
    xxh.XXH3_64bits.argtypes = [ctypes.c_void_p, c_size]
    for k, dim, method in [(58, 256, MINMAX), (58, 256, GREEDY), (3, 7, MINMAX), (1, 1, GREEDY)]:
        U = rng.standard_normal((k, dim)).astype(np.float32)
        size = lib.dv365_blob_size(k, dim)
        blob = np.zeros(size, np.uint8)
        fp, created = 0x0123456789ABCDEF, 1700000000
        st = lib.dv365_blob_encode(U.ctypes.data_as(f32p), k, dim, fp, created, method,
                                   blob.ctypes.data_as(u8p), size)
        if st != 0:
            fail("blob encode -> %d: %s" % (st, lib.dv365_last_error().decode()))
            continue
        raw = blob.tobytes()
        magic, checksum, version, bits, meth, reserved, hk, hd, hfp, hcreated = struct.unpack_from(
            "<8sQHBBIIIQq", raw, 0)
        expect = (b"DV365Q4B", 1, 4, method, 0, k, dim, fp, created)
        if (magic, version, bits, meth, reserved, hk, hd, hfp, hcreated) != expect:
            fail("blob header fields %r != %r" % ((magic, version, bits, meth, reserved, hk, hd,
                                                    hfp, hcreated), expect))
        body = raw[16:]
        if xxh.XXH3_64bits(body, len(body)) != checksum:
            fail("blob checksum is not XXH3_64bits of bytes [16, size)")
        rows = np.frombuffer(raw[48:], np.uint8).reshape(k, -1)
        if size != 48 + k * ((dim + 1) // 2 + 4):
            fail("blob size %d for %dx%d" % (size, k, dim))
        ref = torch_prepack(U, method) if dim % 2 == 0 else numpy_prepack(U, method)
        compare("blob rows %dx%d" % (k, dim), U, rows, ref)
    print("blob: header layout, XXH3 checksum and rows match docs/quant.md "
          "(58 x 256 blob = %d bytes)" % lib.dv365_blob_size(58, 256))


def error_table():
    rng = np.random.default_rng(1)
    print("| rows | method | RMSE/std mean | RMSE/std max | cosine mean | cosine min |")
    for name, x in [("Gaussian, D=256", rng.standard_normal((4096, 256))),
                    ("Gaussian, D=255", rng.standard_normal((4096, 255))),
                    ("Student-t(3), D=256", rng.standard_t(3, (4096, 256))),
                    ("Uniform, D=256", rng.uniform(-1, 1, (4096, 256)))]:
        x = x.astype(np.float32)
        for m in (MINMAX, GREEDY):
            y = ours_dequant(ours(x, m), x.shape[1])
            rel = np.sqrt(((x - y) ** 2).mean(1)) / x.std(1)
            cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
            print("| %s | %s | %.4f | %.4f | %.5f | %.5f |" % (
                name, "minmax" if m == MINMAX else "greedy", rel.mean(), rel.max(), cos.mean(),
                cos.min()))


if sys.argv[2:] == ["--errors"]:
    error_table()
    sys.exit(0)
check_quant()
check_blob()
if failures:
    sys.exit("%d failures" % failures)
print("OK")
