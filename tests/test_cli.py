"""End to end through the command line: report files, JSON names of the spec, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.cli import app

from .fuzz.corpus import mrc_bytes

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
    level1 = {f"1.{c}" for c in "abcdefgh"}
    assert set(js["sections"]) == {"0.a", "0.b", "0.c", "0.d", "0.e", "0.f", "0.g", "0.h"} | level1
    for sid in level1:  # no half maps given: every Level 1 section does not apply (spec)
        assert js["sections"][sid]["status"] == "not_applicable" and "half maps" in js["sections"][sid]["reason"]
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
        bad.write_bytes(mrc_bytes(d))
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


# ---- one-line usage errors, safe report folders, meaningless numbers ----



def _small_map(path, box=16):
    """A Gaussian blob on a zero background, 2 Å voxels."""
    z, y, x = np.mgrid[:box, :box, :box]
    c = box / 2
    v = np.exp(-((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) / (2 * 2.5 ** 2)).astype(np.float32)
    path.write_bytes(mrc_bytes(v))
    return path


@pytest.mark.parametrize("args", [["run"], ["run", "x.map", "--bogus"], ["run", "x.map", "-t", "abc"], ["nope"]])
def test_usage_errors_are_one_line(args):
    p = _cli(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpuvalid: error:"), p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def _run(args, cwd=None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return runner.invoke(app, ["run", *args, "--device", "cpu", "--no-figures"])


def test_default_out_is_sanitised(tmp_path, monkeypatch):
    m = _small_map(tmp_path / "...map")
    work = tmp_path / "work"
    work.mkdir()
    res = _run([str(m), "-t", "0.5"], work, monkeypatch)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in work.iterdir()) == ["reports"]
    assert (work / "reports" / "map" / "results.json").is_file()


@pytest.mark.parametrize("out", ["", ".", "MAP", "FILE", "/dev/null"])
def test_refused_out_folders(tmp_path, monkeypatch, out):
    m = _small_map(tmp_path / "a.mrc")
    (tmp_path / "f.txt").write_text("keep")
    out = {"MAP": str(m), "FILE": str(tmp_path / "f.txt")}.get(out, out)
    res = _run([str(m), "-t", "0.5", "--out", out], tmp_path, monkeypatch)
    assert res.exit_code == 2 and "gpuvalid: error: --out" in res.output
    assert not (tmp_path / "report.md").exists() and (tmp_path / "f.txt").read_text() == "keep"


def test_another_maps_report_needs_force_and_stale_files_go(tmp_path):
    a, b = _small_map(tmp_path / "a.mrc"), _small_map(tmp_path / "b.mrc", box=18)
    out = tmp_path / "r"
    assert _run([str(a), "-t", "0.5", "--out", str(out)]).exit_code == 0
    (out / "errors.log").write_text("old run")
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_bytes(b"x")
    res = _run([str(b), "-t", "0.5", "--out", str(out)])
    assert res.exit_code == 2 and "another map (a.mrc)" in res.output
    assert json.loads((out / "results.json").read_text())["input"]["file"] == "a.mrc"
    res = _run([str(b), "-t", "0.5", "--out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "results.json").read_text())["input"]["file"] == "b.mrc"
    assert not (out / "figures" / "old.png").exists() and not (out / "errors.log").exists()
    modes = {(out / f).stat().st_mode & 0o777 for f in ("report.md", "results.json")}
    assert len(modes) == 1 and modes.pop() & 0o044 == 0o044  # same mode, readable by others
    # the same map again: no --force needed
    assert _run([str(b), "-t", "0.5", "--out", str(out)]).exit_code == 0
    # a folder with other files is not a report folder
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "notes.txt").write_text("x")
    assert _run([str(b), "-t", "0.5", "--out", str(tmp_path / "own")]).exit_code == 2


def test_single_voxel_map_scores_nothing(tmp_path):
    v = np.zeros((16, 16, 16), np.float32)
    v[8, 8, 8] = 1.0
    m = tmp_path / "one.mrc"
    m.write_bytes(mrc_bytes(v))
    res = _run([str(m), "-t", "0.5", "-r", "6", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    js = json.loads((tmp_path / "r" / "results.json").read_text())
    assert js["score"] == {"passed": 0, "evaluable": 0}
    assert all("1 voxel(s)" in s["reason"] for s in js["sections"].values() if s["status"] == "not_measured")


def test_meaningless_values_become_not_measured(tmp_path, monkeypatch):
    import types

    from gpuvalid.analyses.base import SectionResult
    from gpuvalid.backend import get_backend
    from gpuvalid.runner import run_section

    def fake(values=None, blocks=(), warn=False, promised=()):
        mod = types.ModuleType("gpuvalid_fake_section")

        def run(ctx):
            if warn:
                np.log(np.zeros(3))  # RuntimeWarning: divide by zero
            return SectionResult("x", "x", values=values or {"v": 1.0}, blocks=list(blocks), promised=promised)
        mod.run = run
        monkeypatch.setitem(__import__("sys").modules, "gpuvalid_fake_section", mod)
        log = []
        ctx = types.SimpleNamespace(be=get_backend("cpu"), shape=(16, 16, 16), voxel_size=1.0, resolution=None)
        return run_section("gpuvalid_fake_section", "0.z", "Fake", ctx, log), log

    assert fake()[0].status == "ok"
    assert fake({"v": float("nan")})[0].status == "not_measured"
    assert fake({"v": [1.0, float("inf")]}, promised=("v",))[0].status == "not_measured"
    assert fake({"v": None}, promised=("v",))[0].status == "not_measured"
    assert fake({"curve": [1.0, None]})[0].status == "ok"  # unpromised curves may have gaps
    res, _ = fake(blocks=["voxel-wise correlation nan"])
    assert res.status == "not_measured" and "correlation nan" in res.reason
    assert fake(blocks=["information on nanometre scales"])[0].status == "ok"
    res, log = fake(warn=True)
    assert res.status == "ok" and any("RuntimeWarning" in ln for ln in log)
