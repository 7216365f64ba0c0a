"""`gpuvalid run --local-fsc-step K`: 1.c's FSC on every K-th voxel, and the report says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app
from gpuvalid.io.mrc import write_mrc
from gpuvalid.level1.simhalves import simulate_halves
from tests.helpers import DATA

MODEL = DATA / "models" / "1akea.pdb"


@pytest.fixture()
def maps(tmp_path, monkeypatch):
    if not MODEL.is_file():
        pytest.skip(f"model {MODEL} not found")
    import gpuvalid.level1 as l1
    import gpuvalid.pipeline as pl

    # Level 0's mass section and Level 1's local FSC only (the others have their own tests)
    monkeypatch.setattr(pl, "SECTIONS", [s for s in pl.SECTIONS if s[0] == "0.a"])
    monkeypatch.setattr(l1, "SECTIONS1", [s for s in l1.SECTIONS1 if s[0] == "1.c"])
    sim = simulate_halves(MODEL, 1.2, 48, bfactor_A2=60.0, noise_rel=1.0, seed=3)
    return {"p": write_mrc(tmp_path / "p.mrc", sim.primary, 1.2), "h1": write_mrc(tmp_path / "h1.mrc", sim.h1, 1.2),
            "h2": write_mrc(tmp_path / "h2.mrc", sim.h2, 1.2), "t": float(np.quantile(sim.primary, 0.9))}


def _run(maps, out, *extra):
    r = CliRunner().invoke(app, ["run", str(maps["p"]), "-t", str(maps["t"]), "-r", "3.5", "--half1", str(maps["h1"]),
                                 "--half2", str(maps["h2"]), "--device", "cpu", "--no-figures", "--out", str(out),
                                 "--format", "md,json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads((out / "results.json").read_text())["sections"]["1.c"], (out / "report.md").read_text()


@pytest.mark.parametrize("k", [2, 3])   # (step 1, every voxel, takes a minute on 2 CPU cores)
def test_local_fsc_step_option(maps, tmp_path, k):
    sec, text = _run(maps, tmp_path / f"step{k}", "--local-fsc-step", str(k))
    assert sec["status"] in ("ok", "warnings") and sec["values"]["step"] == k
    assert sec["values"]["step_requested"] == k
    assert f"--local-fsc-step {k}" in text
    assert f"spacing of {k} voxels" in text and "trilinear interpolation" in text


def test_local_fsc_default_step_and_bad_step(maps, tmp_path):
    sec, text = _run(maps, tmp_path / "auto")
    assert sec["values"]["step_requested"] is None and "--local-fsc-step" not in text
    r = CliRunner().invoke(app, ["run", str(maps["p"]), "--local-fsc-step", "0", "--device", "cpu"])
    assert r.exit_code != 0 and "Traceback" not in r.output
