"""Sections 0.e (local resolution) and 0.h (hand): applicability, the missing-torch/weights paths, and the
monogenic estimate on simulated maps of known resolution."""

import numpy as np
import pytest

from gpuvalid import models
from gpuvalid.analyses import locres
from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.monores import monogenic_local_resolution
from gpuvalid.runner import run_section
from gpuvalid.simulate.maps import simulate_uniform
from gpuvalid.simulate.structure import Atoms


def _chain(seed=0, n=250):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    xyz = np.cumsum(steps, 0)
    xyz = 12 * xyz / np.abs(xyz - xyz.mean(0)).max()
    return Atoms(xyz, np.array(["C"] * n), np.full(n, 6.0), np.array(["CA"] * n),
                 np.array([f"A|{i}|" for i in range(n)]), np.array(["ALA"] * n))


@pytest.fixture(scope="module")
def sim():
    """A 4 Å map and a 9 Å map of the same atoms with the same noise, 20 Å of solvent around."""
    out = {}
    for res in (4.0, 9.0):
        m = simulate_uniform(_chain(), np.random.default_rng(5), res, crop_radius_A=None, noise_k=0.3,
                             with_helix=False, pad_A=20.0)
        out[res] = m
    return out


def _ctx(m, R):
    return MapContext(get_backend("cpu"), m.V, m.voxel_size, m.threshold, R)


def test_monogenic_orders_resolutions(sim):
    be = get_backend("cpu")
    med = {}
    for res, m in sim.items():
        ctx = _ctx(m, res)
        lr = monogenic_local_resolution(be, ctx.V, ctx.voxel_size, ctx.hard_mask)
        inside = lr[be.to_host(ctx.hard_mask)]
        assert np.isfinite(inside).all() and (inside >= 2.0).all() and (inside <= 20.0).all()
        core = lr[m.V >= np.quantile(m.V[m.mask], 0.5)]
        med[res] = float(np.nanmedian(core))
    assert med[4.0] < med[9.0]
    assert 2.5 <= med[4.0] <= 7.0          # 4 Å map: the core is resolved to better than 7 Å
    assert med[9.0] >= 6.0                 # 9 Å map: nothing much finer than the filter


@pytest.mark.parametrize("R", [None, 1.4, 13.5, 20.0])   # 0.e covers 1.5–13 Å (the fine model below 2 Å)
def test_locres_does_not_apply(sim, R):
    r = run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", _ctx(sim[4.0], R))
    assert r.status == "not_applicable"


@pytest.mark.parametrize("R", [None, 5.5, 8.0])
def test_hand_does_not_apply(sim, R):
    r = run_section("gpuvalid.analyses.hand", "0.h", "Hand", _ctx(sim[4.0], R))
    assert r.status == "not_applicable"


def _no_torch(monkeypatch):
    """Simulate a missing PyTorch: the import fails."""
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)
    assert not models.torch_available()


def test_without_torch_locres_falls_back_to_monogenic(sim, monkeypatch):
    _no_torch(monkeypatch)
    r = run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", _ctx(sim[4.0], 4.0))
    assert r.evaluable
    assert r.values["method"] == "monogenic"
    assert any("PyTorch is not installed" in b for b in r.blocks)
    assert len(r.values["percentiles_A"]) == 5
    assert r.values["percentiles_A"] == r.values["monogenic_percentiles_A"]
    assert 0.0 <= r.values["resolution_percentile"] <= 100.0


@pytest.mark.skipif(not models.weights_path("hand").is_file(), reason="the shipped hand model is missing")
def test_hand_needs_no_torch(sim, monkeypatch):
    """The hand model is NumPy-only at inference; its score is a probability and the mirror's is 1 − it.
    (This random-walk chain has no helices: the section abstains for weak evidence, tests/test_hand_abstain.py.)"""
    from gpuvalid.models.hand_model import hand_score
    from gpuvalid.simulate.filters import mirror

    _no_torch(monkeypatch)
    r = run_section("gpuvalid.analyses.hand", "0.h", "Hand", _ctx(sim[4.0], 4.0))
    assert r.evaluable or (r.status == "not_measured" and "too weak" in r.reason)
    m = sim[4.0]
    s = hand_score(get_backend("cpu"), m.V, m.voxel_size, m.threshold)["score"]
    sm = hand_score(get_backend("cpu"), mirror(m.V), m.voxel_size, m.threshold)["score"]
    assert 0.0 <= s <= 1.0 and sm == pytest.approx(1.0 - s, abs=1e-4)


