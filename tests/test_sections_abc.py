"""Sections 0.a, 0.b, 0.c on synthetic maps with known answers and on a real map (direct formulas)."""

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from gpuvalid.analyses import background, mask, mass
from gpuvalid.context import MapContext
from gpuvalid.masks import ball
from gpuvalid.io import load_map_input
from gpuvalid.runner import run_section

from .helpers import cubes_map


def ctx_for(cpu, V, ts=1.0, t=0.5, r=None):
    return MapContext(cpu, V, ts, t, r)


# ---------------------------------------------------------------- 0.a
def test_mass_spaces_and_decentering(cpu):
    V = np.zeros((40, 40, 40), np.float32)
    V[10:20, 12:30, 5:25] = 1.0  # z 10..19, y 12..29, x 5..24
    res = mass.run(ctx_for(cpu, V, ts=2.0))  # dilation ceil(2/2) = 1 voxel
    # extents after 1-voxel dilation: x 4..25, y 11..30, z 9..20
    L = [2.0 * 4, 2.0 * 11, 2.0 * 9]
    R = [2.0 * (39 - 25), 2.0 * (39 - 30), 2.0 * (39 - 20)]
    assert res.values["left_space_A"] == pytest.approx(L)
    assert res.values["right_space_A"] == pytest.approx(R)
    assert res.values["decentering_pct"] == pytest.approx([100 * abs(r - l) / 80.0 for l, r in zip(L, R)])
    assert res.vrs_compat["right_space_A"] == pytest.approx([r + 2.0 for r in R])
    # every left space and two right spaces are below 20 Å
    small = [w for w in res.warnings if "empty space" in w]
    assert len(small) == sum(s < 20 for s in L + R)


def test_center_of_mass_point_masses(cpu):
    V = np.zeros((20, 30, 40), np.float32)
    V[2, 3, 4] = 1.0
    V[10, 20, 30] = 3.0
    c = mass.center_of_mass(cpu, V)
    assert c == pytest.approx(((4 + 3 * 30) / 4, (3 + 3 * 20) / 4, (2 + 3 * 10) / 4))
    # two voxels do not define a molecule: the mask-based section is not measured
    res = run_section(mass.__name__, mass.SID, mass.TITLE, ctx_for(cpu, V, t=0.5))
    assert res.status == "not_measured" and "only 2 voxel" in res.reason
    # two 4³ blocks of those densities do: the molecule's centre weights them 1 : 3
    W = np.zeros((20, 30, 40), np.float32)
    W[2:6, 3:7, 4:8] = 1.0
    W[10:14, 20:24, 30:34] = 3.0
    res = mass.run(ctx_for(cpu, W, t=0.5))
    c = ((5.5 + 3 * 31.5) / 4, (4.5 + 3 * 21.5) / 4, (3.5 + 3 * 11.5) / 4)
    n = (40, 30, 20)
    assert res.values["center_of_mass_vox"] == pytest.approx(c)
    assert res.values["com_decentering_pct"] == pytest.approx([100 * abs(ci - ni / 2) / ni for ci, ni in zip(c, n)])


def test_threshold_too_high_not_measured(cpu):
    """An empty mask gives no number that means anything: 0.a–0.c are not measured (not counted)."""
    V, _ = cubes_map(cubes=(((17, 17, 17), 6),))
    for mod in (mass, mask, background):
        res = run_section(mod.__name__, mod.SID, mod.TITLE, ctx_for(cpu, V, t=5.0))
        assert res.status == "not_measured" and not res.evaluable
        assert "threshold too high" in res.reason


