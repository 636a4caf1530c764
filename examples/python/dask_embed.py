#!/usr/bin/python3
"""dask_embed.py — the batch job: embed every user of a directory of
timeline files with Dask and publish the blobs as one new store generation.

    # a local cluster (2 worker processes), demo input written first:
    python3 examples/python/dask_embed.py --config configs/small.yaml \\
        --demo 4 50 --input in/ --work work/ --store store/ --cutoff 1767225600
    # the same job on a multi-machine cluster (dv365 installed on every
    # worker; in/ and work/ on storage that every machine sees):
    python3 examples/python/dask_embed.py --scheduler tcp://host:8786 --model /shared/model \\
        --input /shared/in --work /shared/work --store /data/store --cutoff 1767225600

Each *.dvt file of --input is one partition and one Dask task: the worker
loads the model once per process, reads the file, embeds its users in
batches (dv365's own threads inside the task: --threads-per-task) and
writes their blobs to work/parts/<name>.npz atomically.  A task whose
output already exists for the same model and cutoff is skipped, so a
failed or interrupted job is simply run again.  The driver then writes all
partitions into a new store generation (one writer per store; readers keep
seeing the previous generation until the commit).

Blobs are bitwise the same as dv365_generate's for the same file, model,
cutoff and creation time (tests/python/test_dask_example.py checks it).
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT_PYTHON = os.path.normpath(os.path.join(HERE, "..", "..", "python"))
if os.path.isdir(os.path.join(CHECKOUT_PYTHON, "dv365")):  # run from a checkout as well
    sys.path.insert(0, CHECKOUT_PYTHON)
    # worker processes of a local cluster inherit the environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT_PYTHON, os.environ.get("PYTHONPATH")]))
import dv365  # noqa: E402

_models = {}  # model directory -> Model, one per worker process (shared by its threads)


def _model(model_dir):
    m = _models.get(model_dir)
    if m is None:
        m = _models[model_dir] = dv365.Model.load(model_dir)
    return m


def embed_partition(path, model_dir, cutoff, created, out_dir, batch=64, nthreads=1):
    """One task: every user of timeline file `path` -> out_dir/<name>.npz
    (user_id [n] uint64, blob [n, bytes] uint8, fingerprint, cutoff)."""
    model = _model(model_dir)
    fp = model.fingerprint
    out = os.path.join(out_dir, os.path.basename(path)[:-len(".dvt")] + ".npz")
    if os.path.exists(out):  # done by an earlier run?
        with np.load(out) as z:
            if int(z["fingerprint"]) == fp and int(z["cutoff"]) == cutoff and int(z["created"]) == created:
                return {"part": path, "out": out, "users": int(z["user_id"].size), "skipped": True}
    ids, blobs, pending = [], [], []

    def flush():  # embed the pending users in one call (large GEMMs)
        U = model.embed([t for _, t in pending], cutoff, nthreads=nthreads)
        for (uid, tl), u in zip(pending, U):
            ids.append(uid)
            blobs.append(np.frombuffer(dv365.blob_encode(model, u, created=created), np.uint8))
            tl.close()
        pending.clear()

    with dv365.TimelineReader(path, model) as reader:  # streams: files may exceed memory
        for item in reader:
            pending.append(item)
            if len(pending) == batch:
                flush()
        if pending:
            flush()
    size = dv365.blob_size(model.num_tokens, model.dim)
    tmp = out + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:  # atomically: temp file, fsync, rename
        np.savez(f, user_id=np.array(ids, np.uint64),
                 blob=np.array(blobs, np.uint8).reshape(len(ids), size),
                 fingerprint=np.uint64(fp), cutoff=np.int64(cutoff), created=np.int64(created))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return {"part": path, "out": out, "users": len(ids), "skipped": False}


def publish(store_dir, model, created, results):
    """Write every partition's blobs into one new generation of the store."""
    with dv365.Store.open(store_dir) as store:
        with store.begin_generation(model, created) as gen:
            for r in results:
                with np.load(r["out"]) as z:
                    for uid, blob in zip(z["user_id"], z["blob"]):
                        gen.put(int(uid), blob)
                gen.checkpoint(json.dumps({"part": os.path.basename(r["part"])}).encode())
        return store.info()


