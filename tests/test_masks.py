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


@pytest.mark.parametrize("corner", [False, True])
def test_dilation_of_a_compact_molecule_equals_the_whole_box_dilation(cpu, corner):
    # a blob far from the faces (the crop is a small part of the box) or touching two faces (the grown
    # crop is clipped there); the whole-box binary dilation with the ball is the reference
    rng = np.random.default_rng(2)
    m = np.zeros((40, 36, 44), dtype=bool)
    sl = (slice(0, 7), slice(29, 36), slice(20, 27)) if corner else (slice(15, 22), slice(12, 20), slice(18, 25))
    m[sl] = rng.random(m[sl].shape) > 0.6
    m[sl[0].start, sl[1].start, sl[2].start] = True
    for r in (1, 2, 3, 5):
        expect = ndimage.binary_dilation(m, structure=masks.ball(r))
        np.testing.assert_array_equal(masks.dilate(cpu, m, r), expect)
    empty = masks.dilate(cpu, np.zeros((9, 8, 7), dtype=bool), 2)
    assert empty.shape == (9, 8, 7) and empty.dtype == bool and not empty.any()


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


def test_components_labelled_in_the_bounding_box_equal_the_whole_box_labelling(cpu):
    # blobs of random sizes off-centre in a larger box: labelled directly over the whole box with scipy
    rng = np.random.default_rng(3)
    m = np.zeros((50, 46, 42), dtype=bool)
    m[8:30, 20:40, 5:25] = rng.random((22, 20, 20)) > 0.75
    lab, n = ndimage.label(m, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.10 * sizes.max()) + 1
    kept, got_sizes = masks.major_components(cpu, m)
    np.testing.assert_array_equal(kept, np.isin(lab, keep))
    np.testing.assert_array_equal(got_sizes, np.sort(sizes[keep - 1])[::-1])
    np.testing.assert_array_equal(masks.largest_component(cpu, m), lab == np.argmax(sizes) + 1)
    labels, n_box, box = masks.label26(cpu, m)
    assert n_box == n and labels.shape == m[box].shape
    assert [(sl.start, sl.stop) for sl in box] == [(int(i.min()), int(i.max()) + 1) for i in np.nonzero(m)]
    empty_labels, n0, box0 = masks.label26(cpu, np.zeros((4, 5, 6), dtype=bool))
    assert (empty_labels, n0, box0) == (None, 0, None)
    assert not masks.major_components(cpu, np.zeros((4, 5, 6), dtype=bool))[0].any()


def test_26_connectivity_counts_diagonal_neighbours(cpu):
    m = np.zeros((5, 5, 5), bool)
    m[1, 1, 1] = m[2, 2, 2] = True  # corner-touching
    _, n, _ = masks.label26(cpu, m)
    assert n == 1


@pytest.mark.parametrize("sigma", [1.0, 2.0, 2.6])
def test_soft_mask_equals_the_whole_box_gaussian(cpu, sigma):
    # a mask inside the box and one touching three faces: the whole box filtered directly is the reference
    for sl in ((slice(14, 30), slice(9, 20), slice(22, 33)), (slice(0, 12), slice(30, 40), slice(0, 9))):
        hard = np.zeros((44, 40, 48), dtype=bool)
        hard[sl] = True
        expect = np.clip(ndimage.gaussian_filter(hard.astype(np.float32), sigma=sigma, mode="constant"), 0, 1)
        got = masks.soft_mask(cpu, hard, sigma)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expect)
        # the caller's bounding box (the context's, shared with 0.a) gives the same mask
        np.testing.assert_array_equal(masks.soft_mask(cpu, hard, sigma, box=sl), expect)
    assert not masks.soft_mask(cpu, np.zeros((6, 6, 6), dtype=bool)).any()


@pytest.mark.parametrize("ts", [1.0, 1.742])
def test_distance_to_mask_is_the_whole_box_distance_up_to_its_reach(cpu, ts):
    # the whole-box Euclidean distance transform is the reference; beyond the reach only "farther" matters
    rng = np.random.default_rng(4)
    m = np.zeros((48, 40, 44), dtype=bool)
    m[6:20, 22:34, 10:30] = rng.random((14, 12, 20)) > 0.8
    full = ndimage.distance_transform_edt(~m, sampling=ts)
    reach = 9.0
    got = masks.distance_to_mask(cpu, m, ts, reach)
    near = full <= reach
    np.testing.assert_allclose(got[near], full[near], rtol=1e-12)
    assert np.all(got[~near] > reach)
    for margin in (reach, reach / 2, reach / 4):
        np.testing.assert_array_equal(got >= margin, full >= margin)
    assert np.isinf(masks.distance_to_mask(cpu, np.zeros((5, 5, 5), dtype=bool), ts, reach)).all()


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
