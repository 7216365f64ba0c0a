"""Level 1 local resolution (1.c–1.f) on simulated half maps with a known, spatially varying resolution.

The signal is the density of a model (1a5t, 64³ at 1 Å) low-passed to 3.5 Å on the high-x side of the box
and to 7 Å on the low-x side (a logistic blend 1.5 voxels wide at x = 32); the halves add two independent
white-noise realisations (σ = 0.5 × the signal's σ inside the mask).  "Known local resolution" is the
blend of the two band limits.  Each estimator's median per region and its voxel-wise correlation with the
known map are checked against the tolerances stated in docs/level1_local.md; the statistical pieces are
checked against direct computations (Monte Carlo, explicit formulas, one box at a time).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from gpuvalid.backend import get_backend
from tests.helpers import DATA

MODEL = DATA / "models" / "1a5t.pdb"

RES_A, RES_B = 3.5, 7.0


def two_region_halves(box=64, ts=1.0, noise=0.5, seed=0):
    """(h1, h2, hard mask, soft mask, known local resolution map)."""
    from gpuvalid.simulate import filters
    from gpuvalid.simulate.density import atom_density
    from gpuvalid.simulate.structure import read_atoms

    atoms = read_atoms(MODEL)
    centre = 0.5 * (atoms.xyz.min(0) + atoms.xyz.max(0))
    V, _ = atom_density(atoms, ts, shape=(box,) * 3, origin_A=centre - 0.5 * box * ts, bfactor_A2=10.0)
    x = np.arange(box)[None, None, :]
    w = np.broadcast_to(1 / (1 + np.exp(-(x - box / 2) / 1.5)), V.shape)
    sig = (w * filters.lowpass(V, ts, RES_A) + (1 - w) * filters.lowpass(V, ts, RES_B)).astype(np.float32)
    truth = (w * RES_A + (1 - w) * RES_B).astype(np.float32)
    rng = np.random.default_rng(seed)
    thr = np.quantile(sig, 0.85)
    sd = sig[sig >= thr].std()
    n1 = rng.normal(size=V.shape).astype(np.float32) * noise * sd
    n2 = rng.normal(size=V.shape).astype(np.float32) * noise * sd
    hard = ndi.binary_dilation(sig >= thr, iterations=2)
    soft = ndi.gaussian_filter(hard.astype(np.float32), 2.0)
    return sig + n1, sig + n2, hard, soft, truth


@pytest.fixture(scope="module")
def sim():
    if not MODEL.is_file():
        pytest.skip("model 1a5t not available")
    return two_region_halves()


@pytest.fixture(scope="module")
def be():
    return get_backend("cpu")


def region_medians(m, truth):
    ok = np.isfinite(m)
    a = ok & (truth < RES_A + 0.1)
    b = ok & (truth > RES_B - 0.1)
    corr = float(np.corrcoef(m[ok], truth[ok])[0, 1])
    return float(np.median(m[a])), float(np.median(m[b])), corr


# ---- 1.c local FSC -----------------------------------------------------------------------------------------

def direct_box_fsc(h1, h2, c, ts):
    """FSC resolution (Å, first 0.5 crossing, shells 1/(40·Ts)) of the 20³ boxes centred at voxel ``c``,
    one box at a time with numpy.fft on the full 40³ complex grid (no Hermitian bookkeeping)."""
    sl = tuple(slice(ci - 10, ci + 10) for ci in c)
    i = np.arange(20)
    w1 = 0.5 - 0.5 * np.cos(2 * np.pi * (i + 0.5) / 20)
    win = w1[:, None, None] * w1[None, :, None] * w1[None, None, :]
    F = []
    for h in (h1, h2):
        b = h[sl].astype(np.float64)
        P = np.zeros((40, 40, 40))
        P[:20, :20, :20] = (b - b.mean()) * win
        F.append(np.fft.fftn(P))
    f = np.fft.fftfreq(40)
    k = np.rint(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2) * 40).astype(int)
    nsh = int(math.floor(20 * math.sqrt(3))) + 1
    cross = np.bincount(k.ravel(), (F[0] * F[1].conj()).real.ravel(), minlength=nsh + 2)[:nsh]
    p1 = np.bincount(k.ravel(), (abs(F[0]) ** 2).ravel(), minlength=nsh + 2)[:nsh]
    p2 = np.bincount(k.ravel(), (abs(F[1]) ** 2).ravel(), minlength=nsh + 2)[:nsh]
    fsc = cross / np.sqrt(p1 * p2)
    freq = np.arange(nsh) / (40 * ts)
    for j in range(2, nsh):
        if fsc[j] < 0.5:
            if fsc[j - 1] < 0.5:
                return 200.0
            t = (fsc[j - 1] - 0.5) / (fsc[j - 1] - fsc[j])
            return float(min(200.0, max(2 * ts / math.sqrt(3), 1 / (freq[j - 1] + t * (freq[j] - freq[j - 1])))))
    return 2 * ts / math.sqrt(3)


def test_local_fsc_matches_direct_boxes(sim, be):
    """The batched local FSC equals a direct per-box computation (within 1e-3 Å) at lattice voxels."""
    from gpuvalid.level1.local_fsc import local_fsc

    h1, h2, hard, soft, truth = sim
    small = np.zeros_like(soft)
    pts = [(30, 30, 22), (32, 34, 40), (28, 36, 31), (36, 26, 44)]
    for p in pts:
        small[p] = 1.0
    out = local_fsc(be, h1, h2, small, 1.0, step=1)
    for p in pts:
        assert out["map"][p] == pytest.approx(direct_box_fsc(h1, h2, p, 1.0), abs=1e-3)


def test_local_fsc_two_regions(sim, be):
    """Medians within −25 %/+10 % (3.5 Å side) and −35 %/+10 % (7 Å side, the taper smears the band edge)
    of the known band limits; voxel-wise correlation > 0.8; CPU step 2 (interpolated)."""
    from gpuvalid.level1.local_fsc import local_fsc

    h1, h2, hard, soft, truth = sim
    out = local_fsc(be, h1, h2, soft, 1.0, step=2)
    assert out["step"] == 2
    a, b, corr = region_medians(out["map"], truth)
    assert 0.75 * RES_A <= a <= 1.1 * RES_A
    assert 0.65 * RES_B <= b <= 1.1 * RES_B
    assert corr > 0.8
    v = out["vrs_map"][np.isfinite(out["vrs_map"])]
    assert v.min() >= 2.0 - 1e-6   # the reference's 2 Å floor


@pytest.mark.parametrize("step", [1, 3])
def test_local_fsc_centres_fit_their_boxes(cpu, step):
    """The box centres are the soft-mask voxels ≥ 0.5 (step 1), or the lattice c ≡ 10 (mod step) within step − 1
    voxels of one, whose 20³ box c − 10 … c + 9 lies inside the map: written out per voxel on a non-cubic box."""
    from gpuvalid.level1 import local_fsc as lf

    shape = (31, 26, 23)
    rng = np.random.default_rng(7)
    soft = rng.random(shape).astype(np.float32)
    got = lf._selected(cpu, soft, shape, step) if step > 1 else None
    sel = soft >= 0.5
    if step > 1:   # within step − 1 voxels (chessboard) of a selected voxel
        near = np.zeros(shape, dtype=bool)
        for z, y, x in zip(*np.nonzero(sel)):
            near[max(z - step + 1, 0):z + step, max(y - step + 1, 0):y + step, max(x - step + 1, 0):x + step] = True
        sel = near
    idx = np.indices(shape)
    fits = np.all([(i - 10 >= 0) & (i + 9 <= n - 1) for i, n in zip(idx, shape)], axis=0)
    on_lattice = np.all([(i - 10) % step == 0 for i in idx], axis=0)
    want = np.flatnonzero(sel & fits & on_lattice)
    if step == 1:
        target = soft >= 0.5
        lf._clear_margin(target, 10)
        got = np.flatnonzero(target)
    np.testing.assert_array_equal(got, want)


def test_crossings_first_and_last():
    """First vs last crossing of a curve that dips below 0.5 and comes back (hand-computed)."""
    from gpuvalid.level1.local_fsc import crossings

    f = np.arange(8) / 10.0
    y = np.array([[1, 0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.1]])
    first, last, code = crossings(y, f)
    assert code[0] == 0
    assert first[0] == pytest.approx(0.2 + 0.3 / 0.4 * 0.1)
    assert last[0] == pytest.approx(0.5 + 0.2 / 0.5 * 0.1)
    _, _, code = crossings(np.array([[1, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]]), f)
    assert code[0] == 1
    _, _, code = crossings(np.array([[1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]]), f)
    assert code[0] == 2


# ---- 1.d ResMap-like ---------------------------------------------------------------------------------------

def test_weighted_chi2_saddlepoint_against_monte_carlo():
    from gpuvalid.level1.resmap import scale_kernels, weighted_chi2_sf

    _, lam, _ = scale_kernels(3.0, 1.0)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((400_000, lam.size)) ** 2) @ lam
    for q in (0.9, 0.99, 0.999):
        t = np.quantile(x, q)
        assert weighted_chi2_sf(np.array([t]), lam)[0] == pytest.approx(1 - q, rel=0.15)


def test_by_threshold_formula():
    from gpuvalid.level1.resmap import by_threshold

    p = np.array([1e-6, 2e-4, 0.01, 0.2, 0.5])
    c = sum(1 / i for i in range(1, 6))
    # k = 2: 2e-4 ≤ 2·0.05/(5c) = 0.00876; k = 3: 0.01 ≤ 0.0131; k = 4: 0.2 > 0.0175
    assert by_threshold(p, 0.05, get_backend("cpu")) == pytest.approx(0.01)
    assert 3 * 0.05 / (5 * c) >= 0.01


def test_resmap_pure_noise_assigns_nothing(be):
    """Halves of pure noise: the FDR-controlled test resolves (almost) no voxel."""
    from gpuvalid.level1.resmap import resmap

    rng = np.random.default_rng(4)
    n1 = rng.standard_normal((40, 40, 40)).astype(np.float32)
    n2 = rng.standard_normal((40, 40, 40)).astype(np.float32)
    m = np.zeros((40, 40, 40), bool)
    m[8:32, 8:32, 8:32] = True
    out = resmap(be, n1, n2, m, 1.0, 5.0)
    assert out["never_fraction"] > 0.99


def test_resmap_two_regions(sim, be):
    """Medians within ±20 % of the known band limits; correlation > 0.8."""
    from gpuvalid.level1.resmap import resmap

    h1, h2, hard, soft, truth = sim
    out = resmap(be, h1, h2, hard, 1.0, 12.0)
    a, b, corr = region_medians(out["map"], truth)
    assert 0.8 * RES_A <= a <= 1.2 * RES_A
    assert 0.8 * RES_B <= b <= 1.2 * RES_B
    assert corr > 0.8


# ---- 1.e MonoRes (half maps) -------------------------------------------------------------------------------

def test_monores_half_two_regions(sim, be):
    """Medians within ±20 % of the known band limits; correlation > 0.85."""
    from gpuvalid.level1.monores_half import monores_half

    h1, h2, hard, soft, truth = sim
    out = monores_half(be, h1, h2, hard, 1.0, 12.0)
    a, b, corr = region_medians(out["map"], truth)
    assert 0.8 * RES_A <= a <= 1.2 * RES_A
    assert 0.8 * RES_B <= b <= 1.2 * RES_B
    assert corr > 0.85


def test_vrs_histogram_percentiles_drop_tail():
    """Dropping the last two 0.25 Å bins moves the upper percentiles down (hand-made sample)."""
    from gpuvalid.level1.monores_half import vrs_histogram_percentiles

    v = np.concatenate([np.full(900, 3.0), np.full(100, 6.0)])
    p, rp = vrs_histogram_percentiles(v, 4.0)
    assert p[4] < 6.0 - 0.4
    assert rp == pytest.approx(100.0)


# ---- 1.f directional ---------------------------------------------------------------------------------------

def test_uniformity_test_calibrated():
    """χ² p-values of uniform best directions are not small; a preferred direction is detected."""
    from gpuvalid.level1.monodir import uniformity_test

    rng = np.random.default_rng(7)
    ps = [uniformity_test(rng.integers(0, 47, 2000), 47)["p"] for _ in range(200)]
    assert np.mean(np.array(ps) < 0.05) < 0.1
    skew = np.concatenate([rng.integers(0, 47, 2000), np.zeros(200, int)])
    assert uniformity_test(skew, 47)["p"] < 1e-6


def _random_sweeps(ndir: int, n: int, seed: int = 5):
    """Sweeps with random last-passed steps (some voxels never pass: the cap), many ties per voxel."""
    from gpuvalid.monores import TwoFailureSweep

    rng = np.random.default_rng(seed)
    steps = [12.0, 11.0, 10.0, 9.0, 8.0, 7.5, 7.0]
    out = []
    for _ in range(ndir):
        sw = TwoFailureSweep(np, n, 12.0)
        sw._d = list(steps)
        sw.step = rng.integers(-1, len(steps), n).astype(np.int16)
        out.append(sw)
    return out


def test_directional_summaries_equal_the_direct_formulas(be):
    """Chunked summaries (3 chunks, the last partial) = NumPy over the whole [directions × voxels] array; the
    best direction is one of the tied finest; the reference's tie counts match its formula."""
    from gpuvalid.level1.monodir import directional_summaries, vrs_ks_p

    sweeps = _random_sweeps(47, 2500)
    R = np.stack([sw.value for sw in sweeps])
    got = directional_summaries(be, sweeps, seed=3, chunk=1000)
    np.testing.assert_array_equal(got["min"], R.min(axis=0))
    np.testing.assert_array_equal(got["max"], R.max(axis=0))
    np.testing.assert_allclose(got["mean"], R.astype(np.float64).mean(axis=0), rtol=1e-6)
    lo, hi = np.percentile(R.astype(np.float64), [5, 95], axis=0)
    np.testing.assert_allclose(got["lo5"], lo, rtol=1e-6)
    np.testing.assert_allclose(got["hi95"], hi, rtol=1e-6)
    np.testing.assert_array_equal(got["median"], np.median(R, axis=1))
    assert np.all(R[got["best"], np.arange(R.shape[1])] <= R.min(axis=0) + 1e-4)
    counts = (R <= R.min(axis=0) + 0.1).sum(axis=1)
    np.testing.assert_array_equal(got["vrs_tie_counts"], counts)
    assert vrs_ks_p(R) == vrs_ks_p(counts=got["vrs_tie_counts"])


