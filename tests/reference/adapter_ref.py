"""adapter_ref.py -- check the C adapters against PyTorch modules.

usage: /usr/bin/python3 adapter_ref.py PATH/TO/test_adapter

For every adapter kind (linear projection, GateNet vector-wise and bit-wise,
token prefix with and without projection) at the DV365 token count and at
odd sizes:

  * the C program creates the adapter from a seed and saves it
    (`test_adapter --create`); the metadata must describe it, and a PyTorch
    module with the same parameter names loads the file with
    load_state_dict(strict=True) (so the names and shapes are the documented
    ones) and its fresh weights follow the documented init;
  * the weights get noise (so that biases matter), and this script writes
    them with st.py plus inputs U and an upstream gradient dout; the C
    program loads that file (`test_adapter --ref`), runs forward and
    backward, and its output, every parameter gradient and dL/dU must match
    the float64 PyTorch module within 1e-5 (max error / max |value|) for the
    loss sum(dout * out);
  * 1 and 2 threads give bitwise identical results;
  * negative control: a module with one weight changed is far outside the
    tolerance, so the comparison can fail.
"""

import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

LINEAR, GATE_VECTOR, GATE_BIT, PREFIX = 0, 1, 2, 3
KIND_NAMES = {LINEAR: "linear", GATE_VECTOR: "gatenet_vector", GATE_BIT: "gatenet_bit",
              PREFIX: "prefix"}
TOL = 1e-5


class Linear(nn.Linear):
    """y = W vec(U) + b: nn.Linear(K*D, P) on the flattened tokens."""

    def __init__(self, k, d, p):
        super().__init__(k * d, p)

    def forward(self, u):
        return super().forward(u.flatten(1))


class GateVector(nn.Module):
    """GateNet vector-wise, field private: g_k = sigmoid(w_k . u_k + b_k)."""

    def __init__(self, k, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, d))
        self.bias = nn.Parameter(torch.zeros(k))

    def forward(self, u):
        g = torch.sigmoid((u * self.weight).sum(-1) + self.bias)
        return (g.unsqueeze(-1) * u).flatten(1)


class GateBit(nn.Module):
    """GateNet bit-wise, field private: g_k = sigmoid(W_k u_k + b_k), W_k [D, D]."""

    def __init__(self, k, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, d, d))
        self.bias = nn.Parameter(torch.zeros(k, d))

    def forward(self, u):
        g = torch.sigmoid(torch.einsum("kij,bkj->bki", self.weight, u) + self.bias)
        return (g * u).flatten(1)


class Prefix(nn.Module):
    """The tokens, projected by one Linear(D, H) shared by all tokens (or as is)."""

    def __init__(self, d, h):
        super().__init__()
        if h:
            self.weight = nn.Parameter(torch.zeros(h, d))
            self.bias = nn.Parameter(torch.zeros(h))
        self.h = h

    def forward(self, u):
        y = F.linear(u, self.weight, self.bias) if self.h else u
        return y.flatten(1)


def build(kind, k, d, out):
    if kind == LINEAR:
        return Linear(k, d, out)
    if kind == GATE_VECTOR:
        return GateVector(k, d)
    if kind == GATE_BIT:
        return GateBit(k, d)
    return Prefix(d, out)


class Host(nn.Module):
    """A host model holding the adapter as adapter.<name>, so that its
    state_dict keys are the file's tensor names."""

    def __init__(self, name, module):
        super().__init__()
        self.adapter = nn.ModuleDict({name: module})
        self.name = name

    def forward(self, u):
        return self.adapter[self.name](u)


ROWS = []


def rel_err(ours, ref):
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-30)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - ref).max()) / scale if ref.size else 0.0


def check(name, ours, ref, tol=TOL):
    err = rel_err(ours, ref)
    ROWS.append((name, err, tol, err <= tol))


