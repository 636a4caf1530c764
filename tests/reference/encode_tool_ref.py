"""encode_tool_ref.py -- `dv365 encode` against the PyTorch encoder.

usage: /usr/bin/python3 encode_tool_ref.py PATH/TO/dv365 SOURCE_ROOT

Makes a seeded model with `dv365 init` (configs/small.yaml), writes pooled
inputs x [B, N, D] to a safetensors file, runs `dv365 encode`, and checks
that u equals the output of the PyTorch encoder (encoder_ref.Model) that
loads the model's weights.safetensors with load_state_dict(strict=True),
within 1e-4 relative.  Also checks that a wrongly shaped x is refused.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from encoder_ref import Model, rel_err  # noqa: E402

# configs/small.yaml: N=24 slices, D=32, 2 blocks x 1 layer, 2 heads, FFN 64, stride 2, K_lce 4
SMALL = (24, 32, 2, 1, 2, 64, 2, 4)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tool, root = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="dv365_encode_tool_") as tmp:
        model_dir = os.path.join(tmp, "model")
        subprocess.run([tool, "init", "--config", os.path.join(root, "configs/small.yaml"),
                        "--out", model_dir, "--seed", "3"], check=True, stdout=subprocess.DEVNULL)
        rng = np.random.default_rng(7)
        x = rng.standard_normal((3, 24, 32)).astype(np.float32)
        st.save(os.path.join(tmp, "x.safetensors"), {"x": x})
        subprocess.run([tool, "encode", "--model", model_dir, "--in",
                        os.path.join(tmp, "x.safetensors"), "--out",
                        os.path.join(tmp, "u.safetensors"), "--threads", "2"], check=True,
                       stdout=subprocess.DEVNULL)
        u = st.load(os.path.join(tmp, "u.safetensors"))["u"]

        weights = st.load(os.path.join(model_dir, "weights.safetensors"))
        model = Model(*SMALL).double()
        state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()
                 if k.startswith("encoder.")}
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            want = model(torch.from_numpy(x.astype(np.float64))).numpy()
        err = rel_err(u, want)
        print(f"dv365 encode vs PyTorch: u {u.shape}, max rel error {err:.2e}")
        if u.shape != want.shape or not err <= 1e-4:
            sys.exit("FAILED: dv365 encode disagrees with the PyTorch encoder")

        st.save(os.path.join(tmp, "bad.safetensors"), {"x": x[:, :20]})
        bad = subprocess.run([tool, "encode", "--model", model_dir, "--in",
                              os.path.join(tmp, "bad.safetensors"), "--out",
                              os.path.join(tmp, "u2.safetensors")],
                             capture_output=True, text=True)
        if bad.returncode != 1 or "needs a tensor x of shape" not in bad.stderr:
            sys.exit(f"FAILED: a wrongly shaped x was not refused: {bad.returncode} {bad.stderr}")
    print("dv365 encode reference check passed")


if __name__ == "__main__":
    main()
