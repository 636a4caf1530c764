#!/usr/bin/python3
"""adapt_peer.py -- the PyTorch side of bench/adapt_bench.c.

usage: adapt_peer.py INPUTS NTHREADS

INPUTS (safetensors) holds blobs [USERS, blob bytes] (DV365 blobs: a header,
then K fused 4-bit rows), the linear adapter's weight [P, K*D] and bias [P],
and y_first (the C outputs of the first `batch` users).  Per user, the peer
views the blob's rows after the header, dequantizes them with
torch.ops.quantized.embedding_bag_4bit_unpack (FBGEMM's fused layout, the
one the blob uses) and applies nn.Linear(K*D, P), eager, no_grad,
torch.set_num_threads(NTHREADS).  It prints

  batch1  P50 P99    seconds per user, one user per call
  batch64 P50 P99    seconds per user (batch time / 64), 64 users per call
  maxdiff X          max |y_torch - y_C| / max |y_C| on the first users
"""
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import st  # noqa: E402


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def main():
    path, nt = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(nt)
    t, meta = st.load_file(path)
    K, D, H = int(meta["K"]), int(meta["D"]), int(meta["header"])
    reps1, reps64, B = int(meta["reps1"]), int(meta["reps64"]), int(meta["batch"])
    blobs = torch.from_numpy(t["blobs"])
    users, size = blobs.shape
    row = (size - H) // K
    # Each blob's rows as a [K, row] uint8 view (no copy).
    rows = blobs[:, H:].reshape(users, K, row)
    lin = nn.Linear(K * D, t["weight"].shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(t["weight"]))
        lin.bias.copy_(torch.from_numpy(t["bias"]))
    unpack = torch.ops.quantized.embedding_bag_4bit_unpack

    def one(u):
        return lin(unpack(rows[u]).reshape(1, K * D))

    def batch(u0):
        idx = [(u0 + b) % users for b in range(B)]
        q = rows[idx].reshape(B * K, row)
        return lin(unpack(q).reshape(B, K * D))

    with torch.no_grad():
        y = batch(0).numpy()
        yc = t["y_first"]
        print("maxdiff %.3e" % (np.abs(y - yc).max() / np.abs(yc).max()))
        lat = []
        for r in range(reps1 + 200):
            t0 = time.perf_counter()
            one(r % users)
            dt = time.perf_counter() - t0
            if r >= 200:
                lat.append(dt)
        print("batch1 %.9f %.9f" % (quantile(lat, 0.5), quantile(lat, 0.99)))
        lat = []
        for r in range(reps64 + 10):
            t0 = time.perf_counter()
            batch((r * B) % users)
            dt = time.perf_counter() - t0
            if r >= 10:
                lat.append(dt / B)
        print("batch64 %.9f %.9f" % (quantile(lat, 0.5), quantile(lat, 0.99)))


if __name__ == "__main__":
    main()
