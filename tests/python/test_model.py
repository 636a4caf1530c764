"""Timeline, Model (init/load/save, pool, encode, embed) and Encoder."""
import os
import threading

import numpy as np
import pytest

import dv365
from conftest import CUTOFF, SMALL, expect_error, lcg_timeline, simple_timeline

S = dv365.Status


# ---------------------------------------------------------------- Timeline --

def test_timeline_columns_and_conversion():
    tl = simple_timeline(10)
    assert len(tl) == 10
    assert tl.time.dtype == np.int64 and tl.media_id.dtype == np.uint64
    assert tl.action.dtype == np.int32 and tl.dwell_ms.dtype == np.float32
    with pytest.raises(ValueError):
        tl.time[0] = 0  # read-only
    # scalars broadcast; datetime64 times are unix seconds
    t = np.array(["2025-12-01T00:00:00", "2025-12-02T00:00:00"], dtype="datetime64[s]")
    tl2 = dv365.Timeline(time=t, media_id=[1, 2], author_id=3, topic_id=4, action="like",
                         media_type="video", surface=1, duration_ms=1000, dwell_ms=[5, 6.5])
    assert list(tl2.time) == [1764547200, 1764633600]
    assert list(tl2.author_id) == [3, 3] and list(tl2.action) == ["like", "like"]
    assert list(tl2.dwell_ms) == [5.0, 6.5]
    assert tl2.column("surface").tolist() == [1, 1]
    expect_error(S.E_INVALID, "unknown column", tl2.column, "colour")


def test_timeline_argument_errors():
    base = dict(time=[1, 2], media_id=[1, 2], author_id=[1, 2], topic_id=[1, 2], action=[0, 1],
                media_type=[0, 0], surface=[0, 0], duration_ms=[1, 1], dwell_ms=[1, 1])
    bad = [({"media_id": [1, 2, 3]}, dv365.ArgumentError, "media_id has shape [3]"),
           ({"media_id": [-1, 2]}, dv365.ArgumentError, "media_id holds -1"),
           ({"time": [[1, 2]]}, dv365.ArgumentError, "time must be 1-D"),
           ({"action": [2**40, 0]}, dv365.ArgumentError, "outside the range of int32"),
           ({"media_id": [1.5, 2]}, dv365.DTypeError, "media_id must hold integers"),
           ({"dwell_ms": ["a", "b"]}, dv365.DTypeError, "dwell_ms must hold numbers")]
    for change, exc, msg in bad:
        with pytest.raises(exc) as ei:
            dv365.Timeline(**dict(base, **change))
        assert msg in ei.value.message, ei.value.message


def test_timeline_library_errors_surface_at_first_use(model):
    n = 3
    cols = dict(time=[CUTOFF - 10] * n, media_id=[1] * n, author_id=[1] * n, topic_id=[1] * n,
                action=[0] * n, media_type=[0] * n, surface=[0] * n, duration_ms=[1.0] * n, dwell_ms=[1.0] * n)
    cases = [({"action": [0, 99, 0]}, S.E_INVALID, "event 1"),
             ({"action": ["view", "tap", "view"]}, S.E_NOT_FOUND, "tap"),
             ({"dwell_ms": [1.0, 1.0, np.nan]}, S.E_NONFINITE, "dwell_ms"),
             ({"time": [CUTOFF, -5, CUTOFF]}, S.E_TIMESTAMP, "event 1")]
    for change, status, frag in cases:
        tl = dv365.Timeline(**dict(cols, **change))
        expect_error(status, frag, model.embed, tl, CUTOFF)
        expect_error(status, frag, model.pool, tl, CUTOFF)  # still refused, nothing cached


def test_names_and_codes_give_the_same_embedding(model):
    a = simple_timeline(30, seed=3, names=True)
    b = simple_timeline(30, seed=3, names=False)
    assert a.action.dtype.kind == "U"
    assert np.array_equal(model.embed(a, CUTOFF), model.embed(b, CUTOFF))


