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

torch.set_num_threads(1)


def mix64(x):
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


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


def in_range(v, r):
    m = torch.ones_like(v, dtype=torch.bool)
    if r[0] is not None:
        m &= v >= r[0]
    if r[1] is not None:
        m &= v < r[1]
    return m


def pool_user(spec, tables, u):
    """X [N, D] and per-slice counts, as dv365_pool_forward computes them."""
    cutoff, gamma = spec["cutoff"], spec["gamma"]
    explicit = torch.tensor(spec["explicit"], dtype=torch.bool)
    t, action = u["time"], u["action"].long()
    mt, surf = u["media_type"].long(), u["surface"].long()
    dur, dwell = u["duration"].double(), u["dwell"].double()

    # derived per-event values
    is_expl = explicit[action]
    dwell_s = dwell / 1000.0
    has_dur = dur > 0
    log_dwell = torch.log1p(dwell_s)
    ratio = torch.where(has_dur, dwell / torch.where(has_dur, dur, torch.ones_like(dur)),
                        torch.zeros_like(dur))
    den = torch.log1p(gamma * dur / 1000.0)
    score = torch.where(den > 0, log_dwell / torch.where(den > 0, den, torch.ones_like(den)),
                        torch.zeros_like(den))
    weights = [None, score, ratio, dwell_s, log_dwell]

    # one mask per definition, one per window
    def_masks = []
    for d in spec["defs"]:
        m = t < cutoff
        if d["kind"] == 1:
            m = m & is_expl
        elif d["kind"] == 2:
            m = m & ~is_expl
        for key, col in [("actions", action), ("media_types", mt), ("surfaces", surf)]:
            if d[key] is not None:
                lut = torch.zeros(spec["vocab"][key], dtype=torch.bool)
                lut[d[key]] = True
                m = m & lut[col]
        m = m & in_range(dwell, d["dwell_ms"]) & in_range(ratio, d["watch_ratio"]) \
              & in_range(score, d["watch_score"])
        def_masks.append(m)
    win_masks = []
    for frm, to in spec["windows"]:
        m = t < cutoff - to
        if frm >= 0:
            m = m & (t >= cutoff - frm)
        win_masks.append(m)

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
