#!/usr/bin/python3
"""embed_user.py — one user's events (numpy arrays) in, the DV365 embedding
(K x D float32) and its 4-bit key-value-store blob out.

    PYTHONPATH=python python3 examples/python/embed_user.py                 # configs/default.yaml
    python3 examples/python/embed_user.py --config configs/small.yaml --out user.blob
    python3 examples/python/embed_user.py --model MODEL_DIR --out user.blob

Without --model, a fresh seeded model is built from the config (as
`dv365 init` would); --save-model keeps it so that readers of the blob can
check which model made it (see score_candidates.py).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))  # run from a checkout as well
import dv365  # noqa: E402


def synthetic_history(n, now, seed=0):
    """A year of one user's events, as a logging pipeline would hand them
    over: columns of equal length (vocabulary fields as names here)."""
    rng = np.random.default_rng(seed)
    favourite_topics = rng.choice(100, 5, replace=False)
    topic = np.where(rng.random(n) < 0.7, rng.choice(favourite_topics, n), rng.integers(0, 100, n))
    media = topic * 1000 + rng.integers(0, 300, n)          # items cluster by topic
    duration = rng.uniform(5_000, 90_000, n)
    dwell = duration * rng.beta(2, 2, n) * (1 + (topic == favourite_topics[0]))
    action = rng.choice(["view", "like", "comment", "share", "save", "hide"], n,
                        p=[0.80, 0.10, 0.03, 0.03, 0.02, 0.02])
    return dict(time=now - rng.integers(60, 365 * 86400, n), media_id=media,
                author_id=media // 40, topic_id=topic, action=action,
                media_type=rng.choice(["video", "photo", "carousel"], n, p=[0.7, 0.2, 0.1]),
                surface=rng.choice(["feed", "reels", "explore"], n),
                duration_ms=duration, dwell_ms=dwell)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", default=os.path.join(HERE, "..", "..", "configs", "default.yaml"))
    src.add_argument("--model", help="a model directory (config.yaml + weights.safetensors)")
    ap.add_argument("--seed", type=int, default=42, help="seed of a fresh model")
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--now", type=int, default=1767225600, help="cutoff, unix seconds")
    ap.add_argument("--out", help="write the blob here")
    ap.add_argument("--save-model", help="save the model to this directory")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    model = dv365.Model.load(a.model) if a.model else dv365.Model.init(a.config, seed=a.seed)
    if a.save_model:
        model.save(a.save_model)

    timeline = dv365.Timeline(**synthetic_history(a.events, a.now))
    X, counts = model.pool(timeline, a.now)                   # optional: look at the slices
    U = model.embed(timeline, a.now, nthreads=a.threads)      # [K, D], history before `now`
    blob = dv365.blob_encode(model, U, created=a.now)         # what goes into the store
    V, meta = dv365.blob_decode(blob, model)                  # what a reader gets back

    busiest = np.argsort(counts)[::-1][:3]
    print("libdv365 %s: %d events -> %d slices (%d empty) -> U %s" % (
        dv365.version(), len(timeline), model.num_slices, int((counts == 0).sum()), list(U.shape)))
    print("busiest slices: " + ", ".join("%s (%d)" % (model.slice_names[i], counts[i]) for i in busiest))
    print("blob: %d bytes, fingerprint %016x, 4-bit error max %.4f, rms %.4f" % (
        len(blob), meta["fingerprint"], np.abs(V - U).max(), np.sqrt(np.mean((V - U) ** 2))))
    if a.out:
        with open(a.out, "wb") as f:
            f.write(blob)
        print("wrote", a.out)


if __name__ == "__main__":
    try:
        main()
    except dv365.Error as e:
        sys.exit("embed_user: %s" % e)
