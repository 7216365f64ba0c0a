"""End to end through the command line: report files, JSON names of the spec, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app

from .helpers import write_map

runner = CliRunner()
SPEC_KEYS = {
    "0.a": {"left_space_A", "right_space_A", "decentering_pct", "center_of_mass_vox", "com_decentering_pct"},
    "0.b": {"n_components", "raw_voxels", "raw_volume_A3", "n95", "largest_voxels", "remaining_count",
            "remaining_mean_voxels", "remaining_mean_volume_A3", "remaining_max_voxels", "remaining_min_voxels",
            "mass_thresholds", "mass_voxels", "mass_kda", "mass_residues", "hard_mask_voxels",
            "hard_mask_volume_A3", "overlap"},
    "0.c": {"t_statistic", "p_value", "mean", "std", "fraction_beyond_5sigma", "gaussian_fraction", "outlier_ratio"},
}


def test_run_real_map_writes_report(data_dir, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(app, ["run", str(data_dir / "emd_5168.map"), "--threshold", "10", "--resolution", "6.6",
                              "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    js = json.loads((out / "results.json").read_text())
    assert js["input"]["box_zyx"] == [100, 100, 100] and js["input"]["threshold"] == 10.0
    assert js["input"]["resolution_A"] == 6.6
    for sid, keys in SPEC_KEYS.items():
        assert keys <= set(js["sections"][sid]["values"]), sid
    assert set(js["sections"]) == {"0.a", "0.b", "0.c", "0.d", "0.e", "0.f", "0.g", "0.h"}
    evaluable = [s for s in js["sections"].values() if s["status"] in ("ok", "warnings")]
    assert js["score"] == {"passed": sum(s["status"] == "ok" for s in evaluable), "evaluable": len(evaluable)}
    md = (out / "report.md").read_text()
    assert "out of" in md and "## 0.a Mass analysis" in md and "SHA-256" in md
    for f in ("central_slices", "max_variance_slices", "projections", "hard_mask_slices", "soft_mask_slices",
              "mass_vs_threshold", "background_5sigma"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 1000
        assert f"figures/{f}.png" in md


def test_missing_resolution_and_threshold(data_dir, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(app, ["run", str(data_dir / "emd_3197.map"), "--device", "cpu", "--out", str(out),
                              "--no-figures"])
    assert res.exit_code == 0, res.output
    js = json.loads((out / "results.json").read_text())
    assert js["input"]["resolution_A"] is None and js["input"]["threshold"] is None
    for sid in ("0.a", "0.b", "0.c"):
        assert js["sections"][sid]["status"] == "not_measured"
        assert "threshold" in js["sections"][sid]["reason"]
    assert "not reported" in (out / "report.md").read_text()


def test_noncubic_crop_runs(data_dir, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(app, ["run", str(data_dir / "emd_2566_crop_3j6b_chain9.mrc"), "-t", "0.2", "-r", "3.2",
                              "--device", "cpu", "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    js = json.loads((out / "results.json").read_text())
    assert js["input"]["box_zyx"] == [47, 52, 35]
    assert js["sections"]["0.b"]["status"] in ("ok", "warnings")


def test_threshold_above_max(data_dir, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(app, ["run", str(data_dir / "emd_5168.map"), "-t", "100", "--device", "cpu",
                              "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    js = json.loads((out / "results.json").read_text())
    for sid in ("0.a", "0.b", "0.c"):  # an empty mask: nothing to measure, not counted in the score
        assert js["sections"][sid]["status"] == "not_measured"
        assert "threshold too high" in js["sections"][sid]["reason"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gpuvalid.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing", "truncated", "nan", "voxel", "device", "anisotropic", "emdb_id"])
def test_errors_are_one_line(case, tmp_path, data_dir):
    bad = tmp_path / "bad.mrc"
    args = ["run", str(bad), "--device", "cpu", "--out", str(tmp_path / "o")]
    if case == "truncated":
        bad.write_bytes((data_dir / "emd_5170.map").read_bytes()[:300000])
    elif case == "nan":
        d = np.zeros((16, 16, 16), np.float32)
        d[1, 1, 1] = np.nan
        write_map(bad, d)
    elif case == "voxel":
        args = ["run", str(data_dir / "emd_3197.map"), "--voxel-size", "-2", "--out", str(tmp_path / "o")]
    elif case == "device":
        args = ["run", str(data_dir / "emd_3197.map"), "--device", "tpu:3", "--out", str(tmp_path / "o")]
    elif case == "anisotropic":
        args = ["run", str(data_dir / "emd_3001.map"), "--device", "cpu", "--out", str(tmp_path / "o")]
    elif case == "emdb_id":
        args = ["run", "EMD-99999", "--device", "cpu", "--archive", str(tmp_path / "nomirror")]
    p = _cli(*args)
    assert p.returncode != 0
    err = p.stderr.strip()
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert len(err.splitlines()) == 1 and err.startswith("gpuvalid: error:"), err


def test_info_cpu():
    res = runner.invoke(app, ["info", "--device", "cpu"])
    assert res.exit_code == 0 and "numpy" in res.output
