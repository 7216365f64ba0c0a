"""Masks: ball, largest component, 2 Å dilation, soft mask, Fourier resampling — against direct formulas."""

import math

import numpy as np
import pytest
from scipy import ndimage

from gpuvalid import masks

from . import spec_reference
from .helpers import cubes_map


def test_ball_is_euclidean():
    for r in (1, 2, 3, 5):
        b = masks.ball(r)
        direct = sum(1 for z in range(-r, r + 1) for y in range(-r, r + 1) for x in range(-r, r + 1)
                     if x * x + y * y + z * z <= r * r)
        assert b.sum() == direct and b.shape == (2 * r + 1,) * 3


def test_dilation_radius():
    assert masks.dilation_radius_vox(1.0) == 2
    assert masks.dilation_radius_vox(1.742) == 2  # ceil(1.148)
    assert masks.dilation_radius_vox(0.5) == 4
    assert masks.dilation_radius_vox(2.0) == 1
    assert masks.dilation_radius_vox(11.4) == 1


def test_dilation_matches_binary_dilation_with_ball(cpu):
    rng = np.random.default_rng(1)
    m = rng.random((30, 28, 26)) > 0.995
    for r in (1, 2, 3):
        expect = ndimage.binary_dilation(m, structure=masks.ball(r))
        np.testing.assert_array_equal(masks.dilate(cpu, m, r), expect)


def test_hard_mask_keeps_components_of_at_least_10pct_then_dilates(cpu):
    # cubes of 216, 27 and 8 voxels: 27/216 = 12.5 % is kept, 8/216 = 3.7 % is not
    V, sizes = cubes_map()
    hard, kept = masks.hard_mask(cpu, V, 0.5, voxel_size=1.0, with_sizes=True)  # radius 2 voxels
    core = np.zeros(V.shape, bool)
    core[5:11, 5:11, 5:11] = True
    core[25:28, 25:28, 25:28] = True
    np.testing.assert_array_equal(hard, ndimage.binary_dilation(core, structure=masks.ball(2)))
    assert list(kept) == [216, 27]
    assert not hard[5:7, 30:32, 30:32].any()  # the 8-voxel cube is gone


def test_largest_only_mask_is_the_reference_quirk(cpu):
    V, _ = cubes_map()
    hard = masks.hard_mask_largest_only(cpu, V, 0.5, voxel_size=1.0)
    big = np.zeros(V.shape, bool)
    big[5:11, 5:11, 5:11] = True
    np.testing.assert_array_equal(hard, ndimage.binary_dilation(big, structure=masks.ball(2)))


def test_symmetric_halves_both_kept(cpu):
    """Two equal blobs (a molecule that splits at its contour) are both in the hard mask."""
    V = np.zeros((40, 40, 40), np.float32)
    V[10:16, 10:20, 10:20] = 1.0
    V[24:30, 10:20, 10:20] = 1.0
    hard = masks.hard_mask(cpu, V, 0.5, 1.0)
    assert hard[12, 15, 15] and hard[27, 15, 15]


def test_26_connectivity_counts_diagonal_neighbours(cpu):
    m = np.zeros((5, 5, 5), bool)
    m[1, 1, 1] = m[2, 2, 2] = True  # corner-touching
    _, n = masks.label26(cpu, m)
    assert n == 1


def test_soft_mask_range(cpu):
    hard = np.zeros((48, 48, 48), bool)
    hard[10:38, 10:38, 10:38] = True
    soft = masks.soft_mask(cpu, hard)
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    assert soft[24, 24, 24] == pytest.approx(1.0, abs=1e-4)  # 14 voxels = 7σ from the edge
    assert soft[24, 24, 2] < 1e-3
    # across a planar edge a blurred step is 1/2 half-way between the last inside and first outside voxel
    assert 0.5 * (soft[24, 24, 37] + soft[24, 24, 38]) == pytest.approx(0.5, abs=0.01)


def test_fourier_resample_band_limited_cosine(cpu):
    n, m, k = 64, 40, 3
    x = np.arange(n)
    V = np.broadcast_to(np.cos(2 * np.pi * k * x / n)[None, None, :], (n, n, n)).astype(np.float32) + 2.0
    out = masks.fourier_resample(cpu, V, (m, m, m))
    xm = np.arange(m)
    expect = np.cos(2 * np.pi * k * xm / m) + 2.0
    np.testing.assert_allclose(out[5, 7, :], expect, atol=1e-4)


@pytest.mark.parametrize("shape, ts, R", [((100, 90, 80), 1.742, 6.6), ((100, 100, 100), 2.02, 7.0),
                                          ((35, 52, 47), 1.34, 3.2), ((70, 70, 70), 2.64, 5.8)])
def test_resize_for_resolution(cpu, shape, ts, R):
    V = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    Vr, ts_eff = masks.resize_for_resolution(cpu, V, ts, R)
    expect, ts_mean = spec_reference.resize(V, ts, R)  # the spec written out independently
    ts_axes = [n * ts / int(math.floor(n * ts / (R / 2) + 0.5)) for n in shape]  # N·Ts/M per axis
    assert Vr.shape == expect.shape and all(s % 2 == 0 for s in Vr.shape)
    np.testing.assert_allclose(Vr, expect, atol=2e-4 * np.abs(expect).max())
    # the voxel is within half a resampled voxel of R/2 on every axis (Nyquist stays at about 1/R)
    for n, t in zip(shape, ts_axes):
        assert abs(t - R / 2) <= 0.5 * t / (n * ts / t) + 1e-9
    assert ts_eff == pytest.approx(ts_mean, rel=1e-9)


def test_resize_never_upsamples(cpu):
    V = np.random.default_rng(0).normal(size=(99, 90, 80)).astype(np.float32)
    Vs, ts2 = masks.resize_for_resolution(cpu, V, 1.742, 3.0)
    assert Vs.shape == (98, 90, 80) and ts2 == pytest.approx(1.742)