def test_tied_best_directions_are_split_uniformly(be):
    """All 47 directions tied at every voxel: the hash picks each with probability 1/47 (χ² test), the
    choice does not depend on the chunking, and another seed picks differently."""
    from scipy.stats import chisquare

    from gpuvalid.level1.monodir import directional_summaries
    from gpuvalid.monores import TwoFailureSweep

    n = 47 * 400
    sweeps = [TwoFailureSweep(np, n, 12.0) for _ in range(47)]          # every voxel at the cap
    a = directional_summaries(be, sweeps, seed=3, chunk=5000)["best"]
    b = directional_summaries(be, sweeps, seed=3, chunk=n)["best"]
    c = directional_summaries(be, sweeps, seed=4, chunk=n)["best"]
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.1
    assert chisquare(np.bincount(a, minlength=47)).pvalue > 1e-3


def test_vrs_ks_rejects_flat():
    """The reference's KS recipe rejects even a perfectly flat set of counts (its documented quirk)."""
    from gpuvalid.level1.monodir import vrs_ks_p

    flat = np.stack([np.roll(np.arange(47.0), k) for k in range(47)], axis=1)   # each direction best once
    assert vrs_ks_p(flat) < 1e-10


def test_monodir_two_regions(sim, be):
    """The mean directional resolution orders the regions (correlation > 0.8) and its medians are within
    −10 %/+60 % of the known band limits (directional cones read coarser: see docs/level1_local.md)."""
    from gpuvalid.level1.monodir import monodir

    h1, h2, hard, soft, truth = sim
    out = monodir(be, h1, h2, hard, 1.0, 12.0, keep_res=True)
    m = np.full(truth.shape, np.nan, np.float32)
    m.reshape(-1)[out["index"]] = out["mean"]
    a, b, corr = region_medians(m, truth)
    assert 0.9 * RES_A <= a <= 1.6 * RES_A
    assert 0.9 * RES_B <= b <= 1.6 * RES_B
    assert corr > 0.8
    assert out["res"].shape == (47, out["index"].size)


