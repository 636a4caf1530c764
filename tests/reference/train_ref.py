"""train_ref.py -- the training building blocks of libdv365 against PyTorch / numpy.

Usage: train_ref.py TEST_OPTIM TEST_LOSS_METRICS TEST_INTERACTION

Each argument is a cmocka test program that also has a reference mode,
`PROG --ref IN OUT`: it reads the case inputs this script wrote into IN
(safetensors, via st.py), computes them with the library and writes the
results to OUT, which are compared here with:

  optim        torch.optim.Adam / AdamW (20-step trajectories, moments),
               row-wise Adagrad in FBGEMM's formula (and TorchRec's
               RowWiseAdagrad formula), torch.nn.utils.clip_grad_norm_,
               schedules built from torch.optim.lr_scheduler (LinearLR,
               CosineAnnealingLR);
  loss         F.binary_cross_entropy_with_logits and F.mse_loss (optionally on
               log1p(target)), weighted per task, and their autograd gradients;
  metrics      TorchRec's NE (torchrec/metrics/ne.py, re-implemented below in
               numpy), AUC computed the way sklearn.metrics.roc_auc_score does
               (distinct thresholds + trapezoid) and by brute-force pair
               counting, TorchRec's weighted MSE;
  interaction  facebookresearch/dlrm's interact_features (dot, without self
               interaction) and its autograd backward, in float64.

Errors are max|ours - ref| / max|ref| over each tensor; tolerances are 1e-5 for
float32 results and 1e-9 for double ones.  A few negative controls check that
the comparison notices a wrong answer.  Prints a table; exits non-zero on any
failure.
"""

import math
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

F32_TOL = 1e-5
F64_TOL = 1e-9
ROWS = []  # (name, error, tolerance, passed)