def test_center_of_mass_of_a_zero_mean_map(cpu):
    """A normalised map (densities sum to 0): the molecule's centre is the blob's, the raw one is undefined."""
    rng = np.random.default_rng(3)
    V = rng.normal(0, 0.1, (40, 40, 40)).astype(np.float32)
    V[8:16, 20:30, 24:34] += 3.0
    V -= V.mean()  # Σ V = 0 to float precision
    res = mass.run(ctx_for(cpu, V, t=1.5))
    # direct formula: positive density inside the (known) blob region dilated by 2 voxels
    core = np.zeros(V.shape, bool)
    core[8:16, 20:30, 24:34] = True
    hard = ndimage.binary_dilation(core, structure=ball(2))
    w = np.where(hard, np.maximum(V, 0), 0).astype(np.float64)
    zz, yy, xx = np.indices(V.shape)
    expect = [(w * a).sum() / w.sum() for a in (xx, yy, zz)]
    assert res.values["center_of_mass_vox"] == pytest.approx(expect, rel=1e-6)
    assert res.vrs_compat["center_of_mass_vox"] is None and "sum to about zero" in res.vrs_compat[
        "center_of_mass_note"]
    assert all(d < 100 for d in res.values["com_decentering_pct"])


def test_missing_threshold_not_measured(cpu):
    V, _ = cubes_map()
    for mod in (mass, mask, background):
        res = run_section(mod.__name__, "x", "x", MapContext(cpu, V, 1.0, None, None))
        assert res.status == "not_measured" and "threshold" in res.reason


# ---------------------------------------------------------------- 0.b
def test_components_n95_and_remaining(cpu):
    V, sizes = cubes_map()  # 216, 27, 8 voxels
    res = mask.run(ctx_for(cpu, V, ts=1.0))
    v = res.values
    assert v["n_components"] == 3 and v["raw_voxels"] == 251
    assert v["raw_volume_A3"] == pytest.approx(251.0)
    assert v["n95"] == 2  # 216/251 = 86 %, + 27 → 97 %
    assert v["largest_voxels"] == [216, 27]
    assert (v["remaining_count"], v["remaining_mean_voxels"], v["remaining_max_voxels"]) == (1, 8.0, 8)
    assert v["remaining_mean_volume_A3"] == pytest.approx(8.0)
    assert {k: res.vrs_compat[k] for k in ("remaining_mean_volume_A3", "remaining_max_voxels")} == {
        "remaining_mean_volume_A3": 1.0, "remaining_max_voxels": 27}
    # hard mask: 216 and 27 (≥ 10 % of 216) kept, 8 dropped; the reference keeps the 216 only
    assert v["hard_mask_components"] == 2 and v["hard_mask_component_voxels"] == [216, 27]
    assert v["overlap"] == pytest.approx(243 / 251)
    assert res.vrs_compat["overlap"] == pytest.approx(216 / 251)
    assert any("mean volume" in w for w in res.warnings)  # 8 Å³ > 5 Å³
    assert not any("overlap" in w or "constructed" in w for w in res.warnings)


