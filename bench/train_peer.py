#!/usr/bin/python3
"""train_peer.py -- the PyTorch side of bench/train_bench.c.

usage: train_peer.py DIR NTHREADS REPS

DIR holds model/weights.safetensors (the C model before training: tables.*,
encoder.*, backbone.*), spec.json (the parsed slice rules), train.json (the
encoder, backbone and training settings) and batch.safetensors (the users'
raw events, the batch, and the C side's first loss).  The model is the one
of tests/reference/trajectory_ref.py (FullModel: the reference encoder and
backbone modules, tables as parameters, loaded with load_state_dict(strict=
True)) in float32, eager mode, torch.set_num_threads(NTHREADS).  A step does,
the usual PyTorch way, what dv365_trainer_step does:

  slice      per (user, cutoff = label time - gap): one boolean mask per
             slice definition and per window over the raw events
             (trajectory_ref.slice_user), hashed rows in numpy;
  pool       per table over all (group, slice) bags, weights 1/count or
             w/sum(w), in two ways, each timed: "dedup" (each distinct row
             looked up once with F.embedding(sparse=True), pooled by a sparse
             weight matrix with torch.sparse.mm: one gradient row per distinct
             row, the work libdv365 does) and "bag" (F.embedding_bag(mode=
             "sum", sparse=True): one gradient row per lookup);
  model      encoder on the groups, each example takes its group's tokens,
             DLRM backbone, weighted BCE/MSE loss, backward;
  update     clip_grad_norm_ (dense), AdamW with the lr schedule, FBGEMM's
             exact row-wise Adagrad on the coalesced sparse table gradients.

Prints, per pooling mode, one line "MODE loss1 X first S step S": the first
step's loss (to compare with C) and seconds, and the fastest of REPS further
steps.  The "bag" run starts again from the initial weights.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import st  # noqa: E402
from trajectory_ref import COLUMNS, FIELDS, FullModel, Trainer, slice_user  # noqa: E402


def gather_bags(model, spec, users, cutoffs, N):
    """Slice each group's user; per table the bags (g * N + slice), their
    concatenated rows, lengths and per-lookup weights (1/count or w/sum w)."""
    per_table = {}
    for g, (ev, cut) in enumerate(zip(users, cutoffs)):
        for s, (table, idx, rows, w) in enumerate(slice_user(spec, ev, cut)):
            n = rows.numel()
            if n == 0:
                continue
            if w is None:
                pw = torch.full((n,), 1.0 / n)
            else:
                total = float(w.double().sum())
                if not total > 0:
                    continue
                pw = w / total
            bags = per_table.setdefault(table, ([], [], []))
            bags[0].append(g * N + s)
            bags[1].append(rows)
            bags[2].append(pw)
    out = {}
    for table, (bag_ids, rows, pws) in per_table.items():
        out[table] = (torch.tensor(bag_ids), torch.cat(rows),
                      torch.tensor([len(r) for r in rows]), torch.cat(pws))
    return out


def pool_batch(model, spec, users, cutoffs, N, D, mode):
    """X [G, N, D].  mode "bag": one F.embedding_bag(sparse=True) per table
    (a gradient row per lookup, coalesced by the optimizer); mode "dedup":
    each distinct row looked up once (F.embedding(sparse=True) on the unique
    rows) and pooled by a sparse [bags x rows] weight matrix (torch.sparse.mm),
    so the gradient has one row per distinct row, as libdv365 computes it."""
    G = len(cutoffs)
    X = torch.zeros(G * N, D)
    for table, (bag_ids, rows, lengths, pw) in gather_bags(model, spec, users, cutoffs,
                                                             N).items():
        weight = model.tables[spec["table_names"][table]]
        if mode == "bag":
            offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
            pooled = F.embedding_bag(rows, weight, offsets, mode="sum", per_sample_weights=pw,
                                     sparse=True)
        else:
            uniq, inv = torch.unique(rows, return_inverse=True)
            bag = torch.repeat_interleave(torch.arange(len(bag_ids)), lengths)
            S = torch.sparse_coo_tensor(torch.stack([bag, inv]), pw, (len(bag_ids), len(uniq)))
            pooled = torch.sparse.mm(S, F.embedding(uniq, weight, sparse=True))
        X = X.index_copy(0, bag_ids, pooled)
    return X.view(G, N, D)


def main():
    d, nt, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(nt)
    spec = json.load(open(os.path.join(d, "spec.json")))
    cfg = json.load(open(os.path.join(d, "train.json")))
    batch, meta = st.load_file(os.path.join(d, "batch.safetensors"))
    weights = st.load(os.path.join(d, "model", "weights.safetensors"))

    N, D = len(spec["slices"]), spec["dim"]
    blocks, layers, heads, ffn, stride, k_lce = cfg["encoder"]
    t = N
    for _ in range(blocks - 1):
        t = -(-t // stride)
    K = (t if blocks else 0) + k_lce
    shapes = {k[len("tables."):]: v.shape for k, v in weights.items() if k.startswith("tables.")}
    items = [f for f in FIELDS if "item_" + f in shapes]
    tasks = [tuple(x) for x in cfg["tasks"]]
    model = FullModel(shapes, (N, D, blocks, layers, heads, ffn, stride, k_lce),
                      (cfg["n_dense"], cfg["bottom"], cfg["top"], D, len(items), K, len(tasks)),
                      items, dtype=torch.float32)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    del weights
    trainer = Trainer(model, tasks, cfg["optimizer"], cfg["embedding"], cfg["clip"])

    users_ev = []
    u = 0
    while "user%d.time" % u in batch:
        users_ev.append({c: batch["user%d.%s" % (u, c)] for c in COLUMNS})
        u += 1
    user, label = batch["user"], batch["label_time"]
    # groups: distinct (user, cutoff) in order of first appearance
    keys, group = [], []
    for b in range(len(user)):
        key = (int(user[b]), int(label[b]) - spec["gap"])
        if key not in keys:
            keys.append(key)
        group.append(keys.index(key))
    g_users = [users_ev[k[0]] for k in keys]
    g_cuts = [k[1] for k in keys]
    items_ids = batch["items"]
    dense = torch.from_numpy(batch["dense"]) if cfg["n_dense"] else None
    labels = torch.from_numpy(batch["labels"])

    def step(mode):
        return trainer.step(lambda: pool_batch(model, spec, g_users, g_cuts, N, D, mode),
                            group, items_ids, dense, labels)[0]

    for mode in ["dedup", "bag"]:
        if mode == "bag":  # start again from the initial weights and optimizer state
            model.load_state_dict({k: torch.from_numpy(v) for k, v in
                                   st.load(os.path.join(d, "model", "weights.safetensors"))
                                   .items()}, strict=True)
            trainer = Trainer(model, tasks, cfg["optimizer"], cfg["embedding"], cfg["clip"])
        a = time.perf_counter()
        loss1 = step(mode)
        first = time.perf_counter() - a
        best = float("inf")
        for _ in range(reps):
            a = time.perf_counter()
            step(mode)
            best = min(best, time.perf_counter() - a)
        print("%s loss1 %.17g first %.6f step %.6f" % (mode, loss1, first, best))
        sys.stdout.flush()

if __name__ == "__main__":
    main()