def test_missing_weights(sim, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    monkeypatch.setattr(models, "weights_path", lambda name: tmp_path / f"{name}.pt")
    r = run_section("gpuvalid.analyses.hand", "0.h", "Hand", _ctx(sim[4.0], 4.0))
    assert r.status == "not_measured" and "weights are missing" in r.reason
    r = run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", _ctx(sim[4.0], 4.0))
    assert r.evaluable and r.values["method"] == "monogenic"
    assert any("weights are missing" in b for b in r.blocks)


def test_no_threshold_is_not_measured(sim):
    m = sim[4.0]
    ctx = MapContext(get_backend("cpu"), m.V, m.voxel_size, None, 4.0)
    assert run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", ctx).status == "not_measured"
    assert run_section("gpuvalid.analyses.hand", "0.h", "Hand", ctx).status in ("not_measured",)


def test_percentile_of_R():
    v = np.array([2.0, 3.0, 4.0, 5.0])
    assert locres._percentile_of(v, 3.5) == 50.0
    assert locres._percentile_of(v, 2.0) == 0.0


@pytest.mark.skipif(not models.torch_available() or not models.weights_path("locres").is_file(),
                    reason="torch or the shipped weights are missing")
def test_shipped_networks_run(sim):
    r = run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", _ctx(sim[4.0], 4.0))
    assert r.evaluable and r.values["method"] == "network"
    p = r.values["percentiles_A"]
    assert 2.0 <= p[0] <= p[2] <= p[4] <= 13.0
    assert "agreement" in r.values


@pytest.mark.skipif(not models.weights_path("hand").is_file(), reason="the shipped hand model is missing")
def test_emd2566_crop_hand(data_dir):
    """Real-map check: EMD-2566 crop (3.2 Å) scores < 0.5 and its mirror > 0.5 (threshold: see docs/models.md)."""
    from gpuvalid.io import load_map_input
    from gpuvalid.models.hand_model import hand_score
    from gpuvalid.simulate.filters import mirror

    be = get_backend("cpu")
    inp = load_map_input(str(data_dir / "emd_2566_crop_3j6b_chain9.mrc"))
    t = emd2566_threshold(inp.data, inp.voxel_size, data_dir)
    s = hand_score(be, inp.data, inp.voxel_size, t)["score"]
    sm = hand_score(be, mirror(inp.data), inp.voxel_size, t)["score"]
    assert s < 0.5 < sm


def emd2566_threshold(V, voxel_size, data_dir):
    """Contour for the crop (none is published): the level enclosing the model's volume
    (17 Å³ per non-hydrogen atom of 3j6b chain 9) — fixed by rule, not tuned on the score."""
    from gpuvalid.simulate.filters import threshold_for_volume
    from gpuvalid.simulate.maps import VOLUME_PER_ATOM_A3
    from gpuvalid.simulate.structure import read_atoms

    n = len(read_atoms(data_dir / "models" / "3j6b_chain9.pdb"))
    return threshold_for_volume(V, int(n * VOLUME_PER_ATOM_A3 / voxel_size**3))


@pytest.mark.gpu
@pytest.mark.skipif(not models.weights_path("hand").is_file(), reason="the shipped hand model is missing")
def test_hand_score_on_the_device_equals_the_cpu(data_dir, cpu, gpu):
    """0.h with the map on the device (resampled to 1 Å there, features there) gives the CPU's evidence on a
    real map (EMD-3488, 1.05 Å, contour 0.09): features within 1e-4 relative (float32 filters on both
    devices, float32 rounding of the two resamplings), the same voxel count and abstention."""
    from gpuvalid.io import load_map_input
    from gpuvalid.models.hand_model import hand_score

    inp = load_map_input(str(data_dir / "emd_3488.mrc"))
    a = hand_score(cpu, inp.data, inp.voxel_size, 0.09)
    b = hand_score(gpu, gpu.asarray(inp.data), inp.voxel_size, 0.09)
    assert abs(b["n_voxels"] - a["n_voxels"]) <= 1e-4 * a["n_voxels"]   # voxels at the contour may flip
    np.testing.assert_allclose(b["features"], a["features"], rtol=1e-4, atol=1e-7)
    assert b["abstain"] == a["abstain"]
    assert b["score"] == pytest.approx(a["score"], abs=1e-3)
