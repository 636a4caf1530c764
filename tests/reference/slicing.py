"""slicing.py — the slice rules of a config evaluated the usual PyTorch way,
shared by the PyTorch references (trajectory_ref.py) and the pooling peer of
bench/pool_bench.c (bench/pool_peer.py): the id hash (docs/hash.md), the
derived per-event values (docs/timeline.md) and one boolean mask per slice
definition and per time window."""
import numpy as np
import torch


def mix64(x):
    """SplitMix64 finalizer on a uint64 numpy array (docs/hash.md)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def in_range(v, r):
    """v in [r[0], r[1]) with None for an open end."""
    m = torch.ones_like(v, dtype=torch.bool)
    if r[0] is not None:
        m &= v >= r[0]
    if r[1] is not None:
        m &= v < r[1]
    return m


def derived(gamma, dur, dwell):
    """dwell_s, ln(1 + dwell_s), the watch ratio and the duration-debiased
    watch score of float64 duration / dwell (ms) columns."""
    dwell_s = dwell / 1000.0
    log_dwell = torch.log1p(dwell_s)
    has_dur = dur > 0
    ratio = torch.where(has_dur, dwell / torch.where(has_dur, dur, torch.ones_like(dur)),
                        torch.zeros_like(dur))
    den = torch.log1p(gamma * dur / 1000.0)
    score = torch.where(den > 0, log_dwell / torch.where(den > 0, den, torch.ones_like(den)),
                        torch.zeros_like(den))
    return dwell_s, log_dwell, ratio, score


def rule_masks(spec, cutoff, t, is_expl, cols, dwell, ratio, score):
    """One mask per slice definition of spec (events before cutoff) and one
    per window; cols maps "actions", "media_types", "surfaces" to code columns."""
    def_masks = []
    for d in spec["defs"]:
        m = t < cutoff
        if d["kind"] == 1:
            m = m & is_expl
        elif d["kind"] == 2:
            m = m & ~is_expl
        for key, col in cols.items():
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
    return def_masks, win_masks
