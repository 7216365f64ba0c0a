"""Level 1 kernels: shell sums, FSC/DPR/SSNR, crossings, BY adjustment, direction bins, Bingham, sphericity.

Every expected number comes from an independent computation: full-spectrum ``scipy.fft.fftn`` sums with
a shell index written here, closed-form cases, or a brute-force loop over coefficients.
"""

import math

import numpy as np
import pytest
import scipy.fft

from gpuvalid.level1 import shells
from gpuvalid.level1.fdr import by_adjust
from gpuvalid.level1.fso import bingham
from gpuvalid.level1.fsc3d import sphericity


def full_shells(shape):
    """Shell index round(|f|·N) on the full FFT grid (−1 beyond |f| = 0.5) and |f| per axis component."""
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    r = np.sqrt(fx ** 2 + fy ** 2 + fz ** 2)
    k = np.rint(r * min(shape)).astype(int)
    return np.where(r <= 0.5 + 1e-6, k, -1), (fx, fy, fz), r


def test_shell_sums_equal_full_spectrum_sums(cpu):
    rng = np.random.default_rng(0)
    shape = (20, 24, 22)                       # non-cubic, even and odd... all even here; N = 20
    a = rng.normal(size=shape).astype(np.float32)
    geo = shells.HalfSpectrum(cpu, shape, 1.3)
    F = cpu.rfftn(a)
    got = shells.shell_sums(geo, (F * np.conj(F)).real)[0]
    full = np.abs(scipy.fft.fftn(a.astype(np.float64))) ** 2
    k, _, _ = full_shells(shape)
    want = np.bincount(k[k >= 0], weights=full[k >= 0], minlength=geo.nshell)[: geo.nshell]
    np.testing.assert_allclose(got, want, rtol=2e-5)
    cnt = np.bincount(k[k >= 0], minlength=geo.nshell)[: geo.nshell]
    np.testing.assert_allclose(geo.counts(), cnt)
    assert geo.freq[1] == pytest.approx(1 / (20 * 1.3))


def test_shell_sums_odd_box(cpu):
    rng = np.random.default_rng(1)
    shape = (15, 17, 19)
    a = rng.normal(size=shape).astype(np.float32)
    geo = shells.HalfSpectrum(cpu, shape, 1.0)
    F = cpu.rfftn(a)
    got = shells.shell_sums(geo, (F * np.conj(F)).real)[0]
    full = np.abs(scipy.fft.fftn(a.astype(np.float64))) ** 2
    k, _, _ = full_shells(shape)
    want = np.bincount(k[k >= 0], weights=full[k >= 0], minlength=geo.nshell)[: geo.nshell]
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_fsc_dpr_ssnr_closed_forms(cpu):
    rng = np.random.default_rng(2)
    shape = (32, 32, 32)
    a = rng.normal(size=shape).astype(np.float32)
    geo = shells.HalfSpectrum(cpu, shape, 1.0)
    F = cpu.rfftn(a).astype(np.complex64)
    # identical halves: FSC 1, DPR 0
    assert np.allclose(shells.fsc_terms(geo, F, F).fsc[1:], 1.0, atol=1e-5)
    assert np.allclose(shells.dpr(geo, F, F)[1:], 0.0, atol=0.05)
    # a constant phase shift of 30°: FSC = cos 30°, DPR = 30°
    G = (F * np.exp(1j * np.radians(30.0))).astype(np.complex64)
    assert np.allclose(shells.fsc_terms(geo, F, G).fsc[1:], math.cos(math.radians(30)), atol=1e-4)
    assert np.allclose(shells.dpr(geo, F, G)[1:], 30.0, atol=0.05)
    # F2 = 3·F1: SSNR = |4F|²/|2F|² − 1 = 3
    assert np.allclose(shells.ssnr(geo, F, 3 * F)[1:], 3.0, rtol=1e-5)
    # independent noise: FSC ≈ 0 within 4/√n, DPR ≈ 180/√3 (random phases)
    b = rng.normal(size=shape).astype(np.float32)
    H = cpu.rfftn(b).astype(np.complex64)
    fsc = shells.fsc_terms(geo, F, H).fsc
    n = geo.counts()
    assert np.all(np.abs(fsc[3:]) < 4 / np.sqrt(n[3:]))
    d = shells.dpr(geo, F, H)
    assert np.nanmean(d[5:]) == pytest.approx(180 / math.sqrt(3), abs=2.0)


