"""Level 1 through the pipeline and the command line: halves in, Level 1 sections and results.json out; a
missing or bad half gives a one-line reason in the Half maps section while the Level 0 report comes out."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app
from gpuvalid.io import load_map_input
from gpuvalid.io.mrc import write_mrc
from gpuvalid.level1.simhalves import simulate_halves
from gpuvalid.pipeline import validate
from gpuvalid.report import results_dict
from tests.helpers import DATA

MODEL = DATA / "models" / "1akea.pdb"
runner = CliRunner()


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    if not MODEL.is_file():
        pytest.skip(f"model {MODEL} not found")
    d = tmp_path_factory.mktemp("l1")
    sim = simulate_halves(MODEL, 1.2, 48, bfactor_A2=60.0, noise_rel=1.0, seed=3)
    return {"p": write_mrc(d / "p.mrc", sim.primary, 1.2), "h1": write_mrc(d / "h1.mrc", sim.h1, 1.2),
            "h2": write_mrc(d / "h2.mrc", sim.h2, 1.2), "dir": d,
            "t": float(np.quantile(sim.primary, 0.95))}


def test_validate_with_halves(cpu, maps, monkeypatch):
    import gpuvalid.level1 as l1
    # the global sections only (1.c-1.f, the local ones, have their own tests and take minutes on 2 cores)
    monkeypatch.setattr(l1, "SECTIONS1", [s for s in l1.SECTIONS1 if s[0] in ("1.a", "1.b", "1.g", "1.h")])
    inp = load_map_input(maps["p"], threshold=maps["t"], resolution=3.5)
    rep = validate(inp, cpu, None, only={"0.a"}, halves=[maps["h1"], maps["h2"]])
    assert {"0.a", "1", "1.a", "1.b", "1.g", "1.h"} <= set(rep.sections)
    assert rep.sections["1"].evaluable is False                  # the Half maps section is not graded
    assert all(rep.sections[s].evaluable for s in ("1.a", "1.b", "1.g", "1.h"))
    assert rep.evaluable == 1 + 4                                # 0.a and the four global sections
    d = json.loads(json.dumps(results_dict(rep), allow_nan=False))
    assert d["half_maps"]["files"] == ["h1.mrc", "h2.mrc"] and len(d["half_maps"]["sha256"][0]) == 64
    v = d["sections"]["1.a"]["values"]
    for key in ("fsc_0143_A", "fsc_0143_masked_A", "fsc_05_A", "dpr_45_A", "ssnr_1_A"):
        assert v[key] is None or v[key] > 2 * 1.2 - 1e-6
    assert "curves" in v and d["sections"]["1.b"]["values"]["fdr_fsc_A"] > 0
    for key in ("fso_05_A", "fso_09_A", "fso_01_A"):
        assert key in d["sections"]["1.g"]["values"]
    for key in ("global_A", "x_A", "y_A", "z_A", "sphericity"):
        assert key in d["sections"]["1.h"]["values"]
    assert "range from" in rep.sections["1"].summary


def test_cli_missing_half_still_writes_level0_report(maps):
    out = maps["dir"] / "rep_missing"
    r = runner.invoke(app, ["run", str(maps["p"]), "-t", str(maps["t"]), "-r", "3.5", "--half1", str(maps["h1"]),
                            "--device", "cpu", "--no-figures", "--out", str(out), "--format", "md,json"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "results.json").read_text())
    assert d["sections"]["0.a"]["status"] in ("ok", "warnings")
    assert d["sections"]["1"]["status"] == "not_measured"
    assert "only one half map" in d["sections"]["1"]["reason"]
    md = (out / "report.md").read_text()
    assert "Level 0 and Level 1" in md and "only one half map" in md
