"""Data files and the trainer through the binding."""
import os

import numpy as np
import pytest

import dv365
from conftest import CUTOFF, SMALL, expect_error, simple_timeline

S = dv365.Status
USERS = 12
PER_USER = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small world: timelines file + examples file whose like label is
    dense[0] > 0 (learnable) and whose watch_time is a function of it."""
    d = tmp_path_factory.mktemp("data")
    cfg = dv365.Config.load(SMALL)
    tl_path, ex_path = str(d / "t.dvt"), str(d / "e.dve")
    tls = {}
    with dv365.TimelineWriter(tl_path, cfg) as w:
        for u in range(USERS):
            tls[100 + u] = simple_timeline(40 + 5 * u, seed=u, now=CUTOFF - 86400)
            w.add(100 + u, tls[100 + u])
        assert len(w) == USERS
    rng = np.random.default_rng(0)
    rows = []
    with dv365.ExampleWriter(ex_path, 8, 6) as w:
        for u in range(USERS):
            for j in range(PER_USER):
                dense = rng.standard_normal(8).astype(np.float32)
                like = float(dense[0] > 0)
                labels = np.array([like, 0, 0, like, 1 - like, 2.0 + like], np.float32)
                row = (100 + u, CUTOFF + 3600 * j, int(rng.integers(0, 3000)), int(rng.integers(0, 400)),
                       int(rng.integers(0, 50)), dense, labels)
                w.add(*row)
                rows.append(row)
    return {"cfg": cfg, "tl": tl_path, "ex": ex_path, "tls": tls, "rows": rows}


def test_timeline_file_round_trip(data):
    m = dv365.Model.init(SMALL, seed=2)
    with dv365.TimelineReader(data["tl"], m) as r:
        assert len(r) == USERS
        assert r.num_events == sum(len(t) for t in data["tls"].values())
        seen = []
        for uid, tl in r:
            seen.append(uid)
            assert len(tl) == len(data["tls"][uid])
            assert np.array_equal(m.embed(tl, CUTOFF), m.embed(data["tls"][uid], CUTOFF))
            with pytest.raises(dv365.Error):
                tl.time  # file timelines keep their events in C
        assert seen == sorted(data["tls"])
        assert r.next() is None
        r.seek(105)
        assert r.next()[0] == 105
        r.rewind()
        assert r.next()[0] == 100
        expect_error(S.E_NOT_FOUND, "", r.seek, 99)


def test_timeline_file_errors(data, tmp_path):
    cfg = data["cfg"]
    expect_error(S.E_IO, "", dv365.TimelineReader, str(tmp_path / "none.dvt"), cfg)
    p = str(tmp_path / "x.dvt")
    with pytest.raises(RuntimeError):
        with dv365.TimelineWriter(p, cfg) as w:
            w.add(1, simple_timeline(3))
            raise RuntimeError("abandon")
    assert not os.path.exists(p)  # an abandoned writer leaves nothing
    with dv365.TimelineWriter(p, cfg) as w:
        w.add(1, simple_timeline(3))
        expect_error(S.E_INVALID, "", w.add, 1, simple_timeline(3))  # a user id twice
    open(p, "r+b").write(b"garbage!")
    with pytest.raises(dv365.Error) as ei:
        dv365.TimelineReader(p, cfg)
    assert ei.value.status in (S.E_FORMAT, S.E_CHECKSUM)


def test_example_file_round_trip(data, tmp_path):
    with dv365.ExampleReader(data["ex"]) as r:
        assert (len(r), r.n_dense, r.n_tasks) == (USERS * PER_USER, 8, 6)
        first = r.next()
        row = data["rows"][0]
        assert (first["user_id"], first["label_time"], first["media_id"]) == row[:3]
        assert np.array_equal(first["dense"], row[5]) and np.array_equal(first["labels"], row[6])
        r.seek(10)
        cols = r.read(5)
        assert cols["item_ids"].shape == (5, 3) and cols["dense"].shape == (5, 8)
        assert cols["user_id"][0] == data["rows"][10][0]
        assert len(list(r)) == USERS * PER_USER - 15
    with dv365.ExampleWriter(str(tmp_path / "e.dve"), 2, 1) as w:
        expect_error(S.E_NONFINITE, "", w.add, 1, 5, 1, 2, 3, [0, np.nan], [1])
        expect_error(S.E_TIMESTAMP, "", w.add, 1, -5, 1, 2, 3, [0, 0], [1])
        expect_error(S.E_MISMATCH, "labels has shape", w.add, 1, 5, 1, 2, 3, [0, 0], [1, 2])


def batch_of(data, idx):
    rows = [data["rows"][i] for i in idx]
    return ([data["tls"][r[0]] for r in rows], [r[1] for r in rows], [[r[2], r[3], r[4]] for r in rows],
            np.array([r[5] for r in rows]), np.array([r[6] for r in rows]))


def test_trainer_steps_and_eval(data):
    m = dv365.Model.init(SMALL, seed=3)
    t = dv365.Trainer(m)
    assert t.tasks[0] == "like" and t.steps == 0
    tl, lt, ids, dense, labels = batch_of(data, range(16))
    t.eval_reset()
    logits = t.eval_batch(tl, lt, ids, dense, labels)
    assert logits.shape == (16, 6) and logits.dtype == np.float32
    before, n = t.eval_loss()
    assert n == 16 and np.isfinite(before)
    fp = m.fingerprint
    losses = [t.step(tl, lt, ids, dense, labels) for _ in range(15)]
    assert t.steps == 15 and all(np.isfinite(losses))
    assert np.isfinite(t.task_loss("like")) and t.task_loss(0) == t.task_loss("like")
    t.eval_reset()
    t.eval_batch(tl, lt, ids, dense, labels)
    after, _ = t.eval_loss()
    assert after < before
    res = t.eval_results()
    assert set(res) == set(t.tasks) and res["like"]["auc"] > 0.5 and np.isnan(res["like"]["mse"])
    assert np.isnan(res["watch_time"]["ne"]) and res["watch_time"]["mse"] >= 0
    m.save(str(data["tl"]) + ".model")
    assert m.fingerprint != fp
    expect_error(S.E_STATE, "close the Trainer", m.close)
    t.close()
    m.close()


def test_trainer_errors(data):
    m = dv365.Model.init(SMALL, seed=3)
    t = dv365.Trainer(m)
    tl, lt, ids, dense, labels = batch_of(data, range(4))
    expect_error(S.E_MISMATCH, "labels has shape", t.step, tl, lt, ids, dense, labels[:, :5])
    expect_error(S.E_MISMATCH, "item_ids has shape", t.step, tl, lt, [i[:2] for i in ids], dense, labels)
    expect_error(S.E_MISMATCH, "dense is None", t.step, tl, lt, ids, None, labels)
    expect_error(S.E_MISMATCH, "label_times has shape", t.step, tl, lt[:3], ids, dense, labels)
    bad = labels.copy()
    bad[2, 1] = np.nan
    with pytest.raises(dv365.Error) as ei:
        t.step(tl, lt, ids, dense, bad)
    assert ei.value.status == S.E_NONFINITE
    expect_error(S.E_NOT_FOUND, "no task", t.task_loss, "clicks")
    expect_error(S.E_INVALID, "task 6", t.eval_result, 6)
    assert t.steps == 0  # nothing was applied
    assert np.isfinite(t.step(tl, lt, ids, dense, labels))  # still usable
    with pytest.raises(dv365.DTypeError):
        dv365.Trainer("model")


def test_train_files_progress_resume(data, tmp_path):
    def run(steps, trainer, log):
        trainer.train_files(data["tl"], data["ex"], steps, progress=lambda s, n, loss: log.append(loss))

    full = []
    m = dv365.Model.init(SMALL, seed=4)
    t = dv365.Trainer(m)
    t.eval_files(data["tl"], data["ex"])
    before = t.eval_loss()[0]
    run(4, t, full)
    assert len(full) == 4 and t.steps == 4
    ck_full = str(tmp_path / "full")
    t.save(ck_full)
    fp_full = dv365.Model.load(ck_full).fingerprint
    t.eval_files(data["tl"], data["ex"])
    after, n = t.eval_loss()
    assert n == USERS * PER_USER and after < before

    part = []
    m2 = dv365.Model.init(SMALL, seed=4)
    t2 = dv365.Trainer(m2)
    run(2, t2, part)
    ck = str(tmp_path / "ck")
    t2.save(ck)
    entries = sorted(os.listdir(ck))
    assert len(entries) == 2 and entries[0] == "LATEST" and entries[1].startswith("step-")
    t2.close()
    t3 = dv365.Trainer.resume(ck)
    assert t3.steps == 2 and isinstance(t3.model, dv365.Model)
    run(2, t3, part)
    assert part == full  # bitwise the same losses
    t3.save(str(tmp_path / "ck3"))
    assert dv365.Model.load(str(tmp_path / "ck3")).fingerprint == fp_full

    # a truthy progress stops the run; an exception in it is re-raised
    expect_error(S.E_STATE, "stop", t3.train_files, data["tl"], data["ex"], 5,
                 progress=lambda s, n, loss: s >= 1)

    def boom(s, n, loss):
        raise KeyError("from progress")
    with pytest.raises(KeyError):
        t3.train_files(data["tl"], data["ex"], 5, progress=boom)
    expect_error(S.E_IO, "", t3.train_files, data["tl"], str(tmp_path / "none.dve"), 1)
    expect_error(S.E_IO, "", dv365.Trainer.resume, str(tmp_path / "nothing"))
