"""backbone_ref.py -- check the C DLRM backbone against a PyTorch module.

usage: /usr/bin/python3 backbone_ref.py PATH/TO/test_backbone

For several configurations (a small one with every item table and repeated
candidate ids, one without dense features or top hidden layers, one with the
default sizes D = 256, K = 58), this script writes the inputs (dense
features, candidate ids, user tokens U, labels) and the config into a
safetensors file and runs `test_backbone --ref IN OUT`.  The C program builds
the backbone from the config, writes its weights (backbone.*, tables.item_*)
and its logits, loss, every dense gradient, the sparse item-table gradients
and dL/dU.  Here

  * `Model` (parameter names exactly as DESIGN.md section 3) loads the C
    weights with load_state_dict(strict=True) and runs in float64:
    bottom MLP (ReLU after every layer), item rows by the documented hash
    (SplitMix64 finalizer mod rows), facebookresearch/dlrm's dot interaction
    (strict lower triangle, row-major, concatenated after the first row), top
    MLP, F.binary_cross_entropy_with_logits / F.mse_loss (on log1p(y) when the
    task says so), weighted sum;
  * logits, loss, per-task losses, every parameter gradient, dL/dU and the
    item-table gradients (the C rows must be exactly the distinct rows the
    batch used, ascending) must agree to 1e-5 (max error / max |value|);
  * the run with 2 threads must be bitwise identical to the run with 1.

Negative controls check that the comparison notices a wrong model.  Prints a
table; exits non-zero on any failure.
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
import refcheck  # noqa: E402
import st  # noqa: E402

TOL = 1e-5
ROWS = []  # (name, error, tolerance, passed)
FIELDS = ["media", "author", "topic"]
MASK64 = (1 << 64) - 1


def mix64(x):
    """SplitMix64 finalizer (docs/hash.md)."""
    x &= MASK64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK64
    x ^= x >> 31
    return x


def hash_row(i, rows):
    return mix64(int(i)) % rows


def rel_err(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ref.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(ours - ref))) / scale


def check(name, ours, ref, tol=TOL):
    err = rel_err(ours, ref)
    ROWS.append((name, err, tol, err <= tol))


def must_differ(name, ours, wrong, tol=TOL):
    err = rel_err(ours, wrong)
    ROWS.append(("control: " + name, err, 100 * tol, err > 100 * tol))


def check_true(name, ok):
    ROWS.append((name, 0.0 if ok else 1.0, 0.0, bool(ok)))


# --------------------------------------------------------------------------- model


class Backbone(nn.Module):
    """DLRM: bottom MLP -> z0; Z = [z0 ; item rows ; U]; dot interaction; top MLP."""

    def __init__(self, n_dense, bottom, top, dim, n_items, k, n_tasks):
        super().__init__()
        widths = [n_dense] + list(bottom) + [dim] if n_dense else []
        self.bottom = nn.ModuleList(
            [nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])
        f = (1 if n_dense else 0) + n_items + k
        widths = [dim + f * (f - 1) // 2] + list(top) + [n_tasks]
        self.top = nn.ModuleList(
            [nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])

    def forward(self, dense, items, U, relu_z0=True):
        feats = []
        if len(self.bottom):
            x = dense
            for i, lin in enumerate(self.bottom):
                x = lin(x)
                if relu_z0 or i + 1 < len(self.bottom):
                    x = F.relu(x)
            feats.append(x.unsqueeze(1))
        feats += [e.unsqueeze(1) for e in items]
        Z = torch.cat(feats + [U], dim=1)  # [B, F, D]
        n = Z.shape[1]
        G = torch.bmm(Z, Z.transpose(1, 2))
        li = torch.tensor([i for i in range(n) for j in range(i)], dtype=torch.long)
        lj = torch.tensor([j for i in range(n) for j in range(i)], dtype=torch.long)
        x = torch.cat([Z[:, 0, :], G[:, li, lj]], dim=1)
        for i, lin in enumerate(self.top):
            x = lin(x)
            if i + 1 < len(self.top):
                x = F.relu(x)
        return x


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        items = [f for f in FIELDS if f in spec["items"]]
        self.items = items
        self.backbone = Backbone(spec["n_dense"], spec["bottom"], spec["top"], spec["dim"],
                                 len(items), spec["k"], len(spec["tasks"]))
        self.tables = nn.ParameterDict(
            {"item_" + f: nn.Parameter(torch.zeros(spec["items"][f], spec["dim"]))
             for f in items})

    def forward(self, dense, ids, U, rows_fn=hash_row, relu_z0=True):
        embs = []
        for f in self.items:
            t = self.tables["item_" + f]
            rows = torch.tensor([rows_fn(i, t.shape[0]) for i in ids[:, FIELDS.index(f)]],
                                dtype=torch.long)
            embs.append(F.embedding(rows, t))
        return self.backbone(dense, embs, U, relu_z0)


def task_losses(logits, labels, tasks):
    out = []
    for t, (_, kind, weight, log1p) in enumerate(tasks):
        z, y = logits[:, t], labels[:, t]
        if kind == "binary":
            out.append(F.binary_cross_entropy_with_logits(z, y))
        else:
            out.append(F.mse_loss(z, torch.log1p(y) if log1p else y))
    return out


# --------------------------------------------------------------------------- cases


def config_yaml(spec):
    tasks = "".join(
        "    - {name: %s, type: %s, weight: %r%s}\n"
        % (name, kind, weight, ", log1p: true" if log1p else "")
        for name, kind, weight, log1p in spec["tasks"])
    items = ", ".join("%s: %d" % (f, r) for f, r in spec["items"].items())
    return (
        "dim: %d\n"
        "vocab:\n"
        "  actions:\n"
        "    - {name: view, explicit: false}\n"
        "  media_types: [video]\n"
        "  surfaces: [feed]\n"
        "tables:\n"
        "  - {name: t, rows: 16}\n"
        "slices:\n"
        "  - name: s\n"
        "    pool: {media: t}\n"
        "encoder: {blocks: 0, heads: 1, k_lce: %d}\n"
        "backbone:\n"
        "  dense_features: %d\n"
        "  bottom: %s\n"
        "  top: %s\n"
        "  item_tables: {%s}\n"
        "  init_std: %r\n"
        "  tasks:\n%s"
        % (spec["dim"], spec["k"], spec["n_dense"], list(spec["bottom"]), list(spec["top"]),
           items, spec["init_std"], tasks))


CASES = [
    dict(name="small", dim=32, k=16, n_dense=8, bottom=[64, 16], top=[128, 64],
         items={"media": 1000, "author": 500, "topic": 50}, init_std=0.3, batch=16, seed=5,
         tasks=[("like", "binary", 1.0, False), ("skip", "binary", 0.5, False),
                ("watch", "regression", 0.1, True)]),
    dict(name="no-dense", dim=8, k=5, n_dense=0, bottom=[64], top=[],
         items={"topic": 7}, init_std=0.5, batch=9, seed=6,
         tasks=[("r", "regression", 1.0, False), ("b", "binary", 2.0, False)]),
    dict(name="default-sizes", dim=256, k=58, n_dense=8, bottom=[64], top=[256, 128],
         items={"media": 4096, "author": 1024, "topic": 256}, init_std=0.05, batch=8, seed=7,
         tasks=[("like", "binary", 1.0, False), ("comment", "binary", 1.0, False),
                ("share", "binary", 1.0, False), ("complete", "binary", 1.0, False),
                ("skip", "binary", 1.0, False), ("watch_time", "regression", 0.1, True)]),
]


def run_case(exe, spec, tmp):
    rng = np.random.RandomState(spec["seed"])
    B, D, K, T = spec["batch"], spec["dim"], spec["k"], len(spec["tasks"])
    ids = rng.randint(0, 2**63, size=(B, 3), dtype=np.int64).astype(np.uint64)
    ids[:, 0] |= np.uint64(1 << 63)  # full 64-bit ids
    if B > 3:
        ids[2] = ids[0]  # a repeated candidate: its rows must be merged
        ids[3, 2] = ids[1, 2]
    inputs = {
        "ids": ids,
        "U": rng.normal(0, 0.5, (B, K, D)).astype(np.float32),
        "labels": np.stack(
            [(rng.rand(B) < 0.4).astype(np.float32) if kind == "binary"
             else rng.exponential(20.0, B).astype(np.float32)
             for _, kind, _, _ in spec["tasks"]], axis=1),
    }
    if spec["n_dense"]:
        inputs["dense"] = rng.normal(0, 1, (B, spec["n_dense"])).astype(np.float32)
    inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    st.save(inp, inputs, metadata={"config": config_yaml(spec), "seed": str(spec["seed"]),
                                   "nthreads": "2"})
    subprocess.run([exe, "--ref", inp, out], check=True)
    res = st.load(out)

    model = Model(spec).double()
    weights = {k: torch.from_numpy(v.astype(np.float64)) for k, v in res.items()
               if k.startswith("backbone.") or k.startswith("tables.")}
    model.load_state_dict(weights, strict=True)
    dense = torch.from_numpy(inputs["dense"].astype(np.float64)) if spec["n_dense"] else None
    U = torch.from_numpy(inputs["U"].astype(np.float64)).requires_grad_(True)
    labels = torch.from_numpy(inputs["labels"].astype(np.float64))
    logits = model(dense, ids, U)
    per = task_losses(logits, labels, spec["tasks"])
    loss = sum(w * l for (_, _, w, _), l in zip(spec["tasks"], per))
    loss.backward()

    tag = spec["name"] + ": "
    check(tag + "logits", res["logits"], logits.detach().numpy())
    check(tag + "loss", res["loss"], [loss.item()])
    check(tag + "task losses", res["task_loss"], [l.item() for l in per])
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            check(tag + "grad " + name, res["grad." + name], p.grad.numpy())
    check(tag + "dU", res["dU"], U.grad.numpy())
    for f in model.items:
        name = "tables.item_" + f
        g = model.tables["item_" + f].grad.numpy()
        want = sorted({hash_row(i, g.shape[0]) for i in ids[:, FIELDS.index(f)]})
        rows = res["grad." + name + ".rows"].astype(np.int64)
        check_true(tag + name + " rows = distinct used rows", list(rows) == want)
        if list(rows) == want:
            check(tag + "grad " + name, res["grad." + name], g[rows])
            others = np.delete(g, rows, axis=0)
            check_true(tag + name + " other rows have no gradient", not np.any(others))
        if B > 3:
            check_true(tag + name + " repeated ids merged", len(rows) < B)

    # 1 and 2 threads: bitwise the same
    flat = np.concatenate([res["grad." + n].ravel() for n, _ in model.named_parameters()
                           if n.startswith("backbone.")])
    same = (np.array_equal(res["t2.logits"], res["logits"]) and
            np.array_equal(res["t2.dU"], res["dU"]) and np.array_equal(res["t2.grads"], flat))
    for f in model.items:
        name = "grad.tables.item_" + f
        same = same and np.array_equal(res["t2." + name], res[name]) and \
            np.array_equal(res["t2." + name + ".rows"], res[name + ".rows"])
    check_true(tag + "2 threads bitwise = 1 thread", same)

    # negative controls: a different hash, a bottom MLP without the final ReLU
    if spec["name"] == "small":
        with torch.no_grad():
            must_differ(tag + "rows = id % rows", res["logits"],
                        model(dense, ids, U, rows_fn=lambda i, r: int(i) % r).numpy())
            must_differ(tag + "no ReLU on z0", res["logits"],
                        model(dense, ids, U, relu_z0=False).numpy())


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in CASES:
            run_case(sys.argv[1], spec, tmp)
    return refcheck.report(ROWS)


if __name__ == "__main__":
    sys.exit(main())
