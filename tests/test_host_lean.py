"""The CPU path's memory-lean forms give the whole-grid forms' numbers.

- ``Backend.irfftn`` with ``overwrite_x`` on the CPU (complex passes in place, no SciPy temporary) against
  ``scipy.fft.irfftn``: to 1e-6 of the largest value (bit for bit with the SciPy of this project's tests).
- The spiral engine's CPU path (half spectrum, per-slab factors, one packed spectrum) against a slow direct
  computation, and the memory it traces: no whole-grid factor arrays (at most 24 B per voxel; the former form
  took 44).
- 0.e's network by slabs (``apply_fcn_streamed``) against the whole-grid network input and tiles, bit for
  bit, holding less than one working-grid map besides the map it overwrites.
"""

import tracemalloc

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from gpuvalid.backend import get_backend
from gpuvalid.models import preprocess as P
from gpuvalid.spiral import SpiralEngine

from .test_spiral import direct_amplitude


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("s", [(16, 16, 16), (15, 18, 21), (12, 17, 10), (9, 14)])
def test_cpu_irfftn_in_place_equals_scipy(dtype, s):
    rng = np.random.default_rng(sum(s))
    half = tuple(s[:-1]) + (s[-1] // 2 + 1,)
    X = (rng.normal(size=half) + 1j * rng.normal(size=half)).astype(dtype)
    want = scipy.fft.irfftn(X.copy(), s=s)
    got = get_backend("cpu").irfftn(X, s=s, overwrite_x=True)
    assert got.shape == tuple(s) and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_cpu_irfftn_without_overwrite_keeps_its_input():
    X = np.fft.rfftn(np.random.default_rng(0).normal(size=(8, 10, 12))).astype(np.complex64)
    keep = X.copy()
    get_backend("cpu").irfftn(X, s=(8, 10, 12))
    np.testing.assert_array_equal(X, keep)


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 18, 21), (1, 12, 9)])
def test_spiral_cpu_half_spectrum_equals_direct(shape):
    V = np.random.default_rng(5).standard_normal(shape)
    eng = SpiralEngine(get_backend("cpu"), V, 1.3)
    w = 4.8 / (max(shape) * 1.3)
    for f0 in (0.07, 0.25, 0.38):
        np.testing.assert_allclose(eng.amplitude(f0, w), direct_amplitude(V, 1.3, f0, w), rtol=1e-5, atol=1e-12)


def test_spiral_cpu_holds_no_whole_grid_factors():
    """Traced peak of the engine and two shells at 128³ float32: the half spectrum (4 B), one packed spectrum
    (8 B), one amplitude (4 B) and the slab scratch (4 B at this size): ≤ 24 B per voxel (44 with whole-grid
    factors and two packed spectra)."""
    V = np.random.default_rng(0).standard_normal((128, 128, 128)).astype(np.float32)
    tracemalloc.start()
    try:
        eng = SpiralEngine(get_backend("cpu"), V, 1.0)
        for _, A in eng.amplitudes([0.1, 0.3], 0.02):
            del A
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / V.size <= 24


def test_local_rms_by_rows_and_its_regulariser_equal_the_whole_map():
    rng = np.random.default_rng(2)
    V = scipy.ndimage.gaussian_filter(rng.normal(size=(70, 23, 31)), 1.0).astype(np.float32) + 0.05
    assert P.local_rms_eps(V, chunk=999) == pytest.approx(1e-6 * float(np.mean(V * V)) + 1e-30, rel=1e-6)
    whole = P.locres_input(V)
    eps = P.local_rms_eps(V)
    for lo, hi in [(0, 70), (0, 5), (3, 40), (30, 31), (50, 70), (69, 70)]:
        np.testing.assert_array_equal(P.locres_input_rows(V, lo, hi, eps), whole[lo:hi])


torch = pytest.importorskip("torch")
from gpuvalid.models import infer, nets  # noqa: E402


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(1)
    n = nets.build("locres", (1, 4, 4, 4, 4, 4, 4))
    with torch.no_grad():
        for prm in n.parameters():
            prm.mul_(3.0)
    return n.eval()


def _grid(shape, seed=0):
    V = np.random.default_rng(seed).normal(size=shape)
    return scipy.ndimage.gaussian_filter(V, 1.5).astype(np.float32) + 0.1


def _bytes_for(rows, shape, net):
    """``slab_bytes`` that gives ``rows`` output rows per slab (stream_rows' own accounting)."""
    r = net.receptive_field // 2
    plane = 4 * shape[1] * shape[2]
    return plane * (4 * (r + P.LOCAL_RMS_RADIUS) + 2 * r) + 5 * plane * rows


@pytest.mark.parametrize("shape,rows", [((150, 40, 44), 48), ((150, 40, 44), 96), ((197, 30, 60), 48),
                                        ((49, 50, 51), 48), ((20, 30, 30), 48), ((150, 40, 44), 4800)])
def test_streamed_network_equals_the_whole_grid(net, shape, rows):
    V1 = _grid(shape)
    where = np.zeros(shape, bool)
    where[5:40, 10:30, 2:20] = True
    where[-3:, :3, :3] = True                        # the last slab, far from the rest (slabs without tiles between)
    want = infer.apply_fcn(net, P.locres_input(V1), where, "cpu")
    sb = _bytes_for(rows, shape, net)
    assert infer.stream_rows(shape, infer.TILE, net.receptive_field // 2, sb) == rows
    got = infer.apply_fcn_streamed(net, V1, where, "cpu", slab_bytes=sb)
    assert got is V1
    np.testing.assert_array_equal(got, want)          # NaN where no tile ran, in both
    assert np.isfinite(want).any() and (np.isnan(want).any() or shape[0] <= 2 * infer.TILE)


def test_streamed_slabs_are_whole_tile_rows_and_reach_past_the_halo():
    for shape in [(500, 64, 64), (500, 2000, 2000)]:
        rows = infer.stream_rows(shape, 48, 6)
        assert rows % 48 == 0 and rows >= 6 + P.LOCAL_RMS_RADIUS
    assert infer.stream_rows((500, 2000, 2000), 48, 6) == 48     # 16 MB planes: one tile row
    assert infer.stream_rows((500, 64, 64), 8, 30) >= 30 + P.LOCAL_RMS_RADIUS


def test_streamed_network_holds_less_than_one_more_grid(net):
    """Traced peak besides V1 (480 × 96 × 96, 17.7 MB) with one-tile-row slabs: about one slab's accounting
    (12 MB), below one working-grid map; the whole-grid input and its padded copy take two."""
    shape = (480, 96, 96)
    V1 = _grid(shape, 3)
    sb = _bytes_for(48, shape, net)
    tracemalloc.start()
    try:
        infer.apply_fcn_streamed(net, V1, None, "cpu", slab_bytes=sb)
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        infer.apply_fcn(net, P.locres_input(_grid(shape, 3)), None, "cpu")
        whole = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert streamed < 1.25 * sb
    assert streamed < V1.nbytes < whole / 2
