"""encoder_ref.py -- check the C encoder against a PyTorch module.

usage: /usr/bin/python3 encoder_ref.py PATH/TO/encoder_dump

For several configurations (the default 200x256 funnel, an odd-sized funnel
with partial pooling windows and 2 layers per block, a vanilla Transformer
with stride 1, the same with its output compressed token-wise to fewer
tokens, and a funnel with compression, LCE only, funnel only), the C program encoder_dump writes its weights and
its forward/backward results; this script

  * builds `Model` (parameter names exactly as DESIGN.md section 3) and
    loads the C weights with load_state_dict(strict=True);
  * recomputes in float64 every layer from the C layer input and compares
    with the C layer output (max error / max |value| <= 1e-5), and checks
    the pooling between blocks;
  * compares the whole encoder output (<= 1e-4), every parameter gradient
    and dL/dX (<= 1e-4) for the loss sum(du * u);
  * checks that dv365_encode equals the training forward bitwise and that
    1 and 2 threads give bitwise identical files.
"""

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


class Layer(nn.Module):
    """Pre-LN Transformer layer: x += attn(LN1(x)); x += fc2(GELU(fc1(LN2(x))))."""

    def __init__(self, dim, heads, ffn):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Block(nn.Module):
    def __init__(self, layers, dim, heads, ffn):
        super().__init__()
        self.layers = nn.ModuleList([Layer(dim, heads, ffn) for _ in range(layers)])


def mean_pool(x, stride):
    """Mean over windows of `stride` tokens; the last window averages what it has."""
    T = x.shape[1]
    return torch.stack([x[:, j:j + stride].mean(1) for j in range(0, T, stride)], 1)


def funnel_tokens(n, blocks, stride):
    """T_last: tokens after the last block (T_{b+1} = ceil(T_b / stride))."""
    t = n
    for _ in range(1, blocks):
        t = (t + stride - 1) // stride
    return t if blocks else 0


def token_linear(lin, x):
    """nn.Linear applied along the token axis of x [B, T, D]: the same map for every column."""
    return lin(x.transpose(1, 2)).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, n, dim, blocks, layers, heads, ffn, stride, k_lce, compress=0):
        super().__init__()
        self.stride = stride
        if blocks:
            self.pos = nn.Parameter(torch.zeros(n, dim))
            self.blocks = nn.ModuleList([Block(layers, dim, heads, ffn) for _ in range(blocks)])
            self.ln_f = nn.LayerNorm(dim, eps=1e-5)
        else:
            self.blocks = nn.ModuleList()
        # token-wise compression of the funnel output, T_last -> compress
        self.compress = nn.Linear(funnel_tokens(n, blocks, stride), compress) if compress else None
        self.lce = nn.Linear(n, k_lce) if k_lce else None

    def forward(self, x):
        outs = []
        if len(self.blocks):
            h = x + self.pos
            for b, block in enumerate(self.blocks):
                if b > 0:
                    h = mean_pool(h, self.stride)
                for layer in block.layers:
                    h = layer(h)
            h = self.ln_f(h)
            if self.compress is not None:
                h = token_linear(self.compress, h)
            outs.append(h)
        if self.lce is not None:
            outs.append(token_linear(self.lce, x))
        return torch.cat(outs, 1)


class Model(nn.Module):
    def __init__(self, *args):
        super().__init__()
        self.encoder = Encoder(*args)

    def forward(self, x):
        return self.encoder(x)


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(), 1e-30)
    return float(np.abs(a - b).max() / scale)


FAILURES = []


def check(what, got, want, tol):
    err = rel_err(got, want)
    status = "ok" if err <= tol else "FAIL"
    print("  %-58s err %.2e (tol %.0e) %s" % (what, err, tol, status))
    if not err <= tol:
        FAILURES.append(what)


def run_dump(exe, outdir, cfg, batch, nthreads, seed):
    args = [exe, outdir] + [str(v) for v in cfg] + [str(batch), str(nthreads), str(seed)]
    subprocess.run(args, check=True)
    with open(os.path.join(outdir, "io.safetensors"), "rb") as f:
        return f.read()


