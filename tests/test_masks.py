"""Masks: ball, largest component, 2 Å dilation, soft mask, Fourier resampling — against direct formulas."""

import math

import numpy as np
import pytest
from scipy import ndimage

from gpuvalid import masks

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


def test_hard_mask_keeps_largest_component_then_dilates(cpu):
    V, sizes = cubes_map()
    hard = masks.hard_mask(cpu, V, 0.5, voxel_size=1.0)  # radius 2 voxels
    big = np.zeros(V.shape, bool)
    big[5:11, 5:11, 5:11] = True
    np.testing.assert_array_equal(hard, ndimage.binary_dilation(big, structure=masks.ball(2)))
    # the smaller cubes are gone
    assert not hard[25:28, 25:28, 25:28].any()


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


def test_resize_for_resolution(cpu):
    V = np.random.default_rng(0).normal(size=(100, 90, 80)).astype(np.float32)
    Vr, ts = masks.resize_for_resolution(cpu, V, 1.742, 6.6)
    expect = tuple(2 * math.floor(n * 1.742 / 3.3 / 2) for n in V.shape)
    assert Vr.shape == expect and all(s % 2 == 0 for s in Vr.shape)
    assert ts == pytest.approx(3.3, rel=0.03)
    # never upsample: R/2 below Ts only crops to an even box
    Vs, ts2 = masks.resize_for_resolution(cpu, V[:99], 1.742, 3.0)
    assert Vs.shape == (98, 90, 80) and ts2 == pytest.approx(1.742)