# ---- 1.f speed-ups: the same numbers as the direct formulas ------------------------------------------------

def _lowpass_direct(A, fd, transition=0.02):
    """``irfftn(rfftn(A)·L)`` with ``L(r) = 1`` below ``fd``, ``½(1 + cos(π(r − fd)/0.02))`` up to ``fd + 0.02``,
    0 beyond (float64, NumPy)."""
    f = [np.fft.fftfreq(n) for n in A.shape[:2]] + [np.fft.rfftfreq(A.shape[2])]
    r = np.sqrt(f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2)
    t = np.clip((r - fd) / transition, 0, 1)
    L = 0.5 + 0.5 * np.cos(np.pi * t)
    return np.fft.irfftn(np.fft.rfftn(A.astype(np.float64)) * L, s=A.shape, axes=(0, 1, 2))


@pytest.mark.parametrize("shape", [(48, 48, 48), (47, 50, 45)])
def test_pruned_lowpass_equals_full(be, shape):
    """The low-pass on the box |f_j| ≤ fd + 0.02 (coarse steps) and on the full grid (fine steps) equal the
    direct float64 filter to float32 precision."""
    from gpuvalid.level1.monores_half import HalfMonogenic

    rng = np.random.default_rng(1)
    h = rng.normal(size=shape).astype(np.float32)
    eng = HalfMonogenic(be, h, 0.5 * h)
    A = np.abs(rng.normal(size=shape)).astype(np.float32)
    for fd in (0.05, 0.1, 0.3, 0.5):
        got = eng.lowpass(A, fd)
        ref = _lowpass_direct(A, fd)
        assert got.shape == shape and got.dtype == np.float32
        assert np.max(np.abs(got - ref)) <= 2e-6 * np.max(np.abs(ref))
    assert eng._lowpass_box(0.05) is not None and eng._lowpass_box(0.5) is None     # coarse: the box; fine: all