def test_first_crossing_rules():
    x = np.arange(10, dtype=float)
    y = np.array([1, 1, 0.9, 0.7, 0.5, 0.3, 0.1, 0.05, 0, 0])
    xc, why = shells.first_crossing(x, y, 0.4, "below")
    assert xc == pytest.approx(4.5) and why is None
    assert shells.first_crossing(x, y, -1.0, "below")[0] is None          # never crosses
    assert shells.first_crossing(x, 1 - y, 0.4, "above")[0] == pytest.approx(3.5)
    # already below at the first usable shell (index 2, previous also below): no crossing
    y2 = np.array([1, 0.0, 0.0, 0.0, 0.0])
    assert shells.first_crossing(np.arange(5.0), y2, 0.5)[0] is None
    # the reference's rule: index of first point below must be > 1
    assert shells.vrs_first_cross(x, y, 0.95, "lesser") == pytest.approx(1 + 0.05 / 0.1)
    assert shells.vrs_first_cross(x, np.array([1, 0.1, 0.0, 0, 0, 0, 0, 0, 0, 0]), 0.5) is None


def test_by_adjust_matches_formula():
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.0])
    n = p.size
    c = sum(1 / i for i in range(1, n + 1))
    srt = np.sort(p)
    want_sorted = [min(min(srt[j] * n * c / (j + 1) for j in range(i, n)), 1.0) for i in range(n)]
    got = by_adjust(p)
    np.testing.assert_allclose(np.sort(got), want_sorted)
    assert got[4] == 0.0 and got[3] == pytest.approx(min(0.5 * c, 1.0))


