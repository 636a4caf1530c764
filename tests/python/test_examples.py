"""examples/python/*.py run as a user would run them, and their outputs
checked against the binding."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

import dv365
from conftest import SMALL, SOURCE_ROOT

EXAMPLES = os.path.join(SOURCE_ROOT, "examples", "python")


def run(script, *args, ok=True):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args],
                       capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_embed_user_then_score_candidates(tmp_path):
    blob_path, model_dir, ad_path = (str(tmp_path / n) for n in ("u.blob", "model", "ad.safetensors"))
    out = run("embed_user.py", "--config", SMALL, "--events", "3000", "--out", blob_path,
              "--save-model", model_dir).stdout
    assert "3000 events -> 24 slices" in out and "U [16, 32]" in out

    # the blob is the embedding of the example's history by the saved model
    model = dv365.Model.load(model_dir)
    hist = load_example("embed_user").synthetic_history(3000, 1767225600)
    U = model.embed(dv365.Timeline(**hist), 1767225600)
    blob = open(blob_path, "rb").read()
    assert blob == dv365.blob_encode(model, U, created=1767225600)

    out = run("score_candidates.py", blob_path, "--model", model_dir, "--save-adapter", ad_path,
              "--candidates", "500", "--top", "4").stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert "adapter ranking: linear, 16 x 32 -> 64" in out
    # the same ranking through the binding
    V, _ = dv365.blob_decode(blob, model)
    user = dv365.Adapter.load(ad_path, "ranking").forward(V)
    items = load_example("score_candidates").candidate_embeddings(500, 64)
    scores = items @ user
    assert res["top"] == [int(i) for i in np.argsort(-scores, kind="stable")[:4]]
    assert np.allclose(res["scores"], scores[res["top"]], rtol=0, atol=1e-6)
    assert res["scores"] == sorted(res["scores"], reverse=True)

    # a blob made by another model is refused when the reader names its model
    other = str(tmp_path / "other")
    dv365.Model.init(SMALL, seed=999).save(other)
    r = run("score_candidates.py", blob_path, "--model", other, ok=False)
    assert r.returncode != 0 and "E_MISMATCH" in r.stderr