@pytest.mark.parametrize("shape", [(40, 40, 40), (37, 42, 35), (36, 33, 40)])
def test_half_spectrum_amplitude_equals_the_direct_monogenic_amplitude(be, shape):
    """1.e's monogenic amplitude from the half spectra (four complex-to-real transforms) equals the direct
    float64 formula on the full grid, √(v0² + Σ_j |IFFT(u_j·H·F)|²), to float32 precision; even and odd axes."""
    from gpuvalid.level1.monores_half import HalfMonogenic, raised_cosine_up

    rng = np.random.default_rng(3)
    h1 = ndi.gaussian_filter(rng.normal(size=shape), 1.0).astype(np.float32)
    h2 = h1 + 0.3 * rng.normal(size=shape).astype(np.float32)
    eng = HalfMonogenic(be, h1, h2)
    f = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    r = np.sqrt(f[0] ** 2 + f[1] ** 2 + f[2] ** 2)
    u = [np.where(r > 0, fi / np.maximum(r, 1e-12), 0.0) for fi in f]
    for ui, fi in zip(u, f):
        ui[fi == -0.5] = 0.0                              # no Riesz component on the Nyquist plane of its axis
    for F_half, x in ((eng.FV, (h1 + h2) / 2.0), (eng.FN, (h1 - h2) / 2.0)):
        for fd in (0.12, 0.3):
            H = np.clip((r - (fd - 0.02)) / 0.02, 0, 1)
            H = 0.5 - 0.5 * np.cos(np.pi * H)
            G = np.fft.fftn(x.astype(np.float64)) * H
            ref = np.sqrt(np.fft.ifftn(G).real ** 2 + sum(np.abs(np.fft.ifftn(G * ui)) ** 2 for ui in u))
            got = eng.amplitude(F_half, raised_cosine_up(eng.r, fd - 0.02, fd, np))
            assert got.shape == shape and got.dtype == np.float32
            assert np.max(np.abs(got - ref)) <= 2e-5 * np.max(ref)


