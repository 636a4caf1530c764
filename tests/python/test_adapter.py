"""Adapters through the binding, against numpy transcriptions of their
definitions (include/dv365.h)."""
import numpy as np
import pytest

import dv365
from conftest import expect_error

S = dv365.Status
K, D = 4, 6


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference(a, U):
    """numpy forward from the parameter block (weight then bias)."""
    p = a.params.astype(np.float64)
    U = U.astype(np.float64)
    B = U.shape[0]
    if a.kind == "linear":
        W, b = p[:a.out_dim * K * D].reshape(a.out_dim, K * D), p[a.out_dim * K * D:]
        return U.reshape(B, -1) @ W.T + b
    if a.kind == "gatenet_vector":
        W, b = p[:K * D].reshape(K, D), p[K * D:]
        return (sigmoid(np.einsum("bkd,kd->bk", U, W) + b)[:, :, None] * U).reshape(B, -1)
    if a.kind == "gatenet_bit":
        W, b = p[:K * D * D].reshape(K, D, D), p[K * D * D:].reshape(K, D)
        return (sigmoid(np.einsum("ked,bkd->bke", W, U) + b) * U).reshape(B, -1)
    if a.out_dim == 0:
        return U.reshape(B, -1)
    W, b = p[:a.out_dim * D].reshape(a.out_dim, D), p[a.out_dim * D:]
    return (U @ W.T + b).reshape(B, -1)


@pytest.mark.parametrize("kind,out_dim,size", [("linear", 5, 5), ("gatenet_vector", 0, K * D),
                                                ("gatenet_bit", 0, K * D), ("prefix", 3, K * 3),
                                                ("prefix", 0, K * D)])
def test_forward_backward_save_load(kind, out_dim, size, tmp_path):
    a = dv365.Adapter.create(kind, "ad_" + kind, K, D, out_dim, seed=3)
    assert (a.kind, a.k, a.dim, a.out_dim, a.output_size) == (kind, K, D, out_dim, size)
    assert a.params.shape == (a.num_params,)
    # non-zero biases so that the bias layout is exercised too
    a.set_params(a.params + np.linspace(0.1, 0.3, a.num_params, dtype=np.float32))
    U = np.random.default_rng(0).standard_normal((3, K, D)).astype(np.float32)
    out = a.forward(U)
    assert out.shape == (3, size) and out.dtype == np.float32
    assert np.allclose(out, reference(a, U), atol=1e-5)
    assert np.array_equal(a.forward(U[1]), out[1])
    assert np.array_equal(a.forward(U, nthreads=2), out)
    # backward of L = sum(out * g): dU and grad_params against finite differences
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    gp, dU = a.backward(U, g)
    assert gp.shape == (a.num_params,) and dU.shape == U.shape
    i, eps = (1, 2, 3), 1e-3
    Up, Um = U.astype(np.float64), U.astype(np.float64)
    Up[i] += eps
    Um[i] -= eps
    num = ((reference(a, Up) - reference(a, Um)) * g).sum() / (2 * eps)
    assert abs(num - dU[i]) < 1e-2 * max(1, abs(num))
    if a.num_params:
        assert np.abs(gp).sum() > 0
    # save / load gives the same outputs
    path = str(tmp_path / "a.safetensors")
    a.save(path)
    with dv365.Adapter.load(path, "ad_" + kind) as b:
        assert (b.kind, b.out_dim) == (kind, out_dim)
        assert np.array_equal(b.forward(U), out)
    a.close()
    expect_error(S.E_STATE, "closed", a.forward, U)


def test_adapter_errors(tmp_path):
    expect_error(S.E_INVALID, "adapter kind must be one of", dv365.Adapter.create, "mlp", "x", K, D, 1)
    with pytest.raises(dv365.Error) as ei:
        dv365.Adapter.create("linear", "bad name!", K, D, 1)
    assert ei.value.status == S.E_INVALID and "name" in ei.value.message
    expect_error(S.E_INVALID, "", dv365.Adapter.create, "linear", "x", K, D, 0)
    a = dv365.Adapter.create("linear", "lin", K, D, 2)
    U = np.zeros((2, K, D), np.float32)
    expect_error(S.E_MISMATCH, "U has shape [2, 4, 5]", a.forward, U[:, :, :5])
    U[1, 2, 3] = np.nan
    expect_error(S.E_NONFINITE, "user 1, token 2, column 3", a.forward, U)
    expect_error(S.E_MISMATCH, "dout has shape", a.backward, np.zeros((2, K, D), np.float32), np.zeros((2, 3), np.float32))
    expect_error(S.E_MISMATCH, "values has shape", a.set_params, np.zeros(3, np.float32))
    expect_error(S.E_NONFINITE, "NaN", a.set_params, np.full(a.num_params, np.nan, np.float32))
    path = str(tmp_path / "a.safetensors")
    a.save(path)
    expect_error(S.E_NOT_FOUND, "other", dv365.Adapter.load, path, "other")
    expect_error(S.E_IO, "", dv365.Adapter.load, str(tmp_path / "none.safetensors"), "lin")
