"""gpuvalid.resample.fourier_resample against direct computations written here in float64: the DFT as
explicit sums ``F(k) = Σ_x V(x)·exp(−2πi k·x/n)``, the kept frequencies evaluated on the new grid as explicit
sums, and the textbook symmetric trigonometric interpolant (half the Nyquist coefficient at ±n/2), for even
and odd source and target sizes, up- and downsampling, and non-cubic boxes; plus mean preservation and
band-limited waves.  Both former implementations (masks.fourier_resample, models.preprocess.resample) now
call this one function."""

import itertools

import numpy as np
import pytest

from gpuvalid import masks
from gpuvalid.backend import get_backend
from gpuvalid.models import preprocess
from gpuvalid.resample import (FFT_EDGE_TOL, FFT_PRIME_PREFERENCE, fft_length, fourier_resample, grid_shape,
                               grid_voxel_sizes, largest_prime_factor)


@pytest.fixture(scope="module")
def be():
    return get_backend("cpu")


def _smooth_random(shape, seed=0):
    """A random real map with a non-zero mean (every frequency, Nyquist included, carries power)."""
    return (np.random.default_rng(seed).normal(size=shape) + 0.7).astype(np.float32)


def _freqs(n: int) -> np.ndarray:
    """Integer frequencies −⌊n/2⌋ … n − ⌊n/2⌋ − 1 (cycles per box)."""
    return np.arange(-(n // 2), n - n // 2)


def _dft_matrix(n: int, k: np.ndarray) -> np.ndarray:
    """``D[k, x] = exp(−2πi k·x/n)``: the DFT of length ``n`` at the frequencies ``k`` as a matrix of sums."""
    return np.exp(-2j * np.pi * np.outer(k, np.arange(n)) / n)


def _kept(n: int, m: int) -> np.ndarray:
    """The κ = min(n, m) frequencies −⌊κ/2⌋ … κ − ⌊κ/2⌋ − 1 a spectrum crop/pad about 0 keeps."""
    return _freqs(min(n, m))


def direct_resample(V: np.ndarray, new_shape: tuple) -> np.ndarray:
    """``V'(j) = (1/∏n)·Re Σ_{k kept} F(k)·exp(2πi Σ k·j/m)`` with ``F`` the DFT of ``V`` written as explicit
    sums (float64): the band-limited map evaluated at the new voxel centres ``j·n/m``."""
    V = np.asarray(V, dtype=np.float64)
    F = V.astype(np.complex128)
    for axis, (n, m) in enumerate(zip(V.shape, new_shape)):           # F(k) = Σ_x V(x) e^{−2πi k x / n}
        F = np.moveaxis(np.tensordot(_dft_matrix(n, _kept(n, m)), F, axes=([1], [axis])), 0, axis)
    out = F
    for axis, (n, m) in enumerate(zip(V.shape, new_shape)):           # Σ_k F(k) e^{+2πi k j / m}
        E = np.exp(2j * np.pi * np.outer(np.arange(m), _kept(n, m)) / m)
        out = np.moveaxis(np.tensordot(E, out, axes=([1], [axis])), 0, axis)
    return out.real / np.prod(V.shape)


def symmetric_interpolant_1d(v: np.ndarray, x: np.ndarray, m: int | None = None) -> np.ndarray:
    """Textbook trigonometric interpolation of the ``n`` samples ``v`` at positions ``x`` (in source voxels),
    band-limited to ``|k| ≤ κ/2`` with ``κ = min(n, m)`` (``m`` omitted: κ = n): every ``|k| < κ/2`` with
    weight 1 and, for an even κ, the two coefficients ``F(±κ/2)`` with weight 1/2 each (for κ = n they are
    the same aliased sample of the spectrum).  The DFT is an explicit sum."""
    n = len(v)
    kappa = n if m is None else min(n, m)
    k = np.arange(-(kappa // 2), kappa // 2 + 1)
    w = np.ones(len(k))
    if kappa % 2 == 0:
        w[0] = w[-1] = 0.5
    F = _dft_matrix(n, k) @ np.asarray(v, dtype=np.float64)
    return (np.exp(2j * np.pi * np.outer(x, k) / n) @ (w * F)).real / n


SIZES_1D = [(12, 20), (12, 21), (13, 20), (13, 21), (20, 12), (21, 12), (20, 13), (21, 13), (8, 8), (7, 9)]


@pytest.mark.parametrize("n,m", SIZES_1D)
def test_1d_equals_the_symmetric_trigonometric_interpolant(be, n, m):
    """1-D, even/odd source and target, up and down: the band-limited interpolant at the new voxel
    centres j·n/m, with the Nyquist coefficient split half and half between ±κ/2 (κ even)."""
    v = _smooth_random((n,), seed=n * 100 + m)
    got = fourier_resample(be, v, (m,))
    expect = symmetric_interpolant_1d(v, np.arange(m) * n / m, m)
    assert got.dtype == np.float32 and got.shape == (m,)
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-6 * np.abs(expect).max())
    np.testing.assert_allclose(got, direct_resample(v, (m,)), rtol=0, atol=2e-6 * np.abs(expect).max())


def test_1d_upsampling_interpolates_the_samples(be):
    """Upsampling by an integer factor returns the original samples at every factor-th voxel."""
    for n in (10, 11):
        v = _smooth_random((n,), seed=n)
        np.testing.assert_allclose(fourier_resample(be, v, (3 * n,))[::3], v, atol=2e-6)


SHAPES_3D = [((9, 10, 7), (12, 6, 8)),      # odd→even up, even→even down, odd→even up
             ((10, 8, 12), (7, 11, 13)),    # even→odd down, even→odd up, even→odd up
             ((11, 9, 6), (8, 13, 5)),      # odd→even down, odd→odd up, even→odd down
             ((8, 10, 6), (12, 14, 9)),     # even sources upsampled on every axis (Nyquist planes)
             ((12, 10, 14), (8, 6, 10)),    # even→even down on every axis
             ((7, 9, 11), (5, 13, 11))]     # odd everywhere, one axis unchanged


@pytest.mark.parametrize("shape,new", SHAPES_3D)
def test_3d_equals_explicit_dft_sums(be, shape, new):
    """Non-cubic 3-D boxes, every even/odd and up/down combination: the DFT-sum formula of the module
    docstring, computed here without FFTs in float64; and the mean is kept."""
    V = _smooth_random(shape, seed=sum(shape))
    got = fourier_resample(be, V, new)
    expect = direct_resample(V, new)
    assert got.dtype == np.float32 and got.shape == tuple(new)
    np.testing.assert_allclose(got, expect, rtol=0, atol=3e-6 * np.abs(expect).max())
    assert float(got.astype(np.float64).mean()) == pytest.approx(float(V.astype(np.float64).mean()), rel=1e-5)


def _separable(V: np.ndarray, new_shape: tuple) -> np.ndarray:
    """Symmetric 1-D interpolation applied along each axis in turn (the tensor-product interpolant)."""
    out = np.asarray(V, dtype=np.float64)
    for axis, (n, m) in enumerate(zip(V.shape, new_shape)):
        T = np.stack([symmetric_interpolant_1d(e, np.arange(m) * n / m, m) for e in np.eye(n)], axis=1)
        out = np.moveaxis(np.tensordot(T, out, axes=([1], [axis])), 0, axis)
    return out


@pytest.mark.parametrize("shape,new", [((9, 10, 7), (12, 6, 8)), ((10, 9, 7), (13, 5, 9)),
                                       ((11, 9, 6), (8, 13, 5)), ((7, 9, 11), (5, 13, 11))])
def test_3d_equals_axis_by_axis_interpolation_with_at_most_one_even_nyquist(be, shape, new):
    """With at most one axis whose kept band min(n, m) is even, the 3-D resampling is the symmetric 1-D
    interpolation applied along each axis in turn (a single-axis Nyquist coefficient is split half/half)."""
    assert sum(min(n, m) % 2 == 0 for n, m in zip(shape, new)) <= 1
    V = _smooth_random(shape, seed=3)
    expect = _separable(V, new)
    np.testing.assert_allclose(fourier_resample(be, V, new), expect, rtol=0, atol=3e-6 * np.abs(expect).max())


def test_multi_axis_nyquist_edges_pair_with_their_point_reflection(be):
    """Where two axes sit at an even Nyquist frequency, the coefficient is shared with its point reflection
    only (not over the 4 sign combinations of the axis-by-axis interpolant): the result differs from the
    separable one by exactly the real part of those edge terms.  On a map with no power on the edges the
    two agree."""
    shape, new = (8, 10, 7), (12, 14, 9)               # z and y even and upsampled, x odd
    V = _smooth_random(shape, seed=5)
    F = np.fft.fftn(V.astype(np.float64))
    F[4, 5, :] = 0.0                                    # the (n_z/2, n_y/2, k_x) edge of the spectrum
    V0 = np.fft.ifftn(F).real
    np.testing.assert_allclose(fourier_resample(be, V0, new), _separable(V0, new), atol=3e-6 * np.abs(V0).max())
    assert not np.allclose(fourier_resample(be, V, new), _separable(V, new), atol=1e-4)


def test_mean_is_kept_for_every_combination(be):
    for shape, new in SHAPES_3D:
        V = _smooth_random(shape, seed=7) + 3.0
        got = fourier_resample(be, V, new).astype(np.float64)
        assert got.mean() == pytest.approx(float(V.astype(np.float64).mean()), rel=1e-6)


def test_constant_and_band_limited_wave_on_a_non_cubic_box(be):
    """A constant stays that constant; cos(2π·2x/n) on x (n = 14) resampled to 9 and to 23 voxels is the same
    wave at the new voxel centres j·14/m (mean kept)."""
    V = np.full((6, 8, 14), 2.5, np.float32)
    np.testing.assert_allclose(fourier_resample(be, V, (9, 5, 11)), 2.5, rtol=1e-6)
    x = np.arange(14)
    W = np.broadcast_to(1.0 + np.cos(2 * np.pi * 2 * x / 14), (6, 8, 14))
    for m in (9, 23):
        got = fourier_resample(be, W, (5, 11, m))
        expect = 1.0 + np.cos(2 * np.pi * 2 * np.arange(m) * (14 / m) / 14)
        np.testing.assert_allclose(got[2, 3], expect, atol=1e-5)


def test_same_shape_is_a_float32_copy_and_host_input_is_accepted(be):
    V = _smooth_random((6, 7, 8)).astype(np.float64)
    out = fourier_resample(be, V, (6, 7, 8))
    assert out.dtype == np.float32 and not np.shares_memory(out, V)
    np.testing.assert_array_equal(out, V.astype(np.float32))
    with pytest.raises(ValueError, match="one size per axis"):
        fourier_resample(be, V, (6, 7))


def test_the_old_names_are_this_function(be):
    """masks.fourier_resample is this function; preprocess.resample is it with (V, shape, be=None)."""
    assert masks.fourier_resample is fourier_resample
    V = _smooth_random((9, 10, 7))
    np.testing.assert_array_equal(preprocess.resample(V, (12, 6, 8)), fourier_resample(be, V, (12, 6, 8)))


@pytest.mark.gpu
@pytest.mark.parametrize("shape,new", SHAPES_3D[:3] + [((12, 10, 14), (30, 26, 33))])
def test_gpu_equals_cpu(cpu, gpu, shape, new):
    """The device path (in-place inverse, float32 scaling) gives the CPU numbers within 1e-5 of the max."""
    V = _smooth_random(shape, seed=11)
    cpu_out = fourier_resample(cpu, V, new)
    Vd = gpu.asarray(V)
    gpu_out = gpu.to_host(fourier_resample(gpu, Vd, new))
    np.testing.assert_array_equal(gpu.to_host(Vd), V)           # the in-place transforms leave the map alone
    assert gpu_out.dtype == np.float32 and gpu_out.shape == tuple(new)
    np.testing.assert_allclose(gpu_out, cpu_out, rtol=0, atol=1e-5 * np.abs(cpu_out).max())


def test_every_kept_block_is_disjoint_and_covers_min_n_m():
    """kept_blocks: the destination slices of each axis are disjoint and hold exactly min(n, m) frequencies."""
    from gpuvalid.resample import kept_blocks

    for n, m in itertools.product(range(1, 12), repeat=2):
        idx = np.concatenate([np.arange(m)[d] for _, d in kept_blocks(n, m)])
        src = np.concatenate([np.arange(n)[s] for s, _ in kept_blocks(n, m)])
        assert len(idx) == len(set(idx)) == min(n, m) == len(src)
        f_src, f_dst = np.fft.fftfreq(n, 1 / n)[src], np.fft.fftfreq(m, 1 / m)[idx]
        np.testing.assert_array_equal(np.rint(f_src), np.rint(f_dst))       # same frequency both sides


def _prime_factors(n):
    """Prime factors of n by trial division (an independent check of resample.largest_prime_factor)."""
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@pytest.mark.parametrize("target", [445.95, 668.9, 174.2, 238.0, 202.0, 184.8, 294.8, 104.99, 46.9, 20.0, 5.0,
                                    1007.3, 63.0, 143.3, 527.0, 116.0])
def test_fft_length_is_the_nearest_smooth_edge_within_tolerance(target):
    m = fft_length(target)
    for pmax in FFT_PRIME_PREFERENCE:     # factors ≤ 7 first, then ≤ 13 (brute force over every integer)
        smooth = [k for k in range(1, int(2 * target) + 3)
                  if max(_prime_factors(k) or [1]) <= pmax and abs(k - target) <= FFT_EDGE_TOL * target]
        if smooth:   # the nearest such edge, ties to the larger
            best = min(abs(k - target) for k in smooth)
            assert m == max(k for k in smooth if abs(k - target) == best)
            break
    else:            # none close enough: the nearest integer, whatever its factors
        assert m == round(target)
    assert largest_prime_factor(m) == max(_prime_factors(m) or [1])


def test_fft_length_prefers_factors_up_to_7_then_13():
    assert fft_length(116.0) == 117           # 3²·13: no edge of factors ≤ 7 within 1 % (112 and 120 are 3.4 % off)
    assert fft_length(174.2) == 175           # 5²·7, not 174 = 2·3·29
    assert fft_length(184.8) == 185           # 5·37: nothing better within 1 %


def test_working_grids_of_the_benchmark_boxes_have_small_factors():
    # 256³ and 384³ at 1.742 Å (bench_e2e): 445.95 and 668.9 voxels at 1 Å, formerly 446 = 2·223 and 669 = 3·223
    assert grid_shape((256, 256, 384), 1.742, 1.0) == (448, 448, 672)
    ts = grid_voxel_sizes((256, 256, 384), 1.742, (448, 448, 672))
    assert all(abs(t - 1.0) <= 0.01 for t in ts)
    assert grid_shape((3, 3, 3), 0.5, 1.0) == (4, 4, 4)          # never below 4 voxels per axis
