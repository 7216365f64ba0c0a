"""Sections 0.a, 0.b, 0.c on synthetic maps with known answers and on a real map (direct formulas)."""

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from gpuvalid.analyses import background, mask, mass
from gpuvalid.context import MapContext
from gpuvalid.masks import ball
from gpuvalid.io import load_map_input
from gpuvalid.pipeline import run_section

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
    res = mass.run(ctx_for(cpu, V, t=0.5))
    n = (40, 30, 20)
    assert res.values["com_decentering_pct"] == pytest.approx([100 * abs(ci - ni / 2) / ni for ci, ni in zip(c, n)])


def test_threshold_too_high_is_one_warning(cpu):
    V, _ = cubes_map(cubes=(((17, 17, 17), 6),))  # centred: no centre-of-mass warning
    for mod in (mass, mask):
        res = run_section(mod.__name__, mod.SID, mod.TITLE, ctx_for(cpu, V, t=5.0))
        assert res.status == "warnings" and res.evaluable
        assert len(res.warnings) == 1 and "threshold too high" in res.warnings[0]
    res = run_section(background.__name__, "0.c", "Background", ctx_for(cpu, V, t=5.0))
    assert res.status == "not_measured" and "threshold too high" in res.reason


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
    assert res.vrs_compat == {"remaining_mean_volume_A3": 1.0, "remaining_max_voxels": 27}
    assert v["overlap"] == pytest.approx(216 / 251)
    assert any("mean volume" in w for w in res.warnings)  # 8 Å³ > 5 Å³
    assert not any("overlap" in w or "constructed" in w for w in res.warnings)


def test_many_components_warn(cpu):
    V = np.zeros((40, 40, 40), np.float32)
    for i in range(10):
        V[2 + 4 * (i % 5):4 + 4 * (i % 5), 5 + 20 * (i // 5):7 + 20 * (i // 5), 10:12] = 1.0
    res = mask.run(ctx_for(cpu, V, ts=1.0))
    assert res.values["n_components"] == 10 and res.values["n95"] == 10
    assert any("10 components" in w for w in res.warnings)
    assert any("holds only" in w for w in res.warnings)  # hard mask keeps 1/10 of the raw mask


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
    a = mass.run(ctx).values
    w = V.astype(np.float64)
    com_x = (w.sum(axis=(0, 1)) * np.arange(100)).sum() / w.sum()
    assert a["center_of_mass_vox"][0] == pytest.approx(com_x, rel=1e-9)
    # the filament runs along Z through the whole box: no space along Z
    assert a["left_space_A"][2] == 0 and a["right_space_A"][2] == 0
    largest = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    hard = ndimage.binary_dilation(largest, structure=ball(math.ceil(2 / inp.voxel_size)))
    xs = np.flatnonzero(hard.any(axis=(0, 1)))
    assert a["left_space_A"][0] == pytest.approx(xs[0] * inp.voxel_size)
    assert b["hard_mask_voxels"] == int(hard.sum())
