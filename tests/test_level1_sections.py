"""Level 1 sections on simulated half maps with a known answer, and the refusal of bad half maps.

``h_i = signal + n_i`` (adenylate kinase 1AKE, Gaussian atoms, known B-factor; two independent noise maps of
a known spectrum).  The expected FSC of a shell or cone is ``S/(S + N)`` with ``S`` the signal power and ``N``
the mean noise power there, computed here from the generated arrays with ``scipy.fft.fftn`` on the full
grid (not with gpuvalid's kernels).  Maps without a contour threshold use the spherical mask, so the
expectations are computed from the arrays multiplied by that mask.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.fft

from gpuvalid.analyses.base import NOT_MEASURED
from gpuvalid.context import MapContext, RunOptions
from gpuvalid.errors import InputError
from gpuvalid.io.mrc import write_mrc
from gpuvalid.level1 import fdr, fsc3d, fso, global_res, run_level1, shells
from gpuvalid.level1.context import HalfMaps, Level1Context, load_halves
from gpuvalid.level1.simhalves import simulate_halves
from tests.helpers import DATA

MODEL = DATA / "models" / "1akea.pdb"
TS, BOX = 1.2, 64


def need_model():
    if not MODEL.is_file():
        pytest.skip(f"model {MODEL} not found")


def make_ctx1(be, sim, threshold=None, R=3.0):
    ctx0 = MapContext(be, sim.primary, sim.voxel_size, threshold, R, RunOptions())
    hm = HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (sim.h1, sim.h2), ("0" * 64, "1" * 64), ((TS,) * 3, (TS,) * 3))
    return Level1Context(ctx0, hm)


def full_grid(shape):
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    r = np.sqrt(fx ** 2 + fy ** 2 + fz ** 2)
    k = np.where(r <= 0.5 + 1e-6, np.rint(r * min(shape)).astype(int), -1)
    return k, (fx, fy, fz), r


def expected_powers(sim, mask=None):
    """Per-coefficient signal power S and mean noise power N on the full grid (masked when given)."""
    m = 1.0 if mask is None else mask
    S = np.abs(scipy.fft.fftn(sim.signal * m)) ** 2
    N = 0.5 * (np.abs(scipy.fft.fftn(sim.n1 * m)) ** 2 + np.abs(scipy.fft.fftn(sim.n2 * m)) ** 2)
    return S, N


def shell_ratio(S, N, k, nsh, w=None):
    w = np.ones_like(S) if w is None else w
    kk = np.where(k >= 0, k, nsh).ravel()
    s = np.bincount(kk, (w * S).ravel(), nsh + 1)[:nsh]
    n = np.bincount(kk, (w * N).ravel(), nsh + 1)[:nsh]
    c = np.bincount(kk, w.ravel(), nsh + 1)[:nsh]
    return s, n, c


def crossing_shell(y, level, first=2):
    """Fractional shell index where y first drops below level (linear interpolation)."""
    i = first + int(np.flatnonzero(y[first:] < level)[0])
    return i - 1 + (y[i - 1] - level) / (y[i - 1] - y[i])


@pytest.fixture(scope="module")
def iso():
    need_model()
    return simulate_halves(MODEL, TS, BOX, bfactor_A2=60.0, noise_rel=1.0, seed=1)


@pytest.fixture(scope="module")
def aniso():
    need_model()
    return simulate_halves(MODEL, TS, BOX, bfactor_A2=40.0, noise_rel=2.0, aniso=15.0, seed=2)


def test_fsc_and_ssnr_follow_S_over_S_plus_N(cpu, iso):
    """Unmasked FSC per shell within 3/√n + 0.01 of S/(S+N); SSNR within 5(SSNR+1)/√n of 2S/N; the 0.143
    and SSNR = 1 crossings within one shell of the analytic ones."""
    ctx1 = make_ctx1(cpu, iso)
    k, _, _ = full_grid(iso.signal.shape)
    nsh = BOX // 2 + 1
    S, N = expected_powers(iso)
    s, n, c = shell_ratio(S, N, k, nsh)
    exp_fsc = s / (s + n)
    got = ctx1.fsc_unmasked.fsc
    sh = np.arange(2, nsh)
    assert np.all(np.abs(got[sh] - exp_fsc[sh]) < 3 / np.sqrt(c[sh]) + 0.01)
    exp_ssnr = 2 * s / n
    got_ssnr = shells.ssnr(ctx1.geo, ctx1.F1, ctx1.F2)
    assert np.all(np.abs(got_ssnr[sh] - exp_ssnr[sh]) < 5 * (exp_ssnr[sh] + 1) / np.sqrt(c[sh]))

    res = global_res.run(ctx1)      # no threshold: DPR and SSNR on the unmasked halves
    shell_w = 1.0 / (BOX * TS)
    assert abs(1 / res.values["fsc_0143_A"] - crossing_shell(exp_fsc, 0.143) * shell_w) <= shell_w
    assert abs(1 / res.values["ssnr_1_A"] - crossing_shell(exp_ssnr, 1.0) * shell_w) <= shell_w
    assert res.values["fsc_0143_masked_A"] is None and "no soft mask" in res.values["reasons"]["fsc_0143_masked_A"]
    assert res.values["dpr_45_A"] is not None
    # the reference's SSNR axis divides the resolution by 2·Ts²; its DPR threshold is far more optimistic
    assert res.vrs_compat["dpr_103_A"] < res.values["dpr_45_A"]


def test_masked_fsc_and_warning(cpu, iso):
    thr = float(np.quantile(iso.signal, 0.93))
    ctx1 = make_ctx1(cpu, iso, threshold=thr, R=1.0)
    res = global_res.run(ctx1).finish()
    v = res.values
    assert v["fsc_0143_masked_A"] is not None and v["graded_on"] == "soft-masked"
    assert v["fsc_0143_masked_A"] < v["fsc_0143_A"]         # masking removes solvent noise: better resolution
    assert res.status == "warnings" and any("0.8 ×" in w for w in res.warnings)   # R = 1 Å is far too good


def test_fdr_fsc_within_one_shell_of_band_limit(cpu):
    """Signal band-limited at shell 18: the last significant shell is the last shell whose expected FSC
    exceeds 0.05, within one shell."""
    need_model()
    cutoff_shell = 18
    sim = simulate_halves(MODEL, TS, BOX, bfactor_A2=20.0, noise_rel=0.5, cutoff_A=BOX * TS / cutoff_shell, seed=5)
    ctx1 = make_ctx1(cpu, sim)
    mask = cpu.to_host(ctx1.mask)
    k, _, _ = full_grid(sim.signal.shape)
    S, N = expected_powers(sim, mask)
    s, n, c = shell_ratio(S, N, k, BOX // 2 + 1)
    exp = s / (s + n)
    analytic_last = int(np.flatnonzero(exp > 0.05)[-1])
    assert abs(analytic_last - cutoff_shell) <= 2   # the mask spreads the band edge's ringing by a shell or two
    res = fdr.run(ctx1)
    assert abs(res.values["last_significant_shell"] - analytic_last) <= 1
    assert res.values["fdr_fsc_A"] == pytest.approx(BOX * TS / res.values["last_significant_shell"])
    # seeded: the same input gives the same p-values
    p1 = res.values["curves"]["p"]
    p2, _, _ = fdr.permutation_pvalues(cpu, ctx1.geo, ctx1.M1, ctx1.M2, ctx1.fsc_masked.fsc, seed=ctx1.seed)
    np.testing.assert_array_equal(p1, p2)


def _cone_expectation(S, N, k, vec, r, half_angle, kind, nsh):
    fx, fy, fz = vec

    def f(d):
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.abs(fx * d[0] + fy * d[1] + fz * d[2]) / r
        return _cone(S, N, k, c, half_angle, kind, nsh)
    return f


def _cone(S, N, k, c, half_angle, kind, nsh):
    ca = math.cos(math.radians(half_angle))
    inside = (c >= ca) & (k >= 0)
    w = inside.astype(float) if kind == "hard" else np.where(inside, np.exp(-4 * (c - 1) ** 2 / (ca - 1) ** 2), 0)
    s, n, cnt = shell_ratio(S, N, k, nsh, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / (s + n), cnt


def _exact_dfsc(_unused, d, X, P1, P2, k, vec, r, nsh):
    fx, fy, fz = vec
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.abs(fx * d[0] + fy * d[1] + fz * d[2]) / r
    ca = math.cos(math.radians(fso.CONE_DEG))
    inside = (c >= ca) & (k >= 0)
    w = np.where(inside, np.exp(-4 * (c - 1) ** 2 / (ca - 1) ** 2), 0)
    kk = np.where(k >= 0, k, nsh).ravel()
    a, b, e = (np.bincount(kk, (w * q).ravel(), nsh + 1)[:nsh] for q in (X, P1, P2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / np.sqrt(b * e)


def test_conical_fsc_and_fso_follow_directional_expectation(cpu, aniso):
    """Noise 16× stronger in power along Z: the 20° conical FSCs along X and Z follow S/(S+N) of their cones
    (within 0.03 + 2/√n), their 0.143 crossings are within 1.5 shells of the analytic ones, Z is worse than X;
    the FSO is within 0.15 of the FSO of the expected directional FSCs (0.5 crossing within 1.5 shells) and
    within 0.03 of the FSO with exact per-coefficient cone weights on the same halves."""
    ctx1 = make_ctx1(cpu, aniso)
    mask = cpu.to_host(ctx1.mask)
    k, vec, r = full_grid(aniso.signal.shape)
    nsh = BOX // 2 + 1
    S, N = expected_powers(aniso, mask)
    cone = _cone_expectation(S, N, k, vec, r, 20.0, "hard", nsh)
    res = fsc3d.run(ctx1)
    curves = res.values["curves"]
    kmax = res.values["rmax_shell"]
    shell_w = 1.0 / (BOX * TS)
    for name, d in (("x", (1, 0, 0)), ("z", (0, 0, 1))):
        exp, cnt = cone(d)
        sh = np.arange(2, kmax + 1)
        ok = cnt[sh] > 20
        diff = np.abs(curves[name][sh][ok] - exp[sh][ok])
        assert np.all(diff < 0.03 + 2 / np.sqrt(cnt[sh][ok])), (name, diff.max())
        # a 20° cone holds ~6 % of a shell: its crossing is noisier than the shell's (1.5 shells allowed)
        assert abs(1 / res.values[f"{name}_A"] - crossing_shell(exp, 0.143) * shell_w) <= 1.5 * shell_w
    assert res.values["z_A"] > res.values["x_A"] + 0.3
    assert res.values["sphericity"] < 0.9

    g = fso.run(ctx1)
    D = shells.fibonacci_hemisphere(fso.N_DIRECTIONS)
    gcone = _cone_expectation(S, N, k, vec, r, fso.CONE_DEG, "gauss", nsh)
    passing = np.array([gcone(d)[0] >= 0.143 for d in D])     # [ndir, nshell]
    exp_fso = passing.mean(axis=0)
    got_fso = g.values["curves"]["fso"]
    sh = np.arange(3, nsh)
    assert np.max(np.abs(got_fso[sh] - exp_fso[sh])) < 0.15
    # the realised cone FSCs scatter around S/(S+N) (cross terms), which flattens the FSO near 0.5
    assert abs(1 / g.values["fso_05_A"] - crossing_shell(exp_fso, 0.5) * shell_w) <= 1.5 * shell_w
    # the direction-binned FSO equals the FSO of per-coefficient cone weights on the same halves
    F1 = scipy.fft.fftn(aniso.h1 * mask)
    F2 = scipy.fft.fftn(aniso.h2 * mask)
    X, P1, P2 = (F1 * np.conj(F2)).real, np.abs(F1) ** 2, np.abs(F2) ** 2
    exact = np.array([_exact_dfsc(None, d, X, P1, P2, k, vec, r, nsh) >= 0.143 for d in D]).mean(axis=0)
    assert np.max(np.abs(got_fso[sh] - exact[sh])) < 0.03
    assert g.values["fso_09_A"] > g.values["fso_01_A"]            # a real anisotropic range


def test_isotropic_noise_is_more_spherical(cpu, iso, aniso):
    """With isotropic noise only the molecule's own shape makes the signal anisotropic: the conical FSCs along
    X and Z agree within 12 % and the sphericity is high, and higher than with noise 16× stronger along Z."""
    res = fsc3d.run(make_ctx1(cpu, iso))
    assert abs(res.values["x_A"] - res.values["z_A"]) < 0.12 * res.values["global_A"]
    assert res.values["sphericity"] > 0.85
    assert res.values["sphericity"] > fsc3d.run(make_ctx1(cpu, aniso)).values["sphericity"] + 0.1


# ---- bad half maps ------------------------------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(24, 24, 24)).astype(np.float32)
    b = rng.normal(size=(24, 24, 24)).astype(np.float32)
    p = {"a": write_mrc(tmp_path / "a.mrc", a, 1.5), "b": write_mrc(tmp_path / "b.mrc", b, 1.5),
         "small": write_mrc(tmp_path / "small.mrc", a[:20], 1.5),
         "vs": write_mrc(tmp_path / "vs.mrc", b, 2.0),
         "const": write_mrc(tmp_path / "const.mrc", np.full((24, 24, 24), 3.0, np.float32), 1.5),
         "copy": write_mrc(tmp_path / "copy.mrc", a, 1.5)}
    return p


@pytest.mark.parametrize("pair,message", [
    (("a", "a"), "identical"),
    (("a", "copy"), "identical"),
    (("a", "small"), "different boxes"),
    (("a", "vs"), "voxel size"),
    (("a", "const"), "constant"),
    (("a",), "only one half map"),
])
def test_bad_halves_are_refused(files, pair, message):
    with pytest.raises(InputError, match=message):
        load_halves([files[k] for k in pair], (24, 24, 24), 1.5)


def test_halves_box_must_match_primary(files):
    with pytest.raises(InputError, match="differs from the primary map"):
        load_halves([files["a"], files["b"]], (32, 32, 32), 1.5)


def test_run_level1_refused_gives_one_line_reason(cpu, files, monkeypatch):
    import gpuvalid.level1 as l1
    monkeypatch.setattr(l1, "SECTIONS1", [s if s[0] in ("1.a", "1.b", "1.g", "1.h") else (s[0], s[1], None)
                                          for s in l1.SECTIONS1])   # local sections: their own tests
    ctx0 = MapContext(cpu, np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32), 1.5, None, 4.0)
    out, info = run_level1(ctx0, [files["a"], files["a"]])
    assert out["1"].status == NOT_MEASURED and "identical" in out["1"].reason and "\n" not in out["1"].reason
    assert all(out[s].status == NOT_MEASURED and "refused" in out[s].reason for s in ("1.a", "1.b", "1.g", "1.h"))
    assert info["refused"]
    out, _ = run_level1(ctx0, [files["a"], files["b"]])
    assert out["1.a"].evaluable and out["1.c"].status == "not_implemented"
    assert "range from" in out["1"].summary


@pytest.mark.gpu
def test_sections_gpu_equal_cpu(cpu, gpu, aniso):
    a, b = make_ctx1(cpu, aniso), make_ctx1(gpu, aniso)
    ra, rb = global_res.run(a), global_res.run(b)
    for key in ("fsc_0143_A", "fsc_05_A", "dpr_45_A", "ssnr_1_A"):
        assert ra.values[key] == pytest.approx(rb.values[key], rel=1e-3)
    ga, gb = fso.run(a), fso.run(b)
    assert ga.values["fso_05_A"] == pytest.approx(gb.values["fso_05_A"], rel=0.02)
    ha, hb = fsc3d.run(a), fsc3d.run(b)
    np.testing.assert_allclose(ha.values["curves"]["z"], hb.values["curves"]["z"], atol=1e-3)
    fa, fb = fdr.run(a), fdr.run(b)
    assert abs(fa.values["last_significant_shell"] - fb.values["last_significant_shell"]) <= 1


def test_halves_beside_archive_layout(tmp_path):
    from gpuvalid.level1 import halves_beside
    entry = tmp_path / "structures" / "EMD-1234"
    (entry / "map").mkdir(parents=True)
    (entry / "other").mkdir()
    m = entry / "map" / "emd_1234.map.gz"
    m.write_bytes(b"")
    assert halves_beside(m) is None                      # no halves deposited
    for i in (1, 2):
        (entry / "other" / f"emd_1234_half_map_{i}.map.gz").write_bytes(b"")
    assert [p.name for p in halves_beside(m)] == ["emd_1234_half_map_1.map.gz", "emd_1234_half_map_2.map.gz"]
    assert halves_beside(tmp_path / "elsewhere.mrc") is None


def test_estimates_sentence_flags_overestimate():
    from gpuvalid.level1 import estimates_sentence
    s = estimates_sentence(3.0, {}, {"1.a FSC 0.143": 4.0, "1.g FSO 0.5": 4.2})
    assert "4.00 to 4.20 Å, mean 4.10 Å" in s and "may be overestimated" in s      # 3.0 < 0.8 × 4.1
    assert "consistent" in estimates_sentence(3.5, {}, {"1.a FSC 0.143": 4.0})
    assert "No resolution" in estimates_sentence(3.0, {}, {})
