"""1.f Directional local resolution (after MonoDir, Vilas et al. 2020), with the noise from the half maps.

Directions: ``N_DIR = 47`` axes on the hemisphere ``z ≥ 0`` from the Fibonacci rule
(:func:`gpuvalid.level1.shells.fibonacci_hemisphere`: ``z_i = 1 − (i + ½)/47``, azimuth ``i·π(3 − √5)``);
each defines a double cone of Fourier space, ``|u·d| ≥ cos 15°`` (``u`` the unit frequency vector), so the
47 cones (0.43 sr each) cover the sphere about 1.6 times.

For each direction the MonoRes sweep of 1.e runs inside its cone: the signal ``V = (h1+h2)/2`` and the noise
``N = (h1−h2)/2`` are high-passed at ``fd = Ts/d`` (raised-cosine edge 0.02 cycles/voxel) and restricted to
the cone; the amplitude is that of the analytic signal along ``d``, ``√(v0² + v_d²)`` with ``v0 = IFFT(H·C·F)``
and ``v_d = IFFT(−i·(u·d)·H·C·F)``, two complex-to-real transforms of the half spectrum per map (the Riesz
components across ``d`` are at most sin 15° of the field inside the cone and are left out).  The noise level
is the exact 0.95 quantile of the noise amplitude over the mask; the two-failure rule of 1.e applies, and a
direction's sweep ends when fewer than 2.5 % of the voxels are left in it (the reference's rule; those voxels
keep their last pass).  Resolutions go from ``start``
(``min(18, max(10, 5·R))`` Å) to ``2·Ts`` in 1 Å steps above 8 Å and 0.5 Å steps below (the reference's "fast"
rule).

Per voxel: minimum, maximum and mean over the directions; the best direction is the one with the smallest
(finest) resolution, ties split at random (a seeded hash of voxel and direction, the same on both devices).
These summaries are computed where the sweeps are (:func:`directional_summaries`): the host receives per-voxel
results, not the resolution of every direction at every voxel.  Uniformity of the best directions: under an
isotropic map the 47 cones are exchangeable (same size, same statistics), so each is the best with
probability 1/47; a χ² goodness-of-fit test (46 degrees of freedom) on voxels taken on a lattice whose
spacing is the median mean-directional resolution in voxels (at least 2).  Neighbouring voxels share their
best direction (the amplitudes are smooth on the scale of the resolution): on an isotropic simulated map
(80³, 1 Å) lattices of 2, 3 and 4 voxels give p < 1e-16, 6 voxels p = 0.03 and 8 voxels (0.8 × the
median) p = 0.17, so only a lattice at the resolution length gives counts close to independent.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable
from ..memory import L1_DIR_SUMMARY_CHUNK, l1_dir_summary_chunk  # voxels per pass of directional_summaries
from ..monores import TwoFailureSweep
from ..spiral import quantile_at
from .monores_half import NOISE_QUANTILE, TRANSITION, HalfMonogenic, raised_cosine_up, resolution_steps, step_readback
from .shells import fibonacci_hemisphere

if TYPE_CHECKING:
    from ..backend import Backend

N_DIR = 47
CONE_DEG = 15.0
START_MAX_A = 18.0
COARSE_STEP_A = 1.0
FINE_STEP_A = 0.5
COARSE_ABOVE_A = 8.0
STOP_FRACTION = 0.025      # a direction's sweep ends when fewer than 2.5 % of the voxels are left (as MonoDir)


def directions(n: int = N_DIR) -> np.ndarray:
    """``[n, 3]`` unit axes ``(x, y, z)`` on the hemisphere (Fibonacci rule)."""
    return fibonacci_hemisphere(n)


def monodir(be: Backend, h1, h2, mask, voxel_size: float, start_A: float, ndir: int = N_DIR,
            cone_deg: float = CONE_DEG, quantile: float = NOISE_QUANTILE,
            engine: HalfMonogenic | None = None, seed: int = 3, keep_res: bool = False) -> dict:
    """Compute the directional local resolution over the ``mask`` voxels (bool).

    ``h1``, ``h2``: the half maps (None when ``engine`` is given: it holds their spectra).  Returns a dict:
    ``directions`` ``[ndir, 3]`` (x, y, z); ``index`` (host flat indices of the mask voxels); the per-voxel
    and per-direction results of :func:`directional_summaries` (``min``, ``max``, ``mean``, ``lo5``,
    ``hi95``, ``best``, ``median``, ``vrs_tie_counts``); with ``keep_res`` also ``res`` ``[ndir, nmask]``
    host float32 (Å), every direction's resolution at every voxel; ``steps`` (resolutions of the sweep);
    ``steps_per_direction`` (steps computed before each direction's sweep ended); ``seconds``.

    The loop runs over the steps, and inside each over the directions whose sweep goes on (every direction
    sees the same steps in the same order as a loop over directions would).  Each cone is kept as its
    Fourier coefficients on the half grid only (flat indices and ``u·d`` there, 2–4 % of the half grid each), so
    a step's filtered spectrum is written into a zeroed half grid at those indices, and the amplitude low-pass
    filter is built once per step for every direction and both maps.

    Raises
    ------
    NotMeasurable
        When the mask is empty, or a direction's noise amplitude threshold is not finite and positive.
    """
    t0 = time.perf_counter()
    xp = be.xp
    idx = be.mask_indices(be.asarray(mask).astype(bool, copy=False))   # int32 below 2³¹ voxels; no mask copy kept
    n = int(idx.size)
    if n == 0:
        raise NotMeasurable("the mask is empty")
    eng = engine or HalfMonogenic(be, h1, h2)
    steps = resolution_steps(voxel_size, start_A, FINE_STEP_A, COARSE_STEP_A, COARSE_ABOVE_A)
    dirs = directions(ndir)
    cones = [cone_support(eng, d, cone_deg) for d in dirs]           # flat indices only (int32: ≈ 3 B per voxel)
    eng.drop_inv_r()           # the sweep reads |f| and u only at the cones' indices (HalfMonogenic.at)
    FV, FN = eng.FV.reshape(-1), eng.FN.reshape(-1)
    sweeps = [TwoFailureSweep(xp, n, float(steps[0])) for _ in dirs]
    used = [0] * len(dirs)
    going = list(range(len(dirs)))
    for d in steps:
        fd = voxel_size / d
        thresholds = []
        for k in going:
            ci = cones[k]
            used[k] += 1
            rc, u = eng.at(ci)                                     # |f| and u on the cone, from its indices
            Hc = raised_cosine_up(rc, fd - TRANSITION, fd, xp)     # the high-pass on the cone
            ud = along(u, dirs[k])
            del rc, u
            AN = eng.lowpass(_cone_amplitude(be, eng, FN, ci, Hc, ud), fd)
            thr = quantile_at(be, AN, idx, quantile, on_device=True)
            thresholds.append(thr)
            del AN
            AV = eng.lowpass(_cone_amplitude(be, eng, FV, ci, Hc, ud), fd)
            sweeps[k].update(AV.reshape(-1)[idx] > thr, float(d))
            del AV, Hc, ud
        eng.forget_lowpass()          # the next step has its own
        thr_h, alive_h = step_readback(be, thresholds, [sweeps[k] for k in going])
        for thr in thr_h:
            if not np.isfinite(thr) or thr <= 0:
                raise NotMeasurable(f"the directional noise amplitude is {thr:g} at {d:.2f} Å")
        going = [k for k, a in zip(going, alive_h, strict=True) if a >= STOP_FRACTION]
        if not going:
            break
    del cones
    out = directional_summaries(be, sweeps, seed, chunk=l1_dir_summary_chunk(math.prod(eng.shape), len(dirs)))
    if keep_res:
        out["res"] = np.stack([be.to_host(sw.value) for sw in sweeps]).astype(np.float32)
    out.update({"directions": dirs, "index": be.to_host(idx), "steps": steps, "steps_per_direction": used,
                "seconds": time.perf_counter() - t0})
    return out


TIE_A = 1e-4                   # directions within this of a voxel's minimum tie for its best direction
VRS_TIE_A = 0.1                # the reference's tie margin (vrs_ks_p)


def directional_summaries(be: Backend, sweeps, seed: int, chunk: int = L1_DIR_SUMMARY_CHUNK) -> dict:
    """Summarise the directions' resolutions (Å) per voxel and per direction.

    Per voxel: ``min``, ``max``, ``mean``, the 5th and 95th percentiles ``lo5``, ``hi95`` and the ``best``
    direction (the finest; ties within ``TIE_A`` broken by a seeded hash of (voxel, direction), the same on every
    device); per direction its ``median`` over the voxels and ``vrs_tie_counts`` (voxels within ``VRS_TIE_A`` of
    their minimum, for :func:`vrs_ks_p`).

    Computed where the sweeps are, ``chunk`` voxels at a time (a [directions × chunk] block); the host gets
    the per-voxel results only, in one read per pass.
    """
    xp = be.xp
    nd, n = len(sweeps), int(sweeps[0].size)
    per_voxel = {k: [] for k in ("min", "max", "mean", "lo5", "hi95", "best")}
    ties_vrs = xp.zeros(nd, dtype=xp.int64)
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        R = xp.stack([sw.value_at(sl) for sw in sweeps])
        rmin = R.min(axis=0)
        lo5, hi95 = xp.percentile(R, [5.0, 95.0], axis=0)
        keys = xp.where(R <= rmin[None, :] + np.float32(TIE_A), tie_keys(xp, s, R.shape[1], nd, seed), -1)
        got = {"min": rmin, "max": R.max(axis=0), "mean": R.mean(axis=0), "lo5": lo5, "hi95": hi95,
               "best": xp.argmax(keys, axis=0)}
        del keys
        ties_vrs += vrs_tie_counts(R, rmin)
        del R
        # one read per pass: the six results as float64 rows (exact for float32 values and indices)
        block = be.to_host(xp.stack([v.astype(xp.float64) for v in got.values()]))
        for row, (k, v) in zip(block, got.items(), strict=True):
            per_voxel[k].append(row.astype(v.dtype))
    out = {k: np.concatenate(v) for k, v in per_voxel.items()}      # dtypes as NumPy gives them on the whole
    out["best"] = out["best"].astype(np.int64)
    out["median"] = np.array([float(be.to_host(xp.median(sw.value))) for sw in sweeps])
    out["vrs_tie_counts"] = be.to_host(ties_vrs).astype(float)
    return out


def vrs_tie_counts(R, rmin):
    """Count per direction the voxels within ``VRS_TIE_A`` of their minimum ``rmin``.

    Rows of ``R`` (NumPy or CuPy) are the directions: the reference's tie counts (:func:`vrs_ks_p`).
    """
    return (R <= rmin[None, :] + np.float32(VRS_TIE_A)).sum(axis=1)


def tie_keys(xp, start: int, count: int, ndir: int, seed: int):
    """Return ``[ndir, count]`` pseudo-random int64 keys in [0, 2³²) for voxels ``start … start + count − 1``.

    A 32-bit integer hash (multiply–xorshift) of (voxel, direction, seed).  The argmax of the keys over the
    tied directions picks one at random, independently per voxel, and identically on NumPy and CuPy.
    """
    j = xp.arange(start, start + count, dtype=xp.uint32)[None, :]
    k = xp.arange(ndir, dtype=xp.uint32)[:, None]
    h = j * np.uint32(0x9E3779B1) + k * np.uint32(0x85EBCA77) + np.uint32((seed * 0xC2B2AE3D) & 0xFFFFFFFF)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h.astype(xp.int64)


def _cone_amplitude(be: Backend, eng: HalfMonogenic, F, ci, Hc, ud):
    """Return the amplitude ``√(v0² + v_d²)`` (float32) of the analytic signal along a cone's axis ``d``.

    ``v0 = IFFT(H·C·F)`` and ``v_d = IFFT(−i·(u·d)·H·C·F)`` (its Riesz component along ``d``), each a
    complex-to-real transform of the half spectrum: ``F`` (flat half spectrum) and the high-pass ``Hc`` and
    ``ud = u·d`` taken at the cone's flat indices ``ci``.  The transforms' work array (the half grid, zero
    outside the cone) is made here and freed on return: it is not held beside the amplitude's low-pass.
    """
    xp = be.xp
    G = xp.zeros(eng.half_shape, dtype=xp.complex64)
    Gf = G.reshape(-1)
    X = F[ci] * Hc
    Gf[ci] = X
    v0 = be.irfftn(G, s=eng.shape, overwrite_x=True)    # in place (on the CPU faster than SciPy's own copy)
    G.fill(0)
    X *= ud
    X *= xp.complex64(-1j)
    Gf[ci] = X
    del X
    vd = be.irfftn(G, s=eng.shape, overwrite_x=True)
    del G, Gf
    return be.hypot_in_place(v0, vd)   # √(v0² + v_d²) into v0


def cone_support(eng: HalfMonogenic, d, cone_deg: float = CONE_DEG):
    """Return the double cone ``|u·d| ≥ cos(cone_deg)`` on the half grid of ``eng`` as its flat indices.

    int32 indices when the grid allows.  The double cone is symmetric under ``f → −f``, so its half-grid
    coefficients describe it whole; ``u·d`` there is :func:`along` of :meth:`HalfMonogenic.at`.
    """
    xp = eng.be.xp
    ud = along((eng.unit(0), eng.unit(1), eng.unit(2)), d)
    cone = xp.abs(ud) >= math.cos(math.radians(cone_deg))
    del ud
    return eng.be.mask_indices(cone)


def along(u, d):
    """Return ``u·d`` (float32) from the unit-vector components ``u = (u_z, u_y, u_x)`` and ``d = (x, y, z)``."""
    dx, dy, dz = (float(v) for v in d)
    ud = u[2] * np.float32(dx)
    ud += u[1] * np.float32(dy)
    ud += u[0] * np.float32(dz)
    return ud


def lattice_subset(index: np.ndarray, shape: tuple, spacing: int) -> np.ndarray:
    """Positions (into ``index``) of the voxels whose coordinates are all multiples of ``spacing``."""
    z, y, x = np.unravel_index(index, shape)
    return np.flatnonzero((z % spacing == 0) & (y % spacing == 0) & (x % spacing == 0))


def uniformity_test(best: np.ndarray, ndir: int) -> dict:
    """χ² goodness of fit of best-direction counts against equal probabilities ``1/ndir``.

    Returns ``counts``, ``n``, ``chi2``, ``dof`` and ``p`` (None when fewer than 5 expected per direction).
    """
    from scipy.stats import chi2

    counts = np.bincount(best, minlength=ndir).astype(float)
    n = float(counts.sum())
    exp = n / ndir
    out = {"counts": counts, "n": int(n), "dof": ndir - 1, "chi2": None, "p": None}
    if exp < 5:
        return out
    c2 = float(((counts - exp) ** 2 / exp).sum())
    out["chi2"] = c2
    out["p"] = float(chi2.sf(c2, ndir - 1))
    return out


def vrs_ks_p(res: np.ndarray | None = None, seed: int = 3, draws: int = 50000,
             counts: np.ndarray | None = None) -> float:
    """Return the reference's uniformity p of the best directions.

    Per direction the count of voxels within 0.1 Å of their minimum (ties counted in every direction;
    ``counts``, or computed from the ``[directions, voxels]`` resolutions ``res``), ``draws`` indices drawn with
    those frequencies and a Kolmogorov–Smirnov test against ``randint(0, ndir − 1)`` (a continuous test on a
    discrete sample, support one short): it rejects even a flat histogram.  Seeded here (the reference is not).
    """
    from scipy import stats

    if counts is None:
        counts = vrs_tie_counts(res, res.min(axis=0))
    counts = np.asarray(counts, dtype=float)
    k = counts.size
    rng = np.random.default_rng(seed)
    sample = rng.choice(np.arange(k), size=draws, p=counts / counts.sum())
    return float(stats.kstest(sample, stats.randint(0, k - 1).cdf).pvalue)


def radial_profile(index: np.ndarray, shape: tuple, maps: dict) -> tuple[np.ndarray, dict]:
    """Average each per-voxel array in ``maps`` over 1-voxel shells of the distance to the box centre ``(N/2)``.

    Returns the shell radii (voxels) with at least one mask voxel, and the profiles.
    """
    z, y, x = np.unravel_index(index, shape)
    c = [s / 2.0 for s in shape]
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    k = np.floor(r).astype(int)
    cnt = np.bincount(k)
    keep = np.flatnonzero(cnt > 0)
    prof = {name: (np.bincount(k, weights=v.astype(float), minlength=cnt.size)[keep] / cnt[keep])
            for name, v in maps.items()}
    return keep.astype(float), prof


# ---- section 1.f --------------------------------------------------------------------------------------------

SID, TITLE = "1.f", "Directional local resolution"
UNIFORMITY_P = 0.001
NOT_APPLY_ABOVE_A = 10.0

EXPLANATION = (
    "MonoDir (Vilas et al. 2020) repeats the MonoRes test of 1.e inside cones of Fourier space (15° half-angle) "
    "around 47 directions, which gives each voxel a resolution per direction. Its spread over the directions "
    "shows anisotropy (for instance from a preferred particle orientation), and the distribution of the best "
    "direction of every voxel should be uniform for an isotropic map. The noise comes from the half-map "
    "difference filtered by the same cone.")


def run(ctx1):
    """Compute section 1.f, the directional local resolution (MonoDir with the half maps' noise).

    Not applicable when R is worse than 10 Å.  Results: the mean directional resolution (Å), the χ²
    uniformity test of the best directions on a lattice (p, χ², degrees of freedom, voxels, spacing, counts),
    percentiles of the finest/coarsest/min/max directional resolutions per voxel (Å), per-direction medians,
    the radial profile and the mean-directional map's percentiles; ``vrs_compat`` holds the reference's KS p.
    """
    from ..analyses.base import SectionResult, md_table, not_applicable
    from .common import check_estimate
    from .localres_common import finish_local, overlay_figure, start_resolution
    from .monores_half import half_engine

    R = ctx1.resolution
    if R is not None and R > NOT_APPLY_ABOVE_A:
        return not_applicable(SID, TITLE, f"the reported resolution {R:g} Å is worse than "
                                          f"{NOT_APPLY_ABOVE_A:g} Å (as the reference)", EXPLANATION)
    ctx0 = ctx1.ctx0
    ctx0.require_mask()
    Ts = ctx1.voxel_size
    top, top_text = start_resolution(ctx1)
    start = min(START_MAX_A, top)
    out = monodir(ctx1.be, None, None, ctx0.hard_mask, Ts, start, engine=half_engine(ctx1),
                  seed=ctx1.seed)
    ctx1.cache.pop("half_monogenic", None)
    shape = ctx1.shape
    ndir = len(out["directions"])
    lo5, hi95 = out["lo5"], out["hi95"]
    mean = out["mean"]
    mean_map = np.full(shape, np.nan, dtype=np.float32)
    mean_map.reshape(-1)[out["index"]] = mean
    res = SectionResult(SID, TITLE, explanation=EXPLANATION)
    res.criteria = (f"Warn when the best directions are not uniform (χ² goodness of fit p < {UNIFORMITY_P:g}) or "
                    "when the reported resolution R is better than 0.8 × the mean directional resolution.")
    med_mean = float(np.median(mean))
    spacing = max(2, int(math.ceil(med_mean / Ts)))
    sub = lattice_subset(out["index"], shape, spacing)
    uni = uniformity_test(out["best"][sub], ndir)
    mean_dir = float(mean.mean())
    res.values.update({
        "mean_directional_A": mean_dir, "uniformity_p": uni["p"], "uniformity_chi2": uni["chi2"],
        "uniformity_dof": uni["dof"], "uniformity_voxels": uni["n"], "uniformity_lattice_vox": spacing,
        "best_direction_counts": uni["counts"], "directions_xyz": out["directions"],
        "cone_half_angle_deg": CONE_DEG, "start_A": float(out["steps"][0]),
        "steps_per_direction": out["steps_per_direction"],
        "lowest_percentiles_A": [float(x) for x in np.percentile(lo5, [2.5, 25, 50, 75, 97.5])],
        "highest_percentiles_A": [float(x) for x in np.percentile(hi95, [2.5, 25, 50, 75, 97.5])],
        "strict_min_percentiles_A": [float(x) for x in np.percentile(out["min"], [2.5, 25, 50, 75, 97.5])],
        "strict_max_percentiles_A": [float(x) for x in np.percentile(out["max"], [2.5, 25, 50, 75, 97.5])],
        "per_direction_median_A": out["median"]})
    res.blocks.append(
        f"Mask: the hard mask. {ndir} directions (Fibonacci hemisphere), cones of {CONE_DEG:g}°; "
        f"sweep from {out['steps'][0]:g} Å (min(18, {top_text})) to 2·Ts = {2 * Ts:.2f} Å. Per voxel: the finest "
        "and coarsest directional resolutions are taken as the 5th and 95th percentiles over the directions "
        "(as MonoDir; a single noisy direction does not set them), and the mean over the directions. The "
        "percentiles below are those of the mean directional resolution.")
    res.blocks.append(md_table(
        ["per voxel", "2.5 %", "25 %", "50 %", "75 %", "97.5 %"],
        [["finest (5th pct over directions)"] + [f"{x:.2f}" for x in res.values["lowest_percentiles_A"]],
         ["coarsest (95th pct over directions)"] + [f"{x:.2f}" for x in res.values["highest_percentiles_A"]],
         ["minimum over directions"] + [f"{x:.2f}" for x in res.values["strict_min_percentiles_A"]],
         ["maximum over directions"] + [f"{x:.2f}" for x in res.values["strict_max_percentiles_A"]]]))
    if uni["p"] is None:
        res.blocks.append(f"Uniformity of the best directions could not be tested: only {uni['n']} voxels on the "
                          f"{spacing}-voxel lattice (fewer than 5 expected per direction).")
    else:
        res.blocks.append(
            f"Best directions on a {spacing}-voxel lattice ({uni['n']} voxels, ties split at random): "
            f"χ² = {uni['chi2']:.1f} with {uni['dof']} degrees of freedom, p = {uni['p']:.3g} against equal "
            "probabilities (the 47 cones are exchangeable for an isotropic map).")
        if uni["p"] < UNIFORMITY_P:
            res.warnings.append(f"the best directions are not uniform (χ² p = {uni['p']:.2g} < {UNIFORMITY_P:g}): "
                                "the resolution does not seem to be the same in all directions")
    check_estimate(res, R, mean_dir, "mean directional resolution")
    finish_local(ctx1, res, mean_map, "mean directional", "l1_monodir", "1.f mean directional", warn=False)
    ctx1.estimates["1.f mean directional"] = mean_dir
    rad, prof = radial_profile(out["index"], shape, {"finest (5th pct)": lo5, "coarsest (95th pct)": hi95,
                                                     "mean": mean})
    res.values["radial_profile"] = {"radius_A": rad * Ts, **{k: v for k, v in prof.items()}}
    ks = vrs_ks_p(seed=ctx1.seed, counts=out["vrs_tie_counts"])
    res.vrs_compat = {"ks_p": ks, "mean_directional_A": float(np.mean(prof["mean"])),
                      "rule": "KS test of a discrete sample against randint(0, 46); mean over radii of the "
                              "radial means"}
    res.differences = [
        "The reference's MonoDir uses the primary map alone (noise from outside the mask; it fails on masked "
        "maps); gpuvalid uses the half maps (noise = half difference through the same cone).",
        f"The reference tests uniformity with a Kolmogorov–Smirnov test of a discrete sample (support one short, "
        f"50 000 draws), which rejects even a flat histogram, so its warning always fires (p = {ks:.2g} here, "
        "`vrs_compat.ks_p`); gpuvalid uses a χ² goodness-of-fit test on a decorrelated lattice.",
        "Directions follow the Fibonacci rule (the reference's fast table has 47 entries with (0, 0) twice); the "
        "amplitude is the analytic signal along the cone axis; the reference's 'mean directional resolution' is "
        f"the radial average of its single-map MonoRes map ({res.vrs_compat['mean_directional_A']:.2f} Å here, "
        "from the radial means of the directional mean).",
    ]
    fig_dir = ctx0.options.figure_dir
    if fig_dir is not None:
        from ..figures import level1 as f1, level1_local as fl
        from .common import add_figure
        add_figure(ctx1, res, lambda: fl.radial_profile_png(
            fig_dir / "l1_monodir_radial.png", rad * Ts, prof, "Directional resolution against radius"),
            "Radial profile of the finest, coarsest and mean directional resolution (means over the mask voxels "
            "in 1-voxel shells around the box centre).")
        frac = 100.0 * uni["counts"] / max(uni["n"], 1)
        add_figure(ctx1, res, lambda: f1.hemisphere_png(
            fig_dir / "l1_monodir_best.png", out["directions"], frac, "Best direction of the voxels",
            "voxels (%)"), "Share of the voxels (lattice subsample) whose best resolution is along each direction, "
                          "on the hemisphere (equal-area projection; uniform: 2.1 % each).")
        add_figure(ctx1, res, lambda: fl.direction_counts_png(
            fig_dir / "l1_monodir_counts.png", uni["counts"], "Best-direction counts"),
            "Best-direction counts per direction with the uniform expectation.")
    overlay_figure(ctx1, res)
    res.summary = (f"Directional local resolution: mean {mean_dir:.2f} Å over {ndir} directions"
                   + ("" if uni["p"] is None else f", best directions uniform p = {uni['p']:.2g}")
                   + ("." if not res.warnings else f"; {res.warnings[0]}."))
    res.key = f"mean {mean_dir:.2f} Å"
    return res
