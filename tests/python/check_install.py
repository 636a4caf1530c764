#!/usr/bin/python3
"""check_install.py BUILD_DIR — `import dv365` from an installed copy.

Installs the build into a temporary DESTDIR with meson, then, in a fresh
interpreter that sees only the installed package (no DV365_LIBRARY, no
source tree on the path), imports dv365 and checks that it loaded the
installed libdv365.so.1 and can embed and round-trip a blob.  Also checks
that every module of python/dv365 was installed (python/meson.build lists
them by hand).
"""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

PROBE = r"""
import os, sys
import numpy as np
import dv365
dest = sys.argv[1]
lib = os.path.realpath(dv365.library_path())
assert lib.startswith(os.path.realpath(dest) + os.sep), "loaded %s, not the installed copy" % lib
assert os.path.realpath(dv365.__file__).startswith(os.path.realpath(dest) + os.sep), dv365.__file__
m = dv365.Model.init(sys.argv[2], seed=1)
tl = dv365.Timeline(time=[1767225000, 1767225100], media_id=[1, 2], author_id=[3, 4], topic_id=[5, 6],
                    action=["view", "like"], media_type="video", surface="reels",
                    duration_ms=[10000, 20000], dwell_ms=[9000, 0])
U = m.embed(tl, 1767225600)
V, meta = dv365.blob_decode(dv365.blob_encode(m, U, created=1767225600), m)
assert U.shape == (m.num_tokens, m.dim) and meta["k"] == m.num_tokens
assert np.abs(U - V).max() < 0.5
print("python-install: dv365 %s from %s loads %s" % (dv365.version(), os.path.dirname(dv365.__file__), lib))
"""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_install.py BUILD_DIR")
    build = sys.argv[1]
    dest = tempfile.mkdtemp(prefix="dv365-pyinst-")
    try:
        r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            sys.exit("python-install: meson install failed")
        inits = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs
                 if f == "__init__.py" and os.path.basename(d) == "dv365"]
        if len(inits) != 1:
            sys.exit("python-install: expected one installed dv365 package, found %s" % inits)
        pkg = os.path.dirname(inits[0])
        want = {f for f in os.listdir(os.path.join(SRC, "python", "dv365")) if f.endswith(".py")}
        have = {f for f in os.listdir(pkg) if f.endswith(".py")}
        if want | {"_install.py"} != have:
            sys.exit("python-install: installed modules %s differ from the source's %s"
                     % (sorted(have), sorted(want)))
        env = {k: v for k, v in os.environ.items() if k not in ("DV365_LIBRARY", "PYTHONPATH")}
        env["PYTHONPATH"] = os.path.dirname(pkg)
        r = subprocess.run([sys.executable, "-c", PROBE, dest, os.path.join(SRC, "configs", "small.yaml")],
                           env=env, cwd=dest, capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            sys.stdout.write(r.stderr)
            sys.exit("python-install: the installed package failed")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
