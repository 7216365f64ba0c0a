"""Sections 0.d, 0.f, 0.g end to end: real maps (emd_5168, emd_5170) and edge cases."""

import numpy as np
import pytest

from gpuvalid.context import MapContext, RunOptions
from gpuvalid.runner import run_section

MODULES = {"0.d": "gpuvalid.analyses.bfactor", "0.f": "gpuvalid.analyses.locbfactor",
           "0.g": "gpuvalid.analyses.occupancy"}


def load(data_dir, name, threshold, resolution):
    from gpuvalid.io.load import load_map_input

    return load_map_input(data_dir / name, threshold=threshold, resolution=resolution)


def run_all(be, inp, tmp_path=None, threshold=None, resolution=None):
    opts = RunOptions()
    if tmp_path is not None:
        (tmp_path / "figures").mkdir()
        (tmp_path / "maps").mkdir()
        opts = RunOptions(figure_dir=tmp_path / "figures", map_dir=tmp_path / "maps")
    ctx = MapContext(be, inp.data, inp.voxel_size, inp.threshold if threshold is None else threshold,
                     inp.resolution if resolution is None else resolution, opts)
    errors = []
    out = {sid: run_section(mod, sid, sid, ctx, errors) for sid, mod in MODULES.items()}
    assert not errors, errors
    return out, ctx


def test_emd_5168_sections(cpu, data_dir, tmp_path):
    inp = load(data_dir, "emd_5168.map", 10.0, 6.6)
    res, ctx = run_all(cpu, inp, tmp_path)
    d, f, g = res["0.d"], res["0.f"], res["0.g"]
    for r in (d, f, g):
        assert r.evaluable and r.summary and r.key and r.explanation and r.criteria and r.blocks
        assert r.figures
        for fig in r.figures:
            assert (tmp_path / fig.file).is_file()
    assert set(d.values) >= {"slope", "intercept", "bfactor_A2", "fit_shells"}
    assert d.values["bfactor_A2"] == pytest.approx(4 * d.values["slope"])
    assert d.values["fit_shells"] >= 3
    pf, pg = f.values["percentiles_A2"], g.values["percentiles"]
    assert len(pf) == 5 and all(np.diff(pf) >= 0)
    assert len(pg) == 5 and all(np.diff(pg) >= 0) and 0 <= pg[0] and pg[-1] <= 1
    assert len(f.vrs_compat["percentiles_A2"]) == 5 and len(g.vrs_compat["percentiles"]) == 5
    for name in ("sharpened.mrc", "locbfactor.mrc", "occupancy.mrc"):
        assert (tmp_path / "maps" / name).is_file()
    lm = ctx.local_maps
    assert lm["0.f"]["values"].shape == ctx.resized.shape and lm["0.f"]["values"].dtype == np.float32
    assert lm["0.f"]["lo"] == pytest.approx(pf[0]) and lm["0.g"]["hi"] == pytest.approx(pg[4])


def test_emd_5170_guinier_not_measurable(cpu, data_dir):
    inp = load(data_dir, "emd_5170.map", 0.61, 15.0)
    res, _ = run_all(cpu, inp)
    d = res["0.d"]
    assert d.status == "not_measured" and not d.evaluable
    assert "15 Å" in d.reason and "at least 3" in d.reason


def _blob_map(n=40):
    g = np.indices((n, n, n)).astype(np.float32) - n / 2
    V = np.exp(-(g ** 2).sum(0) / (2 * 4.0 ** 2)).astype(np.float32)
    V += 0.01 * np.random.default_rng(0).standard_normal(V.shape).astype(np.float32)
    return V


def test_no_resolution_does_not_apply(cpu):
    ctx = MapContext(cpu, _blob_map(), 1.0, 0.5, None)
    for sid, mod in MODULES.items():
        r = run_section(mod, sid, sid, ctx)
        assert r.status == "not_applicable" and "resolution" in r.reason


def test_threshold_too_high_not_measured(cpu):
    ctx = MapContext(cpu, _blob_map(), 1.0, 50.0, 4.0)
    for sid in ("0.f", "0.g"):
        r = run_section(MODULES[sid], sid, sid, ctx)
        assert r.status == "not_measured" and "threshold" in r.reason


@pytest.mark.gpu
def test_gpu_sections_equal_cpu(cpu, gpu, data_dir):
    """emd_5168: B within 0.1 Å², local-B percentiles within 1 Å², occupancy percentiles within 0.02."""
    inp = load(data_dir, "emd_5168.map", 10.0, 6.6)
    rc, _ = run_all(cpu, inp)
    rg, _ = run_all(gpu, inp)
    assert rg["0.d"].values["bfactor_A2"] == pytest.approx(rc["0.d"].values["bfactor_A2"], abs=0.1)
    np.testing.assert_allclose(rg["0.f"].values["percentiles_A2"], rc["0.f"].values["percentiles_A2"], atol=1.0)
    np.testing.assert_allclose(rg["0.g"].values["percentiles"], rc["0.g"].values["percentiles"], atol=0.02)