def rel_err(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    return float(np.max(np.abs(ours - ref))) / scale if ref.size else 0.0


def check(name, ours, ref, tol):
    err = rel_err(ours, ref)
    ROWS.append((name, err, tol, err <= tol))


def must_differ(name, ours, wrong_ref, tol):
    """Negative control: a wrong reference must be far outside tolerance."""
    err = rel_err(ours, wrong_ref)
    ROWS.append(("control: " + name, err, 100 * tol, err > 100 * tol))


def run(exe, tensors, tmp, tag):
    inp = os.path.join(tmp, tag + ".in.safetensors")
    out = os.path.join(tmp, tag + ".out.safetensors")
    st.save(inp, tensors)
    subprocess.run([exe, "--ref", inp, out], check=True)
    return st.load(out)


# --------------------------------------------------------------------------- optim

ADAM_CASES = [
    # (decoupled, beta1, beta2, eps, weight_decay, lr kind)
    (False, 0.9, 0.999, 1e-8, 0.0, "const"),
    (False, 0.8, 0.99, 1e-6, 0.05, "sched"),
    (True, 0.9, 0.999, 1e-8, 0.1, "sched"),
]


def torch_adam_traj(p0, grads, lrs, decoupled, b1, b2, eps, wd):
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([p], lr=float(lrs[0]), betas=(b1, b2), eps=eps, weight_decay=wd)
    traj = []
    for s in range(len(lrs)):
        opt.param_groups[0]["lr"] = float(lrs[s])
        p.grad = torch.from_numpy(grads[s].copy())
        opt.step()
        traj.append(p.detach().numpy().copy())
    state = opt.state[p]
    return np.stack(traj), state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()


def adagrad_fbgemm(table0, rows, grads, lrs, eps, wd, mode):
    """FBGEMM rowwise_adagrad, split_weight_update_cpu (float32 throughout)."""
    w = torch.from_numpy(table0.copy())
    acc = torch.zeros(w.shape[0], dtype=torch.float32)
    for s in range(len(lrs)):
        r = torch.from_numpy(rows[s])
        g = torch.from_numpy(grads[s])
        cur = w[r]
        g2 = g + wd * cur if mode == 1 else g
        acc[r] += (g2 * g2).sum(dim=1) / g.shape[1]
        mult = float(lrs[s]) / (acc[r].sqrt() + eps)
        if mode == 1:
            corr = 1.0 - mult * wd
        elif mode == 2:
            corr = torch.full_like(mult, 1.0 - float(lrs[s]) * wd)
        else:
            corr = torch.ones_like(mult)
        w[r] = corr[:, None] * cur - g * mult[:, None]
    return w.numpy(), acc.numpy()


def adagrad_torchrec(table0, rows, grads, lrs, eps):
    """torchrec.optim.RowWiseAdagrad (dense grads, no decay):
    state_sum += grad.pow(2).mean(dim=1); p -= lr * grad / (sqrt(state_sum) + eps)."""
    p = torch.from_numpy(table0.copy()).double()
    state = torch.zeros(p.shape[0], dtype=torch.float64)
    for s in range(len(lrs)):
        dense = torch.zeros_like(p)
        dense[torch.from_numpy(rows[s])] = torch.from_numpy(grads[s]).double()
        state += dense.pow(2).mean(dim=1)
        p -= float(lrs[s]) * dense / (state.sqrt() + eps)[:, None]
    return p.numpy(), state.numpy()


def sched_torch(decay, base, mn, warm, total, steps):
    """lr(t) for t in steps from torch.optim.lr_scheduler objects."""
    warnings.filterwarnings("ignore", category=UserWarning)

    def series(make, n):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
        sch = make(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
        return out

    horizon = max(steps)
    if warm >= 2:
        warm_lrs = series(lambda o: torch.optim.lr_scheduler.LinearLR(
            o, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm - 1), warm)
    else:
        warm_lrs = [base] * warm
    n_decay = horizon - warm + 1
    if decay == 0:
        dec = [base] * n_decay
    elif decay == 1:
        dec = series(lambda o: torch.optim.lr_scheduler.LinearLR(
            o, start_factor=1.0, end_factor=mn / base, total_iters=total - warm), n_decay)
    else:
        dec = series(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=total - warm, eta_min=mn), n_decay)
        # CosineAnnealingLR is periodic; the schedule holds the floor after total.
        dec = [x if warm + e <= total else mn for e, x in enumerate(dec)]
    out = []
    for t in steps:
        out.append(warm_lrs[t - 1] if t <= warm else dec[t - warm])
    return np.array(out)


def check_optim(exe, tmp, rng):
    tensors = {}
    S, n = 20, 257
    sched = np.array([0.02 * min(1.0, (s + 1) / 5) * (0.5 + 0.5 * math.cos(math.pi * s / 40))
                      for s in range(S)])
    cases = []
    for c, (dec, b1, b2, eps, wd, lrk) in enumerate(ADAM_CASES):
        p0 = rng.normal(0, 1, n).astype(np.float32)
        scale = np.where(np.arange(n) % 7 == 0, 1e-6, 1.0)  # tiny gradients: eps matters
        grads = (rng.normal(0, 1, (S, n)) * scale).astype(np.float32)
        lrs = np.full(S, 1e-2) if lrk == "const" else sched
        tensors["adam%d.hp" % c] = np.array([b1, b2, eps, wd, float(dec)])
        tensors["adam%d.p0" % c] = p0
        tensors["adam%d.grads" % c] = grads
        tensors["adam%d.lrs" % c] = lrs
        cases.append((p0, grads, lrs, dec, b1, b2, eps, wd))

    R, D, k, Sa = 50, 16, 12, 6
    ada = []
    for c, (mode, wd) in enumerate([(0, 0.0), (1, 0.01), (2, 0.01)]):
        table0 = rng.normal(0, 0.1, (R, D)).astype(np.float32)
        rows = np.stack([rng.choice(R, k, replace=False) for _ in range(Sa)]).astype(np.int64)
        grads = rng.normal(0, 1, (Sa, k, D)).astype(np.float32)
        lrs = np.array([0.05, 0.05, 0.04, 0.03, 0.02, 0.01])
        tensors["adagrad%d.hp" % c] = np.array([1e-8, wd, float(mode)])
        tensors["adagrad%d.table0" % c] = table0
        tensors["adagrad%d.rows" % c] = rows
        tensors["adagrad%d.grads" % c] = grads
        tensors["adagrad%d.lrs" % c] = lrs
        ada.append((table0, rows, grads, lrs, 1e-8, wd, mode))

    sizes = [13, 1, 100, 7]
    cgrads = (rng.normal(0, 0.5, sum(sizes))).astype(np.float32)
    total_norm = float(np.sqrt(np.sum(cgrads.astype(np.float64) ** 2)))
    max_norms = np.array([0.5, 1e3, total_norm * 0.999, 1.0])
    tensors["clip.sizes"] = np.array(sizes, dtype=np.int64)
    tensors["clip.grads"] = cgrads
    tensors["clip.max"] = max_norms

    sched_hp = np.array([
        [0, 0.01, 0.0, 0, 0],
        [0, 0.01, 0.0, 5, 0],
        [1, 0.1, 0.001, 10, 50],
        [2, 0.1, 0.001, 10, 50],
        [2, 1.0, 0.0, 0, 40],
        [1, 1.0, 0.0, 0, 40],
        [2, 0.3, 0.01, 2, 3],
    ])
    steps = np.arange(1, 61, dtype=np.int64)
    tensors["sched.hp"] = sched_hp
    tensors["sched.steps"] = steps

    out = run(exe, tensors, tmp, "optim")

    for c, (p0, grads, lrs, dec, b1, b2, eps, wd) in enumerate(cases):
        traj, m, v = torch_adam_traj(p0, grads, lrs, dec, b1, b2, eps, wd)
        kind = "AdamW" if dec else "Adam"
        check("%s wd=%g trajectory (20 steps)" % (kind, wd), out["adam%d.traj" % c], traj, F32_TOL)
        check("%s wd=%g exp_avg" % (kind, wd), out["adam%d.m" % c], m, F32_TOL)
        check("%s wd=%g exp_avg_sq" % (kind, wd), out["adam%d.v" % c], v, F32_TOL)
        if wd > 0:
            other, _, _ = torch_adam_traj(p0, grads, lrs, not dec, b1, b2, eps, wd)
            must_differ("%s vs the other decay" % kind, out["adam%d.traj" % c], other, F32_TOL)

    for c, (table0, rows, grads, lrs, eps, wd, mode) in enumerate(ada):
        w, acc = adagrad_fbgemm(table0, rows, grads, lrs, eps, wd, mode)
        check("rowwise adagrad mode %d table (FBGEMM)" % mode, out["adagrad%d.table" % c], w, F32_TOL)
        check("rowwise adagrad mode %d accumulator" % mode, out["adagrad%d.acc" % c], acc, F32_TOL)
        if mode == 0:
            w2, acc2 = adagrad_torchrec(table0, rows, grads, lrs, eps)
            check("rowwise adagrad table (TorchRec formula)", out["adagrad%d.table" % c], w2, F32_TOL)
            check("rowwise adagrad acc (TorchRec formula)", out["adagrad%d.acc" % c], acc2, F32_TOL)

    for i, mx in enumerate(max_norms):
        params = []
        at = 0
        for s in sizes:
            p = torch.nn.Parameter(torch.zeros(s))
            p.grad = torch.from_numpy(cgrads[at:at + s].copy())
            params.append(p)
            at += s
        norm = float(torch.nn.utils.clip_grad_norm_(params, float(mx)))
        clipped = np.concatenate([p.grad.numpy() for p in params])
        check("clip_grad_norm_ max %.4g: gradients" % mx, out["clip.out"][i], clipped, 1e-6)
        check("clip_grad_norm_ max %.4g: norm" % mx, out["clip.norm"][i:i + 1], [norm], 1e-6)

    for i, h in enumerate(sched_hp):
        ref = sched_torch(int(h[0]), h[1], h[2], int(h[3]), int(h[4]), list(steps))
        name = ["constant", "linear", "cosine"][int(h[0])]
        check("schedule %s warmup %d total %d" % (name, h[3], h[4]), out["sched.lrs"][i], ref, F64_TOL)


# --------------------------------------------------------------------------- loss / metrics

def ne_torchrec(pred, label, weight, eta=1e-12):
    """torchrec/metrics/ne.py: compute_cross_entropy, get_ne_states, compute_ne
    (predictions double, clamped to [eta, 1 - eta]; log2; states summed)."""
    p = np.clip(pred.astype(np.float64), eta, 1 - eta)
    y = label.astype(np.float64)
    w = weight.astype(np.float64)
    ce_sum = np.sum(-w * y * np.log2(p) - w * (1.0 - y) * np.log2(1.0 - p))
    n = np.sum(w)
    pos = np.sum(w * y)
    neg = np.sum(w * (1.0 - y))
    mean = np.clip(pos / n, eta, 1 - eta)
    return ce_sum / (-pos * np.log2(mean) - neg * np.log2(1.0 - mean))


def auc_sklearn(pred, label, weight):
    """sklearn.metrics.roc_auc_score's method: _binary_clf_curve (distinct
    thresholds, cumulative weighted tps/fps) then the trapezoid rule."""
    order = np.argsort(-pred.astype(np.float64), kind="mergesort")
    p = pred[order].astype(np.float64)
    y = label[order].astype(np.float64)
    w = weight[order].astype(np.float64)
    idx = np.r_[np.where(np.diff(p))[0], p.size - 1]
    tps = np.r_[0.0, np.cumsum(w * y)[idx]]
    fps = np.r_[0.0, np.cumsum(w * (1 - y))[idx]]
    x, yy = fps / fps[-1], tps / tps[-1]
    return float(np.sum(np.diff(x) * (yy[1:] + yy[:-1]) / 2))


def auc_pairs(pred, label, weight):
    """Brute force: Σ over (positive, negative) pairs of [p_pos > p_neg] + ½[tie]."""
    p = pred.astype(np.float64)
    y = label.astype(np.float64)
    pos = weight.astype(np.float64) * y
    neg = weight.astype(np.float64) * (1 - y)
    gt = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    return float(pos @ gt @ neg / (pos.sum() * neg.sum()))


def check_loss_metrics(exe, tmp, rng):
    tensors = {}
    # Loss cases: tasks [T, 3] = kind (0 binary, 1 regression), weight, log1p.
    tasks0 = np.array([[0, 1.0, 0], [0, 0.5, 0], [1, 0.3, 1], [1, 2.0, 0], [0, 0.0, 0]])
    B = 33
    z = (rng.normal(0, 4, (B, 5))).astype(np.float32)
    z[0, 0], z[1, 0], z[2, 1], z[3, 4] = 60, -60, 95, -88  # far tails: must stay finite
    y = np.zeros((B, 5), dtype=np.float32)
    y[:, 0] = rng.random(B) < 0.3
    y[:, 1] = rng.random(B)  # soft labels
    y[:, 2] = rng.exponential(30, B)  # watch time, fitted as log1p
    y[:, 3] = rng.normal(0, 1, B)
    y[:, 4] = rng.random(B) < 0.5
    z[:, 2] += 3
    tensors["loss0.logits"], tensors["loss0.labels"], tensors["loss0.tasks"] = z, y, tasks0
    tasks1 = np.array([[0, 1.0, 0]])
    tensors["loss1.logits"] = np.array([[-3.5]], dtype=np.float32)
    tensors["loss1.labels"] = np.array([[1.0]], dtype=np.float32)
    tensors["loss1.tasks"] = tasks1
    loss_cases = [(z, y, tasks0), (tensors["loss1.logits"], tensors["loss1.labels"], tasks1)]

    n = 1000
    logit = rng.normal(0, 2, n)
    lab = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    pr = (1 / (1 + np.exp(-(logit + rng.normal(0, 1, n))))).astype(np.float32)
    pr[:3] = [0.0, 1.0, 1.0]  # exercise the clamp
    w = rng.uniform(0.1, 3, n).astype(np.float32)
    metric_cases = {
        "ne0": (pr, lab, None, 97),
        "ne1": (pr, lab, w, 1000),
        "auc0": (np.round(pr, 2), lab, None, 333),  # many ties
        "auc1": (np.round(pr, 1), rng.random(n).astype(np.float32), w, 250),  # soft, weighted
        "mse0": (pr * 3, rng.normal(1, 1, n).astype(np.float32), w, 128),
    }
    for key, (p, l, wt, chunk) in metric_cases.items():
        tensors[key + ".pred"] = p.astype(np.float32)
        tensors[key + ".label"] = l.astype(np.float32)
        if wt is not None:
            tensors[key + ".weight"] = wt
        tensors[key + ".chunk"] = np.array([float(chunk)])

    out = run(exe, tensors, tmp, "loss_metrics")

    for c, (zz, yy, tk) in enumerate(loss_cases):
        zt = torch.tensor(zz.astype(np.float64), requires_grad=True)
        yt = torch.tensor(yy.astype(np.float64))
        per = []
        for t in range(zz.shape[1]):
            if tk[t, 0] == 0:
                per.append(F.binary_cross_entropy_with_logits(zt[:, t], yt[:, t]))
            else:
                target = torch.log1p(yt[:, t]) if tk[t, 2] else yt[:, t]
                per.append(F.mse_loss(zt[:, t], target))
        total = sum(float(tk[t, 1]) * per[t] for t in range(len(per)))
        total.backward()
        ref_val = np.array([float(total)] + [float(x) for x in per])
        check("loss%d value + per-task (B=%d, T=%d)" % (c, zz.shape[0], zz.shape[1]),
              out["loss%d.value" % c], ref_val, F64_TOL)
        check("loss%d dlogits" % c, out["loss%d.grad" % c], zt.grad.numpy(), F32_TOL)
        if c == 0:
            # float32 PyTorch too (what a PyTorch trainer would compute).
            z32 = torch.tensor(zz, requires_grad=True)
            tot32 = sum(float(tk[t, 1]) * (
                F.binary_cross_entropy_with_logits(z32[:, t], torch.tensor(yy[:, t]))
                if tk[t, 0] == 0 else
                F.mse_loss(z32[:, t], torch.log1p(torch.tensor(yy[:, t])) if tk[t, 2]
                           else torch.tensor(yy[:, t]))) for t in range(zz.shape[1]))
            tot32.backward()
            check("loss0 value vs float32 torch", out["loss0.value"][:1], [float(tot32)], F32_TOL)
            check("loss0 dlogits vs float32 torch", out["loss0.grad"], z32.grad.numpy(), F32_TOL)

    for key, (p, l, wt, chunk) in metric_cases.items():
        wv = wt if wt is not None else np.ones_like(p)
        got = out[key + ".value"]
        if key.startswith("ne"):
            check("NE %s (TorchRec formula, chunks of %d)" % (key, chunk), got, [ne_torchrec(p, l, wv)],
                  F64_TOL)
            if key == "ne0":
                # Without the clamp the predictions 0 and 1 give infinities.
                with np.errstate(divide="ignore", invalid="ignore"):
                    ref_noclamp = ne_torchrec(p, l, wv, eta=0.0)
                ROWS.append(("control: NE without clamp is not finite", 0.0, 0.0,
                             not np.isfinite(ref_noclamp)))
        elif key.startswith("auc"):
            check("AUC %s (sklearn method, ties)" % key, got, [auc_sklearn(p, l, wv)], F64_TOL)
            check("AUC %s (pair counting)" % key, got, [auc_pairs(p, l, wv)], F64_TOL)
        else:
            d = p.astype(np.float64) - l.astype(np.float64)
            check("MSE %s (weighted)" % key, got, [np.sum(wv * d * d) / np.sum(wv.astype(np.float64))],
                  F64_TOL)


# --------------------------------------------------------------------------- interaction

def dlrm_interact(x, ly, itself=False):
    """facebookresearch/dlrm dlrm_s_pytorch.py interact_features, op 'dot' (index
    dtype made explicit so that F = 1, with no pairs, works)."""
    (batch_size, d) = x.shape
    T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
    Z = torch.bmm(T, torch.transpose(T, 1, 2))
    _, ni, nj = Z.shape
    offset = 1 if itself else 0
    li = torch.tensor([i for i in range(ni) for j in range(i + offset)], dtype=torch.long)
    lj = torch.tensor([j for i in range(nj) for j in range(i + offset)], dtype=torch.long)
    Zflat = Z[:, li, lj]
    return torch.cat([x] + [Zflat], dim=1)


def check_interaction(exe, tmp, rng):
    shapes = [(3, 6, 8), (2, 62, 256), (4, 1, 5)]
    tensors = {}
    for c, (B, Fn, D) in enumerate(shapes):
        od = D + Fn * (Fn - 1) // 2
        tensors["inter%d.Z" % c] = rng.normal(0, 1, (B, Fn, D)).astype(np.float32)
        tensors["inter%d.dout" % c] = rng.normal(0, 1, (B, od)).astype(np.float32)
    out = run(exe, tensors, tmp, "interaction")
    for c, (B, Fn, D) in enumerate(shapes):
        Z = torch.tensor(tensors["inter%d.Z" % c].astype(np.float64), requires_grad=True)
        x = Z[:, 0, :]
        ly = [Z[:, i, :] for i in range(1, Fn)]
        R = dlrm_interact(x, ly)
        R.backward(torch.tensor(tensors["inter%d.dout" % c].astype(np.float64)))
        check("interaction B=%d F=%d D=%d forward" % (B, Fn, D), out["inter%d.out" % c],
              R.detach().numpy(), F32_TOL)
        check("interaction B=%d F=%d D=%d backward dZ" % (B, Fn, D), out["inter%d.dZ" % c],
              Z.grad.numpy(), F32_TOL)
        if c == 0:
            with torch.no_grad():
                wrong = dlrm_interact(x, ly, itself=True)[:, :R.shape[1]]
            must_differ("interaction with self pairs", out["inter0.out"], wrong.numpy(), F32_TOL)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    rng = np.random.default_rng(365)
    with tempfile.TemporaryDirectory(prefix="dv365_train_ref_") as tmp:
        check_optim(sys.argv[1], tmp, rng)
        check_loss_metrics(sys.argv[2], tmp, rng)
        check_interaction(sys.argv[3], tmp, rng)
    width = max(len(r[0]) for r in ROWS)
    print("%-*s  %10s  %8s" % (width, "check", "error", "tol"))
    for name, err, tol, ok in ROWS:
        print("%-*s  %10.2e  %8.0e  %s" % (width, name, err, tol, "ok" if ok else "FAIL"))
    failed = [r for r in ROWS if not r[3]]
    print("%d checks, %d failed" % (len(ROWS), len(failed)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
