#!/usr/bin/python3
"""pool_peer.py — the PyTorch side of bench/pool_bench.c.

usage: pool_peer.py DIR REPS

DIR holds spec.json (the parsed slice rules of the config, written by
pool_bench) and user<k>.bin (raw event columns).  For each user this does
the same work as dv365_pool_forward, the usual PyTorch way, on one thread:
derived per-event values, one boolean mask per slice, the id hash
(docs/hash.md) in numpy, then per table one EmbeddingBag call in 'mean' mode
for unweighted slices and one in 'sum' mode with per_sample_weights for
weighted slices (divided by the weight sums).  Tables have the config's
sizes (contents differ from libdv365's, which does not change the cost).

Prints "time <k> <median seconds>" and "counts <k> c_0 ... c_{N-1}" lines.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from slicing import derived, mix64, rule_masks  # noqa: E402

torch.set_num_threads(1)


def load_user(path, n):
    raw = open(path, "rb").read()
    off = 0
    cols = {}
    for name, dt in [("time", np.int64), ("media", np.uint64), ("author", np.uint64),
                     ("topic", np.uint64), ("action", np.int32), ("media_type", np.int32),
                     ("surface", np.int32), ("duration", np.float32), ("dwell", np.float32)]:
        size = np.dtype(dt).itemsize * n
        cols[name] = np.frombuffer(raw, dtype=dt, count=n, offset=off)
        off += size
    u = {"ids": [cols["media"], cols["author"], cols["topic"]]}  # numpy uint64 (torch has none)
    for name in ["time", "action", "media_type", "surface", "duration", "dwell"]:
        u[name] = torch.from_numpy(cols[name].copy())
    return u


def pool_user(spec, tables, u):
    """X [N, D] and per-slice counts, as dv365_pool_forward computes them."""
    cutoff, gamma = spec["cutoff"], spec["gamma"]
    explicit = torch.tensor(spec["explicit"], dtype=torch.bool)
    t, action = u["time"], u["action"].long()
    mt, surf = u["media_type"].long(), u["surface"].long()
    dur, dwell = u["duration"].double(), u["dwell"].double()

    # derived per-event values, one mask per definition, one per window
    is_expl = explicit[action]
    dwell_s, log_dwell, ratio, score = derived(gamma, dur, dwell)
    weights = [None, score, ratio, dwell_s, log_dwell]
    def_masks, win_masks = rule_masks(spec, cutoff, t, is_expl,
                                      {"actions": action, "media_types": mt, "surfaces": surf},
                                      dwell, ratio, score)

    # hashed rows per (field, table size)
    rows_cache = {}

    def rows_of(field, n_rows):
        key = (field, n_rows)
        if key not in rows_cache:
            r = (mix64(u["ids"][field]) % np.uint64(n_rows)).astype(np.int64)
            rows_cache[key] = torch.from_numpy(r)
        return rows_cache[key]

    # bags: per table, unweighted (mean) and weighted (sum / weight sum)
    N, D = len(spec["slices"]), spec["dim"]
    X = torch.zeros(N, D)
    counts = [0] * N
    groups = {}
    for s, (d, field, table, w) in enumerate(spec["slices"]):
        idx = (def_masks[d] & win_masks[w]).nonzero().squeeze(1)
        counts[s] = idx.numel()
        wk = spec["defs"][d]["weight"]
        g = groups.setdefault((table, wk != 0), ([], [], [], []))
        g[0].append(s)
        g[1].append(rows_of(field, spec["tables"][table])[idx])
        if wk != 0:
            g[2].append(weights[wk][idx].float())
    for (table, weighted), (slices, inputs, psw, _) in groups.items():
        lengths = torch.tensor([len(i) for i in inputs])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        inp = torch.cat(inputs)
        if weighted:
            pw = torch.cat(psw)
            out = F.embedding_bag(inp, tables[table], offsets, mode="sum", per_sample_weights=pw)
            wsum = torch.zeros(len(slices)).index_add_(
                0, torch.repeat_interleave(torch.arange(len(slices)), lengths), pw)
            out = torch.where(wsum[:, None] > 0, out / wsum.clamp_min(1e-30)[:, None],
                              torch.zeros_like(out))
        else:
            out = F.embedding_bag(inp, tables[table], offsets, mode="mean")
        X[slices] = out
    return X, counts


def main():
    folder, reps = sys.argv[1], int(sys.argv[2])
    spec = json.load(open(os.path.join(folder, "spec.json")))
    gen = torch.Generator().manual_seed(1)
    tables = [torch.empty(rows, spec["dim"]).normal_(0, 0.05, generator=gen)
              for rows in spec["tables"]]
    with torch.no_grad():
        for k, n in enumerate(spec["users"]):
            u = load_user(os.path.join(folder, "user%d.bin" % k), n)
            pool_user(spec, tables, u)  # warm-up
            times = []
            for _ in range(reps):
                a = time.perf_counter()
                X, counts = pool_user(spec, tables, u)
                times.append(time.perf_counter() - a)
            times.sort()
            print("time %d %.6f" % (k, times[len(times) // 2]))
            print("counts %d %s" % (k, " ".join(str(c) for c in counts)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
