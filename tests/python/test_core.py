"""Loading, version, errors, Config."""
import os
import subprocess
import sys

import numpy as np
import pytest

import dv365
from conftest import DEFAULT, SMALL, SOURCE_ROOT, expect_error


def test_version_matches_header():
    header = open(os.path.join(SOURCE_ROOT, "include", "dv365.h")).read()
    parts = []
    for name in ("MAJOR", "MINOR", "PATCH"):
        line = next(ln for ln in header.splitlines() if ln.startswith("#define DV365_VERSION_" + name))
        parts.append(int(line.split()[-1]))
    assert dv365.version() == "%d.%d.%d" % tuple(parts)
    assert dv365.version_number() == parts[0] * 10000 + parts[1] * 100 + parts[2]
    assert dv365.__version__ == dv365.version()


def test_loads_the_library_named_by_the_environment():
    assert os.path.samefile(dv365.library_path(), os.environ["DV365_LIBRARY"])
    assert dv365._lib.missing == []  # every function of the header is exported


def test_bad_library_path_is_an_import_error():
    env = dict(os.environ, DV365_LIBRARY="/nonexistent/libdv365.so.1")
    r = subprocess.run([sys.executable, "-c", "import dv365"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "/nonexistent/libdv365.so.1" in r.stderr


def test_status_values_are_the_header_values():
    header = open(os.path.join(SOURCE_ROOT, "include", "dv365.h")).read()
    for s in dv365.Status:
        assert ("DV365_%s = %d," % (s.name, s.value)) in header or ("DV365_%s = %d " % (s.name, s.value)) in header \
            or ("DV365_%s = %d\n" % (s.name, s.value)) in header, s


def test_error_carries_status_and_message():
    e = expect_error(dv365.Status.E_IO, "/nonexistent.yaml", dv365.Config.load, "/nonexistent.yaml")
    assert isinstance(e, Exception)
    assert e.status_string  # the library's short description
    assert "E_IO" in str(e) and "/nonexistent.yaml" in str(e)


def test_argument_errors_are_value_and_type_errors(model):
    with pytest.raises(ValueError):
        model.encode(np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError):
        model.encode(np.zeros((model.num_slices, model.dim), np.float64))
    with pytest.raises(dv365.DTypeError) as ei:
        dv365.Model.init(12345)  # not a path
    assert ei.value.status == dv365.Status.E_INVALID
    e = expect_error(dv365.Status.E_INVALID, "seed = -1", dv365.Model.init, SMALL, seed=-1)
    assert isinstance(e, ValueError)


def test_config_properties():
    c = dv365.Config.load(SMALL)
    assert c.dim == 32 and c.num_slices == len(c.slice_names) == 24
    assert c.slice_names[0] == "like.media.all"
    assert c.slice_index("like.media.7d") == 1
    expect_error(dv365.Status.E_NOT_FOUND, "nope", c.slice_index, "nope")
    assert c.tables[0] == ("exp_pos_media", 4096)
    assert c.vocab("action")[:2] == ["view", "like"]
    assert c.code("surface", "reels") == 1 and c.code_name("surface", 1) == "reels"
    expect_error(dv365.Status.E_NOT_FOUND, "bogus", c.code, "surface", "bogus")
    expect_error(dv365.Status.E_NOT_FOUND, "99", c.code_name, "surface", 99)
    expect_error(dv365.Status.E_INVALID, "unknown vocabulary", c.vocab, "colour")
    assert list(c.codes("action", ["like", "view", "like"])) == [1, 0, 1]
    assert c.tasks[0] == ("like", True) and c.tasks[-1] == ("watch_time", False)
    assert c.num_tasks == 6 and c.num_dense == 8
    c.close()
    expect_error(dv365.Status.E_STATE, "closed", lambda: c.dim)
    c.close()  # twice is fine


def test_config_parse_errors_name_line_and_column():
    text = open(SMALL).read()
    with dv365.Config.parse(text) as c:
        assert c.dim == 32
    expect_error(dv365.Status.E_PARSE, "<string>:2:8:", dv365.Config.parse, "dim: [1, 2\nversion: 1\n")
    expect_error(dv365.Status.E_CONFIG, "dim", dv365.Config.parse, text.replace("dim: 32", "dim: -3"))


def test_default_config_sizes():
    c = dv365.Config.load(DEFAULT)
    assert (c.num_slices, c.dim) == (200, 256)


def test_hash_row():
    rows = [dv365.hash_row(i, 1000) for i in range(200)]
    assert all(0 <= r < 1000 for r in rows) and len(set(rows)) > 150
    assert dv365.hash_row(12345, 1000) == dv365.hash_row(12345, 1000)
    with pytest.raises(dv365.ArgumentError):
        dv365.hash_row(-1, 10)


def test_array_conversion_rules(model):
    from dv365._base import array
    ids = array(np.array([[1, 2, 3]], np.int64), np.uint64, "item_ids", [(None, 3)])
    assert ids.dtype == np.uint64 and ids.flags.c_contiguous
    expect_error(dv365.Status.E_INVALID, "item_ids holds -1", array, [[-1, 2, 3]], np.uint64, "item_ids")
    expect_error(dv365.Status.E_INVALID, "must hold integers", array, [1.5], np.uint64, "ids")
    expect_error(dv365.Status.E_INVALID, "must hold numbers", array, ["a"], np.float32, "x")
    expect_error(dv365.Status.E_INVALID, "convert it with .astype", array, np.zeros(2), np.float32, "x")
    assert array([1.25, 2], np.float32, "x").dtype == np.float32  # sequences convert
    assert array(np.arange(4, dtype=np.int16), np.float32, "x").tolist() == [0, 1, 2, 3]
    f = np.zeros((4, 3), np.float32, order="F")
    assert array(f, np.float32, "x").flags.c_contiguous
    expect_error(dv365.Status.E_MISMATCH, "x has shape [4, 3], expected [3, *]", array, f, np.float32, "x",
                 [(3, None)])
