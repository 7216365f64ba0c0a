"""Per-chain rigid-body refinement of the map-model reference (gpuvalid.models.mapmodel.refine_rigid_bodies)
on synthetic maps whose answer is known: a two-chain model whose map was simulated with one chain moved
by a known rotation and translation."""

import numpy as np
import pytest

from gpuvalid.models.mapmodel import (concatenate, model_density, refine_rigid_bodies, rotation_from_vector,
                                      rotation_z)
from gpuvalid.simulate.filters import lowpass
from gpuvalid.simulate.structure import Atoms

ROTVEC_DEG = np.array([3.0, -4.0, 2.0])      # |ω| = sqrt(29) = 5.385°
SHIFT_A = np.array([1.3, -0.8, 1.7])          # |t| = 2.28 Å: more than a voxel
TS, R = 1.2, 4.5
ORIGIN = np.array([-12.0, -12.0, -12.0])
SHAPE = (36, 38, 58)                          # z, y, x voxels: both chains plus ≥ 12 Å


def _chain(n, lo, size, chain, seed):
    xyz = np.asarray(lo, float) + np.random.default_rng(seed).uniform(0.0, 1.0, (n, 3)) * np.asarray(size)
    return Atoms(xyz, np.array(["C"] * n), np.full(n, 6.0), np.array(["CA"] * n),
                 np.array([f"{chain}|{i}|" for i in range(n)]), np.array(["ALA"] * n))


@pytest.fixture(scope="module")
def two_chains():
    """Chains A and B side by side (touching at x ≈ 20 Å); the truth has B turned by ROTVEC_DEG about its
    centroid and moved by SHIFT_A; the map is the truth's density low-passed to R."""
    a = _chain(500, (0, 0, 0), (20, 16, 14), "A", 1)
    b = _chain(500, (20.5, 0, 0), (20, 16, 14), "B", 2)
    rot = rotation_from_vector(ROTVEC_DEG)
    cb = b.xyz.mean(0)
    truth = concatenate([a, b.transformed(rot, cb - rot @ cb + SHIFT_A)])
    V = lowpass(model_density(truth, SHAPE, TS, ORIGIN), TS, R)
    return concatenate([a, b]), truth, V


def test_rotation_from_vector_is_the_closed_form_rotation():
    """Rotation vector along z = rotation about z (independent closed form); 90° about x sends y to z."""
    np.testing.assert_allclose(rotation_from_vector([0.0, 0.0, 17.0]), rotation_z(17.0), atol=1e-12)
    np.testing.assert_allclose(rotation_from_vector([90.0, 0.0, 0.0]) @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                               atol=1e-12)


def test_refinement_recovers_a_displaced_chain(two_chains):
    """Noiseless map: the optimum is the truth, so B comes back to within 0.05 Å RMS (1/24 of a voxel;
    the remainder is the cubic-spline sampling of the map) and A, already in place, stays within 0.05 Å.
    The reported motion of B is the true one: angle |ω| within 0.1°, centroid shift |t| within 0.05 Å."""
    model, truth, V = two_chains
    moved, fits = refine_rigid_bodies(V, model, TS, ORIGIN, R)
    d = np.linalg.norm(moved.xyz - truth.xyz, axis=1)
    n = len(model) // 2
    assert np.sqrt((d[:n] ** 2).mean()) < 0.05 and np.sqrt((d[n:] ** 2).mean()) < 0.05, d
    fa, fb = {f.label: f for f in fits}["A"], {f.label: f for f in fits}["B"]
    assert fa.rms_move_A < 0.05 and fa.angle_deg < 0.1
    assert abs(fb.angle_deg - np.linalg.norm(ROTVEC_DEG)) < 0.1
    assert abs(fb.centroid_shift_A - np.linalg.norm(SHIFT_A)) < 0.05
    assert fb.cc_before < 0.9 < 0.99 < fb.cc_after and not fb.at_bound
    np.testing.assert_allclose(fb.apply(model.xyz[n:]), moved.xyz[n:], atol=1e-6)


@pytest.mark.slow
def test_refinement_with_noise_is_sub_voxel(two_chains):
    """White noise of half the map's σ: the displaced chain still comes back to within half a voxel RMS,
    and the chain in place moves less than half a voxel (measured here: 0.09 and 0.15 Å)."""
    model, truth, V = two_chains
    Vn = V + 0.5 * V.std() * np.random.default_rng(7).normal(size=V.shape).astype(np.float32)
    moved, fits = refine_rigid_bodies(Vn, model, TS, ORIGIN, R)
    d = np.linalg.norm(moved.xyz - truth.xyz, axis=1)
    n = len(model) // 2
    assert np.sqrt((d[:n] ** 2).mean()) < 0.5 * TS and np.sqrt((d[n:] ** 2).mean()) < 0.5 * TS
    assert all(f.cc_after >= f.cc_before for f in fits)


def test_one_body_for_the_whole_model(two_chains):
    """``groups`` all equal: the model moves as one body; with the map of the model itself it stays put."""
    model, _truth, _V = two_chains
    V = lowpass(model_density(model, SHAPE, TS, ORIGIN), TS, R)
    moved, fits = refine_rigid_bodies(V, model, TS, ORIGIN, R, groups=np.zeros(len(model), int), cycles=1)
    assert len(fits) == 1 and fits[0].n_atoms == len(model)
    assert fits[0].rms_move_A < 0.05 and np.abs(moved.xyz - model.xyz).max() < 0.1
