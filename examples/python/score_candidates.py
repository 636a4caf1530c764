#!/usr/bin/python3
"""score_candidates.py — the serving side: a ranking service reads a user's
blob (from the store, here from a file), decodes it, passes the tokens
through a linear adapter and scores candidate items with the result.

    python3 examples/python/score_candidates.py user.blob [--model MODEL_DIR]
        [--adapter adapter.safetensors] [--candidates 1000] [--top 5]

--model checks that the blob was made by that model (a stale blob from an
older model is refused).  Without --adapter a seeded one is created (and
saved with --save-adapter); a real service loads the one trained with its
ranking model.  The last output line is JSON (top candidates and scores).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))  # run from a checkout as well
import dv365  # noqa: E402


def candidate_embeddings(n, width, seed=0):
    """The ranking model's own item embeddings (random stand-ins here)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, width)).astype(np.float32) / np.sqrt(width)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blob")
    ap.add_argument("--model", help="model directory: check the blob's fingerprint against it")
    ap.add_argument("--adapter", help="a saved linear adapter (safetensors)")
    ap.add_argument("--adapter-name", default="ranking")
    ap.add_argument("--width", type=int, default=64, help="adapter output width P")
    ap.add_argument("--save-adapter")
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()

    blob = open(a.blob, "rb").read()
    if a.model:
        with dv365.Model.load(a.model) as model:
            U, meta = dv365.blob_decode(blob, model)      # E_MISMATCH if another model made it
    else:
        U, meta = dv365.blob_decode(blob)                 # still validated (checksum, sizes)
    k, d = U.shape

    if a.adapter:
        adapter = dv365.Adapter.load(a.adapter, a.adapter_name)
    else:
        adapter = dv365.Adapter.create("linear", a.adapter_name, k, d, a.width, seed=1)
    if a.save_adapter:
        adapter.save(a.save_adapter)
    user = adapter.forward(U)                             # [P]: vec(U) projected

    items = candidate_embeddings(a.candidates, adapter.output_size)
    scores = items @ user                                 # one dot product per candidate
    top = np.argsort(-scores, kind="stable")[: a.top]

    print("blob: %d x %d, made %d by model %016x" % (k, d, meta["created"], meta["fingerprint"]))
    print("adapter %s: %s, %d x %d -> %d" % (adapter.name, adapter.kind, adapter.k, adapter.dim,
                                             adapter.output_size))
    print("top %d of %d candidates:" % (len(top), a.candidates))
    for rank, i in enumerate(top, 1):
        print("  %d. item %d  score %+.4f" % (rank, i, scores[i]))
    print(json.dumps({"top": [int(i) for i in top], "scores": [float(scores[i]) for i in top]}))


if __name__ == "__main__":
    try:
        main()
    except dv365.Error as e:
        sys.exit("score_candidates: %s" % e)