def brute_cone_fsc(F1, F2, shape, axis_xyz, half_angle, weight_kind="hard"):
    """Directional FSC per shell over the full FFT grid, every coefficient weighted exactly."""
    k, (fx, fy, fz), r = full_shells(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.abs(fx * axis_xyz[0] + fy * axis_xyz[1] + fz * axis_xyz[2]) / r
    ca = math.cos(math.radians(half_angle))
    inside = (c >= ca) & (k >= 0) & (r > 0)
    w = inside.astype(float) if weight_kind == "hard" else np.where(inside, np.exp(-4 * (c - 1) ** 2 / (ca - 1) ** 2), 0)
    nsh = min(shape) // 2 + 1
    kk = np.where(k >= 0, k, nsh)
    cross = np.bincount(kk.ravel(), (w * (F1 * np.conj(F2)).real).ravel(), nsh + 1)[:nsh]
    p1 = np.bincount(kk.ravel(), (w * np.abs(F1) ** 2).ravel(), nsh + 1)[:nsh]
    p2 = np.bincount(kk.ravel(), (w * np.abs(F2) ** 2).ravel(), nsh + 1)[:nsh]
    cnt = np.bincount(kk.ravel(), w.ravel(), nsh + 1)[:nsh]
    with np.errstate(invalid="ignore", divide="ignore"):
        return cross / np.sqrt(p1 * p2), cnt


@pytest.mark.parametrize("kind,angle", [("hard", 20.0), ("gauss", 17.0)])
def test_binned_cone_fsc_matches_brute_force(cpu, kind, angle):
    """Direction-binned cone sums against per-coefficient cone weights (tolerance 0.03 + 1/√n_cone)."""
    rng = np.random.default_rng(3)
    shape = (40, 40, 40)
    s = rng.normal(size=shape)
    # anisotropic: halves share a signal that is damped along Z
    Fs = scipy.fft.fftn(s)
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    r = np.sqrt(fx ** 2 + fy ** 2 + fz ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        damp = np.exp(-8 * np.nan_to_num(np.abs(fz) / r) ** 2 * r * 4)
    sig = scipy.fft.ifftn(Fs * damp).real
    h1 = (sig + 0.6 * rng.normal(size=shape)).astype(np.float32)
    h2 = (sig + 0.6 * rng.normal(size=shape)).astype(np.float32)
    geo = shells.HalfSpectrum(cpu, shape, 1.0)
    bins = shells.DirectionBins(geo)
    G1, G2 = cpu.rfftn(h1), cpu.rfftn(h2)
    binned = bins.sums((G1 * np.conj(G2)).real, np.abs(G1) ** 2, np.abs(G2) ** 2)
    dirs = np.array([[0, 0, 1.0], [1.0, 0, 0], [0.6, 0, 0.8]])
    W = shells.cone_weights(bins.centres, dirs, angle, kind)
    got = shells.directional_fsc(binned, W)
    F1, F2 = scipy.fft.fftn(h1.astype(np.float64)), scipy.fft.fftn(h2.astype(np.float64))
    for j, d in enumerate(dirs):
        want, cnt = brute_cone_fsc(F1, F2, shape, d, angle, kind)
        ok = cnt > 30
        tol = 0.03 + 1.0 / np.sqrt(cnt[ok])
        assert np.all(np.abs(got[ok, j] - want[ok]) < tol), (j, np.max(np.abs(got[ok, j] - want[ok])))


def test_bingham_uniform_and_concentrated():
    D = shells.fibonacci_hemisphere(321)
    all_pass = np.ones((1, 321), bool)
    S, cdf = bingham(all_pass, D)
    assert S[0] < 11.07                     # below the χ²₅ 95 % point: isotropic
    cap = (D[:, 2] > math.cos(math.radians(30)))[None, :]
    S2, cdf2 = bingham(cap, D)
    assert cdf2[0] > 0.999                  # a 30° cap around Z: anisotropic


def test_sphericity_sphere_and_spheroid():
    D = shells.fibonacci_hemisphere(500)
    assert sphericity(D, np.ones(500)) == pytest.approx(1.0, abs=0.01)
    a, c = 1.0, 0.5                          # oblate spheroid x = y = a, z = c
    r = 1.0 / np.sqrt((D[:, 0] ** 2 + D[:, 1] ** 2) / a ** 2 + D[:, 2] ** 2 / c ** 2)
    e = math.sqrt(1 - c * c / (a * a))
    area = 2 * math.pi * a * a * (1 + (1 - e * e) / e * math.atanh(e))
    vol = 4 / 3 * math.pi * a * a * c
    want = math.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / area
    assert sphericity(D, r) == pytest.approx(want, abs=0.01)


@pytest.mark.gpu
def test_kernels_gpu_equal_cpu(cpu, gpu):
    rng = np.random.default_rng(4)
    shape = (48, 44, 40)
    h1 = rng.normal(size=shape).astype(np.float32)
    h2 = (0.5 * h1 + rng.normal(size=shape)).astype(np.float32)
    out = {}
    for be in (cpu, gpu):
        geo = shells.HalfSpectrum(be, shape, 1.1)
        F1 = be.rfftn(be.asarray(h1)).astype(be.xp.complex64)
        F2 = be.rfftn(be.asarray(h2)).astype(be.xp.complex64)
        t = shells.fsc_terms(geo, F1, F2)
        bins = shells.DirectionBins(geo)
        b = bins.sums(F1.real * F2.real + F1.imag * F2.imag, F1.real ** 2 + F1.imag ** 2)
        radial, _ = shells.ssnr_vrs(be, F1, F2, shape)
        out[be.name] = (t.fsc, shells.dpr(geo, F1, F2), shells.ssnr(geo, F1, F2), b, radial,
                        be.to_host(bins.index))
    c, g = out["numpy"], out["cupy"]
    for a, b in zip(c[:5], g[:5]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.nanmax(np.abs(a))))
    assert np.mean(c[5] != g[5]) < 1e-4      # bin index: float32 ties at cell edges only


def test_terms_weighted_in_place_are_the_same_sums(cpu):
    """cross_power/power (one in-place addition) and the sums that weight their terms in place (shell_sums,
    DirectionBins.sums) give, bit for bit, the float32 formulas and the bincount of a weighted copy; the
    caller's spectra are untouched."""
    rng = np.random.default_rng(5)
    shape = (20, 17, 16)
    geo = shells.HalfSpectrum(cpu, shape, 1.3)
    F1 = cpu.rfftn(rng.normal(size=shape).astype(np.float32)).astype(np.complex64)
    F2 = cpu.rfftn(rng.normal(size=shape).astype(np.float32)).astype(np.complex64)
    keep = F1.copy(), F2.copy()
    cross = np.add(np.multiply(F1.real, F2.real), np.multiply(F1.imag, F2.imag))
    p1 = np.add(np.multiply(F1.real, F1.real), np.multiply(F1.imag, F1.imag))
    np.testing.assert_array_equal(shells.cross_power(F1, F2), cross)
    np.testing.assert_array_equal(shells.power(F1), p1)
    w = np.broadcast_to(geo.weight, geo.half_shape)
    want = np.bincount(geo.shell.ravel(), weights=(w * cross).ravel(), minlength=geo.nshell + 1)[:geo.nshell]
    np.testing.assert_array_equal(shells.shell_sums(geo, shells.cross_power(F1, F2))[0], want)
    bins = shells.DirectionBins(geo)
    n = geo.nshell * bins.nbins
    want = np.bincount(bins.index, weights=(w * p1).ravel(), minlength=n + 1)[:n].reshape(geo.nshell, bins.nbins)
    np.testing.assert_array_equal(bins.sums(shells.power(F1))[0], want)
    np.testing.assert_array_equal(F1, keep[0])
    np.testing.assert_array_equal(F2, keep[1])


@pytest.mark.parametrize("shape", [(12, 14, 10), (11, 13, 9)])
def test_ssnr_vrs_is_the_mean_ratio_over_the_full_spectrum(cpu, shape):
    """The reference's SSNR from the half spectra (Hermitian weights, exact integer counts) is the plain mean of
    |F1 + F2| / |F1 − F2| over the full spectrum's coefficients in shells int(r), r < N/2 (even and odd x)."""
    rng = np.random.default_rng(6)
    h1 = rng.normal(size=shape).astype(np.float32)
    h2 = (0.7 * h1 + rng.normal(size=shape)).astype(np.float32)
    F1 = cpu.rfftn(h1).astype(np.complex64)
    F2 = cpu.rfftn(h2).astype(np.complex64)
    radial, f = shells.ssnr_vrs(cpu, F1, F2, shape)
    G1, G2 = np.fft.fftn(h1.astype(np.float64)), np.fft.fftn(h2.astype(np.float64))
    k = [np.rint(np.fft.fftfreq(n) * n) for n in shape]      # integers (fftfreq(10)·10 holds 3.0000000000000004)
    r = np.sqrt(k[0][:, None, None] ** 2 + k[1][None, :, None] ** 2 + k[2][None, None, :] ** 2)
    ratio = np.abs(G1 + G2) / np.abs(G1 - G2)
    nsh = shape[0] // 2
    want = [ratio[np.floor(r) == i].mean() for i in range(nsh)]
    assert np.array_equal(f, np.arange(nsh))
    np.testing.assert_allclose(radial, want, rtol=2e-5)


def test_direction_bins_by_slabs_are_the_one_piece_bins(cpu, monkeypatch):
    """The bin index made in z slabs (one plane at a time; three planes and a partial last slab) is, number for
    number, the index made in one piece, on an odd, non-cubic box."""
    geo = shells.HalfSpectrum(cpu, (21, 18, 15), 1.0)
    monkeypatch.setattr(shells, "SLAB_MIN", 1 << 40)
    whole = shells.DirectionBins(geo).index
    monkeypatch.setattr(shells, "SLABS", 1 << 40)                 # the slab size is then SLAB_MIN
    for elements in (1, 3 * 18 * 8 + 1):
        monkeypatch.setattr(shells, "SLAB_MIN", elements)
        np.testing.assert_array_equal(shells.DirectionBins(geo).index, whole)


def test_shell_order_sorts_by_shell_in_int32(cpu):
    """shell_order: int32 indices that sort the shell map stably, and each shell's start in that order."""
    geo = shells.HalfSpectrum(cpu, (12, 14, 10), 1.0)
    order, starts = geo.shell_order()
    flat = np.asarray(geo.shell).ravel()
    assert order.dtype == np.int32
    np.testing.assert_array_equal(order, np.argsort(flat, kind="stable"))
    np.testing.assert_array_equal(starts, np.searchsorted(flat[order], np.arange(geo.nshell + 1)))