def test_monodir_equals_direction_by_direction(be):
    """The step-outer loop over sparse cones gives the per-direction sweeps of a direct direction-by-direction
    computation (full-grid cone filter, NumPy FFTs in float64, exact quantile) for ≥ 99.9 % of the pairs."""
    from gpuvalid.level1.monodir import directions, monodir
    from gpuvalid.level1.monores_half import resolution_steps

    n, ts, start, ndir = 32, 1.0, 8.0, 4
    rng = np.random.default_rng(2)
    sig = ndi.gaussian_filter(rng.normal(size=(n,) * 3), 1.2)
    sig = (sig / sig.std()).astype(np.float32)
    h1 = sig + 0.4 * rng.normal(size=sig.shape).astype(np.float32)
    h2 = sig + 0.4 * rng.normal(size=sig.shape).astype(np.float32)
    mask = np.zeros(sig.shape, bool)
    mask[6:26, 6:26, 6:26] = True
    out = monodir(be, h1, h2, mask, ts, start, ndir=ndir, keep_res=True)

    f = np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij")
    r = np.sqrt(f[0] ** 2 + f[1] ** 2 + f[2] ** 2)
    u = [np.where(r > 0, fi / np.maximum(r, 1e-12), 0.0) for fi in f]
    for ui, fi in zip(u, f):
        ui[fi == -0.5] = 0.0                              # no Riesz component on the Nyquist plane of its axis
    FV, FN = np.fft.fftn((h1 + h2) / 2.0), np.fft.fftn((h1 - h2) / 2.0)
    steps = resolution_steps(ts, start, 0.5, 1.0, 8.0)
    for k, (dx, dy, dz) in enumerate(directions(ndir)):
        ud = u[2] * dx + u[1] * dy + u[0] * dz
        cone = np.abs(ud) >= math.cos(math.radians(15.0))
        value = np.full(mask.sum(), steps[0])
        miss = np.zeros(mask.sum(), int)
        alive = np.ones(mask.sum(), bool)
        for d in steps:
            fd = ts / d
            H = np.clip((r - (fd - 0.02)) / 0.02, 0, 1)
            H = (0.5 - 0.5 * np.cos(np.pi * H)) * cone * (1 + ud)
            AN = _lowpass_direct(np.abs(np.fft.ifftn(FN * H)), fd)[mask]
            AV = _lowpass_direct(np.abs(np.fft.ifftn(FV * H)), fd)[mask]
            ok = AV > np.quantile(AN, 0.95)
            hit = alive & ok
            value[hit] = d
            miss = np.where(hit, 0, miss + (alive & ~ok))
            alive &= miss < 2
            if alive.mean() < 0.025:
                break
        assert np.mean(np.abs(out["res"][k] - value) < 1e-4) >= 0.999


