"""Shared fixtures of the binding's tests (run by `meson test python`, which
sets DV365_LIBRARY, PYTHONPATH, DV365_C_EMBED and DV365_SOURCE_ROOT)."""
import os
import sys

import numpy as np
import pytest

SOURCE_ROOT = os.environ.get("DV365_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
if os.path.join(SOURCE_ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(SOURCE_ROOT, "python"))

import dv365  # noqa: E402

SMALL = os.path.join(SOURCE_ROOT, "configs", "small.yaml")
DEFAULT = os.path.join(SOURCE_ROOT, "configs", "default.yaml")
CUTOFF = 1767225600  # 2026-01-01T00:00:00Z


def lcg_timeline(config, u):
    """The timeline of user u in tests/python/c_embed.c, built the same way."""
    n = 50 + 40 * u
    na, nm, ns = (len(config.vocab(v)) for v in ("action", "media_type", "surface"))
    s = u + 1
    mask = (1 << 64) - 1
    cols = {k: [] for k in dv365.FIELDS}

    def nxt():
        nonlocal s
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        return s >> 33

    for _ in range(n):
        cols["time"].append(CUTOFF - nxt() % (120 * 86400) + 3600)
        cols["media_id"].append(nxt() % 5000)
        cols["author_id"].append(nxt() % 700)
        cols["topic_id"].append(nxt() % 90)
        cols["action"].append(nxt() % na)
        cols["media_type"].append(nxt() % nm)
        cols["surface"].append(nxt() % ns)
        cols["duration_ms"].append(1000 + nxt() % 60000)
        cols["dwell_ms"].append(nxt() % 90000)
    return dv365.Timeline(**{k: np.array(v) for k, v in cols.items()})


def simple_timeline(n=20, seed=0, now=CUTOFF, names=False):
    """A small random timeline (names=True: vocabulary columns as strings)."""
    r = np.random.default_rng(seed)
    actions = np.array(["view", "like", "comment", "share", "hide"])
    a = r.integers(0, len(actions), n)
    return dv365.Timeline(
        time=now - r.integers(1, 60 * 86400, n), media_id=r.integers(0, 3000, n),
        author_id=r.integers(0, 400, n), topic_id=r.integers(0, 50, n),
        action=actions[a] if names else np.array([0, 1, 2, 3, 7])[a],
        media_type=r.integers(0, 3, n), surface=r.integers(0, 5, n),
        duration_ms=r.uniform(1000, 60000, n), dwell_ms=r.uniform(0, 90000, n))


@pytest.fixture(scope="session")
def model():
    m = dv365.Model.init(SMALL, seed=7)
    yield m
    m.close()


def expect_error(status, fragment, fn, *args, **kwargs):
    """Call fn, expecting dv365.Error with status and fragment in its message."""
    with pytest.raises(dv365.Error) as ei:
        fn(*args, **kwargs)
    assert ei.value.status == status, str(ei.value)
    assert fragment in ei.value.message, str(ei.value)
    return ei.value