def test_empty_timeline_pools_to_zero(model):
    tl = dv365.Timeline(time=[], media_id=[], author_id=[], topic_id=[], action=[], media_type=[],
                        surface=[], duration_ms=[], dwell_ms=[])
    X, counts = model.pool(tl, CUTOFF)
    assert len(tl) == 0 and not X.any() and not counts.any()
    assert model.embed(tl, CUTOFF).shape == (model.num_tokens, model.dim)


# ------------------------------------------------------------------- Model --

def test_model_properties(model):
    assert (model.num_slices, model.dim, model.num_tokens) == (24, 32, 16)
    assert model.slice_names == model.config.slice_names and len(model.slice_names) == 24
    assert isinstance(model.fingerprint, int) and 0 < model.fingerprint < 2**64
    assert model.table("exp_pos_media").shape == (4096, 32)
    assert np.array_equal(model.table(0), model.table("exp_pos_media"))
    expect_error(S.E_NOT_FOUND, "no table", model.table, "nope")
    expect_error(S.E_INVALID, "", model.table, 99)


def test_seeds_and_init_errors():
    a, b, c = dv365.Model.init(SMALL, 1), dv365.Model.init(SMALL, 1), dv365.Model.init(SMALL, 2)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    expect_error(S.E_IO, "nope.yaml", dv365.Model.init, "/nonexistent/nope.yaml")


def test_pool_then_encode_is_embed(model):
    tl = lcg_timeline(model.config, 1)
    X, counts = model.pool(tl, CUTOFF)
    assert X.shape == (24, 32) and X.dtype == np.float32
    assert counts.shape == (24,) and counts.dtype == np.uint32 and counts.sum() > 0
    U = model.encode(X)
    assert U.shape == (16, 32) and U.dtype == np.float32
    assert np.array_equal(U, model.embed(tl, CUTOFF))
    # the cutoff is strict: an earlier cutoff sees fewer events
    _, c2 = model.pool(tl, CUTOFF - 30 * 86400)
    assert c2.sum() < counts.sum()
    expect_error(S.E_TIMESTAMP, "cutoff", model.pool, tl, -1)
    with pytest.raises(dv365.DTypeError):
        model.pool("not a timeline", CUTOFF)


def test_encode_batches_threads_and_layouts(model):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 24, 32)).astype(np.float32)
    U = model.encode(X)
    assert U.shape == (5, 16, 32)
    for b in range(5):  # a user's tokens do not depend on the batch
        assert np.array_equal(U[b], model.encode(X[b]))
    assert np.array_equal(U, model.encode(X, nthreads=2))
    # non-contiguous input is copied; float16 converts without loss
    Xf = np.asfortranarray(X[1])
    assert np.array_equal(model.encode(Xf), U[1])
    assert model.encode(X[0].astype(np.float16)).shape == (16, 32)
    # lists are converted
    assert np.array_equal(model.encode(X[2].tolist()), U[2])


def test_encode_errors(model):
    X = np.zeros((2, 24, 32), np.float32)
    expect_error(S.E_MISMATCH, "expected [24, 32] or [*, 24, 32]", model.encode, X[:, :23])
    expect_error(S.E_MISMATCH, "X has shape [32, 24]", model.encode, X[0].T.copy())
    e = expect_error(S.E_INVALID, "float32", model.encode, X.astype(np.float64))
    assert isinstance(e, TypeError)
    X[1, 3, 5] = np.inf
    expect_error(S.E_NONFINITE, "user 1, token 3, column 5", model.encode, X)
    expect_error(S.E_INVALID, "nthreads", model.encode, X[0], nthreads=0)
    expect_error(S.E_INVALID, "batch", model.encode, np.zeros((0, 24, 32), np.float32))


