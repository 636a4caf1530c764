"""The embedding store and batch generation through the binding."""
import numpy as np
import pytest

import dv365
from conftest import CUTOFF, expect_error, lcg_timeline

S = dv365.Status


def test_generations_get_reader_age(model, tmp_path):
    path = str(tmp_path / "store")
    U = model.embed([lcg_timeline(model.config, u) for u in range(3)], CUTOFF)
    blobs = {10 + u: dv365.blob_encode(model, U[u], created=CUTOFF) for u in range(3)}
    with dv365.Store.open(path, nosync=True) as st:
        assert st.info()["generation"] == 0
        expect_error(S.E_NOT_FOUND, "", st.get, 10)
        with st.begin_generation(model, CUTOFF) as g:
            for uid, b in blobs.items():
                g.put(uid, b)
            g.checkpoint(b"progress:3")
            assert g.checkpoint_data() == b"progress:3"
            assert g.info()["stored"] == 3 and g.info()["generation"] == 1
        info = st.info()
        assert info == {"generation": 1, "fingerprint": model.fingerprint, "created": CUTOFF,
                        "count": 3, "k": model.num_tokens, "dim": model.dim}
        for uid, b in blobs.items():
            assert st.get(uid) == b
        assert np.array_equal(dv365.blob_decode(st.get(11), model)[0],
                              dv365.q4_dequantize(dv365.q4_quantize(U[1]), model.dim))
        assert st.age(12, CUTOFF + 100) == 100
        expect_error(S.E_NOT_FOUND, "", st.get, 99)
        with st.reader() as r:
            assert r.info()["generation"] == 1
            assert r.get(10) == blobs[10]
            expect_error(S.E_NOT_FOUND, "", r.get, 99)
        # a blob of another model is refused by a generation that names the model
        g = st.begin_generation(model, CUTOFF + 1)
        expect_error(S.E_MISMATCH, "", g.put, 1, dv365.blob_encode(12345, U[0], created=1))
        g.abort()
        g.close()
        assert st.info()["generation"] == 1
        # an exception inside `with` aborts the generation
        with pytest.raises(RuntimeError):
            with st.begin_generation(model, CUTOFF + 2) as g:
                g.put(10, blobs[11])
                raise RuntimeError("stop")
        assert st.get(10) == blobs[10]
        expect_error(S.E_NOT_FOUND, "", st.resume_generation)
    with dv365.Store.open(path, readonly=True) as ro:
        assert ro.get(12) == blobs[12]
        expect_error(S.E_STATE, "", ro.begin_generation, 0, CUTOFF)
    expect_error(S.E_IO, "", dv365.Store.open, str(tmp_path / "none"), readonly=True)


def test_store_open_twice_is_refused(tmp_path):
    path = str(tmp_path / "s")
    with dv365.Store(path, nosync=True) as st:
        expect_error(S.E_STATE, "", dv365.Store, path)
        r = st.reader()
        expect_error(S.E_STATE, "readers and generations first", st.close)
        r.close()
    assert st.closed


def test_generate_equals_embed_and_blob(model, tmp_path):
    cfg = model.config
    tls = {7 + 3 * u: lcg_timeline(cfg, u % 3) for u in range(5)}
    tl_path = str(tmp_path / "users.dvt")
    with dv365.TimelineWriter(tl_path, cfg) as w:
        for uid, tl in tls.items():
            w.add(uid, tl)
    done = []
    with dv365.Store(str(tmp_path / "s"), nosync=True) as st:
        dv365.generate(model, tl_path, CUTOFF, st, nthreads=2, batch=2,
                       progress=lambda d, n: done.append((d, n)))
        assert done[-1] == (5, 5)
        assert st.info()["count"] == 5 and st.info()["created"] == CUTOFF
        for uid, tl in tls.items():
            assert st.get(uid) == dv365.blob_encode(model, model.embed(tl, CUTOFF), created=CUTOFF)
        # stopped by progress: the generation stays pending, resume finishes it
        expect_error(S.E_STATE, "stop", st.generate, model, tl_path, CUTOFF - 86400, batch=2,
                     progress=lambda d, n: True)
        assert st.info()["generation"] == 1
        st.generate(model, tl_path, CUTOFF - 86400, batch=2, resume=True)
        assert st.info()["generation"] == 2
        uid = next(iter(tls))
        assert st.get(uid) == dv365.blob_encode(model, model.embed(tls[uid], CUTOFF - 86400),
                                                created=CUTOFF - 86400)
        expect_error(S.E_IO, "", dv365.generate, model, str(tmp_path / "none.dvt"), CUTOFF, st)
        with pytest.raises(dv365.DTypeError):
            dv365.generate(model, tl_path, CUTOFF, "store")
        expect_error(S.E_INVALID, "method", dv365.generate, model, tl_path, CUTOFF, st, method="fp8")
