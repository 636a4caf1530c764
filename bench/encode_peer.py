#!/usr/bin/python3
"""encode_peer.py -- the PyTorch side of bench/encode_bench.c.

usage: encode_peer.py DIR NTHREADS

DIR holds weights.safetensors (the C encoder's weights), inputs.safetensors
(x [64, N, D], du [64, K, D]) and u.safetensors (the C output for x).  The
module is the reference one of tests/reference/encoder_ref.py (same
parameter names, loaded with load_state_dict(strict=True)), in float32,
eager mode, torch.set_num_threads(NTHREADS).  It times

  batch1   encode one user (no_grad, eval), latency in ms
  batch64  encode 64 users (no_grad, eval), users/s
  train64  forward + backward of sum(du * u) for 64 users, users/s

(each the fastest of several runs) and prints one "name value" line each, plus "maxdiff" (max |u_torch - u_C|
over max |u_C|) to show that both sides do the same work.
"""
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import st  # noqa: E402
from encoder_ref import Model  # noqa: E402


def fastest_time(fn, reps, warm=1):
    """The fastest of reps runs (other processes only ever add time)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    d, nt = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(nt)
    w = st.load(os.path.join(d, "weights.safetensors"))
    io = st.load(os.path.join(d, "inputs.safetensors"))
    u_c = st.load(os.path.join(d, "u.safetensors"))["u"]
    meta = {k: int(v) for k, v in st.load_file(os.path.join(d, "inputs.safetensors"))[1].items()}
    model = Model(meta["N"], meta["D"], meta["blocks"], meta["layers"], meta["heads"],
                  meta["ffn"], meta["stride"], meta["k_lce"])
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()}, strict=True)
    x = torch.from_numpy(io["x"].copy())
    du = torch.from_numpy(io["du"].copy())
    B = x.shape[0]

    model.eval()
    with torch.no_grad():
        u = model(x)
        print("maxdiff %.3e" % (np.abs(u.numpy() - u_c).max() / np.abs(u_c).max()))
        x1 = x[:1].contiguous()
        t1 = fastest_time(lambda: model(x1), 30, warm=3)
        t64 = fastest_time(lambda: model(x), 5)
    print("batch1 %.4f" % (t1 * 1e3))
    print("batch64 %.2f" % (B / t64))

    model.train()  # no dropout anywhere: same function as eval

    def step():
        model.zero_grad(set_to_none=False)
        xg = x.clone().requires_grad_(True)  # the pooled inputs need dL/dX too
        (model(xg) * du).sum().backward()

    ttr = fastest_time(step, 3)
    print("train64 %.2f" % (B / ttr))


if __name__ == "__main__":
    main()