def test_embed_batches(model):
    tls = [lcg_timeline(model.config, u) for u in range(3)]
    U = model.embed(tls, CUTOFF)
    assert U.shape == (3, 16, 32)
    for u in range(3):
        assert np.array_equal(U[u], model.embed(tls[u], CUTOFF))
    cut = [CUTOFF, CUTOFF - 86400, CUTOFF - 7 * 86400]
    V = model.embed(tls, np.array(cut), nthreads=2)
    assert np.array_equal(V[0], U[0]) and not np.array_equal(V[2], U[2])
    assert np.array_equal(V[2], model.embed(tls[2], cut[2]))
    expect_error(S.E_MISMATCH, "cutoffs has shape [2]", model.embed, tls, cut[:2])
    expect_error(S.E_INVALID, "timelines[1]", model.embed, [tls[0], "x"], CUTOFF)
    expect_error(S.E_INVALID, "batch", model.embed, [], CUTOFF)
    expect_error(S.E_TIMESTAMP, "cutoffs[1]", model.embed, tls, [CUTOFF, -1, CUTOFF])


def test_embed_with_a_timeline_of_another_config(model, tmp_path):
    other = dv365.Model.init(os.path.join(os.path.dirname(SMALL), "default.yaml"), 1)
    tl = simple_timeline(10)
    other.embed(tl, CUTOFF)  # builds a C timeline for the other config
    # a file timeline keeps its config: embedding it elsewhere is refused by C
    path = str(tmp_path / "t.dvt")
    with dv365.TimelineWriter(path, other) as w:
        w.add(1, tl)
    with dv365.TimelineReader(path, other) as r:
        uid, ftl = r.next()
        expect_error(S.E_MISMATCH, "another config", model.embed, ftl, CUTOFF)
        assert np.array_equal(other.embed(ftl, CUTOFF), other.embed(tl, CUTOFF))


def test_save_load_round_trip(model, tmp_path):
    d = str(tmp_path / "m")
    model.save(d)
    assert sorted(os.listdir(d)) == ["config.yaml", "weights.safetensors"]
    with dv365.Model.load(d) as m2:
        assert m2.fingerprint == model.fingerprint
        tl = lcg_timeline(model.config, 0)
        assert np.array_equal(m2.embed(tl, CUTOFF), model.embed(tl, CUTOFF))
    expect_error(S.E_STATE, "closed", lambda: m2.dim)
    expect_error(S.E_IO, "", dv365.Model.load, str(tmp_path / "missing"))
    open(os.path.join(d, "weights.safetensors"), "wb").write(b"\x08\0\0\0\0\0\0\0{}")
    with pytest.raises(dv365.Error) as ei:
        dv365.Model.load(d)
    assert ei.value.status in (S.E_FORMAT, S.E_NOT_FOUND)


def test_closed_model_and_its_config(tmp_path):
    m = dv365.Model.init(SMALL, 3)
    cfg = m.config
    tl = simple_timeline(5)
    m.embed(tl, CUTOFF)
    m.close()
    expect_error(S.E_STATE, "closed", m.embed, tl, CUTOFF)
    expect_error(S.E_STATE, "closed", lambda: cfg.dim)
    assert cfg.closed
    # the timeline drops its C copy for the closed config and still works elsewhere
    with dv365.Model.init(SMALL, 3) as m2:
        assert m2.embed(tl, CUTOFF).shape == (16, 32)


def test_threads_share_a_model(model):
    tls = [lcg_timeline(model.config, u % 3) for u in range(6)]
    want = [model.embed(t, CUTOFF) for t in tls]
    got = [None] * 6

    def work(i):
        for _ in range(3):
            got[i] = model.embed(tls[i], CUTOFF)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(want, got))


# ----------------------------------------------------------------- Encoder --

def test_standalone_encoder(model, tmp_path):
    cfg = dv365.Config.load(SMALL)
    enc = dv365.Encoder.create(cfg, seed=8)  # the model's encoder has seed + 1
    assert enc.num_tokens == 16 and enc.num_params > 0
    X = np.random.default_rng(1).standard_normal((24, 32)).astype(np.float32)
    assert np.array_equal(enc.encode(X), model.encode(X))
    p = str(tmp_path / "enc.safetensors")
    enc.save(p)
    with dv365.Encoder.load(SMALL, p) as e2:
        assert np.array_equal(e2.encode(X[None])[0], enc.encode(X))
    expect_error(S.E_IO, "", dv365.Encoder.load, cfg, str(tmp_path / "none.safetensors"))
    expect_error(S.E_MISMATCH, "X has shape", enc.encode, X[:3])
