"""`gpuvalid run --device cuda:0` end to end (every section, figures, Level 1 with half maps) gives the CPU's
report: statuses equal, numbers within the batch test's tolerance (relative 1e-3).

GPU tests (``-m gpu``): on a CUDA node they run on the device; with ``GPUVALID_CUPY_STANDIN=1`` they run on
the CuPy stand-in of :mod:`tests.standin` (the GPU code paths on the CPU, CuPy's host/device rules
enforced), which is how they are rehearsed before a GPU session.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app
from tests.helpers import DATA

pytestmark = pytest.mark.gpu

MODEL = DATA / "models" / "1akea.pdb"
runner = CliRunner()


def _run(args, out: Path, device: str) -> dict:
    res = runner.invoke(app, [*args, "--device", device, "--out", str(out), "--format", "md,json"])
    assert res.exit_code == 0, res.output
    return json.loads((out / "results.json").read_text())


def _numbers(values, prefix=""):
    """(key path, float) of every finite number in a section's values (lists and nested dicts included)."""
    if isinstance(values, dict):
        for k, v in values.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(values, (list, tuple)):
        for i, v in enumerate(values):
            yield from _numbers(v, f"{prefix}{i}.")
    elif isinstance(values, (int, float)) and not isinstance(values, bool) and math.isfinite(values):
        yield prefix.rstrip("."), float(values)


def _agree(cpu: dict, dev: dict, loose: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Differences between two results.json: statuses, and numbers beyond rel 1e-3 / abs 1e-6 (``loose``:
    per-section (rel, abs) where the device computes differently by design)."""
    bad = []
    for sid, a in cpu["sections"].items():
        b = dev["sections"][sid]
        if a["status"] != b["status"]:
            bad.append(f"{sid}: status {a['status']} vs {b['status']}")
            continue
        rel, abs_ = (loose or {}).get(sid, (1e-3, 1e-6))
        nb = dict(_numbers(b.get("values", {})))
        for k, v in _numbers(a.get("values", {})):
            if k in nb and not math.isclose(v, nb[k], rel_tol=rel, abs_tol=abs_):
                bad.append(f"{sid} {k}: cpu {v:.6g} device {nb[k]:.6g}")
    return bad


def test_level0_run_with_figures_gpu_equals_cpu(gpu, data_dir, tmp_path):
    args = ["run", str(data_dir / "emd_5168.map"), "--threshold", "10", "--resolution", "6.6"]
    c = _run(args, tmp_path / "cpu", "cpu")
    g = _run(args, tmp_path / "gpu", "cuda:0")
    # 0.e: the network's tiles on the device vs threads on the CPU (float32 sums in another order)
    bad = _agree(c, g, loose={"0.e": (2e-3, 1e-3)})
    assert not bad, "\n".join(bad[:20])
    assert c["score"] == g["score"]
    figs = sorted(p.name for p in (tmp_path / "gpu" / "figures").glob("*.png"))
    assert figs == sorted(p.name for p in (tmp_path / "cpu" / "figures").glob("*.png")) and len(figs) >= 7


@pytest.fixture()
def halves(tmp_path):
    if not MODEL.is_file():
        pytest.skip(f"model {MODEL} not found")
    from gpuvalid.io.mrc import write_mrc
    from gpuvalid.level1.simhalves import simulate_halves

    sim = simulate_halves(MODEL, 1.2, 48, bfactor_A2=60.0, noise_rel=1.0, seed=3)
    return {"p": write_mrc(tmp_path / "p.mrc", sim.primary, 1.2), "h1": write_mrc(tmp_path / "h1.mrc", sim.h1, 1.2),
            "h2": write_mrc(tmp_path / "h2.mrc", sim.h2, 1.2), "t": float(np.quantile(sim.primary, 0.9))}


def test_level1_run_gpu_equals_cpu(gpu, halves, tmp_path):
    args = ["run", str(halves["p"]), "-t", str(halves["t"]), "-r", "3.5", "--half1", str(halves["h1"]),
            "--half2", str(halves["h2"]), "--no-figures", "--local-fsc-step", "1"]
    c = _run(args, tmp_path / "cpu", "cpu")
    g = _run(args, tmp_path / "gpu", "cuda:0")
    # The FDR permutation test draws its permutations from CuPy's generator on the device (its p-values are
    # Monte-Carlo estimates: equal in distribution, not in bits).  1.c at every voxel on both devices.
    bad = [b for b in _agree(c, g) if not b.startswith("1.b ")]
    assert not bad, "\n".join(bad[:20])
    for sid in ("1.c", "1.d", "1.e", "1.f"):
        assert g["sections"][sid]["status"] in ("ok", "warnings"), (sid, g["sections"][sid].get("reason"))
