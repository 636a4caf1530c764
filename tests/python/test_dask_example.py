"""examples/python/dask_embed.py on a small local Dask cluster (2 worker
processes): the store it publishes holds, for every user of every
partition, bitwise the blob dv365_generate makes from the same file."""
import glob
import json
import os
import subprocess
import sys

import pytest

import dv365
from conftest import SMALL, SOURCE_ROOT

pytest.importorskip("distributed", reason="Debian's python3-distributed is needed for the Dask example")

SCRIPT = os.path.join(SOURCE_ROOT, "examples", "python", "dask_embed.py")
CUTOFF = 1767225600


def run(tmp_path, *extra):
    args = [sys.executable, SCRIPT, "--input", str(tmp_path / "in"), "--work", str(tmp_path / "work"),
            "--store", str(tmp_path / "store"), "--cutoff", str(CUTOFF), "--workers", "2", *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, json.loads(r.stdout.strip().splitlines()[-1])


def test_dask_job_matches_dv365_generate(tmp_path):
    out, res = run(tmp_path, "--config", SMALL, "--demo", "3", "20", "--batch", "8")
    assert res == {"users": 60, "partitions": 3, "generation": 1, "count": 60,
                   "fingerprint": res["fingerprint"]}
    model = dv365.Model.load(str(tmp_path / "work" / "model"))
    assert res["fingerprint"] == model.fingerprint
    parts = sorted(glob.glob(str(tmp_path / "in" / "*.dvt")))
    assert len(parts) == 3
    with dv365.Store(str(tmp_path / "store"), readonly=True) as job:
        for i, part in enumerate(parts):
            with dv365.Store(str(tmp_path / ("ref%d" % i)), nosync=True) as ref:
                dv365.generate(model, part, CUTOFF, ref)
                with dv365.TimelineReader(part, model) as r:
                    users = [uid for uid, _ in r]
                assert len(users) == 20 and ref.info()["count"] == 20
                for uid in users:
                    assert job.get(uid) == ref.get(uid)

    # run again: every partition is already done, a new generation is published
    out2, res2 = run(tmp_path, "--model", str(tmp_path / "work" / "model"))
    assert out2.count("(already done)") == 3
    assert res2["generation"] == 2 and res2["count"] == 60