def test_many_components_warn(cpu):
    V = np.zeros((40, 40, 40), np.float32)
    for i in range(10):
        V[2 + 4 * (i % 5):4 + 4 * (i % 5), 5 + 20 * (i // 5):7 + 20 * (i // 5), 10:12] = 1.0
    res = mask.run(ctx_for(cpu, V, ts=1.0))
    assert res.values["n_components"] == 10 and res.values["n95"] == 10
    assert any("10 components" in w for w in res.warnings)
    # ten equal components: the hard mask keeps them all; the reference's (largest only) holds 1/10
    assert res.values["hard_mask_components"] == 10 and res.values["overlap"] == pytest.approx(1.0)
    assert res.vrs_compat["overlap"] == pytest.approx(0.1)
    assert not any("holds only" in w for w in res.warnings)


def test_mass_table_direct(cpu):
    V = np.random.default_rng(3).gamma(2.0, 1.0, size=(30, 30, 30)).astype(np.float32)
    ts = 1.3
    mt = mask.mass_table(cpu, V, ts, float(V.max()))
    step = V.max() / 25
    assert len(mt["mass_thresholds"]) == 24
    for k, (g, w, kda, aa) in enumerate(zip(*(mt[key] for key in
                                              ("mass_thresholds", "mass_voxels", "mass_kda", "mass_residues")))):
        assert g == pytest.approx(step * (k + 1))
        direct = int((V > g).sum())
        assert w == direct
        assert kda == pytest.approx(direct * ts ** 3 / 1207.0)
        assert aa == pytest.approx(direct * ts ** 3 / (110 * 1.207))


# ---------------------------------------------------------------- 0.c
def test_background_planted_outliers(cpu):
    rng = np.random.default_rng(7)
    shape = (48, 48, 48)
    noise = rng.normal(0.2, 1.0, size=shape)
    while (bad := np.abs(noise - 0.2) > 3).any():  # truncated: no natural 5σ voxels
        noise[bad] = rng.normal(0.2, 1.0, size=int(bad.sum()))
    V = noise.astype(np.float32)
    V[18:30, 18:30, 18:30] = 10.0  # the molecule
    corners = [(z, y, x) for z in (1, 2, 3, 44, 45) for y in (1, 2, 45, 46) for x in (2, 3, 44, 45)]
    for i, p in enumerate(corners):
        V[p] = 40.0 if i % 2 else -40.0
    res = background.run(ctx_for(cpu, V, t=5.0))
    cube = np.zeros(shape, bool)
    cube[18:30, 18:30, 18:30] = True  # the largest component; dilated by ceil(2 Å / 1 Å) = 2 voxels
    hard = ndimage.binary_dilation(cube, structure=ball(2))
    bg = V[~hard].astype(np.float64)
    tt = stats.ttest_1samp(bg, 0.0)
    v = res.values
    assert v["background_voxels"] == bg.size
    assert v["mean"] == pytest.approx(bg.mean(), rel=1e-9)
    assert v["std"] == pytest.approx(bg.std(), rel=1e-9)
    assert v["t_statistic"] == pytest.approx(tt.statistic, rel=1e-6)
    assert v["p_value"] == pytest.approx(tt.pvalue, abs=1e-12)
    assert v["fraction_beyond_5sigma"] == pytest.approx(len(corners) / bg.size)
    assert v["gaussian_fraction"] == pytest.approx(2 * stats.norm.cdf(-5), rel=1e-9)
    assert v["gaussian_fraction"] == pytest.approx(5.733e-7, rel=1e-3)
    assert v["outlier_ratio"] > 20 and len(res.warnings) == 2  # mean 0.2 is significant too


def test_background_clean_noise_is_ok(cpu):
    rng = np.random.default_rng(11)
    V = rng.normal(0.0, 1.0, size=(48, 48, 48)).astype(np.float32)
    V[18:30, 18:30, 18:30] = 10.0
    res = run_section(background.__name__, "0.c", "Background", ctx_for(cpu, V, t=5.0))
    assert res.status == "ok", res.warnings


# ---------------------------------------------------------------- real map, direct formulas
def test_real_map_5168_direct(cpu, data_dir):
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    V = inp.data
    ctx = MapContext(cpu, V, inp.voxel_size, 10.0, 6.6)
    b = mask.run(ctx).values
    raw = V >= 10
    lab, n = ndimage.label(raw, structure=np.ones((3, 3, 3)))
    assert b["raw_voxels"] == int(raw.sum()) and b["n_components"] == n
    assert b["mass_voxels"][0] == int((V > V.max() / 25).sum())
    a_res = mass.run(ctx)
    a = a_res.values
    # the filament runs along Z through the whole box: no space along Z
    assert a["left_space_A"][2] == 0 and a["right_space_A"][2] == 0
    sizes = np.bincount(lab.ravel())[1:]
    major = np.isin(lab, np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1)
    hard = ndimage.binary_dilation(major, structure=ball(math.ceil(2 / inp.voxel_size)))
    # centre of mass of the molecule: positive density inside the hard mask; the reference's: the whole map
    w = np.where(hard, np.maximum(V, 0), 0).astype(np.float64)
    assert a["center_of_mass_vox"][0] == pytest.approx((w.sum(axis=(0, 1)) * np.arange(100)).sum() / w.sum(),
                                                       rel=1e-9)
    w = V.astype(np.float64)
    com_x = (w.sum(axis=(0, 1)) * np.arange(100)).sum() / w.sum()
    assert a_res.vrs_compat["center_of_mass_vox"][0] == pytest.approx(com_x, rel=1e-9)
    xs = np.flatnonzero(hard.any(axis=(0, 1)))
    assert a["left_space_A"][0] == pytest.approx(xs[0] * inp.voxel_size)
    assert b["hard_mask_voxels"] == int(hard.sum())