def run_case(exe, tmp, kind, k, d, out, batch, seed):
    tag = "%s k=%d d=%d out=%d" % (KIND_NAMES[kind], k, d, out)
    name = "host_%d" % seed
    path = os.path.join(tmp, "c_%d.safetensors" % seed)
    subprocess.run([exe, "--create", path, str(kind), name, str(k), str(d), str(out), str(seed)],
                   check=True)
    tensors, meta = st.load_file(path)
    prefix = "adapter.%s." % name
    expect_meta = {prefix + "kind": KIND_NAMES[kind], prefix + "k": str(k),
                   prefix + "dim": str(d), prefix + "out_dim": str(out)}
    ROWS.append((tag + ": metadata", 0.0, 0.0, meta == expect_meta))

    host = Host(name, build(kind, k, d, out))
    # strict=True: exactly the module's parameter names and shapes.
    host.load_state_dict({n: torch.from_numpy(v) for n, v in tensors.items()}, strict=True)
    params = dict(host.named_parameters())
    if params:
        fan_in = k * d if kind == LINEAR else d
        w = params[prefix + "weight"].detach().numpy()
        b = params[prefix + "bias"].detach().numpy()
        bound = 1 / math.sqrt(fan_in)
        # Uniform on [-bound, bound]: mean within 4 standard errors of 0,
        # variance bound^2/3 within 10 %, nothing outside, zero biases.
        n = w.size
        init_ok = (np.abs(w).max() <= bound
                   and abs(float(w.mean())) < 4 * bound / math.sqrt(3 * n)
                   and abs(float(w.var()) / (bound * bound / 3) - 1) < 0.1 + 4 / math.sqrt(n)
                   and not b.any())
        ROWS.append((tag + ": init U(+-1/sqrt(fan_in)), zero bias", 0.0, 0.0, bool(init_ok)))

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in host.parameters():
            p.add_(torch.from_numpy(rng.normal(0, 0.2, p.shape).astype(np.float32)))
    u = rng.normal(0, 1, (batch, k, d)).astype(np.float32)
    with torch.no_grad():
        out_size = host(torch.from_numpy(u)).shape[1]
    dout = rng.normal(0, 1, (batch, out_size)).astype(np.float32)

    inp = os.path.join(tmp, "in_%d.safetensors" % seed)
    file_tensors = {n: p.detach().numpy() for n, p in host.state_dict().items()}
    file_tensors.update({"u": u, "dout": dout})
    st.save(inp, file_tensors, metadata=meta)
    results = []
    for nt in (1, 2):
        outp = os.path.join(tmp, "out_%d_%d.safetensors" % (seed, nt))
        subprocess.run([exe, "--ref", inp, outp, name, str(nt)], check=True)
        results.append(st.load(outp))
    c = results[0]
    same = all(np.array_equal(results[0][n].view(np.uint32), results[1][n].view(np.uint32))
               for n in ("out", "grad", "du"))
    ROWS.append((tag + ": 1 vs 2 threads bitwise", 0.0, 0.0, same))

    # The float64 reference.
    host64 = host.double()
    u64 = torch.from_numpy(u.astype(np.float64)).requires_grad_(True)
    y = host64(u64)
    (y * torch.from_numpy(dout.astype(np.float64))).sum().backward()
    check(tag + ": forward", c["out"], y.detach().numpy())
    check(tag + ": dU", c["du"], u64.grad.numpy())
    names = [n for n, _ in host64.named_parameters()]
    if names:
        # The C block is weight then bias.
        assert names == [prefix + "weight", prefix + "bias"], names
        grads = [p.grad.numpy().ravel() for _, p in host64.named_parameters()]
        nw = grads[0].size
        check(tag + ": grad weight", c["grad"][:nw], grads[0])
        check(tag + ": grad bias", c["grad"][nw:], grads[1])
        # Negative control: one changed weight moves the output far away.
        with torch.no_grad():
            w = dict(host64.named_parameters())[prefix + "weight"]
            w.view(-1)[0] += 1.0
            y_bad = host64(u64.detach()).numpy()
        err = rel_err(c["out"], y_bad)
        ROWS.append(("control: " + tag + " perturbed weight", err, 100 * TOL, err > 100 * TOL))
    else:
        ROWS.append((tag + ": no parameters", 0.0, 0.0, c["grad"].size == 0))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: adapter_ref.py PATH/TO/test_adapter")
    exe = sys.argv[1]
    torch.manual_seed(0)
    cases = [
        # kind, K, D, out_dim, batch
        (LINEAR, 58, 32, 64, 5),
        (LINEAR, 7, 13, 3, 4),
        (GATE_VECTOR, 58, 32, 0, 5),
        (GATE_VECTOR, 7, 13, 0, 3),
        (GATE_BIT, 58, 32, 0, 5),
        (GATE_BIT, 7, 13, 0, 3),
        (PREFIX, 58, 32, 48, 5),
        (PREFIX, 7, 13, 5, 3),
        (PREFIX, 7, 13, 0, 3),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (kind, k, d, out, batch) in enumerate(cases):
            run_case(exe, tmp, kind, k, d, out, batch, 100 + i)
    width = max(len(r[0]) for r in ROWS)
    bad = 0
    for name, err, tol, ok in ROWS:
        print("%-*s  err %.2e  tol %.0e  %s" % (width, name, err, tol, "ok" if ok else "FAIL"))
        bad += not ok
    print("%d checks, %d failed" % (len(ROWS), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