def test_raised_cosine_by_slabs_is_the_one_array_filter(monkeypatch):
    """The filter of |f| made slab by slab (a few planes at a time, |f| per slab) equals, bit for bit, the same
    arithmetic on the whole grid, and the direct formula within float32 rounding, for a float64 and a
    Python-float edge."""
    from gpuvalid.level1 import monores_half as M

    rng = np.random.default_rng(2)
    f = tuple((rng.random(n) * 0.35).astype(np.float32).reshape(shape)
              for n, shape in ((33, (33, 1, 1)), (20, (1, 20, 1)), (11, (1, 1, 11))))
    r = np.sqrt(f[0] * f[0] + f[1] * f[1] + f[2] * f[2])
    for lo, hi in ((np.float64(1.0 / 4.5) - 0.02, np.float64(1.0 / 4.5)), (0.1, 0.12)):
        whole = M.raised_cosine_up(r, lo, hi, np)
        monkeypatch.setattr(M, "SLAB_ELEMENTS", 3 * 20 * 11 + 5)          # 3 planes a slab, the last partial
        slabs = M.radial_raised_cosine(f, lo, hi, np)
        monkeypatch.undo()
        assert slabs.dtype == np.float32
        np.testing.assert_array_equal(slabs, whole)
        t = np.clip((r.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
        np.testing.assert_allclose(slabs, 0.5 * (1.0 - np.cos(np.pi * t)), atol=1e-6)


def test_engine_filter_by_slabs_is_the_filter_of_r(cpu, monkeypatch):
    """HalfMonogenic.raised_cosine, |f| made slab by slab, equals raised_cosine_up of the whole |f| grid bit for
    bit (a float64 and a Python-float edge, on an odd box)."""
    from gpuvalid.level1 import monores_half as M

    rng = np.random.default_rng(4)
    h1, h2 = rng.normal(size=(2, 21, 18, 15)).astype(np.float32)
    eng = M.HalfMonogenic(cpu, h1, h2)
    for lo, hi in ((np.float64(1.0 / 4.5) - 0.02, np.float64(1.0 / 4.5)), (0.1, 0.12)):
        whole = M.raised_cosine_up(eng.r, lo, hi, np)
        monkeypatch.setattr(M, "SLAB_ELEMENTS", 3 * 18 * 8 + 5)           # 3 planes a slab, the last partial
        slabs = eng.raised_cosine(lo, hi)
        monkeypatch.undo()
        assert slabs.dtype == np.float32 and slabs.shape == eng.half_shape
        np.testing.assert_array_equal(slabs, whole)
        np.testing.assert_array_equal(eng.raised_cosine(lo, hi), whole)   # one slab


def test_engine_values_at_indices_are_the_grid_values(cpu):
    """HalfMonogenic.at: |f| and the unit vector's components at flat half-grid indices, computed from the
    indices, are the grid values of ``r`` and ``unit`` there bit for bit (odd and even axes, the Nyquist planes
    included), and 1.f's cone is the set where |u·d| of the grid reaches cos(cone angle)."""
    from gpuvalid.level1.monodir import CONE_DEG, along, cone_support, directions
    from gpuvalid.level1.monores_half import HalfMonogenic

    rng = np.random.default_rng(5)
    for shape in ((20, 18, 16), (15, 17, 14)):
        h1, h2 = rng.normal(size=(2, *shape)).astype(np.float32)
        eng = HalfMonogenic(cpu, h1, h2)
        ci = np.sort(rng.choice(np.prod(eng.half_shape), 500, replace=False)).astype(np.int32)
        r, u = eng.at(ci)
        np.testing.assert_array_equal(r, eng.r.reshape(-1)[ci])
        for axis in range(3):
            np.testing.assert_array_equal(u[axis], eng.unit(axis).reshape(-1)[ci])
        for d in directions(4):
            grid = along((eng.unit(0), eng.unit(1), eng.unit(2)), d).reshape(-1)
            cone = cone_support(eng, d)
            assert cone.dtype == np.int32
            np.testing.assert_array_equal(cone, np.flatnonzero(np.abs(grid) >= np.cos(np.radians(CONE_DEG))))
            np.testing.assert_array_equal(along(eng.at(cone)[1], d), grid[cone])