def write_demo_input(input_dir, config, parts, users, cutoff, seed=0):
    """Synthetic timeline files: `parts` files of `users` users each."""
    os.makedirs(input_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    cfg = dv365.Config.load(config) if isinstance(config, str) else config
    for p in range(parts):
        with dv365.TimelineWriter(os.path.join(input_dir, "part-%04d.dvt" % p), cfg) as w:
            for u in range(users):
                n = int(rng.integers(0, 400))
                w.add(1_000_000 * (p + 1) + u, dv365.Timeline(
                    time=cutoff - rng.integers(-3600, 200 * 86400, n), media_id=rng.integers(0, 1 << 40, n),
                    author_id=rng.integers(0, 1 << 20, n), topic_id=rng.integers(0, 500, n),
                    action=rng.integers(0, len(cfg.vocab("action")), n),
                    media_type=rng.integers(0, len(cfg.vocab("media_type")), n),
                    surface=rng.integers(0, len(cfg.vocab("surface")), n),
                    duration_ms=rng.uniform(1e3, 9e4, n), dwell_ms=rng.uniform(0, 9e4, n)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory (seen by every worker)")
    src.add_argument("--config", help="YAML: a fresh seeded model, saved to WORK/model")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--input", required=True, help="directory of *.dvt timeline files")
    ap.add_argument("--work", required=True, help="directory for the model and partition outputs")
    ap.add_argument("--store", required=True, help="store directory (written by this driver)")
    ap.add_argument("--cutoff", type=int, required=True, help="embed history before this unix time")
    ap.add_argument("--created", type=int, default=0, help="blob creation time (default: the cutoff)")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    ap.add_argument("--workers", type=int, default=2, help="local cluster: worker processes")
    ap.add_argument("--threads-per-task", type=int, default=1, help="dv365 threads inside each task")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--demo", nargs=2, type=int, metavar=("PARTS", "USERS"),
                    help="first write PARTS synthetic timeline files of USERS users into --input")
    a = ap.parse_args()
    created = a.created or a.cutoff

    from dask.distributed import Client, LocalCluster, as_completed

    os.makedirs(os.path.join(a.work, "parts"), exist_ok=True)
    if a.config:
        model_dir = os.path.abspath(os.path.join(a.work, "model"))
        dv365.Model.init(a.config, seed=a.seed).save(model_dir)
    else:
        model_dir = os.path.abspath(a.model)
    model = dv365.Model.load(model_dir)
    if a.demo:
        write_demo_input(a.input, model.config, a.demo[0], a.demo[1], a.cutoff)
    parts = sorted(os.path.abspath(p) for p in glob.glob(os.path.join(a.input, "*.dvt")))
    if not parts:
        sys.exit("dask_embed: no *.dvt files in %s" % a.input)

    t0 = time.time()
    cluster = None
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        # one thread per worker process: dv365 brings its own threads
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(embed_partition, parts, model_dir=model_dir, cutoff=a.cutoff,
                             created=created, out_dir=os.path.abspath(os.path.join(a.work, "parts")),
                             batch=a.batch, nthreads=a.threads_per_task, pure=False)
        results = []
        for fut in as_completed(futures):
            r = fut.result()  # re-raises a task's dv365.Error here
            results.append(r)
            print("  %s: %d users%s" % (os.path.basename(r["part"]), r["users"],
                                        " (already done)" if r["skipped"] else ""))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    t1 = time.time()
    results.sort(key=lambda r: r["part"])
    info = publish(a.store, model, created, results)
    users = sum(r["users"] for r in results)
    print("embedded %d users from %d partitions in %.1f s (%.0f users/s); store generation %d holds %d users"
          % (users, len(parts), t1 - t0, users / max(t1 - t0, 1e-9), info["generation"], info["count"]))
    print(json.dumps({"users": users, "partitions": len(parts), "generation": info["generation"],
                      "count": info["count"], "fingerprint": info["fingerprint"]}))


if __name__ == "__main__":
    try:
        main()
    except dv365.Error as e:
        sys.exit("dask_embed: %s" % e)
