"""The same bits from C and from Python: tests/python/c_embed.c embeds the
LCG timelines of conftest.lcg_timeline and prints U, X, counts, 4-bit rows
and the blob as hex; the binding must reproduce every bit."""
import os
import subprocess

import numpy as np
import pytest

import dv365
from conftest import CUTOFF, SMALL, lcg_timeline

C_EMBED = os.environ.get("DV365_C_EMBED")


def run_c(*args):
    if not C_EMBED:
        pytest.fail("DV365_C_EMBED is not set (run the tests through `meson test`)")
    r = subprocess.run([C_EMBED, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = {"U": {}, "X": {}, "q4": {}, "q4g": {}}
    for line in r.stdout.splitlines():
        tag, *rest = line.split()
        if tag == "fingerprint":
            out["fingerprint"] = int(rest[0], 16)
        elif tag == "U":
            out["U"][(int(rest[0]), int(rest[1]))] = [float.fromhex(v) for v in rest[2:]]
        elif tag == "X":
            out["X"][int(rest[0])] = [float.fromhex(v) for v in rest[1:]]
        elif tag == "counts":
            out["counts"] = [int(v) for v in rest]
        elif tag in ("q4", "q4g"):
            out[tag][int(rest[0])] = bytes.fromhex(rest[1])
        elif tag == "blob":
            out["blob"] = bytes.fromhex(rest[0])
    return out


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def check_same(m, c):
    assert m.fingerprint == c["fingerprint"]
    K, D, N = m.num_tokens, m.dim, m.num_slices
    tls = [lcg_timeline(m.config, u) for u in range(3)]
    U = m.embed(tls, [CUTOFF, CUTOFF, CUTOFF - 86400])
    Uc = np.array([[c["U"][(b, k)] for k in range(K)] for b in range(3)])
    assert np.array_equal(bits(U), bits(Uc))
    X, counts = m.pool(tls[0], CUTOFF)
    assert np.array_equal(bits(X), bits([c["X"][i] for i in range(N)]))
    assert counts.tolist() == c["counts"]
    assert dv365.q4_quantize(U[0]).tobytes() == b"".join(c["q4"][k] for k in range(K))
    assert dv365.q4_quantize(U[0], "greedy").tobytes() == b"".join(c["q4g"][k] for k in range(K))
    assert dv365.blob_encode(m, U[0], created=CUTOFF) == c["blob"]
    # and the C blob decodes in Python to the C rows
    V, meta = dv365.blob_decode(c["blob"], m)
    assert meta == {"fingerprint": m.fingerprint, "created": CUTOFF, "k": K, "dim": D}
    assert np.array_equal(V, dv365.q4_dequantize(dv365.q4_quantize(U[0]), D))


def test_fresh_model_same_bits_as_c(model):
    check_same(model, run_c("--config", SMALL, "7"))


def test_saved_model_same_bits_as_c(tmp_path):
    # a model whose weights differ from any seed: train it one step first
    m = dv365.Model.init(SMALL, seed=11)
    t = dv365.Trainer(m)
    tls = [lcg_timeline(m.config, u) for u in range(2)]
    t.step(tls, [CUTOFF + 2 * 86400] * 2, [[1, 2, 3], [4, 5, 6]], np.ones((2, 8), np.float32),
           np.array([[1, 0, 0, 1, 0, 3.5], [0, 1, 0, 0, 1, 0.5]], np.float32))
    t.close()
    d = str(tmp_path / "model")
    m.save(d)
    c = run_c(d)
    check_same(dv365.Model.load(d), c)
    check_same(m, c)
    assert m.fingerprint != dv365.Model.init(SMALL, seed=11).fingerprint
