"""4-bit rows and blobs through the binding."""
import numpy as np
import pytest

import dv365
from conftest import expect_error

S = dv365.Status


def fp16(b):
    return np.frombuffer(bytes(b), dtype="<f2").astype(np.float32)


@pytest.mark.parametrize("dim", [1, 7, 32, 256])
def test_q4_layout_and_round_trip(dim):
    x = np.random.default_rng(dim).standard_normal((5, dim)).astype(np.float32)
    q = dv365.q4_quantize(x)
    rb = (dim + 1) // 2 + 4
    assert q.dtype == np.uint8 and q.shape == (5, rb) and dv365.q4_row_bytes(dim) == rb
    y = dv365.q4_dequantize(q, dim)
    assert y.shape == (5, dim) and y.dtype == np.float32
    for r in range(5):
        scale, bias = fp16(q[r, rb - 4:rb - 2])[0], fp16(q[r, rb - 2:])[0]
        codes = np.stack([q[r, :rb - 4] & 15, q[r, :rb - 4] >> 4], 1).reshape(-1)[:dim]
        # x = scale * q + bias, and within half a step (plus fp16 rounding of the range)
        assert np.allclose(y[r], scale * codes + bias, rtol=0, atol=1e-6)
        assert np.abs(y[r] - x[r]).max() <= scale / 2 + 1e-2 * (np.abs(x[r]).max() + 1)
    # 1-D: one row; bytes in -> rows out
    assert np.array_equal(dv365.q4_quantize(x[2]), q[2])
    assert np.array_equal(dv365.q4_dequantize(q[2], dim), y[2])
    assert np.array_equal(dv365.q4_dequantize(q.tobytes(), dim), y)


def test_q4_greedy_is_no_worse():
    x = np.random.default_rng(5).standard_normal((64, 256)).astype(np.float32)
    x[:, 0] *= 8  # an outlier per row: the greedy range search clips it
    e_mm = np.square(dv365.q4_dequantize(dv365.q4_quantize(x, "minmax"), 256) - x).sum()
    e_gr = np.square(dv365.q4_dequantize(dv365.q4_quantize(x, "greedy"), 256) - x).sum()
    assert e_gr < e_mm


def test_q4_errors():
    x = np.zeros((2, 8), np.float32)
    expect_error(S.E_INVALID, "method must be one of", dv365.q4_quantize, x, "median")
    expect_error(S.E_INVALID, "float32", dv365.q4_quantize, x.astype(np.float64))
    expect_error(S.E_MISMATCH, "x has shape", dv365.q4_quantize, np.zeros((2, 2, 2), np.float32))
    x[1, 3] = np.nan
    expect_error(S.E_NONFINITE, "row 1", dv365.q4_quantize, x)
    x[1, 3] = 1e6
    expect_error(S.E_INVALID, "row 1", dv365.q4_quantize, x)
    q = dv365.q4_quantize(np.ones((2, 8), np.float32))
    expect_error(S.E_MISMATCH, "q has shape [2, 8], expected [*, 9]", dv365.q4_dequantize, q, 9)
    expect_error(S.E_MISMATCH, "whole number", dv365.q4_dequantize, q.tobytes()[:-1], 8)
    expect_error(S.E_INVALID, "dim must be > 0", dv365.q4_dequantize, q, 0)
    bad = q.copy()
    bad[0, -4:-2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)
    expect_error(S.E_FORMAT, "row 0", dv365.q4_dequantize, bad, 8)


def test_blob_round_trip(model):
    U = np.random.default_rng(2).standard_normal((model.num_tokens, model.dim)).astype(np.float32)
    blob = dv365.blob_encode(model, U, created=1700000000)
    assert isinstance(blob, bytes) and len(blob) == dv365.blob_size(model.num_tokens, model.dim)
    assert len(blob) == 48 + model.num_tokens * dv365.q4_row_bytes(model.dim)
    meta = dv365.blob_inspect(blob)
    assert meta == {"fingerprint": model.fingerprint, "created": 1700000000, "k": 16, "dim": 32}
    V, meta2 = dv365.blob_decode(blob)
    assert meta2 == meta and V.shape == (16, 32)
    assert np.array_equal(V, dv365.q4_dequantize(dv365.q4_quantize(U), 32))
    assert np.array_equal(dv365.blob_decode(bytearray(blob), model)[0], V)
    assert np.array_equal(dv365.blob_decode(np.frombuffer(blob, np.uint8), model.fingerprint)[0], V)
    # greedy blobs decode the same way; default created is now
    g = dv365.blob_encode(model.fingerprint, U, method="greedy")
    assert abs(dv365.blob_inspect(g)["created"] - __import__("time").time()) < 120


def test_blob_errors(model):
    U = np.ones((16, 32), np.float32)
    blob = bytearray(dv365.blob_encode(model, U, created=1))
    expect_error(S.E_TIMESTAMP, "creation time -5", dv365.blob_encode, model, U, created=-5)
    expect_error(S.E_MISMATCH, "U has shape", dv365.blob_encode, model, U[0])
    expect_error(S.E_FORMAT, "", dv365.blob_inspect, bytes(blob[:-1]))
    expect_error(S.E_FORMAT, "", dv365.blob_inspect, b"not a blob at all" * 4)
    flipped = bytearray(blob)
    flipped[60] ^= 1
    expect_error(S.E_CHECKSUM, "", dv365.blob_decode, bytes(flipped))
    other = dv365.blob_encode(12345, U, created=1)
    expect_error(S.E_MISMATCH, "made by model 0000000000003039", dv365.blob_decode, other, model)
    with pytest.raises(dv365.DTypeError):
        dv365.blob_decode(12345)
