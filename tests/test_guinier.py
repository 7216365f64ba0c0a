"""Guinier profile, fit and sharpening on synthetic maps with a known B-factor."""

import numpy as np
import pytest

from gpuvalid.guinier import fit_line, guinier, radial_profile, sharpen
from tests.helpers import assert_backends_agree


def damped_noise_map(n, ts, bphys, seed=0):
    """Unit-amplitude spectrum with random phases, damped by exp(−B·s²/4) (s in Å⁻¹)."""
    rng = np.random.default_rng(seed)
    F = np.fft.rfftn(rng.standard_normal((n, n, n)))
    F /= np.abs(F)
    s2 = (np.fft.fftfreq(n, ts)[:, None, None] ** 2 + np.fft.fftfreq(n, ts)[None, :, None] ** 2
          + np.fft.rfftfreq(n, ts)[None, None, :] ** 2)
    F *= np.exp(-bphys * s2 / 4)
    return np.fft.irfftn(F, s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)


@pytest.mark.parametrize("bphys", [60.0, 150.0])
def test_guinier_recovers_planted_b(cpu, bphys):
    """The fitted B (spec sign: decay → B < 0) equals −B_planted within 5 %."""
    V = damped_noise_map(64, 1.5, bphys)
    prof, fit, sharp, sharp_prof = guinier(cpu, V, 1.5, resolution=4.0)
    assert fit.bfactor == pytest.approx(-bphys, rel=0.05)
    assert fit.slope == pytest.approx(fit.bfactor / 4)
    # sharpening with the fitted B flattens the curve over the fit range
    m = fit.fit_mask
    flat = np.polyfit(prof.x[m], sharp_prof.lnF[m], 1)[0]
    assert abs(flat) < 0.05 * abs(fit.slope)
    assert sharp.shape == V.shape and sharp.dtype == np.float32


def test_profile_is_mean_amplitude_over_full_grid(cpu):
    """Half-spectrum weighted means equal plain means over the full FFT grid (direct computation)."""
    rng = np.random.default_rng(4)
    n, ts = 20, 2.0
    V = rng.standard_normal((n, n, n))
    prof = radial_profile(cpu, np.fft.rfftn(V), V.shape, ts)
    F = np.fft.fftn(V)
    f = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij")))
    k = np.rint(f * n).astype(int)
    for kk in (1, 4, 9):
        sel = (k == kk) & (f <= 0.5)
        assert np.exp(prof.lnF[kk - 1]) == pytest.approx(np.abs(F[sel]).mean(), rel=1e-5)
    assert prof.d[0] == pytest.approx(n * ts)
    assert prof.x[2] == pytest.approx((3 / (n * ts)) ** 2)


def test_profile_on_a_non_cubic_box(cpu):
    """Spec: s in Å⁻¹ with each axis its own size, k = round(s·N·Ts) with N the smallest edge, s ≤ Nyquist of
    that edge; checked against a direct mean over the full FFT grid of a 35 × 52 × 47 box (EMD-2566 crop)."""
    rng = np.random.default_rng(5)
    shape, ts = (35, 52, 47), 1.34
    V = rng.standard_normal(shape)
    prof = radial_profile(cpu, np.fft.rfftn(V), shape, ts)
    F = np.fft.fftn(V)
    s = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.fft.fftfreq(n, ts) for n in shape], indexing="ij")))
    N = min(shape)
    k = np.rint(s * N * ts).astype(int)
    assert prof.k[-1] == N // 2 and prof.d[0] == pytest.approx(N * ts)
    for kk in (1, 5, 12, N // 2):
        sel = (k == kk) & (s <= 0.5 / ts + 1e-12)
        assert np.exp(prof.lnF[kk - 1]) == pytest.approx(np.abs(F[sel]).mean(), rel=1e-5)


def test_fit_needs_three_shells(cpu):
    """EMD-5170-like case: box 100 × 2.38 Å and R = 15 Å leave no shell between 15 Å and R."""
    V = damped_noise_map(100, 2.38, 50.0)[:100, :100, :100]
    prof = radial_profile(cpu, np.fft.rfftn(V), V.shape, 2.38)
    with pytest.raises(ValueError, match="only 0 Fourier shell"):
        fit_line(prof, 15.0)


def test_sharpen_leaves_shells_beyond_resolution(cpu):
    n, ts, R = 32, 1.0, 4.0
    V = damped_noise_map(n, ts, 40.0)
    Fh = np.fft.rfftn(V)
    Fs = sharpen(cpu, Fh, V.shape, ts, -40.0, R)
    r = np.sqrt(np.fft.fftfreq(n)[:, None, None] ** 2 + np.fft.fftfreq(n)[None, :, None] ** 2
                + np.fft.rfftfreq(n)[None, None, :] ** 2)
    k = np.rint(r * n)
    hi = k > n * ts / R
    np.testing.assert_allclose(Fs[hi], Fh[hi], rtol=1e-6)
    lo = (k <= n * ts / R) & (k > 0)
    s2 = (r / ts) ** 2
    np.testing.assert_allclose(Fs[lo], Fh[lo] * np.exp(40.0 * s2[lo] / 4), rtol=1e-5)


@pytest.mark.gpu
def test_gpu_guinier_equals_cpu(cpu, gpu):
    """B within 1e-4 relative; the sharpened map within 1e-4 relative + 1e-5 of its largest |value|
    (float32 transforms on the device, float64 sums on both)."""
    V = damped_noise_map(64, 1.5, 100.0)
    sharp = guinier(cpu, V, 1.5, 4.0)[2]
    assert_backends_agree(lambda be, X: guinier(be, X, 1.5, 4.0)[1].bfactor, cpu, gpu, V, rtol=1e-4)
    assert_backends_agree(lambda be, X: guinier(be, X, 1.5, 4.0)[2], cpu, gpu, V, rtol=1e-4,
                          atol=1e-5 * float(np.abs(sharp).max()))
