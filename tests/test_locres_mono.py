"""Monogenic local resolution: it says "could not be measured" (with the reason) when its noise reference
is degenerate, instead of returning the grid limit or its cap."""

import numpy as np
import pytest
import scipy.ndimage

from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.errors import NotMeasurable
from gpuvalid.monores import LOW_A, check_noise_reference, monogenic_local_resolution
from gpuvalid.runner import run_section
from gpuvalid.simulate.maps import simulate_uniform

from .test_locres_hand import _chain


@pytest.fixture(scope="module")
def m4():
    return simulate_uniform(_chain(), np.random.default_rng(5), 4.0, crop_radius_A=None, noise_k=0.3,
                            with_helix=False, pad_A=20.0)


def _ctx(V, m, R=4.0):
    return MapContext(get_backend("cpu"), V, m.voxel_size, m.threshold, R)


def test_noisy_background_is_measured(m4):
    ctx = _ctx(m4.V, m4)
    out, info = monogenic_local_resolution(ctx.be, ctx.V, ctx.voxel_size, ctx.hard_mask, return_info=True,
                                           threshold=m4.threshold)
    inside = out[ctx.be.to_host(ctx.hard_mask)]
    assert np.isfinite(inside).all()
    assert info["flat_fraction"] < 0.01 and info["at_cap_fraction"] < 0.5 and info["at_grid_limit_fraction"] < 0.5


def test_zeroed_background_is_not_measured(m4):
    """A deposit masked outside the molecule (background exactly 0): no noise to measure."""
    keep = scipy.ndimage.binary_dilation(m4.mask, iterations=3)
    V = np.where(keep, m4.V, 0.0).astype(np.float32)
    ctx = _ctx(V, m4)
    with pytest.raises(NotMeasurable, match="degenerate.*masked or zeroed"):
        monogenic_local_resolution(ctx.be, ctx.V, ctx.voxel_size, ctx.hard_mask)
    r = run_section("gpuvalid.analyses.locres", "0.e", "Local resolution", ctx)
    assert "monogenic_percentiles_A" not in r.values
    if r.evaluable:   # the network ran: the cross-check says why it is missing
        assert "degenerate" in r.values["monogenic_reason"]
        assert any("could not be measured" in b for b in r.blocks)
    else:
        assert r.status == "not_measured" and "degenerate" in r.reason


def test_constant_background_is_not_measured(m4):
    """A constant offset instead of zero is just as flat."""
    keep = scipy.ndimage.binary_dilation(m4.mask, iterations=3)
    V = np.where(keep, m4.V, -0.25).astype(np.float32)
    with pytest.raises(NotMeasurable, match="same value"):
        check_noise_reference(get_backend("cpu"), V, np.flatnonzero(~keep), None)


def test_too_few_background_voxels(m4):
    ctx = _ctx(m4.V, m4)
    full = np.ones(m4.V.shape, bool)
    full[0, 0, :50] = False
    with pytest.raises(NotMeasurable, match="too few"):
        monogenic_local_resolution(ctx.be, ctx.V, ctx.voxel_size, full)


@pytest.mark.parametrize("frac, bad", [(0.01, False), (0.03, False), (0.08, True), (0.3, True)])
def test_molecule_in_the_reference_is_not_noise(frac, bad):
    """When ≥ 5 % of the reference voxels are above the contour (molecule left out of the mask), the 0.95
    quantile of the reference is the molecule's amplitude, not the noise's."""
    rng = np.random.default_rng(0)
    V = rng.normal(size=(40, 40, 40)).astype(np.float32)
    idx = np.arange(V.size)
    k = int(frac * V.size)
    V.reshape(-1)[rng.choice(V.size, k, replace=False)] = 10.0 + rng.uniform(size=k)
    be = get_backend("cpu")
    if bad:
        with pytest.raises(NotMeasurable, match="above the contour"):
            check_noise_reference(be, V, idx, threshold=5.0)
    else:
        info = check_noise_reference(be, V, idx, threshold=5.0)
        assert info["above_contour_fraction"] == pytest.approx(frac, abs=1e-3)


def test_cap_dominated_result_is_not_measured(m4):
    """Noise far above the signal: nothing rises above the noise level, every voxel would sit at the cap."""
    rng = np.random.default_rng(1)
    V = (m4.V + 50.0 * float(m4.V.std()) * rng.normal(size=m4.V.shape)).astype(np.float32)
    ctx = _ctx(V, m4)
    with pytest.raises(NotMeasurable, match=f"{LOW_A:g} Å cap"):
        monogenic_local_resolution(ctx.be, ctx.V, ctx.voxel_size, m4.mask)


def _direct_two_failure(passes: np.ndarray, ds: list, cap: float) -> np.ndarray:
    """The two-failure rule voxel by voxel: the resolution of the last pass before two consecutive misses."""
    out = np.full(passes.shape[1], cap, dtype=np.float32)
    for v in range(passes.shape[1]):
        misses = 0
        for k, d in enumerate(ds):
            if misses == 2:
                break
            if passes[k, v]:
                out[v], misses = np.float32(d), 0
            else:
                misses += 1
    return out


@pytest.mark.parametrize("n_steps", [20, 63, 64, 90])
def test_two_failure_sweep_follows_the_rule_voxel_by_voxel(n_steps):
    """The packed sweep state (one byte per voxel up to 63 steps, two beyond) gives the values, alive and passed
    flags of a direct per-voxel loop over the rule, on random pass patterns (mostly passing, so that many voxels
    live through every step and the widening at step 64 carries live voxels and their misses)."""
    from gpuvalid.monores import TwoFailureSweep

    rng = np.random.default_rng(n_steps)
    n = 400
    passes = rng.random((n_steps, n)) < 0.85
    passes[:, :40] = True                                   # 40 voxels pass every step
    passes[:, 40:60] = False                                # 20 never pass: the cap
    ds = [30.0 - 0.25 * k for k in range(n_steps)]
    sw = TwoFailureSweep(np, n, 31.0)
    for k, d in enumerate(ds):
        sw.update(passes[k], d)
    want = _direct_two_failure(passes, ds, 31.0)
    np.testing.assert_array_equal(sw.value, want)
    np.testing.assert_array_equal(sw.passed, want < 31.0)
    assert sw.state.dtype == (np.uint8 if n_steps <= 63 else np.uint16)
    alive = np.ones(n, bool)                               # alive: no two consecutive misses so far
    for v in range(n):
        run = 0
        for k in range(n_steps):
            run = 0 if passes[k, v] else run + 1
            if run == 2:
                alive[v] = False
                break
    np.testing.assert_array_equal(sw.alive, alive)
    last = [ds.index(float(x)) if x < 31.0 else -1 for x in want]   # the steps' resolutions are exact in float32
    np.testing.assert_array_equal(sw.step, last)