def check_config(exe, tmp, name, cfg, batch=2, seed=5):
    if len(cfg) == 8:
        cfg = tuple(cfg) + (0,)
    n, dim, blocks, layers, heads, ffn, stride, k_lce, compress = cfg
    print("%s: N=%d D=%d blocks=%d layers=%d heads=%d ffn=%d stride=%d k_lce=%d compress=%d "
          "batch=%d" % ((name,) + tuple(cfg) + (batch,)))
    d1 = os.path.join(tmp, name + "-1")
    d2 = os.path.join(tmp, name + "-2")
    os.makedirs(d1)
    os.makedirs(d2)
    io1 = run_dump(exe, d1, cfg, batch, 1, seed)
    io2 = run_dump(exe, d2, cfg, batch, 2, seed)
    if io1 != io2:
        print("  1 and 2 threads give different results: FAIL")
        FAILURES.append(name + ": thread determinism")
    else:
        print("  1 and 2 threads: bitwise identical")

    io = st.load(os.path.join(d1, "io.safetensors"))
    weights = st.load(os.path.join(d1, "weights.safetensors"))
    model = Model(n, dim, blocks, layers, heads, ffn, stride, k_lce, compress).double()
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)  # names and shapes must match exactly
    enc = model.encoder

    if not np.array_equal(io["u"], io["u_infer"]):
        FAILURES.append(name + ": dv365_encode != training forward")
        print("  dv365_encode differs from the training forward: FAIL")

    with torch.no_grad():
        # Per layer, from the C layer input; and the pooling between blocks.
        for b in range(blocks):
            for l in range(layers):
                x_in = torch.from_numpy(io["act.%d.%d.in" % (b, l)].astype(np.float64))
                want = enc.blocks[b].layers[l](x_in).numpy()
                check("block %d layer %d output" % (b, l), io["act.%d.%d.out" % (b, l)], want,
                      1e-5)
            if b > 0:
                prev = torch.from_numpy(io["act.%d.%d.out" % (b - 1, layers - 1)]
                                        .astype(np.float64))
                check("pool into block %d" % b, io["act.%d.0.in" % b],
                      mean_pool(prev, stride).numpy(), 1e-6)

    x = torch.from_numpy(io["x"].astype(np.float64)).requires_grad_(True)
    u = model.encoder(x)
    want_k = (compress or funnel_tokens(n, blocks, stride)) + k_lce
    if u.shape[1] != want_k or io["u"].shape[1] != want_k:
        FAILURES.append(name + ": K")
        print("  K: C %d, PyTorch %d, expected %d: FAIL" % (io["u"].shape[1], u.shape[1], want_k))
    check("encoder output U [%d,%d,%d]" % tuple(u.shape), io["u"], u.detach().numpy(), 1e-4)
    (u * torch.from_numpy(io["du"].astype(np.float64))).sum().backward()
    check("dL/dX", io["dx"], x.grad.numpy(), 1e-4)
    worst, worst_name = 0.0, ""
    for pname, p in model.named_parameters():
        err = rel_err(io["grad." + pname], p.grad.numpy())
        if err > worst:
            worst, worst_name = err, pname
        if not err <= 1e-4:
            check("grad " + pname, io["grad." + pname], p.grad.numpy(), 1e-4)
    print("  %d parameter gradients, worst %.2e (%s)" % (len(state), worst, worst_name))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    exe = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="dv365_encoder_ref_") as tmp:
        #                        N    D  blocks layers heads ffn stride k_lce
        check_config(exe, tmp, "default", (200, 256, 3, 1, 4, 1024, 2, 8))
        check_config(exe, tmp, "odd-funnel", (37, 16, 3, 2, 2, 24, 3, 5), batch=3)
        check_config(exe, tmp, "vanilla", (30, 32, 2, 1, 4, 64, 1, 4))
        #                                                                  compress
        check_config(exe, tmp, "vanilla-compress", (30, 32, 2, 1, 4, 64, 1, 4, 11))
        check_config(exe, tmp, "funnel-compress", (37, 16, 3, 2, 2, 24, 3, 0, 3), batch=3)
        check_config(exe, tmp, "lce-only", (50, 16, 0, 1, 1, 8, 2, 6))
        check_config(exe, tmp, "funnel-only", (21, 16, 2, 1, 2, 32, 4, 0))
    if FAILURES:
        print("FAILED: " + ", ".join(FAILURES))
        sys.exit(1)
    print("all encoder reference checks passed")


if __name__ == "__main__":
    main()
